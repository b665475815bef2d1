//! Trains the builtin engine's mouth model on the data of make_data.py and writes
//! models/builtin/mouth.safetensors and its manifest. Deterministic for a seed (data
//! order, augmentation and initialisation all come from it).
//!
//! vasafacegen-train-builtin --data data/builtin --out models/builtin [--seed 1] [--epochs 10]

#[path = "common.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use common::visemes;
use gstvasafacegen::core::random::SplitMix64 as Rng;
use gstvasafacegen::models::mouth::features::{HOP, MEL_BANDS, POWER_FLOOR, log_mel};
use gstvasafacegen::models::mouth::{
    CONTEXT, CONTEXT_AHEAD, CONTEXT_BEHIND, FORMAT, MouthNet, OUTPUTS,
};
use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Reduction, Tensor, nn};

#[derive(Parser, Debug)]
#[command(about = "Train the builtin engine's mouth model")]
struct Args {
    /// Directory written by tools/builtin/make_data.py.
    #[arg(long)]
    data: PathBuf,
    /// Where mouth.safetensors and manifest.json go.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Use every n-th 10 ms frame of the training audio per epoch (a different offset
    /// each epoch), to keep training time down without losing material.
    #[arg(long, default_value_t = 2)]
    stride: usize,
}

const BATCH: usize = 256;
const LEARNING_RATE: f64 = 2e-3;
/// Extra loss weight of frames inside bilabials: their closure is short and matters.
const BILABIAL_WEIGHT: f64 = 3.0;
/// Dropout before the dense layers: the training voices are few, the model must not
/// learn them by heart.
const DROPOUT: f64 = 0.2;

/// Log-mel rows of all utterances, each padded with silence on both sides so that every
/// frame has its full context; and the training examples pointing into them.
struct Dataset {
    mel: Tensor,
    /// Row of each example's centre frame in `mel`.
    centres: Vec<i64>,
    /// open, width, round, voice per example.
    targets: Tensor,
    weights: Tensor,
    minutes: f64,
}

fn build(
    data: &std::path::Path,
    utterances: &[&common::Utterance],
    label: &str,
) -> Result<Dataset, String> {
    let progress = common::Progress::new(label, utterances.len());
    let floor = POWER_FLOOR.ln();
    let mut rows = Vec::new();
    let mut centres = Vec::new();
    let mut targets = Vec::new();
    let mut weights = Vec::new();
    let mut offset = 0i64;
    let mut seconds = 0.0;
    for (i, utterance) in utterances.iter().enumerate() {
        let samples = common::read_wav(&common::utterance_path(data, utterance))?;
        seconds += samples.len() as f64 / 16_000.0;
        let frames = samples.len() / HOP + 1;
        let frame_centres: Vec<i64> = (0..frames as i64).map(|k| k * HOP as i64).collect();
        let mel = log_mel(&samples, &frame_centres, Device::Cpu);
        let before = Tensor::full(
            [CONTEXT_BEHIND as i64, MEL_BANDS as i64],
            floor,
            (Kind::Float, Device::Cpu),
        );
        let after = Tensor::full(
            [CONTEXT_AHEAD as i64, MEL_BANDS as i64],
            floor,
            (Kind::Float, Device::Cpu),
        );
        rows.push(Tensor::cat(&[before, mel, after], 0));
        let phones = utterance.phones();
        let times: Vec<f64> = frame_centres.iter().map(|&c| c as f64 / 16_000.0).collect();
        for (k, target) in visemes::targets(&phones, &times, common::COARTICULATION)
            .into_iter()
            .enumerate()
        {
            centres.push(offset + CONTEXT_BEHIND as i64 + k as i64);
            let shape = target.shape;
            targets.extend_from_slice(&[
                shape.open,
                shape.width,
                shape.round,
                target.voice,
                target.closure,
            ]);
            weights.push(if target.closure > 0.5 {
                BILABIAL_WEIGHT as f32
            } else {
                1.0
            });
        }
        offset += (CONTEXT_BEHIND + frames + CONTEXT_AHEAD) as i64;
        progress.show(i + 1, &utterance.voice);
    }
    progress.finish(&format!("{:.1} minutes", seconds / 60.0));
    let n = centres.len() as i64;
    Ok(Dataset {
        mel: Tensor::cat(&rows, 0),
        centres,
        targets: Tensor::from_slice(&targets).view([n, OUTPUTS]),
        weights: Tensor::from_slice(&weights),
        minutes: seconds / 60.0,
    })
}

