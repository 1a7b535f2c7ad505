//! Truncated Taylor action `exp(tA) v` with an a-priori plan: the training-step exponential.
//!
//! [`expv`](crate::expv::expv) builds a Krylov basis and decides on the host, step by step, whether
//! to stop, reorthogonalise or shrink the step: exact to a tolerance and with a report, but every
//! decision reads a number back from the device. Training applies the exponential at every step,
//! on a GPU too, so [`expv_taylor`] fixes everything before it starts (Al-Mohy & Higham 2011,
//! "Computing the action of the matrix exponential", without their early termination): from one
//! upper bound `beta >= ||A||` it takes `s` sub-steps of the degree-`m` Taylor polynomial,
//!
//! `w = T_m(tA / s)^s v`, `T_m(x) = sum_{k <= m} x^k / k!`,
//!
//! with `(m, s)` the cheapest pair (`m s` operator applications) such that `|t| beta / s <=
//! theta_m(tol)`. `theta_m` is the largest argument for which the backward error of `T_m` stays
//! below `tol` (`T_m(X) = exp(X + E)`, `||E|| <= tol ||X||`): it is computed here from the power
//! series of `log(exp(-x) T_m(x))` (whose coefficients have a closed form) and matches the
//! published tables (for `2^-53`: `theta_10 = 0.144`, `theta_55 = 9.9`). Nothing in the loop is
//! read back from the device, and gradients flow through every path.
//!
//! Three ways to run the same plan ([`TaylorPath`]):
//! - **fused**: one custom op over the structured operator (the Toeplitz generator with one factor:
//!   [`crate::gather::GatherPattern::taylor`]): `m s` kernel launches, a hand-written backward;
//! - **dense**: the operator materialised once (its real embedding) and applied by gemm (cuBLAS on
//!   a GPU); memory `|N|^2`, refused above [`crate::operator::DENSE_MEMORY_LIMIT`];
//! - **operator**: [`LinearOperator::apply`] term by term in candle ops (any operator).
//!
//! Which to use when: [`expv`](crate::expv::expv) for a result with a certified error estimate
//! and a report of what it did (analysis, one-off actions, operators without a cheap norm bound);
//! [`expv_taylor`] inside training loops and wherever the device must not wait for the host. Its
//! cost follows the norm *bound*, so it does more work than `expv` when the bound is loose; its
//! accuracy is checked against `expv` in the tests.
//!
//! ```
//! use candle_core::{DType, Device};
//! use koopman_core::complex::{c64, ComplexTensor};
//! use koopman_core::operator::DenseOperator;
//! use koopman_core::taylor::{expv_taylor, TaylorConfig};
//!
//! # fn main() -> koopman_core::Result<()> {
//! let dev = Device::Cpu;
//! // A = [[0, 1], [-1, 0]]: exp(tA) rotates.
//! let a = ComplexTensor::from_c64(
//!     &[c64::new(0.0, 0.0), c64::new(1.0, 0.0), c64::new(-1.0, 0.0), c64::new(0.0, 0.0)],
//!     (2, 2), DType::F64, &dev)?;
//! let v = ComplexTensor::from_c64(&[c64::new(1.0, 0.0), c64::new(0.0, 0.0)], 2, DType::F64, &dev)?;
//! let config = TaylorConfig { tol: 1e-12, ..Default::default() };
//! let (w, report) = expv_taylor(&DenseOperator::new(a)?, 2.0, &v, &config)?;
//! let w = w.to_c64_vec()?;
//! assert!((w[0].re - 2f64.cos()).abs() < 1e-10 && (w[1].re + 2f64.sin()).abs() < 1e-10);
//! assert_eq!(report.matvecs, report.plan.degree * report.plan.substeps);
//! # Ok(()) }
//! ```

use crate::complex::{dtype_epsilon, ComplexTensor};
use crate::error::{CoreError, Result};
use crate::gather::TaylorSteps;
use crate::operator::{check_dense_memory, check_operand, LinearOperator};
use candle_core::Tensor;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Largest Taylor degree considered (as in Al-Mohy & Higham and SciPy's `expm_multiply`).
pub const MAX_DEGREE: usize = 55;

/// How the Taylor action runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum TaylorPath {
    /// The fused kernel when the operator has one, else the dense path on a GPU for
    /// `|N| <= AUTO_DENSE_MAX` (when it fits the memory limit), else the operator path.
    #[default]
    Auto,
    /// One fused custom op ([`LinearOperator::fused_taylor`]); an error where there is none.
    Fused,
    /// The materialised operator, applied by gemm.
    Dense,
    /// [`LinearOperator::apply`] term by term.
    Operator,
}

