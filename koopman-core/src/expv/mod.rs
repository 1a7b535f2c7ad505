//! Krylov exponential action `w = exp(t A) v` with error control.
//!
//! For a [`LinearOperator`] `A` the action is computed without forming `exp(t A)`: an orthonormal
//! Krylov basis `V_m` of `span{v, A v, ..., A^{m-1} v}` is built by Arnoldi with classical
//! Gram–Schmidt, repeated once when the first pass cancels most of the vector (the DGKS
//! criterion), or by Lanczos when `A` is Hermitian, and
//! `exp(t A) v ≈ beta V_{m+1} exp(t H) e_1` is evaluated with the dense exponential of the small
//! projected matrix ([`crate::matrix_exp::expm`], in candle ops, so gradients flow through the whole
//! computation to the operator's parameters and to `v`).
//!
//! Error control follows Expokit (Sidje 1998): the time interval is split into sub-steps; each
//! step's local error is estimated a posteriori from the augmented projected exponential and the
//! step is rejected and shrunk when the estimate exceeds its share of the tolerance. The tolerance
//! is relative to `||v||`. A *happy breakdown* (the Krylov space is invariant) is detected with a
//! threshold relative to the operator norm estimate, not an absolute constant.
//!
//! ```
//! use candle_core::{DType, Device};
//! use koopman_core::complex::{c64, ComplexTensor};
//! use koopman_core::expv::{expv, ExpvConfig};
//! use koopman_core::operator::DenseOperator;
//!
//! # fn main() -> koopman_core::Result<()> {
//! let dev = Device::Cpu;
//! // A = [[0, 1], [-1, 0]]: exp(tA) rotates, so the norm is preserved.
//! let a = ComplexTensor::from_c64(
//!     &[c64::new(0.0, 0.0), c64::new(1.0, 0.0), c64::new(-1.0, 0.0), c64::new(0.0, 0.0)],
//!     (2, 2), DType::F64, &dev)?;
//! let v = ComplexTensor::from_c64(&[c64::new(1.0, 0.0), c64::new(0.0, 0.0)], 2, DType::F64, &dev)?;
//! let (w, report) = expv(&DenseOperator::new(a)?, 1.0, &v, &ExpvConfig::default())?;
//! let w = w.to_c64_vec()?;
//! assert!((w[0].re - 1f64.cos()).abs() < 1e-12 && (w[1].re + 1f64.sin()).abs() < 1e-12);
//! assert!(report.error_estimate <= 1e-8);
//! # Ok(()) }
//! ```

mod basis;

use crate::arnoldi::{self};
use crate::complex::{dtype_epsilon, ComplexTensor};
use crate::error::{CoreError, Result};
use crate::matrix_exp::expm;
use crate::operator::{check_dense_memory, check_operand, LinearOperator};
use basis::{as_rows, combine, project, FusedSubstep, KrylovBasis, Substep, TensorSubstep};
use candle_core::Tensor;

/// Which Krylov process builds the basis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KrylovMethod {
    /// Lanczos when the operator reports itself Hermitian, Arnoldi otherwise.
    #[default]
    Auto,
    /// Arnoldi with classical Gram–Schmidt (a second pass when the DGKS criterion asks for it).
    Arnoldi,
    /// Lanczos (three-term recurrence, locally re-orthogonalised); only for Hermitian operators.
    Lanczos,
}

/// Settings of [`expv`].
#[derive(Clone, Debug, PartialEq)]
pub struct ExpvConfig {
    /// Largest Krylov dimension `m` per sub-step (capped at the operator dimension).
    pub krylov_dim: usize,
    /// Target error `||w - exp(tA) v|| <= tol * ||v||`.
    pub tol: f64,
    /// Krylov process.
    pub method: KrylovMethod,
    /// Give up (with [`CoreError::NoConvergence`]) after this many sub-steps.
    pub max_substeps: usize,
    /// Give up after this many consecutive rejections of one sub-step.
    pub max_rejections: usize,
    /// Build each basis with the operator's fused Arnoldi process ([`crate::arnoldi`]) where it
    /// has one and no gradient is asked for; `false` always takes the step-by-step candle path.
    pub fused: bool,
}

impl Default for ExpvConfig {
    fn default() -> Self {
        Self {
            krylov_dim: 30,
            tol: 1e-8,
            method: KrylovMethod::Auto,
            max_substeps: 10_000,
            max_rejections: 20,
            fused: true,
        }
    }
}

