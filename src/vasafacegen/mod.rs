//! The `vasafacegen` element: a still portrait and speech in, a talking face out.
//!
//! The element is the only GStreamer code of the library. Its parts:
//! - `imp`: the element itself (pads, state changes, building the engine);
//! - `settings`: the properties, their defaults and checks, parsed once;
//! - `intake`: the sink pad (audio in, events, back-pressure);
//! - `timeline`: which samples each frame covers and when it is shown (no GStreamer);
//! - `task`: the src pad task that makes and pushes frames;
//! - `output`: caps negotiation, buffer pools, packing frames into buffers;
//! - `latency`: the latency answer and messages;
//! - `portrait`: preparing portraits, at READY->PAUSED and in the background.

use gst::glib;
use gst::prelude::*;

use crate::core::{BlinkSource, Emotion, Precision};
use crate::motion::MotionChoice;

mod imp;
mod intake;
mod latency;
mod live;
mod output;
mod portrait;
mod settings;
mod task;
mod timeline;

glib::wrapper! {
    pub struct VasaFaceGen(ObjectSubclass<imp::VasaFaceGen>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    MotionProperty::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    PrecisionProperty::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    BlinksProperty::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    PaceProperty::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    output::register_frame_meta();
    gst::Element::register(
        Some(plugin),
        "vasafacegen",
        gst::Rank::NONE,
        VasaFaceGen::static_type(),
    )
}

/// The `motion` property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[enum_type(name = "GstVasaFaceGenMotion")]
pub enum MotionProperty {
    #[default]
    #[enum_value(
        name = "Auto: the bundle's motion generator if it has one, else the builtin motion",
        nick = "auto"
    )]
    Auto,
    #[enum_value(
        name = "Builtin: the mouth model trained here, procedural blinks and head motion",
        nick = "builtin"
    )]
    Builtin,
    #[enum_value(
        name = "JoyVASA: the diffusion motion generator of the model bundle",
        nick = "joyvasa"
    )]
    JoyVasa,
    #[enum_value(
        name = "Ditto: the model bundle's motion-space diffusion, with emotion and gaze",
        nick = "ditto"
    )]
    Ditto,
}

impl From<MotionProperty> for MotionChoice {
    fn from(value: MotionProperty) -> Self {
        match value {
            MotionProperty::Auto => Self::Auto,
            MotionProperty::Builtin => Self::Builtin,
            MotionProperty::JoyVasa => Self::JoyVasa,
            MotionProperty::Ditto => Self::Ditto,
        }
    }
}

/// The `emotion` property: the eight classes Ditto conditions on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[enum_type(name = "GstVasaFaceGenEmotion")]
pub enum EmotionProperty {
    #[default]
    #[enum_value(name = "Neutral", nick = "neutral")]
    Neutral,
    #[enum_value(name = "Happy", nick = "happy")]
    Happy,
    #[enum_value(name = "Sad", nick = "sad")]
    Sad,
    #[enum_value(name = "Angry", nick = "angry")]
    Angry,
    #[enum_value(name = "Surprised", nick = "surprised")]
    Surprised,
    #[enum_value(name = "Disgusted", nick = "disgusted")]
    Disgusted,
    #[enum_value(name = "Fearful", nick = "fearful")]
    Fearful,
    #[enum_value(name = "Contempt", nick = "contempt")]
    Contempt,
}

impl From<EmotionProperty> for Emotion {
    fn from(value: EmotionProperty) -> Self {
        match value {
            EmotionProperty::Neutral => Self::Neutral,
            EmotionProperty::Happy => Self::Happy,
            EmotionProperty::Sad => Self::Sad,
            EmotionProperty::Angry => Self::Angry,
            EmotionProperty::Surprised => Self::Surprised,
            EmotionProperty::Disgusted => Self::Disgusted,
            EmotionProperty::Fearful => Self::Fearful,
            EmotionProperty::Contempt => Self::Contempt,
        }
    }
}

/// The `precision` property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[enum_type(name = "GstVasaFaceGenPrecision")]
pub enum PrecisionProperty {
    #[default]
    #[enum_value(name = "float32: as the networks were trained", nick = "float32")]
    Float32,
    #[enum_value(
        name = "bfloat16: faster on CPUs with AVX-512 BF16 or AMX and on recent GPUs",
        nick = "bfloat16"
    )]
    BFloat16,
    #[enum_value(
        name = "float16: CUDA only, the reference's choice on a GPU",
        nick = "float16"
    )]
    Float16,
}

impl From<PrecisionProperty> for Precision {
    fn from(value: PrecisionProperty) -> Self {
        match value {
            PrecisionProperty::Float32 => Self::Float32,
            PrecisionProperty::BFloat16 => Self::BFloat16,
            PrecisionProperty::Float16 => Self::Float16,
        }
    }
}

/// The `blinks` property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[enum_type(name = "GstVasaFaceGenBlinks")]
pub enum BlinksProperty {
    #[default]
    #[enum_value(
        name = "Auto: the motion source's own (procedural for builtin, as generated for JoyVASA)",
        nick = "auto"
    )]
    Auto,
    #[enum_value(
        name = "Procedural: the builtin motion's blinks with any motion source",
        nick = "procedural"
    )]
    Procedural,
}

impl From<BlinksProperty> for BlinkSource {
    fn from(value: BlinksProperty) -> Self {
        match value {
            BlinksProperty::Auto => Self::Auto,
            BlinksProperty::Procedural => Self::Procedural,
        }
    }
}

/// The `pace` property: what sets the pace of the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[enum_type(name = "GstVasaFaceGenPace")]
pub enum PaceProperty {
    #[default]
    #[enum_value(
        name = "Auto: the pipeline clock when upstream is live, else the audio",
        nick = "auto"
    )]
    Auto,
    #[enum_value(
        name = "Clock: frames on the pipeline clock, drawn as silence when audio is late",
        nick = "clock"
    )]
    Clock,
    #[enum_value(
        name = "Audio: each frame waits for its audio, ceil(T x fps) frames for T seconds",
        nick = "audio"
    )]
    Audio,
}
