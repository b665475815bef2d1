//! Ditto's eye conditions from MediaPipe's 478 points (ditto-talkinghead
//! core/utils/eye_info.py): openness per eye as the sum of three lid distances over the
//! eye's width, and the eyeball's offset from the eye's centre with its component along
//! the eye's axis taken out. Points are in the face window's units (x and y in 0..1
//! across the window, z on the same scale), as Ditto measures them on its 512 crop.

use crate::core::EyeConditions;

/// One eye's MediaPipe indices: corners (outer, inner), three lid pairs, the iris centre.
struct EyeIndices {
    corners: [usize; 2],
    lids: [[usize; 2]; 3],
    iris: usize,
}

/// The image-left eye (the subject's right), then the image-right one.
const EYES: [EyeIndices; 2] = [
    EyeIndices {
        corners: [33, 133],
        lids: [[145, 159], [144, 160], [153, 158]],
        iris: 468,
    },
    EyeIndices {
        corners: [263, 362],
        lids: [[374, 386], [373, 387], [380, 385]],
        iris: 473,
    },
];

/// The points an eye measurement reads; fewer points than this are no mesh with irises.
pub const POINTS_NEEDED: usize = 478;

const EPS: f32 = 1e-8;

fn sub(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn norm(a: [f32; 3]) -> f32 {
    (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt()
}

/// The conditions of the mesh `points` (window units), or `None` when the mesh has no
/// iris points.
pub fn eye_conditions(points: &[[f32; 3]]) -> Option<EyeConditions> {
    if points.len() < POINTS_NEEDED {
        return None;
    }
    let mut open = [0.0f32; 2];
    let mut ball = [0.0f32; 6];
    for (side, eye) in EYES.iter().enumerate() {
        let (outer, inner) = (points[eye.corners[0]], points[eye.corners[1]]);
        let width = norm(sub(outer, inner));
        let lids: f32 = eye
            .lids
            .iter()
            .map(|&[a, b]| norm(sub(points[a], points[b])))
            .sum();
        open[side] = lids / (width + EPS);
        let centre = [
            (outer[0] + inner[0]) / 2.0,
            (outer[1] + inner[1]) / 2.0,
            (outer[2] + inner[2]) / 2.0,
        ];
        let axis = sub(outer, inner);
        let axis_len = norm(axis) + EPS;
        let offset = sub(points[eye.iris], centre);
        let distance = norm(offset);
        for k in 0..3 {
            // (unit offset - unit axis) x distance, as the reference writes it.
            let moved = (offset[k] / (distance + EPS) - axis[k] / axis_len) * distance;
            ball[2 * k + side] = moved;
        }
    }
    Some(EyeConditions { open, ball })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A face whose eyes are 0.1 wide and 0.03 open (each lid pair), irises at `iris`
    /// offsets from the centres.
    fn face(iris: [f32; 3]) -> Vec<[f32; 3]> {
        let mut points = vec![[0.5f32, 0.5, 0.0]; POINTS_NEEDED];
        for (eye, cx) in EYES.iter().zip([0.35f32, 0.65]) {
            let outward = if cx < 0.5 { -1.0 } else { 1.0 };
            points[eye.corners[0]] = [cx + 0.05 * outward, 0.4, 0.0];
            points[eye.corners[1]] = [cx - 0.05 * outward, 0.4, 0.0];
            for (i, &[low, high]) in eye.lids.iter().enumerate() {
                let x = cx - 0.02 + 0.02 * i as f32;
                points[low] = [x, 0.415, 0.0];
                points[high] = [x, 0.385, 0.0];
            }
            points[eye.iris] = [cx + iris[0], 0.4 + iris[1], iris[2]];
        }
        points
    }

    #[test]
    fn openness_is_three_lid_distances_over_the_width() {
        let c = eye_conditions(&face([0.0; 3])).unwrap();
        for open in c.open {
            assert!((open - 0.09 / 0.1).abs() < 1e-5, "{open}");
        }
        assert!(c.ball.iter().all(|b| b.abs() < 1e-6), "{:?}", c.ball);
    }

    #[test]
    fn a_look_up_moves_the_eyeballs_up_and_along_the_axis_minus_the_distance() {
        // Up by 0.01 (y down in the window): the offset is (0, -0.01, 0), of length 0.01;
        // the reference subtracts the unit axis times that length.
        let c = eye_conditions(&face([0.0, -0.01, 0.0])).unwrap();
        // Left eye: axis outer - inner points to -x; right eye to +x.
        assert!((c.ball[0] - 0.01).abs() < 1e-5, "{:?}", c.ball);
        assert!((c.ball[1] + 0.01).abs() < 1e-5, "{:?}", c.ball);
        assert!((c.ball[2] + 0.01).abs() < 1e-5 && (c.ball[3] + 0.01).abs() < 1e-5);
        assert!(eye_conditions(&face([0.0; 3])[..468]).is_none());
    }
}
