//! One browser session: a pipeline of its own in which `webrtcbin` answers the browser's
//! offer, the browser's microphone drives `vasafacegen`, and the face goes back as VP8.
//!
//! ```text
//! audiotestsrc (silence, live) ─► audiomixer ─► vasafacegen ─► vp8enc ─► rtpvp8pay ─► webrtcbin
//! webrtcbin (mic, Opus) ─► depay ─► opusdec ─► resample ─┘   (linked when the track arrives)
//! ```
//! The mixer's silent input keeps the element's audio pad linked to a live source from
//! the start, so the face idles before the microphone's first packet and after a cut,
//! and the upstream latency the element learns at PLAYING stays the one it will see:
//! the silence comes in 100 ms buffers (a live source's latency is one buffer), more than
//! the microphone branch's jitter buffer and decoder take, so adding that branch later
//! does not raise the mixer's latency.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;

/// What every session is made with (from the command line).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub image: String,
    pub face_box: Option<String>,
    pub model: String,
    pub motion: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Send the browser its own speech back, in step with the face.
    pub echo: bool,
    /// Video bitrate in bits per second.
    pub bitrate: u32,
    /// The session ends when no microphone packet came for this long.
    pub idle_timeout: Duration,
}

impl SessionConfig {
    /// Sets the portrait, face box, model and motion on a `vasafacegen`.
    pub fn apply(&self, face: &gst::Element) {
        face.set_property("image", &self.image);
        if let Some(face_box) = &self.face_box {
            face.set_property("face-box", face_box);
        }
        face.set_property("model", &self.model);
        face.set_property_from_str("motion", &self.motion);
    }
}

/// The microphone's jitter buffer (ms): the page and the server share one host, so the
/// network jitter to absorb is small; the mixer's silent input covers up to this much.
const JITTER_BUFFER_MS: u32 = 40;
/// One buffer of the mixer's silent input, at 16 kHz (100 ms): its reported latency.
const SILENCE_SAMPLES_PER_BUFFER: i32 = 1600;
/// How long the answer may wait for the face's first frame to reach webrtcbin.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the answer may wait for webrtcbin to gather its ICE candidates.
const GATHERING_TIMEOUT: Duration = Duration::from_secs(10);

/// The payload types the browser's offer uses for what this session sends and takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OfferedCodecs {
    vp8: u32,
    opus: u32,
}

/// Reads the offer's VP8 (video) and Opus (audio) payload types; a clear error when the
/// offer lacks either.
fn offered_codecs(sdp: &gst_sdp::SDPMessageRef) -> Result<OfferedCodecs, String> {
    let payload_for = |kind: &str, codec: &str| {
        sdp.medias()
            .filter(|media| media.media() == Some(kind))
            .flat_map(|media| media.attributes())
            .filter(|attribute| attribute.key() == "rtpmap")
            .filter_map(|attribute| attribute.value())
            .find_map(|value| {
                let (payload, encoding) = value.split_once(' ')?;
                let name = encoding.split('/').next()?;
                name.eq_ignore_ascii_case(codec)
                    .then(|| payload.trim().parse::<u32>().ok())
                    .flatten()
            })
    };
    let vp8 = payload_for("video", "VP8")
        .ok_or("the offer has no video to receive as VP8 (add a video transceiver)")?;
    let opus = payload_for("audio", "opus")
        .ok_or("the offer has no Opus audio (the microphone track is missing)")?;
    Ok(OfferedCodecs { vp8, opus })
}

pub struct Session {
    pub id: String,
    pipeline: gst::Pipeline,
    face: gst::Element,
    started: Instant,
    /// When the last microphone packet arrived (for the idle timeout).
    last_audio: Arc<Mutex<Option<Instant>>>,
    /// The first frame handed to the encoder, after `started`.
    first_frame: Arc<Mutex<Option<Duration>>>,
    /// Why the session ended (set once, by whoever ends it first).
    end_reason: Mutex<Option<String>>,
    /// The pipeline was stopped (once).
    ended: AtomicBool,
}

