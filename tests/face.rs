//! Face analysis on the sample portrait and on transformed copies of it, against
//! landmarks annotated by hand on the original (source pixels).

mod common;

use gstvasafacegen::face::{self, FaceBox, FaceError, FaceLayout, FaceSource, Point};
use gstvasafacegen::portrait::Portrait;
use image::{DynamicImage, Rgba, RgbaImage};

/// Hand annotation of assets/astronaut.png (4x zoom, +-1 px).
const TRUTH: [(f32, f32); 6] = [
    (204.5, 100.0), // left eye (pupil)
    (246.0, 103.0), // right eye
    (202.0, 140.0), // mouth corner, image left
    (244.5, 139.5), // mouth corner, image right
    (223.5, 146.0), // middle of the lip line
    (224.0, 177.5), // chin
];
const NAMES: [&str; 6] = [
    "left eye",
    "right eye",
    "mouth left",
    "mouth right",
    "mouth centre",
    "chin",
];
/// Allowed error, in inter-ocular distances (IOD is 41.5 px in the original).
const TOLERANCE_IOD: f32 = 0.13;

fn astronaut() -> DynamicImage {
    image::open(common::astronaut()).unwrap()
}

fn analyze(image: &DynamicImage) -> Result<face::FaceAnalysis, FaceError> {
    face::analyze(&Portrait::from_image("test".into(), image), None)
}

/// Checks every landmark against the annotation mapped through `transform`.
fn check(layout: &FaceLayout, transform: impl Fn(Point) -> Point, label: &str) {
    let found = layout.map_points(|p| p);
    let iod = {
        let (a, b) = (transform(pt(TRUTH[0])), transform(pt(TRUTH[1])));
        (a.x - b.x).hypot(a.y - b.y)
    };
    let mut report = String::new();
    let mut worst = 0.0f32;
    for (i, (&truth, name)) in TRUTH.iter().zip(NAMES).enumerate() {
        let expected = transform(pt(truth));
        let error = (found[i].x - expected.x).hypot(found[i].y - expected.y) / iod;
        worst = worst.max(error);
        report += &format!(
            "  {name}: found ({:.1}, {:.1}) expected ({:.1}, {:.1}) error {error:.3} IOD\n",
            found[i].x, found[i].y, expected.x, expected.y
        );
    }
    eprintln!("{label}: worst {worst:.3} IOD\n{report}");
    assert!(worst <= TOLERANCE_IOD, "{label}:\n{report}");
}

fn pt((x, y): (f32, f32)) -> Point {
    Point { x, y }
}

/// Rotates about the image centre by `degrees` (positive = clockwise on screen),
/// keeping the canvas; uncovered corners become grey.
fn rotated(image: &DynamicImage, degrees: f32) -> (DynamicImage, impl Fn(Point) -> Point + use<>) {
    let src = image.to_rgba8();
    let (w, h) = src.dimensions();
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let (sin, cos) = degrees.to_radians().sin_cos();
    let out = RgbaImage::from_fn(w, h, |x, y| {
        // Inverse rotation: where in the source does this output pixel come from?
        let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
        let (sx, sy) = (
            cos * dx + sin * dy + cx - 0.5,
            -sin * dx + cos * dy + cy - 0.5,
        );
        if sx < 0.0 || sy < 0.0 || sx >= (w - 1) as f32 || sy >= (h - 1) as f32 {
            return Rgba([128, 128, 128, 255]);
        }
        let (x0, y0) = (sx.floor() as u32, sy.floor() as u32);
        let (ax, ay) = (sx - x0 as f32, sy - y0 as f32);
        let mut px = [0u8; 4];
        for (c, value) in px.iter_mut().enumerate() {
            let v = |x: u32, y: u32| f32::from(src.get_pixel(x, y).0[c]);
            let top = v(x0, y0) * (1.0 - ax) + v(x0 + 1, y0) * ax;
            let bottom = v(x0, y0 + 1) * (1.0 - ax) + v(x0 + 1, y0 + 1) * ax;
            *value = (top * (1.0 - ay) + bottom * ay).round() as u8;
        }
        Rgba(px)
    });
    let forward = move |p: Point| {
        let (dx, dy) = (p.x - cx, p.y - cy);
        Point {
            x: cos * dx - sin * dy + cx,
            y: sin * dx + cos * dy + cy,
        }
    };
    (DynamicImage::ImageRgba8(out), forward)
}

