//! The element with a live upstream, on a `TestClock`: frames follow the clock from
//! PLAYING on, before the first word and through pauses in the audio; audio that comes
//! late is dropped and counted; a flush from upstream (barge-in) rests the lips and the
//! video goes on. Each test plays out a schedule of audio arrivals against the clock,
//! event by event, so nothing depends on how fast this machine is.

mod common;

use common::{AUDIO_CAPS, RATE, astronaut, audio_buffer, init, speech_clip};
use gst::prelude::*;

const MS: u64 = 1_000_000;
const PERIOD_MS: u64 = 40;
const SMALL: &str = "video/x-raw,format=RGBA,width=96,height=96,framerate=25/1";
/// The element's `latency` in these tests: its lookahead.
const LOOKAHEAD_MS: u64 = 100;

/// Something that happens upstream at a clock time.
enum Arrival {
    /// Audio pushed at `at`, timestamped `pts` (as `do-timestamp` gives: its running time
    /// when pushed, or earlier for a source that reports latency).
    Audio {
        at: u64,
        pts: u64,
        samples: Vec<i16>,
    },
    /// The application cuts the speech: FLUSH_START and FLUSH_STOP from upstream.
    Flush { at: u64 },
    /// The application cuts the speech with the element's `interrupt` signal.
    Interrupt { at: u64 },
    /// Upstream's latency becomes `to` (a source joined a mixer): the pipeline asks
    /// again and sends a LATENCY event upstream.
    Latency { at: u64, to: u64 },
}

impl Arrival {
    fn at(&self) -> u64 {
        match self {
            Self::Audio { at, .. }
            | Self::Flush { at }
            | Self::Interrupt { at }
            | Self::Latency { at, .. } => *at,
        }
    }
}

/// Speech as a live source gives it: 20 ms buffers, each pushed when its last sample
/// was captured, stamped with its first sample's running time.
fn spoken(samples: &[i16], from_ns: u64) -> Vec<Arrival> {
    let chunk = RATE as usize / 50;
    samples
        .chunks(chunk)
        .enumerate()
        .map(|(i, part)| {
            let pts = from_ns + (i * chunk) as u64 * 1_000_000_000 / RATE;
            Arrival::Audio {
                at: pts + part.len() as u64 * 1_000_000_000 / RATE,
                pts,
                samples: part.to_vec(),
            }
        })
        .collect()
}

/// A frame as it came out, with the clock time at which it was pushed.
struct Frame {
    pts: u64,
    duration: u64,
    pushed_at: u64,
    audio_missing: bool,
    /// Builtin motion: the mouth's opening; keypoint motion (JoyVASA): none.
    mouth_open: f64,
    /// Keypoint motion: how much the silence rule holds the lips at rest.
    lips_at_rest: Option<f64>,
    /// Builtin motion: the head's turn, degrees.
    yaw: f64,
    /// The last frame again, in the slot of one that could not be drawn in time.
    repeated: bool,
    /// A digest of the pixels.
    pixels: u64,
}

struct LiveRun {
    h: gst_check::Harness,
    clock: gst_check::TestClock,
    pushed_at: std::sync::Arc<std::sync::Mutex<Vec<u64>>>,
}

impl LiveRun {
    /// A vasafacegen after a live source, on a test clock at 0, PLAYING.
    fn new(properties: &[(&str, &str)]) -> Self {
        Self::with(properties, true)
    }

