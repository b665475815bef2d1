//! The Ditto motion source (`motion=ditto`): speech to LivePortrait keypoint motion by
//! Ditto's motion-space diffusion transformer, conditioned on the emotion, the
//! portrait's eyes and its canonical keypoints; LivePortrait's networks draw it.
//!
//! Audio becomes HuBERT-large features chunk by chunk as it arrives (five 25 fps frames
//! per 6480-sample chunk); features become motion window by window
//! ([`MotionStream`]):
//! - not live, as Ditto's offline pipeline: windows of 80 frames overlapping by the
//!   bundle's `overlap` (10), the last one padded with its last features, every frame
//!   smoothed once more at the end; the source asks the element for a whole window of
//!   lookahead so that each window has all its audio, and `ceil(seconds x 25)` frames of
//!   motion come out whatever the output rate (which interpolates between them);
//! - live, as Ditto's online pipeline: `online_overlap` frames of silence first, windows
//!   overlapping by `online_overlap` (70: ten new frames per window), the first window
//!   held back; a frame needs the features of up to `2 x (80 - overlap)` frames after it.
//!   A frame due before its window's audio is in is made with silence for the missing
//!   features, as the element draws a late frame.
//!
//! Each frame's motion row is then mixed with the portrait's own, relative to the
//! stream's first row, as Ditto does for a still image (`models::ditto::drive`), and
//! given to the renderer as the driving pose and expression ([`Composition::Driving`]).
//! The diffusion's per-step noise is drawn once per stream from the seed and reused by
//! every window, each window's starting noise drawn in turn, as the reference does.

use std::collections::VecDeque;
use std::sync::Arc;

use tch::{Device, Kind, Tensor};

use super::MotionSource;
use super::procedural::{Blinks, ControlEasing, LIP_REST_SPAN, LipRest};
use crate::bundle::Bundle;
use crate::core::error::read_back;
use crate::core::random::SplitMix64;
use crate::core::{
    AudioWindow, BlinkSource, Composition, CpuThreads, Emotion, Error, EyeConditions, Frozen,
    KeypointFrame, KeypointMotion, Motion, MotionControls, MotionKind, PortraitCues, SampleStore,
    SourceKeypoints, guarded,
};
use crate::models::ditto::drive::{self, DriveControls, MotionLayout};
use crate::models::ditto::sampler::{self, DdimPlan, GUIDANCE, Schedule};
use crate::models::ditto::stream::{MotionStream, StreamMode};
use crate::models::ditto::{DittoNetworks, audio, emotion_condition, frame_conditions};

/// Ditto's motion rate and its audio samples per motion frame (16 kHz).
const FPS: i64 = 25;
const FRAME_SAMPLES: i64 = 640;

/// What the source needs of the portrait.
#[derive(Clone)]
struct Portrait {
    keypoints: SourceKeypoints,
    eyes: EyeConditions,
}

struct Stream {
    mode: StreamMode,
    /// Audio by sample number from the segment's first.
    audio: SampleStore,
    /// Zeros before the audio for the feature chunks (offline and online differ).
    front: i64,
    chunks_encoded: i64,
    motion: MotionStream,
    /// The plan and the per-step noise of the stream, for its number of steps.
    sampling: Option<(usize, DdimPlan, Vec<Tensor>)>,
    random: SplitMix64,
    /// The row motion is relative to (`d0`), once the first window is in.
    first_row: Option<Vec<f32>>,
    /// Final rows read back, from frame `rows_first` on.
    rows: VecDeque<Vec<f32>>,
    rows_first: i64,
    lip_rest: LipRest,
    blinks: Option<(SplitMix64, Blinks, f64)>,
}

pub struct DittoMotion {
    networks: Arc<Frozen<DittoNetworks>>,
    schedule: Schedule,
    layout: MotionLayout,
    /// HuBERT's features of a silent chunk (the online prefix, and missing audio).
    silence: Tensor,
    device: Device,
    controls: MotionControls,
    easing: ControlEasing,
    blinks: BlinkSource,
    seed: u64,
    portrait: Option<Portrait>,
    stream: Option<Stream>,
}

