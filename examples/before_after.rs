//! Two renderings of the same speech side by side, for README's before/after strip: the
//! frames where the mouth opens widest in the second set (read by the face mesh, at
//! least five frames apart), cropped around the lower face, the first set's frame above
//! the second's.
//!
//! cargo run --release --example before_after -- BEFORE_DIR AFTER_DIR OUT.png [COUNT]
//!
//! Each folder holds the frames of one rendering as PNGs with the same names (e.g. from
//! `... ! vasafacegen ! videoconvert ! pngenc ! multifilesink location=DIR/%04d.png`).

use gstvasafacegen::face::reading::read;
use gstvasafacegen::portrait::Portrait;
use image::{GenericImage, RgbImage};
use std::path::{Path, PathBuf};

fn frames(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "png"))
        .collect();
    paths.sort();
    Ok(paths)
}

fn load(path: &Path) -> Result<RgbImage, String> {
    Ok(image::open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .to_rgb8())
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let (before, after, out, count) = match &args[..] {
        [_, b, a, o] => (b, a, o, 5),
        [_, b, a, o, n] => (b, a, o, n.parse().map_err(|_| "COUNT: a number")?),
        _ => return Err("usage: before_after BEFORE_DIR AFTER_DIR OUT.png [COUNT]".into()),
    };
    let after_frames = frames(Path::new(after))?;
    if after_frames.is_empty() {
        return Err(format!("{after}: no PNG frames"));
    }
    // Every after-frame's inner-lip gap, and the lower face's box from the first frame.
    let mut gaps = Vec::new();
    let mut crop = None;
    for path in &after_frames {
        let frame = load(path)?;
        let portrait = Portrait::from_image("frame".into(), &image::DynamicImage::from(frame));
        let face = gstvasafacegen::face::analyze(&portrait, None).map_err(|e| e.to_string())?;
        gaps.push(read(&face.mesh).lip_gap);
        if crop.is_none() {
            let (left, top, width, height) = face.mesh.oval_bounds();
            // The lower two thirds of the face oval, a little wider than the cheeks.
            let x = (left - 0.1 * width).max(0.0) as u32;
            let y = (top + 0.3 * height).max(0.0) as u32;
            let side = (1.2 * width) as u32;
            crop = Some((x, y, side, (0.85 * height) as u32));
        }
    }
    let mut order: Vec<usize> = (0..gaps.len()).collect();
    order.sort_by(|&a, &b| gaps[b].total_cmp(&gaps[a]));
    let mut chosen: Vec<usize> = Vec::new();
    for index in order {
        if chosen.len() < count && chosen.iter().all(|&c| c.abs_diff(index) >= 5) {
            chosen.push(index);
        }
    }
    chosen.sort();
    let (x, y, width, height) = crop.expect("at least one frame");
    // The portrait's mouth is a few dozen pixels across: enlarged to be seen.
    const ZOOM: u32 = 3;
    let (cell_width, cell_height) = (width * ZOOM, height * ZOOM);
    let mut strip = RgbImage::from_pixel(
        cell_width * chosen.len() as u32 + 4 * (chosen.len() as u32 - 1),
        2 * cell_height + 4,
        image::Rgb([255, 255, 255]),
    );
    for (column, &index) in chosen.iter().enumerate() {
        let name = after_frames[index].file_name().expect("a file");
        for (row, dir) in [before, after].iter().enumerate() {
            let frame = load(&Path::new(dir).join(name))?;
            let width = width.min(frame.width() - x);
            let height = height.min(frame.height() - y);
            let cell = image::imageops::crop_imm(&frame, x, y, width, height).to_image();
            let cell = image::imageops::resize(
                &cell,
                width * ZOOM,
                height * ZOOM,
                image::imageops::FilterType::CatmullRom,
            );
            strip
                .copy_from(
                    &cell,
                    column as u32 * (cell_width + 4),
                    row as u32 * (cell_height + 4),
                )
                .map_err(|e| e.to_string())?;
        }
        println!("{}: lip gap {:.3} IOD", name.to_string_lossy(), gaps[index]);
    }
    strip.save(out).map_err(|e| format!("{out}: {e}"))?;
    Ok(())
}
