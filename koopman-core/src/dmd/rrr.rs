//! DMD_RRR: DMD with refined Rayleigh–Ritz data-driven residuals (Drmač, Mezić & Mohr 2018).
//!
//! 1. Scale the columns of `X` by their norms, `D = diag(||x_j||)` (zero columns are dropped from
//!    both `X` and `Y`).
//! 2. Thin SVD `X D^{-1} = U S V^*`; rank `k` = largest `i` with `s_i / s_1 > tol`.
//! 3. `A U_k = Y D^{-1} V_k S_k^{-1}`.
//! 4. Thin QR `[U_k, A U_k] = Q R`; Rayleigh quotient `S_k = R(1:k, k+1:2k)` with row `i` negated
//!    where `R(i,i) < 0` (in general multiplied by `conj(R(i,i)) / |R(i,i)|`).
//! 5. Ritz pairs `(lambda_i, U_k w_i)` from `eig(S_k)`, residual
//!    `r_i = ||A U_k w_i - lambda_i U_k w_i|| = ||[R12 w - lambda R11 w; R22 w]||` for every pair.
//! 6. Optional refinement of chosen pairs: `v` = right singular vector of the smallest singular
//!    value of `[R12 - lambda R11; R22]`, refined residual = that singular value (reported as the
//!    residual at the refined `lambda = v^* S_k v`, which is never larger), Ritz vector `U_k v`.
//!    Should round-off make the refined residual exceed the unrefined one, the unrefined pair is
//!    kept, so refinement never increases a residual.
//!
//! ```
//! use faer::Mat;
//! use koopman_core::dmd::{dmd_rrr, RefineSelection, RrrConfig};
//!
//! # fn main() -> koopman_core::Result<()> {
//! let x = Mat::from_fn(3, 6, |i, j| 1.0 / (1.0 + i as f64 + j as f64));
//! let a = Mat::from_fn(3, 3, |i, j| if i == j { 0.5 + 0.1 * i as f64 } else { 0.05 });
//! let y = &a * &x;
//! let config = RrrConfig { refine: RefineSelection::All, ..Default::default() };
//! let fit = dmd_rrr(x.as_ref(), y.as_ref(), &config)?;
//! assert_eq!(fit.rank(), 3);
//! assert!(fit.residuals.unwrap().iter().all(|r| *r < 1e-12));
//! # Ok(()) }
//! ```

use super::estimator::{check_pairs, Fit, Pairs};
use super::{FitMethod, KoopmanFit};
use crate::complex::c64;
use crate::error::{CoreError, Result};
use crate::linalg::{self, Scalar};
use faer::{Mat, MatRef};

/// Which Ritz pairs [`dmd_rrr`] refines.
#[derive(Clone, Debug, PartialEq)]
pub enum RefineSelection {
    /// No refinement.
    None,
    /// Every pair.
    All,
    /// The `count` pairs with the smallest residuals.
    SmallestResidual(usize),
    /// The `count` pairs whose eigenvalues lie closest to the unit circle.
    ClosestToUnitCircle(usize),
    /// The `count` pairs whose eigenvalues lie closest to `target`.
    ClosestToTarget {
        /// The point in the complex plane.
        target: c64,
        /// How many pairs.
        count: usize,
    },
}

/// Settings of [`dmd_rrr`].
#[derive(Clone, Debug, PartialEq)]
pub struct RrrConfig {
    /// Relative rank tolerance: keep `s_i / s_1 > tol`.
    pub tol: f64,
    /// Pairs to refine.
    pub refine: RefineSelection,
}

impl Default for RrrConfig {
    fn default() -> Self {
        Self {
            tol: 1e-12,
            refine: RefineSelection::None,
        }
    }
}