impl Session {
    /// Builds the session's pipeline, answers `offer` (SDP text) and returns the session
    /// with the answer, ICE candidates included (no trickle: one HTTP exchange).
    pub fn answer(
        id: String,
        config: &SessionConfig,
        offer: &str,
    ) -> Result<(Self, String), String> {
        // GStreamer's SDP parser takes almost any text; an offer starts with its version.
        let not_sdp = || "the request body is not an SDP offer (it starts with v=0)".to_owned();
        if !offer.starts_with("v=0") {
            return Err(not_sdp());
        }
        let sdp = gst_sdp::SDPMessage::parse_buffer(offer.as_bytes()).map_err(|_| not_sdp())?;
        let codecs = offered_codecs(&sdp)?;
        let session = Self::build(id, config, codecs)?;
        match session.negotiate(sdp) {
            Ok(answer) => Ok((session, answer)),
            Err(why) => {
                session.end(&why);
                Err(why)
            }
        }
    }

    fn build(id: String, config: &SessionConfig, codecs: OfferedCodecs) -> Result<Self, String> {
        let description = format!(
            "webrtcbin name=webrtc bundle-policy=max-bundle latency={JITTER_BUFFER_MS} \
             audiotestsrc is-live=true wave=silence samplesperbuffer={SILENCE_SAMPLES_PER_BUFFER} \
             ! audio/x-raw,format=S16LE,rate=16000,channels=1 \
             ! audiomixer name=mix ! audio/x-raw,format=S16LE,rate=16000,channels=1 \
             ! vasafacegen name=face pace=clock \
             ! video/x-raw,width={width},height={height},framerate={fps}/1 \
             ! videoconvert ! video/x-raw,format=I420 ! queue \
             ! vp8enc name=encoder deadline=1 cpu-used=8 end-usage=cbr \
                 target-bitrate={bitrate} keyframe-max-dist={keyframes} threads=1 \
             ! rtpvp8pay name=payloader pt={vp8} picture-id-mode=15-bit \
             ! application/x-rtp,media=video,encoding-name=VP8,payload={vp8},clock-rate=90000 \
             ! webrtc.",
            width = config.width,
            height = config.height,
            fps = config.fps,
            bitrate = config.bitrate,
            // A key frame every two seconds: a viewer whose first key frame was lost
            // waits no longer than that.
            keyframes = 2 * config.fps,
            vp8 = codecs.vp8,
        );
        let pipeline = gst::parse::launch(&description)
            .map_err(|err| format!("cannot build the session pipeline: {err}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "the session description is not a pipeline".to_owned())?;
        let by_name = |name: &str| pipeline.by_name(name).expect("named in the description");
        let (webrtc, face, mix) = (by_name("webrtc"), by_name("face"), by_name("mix"));
        config.apply(&face);

        let echo = if config.echo {
            Some(add_echo_sender(&pipeline, codecs.opus)?)
        } else {
            // Without an echo the answer only receives audio.
            let caps = gst::Caps::builder("application/x-rtp")
                .field("media", "audio")
                .field("encoding-name", "OPUS")
                .field("payload", codecs.opus as i32)
                .field("clock-rate", 48000)
                .build();
            webrtc.emit_by_name::<gst_webrtc::WebRTCRTPTransceiver>(
                "add-transceiver",
                &[&gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly, &caps],
            );
            None
        };

        hold_video_until_connected(&webrtc, &by_name("payloader"), &by_name("encoder"));
        let last_audio = Arc::new(Mutex::new(None));
        let first_frame = Arc::new(Mutex::new(None));
        let started = Instant::now();
        {
            let first_frame = first_frame.clone();
            let src = face.static_pad("src").expect("vasafacegen has a src pad");
            src.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                first_frame
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| started.elapsed());
                gst::PadProbeReturn::Remove
            });
        }
        {
            let pipeline = pipeline.downgrade();
            let last_audio = last_audio.clone();
            webrtc.connect_pad_added(move |_, pad| {
                let Some(pipeline) = pipeline.upgrade() else {
                    return;
                };
                if let Err(why) = link_microphone(&pipeline, pad, &mix, echo.as_ref(), &last_audio)
                {
                    gst::element_error!(pipeline, gst::StreamError::Failed, ("{}", why));
                }
            });
        }

