//! The src pad's side of the frames: the formats it offers, caps negotiation (downstream's
//! preference fixated towards 512x512 at 25 fps), the buffer pool, and packing a drawn
//! frame into a video buffer with its timestamps.

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_video::prelude::*;

use super::imp::{CAT, VasaFaceGen};
use super::timeline::FrameSlot;
use crate::core::{FrameRate, FrameSize};
use crate::render::pack::{PixelLayout, pack_frame};

/// The name of the custom meta every frame carries (see [`FrameNotes`]).
pub const FRAME_META: &str = "VasaFaceGenFrameMeta";

/// What a frame carries beside its pixels, as a custom meta named [`FRAME_META`] with
/// the fields `audio-missing` (boolean: live, its audio had not come when it was due,
/// so it was drawn as silence), for face-parameter motion (builtin) `mouth-open`
/// (double, 0 closed .. 1 wide open), `eyes-closed` (0 open .. 1 shut) and `head-yaw`,
/// `head-pitch`, `head-roll` (degrees), and for keypoint motion (JoyVASA) `lips-at-rest`
/// (double, 1 when the silence rule holds the lips at the portrait's own); `repeated`
/// (boolean) is true on a frame that is the last one again, filling the slot of a frame
/// that could not be drawn in time (live). Applications
/// read it to show whether the avatar speaks; the tests read it to check the lips
/// without image analysis.
pub struct FrameNotes {
    pub audio_missing: bool,
    pub face: Option<crate::core::FaceMotion>,
    pub lips_at_rest: Option<f32>,
}

/// Registers [`FRAME_META`] (plugin load).
pub fn register_frame_meta() {
    if !gst::meta::CustomMeta::is_registered(FRAME_META) {
        gst::meta::CustomMeta::register_simple(FRAME_META);
    }
}

const DEFAULT_WIDTH: i32 = 512;
const DEFAULT_HEIGHT: i32 = 512;
pub const MIN_SIZE: i32 = 64;
pub const MAX_SIZE: i32 = 4096;
const DEFAULT_FPS: (i32, i32) = (25, 1);
pub const MAX_FPS: i32 = 120;

/// The video formats the src pad offers, with the byte layout each packs into.
const FORMATS: [(gst_video::VideoFormat, PixelLayout); 6] = [
    (gst_video::VideoFormat::Rgba, PixelLayout::Rgba),
    (gst_video::VideoFormat::Bgra, PixelLayout::Bgra),
    (gst_video::VideoFormat::Rgbx, PixelLayout::Rgbx),
    (gst_video::VideoFormat::Bgrx, PixelLayout::Bgrx),
    (gst_video::VideoFormat::Rgb, PixelLayout::Rgb),
    (gst_video::VideoFormat::Bgr, PixelLayout::Bgr),
];

/// The src pad template's caps.
pub fn template_caps() -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format_list(FORMATS.map(|(format, _)| format))
        .width_range(MIN_SIZE..=MAX_SIZE)
        .height_range(MIN_SIZE..=MAX_SIZE)
        .framerate_range(gst::Fraction::new(1, 1)..=gst::Fraction::new(MAX_FPS, 1))
        .pixel_aspect_ratio(gst::Fraction::new(1, 1))
        .build()
}

/// Negotiated output.
pub struct Output {
    caps: gst::Caps,
    info: gst_video::VideoInfo,
    layout: PixelLayout,
    pub rate: FrameRate,
    pub size: FrameSize,
    pool: gst::BufferPool,
}

impl Output {
    /// Releases the buffer pool.
    pub fn close(self) {
        let _ = self.pool.set_active(false);
    }
}

