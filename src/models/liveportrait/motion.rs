//! The motion extractor M: a ConvNeXt-V2 backbone with heads for canonical keypoints,
//! head pose (66 bins each for pitch, yaw, roll), expression deltas, translation and
//! scale. Keys keep the checkpoint's `detector.` prefix.

use tch::{Kind, Tensor};

use super::config::MotionConfig;
use crate::nn::layers::{Conv, ConvSpec, LayerNorm, Linear};
use crate::nn::weights::{Weights, WeightsError};

/// The raw head outputs, as the reference's `ConvNeXtV2.forward` returns them.
pub struct MotionHeads {
    pub pitch: Tensor,
    pub yaw: Tensor,
    pub roll: Tensor,
    pub t: Tensor,
    pub exp: Tensor,
    pub scale: Tensor,
    pub kp: Tensor,
}

/// Global response normalisation (ConvNeXt-V2), channels last.
struct Grn {
    gamma: Tensor,
    beta: Tensor,
}

struct Block {
    dwconv: Conv,
    norm: LayerNorm,
    pwconv1: Linear,
    grn: Grn,
    pwconv2: Linear,
}

impl Block {
    fn new(w: &mut Weights, key: &str, dim: i64) -> Result<Self, WeightsError> {
        let mut dw = ConvSpec::new(&[7, 7], 3);
        dw.groups = dim;
        Ok(Self {
            dwconv: Conv::new(w, &format!("{key}.dwconv"), dim, dim, dw)?,
            norm: LayerNorm::new(w, &format!("{key}.norm"), dim, 1e-6)?,
            pwconv1: Linear::new(w, &format!("{key}.pwconv1"), dim, 4 * dim)?,
            grn: Grn {
                gamma: w.take_compute(&format!("{key}.grn.gamma"), &[1, 1, 1, 4 * dim])?,
                beta: w.take_compute(&format!("{key}.grn.beta"), &[1, 1, 1, 4 * dim])?,
            },
            pwconv2: Linear::new(w, &format!("{key}.pwconv2"), 4 * dim, dim)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let y = self.dwconv.forward(x).permute([0, 2, 3, 1]);
        let y = self.pwconv1.forward(&self.norm.forward(&y)).gelu("none");
        // GRN: L2 norm over the spatial dimensions, divided by its channel mean (in
        // float32: a 16-bit sum of squares would overflow).
        let g = y.to_kind(Kind::Float).norm_scalaropt_dim(2, [1, 2], true);
        let n = (&g / (g.mean_dim(-1, true, None) + 1e-6)).to_kind(y.kind());
        let y = &self.grn.gamma * (&y * n) + &self.grn.beta + &y;
        let y = self.pwconv2.forward(&y).permute([0, 3, 1, 2]);
        x + y
    }
}

enum Downsample {
    /// Stem: 4x4 stride-4 conv, then LayerNorm.
    Stem(Conv, LayerNorm),
    /// LayerNorm, then 2x2 stride-2 conv.
    Down(LayerNorm, Conv),
}

pub struct MotionExtractor {
    downsample: Vec<Downsample>,
    stages: Vec<Vec<Block>>,
    norm: LayerNorm,
    fc_kp: Linear,
    fc_scale: Linear,
    fc_pitch: Linear,
    fc_yaw: Linear,
    fc_roll: Linear,
    fc_t: Linear,
    fc_exp: Linear,
    /// What it computes in (see [`crate::core::precision`]).
    kind: Kind,
}

impl MotionExtractor {
    pub fn new(w: &mut Weights, c: &MotionConfig) -> Result<Self, WeightsError> {
        let p = "detector";
        let dims = &c.dims;
        let mut downsample = Vec::new();
        let mut stem = ConvSpec::new(&[4, 4], 0);
        stem.stride = 4;
        downsample.push(Downsample::Stem(
            Conv::new(w, &format!("{p}.downsample_layers.0.0"), 3, dims[0], stem)?,
            LayerNorm::new(w, &format!("{p}.downsample_layers.0.1"), dims[0], 1e-6)?,
        ));
        for i in 0..3 {
            let mut spec = ConvSpec::new(&[2, 2], 0);
            spec.stride = 2;
            downsample.push(Downsample::Down(
                LayerNorm::new(
                    w,
                    &format!("{p}.downsample_layers.{}.0", i + 1),
                    dims[i],
                    1e-6,
                )?,
                Conv::new(
                    w,
                    &format!("{p}.downsample_layers.{}.1", i + 1),
                    dims[i],
                    dims[i + 1],
                    spec,
                )?,
            ));
        }
        let mut stages = Vec::new();
        for (i, &depth) in c.depths.iter().enumerate() {
            stages.push(
                (0..depth)
                    .map(|j| Block::new(w, &format!("{p}.stages.{i}.{j}"), dims[i]))
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        let last = dims[3];
        let kp3 = 3 * c.num_kp;
        Ok(Self {
            downsample,
            stages,
            norm: LayerNorm::new(w, &format!("{p}.norm"), last, 1e-6)?,
            fc_kp: Linear::new(w, &format!("{p}.fc_kp"), last, kp3)?,
            fc_scale: Linear::new(w, &format!("{p}.fc_scale"), last, 1)?,
            fc_pitch: Linear::new(w, &format!("{p}.fc_pitch"), last, c.num_bins)?,
            fc_yaw: Linear::new(w, &format!("{p}.fc_yaw"), last, c.num_bins)?,
            fc_roll: Linear::new(w, &format!("{p}.fc_roll"), last, c.num_bins)?,
            fc_t: Linear::new(w, &format!("{p}.fc_t"), last, 3)?,
            fc_exp: Linear::new(w, &format!("{p}.fc_exp"), last, kp3)?,
            kind: w.compute_kind(),
        })
    }

    /// The heads' outputs for `image` (float32 in, float32 out).
    pub fn forward(&self, image: &Tensor) -> MotionHeads {
        let mut x = image.to_kind(self.kind);
        for (down, stage) in self.downsample.iter().zip(&self.stages) {
            x = match down {
                Downsample::Stem(conv, norm) => norm.forward_channels_first(&conv.forward(&x)),
                Downsample::Down(norm, conv) => conv.forward(&norm.forward_channels_first(&x)),
            };
            for block in stage {
                x = block.forward(&x);
            }
        }
        let x = self
            .norm
            .forward(&x.mean_dim([-2, -1].as_slice(), false, None));
        let head = |fc: &Linear| fc.forward(&x).to_kind(Kind::Float);
        MotionHeads {
            pitch: head(&self.fc_pitch),
            yaw: head(&self.fc_yaw),
            roll: head(&self.fc_roll),
            t: head(&self.fc_t),
            exp: head(&self.fc_exp),
            scale: head(&self.fc_scale),
            kp: head(&self.fc_kp),
        }
    }
}
