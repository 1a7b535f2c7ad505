//! `koopman-bench perf`: timed runs whose ratios are measured in one process.
//!
//! The Krylov exponential action on Toeplitz generators of the paper's shape (d = 3,
//! `N = {-r..r}^3 \ {0}`, `M = {-2..2}^2 x {-1..1} \ {0}`) against the dense exponential of the
//! same operator (while the dense matrix fits the `max_dense` limit), with per-matvec cost to show
//! linear growth in `|N|`. Also the DMD fits, one training step of the deep Koopman-layered
//! model, and Koopman stepping of the NN DE solver ([`run_stepping_perf`]: optimizer against
//! the fit and the three evolutions, f32 against f64 batched evolution).

mod dmd;
mod layered_step;
mod stepping;

pub use dmd::*;
pub use layered_step::*;
pub use stepping::*;

use crate::device::{device_name, timed};
use crate::report::sci;
use crate::Result;
use candle_core::{DType, Device};
use koopman_core::io::{write_npy, NpyData};
use koopman_core::{
    expv, expv_dense, expv_taylor, ComplexTensor, ExpvConfig, IndexSet, LinearOperator,
    TaylorConfig, TaylorPath, ToeplitzGenerator,
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
    /// Median seconds of one `expv` (after one warm-up call).
    pub expv_seconds: f64,
    /// Whether `expv` built its bases by the fused Arnoldi process.
    pub expv_fused: bool,
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
    /// Median seconds of one Taylor action ([`koopman_core::taylor`], automatic path, same
    /// tolerance), after one warm-up call.
    pub taylor_seconds: f64,
    /// The Taylor action's path and operator applications.
    pub taylor_path: TaylorPath,
    /// Operator applications of the Taylor plan.
    pub taylor_matvecs: usize,
    /// `||w_taylor - w_expv|| / ||v||`.
    pub taylor_vs_expv: f64,
    /// Median seconds of the same Taylor plan on the dense path (materialised generator, gemm),
    /// where the dense path is timed.
    pub taylor_dense_seconds: Option<f64>,
}

/// The whole performance run.
#[derive(Clone, Debug, Serialize)]
pub struct PerfReport {
    /// Device name.
    pub device: String,
    /// candle's CPU thread count for the run ([`koopman_core::parallel::pin_candle_threads`]).
    pub cpu_threads: usize,
    /// Settings.
    pub config: PerfConfig,
    /// One entry per size.
    pub expv_vs_dense: Vec<ExpvTiming>,
    /// DMD fit timings (filled by [`run_dmd_perf`] when requested).
    pub dmd: Option<DmdTiming>,
    /// One training step of the deep Koopman-layered model (filled by [`run_layered_step_perf`]).
    pub layered_step: Option<LayeredStepTiming>,
    /// The same expv sizes timed on the CPU in the same process, when the run is on a GPU
    /// (printed side by side by [`format_table`]).
    pub cpu_reference: Option<Vec<ExpvTiming>>,
    /// Koopman stepping of the NN DE solver (filled by [`run_stepping_perf`]).
    pub stepping: Option<SteppingTiming>,
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
    let ((w, report), expv_seconds) =
        median_timed(device, 3, || Ok(expv(op, 1.0, &v, &expv_config)?))?;
    let taylor_config = TaylorConfig {
        tol: config.tol,
        ..Default::default()
    };
    let ((w_taylor, taylor_report), taylor_seconds) =
        median_timed(device, 3, || Ok(expv_taylor(op, 1.0, &v, &taylor_config)?))?;
    let taylor_vs_expv = w_taylor.sub(&w)?.norm_f64()? / v.norm_f64()?;
    let (_, matvec_seconds) = median_timed(device, config.matvec_repeats, || Ok(op.apply(&v)?))?;
    let taylor_dense_seconds = if with_dense {
        let dense_config = TaylorConfig {
            path: TaylorPath::Dense,
            ..taylor_config.clone()
        };
        Some(median_timed(device, 3, || Ok(expv_taylor(op, 1.0, &v, &dense_config)?))?.1)
    } else {
        None
    };
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
        expv_fused: report.fused,
        error_estimate: report.error_estimate,
        dense_seconds,
        error_vs_dense,
        speedup: dense_seconds.map(|d| d / expv_seconds),
        matvec_seconds,
        matvec_ns_per_entry: matvec_seconds * 1e9 / (n * m) as f64,
        taylor_seconds,
        taylor_path: taylor_report.path,
        taylor_matvecs: taylor_report.matvecs,
        taylor_vs_expv,
        taylor_dense_seconds,
    })
}

/// Runs `f` once to warm up (kernel loading, allocator pools), then `repeats` more times (at
/// least one), each timed with [`timed`]; returns the last result and the median seconds.
pub fn median_timed<T>(
    device: &Device,
    repeats: usize,
    mut f: impl FnMut() -> Result<T>,
) -> Result<(T, f64)> {
    let (mut out, _) = timed(device, &mut f)?;
    let mut samples = Vec::with_capacity(repeats.max(1));
    for _ in 0..repeats.max(1) {
        let (o, secs) = timed(device, &mut f)?;
        out = o;
        samples.push(secs);
    }
    samples.sort_by(f64::total_cmp);
    Ok((out, samples[samples.len() / 2]))
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
        cpu_threads: koopman_core::parallel::pin_candle_threads(),
        config: config.clone(),
        expv_vs_dense: entries,
        dmd: None,
        layered_step: None,
        cpu_reference: None,
        stepping: None,
    })
}

