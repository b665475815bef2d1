//! The frame timeline of one segment, with no GStreamer types: where audio lands by its
//! timestamp (jitter ignored, gaps filled with silence, overlaps trimmed), which frame
//! comes next, which samples it covers and when it is shown, and when its audio is in.
//!
//! Frame `n` of a run of frames at one rate covers the samples
//! `anchor_sample + [start(n), start(n + 1))` (see [`FrameRate`]) and is shown at
//! `anchor_ns + offset(n)`. A run starts at the segment's first sample; a frame-rate
//! change mid-stream starts a new run where the last frame ended, so no frame is
//! dropped or doubled and the timestamps stay contiguous.

use crate::core::frame::samples_for_ns;
use crate::core::{AudioWindow, FrameRate, FrameSpan, SAMPLE_RATE, SampleStore};

/// Timestamp jitter tolerated before audio counts as a gap or an overlap (the same
/// default as audiobasesink's alignment-threshold): 40 ms.
pub const RESYNC_THRESHOLD_SAMPLES: u64 = SAMPLE_RATE as u64 * 40 / 1000;
/// Silence for a gap is added in slices of this many samples, frames in between, so a
/// gap of an hour costs no more memory than one of a second.
pub const SILENCE_SLICE_SAMPLES: u64 = SAMPLE_RATE as u64;

/// Where the current run of frames started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    anchor_ns: u64,
    anchor_sample: u64,
    rate: FrameRate,
    /// Frames produced since the anchor.
    frames: u64,
}

/// Audio accepted but not wholly absorbed yet (a long gap is filled slice by slice).
#[derive(Debug)]
enum Pending {
    Audio { pts_ns: u64, samples: Vec<f32> },
    Silence { until_sample: u64 },
}

/// What happened to audio handed to the timeline, for the element's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absorbed {
    /// Taken as it is (within the jitter threshold of where it belongs).
    Taken,
    /// A slice of silence went in before it, for a gap of `missing` samples; the rest
    /// comes with [`Timeline::continue_pending`].
    GapFilled { missing: u64 },
    /// It overlapped audio already here by `overlap` samples; `dropped` of its own
    /// samples (at most all of them) were dropped.
    Trimmed { overlap: u64, dropped: u64 },
    /// Silence (a GAP event) went in.
    Silence,
}

/// One frame to draw: its samples, timestamp, duration and offset in the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSlot {
    pub span: FrameSpan,
    pub pts_ns: u64,
    pub duration_ns: u64,
}

impl FrameSlot {
    /// The first frame of a segment starts a discontinuity.
    pub fn is_first(&self) -> bool {
        self.span.index == 0
    }
}

#[derive(Debug, Default)]
pub struct Timeline {
    /// The negotiated frame rate (set before the segment's first frame).
    rate: Option<FrameRate>,
    /// Timestamp (ns) of the segment's first sample, from its first audio or gap.
    origin_ns: Option<u64>,
    run: Option<Run>,
    /// Frames produced since the segment started (buffer offsets).
    frames_in_segment: u64,
    audio: SampleStore,
    pending: Option<Pending>,
}

impl Timeline {
    /// Forgets the segment's audio and frames (not the frame rate).
    pub fn reset(&mut self) {
        *self = Self {
            rate: self.rate,
            ..Self::default()
        };
    }

    /// Whether the segment has begun (audio or a gap arrived).
    pub fn started(&self) -> bool {
        self.run.is_some()
    }

    /// One past the last sample received.
    #[cfg(test)]
    pub fn received(&self) -> u64 {
        self.audio.received()
    }

    /// Sets the frame rate. A change mid-stream starts a new run of frames where the
    /// last one ended: frames already out keep their timestamps.
    pub fn set_rate(&mut self, rate: FrameRate) {
        self.rate = Some(rate);
        if let Some(run) = &mut self.run
            && run.rate != rate
        {
            run.anchor_ns += run.rate.frame_offset_ns(run.frames);
            run.anchor_sample += run.rate.frame_start_sample(run.frames);
            run.rate = rate;
            run.frames = 0;
        }
    }

    /// Starts the frames at `ns` before any audio has come (live: a face from PLAYING
    /// on, as a camera would). Audio then lands by its time relative to `ns`.
    pub fn begin_at(&mut self, ns: u64) {
        self.start(ns);
    }