impl DittoMotion {
    /// Ditto's networks of `bundle` on `device` (one copy per process).
    pub fn new(bundle: &Bundle, device: Device, blinks: BlinkSource) -> Result<Self, Error> {
        let networks = bundle.ditto(device)?;
        let width = networks.decoder.motion_dim as usize;
        let layout = MotionLayout::of_width(width).ok_or_else(|| {
            Error::compute(
                "loading Ditto",
                format!(
                    "the denoiser makes {width} values per frame, which is no LivePortrait \
                     motion layout (scale, three poses in equal bins, translation, 63 \
                     expression values)"
                ),
            )
        })?;
        let silence = guarded("HuBERT's features of silence", || {
            let zeros = Tensor::zeros([1, audio::chunk_samples() as i64], (Kind::Float, device));
            audio::encode_chunk(&networks.hubert, &zeros)
        })?;
        Ok(Self {
            networks,
            schedule: Schedule::cosine(),
            layout,
            silence,
            device,
            controls: MotionControls::default(),
            easing: ControlEasing::default(),
            blinks,
            seed: 0,
            portrait: None,
            stream: None,
        })
    }

    /// The loaded networks (shared with every source using the same bundle and device).
    pub fn networks(&self) -> &Arc<Frozen<DittoNetworks>> {
        &self.networks
    }

    fn overlap(&self, mode: StreamMode) -> i64 {
        let config = &self.networks.config;
        match (self.controls.window_overlap, mode) {
            (0, StreamMode::Offline) => config.overlap,
            (0, StreamMode::Online) => config.online_overlap,
            (frames, _) => i64::from(frames),
        }
    }

    fn steps(&self, mode: StreamMode) -> usize {
        let config = &self.networks.config;
        match (self.controls.sampling_steps, mode) {
            (0, StreamMode::Offline) => config.sampling_steps,
            (0, StreamMode::Online) => config.online_sampling_steps,
            (steps, _) => steps as usize,
        }
    }

    fn new_stream(&self, live: bool, portrait: &Portrait) -> Result<Stream, Error> {
        let mode = if live {
            StreamMode::Online
        } else {
            StreamMode::Offline
        };
        let frames = self.networks.decoder.seq_len;
        let overlap = self.overlap(mode);
        if overlap >= frames {
            return Err(Error::Settings(format!(
                "window-overlap={overlap}, but Ditto's windows are {frames} frames long: use \
                 fewer (or 0 for the bundle's)"
            )));
        }
        let source_row = self.layout.row_of(&portrait.keypoints);
        let source_row = Tensor::from_slice(&source_row).to_device(self.device);
        let blinks = (self.blinks == BlinkSource::Procedural).then(|| {
            let mut random = SplitMix64(self.seed ^ 0x0B11_4B5E_0000_0003);
            let timer = Blinks::new(&mut random);
            (random, timer, 0.0)
        });
        Ok(Stream {
            mode,
            audio: SampleStore::default(),
            front: match mode {
                StreamMode::Offline => audio::OFFLINE_FRONT,
                StreamMode::Online => audio::ONLINE_FRONT,
            },
            chunks_encoded: 0,
            motion: MotionStream::new(mode, frames, overlap, &source_row, &self.silence),
            sampling: None,
            random: SplitMix64(self.seed ^ 0x4469_7474_6F00_0001),
            first_row: None,
            rows: VecDeque::new(),
            rows_first: 0,
            lip_rest: LipRest::default(),
            blinks,
        })
    }

