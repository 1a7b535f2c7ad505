//! Small dense linear-algebra helpers on faer, used by the Koopman/DMD estimators.
//!
//! Decompositions run on the host with faer: thin SVD, eigendecomposition with eigenvectors, thin
//! QR, and SVD-based least squares / pseudo-inverse with a relative cut-off and an optional ridge
//! term (faer's QR least squares returns NaN on exactly rank-deficient input, these solves never
//! do). faer's `SvdError` / `EvdError` implement only `Debug`; they are wrapped into
//! [`CoreError::Decomposition`] here. The helpers are generic over [`Scalar`] (`f64` or [`c64`]),
//! so real data stay real through the expensive steps and only small reduced matrices go complex.
//! Conversions to and from candle tensors ([`mat_from_tensor`], [`complex_tensor_from_mat`], ...)
//! move data between the caller's device and the host.
//!
//! ```
//! use faer::Mat;
//! use koopman_core::linalg::{pinv_solve_right, SolveOptions};
//!
//! # fn main() -> koopman_core::Result<()> {
//! // Rank-deficient data: two identical columns. B A^+ stays finite.
//! let a = Mat::from_fn(3, 2, |i, _| (i + 1) as f64);
//! let b = Mat::from_fn(3, 2, |i, _| 2.0 * (i + 1) as f64);
//! let (u, rank) = pinv_solve_right(b.as_ref(), a.as_ref(), &SolveOptions::default())?;
//! assert_eq!(rank, 1);
//! assert!(u.col_iter().flat_map(|c| c.iter().copied().collect::<Vec<_>>()).all(f64::is_finite));
//! # Ok(()) }
//! ```

use crate::complex::{c64, ComplexTensor};
use crate::error::{CoreError, Result};
use candle_core::{DType, Device, Tensor};
use faer::{Mat, MatRef};

/// The scalar types the estimators accept: `f64` and [`c64`].
pub trait Scalar:
    faer::traits::ComplexField<Real = f64>
    + faer::traits::Conjugate<Canonical = Self>
    + Copy
    + Send
    + Sync
    + std::fmt::Debug
    + PartialEq
    + 'static
{
    /// `true` for `f64`.
    const IS_REAL: bool;
    /// As a complex number.
    fn to_c64(self) -> c64;
    /// From a complex number (the real part for `f64`).
    fn from_c64(z: c64) -> Self;
    /// From a real number.
    fn from_f64(x: f64) -> Self;
    /// Modulus.
    fn modulus(self) -> f64;
    /// Whether the value is finite (both parts for complex values).
    fn finite(self) -> bool;
}

impl Scalar for f64 {
    const IS_REAL: bool = true;
    fn to_c64(self) -> c64 {
        c64::new(self, 0.0)
    }
    fn from_c64(z: c64) -> Self {
        z.re
    }
    fn from_f64(x: f64) -> Self {
        x
    }
    fn modulus(self) -> f64 {
        self.abs()
    }
    fn finite(self) -> bool {
        self.is_finite()
    }
}

impl Scalar for c64 {
    const IS_REAL: bool = false;
    fn to_c64(self) -> c64 {
        self
    }
    fn from_c64(z: c64) -> Self {
        z
    }
    fn from_f64(x: f64) -> Self {
        c64::new(x, 0.0)
    }
    fn modulus(self) -> f64 {
        self.norm()
    }
    fn finite(self) -> bool {
        self.re.is_finite() && self.im.is_finite()
    }
}

/// Wraps a faer decomposition error (which implements only `Debug`).
pub fn decomposition_error(what: &str, err: impl std::fmt::Debug) -> CoreError {
    CoreError::Decomposition(format!("{what}: {err:?}"))
}

/// Fails with [`CoreError::NonFinite`] naming `what` if any entry is NaN or infinite.
pub fn ensure_finite_mat<T: Scalar>(a: MatRef<'_, T>, what: &str) -> Result<()> {
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            if !a[(i, j)].finite() {
                return Err(CoreError::NonFinite(format!("{what} (entry ({i}, {j}))")));
            }
        }
    }
    Ok(())
}

/// The matrix with every entry converted to [`c64`].
pub fn to_complex<T: Scalar>(a: MatRef<'_, T>) -> Mat<c64> {
    Mat::from_fn(a.nrows(), a.ncols(), |i, j| a[(i, j)].to_c64())
}

