//! LivePortrait's networks (MIT; KwaiVGI/LivePortrait), re-implemented with libtorch so
//! that the official checkpoints, converted once into a model bundle
//! (tools/liveportrait/convert.py), run with no Python: the appearance feature
//! extractor F, the motion extractor M, the warping module W, the SPADE generator G, and
//! the stitching and retargeting MLPs S, with the keypoint algebra that joins them.
//!
//! The networks know nothing of bundles: they are built from [`Weights`] and a config
//! (the bundle module opens the files).

pub mod appearance;
pub mod config;
pub mod edits;
pub mod motion;
pub mod spade;
pub mod stitching;
pub mod warping;

use tch::Tensor;

pub use self::appearance::AppearanceFeatureExtractor;
pub use self::config::LivePortraitConfig;
pub use self::motion::MotionExtractor;
pub use self::spade::SpadeGenerator;
pub use self::stitching::StitchingRetargeting;
pub use self::warping::WarpingModule;
use crate::core::Precision;
use crate::nn::{Weights, WeightsError};

/// The networks' components: (bundle file stem, official checkpoint file).
pub const COMPONENTS: [(&str, &str); 5] = [
    (
        "appearance_feature_extractor",
        "appearance_feature_extractor.pth",
    ),
    ("motion_extractor", "motion_extractor.pth"),
    ("warping_module", "warping_module.pth"),
    ("spade_generator", "spade_generator.pth"),
    (
        "stitching_retargeting_module",
        "stitching_retargeting_module.pth",
    ),
];

/// A face's implicit keypoints as the motion extractor describes them (the reference's
/// `get_kp_info`): pose in degrees `(B, 1)` each, translation `(B, 3)`, expression
/// deltas `(B, K, 3)`, scale `(B, 1)`, canonical keypoints `(B, K, 3)`.
pub struct KeypointInfo {
    pub pitch: Tensor,
    pub yaw: Tensor,
    pub roll: Tensor,
    pub t: Tensor,
    pub exp: Tensor,
    pub scale: Tensor,
    pub kp: Tensor,
    /// The pose as the extractor's bin logits `(B, bins)`: pitch, yaw, roll (Ditto's
    /// motion space mixes poses there).
    pub pose_bins: [Tensor; 3],
}

impl KeypointInfo {
    /// The keypoints in the face's own pose (the reference's `transform_keypoint`).
    pub fn keypoints(&self) -> Tensor {
        let rotation = stitching::rotation(&self.pitch, &self.yaw, &self.roll);
        stitching::transform_keypoints(&self.kp, &rotation, &self.exp, &self.scale, &self.t)
    }
}

/// All of LivePortrait's networks, on one device, in one precision.
pub struct LivePortrait {
    pub config: LivePortraitConfig,
    pub precision: Precision,
    pub appearance: AppearanceFeatureExtractor,
    pub motion: MotionExtractor,
    pub warping: WarpingModule,
    pub generator: SpadeGenerator,
    pub stitching: StitchingRetargeting,
}

impl LivePortrait {
    /// Builds every network from the weights `open` gives for each component name,
    /// requiring every tensor to be used. F, M, W and G compute in `precision`; the
    /// stitching and retargeting MLPs, a few hundred multiply-adds that move keypoints,
    /// always in float32.
    pub fn load_files<E: From<WeightsError>>(
        config: &LivePortraitConfig,
        precision: Precision,
        mut open: impl FnMut(&str) -> Result<Weights, E>,
    ) -> Result<Self, E> {
        let kind = precision.kind();
        let mut open_in = |name: &str| open(name).map(|w| w.with_compute_kind(kind));
        let mut w = open_in("appearance_feature_extractor")?;
        let appearance =
            AppearanceFeatureExtractor::new(&mut w, &config.appearance_feature_extractor_params)?;
        w.finish()?;
        let mut w = open_in("motion_extractor")?;
        let motion = MotionExtractor::new(&mut w, &config.motion_extractor_params)?;
        w.finish()?;
        let mut w = open_in("warping_module")?;
        let warping = WarpingModule::new(&mut w, &config.warping_module_params)?;
        w.finish()?;
        let mut w = open_in("spade_generator")?;
        let generator = SpadeGenerator::new(&mut w, &config.spade_generator_params)?;
        w.finish()?;
        let mut w = open("stitching_retargeting_module")?;
        let stitching =
            StitchingRetargeting::new(&mut w, &config.stitching_retargeting_module_params)?;
        w.finish()?;
        Ok(Self {
            config: config.clone(),
            precision,
            appearance,
            motion,
            warping,
            generator,
            stitching,
        })
    }

    /// What the motion extractor finds in a face image `(B, 3, H, W)` in `[0, 1]`.
    pub fn keypoint_info(&self, image: &Tensor) -> KeypointInfo {
        let heads = self.motion.forward(image);
        let batch = heads.kp.size()[0];
        KeypointInfo {
            pose_bins: [
                heads.pitch.shallow_clone(),
                heads.yaw.shallow_clone(),
                heads.roll.shallow_clone(),
            ],
            pitch: stitching::bins_to_degrees(&heads.pitch),
            yaw: stitching::bins_to_degrees(&heads.yaw),
            roll: stitching::bins_to_degrees(&heads.roll),
            t: heads.t,
            exp: heads.exp.view([batch, -1, 3]),
            scale: heads.scale,
            kp: heads.kp.view([batch, -1, 3]),
        }
    }

    /// The face of feature volume `f_s` with keypoints `x_s`, drawn with its keypoints
    /// at `x_d`: warping module, then generator. `(B, 3, H, W)` in `[0, 1]`.
    pub fn decode(&self, f_s: &Tensor, x_s: &Tensor, x_d: &Tensor) -> Tensor {
        let warped = self.warping.forward(f_s, x_d, x_s);
        self.generator.forward(&warped.out)
    }

    /// Every (component, key, shape) the networks of `config` have, as the official
    /// checkpoint files name them (spectral-norm triples and BatchNorm counters
    /// included; counters have shape []).
    pub fn parameter_list(
        config: &LivePortraitConfig,
    ) -> Result<Vec<(String, String, Vec<i64>)>, WeightsError> {
        let mut all = Vec::new();
        let mut record = |name: &str,
                          build: &dyn Fn(&mut Weights) -> Result<(), WeightsError>|
         -> Result<(), WeightsError> {
            let mut w = Weights::recorder(name);
            build(&mut w)?;
            for (key, shape) in w.finish()? {
                all.push((name.to_string(), key, shape));
            }
            Ok(())
        };
        record("appearance_feature_extractor", &|w| {
            AppearanceFeatureExtractor::new(w, &config.appearance_feature_extractor_params)
                .map(drop)
        })?;
        record("motion_extractor", &|w| {
            MotionExtractor::new(w, &config.motion_extractor_params).map(drop)
        })?;
        record("warping_module", &|w| {
            WarpingModule::new(w, &config.warping_module_params).map(drop)
        })?;
        record("spade_generator", &|w| {
            SpadeGenerator::new(w, &config.spade_generator_params).map(drop)
        })?;
        record("stitching_retargeting_module", &|w| {
            StitchingRetargeting::new(w, &config.stitching_retargeting_module_params).map(drop)
        })?;
        Ok(all)
    }
}
