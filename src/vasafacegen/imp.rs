//! # vasafacegen
//!
//! Turns a still portrait (property `image`) and speech (16 kHz mono audio on the sink
//! pad) into a talking-face raw video stream on the src pad.
//!
//! ```text
//! gst-launch-1.0 filesrc location=speech.wav ! decodebin ! audioconvert ! audioresample \
//!     ! audio/x-raw,rate=16000,channels=1 ! vasafacegen image=portrait.png \
//!     ! videoconvert ! autovideosink
//! ```
//!
//! ## Timing
//! Frame `n` of a segment covers the audio `[n / fps, (n + 1) / fps)` after the segment's
//! first sample and has PTS = PTS of that first sample + `n / fps` (integer arithmetic on
//! sample counts, see `timeline`). `T` seconds of audio give exactly `ceil(T * fps)`
//! frames. Gaps in the audio timestamps (and GAP events) become silence, so the video
//! has no holes; overlaps are trimmed. EOS flushes every pending frame, then is forwarded.
//!
//! ## Threads
//! The sink pad converts and queues audio (at most `QUEUE_LIMIT_SAMPLES` ahead, then it
//! blocks upstream). A src pad task owns the engine and generates frames. Serialized
//! events travel through the same queue, so they stay in order with the frames.
//!
//! ## Latency
//! A frame can be generated once the audio up to its end plus the lookahead has
//! arrived, and then takes time to generate: the element adds lookahead + one frame
//! period + the longer of one frame period and the longest generation seen so far to
//! upstream's latency (and posts a latency message when that grows). The lookahead is
//! the `latency` property, except that an engine working on whole windows of audio
//! (JoyVASA) takes a whole window when upstream is not live.
//!
//! ## Models
//! `model=builtin` needs no download. `model=<dir>` names a model bundle converted by
//! tools/liveportrait/convert.py (see the README): from the LivePortrait checkpoints,
//! the builtin motion drawn by LivePortrait's networks; with JoyVASA's motion generator
//! in the bundle too, motion generated from the audio by its diffusion transformer
//! (`cfg-scale`, `sampling-steps`, `expression-scale`). The face is cropped by
//! `crop-scale` and `crop-offset-y`; `precision` picks the number format the
//! LivePortrait networks compute in (float16 only on CUDA).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};
use std::time::Instant;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_video::prelude::*;

use crate::core::frame::{ns_for_samples, samples_for_ns};
use crate::core::{
    self as vcore, DeviceRequest, FrameRate, FrameSize, FrameSpan, MotionControls, Precision,
    SAMPLE_RATE, SampleStore, device_name,
};
use crate::engine::{Engine, EngineSpec, ModelChoice};
use crate::face::{FaceBox, FaceError};
use crate::render::crop::{CropSettings, DEFAULT_CROP_OFFSET_Y, DEFAULT_CROP_SCALE};
use crate::render::pack::{PixelLayout, pack_frame};
use crate::render::{PreparedSource, SourceHints, SourcePreparer};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "vasafacegen",
        gst::DebugColorFlags::empty(),
        Some("Talking-face generator"),
    )
});

const DEFAULT_MODEL: &str = "builtin";
const DEFAULT_DEVICE: &str = "auto";
const DEFAULT_PRECISION: &str = "float32";
const DEFAULT_SEED: u64 = 0;
const DEFAULT_LATENCY_MS: u32 = 100;
const DEFAULT_HEAD_MOTION: f64 = 1.0;
const MAX_HEAD_MOTION: f64 = 2.0;
const MAX_LATENCY_MS: u32 = 2_000;
const MAX_CFG_SCALE: f64 = 10.0;
const MAX_SAMPLING_STEPS: u32 = 1_000;
const MAX_EXPRESSION_SCALE: f64 = 2.0;
const MIN_CROP_SCALE: f64 = 1.0;
const MAX_CROP_SCALE: f64 = 4.0;
const MAX_CROP_OFFSET_Y: f64 = 0.5;
const DEFAULT_WIDTH: i32 = 512;
const DEFAULT_HEIGHT: i32 = 512;
const MIN_SIZE: i32 = 64;
const MAX_SIZE: i32 = 4096;
const DEFAULT_FPS: (i32, i32) = (25, 1);
const MAX_FPS: i32 = 120;

/// Audio the sink pad may queue ahead of the generator before it blocks upstream.
const QUEUE_LIMIT_SAMPLES: usize = SAMPLE_RATE as usize / 2;
/// Timestamp jitter tolerated before audio counts as a gap or an overlap (the same
/// default as audiobasesink's alignment-threshold).
const RESYNC_THRESHOLD_SAMPLES: u64 = SAMPLE_RATE as u64 * 40 / 1000;
/// Silence for a gap is added in slices of this many samples, frames in between, so a
/// gap of an hour costs no more memory than one of a second.
const SILENCE_SLICE_SAMPLES: u64 = SAMPLE_RATE as u64;

#[derive(Debug, Clone)]
struct Settings {
    image: Option<PathBuf>,
    face_box: Option<String>,
    model: String,
    device: String,
    precision: String,
    seed: u64,
    latency_ms: u32,
    head_motion: f64,
    crop_scale: f64,
    crop_offset_y: f64,
    cfg_scale: f64,
    sampling_steps: u32,
    expression_scale: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            image: None,
            face_box: None,
            model: DEFAULT_MODEL.to_owned(),
            device: DEFAULT_DEVICE.to_owned(),
            precision: DEFAULT_PRECISION.to_owned(),
            seed: DEFAULT_SEED,
            latency_ms: DEFAULT_LATENCY_MS,
            head_motion: DEFAULT_HEAD_MOTION,
            crop_scale: f64::from(DEFAULT_CROP_SCALE),
            crop_offset_y: f64::from(DEFAULT_CROP_OFFSET_Y),
            cfg_scale: f64::from(vcore::motion::DEFAULT_CFG_SCALE),
            sampling_steps: 0,
            expression_scale: 1.0,
        }
    }
}

impl Settings {
    fn lookahead_samples(&self) -> u64 {
        u64::from(self.latency_ms) * u64::from(SAMPLE_RATE) / 1000
    }

    fn crop(&self) -> CropSettings {
        CropSettings {
            scale: self.crop_scale as f32,
            offset_y: self.crop_offset_y as f32,
        }
    }
}

/// A string property's new value; unset (NULL) means its default.
fn string_or(value: &glib::Value, default: &str) -> String {
    value
        .get::<Option<String>>()
        .expect("type checked upstream")
        .unwrap_or_else(|| default.to_owned())
}

/// What the sink side hands to the src task, in stream order.
enum Item {
    Audio {
        pts: gst::ClockTime,
        samples: Vec<f32>,
    },
    Gap {
        start: gst::ClockTime,
        end: gst::ClockTime,
    },
    Segment(gst::Event),
    Eos(gst::Event),
    /// Any other serialized event, forwarded in order.
    Event(gst::Event),
}

impl Item {
    fn samples(&self) -> usize {
        match self {
            Self::Audio { samples, .. } => samples.len(),
            _ => 0,
        }
    }
}

/// State shared by the sink pad, the src task and property setters.
struct Shared {
    queue: VecDeque<Item>,
    queued_samples: usize,
    /// `Ok` while data may flow; otherwise why not (flushing, EOS, a downstream error),
    /// which the sink pad returns to upstream.
    flow: Result<gst::FlowSuccess, gst::FlowError>,
    /// EOS was received on the sink pad; refuse data until a flush or a new stream.
    eos: bool,
    audio_format: Option<gst_audio::AudioFormat>,
    segment: Option<gst::FormattedSegment<gst::ClockTime>>,
    /// Set by FLUSH_STOP: the task must forget the stream before the next item.
    reset_pending: bool,
    /// A portrait prepared while streaming, swapped in at the next frame boundary.
    new_source: Option<Arc<PreparedSource>>,
    /// Negotiated output frame rate, for the latency answer.
    frame_rate: Option<FrameRate>,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            queued_samples: 0,
            flow: Err(gst::FlowError::Flushing),
            eos: false,
            audio_format: None,
            segment: None,
            reset_pending: false,
            new_source: None,
            frame_rate: None,
        }
    }
}

