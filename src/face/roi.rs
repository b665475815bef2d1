//! A rotated rectangle of the portrait and its pixels as a model input, sampled the way
//! MediaPipe's CPU path does (OpenCV's bilinear warp: positions on a 1/32-pixel grid,
//! results rounded to 8 bits), so the networks see what they see in MediaPipe.
//!
//! Coordinates are in source pixels with pixel centres at integers (OpenCV's and
//! MediaPipe's convention); every point this module returns uses it.

use tch::{Kind, Tensor};

use crate::portrait::Portrait;

/// A rectangle centred at (`cx`, `cy`), `width` x `height` source pixels, turned by
/// `rotation` radians (clockwise on screen: its x axis points along
/// `(cos rotation, sin rotation)` in image coordinates, y down).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Roi {
    pub cx: f64,
    pub cy: f64,
    pub width: f64,
    pub height: f64,
    pub rotation: f64,
}

/// What a sample outside the portrait reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Border {
    /// Black (the detector's letterbox).
    Zero,
    /// The nearest edge pixel (the landmark model's crop).
    Replicate,
}

/// OpenCV's bilinear warp quantises positions to 1/32 pixel (INTER_BITS = 5).
const POSITION_STEPS: f64 = 32.0;

impl Roi {
    /// The source point shown at `(u, v)` of a `size` x `size` model input, where
    /// `(0, 0)` is the rectangle's top-left corner and `(size, size)` its bottom-right.
    pub fn to_source(&self, u: f64, v: f64, size: (f64, f64)) -> (f64, f64) {
        let (du, dv) = (
            (u / size.0 - 0.5) * self.width,
            (v / size.1 - 0.5) * self.height,
        );
        let (sin, cos) = self.rotation.sin_cos();
        (self.cx + cos * du - sin * dv, self.cy + sin * du + cos * dv)
    }

    /// The rectangle's pixels as a `[1, height, width, 3]` float tensor (RGB), each value
    /// mapped from `[0, 255]` onto `range`.
    pub fn sample(
        &self,
        portrait: &Portrait,
        (width, height): (usize, usize),
        border: Border,
        range: (f32, f32),
    ) -> Tensor {
        let mut values = Vec::with_capacity(width * height * 3);
        let scale = (range.1 - range.0) / 255.0;
        let size = (width as f64, height as f64);
        for v in 0..height {
            for u in 0..width {
                let (x, y) = self.to_source(u as f64, v as f64, size);
                for channel in bilinear(portrait, x, y, border) {
                    values.push(range.0 + scale * channel);
                }
            }
        }
        Tensor::from_slice(&values).view([1, height as i64, width as i64, 3])
    }
}

/// One RGB sample at (x, y), OpenCV-style: the position on the 1/32 grid, the four
/// neighbours by `border`, the result rounded to an 8-bit value.
fn bilinear(portrait: &Portrait, x: f64, y: f64, border: Border) -> [f32; 3] {
    let (w, h) = (i64::from(portrait.width), i64::from(portrait.height));
    let (qx, qy) = (
        (x * POSITION_STEPS).round() as i64,
        (y * POSITION_STEPS).round() as i64,
    );
    let steps = POSITION_STEPS as i64;
    let (ix, iy) = (qx.div_euclid(steps), qy.div_euclid(steps));
    let (fx, fy) = (
        qx.rem_euclid(steps) as f32 / POSITION_STEPS as f32,
        qy.rem_euclid(steps) as f32 / POSITION_STEPS as f32,
    );
    let read = |px: i64, py: i64| -> [f32; 3] {
        let (px, py) = match border {
            Border::Replicate => (px.clamp(0, w - 1), py.clamp(0, h - 1)),
            Border::Zero => {
                if px < 0 || py < 0 || px >= w || py >= h {
                    return [0.0; 3];
                }
                (px, py)
            }
        };
        let [r, g, b] = portrait.pixel(px as u32, py as u32);
        [f32::from(r), f32::from(g), f32::from(b)]
    };
    let (a, b, c, d) = (
        read(ix, iy),
        read(ix + 1, iy),
        read(ix, iy + 1),
        read(ix + 1, iy + 1),
    );
    let mut out = [0.0; 3];
    for k in 0..3 {
        let top = a[k] + (b[k] - a[k]) * fx;
        let bottom = c[k] + (d[k] - c[k]) * fx;
        out[k] = (top + (bottom - top) * fy).round();
    }
    out
}

/// The sigmoid of a one-element tensor.
pub fn sigmoid_of(t: &Tensor) -> f64 {
    let logit = t.to_kind(Kind::Double).flatten(0, -1).double_value(&[0]);
    1.0 / (1.0 + (-logit.clamp(-100.0, 100.0)).exp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn ramp() -> Portrait {
        let image =
            image::RgbImage::from_fn(8, 4, |x, y| image::Rgb([(x * 30) as u8, (y * 60) as u8, 7]));
        Portrait::from_image(
            PathBuf::from("ramp"),
            &image::DynamicImage::ImageRgb8(image),
        )
    }

    #[test]
    fn an_unrotated_roi_samples_pixel_centres_at_integers() {
        let portrait = ramp();
        // A 4x4 input over the 8x4 image's left half: input pixel u shows x = u * 1.0 + offset.
        let roi = Roi {
            cx: 2.0,
            cy: 2.0,
            width: 4.0,
            height: 4.0,
            rotation: 0.0,
        };
        let t = roi.sample(&portrait, (4, 4), Border::Replicate, (0.0, 255.0));
        let values = Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
        // (u, v) = (1, 2) shows source (1, 2): red 30, green 120.
        let i = (2 * 4 + 1) * 3;
        assert_eq!(&values[i..i + 3], &[30.0, 120.0, 7.0]);
    }

    #[test]
    fn outside_the_portrait_is_black_or_the_edge() {
        let portrait = ramp();
        let roi = Roi {
            cx: -10.0,
            cy: 1.0,
            width: 2.0,
            height: 2.0,
            rotation: 0.0,
        };
        let zero = roi.sample(&portrait, (2, 2), Border::Zero, (-1.0, 1.0));
        assert_eq!(Vec::<f32>::try_from(zero.flatten(0, -1)).unwrap()[0], -1.0);
        let edge = roi.sample(&portrait, (2, 2), Border::Replicate, (0.0, 255.0));
        assert_eq!(Vec::<f32>::try_from(edge.flatten(0, -1)).unwrap()[2], 7.0);
    }

    #[test]
    fn rotation_turns_the_x_axis_clockwise_on_screen() {
        let roi = Roi {
            cx: 0.0,
            cy: 0.0,
            width: 2.0,
            height: 2.0,
            rotation: std::f64::consts::FRAC_PI_2,
        };
        // The input's right edge centre lies below the centre in the image.
        let (x, y) = roi.to_source(2.0, 1.0, (2.0, 2.0));
        assert!(x.abs() < 1e-9 && (y - 1.0).abs() < 1e-9, "{x} {y}");
    }
}
