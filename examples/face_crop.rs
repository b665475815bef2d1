//! Writes the window around the face that a neural model (`model=<bundle>`) sees, at
//! the networks' input size: for choosing `crop-scale` and `crop-offset-y`.
//!
//! cargo run --release --example face_crop -- portrait.jpg crop.png [scale [offset-y]]

use std::process::ExitCode;

use gstvasafacegen::face;
use gstvasafacegen::portrait::Portrait;
use gstvasafacegen::render::crop::{CropSettings, CropWindow};
use gstvasafacegen::render::fit;
use gstvasafacegen::render::liveportrait::INPUT_SIZE;
use tch::{Device, Kind};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: face_crop PORTRAIT OUT.png [scale [offset-y]]");
        return ExitCode::FAILURE;
    }
    let result = (|| -> Result<(), String> {
        let number = |i: usize, default: f32| -> Result<f32, String> {
            args.get(i).map_or(Ok(default), |text| {
                text.parse().map_err(|_| format!("not a number: {text}"))
            })
        };
        let defaults = CropSettings::default();
        let settings = CropSettings {
            scale: number(3, defaults.scale)?,
            offset_y: number(4, defaults.offset_y)?,
        };
        let portrait = Portrait::load(args[1].as_ref()).map_err(|e| e.to_string())?;
        let analysis = face::analyze(&portrait, None).map_err(|e| e.to_string())?;
        let window = CropWindow::around(&analysis.layout, &settings);
        eprintln!("{window:?}");
        let image = fit::portrait_tensor(&portrait, Device::Cpu).map_err(|e| e.to_string())?;
        let crop = window
            .sample(&image, INPUT_SIZE)
            .map_err(|e| e.to_string())?;
        let bytes = (crop.squeeze_dim(0).permute([1, 2, 0]) * 255.0)
            .round()
            .clamp(0.0, 255.0)
            .to_kind(Kind::Uint8)
            .contiguous();
        let count = (INPUT_SIZE * INPUT_SIZE * 3) as usize;
        let mut rgb = vec![0u8; count];
        bytes.copy_data_u8(&mut rgb, count);
        let side = INPUT_SIZE as u32;
        image::RgbImage::from_raw(side, side, rgb)
            .ok_or("bad crop buffer")?
            .save(&args[2])
            .map_err(|e| format!("{}: {e}", args[2]))
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{err}");
            ExitCode::FAILURE
        }
    }
}
