//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
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

/// The LivePortrait fixture set, `$VASAFACEGEN_FIXTURES/liveportrait` (default
/// ../shared/fixtures). A missing set fails the test, never skips it.
pub fn liveportrait_fixtures() -> PathBuf {
    let root = std::env::var_os("VASAFACEGEN_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/fixtures"));
    let dir = root.join("liveportrait");
    assert!(
        dir.join("io.safetensors").is_file(),
        "no LivePortrait fixtures at {} (set VASAFACEGEN_FIXTURES)",
        dir.display()
    );
    dir
}

/// Runs the converter a user runs on the official files: the LivePortrait fixture
/// checkpoints plus `extra` arguments, into `out`.
/// Runs the converter on the LivePortrait fixture checkpoints with `extra` options.
pub fn run_converter(out: &std::path::Path, extra: &[std::ffi::OsString]) -> std::process::Output {
    let fixtures = liveportrait_fixtures();
    std::process::Command::new("python3")
        .arg(repo().join("tools/liveportrait/convert.py"))
        .arg("--checkpoints")
        .arg(&fixtures)
        .arg("--config")
        .arg(fixtures.join("config.json"))
        .args(extra)
        .arg("--out")
        .arg(out)
        .output()
        .expect("python3 runs")
}

pub fn convert_fixtures(out: &std::path::Path, extra: &[std::ffi::OsString]) {
    let run = run_converter(out, extra);
    assert!(
        run.status.success(),
        "the converter failed on the fixture checkpoints {extra:?}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// The fixture checkpoints converted into a bundle, once per test process.
pub fn fixture_bundle() -> &'static std::path::Path {
    static BUNDLE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    BUNDLE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            convert_fixtures(&dir.path().join("bundle"), &[]);
            dir
        })
        .path()
        .join("bundle")
        .leak()
}

/// The LivePortrait and JoyVASA fixture checkpoints converted into one bundle, with the
/// denoiser's positional encoding `variant` ("fixed" or "bug"), once per test process
/// and variant.
pub fn joyvasa_bundle(variant: &str) -> PathBuf {
    static BUNDLES: std::sync::Mutex<Vec<(String, tempfile::TempDir)>> =
        std::sync::Mutex::new(Vec::new());
    let mut bundles = BUNDLES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, dir)) = bundles.iter().find(|(v, _)| v == variant) {
        return dir.path().join("bundle");
    }
    let dir = tempfile::tempdir().unwrap();
    let joyvasa = joyvasa_fixtures();
    let extra: Vec<std::ffi::OsString> = vec![
        "--motion-generator".into(),
        joyvasa.join("motion_generator.pt").into(),
        "--motion-template".into(),
        joyvasa.join("motion_template.pkl").into(),
        "--hubert-config".into(),
        joyvasa.join("config.json").into(),
        "--positional-encoding".into(),
        variant.into(),
    ];
    let path = dir.path().join("bundle");
    convert_fixtures(&path, &extra);
    bundles.push((variant.to_owned(), dir));
    path
}

/// The JoyVASA fixture set (`$VASAFACEGEN_FIXTURES/joyvasa`); missing is a failure.
pub fn joyvasa_fixtures() -> PathBuf {
    let dir = liveportrait_fixtures().parent().unwrap().join("joyvasa");
    assert!(
        dir.join("io.safetensors").is_file(),
        "no JoyVASA fixtures at {} (set VASAFACEGEN_FIXTURES)",
        dir.display()
    );
    dir
}

/// Checks `actual` against a fixture tensor as the fixture README says:
/// |a - b| <= atol + 1e-4 |b| everywhere, shapes equal; prints the worst difference.
pub fn assert_close(name: &str, actual: &tch::Tensor, expected: &tch::Tensor, atol: f64) {
    assert_eq!(actual.size(), expected.size(), "{name}: shape");
    let excess = ((actual - expected).abs() - (expected.abs() * 1e-4 + atol))
        .max()
        .double_value(&[]);
    let worst = (actual - expected).abs().max().double_value(&[]);
    assert!(
        excess <= 0.0,
        "{name}: worst difference {worst:e} (atol {atol:e})"
    );
    eprintln!("{name}: worst difference {worst:e}");
}

/// The Ditto fixture set (`$VASAFACEGEN_FIXTURES/ditto`); missing is a failure.
pub fn ditto_fixtures() -> PathBuf {
    let dir = liveportrait_fixtures().parent().unwrap().join("ditto");
    assert!(
        dir.join("hubert/model.safetensors").is_file(),
        "no Ditto fixtures at {} (set VASAFACEGEN_FIXTURES)",
        dir.display()
    );
    dir
}

/// The LivePortrait fixture checkpoints plus the Ditto fixture's LMDM and HuBERT,
/// converted into one bundle in `dir` (with `heads` attention heads).
pub fn ditto_bundle_in(dir: &std::path::Path, heads: &str) -> PathBuf {
    let fixtures = ditto_fixtures();
    let out = dir.join("bundle");
    let extra: Vec<std::ffi::OsString> = vec![
        "--ditto-lmdm".into(),
        fixtures.join("lmdm.pth").into(),
        "--ditto-hubert".into(),
        fixtures.join("hubert").into(),
        "--ditto-heads".into(),
        heads.into(),
    ];
    convert_fixtures(&out, &extra);
    out
}

