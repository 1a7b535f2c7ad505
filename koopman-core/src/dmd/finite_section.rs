//! Finite section `U = F' F^+` (paper 000, Eq. 4), one operator or many of equal size at once.
//!
//! The solve is SVD based with a relative cut-off and an optional ridge term (see
//! [`SolveOptions`]), so rank-deficient data give a finite least-norm operator, never NaN. The
//! batched form factors each `X_b^T = Q_b R_b` (thin QR, `O(m d^2)`), then
//! `U_b = (Y_b Q_b) (R_b^T)^+` with the pseudo-inverse of the small `d x d` factor by SVD; the
//! operators are spread over the available cores.
//!
//! ```
//! use faer::Mat;
//! use koopman_core::dmd::{finite_section_batched, FiniteSectionConfig};
//!
//! # fn main() -> koopman_core::Result<()> {
//! // Two operators of size 2 from 3 snapshots each; the second data set is rank deficient.
//! let x1 = Mat::from_fn(2, 3, |i, j| (i + 2 * j) as f64 + 1.0);
//! let y1 = Mat::from_fn(2, 3, |i, j| 0.5 * x1[(i, j)]);
//! let x2 = Mat::from_fn(2, 3, |_, j| j as f64);
//! let y2 = x2.clone();
//! let us = finite_section_batched(
//!     &[x1.as_ref(), x2.as_ref()],
//!     &[y1.as_ref(), y2.as_ref()],
//!     &FiniteSectionConfig::default(),
//! )?;
//! assert!((us[0][(0, 0)] - 0.5).abs() < 1e-12);
//! assert!(us[1].col_iter().all(|c| c.iter().all(|v| v.is_finite())));
//! # Ok(()) }
//! ```

use super::{check_pair, FitMethod, KoopmanFit};
use crate::complex::c64;
use crate::error::{CoreError, Result};
use crate::linalg::{self, Scalar, SolveOptions};
use candle_core::Tensor;
use faer::{Mat, MatRef};

/// Settings of the finite-section solve.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FiniteSectionConfig {
    /// Relative cut-off and ridge of the SVD solve.
    pub solve: SolveOptions,
}

impl FiniteSectionConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        self.solve.validate()
    }
}

/// The operator `U = Y X^+` (`n x n`), by the same QR + small-SVD route as the batched form.
pub fn finite_section_operator<T: Scalar>(
    x: MatRef<'_, T>,
    y: MatRef<'_, T>,
    config: &FiniteSectionConfig,
) -> Result<Mat<T>> {
    config.validate()?;
    check_pair(x, y)?;
    solve_one(x, y, &config.solve)
}

fn solve_one<T: Scalar>(x: MatRef<'_, T>, y: MatRef<'_, T>, opts: &SolveOptions) -> Result<Mat<T>> {
    // X^T = Q R  =>  X = R^T Q^T (real) / X = (R^* Q^*) with adjoints (complex), and
    // X^+ = Q (R^*)^+ since Q has orthonormal columns.
    let (q, r) = linalg::thin_qr(x.adjoint().to_owned().as_ref());
    let yq = y * q.as_ref();
    let rh = r.as_ref().adjoint().to_owned();
    // (R^*)^+ via SVD with the cut-off relative to the singular values of X (same as of R).
    let svd = linalg::thin_svd(rh.as_ref())?;
    let (f, _) = opts.filter(&svd.s, x.nrows(), x.ncols());
    let yqv = yq.as_ref() * svd.v.as_ref();
    let scaled = Mat::from_fn(yqv.nrows(), yqv.ncols(), |i, j| {
        yqv[(i, j)] * T::from_f64(f[j])
    });
    Ok(scaled.as_ref() * svd.u.as_ref().adjoint())
}

/// Finite section as a [`KoopmanFit`]: `U = Y X^+`, its eigenvalues and unit eigenvectors as
/// modes, amplitudes of the first snapshot. `U` is `n x n`: meant for small state dimensions.
pub fn finite_section<T: Scalar>(
    x: MatRef<'_, T>,
    y: MatRef<'_, T>,
    config: &FiniteSectionConfig,
) -> Result<KoopmanFit> {
    let u = finite_section_operator(x, y, config)?;
    let (values, vectors) = linalg::eig(u.as_ref())?;
    let x0: Vec<c64> = (0..x.nrows()).map(|i| x[(i, 0)].to_c64()).collect();
    KoopmanFit::assemble(
        FitMethod::FiniteSection,
        values,
        vectors,
        &x0,
        None,
        linalg::to_complex(u.as_ref()),
        Vec::new(),
    )
}