/// Below this `|N|` [`TaylorPath::Auto`] takes the dense path on a GPU for operators without a
/// fused kernel (cuBLAS matrix-vector products beat term-by-term candle ops there).
pub const AUTO_DENSE_MAX: usize = 4096;

/// Settings of [`expv_taylor`].
#[derive(Clone, Debug, PartialEq)]
pub struct TaylorConfig {
    /// Backward-error tolerance (relative, `||E|| <= tol ||tA||`); never below the unit
    /// round-off of the dtype.
    pub tol: f64,
    /// Which implementation runs the plan.
    pub path: TaylorPath,
    /// Largest degree `m` considered (`1..=MAX_DEGREE`).
    pub max_degree: usize,
}

impl Default for TaylorConfig {
    fn default() -> Self {
        Self {
            tol: 1e-8,
            path: TaylorPath::Auto,
            max_degree: MAX_DEGREE,
        }
    }
}

impl TaylorConfig {
    /// Checks the settings: `0 < tol < 1`, `1 <= max_degree <= MAX_DEGREE`.
    pub fn validate(&self) -> Result<()> {
        if !(self.tol.is_finite() && self.tol > 0.0 && self.tol < 1.0) {
            return Err(CoreError::InvalidArgument(format!(
                "Taylor tolerance must lie in (0, 1), got {}",
                self.tol
            )));
        }
        if self.max_degree == 0 || self.max_degree > MAX_DEGREE {
            return Err(CoreError::InvalidArgument(format!(
                "Taylor max_degree must lie in 1..={MAX_DEGREE}, got {}",
                self.max_degree
            )));
        }
        Ok(())
    }
}

/// Degree and sub-steps of one Taylor action.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TaylorPlan {
    /// Degree `m` of the Taylor polynomial.
    pub degree: usize,
    /// Sub-steps `s`.
    pub substeps: usize,
    /// The bound `|t| beta >= ||tA||` the plan was made for.
    pub norm_bound: f64,
}

impl TaylorPlan {
    /// The cheapest plan (fewest operator applications `m s`) whose backward error stays below
    /// `tol` for any operator with `||tA|| <= norm`.
    pub fn for_norm(norm: f64, tol: f64, max_degree: usize) -> Result<Self> {
        if !(norm.is_finite() && norm >= 0.0) {
            return Err(CoreError::NonFinite("Taylor plan norm bound".into()));
        }
        let thetas = thetas(tol);
        let mut best: Option<(usize, TaylorPlan)> = None;
        for degree in 1..=max_degree.clamp(1, MAX_DEGREE) {
            let substeps = ((norm / thetas[degree]).ceil() as usize).max(1);
            let cost = degree.saturating_mul(substeps);
            if best.is_none_or(|(c, _)| cost < c) {
                best = Some((
                    cost,
                    TaylorPlan {
                        degree,
                        substeps,
                        norm_bound: norm,
                    },
                ));
            }
        }
        best.map(|(_, p)| p)
            .ok_or_else(|| CoreError::InvalidArgument("no Taylor degree allowed".into()))
    }

    /// Operator applications (`m s`).
    pub fn matvecs(&self) -> usize {
        self.degree * self.substeps
    }
}

/// What one [`expv_taylor`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TaylorReport {
    /// The path that ran (never [`TaylorPath::Auto`]).
    pub path: TaylorPath,
    /// Degree, sub-steps and the norm bound.
    pub plan: TaylorPlan,
    /// Operator applications per column.
    pub matvecs: usize,
}

/// `theta_m(tol)`: the largest `theta` with `sum_{k > m} |c_k| theta^(k-1) <= tol`, where
/// `log(exp(-x) T_m(x)) = sum_k c_k x^k` (Al-Mohy & Higham 2011, eq. 3.6: the backward error of
/// `T_m` relative to its argument).
pub fn theta(degree: usize, tol: f64) -> f64 {
    let degree = degree.clamp(1, MAX_DEGREE);
    thetas(tol)[degree]
}

