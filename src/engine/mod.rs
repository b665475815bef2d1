//! An engine is one motion source and one renderer, chosen independently: the `motion`
//! property picks the source (builtin, JoyVASA, ...), `model` the renderer's weights
//! (`builtin`: the warp renderer; a bundle: LivePortrait's networks). The pair is checked
//! when it is made, so a renderer is never handed motion it cannot draw.
//!
//! The element drives an engine one frame at a time:
//! 1. once per portrait, off the streaming thread, the renderer's [`SourcePreparer`]
//!    turns the decoded image into a [`PreparedSource`] (face analysis and the like);
//! 2. per frame, [`Engine::motion`] turns the frame's audio window into a [`Motion`];
//! 3. per frame, [`Engine::render`] draws the prepared source in that motion at the
//!    negotiated size. The element packs it into the output buffer.
//!
//! Nothing here knows about GStreamer.

pub mod offline;

use std::path::PathBuf;
use std::sync::Arc;

use tch::Device;

use crate::bundle::Bundle;
use crate::core::{
    AudioWindow, BlinkSource, Error, FrameSize, Motion, MotionControls, Precision, use_cpu_threads,
};
use crate::motion::{self, MotionChoice, MotionSource};
use crate::render::liveportrait::LivePortraitRenderer;
use crate::render::warp::WarpRenderer;
use crate::render::{PreparedSource, Renderer, SourcePreparer};

/// Where the renderer's weights come from (the `model` property).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelChoice {
    /// The warp renderer: no weights.
    Builtin,
    /// A model bundle directory: LivePortrait's networks (and any motion generators).
    Bundle(PathBuf),
}

impl ModelChoice {
    /// The `model` property's text: `builtin` or a directory.
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "builtin" => Ok(Self::Builtin),
            dir if std::path::Path::new(dir).is_dir() => Ok(Self::Bundle(dir.into())),
            other => Err(Error::Settings(format!(
                "model \"{other}\" is neither \"builtin\" nor a model bundle directory (make \
                 one from the LivePortrait checkpoints with tools/liveportrait/convert.py, see \
                 the README)"
            ))),
        }
    }
}

/// Everything that decides which engine is built (the element's NULL->READY settings).
#[derive(Debug, Clone, PartialEq)]
pub struct EngineSpec {
    pub model: ModelChoice,
    pub motion: MotionChoice,
    pub blinks: BlinkSource,
    pub device: Device,
    /// What LivePortrait's networks compute in; the builtin motion and renderer and
    /// JoyVASA's generator always compute in float32.
    pub precision: Precision,
}

impl EngineSpec {
    /// The builtin pair on `device`.
    pub fn builtin(device: Device) -> Self {
        Self {
            model: ModelChoice::Builtin,
            motion: MotionChoice::Auto,
            blinks: BlinkSource::Auto,
            device,
            precision: Precision::Float32,
        }
    }

    /// A bundle's renderer with `motion` (auto: its generator if it has one).
    pub fn bundle(dir: impl Into<PathBuf>, motion: MotionChoice, device: Device) -> Self {
        Self {
            model: ModelChoice::Bundle(dir.into()),
            motion,
            ..Self::builtin(device)
        }
    }
}

/// A motion source and a renderer that can draw its motion.
pub struct Engine {
    motion: Box<dyn MotionSource>,
    renderer: Box<dyn Renderer>,
    /// The preparation the motion source was last told of.
    portrait_id: Option<u64>,
}

