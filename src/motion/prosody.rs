//! The voice's prosody for head motion: the fundamental frequency of a frame's audio
//! and the intonation (how far the pitch stands above or below the speaker's own
//! running mean), so that a head can lift with a rising voice.
//!
//! The pitch is found with YIN (A. de Cheveigné and H. Kawahara, "YIN, a fundamental
//! frequency estimator for speech and music", JASA 111(4), 2002): the squared
//! difference of the signal with itself at each lag, normalised by its running mean,
//! the first lag whose value dips below a threshold taken down to its local minimum,
//! refined by a parabola through its neighbours.

use crate::core::SAMPLE_RATE;

/// The pitch range searched, Hz (low male speech to high female and child speech).
const MIN_HZ: f32 = 70.0;
const MAX_HZ: f32 = 400.0;
/// Integration window, samples (30 ms at 16 kHz).
const WINDOW: usize = 480;
/// YIN's absolute threshold on the normalised difference: below it a lag is a period.
const THRESHOLD: f32 = 0.15;
/// Audio a pitch estimate needs: the window and the longest lag after it.
pub const PITCH_SPAN: usize = WINDOW + (SAMPLE_RATE as f32 / MIN_HZ) as usize + 2;

/// The fundamental frequency of `samples` (16 kHz mono) in Hz, from its first
/// [`PITCH_SPAN`] samples; `None` when no period is clear (unvoiced, noise, silence)
/// or when there are fewer samples.
pub fn fundamental_hz(samples: &[f32]) -> Option<f32> {
    let rate = SAMPLE_RATE as f32;
    let max_lag = (rate / MIN_HZ) as usize;
    let min_lag = (rate / MAX_HZ) as usize;
    if samples.len() < PITCH_SPAN {
        return None;
    }
    let energy: f32 = samples[..WINDOW].iter().map(|x| x * x).sum();
    if energy / WINDOW as f32 <= 1e-8 {
        return None;
    }
    // The difference function and its cumulative-mean normalisation.
    let mut normalised = vec![1.0f32; max_lag + 2];
    let mut running = 0.0f32;
    for (lag, value) in normalised.iter_mut().enumerate().skip(1) {
        let difference: f32 = samples[..WINDOW]
            .iter()
            .zip(&samples[lag..lag + WINDOW])
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        running += difference;
        *value = if running > 0.0 {
            difference * lag as f32 / running
        } else {
            1.0
        };
    }
    let mut lag = (min_lag..=max_lag).find(|&lag| normalised[lag] < THRESHOLD)?;
    while lag < max_lag && normalised[lag + 1] < normalised[lag] {
        lag += 1;
    }
    // A parabola through the dip and its neighbours.
    let (a, b, c) = (normalised[lag - 1], normalised[lag], normalised[lag + 1]);
    let bend = a - 2.0 * b + c;
    let offset = if bend > 0.0 {
        (0.5 * (a - c) / bend).clamp(-0.5, 0.5)
    } else {
        0.0
    };
    Some(rate / (lag as f32 + offset))
}

/// How many semitones the voice stands above (below, negative) the speaker's running
/// mean pitch, smoothed; it eases back to 0 between voiced frames.
#[derive(Debug, Clone, Default)]
pub struct Intonation {
    /// The running mean pitch, semitones (12 per octave from 1 Hz).
    mean: Option<f64>,
    value: f64,
}

/// Time constants: the speaker's mean pitch, the intonation's smoothing, its return to
/// 0 when unvoiced, seconds; the largest excursion counted, semitones.
const MEAN_S: f64 = 2.5;
const SMOOTHING_S: f64 = 0.08;
const RELEASE_S: f64 = 0.3;
const MAX_SEMITONES: f64 = 8.0;

impl Intonation {
    /// The intonation after a frame `dt` seconds long whose pitch is `hz` (`None`:
    /// unvoiced).
    pub fn step(&mut self, hz: Option<f32>, dt: f64) -> f64 {
        let ease = |tau: f64| 1.0 - (-dt / tau).exp();
        match hz {
            Some(hz) if hz > 0.0 => {
                let semitones = 12.0 * f64::from(hz).log2();
                let mean = self.mean.get_or_insert(semitones);
                *mean += (semitones - *mean) * ease(MEAN_S);
                let target = (semitones - *mean).clamp(-MAX_SEMITONES, MAX_SEMITONES);
                self.value += (target - self.value) * ease(SMOOTHING_S);
            }
            _ => self.value -= self.value * ease(RELEASE_S),
        }
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voice(hz: f32, samples: usize) -> Vec<f32> {
        // A glottal-like tone: the fundamental and falling harmonics.
        (0..samples)
            .map(|i| {
                let t = i as f32 / SAMPLE_RATE as f32;
                (1..=6)
                    .map(|k| (std::f32::consts::TAU * hz * k as f32 * t).sin() / k as f32)
                    .sum::<f32>()
                    * 0.2
            })
            .collect()
    }

    #[test]
    fn the_pitch_of_a_voice_is_found_and_noise_has_none() {
        for hz in [85.0f32, 120.0, 210.0, 330.0] {
            let found = fundamental_hz(&voice(hz, PITCH_SPAN)).expect("voiced");
            assert!((found / hz - 1.0).abs() < 0.01, "{hz} Hz read as {found}");
        }
        let mut random = crate::core::random::SplitMix64(3);
        let noise: Vec<f32> = (0..PITCH_SPAN)
            .map(|_| random.gaussian() as f32 * 0.1)
            .collect();
        assert_eq!(fundamental_hz(&noise), None);
        assert_eq!(fundamental_hz(&vec![0.0; PITCH_SPAN]), None);
        assert_eq!(fundamental_hz(&voice(120.0, PITCH_SPAN - 1)), None);
    }

    #[test]
    fn intonation_is_the_pitch_against_the_speakers_mean_and_fades_when_unvoiced() {
        let mut intonation = Intonation::default();
        for _ in 0..200 {
            intonation.step(Some(150.0), 0.04);
        }
        assert!(intonation.step(Some(150.0), 0.04).abs() < 0.01);
        // A rise of a fifth (7 semitones) reads as most of it at once.
        let mut risen = 0.0;
        for _ in 0..5 {
            risen = intonation.step(Some(150.0 * 1.4983), 0.04);
        }
        assert!((5.0..7.1).contains(&risen), "{risen}");
        let mut faded = risen;
        for _ in 0..25 {
            faded = intonation.step(None, 0.04);
        }
        assert!(faded.abs() < 0.5, "{faded}");
    }
}
