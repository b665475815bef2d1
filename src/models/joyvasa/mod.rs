//! JoyVASA's motion generator (MIT; jdh-algo/JoyVASA), re-implemented with libtorch:
//! speech -> HuBERT features -> a diffusion transformer that generates LivePortrait
//! motion (expression, head pose, scale, translation) window after window, each
//! conditioned on the last motions and audio features of the one before.
//!
//! The generator is built from [`Weights`] and its config; the bundle module opens the
//! files.

pub mod denoiser;
pub mod hubert;
pub mod sampler;
pub mod template;

use serde::{Deserialize, Serialize};
use tch::Tensor;

pub use self::denoiser::{Denoiser, DenoiserShape, PositionalEncoding};
pub use self::hubert::{AudioEncoder, AudioFeatures, HubertConfig};
pub use self::sampler::{Schedule, WindowInput};
pub use self::template::{MotionTemplate, PoseSmoother};
use crate::nn::weights::{Weights, WeightsError};

/// Audio sample rate the generator expects.
pub const SAMPLE_RATE: i64 = 16_000;

/// What shapes a motion generator: the official loader's constructor arguments, the
/// positional-encoding variant and the HuBERT configuration. Kept in the bundle
/// manifest under `joyvasa`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoyVasaConfig {
    pub motion_feat_dim: i64,
    pub n_motions: i64,
    pub n_prev_motions: i64,
    pub feature_dim: i64,
    pub n_diff_steps: usize,
    /// Motion frames per second.
    pub fps: i64,
    #[serde(default)]
    pub positional_encoding: PositionalEncoding,
    pub hubert: HubertConfig,
}

impl JoyVasaConfig {
    /// Audio samples per window (`n_motions` frames).
    pub fn window_samples(&self) -> i64 {
        self.n_motions * SAMPLE_RATE / self.fps
    }

    /// Audio samples per motion frame.
    pub fn frame_samples(&self) -> i64 {
        SAMPLE_RATE / self.fps
    }

    /// Why this configuration cannot describe a working generator, if it cannot (a
    /// damaged or hand-edited manifest): every size at least 1, a frame rate that
    /// divides the sample rate, a context no longer than a window.
    pub fn problem(&self) -> Option<String> {
        let positive = [
            ("motion_feat_dim", self.motion_feat_dim),
            ("n_motions", self.n_motions),
            ("n_prev_motions", self.n_prev_motions),
            ("feature_dim", self.feature_dim),
            ("n_diff_steps", self.n_diff_steps as i64),
            ("fps", self.fps),
        ];
        if let Some((name, value)) = positive.iter().find(|(_, value)| *value < 1) {
            return Some(format!("{name} is {value}; it must be at least 1"));
        }
        if SAMPLE_RATE % self.fps != 0 {
            return Some(format!(
                "fps {} does not divide the {SAMPLE_RATE} Hz sample rate",
                self.fps
            ));
        }
        if self.motion_feat_dim != template::COEF_LEN as i64 {
            return Some(format!(
                "motion_feat_dim is {}; the motion template describes {} coefficients",
                self.motion_feat_dim,
                template::COEF_LEN
            ));
        }
        None
    }

    fn denoiser_shape(&self) -> DenoiserShape {
        DenoiserShape {
            motion_feat_dim: self.motion_feat_dim,
            feature_dim: self.feature_dim,
            n_prev_motions: self.n_prev_motions,
            n_motions: self.n_motions,
        }
    }
}

/// The last motions and audio features of a window, which condition the next one.
pub struct WindowContext {
    /// `(1, L_p, d)`
    pub motion: Tensor,
    /// `(1, L_p, F)`
    pub audio: Tensor,
}

pub struct MotionGenerator {
    pub config: JoyVasaConfig,
    pub encoder: AudioEncoder,
    pub denoiser: Denoiser,
    pub schedule: Schedule,
    pub template: MotionTemplate,
    null_audio: Tensor,
    start: WindowContext,
}

impl MotionGenerator {
    /// Builds the generator from a state dict (`w`) and its motion template; every
    /// tensor of the state dict must be used.
    pub fn new(
        w: &mut Weights,
        config: &JoyVasaConfig,
        template: MotionTemplate,
    ) -> Result<Self, WeightsError> {
        Self::build(w, config, template, None)
    }

    /// Records the parameter names and shapes of a generator of `config` with
    /// `layers` denoiser layers (for checking the official layout).
    pub fn parameter_list(
        config: &JoyVasaConfig,
        layers: usize,
    ) -> Result<Vec<(String, Vec<i64>)>, WeightsError> {
        let mut w = Weights::recorder("motion_generator");
        let template = MotionTemplate::identity();
        Self::build(&mut w, config, template, Some(layers))?;
        w.finish()
    }

    fn build(
        w: &mut Weights,
        config: &JoyVasaConfig,
        template: MotionTemplate,
        layers: Option<usize>,
    ) -> Result<Self, WeightsError> {
        let encoder = AudioEncoder::new(w, &config.hubert, config.feature_dim)?;
        let denoiser = Denoiser::new(
            w,
            config.denoiser_shape(),
            config.positional_encoding,
            layers,
        )?;
        let schedule = Schedule::new(w, config.n_diff_steps)?;
        let (d, f, lp) = (
            config.motion_feat_dim,
            config.feature_dim,
            config.n_prev_motions,
        );
        let null_audio = w.take("null_audio_feat", &[1, 1, f])?;
        let start = WindowContext {
            motion: w.take("start_motion_feat", &[1, lp, d])?,
            audio: w.take("start_audio_feat", &[1, lp, f])?,
        };
        Ok(Self {
            config: config.clone(),
            encoder,
            denoiser,
            schedule,
            template,
            null_audio,
            start,
        })
    }

    /// The conditioning of the first window (learnt start values).
    pub fn start_context(&self) -> &WindowContext {
        &self.start
    }

    /// Features of one window of audio `(1, window_samples)`.
    pub fn audio_features(&self, audio: &Tensor) -> AudioFeatures {
        self.encoder
            .forward(audio, self.config.n_motions, self.config.fps)
    }

    /// The normalised motion `(1, L, d)` of a window from its audio features `(1, L, F)`,
    /// conditioned on `context`, starting from the noise `motion_at_t`; `noise(t)` gives
    /// the noise of the step from `t`.
    pub fn sample_window(
        &self,
        features: &Tensor,
        context: &WindowContext,
        motion_at_t: &Tensor,
        steps: usize,
        cfg_scale: f64,
        noise: &mut dyn FnMut(usize) -> Tensor,
    ) -> Tensor {
        let input = WindowInput {
            audio: features,
            null_audio: &self.null_audio,
            prev_motion: &context.motion,
            prev_audio: &context.audio,
            motion_at_t,
        };
        sampler::sample(
            &self.denoiser,
            &self.schedule,
            &input,
            steps,
            cfg_scale,
            noise,
        )
    }

    /// The context for the window after one of which the first `used` frames are
    /// kept: the last `L_p` frames of `previous` followed by those (the reference's
    /// `motion[:, -L_p:]` when the whole window is used).
    pub fn next_context(
        &self,
        previous: &WindowContext,
        motion: &Tensor,
        features: &Tensor,
        used: i64,
    ) -> WindowContext {
        let lp = self.config.n_prev_motions;
        let last = |before: &Tensor, now: &Tensor| {
            let joined = Tensor::cat(&[before, &now.narrow(1, 0, used)], 1);
            let len = joined.size()[1];
            joined.narrow(1, len - lp, lp)
        };
        WindowContext {
            motion: last(&previous.motion, motion),
            audio: last(&previous.audio, features),
        }
    }
}
