//! The JoyVASA engine (`model=<bundle dir>` of a bundle with a motion generator): speech
//! to LivePortrait motion by JoyVASA's diffusion transformer, drawn by LivePortrait's
//! networks. This is the audio-driven neural path, VASA-1 style.
//!
//! Motion is generated in windows of the model's `n_motions` frames (4 s at 25 fps), each
//! conditioned on the last motions and audio features of the one before, as the
//! reference pipeline does (its audio timeline starts 1280 samples early, so model frame
//! `k` is shown at `k / fps`). A window needs its whole audio: when the stream is not
//! live the engine asks the element for that much lookahead; when it is live, windows
//! shrink to the frames whose audio the `latency` lookahead has brought (the rest of
//! the window's audio is zeros, as at the end of a file in the reference), at the cost
//! of one sampling run per short window.
//!
//! Output frames at other rates interpolate between model frames. In silence the lips
//! are pulled to the portrait's own (closed) mouth, whatever the model does.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use tch::{Device, Kind, Tensor};

use super::builtin::features::level_db;
use super::builtin::random::SplitMix64;
use super::liveportrait::{LivePortraitEngine, ModelCache};
use super::{
    AudioWindow, Engine, EngineError, FrameSize, KeypointMotion, Motion, MotionControls,
    PreparedSource, SourcePreparer, guarded,
};
use crate::joyvasa::{FrameMotion, MotionGenerator, PoseSmoother, WindowContext};
use crate::liveportrait::{BundleError, Frozen, Precision};

/// Samples the reference puts before the audio (two motion frames at 25 fps).
const AUDIO_PRE_PAD: i64 = 1280;
/// Below this level (dBFS over the last `SILENCE_SPAN` samples) a frame is silent.
const SILENCE_DB: f32 = -45.0;
/// How much audio must be silent before the lips go to rest (60 ms).
const SILENCE_SPAN: usize = 960;
/// Share of the way to rest (or back) the lips go per 40 ms.
const MOUTH_REST_RATE: f32 = 0.6;

static GENERATORS: ModelCache<MotionGenerator> = ModelCache::new();

/// The motion generator of the bundle at `dir` on `device`, loaded once per process.
/// It computes in float32 whatever the renderer's precision: it is a small share of a
/// frame's work.
pub fn shared_generator(
    dir: &Path,
    device: Device,
) -> Result<Arc<Frozen<MotionGenerator>>, BundleError> {
    GENERATORS.get_or_load(dir, device, Precision::Float32, || {
        MotionGenerator::load_bundle(dir, device)
    })
}

/// How many times the motion generator of `dir` was read from disk for `device`.
pub fn generator_times_loaded(dir: &Path, device: Device) -> usize {
    GENERATORS.times_loaded(dir, device, Precision::Float32)
}

/// Per-stream state: the audio heard so far, the motion generated so far.
struct Stream {
    /// Audio from absolute sample `audio_origin` (0 = the segment's first sample).
    audio: Vec<f32>,
    audio_origin: i64,
    /// Absolute sample where the next output frame starts.
    frame_start: i64,
    /// Generated motion from model frame `first_frame` on (smoothed, de-normalised).
    frames: VecDeque<FrameMotion>,
    first_frame: i64,
    context: Option<WindowContext>,
    /// The diffusion's starting noise, drawn once per stream and used for every window
    /// (as the reference pipeline does).
    motion_at_t: Option<Tensor>,
    random: SplitMix64,
    smoother: PoseSmoother,
    /// The stream's first generated frame, which motion is relative to.
    reference: Option<FrameMotion>,
    mouth_rest: f32,
}

impl Stream {
    fn new(seed: u64) -> Self {
        Self {
            audio: Vec::new(),
            audio_origin: 0,
            frame_start: 0,
            frames: VecDeque::new(),
            first_frame: 0,
            context: None,
            motion_at_t: None,
            // A stream of its own, unrelated to the builtin motion's use of the seed.
            random: SplitMix64(seed ^ 0x4A6F_7956_4153_4100),
            smoother: PoseSmoother::new(),
            reference: None,
            mouth_rest: 1.0,
        }
    }

    fn audio_end(&self) -> i64 {
        self.audio_origin + self.audio.len() as i64
    }

    fn generated_until(&self) -> i64 {
        self.first_frame + self.frames.len() as i64
    }

