//! One interface for the DMD family, in the way of linfa's `Fit`: a settings struct (with
//! `Default`) is the estimator, [`Fit::fit`] checks the settings against the data once, before
//! any work, and runs the fit.
//!
//! | settings | data | output |
//! |---|---|---|
//! | [`ExactDmdConfig`](super::ExactDmdConfig), [`RrrConfig`](super::RrrConfig), [`FiniteSectionConfig`](super::FiniteSectionConfig) | [`Pairs`] of any [`Scalar`] | [`KoopmanFit`](super::KoopmanFit) |
//! | [`EdmdConfig`](super::EdmdConfig), [`KernelDmdConfig`](super::KernelDmdConfig) | [`Pairs`] of `f64` | [`KoopmanFit`](super::KoopmanFit) |
//! | [`HankelConfig`](super::HankelConfig) | trajectories `&[MatRef<T>]` | [`KoopmanFit`](super::KoopmanFit) |
//! | [`FiniteSectionConfig`](super::FiniteSectionConfig) | [`Batch`](super::Batch) of data sets of one shape | `Vec<Mat<T>>`, one operator each |
//! | [`FiniteSectionConfig`](super::FiniteSectionConfig) | [`Partitioned`](super::Partitioned) snapshots (paper 000's hot path) | `Vec<Mat<f64>>`, one operator per group |
//!
//! The free functions ([`exact_dmd`](super::exact_dmd), [`dmd_rrr`](super::dmd_rrr), ...) are
//! the same fits called with the settings last.
//!
//! ```
//! use koopman_core::dmd::{ExactDmdConfig, Fit, RrrConfig};
//! use koopman_core::faer::Mat;
//!
//! # fn main() -> koopman_core::Result<()> {
//! // x_{t+1} = 0.9 x_t in two coordinates.
//! let x = Mat::from_fn(2, 6, |i, j| (1.0 + i as f64) * 0.9f64.powi(j as i32));
//! let y = Mat::from_fn(2, 6, |i, j| (1.0 + i as f64) * 0.9f64.powi(j as i32 + 1));
//! for fit in [
//!     ExactDmdConfig::default().fit((x.as_ref(), y.as_ref()))?,
//!     RrrConfig::default().fit((x.as_ref(), y.as_ref()))?,
//! ] {
//!     assert!((fit.eigenvalues[0].re - 0.9).abs() < 1e-12);
//! }
//! // Settings are checked before any work.
//! let bad = RrrConfig { tol: f64::NAN, ..Default::default() };
//! assert!(bad.fit((x.as_ref(), y.as_ref())).is_err());
//! # Ok(()) }
//! ```

use super::check_pair;
use crate::error::Result;
use crate::linalg::Scalar;
use faer::MatRef;

/// Snapshot pairs `(X, Y)`: states as columns, `Y` one step after `X`.
pub type Pairs<'a, T> = (MatRef<'a, T>, MatRef<'a, T>);

/// An estimator of the DMD family: settings that fit data of type `D`.
pub trait Fit<D> {
    /// What the fit returns.
    type Output;

    /// Checks the settings against the data (shapes, dimensions), before any work.
    fn check(&self, data: &D) -> Result<()>;

    /// The fit on settings and data that passed [`check`](Self::check).
    fn fit_checked(&self, data: D) -> Result<Self::Output>;

    /// Checks, then fits.
    fn fit(&self, data: D) -> Result<Self::Output> {
        self.check(&data)?;
        self.fit_checked(data)
    }
}

/// The shape checks of snapshot pairs (non-empty, `X` and `Y` of one shape).
pub(crate) fn check_pairs<T: Scalar>(data: &Pairs<'_, T>) -> Result<()> {
    check_pair(data.0, data.1)
}
