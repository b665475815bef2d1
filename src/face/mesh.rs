//! The 478-point face mesh (MediaPipe's face landmark model with attention: 468 points
//! with depth, lips and eyes refined, five points per iris), run as MediaPipe's
//! FaceLandmarkFrontCpu runs it on a still image: the region from the detection (turned
//! to level the eyes, 1.5 times the box, square), 192x192 pixels of it, the refinement of
//! the lips, eyes and irises, and the points projected back into the portrait.

use super::detect::Detection;
use super::roi::{Border, Roi, sigmoid_of};
use crate::nn::graph::{Graph, GraphError};
use crate::portrait::Portrait;

static LANDMARKS: &[u8] =
    include_bytes!("../../models/mediapipe/face_landmark_with_attention.safetensors");

const INPUT: usize = 192;
pub const MESH_POINTS: usize = 468;
pub const POINTS: usize = 478;
/// Where the irises go: centre, then the edges (right, top, left, bottom).
pub const LEFT_IRIS: usize = 468;
pub const RIGHT_IRIS: usize = 473;
/// The region around a detection: MediaPipe's face_detection_front_detection_to_roi.
const DETECTION_ROI_SCALE: f64 = 1.5;
/// Below this face-presence score the model says the region holds no face
/// (MediaPipe's threshold for the with-attention model).
const MIN_PRESENCE: f64 = 0.5;

/// Named mesh points (MediaPipe's canonical face mesh numbering). "Left" and "right"
/// are as seen in the image.
pub mod point {
    pub const LEFT_EYE_OUTER: usize = 33;
    pub const LEFT_EYE_INNER: usize = 133;
    pub const LEFT_EYE_TOP: usize = 159;
    pub const LEFT_EYE_BOTTOM: usize = 145;
    pub const RIGHT_EYE_INNER: usize = 362;
    pub const RIGHT_EYE_OUTER: usize = 263;
    pub const RIGHT_EYE_TOP: usize = 386;
    pub const RIGHT_EYE_BOTTOM: usize = 374;
    pub const MOUTH_LEFT: usize = 61;
    pub const MOUTH_RIGHT: usize = 291;
    pub const UPPER_LIP_TOP: usize = 0;
    pub const UPPER_LIP_INNER: usize = 13;
    pub const LOWER_LIP_INNER: usize = 14;
    pub const LOWER_LIP_BOTTOM: usize = 17;
    pub const CHIN: usize = 152;
    pub const NOSE_TIP: usize = 1;
    pub const FOREHEAD: usize = 10;
    pub const CHEEK_LEFT: usize = 234;
    pub const CHEEK_RIGHT: usize = 454;
    /// The face's outline, clockwise from the forehead (MediaPipe's FACE_OVAL).
    pub const FACE_OVAL: [usize; 36] = [
        10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
        152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
    ];
}

/// The mesh of one face, in source pixels (pixel centres at integers); `z` is depth in
/// the same scale as `x`, smaller towards the camera, relative to the head's centre.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceMesh {
    pub points: Vec<[f32; 3]>,
    /// The model's face-presence score for its region, 0..1.
    pub presence: f32,
    /// The region the model saw.
    pub roi: Roi,
}

impl FaceMesh {
    pub fn xy(&self, index: usize) -> (f32, f32) {
        (self.points[index][0], self.points[index][1])
    }

    fn distance(&self, a: usize, b: usize) -> f32 {
        let (ax, ay) = self.xy(a);
        let (bx, by) = self.xy(b);
        (ax - bx).hypot(ay - by)
    }

    /// Eye openness: lid gap over eye width (about 0.25-0.35 open, under 0.1 closed).
    pub fn eye_openness(&self) -> (f32, f32) {
        use point::*;
        let left = self.distance(LEFT_EYE_TOP, LEFT_EYE_BOTTOM)
            / self.distance(LEFT_EYE_OUTER, LEFT_EYE_INNER).max(1e-3);
        let right = self.distance(RIGHT_EYE_TOP, RIGHT_EYE_BOTTOM)
            / self.distance(RIGHT_EYE_OUTER, RIGHT_EYE_INNER).max(1e-3);
        (left, right)
    }

