//! What the face controls ask of the builtin rig: the emotion as amounts of a few
//! facial actions (mouth corners, cheeks, brows, lids), the gaze as the irises'
//! displacement, in face units (IOD). Pure arithmetic, unit-tested; the rig draws it.
//!
//! The emotions' actions follow the facial action units that characterise them in
//! Ekman and Friesen's FACS (happy: lip corner puller and cheek raiser; sad: inner brow
//! raiser, brow lowerer, lip corner depressor; angry: brow lowerer, lid tightener, lip
//! presser; surprised: brow raisers and upper lid raiser; disgusted: nose wrinkler and
//! lip corner depressor; fearful: brow raisers with brow lowerer, upper lid raiser, lip
//! stretcher; contempt: one lip corner raised), sized so that strength 1 reads clearly
//! on a 512-pixel portrait without tearing it.

use crate::core::{Emotion, FaceControls};

/// How far an iris moves per unit of the sine of the gaze angle, in IOD: the eye turns
/// about a centre about 10.5 mm behind the iris, on a 63 mm inter-ocular distance.
pub const GAZE_RADIUS: f64 = 0.167;

/// Facial actions, each in its own unit (see the fields), for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Actions {
    /// Mouth corners raised, IOD (negative lowers), image-left then image-right.
    pub corner_lift: [f64; 2],
    /// Added to the motion's lip spread (-1..1).
    pub mouth_width: f64,
    /// Cheeks raised under the eyes, IOD.
    pub cheek_raise: f64,
    /// Whole brows raised, in units of the rig's full brow raise.
    pub brow_raise: f64,
    /// Inner ends of the brows raised, IOD.
    pub brow_inner: f64,
    /// Brows lowered and drawn together: 0..1.
    pub brow_knit: f64,
    /// Upper lids: positive raised (eyes wider) 0..1, negative lowered (narrowed) -1..0.
    pub lids: f64,
}

/// The actions of each emotion at strength 1.
fn actions_of(emotion: Emotion) -> Actions {
    let none = Actions::default();
    match emotion {
        Emotion::Neutral => none,
        Emotion::Happy => Actions {
            corner_lift: [0.09, 0.09],
            mouth_width: 0.5,
            cheek_raise: 0.03,
            lids: -0.2,
            ..none
        },
        Emotion::Sad => Actions {
            corner_lift: [-0.06, -0.06],
            mouth_width: -0.15,
            brow_inner: 0.06,
            brow_knit: 0.3,
            lids: -0.2,
            ..none
        },
        Emotion::Angry => Actions {
            corner_lift: [-0.015, -0.015],
            mouth_width: -0.3,
            brow_knit: 1.0,
            lids: -0.15,
            ..none
        },
        Emotion::Surprised => Actions {
            mouth_width: -0.2,
            brow_raise: 1.4,
            lids: 0.9,
            ..none
        },
        Emotion::Disgusted => Actions {
            corner_lift: [-0.035, -0.035],
            mouth_width: -0.1,
            cheek_raise: 0.02,
            brow_knit: 0.6,
            lids: -0.3,
            ..none
        },
        Emotion::Fearful => Actions {
            corner_lift: [-0.015, -0.015],
            mouth_width: 0.35,
            brow_raise: 0.6,
            brow_inner: 0.03,
            brow_knit: 0.35,
            lids: 0.6,
            ..none
        },
        Emotion::Contempt => Actions {
            corner_lift: [0.0, 0.07],
            mouth_width: 0.1,
            lids: -0.1,
            ..none
        },
    }
}

impl Actions {
    /// The actions the controls' emotion weights ask for (a weighted sum).
    pub fn of(controls: &FaceControls) -> Self {
        let mut sum = Self::default();
        for emotion in Emotion::ALL {
            let w = f64::from(controls.weight(emotion));
            if w == 0.0 {
                continue;
            }
            let a = actions_of(emotion);
            for side in 0..2 {
                sum.corner_lift[side] += w * a.corner_lift[side];
            }
            sum.mouth_width += w * a.mouth_width;
            sum.cheek_raise += w * a.cheek_raise;
            sum.brow_raise += w * a.brow_raise;
            sum.brow_inner += w * a.brow_inner;
            sum.brow_knit += w * a.brow_knit;
            sum.lids += w * a.lids;
        }
        sum
    }

    /// Whether the lower face (mouth corners, cheeks) has anything to do.
    pub fn moves_lower_face(&self) -> bool {
        self.corner_lift.iter().any(|x| *x != 0.0) || self.cheek_raise != 0.0
    }

    /// Whether the upper face (brows, lids) has anything to do.
    pub fn moves_upper_face(&self) -> bool {
        self.brow_raise != 0.0
            || self.brow_inner != 0.0
            || self.brow_knit != 0.0
            || self.lids != 0.0
    }
}

/// The irises' displacement for `controls`' gaze, IOD (u to image right, v down).
pub fn iris_shift(controls: &FaceControls) -> (f64, f64) {
    let (x, y) = controls.gaze;
    (
        GAZE_RADIUS * f64::from(x).to_radians().sin(),
        -GAZE_RADIUS * f64::from(y).to_radians().sin(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(emotion: Emotion, strength: f32) -> FaceControls {
        let mut controls = FaceControls::default();
        controls.emotion[emotion.index()] = strength;
        controls
    }

    #[test]
    fn emotions_act_as_their_action_units_say_and_scale_with_strength() {
        assert_eq!(Actions::of(&FaceControls::default()), Actions::default());
        let happy = Actions::of(&with(Emotion::Happy, 1.0));
        assert!(happy.corner_lift.iter().all(|x| *x > 0.0) && happy.cheek_raise > 0.0);
        let sad = Actions::of(&with(Emotion::Sad, 1.0));
        assert!(sad.corner_lift.iter().all(|x| *x < 0.0) && sad.brow_inner > 0.0);
        assert!(Actions::of(&with(Emotion::Angry, 1.0)).brow_knit > 0.5);
        let surprised = Actions::of(&with(Emotion::Surprised, 1.0));
        assert!(surprised.brow_raise > 0.5 && surprised.lids > 0.5);
        let contempt = Actions::of(&with(Emotion::Contempt, 1.0));
        assert!(contempt.corner_lift[1] > contempt.corner_lift[0]);
        let half = Actions::of(&with(Emotion::Happy, 0.5));
        assert!((half.corner_lift[0] - happy.corner_lift[0] / 2.0).abs() < 1e-12);
        assert!(!Actions::of(&with(Emotion::Neutral, 1.0)).moves_upper_face());
    }

    #[test]
    fn the_iris_moves_with_the_sine_of_the_gaze_angle() {
        let controls = FaceControls {
            gaze: (30.0, -30.0),
            ..FaceControls::default()
        };
        let (u, v) = iris_shift(&controls);
        assert!((u - GAZE_RADIUS / 2.0).abs() < 1e-9);
        // Looking down moves the iris down (v grows towards the chin).
        assert!((v - GAZE_RADIUS / 2.0).abs() < 1e-9);
        assert_eq!(iris_shift(&FaceControls::default()), (0.0, 0.0));
    }
}
