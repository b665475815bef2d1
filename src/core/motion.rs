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
    /// Gaze, head distance and emotion, as eased for this frame.
    pub controls: FaceControls,
}

/// The user's face controls as drawn in one frame: eased towards the properties'
/// values (so a change takes about 300 ms), the same for every engine. The default is
/// none: eyes as the portrait's, the photo's distance, no emotion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceControls {
    /// Where the eyes look, degrees away from the camera (x to image right, y up).
    pub gaze: (f32, f32),
    /// Apparent distance to the camera as a scale of the head (1 = the photo, above 1
    /// closer).
    pub distance: f32,
    /// How much of each emotion is shown (0..1, [`Emotion::ALL`] order; neutral's weight
    /// is unused): the chosen one at `emotion-strength`, the others easing out.
    pub emotion: [f32; 8],
}

impl Default for FaceControls {
    fn default() -> Self {
        Self {
            gaze: (0.0, 0.0),
            distance: 1.0,
            emotion: [0.0; 8],
        }
    }
}

impl FaceControls {
    /// How much of `emotion` is shown.
    pub fn weight(&self, emotion: Emotion) -> f32 {
        self.emotion[emotion.index()]
    }

    /// The values the properties in `controls` ask for, before easing.
    pub fn target(controls: &MotionControls) -> Self {
        let mut emotion = [0.0; 8];
        if controls.emotion != Emotion::Neutral {
            emotion[controls.emotion.index()] = controls.emotion_strength.clamp(0.0, 1.0);
        }
        Self {
            gaze: controls.gaze.degrees(),
            distance: controls.head_distance.clamp(
                MotionControls::HEAD_DISTANCE.0,
                MotionControls::HEAD_DISTANCE.1,
            ),
            emotion,
        }
    }

    /// No emotion and the eyes as generated: for a motion source that takes emotion and
    /// gaze as conditions of its own (Ditto), only the distance is left to draw.
    pub fn distance_only(&self) -> Self {
        Self {
            distance: self.distance,
            ..Self::default()
        }
    }
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
    /// How `current` is applied to the portrait.
    pub composition: Composition,
    /// Gaze, head distance and emotion, as eased for this frame, applied by the
    /// renderer as offsets on top of `current`.
    pub controls: FaceControls,
}

/// How a renderer turns [`KeypointMotion`] into driving keypoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Composition {
    /// JoyVASA's pipeline: the change since `reference` moves the portrait's own pose
    /// and expression (lips as generated), rescaled to the portrait's face size.
    #[default]
    RelativeToFirst,
    /// `current` is the driving pose, scale, translation and expression themselves, on
    /// the portrait's canonical keypoints (the source already mixed them with the
    /// portrait's, as Ditto's pipeline does); `reference`, `expression_scale` and
    /// `head_motion` are not used.
    Driving,
}

/// What a motion source may need to know of the portrait, measured when it is
/// prepared for the renderer (plain values: motion sources never see the renderer).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PortraitCues {
    /// LivePortrait's motion-extractor reading of the portrait, when the renderer is
    /// LivePortrait's.
    pub keypoints: Option<SourceKeypoints>,
    /// The eyes as Ditto conditions on them, measured on the face mesh in the neural
    /// renderer's face window.
    pub eyes: Option<EyeConditions>,
}

/// The motion extractor's reading of a face: canonical keypoints, expression, scale,
/// translation, and the head pose as bin logits (pitch, yaw, roll).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceKeypoints {
    pub kp: [f32; EXPRESSION_LEN],
    pub exp: [f32; EXPRESSION_LEN],
    pub scale: f32,
    pub t: [f32; 3],
    pub pose_bins: [Vec<f32>; 3],
}

