//! Writing a rendered frame into a video buffer's bytes, in the negotiated layout.

use tch::{Device, Kind, Tensor};

use crate::engine::{EngineError, TensorContext};

/// The packed RGB layouts the element can output. Mirrors the src pad's caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelLayout {
    Rgba,
    Bgra,
    Rgbx,
    Bgrx,
    Rgb,
    Bgr,
}

impl PixelLayout {
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            Self::Rgb | Self::Bgr => 3,
            _ => 4,
        }
    }

    /// Byte offsets of red, green and blue inside a pixel.
    fn rgb_offsets(self) -> [i64; 3] {
        match self {
            Self::Rgba | Self::Rgbx | Self::Rgb => [0, 1, 2],
            Self::Bgra | Self::Bgrx | Self::Bgr => [2, 1, 0],
        }
    }
}

/// Quantises `frame` (`(3, H, W)` float in `[0, 1]`, any device) to 8 bits and writes it
/// into `dst`, whose rows are `stride` bytes apart. The fourth byte of 4-byte layouts
/// becomes 255 (opaque), also for the x layouts, so that nothing undefined leaves the
/// element.
pub fn pack_frame(
    frame: &Tensor,
    layout: PixelLayout,
    dst: &mut [u8],
    stride: usize,
) -> Result<(), EngineError> {
    let (channels, height, width) = frame.size3().context("frame shape")?;
    if channels != 3 {
        return Err(EngineError::Tensor {
            context: "packing a frame".into(),
            source: tch::TchError::Shape(format!("expected 3 channels, got {channels}")),
        });
    }
    let bpp = layout.bytes_per_pixel();
    let row = width as usize * bpp;
    let needed = if height == 0 {
        0
    } else {
        stride * (height as usize - 1) + row
    };
    if stride < row || dst.len() < needed {
        return Err(EngineError::Tensor {
            context: "packing a frame".into(),
            source: tch::TchError::Shape(format!(
                "buffer of {} bytes with stride {stride} cannot hold {width}x{height} at {bpp} bytes per pixel",
                dst.len()
            )),
        });
    }
    // Quantise on the frame's device (in place after the first op: one allocation), so a
    // GPU frame crosses the bus as bytes. On the CPU the float-to-byte cast happens in
    // the copy into the buffer below, saving a pass.
    let mut scaled = frame.f_mul_scalar(255.0).context("quantising the frame")?;
    scaled
        .f_add_scalar_(0.5)
        .and_then(|mut t| t.f_clamp_(0.0, 255.0))
        .context("quantising the frame")
        .map(drop)?;
    let bytes = if scaled.device() == Device::Cpu {
        scaled
    } else {
        scaled
            .f_to_kind(Kind::Uint8)
            .and_then(|t| t.f_to_device(Device::Cpu))
            .context("copying the frame from the GPU")?
    };
    // SAFETY: `dst` outlives `target`, and the size check above guarantees that every
    // element of the (height, width, bpp) view with these strides lies inside `dst`.
    let target = unsafe {
        Tensor::f_from_blob(
            dst.as_mut_ptr(),
            &[height, width, bpp as i64],
            &[stride as i64, bpp as i64, 1],
            Kind::Uint8,
            Device::Cpu,
        )
    }
    .context("wrapping the output buffer")?;
    for (channel, offset) in layout.rgb_offsets().into_iter().enumerate() {
        target
            .f_select(2, offset)
            .and_then(|mut plane| plane.f_copy_(&bytes.get(channel as i64)))
            .context("packing the frame")?;
    }
    if bpp == 4 {
        target
            .f_select(2, 3)
            .and_then(|mut alpha| alpha.f_fill_(255))
            .context("packing the frame")
            .map(drop)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_2x1() -> Tensor {
        // pixel 0 = (1.0, 0.5, 0.0), pixel 1 = (0.0, 0.25, 1.0)
        Tensor::from_slice(&[1.0f32, 0.0, 0.5, 0.25, 0.0, 1.0]).view([3, 1, 2])
    }

    #[test]
    fn packs_every_layout_with_row_padding() {
        let cases = [
            (PixelLayout::Rgba, vec![255, 128, 0, 255, 0, 64, 255, 255]),
            (PixelLayout::Bgrx, vec![0, 128, 255, 255, 255, 64, 0, 255]),
            (PixelLayout::Rgb, vec![255, 128, 0, 0, 64, 255]),
            (PixelLayout::Bgr, vec![0, 128, 255, 255, 64, 0]),
        ];
        for (layout, expected) in cases {
            let stride = expected.len() + 3;
            let mut dst = vec![7u8; stride];
            pack_frame(&frame_2x1(), layout, &mut dst, stride).unwrap();
            assert_eq!(&dst[..expected.len()], &expected[..], "{layout:?}");
            assert!(
                dst[expected.len()..].iter().all(|&b| b == 7),
                "padding touched"
            );
        }
    }

    #[test]
    fn refuses_a_buffer_too_small() {
        let mut dst = vec![0u8; 7];
        let err = pack_frame(&frame_2x1(), PixelLayout::Rgba, &mut dst, 8).unwrap_err();
        assert!(err.to_string().contains("cannot hold"), "{err}");
    }
}
