//! The warping module W: from the source feature volume and the source and driving
//! keypoints, a dense 3-D motion field (a mix of per-keypoint translations chosen by an
//! hourglass network), the warped volume, an occlusion map, and the 2-D feature map the
//! generator decodes.
//!
//! In a reduced precision only the convolutions run in 16 bits: the keypoint heatmaps,
//! the sampling grids, the softmax over keypoints, the occlusion sigmoid and both grid
//! samplings stay float32, as under the reference's autocast (which promotes grid
//! sampling to float32): a 16-bit grid would misplace samples by up to 0.1 pixel.

use tch::{Kind, Tensor};

use super::appearance::ConvNormRelu;
use super::config::WarpingConfig;
use crate::nn::layers::{BatchNorm, Conv, ConvSpec};
use crate::nn::weights::{Weights, WeightsError};

type Result<T> = std::result::Result<T, WeightsError>;

/// The outputs of the warping module.
pub struct Warped {
    /// (B, D, H, W, 3) sampling grid into the source volume, in [-1, 1].
    pub deformation: Tensor,
    /// (B, 1, H, W) in (0, 1).
    pub occlusion: Option<Tensor>,
    /// (B, C, H, W) feature map for the generator.
    pub out: Tensor,
}

/// Identity coordinates (D, H, W, 3) in [-1, 1], ordered (x, y, z) = (w, h, d).
pub fn coordinate_grid(d: i64, h: i64, w: i64, like: &Tensor) -> Tensor {
    let axis = |n: i64| {
        let i = Tensor::arange(n, (like.kind(), like.device()));
        i / (n - 1) as f64 * 2.0 - 1.0
    };
    let x = axis(w).view([1, 1, w, 1]).expand([d, h, w, 1], false);
    let y = axis(h).view([1, h, 1, 1]).expand([d, h, w, 1], false);
    let z = axis(d).view([d, 1, 1, 1]).expand([d, h, w, 1], false);
    Tensor::cat(&[x, y, z], 3)
}

/// A 2x2 average pool over height and width of a (B, C, D, H, W) volume, as a 2-D pool
/// of the depth slices (the same numbers as `avg_pool3d` with a (1, 2, 2) kernel, which
/// libtorch's CPU backend lacks for 16-bit kinds).
fn pool_height_width(x: &Tensor) -> Tensor {
    let (b, c, d, h, w) = x.size5().expect("5-D");
    x.view([b, c * d, h, w])
        .avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None)
        .view([b, c, d, h / 2, w / 2])
}

/// Gaussian heatmaps (B, K, D, H, W) of keypoints (B, K, 3), variance 0.01.
fn gaussians(kp: &Tensor, d: i64, h: i64, w: i64) -> Tensor {
    let (b, k, _) = kp.size3().expect("(B, K, 3)");
    let grid = coordinate_grid(d, h, w, kp).view([1, 1, d, h, w, 3]);
    let diff = grid - kp.view([b, k, 1, 1, 1, 3]);
    (diff.pow_tensor_scalar(2).sum_dim_intlist(-1, false, None) * (-0.5 / 0.01)).exp()
}

struct UpBlock3d {
    conv: Conv,
    norm: BatchNorm,
}

struct Hourglass {
    down: Vec<ConvNormRelu>,
    up: Vec<UpBlock3d>,
    conv: Conv,
    norm: BatchNorm,
    out_filters: i64,
}

impl Hourglass {
    fn new(
        w: &mut Weights,
        key: &str,
        expansion: i64,
        cin: i64,
        blocks: i64,
        max: i64,
    ) -> Result<Self> {
        let width = |i: i64| max.min(expansion << i);
        let mut down = Vec::new();
        for i in 0..blocks {
            let fin = if i == 0 { cin } else { width(i) };
            down.push(ConvNormRelu::new(
                w,
                &format!("{key}.encoder.down_blocks.{i}"),
                fin,
                width(i + 1),
                &[3, 3, 3],
                false,
            )?);
        }
        let mut up = Vec::new();
        for (n, i) in (0..blocks).rev().enumerate() {
            let fin = if i == blocks - 1 { 1 } else { 2 } * width(i + 1);
            let fout = width(i);
            let k = format!("{key}.decoder.up_blocks.{n}");
            up.push(UpBlock3d {
                conv: Conv::new(
                    w,
                    &format!("{k}.conv"),
                    fin,
                    fout,
                    ConvSpec::new(&[3, 3, 3], 1),
                )?,
                norm: BatchNorm::new(w, &format!("{k}.norm"), fout)?,
            });
        }
        let out_filters = expansion + cin;
        Ok(Self {
            down,
            up,
            conv: Conv::new(
                w,
                &format!("{key}.decoder.conv"),
                out_filters,
                out_filters,
                ConvSpec::new(&[3, 3, 3], 1),
            )?,
            norm: BatchNorm::new(w, &format!("{key}.decoder.norm"), out_filters)?,
            out_filters,
        })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let mut skips = vec![x.shallow_clone()];
        for block in &self.down {
            let y = pool_height_width(&block.forward(skips.last().expect("non-empty")));
            skips.push(y);
        }
        let mut out = skips.pop().expect("non-empty");
        for block in &self.up {
            let (_, _, d, h, w) = out.size5().expect("5-D");
            let up = out.upsample_nearest3d([d, h * 2, w * 2], 1.0, 2.0, 2.0);
            out = block.norm.forward(&block.conv.forward(&up)).relu();
            out = Tensor::cat(&[out, skips.pop().expect("one skip per level")], 1);
        }
        self.norm.forward(&self.conv.forward(&out)).relu()
    }
}

