//! Koopman spectra of training (paper 001, section 3): a [`TrainingObserver`] records the weights
//! and the training loss of any candle model once per epoch; DMD_RRR then gives the Koopman
//! spectrum of (a) the weights (full-state observable) and (b) the delay-embedded loss. A
//! [`ConvergenceMonitor`] watches the **important** eigenvalues (the largest amplitudes, i.e.
//! coefficients in the reconstruction of the first snapshot of unit-norm modes) and reports when a
//! given fraction of them lies within `tol` of 1 (a fixed point of the training map), usable as an
//! early-stopping signal.
//!
//! [`run_epoch`] is the plain shuffled mini-batch epoch used with the observer (any
//! [`candle_nn::Optimizer`], a hook after every optimizer step, e.g. a pruning mask).
//!
//! ```
//! use candle_core::{DType, Device, Tensor, Var};
//! use koopman_train::analysis::observer::{
//!     ConvergenceConfig, ConvergenceMonitor, Observable, TrainingObserver,
//! };
//!
//! # fn main() -> koopman_train::Result<()> {
//! // A "training run" converging geometrically to a fixed point: w_t = w* + 0.5^t d.
//! let w = Var::from_tensor(&Tensor::zeros(3, DType::F64, &Device::Cpu)?)?;
//! let mut obs = TrainingObserver::new(vec![("w".into(), w.clone())])?;
//! let mut monitor = ConvergenceMonitor::new(ConvergenceConfig {
//!     observable: Observable::Weights,
//!     important: 1,
//!     min_snapshots: 4,
//!     ..Default::default()
//! })?;
//! for t in 0..12 {
//!     let c = 0.5f64.powi(t);
//!     w.set(&Tensor::new(&[1.0 + c, 2.0 - c, 3.0 + 2.0 * c], &Device::Cpu)?)?;
//!     obs.record(c)?;
//!     monitor.check(&obs)?;
//! }
//! let fit = obs.weight_fit(12, &Default::default())?;
//! let mut moduli: Vec<f64> = fit.eigenvalues.iter().map(|l| l.norm()).collect();
//! moduli.sort_by(f64::total_cmp);
//! assert!((moduli[0] - 0.5).abs() < 1e-8 && (moduli[1] - 1.0).abs() < 1e-8);
//! assert!(monitor.fired_at().is_some());
//! # Ok(()) }
//! ```

use crate::error::{Result, TrainError};
use crate::stepping::recorder::{named_vars, Recorder};
use candle_core::{Device, Tensor, Var};
use candle_nn::Optimizer;
use koopman_core::dmd::{dmd_rrr, hankel_dmd, HankelConfig, HankelEstimator, RrrConfig};
use koopman_core::faer::Mat;
use koopman_core::nn::{optimizer_step, shuffled_batches};
use koopman_core::spectrum::Spectrum;
use koopman_core::KoopmanFit;

/// Per-epoch snapshots of a set of named variables (a [`Recorder`], the one recorder of
/// training in this crate) and of the training loss.
#[derive(Clone, Debug)]
pub struct TrainingObserver {
    weights: Recorder,
    losses: Vec<f64>,
}

impl TrainingObserver {
    /// An observer of `vars` (name, variable), flattened and concatenated in name order.
    pub fn new(vars: Vec<(String, Var)>) -> Result<Self> {
        if vars.is_empty() {
            return Err(TrainError::InvalidArgument(
                "an observer needs at least one variable".into(),
            ));
        }
        Ok(Self {
            weights: Recorder::new(vars)?,
            losses: Vec::new(),
        })
    }

    /// An observer of the variables of `varmap` whose names pass `keep`, in name order.
    pub fn from_varmap(varmap: &candle_nn::VarMap, keep: impl Fn(&str) -> bool) -> Result<Self> {
        Self::new(
            named_vars(varmap)?
                .into_iter()
                .filter(|(k, _)| keep(k))
                .collect(),
        )
    }

    /// The first `snapshots` records re-targeted onto other variables of the same shapes (a
    /// copy of the model forked at that epoch), so the algorithms that write weights act on the
    /// copy.
    pub fn fork(&self, snapshots: usize, vars: Vec<(String, Var)>) -> Result<Self> {
        self.check_count(snapshots, 1, "fork")?;
        Ok(Self {
            weights: self.weights.fork(snapshots, vars)?,
            losses: self.losses[..snapshots].to_vec(),
        })
    }

    /// The observed variables, in name order.
    pub fn vars(&self) -> &[(String, Var)] {
        self.weights.vars()
    }

    /// Number of scalar parameters in one snapshot.
    pub fn param_count(&self) -> usize {
        self.weights.num_params()
    }

    /// Number of recorded snapshots.
    pub fn len(&self) -> usize {
        self.losses.len()
    }