        Ok(Self {
            id,
            pipeline,
            face,
            started,
            last_audio,
            first_frame,
            end_reason: Mutex::default(),
            ended: AtomicBool::default(),
        })
    }

    /// Starts the pipeline, takes the offer, makes the answer and waits for the ICE
    /// candidates to be in it.
    fn negotiate(&self, offer: gst_sdp::SDPMessage) -> Result<String, String> {
        let webrtc = self.pipeline.by_name("webrtc").expect("named");
        let (gathered_tx, gathered_rx) = mpsc::sync_channel(1);
        webrtc.connect_notify(Some("ice-gathering-state"), move |webrtc, _| {
            let state =
                webrtc.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state");
            if state == gst_webrtc::WebRTCICEGatheringState::Complete {
                let _ = gathered_tx.try_send(());
            }
        });
        self.pipeline.set_state(gst::State::Playing).map_err(|_| {
            self.bus_error()
                .unwrap_or_else(|| "the session pipeline failed to start".into())
        })?;

        // The answer names the video's SSRC only once the first frame's caps reached
        // webrtcbin; without it (and with no MID header extension) the browser, whose
        // streams are bundled on one transport, cannot tell where the packets belong
        // and shows nothing. The first frame is a few hundred ms away at most.
        wait_for_caps(&webrtc, FIRST_FRAME_TIMEOUT).map_err(|why| {
            let made = self.first_frame.lock().unwrap().is_some();
            format!(
                "{why} ({})",
                if made {
                    "the face made frames; their caps did not reach webrtcbin"
                } else {
                    "the face made no frame"
                }
            )
        })?;

        let offer =
            gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Offer, offer);
        let promise = gst::Promise::new();
        webrtc.emit_by_name::<()>("set-remote-description", &[&offer, &promise]);
        promise_reply(&promise, "taking the offer")?;

        let promise = gst::Promise::new();
        webrtc.emit_by_name::<()>("create-answer", &[&None::<gst::Structure>, &promise]);
        let reply =
            promise_reply(&promise, "making the answer")?.ok_or("webrtcbin made no answer")?;
        let answer = reply
            .get::<gst_webrtc::WebRTCSessionDescription>("answer")
            .map_err(|_| format!("webrtcbin made no answer: {reply}"))?;
        let promise = gst::Promise::new();
        webrtc.emit_by_name::<()>("set-local-description", &[&answer, &promise]);
        promise_reply(&promise, "setting the answer")?;

        if webrtc.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
            != gst_webrtc::WebRTCICEGatheringState::Complete
        {
            gathered_rx
                .recv_timeout(GATHERING_TIMEOUT)
                .map_err(|_| "ICE candidates were not gathered within 10 s".to_owned())?;
        }
        let local = webrtc
            .property::<Option<gst_webrtc::WebRTCSessionDescription>>("local-description")
            .ok_or("webrtcbin has no local description")?;
        local
            .sdp()
            .as_text()
            .map_err(|err| format!("cannot write the answer: {err}"))
    }

    /// Watches the session until it ends: an error, the browser leaving (ICE failed or
    /// closed), no microphone packet for `idle_timeout`, or `end`. Then frees the pipeline.
    pub fn watch(&self, idle_timeout: Duration) {
        let bus = self.pipeline.bus().expect("pipelines have a bus");
        let webrtc = self.pipeline.by_name("webrtc").expect("named");
        let reason = loop {
            if let Some(reason) = self.end_reason.lock().unwrap().clone() {
                break reason;
            }
            if let Some(message) = bus.timed_pop(gst::ClockTime::from_mseconds(200)) {
                match message.view() {
                    gst::MessageView::Error(err) => {
                        break format!("error: {} ({:?})", err.error(), err.debug());
                    }
                    gst::MessageView::Eos(_) => break "the stream ended".to_owned(),
                    _ => {}
                }
            }
            use gst_webrtc::WebRTCICEConnectionState as Ice;
            match webrtc.property::<Ice>("ice-connection-state") {
                Ice::Failed => break "the browser's connection failed".to_owned(),
                Ice::Closed => break "the browser closed the connection".to_owned(),
                _ => {}
            }
            // Before the first packet the connection is being made: the same allowance.
            let quiet_since = self.last_audio.lock().unwrap().unwrap_or(self.started);
            if quiet_since.elapsed() > idle_timeout {
                break format!(
                    "no audio from the browser for {} s",
                    idle_timeout.as_secs_f32()
                );
            }
        };
        self.end(&reason);
    }

    /// Ends the session (once): stops and frees its pipeline.
    pub fn end(&self, reason: &str) {
        self.end_reason
            .lock()
            .unwrap()
            .get_or_insert_with(|| reason.to_owned());
        if !self.ended.swap(true, Ordering::SeqCst) {
            // The microphone's branch leads from webrtcbin back into it (through the
            // face): a loop GStreamer warns about when ordering the state change. Cut
            // it first; the pipeline is going away anyway.
            if let Some(webrtc) = self.pipeline.by_name("webrtc") {
                for pad in webrtc.src_pads() {
                    if let Some(peer) = pad.peer() {
                        let _ = pad.unlink(&peer);
                    }
                }
            }
            let _ = self.pipeline.set_state(gst::State::Null);
            eprintln!(
                "vasafacegen-serve: session {} ended after {:.1} s: {reason}",
                self.id,
                self.started.elapsed().as_secs_f32()
            );
        }
    }

    /// The pipeline, held weakly: whether it was freed once the session ended.
    pub fn pipeline_ref(&self) -> gst::glib::WeakRef<gst::Pipeline> {
        self.pipeline.downgrade()
    }

    pub fn has_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// What the page shows: the element's latency (upstream included), frame counts.
    pub fn stats_json(&self) -> serde_json::Value {
        let src = self
            .face
            .static_pad("src")
            .expect("vasafacegen has a src pad");
        let mut query = gst::query::Latency::new();
        let latency_ms = src.query(&mut query).then(|| query.result().1.mseconds());
        let first_frame_ms = self
            .first_frame
            .lock()
            .unwrap()
            .map(|at| at.as_millis() as u64);
        serde_json::json!({
            "id": self.id,
            "seconds": self.started.elapsed().as_secs_f64(),
            "latency_ms": latency_ms,
            "first_frame_ms": first_frame_ms,
            "frames_repeated": self.face.property::<u64>("frames-repeated"),
            "frames_without_audio": self.face.property::<u64>("frames-without-audio"),
            "late_audio_dropped_ms": self.face.property::<u64>("late-audio-dropped") / 1_000_000,
            "microphone": self.last_audio.lock().unwrap().is_some(),
            "ended": self.end_reason.lock().unwrap().clone(),
        })
    }

    fn bus_error(&self) -> Option<String> {
        let bus = self.pipeline.bus()?;
        while let Some(message) = bus.pop() {
            if let gst::MessageView::Error(err) = message.view() {
                return Some(format!("{} ({:?})", err.error(), err.debug()));
            }
        }
        None
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.end("the server let it go");
    }
}

