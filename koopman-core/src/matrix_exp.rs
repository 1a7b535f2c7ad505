//! Dense matrix exponential in candle ops.
//!
//! `exp(A)` for a square complex matrix by scaling and squaring with a truncated Taylor series
//! evaluated by the Paterson–Stockmeyer scheme. The scaling `s` and degree `m` are chosen together
//! to meet the unit round-off of the dtype at the least number of matrix products; the choice uses
//! the 1-norm (read back to the host), and the arithmetic is pure candle, so gradients flow
//! through it. It is the projected exponential inside [`crate::expv`](fn@crate::expv) and the dense reference the
//! Krylov path is tested against.
//!
//! ```
//! use candle_core::{DType, Device};
//! use koopman_core::complex::{c64, ComplexTensor};
//! use koopman_core::matrix_exp::expm;
//!
//! # fn main() -> koopman_core::Result<()> {
//! // exp([[0, -t], [t, 0]]) is the rotation by t.
//! let t = 0.7_f64;
//! let a = ComplexTensor::from_c64(
//!     &[c64::new(0.0, 0.0), c64::new(-t, 0.0), c64::new(t, 0.0), c64::new(0.0, 0.0)],
//!     (2, 2), DType::F64, &Device::Cpu)?;
//! let e = expm(&a)?.to_c64_vec()?;
//! assert!((e[0].re - t.cos()).abs() < 1e-15 && (e[2].re - t.sin()).abs() < 1e-15);
//! # Ok(()) }
//! ```

use crate::complex::{c64, dtype_epsilon, ComplexTensor};
use crate::error::{CoreError, Result};
use candle_core::Tensor;
use faer::{Mat, MatRef};

/// Taylor degrees tried (each is cheap under Paterson–Stockmeyer).
const DEGREES: [usize; 8] = [2, 4, 6, 9, 12, 16, 20, 25];

/// Matrix products spent by Paterson–Stockmeyer on a polynomial of degree `m`.
fn ps_cost(m: usize) -> usize {
    let q = (m as f64).sqrt().ceil() as usize;
    (q - 1) + m.div_ceil(q) - 1
}

/// Bound on the relative Taylor truncation error `theta^(m+1)/(m+1)! * e^theta`.
fn taylor_remainder(theta: f64, m: usize) -> f64 {
    let mut term = 1.0;
    for k in 1..=(m + 1) {
        term *= theta / k as f64;
    }
    term * theta.exp()
}

/// The plan for one exponential: scaling exponent `s` and Taylor degree `m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpmPlan {
    /// `A` is scaled by `2^-s` and the result squared `s` times.
    pub squarings: u32,
    /// Degree of the Taylor polynomial.
    pub degree: usize,
}

impl ExpmPlan {
    /// The cheapest plan (products) that meets `unit_roundoff` for a matrix of 1-norm `norm`.
    pub fn for_norm(norm: f64, unit_roundoff: f64) -> Self {
        let s_min = if norm > 1.0 {
            norm.log2().ceil() as u32
        } else {
            0
        };
        let mut best: Option<(usize, ExpmPlan)> = None;
        for extra in 0..8u32 {
            let s = s_min + extra;
            let theta = norm / 2f64.powi(s as i32);
            if let Some(&m) = DEGREES
                .iter()
                .find(|&&m| taylor_remainder(theta, m) <= unit_roundoff)
            {
                let cost = ps_cost(m) + s as usize;
                if best.is_none_or(|(c, _)| cost < c) {
                    best = Some((
                        cost,
                        ExpmPlan {
                            squarings: s,
                            degree: m,
                        },
                    ));
                }
            }
        }
        // With theta <= 1 / 2^7 degree 9 already meets any round-off >= 1e-30, so a plan exists.
        best.map(|(_, p)| p).unwrap_or(ExpmPlan {
            squarings: s_min + 8,
            degree: 25,
        })
    }
}

/// `exp(A)` for a square complex matrix `A` (any float dtype, any device; differentiable).
pub fn expm(a: &ComplexTensor) -> Result<ComplexTensor> {
    let dims = a.dims();
    if dims.len() != 2 || dims[0] != dims[1] || dims[0] == 0 {
        return Err(CoreError::ShapeMismatch(format!(
            "matrix exponential needs a non-empty square matrix, got shape {dims:?}"
        )));
    }
    a.ensure_finite("matrix exponential argument")?;
    let norm = a.norm1_f64()?;
    let plan = ExpmPlan::for_norm(norm, dtype_epsilon(a.dtype()) / 2.0);
    expm_with_plan(a, plan)
}

