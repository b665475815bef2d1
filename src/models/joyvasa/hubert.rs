//! The HuBERT-base audio encoder as JoyVASA uses it (transformers' `HubertModel` with
//! JoyVASA's own forward): 16 kHz samples -> convolutional features at 50 Hz -> feature
//! projection -> positional convolution (weight norm) and a post-norm transformer
//! encoder -> hidden states at twice the motion frame rate, halved by linear
//! interpolation and mapped to the motion model's feature size (`audio_feature_map`).
//! Keys as in the motion generator's state dict (`audio_encoder.` prefix).

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::nn::layers::{Conv, ConvSpec, LayerNorm, Linear};
use crate::nn::weights::{Weights, WeightsError};

type Result<T> = std::result::Result<T, WeightsError>;

/// The fields of transformers' `HubertConfig` that shape the network (the checkpoint's
/// `config.json` names). Only the "base" layout is supported: group norm in the first
/// convolution, post-norm encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HubertConfig {
    pub hidden_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub intermediate_size: i64,
    pub conv_dim: Vec<i64>,
    pub conv_kernel: Vec<i64>,
    pub conv_stride: Vec<i64>,
    pub conv_bias: bool,
    pub num_conv_pos_embeddings: i64,
    pub num_conv_pos_embedding_groups: i64,
    pub layer_norm_eps: f64,
    pub feat_proj_layer_norm: bool,
    pub feat_extract_norm: String,
    pub do_stable_layer_norm: bool,
}

impl HubertConfig {
    /// chinese-hubert-base, which the official JoyVASA checkpoint carries.
    pub fn official() -> Self {
        Self {
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            conv_dim: vec![512; 7],
            conv_kernel: vec![10, 3, 3, 3, 3, 2, 2],
            conv_stride: vec![5, 2, 2, 2, 2, 2, 2],
            conv_bias: false,
            num_conv_pos_embeddings: 128,
            num_conv_pos_embedding_groups: 16,
            layer_norm_eps: 1e-5,
            feat_proj_layer_norm: true,
            feat_extract_norm: "group".into(),
            do_stable_layer_norm: false,
        }
    }

    /// Samples per output frame of the convolutions (320: 50 Hz at 16 kHz).
    pub fn hop(&self) -> i64 {
        self.conv_stride.iter().product()
    }
}

/// Why a config cannot be built.
fn unsupported(w: &Weights, what: &str) -> WeightsError {
    WeightsError::Read {
        file: w.file().to_path_buf(),
        detail: format!("unsupported HuBERT configuration: {what}"),
    }
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: i64,
}

impl Attention {
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, t, c) = x.size3().expect("(B, T, C)");
        let head = c / self.heads;
        let split = |y: Tensor| y.view([b, t, self.heads, head]).transpose(1, 2);
        let q = split(self.q.forward(x) * (head as f64).powf(-0.5));
        let k = split(self.k.forward(x));
        let v = split(self.v.forward(x));
        let weights = q.matmul(&k.transpose(-2, -1)).softmax(-1, Kind::Float);
        let mixed = weights.matmul(&v).transpose(1, 2).reshape([b, t, c]);
        self.out.forward(&mixed)
    }
}

struct EncoderLayer {
    attention: Attention,
    layer_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    final_layer_norm: LayerNorm,
}

impl EncoderLayer {
    fn forward(&self, x: &Tensor) -> Tensor {
        let x = self.layer_norm.forward(&(x + self.attention.forward(x)));
        let fed = self
            .output
            .forward(&self.intermediate.forward(&x).gelu("none"));
        self.final_layer_norm.forward(&(&x + fed))
    }
}

