//! The neural renderer's window onto the portrait, and the way back into the frame.
//!
//! LivePortrait's networks see a square crop around the face, turned upright, at their
//! input size (256 px), and draw a square image (512 px) of the same window. The window
//! comes from the builtin face analysis (eyes, chin, roll) the way the reference builds
//! it from its landmarks: the face's extent, made square, times `crop-scale` (2.3),
//! moved along the face's vertical axis by `crop-offset-y` (-0.125) of its side.
//!
//! The drawn image goes back into the frame through a feathered mask that is exactly
//! zero near the window's edge and outside the portrait: there the frame is the fitted
//! portrait, pixel for pixel.
//!
//! Geometry is in continuous pixel coordinates, pixel `k` spanning `[k, k + 1)`, which
//! is what `grid_sample` and the antialiased resizes use with `align_corners = false`.
//! Window coordinates `(u, v)` run from -1 to 1 across the window.

use tch::{Device, Kind, Tensor};

use super::fit::Placement;
use crate::core::{Error, FrameSize, TensorContext};
use crate::face::FaceLayout;

pub const DEFAULT_CROP_SCALE: f32 = 2.3;
pub const DEFAULT_CROP_OFFSET_Y: f32 = -0.125;

/// How large the window is around the face and where it sits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropSettings {
    /// Window side over the face's extent.
    pub scale: f32,
    /// Shift along the face's vertical axis, in window sides (negative = up).
    pub offset_y: f32,
}

impl Default for CropSettings {
    fn default() -> Self {
        Self {
            scale: DEFAULT_CROP_SCALE,
            offset_y: DEFAULT_CROP_OFFSET_Y,
        }
    }
}

/// The face's extent, in inter-ocular distances (IOD), as the reference's 203 landmarks
/// span it: eyebrows to chin, jaw to jaw.
const BROWS_ABOVE_EYES: f64 = 0.5;
const HALF_FACE_WIDTH: f64 = 1.1;
/// Eye line to chin; outside this range the chin estimate is not trusted.
const CHIN_BELOW_EYES: (f64, f64) = (1.3, 2.3);

/// Where the feathered paste-back mask falls off, in window coordinates (a rounded
/// square: `(u^4 + v^4)^(1/4)`). Zero from `MASK_OUTER` on, so the window's edge,
/// where the network draws background of its own, never shows.
const MASK_INNER: f64 = 0.80;
const MASK_OUTER: f64 = 0.97;

/// A square window in source pixels, rotated with the face.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropWindow {
    pub centre_x: f64,
    pub centre_y: f64,
    pub side: f64,
    /// The face's roll, radians (the window's x axis runs along the eye line).
    pub angle: f64,
    /// Inter-ocular distance in source pixels.
    pub iod: f64,
}

impl CropWindow {
    pub fn around(layout: &FaceLayout, settings: &CropSettings) -> Self {
        let iod = f64::from(layout.inter_ocular()).max(1.0);
        let angle = f64::from(layout.roll);
        let (sin, cos) = angle.sin_cos();
        // Landmarks are pixel indices; +0.5 makes them continuous coordinates.
        let eyes_x = f64::from(layout.left_eye.x + layout.right_eye.x) / 2.0 + 0.5;
        let eyes_y = f64::from(layout.left_eye.y + layout.right_eye.y) / 2.0 + 0.5;
        let (chin_dx, chin_dy) = (
            f64::from(layout.chin.x) + 0.5 - eyes_x,
            f64::from(layout.chin.y) + 0.5 - eyes_y,
        );
        let chin = (-sin * chin_dx + cos * chin_dy)
            .clamp(CHIN_BELOW_EYES.0 * iod, CHIN_BELOW_EYES.1 * iod);
        let top = -BROWS_ABOVE_EYES * iod;
        let face_side = (chin - top).max(2.0 * HALF_FACE_WIDTH * iod);
        let side = face_side * f64::from(settings.scale);
        // Down the face's vertical axis from the eyes: to the extent's middle, then by
        // the offset.
        let down = (top + chin) / 2.0 + f64::from(settings.offset_y) * side;
        Self {
            centre_x: eyes_x - sin * down,
            centre_y: eyes_y + cos * down,
            side,
            angle,
            iod,
        }
    }

