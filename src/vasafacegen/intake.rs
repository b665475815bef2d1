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
    /// Audio from `pts` on; `running_time` is the same instant on the pipeline clock's
    /// axis (live streams place audio by it).
    Audio {
        pts: gst::ClockTime,
        running_time: Option<gst::ClockTime>,
        samples: Vec<f32>,
    },
    Gap {
        start: gst::ClockTime,
        end: gst::ClockTime,
        /// `start` and `end` in running time.
        running: Option<(gst::ClockTime, gst::ClockTime)>,
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
    /// The src task runs on the clock (upstream is live); set by the task.
    pub live: bool,
    /// Between PAUSED->PLAYING and PLAYING->PAUSED: live frames may flow.
    pub playing: bool,
    /// Live: a flush from upstream is in progress that the element takes itself (the
    /// video goes on); audio is refused until its FLUSH_STOP.
    pub sink_flushing: bool,
    /// Live: the audio was cut (a flush from upstream); the task forgets it.
    pub interrupt_pending: bool,
    /// Counts those cuts: a frame drawn across one is drawn again, not pushed.
    pub interruptions: u64,
    /// The running time of the last `interrupt` signal: audio stamped before it that
    /// is still on its way (in an appsrc's or a queue's buffer) belongs to the speech
    /// that was cut and is dropped when it comes.
    pub cut_before_ns: Option<u64>,
    /// The clock wait the live task is in, unscheduled when it must wake up.
    pub clock_wait: Option<gst::SingleShotClockId>,
    /// The seqnum of the last flushing seek that went upstream through the element:
    /// its flushes are forwarded downstream, as a seek's must be.
    pub seek_seqnum: Option<gst::Seqnum>,
    /// Live: upstream's latency (ns) as asked again when the pipeline redistributed
    /// latency (a LATENCY event): a source added to a mixer, a jitter buffer that grew.
    /// The task takes it for the frames' due times.
    pub upstream_latency_update: Option<u64>,
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
            live: false,
            playing: false,
            sink_flushing: false,
            interrupt_pending: false,
            interruptions: 0,
            cut_before_ns: None,
            upstream_latency_update: None,
            clock_wait: None,
            seek_seqnum: None,
        }
    }
}

impl Shared {
    pub fn clear_queue(&mut self) {
        self.queue.clear();
        self.queued_samples = 0;
    }

    /// Cuts the audio (barge-in): what is queued goes, and the task is told to forget
    /// what it holds beyond the last frame drawn.
    fn cut_audio(&mut self) {
        self.clear_queue();
        self.interrupt_pending = true;
        self.interruptions += 1;
    }

    /// Whether an item is waiting for the task.
    pub fn has_items(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Ends the live task's clock wait, if it is in one (it then looks again at what
    /// changed). Unscheduling does not block.
    pub fn end_clock_wait(&mut self) {
        if let Some(wait) = self.clock_wait.take() {
            wait.unschedule();
        }
    }
}

impl VasaFaceGen {
    /// Stops data flow and wakes every waiter (a blocked chain call, the waiting task).
    pub(super) fn set_flushing(&self) {
        let mut shared = lock(&self.shared);
        shared.flow = Err(gst::FlowError::Flushing);
        shared.clear_queue();
        shared.end_clock_wait();
        self.cond.notify_all();
    }

    /// Wakes the task wherever it waits: on the condition variable or on the clock.
    pub(super) fn wake_task(&self, shared: &mut Shared) {
        shared.end_clock_wait();
        self.cond.notify_all();
    }