    /// Whether nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.losses.is_empty()
    }

    /// The current values of the variables, flattened (f64).
    pub fn current(&self) -> Result<Vec<f64>> {
        self.weights.current()
    }

    /// Records the current weights and the training loss `loss` at them (snapshot `t` is the
    /// state at the beginning of epoch `t`).
    pub fn record(&mut self, loss: f64) -> Result<()> {
        if !loss.is_finite() {
            return Err(TrainError::NonFinite(format!(
                "training loss at snapshot {}",
                self.len()
            )));
        }
        self.weights.record(self.len())?;
        self.losses.push(loss);
        Ok(())
    }

    /// The recorded losses.
    pub fn losses(&self) -> &[f64] {
        &self.losses
    }

    /// Snapshot `t` of the weights.
    pub fn weights(&self, t: usize) -> Result<&[f64]> {
        if t >= self.len() {
            return Err(TrainError::NotEnoughData(format!(
                "snapshot {t} requested, {} recorded",
                self.len()
            )));
        }
        self.weights.snapshot(t)
    }

    fn check_count(&self, snapshots: usize, needed: usize, what: &str) -> Result<()> {
        if snapshots < needed {
            return Err(TrainError::NotEnoughData(format!(
                "{what}: {snapshots} snapshots, at least {needed} are needed"
            )));
        }
        if snapshots > self.len() {
            return Err(TrainError::NotEnoughData(format!(
                "{what}: {snapshots} snapshots requested, only {} recorded",
                self.len()
            )));
        }
        Ok(())
    }

    /// The first `snapshots` weight snapshots as columns (`params x snapshots`).
    pub fn weight_matrix(&self, snapshots: usize) -> Result<Mat<f64>> {
        self.check_count(snapshots, 1, "weight matrix")?;
        let columns = (0..snapshots)
            .map(|t| self.weights(t))
            .collect::<Result<Vec<_>>>()?;
        Ok(Mat::from_fn(self.param_count(), snapshots, |i, j| {
            columns[j][i]
        }))
    }

    /// DMD_RRR of the first `snapshots` weight snapshots (pairs `(w_t, w_{t+1})`).
    pub fn weight_fit(&self, snapshots: usize, config: &RrrConfig) -> Result<KoopmanFit> {
        self.check_count(snapshots, 2, "weight spectrum")?;
        let w = self.weight_matrix(snapshots)?;
        Ok(dmd_rrr(
            w.as_ref().subcols(0, snapshots - 1),
            w.as_ref().subcols(1, snapshots - 1),
            config,
        )?)
    }

    /// Hankel DMD_RRR of the first `snapshots` losses with a window of `delays` losses; needs
    /// more snapshots than the window length.
    pub fn loss_fit(
        &self,
        snapshots: usize,
        delays: usize,
        config: &RrrConfig,
    ) -> Result<KoopmanFit> {
        if delays == 0 {
            return Err(TrainError::InvalidArgument(
                "delay window length must be >= 1".into(),
            ));
        }
        self.check_count(snapshots, delays + 1, "delay-embedded loss spectrum")?;
        let l = Mat::from_fn(1, snapshots, |_, j| self.losses[j]);
        Ok(hankel_dmd(
            &[l.as_ref()],
            &HankelConfig {
                delays,
                estimator: HankelEstimator::Rrr(config.clone()),
            },
        )?)
    }
}

/// Which observable the monitor analyses.
#[derive(Clone, Debug, PartialEq)]
pub enum Observable {
    /// The full weight vector.
    Weights,
    /// The training loss, delay-embedded with this window length.
    Loss {
        /// Window length.
        delays: usize,
    },
}

/// Settings of [`ConvergenceMonitor`].
#[derive(Clone, Debug, PartialEq)]
pub struct ConvergenceConfig {
    /// The observable.
    pub observable: Observable,
    /// How many eigenvalues of largest amplitude count as important.
    pub important: usize,
    /// Distance to 1 within which an eigenvalue counts as "at 1".
    pub tol: f64,
    /// The monitor fires when at least this fraction of the important eigenvalues is at 1.
    pub fraction: f64,
    /// Checks with fewer snapshots report but never fire.
    pub min_snapshots: usize,
    /// DMD_RRR settings.
    pub rrr: RrrConfig,
}

impl Default for ConvergenceConfig {
    fn default() -> Self {
        Self {
            observable: Observable::Weights,
            important: 5,
            tol: 0.05,
            fraction: 0.4,
            min_snapshots: 10,
            // Rank by s_i / s_1 > 1e-2 of the column-scaled snapshots: a full-rank fit of a
            // training trajectory adds spurious high-residual pairs whose amplitudes rival the
            // physical modes.
            rrr: RrrConfig {
                tol: 1e-2,
                ..Default::default()
            },
        }
    }
}

