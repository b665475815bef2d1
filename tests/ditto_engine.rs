//! The Ditto motion source with the fixture bundle (LivePortrait's and Ditto's fixture
//! checkpoints: random weights at reduced size, so only the plumbing can be judged):
//! the offline frame rule, the seed, emotion and gaze, live windows and their latency,
//! the element's timing and clear errors. Sizes come from the fixture set.

mod common;

use common::*;
use gstvasafacegen::bundle::Bundle;
use gstvasafacegen::core::{
    AudioWindow, Composition, Emotion, FrameRate, FrameSpan, Gaze, KeypointMotion, Motion,
    MotionControls, SampleStore,
};
use gstvasafacegen::engine::{Engine, EngineSpec, offline};
use gstvasafacegen::motion::MotionChoice;
use gstvasafacegen::portrait::Portrait;
use gstvasafacegen::render::{PreparedSource, SourceHints};
use tch::Device;

fn floats(samples: &[i16]) -> Vec<f32> {
    samples.iter().map(|&s| f32::from(s) / 32768.0).collect()
}

fn engine() -> Engine {
    Engine::new(&EngineSpec::bundle(
        ditto_bundle(),
        MotionChoice::Ditto,
        Device::Cpu,
    ))
    .unwrap()
}

fn prepared(engine: &Engine) -> PreparedSource {
    engine
        .source_preparer()
        .prepare(
            Portrait::load(&astronaut()).unwrap(),
            &SourceHints::default(),
        )
        .unwrap()
}

/// The fixture's window length and the bundle's offline overlap.
fn window_frames() -> i64 {
    ditto_fixture_config()["motion_decoder_params"]["seq_len"]
        .as_i64()
        .unwrap()
}

fn keypoints(motions: Vec<Motion>) -> Vec<KeypointMotion> {
    motions
        .into_iter()
        .map(|m| *m.keypoints().expect("Ditto gives keypoint motion"))
        .collect()
}

/// Motion of `audio` at `fps` from `engine` with `controls`, not live, for the astronaut
/// portrait, each frame with `lookahead` samples after it.
fn motion_of(
    engine: &mut Engine,
    controls: MotionControls,
    audio: &[f32],
    fps: i32,
    lookahead: usize,
    seed: u64,
) -> Result<Vec<Motion>, gstvasafacegen::core::Error> {
    let source = prepared(engine);
    engine.set_controls(&controls);
    let rate = FrameRate::new(fps, 1).unwrap();
    offline::motions_of(engine, Some(&source), audio, rate, lookahead, seed)
}

/// Motion of `audio` at `fps`, not live, with the lookahead the source asks for.
fn offline_motion(
    controls: MotionControls,
    audio: &[f32],
    fps: i32,
    seed: u64,
) -> Vec<KeypointMotion> {
    let mut engine = engine();
    let lookahead = engine.lookahead_samples(1600, false) as usize;
    keypoints(motion_of(&mut engine, controls, audio, fps, lookahead, seed).unwrap())
}

fn steps(n: u32) -> MotionControls {
    MotionControls {
        sampling_steps: n,
        ..MotionControls::default()
    }
}

