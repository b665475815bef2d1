//! Measures the builtin engine on voices it was not trained on, and on silence, singing
//! and music, and writes the report (markdown + PNG plots) that docs/ carries.
//!
//! Mouth opening is measured twice: on the motion parameters (what the renderer is
//! asked for) and on the rendered frames (the height, in pixels, of teeth and cavity
//! showing between the lips at the mouth's centre).
//!
//! vasafacegen-eval-builtin --data data/builtin --out docs/builtin-eval

#[path = "common.rs"]
mod common;
#[path = "controls.rs"]
mod controls;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use common::visemes::{Phone, targets, viseme};
use gstvasafacegen::core::{FaceMotion, FrameRate, FrameSize, Motion, SAMPLE_RATE};
use gstvasafacegen::engine::{Engine, EngineSpec, offline};
use gstvasafacegen::portrait::Portrait;
use gstvasafacegen::render::pack::to_rgb_image;
use gstvasafacegen::render::{PreparedSource, SourceHints};
use plotters::prelude::*;
use tch::{Device, Kind, Tensor};

#[derive(Parser, Debug)]
#[command(about = "Evaluate the builtin engine on held-out voices")]
struct Args {
    /// Directory written by tools/builtin/make_data.py.
    #[arg(long)]
    data: PathBuf,
    /// Directory for report.md and the plots (docs/builtin-eval in the repository).
    #[arg(long)]
    out: PathBuf,
    /// Portrait to render.
    #[arg(long, default_value = "assets/astronaut.png")]
    image: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

const FPS: i32 = 25;
/// The element's default lookahead (latency property), in samples.
const LOOKAHEAD: usize = 1600;
/// Speech clips whose every frame the face mesh reads for the head's angles.
const JUDGED_CLIPS: usize = 12;
/// Silence added after each utterance, to watch the mouth close.
const TAIL_SECONDS: f64 = 1.5;
const SIZE: FrameSize = FrameSize {
    width: 512,
    height: 512,
};

/// One evaluated clip, frame by frame.
struct Clip {
    name: String,
    voice: String,
    kind: String,
    motions: Vec<FaceMotion>,
    /// Opening measured on rendered frames, pixels.
    rendered: Vec<f64>,
    /// Speech envelope (RMS) per frame.
    envelope: Vec<f64>,
    /// Frame centre times, seconds.
    times: Vec<f64>,
    phones: Vec<Phone>,
    speech_end: f64,
}

impl Clip {
    fn phone_at(&self, t: f64) -> Option<&Phone> {
        self.phones.iter().find(|p| t >= p.start && t < p.end)
    }

    fn speaking(&self, i: usize) -> bool {
        self.phone_at(self.times[i])
            .is_some_and(|p| p.name != "pau")
    }

    /// Whether frame `i` lies in an open vowel (one whose target opening is at least
    /// half), where the lips must be apart.
    fn open_vowel(&self, i: usize) -> bool {
        self.phone_at(self.times[i])
            .and_then(|p| viseme(&p.name))
            .is_some_and(|(shape, _)| shape.open >= 0.5)
    }

