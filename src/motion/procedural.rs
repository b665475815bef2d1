//! Motion that several sources share, made without a network: blinks, head motion
//! coupled to speech activity, and the rule that brings the lips to rest in silence.
//! Random parts draw from the caller's generator, so a source seeded per stream
//! replays identically.

use crate::core::random::SplitMix64 as Random;
use crate::core::{FaceControls, MotionControls, level_db};

/// Blinks: median interval and spread (log-normal), and duration range, in seconds.
const BLINK_MEDIAN_S: f64 = 3.4;
const BLINK_SPREAD: f64 = 0.45;
const BLINK_MIN_INTERVAL_S: f64 = 1.2;
const BLINK_DURATION_S: (f64, f64) = (0.13, 0.26);
/// A pause in speech starts a blink with this probability, if the last one is this old.
const PAUSE_BLINK_CHANCE: f64 = 0.3;
const PAUSE_BLINK_AFTER_S: f64 = 2.0;

/// Head motion: amplitude (radians / IOD) while speaking, and the share kept in silence.
const YAW_SPEAKING: f64 = 0.04;
const PITCH_SPEAKING: f64 = 0.035;
const ROLL_SPEAKING: f64 = 0.035;
const SHIFT_SPEAKING: f64 = 0.025;
const IDLE_SHARE: f64 = 0.35;
/// How far a full nod tips the head, in radians of pitch.
const NOD_PITCH: f64 = 0.04;
/// How far the chin lifts per semitone the voice rises above its mean, radians.
const INTONATION_PITCH: f64 = 0.006;
/// Each phrase turns and tilts the head a little (standard deviation, radians), gliding
/// there with this time constant; a pause this long ends a phrase, and after a silence
/// this long the head comes back to the front.
const PHRASE_YAW: f64 = 0.07;
const PHRASE_ROLL: f64 = 0.025;
const PHRASE_GLIDE_S: f64 = 0.8;
const PHRASE_PAUSE_S: f64 = 0.3;
const CALM_AFTER_S: f64 = 1.5;
/// Time constant of the head's random drift, seconds.
const HEAD_TIME_CONSTANT_S: f64 = 1.1;
/// Time constant of each of the two stages through which a change of the
/// `head-motion` control eases in, seconds (most of it within a second, no jerk at the
/// start).
const HEAD_SCALE_EASE_S: f64 = 0.3;
/// The head never turns or nods further than about this (radians; a soft limit).
const MAX_TURN: f64 = 0.2;
const MAX_ROLL: f64 = 0.15;

/// Time constant of each of the two smoothing stages a change of gaze, head distance or
/// emotion passes through, seconds: a change is 45% done after 100 ms, 94% after
/// 300 ms, and starts and ends without a jerk.
const CONTROL_EASE_STAGE_S: f64 = 0.065;

/// Eases the face controls towards the properties' values: two first-order stages in
/// a row (critically damped), so a new emotion or gaze slides in over about 300 ms
/// instead of snapping. The first frame of a stream takes the values as they are.
#[derive(Debug, Clone, Default)]
pub struct ControlEasing {
    /// The two stages' states, as flat value lists ([`FaceControls`] order).
    stages: Option<[[f32; CONTROL_VALUES]; 2]>,
}

/// gaze x, gaze y, distance, eight emotion weights.
const CONTROL_VALUES: usize = 11;

fn control_values(controls: &FaceControls) -> [f32; CONTROL_VALUES] {
    let mut values = [0.0; CONTROL_VALUES];
    values[0] = controls.gaze.0;
    values[1] = controls.gaze.1;
    values[2] = controls.distance;
    values[3..].copy_from_slice(&controls.emotion);
    values
}

impl ControlEasing {
    /// The controls to draw `dt` seconds after the previous frame.
    pub fn step(&mut self, controls: &MotionControls, dt: f64) -> FaceControls {
        let target = control_values(&FaceControls::target(controls));
        let stages = self.stages.get_or_insert([target; 2]);
        let rate = (1.0 - (-dt.max(0.0) / CONTROL_EASE_STAGE_S).exp()) as f32;
        for i in 0..CONTROL_VALUES {
            stages[0][i] += (target[i] - stages[0][i]) * rate;
            stages[1][i] += (stages[0][i] - stages[1][i]) * rate;
        }
        let eased = stages[1];
        FaceControls {
            gaze: (eased[0], eased[1]),
            distance: eased[2],
            emotion: std::array::from_fn(|i| eased[3 + i]),
        }
    }
}

