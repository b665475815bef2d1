//! What a face mesh says about a face's expression and pose, as plain numbers: the
//! judge that tests and the evaluation apply to rendered frames (the renderers never
//! read it). Lengths are in inter-ocular distances (IOD) of the face read, so faces of
//! any size compare; image axes (x right, y down).

use super::mesh::{FaceMesh, point};

/// Mesh points of the brows (MediaPipe's numbering): the top of each brow's middle, and
/// each brow's inner end, image-left then image-right.
const BROW_MIDDLE: [usize; 2] = [105, 334];
const BROW_INNER: [usize; 2] = [107, 336];

/// One face's expression and pose.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceReading {
    /// Distance between the iris centres, pixels.
    pub iod: f32,
    /// Each iris's centre from the midpoint of its eye's corners, IOD (x, y),
    /// image-left eye first.
    pub iris: [(f32, f32); 2],
    /// Lid gap over eye width, image-left eye first.
    pub eye_openness: [f32; 2],
    /// Inner-lip gap at the mouth's centre, IOD.
    pub lip_gap: f32,
    /// Each mouth corner's height above the lips' centre, IOD, image-left first.
    pub corner_lift: [f32; 2],
    /// Each brow's middle above its iris, IOD, image-left first.
    pub brow_height: [f32; 2],
    /// Distance between the brows' inner ends, IOD.
    pub brow_gap: f32,
    /// Head pose, degrees: turning (towards image right), nodding (chin down) and
    /// tilting (clockwise), from the mesh's 3D points.
    pub yaw: f32,
    pub pitch: f32,
    pub roll: f32,
}

impl FaceReading {
    /// The mean of a per-side value.
    pub fn mean(values: [f32; 2]) -> f32 {
        (values[0] + values[1]) / 2.0
    }
}

/// Reads `mesh`.
pub fn read(mesh: &FaceMesh) -> FaceReading {
    let at = |i: usize| mesh.points[i];
    let (left_iris, right_iris) = mesh.iris_centres();
    let iod = (right_iris.0 - left_iris.0)
        .hypot(right_iris.1 - left_iris.1)
        .max(1e-3);
    let mid = |a: usize, b: usize| {
        let (pa, pb) = (at(a), at(b));
        ((pa[0] + pb[0]) / 2.0, (pa[1] + pb[1]) / 2.0)
    };
    let iris_from = |iris: (f32, f32), corners: (f32, f32)| {
        ((iris.0 - corners.0) / iod, (iris.1 - corners.1) / iod)
    };
    let openness = mesh.eye_openness();
    let lips = mid(point::UPPER_LIP_INNER, point::LOWER_LIP_INNER);
    let (upper, lower) = (at(point::UPPER_LIP_INNER), at(point::LOWER_LIP_INNER));
    let lift = |corner: usize| (lips.1 - at(corner)[1]) / iod;
    let brow = |brow: usize, iris: (f32, f32)| (iris.1 - at(brow)[1]) / iod;
    let (inner_left, inner_right) = (at(BROW_INNER[0]), at(BROW_INNER[1]));
    // Pose: the cheek-to-cheek vector turns with yaw and roll, the forehead-to-chin
    // vector with pitch (depth grows away from the camera).
    let (cheek_l, cheek_r) = (at(point::CHEEK_LEFT), at(point::CHEEK_RIGHT));
    let across = [
        cheek_r[0] - cheek_l[0],
        cheek_r[1] - cheek_l[1],
        cheek_r[2] - cheek_l[2],
    ];
    let (top, chin) = (at(point::FOREHEAD), at(point::CHIN));
    let down = [chin[0] - top[0], chin[1] - top[1], chin[2] - top[2]];
    FaceReading {
        iod,
        iris: [
            iris_from(left_iris, mid(point::LEFT_EYE_OUTER, point::LEFT_EYE_INNER)),
            iris_from(
                right_iris,
                mid(point::RIGHT_EYE_INNER, point::RIGHT_EYE_OUTER),
            ),
        ],
        eye_openness: [openness.0, openness.1],
        lip_gap: (lower[1] - upper[1]).max(0.0) / iod,
        corner_lift: [lift(point::MOUTH_LEFT), lift(point::MOUTH_RIGHT)],
        brow_height: [
            brow(BROW_MIDDLE[0], left_iris),
            brow(BROW_MIDDLE[1], right_iris),
        ],
        brow_gap: (inner_right[0] - inner_left[0]).hypot(inner_right[1] - inner_left[1]) / iod,
        // Turned to image right, the image-right cheek recedes; nodding, the chin does.
        yaw: across[2].atan2(across[0]).to_degrees(),
        pitch: down[2].atan2(down[1]).to_degrees(),
        roll: across[1].atan2(across[0]).to_degrees(),
    }
}