    /// The same after a source that is live or not.
    fn with(properties: &[(&str, &str)], upstream_live: bool) -> Self {
        init();
        let image = astronaut();
        let mut builder = gst::ElementFactory::make("vasafacegen")
            .property("image", image.to_str().unwrap())
            .property("latency", LOOKAHEAD_MS as u32);
        for (name, value) in properties {
            builder = builder.property_from_str(name, value);
        }
        let element = builder.build().unwrap();
        let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
        h.set_live(upstream_live);
        h.use_testclock();
        let clock = h.testclock().unwrap();
        // The clock time of each push, read in the streaming thread as it pushes.
        let pushed_at = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (record, probe_clock) = (pushed_at.clone(), clock.clone());
        element
            .static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                record.lock().unwrap().push(probe_clock.time().nseconds());
                gst::PadProbeReturn::Ok
            });
        h.set_sink_caps_str(SMALL);
        h.play();
        h.set_src_caps_str(AUDIO_CAPS);
        Self {
            h,
            clock,
            pushed_at,
        }
    }

    /// Plays out `arrivals` (in time order) against the clock until it reaches `until`:
    /// whenever the element waits on the clock, whatever arrives before its wait ends is
    /// delivered first; otherwise the clock moves to the wait's end and releases it.
    fn play_until(&mut self, arrivals: Vec<Arrival>, until: u64) {
        let mut arrivals = arrivals.into_iter().peekable();
        loop {
            // A live element always ends up waiting on the clock for its next frame.
            let (waiting, mut waits) = self.clock.timed_wait_for_multiple_pending_ids(1, 20_000);
            assert!(waiting, "the element did not wait on the clock within 20 s");
            let wait = waits.remove(0);
            let due = wait.time().nseconds();
            if let Some(next) = arrivals.next_if(|a| a.at() <= due.min(until)) {
                self.clock
                    .set_time(gst::ClockTime::from_nseconds(next.at()).max(self.clock.time()));
                match next {
                    Arrival::Audio { pts, samples, .. } => {
                        assert_eq!(
                            self.h.push(audio_buffer(&samples, pts)),
                            Ok(gst::FlowSuccess::Ok)
                        );
                    }
                    Arrival::Flush { .. } => {
                        assert!(self.h.push_event(gst::event::FlushStart::new()));
                        assert!(self.h.push_event(gst::event::FlushStop::new(false)));
                        // A source sends a new segment after a flush.
                        let segment = gst::FormattedSegment::<gst::ClockTime>::new();
                        assert!(self.h.push_event(gst::event::Segment::new(&segment)));
                    }
                    Arrival::Interrupt { .. } => {
                        let element = self.h.element().unwrap();
                        assert!(element.emit_by_name::<bool>("interrupt", &[]));
                    }
                    Arrival::Latency { to, .. } => {
                        self.h
                            .set_upstream_latency(gst::ClockTime::from_nseconds(to));
                        let total = gst::ClockTime::from_nseconds(self.latency());
                        assert!(self.h.push_upstream_event(gst::event::Latency::new(total)));
                    }
                }
                // The element woke up for it and will wait again.
                continue;
            }
            if due > until {
                return;
            }
            drop(wait);
            // (Never back: the test may have moved the clock past the wait.)
            self.clock
                .set_time(gst::ClockTime::from_nseconds(due).max(self.clock.time()));
            assert!(self.clock.process_next_clock_id().is_some());
        }
    }

    /// Every frame out so far.
    fn frames(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(buffer) = self.h.try_pull() {
            let meta = gst::meta::CustomMeta::from_buffer(&buffer, "VasaFaceGenFrameMeta")
                .expect("every frame carries its notes");
            let notes = meta.structure();
            frames.push(Frame {
                pts: buffer.pts().unwrap().nseconds(),
                duration: buffer.duration().unwrap().nseconds(),
                pushed_at: 0,
                audio_missing: notes.get("audio-missing").unwrap(),
                mouth_open: notes.get("mouth-open").unwrap_or(0.0),
                lips_at_rest: notes.get("lips-at-rest").ok(),
                yaw: notes.get("head-yaw").unwrap_or(0.0),
                repeated: notes.get("repeated").unwrap(),
                pixels: {
                    use std::hash::{Hash, Hasher};
                    let mut hasher = std::collections::hash_map::DefaultHasher::new();
                    buffer.map_readable().unwrap().as_slice().hash(&mut hasher);
                    hasher.finish()
                },
            });
        }
        let pushed_at = self.pushed_at.lock().unwrap();
        let already = pushed_at.len() - frames.len();
        for (frame, at) in frames.iter_mut().zip(&pushed_at[already..]) {
            frame.pushed_at = *at;
        }
        frames
    }

    fn latency(&self) -> u64 {
        let mut query = gst::query::Latency::new();
        assert!(self.h.sinkpad().unwrap().peer_query(&mut query));
        query.result().1.nseconds()
    }
}

