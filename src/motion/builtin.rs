//! The builtin motion source: needs no downloaded weights. The mouth model (trained
//! here, shipped in models/builtin/) hears 300 ms around each frame; what it says is
//! cleaned up (closed in silence and in music, no quiver), and blinks, head motion
//! coupled to the speech and eyebrow raises on emphasis are added. Random parts come
//! from a generator seeded per stream, so the same audio, portrait and seed give the
//! same motion.

use tch::Device;

use super::MotionSource;
use super::procedural::{Blinks, ControlEasing, HeadMotion};
use super::prosody::{self, Intonation, PITCH_SPAN};
use crate::core::random::SplitMix64 as Random;
use crate::core::{
    AudioWindow, CpuThreads, Error, FaceMotion, Motion, MotionControls, MotionKind, guarded,
    level_db,
};
use crate::models::mouth::features::{self, HOP, WINDOW};
use crate::models::mouth::{CONTEXT_BEHIND, MouthModel, MouthOutput};

/// The trained mouth model, shipped in the repository (see models/builtin/manifest.json)
/// and embedded in the library.
static MOUTH_WEIGHTS: &[u8] = include_bytes!("../../models/builtin/mouth.safetensors");
pub const MOUTH_WEIGHTS_NAME: &str = "models/builtin/mouth.safetensors";

/// Below this level (dBFS over the frame) the mouth is closed whatever the model says:
/// digital silence does not move lips.
const SILENCE_DB: f32 = -55.0;
/// The mouth follows the model only for audio this far above the noise floor (dB): it
/// starts to open at the first, fully at the second. Room hiss, fans and a noisy
/// microphone do not move lips, whatever their level.
const ABOVE_FLOOR_DB: (f32, f32) = (6.0, 12.0);
/// The noise floor is the quietest frame not heard as voice within this many seconds:
/// it knows the background from the first such frame, falls at once and rises only
/// once the background has been louder for this long.
const FLOOR_WINDOW_S: f64 = 2.0;
/// Floor assumed before any background has been heard (a quiet room), dBFS.
const DEFAULT_FLOOR_DB: f32 = -65.0;
/// The voice probability at which the mouth starts / fully follows the model.
const VOICE_OFF: f32 = 0.2;
const VOICE_ON: f32 = 0.55;
/// Changes of the opening smaller than this are ignored: no quiver.
const DEADBAND: f32 = 0.02;

/// The builtin motion: audio to mouth by the mouth model, plus procedural blinks and
/// head motion.
pub struct BuiltinMotion {
    device: Device,
    mouth: MouthModel,
    animator: SpeechAnimator,
    controls: MotionControls,
}

impl BuiltinMotion {
    pub fn new(device: Device) -> Result<Self, Error> {
        features::first_fft_alone();
        Ok(Self {
            device,
            mouth: MouthModel::load_bytes(MOUTH_WEIGHTS, MOUTH_WEIGHTS_NAME, device)?,
            animator: SpeechAnimator::new(0),
            controls: MotionControls::default(),
        })
    }

    /// Blinks started since the last reset.
    pub fn blinks(&self) -> u64 {
        self.animator.blinks()
    }
}

impl MotionSource for BuiltinMotion {
    fn name(&self) -> &'static str {
        "builtin"
    }

    fn kind(&self) -> MotionKind {
        MotionKind::Face
    }

    fn device(&self) -> Device {
        self.device
    }

    fn cpu_threads(&self) -> CpuThreads {
        CpuThreads::One
    }

    fn history_samples(&self) -> usize {
        // The model looks 200 ms behind the frame's centre, with 12.5 ms half windows.
        CONTEXT_BEHIND * HOP + WINDOW / 2
    }

    fn reset(&mut self, seed: u64) {
        self.animator = SpeechAnimator::new(seed);
    }

    fn set_controls(&mut self, controls: &MotionControls) {
        self.controls = *controls;
    }

    fn next(&mut self, audio: &AudioWindow<'_>) -> Result<Motion, Error> {
        // The mouth is drawn for the middle of the frame's time span.
        let centre = (audio.frame_start + audio.frame_len / 2) as i64;
        let padded = pad_before_stream_start(audio);
        let samples = padded.as_deref().unwrap_or(audio.samples);
        let mouth = guarded("running the mouth model", || {
            self.mouth.predict(samples, centre, samples.len() as i64)
        })?;
        let level = level_db(audio.frame_samples());
        // The voice's pitch over the span centred on the frame's middle (or the latest
        // span there is, with little lookahead).
        let start = (centre.max(0) as usize)
            .saturating_sub(PITCH_SPAN / 2)
            .min(samples.len().saturating_sub(PITCH_SPAN));
        let pitch = samples
            .get(start..start + PITCH_SPAN)
            .and_then(prosody::fundamental_hz);
        Ok(Motion::Face(self.animator.next(
            mouth,
            level,
            pitch,
            audio.frame_seconds(),
            self.controls,
        )))
    }
}

