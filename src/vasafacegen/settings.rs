//! The element's properties: their specs (what gst-inspect-1.0 shows), defaults and
//! ranges, and the settings they hold, each parsed once when set.

use std::path::PathBuf;
use std::sync::LazyLock;

use gst::glib;
use gst::prelude::*;

use super::{BlinksProperty, EmotionProperty, MotionProperty, PaceProperty, PrecisionProperty};
use crate::core::device::DeviceError;
use crate::core::{DeviceRequest, Gaze, MotionControls, SAMPLE_RATE};
use crate::face::{FaceBox, FaceError};
use crate::render::SourceHints;
use crate::render::crop::{CropSettings, DEFAULT_CROP_OFFSET_Y, DEFAULT_CROP_SCALE};

pub const DEFAULT_MODEL: &str = "builtin";
pub const DEFAULT_DEVICE: &str = "auto";
const DEFAULT_SEED: u64 = 0;
const DEFAULT_LATENCY_MS: u32 = 100;
const DEFAULT_HEAD_MOTION: f64 = 1.0;
const MAX_HEAD_MOTION: f64 = 2.0;
const MAX_LATENCY_MS: u32 = 2_000;
const MAX_CFG_SCALE: f64 = 10.0;
const MAX_SAMPLING_STEPS: u32 = 1_000;
const MAX_EXPRESSION_SCALE: f64 = 2.0;
const MIN_CROP_SCALE: f64 = 1.0;
const MAX_CROP_SCALE: f64 = 4.0;
const MAX_CROP_OFFSET_Y: f64 = 0.5;

/// Everything the properties hold: the one place defaults live. Copied out before use.
#[derive(Debug, Clone)]
pub struct Settings {
    pub image: Option<PathBuf>,
    /// `face-box` as written, and what it says.
    pub face_box_text: Option<String>,
    pub face_box: Result<Option<FaceBox>, FaceError>,
    pub model: String,
    pub motion: MotionProperty,
    pub blinks: BlinksProperty,
    pub pace: PaceProperty,
    /// `device` as written, and what it asks for.
    pub device_text: String,
    pub device: Result<DeviceRequest, DeviceError>,
    pub precision: PrecisionProperty,
    pub seed: u64,
    pub latency_ms: u32,
    pub head_motion: f64,
    pub crop_scale: f64,
    pub crop_offset_y: f64,
    pub cfg_scale: f64,
    pub sampling_steps: u32,
    pub expression_scale: f64,
    pub emotion: EmotionProperty,
    /// `gaze` as written, and what it says (the last valid value stays in force).
    pub gaze_text: String,
    pub gaze: Gaze,
    pub window_overlap: u32,
    pub head_distance: f64,
    pub emotion_strength: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            image: None,
            face_box_text: None,
            face_box: Ok(None),
            model: DEFAULT_MODEL.to_owned(),
            motion: MotionProperty::default(),
            blinks: BlinksProperty::default(),
            pace: PaceProperty::default(),
            device_text: DEFAULT_DEVICE.to_owned(),
            device: Ok(DeviceRequest::Auto),
            precision: PrecisionProperty::default(),
            seed: DEFAULT_SEED,
            latency_ms: DEFAULT_LATENCY_MS,
            head_motion: DEFAULT_HEAD_MOTION,
            crop_scale: f64::from(DEFAULT_CROP_SCALE),
            crop_offset_y: f64::from(DEFAULT_CROP_OFFSET_Y),
            cfg_scale: 0.0,
            sampling_steps: 0,
            expression_scale: 1.0,
            emotion: EmotionProperty::default(),
            gaze_text: "camera".to_owned(),
            gaze: Gaze::Camera,
            window_overlap: 0,
            head_distance: 1.0,
            emotion_strength: 1.0,
        }
    }
}

/// What a property change means for the running element beyond the new value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    /// Nothing more to do.
    Value,
    /// The portrait must be prepared again (while streaming).
    Portrait,
    /// The latency changed: the pipeline must ask again.
    Latency,
}

/// A warning about a value that will fail at the next state change, for gst-launch users
/// to find their typo early.
pub type Warning = Option<String>;

/// A string property's new value; unset (NULL) means its default.
fn string_or(value: &glib::Value, default: &str) -> String {
    value
        .get::<Option<String>>()
        .expect("type checked upstream")
        .unwrap_or_else(|| default.to_owned())
}

impl Settings {
    pub fn lookahead_samples(&self) -> u64 {
        u64::from(self.latency_ms) * u64::from(SAMPLE_RATE) / 1000
    }