/// CPU against the report's device, size by size (expv, Taylor action and one matvec; ratios > 1:
/// the device is faster).
pub fn format_device_comparison(report: &PerfReport, cpu: &[ExpvTiming]) -> String {
    let mut out = format!("CPU vs {} (same process, f64)\n", report.device);
    out.push_str(&format!(
        "{:>7} {:>10} {:>10} {:>8} {:>10} {:>10} {:>8} {:>10} {:>10} {:>8}\n",
        "|N|",
        "cpu expv",
        "dev expv",
        "ratio",
        "cpu taylor",
        "dev taylor",
        "ratio",
        "cpu matvec",
        "dev matvec",
        "ratio"
    ));
    for e in &report.expv_vs_dense {
        let Some(c) = cpu.iter().find(|c| c.n == e.n) else {
            continue;
        };
        out.push_str(&format!(
            "{:>7} {:>10} {:>10} {:>7.1}x {:>10} {:>10} {:>7.1}x {:>10} {:>10} {:>7.1}x\n",
            e.n,
            sci(c.expv_seconds),
            sci(e.expv_seconds),
            c.expv_seconds / e.expv_seconds,
            sci(c.taylor_seconds),
            sci(e.taylor_seconds),
            c.taylor_seconds / e.taylor_seconds,
            sci(c.matvec_seconds),
            sci(e.matvec_seconds),
            c.matvec_seconds / e.matvec_seconds
        ));
    }
    out
}

/// The report as a printable table.
pub fn format_table(report: &PerfReport) -> String {
    let mut out = format!(
        "expv vs dense exponential on {} ({} CPU threads; f64, tol {:e}, d = 3, |M| = 74)\n",
        report.device, report.cpu_threads, report.config.tol
    );
    out.push_str(&format!(
        "{:>7} {:>7} {:>8} {:>8} {:>11} {:>11} {:>9} {:>11} {:>11} {:>13}\n",
        "|N|",
        "basis",
        "matvecs",
        "substeps",
        "expv [s]",
        "dense [s]",
        "ratio",
        "err/dense",
        "matvec [s]",
        "ns/(|N||M|)"
    ));
    let opt = |x: Option<f64>, f: fn(f64) -> String| x.map_or("-".to_string(), f);
    for e in &report.expv_vs_dense {
        out.push_str(&format!(
            "{:>7} {:>7} {:>8} {:>8} {:>11} {:>11} {:>9} {:>11} {:>11} {:>13.2}\n",
            e.n,
            if e.expv_fused { "fused" } else { "steps" },
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
    out.push_str(&format!(
        "Taylor action (a-priori plan, no host reads inside) vs expv, same tol:\n{:>7} {:>9} {:>8} {:>11} {:>11} {:>9} {:>12} {:>12}\n",
        "|N|", "path", "matvecs", "taylor [s]", "expv [s]", "expv/tay", "|w_t-w_e|/|v|", "dense path"
    ));
    for e in &report.expv_vs_dense {
        out.push_str(&format!(
            "{:>7} {:>9} {:>8} {:>11} {:>11} {:>8.1}x {:>12} {:>12}\n",
            e.n,
            format!("{:?}", e.taylor_path).to_lowercase(),
            e.taylor_matvecs,
            sci(e.taylor_seconds),
            sci(e.expv_seconds),
            e.expv_seconds / e.taylor_seconds,
            sci(e.taylor_vs_expv),
            opt(e.taylor_dense_seconds, sci)
        ));
    }
    if let Some(cpu) = &report.cpu_reference {
        out.push_str(&format_device_comparison(report, cpu));
    }
    if let Some(d) = &report.dmd {
        out.push_str(&format_dmd_table(d));
    }
    if let Some(l) = &report.layered_step {
        out.push_str(&format_layered_step(l));
    }
    if let Some(st) = &report.stepping {
        out.push_str(&format_stepping_table(st));
    }
    out
}

/// Writes one generator, a start vector, the Krylov and the Taylor results and their median times
/// as `.npy` files for the optional SciPy comparison script
/// (`koopman-bench/peers/scipy_expm_multiply.py`).
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
    // Median of seven calls after a warm-up, as the peer script times SciPy (this machine's
    // timings scatter; fewer calls let one slow call decide).
    let ((w, _), secs) = median_timed(device, PEER_REPEATS, || {
        Ok(expv(&op, 1.0, &v, &expv_config)?)
    })?;
    let taylor_config = TaylorConfig {
        tol: config.tol,
        ..Default::default()
    };
    let ((w_taylor, _), taylor_secs) = median_timed(device, PEER_REPEATS, || {
        Ok(expv_taylor(&op, 1.0, &v, &taylor_config)?)
    })?;
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
    save_f64("taylor_seconds", &[1], vec![taylor_secs])?;
    let vals = w_taylor.to_c64_vec()?;
    save_f64("w_taylor_re", &[n], vals.iter().map(|c| c.re).collect())?;
    save_f64("w_taylor_im", &[n], vals.iter().map(|c| c.im).collect())?;
    Ok(())
}

/// Timed calls per side in the SciPy peer comparison (`scipy_expm_multiply.py` uses the same).
const PEER_REPEATS: usize = 7;
