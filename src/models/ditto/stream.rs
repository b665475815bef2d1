//! Ditto's motion generated window by window as audio features arrive, offline or
//! online, as its two pipelines do (ditto-talkinghead stream_pipeline_offline.py and
//! stream_pipeline_online.py), on one frame numbering.
//!
//! Buffer row `b` holds the features of frame `b - prefix`: online, `prefix` rows of
//! HuBERT's features of silence come first (the reference's `cond_idx_start`); offline
//! there are none. Window `k` covers rows `k x step .. k x step + frames`; its motion is
//! joined to the result so far (`Windows::join`). A result row is final once no later
//! window can change it: it lies before the last `fuse` rows, or the stream has ended
//! and its last window is in. Offline, every row is smoothed once more over its
//! neighbours (3 frames, the sequence cut at its end), as the reference's last pass
//! does; online rows are taken as they are.
//!
//! Nothing here samples: the caller runs the denoiser on [`MotionStream::window_features`]
//! and hands the window back with [`MotionStream::add_window`].

use tch::{Kind, Tensor};

use super::sampler::{SMOOTHED_VALUES, Windows};

/// Whether the stream is generated as Ditto's offline or online pipeline does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamMode {
    Offline,
    Online,
}

pub struct MotionStream {
    mode: StreamMode,
    windows: Windows,
    prefix: i64,
    /// Feature rows from buffer row `features_first` on.
    features: Vec<Tensor>,
    features_first: i64,
    /// Rows pushed so far (buffer rows).
    features_end: i64,
    /// Frames in the stream, once it has ended.
    total: Option<i64>,
    /// Result rows (each `(motion)`) from buffer row `result_first` on.
    result: Vec<Tensor>,
    result_first: i64,
    windows_done: i64,
    /// The previous-frame condition of the next window `(1, motion)`.
    previous: Tensor,
}

impl MotionStream {
    /// A stream of windows of `frames` overlapping by `overlap`, whose first window is
    /// conditioned on `source_row` (`(motion)`, the portrait's own motion). `silence`
    /// is the feature row sequence used for the online prefix (cycled).
    pub fn new(
        mode: StreamMode,
        frames: i64,
        overlap: i64,
        source_row: &Tensor,
        silence: &Tensor,
    ) -> Self {
        let step = frames - overlap;
        let (windows, prefix) = match mode {
            StreamMode::Offline => (Windows::offline(frames, overlap), 0),
            StreamMode::Online => (
                Windows {
                    fuse: overlap.min(step),
                    ..Windows::offline(frames, overlap)
                },
                overlap,
            ),
        };
        let cycle = silence.size()[0].max(1);
        let features: Vec<Tensor> = (0..prefix).map(|i| silence.get(i % cycle)).collect();
        Self {
            mode,
            windows,
            prefix,
            features,
            features_first: 0,
            features_end: prefix,
            total: None,
            result: Vec::new(),
            result_first: 0,
            windows_done: 0,
            previous: source_row.view([1, -1]),
        }
    }

    pub fn mode(&self) -> StreamMode {
        self.mode
    }

    pub fn windows(&self) -> &Windows {
        &self.windows
    }

    /// Frames (from 0) whose features are in.
    pub fn frames_heard(&self) -> i64 {
        self.features_end - self.prefix
    }

    /// Appends feature rows `(n, features)` for the next frames.
    pub fn push_features(&mut self, rows: &Tensor) {
        for i in 0..rows.size()[0] {
            self.features.push(rows.get(i));
        }
        self.features_end += rows.size()[0];
    }

    /// No more features come: the stream has `frames` frames (at most those pushed).
    pub fn end(&mut self, frames: i64) {
        self.total = Some(frames.clamp(0, self.frames_heard()));
    }

    pub fn ended(&self) -> bool {
        self.total.is_some()
    }

    fn window_start(&self) -> i64 {
        self.windows_done * self.windows.step()
    }

    /// Whether another window is still to come (the stream has not ended, or frames
    /// after the last window's start are not covered).
    pub fn wants_window(&self) -> bool {
        match self.total {
            None => true,
            Some(total) => self.window_start() < total + self.prefix,
        }
    }

    /// Whether the next window's features are all in (or the stream ended before them).
    pub fn window_ready(&self) -> bool {
        self.wants_window()
            && (self.ended() || self.features_end >= self.window_start() + self.windows.frames)
    }

    /// The first frame a window still to come reads: features of earlier frames are
    /// never used again (their windows were made, with silence where they were missing).
    pub fn first_frame_still_read(&self) -> i64 {
        self.window_start() - self.prefix
    }

