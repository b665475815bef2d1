//! The appearance feature extractor F: portrait (B, 3, 256, 256) -> 3-D feature volume
//! (B, reshape_channel, reshape_depth, 64, 64).

use tch::{Kind, Tensor};

use super::config::AppearanceConfig;
use crate::nn::layers::{BatchNorm, Conv, ConvSpec};
use crate::nn::weights::{Weights, WeightsError};

/// Convolution, BatchNorm, ReLU, then an optional 2x2 average pool (SameBlock2d /
/// DownBlock2d / DownBlock3d of the reference).
pub(super) struct ConvNormRelu {
    conv: Conv,
    norm: BatchNorm,
    leaky: bool,
}

impl ConvNormRelu {
    pub(super) fn new(
        w: &mut Weights,
        key: &str,
        cin: i64,
        cout: i64,
        kernel: &[i64],
        leaky: bool,
    ) -> Result<Self, WeightsError> {
        Ok(Self {
            conv: Conv::new(
                w,
                &format!("{key}.conv"),
                cin,
                cout,
                ConvSpec::new(kernel, 1),
            )?,
            norm: BatchNorm::new(w, &format!("{key}.norm"), cout)?,
            leaky,
        })
    }

    pub(super) fn forward(&self, x: &Tensor) -> Tensor {
        let y = self.norm.forward(&self.conv.forward(x));
        if self.leaky { y.leaky_relu() } else { y.relu() }
    }
}

/// Pre-activation 3-D residual block (BN, ReLU, conv, BN, ReLU, conv, + input).
struct ResBlock3d {
    norm1: BatchNorm,
    conv1: Conv,
    norm2: BatchNorm,
    conv2: Conv,
}

impl ResBlock3d {
    fn new(w: &mut Weights, key: &str, channels: i64) -> Result<Self, WeightsError> {
        let spec = || ConvSpec::new(&[3, 3, 3], 1);
        Ok(Self {
            conv1: Conv::new(w, &format!("{key}.conv1"), channels, channels, spec())?,
            conv2: Conv::new(w, &format!("{key}.conv2"), channels, channels, spec())?,
            norm1: BatchNorm::new(w, &format!("{key}.norm1"), channels)?,
            norm2: BatchNorm::new(w, &format!("{key}.norm2"), channels)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let y = self.conv1.forward(&self.norm1.forward(x).relu());
        let y = self.conv2.forward(&self.norm2.forward(&y).relu());
        y + x
    }
}

pub struct AppearanceFeatureExtractor {
    first: ConvNormRelu,
    down: Vec<ConvNormRelu>,
    second: Conv,
    resblocks: Vec<ResBlock3d>,
    reshape_channel: i64,
    reshape_depth: i64,
    /// What it computes in (see [`crate::core::precision`]).
    kind: Kind,
}

impl AppearanceFeatureExtractor {
    pub fn new(w: &mut Weights, c: &AppearanceConfig) -> Result<Self, WeightsError> {
        let first = ConvNormRelu::new(
            w,
            "first",
            c.image_channel,
            c.block_expansion,
            &[3, 3],
            false,
        )?;
        let mut down = Vec::new();
        let mut features = c.block_expansion;
        for i in 0..c.num_down_blocks {
            let cin = c.max_features.min(c.block_expansion << i);
            features = c.max_features.min(c.block_expansion << (i + 1));
            down.push(ConvNormRelu::new(
                w,
                &format!("down_blocks.{i}"),
                cin,
                features,
                &[3, 3],
                false,
            )?);
        }
        let second = Conv::new(
            w,
            "second",
            features,
            c.max_features,
            ConvSpec::new(&[1, 1], 0),
        )?;
        let resblocks = (0..c.num_resblocks)
            .map(|i| ResBlock3d::new(w, &format!("resblocks_3d.3dr{i}"), c.reshape_channel))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            first,
            down,
            second,
            resblocks,
            reshape_channel: c.reshape_channel,
            reshape_depth: c.reshape_depth,
            kind: w.compute_kind(),
        })
    }

    /// The feature volume of `image` (float32 in, float32 out).
    pub fn forward(&self, image: &Tensor) -> Tensor {
        let mut x = self.first.forward(&image.to_kind(self.kind));
        for block in &self.down {
            x = block
                .forward(&x)
                .avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None);
        }
        let x = self.second.forward(&x);
        let (b, _, h, w) = x.size4().expect("4-D");
        let mut f = x.view([b, self.reshape_channel, self.reshape_depth, h, w]);
        for block in &self.resblocks {
            f = block.forward(&f);
        }
        f.to_kind(Kind::Float)
    }
}
