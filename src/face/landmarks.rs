//! Locating eyes, mouth (corners, lip line, lip opening) and chin inside a detected face,
//! by classic means: a face-aligned crop, anthropometric priors, and local refinement on
//! darkness (pupils, the lip slit), lip colour and brightness (teeth).

use super::raster::{Gray, Rgb, sample_rgb};
use super::{FaceLayout, Point};
use crate::portrait::Portrait;

/// Canonical crop: `CROP` pixels wide, covering `CROP_SPAN` face-box sizes.
const CROP: usize = 128;
const CROP_SPAN: f32 = 1.6;
/// Crop pixels per face-box size.
const PX_PER_BOX: f32 = CROP as f32 / CROP_SPAN;

/// Where features sit in a SeetaFace box, in box sizes from its centre (calibrated on the
/// bundled portrait, consistent with the usual frontal-face proportions).
const PRIOR_EYE_X: f32 = 0.21;
const PRIOR_EYE_Y: f32 = -0.14;
const PRIOR_MOUTH_Y: f32 = 0.31;
/// Inter-ocular distance in box sizes, to derive a scale from the eyes.
const PRIOR_IOD: f32 = 0.43;

/// Proportions relative to the inter-ocular distance (IOD).
const EYE_WIDTH_PER_IOD: f32 = 0.48;
const CHIN_BELOW_MOUTH_PER_IOD: f32 = 0.75;

/// A face-aligned view of the portrait: crop pixel (u, v) shows source point
/// `centre + R(angle) ((u - CROP/2) / px_per_unit, (v - CROP/2) / px_per_unit)` where a
/// unit is `size` source pixels.
struct FaceCrop {
    centre: Point,
    angle: f32,
    /// Source pixels per crop pixel.
    step: f32,
    gray: Gray,
    rgb: Rgb,
}

impl FaceCrop {
    fn new(portrait: &Portrait, centre: Point, angle: f32, box_size: f32) -> Self {
        let step = box_size / PX_PER_BOX;
        let (sin, cos) = angle.sin_cos();
        let half = CROP as f32 / 2.0;
        let mut pixels = Vec::with_capacity(CROP * CROP);
        for v in 0..CROP {
            for u in 0..CROP {
                let (du, dv) = (
                    (u as f32 + 0.5 - half) * step,
                    (v as f32 + 0.5 - half) * step,
                );
                pixels.push(sample_rgb(
                    portrait,
                    centre.x + cos * du - sin * dv,
                    centre.y + sin * du + cos * dv,
                ));
            }
        }
        let rgb = Rgb {
            width: CROP,
            height: CROP,
            pixels,
        };
        let gray = Gray::from_fn(CROP, CROP, |x, y| {
            let [r, g, b] = rgb.at(x, y);
            0.299 * r + 0.587 * g + 0.114 * b
        });
        Self {
            centre,
            angle,
            step,
            gray,
            rgb,
        }
    }

    /// Crop pixel coordinates (continuous) to source coordinates.
    fn to_source(&self, u: f32, v: f32) -> Point {
        let half = CROP as f32 / 2.0;
        let (du, dv) = ((u - half) * self.step, (v - half) * self.step);
        let (sin, cos) = self.angle.sin_cos();
        Point {
            x: self.centre.x + cos * du - sin * dv,
            y: self.centre.y + sin * du + cos * dv,
        }
    }

    /// Box-relative prior (in box sizes from the centre) to crop pixels.
    fn prior(u: f32, v: f32) -> (f32, f32) {
        let half = CROP as f32 / 2.0;
        (half + u * PX_PER_BOX, half + v * PX_PER_BOX)
    }
}

