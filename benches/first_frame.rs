//! Live start-up latency: how long after the first audio arrives the first video frame
//! leaves the element, in a live pipeline (`appsrc is-live=true` fed in real time, 10 ms
//! buffers, as a microphone delivers them) at several `latency` (lookahead) settings.
//!
//! The goal is "within 100 ms plus the configured lookahead". Frame 0 shows the audio's
//! first 40 ms (at 25 fps), so it cannot leave before 40 ms + lookahead of audio have
//! arrived; the rest is the element's own work, first-frame set-up included.
//!
//! `cargo bench --bench first_frame` (or `make bench`). Two cases per setting: audio
//! starting 1 s after the pipeline went to PLAYING (a live set-up waiting for a
//! speaker), and audio pushed at once (portrait preparation racing the first audio).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

const CHUNK_SAMPLES: usize = 160; // 10 ms at 16 kHz
const RUNS: usize = 5;

fn astronaut() -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/astronaut.png")
        .to_string_lossy()
        .into_owned()
}

/// Milliseconds from the first audio buffer to the first video frame out of the element.
fn first_frame_delay(lookahead_ms: u32, settle: Duration) -> f64 {
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
        .property("image", astronaut())
        .property("latency", lookahead_ms)
        .property("device", "cpu")
        .build()
        .expect("the vasafacegen element");
    let sink = gst_app::AppSink::builder()
        .caps(
            &gst::Caps::builder("video/x-raw")
                .field("format", "RGBA")
                .field("width", 512i32)
                .field("height", 512i32)
                .field("framerate", gst::Fraction::new(25, 1))
                .build(),
        )
        .sync(false)
        .build();
    let first_frame: Arc<Mutex<Option<Instant>>> = Arc::default();
    let seen = first_frame.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let _ = sink.pull_sample();
                seen.lock().unwrap().get_or_insert_with(Instant::now);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    pipeline
        .add_many([source.upcast_ref(), &element, sink.upcast_ref()])
        .unwrap();
    gst::Element::link_many([source.upcast_ref(), &element, sink.upcast_ref()]).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(settle);

    let started = Instant::now();
    let mut chunk = 0u32;
    while first_frame.lock().unwrap().is_none() && started.elapsed() < Duration::from_secs(5) {
        // Speech-like: a 220 Hz tone under a 4 Hz syllable envelope.
        let samples: Vec<u8> = (0..CHUNK_SAMPLES)
            .flat_map(|i| {
                let t = (chunk as usize * CHUNK_SAMPLES + i) as f64 / 16_000.0;
                let envelope = 0.5 - 0.5 * (std::f64::consts::TAU * 4.0 * t).cos();
                let value = 8000.0 * envelope * (std::f64::consts::TAU * 220.0 * t).sin();
                (value as i16).to_le_bytes()
            })
            .collect();
        source
            .push_buffer(gst::Buffer::from_mut_slice(samples))
            .unwrap();
        chunk += 1;
        // Real time: the next chunk is due 10 ms after this one.
        let due = started + Duration::from_millis(10 * u64::from(chunk));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let delay = first_frame
        .lock()
        .unwrap()
        .map(|at| at.duration_since(started).as_secs_f64() * 1000.0)
        .unwrap_or(f64::INFINITY);
    pipeline.set_state(gst::State::Null).unwrap();
    delay
}

fn main() {
    // Under `cargo test --benches` (or a filter argument from cargo bench), stay quiet.
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    gst::init().unwrap();
    gstvasafacegen::plugin_register_static().unwrap();
    println!("first frame after the first audio, live, 512x512 RGBA 25 fps, CPU ({RUNS} runs)");
    println!("lookahead  audio start        median    worst   beyond lookahead (goal <= 100)");
    for lookahead in [0u32, 100, 200] {
        for (label, settle) in [
            ("1 s after PLAYING", Duration::from_secs(1)),
            ("at once", Duration::ZERO),
        ] {
            let mut delays: Vec<f64> = (0..RUNS)
                .map(|_| first_frame_delay(lookahead, settle))
                .collect();
            delays.sort_by(f64::total_cmp);
            let median = delays[RUNS / 2];
            let worst = delays[RUNS - 1];
            println!(
                "{lookahead:>6} ms  {label:<17} {median:>7.1} ms {worst:>7.1} ms   {:>7.1} ms",
                worst - f64::from(lookahead)
            );
        }
    }
}
