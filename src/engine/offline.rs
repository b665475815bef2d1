//! Driving an engine over a whole clip in memory, frame by frame as the element does
//! (same frame rule, same zero-padded audio windows): for evaluation, tests and
//! benchmarks, without a pipeline.

use super::{AudioWindow, Engine, EngineError, Motion};
use crate::timeline::FrameRate;

/// The motion of every frame of `samples` (16 kHz mono) at `rate`, with `lookahead`
/// samples of audio after each frame, as the element computes them.
pub fn motions(
    engine: &mut dyn Engine,
    samples: &[f32],
    rate: FrameRate,
    lookahead: usize,
    seed: u64,
) -> Result<Vec<Motion>, EngineError> {
    engine.reset(seed);
    let history = engine.history_samples();
    let frames = rate.frames_for_samples(samples.len() as u64);
    let mut window = Vec::new();
    let mut out = Vec::with_capacity(frames as usize);
    for n in 0..frames {
        let start = rate.frame_start_sample(n) as i64;
        let end = rate.frame_start_sample(n + 1) as i64;
        let frame_len = (end - start) as usize;
        let first = start - history as i64;
        window.clear();
        window.extend((first..end + lookahead as i64).map(|i| {
            if i >= 0 && (i as usize) < samples.len() {
                samples[i as usize]
            } else {
                0.0
            }
        }));
        out.push(engine.motion(&AudioWindow {
            samples: &window,
            frame_start: history,
            frame_len,
            frame_index: n,
            rate,
        })?);
    }
    Ok(out)
}