/// The window of one of the first frames of a stream, with the time before the stream
/// began filled by the stream's own first samples, mirrored (repeated if the window holds
/// fewer): the model then hears the start of a stream as continuing, not as an onset out
/// of silence. Otherwise a microphone's room noise opens the mouth for the first frames
/// (the model takes noise rising out of silence for speech). `None` when the window lies
/// wholly inside the stream.
fn pad_before_stream_start(audio: &AudioWindow<'_>) -> Option<Vec<f32>> {
    let before = -audio.first_position();
    if before <= 0 {
        return None;
    }
    let before = before as usize;
    let heard = &audio.samples[before..];
    if heard.is_empty() {
        return None;
    }
    let mut padded = audio.samples.to_vec();
    for (i, sample) in padded[..before].iter_mut().enumerate() {
        // Sample `i` lies `before - i` samples before the start: mirror it into the
        // stream, wrapping round what is there.
        let distance = (before - 1 - i) % heard.len();
        *sample = heard[distance];
    }
    Some(padded)
}

/// From the mouth model's output and the frame's level to the frame's face motion:
/// the mouth gated by voice and level, blinks, head motion and brows.
#[derive(Debug, Clone)]
pub struct SpeechAnimator {
    random: Random,
    time: f64,
    mouth: (f32, f32, f32),
    blinks: Blinks,
    head: HeadMotion,
    speaking: f64,
    /// Slow average of the level, to find emphasis (syllables louder than usual).
    level_average: f32,
    /// Recent background levels: (time, dBFS) of frames not heard as voice.
    background: std::collections::VecDeque<(f64, f32)>,
    nod: f64,
    brow: f64,
    intonation: Intonation,
    controls: ControlEasing,
}

impl SpeechAnimator {
    pub fn new(seed: u64) -> Self {
        let mut random = Random(seed ^ 0x5EED_FACE_0000_0001);
        let blinks = Blinks::new(&mut random);
        Self {
            random,
            time: 0.0,
            mouth: (0.0, 0.0, 0.0),
            blinks,
            head: HeadMotion::default(),
            speaking: 0.0,
            level_average: -40.0,
            background: std::collections::VecDeque::new(),
            nod: 0.0,
            brow: 0.0,
            intonation: Intonation::default(),
            controls: ControlEasing::default(),
        }
    }

    /// Blinks started so far (for tests and statistics).
    pub fn blinks(&self) -> u64 {
        self.blinks.count()
    }

