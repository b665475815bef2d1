//! Face detection with MediaPipe's short-range BlazeFace (models/mediapipe, embedded in
//! the library: nothing is downloaded), as MediaPipe's FaceDetectionShortRange graph runs
//! it: the whole portrait letterboxed into 128x128, SSD anchors, box and six keypoints
//! decoded per anchor, scores through a sigmoid, weighted non-maximum suppression. Where
//! that finds nothing, overlapping tiles are searched too (small faces in large frames).

use super::roi::{Border, Roi};
use crate::nn::graph::{Graph, GraphError};
use crate::portrait::Portrait;

static DETECTOR: &[u8] =
    include_bytes!("../../models/mediapipe/face_detection_short_range.safetensors");

const INPUT: usize = 128;
/// SSD anchor layout of the short-range model: four layers, the last three sharing a
/// stride (MediaPipe's face_detection_short_range.pbtxt).
const STRIDES: [usize; 4] = [8, 16, 16, 16];
/// Anchors per cell per layer: the aspect ratio 1.0 and the interpolated one.
const ANCHORS_PER_LAYER: usize = 2;
const KEYPOINTS: usize = 6;
/// Detection options of the same graph.
const MIN_SCORE: f64 = 0.5;
const SCORE_CLIP: f64 = 100.0;
const NMS_IOU: f64 = 0.3;

/// A detected face in source pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub x_min: f64,
    pub y_min: f64,
    pub width: f64,
    pub height: f64,
    /// Right eye, left eye, nose tip, mouth centre, right ear, left ear (the subject's;
    /// the "right eye" is on the image's left).
    pub keypoints: [(f64, f64); KEYPOINTS],
    pub score: f64,
}

impl Detection {
    pub fn area(&self) -> f64 {
        self.width * self.height
    }

    /// The box as [x0, y0, x1, y1].
    fn corners(&self) -> [f64; 4] {
        [
            self.x_min,
            self.y_min,
            self.x_min + self.width,
            self.y_min + self.height,
        ]
    }
}

/// One anchor centre, in [0, 1] of the letterboxed input.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    x: f64,
    y: f64,
}

fn anchors() -> Vec<Anchor> {
    let mut anchors = Vec::new();
    let mut layer = 0;
    while layer < STRIDES.len() {
        // Consecutive layers with one stride share their cells.
        let stride = STRIDES[layer];
        let mut same = 0;
        while layer + same < STRIDES.len() && STRIDES[layer + same] == stride {
            same += 1;
        }
        let cells = INPUT.div_ceil(stride);
        for y in 0..cells {
            for x in 0..cells {
                for _ in 0..same * ANCHORS_PER_LAYER {
                    anchors.push(Anchor {
                        x: (x as f64 + 0.5) / cells as f64,
                        y: (y as f64 + 0.5) / cells as f64,
                    });
                }
            }
        }
        layer += same;
    }
    anchors
}

/// Faces smaller than this share of the letterboxed side are below what the model sees
/// (its smallest anchors are about 19 input pixels); a portrait whose whole view finds
/// none is then searched in overlapping tiles, each shown to the model at full size.
const TILE_SCALES: [f64; 3] = [1.0, 0.5, 0.25];
/// The smallest tile side searched, in source pixels: tiles smaller than the model's
/// input would only enlarge.
const MIN_TILE: f64 = INPUT as f64 * 1.5;

/// Every face found, largest first.
pub fn detect_faces(portrait: &Portrait) -> Result<Vec<Detection>, GraphError> {
    let graph = Graph::load(DETECTOR, "face_detection_short_range")?;
    let (width, height) = (f64::from(portrait.width), f64::from(portrait.height));
    // MediaPipe's view: a square over the whole portrait, centred (the letterbox).
    let side = width.max(height);
    let whole = Roi {
        cx: width / 2.0,
        cy: height / 2.0,
        width: side,
        height: side,
        rotation: 0.0,
    };
    let mut faces = detect_in(&graph, portrait, &whole)?;
    if faces.is_empty() {
        // MediaPipe stops here; a small face in a large frame (a 1080p shot, a
        // full-length portrait) is still found by looking closer.
        for scale in TILE_SCALES {
            let tile = width.min(height) * scale;
            if tile < MIN_TILE || (scale == 1.0 && (width - height).abs() < 1.0) {
                continue;
            }
            let mut found = Vec::new();
            for cy in tile_centres(height, tile) {
                for cx in tile_centres(width, tile) {
                    let roi = Roi {
                        cx,
                        cy,
                        width: tile,
                        height: tile,
                        rotation: 0.0,
                    };
                    found.extend(detect_in(&graph, portrait, &roi)?);
                }
            }
            if !found.is_empty() {
                faces = suppress_duplicates(found)
                    .into_iter()
                    .map(|face| reframe(&graph, portrait, face))
                    .collect::<Result<_, _>>()?;
                break;
            }
        }
    }
    faces.sort_by(|a, b| {
        b.area()
            .total_cmp(&a.area())
            .then(b.score.total_cmp(&a.score))
    });
    Ok(faces)
}

