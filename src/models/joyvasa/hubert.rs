//! The HuBERT-base audio encoder as JoyVASA uses it (transformers' `HubertModel`,
//! `models::hubert`, with JoyVASA's own forward): convolutional features at 50 Hz
//! resampled to twice the motion frame rate, then the encoder, then halved by linear
//! interpolation and mapped to the motion model's feature size (`audio_feature_map`).
//! Keys as in the motion generator's state dict (`audio_encoder.` prefix).

use tch::Tensor;

use crate::models::hubert::Hubert;
pub use crate::models::hubert::HubertConfig;
use crate::nn::layers::Linear;
use crate::nn::weights::{Weights, WeightsError};

type Result<T> = std::result::Result<T, WeightsError>;

/// HuBERT plus JoyVASA's `audio_feature_map`.
pub struct AudioEncoder {
    hubert: Hubert,
    feature_map: Linear,
    hop: i64,
}

/// What the encoder computes for one window, for parity checks and the sampler.
pub struct AudioFeatures {
    /// `(N, C, frames)` convolutional features at 50 Hz.
    pub conv: Tensor,
    /// `(N, 2 L, hidden)` encoder output at twice the motion frame rate.
    pub hidden: Tensor,
    /// `(N, L, feature_dim)` per motion frame.
    pub features: Tensor,
}

impl AudioEncoder {
    /// Builds the encoder from `w` (a motion generator's state dict): HuBERT under
    /// `audio_encoder.`, the map to `feature_dim` under `audio_feature_map`.
    pub fn new(w: &mut Weights, c: &HubertConfig, feature_dim: i64) -> Result<Self> {
        if c.feat_extract_norm != "group" || c.do_stable_layer_norm {
            return Err(WeightsError::Read {
                file: w.file().to_path_buf(),
                detail: "unsupported HuBERT configuration: JoyVASA's encoder is hubert-base \
                         (feat_extract_norm \"group\", post-norm encoder)"
                    .to_owned(),
            });
        }
        let hubert = Hubert::new(w, c, "audio_encoder")?;
        let feature_map = Linear::new(w, "audio_feature_map", c.hidden_size, feature_dim)?;
        Ok(Self {
            hop: hubert.hop(),
            hubert,
            feature_map,
        })
    }

    /// JoyVASA's padding before the encoder: the window is lengthened to a whole number
    /// of hops plus 80 samples, half on each side, by two reflections of a quarter each
    /// (and one replicated sample each side when the half is odd).
    pub fn pad(&self, audio: &Tensor) -> Tensor {
        let len = audio.size()[1];
        let units = len / self.hop;
        let side = (self.hop * units + 80 - len + 1).div_euclid(2);
        if side < 0 {
            return audio.shallow_clone();
        }
        let (reflect, replicate) = (side / 2, side % 2);
        let mut x = audio.unsqueeze(1);
        if reflect > 0 {
            x = x.reflection_pad1d([reflect, reflect]);
            x = x.reflection_pad1d([reflect, reflect]);
        }
        if replicate > 0 {
            x = x.replication_pad1d([1, 1]);
        }
        x.squeeze_dim(1)
    }

    /// Features for `frames` motion frames at `fps` from `audio` `(N, samples)` at 16 kHz.
    pub fn forward(&self, audio: &Tensor, frames: i64, fps: i64) -> AudioFeatures {
        let conv = self.hubert.conv_features(&self.pad(audio));
        // Twice the motion frames, from the 50 Hz features: those covering the window,
        // resampled linearly (`align_corners=False`, as the reference).
        let doubled = 2 * frames;
        let kept = ((doubled * 50) as f64 / fps as f64).round() as i64;
        let kept = kept.min(conv.size()[2]);
        let resampled = conv
            .narrow(2, 0, kept)
            .upsample_linear1d([doubled], false, None::<f64>);
        let hidden = self.hubert.last_hidden_state(&resampled);
        let halved = hidden
            .transpose(1, 2)
            .upsample_linear1d([frames], false, None::<f64>)
            .transpose(1, 2);
        AudioFeatures {
            conv,
            features: self.feature_map.forward(&halved),
            hidden,
        }
    }
}
