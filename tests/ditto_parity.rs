//! Parity of Ditto's parts with the reference, on the fixture set at
//! `$VASAFACEGEN_FIXTURES/ditto` (default ../shared/fixtures): random weights in the
//! official formats and the reference's recorded tensors, tolerances from the fixture
//! README (|a - b| <= atol + 1e-4 |b|). A missing fixture set fails.
//!
//! So far: HuBERT-large (the stable-layer-norm layout Ditto's audio features come from),
//! every hidden state. Every size is read from the set's config and tensors.

mod common;

use std::collections::HashMap;

use gstvasafacegen::models::hubert::{Hubert, HubertConfig};
use gstvasafacegen::nn::Weights;
use tch::{Device, Tensor};

fn hubert_io() -> HashMap<String, Tensor> {
    Tensor::read_safetensors(common::ditto_fixtures().join("hubert/io.safetensors"))
        .unwrap()
        .into_iter()
        .collect()
}

fn check(name: &str, actual: &Tensor, expected: &Tensor, atol: f64) {
    common::assert_close(name, actual, expected, atol);
}

fn hubert() -> (Hubert, HubertConfig) {
    tch::set_num_threads(1);
    let dir = common::ditto_fixtures().join("hubert");
    let config: HubertConfig =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert!(config.do_stable_layer_norm && config.feat_extract_norm == "layer");
    let mut w = Weights::load(&dir.join("model.safetensors"), Device::Cpu).unwrap();
    let hubert = Hubert::new(&mut w, &config, "").unwrap();
    w.finish().expect("every HuBERT tensor is used");
    (hubert, config)
}

#[test]
fn hubert_large_conv_features_and_every_hidden_state() {
    let _g = tch::no_grad_guard();
    let io = hubert_io();
    let (hubert, config) = hubert();
    let conv = hubert.conv_features(&io["input_values"]);
    check("conv_features", &conv, &io["conv_features"], 2e-5);
    let states = hubert.hidden_states(&conv);
    // The input to the first layer, each layer's output, the last after the final norm.
    assert_eq!(states.len() as i64, config.num_hidden_layers + 1);
    // The fixture's tolerances: 4e-6 before the final norm, 5e-5 after it.
    let atol = |i: usize| if i + 1 == states.len() { 5e-5 } else { 4e-6 };
    for (i, state) in states.iter().enumerate() {
        let key = format!("hidden_states.{i}");
        check(&key, state, &io[&key], atol(i));
    }
    check(
        "last_hidden_state",
        states.last().unwrap(),
        &io["last_hidden_state"],
        5e-5,
    );
}

#[test]
fn official_hubert_large_builds_with_its_shapes() {
    let mut w = Weights::recorder("hubert-large-ls960-ft");
    Hubert::new(&mut w, &HubertConfig::large(), "").unwrap();
    let shapes: HashMap<String, Vec<i64>> = w.finish().unwrap().into_iter().collect();
    // 24 layers of 1024 with 4096 inside, layer norm after each of 7 convolutions.
    assert_eq!(
        shapes["encoder.layers.23.feed_forward.intermediate_dense.weight"],
        vec![4096, 1024]
    );
    assert_eq!(
        shapes["feature_extractor.conv_layers.6.layer_norm.weight"],
        vec![512]
    );
    // (A recorder has no weight_g: the names of newer transformers' weight norm.)
    assert_eq!(
        shapes["encoder.pos_conv_embed.conv.parametrizations.weight.original1"],
        vec![1024, 64, 128]
    );
    let parameters: i64 = shapes.values().map(|s| s.iter().product::<i64>()).sum();
    // hubert-large: about 316 million parameters.
    assert!(
        (310_000_000..320_000_000).contains(&parameters),
        "{parameters}"
    );
}

#[test]
fn a_base_and_large_mix_is_refused_by_name() {
    let mut config = HubertConfig::large();
    config.do_stable_layer_norm = false;
    let mut w = Weights::recorder("mixed");
    let err = Hubert::new(&mut w, &config, "").err().expect("refused");
    assert!(
        err.to_string().contains("unsupported HuBERT configuration"),
        "{err}"
    );
}

// ---- LMDM ------------------------------------------------------------------------

