//! The sink pad: audio in (checked, clipped to the segment, converted to floats),
//! events in order, and back-pressure. Everything goes into one queue that the src
//! task takes from, so serialized events stay in order with the audio around them.

use std::collections::VecDeque;

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::imp::{CAT, VasaFaceGen};
use crate::core::{SAMPLE_RATE, lock};

/// Audio the sink pad may queue ahead of the src task before it blocks upstream.
const QUEUE_LIMIT_SAMPLES: usize = SAMPLE_RATE as usize / 2;

/// What the sink side hands to the src task, in stream order.
pub enum Item {
    Audio {
        pts: gst::ClockTime,
        samples: Vec<f32>,
    },
    Gap {
        start: gst::ClockTime,
        end: gst::ClockTime,
    },
    Segment(gst::Event),
    Eos(gst::Event),
    /// Any other serialized event, forwarded in order.
    Event(gst::Event),
}

impl Item {
    fn samples(&self) -> usize {
        match self {
            Self::Audio { samples, .. } => samples.len(),
            _ => 0,
        }
    }
}

/// State shared by the sink pad, the src task and property setters. Locked only for a
/// few assignments; the condition variable beside it (in the element) waits on it.
pub struct Shared {
    queue: VecDeque<Item>,
    queued_samples: usize,
    /// `Ok` while data may flow; otherwise why not (flushing, EOS, a downstream error),
    /// which the sink pad returns to upstream.
    pub flow: Result<gst::FlowSuccess, gst::FlowError>,
    /// EOS was received on the sink pad; refuse data until a flush or a new stream.
    eos: bool,
    audio_format: Option<gst_audio::AudioFormat>,
    segment: Option<gst::FormattedSegment<gst::ClockTime>>,
    /// Set by FLUSH_STOP: the task must forget the stream before the next item.
    pub reset_pending: bool,
    /// A portrait prepared while streaming, swapped in at the next frame boundary.
    pub new_source: Option<std::sync::Arc<crate::render::PreparedSource>>,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            queued_samples: 0,
            flow: Err(gst::FlowError::Flushing),
            eos: false,
            audio_format: None,
            segment: None,
            reset_pending: false,
            new_source: None,
        }
    }
}

impl Shared {
    pub fn clear_queue(&mut self) {
        self.queue.clear();
        self.queued_samples = 0;
    }
}

impl VasaFaceGen {
    /// Stops data flow and wakes every waiter (a blocked chain call, the waiting task).
    pub(super) fn set_flushing(&self) {
        let mut shared = lock(&self.shared);
        shared.flow = Err(gst::FlowError::Flushing);
        shared.clear_queue();
        self.cond.notify_all();
    }

    /// Waits for the next queued item. `Err` when the task must stop (flushing, ...).
    pub(super) fn next_item(&self) -> Result<Item, gst::FlowError> {
        let mut shared = lock(&self.shared);
        loop {
            shared.flow?;
            if let Some(item) = shared.queue.pop_front() {
                shared.queued_samples -= item.samples();
                self.cond.notify_all();
                return Ok(item);
            }
            shared = self.cond.wait(shared).unwrap_or_else(|p| p.into_inner());
        }
    }

    pub(super) fn sink_activatemode(
        &self,
        pad: &gst::Pad,
        mode: gst::PadMode,
        active: bool,
    ) -> Result<(), gst::LoggableError> {
        if mode != gst::PadMode::Push {
            return Err(gst::loggable_error!(CAT, "only push mode is supported"));
        }
        if !active {
            self.set_flushing();
            // Wait for a chain call in progress to return before forgetting the stream.
            let _stream_lock = pad.stream_lock();
            let mut shared = lock(&self.shared);
            shared.eos = false;
            shared.segment = None;
            shared.audio_format = None;
        }
        Ok(())
    }

