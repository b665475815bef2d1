//! HuBERT (transformers' `HubertModel`) in libtorch, in its two layouts: "base" (JoyVASA's
//! chinese-hubert-base: group norm in the first convolution, post-norm encoder) and
//! "large" (hubert-large-ls960-ft, which Ditto uses: layer norm after every convolution,
//! pre-norm layers, a final encoder norm). 16 kHz samples -> convolutional features at
//! 50 Hz -> feature projection -> positional convolution (weight norm) -> transformer
//! layers. Key names as in `HubertModel`'s state dict under a prefix.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::nn::layers::{Conv, ConvSpec, LayerNorm, Linear};
use crate::nn::weights::{Weights, WeightsError};

type Result<T> = std::result::Result<T, WeightsError>;

/// The fields of transformers' `HubertConfig` that shape the network (the checkpoint's
/// `config.json` names). Two layouts: "base" (group norm in the first convolution,
/// post-norm encoder) and "large" (layer norm after every convolution, pre-norm layers
/// and a final encoder norm: `feat_extract_norm = "layer"`, `do_stable_layer_norm`).
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

    /// facebook/hubert-large-ls960-ft, the encoder Ditto's audio features come from.
    pub fn large() -> Self {
        Self {
            hidden_size: 1024,
            num_hidden_layers: 24,
            num_attention_heads: 16,
            intermediate_size: 4096,
            conv_dim: vec![512; 7],
            conv_kernel: vec![10, 3, 3, 3, 3, 2, 2],
            conv_stride: vec![5, 2, 2, 2, 2, 2, 2],
            conv_bias: true,
            num_conv_pos_embeddings: 128,
            num_conv_pos_embedding_groups: 16,
            layer_norm_eps: 1e-5,
            feat_proj_layer_norm: true,
            feat_extract_norm: "layer".into(),
            do_stable_layer_norm: true,
        }
    }

    /// Samples per output frame of the convolutions (320: 50 Hz at 16 kHz).
    pub fn hop(&self) -> i64 {
        self.conv_stride.iter().product()
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
    /// Norms before the attention and the feed-forward (large) or after them (base).
    pre_norm: bool,
}

impl EncoderLayer {
    fn forward(&self, x: &Tensor) -> Tensor {
        let feed = |y: &Tensor| {
            self.output
                .forward(&self.intermediate.forward(y).gelu("none"))
        };
        if self.pre_norm {
            let x = x + self.attention.forward(&self.layer_norm.forward(x));
            let fed = feed(&self.final_layer_norm.forward(&x));
            x + fed
        } else {
            let x = self.layer_norm.forward(&(x + self.attention.forward(x)));
            let fed = feed(&x);
            self.final_layer_norm.forward(&(&x + fed))
        }
    }
}

/// Why a config cannot be built.
fn unsupported(w: &Weights, what: &str) -> WeightsError {
    WeightsError::Read {
        file: w.file().to_path_buf(),
        detail: format!("unsupported HuBERT configuration: {what}"),
    }
}

/// How the convolutions' outputs are normalised.
enum ConvNorm {
    /// Group norm (one group per channel) after the first convolution only.
    FirstGroup(Tensor, Tensor),
    /// Layer norm over the channels after every convolution.
    EveryLayer(Vec<LayerNorm>),
}

/// The HuBERT network.
pub struct Hubert {
    conv: Vec<Conv>,
    conv_norm: ConvNorm,
    projection_norm: Option<LayerNorm>,
    projection: Linear,
    position: Conv,
    /// An even positional kernel yields one frame too many, dropped (transformers'
    /// `HubertSamePadLayer`).
    position_trim: bool,
    encoder_norm: LayerNorm,
    /// The encoder norm comes after the layers (large) or before them (base).
    stable_layer_norm: bool,
    layers: Vec<EncoderLayer>,
    hop: i64,
    hidden: i64,
}

