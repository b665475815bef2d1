//! The builtin engine: needs no downloaded weights.

use std::sync::Arc;

use tch::{Device, Tensor};

use super::{
    AudioWindow, Engine, EngineError, FrameSize, Motion, PreparedSource, SourceHints,
    SourcePreparer, guarded,
};
use crate::face;
use crate::portrait::Portrait;
use crate::render::fit::{self, Placement};
use crate::render::warp::FaceRig;

pub struct BuiltinEngine {
    device: Device,
    rig: Option<CachedRig>,
}

/// The rig of one (source, frame size) pair, kept on the device.
struct CachedRig {
    source_id: u64,
    size: FrameSize,
    rig: FaceRig,
}

impl BuiltinEngine {
    pub fn new(device: Device) -> Self {
        Self { device, rig: None }
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
        0
    }

    fn reset(&mut self, _seed: u64) {}

    fn source_preparer(&self) -> Arc<dyn SourcePreparer> {
        Arc::new(BuiltinPreparer)
    }

    fn motion(&mut self, _audio: &AudioWindow<'_>) -> Result<Motion, EngineError> {
        Ok(Motion::neutral())
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
