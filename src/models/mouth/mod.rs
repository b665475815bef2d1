//! The mouth model: from 310 ms of log-mel features around a moment (200 ms before,
//! up to 100 ms after) to the mouth's shape at that moment, plus whether someone is
//! speaking or singing. A small dilated 1-D convolution network (115k weights),
//! trained here on synthetic speech (tools/builtin/train.rs, `make train-builtin`).
//!
//! Frames after the available lookahead are masked out (zeros plus a mask channel), as
//! in training, so one model serves every `latency` setting.

pub mod features;

use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Kind, Tensor, nn, nn::Module};

use self::features::{HOP, MEL_BANDS, WINDOW, log_mel};

/// Feature frames (10 ms apart) before and after the moment the mouth is drawn for.
pub const CONTEXT_BEHIND: usize = 20;
pub const CONTEXT_AHEAD: usize = 10;
pub const CONTEXT: usize = CONTEXT_BEHIND + 1 + CONTEXT_AHEAD;
const CHANNELS: i64 = 48;
const HIDDEN: i64 = 64;
/// open, width, round (before their squashing), voice activity logit, lip closure logit.
pub const OUTPUTS: i64 = 5;
/// Written into the weights file; a file for another network is refused by name.
pub const FORMAT: &str = "vasafacegen-mouth-v2";

/// The network, with parameter names equal to the keys of the weights file.
#[derive(Debug)]
pub struct MouthNet {
    conv1: nn::Conv1D,
    conv2: nn::Conv1D,
    conv3: nn::Conv1D,
    fc1: nn::Linear,
    fc2: nn::Linear,
    /// Per-band mean and spread of the training features (normalisation).
    norm_mean: Tensor,
    norm_std: Tensor,
}

impl MouthNet {
    pub fn new(vs: &nn::Path) -> Self {
        let conv = |name: &str, input: i64, dilation: i64| {
            nn::conv1d(
                vs / name,
                input,
                CHANNELS,
                3,
                nn::ConvConfig {
                    padding: dilation,
                    dilation,
                    ..Default::default()
                },
            )
        };
        Self {
            conv1: conv("conv1", MEL_BANDS as i64 + 1, 1),
            conv2: conv("conv2", CHANNELS, 2),
            conv3: conv("conv3", CHANNELS, 4),
            fc1: nn::linear(
                vs / "fc1",
                CHANNELS * CONTEXT as i64,
                HIDDEN,
                Default::default(),
            ),
            fc2: nn::linear(vs / "fc2", HIDDEN, OUTPUTS, Default::default()),
            norm_mean: vs.zeros_no_train("norm_mean", &[MEL_BANDS as i64]),
            norm_std: vs.ones_no_train("norm_std", &[MEL_BANDS as i64]),
        }
    }

    /// Sets the feature normalisation (training).
    pub fn set_normalisation(&mut self, mean: &Tensor, std: &Tensor) {
        tch::no_grad(|| {
            self.norm_mean.copy_(mean);
            self.norm_std.copy_(std);
        });
    }

    /// `mel`: `(B, CONTEXT, MEL_BANDS)` log-mel frames; `available`: `(B, CONTEXT)` 1 or 0.
    /// Returns raw outputs `(B, OUTPUTS)`.
    pub fn forward(&self, mel: &Tensor, available: &Tensor) -> Tensor {
        self.forward_with_dropout(mel, available, None)
    }

    /// [`MouthNet::forward`], with dropout of rate `dropout` before the dense layers
    /// when training.
    pub fn forward_with_dropout(
        &self,
        mel: &Tensor,
        available: &Tensor,
        dropout: Option<f64>,
    ) -> Tensor {
        let drop = |x: Tensor| match dropout {
            Some(rate) => x.dropout(rate, true),
            None => x,
        };
        let normalised = (mel - &self.norm_mean) / &self.norm_std * available.unsqueeze(-1);
        let x = Tensor::cat(&[normalised, available.unsqueeze(-1)], -1).transpose(1, 2);
        let x = self.conv1.forward(&x).gelu("none");
        let x = &x + self.conv2.forward(&x).gelu("none");
        let x = &x + self.conv3.forward(&x).gelu("none");
        let x = drop(x.flatten(1, -1));
        let x = drop(self.fc1.forward(&x).gelu("none"));
        self.fc2.forward(&x)
    }
}

/// Raw outputs to (open 0..1, width -1..1, round 0..1, voice and closure probabilities).
pub fn squash(raw: &Tensor) -> Tensor {
    Tensor::stack(
        &[
            raw.select(1, 0).sigmoid(),
            raw.select(1, 1).tanh(),
            raw.select(1, 2).sigmoid(),
            raw.select(1, 3).sigmoid(),
            raw.select(1, 4).sigmoid(),
        ],
        1,
    )
}

/// One moment's prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MouthOutput {
    pub open: f32,
    pub width: f32,
    pub round: f32,
    /// Probability that a voice (speech or song) is heard.
    pub voice: f32,
    /// Probability that the lips are pressed together (/p b m/). A separate
    /// classification: sharper than what the opening's regression learns.
    pub closure: f32,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MouthModelError {
    #[error("mouth model weights \"{file}\" are not a safetensors file: {reason}")]
    Corrupt { file: String, reason: String },
    #[error(
        "mouth model weights \"{file}\" are for \"{found}\", not for this engine's \
         \"{FORMAT}\"; retrain with make train-builtin"
    )]
    WrongFormat { file: String, found: String },
    #[error("mouth model weights \"{file}\" lack \"{key}\" (expected shape {expected:?})")]
    Missing {
        file: String,
        key: String,
        expected: Vec<i64>,
    },
    #[error("mouth model weights \"{file}\": \"{key}\" has shape {found:?}, expected {expected:?}")]
    Shape {
        file: String,
        key: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },
    #[error("mouth model weights \"{file}\": \"{key}\" is {found}, expected float32")]
    Dtype {
        file: String,
        key: String,
        found: String,
    },
    #[error("mouth model weights \"{file}\" have an unknown tensor \"{key}\"")]
    Unexpected { file: String, key: String },
}

