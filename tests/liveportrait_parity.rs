//! Parity of the LivePortrait networks with the reference implementation, on the
//! fixture set at `$VASAFACEGEN_FIXTURES/liveportrait` (default ../shared/fixtures):
//! random weights in the official checkpoint formats, converted by the same command a
//! user runs on the official files, and the reference's recorded tensors. Tolerances are
//! the fixture README's: |a - b| <= atol + 1e-4 |b|. A missing fixture set fails.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use gstvasafacegen::bundle::{Bundle, BundleError};
use gstvasafacegen::core::Precision;
use gstvasafacegen::models::liveportrait::stitching::{
    bins_to_degrees, rotation, transform_keypoints,
};
use gstvasafacegen::models::liveportrait::{LivePortrait, LivePortraitConfig};
use gstvasafacegen::nn::WeightsError;
use tch::{Device, Tensor};

fn fixtures() -> PathBuf {
    common::liveportrait_fixtures()
}

fn bundle() -> &'static Path {
    common::fixture_bundle()
}

/// The networks of the bundle at `dir`, in `precision`.
fn load(dir: &Path, precision: Precision) -> Result<LivePortrait, BundleError> {
    Bundle::open(dir)?.load_liveportrait(Device::Cpu, precision)
}

fn model() -> LivePortrait {
    tch::set_num_threads(1);
    load(bundle(), Precision::Float32).expect("the fixture bundle loads")
}

struct Io(HashMap<String, Tensor>);

// Tensors are only read after loading.
unsafe impl Sync for Io {}
unsafe impl Send for Io {}

fn io() -> &'static Io {
    static IO: OnceLock<Io> = OnceLock::new();
    IO.get_or_init(|| {
        Io(Tensor::read_safetensors(fixtures().join("io.safetensors"))
            .unwrap()
            .into_iter()
            .collect())
    })
}

fn stored(name: &str) -> Tensor {
    io().0
        .get(name)
        .unwrap_or_else(|| panic!("io.safetensors has no {name}"))
        .shallow_clone()
}

/// Asserts |actual - expected| <= atol + 1e-4 |expected| everywhere.
fn check(name: &str, actual: &Tensor, atol: f64) {
    let expected = stored(name);
    assert_eq!(actual.size(), expected.size(), "{name}: shape");
    let excess = (actual - &expected).abs() - (expected.abs() * 1e-4 + atol);
    let worst = excess.max().double_value(&[]);
    let diff = (actual - &expected).abs().max().double_value(&[]);
    assert!(
        worst <= 0.0,
        "{name}: max |diff| {diff:e} beyond atol {atol:e}"
    );
    eprintln!("{name}: max |diff| {diff:.2e} (atol {atol:.0e})");
}

fn no_grad() -> tch::NoGradGuard {
    tch::no_grad_guard()
}

#[test]
fn appearance_feature_volume() {
    let _g = no_grad();
    check(
        "f_s",
        &model().appearance.forward(&stored("source_image")),
        2e-6,
    );
}

#[test]
fn motion_extractor_heads_pose_and_source_keypoints() {
    let _g = no_grad();
    let m = model().motion.forward(&stored("source_image"));
    check("me_pitch", &m.pitch, 3e-6);
    check("me_yaw", &m.yaw, 3e-6);
    check("me_roll", &m.roll, 3e-6);
    check("me_t", &m.t, 1e-6);
    check("me_exp", &m.exp, 1e-6);
    check("me_scale", &m.scale, 1e-6);
    check("me_kp", &m.kp, 2e-6);
    let (pitch, yaw, roll) = (
        bins_to_degrees(&m.pitch),
        bins_to_degrees(&m.yaw),
        bins_to_degrees(&m.roll),
    );
    check("pitch_deg", &pitch, 8e-5);
    check("yaw_deg", &yaw, 5e-5);
    check("roll_deg", &roll, 8e-6);
    let r = rotation(&pitch, &yaw, &roll);
    check("R_s", &r, 2e-6);
    let x_s = transform_keypoints(
        &m.kp.view([1, -1, 3]),
        &r,
        &m.exp.view([1, -1, 3]),
        &m.scale,
        &m.t,
    );
    check("x_s", &x_s, 2e-6);
}