/// Eyelid blinks at a natural rate (about 18 a minute), more often at pauses in speech.
#[derive(Debug, Clone)]
pub struct Blinks {
    next_blink: f64,
    /// The blink under way: (start, length) in seconds.
    blink: Option<(f64, f64)>,
    count: u64,
}

impl Blinks {
    /// Draws the time of the first blink from `random`.
    pub fn new(random: &mut Random) -> Self {
        Self {
            next_blink: 0.6 + random.uniform_open() * 2.0,
            blink: None,
            count: 0,
        }
    }

    /// Blinks started so far (for tests and statistics).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The lid closure (0 open .. 1 closed) at `time` seconds into the stream, given
    /// whether speech is just pausing (people blink at phrase ends more than
    /// elsewhere).
    pub fn step(&mut self, time: f64, starting_to_pause: bool, random: &mut Random) -> f64 {
        let since_last = self.blink.map_or(f64::INFINITY, |(start, _)| time - start);
        if self
            .blink
            .is_none_or(|(start, length)| time > start + length)
            && (time >= self.next_blink
                || (starting_to_pause
                    && since_last > PAUSE_BLINK_AFTER_S
                    && random.uniform_open() < PAUSE_BLINK_CHANCE))
        {
            let length = BLINK_DURATION_S.0
                + (BLINK_DURATION_S.1 - BLINK_DURATION_S.0) * random.uniform_open();
            self.blink = Some((time, length));
            self.count += 1;
            let interval = (BLINK_MEDIAN_S.ln() + BLINK_SPREAD * random.gaussian()).exp();
            self.next_blink = time + interval.max(BLINK_MIN_INTERVAL_S);
        }
        self.blink
            .map_or(0.0, |(start, length)| lid_closure((time - start) / length))
    }
}

/// Lid closure through a blink (`phase` 0..1): a quick close (35%), a short hold, a
/// slower reopening, each eased.
fn lid_closure(phase: f64) -> f64 {
    if !(0.0..1.0).contains(&phase) {
        return 0.0;
    }
    if phase < 0.35 {
        smoothstep(phase / 0.35)
    } else if phase < 0.45 {
        1.0
    } else {
        1.0 - smoothstep((phase - 0.45) / 0.55)
    }
}

/// Hermite ease from 0 to 1 over `x` in 0..1.
pub fn smoothstep(x: f64) -> f64 {
    x * x * (3.0 - 2.0 * x)
}

/// Time constant of the low-pass that smooths the drift, seconds.
const HEAD_SMOOTHING_S: f64 = 0.25;

/// A smooth, mean-reverting drift of unit variance: an Ornstein-Uhlenbeck process
/// through a first-order low-pass. The process alone is rough (each 40 ms step moved
/// the head by about a quarter of its whole range, up to 1.25 degrees of yaw, back and
/// forth: a visible shake); the low-pass makes it a glide with the same reach.
#[derive(Debug, Clone, Copy, Default)]
struct Drift {
    value: f64,
    smoothed: f64,
}

impl Drift {
    fn step(&mut self, dt: f64, random: &mut Random) -> f64 {
        let theta = 1.0 / HEAD_TIME_CONSTANT_S;
        let decay = (-theta * dt).exp();
        self.value = self.value * decay + (1.0 - decay * decay).sqrt() * random.gaussian();
        self.smoothed += (self.value - self.smoothed) * (1.0 - (-dt / HEAD_SMOOTHING_S).exp());
        // The low-pass keeps T / (T + tau) of the process's variance: give it back.
        self.smoothed * ((HEAD_TIME_CONSTANT_S + HEAD_SMOOTHING_S) / HEAD_TIME_CONSTANT_S).sqrt()
    }
}

/// `x` bent smoothly to stay within `limit` (unchanged near 0).
fn soft_limit(x: f64, limit: f64) -> f32 {
    (limit * (x / limit).tanh()) as f32
}

/// The head's pose in one frame: rotation in radians, translation in inter-ocular
/// distances (the signs of [`crate::core::FaceMotion`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadPose {
    pub yaw: f32,
    pub pitch: f32,
    pub roll: f32,
    pub shift_x: f32,
    pub shift_y: f32,
}