/// Euclidean norm of a complex slice.
pub fn norm_c64(v: &[c64]) -> f64 {
    v.iter().map(|z| z.norm_sqr()).sum::<f64>().sqrt()
}

/// Frobenius norm of a matrix.
pub fn frobenius<T: Scalar>(a: MatRef<'_, T>) -> f64 {
    let mut s = 0.0;
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            s += a[(i, j)].modulus().powi(2);
        }
    }
    s.sqrt()
}

/// A thin singular value decomposition `A = U diag(s) V^*`.
#[derive(Clone, Debug)]
pub struct ThinSvd<T> {
    /// Left singular vectors, `nrows x k` with `k = min(nrows, ncols)`.
    pub u: Mat<T>,
    /// Singular values, non-increasing.
    pub s: Vec<f64>,
    /// Right singular vectors, `ncols x k`.
    pub v: Mat<T>,
}

/// Thin SVD; the input must be finite and non-empty.
pub fn thin_svd<T: Scalar>(a: MatRef<'_, T>) -> Result<ThinSvd<T>> {
    if a.nrows() == 0 || a.ncols() == 0 {
        return Err(CoreError::Empty(format!(
            "SVD of a {} x {} matrix",
            a.nrows(),
            a.ncols()
        )));
    }
    let svd = a
        .thin_svd()
        .map_err(|e| decomposition_error("thin SVD", e))?;
    let s: Vec<f64> = svd
        .S()
        .column_vector()
        .iter()
        .map(|x| x.to_c64().re)
        .collect();
    if s.iter().any(|x| !x.is_finite()) {
        return Err(CoreError::Decomposition(
            "thin SVD produced non-finite singular values".into(),
        ));
    }
    Ok(ThinSvd {
        u: svd.U().to_owned(),
        s,
        v: svd.V().to_owned(),
    })
}

/// The checks shared by [`eig`] and [`eigenvalues`]: square, non-empty, finite.
fn check_eig_input<T: Scalar>(a: MatRef<'_, T>) -> Result<()> {
    if a.nrows() != a.ncols() {
        return Err(CoreError::ShapeMismatch(format!(
            "eigendecomposition of a non-square {} x {} matrix",
            a.nrows(),
            a.ncols()
        )));
    }
    if a.nrows() == 0 {
        return Err(CoreError::Empty(
            "eigendecomposition of a 0 x 0 matrix".into(),
        ));
    }
    ensure_finite_mat(a, "matrix to diagonalise")
}

/// Eigenvalues of a square matrix, without eigenvectors (about half the work of [`eig`], with
/// the same eigenvalues and errors).
///
/// ```
/// use faer::mat;
/// let a = mat![[0.0, -2.0], [2.0, 0.0]];
/// let vals = koopman_core::linalg::eigenvalues(a.as_ref())?;
/// assert!(vals.iter().all(|z| (z.norm() - 2.0).abs() < 1e-14));
/// # Ok::<(), koopman_core::CoreError>(())
/// ```
pub fn eigenvalues<T: Scalar>(a: MatRef<'_, T>) -> Result<Vec<c64>> {
    check_eig_input(a)?;
    let values = a
        .eigenvalues()
        .map_err(|e| decomposition_error("eigenvalues", e))?;
    if values.iter().any(|z| !z.finite()) {
        return Err(CoreError::Decomposition(
            "eigenvalues did not converge (non-finite output)".into(),
        ));
    }
    Ok(values)
}

/// Eigenvalues and unit-norm eigenvectors (columns) of a square matrix.
///
/// Real input uses the real Schur path, so eigenvalues of real matrices come in exact conjugate
/// pairs. Non-finite output is reported as [`CoreError::Decomposition`].
pub fn eig<T: Scalar>(a: MatRef<'_, T>) -> Result<(Vec<c64>, Mat<c64>)> {
    check_eig_input(a)?;
    let evd = a
        .eigen()
        .map_err(|e| decomposition_error("eigendecomposition", e))?;
    let values: Vec<c64> = evd.S().column_vector().iter().copied().collect();
    let mut vectors = evd.U().to_owned();
    for j in 0..vectors.ncols() {
        let norm = (0..vectors.nrows())
            .map(|i| vectors[(i, j)].norm_sqr())
            .sum::<f64>()
            .sqrt();
        if norm > 0.0 {
            for i in 0..vectors.nrows() {
                vectors[(i, j)] /= norm;
            }
        }
    }
    if values.iter().any(|z| !z.finite())
        || !(0..vectors.ncols()).all(|j| (0..vectors.nrows()).all(|i| vectors[(i, j)].finite()))
    {
        return Err(CoreError::Decomposition(
            "eigendecomposition did not converge (non-finite output)".into(),
        ));
    }
    Ok((values, vectors))
}