/// Eye openness (lid distances over eye width, image-left eye first) and the eyeballs'
/// offsets from the eye centres (x left, x right, y left, y right, z left, z right), in
/// face-window units, as Ditto's `eye_info` measures them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EyeConditions {
    pub open: [f32; 2],
    pub ball: [f32; 6],
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
    /// Neural motion: classifier-free guidance scale on the audio (0 = the model's own:
    /// JoyVASA 2.8, Ditto 2).
    pub cfg_scale: f32,
    /// Neural motion: diffusion sampling steps (0 = as many as the model was trained
    /// with).
    pub sampling_steps: u32,
    /// Neural motion: scale of the expression change (1 = as generated).
    pub expression_scale: f32,
    /// The emotion the motion expresses (Ditto conditions on it).
    pub emotion: Emotion,
    /// Where the eyes look (Ditto).
    pub gaze: Gaze,
    /// Ditto: frames two windows share (0 = the bundle's, for the stream's mode).
    pub window_overlap: u32,
    /// Apparent distance to the camera as a scale of the head (1 = the photo).
    pub head_distance: f32,
    /// How strongly `emotion` shows (0..1).
    pub emotion_strength: f32,
}

impl MotionControls {
    /// The range of `head_distance`.
    pub const HEAD_DISTANCE: (f32, f32) = (0.8, 1.25);
}

/// JoyVASA's inference default (`cfg_scale` 0 means the model's own).
pub const DEFAULT_CFG_SCALE: f32 = 2.8;

impl Default for MotionControls {
    fn default() -> Self {
        Self {
            head_motion: 1.0,
            cfg_scale: 0.0,
            sampling_steps: 0,
            expression_scale: 1.0,
            emotion: Emotion::Neutral,
            gaze: Gaze::Camera,
            window_overlap: 0,
            head_distance: 1.0,
            emotion_strength: 1.0,
        }
    }
}

/// The eight emotion classes, in the order Ditto's condition lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Emotion {
    Angry,
    Disgusted,
    Fearful,
    Happy,
    #[default]
    Neutral,
    Sad,
    Surprised,
    Contempt,
}

impl Emotion {
    pub const ALL: [Self; 8] = [
        Self::Angry,
        Self::Disgusted,
        Self::Fearful,
        Self::Happy,
        Self::Neutral,
        Self::Sad,
        Self::Surprised,
        Self::Contempt,
    ];

    /// The class's place in Ditto's condition.
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|&e| e == self).unwrap_or(4)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Angry => "angry",
            Self::Disgusted => "disgusted",
            Self::Fearful => "fearful",
            Self::Happy => "happy",
            Self::Neutral => "neutral",
            Self::Sad => "sad",
            Self::Surprised => "surprised",
            Self::Contempt => "contempt",
        }
    }
}

/// Where the eyes look.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Gaze {
    /// At the camera, whatever the head does.
    #[default]
    Camera,
    /// Away from the camera by (x to image right, y up) degrees.
    Degrees(f32, f32),
}

impl Gaze {
    /// The largest offset accepted, degrees.
    pub const MAX_DEGREES: f32 = 30.0;

    /// `camera` or `x,y` in degrees (each within +-30).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("camera") {
            return Ok(Self::Camera);
        }
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        let numbers: Option<Vec<f32>> = (parts.len() == 2)
            .then(|| parts.iter().map(|p| p.parse::<f32>().ok()).collect())
            .flatten();
        match numbers.as_deref() {
            Some(&[x, y])
                if x.is_finite()
                    && y.is_finite()
                    && x.abs() <= Self::MAX_DEGREES
                    && y.abs() <= Self::MAX_DEGREES =>
            {
                Ok(Self::Degrees(x, y))
            }
            _ => Err(format!(
                "gaze \"{text}\" is neither \"camera\" nor \"x,y\" in degrees (each between                  -{max} and {max}, x to the image's right, y up), e.g. gaze=\"10,-5\"",
                max = Self::MAX_DEGREES
            )),
        }
    }

    /// The offset in degrees ((0, 0) at the camera).
    pub fn degrees(self) -> (f32, f32) {
        match self {
            Self::Camera => (0.0, 0.0),
            Self::Degrees(x, y) => (x, y),
        }
    }

    /// The property's text for this gaze.
    pub fn describe(self) -> String {
        match self {
            Self::Camera => "camera".to_owned(),
            Self::Degrees(x, y) => format!("{x},{y}"),
        }
    }
}
