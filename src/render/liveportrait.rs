//! The LivePortrait renderer (`model=<bundle dir>`): draws motion with LivePortrait's
//! networks from a model bundle. It draws both kinds of motion: face parameters (the
//! builtin motion: head pose, and the eye and lip retargeting networks for blinks and
//! the mouth opening) and keypoint motion (a neural motion generator's, applied as the
//! reference pipelines do).
//!
//! Per portrait (off the streaming thread): face analysis, the crop window around the
//! face, its feature volume `f_s` and keypoints `x_s`. Per frame: the driving keypoints
//! `x_d` from the motion, stitched; the warping module and generator draw the window,
//! which is pasted back into the frame.
//!
//! One copy of a bundle's weights serves every renderer on the same device in the same
//! precision in the process ([`Bundle::liveportrait`]).

use std::sync::Arc;

use tch::{Device, Kind, Tensor};

use super::crop::{CropWindow, PasteBack};
use super::{PerSourceAndSize, PreparedSource, Renderer, SourceHints, SourcePreparer, fit};
use crate::bundle::Bundle;
use crate::core::error::read_back;
use crate::core::motion::EXPRESSION_LEN;
use crate::core::{
    Composition, CpuThreads, Emotion, Error, EyeConditions, FaceControls, FaceMotion, FrameSize,
    Frozen, KeypointFrame, KeypointMotion, Motion, MotionKind, PortraitCues, Precision,
    SourceKeypoints, TensorContext, guarded,
};
use crate::models::liveportrait::edits::{ExpressionEdit, expression_offsets};
use crate::models::liveportrait::stitching::{rotation, transform_keypoints};
use crate::models::liveportrait::{KeypointInfo, LivePortrait};
use crate::portrait::Portrait;

/// The networks' input size: the reference crops to 256 x 256 (its models are trained
/// at that size; the generator draws twice that).
pub const INPUT_SIZE: i64 = 256;

/// Eye-opening ratio (lid distance over eye width, as the reference's landmarks measure
/// it) of an open eye. The builtin face analysis does not measure the lids, so a
/// typical open eye is assumed; blinks scale it towards 0.
const OPEN_EYE_RATIO: f32 = 0.32;
/// Lip-opening ratio (inner-lip distance over mouth width) of a wide-open mouth, the
/// driving ratio at `mouth_open` = 1.
const WIDE_OPEN_LIP_RATIO: f32 = 0.6;
/// The expression keypoints JoyVASA's pipeline drives absolutely (the lips).
const LIP_KEYPOINTS: [i64; 6] = [6, 12, 14, 17, 19, 20];
/// Lip ratio from which the reference treats a portrait's mouth as open.
const LIP_NORMALIZE_THRESHOLD: f32 = 0.03;

/// The face controls as LivePortrait's own expression edits: gaze as its eyeball
/// direction (its slider's range is ours, +-30), each emotion as the sliders that make
/// its look (smile for the lip corners, eyebrow for raised or frowning brows, a wink's
/// one-sided squint and a sideways lip for contempt), at strength 1.
fn control_edit(controls: &FaceControls) -> ExpressionEdit {
    let mut edit = ExpressionEdit {
        eyeball_x: controls.gaze.0,
        eyeball_y: controls.gaze.1,
        ..ExpressionEdit::default()
    };
    for emotion in Emotion::ALL {
        let w = controls.weight(emotion);
        let (smile, eyebrow, wink, lip_shift) = match emotion {
            Emotion::Neutral => continue,
            Emotion::Happy => (1.0, 0.0, 0.0, 0.0),
            Emotion::Sad => (-0.3, -8.0, 0.0, 0.0),
            Emotion::Angry => (-0.2, -20.0, 0.0, 0.0),
            Emotion::Surprised => (0.0, 25.0, 0.0, 0.0),
            Emotion::Disgusted => (-0.25, -12.0, 4.0, 0.0),
            Emotion::Fearful => (-0.15, 15.0, 0.0, 0.0),
            Emotion::Contempt => (0.35, 0.0, 3.0, 0.03),
        };
        edit.smile += w * smile;
        edit.eyebrow += w * eyebrow;
        edit.wink += w * wink;
        edit.lip_shift += w * lip_shift;
    }
    edit
}

