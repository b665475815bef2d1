//! The LivePortrait engine (`model=<bundle dir>`): the builtin engine's motion (audio to
//! mouth, blinks, head) drawn by LivePortrait's networks from a model bundle, so that a
//! user with only the LivePortrait weights gets an audio-driven talking head.
//!
//! Per portrait (off the streaming thread): face analysis, the crop window around the
//! face, its feature volume `f_s` and keypoints `x_s`. Per frame: the driving keypoints
//! `x_d` are the source's, turned by the head motion, with the eye and lip retargeting
//! networks setting the blink and the mouth opening, then stitched; the warping module
//! and generator draw the window, which is pasted back into the frame.
//!
//! One copy of a bundle's weights serves every engine on the same device in the
//! process ([`shared_model`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use crate::joyvasa::FrameMotion;

use tch::{Device, Kind, Tensor};

use super::builtin::BuiltinEngine;
use super::{
    AudioWindow, Engine, EngineError, FrameSize, KeypointMotion, Motion, MotionControls,
    PreparedSource, SourceHints, SourcePreparer, TensorContext, guarded,
};
use crate::face;
use crate::liveportrait::stitching::{rotation, transform_keypoints};
use crate::liveportrait::{BundleError, Frozen, KeypointInfo, LivePortrait, Precision};
use crate::portrait::Portrait;
use crate::render::crop::{CropWindow, PasteBack};
use crate::render::fit;

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

/// Area of the convex hull of the keypoints' `(x, y)` (`(1, K, 3)`), as the reference's
/// `calc_motion_multiplier` measures a face's size.
fn hull_area(keypoints: &Tensor) -> f32 {
    let values: Vec<f32> = Vec::try_from(
        keypoints
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .flatten(0, -1),
    )
    .unwrap_or_default();
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
    (0..n)
        .map(|i| {
            let (a, b) = (hull[i], hull[(i + 1) % n]);
            a.0 * b.1 - b.0 * a.1
        })
        .sum::<f32>()
        .abs()
        / 2.0
}

type SharedModel = Arc<Frozen<LivePortrait>>;

/// Identifies loaded weights: the same bundle (by path and manifest time) on the same
/// device in the same precision is the same model.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ModelKey {
    pub(super) dir: PathBuf,
    manifest_modified: Option<std::time::SystemTime>,
    device: Device,
    precision: Precision,
}

impl ModelKey {
    pub(super) fn new(dir: &Path, device: Device, precision: Precision) -> Self {
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
        let manifest_modified = std::fs::metadata(dir.join("manifest.json"))
            .and_then(|m| m.modified())
            .ok();
        Self {
            dir,
            manifest_modified,
            device,
            precision,
        }
    }

    /// A string naming the model, for the prepared-portrait cache.
    pub(super) fn describe(&self, engine: &str) -> String {
        format!(
            "{engine}:{}:{:?}:{}:{:?}",
            self.dir.display(),
            self.device,
            self.precision,
            self.manifest_modified
        )
    }
}

struct LoadedModel<T> {
    key: ModelKey,
    model: Weak<Frozen<T>>,
    /// How many times this bundle was read from disk in this process.
    loads: usize,
}

/// Networks loaded from bundles, one copy per (bundle, device) in the process while
/// anything uses it. The lock is held while loading, so two elements starting together
/// wait for one load instead of making two.
pub(super) struct ModelCache<T> {
    entries: Mutex<Vec<LoadedModel<T>>>,
}

impl<T> ModelCache<T> {
    pub(super) const fn new() -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<LoadedModel<T>>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn get_or_load(
        &self,
        dir: &Path,
        device: Device,
        precision: Precision,
        load: impl FnOnce() -> Result<T, BundleError>,
    ) -> Result<Arc<Frozen<T>>, BundleError> {
        let key = ModelKey::new(dir, device, precision);
        let mut models = self.lock();
        if let Some(entry) = models.iter().find(|m| m.key == key)
            && let Some(model) = entry.model.upgrade()
        {
            return Ok(model);
        }
        let model = Arc::new(Frozen::new(load()?));
        match models.iter_mut().find(|m| m.key == key) {
            Some(entry) => {
                entry.model = Arc::downgrade(&model);
                entry.loads += 1;
            }
            None => models.push(LoadedModel {
                key,
                model: Arc::downgrade(&model),
                loads: 1,
            }),
        }
        Ok(model)
    }

