//! Ditto's audio features: HuBERT-large over overlapping 6480-sample chunks of 16 kHz
//! audio, each chunk giving 5 frames at 25 fps (its encoder frames -14..-4, averaged in
//! pairs), chunks 5 frames (3200 samples) apart; offline the audio gets 2000 zero
//! samples in front and 6480 behind, and exactly ceil(seconds x 25) frames come out
//! (ditto-talkinghead core/atomic_components/wav2feat.py).
//!
//! Which of HuBERT's hidden states Ditto's exported streaming encoder gives is not
//! known here (its ONNX file is not public in a readable form); this takes the last.

use tch::{Kind, Tensor};

use crate::models::hubert::Hubert;

pub const SAMPLE_RATE: usize = 16_000;
pub const FPS: usize = 25;
/// Frames of context before, frames produced, frames of lookahead per chunk (40 ms each).
const CHUNK_FRAMES: (usize, usize, usize) = (3, 5, 2);

/// The chunk length in samples: 10 frames of 640 and 80 more (6480).
pub fn chunk_samples() -> usize {
    let (a, b, c) = CHUNK_FRAMES;
    frame_offset(a + b + c) + 80
}

/// Sample index of frame `i`, computed as the reference does (`int(i * 0.04 * 16000)`).
fn frame_offset(i: usize) -> usize {
    (i as f64 * 0.04 * SAMPLE_RATE as f64) as usize
}

/// Frames each chunk gives; chunks start this many frames apart.
pub const FRAMES_PER_CHUNK: i64 = CHUNK_FRAMES.1 as i64;
/// Zeros before the audio, offline (`wav2feat`) and online (`inference.py`'s three
/// frames of context).
pub const OFFLINE_FRONT: i64 = 2000;
pub const ONLINE_FRONT: i64 = (CHUNK_FRAMES.0 * 640) as i64;

/// The first sample (counted in the audio itself, so negative in the zeros in front) of
/// chunk `index` when `front` zeros come before the audio.
pub fn chunk_start(index: i64, front: i64) -> i64 {
    frame_offset(index as usize * CHUNK_FRAMES.1) as i64 - front
}

/// The features of one chunk of audio `(1, chunk_samples())`: `(5, hidden)`.
pub fn encode_chunk(hubert: &Hubert, chunk: &Tensor) -> Tensor {
    let _no_grad = tch::no_grad_guard();
    let encoded = hubert.last_hidden_state(&hubert.conv_features(chunk));
    chunk_features(&encoded.squeeze_dim(0))
}

/// The 5 features of one chunk `(5, hidden)` from its encoder output `(frames, hidden)`.
pub fn chunk_features(encoded: &Tensor) -> Tensor {
    let (_, b, c) = CHUNK_FRAMES;
    let frames = encoded.size()[0];
    let start = frames - 2 * (b + c) as i64;
    let hidden = encoded.size()[1];
    encoded
        .narrow(0, start, 2 * b as i64)
        .reshape([b as i64, 2, hidden])
        .mean_dim(1, false, Kind::Float)
}

/// Offline features of `audio` (`(samples)` at 16 kHz): `(ceil(seconds x 25), hidden)`.
pub fn offline_features(hubert: &Hubert, audio: &Tensor) -> Tensor {
    let _no_grad = tch::no_grad_guard();
    let samples = audio.size()[0] as usize;
    let frames = (samples * FPS).div_ceil(SAMPLE_RATE);
    let (_, b, c) = CHUNK_FRAMES;
    let chunk = chunk_samples();
    let front = chunk - frame_offset(b + c);
    debug_assert_eq!(front as i64, OFFLINE_FRONT);
    let padded = Tensor::cat(
        &[
            Tensor::zeros([front as i64], (Kind::Float, audio.device())),
            audio.to_kind(Kind::Float),
            Tensor::zeros([chunk as i64], (Kind::Float, audio.device())),
        ],
        0,
    );
    let mut parts = Vec::new();
    let mut i = 0;
    while i < frames {
        let window = padded
            .narrow(0, frame_offset(i) as i64, chunk as i64)
            .unsqueeze(0);
        parts.push(encode_chunk(hubert, &window));
        i += b;
    }
    if parts.is_empty() {
        return Tensor::zeros([0, hubert.hidden_size()], (Kind::Float, audio.device()));
    }
    Tensor::cat(&parts, 0).narrow(0, 0, frames as i64)
}
