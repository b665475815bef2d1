//! The latency the element adds, and telling the pipeline when it changes.
//!
//! A frame can be drawn once its own audio (one frame period) and the lookahead after
//! it have arrived, and then takes time to generate: the element adds the lookahead +
//! one frame period + the longer of one frame period and the longest generation seen
//! so far. The lookahead is `latency`, or what the motion source takes beyond it (a
//! whole window of JoyVASA's when the stream is not live).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::imp::{CAT, VasaFaceGen};
use crate::core::frame::ns_for_samples;
use crate::core::{FrameRate, lock};

/// The frame rate assumed before one is negotiated.
pub const DEFAULT_RATE: FrameRate = FrameRate { num: 25, den: 1 };

/// Frame generation times since READY->PAUSED, for the properties and the latency.
#[derive(Default)]
pub struct Statistics {
    pub frames: AtomicU64,
    total_ns: AtomicU64,
    pub max_ns: AtomicU64,
    /// Live: frames drawn as silence because their audio was late.
    without_audio: AtomicU64,
    /// Live: audio dropped because its frames were drawn already, ns.
    late_audio_ns: AtomicU64,
    /// Live: frames shown again in the slot of one that could not be drawn in time.
    repeated: AtomicU64,
}

impl Statistics {
    pub fn record(&self, ns: u64) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.total_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    pub fn frame_without_audio(&self) {
        self.without_audio.fetch_add(1, Ordering::Relaxed);
    }

    pub fn frames_without_audio(&self) -> u64 {
        self.without_audio.load(Ordering::Relaxed)
    }

    pub fn late_audio(&self, samples: u64) {
        self.late_audio_ns
            .fetch_add(ns_for_samples(samples), Ordering::Relaxed);
    }

    pub fn late_audio_ns(&self) -> u64 {
        self.late_audio_ns.load(Ordering::Relaxed)
    }

    pub fn frame_repeated(&self) {
        self.repeated.fetch_add(1, Ordering::Relaxed);
    }

    pub fn frames_repeated(&self) -> u64 {
        self.repeated.load(Ordering::Relaxed)
    }

    /// The mean time a frame took to generate, ns (0 before the first).
    pub fn mean_ns(&self) -> u64 {
        let frames = self.frames.load(Ordering::Relaxed);
        self.total_ns
            .load(Ordering::Relaxed)
            .checked_div(frames)
            .unwrap_or(0)
    }

    pub fn reset(&self) {
        self.without_audio.store(0, Ordering::Relaxed);
        self.repeated.store(0, Ordering::Relaxed);
        self.late_audio_ns.store(0, Ordering::Relaxed);
        self.frames.store(0, Ordering::Relaxed);
        self.total_ns.store(0, Ordering::Relaxed);
        self.max_ns.store(0, Ordering::Relaxed);
    }

    pub fn mean_ms(&self) -> f64 {
        let frames = self.frames.load(Ordering::Relaxed);
        if frames == 0 {
            0.0
        } else {
            self.total_ns.load(Ordering::Relaxed) as f64 / frames as f64 / 1e6
        }
    }

    pub fn max_ms(&self) -> f64 {
        self.max_ns.load(Ordering::Relaxed) as f64 / 1e6
    }
}

/// What the latency answer is made of, beyond the settings.
pub struct LatencyState {
    /// The lookahead a motion source takes beyond `latency`, in samples; `u64::MAX`
    /// while the lookahead is `latency`.
    engine_lookahead: AtomicU64,
    /// The least lookahead the engine's motion source takes whatever `latency` says,
    /// live and not, in samples (known once the engine is built, before any frame).
    least_lookahead: [AtomicU64; 2],
    /// The generation time last included in a latency answer, in ns.
    reported_generation_ns: AtomicU64,
    /// The negotiated frame rate.
    frame_rate: Mutex<Option<FrameRate>>,
}

impl Default for LatencyState {
    fn default() -> Self {
        Self {
            engine_lookahead: AtomicU64::new(u64::MAX),
            least_lookahead: [AtomicU64::new(0), AtomicU64::new(0)],
            reported_generation_ns: AtomicU64::new(0),
            frame_rate: Mutex::new(None),
        }
    }
}

