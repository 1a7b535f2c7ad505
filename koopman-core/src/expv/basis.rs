//! The Krylov basis of one `expv` sub-step and what the step-size control needs of it
//! ([`Substep`]): the step-by-step basis on candle tensors ([`TensorSubstep`]) and the basis of
//! the fused Arnoldi process ([`FusedSubstep`]).

use crate::arnoldi::ArnoldiBasis;
use crate::complex::{c64, ComplexTensor};
use crate::error::{CoreError, Result};
use crate::matrix_exp::{expm, expm_host};
use crate::operator::LinearOperator;
use candle_core::Tensor;
use faer::Mat;

/// The Krylov basis and projected matrix of one sub-step.
///
/// The basis is kept as real rows `(2j, n)`: row `2i` is `Re v_i`, row `2i + 1` is `Im v_i`. Then a
/// projection `V^* p` and a combination `V h` each cost one contiguous real matrix product (instead
/// of four complex-part products), which matters because these matrix-vector products are tiny.
pub(super) struct KrylovBasis {
    /// Interleaved real rows of the orthonormal basis.
    pub(super) rows: Tensor,
    /// Columns of the projected matrix: `(offset, coefficients (len, 1), subdiagonal)`.
    pub(super) columns: Vec<(usize, ComplexTensor, Option<Tensor>)>,
    /// Number of Arnoldi steps completed (`mb` in Expokit).
    pub(super) steps: usize,
    /// Subdiagonal entry at the breakdown, when one occurred.
    pub(super) breakdown_residual: Option<f64>,
    pub(super) matvecs: usize,
    /// Vectors that needed the second Gram–Schmidt pass.
    pub(super) reorthogonalized: usize,
}

/// The interleaved rows `(2, n)` of a column vector `(n, 1)`.
pub(super) fn as_rows(v: &ComplexTensor) -> Result<Tensor> {
    Ok(Tensor::cat(&[&v.re().t()?, &v.im().t()?], 0)?)
}

/// `V^* p` as a column `(j, 1)` for interleaved basis rows `(2j, n)` and `p` `(n, 1)`.
pub(super) fn project(rows: &Tensor, p: &ComplexTensor) -> Result<ComplexTensor> {
    let j = rows.dims()[0] / 2;
    let parts = Tensor::cat(&[p.re(), p.im()], 1)?;
    // Columns: Re v . Re p, Re v . Im p, Im v . Re p, Im v . Im p.
    let m = crate::complex::matmul(rows, &parts)?.reshape((j, 4))?;
    let col = |c: usize| m.narrow(1, c, 1);
    ComplexTensor::new((col(0)? + col(3)?)?, (col(1)? - col(2)?)?)
}

/// `V h` as a column `(n, 1)` for interleaved basis rows `(2j, n)` and coefficients `h` `(j, 1)`.
pub(super) fn combine(rows: &Tensor, h: &ComplexTensor) -> Result<ComplexTensor> {
    let j = h.dims()[0];
    let (hr, hi) = (h.re(), h.im());
    let c_re = Tensor::cat(&[hr, &hi.neg()?], 1)?.reshape((1, 2 * j))?;
    let c_im = Tensor::cat(&[hi, hr], 1)?.reshape((1, 2 * j))?;
    let out = crate::complex::matmul(&Tensor::cat(&[&c_re, &c_im], 0)?, rows)?;
    ComplexTensor::new(out.narrow(0, 0, 1)?.t()?, out.narrow(0, 1, 1)?.t()?)
}

/// What the step-size control of [`KrylovStepper::propagate`](super::KrylovStepper::propagate) needs of one sub-step's basis.
pub(super) trait Substep {
    /// Arnoldi (or Lanczos) steps taken.
    fn steps(&self) -> usize;
    /// `||w||` at the start of the sub-step.
    fn start_norm(&self) -> f64;
    /// The subdiagonal entry at a breakdown, when one occurred.
    fn breakdown_residual(&self) -> Option<f64>;
    /// `||A v_{m+1}||` (Expokit's estimate; 0 after a breakdown).
    fn avnorm(&self) -> f64;
    /// Operator applications spent on the basis.
    fn matvecs(&self) -> usize;
    /// Vectors that took the second Gram–Schmidt pass.
    fn reorthogonalized(&self) -> usize;
    /// Evaluates `exp(tau H)` (augmented without breakdown), keeps it, and returns its first
    /// column on the host.
    fn exponential(&mut self, tau: f64) -> Result<Vec<c64>>;
    /// `beta V_used exp(tau H)[0..used, 0]` for the last evaluated exponential.
    fn result(&self, used: usize) -> Result<ComplexTensor>;
    /// Whether the basis came from the fused process.
    fn is_fused(&self) -> bool;
}

