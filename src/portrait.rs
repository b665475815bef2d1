//! Loading the source portrait: PNG, JPEG or WebP, any size, EXIF orientation applied,
//! transparency composited over a neutral background, always 8-bit RGB in the end.

use std::fmt;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

/// The colour transparent pixels of the portrait become, and the colour of the bars when
/// the portrait's aspect ratio differs from the frame's: a mid grey, which neither
/// darkens nor brightens a cut-out portrait.
/// The largest portrait accepted, in pixels: more than any camera's photo (a 61 MP full
/// frame, a 100 MP medium format), far less than what a crafted header can declare.
pub const MAX_PIXELS: u64 = 100_000_000;
/// What the decoder may allocate: a 100 MP image in RGBA, with room to spare.
const MAX_DECODE_BYTES: u64 = 1 << 30;

pub const NEUTRAL_BACKGROUND: [u8; 3] = [128, 128, 128];

/// Formats the loader accepts, as the error message names them.
const SUPPORTED: &str = "PNG, JPEG or WebP";

/// A decoded portrait, upright, in 8-bit RGB.
#[derive(Clone)]
pub struct Portrait {
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    /// Row-major RGB, `width * height * 3` bytes.
    pub rgb: Vec<u8>,
    /// Whether the file had an alpha channel (now composited away).
    pub had_alpha: bool,
    /// Whether the file was grayscale (now expanded to RGB).
    pub was_grayscale: bool,
}

impl fmt::Debug for Portrait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Portrait")
            .field("path", &self.path)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("had_alpha", &self.had_alpha)
            .field("was_grayscale", &self.was_grayscale)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PortraitError {
    #[error("portrait \"{}\" does not exist; set image= to the path of a PNG, JPEG or WebP file", .0.display())]
    NotFound(PathBuf),
    #[error("portrait \"{}\" cannot be read: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("portrait \"{}\" is not an image in a supported format ({SUPPORTED}){detail}", path.display())]
    NotAnImage { path: PathBuf, detail: String },
    #[error("portrait \"{}\" is damaged or truncated ({format}): {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        format: String,
        reason: String,
    },
    #[error("portrait \"{}\" is too large to load: {reason}", path.display())]
    TooLarge { path: PathBuf, reason: String },
}

impl From<PortraitError> for crate::core::Error {
    fn from(err: PortraitError) -> Self {
        use crate::core::PortraitProblem;
        let problem = match &err {
            PortraitError::NotFound(_) => PortraitProblem::NotFound,
            PortraitError::Unreadable { .. } => PortraitProblem::Unreadable,
            _ => PortraitProblem::Format,
        };
        Self::Portrait {
            problem,
            source: Box::new(err),
        }
    }
}

impl Portrait {
    /// Decodes the file at `path`. Every failure names the file and what is wrong with it.
    pub fn load(path: &Path) -> Result<Self, PortraitError> {
        let unreadable = |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::NotFound {
                PortraitError::NotFound(path.to_owned())
            } else {
                PortraitError::Unreadable {
                    path: path.to_owned(),
                    source,
                }
            }
        };
        if path.is_dir() {
            return Err(PortraitError::Unreadable {
                path: path.to_owned(),
                source: std::io::Error::other("it is a directory"),
            });
        }
        let bytes = std::fs::read(path).map_err(unreadable)?;
        // The content decides the format, never the file name: a text file called
        // face.png is "not an image", not a "damaged PNG".
        let format = match image::guess_format(&bytes) {
            Ok(format @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP)) => format,
            Ok(other) => {
                return Err(PortraitError::NotAnImage {
                    path: path.to_owned(),
                    detail: format!(": it is {other:?}"),
                });
            }
            Err(_) => {
                return Err(PortraitError::NotAnImage {
                    path: path.to_owned(),
                    detail: String::new(),
                });
            }
        };
        let corrupt = |reason: String| PortraitError::Corrupt {
            path: path.to_owned(),
            format: format!("{format:?}"),
            reason,
        };
        // The JPEG decoder fills a cut-off file with grey instead of failing.
        if format == ImageFormat::Jpeg && !jpeg_is_complete(&bytes) {
            return Err(corrupt(
                "the file ends before the end-of-image marker".to_owned(),
            ));
        }
        let mut reader = ImageReader::new(std::io::Cursor::new(&bytes));
        reader.set_format(format);
        let decode_error = |err: image::ImageError| match err {
            image::ImageError::IoError(source) => corrupt(format!("it is cut short ({source})")),
            image::ImageError::Limits(limit) => PortraitError::TooLarge {
                path: path.to_owned(),
                reason: limit.to_string(),
            },
            image::ImageError::Unsupported(unsupported) => PortraitError::NotAnImage {
                path: path.to_owned(),
                detail: format!(": {unsupported}"),
            },
            other => corrupt(other.to_string()),
        };
        // A few kilobytes can declare a gigapixel image (a decompression bomb): the size
        // the header declares is checked before any pixel is decoded, and the decoder's
        // own allocation limit backs that up.
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(MAX_DECODE_BYTES);
        reader.limits(limits);
        let mut decoder = reader.into_decoder().map_err(decode_error)?;
        let (declared_width, declared_height) = decoder.dimensions();
        if u64::from(declared_width) * u64::from(declared_height) > MAX_PIXELS {
            return Err(PortraitError::TooLarge {
                path: path.to_owned(),
                reason: format!(
                    "it declares {declared_width}x{declared_height} pixels ({:.0} megapixels); \
                     portraits up to {} megapixels are accepted",
                    (f64::from(declared_width) * f64::from(declared_height)) / 1e6,
                    MAX_PIXELS / 1_000_000
                ),
            });
        }
        // A missing or unparsable EXIF block is not an error: the image is then upright.
        let orientation = decoder
            .orientation()
            .unwrap_or(image::metadata::Orientation::NoTransforms);
        let mut image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
        image.apply_orientation(orientation);
        if image.width() == 0 || image.height() == 0 {
            return Err(corrupt("the image has no pixels".to_owned()));
        }
        let had_alpha = image.color().has_alpha();
        let was_grayscale = !image.color().has_color();
        Ok(Self::from_rgba(
            path.to_owned(),
            &image.into_rgba8(),
            had_alpha,
            was_grayscale,
        ))
    }

    /// Builds a portrait from pixels already in memory (tests, tools), compositing any
    /// transparency like [`Portrait::load`] does.
    pub fn from_image(path: PathBuf, image: &DynamicImage) -> Self {
        Self::from_rgba(
            path,
            &image.to_rgba8(),
            image.color().has_alpha(),
            !image.color().has_color(),
        )
    }

    fn from_rgba(
        path: PathBuf,
        rgba: &image::RgbaImage,
        had_alpha: bool,
        was_grayscale: bool,
    ) -> Self {
        let (width, height) = rgba.dimensions();
        let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
        for pixel in rgba.pixels() {
            let [r, g, b, a] = pixel.0;
            let alpha = u32::from(a);
            for (channel, background) in [r, g, b].into_iter().zip(NEUTRAL_BACKGROUND) {
                let mixed = u32::from(channel) * alpha + u32::from(background) * (255 - alpha);
                rgb.push(((mixed + 127) / 255) as u8);
            }
        }
        Self {
            path,
            width,
            height,
            rgb,
            had_alpha,
            was_grayscale,
        }
    }

    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}