impl RrrConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if !(self.tol.is_finite() && (0.0..1.0).contains(&self.tol)) {
            return Err(CoreError::InvalidArgument(format!(
                "DMD_RRR tolerance must lie in [0, 1), got {}",
                self.tol
            )));
        }
        let count = match &self.refine {
            RefineSelection::SmallestResidual(c) | RefineSelection::ClosestToUnitCircle(c) => {
                Some(*c)
            }
            RefineSelection::ClosestToTarget { target, count } => {
                if !(target.re.is_finite() && target.im.is_finite()) {
                    return Err(CoreError::NonFinite("refinement target".into()));
                }
                Some(*count)
            }
            _ => None,
        };
        if count == Some(0) {
            return Err(CoreError::InvalidArgument(
                "refinement count must be >= 1 (use RefineSelection::None)".into(),
            ));
        }
        Ok(())
    }
}

/// `||[R12 w - lambda R11 w; R22 w]||` for the blocks of the QR factor.
fn residual(r: MatRef<'_, c64>, k: usize, lambda: c64, w: &[c64]) -> f64 {
    let rows = r.nrows();
    let mut acc = 0.0;
    for i in 0..rows {
        let mut v = c64::new(0.0, 0.0);
        for (j, wj) in w.iter().enumerate() {
            v += r[(i, k + j)] * wj;
            if i < k {
                v -= lambda * r[(i, j)] * wj;
            }
        }
        acc += v.norm_sqr();
    }
    acc.sqrt()
}

/// DMD_RRR of the pair `(X, Y)`; see the [module documentation](self). The fit carries the
/// residual of every Ritz pair; modes are the unit Ritz vectors `U_k w_i`.
/// The same as `config.fit((x, y))` ([`Fit`]).
pub fn dmd_rrr<T: Scalar>(
    x: MatRef<'_, T>,
    y: MatRef<'_, T>,
    config: &RrrConfig,
) -> Result<KoopmanFit> {
    config.fit((x, y))
}

impl<'a, T: Scalar> Fit<Pairs<'a, T>> for RrrConfig {
    type Output = KoopmanFit;

    fn check(&self, data: &Pairs<'a, T>) -> Result<()> {
        self.validate()?;
        check_pairs(data)
    }

    fn fit_checked(&self, (x, y): Pairs<'a, T>) -> Result<KoopmanFit> {
        rrr_fit(x, y, self)
    }
}

