//! Parity of the JoyVASA audio encoder with the reference, on the fixture set at
//! `$VASAFACEGEN_FIXTURES/joyvasa` (default ../shared/fixtures): random weights in the
//! official state-dict layout and the reference's recorded tensors, tolerances from the
//! fixture README (|a - b| <= atol + 1e-4 |b|). A missing fixture set fails.
//!
//! The weights are read from the fixture's safetensors copy of the state dict; the
//! official `.pt` container and the denoiser are not covered yet.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use gstvasafacegen::joyvasa::{AudioEncoder, HubertConfig};
use gstvasafacegen::liveportrait::weights::Weights;
use tch::{Device, Tensor};

fn fixtures() -> PathBuf {
    let dir = common::liveportrait_fixtures()
        .parent()
        .unwrap()
        .join("joyvasa");
    assert!(
        dir.join("io.safetensors").is_file(),
        "no JoyVASA fixtures at {} (set VASAFACEGEN_FIXTURES)",
        dir.display()
    );
    dir
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

/// The reference pipeline's windows: 1280 zeros before the audio, 640 after, then
/// zero-padded to whole windows of n_motions frames (640 samples each at 25 fps).
fn windows(waveform: &Tensor, n_motions: i64) -> Vec<Tensor> {
    let padded = waveform.constant_pad_nd([1280, 640]);
    let len = padded.size()[0];
    let window = n_motions * 640;
    let frames = (len as f64 / 16000.0 * 25.0) as i64;
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
    let n_motions = config()["constructor_call"]["n_motions"].as_i64().unwrap();
    let windows = windows(&io["waveform"], n_motions);
    assert_eq!(windows.len(), 2);
    let conv_atol = [3e-5, 4e-5];
    let hidden_atol = [6e-5, 5e-5];
    for (i, audio) in windows.iter().enumerate() {
        let out = encoder.forward(audio, n_motions, 25);
        check(
            &format!("window{i}_hubert_conv_features"),
            &out.conv,
            &io[&format!("window{i}_hubert_conv_features")],
            conv_atol[i],
        );
        check(
            &format!("window{i}_hubert_last_hidden_state"),
            &out.hidden,
            &io[&format!("window{i}_hubert_last_hidden_state")],
            hidden_atol[i],
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