    /// The iris centres (left and right in the image).
    pub fn iris_centres(&self) -> ((f32, f32), (f32, f32)) {
        (self.xy(LEFT_IRIS), self.xy(RIGHT_IRIS))
    }

    /// The axis-aligned bounding box of the face oval: (x, y, width, height).
    pub fn oval_bounds(&self) -> (f32, f32, f32, f32) {
        let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
        for &i in &point::FACE_OVAL {
            let (x, y) = self.xy(i);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
        (x0, y0, x1 - x0, y1 - y0)
    }
}

/// Which mesh points the refinement outputs replace (in the model file's metadata).
#[derive(Debug, serde::Deserialize)]
struct Refinement {
    lips: Vec<usize>,
    left_eye: Vec<usize>,
    right_eye: Vec<usize>,
}

/// The number of eye points whose depth an iris takes the mean of: the eye's contour
/// (lower 9 and upper 7), the first entries of each eye's refinement list.
const EYE_CONTOUR: usize = 16;

/// The landmark model, loaded once per analysis.
pub struct MeshModel {
    graph: Graph,
    refinement: Refinement,
}

impl MeshModel {
    pub fn load() -> Result<Self, GraphError> {
        let name = "face_landmark_with_attention";
        let graph = Graph::load(LANDMARKS, name)?;
        let refinement: Refinement = graph
            .metadata("refinement")
            .ok_or_else(|| "its metadata has no \"refinement\" entry".to_owned())
            .and_then(|text| serde_json::from_str(text).map_err(|e| e.to_string()))
            .map_err(|reason| GraphError::Corrupt {
                name: name.to_owned(),
                reason,
            })?;
        let valid = refinement.lips.len() == 80
            && refinement.left_eye.len() == 71
            && refinement.right_eye.len() == 71
            && [
                &refinement.lips,
                &refinement.left_eye,
                &refinement.right_eye,
            ]
            .iter()
            .all(|list| list.iter().all(|&i| i < MESH_POINTS));
        if !valid {
            return Err(GraphError::Corrupt {
                name: name.to_owned(),
                reason: "its refinement lists do not fit the mesh".to_owned(),
            });
        }
        Ok(Self { graph, refinement })
    }

    /// The region MediaPipe gives the landmark model for a detection.
    pub fn roi_for(detection: &Detection) -> Roi {
        let (right_eye, left_eye) = (detection.keypoints[0], detection.keypoints[1]);
        let rotation =
            normalize_angle(-(-(left_eye.1 - right_eye.1)).atan2(left_eye.0 - right_eye.0));
        let side = DETECTION_ROI_SCALE * detection.width.max(detection.height);
        Roi {
            cx: detection.x_min + detection.width / 2.0,
            cy: detection.y_min + detection.height / 2.0,
            width: side,
            height: side,
            rotation,
        }
    }

