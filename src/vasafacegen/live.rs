//! The src task's turn when upstream is live: frames follow the pipeline clock.
//!
//! Frame `n` covers running time `[t_n, t_n+1)`. It is drawn as soon as its audio and the
//! lookahead after it are in, and at the latest when the clock reaches
//! `t_n+1 + lookahead + upstream latency`, the moment its audio should have arrived:
//! then the time still missing is drawn as silence (mouth at rest, blinks and calm head
//! motion go on) and the frame goes out on time, so it is shown at `t_n + latency` like
//! every other. Frames flow like this from PLAYING on, before the first word and in
//! every pause; audio arriving for time already drawn is dropped and counted.
//!
//! Frames are stamped in running time in a segment of the element's own (as an
//! aggregator's output is), so upstream's segments, the moment its first audio comes and
//! a flush that cuts the speech (barge-in) change nothing in the video's timeline.

use std::sync::atomic::Ordering;

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::imp::{CAT, VasaFaceGen};
use super::intake::Item;
use super::output::FRAME_META;
use super::task::{Out, TaskState};
use super::timeline::FrameSlot;
use crate::core::frame::ns_for_samples;
use crate::core::{MotionControls, lock};

const MS_NS: u64 = 1_000_000;

impl VasaFaceGen {
    /// One live turn: what to push next, possibly nothing (after a wait).
    pub(super) fn next_live_outputs(
        &self,
        state: &mut TaskState,
        (lookahead, allowed): (u64, u64),
        controls: &MotionControls,
    ) -> Result<Vec<Out>, gst::FlowError> {
        let (interrupted, cut_before, upstream_latency) = {
            let mut shared = lock(&self.shared);
            (
                std::mem::take(&mut shared.interrupt_pending),
                shared.cut_before_ns.take(),
                shared.upstream_latency_update.take(),
            )
        };
        if let Some(upstream) = upstream_latency
            && upstream != state.upstream_latency_ns
        {
            gst::info!(
                CAT,
                imp = self,
                "upstream latency now {} ms (was {} ms): frames are due that much later",
                upstream / MS_NS,
                state.upstream_latency_ns / MS_NS
            );
            state.upstream_latency_ns = upstream;
        }
        if interrupted {
            self.interrupt_audio(state);
        }
        if cut_before.is_some() {
            state.cut_before_ns = cut_before;
        }
        // What is pending or queued goes in first, without waiting.
        if let Some(absorbed) = state.timeline.continue_pending() {
            self.log_absorbed(state, absorbed, true);
            return Ok(Vec::new());
        }
        if let Some(item) = self.try_next_item()? {
            return Ok(self.take_live_item(state, item));
        }
        let Some((clock, base_time)) = self.running_clock() else {
            // Not PLAYING: nothing is due. Wait for audio, events or PLAYING.
            self.wait_while_paused()?;
            return Ok(Vec::new());
        };
        let now = clock.time().saturating_sub(base_time).nseconds();
        if !state.timeline.started() {
            gst::debug!(
                CAT,
                imp = self,
                "live frames start at running time {now} ns"
            );
            state.timeline.begin_at(now);
        }
        let mut outputs = Vec::new();
        if !state.segment_pushed {
            outputs = self.start_live_segment(state)?;
        } else if let Some(caps) = self.renegotiate(state, false)? {
            outputs.push(Out::Event(caps));
        }

        let slot = state.timeline.next_frame().expect("the timeline has begun");
        let draining = state.draining.is_some();
        let audio_missing = if state.timeline.is_ready(&slot, lookahead, draining) {
            false
        } else if draining {
            // EOS: every frame with audio is out.
            if let Some(Item::Eos(event)) = state.draining.take() {
                outputs.extend(state.held_events.drain(..).map(Out::Event));
                outputs.push(Out::Event(event));
            }
            return Ok(outputs);
        } else {
            let due = slot.pts_ns
                + slot.duration_ns
                + ns_for_samples(lookahead)
                + state.upstream_latency_ns;
            if now < due {
                if outputs.is_empty() {
                    self.wait_on_clock(&clock, base_time + gst::ClockTime::from_nseconds(due))?;
                }
                return Ok(outputs);
            }
            state.timeline.fill_silence_to(slot.span.end) > 0
        };

        // A frame that cannot be out in time even if drawn now (the engine is slower
        // than the frame rate, or the process stalled) is not drawn: the last frame
        // fills its slot, its motion still advances, and the video stays on time.
        let period = slot.duration_ns;
        let generation = self.stats.max_ns.load(Ordering::Relaxed).max(period);
        let deadline = slot.pts_ns
            + state.upstream_latency_ns
            + ns_for_samples(lookahead)
            + period
            + generation;
        // A frame drawn when it is due finishes right at its deadline when every frame
        // takes about as long: half a period of lateness (the clock wait's own) is let
        // through.
        if now + self.stats.mean_ns() > deadline + period / 2
            && let Some(buffer) = self.repeat_frame(state, &slot, lookahead, controls)?
        {
            state.frame_out();
            outputs.push(Out::Buffer(buffer));
            return Ok(outputs);
        }
        if std::mem::take(&mut state.repeating) {
            gst::info!(
                CAT,
                imp = self,
                "drawing frames again from {} ns",
                slot.pts_ns
            );
        }

        let cuts_before = lock(&self.shared).interruptions;
        let buffer =
            self.draw_frame(state, &slot, (lookahead, allowed), controls, audio_missing)?;
        if lock(&self.shared).interruptions != cuts_before {
            // The audio was cut while this frame was drawn from it: draw it again.
            gst::debug!(
                CAT,
                imp = self,
                "frame drawn across a flush: drawing it again"
            );
            return Ok(outputs);
        }
        state.frame_out();
        state.last_frame = Some(buffer.clone());
        outputs.push(Out::Buffer(buffer));
        Ok(outputs)
    }

