//! The JoyVASA motion source (`motion=joyvasa`, or `auto` with a bundle that holds the
//! generator): speech to LivePortrait keypoint motion by JoyVASA's diffusion
//! transformer. This is the audio-driven neural path, VASA-1 style; LivePortrait's
//! networks draw it.
//!
//! Motion is generated in windows of the model's `n_motions` frames (4 s at 25 fps), each
//! conditioned on the last motions and audio features of the one before, as the
//! reference pipeline does (its audio timeline starts 1280 samples early, so model frame
//! `k` is shown at `k / fps`). A window needs its whole audio: when the stream is not
//! live the source asks the element for that much lookahead; when it is live, windows
//! shrink to the frames whose audio the `latency` lookahead has brought (the rest of
//! the window's audio is zeros, as at the end of a file in the reference), at the cost
//! of one sampling run per short window.
//!
//! Output frames at other rates interpolate between model frames. In silence the lips
//! are pulled to the portrait's own (closed) mouth, whatever the model does
//! ([`LipRest`]). With `blinks=procedural` the builtin motion's blinks are drawn over
//! the generated eyes.

use std::collections::VecDeque;
use std::sync::Arc;

use tch::{Device, Tensor};

use super::MotionSource;
use super::procedural::{Blinks, ControlEasing, LIP_REST_SPAN, LipRest};
use crate::bundle::Bundle;
use crate::core::error::read_back;
use crate::core::random::SplitMix64;
use crate::core::{
    AudioWindow, BlinkSource, Composition, CpuThreads, Error, Frozen, KeypointFrame,
    KeypointMotion, Motion, MotionControls, MotionKind, SampleStore, guarded,
};
use crate::models::joyvasa::{MotionGenerator, PoseSmoother, WindowContext};

/// Samples the reference puts before the audio (two motion frames at 25 fps).
const AUDIO_PRE_PAD: i64 = 1280;

/// Per-stream state: the audio heard so far, the motion generated so far.
struct Stream {
    /// Audio by sample number from the segment's first sample.
    audio: SampleStore,
    /// Generated motion from model frame `first_frame` on (smoothed, de-normalised).
    frames: VecDeque<KeypointFrame>,
    first_frame: i64,
    context: Option<WindowContext>,
    /// The diffusion's starting noise, drawn once per stream and used for every window
    /// (as the reference pipeline does).
    motion_at_t: Option<Tensor>,
    random: SplitMix64,
    smoother: PoseSmoother,
    /// The stream's first generated frame, which motion is relative to.
    reference: Option<KeypointFrame>,
    lip_rest: LipRest,
    /// Procedural blinks, when asked for: their own random stream, the blink timer,
    /// the stream's time in seconds.
    blinks: Option<(SplitMix64, Blinks, f64)>,
}

impl Stream {
    fn new(seed: u64, blinks: BlinkSource) -> Self {
        let blinks = (blinks == BlinkSource::Procedural).then(|| {
            // A stream of its own, so that the generated motion is the same with and
            // without procedural blinks.
            let mut random = SplitMix64(seed ^ 0x0B11_4B5E_0000_0002);
            let timer = Blinks::new(&mut random);
            (random, timer, 0.0)
        });
        Self {
            audio: SampleStore::default(),
            frames: VecDeque::new(),
            first_frame: 0,
            context: None,
            motion_at_t: None,
            // A stream of its own, unrelated to the builtin motion's use of the seed.
            random: SplitMix64(seed ^ 0x4A6F_7956_4153_4100),
            smoother: PoseSmoother::new(),
            reference: None,
            lip_rest: LipRest::default(),
            blinks,
        }
    }

    fn generated_until(&self) -> i64 {
        self.first_frame + self.frames.len() as i64
    }

    fn gaussians(&mut self, shape: [i64; 3], device: Device) -> Tensor {
        let count = shape.iter().product::<i64>() as usize;
        let values: Vec<f32> = (0..count).map(|_| self.random.gaussian() as f32).collect();
        Tensor::from_slice(&values).view(shape).to_device(device)
    }
}

pub struct JoyVasaMotion {
    generator: Arc<Frozen<MotionGenerator>>,
    device: Device,
    controls: MotionControls,
    easing: ControlEasing,
    blinks: BlinkSource,
    stream: Stream,
}

impl JoyVasaMotion {
    /// The motion generator of `bundle` on `device` (one copy per process).
    pub fn new(bundle: &Bundle, device: Device, blinks: BlinkSource) -> Result<Self, Error> {
        Ok(Self {
            generator: bundle.joyvasa(device)?,
            device,
            controls: MotionControls::default(),
            easing: ControlEasing::default(),
            blinks,
            stream: Stream::new(0, blinks),
        })
    }

    /// The loaded generator (shared with every source using the same bundle and device).
    pub fn generator(&self) -> &Arc<Frozen<MotionGenerator>> {
        &self.generator
    }

    fn frame_samples(&self) -> i64 {
        self.generator.config.frame_samples()
    }