struct DenseMotion {
    hourglass: Hourglass,
    mask: Conv,
    compress: Conv,
    norm: BatchNorm,
    occlusion: Option<Conv>,
    num_kp: i64,
}

pub struct WarpingModule {
    dense: DenseMotion,
    third: ConvNormRelu,
    fourth: Conv,
    /// What the convolutions compute in (see [`crate::core::precision`]).
    kind: Kind,
}

impl WarpingModule {
    pub fn new(w: &mut Weights, c: &WarpingConfig) -> Result<Self> {
        let dm = &c.dense_motion_params;
        let key = "dense_motion_network";
        let cin = (c.num_kp + 1) * (dm.compress + 1);
        let hourglass = Hourglass::new(
            w,
            &format!("{key}.hourglass"),
            dm.block_expansion,
            cin,
            dm.num_blocks,
            dm.max_features,
        )?;
        let filters = hourglass.out_filters;
        let dense = DenseMotion {
            mask: Conv::new(
                w,
                &format!("{key}.mask"),
                filters,
                c.num_kp + 1,
                ConvSpec::new(&[7, 7, 7], 3),
            )?,
            compress: Conv::new(
                w,
                &format!("{key}.compress"),
                c.reshape_channel,
                dm.compress,
                ConvSpec::new(&[1, 1, 1], 0),
            )?,
            norm: BatchNorm::new(w, &format!("{key}.norm"), dm.compress)?,
            occlusion: if c.estimate_occlusion_map {
                Some(Conv::new(
                    w,
                    &format!("{key}.occlusion"),
                    filters * dm.reshape_depth,
                    1,
                    ConvSpec::new(&[7, 7], 3),
                )?)
            } else {
                None
            },
            hourglass,
            num_kp: c.num_kp,
        };
        let channels = c.block_expansion << c.num_down_blocks;
        Ok(Self {
            dense,
            third: ConvNormRelu::new(w, "third", c.max_features, channels, &[3, 3], true)?,
            fourth: Conv::new(w, "fourth", channels, channels, ConvSpec::new(&[1, 1], 0))?,
            kind: w.compute_kind(),
        })
    }

    /// Warps `feature` (B, C, D, H, W) from the source keypoints to the driving ones
    /// (each (B, K, 3)). Float32 in, float32 out.
    pub fn forward(&self, feature: &Tensor, kp_driving: &Tensor, kp_source: &Tensor) -> Warped {
        let dm = &self.dense;
        let kind = self.kind;
        let feature = &feature.to_kind(Kind::Float);
        let (b, _, d, h, w) = feature.size5().expect("5-D feature volume");
        let k = dm.num_kp;
        let compressed = dm
            .norm
            .forward(&dm.compress.forward(&feature.to_kind(kind)))
            .relu()
            .to_kind(Kind::Float);
        let c = compressed.size()[1];

        // Sparse motions: identity for the background, then one translation per keypoint.
        let identity = coordinate_grid(d, h, w, kp_source).view([1, 1, d, h, w, 3]);
        let to_source =
            &identity - kp_driving.view([b, k, 1, 1, 1, 3]) + kp_source.view([b, k, 1, 1, 1, 3]);
        let sparse = Tensor::cat(&[identity.expand([b, 1, d, h, w, 3], false), to_source], 1);

        // The compressed volume moved by each of them.
        let repeated = compressed
            .unsqueeze(1)
            .expand([b, k + 1, c, d, h, w], false)
            .reshape([b * (k + 1), c, d, h, w]);
        let deformed = repeated
            .grid_sampler(&sparse.reshape([b * (k + 1), d, h, w, 3]), 0, 0, false)
            .view([b, k + 1, c, d, h, w]);

        let heat = gaussians(kp_driving, d, h, w) - gaussians(kp_source, d, h, w);
        let heat = Tensor::cat(
            &[
                Tensor::zeros([b, 1, d, h, w], (Kind::Float, feature.device())),
                heat,
            ],
            1,
        )
        .unsqueeze(2);
        let input = Tensor::cat(&[heat, deformed], 2).view([b, -1, d, h, w]);
        let prediction = dm.hourglass.forward(&input.to_kind(kind));

        let mask = dm
            .mask
            .forward(&prediction)
            .softmax(1, Kind::Float)
            .unsqueeze(2);
        let deformation = (sparse.permute([0, 1, 5, 2, 3, 4]) * mask)
            .sum_dim_intlist(1, false, None)
            .permute([0, 2, 3, 4, 1]);
        let occlusion = dm.occlusion.as_ref().map(|conv| {
            let (pb, _, _, ph, pw) = prediction.size5().expect("5-D");
            conv.forward(&prediction.view([pb, -1, ph, pw]))
                .to_kind(Kind::Float)
                .sigmoid()
        });

        let warped = feature.grid_sampler(&deformation, 0, 0, false);
        let (wb, wc, wd, wh, ww) = warped.size5().expect("5-D");
        let out = self
            .fourth
            .forward(
                &self
                    .third
                    .forward(&warped.view([wb, wc * wd, wh, ww]).to_kind(kind)),
            )
            .to_kind(Kind::Float);
        let out = match &occlusion {
            Some(map) => out * map,
            None => out,
        };
        Warped {
            deformation,
            occlusion,
            out,
        }
    }
}
