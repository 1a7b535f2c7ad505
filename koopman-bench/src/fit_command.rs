//! `koopman fit` and `koopman predict`: a deep Koopman-layered model (paper 003) on a user's
//! time series, and predictions from the saved model.
//!
//! `fit` reads a series ([`koopman_layers::series::Series`]: `.npy` trajectories x time x
//! dimension, or CSV rows `trajectory, x_1, ..., x_d`), normalises it onto the torus, builds
//! `N = {-r..r}^d x {-h..h} \ {0}` and the offsets, refuses a model above the memory limit
//! ([`koopman_layers::memory`]) before allocating, trains window-wise with AdamW and writes into
//! `--out`, published together: `model.safetensors`, `normalization.json`, `predictions.csv` (the
//! first against the last state of every trajectory, in data units), `eigenvalues.csv` and
//! `eigenvalues.svg` (the layers' eigenvalues against the unit circle, when the dense
//! exponentials fit), then last `run.json` with the settings and a checksum of the model
//! and the normalisation.
//!
//! `predict MODEL_DIR STATES` rebuilds that model from `run.json`, refuses a folder whose model
//! and normalisation do not match its `run.json` (another run's file, a partial copy), and maps
//! each initial state (`.npy` or CSV, one state per row) through the whole horizon.

use crate::report::write_json;
use crate::{BenchError, Result};
use koopman_core::dmd::{snapshots_from_csv, snapshots_from_npy, StateLayout};
use koopman_core::io::{write_atomic, Fnv1a, Staging};
use koopman_core::IndexSet;
use koopman_layers::analysis::layer_eigenvalues;
use koopman_layers::series::Series;
use koopman_layers::train::{rmse, Loss, SnapshotData, TrainConfig, Trainer};
use koopman_layers::{DeepKoopmanLayeredBuilder, TorusNormalization};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest `|N|` for which `fit` writes the layers' eigenvalues (dense `|N| x |N|` exponentials).
const EIGEN_MAX_N: usize = 3000;

