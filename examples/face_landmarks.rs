//! Draws what face analysis finds on a portrait: eyes (green), mouth corners (magenta),
//! lip line centre (cyan), chin (yellow).
//!
//! cargo run --release --example face_landmarks -- portrait.jpg marked.png [x,y,w,h]

use std::process::ExitCode;

use gstvasafacegen::face::{self, FaceBox, Point};
use gstvasafacegen::portrait::Portrait;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: face_landmarks PORTRAIT OUT.png [x,y,w,h]");
        return ExitCode::FAILURE;
    }
    let result = (|| -> Result<(), String> {
        let portrait = Portrait::load(args[1].as_ref()).map_err(|e| e.to_string())?;
        let given = args
            .get(3)
            .map(|b| b.parse::<FaceBox>())
            .transpose()
            .map_err(|e| e.to_string())?;
        let started = std::time::Instant::now();
        let analysis = face::analyze(&portrait, given).map_err(|e| e.to_string())?;
        eprintln!("{:?} in {:?}", analysis, started.elapsed());
        let mut image = image::RgbImage::from_raw(portrait.width, portrait.height, portrait.rgb)
            .ok_or("bad portrait buffer")?;
        let layout = analysis.layout;
        let size = (layout.inter_ocular() / 12.0).max(2.0) as i32;
        let mut mark = |p: Point, colour: [u8; 3]| {
            for d in -size..=size {
                for (x, y) in [(p.x as i32 + d, p.y as i32), (p.x as i32, p.y as i32 + d)] {
                    if x >= 0 && y >= 0 && (x as u32) < image.width() && (y as u32) < image.height()
                    {
                        image.put_pixel(x as u32, y as u32, image::Rgb(colour));
                    }
                }
            }
        };
        mark(layout.left_eye, [0, 255, 0]);
        mark(layout.right_eye, [0, 255, 0]);
        mark(layout.mouth_left, [255, 0, 255]);
        mark(layout.mouth_right, [255, 0, 255]);
        mark(layout.mouth_centre, [0, 255, 255]);
        mark(layout.chin, [255, 255, 0]);
        image.save(&args[2]).map_err(|e| e.to_string())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("face_landmarks: {message}");
            ExitCode::FAILURE
        }
    }
}
