//! `koopman-bench perf`: timed runs whose ratios are measured in one process.
//!
//! The Krylov exponential action on Toeplitz generators of the paper's shape (d = 3,
//! `N = {-r..r}^3 \ {0}`, `M = {-2..2}^2 x {-1..1} \ {0}`) against the dense exponential of the
//! same operator (while the dense matrix fits the `max_dense` limit), with per-matvec cost to show
//! linear growth in `|N|`. Also the DMD fits, one training step of the deep Koopman-layered
//! model, and Koopman stepping of the NN DE solver ([`run_stepping_perf`]: optimizer against
//! the fit and the three evolutions, f32 against f64 batched evolution).

use crate::device::{device_name, timed};
use crate::report::sci;
use crate::Result;
use candle_core::{DType, Device, Tensor};
use koopman_core::dmd::{
    dmd_rrr, exact_dmd, finite_section_batched, ExactDmdConfig, FiniteSectionConfig, RankPolicy,
    RrrConfig,
};
use koopman_core::faer::{Mat, MatRef};
use koopman_core::io::{write_npy, NpyData};
use koopman_core::spectrum::{wasserstein, Spectrum};
use koopman_core::{
    c64, expv, expv_dense, expv_taylor, ComplexTensor, ExpvConfig, IndexSet, LinearOperator,
    TaylorConfig, TaylorPath, TaylorPlan, ToeplitzGenerator,
};
use koopman_train::stepping::de_solver::{
    evaluate_de, paper_partition, train_de, DeOutcome, DeTrialConfig,
};
use koopman_train::stepping::fit::to_host;
use koopman_train::stepping::{fit, Evolution, FitConfig, FitSolver, OptimizerKind, PartitionPlan};
use rand::{Rng, SeedableRng};
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

/// One timed configuration of the layered training step.
#[derive(Clone, Debug, Serialize)]
pub struct StepRow {
    /// `taylor`, `krylov` or `dense exponential`.
    pub exponential: String,
    /// For Taylor rows: the path that ran and the first layer's plan at the last timed step.
    pub taylor: Option<(TaylorPath, TaylorPlan)>,
    /// `f64` or `f32`.
    pub dtype: String,
    /// Median seconds of one step (forward, backward, AdamW), after one warm-up step.
    pub seconds: f64,
    /// Seconds of the warm-up step (it also prepares the features on the device).
    pub first_step_seconds: f64,
    /// Steps timed after the warm-up.
    pub repeats: usize,
}

/// One training step of the deep Koopman-layered model, by exponential path and dtype.
#[derive(Clone, Debug, Serialize)]
pub struct LayeredStepTiming {
    /// `|N|`.
    pub n: usize,
    /// `|M|`.
    pub m: usize,
    /// `J`.
    pub layers: usize,
    /// Samples per step.
    pub batch: usize,
    /// One row per configuration.
    pub rows: Vec<StepRow>,
    /// The step at a large `|N|` (where run).
    pub scale: Option<ScaleStepTiming>,
}

/// One training step at a large `|N|` (Taylor action, f64).
#[derive(Clone, Debug, Serialize)]
pub struct ScaleStepTiming {
    /// `|N|`.
    pub n: usize,
    /// The timed configuration.
    pub row: StepRow,
    /// Peak bytes allocated on the device during the timed steps (the high-water mark of the
    /// CUDA memory pool the allocations come from), where the device reports it.
    pub peak_device_bytes: Option<u64>,
    /// What the dense path said when asked for the same step.
    pub dense_refusal: String,
}

/// Van der Pol pairs `(x_0, x_100)` on the torus, the data of the layered step timings.
fn layered_step_data(batch: usize) -> Result<koopman_layers::train::SnapshotData> {
    use koopman_layers::systems::{van_der_pol_pairs, VanDerPol};
    use koopman_layers::train::SnapshotData;
    use koopman_layers::TorusNormalization;
    let (x0, xt) = van_der_pol_pairs(&VanDerPol::default(), batch, 0.01, 0);
    let all: Vec<f64> = x0.iter().chain(&xt).copied().collect();
    let norm = TorusNormalization::fit(&all, 2, std::f64::consts::FRAC_PI_2).map_err(layered)?;
    SnapshotData::new(
        vec![
            norm.forward(&x0).map_err(layered)?,
            norm.forward(&xt).map_err(layered)?,
        ],
        2,
    )
    .map_err(layered)
}

