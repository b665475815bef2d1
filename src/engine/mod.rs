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
pub mod joyvasa;
pub mod liveportrait;
pub mod offline;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::face::{FaceAnalysis, FaceBox, FaceError};
use crate::liveportrait::Precision;
use crate::portrait::{Portrait, PortraitError};
use crate::render::crop::CropSettings;
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

/// How the face looks in one frame. The default is a face at rest: lips closed, eyes
/// open, head still. Neural motion engines also give LivePortrait keypoint motion
/// ([`KeypointMotion`]); renderers that understand it draw that instead. (A portrait photographed with parted lips is drawn as it is at
/// `mouth_open` = the engine's rest opening for it; at 0 its lips close.)
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Motion {
    /// Lip separation: 0 = closed .. 1 = wide open.
    pub mouth_open: f32,
    /// Lip corners: -1 = drawn in .. 0 = rest .. 1 = spread (as in "ee").
    pub mouth_width: f32,
    /// Lip rounding/protrusion (as in "oo", "w"): 0 .. 1.
    pub mouth_round: f32,
    /// Eyelid closure per eye (image left, image right): 0 = open .. 1 = closed.
    pub blink_left: f32,
    pub blink_right: f32,
    /// Eyebrow raise: 0 .. 1.
    pub brow_raise: f32,
    /// Head rotation in radians: turning (positive = towards image right), nodding
    /// (positive = chin down) and tilting (positive = clockwise on screen).
    pub yaw: f32,
    pub pitch: f32,
    pub roll: f32,
    /// Head translation in inter-ocular distances (positive = right, down).
    pub shift_x: f32,
    pub shift_y: f32,
    /// LivePortrait motion from a neural motion generator (JoyVASA), when there is one.
    pub keypoints: Option<KeypointMotion>,
}

/// One frame of generated LivePortrait motion, with what the renderer needs to apply
/// it the way the reference pipeline does (relative to the stream's first frame).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeypointMotion {
    /// This frame's generated motion.
    pub current: crate::joyvasa::FrameMotion,
    /// The stream's first generated frame: motion is applied relative to it.
    pub reference: crate::joyvasa::FrameMotion,
    /// Scale of the expression change (1 = as generated).
    pub expression_scale: f32,
    /// Scale of the head's turn, scale change and translation (1 = as generated).
    pub head_motion: f32,
    /// How far the lips are pulled to the portrait's closed mouth: 0 while speaking,
    /// 1 in silence.
    pub mouth_rest: f32,
}

impl Motion {
    /// The face at rest (see the type's documentation).
    pub fn neutral() -> Self {
        Self::default()
    }
}

/// Live controls of the motion (element properties that may change while playing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotionControls {
    /// Head motion scale: 0 = still .. 1 = natural .. 2 = lively.
    pub head_motion: f32,
    /// Neural motion: classifier-free guidance scale on the audio.
    pub cfg_scale: f32,
    /// Neural motion: diffusion sampling steps (0 = as many as the model was trained
    /// with).
    pub sampling_steps: u32,
    /// Neural motion: scale of the expression change (1 = as generated).
    pub expression_scale: f32,
}

/// JoyVASA's inference default.
pub const DEFAULT_CFG_SCALE: f32 = 2.8;

impl Default for MotionControls {
    fn default() -> Self {
        Self {
            head_motion: 1.0,
            cfg_scale: DEFAULT_CFG_SCALE,
            sampling_steps: 0,
            expression_scale: 1.0,
        }
    }
}

/// A portrait made ready for rendering: the image and where its face is.
pub struct PreparedSource {
    /// Unique per preparation: renderers key their caches on it.
    pub id: u64,
    pub portrait: Portrait,
    pub face: FaceAnalysis,
    /// What an engine computed beyond the face analysis (a neural engine's feature
    /// volume and keypoints), for that engine's `render` to downcast.
    pub extra: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for PreparedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedSource")
            .field("id", &self.id)
            .field("portrait", &self.portrait)
            .field("face", &self.face)
            .field("extra", &self.extra.is_some())
            .finish()
    }
}

impl PreparedSource {
    pub fn new(portrait: Portrait, face: FaceAnalysis) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            portrait,
            face,
            extra: None,
        }
    }
}

