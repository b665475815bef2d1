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
//! That is when upstream is not live (a file, a decoder): the element waits for audio.
//!
//! ## Live
//! With a live upstream (a microphone, `appsrc is-live=true`, WebRTC) the frames follow
//! the pipeline clock from PLAYING on, as a camera's would, in running time in a
//! segment of the element's own: frame `n` is drawn once its audio and the lookahead
//! are in, and at the latest when they should have arrived; audio that has not come by
//! then is drawn as silence (mouth at rest, blinks, calm head motion), and the frame is
//! pushed in time to be shown at its running time + the latency. Audio that arrives for
//! time already drawn is dropped (`late-audio-dropped`). PAUSED stops the frames;
//! PLAYING resumes them. A FLUSH_START/FLUSH_STOP from upstream (or the `interrupt`
//! action signal) cuts the audio: what was not yet drawn is dropped, the lips go to rest
//! at once, the head and blinks carry on, and the video goes on without a flush
//! downstream. Flushes caused by a seek sent through the element go downstream as usual.
//! Every frame carries a `VasaFaceGenFrameMeta` custom meta (whether its audio was
//! missing, whether it is a repeat, and the motion drawn: see `output::FrameNotes`).
//! A frame that could not be out in time is filled by the last one (`frames-repeated`).
//! `pace` forces either way of timing frames.
//!
//! ## Threads
//! The sink pad converts and queues audio (at most half a second ahead, then it blocks
//! upstream). A src pad task owns the engine and generates frames. Serialized events
//! travel through the same queue, so they stay in order with the frames.
//!
//! ## Latency
//! A frame can be generated once the audio up to its end plus the lookahead has
//! arrived, and then takes time to generate: the element adds lookahead + one frame
//! period + the longer of one frame period and the longest generation seen so far to
//! upstream's latency (and posts a latency message when that grows). The lookahead is
//! the `latency` property, except that a motion source working on whole windows of
//! audio (JoyVASA) takes a whole window when upstream is not live.
//!
//! ## Models
//! Two choices, made independently at NULL->READY. `model` picks the renderer:
//! `builtin` (a warp of the portrait, no download) or the directory of a model bundle
//! converted by tools/liveportrait/convert.py (LivePortrait's networks, computing in
//! `precision`; the face window is set by `crop-scale` and `crop-offset-y`). `motion`
//! picks the motion source: `builtin` (the mouth model trained here with procedural
//! blinks and head motion), `joyvasa` (the bundle's diffusion generator: `cfg-scale`,
//! `sampling-steps`, `expression-scale`), or `auto` (the bundle's generator if it has
//! one). `blinks=procedural` adds the builtin blinks to any source.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::intake::Shared;
use super::latency::{LatencyState, Statistics};
use super::output;
use super::settings::{self, Changed, Settings};
use super::task::TaskSlot;
use crate::core::{SAMPLE_RATE, device_name, lock};
use crate::engine::{Engine, EngineSpec, ModelChoice};
use crate::render::SourcePreparer;

pub static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "vasafacegen",
        gst::DebugColorFlags::empty(),
        Some("Talking-face generator"),
    )
});

pub struct VasaFaceGen {
    pub(super) sinkpad: gst::Pad,
    pub(super) srcpad: gst::Pad,
    pub(super) settings: Mutex<Settings>,
    pub(super) shared: Mutex<Shared>,
    /// Wakes the task when items arrive and the sink pad when the queue drains, and
    /// everyone on flush.
    pub(super) cond: Condvar,
    /// The src task's state; see `task`.
    pub(super) task: TaskSlot,
    /// Prepares portraits for property changes while streaming; set in NULL->READY.
    pub(super) preparer: Mutex<Option<Arc<dyn SourcePreparer>>>,
    /// Numbers portrait changes so that only the newest one is swapped in.
    pub(super) image_generation: AtomicU64,
    /// True between READY->PAUSED and PAUSED->READY: portrait changes are then prepared
    /// in the background instead of at the next READY->PAUSED.
    pub(super) streaming: AtomicBool,
    active_device: Mutex<Option<String>>,
    pub(super) stats: Statistics,
    pub(super) latency: LatencyState,
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
            task: TaskSlot::new(),
            preparer: Mutex::new(None),
            image_generation: AtomicU64::new(0),
            streaming: AtomicBool::new(false),
            active_device: Mutex::new(None),
            stats: Statistics::default(),
            latency: LatencyState::default(),
        }
    }
}

