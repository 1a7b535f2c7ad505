//! Koopman stepping of the NN DE solver (paper 000), everything measured in one process: the
//! optimizer against the fit and the three evolutions, f32 against f64 batched evolution.

use crate::device::timed;
use crate::experiments::p000_stepping::trials::de_solver::{
    evaluate_de, paper_partition, train_de, DeOutcome, DeTrialConfig,
};
use crate::report::sci;
use crate::Result;
use candle_core::{DType, Device, Tensor};
use koopman_train::stepping::fit::to_host;
use koopman_train::stepping::{fit, Evolution, FitConfig, FitSolver, OptimizerKind, PartitionPlan};
use serde::Serialize;

/// The DE trial timed by `perf`: the paper's Adadelta setting (rho 0.999, schedule
/// `8 / (1000 + t)`) with every step count divided by 8, as the quick `stepping_de` experiment:
/// t1 = 4,375, t2 = 5,625, T = 312.
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