impl ConvergenceConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.important == 0 {
            return Err(TrainError::InvalidArgument(
                "the number of important eigenvalues must be >= 1".into(),
            ));
        }
        koopman_core::validate::positive("distance to 1", self.tol)?;
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return Err(TrainError::InvalidArgument(format!(
                "firing fraction must lie in (0, 1], got {}",
                self.fraction
            )));
        }
        if let Observable::Loss { delays: 0 } = self.observable {
            return Err(TrainError::InvalidArgument(
                "delay window length must be >= 1".into(),
            ));
        }
        if self.min_snapshots < 2 {
            return Err(TrainError::InvalidArgument(
                "a spectrum needs at least 2 snapshots (min_snapshots >= 2)".into(),
            ));
        }
        Ok(self.rrr.validate()?)
    }
}

/// The important eigenvalues of a fit: the `k` of largest amplitude, and the fraction of them
/// within `tol` of 1.
pub fn important_near_one(fit: &KoopmanFit, k: usize, tol: f64) -> (Spectrum, f64) {
    let top = fit.spectrum().top_by_amplitude(k);
    let fraction = if top.is_empty() {
        0.0
    } else {
        top.count_near_one(tol) as f64 / top.len() as f64
    };
    (top, fraction)
}

/// One check of the monitor.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvergenceCheck {
    /// Snapshots analysed.
    pub snapshots: usize,
    /// The important eigenvalues (largest amplitude first).
    pub important: Spectrum,
    /// Fraction of them within `tol` of 1.
    pub fraction_near_one: f64,
    /// Whether this check meets the firing criterion.
    pub converged: bool,
}

/// Watches the spectrum of a [`TrainingObserver`] and fires once when the important eigenvalues
/// cluster at 1.
#[derive(Clone, Debug)]
pub struct ConvergenceMonitor {
    config: ConvergenceConfig,
    history: Vec<ConvergenceCheck>,
    fired_at: Option<usize>,
}

impl ConvergenceMonitor {
    /// A monitor with validated settings.
    pub fn new(config: ConvergenceConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            history: Vec::new(),
            fired_at: None,
        })
    }

    /// The spectrum of the first `snapshots` records for the configured observable.
    pub fn fit(&self, observer: &TrainingObserver, snapshots: usize) -> Result<KoopmanFit> {
        match self.config.observable {
            Observable::Weights => observer.weight_fit(snapshots, &self.config.rrr),
            Observable::Loss { delays } => observer.loss_fit(snapshots, delays, &self.config.rrr),
        }
    }

    /// Analyses all snapshots recorded so far; `None` while there are too few to fit (fewer than
    /// 2, or not more than the delay window).
    pub fn check(&mut self, observer: &TrainingObserver) -> Result<Option<&ConvergenceCheck>> {
        let m = observer.len();
        let needed = match self.config.observable {
            Observable::Weights => 2,
            Observable::Loss { delays } => delays + 1,
        };
        if m < needed {
            return Ok(None);
        }
        let fit = self.fit(observer, m)?;
        let (important, fraction) =
            important_near_one(&fit, self.config.important, self.config.tol);
        let converged = m >= self.config.min_snapshots && fraction >= self.config.fraction;
        if converged && self.fired_at.is_none() {
            self.fired_at = Some(m);
        }
        self.history.push(ConvergenceCheck {
            snapshots: m,
            important,
            fraction_near_one: fraction,
            converged,
        });
        Ok(self.history.last())
    }

    /// The snapshot count at which the monitor first fired.
    pub fn fired_at(&self) -> Option<usize> {
        self.fired_at
    }

    /// Every check so far.
    pub fn history(&self) -> &[ConvergenceCheck] {
        &self.history
    }
}

