//! Ditto's parts on this CPU at the official sizes, on random weights: HuBERT-large per
//! second of audio and per streaming chunk (6480 samples), and one LMDM window (80
//! frames) at 10 and 50 sampling steps. `cargo bench --bench ditto`; numbers in README.

use std::collections::HashMap;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use gstvasafacegen::models::ditto::lmdm::MotionDecoder;
use gstvasafacegen::models::ditto::sampler::{self, DdimPlan, Schedule};
use gstvasafacegen::models::hubert::{Hubert, HubertConfig};
use gstvasafacegen::nn::Weights;
use tch::{Device, Kind, Tensor};

fn random(shapes: impl IntoIterator<Item = (String, Vec<i64>)>) -> Vec<(String, Tensor)> {
    tch::manual_seed(0);
    shapes
        .into_iter()
        .map(|(k, s)| (k, Tensor::randn(&s, (Kind::Float, Device::Cpu)) * 0.02))
        .collect()
}

fn hubert_large() -> Hubert {
    let mut recorder = Weights::recorder("hubert-large");
    Hubert::new(&mut recorder, &HubertConfig::large(), "").unwrap();
    let tensors = random(recorder.finish().unwrap());
    let mut w = Weights::from_tensors(std::path::Path::new("random"), tensors, Device::Cpu);
    Hubert::new(&mut w, &HubertConfig::large(), "").unwrap()
}

/// The official LMDM's keys and shapes: the fixture's keys with its reduced sizes
/// mapped to the official ones (latent 64 -> 512, feed-forward 128 -> 1024, condition
/// 111 -> 1103; the derived sizes follow).
fn lmdm_official() -> MotionDecoder {
    let fixtures = std::env::var_os("VASAFACEGEN_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures")
        });
    let small = Tensor::read_safetensors(fixtures.join("ditto/lmdm.safetensors")).unwrap();
    let map: HashMap<i64, i64> = HashMap::from([
        (32, 256),
        (64, 512),
        (128, 1024),
        (192, 1536),
        (256, 2048),
        (111, 1103),
    ]);
    let shapes = small.into_iter().map(|(k, t)| {
        (
            k,
            t.size().iter().map(|d| *map.get(d).unwrap_or(d)).collect(),
        )
    });
    let mut w = Weights::from_tensors(std::path::Path::new("random"), random(shapes), Device::Cpu);
    MotionDecoder::new(&mut w, 8).unwrap()
}

fn ditto(c: &mut Criterion) {
    let _g = tch::no_grad_guard();
    let mut group = c.benchmark_group("ditto");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    let hubert = hubert_large();
    for (label, samples) in [
        ("hubert_large_1s_audio", 16000),
        ("hubert_large_6480_sample_chunk", 6480),
    ] {
        let audio = Tensor::randn([1, samples], (Kind::Float, Device::Cpu)) * 0.1;
        group.bench_function(label, |b| {
            b.iter(|| hubert.last_hidden_state(&hubert.conv_features(&audio)))
        });
    }
    drop(hubert);
    let decoder = lmdm_official();
    let schedule = Schedule::cosine();
    let cond = Tensor::randn(
        [1, decoder.seq_len, decoder.cond_dim],
        (Kind::Float, Device::Cpu),
    );
    let previous = Tensor::randn([1, decoder.motion_dim], (Kind::Float, Device::Cpu));
    for steps in [10, 50] {
        let plan = DdimPlan::new(&schedule, steps);
        let shape = [1, decoder.seq_len, decoder.motion_dim];
        let noise: Vec<Tensor> = (0..plan.noise_count())
            .map(|_| Tensor::randn(shape, (Kind::Float, Device::Cpu)))
            .collect();
        group.bench_function(format!("lmdm_window_80_frames_{steps}_steps"), |b| {
            b.iter(|| {
                let x_t = Tensor::randn(shape, (Kind::Float, Device::Cpu));
                sampler::sample_window(
                    &decoder,
                    &schedule,
                    &plan,
                    &previous,
                    &cond,
                    x_t,
                    &noise,
                    sampler::GUIDANCE,
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, ditto);
criterion_main!(benches);
