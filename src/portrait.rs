//! Loading the source portrait: PNG, JPEG or WebP, any size, EXIF orientation applied,
//! transparency composited over a neutral background, always 8-bit RGB in the end.

use std::fmt;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

/// The colour transparent pixels of the portrait become, and the colour of the bars when
/// the portrait's aspect ratio differs from the frame's: a mid grey, which neither
/// darkens nor brightens a cut-out portrait.
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
        let reader = ImageReader::open(path)
            .map_err(unreadable)?
            .with_guessed_format()
            .map_err(unreadable)?;
        let format = match reader.format() {
            Some(format @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP)) => format,
            Some(other) => {
                return Err(PortraitError::NotAnImage {
                    path: path.to_owned(),
                    detail: format!(": it is {other:?}"),
                });
            }
            None => {
                return Err(PortraitError::NotAnImage {
                    path: path.to_owned(),
                    detail: String::new(),
                });
            }
        };
        let decode_error = |err: image::ImageError| match err {
            image::ImageError::IoError(source) => unreadable(source),
            image::ImageError::Limits(limit) => PortraitError::TooLarge {
                path: path.to_owned(),
                reason: limit.to_string(),
            },
            image::ImageError::Unsupported(unsupported) => PortraitError::NotAnImage {
                path: path.to_owned(),
                detail: format!(": {unsupported}"),
            },
            other => PortraitError::Corrupt {
                path: path.to_owned(),
                format: format!("{format:?}"),
                reason: other.to_string(),
            },
        };
        let mut decoder = reader.into_decoder().map_err(decode_error)?;
        // A missing or unparsable EXIF block is not an error: the image is then upright.
        let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
        let mut image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
        image.apply_orientation(orientation);
        if image.width() == 0 || image.height() == 0 {
            return Err(PortraitError::Corrupt {
                path: path.to_owned(),
                format: format!("{format:?}"),
                reason: "the image has no pixels".to_owned(),
            });
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

    fn from_rgba(path: PathBuf, rgba: &image::RgbaImage, had_alpha: bool, was_grayscale: bool) -> Self {
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
}
