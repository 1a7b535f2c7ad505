//! The NN differential-equation solver of paper 000 (SPEC 4.1) and its Koopman-stepping trial.
//!
//! A 1:10:10:2 sigmoid MLP `N(t) = (N1, N2)` solves the nonlinear oscillator `x' = p`,
//! `p' = -x - lambda x^3` (`lambda = 1`, `x(0) = 1.3`, `p(0) = 1`) through the trial solution
//! `x = x0 + (1 - e^-t) N1`, `p = p0 + (1 - e^-t) N2`, which meets the initial condition
//! exactly. The loss on a fixed grid of 200 points on `[0, 4 pi]` is
//! `mean((x' - p)^2) + mean((p' + x + lambda x^3)^2)`. The time derivatives come from
//! forward-mode tangent propagation through the MLP (`z' = h' W^T`, `h' = sigma'(z) z'`), exact
//! and built from ordinary candle ops, so first-order autograd gives the loss gradient.
//!
//! [`train_de`] trains with one of the paper's optimizers and the schedule `8 / (1000 + t)`,
//! records the weights from `t1` to `t2`, keeps training past `t2` (losses and per-step times),
//! and [`evaluate_de`] fits the Koopman operators and measures `T_eq`, prediction errors, the
//! straight-line baseline and the speedups in the same process.
//!
//! [`DeSolverConfig::dtype`] is F64 by default (the paper); F32 runs the network, the grid and
//! the optimizer in f32 (the fast path on a GPU) while the recorder and the fit stay f64, and
//! the operators evolve in f32 through [`KoopmanStepper::cast`](koopman_train::stepping::KoopmanStepper::cast).
//! Measured on one seed (Adadelta, t1 = 300, t2 = 400, T = 50, test `f32_trial_against_f64`):
//! the f32 weights at `t2` differ from the f64 ones by 4.4e-7 (relative 2-norm), the
//! Koopman-evolved weights by 2.3e-6 and their loss by 1.1e-5, against bounds of 1.2e-4 and
//! 4.2e-3 derived from `eps_f32`, `t2` and the horizon (see the test).
//!
//! ```
//! use candle_core::Device;
//! use koopman_bench::experiments::p000_stepping::trials::de_solver::{DeSolver, DeSolverConfig};
//!
//! # fn main() -> koopman_train::Result<()> {
//! let solver = DeSolver::new(&DeSolverConfig::default(), 0, &Device::Cpu)?;
//! let loss = solver.loss_value()?;
//! assert!(loss.is_finite() && loss > 0.0);
//! # Ok(()) }
//! ```

use super::{path_steps, Operators, WeightPaths};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use indicatif::ProgressBar;
use koopman_core::nn::{init_seeded, Activation, Mlp};
use koopman_train::stepping::fit::{fit, straight_line, to_host, Evolution, FitConfig};
use koopman_train::stepping::metrics::{
    equivalent_time, prediction_error, t_eq, timed_runs, PredictionError, TEq, TIMING_RUNS,
};
use koopman_train::stepping::optim::{LrSchedule, OptimizerKind};
use koopman_train::stepping::partition::{Partition, PartitionPlan, PartitionSpec};
use koopman_train::stepping::recorder::Recorder;
use koopman_train::{Result, TrainError};
use std::time::Instant;

/// The oscillator and the grid.
#[derive(Clone, Debug, PartialEq)]
pub struct DeSolverConfig {
    /// Hidden widths (`[10, 10]`).
    pub hidden: Vec<usize>,
    /// Cubic coefficient `lambda`.
    pub lambda: f64,
    /// `x(0)`.
    pub x0: f64,
    /// `p(0)`.
    pub p0: f64,
    /// Number of grid points.
    pub points: usize,
    /// Grid end (`4 pi`).
    pub t_max: f64,
    /// Float type of the network, the grid and the training (F64, the default, or F32: the
    /// GPU-friendly path, see the [module docs](self) for its measured accuracy).
    pub dtype: DType,
}

