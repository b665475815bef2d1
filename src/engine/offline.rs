//! Driving an engine's motion source over a whole clip in memory, frame by frame as the
//! element does (the same frame rule and the same audio windows): for evaluation, tests
//! and benchmarks, without a pipeline.

use super::Engine;
use crate::core::{Error, FaceMotion, FrameRate, FrameSpan, Motion, SampleStore};
use crate::render::PreparedSource;

/// The motion of every frame of `samples` (16 kHz mono) at `rate`, with `lookahead`
/// samples of audio after each frame, as the element computes them (not live). Motion
/// sources that condition on the portrait need `portrait`.
pub fn motions(
    engine: &mut Engine,
    samples: &[f32],
    rate: FrameRate,
    lookahead: usize,
    seed: u64,
) -> Result<Vec<Motion>, Error> {
    motions_of(engine, None, samples, rate, lookahead, seed)
}

/// [`motions`] for the portrait `source`.
pub fn motions_of(
    engine: &mut Engine,
    source: Option<&PreparedSource>,
    samples: &[f32],
    rate: FrameRate,
    lookahead: usize,
    seed: u64,
) -> Result<Vec<Motion>, Error> {
    engine.reset(seed);
    if let Some(source) = source {
        engine.use_portrait(source);
    }
    let history = engine.history_samples();
    let store = SampleStore::from_clip(samples);
    let frames = rate.frames_for_samples(samples.len() as u64);
    let mut buffer = Vec::new();
    (0..frames)
        .map(|n| {
            let mut window = store.window(FrameSpan::of(rate, n), history, lookahead, &mut buffer);
            // The whole clip is here: nothing comes after it.
            window.ended = true;
            engine.motion(&window)
        })
        .collect()
}

/// [`motions`] of an engine whose motion source gives face parameters (the builtin
/// motion); another kind is an error.
pub fn face_motions(
    engine: &mut Engine,
    samples: &[f32],
    rate: FrameRate,
    lookahead: usize,
    seed: u64,
) -> Result<Vec<FaceMotion>, Error> {
    motions(engine, samples, rate, lookahead, seed)?
        .into_iter()
        .map(|motion| match motion {
            Motion::Face(face) => Ok(face),
            other => Err(Error::Settings(format!(
                "motion source \"{}\" gives {}, not face parameters",
                engine.motion_name(),
                other.kind()
            ))),
        })
        .collect()
}