impl Engine {
    /// Builds the engine `spec` describes, loading weights (shared with other engines of
    /// the process). A pair that cannot work is an error naming both.
    pub fn new(spec: &EngineSpec) -> Result<Self, Error> {
        let bundle = match &spec.model {
            ModelChoice::Builtin => None,
            ModelChoice::Bundle(dir) => Some(Bundle::open(dir)?),
        };
        // Check what can be checked before loading any weights.
        if bundle.is_some() {
            spec.precision
                .check_device(spec.device)
                .map_err(Error::Settings)?;
        }
        if let Some(bundle) = &bundle {
            let missing = match spec.motion {
                MotionChoice::JoyVasa if !bundle.has_joyvasa() => {
                    Some(("JoyVASA motion generator", "--motion-generator"))
                }
                MotionChoice::Ditto if !bundle.has_ditto() => {
                    Some(("Ditto networks", "--ditto-lmdm and --ditto-hubert"))
                }
                _ => None,
            };
            if let Some((what, flags)) = missing {
                return Err(Error::Settings(format!(
                    "motion={}, but the bundle {} has no {what} (it holds {}): convert it in \
                     with tools/liveportrait/convert.py {flags}, or use motion=builtin or \
                     motion=auto",
                    spec.motion,
                    bundle.dir().display(),
                    match bundle.motion_generator_names() {
                        names if names.is_empty() => "none".to_owned(),
                        names => names.join(", "),
                    }
                )));
            }
        }
        let motion = motion::create(spec.motion, bundle.as_ref(), spec.device, spec.blinks)?;
        let renderer: Box<dyn Renderer> = match &bundle {
            None => Box::new(WarpRenderer::new(spec.device)),
            Some(bundle) => Box::new(LivePortraitRenderer::new(
                bundle,
                spec.device,
                spec.precision,
            )?),
        };
        Self::pair(motion, renderer)
    }

    /// A source and a renderer as they are; an error naming both if the renderer
    /// cannot draw the source's motion.
    pub fn pair(motion: Box<dyn MotionSource>, renderer: Box<dyn Renderer>) -> Result<Self, Error> {
        if !renderer.draws(motion.kind()) {
            return Err(Error::Settings(format!(
                "motion source \"{}\" makes {}, which {} cannot draw: pick a renderer that \
                 draws it (model=<a LivePortrait bundle>) or another motion source",
                motion.name(),
                motion.kind(),
                renderer.name()
            )));
        }
        Ok(Self {
            motion,
            renderer,
            portrait_id: None,
        })
    }

    /// The device frames are computed on.
    pub fn device(&self) -> Device {
        self.renderer.device()
    }

    /// The motion source's name (as the `motion` property spells it).
    pub fn motion_name(&self) -> &'static str {
        self.motion.name()
    }

    pub fn renderer_name(&self) -> &'static str {
        self.renderer.name()
    }

    /// How much audio before a frame's start the motion source wants to see.
    pub fn history_samples(&self) -> usize {
        self.motion.history_samples()
    }

    /// How much audio after a frame's end the motion source wants before it is drawn.
    pub fn lookahead_samples(&self, allowed: u64, live: bool) -> u64 {
        self.motion.lookahead_samples(allowed, live)
    }

    /// Forgets the stream so far; random motion restarts from `seed`.
    pub fn reset(&mut self, seed: u64) {
        self.motion.reset(seed);
    }

    /// The audio stopped at sample `at` (barge-in); see [`MotionSource::interrupt`].
    pub fn interrupt(&mut self, at: u64) {
        self.motion.interrupt(at);
    }

    pub fn set_controls(&mut self, controls: &MotionControls) {
        self.motion.set_controls(controls);
    }

    /// The object that prepares portraits for the renderer, usable from any thread.
    pub fn source_preparer(&self) -> Arc<dyn SourcePreparer> {
        self.renderer.source_preparer()
    }

    /// Tells the motion source of the portrait being drawn (what the renderer measured
    /// of it), when it is not the one it was last told of.
    pub fn use_portrait(&mut self, source: &PreparedSource) {
        if self.portrait_id != Some(source.id) {
            self.portrait_id = Some(source.id);
            self.motion.use_portrait(&source.cues);
        }
    }

    /// The motion of one frame. Called once per frame, in order, after
    /// [`Engine::use_portrait`].
    pub fn motion(&mut self, audio: &AudioWindow<'_>) -> Result<Motion, Error> {
        use_cpu_threads(self.motion.device(), self.motion.cpu_threads());
        self.motion.next(audio)
    }

    /// Draws `source` in `motion` at `size`: `(3, height, width)` float in `[0, 1]`.
    pub fn render(
        &mut self,
        motion: &Motion,
        source: &PreparedSource,
        size: FrameSize,
    ) -> Result<tch::Tensor, Error> {
        use_cpu_threads(self.renderer.device(), self.renderer.cpu_threads());
        self.renderer.render(motion, source, size)
    }
}