    /// The bilabial phone (/p b m/) frame `i` lies in, if it lies in one.
    fn bilabial(&self, i: usize) -> Option<&str> {
        self.phone_at(self.times[i])
            .filter(|p| viseme(&p.name).is_some_and(|(_, closed)| closed))
            .map(|p| p.name.as_str())
    }
}

/// Height of teeth and cavity between the lips at the mouth's centre, in pixels.
fn rendered_opening(frame: &Tensor, source: &PreparedSource) -> f64 {
    let layout = source.face.layout;
    let scale = SIZE.width as f32 / source.portrait.width.max(source.portrait.height) as f32;
    let (x, y) = (layout.mouth_centre.x * scale, layout.mouth_centre.y * scale);
    let iod = layout.inter_ocular() * scale;
    let (left, top) = (
        (x - 0.08 * iod).round() as i64,
        (y - 0.35 * iod).round() as i64,
    );
    let (width, height) = (
        ((0.16 * iod).round() as i64).max(1),
        (0.8 * iod).round() as i64,
    );
    let window = frame
        .narrow(1, top.max(0), height)
        .narrow(2, left.max(0), width);
    let (r, g, b) = (window.get(0), window.get(1), window.get(2));
    let luma = &r * 0.299 + &g * 0.587 + &b * 0.114;
    let redness = (&r - &g) / (&r + &g + &b + 0.05);
    // Teeth: bright and far less red than any skin (a skin highlight is as bright but
    // redder); cavity: dark.
    let teeth = luma.gt(0.8).logical_and(&redness.lt(0.035));
    let lip_gap = teeth.logical_or(&luma.lt(0.3)).to_kind(Kind::Float);
    // Rows where most of the band is teeth or cavity.
    lip_gap
        .mean_dim(1, false, Kind::Float)
        .gt(0.5)
        .sum(Kind::Float)
        .double_value(&[])
}

fn evaluate_clip(
    engine: &mut Engine,
    source: &PreparedSource,
    utterance: &common::Utterance,
    data: &Path,
    render: bool,
    seed: u64,
) -> Result<Clip, String> {
    let mut samples = common::read_wav(&common::utterance_path(data, utterance))?;
    samples.extend(std::iter::repeat_n(
        0.0,
        (TAIL_SECONDS * f64::from(SAMPLE_RATE)) as usize,
    ));
    let rate = FrameRate::new(FPS, 1).expect("positive");
    let motions = offline::face_motions(engine, &samples, rate, LOOKAHEAD, seed)
        .map_err(|e| e.to_string())?;
    let mut rendered = Vec::new();
    if render {
        for motion in &motions {
            // The head held still, so that the measuring window stays on the mouth.
            let mouth_only = Motion::Face(FaceMotion {
                yaw: 0.0,
                pitch: 0.0,
                roll: 0.0,
                shift_x: 0.0,
                shift_y: 0.0,
                ..*motion
            });
            let frame = engine
                .render(&mouth_only, source, SIZE)
                .map_err(|e| e.to_string())?;
            rendered.push(rendered_opening(&frame, source));
        }
    }
    let envelope = (0..motions.len() as u64)
        .map(|n| {
            let (a, b) = (
                rate.frame_start_sample(n) as usize,
                rate.frame_start_sample(n + 1) as usize,
            );
            let frame = &samples[a.min(samples.len())..b.min(samples.len())];
            (frame.iter().map(|s| f64::from(s * s)).sum::<f64>() / frame.len().max(1) as f64).sqrt()
        })
        .collect();
    let times = (0..motions.len())
        .map(|n| (n as f64 + 0.5) / f64::from(FPS))
        .collect();
    let phones = utterance.phones();
    let speech_end = phones
        .iter()
        .filter(|p| p.name != "pau")
        .map(|p| p.end)
        .fold(0.0, f64::max);
    Ok(Clip {
        name: utterance.name.clone(),
        voice: utterance.voice.clone(),
        kind: utterance.kind.clone(),
        motions,
        rendered,
        envelope,
        times,
        phones,
        speech_end,
    })
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        cov += (x - ma) * (y - mb);
        va += (x - ma).powi(2);
        vb += (y - mb).powi(2);
    }
    cov / (va * vb).sqrt().max(1e-12)
}

/// Correlation of `signal[t]` with `envelope[t + lag]` for each lag, within each clip.
fn cross_correlation(
    clips: &[&Clip],
    signal: impl Fn(&Clip) -> Vec<f64>,
    max_lag: i64,
) -> Vec<(i64, f64)> {
    (-max_lag..=max_lag)
        .map(|lag| {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for clip in clips {
                let s = signal(clip);
                for t in 0..s.len() as i64 {
                    let u = t + lag;
                    if u >= 0 && (u as usize) < clip.envelope.len() {
                        a.push(s[t as usize]);
                        b.push(clip.envelope[u as usize]);
                    }
                }
            }
            (lag, pearson(&a, &b))
        })
        .collect()
}

