//! Fits a deep Koopman-layered model to a user's time series and writes eigenvalues and
//! predictions.
//!
//! ```text
//! cargo run --release -p koopman-layers --example fit_layered -- [INPUT] [--out DIR]
//!     [--layers J] [--window W] [--steps S] [--radius R] [--lr LR] [--batch B] [--mem-limit GB]
//! ```
//!
//! The model's memory is estimated from |N|, |M| and J before anything is allocated; a model
//! above `--mem-limit` (default: the memory the machine has available) is refused with the
//! estimate, naming `--radius` and `--layers`.
//!
//! `INPUT` is a `.npy` array (`<f8`) of shape trajectories x time x dimension, or a CSV file whose
//! rows are `trajectory, x_1, ..., x_d` (rows of one trajectory in time order, every trajectory of
//! the same length; non-numeric header lines are skipped). Without `INPUT` a seeded damped forced
//! oscillator data set is used. Writes to `DIR` (default `fit_layered_out`): `eigenvalues.csv`
//! (layer, re, im, |lambda|), `predictions.csv` (sample, then true and predicted end states in
//! data units), `model.safetensors` (checkpoint) and `normalization.json`, published together
//! when the run ends (an interrupted run leaves the previous run's files), and last `run.json`
//! (the run's parameters and the files it wrote).

use koopman_core::io::{read_npy, write_atomic, NpyData, Staging};
use koopman_core::IndexSet;
use koopman_layers::analysis::layer_eigenvalues;
use koopman_layers::systems::{damped_forced_trajectories, DampedForced};
use koopman_layers::train::{rmse, Loss, SnapshotData, TrainConfig, Trainer};
use koopman_layers::{DeepKoopmanLayeredBuilder, LayersError, Result, TorusNormalization};
use std::path::{Path, PathBuf};
use std::sync::Arc;

