//! Where audio becomes motion: one axis of the engine. A [`MotionSource`] turns the audio
//! window of each frame (plus the live controls) into that frame's [`Motion`]; which
//! renderer draws it is chosen independently (see `crate::render` and `crate::engine`).
//!
//! - [`builtin`]: the mouth model trained here, with procedural blinks and head motion;
//!   face parameters; needs no downloaded weights.
//! - [`joyvasa`]: JoyVASA's diffusion transformer from a bundle; LivePortrait keypoint
//!   motion.
//! - [`ditto`]: Ditto's motion-space diffusion transformer from a bundle, offline or in
//!   online windows, with emotion and gaze; LivePortrait keypoint motion.
//!
//! What several sources share (blinks, head motion, the lips' silence rule) is in
//! [`procedural`]. A new source is one more module here, one more [`MotionChoice`] and
//! one arm in [`create`].

pub mod builtin;
pub mod ditto;
pub mod joyvasa;
pub mod procedural;
pub mod prosody;

use std::fmt;

use tch::Device;

use crate::bundle::Bundle;
use crate::core::{
    AudioWindow, BlinkSource, CpuThreads, Error, Motion, MotionControls, MotionKind, PortraitCues,
};

/// Turns audio into motion, frame by frame. Owned by one thread at a time (the element's
/// streaming task).
pub trait MotionSource: Send {
    /// The source's name as the `motion` property spells it.
    fn name(&self) -> &'static str;

    /// The kind of motion [`MotionSource::next`] gives.
    fn kind(&self) -> MotionKind;

    /// The device the source computes on.
    fn device(&self) -> Device;

    /// How many CPU threads its work wants (see [`crate::core::threads`]).
    fn cpu_threads(&self) -> CpuThreads;

    /// How much audio before a frame's start the source wants to see.
    fn history_samples(&self) -> usize;

    /// How much audio after a frame's end the source wants before making its motion,
    /// given the lookahead the user allows (`latency`) and whether the stream is live.
    /// Sources that work on whole windows of audio ask for more when it is not live.
    fn lookahead_samples(&self, allowed: u64, _live: bool) -> u64 {
        allowed
    }

    /// Forgets the stream so far (new segment, flush): smoothing, blink timers and such.
    /// Random motion restarts from `seed`, so a stream replays identically.
    fn reset(&mut self, seed: u64);

    /// The audio stopped at sample `at` (the next frame's start) and what was received
    /// after it is gone: barge-in, a flush while live. The lips must go to rest as
    /// silence would take them; blinks and head motion carry on from where they are.
    /// Sources that keep no audio of their own need do nothing.
    fn interrupt(&mut self, _at: u64) {}

    /// The portrait being drawn, as the renderer measured it (called before the first
    /// frame and whenever the portrait changes). Sources that condition on the portrait
    /// (Ditto) keep what they need; the others need do nothing.
    fn use_portrait(&mut self, _cues: &PortraitCues) {}

    /// New live controls; sources ease into them rather than jump.
    fn set_controls(&mut self, controls: &MotionControls);

    /// The motion of one frame, from its audio window. Called once per frame, in order.
    fn next(&mut self, audio: &AudioWindow<'_>) -> Result<Motion, Error>;
}

/// The `motion` property: which source makes the motion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum MotionChoice {
    /// The bundle's motion generator if it has one (JoyVASA before Ditto), else the
    /// builtin motion.
    #[default]
    Auto,
    Builtin,
    JoyVasa,
    Ditto,
}

impl MotionChoice {
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Builtin => "builtin",
            Self::JoyVasa => "joyvasa",
            Self::Ditto => "ditto",
        }
    }
}

impl fmt::Display for MotionChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The source `choice` names, with `bundle` (if `model` is one) as the place its weights
/// come from. `auto` takes the bundle's generator if it has one.
pub fn create(
    choice: MotionChoice,
    bundle: Option<&Bundle>,
    device: Device,
    blinks: BlinkSource,
) -> Result<Box<dyn MotionSource>, Error> {
    let choice = match (choice, bundle) {
        (MotionChoice::Auto, Some(bundle)) if bundle.has_joyvasa() => MotionChoice::JoyVasa,
        (MotionChoice::Auto, Some(bundle)) if bundle.has_ditto() => MotionChoice::Ditto,
        (MotionChoice::Auto, _) => MotionChoice::Builtin,
        (chosen, _) => chosen,
    };
    match choice {
        MotionChoice::Auto | MotionChoice::Builtin => {
            Ok(Box::new(builtin::BuiltinMotion::new(device)?))
        }
        MotionChoice::JoyVasa => {
            let bundle = bundle.ok_or_else(|| {
                Error::Settings(
                    "motion=joyvasa needs JoyVASA's motion generator from a model bundle, but \
                     model=builtin has none: set model to the directory of a bundle converted \
                     with tools/liveportrait/convert.py --motion-generator (JoyVASA's keypoint \
                     motion is drawn by that bundle's LivePortrait renderer), or use \
                     motion=builtin"
                        .into(),
                )
            })?;
            Ok(Box::new(joyvasa::JoyVasaMotion::new(
                bundle, device, blinks,
            )?))
        }
        MotionChoice::Ditto => {
            let bundle = bundle.ok_or_else(|| {
                Error::Settings(
                    "motion=ditto needs Ditto's networks from a model bundle, but model=builtin                      has none: set model to the directory of a bundle converted with                      tools/liveportrait/convert.py --ditto-lmdm and --ditto-hubert (Ditto's                      keypoint motion is drawn by that bundle's LivePortrait renderer), or use                      motion=builtin"
                        .into(),
                )
            })?;
            Ok(Box::new(ditto::DittoMotion::new(bundle, device, blinks)?))
        }
    }
}
