//! Exact DMD (Tu et al. 2014) with rank policies.
//!
//! Thin SVD `X = U S V^*`, rank `r` by a [`RankPolicy`], `B = Y V_r S_r^{-1}` (`n x r`),
//! `A_r = U_r^* B` (`r x r`), `A_r W = W Lambda`, exact modes `B W`, amplitudes by least squares
//! against the first snapshot. Nothing of size `n x n` is formed: memory is `O(n r + m r)` beyond
//! the thin SVD of the data.
//!
//! Every policy also drops singular values at or below the numerical floor
//! `max(n, m) eps s_1`, so noise-free low-rank data never divide by round-off.
//!
//! ```
//! use faer::Mat;
//! use koopman_core::dmd::{choose_rank, RankPolicy};
//!
//! # fn main() -> koopman_core::Result<()> {
//! let s = [10.0, 5.0, 1.0, 1e-3];
//! assert_eq!(choose_rank(&s, 100, 4, &RankPolicy::Energy(0.99))?, 2);
//! assert_eq!(choose_rank(&s, 100, 4, &RankPolicy::RelativeTolerance(1e-2))?, 3);
//! assert_eq!(choose_rank(&s, 100, 4, &RankPolicy::Fixed(2))?, 2);
//! # Ok(()) }
//! ```

use super::estimator::{check_pairs, Fit, Pairs};
use super::{FitMethod, KoopmanFit};
use crate::complex::c64;
use crate::error::{CoreError, Result};
use crate::linalg::{self, Scalar};
use faer::{Mat, MatRef};

/// How the truncation rank of the data SVD is chosen.
#[derive(Clone, Debug, PartialEq)]
pub enum RankPolicy {
    /// Exactly `r` singular values (fewer if the numerical rank is lower).
    Fixed(usize),
    /// The smallest `r` whose leading squared singular values hold this fraction of the total
    /// (`0 < fraction <= 1`).
    Energy(f64),
    /// Gavish & Donoho (2014) optimal hard threshold for unknown noise level:
    /// `tau = omega(beta) median(s)`, `omega(beta) ≈ 0.56 beta^3 - 0.95 beta^2 + 1.82 beta + 1.43`,
    /// `beta = min(n, m) / max(n, m)`.
    OptimalHardThreshold,
    /// Keep `s_i > tol s_1`.
    RelativeTolerance(f64),
}

/// Settings of [`exact_dmd`].
#[derive(Clone, Debug, PartialEq)]
pub struct ExactDmdConfig {
    /// Truncation rank policy.
    pub rank: RankPolicy,
}

impl Default for ExactDmdConfig {
    fn default() -> Self {
        Self {
            rank: RankPolicy::RelativeTolerance(1e-10),
        }
    }
}

impl ExactDmdConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        validate_policy(&self.rank)
    }
}

pub(crate) fn validate_policy(p: &RankPolicy) -> Result<()> {
    match *p {
        RankPolicy::Fixed(0) => Err(CoreError::InvalidArgument(
            "rank 0 requested: a fit needs at least one mode".into(),
        )),
        RankPolicy::Energy(f) if !(f > 0.0 && f <= 1.0) => Err(CoreError::InvalidArgument(
            format!("energy fraction must lie in (0, 1], got {f}"),
        )),
        RankPolicy::RelativeTolerance(t) if !(t.is_finite() && (0.0..1.0).contains(&t)) => Err(
            CoreError::InvalidArgument(format!("relative tolerance must lie in [0, 1), got {t}")),
        ),
        _ => Ok(()),
    }
}

/// The Gavish–Donoho coefficient `omega(beta)` for unknown noise.
pub fn gavish_donoho_omega(beta: f64) -> f64 {
    0.56 * beta.powi(3) - 0.95 * beta.powi(2) + 1.82 * beta + 1.43
}

/// The rank a policy picks for singular values `s` (non-increasing) of an `n x m` matrix.
/// Fails when that rank is 0 (zero data, or every value below the numerical floor).
pub fn choose_rank(s: &[f64], n: usize, m: usize, policy: &RankPolicy) -> Result<usize> {
    validate_policy(policy)?;
    let s1 = s.first().copied().unwrap_or(0.0);
    let floor = n.max(m) as f64 * f64::EPSILON * s1;
    let numerical = s.iter().take_while(|&&v| v > floor && v > 0.0).count();
    let r = match *policy {
        RankPolicy::Fixed(r) => r.min(numerical),
        RankPolicy::Energy(f) => {
            let total: f64 = s.iter().map(|v| v * v).sum();
            let mut acc = 0.0;
            let mut r = 0;
            for v in s {
                if total > 0.0 && acc >= f * total * (1.0 - 1e-15) {
                    break;
                }
                acc += v * v;
                r += 1;
            }
            r.min(numerical)
        }
        RankPolicy::OptimalHardThreshold => {
            let mut sorted = s.to_vec();
            sorted.sort_by(f64::total_cmp);
            let k = sorted.len();
            let median = if k == 0 {
                0.0
            } else if k % 2 == 1 {
                sorted[k / 2]
            } else {
                0.5 * (sorted[k / 2 - 1] + sorted[k / 2])
            };
            let beta = n.min(m) as f64 / n.max(m) as f64;
            let tau = gavish_donoho_omega(beta) * median;
            s.iter().take_while(|&&v| v > tau).count().min(numerical)
        }
        RankPolicy::RelativeTolerance(t) => {
            s.iter().take_while(|&&v| v > t * s1).count().min(numerical)
        }
    };
    if r == 0 {
        return Err(CoreError::InvalidArgument(format!(
            "rank 0: no singular value passes {policy:?} (largest singular value {s1:e})"
        )));
    }
    Ok(r)
}

/// Exact DMD of the pair `(X, Y)`; see the [module documentation](self). The same as
/// `config.fit((x, y))` ([`Fit`]).
pub fn exact_dmd<T: Scalar>(
    x: MatRef<'_, T>,
    y: MatRef<'_, T>,
    config: &ExactDmdConfig,
) -> Result<KoopmanFit> {
    config.fit((x, y))
}

impl<'a, T: Scalar> Fit<Pairs<'a, T>> for ExactDmdConfig {
    type Output = KoopmanFit;

    fn check(&self, data: &Pairs<'a, T>) -> Result<()> {
        self.validate()?;
        check_pairs(data)
    }

    fn fit_checked(&self, (x, y): Pairs<'a, T>) -> Result<KoopmanFit> {
        exact_fit(x, y, self)
    }
}

fn exact_fit<T: Scalar>(
    x: MatRef<'_, T>,
    y: MatRef<'_, T>,
    config: &ExactDmdConfig,
) -> Result<KoopmanFit> {
    let (n, m) = (x.nrows(), x.ncols());
    let svd = linalg::thin_svd(x)?;
    let r = choose_rank(&svd.s, n, m, &config.rank)?;
    let ur = svd.u.as_ref().subcols(0, r);
    let vr = svd.v.as_ref().subcols(0, r);
    let yv = y * vr;
    let b = Mat::from_fn(n, r, |i, j| yv[(i, j)] * T::from_f64(1.0 / svd.s[j]));
    let ar = ur.adjoint() * b.as_ref();
    let (values, w) = linalg::eig(ar.as_ref())?;
    let modes = linalg::to_complex(b.as_ref()) * w.as_ref();
    let x0: Vec<c64> = (0..n).map(|i| x[(i, 0)].to_c64()).collect();
    KoopmanFit::assemble(
        FitMethod::Exact,
        values,
        modes,
        &x0,
        None,
        linalg::to_complex(ar.as_ref()),
        svd.s,
    )
}