    /// Anchors the segment's first sample at `pts_ns` unless it already has an origin;
    /// returns the origin.
    fn start(&mut self, pts_ns: u64) -> u64 {
        let origin = *self.origin_ns.get_or_insert(pts_ns);
        if self.run.is_none() {
            let rate = self
                .rate
                .unwrap_or(FrameRate::new(25, 1).expect("positive"));
            self.run = Some(Run {
                anchor_ns: origin,
                anchor_sample: 0,
                rate,
                frames: 0,
            });
        }
        origin
    }

    /// Audio whose first sample has timestamp `pts_ns`.
    pub fn push_audio(&mut self, pts_ns: u64, samples: Vec<f32>) -> Absorbed {
        let origin = self.start(pts_ns);
        let received = self.audio.received() as i64;
        let position = if pts_ns >= origin {
            samples_for_ns(pts_ns - origin) as i64
        } else {
            -(samples_for_ns(origin - pts_ns) as i64)
        };
        let drift = position - received;
        if drift > RESYNC_THRESHOLD_SAMPLES as i64 {
            let missing = drift as u64;
            self.audio
                .extend_silence(missing.min(SILENCE_SLICE_SAMPLES));
            // The rest of the gap and the audio itself come after the frames this slice
            // completes.
            self.pending = Some(Pending::Audio { pts_ns, samples });
            Absorbed::GapFilled { missing }
        } else if drift < -(RESYNC_THRESHOLD_SAMPLES as i64) {
            let overlap = (-drift) as usize;
            if overlap < samples.len() {
                self.audio.extend(&samples[overlap..]);
            }
            Absorbed::Trimmed {
                overlap: overlap as u64,
                dropped: overlap.min(samples.len()) as u64,
            }
        } else {
            self.audio.extend(&samples);
            Absorbed::Taken
        }
    }

    /// A gap without audio from `start_ns` to `end_ns` (a GAP event). A stream may begin
    /// with one (a live source that starts silent): the video then starts there.
    pub fn push_gap(&mut self, start_ns: u64, end_ns: u64) -> Absorbed {
        let origin = self.start(start_ns);
        let until_sample = samples_for_ns(end_ns.saturating_sub(origin));
        self.fill_silence(until_sample);
        Absorbed::Silence
    }

    fn fill_silence(&mut self, until_sample: u64) {
        let missing = until_sample.saturating_sub(self.audio.received());
        if missing > 0 {
            self.audio
                .extend_silence(missing.min(SILENCE_SLICE_SAMPLES));
            if missing > SILENCE_SLICE_SAMPLES {
                self.pending = Some(Pending::Silence { until_sample });
            }
        }
    }

