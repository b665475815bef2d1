//! Live behaviour, measured as an app sees it: a live `appsrc` (`do-timestamp`) fed the
//! sample speech in real time in 20 ms buffers, vasafacegen (builtin engine, CPU,
//! `latency=100`), an `appsink` with `sync=true` as a player would.
//!
//! - PLAYING to the first frame, with no audio at all (the face before the first word).
//! - After 1 s of speech and a 3 s hole, the first voiced sample to the first frame with
//!   the mouth open: in timestamps (the lag a viewer sees between lips and sound, since
//!   both are shown at their timestamp + the pipeline latency) and on the wall clock
//!   until the sink shows it.
//! - CPU time per frame in the hole (idle frames) and while speaking, from the process's
//!   CPU time (every thread, /proc/self/task/*/schedstat) over the middle of each phase.
//!
//! `cargo bench --bench live` (or `make bench`). Wall-clock by nature: 3 runs a size.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

const RUNS: usize = 3;
const CHUNK: usize = 320; // 20 ms at 16 kHz

fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn speech() -> Vec<i16> {
    let mut reader = hound::WavReader::open(repo_file("assets/speech.wav")).unwrap();
    reader.samples::<i16>().map(Result::unwrap).collect()
}

/// Where speech starts in `samples`: the first 10 ms louder than -35 dBFS.
fn onset_samples(samples: &[i16]) -> usize {
    samples
        .chunks(160)
        .position(|part| {
            let power = part
                .iter()
                .map(|&s| (f64::from(s) / 32768.0).powi(2))
                .sum::<f64>()
                / part.len() as f64;
            10.0 * power.log10() > -35.0
        })
        .expect("speech")
        * 160
}