    /// Encodes every chunk whose audio is in (all of them once the stream has ended).
    fn encode_chunks(&mut self, ended: bool) -> Result<(), Error> {
        let networks = self.networks.clone();
        let device = self.device;
        let stream = self.stream.as_mut().expect("a stream");
        let received = stream.audio.received() as i64;
        let chunk_len = audio::chunk_samples() as i64;
        let total_frames = (received * FPS + 15_999) / 16_000;
        loop {
            let index = stream.chunks_encoded;
            let start = audio::chunk_start(index, stream.front);
            let complete = start + chunk_len <= received;
            let wanted = ended && index * audio::FRAMES_PER_CHUNK < total_frames;
            if !(complete || wanted) {
                break;
            }
            let last_frame = (index + 1) * audio::FRAMES_PER_CHUNK - 1;
            let features = if last_frame < stream.motion.first_frame_still_read() {
                // Live, after a stall or a hole: these frames' windows were made with
                // silence already; no window reads them, so HuBERT is not run for them
                // (it would delay the frames to come).
                self.silence.shallow_clone()
            } else {
                let samples: Vec<f32> = (start..start + chunk_len)
                    .map(|at| stream.audio.sample(at))
                    .collect();
                guarded("Ditto's audio features", || {
                    let chunk = Tensor::from_slice(&samples).to_device(device).view([1, -1]);
                    audio::encode_chunk(&networks.hubert, &chunk)
                })?
            };
            stream.motion.push_features(&features);
            stream.chunks_encoded += 1;
        }
        if ended && !stream.motion.ended() {
            stream.motion.end(total_frames);
        }
        Ok(())
    }

    /// Samples the stream's next window.
    fn generate_window(&mut self) -> Result<(), Error> {
        let networks = self.networks.clone();
        let portrait = self.portrait.clone().expect("a portrait");
        let device = self.device;
        let mode = self.stream.as_ref().expect("a stream").mode;
        let steps = self.steps(mode);
        let guidance = if self.controls.cfg_scale > 0.0 {
            f64::from(self.controls.cfg_scale)
        } else {
            GUIDANCE
        };
        let (gaze_x, gaze_y) = self.controls.gaze.degrees();
        // At less than full strength the condition is the chosen class's mixed with
        // neutral's.
        let strength = f64::from(self.controls.emotion_strength.clamp(0.0, 1.0));
        let emotion = (emotion_condition(self.controls.emotion.index()) * strength
            + emotion_condition(Emotion::Neutral.index()) * (1.0 - strength))
            .to_device(device);
        let stream = self.stream.as_mut().expect("a stream");
        let decoder = &networks.decoder;
        let shape = [1, decoder.seq_len, decoder.motion_dim];
        if stream.sampling.as_ref().is_none_or(|(s, _, _)| *s != steps) {
            let plan = DdimPlan::new(&self.schedule, steps);
            let noise = (0..plan.noise_count())
                .map(|_| gaussians(&mut stream.random, shape, device))
                .collect();
            stream.sampling = Some((steps, plan, noise));
        }
        let x_t = gaussians(&mut stream.random, shape, device);
        let (_, plan, noise) = stream.sampling.as_ref().expect("set above");
        let eyes = gazed(&portrait.eyes, (gaze_x, gaze_y));
        let schedule = &self.schedule;
        let silence_row = self.silence.get(0);
        let motion = &stream.motion;
        let predicted = guarded("generating motion with Ditto", || {
            let _no_grad = tch::no_grad_guard();
            let features = motion.window_features(&silence_row);
            let cond = frame_conditions(
                &features,
                &emotion,
                &Tensor::from_slice(&eyes.open).to_device(device),
                &Tensor::from_slice(&eyes.ball).to_device(device),
                &Tensor::from_slice(&portrait.keypoints.kp).to_device(device),
            )
            .unsqueeze(0);
            sampler::sample_window(
                decoder,
                schedule,
                plan,
                motion.previous(),
                &cond,
                x_t,
                noise,
                guidance,
            )
        })?;
        stream.motion.add_window(&predicted);
        if stream.first_row.is_none()
            && let Some(first) = stream.motion.first_row()
        {
            let mut row = read_back(&first, "Ditto's first motion", self.layout.width())?;
            drive::clip(&mut row, networks.config.clip.as_ref());
            stream.first_row = Some(row);
        }
        Ok(())
    }

