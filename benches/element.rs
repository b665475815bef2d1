//! Element overhead per frame: the whole element path (queueing audio, the task, the
//! engine, packing into a pooled buffer, pushing) against the engine's own work
//! (motion + render) for the same frames. The difference is what the element costs.
//!
//! `cargo bench --bench element` (or `make bench`); numbers go into the README.

use std::time::{Duration, Instant};

use gst::prelude::*;

use criterion::{Criterion, criterion_group, criterion_main};

use gstvasafacegen::core::{FrameRate, FrameSize, FrameSpan, Motion, SampleStore};
use gstvasafacegen::engine::{Engine, EngineSpec};
use gstvasafacegen::portrait::Portrait;
use gstvasafacegen::render::pack::{PixelLayout, pack_frame};
use gstvasafacegen::render::{PreparedSource, SourceHints};

const FRAME_SAMPLES: usize = 640; // 40 ms at 16 kHz: one frame at 25 fps

fn astronaut() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/astronaut.png")
}

fn speechlike(samples: usize, offset: usize) -> Vec<i16> {
    (0..samples)
        .map(|i| {
            let t = (i + offset) as f64 / 16_000.0;
            let envelope = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * 4.0 * t).cos();
            (8000.0 * envelope * (2.0 * std::f64::consts::PI * 220.0 * t).sin()) as i16
        })
        .collect()
}

fn element_per_frame(c: &mut Criterion) {
    gst::init().unwrap();
    gstvasafacegen::plugin_register_static().unwrap();
    let element = gst::ElementFactory::make("vasafacegen")
        .property("image", astronaut().to_str().unwrap())
        .property("latency", 0u32)
        .property("device", "cpu")
        .build()
        .unwrap();
    let mut h = gst_check::Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_sink_caps_str("video/x-raw,format=RGBA,width=512,height=512,framerate=25/1");
    h.play();
    h.set_src_caps_str("audio/x-raw,format=S16LE,rate=16000,channels=1,layout=interleaved");
    let mut sample = 0usize;
    let mut group = c.benchmark_group("element");
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("whole_element_per_frame_512x512_rgba_cpu", |b| {
        b.iter_custom(|frames| {
            let started = Instant::now();
            for _ in 0..frames {
                let samples = speechlike(FRAME_SAMPLES, sample);
                let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
                let mut buffer = gst::Buffer::from_mut_slice(bytes);
                buffer
                    .get_mut()
                    .unwrap()
                    .set_pts(gst::ClockTime::from_nseconds(sample as u64 * 62_500));
                sample += FRAME_SAMPLES;
                h.push(buffer).unwrap();
                h.pull().unwrap();
            }
            started.elapsed()
        })
    });
    group.finish();
    // What the element itself measured (motion + render + packing, on its streaming task).
    eprintln!(
        "element/whole_element: mean-generation-ms property {:.2} ms",
        element.property::<f64>("mean-generation-ms")
    );
}

/// The builtin engine drawing the astronaut at 512x512 from the speech-like signal, one
/// frame after another, as the element would drive it.
struct EngineFrames {
    engine: Engine,
    source: PreparedSource,
    rate: FrameRate,
    history: usize,
    frame_index: u64,
    /// The speech-like signal heard so far, and a buffer for windows of it.
    audio: SampleStore,
    window: Vec<f32>,
}

const SIZE: FrameSize = FrameSize {
    width: 512,
    height: 512,
};

impl EngineFrames {
    fn new() -> Self {
        let engine = Engine::new(&EngineSpec::builtin(tch::Device::Cpu)).unwrap();
        let source = engine
            .source_preparer()
            .prepare(
                Portrait::load(&astronaut()).unwrap(),
                &SourceHints::default(),
            )
            .unwrap();
        let history = engine.history_samples();
        Self {
            engine,
            source,
            rate: FrameRate::new(25, 1).unwrap(),
            history,
            frame_index: 0,
            audio: SampleStore::default(),
            window: Vec::new(),
        }
    }

    /// Motion and render of the next frame.
    fn next_frame(&mut self) -> tch::Tensor {
        let frame = FrameSpan::of(self.rate, self.frame_index);
        let heard = self.audio.received() as usize;
        let more: Vec<f32> = speechlike(frame.end as usize - heard, heard)
            .iter()
            .map(|&s| f32::from(s) / 32768.0)
            .collect();
        self.audio.extend(&more);
        let window = self.audio.window(frame, self.history, 0, &mut self.window);
        self.frame_index += 1;
        let motion = self.engine.motion(&window).unwrap();
        self.audio
            .discard_before(frame.end.saturating_sub(self.history as u64));
        self.engine.render(&motion, &self.source, SIZE).unwrap()
    }
}

fn engine_per_frame(c: &mut Criterion) {
    let mut frames = EngineFrames::new();
    let mut packed = vec![0u8; 512 * 512 * 4];
    let mut group = c.benchmark_group("element");
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("engine_only_per_frame_512x512_cpu", |b| {
        b.iter(|| frames.next_frame())
    });
    let frame = frames
        .engine
        .render(&Motion::neutral(), &frames.source, SIZE)
        .unwrap();
    group.bench_function("pack_only_512x512_rgba_cpu", |b| {
        b.iter(|| pack_frame(&frame, PixelLayout::Rgba, &mut packed, 512 * 4).unwrap())
    });
    group.finish();
}

/// The engine's work as above, but on a thread of its own, as the element's streaming
/// task runs it: tells a cost of the element apart from a cost of running off the main
/// thread (allocator arenas, libtorch's per-thread state).
fn engine_per_frame_on_worker(c: &mut Criterion) {
    let mut group = c.benchmark_group("element");
    group.measurement_time(Duration::from_secs(10));
    let (to_worker, from_main) = std::sync::mpsc::channel::<u64>();
    let (to_main, from_worker) = std::sync::mpsc::channel::<Duration>();
    let worker = std::thread::spawn(move || {
        let mut frames = EngineFrames::new();
        while let Ok(count) = from_main.recv() {
            let started = Instant::now();
            for _ in 0..count {
                let _ = std::hint::black_box(frames.next_frame());
            }
            to_main.send(started.elapsed()).unwrap();
        }
    });
    group.bench_function("engine_only_on_a_worker_thread_512x512_cpu", |b| {
        b.iter_custom(|frames| {
            to_worker.send(frames).unwrap();
            from_worker.recv().unwrap()
        })
    });
    group.finish();
    drop(to_worker);
    worker.join().unwrap();
}

criterion_group!(
    benches,
    element_per_frame,
    engine_per_frame,
    engine_per_frame_on_worker
);
criterion_main!(benches);