#[test]
fn not_live_every_frame_comes_from_whole_windows_and_the_first_is_the_portrait() {
    // Longer than two windows, so that windows are joined and the last is padded.
    let seconds = 2.2 * window_frames() as f64 / 25.0;
    let audio = floats(&speech_clip(0.3, seconds));
    let motion = offline_motion(steps(3), &audio, 25, 1);
    let expected = (audio.len() as u64 * 25).div_ceil(16_000) as usize;
    assert_eq!(motion.len(), expected);
    assert!(motion.iter().all(|m| m.composition == Composition::Driving));
    // The first frame is the stream's first row: the portrait's own pose.
    let portrait = {
        let engine = engine();
        prepared(&engine).cues.keypoints.unwrap()
    };
    let first = &motion[0].current;
    assert!((first.scale - portrait.scale).abs() < 1e-5);
    for k in 0..2 {
        assert!((first.t[k] - portrait.t[k]).abs() < 1e-5, "{:?}", first.t);
    }
    // Later frames move, and the scale stays the portrait's (Ditto never drives it).
    let moved = motion
        .iter()
        .filter(|m| (m.current.yaw - first.yaw).abs() > 1e-3)
        .count();
    assert!(
        moved > expected / 2,
        "only {moved} of {expected} frames turned"
    );
    assert!(motion.iter().all(|m| m.current.scale == first.scale));
    assert!(
        motion
            .iter()
            .all(|m| m.current.exp.iter().all(|v| v.is_finite()))
    );
    // Another output rate: ceil(T x fps) frames, interpolating the same motion.
    let at_10 = offline_motion(steps(3), &audio, 10, 1);
    assert_eq!(
        at_10.len(),
        (audio.len() as u64 * 10).div_ceil(16_000) as usize
    );
    // (The lips' silence rule steps per output frame, so only the lips may differ.)
    let (a, b) = (&at_10[2].current, &motion[5].current);
    assert_eq!((a.pitch, a.yaw, a.roll, a.t), (b.pitch, b.yaw, b.roll, b.t));
}

#[test]
fn the_seed_and_the_emotion_change_the_motion_and_nothing_else_does() {
    let audio = floats(&speech_clip(0.3, 1.2));
    let base = offline_motion(steps(2), &audio, 25, 5);
    assert_eq!(
        base,
        offline_motion(steps(2), &audio, 25, 5),
        "same seed, same motion"
    );
    assert_ne!(
        base,
        offline_motion(steps(2), &audio, 25, 6),
        "another seed"
    );
    let happy = MotionControls {
        emotion: Emotion::Happy,
        ..steps(2)
    };
    let with_happy = offline_motion(happy, &audio, 25, 5);
    let changed = base
        .iter()
        .zip(&with_happy)
        .filter(|(a, b)| a.current.exp != b.current.exp)
        .count();
    assert!(changed > base.len() / 2, "emotion changed {changed} frames");
    // A gaze offset moves the eyes' expression values Ditto's gaze fix moves.
    let looking = MotionControls {
        gaze: Gaze::Degrees(15.0, 0.0),
        ..steps(2)
    };
    let aside = offline_motion(looking, &audio, 25, 5);
    let (a, b) = (&base[0].current, &aside[0].current);
    assert!(
        b.exp[33] < a.exp[33] && b.exp[45] < a.exp[45],
        "{} {}",
        a.exp[33],
        b.exp[33]
    );
}

/// Drives a live stream frame by frame at 25 fps: each frame gets the audio that has
/// arrived `lookahead` samples after its end (zeros beyond, not yet heard).
fn live_motion(engine: &mut Engine, audio: &[f32], lookahead: usize) -> Vec<KeypointMotion> {
    let rate = FrameRate::new(25, 1).unwrap();
    let frames = rate.frames_for_samples(audio.len() as u64);
    let mut buffer = Vec::new();
    (0..frames)
        .map(|n| {
            let span = FrameSpan::of(rate, n);
            let heard = ((span.end as usize + lookahead).min(audio.len())).max(1);
            let store = SampleStore::from_clip(&audio[..heard]);
            let mut window: AudioWindow<'_> = store.window(span, 0, lookahead, &mut buffer);
            window.live = true;
            *engine.motion(&window).unwrap().keypoints().unwrap()
        })
        .collect()
}

