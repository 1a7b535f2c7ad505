//! A training loop for any candle model that alternates optimizer steps and Koopman jumps.
//!
//! [`KoopmanTrainer`] wraps the model's named variables and any [`candle_nn::Optimizer`]. Each
//! [`step`](KoopmanTrainer::step) is an ordinary optimizer step whose weights are recorded;
//! every `window` steps the trainer fits the partitioned operators on the window and looks at
//! their spectra. When every important eigenvalue (modulus >= `important`) lies within
//! `basin_tolerance` of the unit circle and none outside `1 + basin_tolerance` (the weights are
//! in a basin), it evaluates the loss after direct jumps of each candidate horizon, keeps the
//! best one if it lowers the loss, and otherwise restores the weights and carries on with the
//! optimizer. The window then starts afresh. The first `warmup` steps (the transient) are not
//! recorded. The candidate horizons share one set of squarings
//! ([`KoopmanStepper::evolve_host_horizons`](super::fit::KoopmanStepper::evolve_host_horizons)),
//! and [`KoopmanTrainer::timings`] says where the trainer's own time went (recording, fits,
//! spectra, jumps, evaluations), to weigh against the optimizer steps it saved.
//!
//! ```
//! use candle_core::{DType, Device, Module, Tensor};
//! use candle_nn::{Optimizer, VarBuilder, VarMap};
//! use koopman_train::stepping::wrapper::{KoopmanTrainer, WrapperConfig};
//!
//! # fn main() -> koopman_train::Result<()> {
//! let dev = Device::Cpu;
//! let vm = VarMap::new();
//! let lin = candle_nn::linear(2, 1, VarBuilder::from_varmap(&vm, DType::F64, &dev).pp("0"))?;
//! koopman_core::nn::init_seeded(&vm, 0)?; // reproducible start
//! let x = Tensor::new(&[[1.0f64, 0.0], [0.0, 1.0], [1.0, 1.0]], &dev)?;
//! let y = Tensor::new(&[[1.0f64], [-1.0], [0.0]], &dev)?;
//! let opt = candle_nn::SGD::new(vm.all_vars(), 0.05)?;
//! let cfg = WrapperConfig { window: 20, horizons: vec![10, 40, 160], ..Default::default() };
//! let mut trainer = KoopmanTrainer::from_varmap(&vm, opt, cfg)?;
//! let loss = || -> koopman_train::Result<Tensor> { Ok((lin.forward(&x)? - &y)?.sqr()?.mean_all()?) };
//! let first = loss()?.to_scalar::<f64>()?;
//! for _ in 0..100 {
//!     trainer.step(loss)?;
//! }
//! assert!(loss()?.to_scalar::<f64>()? < first);
//! println!("{:?}", trainer.stats());
//! # Ok(()) }
//! ```

use super::fit::{fit, FitConfig};
use super::partition::{Partition, PartitionPlan, PartitionSpec};
use super::recorder::{named_vars, Recorder};
use crate::error::{Result, TrainError};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::Optimizer;
use std::time::Instant;

/// Settings of the [`KoopmanTrainer`].
#[derive(Clone, Debug, PartialEq)]
pub struct WrapperConfig {
    /// Optimizer steps before the first window starts (the transient, which no basin test
    /// needs to look at; the paper starts recording at `t1` for the same reason).
    pub warmup: usize,
    /// Optimizer steps per fit window.
    pub window: usize,
    /// Candidate jump lengths (optimizer-step equivalents).
    pub horizons: Vec<u64>,
    /// Eigenvalues with modulus at or above this are "important".
    pub important: f64,
    /// Important eigenvalues must lie within this distance of the unit circle.
    pub basin_tolerance: f64,
    /// Partition of the model.
    pub partition: PartitionSpec,
    /// Fit settings.
    pub fit: FitConfig,
}