/// Thin QR: `A = Q R` with `Q` of size `nrows x k`, `R` of size `k x ncols`, `k = min(nrows, ncols)`.
pub fn thin_qr<T: Scalar>(a: MatRef<'_, T>) -> (Mat<T>, Mat<T>) {
    let qr = a.qr();
    (qr.compute_thin_Q(), qr.thin_R().to_owned())
}

/// Options of the SVD-based solves.
#[derive(Clone, Debug, PartialEq)]
pub struct SolveOptions {
    /// Relative cut-off: singular values `s_i <= rcond * s_1` are treated as zero. `None` uses
    /// `max(nrows, ncols) * eps` (the usual numerical rank).
    pub rcond: Option<f64>,
    /// Tikhonov (ridge) parameter `lambda >= 0`: kept singular values are inverted as
    /// `s / (s^2 + lambda)`.
    pub ridge: f64,
}

impl Default for SolveOptions {
    fn default() -> Self {
        Self {
            rcond: None,
            ridge: 0.0,
        }
    }
}

impl SolveOptions {
    /// Checks the ranges of the options.
    pub fn validate(&self) -> Result<()> {
        if let Some(r) = self.rcond {
            if !(r.is_finite() && (0.0..1.0).contains(&r)) {
                return Err(CoreError::InvalidArgument(format!(
                    "rcond must lie in [0, 1), got {r}"
                )));
            }
        }
        crate::validate::non_negative("ridge", self.ridge)?;
        Ok(())
    }

    /// The cut-off for a matrix of the given shape.
    pub fn cutoff(&self, nrows: usize, ncols: usize) -> f64 {
        self.rcond.unwrap_or(nrows.max(ncols) as f64 * f64::EPSILON)
    }

    /// Filter factors `1/s` (or `s/(s^2+ridge)`) for kept values, zero for cut ones; and the rank.
    pub fn filter(&self, s: &[f64], nrows: usize, ncols: usize) -> (Vec<f64>, usize) {
        let s1 = s.first().copied().unwrap_or(0.0);
        let cut = self.cutoff(nrows, ncols) * s1;
        let mut rank = 0;
        let f = s
            .iter()
            .map(|&si| {
                if s1 > 0.0 && si > cut && si > 0.0 {
                    rank += 1;
                    si / (si * si + self.ridge)
                } else {
                    0.0
                }
            })
            .collect();
        (f, rank)
    }
}

/// `B A^+` by a thin SVD of `A` (the finite-section solve `U = F' F^+`); returns it with the
/// numerical rank used. Never produces NaN for finite input, whatever the rank.
pub fn pinv_solve_right<T: Scalar>(
    b: MatRef<'_, T>,
    a: MatRef<'_, T>,
    opts: &SolveOptions,
) -> Result<(Mat<T>, usize)> {
    opts.validate()?;
    if b.ncols() != a.ncols() {
        return Err(CoreError::ShapeMismatch(format!(
            "B A^+ needs equal column counts, got {} and {}",
            b.ncols(),
            a.ncols()
        )));
    }
    let svd = thin_svd(a)?;
    let (f, rank) = opts.filter(&svd.s, a.nrows(), a.ncols());
    let bv = b * svd.v.as_ref();
    let scaled = Mat::from_fn(bv.nrows(), bv.ncols(), |i, j| {
        bv[(i, j)] * T::from_f64(f[j])
    });
    Ok((scaled.as_ref() * svd.u.as_ref().adjoint(), rank))
}

/// Least squares `argmin ||A x - B||` (minimum norm) by a thin SVD of `A`; returns the solution
/// and the numerical rank used.
pub fn lstsq<T: Scalar>(
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    opts: &SolveOptions,
) -> Result<(Mat<T>, usize)> {
    opts.validate()?;
    if b.nrows() != a.nrows() {
        return Err(CoreError::ShapeMismatch(format!(
            "least squares needs equal row counts, got {} and {}",
            a.nrows(),
            b.nrows()
        )));
    }
    let svd = thin_svd(a)?;
    let (f, rank) = opts.filter(&svd.s, a.nrows(), a.ncols());
    let utb = svd.u.as_ref().adjoint() * b;
    let scaled = Mat::from_fn(utb.nrows(), utb.ncols(), |i, j| {
        utb[(i, j)] * T::from_f64(f[i])
    });
    Ok((svd.v.as_ref() * scaled.as_ref(), rank))
}