fn layered(e: koopman_layers::LayersError) -> crate::BenchError {
    crate::BenchError::Usage(format!("koopman-layers: {e}"))
}

/// One configuration of [`time_steps`].
#[derive(Clone, Copy, Debug)]
struct StepSetup {
    exponential: koopman_layers::model::ExpMode,
    path: TaylorPath,
    dtype: DType,
    repeats: usize,
}

/// Times training steps (end-to-end loss, forward + backward + AdamW) of a `J`-layer model over
/// `N = {-r..r}^3 \ {0}`, `M` = [`paper_offsets`], seeded init 0.01: one warm-up step, then the
/// median of `repeats` (fewer when a step takes over a second).
fn time_steps(
    radius: i64,
    layers: usize,
    data: &koopman_layers::train::SnapshotData,
    setup: StepSetup,
    device: &Device,
) -> Result<StepRow> {
    let StepSetup {
        exponential,
        path,
        dtype,
        repeats,
    } = setup;
    use koopman_layers::model::{DeepKoopmanLayeredBuilder, ExpMode};
    use koopman_layers::train::{TrainConfig, Trainer};
    let n = Arc::new(IndexSet::cube(3, radius)?.without_origin()?);
    let config = TrainConfig {
        steps: 1,
        init_std: 0.01,
        progress: false,
        ..Default::default()
    };
    let builder = DeepKoopmanLayeredBuilder::new(2, n, vec![paper_offsets()?])
        .layers(layers)
        .exp_mode(exponential)
        .taylor_path(path);
    let mut trainer = Trainer::on(builder, &config, dtype, device).map_err(layered)?;
    let (_, first_step_seconds) =
        timed(device, || trainer.step(data, &config, 0).map_err(layered))?;
    let repeats = if first_step_seconds > 1.0 {
        1
    } else {
        repeats.max(1)
    };
    let mut times = Vec::with_capacity(repeats);
    for step in 0..repeats {
        let (_, secs) = timed(device, || {
            trainer
                .step(data, &config, step as u64 + 1)
                .map_err(layered)
        })?;
        times.push(secs);
    }
    times.sort_by(f64::total_cmp);
    let taylor = if exponential == ExpMode::Taylor {
        let generators = trainer.model.generators().map_err(layered)?;
        Some(trainer.model.taylor_plan(&generators[0]).map_err(layered)?)
    } else {
        None
    };
    Ok(StepRow {
        exponential: match exponential {
            ExpMode::Taylor => "taylor",
            ExpMode::Krylov => "krylov",
            ExpMode::Dense => "dense exponential",
        }
        .into(),
        taylor,
        dtype: format!("{dtype:?}").to_lowercase(),
        seconds: times[times.len() / 2],
        first_step_seconds,
        repeats,
    })
}

/// The layered training step at `|N| = (2r+1)^3 - 1`: Taylor (automatic path) in f64 and f32, the
/// Taylor dense path where it fits, Krylov `expv`, and the dense exponential, in one process;
/// with `scale_radius`, one more Taylor step at that radius with its peak device memory and the
/// dense path's refusal.
pub fn run_layered_step_perf(
    radius: i64,
    layers: usize,
    batch: usize,
    repeats: usize,
    scale_radius: Option<i64>,
    device: &Device,
) -> Result<LayeredStepTiming> {
    use koopman_layers::model::ExpMode;
    let data = layered_step_data(batch)?;
    let n = IndexSet::cube(3, radius)?.without_origin()?.len();
    let mut rows = Vec::new();
    let configs = [
        (ExpMode::Taylor, TaylorPath::Auto, DType::F64, repeats),
        (ExpMode::Taylor, TaylorPath::Auto, DType::F32, repeats),
        (ExpMode::Taylor, TaylorPath::Dense, DType::F64, repeats),
        (ExpMode::Krylov, TaylorPath::Auto, DType::F64, 1),
        (ExpMode::Dense, TaylorPath::Auto, DType::F64, 1),
    ];
    for (exponential, path, dtype, repeats) in configs {
        let setup = StepSetup {
            exponential,
            path,
            dtype,
            repeats,
        };
        rows.push(time_steps(radius, layers, &data, setup, device)?);
    }
    let scale = match scale_radius {
        Some(r) => Some(run_scale_step(r, layers, &data, device)?),
        None => None,
    };
    Ok(LayeredStepTiming {
        n,
        m: paper_offsets()?.len(),
        layers,
        batch,
        rows,
        scale,
    })
}