impl Shared {
    fn clear_queue(&mut self) {
        self.queue.clear();
        self.queued_samples = 0;
    }
}

/// Negotiated output.
struct Output {
    caps: gst::Caps,
    info: gst_video::VideoInfo,
    layout: PixelLayout,
    rate: FrameRate,
    size: FrameSize,
    pool: gst::BufferPool,
}

/// Where frame 0 of the current run of frames sits. Starts at the first sample of a
/// segment; moves when downstream renegotiates the frame rate mid-stream.
#[derive(Debug, Clone, Copy)]
struct FrameClock {
    anchor_pts: gst::ClockTime,
    anchor_sample: u64,
    /// Frames produced since the anchor.
    frames: u64,
    /// Frames produced since the segment started (buffer offsets).
    frames_in_segment: u64,
}

/// Work the task has accepted but not finished absorbing (gaps are filled slice by slice).
enum Pending {
    Audio {
        pts: gst::ClockTime,
        samples: Vec<f32>,
    },
    Silence {
        until_sample: u64,
    },
}

/// Everything the src task owns. Locked only by the task, and by state changes and
/// FLUSH_STOP while the task is stopped or paused, so holding it across a push blocks
/// nobody.
#[derive(Default)]
struct Generator {
    engine: Option<Engine>,
    source: Option<Arc<PreparedSource>>,
    output: Option<Output>,
    clock: Option<FrameClock>,
    /// PTS of sample 0 of the segment.
    origin_pts: Option<gst::ClockTime>,
    audio: SampleStore,
    pending: Option<Pending>,
    segment_pushed: bool,
    /// Sticky events that arrived before caps and segment could be sent.
    held_events: Vec<gst::Event>,
    /// A Segment or EOS waiting until every frame of the audio before it is out.
    draining: Option<Item>,
    window: Vec<f32>,
    seed: u64,
    /// Whether upstream is live, asked at the stream's first frame.
    live: Option<bool>,
}

impl Generator {
    /// Anchors frame 0 at `pts` unless the segment already has an origin; returns it.
    fn start_clock(&mut self, pts: gst::ClockTime) -> gst::ClockTime {
        let origin = *self.origin_pts.get_or_insert(pts);
        self.clock.get_or_insert(FrameClock {
            anchor_pts: origin,
            anchor_sample: 0,
            frames: 0,
            frames_in_segment: 0,
        });
        origin
    }

    /// Forgets the current segment's audio and frames (not the engine, portrait or caps).
    fn reset_stream(&mut self) {
        self.live = None;
        self.clock = None;
        self.origin_pts = None;
        self.audio.clear();
        self.pending = None;
        self.draining = None;
        if let Some(engine) = self.engine.as_mut() {
            engine.reset(self.seed);
        }
    }
}

/// What one turn of the task sends downstream, in order.
enum Out {
    Event(gst::Event),
    Buffer(gst::Buffer),
}

#[derive(Default)]
struct Statistics {
    frames: AtomicU64,
    total_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Statistics {
    fn record(&self, ns: u64) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.total_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    fn reset(&self) {
        self.frames.store(0, Ordering::Relaxed);
        self.total_ns.store(0, Ordering::Relaxed);
        self.max_ns.store(0, Ordering::Relaxed);
    }

    fn mean_ms(&self) -> f64 {
        let frames = self.frames.load(Ordering::Relaxed);
        if frames == 0 {
            0.0
        } else {
            self.total_ns.load(Ordering::Relaxed) as f64 / frames as f64 / 1e6
        }
    }
}

pub struct VasaFaceGen {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    shared: Mutex<Shared>,
    /// Wakes the task when items arrive and the sink pad when the queue drains, and
    /// everyone on flush.
    cond: Condvar,
    generator: Mutex<Generator>,
    /// Prepares portraits for property changes while streaming; set in NULL->READY.
    preparer: Mutex<Option<Arc<dyn SourcePreparer>>>,
    /// Numbers portrait changes so that only the newest one is swapped in.
    image_generation: AtomicU64,
    /// True between READY->PAUSED and PAUSED->READY: portrait changes are then prepared
    /// in the background instead of at the next READY->PAUSED.
    streaming: AtomicBool,
    active_device: Mutex<Option<String>>,
    stats: Statistics,
    /// The lookahead an engine takes beyond `latency` (JoyVASA on a stream that is not
    /// live), in samples; `u64::MAX` while the lookahead is `latency`.
    engine_lookahead: AtomicU64,
    /// The generation time last included in a latency answer, in ns.
    reported_generation_ns: AtomicU64,
}

#[glib::object_subclass]
impl ObjectSubclass for VasaFaceGen {
    const NAME: &'static str = "GstVasaFaceGen";
    type Type = super::VasaFaceGen;
    type ParentType = gst::Element;