use gstvasafacegen::models::ditto::lmdm::{Branch, MotionDecoder};
use gstvasafacegen::models::ditto::sampler::{self, DdimPlan, Schedule, Windows};
use gstvasafacegen::models::ditto::{frame_conditions, motion_row};

fn ditto_config() -> serde_json::Value {
    let text = std::fs::read_to_string(common::ditto_fixtures().join("config.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn lmdm_io() -> HashMap<String, Tensor> {
    Tensor::read_safetensors(common::ditto_fixtures().join("io.safetensors"))
        .unwrap()
        .into_iter()
        .collect()
}

fn decoder() -> MotionDecoder {
    tch::set_num_threads(1);
    let config = ditto_config();
    let heads = config["motion_decoder_params"]["num_heads"]
        .as_i64()
        .unwrap();
    let mut w = Weights::load(
        &common::ditto_fixtures().join("lmdm.safetensors"),
        Device::Cpu,
    )
    .unwrap();
    let decoder = MotionDecoder::new(&mut w, heads).unwrap();
    w.finish().expect("every LMDM tensor is used");
    let p = &config["motion_decoder_params"];
    assert_eq!(
        decoder.layer_count() as i64,
        p["num_layers"].as_i64().unwrap()
    );
    assert_eq!(decoder.cond_dim, p["cond_feature_dim"].as_i64().unwrap());
    assert_eq!(decoder.seq_len, p["seq_len"].as_i64().unwrap());
    decoder
}

/// The fixture's guidance weight.
fn guidance() -> f64 {
    ditto_config()["diffusion"]["guidance_weight"]
        .as_f64()
        .expect("diffusion.guidance_weight in config.json")
}

fn int(t: &Tensor) -> i64 {
    t.int64_value(&[])
}

#[test]
fn conditions_are_laid_out_as_ditto_builds_them() {
    let io = lmdm_io();
    let cond = frame_conditions(
        &io["aud_feat"],
        &io["emo"],
        &io["eye_open"],
        &io["eye_ball"],
        &io["sc"],
    );
    assert!(cond.equal(&io["aud_cond_all"]), "aud_cond_all");
    let row = motion_row(
        &io["x_s_info_scale"],
        &io["x_s_info_pitch"],
        &io["x_s_info_yaw"],
        &io["x_s_info_roll"],
        &io["x_s_info_t"],
        &io["x_s_info_exp"],
    );
    assert!(row.unsqueeze(0).equal(&io["kp_cond"]), "kp_cond");
    // The emotion the fixture recorded is class 4 (neutral).
    assert!(
        gstvasafacegen::models::ditto::emotion_condition(4).allclose(&io["emo"], 0.0, 1e-7, false)
    );
}

#[test]
fn denoiser_both_branches_guidance_and_noise() {
    let _g = tch::no_grad_guard();
    let io = lmdm_io();
    let decoder = decoder();
    let seq = decoder.seq_len;
    let cond = io["aud_cond_all"].narrow(0, 0, seq).unsqueeze(0);
    let (x, t) = (&io["dn_x_t"], &io["dn_t"]);
    let conditioned = decoder.forward(x, &io["kp_cond"], &cond, t, Branch::Conditioned);
    check("dn_out_cond", &conditioned, &io["dn_out_cond"], 2e-5);
    let null = decoder.forward(x, &io["kp_cond"], &cond, t, Branch::Null);
    check("dn_out_uncond", &null, &io["dn_out_uncond"], 2e-5);
    let schedule = Schedule::cosine();
    let (noise, x_start) = sampler::predict(
        &decoder,
        &schedule,
        x,
        &io["kp_cond"],
        &cond,
        int(&t.get(0)),
        guidance(),
    );
    check(
        "dn_guided_x_start",
        &x_start,
        &io["dn_guided_x_start"],
        4e-5,
    );
    check("dn_x_start", &x_start, &io["dn_x_start"], 4e-5);
    check("dn_pred_noise", &noise, &io["dn_pred_noise"], 4e-5);
}

#[test]
fn schedule_scalars_match() {
    let io = lmdm_io();
    let steps = ditto_config()["diffusion"]["sampling_timesteps"]
        .as_u64()
        .unwrap() as usize;
    let plan = DdimPlan::new(&Schedule::cosine(), steps);
    let pairs: Vec<i64> = plan.pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
    let expected = Vec::<i64>::try_from(io["ddim_time_pairs"].flatten(0, -1)).unwrap();
    assert_eq!(pairs, expected);
    for (name, values, atol) in [
        ("ddim_alpha_next_sqrt", &plan.alpha_next_sqrt, 1e-6),
        ("ddim_sigma", &plan.sigma, 1e-6),
        ("ddim_c", &plan.c, 2e-3),
    ] {
        check(name, &Tensor::from_slice(values), &io[name], atol);
    }
    assert_eq!(plan.noise_count() as i64, io["ddim_noise_list"].size()[0]);
}

fn noise_list(io: &HashMap<String, Tensor>) -> Vec<Tensor> {
    let list = &io["ddim_noise_list"];
    (0..list.size()[0]).map(|i| list.get(i)).collect()
}

#[test]
fn one_window_of_ddim_with_the_recorded_noise() {
    let io = lmdm_io();
    let decoder = decoder();
    let schedule = Schedule::cosine();
    let steps = ditto_config()["diffusion"]["sampling_timesteps"]
        .as_u64()
        .unwrap() as usize;
    let plan = DdimPlan::new(&schedule, steps);
    let cond = io["aud_cond_all"]
        .narrow(0, 0, decoder.seq_len)
        .unsqueeze(0);
    let x0 = sampler::sample_window(
        &decoder,
        &schedule,
        &plan,
        &io["kp_cond"],
        &cond,
        io["ddim_x_T"].shallow_clone(),
        &noise_list(&io),
        guidance(),
    );
    check("ddim_x0", &x0, &io["ddim_x0"], 3e-5);
}

#[test]
fn two_windows_fused_smoothed_and_the_final_motion() {
    let io = lmdm_io();
    let config = ditto_config();
    let decoder = decoder();
    let schedule = Schedule::cosine();
    let steps = config["diffusion"]["sampling_timesteps"].as_u64().unwrap() as usize;
    let plan = DdimPlan::new(&schedule, steps);
    let overlap = config["two_window"]["overlap_v2"].as_i64().unwrap();
    let frames_total = config["two_window"]["num_frames"].as_i64().unwrap();
    let windows = Windows::offline(decoder.seq_len, overlap);
    assert_eq!(
        windows.step(),
        config["two_window"]["valid_clip_len"].as_i64().unwrap()
    );
    let noise = noise_list(&io);
    let all = &io["aud_cond_all"];
    let mut previous = io["kp_cond"].shallow_clone();
    let mut result: Option<Tensor> = None;
    let mut start = 0;
    let mut w = 0;
    while start < frames_total {
        // The window's conditions, the last padded by repeating its last frame.
        let available = (frames_total - start).min(decoder.seq_len);
        let mut cond = all.narrow(0, start, available);
        if available < decoder.seq_len {
            let last = cond
                .narrow(0, available - 1, 1)
                .expand([decoder.seq_len - available, -1], false);
            cond = Tensor::cat(&[&cond, &last], 0);
        }
        let cond = cond.unsqueeze(0);
        check(
            &format!("win{w}_aud_cond"),
            &cond,
            &io[&format!("win{w}_aud_cond")],
            0.0,
        );
        check(
            &format!("win{w}_kp_cond"),
            &previous,
            &io[&format!("win{w}_kp_cond")],
            2e-5,
        );
        let predicted = sampler::sample_window(
            &decoder,
            &schedule,
            &plan,
            &previous,
            &cond,
            io[&format!("win{w}_x_T")].shallow_clone(),
            &noise,
            guidance(),
        );
        check(
            &format!("win{w}_pred_kp_seq"),
            &predicted,
            &io[&format!("win{w}_pred_kp_seq")],
            3e-5,
        );
        let joined = windows.join(result.as_ref(), &predicted);
        check(
            &format!("win{w}_res_kp_seq"),
            &joined,
            &io[&format!("win{w}_res_kp_seq")],
            3e-5,
        );
        previous = windows.next_previous(&joined);
        result = Some(joined);
        start += windows.step();
        w += 1;
    }
    let result = result.unwrap().narrow(1, 0, frames_total);
    let last = windows.smooth(&result, 0, frames_total);
    check("final_res_kp_seq", &last, &io["final_res_kp_seq"], 3e-5);
}

// ---- The bundle -------------------------------------------------------------------

use gstvasafacegen::bundle::Bundle;

fn ditto_bundle(dir: &std::path::Path, heads: &str) -> std::path::PathBuf {
    common::ditto_bundle_in(dir, heads)
}

#[test]
fn converted_bundle_loads_ditto_and_denoises_as_the_reference() {
    let _g = tch::no_grad_guard();
    let dir = tempfile::tempdir().unwrap();
    let heads = ditto_config()["motion_decoder_params"]["num_heads"].to_string();
    let bundle = Bundle::open(&ditto_bundle(dir.path(), &heads)).unwrap();
    assert!(
        bundle
            .motion_generator_names()
            .contains(&"ditto".to_owned())
    );
    assert!(bundle.has_ditto() && !bundle.has_joyvasa());
    let networks = bundle.load_ditto(Device::Cpu).unwrap();
    let io = lmdm_io();
    let cond = io["aud_cond_all"]
        .narrow(0, 0, networks.decoder.seq_len)
        .unsqueeze(0);
    let out = networks.decoder.forward(
        &io["dn_x_t"],
        &io["kp_cond"],
        &cond,
        &io["dn_t"],
        Branch::Conditioned,
    );
    check("dn_out_cond (bundle)", &out, &io["dn_out_cond"], 2e-5);
    let hub = hubert_io();
    let conv = networks.hubert.conv_features(&hub["input_values"]);
    let last = networks.hubert.last_hidden_state(&conv);
    check(
        "last_hidden_state (bundle)",
        &last,
        &hub["last_hidden_state"],
        5e-5,
    );
}

#[test]
fn damaged_or_incomplete_ditto_bundles_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = ditto_bundle(dir.path(), "8");
    let load_error = || {
        Bundle::open(&path)
            .unwrap()
            .load_ditto(Device::Cpu)
            .err()
            .unwrap()
            .to_string()
    };
    // A damaged LMDM file.
    std::fs::write(path.join("ditto_lmdm.safetensors"), b"not a tensor file").unwrap();
    let err = load_error();
    assert!(err.contains("ditto_lmdm.safetensors"), "{err}");
    // A manifest without the HuBERT component.
    let manifest_path = path.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    manifest["motion_generators"]["ditto"]["components"]
        .as_object_mut()
        .unwrap()
        .remove("hubert");
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let err = load_error();
    assert!(
        err.contains("component hubert of motion_generators.ditto is missing"),
        "{err}"
    );
    // A config the manifest check refuses.
    manifest["motion_generators"]["ditto"]["config"]["heads"] = 0.into();
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let err = Bundle::open(&path).err().unwrap().to_string();
    assert!(err.contains("motion generator ditto: heads is 0"), "{err}");
    // A bundle with no Ditto section says how to add one.
    let plain = Bundle::open(common::fixture_bundle()).unwrap();
    let err = plain.load_ditto(Device::Cpu).err().unwrap().to_string();
    assert!(err.contains("--ditto-lmdm"), "{err}");
}

#[test]
fn the_converter_refuses_half_a_ditto_and_a_foreign_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let run = |extra: &[&std::ffi::OsStr]| {
        let extra: Vec<std::ffi::OsString> = extra.iter().map(|&a| a.to_owned()).collect();
        common::run_converter(&out, &extra)
    };
    let lmdm = common::ditto_fixtures().join("lmdm.pth");
    let only_lmdm = run(&["--ditto-lmdm".as_ref(), lmdm.as_os_str()]);
    assert!(!only_lmdm.status.success());
    assert!(String::from_utf8_lossy(&only_lmdm.stderr).contains("go together"));
    // The LivePortrait appearance network is no LMDM checkpoint.
    let foreign = common::liveportrait_fixtures().join("appearance_feature_extractor.pth");
    let hubert = common::ditto_fixtures().join("hubert");
    let wrong = run(&[
        "--ditto-lmdm".as_ref(),
        foreign.as_os_str(),
        "--ditto-hubert".as_ref(),
        hubert.as_os_str(),
    ]);
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("appearance_feature_extractor.pth") && stderr.contains("model_state_dict"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("out").exists(),
        "a failed conversion leaves nothing"
    );
}