    /// The motion of the next frame, `dt` seconds after the previous one, given the
    /// mouth model's output, the frame's level in dBFS and its pitch in Hz (`None`:
    /// none found).
    pub fn next(
        &mut self,
        mouth: MouthOutput,
        level_db: f32,
        pitch_hz: Option<f32>,
        dt: f64,
        controls: MotionControls,
    ) -> FaceMotion {
        self.time += dt;

        // ---- mouth: gated by voice and level, no quiver -------------------------------
        // The noise floor: frames heard as voice do not count, so a long sung note does
        // not become "background".
        if mouth.voice < 0.5 {
            self.background.push_back((self.time, level_db));
        }
        while self
            .background
            .front()
            .is_some_and(|(t, _)| *t < self.time - FLOOR_WINDOW_S)
        {
            self.background.pop_front();
        }
        let floor = self
            .background
            .iter()
            .map(|(_, level)| *level)
            .reduce(f32::min)
            .unwrap_or(DEFAULT_FLOOR_DB);
        let above_floor = ((level_db - floor - ABOVE_FLOOR_DB.0)
            / (ABOVE_FLOOR_DB.1 - ABOVE_FLOOR_DB.0))
            .clamp(0.0, 1.0);
        let gate = if level_db < SILENCE_DB {
            0.0
        } else {
            ((mouth.voice - VOICE_OFF) / (VOICE_ON - VOICE_OFF)).clamp(0.0, 1.0) * above_floor
        };
        // Pressed lips (/p b m/) close the mouth whatever the opening regression says.
        let open = mouth.open * gate * (1.0 - mouth.closure);
        let width = mouth.width * gate;
        let round = mouth.round * gate;
        if (open - self.mouth.0).abs() >= DEADBAND || open == 0.0 {
            self.mouth.0 = open;
        }
        self.mouth.1 = width;
        self.mouth.2 = round;

        // ---- speech activity and emphasis ----------------------------------------------
        let voiced = f64::from(gate);
        let rate = 1.0 - (-dt / 0.35).exp();
        self.speaking += (voiced - self.speaking) * rate;
        let emphasis = if gate > 0.5 {
            ((level_db - self.level_average - 4.0) / 6.0).clamp(0.0, 1.0)
        } else {
            0.0
        };
        if gate > 0.5 {
            self.level_average +=
                (level_db - self.level_average) * (1.0 - (-dt / 1.5).exp()) as f32;
        }
        // Nods and brow raises follow emphasis, then ease back.
        self.nod += (f64::from(emphasis) - self.nod)
            * if f64::from(emphasis) > self.nod {
                0.5
            } else {
                1.0 - (-dt / 0.25).exp()
            };
        self.brow += (f64::from(emphasis) * 0.7 - self.brow)
            * if f64::from(emphasis) * 0.7 > self.brow {
                0.35
            } else {
                1.0 - (-dt / 0.4).exp()
            };

        // ---- blinks and head -----------------------------------------------------------
        let starting_to_pause = self.speaking > 0.6 && voiced < 0.5;
        let lid = self
            .blinks
            .step(self.time, starting_to_pause, &mut self.random);
        let head_scale = self.head.ease_scale(controls.head_motion, dt);
        // Intonation counts only the voice's pitch (not music's, not noise's).
        let intonation = self.intonation.step(pitch_hz.filter(|_| gate > 0.5), dt);
        let head = self
            .head
            .step(dt, self.speaking, self.nod, intonation, &mut self.random);
        FaceMotion {
            mouth_open: self.mouth.0,
            mouth_width: self.mouth.1,
            mouth_round: self.mouth.2,
            blink_left: lid as f32,
            blink_right: lid as f32,
            brow_raise: (self.brow * head_scale.min(1.0)) as f32,
            yaw: head.yaw,
            pitch: head.pitch,
            roll: head.roll,
            shift_x: head.shift_x,
            shift_y: head.shift_y,
            controls: self.controls.step(&controls, dt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_motion_other_seed_other_motion() {
        let run = |seed| {
            let mut generator = SpeechAnimator::new(seed);
            (0..200)
                .map(|i| {
                    let voice = if i % 50 < 30 { 1.0 } else { 0.0 };
                    generator.next(
                        MouthOutput {
                            open: 0.5,
                            width: 0.1,
                            round: 0.0,
                            voice,
                            closure: 0.0,
                        },
                        -20.0,
                        None,
                        0.04,
                        MotionControls::default(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn silence_closes_the_mouth_and_music_barely_opens_it() {
        let mut generator = SpeechAnimator::new(1);
        let loud = MouthOutput {
            open: 0.8,
            width: 0.0,
            round: 0.0,
            voice: 1.0,
            closure: 0.0,
        };
        assert!(
            generator
                .next(loud, -20.0, None, 0.04, MotionControls::default())
                .mouth_open
                > 0.7
        );
        assert_eq!(
            generator
                .next(loud, -70.0, None, 0.04, MotionControls::default())
                .mouth_open,
            0.0
        );
        let music = MouthOutput {
            open: 0.6,
            width: 0.0,
            round: 0.0,
            voice: 0.1,
            closure: 0.0,
        };
        assert_eq!(
            generator
                .next(music, -20.0, None, 0.04, MotionControls::default())
                .mouth_open,
            0.0
        );
    }
}