/// The darkest blob near a prior position (pupil and lashes), with sub-pixel accuracy.
fn find_eye(
    gray: &Gray,
    prior: (f32, f32),
    reach_x: f32,
    reach_up: f32,
    reach_down: f32,
) -> (f32, f32) {
    let blurred = gray.blurred(2);
    let mut best = (f32::INFINITY, prior.0, prior.1);
    let (x0, x1) = (
        (prior.0 - reach_x).max(2.0) as usize,
        (prior.0 + reach_x).min(CROP as f32 - 3.0) as usize,
    );
    let (y0, y1) = (
        (prior.1 - reach_up).max(2.0) as usize,
        (prior.1 + reach_down).min(CROP as f32 - 3.0) as usize,
    );
    for y in y0..=y1 {
        for x in x0..=x1 {
            let dx = (x as f32 + 0.5 - prior.0) / reach_x;
            let dy = (y as f32 + 0.5 - prior.1) / reach_down.max(reach_up);
            // A gentle pull towards the prior keeps eyebrows and hair out.
            let score = blurred.at(x, y) + 0.12 * (dx * dx + dy * dy);
            if score < best.0 {
                best = (score, x as f32 + 0.5, y as f32 + 0.5);
            }
        }
    }
    // Darkness-weighted centroid around the minimum.
    let fine = gray.blurred(1);
    let (cx, cy) = (best.1, best.2);
    let radius = 4i32;
    let local: Vec<f32> = (-radius..=radius)
        .flat_map(|dy| (-radius..=radius).map(move |dx| (dx, dy)))
        .filter_map(|(dx, dy)| {
            let (x, y) = (cx as i32 + dx, cy as i32 + dy);
            (x >= 0 && y >= 0 && (x as usize) < CROP && (y as usize) < CROP)
                .then(|| fine.at(x as usize, y as usize))
        })
        .collect();
    let mut sorted = local.clone();
    sorted.sort_by(f32::total_cmp);
    let threshold = sorted[sorted.len() / 4];
    let (mut sx, mut sy, mut sw) = (0.0, 0.0, 0.0);
    for dy in -radius..=radius {
        for dx in -radius..=radius {
            let (x, y) = (cx as i32 + dx, cy as i32 + dy);
            if x < 0 || y < 0 || x as usize >= CROP || y as usize >= CROP {
                continue;
            }
            let w = (threshold - fine.at(x as usize, y as usize)).max(0.0);
            sx += w * (x as f32 + 0.5);
            sy += w * (y as f32 + 0.5);
            sw += w;
        }
    }
    if sw > 0.0 {
        (sx / sw, sy / sw)
    } else {
        (cx, cy)
    }
}

/// Lip redness, or (for grayscale portraits) darkness relative to the skin.
fn lipness(crop: &FaceCrop, x: usize, y: usize, colour: bool) -> f32 {
    let [r, g, b] = crop.rgb.at(x, y);
    if colour {
        (r - g) / (r + g + b + 0.05)
    } else {
        1.0 - crop.gray.at(x, y)
    }
}

/// Bright and colourless: teeth (or the whites of a wide open mouth).
fn teethness(crop: &FaceCrop, x: usize, y: usize) -> f32 {
    let [r, g, b] = crop.rgb.at(x, y);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let saturation = if max > 0.0 { (max - min) / max } else { 0.0 };
    max * (1.0 - saturation)
}

/// Mouth geometry in crop pixels.
struct MouthFit {
    centre: (f32, f32),
    left: (f32, f32),
    right: (f32, f32),
    /// Height of the lips' opening in the source (teeth or dark cavity), 0 if closed.
    gap: f32,
    /// Height of the lips (top of upper to bottom of lower) around the centre.
    lips: f32,
}

/// Row profiles over the mouth's central columns: (row, whiteness, darkness).
/// Whiteness is brightness minus three times lip redness: teeth are as bright as a
/// skin highlight but far less red than any skin or lip.
fn mouth_rows(
    crop: &FaceCrop,
    centre_x: f32,
    half_width: i32,
    y0: usize,
    y1: usize,
    colour: bool,
) -> Vec<(usize, f32, f32)> {
    let x0 = (centre_x as i32 - half_width).max(0) as usize;
    let x1 = (centre_x as i32 + half_width).min(CROP as i32 - 1) as usize;
    (y0..=y1)
        .map(|y| {
            let n = (x1 - x0 + 1) as f32;
            let mut white = 0.0;
            let mut dark = 0.0;
            for x in x0..=x1 {
                let red = if colour {
                    lipness(crop, x, y, true).max(0.0)
                } else {
                    0.0
                };
                white += teethness(crop, x, y) - 3.0 * red;
                dark += 1.0 - crop.gray.at(x, y);
            }
            (y, white / n, dark / n)
        })
        .collect()
}