/// The exponential kept by [`Substep::exponential`], which must come before
/// [`Substep::result`].
pub(super) fn evaluated<T>(f: &Option<T>) -> Result<&T> {
    f.as_ref()
        .ok_or_else(|| CoreError::InvalidArgument("no projected exponential evaluated".into()))
}

/// A basis built in candle ops (differentiable in the operator and the start vector).
pub(super) struct TensorSubstep {
    pub(super) kb: KrylovBasis,
    pub(super) matvecs: usize,
    pub(super) beta: f64,
    pub(super) beta_t: Tensor,
    pub(super) avnorm: f64,
    pub(super) h: ComplexTensor,
    pub(super) f: Option<ComplexTensor>,
}

impl Substep for TensorSubstep {
    fn steps(&self) -> usize {
        self.kb.steps
    }
    fn start_norm(&self) -> f64 {
        self.beta
    }
    fn breakdown_residual(&self) -> Option<f64> {
        self.kb.breakdown_residual
    }
    fn avnorm(&self) -> f64 {
        self.avnorm
    }
    fn matvecs(&self) -> usize {
        self.matvecs
    }
    fn reorthogonalized(&self) -> usize {
        self.kb.reorthogonalized
    }
    fn exponential(&mut self, tau: f64) -> Result<Vec<c64>> {
        let f = expm(&self.h.scale_real(tau)?)?;
        let first = f.narrow(1, 0, 1)?.to_c64_vec()?;
        self.f = Some(f);
        Ok(first)
    }
    fn result(&self, used: usize) -> Result<ComplexTensor> {
        let f = evaluated(&self.f)?;
        let coeffs = f.narrow(0, 0, used)?.narrow(1, 0, 1)?;
        combine(&self.kb.rows.narrow(0, 0, 2 * used)?, &coeffs)?.broadcast_mul_real(&self.beta_t)
    }
    fn is_fused(&self) -> bool {
        false
    }
}

/// A basis from the fused process ([`crate::arnoldi`]); the projected exponential on the host.
pub(super) struct FusedSubstep {
    pub(super) kb: ArnoldiBasis,
    /// The projected matrix (augmented without breakdown).
    pub(super) h: Mat<c64>,
    pub(super) f: Option<Mat<c64>>,
    pub(super) dtype: candle_core::DType,
    pub(super) device: candle_core::Device,
}

impl FusedSubstep {
    pub(super) fn new(kb: ArnoldiBasis, op: &dyn LinearOperator) -> Self {
        let mb = kb.steps;
        let augmented = !kb.breakdown;
        let size = if augmented { mb + 2 } else { mb };
        let h = Mat::from_fn(size, size, |i, j| {
            if j < mb && i <= j + 1 {
                kb.entry(i, j)
            } else if augmented && j == mb && i == mb + 1 {
                // Expokit's H(m+2, m+1) = 1.
                c64::new(1.0, 0.0)
            } else {
                c64::new(0.0, 0.0)
            }
        });
        Self {
            kb,
            h,
            f: None,
            dtype: op.dtype(),
            device: op.device().clone(),
        }
    }
}

impl Substep for FusedSubstep {
    fn steps(&self) -> usize {
        self.kb.steps
    }
    fn start_norm(&self) -> f64 {
        self.kb.beta
    }
    fn breakdown_residual(&self) -> Option<f64> {
        self.kb.breakdown.then_some(self.kb.last_norm)
    }
    fn avnorm(&self) -> f64 {
        self.kb.avnorm
    }
    fn matvecs(&self) -> usize {
        self.kb.steps + usize::from(!self.kb.breakdown)
    }
    fn reorthogonalized(&self) -> usize {
        self.kb.reorthogonalized
    }
    fn exponential(&mut self, tau: f64) -> Result<Vec<c64>> {
        let scaled = Mat::from_fn(self.h.nrows(), self.h.ncols(), |i, j| self.h[(i, j)] * tau);
        let f = expm_host(scaled.as_ref())?;
        let first = (0..f.nrows()).map(|i| f[(i, 0)]).collect();
        self.f = Some(f);
        Ok(first)
    }
    fn result(&self, used: usize) -> Result<ComplexTensor> {
        let f = evaluated(&self.f)?;
        let coeffs: Vec<c64> = (0..used).map(|i| f[(i, 0)] * self.kb.beta).collect();
        let coeffs = ComplexTensor::from_c64(&coeffs, (used, 1), self.dtype, &self.device)?;
        combine(&self.kb.rows.narrow(0, 0, 2 * used)?, &coeffs)
    }
    fn is_fused(&self) -> bool {
        true
    }
}
