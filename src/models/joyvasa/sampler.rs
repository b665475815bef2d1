//! The reverse diffusion of JoyVASA's motion generator: the cosine schedule stored in
//! the checkpoint, clean-sample (x0) prediction and DDPM posterior steps, with
//! incremental classifier-free guidance on the audio.
//!
//! With as many sampling steps as the model was trained with, every step is the
//! reference's `t -> t - 1` step on the stored schedule. With fewer, the steps skip
//! (`t -> s`, `s < t - 1`) using the same posterior with the schedule's cumulative
//! products at `t` and `s` (the respacing of improved DDPM), which for `s = t - 1` is the
//! same formula.

use tch::{Kind, Tensor};

use super::denoiser::Denoiser;
use crate::nn::weights::{Weights, WeightsError};

/// The diffusion schedule buffers (`diffusion_sched.*`), index 0 = clean.
pub struct Schedule {
    alphas: Vec<f32>,
    alpha_bars: Vec<f32>,
    /// Posterior standard deviations ("inflexible" sigmas, flexibility 0).
    sigmas: Vec<f32>,
}

/// One reverse step from `t` to `s`: `x_s = c0 x_t + c1 x0 + sigma z`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepCoefficients {
    pub c0: f32,
    pub c1: f32,
    pub sigma: f32,
}

impl Schedule {
    /// Reads the schedule of a model trained with `steps` (at least 1) diffusion steps.
    /// Every entry must be finite, and the alphas and their cumulative products in
    /// `[0, 1]` with `alpha_bars[0] = 1 > alpha_bars[t > 0] > 0`: a damaged table would
    /// otherwise turn every motion into NaN or divide by zero.
    pub fn new(w: &mut Weights, steps: usize) -> Result<Self, WeightsError> {
        let len = steps as i64 + 1;
        let file = w.file().to_path_buf();
        let recording = w.is_recording();
        let mut read = |name: &str| -> Result<Vec<f32>, WeightsError> {
            let key = format!("diffusion_sched.{name}");
            let values = w.take_values(&key, &[len])?;
            let invalid = |detail: String| WeightsError::Invalid {
                file: file.clone(),
                key: key.clone(),
                detail,
            };
            if steps == 0 {
                return Err(invalid(
                    "belongs to a schedule of 0 diffusion steps (n_diff_steps must be at least 1)"
                        .into(),
                ));
            }
            if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
                return Err(invalid(format!("holds {bad}")));
            }
            Ok(values)
        };
        let alphas = read("alphas")?;
        let alpha_bars = read("alpha_bars")?;
        let sigmas = read("sigmas_inflex")?;
        // Read for completeness (the sampler runs with flexibility 0).
        read("betas")?;
        read("sigmas_flex")?;
        let unit = |v: &f32| (0.0..=1.0).contains(v);
        let cumulative_ok = (alpha_bars[0] - 1.0).abs() < 1e-6
            && alpha_bars[1..].iter().all(|&a| a > 0.0 && a < 1.0);
        if !(recording || alphas.iter().all(unit) && cumulative_ok) {
            return Err(WeightsError::Invalid {
                file: w.file().to_path_buf(),
                key: "diffusion_sched.alpha_bars".into(),
                detail: "is not a diffusion schedule (alphas and their products must lie in                          [0, 1], starting at 1)"
                    .into(),
            });
        }
        Ok(Self {
            alphas,
            alpha_bars,
            sigmas,
        })
    }

    /// The number of diffusion steps the model was trained with.
    pub fn steps(&self) -> usize {
        self.alphas.len().saturating_sub(1)
    }

    /// The steps visited by a sampler of `count` steps (clamped to 1..=T), from T down,
    /// evenly spread; the last one steps to 0. With `count` = T: T, T-1, .., 1.
    pub fn timesteps(&self, count: usize) -> Vec<usize> {
        let total = self.steps();
        let count = count.clamp(1, total.max(1));
        let mut steps: Vec<usize> = (1..=count)
            .rev()
            .map(|i| ((i * total) as f64 / count as f64).round() as usize)
            .collect();
        steps.dedup();
        steps
    }

    /// Coefficients of the step from `t` to `s < t`.
    pub fn coefficients(&self, t: usize, s: usize) -> StepCoefficients {
        let abar = self.alpha_bars[t];
        let abar_prev = self.alpha_bars[s];
        // One step: the stored alpha and sigma, as the reference. Several: their
        // equivalents over the skipped span.
        let (alpha, sigma) = if s + 1 == t {
            (self.alphas[t], self.sigmas[t])
        } else {
            let alpha = abar / abar_prev;
            (
                alpha,
                ((1.0 - abar_prev) / (1.0 - abar) * (1.0 - alpha)).sqrt(),
            )
        };
        StepCoefficients {
            c0: (1.0 - abar_prev) * alpha.sqrt() / (1.0 - abar),
            c1: (1.0 - alpha) * abar_prev.sqrt() / (1.0 - abar),
            sigma,
        }
    }
}