/// Pearson correlation of two per-frame signals over the frames from the first phone's
/// start to the end of speech (no leading or trailing silence), pooled over `clips`.
fn correlation_inside_speech(
    clips: &[&Clip],
    a: &dyn Fn(&Clip) -> Vec<f64>,
    b: &dyn Fn(&Clip) -> Vec<f64>,
) -> f64 {
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for clip in clips {
        let start = clip
            .phones
            .iter()
            .find(|p| p.name != "pau")
            .map_or(0.0, |p| p.start);
        let (x, y) = (a(clip), b(clip));
        for (i, &t) in clip.times.iter().enumerate() {
            if t >= start && t < clip.speech_end {
                xs.push(x[i]);
                ys.push(y[i]);
            }
        }
    }
    pearson(&xs, &ys)
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Correlations over the spoken part of each clip only (no silence before or after).
struct InsideSpeech {
    /// Mouth opening parameter against the speech envelope.
    model_envelope: f64,
    /// The phones' target opening against the speech envelope.
    phones_envelope: f64,
    /// Mouth opening parameter against the phones' target opening.
    model_phones: f64,
}

/// Metrics of one opening measure (parameters or rendered pixels).
struct MouthMetrics {
    lag: i64,
    correlation: f64,
    curve: Vec<(i64, f64)>,
    bilabial_fraction: f64,
    bilabial_frames: usize,
    /// Per bilabial phone name: (frames closed, frames), in name order.
    bilabial_by_phone: std::collections::BTreeMap<String, (usize, usize)>,
    /// Open-vowel frames as closed as a closure counts (lowest 20%): closing the mouth
    /// everywhere would pass the bilabial check, this shows it.
    vowels_closed_fraction: f64,
    vowel_frames: usize,
    silence_fraction: f64,
    silence_worst: f64,
    speech_median: f64,
}

fn mouth_metrics(clips: &[&Clip], signal: &dyn Fn(&Clip) -> Vec<f64>) -> MouthMetrics {
    let curve = cross_correlation(clips, signal, 6);
    let (lag, correlation) = curve
        .iter()
        .copied()
        .fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
    let mut speech = Vec::new();
    let mut bilabial = Vec::new();
    let mut vowels = Vec::new();
    let mut tails = Vec::new();
    for clip in clips {
        let s = signal(clip);
        for (i, value) in s.iter().enumerate() {
            if clip.speaking(i) {
                speech.push(*value);
                if let Some(phone) = clip.bilabial(i) {
                    bilabial.push((phone, *value));
                }
                if clip.open_vowel(i) {
                    vowels.push(*value);
                }
            }
            if clip.times[i] >= clip.speech_end + 0.12 {
                tails.push(*value);
            }
        }
    }
    let lowest_fifth = percentile(&speech, 0.2);
    let speech_median = percentile(&speech, 0.5);
    let closed = bilabial.iter().filter(|(_, v)| *v <= lowest_fifth).count();
    let mut bilabial_by_phone = std::collections::BTreeMap::<String, (usize, usize)>::new();
    for (phone, value) in &bilabial {
        let counts = bilabial_by_phone.entry(phone.to_string()).or_default();
        counts.0 += usize::from(*value <= lowest_fifth);
        counts.1 += 1;
    }
    let quiet = tails.iter().filter(|&&v| v < 0.1 * speech_median).count();
    MouthMetrics {
        lag,
        correlation,
        curve,
        bilabial_fraction: closed as f64 / bilabial.len().max(1) as f64,
        bilabial_frames: bilabial.len(),
        bilabial_by_phone,
        vowels_closed_fraction: vowels.iter().filter(|&&v| v <= lowest_fifth).count() as f64
            / vowels.len().max(1) as f64,
        vowel_frames: vowels.len(),
        silence_fraction: quiet as f64 / tails.len().max(1) as f64,
        silence_worst: tails.iter().copied().fold(0.0, f64::max) / speech_median.max(1e-9),
        speech_median,
    }
}

/// "/b/ 50% of 120, /m/ ..." : closure per bilabial phone.
fn per_phone(m: &MouthMetrics) -> String {
    m.bilabial_by_phone
        .iter()
        .map(|(phone, (closed, frames))| {
            format!(
                "/{phone}/ {:.0}% of {frames}",
                100.0 * *closed as f64 / (*frames).max(1) as f64
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn font() -> Result<(), String> {
    const PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
    let bytes = std::fs::read(PATH).map_err(|e| {
        format!("{PATH}: {e} (scripts/setup.sh --with-tts installs fonts-dejavu-core)")
    })?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| "cannot load the plot font".to_owned())
}

fn plot_timeline(path: &Path, clip: &Clip) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (1200, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let end = clip.times.last().copied().unwrap_or(1.0) + 0.02;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{} ({}): speech envelope and mouth opening",
                clip.name, clip.voice
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..end, 0.0..1.05)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("normalised")
        .label_style(("sans-serif", 14))
        .draw()?;
    for phone in clip
        .phones
        .iter()
        .filter(|p| viseme(&p.name).is_some_and(|(_, c)| c))
    {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(phone.start, 0.0), (phone.end, 1.05)],
            RGBColor(255, 225, 200).filled(),
        )))?;
    }
    chart.draw_series(std::iter::once(Rectangle::new(
        [(clip.speech_end, 0.0), (clip.speech_end + 0.12, 1.05)],
        RGBColor(220, 220, 220).filled(),
    )))?;
    let peak = clip.envelope.iter().copied().fold(1e-9, f64::max);
    chart
        .draw_series(LineSeries::new(
            clip.times
                .iter()
                .zip(&clip.envelope)
                .map(|(&t, &e)| (t, e / peak)),
            BLACK.stroke_width(2),
        ))?
        .label("speech envelope (RMS)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            clip.times
                .iter()
                .zip(&clip.motions)
                .map(|(&t, m)| (t, f64::from(m.mouth_open))),
            RGBColor(200, 30, 30).stroke_width(2),
        ))?
        .label("mouth opening (parameter)")
        .legend(|(x, y)| {
            PathElement::new(
                vec![(x, y), (x + 20, y)],
                RGBColor(200, 30, 30).stroke_width(2),
            )
        });
    if !clip.rendered.is_empty() {
        let peak = clip.rendered.iter().copied().fold(1e-9, f64::max);
        chart
            .draw_series(LineSeries::new(
                clip.times
                    .iter()
                    .zip(&clip.rendered)
                    .map(|(&t, &r)| (t, r / peak)),
                RGBColor(40, 90, 210).stroke_width(2),
            ))?
            .label("mouth opening (rendered, pixels, normalised)")
            .legend(|(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 20, y)],
                    RGBColor(40, 90, 210).stroke_width(2),
                )
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