impl Default for WrapperConfig {
    fn default() -> Self {
        Self {
            warmup: 0,
            window: 200,
            horizons: vec![100, 200, 400, 800],
            important: 0.9,
            basin_tolerance: 0.01,
            partition: PartitionSpec::uniform(Partition::Node),
            fit: FitConfig::default(),
        }
    }
}

impl WrapperConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.window < 2 {
            return Err(TrainError::InvalidArgument(format!(
                "window must be >= 2, got {}",
                self.window
            )));
        }
        if self.horizons.is_empty() || self.horizons.contains(&0) {
            return Err(TrainError::InvalidArgument(
                "horizons must be non-empty and >= 1".into(),
            ));
        }
        let ok = |x: f64| x.is_finite() && x >= 0.0;
        if !(ok(self.important) && ok(self.basin_tolerance)) {
            return Err(TrainError::InvalidArgument(
                "important and basin_tolerance must be finite and >= 0".into(),
            ));
        }
        self.fit.validate()
    }
}

/// What one [`KoopmanTrainer::step`] did besides the optimizer step.
#[derive(Clone, Debug, PartialEq)]
pub enum StepEvent {
    /// Only the optimizer step.
    Optimizer,
    /// A Koopman jump of `horizon` steps was kept.
    Jumped {
        /// Jump length.
        horizon: u64,
        /// Loss before the jump.
        before: f64,
        /// Loss after it.
        after: f64,
    },
    /// The window was fitted but no jump kept.
    Rejected {
        /// Why.
        reason: String,
    },
}

/// Counts of what the trainer did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WrapperStats {
    /// Optimizer steps.
    pub optimizer_steps: usize,
    /// Jumps kept.
    pub jumps: usize,
    /// Sum of the kept jump lengths.
    pub jumped_steps: u64,
    /// Windows outside a basin.
    pub not_in_basin: usize,
    /// Windows whose jumps all raised the loss.
    pub worse: usize,
}

/// Wall time the trainer spent besides the optimizer's steps, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WrapperTimings {
    /// Copying the weights into the recorder after every step.
    pub record: f64,
    /// Fitting the operators of the windows.
    pub fit: f64,
    /// Eigenvalues of the fitted operators (the basin test).
    pub spectrum: f64,
    /// Evolving the weights to the candidate horizons and writing them back.
    pub jump: f64,
    /// The evaluation losses that score the jumps.
    pub evaluation: f64,
}

impl WrapperTimings {
    /// Sum of the parts.
    pub fn total(&self) -> f64 {
        self.record + self.fit + self.spectrum + self.jump + self.evaluation
    }
}

/// The training wrapper; see the [module docs](self).
pub struct KoopmanTrainer<O: Optimizer> {
    recorder: Recorder,
    plan: PartitionPlan,
    optimizer: O,
    config: WrapperConfig,
    window_step: usize,
    stats: WrapperStats,
    timings: WrapperTimings,
    device: Device,
    last_loss: f64,
}

impl<O: Optimizer> KoopmanTrainer<O> {
    /// Wraps the named variables of a model and an optimizer over them. Fails when the
    /// partition names a layer the model does not have.
    pub fn new(vars: Vec<(String, Var)>, optimizer: O, config: WrapperConfig) -> Result<Self> {
        config.validate()?;
        let device = vars
            .first()
            .map(|(_, v)| v.device().clone())
            .ok_or_else(|| TrainError::InvalidArgument("no variables to train".into()))?;
        let recorder = Recorder::new(vars)?;
        let plan = PartitionPlan::build(recorder.params(), &config.partition)?;
        if plan.max_size() > config.window {
            return Err(TrainError::NotEnoughData(format!(
                "a window of {} steps cannot fit operators of size {}",
                config.window,
                plan.max_size()
            )));
        }
        Ok(Self {
            recorder,
            plan,
            optimizer,
            config,
            window_step: 0,
            stats: WrapperStats::default(),
            timings: WrapperTimings::default(),
            device,
            last_loss: f64::NAN,
        })
    }