/// Frames come one period apart from 0, none pushed later than it is to be shown.
fn assert_on_time_from_zero(frames: &[Frame], latency: u64) {
    for (n, frame) in frames.iter().enumerate() {
        assert_eq!(
            frame.pts,
            n as u64 * PERIOD_MS * MS,
            "frame {n}'s timestamp"
        );
        assert_eq!(frame.duration, PERIOD_MS * MS, "frame {n}'s duration");
        assert!(
            frame.pushed_at <= frame.pts + latency,
            "frame {n} pushed at {} ms, to be shown at {} ms",
            frame.pushed_at / MS,
            (frame.pts + latency) / MS
        );
    }
}

fn frames_in(frames: &[Frame], from_ms: u64, to_ms: u64) -> Vec<&Frame> {
    frames
        .iter()
        .filter(|f| f.pts >= from_ms * MS && f.pts < to_ms * MS)
        .collect()
}

/// The frames that had to be out before `time`: due (their end plus the lookahead)
/// before it.
fn frames_due_before(frames: &[Frame], time: u64) -> Vec<&Frame> {
    frames
        .iter()
        .filter(|f| f.pts + f.duration + LOOKAHEAD_MS * MS < time)
        .collect()
}

/// Where speech starts in `samples`: the first 10 ms louder than -35 dBFS.
fn voice_onset_ns(samples: &[i16]) -> u64 {
    let window = RATE as usize / 100;
    let index = samples
        .chunks(window)
        .position(|part| {
            let power = part
                .iter()
                .map(|&s| (s as f64 / 32768.0).powi(2))
                .sum::<f64>()
                / part.len() as f64;
            10.0 * power.log10() > -35.0
        })
        .expect("the clip has speech");
    (index * window) as u64 * 1_000_000_000 / RATE
}

/// The first frame at or after `from_ns` whose mouth is open.
fn first_open_after(frames: &[Frame], from_ns: u64) -> Option<&Frame> {
    frames
        .iter()
        .find(|f| f.pts + f.duration > from_ns && f.mouth_open > 0.05)
}

#[test]
fn frames_flow_from_playing_before_the_first_word() {
    for first_word_ms in [500, 2_000] {
        let mut run = LiveRun::new(&[]);
        let speech = speech_clip(0.0, 1.0);
        let onset = voice_onset_ns(&speech);
        let start = first_word_ms * MS;
        run.play_until(spoken(&speech, start), start + 1_500 * MS);
        let frames = run.frames();
        assert_on_time_from_zero(&frames, run.latency());
        let idle = frames_in(&frames, 0, first_word_ms);
        assert!(
            idle.len().abs_diff((first_word_ms / PERIOD_MS) as usize) <= 1,
            "{} frames before the first audio at {first_word_ms} ms",
            idle.len()
        );
        assert!(idle.iter().all(|f| f.mouth_open == 0.0));
        // Those due before the first audio came were drawn without it; the others knew
        // from its timestamp that their time was silent.
        let first_arrival = start + 20 * MS;
        assert!(
            frames_due_before(&frames, first_arrival)
                .iter()
                .all(|f| f.audio_missing)
        );
        // The same timeline goes on with the speech, and the lips follow it.
        let open = first_open_after(&frames, start + onset).expect("the mouth opens");
        assert!(
            open.pts <= start + onset + PERIOD_MS * MS,
            "first open frame at {} ms for a voice onset at {} ms",
            open.pts / MS,
            (start + onset) / MS
        );
        assert!(
            frames_in(&frames, first_word_ms, first_word_ms + 900)
                .iter()
                .all(|f| !f.audio_missing)
        );
    }
}

