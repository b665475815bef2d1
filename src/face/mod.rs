//! Face analysis of the source portrait, once per portrait, off the streaming thread:
//! where the face is, its 478-point mesh (with depth and irises), and the few features
//! the renderers place things by, in source pixels.
//!
//! Both networks are MediaPipe's (Apache-2.0, converted into models/mediapipe by
//! tools/mediapipe/convert.py and embedded in the library), run with libtorch on the
//! CPU (`nn::graph`): BlazeFace finds the face (`detect`), the face landmark model with
//! attention meshes it (`mesh`). A user can give the face box by hand (`face-box`
//! property), which skips detection.

pub mod detect;
pub mod mesh;
pub mod reading;
pub mod roi;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::portrait::Portrait;

pub use self::mesh::FaceMesh;
use self::mesh::{MeshModel, point};
use self::roi::Roi;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

/// An axis-aligned box in source pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceBox {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

impl fmt::Display for FaceBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.0},{:.0},{:.0},{:.0}",
            self.x, self.y, self.width, self.height
        )
    }
}

impl FromStr for FaceBox {
    type Err = FaceError;

    /// `"x,y,w,h"` in source image pixels (spaces allowed).
    fn from_str(text: &str) -> Result<Self, FaceError> {
        let bad = || FaceError::BadBox(text.to_owned());
        let values: Vec<f32> = text
            .split(',')
            .map(|part| part.trim().parse::<f32>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let [x, y, width, height] = values[..] else {
            return Err(bad());
        };
        let sane =
            [x, y, width, height].iter().all(|v| v.is_finite()) && width >= 8.0 && height >= 8.0;
        if !sane {
            return Err(bad());
        }
        Ok(Self {
            x,
            y,
            width,
            height,
        })
    }
}

/// Where the animated features of the face are, in source image pixels, taken from the
/// mesh. "Left" and "right" are as seen in the image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceLayout {
    /// The face oval's bounding box.
    pub face_box: FaceBox,
    /// The iris centres.
    pub left_eye: Point,
    pub right_eye: Point,
    /// Corner-to-corner width of one eye.
    pub eye_width: f32,
    pub mouth_left: Point,
    pub mouth_right: Point,
    /// The middle of the lip line (centre of the lips' opening).
    pub mouth_centre: Point,
    /// Height of the lips' opening in the portrait (teeth or cavity showing); 0 closed.
    pub mouth_gap: f32,
    /// Height of both lips together, top of the upper to bottom of the lower.
    pub lip_height: f32,
    pub chin: Point,
    /// The top of the forehead (where the mesh ends, below the hairline).
    pub forehead: Point,
    /// The face oval's widest points, at the cheeks (image left and right).
    pub cheek_left: Point,
    pub cheek_right: Point,
    /// Tilt of the eye line, radians (positive: the right eye is lower in the image).
    pub roll: f32,
}

impl FaceLayout {
    pub fn inter_ocular(&self) -> f32 {
        (self.right_eye.x - self.left_eye.x).hypot(self.right_eye.y - self.left_eye.y)
    }

    pub fn mouth_width(&self) -> f32 {
        (self.mouth_right.x - self.mouth_left.x).hypot(self.mouth_right.y - self.mouth_left.y)
    }

    /// Applies `f` to every point (image transforms in tests and rendering).
    pub fn map_points(&self, f: impl Fn(Point) -> Point) -> [Point; 6] {
        [
            f(self.left_eye),
            f(self.right_eye),
            f(self.mouth_left),
            f(self.mouth_right),
            f(self.mouth_centre),
            f(self.chin),
        ]
    }
}

/// How the face was found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaceSource {
    /// Detected; `faces` were found in all and the largest is used.
    Detected { faces: usize, score: f64 },
    /// Given by the `face-box` property.
    Given,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FaceAnalysis {
    pub layout: FaceLayout,
    pub mesh: FaceMesh,
    /// The detector's box around the face (none when the box was given).
    pub detection: Option<FaceBox>,
    pub source: FaceSource,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum FaceError {
    #[error(
        "no face found in portrait \"{}\" ({width}x{height}): use a photo where the face is \
         seen from the front, at least 1/12 of the image's longer side across and tilted \
         less than 45 degrees, or give the face's position with \
         face-box=\"x,y,width,height\" (in image pixels)",
        path.display()
    )]
    NoFace {
        path: PathBuf,
        width: u32,
        height: u32,
    },
    #[error(
        "face-box \"{0}\" is not a box: write it as \"x,y,width,height\" in image pixels, \
         e.g. face-box=\"180,60,100,110\" (width and height at least 8)"
    )]
    BadBox(String),
    #[error("face analysis failed: {0}")]
    Model(String),
    #[error(
        "face-box {face_box} lies outside portrait \"{}\" ({width}x{height})",
        path.display()
    )]
    BoxOutside {
        face_box: FaceBox,
        path: PathBuf,
        width: u32,
        height: u32,
    },
}

impl From<FaceError> for crate::core::Error {
    fn from(err: FaceError) -> Self {
        Self::Portrait {
            problem: crate::core::PortraitProblem::Face,
            source: Box::new(err),
        }
    }
}