fn run_scale_step(
    radius: i64,
    layers: usize,
    data: &koopman_layers::train::SnapshotData,
    device: &Device,
) -> Result<ScaleStepTiming> {
    use koopman_layers::model::ExpMode;
    let n = IndexSet::cube(3, radius)?.without_origin()?.len();
    crate::device::reset_peak_memory(device);
    let setup = |exponential| StepSetup {
        exponential,
        path: TaylorPath::Auto,
        dtype: DType::F64,
        repeats: 1,
    };
    let row = time_steps(radius, layers, data, setup(ExpMode::Taylor), device)?;
    let peak_device_bytes = crate::device::peak_memory(device);
    let dense_refusal = match time_steps(radius, layers, data, setup(ExpMode::Dense), device) {
        Ok(r) => format!("the dense path ran ({} s)", r.seconds),
        Err(e) => e.to_string(),
    };
    Ok(ScaleStepTiming {
        n,
        row,
        peak_device_bytes,
        dense_refusal,
    })
}

/// The layered step table.
pub fn format_layered_step(l: &LayeredStepTiming) -> String {
    let mut out = format!(
        "deep Koopman-layered training step (forward + backward + AdamW), |N| = {}, |M| = {}, \
         J = {}, batch {}:\n{:>18} {:>9} {:>6} {:>11} {:>8} {:>11} {:>16}\n",
        l.n,
        l.m,
        l.layers,
        l.batch,
        "exponential",
        "path",
        "dtype",
        "step [s]",
        "repeats",
        "first [s]",
        "plan (m x s)"
    );
    let row = |r: &StepRow| {
        let (path, plan) = match &r.taylor {
            Some((p, plan)) => (
                format!("{p:?}").to_lowercase(),
                format!(
                    "{} x {} (|L| <= {:.2})",
                    plan.degree, plan.substeps, plan.norm_bound
                ),
            ),
            None => ("-".into(), "-".into()),
        };
        format!(
            "{:>18} {:>9} {:>6} {:>11} {:>8} {:>11} {:>16}\n",
            r.exponential,
            path,
            r.dtype,
            sci(r.seconds),
            r.repeats,
            sci(r.first_step_seconds),
            plan
        )
    };
    for r in &l.rows {
        out.push_str(&row(r));
    }
    if let Some(s) = &l.scale {
        out.push_str(&format!("at |N| = {}:\n", s.n));
        out.push_str(&row(&s.row));
        out.push_str(&format!(
            "  peak device memory {}; dense path: {}\n",
            s.peak_device_bytes
                .map_or("not reported".to_string(), |b| format!(
                    "{:.2} GB",
                    b as f64 / 1e9
                )),
            s.dense_refusal
        ));
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

/// Sizes of the DMD timing.
#[derive(Clone, Debug, Serialize)]
pub struct DmdPerfConfig {
    /// State dimension `n` of the snapshot matrix.
    pub n: usize,
    /// Snapshot pairs `m`.
    pub m: usize,
    /// Rank of the underlying linear system (even: conjugate pairs).
    pub rank: usize,
    /// Operators fitted by the batched finite section.
    pub batch_operators: usize,
    /// Size `d` of each batched operator.
    pub batch_dim: usize,
    /// Snapshots per batched operator.
    pub batch_snapshots: usize,
    /// Seed.
    pub seed: u64,
}

impl Default for DmdPerfConfig {
    fn default() -> Self {
        Self {
            n: 10_000,
            m: 1_000,
            rank: 10,
            batch_operators: 1_000,
            batch_dim: 11,
            batch_snapshots: 10_000,
            seed: 0,
        }
    }
}

/// DMD fit timings.
#[derive(Clone, Debug, Serialize)]
pub struct DmdTiming {
    /// Sizes.
    pub config: DmdPerfConfig,
    /// Seconds of one exact DMD fit (`RankPolicy::OptimalHardThreshold`).
    pub exact_seconds: f64,
    /// Rank exact DMD chose.
    pub exact_rank: usize,
    /// Wasserstein-1 distance of the exact-DMD eigenvalues to the true ones.
    pub exact_eigenvalue_error: f64,
    /// Seconds of one DMD_RRR fit (tol 1e-10, no refinement).
    pub rrr_seconds: f64,
    /// Rank DMD_RRR chose.
    pub rrr_rank: usize,
    /// Wasserstein-1 distance of the DMD_RRR eigenvalues to the true ones.
    pub rrr_eigenvalue_error: f64,
    /// Largest DMD_RRR residual.
    pub rrr_max_residual: f64,
    /// Seconds of the batched finite section.
    pub batched_seconds: f64,
    /// Largest `||U_b - A||_F / ||A||_F` over the batch.
    pub batched_max_error: f64,
}

/// The true eigenvalues of the low-rank test system: `rank / 2` conjugate pairs with moduli
/// just below 1 (so that 1,000 steps neither vanish nor blow up).
pub fn dmd_test_eigenvalues(rank: usize) -> Vec<c64> {
    (0..rank / 2)
        .flat_map(|k| {
            let r = 1.0 - 0.0005 * k as f64;
            let theta = 0.05 + 0.37 * k as f64;
            [c64::from_polar(r, theta), c64::from_polar(r, -theta)]
        })
        .collect()
}

/// The snapshot pair `(X, Y)` of size `n x m` of the low-rank system: `x_k = L z_k`,
/// `z_{k+1} = B z_k` with `B` real block-diagonal holding [`dmd_test_eigenvalues`].
pub fn dmd_test_data(config: &DmdPerfConfig) -> Result<(Mat<f64>, Mat<f64>)> {
    let r = config.rank;
    if r < 2 || r % 2 != 0 || config.n < r || config.m < r {
        return Err(crate::BenchError::Usage(format!(
            "DMD perf needs an even rank >= 2 below n and m, got rank {r}, n {}, m {}",
            config.n, config.m
        )));
    }
    let eig = dmd_test_eigenvalues(r);
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let lift = Mat::from_fn(config.n, r, |_, _| rng.random_range(-1.0..1.0));
    let mut z = Mat::<f64>::zeros(r, config.m + 1);
    for i in 0..r {
        z[(i, 0)] = rng.random_range(-1.0..1.0);
    }
    for k in 1..=config.m {
        for p in 0..r / 2 {
            let l = eig[2 * p];
            let (a, b) = (z[(2 * p, k - 1)], z[(2 * p + 1, k - 1)]);
            z[(2 * p, k)] = l.re * a - l.im * b;
            z[(2 * p + 1, k)] = l.im * a + l.re * b;
        }
    }
    let data = &lift * &z;
    Ok((
        data.as_ref().subcols(0, config.m).to_owned(),
        data.as_ref().subcols(1, config.m).to_owned(),
    ))
}

/// Times exact DMD and DMD_RRR on [`dmd_test_data`], and the batched finite section of
/// `batch_operators` operators of size `batch_dim`, each from `batch_snapshots` snapshots (windows
/// of one long trajectory of a rotation-like system, so every operator should equal `A`).
pub fn run_dmd_perf(config: &DmdPerfConfig) -> Result<DmdTiming> {
    let (x, y) = dmd_test_data(config)?;
    let truth = Spectrum::new(dmd_test_eigenvalues(config.rank));
    let t = std::time::Instant::now();
    let exact = exact_dmd(
        x.as_ref(),
        y.as_ref(),
        &ExactDmdConfig {
            rank: RankPolicy::OptimalHardThreshold,
        },
    )?;
    let exact_seconds = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let rrr = dmd_rrr(
        x.as_ref(),
        y.as_ref(),
        &RrrConfig {
            tol: 1e-10,
            ..Default::default()
        },
    )?;
    let rrr_seconds = t.elapsed().as_secs_f64();
    let err = |s: &Spectrum| -> f64 {
        if s.len() == truth.len() {
            wasserstein(s, &truth).unwrap_or(f64::INFINITY)
        } else {
            f64::INFINITY
        }
    };
    // batched finite section: one long trajectory, overlapping windows
    let d = config.batch_dim;
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed + 1);
    let (q, _) = koopman_core::linalg::thin_qr(
        Mat::from_fn(d, d, |_, _| rng.random_range(-1.0..1.0)).as_ref(),
    );
    let a = Mat::from_fn(d, d, |i, j| 0.999 * q[(i, j)]);
    let len = config.batch_snapshots + config.batch_operators + 1;
    let mut traj = Mat::<f64>::zeros(d, len);
    for i in 0..d {
        traj[(i, 0)] = rng.random_range(-1.0..1.0);
    }
    for k in 1..len {
        for i in 0..d {
            traj[(i, k)] = (0..d).map(|j| a[(i, j)] * traj[(j, k - 1)]).sum();
        }
    }
    let xs: Vec<MatRef<'_, f64>> = (0..config.batch_operators)
        .map(|b| traj.as_ref().subcols(b, config.batch_snapshots))
        .collect();
    let ys: Vec<MatRef<'_, f64>> = (0..config.batch_operators)
        .map(|b| traj.as_ref().subcols(b + 1, config.batch_snapshots))
        .collect();
    let t = std::time::Instant::now();
    let us = finite_section_batched(&xs, &ys, &FiniteSectionConfig::default())?;
    let batched_seconds = t.elapsed().as_secs_f64();
    let an = koopman_core::linalg::frobenius(a.as_ref());
    let batched_max_error = us
        .iter()
        .map(|u| koopman_core::linalg::frobenius((u - &a).as_ref()) / an)
        .fold(0.0, f64::max);
    Ok(DmdTiming {
        config: config.clone(),
        exact_seconds,
        exact_rank: exact.rank(),
        exact_eigenvalue_error: err(&exact.spectrum()),
        rrr_seconds,
        rrr_rank: rrr.rank(),
        rrr_eigenvalue_error: err(&rrr.spectrum()),
        rrr_max_residual: rrr
            .residuals
            .as_ref()
            .map_or(f64::NAN, |r| r.iter().cloned().fold(0.0, f64::max)),
        batched_seconds,
        batched_max_error,
    })
}

/// The DMD timings as a printable table.
pub fn format_dmd_table(d: &DmdTiming) -> String {
    let c = &d.config;
    let mut out = format!(
        "DMD fits on a {} x {} snapshot matrix of a rank-{} system; batched finite section of {} \
         operators of size {} from {} snapshots each\n",
        c.n, c.m, c.rank, c.batch_operators, c.batch_dim, c.batch_snapshots
    );
    out.push_str(&format!(
        "{:>22} {:>11} {:>6} {:>15}\n",
        "fit", "time [s]", "rank", "eig error / max"
    ));
    out.push_str(&format!(
        "{:>22} {:>11} {:>6} {:>15}\n",
        "exact DMD (GD thresh)",
        sci(d.exact_seconds),
        d.exact_rank,
        sci(d.exact_eigenvalue_error)
    ));
    out.push_str(&format!(
        "{:>22} {:>11} {:>6} {:>15}\n",
        "DMD_RRR (tol 1e-10)",
        sci(d.rrr_seconds),
        d.rrr_rank,
        sci(d.rrr_eigenvalue_error)
    ));
    out.push_str(&format!(
        "{:>22} {:>11} {:>6} {:>15}\n",
        "batched finite section",
        sci(d.batched_seconds),
        c.batch_dim,
        sci(d.batched_max_error)
    ));
    out
}

/// Writes the DMD test data (`dmd_x.npy`, `dmd_y.npy`, `n x m`, states as columns), the true
/// eigenvalues and the measured fit time for `koopman-bench/peers/pydmd_peer.py`.
pub fn export_dmd_for_peer(dir: &Path, config: &DmdPerfConfig, timing: &DmdTiming) -> Result<()> {
    let (x, y) = dmd_test_data(config)?;
    let flat = |a: &Mat<f64>| -> Vec<f64> {
        let mut v = Vec::with_capacity(a.nrows() * a.ncols());
        for i in 0..a.nrows() {
            for j in 0..a.ncols() {
                v.push(a[(i, j)]);
            }
        }
        v
    };
    write_npy(
        dir.join("dmd_x.npy"),
        &[x.nrows(), x.ncols()],
        &NpyData::F64(flat(&x)),
    )?;
    write_npy(
        dir.join("dmd_y.npy"),
        &[y.nrows(), y.ncols()],
        &NpyData::F64(flat(&y)),
    )?;
    let eig = dmd_test_eigenvalues(config.rank);
    write_npy(
        dir.join("dmd_true_eigs.npy"),
        &[eig.len(), 2],
        &NpyData::F64(eig.iter().flat_map(|z| [z.re, z.im]).collect()),
    )?;
    write_npy(
        dir.join("dmd_rust_seconds.npy"),
        &[2],
        &NpyData::F64(vec![timing.exact_seconds, timing.rrr_seconds]),
    )?;
    Ok(())
}

/// The DE trial timed by `perf`: the paper's Adadelta setting (rho 0.999, schedule
/// `8 / (1000 + t)`) with every step count divided by 8, as the quick `stepping_de` experiment:
/// t1 = 4,375, t2 = 5,625, T = 312 (about 10 s of training in release on two cores).
pub fn stepping_perf_trial() -> DeTrialConfig {
    let c = DeTrialConfig::paper(OptimizerKind::Adadelta { rho: 0.999 });
    DeTrialConfig {
        t1: c.t1 / 8,
        t2: c.t2 / 8,
        horizon: c.horizon / 8,
        after: c.after / 8,
        ..c
    }
}

/// One batched evolution over the horizon in f64 and in f32 on the device.
#[derive(Clone, Debug, Serialize)]
pub struct EvolveDtypeTiming {
    /// `Step` (one batched matmul per step) or `Jump` (powers by squaring).
    pub mode: String,
    /// Seconds of `KoopmanStepper::evolve_batched` (f64).
    pub f64_seconds: f64,
    /// Seconds of `CastStepper::evolve_batched` (f32; the one-off cast is in `cast_seconds`).
    pub f32_seconds: f64,
    /// `f64_seconds / f32_seconds`.
    pub speedup: f64,
    /// `||w_f32 - w_f64|| / ||w_f64||` at the horizon.
    pub relative_difference: f64,
}

/// Koopman stepping of the NN DE solver, everything measured in one process.
#[derive(Clone, Debug, Serialize)]
pub struct SteppingTiming {
    /// Optimizer name.
    pub optimizer: String,
    /// First recorded step.
    pub t1: usize,
    /// Last recorded step.
    pub t2: usize,
    /// Horizon `T`.
    pub horizon: usize,
    /// Number of weights.
    pub parameters: usize,
    /// `(size, count)` of the operators (the paper's partition).
    pub operators: Vec<(usize, usize)>,
    /// Seconds of the whole training run (`t2 + 2T` steps, recording included).
    pub train_seconds: f64,
    /// Default fit (SVD, rcond 1e-9): `T_eq`, per-step and `T_eq`-step optimizer times, fit,
    /// loop, jump and eigen-jump times (koopman-train's `evaluate_de`).
    pub svd: DeOutcome,
    /// The same with the Gram (normal-equation) fit.
    pub gram: DeOutcome,
    /// Seconds of casting the operators to f32 once.
    pub cast_seconds: f64,
    /// Batched evolution f64 vs f32 on the device (step-wise and jump).
    pub evolve_dtype: Vec<EvolveDtypeTiming>,
}

/// Trains the DE solver (f64) with `trial` on `device`, then measures Koopman stepping with
/// koopman-train's `evaluate_de` (default SVD fit, then the Gram fit) and times the batched
/// evolution over the horizon in f64 against f32.
pub fn run_stepping_perf(
    trial: &DeTrialConfig,
    seed: u64,
    device: &Device,
) -> Result<SteppingTiming> {
    let (run, train_seconds) = timed(device, || Ok(train_de(trial, seed, device, None)?))?;
    let spec = paper_partition(trial.solver.hidden.len() + 1);
    device.synchronize()?;
    let svd = evaluate_de(&run, &spec, &FitConfig::default(), device)?;
    let gram_config = FitConfig {
        solver: FitSolver::Gram,
        ..FitConfig::default()
    };
    device.synchronize()?;
    let gram = evaluate_de(&run, &spec, &gram_config, device)?;
    let rec = &run.recorder;
    let plan = PartitionPlan::build(rec.params(), &spec)?;
    let stepper = fit(
        rec,
        &plan,
        trial.t1,
        trial.t2,
        &FitConfig::default(),
        device,
    )?;
    let (stepper32, cast_seconds) = timed(device, || Ok(stepper.cast(DType::F32)?))?;
    let w = Tensor::new(rec.snapshot(trial.t2)?, device)?;
    let steps = trial.horizon as u64;
    let mut evolve_dtype = Vec::new();
    for mode in [Evolution::Step, Evolution::Jump] {
        let (w64, f64_seconds) = timed(device, || Ok(stepper.evolve_batched(&w, steps, mode)?))?;
        let (w32, f32_seconds) = timed(device, || Ok(stepper32.evolve_batched(&w, steps, mode)?))?;
        let (a, b) = (to_host(&w32)?, to_host(&w64)?);
        let diff: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        let norm: f64 = b.iter().map(|y| y * y).sum();
        evolve_dtype.push(EvolveDtypeTiming {
            mode: format!("{mode:?}"),
            f64_seconds,
            f32_seconds,
            speedup: f64_seconds / f32_seconds,
            relative_difference: (diff / norm).sqrt(),
        });
    }
    Ok(SteppingTiming {
        optimizer: trial.optimizer.name().to_string(),
        t1: trial.t1,
        t2: trial.t2,
        horizon: trial.horizon,
        parameters: rec.num_params(),
        operators: plan.size_counts(),
        train_seconds,
        svd,
        gram,
        cast_seconds,
        evolve_dtype,
    })
}

/// The stepping timings as a printable table.
pub fn format_stepping_table(st: &SteppingTiming) -> String {
    let (s, g) = (&st.svd, &st.gram);
    let ops: Vec<String> = st
        .operators
        .iter()
        .map(|(d, n)| format!("{n} x {d}"))
        .collect();
    let mut out = format!(
        "Koopman stepping, NN DE solver ({}, t1 = {}, t2 = {}, T = {}, {} weights, operators {}; \
         f64 weights, training {:.1} s)\n",
        st.optimizer,
        st.t1,
        st.t2,
        st.horizon,
        st.parameters,
        ops.join(", "),
        st.train_seconds
    );
    out.push_str(&format!(
        "  T_eq = {:.1} steps (T_eq/T {:.3}{}); optimizer step {} s, T_eq optimizer steps {} s\n",
        s.t_eq.value,
        s.t_eq.value / st.horizon as f64,
        if s.t_eq.capped { ", capped" } else { "" },
        sci(s.optimizer_step_seconds),
        sci(s.optimizer_seconds)
    ));
    out.push_str(&format!(
        "{:>36} {:>11} {:>14} {:>14}\n",
        "", "time [s]", "speedup", "incl. fit"
    ));
    // (name, seconds, speedup without and with the fit)
    let rows = [
        ("fit (SVD, default)", s.fit_seconds, None),
        ("fit (Gram)", g.fit_seconds, None),
        (
            "step-wise loop (SVD fit)",
            s.loop_seconds,
            Some((s.speedup_loop(false), s.speedup_loop(true))),
        ),
        (
            "step-wise loop (Gram fit)",
            g.loop_seconds,
            Some((g.speedup_loop(false), g.speedup_loop(true))),
        ),
        (
            "jump by squaring (SVD fit)",
            s.jump_seconds,
            Some((s.speedup_jump(false), s.speedup_jump(true))),
        ),
        ("eigendecomposition", s.diagonalize_seconds, None),
        (
            "eigen jump (SVD fit + eig)",
            s.eigen_seconds,
            Some((s.speedup_eigen(false), s.speedup_eigen(true))),
        ),
    ];
    for (name, t, speedups) in rows {
        let (without, with) = speedups.map_or(("-".to_string(), "-".to_string()), |(a, b)| {
            (format!("{a:.0}x"), format!("{b:.1}x"))
        });
        out.push_str(&format!(
            "{name:>36} {:>11} {without:>14} {with:>14}\n",
            sci(t)
        ));
    }
    out.push_str(&format!(
        "  batched evolution over T on the device, f64 vs f32 (one-off cast {} s):\n",
        sci(st.cast_seconds)
    ));
    out.push_str(&format!(
        "{:>8} {:>11} {:>11} {:>9} {:>13}\n",
        "mode", "f64 [s]", "f32 [s]", "ratio", "rel. diff"
    ));
    for e in &st.evolve_dtype {
        out.push_str(&format!(
            "{:>8} {:>11} {:>11} {:>8.2}x {:>13}\n",
            e.mode,
            sci(e.f64_seconds),
            sci(e.f32_seconds),
            e.speedup,
            sci(e.relative_difference)
        ));
    }
    out
}

#[cfg(test)]
mod stepping_perf_tests {
    use super::*;

    #[test]
    fn small_stepping_perf_runs_and_prints() -> Result<()> {
        let trial = DeTrialConfig {
            t1: 150,
            t2: 250,
            horizon: 30,
            after: 40,
            ..stepping_perf_trial()
        };
        let st = run_stepping_perf(&trial, 1, &Device::Cpu)?;
        assert_eq!(st.parameters, 152);
        assert_eq!(st.evolve_dtype.len(), 2);
        for t in [
            st.svd.fit_seconds,
            st.gram.fit_seconds,
            st.svd.loop_seconds,
            st.svd.optimizer_step_seconds,
            st.train_seconds,
        ] {
            assert!(t.is_finite() && t > 0.0, "{st:?}");
        }
        for e in &st.evolve_dtype {
            // f32 against f64 over 30 steps of operators up to d = 11: (T + 1)(d + 1) eps_f32
            assert!(e.relative_difference < 31.0 * 12.0 * 1.2e-7, "{e:?}");
        }
        let table = format_stepping_table(&st);
        assert!(
            table.contains("jump by squaring") && table.contains("Gram"),
            "{table}"
        );
        let json = serde_json::to_string(&st)?;
        assert!(json.contains("evolve_dtype"));
        Ok(())
    }
}

#[cfg(test)]
mod dmd_perf_tests {
    use super::*;

    #[test]
    fn small_dmd_perf_recovers_the_system() -> Result<()> {
        let config = DmdPerfConfig {
            n: 300,
            m: 80,
            rank: 6,
            batch_operators: 20,
            batch_dim: 5,
            batch_snapshots: 60,
            seed: 1,
        };
        let t = run_dmd_perf(&config)?;
        assert_eq!(t.exact_rank, 6);
        assert_eq!(t.rrr_rank, 6);
        assert!(t.exact_eigenvalue_error < 1e-9, "{t:?}");
        assert!(t.rrr_eigenvalue_error < 1e-9, "{t:?}");
        assert!(t.batched_max_error < 1e-8, "{t:?}");
        assert!(format_dmd_table(&t).contains("DMD_RRR"));
        Ok(())
    }
}