#[test]
fn a_three_second_hole_in_the_audio_is_filled_on_time_at_rest() {
    let mut run = LiveRun::new(&[]);
    let first = speech_clip(0.0, 1.0);
    let second = speech_clip(1.0, 1.0);
    let onset = voice_onset_ns(&second);
    let mut arrivals = spoken(&first, 0);
    arrivals.extend(spoken(&second, 4_000 * MS));
    run.play_until(arrivals, 5_500 * MS);
    let frames = run.frames();
    assert_on_time_from_zero(&frames, run.latency());
    let hole = frames_in(&frames, 1_000, 4_000);
    assert!(
        hole.len().abs_diff(75) <= 1,
        "{} frames in the hole",
        hole.len()
    );
    // At rest from 120 ms into the hole to its end.
    for frame in frames_in(&frames, 1_120, 4_000) {
        assert_eq!(frame.mouth_open, 0.0, "mouth at {} ms", frame.pts / MS);
    }
    assert!(
        frames_due_before(&frames, 4_020 * MS)
            .iter()
            .filter(|f| f.pts >= 1_000 * MS)
            .all(|f| f.audio_missing)
    );
    let open = first_open_after(&frames, 4_000 * MS + onset).expect("speech again");
    assert!(
        open.pts <= 4_000 * MS + onset + PERIOD_MS * MS,
        "first open frame at {} ms for a voice onset at {} ms",
        open.pts / MS,
        (4_000 * MS + onset) / MS
    );
    let element = run.h.element().unwrap();
    assert_eq!(element.property::<u64>("late-audio-dropped"), 0);
    assert!(element.property::<u64>("frames-without-audio") >= 72);
}

#[test]
fn upstream_latency_that_grows_mid_stream_delays_the_frames_and_drops_no_audio() {
    let mut run = LiveRun::new(&[]);
    let before = run.latency();
    let speech = speech_clip(0.0, 3.0);
    // From 1 s on the audio is stamped as before but arrives 200 ms later: a jitter
    // buffer joined upstream, and the pipeline says so at 1 s.
    let grown = 200 * MS;
    let mut arrivals = spoken(&speech[..RATE as usize], 0);
    arrivals.push(Arrival::Latency {
        at: 1_000 * MS,
        to: grown,
    });
    for arrival in spoken(&speech[RATE as usize..], 1_000 * MS) {
        if let Arrival::Audio { at, pts, samples } = arrival {
            arrivals.push(Arrival::Audio {
                at: at + grown,
                pts,
                samples,
            });
        }
    }
    run.play_until(arrivals, 3_500 * MS);
    assert_eq!(
        run.latency(),
        before + grown,
        "the latency answer follows upstream"
    );
    let frames = run.frames();
    let element = run.h.element().unwrap();
    assert_eq!(element.property::<u64>("late-audio-dropped"), 0);
    // Every frame of the speech has its audio, the timeline has no hole, and no frame
    // is pushed later than the new latency allows.
    for (n, frame) in frames.iter().enumerate() {
        assert_eq!(
            frame.pts,
            n as u64 * PERIOD_MS * MS,
            "frame {n}'s timestamp"
        );
        assert!(
            frame.pushed_at <= frame.pts + before + grown,
            "frame {n} pushed at {} ms",
            frame.pushed_at / MS
        );
    }
    let speaking = frames_in(&frames, 0, 2_900);
    assert!(
        speaking.iter().all(|f| !f.audio_missing),
        "frames drawn as silence"
    );
    assert!(
        frames_in(&frames, 1_000, 2_900)
            .iter()
            .any(|f| f.mouth_open > 0.0)
    );
}

