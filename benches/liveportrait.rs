//! LivePortrait's networks on this machine's CPU (and on CUDA when present), at the
//! official size with random weights (timing does not depend on the values), and at the
//! fixture's reduced size: each module, and a whole frame through the engine (driving
//! keypoints, warp, generator, paste-back into a 512x512 frame).
//! `make bench`; numbers in the README. `VASAFACEGEN_BENCH_SIZES=official` (or
//! `fixture`) limits the sizes; `VASAFACEGEN_BENCH_DEVICE=cuda` picks the GPU;
//! `VASAFACEGEN_BENCH_PRECISION=bfloat16` (or `float16`, `float32`: the default) the
//! number format of the networks.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use gstvasafacegen::bundle::{self, Bundle};
use gstvasafacegen::core::{FaceMotion, FrameSize, Motion, Precision};
use gstvasafacegen::models::liveportrait::{COMPONENTS, LivePortrait, LivePortraitConfig};
use gstvasafacegen::portrait::Portrait;
use gstvasafacegen::render::liveportrait::LivePortraitRenderer;
use gstvasafacegen::render::{Renderer, SourceHints};
use tch::{Device, Kind, Tensor};

fn device() -> Device {
    match std::env::var("VASAFACEGEN_BENCH_DEVICE").as_deref() {
        Ok("cuda") => Device::Cuda(0),
        _ => Device::Cpu,
    }
}

fn precision() -> Precision {
    std::env::var("VASAFACEGEN_BENCH_PRECISION")
        .map(|name| name.parse().unwrap())
        .unwrap_or_default()
}

fn device_name(device: Device) -> &'static str {
    if device == Device::Cpu { "cpu" } else { "cuda" }
}

/// Waits for the GPU before a timer is read.
fn sync(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

/// A bundle of `config` with random weights, written to `dir`: small normal weights,
/// positive BatchNorm variances, so that activations stay finite.
fn random_bundle(config: &LivePortraitConfig, dir: &Path) {
    tch::manual_seed(0);
    let mut files: BTreeMap<String, Vec<(String, Tensor)>> = BTreeMap::new();
    for (component, key, shape) in LivePortrait::parameter_list(config).unwrap() {
        let tensor = if key.ends_with("num_batches_tracked") {
            Tensor::zeros(shape.as_slice(), (Kind::Int64, Device::Cpu))
        } else if key.ends_with("running_var") {
            Tensor::ones(shape.as_slice(), (Kind::Float, Device::Cpu))
        } else {
            Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu)) * 0.02
        };
        files.entry(component).or_default().push((key, tensor));
    }
    std::fs::create_dir_all(dir).unwrap();
    let mut components = serde_json::Map::new();
    for (name, _) in COMPONENTS {
        let file = format!("{name}.safetensors");
        Tensor::write_safetensors(&files[name], dir.join(&file)).unwrap();
        components.insert(name.into(), file.into());
    }
    let manifest = serde_json::json!({
        "format": bundle::FORMAT,
        "version": bundle::VERSION,
        "renderers": {"liveportrait": {"config": config, "components": components}},
    });
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
}

fn fixture_config() -> LivePortraitConfig {
    let root = std::env::var_os("VASAFACEGEN_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"));
    let text = std::fs::read_to_string(root.join("liveportrait/config.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    // As tools/liveportrait/convert.py reads it: the backbone's sizes join the motion
    // extractor's parameters.
    let mut params = value["reduced_model_params"].clone();
    let backbone = &value["motion_extractor_backbone"];
    let motion = params["motion_extractor_params"].as_object_mut().unwrap();
    for field in ["depths", "dims", "num_bins"] {
        motion.insert(field.into(), backbone[field].clone());
    }
    motion.remove("backbone");
    params["spade_generator_params"]["out_channels"] = 64.into();
    serde_json::from_value(params).unwrap()
}

fn bench_size(c: &mut Criterion, label: &str, config: &LivePortraitConfig) {
    let (device, precision) = (device(), precision());
    let dir = tempfile::tempdir().unwrap();
    random_bundle(config, dir.path());
    let mut group = c.benchmark_group(format!(
        "liveportrait_{label}_{}_{precision}",
        device_name(device)
    ));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.warm_up_time(Duration::from_secs(2));

    let mut engine =
        LivePortraitRenderer::new(&Bundle::open(dir.path()).unwrap(), device, precision).unwrap();
    let model = engine.model().clone();
    let _no_grad = tch::no_grad_guard();
    let crop = Tensor::rand([1, 3, 256, 256], (Kind::Float, device));
    let f_s = model.appearance.forward(&crop);
    let info = model.keypoint_info(&crop);
    let x_s = info.keypoints();
    let x_d = &x_s + Tensor::randn_like(&x_s) * 0.01;
    let warped = model.warping.forward(&f_s, &x_d, &x_s);

    group.bench_function("appearance_F_256", |b| {
        b.iter(|| {
            let out = model.appearance.forward(&crop);
            sync(device);
            out
        })
    });
    group.bench_function("motion_M_256", |b| {
        b.iter(|| {
            let out = model.keypoint_info(&crop);
            sync(device);
            out
        })
    });
    group.bench_function("warping_W", |b| {
        b.iter(|| {
            let out = model.warping.forward(&f_s, &x_d, &x_s);
            sync(device);
            out
        })
    });
    group.bench_function("generator_G_512", |b| {
        b.iter(|| {
            let out = model.generator.forward(&warped.out);
            sync(device);
            out
        })
    });
    group.bench_function("stitching_and_retargeting", |b| {
        let ratio_lip = Tensor::from_slice(&[0.03f32, 0.3])
            .view([1, 2])
            .to_device(device);
        let ratio_eye = Tensor::from_slice(&[0.32f32, 0.32, 0.1])
            .view([1, 3])
            .to_device(device);
        b.iter(|| {
            let s = &model.stitching;
            let moved = &x_d + s.retarget_lip(&x_s, &ratio_lip) + s.retarget_eye(&x_s, &ratio_eye);
            let out = s.stitch(&x_s, &moved);
            sync(device);
            out
        })
    });

    let portrait =
        Portrait::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/astronaut.png"))
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
        mouth_open: 0.4,
        yaw: 0.05,
        blink_left: 0.5,
        blink_right: 0.5,
        ..FaceMotion::default()
    });
    group.bench_function("whole_frame_512x512", |b| {
        b.iter(|| {
            let out = engine.render(&motion, &source, size).unwrap();
            sync(device);
            out
        })
    });
    group.finish();
}

fn liveportrait(c: &mut Criterion) {
    let sizes = std::env::var("VASAFACEGEN_BENCH_SIZES").unwrap_or_default();
    if sizes.is_empty() || sizes.contains("fixture") {
        bench_size(c, "fixture", &fixture_config());
    }
    if sizes.is_empty() || sizes.contains("official") {
        bench_size(c, "official", &LivePortraitConfig::official());
    }
}

criterion_group!(benches, liveportrait);
criterion_main!(benches);
