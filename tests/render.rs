//! The builtin renderer's guarantees, on the sample portrait.

mod common;

use gstvasafacegen::core::{Error, FaceMotion, FrameSize, Motion};
use gstvasafacegen::portrait::Portrait;
use gstvasafacegen::render::fit::{self, Placement};
use gstvasafacegen::render::warp::WarpRenderer;
use gstvasafacegen::render::{PreparedSource, Renderer, SourceHints};
use tch::{Device, Kind, Tensor};

/// Drawing face parameters, the kind of motion this renderer takes.
trait DrawFace {
    fn draw(
        &mut self,
        motion: &FaceMotion,
        source: &PreparedSource,
        size: FrameSize,
    ) -> Result<Tensor, Error>;
}

impl DrawFace for WarpRenderer {
    fn draw(
        &mut self,
        motion: &FaceMotion,
        source: &PreparedSource,
        size: FrameSize,
    ) -> Result<Tensor, Error> {
        self.render(&Motion::Face(*motion), source, size)
    }
}

const SIZE: FrameSize = FrameSize {
    width: 512,
    height: 512,
};

fn prepared(engine: &WarpRenderer, image: &image::DynamicImage) -> PreparedSource {
    engine
        .source_preparer()
        .prepare(
            Portrait::from_image("test".into(), image),
            &SourceHints::default(),
        )
        .unwrap()
}

fn fitted(source: &PreparedSource, size: FrameSize) -> Tensor {
    let p = &source.portrait;
    let placement = Placement::new(p.width, p.height, size);
    fit::letterbox(
        &fit::portrait_tensor(p, Device::Cpu).unwrap(),
        &placement,
        size,
    )
    .unwrap()
}

fn rest(engine: &mut WarpRenderer, source: &PreparedSource, size: FrameSize) -> FaceMotion {
    FaceMotion {
        mouth_open: engine.rig(source, size).unwrap().rest_mouth_open(),
        ..FaceMotion::default()
    }
}

fn astronaut() -> image::DynamicImage {
    image::open(common::astronaut()).unwrap()
}

#[test]
fn the_rest_pose_is_the_portrait() {
    let mut engine = WarpRenderer::new(Device::Cpu);
    let source = prepared(&engine, &astronaut());
    let motion = rest(&mut engine, &source, SIZE);
    let frame = engine.draw(&motion, &source, SIZE).unwrap();
    let diff = (&frame - fitted(&source, SIZE))
        .abs()
        .max()
        .double_value(&[]);
    assert!(
        diff < 0.5 / 255.0,
        "rest pose differs from the portrait by {diff}"
    );
}

#[test]
fn frames_are_deterministic() {
    let mut engine = WarpRenderer::new(Device::Cpu);
    let source = prepared(&engine, &astronaut());
    let motion = FaceMotion {
        mouth_open: 0.8,
        mouth_round: 0.3,
        blink_left: 0.6,
        yaw: 0.05,
        roll: -0.04,
        ..FaceMotion::default()
    };
    let a = engine.draw(&motion, &source, SIZE).unwrap();
    let b = engine.draw(&motion, &source, SIZE).unwrap();
    assert!(a.equal(&b));
}

/// Pixels that differ from the fitted portrait, as (x, y).
fn changed_pixels(frame: &Tensor, reference: &Tensor) -> Vec<(i64, i64)> {
    let changed = (frame - reference)
        .abs()
        .amax([0].as_slice(), false)
        .gt(0.0);
    let coords = changed.nonzero();
    let n = coords.size()[0];
    (0..n)
        .map(|i| (coords.int64_value(&[i, 1]), coords.int64_value(&[i, 0])))
        .collect()
}