#[test]
fn sample_portrait() {
    let analysis = analyze(&astronaut()).unwrap();
    assert!(matches!(
        analysis.source,
        FaceSource::Detected { faces: 1, .. }
    ));
    check(&analysis.layout, |p| p, "original");
    // The teeth show: the portrait's mouth is open by a few pixels.
    let gap = analysis.layout.mouth_gap;
    assert!((2.0..=8.0).contains(&gap), "mouth gap {gap}");
}

#[test]
fn mirrored() {
    let image = astronaut().fliph();
    let analysis = analyze(&image).unwrap();
    // Mirroring swaps left and right.
    let mirrored = analysis.layout.map_points(|p| p);
    let mut layout = analysis.layout;
    (layout.left_eye, layout.right_eye) = (mirrored[1], mirrored[0]);
    (layout.mouth_left, layout.mouth_right) = (mirrored[3], mirrored[2]);
    check(
        &layout,
        |p| Point {
            x: 512.0 - p.x,
            y: p.y,
        },
        "mirrored",
    );
}

#[test]
fn rotated_by_up_to_15_degrees() {
    for degrees in [-15.0f32, -8.0, 8.0, 15.0] {
        let (image, forward) = rotated(&astronaut(), degrees);
        let analysis = analyze(&image).unwrap_or_else(|e| panic!("{degrees} degrees: {e}"));
        check(
            &analysis.layout,
            &forward,
            &format!("rotated {degrees} degrees"),
        );
        let roll = analysis.layout.roll.to_degrees();
        // The eye line of the original is tilted by about +4 degrees.
        assert!(
            (roll - (degrees + 4.1)).abs() < 4.0,
            "{degrees}: roll {roll}"
        );
    }
}

#[test]
fn scaled_down_and_up() {
    for scale in [0.6f32, 2.0] {
        let size = (512.0 * scale) as u32;
        let image = astronaut().resize_exact(size, size, image::imageops::FilterType::CatmullRom);
        let analysis = analyze(&image).unwrap();
        check(
            &analysis.layout,
            |p| Point {
                x: p.x * scale,
                y: p.y * scale,
            },
            &format!("scaled {scale}"),
        );
    }
}

#[test]
fn small_face_in_a_large_image() {
    let mut canvas = RgbaImage::from_pixel(2400, 1600, Rgba([90, 110, 140, 255]));
    image::imageops::overlay(&mut canvas, &astronaut().to_rgba8(), 1500, 900);
    let analysis = analyze(&DynamicImage::ImageRgba8(canvas)).unwrap();
    check(
        &analysis.layout,
        |p| Point {
            x: p.x + 1500.0,
            y: p.y + 900.0,
        },
        "in a 2400x1600 canvas",
    );
}

#[test]
fn grayscale() {
    let image = DynamicImage::ImageLuma8(astronaut().to_luma8());
    let portrait = Portrait::from_image("gray".into(), &image);
    assert!(portrait.was_grayscale);
    let analysis = face::analyze(&portrait, None).unwrap();
    check(&analysis.layout, |p| p, "grayscale");
}

#[test]
fn rgba_with_transparent_background() {
    let mut rgba = astronaut().to_rgba8();
    // The backdrop right of the face (x > 300, y < 200) becomes transparent.
    for (x, y, pixel) in rgba.enumerate_pixels_mut() {
        if x > 300 && y < 200 {
            pixel.0[3] = 0;
        }
    }
    let analysis = analyze(&DynamicImage::ImageRgba8(rgba)).unwrap();
    check(&analysis.layout, |p| p, "rgba");
}