    fn with_class(class: &Self::Class) -> Self {
        let sinkpad = gst::Pad::builder_from_template(&class.pad_template("sink").unwrap())
            .chain_function(|pad, parent, buffer| {
                Self::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.sink_chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                Self::catch_panic_pad_function(parent, || false, |imp| imp.sink_event(pad, event))
            })
            .query_function(|pad, parent, query| {
                Self::catch_panic_pad_function(parent, || false, |imp| imp.sink_query(pad, query))
            })
            .activatemode_function(|pad, parent, mode, active| {
                Self::catch_panic_pad_function(
                    parent,
                    || Err(gst::loggable_error!(CAT, "sink activation panicked")),
                    |imp| imp.sink_activatemode(pad, mode, active),
                )
            })
            .build();
        let srcpad = gst::Pad::builder_from_template(&class.pad_template("src").unwrap())
            .event_function(|pad, parent, event| {
                Self::catch_panic_pad_function(parent, || false, |imp| imp.src_event(pad, event))
            })
            .query_function(|pad, parent, query| {
                Self::catch_panic_pad_function(parent, || false, |imp| imp.src_query(pad, query))
            })
            .activatemode_function(|pad, parent, mode, active| {
                Self::catch_panic_pad_function(
                    parent,
                    || Err(gst::loggable_error!(CAT, "src activation panicked")),
                    |imp| imp.src_activatemode(pad, mode, active),
                )
            })
            .build();
        Self {
            sinkpad,
            srcpad,
            settings: Mutex::new(Settings::default()),
            shared: Mutex::new(Shared::default()),
            cond: Condvar::new(),
            generator: Mutex::new(Generator::default()),
            preparer: Mutex::new(None),
            image_generation: AtomicU64::new(0),
            streaming: AtomicBool::new(false),
            active_device: Mutex::new(None),
            stats: Statistics::default(),
            engine_lookahead: AtomicU64::new(u64::MAX),
            reported_generation_ns: AtomicU64::new(0),
        }
    }
}

/// Locks a mutex even if a panicking thread poisoned it: every panic is already turned
/// into an element error, and the state behind these locks stays consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ObjectImpl for VasaFaceGen {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("image")
                    .nick("Portrait image")
                    .blurb(
                        "Path of the portrait to animate (PNG, JPEG or WebP; any size; one \
                         frontal face). Required. Can be changed while playing: the new \
                         portrait is prepared in the background and appears at a frame boundary",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("face-box")
                    .nick("Face box")
                    .blurb(
                        "Where the face is in the image, \"x,y,width,height\" in image pixels; \
                         skips face detection (for faces it misses). Empty: detect",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("model")
                    .nick("Model")
                    .blurb(
                        "Animation engine: \"builtin\" needs no downloaded weights; or the \
                         directory of a model bundle made by tools/liveportrait/convert.py: \
                         from the LivePortrait weights, the builtin motion drawn by the neural \
                         renderer; with JoyVASA's motion generator too, audio-driven neural \
                         motion (lips, expression, head)",
                    )
                    .default_value(Some(DEFAULT_MODEL))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("device")
                    .nick("Compute device")
                    .blurb(
                        "Where frames are computed: \"auto\" (first CUDA GPU, else CPU), \
                         \"cpu\", \"cuda\" or \"cuda:N\"",
                    )
                    .default_value(Some(DEFAULT_DEVICE))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("precision")
                    .nick("Neural precision")
                    .blurb(
                        "Number format of the neural renderer's networks (LivePortrait): \
                         \"float32\" (as trained), \"bfloat16\" (faster on CPUs with AVX-512 \
                         BF16 and on recent GPUs, slightly less exact) or \"float16\" (CUDA \
                         only; what the reference uses on a GPU). The builtin engine and the \
                         motion generator always use float32",
                    )
                    .default_value(Some(DEFAULT_PRECISION))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("active-device")
                    .nick("Active device")
                    .blurb("The device in use (\"cpu\", \"cuda:0\", ...), known from READY on")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("seed")
                    .nick("Random seed")
                    .blurb(
                        "Seed of the random motion (blinks, head movement; the neural motion \
                         generator's diffusion noise): the same audio, portrait and seed give \
                         the same video",
                    )
                    .default_value(DEFAULT_SEED)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("latency")
                    .nick("Audio lookahead (ms)")
                    .blurb(
                        "How many milliseconds of audio after a frame the engine may listen to \
                         before drawing it. More looks ahead for smoother lips; the pipeline's \
                         latency grows by the same amount",
                    )
                    .maximum(MAX_LATENCY_MS)
                    .default_value(DEFAULT_LATENCY_MS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("head-motion")
                    .nick("Head motion")
                    .blurb(
                        "How much the head moves: 0 = still, 1 = natural (livelier while \
                         speaking, gentle in silence), 2 = animated. Changes ease in over \
                         half a second",
                    )
                    .minimum(0.0)
                    .maximum(MAX_HEAD_MOTION)
                    .default_value(DEFAULT_HEAD_MOTION)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("crop-scale")
                    .nick("Face crop scale")
                    .blurb(
                        "Neural models: size of the square window around the face that the \
                         network animates, in face sizes (larger shows more hair and \
                         shoulders, in less detail)",
                    )
                    .minimum(MIN_CROP_SCALE)
                    .maximum(MAX_CROP_SCALE)
                    .default_value(f64::from(DEFAULT_CROP_SCALE))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("crop-offset-y")
                    .nick("Face crop vertical offset")
                    .blurb(
                        "Neural models: moves the window around the face along the face's \
                         vertical axis, in window sizes (negative = up)",
                    )
                    .minimum(-MAX_CROP_OFFSET_Y)
                    .maximum(MAX_CROP_OFFSET_Y)
                    .default_value(f64::from(DEFAULT_CROP_OFFSET_Y))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("cfg-scale")
                    .nick("Audio guidance scale")
                    .blurb(
                        "Neural motion (JoyVASA): classifier-free guidance on the audio; \
                         higher follows the speech more strongly, 1 = unguided. Applies from \
                         the next window of motion",
                    )
                    .minimum(0.0)
                    .maximum(MAX_CFG_SCALE)
                    .default_value(f64::from(vcore::motion::DEFAULT_CFG_SCALE))
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("sampling-steps")
                    .nick("Diffusion sampling steps")
                    .blurb(
                        "Neural motion (JoyVASA): denoising steps per window; 0 = as many as \
                         the model was trained with (best), fewer are faster (e.g. 10 on a \
                         CPU). Applies from the next window",
                    )
                    .maximum(MAX_SAMPLING_STEPS)
                    .default_value(0)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("expression-scale")
                    .nick("Expression scale")
                    .blurb(
                        "Neural motion (JoyVASA): how strongly the generated expression \
                         (brows, eyes, cheeks) changes the face; 0 = the portrait's own, \
                         1 = as generated. The lips always follow the speech",
                    )
                    .minimum(0.0)
                    .maximum(MAX_EXPRESSION_SCALE)
                    .default_value(1.0)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-produced")
                    .nick("Frames produced")
                    .blurb("Frames generated since the element last went to PAUSED")
                    .read_only()
                    .build(),
                glib::ParamSpecDouble::builder("mean-generation-ms")
                    .nick("Mean generation time (ms)")
                    .blurb("Mean time to generate one frame (motion, rendering, packing), in ms")
                    .read_only()
                    .build(),
                glib::ParamSpecDouble::builder("max-generation-ms")
                    .nick("Max generation time (ms)")
                    .blurb("Longest time taken to generate one frame, in ms")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        match pspec.name() {
            "image" => {
                let image = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|path| !path.is_empty())
                    .map(PathBuf::from);
                lock(&self.settings).image = image.clone();
                gst::info!(CAT, imp = self, "image set to {image:?}");
                if let Some(path) = image
                    && self.streaming.load(Ordering::SeqCst)
                {
                    self.prepare_in_background(path);
                }
            }
            "face-box" => {
                let face_box = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|text| !text.trim().is_empty());
                if let Some(Err(err)) = face_box.as_deref().map(str::parse::<FaceBox>) {
                    gst::warning!(CAT, imp = self, "{err}");
                }
                lock(&self.settings).face_box = face_box;
                self.portrait_hints_changed();
            }
            "crop-scale" | "crop-offset-y" => {
                let value: f64 = value.get().expect("type checked upstream");
                {
                    let mut settings = lock(&self.settings);
                    if pspec.name() == "crop-scale" {
                        settings.crop_scale = value;
                    } else {
                        settings.crop_offset_y = value;
                    }
                }
                self.portrait_hints_changed();
            }
            "model" => {
                lock(&self.settings).model = string_or(value, DEFAULT_MODEL);
            }
            "device" => {
                let device = string_or(value, DEFAULT_DEVICE);
                // Checked again (against the GPUs present) in NULL->READY, which fails with
                // an element error; a warning now helps gst-launch users find the typo.
                if let Err(err) = device.parse::<DeviceRequest>() {
                    gst::warning!(CAT, imp = self, "{err}");
                }
                lock(&self.settings).device = device;
            }
            "precision" => {
                let precision = string_or(value, DEFAULT_PRECISION);
                // Checked again in NULL->READY, which fails with an element error.
                if let Err(err) = precision.parse::<Precision>() {
                    gst::warning!(CAT, imp = self, "{err}");
                }
                lock(&self.settings).precision = precision;
            }
            "seed" => lock(&self.settings).seed = value.get().expect("type checked upstream"),
            "head-motion" => {
                lock(&self.settings).head_motion = value.get().expect("type checked upstream");
            }
            "cfg-scale" => {
                lock(&self.settings).cfg_scale = value.get().expect("type checked upstream");
            }
            "sampling-steps" => {
                lock(&self.settings).sampling_steps = value.get().expect("type checked upstream");
            }
            "expression-scale" => {
                lock(&self.settings).expression_scale = value.get().expect("type checked upstream");
            }
            "latency" => {
                let latency_ms: u32 = value.get().expect("type checked upstream");
                let changed = {
                    let mut settings = lock(&self.settings);
                    std::mem::replace(&mut settings.latency_ms, latency_ms) != latency_ms
                };
                if changed {
                    let _ = self
                        .obj()
                        .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
                }
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "image" => lock(&self.settings)
                .image
                .as_ref()
                .map(|path| path.to_string_lossy().into_owned())
                .to_value(),
            "face-box" => lock(&self.settings).face_box.to_value(),
            "model" => lock(&self.settings).model.to_value(),
            "device" => lock(&self.settings).device.to_value(),
            "precision" => lock(&self.settings).precision.to_value(),
            "active-device" => lock(&self.active_device).to_value(),
            "seed" => lock(&self.settings).seed.to_value(),
            "latency" => lock(&self.settings).latency_ms.to_value(),
            "head-motion" => lock(&self.settings).head_motion.to_value(),
            "cfg-scale" => lock(&self.settings).cfg_scale.to_value(),
            "sampling-steps" => lock(&self.settings).sampling_steps.to_value(),
            "expression-scale" => lock(&self.settings).expression_scale.to_value(),
            "crop-scale" => lock(&self.settings).crop_scale.to_value(),
            "crop-offset-y" => lock(&self.settings).crop_offset_y.to_value(),
            "frames-produced" => self.stats.frames.load(Ordering::Relaxed).to_value(),
            "mean-generation-ms" => self.stats.mean_ms().to_value(),
            "max-generation-ms" => {
                (self.stats.max_ns.load(Ordering::Relaxed) as f64 / 1e6).to_value()
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).expect("fresh pad");
        obj.add_pad(&self.srcpad).expect("fresh pad");
    }
}

impl GstObjectImpl for VasaFaceGen {}

impl ElementImpl for VasaFaceGen {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Talking-face generator",
                "Generator/Video/Filter/Converter",
                "Animates a still portrait into a lip-synced talking face from speech",
                "gst-plugin-vasafacegen developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let audio = gst_audio::AudioCapsBuilder::new_interleaved()
                .format_list([gst_audio::AudioFormat::F32le, gst_audio::AudioFormat::S16le])
                .rate(SAMPLE_RATE as i32)
                .channels(1)
                .build();
            let video = gst_video::VideoCapsBuilder::new()
                .format_list([
                    gst_video::VideoFormat::Rgba,
                    gst_video::VideoFormat::Bgra,
                    gst_video::VideoFormat::Rgbx,
                    gst_video::VideoFormat::Bgrx,
                    gst_video::VideoFormat::Rgb,
                    gst_video::VideoFormat::Bgr,
                ])
                .width_range(MIN_SIZE..=MAX_SIZE)
                .height_range(MIN_SIZE..=MAX_SIZE)
                .framerate_range(gst::Fraction::new(1, 1)..=gst::Fraction::new(MAX_FPS, 1))
                .pixel_aspect_ratio(gst::Fraction::new(1, 1))
                .build();
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &audio,
                )
                .expect("valid template"),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &video,
                )
                .expect("valid template"),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        gst::debug!(CAT, imp = self, "{transition:?}");
        match transition {
            gst::StateChange::NullToReady => self.start_engine()?,
            gst::StateChange::ReadyToPaused => self.load_portrait()?,
            _ => {}
        }