impl VasaFaceGen {
    /// Asks the pipeline to query the latency again.
    pub(super) fn post_latency_message(&self) {
        let obj = self.obj();
        let _ = obj.post_message(gst::message::Latency::builder().src(&*obj).build());
    }

    /// Answers a latency query on the src pad: upstream's latency plus ours.
    pub(super) fn answer_latency(&self, latency: &mut gst::query::Latency) -> bool {
        let mut upstream = gst::query::Latency::new();
        if !self.sinkpad.peer_query(&mut upstream) {
            return false;
        }
        let (live, min, max) = upstream.result();
        let own = self.own_latency(live);
        gst::debug!(
            CAT,
            imp = self,
            "latency: upstream {min} (live {live}) + own {own}"
        );
        latency.set(live, min + own, max.map(|max| max + own));
        true
    }

    /// Lookahead + one frame period (waiting for the frame's own audio) + the time a
    /// frame takes to generate: one frame period, or the longest generation seen so far
    /// if that is longer (a neural motion source generating a window of motion at once).
    /// The lookahead is at least what the motion source's window rule needs for a
    /// `live` (or not) upstream, known before any frame is drawn.
    pub(super) fn own_latency(&self, live: bool) -> gst::ClockTime {
        let state = &self.latency;
        let lookahead = match state.engine_lookahead.load(Ordering::Relaxed) {
            u64::MAX => lock(&self.settings).lookahead_samples(),
            samples => samples,
        }
        .max(state.least_lookahead[usize::from(live)].load(Ordering::Relaxed));
        let rate = lock(&state.frame_rate).unwrap_or(DEFAULT_RATE);
        let generation = self
            .stats
            .max_ns
            .load(Ordering::Relaxed)
            .max(rate.period_ns());
        state
            .reported_generation_ns
            .store(generation, Ordering::Relaxed);
        gst::ClockTime::from_nseconds(ns_for_samples(lookahead))
            + gst::ClockTime::from_nseconds(rate.period_ns() + generation)
    }

    /// The engine is built: the least lookahead its motion source takes, live and not.
    pub(super) fn engine_lookahead_known(&self, live: u64, not_live: u64) {
        let state = &self.latency;
        state.least_lookahead[1].store(live, Ordering::Relaxed);
        state.least_lookahead[0].store(not_live, Ordering::Relaxed);
    }

    /// A new frame rate was negotiated; a change mid-stream changes the latency.
    pub(super) fn frame_rate_negotiated(&self, rate: FrameRate) {
        let previous = lock(&self.latency.frame_rate).replace(rate);
        if previous.is_some_and(|old| old != rate) {
            self.post_latency_message();
        }
    }

    /// After a frame: tells the pipeline to ask again for the latency when it changed:
    /// the motion source took another lookahead than `latency` (`allowed`), or a frame
    /// took longer than the latency answer allowed for.
    pub(super) fn frame_generated(&self, lookahead: u64, allowed: u64, period_ns: u64) {
        let state = &self.latency;
        let beyond = if lookahead == allowed {
            u64::MAX
        } else {
            lookahead
        };
        let previous = state.engine_lookahead.swap(beyond, Ordering::Relaxed);
        let reported = state
            .reported_generation_ns
            .load(Ordering::Relaxed)
            .max(period_ns);
        let longest = self.stats.max_ns.load(Ordering::Relaxed);
        let slower = longest > reported + period_ns / 2;
        if slower {
            state
                .reported_generation_ns
                .store(longest, Ordering::Relaxed);
        }
        if previous != beyond || slower {
            self.post_latency_message();
        }
    }

    /// Forgets what the last stream measured (READY->PAUSED).
    pub(super) fn reset_latency(&self) {
        self.stats.reset();
        *lock(&self.latency.frame_rate) = None;
    }

    /// Whether upstream is live, with its minimum latency in ns if it is; `None` when
    /// nothing upstream answers (not linked yet). Asked with no lock held.
    pub(super) fn upstream_liveness(&self) -> Option<Option<u64>> {
        let mut query = gst::query::Latency::new();
        if !self.sinkpad.peer_query(&mut query) {
            return None;
        }
        let (live, min, _) = query.result();
        Some(live.then_some(min.nseconds()))
    }
}
