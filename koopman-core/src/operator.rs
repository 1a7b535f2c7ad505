//! Linear operators on `C^n`.
//!
//! A [`LinearOperator`] is anything that can be applied to a complex vector `(n,)` or to a block of
//! column vectors `(n, k)`. [`DenseOperator`] wraps a dense matrix; the structured Toeplitz
//! generator of the deep Koopman-layered model lives in [`crate::toeplitz`].
//!
//! ```
//! use candle_core::{DType, Device};
//! use koopman_core::complex::{c64, ComplexTensor};
//! use koopman_core::operator::{DenseOperator, LinearOperator};
//!
//! # fn main() -> koopman_core::Result<()> {
//! let dev = Device::Cpu;
//! let a = ComplexTensor::from_c64(
//!     &[c64::new(0.0, 1.0), c64::new(2.0, 0.0), c64::new(0.0, 0.0), c64::new(1.0, 0.0)],
//!     (2, 2), DType::F64, &dev)?;
//! let op = DenseOperator::new(a)?;
//! let x = ComplexTensor::from_c64(&[c64::new(1.0, 0.0), c64::new(1.0, 0.0)], 2, DType::F64, &dev)?;
//! let y = op.apply(&x)?.to_c64_vec()?;
//! assert_eq!(y, vec![c64::new(2.0, 1.0), c64::new(1.0, 0.0)]);
//! # Ok(()) }
//! ```

use crate::complex::{dtype_epsilon, ComplexTensor};
use crate::error::{CoreError, Result};
use crate::gather::TaylorSteps;
use candle_core::{DType, Device};

/// A linear operator on `C^n`, applied to vectors `(n,)` or column blocks `(n, k)`.
pub trait LinearOperator {
    /// The dimension `n`.
    fn dim(&self) -> usize;

    /// The float dtype the operator computes in.
    fn dtype(&self) -> DType;

    /// The device the operator lives on.
    fn device(&self) -> &Device;

    /// `A x` for `x` of shape `(n,)` or `(n, k)`; the result has the shape of `x`.
    fn apply(&self, x: &ComplexTensor) -> Result<ComplexTensor>;

    /// `A^* x`, where the implementation provides it.
    fn apply_adjoint(&self, _x: &ComplexTensor) -> Result<ComplexTensor> {
        Err(CoreError::Unsupported(
            "this operator does not provide its adjoint".into(),
        ))
    }

    /// Whether `A = A^*` (enables Lanczos in [`crate::expv`](fn@crate::expv)).
    fn is_hermitian(&self) -> bool {
        false
    }

    /// An estimate of the operator norm (an upper bound where cheap), used to choose step sizes
    /// and to scale breakdown and round-off thresholds.
    fn norm_estimate(&self) -> Result<f64>;

    /// An upper bound of a sub-multiplicative norm of the operator (the 1-norm, the 2-norm, ...),
    /// from which [`crate::taylor`] fixes its degree and sub-steps. The default is
    /// [`LinearOperator::norm_estimate`]; operators whose estimate is not a bound must override it,
    /// or the Taylor action's tolerance is not guaranteed.
    fn norm_bound(&self) -> Result<f64> {
        self.norm_estimate()
    }

    /// Fails with [`CoreError::NonFinite`] if the operator's data contains NaN or Inf.
    fn ensure_finite(&self) -> Result<()>;

    /// Whether [`LinearOperator::fused_taylor`] runs on this operator (and device).
    fn supports_fused_taylor(&self) -> bool {
        false
    }

    /// The truncated Taylor action `T_m(h A)^s v` (`A^*` with `adjoint`) by one fused kernel,
    /// where the operator has one: `None` otherwise (then [`crate::taylor`] applies the operator
    /// term by term).
    fn fused_taylor(
        &self,
        _v: &ComplexTensor,
        _steps: TaylorSteps,
        _adjoint: bool,
    ) -> Option<Result<ComplexTensor>> {
        None
    }