fn plot_xcorr(
    path: &Path,
    parameters: &[(i64, f64)],
    rendered: &[(i64, f64)],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (600, 360)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "cross-correlation: opening(t) vs envelope(t + lag)",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(-6i64..6i64, -0.2..1.0)?;
    chart
        .configure_mesh()
        .x_desc("lag (frames at 25 fps; positive = mouth leads)")
        .y_desc("correlation")
        .label_style(("sans-serif", 13))
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            parameters.iter().copied(),
            RGBColor(200, 30, 30).stroke_width(2),
        ))?
        .label("parameter")
        .legend(|(x, y)| {
            PathElement::new(
                vec![(x, y), (x + 20, y)],
                RGBColor(200, 30, 30).stroke_width(2),
            )
        });
    chart
        .draw_series(LineSeries::new(
            rendered.iter().copied(),
            RGBColor(40, 90, 210).stroke_width(2),
        ))?
        .label("rendered")
        .legend(|(x, y)| {
            PathElement::new(
                vec![(x, y), (x + 20, y)],
                RGBColor(40, 90, 210).stroke_width(2),
            )
        });
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 13))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn plot_openings(path: &Path, clips: &[&Clip]) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (1200, 300)).into_drawing_area();
    root.fill(&WHITE)?;
    let end = clips.iter().map(|c| c.times.len()).max().unwrap_or(1) as f64 / f64::from(FPS);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "mouth opening (parameter) on singing and on music without a voice",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..end, 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .label_style(("sans-serif", 13))
        .draw()?;
    for (clip, colour) in clips
        .iter()
        .zip([RGBColor(200, 30, 30), RGBColor(40, 90, 210)])
    {
        chart
            .draw_series(LineSeries::new(
                clip.times
                    .iter()
                    .zip(&clip.motions)
                    .map(|(&t, m)| (t, f64::from(m.mouth_open))),
                colour.stroke_width(2),
            ))?
            .label(format!("{} ({})", clip.kind, clip.voice))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 13))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Every 3rd frame of a clip's first 3.6 s, cropped to the face, in a grid.
