//! Where audio becomes motion and motion becomes frames.
//!
//! An [`Engine`] is driven by the element, one frame at a time:
//! 1. once per portrait, off the streaming thread, its [`SourcePreparer`] turns the decoded
//!    image into a [`PreparedSource`] (face analysis and the like);
//! 2. per frame, [`Engine::motion`] turns the frame's [`AudioWindow`] into a [`Motion`];
//! 3. per frame, [`Engine::render`] draws the prepared source in that motion, at the
//!    negotiated size, as a `(3, height, width)` float tensor in `[0, 1]` on the engine's
//!    device. The element packs it into the output buffer.
//!
//! Nothing here knows about GStreamer.

pub mod builtin;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::portrait::{Portrait, PortraitError};
use crate::timeline::FrameRate;

/// Size of the frames to render, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameSize {
    pub width: u32,
    pub height: u32,
}

/// The audio an engine sees for one frame: 16 kHz mono samples in `[-1, 1]`, from
/// `history` samples before the frame to `lookahead` samples after it. Where there is no
/// audio (before the stream, after its end, in gaps) the samples are zero.
#[derive(Debug, Clone, Copy)]
pub struct AudioWindow<'a> {
    pub samples: &'a [f32],
    /// Index in `samples` of the frame's first sample.
    pub frame_start: usize,
    /// Number of samples the frame covers (one frame period).
    pub frame_len: usize,
    /// Frame number in the current segment.
    pub frame_index: u64,
    pub rate: FrameRate,
}

impl AudioWindow<'_> {
    /// The samples of the frame itself.
    pub fn frame_samples(&self) -> &[f32] {
        &self.samples[self.frame_start..self.frame_start + self.frame_len]
    }

    /// Samples available after the frame's end.
    pub fn lookahead(&self) -> usize {
        self.samples.len() - self.frame_start - self.frame_len
    }
}

/// How the face moves in one frame. All zeros is the portrait as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Motion {
    /// Mouth opening, 0 = as in the portrait (closed) .. 1 = wide open.
    pub mouth_open: f32,
}

impl Motion {
    /// The portrait as it is: no mouth movement, eyes as photographed, head still.
    pub fn neutral() -> Self {
        Self::default()
    }
}

/// A portrait made ready for rendering; engine independent data plus what its engine
/// derived from it.
#[derive(Debug)]
pub struct PreparedSource {
    /// Unique per preparation: renderers key their caches on it.
    pub id: u64,
    pub portrait: Portrait,
}

impl PreparedSource {
    pub fn new(portrait: Portrait) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            portrait,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "model \"{0}\" is not available: this version has only the \"builtin\" engine \
         (neural model bundles are planned, see the README)"
    )]
    UnknownModel(String),
    #[error(transparent)]
    Portrait(#[from] PortraitError),
    #[error("{context}: {source}")]
    Tensor {
        context: String,
        source: tch::TchError,
    },
}

/// Adds what was being done to a libtorch error.
pub trait TensorContext<T> {
    fn context(self, context: impl Into<String>) -> Result<T, EngineError>;
}

impl<T> TensorContext<T> for Result<T, tch::TchError> {
    fn context(self, context: impl Into<String>) -> Result<T, EngineError> {
        self.map_err(|source| EngineError::Tensor {
            context: context.into(),
            source,
        })
    }
}

/// Turns decoded portraits into prepared sources. Shared with the threads that prepare a
/// new portrait while the stream runs, so it must not hold per-stream state.
pub trait SourcePreparer: Send + Sync {
    fn prepare(&self, portrait: Portrait) -> Result<PreparedSource, EngineError>;
}

/// A talking-face generator. Owned by one thread at a time (the element's streaming task).
pub trait Engine: Send {
    /// The device frames are computed on.
    fn device(&self) -> tch::Device;

    /// How much audio before a frame's start the engine wants to see.
    fn history_samples(&self) -> usize;

    /// Forgets the stream so far (new segment, flush): smoothing, blink timers and such.
    /// Random motion restarts from `seed`, so a stream replays identically.
    fn reset(&mut self, seed: u64);

    /// The object that prepares portraits, usable from any thread.
    fn source_preparer(&self) -> Arc<dyn SourcePreparer>;

    /// The motion of one frame, from its audio window. Called once per frame, in order.
    fn motion(&mut self, audio: &AudioWindow<'_>) -> Result<Motion, EngineError>;

    /// Draws `source` in `motion` at `size`: a `(3, height, width)` float tensor in
    /// `[0, 1]` on [`Engine::device`], the whole portrait visible (letterboxed).
    fn render(
        &mut self,
        motion: &Motion,
        source: &PreparedSource,
        size: FrameSize,
    ) -> Result<tch::Tensor, EngineError>;
}

/// The engine a `model` property value names.
pub fn create(model: &str, device: tch::Device) -> Result<Box<dyn Engine>, EngineError> {
    match model {
        "builtin" => Ok(Box::new(builtin::BuiltinEngine::new(device))),
        other => Err(EngineError::UnknownModel(other.to_owned())),
    }
}