    pub(super) fn times_loaded(&self, dir: &Path, device: Device, precision: Precision) -> usize {
        let key = ModelKey::new(dir, device, precision);
        self.lock()
            .iter()
            .find(|m| m.key == key)
            .map_or(0, |m| m.loads)
    }
}

static RENDERERS: ModelCache<LivePortrait> = ModelCache::new();

/// The renderer of the bundle at `dir` on `device` in `precision`, loaded once for the
/// whole process while anything uses it.
pub fn shared_model(
    dir: &Path,
    device: Device,
    precision: Precision,
) -> Result<SharedModel, BundleError> {
    RENDERERS.get_or_load(dir, device, precision, || {
        LivePortrait::load_bundle(dir, device, precision)
    })
}

/// How many times the bundle at `dir` was read from disk for `device` and `precision`
/// in this process.
pub fn times_loaded(dir: &Path, device: Device, precision: Precision) -> usize {
    RENDERERS.times_loaded(dir, device, precision)
}

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

    fn prepare(
        &self,
        portrait: Portrait,
        hints: &SourceHints,
    ) -> Result<PreparedSource, EngineError> {
        let face = face::analyze(&portrait, hints.face_box)?;
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
        let mut prepared = PreparedSource::new(portrait, face);
        prepared.extra = Some(Box::new(Frozen::new(neural)));
        Ok(prepared)
    }
}

pub struct LivePortraitEngine {
    device: Device,
    model: SharedModel,
    bundle: PathBuf,
    /// Audio to motion, exactly as `model=builtin` does it.
    motion: BuiltinEngine,
    paste: Option<CachedPaste>,
    /// The face-size rescaling of generated motion ("expression-friendly"), fixed per
    /// (source, stream's first frame): computed once, not per frame (it reads keypoints
    /// back from the device).
    motion_multiplier: std::cell::Cell<Option<(u64, FrameMotion, f32)>>,
    cpu_threads: i32,
}

/// The paste-back of one (source, frame size) pair.
struct CachedPaste {
    source_id: u64,
    size: FrameSize,
    paste: PasteBack,
}

impl LivePortraitEngine {
    pub fn new(bundle: &Path, device: Device, precision: Precision) -> Result<Self, EngineError> {
        Ok(Self {
            device,
            model: shared_model(bundle, device, precision)?,
            bundle: bundle.to_owned(),
            motion: BuiltinEngine::new(device)?,
            paste: None,
            motion_multiplier: std::cell::Cell::new(None),
            cpu_threads: std::thread::available_parallelism()
                .map_or(1, |n| i32::try_from(n.get()).unwrap_or(1)),
        })
    }

    /// The loaded networks (shared with every engine using the same bundle and device).
    pub fn model(&self) -> &Arc<Frozen<LivePortrait>> {
        &self.model
    }