impl ExpvConfig {
    /// Checks the settings: `krylov_dim >= 1`, `0 < tol < 1` and finite, at least one sub-step.
    pub fn validate(&self) -> Result<()> {
        if self.krylov_dim == 0 {
            return Err(CoreError::InvalidArgument(
                "Krylov dimension must be at least 1".into(),
            ));
        }
        if !(self.tol.is_finite() && self.tol > 0.0 && self.tol < 1.0) {
            return Err(CoreError::InvalidArgument(format!(
                "tolerance must lie in (0, 1), got {}",
                self.tol
            )));
        }
        if self.max_substeps == 0 {
            return Err(CoreError::InvalidArgument(
                "max_substeps must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// What one [`expv`] call did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExpvReport {
    /// Operator applications (one per Krylov vector, plus one per sub-step for the estimate).
    pub matvecs: usize,
    /// Accepted sub-steps.
    pub substeps: usize,
    /// Rejected (shrunk and retried) sub-steps.
    pub rejected: usize,
    /// Estimated error relative to `||v||` (largest over the columns of a block).
    pub error_estimate: f64,
    /// Whether a happy breakdown (invariant Krylov space) occurred.
    pub breakdown: bool,
    /// Number of columns processed.
    pub columns: usize,
    /// Whether Lanczos (rather than Arnoldi) built the bases.
    pub lanczos: bool,
    /// Krylov vectors whose Gram–Schmidt pass was repeated because the first pass cancelled most
    /// of the vector (the DGKS criterion).
    pub reorthogonalized: usize,
    /// Whether the bases came from the operator's fused Arnoldi process ([`crate::arnoldi`]:
    /// one op and one device read per sub-step) rather than step by step in candle ops.
    pub fused: bool,
}

impl ExpvReport {
    fn absorb(&mut self, other: &ExpvReport) {
        self.matvecs += other.matvecs;
        self.substeps += other.substeps;
        self.rejected += other.rejected;
        self.error_estimate = self.error_estimate.max(other.error_estimate);
        self.breakdown |= other.breakdown;
        self.columns += other.columns;
        self.lanczos = other.lanczos;
        self.reorthogonalized += other.reorthogonalized;
        self.fused |= other.fused;
    }
}

/// `exp(t A) v` for `v` of shape `(n,)` or a block `(n, k)` (each column is propagated with its own
/// Krylov space). Returns the result, shaped like `v`, and a report.
pub fn expv(
    op: &dyn LinearOperator,
    t: f64,
    v: &ComplexTensor,
    config: &ExpvConfig,
) -> Result<(ComplexTensor, ExpvReport)> {
    config.validate()?;
    if !t.is_finite() {
        return Err(CoreError::NonFinite("expv time t".into()));
    }
    check_operand(op, v)?;
    v.ensure_finite("expv start vector")?;
    op.ensure_finite()?;
    let lanczos = match config.method {
        KrylovMethod::Auto => op.is_hermitian(),
        KrylovMethod::Arnoldi => false,
        KrylovMethod::Lanczos => {
            if !op.is_hermitian() {
                return Err(CoreError::InvalidArgument(
                    "Lanczos requested for an operator that is not Hermitian".into(),
                ));
            }
            true
        }
    };
    let anorm = op.norm_estimate()?;
    if !anorm.is_finite() {
        return Err(CoreError::NonFinite("operator norm estimate".into()));
    }
    let solver = KrylovStepper {
        op,
        config,
        lanczos,
        anorm,
    };
    if v.dims().len() == 1 {
        let (w, report) = solver.propagate(t, &v.unsqueeze(1)?)?;
        return Ok((w.squeeze(1)?, report));
    }
    let mut report = ExpvReport::default();
    let mut columns = Vec::with_capacity(v.dims()[1]);
    for j in 0..v.dims()[1] {
        let (w, r) = solver.propagate(t, &v.narrow(1, j, 1)?)?;
        report.absorb(&r);
        columns.push(w);
    }
    let refs: Vec<&ComplexTensor> = columns.iter().collect();
    Ok((ComplexTensor::cat(&refs, 1)?, report))
}

/// `exp(t A) v` through the dense exponential of the materialised operator (reference path).
pub fn expv_dense(op: &dyn LinearOperator, t: f64, v: &ComplexTensor) -> Result<ComplexTensor> {
    check_operand(op, v)?;
    // The operator, its scaled powers and the squarings: about ten dense complex matrices.
    check_dense_memory(op.dim(), op.dtype(), 10, "the dense exponential")?;
    let e = expm(&op.to_dense()?.scale_real(t)?)?;
    if v.dims().len() == 1 {
        e.matmul(&v.unsqueeze(1)?)?.squeeze(1)
    } else {
        e.matmul(v)
    }
}

/// A Gram–Schmidt pass that leaves less than this fraction of the vector's norm is repeated once
/// (Daniel, Gragg, Kaufman and Stewart 1976: `1/sqrt(2)`).
const REORTHOGONALIZE_BELOW: f64 = std::f64::consts::FRAC_1_SQRT_2;

struct KrylovStepper<'a> {
    op: &'a dyn LinearOperator,
    config: &'a ExpvConfig,
    lanczos: bool,
    anorm: f64,
}

/// Rounds a step size up to two significant digits (as Expokit does, to avoid noise in steps).
fn round_step(t: f64) -> f64 {
    if !(t.is_finite() && t > 0.0) {
        return t;
    }
    let s = 10f64.powf(t.log10().floor() - 1.0);
    (t / s).ceil() * s
}

impl KrylovStepper<'_> {
    /// Builds up to `m` Krylov vectors from the unit vector `v1` (shape `(n, 1)`).
    fn build_basis(&self, v1: ComplexTensor, m: usize) -> Result<KrylovBasis> {
        let n = self.op.dim();
        let eps = dtype_epsilon(v1.dtype());
        let threshold = 1e3 * eps * (n as f64).sqrt() * self.anorm;
        let mut rows = as_rows(&v1)?;
        let mut last = v1;
        let mut columns = Vec::with_capacity(m);
        let (mut matvecs, mut reorthogonalized) = (0, 0);
        // ||p|| as a tensor (it stays in the graph as the subdiagonal entry) and on the host.
        let norm = |p: &ComplexTensor| -> Result<(Tensor, f64)> {
            let s = p.norm()?;
            let host = s.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            Ok((s, host))
        };
        // ||p|| after the first pass and the norm before it, in one read from the device.
        let norms_after = |p: &ComplexTensor, before: &Tensor| -> Result<(Tensor, f64, f64)> {
            let s = p.norm()?;
            let host = Tensor::stack(&[&s, before], 0)?
                .to_dtype(candle_core::DType::F64)?
                .to_vec1::<f64>()?;
            Ok((s, host[0], host[1]))
        };
        for j in 0..m {
            let mut p = self.op.apply(&last)?;
            matvecs += 1;
            let lower = if self.lanczos { j.saturating_sub(1) } else { 0 };
            let active = rows.narrow(0, 2 * lower, 2 * (j + 1 - lower))?;
            // Classical Gram-Schmidt; the second pass only when the first cancelled more than
            // 1 - 1/sqrt(2) of the vector (the DGKS criterion, as in ARPACK): otherwise the
            // first pass already leaves p orthogonal to working precision.
            let before = p.norm()?.detach();
            let mut h = project(&active, &p)?;
            p = p.sub(&combine(&active, &h)?)?;
            let (mut s, mut s_host, before) = norms_after(&p, &before)?;
            if s_host < REORTHOGONALIZE_BELOW * before {
                let h2 = project(&active, &p)?;
                p = p.sub(&combine(&active, &h2)?)?;
                h = h.add(&h2)?;
                (s, s_host) = norm(&p)?;
                reorthogonalized += 1;
            }
            if !s_host.is_finite() {
                return Err(CoreError::NonFinite(
                    "Krylov vector (the operator overflowed)".into(),
                ));
            }
            if s_host <= threshold || j + 1 == n {
                columns.push((lower, h, None));
                return Ok(KrylovBasis {
                    rows,
                    columns,
                    steps: j + 1,
                    breakdown_residual: Some(s_host),
                    matvecs,
                    reorthogonalized,
                });
            }
            columns.push((lower, h, Some(s.clone())));
            last = p.broadcast_div_real(&s)?;
            rows = Tensor::cat(&[&rows, &as_rows(&last)?], 0)?;
        }
        Ok(KrylovBasis {
            rows,
            columns,
            steps: m,
            breakdown_residual: None,
            matvecs,
            reorthogonalized,
        })
    }

    /// The `(size, size)` projected matrix; with `augmented`, Expokit's extra unit entry.
    fn projected(&self, kb: &KrylovBasis, size: usize, augmented: bool) -> Result<ComplexTensor> {
        let (dtype, device) = (self.op.dtype(), self.op.device());
        let mut cols = Vec::with_capacity(size);
        for (offset, h, sub) in kb.columns.iter() {
            let mut parts = Vec::new();
            if *offset > 0 {
                parts.push(ComplexTensor::zeros((*offset, 1), dtype, device)?);
            }
            parts.push(h.clone());
            let mut filled = offset + h.dims()[0];
            if let Some(s) = sub {
                if filled < size {
                    parts.push(ComplexTensor::from_real(s.reshape((1, 1))?)?);
                    filled += 1;
                }
            }
            if filled < size {
                parts.push(ComplexTensor::zeros((size - filled, 1), dtype, device)?);
            }
            let refs: Vec<&ComplexTensor> = parts.iter().collect();
            cols.push(ComplexTensor::cat(&refs, 0)?.narrow(0, 0, size)?);
            if cols.len() == size {
                break;
            }
        }
        if augmented {
            // Column m holds the unit entry at row m + 1 (Expokit's H(m+2, m+1) = 1).
            let m = kb.steps;
            let mut unit = vec![crate::complex::c64::new(0.0, 0.0); size];
            unit[m + 1] = crate::complex::c64::new(1.0, 0.0);
            cols.push(ComplexTensor::from_c64(&unit, (size, 1), dtype, device)?);
        }
        while cols.len() < size {
            cols.push(ComplexTensor::zeros((size, 1), dtype, device)?);
        }
        let refs: Vec<&ComplexTensor> = cols.iter().collect();
        ComplexTensor::cat(&refs, 1)
    }

    /// `exp(t A) v` for one column `v` of shape `(n, 1)`.
    fn propagate(&self, t: f64, v: &ComplexTensor) -> Result<(ComplexTensor, ExpvReport)> {
        let mut report = ExpvReport {
            columns: 1,
            lanczos: self.lanczos,
            ..Default::default()
        };
        let normv = v.norm_f64()?;
        if t == 0.0 || normv == 0.0 {
            // exact, derivatives included: t is a plain number, so d/dA exp(0 A) v = 0
            return Ok((v.clone(), report));
        }
        if self.anorm == 0.0 {
            // A = 0: exp(tA) v = v + t A v exactly; the first-order term keeps the derivative
            // d/dA exp(tA) v = t dA v in the graph, so training can start from zero coefficients.
            report.matvecs = 1;
            let first_order = self.op.apply(v)?.scale_real(t)?;
            return Ok((v.add(&first_order)?, report));
        }
        let n = self.op.dim();
        let m = self.config.krylov_dim.min(n);
        let eps = dtype_epsilon(v.dtype());
        let threshold = 1e3 * eps * (n as f64).sqrt() * self.anorm;
        // The fused process where the operator has one and no gradient is asked for (one op and
        // one device read per sub-step), else the basis in candle ops (differentiable).
        let fused = self.config.fused
            && !self.lanczos
            && m <= arnoldi::MAX_DIM
            && !(v.re().track_op() || v.im().track_op());
        let mut basis = self.substep(v, Some(normv), m, threshold, fused)?;
        let (gamma, delta) = (0.9, 1.2);
        let t_out = t.abs();
        let sgn = t.signum();
        let tol_abs = self.config.tol * normv;
        // Error budget per unit time, so that the accepted local errors add up to tol * ||v||.
        let tol_rate = tol_abs / t_out;
        let mf = m as f64;
        // The first attempt covers the whole interval: a rejection only re-evaluates the small
        // projected exponential on the same basis, so an optimistic first step costs little,
        // while Expokit's a priori step (built on a norm *bound*) often wastes a whole basis.
        let mut t_new = t_out;
        let mut t_now = 0.0;
        let mut relative_errors = 0.0;
        loop {
            report.fused |= basis.is_fused();
            report.matvecs += basis.matvecs();
            report.reorthogonalized += basis.reorthogonalized();
            let mb = basis.steps();
            let beta = basis.start_norm();
            let breakdown = basis.breakdown_residual();
            let avnorm = basis.avnorm();
            let mut t_step = (t_out - t_now).min(t_new);
            if breakdown.is_some() {
                report.breakdown = true;
                t_step = t_out - t_now;
            }
            let mut rejections = 0;
            let mut xm = 1.0 / mf;
            let err_loc = loop {
                let first_col = basis.exponential(sgn * t_step)?;
                let err_loc = match breakdown {
                    Some(residual) => beta * t_step * residual,
                    None => {
                        let phi1 = beta * first_col[mb].norm();
                        let phi2 = beta * first_col[mb + 1].norm() * avnorm;
                        if phi1 > 10.0 * phi2 {
                            xm = 1.0 / mf;
                            phi2
                        } else if phi1 > phi2 {
                            xm = 1.0 / mf;
                            phi1 * phi2 / (phi1 - phi2)
                        } else {
                            xm = 1.0 / (mf - 1.0).max(1.0);
                            phi1
                        }
                    }
                };
                if breakdown.is_some() || err_loc <= delta * t_step * tol_rate {
                    break err_loc;
                }
                if rejections >= self.config.max_rejections {
                    return Err(CoreError::NoConvergence(format!(
                        "expv could not meet tol = {:e} (local error {err_loc:.3e} at step \
                         {t_step:.3e}); the tolerance may be below the working precision",
                        self.config.tol
                    )));
                }
                // Shrink by the estimate's rate, but at most 20-fold per rejection (and 20-fold
                // when the estimate overflowed on a far too long first attempt).
                let factor = gamma * (t_step * tol_rate / err_loc).powf(xm);
                t_step = round_step(t_step * factor.max(0.05));
                rejections += 1;
                report.rejected += 1;
            };
            let used = if breakdown.is_some() { mb } else { mb + 1 };
            let w = basis.result(used)?;
            // Round-off of this step (m inner products on vectors scaled by up to ||tA||); the
            // local error is accumulated relative to the step's start norm.
            let rndoff = eps * beta * mf * (self.anorm * t_step).max(1.0);
            relative_errors += err_loc.max(rndoff) / beta;
            t_now += t_step;
            t_new = if err_loc > 0.0 {
                round_step(gamma * t_step * (t_step * tol_rate / err_loc).powf(xm))
            } else {
                t_out
            };
            report.substeps += 1;
            if t_now >= t_out {
                let beta_end = w.norm_f64()?;
                if !beta_end.is_finite() {
                    return Err(CoreError::NonFinite(
                        "expv result (exp(tA) v overflowed)".into(),
                    ));
                }
                // Local errors grow (or decay) with the solution: scale by the final norm, never
                // below the start norm.
                report.error_estimate = relative_errors * beta_end.max(normv) / normv;
                return Ok((w, report));
            }
            if report.substeps >= self.config.max_substeps {
                return Err(CoreError::NoConvergence(format!(
                    "expv reached {} sub-steps at t = {t_now} of {t_out} (||A|| ~ {:.3e}); raise \
                     krylov_dim or max_substeps",
                    report.substeps, self.anorm
                )));
            }
            basis = self.substep(&w, None, m, threshold, basis.is_fused())?;
        }
    }

    /// A sub-step's basis from the start vector `w`: the operator's fused process when `fused`
    /// and it has one, else in candle ops (for which `norm`, `||w||` when the caller has read it
    /// already, saves a device read).
    fn substep(
        &self,
        w: &ComplexTensor,
        norm: Option<f64>,
        m: usize,
        threshold: f64,
        fused: bool,
    ) -> Result<Box<dyn Substep>> {
        if fused {
            if let Some(kb) = self.op.fused_arnoldi(&as_rows(w)?, m, threshold) {
                return Ok(Box::new(FusedSubstep::new(kb?, self.op)));
            }
        }
        let beta = match norm {
            Some(b) => b,
            None => w.norm_f64()?,
        };
        Ok(Box::new(self.tensor_substep(w, m, beta)?))
    }

    /// A sub-step's basis in candle ops from the start vector `w` of norm `beta` (read on the
    /// host by the caller).
    fn tensor_substep(&self, w: &ComplexTensor, m: usize, beta: f64) -> Result<TensorSubstep> {
        if !beta.is_finite() {
            return Err(CoreError::NonFinite(
                "expv result (exp(tA) v overflowed)".into(),
            ));
        }
        let beta_t = w.norm()?;
        let kb = self.build_basis(w.broadcast_div_real(&beta_t)?, m)?;
        let mb = kb.steps;
        let breakdown = kb.breakdown_residual.is_some();
        let (avnorm, extra) = if breakdown {
            (0.0, 0)
        } else {
            let last_rows = kb.rows.narrow(0, 2 * mb, 2)?;
            let last = ComplexTensor::new(
                last_rows.narrow(0, 0, 1)?.t()?,
                last_rows.narrow(0, 1, 1)?.t()?,
            )?;
            (self.op.apply(&last)?.norm_f64()?, 1)
        };
        let size = if breakdown { mb } else { mb + 2 };
        let h = self.projected(&kb, size, !breakdown)?;
        Ok(TensorSubstep {
            matvecs: kb.matvecs + extra,
            kb,
            beta,
            beta_t,
            avnorm,
            h,
            f: None,
        })
    }
}
