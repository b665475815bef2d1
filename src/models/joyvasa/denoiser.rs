//! JoyVASA's denoising network: a transformer decoder (post-norm, GELU) over the
//! previous window's last motions followed by the noisy motions of this window, with
//! cross-attention to the audio features of the same frames (each frame sees only its
//! own audio frame: the alignment mask), a sinusoidal position encoding and a
//! diffusion-step embedding added to every frame. It predicts the clean motion (x0) of
//! every frame, previous ones included.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::nn::layers::{LayerNorm, Linear};
use crate::nn::weights::{Weights, WeightsError};

type Result<T> = std::result::Result<T, WeightsError>;

/// The official loader builds the network with these, whatever the checkpoint's `args`
/// say (see the fixture README): only the layer count can be read from the weights.
pub const HEADS: i64 = 8;
pub const MLP_RATIO: i64 = 4;
/// Length of the diffusion-step table (`PositionalEncoding(max_len = 500 + 1)`: the
/// network's default step count, which the loader does not override).
pub const STEP_TABLE_LEN: i64 = 501;
/// Length of the frame-position table (`PositionalEncoding` default).
pub const POSITION_TABLE_LEN: i64 = 600;
const LAYER_NORM_EPS: f64 = 1e-5;

/// How the frame positions are encoded. The reference fixed a bug after the public
/// weights were trained: before, every frame got the same vector (the one of position
/// `L`, the sequence length), i.e. no position at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PositionalEncoding {
    /// Frame `i` gets the table's row `i` (the reference since commit 74290f6).
    Fixed,
    /// Every frame gets row `L` (the reference before 74290f6, as the public weights
    /// were trained).
    #[default]
    Bug,
}

/// The sinusoidal table of DiffPoseTalk's `PositionalEncoding`, `(len, dim)`: sines in
/// the even columns, cosines in the odd ones, computed in float32 as the reference.
pub fn sinusoid_table(len: i64, dim: i64) -> Tensor {
    let position = Tensor::arange(len, (Kind::Float, tch::Device::Cpu)).unsqueeze(1);
    let frequency = (Tensor::arange_start_step(0, dim, 2, (Kind::Float, tch::Device::Cpu))
        * (-(10000f64.ln()) / dim as f64))
        .exp();
    let angle = position * frequency;
    Tensor::stack(&[angle.sin(), angle.cos()], 2).view([len, dim])
}

struct Attention {
    in_weight: Tensor,
    in_bias: Tensor,
    out: Linear,
}

impl Attention {
    fn new(w: &mut Weights, key: &str, dim: i64) -> Result<Self> {
        Ok(Self {
            in_weight: w.take(&format!("{key}.in_proj_weight"), &[3 * dim, dim])?,
            in_bias: w.take(&format!("{key}.in_proj_bias"), &[3 * dim])?,
            out: Linear::new(w, &format!("{key}.out_proj"), dim, dim)?,
        })
    }

    /// `nn.MultiheadAttention` (batch first): `query (N, T, C)`, `memory (N, S, C)`,
    /// `mask (T, S)` added to the scores (0 or -inf).
    fn forward(&self, query: &Tensor, memory: &Tensor, mask: Option<&Tensor>) -> Tensor {
        let (n, t, c) = query.size3().expect("(N, T, C)");
        let s = memory.size()[1];
        let head = c / HEADS;
        let weights = self.in_weight.split(c, 0);
        let biases = self.in_bias.split(c, 0);
        let project = |x: &Tensor, i: usize, len: i64| {
            x.linear(&weights[i], Some(&biases[i]))
                .view([n, len, HEADS, head])
                .transpose(1, 2)
        };
        let q = project(query, 0, t) * (head as f64).powf(-0.5);
        let k = project(memory, 1, s);
        let v = project(memory, 2, s);
        let mut scores = q.matmul(&k.transpose(-2, -1));
        if let Some(mask) = mask {
            scores += mask;
        }
        let mixed = scores
            .softmax(-1, Kind::Float)
            .matmul(&v)
            .transpose(1, 2)
            .reshape([n, t, c]);
        self.out.forward(&mixed)
    }
}

/// `nn.TransformerDecoderLayer(norm_first=False, activation="gelu")`.
struct DecoderLayer {
    self_attn: Attention,
    cross_attn: Attention,
    linear1: Linear,
    linear2: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
    norm3: LayerNorm,
}

impl DecoderLayer {
    fn new(w: &mut Weights, key: &str, dim: i64) -> Result<Self> {
        let norm = |w: &mut Weights, name: &str| {
            LayerNorm::new(w, &format!("{key}.{name}"), dim, LAYER_NORM_EPS)
        };
        Ok(Self {
            self_attn: Attention::new(w, &format!("{key}.self_attn"), dim)?,
            cross_attn: Attention::new(w, &format!("{key}.multihead_attn"), dim)?,
            linear1: Linear::new(w, &format!("{key}.linear1"), dim, MLP_RATIO * dim)?,
            linear2: Linear::new(w, &format!("{key}.linear2"), MLP_RATIO * dim, dim)?,
            norm1: norm(w, "norm1")?,
            norm2: norm(w, "norm2")?,
            norm3: norm(w, "norm3")?,
        })
    }

    fn forward(&self, x: &Tensor, memory: &Tensor, memory_mask: Option<&Tensor>) -> Tensor {
        let x = self
            .norm1
            .forward(&(x + self.self_attn.forward(x, x, None)));
        let x = self
            .norm2
            .forward(&(&x + self.cross_attn.forward(&x, memory, memory_mask)));
        let fed = self.linear2.forward(&self.linear1.forward(&x).gelu("none"));
        self.norm3.forward(&(x + fed))
    }
}

