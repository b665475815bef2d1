//! The face controls (gaze, head distance, emotion) on the builtin renderer, judged by
//! the face mesh on the rendered frames (`face::reading`), on portraits of different
//! people and sizes: each control moves what it says, in the direction it says, by
//! about the amount the rig is built for.

mod common;

use gstvasafacegen::core::{Emotion, FaceControls, FaceMotion, FrameSize, Motion};
use gstvasafacegen::face::reading::{FaceReading, read};
use gstvasafacegen::portrait::Portrait;
use gstvasafacegen::render::pack::to_rgb_image;
use gstvasafacegen::render::warp::WarpRenderer;
use gstvasafacegen::render::{PreparedSource, Renderer, SourceHints};
use tch::{Device, Tensor};

const SIZE: FrameSize = FrameSize {
    width: 512,
    height: 512,
};

struct Judge {
    renderer: WarpRenderer,
    source: PreparedSource,
    rest: f32,
}

impl Judge {
    fn new(image: &std::path::Path) -> Self {
        let renderer = WarpRenderer::new(Device::Cpu);
        let source = renderer
            .source_preparer()
            .prepare(Portrait::load(image).unwrap(), &SourceHints::default())
            .unwrap();
        let mut judge = Self {
            renderer,
            source,
            rest: 0.0,
        };
        judge.rest = judge
            .renderer
            .rig(&judge.source, SIZE)
            .unwrap()
            .rest_mouth_open();
        judge
    }

    fn frame(&mut self, controls: FaceControls) -> Tensor {
        let motion = FaceMotion {
            mouth_open: self.rest,
            controls,
            ..FaceMotion::default()
        };
        self.renderer
            .render(&Motion::Face(motion), &self.source, SIZE)
            .unwrap()
    }

    /// The mesh's reading of the frame drawn with `controls`.
    fn read(&mut self, controls: FaceControls) -> FaceReading {
        let frame = self.frame(controls);
        let image = to_rgb_image(&frame).unwrap();
        let portrait = Portrait::from_image("frame".into(), &image::DynamicImage::from(image));
        read(&gstvasafacegen::face::analyze(&portrait, None).unwrap().mesh)
    }
}

fn emotion(emotion: Emotion) -> FaceControls {
    let mut controls = FaceControls::default();
    controls.emotion[emotion.index()] = 1.0;
    controls
}

fn portraits() -> Vec<std::path::PathBuf> {
    vec![
        common::astronaut(),
        common::repo().join("tests/files/faces/obama.png"),
    ]
}

#[test]
fn gaze_turns_the_irises_the_way_asked_and_nothing_else() {
    for image in portraits() {
        let mut judge = Judge::new(&image);
        let camera = judge.read(FaceControls::default());
        let look = |x: f32, y: f32| FaceControls {
            gaze: (x, y),
            ..FaceControls::default()
        };
        let iris = |r: &FaceReading| {
            (
                (r.iris[0].0 + r.iris[1].0) / 2.0,
                (r.iris[0].1 + r.iris[1].1) / 2.0,
            )
        };
        let (x0, y0) = iris(&camera);
        // The rig moves an iris by 0.167 IOD x sin(angle): 0.057 at 20 degrees.
        let right = judge.read(look(20.0, 0.0));
        let left = judge.read(look(-20.0, 0.0));
        let up = judge.read(look(0.0, 15.0));
        let name = image.display();
        let (dx_right, dx_left) = (iris(&right).0 - x0, iris(&left).0 - x0);
        assert!(
            dx_right > 0.025 && dx_left < -0.025,
            "{name}: irises moved {dx_right:.3} / {dx_left:.3} IOD for gaze +-20"
        );
        assert!(dx_right < 0.09 && dx_left > -0.09, "{name}: too far");
        let dy_up = iris(&up).1 - y0;
        assert!(
            dy_up < -0.01,
            "{name}: looking up moved the irises {dy_up:.3} IOD"
        );
        // The rest of the face stays.
        assert!((right.iod / camera.iod - 1.0).abs() < 0.03, "{name}");
        assert!(
            (FaceReading::mean(right.corner_lift) - FaceReading::mean(camera.corner_lift)).abs()
                < 0.01
        );
    }
}

#[test]
fn head_distance_scales_the_face_by_its_value() {
    for image in portraits() {
        let mut judge = Judge::new(&image);
        let photo = judge.read(FaceControls::default());
        for distance in [0.8f32, 1.25] {
            let reading = judge.read(FaceControls {
                distance,
                ..FaceControls::default()
            });
            let ratio = reading.iod / photo.iod;
            assert!(
                (ratio - distance).abs() < 0.04,
                "{}: distance {distance} scaled the face by {ratio:.3}",
                image.display()
            );
        }
        // Distance 1 leaves the frame exactly as it was.
        let plain = judge.frame(FaceControls::default());
        let same = judge.frame(FaceControls {
            distance: 1.0,
            ..FaceControls::default()
        });
        assert!(plain.equal(&same));
    }
}