/// Mel power per band of white noise at 0 dBFS, to add noise at a known level.
fn white_noise_power(rng: &mut Rng) -> Tensor {
    let noise: Vec<f32> = (0..16_000)
        .map(|_| {
            // Uniform noise scaled to unit RMS.
            ((rng.uniform() * 2.0 - 1.0) * 3f64.sqrt()) as f32
        })
        .collect();
    let centres: Vec<i64> = (1..90).map(|k| k * HOP as i64).collect();
    log_mel(&noise, &centres, Device::Cpu)
        .exp()
        .mean_dim(0, false, Kind::Float)
}

/// The network's input for `examples`: context windows, availability (random lookahead
/// when `augment`), and augmented levels and noise.
fn batch(
    data: &Dataset,
    examples: &[usize],
    rng: &mut Rng,
    noise_unit: &Tensor,
    augment: bool,
) -> (Tensor, Tensor, Tensor, Tensor) {
    let n = examples.len() as i64;
    let mut rows = Vec::with_capacity(examples.len() * CONTEXT);
    let mut available = Vec::with_capacity(examples.len() * CONTEXT);
    let mut gain = Vec::with_capacity(examples.len());
    let mut noise_level = Vec::with_capacity(examples.len());
    let mut tilt = Vec::with_capacity(examples.len());
    for &e in examples {
        let centre = data.centres[e];
        for k in 0..CONTEXT as i64 {
            rows.push(centre + k - CONTEXT_BEHIND as i64);
        }
        // Lookahead in frames: often the full 100 ms (the default latency), otherwise
        // anything down to none, so that every latency setting is covered.
        let ahead = if !augment || rng.uniform() < 0.4 {
            CONTEXT_AHEAD
        } else {
            rng.below(CONTEXT_AHEAD + 1)
        };
        for k in 0..CONTEXT {
            available.push(if k <= CONTEXT_BEHIND + ahead {
                1f32
            } else {
                0.0
            });
        }
        if augment {
            gain.push(rng.range(-24.0, 6.0) as f32);
            noise_level.push(if rng.uniform() < 0.85 {
                rng.range(-80.0, -38.0)
            } else {
                -200.0
            } as f32);
            tilt.push(rng.range(0.0, 1.2) as f32);
        } else {
            gain.push(0.0);
            noise_level.push(-200.0);
            tilt.push(0.0);
        }
    }
    let index = Tensor::from_slice(&rows);
    let mut mel = data
        .mel
        .index_select(0, &index)
        .view([n, CONTEXT as i64, MEL_BANDS as i64]);
    if augment {
        let ln10 = std::f64::consts::LN_10;
        let gain = Tensor::from_slice(&gain).view([n, 1, 1]) * (ln10 / 10.0);
        // Noise power per band: white, tilted towards low frequencies by up to 1/f^1.2.
        let band = Tensor::arange(MEL_BANDS as i64, (Kind::Float, Device::Cpu)) + 1.0;
        let tilt = Tensor::from_slice(&tilt).view([n, 1, 1]);
        let shape = (band.view([1, 1, -1]) / 10.0).log() * (-tilt);
        let level = Tensor::from_slice(&noise_level).view([n, 1, 1]) * (ln10 / 10.0);
        let noise = (shape + level).exp() * noise_unit.view([1, 1, -1]);
        mel = ((mel + gain).exp() + noise).log();
        mel = spectral_augment(&mel, rng);
    }
    let available = Tensor::from_slice(&available).view([n, CONTEXT as i64]);
    let index = Tensor::from_slice(&examples.iter().map(|&e| e as i64).collect::<Vec<_>>());
    (
        mel,
        available,
        data.targets.index_select(0, &index),
        data.weights.index_select(0, &index),
    )
}

