//! The face as the face mesh reads it on rendered frames (`face::reading`): the head's
//! angles while speaking and in silence, and each face control's effect per unit, for
//! the evaluation report (tools/builtin/eval.rs).

use std::fmt::Write as _;

use gstvasafacegen::core::{Emotion, FaceControls, FaceMotion, FrameSize, Motion};
use gstvasafacegen::face::reading::{FaceReading, read};
use gstvasafacegen::portrait::Portrait;
use gstvasafacegen::render::pack::to_rgb_image;
use gstvasafacegen::render::warp::WarpRenderer;
use gstvasafacegen::render::{PreparedSource, Renderer};
use tch::Tensor;

/// The rig's eyeball: an iris moves this many IOD per unit of the sine of its turn
/// (src/render/warp/expression.rs), used to turn measured displacements into degrees.
const GAZE_RADIUS: f64 = 0.167;

/// Reads frames of one portrait.
pub struct Judge<'a> {
    renderer: WarpRenderer,
    source: &'a PreparedSource,
    size: FrameSize,
    rest: f32,
}

impl<'a> Judge<'a> {
    pub fn new(source: &'a PreparedSource, size: FrameSize) -> Result<Self, String> {
        let mut renderer = WarpRenderer::new(tch::Device::Cpu);
        let rest = renderer
            .rig(source, size)
            .map_err(|e| e.to_string())?
            .rest_mouth_open();
        Ok(Self {
            renderer,
            source,
            size,
            rest,
        })
    }

    /// The mesh's reading of the frame drawn for `motion` (`None`: no face found).
    pub fn read_motion(&mut self, motion: &FaceMotion) -> Result<Option<FaceReading>, String> {
        let frame = self
            .renderer
            .render(&Motion::Face(*motion), self.source, self.size)
            .map_err(|e| e.to_string())?;
        Ok(read_frame(&frame))
    }

    fn read_controls(&mut self, controls: FaceControls) -> Result<FaceReading, String> {
        let motion = FaceMotion {
            mouth_open: self.rest,
            controls,
            ..FaceMotion::default()
        };
        self.read_motion(&motion)?
            .ok_or_else(|| format!("no face found in the frame drawn with {controls:?}"))
    }
}

fn read_frame(frame: &Tensor) -> Option<FaceReading> {
    let image = to_rgb_image(frame).ok()?;
    let portrait = Portrait::from_image("frame".into(), &image::DynamicImage::from(image));
    let analysis = gstvasafacegen::face::analyze(&portrait, None).ok()?;
    Some(read(&analysis.mesh))
}

/// Least-squares slope through the origin of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let (xy, xx) = points
        .iter()
        .fold((0.0, 0.0), |(xy, xx), (x, y)| (xy + x * y, xx + x * x));
    xy / xx.max(1e-12)
}

/// Head angles (yaw, pitch, roll; degrees) read on frames drawn with the head moving,
/// as (5th, 95th percentile) ranges in speech and in silence, with the frame counts.
pub fn head_angles(
    judge: &mut Judge<'_>,
    clips: &[(Vec<FaceMotion>, Vec<bool>)],
) -> Result<String, String> {
    let mut speaking: [Vec<f64>; 3] = Default::default();
    let mut silent: [Vec<f64>; 3] = Default::default();
    let mut missed = 0;
    for (motions, talking) in clips {
        for (motion, &talking) in motions.iter().zip(talking) {
            let Some(r) = judge.read_motion(motion)? else {
                missed += 1;
                continue;
            };
            let into = if talking { &mut speaking } else { &mut silent };
            for (list, value) in into.iter_mut().zip([r.yaw, r.pitch, r.roll]) {
                list.push(f64::from(value));
            }
        }
    }
    let range = |values: &[f64]| {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let at = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
        if sorted.is_empty() {
            "-".to_owned()
        } else {
            format!(
                "{:.1} ({:+.1}..{:+.1})",
                at(0.95) - at(0.05),
                at(0.05),
                at(0.95)
            )
        }
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Head angles as the face mesh reads them on the rendered frames (head moving as \
         by default; {} frames in speech, {} in silence, {missed} without a face found): \
         the 5-95% spread in degrees (the range).\n\n| angle | in speech | in silence |\n|---|---|---|",
        speaking[0].len(),
        silent[0].len()
    );
    for (i, name) in ["yaw", "pitch", "roll"].iter().enumerate() {
        let _ = writeln!(
            out,
            "| {name} | {} | {} |",
            range(&speaking[i]),
            range(&silent[i])
        );
    }
    Ok(out)
}

