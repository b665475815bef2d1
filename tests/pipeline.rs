//! Whole pipelines: the README's gst-launch-1.0 line, the render command, and state
//! cycling with data flowing.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

/// The gst-launch-1.0 command under the README's `<!-- test: readme-launch -->` marker,
/// continuation lines joined.
fn readme_launch_line() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let after_marker = readme
        .split("<!-- test: readme-launch -->")
        .nth(1)
        .expect("README has the readme-launch marker");
    let block = after_marker
        .split("```")
        .nth(1)
        .expect("a code block follows the marker");
    let block = block.split_once('\n').expect("code fence line").1;
    block.replace("\\\n", " ")
}

struct Discovered {
    text: String,
}

impl Discovered {
    fn of(path: &Path) -> Self {
        let output = Command::new("gst-discoverer-1.0")
            .arg(path)
            .output()
            .expect("gst-discoverer-1.0 runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self {
            text: String::from_utf8_lossy(&output.stdout).into_owned(),
        }
    }

    fn field(&self, name: &str) -> String {
        self.text
            .lines()
            .find_map(|line| line.trim().strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {}", self.text))
            .to_owned()
    }
}

/// Duration of a WAV file in seconds, read with gst-discoverer-1.0.
fn audio_seconds(path: &Path) -> f64 {
    parse_clock(&Discovered::of(path).field("Duration"))
}

fn parse_clock(text: &str) -> f64 {
    let parts: Vec<f64> = text.split(':').map(|p| p.parse().unwrap()).collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

fn check_talking_head_mp4(path: &Path, audio: &Path) {
    let discovered = Discovered::of(path);
    assert_eq!(discovered.field("Width"), "512");
    assert_eq!(discovered.field("Height"), "512");
    assert_eq!(discovered.field("Frame rate"), "25/1");
    assert!(discovered.text.contains("H.264"), "{}", discovered.text);
    assert!(
        discovered.text.contains("MPEG-4 AAC"),
        "{}",
        discovered.text
    );
    let audio_seconds = audio_seconds(audio);
    let video = demux_span(path, "demux.video_0 ! avdec_h264");
    let sound = demux_span(path, "demux.audio_0");
    assert_eq!(video.buffers, (audio_seconds * 25.0).ceil() as u64);
    // Lip-sync in the file itself: both streams start together.
    assert_eq!(
        video.first_ns, sound.first_ns,
        "video {video:?} audio {sound:?}"
    );
    let video_seconds = (video.end_ns - video.first_ns) as f64 / 1e9;
    assert!(
        (video_seconds - audio_seconds).abs() <= 0.04,
        "video {video_seconds} s vs audio {audio_seconds} s"
    );
    let container = parse_clock(&discovered.field("Duration"));
    // The AAC encoder pads its last frame; nothing else may lengthen the file.
    assert!(
        (container - audio_seconds).abs() < 0.15,
        "container {container} s"
    );
}

#[test]
fn readme_gst_launch_line_renders_an_mp4() {
    init();
    let line = readme_launch_line();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("launch.mp4");
    let line = line.replace("out/demo-launch.mp4", out.to_str().unwrap());
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], "gst-launch-1.0", "{line}");
    let output = Command::new(words[0])
        .args(&words[1..])
        .current_dir(repo())
        .env("GST_PLUGIN_PATH", plugin_dir())
        .output()
        .expect("gst-launch-1.0 runs");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    check_talking_head_mp4(&out, &speech_wav());
}

#[test]
fn render_command_writes_mp4_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("short.wav");
    // 2.3 s of tone as a WAV, made with GStreamer itself.
    let pipeline = launch(&format!(
        "audiotestsrc num-buffers=23 samplesperbuffer=1600 ! {AUDIO_CAPS} ! wavenc \
         ! filesink location={}",
        wav.display()
    ));
    assert_eq!(run_pipeline(&pipeline, Duration::from_secs(30)), None);
    let out = dir.path().join("render.mp4");
    let render = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vasafacegen-render"))
            .args(["--image", astronaut().to_str().unwrap()])
            .args(["--audio", wav.to_str().unwrap()])
            .args(["--out", out.to_str().unwrap()])
            .args(extra)
            .output()
            .expect("vasafacegen-render runs")
    };
    let first = render(&[]);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    assert!(
        stderr.contains("rendering 100%"),
        "progress is shown: {stderr}"
    );
    assert!(stderr.contains("ETA"), "{stderr}");
    check_talking_head_mp4(&out, &wav);

    let again = render(&[]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));

    let bad = Command::new(env!("CARGO_BIN_EXE_vasafacegen-render"))
        .args(["--image", "/nope.png", "--audio", wav.to_str().unwrap()])
        .args(["--out", dir.path().join("x.mp4").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nope.png: no such file"));
}

#[test]
fn two_hundred_state_cycles_with_buffers_flowing() {
    init();
    let pipeline = launch(&format!(
        "audiotestsrc is-live=true samplesperbuffer=320 ! {AUDIO_CAPS} \
         ! vasafacegen name=face image={} latency=0 ! video/x-raw,width=64,height=64 \
         ! fakesink name=sink sync=false",
        astronaut().display()
    ));
    let frames = Arc::new(AtomicU64::new(0));
    {
        let frames = frames.clone();
        let pad = pipeline
            .by_name("sink")
            .unwrap()
            .static_pad("sink")
            .unwrap();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            frames.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    }
    let bus = pipeline.bus().unwrap();
    let started = Instant::now();
    for cycle in 0..200 {
        let before = frames.load(Ordering::Relaxed);
        pipeline.set_state(gst::State::Playing).unwrap();
        // Stop at a different point each time: sometimes before any frame, sometimes
        // after a few.
        let wanted = (cycle % 4) as u64;
        let deadline = Instant::now() + Duration::from_secs(10);
        while frames.load(Ordering::Relaxed) < before + wanted {
            assert!(Instant::now() < deadline, "cycle {cycle}: no frames");
            std::thread::sleep(Duration::from_millis(1));
        }
        let change = pipeline.set_state(gst::State::Null);
        assert!(change.is_ok(), "cycle {cycle}: {change:?}");
        if let Some(message) = bus.pop_filtered(&[gst::MessageType::Error]) {
            panic!("cycle {cycle}: {message:?}");
        }
    }
    assert!(frames.load(Ordering::Relaxed) >= 300);
    eprintln!("200 cycles in {:?}", started.elapsed());
}
