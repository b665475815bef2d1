//! `vasafacegen-serve`: talk to the avatar from a browser. Serves one page over HTTP; each
//! visitor who presses Start gets a pipeline of their own (see `session`) that turns the
//! browser's microphone into the talking face, sent back over WebRTC.
//!
//! Signalling is one HTTP exchange in the manner of WHIP: the page POSTs its SDP offer
//! (ICE candidates included) to `/whip`, the answer comes back with `201 Created` and a
//! `Location` naming the session, and a DELETE of that location ends it. No third-party
//! server: ICE uses the host's own addresses.

mod session;

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use session::{Session, SessionConfig};
use tiny_http::{Header, Method, Request, Response};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Serve a page where a browser's microphone drives the talking face over WebRTC"
)]
struct Args {
    /// Portrait to animate (PNG, JPEG or WebP).
    #[arg(long, default_value = "assets/astronaut.png")]
    image: PathBuf,
    /// Address to listen on. Only this host by default: the page asks for a microphone.
    #[arg(long, default_value = "127.0.0.1")]
    address: String,
    /// Port to listen on (0: any free one; the chosen one is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Where the face is, "x,y,width,height" in image pixels (skips face detection).
    #[arg(long)]
    face_box: Option<String>,
    /// Renderer weights (vasafacegen's model property): builtin, or a model bundle.
    #[arg(long, default_value = "builtin")]
    model: String,
    /// Motion source: auto, builtin, joyvasa or ditto.
    #[arg(long, default_value = "auto")]
    motion: String,
    /// Frame width in pixels.
    #[arg(long, default_value_t = 512)]
    width: u32,
    /// Frame height in pixels.
    #[arg(long, default_value_t = 512)]
    height: u32,
    /// Frames per second.
    #[arg(long, default_value_t = 25)]
    fps: u32,
    /// Send the browser its own speech back, in step with the face.
    #[arg(long)]
    echo: bool,
    /// Video bitrate in kbit/s.
    #[arg(long, default_value_t = 1500)]
    bitrate_kbps: u32,
    /// Sessions at once; a visitor beyond them is told the server is busy.
    #[arg(long, default_value_t = 4)]
    max_sessions: usize,
    /// A session ends when its browser sent no audio for this many seconds.
    #[arg(long, default_value_t = 5.0)]
    idle_timeout: f32,
    /// Where the page's reports go (`?report=1`: frames received, snapshots); for tests.
    #[arg(long)]
    report_dir: Option<PathBuf>,
}

/// The page, served at `/`.
const PAGE: &str = include_str!("page.html");
/// The largest request body taken: an SDP offer is a few kB, a report's snapshot less
/// than a megabyte.
const MAX_BODY: u64 = 8 << 20;

struct Server {
    config: SessionConfig,
    max_sessions: usize,
    report_dir: Option<PathBuf>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Sessions made since the start (for the session ids and `/status`).
    made: AtomicU64,
    /// Every session's pipeline, held weakly: `/status` counts those not yet freed.
    pipelines: Mutex<Vec<gst::glib::WeakRef<gst::Pipeline>>>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("vasafacegen-serve: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    if !args.image.is_file() {
        return Err(format!("--image {}: no such file", args.image.display()));
    }
    if args.width == 0 || args.height == 0 || args.fps == 0 || args.max_sessions == 0 {
        return Err("--width, --height, --fps and --max-sessions must be above 0".into());
    }
    if !(args.idle_timeout.is_finite() && args.idle_timeout > 0.0) {
        return Err(format!(
            "--idle-timeout {}: give seconds above 0",
            args.idle_timeout
        ));
    }
    if let Some(dir) = &args.report_dir {
        std::fs::create_dir_all(dir)
            .map_err(|err| format!("cannot create --report-dir {}: {err}", dir.display()))?;
    }
    gst::init().map_err(|err| format!("cannot initialise GStreamer: {err}"))?;
    gstvasafacegen::plugin_register_static()
        .map_err(|err| format!("cannot register the vasafacegen plugin: {err}"))?;
    check_elements()?;

    let image = std::fs::canonicalize(&args.image)
        .map_err(|err| format!("--image {}: {err}", args.image.display()))?;
    let config = SessionConfig {
        image: image.to_string_lossy().into_owned(),
        face_box: args.face_box.clone(),
        model: args.model.clone(),
        motion: args.motion.clone(),
        width: args.width,
        height: args.height,
        fps: args.fps,
        echo: args.echo,
        bitrate: args.bitrate_kbps.saturating_mul(1000),
        idle_timeout: Duration::from_secs_f32(args.idle_timeout),
    };
    // The portrait and weights are checked once, before any visitor comes: a session
    // only starts pipelines that are known to work, and all share the weights.
    check_portrait(&config)?;