    /// Takes the samples of `window` not seen yet (its frame starts at `frame_start`).
    fn hear(&mut self, window: &AudioWindow<'_>) {
        let window_start = self.frame_start - window.frame_start as i64;
        let end = window_start + window.samples.len() as i64;
        if self.audio.is_empty() && self.audio_origin < window_start {
            self.audio_origin = window_start.min(self.frame_start);
        }
        while self.audio_end() < end {
            let at = self.audio_end();
            let value = if at >= window_start {
                window.samples[(at - window_start) as usize]
            } else {
                0.0
            };
            self.audio.push(value);
        }
    }

    /// The sample at absolute position `at`, zero outside what was heard.
    fn sample(&self, at: i64) -> f32 {
        if at < self.audio_origin || at >= self.audio_end() {
            0.0
        } else {
            self.audio[(at - self.audio_origin) as usize]
        }
    }

    fn gaussians(&mut self, shape: [i64; 3], device: Device) -> Tensor {
        let count = shape.iter().product::<i64>() as usize;
        let values: Vec<f32> = (0..count).map(|_| self.random.gaussian() as f32).collect();
        Tensor::from_slice(&values).view(shape).to_device(device)
    }
}

pub struct JoyVasaEngine {
    renderer: LivePortraitEngine,
    generator: Arc<Frozen<MotionGenerator>>,
    device: Device,
    controls: MotionControls,
    stream: Stream,
}

impl JoyVasaEngine {
    /// The engine of a bundle with a motion generator; LivePortrait draws in
    /// `precision`.
    pub fn new(bundle: &Path, device: Device, precision: Precision) -> Result<Self, EngineError> {
        Ok(Self {
            renderer: LivePortraitEngine::new(bundle, device, precision)?,
            generator: shared_generator(bundle, device)?,
            device,
            controls: MotionControls::default(),
            stream: Stream::new(0),
        })
    }

    fn frame_samples(&self) -> i64 {
        self.generator.config.frame_samples()
    }

    /// Generates the next window from the audio heard so far.
    fn generate_window(&mut self) -> Result<(), EngineError> {
        let generator = self.generator.clone();
        let config = &generator.config;
        let unit = self.frame_samples();
        let start = self.stream.generated_until();
        let window_begin = start * unit - AUDIO_PRE_PAD;
        // The frames whose audio is all here (at least one: at the end of a stream the
        // rest is silence).
        let complete = (self.stream.audio_end() - window_begin) / unit;
        let used = complete.clamp(1, config.n_motions);
        let samples: Vec<f32> = (0..config.window_samples())
            .map(|i| self.stream.sample(window_begin + i))
            .collect();
        let shape = [1, config.n_motions, config.motion_feat_dim];
        let motion_at_t = match &self.stream.motion_at_t {
            Some(noise) => noise.shallow_clone(),
            None => {
                let noise = self.stream.gaussians(shape, self.device);
                self.stream.motion_at_t = Some(noise.shallow_clone());
                noise
            }
        };
        let steps = match self.controls.sampling_steps {
            0 => generator.schedule.steps(),
            n => n as usize,
        };
        let cfg_scale = f64::from(self.controls.cfg_scale);
        // The noise of every step but the last, drawn in order from the seeded stream.
        let draws = generator.schedule.timesteps(steps).len().saturating_sub(1);
        let mut noises: VecDeque<Tensor> = (0..draws)
            .map(|_| self.stream.gaussians(shape, self.device))
            .collect();
        self.renderer.all_cpu_threads();
        let device = self.device;
        let context = self
            .stream
            .context
            .as_ref()
            .unwrap_or(generator.start_context());
        let (motion, features) = guarded("generating motion with JoyVASA", || {
            let _no_grad = tch::no_grad_guard();
            let audio = Tensor::from_slice(&samples).to_device(device).view([1, -1]);
            let features = generator.audio_features(&audio).features;
            let mut noise =
                |_t: usize| noises.pop_front().expect("one noise per step but the last");
            let motion = generator.sample_window(
                &features,
                context,
                &motion_at_t,
                steps,
                cfg_scale,
                &mut noise,
            );
            (motion, features)
        })?;
        let next = generator.next_context(context, &motion, &features, used);
        self.stream.context = Some(next);
        let rows: Vec<f32> = Vec::try_from(
            motion
                .narrow(1, 0, used)
                .to_device(Device::Cpu)
                .to_kind(Kind::Float)
                .flatten(0, -1),
        )
        .unwrap_or_default();
        for row in rows.chunks(config.motion_feat_dim as usize) {
            let frame = self
                .stream
                .smoother
                .smooth(&generator.template.denormalise(row));
            self.stream.reference.get_or_insert(frame);
            self.stream.frames.push_back(frame);
        }
        Ok(())
    }

