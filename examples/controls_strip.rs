//! Renders a portrait with the builtin renderer under each face control (the eight
//! emotions, gaze to four sides, the two ends of head distance), side by side, labelled
//! by position: the strip README shows (docs/controls.png).
//!
//! cargo run --release --example controls_strip -- portrait.png strip.png [zoom]

use gstvasafacegen::core::{Emotion, FaceControls, FaceMotion, FrameSize, Motion};
use gstvasafacegen::portrait::Portrait;
use gstvasafacegen::render::pack::to_rgb_image;
use gstvasafacegen::render::warp::WarpRenderer;
use gstvasafacegen::render::{Renderer, SourceHints};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let (portrait, out, zoom) = match &args[..] {
        [_, portrait, out] => (portrait, out, 1),
        [_, portrait, out, zoom] => (portrait, out, zoom.parse().map_err(|_| "zoom: 1, 2, ..")?),
        _ => return Err("usage: controls_strip PORTRAIT OUT.png [ZOOM]".into()),
    };
    let zoom: u32 = zoom;
    let portrait = Portrait::load(portrait.as_ref()).map_err(|e| e.to_string())?;
    let mut renderer = WarpRenderer::new(tch::Device::Cpu);
    let source = renderer
        .source_preparer()
        .prepare(portrait, &SourceHints::default())
        .map_err(|e| e.to_string())?;
    let size = FrameSize {
        width: 512,
        height: 512,
    };
    let rest = renderer
        .rig(&source, size)
        .map_err(|e| e.to_string())?
        .rest_mouth_open();
    let mut cells: Vec<(String, FaceControls)> = Emotion::ALL
        .iter()
        .map(|&emotion| {
            let mut controls = FaceControls::default();
            controls.emotion[emotion.index()] = 1.0;
            (emotion.name().to_owned(), controls)
        })
        .collect();
    for (name, gaze) in [
        ("gaze 25,0", (25.0, 0.0)),
        ("gaze -25,0", (-25.0, 0.0)),
        ("gaze 0,20", (0.0, 20.0)),
        ("gaze 0,-20", (0.0, -20.0)),
    ] {
        cells.push((
            name.into(),
            FaceControls {
                gaze,
                ..FaceControls::default()
            },
        ));
    }
    for distance in [0.8, 1.25] {
        cells.push((
            format!("distance {distance}"),
            FaceControls {
                distance,
                ..FaceControls::default()
            },
        ));
    }
    let layout = source.face.layout;
    let half = (layout.inter_ocular() * 1.4) as i64;
    let (cx, cy) = (
        ((layout.left_eye.x + layout.right_eye.x) / 2.0) as i64,
        (layout.mouth_centre.y - layout.inter_ocular() * 0.45) as i64,
    );
    let side = (2 * half) as u32;
    let cols = 7u32;
    let rows = (cells.len() as u32).div_ceil(cols);
    let mut sheet = image::RgbImage::new(cols * side * zoom, rows * side * zoom);
    for (i, (name, controls)) in cells.iter().enumerate() {
        let motion = FaceMotion {
            mouth_open: rest,
            controls: *controls,
            ..FaceMotion::default()
        };
        let frame = renderer
            .render(&Motion::Face(motion), &source, size)
            .map_err(|e| e.to_string())?;
        let img = to_rgb_image(&frame).map_err(|e| e.to_string())?;
        let cell = side * zoom;
        let (ox, oy) = ((i as u32 % cols) * cell, (i as u32 / cols) * cell);
        for y in 0..cell {
            for x in 0..cell {
                let sx = (cx - half + i64::from(x / zoom)).clamp(0, 511) as u32;
                let sy = (cy - half + i64::from(y / zoom)).clamp(0, 511) as u32;
                sheet.put_pixel(ox + x, oy + y, *img.get_pixel(sx, sy));
            }
        }
        eprintln!("cell {}: {name}", i + 1);
    }
    sheet.save(out).map_err(|e| e.to_string())
}