        let success = self.parent_change_state(transition)?;

        match transition {
            gst::StateChange::PausedToReady => {
                // The task is stopped now (pads deactivated).
                self.streaming.store(false, Ordering::SeqCst);
                let mut generator = lock(&self.generator);
                generator.reset_stream();
                generator.source = None;
                if let Some(output) = generator.output.take() {
                    let _ = output.pool.set_active(false);
                }
                generator.segment_pushed = false;
                generator.held_events.clear();
                lock(&self.shared).new_source = None;
            }
            gst::StateChange::ReadyToNull => {
                lock(&self.generator).engine = None;
                *lock(&self.preparer) = None;
                *lock(&self.active_device) = None;
            }
            _ => {}
        }
        Ok(success)
    }
}

impl VasaFaceGen {
    fn progress(&self, kind: gst::ProgressType, code: &str, text: &str) {
        let obj = self.obj();
        let _ = obj.post_message(
            gst::message::Progress::builder(kind, code, text)
                .src(&*obj)
                .build(),
        );
    }

    /// NULL->READY: resolve the device and build the engine.
    fn start_engine(&self) -> Result<(), gst::StateChangeError> {
        let settings = lock(&self.settings).clone();
        let device = settings
            .device
            .parse::<DeviceRequest>()
            .and_then(DeviceRequest::resolve)
            .map_err(|err| {
                gst::element_imp_error!(self, gst::ResourceError::Settings, ("{err}"));
                gst::StateChangeError
            })?;
        gst::info!(
            CAT,
            imp = self,
            "device={} resolved to {}",
            settings.device,
            device_name(device)
        );
        let precision = settings.precision.parse::<Precision>().map_err(|err| {
            gst::element_imp_error!(self, gst::ResourceError::Settings, ("{err}"));
            gst::StateChangeError
        })?;
        self.progress(
            gst::ProgressType::Start,
            "engine",
            "Loading the animation engine",
        );
        let spec = ModelChoice::parse(&settings.model).map(|model| EngineSpec {
            model,
            ..EngineSpec::builtin(device)
        });
        let engine = spec
            .and_then(|spec| Engine::new(&EngineSpec { precision, ..spec }))
            .map_err(|err| {
                self.progress(
                    gst::ProgressType::Error,
                    "engine",
                    "Loading the engine failed",
                );
                gst::element_imp_error!(self, gst::LibraryError::Settings, ("{err}"));
                gst::StateChangeError
            })?;
        self.progress(
            gst::ProgressType::Complete,
            "engine",
            "Animation engine ready",
        );
        *lock(&self.preparer) = Some(engine.source_preparer());
        *lock(&self.active_device) = Some(device_name(device));
        lock(&self.generator).engine = Some(engine);
        Ok(())
    }

