//! `koopman-bench perf`: timed runs whose ratios are measured in one process.
//!
//! The Krylov exponential action on Toeplitz generators of the paper's shape (d = 3,
//! `N = {-r..r}^3 \ {0}`, `M = {-2..2}^2 x {-1..1} \ {0}`) against the dense exponential of the
//! same operator (while the dense matrix fits the `max_dense` limit), with per-matvec cost to show
//! linear growth in `|N|`.

use crate::device::{device_name, timed};
use crate::report::sci;
use crate::Result;
use candle_core::{DType, Device};
use koopman_core::io::{write_npy, NpyData};
use koopman_core::{
    expv, expv_dense, ComplexTensor, ExpvConfig, IndexSet, LinearOperator, ToeplitzGenerator,
};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// Settings of the performance run.
#[derive(Clone, Debug, Serialize)]
pub struct PerfConfig {
    /// Radii `r` of `N = {-r..r}^3 \ {0}` (|N| = (2r+1)^3 - 1).
    pub radii: Vec<i64>,
    /// Largest `|N|` for which the dense exponential is also timed.
    pub max_dense: usize,
    /// `expv` tolerance (relative to `||v||`).
    pub tol: f64,
    /// Standard deviation of the generator coefficients.
    pub coeff_scale: f64,
    /// Repetitions of the single-matvec timing (the median is reported).
    pub matvec_repeats: usize,
    /// Seed of coefficients and start vectors.
    pub seed: u64,
}

impl Default for PerfConfig {
    fn default() -> Self {
        Self {
            radii: vec![3, 5, 7, 10, 15],
            max_dense: 1500,
            tol: 1e-8,
            coeff_scale: 0.01,
            matvec_repeats: 5,
            seed: 0,
        }
    }
}

/// One size's measurements.
#[derive(Clone, Debug, Serialize)]
pub struct ExpvTiming {
    /// `|N|`.
    pub n: usize,
    /// `|M|`.
    pub m: usize,
    /// Tolerance used.
    pub tol: f64,
    /// Operator applications by `expv`.
    pub matvecs: usize,
    /// Accepted sub-steps.
    pub substeps: usize,
    /// Seconds of one `expv`.
    pub expv_seconds: f64,
    /// `expv`'s own error estimate (relative).
    pub error_estimate: f64,
    /// Seconds of the dense path (materialise, exponentiate, multiply), where run.
    pub dense_seconds: Option<f64>,
    /// `||w_krylov - w_dense|| / ||v||`, where the dense path ran.
    pub error_vs_dense: Option<f64>,
    /// `dense_seconds / expv_seconds`.
    pub speedup: Option<f64>,
    /// Median seconds of one operator application.
    pub matvec_seconds: f64,
    /// `matvec_seconds / (|N| |M|)` in nanoseconds: flat when the cost is linear in `|N|`.
    pub matvec_ns_per_entry: f64,
}

/// The whole performance run.
#[derive(Clone, Debug, Serialize)]
pub struct PerfReport {
    /// Device name.
    pub device: String,
    /// Settings.
    pub config: PerfConfig,
    /// One entry per size.
    pub expv_vs_dense: Vec<ExpvTiming>,
}

/// The paper's offset set `M = {-2..2}^2 x {-1..1} \ {0}` (74 offsets).
pub fn paper_offsets() -> Result<Arc<IndexSet>> {
    Ok(Arc::new(
        IndexSet::product_of_ranges(&[(-2, 2), (-2, 2), (-1, 1)])?.without_origin()?,
    ))
}

