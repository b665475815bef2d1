//! Prints what face analysis finds on a portrait as one JSON object: the face box
//! (the detector's, or the one given), the 478 mesh points as `[x, y, z]` in image pixels
//! (pixel centres at integers; z is depth on the same scale, smaller towards the camera),
//! and each eye's openness and iris centre. With `--draw OUT.png` it also draws the mesh.
//!
//! cargo run --release --example face_landmarks -- IMAGE [--face-box x,y,w,h] [--draw OUT.png]

use std::process::ExitCode;

use gstvasafacegen::face::{self, FaceBox, FaceSource};
use gstvasafacegen::portrait::Portrait;
use serde_json::json;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("face_landmarks: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let mut image = None;
    let mut given = None;
    let mut draw = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--face-box" => {
                let text = args.next().ok_or("--face-box needs x,y,w,h")?;
                given = Some(text.parse::<FaceBox>().map_err(|e| e.to_string())?);
            }
            "--draw" => draw = Some(args.next().ok_or("--draw needs a file name")?),
            _ if image.is_none() && !arg.starts_with("--") => image = Some(arg),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    let image = image.ok_or("usage: face_landmarks IMAGE [--face-box x,y,w,h] [--draw OUT.png]")?;
    let portrait = Portrait::load(image.as_ref()).map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let analysis = face::analyze(&portrait, given).map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    let mesh = &analysis.mesh;
    let (openness_left, openness_right) = mesh.eye_openness();
    let (iris_left, iris_right) = mesh.iris_centres();
    let (face_box, score) = match analysis.source {
        FaceSource::Detected { score, .. } => {
            let (x, y, w, h) = mesh_detection_box(&analysis);
            ([x, y, w, h], Some(score))
        }
        FaceSource::Given => {
            let b = given.expect("given");
            ([b.x, b.y, b.width, b.height], None)
        }
    };
    let round = |v: f32| (f64::from(v) * 100.0).round() / 100.0;
    let output = json!({
        "image": image,
        "width": portrait.width,
        "height": portrait.height,
        "source": if score.is_some() { "detected" } else { "given" },
        "detection_score": score,
        "face_box": face_box.map(round),
        "points": mesh.points.iter().map(|p| p.map(round)).collect::<Vec<_>>(),
        "eyes": {
            "left": { "openness": round(openness_left), "iris": [round(iris_left.0), round(iris_left.1)] },
            "right": { "openness": round(openness_right), "iris": [round(iris_right.0), round(iris_right.1)] },
        },
        "presence": round(mesh.presence),
        "seconds": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
    });
    println!("{output}");
    if let Some(path) = draw {
        let mut picture =
            image::RgbImage::from_raw(portrait.width, portrait.height, portrait.rgb.clone())
                .ok_or("bad portrait buffer")?;
        let radius = (analysis.layout.inter_ocular() / 40.0).clamp(1.0, 6.0) as i32;
        for (i, p) in mesh.points.iter().enumerate() {
            let colour = if i >= face::mesh::LEFT_IRIS {
                [255, 40, 40]
            } else {
                [60, 255, 90]
            };
            let r = if i >= face::mesh::LEFT_IRIS {
                radius + 1
            } else {
                radius
            };
            for dy in -r / 2..=r / 2 {
                for dx in -r / 2..=r / 2 {
                    let (x, y) = (p[0].round() as i32 + dx, p[1].round() as i32 + dy);
                    if x >= 0
                        && y >= 0
                        && (x as u32) < picture.width()
                        && (y as u32) < picture.height()
                    {
                        picture.put_pixel(x as u32, y as u32, image::Rgb(colour));
                    }
                }
            }
        }
        picture
            .save(&path)
            .map_err(|e| format!("cannot write {path}: {e}"))?;
    }
    Ok(())
}

/// The detector's box for the face that was meshed.
fn mesh_detection_box(analysis: &face::FaceAnalysis) -> (f32, f32, f32, f32) {
    let b = analysis
        .detection
        .expect("a detected face has its detection");
    (b.x, b.y, b.width, b.height)
}
