//! Ditto's LMDM denoiser (`MotionDecoder` of ditto-talkinghead's lmdm_modules/model.py):
//! a transformer over 80 frames of LivePortrait motion (265 values each) that predicts
//! the clean motion from a noisy one, given per-frame conditions (audio features,
//! emotion, eye state, source keypoints), the previous frame's motion and the diffusion
//! time. Rotary positions on queries and keys (the whole latent, before the heads
//! split), a two-layer condition encoder, FiLM from the time and the pooled condition,
//! cross-attention to the condition tokens plus two time tokens.
//!
//! Sizes come from the weights; the head count, which they do not hold, from the
//! caller (the official model has 8).

use tch::{Kind, Tensor};

use crate::nn::layers::{LayerNorm, Linear};
use crate::nn::weights::{Weights, WeightsError};

type Result<T> = std::result::Result<T, WeightsError>;

/// torch.nn.MultiheadAttention (batch first, no mask), queries and keys given apart
/// from the values as the reference passes them.
struct Attention {
    in_weight: Tensor,
    in_bias: Tensor,
    out: Linear,
    heads: i64,
}

impl Attention {
    fn new(w: &mut Weights, key: &str, dim: i64, heads: i64) -> Result<Self> {
        Ok(Self {
            in_weight: w.take_compute(&format!("{key}.in_proj_weight"), &[3 * dim, dim])?,
            in_bias: w.take_compute(&format!("{key}.in_proj_bias"), &[3 * dim])?,
            out: Linear::new(w, &format!("{key}.out_proj"), dim, dim)?,
            heads,
        })
    }

    fn forward(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
        let dim = self.in_weight.size()[1];
        let project = |x: &Tensor, i: i64| {
            x.linear(
                &self.in_weight.narrow(0, i * dim, dim),
                Some(&self.in_bias.narrow(0, i * dim, dim)),
            )
        };
        let (b, tq, _) = q.size3().expect("(B, T, C)");
        let tk = k.size()[1];
        let head = dim / self.heads;
        let split = |x: Tensor, t: i64| x.view([b, t, self.heads, head]).transpose(1, 2);
        let q = split(project(q, 0), tq) * (head as f64).powf(-0.5);
        let k = split(project(k, 1), tk);
        let v = split(project(v, 2), tk);
        let weights = q.matmul(&k.transpose(-2, -1)).softmax(-1, Kind::Float);
        let mixed = weights.matmul(&v).transpose(1, 2).reshape([b, tq, dim]);
        self.out.forward(&mixed)
    }
}

/// Rotary position embedding over the whole feature (rotary_embedding_torch, "lang"
/// frequencies, pairs of neighbouring features rotated together).
struct Rotary {
    /// `(dim / 2)` frequencies.
    freqs: Tensor,
}

impl Rotary {
    /// The checkpoint's own frequencies (`stored`) where it has them, else the formula
    /// `1 / 10000^(2i / dim)`.
    fn new(dim: i64, stored: Option<Tensor>) -> Self {
        let freqs = stored.unwrap_or_else(|| {
            let values: Vec<f32> = (0..dim / 2)
                .map(|i| (1.0 / 10000f64.powf((2 * i) as f64 / dim as f64)) as f32)
                .collect();
            Tensor::from_slice(&values)
        });
        Self { freqs }
    }

    /// Rotates `(B, T, dim)` by position along T.
    fn rotate(&self, x: &Tensor) -> Tensor {
        let (_, t, dim) = x.size3().expect("(B, T, C)");
        let freqs = self.freqs.to_device(x.device()).to_kind(x.kind());
        let positions = Tensor::arange(t, (x.kind(), x.device()));
        // (T, dim/2) -> (T, dim) with each frequency twice: f0 f0 f1 f1 ...
        let angles = positions
            .unsqueeze(1)
            .matmul(&freqs.unsqueeze(0))
            .unsqueeze(-1)
            .repeat([1, 1, 2])
            .reshape([t, dim]);
        let pairs = x.view([-1, t, dim / 2, 2]);
        let (even, odd) = (pairs.select(-1, 0), pairs.select(-1, 1));
        let half_turned = Tensor::stack(&[-odd, even], -1).reshape(x.size());
        x * angles.cos() + half_turned * angles.sin()
    }
}