#[test]
fn outside_the_face_and_neck_nothing_moves() {
    // A small face in a large image, rendered at 1024x1024 so the face keeps ~80 px.
    let mut canvas = image::RgbaImage::from_pixel(1600, 1600, image::Rgba([60, 90, 120, 255]));
    image::imageops::overlay(&mut canvas, &astronaut().to_rgba8(), 900, 700);
    let image = image::DynamicImage::ImageRgba8(canvas);
    let mut engine = WarpRenderer::new(Device::Cpu);
    let source = prepared(&engine, &image);
    let size = FrameSize {
        width: 1024,
        height: 1024,
    };
    let reference = fitted(&source, size);
    let strong = FaceMotion {
        mouth_open: 1.0,
        mouth_width: 1.0,
        blink_left: 1.0,
        blink_right: 1.0,
        brow_raise: 1.0,
        yaw: 0.15,
        pitch: -0.12,
        roll: 0.1,
        shift_x: 0.1,
        shift_y: -0.1,
        ..FaceMotion::default()
    };
    let frame = engine.draw(&strong, &source, size).unwrap();
    let changed = changed_pixels(&frame, &reference);
    assert!(
        changed.len() > 500,
        "the face moved: {} pixels",
        changed.len()
    );
    // Everything that changed lies near the face: within 2.2 IOD of the point between
    // the mouth and the eyes (the head-and-neck mask), nothing in the rest of the image.
    let layout = source.face.layout;
    let scale = 1024.0 / 1600.0;
    let iod = f64::from(layout.inter_ocular()) * scale;
    let centre_x = f64::from(layout.mouth_centre.x) * scale;
    let centre_y = f64::from(layout.mouth_centre.y + layout.left_eye.y) / 2.0 * scale;
    let far = changed
        .iter()
        .filter(|(x, y)| {
            ((*x as f64 + 0.5 - centre_x).hypot(*y as f64 + 0.5 - centre_y)) > 2.3 * iod
        })
        .count();
    assert_eq!(far, 0, "{far} pixels changed outside the head and neck");
}

#[test]
fn opening_the_mouth_shows_a_dark_cavity_and_closing_covers_the_teeth() {
    let mut engine = WarpRenderer::new(Device::Cpu);
    let source = prepared(&engine, &astronaut());
    let layout = source.face.layout;
    // The mouth region, just below the portrait's lip line.
    let (x, y) = (layout.mouth_centre.x as i64, layout.mouth_centre.y as i64);
    let region = |frame: &Tensor| {
        frame
            .narrow(1, y, 8)
            .narrow(2, x - 8, 16)
            .mean(Kind::Float)
            .double_value(&[])
    };
    let rest_motion = rest(&mut engine, &source, SIZE);
    let rest_level = region(&engine.draw(&rest_motion, &source, SIZE).unwrap());
    let open = region(
        &engine
            .draw(
                &FaceMotion {
                    mouth_open: 1.0,
                    ..FaceMotion::default()
                },
                &source,
                SIZE,
            )
            .unwrap(),
    );
    assert!(open < rest_level - 0.15, "open {open} vs rest {rest_level}");
    // Closed lips: the teeth (the brightest thing in the mouth) are gone.
    let teeth = |frame: &Tensor| {
        frame
            .narrow(1, y - 3, 5)
            .narrow(2, x - 10, 20)
            .mean_dim([0].as_slice(), false, Kind::Float)
            .max()
            .double_value(&[])
    };
    let closed = engine.draw(&FaceMotion::default(), &source, SIZE).unwrap();
    let rest_frame = engine.draw(&rest_motion, &source, SIZE).unwrap();
    assert!(
        teeth(&closed) < teeth(&rest_frame) - 0.08,
        "{} vs {}",
        teeth(&closed),
        teeth(&rest_frame)
    );
}

