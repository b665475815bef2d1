// Each tool uses part of this module.
#![allow(dead_code)]

//! What the builtin engine's training and evaluation tools share: the data set written by
//! make_data.py, WAV reading, the commit being built.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use self::visemes::Phone;

/// Phone timings to mouth-shape targets (training and evaluation only).
#[path = "visemes.rs"]
pub mod visemes;

/// Gaussian blend of neighbouring phones' shapes (coarticulation) in the mouth targets,
/// seconds: what training aims at and what evaluation compares with.
pub const COARTICULATION: f64 = 0.03;

#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub seed: u64,
    pub rate: u32,
    pub held_out_voices: Vec<String>,
    pub utterances: Vec<Utterance>,
}

#[derive(Debug, Deserialize, Clone)]
pub struct Utterance {
    pub name: String,
    pub split: String,
    /// speech, sung or music.
    pub kind: String,
    pub synth: String,
    pub voice: String,
    pub wav: String,
    /// [name, start, end] in seconds; absent for festival's singing (no timing).
    pub phones: Option<Vec<(String, f64, f64)>>,
}

impl Utterance {
    pub fn phones(&self) -> Vec<Phone> {
        self.phones
            .iter()
            .flatten()
            .map(|(name, start, end)| Phone {
                name: name.clone(),
                start: *start,
                end: *end,
            })
            .collect()
    }
}

pub fn load_manifest(dir: &Path) -> Result<Manifest, String> {
    let path = dir.join("manifest.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read {}: {e} (run make train-builtin, which makes the data)",
            path.display()
        )
    })?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a data manifest: {e}", path.display()))?;
    if manifest.rate != 16_000 {
        return Err(format!(
            "{}: data at {} Hz, expected 16000",
            path.display(),
            manifest.rate
        ));
    }
    Ok(manifest)
}

/// 16 kHz mono 16-bit PCM samples as floats in [-1, 1].
pub fn read_wav(path: &Path) -> Result<Vec<f32>, String> {
    let reader = hound::WavReader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let spec = reader.spec();
    if spec.sample_rate != 16_000 || spec.channels != 1 || spec.bits_per_sample != 16 {
        return Err(format!(
            "{}: expected 16 kHz mono 16-bit, got {spec:?}",
            path.display()
        ));
    }
    reader
        .into_samples::<i16>()
        .map(|s| {
            s.map(|s| f32::from(s) / 32768.0)
                .map_err(|e| format!("{}: {e}", path.display()))
        })
        .collect()
}

pub fn utterance_path(data: &Path, utterance: &Utterance) -> PathBuf {
    data.join(&utterance.wav)
}

/// The commit being built, for manifests: "+changes" when the working tree differs
/// from it, "unknown" outside a git checkout.
pub fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(head)
            if git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty()) =>
        {
            format!("{head}+changes")
        }
        Some(head) => head,
        None => "unknown".to_owned(),
    }
}

/// A one-line progress bar with ETA on stderr.
pub struct Progress {
    started: std::time::Instant,
    total: usize,
    label: String,
}

impl Progress {
    pub fn new(label: &str, total: usize) -> Self {
        Self {
            started: std::time::Instant::now(),
            total,
            label: label.to_owned(),
        }
    }

    pub fn show(&self, done: usize, detail: &str) {
        use std::io::Write;
        let fraction = done as f64 / self.total.max(1) as f64;
        let elapsed = self.started.elapsed().as_secs_f64();
        let eta = if fraction > 0.0 {
            elapsed * (1.0 - fraction) / fraction
        } else {
            0.0
        };
        let filled = (fraction * 30.0).round() as usize;
        eprint!(
            "\r{} [{}{}] {:>3.0}% ETA {:>3}:{:02} {detail}\x1b[K",
            self.label,
            "#".repeat(filled),
            ".".repeat(30 - filled.min(30)),
            fraction * 100.0,
            eta as u64 / 60,
            eta as u64 % 60
        );
        let _ = std::io::stderr().flush();
    }

    pub fn finish(&self, detail: &str) {
        self.show(self.total, detail);
        eprintln!();
    }
}