/// How much of a view a face found in a tile is looked at again in: framed as in a
/// head-and-shoulders portrait, where the model is at its most precise.
const REFRAME_VIEW: f64 = 4.5;

/// The face looked at again in a view framed around it (a tile can cut it or show it
/// at the edge of what the model sees); the tile's finding if the new view has none.
fn reframe(graph: &Graph, portrait: &Portrait, face: Detection) -> Result<Detection, GraphError> {
    // On whole pixels, as a cut-out of the image would be.
    let side = (REFRAME_VIEW * face.width.max(face.height)).round();
    let left = (face.x_min + face.width / 2.0 - side / 2.0).round();
    let top = (face.y_min + face.height / 2.0 - side / 2.0).round();
    let view = Roi {
        cx: left + side / 2.0,
        cy: top + side / 2.0,
        width: side,
        height: side,
        rotation: 0.0,
    };
    Ok(detect_in(graph, portrait, &view)?
        .into_iter()
        .map(|d| (iou(&d.corners(), &face.corners()), d))
        .filter(|(overlap, _)| *overlap > NMS_IOU)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map_or(face, |(_, d)| d))
}

/// Centres of tiles of `tile` pixels overlapping by half, covering `length` pixels.
fn tile_centres(length: f64, tile: f64) -> Vec<f64> {
    if length <= tile {
        return vec![length / 2.0];
    }
    let count = ((length - tile) / (tile / 2.0)).ceil() as usize + 1;
    let step = (length - tile) / (count - 1) as f64;
    (0..count).map(|i| tile / 2.0 + step * i as f64).collect()
}

/// One face seen from two overlapping tiles is kept once (the higher score).
fn suppress_duplicates(mut found: Vec<Detection>) -> Vec<Detection> {
    found.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for face in found {
        if kept
            .iter()
            .all(|k| iou(&k.corners(), &face.corners()) <= NMS_IOU)
        {
            kept.push(face);
        }
    }
    kept
}

/// The faces the model finds in `view` of the portrait, in source pixels.
fn detect_in(graph: &Graph, portrait: &Portrait, view: &Roi) -> Result<Vec<Detection>, GraphError> {
    let input = view.sample(portrait, (INPUT, INPUT), Border::Zero, (-1.0, 1.0));
    let outputs = graph.run(&input)?;
    let run_error = |reason: &str| GraphError::Run {
        name: "face_detection_short_range".to_owned(),
        reason: reason.to_owned(),
    };
    let boxes = outputs
        .get("regressors")
        .ok_or_else(|| run_error("no output \"regressors\""))?;
    let scores = outputs
        .get("classificators")
        .ok_or_else(|| run_error("no output \"classificators\""))?;
    let boxes =
        Vec::<f32>::try_from(boxes.flatten(0, -1)).map_err(|e| run_error(&e.to_string()))?;
    let scores =
        Vec::<f32>::try_from(scores.flatten(0, -1)).map_err(|e| run_error(&e.to_string()))?;
    let anchors = anchors();
    let coords = 4 + 2 * KEYPOINTS;
    if boxes.len() != anchors.len() * coords || scores.len() != anchors.len() {
        return Err(run_error("outputs do not match the anchor layout"));
    }
    let size = (INPUT as f64, INPUT as f64);
    let to_source = |u: f64, v: f64| view.to_source(u * size.0, v * size.1, size);
    let scale = INPUT as f64;
    let mut candidates = Vec::new();
    for (i, anchor) in anchors.iter().enumerate() {
        let logit = f64::from(scores[i]).clamp(-SCORE_CLIP, SCORE_CLIP);
        let score = 1.0 / (1.0 + (-logit).exp());
        if score < MIN_SCORE {
            continue;
        }
        let raw = &boxes[i * coords..(i + 1) * coords];
        let value = |k: usize| f64::from(raw[k]) / scale;
        // Anchors have a fixed size of one input: offsets are in input fractions.
        let (xc, yc) = (value(0) + anchor.x, value(1) + anchor.y);
        let (w, h) = (value(2), value(3));
        let mut keypoints = [(0.0, 0.0); KEYPOINTS];
        for (k, point) in keypoints.iter_mut().enumerate() {
            *point = (value(4 + 2 * k) + anchor.x, value(5 + 2 * k) + anchor.y);
        }
        candidates.push(Candidate {
            box_: [xc - w / 2.0, yc - h / 2.0, xc + w / 2.0, yc + h / 2.0],
            keypoints,
            score,
        });
    }
    Ok(weighted_nms(candidates)
        .into_iter()
        .map(|c| {
            let (x0, y0) = to_source(c.box_[0], c.box_[1]);
            let (x1, y1) = to_source(c.box_[2], c.box_[3]);
            Detection {
                x_min: x0,
                y_min: y0,
                width: x1 - x0,
                height: y1 - y0,
                keypoints: c.keypoints.map(|(u, v)| to_source(u, v)),
                score: c.score,
            }
        })
        .collect())
}