    /// The whole Arnoldi process of [`crate::expv`](fn@crate::expv) as one fused op
    /// ([`crate::arnoldi`]) from the start vector given as real rows `(2, n)`, where the operator
    /// has one and no gradient flows through it (its data tracks no operation): `None`
    /// otherwise (then `expv` builds the basis in candle ops).
    fn fused_arnoldi(
        &self,
        _v: &candle_core::Tensor,
        _m: usize,
        _threshold: f64,
    ) -> Option<Result<crate::arnoldi::ArnoldiBasis>> {
        None
    }

    /// The operator as a dense `(n, n)` matrix. The default applies the operator to the identity;
    /// structured operators override it with an independent construction.
    fn to_dense(&self) -> Result<ComplexTensor> {
        self.apply(&ComplexTensor::eye(
            self.dim(),
            self.dtype(),
            self.device(),
        )?)
    }
}

/// Largest estimated memory, in bytes, that a dense path (a materialised `|N| x |N|` operator and
/// its products) may use: beyond it the dense paths refuse before allocating.
pub const DENSE_MEMORY_LIMIT: u64 = 16 << 30;

/// Fails with [`CoreError::TooLarge`] (naming the memory needed) when `matrices` dense complex
/// `n x n` matrices of `dtype` would exceed [`DENSE_MEMORY_LIMIT`]; `what` names the path.
pub fn check_dense_memory(n: usize, dtype: DType, matrices: usize, what: &str) -> Result<()> {
    let bytes = (n as u128) * (n as u128) * 2 * dtype.size_in_bytes() as u128 * matrices as u128;
    if bytes > DENSE_MEMORY_LIMIT as u128 {
        let gb = |b: u128| b as f64 / 1e9;
        return Err(CoreError::TooLarge(format!(
            "{what} needs about {:.1} GB for |N| = {n} ({matrices} complex {n} x {n} {dtype:?} \
             matrices), above the dense limit of {:.1} GB: use a matrix-free path (Taylor or \
             Krylov)",
            gb(bytes),
            gb(DENSE_MEMORY_LIMIT as u128)
        )));
    }
    Ok(())
}

/// Checks that `x` is a valid operand of `op`: shape `(n,)` or `(n, k)`, same dtype and device.
pub fn check_operand(op: &dyn LinearOperator, x: &ComplexTensor) -> Result<()> {
    let dims = x.dims();
    if dims.is_empty() || dims.len() > 2 || dims[0] != op.dim() {
        return Err(CoreError::ShapeMismatch(format!(
            "operator of dimension {} applied to a tensor of shape {:?} (expected ({}) or ({}, k))",
            op.dim(),
            dims,
            op.dim(),
            op.dim()
        )));
    }
    if x.dtype() != op.dtype() {
        return Err(CoreError::InvalidArgument(format!(
            "operator computes in {:?} but the operand is {:?}",
            op.dtype(),
            x.dtype()
        )));
    }
    if !x.device().same_device(op.device()) {
        return Err(CoreError::InvalidArgument(
            "operand and operator live on different devices".into(),
        ));
    }
    Ok(())
}

/// A dense complex matrix as a [`LinearOperator`].
#[derive(Clone, Debug)]
pub struct DenseOperator {
    matrix: ComplexTensor,
    hermitian: bool,
}

impl DenseOperator {
    /// Wraps a square `(n, n)` matrix with finite entries. Hermitian matrices (to a tolerance of
    /// `16 n eps ||A||_1`) are detected and flagged, so that `expv` uses Lanczos for them.
    pub fn new(matrix: ComplexTensor) -> Result<Self> {
        let dims = matrix.dims();
        if dims.len() != 2 || dims[0] != dims[1] || dims[0] == 0 {
            return Err(CoreError::ShapeMismatch(format!(
                "a dense operator needs a non-empty square matrix, got shape {dims:?}"
            )));
        }
        matrix.ensure_finite("dense operator matrix")?;
        let n = dims[0];
        let norm = matrix.norm1_f64()?;
        let asym = matrix.sub(&matrix.adjoint()?)?.norm1_f64()?;
        let hermitian = asym <= 16.0 * n as f64 * dtype_epsilon(matrix.dtype()) * norm;
        Ok(Self {
            matrix: matrix.contiguous()?,
            hermitian,
        })
    }

    /// The wrapped matrix.
    pub fn matrix(&self) -> &ComplexTensor {
        &self.matrix
    }
}

