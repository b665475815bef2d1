//! Renders a portrait in a set of poses side by side, to look at the renderer.
//!
//! cargo run --release --example render_poses -- portrait.png sheet.png [zoom]

use gstvasafacegen::core::{FaceMotion, FrameSize, Motion};
use gstvasafacegen::portrait::Portrait;
use gstvasafacegen::render::pack::to_rgb_image;
use gstvasafacegen::render::warp::WarpRenderer;
use gstvasafacegen::render::{Renderer, SourceHints};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let portrait = Portrait::load(args[1].as_ref()).expect("portrait");
    let mut engine = WarpRenderer::new(tch::Device::Cpu);
    let source = engine
        .source_preparer()
        .prepare(portrait, &SourceHints::default())
        .expect("face");
    let size = FrameSize {
        width: 512,
        height: 512,
    };
    let rest = engine.rig(&source, size).unwrap().rest_mouth_open();
    let layout = source.face.layout;
    let poses: Vec<(&str, FaceMotion)> = vec![
        (
            "photo (rest)",
            FaceMotion {
                mouth_open: rest,
                ..FaceMotion::default()
            },
        ),
        ("closed", FaceMotion::default()),
        (
            "open 0.4",
            FaceMotion {
                mouth_open: 0.4,
                ..FaceMotion::default()
            },
        ),
        (
            "open 0.7",
            FaceMotion {
                mouth_open: 0.7,
                ..FaceMotion::default()
            },
        ),
        (
            "open 1.0",
            FaceMotion {
                mouth_open: 1.0,
                ..FaceMotion::default()
            },
        ),
        (
            "spread",
            FaceMotion {
                mouth_open: 0.3,
                mouth_width: 1.0,
                ..FaceMotion::default()
            },
        ),
        (
            "round",
            FaceMotion {
                mouth_open: 0.35,
                mouth_round: 1.0,
                ..FaceMotion::default()
            },
        ),
        (
            "blink 0.5",
            FaceMotion {
                mouth_open: rest,
                blink_left: 0.5,
                blink_right: 0.5,
                ..FaceMotion::default()
            },
        ),
        (
            "blink 1",
            FaceMotion {
                mouth_open: rest,
                blink_left: 1.0,
                blink_right: 1.0,
                ..FaceMotion::default()
            },
        ),
        (
            "brows",
            FaceMotion {
                mouth_open: rest,
                brow_raise: 1.0,
                ..FaceMotion::default()
            },
        ),
        (
            "yaw +",
            FaceMotion {
                mouth_open: rest,
                yaw: 0.1,
                ..FaceMotion::default()
            },
        ),
        (
            "pitch +",
            FaceMotion {
                mouth_open: rest,
                pitch: 0.1,
                ..FaceMotion::default()
            },
        ),
        (
            "roll +",
            FaceMotion {
                mouth_open: rest,
                roll: 0.08,
                ..FaceMotion::default()
            },
        ),
        (
            "shift",
            FaceMotion {
                mouth_open: rest,
                shift_x: 0.08,
                shift_y: 0.05,
                ..FaceMotion::default()
            },
        ),
        (
            "talk mix",
            FaceMotion {
                mouth_open: 0.6,
                blink_right: 1.0,
                yaw: -0.06,
                roll: -0.05,
                brow_raise: 0.5,
                ..FaceMotion::default()
            },
        ),
    ];
    let zoom: u32 = args.get(3).and_then(|z| z.parse().ok()).unwrap_or(3);
    // Crop around the face.
    let c = layout.mouth_centre;
    let half = (layout.inter_ocular() * 1.7) as i64;
    let (cx, cy) = (c.x as i64, (c.y - layout.inter_ocular() * 0.6) as i64);
    let side = (2 * half) as u32;
    let cols = 5u32;
    let rows = (poses.len() as u32).div_ceil(cols);
    let mut sheet = image::RgbImage::new(cols * side * zoom, rows * side * zoom);
    for (i, (name, motion)) in poses.iter().enumerate() {
        let t0 = std::time::Instant::now();
        let frame = engine
            .render(&Motion::Face(*motion), &source, size)
            .expect("render");
        eprintln!("{name}: {:?}", t0.elapsed());
        let img = to_rgb_image(&frame).expect("a 512x512 frame");
        let (ox, oy) = (
            (i as u32 % cols) * side * zoom,
            (i as u32 / cols) * side * zoom,
        );
        for y in 0..side * zoom {
            for x in 0..side * zoom {
                let sx = (cx - half + (x / zoom) as i64).clamp(0, 511) as u32;
                let sy = (cy - half + (y / zoom) as i64).clamp(0, 511) as u32;
                sheet.put_pixel(ox + x, oy + y, *img.get_pixel(sx, sy));
            }
        }
    }
    sheet.save(&args[2]).unwrap();
}