/// Speaker and channel variety beyond the voices at hand, on log-mel batches: vocal tract
/// length (the band axis stretched by 0.88..1.12), spectral tilt (+-6 dB across the
/// bands) and a masked band group (SpecAugment), so the model leans on what all voices
/// share.
fn spectral_augment(mel: &Tensor, rng: &mut Rng) -> Tensor {
    let (n, frames, bands) = mel.size3().expect("(batch, frames, bands)");
    let mut positions = Vec::with_capacity((n * bands) as usize);
    let mut tilts = Vec::with_capacity((n * bands) as usize);
    let mut masks = Vec::with_capacity((n * bands) as usize);
    for _ in 0..n {
        let warp = rng.range(0.88, 1.12);
        let tilt = rng.range(-1.5, 1.5);
        let (mask_start, mask_width) = if rng.uniform() < 0.5 {
            (rng.below(bands as usize), 1 + rng.below(4))
        } else {
            (0, 0)
        };
        for b in 0..bands as usize {
            positions.push(((b as f64 * warp).min((bands - 1) as f64)) as f32);
            tilts.push((tilt * (b as f64 / (bands - 1) as f64 - 0.5)) as f32);
            masks.push(if b >= mask_start && b < mask_start + mask_width {
                0f32
            } else {
                1.0
            });
        }
    }
    let positions = Tensor::from_slice(&positions).view([n, 1, bands]);
    let low = positions.floor().to_kind(Kind::Int64).clamp(0, bands - 1);
    let high = (&low + 1).clamp(0, bands - 1);
    let fraction = &positions - low.to_kind(Kind::Float);
    let gather = |index: &Tensor| mel.gather(2, &index.expand([n, frames, bands], false), false);
    let warped = gather(&low) * (1.0f64 - &fraction) + gather(&high) * &fraction;
    let tilted = warped + Tensor::from_slice(&tilts).view([n, 1, bands]);
    // A masked band reads as the quietest level of its frame.
    let mask = Tensor::from_slice(&masks).view([n, 1, bands]);
    let floor = tilted.amin([2].as_slice(), true);
    &tilted * &mask + floor * (1.0f64 - &mask)
}

/// Weighted losses: (total, [open MSE, width MSE, round MSE, voice BCE, closure BCE]).
fn loss(raw: &Tensor, targets: &Tensor, weights: &Tensor) -> (Tensor, [f64; 5]) {
    let open = raw.select(1, 0).sigmoid();
    let width = raw.select(1, 1).tanh();
    let round = raw.select(1, 2).sigmoid();
    let weighted = |prediction: &Tensor, target: Tensor| {
        ((prediction - target).square() * weights).sum(Kind::Float) / weights.sum(Kind::Float)
    };
    let l_open = weighted(&open, targets.select(1, 0));
    let l_width = weighted(&width, targets.select(1, 1));
    let l_round = weighted(&round, targets.select(1, 2));
    let l_voice = raw.select(1, 3).binary_cross_entropy_with_logits::<Tensor>(
        &targets.select(1, 3),
        None,
        None,
        Reduction::Mean,
    );
    let l_closure = raw.select(1, 4).binary_cross_entropy_with_logits::<Tensor>(
        &targets.select(1, 4),
        None,
        None,
        Reduction::Mean,
    );
    let total = &l_open * 2.0 + &l_width + &l_round + &l_voice * 0.5 + &l_closure;
    let parts = [
        l_open.double_value(&[]),
        l_width.double_value(&[]),
        l_round.double_value(&[]),
        l_voice.double_value(&[]),
        l_closure.double_value(&[]),
    ];
    (total, parts)
}

/// Held-out losses: [open MSE, width MSE, round MSE, voice BCE, closure BCE, open r].
fn evaluate(net: &MouthNet, data: &Dataset, rng: &mut Rng, noise_unit: &Tensor) -> [f64; 6] {
    let _no_grad = tch::no_grad_guard();
    let all: Vec<usize> = (0..data.centres.len()).collect();
    let mut sums = [0.0; 5];
    let mut opens = Vec::new();
    let mut truth = Vec::new();
    let mut batches = 0.0;
    for chunk in all.chunks(2048) {
        let (mel, available, targets, weights) = batch(data, chunk, rng, noise_unit, false);
        let raw = net.forward(&mel, &available);
        let (_, parts) = loss(&raw, &targets, &weights);
        for (s, p) in sums.iter_mut().zip(parts) {
            *s += p;
        }
        batches += 1.0;
        opens.extend(Vec::<f32>::try_from(raw.select(1, 0).sigmoid()).unwrap_or_default());
        truth.extend(Vec::<f32>::try_from(targets.select(1, 0)).unwrap_or_default());
    }
    let correlation = pearson(&opens, &truth);
    [
        sums[0] / batches,
        sums[1] / batches,
        sums[2] / batches,
        sums[3] / batches,
        sums[4] / batches,
        correlation,
    ]
}