#[test]
fn audio_that_comes_after_its_frames_is_dropped_and_counted() {
    let mut run = LiveRun::new(&[]);
    let speech = speech_clip(0.0, 2.5);
    // A network stall: what was said from 1 s on arrives at 2.2 s, all at once.
    let stall_end = 2_200;
    let mut arrivals = spoken(&speech[..RATE as usize], 0);
    for arrival in spoken(&speech[RATE as usize..], 1_000 * MS) {
        if let Arrival::Audio { pts, samples, .. } = arrival {
            arrivals.push(Arrival::Audio {
                at: stall_end * MS,
                pts,
                samples,
            });
        }
    }
    run.play_until(arrivals, 3_000 * MS);
    let frames = run.frames();
    assert_on_time_from_zero(&frames, run.latency());
    // By 2.2 s the frames due by then are out: those ending up to 2.2 s - lookahead.
    let drawn_until = (stall_end - LOOKAHEAD_MS) / PERIOD_MS * PERIOD_MS;
    let dropped = run
        .h
        .element()
        .unwrap()
        .property::<u64>("late-audio-dropped");
    assert!(
        dropped.abs_diff((drawn_until - 1_000) * MS) <= PERIOD_MS * MS,
        "{} ms dropped, about {} ms expected",
        dropped / MS,
        drawn_until - 1_000
    );
    assert!(
        frames_in(&frames, 1_000, drawn_until)
            .iter()
            .all(|f| f.audio_missing)
    );
    // What arrived in time for frames not yet drawn moves the lips.
    let in_time = frames_in(&frames, drawn_until, 2_500);
    assert!(in_time.iter().all(|f| !f.audio_missing));
    assert!(in_time.iter().any(|f| f.mouth_open > 0.0));
}

/// Speech from 0 that the application cuts mid-word at 700 ms with `cut` (nothing more
/// of it comes), played until `until_ms`; checks the frames are on time, the mouth was
/// open before the cut and rests from 120 ms after it.
fn speech_cut_at_700_ms(cut: Arrival, until_ms: u64) -> (LiveRun, Vec<Frame>) {
    let mut run = LiveRun::new(&[]);
    let mut arrivals = spoken(&speech_clip(0.0, 2.0), 0);
    arrivals.retain(|a| a.at() <= cut.at());
    arrivals.push(cut);
    run.play_until(arrivals, until_ms * MS);
    let frames = run.frames();
    assert_on_time_from_zero(&frames, run.latency());
    assert!(
        frames_in(&frames, 300, 700)
            .iter()
            .any(|f| f.mouth_open > 0.2),
        "the mouth was open before the cut"
    );
    for frame in frames_in(&frames, 700 + 120, until_ms) {
        assert_eq!(frame.mouth_open, 0.0, "mouth at {} ms", frame.pts / MS);
    }
    (run, frames)
}

#[test]
fn a_flush_mid_word_rests_the_lips_and_the_video_goes_on() {
    let (mut run, frames) = speech_cut_at_700_ms(Arrival::Flush { at: 700 * MS }, 2_000);
    // The head carries on from where it was: no step at the cut larger than the head's
    // steps while speaking.
    let steps: Vec<f64> = frames
        .windows(2)
        .map(|p| (p[1].yaw - p[0].yaw).abs())
        .collect();
    let cut_frame = frames.iter().position(|f| f.pts >= 600 * MS).unwrap();
    let speaking = steps[..cut_frame - 2].iter().copied().fold(0.0, f64::max);
    for (i, step) in steps.iter().enumerate().skip(cut_frame - 2).take(6) {
        assert!(
            *step <= speaking * 1.5 + 0.01,
            "head turned {step:.3} degrees at frame {i}, at most {speaking:.3} while speaking"
        );
    }
    assert!(
        frames.iter().any(|f| f.yaw.abs() > 0.05),
        "the head moves at all"
    );
    // The flush stayed here: downstream neither flushed nor lost its segment.
    while let Some(event) = run.h.try_pull_event() {
        assert!(
            !matches!(
                event.type_(),
                gst::EventType::FlushStart | gst::EventType::FlushStop
            ),
            "{event:?} went downstream"
        );
    }
    // And audio after the cut is taken again.
    let more = speech_clip(1.0, 1.0);
    let onset = voice_onset_ns(&more);
    run.play_until(spoken(&more, 2_000 * MS), 3_500 * MS);
    let after = run.frames();
    assert_eq!(after[0].pts, frames.last().unwrap().pts + PERIOD_MS * MS);
    let open = first_open_after(&after, 2_000 * MS + onset).expect("speech after the cut");
    assert!(open.pts <= 2_000 * MS + onset + PERIOD_MS * MS);
}

