//! Network sizes, in the schema of LivePortrait's `src/config/models.yaml` (as JSON),
//! with the official sizes as a preset.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppearanceConfig {
    pub image_channel: i64,
    pub block_expansion: i64,
    pub num_down_blocks: i64,
    pub max_features: i64,
    pub reshape_channel: i64,
    pub reshape_depth: i64,
    pub num_resblocks: i64,
}

/// The motion extractor's ConvNeXt-V2 backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MotionConfig {
    pub num_kp: i64,
    #[serde(default = "default_bins")]
    pub num_bins: i64,
    pub depths: Vec<i64>,
    pub dims: Vec<i64>,
}

fn default_bins() -> i64 {
    66
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenseMotionConfig {
    pub block_expansion: i64,
    pub max_features: i64,
    pub num_blocks: i64,
    pub reshape_depth: i64,
    pub compress: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WarpingConfig {
    pub num_kp: i64,
    pub block_expansion: i64,
    pub max_features: i64,
    pub num_down_blocks: i64,
    pub reshape_channel: i64,
    pub estimate_occlusion_map: bool,
    pub dense_motion_params: DenseMotionConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpadeConfig {
    pub upscale: i64,
    pub block_expansion: i64,
    pub max_features: i64,
    pub num_down_blocks: i64,
    /// Not in models.yaml: the decoder's default.
    #[serde(default = "default_out_channels")]
    pub out_channels: i64,
}

fn default_out_channels() -> i64 {
    64
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    pub input_size: i64,
    pub hidden_sizes: Vec<i64>,
    pub output_size: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StitchingConfig {
    pub stitching: MlpConfig,
    pub lip: MlpConfig,
    pub eye: MlpConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LivePortraitConfig {
    pub appearance_feature_extractor_params: AppearanceConfig,
    pub motion_extractor_params: MotionConfig,
    pub warping_module_params: WarpingConfig,
    pub spade_generator_params: SpadeConfig,
    pub stitching_retargeting_module_params: StitchingConfig,
}

impl LivePortraitConfig {
    /// LivePortrait's released human model (models.yaml; the motion extractor's
    /// backbone is convnextv2_tiny).
    pub fn official() -> Self {
        let mlp = |input_size, hidden_sizes: &[i64], output_size| MlpConfig {
            input_size,
            hidden_sizes: hidden_sizes.to_vec(),
            output_size,
        };
        Self {
            appearance_feature_extractor_params: AppearanceConfig {
                image_channel: 3,
                block_expansion: 64,
                num_down_blocks: 2,
                max_features: 512,
                reshape_channel: 32,
                reshape_depth: 16,
                num_resblocks: 6,
            },
            motion_extractor_params: MotionConfig {
                num_kp: 21,
                num_bins: 66,
                depths: vec![3, 3, 9, 3],
                dims: vec![96, 192, 384, 768],
            },
            warping_module_params: WarpingConfig {
                num_kp: 21,
                block_expansion: 64,
                max_features: 512,
                num_down_blocks: 2,
                reshape_channel: 32,
                estimate_occlusion_map: true,
                dense_motion_params: DenseMotionConfig {
                    block_expansion: 32,
                    max_features: 1024,
                    num_blocks: 5,
                    reshape_depth: 16,
                    compress: 4,
                },
            },
            spade_generator_params: SpadeConfig {
                upscale: 2,
                block_expansion: 64,
                max_features: 512,
                num_down_blocks: 2,
                out_channels: 64,
            },
            stitching_retargeting_module_params: StitchingConfig {
                stitching: mlp(126, &[128, 128, 64], 65),
                lip: mlp(65, &[128, 128, 64], 63),
                eye: mlp(66, &[256, 256, 128, 128, 64], 63),
            },
        }
    }

    /// A named size: `official`.
    pub fn preset(name: &str) -> Option<Self> {
        (name == "official").then(Self::official)
    }
}
