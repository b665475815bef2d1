//! Small float images for face analysis (which runs once per portrait, on the CPU, off
//! the streaming thread; clarity matters more than speed here).

use crate::portrait::Portrait;

/// A single-channel image, values in `[0, 1]`, row-major.
#[derive(Debug, Clone)]
pub struct Gray {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<f32>,
}

impl Gray {
    pub fn from_fn(width: usize, height: usize, mut f: impl FnMut(usize, usize) -> f32) -> Self {
        let mut pixels = Vec::with_capacity(width * height);
        for y in 0..height {
            for x in 0..width {
                pixels.push(f(x, y));
            }
        }
        Self {
            width,
            height,
            pixels,
        }
    }

    /// Luma (BT.601) of a portrait.
    pub fn luma(portrait: &Portrait) -> Self {
        let rgb = &portrait.rgb;
        Self::from_fn(portrait.width as usize, portrait.height as usize, |x, y| {
            let i = (y * portrait.width as usize + x) * 3;
            (0.299 * f32::from(rgb[i])
                + 0.587 * f32::from(rgb[i + 1])
                + 0.114 * f32::from(rgb[i + 2]))
                / 255.0
        })
    }

    pub fn at(&self, x: usize, y: usize) -> f32 {
        self.pixels[y * self.width + x]
    }

    /// Bilinear sample at continuous pixel coordinates (pixel centres at +0.5), edges
    /// clamped.
    pub fn sample(&self, x: f32, y: f32) -> f32 {
        bilinear(self.width, self.height, x, y, |i| self.pixels[i])
    }

    /// Area-averaged (when shrinking) or bilinear (when enlarging) resize.
    pub fn resized(&self, width: usize, height: usize) -> Self {
        let (sx, sy) = (
            self.width as f32 / width as f32,
            self.height as f32 / height as f32,
        );
        if sx <= 1.0 && sy <= 1.0 {
            return Self::from_fn(width, height, |x, y| {
                self.sample((x as f32 + 0.5) * sx, (y as f32 + 0.5) * sy)
            });
        }
        Self::from_fn(width, height, |x, y| {
            let (x0, x1) = (
                (x as f32 * sx) as usize,
                (((x + 1) as f32 * sx).ceil() as usize).min(self.width),
            );
            let (y0, y1) = (
                (y as f32 * sy) as usize,
                (((y + 1) as f32 * sy).ceil() as usize).min(self.height),
            );
            let mut sum = 0.0;
            for yy in y0..y1.max(y0 + 1) {
                for xx in x0..x1.max(x0 + 1) {
                    sum += self.at(xx.min(self.width - 1), yy.min(self.height - 1));
                }
            }
            sum / ((x1.max(x0 + 1) - x0) * (y1.max(y0 + 1) - y0)) as f32
        })
    }

    /// Box blur of radius `r` (separable, edges clamped).
    pub fn blurred(&self, r: usize) -> Self {
        if r == 0 {
            return self.clone();
        }
        let horizontal = Self::from_fn(self.width, self.height, |x, y| {
            let (a, b) = (x.saturating_sub(r), (x + r).min(self.width - 1));
            (a..=b).map(|xx| self.at(xx, y)).sum::<f32>() / (b - a + 1) as f32
        });
        Self::from_fn(self.width, self.height, |x, y| {
            let (a, b) = (y.saturating_sub(r), (y + r).min(self.height - 1));
            (a..=b).map(|yy| horizontal.at(x, yy)).sum::<f32>() / (b - a + 1) as f32
        })
    }
}

/// An RGB float image, values in `[0, 1]`.
#[derive(Debug, Clone)]
pub struct Rgb {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<[f32; 3]>,
}

impl Rgb {
    pub fn at(&self, x: usize, y: usize) -> [f32; 3] {
        self.pixels[y * self.width + x]
    }
}

/// Bilinear interpolation over a `width x height` grid read through `value(index)`.
fn bilinear(width: usize, height: usize, x: f32, y: f32, value: impl Fn(usize) -> f32) -> f32 {
    let fx = (x - 0.5).clamp(0.0, (width - 1) as f32);
    let fy = (y - 0.5).clamp(0.0, (height - 1) as f32);
    let (x0, y0) = (fx.floor() as usize, fy.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(width - 1), (y0 + 1).min(height - 1));
    let (ax, ay) = (fx - x0 as f32, fy - y0 as f32);
    let top = value(y0 * width + x0) * (1.0 - ax) + value(y0 * width + x1) * ax;
    let bottom = value(y1 * width + x0) * (1.0 - ax) + value(y1 * width + x1) * ax;
    top * (1.0 - ay) + bottom * ay
}

/// Samples the portrait's RGB at continuous coordinates.
pub fn sample_rgb(portrait: &Portrait, x: f32, y: f32) -> [f32; 3] {
    let (w, h) = (portrait.width as usize, portrait.height as usize);
    let channel = |c: usize| bilinear(w, h, x, y, |i| f32::from(portrait.rgb[i * 3 + c]) / 255.0);
    [channel(0), channel(1), channel(2)]
}