    pub(super) fn sink_chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (format, segment) = {
            let shared = lock(&self.shared);
            shared.flow?;
            if shared.eos {
                return Err(gst::FlowError::Eos);
            }
            (shared.audio_format, shared.segment.clone())
        };
        let Some(format) = format else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("Audio arrived before its format (no caps event)")
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        let Some(segment) = segment else {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("Audio arrived before a segment event")
            );
            return Err(gst::FlowError::Error);
        };
        if buffer.pts().is_none() {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("Audio buffer without a timestamp (PTS); vasafacegen places frames by the \
                  audio's timestamps"),
                [
                    "Timestamp the audio upstream, e.g. appsrc format=time do-timestamp=true, \
                  or decode with a parser that sets timestamps (wavparse, decodebin)"
                ]
            );
            return Err(gst::FlowError::Error);
        }
        let bytes_per_sample = gst_audio::AudioFormatInfo::from_format(format).width() / 8;
        let Some(buffer) = gst_audio::audio_buffer_clip(
            buffer,
            segment.upcast_ref(),
            SAMPLE_RATE,
            bytes_per_sample,
        ) else {
            gst::log!(CAT, imp = self, "buffer outside the segment, skipped");
            return Ok(gst::FlowSuccess::Ok);
        };
        let pts = buffer.pts().expect("checked above; clipping keeps it");
        let map = buffer.map_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::StreamError::Decode, ("Cannot read audio buffer"));
            gst::FlowError::Error
        })?;
        let samples = decode_samples(&map, format);
        drop(map);

        let mut shared = lock(&self.shared);
        // Back-pressure: wait while the task is far enough ahead. A single buffer larger
        // than the limit still goes in when the queue is empty, so nothing deadlocks.
        while shared.flow.is_ok() && shared.queued_samples >= QUEUE_LIMIT_SAMPLES {
            shared = self.cond.wait(shared).unwrap_or_else(|p| p.into_inner());
        }
        shared.flow?;
        shared.queued_samples += samples.len();
        shared.queue.push_back(Item::Audio { pts, samples });
        self.cond.notify_all();
        Ok(gst::FlowSuccess::Ok)
    }

    pub(super) fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        gst::log!(CAT, obj = pad, "{event:?}");
        use gst::EventView;
        let item = match event.view() {
            EventView::FlushStart(_) => {
                self.set_flushing();
                let forwarded = self.srcpad.push_event(event);
                if let Err(err) = self.srcpad.pause_task() {
                    gst::error!(CAT, imp = self, "cannot pause the task: {err}");
                }
                return forwarded;
            }
            EventView::FlushStop(_) => {
                {
                    let mut shared = lock(&self.shared);
                    shared.clear_queue();
                    shared.eos = false;
                    shared.reset_pending = true;
                }
                let forwarded = self.srcpad.push_event(event);
                if let Err(err) = self.start_task() {
                    gst::error!(CAT, imp = self, "cannot restart the task: {err}");
                    return false;
                }
                return forwarded;
            }
            EventView::Caps(caps) => {
                let info = match gst_audio::AudioInfo::from_caps(caps.caps()) {
                    Ok(info) => info,
                    Err(err) => {
                        gst::element_imp_error!(
                            self,
                            gst::CoreError::Negotiation,
                            ("Unusable audio caps {}: {err}", caps.caps())
                        );
                        return false;
                    }
                };
                lock(&self.shared).audio_format = Some(info.format());
                return true;
            }
            EventView::Segment(segment_event) => {
                let segment = segment_event.segment();
                let Some(time_segment) = segment.downcast_ref::<gst::ClockTime>() else {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        (
                            "Segment in {:?} format; vasafacegen needs TIME segments",
                            segment.format()
                        ),
                        [
                            "Decode or parse the audio before vasafacegen (e.g. wavparse or \
                          decodebin ! audioconvert ! audioresample)"
                        ]
                    );
                    return false;
                };
                lock(&self.shared).segment = Some(time_segment.clone());
                Item::Segment(event)
            }
            EventView::Gap(gap) => {
                let (pts, duration) = gap.get();
                match duration {
                    Some(duration) => Item::Gap {
                        start: pts,
                        end: pts + duration,
                    },
                    None => return true,
                }
            }
            EventView::StreamStart(_) => {
                // A new stream without a flush (gapless playback) may follow an EOS.
                let restart = {
                    let mut shared = lock(&self.shared);
                    shared.eos = false;
                    shared.flow == Err(gst::FlowError::Eos)
                };
                if restart && let Err(err) = self.start_task() {
                    gst::error!(CAT, imp = self, "cannot restart the task: {err}");
                    return false;
                }
                Item::Event(event)
            }
            EventView::Eos(_) => Item::Eos(event),
            // Stream tags describe the audio, not the video we produce.
            EventView::Tag(tag) if tag.tag().scope() == gst::TagScope::Stream => return true,
            _ if event.is_serialized() => Item::Event(event),
            _ => return gst::Pad::event_default(pad, Some(&*self.obj()), event),
        };

        let mut shared = lock(&self.shared);
        let is_eos = matches!(item, Item::Eos(_));
        if let Err(err) = shared.flow {
            drop(shared);
            if is_eos && !matches!(err, gst::FlowError::Flushing | gst::FlowError::Eos) {
                // Upstream will not hear about our failure through a flow return any
                // more, so tell the application (like queue does).
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Failed,
                    ("Internal data stream error"),
                    ["streaming stopped, reason {err:?}"]
                );
            }
            return false;
        }
        if shared.eos {
            return false;
        }
        shared.eos = is_eos;
        shared.queue.push_back(item);
        self.cond.notify_all();
        true
    }

    pub(super) fn sink_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        match query.view_mut() {
            // Audio buffers are ours to read; the video allocation downstream is unrelated.
            gst::QueryViewMut::Allocation(_) => false,
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }
}

/// Interleaved mono samples to floats in `[-1, 1]`.
fn decode_samples(bytes: &[u8], format: gst_audio::AudioFormat) -> Vec<f32> {
    match format {
        gst_audio::AudioFormat::S16le => bytes
            .chunks_exact(2)
            .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
            .collect(),
        // NaN or infinity would poison every computation after it; they are no sound.
        _ => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .map(|s| if s.is_finite() { s } else { 0.0 })
            .collect(),
    }
}