    /// Source coordinates of window coordinates `(u, v)`.
    pub fn to_source(&self, u: f64, v: f64) -> (f64, f64) {
        let (sin, cos) = self.angle.sin_cos();
        let (a, b) = (u * self.side / 2.0, v * self.side / 2.0);
        (
            self.centre_x + cos * a - sin * b,
            self.centre_y + sin * a + cos * b,
        )
    }

    /// Window coordinates `(u, v)` of source coordinates (the inverse of
    /// [`CropWindow::to_source`]).
    pub fn to_window(&self, x: f64, y: f64) -> (f64, f64) {
        let (sin, cos) = self.angle.sin_cos();
        let (dx, dy) = (x - self.centre_x, y - self.centre_y);
        (
            (cos * dx + sin * dy) * 2.0 / self.side,
            (-sin * dx + cos * dy) * 2.0 / self.side,
        )
    }

    /// The inter-ocular distance in window units (the window is 2 wide).
    pub fn iod_in_window(&self) -> f64 {
        2.0 * self.iod / self.side
    }

    /// The window's content at `size` x `size`: `(1, 3, size, size)`, from the portrait
    /// `(3, H, W)` in `[0, 1]`. Beyond the image's edge its border pixels repeat.
    pub fn sample(&self, portrait: &Tensor, size: i64) -> Result<Tensor, Error> {
        let (_, height, width) = portrait.size3().context("portrait tensor shape")?;
        let device = portrait.device();
        // A window larger than the output is shrunk with an antialiased resize first, so
        // a high-resolution portrait does not alias.
        let shrink = self.side / size as f64;
        let (image, width_s, height_s) = if shrink > 1.25 {
            let w = ((width as f64 / shrink).round() as i64).max(1);
            let h = ((height as f64 / shrink).round() as i64).max(1);
            let small = portrait
                .f_unsqueeze(0)
                .and_then(|t| t.f_internal_upsample_bilinear2d_aa([h, w], false, None, None))
                .context("shrinking the portrait for the face crop")?;
            (small, w, h)
        } else {
            (portrait.unsqueeze(0), width, height)
        };
        let (sx, sy) = (
            width_s as f64 / width as f64,
            height_s as f64 / height as f64,
        );
        let mut grid = Vec::with_capacity((size * size * 2) as usize);
        for row in 0..size {
            let v = (2.0 * row as f64 + 1.0) / size as f64 - 1.0;
            for col in 0..size {
                let u = (2.0 * col as f64 + 1.0) / size as f64 - 1.0;
                let (x, y) = self.to_source(u, v);
                grid.push((2.0 * x * sx / width_s as f64 - 1.0) as f32);
                grid.push((2.0 * y * sy / height_s as f64 - 1.0) as f32);
            }
        }
        Tensor::f_from_slice(&grid)
            .and_then(|g| g.f_view([1, size, size, 2]))
            .and_then(|g| g.f_to_device(device))
            .and_then(|g| image.f_grid_sampler(&g, 0, 1, false))
            .context("sampling the face crop")
    }
}

