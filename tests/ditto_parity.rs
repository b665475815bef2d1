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