/// Fits `U_b = Y_b X_b^+` for many data sets of equal shape `d x m` at once (spread over the
/// available cores). Rank-deficient data give finite least-norm operators.
pub fn finite_section_batched<T: Scalar>(
    xs: &[MatRef<'_, T>],
    ys: &[MatRef<'_, T>],
    config: &FiniteSectionConfig,
) -> Result<Vec<Mat<T>>> {
    config.validate()?;
    if xs.is_empty() {
        return Err(CoreError::Empty(
            "no data sets for the batched finite section".into(),
        ));
    }
    if xs.len() != ys.len() {
        return Err(CoreError::ShapeMismatch(format!(
            "{} X matrices but {} Y matrices",
            xs.len(),
            ys.len()
        )));
    }
    let (d, m) = (xs[0].nrows(), xs[0].ncols());
    for (b, (x, y)) in xs.iter().zip(ys).enumerate() {
        if x.nrows() != d || x.ncols() != m {
            return Err(CoreError::ShapeMismatch(format!(
                "data set {b} is {} x {}, the first is {d} x {m}",
                x.nrows(),
                x.ncols()
            )));
        }
        check_pair(*x, *y).map_err(|e| match e {
            CoreError::NonFinite(w) => CoreError::NonFinite(format!("data set {b}: {w}")),
            CoreError::ShapeMismatch(w) => CoreError::ShapeMismatch(format!("data set {b}: {w}")),
            other => other,
        })?;
    }
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(xs.len());
    let chunk = xs.len().div_ceil(workers);
    let mut results: Vec<Result<Vec<Mat<T>>>> = Vec::new();
    std::thread::scope(|scope| {
        let handles: Vec<_> = xs
            .chunks(chunk)
            .zip(ys.chunks(chunk))
            .map(|(xc, yc)| {
                let opts = &config.solve;
                scope.spawn(move || {
                    xc.iter()
                        .zip(yc)
                        .map(|(x, y)| solve_one(*x, *y, opts))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        for h in handles {
            results.push(h.join().unwrap_or_else(|_| {
                Err(CoreError::Decomposition(
                    "a finite-section worker panicked".into(),
                ))
            }));
        }
    });
    let mut out = Vec::with_capacity(xs.len());
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// The batched finite section on tensors: `x` and `y` of shape `(batch, d, m)` on any device;
/// returns `U` of shape `(batch, d, d)` (f64) on the same device.
pub fn finite_section_batched_tensor(
    x: &Tensor,
    y: &Tensor,
    config: &FiniteSectionConfig,
) -> Result<Tensor> {
    let (b, d, m) = x.dims3().map_err(|_| {
        CoreError::ShapeMismatch(format!(
            "expected x of shape (batch, d, m), got {:?}",
            x.dims()
        ))
    })?;
    if y.dims() != x.dims() {
        return Err(CoreError::ShapeMismatch(format!(
            "x has shape {:?} but y has shape {:?}",
            x.dims(),
            y.dims()
        )));
    }
    let device = x.device().clone();
    let host = |t: &Tensor| -> Result<Vec<f64>> {
        Ok(t.to_dtype(candle_core::DType::F64)?
            .to_device(&candle_core::Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f64>()?)
    };
    let (xv, yv) = (host(x)?, host(y)?);
    let to_mats = |v: &[f64]| -> Vec<Mat<f64>> {
        (0..b)
            .map(|k| Mat::from_fn(d, m, |i, j| v[k * d * m + i * m + j]))
            .collect()
    };
    let (xm, ym) = (to_mats(&xv), to_mats(&yv));
    let xr: Vec<MatRef<'_, f64>> = xm.iter().map(|a| a.as_ref()).collect();
    let yr: Vec<MatRef<'_, f64>> = ym.iter().map(|a| a.as_ref()).collect();
    let us = finite_section_batched(&xr, &yr, config)?;
    let mut data = Vec::with_capacity(b * d * d);
    for u in &us {
        for i in 0..d {
            for j in 0..d {
                data.push(u[(i, j)]);
            }
        }
    }
    Ok(Tensor::from_vec(data, (b, d, d), &device)?)
}
