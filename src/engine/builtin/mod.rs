//! The builtin engine: needs no downloaded weights.

pub mod features;
pub mod motion;
pub mod mouth;
pub mod visemes;

use std::sync::Arc;

use tch::{Device, Tensor};

use self::motion::MotionGenerator;
use self::mouth::{CONTEXT_BEHIND, MouthModel};
use super::{
    AudioWindow, Engine, EngineError, FrameSize, Motion, MotionControls, PreparedSource,
    SourceHints, SourcePreparer, guarded,
};
use crate::face;
use crate::portrait::Portrait;
use crate::render::fit::{self, Placement};
use crate::render::warp::FaceRig;

/// The trained mouth model, shipped in the repository (see models/builtin/manifest.json)
/// and embedded in the library.
static MOUTH_WEIGHTS: &[u8] = include_bytes!("../../../models/builtin/mouth.safetensors");
pub const MOUTH_WEIGHTS_NAME: &str = "models/builtin/mouth.safetensors";

pub struct BuiltinEngine {
    device: Device,
    mouth: MouthModel,
    motion: MotionGenerator,
    controls: MotionControls,
    rig: Option<CachedRig>,
}

/// The rig of one (source, frame size) pair, kept on the device.
struct CachedRig {
    source_id: u64,
    size: FrameSize,
    rig: FaceRig,
}

impl BuiltinEngine {
    pub fn new(device: Device) -> Result<Self, EngineError> {
        Ok(Self {
            device,
            mouth: MouthModel::load_bytes(MOUTH_WEIGHTS, MOUTH_WEIGHTS_NAME, device)?,
            motion: MotionGenerator::new(0),
            controls: MotionControls::default(),
            rig: None,
        })
    }

    /// The rig for `source` at `size`, built on first use (a frame-size change or a new
    /// portrait costs one rebuild, a few milliseconds).
    pub fn rig(
        &mut self,
        source: &PreparedSource,
        size: FrameSize,
    ) -> Result<&FaceRig, EngineError> {
        let stale = self
            .rig
            .as_ref()
            .is_none_or(|r| r.source_id != source.id || r.size != size);
        if stale {
            let portrait = &source.portrait;
            let placement = Placement::new(portrait.width, portrait.height, size);
            let tensor = fit::portrait_tensor(portrait, self.device)?;
            let frame = fit::letterbox(&tensor, &placement, size)?;
            let rig = guarded("preparing the face rig", || {
                FaceRig::new(&source.face.layout, &placement, &frame, size)
            })??;
            self.rig = Some(CachedRig {
                source_id: source.id,
                size,
                rig,
            });
        }
        Ok(&self.rig.as_ref().expect("filled above").rig)
    }
}

struct BuiltinPreparer;

impl SourcePreparer for BuiltinPreparer {
    fn kind(&self) -> &'static str {
        "builtin"
    }

    fn prepare(
        &self,
        portrait: Portrait,
        hints: &SourceHints,
    ) -> Result<PreparedSource, EngineError> {
        let face = face::analyze(&portrait, hints.face_box)?;
        Ok(PreparedSource::new(portrait, face))
    }
}

impl Engine for BuiltinEngine {
    fn device(&self) -> Device {
        self.device
    }

    fn history_samples(&self) -> usize {
        // The model looks 200 ms behind the frame's centre, with 12.5 ms half windows.
        CONTEXT_BEHIND * features::HOP + features::WINDOW / 2
    }

    fn reset(&mut self, seed: u64) {
        self.motion = MotionGenerator::new(seed);
    }

    fn set_controls(&mut self, controls: MotionControls) {
        self.controls = controls;
    }

    fn source_preparer(&self) -> Arc<dyn SourcePreparer> {
        Arc::new(BuiltinPreparer)
    }

    fn motion(&mut self, audio: &AudioWindow<'_>) -> Result<Motion, EngineError> {
        // The mouth is drawn for the middle of the frame's time span.
        let centre = (audio.frame_start + audio.frame_len / 2) as i64;
        let mouth = guarded("running the mouth model", || {
            self.mouth
                .predict(audio.samples, centre, audio.samples.len() as i64)
        })?;
        let level = features::level_db(audio.frame_samples());
        let dt = audio.frame_len as f64 / f64::from(crate::timeline::SAMPLE_RATE);
        Ok(self.motion.next(mouth, level, dt, self.controls))
    }

    fn render(
        &mut self,
        motion: &Motion,
        source: &PreparedSource,
        size: FrameSize,
    ) -> Result<Tensor, EngineError> {
        let rig = self.rig(source, size)?;
        guarded("rendering a frame", || rig.render(motion))
    }
}
