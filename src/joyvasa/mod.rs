//! JoyVASA's motion generator (MIT; jdh-algo/JoyVASA), re-implemented with libtorch:
//! speech -> HuBERT features -> a diffusion transformer that generates LivePortrait
//! motion (expression, head pose, scale, translation) window after window, each
//! conditioned on the last motions and audio features of the one before.
//!
//! No GStreamer here.

pub mod denoiser;
pub mod hubert;
pub mod sampler;
pub mod template;

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

pub use self::denoiser::{Denoiser, DenoiserShape, PositionalEncoding};
pub use self::hubert::{AudioEncoder, AudioFeatures, HubertConfig};
pub use self::sampler::{Schedule, WindowInput};
pub use self::template::{FrameMotion, MotionTemplate, PoseSmoother};
use crate::liveportrait::weights::{Weights, WeightsError};
use crate::liveportrait::{BundleError, BundleManifest};

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

    /// Loads the motion generator of a bundle directory.
    pub fn load_bundle(dir: &Path, device: Device) -> Result<Self, BundleError> {
        let manifest = BundleManifest::read(dir)?;
        let config = manifest
            .joyvasa
            .clone()
            .ok_or_else(|| BundleError::Manifest {
                path: dir.join("manifest.json"),
                detail: "the bundle has no JoyVASA motion generator (no joyvasa config)".into(),
            })?;
        let template = MotionTemplate::load(&manifest.component(dir, "motion_template")?)?;
        let mut w = Weights::load(&manifest.component(dir, "motion_generator")?, device)?;
        let generator = Self::new(&mut w, &config, template)?;
        w.finish()?;
        Ok(generator)
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