/// The arguments of `koopman fit`.
#[derive(Clone, Debug, clap::Args)]
pub struct FitArgs {
    /// The series: .npy (trajectories x time x dimension) or CSV (trajectory, x_1, ..., x_d).
    pub input: PathBuf,
    /// Output folder.
    #[arg(long, default_value = "koopman_fit_out")]
    pub out: PathBuf,
    /// Layers J (each maps one window of time steps).
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    /// Time steps per layer; default: the series split evenly over the layers.
    #[arg(long)]
    pub window: Option<usize>,
    /// AdamW steps.
    #[arg(long, default_value_t = 500)]
    pub steps: usize,
    /// Radius r of N = {-r..r}^d x {-h..h} \ {0} (|N| grows as (2r + 1)^d).
    #[arg(long, default_value_t = 3)]
    pub radius: i64,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Mini-batch of trajectories per step.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Memory limit in GB for the model and a training step (default: what the machine has
    /// available).
    #[arg(long)]
    pub mem_limit: Option<f64>,
    /// Seed of the initial coefficients and the mini-batches.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The arguments of `koopman predict`.
#[derive(Clone, Debug, clap::Args)]
pub struct PredictArgs {
    /// The folder `koopman fit` wrote.
    pub model: PathBuf,
    /// Initial states, one per row: .npy (2-D) or CSV.
    pub states: PathBuf,
    /// Where to write the predictions (CSV: sample, pred_0, ...).
    #[arg(long, default_value = "predictions.csv")]
    pub out: PathBuf,
}

/// `run.json`: what `predict` needs to rebuild the model, and the checksums that tie the model
/// and the normalisation to this run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FitManifest {
    /// The series file.
    pub input: String,
    /// State dimension d.
    pub dim: usize,
    /// Layers J.
    pub layers: usize,
    /// Time steps per layer.
    pub window: usize,
    /// AdamW steps.
    pub steps: usize,
    /// Radius of N.
    pub radius: i64,
    /// Learning rate.
    pub lr: f64,
    /// Mini-batch.
    pub batch: usize,
    /// Seed.
    pub seed: u64,
    /// `|N|`.
    pub index_set_size: usize,
    /// Training loss at the first and the last step.
    pub loss: (f64, f64),
    /// FNV-1a checksum of `model.safetensors`.
    pub model_checksum: String,
    /// FNV-1a checksum of `normalization.json`.
    pub normalization_checksum: String,
    /// The files this run wrote.
    pub files: Vec<String>,
}

/// `N = {-r..r}^d x {-h..h} \ {0}` (`h = max(d / 2, 1)` for the output coordinate) and the
/// offsets `{-s..s}^d x {-1..1} \ {0}` (`s = min(r, 2)` for `d <= 2`, else 1).
fn model_sets(dim: usize, radius: i64) -> Result<(Arc<IndexSet>, Arc<IndexSet>)> {
    if radius < 1 {
        return Err(BenchError::Usage(format!(
            "--radius must be >= 1, got {radius}"
        )));
    }
    let y = (dim / 2).max(1) as i64;
    let mut n_ranges = vec![(-radius, radius); dim];
    n_ranges.push((-y, y));
    let m_radius = if dim <= 2 { radius.min(2) } else { 1 };
    let mut m_ranges = vec![(-m_radius, m_radius); dim];
    m_ranges.push((-1, 1));
    Ok((
        Arc::new(IndexSet::product_of_ranges(&n_ranges)?.without_origin()?),
        Arc::new(IndexSet::product_of_ranges(&m_ranges)?.without_origin()?),
    ))
}

fn builder(
    dim: usize,
    layers: usize,
    radius: i64,
) -> Result<(DeepKoopmanLayeredBuilder, Arc<IndexSet>)> {
    let (n, m) = model_sets(dim, radius)?;
    let builder = DeepKoopmanLayeredBuilder::new(dim, n.clone(), vec![m])
        .layers(layers)
        .conjugate_symmetric(true);
    Ok((builder, n))
}

fn checksum(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| koopman_core::CoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(format!("{:016x}", Fnv1a::default().update(&bytes).value()))
}

/// `koopman fit`; returns the manifest it wrote.
pub fn fit(args: &FitArgs) -> Result<FitManifest> {
    if args.layers == 0 {
        return Err(BenchError::Usage("--layers must be at least 1".into()));
    }
    if args.steps == 0 || args.batch == 0 || !(args.lr.is_finite() && args.lr > 0.0) {
        return Err(BenchError::Usage(
            "--steps and --batch must be at least 1 and --lr finite and > 0".into(),
        ));
    }
    let series = Series::read(&args.input)?;
    let window = args
        .window
        .unwrap_or(((series.n_time.saturating_sub(1)) / args.layers).max(1));
    let norm = TorusNormalization::fit(&series.values, series.dim, std::f64::consts::FRAC_PI_2)?;
    let z = norm.forward(&series.values)?;
    let data = SnapshotData::from_trajectories(
        &z,
        series.n_traj,
        series.n_time,
        series.dim,
        window,
        args.layers,
    )?;
    let d = series.dim;
    let (mut builder, n) = builder(d, args.layers, args.radius)?;
    if let Some(gb) = args.mem_limit {
        if !(gb.is_finite() && gb > 0.0) {
            return Err(BenchError::Usage(format!(
                "--mem-limit must be > 0 GB, got {gb}"
            )));
        }
        builder = builder.memory_limit((gb * 1e9) as u64);
    }
    let estimate = builder.memory_estimate(candle_core::DType::F64);
    eprintln!(
        "{} trajectories x {} steps x {d}; J = {}, window {window}, |N| = {}; estimated memory \
         {:.2} GB",
        series.n_traj,
        series.n_time,
        args.layers,
        n.len(),
        estimate.total_bytes() as f64 / 1e9
    );
    let staging = Staging::new(&args.out);
    let config = TrainConfig {
        loss: if args.layers > 1 {
            Loss::WindowWise
        } else {
            Loss::EndToEnd
        },
        steps: args.steps,
        lr: args.lr,
        batch_size: Some(args.batch),
        checkpoint: Some((staging.dir().join("model.safetensors"), 100)),
        seed: args.seed,
        ..Default::default()
    };
    // Built (or refused by its memory estimate) before the output folder is made; a refusal
    // names the flags that change it.
    let mut trainer = Trainer::new(builder, &config).map_err(|e| match e {
        koopman_layers::LayersError::MemoryLimit {
            needed,
            limit,
            n,
            layers,
            ..
        } => BenchError::Usage(format!(
            "the model needs about {:.1} GB (|N| = {n} from --radius {}, J = {layers} from \
             --layers), above the limit of {:.1} GB ({}): lower --radius or --layers, or set \
             --mem-limit",
            needed as f64 / 1e9,
            args.radius,
            limit as f64 / 1e9,
            if args.mem_limit.is_some() {
                "--mem-limit"
            } else {
                "the memory available"
            }
        )),
        other => other.into(),
    })?;
    staging.path("model.safetensors")?;
    let report = trainer.train(&data, &config)?;
    let loss = (
        report.losses.first().copied().unwrap_or(f64::NAN),
        report.losses.last().copied().unwrap_or(f64::NAN),
    );
    let snaps = data.snapshots();
    let (first, last) = (&snaps[0], &snaps[snaps.len() - 1]);
    eprintln!(
        "trained {} steps in {:.1} s, loss {:.3e} -> {:.3e}, end-to-end RMSE (torus units) {:.4e}",
        args.steps,
        report.seconds,
        loss.0,
        loss.1,
        rmse(&trainer.model, first, last)?
    );
    if n.len() <= EIGEN_MAX_N {
        let sets = layer_eigenvalues(&trainer.model, EIGEN_MAX_N)?;
        let mut csv = String::from("layer,re,im,abs\n");
        for (j, values) in sets.iter().enumerate() {
            for z in values {
                csv.push_str(&format!("{},{},{},{}\n", j + 1, z.re, z.im, z.norm()));
            }
        }
        write_atomic(staging.path("eigenvalues.csv")?, csv.as_bytes())?;
        let labels: Vec<String> = (1..=sets.len()).map(|j| format!("layer {j}")).collect();
        let named: Vec<(&str, &[koopman_core::c64])> = labels
            .iter()
            .map(String::as_str)
            .zip(sets.iter().map(Vec::as_slice))
            .collect();
        let svg = koopman_layers::analysis::unit_circle_svg(
            "eigenvalues of exp(L_j), the fitted layers",
            &named,
        );
        write_atomic(staging.path("eigenvalues.svg")?, svg.as_bytes())?;
    } else {
        eprintln!(
            "eigenvalues.csv not written: |N| = {} is above {EIGEN_MAX_N}, the size of the dense \
             exponentials it needs (a smaller --radius lowers |N|)",
            n.len()
        );
    }
    let pred = norm.inverse(&trainer.model.predict(first)?)?;
    let truth = norm.inverse(last)?;
    let mut csv = String::from("sample");
    for k in 0..d {
        csv.push_str(&format!(",true_{k}"));
    }
    for k in 0..d {
        csv.push_str(&format!(",pred_{k}"));
    }
    csv.push('\n');
    for (i, (t, p)) in truth.chunks(d).zip(pred.chunks(d)).enumerate() {
        let cells: Vec<String> = t.iter().chain(p).map(|v| v.to_string()).collect();
        csv.push_str(&format!("{i},{}\n", cells.join(",")));
    }
    write_atomic(staging.path("predictions.csv")?, csv.as_bytes())?;
    write_json(staging.path("normalization.json")?, &norm)?;
    let files = staging.publish()?;
    // A previous run's eigenvalues do not belong to this model.
    for name in ["eigenvalues.csv", "eigenvalues.svg"] {
        let stale = args.out.join(name);
        if !files.iter().any(|f| f == name) && stale.exists() {
            std::fs::remove_file(&stale).map_err(|source| koopman_core::CoreError::Io {
                path: stale.clone(),
                source,
            })?;
        }
    }
    let manifest = FitManifest {
        input: args.input.display().to_string(),
        dim: d,
        layers: args.layers,
        window,
        steps: args.steps,
        radius: args.radius,
        lr: args.lr,
        batch: args.batch,
        seed: args.seed,
        index_set_size: n.len(),
        loss,
        model_checksum: checksum(&args.out.join("model.safetensors"))?,
        normalization_checksum: checksum(&args.out.join("normalization.json"))?,
        files,
    };
    write_json(args.out.join("run.json"), &manifest)?;
    Ok(manifest)
}

/// `koopman predict`; returns the number of states predicted.
pub fn predict(args: &PredictArgs) -> Result<usize> {
    let dir = &args.model;
    let run_json = dir.join("run.json");
    let text = std::fs::read(&run_json).map_err(|e| {
        BenchError::Usage(format!(
            "{}: not a `koopman fit` folder ({e})",
            dir.display()
        ))
    })?;
    let manifest: FitManifest = serde_json::from_slice(&text)
        .map_err(|e| BenchError::Usage(format!("{}: unreadable run.json ({e})", dir.display())))?;
    for (file, expected) in [
        ("model.safetensors", &manifest.model_checksum),
        ("normalization.json", &manifest.normalization_checksum),
    ] {
        let path = dir.join(file);
        if !path.is_file() || &checksum(&path)? != expected {
            return Err(BenchError::Usage(format!(
                "{}: {file} does not belong to the run that run.json describes (a file of \
                 another run, or a partial copy): fit again or copy the whole folder",
                dir.display()
            )));
        }
    }
    let norm: TorusNormalization =
        serde_json::from_slice(&std::fs::read(dir.join("normalization.json")).map_err(
            |source| koopman_core::CoreError::Io {
                path: dir.join("normalization.json"),
                source,
            },
        )?)?;
    let layout = StateLayout::StatePerRow;
    let states = match args
        .states
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
    {
        Some(e) if e == "npy" => snapshots_from_npy(&args.states, layout)?,
        Some(e) if e == "csv" => snapshots_from_csv(&args.states, layout)?,
        _ => {
            return Err(BenchError::Usage(format!(
                "{}: expected a .npy or .csv file of states",
                args.states.display()
            )))
        }
    };
    if states.nrows() != manifest.dim {
        return Err(BenchError::Usage(format!(
            "{}: states of dimension {}, the model was fitted to dimension {}",
            args.states.display(),
            states.nrows(),
            manifest.dim
        )));
    }
    let (builder, _) = builder(manifest.dim, manifest.layers, manifest.radius)?;
    // Only the model is needed: its coefficients come from the checkpoint.
    let config = TrainConfig {
        progress: false,
        ..Default::default()
    };
    let mut trainer = Trainer::new(builder, &config)?;
    trainer.load(&dir.join("model.safetensors"))?;
    let x0: Vec<f64> = (0..states.ncols())
        .flat_map(|j| (0..states.nrows()).map(move |i| (i, j)))
        .map(|(i, j)| states[(i, j)])
        .collect();
    let pred = norm.inverse(&trainer.model.predict(&norm.forward(&x0)?)?)?;
    let mut csv = String::from("sample");
    for k in 0..manifest.dim {
        csv.push_str(&format!(",pred_{k}"));
    }
    csv.push('\n');
    for (i, p) in pred.chunks(manifest.dim).enumerate() {
        let cells: Vec<String> = p.iter().map(|v| v.to_string()).collect();
        csv.push_str(&format!("{i},{}\n", cells.join(",")));
    }
    write_atomic(&args.out, csv.as_bytes())?;
    Ok(states.ncols())
}