struct Series {
    values: Vec<f64>,
    n_traj: usize,
    n_time: usize,
    dim: usize,
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> LayersError {
    LayersError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn read_series(path: &Path) -> Result<Series> {
    if path.extension().is_some_and(|e| e == "npy") {
        let (shape, data) = read_npy(path)?;
        if shape.len() != 3 {
            return Err(LayersError::ShapeMismatch(format!(
                "expected a 3-D array (trajectories x time x dimension), got shape {shape:?}"
            )));
        }
        let values = match data {
            NpyData::F64(v) => v,
            NpyData::I64(v) => v.into_iter().map(|x| x as f64).collect(),
        };
        return Ok(Series {
            values,
            n_traj: shape[0],
            n_time: shape[1],
            dim: shape[2],
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    let mut trajectories: Vec<(String, Vec<Vec<f64>>)> = Vec::new();
    for (line_no, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() < 2 || fields.iter().all(|f| f.is_empty()) {
            continue;
        }
        let parsed: std::result::Result<Vec<f64>, _> =
            fields[1..].iter().map(|f| f.parse::<f64>()).collect();
        let Ok(row) = parsed else {
            if line_no == 0 {
                continue; // header
            }
            return Err(io_error(path, format!("line {}: not numeric", line_no + 1)));
        };
        match trajectories.last_mut() {
            Some((id, rows)) if id == fields[0] => rows.push(row),
            _ => trajectories.push((fields[0].to_string(), vec![row])),
        }
    }
    let Some((_, first)) = trajectories.first() else {
        return Err(io_error(path, "no data rows"));
    };
    let (n_time, dim) = (first.len(), first[0].len());
    let mut values = Vec::new();
    for (id, rows) in &trajectories {
        if rows.len() != n_time || rows.iter().any(|r| r.len() != dim) {
            return Err(LayersError::ShapeMismatch(format!(
                "trajectory {id} has {} rows (expected {n_time}) or a row of the wrong width",
                rows.len()
            )));
        }
        values.extend(rows.iter().flatten());
    }
    Ok(Series {
        values,
        n_traj: trajectories.len(),
        n_time,
        dim,
    })
}

fn main() {
    koopman_core::parallel::pin_candle_threads();
    if let Err(e) = run() {
        eprintln!("error: {e}");
        if matches!(e, LayersError::MemoryLimit { .. }) {
            eprintln!(
                "(the flags: --radius for |N|, --layers for J, --mem-limit GB for the limit)"
            );
        }
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut input: Option<PathBuf> = None;
    let mut out = PathBuf::from("fit_layered_out");
    let (mut layers, mut window, mut steps, mut radius, mut lr, mut batch) =
        (2usize, 0usize, 500usize, 3i64, 1e-3f64, 500usize);
    let mut mem_limit: Option<f64> = None;
    while let Some(a) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| LayersError::InvalidArgument(format!("{name} needs a value")))
        };
        let parse_err = |name: &str| LayersError::InvalidArgument(format!("bad value for {name}"));
        match a.as_str() {
            "--out" => out = PathBuf::from(value("--out")?),
            "--layers" => {
                layers = value("--layers")?
                    .parse()
                    .map_err(|_| parse_err("--layers"))?
            }
            "--window" => {
                window = value("--window")?
                    .parse()
                    .map_err(|_| parse_err("--window"))?
            }
            "--steps" => {
                steps = value("--steps")?
                    .parse()
                    .map_err(|_| parse_err("--steps"))?
            }
            "--radius" => {
                radius = value("--radius")?
                    .parse()
                    .map_err(|_| parse_err("--radius"))?
            }
            "--lr" => lr = value("--lr")?.parse().map_err(|_| parse_err("--lr"))?,
            "--mem-limit" => {
                let gb: f64 = value("--mem-limit")?
                    .parse()
                    .map_err(|_| parse_err("--mem-limit"))?;
                if !(gb.is_finite() && gb > 0.0) {
                    return Err(parse_err("--mem-limit"));
                }
                mem_limit = Some(gb)
            }
            "--batch" => {
                batch = value("--batch")?
                    .parse()
                    .map_err(|_| parse_err("--batch"))?
            }
            _ if a.starts_with("--") => {
                return Err(LayersError::InvalidArgument(format!("unknown option {a}")))
            }
            _ => input = Some(PathBuf::from(a)),
        }
    }
    let series = match &input {
        Some(p) => read_series(p)?,
        None => {
            println!("no input given: using a seeded damped forced oscillator data set");
            Series {
                values: damped_forced_trajectories(&DampedForced::default(), 50, 61, 0),
                n_traj: 50,
                n_time: 61,
                dim: 2,
            }
        }
    };
    if layers == 0 {
        return Err(LayersError::InvalidArgument(
            "--layers must be at least 1".into(),
        ));
    }
    if window == 0 {
        window = ((series.n_time - 1) / layers).max(1);
    }
    let norm = TorusNormalization::fit(&series.values, series.dim, std::f64::consts::FRAC_PI_2)?;
    let z = norm.forward(&series.values)?;
    let data = SnapshotData::from_trajectories(
        &z,
        series.n_traj,
        series.n_time,
        series.dim,
        window,
        layers,
    )?;
    let d = series.dim;
    let y = (d / 2).max(1) as i64;
    let mut n_ranges = vec![(-radius, radius); d];
    n_ranges.push((-y, y));
    let m_radius = if d <= 2 { radius.min(2) } else { 1 };
    let mut m_ranges = vec![(-m_radius, m_radius); d];
    m_ranges.push((-1, 1));
    let n = Arc::new(IndexSet::product_of_ranges(&n_ranges)?.without_origin()?);
    let m = Arc::new(IndexSet::product_of_ranges(&m_ranges)?.without_origin()?);
    println!(
        "{} trajectories x {} steps x {d}; J = {layers}, window {window}, |N| = {}, |M| = {}",
        series.n_traj,
        series.n_time,
        n.len(),
        m.len()
    );
    let mut builder = DeepKoopmanLayeredBuilder::new(d, n.clone(), vec![m])
        .layers(layers)
        .conjugate_symmetric(true);
    if let Some(gb) = mem_limit {
        builder = builder.memory_limit((gb * 1e9) as u64);
    }
    let estimate = builder.memory_estimate(candle_core::DType::F64);
    println!(
        "estimated memory: {:.2} GB (model {:.2} GB, training step {:.2} GB)",
        estimate.total_bytes() as f64 / 1e9,
        estimate.model_bytes() as f64 / 1e9,
        estimate.step_bytes() as f64 / 1e9
    );
    // Every file of this run is staged and published together, the manifest last: an
    // interrupted run leaves the previous run's set as it was.
    let staging = Staging::new(&out);
    let config = TrainConfig {
        loss: if layers > 1 {
            Loss::WindowWise
        } else {
            Loss::EndToEnd
        },
        steps,
        lr,
        batch_size: Some(batch),
        checkpoint: Some((staging.dir().join("model.safetensors"), 100)),
        ..Default::default()
    };
    // The model is built (or refused by its memory estimate) before the output folder is made.
    let mut trainer = Trainer::new(builder, &config)?;
    // Creates the output and staging folders, where the checkpoints go.
    staging.path("model.safetensors")?;
    let report = trainer.train(&data, &config)?;
    println!(
        "trained {steps} steps in {:.1} s, loss {:.3e} -> {:.3e}",
        report.seconds,
        report.losses.first().copied().unwrap_or(f64::NAN),
        report.losses.last().copied().unwrap_or(f64::NAN)
    );
    let snaps = data.snapshots();
    let (first, last) = (&snaps[0], &snaps[snaps.len() - 1]);
    println!(
        "end-to-end RMSE (torus units): {:.4e}",
        rmse(&trainer.model, first, last)?
    );
    // The layers' eigenvalues need the dense |N| x |N| exponentials: written up to this size,
    // above it said so (never a header without rows).
    const EIGEN_MAX_N: usize = 3000;
    if n.len() <= EIGEN_MAX_N {
        let mut eig_csv = String::from("layer,re,im,abs\n");
        for (j, values) in layer_eigenvalues(&trainer.model, EIGEN_MAX_N)?
            .iter()
            .enumerate()
        {
            for z in values {
                eig_csv.push_str(&format!("{},{},{},{}\n", j + 1, z.re, z.im, z.norm()));
            }
        }
        write_atomic(staging.path("eigenvalues.csv")?, eig_csv.as_bytes())?;
    } else {
        println!(
            "eigenvalues.csv not written: |N| = {} is above {EIGEN_MAX_N}, the size of the dense \
             exponentials it needs (a smaller --radius lowers |N|)",
            n.len()
        );
    }
    let pred = norm.inverse(&trainer.model.predict(first)?)?;
    let truth = norm.inverse(last)?;
    let mut pred_csv = String::from("sample");
    for k in 0..d {
        pred_csv.push_str(&format!(",true_{k}"));
    }
    for k in 0..d {
        pred_csv.push_str(&format!(",pred_{k}"));
    }
    pred_csv.push('\n');
    for (i, (t, p)) in truth.chunks(d).zip(pred.chunks(d)).enumerate() {
        let cells: Vec<String> = t.iter().chain(p).map(|v| v.to_string()).collect();
        pred_csv.push_str(&format!("{i},{}\n", cells.join(",")));
    }
    write_atomic(staging.path("predictions.csv")?, pred_csv.as_bytes())?;
    let json = serde_json::to_vec_pretty(&norm)
        .map_err(|e| LayersError::InvalidArgument(format!("json: {e}")))?;
    write_atomic(staging.path("normalization.json")?, &json)?;
    let files = staging.publish()?;
    // A previous run's eigenvalues do not belong to this model.
    if !files.iter().any(|f| f == "eigenvalues.csv") {
        let stale = out.join("eigenvalues.csv");
        if stale.exists() {
            std::fs::remove_file(&stale).map_err(|e| io_error(&stale, e))?;
        }
    }
    let manifest = serde_json::json!({
        "input": input.as_ref().map(|p| p.display().to_string()),
        "layers": layers,
        "window": window,
        "steps": steps,
        "radius": radius,
        "lr": lr,
        "batch": batch,
        "index_set_size": n.len(),
        "files": files,
    });
    let manifest = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| LayersError::InvalidArgument(format!("json: {e}")))?;
    write_atomic(out.join("run.json"), &manifest)?;
    println!("wrote {}", out.display());
    Ok(())
}
