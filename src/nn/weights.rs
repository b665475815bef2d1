//! Named weights of one network component, taken key by key as the modules are built,
//! with every expected shape checked: a missing key, a wrong shape or a key no module
//! asked for is an error naming the file, the key and the expected shape.
//!
//! The same building code also runs against a [`Weights::recorder`], which hands out
//! uninitialised tensors and writes down every (key, shape) asked for: that is how the
//! official-size parameter lists are checked without the official files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read {file}: {detail}")]
    Read { file: PathBuf, detail: String },
    #[error("{file}: tensor {key} is missing (expected shape {expected:?})")]
    Missing {
        file: PathBuf,
        key: String,
        expected: Vec<i64>,
    },
    #[error("{file}: tensor {key} has shape {found:?}, expected {expected:?}")]
    Shape {
        file: PathBuf,
        key: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },
    #[error("{file}: tensor {key} is {found:?}, expected {expected}")]
    Kind {
        file: PathBuf,
        key: String,
        found: Kind,
        expected: &'static str,
    },
    #[error("{file}: tensor {key} {detail}")]
    Invalid {
        file: PathBuf,
        key: String,
        detail: String,
    },
    #[error(
        "{file}: {count} tensor(s) that this network does not have, e.g. {first} \
         (a file for another network or another size?)"
    )]
    Unexpected {
        file: PathBuf,
        count: usize,
        first: String,
    },
}

pub struct Weights {
    file: PathBuf,
    device: Device,
    /// `None` when recording shapes.
    tensors: Option<BTreeMap<String, Tensor>>,
    used: BTreeSet<String>,
    recorded: Vec<(String, Vec<i64>)>,
    /// The kind of the weights that convolutions and linear layers compute with
    /// ([`Weights::take_compute`]); float32 unless a reduced precision was asked for.
    compute_kind: Kind,
}

impl Weights {
    /// The tensors of a safetensors file.
    pub fn load(file: &Path, device: Device) -> Result<Self, WeightsError> {
        if !file.is_file() {
            return Err(WeightsError::Read {
                file: file.to_path_buf(),
                detail: "no such file".into(),
            });
        }
        let tensors = Tensor::read_safetensors(file).map_err(|err| WeightsError::Read {
            file: file.to_path_buf(),
            detail: format!("not a valid safetensors file ({err})"),
        })?;
        Ok(Self::from_tensors(file, tensors, device))
    }

    /// Tensors already in memory, named as if read from `file` (for messages).
    pub fn from_tensors(
        file: &Path,
        tensors: impl IntoIterator<Item = (String, Tensor)>,
        device: Device,
    ) -> Self {
        Self {
            file: file.to_path_buf(),
            device,
            tensors: Some(tensors.into_iter().collect()),
            used: BTreeSet::new(),
            recorded: Vec::new(),
            compute_kind: Kind::Float,
        }
    }

    /// Records the (key, shape) of every tensor asked for; hands out uninitialised
    /// tensors.
    pub fn recorder(name: &str) -> Self {
        Self {
            file: PathBuf::from(name),
            device: Device::Cpu,
            tensors: None,
            used: BTreeSet::new(),
            recorded: Vec::new(),
            compute_kind: Kind::Float,
        }
    }

    /// Convolution and linear weights taken from here on come in `kind`.
    pub fn with_compute_kind(mut self, kind: Kind) -> Self {
        self.compute_kind = kind;
        self
    }

    pub fn compute_kind(&self) -> Kind {
        self.compute_kind
    }