fn find_mouth(crop: &FaceCrop, centre_x: f32, prior_y: f32, iod: f32, colour: bool) -> MouthFit {
    let reach = 0.3 * iod;
    let (y0, y1) = (
        (prior_y - reach).max(1.0) as usize,
        (prior_y + reach).min(CROP as f32 - 2.0) as usize,
    );
    let rows = mouth_rows(crop, centre_x, (0.14 * iod).max(2.0) as i32, y0, y1, colour);
    let near = |r: &(usize, f32, f32)| {
        let d = (r.0 as f32 + 0.5 - prior_y) / (0.2 * iod);
        (-(d * d)).exp()
    };
    // Skin reference: the median whiteness of the window.
    let mut whites: Vec<f32> = rows.iter().map(|r| r.1).collect();
    whites.sort_by(f32::total_cmp);
    let skin_white = whites[whites.len() / 2];
    let peak = rows
        .iter()
        .max_by(|a, b| (a.1 * near(a)).total_cmp(&(b.1 * near(b))))
        .expect("rows");
    let teeth_visible = peak.1 - skin_white > 0.15;
    let (line_y, gap) = if teeth_visible {
        // The run of white rows around the peak, down to where it is barely whiter than
        // skin: the renderer must cover all of the teeth when it closes the lips.
        let threshold = skin_white + 0.3 * (peak.1 - skin_white);
        let i = rows
            .iter()
            .position(|r| r.0 == peak.0)
            .expect("peak is a row");
        let mut top = i;
        while top > 0 && rows[top - 1].1 >= threshold {
            top -= 1;
        }
        let mut bottom = i;
        while bottom + 1 < rows.len() && rows[bottom + 1].1 >= threshold {
            bottom += 1;
        }
        let (a, b) = (rows[top].0 as f32, rows[bottom].0 as f32 + 1.0);
        ((a + b) / 2.0, b - a)
    } else {
        // Closed lips (or a dark open mouth): the darkest row near the prior.
        let darkest = rows
            .iter()
            .max_by(|a, b| (a.2 * (0.5 + near(a))).total_cmp(&(b.2 * (0.5 + near(b)))))
            .expect("rows");
        let i = rows.iter().position(|r| r.0 == darkest.0).expect("a row");
        // A dark run much darker than skin is an open mouth showing its cavity.
        let mut darks: Vec<f32> = rows.iter().map(|r| r.2).collect();
        darks.sort_by(f32::total_cmp);
        let skin_dark = darks[darks.len() / 2];
        let threshold = skin_dark + 0.6 * (darkest.2 - skin_dark);
        let (mut top, mut bottom) = (i, i);
        while top > 0 && rows[top - 1].2 >= threshold {
            top -= 1;
        }
        while bottom + 1 < rows.len() && rows[bottom + 1].2 >= threshold {
            bottom += 1;
        }
        let height = (bottom - top + 1) as f32;
        let gap = if darkest.2 - skin_dark > 0.35 && height > 0.1 * iod {
            height
        } else {
            0.0
        };
        (darkest.0 as f32 + 0.5, gap)
    };

    // Corners: per column outwards, the best mouth contrast in a band around the lip
    // line (smiles lift the corners); the corner is where that contrast falls well below
    // the inner mouth's. Relative, so it holds for grayscale, blurred or small faces.
    let offset = ((0.12 * iod) as usize).max(1);
    let contrast_at = |x: usize, y: usize| {
        let seam = 1.0 - crop.gray.at(x, y);
        let above = 1.0 - crop.gray.at(x, y.saturating_sub(offset));
        let below = 1.0 - crop.gray.at(x, (y + offset).min(CROP - 1));
        let white = teethness(crop, x, y)
            - if colour {
                3.0 * lipness(crop, x, y, true).max(0.0)
            } else {
                0.0
            };
        (seam - (above + below) / 2.0).max(white - skin_white)
    };
    let band = (
        (line_y - 0.18 * iod).max(1.0) as usize,
        (line_y + 0.06 * iod).min((CROP - 2) as f32) as usize,
    );
    let profile = |direction: f32| -> Vec<(f32, f32)> {
        let steps = (0.68 * iod).ceil() as usize;
        (0..steps)
            .map(|k| {
                let x = (centre_x + direction * k as f32).clamp(1.0, (CROP - 2) as f32) as usize;
                (band.0..=band.1)
                    .map(|y| (contrast_at(x, y), y as f32 + 0.5))
                    .fold((f32::MIN, line_y), |a, b| if b.0 > a.0 { b } else { a })
            })
            .collect()
    };
    let corner = |direction: f32| -> Option<(f32, f32)> {
        let raw = profile(direction);
        let smooth: Vec<f32> = (0..raw.len())
            .map(|i| {
                let (a, b) = (i.saturating_sub(1), (i + 1).min(raw.len() - 1));
                raw[a..=b].iter().map(|r| r.0).sum::<f32>() / (b - a + 1) as f32
            })
            .collect();
        // The corner is the strongest drop in contrast: the seam ends, cheek begins. A
        // change point, not a threshold, so small shifts of the crop do not flip it.
        let span = ((0.12 * iod).round() as usize).max(2);
        let first = ((0.3 * iod) as usize).max(span);
        let last = ((0.62 * iod) as usize).min(smooth.len().saturating_sub(span + 1));
        let mean = |a: usize, b: usize| smooth[a..b].iter().sum::<f32>() / (b - a) as f32;
        let (drop, k) = (first..=last.max(first))
            .filter(|&k| k + 1 + span <= smooth.len())
            .map(|k| (mean(k + 1 - span, k + 1) - mean(k + 1, k + 1 + span), k))
            .fold((f32::MIN, 0), |a, b| if b.0 > a.0 { b } else { a });
        if drop <= 0.02 || k == 0 {
            return None;
        }
        // The corner's height: the median seam row over the last stretch before it.
        let mut rows: Vec<f32> = raw[k + 1 - span..=k].iter().map(|r| r.1).collect();
        rows.sort_by(f32::total_cmp);
        Some((centre_x + direction * k as f32, rows[rows.len() / 2]))
    };
    let fallback = |direction: f32| (centre_x + direction * 0.5 * iod, line_y - 0.05 * iod);
    let left = corner(-1.0).unwrap_or_else(|| fallback(-1.0));
    let right = corner(1.0).unwrap_or_else(|| fallback(1.0));
    let half = ((right.0 - centre_x) + (centre_x - left.0)) / 2.0;
    let half = half.clamp(0.36 * iod, 0.62 * iod);
    let corner_y = (left.1 + right.1) / 2.0;
    MouthFit {
        centre: (centre_x, line_y),
        left: (centre_x - half, corner_y.min(line_y)),
        right: (centre_x + half, corner_y.min(line_y)),
        gap,
        lips: gap + 0.3 * iod,
    }
}