/// `exp(A)` of a small complex matrix on the host, in f64: the same plan and scaling and squaring
/// as [`expm`], on a faer matrix. For the projected matrices of the fused Krylov path of
/// [`crate::expv`](fn@crate::expv), whose size is the Krylov dimension: there the device-resident variant would
/// launch one kernel per product.
///
/// ```
/// use koopman_core::complex::c64;
/// use koopman_core::matrix_exp::expm_host;
///
/// # fn main() -> koopman_core::Result<()> {
/// let t = 0.7_f64;
/// let a = faer::Mat::from_fn(2, 2, |i, j| match (i, j) {
///     (0, 1) => c64::new(-t, 0.0),
///     (1, 0) => c64::new(t, 0.0),
///     _ => c64::new(0.0, 0.0),
/// });
/// let e = expm_host(a.as_ref())?;
/// assert!((e[(0, 0)].re - t.cos()).abs() < 1e-15 && (e[(1, 0)].re - t.sin()).abs() < 1e-15);
/// # Ok(()) }
/// ```
pub fn expm_host(a: MatRef<'_, c64>) -> Result<Mat<c64>> {
    if a.nrows() != a.ncols() || a.nrows() == 0 {
        return Err(CoreError::ShapeMismatch(format!(
            "matrix exponential needs a non-empty square matrix, got {} x {}",
            a.nrows(),
            a.ncols()
        )));
    }
    let mut norm = 0.0f64;
    for j in 0..a.ncols() {
        let mut column = 0.0;
        for i in 0..a.nrows() {
            let x = a[(i, j)];
            if !(x.re.is_finite() && x.im.is_finite()) {
                return Err(CoreError::NonFinite("matrix exponential argument".into()));
            }
            column += x.norm();
        }
        norm = norm.max(column);
    }
    let plan = ExpmPlan::for_norm(norm, f64::EPSILON / 2.0);
    Ok(scale_and_square(&HostMatrix(a.to_owned()), plan)?.0)
}

/// A complex matrix on the host (see [`expm_host`]).
#[derive(Clone)]
struct HostMatrix(Mat<c64>);

impl SquareMatrix for HostMatrix {
    fn identity_like(&self) -> Result<Self> {
        Ok(HostMatrix(Mat::identity(self.0.nrows(), self.0.ncols())))
    }
    fn product(&self, other: &Self) -> Result<Self> {
        Ok(HostMatrix(&self.0 * &other.0))
    }
    fn plus(&self, other: &Self) -> Result<Self> {
        Ok(HostMatrix(&self.0 + &other.0))
    }
    fn times(&self, s: f64) -> Result<Self> {
        Ok(HostMatrix(Mat::from_fn(
            self.0.nrows(),
            self.0.ncols(),
            |i, j| self.0[(i, j)] * s,
        )))
    }
}

/// Below this size the exponential is computed on the real embedding `[[X, -Y], [Y, X]]`: one
/// real product per step instead of four, which wins while products are overhead-bound (the
/// projected matrices of `expv`); above it, the four-product complex form does half the flops.
const EMBED_BELOW: usize = 96;

/// `exp(A)` with an explicit plan (no checks; used where the caller already validated `A`).
pub fn expm_with_plan(a: &ComplexTensor, plan: ExpmPlan) -> Result<ComplexTensor> {
    let n = a.dims()[0];
    if n < EMBED_BELOW {
        let (x, y) = (a.re(), a.im());
        let top = Tensor::cat(&[x, &y.neg()?], 1)?;
        let bottom = Tensor::cat(&[y, x], 1)?;
        let embedded = RealMatrix(Tensor::cat(&[&top, &bottom], 0)?);
        let e = scale_and_square(&embedded, plan)?.0;
        return ComplexTensor::new(
            e.narrow(0, 0, n)?.narrow(1, 0, n)?,
            e.narrow(0, n, n)?.narrow(1, 0, n)?,
        );
    }
    scale_and_square(a, plan)
}

/// The operations scaling and squaring needs of a square matrix type.
trait SquareMatrix: Sized + Clone {
    fn identity_like(&self) -> Result<Self>;
    fn product(&self, other: &Self) -> Result<Self>;
    fn plus(&self, other: &Self) -> Result<Self>;
    fn times(&self, s: f64) -> Result<Self>;
}

impl SquareMatrix for ComplexTensor {
    fn identity_like(&self) -> Result<Self> {
        ComplexTensor::eye(self.dims()[0], self.dtype(), self.device())
    }
    fn product(&self, other: &Self) -> Result<Self> {
        self.matmul(other)
    }
    fn plus(&self, other: &Self) -> Result<Self> {
        self.add(other)
    }
    fn times(&self, s: f64) -> Result<Self> {
        self.scale_real(s)
    }
}

/// A real square matrix (the real embedding of a complex one).
#[derive(Clone)]
struct RealMatrix(Tensor);