    /// Whether audio accepted earlier is still being absorbed.
    #[cfg(test)]
    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Absorbs the next part of what is pending (after the frames the last slice
    /// completed are out).
    pub fn continue_pending(&mut self) -> Option<Absorbed> {
        match self.pending.take()? {
            Pending::Audio { pts_ns, samples } => Some(self.push_audio(pts_ns, samples)),
            Pending::Silence { until_sample } => {
                self.fill_silence(until_sample);
                Some(Absorbed::Silence)
            }
        }
    }

    /// Fills the time up to `end` (a sample number) with silence, for a frame that must
    /// be drawn before its audio came (live); returns how many samples were missing.
    /// Audio that comes later for that time overlaps and is dropped.
    pub fn fill_silence_to(&mut self, end: u64) -> u64 {
        let missing = end.saturating_sub(self.audio.received());
        self.audio.extend_silence(missing);
        missing
    }

    /// The audio stops here (a flush, barge-in): what was received for the next frame
    /// on is forgotten and what later frames would still hear of the past is silenced,
    /// so the lips go to rest at once. The frames carry on where they were.
    pub fn interrupt(&mut self) {
        self.pending = None;
        if let Some(next) = self.next_frame() {
            self.audio.cut_at(next.span.start);
        }
        self.audio.silence_all();
    }

    /// The next frame, once the segment has begun.
    pub fn next_frame(&self) -> Option<FrameSlot> {
        let run = self.run?;
        let rate = run.rate;
        let pts_ns = run.anchor_ns + rate.frame_offset_ns(run.frames);
        let next_ns = run.anchor_ns + rate.frame_offset_ns(run.frames + 1);
        Some(FrameSlot {
            span: FrameSpan {
                index: self.frames_in_segment,
                start: run.anchor_sample + rate.frame_start_sample(run.frames),
                end: run.anchor_sample + rate.frame_start_sample(run.frames + 1),
                rate,
            },
            pts_ns,
            duration_ns: next_ns - pts_ns,
        })
    }

    /// Whether `slot`'s audio is in: the frame and `lookahead` samples after it, or,
    /// when draining (EOS or a new segment next), any audio of the frame at all.
    pub fn is_ready(&self, slot: &FrameSlot, lookahead: u64, draining: bool) -> bool {
        let received = self.audio.received();
        if draining {
            slot.span.start < received
        } else {
            received >= slot.span.end + lookahead
        }
    }

    /// The audio window of `slot`: `history` samples before it to `lookahead` after it.
    pub fn window<'b>(
        &self,
        slot: &FrameSlot,
        history: usize,
        lookahead: usize,
        buffer: &'b mut Vec<f32>,
    ) -> AudioWindow<'b> {
        self.audio.window(slot.span, history, lookahead, buffer)
    }

    /// The frame `next_frame` gave is out: moves on, and forgets audio no later frame
    /// needs (`history` samples before the next frame are kept).
    pub fn frame_done(&mut self, history: usize) {
        let Some(run) = &mut self.run else {
            return;
        };
        run.frames += 1;
        self.frames_in_segment += 1;
        let next_start = run.anchor_sample + run.rate.frame_start_sample(run.frames);
        self.audio
            .discard_before(next_start.saturating_sub(history as u64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn rate(fps: i32) -> FrameRate {
        FrameRate::new(fps, 1).unwrap()
    }

    fn timeline(fps: i32) -> Timeline {
        let mut t = Timeline::default();
        t.set_rate(rate(fps));
        t
    }

    fn samples(ms: u64) -> Vec<f32> {
        vec![0.5; (ms * 16) as usize]
    }

    /// Every frame that is ready, with its window's frame samples.
    fn drain(t: &mut Timeline, lookahead: u64, draining: bool) -> Vec<(FrameSlot, Vec<f32>)> {
        let mut out = Vec::new();
        let mut buffer = Vec::new();
        while let Some(slot) = t.next_frame() {
            if !t.is_ready(&slot, lookahead, draining) {
                break;
            }
            let frame = t.window(&slot, 0, 0, &mut buffer).frame_samples().to_vec();
            out.push((slot, frame));
            t.frame_done(0);
        }
        out
    }

    /// Absorbs everything pending, drawing the frames each slice completes.
    fn absorb(t: &mut Timeline, frames: &mut Vec<(FrameSlot, Vec<f32>)>) {
        loop {
            frames.extend(drain(t, 0, false));
            if t.continue_pending().is_none() {
                break;
            }
        }
    }

    fn assert_contiguous(frames: &[(FrameSlot, Vec<f32>)]) {
        for (i, pair) in frames.windows(2).enumerate() {
            let (a, b) = (&pair[0].0, &pair[1].0);
            assert_eq!(
                a.pts_ns + a.duration_ns,
                b.pts_ns,
                "timestamps at frame {i}"
            );
            assert_eq!(a.span.end, b.span.start, "samples at frame {i}");
            assert_eq!(a.span.index + 1, b.span.index, "offsets at frame {i}");
        }
    }

    #[test]
    fn frames_wait_for_their_audio_and_lookahead_and_draining_takes_the_rest() {
        let mut t = timeline(25);
        assert!(
            t.next_frame().is_none(),
            "no frame before the segment begins"
        );
        assert_eq!(t.push_audio(1_000 * MS, samples(1_000)), Absorbed::Taken);
        let frames = drain(&mut t, 3_200, false);
        // 1 s at 25 fps with 200 ms of lookahead: the frames up to 0.8 s.
        assert_eq!(frames.len(), 20);
        assert_eq!(frames[0].0.pts_ns, 1_000 * MS);
        assert!(frames[0].0.is_first() && !frames[1].0.is_first());
        let rest = drain(&mut t, 3_200, true);
        assert_eq!(rest.len(), 5);
        let all: Vec<_> = frames.into_iter().chain(rest).collect();
        assert_contiguous(&all);
        assert_eq!(all.last().unwrap().0.pts_ns, 1_960 * MS);
    }

    #[test]
    fn jitter_within_40_ms_is_ignored() {
        let mut t = timeline(25);
        let mut at = 0;
        for i in 0..50u64 {
            // 20 ms buffers whose timestamps wobble by up to 15 ms.
            let jitter = [0, 15 * MS, 7 * MS, 0, 3 * MS][(i % 5) as usize];
            assert_eq!(t.push_audio(at + jitter, samples(20)), Absorbed::Taken);
            at += 20 * MS;
        }
        assert_eq!(t.received(), 16_000);
        assert_eq!(drain(&mut t, 0, true).len(), 25);
    }

    #[test]
    fn a_gap_in_timestamps_becomes_silence_slice_by_slice() {
        let mut t = timeline(25);
        t.push_audio(0, samples(1_000));
        let mut frames = drain(&mut t, 0, false);
        // 2.5 s later than where it belongs.
        assert_eq!(
            t.push_audio(3_500 * MS, samples(500)),
            Absorbed::GapFilled { missing: 40_000 }
        );
        // Only a one-second slice so far; the frames it completes come first.
        assert_eq!(t.received(), 32_000);
        absorb(&mut t, &mut frames);
        assert_eq!(t.received(), 64_000);
        frames.extend(drain(&mut t, 0, true));
        assert_eq!(frames.len(), 100);
        assert_contiguous(&frames);
        let silent = |(_, f): &(FrameSlot, Vec<f32>)| f.iter().all(|&s| s == 0.0);
        assert!(frames[..25].iter().all(|f| !silent(f)));
        assert!(frames[25..87].iter().all(silent));
        assert!(frames[88..].iter().all(|f| !silent(f)));
    }

    #[test]
    fn gap_events_become_silence_and_may_start_a_stream() {
        let mut t = timeline(25);
        // A live source that starts silent: the video starts with the gap.
        assert_eq!(t.push_gap(500 * MS, 1_000 * MS), Absorbed::Silence);
        t.push_audio(1_000 * MS, samples(500));
        let mut frames = Vec::new();
        absorb(&mut t, &mut frames);
        frames.extend(drain(&mut t, 0, true));
        assert_eq!(frames.len(), 25);
        assert_eq!(frames[0].0.pts_ns, 500 * MS);
        assert!(
            frames[..12]
                .iter()
                .all(|(_, f)| f.iter().all(|&s| s == 0.0))
        );
        // An hour of GAP is absorbed a second at a time.
        t.push_gap(1_500 * MS, 3_601_500 * MS);
        assert!(t.has_pending());
        assert_eq!(t.received(), 32_000);
    }

    #[test]
    fn an_overlap_is_trimmed() {
        let mut t = timeline(25);
        t.push_audio(0, samples(1_000));
        // Starts 100 ms before the end of what is here: those samples are dropped.
        let overlapping: Vec<f32> = vec![0.25; 16_000];
        assert_eq!(
            t.push_audio(900 * MS, overlapping),
            Absorbed::Trimmed {
                overlap: 1_600,
                dropped: 1_600
            }
        );
        assert_eq!(t.received(), 16_000 + 14_400);
        // Entirely inside what is here: nothing added.
        t.push_audio(0, samples(500));
        assert_eq!(t.received(), 30_400);
    }

    #[test]
    fn a_new_segment_restarts_the_count_and_the_clock() {
        let mut t = timeline(25);
        t.push_audio(0, samples(1_000));
        assert_eq!(drain(&mut t, 0, true).len(), 25);
        t.reset();
        assert!(!t.started());
        t.push_audio(7_000 * MS, samples(200));
        let frames = drain(&mut t, 0, true);
        assert_eq!(frames.len(), 5);
        assert_eq!(frames[0].0.span.index, 0);
        assert_eq!(frames[0].0.pts_ns, 7_000 * MS);
        // The rate survives the reset.
        assert_eq!(frames[0].0.span.rate, rate(25));
    }

    #[test]
    fn a_rate_change_mid_stream_reanchors_without_dropping_or_doubling_a_frame() {
        for (from, to) in [(25, 30), (30, 24), (25, 7), (30000, 1001)] {
            let (from, to) = (
                FrameRate::new(from, if from == 30000 { 1001 } else { 1 }).unwrap(),
                FrameRate::new(to, 1).unwrap(),
            );
            let mut t = Timeline::default();
            t.set_rate(from);
            t.push_audio(250 * MS, samples(3_000));
            let mut frames = Vec::new();
            let mut buffer = Vec::new();
            for _ in 0..13 {
                let slot = t.next_frame().unwrap();
                let frame = t.window(&slot, 0, 0, &mut buffer).frame_samples().to_vec();
                frames.push((slot, frame));
                t.frame_done(0);
            }
            t.set_rate(to);
            frames.extend(drain(&mut t, 0, true));
            assert_contiguous(&frames);
            let (first, last) = (&frames[0].0, &frames.last().unwrap().0);
            assert_eq!(first.span.start, 0);
            // Every sample is covered once, and the last frame holds the last sample.
            assert!(
                last.span.start < 48_000 && last.span.end >= 48_000,
                "{from:?} -> {to:?}"
            );
            assert_eq!(frames[13].0.span.rate, to);
            assert_eq!(
                frames[13].0.pts_ns,
                250 * MS + from.frame_offset_ns(13),
                "{from:?} -> {to:?}"
            );
            // Setting the same rate again changes nothing.
            let before = t.next_frame();
            t.set_rate(to);
            assert_eq!(t.next_frame(), before);
        }
    }

    #[test]
    fn audio_before_the_origin_counts_from_the_origin() {
        let mut t = timeline(25);
        t.push_gap(1_000 * MS, 1_040 * MS);
        // Late audio stamped before the segment began overlaps what is here.
        assert_eq!(
            t.push_audio(900 * MS, samples(200)),
            Absorbed::Trimmed {
                overlap: 2_240,
                dropped: 2_240
            }
        );
        assert_eq!(t.received(), 1_600);
    }

    /// Draws frames the way the live task does when their audio is late: silence up to
    /// the frame's end, then the frame.
    fn draw_late(t: &mut Timeline, count: usize) -> Vec<(FrameSlot, Vec<f32>)> {
        let mut out = Vec::new();
        let mut buffer = Vec::new();
        for _ in 0..count {
            let slot = t.next_frame().unwrap();
            t.fill_silence_to(slot.span.end);
            let frame = t.window(&slot, 0, 0, &mut buffer).frame_samples().to_vec();
            out.push((slot, frame));
            t.frame_done(0);
        }
        out
    }

    #[test]
    fn live_frames_start_before_audio_and_late_audio_is_dropped() {
        let mut t = timeline(25);
        t.begin_at(300 * MS);
        assert!(t.started());
        // Half a second with no audio at all: 12 frames of silence from 300 ms on.
        let mut frames = draw_late(&mut t, 12);
        assert_eq!(frames[0].0.pts_ns, 300 * MS);
        // Audio for 700..900 ms arrives late: the first 80 ms were drawn already.
        let late = vec![0.5; 3_200];
        assert_eq!(
            t.push_audio(700 * MS, late),
            Absorbed::Trimmed {
                overlap: 1_280,
                dropped: 1_280
            }
        );
        // Wholly late audio is wholly dropped, however long ago it belonged.
        assert_eq!(
            t.push_audio(0, samples(20)),
            Absorbed::Trimmed {
                overlap: 14_400,
                dropped: 320
            }
        );
        // Audio on time after a hole lands where it belongs.
        assert_eq!(
            t.push_audio(1_300 * MS, samples(200)),
            Absorbed::GapFilled { missing: 6_400 }
        );
        absorb(&mut t, &mut frames);
        frames.extend(drain(&mut t, 0, true));
        assert_contiguous(&frames);
        let loud = |(_, f): &(FrameSlot, Vec<f32>)| f.iter().all(|&s| s > 0.0);
        // 300..780 silence, 780..900 the late audio's rest, 900..1300 silence, then sound.
        assert!(frames[..12].iter().all(|f| !loud(f)));
        assert!(frames[12..15].iter().all(loud));
        assert!(frames[15..25].iter().all(|f| !loud(f)));
        assert!(frames[25..].iter().all(loud));
        assert_eq!(frames.len(), 30);
    }

    #[test]
    fn an_interruption_forgets_the_audio_ahead_and_keeps_the_frames_going() {
        let mut t = timeline(25);
        t.begin_at(0);
        t.push_audio(0, samples(1_000));
        let mut frames = drain(&mut t, 1_600, false);
        assert_eq!(frames.len(), 22);
        t.interrupt();
        // Nothing is ready: the audio for frame 22 on is gone.
        let next = t.next_frame().unwrap();
        assert!(!t.is_ready(&next, 0, false));
        let mut history = Vec::new();
        assert!(
            t.window(&next, 640, 0, &mut history)
                .samples
                .iter()
                .all(|&s| s == 0.0),
            "what came before the cut is not heard any more"
        );
        frames.extend(draw_late(&mut t, 3));
        // New audio after the cut lands by its time.
        assert_eq!(t.push_audio(1_000 * MS, samples(200)), Absorbed::Taken);
        frames.extend(drain(&mut t, 0, true));
        assert_contiguous(&frames);
        assert!(
            frames[22..25]
                .iter()
                .all(|(_, f)| f.iter().all(|&s| s == 0.0))
        );
        assert_eq!(frames.len(), 30);
    }
}
