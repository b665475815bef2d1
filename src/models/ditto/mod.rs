//! Ditto (antgroup/ditto-talkinghead, Apache-2.0): streaming motion by diffusion in
//! LivePortrait's motion space. So far: the LMDM denoiser (`lmdm`), its DDIM sampler
//! and window joining (`sampler`), the per-frame conditions (below) and the audio
//! features (`audio`: HuBERT-large, `models::hubert`, over Ditto's chunks).

pub mod audio;
pub mod lmdm;
pub mod sampler;

use tch::Tensor;

/// Ditto's eight emotion classes, in its condition's order.
pub const EMOTIONS: [&str; 8] = [
    "angry",
    "disgusted",
    "fearful",
    "happy",
    "neutral",
    "sad",
    "surprised",
    "contempt",
];

/// The emotion condition: softmax of a one-hot times 8 (Ditto's ConditionHandler).
pub fn emotion_condition(class: usize) -> Tensor {
    let mut logits = [0.0f32; 8];
    logits[class.min(7)] = 8.0;
    Tensor::from_slice(&logits).softmax(0, tch::Kind::Float)
}

/// Per-frame conditions `(frames, cond)`: audio features `(frames, audio)` followed by
/// the emotion `(8)`, eye openness `(2)`, eyeball `(6)` and source keypoints `(63)`,
/// the same on every frame.
pub fn frame_conditions(
    audio: &Tensor,
    emotion: &Tensor,
    eye_open: &Tensor,
    eye_ball: &Tensor,
    source_keypoints: &Tensor,
) -> Tensor {
    let frames = audio.size()[0];
    let row = Tensor::cat(
        &[
            emotion.flatten(0, -1),
            eye_open.flatten(0, -1),
            eye_ball.flatten(0, -1),
            source_keypoints.flatten(0, -1),
        ],
        0,
    );
    Tensor::cat(
        &[
            audio.shallow_clone(),
            row.unsqueeze(0).expand([frames, -1], false),
        ],
        1,
    )
}

/// The source motion in the model's layout `(265)`: scale - 1, pitch, yaw and roll as
/// 66 bin logits each, translation (3), expression (63).
pub fn motion_row(
    scale: &Tensor,
    pitch: &Tensor,
    yaw: &Tensor,
    roll: &Tensor,
    t: &Tensor,
    exp: &Tensor,
) -> Tensor {
    Tensor::cat(
        &[
            scale.flatten(0, -1) - 1.0,
            pitch.flatten(0, -1),
            yaw.flatten(0, -1),
            roll.flatten(0, -1),
            t.flatten(0, -1),
            exp.flatten(0, -1),
        ],
        0,
    )
}

use serde::{Deserialize, Serialize};

use crate::models::hubert::{Hubert, HubertConfig};
use crate::nn::weights::{Weights, WeightsError};

/// The bundle's `motion_generators.ditto` config: what the weights do not say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DittoConfig {
    /// Attention heads of the LMDM (8 in the release).
    pub heads: i64,
    /// Sampling steps by default (the release's offline cfg: 50).
    pub sampling_steps: usize,
    /// Frames two windows share (the release's offline cfg: 10).
    pub overlap: i64,
    /// The audio encoder's sizes (hubert-large-ls960-ft).
    pub hubert: HubertConfig,
}

impl DittoConfig {
    /// Why the config cannot work, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.heads <= 0 {
            return Some(format!("heads is {}, not a positive count", self.heads));
        }
        if !(1..=sampler::TRAINING_STEPS).contains(&self.sampling_steps) {
            return Some(format!(
                "sampling_steps is {}, not in 1..={}",
                self.sampling_steps,
                sampler::TRAINING_STEPS
            ));
        }
        if self.overlap < 0 {
            return Some(format!("overlap is {}, negative", self.overlap));
        }
        None
    }
}

/// Ditto's networks: the audio encoder and the denoiser.
pub struct DittoNetworks {
    pub config: DittoConfig,
    pub hubert: Hubert,
    pub decoder: lmdm::MotionDecoder,
}

impl DittoNetworks {
    /// Builds both from their weights (each checked complete) and the config.
    pub fn new(
        config: DittoConfig,
        hubert_weights: &mut Weights,
        lmdm_weights: &mut Weights,
    ) -> Result<Self, WeightsError> {
        let hubert = Hubert::new(hubert_weights, &config.hubert, "")?;
        let decoder = lmdm::MotionDecoder::new(lmdm_weights, config.heads)?;
        if config.overlap >= decoder.seq_len {
            return Err(WeightsError::Invalid {
                file: lmdm_weights.file().to_path_buf(),
                key: "null_cond_embed".to_owned(),
                detail: format!(
                    "windows of {} frames cannot overlap by {}",
                    decoder.seq_len, config.overlap
                ),
            });
        }
        Ok(Self {
            config,
            hubert,
            decoder,
        })
    }
}