/// Head motion like a speaker's: a smooth random drift in yaw, pitch, roll and
/// position, livelier while speaking; a new turn and tilt for each phrase, glided into;
/// nods on emphasis and the chin lifting with the voice's pitch; calm in silence; scaled
/// by the `head-motion` control (eased in, never jumping).
#[derive(Debug, Clone)]
pub struct HeadMotion {
    drift: [Drift; 5],
    /// Smoothed head-motion scale.
    scale: f64,
    /// The first stage of the scale's easing.
    scale_stage: f64,
    phrase: PhraseTurn,
}

impl Default for HeadMotion {
    fn default() -> Self {
        Self {
            drift: [Drift::default(); 5],
            scale: f64::NAN,
            scale_stage: f64::NAN,
            phrase: PhraseTurn::default(),
        }
    }
}

/// The turn and tilt of the current phrase (radians), and how it got there.
#[derive(Debug, Clone, Copy)]
struct PhraseTurn {
    target: (f64, f64),
    now: (f64, f64),
    in_phrase: bool,
    silent_for: f64,
}

impl Default for PhraseTurn {
    fn default() -> Self {
        Self {
            target: (0.0, 0.0),
            now: (0.0, 0.0),
            in_phrase: false,
            silent_for: f64::INFINITY,
        }
    }
}

impl PhraseTurn {
    fn step(&mut self, dt: f64, speaking: f64, random: &mut Random) -> (f64, f64) {
        if speaking > 0.5 {
            if !self.in_phrase {
                self.target = (
                    random.gaussian() * PHRASE_YAW,
                    random.gaussian() * PHRASE_ROLL,
                );
                self.in_phrase = true;
            }
            self.silent_for = 0.0;
        } else {
            self.silent_for += dt;
            if self.silent_for >= PHRASE_PAUSE_S {
                self.in_phrase = false;
            }
            if self.silent_for >= CALM_AFTER_S {
                self.target = (0.0, 0.0);
            }
        }
        let glide = 1.0 - (-dt / PHRASE_GLIDE_S).exp();
        self.now.0 += (self.target.0 - self.now.0) * glide;
        self.now.1 += (self.target.1 - self.now.1) * glide;
        self.now
    }
}

impl HeadMotion {
    /// Eases the scale towards the `head-motion` control over `dt` seconds; returns it.
    pub fn ease_scale(&mut self, control: f32, dt: f64) -> f64 {
        let target = f64::from(control.clamp(0.0, 2.0));
        if self.scale.is_nan() {
            self.scale = target;
            self.scale_stage = target;
        }
        let rate = 1.0 - (-dt / HEAD_SCALE_EASE_S).exp();
        self.scale_stage += (target - self.scale_stage) * rate;
        self.scale += (self.scale_stage - self.scale) * rate;
        self.scale
    }

    /// The pose after `dt` more seconds, given how much the person is speaking (0..1),
    /// nodding (0..1) and how far their voice stands above its mean pitch (semitones,
    /// [`super::prosody::Intonation`]). Call [`HeadMotion::ease_scale`] first in each
    /// frame.
    pub fn step(
        &mut self,
        dt: f64,
        speaking: f64,
        nod: f64,
        intonation: f64,
        random: &mut Random,
    ) -> HeadPose {
        let liveliness = (IDLE_SHARE + (1.0 - IDLE_SHARE) * speaking) * self.scale;
        let mut drift = [0.0; 5];
        for (value, process) in drift.iter_mut().zip(self.drift.iter_mut()) {
            *value = process.step(dt, random);
        }
        let (phrase_yaw, phrase_roll) = self.phrase.step(dt, speaking, random);
        // A rising voice lifts the chin (negative pitch).
        let lift = intonation * INTONATION_PITCH * speaking;
        HeadPose {
            yaw: soft_limit(
                (drift[0] * YAW_SPEAKING + phrase_yaw) * liveliness,
                MAX_TURN,
            ),
            pitch: soft_limit(
                (drift[1] * PITCH_SPEAKING + nod * NOD_PITCH - lift) * liveliness,
                MAX_TURN,
            ),
            roll: soft_limit(
                (drift[2] * ROLL_SPEAKING + phrase_roll) * liveliness,
                MAX_ROLL,
            ),
            shift_x: (drift[3] * SHIFT_SPEAKING * liveliness) as f32,
            shift_y: (drift[4] * SHIFT_SPEAKING * 0.6 * liveliness) as f32,
        }
    }
}