    /// The region MediaPipe's tracking takes from a mesh (face_landmark_landmarks_to_roi:
    /// level through the outer eye corners, the points' box in that frame, 1.5 times,
    /// square); used to refine a region given by hand.
    pub fn roi_from_mesh(mesh: &FaceMesh) -> Roi {
        let (lx, ly) = mesh.xy(point::LEFT_EYE_OUTER);
        let (rx, ry) = mesh.xy(point::RIGHT_EYE_OUTER);
        let rotation = normalize_angle(-(-(f64::from(ry - ly))).atan2(f64::from(rx - lx)));
        let (sin, cos) = rotation.sin_cos();
        let (mut u0, mut v0, mut u1, mut v1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for p in &mesh.points[..MESH_POINTS] {
            let (x, y) = (f64::from(p[0]), f64::from(p[1]));
            let (u, v) = (cos * x + sin * y, -sin * x + cos * y);
            (u0, v0, u1, v1) = (u0.min(u), v0.min(v), u1.max(u), v1.max(v));
        }
        let (mu, mv) = ((u0 + u1) / 2.0, (v0 + v1) / 2.0);
        let side = DETECTION_ROI_SCALE * (u1 - u0).max(v1 - v0);
        Roi {
            cx: cos * mu - sin * mv,
            cy: sin * mu + cos * mv,
            width: side,
            height: side,
            rotation,
        }
    }

    /// Runs the model on `roi`; `None` when it says the region holds no face.
    pub fn run(&self, portrait: &Portrait, roi: Roi) -> Result<Option<FaceMesh>, GraphError> {
        let mesh = self.run_anyway(portrait, roi)?;
        Ok((f64::from(mesh.presence) >= MIN_PRESENCE).then_some(mesh))
    }

    /// Runs the model on `roi` whatever it says of the region (a face the user pointed
    /// at, which may be a drawing or half hidden): the mesh carries its presence score.
    pub fn run_anyway(&self, portrait: &Portrait, roi: Roi) -> Result<FaceMesh, GraphError> {
        let input = roi.sample(portrait, (INPUT, INPUT), Border::Replicate, (0.0, 1.0));
        let outputs = self.graph.run(&input)?;
        let name = "face_landmark_with_attention";
        let get = |key: &str| -> Result<Vec<f32>, GraphError> {
            let t = outputs.get(key).ok_or_else(|| GraphError::Run {
                name: name.to_owned(),
                reason: format!("no output \"{key}\""),
            })?;
            Vec::<f32>::try_from(t.flatten(0, -1)).map_err(|e| GraphError::Run {
                name: name.to_owned(),
                reason: e.to_string(),
            })
        };
        let presence = sigmoid_of(
            outputs
                .get("conv_faceflag")
                .ok_or_else(|| GraphError::Run {
                    name: name.to_owned(),
                    reason: "no output \"conv_faceflag\"".to_owned(),
                })?,
        );
        let mesh = get("output_mesh_identity")?;
        let lips = get("output_lips")?;
        let left_eye = get("output_left_eye")?;
        let right_eye = get("output_right_eye")?;
        let left_iris = get("output_left_iris")?;
        let right_iris = get("output_right_iris")?;
        let sizes_fit = mesh.len() == MESH_POINTS * 3
            && lips.len() == 160
            && left_eye.len() == 142
            && right_eye.len() == 142
            && left_iris.len() == 10
            && right_iris.len() == 10;
        if !sizes_fit {
            return Err(GraphError::Run {
                name: name.to_owned(),
                reason: "outputs do not have the mesh's sizes".to_owned(),
            });
        }
        // In the model's 192x192 input pixels.
        let mut points: Vec<[f32; 3]> = mesh.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect();
        for (list, values) in [
            (&self.refinement.lips, &lips),
            (&self.refinement.left_eye, &left_eye),
            (&self.refinement.right_eye, &right_eye),
        ] {
            for (&index, xy) in list.iter().zip(values.chunks_exact(2)) {
                points[index][0] = xy[0];
                points[index][1] = xy[1];
            }
        }
        for (eye, iris) in [
            (&self.refinement.left_eye, &left_iris),
            (&self.refinement.right_eye, &right_iris),
        ] {
            let depth = eye[..EYE_CONTOUR]
                .iter()
                .map(|&i| points[i][2])
                .sum::<f32>()
                / EYE_CONTOUR as f32;
            for xy in iris.chunks_exact(2) {
                points.push([xy[0], xy[1], depth]);
            }
        }
        let size = (INPUT as f64, INPUT as f64);
        let scale = roi.width / INPUT as f64;
        let projected = points
            .iter()
            .map(|p| {
                let (x, y) = roi.to_source(f64::from(p[0]), f64::from(p[1]), size);
                [x as f32, y as f32, (f64::from(p[2]) * scale) as f32]
            })
            .collect();
        Ok(FaceMesh {
            points: projected,
            presence: presence as f32,
            roi,
        })
    }
}

fn normalize_angle(angle: f64) -> f64 {
    use std::f64::consts::{PI, TAU};
    angle - TAU * ((angle + PI) / TAU).floor()
}
