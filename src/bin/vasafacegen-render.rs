//! `vasafacegen-render`: renders a portrait and a speech file into a video file (H.264 +
//! AAC in MP4, MKV or MOV), with a progress bar. It builds the same pipeline as the
//! README's gst-launch-1.0 line, with the plugin linked in (no GST_PLUGIN_PATH needed).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use gst::prelude::*;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Render a talking-face video from a portrait and speech"
)]
struct Args {
    /// Portrait to animate (PNG, JPEG or WebP).
    #[arg(long)]
    image: PathBuf,
    /// Speech to lip-sync to (any format GStreamer decodes: WAV, FLAC, MP3, Ogg, ...).
    #[arg(long)]
    audio: PathBuf,
    /// Output file: .mp4, .mkv or .mov (H.264 video, AAC audio).
    #[arg(long)]
    out: PathBuf,
    /// Frame width in pixels (default: the element's, 512).
    #[arg(long)]
    width: Option<u32>,
    /// Frame height in pixels (default: the element's, 512).
    #[arg(long)]
    height: Option<u32>,
    /// Frames per second (default: the element's, 25).
    #[arg(long)]
    fps: Option<u32>,
    /// Renderer weights (vasafacegen's model property): builtin, or a model bundle.
    #[arg(long, default_value = "builtin")]
    model: String,
    /// Motion source: auto (the bundle's generator if it has one), builtin or joyvasa.
    #[arg(long, default_value = "auto")]
    motion: String,
    /// Blinks: auto (the motion source's own) or procedural.
    #[arg(long, default_value = "auto")]
    blinks: String,
    /// Number format of a neural renderer: float32, bfloat16 or float16 (CUDA).
    #[arg(long, default_value = "float32")]
    precision: String,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: String,
    /// Seed of the random motion.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Overwrite the output file if it exists.
    #[arg(long, short = 'f')]
    force: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("vasafacegen-render: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Quotes a value for gst-launch syntax.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

fn muxer_for(out: &Path) -> Result<&'static str, String> {
    let extension = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("mp4") => Ok("mp4mux faststart=true"),
        Some("mov") => Ok("qtmux"),
        Some("mkv") => Ok("matroskamux"),
        _ => Err(format!(
            "cannot tell the container from \"{}\": name the output .mp4, .mkv or .mov",
            out.display()
        )),
    }
}

fn pipeline_description(args: &Args) -> Result<String, String> {
    let muxer = muxer_for(&args.out)?;
    let mut video_caps = Vec::new();
    if let Some(width) = args.width {
        video_caps.push(format!("width={width}"));
    }
    if let Some(height) = args.height {
        video_caps.push(format!("height={height}"));
    }
    if let Some(fps) = args.fps {
        video_caps.push(format!("framerate={fps}/1"));
    }
    let size_filter = if video_caps.is_empty() {
        String::new()
    } else {
        format!("! video/x-raw,{} ", video_caps.join(","))
    };
    // The audio branch's queue is unbounded: x264enc holds a couple of seconds of frames
    // before its first output, and the muxer must not starve the video branch meanwhile.
    // bframes=0: with B-frames (the medium preset's default) mp4mux 1.22 starts the video
    // two frames after the audio, which a viewer sees as the lips lagging.
    Ok(format!(
        "filesrc location={audio} ! decodebin ! tee name=t \
         t. ! queue ! audioconvert ! audioresample ! audio/x-raw,rate=16000,channels=1 \
         ! vasafacegen name=face image={image} model={model} motion={motion} blinks={blinks} \
           precision={precision} device={device} seed={seed} \
         {size_filter}! videoconvert ! video/x-raw,format=I420 ! x264enc bframes=0 ! queue \
         ! {muxer} name=mux ! filesink location={out} \
         t. ! queue max-size-time=0 max-size-bytes=0 max-size-buffers=0 \
         ! audioconvert ! avenc_aac ! mux.",
        audio = quoted(&args.audio.to_string_lossy()),
        image = quoted(&args.image.to_string_lossy()),
        model = quoted(&args.model),
        motion = quoted(&args.motion),
        blinks = quoted(&args.blinks),
        precision = quoted(&args.precision),
        device = quoted(&args.device),
        seed = args.seed,
        out = quoted(&args.out.to_string_lossy()),
    ))
}