impl Default for DeSolverConfig {
    fn default() -> Self {
        Self {
            hidden: vec![10, 10],
            lambda: 1.0,
            x0: 1.3,
            p0: 1.0,
            points: 200,
            t_max: 4.0 * std::f64::consts::PI,
            dtype: DType::F64,
        }
    }
}

impl DeSolverConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.points < 2 || !(self.t_max.is_finite() && self.t_max > 0.0) {
            return Err(TrainError::InvalidArgument(format!(
                "the grid needs >= 2 points on [0, t_max > 0], got {} points, t_max = {}",
                self.points, self.t_max
            )));
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return Err(TrainError::InvalidArgument(format!(
                "hidden widths must be non-empty and >= 1, got {:?}",
                self.hidden
            )));
        }
        if ![self.lambda, self.x0, self.p0]
            .iter()
            .all(|v| v.is_finite())
        {
            return Err(TrainError::NonFinite("oscillator parameters".into()));
        }
        if !matches!(self.dtype, DType::F32 | DType::F64) {
            return Err(TrainError::InvalidArgument(format!(
                "the DE solver computes in F32 or F64, got {:?}",
                self.dtype
            )));
        }
        Ok(())
    }
}

/// The solver network and its grid (in the config's dtype on the caller's device).
pub struct DeSolver {
    /// The MLP `1 : hidden : 2`, sigmoid.
    pub mlp: Mlp,
    /// Its variables (`0.weight`, `0.bias`, `2.weight`, ...).
    pub varmap: VarMap,
    grid: Tensor,
    config: DeSolverConfig,
}

impl DeSolver {
    /// A solver initialised from `seed` (koopman-core's `init_seeded`).
    pub fn new(config: &DeSolverConfig, seed: u64, device: &Device) -> Result<Self> {
        config.validate()?;
        let varmap = VarMap::new();
        let mut sizes = vec![1];
        sizes.extend(&config.hidden);
        sizes.push(2);
        let mlp = Mlp::new(
            &sizes,
            Activation::Sigmoid,
            VarBuilder::from_varmap(&varmap, config.dtype, device),
        )?;
        init_seeded(&varmap, seed)?;
        let n = config.points;
        let ts: Vec<f64> = (0..n)
            .map(|i| config.t_max * i as f64 / (n - 1) as f64)
            .collect();
        let grid = Tensor::from_vec(ts, (n, 1), device)?.to_dtype(config.dtype)?;
        Ok(Self {
            mlp,
            varmap,
            grid,
            config: config.clone(),
        })
    }

    /// The grid, `(points, 1)`.
    pub fn grid(&self) -> &Tensor {
        &self.grid
    }

    /// `N(t)` and `dN/dt` at `t` of shape `(n, 1)`, by forward-mode tangent propagation.
    pub fn network_with_tangent(&self, t: &Tensor) -> Result<(Tensor, Tensor)> {
        let mut h = t.clone();
        let mut dh = t.ones_like()?;
        let layers = self.mlp.layers();
        for (i, l) in layers.iter().enumerate() {
            let z = l.forward(&h)?;
            let dz = dh.matmul(&l.weight().t()?)?;
            if self.mlp.has_activation(i) {
                h = candle_nn::ops::sigmoid(&z)?;
                // sigma' = sigma (1 - sigma)
                dh = ((&h * (1.0 - &h)?)? * dz)?;
            } else {
                h = z;
                dh = dz;
            }
        }
        Ok((h, dh))
    }

    /// `(x, p, dx/dt, dp/dt)` of the trial solution at `t` (each `(n, 1)`).
    pub fn solution(&self, t: &Tensor) -> Result<[Tensor; 4]> {
        let (n, dn) = self.network_with_tangent(t)?;
        let e = t.neg()?.exp()?;
        let one_minus = (1.0 - &e)?;
        let part = |k: usize, v0: f64| -> Result<(Tensor, Tensor)> {
            let nk = n.narrow(1, k, 1)?;
            let dnk = dn.narrow(1, k, 1)?;
            let v = ((&one_minus * &nk)? + v0)?;
            let dv = ((&e * &nk)? + (&one_minus * dnk)?)?;
            Ok((v, dv))
        };
        let (x, dx) = part(0, self.config.x0)?;
        let (p, dp) = part(1, self.config.p0)?;
        Ok([x, p, dx, dp])
    }