#[test]
fn each_emotion_moves_the_features_its_action_units_name() {
    for image in portraits() {
        let mut judge = Judge::new(&image);
        let neutral = judge.read(FaceControls::default());
        let name = image.display();
        let corners = |r: &FaceReading| FaceReading::mean(r.corner_lift);
        let brows = |r: &FaceReading| FaceReading::mean(r.brow_height);
        let eyes = |r: &FaceReading| FaceReading::mean(r.eye_openness);

        let happy = judge.read(emotion(Emotion::Happy));
        let sad = judge.read(emotion(Emotion::Sad));
        assert!(
            corners(&happy) > corners(&neutral) + 0.02,
            "{name}: happy lifts the corners {:.3} -> {:.3}",
            corners(&neutral),
            corners(&happy)
        );
        assert!(
            corners(&sad) < corners(&neutral) - 0.015,
            "{name}: sad lowers the corners {:.3} -> {:.3}",
            corners(&neutral),
            corners(&sad)
        );
        let surprised = judge.read(emotion(Emotion::Surprised));
        assert!(
            brows(&surprised) > brows(&neutral) + 0.03,
            "{name}: surprised brows"
        );
        assert!(eyes(&surprised) > eyes(&neutral), "{name}: surprised eyes");
        let angry = judge.read(emotion(Emotion::Angry));
        // (The mesh follows brows less than they move: about half of a raise.)
        assert!(
            brows(&angry) < brows(&neutral) - 0.012,
            "{name}: angry brows come down"
        );
        let contempt = judge.read(emotion(Emotion::Contempt));
        let one_sided = |r: &FaceReading| r.corner_lift[1] - r.corner_lift[0];
        assert!(
            one_sided(&contempt) > one_sided(&neutral) + 0.02,
            "{name}: contempt lifts one corner"
        );
        // Half strength does about half.
        let mut half = emotion(Emotion::Happy);
        half.emotion[Emotion::Happy.index()] = 0.5;
        let half = judge.read(half);
        let (full_lift, half_lift) = (
            corners(&happy) - corners(&neutral),
            corners(&half) - corners(&neutral),
        );
        assert!(
            half_lift > 0.25 * full_lift && half_lift < 0.75 * full_lift,
            "{name}: half strength {half_lift:.3} of {full_lift:.3}"
        );
    }
}

/// Frames of the element over two seconds of speech at 128x128, with the head still;
/// `change` is applied to the element after the first eight frames are out.
fn element_frames(change: Option<(&str, &str)>) -> Vec<Vec<u8>> {
    use gst::prelude::*;
    let mut h = common::harness_with(
        &common::astronaut(),
        &[("head-motion", "0")],
        "video/x-raw,format=RGB,width=128,height=128,framerate=25/1",
    );
    let speech = common::speech_clip(0.5, 2.0);
    let half = speech.len() / 2;
    common::push_audio(&mut h, &speech[..half], 0, 1600);
    let mut frames: Vec<Vec<u8>> = (0..8)
        .map(|_| h.pull().unwrap().map_readable().unwrap().to_vec())
        .collect();
    if let Some((name, value)) = change {
        h.element().unwrap().set_property_from_str(name, value);
    }
    common::push_audio(
        &mut h,
        &speech[half..],
        half as u64 * 1_000_000_000 / 16_000,
        1600,
    );
    h.push_event(gst::event::Eos::new());
    frames.extend(
        common::pull_until_eos(&mut h)
            .iter()
            .map(|b| b.map_readable().unwrap().to_vec()),
    );
    frames
}

fn mean_difference(a: &[u8], b: &[u8]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(x.abs_diff(*y)))
        .sum::<f64>()
        / a.len() as f64
}

#[test]
fn a_control_changed_while_playing_eases_in_over_a_few_frames() {
    let plain = element_frames(None);
    for change in [
        ("emotion", "surprised"),
        ("head-distance", "1.2"),
        ("gaze", "20,0"),
    ] {
        let changed = element_frames(Some(change));
        assert_eq!(changed.len(), plain.len(), "{change:?}");
        assert_eq!(changed.len(), 50);
        let differences: Vec<f64> = plain
            .iter()
            .zip(&changed)
            .map(|(a, b)| mean_difference(a, b))
            .collect();
        // Before the change the frames are the same; once it applies, the difference
        // grows over several frames (no snap) and then holds.
        assert!(
            differences[..8].iter().all(|d| *d == 0.0),
            "{change:?}: {differences:?}"
        );
        let first = differences
            .iter()
            .position(|d| *d > 0.0)
            .expect("the change shows");
        let settled = differences[first + 10];
        assert!(settled > 0.01, "{change:?}: {differences:?}");
        assert!(
            differences[first] < 0.6 * settled,
            "{change:?} snapped in: {differences:?}"
        );
        assert!(
            differences[first + 1] > differences[first],
            "{change:?}: {differences:?}"
        );
    }
}