fn smoothstep(edge0: f64, edge1: f64, x: f64) -> f64 {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// The paste-back mask at window coordinates `(u, v)`: 1 inside, feathered to exactly 0.
pub fn paste_mask(u: f64, v: f64) -> f64 {
    let r = (u.powi(4) + v.powi(4)).sqrt().sqrt();
    1.0 - smoothstep(MASK_INNER, MASK_OUTER, r)
}

/// Pastes drawn windows into frames of one size, for one portrait and window: the
/// sampling grid and mask are computed once, over the rectangle of the frame the mask
/// touches.
pub struct PasteBack {
    /// The fitted portrait `(3, H, W)`: the frame wherever the mask is zero.
    base: Tensor,
    /// The rectangle of the frame the mask is non-zero in: (top, left, height, width).
    region: Option<(i64, i64, i64, i64)>,
    /// `(1, h, w, 2)` window coordinates of the region's pixels.
    grid: Tensor,
    /// `(1, 1, h, w)` mask over the region.
    mask: Tensor,
    /// The window's side in frame pixels, to shrink drawn windows to before sampling.
    side_in_frame: f64,
}

impl PasteBack {
    /// `base` is the portrait fitted into the frame at `placement` (see
    /// [`super::fit::letterbox`]).
    pub fn new(
        window: &CropWindow,
        placement: &Placement,
        size: FrameSize,
        base: Tensor,
    ) -> Result<Self, Error> {
        let device = base.device();
        let (width, height) = (i64::from(size.width), i64::from(size.height));
        let (sin, cos) = window.angle.sin_cos();
        let half = window.side / 2.0;
        let to_window = |col: i64, row: i64| {
            // Frame pixel centre -> source -> window.
            let x = (col as f64 + 0.5 - placement.left as f64) / placement.scale;
            let y = (row as f64 + 0.5 - placement.top as f64) / placement.scale;
            let (dx, dy) = (x - window.centre_x, y - window.centre_y);
            ((cos * dx + sin * dy) / half, (-sin * dx + cos * dy) / half)
        };
        let inside_portrait = |col: i64, row: i64| {
            (placement.left..placement.left + placement.width).contains(&col)
                && (placement.top..placement.top + placement.height).contains(&row)
        };
        let mask_at = |col: i64, row: i64| {
            if !inside_portrait(col, row) {
                return 0.0;
            }
            let (u, v) = to_window(col, row);
            paste_mask(u, v)
        };
        // The mask's support: the frame pixels inside the window's bounding box.
        let corners = [(-1.0, -1.0), (1.0, -1.0), (-1.0, 1.0), (1.0, 1.0)].map(|(u, v)| {
            let (x, y) = window.to_source(u, v);
            (
                x * placement.scale + placement.left as f64,
                y * placement.scale + placement.top as f64,
            )
        });
        let span = |values: [f64; 4], limit: i64| {
            let low = values.iter().copied().fold(f64::INFINITY, f64::min);
            let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            ((low.floor() as i64).max(0), (high.ceil() as i64).min(limit))
        };
        let (left, right) = span(corners.map(|c| c.0), width);
        let (top, bottom) = span(corners.map(|c| c.1), height);
        let side_in_frame = window.side * placement.scale;
        if right <= left || bottom <= top {
            return Ok(Self {
                base,
                region: None,
                grid: Tensor::zeros([1, 1, 1, 2], (Kind::Float, device)),
                mask: Tensor::zeros([1, 1, 1, 1], (Kind::Float, device)),
                side_in_frame,
            });
        }
        let (h, w) = (bottom - top, right - left);
        let mut grid = Vec::with_capacity((h * w * 2) as usize);
        let mut mask = Vec::with_capacity((h * w) as usize);
        for row in top..bottom {
            for col in left..right {
                let (u, v) = to_window(col, row);
                grid.push(u as f32);
                grid.push(v as f32);
                mask.push(mask_at(col, row) as f32);
            }
        }
        let upload = |values: &[f32], shape: &[i64]| {
            Tensor::f_from_slice(values)
                .and_then(|t| t.f_view(shape))
                .and_then(|t| t.f_to_device(device))
                .context("paste-back grid")
        };
        Ok(Self {
            base,
            region: Some((top, left, h, w)),
            grid: upload(&grid, &[1, h, w, 2])?,
            mask: upload(&mask, &[1, 1, h, w])?,
            side_in_frame,
        })
    }

    /// The frame with `drawn` (`(1, 3, S, S)` in `[0, 1]`, the window as the network drew
    /// it) pasted in: `(3, H, W)`.
    pub fn paste(&self, drawn: &Tensor) -> Result<Tensor, Error> {
        let frame = self.base.copy();
        let Some((top, left, h, w)) = self.region else {
            return Ok(frame);
        };
        let drawn_side = drawn.size().last().copied().unwrap_or(1);
        // Shrunk first when the window is much smaller in the frame than drawn, so the
        // sampling does not alias.
        let target = self.side_in_frame.round() as i64;
        let drawn = if (drawn_side as f64) > 1.25 * self.side_in_frame && target >= 1 {
            drawn
                .f_internal_upsample_bilinear2d_aa([target, target], false, None, None)
                .context("shrinking the drawn face")?
        } else {
            drawn.shallow_clone()
        };
        let sampled = drawn
            .f_grid_sampler(&self.grid, 0, 1, false)
            .context("pasting the drawn face")?;
        let mut region = frame
            .f_narrow(1, top, h)
            .and_then(|t| t.f_narrow(2, left, w))
            .context("paste-back region")?;
        let blended = &region * (1.0 - &self.mask.squeeze_dim(0))
            + sampled.squeeze_dim(0) * self.mask.squeeze_dim(0);
        region.f_copy_(&blended).context("paste-back")?;
        Ok(frame)
    }

    /// The mask over the whole frame, `(H, W)` on the CPU (for tests and pictures).
    pub fn full_mask(&self) -> Tensor {
        let (_, height, width) = self.base.size3().expect("(3, H, W)");
        let full = Tensor::zeros([height, width], (Kind::Float, Device::Cpu));
        if let Some((top, left, h, w)) = self.region {
            full.narrow(0, top, h)
                .narrow(1, left, w)
                .copy_(&self.mask.view([h, w]).to_device(Device::Cpu));
        }
        full
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::{FaceBox, Point};

    fn layout(eyes_y: f32, roll: f32) -> FaceLayout {
        let (sin, cos) = roll.sin_cos();
        let at = |dx: f32, dy: f32| Point {
            x: 200.0 + cos * dx - sin * dy,
            y: eyes_y + sin * dx + cos * dy,
        };
        FaceLayout {
            face_box: FaceBox {
                x: 150.0,
                y: eyes_y - 40.0,
                width: 100.0,
                height: 100.0,
            },
            left_eye: at(-20.0, 0.0),
            right_eye: at(20.0, 0.0),
            eye_width: 19.0,
            mouth_left: at(-16.0, 45.0),
            mouth_right: at(16.0, 45.0),
            mouth_centre: at(0.0, 45.0),
            mouth_gap: 0.0,
            lip_height: 12.0,
            chin: at(0.0, 72.0),
            forehead: at(0.0, -30.0),
            cheek_left: at(-45.0, 30.0),
            cheek_right: at(45.0, 30.0),
            roll,
        }
    }

    #[test]
    fn window_is_the_face_extent_times_the_scale_shifted_up() {
        let window = CropWindow::around(&layout(180.0, 0.0), &CropSettings::default());
        // IOD 40: extent from 20 above the eyes to the chin 72 below = 92 (wider than
        // 2.2 IOD = 88), times 2.3.
        assert!((window.side - 92.0 * 2.3).abs() < 1e-3, "{window:?}");
        let middle = 180.5 + (72.0 - 20.0) / 2.0;
        assert!((window.centre_y - (middle - 0.125 * window.side)).abs() < 1e-3);
        assert!((window.centre_x - 200.5).abs() < 1e-3);
        assert!((window.iod_in_window() - 80.0 / window.side).abs() < 1e-9);
    }

    #[test]
    fn window_turns_with_the_face() {
        let roll = 0.2f32;
        let upright = CropWindow::around(&layout(180.0, 0.0), &CropSettings::default());
        let tilted = CropWindow::around(&layout(180.0, roll), &CropSettings::default());
        assert!((tilted.angle - f64::from(roll)).abs() < 1e-6);
        assert!((tilted.side - upright.side).abs() < 1e-3);
        // The right eye sits at the same window coordinates in both.
        let eye_in = |w: &CropWindow, x: f64, y: f64| {
            let (sin, cos) = w.angle.sin_cos();
            let (dx, dy) = (x - w.centre_x, y - w.centre_y);
            (
                (cos * dx + sin * dy) / (w.side / 2.0),
                (-sin * dx + cos * dy) / (w.side / 2.0),
            )
        };
        let l = layout(180.0, roll);
        let a = eye_in(
            &tilted,
            f64::from(l.right_eye.x) + 0.5,
            f64::from(l.right_eye.y) + 0.5,
        );
        let b = eye_in(&upright, 220.5, 180.5);
        assert!(
            (a.0 - b.0).abs() < 1e-4 && (a.1 - b.1).abs() < 1e-4,
            "{a:?} {b:?}"
        );
    }

    #[test]
    fn sampled_crop_shows_the_window() {
        // A horizontal ramp: the crop's middle column has the value at the window's
        // centre.
        let (w, h) = (400i64, 400i64);
        let ramp = Tensor::arange(w, (Kind::Float, Device::Cpu)) / w as f64;
        let portrait = ramp.view([1, 1, w]).expand([3, h, w], false).contiguous();
        let window = CropWindow::around(&layout(180.0, 0.0), &CropSettings::default());
        let crop = window.sample(&portrait, 64).unwrap();
        assert_eq!(crop.size(), [1, 3, 64, 64]);
        let left = crop.double_value(&[0, 0, 32, 0]);
        let right = crop.double_value(&[0, 0, 32, 63]);
        let expected_left = (window.centre_x - window.side / 2.0) / w as f64;
        let expected_right = (window.centre_x + window.side / 2.0) / w as f64;
        assert!(
            (left - expected_left).abs() < 0.01,
            "{left} {expected_left}"
        );
        assert!(
            (right - expected_right).abs() < 0.01,
            "{right} {expected_right}"
        );
    }

    #[test]
    fn mask_is_one_inside_and_exactly_zero_at_the_edge() {
        assert_eq!(paste_mask(0.0, 0.0), 1.0);
        assert_eq!(paste_mask(0.7, 0.0), 1.0);
        assert_eq!(paste_mask(0.98, 0.0), 0.0);
        assert_eq!(paste_mask(0.0, -0.99), 0.0);
        let mid = paste_mask(0.9, 0.0);
        assert!(mid > 0.0 && mid < 1.0);
    }

    #[test]
    fn paste_changes_only_the_masked_pixels() {
        let size = FrameSize {
            width: 320,
            height: 240,
        };
        // A 400x400 portrait letterboxed into 320x240.
        let placement = Placement::new(400, 400, size);
        let base = Tensor::rand([3, 240, 320], (Kind::Float, Device::Cpu));
        let window = CropWindow::around(&layout(180.0, 0.1), &CropSettings::default());
        let paste = PasteBack::new(&window, &placement, size, base.copy()).unwrap();
        let drawn = Tensor::ones([1, 3, 512, 512], (Kind::Float, Device::Cpu));
        let frame = paste.paste(&drawn).unwrap();
        let mask = paste.full_mask();
        let outside = mask.eq(0.0);
        let unchanged = frame.eq_tensor(&base).all_dim(0, false);
        // Every pixel where the mask is zero is the base, bit for bit.
        assert!(
            outside
                .logical_and(&unchanged.logical_not())
                .sum(Kind::Int64)
                .int64_value(&[])
                == 0
        );
        // Where the mask is one, the drawn window shows (up to the shrinking's rounding).
        let full = mask.eq(1.0);
        assert!(full.sum(Kind::Int64).int64_value(&[]) > 1000);
        let drawn_there = frame.gt(0.9999).all_dim(0, false);
        assert!(
            full.logical_and(&drawn_there.logical_not())
                .sum(Kind::Int64)
                .int64_value(&[])
                == 0
        );
        // Nothing lands on the letterbox bars (portrait columns 40..280).
        let bars = mask.narrow(1, 0, placement.left);
        assert_eq!(bars.abs().sum(Kind::Float).double_value(&[]), 0.0);
    }
}