    pub fn crop(&self) -> CropSettings {
        CropSettings {
            scale: self.crop_scale as f32,
            offset_y: self.crop_offset_y as f32,
        }
    }

    /// What the user says about the portrait; a malformed face box is an error.
    pub fn hints(&self) -> Result<SourceHints, FaceError> {
        Ok(SourceHints {
            face_box: self.face_box.clone()?,
            crop: self.crop(),
        })
    }

    pub fn controls(&self) -> MotionControls {
        MotionControls {
            head_motion: self.head_motion as f32,
            cfg_scale: self.cfg_scale as f32,
            sampling_steps: self.sampling_steps,
            expression_scale: self.expression_scale as f32,
            emotion: self.emotion.into(),
            gaze: self.gaze,
            window_overlap: self.window_overlap,
            head_distance: self.head_distance as f32,
            emotion_strength: self.emotion_strength as f32,
        }
    }

    /// Takes a new value of property `name`.
    pub fn set(&mut self, name: &str, value: &glib::Value) -> (Changed, Warning) {
        let get_f64 = || value.get::<f64>().expect("type checked upstream");
        match name {
            "image" => {
                self.image = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|path| !path.is_empty())
                    .map(PathBuf::from);
                (Changed::Portrait, None)
            }
            "face-box" => {
                self.face_box_text = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|text| !text.trim().is_empty());
                self.face_box = self
                    .face_box_text
                    .as_deref()
                    .map(str::parse::<FaceBox>)
                    .transpose();
                let warning = self.face_box.as_ref().err().map(ToString::to_string);
                (Changed::Portrait, warning)
            }
            "crop-scale" => {
                self.crop_scale = get_f64();
                (Changed::Portrait, None)
            }
            "crop-offset-y" => {
                self.crop_offset_y = get_f64();
                (Changed::Portrait, None)
            }
            "model" => {
                self.model = string_or(value, DEFAULT_MODEL);
                (Changed::Value, None)
            }
            "motion" => {
                self.motion = value.get().expect("type checked upstream");
                (Changed::Value, None)
            }
            "blinks" => {
                self.blinks = value.get().expect("type checked upstream");
                (Changed::Value, None)
            }
            "pace" => {
                self.pace = value.get().expect("type checked upstream");
                (Changed::Value, None)
            }
            "device" => {
                self.device_text = string_or(value, DEFAULT_DEVICE);
                self.device = self.device_text.parse();
                // Checked again (against the GPUs present) in NULL->READY.
                let warning = self.device.as_ref().err().map(ToString::to_string);
                (Changed::Value, warning)
            }
            "precision" => {
                self.precision = value.get().expect("type checked upstream");
                (Changed::Value, None)
            }
            "seed" => {
                self.seed = value.get().expect("type checked upstream");
                (Changed::Value, None)
            }
            "head-motion" => {
                self.head_motion = get_f64();
                (Changed::Value, None)
            }
            "cfg-scale" => {
                self.cfg_scale = get_f64();
                (Changed::Value, None)
            }
            "sampling-steps" => {
                self.sampling_steps = value.get().expect("type checked upstream");
                (Changed::Value, None)
            }
            "expression-scale" => {
                self.expression_scale = get_f64();
                (Changed::Value, None)
            }
            "emotion" => {
                self.emotion = value.get().expect("type checked upstream");
                (Changed::Value, None)
            }
            "gaze" => {
                let text = string_or(value, "camera");
                match Gaze::parse(&text) {
                    Ok(gaze) => {
                        self.gaze = gaze;
                        self.gaze_text = text;
                        (Changed::Value, None)
                    }
                    Err(why) => (
                        Changed::Value,
                        Some(format!("{why}; keeping gaze=\"{}\"", self.gaze_text)),
                    ),
                }
            }
            "window-overlap" => {
                self.window_overlap = value.get().expect("type checked upstream");
                (Changed::Value, None)
            }
            "head-distance" => {
                self.head_distance = get_f64();
                (Changed::Value, None)
            }
            "emotion-strength" => {
                self.emotion_strength = get_f64();
                (Changed::Value, None)
            }
            "latency" => {
                let latency_ms: u32 = value.get().expect("type checked upstream");
                let changed = std::mem::replace(&mut self.latency_ms, latency_ms) != latency_ms;
                (
                    if changed {
                        Changed::Latency
                    } else {
                        Changed::Value
                    },
                    None,
                )
            }
            other => unreachable!("unknown property {other}"),
        }
    }

    /// The value of a settable property `name`.
    pub fn get(&self, name: &str) -> Option<glib::Value> {
        Some(match name {
            "image" => self
                .image
                .as_ref()
                .map(|path| path.to_string_lossy().into_owned())
                .to_value(),
            "face-box" => self.face_box_text.to_value(),
            "model" => self.model.to_value(),
            "motion" => self.motion.to_value(),
            "blinks" => self.blinks.to_value(),
            "pace" => self.pace.to_value(),
            "device" => self.device_text.to_value(),
            "precision" => self.precision.to_value(),
            "seed" => self.seed.to_value(),
            "latency" => self.latency_ms.to_value(),
            "head-motion" => self.head_motion.to_value(),
            "cfg-scale" => self.cfg_scale.to_value(),
            "sampling-steps" => self.sampling_steps.to_value(),
            "expression-scale" => self.expression_scale.to_value(),
            "emotion" => self.emotion.to_value(),
            "gaze" => self.gaze_text.to_value(),
            "window-overlap" => self.window_overlap.to_value(),
            "head-distance" => self.head_distance.to_value(),
            "emotion-strength" => self.emotion_strength.to_value(),
            "crop-scale" => self.crop_scale.to_value(),
            "crop-offset-y" => self.crop_offset_y.to_value(),
            _ => return None,
        })
    }
}