/// The Ditto fixture config (`config.json`).
pub fn ditto_fixture_config() -> serde_json::Value {
    let text = std::fs::read_to_string(ditto_fixtures().join("config.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// [`ditto_bundle_in`] with the fixture's heads, once per test process.
pub fn ditto_bundle() -> PathBuf {
    static BUNDLE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    BUNDLE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let heads = ditto_fixture_config()["motion_decoder_params"]["num_heads"].to_string();
            ditto_bundle_in(dir.path(), &heads);
            dir
        })
        .path()
        .join("bundle")
}

/// A copy of the fixture bundle in a directory of its own (to damage, or to be a
/// bundle no other test loads).
pub fn copy_of_fixture_bundle() -> tempfile::TempDir {
    copy_of_bundle(fixture_bundle())
}

/// A copy of the bundle at `bundle` in a directory of its own.
pub fn copy_of_bundle(bundle: &std::path::Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(bundle).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

/// `seconds` of the sample speech from `from` seconds on, as S16 samples.
pub fn speech_clip(from: f64, seconds: f64) -> Vec<i16> {
    let samples: Vec<i16> = hound::WavReader::open(speech_wav())
        .unwrap()
        .into_samples::<i16>()
        .map(Result::unwrap)
        .collect();
    let start = (from * RATE as f64) as usize;
    samples[start..start + (seconds * RATE as f64) as usize].to_vec()
}

/// Writes `samples` as a 16 kHz mono 16-bit WAV file.
pub fn write_wav(path: &std::path::Path, samples: &[i16]) {
    let mut writer = hound::WavWriter::create(
        path,
        hound::WavSpec {
            channels: 1,
            sample_rate: RATE as u32,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        },
    )
    .unwrap();
    for &sample in samples {
        writer.write_sample(sample).unwrap();
    }
    writer.finalize().unwrap();
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

/// Like [`harness`], with more properties set, given as strings as in gst-launch.
pub fn harness_with(
    image: &std::path::Path,
    properties: &[(&str, &str)],
    sink_caps: &str,
) -> gst_check::Harness {
    init();
    // The harness starts the element (PLAYING) as it takes it, before `set_live`
    // below: the element may ask whether upstream is live before the harness is told
    // it is not (it did, once in 26 runs), so `pace` says so from the start.
    let mut builder = gst::ElementFactory::make("vasafacegen")
        .property("image", image.to_str().unwrap())
        .property_from_str("pace", "audio");
    for (name, value) in properties {
        builder = builder.property_from_str(name, value);
    }
    let element = builder.build().expect("vasafacegen exists");
    let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
    // These tests are of a file or a decoder upstream (tests/live.rs has the live
    // ones). The harness calls itself live unless told otherwise.
    h.set_live(false);
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

/// Checks the frame clock on frames of a stream starting at 0: frame `n` at `n` periods,
/// each one period long.
pub fn assert_frames_every(frames: &[gst::Buffer], period_ms: u64) {
    for (n, frame) in frames.iter().enumerate() {
        assert_eq!(
            frame.pts().unwrap().mseconds(),
            n as u64 * period_ms,
            "frame {n}"
        );
        assert_eq!(frame.duration().unwrap().mseconds(), period_ms, "frame {n}");
    }
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

/// Timestamps of one stream of an MP4 after demuxing (and decoding, for video).
#[derive(Debug)]
pub struct StreamSpan {
    pub buffers: u64,
    pub first_ns: u64,
    pub end_ns: u64,
}

/// 2 s of the sample speech through `vasafacegen image=<astronaut> model=<model>
/// <properties>` at `size`x`size`, 5 fps, into an MP4; the video stream's span in it.
pub fn speech_through_bundle_to_mp4(model: &Path, properties: &str, size: u32) -> StreamSpan {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.wav");
    write_wav(&clip, &speech_clip(0.4, 2.0));
    let out = dir.path().join("face.mp4");
    let pipeline = launch(&format!(
        "filesrc location={} ! wavparse ! audioconvert ! audioresample \
         ! vasafacegen image={} model={} {properties} \
         ! video/x-raw,width={size},height={size},framerate=5/1 ! videoconvert \
         ! x264enc ! mp4mux ! filesink location={}",
        clip.display(),
        astronaut().display(),
        model.display(),
        out.display()
    ));
    assert_eq!(run_pipeline(&pipeline, Duration::from_secs(300)), None);
    demux_span(&out, "demux.video_0 ! avdec_h264")
}

pub fn demux_span(path: &Path, branch: &str) -> StreamSpan {
    let pipeline = launch(&format!(
        "filesrc location={} ! qtdemux name=demux {branch} ! fakesink name=sink sync=false",
        path.display()
    ));
    let buffers = Arc::new(AtomicU64::new(0));
    let first = Arc::new(AtomicU64::new(u64::MAX));
    let end = Arc::new(AtomicU64::new(0));
    let pad = pipeline
        .by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap();
    {
        let (buffers, first, end) = (buffers.clone(), first.clone(), end.clone());
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let buffer = info.buffer().unwrap();
            buffers.fetch_add(1, Ordering::Relaxed);
            let pts = buffer.pts().unwrap();
            first.fetch_min(pts.nseconds(), Ordering::Relaxed);
            let stop = pts + buffer.duration().unwrap();
            end.fetch_max(stop.nseconds(), Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    }
    assert_eq!(run_pipeline(&pipeline, Duration::from_secs(60)), None);
    StreamSpan {
        buffers: buffers.load(Ordering::Relaxed),
        first_ns: first.load(Ordering::Relaxed),
        end_ns: end.load(Ordering::Relaxed),
    }
}