    /// Where the tensors go.
    pub fn device(&self) -> Device {
        self.device
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The float tensor `key`, which must have `shape`, on the device, as float32.
    pub fn take(&mut self, key: &str, shape: &[i64]) -> Result<Tensor, WeightsError> {
        let tensor = self.take_checked(key, shape, Kind::Float, "a floating-point tensor")?;
        Ok(tensor.to_kind(Kind::Float).to_device(self.device))
    }

    /// Like [`Weights::take`], in the compute kind: the weights of the layers that run
    /// in reduced precision when one is asked for.
    pub fn take_compute(&mut self, key: &str, shape: &[i64]) -> Result<Tensor, WeightsError> {
        let kind = self.compute_kind;
        Ok(self.take(key, shape)?.to_kind(kind))
    }

    /// The float tensor `key`, which must have `shape`, as `f32` values on the host (for
    /// tables such as a diffusion schedule). When recording shapes: zeros.
    pub fn take_values(&mut self, key: &str, shape: &[i64]) -> Result<Vec<f32>, WeightsError> {
        let tensor = self.take(key, shape)?;
        if self.is_recording() {
            return Ok(vec![0.0; tensor.numel()]);
        }
        host_values(&tensor, &self.file, key)
    }

    /// Whether this only records the shapes asked for (no tensors behind it).
    pub fn is_recording(&self) -> bool {
        self.tensors.is_none()
    }

    /// The boolean tensor `key` (a mask buffer), which must have `shape`, on the device.
    pub fn take_bool(&mut self, key: &str, shape: &[i64]) -> Result<Tensor, WeightsError> {
        let tensor = self.take_checked(key, shape, Kind::Bool, "a bool mask")?;
        Ok(tensor.to_device(self.device))
    }

    /// `key`, checked for `shape` and kind (`kind`: Float accepts any floating-point
    /// kind), marked as used. When recording shapes: an uninitialised float tensor (no
    /// memory touched at official sizes), or a false mask.
    fn take_checked(
        &mut self,
        key: &str,
        shape: &[i64],
        kind: Kind,
        expected: &'static str,
    ) -> Result<Tensor, WeightsError> {
        self.recorded.push((key.to_string(), shape.to_vec()));
        let Some(tensors) = &self.tensors else {
            return Ok(match kind {
                Kind::Float => Tensor::empty(shape, (kind, Device::Cpu)),
                _ => Tensor::zeros(shape, (kind, Device::Cpu)),
            });
        };
        let tensor = tensors.get(key).ok_or_else(|| WeightsError::Missing {
            file: self.file.clone(),
            key: key.to_string(),
            expected: shape.to_vec(),
        })?;
        if tensor.size() != shape {
            return Err(WeightsError::Shape {
                file: self.file.clone(),
                key: key.to_string(),
                expected: shape.to_vec(),
                found: tensor.size(),
            });
        }
        let kind_ok = match kind {
            Kind::Float => tensor.is_floating_point(),
            other => tensor.kind() == other,
        };
        if !kind_ok {
            return Err(WeightsError::Kind {
                file: self.file.clone(),
                key: key.to_string(),
                found: tensor.kind(),
                expected,
            });
        }
        let tensor = tensor.shallow_clone();
        self.used.insert(key.to_string());
        Ok(tensor)
    }

    /// The shape of `key` if the file has it (to size a network from its weights).
    pub fn shape_of(&self, key: &str) -> Option<Vec<i64>> {
        self.tensors.as_ref()?.get(key).map(Tensor::size)
    }

    /// Every key of the file (to count repeated layers).
    pub fn keys(&self) -> Vec<String> {
        self.tensors
            .as_ref()
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether the file has `key` (for checkpoints that name a tensor in two ways).
    pub fn contains(&self, key: &str) -> bool {
        self.tensors.as_ref().is_some_and(|t| t.contains_key(key))
    }

    /// Marks `key` as known without using it (BatchNorm's `num_batches_tracked`).
    pub fn skip(&mut self, key: &str) {
        self.recorded.push((key.to_string(), Vec::new()));
        if self.tensors.as_ref().is_some_and(|t| t.contains_key(key)) {
            self.used.insert(key.to_string());
        }
    }

    /// Every tensor of the file must have been taken.
    pub fn finish(self) -> Result<Vec<(String, Vec<i64>)>, WeightsError> {
        if let Some(tensors) = &self.tensors {
            let unused: Vec<&String> = tensors.keys().filter(|k| !self.used.contains(*k)).collect();
            if let Some(first) = unused.first() {
                return Err(WeightsError::Unexpected {
                    file: self.file.clone(),
                    count: unused.len(),
                    first: (*first).clone(),
                });
            }
        }
        Ok(self.recorded)
    }
}

/// The values of tensor `key` of `file` as `f32` on the host. A tensor that cannot be
/// read back is an error naming it, never an empty table.
pub fn host_values(tensor: &Tensor, file: &Path, key: &str) -> Result<Vec<f32>, WeightsError> {
    let values = tensor
        .f_to_device(Device::Cpu)
        .and_then(|t| t.f_to_kind(Kind::Float))
        .and_then(|t| t.f_flatten(0, -1))
        .and_then(|t| Vec::<f32>::try_from(&t))
        .map_err(|err| WeightsError::Invalid {
            file: file.to_path_buf(),
            key: key.to_string(),
            detail: format!("cannot be read back ({err})"),
        })?;
    if values.len() != tensor.numel() {
        return Err(WeightsError::Invalid {
            file: file.to_path_buf(),
            key: key.to_string(),
            detail: format!(
                "gave {} values for {} elements",
                values.len(),
                tensor.numel()
            ),
        });
    }
    Ok(values)
}