    /// Generates the next window from the audio heard so far.
    fn generate_window(&mut self) -> Result<(), Error> {
        let generator = self.generator.clone();
        let config = &generator.config;
        let unit = self.frame_samples();
        let start = self.stream.generated_until();
        let window_begin = start * unit - AUDIO_PRE_PAD;
        // The frames whose audio is all here (at least one: at the end of a stream the
        // rest is silence).
        let complete = (self.stream.audio.received() as i64 - window_begin) / unit;
        let used = complete.clamp(1, config.n_motions);
        let samples: Vec<f32> = (0..config.window_samples())
            .map(|i| self.stream.audio.sample(window_begin + i))
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
        let cfg_scale = f64::from(if self.controls.cfg_scale > 0.0 {
            self.controls.cfg_scale
        } else {
            crate::core::motion::DEFAULT_CFG_SCALE
        });
        // The noise of every step but the last, drawn in order from the seeded stream.
        let draws = generator.schedule.timesteps(steps).len().saturating_sub(1);
        let mut noises: VecDeque<Tensor> = (0..draws)
            .map(|_| self.stream.gaussians(shape, self.device))
            .collect();
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
        let next = guarded("conditioning JoyVASA's next window", || {
            generator.next_context(context, &motion, &features, used)
        })?;
        self.stream.context = Some(next);
        let width = config.motion_feat_dim as usize;
        let rows = read_back(
            &motion.narrow(1, 0, used),
            "JoyVASA's motion",
            used as usize * width,
        )?;
        for row in rows.chunks(width) {
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
    /// rates other than the model's interpolate). At least one frame is generated.
    fn motion_at(&self, position: f64) -> KeypointFrame {
        let index = position.floor() as i64;
        let frac = (position - index as f64) as f32;
        let last = self.stream.frames.len() as i64 - 1;
        let get =
            |k: i64| self.stream.frames[(k - self.stream.first_frame).clamp(0, last) as usize];
        let a = get(index);
        if frac == 0.0 {
            return a;
        }
        a.lerp(&get(index + 1), frac)
    }

    /// Forgets audio and motion no later frame needs; `frame_end` is where the next
    /// output frame starts.
    fn forget_before(&mut self, model_frame: i64, frame_end: i64) {
        let unit = self.frame_samples();
        let stream = &mut self.stream;
        while stream.first_frame < model_frame && stream.frames.len() > 1 {
            stream.frames.pop_front();
            stream.first_frame += 1;
        }
        let keep_from =
            (stream.generated_until() * unit - AUDIO_PRE_PAD).min(frame_end - LIP_REST_SPAN as i64);
        stream.audio.discard_before(keep_from.max(0) as u64);
    }
}

impl MotionSource for JoyVasaMotion {
    fn name(&self) -> &'static str {
        "joyvasa"
    }

    fn kind(&self) -> MotionKind {
        MotionKind::Keypoints
    }

    fn device(&self) -> Device {
        self.device
    }

    fn cpu_threads(&self) -> CpuThreads {
        CpuThreads::All
    }

    fn history_samples(&self) -> usize {
        // The source keeps the audio it needs.
        0
    }

    fn reset(&mut self, seed: u64) {
        self.stream = Stream::new(seed, self.blinks);
        self.easing = ControlEasing::default();
    }

    fn set_controls(&mut self, controls: &MotionControls) {
        self.controls = *controls;
    }

    fn interrupt(&mut self, at: u64) {
        // The lips' silence rule reads this source's own copy of the audio: forget what
        // it heard beyond the cut and silence the rest. Motion already generated from
        // that audio stays (the head does not jump); the lips go to rest on silence.
        self.stream.audio.cut_at(at);
        self.stream.audio.silence_all();
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

    fn next(&mut self, audio: &AudioWindow<'_>) -> Result<Motion, Error> {
        self.stream.audio.hear(audio);
        let unit = self.frame_samples();
        let frame_start = audio.frame_position as i64;
        let position = frame_start as f64 / unit as f64;
        let needed = position.floor() as i64 + i64::from(position.fract() > 0.0);
        while self.stream.generated_until() <= needed {
            self.generate_window()?;
        }
        let current = self.motion_at(position);

        let frame_end = frame_start + audio.frame_len as i64;
        let recent: Vec<f32> = (frame_end - LIP_REST_SPAN as i64..frame_end)
            .map(|at| self.stream.audio.sample(at))
            .collect();
        let was_resting = self.stream.lip_rest.resting();
        let mouth_rest = self.stream.lip_rest.step(&recent, audio.frame_len);
        let blink = self.stream.blinks.as_mut().map(|(random, timer, time)| {
            *time += audio.frame_seconds();
            let starting_to_pause = !was_resting && mouth_rest > 0.5;
            timer.step(*time, starting_to_pause, random) as f32
        });

        let reference = self.stream.reference.unwrap_or(current);
        let motion = Motion::Keypoints(KeypointMotion {
            current,
            reference,
            expression_scale: self.controls.expression_scale,
            head_motion: self.controls.head_motion,
            mouth_rest,
            blink,
            composition: Composition::RelativeToFirst,
            controls: self.easing.step(&self.controls, audio.frame_seconds()),
        });
        self.forget_before(position.floor() as i64, frame_end);
        Ok(motion)
    }
}
