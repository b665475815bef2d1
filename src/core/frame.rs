//! Frame size and rate, and the frame clock: which audio samples belong to which video
//! frame, in integers.
//!
//! The rule every motion source, renderer and the element share: audio is 16 kHz mono; frame `n` of a
//! segment covers the samples `[start(n), start(n + 1))` with
//! `start(n) = floor(n * 16000 * fps_d / fps_n)`, and is shown at
//! `first_pts + floor(n * fps_d * 1e9 / fps_n)` nanoseconds. A stream of `S` samples
//! therefore yields exactly `ceil(S * fps_n / (16000 * fps_d))` frames: the last frame
//! may cover a partial frame period of audio (padded with silence), and no frame starts
//! after the audio ends. Everything is computed from counts, never accumulated, so
//! there is no drift over hours of audio.

/// Sample rate the element accepts and every engine works at.
pub const SAMPLE_RATE: u32 = 16_000;

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// Size of the frames to render, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameSize {
    pub width: u32,
    pub height: u32,
}

/// A video frame rate as a positive fraction (frames per second = `num / den`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRate {
    pub num: u32,
    pub den: u32,
}

impl FrameRate {
    /// Returns `None` unless both terms are positive.
    pub fn new(num: i32, den: i32) -> Option<Self> {
        (num > 0 && den > 0).then_some(Self {
            num: num as u32,
            den: den as u32,
        })
    }

    pub fn as_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den)
    }

    /// First audio sample (counted from the segment's first sample) of frame `n`.
    pub fn frame_start_sample(self, n: u64) -> u64 {
        (u128::from(n) * u128::from(SAMPLE_RATE) * u128::from(self.den) / u128::from(self.num))
            as u64
    }

    /// Number of frames that `samples` samples of audio give: `ceil(samples * fps / rate)`.
    pub fn frames_for_samples(self, samples: u64) -> u64 {
        let numerator = u128::from(samples) * u128::from(self.num);
        let denominator = u128::from(SAMPLE_RATE) * u128::from(self.den);
        numerator.div_ceil(denominator) as u64
    }

    /// Presentation offset of frame `n` from the segment's first sample, in nanoseconds.
    pub fn frame_offset_ns(self, n: u64) -> u64 {
        (u128::from(n) * u128::from(self.den) * NANOS_PER_SECOND / u128::from(self.num)) as u64
    }

    /// Length of one frame period in nanoseconds, rounded up.
    pub fn period_ns(self) -> u64 {
        (u128::from(self.den) * NANOS_PER_SECOND).div_ceil(u128::from(self.num)) as u64
    }
}

/// Sample index of a time offset (nanoseconds from the segment's first sample), rounded
/// to the nearest sample.
pub fn samples_for_ns(ns: u64) -> u64 {
    ((u128::from(ns) * u128::from(SAMPLE_RATE) + NANOS_PER_SECOND / 2) / NANOS_PER_SECOND) as u64
}

/// Duration of `samples` samples in nanoseconds, rounded down.
pub fn ns_for_samples(samples: u64) -> u64 {
    (u128::from(samples) * NANOS_PER_SECOND / u128::from(SAMPLE_RATE)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_count_is_ceil_of_duration_times_rate() {
        let fps25 = FrameRate::new(25, 1).unwrap();
        let fps30 = FrameRate::new(30, 1).unwrap();
        let ntsc = FrameRate::new(30000, 1001).unwrap();
        assert_eq!(fps25.frames_for_samples(16_000), 25);
        assert_eq!(fps25.frames_for_samples(16_001), 26);
        assert_eq!(fps25.frames_for_samples(52_800), 83); // 3.3 s -> 82.5 -> 83
        assert_eq!(fps30.frames_for_samples(52_800), 99); // 3.3 s -> 99 exactly
        assert_eq!(fps30.frames_for_samples(0), 0);
        assert_eq!(fps30.frames_for_samples(1), 1);
        // 1 hour of NTSC: 107892.1 frames -> 107893
        assert_eq!(ntsc.frames_for_samples(3600 * 16_000), 107_893);
    }

    #[test]
    fn frames_tile_the_audio_without_gaps() {
        for fps in [(25, 1), (30, 1), (30000, 1001), (24, 1), (120, 1), (1, 1)] {
            let rate = FrameRate::new(fps.0, fps.1).unwrap();
            let total = 10 * 16_000 + 7;
            let frames = rate.frames_for_samples(total);
            assert_eq!(rate.frame_start_sample(0), 0);
            for n in 0..frames {
                assert!(
                    rate.frame_start_sample(n) < total,
                    "{fps:?} frame {n} starts after audio"
                );
                assert!(rate.frame_start_sample(n + 1) > rate.frame_start_sample(n));
            }
            assert!(rate.frame_start_sample(frames) >= total);
        }
    }

    #[test]
    fn offsets_do_not_drift() {
        let ntsc = FrameRate::new(30000, 1001).unwrap();
        // After 24 h the offset is exact to the nanosecond.
        let n = 24 * 3600 * 30000 / 1001;
        assert_eq!(ntsc.frame_offset_ns(n), n * 1001 * 1_000_000_000 / 30000);
        assert_eq!(FrameRate::new(25, 1).unwrap().period_ns(), 40_000_000);
        assert_eq!(ntsc.period_ns(), 33_366_667);
        assert_eq!(samples_for_ns(1_000_000_000), 16_000);
        assert_eq!(samples_for_ns(31_249), 0);
        assert_eq!(samples_for_ns(31_250), 1);
        assert_eq!(ns_for_samples(16_000), 1_000_000_000);
    }
}