    /// The final row of model frame `frame` (clipped to the cfg's range), read back once.
    fn row(&mut self, frame: i64) -> Result<Vec<f32>, Error> {
        let width = self.layout.width();
        let clip = self.networks.config.clip.clone();
        let stream = self.stream.as_mut().expect("a stream");
        let index = frame - stream.rows_first;
        if index >= 0
            && let Some(row) = stream.rows.get(index as usize)
        {
            return Ok(row.clone());
        }
        let mut row = read_back(&stream.motion.frame(frame), "Ditto's motion", width)?;
        if row.iter().any(|v| !v.is_finite()) {
            return Err(Error::compute(
                "generating motion with Ditto",
                format!(
                    "the denoiser gave values that are not numbers for frame {frame}: the \
                     bundle's Ditto weights are damaged (convert them again)"
                ),
            ));
        }
        drive::clip(&mut row, clip.as_ref());
        if stream.rows.is_empty() || index != stream.rows.len() as i64 {
            stream.rows.clear();
            stream.rows_first = frame;
        }
        stream.rows.push_back(row.clone());
        Ok(row)
    }
}

/// Gaussians of `shape` from the stream's generator (the same on every device).
fn gaussians(random: &mut SplitMix64, shape: [i64; 3], device: Device) -> Tensor {
    let count = shape.iter().product::<i64>() as usize;
    let values: Vec<f32> = (0..count).map(|_| random.gaussian() as f32).collect();
    Tensor::from_slice(&values).view(shape).to_device(device)
}

/// An eyeball's offset per radian of gaze, in eye widths: an eyeball's radius (about
/// 12 mm) over an eye's width (about 30 mm).
const EYEBALL_RADIUS_IN_WIDTHS: f32 = 0.4;

/// The eye conditions with the eyeballs turned by `gaze` degrees (x to image right, y
/// up): the offsets Ditto measures move by the eyeball's radius times the sine.
fn gazed(eyes: &EyeConditions, (x, y): (f32, f32)) -> EyeConditions {
    let mut ball = eyes.ball;
    let dx = x.to_radians().sin() * EYEBALL_RADIUS_IN_WIDTHS;
    let dy = -y.to_radians().sin() * EYEBALL_RADIUS_IN_WIDTHS;
    ball[0] += dx;
    ball[1] += dx;
    ball[2] += dy;
    ball[3] += dy;
    EyeConditions {
        open: eyes.open,
        ball,
    }
}

impl MotionSource for DittoMotion {
    fn name(&self) -> &'static str {
        "ditto"
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

    fn lookahead_samples(&self, allowed: u64, live: bool) -> u64 {
        let frames = self.networks.decoder.seq_len;
        let chunk = audio::FRAMES_PER_CHUNK;
        // A frame's window needs the features of this many frames after it (live: the
        // frames of the window that makes it final and of the one before; not live, for
        // the last smoothing pass, a whole window after it); features come in chunks of
        // 5 frames, which need 2 frames and 80 samples of audio after them. A window
        // whose end is not a chunk's end waits for the rest of that chunk too.
        let frames_after = if live {
            let overlap = self.overlap(StreamMode::Online);
            let step = frames - overlap;
            let aligned = step % chunk == 0 && overlap % chunk == 0;
            2 * step + if aligned { 0 } else { chunk - 1 }
        } else {
            frames + chunk - 1
        };
        let chunk_lookahead = audio::chunk_samples() as i64
            - audio::OFFLINE_FRONT.min(audio::ONLINE_FRONT)
            - audio::FRAMES_PER_CHUNK * FRAME_SAMPLES;
        allowed.max((frames_after * FRAME_SAMPLES + chunk_lookahead).max(0) as u64)
    }

    fn reset(&mut self, seed: u64) {
        self.seed = seed;
        self.stream = None;
        self.easing = ControlEasing::default();
    }

    fn interrupt(&mut self, at: u64) {
        // As JoyVASA: forget the audio beyond the cut and silence what is kept, so the
        // lips go to rest; motion already generated stays.
        if let Some(stream) = &mut self.stream {
            stream.audio.cut_at(at);
            stream.audio.silence_all();
        }
    }

