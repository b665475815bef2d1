//! `vasafacegen-serve` with a real browser: Debian's Chromium, headless, whose fake
//! microphone plays a speech file with pauses, opens the page against a server started
//! here. The page reports what it received (frames, the microphone's level, snapshots of
//! the video) to the server's `--report-dir`; the snapshots are judged with the face mesh.
//! A second test runs twenty sessions one after another and reads the server's memory
//! and threads after each.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gstvasafacegen::face::reading::read;
use gstvasafacegen::portrait::Portrait;
use gstvasafacegen::render::pack::to_rgb_image;
use serde_json::{Value, json};

/// How long the fake microphone speaks, then is silent, in each of its loops.
const SPEECH_S: f64 = 2.5;
const PAUSE_S: f64 = 2.5;
const FPS: f64 = 25.0;

struct Served {
    child: Child,
    address: String,
}

impl Served {
    fn start(report_dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vasafacegen-serve"))
            .current_dir(common::repo())
            .args(["--port", "0", "--idle-timeout", "4", "--report-dir"])
            .arg(report_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("vasafacegen-serve starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("vasafacegen-serve: open http://") {
                    let _ = tx.send(address.trim_end_matches('/').to_owned());
                }
            }
        });
        let address = rx
            .recv_timeout(Duration::from_secs(180))
            .expect("the server says where it listens");
        Self { child, address }
    }

    /// One HTTP/1.1 request; the status code and the body.
    fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        request(&self.address, method, path, body)
    }

    fn status(&self) -> Value {
        status(&self.address)
    }
}

/// One HTTP/1.1 request to the server at `address`; the status code and the body.
fn request(address: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        address,
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let code = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("an HTTP status line");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (code, body.to_owned())
}

fn status(address: &str) -> Value {
    let (code, body) = request(address, "GET", "/status", "");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status is JSON")
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Headless Chromium driven through the DevTools protocol on a pipe (fds 3 and 4), for
/// the screenshot; the page reports everything else itself.
struct Browser {
    child: Child,
    to_browser: std::fs::File,
    replies: mpsc::Receiver<Value>,
    next_id: u64,
}

impl Browser {
    fn open(url: &str, microphone: &Path, profile: &Path) -> Self {
        let chromium = ["chromium", "chromium-browser"]
            .into_iter()
            .find(|name| Command::new(name).arg("--version").output().is_ok())
            .expect("Chromium is installed (make setup installs Debian's chromium)");
        let (commands_read, commands_write) = pipe();
        let (events_read, events_write) = pipe();
        let mut command = Command::new(chromium);
        command
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                // Containers often give /dev/shm only 64 MB.
                "--disable-dev-shm-usage",
                "--remote-debugging-pipe",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
                // Machines with nothing but a loopback interface still connect.
                "--allow-loopback-in-peer-connection",
                "--window-size=660,900",
            ])
            .arg(format!(
                "--use-file-for-fake-audio-capture={}",
                microphone.display()
            ))
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let (child_in, child_out) = (commands_read.as_raw(), events_write.as_raw());
        // SAFETY: between fork and exec only dup2, which is async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(child_in, 3) < 0 || libc::dup2(child_out, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("chromium starts");
        drop(commands_read);
        drop(events_write);
        let (tx, replies) = mpsc::channel();
        let mut events = events_read.into_file();
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut chunk = [0u8; 65536];
            while let Ok(n) = events.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                pending.extend_from_slice(&chunk[..n]);
                while let Some(end) = pending.iter().position(|&b| b == 0) {
                    let message: Vec<u8> = pending.drain(..=end).collect();
                    if let Ok(value) = serde_json::from_slice::<Value>(&message[..end]) {
                        let _ = tx.send(value);
                    }
                }
            }
        });
        Self {
            child,
            to_browser: commands_write.into_file(),
            replies,
            next_id: 1,
        }
    }

    fn call(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.to_browser
            .write_all(format!("{message}\0").as_bytes())
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = self
                .replies
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("Chromium answers {method}"));
            if reply["id"] == json!(id) {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }

    /// A PNG of the page as it is now.
    fn screenshot(&mut self) -> Vec<u8> {
        let targets = self.call("Target.getTargets", json!({}), None);
        let page = targets["targetInfos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|target| target["type"] == "page")
            .expect("a page target")["targetId"]
            .clone();
        let attached = self.call(
            "Target.attachToTarget",
            json!({"targetId": page, "flatten": true}),
            None,
        );
        let session = attached["sessionId"].as_str().unwrap().to_owned();
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png"}),
            Some(&session),
        );
        base64_decode(shot["data"].as_str().unwrap())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct PipeEnd(std::os::fd::OwnedFd);

impl PipeEnd {
    fn as_raw(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }
    fn into_file(self) -> std::fs::File {
        std::fs::File::from(self.0)
    }
}

fn pipe() -> (PipeEnd, PipeEnd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe writes; each is owned once.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0, "pipe");
        (
            PipeEnd(std::os::fd::OwnedFd::from_raw_fd(fds[0])),
            PipeEnd(std::os::fd::OwnedFd::from_raw_fd(fds[1])),
        )
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    digits
        .chunks(4)
        .flat_map(|group| {
            let bits = group
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, &d)| acc | u32::from(d) << (18 - 6 * i));
            let bytes = [(bits >> 16) as u8, (bits >> 8) as u8, bits as u8];
            bytes.into_iter().take(group.len().saturating_sub(1))
        })
        .collect()
}

