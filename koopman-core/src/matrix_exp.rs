//! Dense matrix exponential in candle ops.
//!
//! `exp(A)` for a square complex matrix by scaling and squaring with a truncated Taylor series
//! evaluated by the Paterson–Stockmeyer scheme. The scaling `s` and degree `m` are chosen together
//! to meet the unit round-off of the dtype at the least number of matrix products; the choice uses
//! the 1-norm (read back to the host), and the arithmetic is pure candle, so gradients flow
//! through it. It is the projected exponential inside [`crate::expv`] and the dense reference the
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

use crate::complex::{dtype_epsilon, ComplexTensor};
use crate::error::{CoreError, Result};

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

/// `exp(A)` with an explicit plan (no checks; used where the caller already validated `A`).
pub fn expm_with_plan(a: &ComplexTensor, plan: ExpmPlan) -> Result<ComplexTensor> {
    let n = a.dims()[0];
    let scaled = a.scale_real(0.5f64.powi(plan.squarings as i32))?;
    let mut e = taylor_paterson_stockmeyer(&scaled, plan.degree, n)?;
    for _ in 0..plan.squarings {
        e = e.matmul(&e)?;
    }
    Ok(e)
}

/// `sum_{k=0}^{m} A^k / k!` by Paterson–Stockmeyer with block size `q = ceil(sqrt(m))`.
fn taylor_paterson_stockmeyer(a: &ComplexTensor, m: usize, n: usize) -> Result<ComplexTensor> {
    let q = (m as f64).sqrt().ceil() as usize;
    let eye = ComplexTensor::eye(n, a.dtype(), a.device())?;
    let mut powers = vec![eye, a.clone()];
    for k in 2..=q {
        let next = powers[k - 1].matmul(a)?;
        powers.push(next);
    }
    let mut inv_fact = vec![1.0f64; m + 1];
    for k in 1..=m {
        inv_fact[k] = inv_fact[k - 1] / k as f64;
    }
    // Blocks B_j = sum_{i<q} c_{jq+i} A^i; p(A) = B_0 + A^q (B_1 + A^q (B_2 + ...)).
    let block = |j: usize| -> Result<ComplexTensor> {
        let mut acc: Option<ComplexTensor> = None;
        for (i, power) in powers.iter().enumerate().take(q) {
            let k = j * q + i;
            if k > m {
                break;
            }
            let term = power.scale_real(inv_fact[k])?;
            acc = Some(match acc {
                None => term,
                Some(s) => s.add(&term)?,
            });
        }
        // Block j starts at k = j q <= m, so at least one term was added.
        acc.ok_or_else(|| CoreError::InvalidArgument("empty Taylor block".into()))
    };
    let last = m / q;
    // When q divides m the last block is c_m I, so A^q B_last = c_m A^q needs no product.
    let (mut result, first_open) = if m % q == 0 && last > 0 {
        (
            block(last - 1)?.add(&powers[q].scale_real(inv_fact[m])?)?,
            last - 1,
        )
    } else {
        (block(last)?, last)
    };
    for j in (0..first_open).rev() {
        result = block(j)?.add(&powers[q].matmul(&result)?)?;
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_costs_are_small() {
        let p = ExpmPlan::for_norm(0.0, 1.1e-16);
        assert_eq!(p.squarings, 0);
        let p = ExpmPlan::for_norm(1000.0, 1.1e-16);
        assert!(taylor_remainder(1000.0 / 2f64.powi(p.squarings as i32), p.degree) <= 1.1e-16);
        assert!(ps_cost(p.degree) + p.squarings as usize <= 20);
    }
}