fn pearson(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    let (ma, mb) = (
        a.iter().map(|&x| f64::from(x)).sum::<f64>() / n,
        b.iter().map(|&x| f64::from(x)).sum::<f64>() / n,
    );
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (f64::from(x) - ma, f64::from(y) - mb);
        cov += dx * dy;
        va += dx * dx;
        vb += dy * dy;
    }
    cov / (va * vb).sqrt().max(1e-12)
}

fn run(args: &Args) -> Result<(), String> {
    let started = std::time::Instant::now();
    tch::manual_seed(args.seed as i64);
    let mut rng = Rng(args.seed);
    let manifest = common::load_manifest(&args.data)?;
    let train: Vec<&common::Utterance> = manifest
        .utterances
        .iter()
        .filter(|u| u.split == "train")
        .collect();
    let held_out: Vec<&common::Utterance> = manifest
        .utterances
        .iter()
        .filter(|u| u.split == "eval" && u.kind == "speech")
        .collect();
    if train.is_empty() || held_out.is_empty() {
        return Err(format!(
            "{}: no training or held-out utterances",
            args.data.display()
        ));
    }
    let train_set = build(&args.data, &train, "features (train)   ")?;
    let held_out_set = build(&args.data, &held_out, "features (held out)")?;
    let noise_unit = white_noise_power(&mut rng);

    let vs = nn::VarStore::new(Device::Cpu);
    let mut net = MouthNet::new(&vs.root());
    {
        // Normalise with the statistics of the training audio's real frames.
        let rows = Tensor::from_slice(&train_set.centres);
        let frames = train_set.mel.index_select(0, &rows);
        net.set_normalisation(
            &frames.mean_dim(0, false, Kind::Float),
            &frames.std_dim(0, true, false).clamp_min(1e-3),
        );
    }
    let mut optimizer = nn::Adam::default()
        .build(&vs, LEARNING_RATE)
        .map_err(|e| e.to_string())?;
    let per_epoch = train_set.centres.len().div_ceil(args.stride);
    let steps_per_epoch = per_epoch.div_ceil(BATCH);
    let total_steps = steps_per_epoch * args.epochs;
    let progress = common::Progress::new("training           ", total_steps);
    let mut history = Vec::new();
    let mut step = 0;
    for epoch in 0..args.epochs {
        let phase = epoch % args.stride;
        let mut order: Vec<usize> = (phase..train_set.centres.len())
            .step_by(args.stride)
            .collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let mut running = 0.0;
        for (b, chunk) in order.chunks(BATCH).enumerate() {
            // Cosine decay to 5% of the initial rate.
            let t = step as f64 / total_steps as f64;
            optimizer.set_lr(
                LEARNING_RATE * (0.05 + 0.95 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())),
            );
            let (mel, available, targets, weights) =
                batch(&train_set, chunk, &mut rng, &noise_unit, true);
            let raw = net.forward_with_dropout(&mel, &available, Some(DROPOUT));
            let (total, _) = loss(&raw, &targets, &weights);
            optimizer.backward_step(&total);
            running += total.double_value(&[]);
            step += 1;
            if b % 20 == 0 {
                progress.show(
                    step,
                    &format!(
                        "epoch {}/{} loss {:.4}",
                        epoch + 1,
                        args.epochs,
                        running / (b + 1) as f64
                    ),
                );
            }
        }
        let held = evaluate(&net, &held_out_set, &mut rng, &noise_unit);
        history.push((epoch + 1, running / steps_per_epoch as f64, held));
        progress.show(
            step,
            &format!(
                "epoch {}/{} held-out open r={:.3}",
                epoch + 1,
                args.epochs,
                held[5]
            ),
        );
    }
    progress.finish("done");
    let held = history.last().expect("at least one epoch").2;
    eprintln!(
        "held-out voices: open MSE {:.4} (r = {:.3}), width MSE {:.4}, round MSE {:.4}, voice BCE {:.4}, closure BCE {:.4}",
        held[0], held[5], held[1], held[2], held[3], held[4]
    );

    // ---- write the weights and the manifest ------------------------------------------
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let weights_path = args.out.join("mouth.safetensors");
    let commit = common::commit();
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let metadata = [
        ("commit", commit.clone()),
        ("epochs", args.epochs.to_string()),
        ("format", FORMAT.to_owned()),
        ("seed", args.seed.to_string()),
    ];
    let file = safetensors_bytes(&named, &metadata);
    // Read back through the parser the engine uses, so a bad file never leaves here.
    safetensors::SafeTensors::deserialize(&file)
        .map_err(|e| format!("writing {}: {e}", weights_path.display()))?;
    std::fs::write(&weights_path, &file).map_err(|e| format!("{}: {e}", weights_path.display()))?;
    let bytes = std::fs::read(&weights_path).map_err(|e| e.to_string())?;
    let sha256 = sha256_hex(&bytes);

    let mut voices: BTreeMap<String, usize> = BTreeMap::new();
    for u in &train {
        *voices
            .entry(format!("{} {}", u.synth, u.voice))
            .or_default() += 1;
    }
    let manifest_json = serde_json::json!({
        "name": "builtin mouth model",
        "file": "mouth.safetensors",
        "format": FORMAT,
        "bytes": bytes.len(),
        "sha256": sha256,
        "parameters": vs.trainable_variables().iter().map(|t| t.numel()).sum::<usize>(),
        "licence": "MIT: trained here, from scratch, on speech synthesised by the programs named under data",
        "training_command": format!(
            "make train-builtin  (= python3 tools/builtin/make_data.py data/builtin --seed {} && vasafacegen-train-builtin --data data/builtin --out models/builtin --seed {} --epochs {} --stride {})",
            manifest.seed, args.seed, args.epochs, args.stride
        ),
        "commit": commit,
        "data": {
            "generator": "tools/builtin/make_data.py",
            "data_seed": manifest.seed,
            "training_minutes": (train_set.minutes * 10.0).round() / 10.0,
            "held_out_minutes": (held_out_set.minutes * 10.0).round() / 10.0,
            "held_out_voices": manifest.held_out_voices,
            "training_sources": voices,
            "text": "generated sentences (make_data.py, seeded); singing and music synthesised there",
            "synthesizers": "espeak-ng (GPL-3.0+; Debian's voices) and festival with the voices kal_diphone, ked_diphone (English diphone; Festvox/LGPL-2.1+), upc_ca_ona_hts (Catalan HTS; LGPL-2.1+), lp_diphone and pc_diphone (Italian diphone, female and male; IFM, GPL-2.0+), run as programs to make audio; none of their code or data is stored here",
        },
        "training": {
            "epochs": args.epochs,
            "batch": BATCH,
            "learning_rate": LEARNING_RATE,
            "coarticulation_s": common::COARTICULATION,
            "seconds": started.elapsed().as_secs(),
        },
        "metrics_held_out": {
            "open_mse": held[0],
            "open_correlation": held[5],
            "width_mse": held[1],
            "round_mse": held[2],
            "voice_bce": held[3],
            "closure_bce": held[4],
            "per_epoch": history.iter().map(|(e, train_loss, h)| serde_json::json!({
                "epoch": e, "train_loss": train_loss, "held_out_open_correlation": h[5], "held_out_open_mse": h[0]
            })).collect::<Vec<_>>(),
        },
    });
    let manifest_path = args.out.join("manifest.json");
    std::fs::write(
        &manifest_path,
        serde_json::to_string_pretty(&manifest_json).expect("json") + "\n",
    )
    .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    eprintln!(
        "wrote {} ({} bytes, sha256 {sha256}) and {} in {:.1} min",
        weights_path.display(),
        bytes.len(),
        manifest_path.display(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

/// A safetensors file with its header's keys in sorted order, so that the same weights
/// always give the same bytes (the safetensors crate writes metadata in hash order).
fn safetensors_bytes(named: &[(String, Tensor)], metadata: &[(&str, String)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".to_owned(),
        serde_json::Value::Object(
            metadata
                .iter()
                .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v.clone())))
                .collect(),
        ),
    );
    let mut data = Vec::new();
    for (name, tensor) in named {
        let values =
            Vec::<f32>::try_from(tensor.detach().contiguous().view([-1])).expect("float tensor");
        let start = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": tensor.size(), "data_offsets": [start, data.len()]}),
        );
    }
    // serde_json's map keeps keys sorted; pad the header to 8 bytes as the format allows.
    let mut json = serde_json::to_string(&serde_json::Value::Object(header)).expect("json");
    while !json.len().is_multiple_of(8) {
        json.push(' ');
    }
    let mut file = (json.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(json.as_bytes());
    file.extend_from_slice(&data);
    file
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("vasafacegen-train-builtin: {message}");
            ExitCode::FAILURE
        }
    }
}
