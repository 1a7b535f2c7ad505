//! Douglas-Rachford splitting and its permutation: Algorithms 6 and 7 of Zhao et al. (2021),
//! the shift-equivalent pair of paper 004 (Sec. III-D), as the Linnaeus example of Zhao et al.
//! states them, for `min f + g`:
//!
//! - Algorithm 6: `x1 <- prox_f(x3)`, `x2 <- prox_g(2 x1 - x3)`, `x3 <- x3 + x2 - x1`;
//! - Algorithm 7: `xi1 <- prox_g(-xi1 + 2 xi2) + xi1 - xi2`, `xi2 <- prox_f(xi1)`.
//!
//! Started at `xi1 = x3`, `xi2 = prox_f(x3)` (the shift), Algorithm 7 makes the same proximal
//! calls one call later, and its `xi2` sequence is Algorithm 6's `x1` sequence shifted by one.
//! The paper's `f` and `g` were lost from its text; [`DouglasRachford::paper_example`] takes a
//! quadratic `f(x) = (x - a)^T Q (x - a) / 2` and `g(x) = lambda |x|_1` (a lasso-type problem:
//! `prox_f` is a linear solve, `prox_g` the soft threshold, so both algorithms are nonlinear).
//!
//! ```
//! use koopman_bench::experiments::p004_conjugacy::splitting::DouglasRachford;
//!
//! let dr = DouglasRachford::paper_example(0.5);
//! let x3 = [1.5, -2.0];
//! let a = dr.algorithm_6_output(&x3, 20);
//! let b = dr.algorithm_7_output(&x3, &dr.prox_f(&x3), 20);
//! for k in 0..20 {
//!     assert!((a[(0, k)] - b[(0, k)]).abs() < 1e-12); // the same sequence
//! }
//! ```

use koopman_core::faer::Mat;

/// Douglas-Rachford splitting in 2-D with a quadratic `f` and an l1 `g`, step `t`.
#[derive(Clone, Debug, PartialEq)]
pub struct DouglasRachford {
    /// `(I + t Q)^{-1}`.
    resolvent: [[f64; 2]; 2],
    /// `t Q a`.
    shift: [f64; 2],
    /// `t lambda`, the soft threshold.
    threshold: f64,
}

impl DouglasRachford {
    /// `f(x) = (x - a)^T Q (x - a) / 2` with `Q = [[2, 0.5], [0.5, 1]]`, `a = (1, -0.5)`, and
    /// `g(x) = 0.3 |x|_1`, step `t` (ours: the paper's functions were lost).
    pub fn paper_example(t: f64) -> Self {
        let q = [[2.0, 0.5], [0.5, 1.0]];
        let a = [1.0, -0.5];
        let m = [
            [1.0 + t * q[0][0], t * q[0][1]],
            [t * q[1][0], 1.0 + t * q[1][1]],
        ];
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        Self {
            resolvent: [
                [m[1][1] / det, -m[0][1] / det],
                [-m[1][0] / det, m[0][0] / det],
            ],
            shift: [
                t * (q[0][0] * a[0] + q[0][1] * a[1]),
                t * (q[1][0] * a[0] + q[1][1] * a[1]),
            ],
            threshold: t * 0.3,
        }
    }

    /// `prox_{t f}(v) = (I + t Q)^{-1} (v + t Q a)`.
    pub fn prox_f(&self, v: &[f64]) -> Vec<f64> {
        let w = [v[0] + self.shift[0], v[1] + self.shift[1]];
        let r = &self.resolvent;
        vec![
            r[0][0] * w[0] + r[0][1] * w[1],
            r[1][0] * w[0] + r[1][1] * w[1],
        ]
    }

    /// `prox_{t g}(v)`: the soft threshold.
    pub fn prox_g(&self, v: &[f64]) -> Vec<f64> {
        v.iter()
            .map(|x| x.signum() * (x.abs() - self.threshold).max(0.0))
            .collect()
    }

    /// Algorithm 6 from `x3`: the first coordinate of `x1` after each of `len` iterations
    /// (`x1` of iterations `1 ..= len`), as a `1 x len` matrix.
    pub fn algorithm_6_output(&self, x3: &[f64], len: usize) -> Mat<f64> {
        let mut x3 = x3.to_vec();
        let mut out = Mat::<f64>::zeros(1, len);
        for k in 0..len {
            let x1 = self.prox_f(&x3);
            let x2 = self.prox_g(&[2.0 * x1[0] - x3[0], 2.0 * x1[1] - x3[1]]);
            for i in 0..2 {
                x3[i] += x2[i] - x1[i];
            }
            out[(0, k)] = x1[0];
        }
        out
    }

    /// Algorithm 7 from `(xi1, xi2)`: the first coordinate of `xi2` at iterations `0 .. len`.
    pub fn algorithm_7_output(&self, xi1: &[f64], xi2: &[f64], len: usize) -> Mat<f64> {
        let (mut xi1, mut xi2) = (xi1.to_vec(), xi2.to_vec());
        let mut out = Mat::<f64>::zeros(1, len);
        for k in 0..len {
            out[(0, k)] = xi2[0];
            let g = self.prox_g(&[2.0 * xi2[0] - xi1[0], 2.0 * xi2[1] - xi1[1]]);
            xi1 = (0..2).map(|i| g[i] + xi1[i] - xi2[i]).collect();
            xi2 = self.prox_f(&xi1);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_to_the_lasso_solution() {
        // The fixed point's x1 minimises f + g: 0 in Q (x - a) + 0.3 sign(x) (subgradient).
        let dr = DouglasRachford::paper_example(0.5);
        let mut x3 = vec![3.0, 3.0];
        let mut x1 = vec![0.0; 2];
        for _ in 0..2000 {
            x1 = dr.prox_f(&x3);
            let x2 = dr.prox_g(&[2.0 * x1[0] - x3[0], 2.0 * x1[1] - x3[1]]);
            for i in 0..2 {
                x3[i] += x2[i] - x1[i];
            }
        }
        let q = [[2.0, 0.5], [0.5, 1.0]];
        let a = [1.0, -0.5];
        for i in 0..2 {
            let grad = q[i][0] * (x1[0] - a[0]) + q[i][1] * (x1[1] - a[1]);
            if x1[i].abs() > 1e-9 {
                assert!((grad + 0.3 * x1[i].signum()).abs() < 1e-9, "{x1:?}");
            } else {
                assert!(grad.abs() <= 0.3 + 1e-9, "{x1:?}");
            }
        }
        // The prox maps: soft threshold by t lambda = 0.15; prox_f solves (I + tQ) p = v + tQa.
        assert_eq!(dr.prox_g(&[1.0, -0.1]), vec![0.85, 0.0]);
        let p = dr.prox_f(&[0.2, 0.4]);
        let back = [
            p[0] + 0.5 * (q[0][0] * (p[0] - a[0]) + q[0][1] * (p[1] - a[1])),
            p[1] + 0.5 * (q[1][0] * (p[0] - a[0]) + q[1][1] * (p[1] - a[1])),
        ];
        assert!((back[0] - 0.2).abs() < 1e-14 && (back[1] - 0.4).abs() < 1e-14);
    }
}