impl ObjectImpl for VasaFaceGen {
    fn properties() -> &'static [glib::ParamSpec] {
        settings::properties()
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            vec![
                // Barge-in for applications that feed the audio themselves: the same as
                // FLUSH_START + FLUSH_STOP from upstream, without touching upstream.
                glib::subclass::Signal::builder("interrupt")
                    .action()
                    .return_type::<bool>()
                    .class_handler(|values| {
                        let element = values[0]
                            .get::<super::VasaFaceGen>()
                            .expect("signal sent to a vasafacegen");
                        Some(element.imp().interrupt().to_value())
                    })
                    .build(),
            ]
        });
        SIGNALS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let (changed, warning) = lock(&self.settings).set(pspec.name(), value);
        if let Some(warning) = warning {
            gst::warning!(CAT, imp = self, "{warning}");
        }
        gst::info!(CAT, imp = self, "{} set to {value:?}", pspec.name());
        match changed {
            Changed::Value => {}
            Changed::Portrait => self.portrait_changed(),
            Changed::Latency => self.post_latency_message(),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        match pspec.name() {
            "active-device" => lock(&self.active_device).to_value(),
            "frames-produced" => self.stats.frames.load(Ordering::Relaxed).to_value(),
            "frames-without-audio" => self.stats.frames_without_audio().to_value(),
            "late-audio-dropped" => self.stats.late_audio_ns().to_value(),
            "frames-repeated" => self.stats.frames_repeated().to_value(),
            "mean-generation-ms" => self.stats.mean_ms().to_value(),
            "max-generation-ms" => self.stats.max_ms().to_value(),
            name => lock(&self.settings)
                .get(name)
                .unwrap_or_else(|| unreachable!("unknown property {name}")),
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
                    &output::template_caps(),
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
            // Live, frames flow on the clock only while PLAYING (as a camera's would).
            gst::StateChange::PausedToPlaying | gst::StateChange::PlayingToPaused => {
                let mut shared = lock(&self.shared);
                shared.playing = transition == gst::StateChange::PausedToPlaying;
                self.wake_task(&mut shared);
            }
            _ => {}
        }

        let success = self.parent_change_state(transition)?;

        match transition {
            gst::StateChange::PausedToReady => {
                // The task is stopped now (pads deactivated).
                self.streaming.store(false, Ordering::SeqCst);
                self.task.with(|task| task.stop_stream());
                let mut shared = lock(&self.shared);
                shared.new_source = None;
                // The next stream asks again whether upstream is live.
                shared.live = false;
                shared.cut_before_ns = None;
                shared.interrupt_pending = false;
                shared.sink_flushing = false;
            }
            gst::StateChange::ReadyToNull => {
                self.task.with(|task| task.engine = None);
                *lock(&self.preparer) = None;
                *lock(&self.active_device) = None;
            }
            _ => {}
        }
        Ok(success)
    }
}

impl VasaFaceGen {
    /// NULL->READY: resolve the device, pair the motion source and renderer, load weights.
    fn start_engine(&self) -> Result<(), gst::StateChangeError> {
        let settings = lock(&self.settings).clone();
        let settings_error = |message: String| {
            gst::element_imp_error!(self, gst::ResourceError::Settings, ("{message}"));
            gst::StateChangeError
        };
        let device = settings
            .device
            .clone()
            .and_then(|request| request.resolve())
            .map_err(|err| settings_error(err.to_string()))?;
        gst::info!(
            CAT,
            imp = self,
            "device={} resolved to {}",
            settings.device_text,
            device_name(device)
        );
        self.engine_progress(gst::ProgressType::Start, "Loading the animation engine");
        let engine = ModelChoice::parse(&settings.model).and_then(|model| {
            Engine::new(&EngineSpec {
                model,
                motion: settings.motion.into(),
                blinks: settings.blinks.into(),
                device,
                precision: settings.precision.into(),
            })
        });
        let engine = engine.map_err(|err| {
            self.engine_progress(gst::ProgressType::Error, "Loading the engine failed");
            gst::element_imp_error!(self, gst::LibraryError::Settings, ("{err}"));
            gst::StateChangeError
        })?;
        gst::info!(
            CAT,
            imp = self,
            "motion {} drawn by {}",
            engine.motion_name(),
            engine.renderer_name()
        );
        self.engine_progress(gst::ProgressType::Complete, "Animation engine ready");
        *lock(&self.preparer) = Some(engine.source_preparer());
        *lock(&self.active_device) = Some(device_name(device));
        self.engine_lookahead_known(
            engine.lookahead_samples(0, true),
            engine.lookahead_samples(0, false),
        );
        self.task.with(|task| task.engine = Some(engine));
        Ok(())
    }

    fn src_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        match event.view() {
            // Video QoS says nothing useful to the audio upstream, and we never skip
            // frames: the video must stay continuous.
            gst::EventView::Qos(_) => true,
            gst::EventView::Seek(seek) => {
                // The flushes this seek causes upstream must come back down, even live.
                if seek.get().1.contains(gst::SeekFlags::FLUSH) {
                    lock(&self.shared).seek_seqnum = Some(event.seqnum());
                }
                gst::Pad::event_default(pad, Some(&*self.obj()), event)
            }
            gst::EventView::Latency(_) => {
                // The pipeline's latency changed: upstream's part may have (a source
                // joined a mixer). Frames are due at their time plus upstream's latency
                // plus the element's own, so the live task must know the new one or
                // take the audio that now comes later as late.
                if let Some(Some(upstream)) = self.upstream_liveness() {
                    lock(&self.shared).upstream_latency_update = Some(upstream);
                }
                gst::Pad::event_default(pad, Some(&*self.obj()), event)
            }
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
            gst::QueryViewMut::Latency(latency) => self.answer_latency(latency),
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }
}