/// The face runs from PLAYING, but the browser can take its packets only once ICE and
/// DTLS are through (a few hundred ms later). What the payloader makes before that is
/// dropped, not queued: queued, it would reach the browser as a burst of stale frames.
/// Caps and other events pass (the answer needs the caps); once connected, the encoder
/// is asked for a key frame, the first thing the browser can decode.
fn hold_video_until_connected(
    webrtc: &gst::Element,
    payloader: &gst::Element,
    encoder: &gst::Element,
) {
    let connected = Arc::new(AtomicBool::new(false));
    {
        let connected = connected.clone();
        let encoder = encoder.downgrade();
        webrtc.connect_notify(Some("connection-state"), move |webrtc, _| {
            use gst_webrtc::WebRTCPeerConnectionState as State;
            let now = webrtc.property::<State>("connection-state") == State::Connected;
            if now
                && !connected.swap(true, Ordering::SeqCst)
                && let Some(encoder) = encoder.upgrade()
            {
                let event = gst_video::UpstreamForceKeyUnitEvent::builder()
                    .all_headers(true)
                    .build();
                encoder.send_event(event);
            }
        });
    }
    let src = payloader
        .static_pad("src")
        .expect("payloaders have a src pad");
    src.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |_, _| {
            if connected.load(Ordering::SeqCst) {
                gst::PadProbeReturn::Remove
            } else {
                gst::PadProbeReturn::Drop
            }
        },
    );
}

