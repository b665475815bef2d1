//! The stitching and retargeting MLPs, and the keypoint algebra around them: pose bins
//! to degrees, degrees to a rotation matrix, keypoint transformation, stitching, and
//! the lip and eye retargeting deltas.

use tch::{Kind, Tensor};

use super::config::{MlpConfig, StitchingConfig};
use crate::nn::layers::Linear;
use crate::nn::weights::{Weights, WeightsError};

pub struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    /// Linear layers at `mlp.0`, `mlp.2`, ... (ReLUs between them in the reference).
    pub fn new(w: &mut Weights, key: &str, c: &MlpConfig) -> Result<Self, WeightsError> {
        let mut sizes = vec![c.input_size];
        sizes.extend(&c.hidden_sizes);
        sizes.push(c.output_size);
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(i, pair)| Linear::new(w, &format!("{key}.mlp.{}", 2 * i), pair[0], pair[1]))
            .collect::<Result<_, _>>()?;
        Ok(Self { layers })
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut y = x.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            y = layer.forward(&y);
            if i + 1 < self.layers.len() {
                y = y.relu();
            }
        }
        y
    }
}

/// The three MLPs of `stitching_retargeting_module`, under the checkpoint's entry
/// names.
pub struct StitchingRetargeting {
    pub stitching: Mlp,
    pub lip: Mlp,
    pub eye: Mlp,
}

impl StitchingRetargeting {
    pub fn new(w: &mut Weights, c: &StitchingConfig) -> Result<Self, WeightsError> {
        Ok(Self {
            stitching: Mlp::new(w, "retarget_shoulder", &c.stitching)?,
            lip: Mlp::new(w, "retarget_mouth", &c.lip)?,
            eye: Mlp::new(w, "retarget_eye", &c.eye)?,
        })
    }

    /// Driving keypoints corrected so the animated face lines up with the source's
    /// shoulders: the MLP's first 3K outputs move the keypoints, the last two shift x, y.
    pub fn stitch(&self, x_s: &Tensor, x_d: &Tensor) -> Tensor {
        let (b, k, _) = x_s.size3().expect("(B, K, 3)");
        let input = Tensor::cat(&[x_s.view([b, -1]), x_d.view([b, -1])], 1);
        let delta = self.stitching.forward(&input);
        let moved = x_d + delta.narrow(1, 0, 3 * k).view([b, k, 3]);
        let shift = delta.narrow(1, 3 * k, 2).view([b, 1, 2]);
        let xy = moved.narrow(2, 0, 2) + shift;
        Tensor::cat(&[xy, moved.narrow(2, 2, 1)], 2)
    }

    /// Keypoint deltas (B, K, 3) that set the lip opening: `ratio` = [source, driving].
    pub fn retarget_lip(&self, x_s: &Tensor, ratio: &Tensor) -> Tensor {
        let (b, k, _) = x_s.size3().expect("(B, K, 3)");
        self.lip
            .forward(&Tensor::cat(&[x_s.view([b, -1]), ratio.shallow_clone()], 1))
            .view([b, k, 3])
    }

    /// Keypoint deltas (B, K, 3) that set the eye opening: `ratio` = [source left,
    /// source right, driving].
    pub fn retarget_eye(&self, x_s: &Tensor, ratio: &Tensor) -> Tensor {
        let (b, k, _) = x_s.size3().expect("(B, K, 3)");
        self.eye
            .forward(&Tensor::cat(&[x_s.view([b, -1]), ratio.shallow_clone()], 1))
            .view([b, k, 3])
    }
}

/// Pose logits (B, 66) -> degrees (B, 1): the expectation over bins 3 degrees apart,
/// from -97.5.
pub fn bins_to_degrees(logits: &Tensor) -> Tensor {
    let bins = logits.size()[1];
    let index = Tensor::arange(bins, (Kind::Float, logits.device()));
    let expectation = (logits.softmax(1, Kind::Float) * index).sum_dim_intlist(1, false, None);
    (expectation * 3.0 - 97.5).unsqueeze(1)
}

/// Rotation (B, 3, 3) from pitch, yaw, roll in degrees (each (B, 1)), as LivePortrait
/// builds it: (Rz Ry Rx) transposed, for row-vector keypoints (x R).
pub fn rotation(pitch: &Tensor, yaw: &Tensor, roll: &Tensor) -> Tensor {
    let rad = |t: &Tensor| t.view([-1]) * (std::f64::consts::PI / 180.0);
    let (x, y, z) = (rad(pitch), rad(yaw), rad(roll));
    let b = x.size()[0];
    let one = Tensor::ones([b], (Kind::Float, x.device()));
    let zero = Tensor::zeros([b], (Kind::Float, x.device()));
    let matrix = |rows: [[&Tensor; 3]; 3]| {
        Tensor::stack(
            &rows
                .iter()
                .flat_map(|r| r.iter().map(|t| t.shallow_clone()))
                .collect::<Vec<_>>(),
            1,
        )
        .view([b, 3, 3])
    };
    let (cx, sx, cy, sy, cz, sz) = (x.cos(), x.sin(), y.cos(), y.sin(), z.cos(), z.sin());
    let (nsx, nsy, nsz) = (-&sx, -&sy, -&sz);
    let rx = matrix([[&one, &zero, &zero], [&zero, &cx, &nsx], [&zero, &sx, &cx]]);
    let ry = matrix([[&cy, &zero, &sy], [&zero, &one, &zero], [&nsy, &zero, &cy]]);
    let rz = matrix([[&cz, &nsz, &zero], [&sz, &cz, &zero], [&zero, &zero, &one]]);
    rz.bmm(&ry).bmm(&rx).transpose(1, 2)
}

/// Keypoints in the driving frame: (kp R + exp) * scale, then x, y shifted by t
/// (tz unused). kp, exp (B, K, 3); R (B, 3, 3); scale (B, 1); t (B, 3).
pub fn transform_keypoints(
    kp: &Tensor,
    rotation: &Tensor,
    exp: &Tensor,
    scale: &Tensor,
    t: &Tensor,
) -> Tensor {
    let (b, k) = (kp.size()[0], kp.size()[1]);
    let posed = (kp.view([b, k, 3]).bmm(rotation) + exp.view([b, k, 3])) * scale.view([b, 1, 1]);
    let xy = posed.narrow(2, 0, 2) + t.narrow(1, 0, 2).view([b, 1, 2]);
    Tensor::cat(&[xy, posed.narrow(2, 2, 1)], 2)
}