    /// READY->PAUSED: decode and prepare the portrait, before any data flows.
    fn load_portrait(&self) -> Result<(), gst::StateChangeError> {
        let settings = lock(&self.settings).clone();
        let Some(path) = settings.image.clone() else {
            gst::element_imp_error!(
                self,
                gst::ResourceError::NotFound,
                ("No portrait: set the image property to a PNG, JPEG or WebP file, e.g. \
                  vasafacegen image=portrait.png")
            );
            return Err(gst::StateChangeError);
        };
        let preparer = lock(&self.preparer).clone().ok_or(gst::StateChangeError)?;
        self.progress(
            gst::ProgressType::Start,
            "portrait",
            "Preparing the portrait",
        );
        let generation = self.image_generation.fetch_add(1, Ordering::SeqCst) + 1;
        let source = prepare_portrait(&*preparer, &path, &settings).map_err(|err| {
            self.progress(
                gst::ProgressType::Error,
                "portrait",
                "Preparing the portrait failed",
            );
            gst::element_imp_error!(self, err.domain(), ("{}", err.message));
            gst::StateChangeError
        })?;
        self.progress(gst::ProgressType::Complete, "portrait", "Portrait ready");
        gst::info!(
            CAT,
            imp = self,
            "portrait {} prepared (generation {generation})",
            path.display()
        );
        {
            let mut generator = lock(&self.generator);
            generator.source = Some(source);
            generator.seed = settings.seed;
            generator.reset_stream();
        }
        self.stats.reset();
        self.streaming.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// `face-box` or the crop changed: while streaming, the portrait is prepared again.
    fn portrait_hints_changed(&self) {
        let image = lock(&self.settings).image.clone();
        if let Some(path) = image
            && self.streaming.load(Ordering::SeqCst)
        {
            self.prepare_in_background(path);
        }
    }

    /// A new `image` while streaming: prepare it on its own thread; the task swaps it in
    /// at the next frame boundary. A bad file leaves the current portrait in place and
    /// posts a warning, so a live show goes on.
    fn prepare_in_background(&self, path: PathBuf) {
        let Some(preparer) = lock(&self.preparer).clone() else {
            return;
        };
        let generation = self.image_generation.fetch_add(1, Ordering::SeqCst) + 1;
        let settings = lock(&self.settings).clone();
        let element = self.obj().downgrade();
        let spawned = std::thread::Builder::new()
            .name("vasafacegen-prepare".into())
            .spawn(move || {
                let result = prepare_portrait(&*preparer, &path, &settings);
                let Some(element) = element.upgrade() else {
                    return;
                };
                let imp = element.imp();
                match result {
                    Ok(source) => {
                        if imp.image_generation.load(Ordering::SeqCst) != generation {
                            gst::debug!(CAT, imp = imp, "{} superseded", path.display());
                            return;
                        }
                        gst::info!(CAT, imp = imp, "new portrait {} ready", path.display());
                        lock(&imp.shared).new_source = Some(source);
                    }
                    Err(err) => {
                        gst::element_imp_warning!(
                            imp,
                            err.domain(),
                            ("{}; keeping the previous portrait", err.message)
                        );
                    }
                }
            });
        if let Err(err) = spawned {
            gst::element_imp_warning!(
                self,
                gst::CoreError::Thread,
                ("Cannot start preparing the new portrait: {err}")
            );
        }
    }

    fn sink_activatemode(
        &self,
        pad: &gst::Pad,
        mode: gst::PadMode,
        active: bool,
    ) -> Result<(), gst::LoggableError> {
        if mode != gst::PadMode::Push {
            return Err(gst::loggable_error!(CAT, "only push mode is supported"));
        }
        if !active {
            self.set_flushing();
            // Wait for a chain call in progress to return before forgetting the stream.
            let _stream_lock = pad.stream_lock();
            let mut shared = lock(&self.shared);
            shared.eos = false;
            shared.segment = None;
            shared.audio_format = None;
        }
        Ok(())
    }

    fn src_activatemode(
        &self,
        pad: &gst::Pad,
        mode: gst::PadMode,
        active: bool,
    ) -> Result<(), gst::LoggableError> {
        if mode != gst::PadMode::Push {
            return Err(gst::loggable_error!(CAT, "only push mode is supported"));
        }
        if active {
            self.start_task()
                .map_err(|err| gst::loggable_error!(CAT, "{err}"))?;
        } else {
            self.set_flushing();
            pad.stop_task()?;
        }
        Ok(())
    }

    /// Stops data flow and wakes every waiter (a blocked chain call, the waiting task).
    fn set_flushing(&self) {
        let mut shared = lock(&self.shared);
        shared.flow = Err(gst::FlowError::Flushing);
        shared.clear_queue();
        self.cond.notify_all();
    }

    fn start_task(&self) -> Result<(), glib::BoolError> {
        lock(&self.shared).flow = Ok(gst::FlowSuccess::Ok);
        let imp = self.ref_counted();
        self.srcpad.start_task(move || imp.task_iteration())
    }

    fn sink_chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (format, segment) = {
            let shared = lock(&self.shared);
            shared.flow?;
            if shared.eos {
                return Err(gst::FlowError::Eos);
            }
            (shared.audio_format, shared.segment.clone())
        };
        let Some(format) = format else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("Audio arrived before its format (no caps event)")
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        let Some(segment) = segment else {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("Audio arrived before a segment event")
            );
            return Err(gst::FlowError::Error);
        };
        if buffer.pts().is_none() {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("Audio buffer without a timestamp (PTS); vasafacegen places frames by the \
                  audio's timestamps"),
                [
                    "Timestamp the audio upstream, e.g. appsrc format=time do-timestamp=true, \
                  or decode with a parser that sets timestamps (wavparse, decodebin)"
                ]
            );
            return Err(gst::FlowError::Error);
        }
        let bytes_per_sample = gst_audio::AudioFormatInfo::from_format(format).width() / 8;
        let Some(buffer) = gst_audio::audio_buffer_clip(
            buffer,
            segment.upcast_ref(),
            SAMPLE_RATE,
            bytes_per_sample,
        ) else {
            gst::log!(CAT, imp = self, "buffer outside the segment, skipped");
            return Ok(gst::FlowSuccess::Ok);
        };
        let pts = buffer.pts().expect("checked above; clipping keeps it");
        let map = buffer.map_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::StreamError::Decode, ("Cannot read audio buffer"));
            gst::FlowError::Error
        })?;
        let samples = decode_samples(&map, format);
        drop(map);

        let mut shared = lock(&self.shared);
        // Backpressure: wait while the task is far enough ahead. A single buffer larger
        // than the limit still goes in when the queue is empty, so nothing deadlocks.
        while shared.flow.is_ok() && shared.queued_samples >= QUEUE_LIMIT_SAMPLES {
            shared = self.cond.wait(shared).unwrap_or_else(|p| p.into_inner());
        }
        shared.flow?;
        shared.queued_samples += samples.len();
        shared.queue.push_back(Item::Audio { pts, samples });
        self.cond.notify_all();
        Ok(gst::FlowSuccess::Ok)
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        gst::log!(CAT, obj = pad, "{event:?}");
        use gst::EventView;
        let item = match event.view() {
            EventView::FlushStart(_) => {
                self.set_flushing();
                let forwarded = self.srcpad.push_event(event);
                if let Err(err) = self.srcpad.pause_task() {
                    gst::error!(CAT, imp = self, "cannot pause the task: {err}");
                }
                return forwarded;
            }
            EventView::FlushStop(_) => {
                {
                    let mut shared = lock(&self.shared);
                    shared.clear_queue();
                    shared.eos = false;
                    shared.reset_pending = true;
                }
                let forwarded = self.srcpad.push_event(event);
                if let Err(err) = self.start_task() {
                    gst::error!(CAT, imp = self, "cannot restart the task: {err}");
                    return false;
                }
                return forwarded;
            }
            EventView::Caps(caps) => {
                let info = match gst_audio::AudioInfo::from_caps(caps.caps()) {
                    Ok(info) => info,
                    Err(err) => {
                        gst::element_imp_error!(
                            self,
                            gst::CoreError::Negotiation,
                            ("Unusable audio caps {}: {err}", caps.caps())
                        );
                        return false;
                    }
                };
                lock(&self.shared).audio_format = Some(info.format());
                return true;
            }
            EventView::Segment(segment_event) => {
                let segment = segment_event.segment();
                let Some(time_segment) = segment.downcast_ref::<gst::ClockTime>() else {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        (
                            "Segment in {:?} format; vasafacegen needs TIME segments",
                            segment.format()
                        ),
                        [
                            "Decode or parse the audio before vasafacegen (e.g. wavparse or \
                          decodebin ! audioconvert ! audioresample)"
                        ]
                    );
                    return false;
                };
                lock(&self.shared).segment = Some(time_segment.clone());
                Item::Segment(event)
            }
            EventView::Gap(gap) => {
                let (pts, duration) = gap.get();
                match duration {
                    Some(duration) => Item::Gap {
                        start: pts,
                        end: pts + duration,
                    },
                    None => return true,
                }
            }
            EventView::StreamStart(_) => {
                // A new stream without a flush (gapless playback) may follow an EOS.
                let restart = {
                    let mut shared = lock(&self.shared);
                    shared.eos = false;
                    shared.flow == Err(gst::FlowError::Eos)
                };
                if restart && let Err(err) = self.start_task() {
                    gst::error!(CAT, imp = self, "cannot restart the task: {err}");
                    return false;
                }
                Item::Event(event)
            }
            EventView::Eos(_) => Item::Eos(event),
            // Stream tags describe the audio, not the video we produce.
            EventView::Tag(tag) if tag.tag().scope() == gst::TagScope::Stream => return true,
            _ if event.is_serialized() => Item::Event(event),
            _ => return gst::Pad::event_default(pad, Some(&*self.obj()), event),
        };

        let mut shared = lock(&self.shared);
        let is_eos = matches!(item, Item::Eos(_));
        if let Err(err) = shared.flow {
            if is_eos && !matches!(err, gst::FlowError::Flushing | gst::FlowError::Eos) {
                // Upstream will not hear about our failure through a flow return any
                // more, so tell the application (like queue does).
                drop(shared);
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Failed,
                    ("Internal data stream error"),
                    ["streaming stopped, reason {err:?}"]
                );
            }
            return false;
        }
        if shared.eos {
            return false;
        }
        shared.eos = is_eos;
        shared.queue.push_back(item);
        self.cond.notify_all();
        true
    }

    fn sink_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        match query.view_mut() {
            // Audio buffers are ours to read; the video allocation downstream is unrelated.
            gst::QueryViewMut::Allocation(_) => false,
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }

    fn src_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        match event.view() {
            // Video QoS says nothing useful to the audio upstream, and we never skip
            // frames: the video must stay continuous.
            gst::EventView::Qos(_) => true,
            gst::EventView::Reconfigure(_) => {
                let restart = lock(&self.shared).flow == Err(gst::FlowError::NotLinked);
                if restart && let Err(err) = self.start_task() {
                    gst::error!(CAT, imp = self, "cannot restart the task: {err}");
                }
                true
            }
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        match query.view_mut() {
            gst::QueryViewMut::Latency(latency) => {
                let mut upstream = gst::query::Latency::new();
                if !self.sinkpad.peer_query(&mut upstream) {
                    return false;
                }
                let (live, min, max) = upstream.result();
                let own = self.own_latency();
                gst::debug!(
                    CAT,
                    imp = self,
                    "latency: upstream {min} (live {live}) + own {own}"
                );
                latency.set(live, min + own, max.map(|max| max + own));
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }

    /// Lookahead + one frame period (waiting for the frame's own audio) + the time a
    /// frame takes to generate: one frame period, or the longest generation seen so far
    /// if that is longer (a neural engine generating a window of motion at once).
    fn own_latency(&self) -> gst::ClockTime {
        let lookahead = match self.engine_lookahead.load(Ordering::Relaxed) {
            u64::MAX => lock(&self.settings).lookahead_samples(),
            samples => samples,
        };
        let rate = lock(&self.shared)
            .frame_rate
            .unwrap_or(FrameRate::new(DEFAULT_FPS.0, DEFAULT_FPS.1).expect("positive"));
        let generation = self
            .stats
            .max_ns
            .load(Ordering::Relaxed)
            .max(rate.period_ns());
        self.reported_generation_ns
            .store(generation, Ordering::Relaxed);
        gst::ClockTime::from_nseconds(ns_for_samples(lookahead))
            + gst::ClockTime::from_nseconds(rate.period_ns() + generation)
    }

    /// Tells the pipeline to ask again for the latency when it changed: the engine took
    /// another lookahead than `latency` (`allowed`), or a frame took longer than the
    /// latency answer allowed for.
    fn latency_changed(&self, lookahead: u64, allowed: u64, period_ns: u64) {
        let beyond = if lookahead == allowed {
            u64::MAX
        } else {
            lookahead
        };
        let previous = self.engine_lookahead.swap(beyond, Ordering::Relaxed);
        let reported = self
            .reported_generation_ns
            .load(Ordering::Relaxed)
            .max(period_ns);
        let slower = self.stats.max_ns.load(Ordering::Relaxed) > reported + period_ns / 2;
        if previous != beyond || slower {
            if slower {
                self.reported_generation_ns
                    .store(self.stats.max_ns.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            let _ = self
                .obj()
                .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
        }
    }

    /// Whether upstream is live (asked once per stream).
    fn upstream_is_live(&self) -> bool {
        let mut query = gst::query::Latency::new();
        self.sinkpad.peer_query(&mut query) && query.result().0
    }

    // ---- the src pad task -----------------------------------------------------------

    fn task_iteration(&self) {
        let turn = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut generator = lock(&self.generator);
            self.next_outputs(&mut generator)
        }));
        let result = match turn {
            Ok(Ok(outputs)) => self.push_outputs(outputs),
            Ok(Err(flow)) => Err(flow),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("unknown panic");
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Failed,
                    ("Frame generation failed: {what}")
                );
                Err(gst::FlowError::Error)
            }
        };
        if let Err(flow) = result {
            self.pause_task(flow);
        }
    }

    fn push_outputs(&self, outputs: Vec<Out>) -> Result<(), gst::FlowError> {
        for output in outputs {
            match output {
                Out::Buffer(buffer) => {
                    gst::trace!(CAT, imp = self, "pushing {buffer:?}");
                    self.srcpad.push(buffer)?;
                }
                Out::Event(event) => {
                    let is_eos = event.type_() == gst::EventType::Eos;
                    gst::debug!(CAT, imp = self, "pushing {event:?}");
                    self.srcpad.push_event(event);
                    if is_eos {
                        return Err(gst::FlowError::Eos);
                    }
                }
            }
        }
        Ok(())
    }

    fn pause_task(&self, flow: gst::FlowError) {
        let flow = {
            let mut shared = lock(&self.shared);
            // A flush in progress takes precedence over whatever stopped us.
            let flow = match shared.flow {
                Err(gst::FlowError::Flushing) => gst::FlowError::Flushing,
                _ => flow,
            };
            shared.flow = Err(flow);
            self.cond.notify_all();
            flow
        };
        gst::debug!(CAT, imp = self, "pausing task: {flow:?}");
        let _ = self.srcpad.pause_task();
        if matches!(
            flow,
            gst::FlowError::NotLinked | gst::FlowError::NotNegotiated
        ) || flow == gst::FlowError::Error
        {
            if flow != gst::FlowError::Error {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Failed,
                    ("Internal data stream error"),
                    ["streaming stopped, reason {flow:?}"]
                );
            }
            self.srcpad.push_event(gst::event::Eos::new());
        }
    }

    /// Waits for the next queued item. `Err` when the task must stop (flushing, ...).
    fn next_item(&self) -> Result<Item, gst::FlowError> {
        let mut shared = lock(&self.shared);
        loop {
            shared.flow?;
            if let Some(item) = shared.queue.pop_front() {
                shared.queued_samples -= item.samples();
                self.cond.notify_all();
                return Ok(item);
            }
            shared = self.cond.wait(shared).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// One turn of the task: everything to push next (possibly nothing yet).
    fn next_outputs(&self, generator: &mut Generator) -> Result<Vec<Out>, gst::FlowError> {
        {
            let mut shared = lock(&self.shared);
            if std::mem::take(&mut shared.reset_pending) {
                generator.reset_stream();
                generator.segment_pushed = false;
            }
            if let Some(source) = shared.new_source.take() {
                gst::info!(
                    CAT,
                    imp = self,
                    "switching to portrait {}",
                    source.portrait.path.display()
                );
                generator.source = Some(source);
            }
        }
        let live = *generator
            .live
            .get_or_insert_with(|| self.upstream_is_live());
        let (lookahead, allowed, controls) = {
            let settings = lock(&self.settings);
            let allowed = settings.lookahead_samples();
            (
                generator
                    .engine
                    .as_ref()
                    .map_or(allowed, |engine| engine.lookahead_samples(allowed, live)),
                allowed,
                MotionControls {
                    head_motion: settings.head_motion as f32,
                    cfg_scale: settings.cfg_scale as f32,
                    sampling_steps: settings.sampling_steps,
                    expression_scale: settings.expression_scale as f32,
                },
            )
        };
        let draining = generator.draining.is_some();

        if let Some(outputs) =
            self.next_frame(generator, (lookahead, allowed), controls, draining)?
        {
            return Ok(outputs);
        }
        if let Some(item) = generator.draining.take() {
            // Every frame of the audio before this Segment or EOS is out.
            return match item {
                Item::Segment(event) => {
                    generator.reset_stream();
                    self.start_segment(generator, event)
                }
                Item::Eos(event) => {
                    let mut outputs = Vec::new();
                    if !generator.segment_pushed && !generator.held_events.is_empty() {
                        outputs.extend(generator.held_events.drain(..).map(Out::Event));
                    }
                    outputs.push(Out::Event(event));
                    Ok(outputs)
                }
                _ => unreachable!("only segments and EOS drain"),
            };
        }
        if let Some(pending) = generator.pending.take() {
            self.absorb(generator, pending);
            return Ok(Vec::new());
        }
        match self.next_item()? {
            Item::Audio { pts, samples } => {
                self.absorb(generator, Pending::Audio { pts, samples });
                Ok(Vec::new())
            }
            Item::Gap { start, end } => {
                // A stream may begin with a gap (a live source that starts silent): the
                // video then starts with it.
                let origin = generator.start_clock(start);
                let until_sample = samples_for_ns(end.saturating_sub(origin).nseconds());
                self.absorb(generator, Pending::Silence { until_sample });
                Ok(Vec::new())
            }
            item @ (Item::Segment(_) | Item::Eos(_)) => {
                generator.draining = Some(item);
                Ok(Vec::new())
            }
            Item::Event(event) => {
                let waits_for_segment = event.is_sticky()
                    && event.type_() != gst::EventType::StreamStart
                    && !generator.segment_pushed;
                if waits_for_segment {
                    generator.held_events.push(event);
                    Ok(Vec::new())
                } else {
                    Ok(vec![Out::Event(event)])
                }
            }
        }
    }

    /// Caps (negotiated now if needed), the segment, then events held back for it.
    fn start_segment(
        &self,
        generator: &mut Generator,
        event: gst::Event,
    ) -> Result<Vec<Out>, gst::FlowError> {
        let mut outputs = Vec::new();
        if generator.output.is_none() || self.srcpad.check_reconfigure() {
            outputs.extend(self.negotiate(generator)?.map(Out::Event));
        }
        outputs.push(Out::Event(event));
        outputs.extend(generator.held_events.drain(..).map(Out::Event));
        generator.segment_pushed = true;
        Ok(outputs)
    }

    /// Takes audio (or silence for a gap) into the sample store, placing it by its
    /// timestamp: jitter within `RESYNC_THRESHOLD_SAMPLES` is ignored, a larger gap is
    /// filled with silence (slice by slice, frames in between), an overlap is trimmed.
    fn absorb(&self, generator: &mut Generator, pending: Pending) {
        match pending {
            Pending::Audio { pts, samples } => {
                let origin = generator.start_clock(pts);
                let received = generator.audio.received();
                let position = if pts >= origin {
                    samples_for_ns((pts - origin).nseconds()) as i64
                } else {
                    -(samples_for_ns((origin - pts).nseconds()) as i64)
                };
                let drift = position - received as i64;
                if drift > RESYNC_THRESHOLD_SAMPLES as i64 {
                    let missing = drift as u64;
                    gst::debug!(
                        CAT,
                        imp = self,
                        "gap of {} ms before {pts}: filling with silence",
                        missing * 1000 / u64::from(SAMPLE_RATE)
                    );
                    let slice = missing.min(SILENCE_SLICE_SAMPLES);
                    generator.audio.extend_silence(slice);
                    // Come back for the rest of the gap and the audio itself after the
                    // frames this slice completes.
                    generator.pending = Some(Pending::Audio { pts, samples });
                } else if drift < -(RESYNC_THRESHOLD_SAMPLES as i64) {
                    let overlap = (-drift) as usize;
                    gst::warning!(
                        CAT,
                        imp = self,
                        "audio at {pts} overlaps the previous by {} ms: trimmed",
                        overlap * 1000 / SAMPLE_RATE as usize
                    );
                    if overlap < samples.len() {
                        generator.audio.extend(&samples[overlap..]);
                    }
                } else {
                    generator.audio.extend(&samples);
                }
            }
            Pending::Silence { until_sample } => {
                let missing = until_sample.saturating_sub(generator.audio.received());
                if missing > 0 {
                    generator
                        .audio
                        .extend_silence(missing.min(SILENCE_SLICE_SAMPLES));
                    if missing > SILENCE_SLICE_SAMPLES {
                        generator.pending = Some(Pending::Silence { until_sample });
                    }
                }
            }
        }
    }

    /// Negotiates output caps with downstream: its preference, fixated towards 512x512
    /// at 25 fps. Returns the caps event to push if the caps changed.
    fn negotiate(&self, generator: &mut Generator) -> Result<Option<gst::Event>, gst::FlowError> {
        let template = self.srcpad.pad_template_caps();
        let peer = self.srcpad.peer_query_caps(Some(&template));
        if peer.is_empty() {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("Downstream accepts no video vasafacegen can produce"),
                ["vasafacegen produces {template}; put videoconvert and videoscale after it"]
            );
            return Err(gst::FlowError::NotNegotiated);
        }
        let mut caps = peer;
        caps.truncate();
        {
            let structure = caps.make_mut().structure_mut(0).expect("non-empty");
            structure.fixate_field_nearest_int("width", DEFAULT_WIDTH);
            structure.fixate_field_nearest_int("height", DEFAULT_HEIGHT);
            structure.fixate_field_nearest_fraction(
                "framerate",
                gst::Fraction::new(DEFAULT_FPS.0, DEFAULT_FPS.1),
            );
        }
        caps.fixate();
        if generator
            .output
            .as_ref()
            .is_some_and(|output| output.caps == caps)
        {
            return Ok(None);
        }
        let negotiation_error = |what: String| {
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ("{what}"));
            gst::FlowError::NotNegotiated
        };
        let info = gst_video::VideoInfo::from_caps(&caps)
            .map_err(|err| negotiation_error(format!("Unusable video caps {caps}: {err}")))?;
        let layout = match info.format() {
            gst_video::VideoFormat::Rgba => PixelLayout::Rgba,
            gst_video::VideoFormat::Bgra => PixelLayout::Bgra,
            gst_video::VideoFormat::Rgbx => PixelLayout::Rgbx,
            gst_video::VideoFormat::Bgrx => PixelLayout::Bgrx,
            gst_video::VideoFormat::Rgb => PixelLayout::Rgb,
            gst_video::VideoFormat::Bgr => PixelLayout::Bgr,
            other => {
                return Err(negotiation_error(format!(
                    "Unsupported video format {other:?}"
                )));
            }
        };
        let rate = FrameRate::new(info.fps().numer(), info.fps().denom())
            .ok_or_else(|| negotiation_error(format!("Unusable frame rate in {caps}")))?;
        let pool = gst_video::VideoBufferPool::new();
        let mut config = pool.config();
        config.set_params(Some(&caps), info.size() as u32, 2, 0);
        pool.set_config(config)
            .and_then(|_| pool.set_active(true))
            .map_err(|err| {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::NoSpaceLeft,
                    ("Cannot allocate video buffers for {caps}: {err}")
                );
                gst::FlowError::Error
            })?;

        let previous_rate = generator.output.as_ref().map(|output| output.rate);
        if let (Some(old), Some(clock)) = (previous_rate, generator.clock.as_mut())
            && old != rate
        {
            // Frames already out keep their timestamps; the new rate counts from here.
            clock.anchor_pts += gst::ClockTime::from_nseconds(old.frame_offset_ns(clock.frames));
            clock.anchor_sample += old.frame_start_sample(clock.frames);
            clock.frames = 0;
        }
        if let Some(old) = generator.output.take() {
            let _ = old.pool.set_active(false);
        }
        gst::info!(CAT, imp = self, "output caps {caps}");
        generator.output = Some(Output {
            caps: caps.clone(),
            size: FrameSize {
                width: info.width(),
                height: info.height(),
            },
            info,
            layout,
            rate,
            pool: pool.upcast(),
        });
        lock(&self.shared).frame_rate = Some(rate);
        if previous_rate.is_some_and(|old| old != rate) {
            let _ = self
                .obj()
                .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
        }
        Ok(Some(gst::event::Caps::new(&caps)))
    }

    /// Generates the next frame if its audio (plus lookahead, unless draining) is here.
    /// `lookahead` is (what the engine takes, what `latency` allows), in samples.
    fn next_frame(
        &self,
        generator: &mut Generator,
        (lookahead, allowed): (u64, u64),
        controls: MotionControls,
        draining: bool,
    ) -> Result<Option<Vec<Out>>, gst::FlowError> {
        if !generator.segment_pushed || generator.clock.is_none() {
            return Ok(None);
        }
        let mut outputs = Vec::new();
        if self.srcpad.check_reconfigure() {
            match self.negotiate(generator) {
                Ok(event) => outputs.extend(event.map(Out::Event)),
                Err(err) => {
                    self.srcpad.mark_reconfigure();
                    return Err(err);
                }
            }
        }
        let output = generator
            .output
            .as_ref()
            .expect("negotiated with the segment");
        let clock = generator.clock.expect("checked above");
        let rate = output.rate;
        let start = clock.anchor_sample + rate.frame_start_sample(clock.frames);
        let end = clock.anchor_sample + rate.frame_start_sample(clock.frames + 1);
        let received = generator.audio.received();
        let ready = if draining {
            start < received
        } else {
            received >= end + lookahead
        };
        if !ready {
            // A renegotiation above still has to go out.
            return Ok((!outputs.is_empty()).then_some(outputs));
        }

        let began = Instant::now();
        let engine = generator.engine.as_mut().ok_or_else(|| {
            gst::element_imp_error!(self, gst::CoreError::StateChange, ("No engine loaded"));
            gst::FlowError::Error
        })?;
        let source = generator.source.as_ref().ok_or_else(|| {
            gst::element_imp_error!(self, gst::CoreError::StateChange, ("No portrait loaded"));
            gst::FlowError::Error
        })?;
        let history = engine.history_samples();
        let window = generator.audio.window(
            FrameSpan {
                index: clock.frames_in_segment,
                start,
                end,
                rate,
            },
            history,
            lookahead as usize,
            &mut generator.window,
        );
        let engine_error = |err: vcore::Error| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("Frame generation failed: {err}")
            );
            gst::FlowError::Error
        };
        engine.set_controls(&controls);
        let motion = engine.motion(&window).map_err(engine_error)?;
        let frame = engine
            .render(&motion, source, output.size)
            .map_err(engine_error)?;

        let mut buffer = output.pool.acquire_buffer(None).inspect_err(|&err| {
            if err != gst::FlowError::Flushing {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Failed,
                    ("No video buffer: {err:?}")
                );
            }
        })?;
        {
            let buffer = buffer.get_mut().expect("fresh from the pool");
            let pts = clock.anchor_pts
                + gst::ClockTime::from_nseconds(rate.frame_offset_ns(clock.frames));
            let next = clock.anchor_pts
                + gst::ClockTime::from_nseconds(rate.frame_offset_ns(clock.frames + 1));
            buffer.set_pts(pts);
            buffer.set_duration(next - pts);
            buffer.set_offset(clock.frames_in_segment);
            buffer.set_offset_end(clock.frames_in_segment + 1);
            if clock.frames_in_segment == 0 {
                buffer.set_flags(gst::BufferFlags::DISCONT);
            }
            let mut frame_map =
                gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &output.info).map_err(
                    |_| {
                        gst::element_imp_error!(
                            self,
                            gst::ResourceError::Write,
                            ("Cannot map video buffer")
                        );
                        gst::FlowError::Error
                    },
                )?;
            let stride = frame_map.plane_stride()[0] as usize;
            let data = frame_map
                .plane_data_mut(0)
                .map_err(|_| gst::FlowError::Error)?;
            pack_frame(&frame, output.layout, data, stride).map_err(engine_error)?;
        }
        self.stats.record(began.elapsed().as_nanos() as u64);
        self.latency_changed(lookahead, allowed, rate.period_ns());

        let clock = generator.clock.as_mut().expect("checked above");
        clock.frames += 1;
        clock.frames_in_segment += 1;
        let next_start = clock.anchor_sample + rate.frame_start_sample(clock.frames);
        generator
            .audio
            .discard_before(next_start.saturating_sub(history as u64));
        outputs.push(Out::Buffer(buffer));
        Ok(Some(outputs))
    }
}

