//! The audio a motion source hears: 16 kHz mono samples of a segment, kept by sample
//! number, and the window of them around one video frame. One builder serves the
//! element, the offline driver, the tests and the benchmarks, so that every caller
//! hands the motion sources exactly the same windows.

use std::collections::VecDeque;

use super::frame::FrameRate;

/// The audio a motion source sees for one frame: 16 kHz mono samples in `[-1, 1]`, from
/// some history before the frame to some lookahead after it. Where there is no audio
/// (before the stream, after its end, in gaps) the samples are zero.
#[derive(Debug, Clone, Copy)]
pub struct AudioWindow<'a> {
    pub samples: &'a [f32],
    /// Index in `samples` of the frame's first sample.
    pub frame_start: usize,
    /// Number of samples the frame covers (one frame period).
    pub frame_len: usize,
    /// Frame number in the current segment.
    pub frame_index: u64,
    /// Sample number of the frame's first sample, counted from the segment's first.
    pub frame_position: u64,
    pub rate: FrameRate,
    /// How many of `samples`, from the first, had arrived when the window was made; the
    /// zeros after them stand for audio still to come (live: a frame drawn before its
    /// lookahead came), not for silence, and a source that keeps its own copy of the
    /// stream does not keep them.
    pub heard: usize,
    /// No audio will follow `heard` in this stream (EOS, a new segment next, a clip in
    /// memory): the zeros after it are the end, not audio still to come.
    pub ended: bool,
    /// The stream is live: the frame is due on the clock and cannot wait for audio.
    pub live: bool,
}

impl AudioWindow<'_> {
    /// The samples of the frame itself.
    pub fn frame_samples(&self) -> &[f32] {
        &self.samples[self.frame_start..self.frame_start + self.frame_len]
    }

    /// Samples available after the frame's end.
    pub fn lookahead(&self) -> usize {
        self.samples.len() - self.frame_start - self.frame_len
    }

    /// Sample number (from the segment's first) of `samples[0]`; negative when the
    /// window reaches back before the segment.
    pub fn first_position(&self) -> i64 {
        self.frame_position as i64 - self.frame_start as i64
    }

    /// Duration of the frame in seconds.
    pub fn frame_seconds(&self) -> f64 {
        self.frame_len as f64 / f64::from(super::frame::SAMPLE_RATE)
    }
}

/// Audio of a segment by sample number from its first sample; only what later frames
/// still need is kept.
#[derive(Debug, Default, Clone)]
pub struct SampleStore {
    first: u64,
    samples: VecDeque<f32>,
}

impl SampleStore {
    /// A whole clip, from sample 0.
    pub fn from_clip(samples: &[f32]) -> Self {
        Self {
            first: 0,
            samples: samples.iter().copied().collect(),
        }
    }

    /// One past the last sample received.
    pub fn received(&self) -> u64 {
        self.first + self.samples.len() as u64
    }

    /// The first sample still kept.
    pub fn first_kept(&self) -> u64 {
        self.first
    }

    pub fn extend(&mut self, samples: &[f32]) {
        self.samples.extend(samples.iter().copied());
    }

    pub fn extend_silence(&mut self, count: u64) {
        self.samples
            .extend(std::iter::repeat_n(0.0, count as usize));
    }

    /// Forgets the samples before `index`.
    pub fn discard_before(&mut self, index: u64) {
        let drop = index
            .saturating_sub(self.first)
            .min(self.samples.len() as u64);
        self.samples.drain(..drop as usize);
        self.first += drop;
    }

    /// Sample `index` (a sample number), zero where there is no audio.
    pub fn sample(&self, index: i64) -> f32 {
        if index < self.first as i64 || index >= self.received() as i64 {
            0.0
        } else {
            self.samples[(index - self.first as i64) as usize]
        }
    }

    /// `out` = samples `[start, start + len)`, zero where there is no audio.
    pub fn copy_range(&self, start: i64, len: usize, out: &mut Vec<f32>) {
        out.clear();
        out.resize(len, 0.0);
        let first = self.first as i64;
        let from = start.max(first);
        let to = (start + len as i64).min(self.received() as i64);
        for index in from..to {
            out[(index - start) as usize] = self.samples[(index - first) as usize];
        }
    }

    /// Takes the samples of `window` after those already here (a motion source that
    /// keeps its own history of the stream). Positions before the store's first sample
    /// and gaps before the window are zeros.
    pub fn hear(&mut self, window: &AudioWindow<'_>) {
        let window_start = window.first_position();
        let end = window_start + window.heard as i64;
        if self.samples.is_empty() && (self.first as i64) < window_start {
            self.first = window_start.min(window.frame_position as i64).max(0) as u64;
        }
        while (self.received() as i64) < end {
            let at = self.received() as i64;
            self.samples.push_back(if at >= window_start {
                window.samples[(at - window_start) as usize]
            } else {
                0.0
            });
        }
    }

    pub fn clear(&mut self) {
        self.first = 0;
        self.samples.clear();
    }

