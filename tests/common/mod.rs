//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use gst::prelude::*;

pub const RATE: u64 = 16_000;

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer initialises");
        gstvasafacegen::plugin_register_static().expect("plugin registers");
    });
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn astronaut() -> PathBuf {
    repo().join("assets/astronaut.png")
}

pub fn speech_wav() -> PathBuf {
    repo().join("assets/speech.wav")
}

/// Directory holding the plugin library the tests were built with (for gst-launch-1.0).
pub fn plugin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .to_owned()
}

/// A syllable-like test signal: a 220 Hz tone with a 4 Hz envelope, as S16LE.
pub fn test_tone(samples: usize) -> Vec<i16> {
    (0..samples)
        .map(|i| {
            let t = i as f64 / RATE as f64;
            let envelope = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * 4.0 * t).cos();
            (8000.0 * envelope * (2.0 * std::f64::consts::PI * 220.0 * t).sin()) as i16
        })
        .collect()
}

pub fn audio_buffer(samples: &[i16], pts_ns: u64) -> gst::Buffer {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut buffer = gst::Buffer::from_mut_slice(bytes);
    {
        let buffer = buffer.get_mut().unwrap();
        buffer.set_pts(gst::ClockTime::from_nseconds(pts_ns));
        buffer.set_duration(gst::ClockTime::from_nseconds(
            samples.len() as u64 * 1_000_000_000 / RATE,
        ));
    }
    buffer
}

pub const AUDIO_CAPS: &str = "audio/x-raw,format=S16LE,rate=16000,channels=1,layout=interleaved";

/// A vasafacegen in a Harness, audio caps set, output caps as `sink_caps` says.
pub fn harness(image: &std::path::Path, sink_caps: &str) -> gst_check::Harness {
    harness_with(image, &[], sink_caps)
}

/// Like [`harness`], with more string properties set (e.g. `face-box`).
pub fn harness_with(
    image: &std::path::Path,
    properties: &[(&str, &str)],
    sink_caps: &str,
) -> gst_check::Harness {
    init();
    let mut builder =
        gst::ElementFactory::make("vasafacegen").property("image", image.to_str().unwrap());
    for (name, value) in properties {
        builder = builder.property(name, *value);
    }
    let element = builder.build().expect("vasafacegen exists");
    let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_sink_caps_str(sink_caps);
    h.play();
    h.set_src_caps_str(AUDIO_CAPS);
    h
}

/// Pushes `samples` in chunks of `chunk`, timestamped from `start_ns`.
pub fn push_audio(h: &mut gst_check::Harness, samples: &[i16], start_ns: u64, chunk: usize) {
    for (i, part) in samples.chunks(chunk).enumerate() {
        let pts = start_ns + (i * chunk) as u64 * 1_000_000_000 / RATE;
        assert_eq!(h.push(audio_buffer(part, pts)), Ok(gst::FlowSuccess::Ok));
    }
}

/// Every buffer until EOS.
pub fn pull_until_eos(h: &mut gst_check::Harness) -> Vec<gst::Buffer> {
    let mut buffers = Vec::new();
    while let Some(buffer) = h.pull_until_eos().expect("no timeout before EOS") {
        buffers.push(buffer);
    }
    buffers
}

/// Runs a pipeline to its end; returns the first error's message and debug text, or
/// `None` at EOS. Fails the test after `timeout`.
pub fn run_pipeline(pipeline: &gst::Pipeline, timeout: Duration) -> Option<String> {
    let bus = pipeline.bus().unwrap();
    let _ = pipeline.set_state(gst::State::Playing);
    let deadline = std::time::Instant::now() + timeout;
    let result = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(
            !left.is_zero(),
            "pipeline did not finish within {timeout:?}"
        );
        let Some(message) = bus.timed_pop(gst::ClockTime::from_nseconds(left.as_nanos() as u64))
        else {
            continue;
        };
        match message.view() {
            gst::MessageView::Eos(_) => break None,
            gst::MessageView::Error(err) => {
                break Some(format!(
                    "{} | {}",
                    err.error(),
                    err.debug().unwrap_or_default()
                ));
            }
            _ => {}
        }
    };
    pipeline.set_state(gst::State::Null).unwrap();
    result
}

pub fn launch(description: &str) -> gst::Pipeline {
    init();
    gst::parse::launch(description)
        .unwrap_or_else(|err| panic!("{description}: {err}"))
        .downcast()
        .unwrap()
}
