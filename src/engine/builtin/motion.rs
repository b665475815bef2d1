//! Motion beyond the mouth model's raw output, frame by frame: the mouth cleaned up
//! (closed in silence and in music, no quiver), blinks, head motion coupled to the
//! speech, eyebrow raises on emphasis. Random parts come from a generator seeded per
//! stream, so the same audio, portrait and seed give the same motion.

use super::mouth::MouthOutput;
use super::random::SplitMix64 as Random;
use crate::engine::{Motion, MotionControls};

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
/// Blinks: median interval and spread (log-normal), and duration range, in seconds.
const BLINK_MEDIAN_S: f64 = 3.4;
const BLINK_SPREAD: f64 = 0.45;
const BLINK_MIN_INTERVAL_S: f64 = 1.2;
const BLINK_DURATION_S: (f64, f64) = (0.13, 0.26);
/// Head motion: amplitude (radians / IOD) while speaking, and the share kept in silence.
const YAW_SPEAKING: f64 = 0.05;
const PITCH_SPEAKING: f64 = 0.035;
const ROLL_SPEAKING: f64 = 0.035;
const SHIFT_SPEAKING: f64 = 0.025;
const IDLE_SHARE: f64 = 0.35;
/// Time constant of the head's random drift, seconds.
const HEAD_TIME_CONSTANT_S: f64 = 1.1;

/// An Ornstein-Uhlenbeck process: smooth, mean-reverting drift of unit variance.
#[derive(Debug, Clone, Copy, Default)]
struct Drift {
    value: f64,
}

impl Drift {
    fn step(&mut self, dt: f64, random: &mut Random) -> f64 {
        let theta = 1.0 / HEAD_TIME_CONSTANT_S;
        let decay = (-theta * dt).exp();
        self.value = self.value * decay + (1.0 - decay * decay).sqrt() * random.gaussian();
        self.value
    }
}

#[derive(Debug, Clone)]
pub struct MotionGenerator {
    random: Random,
    time: f64,
    mouth: (f32, f32, f32),
    next_blink: f64,
    blink: Option<(f64, f64)>,
    speaking: f64,
    /// Slow average of the level, to find emphasis (syllables louder than usual).
    level_average: f32,
    /// Recent background levels: (time, dBFS) of frames not heard as voice.
    background: std::collections::VecDeque<(f64, f32)>,
    nod: f64,
    brow: f64,
    head: [Drift; 5],
    /// Smoothed head-motion scale, so that property changes ease in.
    head_scale: f64,
    blinks: u64,
}

impl MotionGenerator {
    pub fn new(seed: u64) -> Self {
        let mut random = Random(seed ^ 0x5EED_FACE_0000_0001);
        let first = 0.6 + random.uniform_open() * 2.0;
        Self {
            random,
            time: 0.0,
            mouth: (0.0, 0.0, 0.0),
            next_blink: first,
            blink: None,
            speaking: 0.0,
            level_average: -40.0,
            background: std::collections::VecDeque::new(),
            nod: 0.0,
            brow: 0.0,
            head: [Drift::default(); 5],
            head_scale: f64::NAN,
            blinks: 0,
        }
    }

    /// Blinks started so far (for tests and statistics).
    pub fn blinks(&self) -> u64 {
        self.blinks
    }

    /// The motion of the next frame, `dt` seconds after the previous one, given the
    /// mouth model's output and the frame's level in dBFS.
    pub fn next(
        &mut self,
        mouth: MouthOutput,
        level_db: f32,
        dt: f64,
        controls: MotionControls,
    ) -> Motion {
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

        // ---- blinks --------------------------------------------------------------------
        let starting_to_pause = self.speaking > 0.6 && voiced < 0.5;
        let since_last = self
            .blink
            .map_or(f64::INFINITY, |(start, _)| self.time - start);
        // People blink at phrase ends more than elsewhere.
        if self
            .blink
            .is_none_or(|(start, length)| self.time > start + length)
            && (self.time >= self.next_blink
                || (starting_to_pause && since_last > 2.0 && self.random.uniform_open() < 0.3))
        {
            let length = BLINK_DURATION_S.0
                + (BLINK_DURATION_S.1 - BLINK_DURATION_S.0) * self.random.uniform_open();
            self.blink = Some((self.time, length));
            self.blinks += 1;
            let interval = (BLINK_MEDIAN_S.ln() + BLINK_SPREAD * self.random.gaussian()).exp();
            self.next_blink = self.time + interval.max(BLINK_MIN_INTERVAL_S);
        }
        let lid = self.blink.map_or(0.0, |(start, length)| {
            lid_closure((self.time - start) / length)
        });

        // ---- head ----------------------------------------------------------------------
        let target_scale = f64::from(controls.head_motion.clamp(0.0, 2.0));
        if self.head_scale.is_nan() {
            self.head_scale = target_scale;
        }
        self.head_scale += (target_scale - self.head_scale) * (1.0 - (-dt / 0.5).exp());
        let liveliness = (IDLE_SHARE + (1.0 - IDLE_SHARE) * self.speaking) * self.head_scale;
        let mut drift = [0.0; 5];
        for (value, process) in drift.iter_mut().zip(self.head.iter_mut()) {
            *value = process.step(dt, &mut self.random);
        }
        Motion {
            mouth_open: self.mouth.0,
            mouth_width: self.mouth.1,
            mouth_round: self.mouth.2,
            blink_left: lid as f32,
            blink_right: lid as f32,
            brow_raise: (self.brow * self.head_scale.min(1.0)) as f32,
            yaw: (drift[0] * YAW_SPEAKING * liveliness) as f32,
            pitch: ((drift[1] * PITCH_SPEAKING + self.nod * 0.04) * liveliness) as f32,
            roll: (drift[2] * ROLL_SPEAKING * liveliness) as f32,
            shift_x: (drift[3] * SHIFT_SPEAKING * liveliness) as f32,
            shift_y: (drift[4] * SHIFT_SPEAKING * 0.6 * liveliness) as f32,
            keypoints: None,
        }
    }
}

