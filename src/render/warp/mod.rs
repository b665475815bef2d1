//! The builtin renderer: a dense backward warp of the portrait (grid_sample), driven by
//! the motion parameters, plus synthesis of what the portrait does not show (the inside
//! of a mouth opened wider than in the photo, eyelids over the eyes).
//!
//! Everything is computed in *face units*: origin between the eyes, u along the eye
//! line (towards the image-right eye), v perpendicular to it (towards the chin), one
//! unit = the inter-ocular distance (IOD). Only a region of interest around the head is
//! warped; outside the head-and-neck mask the frame is the fitted portrait, untouched.
//!
//! Two passes per frame (three with a head distance other than 1):
//! 1. local deformations, in two regions split by a line between the eyes and the mouth:
//!    below it the jaw (a piecewise-linear remap of v per column, through knots at the
//!    nose base, the lips' opening, the chin and the neck), lip spread/rounding and the
//!    painted mouth cavity; above it eyelids (with lash lines) and brows;
//! 2. head motion: roll about the neck, yaw/pitch parallax, translation, all weighted
//!    by a feathered head mask that is exactly zero outside it. The head's displacement
//!    is smooth, so it is computed on a coarse grid and interpolated.
//! 3. head distance (`zoom.rs`): the whole frame scaled about the face, fading to none
//!    at the frame's edges.
//!
//! The face controls (`expression.rs`) act in the first pass: the emotion as facial
//! actions (mouth corners, cheeks, brows, lids), the gaze as the irises' shift.
//!
//! Work scales with the face's area in the frame; parts with nothing to do (no blink,
//! a still head) are skipped.

mod expression;
mod field;
mod rig;
mod zoom;

use std::sync::Arc;

use tch::{Device, Tensor};

pub use self::rig::{FaceRig, MAX_GAP};
use super::{PerSourceAndSize, PreparedSource, Renderer, SourceHints, SourcePreparer, fit};
use crate::core::{CpuThreads, Error, FrameSize, Motion, MotionKind, guarded};
use crate::portrait::Portrait;

/// The builtin renderer: draws face parameters by warping the portrait.
pub struct WarpRenderer {
    device: Device,
    rig: PerSourceAndSize<FaceRig>,
}

impl WarpRenderer {
    pub fn new(device: Device) -> Self {
        Self {
            device,
            rig: PerSourceAndSize::default(),
        }
    }

    /// The rig for `source` at `size`, built on first use (a frame-size change or a new
    /// portrait costs one rebuild, a few milliseconds).
    pub fn rig(&mut self, source: &PreparedSource, size: FrameSize) -> Result<&FaceRig, Error> {
        let device = self.device;
        self.rig.get_or_build(source, size, || {
            let (placement, frame) = fit::fitted_frame(&source.portrait, size, device)?;
            guarded("preparing the face rig", || {
                FaceRig::new(&source.face.layout, &placement, &frame, size)
            })?
        })
    }
}

/// The builtin renderer's preparation: the face analysis alone.
struct WarpPreparer;

impl SourcePreparer for WarpPreparer {
    fn cache_key(&self) -> String {
        "builtin".into()
    }

    fn prepare(&self, portrait: Portrait, hints: &SourceHints) -> Result<PreparedSource, Error> {
        let face = crate::face::analyze(&portrait, hints.face_box)?;
        Ok(PreparedSource::new(portrait, face))
    }
}

impl Renderer for WarpRenderer {
    fn name(&self) -> &'static str {
        "the builtin warp renderer"
    }

    fn draws(&self, kind: MotionKind) -> bool {
        kind == MotionKind::Face
    }

    fn device(&self) -> Device {
        self.device
    }

    fn cpu_threads(&self) -> CpuThreads {
        CpuThreads::One
    }

    fn source_preparer(&self) -> Arc<dyn SourcePreparer> {
        Arc::new(WarpPreparer)
    }

    fn render(
        &mut self,
        motion: &Motion,
        source: &PreparedSource,
        size: FrameSize,
    ) -> Result<Tensor, Error> {
        let Motion::Face(face) = motion else {
            return Err(super::cannot_draw(self.name(), motion));
        };
        let rig = self.rig(source, size)?;
        guarded("rendering a frame", || rig.render(face))
    }
}
