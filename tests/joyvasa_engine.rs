//! The JoyVASA motion source (a bundle with a motion generator) with the fixture
//! checkpoints (random weights at reduced size: only the plumbing can be judged): motion
//! windows, the seed, live lookahead, silence, procedural blinks, the element's timing,
//! an MP4 from a pipeline, shared weights and damaged bundles.

mod common;

use common::*;
use gstvasafacegen::bundle::{Bundle, joyvasa_times_loaded};
use gstvasafacegen::core::{
    BlinkSource, FrameRate, FrameSpan, KeypointMotion, Motion, MotionControls, SampleStore,
};
use gstvasafacegen::engine::{Engine, EngineSpec};
use gstvasafacegen::motion::joyvasa::JoyVasaMotion;
use gstvasafacegen::motion::{MotionChoice, MotionSource};
use tch::Device;

fn floats(samples: &[i16]) -> Vec<f32> {
    samples.iter().map(|&s| f32::from(s) / 32768.0).collect()
}

fn bundle() -> std::path::PathBuf {
    joyvasa_bundle("bug")
}

/// Drives `source` as the element does: frame after frame at `fps`, each with
/// `lookahead` samples after it (zeros past the end of `audio`).
fn drive(
    source: &mut JoyVasaMotion,
    audio: &[f32],
    fps: i32,
    lookahead: u64,
) -> Vec<KeypointMotion> {
    let rate = FrameRate::new(fps, 1).unwrap();
    let frames = rate.frames_for_samples(audio.len() as u64);
    let store = SampleStore::from_clip(audio);
    let mut buffer = Vec::new();
    (0..frames)
        .map(|n| {
            let window = store.window(
                FrameSpan::of(rate, n),
                source.history_samples(),
                lookahead as usize,
                &mut buffer,
            );
            match source.next(&window).unwrap() {
                Motion::Keypoints(keypoints) => keypoints,
                other => panic!("the JoyVASA source gave {:?}", other.kind()),
            }
        })
        .collect()
}

fn source_with(seed: u64, steps: u32, blinks: BlinkSource) -> JoyVasaMotion {
    let mut source =
        JoyVasaMotion::new(&Bundle::open(&bundle()).unwrap(), Device::Cpu, blinks).unwrap();
    source.set_controls(&MotionControls {
        sampling_steps: steps,
        ..MotionControls::default()
    });
    source.reset(seed);
    source
}

fn engine(seed: u64, steps: u32) -> JoyVasaMotion {
    source_with(seed, steps, BlinkSource::Auto)
}

