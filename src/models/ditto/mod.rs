//! Ditto (antgroup/ditto-talkinghead, Apache-2.0): streaming motion by diffusion in
//! LivePortrait's motion space: the LMDM denoiser (`lmdm`), its DDIM sampler and
//! window joining (`sampler`), windows generated as features arrive, offline or online
//! (`stream`), the per-frame conditions (below, and `eyes` from the face mesh), the
//! audio features (`audio`: HuBERT-large, `models::hubert`, over Ditto's chunks), and
//! generated motion turned into a driving pose and expression (`drive`).

pub mod audio;
pub mod drive;
pub mod eyes;
pub mod lmdm;
pub mod sampler;
pub mod stream;

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

/// Condition values per frame besides the audio: emotion 8, eye openness 2, eyeballs 6,
/// the portrait's canonical keypoints 63.
pub const CONDITION_EXTRA: i64 = 8 + 2 + 6 + 63;

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
    /// Frames two windows share offline (the release's offline cfg: 10).
    pub overlap: i64,
    /// Frames two windows share online, when the stream is live (the maintainers
    /// suggest 70-75: 80 - overlap new frames per window, so a short wait for audio).
    #[serde(default = "default_online_overlap")]
    pub online_overlap: i64,
    /// Sampling steps by default when live (the online cfg's 10).
    #[serde(default = "default_online_sampling_steps")]
    pub online_sampling_steps: usize,
    /// The cfg's per-value range of generated motion (`v_min_max_for_clip`: lows, highs),
    /// when the bundle was converted with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<(Vec<f32>, Vec<f32>)>,
    /// The audio encoder's sizes (hubert-large-ls960-ft).
    pub hubert: HubertConfig,
}

fn default_online_overlap() -> i64 {
    70
}

fn default_online_sampling_steps() -> usize {
    10
}

impl DittoConfig {
    /// Why the config cannot work, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if !(1..=sampler::TRAINING_STEPS).contains(&self.online_sampling_steps) {
            return Some(format!(
                "online_sampling_steps is {}, not in 1..={}",
                self.online_sampling_steps,
                sampler::TRAINING_STEPS
            ));
        }
        if self.online_overlap < 0 {
            return Some(format!(
                "online_overlap is {}, negative",
                self.online_overlap
            ));
        }
        if let Some((low, high)) = &self.clip
            && low.len() != high.len()
        {
            return Some(format!(
                "clip has {} lows and {} highs",
                low.len(),
                high.len()
            ));
        }
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
        let clip_len = config.clip.as_ref().map_or(0, |(low, _)| low.len() as i64);
        let expected_cond = hubert.hidden_size() + CONDITION_EXTRA;
        let problem = if config.overlap.max(config.online_overlap) >= decoder.seq_len {
            Some(format!(
                "windows of {} frames cannot overlap by {} (offline) or {} (online)",
                decoder.seq_len, config.overlap, config.online_overlap
            ))
        } else if decoder.cond_dim != expected_cond {
            Some(format!(
                "the denoiser takes {} condition values per frame, but the audio encoder gives                  {} and the emotion, eye and keypoint conditions {CONDITION_EXTRA} (these                  weights do not belong together)",
                decoder.cond_dim,
                hubert.hidden_size()
            ))
        } else if clip_len != 0 && clip_len != decoder.motion_dim {
            Some(format!(
                "the clip range has {clip_len} values, the motion {}",
                decoder.motion_dim
            ))
        } else {
            None
        };
        if let Some(detail) = problem {
            return Err(WeightsError::Invalid {
                file: lmdm_weights.file().to_path_buf(),
                key: "cond_projection.weight".to_owned(),
                detail,
            });
        }
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
