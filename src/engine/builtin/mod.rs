//! The builtin engine: needs no downloaded weights.

pub mod features;
pub mod motion;
pub mod mouth;
pub mod random;
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
use crate::render::fit;
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
        features::first_fft_alone();
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
            let (placement, frame) = fit::fitted_frame(&source.portrait, size, self.device)?;
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
    fn cache_key(&self) -> String {
        "builtin".into()
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
        one_cpu_thread(self.device);
        // The mouth is drawn for the middle of the frame's time span.
        let centre = (audio.frame_start + audio.frame_len / 2) as i64;
        let padded = pad_before_stream_start(audio);
        let samples = padded.as_deref().unwrap_or(audio.samples);
        let mouth = guarded("running the mouth model", || {
            self.mouth.predict(samples, centre, samples.len() as i64)
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
        one_cpu_thread(self.device);
        let rig = self.rig(source, size)?;
        guarded("rendering a frame", || rig.render(motion))
    }
}

thread_local! {
    static ONE_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs this engine's libtorch CPU work on the calling thread alone. Its tensors are
/// small (a face-sized region, a 31-frame feature window), so a second intra-op thread
/// gains little, and from a thread other than the process's first (the element's
/// streaming task) libtorch's OpenMP team makes it 2-3 times slower than one thread
/// (measured: motion 1.3 ms vs 0.5 ms, render 1.8 ms vs 1.2 ms per frame at 512x512 on
/// 2 cores). One thread also leaves the other cores to the encoder downstream.
/// libtorch's setting is per thread, but it also records the count for threads that
/// start using libtorch later; that record is put back from a short-lived thread, so
/// nothing else in the process changes.
fn one_cpu_thread(device: Device) {
    if device != Device::Cpu || ONE_THREAD.get() {
        return;
    }
    let before = tch::get_num_threads();
    tch::set_num_threads(1);
    if before != 1 {
        let _ = std::thread::spawn(move || tch::set_num_threads(before)).join();
    }
    ONE_THREAD.set(true);
}

/// The window of one of the first frames of a stream, with the time before the stream
/// began filled by the stream's own first samples, mirrored (repeated if the window holds
/// fewer): the model then hears the start of a stream as continuing, not as an onset out
/// of silence. Otherwise a microphone's room noise opens the mouth for the first frames
/// (the model takes noise rising out of silence for speech). `None` when the window lies
/// wholly inside the stream.
fn pad_before_stream_start(audio: &AudioWindow<'_>) -> Option<Vec<f32>> {
    let stream_position = audio.rate.frame_start_sample(audio.frame_index) as i64;
    let before = audio.frame_start as i64 - stream_position;
    if before <= 0 {
        return None;
    }
    let before = before as usize;
    let heard = &audio.samples[before..];
    if heard.is_empty() {
        return None;
    }
    let mut padded = audio.samples.to_vec();
    for (i, sample) in padded[..before].iter_mut().enumerate() {
        // Sample `i` lies `before - i` samples before the start: mirror it into the
        // stream, wrapping round what is there.
        let distance = (before - 1 - i) % heard.len();
        *sample = heard[distance];
    }
    Some(padded)
}