/// Every property, as gst-inspect-1.0 lists it.
pub fn properties() -> &'static [glib::ParamSpec] {
    static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
        vec![
            glib::ParamSpecString::builder("image")
                .nick("Portrait image")
                .blurb(
                    "Path of the portrait to animate (PNG, JPEG or WebP; any size; one \
                     frontal face). Required. Can be changed while playing: the new \
                     portrait is prepared in the background and appears at a frame boundary",
                )
                .mutable_playing()
                .build(),
            glib::ParamSpecString::builder("face-box")
                .nick("Face box")
                .blurb(
                    "Where the face is in the image, \"x,y,width,height\" in image pixels; \
                     skips face detection (for faces it misses). Empty: detect",
                )
                .mutable_playing()
                .build(),
            glib::ParamSpecString::builder("model")
                .nick("Model")
                .blurb(
                    "Where the renderer's weights come from: \"builtin\" (the warp renderer, \
                     no downloaded weights) or the directory of a model bundle made by \
                     tools/liveportrait/convert.py (LivePortrait's networks draw the face; \
                     the bundle may also hold a motion generator, see motion)",
                )
                .default_value(Some(DEFAULT_MODEL))
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder::<MotionProperty>("motion")
                .nick("Motion source")
                .blurb(
                    "What turns the audio into motion: \"builtin\" (the mouth model trained \
                     here, procedural blinks and head motion; drawn by either renderer), \
                     \"joyvasa\" (the bundle's JoyVASA generator; needs model=<bundle>), or \
                     \"auto\": the bundle's generator if it has one, else builtin",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder::<BlinksProperty>("blinks")
                .nick("Blinks")
                .blurb(
                    "Where blinks come from: \"auto\" (the motion source's own) or \
                     \"procedural\" (the builtin motion's natural blinks, also over a neural \
                     generator's eyes)",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder::<PaceProperty>("pace")
                .nick("Pace")
                .blurb(
                    "What sets the pace of the frames: \"auto\" (the pipeline clock when \
                     upstream is live, else the audio), \"clock\" (frames flow on the clock \
                     from PLAYING on, drawn as silence when their audio is late) or \"audio\" \
                     (each frame waits for its audio). Read at the start of each stream",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("device")
                .nick("Compute device")
                .blurb(
                    "Where frames are computed: \"auto\" (first CUDA GPU, else CPU), \
                     \"cpu\", \"cuda\" or \"cuda:N\"",
                )
                .default_value(Some(DEFAULT_DEVICE))
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder::<PrecisionProperty>("precision")
                .nick("Neural precision")
                .blurb(
                    "Number format of the neural renderer's networks (LivePortrait): float32 \
                     (as trained), bfloat16 (faster on CPUs with AVX-512 BF16 and on recent \
                     GPUs, slightly less exact) or float16 (CUDA only; what the reference \
                     uses on a GPU). The builtin motion and renderer and the motion generator \
                     always use float32",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("active-device")
                .nick("Active device")
                .blurb("The device in use (\"cpu\", \"cuda:0\", ...), known from READY on")
                .read_only()
                .build(),
            glib::ParamSpecUInt64::builder("seed")
                .nick("Random seed")
                .blurb(
                    "Seed of the random motion (blinks, head movement; the neural motion \
                     generator's diffusion noise): the same audio, portrait and seed give \
                     the same video",
                )
                .default_value(DEFAULT_SEED)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("latency")
                .nick("Audio lookahead (ms)")
                .blurb(
                    "How many milliseconds of audio after a frame the motion source may \
                     listen to before drawing it. More looks ahead for smoother lips; the \
                     pipeline's latency grows by the same amount",
                )
                .maximum(MAX_LATENCY_MS)
                .default_value(DEFAULT_LATENCY_MS)
                .mutable_playing()
                .build(),
            glib::ParamSpecDouble::builder("head-motion")
                .nick("Head motion")
                .blurb(
                    "How much the head moves: 0 = still, 1 = natural (livelier while \
                     speaking, gentle in silence), 2 = animated. Changes ease in over \
                     half a second",
                )
                .minimum(0.0)
                .maximum(MAX_HEAD_MOTION)
                .default_value(DEFAULT_HEAD_MOTION)
                .mutable_playing()
                .build(),
            glib::ParamSpecDouble::builder("crop-scale")
                .nick("Face crop scale")
                .blurb(
                    "Neural renderer: size of the square window around the face that the \
                     network animates, in face sizes (larger shows more hair and \
                     shoulders, in less detail)",
                )
                .minimum(MIN_CROP_SCALE)
                .maximum(MAX_CROP_SCALE)
                .default_value(f64::from(DEFAULT_CROP_SCALE))
                .mutable_playing()
                .build(),
            glib::ParamSpecDouble::builder("crop-offset-y")
                .nick("Face crop vertical offset")
                .blurb(
                    "Neural renderer: moves the window around the face along the face's \
                     vertical axis, in window sizes (negative = up)",
                )
                .minimum(-MAX_CROP_OFFSET_Y)
                .maximum(MAX_CROP_OFFSET_Y)
                .default_value(f64::from(DEFAULT_CROP_OFFSET_Y))
                .mutable_playing()
                .build(),
            glib::ParamSpecDouble::builder("cfg-scale")
                .nick("Audio guidance scale")
                .blurb(
                    "Neural motion (JoyVASA, Ditto): classifier-free guidance on the audio; \
                     higher follows the speech more strongly, 1 = unguided, 0 = the model's \
                     own (JoyVASA 2.8, Ditto 2). Applies from the next window of motion",
                )
                .minimum(0.0)
                .maximum(MAX_CFG_SCALE)
                .default_value(0.0)
                .mutable_playing()
                .build(),
            glib::ParamSpecUInt::builder("sampling-steps")
                .nick("Diffusion sampling steps")
                .blurb(
                    "Neural motion (JoyVASA, Ditto): denoising steps per window; 0 = the \
                     model's own (JoyVASA: as many as it was trained with; Ditto: the \
                     bundle's, 50 offline and 10 live), fewer are faster. Applies from the \
                     next window",
                )
                .maximum(MAX_SAMPLING_STEPS)
                .default_value(0)
                .mutable_playing()
                .build(),
            glib::ParamSpecDouble::builder("expression-scale")
                .nick("Expression scale")
                .blurb(
                    "Neural motion (JoyVASA): how strongly the generated expression \
                     (brows, eyes, cheeks) changes the face; 0 = the portrait's own, \
                     1 = as generated. The lips always follow the speech",
                )
                .minimum(0.0)
                .maximum(MAX_EXPRESSION_SCALE)
                .default_value(1.0)
                .mutable_playing()
                .build(),
            glib::ParamSpecEnum::builder::<EmotionProperty>("emotion")
                .nick("Emotion")
                .blurb(
                    "The emotion the face shows, eased in over about 300 ms: builtin \
                     renderer: mouth corners, cheeks, brows and lids; LivePortrait with \
                     builtin or JoyVASA motion: LivePortrait's expression edits; Ditto: its \
                     emotion condition (one of the eight classes it was trained on), from \
                     the next window of motion",
                )
                .mutable_playing()
                .build(),
            glib::ParamSpecDouble::builder("emotion-strength")
                .nick("Emotion strength")
                .blurb(
                    "How strongly the emotion shows: 0 = not at all .. 1 = fully (Ditto: \
                     the condition mixed with neutral's)",
                )
                .minimum(0.0)
                .maximum(1.0)
                .default_value(1.0)
                .mutable_playing()
                .build(),
            glib::ParamSpecString::builder("gaze")
                .nick("Gaze")
                .blurb(
                    "Where the eyes look: \"camera\" (as in the portrait) or \"x,y\", \
                     degrees away from it (x to the image's right, y up, each within 30), \
                     eased in over about 300 ms: the irises turn (builtin), LivePortrait's \
                     eyeball edit, Ditto's eye conditions and gaze fix",
                )
                .default_value(Some("camera"))
                .mutable_playing()
                .build(),
            glib::ParamSpecDouble::builder("head-distance")
                .nick("Head distance")
                .blurb(
                    "Apparent distance to the camera, as a scale of the head: 0.8 = further \
                     away .. 1 = as in the photo .. 1.25 = closer; eased in over about 300 ms",
                )
                .minimum(f64::from(MotionControls::HEAD_DISTANCE.0))
                .maximum(f64::from(MotionControls::HEAD_DISTANCE.1))
                .default_value(1.0)
                .mutable_playing()
                .build(),
            glib::ParamSpecUInt::builder("window-overlap")
                .nick("Window overlap")
                .blurb(
                    "Ditto: frames two windows of motion share; 0 = the bundle's (10 when \
                     not live, 70 live: each window adds 80 - overlap frames, so less overlap \
                     is less work per frame but a longer wait for audio). Taken when a \
                     stream starts",
                )
                .maximum(79)
                .default_value(0)
                .mutable_playing()
                .build(),
            glib::ParamSpecUInt64::builder("frames-produced")
                .nick("Frames produced")
                .blurb("Frames generated since the element last went to PAUSED")
                .read_only()
                .build(),
            glib::ParamSpecUInt64::builder("frames-without-audio")
                .nick("Frames drawn without their audio")
                .blurb(
                    "Live: frames whose audio had not arrived when they were due, drawn as \
                     silence and pushed on time (since the element last went to PAUSED)",
                )
                .read_only()
                .build(),
            glib::ParamSpecUInt64::builder("frames-repeated")
                .nick("Frames repeated")
                .blurb(
                    "Live: frames that could not be drawn in time (a machine too slow for \
                     the engine, a stall) and were filled by the last frame again, so the \
                     video stays on time (since the element last went to PAUSED)",
                )
                .read_only()
                .build(),
            glib::ParamSpecUInt64::builder("late-audio-dropped")
                .nick("Late audio dropped (ns)")
                .blurb(
                    "Live: audio that arrived after the frames of its time had been drawn, \
                     and was dropped, in nanoseconds (since the element last went to PAUSED)",
                )
                .read_only()
                .build(),
            glib::ParamSpecDouble::builder("mean-generation-ms")
                .nick("Mean generation time (ms)")
                .blurb("Mean time to generate one frame (motion, rendering, packing), in ms")
                .read_only()
                .build(),
            glib::ParamSpecDouble::builder("max-generation-ms")
                .nick("Max generation time (ms)")
                .blurb("Longest time taken to generate one frame, in ms")
                .read_only()
                .build(),
        ]
    });
    PROPERTIES.as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_parsed_once_and_bad_ones_warned_about() {
        let mut settings = Settings::default();
        let (changed, warning) = settings.set("device", &"cuda:x".to_value());
        assert_eq!(changed, Changed::Value);
        assert!(warning.unwrap().contains("\"cuda:x\""));
        assert!(settings.device.is_err());
        assert_eq!(
            settings.get("device").unwrap().get::<String>().unwrap(),
            "cuda:x"
        );
        settings.set("device", &None::<String>.to_value());
        assert_eq!(settings.device, Ok(DeviceRequest::Auto));

        let (changed, warning) = settings.set("face-box", &"1,2,3".to_value());
        assert_eq!(changed, Changed::Portrait);
        assert!(warning.is_some() && settings.hints().is_err());
        settings.set("face-box", &" 10, 20, 30, 40 ".to_value());
        assert!(settings.hints().unwrap().face_box.is_some());
        settings.set("face-box", &"".to_value());
        assert_eq!(settings.hints().unwrap().face_box, None);

        assert_eq!(
            settings.set("latency", &100u32.to_value()).0,
            Changed::Value
        );
        assert_eq!(
            settings.set("latency", &40u32.to_value()).0,
            Changed::Latency
        );
        assert_eq!(settings.lookahead_samples(), 640);
    }
}