impl LinearOperator for DenseOperator {
    fn dim(&self) -> usize {
        self.matrix.dims()[0]
    }

    fn dtype(&self) -> DType {
        self.matrix.dtype()
    }

    fn device(&self) -> &Device {
        self.matrix.device()
    }

    fn apply(&self, x: &ComplexTensor) -> Result<ComplexTensor> {
        check_operand(self, x)?;
        apply_matrix(&self.matrix, x)
    }

    fn apply_adjoint(&self, x: &ComplexTensor) -> Result<ComplexTensor> {
        check_operand(self, x)?;
        apply_matrix(&self.matrix.adjoint()?, x)
    }

    fn is_hermitian(&self) -> bool {
        self.hermitian
    }

    fn norm_estimate(&self) -> Result<f64> {
        self.matrix.norm1_f64()
    }

    fn ensure_finite(&self) -> Result<()> {
        self.matrix.ensure_finite("dense operator matrix")
    }

    fn to_dense(&self) -> Result<ComplexTensor> {
        Ok(self.matrix.clone())
    }
}

/// The adjoint `A^*` of an operator, as an operator (applications, norm bounds and the fused Taylor
/// action forwarded to `A`'s adjoint versions).
///
/// ```
/// use candle_core::{DType, Device};
/// use koopman_core::complex::{c64, ComplexTensor};
/// use koopman_core::operator::{Adjoint, DenseOperator, LinearOperator};
///
/// # fn main() -> koopman_core::Result<()> {
/// let a = ComplexTensor::from_c64(
///     &[c64::new(0.0, 1.0), c64::new(2.0, 0.0), c64::new(0.0, 0.0), c64::new(1.0, 0.0)],
///     (2, 2), DType::F64, &Device::Cpu)?;
/// let op = DenseOperator::new(a)?;
/// let x = ComplexTensor::from_c64(&[c64::new(1.0, 0.0), c64::new(0.0, 0.0)], 2, DType::F64, &Device::Cpu)?;
/// // A^* e_1 is the conjugated first row of A.
/// assert_eq!(Adjoint(&op).apply(&x)?.to_c64_vec()?, vec![c64::new(0.0, -1.0), c64::new(2.0, 0.0)]);
/// # Ok(()) }
/// ```
pub struct Adjoint<'a>(pub &'a dyn LinearOperator);

impl LinearOperator for Adjoint<'_> {
    fn dim(&self) -> usize {
        self.0.dim()
    }

    fn dtype(&self) -> DType {
        self.0.dtype()
    }

    fn device(&self) -> &Device {
        self.0.device()
    }

    fn apply(&self, x: &ComplexTensor) -> Result<ComplexTensor> {
        self.0.apply_adjoint(x)
    }

    fn apply_adjoint(&self, x: &ComplexTensor) -> Result<ComplexTensor> {
        self.0.apply(x)
    }

    fn is_hermitian(&self) -> bool {
        self.0.is_hermitian()
    }

    /// The operator's estimate (`||A^*||_2 = ||A||_2`; the 1- and inf-norms swap).
    fn norm_estimate(&self) -> Result<f64> {
        self.0.norm_estimate()
    }

    fn norm_bound(&self) -> Result<f64> {
        self.0.norm_bound()
    }

    fn ensure_finite(&self) -> Result<()> {
        self.0.ensure_finite()
    }

    fn supports_fused_taylor(&self) -> bool {
        self.0.supports_fused_taylor()
    }

    fn fused_taylor(
        &self,
        v: &ComplexTensor,
        steps: TaylorSteps,
        adjoint: bool,
    ) -> Option<Result<ComplexTensor>> {
        self.0.fused_taylor(v, steps, !adjoint)
    }

    fn to_dense(&self) -> Result<ComplexTensor> {
        self.0.to_dense()?.adjoint()
    }
}

/// `M x` for a vector `(n,)` or a block `(n, k)`.
fn apply_matrix(m: &ComplexTensor, x: &ComplexTensor) -> Result<ComplexTensor> {
    if x.dims().len() == 1 {
        m.matmul(&x.unsqueeze(1)?)?.squeeze(1)
    } else {
        m.matmul(x)
    }
}