    /// The last frame again, in `slot`'s place, marked `repeated`; `None` before the
    /// first frame.
    fn repeat_frame(
        &self,
        state: &mut TaskState,
        slot: &FrameSlot,
        lookahead: u64,
        controls: &MotionControls,
    ) -> Result<Option<gst::Buffer>, gst::FlowError> {
        let Some(mut buffer) = state.last_frame.as_ref().map(|last| last.copy()) else {
            return Ok(None);
        };
        self.make_motion(state, slot, lookahead, controls)?;
        {
            // A copy shares the pixels and owns its metadata.
            let buffer = buffer.get_mut().expect("a fresh copy");
            buffer.set_pts(gst::ClockTime::from_nseconds(slot.pts_ns));
            buffer.set_duration(gst::ClockTime::from_nseconds(slot.duration_ns));
            buffer.set_offset(slot.span.index);
            buffer.set_offset_end(slot.span.index + 1);
            buffer.unset_flags(gst::BufferFlags::DISCONT);
            match gst::meta::CustomMeta::from_mut_buffer(buffer, FRAME_META) {
                Ok(mut meta) => meta.mut_structure().set("repeated", true),
                Err(_) => {
                    if let Ok(mut meta) = gst::meta::CustomMeta::add(buffer, FRAME_META) {
                        meta.mut_structure().set("repeated", true);
                    }
                }
            }
        }
        self.stats.frame_repeated();
        if !std::mem::replace(&mut state.repeating, true) {
            gst::warning!(
                CAT,
                imp = self,
                "frames cannot be drawn in time (about {} ms each): repeating the last \
                 frame to stay on time; the total is in frames-repeated",
                self.stats.mean_ns() / 1_000_000
            );
        }
        Ok(Some(buffer))
    }

