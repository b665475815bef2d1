//! The live agent example (examples/python/tts_avatar.py) as a user runs it: the system
//! python with PyGObject, espeak-ng speech pushed into an appsrc in real time with pauses
//! and one sentence cut short, the avatar and the speech written to an MP4. About ten
//! seconds of wall-clock time: the example is live by nature.

mod common;

use std::process::Command;

use common::{demux_span, init, plugin_dir, repo};

const PERIOD_NS: u64 = 40_000_000;

#[test]
fn the_tts_agent_example_idles_in_its_pauses_and_rests_its_lips_when_cut() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("avatar.mp4");
    let run = Command::new("/usr/bin/python3")
        .arg(repo().join("examples/python/tts_avatar.py"))
        .args(["--out", out.to_str().unwrap(), "--size", "128"])
        .env("GST_PLUGIN_PATH", plugin_dir())
        .output()
        .expect("the system python runs");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "the example failed: {stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&run.stdout).expect("the example prints one JSON object");
    let number = |key: &str| {
        report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key}: {report}"))
    };

    // Frames from PLAYING to the end, one period apart, also in the pauses.
    assert_eq!(report["contiguous"], true, "{report}");
    for (pause, frames) in report["pauses"]
        .as_array()
        .unwrap()
        .iter()
        .zip(report["frames_in_pauses"].as_array().unwrap())
    {
        let seconds = pause[1].as_f64().unwrap() - pause[0].as_f64().unwrap();
        let expected = seconds / 0.04;
        assert!(
            (frames.as_f64().unwrap() - expected).abs() <= 1.5,
            "{frames} frames in a pause of {seconds:.2} s"
        );
    }
    // The lips move with the speech, rest in the pauses and from 120 ms after the cut.
    assert!(number("mouth_max_in_speech") > 0.3, "{report}");
    assert_eq!(number("mouth_max_in_pauses"), 0.0, "{report}");
    assert_eq!(number("mouth_max_after_cut"), 0.0, "{report}");
    assert!(
        number("frames_without_audio") > 0.0,
        "the pauses were drawn as silence"
    );

    // The file: video as long as the audio, within a frame, and every frame there.
    let video = demux_span(&out, "demux.video_0 ! avdec_h264");
    let audio = demux_span(&out, "demux.audio_0");
    eprintln!("video {video:?}, audio {audio:?}; {report}");
    let video_span = video.end_ns - video.first_ns;
    assert_eq!(video.buffers, video_span.div_ceil(PERIOD_NS), "{video:?}");
    assert!(
        video.end_ns.abs_diff(audio.end_ns) <= PERIOD_NS,
        "video ends at {} ms, audio at {} ms",
        video.end_ns / 1_000_000,
        audio.end_ns / 1_000_000
    );
    assert!(
        video.first_ns.abs_diff(audio.first_ns) <= PERIOD_NS,
        "video starts at {} ms, audio at {} ms",
        video.first_ns / 1_000_000,
        audio.first_ns / 1_000_000
    );
}