#[test]
fn live_windows_wait_only_for_their_overlap_rule_and_never_for_missing_audio() {
    let mut engine = engine();
    let source = prepared(&engine);
    let frames = window_frames();
    let overlap = 3 * frames / 4;
    engine.set_controls(&MotionControls {
        window_overlap: overlap as u32,
        ..steps(2)
    });
    // Live, the source asks for the features of 2 x (frames - overlap) frames after a
    // frame and HuBERT's 2 frames and 80 samples, not a whole window.
    let asked = engine.lookahead_samples(0, true) as i64;
    assert_eq!(asked, 2 * (frames - overlap) * 640 + 1360);
    assert!(engine.lookahead_samples(0, false) as i64 > frames * 640);
    let audio = floats(&speech_clip(0.3, 2.0));
    engine.reset(9);
    engine.use_portrait(&source);
    let on_time = live_motion(&mut engine, &audio, asked as usize);
    assert_eq!(on_time.len(), 50);
    // The first live frame is the portrait as it is (motion is relative to the silence
    // the stream starts from), and it moves from there.
    assert!(on_time.iter().any(|m| m.current != on_time[0].current));
    // With no lookahead at all every frame still comes (late audio is silence).
    engine.reset(9);
    let starved = live_motion(&mut engine, &audio, 0);
    assert_eq!(starved.len(), 50);
    assert_ne!(starved, on_time, "missing audio is drawn as silence");
}

#[test]
fn element_frames_follow_the_timing_rule_and_the_seed() {
    let bundle = ditto_bundle().display().to_string();
    let run = |seed: &str, emotion: &str| {
        let mut h = harness_with(
            &astronaut(),
            &[
                ("model", &bundle),
                ("motion", "ditto"),
                ("seed", seed),
                ("sampling-steps", "2"),
                ("emotion", emotion),
            ],
            "video/x-raw,format=RGBA,width=96,height=96,framerate=10/1",
        );
        // 0.75 s of speech: ceil(0.75 x 10) = 8 frames.
        push_audio(&mut h, &speech_clip(0.4, 0.75), 0, 1600);
        h.push_event(gst::event::Eos::new());
        let frames = pull_until_eos(&mut h);
        assert_eq!(frames.len(), 8);
        assert_frames_every(&frames, 100);
        frames
            .iter()
            .map(|f| f.map_readable().unwrap().to_vec())
            .collect::<Vec<_>>()
    };
    let first = run("3", "neutral");
    let distinct = first.windows(2).filter(|pair| pair[0] != pair[1]).count();
    assert!(distinct >= 5, "only {distinct} of 7 frame changes");
    assert_eq!(
        first,
        run("3", "neutral"),
        "the same seed draws the same frames"
    );
    assert_ne!(
        first,
        run("4", "neutral"),
        "another seed draws other frames"
    );
    assert_ne!(first, run("3", "sad"), "another emotion draws other frames");
}

#[test]
fn ditto_is_auto_for_a_bundle_with_only_ditto_and_needs_a_bundle() {
    let auto = Engine::new(&EngineSpec::bundle(
        ditto_bundle(),
        MotionChoice::Auto,
        Device::Cpu,
    ))
    .unwrap();
    assert_eq!(auto.motion_name(), "ditto");
    let mut spec = EngineSpec::builtin(Device::Cpu);
    spec.motion = MotionChoice::Ditto;
    let err = Engine::new(&spec).err().unwrap().to_string();
    assert!(
        err.contains("motion=ditto") && err.contains("--ditto-lmdm"),
        "{err}"
    );
    // A bundle without Ditto's networks.
    let err = Engine::new(&EngineSpec::bundle(
        fixture_bundle(),
        MotionChoice::Ditto,
        Device::Cpu,
    ))
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("has no Ditto networks"), "{err}");
    assert!(err.contains("holds none"), "{err}");
    // The networks are shared by every engine of the process.
    let bundle = Bundle::open(&ditto_bundle()).unwrap();
    let (a, b) = (
        bundle.ditto(Device::Cpu).unwrap(),
        bundle.ditto(Device::Cpu).unwrap(),
    );
    assert!(std::sync::Arc::ptr_eq(&a, &b));
}