    /// The driving keypoints of `motion` for `source`: its own pose turned and moved by
    /// the head motion, eyes and lips retargeted, stitched to the source.
    /// `source_id` is the prepared source's (for caches).
    fn driving_keypoints(&self, motion: &Motion, source: &NeuralSource, source_id: u64) -> Tensor {
        if let Some(generated) = &motion.keypoints {
            return self.generated_keypoints(generated, source, source_id);
        }
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
        let posed = transform_keypoints(
            &info.kp,
            &rotation(&pitch, &yaw, &roll),
            &info.exp,
            &info.scale,
            &t,
        );
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

    /// The driving keypoints of generated LivePortrait motion, as JoyVASA's pipeline
    /// makes them (relative motion, "expression-friendly", with stitching): the
    /// source's pose turned by the generated turn since the stream's first frame, its
    /// expression moved by the generated change except the lips, which take the
    /// generated values as they are; scale and translation relative likewise; then the
    /// change from the first frame is rescaled to the source face's size and stitched.
    fn generated_keypoints(
        &self,
        k: &KeypointMotion,
        source: &NeuralSource,
        source_id: u64,
    ) -> Tensor {
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
        let expression = |m: &FrameMotion| {
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
        let x_d = transform_keypoints(&info.kp, &rotation_new, &delta, &scale, &t);
        let x_first = transform_keypoints(
            &info.kp,
            &source_rotation,
            &delta_first,
            &info.scale,
            &info.t,
        );
        let x_s = &source.x_s;
        let multiplier = match self.motion_multiplier.get() {
            Some((id, reference, multiplier)) if id == source_id && reference == *first => {
                multiplier
            }
            _ => {
                let multiplier = (hull_area(x_s) / hull_area(&x_first).max(f32::EPSILON)).sqrt();
                self.motion_multiplier
                    .set(Some((source_id, *first, multiplier)));
                multiplier
            }
        };
        let relative = (x_d - &x_first) * f64::from(multiplier) + x_s;
        let stitched = self.model.stitching.stitch(x_s, &relative);
        if k.mouth_rest > 0.0 && source.lip_ratio >= LIP_NORMALIZE_THRESHOLD {
            // A portrait photographed with parted lips: close them in silence.
            let closing = self
                .model
                .stitching
                .retarget_lip(x_s, &self.ratios(&[source.lip_ratio, 0.0]));
            stitched + closing * f64::from(k.mouth_rest)
        } else {
            stitched
        }
    }

    fn ratios(&self, values: &[f32]) -> Tensor {
        Tensor::from_slice(values)
            .to_device(self.device)
            .view([1, -1])
    }

    /// libtorch on the CPU uses every core for the networks: the builtin motion code
    /// on the same thread asks for one (see `builtin::one_cpu_thread`).
    pub(super) fn all_cpu_threads(&self) {
        if self.device == Device::Cpu && tch::get_num_threads() != self.cpu_threads {
            tch::set_num_threads(self.cpu_threads);
        }
    }
}

impl Engine for LivePortraitEngine {
    fn device(&self) -> Device {
        self.device
    }

    fn history_samples(&self) -> usize {
        self.motion.history_samples()
    }

    fn reset(&mut self, seed: u64) {
        self.motion.reset(seed);
    }

    fn set_controls(&mut self, controls: MotionControls) {
        self.motion.set_controls(controls);
    }

    fn source_preparer(&self) -> Arc<dyn SourcePreparer> {
        Arc::new(LivePortraitPreparer {
            model: self.model.clone(),
            device: self.device,
            cache_key: ModelKey::new(&self.bundle, self.device, self.model.precision)
                .describe("liveportrait"),
        })
    }

    fn motion(&mut self, audio: &AudioWindow<'_>) -> Result<Motion, EngineError> {
        self.motion.motion(audio)
    }

    fn render(
        &mut self,
        motion: &Motion,
        source: &PreparedSource,
        size: FrameSize,
    ) -> Result<Tensor, EngineError> {
        let neural = source
            .extra
            .as_ref()
            .and_then(|extra| extra.downcast_ref::<Frozen<NeuralSource>>())
            .ok_or_else(|| EngineError::Tensor {
                context: "rendering with LivePortrait".into(),
                source: tch::TchError::Torch(
                    "the portrait was not prepared for LivePortrait".into(),
                ),
            })?;
        let stale = self
            .paste
            .as_ref()
            .is_none_or(|p| p.source_id != source.id || p.size != size);
        if stale {
            let (placement, base) = fit::fitted_frame(&source.portrait, size, self.device)?;
            let paste = PasteBack::new(&neural.window, &placement, size, base)?;
            self.paste = Some(CachedPaste {
                source_id: source.id,
                size,
                paste,
            });
        }
        self.all_cpu_threads();
        let drawn = guarded("drawing the face with LivePortrait", || {
            let _no_grad = tch::no_grad_guard();
            let x_d = self.driving_keypoints(motion, neural, source.id);
            self.model.decode(&neural.f_s, &neural.x_s, &x_d)
        })?;
        let drawn = drawn
            .f_to_kind(Kind::Float)
            .context("LivePortrait output")?;
        self.paste
            .as_ref()
            .expect("filled above")
            .paste
            .paste(&drawn)
    }
}