fn rrr_fit<T: Scalar>(
    x: MatRef<'_, T>,
    y: MatRef<'_, T>,
    config: &RrrConfig,
) -> Result<KoopmanFit> {
    let n = x.nrows();
    // 1. column scaling, dropping zero columns
    let norms: Vec<f64> = (0..x.ncols())
        .map(|j| {
            (0..n)
                .map(|i| x[(i, j)].modulus().powi(2))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    let keep: Vec<usize> = (0..x.ncols()).filter(|&j| norms[j] > 0.0).collect();
    if keep.is_empty() {
        return Err(CoreError::InvalidArgument(
            "rank 0: every snapshot in X is zero".into(),
        ));
    }
    let m = keep.len();
    let xs = Mat::from_fn(n, m, |i, j| {
        x[(i, keep[j])] * T::from_f64(1.0 / norms[keep[j]])
    });
    let ys = Mat::from_fn(n, m, |i, j| {
        y[(i, keep[j])] * T::from_f64(1.0 / norms[keep[j]])
    });
    // 2. thin SVD and rank
    let svd = linalg::thin_svd(xs.as_ref())?;
    let s1 = svd.s[0];
    let k = svd
        .s
        .iter()
        .take_while(|&&s| s1 > 0.0 && s / s1 > config.tol)
        .count();
    if k == 0 {
        return Err(CoreError::InvalidArgument(format!(
            "rank 0: no singular value above tol {} relative to s_1 = {s1:e}",
            config.tol
        )));
    }
    let uk = svd.u.as_ref().subcols(0, k);
    // 3. A U_k = Y D^-1 V_k S_k^-1
    let yv = ys.as_ref() * svd.v.as_ref().subcols(0, k);
    let auk = Mat::from_fn(n, k, |i, j| yv[(i, j)] * T::from_f64(1.0 / svd.s[j]));
    // 4. thin QR of [U_k, A U_k]
    let stacked = Mat::from_fn(
        n,
        2 * k,
        |i, j| if j < k { uk[(i, j)] } else { auk[(i, j - k)] },
    );
    let (_, r) = linalg::thin_qr(stacked.as_ref());
    let r = linalg::to_complex(r.as_ref());
    let sk = Mat::from_fn(k, k, |i, j| {
        let d = r[(i, i)];
        let phase = if d.norm() > 0.0 {
            d.conj() / d.norm()
        } else {
            c64::new(1.0, 0.0)
        };
        phase * r[(i, k + j)]
    });
    // R11 = diag(phase) up to round-off; use the signed blocks consistently.
    let rs = Mat::from_fn(r.nrows(), 2 * k, |i, j| {
        if i < k {
            let d = r[(i, i)];
            let phase = if d.norm() > 0.0 {
                d.conj() / d.norm()
            } else {
                c64::new(1.0, 0.0)
            };
            phase * r[(i, j)]
        } else {
            r[(i, j)]
        }
    });
    // 5. Ritz pairs and residuals
    let (mut values, mut w) = linalg::eig(sk.as_ref())?;
    let mut residuals: Vec<f64> = (0..k)
        .map(|i| {
            let wi: Vec<c64> = (0..k).map(|j| w[(j, i)]).collect();
            residual(rs.as_ref(), k, values[i], &wi)
        })
        .collect();
    // 6. refinement
    let mut order: Vec<usize> = (0..k).collect();
    let chosen: Vec<usize> = match &config.refine {
        RefineSelection::None => Vec::new(),
        RefineSelection::All => order,
        RefineSelection::SmallestResidual(c) => {
            order.sort_by(|&a, &b| residuals[a].total_cmp(&residuals[b]));
            order.into_iter().take(*c).collect()
        }
        RefineSelection::ClosestToUnitCircle(c) => {
            let d = |i: usize| (values[i].norm() - 1.0).abs();
            order.sort_by(|&a, &b| d(a).total_cmp(&d(b)));
            order.into_iter().take(*c).collect()
        }
        RefineSelection::ClosestToTarget { target, count } => {
            let d = |i: usize| (values[i] - target).norm();
            order.sort_by(|&a, &b| d(a).total_cmp(&d(b)));
            order.into_iter().take(*count).collect()
        }
    };
    for &i in &chosen {
        let lambda = values[i];
        let mrows = rs.nrows();
        let mat = Mat::from_fn(mrows, k, |p, q| {
            if p < k {
                rs[(p, k + q)] - lambda * rs[(p, q)]
            } else {
                rs[(p, k + q)]
            }
        });
        let full = mat
            .svd()
            .map_err(|e| linalg::decomposition_error("refinement SVD", e))?;
        let v: Vec<c64> = (0..k).map(|j| full.V()[(j, k - 1)]).collect();
        // refined lambda = v^* S_k v
        let mut refined = c64::new(0.0, 0.0);
        for p in 0..k {
            for q in 0..k {
                refined += v[p].conj() * sk[(p, q)] * v[q];
            }
        }
        let res = residual(rs.as_ref(), k, refined, &v);
        if res.is_finite() && res <= residuals[i] {
            values[i] = refined;
            residuals[i] = res;
            for (j, vj) in v.iter().enumerate() {
                w[(j, i)] = *vj;
            }
        }
    }
    let modes = linalg::to_complex(uk) * w.as_ref();
    if values
        .iter()
        .any(|z| !(z.re.is_finite() && z.im.is_finite()))
    {
        return Err(CoreError::Decomposition(
            "DMD_RRR produced non-finite Ritz values".into(),
        ));
    }
    let x0: Vec<c64> = (0..n).map(|i| x[(i, 0)].to_c64()).collect();
    KoopmanFit::assemble(
        FitMethod::Rrr,
        values,
        modes,
        &x0,
        Some(residuals),
        sk,
        svd.s,
    )
}