/// What the user told us about the portrait.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SourceHints {
    /// The face's box in image pixels, instead of detecting it.
    pub face_box: Option<FaceBox>,
    /// The window around the face that neural renderers see.
    pub crop: CropSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "model \"{0}\" is neither \"builtin\" nor a model bundle directory (make one from \
         the LivePortrait checkpoints with tools/liveportrait/convert.py, see the README)"
    )]
    UnknownModel(String),
    #[error("{0}")]
    Precision(String),
    #[error(transparent)]
    Bundle(#[from] crate::liveportrait::BundleError),
    #[error(transparent)]
    Portrait(#[from] PortraitError),
    #[error(transparent)]
    Face(#[from] FaceError),
    #[error(transparent)]
    MouthModel(#[from] builtin::mouth::MouthModelError),
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
    /// Names what the preparation depends on (the engine and its weights), for
    /// [`prepare_file`]'s cache.
    fn cache_key(&self) -> String;

    fn prepare(
        &self,
        portrait: Portrait,
        hints: &SourceHints,
    ) -> Result<PreparedSource, EngineError>;
}

/// Identifies a preparation: the same file (by path, size and modification time), the
/// same hints and the same engine give the same result.
#[derive(Debug, Clone, PartialEq)]
struct PreparedKey {
    engine: String,
    path: std::path::PathBuf,
    len: u64,
    modified: Option<std::time::SystemTime>,
    hints: SourceHints,
}

/// How many prepared portraits the process keeps.
const PREPARED_CACHE_SIZE: usize = 8;

/// Loads and prepares the portrait at `path`, reusing a preparation of the same file
/// made earlier in this process (state changes back and forth, several elements): face
/// analysis takes a few hundred milliseconds that a pipeline restart should not pay.
pub fn prepare_file(
    preparer: &dyn SourcePreparer,
    path: &std::path::Path,
    hints: &SourceHints,
) -> Result<Arc<PreparedSource>, EngineError> {
    static CACHE: std::sync::Mutex<Vec<(PreparedKey, Arc<PreparedSource>)>> =
        std::sync::Mutex::new(Vec::new());
    // A file that cannot be inspected is loaded (and fails) without the cache.
    let key = std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|metadata| PreparedKey {
            engine: preparer.cache_key(),
            path: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()),
            len: metadata.len(),
            modified: metadata.modified().ok(),
            hints: *hints,
        });
    let lock = || {
        CACHE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    if let Some(key) = &key
        && let Some((_, hit)) = lock().iter().find(|(k, _)| k == key)
    {
        return Ok(hit.clone());
    }
    let prepared = Arc::new(preparer.prepare(Portrait::load(path)?, hints)?);
    if let Some(key) = key {
        let mut cache = lock();
        cache.retain(|(k, _)| k != &key);
        if cache.len() >= PREPARED_CACHE_SIZE {
            cache.remove(0);
        }
        cache.push((key, prepared.clone()));
    }
    Ok(prepared)
}

/// Runs tensor code that may panic inside libtorch (out of memory, a device lost) and
/// turns a panic into an error naming what was being done.
pub fn guarded<T>(context: &str, work: impl FnOnce() -> T) -> Result<T, EngineError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown failure");
        EngineError::Tensor {
            context: context.to_owned(),
            source: tch::TchError::Torch(what.to_owned()),
        }
    })
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

    /// New live controls; engines ease into them rather than jump.
    fn set_controls(&mut self, _controls: MotionControls) {}

    /// How much audio after a frame's end the engine wants before drawing it, given
    /// the lookahead the user allows (`latency`) and whether the stream is live. Engines
    /// that work on whole windows of audio ask for more when the stream is not live.
    fn lookahead_samples(&self, allowed: u64, _live: bool) -> u64 {
        allowed
    }

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

/// The engine a `model` property value names: `builtin`, or the directory of a model
/// bundle. `precision` is what LivePortrait's networks compute in; the builtin engine
/// and JoyVASA's motion generator always compute in float32.
pub fn create(
    model: &str,
    device: tch::Device,
    precision: Precision,
) -> Result<Box<dyn Engine>, EngineError> {
    match model {
        "builtin" => Ok(Box::new(builtin::BuiltinEngine::new(device)?)),
        dir if std::path::Path::new(dir).is_dir() => {
            precision
                .check_device(device)
                .map_err(EngineError::Precision)?;
            let dir = std::path::Path::new(dir);
            let manifest = crate::liveportrait::BundleManifest::read(dir)?;
            if manifest.joyvasa.is_some() {
                Ok(Box::new(joyvasa::JoyVasaEngine::new(
                    dir, device, precision,
                )?))
            } else {
                Ok(Box::new(liveportrait::LivePortraitEngine::new(
                    dir, device, precision,
                )?))
            }
        }
        other => Err(EngineError::UnknownModel(other.to_owned())),
    }
}