// ---- Audio features ----------------------------------------------------------------

use gstvasafacegen::models::ditto::audio;

#[test]
fn offline_audio_features_come_in_chunks_of_five_frames_at_25_fps() {
    let _g = tch::no_grad_guard();
    let (hubert, config) = hubert();
    assert_eq!(audio::chunk_samples(), 6480);
    // 1.3 s of a recorded chunk's samples repeated: ceil(1.3 x 25) = 33 frames.
    let io = hubert_io();
    let source = io["input_values"].flatten(0, -1);
    let samples = Tensor::cat(&[&source, &source, &source, &source], 0).narrow(0, 0, 20_800);
    let features = audio::offline_features(&hubert, &samples);
    assert_eq!(features.size(), vec![33, config.hidden_size]);
    // The first chunk by hand: 2000 zeros, then the audio; encoder frames -14..-4 of its
    // 6480 samples, averaged in pairs, are the first five frames.
    let first = Tensor::cat(
        &[
            Tensor::zeros([2000], (tch::Kind::Float, Device::Cpu)),
            samples.narrow(0, 0, 4480),
        ],
        0,
    )
    .unsqueeze(0);
    let encoded = hubert
        .last_hidden_state(&hubert.conv_features(&first))
        .squeeze_dim(0);
    let frames = encoded.size()[0];
    for k in 0..5 {
        let pair = encoded
            .narrow(0, frames - 14 + 2 * k, 2)
            .mean_dim(0, false, tch::Kind::Float);
        check(&format!("frame {k}"), &features.get(k), &pair, 1e-6);
    }
    // Silence in, features out: one frame per 40 ms still.
    let short = audio::offline_features(
        &hubert,
        &Tensor::zeros([100], (tch::Kind::Float, Device::Cpu)),
    );
    assert_eq!(short.size(), vec![1, config.hidden_size]);
    let none = audio::offline_features(
        &hubert,
        &Tensor::zeros([0], (tch::Kind::Float, Device::Cpu)),
    );
    assert_eq!(none.size(), vec![0, config.hidden_size]);
}