    /// Frames the next window needs heard before it is ready.
    pub fn frames_needed_for_window(&self) -> i64 {
        self.window_start() + self.windows.frames - self.prefix
    }

    /// The next window's features `(frames, features)`: rows not in yet are the last
    /// row again when the stream has ended (as the reference pads its last window), else
    /// `missing` (silence, for a live frame that cannot wait).
    pub fn window_features(&self, missing: &Tensor) -> Tensor {
        let start = self.window_start();
        let frames = self.windows.frames;
        let rows: Vec<Tensor> = (start..start + frames)
            .map(|b| {
                let end = match self.total {
                    Some(total) => total + self.prefix,
                    None => self.features_end,
                };
                if b < end {
                    self.features[(b - self.features_first) as usize].shallow_clone()
                } else if self.ended() {
                    let last = (end - 1).max(self.features_first);
                    self.features
                        .get((last - self.features_first) as usize)
                        .map_or_else(|| missing.shallow_clone(), Tensor::shallow_clone)
                } else {
                    missing.shallow_clone()
                }
            })
            .collect();
        Tensor::stack(&rows, 0)
    }

    /// The next window's previous-frame condition `(1, motion)`.
    pub fn previous(&self) -> &Tensor {
        &self.previous
    }

    /// Joins window `predicted` (`(1, frames, motion)`) sampled from the conditions of
    /// [`MotionStream::window_features`].
    pub fn add_window(&mut self, predicted: &Tensor) {
        let tail = self.windows.frames;
        // The join reads the last `frames` rows at most (the fuse and the smoothing).
        let keep = (self.result.len() as i64).min(tail);
        let dropped = self.result.len() as i64 - keep;
        let recent = (!self.result.is_empty())
            .then(|| Tensor::stack(&self.result[dropped as usize..], 0).unsqueeze(0));
        let joined = self.windows.join(recent.as_ref(), predicted);
        self.previous = self.windows.next_previous(&joined);
        let joined = joined.squeeze_dim(0);
        let rows: Vec<Tensor> = (0..joined.size()[0]).map(|i| joined.get(i)).collect();
        self.result.truncate(dropped as usize);
        self.result.extend(rows);
        self.windows_done += 1;
    }

    fn result_end(&self) -> i64 {
        self.result_first + self.result.len() as i64
    }

    /// Frames (from 0) whose rows are final.
    pub fn frames_final(&self) -> i64 {
        if let Some(total) = self.total
            && !self.wants_window()
        {
            return total;
        }
        let stable = self.result_end() - self.windows.fuse - self.prefix;
        match self.mode {
            // The last pass reads the next row too.
            StreamMode::Offline => (stable - 1).max(0),
            StreamMode::Online => stable.max(0),
        }
    }

    fn row(&self, b: i64) -> &Tensor {
        &self.result[(b - self.result_first) as usize]
    }

    /// The final row of frame `frame` (`(motion)`); `frame` must be final and not
    /// forgotten. Online, frames before 0 (the silence prefix) can be read too.
    pub fn frame(&self, frame: i64) -> Tensor {
        let b = frame + self.prefix;
        match self.mode {
            StreamMode::Online => self.row(b).shallow_clone(),
            StreamMode::Offline => {
                let end = self.total.unwrap_or(i64::MAX).min(self.result_end());
                let (from, to) = ((b - 1).max(0), (b + 1).min(end - 1));
                let rows: Vec<Tensor> = (from..=to).map(|i| self.row(i).shallow_clone()).collect();
                let mean = Tensor::stack(&rows, 0)
                    .narrow(1, 0, SMOOTHED_VALUES)
                    .mean_dim(0, false, Kind::Float);
                let out = self.row(b).copy();
                out.narrow(0, 0, SMOOTHED_VALUES).copy_(&mean);
                out
            }
        }
    }

    /// The row motion is relative to: online the first window's first row, offline
    /// frame 0 (both as the reference's `d0`). Available once a window is in.
    pub fn first_row(&self) -> Option<Tensor> {
        (self.windows_done > 0 && self.result_first == 0).then(|| self.frame(-self.prefix))
    }