/// A decoded anchor, in input fractions: box as [x0, y0, x1, y1].
#[derive(Debug, Clone, Copy)]
struct Candidate {
    box_: [f64; 4],
    keypoints: [(f64, f64); KEYPOINTS],
    score: f64,
}

fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let intersection = w * h;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection;
    if union > 0.0 {
        intersection / union
    } else {
        0.0
    }
}

/// MediaPipe's weighted NMS: the best remaining anchor takes every anchor overlapping it
/// by more than `NMS_IOU` and becomes their score-weighted mean, keeping its own score.
fn weighted_nms(mut remaining: Vec<Candidate>) -> Vec<Candidate> {
    remaining.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept = Vec::new();
    while let Some(best) = remaining.first().copied() {
        let (cluster, rest): (Vec<Candidate>, Vec<Candidate>) = remaining
            .into_iter()
            .partition(|c| iou(&best.box_, &c.box_) > NMS_IOU);
        remaining = rest;
        let total: f64 = cluster.iter().map(|c| c.score).sum();
        let mut merged = Candidate {
            box_: [0.0; 4],
            keypoints: [(0.0, 0.0); KEYPOINTS],
            score: best.score,
        };
        for c in &cluster {
            let weight = c.score / total;
            for k in 0..4 {
                merged.box_[k] += c.box_[k] * weight;
            }
            for (m, p) in merged.keypoints.iter_mut().zip(c.keypoints) {
                m.0 += p.0 * weight;
                m.1 += p.1 * weight;
            }
        }
        kept.push(merged);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_anchor_layout_has_896_anchors_on_two_grids() {
        let anchors = anchors();
        assert_eq!(anchors.len(), 16 * 16 * 2 + 8 * 8 * 6);
        assert!((anchors[0].x - 1.0 / 32.0).abs() < 1e-12);
        assert!((anchors[512].x - 1.0 / 16.0).abs() < 1e-12);
    }

    #[test]
    fn weighted_nms_merges_overlaps_and_keeps_apart_ones() {
        let c = |x: f64, score: f64| Candidate {
            box_: [x, 0.0, x + 1.0, 1.0],
            keypoints: [(x, 0.0); KEYPOINTS],
            score,
        };
        let kept = weighted_nms(vec![c(0.0, 0.6), c(0.2, 0.9), c(5.0, 0.7)]);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].score, 0.9);
        let expected = (0.0 * 0.6 + 0.2 * 0.9) / 1.5;
        assert!((kept[0].box_[0] - expected).abs() < 1e-12);
        assert_eq!(kept[1].box_[0], 5.0);
    }

    #[test]
    fn tiles_cover_the_length_with_half_overlap() {
        assert_eq!(tile_centres(100.0, 200.0), vec![50.0]);
        let centres = tile_centres(1920.0, 540.0);
        assert_eq!(centres.first(), Some(&270.0));
        assert_eq!(centres.last(), Some(&1650.0));
        assert!(centres.windows(2).all(|w| w[1] - w[0] <= 270.0 + 1e-9));
    }

    #[test]
    fn blank_and_tiny_images_have_no_faces() {
        let blank = image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            64,
            64,
            image::Rgb([128, 128, 128]),
        ));
        let portrait = Portrait::from_image("blank".into(), &blank);
        assert!(detect_faces(&portrait).unwrap().is_empty());
        let tiny = image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            5,
            3,
            image::Rgb([90, 60, 40]),
        ));
        assert!(
            detect_faces(&Portrait::from_image("tiny".into(), &tiny))
                .unwrap()
                .is_empty()
        );
    }
}
