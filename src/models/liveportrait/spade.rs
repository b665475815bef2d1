//! The SPADE generator G: the warped 2-D feature map (B, C, 64, 64) -> image
//! (B, 3, 512, 512), through residual blocks whose normalisation is modulated by the
//! feature map itself. Spectrally normalised convolutions are folded at load.

use tch::{Kind, Tensor};

use super::config::SpadeConfig;
use crate::nn::layers::{Conv, ConvSpec, instance_norm};
use crate::nn::weights::{Weights, WeightsError};

type Result<T> = std::result::Result<T, WeightsError>;

/// Hidden width of every SPADE modulation network (fixed in the reference).
const SPADE_HIDDEN: i64 = 128;

struct Spade {
    shared: Conv,
    gamma: Conv,
    beta: Conv,
}

impl Spade {
    fn new(w: &mut Weights, key: &str, channels: i64, label: i64) -> Result<Self> {
        let spec = || ConvSpec::new(&[3, 3], 1);
        Ok(Self {
            shared: Conv::new(
                w,
                &format!("{key}.mlp_shared.0"),
                label,
                SPADE_HIDDEN,
                spec(),
            )?,
            gamma: Conv::new(
                w,
                &format!("{key}.mlp_gamma"),
                SPADE_HIDDEN,
                channels,
                spec(),
            )?,
            beta: Conv::new(
                w,
                &format!("{key}.mlp_beta"),
                SPADE_HIDDEN,
                channels,
                spec(),
            )?,
        })
    }

    fn forward(&self, x: &Tensor, segmap: &Tensor) -> Tensor {
        let normalised = instance_norm(x);
        let size = x.size();
        let seg = segmap.upsample_nearest2d([size[2], size[3]], None, None);
        let actv = self.shared.forward(&seg).relu();
        normalised * (self.gamma.forward(&actv) + 1.0) + self.beta.forward(&actv)
    }
}

struct SpadeResBlock {
    norm_0: Spade,
    conv_0: Conv,
    norm_1: Spade,
    conv_1: Conv,
    shortcut: Option<(Spade, Conv)>,
}

impl SpadeResBlock {
    fn new(w: &mut Weights, key: &str, fin: i64, fout: i64, label: i64) -> Result<Self> {
        let middle = fin.min(fout);
        let k3 = || ConvSpec::new(&[3, 3], 1);
        let shortcut = if fin != fout {
            let mut k1 = ConvSpec::new(&[1, 1], 0);
            k1.bias = false;
            Some((
                Spade::new(w, &format!("{key}.norm_s"), fin, label)?,
                Conv::spectral(w, &format!("{key}.conv_s"), fin, fout, k1)?,
            ))
        } else {
            None
        };
        Ok(Self {
            conv_0: Conv::spectral(w, &format!("{key}.conv_0"), fin, middle, k3())?,
            conv_1: Conv::spectral(w, &format!("{key}.conv_1"), middle, fout, k3())?,
            norm_0: Spade::new(w, &format!("{key}.norm_0"), fin, label)?,
            norm_1: Spade::new(w, &format!("{key}.norm_1"), middle, label)?,
            shortcut,
        })
    }

    fn forward(&self, x: &Tensor, seg: &Tensor) -> Tensor {
        let skip = match &self.shortcut {
            Some((norm, conv)) => conv.forward(&norm.forward(x, seg)),
            None => x.shallow_clone(),
        };
        let dx = self.conv_0.forward(&leaky(&self.norm_0.forward(x, seg)));
        let dx = self.conv_1.forward(&leaky(&self.norm_1.forward(&dx, seg)));
        skip + dx
    }
}

/// Leaky ReLU with the slope the generator uses (0.2).
fn leaky(x: &Tensor) -> Tensor {
    x.relu() + x.clamp_max(0.0) * 0.2
}

pub struct SpadeGenerator {
    fc: Conv,
    middle: Vec<SpadeResBlock>,
    up_0: SpadeResBlock,
    up_1: SpadeResBlock,
    conv_img: Conv,
    upscale: bool,
    /// What it computes in (see [`crate::core::precision`]).
    kind: Kind,
}

impl SpadeGenerator {
    pub fn new(w: &mut Weights, c: &SpadeConfig) -> Result<Self> {
        let input = c.max_features.min(c.block_expansion << c.num_down_blocks);
        let wide = 2 * input;
        let middle = (0..6)
            .map(|i| SpadeResBlock::new(w, &format!("G_middle_{i}"), wide, wide, input))
            .collect::<Result<Vec<_>>>()?;
        let upscale = c.upscale > 1;
        let (img_key, img_out) = if upscale {
            ("conv_img.0", 12)
        } else {
            ("conv_img", 3)
        };
        Ok(Self {
            fc: Conv::new(w, "fc", input, wide, ConvSpec::new(&[3, 3], 1))?,
            middle,
            up_0: SpadeResBlock::new(w, "up_0", wide, input, input)?,
            up_1: SpadeResBlock::new(w, "up_1", input, c.out_channels, input)?,
            conv_img: Conv::new(
                w,
                img_key,
                c.out_channels,
                img_out,
                ConvSpec::new(&[3, 3], 1),
            )?,
            upscale,
            kind: w.compute_kind(),
        })
    }

    /// The image before the final sigmoid (float32 in, float32 out).
    pub fn logits(&self, feature: &Tensor) -> Tensor {
        let feature = &feature.to_kind(self.kind);
        let mut x = self.fc.forward(feature);
        for block in &self.middle {
            x = block.forward(&x, feature);
        }
        let up = |t: &Tensor| {
            let s = t.size();
            t.upsample_nearest2d([s[2] * 2, s[3] * 2], 2.0, 2.0)
        };
        let x = self.up_0.forward(&up(&x), feature);
        let x = self.up_1.forward(&up(&x), feature);
        let x = self.conv_img.forward(&leaky(&x)).to_kind(Kind::Float);
        if self.upscale { x.pixel_shuffle(2) } else { x }
    }

    pub fn forward(&self, feature: &Tensor) -> Tensor {
        self.logits(feature).sigmoid()
    }
}