    /// An item from the sink pad, live: audio and gaps land by their running time.
    fn take_live_item(&self, state: &mut TaskState, item: Item) -> Vec<Out> {
        match item {
            Item::Audio {
                running_time: Some(running_time),
                ..
            } if state
                .cut_before_ns
                .is_some_and(|cut| running_time.nseconds() < cut) =>
            {
                gst::debug!(
                    CAT,
                    imp = self,
                    "audio of the speech cut at interrupt dropped"
                );
            }
            Item::Audio {
                running_time: Some(running_time),
                samples,
                ..
            } => {
                let absorbed = state.timeline.push_audio(running_time.nseconds(), samples);
                self.log_absorbed(state, absorbed, true);
            }
            Item::Audio {
                running_time: None, ..
            } => {
                gst::debug!(CAT, imp = self, "audio with no running time, skipped");
            }
            Item::Gap {
                running: Some((start, end)),
                ..
            } => {
                state.timeline.push_gap(start.nseconds(), end.nseconds());
            }
            Item::Gap { running: None, .. } => {}
            // Upstream's segments only map its timestamps to running time (intake does
            // that); the video has a segment of its own.
            Item::Segment(_) => gst::debug!(CAT, imp = self, "upstream segment taken"),
            item @ Item::Eos(_) => state.draining = Some(item),
            Item::Event(event) => return self.pass_event(state, event),
        }
        Vec::new()
    }

    /// Barge-in: the audio after the last frame drawn is gone; the lips go to rest and
    /// the head and blinks carry on.
    fn interrupt_audio(&self, state: &mut TaskState) {
        gst::info!(CAT, imp = self, "audio cut: the lips go to rest");
        if let (Some(next), Some(engine)) = (state.timeline.next_frame(), state.engine.as_mut()) {
            engine.interrupt(next.span.start);
        }
        state.timeline.interrupt();
        state.stalled = false;
    }

    /// Stream-start (if upstream has sent none), caps and the element's own segment, in
    /// running time, then the sticky events held for it.
    fn start_live_segment(&self, state: &mut TaskState) -> Result<Vec<Out>, gst::FlowError> {
        let mut outputs = Vec::new();
        if !state.stream_started {
            let stream_id = self.srcpad.create_stream_id(&*self.obj(), None::<&str>);
            outputs.push(Out::Event(gst::event::StreamStart::new(&stream_id)));
            state.stream_started = true;
        }
        let force = state.output.is_none();
        outputs.extend(self.renegotiate(state, force)?.map(Out::Event));
        let segment = gst::FormattedSegment::<gst::ClockTime>::new();
        outputs.push(Out::Event(gst::event::Segment::new(&segment)));
        outputs.extend(state.held_events.drain(..).map(Out::Event));
        state.segment_pushed = true;
        Ok(outputs)
    }

    /// The clock and base time while PLAYING.
    fn running_clock(&self) -> Option<(gst::Clock, gst::ClockTime)> {
        if !lock(&self.shared).playing {
            return None;
        }
        let obj = self.obj();
        Some((obj.clock()?, obj.base_time()?))
    }

    /// Waits until an item arrives, the element goes to PLAYING, or it must stop.
    fn wait_while_paused(&self) -> Result<(), gst::FlowError> {
        let mut shared = lock(&self.shared);
        loop {
            shared.flow?;
            if shared.has_items() || shared.interrupt_pending || shared.playing {
                // PLAYING without a clock cannot happen in a pipeline; do not spin.
                if shared.playing && self.obj().clock().is_none() {
                    gst::error!(CAT, imp = self, "PLAYING without a clock");
                    return Err(gst::FlowError::Error);
                }
                return Ok(());
            }
            shared = self.cond.wait(shared).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Waits until the clock reaches `time` (absolute) or something arrives.
    fn wait_on_clock(
        &self,
        clock: &gst::Clock,
        time: gst::ClockTime,
    ) -> Result<(), gst::FlowError> {
        let wait = clock.new_single_shot_id(time);
        {
            let mut shared = lock(&self.shared);
            shared.flow?;
            if shared.has_items() || shared.interrupt_pending || !shared.playing {
                return Ok(());
            }
            shared.clock_wait = Some(wait.clone());
        }
        // Unscheduled (by new audio, a flush, PAUSED) or reached: either way the next
        // turn looks again.
        let (_, jitter) = wait.wait();
        gst::trace!(
            CAT,
            imp = self,
            "clock wait for {time} ended, jitter {jitter} ns"
        );
        // The task is the only one to wait, so whatever is left there is this wait.
        lock(&self.shared).clock_wait = None;
        Ok(())
    }
}
