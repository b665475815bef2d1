//! The builtin engine: needs no downloaded weights.

use std::sync::Arc;

use tch::{Device, Tensor};

use super::{AudioWindow, Engine, EngineError, FrameSize, Motion, PreparedSource, SourcePreparer};
use crate::portrait::Portrait;
use crate::render::fit::{self, Placement};

pub struct BuiltinEngine {
    device: Device,
    fitted: Option<FittedSource>,
}

/// The letterboxed portrait for one (source, frame size) pair, kept on the device.
struct FittedSource {
    source_id: u64,
    size: FrameSize,
    frame: Tensor,
}

impl BuiltinEngine {
    pub fn new(device: Device) -> Self {
        Self {
            device,
            fitted: None,
        }
    }

    fn fitted(
        &mut self,
        source: &PreparedSource,
        size: FrameSize,
    ) -> Result<&FittedSource, EngineError> {
        let stale = self
            .fitted
            .as_ref()
            .is_none_or(|f| f.source_id != source.id || f.size != size);
        if stale {
            let portrait = &source.portrait;
            let placement = Placement::new(portrait.width, portrait.height, size);
            let tensor = fit::portrait_tensor(portrait, self.device)?;
            let frame = fit::letterbox(&tensor, &placement, size)?;
            self.fitted = Some(FittedSource {
                source_id: source.id,
                size,
                frame,
            });
        }
        Ok(self.fitted.as_ref().expect("filled above"))
    }
}

struct BuiltinPreparer;

impl SourcePreparer for BuiltinPreparer {
    fn prepare(&self, portrait: Portrait) -> Result<PreparedSource, EngineError> {
        Ok(PreparedSource::new(portrait))
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
        _motion: &Motion,
        source: &PreparedSource,
        size: FrameSize,
    ) -> Result<Tensor, EngineError> {
        let _no_grad = tch::no_grad_guard();
        Ok(self.fitted(source, size)?.frame.shallow_clone())
    }
}
