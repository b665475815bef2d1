//! LMDM's diffusion: the cosine schedule of 1000 steps, DDIM (eta 1) over a subset of
//! them with classifier-free guidance, and Ditto's windows of 80 frames (the next
//! window's previous frame taken from the result, a linear cross-fade over the overlap,
//! a 3-frame mean over the pose values). Scalars are computed in float32 with the
//! reference's formulas and order (ditto-talkinghead LMDM.py, audio2motion.py).

use tch::{Kind, Tensor};

use super::lmdm::MotionDecoder;

/// Diffusion steps the model was trained with.
pub const TRAINING_STEPS: usize = 1000;
const COSINE_S: f64 = 8e-3;
/// The reference's guidance weight.
pub const GUIDANCE: f64 = 2.0;
/// Values of a motion frame smoothed across frames: scale, pose logits, translation
/// (the expression is not).
pub const SMOOTHED_VALUES: i64 = 202;

/// The cumulative products of the noise schedule and what the predictions need.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub alphas_cumprod: Vec<f32>,
    sqrt_recip_one_minus: Vec<f32>,
    sqrt_recip_minus_one: Vec<f32>,
}

impl Schedule {
    pub fn cosine() -> Self {
        let n = TRAINING_STEPS;
        let f: Vec<f64> = (0..=n)
            .map(|i| {
                let t = i as f64 / n as f64 + COSINE_S;
                (t / (1.0 + COSINE_S) * std::f64::consts::FRAC_PI_2)
                    .cos()
                    .powi(2)
            })
            .collect();
        let f: Vec<f64> = f.iter().map(|v| v / f[0]).collect();
        let mut alphas_cumprod = Vec::with_capacity(n);
        let mut product = 1.0f32;
        for i in 0..n {
            let beta = (1.0 - f[i + 1] / f[i]).clamp(0.0, 0.999) as f32;
            product *= 1.0 - beta;
            alphas_cumprod.push(product);
        }
        Self {
            sqrt_recip_one_minus: alphas_cumprod
                .iter()
                .map(|a| (1.0 / (1.0 - a)).sqrt())
                .collect(),
            sqrt_recip_minus_one: alphas_cumprod
                .iter()
                .map(|a| (1.0 / a - 1.0).sqrt())
                .collect(),
            alphas_cumprod,
        }
    }

    /// The noise implied by `x_t` at `time` and a predicted clean `x0`.
    pub fn noise_from_start(&self, x_t: &Tensor, time: usize, x0: &Tensor) -> Tensor {
        x_t * f64::from(self.sqrt_recip_one_minus[time])
            - x0 / f64::from(self.sqrt_recip_minus_one[time])
    }
}

/// The DDIM steps for a number of sampling steps.
#[derive(Debug, Clone)]
pub struct DdimPlan {
    /// (time, next time) from the last training step down; the last pair's next is -1.
    pub pairs: Vec<(i64, i64)>,
    pub alpha_next_sqrt: Vec<f32>,
    pub sigma: Vec<f32>,
    pub c: Vec<f32>,
}

/// torch.linspace in float32 (each half computed from its own end, as torch does).
fn linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| {
            if i < halfway {
                start + step * i as f32
            } else {
                end - step * (steps - i - 1) as f32
            }
        })
        .collect()
}

impl DdimPlan {
    /// `steps` sampling steps (1..=1000).
    pub fn new(schedule: &Schedule, steps: usize) -> Self {
        let steps = steps.clamp(1, TRAINING_STEPS);
        let mut times: Vec<i64> = linspace_f32(-1.0, (TRAINING_STEPS - 1) as f32, steps + 1)
            .into_iter()
            .map(|v| v as i64) // truncation toward zero, as .int()
            .collect();
        times.reverse();
        let pairs: Vec<(i64, i64)> = times.windows(2).map(|w| (w[0], w[1])).collect();
        let (mut alpha_next_sqrt, mut sigma, mut c) = (Vec::new(), Vec::new(), Vec::new());
        for &(time, next) in &pairs {
            if next < 0 {
                continue;
            }
            let alpha = schedule.alphas_cumprod[time as usize];
            let alpha_next = schedule.alphas_cumprod[next as usize];
            let s = ((1.0 - alpha / alpha_next) * (1.0 - alpha_next) / (1.0 - alpha)).sqrt();
            alpha_next_sqrt.push(alpha_next.sqrt());
            c.push((1.0 - alpha_next - s * s).sqrt());
            sigma.push(s);
        }
        Self {
            pairs,
            alpha_next_sqrt,
            sigma,
            c,
        }
    }