/// The fake microphone's file: speech, then a pause, (Chromium loops it).
fn microphone_file(dir: &Path) -> PathBuf {
    let mut samples = common::speech_clip(0.6, SPEECH_S);
    samples.extend(std::iter::repeat_n(0i16, (PAUSE_S * 16000.0) as usize));
    let path = dir.join("microphone.wav");
    common::write_wav(&path, &samples);
    path
}

fn wait_for(path: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let error = path.with_file_name("error");
    while !path.exists() {
        if let Ok(why) = std::fs::read_to_string(&error) {
            panic!("the page could not start: {why}");
        }
        assert!(
            Instant::now() < deadline,
            "{} did not appear within {timeout:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn load_rgb(path: &Path) -> image::RgbImage {
    image::open(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .to_rgb8()
}

/// The builtin renderer's frame of `image` with the lips closed and the head straight,
/// 512x512: the face of a silent session.
fn closed_frame(image: &Path) -> image::RgbImage {
    use gstvasafacegen::core::{FaceMotion, FrameSize, Motion};
    use gstvasafacegen::render::warp::WarpRenderer;
    use gstvasafacegen::render::{Renderer, SourceHints};
    let size = FrameSize {
        width: 512,
        height: 512,
    };
    let mut renderer = WarpRenderer::new(tch::Device::Cpu);
    let source = renderer
        .source_preparer()
        .prepare(Portrait::load(image).unwrap(), &SourceHints::default())
        .unwrap();
    let closed = FaceMotion {
        mouth_open: 0.0,
        ..FaceMotion::default()
    };
    let frame = renderer
        .render(&Motion::Face(closed), &source, size)
        .unwrap();
    to_rgb_image(&frame).unwrap()
}

/// Peak signal-to-noise ratio of `a` against `b` (same size), in dB.
fn psnr(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    let squared: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    let mse = squared / a.as_raw().len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10()
}

/// A report's series of `[time, value]` pairs.
fn pairs(series: &Value) -> Vec<(f64, f64)> {
    series
        .as_array()
        .expect("a series")
        .iter()
        .map(|pair| (pair[0].as_f64().unwrap(), pair[1].as_f64().unwrap()))
        .collect()
}

/// Intersection over union of two face boxes.
fn overlap(a: &gstvasafacegen::face::FaceBox, b: &gstvasafacegen::face::FaceBox) -> f32 {
    let width = (a.x + a.width).min(b.x + b.width) - a.x.max(b.x);
    let height = (a.y + a.height).min(b.y + b.height) - a.y.max(b.y);
    let inter = width.max(0.0) * height.max(0.0);
    inter / (a.width * a.height + b.width * b.height - inter)
}

/// Pearson correlation of two equally long series.
fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt().max(1e-12)
}

/// The microphone's loudest level in the `span_ms` before `at_ms` (the page's samples).
fn level_before(levels: &[(f64, f64)], at_ms: f64, span_ms: f64) -> f64 {
    levels
        .iter()
        .filter(|(t, _)| *t <= at_ms && *t > at_ms - span_ms)
        .map(|(_, level)| *level)
        .fold(0.0, f64::max)
}

#[test]
fn a_browser_talks_to_the_avatar_over_webrtc() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let microphone = microphone_file(dir.path());
    let server = Served::start(&report, &["--echo"]);
    let seconds = 12;
    let url = format!(
        "http://{}/?autostart=1&report=1&seconds={seconds}&leave=1",
        server.address
    );
    let mut browser = Browser::open(&url, &microphone, &dir.path().join("profile"));

    // The page mid-session, for the README: of three moments a second apart, the one
    // with the eyes most open (a blink caught in a still looks like a wink). The first
    // is when the tenth snapshot is in: how fast snapshots come depends on the load.
    wait_for(&report.join("snapshot-0-010.png"), Duration::from_secs(60));
    let mut shots = Vec::new();
    for moment in 0..3 {
        if moment > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        let shot = browser.screenshot();
        let page = image::load_from_memory(&shot).expect("the screenshot is a PNG");
        let openness =
            gstvasafacegen::face::analyze(&Portrait::from_image("page".into(), &page), None)
                .map_or(0.0, |face| {
                    read(&face.mesh).eye_openness.iter().sum::<f32>()
                });
        shots.push((openness, shot));
    }
    let shot = shots
        .into_iter()
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap()
        .1;
    let shot_path = common::repo().join("target/serve-page.png");
    std::fs::write(&shot_path, &shot).unwrap();
    if std::env::var_os("VASAFACEGEN_WRITE_DOCS").is_some() {
        std::fs::write(common::repo().join("docs/serve-page.png"), &shot).unwrap();
    }
    wait_for(&report.join("done"), Duration::from_secs(60));
    // From here the server should end the session by itself (the page only stopped its
    // microphone): watched beside the judging, which takes a while on a loaded machine.
    let freed = {
        let address = server.address.clone();
        std::thread::spawn(move || {
            let stopped = Instant::now();
            while status(&address)["pipelines_alive"] != json!(0) {
                if stopped.elapsed() > Duration::from_secs(12) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Some(stopped.elapsed())
        })
    };
    let summary: Value =
        serde_json::from_slice(&std::fs::read(report.join("summary-0.json")).unwrap()).unwrap();
    println!(
        "connect {} ms, first frame {} ms, {} frames, {:.2} fps, server: {}",
        summary["connect_ms"],
        summary["first_frame_ms"],
        summary["frames"],
        summary["fps"],
        summary["stats"]
    );

    // Frames arrive within a few seconds, at the negotiated rate, the size asked.
    let connect = summary["connect_ms"].as_f64().expect("the page connected");
    let first = summary["first_frame_ms"].as_f64().expect("a frame arrived");
    assert!(
        first - connect < 3000.0,
        "first frame {first} ms, connected {connect} ms"
    );
    // Frames arrive at the negotiated rate (RTP frames assembled, before decoding, as
    // the page's statistics counted them every 250 ms), from the connection on: never
    // more than the time since connecting allows (frames made before it are not
    // queued up for a burst). What the page presented is printed too.
    let received = pairs(&summary["received"]);
    for &(at, frames) in &received {
        let allowed = (at - connect).max(0.0) / 1000.0 * FPS + 4.0;
        assert!(
            frames <= allowed,
            "{frames} frames {:.0} ms after connecting",
            at - connect
        );
    }
    let (&(t0, n0), &(t1, n1)) = (received.first().unwrap(), received.last().unwrap());
    let fps = (n1 - n0) / (t1 - t0) * 1000.0;
    println!(
        "frames received at {fps:.2} per second, presented at {:.2}",
        summary["fps"]
    );
    assert!(
        fps > 0.9 * FPS && fps < 1.1 * FPS,
        "{fps:.2} frames per second"
    );
    assert_eq!(
        (summary["width"].as_u64(), summary["height"].as_u64()),
        (Some(512), Some(512))
    );
    // Audio that reached the element after its frame was drawn is dropped and counted;
    // a loaded machine (this test runs beside others) may lose a buffer or two, no more.
    let dropped = summary["stats"]["late_audio_dropped_ms"].as_f64().unwrap();
    assert!(
        dropped < 0.02 * 1000.0 * seconds as f64,
        "{dropped} ms of audio dropped"
    );

    // The snapshots are the portrait as the element draws it, the face where it is
    // in that frame.
    let rest = closed_frame(&common::astronaut());
    let rest_face = gstvasafacegen::face::analyze(
        &Portrait::from_image("rest".into(), &image::DynamicImage::from(rest.clone())),
        None,
    )
    .unwrap();
    let closed_gap = read(&rest_face.mesh).lip_gap;
    let levels = pairs(&summary["levels"]);
    let mut judged = Vec::new();
    let mut least_similar = f64::MAX;
    for snapshot in summary["snapshots"].as_array().unwrap() {
        let frame = load_rgb(&report.join(snapshot["name"].as_str().unwrap()));
        let similarity = psnr(&frame, &rest);
        least_similar = least_similar.min(similarity);
        assert!(
            similarity > 22.0,
            "{snapshot}: {similarity:.1} dB from the drawn portrait"
        );
        let image = Portrait::from_image("snapshot".into(), &image::DynamicImage::from(frame));
        let face = gstvasafacegen::face::analyze(&image, None).expect("a face in the snapshot");
        let iou = overlap(
            face.detection.as_ref().expect("detected"),
            rest_face.detection.as_ref().expect("detected"),
        );
        assert!(
            iou > 0.8,
            "{snapshot}: the face box overlaps the portrait's by {iou:.2}"
        );
        judged.push((
            snapshot["at_ms"].as_f64().unwrap(),
            f64::from(read(&face.mesh).lip_gap),
        ));
    }
    // Every 200 ms when the machine keeps up; fewer when it is loaded.
    assert!(judged.len() >= 15, "{} snapshots", judged.len());
    println!(
        "snapshots: {} judged, the least like the drawn portrait {least_similar:.1} dB",
        judged.len()
    );

    // The mouth moves with the microphone's speech, some delay later, and rests in its
    // pauses. The delay (the element's latency and the browser's buffering) is the one
    // at which lips and speech agree best.
    let gaps: Vec<f64> = judged.iter().map(|(_, gap)| *gap).collect();
    let (delay, agreement) = (0..=25)
        .map(|step| {
            let delay = f64::from(step) * 40.0;
            let speech: Vec<f64> = judged
                .iter()
                .map(|(at, _)| level_before(&levels, at - delay, 160.0))
                .collect();
            (delay, correlation(&speech, &gaps))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    let silent: Vec<f64> = judged
        .iter()
        .filter(|(at, _)| level_before(&levels, at - delay, 600.0) < 0.003)
        .map(|(_, gap)| *gap)
        .collect();
    let speaking: Vec<f64> = judged
        .iter()
        .filter(|(at, _)| level_before(&levels, at - delay, 160.0) > 0.02)
        .map(|(_, gap)| *gap)
        .collect();
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
    let max = |values: &[f64]| values.iter().copied().fold(f64::MIN, f64::max);
    println!(
        "lips follow speech at {delay} ms (r = {agreement:.2}); lip gap / IOD: closed \
         {closed_gap:.3}, silent {:.3} (max {:.3}, {} snapshots), speaking {:.3} ({} snapshots)",
        mean(&silent),
        max(&silent),
        silent.len(),
        mean(&speaking),
        speaking.len()
    );
    assert!(
        agreement > 0.4,
        "lips and speech correlate by {agreement:.2}"
    );
    assert!(
        silent.len() >= 5 && speaking.len() >= 5,
        "too few snapshots to judge"
    );
    assert!(
        max(&silent) < f64::from(closed_gap) + 0.03,
        "the mouth opens in the pauses: {silent:?}"
    );
    assert!(
        mean(&speaking) > mean(&silent) + 0.03,
        "the mouth barely moves with speech: {speaking:?} vs {silent:?}"
    );

    // The speech came back (--echo) with the face.
    let echoed = summary["inbound_audio"]["packetsReceived"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        echoed as f64 > 0.8 * 50.0 * (seconds as f64 - 3.0),
        "{echoed} audio packets back"
    );

    // The page only stopped its microphone: the server ends the session after its idle
    // timeout (4 s here) and frees the pipeline.
    let freed = freed
        .join()
        .unwrap()
        .unwrap_or_else(|| panic!("the session outlived its microphone: {}", server.status()));
    println!(
        "session freed {:.1} s after the microphone stopped (idle timeout 4 s)",
        freed.as_secs_f32()
    );
}

#[test]
fn twenty_sessions_one_after_another_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let microphone = microphone_file(dir.path());
    let server = Served::start(&report, &["--width", "256", "--height", "256"]);
    let before = server.status();

    // What a wrong request gets: a status and a reason, and no session.
    let (code, why) = server.request("POST", "/whip", "not an offer");
    assert_eq!(code, 400, "{why}");
    assert!(why.contains("not an SDP offer"), "{why}");
    let audio_only = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n";
    let (code, why) = server.request("POST", "/whip", audio_only);
    assert_eq!(code, 400, "{why}");
    assert!(why.contains("VP8"), "{why}");
    assert_eq!(server.request("GET", "/whip/1-00000000", "").0, 404);
    assert_eq!(server.request("DELETE", "/whip/nothing", "").0, 404);
    assert_eq!(server.request("POST", "/report/..%2Fescape", "x").0, 400);
    assert_eq!(server.request("PUT", "/", "").0, 405);
    assert_eq!(server.status()["pipelines_alive"], json!(0));

    let cycles: usize = 20;
    let url = format!(
        "http://{}/?autostart=1&report=1&seconds=2&snapshots=0&cycles={cycles}",
        server.address
    );
    let _browser = Browser::open(&url, &microphone, &dir.path().join("profile"));
    wait_for(
        &report.join("done"),
        Duration::from_secs(40 * cycles as u64),
    );
    let summaries: Vec<Value> = (0..cycles)
        .map(|cycle| {
            let path = report.join(format!("summary-{cycle}.json"));
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
        })
        .collect();
    for (cycle, summary) in summaries.iter().enumerate() {
        println!(
            "session {cycle}: connected {} ms, first frame {} ms, {} frames, presented {}, \
             decoded {}, server {}",
            summary["connect_ms"],
            summary["first_frame_ms"],
            summary["frames"],
            summary["presented"],
            summary["inbound"]["framesDecoded"],
            summary["stats"]
        );
    }
    let mut usage = Vec::new();
    for (cycle, summary) in summaries.iter().enumerate() {
        let decoded = summary["inbound"]["framesDecoded"].as_u64().unwrap_or(0);
        assert!(
            decoded > 10,
            "session {cycle}: {decoded} frames decoded: {}",
            {
                let mut shown = summary.clone();
                shown["levels"] = json!(null);
                shown
            }
        );
        let after = &summary["server_after_stop"];
        assert_eq!(after["sessions"], json!(0), "session {cycle} still runs");
        usage.push((
            after["rss_kib"].as_u64().unwrap() as f64 / 1024.0,
            after["threads"].as_u64().unwrap(),
        ));
    }
    // Every pipeline is freed (its watcher lets go within a fraction of a second).
    let deadline = Instant::now() + Duration::from_secs(5);
    let end = loop {
        let status = server.status();
        if status["pipelines_alive"] == json!(0) || Instant::now() > deadline {
            break status;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("before: {before}; after each session (RSS MiB, threads): {usage:?}; end: {end}");
    assert_eq!(
        end["pipelines_alive"],
        json!(0),
        "pipelines not freed: {end}"
    );
    // Threads come back to what one session leaves (GStreamer's pools); memory settles
    // after the first sessions (allocator arenas, the prepared-portrait cache) where a
    // session that kept its pipeline would add its buffers to every later one.
    let (rss_10, threads_10) = usage[9];
    let (rss_20, threads_20) = usage[cycles - 1];
    assert!(
        threads_20 <= threads_10 + 2,
        "threads grew {threads_10} -> {threads_20}"
    );
    assert!(
        rss_20 - rss_10 < 40.0,
        "RSS grew {rss_10:.0} -> {rss_20:.0} MiB"
    );
}

#[test]
fn a_portrait_with_no_face_or_no_file_stops_the_server_at_start_up() {
    for (image, expected) in [
        ("tests/files/faces/cat.png", "no face found"),
        ("tests/files/faces/missing.png", "no such file"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_vasafacegen-serve"))
            .current_dir(common::repo())
            .args(["--port", "0", "--image", image])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{image}: started");
        assert!(
            stderr.contains(expected) && stderr.contains(image),
            "{image}: {stderr}"
        );
    }
}
