//! Parity of the JoyVASA motion generator with the reference, on the fixture set at
//! `$VASAFACEGEN_FIXTURES/joyvasa` (default ../shared/fixtures): random weights in the
//! official container formats and the reference's recorded tensors, tolerances from the
//! fixture README (|a - b| <= atol + 1e-4 |b|). A missing fixture set fails.
//!
//! The HuBERT tests read the fixture's safetensors copy of the state dict; the
//! denoiser, sampler and motion tests load a bundle converted from the official-format
//! `motion_generator.pt` and `motion_template.pkl` by tools/liveportrait/convert.py, once
//! per positional-encoding variant, and compare with `io_pe_fixed.safetensors` or
//! `io_pe_bug.safetensors`.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use gstvasafacegen::bundle::Bundle;
use gstvasafacegen::core::KeypointFrame as FrameMotion;
use gstvasafacegen::models::joyvasa::{
    AudioEncoder, HubertConfig, JoyVasaConfig, MotionGenerator, PoseSmoother, PositionalEncoding,
    WindowContext,
};
use gstvasafacegen::models::liveportrait::stitching::rotation;
use gstvasafacegen::nn::Weights;
use tch::{Device, Kind, Tensor};

fn fixtures() -> PathBuf {
    common::joyvasa_fixtures()
}

/// The variant-dependent outputs of one positional-encoding variant.
fn variant_io(variant: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(fixtures().join(format!("io_pe_{variant}.safetensors")))
        .unwrap()
        .into_iter()
        .collect()
}

fn generator(variant: &str) -> MotionGenerator {
    tch::set_num_threads(1);
    let generator = Bundle::open(&common::joyvasa_bundle(variant))
        .unwrap()
        .load_joyvasa(Device::Cpu)
        .unwrap();
    let expected = match variant {
        "fixed" => PositionalEncoding::Fixed,
        _ => PositionalEncoding::Bug,
    };
    assert_eq!(generator.config.positional_encoding, expected);
    // The official loader always builds the same number of layers, whatever the
    // checkpoint's args say; the set records how many.
    let layers = config()["implicit_defaults"]["DenoisingNetwork"]["n_layers"]
        .as_u64()
        .unwrap();
    assert_eq!(generator.denoiser.layer_count() as u64, layers);
    generator
}

/// A number from the fixture set's config, by its path of keys.
fn number(path: &[&str]) -> f64 {
    let config = config();
    let mut value = &config;
    for key in path {
        value = match key.parse::<usize>() {
            Ok(index) => &value[index],
            Err(_) => &value[*key],
        };
    }
    value
        .as_f64()
        .unwrap_or_else(|| panic!("config.json has no number at {path:?}"))
}

/// The constructor's sizes, as the fixture set records them.
fn sizes() -> (i64, i64, i64, i64) {
    let size = |name| number(&["constructor_call", name]) as i64;
    (
        size("n_motions"),
        size("n_prev_motions"),
        size("feature_dim"),
        size("motion_feat_dim"),
    )
}

/// The reference pipeline's motion frame rate and classifier-free guidance scale.
fn fps() -> i64 {
    number(&["pipeline", "fps"]) as i64
}

fn cfg_scale() -> f64 {
    number(&["sampling", "cfg_scale"])
}

/// How many windows the reference's two-window run recorded.
fn recorded_windows(io: &HashMap<String, Tensor>) -> usize {
    (0..)
        .take_while(|i| io.contains_key(&format!("window{i}_audio_feat")))
        .count()
}

fn config() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("config.json")).unwrap()).unwrap()
}

fn io() -> HashMap<String, Tensor> {
    Tensor::read_safetensors(fixtures().join("io.safetensors"))
        .unwrap()
        .into_iter()
        .collect()
}

fn check(name: &str, actual: &Tensor, expected: &Tensor, atol: f64) {
    common::assert_close(name, actual, expected, atol);
}

fn encoder() -> AudioEncoder {
    tch::set_num_threads(1);
    let c = config();
    let hubert: HubertConfig = serde_json::from_value(c["hubert_config"].clone()).unwrap();
    let feature_dim = c["constructor_call"]["feature_dim"].as_i64().unwrap();
    let file = fixtures().join("model.safetensors");
    let tensors = Tensor::read_safetensors(&file).unwrap();
    // The state dict holds the denoiser too; the encoder takes only its own keys.
    let mut w = Weights::from_tensors(
        &file,
        tensors.into_iter().filter(|(k, _)| {
            k.starts_with("audio_encoder.") || k.starts_with("audio_feature_map.")
        }),
        Device::Cpu,
    );
    let encoder = AudioEncoder::new(&mut w, &hubert, feature_dim).unwrap();
    w.finish().expect("every encoder tensor is used");
    encoder
}