/// Waits until the video going into webrtcbin has caps (its first frame is on the way).
fn wait_for_caps(webrtc: &gst::Element, timeout: Duration) -> Result<(), String> {
    let pad = webrtc
        .sink_pads()
        .into_iter()
        .find(|pad| pad.peer().is_some())
        .ok_or("nothing feeds webrtcbin")?;
    let (tx, rx) = mpsc::sync_channel(1);
    // The probe removes itself at the first caps event (when the caps were there
    // already, at the next one: it only looks at events).
    pad.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
        if let Some(gst::PadProbeData::Event(event)) = &info.data
            && event.type_() == gst::EventType::Caps
        {
            let _ = tx.try_send(());
            return gst::PadProbeReturn::Remove;
        }
        gst::PadProbeReturn::Ok
    });
    if pad.current_caps().is_some() || rx.recv_timeout(timeout).is_ok() {
        Ok(())
    } else {
        Err(format!(
            "the face's first frame did not come within {} s",
            timeout.as_secs()
        ))
    }
}

/// Waits for a webrtcbin promise; its error, if it has one, named with `doing`.
fn promise_reply(promise: &gst::Promise, doing: &str) -> Result<Option<gst::Structure>, String> {
    match promise.wait() {
        gst::PromiseResult::Replied => {}
        other => {
            return Err(format!(
                "webrtcbin did not answer while {doing} ({other:?})"
            ));
        }
    }
    let reply = promise.get_reply().map(|reply| reply.to_owned());
    if let Some(reply) = &reply
        && let Ok(error) = reply.get::<glib::Error>("error")
    {
        return Err(format!("webrtcbin failed while {doing}: {error}"));
    }
    Ok(reply)
}

/// The echo's sending half, there before the answer so that the answer sends audio: an
/// Opus encoder fed by a mixer with a silent input (the microphone joins it later).
fn add_echo_sender(pipeline: &gst::Pipeline, opus: u32) -> Result<gst::Element, String> {
    let description = format!(
        "audiotestsrc is-live=true wave=silence samplesperbuffer=960 \
         ! audio/x-raw,rate=48000,channels=1 ! audiomixer name=echo_mix \
         ! audioconvert ! opusenc ! rtpopuspay pt={opus} ! capsfilter \
           caps=application/x-rtp,media=audio,encoding-name=OPUS,payload={opus},clock-rate=48000"
    );
    let bin = gst::parse::bin_from_description(&description, true)
        .map_err(|err| format!("cannot build the echo: {err}"))?;
    pipeline
        .add(&bin)
        .map_err(|_| "cannot add the echo".to_owned())?;
    let webrtc = pipeline.by_name("webrtc").expect("named");
    bin.link(&webrtc)
        .map_err(|_| "cannot link the echo to webrtcbin".to_owned())?;
    bin.by_name("echo_mix")
        .ok_or_else(|| "the echo has no mixer".to_owned())
}