    /// Wraps every variable of a `VarMap`.
    pub fn from_varmap(
        varmap: &candle_nn::VarMap,
        optimizer: O,
        config: WrapperConfig,
    ) -> Result<Self> {
        Self::new(named_vars(varmap)?, optimizer, config)
    }

    /// The wrapped optimizer (to change its learning rate, say).
    pub fn optimizer_mut(&mut self) -> &mut O {
        &mut self.optimizer
    }

    /// The training loss computed by the last step (before its update).
    pub fn last_loss(&self) -> f64 {
        self.last_loss
    }

    /// Optimizer steps plus kept jump lengths: the step count a learning-rate schedule should
    /// see.
    pub fn effective_step(&self) -> u64 {
        self.stats.optimizer_steps as u64 + self.stats.jumped_steps
    }

    /// What the trainer did so far.
    pub fn stats(&self) -> WrapperStats {
        self.stats
    }

    /// Where the trainer's own time went so far.
    pub fn timings(&self) -> WrapperTimings {
        self.timings
    }

    /// One optimizer step on `loss()`, then a Koopman attempt when the window is full; `loss`
    /// also scores the jumps (deterministic losses).
    pub fn step<F>(&mut self, mut loss: F) -> Result<StepEvent>
    where
        F: FnMut() -> Result<Tensor>,
    {
        let l = loss()?;
        self.last_loss = scalar(&l)?;
        self.optimizer.backward_step(&l)?;
        self.after_step(|| scalar(&loss()?))
    }

    /// One optimizer step on `train_loss()` (a mini-batch, say) and a Koopman attempt scored by
    /// `eval_loss()` (a fixed evaluation set).
    pub fn step_with<F, G>(&mut self, mut train_loss: F, eval_loss: G) -> Result<StepEvent>
    where
        F: FnMut() -> Result<Tensor>,
        G: FnMut() -> Result<f64>,
    {
        let l = train_loss()?;
        self.last_loss = scalar(&l)?;
        self.optimizer.backward_step(&l)?;
        self.after_step(eval_loss)
    }

    fn after_step<G>(&mut self, mut eval: G) -> Result<StepEvent>
    where
        G: FnMut() -> Result<f64>,
    {
        self.stats.optimizer_steps += 1;
        if self.stats.optimizer_steps <= self.config.warmup {
            return Ok(StepEvent::Optimizer);
        }
        let clock = Instant::now();
        self.recorder.record(self.window_step)?;
        self.timings.record += clock.elapsed().as_secs_f64();
        self.window_step += 1;
        if self.recorder.len() <= self.config.window {
            return Ok(StepEvent::Optimizer);
        }
        let event = self.attempt(&mut eval);
        // Start a fresh window from the current weights, whatever happened.
        let clock = Instant::now();
        self.recorder.clear();
        self.recorder.record(0)?;
        self.timings.record += clock.elapsed().as_secs_f64();
        self.window_step = 1;
        event
    }

