//! The src pad task: takes audio and events from the sink pad's queue, draws each frame
//! once its audio is in, and pushes frames and events downstream in stream order.
//!
//! The task owns its state ([`TaskState`]: the engine, the portrait, the timeline, the
//! negotiated output) for a whole turn: it takes it out of its slot at the start of a
//! turn and puts it back at the end, so that no lock is held across a push, a query, a
//! message post, a condition-variable wait or a forward pass. State changes touch the
//! state only while the task is stopped (pad deactivation waits for the turn to end).

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::PaceProperty;
use super::imp::{CAT, VasaFaceGen};
use super::intake::Item;
use super::output::{FrameNotes, Output};
use super::timeline::{Absorbed, FrameSlot, Timeline};
use crate::core::error::panic_message;
use crate::core::{Motion, MotionControls, SAMPLE_RATE, lock};
use crate::engine::Engine;
use crate::render::PreparedSource;

/// Everything the src task owns.
#[derive(Default)]
pub struct TaskState {
    pub engine: Option<Engine>,
    source: Option<Arc<PreparedSource>>,
    pub(super) output: Option<Output>,
    pub(super) timeline: Timeline,
    pub(super) segment_pushed: bool,
    /// Sticky events that arrived before caps and segment could be sent.
    pub(super) held_events: Vec<gst::Event>,
    /// A Segment or EOS waiting until every frame of the audio before it is out.
    pub(super) draining: Option<Item>,
    window: Vec<f32>,
    seed: u64,
    /// Whether upstream is live, asked at the stream's first turn (again at later turns
    /// while the question finds no upstream to answer it).
    live: Option<bool>,
    /// Live: upstream's minimum latency (its audio for an instant arrives that much
    /// after it), ns.
    pub(super) upstream_latency_ns: u64,
    /// A stream-start went downstream (live: made here if upstream sent none in time).
    pub(super) stream_started: bool,
    /// Live: audio is arriving after its frames were drawn (logged once per stall).
    pub(super) stalled: bool,
    /// Live: audio stamped before this running time was cut by `interrupt`.
    pub(super) cut_before_ns: Option<u64>,
    /// Live: the last frame pushed, to fill the slot of one that cannot be drawn in time.
    pub(super) last_frame: Option<gst::Buffer>,
    /// Live: frames are being repeated (logged once per run of them).
    pub(super) repeating: bool,
}

impl TaskState {
    /// Forgets the current segment's audio and frames (not the engine, portrait or caps).
    pub(super) fn reset_stream(&mut self) {
        self.live = None;
        self.stalled = false;
        self.cut_before_ns = None;
        self.last_frame = None;
        self.repeating = false;
        self.timeline.reset();
        self.draining = None;
        if let Some(engine) = self.engine.as_mut() {
            engine.reset(self.seed);
        }
    }

    /// READY->PAUSED: a new portrait and seed, and a fresh stream.
    pub fn start_stream(&mut self, source: Arc<PreparedSource>, seed: u64) {
        self.source = Some(source);
        self.seed = seed;
        self.reset_stream();
    }

    /// The frame the timeline gave last is out: the timeline moves on, keeping the
    /// audio the motion source wants to hear behind the next frame.
    pub(super) fn frame_out(&mut self) {
        let history = self.engine.as_ref().map_or(0, Engine::history_samples);
        self.timeline.frame_done(history);
    }

    /// PAUSED->READY: forgets the stream, the portrait and the caps.
    pub fn stop_stream(&mut self) {
        self.reset_stream();
        self.source = None;
        if let Some(output) = self.output.take() {
            output.close();
        }
        self.segment_pushed = false;
        self.stream_started = false;
        self.held_events.clear();
    }
}

/// Where the task state lives between turns.
#[derive(Default)]
pub struct TaskSlot(Mutex<Option<TaskState>>);

impl TaskSlot {
    pub fn new() -> Self {
        Self(Mutex::new(Some(TaskState::default())))
    }

    /// Runs `f` on the state, for state changes while the task is stopped. If a turn is
    /// running (it never is then), nothing happens.
    pub fn with(&self, f: impl FnOnce(&mut TaskState)) {
        if let Some(state) = lock(&self.0).as_mut() {
            f(state);
        }
    }