/// Links a track webrtcbin received: the microphone (Opus) into the face's mixer, and
/// into the echo's when there is one. Other tracks are refused with a clear error.
fn link_microphone(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    mix: &gst::Element,
    echo: Option<&gst::Element>,
    last_audio: &Arc<Mutex<Option<Instant>>>,
) -> Result<(), String> {
    if pad.direction() != gst::PadDirection::Src {
        return Ok(());
    }
    let caps = pad.current_caps().ok_or("a received track has no caps")?;
    let structure = caps.structure(0).ok_or("a received track has empty caps")?;
    if structure.get::<&str>("media") != Ok("audio") {
        return Err(format!(
            "the browser sent a track that is not audio: {caps}"
        ));
    }
    // The echo's branch only when there is an echo: a tee with nothing after one of its
    // outputs would hold the microphone back.
    let to_face = "audioconvert ! audioresample \
         ! audio/x-raw,format=S16LE,rate=16000,channels=1 ! queue name=to_face";
    let description = match echo {
        Some(_) => format!(
            "rtpopusdepay name=depay ! opusdec plc=true ! tee name=split \
             split. ! queue ! {to_face} \
             split. ! queue ! audioconvert ! audioresample \
             ! audio/x-raw,rate=48000,channels=1 ! queue name=to_echo"
        ),
        None => format!("rtpopusdepay name=depay ! opusdec plc=true ! {to_face}"),
    };
    let bin = gst::parse::bin_from_description(&description, false)
        .map_err(|err| format!("cannot build the microphone's decoder: {err}"))?;
    let ghost = |name: &str, pad_name: &str| -> Result<gst::GhostPad, String> {
        let target = bin
            .by_name(name)
            .and_then(|element| element.static_pad(pad_name))
            .expect("named, with the pad");
        let pad = gst::GhostPad::builder_with_target(&target)
            .map(|builder| builder.name(name).build())
            .map_err(|err| format!("cannot expose {name}: {err}"))?;
        bin.add_pad(&pad)
            .map_err(|_| format!("cannot expose {name}"))?;
        Ok(pad)
    };
    let sink = ghost("depay", "sink")?;
    let to_face = ghost("to_face", "src")?;
    let to_echo = echo.map(|_| ghost("to_echo", "src")).transpose()?;
    {
        let last_audio = last_audio.clone();
        sink.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            *last_audio.lock().unwrap() = Some(Instant::now());
            gst::PadProbeReturn::Ok
        });
    }
    pipeline
        .add(&bin)
        .map_err(|_| "cannot add the microphone's decoder".to_owned())?;
    let link = |src: &gst::GhostPad, mixer: &gst::Element, what: &str| -> Result<(), String> {
        let mut mixer_pad = mixer
            .request_pad_simple("sink_%u")
            .ok_or_else(|| format!("the {what} mixer gave no input"))?;
        // The echo's mixer is inside the echo's bin: its input is reached through a
        // ghost pad on that bin.
        if let Some(parent) = mixer.parent().and_downcast::<gst::Bin>()
            && parent.upcast_ref::<gst::Object>() != pipeline.upcast_ref::<gst::Object>()
        {
            let ghost = gst::GhostPad::with_target(&mixer_pad)
                .map_err(|err| format!("cannot reach the {what} mixer: {err}"))?;
            ghost
                .set_active(true)
                .map_err(|err| format!("cannot reach the {what} mixer: {err}"))?;
            parent
                .add_pad(&ghost)
                .map_err(|_| format!("cannot reach the {what} mixer"))?;
            mixer_pad = ghost.upcast();
        }
        src.link(&mixer_pad)
            .map(|_| ())
            .map_err(|err| format!("cannot link the microphone to the {what}: {err:?}"))
    };
    link(&to_face, mix, "face")?;
    if let (Some(to_echo), Some(echo_mix)) = (&to_echo, echo) {
        link(to_echo, echo_mix, "echo")?;
    }
    bin.sync_state_with_parent()
        .map_err(|_| "the microphone's decoder did not start".to_owned())?;
    pad.link(&sink)
        .map(|_| ())
        .map_err(|err| format!("cannot link the received track: {err:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 0.0.0.0\r\n\
        a=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 98 96\r\nc=IN IP4 0.0.0.0\r\n\
        a=rtpmap:98 H264/90000\r\na=rtpmap:96 VP8/90000\r\n";

    #[test]
    fn payload_types_are_read_from_the_offer() {
        gst::init().unwrap();
        let sdp = gst_sdp::SDPMessage::parse_buffer(OFFER.as_bytes()).unwrap();
        assert_eq!(
            offered_codecs(&sdp),
            Ok(OfferedCodecs { vp8: 96, opus: 111 })
        );
    }

    #[test]
    fn an_offer_without_vp8_or_opus_is_named() {
        gst::init().unwrap();
        let no_vp8 = OFFER.replace("a=rtpmap:96 VP8/90000\r\n", "");
        let sdp = gst_sdp::SDPMessage::parse_buffer(no_vp8.as_bytes()).unwrap();
        assert!(offered_codecs(&sdp).unwrap_err().contains("VP8"));
        let no_opus = OFFER.replace("a=rtpmap:111 opus/48000/2\r\n", "");
        let sdp = gst_sdp::SDPMessage::parse_buffer(no_opus.as_bytes()).unwrap();
        assert!(offered_codecs(&sdp).unwrap_err().contains("Opus"));
    }
}