#[test]
fn driving_keypoints_stitching_and_retargeting() {
    let _g = no_grad();
    let r_d = rotation(
        &stored("drv_pitch"),
        &stored("drv_yaw"),
        &stored("drv_roll"),
    );
    check("R_d", &r_d, 2e-6);
    let kp = stored("me_kp").view([1, -1, 3]);
    let x_d = transform_keypoints(
        &kp,
        &r_d,
        &stored("drv_exp"),
        &stored("drv_scale"),
        &stored("drv_t"),
    );
    check("x_d", &x_d, 3e-6);
    let lp = model();
    let s = &lp.stitching;
    let (x_s, x_d) = (stored("x_s"), stored("x_d"));
    check(
        "stitch_delta",
        &s.stitching
            .forward(&Tensor::cat(&[x_s.view([1, -1]), x_d.view([1, -1])], 1)),
        1e-6,
    );
    check("x_d_stitched", &s.stitch(&x_s, &x_d), 2e-6);
    check(
        "lip_delta",
        &s.retarget_lip(&x_s, &stored("lip_ratio")),
        1e-6,
    );
    check(
        "eye_delta",
        &s.retarget_eye(&x_s, &stored("eye_ratio")),
        1e-6,
    );
}

#[test]
fn warping_module_on_the_stored_inputs() {
    let _g = no_grad();
    let w = model()
        .warping
        .forward(&stored("f_s"), &stored("x_d_stitched"), &stored("x_s"));
    check("deformation", &w.deformation, 4e-6);
    check(
        "occlusion_map",
        w.occlusion
            .as_ref()
            .expect("the fixture estimates occlusion"),
        1e-4,
    );
    check("warp_out", &w.out, 5e-5);
}

#[test]
fn spade_generator_on_the_stored_warped_features() {
    let _g = no_grad();
    let logits = model().generator.logits(&stored("warp_out"));
    check("spade_logits", &logits, 7e-4);
    check("render", &logits.sigmoid(), 2e-4);
}

#[test]
fn whole_chain_from_the_source_image() {
    let _g = no_grad();
    let lp = &model();
    let image = stored("source_image");
    let f_s = lp.appearance.forward(&image);
    let info = lp.keypoint_info(&image);
    let x_s = info.keypoints();
    check("x_s", &x_s, 2e-6);
    let kp = info.kp;
    let r_d = rotation(
        &stored("drv_pitch"),
        &stored("drv_yaw"),
        &stored("drv_roll"),
    );
    let x_d = transform_keypoints(
        &kp,
        &r_d,
        &stored("drv_exp"),
        &stored("drv_scale"),
        &stored("drv_t"),
    );
    let x_d = lp.stitching.stitch(&x_s, &x_d);
    check("x_d_stitched", &x_d, 2e-6);
    let w = lp.warping.forward(&f_s, &x_d, &x_s);
    check("deformation", &w.deformation, 5e-6);
    check("occlusion_map", w.occlusion.as_ref().unwrap(), 1e-4);
    check("warp_out", &w.out, 5e-5);
    let logits = lp.generator.logits(&w.out);
    check("spade_logits", &logits, 2e-2);
    check("render", &logits.sigmoid(), 3e-3); // The same chain through the engine's entry points.
    check("render", &lp.decode(&f_s, &x_s, &x_d), 3e-3);
}

#[test]
fn official_config_has_the_official_parameter_names_and_shapes() {
    let text = std::fs::read_to_string(fixtures().join("manifest_official.json")).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut official: Vec<(String, String, Vec<i64>)> = Vec::new();
    for (file, entry) in manifest["files"].as_object().unwrap() {
        let component = file.trim_end_matches(".pth").to_string();
        let mut add = |key: String, spec: &serde_json::Value| {
            let shape = spec["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_i64().unwrap())
                .collect();
            official.push((component.clone(), key, shape));
        };
        if let Some(keys) = entry.get("keys").and_then(|k| k.as_object()) {
            for (key, spec) in keys {
                add(key.clone(), spec);
            }
        } else {
            for (name, sub) in entry["entries"].as_object().unwrap() {
                for (key, spec) in sub.as_object().unwrap() {
                    add(format!("{name}.{}", key.replace("module.", "")), spec);
                }
            }
        }
    }
    let mut ours = LivePortrait::parameter_list(&LivePortraitConfig::official()).unwrap();
    official.sort();
    ours.sort();
    let missing: Vec<_> = official
        .iter()
        .filter(|p| !ours.contains(p))
        .take(5)
        .collect();
    let extra: Vec<_> = ours
        .iter()
        .filter(|p| !official.contains(p))
        .take(5)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "not built: {missing:?}; not official: {extra:?}"
    );
    assert_eq!(ours.len(), official.len());
}