/// One epoch of shuffled mini-batches over `n` samples: for each batch, `loss(indices)` (a `u32`
/// index tensor on `device`) gives a scalar loss, `optimizer` steps on it, then `after_step` runs
/// (e.g. re-applying a pruning mask). Returns the mean batch loss.
pub fn run_epoch<O, F, G>(
    optimizer: &mut O,
    n: usize,
    batch_size: usize,
    rng: &mut rand::rngs::StdRng,
    device: &Device,
    mut loss: F,
    mut after_step: G,
) -> Result<f64>
where
    O: Optimizer,
    F: FnMut(&Tensor) -> Result<Tensor>,
    G: FnMut() -> Result<()>,
{
    if n == 0 || batch_size == 0 {
        return Err(TrainError::InvalidArgument(format!(
            "an epoch needs samples and a batch size >= 1, got {n} and {batch_size}"
        )));
    }
    let mut order: Vec<u32> = (0..n as u32).collect();
    let batches = shuffled_batches(&mut order, batch_size, rng, device)?;
    let mut sum = 0.0;
    for (step, idx) in batches.iter().enumerate() {
        sum += optimizer_step(optimizer, &loss(idx)?, step)?;
        after_step()?;
    }
    Ok(sum / batches.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;
    use koopman_core::c64;

    fn synthetic(steps: usize) -> Result<TrainingObserver> {
        // Weights of dimension 6 relaxing to a fixed point with rates 0.3 and 0.8 (a rotation
        // at rate 0.8 in a 2-D subspace).
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::zeros((2, 3), DType::F64, &dev)?)?;
        let mut obs = TrainingObserver::new(vec![("w".into(), w.clone())])?;
        for t in 0..steps {
            let a = 0.3f64.powi(t as i32);
            let (r, th) = (0.8f64.powi(t as i32), 0.4 * t as f64);
            let v = [
                1.0 + a,
                -2.0 + r * th.cos(),
                0.5 + r * th.sin(),
                3.0 - a,
                1.0 + 0.5 * r * th.cos(),
                2.0,
            ];
            w.set(&Tensor::from_vec(v.to_vec(), (2, 3), &dev)?)?;
            obs.record(a + r)?;
        }
        Ok(obs)
    }

    #[test]
    fn weight_spectrum_matches_closed_form() -> Result<()> {
        let obs = synthetic(20)?;
        assert_eq!(obs.param_count(), 6);
        let fit = obs.weight_fit(20, &RrrConfig::default())?;
        let expected = [
            c64::new(1.0, 0.0),
            c64::new(0.3, 0.0),
            c64::from_polar(0.8, 0.4),
            c64::from_polar(0.8, -0.4),
        ];
        assert_eq!(fit.rank(), 4);
        for e in expected {
            let d = fit
                .eigenvalues
                .iter()
                .map(|l| (l - e).norm())
                .fold(f64::INFINITY, f64::min);
            assert!(d < 1e-9, "{e} missing from {:?}", fit.eigenvalues);
        }
        // The fixed point carries the largest amplitude.
        let (top, _) = important_near_one(&fit, 1, 0.05);
        assert!((top.eigenvalues[0] - c64::new(1.0, 0.0)).norm() < 1e-9);
        Ok(())
    }

    #[test]
    fn loss_spectrum_and_bad_input() -> Result<()> {
        let obs = synthetic(20)?;
        // The loss a + r with r = 0.8^t (no rotation in the loss): rates 0.3, 0.8.
        let fit = obs.loss_fit(20, 4, &RrrConfig::default())?;
        for e in [0.3, 0.8] {
            assert!(
                fit.eigenvalues
                    .iter()
                    .any(|l| (l - c64::new(e, 0.0)).norm() < 1e-8),
                "{e}: {:?}",
                fit.eigenvalues
            );
        }
        let e = obs.loss_fit(4, 4, &RrrConfig::default()).unwrap_err();
        assert!(matches!(e, TrainError::NotEnoughData(_)), "{e}");
        assert!(e.to_string().contains("at least 5"), "{e}");
        assert!(obs.weight_fit(21, &RrrConfig::default()).is_err());
        assert!(obs.weight_fit(1, &RrrConfig::default()).is_err());
        let mut o2 = obs.clone();
        assert!(matches!(o2.record(f64::NAN), Err(TrainError::NonFinite(_))));
        assert!(TrainingObserver::new(Vec::new()).is_err());
        let bad = ConvergenceConfig {
            observable: Observable::Loss { delays: 0 },
            ..Default::default()
        };
        assert!(ConvergenceMonitor::new(bad).is_err());
        Ok(())
    }

    #[test]
    fn monitor_fires_once_converged() -> Result<()> {
        let obs = synthetic(25)?;
        let mut monitor = ConvergenceMonitor::new(ConvergenceConfig {
            important: 1,
            fraction: 1.0,
            min_snapshots: 6,
            ..Default::default()
        })?;
        for t in 1..=25 {
            monitor.check(&obs.fork(t, obs.vars().to_vec())?)?;
        }
        assert!(obs.fork(26, obs.vars().to_vec()).is_err());
        assert!(obs.fork(3, Vec::new()).is_err());
        assert_eq!(monitor.fired_at(), Some(6));
        assert_eq!(monitor.history().len(), 24);
        // Checks below min_snapshots never fire; the last check still sees the fixed point.
        assert!(monitor.history()[..4].iter().all(|c| !c.converged));
        let last = monitor.history().last().unwrap();
        assert!(last.converged && last.fraction_near_one == 1.0);
        assert!((last.important.eigenvalues[0] - c64::new(1.0, 0.0)).norm() < 1e-9);
        Ok(())
    }
}