/// Whether a JPEG stream runs to its end-of-image marker: walks the marker segments
/// and the entropy-coded scans (which may contain byte-stuffed 0xFF00 and restart
/// markers) instead of searching for 0xFFD9, which the EXIF thumbnail also contains.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    const SOI: u8 = 0xD8;
    const EOI: u8 = 0xD9;
    const SOS: u8 = 0xDA;
    if bytes.len() < 4 || bytes[0] != 0xFF || bytes[1] != SOI {
        return false;
    }
    let mut at = 2;
    loop {
        // Fill bytes (0xFF) may precede a marker.
        while at < bytes.len() && bytes[at] == 0xFF && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        if at + 1 >= bytes.len() || bytes[at] != 0xFF {
            return false;
        }
        let marker = bytes[at + 1];
        at += 2;
        match marker {
            EOI => return true,
            // Markers without a length field.
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        if at + 2 > bytes.len() {
            return false;
        }
        let length = usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
        if length < 2 {
            return false;
        }
        at += length;
        if at > bytes.len() {
            return false;
        }
        if marker == SOS {
            // Skip entropy-coded data up to the next real marker.
            loop {
                if at + 1 >= bytes.len() {
                    return false;
                }
                if bytes[at] == 0xFF {
                    let next = bytes[at + 1];
                    if next != 0x00 && !(0xD0..=0xD7).contains(&next) && next != 0xFF {
                        break;
                    }
                    if next == 0xFF {
                        at += 1;
                        continue;
                    }
                    at += 2;
                } else {
                    at += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transparent_pixels_become_the_neutral_background() {
        let mut img = image::RgbaImage::new(2, 1);
        img.put_pixel(0, 0, image::Rgba([255, 0, 0, 0]));
        img.put_pixel(1, 0, image::Rgba([255, 0, 0, 255]));
        let portrait = Portrait::from_image("mem".into(), &DynamicImage::ImageRgba8(img));
        assert_eq!(portrait.pixel(0, 0), NEUTRAL_BACKGROUND);
        assert_eq!(portrait.pixel(1, 0), [255, 0, 0]);
        assert!(portrait.had_alpha);
    }

    #[test]
    fn jpeg_completeness_sees_cuts_anywhere() {
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, 90])
        }));
        let mut bytes = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Jpeg)
            .unwrap();
        assert!(jpeg_is_complete(&bytes));
        // Trailing data after EOI (some cameras append some) is fine.
        let mut trailing = bytes.clone();
        trailing.extend_from_slice(b"vendor data");
        assert!(jpeg_is_complete(&trailing));
        for cut in [3, 20, bytes.len() / 2, bytes.len() - 2, bytes.len() - 1] {
            assert!(!jpeg_is_complete(&bytes[..cut]), "cut at {cut}");
        }
    }
}
