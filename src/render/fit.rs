//! Fitting the portrait into the output frame with its aspect ratio kept: scaled as large
//! as fits, centred, the rest filled with the neutral background.

use tch::{Device, Kind, Tensor};

use crate::core::{Error, FrameSize, TensorContext};
use crate::portrait::{NEUTRAL_BACKGROUND, Portrait};

/// Where the portrait lands in the frame: frame pixel = source pixel * `scale` + offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    pub scale: f64,
    /// Top-left corner of the scaled portrait in the frame, in pixels.
    pub left: i64,
    pub top: i64,
    /// Size of the scaled portrait in the frame, in pixels.
    pub width: i64,
    pub height: i64,
}

impl Placement {
    pub fn new(source_width: u32, source_height: u32, frame: FrameSize) -> Self {
        let scale = (f64::from(frame.width) / f64::from(source_width))
            .min(f64::from(frame.height) / f64::from(source_height));
        // Rounded, clamped to the frame, and at least one pixel, so that a 1x4000 image
        // still appears.
        let width =
            ((f64::from(source_width) * scale).round() as i64).clamp(1, i64::from(frame.width));
        let height =
            ((f64::from(source_height) * scale).round() as i64).clamp(1, i64::from(frame.height));
        Self {
            scale,
            left: (i64::from(frame.width) - width) / 2,
            top: (i64::from(frame.height) - height) / 2,
            width,
            height,
        }
    }

    /// Maps a point in source pixel coordinates to frame pixel coordinates.
    pub fn to_frame(&self, x: f64, y: f64) -> (f64, f64) {
        (
            x * self.scale + self.left as f64,
            y * self.scale + self.top as f64,
        )
    }
}

/// The portrait as a `(3, height, width)` float tensor in `[0, 1]` on `device`.
pub fn portrait_tensor(portrait: &Portrait, device: Device) -> Result<Tensor, Error> {
    let hwc = Tensor::f_from_slice(&portrait.rgb)
        .and_then(|t| t.f_reshape([i64::from(portrait.height), i64::from(portrait.width), 3]))
        .context("portrait to tensor")?;
    hwc.f_to_device(device)
        .and_then(|t| t.f_permute([2, 0, 1]))
        .and_then(|t| t.f_to_kind(Kind::Float))
        .and_then(|t| t.f_div_scalar(255.0))
        .context("portrait upload")
}

/// Where `portrait` sits in a frame of `size`, and that frame: the portrait uploaded to
/// `device` and letterboxed (the still frame every renderer starts from).
pub fn fitted_frame(
    portrait: &Portrait,
    size: FrameSize,
    device: Device,
) -> Result<(Placement, Tensor), Error> {
    let placement = Placement::new(portrait.width, portrait.height, size);
    let frame = letterbox(&portrait_tensor(portrait, device)?, &placement, size)?;
    Ok((placement, frame))
}

/// The portrait letterboxed into a frame of `size`: `(3, H, W)` float in `[0, 1]`.
pub fn letterbox(source: &Tensor, placement: &Placement, size: FrameSize) -> Result<Tensor, Error> {
    let (_, source_height, source_width) = source.size3().context("portrait tensor shape")?;
    let batch = source.f_unsqueeze(0).context("letterbox")?;
    let scaled = if (placement.width, placement.height) == (source_width, source_height) {
        batch
    } else {
        // Antialiased: a large photo shrunk to 512 px must not alias; bicubic when
        // enlarging keeps small portraits sharp. Bicubic overshoots, hence the clamp.
        batch
            .f_internal_upsample_bicubic2d_aa(
                [placement.height, placement.width],
                false,
                None,
                None,
            )
            .and_then(|t| t.f_clamp(0.0, 1.0))
            .context("resizing the portrait")?
    };
    let background = Tensor::f_from_slice(&NEUTRAL_BACKGROUND.map(|c| f32::from(c) / 255.0))
        .and_then(|t| t.f_to_device(source.device()))
        .and_then(|t| t.f_view([1, 3, 1, 1]))
        .and_then(|t| t.f_expand([1, 3, i64::from(size.height), i64::from(size.width)], false))
        .and_then(|t| t.f_contiguous())
        .context("letterbox background")?;
    background
        .f_narrow(2, placement.top, placement.height)
        .and_then(|t| t.f_narrow(3, placement.left, placement.width))
        .and_then(|mut region| region.f_copy_(&scaled))
        .context("letterbox")?;
    background.f_squeeze_dim(0).context("letterbox")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_keeps_aspect_and_centres() {
        let square = FrameSize {
            width: 512,
            height: 512,
        };
        let wide = Placement::new(1920, 1080, square);
        assert_eq!((wide.width, wide.height), (512, 288));
        assert_eq!((wide.left, wide.top), (0, 112));
        let tall = Placement::new(100, 400, square);
        assert_eq!(
            (tall.width, tall.height, tall.left, tall.top),
            (128, 512, 192, 0)
        );
        let same = Placement::new(512, 512, square);
        assert_eq!((same.scale, same.left, same.top), (1.0, 0, 0));
        let sliver = Placement::new(1, 4000, square);
        assert_eq!((sliver.width, sliver.height), (1, 512));
    }

    #[test]
    fn letterbox_of_same_size_is_the_source_exactly() {
        let source = Tensor::rand([3, 64, 64], (Kind::Float, Device::Cpu));
        let size = FrameSize {
            width: 64,
            height: 64,
        };
        let placement = Placement::new(64, 64, size);
        let framed = letterbox(&source, &placement, size).unwrap();
        assert!(framed.equal(&source));
    }

    #[test]
    fn bars_are_neutral_and_content_is_in_range() {
        let source = Tensor::ones([3, 10, 40], (Kind::Float, Device::Cpu));
        let size = FrameSize {
            width: 64,
            height: 64,
        };
        let placement = Placement::new(40, 10, size);
        let framed = letterbox(&source, &placement, size).unwrap();
        let grey = f64::from(NEUTRAL_BACKGROUND[0]) / 255.0;
        assert!((framed.double_value(&[0, 0, 0]) - grey).abs() < 1e-6);
        assert!((framed.double_value(&[1, 32, 32]) - 1.0).abs() < 1e-6);
        assert!(framed.max().double_value(&[]) <= 1.0);
    }
}