/// HuBERT plus JoyVASA's `audio_feature_map`.
pub struct AudioEncoder {
    conv: Vec<Conv>,
    /// Group norm of the first convolution (one group per channel).
    conv_norm: (Tensor, Tensor),
    projection_norm: Option<LayerNorm>,
    projection: Linear,
    position: Conv,
    /// An even positional kernel yields one frame too many, dropped (transformers'
    /// `HubertSamePadLayer`).
    position_trim: bool,
    encoder_norm: LayerNorm,
    layers: Vec<EncoderLayer>,
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
            return Err(unsupported(
                w,
                "only feat_extract_norm \"group\" with the post-norm encoder (hubert-base)",
            ));
        }
        let layers_n = c.conv_dim.len();
        if c.conv_kernel.len() != layers_n || c.conv_stride.len() != layers_n || layers_n == 0 {
            return Err(unsupported(
                w,
                "conv_dim, conv_kernel and conv_stride differ in length",
            ));
        }
        if c.hidden_size % c.num_attention_heads != 0
            || c.hidden_size % c.num_conv_pos_embedding_groups != 0
        {
            return Err(unsupported(
                w,
                "hidden_size is not a multiple of the heads or groups",
            ));
        }
        let p = "audio_encoder";
        let mut conv = Vec::with_capacity(layers_n);
        let mut cin = 1;
        for i in 0..layers_n {
            let kernel = [c.conv_kernel[i]];
            let spec = ConvSpec {
                stride: c.conv_stride[i],
                bias: c.conv_bias,
                ..ConvSpec::new(&kernel, 0)
            };
            let key = format!("{p}.feature_extractor.conv_layers.{i}.conv");
            conv.push(Conv::new(w, &key, cin, c.conv_dim[i], spec)?);
            cin = c.conv_dim[i];
        }
        let norm_key = format!("{p}.feature_extractor.conv_layers.0.layer_norm");
        let conv_norm = (
            w.take(&format!("{norm_key}.weight"), &[c.conv_dim[0]])?,
            w.take(&format!("{norm_key}.bias"), &[c.conv_dim[0]])?,
        );
        let projection_norm = if c.feat_proj_layer_norm {
            Some(LayerNorm::new(
                w,
                &format!("{p}.feature_projection.layer_norm"),
                cin,
                c.layer_norm_eps,
            )?)
        } else {
            None
        };
        let hidden = c.hidden_size;
        let projection = Linear::new(
            w,
            &format!("{p}.feature_projection.projection"),
            cin,
            hidden,
        )?;

        // The positional convolution's weight norm (over every dimension but the
        // kernel's): w = g v / |v|. Newer transformers store g, v as parametrizations.
        let k = c.num_conv_pos_embeddings;
        let groups = c.num_conv_pos_embedding_groups;
        let pos = format!("{p}.encoder.pos_conv_embed.conv");
        let (g_key, v_key) = if w.contains(&format!("{pos}.weight_g")) {
            (format!("{pos}.weight_g"), format!("{pos}.weight_v"))
        } else {
            (
                format!("{pos}.parametrizations.weight.original0"),
                format!("{pos}.parametrizations.weight.original1"),
            )
        };
        let g = w.take(&g_key, &[1, 1, k])?;
        let v = w.take(&v_key, &[hidden, hidden / groups, k])?;
        let norm = v
            .square()
            .sum_dim_intlist([0i64, 1].as_slice(), true, Kind::Float)
            .sqrt();
        let kernel = [k];
        let position = Conv::with_weight(
            w,
            &pos,
            g * &v / norm,
            hidden,
            ConvSpec {
                groups,
                ..ConvSpec::new(&kernel, k / 2)
            },
        )?;
        let encoder_norm = LayerNorm::new(
            w,
            &format!("{p}.encoder.layer_norm"),
            hidden,
            c.layer_norm_eps,
        )?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = format!("{p}.encoder.layers.{i}");
                let linear = |w: &mut Weights, name: &str, fin, fout| {
                    Linear::new(w, &format!("{l}.{name}"), fin, fout)
                };
                Ok(EncoderLayer {
                    attention: Attention {
                        q: linear(w, "attention.q_proj", hidden, hidden)?,
                        k: linear(w, "attention.k_proj", hidden, hidden)?,
                        v: linear(w, "attention.v_proj", hidden, hidden)?,
                        out: linear(w, "attention.out_proj", hidden, hidden)?,
                        heads: c.num_attention_heads,
                    },
                    layer_norm: LayerNorm::new(
                        w,
                        &format!("{l}.layer_norm"),
                        hidden,
                        c.layer_norm_eps,
                    )?,
                    intermediate: linear(
                        w,
                        "feed_forward.intermediate_dense",
                        hidden,
                        c.intermediate_size,
                    )?,
                    output: linear(w, "feed_forward.output_dense", c.intermediate_size, hidden)?,
                    final_layer_norm: LayerNorm::new(
                        w,
                        &format!("{l}.final_layer_norm"),
                        hidden,
                        c.layer_norm_eps,
                    )?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // Only used for masked training.
        w.skip(&format!("{p}.masked_spec_embed"));
        let feature_map = Linear::new(w, "audio_feature_map", hidden, feature_dim)?;
        Ok(Self {
            conv,
            conv_norm,
            projection_norm,
            projection,
            position,
            position_trim: k % 2 == 0,
            encoder_norm,
            layers,
            feature_map,
            hop: c.hop(),
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
        let mut x = self.pad(audio).unsqueeze(1);
        for (i, conv) in self.conv.iter().enumerate() {
            x = conv.forward(&x);
            if i == 0 {
                let channels = x.size()[1];
                x = x.group_norm(
                    channels,
                    Some(&self.conv_norm.0),
                    Some(&self.conv_norm.1),
                    1e-5,
                    false,
                );
            }
            x = x.gelu("none");
        }
        let conv = x;
        // Twice the motion frames, from the 50 Hz features: those covering the window,
        // resampled linearly (`align_corners=False`, as the reference).
        let doubled = 2 * frames;
        let kept = ((doubled * 50) as f64 / fps as f64).round() as i64;
        let kept = kept.min(conv.size()[2]);
        let resampled = conv
            .narrow(2, 0, kept)
            .upsample_linear1d([doubled], false, None::<f64>);
        let mut h = resampled.transpose(1, 2);
        if let Some(norm) = &self.projection_norm {
            h = norm.forward(&h);
        }
        h = self.projection.forward(&h);
        let mut position = self.position.forward(&h.transpose(1, 2));
        if self.position_trim {
            let t = position.size()[2];
            position = position.narrow(2, 0, t - 1);
        }
        h = self
            .encoder_norm
            .forward(&(h + position.gelu("none").transpose(1, 2)));
        for layer in &self.layers {
            h = layer.forward(&h);
        }
        let hidden = h;
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