/// The silence rule of the neural (keypoint) motion sources: once the last 60 ms are
/// quieter than -45 dBFS the lips go to rest (the portrait's own mouth) within about
/// 120 ms, and come back as quickly when sound returns, whatever the network does.
#[derive(Debug, Clone)]
pub struct LipRest {
    /// 0 while speaking .. 1 at rest.
    rest: f32,
}

/// Below this level (dBFS over the last `LIP_REST_SPAN` samples) a frame is silent.
const LIP_REST_SILENCE_DB: f32 = -45.0;
/// How much audio must be silent before the lips go to rest (60 ms at 16 kHz).
pub const LIP_REST_SPAN: usize = 960;
/// Share of the way to rest (or back) the lips go per 40 ms.
const LIP_REST_RATE: f32 = 0.6;
/// The span `LIP_REST_RATE` is given for, in samples (40 ms).
const LIP_REST_RATE_SPAN: f32 = 640.0;

impl Default for LipRest {
    fn default() -> Self {
        // A stream starts with the lips at rest.
        Self { rest: 1.0 }
    }
}

impl LipRest {
    /// The rest share after a frame of `frame_len` samples whose last `LIP_REST_SPAN`
    /// samples (the frame's end and what came before it) are `recent`.
    pub fn step(&mut self, recent: &[f32], frame_len: usize) -> f32 {
        let target = if level_db(recent) < LIP_REST_SILENCE_DB {
            1.0
        } else {
            0.0
        };
        let step = (LIP_REST_RATE * frame_len as f32 / LIP_REST_RATE_SPAN).min(1.0);
        self.rest += (target - self.rest) * step;
        self.rest
    }