/// Finds the face (the largest, if there are several) or uses `given`, and meshes it.
pub fn analyze(portrait: &Portrait, given: Option<FaceBox>) -> Result<FaceAnalysis, FaceError> {
    let model = MeshModel::load().map_err(|e| FaceError::Model(e.to_string()))?;
    if let Some(face_box) = given {
        let inside = face_box.x < portrait.width as f32
            && face_box.y < portrait.height as f32
            && face_box.x + face_box.width > 0.0
            && face_box.y + face_box.height > 0.0;
        if !inside {
            return Err(FaceError::BoxOutside {
                face_box,
                path: portrait.path.clone(),
                width: portrait.width,
                height: portrait.height,
            });
        }
        // A hand-drawn box is about the detector's (brows to chin); the mesh's own region
        // is then taken from the first mesh, as MediaPipe's tracking does, which makes
        // the result hardly depend on how the box was drawn.
        let side = 1.5 * f64::from(face_box.width.max(face_box.height));
        let first = Roi {
            cx: f64::from(face_box.x + face_box.width / 2.0),
            cy: f64::from(face_box.y + face_box.height / 2.0),
            width: side,
            height: side,
            rotation: 0.0,
        };
        // The user says there is a face: the mesh is used even where the model doubts it
        // (its presence score says so), and the second region only if it does better.
        let mesh = model
            .run_anyway(portrait, first)
            .map_err(|e| FaceError::Model(e.to_string()))?;
        let second = model
            .run_anyway(portrait, MeshModel::roi_from_mesh(&mesh))
            .map_err(|e| FaceError::Model(e.to_string()))?;
        let mesh = if second.presence >= mesh.presence.min(0.5) {
            second
        } else {
            mesh
        };
        return Ok(FaceAnalysis {
            layout: layout_from_mesh(&mesh),
            mesh,
            detection: None,
            source: FaceSource::Given,
        });
    }
    let no_face = || FaceError::NoFace {
        path: portrait.path.clone(),
        width: portrait.width,
        height: portrait.height,
    };
    let faces = detect::detect_faces(portrait).map_err(|e| FaceError::Model(e.to_string()))?;
    // Largest first; a detection the mesh model rejects (a face-like pattern) is skipped.
    for face in &faces {
        let mesh = model
            .run(portrait, MeshModel::roi_for(face))
            .map_err(|e| FaceError::Model(e.to_string()))?;
        if let Some(mesh) = mesh {
            return Ok(FaceAnalysis {
                layout: layout_from_mesh(&mesh),
                mesh,
                detection: Some(FaceBox {
                    x: face.x_min as f32,
                    y: face.y_min as f32,
                    width: face.width as f32,
                    height: face.height as f32,
                }),
                source: FaceSource::Detected {
                    faces: faces.len(),
                    score: face.score,
                },
            });
        }
    }
    Err(no_face())
}

/// The renderers' features from the mesh.
pub fn layout_from_mesh(mesh: &FaceMesh) -> FaceLayout {
    let at = |i: usize| {
        let (x, y) = mesh.xy(i);
        Point { x, y }
    };
    let (left_iris, right_iris) = mesh.iris_centres();
    let left_eye = Point {
        x: left_iris.0,
        y: left_iris.1,
    };
    let right_eye = Point {
        x: right_iris.0,
        y: right_iris.1,
    };
    let distance = |a: Point, b: Point| (a.x - b.x).hypot(a.y - b.y);
    let eye_width = (distance(at(point::LEFT_EYE_OUTER), at(point::LEFT_EYE_INNER))
        + distance(at(point::RIGHT_EYE_OUTER), at(point::RIGHT_EYE_INNER)))
        / 2.0;
    let (upper, lower) = (at(point::UPPER_LIP_INNER), at(point::LOWER_LIP_INNER));
    let (x, y, width, height) = mesh.oval_bounds();
    FaceLayout {
        face_box: FaceBox {
            x,
            y,
            width,
            height,
        },
        left_eye,
        right_eye,
        eye_width,
        mouth_left: at(point::MOUTH_LEFT),
        mouth_right: at(point::MOUTH_RIGHT),
        mouth_centre: Point {
            x: (upper.x + lower.x) / 2.0,
            y: (upper.y + lower.y) / 2.0,
        },
        mouth_gap: distance(upper, lower),
        lip_height: distance(at(point::UPPER_LIP_TOP), at(point::LOWER_LIP_BOTTOM)),
        chin: at(point::CHIN),
        forehead: at(point::FOREHEAD),
        cheek_left: at(point::CHEEK_LEFT),
        cheek_right: at(point::CHEEK_RIGHT),
        roll: (right_eye.y - left_eye.y).atan2(right_eye.x - left_eye.x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn face_box_parses_and_rejects_with_the_value_named() {
        assert_eq!(
            "10, 20,30,40".parse::<FaceBox>().unwrap(),
            FaceBox {
                x: 10.0,
                y: 20.0,
                width: 30.0,
                height: 40.0
            }
        );
        for bad in [
            "",
            "1,2,3",
            "1,2,3,4,5",
            "a,b,c,d",
            "0,0,2,2",
            "0,0,-5,40",
            "0,0,NaN,9",
        ] {
            let err = bad.parse::<FaceBox>().unwrap_err();
            assert_eq!(err, FaceError::BadBox(bad.to_owned()));
            assert!(err.to_string().contains(&format!("\"{bad}\"")));
        }
    }
}