    /// The loss tensor on the grid (differentiable in the weights).
    pub fn loss(&self) -> Result<Tensor> {
        let [x, p, dx, dp] = self.solution(&self.grid)?;
        let r1 = (dx - &p)?;
        let r2 = ((dp + &x)? + (x.powf(3.0)? * self.config.lambda)?)?;
        Ok((r1.sqr()?.mean_all()? + r2.sqr()?.mean_all()?)?)
    }

    /// The loss as a number.
    pub fn loss_value(&self) -> Result<f64> {
        scalar_f64(&self.loss()?)
    }

    /// The float type the solver computes in.
    pub fn dtype(&self) -> DType {
        self.config.dtype
    }
}

/// A scalar tensor of any float dtype as f64.
fn scalar_f64(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// The paper's partition for the DE solver: quasi-node `q = 2` for layer 1, node operators for
/// the other layers.
pub fn paper_partition(layers: usize) -> PartitionSpec {
    PartitionSpec::PerLayer(
        (0..layers)
            .map(|i| {
                let p = if i == 0 {
                    Partition::QuasiNode(2)
                } else {
                    Partition::Node
                };
                ((2 * i).to_string(), p)
            })
            .collect(),
    )
}

/// Steps of a DE trial.
#[derive(Clone, Debug, PartialEq)]
pub struct DeTrialConfig {
    /// The problem.
    pub solver: DeSolverConfig,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// Learning-rate schedule (the paper: `8 / (1000 + t)`).
    pub schedule: LrSchedule,
    /// First recorded step.
    pub t1: usize,
    /// Last recorded step (Koopman stepping starts here).
    pub t2: usize,
    /// Koopman horizon `T`.
    pub horizon: usize,
    /// Optimizer steps run after `t2` (>= `horizon`; longer lets `T_eq` exceed `T`).
    pub after: usize,
    /// What evolves the weights past `t2` (the fitted operators unless a verdict test breaks it).
    pub operators: Operators,
}

impl DeTrialConfig {
    /// The paper's sizes for `optimizer`: t1 = 35,000, t2 = 45,000, T = 2,500 (and 2T after t2).
    pub fn paper(optimizer: OptimizerKind) -> Self {
        Self {
            solver: DeSolverConfig::default(),
            optimizer,
            schedule: LrSchedule::paper(),
            t1: 35_000,
            t2: 45_000,
            horizon: 2_500,
            after: 5_000,
            operators: Operators::Fitted,
        }
    }

    /// Checks the steps.
    pub fn validate(&self) -> Result<()> {
        self.solver.validate()?;
        self.schedule.validate()?;
        if self.t1 >= self.t2 {
            return Err(TrainError::InvalidArgument(format!(
                "t1 = {} must be below t2 = {}",
                self.t1, self.t2
            )));
        }
        if self.horizon == 0 || self.after < self.horizon {
            return Err(TrainError::InvalidArgument(format!(
                "need 1 <= horizon ({}) <= steps after t2 ({})",
                self.horizon, self.after
            )));
        }
        Ok(())
    }
}

/// A trained DE solver with its recorded weights and the optimizer's continuation past `t2`.
pub struct DeRun {
    /// The solver (its weights end at `t2 + after`).
    pub solver: DeSolver,
    /// Snapshots `t1 ..= t2`.
    pub recorder: Recorder,
    /// The trial settings.
    pub config: DeTrialConfig,
    /// Loss after `i` steps past `t2`, `i = 0 ..= after`.
    pub losses: Vec<f64>,
    /// Duration of each optimizer step past `t2` (loss, backward, update).
    pub step_seconds: Vec<f64>,
    /// Weights at `t2 + horizon` from the optimizer.
    pub truth: Vec<f64>,
    /// The optimizer's weights at the [`path_steps`] past `t2` (the curves of Figure 2d).
    pub path: Vec<Vec<f64>>,
}

impl DeRun {
    /// The solver's loss at each of `weights` (flat, in the recorder's order); the solver's own
    /// weights are restored afterwards. Non-finite weights or losses give `+inf`.
    pub fn losses_at<W: AsRef<[f64]>>(&self, weights: &[W]) -> Result<Vec<f64>> {
        let saved = self.recorder.current()?;
        let mut out = Vec::with_capacity(weights.len());
        for w in weights {
            let w = w.as_ref();
            if w.iter().any(|v| !v.is_finite()) {
                out.push(f64::INFINITY);
                continue;
            }
            self.recorder.write_back(w)?;
            let l = self.solver.loss_value()?;
            out.push(if l.is_finite() { l } else { f64::INFINITY });
        }
        self.recorder.write_back(&saved)?;
        Ok(out)
    }
}

/// Figure 2 (b, d) of paper 000 for one run: the weights along the steps past `t2`
/// ([`WeightPaths`]) and their losses.
#[derive(Clone, Debug)]
pub struct DePaths {
    /// The weights.
    pub weights: WeightPaths,
    /// Optimizer loss at each step.
    pub optimizer_loss: Vec<f64>,
    /// Loss of the Koopman weights at each step.
    pub koopman_loss: Vec<f64>,
    /// Loss of the straight-line weights at each step.
    pub line_loss: Vec<f64>,
}

/// The trajectories of Figure 2 (b, d) for `run`, fitted as `fit_config` says; see [`DePaths`].
pub fn de_paths(
    run: &DeRun,
    spec: &PartitionSpec,
    fit_config: &FitConfig,
    device: &Device,
) -> Result<DePaths> {
    let c = &run.config;
    let steps = path_steps(c.horizon);
    let weights = WeightPaths::fit(
        &run.recorder,
        &PartitionPlan::build(run.recorder.params(), spec)?,
        (c.t1, c.t2),
        steps.clone(),
        run.path.clone(),
        fit_config,
        c.operators,
        device,
    )?;
    Ok(DePaths {
        optimizer_loss: steps.iter().map(|&s| run.losses[s]).collect(),
        koopman_loss: run.losses_at(&weights.koopman)?,
        line_loss: run.losses_at(&weights.line)?,
        weights,
    })
}

/// Trains one seed; see the [module docs](self).
pub fn train_de(
    config: &DeTrialConfig,
    seed: u64,
    device: &Device,
    progress: Option<&ProgressBar>,
) -> Result<DeRun> {
    config.validate()?;
    let solver = DeSolver::new(&config.solver, seed, device)?;
    let mut recorder = Recorder::from_varmap(&solver.varmap)?;
    recorder.reserve(config.t2 - config.t1 + 1);
    let mut opt = config
        .optimizer
        .build(solver.varmap.all_vars(), config.schedule.at(0))?;
    let end = config.t2 + config.after;
    let mut losses = Vec::with_capacity(config.after + 1);
    let mut step_seconds = Vec::with_capacity(config.after);
    let mut truth = Vec::new();
    let path_at = path_steps(config.horizon);
    let mut path = Vec::with_capacity(path_at.len());
    for t in 0..=end {
        if t >= config.t2 && path_at.get(path.len()) == Some(&(t - config.t2)) {
            path.push(recorder.current()?);
        }
        if (config.t1..=config.t2).contains(&t) {
            recorder.record(t)?;
        }
        if t == config.t2 + config.horizon {
            truth = recorder.current()?;
        }
        let start = Instant::now();
        let loss = solver.loss()?;
        let value = scalar_f64(&loss)?;
        if !value.is_finite() {
            return Err(TrainError::NonFinite(format!("DE loss at step {t}")));
        }
        if t >= config.t2 {
            losses.push(value);
        }
        if t == end {
            break;
        }
        opt.set_learning_rate(config.schedule.at(t));
        opt.backward_step(&loss)?;
        if t >= config.t2 {
            step_seconds.push(start.elapsed().as_secs_f64());
        }
        if let Some(p) = progress {
            if t % 500 == 0 {
                p.inc(500);
            }
        }
    }
    Ok(DeRun {
        solver,
        recorder,
        config: config.clone(),
        losses,
        step_seconds,
        truth,
        path,
    })
}

/// What Koopman stepping (and the straight-line baseline) achieved on one run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeOutcome {
    /// Optimizer loss at `t2`.
    pub loss_t2: f64,
    /// Optimizer loss at `t2 + T`.
    pub loss_optimizer: f64,
    /// Loss of the Koopman weights at `t2 + T` (step-wise evolution).
    pub loss_koopman: f64,
    /// Loss of the straight-line weights at `t2 + T`.
    pub loss_baseline: f64,
    /// `T_eq` of the Koopman weights.
    pub t_eq: TEq,
    /// `T_eq` of the straight-line weights.
    pub t_eq_baseline: TEq,
    /// Koopman prediction error at `t2 + T`.
    pub error: Option<PredictionError>,
    /// Straight-line prediction error at `t2 + T`.
    pub error_baseline: Option<PredictionError>,
    /// Largest difference between step-wise and jumped (squaring) weights.
    pub step_jump_gap: f64,
    /// Largest difference between step-wise and eigendecomposition-jumped weights.
    pub step_eigen_gap: f64,
    /// Seconds of the fit (median of [`TIMING_RUNS`] runs, as every Koopman time here).
    pub fit_seconds: f64,
    /// Seconds of the first of those fits (cold).
    pub fit_first_seconds: f64,
    /// Seconds of the step-wise evolution over `T`.
    pub loop_seconds: f64,
    /// Seconds of the first step-wise evolution (cold).
    pub loop_first_seconds: f64,
    /// Seconds of the direct jump to `T` by squaring.
    pub jump_seconds: f64,
    /// Seconds of the eigendecompositions (fit work for the eigen jump).
    pub diagonalize_seconds: f64,
    /// Seconds of the eigendecomposition jump to `T`.
    pub eigen_seconds: f64,
    /// Seconds of `T_eq` optimizer steps.
    pub optimizer_seconds: f64,
    /// Mean seconds of one optimizer step.
    pub optimizer_step_seconds: f64,
    /// Eigenvalues moved onto the unit circle.
    pub projected: usize,
    /// Per weight: `(|w_true(t2+T) - w_true(t2)|, |w_koopman - w_true(t2+T)|)`, the points of
    /// Figure 2e.
    pub per_weight: Vec<(f64, f64)>,
}