/// The reference pipeline's windows: `audio_pre_pad` zeros before and after the audio,
/// then zero-padded to whole windows of n_motions frames of `audio_unit` samples.
fn windows(waveform: &Tensor, n_motions: i64) -> Vec<Tensor> {
    let pad = |i: usize| number(&["pipeline", "audio_pre_pad", &i.to_string()]) as i64;
    let unit = number(&["pipeline", "audio_unit"]) as i64;
    let padded = waveform.constant_pad_nd([pad(0), pad(1)]);
    let len = padded.size()[0];
    let window = n_motions * unit;
    let frames = (len as f64 / 16000.0 * fps() as f64) as i64;
    let count = (frames + n_motions - 1) / n_motions;
    let whole = padded.constant_pad_nd([0, count * window - len]);
    (0..count)
        .map(|i| whole.narrow(0, i * window, window).unsqueeze(0))
        .collect()
}

#[test]
fn hubert_features_hidden_states_and_projected_features() {
    let _g = tch::no_grad_guard();
    let io = io();
    let encoder = encoder();
    let (n_motions, ..) = sizes();
    let windows = windows(&io["waveform"], n_motions);
    assert_eq!(windows.len(), recorded_windows(&io));
    for (i, audio) in windows.iter().enumerate() {
        let out = encoder.forward(audio, n_motions, fps());
        check(
            &format!("window{i}_hubert_conv_features"),
            &out.conv,
            &io[&format!("window{i}_hubert_conv_features")],
            4e-5,
        );
        check(
            &format!("window{i}_hubert_last_hidden_state"),
            &out.hidden,
            &io[&format!("window{i}_hubert_last_hidden_state")],
            6e-5,
        );
        check(
            &format!("window{i}_audio_feat"),
            &out.features,
            &io[&format!("window{i}_audio_feat")],
            2e-5,
        );
    }
}

#[test]
fn official_hubert_builds_with_the_hubert_base_shapes() {
    let mut w = Weights::recorder("motion_generator");
    AudioEncoder::new(&mut w, &HubertConfig::official(), 256).unwrap();
    let shapes: HashMap<String, Vec<i64>> = w.finish().unwrap().into_iter().collect();
    // hubert-base: 7 convolutions of 512 channels, 12 layers of 768 with 3072 inside,
    // a 128-tap positional convolution in 16 groups.
    assert_eq!(
        shapes["audio_encoder.feature_extractor.conv_layers.0.conv.weight"],
        [512, 1, 10]
    );
    assert_eq!(
        shapes["audio_encoder.encoder.layers.11.feed_forward.intermediate_dense.weight"],
        [3072, 768]
    );
    assert_eq!(
        shapes["audio_encoder.encoder.pos_conv_embed.conv.parametrizations.weight.original1"],
        [768, 48, 128]
    );
    let layers = shapes
        .keys()
        .filter(|k| k.ends_with("final_layer_norm.weight"))
        .count();
    assert_eq!(layers, 12);
    assert_eq!(shapes["audio_feature_map.weight"], [256, 768]);
}

#[test]
fn denoiser_call_conditional_and_null_branch_for_both_position_encodings() {
    let _g = tch::no_grad_guard();
    let io = io();
    for variant in ["fixed", "bug"] {
        let generator = generator(variant);
        let expected = variant_io(variant);
        let step = Tensor::cat(&[&io["denoise_step"], &io["denoise_step"]], 0);
        let te = generator.denoiser.step_embedding_input(&step);
        assert_eq!(te, io["denoise_te"], "diffusion-step table rows");
        let (n_motions, n_prev, feature_dim, _) = sizes();
        let audio = &io["window0_audio_feat"];
        let null = io["null_audio_feat"].expand([1, n_motions, feature_dim], false);
        let twice = |t: &Tensor| Tensor::cat(&[t, t], 0);
        let out = generator.denoiser.forward(
            &twice(&io["denoise_x_t"]),
            &Tensor::cat(&[&null, audio], 0),
            &twice(&io["denoise_prev_motion"]),
            &twice(&io["denoise_prev_audio"]),
            &step,
        );
        check(
            &format!("{variant} denoise_out"),
            &out,
            &expected["denoise_out"],
            5e-6,
        );
        let tail = out.narrow(1, n_prev, n_motions);
        let (unconditional, conditional) = (tail.narrow(0, 0, 1), tail.narrow(0, 1, 1));
        let target = &unconditional + (&conditional - &unconditional) * cfg_scale();
        check(
            &format!("{variant} denoise_cfg_target"),
            &target,
            &expected["denoise_cfg_target"],
            2e-5,
        );
    }
}