    fn attempt<G>(&mut self, eval: &mut G) -> Result<StepEvent>
    where
        G: FnMut() -> Result<f64>,
    {
        let (t1, t2) = self
            .recorder
            .steps()
            .ok_or_else(|| TrainError::NotEnoughData("empty window".into()))?;
        let clock = Instant::now();
        let stepper = fit(
            &self.recorder,
            &self.plan,
            t1,
            t2,
            &self.config.fit,
            &self.device,
        )?;
        self.timings.fit += clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        let (tol, imp) = (self.config.basin_tolerance, self.config.important);
        let in_basin = stepper.eigenvalues()?.iter().flatten().all(|z| {
            let r = z.norm();
            r <= 1.0 + tol && (r < imp || r >= 1.0 - tol)
        });
        self.timings.spectrum += clock.elapsed().as_secs_f64();
        if !in_basin {
            self.stats.not_in_basin += 1;
            return Ok(StepEvent::Rejected {
                reason: "not in a basin (an important eigenvalue off the unit circle)".into(),
            });
        }
        let w = self.recorder.snapshot(t2)?.to_vec();
        let before = self.timed_eval(eval)?;
        let mut best: Option<(u64, f64, Vec<f64>)> = None;
        let clock = Instant::now();
        let candidates = stepper.evolve_host_horizons(&w, &self.config.horizons)?;
        self.timings.jump += clock.elapsed().as_secs_f64();
        for (h, cand) in self.config.horizons.clone().into_iter().zip(candidates) {
            if cand.iter().any(|v| !v.is_finite()) {
                continue;
            }
            let clock = Instant::now();
            self.recorder.write_back(&cand)?;
            self.timings.jump += clock.elapsed().as_secs_f64();
            let l = self.timed_eval(eval)?;
            if l.is_finite() && best.as_ref().is_none_or(|b| l < b.1) {
                best = Some((h, l, cand));
            }
        }
        let clock = Instant::now();
        let event = match best {
            Some((horizon, after, cand)) if after < before => {
                self.recorder.write_back(&cand)?;
                self.stats.jumps += 1;
                self.stats.jumped_steps += horizon;
                StepEvent::Jumped {
                    horizon,
                    before,
                    after,
                }
            }
            _ => {
                self.recorder.write_back(&w)?;
                self.stats.worse += 1;
                StepEvent::Rejected {
                    reason: "every jump raised the loss".into(),
                }
            }
        };
        self.timings.jump += clock.elapsed().as_secs_f64();
        Ok(event)
    }

    fn timed_eval<G>(&mut self, eval: &mut G) -> Result<f64>
    where
        G: FnMut() -> Result<f64>,
    {
        let clock = Instant::now();
        let l = eval();
        self.timings.evaluation += clock.elapsed().as_secs_f64();
        l
    }
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Module;
    use candle_nn::{VarBuilder, VarMap};

    #[test]
    fn jumps_on_a_quadratic_and_rejects_bad_config() -> Result<()> {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let lin = candle_nn::linear(3, 2, VarBuilder::from_varmap(&vm, DType::F64, &dev).pp("0"))?;
        koopman_core::nn::init_seeded(&vm, 1)?;
        let x = Tensor::new(
            &[
                [1.0f64, 0.5, -1.0],
                [0.2, 1.0, 0.3],
                [-0.4, 0.1, 1.0],
                [1.0, 1.0, 1.0],
            ],
            &dev,
        )?;
        let y = Tensor::new(&[[1.0f64, 0.0], [0.0, 1.0], [0.5, -0.5], [1.0, 1.0]], &dev)?;
        let loss = || -> Result<Tensor> { Ok((lin.forward(&x)? - &y)?.sqr()?.mean_all()?) };
        let opt = candle_nn::SGD::new(vm.all_vars(), 0.02)?;
        let cfg = WrapperConfig {
            window: 30,
            horizons: vec![30, 120, 480],
            basin_tolerance: 0.05,
            ..Default::default()
        };
        let mut tr = KoopmanTrainer::from_varmap(&vm, opt, cfg.clone())?;
        let first = scalar(&loss()?)?;
        let mut jumped = false;
        for _ in 0..200 {
            if let StepEvent::Jumped { before, after, .. } = tr.step(loss)? {
                assert!(after < before);
                jumped = true;
            }
        }
        assert!(jumped, "{:?}", tr.stats());
        assert!(scalar(&loss()?)? < first);
        // A partition naming a missing layer, and a window too short for the operators.
        let bad = WrapperConfig {
            partition: PartitionSpec::PerLayer(vec![("1".into(), Partition::Node)]),
            ..cfg.clone()
        };
        let opt = candle_nn::SGD::new(vm.all_vars(), 0.02)?;
        assert!(matches!(
            KoopmanTrainer::from_varmap(&vm, opt, bad),
            Err(TrainError::UnknownName(_))
        ));
        let short = WrapperConfig { window: 3, ..cfg };
        let opt = candle_nn::SGD::new(vm.all_vars(), 0.02)?;
        assert!(KoopmanTrainer::from_varmap(&vm, opt, short).is_err());
        Ok(())
    }
}