/// Each control's effect per unit, measured against the portrait at rest.
pub fn effects(judge: &mut Judge<'_>) -> Result<String, String> {
    let rest = judge.read_controls(FaceControls::default())?;
    let mut out = String::new();
    let iris = |r: &FaceReading| {
        (
            f64::from(r.iris[0].0 + r.iris[1].0) / 2.0,
            f64::from(r.iris[0].1 + r.iris[1].1) / 2.0,
        )
    };
    let turn = |shift: f64| (shift / GAZE_RADIUS).clamp(-1.0, 1.0).asin().to_degrees();
    let (mut across, mut up) = (Vec::new(), Vec::new());
    for degrees in [-20.0f32, -10.0, 10.0, 20.0] {
        let r = judge.read_controls(FaceControls {
            gaze: (degrees, 0.0),
            ..FaceControls::default()
        })?;
        across.push((f64::from(degrees), turn(iris(&r).0 - iris(&rest).0)));
        let r = judge.read_controls(FaceControls {
            gaze: (0.0, degrees * 0.75),
            ..FaceControls::default()
        })?;
        up.push((f64::from(degrees * 0.75), -turn(iris(&r).1 - iris(&rest).1)));
    }
    let mut distance = Vec::new();
    for value in [0.8f32, 0.9, 1.1, 1.25] {
        let r = judge.read_controls(FaceControls {
            distance: value,
            ..FaceControls::default()
        })?;
        distance.push((f64::from(value) - 1.0, f64::from(r.iod / rest.iod) - 1.0));
    }
    let _ = writeln!(
        out,
        "Each control's effect on the rendered portrait, read by the face mesh (lengths in \
         the face's inter-ocular distance, IOD; an iris displacement is turned into degrees \
         with the rig's 0.167 IOD eyeball).\n\n| control | measured per unit |\n|---|---|"
    );
    let _ = writeln!(
        out,
        "| gaze x (-20..20 degrees) | {:.2} degrees of iris turn per degree |",
        slope(&across)
    );
    let _ = writeln!(
        out,
        "| gaze y (-15..15 degrees) | {:.2} degrees of iris turn per degree |",
        slope(&up)
    );
    let _ = writeln!(
        out,
        "| head-distance (0.8..1.25) | {:.2} x the asked scale change |",
        slope(&distance)
    );
    let _ = writeln!(
        out,
        "\nEmotions at strength 1 against neutral (mouth corners' height above the lips' \
         centre, brows' height above the irises, distance between the brows' inner ends, \
         eye openness as lid gap over eye width; mean of both sides, except the one-sided \
         corner: right minus left):\n\n| emotion | corners | one-sided corner | brows | brow gap | eye openness |\n|---|---|---|---|---|---|"
    );
    let mean = |v: [f32; 2]| f64::from(FaceReading::mean(v));
    for emotion in Emotion::ALL {
        if emotion == Emotion::Neutral {
            continue;
        }
        let mut controls = FaceControls::default();
        controls.emotion[emotion.index()] = 1.0;
        let r = judge.read_controls(controls)?;
        let one_sided = |r: &FaceReading| f64::from(r.corner_lift[1] - r.corner_lift[0]);
        let _ = writeln!(
            out,
            "| {} | {:+.3} | {:+.3} | {:+.3} | {:+.3} | {:+.3} |",
            emotion.name(),
            mean(r.corner_lift) - mean(rest.corner_lift),
            one_sided(&r) - one_sided(&rest),
            mean(r.brow_height) - mean(rest.brow_height),
            f64::from(r.brow_gap - rest.brow_gap),
            mean(r.eye_openness) - mean(rest.eye_openness),
        );
    }
    Ok(out)
}