/// `(N, k)` tensor of one field of every frame.
fn field(frames: &[FrameMotion], get: impl Fn(&FrameMotion) -> Vec<f32>) -> Tensor {
    let rows: Vec<f32> = frames.iter().flat_map(&get).collect();
    Tensor::from_slice(&rows).view([frames.len() as i64, -1])
}

fn check_motion(prefix: &str, frames: &[FrameMotion], expected: &HashMap<String, Tensor>) {
    let n = frames.len() as i64;
    let pitch = field(frames, |f| vec![f.pitch]);
    let yaw = field(frames, |f| vec![f.yaw]);
    let roll = field(frames, |f| vec![f.roll]);
    if prefix == "final" {
        let exp = field(frames, |f| f.exp.to_vec()).view([n, -1, 3]);
        check("final_exp", &exp, &expected["final_exp"], 1e-6);
    }
    let atol = |name: &str| match (prefix, name) {
        ("final", "scale") => 5e-6,
        ("final", "pitch") => 4e-4,
        ("final", "yaw") => 5e-4,
        ("final", "roll") => 3e-4,
        ("final", "R") => 8e-6,
        ("smooth", "scale") => 2e-6,
        ("smooth", "pitch") | ("smooth", "yaw") => 2e-4,
        ("smooth", "roll") => 9e-5,
        ("smooth", "R") => 3e-6,
        _ => 1e-6,
    };
    let fields = [
        ("scale", field(frames, |f| vec![f.scale])),
        ("t", field(frames, |f| f.t.to_vec())),
        ("R", rotation(&pitch, &yaw, &roll)),
        ("pitch", pitch),
        ("yaw", yaw),
        ("roll", roll),
    ];
    for (name, actual) in fields {
        let key = format!("{prefix}_{name}");
        check(&key, &actual, &expected[&key], atol(name));
    }
}

#[test]
fn two_window_sampling_and_final_motion_for_both_position_encodings() {
    let _g = tch::no_grad_guard();
    let io = io();
    let (n_motions, _, _, motion_feat_dim) = sizes();
    let windows = windows(&io["waveform"], n_motions);
    assert_eq!(windows.len(), recorded_windows(&io));
    for variant in ["fixed", "bug"] {
        let generator = generator(variant);
        let expected = variant_io(variant);
        let steps = generator.schedule.steps();
        assert_eq!(steps as f64, number(&["constructor_call", "n_diff_steps"]));
        let motion_at_t = &io["noise_motion_at_T"];
        let mut context = WindowContext {
            motion: generator.start_context().motion.shallow_clone(),
            audio: generator.start_context().audio.shallow_clone(),
        };
        let mut coefficients = Vec::new();
        for (i, audio) in windows.iter().enumerate() {
            let features = generator.audio_features(audio).features;
            let noise = io[&format!("noise_z_window{i}")].shallow_clone();
            let mut asked = Vec::new();
            let mut z = |t: usize| {
                asked.push(t);
                noise.get((steps - t) as i64)
            };
            let motion = generator.sample_window(
                &features,
                &context,
                motion_at_t,
                steps,
                cfg_scale(),
                &mut z,
            );
            // The reference draws noise for t = T..2, none for the last step.
            assert_eq!(asked, (2..=steps).rev().collect::<Vec<_>>());
            check(
                &format!("{variant} window{i}_motion"),
                &motion,
                &expected[&format!("window{i}_motion")],
                if i == 0 { 1e-5 } else { 2e-5 },
            );
            context = generator.next_context(&context, &motion, &features, n_motions);
            if i == 0 {
                check(
                    &format!("{variant} window1_prev_motion"),
                    &context.motion,
                    &expected["window1_prev_motion"],
                    1e-5,
                );
                check(
                    "window1_prev_audio",
                    &context.audio,
                    &io["window1_prev_audio"],
                    1e-5,
                );
            }
            coefficients.push(motion);
        }
        let frames = expected["motion_coef"].size()[0];
        let coef = Tensor::cat(&coefficients, 1)
            .squeeze_dim(0)
            .narrow(0, 0, frames);
        check(
            &format!("{variant} motion_coef"),
            &coef,
            &expected["motion_coef"],
            2e-5,
        );
        let rows: Vec<f32> = Vec::try_from(coef.to_kind(Kind::Float).flatten(0, -1)).unwrap();
        let denormalised: Vec<FrameMotion> = rows
            .chunks(motion_feat_dim as usize)
            .map(|row| generator.template.denormalise(row))
            .collect();
        check_motion("final", &denormalised, &expected);
        let mut smoother = PoseSmoother::new();
        let smoothed: Vec<FrameMotion> = denormalised.iter().map(|f| smoother.smooth(f)).collect();
        check_motion("smooth", &smoothed, &expected);
    }
}

