//! Where frames get drawn: the other axis of the engine. A [`Renderer`] turns a
//! portrait prepared once ([`PreparedSource`]) and one frame's [`Motion`] into a frame;
//! it says which kinds of motion it draws.
//!
//! - [`warp`]: the builtin renderer, a dense warp of the portrait driven by face
//!   parameters; needs no downloaded weights.
//! - [`liveportrait`]: LivePortrait's networks from a bundle; draws face parameters
//!   (through its retargeting networks) and keypoint motion.
//!
//! Shared parts: placing the portrait in the frame ([`fit`]), the neural renderer's
//! face window and paste-back ([`crop`]), packing finished frames into the byte layouts
//! video buffers use ([`pack`]).

pub mod crop;
pub mod fit;
pub mod liveportrait;
pub mod pack;
pub mod warp;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tch::{Device, Tensor};

use crate::core::{CpuThreads, Error, FrameSize, Motion, MotionKind, PortraitCues, lock};
use crate::face::{FaceAnalysis, FaceBox};
use crate::portrait::Portrait;
use crate::render::crop::CropSettings;

/// Draws frames. Owned by one thread at a time (the element's streaming task).
pub trait Renderer: Send {
    /// The renderer's name, for messages.
    fn name(&self) -> &'static str;

    /// Whether it can draw motion of `kind`.
    fn draws(&self, kind: MotionKind) -> bool;

    /// The device frames are computed on.
    fn device(&self) -> Device;

    /// How many CPU threads its work wants (see [`crate::core::threads`]).
    fn cpu_threads(&self) -> CpuThreads;

    /// The object that prepares portraits for this renderer, usable from any thread.
    fn source_preparer(&self) -> Arc<dyn SourcePreparer>;

    /// Draws `source` in `motion` at `size`: a `(3, height, width)` float tensor in
    /// `[0, 1]` on [`Renderer::device`], the whole portrait visible (letterboxed).
    fn render(
        &mut self,
        motion: &Motion,
        source: &PreparedSource,
        size: FrameSize,
    ) -> Result<Tensor, Error>;
}

/// The error of a motion a renderer does not draw (an engine checks the pair first, so
/// this is a programming error made visible rather than a panic).
pub fn cannot_draw(renderer: &str, motion: &Motion) -> Error {
    Error::compute(
        format!("rendering with {renderer}"),
        format!("this renderer does not draw {}", motion.kind()),
    )
}

/// A portrait made ready for rendering: the image and where its face is.
pub struct PreparedSource {
    /// Unique per preparation: renderers key their caches on it.
    pub id: u64,
    pub portrait: Portrait,
    pub face: FaceAnalysis,
    /// What a renderer computed beyond the face analysis (a neural renderer's feature
    /// volume and keypoints), for that renderer's `render` to downcast.
    pub extra: Option<Box<dyn std::any::Any + Send + Sync>>,
    /// What motion sources may condition on (the engine hands it to them).
    pub cues: PortraitCues,
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
            cues: PortraitCues::default(),
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

/// Turns decoded portraits into prepared sources. Shared with the threads that prepare a
/// new portrait while the stream runs, so it must not hold per-stream state.
pub trait SourcePreparer: Send + Sync {
    /// Names what the preparation depends on (the renderer and its weights), for
    /// [`prepare_file`]'s cache.
    fn cache_key(&self) -> String;

    fn prepare(&self, portrait: Portrait, hints: &SourceHints) -> Result<PreparedSource, Error>;
}

/// Identifies a preparation: the same file (by path, size and modification time), the
/// same hints and the same renderer give the same result.
#[derive(Debug, Clone, PartialEq)]
struct PreparedKey {
    renderer: String,
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
) -> Result<Arc<PreparedSource>, Error> {
    static CACHE: std::sync::Mutex<Vec<(PreparedKey, Arc<PreparedSource>)>> =
        std::sync::Mutex::new(Vec::new());
    // A file that cannot be inspected is loaded (and fails) without the cache.
    let key = std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|metadata| PreparedKey {
            renderer: preparer.cache_key(),
            path: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()),
            len: metadata.len(),
            modified: metadata.modified().ok(),
            hints: *hints,
        });
    if let Some(key) = &key
        && let Some((_, hit)) = lock(&CACHE).iter().find(|(k, _)| k == key)
    {
        return Ok(hit.clone());
    }
    let prepared = Arc::new(preparer.prepare(Portrait::load(path)?, hints)?);
    if let Some(key) = key {
        let mut cache = lock(&CACHE);
        cache.retain(|(k, _)| k != &key);
        if cache.len() >= PREPARED_CACHE_SIZE {
            cache.remove(0);
        }
        cache.push((key, prepared.clone()));
    }
    Ok(prepared)
}

/// A value built for one (prepared source, frame size) pair and kept until either
/// changes (a renderer's rig or paste-back: a new portrait or a frame-size change costs
/// one rebuild).
pub struct PerSourceAndSize<T> {
    cached: Option<(u64, FrameSize, T)>,
}

impl<T> Default for PerSourceAndSize<T> {
    fn default() -> Self {
        Self { cached: None }
    }
}

impl<T> PerSourceAndSize<T> {
    /// The value for `source` at `size`, built by `build` when stale.
    pub fn get_or_build(
        &mut self,
        source: &PreparedSource,
        size: FrameSize,
        build: impl FnOnce() -> Result<T, Error>,
    ) -> Result<&T, Error> {
        let stale = self
            .cached
            .as_ref()
            .is_none_or(|(id, cached_size, _)| *id != source.id || *cached_size != size);
        if stale {
            self.cached = Some((source.id, size, build()?));
        }
        Ok(&self.cached.as_ref().expect("filled above").2)
    }
}
