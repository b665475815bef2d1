//! LivePortrait's own expression edits: the sliders of its image-retargeting demo
//! (KwaiVGI/LivePortrait, `src/gradio_pipeline.py`, `update_delta_new_*`), each a fixed
//! offset of some of the 21 expression keypoints per slider unit. The offsets are
//! added to the expression before the keypoints are posed, as that demo does.

use crate::core::motion::EXPRESSION_LEN;

/// Slider values, in the demo's units (its ranges in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ExpressionEdit {
    /// Smile [-0.3, 1.3].
    pub smile: f32,
    /// Eyebrows: positive raised, negative frowning [-30, 30].
    pub eyebrow: f32,
    /// One eye closing [0, 39].
    pub wink: f32,
    /// Eyeball direction: horizontal [-30, 30] and vertical [-63, 63].
    pub eyeball_x: f32,
    pub eyeball_y: f32,
    /// The lips moved sideways (the demo's "lip variation zero", [-0.09, 0.09]).
    pub lip_shift: f32,
}

/// Offsets of the expression `(21 x 3, keypoint-major)` for `edit`.
pub fn expression_offsets(edit: &ExpressionEdit) -> [f32; EXPRESSION_LEN] {
    let mut d = [0.0f32; EXPRESSION_LEN];
    let mut add = |keypoint: usize, axis: usize, value: f32| d[keypoint * 3 + axis] += value;
    let e = edit;
    if e.eyeball_x != 0.0 || e.eyeball_y != 0.0 {
        // Looking to one side turns the eye on that side a little less.
        let (near, far) = if e.eyeball_x > 0.0 {
            (0.0007, 0.001)
        } else {
            (0.001, 0.0007)
        };
        add(11, 0, e.eyeball_x * near);
        add(15, 0, e.eyeball_x * far);
        add(11, 1, e.eyeball_y * -0.001);
        add(15, 1, e.eyeball_y * -0.001);
        // The lids follow a vertical gaze.
        let lids = -e.eyeball_y / 2.0;
        add(11, 1, lids * -0.001);
        add(13, 1, lids * 0.0003);
        add(15, 1, lids * -0.001);
        add(16, 1, lids * 0.0003);
    }
    if e.smile != 0.0 {
        for (keypoint, axis, per_unit) in [
            (20, 1, -0.01),
            (14, 1, -0.02),
            (17, 1, 0.0065),
            (17, 2, 0.003),
            (13, 1, -0.00275),
            (16, 1, -0.00275),
            (3, 1, -0.0035),
            (7, 1, -0.0035),
        ] {
            add(keypoint, axis, e.smile * per_unit);
        }
    }
    if e.wink != 0.0 {
        for (keypoint, axis, per_unit) in [
            (11, 1, 0.001),
            (13, 1, -0.0003),
            (17, 0, 0.0003),
            (17, 1, 0.0003),
            (3, 1, -0.0003),
        ] {
            add(keypoint, axis, e.wink * per_unit);
        }
    }
    if e.eyebrow > 0.0 {
        add(1, 1, e.eyebrow * 0.001);
        add(2, 1, e.eyebrow * -0.001);
    } else if e.eyebrow < 0.0 {
        add(1, 0, e.eyebrow * -0.001);
        add(2, 0, e.eyebrow * 0.001);
        add(1, 1, e.eyebrow * 0.0003);
        add(2, 1, e.eyebrow * -0.0003);
    }
    add(19, 0, e.lip_shift);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_slider_moves_its_keypoints_and_nothing_moves_at_zero() {
        assert_eq!(
            expression_offsets(&ExpressionEdit::default()),
            [0.0; EXPRESSION_LEN]
        );
        let smile = expression_offsets(&ExpressionEdit {
            smile: 1.0,
            ..ExpressionEdit::default()
        });
        assert_eq!(smile[14 * 3 + 1], -0.02);
        assert_eq!(smile[20 * 3 + 1], -0.01);
        let moved: Vec<usize> = (0..EXPRESSION_LEN).filter(|&i| smile[i] != 0.0).collect();
        assert_eq!(moved.len(), 8);
        let gaze = expression_offsets(&ExpressionEdit {
            eyeball_x: 10.0,
            ..ExpressionEdit::default()
        });
        assert!((gaze[11 * 3] - 0.007).abs() < 1e-7 && (gaze[15 * 3] - 0.01).abs() < 1e-7);
        let frown = expression_offsets(&ExpressionEdit {
            eyebrow: -10.0,
            ..ExpressionEdit::default()
        });
        assert!(
            frown[3] > 0.0 && frown[2 * 3] < 0.0,
            "the brows come together"
        );
    }
}
