//! The number format LivePortrait's networks compute in.
//!
//! In a reduced precision the convolution and linear weights and the activations
//! between them are 16-bit; what 16 bits would harm stays in float32, as PyTorch's
//! autocast (which the reference runs under on a GPU) keeps it: normalisation
//! statistics, softmax, sigmoid, the sampling grids and the grid sampling itself, the
//! keypoint algebra and the stitching MLPs. Every network still takes and returns
//! float32, so the rest of the engine does not know which precision runs inside.

use std::fmt;
use std::str::FromStr;

use tch::{Device, Kind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// As the networks were trained; the parity reference.
    #[default]
    Float32,
    /// bfloat16: float32's range with 8 bits of mantissa. Fast on CPUs with AVX-512
    /// BF16 or AMX and on GPUs from NVIDIA's Ampere on.
    BFloat16,
    /// IEEE half: more mantissa than bfloat16, less range; what the reference uses on
    /// a GPU. libtorch has no fast float16 convolutions for the CPU.
    Float16,
}

impl Precision {
    pub const NAMES: [&'static str; 3] = ["float32", "bfloat16", "float16"];

    /// The tensor kind of weights and activations.
    pub fn kind(self) -> Kind {
        match self {
            Self::Float32 => Kind::Float,
            Self::BFloat16 => Kind::BFloat16,
            Self::Float16 => Kind::Half,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Float32 => "float32",
            Self::BFloat16 => "bfloat16",
            Self::Float16 => "float16",
        }
    }

    /// Whether this precision can run on `device`, and if not why. libtorch's CPU
    /// float16 convolutions have no fast kernel: on the development machine a 3x3
    /// convolution at the warping module's size took 500 times as long as in float32,
    /// which would turn seconds per frame into hours.
    pub fn check_device(self, device: Device) -> Result<(), String> {
        if self == Self::Float16 && device == Device::Cpu {
            return Err("precision=float16 needs a CUDA device: libtorch's float16 \
                        convolutions on the CPU are hundreds of times slower than float32; \
                        use precision=bfloat16 (or float32) on the CPU"
                .into());
        }
        Ok(())
    }
}

/// Whether this CPU's bfloat16 convolutions run on bfloat16 instructions (AVX-512 BF16;
/// CPUs with AMX have them too) that libtorch's oneDNN may use (`ONEDNN_MAX_CPU_ISA`
/// can forbid them). Without them libtorch emulates bfloat16 convolutions one element
/// at a time: measured on this project's machines, LivePortrait's warping module took
/// 53 s instead of 0.3 s in float32. There the convolutions keep bfloat16's precision
/// (operands and results rounded to bfloat16) but compute in float32 (see
/// `crate::nn::layers::Conv`).
pub fn native_bfloat16_on_cpu() -> bool {
    static NATIVE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *NATIVE.get_or_init(|| {
        let allowed = ["ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"]
            .iter()
            .all(|variable| {
                std::env::var(variable).map_or(true, |isa| {
                    let isa = isa.to_ascii_uppercase();
                    isa == "ALL" || isa.contains("BF16") || isa.contains("AMX")
                })
            });
        #[cfg(target_arch = "x86_64")]
        let instructions = std::arch::is_x86_feature_detected!("avx512bf16");
        #[cfg(not(target_arch = "x86_64"))]
        let instructions = true;
        allowed && instructions
    })
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "float32" | "fp32" => Ok(Self::Float32),
            "bfloat16" | "bf16" => Ok(Self::BFloat16),
            "float16" | "fp16" | "half" => Ok(Self::Float16),
            _ => Err(format!(
                "unknown precision {text:?}: use one of {}",
                Self::NAMES.join(", ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for name in Precision::NAMES {
            let precision: Precision = name.parse().unwrap();
            assert_eq!(precision.name(), name);
        }
        assert_eq!("BF16".parse::<Precision>(), Ok(Precision::BFloat16));
        let err = "float8".parse::<Precision>().unwrap_err();
        assert!(err.contains("float8") && err.contains("bfloat16"), "{err}");
    }

    #[test]
    fn float16_is_refused_on_the_cpu_only() {
        assert!(Precision::Float16.check_device(Device::Cpu).is_err());
        assert!(Precision::Float16.check_device(Device::Cuda(0)).is_ok());
        assert!(Precision::BFloat16.check_device(Device::Cpu).is_ok());
    }
}