/// Sizes of the denoiser, from the checkpoint's constructor arguments.
#[derive(Debug, Clone, Copy)]
pub struct DenoiserShape {
    pub motion_feat_dim: i64,
    pub feature_dim: i64,
    pub n_prev_motions: i64,
    pub n_motions: i64,
}

pub struct Denoiser {
    step_table: Tensor,
    step_map: (Linear, Linear),
    position_table: Tensor,
    feature_proj: Linear,
    layers: Vec<DecoderLayer>,
    /// Additive cross-attention mask `(L_p + L, L_p + L)`: 0 where a frame may look, -inf
    /// elsewhere.
    alignment: Tensor,
    motion_dec: (Linear, Linear),
    positions: PositionalEncoding,
    shape: DenoiserShape,
}

impl Denoiser {
    /// Builds the network from `w` (keys under `denoising_net.`); the layer count comes
    /// from the weights (`layers` when recording shapes).
    pub fn new(
        w: &mut Weights,
        shape: DenoiserShape,
        positions: PositionalEncoding,
        layers: Option<usize>,
    ) -> Result<Self> {
        let p = "denoising_net";
        let dim = shape.feature_dim;
        if dim % HEADS != 0 || dim < 2 {
            return Err(WeightsError::Read {
                file: w.file().to_path_buf(),
                detail: format!("feature_dim {dim} is not a multiple of the {HEADS} heads"),
            });
        }
        let count = layers.unwrap_or_else(|| {
            let prefix = format!("{p}.transformer.layers.");
            w.keys()
                .iter()
                .filter_map(|k| k.strip_prefix(&prefix)?.split('.').next()?.parse().ok())
                .map(|i: usize| i + 1)
                .max()
                .unwrap_or(0)
        });
        if count == 0 {
            return Err(WeightsError::Missing {
                file: w.file().to_path_buf(),
                key: format!("{p}.transformer.layers.0.self_attn.in_proj_weight"),
                expected: vec![3 * dim, dim],
            });
        }
        // The loader drops the stored step table and rebuilds it (same values).
        w.skip(&format!("{p}.TE.pe"));
        let step_table = sinusoid_table(STEP_TABLE_LEN, dim).to_device(w.device());
        let position_table = w
            .take(&format!("{p}.PE.pe"), &[1, POSITION_TABLE_LEN, dim])?
            .squeeze_dim(0);
        let len = shape.n_prev_motions + shape.n_motions;
        let blocked = w.take_bool(&format!("{p}.alignment_mask"), &[len, len])?;
        let alignment = Tensor::zeros([len, len], (Kind::Float, w.device()))
            .masked_fill(&blocked, f64::NEG_INFINITY);
        Ok(Self {
            step_table,
            step_map: (
                Linear::new(w, &format!("{p}.diff_step_map.0"), dim, dim)?,
                Linear::new(w, &format!("{p}.diff_step_map.2"), dim, dim)?,
            ),
            position_table,
            feature_proj: Linear::new(w, &format!("{p}.feature_proj"), shape.motion_feat_dim, dim)?,
            layers: (0..count)
                .map(|i| DecoderLayer::new(w, &format!("{p}.transformer.layers.{i}"), dim))
                .collect::<Result<_>>()?,
            alignment,
            motion_dec: (
                Linear::new(w, &format!("{p}.motion_dec.0"), dim, dim / 2)?,
                Linear::new(
                    w,
                    &format!("{p}.motion_dec.2"),
                    dim / 2,
                    shape.motion_feat_dim,
                )?,
            ),
            positions,
            shape,
        })
    }

    pub fn shape(&self) -> DenoiserShape {
        self.shape
    }

    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// The diffusion-step embedding input for `steps` `(N,)` int64: `(N, dim)`.
    pub fn step_embedding_input(&self, steps: &Tensor) -> Tensor {
        self.step_table.index_select(0, steps)
    }

    /// Clean-motion prediction `(N, L_p + L, motion_feat_dim)` from the noisy motions
    /// `x_t (N, L, d)`, audio features `(N, L, F)`, the previous motions and audio
    /// features `(N, L_p, ·)` and the diffusion steps `(N,)` int64.
    pub fn forward(
        &self,
        x_t: &Tensor,
        audio: &Tensor,
        prev_motion: &Tensor,
        prev_audio: &Tensor,
        steps: &Tensor,
    ) -> Tensor {
        let step = self.step_embedding_input(steps);
        let step = self
            .step_map
            .1
            .forward(&self.step_map.0.forward(&step).gelu("none"))
            .unsqueeze(1);
        let motions = Tensor::cat(&[prev_motion, x_t], 1);
        let len = motions.size()[1];
        let mut x = self.feature_proj.forward(&motions);
        x = match self.positions {
            PositionalEncoding::Fixed => x + self.position_table.narrow(0, 0, len).unsqueeze(0),
            PositionalEncoding::Bug => x + self.position_table.get(len).view([1, 1, -1]),
        };
        x += step;
        let memory = Tensor::cat(&[prev_audio, audio], 1);
        for layer in &self.layers {
            x = layer.forward(&x, &memory, Some(&self.alignment));
        }
        self.motion_dec
            .1
            .forward(&self.motion_dec.0.forward(&x).gelu("none"))
    }
}