fn contact_sheet(
    path: &Path,
    engine: &mut Engine,
    source: &PreparedSource,
    clip: &Clip,
) -> Result<(), String> {
    let layout = source.face.layout;
    let scale = SIZE.width as f32 / source.portrait.width.max(source.portrait.height) as f32;
    let iod = layout.inter_ocular() * scale;
    let (cx, cy) = (
        layout.mouth_centre.x * scale,
        (layout.mouth_centre.y - layout.inter_ocular() * 0.55) * scale,
    );
    let half = (iod * 1.5) as i64;
    let side = (2 * half) as u32;
    let zoom = 2u32;
    let (columns, rows) = (10u32, 3u32);
    let mut sheet = image::RgbImage::from_pixel(
        columns * side * zoom,
        rows * side * zoom,
        image::Rgb([255, 255, 255]),
    );
    for cell in 0..(columns * rows) as usize {
        let Some(motion) = clip.motions.get(cell * 3) else {
            break;
        };
        let frame = engine
            .render(&Motion::Face(*motion), source, SIZE)
            .map_err(|e| e.to_string())?;
        let image = to_rgb_image(&frame).map_err(|e| e.to_string())?;
        let (ox, oy) = (
            (cell as u32 % columns) * side * zoom,
            (cell as u32 / columns) * side * zoom,
        );
        for y in 0..side * zoom {
            for x in 0..side * zoom {
                let sx = (cx as i64 - half + i64::from(x / zoom))
                    .clamp(0, i64::from(SIZE.width) - 1) as u32;
                let sy = (cy as i64 - half + i64::from(y / zoom))
                    .clamp(0, i64::from(SIZE.height) - 1) as u32;
                sheet.put_pixel(ox + x, oy + y, *image.get_pixel(sx, sy));
            }
        }
    }
    sheet
        .save(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn run(args: &Args) -> Result<bool, String> {
    tch::manual_seed(0);
    font()?;
    let manifest = common::load_manifest(&args.data)?;
    let mut engine = Engine::new(&EngineSpec::builtin(Device::Cpu)).map_err(|e| e.to_string())?;
    let portrait = Portrait::load(&args.image).map_err(|e| e.to_string())?;
    let source = engine
        .source_preparer()
        .prepare(portrait, &SourceHints::default())
        .map_err(|e| e.to_string())?;
    let held_out: Vec<&common::Utterance> = manifest
        .utterances
        .iter()
        .filter(|u| u.split == "eval")
        .collect();
    let progress = common::Progress::new("evaluating", held_out.len());
    let mut clips = Vec::new();
    for (i, utterance) in held_out.iter().enumerate() {
        clips.push(evaluate_clip(
            &mut engine,
            &source,
            utterance,
            &args.data,
            true,
            args.seed,
        )?);
        progress.show(i + 1, &utterance.voice);
    }
    progress.finish("done");

    let speech: Vec<&Clip> = clips.iter().filter(|c| c.kind == "speech").collect();
    let model_opening =
        |c: &Clip| -> Vec<f64> { c.motions.iter().map(|m| f64::from(m.mouth_open)).collect() };
    let parameters = mouth_metrics(&speech, &model_opening);
    let rendered = mouth_metrics(&speech, &|c: &Clip| c.rendered.clone());
    let envelope = |c: &Clip| c.envelope.clone();
    // The opening the phones call for (the training target), as an articulatory
    // reference: how far the speech envelope itself is from the lips.
    let phone_opening = |c: &Clip| -> Vec<f64> {
        targets(&c.phones, &c.times, common::COARTICULATION)
            .iter()
            .map(|t| f64::from(t.shape.open))
            .collect()
    };
    let mut per_voice = Vec::new();
    for voice in &manifest.held_out_voices {
        let clips: Vec<&Clip> = speech
            .iter()
            .copied()
            .filter(|c| &c.voice == voice)
            .collect();
        if clips.is_empty() {
            continue;
        }
        let m = mouth_metrics(&clips, &model_opening);
        let inside = InsideSpeech {
            model_envelope: correlation_inside_speech(&clips, &model_opening, &envelope),
            phones_envelope: correlation_inside_speech(&clips, &phone_opening, &envelope),
            model_phones: correlation_inside_speech(&clips, &model_opening, &phone_opening),
        };
        per_voice.push((voice.clone(), m, inside));
    }

    // Blinks and head motion over all speech clips with their silent tails.
    let (mut blinks, mut blink_frames, mut frames) = (0usize, Vec::new(), 0usize);
    let (mut head_speaking, mut n_speaking, mut head_silent, mut n_silent) =
        (0.0, 0usize, 0.0, 0usize);
    for clip in &speech {
        let mut run = 0usize;
        for (i, m) in clip.motions.iter().enumerate() {
            frames += 1;
            if m.blink_left > 0.0 {
                run += 1;
            } else if run > 0 {
                blinks += 1;
                blink_frames.push(run);
                run = 0;
            }
            if i > 0 {
                let p = &clip.motions[i - 1];
                let delta = f64::from(
                    (m.yaw - p.yaw).abs() + (m.pitch - p.pitch).abs() + (m.roll - p.roll).abs(),
                );
                if clip.speaking(i) {
                    head_speaking += delta;
                    n_speaking += 1;
                } else if clip.times[i] > clip.speech_end + 0.5 {
                    head_silent += delta;
                    n_silent += 1;
                }
            }
        }
    }
    let minutes = frames as f64 / f64::from(FPS) / 60.0;
    let blinks_per_minute = blinks as f64 / minutes;
    let blink_ms: Vec<f64> = blink_frames
        .iter()
        .map(|&f| f as f64 * 1000.0 / f64::from(FPS))
        .collect();
    let head_speaking = head_speaking / n_speaking.max(1) as f64;
    let head_silent = head_silent / n_silent.max(1) as f64;

    // Singing and music.
    let sung = clips
        .iter()
        .find(|c| c.kind == "sung")
        .ok_or("no sung clip in the data")?;
    let music = clips
        .iter()
        .find(|c| c.kind == "music")
        .ok_or("no music clip in the data")?;
    let sung_voiced: Vec<f64> = sung
        .motions
        .iter()
        .zip(&sung.envelope)
        .filter(|(_, e)| **e > 0.02)
        .map(|(m, _)| f64::from(m.mouth_open))
        .collect();
    let sung_open_fraction =
        sung_voiced.iter().filter(|&&o| o >= 0.25).count() as f64 / sung_voiced.len().max(1) as f64;
    let speech_mean = speech
        .iter()
        .flat_map(|c| {
            (0..c.motions.len())
                .filter(|&i| c.speaking(i))
                .map(|i| f64::from(c.motions[i].mouth_open))
        })
        .sum::<f64>()
        / speech
            .iter()
            .map(|c| (0..c.motions.len()).filter(|&i| c.speaking(i)).count())
            .sum::<usize>()
            .max(1) as f64;
    let music_mean = music
        .motions
        .iter()
        .map(|m| f64::from(m.mouth_open))
        .sum::<f64>()
        / music.motions.len().max(1) as f64;
    let music_ratio = music_mean / speech_mean.max(1e-9);

    // ---- plots ----------------------------------------------------------------------
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let first_of = |voice: &str| speech.iter().find(|c| c.voice.contains(voice)).copied();
    let showcase = first_of("slt").unwrap_or(speech[0]);
    plot_timeline(&args.out.join("timeline-slt.png"), showcase).map_err(|e| e.to_string())?;
    let espeak = first_of("scotland").unwrap_or(speech[0]);
    plot_timeline(&args.out.join("timeline-espeak.png"), espeak).map_err(|e| e.to_string())?;
    let human = first_of("human").unwrap_or(speech[0]);
    plot_timeline(&args.out.join("timeline-human.png"), human).map_err(|e| e.to_string())?;
    plot_xcorr(
        &args.out.join("xcorr.png"),
        &parameters.curve,
        &rendered.curve,
    )
    .map_err(|e| e.to_string())?;
    plot_openings(&args.out.join("sung-and-music.png"), &[sung, music])
        .map_err(|e| e.to_string())?;
    contact_sheet(
        &args.out.join("contact-sheet.png"),
        &mut engine,
        &source,
        showcase,
    )?;

    // ---- report ---------------------------------------------------------------------
    let weights = std::fs::read("models/builtin/mouth.safetensors").ok();
    let weights_sha = weights.map(|w| {
        use sha2::Digest;
        sha2::Sha256::digest(&w)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    });
    let mut checks: Vec<(String, String, bool)> = Vec::new();
    let mut check =
        |name: &str, value: String, pass: bool| checks.push((name.to_owned(), value, pass));
    for (label, m) in [("parameter", &parameters), ("rendered", &rendered)] {
        check(
            &format!("lip-sync lag ({label}): cross-correlation peak at 0 +/- 1 frame"),
            format!("{:+} frames", m.lag),
            m.lag.abs() <= 1,
        );
        check(
            &format!("lip-sync correlation ({label}) at the peak >= 0.6"),
            format!("{:.3}", m.correlation),
            m.correlation >= 0.6,
        );
        check(
            &format!(
                "bilabial closure ({label}): /p b m/ frames in the lowest 20% of speech openings >= 80%"
            ),
            format!(
                "{:.1}% of {} frames",
                m.bilabial_fraction * 100.0,
                m.bilabial_frames
            ),
            m.bilabial_fraction >= 0.8,
        );
        check(
            &format!(
                "silence ({label}): from 120 ms after speech ends, opening < 10% of the speech median"
            ),
            format!(
                "{:.1}% of frames (worst {:.1}% of the median)",
                m.silence_fraction * 100.0,
                m.silence_worst * 100.0
            ),
            m.silence_fraction >= 1.0,
        );
    }
    check(
        "blinks per minute in 10..25",
        format!("{blinks_per_minute:.1} ({blinks} blinks in {minutes:.2} min)"),
        (10.0..=25.0).contains(&blinks_per_minute),
    );
    check(
        "blink duration 100..300 ms (lids moving)",
        format!(
            "{:.0}..{:.0} ms",
            blink_ms.iter().copied().fold(f64::MAX, f64::min),
            blink_ms.iter().copied().fold(0.0, f64::max)
        ),
        blink_ms.iter().all(|&d| (80.0..=300.0).contains(&d)),
    );
    check(
        "head motion per frame: non-zero while speaking, smaller in silence",
        format!(
            "speaking {:.5} rad, silence {:.5} rad",
            head_speaking, head_silent
        ),
        head_speaking > 0.0 && head_silent > 0.0 && head_silent < head_speaking,
    );
    check(
        "sung vowels hold the mouth open (opening >= 0.25 in voiced frames)",
        format!("{:.1}% of voiced frames", sung_open_fraction * 100.0),
        sung_open_fraction >= 0.8,
    );
    check(
        "music without a voice moves the mouth far less than speech (mean opening < 25% of speech's)",
        format!(
            "{:.1}% (music {:.3} vs speech {:.3})",
            music_ratio * 100.0,
            music_mean,
            speech_mean
        ),
        music_ratio < 0.25,
    );
    let all_pass = checks.iter().all(|c| c.2);

    let mut report = String::new();
    let _ = writeln!(report, "# Builtin engine: measured quality\n");
    let _ = writeln!(
        report,
        "Written by `make eval-builtin` (tools/builtin/eval.rs) from the data of \
         tools/builtin/make_data.py (seed {}). Held-out voices, never seen in training: {}. \
         Frames at {FPS} fps with the element's default lookahead (100 ms), each utterance \
         followed by {TAIL_SECONDS} s of silence; portrait: `{}`. `librivox-human` is a \
         person reading (LibriVox, public domain) with forced phone alignments \
         (tools/builtin/human-speech/): every other voice here is a speech synthesizer.\n",
        manifest.seed,
        manifest.held_out_voices.join(", "),
        args.image.display()
    );
    let _ = writeln!(
        report,
        "Mouth opening is measured two ways: on the **motion parameter** the renderer is \
         given, and on the **rendered frames** (the height in pixels of teeth or cavity \
         showing between the lips at the mouth's centre; for this measurement the frames \
         are rendered with the head held still, so that the measuring window stays on the \
         mouth). Speech envelope: RMS of each frame's audio.\n"
    );
    let _ = writeln!(report, "| check | measured | result |\n|---|---|---|");
    for (name, value, pass) in &checks {
        let _ = writeln!(
            report,
            "| {name} | {value} | {} |",
            if *pass { "pass" } else { "**FAIL**" }
        );
    }
    let _ = writeln!(
        report,
        "\nHeld-out material: {} speech clips ({:.1} min with tails), one sung clip ({}), one \
         music clip ({}). Speech median opening: parameter {:.3}, rendered {:.1} px.\n",
        speech.len(),
        minutes,
        sung.voice,
        music.voice,
        parameters.speech_median,
        rendered.speech_median
    );
    let _ = writeln!(
        report,
        "Per held-out voice (parameter):\n\n| voice | lag | correlation | bilabial closure | closed per phone | open vowels as closed | silence |\n|---|---|---|---|---|---|---|"
    );
    for (voice, m, _) in &per_voice {
        let _ = writeln!(
            report,
            "| {voice} | {:+} | {:.3} | {:.1}% of {} | {} | {:.1}% of {} | {:.1}% |",
            m.lag,
            m.correlation,
            m.bilabial_fraction * 100.0,
            m.bilabial_frames,
            per_phone(m),
            m.vowels_closed_fraction * 100.0,
            m.vowel_frames,
            m.silence_fraction * 100.0
        );
    }
    let _ = writeln!(
        report,
        "\nThe correlation check above runs over whole clips, each with its silent tail, where \
         the mouth and the envelope are both at rest; much of the correlation comes from \
         there. Inside speech alone (from the first phone to the last) loudness is a \
         weak stand-in for the lips (a loud /m/ is made with closed lips, a quiet /h/ with \
         open ones): the opening the phones themselves call for (the training target, from \
         the phone timings) correlates with the envelope no better than the model does. \
         The last column compares the model with that target directly.\n\n\
         | voice | mouth opening vs envelope | phones' target opening vs envelope | mouth opening vs phones' target opening |\n|---|---|---|---|"
    );
    for (voice, _, inside) in &per_voice {
        let _ = writeln!(
            report,
            "| {voice} | {:.3} | {:.3} | {:.3} |",
            inside.model_envelope, inside.phones_envelope, inside.model_phones
        );
    }
    let _ = writeln!(report);
    // The face as an independent judge (the face mesh) reads it on rendered frames.
    let mut judge = controls::Judge::new(&source, SIZE)?;
    let judged: Vec<(Vec<FaceMotion>, Vec<bool>)> = speech
        .iter()
        .take(JUDGED_CLIPS)
        .map(|c| {
            (
                c.motions.clone(),
                (0..c.motions.len()).map(|i| c.speaking(i)).collect(),
            )
        })
        .collect();
    let _ = writeln!(report, "## The face as the face mesh reads it\n");
    let _ = writeln!(report, "{}", controls::head_angles(&mut judge, &judged)?);
    let _ = writeln!(report, "{}", controls::effects(&mut judge)?);
    let _ = writeln!(report, "## Plots\n");
    let _ = writeln!(
        report,
        "Speech envelope (black), mouth opening parameter (red) and rendered opening (blue); bilabial phones shaded orange, the 120 ms after speech ends grey.\n"
    );
    let _ = writeln!(
        report,
        "![held-out festival SLT voice](timeline-slt.png)\n\n![held-out espeak-ng voice](timeline-espeak.png)\n\n![human read speech](timeline-human.png)\n"
    );
    let _ = writeln!(
        report,
        "![cross-correlation](xcorr.png)\n\n![singing and music](sung-and-music.png)\n"
    );
    let _ = writeln!(
        report,
        "Every third frame (120 ms apart) of the first held-out SLT clip:\n\n![contact sheet](contact-sheet.png)\n"
    );
    let _ = writeln!(
        report,
        "Mouth model weights: `models/builtin/mouth.safetensors`, sha256 `{}`.",
        weights_sha.unwrap_or_else(|| "unavailable".into())
    );
    let path = args.out.join("report.md");
    std::fs::write(&path, report).map_err(|e| format!("{}: {e}", path.display()))?;
    for (name, value, pass) in &checks {
        eprintln!("{} {name}: {value}", if *pass { "pass" } else { "FAIL" });
    }
    for (voice, m, inside) in &per_voice {
        eprintln!(
            "  {voice}: lag {:+} r {:.3} bilabial {:.1}% ({}) open vowels closed {:.1}% silence {:.1}%; \
             inside speech r(model, envelope) {:.3} r(phones, envelope) {:.3} r(model, phones) {:.3}",
            m.lag,
            m.correlation,
            m.bilabial_fraction * 100.0,
            per_phone(m),
            m.vowels_closed_fraction * 100.0,
            m.silence_fraction * 100.0,
            inside.model_envelope,
            inside.phones_envelope,
            inside.model_phones
        );
    }
    eprintln!("wrote {}", path.display());
    Ok(all_pass)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("vasafacegen-eval-builtin: some thresholds do not hold (see the report)");
            ExitCode::FAILURE
        }
        Err(message) => {
            eprintln!("vasafacegen-eval-builtin: {message}");
            ExitCode::FAILURE
        }
    }
}