impl From<MouthModelError> for crate::core::Error {
    fn from(err: MouthModelError) -> Self {
        Self::model(err)
    }
}

/// The network with its weights, on a device, ready to run.
pub struct MouthModel {
    net: MouthNet,
    device: Device,
    // Owns the parameters the network's tensors point into.
    _vs: nn::VarStore,
}

impl std::fmt::Debug for MouthModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MouthModel")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl MouthModel {
    /// Reads the weights at `path`.
    pub fn load_file(path: &Path, device: Device) -> Result<Self, MouthModelError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|err| MouthModelError::Corrupt {
            file: name.clone(),
            reason: err.to_string(),
        })?;
        Self::load_bytes(&bytes, &name, device)
    }

    /// Reads weights from memory; `name` is how errors refer to them.
    pub fn load_bytes(bytes: &[u8], name: &str, device: Device) -> Result<Self, MouthModelError> {
        let file = || name.to_owned();
        let (_, metadata) = safetensors::SafeTensors::read_metadata(bytes).map_err(|err| {
            MouthModelError::Corrupt {
                file: file(),
                reason: err.to_string(),
            }
        })?;
        let format = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get("format").cloned())
            .unwrap_or_else(|| "an unnamed model".to_owned());
        if format != FORMAT {
            return Err(MouthModelError::WrongFormat {
                file: file(),
                found: format,
            });
        }
        let tensors = safetensors::SafeTensors::deserialize(bytes).map_err(|err| {
            MouthModelError::Corrupt {
                file: file(),
                reason: err.to_string(),
            }
        })?;
        let vs = nn::VarStore::new(device);
        let net = MouthNet::new(&vs.root());
        let mut wanted: HashMap<String, Tensor> = vs.variables();
        let _no_grad = tch::no_grad_guard();
        for (key, view) in tensors.tensors() {
            let Some(mut variable) = wanted.remove(&key) else {
                return Err(MouthModelError::Unexpected { file: file(), key });
            };
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(MouthModelError::Dtype {
                    file: file(),
                    key,
                    found: format!("{:?}", view.dtype()),
                });
            }
            let found: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            if found != variable.size() {
                return Err(MouthModelError::Shape {
                    file: file(),
                    key,
                    expected: variable.size(),
                    found,
                });
            }
            let values: Vec<f32> = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            variable.copy_(
                &Tensor::from_slice(&values)
                    .view(found.as_slice())
                    .to_device(device),
            );
        }
        if let Some((key, variable)) = wanted.into_iter().min_by(|a, b| a.0.cmp(&b.0)) {
            return Err(MouthModelError::Missing {
                file: file(),
                key,
                expected: variable.size(),
            });
        }
        Ok(Self {
            net,
            device,
            _vs: vs,
        })
    }

    /// The mouth at sample `centre` of `samples`, seeing the features of frames whose
    /// windows end before `available_end` (the audio beyond is not known yet).
    pub fn predict(&self, samples: &[f32], centre: i64, available_end: i64) -> MouthOutput {
        let _no_grad = tch::no_grad_guard();
        let (mel, available) = context_features(samples, centre, available_end, self.device);
        let out = squash(&self.net.forward(&mel.unsqueeze(0), &available.unsqueeze(0)));
        let value = |i| out.double_value(&[0, i]) as f32;
        MouthOutput {
            open: value(0),
            width: value(1),
            round: value(2),
            voice: value(3),
            closure: value(4),
        }
    }
}

/// The model's input for the moment at sample `centre`: `(CONTEXT, MEL_BANDS)` frames
/// centred every 10 ms around it and `(CONTEXT)` availability.
pub fn context_features(
    samples: &[f32],
    centre: i64,
    available_end: i64,
    device: Device,
) -> (Tensor, Tensor) {
    let centres: Vec<i64> = (0..CONTEXT as i64)
        .map(|k| centre + (k - CONTEXT_BEHIND as i64) * HOP as i64)
        .collect();
    let half = (WINDOW / 2) as i64;
    let available: Vec<f32> = centres
        .iter()
        .map(|&c| if c + half <= available_end { 1.0 } else { 0.0 })
        .collect();
    (
        log_mel(samples, &centres, device),
        Tensor::from_slice(&available)
            .to_device(device)
            .to_kind(Kind::Float),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_has_the_documented_size() {
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = MouthNet::new(&vs.root());
        let parameters: i64 = vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum();
        assert!((100_000..200_000).contains(&parameters), "{parameters}");
    }

    #[test]
    fn forward_shapes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = MouthNet::new(&vs.root());
        let mel = Tensor::zeros(
            [3, CONTEXT as i64, MEL_BANDS as i64],
            (Kind::Float, Device::Cpu),
        );
        let available = Tensor::ones([3, CONTEXT as i64], (Kind::Float, Device::Cpu));
        let out = squash(&net.forward(&mel, &available));
        assert_eq!(out.size(), [3, OUTPUTS]);
    }
}