#[test]
fn motion_windows_are_seeded_and_continuous() {
    let audio = floats(&speech_clip(0.4, 5.0));
    let offline = |seed| {
        let mut e = engine(seed, 0);
        let lookahead = e.lookahead_samples(1600, false);
        drive(&mut e, &audio, 25, lookahead)
    };
    let first = offline(3);
    // 5 s at 25 fps: 125 frames over two windows of 100.
    assert_eq!(first.len(), 125);
    assert!(first.iter().all(|m| m.reference == first[0].current));
    assert_eq!(first, offline(3), "the same seed gives the same motion");
    let other = offline(4);
    assert_ne!(
        first[50].current, other[50].current,
        "another seed, other motion"
    );
    // The expression moves from frame to frame, and keeps moving across the window
    // boundary at frame 100.
    let change = |a: &KeypointMotion, b: &KeypointMotion| {
        a.current
            .exp
            .iter()
            .zip(&b.current.exp)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    let moving = first
        .windows(2)
        .filter(|p| change(&p[0], &p[1]) > 0.0)
        .count();
    assert!(moving >= 120, "only {moving} of 124 frame changes");
}

#[test]
fn not_live_asks_for_a_whole_window_live_keeps_the_latency() {
    let e = engine(1, 0);
    // A whole window after the frame, less the reference's 80 ms pre-pad (3.88 s with
    // the official 4 s windows).
    let config = &e.generator().config;
    let whole = config.window_samples() - 1280 - config.frame_samples();
    assert_eq!(e.lookahead_samples(1600, false), whole.max(1600) as u64);
    assert_eq!(e.lookahead_samples(1600, true), 1600);
    assert_eq!(e.lookahead_samples(100_000, false), 100_000);
}

#[test]
fn live_windows_fit_the_lookahead_and_other_frame_rates_interpolate() {
    let audio = floats(&speech_clip(0.4, 1.2));
    // 100 ms of lookahead: windows of a few frames each, at 30 fps.
    let mut live = engine(5, 4);
    let motion = drive(&mut live, &audio, 30, 1600);
    assert_eq!(motion.len(), 36);
    let exp0: Vec<f32> = motion.iter().map(|m| m.current.exp[0]).collect();
    assert!(exp0.windows(2).all(|p| p[0] != p[1]), "{exp0:?}");
    // The same stream replays identically after a reset.
    live.reset(5);
    assert_eq!(drive(&mut live, &audio, 30, 1600), motion);
}

#[test]
fn silence_rests_the_lips_within_120_ms() {
    // Loud speech-like sound for 1 s, then 1 s of silence.
    let mut audio: Vec<f32> = (0..16_000)
        .map(|i| 0.3 * (i as f32 * 0.07).sin() * (1.0 + (i as f32 * 0.002).sin()) / 2.0)
        .collect();
    audio.extend(std::iter::repeat_n(0.0, 16_000));
    let mut e = engine(2, 2);
    let lookahead = e.lookahead_samples(1600, false);
    let motion = drive(&mut e, &audio, 25, lookahead);
    let speaking: Vec<f32> = motion[5..25].iter().map(|m| m.mouth_rest).collect();
    assert!(speaking.iter().all(|&r| r < 0.05), "{speaking:?}");
    // Speech ends at frame 25 (1 s); from 120 ms later (frame 28) the lips rest.
    let silent: Vec<f32> = motion[28..].iter().map(|m| m.mouth_rest).collect();
    assert!(silent.iter().all(|&r| r > 0.9), "{silent:?}");
}

#[test]
fn one_copy_of_the_motion_generator_per_bundle_and_device() {
    let bundle = copy_of_bundle(&joyvasa_bundle("bug"));
    let open = || {
        JoyVasaMotion::new(
            &Bundle::open(bundle.path()).unwrap(),
            Device::Cpu,
            BlinkSource::Auto,
        )
        .unwrap()
    };
    let (first, second) = (open(), open());
    assert!(std::sync::Arc::ptr_eq(
        first.generator(),
        second.generator()
    ));
    assert_eq!(joyvasa_times_loaded(bundle.path(), Device::Cpu), 1);
    drop((first, second));
}

#[test]
fn damaged_or_incomplete_motion_generator_bundles_are_refused_by_name() {
    let copy = || copy_of_bundle(&joyvasa_bundle("bug"));
    let message = |dir: &std::path::Path| match Engine::new(&EngineSpec::bundle(
        dir,
        MotionChoice::Auto,
        Device::Cpu,
    )) {
        Ok(_) => panic!("a damaged bundle loaded"),
        Err(err) => err.to_string(),
    };
    let damaged = copy();
    let file = damaged.path().join("motion_generator.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let error = message(damaged.path());
    assert!(
        error.contains("motion_generator.safetensors") && error.contains("not a valid safetensors"),
        "{error}"
    );
    let missing = copy();
    std::fs::remove_file(missing.path().join("motion_template.safetensors")).unwrap();
    let error = message(missing.path());
    assert!(
        error.contains("motion_template.safetensors") && error.contains("no such file"),
        "{error}"
    );
}

#[test]
fn element_frames_follow_the_timing_rule_and_the_seed() {
    let bundle = bundle().display().to_string();
    let run = |seed: &str| {
        let mut h = harness_with(
            &astronaut(),
            &[("model", &bundle), ("seed", seed), ("sampling-steps", "4")],
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
    let first = run("3");
    let distinct = first.windows(2).filter(|pair| pair[0] != pair[1]).count();
    assert!(distinct >= 5, "only {distinct} of 7 frame changes");
    assert_eq!(first, run("3"), "the same seed draws the same frames");
    assert_ne!(first, run("4"), "another seed draws other frames");
}

#[test]
fn a_joyvasa_bundle_renders_speech_to_mp4() {
    let video = speech_through_bundle_to_mp4(
        &bundle(),
        "seed=7 cfg-scale=2 sampling-steps=5 expression-scale=1.2",
        160,
    );
    assert_eq!(video.buffers, 10, "{video:?}");
    assert_eq!(video.end_ns - video.first_ns, 2_000_000_000, "{video:?}");
}

#[test]
fn the_motion_property_chooses_the_source_whatever_the_bundle_holds() {
    let (bundle, device) = (bundle(), Device::Cpu);
    let auto = Engine::new(&EngineSpec::bundle(&bundle, MotionChoice::Auto, device)).unwrap();
    assert_eq!(auto.motion_name(), "joyvasa");
    // The builtin motion drawn by LivePortrait from a bundle that also holds a generator.
    let mut builtin =
        Engine::new(&EngineSpec::bundle(&bundle, MotionChoice::Builtin, device)).unwrap();
    assert_eq!(builtin.motion_name(), "builtin");
    assert_eq!(builtin.renderer_name(), "the LivePortrait renderer");
    let audio = floats(&speech_clip(0.4, 0.4));
    let motions = gstvasafacegen::engine::offline::face_motions(
        &mut builtin,
        &audio,
        FrameRate::new(25, 1).unwrap(),
        1600,
        0,
    )
    .unwrap();
    assert_eq!(motions.len(), 10);
    // Without a bundle `auto` is the builtin pair.
    let plain = Engine::new(&EngineSpec::builtin(device)).unwrap();
    assert_eq!(
        (plain.motion_name(), plain.renderer_name()),
        ("builtin", "the builtin warp renderer")
    );
}

#[test]
fn a_renderer_that_cannot_draw_the_motion_is_refused_naming_both() {
    let source = engine(1, 2);
    let warp = gstvasafacegen::render::warp::WarpRenderer::new(Device::Cpu);
    let err = Engine::pair(Box::new(source), Box::new(warp))
        .err()
        .expect("keypoint motion cannot be warped")
        .to_string();
    for needle in [
        "\"joyvasa\"",
        "LivePortrait keypoint motion",
        "the builtin warp renderer",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

#[test]
fn procedural_blinks_go_over_the_generated_motion_unchanged() {
    let audio = floats(&speech_clip(0.4, 5.0));
    let run = |blinks| {
        let mut source = source_with(6, 2, blinks);
        let lookahead = source.lookahead_samples(1600, false);
        drive(&mut source, &audio, 25, lookahead)
    };
    let generated = run(BlinkSource::Auto);
    let blinking = run(BlinkSource::Procedural);
    assert!(generated.iter().all(|m| m.blink.is_none()));
    // The generated motion is the same: the blinks draw from a random stream of their own.
    for (a, b) in generated.iter().zip(&blinking) {
        assert_eq!((a.current, a.reference), (b.current, b.reference));
    }
    let lids: Vec<f32> = blinking.iter().map(|m| m.blink.unwrap()).collect();
    // About 18 blinks a minute, the first within 2.6 s: at least one in 5 s, closed at
    // its middle, open most of the time.
    assert!(lids.iter().any(|&l| l > 0.9), "{lids:?}");
    assert!(lids.iter().filter(|&&l| l == 0.0).count() > 100, "{lids:?}");

    // Drawn: a closed lid changes the eyes, an open one leaves the generated face.
    let renderer = || {
        gstvasafacegen::render::liveportrait::LivePortraitRenderer::new(
            &Bundle::open(&bundle()).unwrap(),
            Device::Cpu,
            gstvasafacegen::core::Precision::Float32,
        )
        .unwrap()
    };
    use gstvasafacegen::render::{Renderer, SourceHints};
    let mut renderer = renderer();
    let source = renderer
        .source_preparer()
        .prepare(
            gstvasafacegen::portrait::Portrait::load(&astronaut()).unwrap(),
            &SourceHints::default(),
        )
        .unwrap();
    let size = gstvasafacegen::core::FrameSize {
        width: 128,
        height: 128,
    };
    let mut with = |blink| {
        let motion = KeypointMotion {
            blink,
            ..generated[10]
        };
        renderer
            .render(&Motion::Keypoints(motion), &source, size)
            .unwrap()
    };
    let (as_generated, open, closed) = (with(None), with(Some(0.0)), with(Some(1.0)));
    assert!(as_generated.equal(&open));
    let moved = (&closed - &as_generated).abs().max().double_value(&[]);
    assert!(moved > 1e-3, "a closed lid changed nothing ({moved})");

    // The face controls apply on top of the generated motion; none leave it as it was.
    let mut with_controls = |controls: gstvasafacegen::core::FaceControls| {
        let motion = KeypointMotion {
            controls,
            ..generated[10]
        };
        renderer
            .render(&Motion::Keypoints(motion), &source, size)
            .unwrap()
    };
    assert!(with_controls(Default::default()).equal(&as_generated));
    let mut happy = gstvasafacegen::core::FaceControls::default();
    happy.emotion[gstvasafacegen::core::Emotion::Happy.index()] = 1.0;
    let closer = gstvasafacegen::core::FaceControls {
        distance: 1.2,
        ..Default::default()
    };
    for controls in [happy, closer] {
        let moved = (with_controls(controls) - &as_generated)
            .abs()
            .max()
            .double_value(&[]);
        assert!(moved > 1e-3, "{controls:?} changed nothing ({moved})");
    }
}

#[test]
fn empty_or_damaged_schedules_and_templates_are_refused_by_name() {
    let message = |dir: &std::path::Path| {
        Bundle::open(dir)
            .and_then(|bundle| bundle.load_joyvasa(Device::Cpu).map(drop))
            .err()
            .map(|err| err.to_string())
            .expect("a damaged generator loaded")
    };
    let rewrite = |dir: &std::path::Path, file: &str, key: &str, value: f64| {
        let path = dir.join(file);
        let mut tensors = tch::Tensor::read_safetensors(&path).unwrap();
        let (_, tensor) = tensors.iter_mut().find(|(k, _)| k == key).unwrap();
        *tensor = tensor.full_like(value);
        tch::Tensor::write_safetensors(&tensors, &path).unwrap();
    };
    // A schedule that holds NaN, and one that is not a schedule.
    for (value, needle) in [(f64::NAN, "holds NaN"), (2.0, "not a diffusion schedule")] {
        let dir = copy_of_bundle(&bundle());
        rewrite(
            dir.path(),
            "motion_generator.safetensors",
            if value.is_nan() {
                "diffusion_sched.sigmas_inflex"
            } else {
                "diffusion_sched.alpha_bars"
            },
            value,
        );
        let error = message(dir.path());
        assert!(
            error.contains("motion_generator.safetensors") && error.contains(needle),
            "{error}"
        );
    }
    // A template with an infinite entry.
    let dir = copy_of_bundle(&bundle());
    rewrite(
        dir.path(),
        "motion_template.safetensors",
        "std_exp",
        f64::INFINITY,
    );
    let error = message(dir.path());
    assert!(
        error.contains("motion_template.safetensors") && error.contains("std_exp"),
        "{error}"
    );
    // A manifest that says the generator was trained with no diffusion steps at all.
    let dir = copy_of_bundle(&bundle());
    let manifest_path = dir.path().join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    manifest["motion_generators"]["joyvasa"]["config"]["n_diff_steps"] = 0.into();
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let error = Bundle::open(dir.path()).unwrap_err().to_string();
    assert!(
        error.contains("n_diff_steps is 0") && error.contains("manifest.json"),
        "{error}"
    );
}