/// What a window of motion is generated from.
pub struct WindowInput<'a> {
    /// `(1, L, F)` audio features of the window's frames.
    pub audio: &'a Tensor,
    /// `(1, 1, F)` the "no audio" condition of classifier-free guidance.
    pub null_audio: &'a Tensor,
    /// `(1, L_p, d)` and `(1, L_p, F)`: the previous window's last motions and audio
    /// features (the learnt start values for the first window).
    pub prev_motion: &'a Tensor,
    pub prev_audio: &'a Tensor,
    /// `(1, L, d)` the noise the diffusion starts from.
    pub motion_at_t: &'a Tensor,
}

/// Runs the reverse diffusion for one window: `count` steps, guidance `cfg_scale`
/// (target = null + scale (cond - null)), `noise(t)` giving the `(1, L, d)` noise added
/// on the step from `t` (never asked for on the last step, which adds none). Returns the
/// clean motion `(1, L, d)`.
pub fn sample(
    denoiser: &Denoiser,
    schedule: &Schedule,
    input: &WindowInput<'_>,
    count: usize,
    cfg_scale: f64,
    noise: &mut dyn FnMut(usize) -> Tensor,
) -> Tensor {
    let frames = input.audio.size()[1];
    let device = input.audio.device();
    let null = input
        .null_audio
        .expand([1, frames, input.null_audio.size()[2]], false);
    let audio_in = Tensor::cat(&[&null, input.audio], 0);
    let prev_motion_in = Tensor::cat(&[input.prev_motion, input.prev_motion], 0);
    let prev_audio_in = Tensor::cat(&[input.prev_audio, input.prev_audio], 0);
    let steps = schedule.timesteps(count);
    let mut x = input.motion_at_t.shallow_clone();
    for (i, &t) in steps.iter().enumerate() {
        let s = steps.get(i + 1).copied().unwrap_or(0);
        let z = (s > 0).then(|| noise(t));
        let step_in = Tensor::from_slice(&[t as i64, t as i64]).to_device(device);
        let x_in = Tensor::cat(&[&x, &x], 0);
        let out = denoiser.forward(&x_in, &audio_in, &prev_motion_in, &prev_audio_in, &step_in);
        let len = out.size()[1];
        let tail = out.narrow(1, len - frames, frames);
        let unconditional = tail.narrow(0, 0, 1);
        let conditional = tail.narrow(0, 1, 1);
        let target = &unconditional + (&conditional - &unconditional) * cfg_scale;
        let k = schedule.coefficients(t, s);
        let mut next = &x * f64::from(k.c0) + target * f64::from(k.c1);
        if let Some(z) = z {
            next += z.to_kind(Kind::Float) * f64::from(k.sigma);
        }
        x = next;
    }
    x
}