struct EncoderLayer {
    attention: Attention,
    linear1: Linear,
    linear2: Linear,
    norm1: LayerNorm,
    norm2: LayerNorm,
}

impl EncoderLayer {
    fn new(w: &mut Weights, key: &str, dim: i64, ff: i64, heads: i64) -> Result<Self> {
        Ok(Self {
            attention: Attention::new(w, &format!("{key}.self_attn"), dim, heads)?,
            linear1: Linear::new(w, &format!("{key}.linear1"), dim, ff)?,
            linear2: Linear::new(w, &format!("{key}.linear2"), ff, dim)?,
            norm1: LayerNorm::new(w, &format!("{key}.norm1"), dim, 1e-5)?,
            norm2: LayerNorm::new(w, &format!("{key}.norm2"), dim, 1e-5)?,
        })
    }

    fn forward(&self, x: &Tensor, rotary: &Rotary) -> Tensor {
        let normed = self.norm1.forward(x);
        let qk = rotary.rotate(&normed);
        let x = x + self.attention.forward(&qk, &qk, &normed);
        let fed = self
            .linear2
            .forward(&self.linear1.forward(&self.norm2.forward(&x)).gelu("none"));
        x + fed
    }
}

/// FiLM: Mish, then a linear layer giving a scale and a shift per feature.
struct Film(Linear);

impl Film {
    fn apply(&self, x: &Tensor, t: &Tensor) -> Tensor {
        let both = self.0.forward(&t.mish()).unsqueeze(1);
        let halves = both.chunk(2, -1);
        (&halves[0] + 1.0) * x + &halves[1]
    }
}

struct DecoderLayer {
    self_attention: Attention,
    cross_attention: Attention,
    linear1: Linear,
    linear2: Linear,
    norms: [LayerNorm; 3],
    films: [Film; 3],
}

impl DecoderLayer {
    fn new(w: &mut Weights, key: &str, dim: i64, ff: i64, heads: i64) -> Result<Self> {
        let norm =
            |w: &mut Weights, i: usize| LayerNorm::new(w, &format!("{key}.norm{i}"), dim, 1e-5);
        let film = |w: &mut Weights, i: usize| {
            Linear::new(w, &format!("{key}.film{i}.block.1"), dim, 2 * dim).map(Film)
        };
        Ok(Self {
            self_attention: Attention::new(w, &format!("{key}.self_attn"), dim, heads)?,
            cross_attention: Attention::new(w, &format!("{key}.multihead_attn"), dim, heads)?,
            linear1: Linear::new(w, &format!("{key}.linear1"), dim, ff)?,
            linear2: Linear::new(w, &format!("{key}.linear2"), ff, dim)?,
            norms: [norm(w, 1)?, norm(w, 2)?, norm(w, 3)?],
            films: [film(w, 1)?, film(w, 2)?, film(w, 3)?],
        })
    }

    fn forward(&self, x: &Tensor, memory: &Tensor, t: &Tensor, rotary: &Rotary) -> Tensor {
        let normed = self.norms[0].forward(x);
        let qk = rotary.rotate(&normed);
        let attended = self.self_attention.forward(&qk, &qk, &normed);
        let x = x + self.films[0].apply(&attended, t);
        let normed = self.norms[1].forward(&x);
        let crossed =
            self.cross_attention
                .forward(&rotary.rotate(&normed), &rotary.rotate(memory), memory);
        let x = &x + self.films[1].apply(&crossed, t);
        let fed = self.linear2.forward(
            &self
                .linear1
                .forward(&self.norms[2].forward(&x))
                .gelu("none"),
        );
        &x + self.films[2].apply(&fed, t)
    }
}

