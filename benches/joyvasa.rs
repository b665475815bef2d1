//! JoyVASA's motion generator on this machine's CPU (and on CUDA when present), at the
//! official layout with random weights (timing does not depend on the values):
//! HuBERT-base on one 4 s window, and the sampler (denoiser with guidance, batch of 2)
//! for one window of 100 frames at 50, 25 and 10 steps. Divide by 4 for the time per
//! second of audio. The official checkpoint's `feature_dim` and step count are not
//! known here: 256 and 500 trained steps are assumed (the denoiser's cost grows with
//! `feature_dim`; the step count only bounds the sampling steps).
//! `make bench`; numbers in the README. `VASAFACEGEN_BENCH_DEVICE=cuda` picks the GPU.

use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use gstvasafacegen::models::joyvasa::{
    HubertConfig, JoyVasaConfig, MotionGenerator, MotionTemplate, PositionalEncoding,
};
use gstvasafacegen::nn::Weights;
use tch::{Device, Kind, Tensor};

const TRAINED_STEPS: usize = 500;

fn device() -> Device {
    match std::env::var("VASAFACEGEN_BENCH_DEVICE").as_deref() {
        Ok("cuda") => Device::Cuda(0),
        _ => Device::Cpu,
    }
}

fn sync(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

/// A generator of the official layout with random weights and a valid schedule.
fn random_generator(device: Device) -> MotionGenerator {
    let config = JoyVasaConfig {
        motion_feat_dim: 70,
        n_motions: 100,
        n_prev_motions: 10,
        feature_dim: 256,
        n_diff_steps: TRAINED_STEPS,
        fps: 25,
        positional_encoding: PositionalEncoding::Bug,
        hubert: HubertConfig::official(),
    };
    tch::manual_seed(0);
    let betas = Tensor::linspace(1e-4, 0.02, TRAINED_STEPS as i64, (Kind::Float, Device::Cpu));
    let betas = Tensor::cat(&[Tensor::zeros([1], (Kind::Float, Device::Cpu)), betas], 0);
    let alphas: Tensor = 1.0 - &betas;
    let alpha_bars = alphas.cumprod(0, Kind::Float);
    let tensors = MotionGenerator::parameter_list(&config, 8)
        .unwrap()
        .into_iter()
        .filter(|(_, shape)| !shape.is_empty())
        .map(|(key, shape)| {
            let tensor = match key.as_str() {
                "denoising_net.alignment_mask" => {
                    Tensor::eye(shape[0], (Kind::Bool, Device::Cpu)).logical_not()
                }
                "diffusion_sched.betas" | "diffusion_sched.sigmas_flex" => betas.copy(),
                "diffusion_sched.sigmas_inflex" => betas.sqrt(),
                "diffusion_sched.alphas" => alphas.copy(),
                "diffusion_sched.alpha_bars" => alpha_bars.copy(),
                _ if key.ends_with("norm.weight") || key.ends_with("layer_norm.weight") => {
                    Tensor::ones(shape.as_slice(), (Kind::Float, Device::Cpu))
                }
                _ => Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu)) * 0.02,
            };
            (key, tensor)
        });
    let mut w = Weights::from_tensors(Path::new("random"), tensors, device);
    MotionGenerator::new(&mut w, &config, MotionTemplate::identity()).unwrap()
}

fn joyvasa(c: &mut Criterion) {
    let device = device();
    let generator = random_generator(device);
    let _no_grad = tch::no_grad_guard();
    let label = if device == Device::Cpu { "cpu" } else { "cuda" };
    let mut group = c.benchmark_group(format!("joyvasa_official_{label}"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.warm_up_time(Duration::from_secs(2));

    let samples = generator.config.window_samples();
    let audio = Tensor::randn([1, samples], (Kind::Float, device)) * 0.1;
    group.bench_function("hubert_window_4s", |b| {
        b.iter(|| {
            let out = generator.audio_features(&audio).features;
            sync(device);
            out
        })
    });

    let features = generator.audio_features(&audio).features;
    let shape = [1, 100, 70];
    let motion_at_t = Tensor::randn(shape, (Kind::Float, device));
    let noise = Tensor::randn(shape, (Kind::Float, device));
    for steps in [50, 25, 10] {
        group.bench_function(format!("sampler_window_4s_{steps}_steps"), |b| {
            b.iter(|| {
                let out = generator.sample_window(
                    &features,
                    generator.start_context(),
                    &motion_at_t,
                    steps,
                    2.8,
                    &mut |_| noise.shallow_clone(),
                );
                sync(device);
                out
            })
        });
    }
    group.finish();
}

criterion_group!(benches, joyvasa);
criterion_main!(benches);