#[test]
fn the_streamed_offline_windows_give_the_reference_sequence() {
    use gstvasafacegen::models::ditto::stream::{MotionStream, StreamMode};
    let io = lmdm_io();
    let config = ditto_config();
    let decoder = decoder();
    let schedule = Schedule::cosine();
    let steps = config["diffusion"]["sampling_timesteps"].as_u64().unwrap() as usize;
    let plan = DdimPlan::new(&schedule, steps);
    let overlap = config["two_window"]["overlap_v2"].as_i64().unwrap();
    let total = config["two_window"]["num_frames"].as_i64().unwrap();
    let noise = noise_list(&io);
    let all = &io["aud_cond_all"];
    // The conditions stand in for the features: the stream does not look inside rows.
    let silence = all.narrow(0, 0, 1);
    let mut stream = MotionStream::new(
        StreamMode::Offline,
        decoder.seq_len,
        overlap,
        &io["kp_cond"].view([-1]),
        &silence,
    );
    let mut frames = Vec::new();
    let mut w = 0;
    // Features come in chunks of 5 frames, as the audio does.
    for start in (0..total).step_by(5) {
        stream.push_features(&all.narrow(0, start, (total - start).min(5)));
        if start + 5 >= total {
            stream.end(total);
        }
        while stream.window_ready() {
            let cond = stream.window_features(&silence.get(0)).unsqueeze(0);
            check(
                &format!("win{w}_aud_cond"),
                &cond,
                &io[&format!("win{w}_aud_cond")],
                0.0,
            );
            let predicted = sampler::sample_window(
                &decoder,
                &schedule,
                &plan,
                &stream.previous().shallow_clone(),
                &cond,
                io[&format!("win{w}_x_T")].shallow_clone(),
                &noise,
                guidance(),
            );
            stream.add_window(&predicted);
            w += 1;
        }
        while (frames.len() as i64) < stream.frames_final() {
            let r = frames.len() as i64;
            frames.push(stream.frame(r));
            stream.forget_before(r);
        }
    }
    assert_eq!(frames.len() as i64, total);
    let got = Tensor::stack(&frames, 0).unsqueeze(0);
    check("final_res_kp_seq", &got, &io["final_res_kp_seq"], 3e-5);
}