impl Hubert {
    /// Builds the network from `w`, every key under `prefix` (`""` for none).
    pub fn new(w: &mut Weights, c: &HubertConfig, prefix: &str) -> Result<Self> {
        let layer_norms = match (c.feat_extract_norm.as_str(), c.do_stable_layer_norm) {
            ("group", false) => false,
            ("layer", true) => true,
            _ => {
                return Err(unsupported(
                    w,
                    "feat_extract_norm \"group\" with the post-norm encoder (base) or \"layer\" \
                     with do_stable_layer_norm (large)",
                ));
            }
        };
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
        let key = |name: &str| {
            if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}.{name}")
            }
        };
        let mut conv = Vec::with_capacity(layers_n);
        let mut norms = Vec::new();
        let mut cin = 1;
        for i in 0..layers_n {
            let kernel = [c.conv_kernel[i]];
            let spec = ConvSpec {
                stride: c.conv_stride[i],
                bias: c.conv_bias,
                ..ConvSpec::new(&kernel, 0)
            };
            conv.push(Conv::new(
                w,
                &key(&format!("feature_extractor.conv_layers.{i}.conv")),
                cin,
                c.conv_dim[i],
                spec,
            )?);
            if layer_norms {
                norms.push(LayerNorm::new(
                    w,
                    &key(&format!("feature_extractor.conv_layers.{i}.layer_norm")),
                    c.conv_dim[i],
                    c.layer_norm_eps,
                )?);
            }
            cin = c.conv_dim[i];
        }
        let conv_norm = if layer_norms {
            ConvNorm::EveryLayer(norms)
        } else {
            let norm_key = key("feature_extractor.conv_layers.0.layer_norm");
            ConvNorm::FirstGroup(
                w.take(&format!("{norm_key}.weight"), &[c.conv_dim[0]])?,
                w.take(&format!("{norm_key}.bias"), &[c.conv_dim[0]])?,
            )
        };
        let projection_norm = if c.feat_proj_layer_norm {
            Some(LayerNorm::new(
                w,
                &key("feature_projection.layer_norm"),
                cin,
                c.layer_norm_eps,
            )?)
        } else {
            None
        };
        let hidden = c.hidden_size;
        let projection = Linear::new(w, &key("feature_projection.projection"), cin, hidden)?;

        // The positional convolution's weight norm (over every dimension but the
        // kernel's): w = g v / |v|. Newer transformers store g, v as parametrizations.
        let k = c.num_conv_pos_embeddings;
        let groups = c.num_conv_pos_embedding_groups;
        let pos = key("encoder.pos_conv_embed.conv");
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
        let encoder_norm = LayerNorm::new(w, &key("encoder.layer_norm"), hidden, c.layer_norm_eps)?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = key(&format!("encoder.layers.{i}"));
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
                    pre_norm: c.do_stable_layer_norm,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // Only used for masked training.
        w.skip(&key("masked_spec_embed"));
        Ok(Self {
            conv,
            conv_norm,
            projection_norm,
            projection,
            position,
            position_trim: k % 2 == 0,
            encoder_norm,
            stable_layer_norm: c.do_stable_layer_norm,
            layers,
            hop: c.hop(),
            hidden,
        })
    }

    /// Features per hidden state.
    pub fn hidden_size(&self) -> i64 {
        self.hidden
    }

    /// Samples per feature frame.
    pub fn hop(&self) -> i64 {
        self.hop
    }

    /// The convolutional features `(N, C, frames)` of `audio` `(N, samples)`.
    pub fn conv_features(&self, audio: &Tensor) -> Tensor {
        let mut x = audio.unsqueeze(1);
        for (i, conv) in self.conv.iter().enumerate() {
            x = conv.forward(&x);
            match &self.conv_norm {
                ConvNorm::FirstGroup(weight, bias) if i == 0 => {
                    let channels = x.size()[1];
                    x = x.group_norm(channels, Some(weight), Some(bias), 1e-5, false);
                }
                ConvNorm::EveryLayer(norms) => {
                    x = norms[i].forward(&x.transpose(1, 2)).transpose(1, 2);
                }
                ConvNorm::FirstGroup(..) => {}
            }
            x = x.gelu("none");
        }
        x
    }

    /// Every hidden state from convolutional features `(N, C, frames)`, as
    /// `output_hidden_states=True` gives them: the encoder's input, each layer's output,
    /// the last one being `last_hidden_state` (`(N, frames, hidden)` each).
    pub fn hidden_states(&self, conv: &Tensor) -> Vec<Tensor> {
        let mut h = conv.transpose(1, 2);
        if let Some(norm) = &self.projection_norm {
            h = norm.forward(&h);
        }
        h = self.projection.forward(&h);
        let mut position = self.position.forward(&h.transpose(1, 2));
        if self.position_trim {
            let t = position.size()[2];
            position = position.narrow(2, 0, t - 1);
        }
        h += position.gelu("none").transpose(1, 2);
        if !self.stable_layer_norm {
            h = self.encoder_norm.forward(&h);
        }
        let mut states = vec![h.shallow_clone()];
        for layer in &self.layers {
            h = layer.forward(&h);
            states.push(h.shallow_clone());
        }
        if self.stable_layer_norm {
            let last = self.encoder_norm.forward(&h);
            *states.last_mut().expect("at least the input") = last;
        }
        states
    }

    /// `last_hidden_state` of convolutional features.
    pub fn last_hidden_state(&self, conv: &Tensor) -> Tensor {
        self.hidden_states(conv).pop().expect("at least the input")
    }
}