/// Chin: the strongest bright-to-dark edge below the mouth on the face's midline, near
/// where the usual proportions put it.
fn find_chin(gray: &Gray, mouth: (f32, f32), iod: f32) -> (f32, f32) {
    let prior = mouth.1 + CHIN_BELOW_MOUTH_PER_IOD * iod;
    let blurred = gray.blurred(1);
    let x = mouth.0.round() as usize;
    // The window stops short of where collars and necklines usually start.
    let (y0, y1) = (
        (mouth.1 + 0.55 * iod) as usize,
        ((mouth.1 + 0.92 * iod) as usize).min(CROP - 3),
    );
    let mut best = (0.0f32, prior);
    for y in y0..y1 {
        let above: f32 = (x.saturating_sub(2)..=x + 2)
            .map(|xx| blurred.at(xx.min(CROP - 1), y))
            .sum();
        let below: f32 = (x.saturating_sub(2)..=x + 2)
            .map(|xx| blurred.at(xx.min(CROP - 1), y + 2))
            .sum();
        let edge = (above - below) / 5.0;
        let d = (y as f32 + 1.5 - prior) / (0.15 * iod);
        let score = edge * (-(d * d)).exp();
        if score > best.0 {
            best = (score, y as f32 + 1.5);
        }
    }
    // A weak edge (beard, low contrast) is no evidence: keep the prior.
    let y = if best.0 > 0.03 { best.1 } else { prior };
    (mouth.0, y)
}

/// Whether the face region has colour (lip colour is then usable).
fn has_colour(crop: &FaceCrop) -> bool {
    let mut total = 0.0;
    for [r, g, b] in &crop.rgb.pixels {
        total += r.max(*g).max(*b) - r.min(*g).min(*b);
    }
    total / crop.rgb.pixels.len() as f32 > 0.04
}