#[test]
fn official_motion_generator_builds_with_the_official_shapes() {
    let config = JoyVasaConfig {
        motion_feat_dim: 70,
        n_motions: 100,
        n_prev_motions: 10,
        feature_dim: 256,
        n_diff_steps: 50,
        fps: 25,
        positional_encoding: PositionalEncoding::Bug,
        hubert: HubertConfig::official(),
    };
    let shapes: HashMap<String, Vec<i64>> = MotionGenerator::parameter_list(&config, 8)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        shapes["denoising_net.transformer.layers.7.multihead_attn.in_proj_weight"],
        [768, 256]
    );
    assert_eq!(
        shapes["denoising_net.transformer.layers.7.linear1.weight"],
        [1024, 256]
    );
    assert_eq!(shapes["denoising_net.alignment_mask"], [110, 110]);
    assert_eq!(shapes["denoising_net.PE.pe"], [1, 600, 256]);
    assert_eq!(shapes["denoising_net.feature_proj.weight"], [256, 70]);
    assert_eq!(shapes["denoising_net.motion_dec.2.weight"], [70, 128]);
    assert_eq!(shapes["diffusion_sched.alpha_bars"], [51]);
    assert_eq!(shapes["start_motion_feat"], [1, 10, 70]);
    assert_eq!(shapes["null_audio_feat"], [1, 1, 256]);
    assert_eq!(shapes["audio_feature_map.weight"], [256, 768]);
}

/// The schedule and step rule: with every step, the reference's stored coefficients;
/// with fewer, each skipped span collapses into one step of the same form.
#[test]
fn fewer_sampling_steps_visit_an_even_subset_ending_at_one() {
    let generator = generator("fixed");
    let schedule = &generator.schedule;
    let total = schedule.steps();
    assert_eq!(total as f64, number(&["constructor_call", "n_diff_steps"]));
    assert_eq!(
        schedule.timesteps(total),
        (1..=total).rev().collect::<Vec<_>>()
    );
    for count in 1..total {
        let visited = schedule.timesteps(count);
        assert_eq!(visited.len(), count, "{count} steps: {visited:?}");
        assert_eq!(visited[0], total, "{count} steps start at T: {visited:?}");
        // Evenly spread, down to a last step of at most one span.
        let span = total as f64 / count as f64;
        for pair in visited.windows(2) {
            let gap = (pair[0] - pair[1]) as f64;
            assert!((gap - span).abs() <= 1.0, "{count} steps: {visited:?}");
        }
        assert!(
            *visited.last().unwrap() as f64 <= span.ceil(),
            "{visited:?}"
        );
    }
    assert_eq!(schedule.timesteps(1), vec![total]);
    assert_eq!(schedule.timesteps(total * 25), schedule.timesteps(total));
    if total >= 2 {
        // A skip of one step uses the same formula as the stored coefficients.
        let direct = schedule.coefficients(total, total - 1);
        assert!(direct.c0 > 0.0 && direct.c1 > 0.0 && direct.sigma > 0.0);
    }
    // Jumping to 0 takes the clean estimate exactly: c0 = 0, c1 = 1, no noise.
    let last = schedule.coefficients(total.min(2), 0);
    assert!(last.c0.abs() < 1e-6 && (last.c1 - 1.0).abs() < 1e-6 && last.sigma.abs() < 1e-6);
}
