//! Choosing the compute device from the `device` property's text.

use std::fmt;
use std::str::FromStr;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    /// The first CUDA device libtorch sees, else the CPU.
    Auto,
    Cpu,
    /// `cuda` (index 0) or `cuda:N`.
    Cuda(usize),
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    #[error(
        "unsupported device \"{0}\": use \"auto\", \"cpu\", \"cuda\" or \"cuda:N\" (N = GPU index)"
    )]
    Unsupported(String),
    #[error(
        "device \"{requested}\" was asked for, but libtorch sees no CUDA GPU (this build {build}); \
         use device=auto or device=cpu"
    )]
    NoCuda {
        requested: String,
        build: &'static str,
    },
    #[error(
        "device \"cuda:{index}\" was asked for, but libtorch sees only {count} CUDA GPU(s) \
         (indices 0..{count}); pick an existing index or use device=auto"
    )]
    NoSuchGpu { index: usize, count: usize },
}

impl FromStr for DeviceRequest {
    type Err = DeviceError;

    fn from_str(text: &str) -> Result<Self, DeviceError> {
        let unsupported = || DeviceError::Unsupported(text.to_owned());
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => {
                let index = other.strip_prefix("cuda:").ok_or_else(unsupported)?;
                // Only plain decimal digits: "cuda:+1" or "cuda: 1" are typos, not GPUs.
                if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(unsupported());
                }
                index.parse().map(Self::Cuda).map_err(|_| unsupported())
            }
        }
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

/// Whether this binary was linked with libtorch's CUDA backend.
pub const CUDA_BUILD: bool = cfg!(feature = "cuda");

impl DeviceRequest {
    /// Resolves the request against the GPUs libtorch sees now.
    pub fn resolve(self) -> Result<tch::Device, DeviceError> {
        let count = if tch::Cuda::is_available() {
            usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
        } else {
            0
        };
        match self {
            Self::Cpu => Ok(tch::Device::Cpu),
            Self::Auto if count > 0 => Ok(tch::Device::Cuda(0)),
            Self::Auto => Ok(tch::Device::Cpu),
            Self::Cuda(_) if count == 0 => Err(DeviceError::NoCuda {
                requested: self.to_string(),
                build: if CUDA_BUILD {
                    "has the CUDA backend"
                } else {
                    "is CPU-only: rebuild with --features cuda on a GPU machine"
                },
            }),
            Self::Cuda(index) if index >= count => Err(DeviceError::NoSuchGpu { index, count }),
            Self::Cuda(index) => Ok(tch::Device::Cuda(index)),
        }
    }
}

/// The name the `active-device` property shows: "cpu" or "cuda:N".
pub fn device_name(device: tch::Device) -> String {
    match device {
        tch::Device::Cuda(index) => format!("cuda:{index}"),
        tch::Device::Cpu => "cpu".to_owned(),
        other => format!("{other:?}").to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_form() {
        assert_eq!("auto".parse(), Ok(DeviceRequest::Auto));
        assert_eq!("CPU".parse(), Ok(DeviceRequest::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceRequest::Cuda(0)));
        assert_eq!(" cuda:3 ".parse(), Ok(DeviceRequest::Cuda(3)));
    }

    #[test]
    fn rejects_anything_else_naming_the_value() {
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:+1", "", "mps"] {
            let err = bad.parse::<DeviceRequest>().unwrap_err();
            assert_eq!(err, DeviceError::Unsupported(bad.to_owned()));
            assert!(err.to_string().contains(&format!("\"{bad}\"")));
        }
    }

    #[test]
    fn cpu_always_resolves_and_cuda_names_the_problem_without_a_gpu() {
        assert_eq!(DeviceRequest::Cpu.resolve(), Ok(tch::Device::Cpu));
        if !tch::Cuda::is_available() {
            assert_eq!(DeviceRequest::Auto.resolve(), Ok(tch::Device::Cpu));
            let err = DeviceRequest::Cuda(0).resolve().unwrap_err();
            assert!(matches!(err, DeviceError::NoCuda { .. }));
            assert!(err.to_string().contains("cuda:0"), "{err}");
        }
    }
}