fn run(args: &Args) -> Result<(), String> {
    for (what, path) in [("--image", &args.image), ("--audio", &args.audio)] {
        if !path.is_file() {
            return Err(format!("{what} {}: no such file", path.display()));
        }
    }
    if args.out.exists() && !args.force {
        return Err(format!(
            "{} exists; pass --force to overwrite it",
            args.out.display()
        ));
    }
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    }

    gst::init().map_err(|err| format!("cannot initialise GStreamer: {err}"))?;
    gstvasafacegen::plugin_register_static()
        .map_err(|err| format!("cannot register the vasafacegen plugin: {err}"))?;
    let description = pipeline_description(args)?;
    let pipeline = gst::parse::launch(&description)
        .map_err(|err| format!("cannot build the pipeline: {err}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "the pipeline description is not a pipeline".to_owned())?;

    // Progress = end of the last frame the element produced.
    let first_pts = Arc::new(AtomicU64::new(u64::MAX));
    let rendered = Arc::new(AtomicU64::new(0));
    let face = pipeline.by_name("face").expect("named in the description");
    let src = face.static_pad("src").expect("vasafacegen has a src pad");
    {
        let (first_pts, rendered) = (first_pts.clone(), rendered.clone());
        src.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer()
                && let Some(pts) = buffer.pts()
            {
                let first = first_pts
                    .fetch_min(pts.nseconds(), Ordering::Relaxed)
                    .min(pts.nseconds());
                let end = pts.nseconds() + buffer.duration().map_or(0, |d| d.nseconds());
                rendered.fetch_max(end - first, Ordering::Relaxed);
            }
            gst::PadProbeReturn::Ok
        });
    }

    let result = play(&pipeline, args, &rendered);
    let _ = pipeline.set_state(gst::State::Null);
    if result.is_err() {
        let _ = std::fs::remove_file(&args.out);
    }
    result
}

fn play(pipeline: &gst::Pipeline, args: &Args, rendered: &AtomicU64) -> Result<(), String> {
    let bus = pipeline.bus().expect("pipelines have a bus");
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| first_error(&bus).unwrap_or_else(|| "the pipeline failed to start".into()))?;

    let started = Instant::now();
    let mut progress = Progress::new(std::io::stderr().is_terminal());
    let mut duration = None;
    loop {
        if let Some(message) = bus.timed_pop(gst::ClockTime::from_mseconds(200)) {
            match message.view() {
                gst::MessageView::Eos(_) => break,
                gst::MessageView::Error(err) => return Err(describe_error(err)),
                gst::MessageView::Warning(warning) => {
                    progress.clear();
                    eprintln!("warning: {}", warning.error());
                }
                _ => {}
            }
        }
        if duration.is_none() {
            duration = pipeline.query_duration::<gst::ClockTime>();
        }
        let done = Duration::from_nanos(rendered.load(Ordering::Relaxed));
        progress.show(done, duration.map(Duration::from), started.elapsed());
    }
    let done = Duration::from_nanos(rendered.load(Ordering::Relaxed));
    progress.finish(done, started.elapsed());
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

fn first_error(bus: &gst::Bus) -> Option<String> {
    while let Some(message) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) {
        if let gst::MessageView::Error(err) = message.view() {
            return Some(describe_error(err));
        }
    }
    None
}

fn describe_error(err: &gst::message::Error) -> String {
    let source = err
        .src()
        .map(|s| s.path_string().to_string())
        .unwrap_or_default();
    match err.debug() {
        Some(debug) => format!("{} ({source})\n  {debug}", err.error()),
        None => format!("{} ({source})", err.error()),
    }
}

/// A one-line progress bar on a terminal; a line per 10% otherwise (logs, CI).
struct Progress {
    terminal: bool,
    last_decile: Option<u64>,
    drawn: bool,
}

impl Progress {
    fn new(terminal: bool) -> Self {
        Self {
            terminal,
            last_decile: None,
            drawn: false,
        }
    }

    fn show(&mut self, done: Duration, total: Option<Duration>, elapsed: Duration) {
        let Some(total) = total.filter(|t| !t.is_zero()) else {
            return;
        };
        let fraction = (done.as_secs_f64() / total.as_secs_f64()).clamp(0.0, 1.0);
        let eta = if fraction > 0.0 {
            let remaining = elapsed.as_secs_f64() * (1.0 - fraction) / fraction;
            format_clock(remaining)
        } else {
            "--:--".to_owned()
        };
        let speed = if elapsed.as_secs_f64() > 0.0 {
            done.as_secs_f64() / elapsed.as_secs_f64()
        } else {
            0.0
        };
        let line = format!(
            "{:>3.0}% {:>6.1}/{:.1} s  ETA {eta}  {speed:.1}x real time",
            fraction * 100.0,
            done.as_secs_f64(),
            total.as_secs_f64()
        );
        if self.terminal {
            const WIDTH: usize = 30;
            let filled = (fraction * WIDTH as f64).round() as usize;
            eprint!(
                "\r[{}{}] {line}",
                "#".repeat(filled),
                ".".repeat(WIDTH - filled)
            );
            let _ = std::io::stderr().flush();
            self.drawn = true;
        } else {
            let decile = (fraction * 10.0).floor() as u64;
            if self.last_decile != Some(decile) {
                self.last_decile = Some(decile);
                eprintln!("rendering {line}");
            }
        }
    }

    fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[K");
            self.drawn = false;
        }
    }

    fn finish(&mut self, done: Duration, elapsed: Duration) {
        self.clear();
        eprintln!(
            "rendered {:.1} s of video in {:.1} s ({:.1}x real time)",
            done.as_secs_f64(),
            elapsed.as_secs_f64(),
            done.as_secs_f64() / elapsed.as_secs_f64().max(1e-9)
        );
    }
}

fn format_clock(seconds: f64) -> String {
    let seconds = seconds.round() as u64;
    format!("{}:{:02}", seconds / 60, seconds % 60)
}