impl DeOutcome {
    /// Speedup of the step-wise evolution, with or without the fit time.
    pub fn speedup_loop(&self, with_fit: bool) -> f64 {
        self.optimizer_seconds / (self.loop_seconds + if with_fit { self.fit_seconds } else { 0.0 })
    }

    /// Speedup of the direct jump by squaring, with or without the fit time.
    pub fn speedup_jump(&self, with_fit: bool) -> f64 {
        self.optimizer_seconds / (self.jump_seconds + if with_fit { self.fit_seconds } else { 0.0 })
    }

    /// Speedup of the eigendecomposition jump, with or without the fit (and the
    /// eigendecompositions).
    pub fn speedup_eigen(&self, with_fit: bool) -> f64 {
        let fit = self.fit_seconds + self.diagonalize_seconds;
        self.optimizer_seconds / (self.eigen_seconds + if with_fit { fit } else { 0.0 })
    }
}

/// Fits the operators of `spec` on `run` with `fit_config`, evolves `T` steps both ways, and
/// measures everything against the optimizer and the straight-line baseline. The solver's
/// weights are restored afterwards.
pub fn evaluate_de(
    run: &DeRun,
    spec: &PartitionSpec,
    fit_config: &FitConfig,
    device: &Device,
) -> Result<DeOutcome> {
    let c = &run.config;
    let rec = &run.recorder;
    let plan = PartitionPlan::build(rec.params(), spec)?;
    let w2 = rec.snapshot(c.t2)?.to_vec();
    let start_tensor = Tensor::new(w2.as_slice(), device)?;
    let h = c.horizon as u64;
    let (mut stepper, fit_timing) = timed_runs(TIMING_RUNS, || {
        fit(rec, &plan, c.t1, c.t2, fit_config, device)
    })?;
    let ((), diagonalize_timing) = timed_runs(TIMING_RUNS, || stepper.diagonalize())?;
    let (eigen, eigen_timing) = timed_runs(TIMING_RUNS, || {
        stepper.evolve_host(&w2, h, Evolution::Eigen)
    })?;
    let (stepped, loop_timing) = timed_runs(TIMING_RUNS, || {
        to_host(&stepper.evolve(&start_tensor, h, Evolution::Step)?)
    })?;
    let stepped = c.operators.apply(stepped, &w2);
    let (jumped, jump_timing) = timed_runs(TIMING_RUNS, || {
        to_host(&stepper.evolve(&start_tensor, h, Evolution::Jump)?)
    })?;
    let gap = |other: &[f64]| {
        stepped
            .iter()
            .zip(other)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    };
    let step_jump_gap = gap(&jumped);
    let step_eigen_gap = gap(&eigen);
    let baseline = straight_line(&w2, rec.snapshot(c.t2 - 1)?, c.horizon as f64)?;
    let losses = run.losses_at(&[&stepped, &baseline])?;
    let (loss_koopman, loss_baseline) = (losses[0], losses[1]);
    let te = t_eq(&run.losses, loss_koopman)?;
    let te_base = t_eq(&run.losses, loss_baseline)?;
    let finite = |w: &[f64]| w.iter().all(|v| v.is_finite());
    let error = if finite(&stepped) {
        Some(prediction_error(&stepped, &run.truth, &w2)?)
    } else {
        None
    };
    let error_baseline = Some(prediction_error(&baseline, &run.truth, &w2)?);
    Ok(DeOutcome {
        loss_t2: run.losses[0],
        loss_optimizer: run.losses[c.horizon],
        loss_koopman,
        loss_baseline,
        t_eq: te,
        t_eq_baseline: te_base,
        error,
        error_baseline,
        step_jump_gap,
        step_eigen_gap,
        diagonalize_seconds: diagonalize_timing.median,
        eigen_seconds: eigen_timing.median,
        fit_seconds: fit_timing.median,
        fit_first_seconds: fit_timing.first,
        loop_seconds: loop_timing.median,
        loop_first_seconds: loop_timing.first,
        jump_seconds: jump_timing.median,
        optimizer_seconds: equivalent_time(&run.step_seconds, te.value)?,
        optimizer_step_seconds: run.step_seconds.iter().sum::<f64>()
            / run.step_seconds.len().max(1) as f64,
        projected: stepper.projected_eigenvalues(),
        per_weight: run
            .truth
            .iter()
            .zip(&w2)
            .zip(&stepped)
            .map(|((e, s), p)| ((e - s).abs(), (p - e).abs()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use koopman_train::stepping::metrics::median;

    fn body_tangent_matches_fd(dev: &Device) -> Result<()> {
        let s = DeSolver::new(&DeSolverConfig::default(), 3, dev)?;
        let t = Tensor::new(&[[0.3f64], [2.0], [7.5]], dev)?;
        let h = 1e-5;
        let [x, p, dx, dp] = s.solution(&t)?;
        let [xp, pp, _, _] = s.solution(&(&t + h)?)?;
        let [xm, pm, _, _] = s.solution(&(&t - h)?)?;
        let fd_x = ((xp - xm)? / (2.0 * h))?.flatten_all()?.to_vec1::<f64>()?;
        let fd_p = ((pp - pm)? / (2.0 * h))?.flatten_all()?.to_vec1::<f64>()?;
        let (dx, dp) = (
            dx.flatten_all()?.to_vec1::<f64>()?,
            dp.flatten_all()?.to_vec1::<f64>()?,
        );
        for (a, b) in dx.iter().chain(&dp).zip(fd_x.iter().chain(&fd_p)) {
            // central difference: O(h^2) truncation + O(eps / h) round-off
            assert!((a - b).abs() < 1e-8 * (1.0 + b.abs()), "{a} vs {b}");
        }
        // Initial condition holds exactly at t = 0.
        let [x0, p0, _, _] = s.solution(&Tensor::zeros((1, 1), DType::F64, dev)?)?;
        assert_eq!(x0.flatten_all()?.to_vec1::<f64>()?, vec![1.3]);
        assert_eq!(p0.flatten_all()?.to_vec1::<f64>()?, vec![1.0]);
        let _ = (x, p);
        Ok(())
    }
    koopman_core::test_device!(body_tangent_matches_fd, tangent_fd_cpu, tangent_fd_cuda);

    fn body_loss_gradient_matches_fd(dev: &Device) -> Result<()> {
        let s = DeSolver::new(&DeSolverConfig::default(), 5, dev)?;
        let vars = s.varmap.all_vars();
        let grads = s.loss()?.backward()?;
        let h = 1e-6;
        for var in &vars {
            let g = grads
                .get(var)
                .expect("gradient")
                .flatten_all()?
                .to_vec1::<f64>()?;
            let base = var.as_tensor().flatten_all()?.to_vec1::<f64>()?;
            for k in [0, base.len() - 1] {
                let mut v = base.clone();
                v[k] += h;
                var.set(&Tensor::from_vec(v.clone(), var.dims(), dev)?)?;
                let lp = s.loss_value()?;
                v[k] -= 2.0 * h;
                var.set(&Tensor::from_vec(v, var.dims(), dev)?)?;
                let lm = s.loss_value()?;
                var.set(&Tensor::from_vec(base.clone(), var.dims(), dev)?)?;
                let fd = (lp - lm) / (2.0 * h);
                assert!(
                    (g[k] - fd).abs() < 1e-6 * (1.0 + fd.abs()),
                    "{} vs {fd}",
                    g[k]
                );
            }
        }
        Ok(())
    }
    koopman_core::test_device!(
        body_loss_gradient_matches_fd,
        loss_gradient_fd_cpu,
        loss_gradient_fd_cuda
    );

    /// A scaled-down trial: Adadelta trains, Koopman stepping lowers the loss and beats the
    /// straight line; the bad-input paths of the trial are errors.
    #[test]
    fn small_trial_runs_and_bad_input() -> Result<()> {
        let dev = Device::Cpu;
        let cfg = DeTrialConfig {
            t1: 1500,
            t2: 2000,
            horizon: 100,
            after: 150,
            ..DeTrialConfig::paper(OptimizerKind::Adadelta { rho: 0.999 })
        };
        let run = train_de(&cfg, 1, &dev, None)?;
        assert!(run.losses[150] < run.losses[0]);
        let out = evaluate_de(&run, &paper_partition(3), &FitConfig::default(), &dev)?;
        assert!(out.t_eq.success(), "{out:?}");
        assert!(out.step_jump_gap < 1e-8, "{out:?}");
        let (e, b) = (out.error.unwrap(), out.error_baseline.unwrap());
        assert!(e.median_ratio < b.median_ratio, "{e:?} vs {b:?}");
        assert!(median(&[out.t_eq.value]) > 0.0);
        let bad = DeTrialConfig {
            t1: 10,
            t2: 10,
            ..cfg.clone()
        };
        assert!(train_de(&bad, 1, &dev, None).is_err());
        let missing = PartitionSpec::PerLayer(vec![("6".into(), Partition::Node)]);
        assert!(matches!(
            evaluate_de(&run, &missing, &FitConfig::default(), &dev),
            Err(TrainError::UnknownName(_))
        ));
        Ok(())
    }

    /// The f32 path against f64 on one seed: the same trial (Adadelta, t1 = 300, t2 = 400,
    /// T = 50, the paper's partition, largest operator d = 11) trained in f32 and in f64 from the
    /// same initial weights, fitted (f64 on the host, as always) and evolved in the training
    /// dtype ([`KoopmanStepper::cast`](koopman_train::stepping::KoopmanStepper::cast)).
    ///
    /// Bounds, relative 2-norm differences: f32 training rounds the weights and computes the
    /// update in f32 at every step, `<= eps_f32` per step when training does not amplify
    /// perturbations, so `<= t2 eps_f32` at `t2`; the f32 evolution adds `(T + 1) (d + 1)
    /// eps_f32` (see [`CastStepper`](koopman_train::stepping::CastStepper)), so the Koopman weights
    /// differ by at most `(t2 + (T + 1) (d + 1)) eps_f32 = 1.2e-4`. The loss moves by at most
    /// `kappa` times that (`kappa = ||grad L|| ||w|| / L`, measured on the f64 run: 34) plus the
    /// f32 evaluation of the mean over the grid (`points eps_f32`). Measured (CPU, seed 2): w(t2)
    /// 4.4e-7, Koopman weights 2.3e-6, Koopman loss 1.1e-5 (bounds 1.2e-4 and 4.2e-3): the f32
    /// path agrees with f64 to ~1e-5 after 450 steps.
    fn body_f32_trial_against_f64(dev: &Device) -> Result<()> {
        let base = DeTrialConfig {
            t1: 300,
            t2: 400,
            horizon: 50,
            after: 50,
            ..DeTrialConfig::paper(OptimizerKind::Adadelta { rho: 0.999 })
        };
        let mut results = Vec::new();
        let mut kappa = 0.0;
        for dtype in [DType::F64, DType::F32] {
            let cfg = DeTrialConfig {
                solver: DeSolverConfig {
                    dtype,
                    ..Default::default()
                },
                ..base.clone()
            };
            let run = train_de(&cfg, 2, dev, None)?;
            assert_eq!(run.solver.dtype(), dtype);
            let plan = PartitionPlan::build(run.recorder.params(), &paper_partition(3))?;
            let k = fit(
                &run.recorder,
                &plan,
                base.t1,
                base.t2,
                &FitConfig::default(),
                dev,
            )?;
            let w2 = run.recorder.snapshot(base.t2)?.to_vec();
            let w = Tensor::new(w2.as_slice(), dev)?;
            let ko = to_host(
                &k.cast(dtype)?
                    .evolve(&w, base.horizon as u64, Evolution::Step)?,
            )?;
            run.recorder.write_back(&ko)?;
            let loss = run.solver.loss()?;
            if dtype == DType::F64 {
                let grads = loss.backward()?;
                let mut g2 = 0.0;
                for v in run.solver.varmap.all_vars() {
                    if let Some(g) = grads.get(&v) {
                        g2 += scalar_f64(&g.sqr()?.sum_all()?)?;
                    }
                }
                let wn = ko.iter().map(|x| x * x).sum::<f64>().sqrt();
                kappa = g2.sqrt() * wn / scalar_f64(&loss)?;
            }
            let loss = scalar_f64(&loss)?;
            results.push((w2, ko, loss));
        }
        let rel = |a: &[f64], b: &[f64]| {
            let d: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
            (d / b.iter().map(|y| y * y).sum::<f64>()).sqrt()
        };
        let (r64, r32) = (&results[0], &results[1]);
        let (train, ko) = (rel(&r32.0, &r64.0), rel(&r32.1, &r64.1));
        let loss = (r32.2 - r64.2).abs() / r64.2;
        let eps32 = f64::from(f32::EPSILON);
        let d = 11.0;
        let bound_w = (base.t2 as f64 + (base.horizon as f64 + 1.0) * (d + 1.0)) * eps32;
        let bound_loss = kappa * bound_w + DeSolverConfig::default().points as f64 * eps32;
        eprintln!(
            "f32 vs f64 DE trial: w(t2) {train:.2e}, Koopman weights {ko:.2e} (bound {bound_w:.2e}), \
             Koopman loss {loss:.2e} (kappa {kappa:.2}, bound {bound_loss:.2e})"
        );
        assert!(
            train > 0.1 * eps32,
            "the f32 run did not train in f32: {train:e}"
        );
        let bad = DeSolverConfig {
            dtype: DType::U32,
            ..Default::default()
        };
        assert!(matches!(
            DeSolver::new(&bad, 0, dev),
            Err(TrainError::InvalidArgument(_))
        ));
        assert!(ko < bound_w, "Koopman weights: {ko:e} >= {bound_w:e}");
        assert!(
            loss < bound_loss,
            "Koopman loss: {loss:e} >= {bound_loss:e}"
        );
        Ok(())
    }
    koopman_core::test_device!(
        body_f32_trial_against_f64,
        f32_trial_against_f64_cpu,
        f32_trial_against_f64_cuda
    );
}