/// Which branch of classifier-free guidance a call computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Branch {
    /// With the conditions.
    Conditioned,
    /// With the learned null condition in their place (the previous frame is kept).
    Null,
}

/// The denoiser.
pub struct MotionDecoder {
    latent: i64,
    /// Motion values per frame (265).
    pub motion_dim: i64,
    /// Condition values per frame.
    pub cond_dim: i64,
    /// Frames per window (80).
    pub seq_len: i64,
    rotary: Rotary,
    time_hidden: Linear,
    to_time_cond: Linear,
    to_time_tokens: Linear,
    null_cond_embed: Tensor,
    null_cond_hidden: Tensor,
    norm_cond: LayerNorm,
    input_projection: Linear,
    cond_encoder: Vec<EncoderLayer>,
    cond_projection: Linear,
    pooled_norm: LayerNorm,
    pooled_1: Linear,
    pooled_2: Linear,
    layers: Vec<DecoderLayer>,
    final_layer: Linear,
}

fn shape(w: &Weights, key: &str) -> Result<Vec<i64>> {
    w.shape_of(key).ok_or_else(|| WeightsError::Missing {
        file: w.file().to_path_buf(),
        key: key.to_owned(),
        expected: Vec::new(),
    })
}

impl MotionDecoder {
    /// Builds the denoiser from `w` (the `model_state_dict` of an LMDM checkpoint).
    pub fn new(w: &mut Weights, heads: i64) -> Result<Self> {
        let input = shape(w, "input_projection.weight")?;
        let (latent, input_dim) = (input[0], input[1]);
        let motion_dim = shape(w, "final_layer.weight")?[0];
        let cond_dim = shape(w, "cond_projection.weight")?[1];
        let seq_len = shape(w, "null_cond_embed")?[1];
        let ff = shape(w, "seqTransDecoder.stack.0.linear1.weight")?[0];
        let invalid = |detail: String| WeightsError::Invalid {
            file: w.file().to_path_buf(),
            key: "input_projection.weight".to_owned(),
            detail,
        };
        if input_dim != 2 * motion_dim {
            return Err(invalid(format!(
                "takes {input_dim} values, not motion and previous frame (2 x {motion_dim}): \
                 the multi-frame condition variant is not supported"
            )));
        }
        if heads <= 0 || latent % heads != 0 || latent % 2 != 0 {
            return Err(invalid(format!(
                "a latent of {latent} does not split into {heads} heads"
            )));
        }
        let layers_n = (0..)
            .take_while(|i| w.contains(&format!("seqTransDecoder.stack.{i}.linear1.weight")))
            .count();
        let encoder_n = (0..)
            .take_while(|i| w.contains(&format!("cond_encoder.{i}.linear1.weight")))
            .count();
        // The rotary frequencies are stored once per layer, the same values each time.
        let stored = if w.contains("rotary.freqs") {
            Some(w.take_compute("rotary.freqs", &[latent / 2])?)
        } else {
            None
        };
        for i in 0..layers_n {
            w.skip(&format!("seqTransDecoder.stack.{i}.rotary.freqs"));
        }
        for i in 0..encoder_n {
            w.skip(&format!("cond_encoder.{i}.rotary.freqs"));
        }
        Ok(Self {
            latent,
            motion_dim,
            cond_dim,
            seq_len,
            rotary: Rotary::new(latent, stored),
            time_hidden: Linear::new(w, "time_mlp.1", latent, 4 * latent)?,
            to_time_cond: Linear::new(w, "to_time_cond.0", 4 * latent, latent)?,
            to_time_tokens: Linear::new(w, "to_time_tokens.0", 4 * latent, 2 * latent)?,
            null_cond_embed: w.take_compute("null_cond_embed", &[1, seq_len, latent])?,
            null_cond_hidden: w.take_compute("null_cond_hidden", &[1, latent])?,
            norm_cond: LayerNorm::new(w, "norm_cond", latent, 1e-5)?,
            input_projection: Linear::new(w, "input_projection", input_dim, latent)?,
            cond_encoder: (0..encoder_n)
                .map(|i| EncoderLayer::new(w, &format!("cond_encoder.{i}"), latent, ff, heads))
                .collect::<Result<_>>()?,
            cond_projection: Linear::new(w, "cond_projection", cond_dim, latent)?,
            pooled_norm: LayerNorm::new(w, "non_attn_cond_projection.0", latent, 1e-5)?,
            pooled_1: Linear::new(w, "non_attn_cond_projection.1", latent, latent)?,
            pooled_2: Linear::new(w, "non_attn_cond_projection.3", latent, latent)?,
            layers: (0..layers_n)
                .map(|i| {
                    DecoderLayer::new(w, &format!("seqTransDecoder.stack.{i}"), latent, ff, heads)
                })
                .collect::<Result<_>>()?,
            final_layer: Linear::new(w, "final_layer", latent, motion_dim)?,
        })
    }