#[test]
fn a_wide_open_mouth_shows_lower_teeth_and_a_tongue_below_its_dark_top() {
    let mut engine = WarpRenderer::new(Device::Cpu);
    let source = prepared(&engine, &astronaut());
    let layout = source.face.layout;
    let iod = f64::from(layout.inter_ocular());
    let (x, y) = (layout.mouth_centre.x as i64, layout.mouth_centre.y as i64);
    let open = engine
        .draw(
            &FaceMotion {
                mouth_open: 1.0,
                ..FaceMotion::default()
            },
            &source,
            SIZE,
        )
        .unwrap();
    // The middle column of the mouth, from the lip line down to well below the
    // opened lower lip: (r, g, b) per row.
    let rows = (0.45 * iod) as i64;
    let column =
        open.narrow(1, y, rows)
            .narrow(2, x - 2, 5)
            .mean_dim([2].as_slice(), false, Kind::Float);
    let pixel =
        |row: i64| -> [f64; 3] { std::array::from_fn(|c| column.double_value(&[c as i64, row])) };
    let luma = |p: [f64; 3]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    let lumas: Vec<f64> = (0..rows).map(|r| luma(pixel(r))).collect();
    // The darkest row is the cavity's; below it, before the lower lip, a light band (the
    // lower teeth) and between them a red one (the tongue) that is neither.
    let darkest = (0..rows as usize)
        .min_by(|a, b| lumas[*a].total_cmp(&lumas[*b]))
        .unwrap();
    assert!(lumas[darkest] < 0.2, "{lumas:?}");
    let teeth = (darkest..rows as usize)
        .find(|&r| lumas[r] > lumas[darkest] + 0.45)
        .expect("a light band below the cavity");
    let teeth_pixel = pixel(teeth as i64);
    assert!(
        teeth_pixel[0] - teeth_pixel[2] < 0.2,
        "the band below the cavity is not teeth-coloured: {teeth_pixel:?}, {lumas:?}"
    );
    let reddest = (darkest..teeth)
        .map(|r| {
            let p = pixel(r as i64);
            p[0] - (p[1] + p[2]) / 2.0
        })
        .fold(f64::MIN, f64::max);
    assert!(reddest > 0.15, "no tongue between: {reddest}");
}

#[test]
fn a_blink_covers_the_eyes_and_reopens_exactly() {
    let mut engine = WarpRenderer::new(Device::Cpu);
    let source = prepared(&engine, &astronaut());
    let layout = source.face.layout;
    let rest_motion = rest(&mut engine, &source, SIZE);
    let eye = |frame: &Tensor, p: gstvasafacegen::face::Point| {
        frame
            .narrow(1, p.y as i64 - 2, 5)
            .narrow(2, p.x as i64 - 3, 7)
            .mean(Kind::Float)
            .double_value(&[])
    };
    let open = engine.draw(&rest_motion, &source, SIZE).unwrap();
    let closed = engine
        .draw(
            &FaceMotion {
                blink_left: 1.0,
                blink_right: 1.0,
                ..rest_motion
            },
            &source,
            SIZE,
        )
        .unwrap();
    for p in [layout.left_eye, layout.right_eye] {
        // The dark pupil is covered by the (lighter) lid.
        assert!(
            eye(&closed, p) > eye(&open, p) + 0.05,
            "{} vs {}",
            eye(&closed, p),
            eye(&open, p)
        );
    }
    let reopened = engine.draw(&rest_motion, &source, SIZE).unwrap();
    assert!(reopened.equal(&open));
}

#[test]
fn a_frame_size_change_rebuilds_the_rig() {
    let mut engine = WarpRenderer::new(Device::Cpu);
    let source = prepared(&engine, &astronaut());
    let motion = FaceMotion {
        mouth_open: 0.7,
        ..FaceMotion::default()
    };
    let small = FrameSize {
        width: 256,
        height: 144,
    };
    let frame = engine.draw(&motion, &source, small).unwrap();
    assert_eq!(frame.size(), [3, 144, 256]);
    let frame = engine.draw(&motion, &source, SIZE).unwrap();
    assert_eq!(frame.size(), [3, 512, 512]);
}
