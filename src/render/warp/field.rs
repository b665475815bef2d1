//! Small pieces the rig is built from: rectangles of the region of interest, grids of
//! field points and smooth weights.

use tch::{Kind, Tensor};

/// A rectangle in ROI pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub left: i64,
    pub top: i64,
    pub width: i64,
    pub height: i64,
}

impl Rect {
    pub fn cut(&self, t: &Tensor) -> Tensor {
        let (h, w) = (t.dim() - 2, t.dim() - 1);
        t.narrow(h as i64, self.top, self.height)
            .narrow(w as i64, self.left, self.width)
    }
}

/// Face-unit box corners.
pub fn corners(u: (f64, f64), v: (f64, f64)) -> [(f64, f64); 4] {
    [(u.0, v.0), (u.1, v.0), (u.0, v.1), (u.1, v.1)]
}

/// Pixel-centre positions (ROI pixels) of a field grid over `rect` at spacing `step`:
/// first and last pixel included, so corner-aligned interpolation is exact there.
pub fn field_positions(rect: &Rect, step: f64, device: tch::Device) -> (Tensor, Tensor) {
    let options = (Kind::Float, device);
    let axis = |start: i64, length: i64| {
        if step <= 1.0 {
            Tensor::arange(length, options) + (start as f64 + 0.5)
        } else {
            let points = ((length as f64 - 1.0) / step).ceil().max(1.0) as i64 + 1;
            Tensor::linspace(
                start as f64 + 0.5,
                (start + length) as f64 - 0.5,
                points,
                options,
            )
        }
    };
    (axis(rect.left, rect.width), axis(rect.top, rect.height))
}

pub fn smoothstep(edge0: f64, edge1: f64, x: &Tensor) -> Tensor {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    &t * &t * (3.0f64 - 2.0 * &t)
}

pub fn plane(t: &Tensor) -> Tensor {
    t.unsqueeze(0).unsqueeze(0)
}