#[test]
fn the_interrupt_signal_cuts_the_speech_as_a_flush_does() {
    speech_cut_at_700_ms(Arrival::Interrupt { at: 700 * MS }, 1_500);
}

#[test]
fn interrupt_refuses_a_stream_that_is_not_live() {
    let mut h = common::harness(&astronaut(), SMALL);
    common::push_audio(&mut h, &speech_clip(0.0, 0.5), 0, 800);
    let element = h.element().unwrap();
    assert!(!element.emit_by_name::<bool>("interrupt", &[]));
    h.push_event(gst::event::Eos::new());
    // Nothing was cut: every frame of the half second.
    assert_eq!(common::pull_until_eos(&mut h).len(), 13);
}

#[test]
fn pausing_stops_the_frames_and_playing_again_continues_the_timeline() {
    let mut run = LiveRun::new(&[]);
    run.play_until(Vec::new(), 1_000 * MS);
    let before = run.frames();
    // The frames due by 1 s: those ending by 1 s - lookahead.
    assert_eq!(before.len() as u64, (1_000 - LOOKAHEAD_MS) / PERIOD_MS);
    let element = run.h.element().unwrap();
    element.set_state(gst::State::Paused).unwrap();
    // PAUSED: the element waits for nothing on the clock and sends nothing.
    run.clock.set_time(gst::ClockTime::from_seconds(5));
    assert!(run.clock.peek_next_pending_id().is_none());
    assert!(run.h.try_pull().is_none());
    // PLAYING again with the running time where it stopped, as a pipeline does.
    element.set_base_time(gst::ClockTime::from_seconds(4));
    element.set_state(gst::State::Playing).unwrap();
    run.play_until(Vec::new(), 6_000 * MS);
    let after = run.frames();
    assert_eq!(after[0].pts, before.last().unwrap().pts + PERIOD_MS * MS);
    for pair in after.windows(2) {
        assert_eq!(pair[0].pts + PERIOD_MS * MS, pair[1].pts);
    }
}

#[test]
fn the_latency_answer_holds_live() {
    let run = LiveRun::new(&[]);
    // Lookahead + one period for the frame's own audio + one for drawing it.
    assert_eq!(run.latency(), (LOOKAHEAD_MS + 2 * PERIOD_MS) * MS);
}

#[test]
fn joyvasa_motion_follows_the_clock_and_its_lips_rest_at_a_cut() {
    // The fixture bundle (reduced networks, random weights): only the timing and the
    // silence rule can be judged, not the look.
    let bundle = common::joyvasa_bundle("fixed");
    let mut run = LiveRun::new(&[("model", bundle.to_str().unwrap())]);
    let speech = speech_clip(0.0, 1.0);
    let cut = 900 * MS;
    let mut arrivals = spoken(&speech, 300 * MS);
    arrivals.retain(|a| a.at() <= cut);
    arrivals.push(Arrival::Interrupt { at: cut });
    run.play_until(arrivals, 1_200 * MS);
    let frames = run.frames();
    assert_on_time_from_zero(&frames, run.latency());
    assert!(frames.len() >= 25, "{} frames", frames.len());
    let rest = |f: &&Frame| f.lips_at_rest.expect("keypoint motion notes its lips");
    // Before the first word, the lips rest; while speaking they do not.
    assert!(frames_in(&frames, 0, 300).iter().all(|f| rest(f) > 0.9));
    assert!(frames_in(&frames, 400, 800).iter().any(|f| rest(f) < 0.5));
    // From 120 ms after the cut, at rest again.
    for frame in frames_in(&frames, 900 + 120, 1_200) {
        assert!(
            rest(&frame) > 0.9,
            "lips at {} ms: {:?}",
            frame.pts / MS,
            frame.lips_at_rest
        );
    }
}