/// A bundle copy whose `component` file is replaced by `tensors`.
fn broken_bundle(
    component: &str,
    edit: impl FnOnce(&mut Vec<(String, Tensor)>),
) -> (tempfile::TempDir, BundleError) {
    let dir = common::copy_of_fixture_bundle();
    let file = dir.path().join(format!("{component}.safetensors"));
    let mut tensors = Tensor::read_safetensors(&file).unwrap();
    edit(&mut tensors);
    Tensor::write_safetensors(&tensors, &file).unwrap();
    let err = load(dir.path(), Precision::Float32).err().expect("refused");
    (dir, err)
}

#[test]
fn a_missing_tensor_is_named_with_its_expected_shape() {
    let key = "G_middle_3.conv_1.weight_orig";
    let mut shape = None;
    let (_d, err) = broken_bundle("spade_generator", |t| {
        shape = t.iter().find(|(k, _)| k == key).map(|(_, v)| v.size());
        t.retain(|(k, _)| k != key)
    });
    let shape = format!(
        "{:?}",
        shape.expect("the fixture's generator has the tensor")
    );
    let text = err.to_string();
    assert!(
        matches!(err, BundleError::Weights(WeightsError::Missing { .. })),
        "{text}"
    );
    assert!(
        text.contains("spade_generator.safetensors") && text.contains(key) && text.contains(&shape),
        "{text}"
    );
}

#[test]
fn a_misshapen_tensor_is_named_with_both_shapes() {
    let mut length = 0;
    let (_d, err) = broken_bundle("motion_extractor", |t| {
        for (k, v) in t.iter_mut() {
            if k == "detector.fc_exp.bias" {
                length = v.size()[0];
                *v = Tensor::zeros([length - 3], (tch::Kind::Float, Device::Cpu));
            }
        }
    });
    let text = err.to_string();
    assert!(
        text.contains("detector.fc_exp.bias")
            && text.contains(&format!("[{length}]"))
            && text.contains(&format!("[{}]", length - 3)),
        "{text}"
    );
}

#[test]
fn an_unexpected_tensor_is_refused() {
    let (_d, err) = broken_bundle("warping_module", |t| {
        t.push((
            "dense_motion_network.extra.weight".into(),
            Tensor::zeros([2], (tch::Kind::Float, Device::Cpu)),
        ))
    });
    assert!(
        err.to_string()
            .contains("dense_motion_network.extra.weight"),
        "{err}"
    );
}

