//! Log-mel features of 16 kHz speech: 25 ms Hann windows, 40 mel bands from 60 Hz to
//! 7.6 kHz, natural log of the band power. The same function serves the engine (a few
//! dozen frames around each video frame) and training (whole utterances), so the model
//! sees at run time exactly what it was trained on.

use std::sync::OnceLock;

use tch::{Device, Kind, Tensor};

use crate::core::SAMPLE_RATE;

pub const MEL_BANDS: usize = 40;
/// Analysis window (25 ms) and hop between feature frames (10 ms), in samples.
pub const WINDOW: usize = 400;
pub const HOP: usize = 160;
const FFT: usize = 512;
const MEL_LOW_HZ: f64 = 60.0;
const MEL_HIGH_HZ: f64 = 7600.0;
/// Added to band powers before the log: about -80 dB relative to a full-scale sine, the
/// floor of a quiet room recorded at 16 bits.
pub const POWER_FLOOR: f64 = 1e-6;

fn hz_to_mel(hz: f64) -> f64 {
    2595.0 * (1.0 + hz / 700.0).log10()
}

fn mel_to_hz(mel: f64) -> f64 {
    700.0 * (10f64.powf(mel / 2595.0) - 1.0)
}

/// Triangular mel filters `(FFT / 2 + 1, MEL_BANDS)`, HTK-style.
fn mel_filters() -> &'static [f32] {
    static FILTERS: OnceLock<Vec<f32>> = OnceLock::new();
    FILTERS.get_or_init(|| {
        let bins = FFT / 2 + 1;
        let (low, high) = (hz_to_mel(MEL_LOW_HZ), hz_to_mel(MEL_HIGH_HZ));
        let edges: Vec<f64> = (0..MEL_BANDS + 2)
            .map(|i| mel_to_hz(low + (high - low) * i as f64 / (MEL_BANDS + 1) as f64))
            .collect();
        let mut filters = vec![0f32; bins * MEL_BANDS];
        for band in 0..MEL_BANDS {
            let (left, centre, right) = (edges[band], edges[band + 1], edges[band + 2]);
            for bin in 0..bins {
                let hz = bin as f64 * f64::from(SAMPLE_RATE) / FFT as f64;
                let weight = if hz > left && hz <= centre {
                    (hz - left) / (centre - left)
                } else if hz > centre && hz < right {
                    (right - hz) / (right - centre)
                } else {
                    0.0
                };
                filters[bin * MEL_BANDS + band] = weight as f32;
            }
        }
        filters
    })
}

fn hann() -> &'static [f32] {
    static WINDOW_SHAPE: OnceLock<Vec<f32>> = OnceLock::new();
    WINDOW_SHAPE.get_or_init(|| {
        (0..WINDOW)
            .map(|i| {
                (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / WINDOW as f64).cos()) as f32
            })
            .collect()
    })
}

/// Log-mel frames centred on `centres` (sample indices into `samples`; windows reaching
/// outside it see zeros): `(centres.len(), MEL_BANDS)` on `device`.
pub fn log_mel(samples: &[f32], centres: &[i64], device: Device) -> Tensor {
    let _no_grad = tch::no_grad_guard();
    let half = (WINDOW / 2) as i64;
    let window = hann();
    let mut frames = vec![0f32; centres.len() * WINDOW];
    for (frame, &centre) in frames.chunks_exact_mut(WINDOW).zip(centres) {
        let start = centre - half;
        for (i, value) in frame.iter_mut().enumerate() {
            let index = start + i as i64;
            if index >= 0 && (index as usize) < samples.len() {
                *value = samples[index as usize] * window[i];
            }
        }
    }
    let frames = Tensor::from_slice(&frames)
        .view([centres.len() as i64, WINDOW as i64])
        .to_device(device);
    let power = frames.fft_rfft(FFT as i64, -1, "backward").abs().square();
    let filters = Tensor::from_slice(mel_filters())
        .view([(FFT / 2 + 1) as i64, MEL_BANDS as i64])
        .to_device(device);
    (power.matmul(&filters) + POWER_FLOOR)
        .log()
        .to_kind(Kind::Float)
}

/// Runs one small FFT before any other, once per process. libtorch 2.11 registers some
/// operator schemas lazily on the first FFT; two threads making their first FFT at the
/// same moment (two elements starting together) once failed an internal assertion
/// ("Tried to access the schema for aten::as_strided_ which doesn't have a schema
/// registered yet") in a test run.
pub fn first_fft_alone() {
    static FIRST: std::sync::Once = std::sync::Once::new();
    FIRST.call_once(|| {
        let _ = Tensor::zeros([2, FFT as i64], (Kind::Float, Device::Cpu))
            .fft_rfft(FFT as i64, -1, "backward");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_lights_the_band_that_contains_it() {
        let tone: Vec<f32> = (0..1600)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16000.0).sin() * 0.5)
            .collect();
        let mel = log_mel(&tone, &[800], Device::Cpu);
        assert_eq!(mel.size(), [1, MEL_BANDS as i64]);
        let peak = mel.argmax(1, false).int64_value(&[0]);
        let peak_hz = mel_to_hz(
            hz_to_mel(MEL_LOW_HZ)
                + (hz_to_mel(MEL_HIGH_HZ) - hz_to_mel(MEL_LOW_HZ)) * (peak + 1) as f64
                    / (MEL_BANDS + 1) as f64,
        );
        assert!(
            (peak_hz - 1000.0).abs() < 150.0,
            "peak band centre {peak_hz}"
        );
    }

    #[test]
    fn silence_sits_at_the_floor_and_edges_read_as_zeros() {
        let silence = vec![0f32; 800];
        let mel = log_mel(&silence, &[-1000, 0, 400, 5000], Device::Cpu);
        let floor = POWER_FLOOR.ln();
        assert!((mel.max().double_value(&[]) - floor).abs() < 1e-3);
    }

    #[test]
    fn frames_depend_only_on_the_samples_around_their_centre() {
        let signal: Vec<f32> = (0..4000)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let whole = log_mel(&signal, &[2000], Device::Cpu);
        let part = log_mel(&signal[1000..3000], &[1000], Device::Cpu);
        assert!(whole.allclose(&part, 1e-5, 1e-5, false));
    }
}