    let http = tiny_http::Server::http((args.address.as_str(), args.port))
        .map_err(|err| format!("cannot listen on {}:{}: {err}", args.address, args.port))?;
    let address = http
        .server_addr()
        .to_ip()
        .ok_or("the server has no IP address")?;
    println!("vasafacegen-serve: open http://{address}/");
    let server = Arc::new(Server {
        config,
        max_sessions: args.max_sessions,
        report_dir: args.report_dir,
        sessions: Mutex::default(),
        made: AtomicU64::new(0),
        pipelines: Mutex::default(),
    });
    for request in http.incoming_requests() {
        let server = server.clone();
        std::thread::spawn(move || server.handle(request));
    }
    Ok(())
}

/// The elements a session needs, each with the Debian package that has it.
fn check_elements() -> Result<(), String> {
    let needed = [
        ("webrtcbin", "gstreamer1.0-plugins-bad"),
        ("nicesrc", "gstreamer1.0-nice"),
        ("vp8enc", "gstreamer1.0-plugins-good"),
        ("rtpvp8pay", "gstreamer1.0-plugins-good"),
        ("rtpopusdepay", "gstreamer1.0-plugins-good"),
        ("opusdec", "gstreamer1.0-plugins-base"),
        ("opusenc", "gstreamer1.0-plugins-base"),
        ("audiomixer", "gstreamer1.0-plugins-base"),
    ];
    let missing: Vec<String> = needed
        .iter()
        .filter(|(element, _)| gst::ElementFactory::find(element).is_none())
        .map(|(element, package)| format!("{element} ({package})"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "GStreamer elements missing: {}; `make setup` installs them",
            missing.join(", ")
        ))
    }
}

/// Prepares the portrait with the engine once (NULL -> PAUSED of a lone element): a bad
/// image or bundle is named at start-up instead of failing every visitor.
fn check_portrait(config: &SessionConfig) -> Result<(), String> {
    use gst::prelude::*;
    let pipeline = gst::parse::launch(
        "audiotestsrc num-buffers=1 ! audio/x-raw,rate=16000,channels=1 \
         ! vasafacegen name=face ! fakesink",
    )
    .map_err(|err| format!("cannot build the check pipeline: {err}"))?;
    let pipeline = pipeline
        .downcast::<gst::Pipeline>()
        .map_err(|_| "the check is not a pipeline".to_owned())?;
    let face = pipeline.by_name("face").expect("named");
    config.apply(&face);
    let bus = pipeline.bus().expect("pipelines have a bus");
    let result = pipeline.set_state(gst::State::Paused).and_then(|_| {
        pipeline
            .state(gst::ClockTime::from_seconds(120))
            .0
            .map(|_| gst::StateChangeSuccess::Success)
    });
    let error = bus
        .pop_filtered(&[gst::MessageType::Error])
        .map(|message| match message.view() {
            gst::MessageView::Error(err) => err.error().to_string(),
            _ => unreachable!("filtered"),
        });
    let _ = pipeline.set_state(gst::State::Null);
    match (result, error) {
        (_, Some(error)) => Err(error),
        (Err(_), None) => Err("the portrait could not be prepared".into()),
        (Ok(_), None) => Ok(()),
    }
}

impl Server {
    fn handle(&self, mut request: Request) {
        let url = request.url().to_owned();
        let path = url.split('?').next().unwrap_or("").to_owned();
        let method = request.method().clone();
        let response = match (&method, path.as_str()) {
            (Method::Get, "/") => text(200, PAGE, "text/html; charset=utf-8"),
            (Method::Get, "/status") => json(200, &self.status()),
            (Method::Post, "/whip") => match read_body(&mut request) {
                Ok(offer) => self.start_session(&String::from_utf8_lossy(&offer)),
                Err(response) => response,
            },
            (Method::Get, p) if p.starts_with("/whip/") => match self.session(&p[6..]) {
                Some(session) => json(200, &session.stats_json()),
                None => text(404, "no such session", "text/plain"),
            },
            (Method::Delete, p) if p.starts_with("/whip/") => match self.session(&p[6..]) {
                Some(session) => {
                    session.end("the page stopped it");
                    self.sessions.lock().unwrap().remove(&session.id);
                    text(200, "ended", "text/plain")
                }
                None => text(404, "no such session", "text/plain"),
            },
            (Method::Post, p) if p.starts_with("/report/") => {
                self.save_report(&p[8..], &mut request)
            }
            (Method::Get | Method::Post | Method::Delete, _) => {
                text(404, "not found", "text/plain")
            }
            _ => text(405, "method not allowed", "text/plain"),
        };
        let _ = request.respond(response);
    }