    /// Forgets what frames before `frame` and windows already made no longer need.
    pub fn forget_before(&mut self, frame: i64) {
        let b = frame + self.prefix - 1;
        let keep_result_from = b
            .min(self.result_end() - self.windows.frames)
            .max(self.result_first);
        let drop = (keep_result_from - self.result_first) as usize;
        self.result.drain(..drop.min(self.result.len()));
        self.result_first = keep_result_from;
        let keep_features_from = self.window_start().min(self.features_end);
        if keep_features_from > self.features_first {
            let drop = (keep_features_from - self.features_first) as usize;
            self.features.drain(..drop.min(self.features.len()));
            self.features_first = keep_features_from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    const MOTION: i64 = 265;

    /// The reference's loop over whole sequences, without streaming or forgetting: the
    /// joined result of `windows` (each `(1, frames, motion)`).
    fn whole(windows: &Windows, predicted: &[Tensor]) -> Tensor {
        let mut result: Option<Tensor> = None;
        for p in predicted {
            result = Some(windows.join(result.as_ref(), p));
        }
        result.unwrap()
    }

    fn run(mode: StreamMode, overlap: i64, total: i64, feed: i64) {
        tch::manual_seed(3);
        let frames = 20;
        let source = Tensor::randn([MOTION], (Kind::Float, Device::Cpu));
        let silence = Tensor::randn([5, 4], (Kind::Float, Device::Cpu));
        let mut stream = MotionStream::new(mode, frames, overlap, &source, &silence);
        let features = Tensor::randn([total, 4], (Kind::Float, Device::Cpu));
        let mut predicted = Vec::new();
        let mut out = Vec::new();
        let mut fed = 0;
        while (out.len() as i64) < total {
            if fed < total {
                let n = feed.min(total - fed);
                stream.push_features(&features.narrow(0, fed, n));
                fed += n;
                if fed == total {
                    stream.end(total);
                }
            }
            while stream.window_ready() {
                let cond = stream.window_features(&silence.get(0));
                assert_eq!(cond.size(), [frames, 4]);
                // A window's "motion": its conditions spread over the motion values,
                // plus its previous-frame condition, so that both are checked.
                let p = (cond.sum_dim_intlist(1, true, Kind::Float)
                    + stream.previous().narrow(1, 0, 1) * 0.5)
                    .expand([frames, MOTION], false)
                    * Tensor::randn([frames, MOTION], (Kind::Float, Device::Cpu));
                let p = p.unsqueeze(0);
                predicted.push(p.copy());
                stream.add_window(&p);
            }
            while (out.len() as i64) < stream.frames_final() {
                let r = out.len() as i64;
                out.push(stream.frame(r));
                stream.forget_before(r);
            }
        }
        let windows = *stream.windows();
        let prefix = if mode == StreamMode::Online {
            overlap
        } else {
            0
        };
        let joined = whole(&windows, &predicted);
        let expected = match mode {
            StreamMode::Offline => {
                let cut = joined.narrow(1, 0, total);
                windows.smooth(&cut, 0, total).squeeze_dim(0)
            }
            StreamMode::Online => joined.squeeze_dim(0).narrow(0, prefix, total),
        };
        let got = Tensor::stack(&out, 0);
        let diff = (&got - &expected).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{mode:?} overlap {overlap}: {diff}");
        // As many windows as the reference's loop makes.
        let step = frames - overlap;
        assert_eq!(
            predicted.len() as i64,
            (total + prefix + step - 1) / step,
            "{mode:?}"
        );
    }

    #[test]
    fn streamed_windows_give_the_whole_sequences_rows_offline_and_online() {
        for feed in [1, 5, 23] {
            run(StreamMode::Offline, 4, 97, feed);
            run(StreamMode::Online, 15, 61, feed);
            run(StreamMode::Online, 6, 45, feed);
        }
    }

    #[test]
    fn online_holds_the_first_window_back_and_pads_with_silence() {
        let source = Tensor::zeros([MOTION], (Kind::Float, Device::Cpu));
        let silence = Tensor::arange(10, (Kind::Float, Device::Cpu)).view([5, 2]);
        let mut stream = MotionStream::new(StreamMode::Online, 20, 15, &source, &silence);
        assert!(!stream.window_ready());
        stream.push_features(&Tensor::ones([5, 2], (Kind::Float, Device::Cpu)));
        assert!(stream.window_ready());
        let cond = stream.window_features(&silence.get(0));
        // 15 rows of silence (cycled), then the 5 new ones.
        assert_eq!(
            cond.get(7).double_value(&[0]),
            silence.get(2).double_value(&[0])
        );
        assert_eq!(cond.get(15).double_value(&[1]), 1.0);
        stream.add_window(&Tensor::zeros([1, 20, MOTION], (Kind::Float, Device::Cpu)));
        assert_eq!(stream.frames_final(), 0, "the first window is held back");
        assert!(stream.first_row().is_some());
        stream.push_features(&Tensor::ones([5, 2], (Kind::Float, Device::Cpu)));
        stream.add_window(&Tensor::zeros([1, 20, MOTION], (Kind::Float, Device::Cpu)));
        assert_eq!(stream.frames_final(), 5);
    }
}
