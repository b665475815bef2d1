//! The building blocks of the networks (LivePortrait's and JoyVASA's), as plain tensors
//! with a forward function each, named by the keys of the official checkpoints.
//!
//! Convolution and linear weights come in the compute kind of their [`Weights`]
//! (float32, or a 16-bit kind, see [`crate::core::precision`]); normalisation parameters stay
//! float32 and normalisations compute their statistics in float32.

use tch::{Kind, Tensor};

use super::weights::{Weights, WeightsError};

type Result<T> = std::result::Result<T, WeightsError>;

/// A 1-D, 2-D or 3-D convolution (`kernel.len()` says which), stride 1 unless given.
pub struct Conv {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: Vec<i64>,
    padding: Vec<i64>,
    dilation: Vec<i64>,
    groups: i64,
    /// bfloat16 on a CPU without bfloat16 instructions: the weights hold bfloat16 values
    /// in float32, and the convolution computes in float32 on the bfloat16 input and
    /// rounds its result to bfloat16, which is what a native bfloat16 convolution does
    /// (it accumulates in float32), at float32's speed instead of libtorch's
    /// element-by-element emulation (see `core::precision::native_bfloat16_on_cpu`).
    widened: bool,
}

pub struct ConvSpec<'a> {
    pub kernel: &'a [i64],
    pub stride: i64,
    pub padding: i64,
    pub dilation: i64,
    pub groups: i64,
    pub bias: bool,
}

impl ConvSpec<'_> {
    pub const fn new(kernel: &[i64], padding: i64) -> ConvSpec<'_> {
        ConvSpec {
            kernel,
            stride: 1,
            padding,
            dilation: 1,
            groups: 1,
            bias: true,
        }
    }

    /// (out, in / groups, kernel...), as PyTorch stores convolution weights.
    fn weight_shape(&self, cin: i64, cout: i64) -> Vec<i64> {
        let mut shape = vec![cout, cin / self.groups];
        shape.extend_from_slice(self.kernel);
        shape
    }
}

impl Conv {
    pub fn new(
        w: &mut Weights,
        key: &str,
        cin: i64,
        cout: i64,
        spec: ConvSpec<'_>,
    ) -> Result<Self> {
        let weight = w.take(&format!("{key}.weight"), &spec.weight_shape(cin, cout))?;
        Self::with_weight(w, key, weight, cout, spec)
    }

    /// A spectrally normalised convolution (`weight_orig`, `weight_u`, `weight_v`), its
    /// weight folded once: W = W_orig / (u . (W_orig v)), as eval() computes it (no power
    /// iteration). Folded in float32 whatever the compute kind.
    pub fn spectral(
        w: &mut Weights,
        key: &str,
        cin: i64,
        cout: i64,
        spec: ConvSpec<'_>,
    ) -> Result<Self> {
        let shape = spec.weight_shape(cin, cout);
        let original = w.take(&format!("{key}.weight_orig"), &shape)?;
        let columns: i64 = shape[1..].iter().product();
        let u = w.take(&format!("{key}.weight_u"), &[cout])?;
        let v = w.take(&format!("{key}.weight_v"), &[columns])?;
        let sigma = u.dot(&original.view([cout, columns]).mv(&v));
        let weight = &original / sigma;
        Self::with_weight(w, key, weight, cout, spec)
    }

    /// A convolution whose weight was computed at load (weight norm and the like),
    /// stored in the compute kind.
    pub fn with_weight(
        w: &mut Weights,
        key: &str,
        weight: Tensor,
        cout: i64,
        spec: ConvSpec<'_>,
    ) -> Result<Self> {
        let bias = if spec.bias {
            Some(w.take_compute(&format!("{key}.bias"), &[cout])?)
        } else {
            None
        };
        let dims = spec.kernel.len();
        let widened = w.compute_kind() == Kind::BFloat16
            && w.device() == tch::Device::Cpu
            && !crate::core::precision::native_bfloat16_on_cpu();
        let weight = weight.to_kind(w.compute_kind());
        let (weight, bias) = if widened {
            (
                weight.to_kind(Kind::Float),
                bias.map(|b| b.to_kind(Kind::Float)),
            )
        } else {
            (weight, bias)
        };
        Ok(Self {
            weight,
            bias,
            widened,
            stride: vec![spec.stride; dims],
            padding: vec![spec.padding; dims],
            dilation: vec![spec.dilation; dims],
            groups: spec.groups,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        if self.widened {
            return self
                .convolve(&x.to_kind(Kind::BFloat16).to_kind(Kind::Float))
                .to_kind(Kind::BFloat16);
        }
        self.convolve(x)
    }

    fn convolve(&self, x: &Tensor) -> Tensor {
        // One libtorch entry point for 1-D, 2-D and 3-D (the lengths of the lists say
        // which).
        x.convolution(
            &self.weight,
            self.bias.as_ref(),
            self.stride.as_slice(),
            self.padding.as_slice(),
            self.dilation.as_slice(),
            false,
            vec![0; self.stride.len()].as_slice(),
            self.groups,
        )
    }
}

/// BatchNorm (2-D or 3-D) in eval mode: the running statistics. Parameters in float32
/// for any input kind (libtorch's mixed-kind batch norm).
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    mean: Tensor,
    var: Tensor,
}

impl BatchNorm {
    pub fn new(w: &mut Weights, key: &str, channels: i64) -> Result<Self> {
        let norm = Self {
            weight: w.take(&format!("{key}.weight"), &[channels])?,
            bias: w.take(&format!("{key}.bias"), &[channels])?,
            mean: w.take(&format!("{key}.running_mean"), &[channels])?,
            var: w.take(&format!("{key}.running_var"), &[channels])?,
        };
        w.skip(&format!("{key}.num_batches_tracked"));
        Ok(norm)
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.mean),
            Some(&self.var),
            false,
            0.1,
            1e-5,
            true,
        )
    }
}

pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    pub fn new(w: &mut Weights, key: &str, fin: i64, fout: i64) -> Result<Self> {
        Ok(Self {
            weight: w.take_compute(&format!("{key}.weight"), &[fout, fin])?,
            bias: w.take_compute(&format!("{key}.bias"), &[fout])?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, Some(&self.bias))
    }
}

/// LayerNorm over the last dimension (channels last), computed in float32 and returned
/// in the input's kind.
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(w: &mut Weights, key: &str, channels: i64, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: w.take(&format!("{key}.weight"), &[channels])?,
            bias: w.take(&format!("{key}.bias"), &[channels])?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let channels = self.weight.size()[0];
        x.to_kind(Kind::Float)
            .layer_norm(
                [channels],
                Some(&self.weight),
                Some(&self.bias),
                self.eps,
                true,
            )
            .to_kind(x.kind())
    }

    /// Over dimension 1 of (N, C, H, W), computed as the reference's channels-first
    /// variant does (mean, biased variance, then the affine).
    pub fn forward_channels_first(&self, input: &Tensor) -> Tensor {
        let x = input.to_kind(Kind::Float);
        let mean = x.mean_dim(1, true, None);
        let centred = x - &mean;
        let var = centred.pow_tensor_scalar(2).mean_dim(1, true, None);
        let normalised = centred / (var + self.eps).sqrt();
        (self.weight.view([1, -1, 1, 1]) * normalised + self.bias.view([1, -1, 1, 1]))
            .to_kind(input.kind())
    }
}

/// InstanceNorm without affine parameters (eps 1e-5).
pub fn instance_norm(x: &Tensor) -> Tensor {
    x.instance_norm(None::<&Tensor>, None, None, None, true, 0.1, 1e-5, true)
}
