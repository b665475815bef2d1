//! JoyVASA's motion generator (MIT; jdh-algo/JoyVASA), re-implemented with libtorch:
//! the HuBERT audio encoder that turns speech into per-frame features. (The diffusion
//! denoiser and its sampler are not here yet.)
//!
//! No GStreamer here.

pub mod hubert;

pub use self::hubert::{AudioEncoder, HubertConfig};