    fn set_controls(&mut self, controls: &MotionControls) {
        self.controls = *controls;
    }

    fn use_portrait(&mut self, cues: &PortraitCues) {
        // A new portrait conditions the windows still to come; the stream goes on.
        self.portrait = match (&cues.keypoints, cues.eyes) {
            (Some(keypoints), Some(eyes)) => Some(Portrait {
                keypoints: keypoints.clone(),
                eyes,
            }),
            _ => None,
        };
    }

    fn next(&mut self, window: &AudioWindow<'_>) -> Result<Motion, Error> {
        let Some(portrait) = self.portrait.clone() else {
            return Err(Error::Settings(
                "motion=ditto needs the portrait's LivePortrait keypoints and face mesh: it \
                 works with a bundle's LivePortrait renderer (model=<bundle directory>)"
                    .into(),
            ));
        };
        if self.stream.is_none() {
            self.stream = Some(self.new_stream(window.live, &portrait)?);
        }
        self.stream.as_mut().expect("set").audio.hear(window);
        self.encode_chunks(window.ended)?;

        let position = window.frame_position as f64 / FRAME_SAMPLES as f64;
        let floor = position.floor() as i64;
        let frac = (position - floor as f64) as f32;
        let needed = floor + i64::from(frac > 0.0);
        loop {
            let motion = &self.stream.as_ref().expect("set").motion;
            // Once the stream has ended and its last window is in, every frame is final.
            if !motion.wants_window() || motion.frames_final() > needed {
                break;
            }
            self.generate_window()?;
        }
        let finals = self.stream.as_ref().expect("set").motion.frames_final();
        let current = match finals {
            // No audio at all.
            0 => None,
            _ => Some((
                self.row(floor.min(finals - 1))?,
                self.row(needed.min(finals - 1))?,
            )),
        };

        let stream = self.stream.as_mut().expect("set");
        let frame_end = window.frame_position as i64 + window.frame_len as i64;
        let recent: Vec<f32> = (frame_end - LIP_REST_SPAN as i64..frame_end)
            .map(|at| stream.audio.sample(at))
            .collect();
        let was_resting = stream.lip_rest.resting();
        let mouth_rest = stream.lip_rest.step(&recent, window.frame_len);
        let blink = stream.blinks.as_mut().map(|(random, timer, time)| {
            *time += window.frame_seconds();
            let starting_to_pause = !was_resting && mouth_rest > 0.5;
            timer.step(*time, starting_to_pause, random) as f32
        });
        let eased = self.easing.step(&self.controls, window.frame_seconds());
        let controls = DriveControls {
            head: self.controls.head_motion,
            expression: self.controls.expression_scale,
            gaze: eased.gaze,
            mouth_rest,
        };
        let source_row = self.layout.row_of(&portrait.keypoints);
        let frame = |row: &[f32], first: &[f32]| {
            drive::driving_frame(self.layout, &source_row, row, first, &controls)
        };
        let current: KeypointFrame = match (&current, &stream.first_row) {
            (Some((a, b)), Some(first)) => {
                let (a, b) = (frame(a, first), frame(b, first));
                if frac == 0.0 { a } else { a.lerp(&b, frac) }
            }
            // Nothing generated (no audio): the portrait as it is.
            _ => frame(&source_row, &source_row),
        };
        stream.motion.forget_before(floor);
        while stream.rows_first < floor && stream.rows.len() > 1 {
            stream.rows.pop_front();
            stream.rows_first += 1;
        }
        let keep_audio_from = audio::chunk_start(stream.chunks_encoded, stream.front)
            .min(frame_end - LIP_REST_SPAN as i64);
        stream.audio.discard_before(keep_audio_from.max(0) as u64);
        Ok(Motion::Keypoints(KeypointMotion {
            current,
            reference: current,
            expression_scale: self.controls.expression_scale,
            head_motion: self.controls.head_motion,
            mouth_rest,
            blink,
            composition: Composition::Driving,
            // Emotion and gaze are Ditto's own conditions; the renderer adds the distance.
            controls: eased.distance_only(),
        }))
    }
}