/// Refines a detection (centre, side, angle) into a full layout.
pub fn locate(portrait: &Portrait, centre: Point, box_size: f32, angle: f32) -> FaceLayout {
    // Pass 1: eyes in the detector's frame give the roll and a scale from the IOD.
    let crop = FaceCrop::new(portrait, centre, angle, box_size);
    let prior_left = FaceCrop::prior(-PRIOR_EYE_X, PRIOR_EYE_Y);
    let prior_right = FaceCrop::prior(PRIOR_EYE_X, PRIOR_EYE_Y);
    let reach = 0.14 * PX_PER_BOX;
    let left = find_eye(
        &crop.gray,
        prior_left,
        reach,
        0.08 * PX_PER_BOX,
        0.12 * PX_PER_BOX,
    );
    let right = find_eye(
        &crop.gray,
        prior_right,
        reach,
        0.08 * PX_PER_BOX,
        0.12 * PX_PER_BOX,
    );
    let (left_src, right_src) = (
        crop.to_source(left.0, left.1),
        crop.to_source(right.0, right.1),
    );
    let roll = (right_src.y - left_src.y).atan2(right_src.x - left_src.x);
    let iod_src = ((right_src.x - left_src.x).powi(2) + (right_src.y - left_src.y).powi(2)).sqrt();
    // Trust the eyes only if they are plausibly placed; otherwise stay with the box.
    let plausible = (0.3..=0.6).contains(&(iod_src / box_size)) && (roll - angle).abs() < 0.35;
    let (angle, box_size) = if plausible {
        (roll, iod_src / PRIOR_IOD)
    } else {
        (angle, box_size)
    };
    let mid = Point {
        x: (left_src.x + right_src.x) / 2.0,
        y: (left_src.y + right_src.y) / 2.0,
    };
    let centre = if plausible {
        // The box centre sits below the eyes' midpoint by -PRIOR_EYE_Y box sizes.
        let (sin, cos) = angle.sin_cos();
        let down = -PRIOR_EYE_Y * box_size;
        Point {
            x: mid.x - sin * down,
            y: mid.y + cos * down,
        }
    } else {
        centre
    };

    // Pass 2: upright crop at the refined roll and scale.
    let crop = FaceCrop::new(portrait, centre, angle, box_size);
    let fine = 0.06 * PX_PER_BOX;
    let left = find_eye(
        &crop.gray,
        FaceCrop::prior(-PRIOR_EYE_X, PRIOR_EYE_Y),
        fine,
        fine,
        fine,
    );
    let right = find_eye(
        &crop.gray,
        FaceCrop::prior(PRIOR_EYE_X, PRIOR_EYE_Y),
        fine,
        fine,
        fine,
    );
    let iod = ((right.0 - left.0).powi(2) + (right.1 - left.1).powi(2)).sqrt();
    let eye_mid = ((left.0 + right.0) / 2.0, (left.1 + right.1) / 2.0);
    let colour = has_colour(&crop);
    let mouth_prior_y =
        FaceCrop::prior(0.0, PRIOR_MOUTH_Y).1 + (eye_mid.1 - FaceCrop::prior(0.0, PRIOR_EYE_Y).1);
    let mouth = find_mouth(&crop, eye_mid.0, mouth_prior_y, iod, colour);
    let chin = find_chin(&crop.gray, mouth.centre, iod);

    let to_source = |p: (f32, f32)| crop.to_source(p.0, p.1);
    let (left_eye, right_eye) = (to_source(left), to_source(right));
    let roll = (right_eye.y - left_eye.y).atan2(right_eye.x - left_eye.x);
    let iod_src = iod * crop.step;
    FaceLayout {
        face_box: super::FaceBox {
            x: centre.x - box_size / 2.0,
            y: centre.y - box_size / 2.0,
            width: box_size,
            height: box_size,
        },
        left_eye,
        right_eye,
        eye_width: EYE_WIDTH_PER_IOD * iod_src,
        mouth_left: to_source(mouth.left),
        mouth_right: to_source(mouth.right),
        mouth_centre: to_source(mouth.centre),
        mouth_gap: mouth.gap * crop.step,
        lip_height: mouth.lips * crop.step,
        chin: to_source(chin),
        roll,
    }
}
