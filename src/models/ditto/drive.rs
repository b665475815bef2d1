//! From a generated motion row to the driving pose and expression, as Ditto's
//! `motion_stitch.py` does for a still portrait: relative to the stream's first
//! generated row `d0`, the change is added to the portrait's own values (the pose in
//! bin-logit space, before it becomes degrees); the scale and the canonical keypoints
//! stay the portrait's; only the lip and eye keypoints take the generated expression;
//! the eyes are turned against the head's turn (the gaze fix) so that they keep looking
//! at the camera. Stitching is the renderer's.

use crate::core::motion::EXPRESSION_LEN;
use crate::core::{KeypointFrame, SourceKeypoints};

/// Keypoints whose expression is generated (the rest stays the portrait's).
pub const LIP_KEYPOINTS: [usize; 6] = [6, 12, 14, 17, 19, 20];
pub const EYE_KEYPOINTS: [usize; 5] = [11, 13, 15, 16, 18];
/// The gaze fix: eye expression per degree of head turn (`_fix_gaze`).
const GAZE_YAW_RATIO: f32 = 0.26;
const GAZE_PITCH_RATIO: f32 = 0.28;

/// Where each part sits in a motion row: scale - 1, pitch, yaw and roll as `bins`
/// logits each, translation (3), expression (63).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MotionLayout {
    pub bins: usize,
}

impl MotionLayout {
    /// The layout of rows `width` long (265 for LivePortrait's 66 bins), if any.
    pub fn of_width(width: usize) -> Option<Self> {
        let rest = width.checked_sub(1 + 3 + EXPRESSION_LEN)?;
        (rest > 0 && rest % 3 == 0).then_some(Self { bins: rest / 3 })
    }

    pub fn width(&self) -> usize {
        1 + 3 * self.bins + 3 + EXPRESSION_LEN
    }

    /// The start of pose part `axis` (0 pitch, 1 yaw, 2 roll).
    fn pose(&self, axis: usize) -> usize {
        1 + axis * self.bins
    }

    fn t(&self) -> usize {
        1 + 3 * self.bins
    }

    fn exp(&self) -> usize {
        self.t() + 3
    }

    /// The portrait's reading as a row (the first window's previous-frame condition).
    pub fn row_of(&self, source: &SourceKeypoints) -> Vec<f32> {
        let mut row = Vec::with_capacity(self.width());
        row.push(source.scale - 1.0);
        for bins in &source.pose_bins {
            row.extend_from_slice(bins);
        }
        row.extend_from_slice(&source.t);
        row.extend_from_slice(&source.exp);
        row
    }
}

/// The expectation over bins 3 degrees apart, from -97.5 for 66 bins (LivePortrait's
/// `headpose_pred_to_degree`).
pub fn degrees_of_bins(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    let total: f32 = weights.iter().sum();
    let expectation: f32 = weights
        .iter()
        .enumerate()
        .map(|(i, w)| i as f32 * w)
        .sum::<f32>()
        / total;
    expectation * 3.0 - 1.5 * (logits.len() as f32 - 1.0)
}

/// How the generated motion is applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriveControls {
    /// Weight of the generated change of pose and translation (1 = as generated).
    pub head: f32,
    /// Weight of the generated change of expression.
    pub expression: f32,
    /// Where the eyes look relative to the camera, degrees (x to image right, y up);
    /// (0, 0) keeps them on the camera whatever the head does.
    pub gaze: (f32, f32),
    /// How far the lips are pulled to the portrait's own (0 speaking .. 1 silence).
    pub mouth_rest: f32,
}

impl Default for DriveControls {
    fn default() -> Self {
        Self {
            head: 1.0,
            expression: 1.0,
            gaze: (0.0, 0.0),
            mouth_rest: 0.0,
        }
    }
}

/// Ditto's `_eye_delta`: the eyes' expression moved by `dx`, `dy` (degrees times the
/// gaze ratios); the two eyes move by different amounts towards each side.
fn eye_delta(exp: &mut [f32], dx: f32, dy: f32) {
    let (near, far) = if dx > 0.0 {
        (0.0007, 0.001)
    } else {
        (0.001, 0.0007)
    };
    exp[33] += dx * near;
    exp[45] += dx * far;
    exp[34] -= dy * 0.001;
    exp[46] -= dy * 0.001;
}

/// The driving frame of generated row `row` for the portrait `source` (`source_row`
/// is its row in `layout`), relative to the stream's first row `d0`.
pub fn driving_frame(
    layout: MotionLayout,
    source_row: &[f32],
    row: &[f32],
    d0: &[f32],
    controls: &DriveControls,
) -> KeypointFrame {
    let mixed = |i: usize, weight: f32| source_row[i] + (row[i] - d0[i]) * weight;
    let mut pose = [0.0f32; 3];
    let mut source_pose = [0.0f32; 3];
    for (axis, degrees) in pose.iter_mut().enumerate() {
        let start = layout.pose(axis);
        let logits: Vec<f32> = (start..start + layout.bins)
            .map(|i| mixed(i, controls.head))
            .collect();
        *degrees = degrees_of_bins(&logits);
        source_pose[axis] = degrees_of_bins(&source_row[start..start + layout.bins]);
    }
    let t: [f32; 3] = std::array::from_fn(|k| mixed(layout.t() + k, controls.head));
    let e = layout.exp();
    let mut exp: [f32; EXPRESSION_LEN] = std::array::from_fn(|k| source_row[e + k]);
    for &kp in LIP_KEYPOINTS.iter().chain(&EYE_KEYPOINTS) {
        for c in 0..3 {
            let k = 3 * kp + c;
            exp[k] = mixed(e + k, controls.expression);
        }
    }
    for &kp in &LIP_KEYPOINTS {
        for c in 0..3 {
            let k = 3 * kp + c;
            exp[k] += (source_row[e + k] - exp[k]) * controls.mouth_rest;
        }
    }
    let (gaze_x, gaze_y) = controls.gaze;
    let dx = (pose[1] - source_pose[1] - gaze_x) * GAZE_YAW_RATIO;
    let dy = (pose[0] - source_pose[0] - gaze_y) * GAZE_PITCH_RATIO;
    eye_delta(&mut exp, dx, dy);
    KeypointFrame {
        exp,
        scale: source_row[0] + 1.0,
        t,
        pitch: pose[0],
        yaw: pose[1],
        roll: pose[2],
    }
}

