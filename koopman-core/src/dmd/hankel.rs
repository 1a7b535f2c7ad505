//! Hankel (delay) DMD over one or many trajectories.
//!
//! A window of `h` consecutive snapshots `[x_t; x_{t+1}; ...; x_{t+h-1}]` (length `h d`) is one
//! delay-embedded state; pairs are consecutive windows of the **same** trajectory, so a window
//! never straddles two trajectories. A trajectory of `m` snapshots gives `m - h` pairs and needs
//! `m >= h + 1`.
//!
//! ```
//! use faer::Mat;
//! use koopman_core::dmd::{hankel_dmd, HankelConfig};
//!
//! # fn main() -> koopman_core::Result<()> {
//! // One scalar signal cos(0.3 t): eigenvalues exp(±0.3 i).
//! let s = Mat::from_fn(1, 40, |_, t| (0.3 * t as f64).cos());
//! let fit = hankel_dmd(&[s.as_ref()], &HankelConfig { delays: 4, ..Default::default() })?;
//! let freqs: Vec<f64> = fit.continuous_eigenvalues(1.0)?.iter().map(|z| z.im.abs()).collect();
//! assert_eq!(fit.rank(), 2);
//! assert!(freqs.iter().all(|f| (f - 0.3).abs() < 1e-10));
//! # Ok(()) }
//! ```

use super::estimator::Fit;
use super::{ExactDmdConfig, FitMethod, KoopmanFit, RrrConfig};
use crate::error::{CoreError, Result};
use crate::linalg::{self, Scalar};
use faer::{Mat, MatRef};

/// The estimator applied to the delay-embedded pairs.
#[derive(Clone, Debug, PartialEq)]
pub enum HankelEstimator {
    /// Exact DMD.
    Exact(ExactDmdConfig),
    /// DMD_RRR.
    Rrr(RrrConfig),
}

/// Settings of [`hankel_dmd`].
#[derive(Clone, Debug, PartialEq)]
pub struct HankelConfig {
    /// Window length `h >= 1` (number of stacked snapshots; `h = 1` is plain DMD).
    pub delays: usize,
    /// Estimator on the embedded data.
    pub estimator: HankelEstimator,
}

impl Default for HankelConfig {
    fn default() -> Self {
        Self {
            delays: 8,
            estimator: HankelEstimator::Exact(ExactDmdConfig::default()),
        }
    }
}

impl HankelConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.delays == 0 {
            return Err(CoreError::InvalidArgument(
                "delay window length must be >= 1".into(),
            ));
        }
        match &self.estimator {
            HankelEstimator::Exact(c) => c.validate(),
            HankelEstimator::Rrr(c) => c.validate(),
        }
    }
}

/// Delay embedding of trajectories (columns are consecutive states) into pairs `(X, Y)` of
/// windows of length `delays`; windows never straddle two trajectories.
pub fn delay_embed<T: Scalar>(
    trajectories: &[MatRef<'_, T>],
    delays: usize,
) -> Result<(Mat<T>, Mat<T>)> {
    if delays == 0 {
        return Err(CoreError::InvalidArgument(
            "delay window length must be >= 1".into(),
        ));
    }
    if trajectories.is_empty() {
        return Err(CoreError::Empty("no trajectories".into()));
    }
    let d = trajectories[0].nrows();
    if d == 0 {
        return Err(CoreError::Empty(
            "trajectories have zero-dimensional states".into(),
        ));
    }
    let mut pairs = 0;
    for (k, t) in trajectories.iter().enumerate() {
        if t.nrows() != d {
            return Err(CoreError::ShapeMismatch(format!(
                "trajectory {k} has states of dimension {}, the first has {d}",
                t.nrows()
            )));
        }
        if t.ncols() < delays + 1 {
            return Err(CoreError::InvalidArgument(format!(
                "trajectory {k} has {} snapshots; a delay window of {delays} needs at least {}",
                t.ncols(),
                delays + 1
            )));
        }
        linalg::ensure_finite_mat(*t, &format!("trajectory {k}"))?;
        pairs += t.ncols() - delays;
    }
    let mut x = Mat::<T>::zeros(d * delays, pairs);
    let mut y = Mat::<T>::zeros(d * delays, pairs);
    let mut col = 0;
    for t in trajectories {
        for start in 0..t.ncols() - delays {
            for lag in 0..delays {
                for i in 0..d {
                    x[(lag * d + i, col)] = t[(i, start + lag)];
                    y[(lag * d + i, col)] = t[(i, start + lag + 1)];
                }
            }
            col += 1;
        }
    }
    Ok((x, y))
}

/// Hankel DMD: [`delay_embed`] followed by the configured estimator. Modes live in the
/// delay-embedded space (dimension `delays * d`); the first `d` rows are the current state.
/// The same as `config.fit(trajectories)` ([`Fit`]).
pub fn hankel_dmd<T: Scalar>(
    trajectories: &[MatRef<'_, T>],
    config: &HankelConfig,
) -> Result<KoopmanFit> {
    config.fit(trajectories)
}

impl<'a, T: Scalar> Fit<&'a [MatRef<'a, T>]> for HankelConfig {
    type Output = KoopmanFit;

    /// The settings; the trajectories are checked as they are embedded.
    fn check(&self, _: &&'a [MatRef<'a, T>]) -> Result<()> {
        self.validate()
    }

    fn fit_checked(&self, trajectories: &'a [MatRef<'a, T>]) -> Result<KoopmanFit> {
        let (x, y) = delay_embed(trajectories, self.delays)?;
        let pairs = (x.as_ref(), y.as_ref());
        let mut fit = match &self.estimator {
            HankelEstimator::Exact(c) => c.fit(pairs)?,
            HankelEstimator::Rrr(c) => c.fit(pairs)?,
        };
        fit.method = FitMethod::Hankel {
            delays: self.delays,
        };
        Ok(fit)
    }
}