/// A 2-D candle tensor (any float dtype, any device) as a host `f64` matrix.
pub fn mat_from_tensor(t: &Tensor) -> Result<Mat<f64>> {
    let (r, c) = t.dims2().map_err(|_| {
        CoreError::ShapeMismatch(format!("expected a 2-D tensor, got shape {:?}", t.dims()))
    })?;
    let data = t
        .to_dtype(DType::F64)?
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    Ok(Mat::from_fn(r, c, |i, j| data[i * c + j]))
}

/// A 2-D complex tensor as a host [`c64`] matrix.
pub fn cmat_from_complex_tensor(t: &ComplexTensor) -> Result<Mat<c64>> {
    if t.dims().len() != 2 {
        return Err(CoreError::ShapeMismatch(format!(
            "expected a 2-D complex tensor, got shape {:?}",
            t.dims()
        )));
    }
    let (r, c) = (t.dims()[0], t.dims()[1]);
    let data = t.to_c64_vec()?;
    Ok(Mat::from_fn(r, c, |i, j| data[i * c + j]))
}

/// A host `f64` matrix as an `f64` tensor on `device`.
pub fn tensor_from_mat(a: MatRef<'_, f64>, device: &Device) -> Result<Tensor> {
    let (r, c) = (a.nrows(), a.ncols());
    let mut data = Vec::with_capacity(r * c);
    for i in 0..r {
        for j in 0..c {
            data.push(a[(i, j)]);
        }
    }
    Ok(Tensor::from_vec(data, (r, c), device)?)
}

/// A host matrix as an `f64` complex tensor on `device`.
pub fn complex_tensor_from_mat<T: Scalar>(
    a: MatRef<'_, T>,
    device: &Device,
) -> Result<ComplexTensor> {
    let (r, c) = (a.nrows(), a.ncols());
    let mut data = Vec::with_capacity(r * c);
    for i in 0..r {
        for j in 0..c {
            data.push(a[(i, j)].to_c64());
        }
    }
    ComplexTensor::from_c64(&data, (r, c), DType::F64, device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lstsq_matches_exact_solution() -> Result<()> {
        let a = Mat::from_fn(4, 3, |i, j| {
            ((i * 3 + j) as f64).sin() + if i == j { 2.0 } else { 0.0 }
        });
        let x = Mat::from_fn(3, 2, |i, j| (i + 2 * j) as f64 - 1.5);
        let b = a.as_ref() * x.as_ref();
        let (sol, rank) = lstsq(a.as_ref(), b.as_ref(), &SolveOptions::default())?;
        assert_eq!(rank, 3);
        assert!(frobenius((sol - x).as_ref()) < 1e-12);
        Ok(())
    }

    #[test]
    fn eig_of_rotation_is_conjugate_pair() -> Result<()> {
        let t: f64 = 0.3;
        let a = Mat::from_fn(2, 2, |i, j| match (i, j) {
            (0, 0) | (1, 1) => t.cos(),
            (0, 1) => -t.sin(),
            _ => t.sin(),
        });
        let (vals, vecs) = eig(a.as_ref())?;
        for (k, v) in vals.iter().enumerate() {
            assert!((v.norm() - 1.0).abs() < 1e-14);
            let z: Vec<c64> = (0..2).map(|i| vecs[(i, k)]).collect();
            let az: Vec<c64> = (0..2)
                .map(|i| (0..2).map(|j| a[(i, j)].to_c64() * z[j]).sum())
                .collect();
            let r: Vec<c64> = az.iter().zip(&z).map(|(p, q)| p - v * q).collect();
            assert!(norm_c64(&r) < 1e-14);
        }
        Ok(())
    }

    #[test]
    fn zero_matrix_solve_is_zero_not_nan() -> Result<()> {
        let a = Mat::<f64>::zeros(3, 4);
        let b = Mat::from_fn(2, 4, |i, j| (i + j) as f64);
        let (u, rank) = pinv_solve_right(b.as_ref(), a.as_ref(), &SolveOptions::default())?;
        assert_eq!(rank, 0);
        assert_eq!(frobenius(u.as_ref()), 0.0);
        Ok(())
    }
}