    fn session(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.lock().unwrap().get(id).cloned()
    }

    fn start_session(&self, offer: &str) -> Response<std::io::Cursor<Vec<u8>>> {
        {
            let mut sessions = self.sessions.lock().unwrap();
            sessions.retain(|_, session| !session.has_ended());
            if sessions.len() >= self.max_sessions {
                return text(
                    503,
                    &format!("busy: {} sessions already", sessions.len()),
                    "text/plain",
                );
            }
        }
        let number = self.made.fetch_add(1, Ordering::Relaxed) + 1;
        let id = format!("{number}-{:08x}", random_u32());
        match Session::answer(id.clone(), &self.config, offer) {
            Ok((session, answer)) => {
                let session = Arc::new(session);
                self.pipelines.lock().unwrap().push(session.pipeline_ref());
                self.sessions
                    .lock()
                    .unwrap()
                    .insert(id.clone(), session.clone());
                let idle_timeout = self.config.idle_timeout;
                std::thread::spawn(move || session.watch(idle_timeout));
                eprintln!("vasafacegen-serve: session {id} started");
                text(201, &answer, "application/sdp").with_header(
                    Header::from_bytes("Location", format!("/whip/{id}")).expect("ascii"),
                )
            }
            Err(why) => {
                eprintln!("vasafacegen-serve: a session could not start: {why}");
                text(400, &why, "text/plain")
            }
        }
    }

    fn status(&self) -> serde_json::Value {
        let running = {
            let mut sessions = self.sessions.lock().unwrap();
            sessions.retain(|_, session| !session.has_ended());
            sessions.len()
        };
        let pipelines_alive = {
            let mut pipelines = self.pipelines.lock().unwrap();
            pipelines.retain(|pipeline| pipeline.upgrade().is_some());
            pipelines.len()
        };
        let (rss_kib, threads) = process_usage();
        serde_json::json!({
            "sessions": running,
            "pipelines_alive": pipelines_alive,
            "sessions_made": self.made.load(Ordering::Relaxed),
            "rss_kib": rss_kib,
            "threads": threads,
        })
    }

    /// `/report/NAME`: the page's report (with `?report=1`), written to `--report-dir`.
    fn save_report(&self, name: &str, request: &mut Request) -> Response<std::io::Cursor<Vec<u8>>> {
        let Some(dir) = &self.report_dir else {
            return text(
                404,
                "reports are off (start with --report-dir)",
                "text/plain",
            );
        };
        let safe = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !safe {
            return text(
                400,
                "a report name is letters, digits, - _ and .",
                "text/plain",
            );
        }
        let body = match read_body(request) {
            Ok(body) => body,
            Err(response) => return response,
        };
        match std::fs::write(dir.join(name), body) {
            Ok(()) => text(200, "saved", "text/plain"),
            Err(err) => text(500, &format!("cannot save {name}: {err}"), "text/plain"),
        }
    }
}

fn read_body(request: &mut Request) -> Result<Vec<u8>, Response<std::io::Cursor<Vec<u8>>>> {
    let mut body = Vec::new();
    request
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
        .map_err(|err| {
            text(
                400,
                &format!("cannot read the request: {err}"),
                "text/plain",
            )
        })?;
    if body.len() as u64 > MAX_BODY {
        return Err(text(413, "the request is too large", "text/plain"));
    }
    Ok(body)
}

fn text(status: u16, body: &str, content_type: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(status)
        .with_header(Header::from_bytes("Content-Type", content_type).expect("ascii"))
        .with_header(Header::from_bytes("Cache-Control", "no-store").expect("ascii"))
}

fn json(status: u16, value: &serde_json::Value) -> Response<std::io::Cursor<Vec<u8>>> {
    text(status, &value.to_string(), "application/json")
}

/// This process's resident memory (KiB) and thread count, from /proc.
fn process_usage() -> (Option<u64>, Option<u64>) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
    };
    (field("VmRSS:"), field("Threads:"))
}

/// A session id's random part: unguessable enough that one visitor cannot end another's
/// session by counting.
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos()),
    );
    hasher.finish() as u32
}