    pub fn layer_count(&self) -> usize {
        self.layers.len()
    }

    /// The sinusoidal embedding of diffusion times `(B)`.
    fn time_embedding(&self, times: &Tensor) -> Tensor {
        let half = self.latent / 2;
        let step = (10000f64).ln() / (half - 1) as f64;
        let options = (Kind::Float, times.device());
        let frequencies = (Tensor::arange(half, options) * -step).exp();
        let angles = times.to_kind(Kind::Float).unsqueeze(1) * frequencies.unsqueeze(0);
        Tensor::cat(&[angles.sin(), angles.cos()], -1)
    }

    /// The predicted clean motion `(B, T, motion)` for noisy `x` `(B, T, motion)`, the
    /// previous frame `(B, motion)`, conditions `(B, T, cond)` and times `(B)`.
    pub fn forward(
        &self,
        x: &Tensor,
        previous: &Tensor,
        cond: &Tensor,
        times: &Tensor,
        branch: Branch,
    ) -> Tensor {
        let frames = x.size()[1];
        let repeated = previous.unsqueeze(1).expand([-1, frames, -1], false);
        let x = self
            .input_projection
            .forward(&Tensor::cat(&[x, &repeated], -1));
        let batch = x.size()[0];
        // The null branch replaces the encoded condition by a learned one (the reference
        // encodes it first and throws it away; the result is the same).
        let tokens = match branch {
            Branch::Conditioned => {
                let mut tokens = self.cond_projection.forward(cond);
                for layer in &self.cond_encoder {
                    tokens = layer.forward(&tokens, &self.rotary);
                }
                tokens
            }
            Branch::Null => self
                .null_cond_embed
                .expand([batch, -1, -1], false)
                .contiguous(),
        };
        let pooled = tokens.mean_dim(-2, false, Kind::Float);
        let cond_hidden = match branch {
            Branch::Conditioned => self.pooled_2.forward(
                &self
                    .pooled_1
                    .forward(&self.pooled_norm.forward(&pooled))
                    .silu(),
            ),
            Branch::Null => self.null_cond_hidden.expand([batch, -1], false),
        };
        let t_hidden = self.time_hidden.forward(&self.time_embedding(times)).mish();
        let t = self.to_time_cond.forward(&t_hidden) + cond_hidden;
        let t_tokens = self
            .to_time_tokens
            .forward(&t_hidden)
            .view([batch, 2, self.latent]);
        let memory = self
            .norm_cond
            .forward(&Tensor::cat(&[&tokens, &t_tokens], -2));
        let mut h = x;
        for layer in &self.layers {
            h = layer.forward(&h, &memory, &t, &self.rotary);
        }
        self.final_layer.forward(&h)
    }

    /// Classifier-free guidance: null + (conditioned - null) x `weight`.
    pub fn guided(
        &self,
        x: &Tensor,
        previous: &Tensor,
        cond: &Tensor,
        times: &Tensor,
        weight: f64,
    ) -> Tensor {
        let null = self.forward(x, previous, cond, times, Branch::Null);
        let conditioned = self.forward(x, previous, cond, times, Branch::Conditioned);
        &null + (conditioned - &null) * weight
    }
}