#[test]
fn pace_clock_runs_on_the_clock_after_a_source_that_is_not_live() {
    let mut run = LiveRun::with(&[("pace", "clock")], false);
    let speech = speech_clip(0.0, 1.0);
    run.play_until(spoken(&speech, 1_000 * MS), 2_500 * MS);
    let frames = run.frames();
    assert_on_time_from_zero(&frames, run.latency());
    let idle = frames_in(&frames, 0, 1_000);
    assert_eq!(idle.len(), 25);
    assert!(idle.iter().all(|f| f.mouth_open == 0.0));
    assert!(
        frames_in(&frames, 1_000, 2_000)
            .iter()
            .any(|f| f.mouth_open > 0.2)
    );
}

#[test]
fn pace_audio_waits_for_the_audio_after_a_live_source() {
    let mut h = common::harness(&astronaut(), SMALL);
    // common::harness sets pace=audio; make the source live as well (the element may
    // have asked already; pace decides either way).
    h.set_live(true);
    common::push_audio(&mut h, &speech_clip(0.0, 0.5), 3_000 * MS, 800);
    h.push_event(gst::event::Eos::new());
    let frames = common::pull_until_eos(&mut h);
    // Exactly ceil(0.5 x 25) frames, from the first audio's timestamp, none idle.
    assert_eq!(frames.len(), 13);
    assert_eq!(frames[0].pts().unwrap().nseconds(), 3_000 * MS);
}

#[test]
fn frames_that_cannot_be_drawn_in_time_are_filled_by_the_last_one() {
    let mut run = LiveRun::new(&[]);
    run.play_until(Vec::new(), 1_000 * MS);
    let before = run.frames();
    // The process stalls: the clock is 2 s when the element next looks at it.
    run.clock.set_time(gst::ClockTime::from_seconds(2));
    run.play_until(Vec::new(), 3_000 * MS);
    let after = run.frames();
    let frames: Vec<&Frame> = before.iter().chain(&after).collect();
    for pair in frames.windows(2) {
        assert_eq!(
            pair[0].pts + PERIOD_MS * MS,
            pair[1].pts,
            "no gap, no double"
        );
    }
    // A frame is out by its timestamp + latency (180 ms here) only if drawn by then: the
    // ones whose time had passed at 2 s are the last drawn frame again.
    let last_drawn = before.last().unwrap();
    let late: Vec<&&Frame> = frames
        .iter()
        .filter(|f| f.pts > last_drawn.pts && f.pts + 180 * MS < 2_000 * MS)
        .collect();
    assert!(late.len() >= 20, "{} late frames", late.len());
    assert!(
        late.iter()
            .all(|f| f.repeated && f.pixels == last_drawn.pixels)
    );
    let fresh: Vec<&&Frame> = frames
        .iter()
        .filter(|f| f.pts + 180 * MS >= 2_000 * MS)
        .collect();
    assert!(fresh.iter().all(|f| !f.repeated), "drawing resumes on time");
    assert!(
        fresh.iter().any(|f| f.pixels != last_drawn.pixels),
        "and moves on"
    );
    let element = run.h.element().unwrap();
    assert_eq!(
        element.property::<u64>("frames-repeated"),
        late.len() as u64
    );
}