    /// The next queued item if there is one, without waiting.
    pub(super) fn try_next_item(&self) -> Result<Option<Item>, gst::FlowError> {
        let mut shared = lock(&self.shared);
        shared.flow?;
        let item = shared.queue.pop_front();
        if let Some(item) = &item {
            shared.queued_samples -= item.samples();
            self.cond.notify_all();
        }
        Ok(item)
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
            if shared.sink_flushing {
                // Dropped, as a flush drops what comes before its FLUSH_STOP; not
                // FLUSHING, which would stop an upstream that is not flushing itself
                // (a queue, when the application flushes this element alone).
                return Ok(gst::FlowSuccess::Ok);
            }
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
        let running_time = segment.to_running_time(pts);
        let map = buffer.map_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::StreamError::Decode, ("Cannot read audio buffer"));
            gst::FlowError::Error
        })?;
        let samples = decode_samples(&map, format);
        drop(map);

        let mut shared = lock(&self.shared);
        // Back-pressure: wait while the task is far enough ahead. A single buffer larger
        // than the limit still goes in when the queue is empty, so nothing deadlocks.
        while shared.flow.is_ok()
            && !shared.sink_flushing
            && shared.queued_samples >= QUEUE_LIMIT_SAMPLES
        {
            shared = self.cond.wait(shared).unwrap_or_else(|p| p.into_inner());
        }
        shared.flow?;
        if shared.sink_flushing {
            return Ok(gst::FlowSuccess::Ok);
        }
        shared.queued_samples += samples.len();
        shared.queue.push_back(Item::Audio {
            pts,
            running_time,
            samples,
        });
        self.wake_task(&mut shared);
        Ok(gst::FlowSuccess::Ok)
    }

    pub(super) fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        gst::log!(CAT, obj = pad, "{event:?}");
        use gst::EventView;
        let item = match event.view() {
            EventView::FlushStart(_) if self.take_flush_start(event.seqnum()) => {
                gst::info!(
                    CAT,
                    imp = self,
                    "flush from upstream while live: the audio stops here, the video goes on"
                );
                return true;
            }
            EventView::FlushStop(_) if self.take_flush_stop() => return true,
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
                let Some(duration) = duration else {
                    return true;
                };
                let running = lock(&self.shared).segment.as_ref().and_then(|segment| {
                    Some((
                        segment.to_running_time(pts)?,
                        segment.to_running_time(pts + duration)?,
                    ))
                });
                Item::Gap {
                    start: pts,
                    end: pts + duration,
                    running,
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
        if shared.eos || shared.sink_flushing {
            return false;
        }
        shared.eos = is_eos;
        shared.queue.push_back(item);
        self.wake_task(&mut shared);
        true
    }

    /// A FLUSH_START from upstream while live and streaming, not caused by a seek that
    /// went through the element, is the application cutting the audio (barge-in): the
    /// element takes it (as an aggregator takes a flush of one of its inputs), drops the
    /// audio queued and still unheard, and keeps the video going on the clock, so
    /// downstream neither stalls nor re-prerolls. Returns whether it took the flush.
    fn take_flush_start(&self, seqnum: gst::Seqnum) -> bool {
        let mut shared = lock(&self.shared);
        let from_seek = shared.seek_seqnum == Some(seqnum);
        if !shared.live || from_seek || shared.flow.is_err() || shared.sink_flushing {
            return false;
        }
        shared.sink_flushing = true;
        shared.cut_audio();
        self.wake_task(&mut shared);
        true
    }

    /// The `interrupt` action signal: cuts the audio as a flush from upstream would
    /// (live only). Returns whether it did.
    pub(super) fn interrupt(&self) -> bool {
        let mut shared = lock(&self.shared);
        if !shared.live || shared.flow.is_err() {
            drop(shared);
            gst::warning!(
                CAT,
                imp = self,
                "interrupt: only a live stream is cut this way; flush the pipeline \
                 (a flushing seek) to cut a stream that is not live"
            );
            return false;
        }
        let obj = self.obj();
        let now = obj
            .clock()
            .zip(obj.base_time())
            .map(|(clock, base)| clock.time().saturating_sub(base).nseconds());
        shared.cut_audio();
        shared.cut_before_ns = now.or(shared.cut_before_ns);
        self.wake_task(&mut shared);
        drop(shared);
        gst::info!(CAT, imp = self, "interrupted by the application");
        true
    }

    /// The FLUSH_STOP of a flush the element took: audio flows again.
    fn take_flush_stop(&self) -> bool {
        let mut shared = lock(&self.shared);
        if !shared.sink_flushing {
            return false;
        }
        shared.sink_flushing = false;
        shared.eos = false;
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