/// `theta_m(tol)` for `m = 0..=MAX_DEGREE` (index 0 unused), computed once per tolerance.
fn thetas(tol: f64) -> Arc<Vec<f64>> {
    static CACHE: OnceLock<Mutex<HashMap<u64, Arc<Vec<f64>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Ok(map) = cache.lock() {
        if let Some(t) = map.get(&tol.to_bits()) {
            return t.clone();
        }
    }
    let mut table = vec![0.0; MAX_DEGREE + 1];
    for (m, slot) in table.iter_mut().enumerate().skip(1) {
        *slot = theta_uncached(m, tol);
    }
    let table = Arc::new(table);
    if let Ok(mut map) = cache.lock() {
        map.insert(tol.to_bits(), table.clone());
    }
    table
}

fn theta_uncached(m: usize, tol: f64) -> f64 {
    // exp(-x) T_m(x) = 1 + q(x) with q_k = (-1)^(k+m) C(k-1, m) / k! for k > m (the partial
    // alternating binomial sums have this closed form, so no cancellation), and
    // log(1 + q) = sum_p (-1)^(p+1) q^p / p. Coefficients are kept scaled by sigma^k (x = sigma y)
    // so that neither sigma^k nor 1/k! leaves the f64 range.
    let terms = 3 * m + 80;
    let sigma = (m as f64 / 4.0).max(1.0);
    let ln_fact: Vec<f64> = (0..=terms + 1)
        .scan(0.0, |acc, k| {
            if k > 0 {
                *acc += (k as f64).ln();
            }
            Some(*acc)
        })
        .collect();
    let mut q = vec![0.0; terms + 1];
    for (k, qk) in q.iter_mut().enumerate().skip(m + 1) {
        // C(k-1, m) / k! = (k-1)! / (m! (k-1-m)! k!)
        let ln =
            ln_fact[k - 1] - ln_fact[m] - ln_fact[k - 1 - m] - ln_fact[k] + k as f64 * sigma.ln();
        let sign = if (k + m) % 2 == 0 { 1.0 } else { -1.0 };
        *qk = sign * ln.exp();
    }
    let mut c = vec![0.0; terms + 1];
    let mut power = q.clone();
    let mut p = 1usize;
    while power.iter().any(|&x| x != 0.0) {
        let sign = if p % 2 == 1 { 1.0 } else { -1.0 };
        for (ck, &pk) in c.iter_mut().zip(&power) {
            *ck += sign * pk / p as f64;
        }
        let mut next = vec![0.0; terms + 1];
        for (i, &pi) in power.iter().enumerate() {
            if pi == 0.0 {
                continue;
            }
            for j in (m + 1)..=terms.saturating_sub(i) {
                next[i + j] += pi * q[j];
            }
        }
        power = next;
        p += 1;
    }
    // Backward error bound relative to theta: sum_k |c_k| theta^(k-1), increasing in theta.
    let bound = |theta: f64| -> f64 {
        let y = theta / sigma;
        c.iter()
            .enumerate()
            .map(|(k, &ck)| ck.abs() * y.powi(k as i32))
            .sum::<f64>()
            / theta
    };
    let (mut lo, mut hi) = (0.0f64, 64.0f64);
    for _ in 0..80 {
        let mid = 0.5 * (lo + hi);
        if bound(mid) <= tol {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The path and plan [`expv_taylor`] would use for `op` over time `t` (one read of the norm
/// bound, which structured operators keep from their construction).
pub fn plan(
    op: &dyn LinearOperator,
    t: f64,
    config: &TaylorConfig,
) -> Result<(TaylorPath, TaylorPlan)> {
    config.validate()?;
    if !t.is_finite() {
        return Err(CoreError::NonFinite("Taylor action time t".into()));
    }
    let tol = config.tol.max(dtype_epsilon(op.dtype()) / 2.0);
    let norm = op.norm_bound()? * t.abs();
    let plan = TaylorPlan::for_norm(norm, tol, config.max_degree)?;
    let n = op.dim();
    let path = match config.path {
        TaylorPath::Auto => {
            if op.supports_fused_taylor() {
                TaylorPath::Fused
            } else if op.device().is_cuda()
                && n <= AUTO_DENSE_MAX
                && check_dense_memory(n, op.dtype(), DENSE_MATRICES, "").is_ok()
            {
                TaylorPath::Dense
            } else {
                TaylorPath::Operator
            }
        }
        TaylorPath::Fused if !op.supports_fused_taylor() => {
            return Err(CoreError::Unsupported(
                "this operator (or its device) has no fused Taylor kernel; use TaylorPath::Auto"
                    .into(),
            ))
        }
        p => p,
    };
    Ok((path, plan))
}

/// Dense complex `n x n` matrices the dense path holds: the real embedding (two) and the
/// materialisation's temporaries.
const DENSE_MATRICES: usize = 4;

/// `exp(t A) v` for `v` of shape `(n,)` or a block `(n, k)`, by the a-priori Taylor plan (see the
/// [module documentation](self)); differentiable in `v` and the operator's parameters. No value is
/// read back from the device inside the loop.
pub fn expv_taylor(
    op: &dyn LinearOperator,
    t: f64,
    v: &ComplexTensor,
    config: &TaylorConfig,
) -> Result<(ComplexTensor, TaylorReport)> {
    check_operand(op, v)?;
    let (path, plan) = plan(op, t, config)?;
    let steps = TaylorSteps {
        degree: plan.degree,
        substeps: plan.substeps,
        step: t / plan.substeps as f64,
    };
    let w = match path {
        TaylorPath::Fused => op.fused_taylor(v, steps, false).ok_or_else(|| {
            CoreError::Unsupported("the operator offers no fused Taylor kernel".into())
        })??,
        TaylorPath::Dense => {
            check_dense_memory(
                op.dim(),
                op.dtype(),
                DENSE_MATRICES,
                "the dense Taylor action",
            )?;
            dense_taylor(&op.to_dense()?, v, steps)?
        }
        TaylorPath::Operator | TaylorPath::Auto => taylor_loop(v, steps, |z| op.apply(z))?,
    };
    Ok((
        w,
        TaylorReport {
            path,
            plan,
            matvecs: plan.matvecs(),
        },
    ))
}

/// What the Taylor loop needs of a vector type.
trait Vector: Clone {
    fn scaled(&self, s: f64) -> Result<Self>;
    fn plus(&self, other: &Self) -> Result<Self>;
}

impl Vector for ComplexTensor {
    fn scaled(&self, s: f64) -> Result<Self> {
        self.scale_real(s)
    }
    fn plus(&self, other: &Self) -> Result<Self> {
        self.add(other)
    }
}

impl Vector for Tensor {
    fn scaled(&self, s: f64) -> Result<Self> {
        Ok(self.affine(s, 0.0)?)
    }
    fn plus(&self, other: &Self) -> Result<Self> {
        Ok((self + other)?)
    }
}

/// `T_m(h A)^s v` with `A` given by `apply` (candle ops, differentiable).
fn taylor_loop<V: Vector>(v: &V, steps: TaylorSteps, apply: impl Fn(&V) -> Result<V>) -> Result<V> {
    let mut w = v.clone();
    for _ in 0..steps.substeps {
        let mut z = w.clone();
        let mut acc = w;
        for k in 1..=steps.degree {
            z = apply(&z)?.scaled(steps.step / k as f64)?;
            acc = acc.plus(&z)?;
        }
        w = acc;
    }
    Ok(w)
}

/// The Taylor loop on the real embedding `[[X, -Y], [Y, X]]` of the dense matrix `A = X + iY`
/// (one real gemm per term instead of four).
fn dense_taylor(a: &ComplexTensor, v: &ComplexTensor, steps: TaylorSteps) -> Result<ComplexTensor> {
    let n = a.dims()[0];
    let (x, y) = (a.re(), a.im());
    let top = Tensor::cat(&[x, &y.neg()?], 1)?;
    let bottom = Tensor::cat(&[y, x], 1)?;
    let embedded = Tensor::cat(&[&top, &bottom], 0)?;
    let column = v.dims().len() == 1;
    let v2 = if column { v.unsqueeze(1)? } else { v.clone() };
    let stacked = Tensor::cat(&[v2.re(), v2.im()], 0)?;
    let w = taylor_loop(&stacked, steps, |z| crate::complex::matmul(&embedded, z))?;
    let out = ComplexTensor::new(w.narrow(0, 0, n)?, w.narrow(0, n, n)?)?;
    if column {
        out.squeeze(1)
    } else {
        Ok(out)
    }
}