/// The probe with a real live source and a synced sink, on the system clock
/// (the one wall-clock test here: what a user's pipeline does). The first audio comes
/// 0.5 s after PLAYING.
#[test]
fn a_synced_sink_gets_frames_from_playing_on_before_the_first_audio() {
    init();
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src is-live=true format=time do-timestamp=true caps={AUDIO_CAPS} \
         ! vasafacegen image={} latency={LOOKAHEAD_MS} ! {SMALL} ! appsink name=sink sync=true",
        astronaut().display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let source = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gst_app::AppSrc>()
        .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let shown = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = shown.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let now = sink.clock().unwrap().time() - sink.base_time().unwrap();
                let pts = sample.buffer().unwrap().pts().unwrap();
                record
                    .lock()
                    .unwrap()
                    .push((pts.nseconds(), now.nseconds()));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let speech = speech_clip(0.0, 0.5);
    let started = std::time::Instant::now();
    for (i, part) in speech.chunks(320).enumerate() {
        // No timestamp: appsrc stamps it with the running time (do-timestamp).
        let bytes: Vec<u8> = part.iter().flat_map(|s| s.to_le_bytes()).collect();
        source
            .push_buffer(gst::Buffer::from_mut_slice(bytes))
            .unwrap();
        let due = started + std::time::Duration::from_millis(20 * (i as u64 + 1));
        std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
    }
    source.end_of_stream().unwrap();
    let bus = pipeline.bus().unwrap();
    let message = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(10),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(message.map(|m| m.type_()), Some(gst::MessageType::Eos));
    let shown = shown.lock().unwrap();
    // Frames from PLAYING on, one period apart, shown before the first audio came.
    let before_audio = shown.iter().filter(|(pts, _)| *pts < 400 * MS).count();
    assert!(
        before_audio >= 9,
        "{before_audio} frames before the first audio"
    );
    for pair in shown.windows(2) {
        assert_eq!(
            pair[0].0 + PERIOD_MS * MS,
            pair[1].0,
            "contiguous timestamps"
        );
    }
    // The speech moved the lips (its audio was placed by its timestamps).
    let element = pipeline
        .iterate_elements()
        .find(|e| e.factory().is_some_and(|f| f.name() == "vasafacegen"))
        .unwrap();
    assert_eq!(element.property::<u64>("late-audio-dropped"), 0);
    // Each shown about when it is due (its timestamp + 180 ms), not in a burst.
    let late = shown
        .iter()
        .filter(|(pts, at)| *at > pts + 400 * MS)
        .count();
    assert_eq!(late, 0, "frames shown late");
}

#[test]
fn ditto_motion_follows_the_clock_with_the_latency_of_its_windows() {
    // The fixture bundle (reduced networks, random weights): only the timing is judged.
    let bundle = common::ditto_bundle();
    let mut run = LiveRun::new(&[
        ("model", bundle.to_str().unwrap()),
        ("motion", "ditto"),
        ("sampling-steps", "2"),
    ]);
    // Live windows overlap by the bundle's online overlap (70 of 80 by default): a frame
    // waits for the features of 2 x (80 - 70) frames after it and HuBERT's 85 ms.
    let config = common::ditto_fixture_config();
    let frames = config["motion_decoder_params"]["seq_len"].as_u64().unwrap();
    let window_rule_ns = (2 * (frames - 70) * 640 + 1360) * 1_000_000_000 / RATE;
    let latency = run.latency();
    assert!(
        latency >= window_rule_ns + 2 * PERIOD_MS * MS,
        "latency {} ms for a window rule of {} ms",
        latency / MS,
        window_rule_ns / MS
    );
    // (About a second a frame with the fixture renderer here: a short run.)
    let speech = speech_clip(0.0, 0.8);
    run.play_until(spoken(&speech, 100 * MS), 1_600 * MS);
    let frames = run.frames();
    assert_on_time_from_zero(&frames, run.latency());
    // Frames due by 1.6 s: those before 1.6 s - the latency.
    let due = (1_600 * MS).saturating_sub(latency) / (PERIOD_MS * MS);
    assert!(
        frames.len() as u64 >= due,
        "{} frames, {due} due",
        frames.len()
    );
    assert!(frames.iter().all(|f| f.lips_at_rest.is_some()));
    assert!(frames.iter().all(|f| !f.repeated));
}