/// `row` clipped to the cfg's per-value range (`v_min_max_for_clip`), when it has one.
pub fn clip(row: &mut [f32], range: Option<&(Vec<f32>, Vec<f32>)>) {
    if let Some((low, high)) = range {
        for ((v, lo), hi) in row.iter_mut().zip(low).zip(high) {
            *v = v.clamp(*lo, lo.max(*hi));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(bins: usize) -> (MotionLayout, Vec<f32>) {
        let layout = MotionLayout { bins };
        let keypoints = SourceKeypoints {
            kp: [0.1; EXPRESSION_LEN],
            exp: std::array::from_fn(|i| i as f32 * 1e-3),
            scale: 1.3,
            t: [0.01, -0.02, 0.0],
            pose_bins: [
                (0..bins)
                    .map(|i| -((i as f32 - 30.0).powi(2)) / 9.0)
                    .collect(),
                (0..bins)
                    .map(|i| -((i as f32 - 35.0).powi(2)) / 9.0)
                    .collect(),
                (0..bins)
                    .map(|i| -((i as f32 - 33.0).powi(2)) / 9.0)
                    .collect(),
            ],
        };
        let row = layout.row_of(&keypoints);
        assert_eq!(row.len(), layout.width());
        assert_eq!(MotionLayout::of_width(layout.width()), Some(layout));
        (layout, row)
    }

    #[test]
    fn the_first_row_drives_the_portrait_as_it_is() {
        let (layout, source_row) = source(66);
        let d0: Vec<f32> = (0..layout.width()).map(|i| (i as f32).sin()).collect();
        let frame = driving_frame(layout, &source_row, &d0, &d0, &DriveControls::default());
        assert!((frame.scale - 1.3).abs() < 1e-6);
        assert_eq!(frame.t, [0.01, -0.02, 0.0]);
        assert_eq!(frame.exp.to_vec(), source_row[layout.exp()..].to_vec());
        let yaw = degrees_of_bins(&source_row[67..133]);
        assert!(
            (frame.yaw - yaw).abs() < 1e-4 && (yaw - 7.5).abs() < 0.1,
            "{yaw}"
        );
    }

    #[test]
    fn only_lips_and_eyes_move_and_the_eyes_turn_against_the_head() {
        let (layout, source_row) = source(66);
        let d0 = vec![0.0; layout.width()];
        let mut row = d0.clone();
        // Every expression value up by 0.1, the yaw's logits shifted towards larger bins.
        for v in &mut row[layout.exp()..] {
            *v = 0.1;
        }
        for (i, v) in row[67..133].iter_mut().enumerate() {
            *v = i as f32 * 0.05;
        }
        let still = driving_frame(layout, &source_row, &d0, &d0, &DriveControls::default());
        let frame = driving_frame(layout, &source_row, &row, &d0, &DriveControls::default());
        assert!(
            frame.yaw > still.yaw + 0.3,
            "{} vs {}",
            frame.yaw,
            still.yaw
        );
        let e = layout.exp();
        for kp in 0..21 {
            let driven = LIP_KEYPOINTS.contains(&kp) || EYE_KEYPOINTS.contains(&kp);
            for c in 0..3 {
                let k = 3 * kp + c;
                let moved = frame.exp[k] - source_row[e + k];
                if [33, 34, 45, 46].contains(&k) {
                    continue;
                }
                let expected = if driven { 0.1 } else { 0.0 };
                assert!((moved - expected).abs() < 1e-6, "value {k}: {moved}");
            }
        }
        // The gaze fix: the head turned by dyaw degrees moves values 33 and 45.
        let dyaw = frame.yaw - still.yaw;
        let fix = frame.exp[33] - source_row[e + 33] - 0.1;
        assert!(
            (fix - dyaw * 0.26 * 0.0007).abs() < 1e-6,
            "{fix} for {dyaw}"
        );
        // Silence pulls the lips back; a gaze offset moves the eyes the other way.
        let resting = DriveControls {
            mouth_rest: 1.0,
            gaze: (dyaw, 0.0),
            ..DriveControls::default()
        };
        let rest = driving_frame(layout, &source_row, &row, &d0, &resting);
        let k = 3 * 14;
        assert!((rest.exp[k] - source_row[e + k]).abs() < 1e-6);
        assert!((rest.exp[33] - source_row[e + 33] - 0.1).abs() < 1e-6);
    }
}