/// Lid closure through a blink (`phase` 0..1): a quick close (35%), a short hold, a
/// slower reopening, each eased.
fn lid_closure(phase: f64) -> f64 {
    if !(0.0..1.0).contains(&phase) {
        return 0.0;
    }
    let ease = |x: f64| x * x * (3.0 - 2.0 * x);
    if phase < 0.35 {
        ease(phase / 0.35)
    } else if phase < 0.45 {
        1.0
    } else {
        1.0 - ease((phase - 0.45) / 0.55)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn silent() -> MouthOutput {
        MouthOutput {
            open: 0.0,
            width: 0.0,
            round: 0.0,
            voice: 0.0,
            closure: 0.0,
        }
    }

    #[test]
    fn blinks_are_natural_in_rate_and_length() {
        let mut generator = MotionGenerator::new(7);
        let dt = 0.04;
        let mut closed_runs = Vec::new();
        let mut run = 0;
        for _ in 0..(600.0 / dt) as usize {
            let motion = generator.next(silent(), -90.0, dt, MotionControls::default());
            if motion.blink_left > 0.5 {
                run += 1;
            } else if run > 0 {
                closed_runs.push(run);
                run = 0;
            }
        }
        let per_minute = generator.blinks() as f64 / 10.0;
        assert!(
            (10.0..=25.0).contains(&per_minute),
            "{per_minute} blinks per minute"
        );
        // Mostly-closed part of a 130-260 ms blink: 1-4 frames at 25 fps.
        assert!(
            closed_runs.iter().all(|&r| (1..=4).contains(&r)),
            "{closed_runs:?}"
        );
    }

    #[test]
    fn same_seed_same_motion_other_seed_other_motion() {
        let run = |seed| {
            let mut generator = MotionGenerator::new(seed);
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
        let mut generator = MotionGenerator::new(1);
        let loud = MouthOutput {
            open: 0.8,
            width: 0.0,
            round: 0.0,
            voice: 1.0,
            closure: 0.0,
        };
        assert!(
            generator
                .next(loud, -20.0, 0.04, MotionControls::default())
                .mouth_open
                > 0.7
        );
        assert_eq!(
            generator
                .next(loud, -70.0, 0.04, MotionControls::default())
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
                .next(music, -20.0, 0.04, MotionControls::default())
                .mouth_open,
            0.0
        );
    }

    #[test]
    fn head_moves_more_while_speaking_and_not_at_all_at_zero_scale() {
        let energy = |voice: f32, scale: f32| {
            let mut generator = MotionGenerator::new(5);
            let controls = MotionControls {
                head_motion: scale,
                ..MotionControls::default()
            };
            let motions: Vec<Motion> = (0..1500)
                .map(|_| {
                    generator.next(
                        MouthOutput {
                            open: 0.3,
                            width: 0.0,
                            round: 0.0,
                            voice,
                            closure: 0.0,
                        },
                        -25.0,
                        0.04,
                        controls,
                    )
                })
                .collect();
            motions
                .windows(2)
                .map(|w| f64::from((w[1].yaw - w[0].yaw).abs() + (w[1].roll - w[0].roll).abs()))
                .sum::<f64>()
        };
        let speaking = energy(1.0, 1.0);
        let idle = energy(0.0, 1.0);
        assert!(
            idle > 0.0 && speaking > 1.8 * idle,
            "speaking {speaking} idle {idle}"
        );
        assert_eq!(energy(1.0, 0.0), 0.0);
    }
}