    /// Whether the silence rule currently holds the lips mostly at rest.
    pub fn resting(&self) -> bool {
        self.rest > 0.5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blinks_are_natural_in_rate_and_length() {
        let mut random = Random(7);
        let mut blinks = Blinks::new(&mut random);
        let dt = 0.04;
        let mut closed_runs = Vec::new();
        let mut run = 0;
        for i in 0..(600.0 / dt) as usize {
            let lid = blinks.step((i + 1) as f64 * dt, false, &mut random);
            if lid > 0.5 {
                run += 1;
            } else if run > 0 {
                closed_runs.push(run);
                run = 0;
            }
        }
        let per_minute = blinks.count() as f64 / 10.0;
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
    fn the_head_is_still_at_zero_scale_and_livelier_while_speaking() {
        let energy = |speaking: f64, scale: f32| {
            let mut random = Random(5);
            let mut head = HeadMotion::default();
            let poses: Vec<HeadPose> = (0..1500)
                .map(|_| {
                    head.ease_scale(scale, 0.04);
                    head.step(0.04, speaking, 0.0, 0.0, &mut random)
                })
                .collect();
            poses
                .windows(2)
                .map(|w| f64::from((w[1].yaw - w[0].yaw).abs() + (w[1].roll - w[0].roll).abs()))
                .sum::<f64>()
        };
        assert_eq!(energy(1.0, 0.0), 0.0);
        assert!(energy(1.0, 1.0) > 1.8 * energy(0.0, 1.0));
    }

    #[test]
    fn lips_rest_within_120_ms_of_silence_and_return_as_fast() {
        let mut rest = LipRest::default();
        let loud = vec![0.3f32; LIP_REST_SPAN];
        let quiet = vec![0.0f32; LIP_REST_SPAN];
        for _ in 0..3 {
            rest.step(&loud, 640);
        }
        assert!(!rest.resting());
        for _ in 0..3 {
            rest.step(&quiet, 640);
        }
        assert!(rest.resting());
    }

    #[test]
    fn a_control_change_eases_in_over_about_300_ms_and_the_first_frame_takes_it_as_set() {
        use crate::core::{Emotion, Gaze};
        let happy = MotionControls {
            emotion: Emotion::Happy,
            emotion_strength: 0.8,
            gaze: Gaze::Degrees(10.0, -4.0),
            head_distance: 1.2,
            ..MotionControls::default()
        };
        let mut easing = ControlEasing::default();
        let first = easing.step(&happy, 0.04);
        assert_eq!(first, FaceControls::target(&happy));
        assert_eq!(first.weight(Emotion::Happy), 0.8);

        let sad = MotionControls {
            emotion: Emotion::Sad,
            gaze: Gaze::Camera,
            head_distance: 0.9,
            ..MotionControls::default()
        };
        // The share of the way from happy to sad after each 40 ms frame.
        let shares: Vec<f32> = (0..15)
            .map(|_| easing.step(&sad, 0.04).weight(Emotion::Sad))
            .collect();
        assert!(shares.windows(2).all(|w| w[1] > w[0]), "{shares:?}");
        // Gentle start (no snap), under half way at 80 ms, nearly there by 280 ms.
        assert!(shares[0] < 0.3, "{shares:?}");
        assert!((0.3..0.6).contains(&shares[1]), "{shares:?}");
        assert!(shares[6] > 0.9, "{shares:?}");
        let settled = easing.step(&sad, 0.5);
        assert!((settled.distance - 0.9).abs() < 0.01);
        assert!(settled.weight(Emotion::Happy) < 0.01);
        assert!(settled.gaze.0.abs() < 0.1);
        // Out-of-range values are held to the documented ranges.
        let wild = MotionControls {
            head_distance: 9.0,
            emotion: Emotion::Angry,
            emotion_strength: 3.0,
            ..MotionControls::default()
        };
        let target = FaceControls::target(&wild);
        assert_eq!(target.distance, MotionControls::HEAD_DISTANCE.1);
        assert_eq!(target.weight(Emotion::Angry), 1.0);
    }

    #[test]
    fn the_head_turns_with_each_phrase_lifts_with_a_rising_voice_and_calms_in_silence() {
        let mut random = Random(11);
        let mut head = HeadMotion::default();
        let dt = 0.04;
        // Twelve phrases of 2.4 s, 0.8 s apart, the voice rising and falling by 4
        // semitones every 1.2 s; then 8 s of silence.
        let (mut phrase_ends, mut speech) = (Vec::new(), Vec::new());
        for phrase in 0..12 {
            for i in 0..60 {
                let t = f64::from(i) * dt;
                let intonation = 4.0 * (std::f64::consts::TAU * t / 1.2).sin();
                head.ease_scale(1.0, dt);
                let pose = head.step(dt, 1.0, 0.0, intonation, &mut random);
                speech.push((intonation, f64::from(pose.pitch)));
                if i == 59 {
                    phrase_ends.push(f64::from(pose.yaw));
                }
            }
            for _ in 0..20 {
                head.ease_scale(1.0, dt);
                head.step(dt, 0.0, 0.0, 0.0, &mut random);
            }
            let _ = phrase;
        }
        let mean = phrase_ends.iter().sum::<f64>() / 12.0;
        let spread = (phrase_ends.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / 12.0).sqrt();
        assert!(
            spread.to_degrees() > 1.5,
            "phrases turn the head by {spread} rad"
        );
        let correlation = {
            let n = speech.len() as f64;
            let (mx, my) = (
                speech.iter().map(|s| s.0).sum::<f64>() / n,
                speech.iter().map(|s| s.1).sum::<f64>() / n,
            );
            let cov: f64 = speech.iter().map(|s| (s.0 - mx) * (s.1 - my)).sum();
            let (vx, vy): (f64, f64) = (
                speech.iter().map(|s| (s.0 - mx).powi(2)).sum(),
                speech.iter().map(|s| (s.1 - my).powi(2)).sum(),
            );
            cov / (vx * vy).sqrt()
        };
        assert!(correlation < -0.4, "chin and voice: r = {correlation}");
        let silence: Vec<f64> = (0..200)
            .map(|_| {
                head.ease_scale(1.0, dt);
                f64::from(head.step(dt, 0.0, 0.0, 0.0, &mut random).yaw)
            })
            .collect();
        let late = &silence[100..];
        let calm = late.iter().map(|y| y.abs()).fold(0.0, f64::max);
        assert!(
            calm < 0.03,
            "in silence the head stays near the front: {calm}"
        );
    }
}