    /// The generated motion at model frame position `position` (fractional: output
    /// rates other than the model's interpolate).
    fn motion_at(&self, position: f64) -> FrameMotion {
        let index = position.floor() as i64;
        let frac = (position - index as f64) as f32;
        let get = |k: i64| {
            let k = (k - self.stream.first_frame).clamp(0, self.stream.frames.len() as i64 - 1);
            self.stream.frames[k as usize]
        };
        let (a, b) = (get(index), get(index + 1));
        if frac == 0.0 {
            return a;
        }
        let mix = |x: f32, y: f32| x + (y - x) * frac;
        FrameMotion {
            exp: std::array::from_fn(|i| mix(a.exp[i], b.exp[i])),
            scale: mix(a.scale, b.scale),
            t: std::array::from_fn(|i| mix(a.t[i], b.t[i])),
            pitch: mix(a.pitch, b.pitch),
            yaw: mix(a.yaw, b.yaw),
            roll: mix(a.roll, b.roll),
        }
    }

    /// Forgets audio and motion no later frame needs.
    fn forget_before(&mut self, model_frame: i64) {
        let stream = &mut self.stream;
        while stream.first_frame < model_frame && stream.frames.len() > 1 {
            stream.frames.pop_front();
            stream.first_frame += 1;
        }
        let unit = self.generator.config.frame_samples();
        let keep_from = (stream.generated_until() * unit - AUDIO_PRE_PAD)
            .min(stream.frame_start - SILENCE_SPAN as i64);
        let drop = (keep_from - stream.audio_origin).clamp(0, stream.audio.len() as i64);
        if drop > 0 {
            stream.audio.drain(..drop as usize);
            stream.audio_origin += drop;
        }
    }
}

impl Engine for JoyVasaEngine {
    fn device(&self) -> Device {
        self.device
    }

    fn history_samples(&self) -> usize {
        // The engine keeps the audio it needs.
        0
    }

    fn reset(&mut self, seed: u64) {
        self.stream = Stream::new(seed);
        self.renderer.reset(seed);
    }

    fn source_preparer(&self) -> Arc<dyn SourcePreparer> {
        self.renderer.source_preparer()
    }

    fn set_controls(&mut self, controls: MotionControls) {
        self.controls = controls;
        self.renderer.set_controls(controls);
    }

    fn lookahead_samples(&self, allowed: u64, live: bool) -> u64 {
        if live {
            return allowed;
        }
        // A whole window after the frame's end.
        let config = &self.generator.config;
        let whole = config.window_samples() - AUDIO_PRE_PAD - config.frame_samples();
        allowed.max(whole.max(0) as u64)
    }

    fn motion(&mut self, audio: &AudioWindow<'_>) -> Result<Motion, EngineError> {
        self.stream.hear(audio);
        let unit = self.frame_samples();
        let position = self.stream.frame_start as f64 / unit as f64;
        let needed = position.floor() as i64 + i64::from(position.fract() > 0.0);
        while self.stream.generated_until() <= needed {
            self.generate_window()?;
        }
        let current = self.motion_at(position);

        // Silence: the lips go to rest once the last 60 ms are quiet.
        let end = self.stream.frame_start + audio.frame_len as i64;
        let recent: Vec<f32> = (end - SILENCE_SPAN as i64..end)
            .map(|at| self.stream.sample(at))
            .collect();
        let target = if level_db(&recent) < SILENCE_DB {
            1.0
        } else {
            0.0
        };
        let step = (MOUTH_REST_RATE * audio.frame_len as f32 / unit as f32).min(1.0);
        self.stream.mouth_rest += (target - self.stream.mouth_rest) * step;

        let reference = self.stream.reference.unwrap_or(current);
        let motion = Motion {
            keypoints: Some(KeypointMotion {
                current,
                reference,
                expression_scale: self.controls.expression_scale,
                head_motion: self.controls.head_motion,
                mouth_rest: self.stream.mouth_rest,
            }),
            ..Motion::neutral()
        };
        self.stream.frame_start = end;
        self.forget_before(position.floor() as i64);
        Ok(motion)
    }

    fn render(
        &mut self,
        motion: &Motion,
        source: &PreparedSource,
        size: FrameSize,
    ) -> Result<Tensor, EngineError> {
        self.renderer.render(motion, source, size)
    }
}