/// A failed portrait load, with the GStreamer error domain that fits it.
struct PortraitFailure {
    message: String,
    kind: PortraitErrorKind,
}

enum PortraitErrorKind {
    NotFound,
    Read,
    Format,
    /// The image is fine but the face cannot be found or the face box is wrong.
    Face,
}

impl PortraitFailure {
    fn domain(&self) -> gst::ResourceError {
        match self.kind {
            PortraitErrorKind::NotFound => gst::ResourceError::NotFound,
            PortraitErrorKind::Read => gst::ResourceError::OpenRead,
            PortraitErrorKind::Format => gst::ResourceError::Read,
            PortraitErrorKind::Face => gst::ResourceError::Settings,
        }
    }
}

fn prepare_portrait(
    preparer: &dyn SourcePreparer,
    path: &std::path::Path,
    settings: &Settings,
) -> Result<Arc<PreparedSource>, PortraitFailure> {
    let face_error = |err: FaceError| PortraitFailure {
        kind: PortraitErrorKind::Face,
        message: err.to_string(),
    };
    let hints = SourceHints {
        face_box: settings
            .face_box
            .as_deref()
            .map(str::parse::<FaceBox>)
            .transpose()
            .map_err(face_error)?,
        crop: settings.crop(),
    };
    crate::render::prepare_file(preparer, path, &hints).map_err(|err| match err {
        vcore::Error::Portrait { problem, source } => PortraitFailure {
            kind: match problem {
                vcore::PortraitProblem::NotFound => PortraitErrorKind::NotFound,
                vcore::PortraitProblem::Unreadable => PortraitErrorKind::Read,
                vcore::PortraitProblem::Format => PortraitErrorKind::Format,
                vcore::PortraitProblem::Face => PortraitErrorKind::Face,
            },
            message: source.to_string(),
        },
        other => PortraitFailure {
            kind: PortraitErrorKind::Format,
            message: other.to_string(),
        },
    })
}

/// Interleaved mono samples to floats in `[-1, 1]`.
fn decode_samples(bytes: &[u8], format: gst_audio::AudioFormat) -> Vec<f32> {
    match format {
        gst_audio::AudioFormat::S16le => bytes
            .chunks_exact(2)
            .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
            .collect(),
        // NaN or infinity would poison every computation after it; they are no sound.
        _ => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .map(|s| if s.is_finite() { s } else { 0.0 })
            .collect(),
    }
}