impl VasaFaceGen {
    /// Negotiates output caps with downstream. Returns the new output and its caps event
    /// when the caps changed, `None` when they are what `current` has.
    pub(super) fn negotiate(
        &self,
        current: Option<&Output>,
    ) -> Result<Option<(Output, gst::Event)>, gst::FlowError> {
        let template = self.srcpad.pad_template_caps();
        let peer = self.srcpad.peer_query_caps(Some(&template));
        if peer.is_empty() {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("Downstream accepts no video vasafacegen can produce"),
                ["vasafacegen produces {template}; put videoconvert and videoscale after it"]
            );
            return Err(gst::FlowError::NotNegotiated);
        }
        let mut caps = peer;
        caps.truncate();
        {
            let structure = caps.make_mut().structure_mut(0).expect("non-empty");
            structure.fixate_field_nearest_int("width", DEFAULT_WIDTH);
            structure.fixate_field_nearest_int("height", DEFAULT_HEIGHT);
            structure.fixate_field_nearest_fraction(
                "framerate",
                gst::Fraction::new(DEFAULT_FPS.0, DEFAULT_FPS.1),
            );
        }
        caps.fixate();
        if current.is_some_and(|output| output.caps == caps) {
            return Ok(None);
        }
        let negotiation_error = |what: String| {
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ("{what}"));
            gst::FlowError::NotNegotiated
        };
        let info = gst_video::VideoInfo::from_caps(&caps)
            .map_err(|err| negotiation_error(format!("Unusable video caps {caps}: {err}")))?;
        let layout = FORMATS
            .iter()
            .find(|(format, _)| *format == info.format())
            .map(|(_, layout)| *layout)
            .ok_or_else(|| {
                negotiation_error(format!("Unsupported video format {:?}", info.format()))
            })?;
        let rate = FrameRate::new(info.fps().numer(), info.fps().denom())
            .ok_or_else(|| negotiation_error(format!("Unusable frame rate in {caps}")))?;
        let pool = gst_video::VideoBufferPool::new();
        let mut config = pool.config();
        config.set_params(Some(&caps), info.size() as u32, 2, 0);
        pool.set_config(config)
            .and_then(|_| pool.set_active(true))
            .map_err(|err| {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::NoSpaceLeft,
                    ("Cannot allocate video buffers for {caps}: {err}")
                );
                gst::FlowError::Error
            })?;
        gst::info!(CAT, imp = self, "output caps {caps}");
        let event = gst::event::Caps::new(&caps);
        Ok(Some((
            Output {
                size: FrameSize {
                    width: info.width(),
                    height: info.height(),
                },
                caps,
                info,
                layout,
                rate,
                pool: pool.upcast(),
            },
            event,
        )))
    }

    /// A pooled buffer holding `frame` (`(3, H, W)` float in `[0, 1]`) for `slot`.
    pub(super) fn frame_buffer(
        &self,
        output: &Output,
        slot: &FrameSlot,
        frame: &tch::Tensor,
        notes: &FrameNotes,
    ) -> Result<gst::Buffer, gst::FlowError> {
        let mut buffer = output.pool.acquire_buffer(None).inspect_err(|&err| {
            if err != gst::FlowError::Flushing {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Failed,
                    ("No video buffer: {err:?}")
                );
            }
        })?;
        {
            let buffer = buffer.get_mut().expect("fresh from the pool");
            buffer.set_pts(gst::ClockTime::from_nseconds(slot.pts_ns));
            buffer.set_duration(gst::ClockTime::from_nseconds(slot.duration_ns));
            buffer.set_offset(slot.span.index);
            buffer.set_offset_end(slot.span.index + 1);
            if slot.is_first() {
                buffer.set_flags(gst::BufferFlags::DISCONT);
            }
            // A pooled buffer keeps no metas from its last use (the pool removes those
            // not marked pooled), so each frame gets its own.
            let mut meta = gst::meta::CustomMeta::add(buffer, FRAME_META).map_err(|_| {
                gst::element_imp_error!(
                    self,
                    gst::CoreError::Failed,
                    ("The {FRAME_META} meta is not registered")
                );
                gst::FlowError::Error
            })?;
            let fields = meta.mut_structure();
            fields.set("audio-missing", notes.audio_missing);
            fields.set("repeated", false);
            if let Some(face) = &notes.face {
                let degrees = |radians: f32| f64::from(radians).to_degrees();
                fields.set("mouth-open", f64::from(face.mouth_open));
                fields.set(
                    "eyes-closed",
                    f64::from(face.blink_left.max(face.blink_right)),
                );
                fields.set("head-yaw", degrees(face.yaw));
                fields.set("head-pitch", degrees(face.pitch));
                fields.set("head-roll", degrees(face.roll));
            }
            if let Some(rest) = notes.lips_at_rest {
                fields.set("lips-at-rest", f64::from(rest));
            }
            let mut frame_map =
                gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &output.info).map_err(
                    |_| {
                        gst::element_imp_error!(
                            self,
                            gst::ResourceError::Write,
                            ("Cannot map video buffer")
                        );
                        gst::FlowError::Error
                    },
                )?;
            let stride = frame_map.plane_stride()[0] as usize;
            let data = frame_map
                .plane_data_mut(0)
                .map_err(|_| gst::FlowError::Error)?;
            pack_frame(frame, output.layout, data, stride).map_err(|err| {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Failed,
                    ("Frame generation failed: {err}")
                );
                gst::FlowError::Error
            })?;
        }
        Ok(buffer)
    }
}
