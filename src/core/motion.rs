//! Motion: what a motion source makes of a frame's audio and what a renderer draws, as
//! plain values. Two kinds exist: face parameters (mouth, lids, brows, head pose, as
//! the builtin motion makes them) and motion in LivePortrait's keypoint space (as its
//! neural motion generators make it). A renderer says which kinds it draws.

use std::fmt;

/// The kinds of motion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MotionKind {
    /// [`FaceMotion`].
    Face,
    /// [`KeypointMotion`].
    Keypoints,
}

impl fmt::Display for MotionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Face => "face parameters",
            Self::Keypoints => "LivePortrait keypoint motion",
        })
    }
}

/// One frame of motion.
// Made and consumed once per frame; the larger variant is a few hundred bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Motion {
    Face(FaceMotion),
    Keypoints(KeypointMotion),
}

impl Motion {
    pub fn kind(&self) -> MotionKind {
        match self {
            Self::Face(_) => MotionKind::Face,
            Self::Keypoints(_) => MotionKind::Keypoints,
        }
    }

    /// The face at rest.
    pub fn neutral() -> Self {
        Self::Face(FaceMotion::default())
    }

    /// The face parameters, if this is that kind of motion.
    pub fn face(&self) -> Option<&FaceMotion> {
        match self {
            Self::Face(face) => Some(face),
            Self::Keypoints(_) => None,
        }
    }

    /// The keypoint motion, if this is that kind of motion.
    pub fn keypoints(&self) -> Option<&KeypointMotion> {
        match self {
            Self::Keypoints(keypoints) => Some(keypoints),
            Self::Face(_) => None,
        }
    }
}

/// How the face looks in one frame, as parameters. The default is a face at rest: lips
/// closed, eyes open, head still. (A portrait photographed with parted lips is drawn as
/// it is at the source's rest opening for it; at 0 its lips close.)
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaceMotion {
    /// Lip separation: 0 = closed .. 1 = wide open.
    pub mouth_open: f32,
    /// Lip corners: -1 = drawn in .. 0 = rest .. 1 = spread (as in "ee").
    pub mouth_width: f32,
    /// Lip rounding/protrusion (as in "oo", "w"): 0 .. 1.
    pub mouth_round: f32,
    /// Eyelid closure per eye (image left, image right): 0 = open .. 1 = closed.
    pub blink_left: f32,
    pub blink_right: f32,
    /// Eyebrow raise: 0 .. 1.
    pub brow_raise: f32,
    /// Head rotation in radians: turning (positive = towards image right), nodding
    /// (positive = chin down) and tilting (positive = clockwise on screen).
    pub yaw: f32,
    pub pitch: f32,
    pub roll: f32,
    /// Head translation in inter-ocular distances (positive = right, down).
    pub shift_x: f32,
    pub shift_y: f32,
}

/// Expression values per frame in LivePortrait's keypoint space (21 keypoints x 3).
pub const EXPRESSION_LEN: usize = 63;

/// One frame of motion in LivePortrait's keypoint space: expression deltas, scale,
/// translation, and the head pose in degrees (the reference's motion-extractor terms).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeypointFrame {
    pub exp: [f32; EXPRESSION_LEN],
    pub scale: f32,
    pub t: [f32; 3],
    pub pitch: f32,
    pub yaw: f32,
    pub roll: f32,
}

impl KeypointFrame {
    /// The frame a share `frac` (0..1) of the way from `self` to `other`.
    pub fn lerp(&self, other: &Self, frac: f32) -> Self {
        let mix = |x: f32, y: f32| x + (y - x) * frac;
        Self {
            exp: std::array::from_fn(|i| mix(self.exp[i], other.exp[i])),
            scale: mix(self.scale, other.scale),
            t: std::array::from_fn(|i| mix(self.t[i], other.t[i])),
            pitch: mix(self.pitch, other.pitch),
            yaw: mix(self.yaw, other.yaw),
            roll: mix(self.roll, other.roll),
        }
    }
}

/// One frame of generated keypoint motion, with what the renderer needs to apply it the
/// way the reference pipelines do (relative to the stream's first frame).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KeypointMotion {
    /// This frame's generated motion.
    pub current: KeypointFrame,
    /// The stream's first generated frame: motion is applied relative to it.
    pub reference: KeypointFrame,
    /// Scale of the expression change (1 = as generated).
    pub expression_scale: f32,
    /// Scale of the head's turn, scale change and translation (1 = as generated).
    pub head_motion: f32,
    /// How far the lips are pulled to the portrait's closed mouth: 0 while speaking,
    /// 1 in silence.
    pub mouth_rest: f32,
    /// Procedural eyelid closure (0 open .. 1 closed) drawn over the generated eyes,
    /// when the user asked for procedural blinks; `None` leaves the eyes as generated.
    pub blink: Option<f32>,
}

/// Where the blinks come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum BlinkSource {
    /// The motion source's own: procedural for the builtin motion, as generated for a
    /// neural motion generator.
    #[default]
    Auto,
    /// The builtin motion's procedural blinks, whatever the motion source (drawn over a
    /// neural generator's eyes).
    Procedural,
}

/// Live controls of the motion (element properties that may change while playing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotionControls {
    /// Head motion scale: 0 = still .. 1 = natural .. 2 = lively.
    pub head_motion: f32,
    /// Neural motion: classifier-free guidance scale on the audio.
    pub cfg_scale: f32,
    /// Neural motion: diffusion sampling steps (0 = as many as the model was trained
    /// with).
    pub sampling_steps: u32,
    /// Neural motion: scale of the expression change (1 = as generated).
    pub expression_scale: f32,
}

/// JoyVASA's inference default.
pub const DEFAULT_CFG_SCALE: f32 = 2.8;

impl Default for MotionControls {
    fn default() -> Self {
        Self {
            head_motion: 1.0,
            cfg_scale: DEFAULT_CFG_SCALE,
            sampling_steps: 0,
            expression_scale: 1.0,
        }
    }
}
