//! The builtin engine's parts at 512x512 on the CPU: the mouth model (features and
//! network), the motion step, and the renderer. `make bench`; numbers in the README.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use gstvasafacegen::core::{
    Emotion, FaceControls, FaceMotion, FrameRate, FrameSize, FrameSpan, Motion, SampleStore,
};
use gstvasafacegen::engine::{Engine, EngineSpec};
use gstvasafacegen::models::mouth::MouthModel;
use gstvasafacegen::portrait::Portrait;
use gstvasafacegen::render::SourceHints;
use tch::Device;

fn speech() -> Vec<f32> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/speech.wav");
    hound::WavReader::open(path)
        .unwrap()
        .into_samples::<i16>()
        .map(|s| f32::from(s.unwrap()) / 32768.0)
        .collect()
}

fn builtin(c: &mut Criterion) {
    let samples = speech();
    let mut group = c.benchmark_group("builtin");
    group.measurement_time(Duration::from_secs(8));

    let model = MouthModel::load_bytes(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/models/builtin/mouth.safetensors"
        ))
        .unwrap(),
        "mouth.safetensors",
        Device::Cpu,
    )
    .unwrap();
    let mut centre = 4000i64;
    group.bench_function("mouth_model_per_frame_cpu", |b| {
        b.iter(|| {
            centre = 4000 + (centre - 4000 + 640) % 200_000;
            model.predict(&samples, centre, centre + 1920)
        })
    });

    let mut engine = Engine::new(&EngineSpec::builtin(Device::Cpu)).unwrap();
    let portrait = Portrait::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/astronaut.png"
    )))
    .unwrap();
    let source = engine
        .source_preparer()
        .prepare(portrait, &SourceHints::default())
        .unwrap();
    let size = FrameSize {
        width: 512,
        height: 512,
    };
    let motion = Motion::Face(FaceMotion {
        mouth_open: 0.7,
        mouth_width: 0.2,
        blink_left: 0.5,
        blink_right: 0.5,
        yaw: 0.04,
        roll: -0.03,
        shift_x: 0.02,
        ..FaceMotion::default()
    });
    let _warm_up = engine.render(&motion, &source, size).unwrap();
    group.bench_function("render_per_frame_512x512_cpu", |b| {
        b.iter(|| engine.render(&motion, &source, size).unwrap())
    });
    // A close-up: the face fills the frame (the usual case for users' own portraits).
    let close_up = image::open(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/astronaut.png"))
        .unwrap()
        .crop_imm(150, 45, 150, 150)
        .resize_exact(512, 512, image::imageops::FilterType::CatmullRom);
    let close_source = engine
        .source_preparer()
        .prepare(
            Portrait::from_image("close-up".into(), &close_up),
            &SourceHints::default(),
        )
        .unwrap();
    group.bench_function("render_per_frame_512x512_closeup_cpu", |b| {
        b.iter(|| engine.render(&motion, &close_source, size).unwrap())
    });

    // The same with every face control away from its rest: an emotion, a gaze and a
    // head distance (the last adds a pass over the whole frame).
    let mut controls = FaceControls {
        gaze: (15.0, 5.0),
        distance: 1.1,
        ..FaceControls::default()
    };
    controls.emotion[Emotion::Happy.index()] = 1.0;
    let Motion::Face(face) = motion else {
        unreachable!("face motion")
    };
    let controlled = Motion::Face(FaceMotion { controls, ..face });
    group.bench_function("render_per_frame_512x512_controls_cpu", |b| {
        b.iter(|| engine.render(&controlled, &source, size).unwrap())
    });
    group.bench_function("render_per_frame_512x512_closeup_controls_cpu", |b| {
        b.iter(|| engine.render(&controlled, &close_source, size).unwrap())
    });

    // Motion and rendering together, as the element runs them for each frame.
    let rate = FrameRate::new(25, 1).unwrap();
    let history = engine.history_samples();
    let store = SampleStore::from_clip(&samples);
    let mut n = 0u64;
    let mut window = Vec::new();
    group.bench_function("generation_per_frame_512x512_cpu", |b| {
        b.iter(|| {
            n = (n + 1) % 380;
            let audio = store.window(FrameSpan::of(rate, n), history, 1600, &mut window);
            let motion = engine.motion(&audio).unwrap();
            engine.render(&motion, &source, size).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, builtin);
criterion_main!(benches);