#[test]
fn a_truncated_weight_file_is_refused_by_name() {
    let dir = common::copy_of_fixture_bundle();
    let file = dir.path().join("warping_module.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let err = load(dir.path(), Precision::Float32).err().expect("refused");
    assert!(
        err.to_string().contains("warping_module.safetensors"),
        "{err}"
    );
}

#[test]
fn the_converter_refuses_to_overwrite_a_bundle_and_names_a_missing_checkpoint() {
    let convert = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/liveportrait/convert.py");
    let out = std::process::Command::new("python3")
        .arg(&convert)
        .arg("--checkpoints")
        .arg(fixtures())
        .arg("--out")
        .arg(bundle())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("python3")
        .arg(&convert)
        .arg("--checkpoints")
        .arg(empty.path())
        .arg("--out")
        .arg(empty.path().join("b"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("appearance_feature_extractor.pth"));
}

/// (max, mean) of |actual - stored(name)|.
fn distance(name: &str, actual: &Tensor) -> (f64, f64) {
    let expected = stored(name);
    assert_eq!(actual.size(), expected.size(), "{name}: shape");
    let diff = (actual - &expected).abs();
    (
        diff.max().double_value(&[]),
        diff.mean(tch::Kind::Float).double_value(&[]),
    )
}

/// Asserts the largest and the mean |actual - expected| are within bounds.
fn check_loosely(name: &str, actual: &Tensor, max: f64, mean: f64) {
    let (worst, average) = distance(name, actual);
    eprintln!(
        "{name}: max |diff| {worst:.2e} (bound {max:.0e}), mean {average:.2e} (bound {mean:.0e})"
    );
    assert!(
        worst <= max && average <= mean,
        "{name}: max |diff| {worst:e} (bound {max:e}), mean {average:e} (bound {mean:e})"
    );
}

/// The reduced-precision bounds (README, LivePortrait) are about twice the largest
/// measured on two fixture sets (the public one and one of other sizes and seed made
/// with the reference code; the warping module's stages came closest). They are loose where the fixture's random generator is chaotic: in
/// float32, multiplying its input by 1 + 0.1% noise already moves the image by up to
/// 0.07 (0.4%, bfloat16's rounding step: 0.29), so the image is bounded mostly in the
/// mean; the stages before it are bounded tightly.
#[test]
fn whole_chain_in_bfloat16_within_the_looser_tolerance() {
    let _g = no_grad();
    tch::set_num_threads(1);
    let lp = &load(bundle(), Precision::BFloat16).expect("the fixture bundle loads in bfloat16");
    eprintln!(
        "convolutions widened: {}",
        !gstvasafacegen::core::precision::native_bfloat16_on_cpu()
    );
    let image = stored("source_image");
    let f_s = lp.appearance.forward(&image);
    assert_eq!(f_s.kind(), tch::Kind::Float, "networks hand back float32");
    check_loosely("f_s", &f_s, 8e-3, 1e-3);
    let info = lp.keypoint_info(&image);
    let x_s = info.keypoints();
    check_loosely("x_s", &x_s, 1.5e-2, 4e-3);
    let r_d = rotation(
        &stored("drv_pitch"),
        &stored("drv_yaw"),
        &stored("drv_roll"),
    );
    let x_d = transform_keypoints(
        &info.kp,
        &r_d,
        &stored("drv_exp"),
        &stored("drv_scale"),
        &stored("drv_t"),
    );
    let x_d = lp.stitching.stitch(&x_s, &x_d);
    check_loosely("x_d_stitched", &x_d, 1.5e-2, 4e-3);
    let w = lp.warping.forward(&f_s, &x_d, &x_s);
    check_loosely("deformation", &w.deformation, 3e-3, 1.2e-3);
    check_loosely("occlusion_map", w.occlusion.as_ref().unwrap(), 8e-2, 1.2e-2);
    check_loosely("warp_out", &w.out, 3e-2, 3e-3);
    check_loosely("render", &lp.decode(&f_s, &x_s, &x_d), 0.5, 4e-2);
    // The generator alone, on the reference's own input.
    check_loosely(
        "render",
        &lp.generator.forward(&stored("warp_out")),
        0.4,
        1.8e-2,
    );
}

/// On a CPU without bfloat16 instructions the convolutions compute in float32 on
/// bfloat16-rounded operands (libtorch's own emulation there is thousands of times
/// slower). The same chain, run in a process where oneDNN may not use bfloat16
/// instructions, must meet the same bounds (on such a CPU this is the path the test
/// above takes anyway).
#[test]
fn whole_chain_in_bfloat16_without_bfloat16_instructions() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "whole_chain_in_bfloat16_within_the_looser_tolerance",
            "--nocapture",
        ])
        .env("ONEDNN_MAX_CPU_ISA", "AVX2")
        .env(
            "VASAFACEGEN_FIXTURES",
            common::liveportrait_fixtures().parent().unwrap(),
        )
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    eprintln!("{log}");
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("convolutions widened: true"),
        "the child did not take the widened path: {log}"
    );
}

/// float16 runs hundreds of times slower than float32 on a CPU (it is meant for
/// GPUs), so only the small networks are checked here; measured once on the whole
/// chain: image max 0.046, mean 0.0032.
#[test]
fn appearance_and_keypoints_in_float16_within_the_looser_tolerance() {
    let _g = no_grad();
    tch::set_num_threads(1);
    let lp = &load(bundle(), Precision::Float16).expect("the fixture bundle loads in float16");
    let image = stored("source_image");
    check_loosely("f_s", &lp.appearance.forward(&image), 1e-3, 1.5e-4);
    check_loosely("x_s", &lp.keypoint_info(&image).keypoints(), 1.5e-3, 4e-4);
}