/// A generator of the paper's shape over `N = {-r..r}^3 \ {0}` with random coefficients (t = 1).
pub fn paper_generator(
    radius: i64,
    coeff_scale: f64,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<ToeplitzGenerator> {
    let n = Arc::new(IndexSet::cube(3, radius)?.without_origin()?);
    Ok(ToeplitzGenerator::random(
        n,
        vec![paper_offsets()?],
        coeff_scale,
        1.0,
        seed,
        dtype,
        device,
    )?)
}

/// Times `expv` (and the dense path when `with_dense`) on one generator.
pub fn measure(
    op: &ToeplitzGenerator,
    config: &PerfConfig,
    device: &Device,
    with_dense: bool,
) -> Result<ExpvTiming> {
    let n = op.dim();
    let m = op.offsets()[0].len();
    let v = ComplexTensor::randn(
        n,
        1.0 / (n as f64).sqrt(),
        config.seed + 1,
        op.dtype(),
        device,
    )?;
    let expv_config = ExpvConfig {
        tol: config.tol,
        ..Default::default()
    };
    let ((w, report), expv_seconds) = timed(device, || Ok(expv(op, 1.0, &v, &expv_config)?))?;
    let mut samples = Vec::with_capacity(config.matvec_repeats.max(1));
    for _ in 0..config.matvec_repeats.max(1) {
        samples.push(timed(device, || Ok(op.apply(&v)?))?.1);
    }
    samples.sort_by(f64::total_cmp);
    let matvec_seconds = samples[samples.len() / 2];
    let (dense_seconds, error_vs_dense) = if with_dense {
        let (exact, secs) = timed(device, || Ok(expv_dense(op, 1.0, &v)?))?;
        let err = w.sub(&exact)?.norm_f64()? / v.norm_f64()?;
        (Some(secs), Some(err))
    } else {
        (None, None)
    };
    Ok(ExpvTiming {
        n,
        m,
        tol: config.tol,
        matvecs: report.matvecs,
        substeps: report.substeps,
        expv_seconds,
        error_estimate: report.error_estimate,
        dense_seconds,
        error_vs_dense,
        speedup: dense_seconds.map(|d| d / expv_seconds),
        matvec_seconds,
        matvec_ns_per_entry: matvec_seconds * 1e9 / (n * m) as f64,
    })
}

/// Runs every size of `config`, calling `tick` after each.
pub fn run_perf(
    config: &PerfConfig,
    device: &Device,
    mut tick: impl FnMut(&ExpvTiming),
) -> Result<PerfReport> {
    let mut entries = Vec::new();
    for &radius in &config.radii {
        let op = paper_generator(radius, config.coeff_scale, config.seed, DType::F64, device)?;
        let with_dense = op.dim() <= config.max_dense;
        let timing = measure(&op, config, device, with_dense)?;
        tick(&timing);
        entries.push(timing);
    }
    Ok(PerfReport {
        device: device_name(device).to_string(),
        config: config.clone(),
        expv_vs_dense: entries,
    })
}

/// The report as a printable table.
pub fn format_table(report: &PerfReport) -> String {
    let mut out = format!(
        "expv vs dense exponential on {} (f64, tol {:e}, d = 3, |M| = 74)\n",
        report.device, report.config.tol
    );
    out.push_str(&format!(
        "{:>7} {:>8} {:>8} {:>11} {:>11} {:>9} {:>11} {:>11} {:>13}\n",
        "|N|",
        "matvecs",
        "substeps",
        "expv [s]",
        "dense [s]",
        "ratio",
        "err/dense",
        "matvec [s]",
        "ns/(|N||M|)"
    ));
    for e in &report.expv_vs_dense {
        let opt = |x: Option<f64>, f: fn(f64) -> String| x.map_or("-".to_string(), f);
        out.push_str(&format!(
            "{:>7} {:>8} {:>8} {:>11} {:>11} {:>9} {:>11} {:>11} {:>13.2}\n",
            e.n,
            e.matvecs,
            e.substeps,
            sci(e.expv_seconds),
            opt(e.dense_seconds, sci),
            opt(e.speedup, |x| format!("{x:.1}x")),
            opt(e.error_vs_dense, sci),
            sci(e.matvec_seconds),
            e.matvec_ns_per_entry
        ));
    }
    out
}

/// Writes one generator, a start vector and the Krylov result as `.npy` files for the optional
/// SciPy comparison script (`koopman-bench/peers/scipy_expm_multiply.py`).
pub fn export_for_peer(
    dir: &Path,
    radius: i64,
    config: &PerfConfig,
    device: &Device,
) -> Result<()> {
    let op = paper_generator(radius, config.coeff_scale, config.seed, DType::F64, device)?;
    let n = op.dim();
    let offsets = &op.offsets()[0];
    let table = op.index_set().shift_table(offsets, 1)?;
    let prefix = dir.join(format!("n{n}"));
    let save_f64 = |name: &str, shape: &[usize], data: Vec<f64>| -> Result<()> {
        Ok(write_npy(
            prefix.with_file_name(format!("n{n}_{name}.npy")),
            shape,
            &NpyData::F64(data),
        )?)
    };
    write_npy(
        prefix.with_file_name(format!("n{n}_gather.npy")),
        &[n, offsets.len()],
        &NpyData::I64(table.into_iter().map(i64::from).collect()),
    )?;
    let points: Vec<f64> = op.index_set().iter().flatten().map(|&x| x as f64).collect();
    save_f64("points", &[n, 3], points)?;
    for (k, group) in op.coeffs().iter().enumerate() {
        let a = group[0].to_c64_vec()?;
        save_f64(
            &format!("coeff{k}_re"),
            &[a.len()],
            a.iter().map(|z| z.re).collect(),
        )?;
        save_f64(
            &format!("coeff{k}_im"),
            &[a.len()],
            a.iter().map(|z| z.im).collect(),
        )?;
    }
    let v = ComplexTensor::randn(
        n,
        1.0 / (n as f64).sqrt(),
        config.seed + 1,
        DType::F64,
        device,
    )?;
    let expv_config = ExpvConfig {
        tol: config.tol,
        ..Default::default()
    };
    let ((w, _), secs) = timed(device, || Ok(expv(&op, 1.0, &v, &expv_config)?))?;
    for (name, z) in [("v", &v), ("w", &w)] {
        let vals = z.to_c64_vec()?;
        save_f64(
            &format!("{name}_re"),
            &[n],
            vals.iter().map(|c| c.re).collect(),
        )?;
        save_f64(
            &format!("{name}_im"),
            &[n],
            vals.iter().map(|c| c.im).collect(),
        )?;
    }
    save_f64("expv_seconds", &[1], vec![secs])?;
    Ok(())
}
