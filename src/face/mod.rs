//! Face analysis of the source portrait, once per portrait, off the streaming thread:
//! where the face is, and where its eyes, mouth and chin are, in source pixels.
//!
//! Detection uses the SeetaFace frontal cascade (`detect`); the features are then found
//! by classic means inside a face-aligned crop (`landmarks`). A user can give the face
//! box by hand (`face-box` property), which skips detection.

pub mod detect;
mod landmarks;
pub mod raster;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::portrait::Portrait;

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

/// Where the animated features of the face are, in source image pixels. "Left" and
/// "right" are as seen in the image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceLayout {
    /// The face's square box, aligned with the face (see `roll`), eyes-normalised.
    pub face_box: FaceBox,
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

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceAnalysis {
    pub layout: FaceLayout,
    pub source: FaceSource,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum FaceError {
    #[error(
        "no face found in portrait \"{}\" ({width}x{height}): use a frontal photo where the face \
         is at least 40 pixels across and tilted less than 15 degrees, or give the face's \
         position with face-box=\"x,y,width,height\" (in image pixels)",
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

/// Finds the face (the largest, if there are several) or uses `given`, and locates its
/// features.
pub fn analyze(portrait: &Portrait, given: Option<FaceBox>) -> Result<FaceAnalysis, FaceError> {
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
        // A hand-drawn box is usually taller than the detector's square (hairline to
        // chin): take a square of its width, centred a little below its centre.
        let size = face_box.width.min(face_box.height * 1.2);
        let centre = Point {
            x: face_box.x + face_box.width / 2.0,
            y: face_box.y + face_box.height / 2.0,
        };
        return Ok(FaceAnalysis {
            layout: landmarks::locate(portrait, centre, size, 0.0),
            source: FaceSource::Given,
        });
    }
    let gray = raster::Gray::luma(portrait);
    let faces = detect::detect_faces(&gray);
    let Some(largest) = faces.first() else {
        return Err(FaceError::NoFace {
            path: portrait.path.clone(),
            width: portrait.width,
            height: portrait.height,
        });
    };
    let layout = landmarks::locate(
        portrait,
        Point {
            x: largest.cx,
            y: largest.cy,
        },
        largest.size,
        largest.angle,
    );
    Ok(FaceAnalysis {
        layout,
        source: FaceSource::Detected {
            faces: faces.len(),
            score: largest.score,
        },
    })
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