#[test]
fn several_faces_take_the_largest() {
    let original = astronaut();
    // Both faces large enough for the detector's view of the whole canvas (it sees the
    // canvas at 128x128: faces under about 10 of those pixels are searched in tiles
    // only when the whole view finds none).
    let small = original.resize_exact(400, 400, image::imageops::FilterType::CatmullRom);
    let mut canvas = RgbaImage::from_pixel(940, 560, Rgba([200, 200, 200, 255]));
    image::imageops::overlay(&mut canvas, &small.to_rgba8(), 10, 150);
    image::imageops::overlay(&mut canvas, &original.to_rgba8(), 420, 40);
    let analysis = analyze(&DynamicImage::ImageRgba8(canvas)).unwrap();
    assert!(
        matches!(analysis.source, FaceSource::Detected { faces, .. } if faces >= 2),
        "{:?}",
        analysis.source
    );
    check(
        &analysis.layout,
        |p| Point {
            x: p.x + 420.0,
            y: p.y + 40.0,
        },
        "largest of two",
    );
}

#[test]
fn no_face_is_an_error_that_names_the_file_and_the_way_out() {
    // The lower right of the portrait: suit and helmet, no face.
    let image = astronaut().crop_imm(256, 256, 256, 256);
    let err = face::analyze(&Portrait::from_image("suit.png".into(), &image), None).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("no face found in portrait \"suit.png\""),
        "{message}"
    );
    assert!(message.contains("face-box="), "{message}");
}

#[test]
fn face_box_skips_detection() {
    // A loose hand-drawn box around the face (hairline to chin).
    let given: FaceBox = "172,58,104,128".parse().unwrap();
    let analysis = face::analyze(
        &Portrait::from_image("given".into(), &astronaut()),
        Some(given),
    )
    .unwrap();
    assert_eq!(analysis.source, FaceSource::Given);
    check(&analysis.layout, |p| p, "face-box");
    // Also where the detector finds nothing: the suit crop with a box on the helmet
    // gives a layout (the user asked for it) instead of an error.
    let suit = astronaut().crop_imm(256, 256, 256, 256);
    let boxed = face::analyze(
        &Portrait::from_image("suit".into(), &suit),
        Some("60,60,120,120".parse().unwrap()),
    );
    assert!(boxed.is_ok());
    let outside = face::analyze(
        &Portrait::from_image("suit".into(), &suit),
        Some("900,900,50,50".parse().unwrap()),
    )
    .unwrap_err();
    assert!(outside.to_string().contains("lies outside"), "{outside}");
}

#[test]
fn a_cat_is_not_a_face() {
    // Chelsea the cat (scikit-image's sample data, CC0).
    let path = common::repo().join("tests/files/faces/cat.png");
    let portrait = Portrait::load(&path).unwrap();
    let err = face::analyze(&portrait, None).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("no face found in portrait") && message.contains("cat.png"),
        "{message}"
    );
    assert!(message.contains("face-box="), "{message}");
}

#[test]
fn a_drawing_without_a_face_is_an_error() {
    // A line drawing of a house under a sun: shapes, edges and circles, no face.
    let mut image = RgbaImage::from_pixel(400, 300, Rgba([250, 248, 240, 255]));
    let mut line = |x0: f32, y0: f32, x1: f32, y1: f32| {
        for k in 0..=400 {
            let t = k as f32 / 400.0;
            let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
            for d in -2..=2 {
                image.put_pixel(
                    (x as i32 + d).clamp(0, 399) as u32,
                    (y as u32).min(299),
                    Rgba([30, 30, 30, 255]),
                );
            }
        }
    };
    line(80.0, 280.0, 80.0, 160.0);
    line(80.0, 160.0, 160.0, 90.0);
    line(160.0, 90.0, 240.0, 160.0);
    line(240.0, 160.0, 240.0, 280.0);
    line(80.0, 280.0, 240.0, 280.0);
    line(140.0, 280.0, 140.0, 220.0);
    line(140.0, 220.0, 180.0, 220.0);
    line(180.0, 220.0, 180.0, 280.0);
    for k in 0..64 {
        let a = k as f32 / 64.0 * std::f32::consts::TAU;
        line(330.0, 60.0, 330.0 + 45.0 * a.cos(), 60.0 + 45.0 * a.sin());
    }
    let err = face::analyze(
        &Portrait::from_image("house.png".into(), &DynamicImage::ImageRgba8(image)),
        None,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("no face found in portrait \"house.png\""),
        "{err}"
    );
}
