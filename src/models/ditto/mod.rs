//! Ditto (antgroup/ditto-talkinghead, Apache-2.0): streaming motion by diffusion in
//! LivePortrait's motion space. So far: the LMDM denoiser (`lmdm`), its DDIM sampler
//! and window joining (`sampler`), and the per-frame conditions (`conditions`); its
//! audio encoder is `models::hubert` (the large layout).

pub mod lmdm;
pub mod sampler;

use tch::Tensor;

/// Ditto's eight emotion classes, in its condition's order.
pub const EMOTIONS: [&str; 8] = [
    "angry",
    "disgusted",
    "fearful",
    "happy",
    "neutral",
    "sad",
    "surprised",
    "contempt",
];

/// The emotion condition: softmax of a one-hot times 8 (Ditto's ConditionHandler).
pub fn emotion_condition(class: usize) -> Tensor {
    let mut logits = [0.0f32; 8];
    logits[class.min(7)] = 8.0;
    Tensor::from_slice(&logits).softmax(0, tch::Kind::Float)
}

/// Per-frame conditions `(frames, cond)`: audio features `(frames, audio)` followed by
/// the emotion `(8)`, eye openness `(2)`, eyeball `(6)` and source keypoints `(63)`,
/// the same on every frame.
pub fn frame_conditions(
    audio: &Tensor,
    emotion: &Tensor,
    eye_open: &Tensor,
    eye_ball: &Tensor,
    source_keypoints: &Tensor,
) -> Tensor {
    let frames = audio.size()[0];
    let row = Tensor::cat(
        &[
            emotion.flatten(0, -1),
            eye_open.flatten(0, -1),
            eye_ball.flatten(0, -1),
            source_keypoints.flatten(0, -1),
        ],
        0,
    );
    Tensor::cat(
        &[
            audio.shallow_clone(),
            row.unsqueeze(0).expand([frames, -1], false),
        ],
        1,
    )
}

/// The source motion in the model's layout `(265)`: scale - 1, pitch, yaw and roll as
/// 66 bin logits each, translation (3), expression (63).
pub fn motion_row(
    scale: &Tensor,
    pitch: &Tensor,
    yaw: &Tensor,
    roll: &Tensor,
    t: &Tensor,
    exp: &Tensor,
) -> Tensor {
    Tensor::cat(
        &[
            scale.flatten(0, -1) - 1.0,
            pitch.flatten(0, -1),
            yaw.flatten(0, -1),
            roll.flatten(0, -1),
            t.flatten(0, -1),
            exp.flatten(0, -1),
        ],
        0,
    )
}