#[test]
fn gaze_values_are_checked_and_named() {
    assert_eq!(Gaze::parse("camera"), Ok(Gaze::Camera));
    assert_eq!(Gaze::parse(" 10, -5 "), Ok(Gaze::Degrees(10.0, -5.0)));
    for bad in ["left", "10", "10,20,30", "45,0", "nan,0", ""] {
        let err = Gaze::parse(bad).unwrap_err();
        assert!(
            err.contains("gaze") && err.contains("degrees"),
            "{bad}: {err}"
        );
    }
    init();
    let element = gst::ElementFactory::make("vasafacegen").build().unwrap();
    use gst::prelude::*;
    element.set_property("gaze", "5,3");
    element.set_property("gaze", "sideways");
    // A bad value is refused (with a warning) and the last good one stays.
    assert_eq!(element.property::<String>("gaze"), "5,3");
}

/// Ditto-style cfg pickles for a motion of `width` values, written by
/// tests/files/ditto/make_cfg.py into `dir`.
fn cfg_pickles(dir: &std::path::Path, width: i64) {
    let run = std::process::Command::new("python3")
        .arg(repo().join("tests/files/ditto/make_cfg.py"))
        .arg(dir)
        .arg(width.to_string())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

fn ditto_bundle_with_cfg(dir: &std::path::Path, cfgs: &[&str]) -> std::process::Output {
    let fixtures = ditto_fixtures();
    let heads = ditto_fixture_config()["motion_decoder_params"]["num_heads"].to_string();
    let mut extra: Vec<std::ffi::OsString> = vec![
        "--ditto-lmdm".into(),
        fixtures.join("lmdm.pth").into(),
        "--ditto-hubert".into(),
        fixtures.join("hubert").into(),
        "--ditto-heads".into(),
        heads.into(),
    ];
    for cfg in cfgs {
        extra.push("--ditto-cfg".into());
        extra.push(dir.join(cfg).into());
    }
    run_converter(&dir.join("bundle"), &extra)
}

#[test]
fn the_cfg_pickles_set_steps_overlaps_and_the_clip_and_nothing_else_runs() {
    let dir = tempfile::tempdir().unwrap();
    let width = ditto_fixture_config()["motion_feat_dim"].as_i64().unwrap();
    cfg_pickles(dir.path(), width);
    let run = ditto_bundle_with_cfg(dir.path(), &["offline.pkl", "online.pkl"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("not used by the engine: delta_eye_arr"),
        "{stdout}"
    );
    let networks = Bundle::open(&dir.path().join("bundle"))
        .unwrap()
        .load_ditto(Device::Cpu)
        .unwrap();
    let config = &networks.config;
    assert_eq!((config.sampling_steps, config.overlap), (12, 12));
    assert_eq!(
        (config.online_sampling_steps, config.online_overlap),
        (7, 60)
    );
    let (low, high) = config.clip.as_ref().expect("the clip range");
    assert_eq!((low.len() as i64, high.len() as i64), (width, width));
    assert!((low[1] + 3.1).abs() < 1e-6 && (high[1] - 3.1).abs() < 1e-6);

    // A pickle that would run code is refused, naming what it wanted.
    std::fs::remove_dir_all(dir.path().join("bundle")).ok();
    let run = ditto_bundle_with_cfg(dir.path(), &["hostile.pkl"]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("hostile.pkl") && stderr.contains("system is not allowed"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("bundle").exists(),
        "a failed conversion leaves nothing"
    );
}

#[test]
fn a_clip_range_of_zeros_holds_the_portrait_still() {
    let dir = tempfile::tempdir().unwrap();
    let width = ditto_fixture_config()["motion_feat_dim"].as_i64().unwrap();
    cfg_pickles(dir.path(), width);
    let run = ditto_bundle_with_cfg(dir.path(), &["clip_zero.pkl"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut engine = Engine::new(&EngineSpec::bundle(
        dir.path().join("bundle"),
        MotionChoice::Ditto,
        Device::Cpu,
    ))
    .unwrap();
    let audio = floats(&speech_clip(0.3, 1.0));
    let lookahead = engine.lookahead_samples(0, false) as usize;
    let motion = keypoints(motion_of(&mut engine, steps(2), &audio, 25, lookahead, 1).unwrap());
    // Every row clipped to 0 is the first row again: the portrait's own pose throughout.
    assert!(
        motion
            .iter()
            .all(|m| m.current.yaw == motion[0].current.yaw)
    );
    assert!(motion.iter().all(|m| m.current.t == motion[0].current.t));
}

#[test]
fn dittos_own_checkpoint_folder_converts_to_the_same_renderer() {
    // Ditto's ditto_pytorch release: LivePortrait's networks under Ditto's names, in a
    // `models` folder.
    let dir = tempfile::tempdir().unwrap();
    let fixtures = liveportrait_fixtures();
    let models = dir.path().join("ditto_pytorch/models");
    std::fs::create_dir_all(&models).unwrap();
    for (ours, dittos) in [
        ("appearance_feature_extractor", "appearance_extractor"),
        ("motion_extractor", "motion_extractor"),
        ("warping_module", "warp_network"),
        ("spade_generator", "decoder"),
        ("stitching_retargeting_module", "stitch_network"),
    ] {
        std::fs::copy(
            fixtures.join(format!("{ours}.pth")),
            models.join(format!("{dittos}.pth")),
        )
        .unwrap();
    }
    let out = dir.path().join("bundle");
    let run = std::process::Command::new("python3")
        .arg(repo().join("tools/liveportrait/convert.py"))
        .arg("--checkpoints")
        .arg(dir.path().join("ditto_pytorch"))
        .arg("--config")
        .arg(fixtures.join("config.json"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for component in [
        "warping_module",
        "spade_generator",
        "stitching_retargeting_module",
    ] {
        let name = format!("{component}.safetensors");
        assert_eq!(
            std::fs::read(out.join(&name)).unwrap(),
            std::fs::read(fixture_bundle().join(&name)).unwrap(),
            "{name}"
        );
    }
    // A folder with neither name says which file it wanted.
    std::fs::remove_file(models.join("decoder.pth")).unwrap();
    let run = std::process::Command::new("python3")
        .arg(repo().join("tools/liveportrait/convert.py"))
        .arg("--checkpoints")
        .arg(dir.path().join("ditto_pytorch"))
        .arg("--out")
        .arg(dir.path().join("other"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success() && stderr.contains("decoder.pth"),
        "{stderr}"
    );
}

#[test]
fn damaged_weights_and_impossible_overlaps_are_clear_errors() {
    // NaN in the denoiser's last layer: every generated value is NaN.
    let copy = copy_of_bundle(&ditto_bundle());
    let file = copy.path().join("ditto_lmdm.safetensors");
    let tensors: Vec<(String, tch::Tensor)> = tch::Tensor::read_safetensors(&file)
        .unwrap()
        .into_iter()
        .map(|(name, t)| {
            let t = if name == "final_layer.bias" {
                t.fill(f64::NAN)
            } else {
                t
            };
            (name, t)
        })
        .collect();
    tch::Tensor::write_safetensors(&tensors, &file).unwrap();
    let mut engine = Engine::new(&EngineSpec::bundle(
        copy.path(),
        MotionChoice::Ditto,
        Device::Cpu,
    ))
    .unwrap();
    let audio = floats(&speech_clip(0.3, 0.5));
    let error = |engine: &mut Engine, controls| {
        motion_of(engine, controls, &audio, 25, 0, 0)
            .expect_err("an error")
            .to_string()
    };
    let err = error(&mut engine, steps(2));
    assert!(
        err.contains("not numbers") && err.contains("damaged"),
        "{err}"
    );

    // An overlap as long as the window (the property stops at 79; a fixture set's
    // windows may be shorter): named, not a panic.
    let overlong = MotionControls {
        window_overlap: window_frames() as u32,
        ..steps(2)
    };
    let err = error(&mut self::engine(), overlong);
    assert!(err.contains("window-overlap"), "{err}");
    // Without the portrait's cues (a source that never saw the renderer's preparation).
    let mut engine = self::engine();
    let err = offline::motions(&mut engine, &audio, FrameRate::new(25, 1).unwrap(), 0, 0)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("motion=ditto needs the portrait"), "{err}");
}
