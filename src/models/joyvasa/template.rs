//! From the generator's normalised motion coefficients to LivePortrait motion: the
//! motion template (statistics of the training motions, `motion_template.pkl`)
//! de-normalises them, and the reference's exponential smoothing steadies the head.
//!
//! A coefficient row is `[exp (63, z-scored), scale, t (3), pitch, yaw, roll]`, the last
//! seven min-max scaled. Arithmetic is float32 in the reference's order, so results
//! match it to the bit where the reference is deterministic.

use std::collections::HashMap;
use std::path::Path;

use tch::Tensor;

use crate::core::KeypointFrame;
use crate::core::motion::EXPRESSION_LEN as EXP_LEN;
use crate::nn::weights::WeightsError;
/// The coefficient layout.
pub const COEF_LEN: usize = 70;
/// The reference's smoothing factor (`ExponentialMovingAverageFilter(alpha=0.01)`).
pub const SMOOTHING_ALPHA: f64 = 0.01;

/// The statistics the de-normalisation needs.
#[derive(Debug, Clone)]
pub struct MotionTemplate {
    mean_exp: Vec<f32>,
    std_exp: Vec<f32>,
    /// (min, max) of scale, t (3), pitch, yaw, roll: the 7 min-max scaled values.
    ranges: Vec<(f32, f32)>,
}

impl MotionTemplate {
    /// Reads the template from the tensors of a bundle's `motion_template.safetensors`
    /// (the pickle's keys: `mean_exp`, `std_exp`, `min_scale`, `max_scale`, ...).
    pub fn load(file: &Path) -> Result<Self, WeightsError> {
        let read_error = |detail: String| WeightsError::Read {
            file: file.to_path_buf(),
            detail,
        };
        if !file.is_file() {
            return Err(read_error("no such file".into()));
        }
        let tensors: HashMap<String, Tensor> = Tensor::read_safetensors(file)
            .map_err(|err| read_error(format!("not a valid safetensors file ({err})")))?
            .into_iter()
            .collect();
        let take = |key: &str, len: usize| -> Result<Vec<f32>, WeightsError> {
            let tensor = tensors.get(key).ok_or_else(|| WeightsError::Missing {
                file: file.to_path_buf(),
                key: key.into(),
                expected: vec![len as i64],
            })?;
            if tensor.numel() != len || !tensor.is_floating_point() {
                return Err(WeightsError::Shape {
                    file: file.to_path_buf(),
                    key: key.into(),
                    expected: vec![len as i64],
                    found: tensor.size(),
                });
            }
            let values = crate::nn::weights::host_values(tensor, file, key)?;
            if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
                return Err(WeightsError::Invalid {
                    file: file.to_path_buf(),
                    key: key.into(),
                    detail: format!("holds {bad}"),
                });
            }
            Ok(values)
        };
        let mut ranges = Vec::with_capacity(7);
        for (name, len) in [
            ("scale", 1),
            ("t", 3),
            ("pitch", 1),
            ("yaw", 1),
            ("roll", 1),
        ] {
            let min = take(&format!("min_{name}"), len)?;
            let max = take(&format!("max_{name}"), len)?;
            ranges.extend(min.into_iter().zip(max));
        }
        Ok(Self {
            mean_exp: take("mean_exp", EXP_LEN)?,
            std_exp: take("std_exp", EXP_LEN)?,
            ranges,
        })
    }

    /// A template that leaves coefficients as they are (for recording shapes).
    pub fn identity() -> Self {
        Self {
            mean_exp: vec![0.0; EXP_LEN],
            std_exp: vec![1.0; EXP_LEN],
            ranges: vec![(0.0, 1.0); 7],
        }
    }

    /// One coefficient row `(70,)` as LivePortrait motion.
    pub fn denormalise(&self, coef: &[f32]) -> KeypointFrame {
        assert_eq!(
            coef.len(),
            COEF_LEN,
            "a motion coefficient row has 70 values"
        );
        let mut exp = [0f32; EXP_LEN];
        for (i, e) in exp.iter_mut().enumerate() {
            *e = coef[i] * self.std_exp[i] + self.mean_exp[i];
        }
        let scaled: Vec<f32> = self
            .ranges
            .iter()
            .zip(&coef[EXP_LEN..])
            .map(|(&(min, max), &c)| c * (max - min) + min)
            .collect();
        KeypointFrame {
            exp,
            scale: scaled[0],
            t: [scaled[1], scaled[2], scaled[3]],
            pitch: scaled[4],
            yaw: scaled[5],
            roll: scaled[6],
        }
    }
}

/// The reference's smoothing of scale, translation and pose (expression untouched):
/// `s = alpha x + (1 - alpha) s`, starting at the first frame.
#[derive(Debug, Clone, Default)]
pub struct PoseSmoother {
    state: Option<[f32; 7]>,
}

impl PoseSmoother {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn smooth(&mut self, frame: &KeypointFrame) -> KeypointFrame {
        let value = [
            frame.scale,
            frame.t[0],
            frame.t[1],
            frame.t[2],
            frame.pitch,
            frame.yaw,
            frame.roll,
        ];
        // Both factors rounded to float32 as numpy does with a Python float.
        let (take, keep) = (SMOOTHING_ALPHA as f32, (1.0 - SMOOTHING_ALPHA) as f32);
        let state = match self.state {
            None => value,
            Some(previous) => std::array::from_fn(|i| take * value[i] + keep * previous[i]),
        };
        self.state = Some(state);
        KeypointFrame {
            exp: frame.exp,
            scale: state[0],
            t: [state[1], state[2], state[3]],
            pitch: state[4],
            yaw: state[5],
            roll: state[6],
        }
    }
}
