//! Paper 000's problems, each with a trial that measures Koopman stepping (`koopman_train::stepping`)
//! against the optimizer and the straight-line baseline: the NN differential-equation solver
//! ([`de_solver`]), the MNIST classifier ([`classifier`]) and the perceptron ([`perceptron`]).
//!
//! They are the paper's experiments, not part of the method a user of koopman-train calls, so they
//! live here beside the experiments that run them (and `perf`, which times the DE solver).

pub mod classifier;
pub mod de_solver;
pub mod perceptron;

use candle_core::Device;
use koopman_train::stepping::fit::{fit, straight_line, FitConfig};
use koopman_train::stepping::partition::PartitionPlan;
use koopman_train::stepping::recorder::Recorder;
use koopman_train::Result;

/// Steps past `t2` at which the figures sample the trajectories: `0 ..= horizon` in at most 50
/// equal intervals.
pub fn path_steps(horizon: usize) -> Vec<usize> {
    let intervals = horizon.clamp(1, 50);
    (0..=intervals).map(|k| k * horizon / intervals).collect()
}

/// The weights along the [`path_steps`] past `t2` (Figures 2d and 3b of paper 000): from the
/// optimizer, from Koopman stepping (evolved by jumps to each step) and from the straight line
/// through `w(t2 - 1)` and `w(t2)`.
#[derive(Clone, Debug)]
pub struct WeightPaths {
    /// Steps past `t2`.
    pub steps: Vec<usize>,
    /// Optimizer weights at each step.
    pub optimizer: Vec<Vec<f64>>,
    /// Koopman weights at each step.
    pub koopman: Vec<Vec<f64>>,
    /// Straight-line weights at each step.
    pub line: Vec<Vec<f64>>,
}

impl WeightPaths {
    /// Fits the operators of `plan` on `recorder`'s snapshots `t1 ..= t2` as `fit_config` says
    /// and evolves `w(t2)` to each of `steps` (`operators` may replace them by the identity);
    /// `optimizer` holds the optimizer's weights at the same steps.
    #[allow(clippy::too_many_arguments)]
    pub fn fit(
        recorder: &Recorder,
        plan: &PartitionPlan,
        (t1, t2): (usize, usize),
        steps: Vec<usize>,
        optimizer: Vec<Vec<f64>>,
        fit_config: &FitConfig,
        operators: Operators,
        device: &Device,
    ) -> Result<Self> {
        let w2 = recorder.snapshot(t2)?.to_vec();
        let w1 = recorder.snapshot(t2 - 1)?;
        let stepper = fit(recorder, plan, t1, t2, fit_config, device)?;
        let horizons: Vec<u64> = steps.iter().map(|&s| s as u64).collect();
        let koopman = stepper
            .evolve_host_horizons(&w2, &horizons)?
            .into_iter()
            .map(|w| operators.apply(w, &w2))
            .collect();
        let line = steps
            .iter()
            .map(|&s| straight_line(&w2, w1, s as f64))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            steps,
            optimizer,
            koopman,
            line,
        })
    }
}

/// What carries the weights past `t2` in a trial.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Operators {
    /// The Koopman operators fitted on the recorded window (the method).
    #[default]
    Fitted,
    /// The identity operator: the weights stay at `w(t2)`, so `T_eq = 0`. The broken input of
    /// the verdict tests ([`RunContext::broken_input`](crate::report::RunContext::broken_input)).
    Identity,
}

impl Operators {
    /// The trial's operators for a run: [`Operators::Identity`] on a broken-input run.
    pub fn for_run(ctx: &crate::report::RunContext) -> Self {
        if ctx.broken_input {
            Self::Identity
        } else {
            Self::Fitted
        }
    }

    /// `evolved` (the fitted operators' weights past `t2`), or `w2` for the identity operator.
    pub fn apply(self, evolved: Vec<f64>, w2: &[f64]) -> Vec<f64> {
        match self {
            Self::Fitted => evolved,
            Self::Identity => w2.to_vec(),
        }
    }
}