/// Area of the convex hull of the keypoints' `(x, y)` (`(1, K, 3)`), as the reference's
/// `calc_motion_multiplier` measures a face's size.
fn hull_area(keypoints: &Tensor) -> Result<f32, Error> {
    let count = keypoints.numel();
    let values = read_back(keypoints, "LivePortrait keypoints", count)?;
    let mut points: Vec<(f32, f32)> = values.chunks(3).map(|p| (p[0], p[1])).collect();
    points.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let cross = |o: (f32, f32), a: (f32, f32), b: (f32, f32)| {
        (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
    };
    // Andrew's monotone chain: lower then upper hull.
    let mut hull: Vec<(f32, f32)> = Vec::with_capacity(2 * points.len());
    for pass in 0..2 {
        let start = hull.len();
        let ordered: Box<dyn Iterator<Item = &(f32, f32)>> = if pass == 0 {
            Box::new(points.iter())
        } else {
            Box::new(points.iter().rev())
        };
        for &p in ordered {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0
            {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    let n = hull.len();
    Ok((0..n)
        .map(|i| {
            let (a, b) = (hull[i], hull[(i + 1) % n]);
            a.0 * b.1 - b.0 * a.1
        })
        .sum::<f32>()
        .abs()
        / 2.0)
}

/// The face-size rescaling of generated motion ("expression-friendly"): the square root
/// of the portrait's keypoint area over that of the motion's first frame. Keypoints that
/// span no area (NaN or collapsed, from damaged weights) are an error, not a silent
/// multiplier of 0 or infinity that would freeze or explode the face.
fn motion_multiplier(x_s: &Tensor, x_first: &Tensor) -> Result<f32, Error> {
    let (source, first) = (hull_area(x_s)?, hull_area(x_first)?);
    let multiplier = (source / first).sqrt();
    if !(source > 0.0 && first > 0.0 && multiplier.is_finite()) {
        return Err(Error::compute(
            "scaling generated motion to the portrait's face",
            format!(
                "LivePortrait keypoints span no area (portrait {source}, motion {first}): the \
                 bundle's motion extractor gives degenerate keypoints (damaged weights?)"
            ),
        ));
    }
    Ok(multiplier)
}

/// The motion extractor's reading of the portrait as plain values, for motion sources.
fn source_keypoints(info: &KeypointInfo) -> Result<SourceKeypoints, Error> {
    let values = |t: &Tensor, what: &str| read_back(t, what, t.numel());
    let array = |t: &Tensor, what: &str| -> Result<[f32; EXPRESSION_LEN], Error> {
        values(t, what)?.try_into().map_err(|v: Vec<f32>| {
            Error::compute(
                "reading the portrait's keypoints",
                format!("{what} has {} values, not {EXPRESSION_LEN}", v.len()),
            )
        })
    };
    let t = values(&info.t, "the portrait's translation")?;
    let scale = values(&info.scale, "the portrait's scale")?;
    let (Ok(t), Some(&scale)) = (<[f32; 3]>::try_from(t), scale.first()) else {
        return Err(Error::compute(
            "reading the portrait's keypoints",
            "the translation is not 3 values or the scale is missing",
        ));
    };
    Ok(SourceKeypoints {
        kp: array(&info.kp, "the canonical keypoints")?,
        exp: array(&info.exp, "the expression")?,
        scale,
        t,
        pose_bins: [
            values(&info.pose_bins[0], "the pitch bins")?,
            values(&info.pose_bins[1], "the yaw bins")?,
            values(&info.pose_bins[2], "the roll bins")?,
        ],
    })
}

/// Ditto's eye conditions of the mesh `points` (portrait pixels), measured in the face
/// window as Ditto measures them in its crop: x and y across the window in 0..1, depth
/// on the same scale.
fn eye_conditions(points: &[[f32; 3]], window: &CropWindow) -> Option<EyeConditions> {
    let in_window: Vec<[f32; 3]> = points
        .iter()
        .map(|p| {
            let (u, v) = window.to_window(f64::from(p[0]), f64::from(p[1]));
            [
                ((u + 1.0) / 2.0) as f32,
                ((v + 1.0) / 2.0) as f32,
                (f64::from(p[2]) / window.side) as f32,
            ]
        })
        .collect();
    crate::models::ditto::eyes::eye_conditions(&in_window)
}

type SharedModel = Arc<Frozen<LivePortrait>>;

/// What preparation computes for one portrait, kept in [`PreparedSource::extra`].
struct NeuralSource {
    window: CropWindow,
    f_s: Tensor,
    info: KeypointInfo,
    x_s: Tensor,
    /// The portrait's own lip-opening ratio.
    lip_ratio: f32,
}

struct LivePortraitPreparer {
    model: SharedModel,
    device: Device,
    cache_key: String,
}

impl SourcePreparer for LivePortraitPreparer {
    fn cache_key(&self) -> String {
        self.cache_key.clone()
    }

    fn prepare(&self, portrait: Portrait, hints: &SourceHints) -> Result<PreparedSource, Error> {
        let face = crate::face::analyze(&portrait, hints.face_box)?;
        let window = CropWindow::around(&face.layout, &hints.crop);
        let image = fit::portrait_tensor(&portrait, self.device)?;
        let crop = window.sample(&image, INPUT_SIZE)?;
        let model = &self.model;
        let (f_s, info, x_s) = guarded("preparing the portrait for LivePortrait", || {
            let _no_grad = tch::no_grad_guard();
            let info = model.keypoint_info(&crop);
            let x_s = info.keypoints();
            (model.appearance.forward(&crop), info, x_s)
        })?;
        let layout = &face.layout;
        let lip_ratio = (layout.mouth_gap / layout.mouth_width().max(1.0)).clamp(0.0, 1.0);
        let neural = NeuralSource {
            window,
            f_s,
            info,
            x_s,
            lip_ratio,
        };
        let cues = PortraitCues {
            keypoints: Some(source_keypoints(&neural.info)?),
            eyes: eye_conditions(&face.mesh.points, &neural.window),
        };
        let mut prepared = PreparedSource::new(portrait, face);
        prepared.extra = Some(Box::new(Frozen::new(neural)));
        prepared.cues = cues;
        Ok(prepared)
    }
}

pub struct LivePortraitRenderer {
    device: Device,
    model: SharedModel,
    cache_key: String,
    paste: PerSourceAndSize<PasteBack>,
    /// The face-size rescaling of generated motion, fixed per (source, stream's first
    /// frame): computed once, not per frame (it reads keypoints back from the device).
    multiplier: Option<CachedMultiplier>,
}

struct CachedMultiplier {
    source_id: u64,
    reference: KeypointFrame,
    value: f32,
}

impl LivePortraitRenderer {
    /// The renderer of `bundle` on `device`, computing in `precision`.
    pub fn new(bundle: &Bundle, device: Device, precision: Precision) -> Result<Self, Error> {
        precision.check_device(device).map_err(Error::Settings)?;
        Ok(Self {
            device,
            model: bundle.liveportrait(device, precision)?,
            cache_key: format!("liveportrait:{}", bundle.describe(device, precision)),
            paste: PerSourceAndSize::default(),
            multiplier: None,
        })
    }

    /// The loaded networks (shared with every renderer using the same bundle, device and
    /// precision).
    pub fn model(&self) -> &Arc<Frozen<LivePortrait>> {
        &self.model
    }

    /// The driving keypoints of face parameters for `source`: its own pose turned and
    /// moved by the head motion, eyes and lips retargeted, stitched to the source.
    fn face_keypoints(&self, motion: &FaceMotion, source: &NeuralSource) -> Tensor {
        let info = &source.info;
        let degrees = |radians: f32| f64::from(radians.to_degrees());
        // The reference turns keypoints by (Rz Ry Rx) with x right, y down: a positive
        // roll turns the face clockwise on screen, as ours does; a positive yaw brings
        // the front of the face (+z) to image right, as ours; a positive pitch lifts
        // the chin, where ours lowers it.
        let pitch = &info.pitch - degrees(motion.pitch);
        let yaw = &info.yaw + degrees(motion.yaw);
        let roll = &info.roll + degrees(motion.roll);
        // Translation in window units (the window is 2 wide); ours is in IODs.
        let iod = source.window.iod_in_window();
        let shift = Tensor::from_slice(&[
            (f64::from(motion.shift_x) * iod) as f32,
            (f64::from(motion.shift_y) * iod) as f32,
            0.0,
        ])
        .to_device(self.device)
        .view([1, 3]);
        let t = &info.t + shift;
        let (exp, scale) = self.with_controls(&info.exp, &info.scale, &motion.controls);
        let posed = transform_keypoints(&info.kp, &rotation(&pitch, &yaw, &roll), &exp, &scale, &t);
        let stitching = &self.model.stitching;
        let blink = (motion.blink_left + motion.blink_right) / 2.0;
        let eye_ratio = self.ratios(&[
            OPEN_EYE_RATIO,
            OPEN_EYE_RATIO,
            OPEN_EYE_RATIO * (1.0 - blink.clamp(0.0, 1.0)),
        ]);
        let lip_ratio = self.ratios(&[
            source.lip_ratio,
            motion.mouth_open.clamp(0.0, 1.0) * WIDE_OPEN_LIP_RATIO,
        ]);
        let x_s = &source.x_s;
        let retargeted = posed
            + stitching.retarget_eye(x_s, &eye_ratio)
            + stitching.retarget_lip(x_s, &lip_ratio);
        stitching.stitch(x_s, &retargeted)
    }

    /// The driving keypoints of generated keypoint motion, as JoyVASA's pipeline makes
    /// them (relative motion, "expression-friendly", with stitching): the source's pose
    /// turned by the generated turn since the stream's first frame, its expression moved
    /// by the generated change except the lips, which take the generated values as they
    /// are; scale and translation relative likewise; then the change from the first
    /// frame is rescaled to the source face's size and stitched.
    fn generated_keypoints(
        &mut self,
        k: &KeypointMotion,
        source: &NeuralSource,
        source_id: u64,
    ) -> Result<Tensor, Error> {
        if k.composition == Composition::Driving {
            let x_d = self.driving_keypoints(&k.current, &k.controls, source);
            return Ok(self.after_stitching(k, source, x_d));
        }
        let info = &source.info;
        let device = self.device;
        let (current, first) = (&k.current, &k.reference);
        let head = k.head_motion;
        let towards = |from: f32, to: f32| from + (to - from) * head;
        let angle = |value: f32| Tensor::from_slice(&[value]).to_device(device).view([1, 1]);
        let turn_to = rotation(
            &angle(towards(first.pitch, current.pitch)),
            &angle(towards(first.yaw, current.yaw)),
            &angle(towards(first.roll, current.roll)),
        );
        let turn_from = rotation(&angle(first.pitch), &angle(first.yaw), &angle(first.roll));
        let source_rotation = rotation(&info.pitch, &info.yaw, &info.roll);
        let rotation_new = turn_to
            .bmm(&turn_from.transpose(1, 2))
            .bmm(&source_rotation);
        let expression = |m: &KeypointFrame| {
            Tensor::from_slice(&m.exp)
                .to_device(device)
                .view([1, 21, 3])
        };
        let (exp_now, exp_first) = (expression(current), expression(first));
        let lips = Tensor::from_slice(&LIP_KEYPOINTS).to_device(device);
        // Lips: the generated values, pulled to the portrait's own in silence.
        let lip_values = |exp: &Tensor| {
            let generated = exp.index_select(1, &lips);
            let own = info.exp.index_select(1, &lips);
            &generated + (own - &generated) * f64::from(k.mouth_rest)
        };
        let delta = (&info.exp + (&exp_now - &exp_first) * f64::from(k.expression_scale))
            .index_copy(1, &lips, &lip_values(&exp_now));
        let delta_first = info.exp.index_copy(1, &lips, &lip_values(&exp_first));
        let scale = &info.scale * f64::from(1.0 + (current.scale / first.scale - 1.0) * head);
        let shift: Vec<f32> = (0..3).map(|i| (current.t[i] - first.t[i]) * head).collect();
        let t = &info.t + Tensor::from_slice(&shift).to_device(device).view([1, 3]);
        let (delta, scale) = self.with_controls(&delta, &scale, &k.controls);
        let x_d = transform_keypoints(&info.kp, &rotation_new, &delta, &scale, &t);
        let x_first = transform_keypoints(
            &info.kp,
            &source_rotation,
            &delta_first,
            &info.scale,
            &info.t,
        );
        let x_s = &source.x_s;
        let multiplier = match &self.multiplier {
            Some(cached) if cached.source_id == source_id && cached.reference == *first => {
                cached.value
            }
            _ => {
                let value = motion_multiplier(x_s, &x_first)?;
                self.multiplier = Some(CachedMultiplier {
                    source_id,
                    reference: *first,
                    value,
                });
                value
            }
        };
        let relative = (x_d - &x_first) * f64::from(multiplier) + x_s;
        Ok(self.after_stitching(k, source, relative))
    }

    /// Keypoint motion given as the driving pose and expression themselves (Ditto's):
    /// the portrait's canonical keypoints posed by them (translation in x and y only).
    fn driving_keypoints(
        &self,
        frame: &KeypointFrame,
        controls: &FaceControls,
        source: &NeuralSource,
    ) -> Tensor {
        let device = self.device;
        let value = |v: f32| Tensor::from_slice(&[v]).to_device(device).view([1, 1]);
        let rotation = rotation(&value(frame.pitch), &value(frame.yaw), &value(frame.roll));
        let exp = Tensor::from_slice(&frame.exp)
            .to_device(device)
            .view([1, -1, 3]);
        let t = Tensor::from_slice(&frame.t).to_device(device).view([1, 3]);
        let kp = source.info.kp.to_kind(Kind::Float);
        let (exp, scale) = self.with_controls(&exp, &value(frame.scale), controls);
        transform_keypoints(&kp, &rotation, &exp, &scale, &t)
    }

    /// An expression `(1, 21, 3)` and scale with the face controls applied: the edits'
    /// offsets added, the scale multiplied by the head distance.
    fn with_controls(
        &self,
        exp: &Tensor,
        scale: &Tensor,
        controls: &FaceControls,
    ) -> (Tensor, Tensor) {
        if *controls == FaceControls::default() {
            return (exp.shallow_clone(), scale.shallow_clone());
        }
        let offsets = expression_offsets(&control_edit(controls));
        let offsets = Tensor::from_slice(&offsets)
            .to_device(self.device)
            .view([1, 21, 3])
            .to_kind(exp.kind());
        (
            exp.view([1, 21, 3]) + offsets,
            scale * f64::from(controls.distance),
        )
    }

    /// Stitches driving keypoints `x_d` to the portrait, then closes a portrait's parted
    /// lips in silence and draws procedural blinks, when asked.
    fn after_stitching(&self, k: &KeypointMotion, source: &NeuralSource, x_d: Tensor) -> Tensor {
        let x_s = &source.x_s;
        let stitching = &self.model.stitching;
        let mut stitched = stitching.stitch(x_s, &x_d.to_kind(x_s.kind()));
        if k.mouth_rest > 0.0 && source.lip_ratio >= LIP_NORMALIZE_THRESHOLD {
            // A portrait photographed with parted lips: close them in silence.
            let closing = stitching.retarget_lip(x_s, &self.ratios(&[source.lip_ratio, 0.0]));
            stitched += closing * f64::from(k.mouth_rest);
        }
        if let Some(blink) = k.blink.filter(|&b| b > 0.0) {
            // Procedural blinks over the generated eyes: the eye retargeting network's
            // change from an open eye to this closure (zero when the eye is open).
            let open = [OPEN_EYE_RATIO, OPEN_EYE_RATIO, OPEN_EYE_RATIO];
            let closing = [
                OPEN_EYE_RATIO,
                OPEN_EYE_RATIO,
                OPEN_EYE_RATIO * (1.0 - blink.min(1.0)),
            ];
            stitched = stitched + stitching.retarget_eye(x_s, &self.ratios(&closing))
                - stitching.retarget_eye(x_s, &self.ratios(&open));
        }
        stitched
    }

    fn ratios(&self, values: &[f32]) -> Tensor {
        Tensor::from_slice(values)
            .to_device(self.device)
            .view([1, -1])
    }
}

impl Renderer for LivePortraitRenderer {
    fn name(&self) -> &'static str {
        "the LivePortrait renderer"
    }

    fn draws(&self, kind: MotionKind) -> bool {
        matches!(kind, MotionKind::Face | MotionKind::Keypoints)
    }

    fn device(&self) -> Device {
        self.device
    }

    fn cpu_threads(&self) -> CpuThreads {
        CpuThreads::All
    }

    fn source_preparer(&self) -> Arc<dyn SourcePreparer> {
        Arc::new(LivePortraitPreparer {
            model: self.model.clone(),
            device: self.device,
            cache_key: self.cache_key.clone(),
        })
    }

    fn render(
        &mut self,
        motion: &Motion,
        source: &PreparedSource,
        size: FrameSize,
    ) -> Result<Tensor, Error> {
        let neural = source
            .extra
            .as_ref()
            .and_then(|extra| extra.downcast_ref::<Frozen<NeuralSource>>())
            .ok_or_else(|| {
                Error::compute(
                    "rendering with LivePortrait",
                    "the portrait was not prepared for LivePortrait",
                )
            })?;
        let x_d = match motion {
            Motion::Face(face) => guarded("driving LivePortrait's keypoints", || {
                let _no_grad = tch::no_grad_guard();
                self.face_keypoints(face, neural)
            })?,
            Motion::Keypoints(keypoints) => guarded("driving LivePortrait's keypoints", || {
                let _no_grad = tch::no_grad_guard();
                self.generated_keypoints(keypoints, neural, source.id)
            })??,
        };
        let model = &self.model;
        let drawn = guarded("drawing the face with LivePortrait", || {
            let _no_grad = tch::no_grad_guard();
            model.decode(&neural.f_s, &neural.x_s, &x_d)
        })?;
        let drawn = drawn
            .f_to_kind(Kind::Float)
            .context("LivePortrait output")?;
        let device = self.device;
        let paste = self.paste.get_or_build(source, size, || {
            let (placement, base) = fit::fitted_frame(&source.portrait, size, device)?;
            PasteBack::new(&neural.window, &placement, size, base)
        })?;
        paste.paste(&drawn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_map_to_liveportraits_edits_by_their_weights() {
        assert_eq!(
            control_edit(&FaceControls::default()),
            ExpressionEdit::default()
        );
        let mut controls = FaceControls {
            gaze: (12.0, -5.0),
            ..FaceControls::default()
        };
        controls.emotion[Emotion::Happy.index()] = 0.5;
        controls.emotion[Emotion::Angry.index()] = 0.5;
        let edit = control_edit(&controls);
        assert_eq!((edit.eyeball_x, edit.eyeball_y), (12.0, -5.0));
        assert!((edit.smile - 0.4).abs() < 1e-6, "{edit:?}");
        assert!((edit.eyebrow + 10.0).abs() < 1e-6, "{edit:?}");
    }

    #[test]
    fn the_motion_multiplier_is_the_root_of_the_area_ratio_and_refuses_degenerate_faces() {
        // A unit square and a square of side 2 (z ignored): areas 1 and 4.
        let square = |side: f32| {
            Tensor::from_slice(&[
                0.0, 0.0, 5.0, side, 0.0, 5.0, side, side, 5.0, 0.0, side, 5.0, 0.5, 0.5, 5.0,
            ])
            .view([1, 5, 3])
        };
        let multiplier = motion_multiplier(&square(2.0), &square(1.0)).unwrap();
        assert!((multiplier - 2.0).abs() < 1e-6, "{multiplier}");
        let collapsed = Tensor::zeros([1, 21, 3], (Kind::Float, Device::Cpu));
        let nan = Tensor::full([1, 21, 3], f64::NAN, (Kind::Float, Device::Cpu));
        for (portrait, motion) in [(&collapsed, &square(1.0)), (&square(1.0), &nan)] {
            let err = motion_multiplier(portrait, motion).unwrap_err().to_string();
            assert!(err.contains("span no area"), "{err}");
        }
    }
}