/// Total CPU time of this process so far, ns (all threads).
fn cpu_ns() -> u64 {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            stat.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

struct Seen {
    pts: u64,
    mouth: f64,
    wall: Instant,
    /// Running time when the sink showed it.
    shown: u64,
}

struct Live {
    pipeline: gst::Pipeline,
    source: gst_app::AppSrc,
    frames: Arc<Mutex<Vec<Seen>>>,
}

impl Live {
    fn new(size: i32) -> Self {
        let pipeline = gst::Pipeline::new();
        let source = gst_app::AppSrc::builder()
            .caps(
                &gst::Caps::builder("audio/x-raw")
                    .field("format", "S16LE")
                    .field("rate", 16_000i32)
                    .field("channels", 1i32)
                    .field("layout", "interleaved")
                    .build(),
            )
            .is_live(true)
            .do_timestamp(true)
            .format(gst::Format::Time)
            .build();
        let element = gst::ElementFactory::make("vasafacegen")
            .property("image", repo_file("assets/astronaut.png").to_str().unwrap())
            .property("latency", 100u32)
            .property("device", "cpu")
            .build()
            .expect("the vasafacegen element");
        let sink = gst_app::AppSink::builder()
            .caps(
                &gst::Caps::builder("video/x-raw")
                    .field("format", "RGBA")
                    .field("width", size)
                    .field("height", size)
                    .field("framerate", gst::Fraction::new(25, 1))
                    .build(),
            )
            .sync(true)
            .build();
        let frames: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = frames.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let buffer = sample.buffer().unwrap();
                    let mouth = gst::meta::CustomMeta::from_buffer(buffer, "VasaFaceGenFrameMeta")
                        .ok()
                        .and_then(|meta| meta.structure().get::<f64>("mouth-open").ok())
                        .unwrap_or(0.0);
                    let shown = sink
                        .clock()
                        .zip(sink.base_time())
                        .map_or(0, |(clock, base)| (clock.time() - base).nseconds());
                    record.lock().unwrap().push(Seen {
                        pts: buffer.pts().unwrap().nseconds(),
                        mouth,
                        wall: Instant::now(),
                        shown,
                    });
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline
            .add_many([source.upcast_ref(), &element, sink.upcast_ref()])
            .unwrap();
        gst::Element::link_many([source.upcast_ref(), &element, sink.upcast_ref()]).unwrap();
        Self {
            pipeline,
            source,
            frames,
        }
    }

    fn running_time(&self) -> u64 {
        let clock = self.pipeline.clock().unwrap();
        (clock.time() - self.pipeline.base_time().unwrap()).nseconds()
    }

    /// Pushes `samples` in real time; returns the running time of the first one.
    fn speak(&self, samples: &[i16]) -> u64 {
        let started = Instant::now();
        let first = self.running_time();
        for (i, part) in samples.chunks(CHUNK).enumerate() {
            let bytes: Vec<u8> = part.iter().flat_map(|s| s.to_le_bytes()).collect();
            self.source
                .push_buffer(gst::Buffer::from_mut_slice(bytes))
                .unwrap();
            let due = started + Duration::from_millis(20 * (i as u64 + 1));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        first
    }

    fn frame_count(&self) -> usize {
        self.frames.lock().unwrap().len()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Milliseconds from PLAYING to the first frame at the sink, with no audio.
fn first_frame_without_audio(size: i32) -> f64 {
    let live = Live::new(size);
    let playing = Instant::now();
    live.pipeline.set_state(gst::State::Playing).unwrap();
    while live.frame_count() == 0 && playing.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let frames = live.frames.lock().unwrap();
    frames.first().map_or(f64::INFINITY, |f| {
        f.wall.duration_since(playing).as_secs_f64() * 1e3
    })
}

struct HoleRun {
    /// First open-mouth frame's timestamp minus the voiced sample's, ms.
    lag_in_timestamps: f64,
    /// Running time the sink showed it minus the voiced sample's, ms.
    shown_after: f64,
    cpu_idle_ms: f64,
    cpu_speaking_ms: f64,
}

fn after_a_hole(size: i32, speech: &[i16]) -> HoleRun {
    let live = Live::new(size);
    live.pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let second = 16_000;
    // 1 s of speech, measuring the CPU while it is spoken.
    let cpu_speech = (cpu_ns(), live.frame_count());
    live.speak(&speech[..second]);
    let cpu_speech = (cpu_ns() - cpu_speech.0, live.frame_count() - cpu_speech.1);
    // The hole: 3 s, measured over its middle 2 s.
    std::thread::sleep(Duration::from_millis(500));
    let idle = (cpu_ns(), live.frame_count());
    std::thread::sleep(Duration::from_secs(2));
    let idle = (cpu_ns() - idle.0, live.frame_count() - idle.1);
    std::thread::sleep(Duration::from_millis(500));
    // Speech again, from a pause in the sample so the onset is clear.
    let clip = &speech[second * 3..second * 5];
    let onset = live.speak(clip) + onset_samples(clip) as u64 * 1_000_000_000 / 16_000;
    std::thread::sleep(Duration::from_millis(500));
    let frames = live.frames.lock().unwrap();
    let open = frames
        .iter()
        .find(|f| f.pts + 40_000_000 > onset && f.mouth > 0.05)
        .expect("the mouth opened again");
    HoleRun {
        lag_in_timestamps: (open.pts as f64 - onset as f64) / 1e6,
        shown_after: (open.shown as f64 - onset as f64) / 1e6,
        cpu_idle_ms: idle.0 as f64 / idle.1.max(1) as f64 / 1e6,
        cpu_speaking_ms: cpu_speech.0 as f64 / cpu_speech.1.max(1) as f64 / 1e6,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    // Under `cargo test --benches` (or a filter argument from cargo bench), stay quiet.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    gst::init().unwrap();
    gstvasafacegen::plugin_register_static().unwrap();
    let speech = speech();
    println!(
        "live, builtin engine, CPU, latency=100, 25 fps, appsink sync=true ({RUNS} runs, median)"
    );
    println!(
        "size      PLAYING->first frame   voice->open mouth (timestamps)   (shown)   CPU/idle frame   CPU/speaking frame"
    );
    for size in [512, 256] {
        let first = median((0..RUNS).map(|_| first_frame_without_audio(size)).collect());
        let runs: Vec<HoleRun> = (0..RUNS).map(|_| after_a_hole(size, &speech)).collect();
        let of = |f: fn(&HoleRun) -> f64| median(runs.iter().map(f).collect());
        println!(
            "{size}x{size}  {first:>12.0} ms {:>24.0} ms {:>12.0} ms {:>12.2} ms {:>16.2} ms",
            of(|r| r.lag_in_timestamps),
            of(|r| r.shown_after),
            of(|r| r.cpu_idle_ms),
            of(|r| r.cpu_speaking_ms),
        );
    }
}