    /// Takes the state for a turn; it goes back when the guard drops, also if the turn
    /// panicked.
    fn take(&self) -> Option<Turn<'_>> {
        let state = lock(&self.0).take()?;
        Some(Turn {
            slot: self,
            state: Some(state),
        })
    }
}

/// The state, out of its slot for one turn.
struct Turn<'a> {
    slot: &'a TaskSlot,
    state: Option<TaskState>,
}

impl std::ops::Deref for Turn<'_> {
    type Target = TaskState;
    fn deref(&self) -> &TaskState {
        self.state.as_ref().expect("held until drop")
    }
}

impl std::ops::DerefMut for Turn<'_> {
    fn deref_mut(&mut self) -> &mut TaskState {
        self.state.as_mut().expect("held until drop")
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        *lock(&self.slot.0) = self.state.take();
    }
}

/// What one turn of the task sends downstream, in order.
pub enum Out {
    Event(gst::Event),
    Buffer(gst::Buffer),
}

impl VasaFaceGen {
    pub(super) fn start_task(&self) -> Result<(), gst::glib::BoolError> {
        lock(&self.shared).flow = Ok(gst::FlowSuccess::Ok);
        let imp = self.ref_counted();
        self.srcpad.start_task(move || imp.task_iteration())
    }

    pub(super) fn src_activatemode(
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

    fn task_iteration(&self) {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let Some(mut state) = self.task.take() else {
                gst::error!(CAT, imp = self, "the task's state is missing");
                return Err(gst::FlowError::Error);
            };
            let outputs = self.next_outputs(&mut state)?;
            drop(state);
            self.push_outputs(outputs)
        }));
        let result = result.unwrap_or_else(|panic| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("Frame generation failed: {}", panic_message(&*panic))
            );
            Err(gst::FlowError::Error)
        });
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
            gst::FlowError::NotLinked | gst::FlowError::NotNegotiated | gst::FlowError::Error
        ) {
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

    /// One turn of the task: everything to push next (possibly nothing yet).
    fn next_outputs(&self, state: &mut TaskState) -> Result<Vec<Out>, gst::FlowError> {
        let new_source = {
            let mut shared = lock(&self.shared);
            if std::mem::take(&mut shared.reset_pending) {
                state.reset_stream();
                state.segment_pushed = false;
            }
            shared.new_source.take()
        };
        if let Some(source) = new_source {
            gst::info!(
                CAT,
                imp = self,
                "switching to portrait {}",
                source.portrait.path.display()
            );
            state.source = Some(source);
        }
        let live = match state.live {
            Some(live) => live,
            None => self.ask_liveness(state),
        };
        let (allowed, controls) = {
            let settings = lock(&self.settings);
            (settings.lookahead_samples(), settings.controls())
        };
        let lookahead = state
            .engine
            .as_ref()
            .map_or(allowed, |engine| engine.lookahead_samples(allowed, live));
        if live {
            return self.next_live_outputs(state, (lookahead, allowed), &controls);
        }
        let draining = state.draining.is_some();

        if let Some(outputs) = self.next_frame(state, (lookahead, allowed), &controls, draining)? {
            return Ok(outputs);
        }
        if let Some(item) = state.draining.take() {
            // Every frame of the audio before this Segment or EOS is out.
            return match item {
                Item::Segment(event) => {
                    state.reset_stream();
                    self.start_segment(state, event)
                }
                Item::Eos(event) => {
                    let mut outputs = Vec::new();
                    if !state.segment_pushed && !state.held_events.is_empty() {
                        outputs.extend(state.held_events.drain(..).map(Out::Event));
                    }
                    outputs.push(Out::Event(event));
                    Ok(outputs)
                }
                _ => unreachable!("only segments and EOS drain"),
            };
        }
        if let Some(absorbed) = state.timeline.continue_pending() {
            self.log_absorbed(state, absorbed, false);
            return Ok(Vec::new());
        }
        match self.next_item()? {
            Item::Audio { pts, samples, .. } => {
                let absorbed = state.timeline.push_audio(pts.nseconds(), samples);
                self.log_absorbed(state, absorbed, false);
                Ok(Vec::new())
            }
            Item::Gap { start, end, .. } => {
                state.timeline.push_gap(start.nseconds(), end.nseconds());
                Ok(Vec::new())
            }
            item @ (Item::Segment(_) | Item::Eos(_)) => {
                state.draining = Some(item);
                Ok(Vec::new())
            }
            Item::Event(event) => Ok(self.pass_event(state, event)),
        }
    }

    /// A serialized event in stream order: sent on, or held until the segment is out
    /// (sticky events other than stream-start must follow caps and segment).
    pub(super) fn pass_event(&self, state: &mut TaskState, event: gst::Event) -> Vec<Out> {
        if event.type_() == gst::EventType::StreamStart {
            if state.stream_started && state.live == Some(true) {
                // Live, the element started the stream itself before upstream did.
                gst::debug!(CAT, imp = self, "upstream's late stream-start not sent on");
                return Vec::new();
            }
            state.stream_started = true;
            return vec![Out::Event(event)];
        }
        if event.is_sticky() && !state.segment_pushed {
            state.held_events.push(event);
            Vec::new()
        } else {
            vec![Out::Event(event)]
        }
    }

    /// Whether this stream's frames follow the clock (`pace`, or asking upstream whether
    /// it is live); remembered for the stream once it is known.
    fn ask_liveness(&self, state: &mut TaskState) -> bool {
        let pace = lock(&self.settings).pace;
        let answer = match (pace, self.upstream_liveness()) {
            (PaceProperty::Audio, _) => Some(None),
            (PaceProperty::Clock, answer) => Some(Some(answer.flatten().unwrap_or(0))),
            (PaceProperty::Auto, answer) => answer,
        };
        let Some(answer) = answer else {
            // Nothing upstream answers yet (not linked): ask again next turn.
            return false;
        };
        let live = answer.is_some();
        state.upstream_latency_ns = answer.unwrap_or(0);
        state.live = Some(live);
        lock(&self.shared).live = live;
        gst::info!(
            CAT,
            imp = self,
            "upstream is {}",
            if live {
                "live: frames follow the pipeline clock"
            } else {
                "not live: frames follow the audio"
            }
        );
        live
    }

    pub(super) fn log_absorbed(&self, state: &mut TaskState, absorbed: Absorbed, live: bool) {
        let ms = |samples: u64| samples * 1000 / u64::from(SAMPLE_RATE);
        match absorbed {
            Absorbed::GapFilled { missing } => {
                state.stalled = false;
                gst::debug!(
                    CAT,
                    imp = self,
                    "gap of {} ms in the audio: filling with silence",
                    ms(missing)
                )
            }
            Absorbed::Trimmed { dropped, .. } if live => {
                self.stats.late_audio(dropped);
                if !std::mem::replace(&mut state.stalled, true) {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "audio arrived after its frames were drawn (as silence, on time): \
                         {} ms dropped; the total is in late-audio-dropped",
                        ms(dropped)
                    );
                }
            }
            Absorbed::Trimmed { overlap, .. } => gst::warning!(
                CAT,
                imp = self,
                "audio overlaps the previous by {} ms: trimmed",
                ms(overlap)
            ),
            Absorbed::Taken => state.stalled = false,
            Absorbed::Silence => {}
        }
    }

    /// Negotiates if downstream asked to (or nothing is negotiated yet); the caps event
    /// to push first, if the caps changed.
    pub(super) fn renegotiate(
        &self,
        state: &mut TaskState,
        force: bool,
    ) -> Result<Option<gst::Event>, gst::FlowError> {
        if !(force || self.srcpad.check_reconfigure()) {
            return Ok(None);
        }
        let negotiated = match self.negotiate(state.output.as_ref()) {
            Ok(negotiated) => negotiated,
            Err(err) => {
                self.srcpad.mark_reconfigure();
                return Err(err);
            }
        };
        let Some((output, event)) = negotiated else {
            return Ok(None);
        };
        // Frames already out keep their timestamps; a new rate counts from here.
        state.timeline.set_rate(output.rate);
        // A frame of the old format cannot fill a slot of the new one.
        state.last_frame = None;
        self.frame_rate_negotiated(output.rate);
        if let Some(old) = state.output.replace(output) {
            old.close();
        }
        Ok(Some(event))
    }

    /// Caps (negotiated now if needed), the segment, then events held back for it.
    fn start_segment(
        &self,
        state: &mut TaskState,
        event: gst::Event,
    ) -> Result<Vec<Out>, gst::FlowError> {
        let mut outputs = Vec::new();
        let force = state.output.is_none();
        outputs.extend(self.renegotiate(state, force)?.map(Out::Event));
        outputs.push(Out::Event(event));
        outputs.extend(state.held_events.drain(..).map(Out::Event));
        state.segment_pushed = true;
        Ok(outputs)
    }

    /// Generates the next frame if its audio (plus lookahead, unless draining) is here.
    /// `lookahead` is (what the motion source takes, what `latency` allows), in samples.
    fn next_frame(
        &self,
        state: &mut TaskState,
        (lookahead, allowed): (u64, u64),
        controls: &MotionControls,
        draining: bool,
    ) -> Result<Option<Vec<Out>>, gst::FlowError> {
        if !state.segment_pushed || !state.timeline.started() {
            return Ok(None);
        }
        let mut outputs: Vec<Out> = self
            .renegotiate(state, false)?
            .map(Out::Event)
            .into_iter()
            .collect();
        let slot = state.timeline.next_frame().expect("the segment has begun");
        if !state.timeline.is_ready(&slot, lookahead, draining) {
            // A renegotiation above still has to go out.
            return Ok((!outputs.is_empty()).then_some(outputs));
        }

        let buffer = self.draw_frame(state, &slot, (lookahead, allowed), controls, false)?;
        state.frame_out();
        outputs.push(Out::Buffer(buffer));
        Ok(Some(outputs))
    }

    /// The motion of `slot` (its audio window through the motion source). A repeated
    /// frame makes it too, so the face is where it should be when drawing resumes.
    pub(super) fn make_motion(
        &self,
        state: &mut TaskState,
        slot: &FrameSlot,
        lookahead: u64,
        controls: &MotionControls,
    ) -> Result<Motion, gst::FlowError> {
        let ended = state.draining.is_some();
        let live = state.live == Some(true);
        let TaskState {
            engine,
            timeline,
            window,
            source,
            ..
        } = state;
        let Some(engine) = engine.as_mut() else {
            gst::element_imp_error!(self, gst::CoreError::StateChange, ("No engine"));
            return Err(gst::FlowError::Error);
        };
        if let Some(source) = source {
            engine.use_portrait(source);
        }
        let mut audio = timeline.window(slot, engine.history_samples(), lookahead as usize, window);
        audio.ended = ended;
        audio.live = live;
        engine.set_controls(controls);
        engine
            .motion(&audio)
            .map_err(|err| self.generation_failed(err))
    }

    fn generation_failed(&self, err: crate::core::Error) -> gst::FlowError {
        gst::element_imp_error!(
            self,
            gst::StreamError::Failed,
            ("Frame generation failed: {err}")
        );
        gst::FlowError::Error
    }

    /// Draws the frame of `slot` into a buffer (the timeline does not move on).
    /// `audio_missing`: live, its audio had not come when it was due.
    pub(super) fn draw_frame(
        &self,
        state: &mut TaskState,
        slot: &FrameSlot,
        (lookahead, allowed): (u64, u64),
        controls: &MotionControls,
        audio_missing: bool,
    ) -> Result<gst::Buffer, gst::FlowError> {
        let began = Instant::now();
        let motion = self.make_motion(state, slot, lookahead, controls)?;
        let TaskState {
            engine,
            source,
            output,
            ..
        } = state;
        let (Some(engine), Some(source), Some(output)) = (engine.as_mut(), source, output) else {
            gst::element_imp_error!(
                self,
                gst::CoreError::StateChange,
                ("No engine, portrait or negotiated output")
            );
            return Err(gst::FlowError::Error);
        };
        let frame = engine
            .render(&motion, source, output.size)
            .map_err(|err| self.generation_failed(err))?;
        let notes = FrameNotes {
            audio_missing,
            face: match &motion {
                Motion::Face(face) => Some(*face),
                Motion::Keypoints(_) => None,
            },
            lips_at_rest: match &motion {
                Motion::Keypoints(keypoints) => Some(keypoints.mouth_rest),
                Motion::Face(_) => None,
            },
        };
        let buffer = self.frame_buffer(output, slot, &frame, &notes)?;
        self.stats.record(began.elapsed().as_nanos() as u64);
        if audio_missing {
            self.stats.frame_without_audio();
        }
        self.frame_generated(lookahead, allowed, output.rate.period_ns());
        Ok(buffer)
    }
}