    /// Forgets what was received from `index` on (audio cut short: barge-in). Nothing
    /// changes when less has arrived.
    pub fn cut_at(&mut self, index: u64) {
        let keep = index
            .saturating_sub(self.first)
            .min(self.samples.len() as u64);
        self.samples.truncate(keep as usize);
    }

    /// Turns every sample kept into silence (the audio before a cut is no longer heard).
    pub fn silence_all(&mut self) {
        self.samples.iter_mut().for_each(|sample| *sample = 0.0);
    }

    /// The window of `frame`: `history` samples before it to `lookahead` after it,
    /// copied into `buffer`.
    pub fn window<'b>(
        &self,
        frame: FrameSpan,
        history: usize,
        lookahead: usize,
        buffer: &'b mut Vec<f32>,
    ) -> AudioWindow<'b> {
        self.copy_range(
            frame.start as i64 - history as i64,
            history + frame.len() + lookahead,
            buffer,
        );
        let start = frame.start as i64 - history as i64;
        let heard = (self.received() as i64 - start).clamp(0, buffer.len() as i64) as usize;
        AudioWindow {
            samples: buffer,
            frame_start: history,
            frame_len: frame.len(),
            frame_index: frame.index,
            frame_position: frame.start,
            rate: frame.rate,
            heard,
            ended: false,
            live: false,
        }
    }
}

/// Which samples one frame covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSpan {
    /// Frame number in the segment.
    pub index: u64,
    /// First sample and one past the last, counted from the segment's first sample.
    pub start: u64,
    pub end: u64,
    pub rate: FrameRate,
}

impl FrameSpan {
    /// Frame `n` of a segment whose frames all run at `rate` from sample 0.
    pub fn of(rate: FrameRate, n: u64) -> Self {
        Self {
            index: n,
            start: rate.frame_start_sample(n),
            end: rate.frame_start_sample(n + 1),
            rate,
        }
    }

    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Root-mean-square level of `samples` in dB relative to full scale (-120 for silence).
pub fn level_db(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return -120.0;
    }
    let mean_square = samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32;
    (10.0 * mean_square.max(1e-12).log10()).max(-120.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate() -> FrameRate {
        FrameRate::new(25, 1).unwrap()
    }

    #[test]
    fn windows_are_zero_outside_the_audio_and_exact_inside() {
        let clip: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        let store = SampleStore::from_clip(&clip);
        let mut buffer = Vec::new();
        let frame = FrameSpan::of(rate(), 0);
        let window = store.window(frame, 100, 50, &mut buffer);
        assert_eq!(window.samples.len(), 100 + 640 + 50);
        assert!(window.samples[..100].iter().all(|&s| s == 0.0));
        assert_eq!(window.frame_samples()[0], 0.0);
        assert_eq!(window.frame_samples()[639], 639.0);
        assert_eq!(window.first_position(), -100);
        let last = FrameSpan::of(rate(), 1);
        let window = store.window(last, 0, 1000, &mut buffer);
        assert_eq!(window.frame_samples()[0], 640.0);
        assert_eq!(window.samples[359], 999.0);
        assert!(window.samples[360..].iter().all(|&s| s == 0.0));
    }

    #[test]
    fn discarding_keeps_positions_and_hearing_continues_a_stream() {
        let mut store = SampleStore::default();
        store.extend(&[1.0; 700]);
        store.extend_silence(100);
        store.discard_before(640);
        assert_eq!(store.first_kept(), 640);
        assert_eq!(store.received(), 800);
        assert_eq!(store.sample(650), 1.0);
        assert_eq!(store.sample(750), 0.0);
        assert_eq!(store.sample(10), 0.0);

        // A source's own history, rebuilt from overlapping windows.
        let clip: Vec<f32> = (0..3000).map(|i| i as f32).collect();
        let source = SampleStore::from_clip(&clip);
        let mut heard = SampleStore::default();
        let mut buffer = Vec::new();
        for n in 0..4 {
            heard.hear(&source.window(FrameSpan::of(rate(), n), 0, 100, &mut buffer));
        }
        assert_eq!(heard.received(), 4 * 640 + 100);
        assert!((0..2660).all(|i| heard.sample(i) == i as f32));

        // Live: a window made before its lookahead arrived; what comes later is heard.
        let mut live = SampleStore::default();
        live.extend(&clip[..700]);
        let mut copy = SampleStore::default();
        let window = live.window(FrameSpan::of(rate(), 0), 0, 320, &mut buffer);
        assert_eq!((window.samples.len(), window.heard), (960, 700));
        copy.hear(&window);
        assert_eq!(copy.received(), 700);
        live.extend(&clip[700..2000]);
        copy.hear(&live.window(FrameSpan::of(rate(), 1), 0, 320, &mut buffer));
        assert!((0..1600).all(|i| copy.sample(i) == i as f32));
    }

    #[test]
    fn level_of_silence_and_of_full_scale() {
        assert_eq!(level_db(&[]), -120.0);
        assert_eq!(level_db(&[0.0; 10]), -120.0);
        assert!(level_db(&[1.0; 10]).abs() < 1e-6);
    }
}