impl SquareMatrix for RealMatrix {
    fn identity_like(&self) -> Result<Self> {
        Ok(RealMatrix(Tensor::eye(
            self.0.dims()[0],
            self.0.dtype(),
            self.0.device(),
        )?))
    }
    fn product(&self, other: &Self) -> Result<Self> {
        Ok(RealMatrix(crate::complex::matmul(&self.0, &other.0)?))
    }
    fn plus(&self, other: &Self) -> Result<Self> {
        Ok(RealMatrix((&self.0 + &other.0)?))
    }
    fn times(&self, s: f64) -> Result<Self> {
        Ok(RealMatrix(self.0.affine(s, 0.0)?))
    }
}

fn scale_and_square<M: SquareMatrix>(a: &M, plan: ExpmPlan) -> Result<M> {
    let scaled = a.times(0.5f64.powi(plan.squarings as i32))?;
    let mut e = taylor_paterson_stockmeyer(&scaled, plan.degree)?;
    for _ in 0..plan.squarings {
        e = e.product(&e)?;
    }
    Ok(e)
}

/// `sum_{k=0}^{m} A^k / k!` by Paterson–Stockmeyer with block size `q = ceil(sqrt(m))`.
fn taylor_paterson_stockmeyer<M: SquareMatrix>(a: &M, m: usize) -> Result<M> {
    let q = (m as f64).sqrt().ceil() as usize;
    let mut powers = vec![a.identity_like()?, a.clone()];
    for k in 2..=q {
        let next = powers[k - 1].product(a)?;
        powers.push(next);
    }
    let mut inv_fact = vec![1.0f64; m + 1];
    for k in 1..=m {
        inv_fact[k] = inv_fact[k - 1] / k as f64;
    }
    // Blocks B_j = sum_{i<q} c_{jq+i} A^i; p(A) = B_0 + A^q (B_1 + A^q (B_2 + ...)).
    let block = |j: usize| -> Result<M> {
        let mut acc: Option<M> = None;
        for (i, power) in powers.iter().enumerate().take(q) {
            let k = j * q + i;
            if k > m {
                break;
            }
            let term = power.times(inv_fact[k])?;
            acc = Some(match acc {
                None => term,
                Some(s) => s.plus(&term)?,
            });
        }
        // Block j starts at k = j q <= m, so at least one term was added.
        acc.ok_or_else(|| CoreError::InvalidArgument("empty Taylor block".into()))
    };
    let last = m / q;
    // When q divides m the last block is c_m I, so A^q B_last = c_m A^q needs no product.
    let (mut result, first_open) = if m % q == 0 && last > 0 {
        (
            block(last - 1)?.plus(&powers[q].times(inv_fact[m])?)?,
            last - 1,
        )
    } else {
        (block(last)?, last)
    };
    for j in (0..first_open).rev() {
        result = block(j)?.plus(&powers[q].product(&result)?)?;
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_exponential_matches_the_tensor_one() -> Result<()> {
        // A non-normal complex matrix with a large norm (several squarings).
        let n = 7;
        let a = Mat::from_fn(n, n, |i, j| {
            let x = (i * 7 + j * 3) as f64;
            c64::new(
                (x * 0.37).sin() * 2.0,
                (x * 0.11).cos() * (j as f64 - i as f64),
            )
        });
        let host = expm_host(a.as_ref())?;
        let flat: Vec<c64> = (0..n * n).map(|idx| a[(idx / n, idx % n)]).collect();
        let t = ComplexTensor::from_c64(
            &flat,
            (n, n),
            candle_core::DType::F64,
            &candle_core::Device::Cpu,
        )?;
        let e = expm(&t)?.to_c64_vec()?;
        let scale = e.iter().map(|x| x.norm()).fold(0.0, f64::max);
        for (idx, x) in e.iter().enumerate() {
            let d = (host[(idx / n, idx % n)] - x).norm();
            assert!(d <= 1e3 * f64::EPSILON * scale, "entry {idx}: {d:e}");
        }
        let bad = Mat::from_fn(2, 2, |i, _| {
            c64::new(if i == 1 { f64::NAN } else { 0.0 }, 0.0)
        });
        assert!(matches!(
            expm_host(bad.as_ref()),
            Err(CoreError::NonFinite(_))
        ));
        assert!(matches!(
            expm_host(Mat::<c64>::zeros(2, 3).as_ref()),
            Err(CoreError::ShapeMismatch(_))
        ));
        Ok(())
    }

    #[test]
    fn plan_costs_are_small() {
        let p = ExpmPlan::for_norm(0.0, 1.1e-16);
        assert_eq!(p.squarings, 0);
        let p = ExpmPlan::for_norm(1000.0, 1.1e-16);
        assert!(taylor_remainder(1000.0 / 2f64.powi(p.squarings as i32), p.degree) <= 1.1e-16);
        assert!(ps_cost(p.degree) + p.squarings as usize <= 20);
    }
}
