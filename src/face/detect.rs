//! Face detection with the SeetaFace frontal cascade (rustface), shipped in
//! `models/seetaface/` and embedded in the library: nothing is downloaded.

use super::raster::Gray;

/// The detector model, embedded at build time (BSD-2-Clause, see models/seetaface).
static SEETAFACE_MODEL: &[u8] = include_bytes!("../../models/seetaface/seeta_fd_frontal_v1.0.bin");

/// Longest image side the detector sees; larger images are shrunk first (a 24 MP photo
/// would take seconds), which still finds faces down to ~2% of the image's long side.
const DETECTION_SIDE: u32 = 1280;
/// The cascade's smallest window.
const MIN_FACE: u32 = 20;
/// In-plane angles tried when the upright image has no face: the cascade itself
/// tolerates about +-10 degrees, so these cover tilts up to about 25 degrees.
const RETRY_ANGLES_DEG: [f32; 4] = [12.0, -12.0, 22.0, -22.0];

/// A detected face: box in source pixels (axis-aligned in the copy it was found in,
/// which was rotated by `angle` radians about the image centre).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Box centre in source pixels.
    pub cx: f32,
    pub cy: f32,
    /// Box side in source pixels (the cascade's boxes are square).
    pub size: f32,
    /// Rotation (radians) of the face's upright frame relative to the image: a point
    /// (u, v) in face coordinates sits at centre + R(angle) (u, v).
    pub angle: f32,
    pub score: f64,
}

/// Every face found, largest first. Tries rotated copies only when the upright image
/// has none.
pub fn detect_faces(gray: &Gray) -> Vec<Detection> {
    let scale = (DETECTION_SIDE as f32 / gray.width.max(gray.height) as f32).min(1.0);
    let small = if scale < 1.0 {
        gray.resized(
            ((gray.width as f32 * scale).round() as usize).max(1),
            ((gray.height as f32 * scale).round() as usize).max(1),
        )
    } else {
        gray.clone()
    };
    let mut found = detect_at_angle(&small, 0.0);
    if found.is_empty() {
        for degrees in RETRY_ANGLES_DEG {
            found = detect_at_angle(&small, degrees.to_radians());
            if !found.is_empty() {
                break;
            }
        }
    }
    for face in &mut found {
        face.cx /= scale;
        face.cy /= scale;
        face.size /= scale;
    }
    found.sort_by(|a, b| b.size.total_cmp(&a.size).then(b.score.total_cmp(&a.score)));
    found
}

/// Detects in `gray` rotated by `angle` about its centre; boxes mapped back.
fn detect_at_angle(gray: &Gray, angle: f32) -> Vec<Detection> {
    if gray.width < MIN_FACE as usize || gray.height < MIN_FACE as usize {
        return Vec::new();
    }
    let (cx, cy) = (gray.width as f32 / 2.0, gray.height as f32 / 2.0);
    let (sin, cos) = angle.sin_cos();
    // The rotated copy: pixel q of the copy shows source point centre + R(angle)(q - centre),
    // so an upright face in the copy is a face tilted by `angle` in the source.
    let rotated = if angle == 0.0 {
        gray.clone()
    } else {
        Gray::from_fn(gray.width, gray.height, |x, y| {
            let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
            gray.sample(cx + cos * dx - sin * dy, cy + sin * dx + cos * dy)
        })
    };
    let bytes: Vec<u8> = rotated
        .pixels
        .iter()
        .map(|&v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect();
    let model = match rustface::read_model(SEETAFACE_MODEL) {
        Ok(model) => model,
        // The embedded bytes are checked by a test; this cannot fail at run time.
        Err(_) => return Vec::new(),
    };
    let mut detector = rustface::create_detector_with_model(model);
    detector.set_min_face_size(MIN_FACE);
    detector.set_score_thresh(2.0);
    detector.set_pyramid_scale_factor(0.8);
    detector.set_slide_window_step(4, 4);
    let image = rustface::ImageData::new(&bytes, gray.width as u32, gray.height as u32);
    detector
        .detect(&image)
        .into_iter()
        .map(|face| {
            let bbox = face.bbox();
            let size = (bbox.width() + bbox.height()) as f32 / 2.0;
            let (bx, by) = (
                bbox.x() as f32 + bbox.width() as f32 / 2.0 - cx,
                bbox.y() as f32 + bbox.height() as f32 / 2.0 - cy,
            );
            Detection {
                cx: cx + cos * bx - sin * by,
                cy: cy + sin * bx + cos * by,
                size,
                angle,
                score: face.score(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_model_parses() {
        assert!(rustface::read_model(SEETAFACE_MODEL).is_ok());
    }

    #[test]
    fn blank_and_tiny_images_have_no_faces() {
        assert!(detect_faces(&Gray::from_fn(64, 64, |_, _| 0.5)).is_empty());
        assert!(detect_faces(&Gray::from_fn(5, 3, |_, _| 0.5)).is_empty());
    }
}