    /// Noise tensors a run needs (one per pair but the last), drawn once per run of
    /// windows and reused by each.
    pub fn noise_count(&self) -> usize {
        self.alpha_next_sqrt.len()
    }
}

/// One prediction guided by `guidance` (the reference: [`GUIDANCE`]): (predicted noise,
/// predicted clean motion).
pub fn predict(
    decoder: &MotionDecoder,
    schedule: &Schedule,
    x: &Tensor,
    previous: &Tensor,
    cond: &Tensor,
    time: i64,
    guidance: f64,
) -> (Tensor, Tensor) {
    let times = Tensor::from_slice(&[time]).to_device(x.device());
    let x_start = decoder.guided(x, previous, cond, &times, guidance);
    let noise = schedule.noise_from_start(x, time as usize, &x_start);
    (noise, x_start)
}

/// One window: DDIM from `x_t` (`(1, frames, motion)` noise) through `plan`, with the
/// run's per-step `noise`, guided by `guidance`.
#[allow(clippy::too_many_arguments)]
pub fn sample_window(
    decoder: &MotionDecoder,
    schedule: &Schedule,
    plan: &DdimPlan,
    previous: &Tensor,
    cond: &Tensor,
    x_t: Tensor,
    noise: &[Tensor],
    guidance: f64,
) -> Tensor {
    let _no_grad = tch::no_grad_guard();
    let mut x = x_t;
    let mut i = 0;
    for &(time, next) in &plan.pairs {
        let (pred_noise, x_start) = predict(decoder, schedule, &x, previous, cond, time, guidance);
        if next < 0 {
            x = x_start;
            continue;
        }
        x = x_start * f64::from(plan.alpha_next_sqrt[i])
            + pred_noise * f64::from(plan.c[i])
            + &noise[i] * f64::from(plan.sigma[i]);
        i += 1;
    }
    x
}

/// Ditto's joining of windows (offline: the fuse spans the whole overlap).
#[derive(Debug, Clone, Copy)]
pub struct Windows {
    pub frames: i64,
    pub overlap: i64,
    pub fuse: i64,
    pub smooth: i64,
}

impl Windows {
    pub fn offline(frames: i64, overlap: i64) -> Self {
        Self {
            frames,
            overlap,
            fuse: overlap,
            smooth: 3,
        }
    }

    /// New frames each window adds.
    pub fn step(&self) -> i64 {
        self.frames - self.overlap
    }

    /// A k-frame mean of the smoothed values over frames `start..end` of `(1, n, motion)`
    /// (means from an unmodified copy, windows cut at the ends).
    pub fn smooth(&self, seq: &Tensor, start: i64, end: i64) -> Tensor {
        if self.smooth <= 1 {
            return seq.shallow_clone();
        }
        let n = seq.size()[1];
        let half = self.smooth / 2;
        let out = seq.copy();
        for i in start.max(0)..end.min(n) {
            let (s, e) = ((i - half).max(0), (i + half + 1).min(n));
            let mean = seq
                .narrow(1, s, e - s)
                .narrow(2, 0, SMOOTHED_VALUES)
                .mean_dim(1, false, Kind::Float);
            out.narrow(1, i, 1)
                .narrow(2, 0, SMOOTHED_VALUES)
                .copy_(&mean.unsqueeze(1));
        }
        out
    }

    /// The result so far with window `predicted` added: the first window is smoothed
    /// whole; later ones are cross-faded over the fuse, appended and smoothed there.
    pub fn join(&self, result: Option<&Tensor>, predicted: &Tensor) -> Tensor {
        let Some(result) = result else {
            return self.smooth(predicted, 0, predicted.size()[1]);
        };
        let len = result.size()[1];
        let from_new = self.frames - self.step() - self.fuse;
        let alpha = (Tensor::arange(self.fuse, (Kind::Float, predicted.device()))
            / self.fuse as f64)
            .view([1, -1, 1]);
        let old = result.narrow(1, len - self.fuse, self.fuse);
        let new = predicted.narrow(1, from_new, self.fuse);
        let fused = &old * (1.0f64 - &alpha) + &new * &alpha;
        let kept = result.narrow(1, 0, len - self.fuse);
        let appended =
            predicted.narrow(1, from_new + self.fuse, self.frames - from_new - self.fuse);
        let joined = Tensor::cat(&[&kept, &fused, &appended], 1);
        let n = joined.size()[1];
        self.smooth(&joined, n - self.step() - self.fuse, n - self.step() + 1)
    }

    /// The previous-frame condition of the next window: the frame just before the
    /// overlap's start.
    pub fn next_previous(&self, result: &Tensor) -> Tensor {
        let n = result.size()[1];
        result.select(1, n - self.overlap - 1)
    }
}
