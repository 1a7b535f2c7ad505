//! Hierarchical epsilon-support-vector regression (HSVR), the multi-scale model whose depth paper
//! 001 reads off the spectrum (its Sec. 5 and supplementary Table 1): layer `l` is an
//! epsilon-SVR with the Gaussian kernel `exp(-gamma_l (x - x')^2)`, `gamma_l = rho^l gamma_0`,
//! fitted to what the layers before it left unexplained.
//!
//! [`EpsSvr`] solves the epsilon-SVR dual by sequential minimal optimisation with libsvm's
//! second-order working-set selection (Fan, Chen & Lin 2005) on a precomputed kernel matrix;
//! [`Hsvr::fit`] stacks the layers.
//!
//! ```
//! use koopman_train::analysis::hsvr::{Hsvr, HsvrConfig};
//!
//! # fn main() -> koopman_train::Result<()> {
//! let x: Vec<f64> = (0..200).map(|i| 2.0 * i as f64 / 199.0).collect();
//! let y: Vec<f64> = x.iter().map(|x| (2.0 * std::f64::consts::PI * x).sin()).collect();
//! let config = HsvrConfig { gammas: vec![36.0], epsilon: 0.02, ..Default::default() };
//! let model = Hsvr::fit(&x, &y, &config)?;
//! // The epsilon-tube: every training point within epsilon (up to the solver's tolerance).
//! assert!(model.max_error(&x, &y) <= 0.02 + 1e-2);
//! # Ok(()) }
//! ```

use crate::error::{Result, TrainError};

/// Settings of an epsilon-SVR layer stack.
#[derive(Clone, Debug, PartialEq)]
pub struct HsvrConfig {
    /// The layers' kernel scales `gamma_l` (one layer each, coarse to fine).
    pub gammas: Vec<f64>,
    /// Half-width of the insensitive tube.
    pub epsilon: f64,
    /// Box constraint `C` of every layer's dual.
    pub c: f64,
    /// Stop when the largest KKT violation falls below this.
    pub tol: f64,
    /// Give up (an error) after this many SMO iterations per layer.
    pub max_iterations: usize,
}

impl Default for HsvrConfig {
    fn default() -> Self {
        Self {
            gammas: vec![1.0],
            epsilon: 0.01,
            c: 100.0,
            tol: 1e-3,
            max_iterations: 1_000_000,
        }
    }
}

impl HsvrConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let ok = |v: f64| v.is_finite() && v > 0.0;
        if self.gammas.is_empty() || !self.gammas.iter().all(|g| ok(*g)) {
            return Err(TrainError::InvalidArgument(
                "HSVR needs at least one layer, every gamma finite and > 0".into(),
            ));
        }
        if !(self.epsilon.is_finite() && self.epsilon >= 0.0 && ok(self.c) && ok(self.tol)) {
            return Err(TrainError::InvalidArgument(format!(
                "epsilon must be finite and >= 0, C and tol finite and > 0 (got {}, {}, {})",
                self.epsilon, self.c, self.tol
            )));
        }
        Ok(())
    }
}

/// One epsilon-SVR with a Gaussian kernel on scalar inputs.
#[derive(Clone, Debug)]
pub struct EpsSvr {
    gamma: f64,
    /// Support inputs and their coefficients `alpha_i - alpha_i^*` (zero ones dropped).
    support: Vec<(f64, f64)>,
    /// Offset `b` of `f(x) = sum coef_i k(x_i, x) + b`.
    bias: f64,
    /// SMO iterations used.
    pub iterations: usize,
}

impl EpsSvr {
    /// Fits `y` at inputs `x` with kernel scale `gamma`, tube `epsilon`, box `c`; stops when the
    /// largest KKT violation is below `tol`.
    pub fn fit(x: &[f64], y: &[f64], gamma: f64, config: &HsvrConfig) -> Result<Self> {
        let n = x.len();
        if n == 0 || y.len() != n {
            return Err(TrainError::ShapeMismatch(format!(
                "{n} inputs and {} targets (need as many, at least one)",
                y.len()
            )));
        }
        if x.iter().chain(y).any(|v| !v.is_finite()) {
            return Err(TrainError::NonFinite("HSVR data".into()));
        }
        let (eps, c, tol) = (config.epsilon, config.c, config.tol);
        let kernel: Vec<f64> = (0..n * n)
            .map(|k| (-gamma * (x[k / n] - x[k % n]).powi(2)).exp())
            .collect();
        // libsvm's epsilon-SVR dual in 2n variables: beta_t for t < n (sign +1) and beta_t^*
        // for t >= n (sign -1); Q_ts = s_t s_s K(t mod n, s mod n), linear term eps -+ y.
        let m = 2 * n;
        let sign = |t: usize| if t < n { 1.0 } else { -1.0 };
        let q = |t: usize, s: usize| sign(t) * sign(s) * kernel[(t % n) * n + s % n];
        let mut beta = vec![0.0; m];
        let mut grad: Vec<f64> = (0..m)
            .map(|t| if t < n { eps - y[t] } else { eps + y[t - n] })
            .collect();
        const TAU: f64 = 1e-12;
        let upper = |b: f64| b >= c;
        let lower = |b: f64| b <= 0.0;
        let mut iterations = 0;
        loop {
            // Working set: i maximises -s_t G_t over the variables that can move up ...
            let (mut gmax, mut i) = (f64::NEG_INFINITY, usize::MAX);
            for t in 0..m {
                let movable = if sign(t) > 0.0 {
                    !upper(beta[t])
                } else {
                    !lower(beta[t])
                };
                if movable && -sign(t) * grad[t] >= gmax {
                    gmax = -sign(t) * grad[t];
                    i = t;
                }
            }
            // ... j the second-order best partner among those that can move down.
            let (mut gmax2, mut j, mut best) = (f64::NEG_INFINITY, usize::MAX, f64::INFINITY);
            if i != usize::MAX {
                for t in 0..m {
                    let movable = if sign(t) > 0.0 {
                        !lower(beta[t])
                    } else {
                        !upper(beta[t])
                    };
                    if !movable {
                        continue;
                    }
                    let v = sign(t) * grad[t];
                    gmax2 = gmax2.max(v);
                    let diff = gmax + v;
                    if diff > 0.0 {
                        let a = q(i, i) + q(t, t) - 2.0 * sign(i) * sign(t) * q(i, t);
                        let obj = -diff * diff / if a > 0.0 { a } else { TAU };
                        if obj <= best {
                            best = obj;
                            j = t;
                        }
                    }
                }
            }
            if i == usize::MAX || j == usize::MAX || gmax + gmax2 < tol {
                break;
            }
            iterations += 1;
            if iterations > config.max_iterations {
                return Err(koopman_core::CoreError::NoConvergence(format!(
                    "epsilon-SVR: KKT violation {:.3e} after {} iterations",
                    gmax + gmax2,
                    config.max_iterations
                ))
                .into());
            }
            let (old_i, old_j) = (beta[i], beta[j]);
            let qij = q(i, j);
            if sign(i) != sign(j) {
                let a = (q(i, i) + q(j, j) + 2.0 * qij).max(TAU);
                let delta = (-grad[i] - grad[j]) / a;
                let diff = beta[i] - beta[j];
                beta[i] += delta;
                beta[j] += delta;
                if diff > 0.0 {
                    if beta[j] < 0.0 {
                        beta[j] = 0.0;
                        beta[i] = diff;
                    }
                } else if beta[i] < 0.0 {
                    beta[i] = 0.0;
                    beta[j] = -diff;
                }
                if diff > 0.0 {
                    if beta[i] > c {
                        beta[i] = c;
                        beta[j] = c - diff;
                    }
                } else if beta[j] > c {
                    beta[j] = c;
                    beta[i] = c + diff;
                }
            } else {
                let a = (q(i, i) + q(j, j) - 2.0 * qij).max(TAU);
                let delta = (grad[i] - grad[j]) / a;
                let sum = beta[i] + beta[j];
                beta[i] -= delta;
                beta[j] += delta;
                if sum > c {
                    if beta[i] > c {
                        beta[i] = c;
                        beta[j] = sum - c;
                    }
                } else if beta[j] < 0.0 {
                    beta[j] = 0.0;
                    beta[i] = sum;
                }
                if sum > c {
                    if beta[j] > c {
                        beta[j] = c;
                        beta[i] = sum - c;
                    }
                } else if beta[i] < 0.0 {
                    beta[i] = 0.0;
                    beta[j] = sum;
                }
            }
            let (di, dj) = (beta[i] - old_i, beta[j] - old_j);
            for (t, g) in grad.iter_mut().enumerate() {
                *g += q(t, i) * di + q(t, j) * dj;
            }
        }
        // rho from the free variables (else the middle of the feasible interval); b = -rho.
        let (mut free, mut sum, mut ub, mut lb) = (0usize, 0.0, f64::INFINITY, f64::NEG_INFINITY);
        for t in 0..m {
            let yg = sign(t) * grad[t];
            if upper(beta[t]) {
                if sign(t) < 0.0 {
                    ub = ub.min(yg);
                } else {
                    lb = lb.max(yg);
                }
            } else if lower(beta[t]) {
                if sign(t) > 0.0 {
                    ub = ub.min(yg);
                } else {
                    lb = lb.max(yg);
                }
            } else {
                free += 1;
                sum += yg;
            }
        }
        let rho = if free > 0 {
            sum / free as f64
        } else {
            (ub + lb) / 2.0
        };
        let support = (0..n)
            .map(|t| (x[t], beta[t] - beta[t + n]))
            .filter(|(_, coef)| *coef != 0.0)
            .collect();
        Ok(Self {
            gamma,
            support,
            bias: -rho,
            iterations,
        })
    }

    /// The fitted function at `x`.
    pub fn predict(&self, x: f64) -> f64 {
        self.support
            .iter()
            .map(|(xi, coef)| coef * (-self.gamma * (xi - x).powi(2)).exp())
            .sum::<f64>()
            + self.bias
    }

    /// Number of support vectors.
    pub fn support_vectors(&self) -> usize {
        self.support.len()
    }
}

/// A fitted hierarchy of epsilon-SVR layers, coarse to fine.
#[derive(Clone, Debug)]
pub struct Hsvr {
    /// The layers, in fitting order.
    pub layers: Vec<EpsSvr>,
}

impl Hsvr {
    /// Fits one layer per `config.gammas`, each to the residual the layers before it left.
    pub fn fit(x: &[f64], y: &[f64], config: &HsvrConfig) -> Result<Self> {
        config.validate()?;
        let mut residual = y.to_vec();
        let mut layers = Vec::with_capacity(config.gammas.len());
        for &gamma in &config.gammas {
            let layer = EpsSvr::fit(x, &residual, gamma, config)?;
            for (r, xi) in residual.iter_mut().zip(x) {
                *r -= layer.predict(*xi);
            }
            layers.push(layer);
        }
        Ok(Self { layers })
    }

    /// The model at `x`: the sum of its layers.
    pub fn predict(&self, x: f64) -> f64 {
        self.layers.iter().map(|l| l.predict(x)).sum()
    }

    /// Largest `|y_i - model(x_i)|`.
    pub fn max_error(&self, x: &[f64], y: &[f64]) -> f64 {
        x.iter()
            .zip(y)
            .map(|(xi, yi)| (yi - self.predict(*xi)).abs())
            .fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(n: usize) -> Vec<f64> {
        (0..n).map(|i| 2.0 * i as f64 / (n - 1) as f64).collect()
    }

    /// The dual's optimality conditions at the solution: every training point inside the tube
    /// has zero coefficient, every point outside it sits at the box, and the coefficients sum
    /// to zero (the equality constraint); the tube holds up to the tolerance.
    #[test]
    fn kkt_conditions_hold_at_the_solution() -> Result<()> {
        let x = grid(120);
        let y: Vec<f64> = x.iter().map(|x| (3.0 * x).sin() + 0.3 * x).collect();
        let config = HsvrConfig {
            epsilon: 0.05,
            c: 10.0,
            tol: 1e-6,
            ..Default::default()
        };
        let svr = EpsSvr::fit(&x, &y, 4.0, &config)?;
        let sum: f64 = svr.support.iter().map(|s| s.1).sum();
        assert!(
            sum.abs() < 1e-9 * config.c * x.len() as f64,
            "sum of coefficients {sum}"
        );
        for (xi, yi) in x.iter().zip(&y) {
            let r = yi - svr.predict(*xi);
            let coef = svr.support.iter().find(|s| s.0 == *xi).map_or(0.0, |s| s.1);
            let slack = 1e-4;
            if r.abs() < config.epsilon - slack {
                assert!(coef.abs() < 1e-9, "inside the tube with coefficient {coef}");
            }
            if r.abs() > config.epsilon + slack {
                assert!((coef.abs() - config.c).abs() < 1e-9, "outside with {coef}");
                assert_eq!(coef.signum(), r.signum());
            }
        }
        Ok(())
    }

    /// A wide box: the epsilon-tube contains every point; a two-scale signal needs the second
    /// (finer) layer, which brings its error down to the tube.
    #[test]
    fn layers_fit_within_the_tube() -> Result<()> {
        let x = grid(300);
        let y: Vec<f64> = x
            .iter()
            .map(|x| {
                (std::f64::consts::PI * x).cos() + 0.2 * (20.0 * std::f64::consts::PI * x).sin()
            })
            .collect();
        let eps = 0.01 * 2.4;
        let coarse = HsvrConfig {
            gammas: vec![(6.0 * 0.5f64).powi(2)],
            epsilon: eps,
            c: 1e3,
            ..Default::default()
        };
        let one = Hsvr::fit(&x, &y, &coarse)?;
        let two = Hsvr::fit(
            &x,
            &y,
            &HsvrConfig {
                gammas: vec![(6.0 * 0.5f64).powi(2), (6.0 * 10.0f64).powi(2)],
                ..coarse.clone()
            },
        )?;
        assert!(
            two.max_error(&x, &y) <= eps + 2.0 * coarse.tol,
            "{}",
            two.max_error(&x, &y)
        );
        assert!(two.max_error(&x, &y) < one.max_error(&x, &y));
        Ok(())
    }

    #[test]
    fn bad_input_is_an_error() {
        let c = HsvrConfig::default();
        assert!(EpsSvr::fit(&[], &[], 1.0, &c).is_err());
        assert!(EpsSvr::fit(&[0.0, 1.0], &[1.0], 1.0, &c).is_err());
        assert!(EpsSvr::fit(&[0.0, f64::NAN], &[1.0, 2.0], 1.0, &c).is_err());
        let bad = HsvrConfig {
            gammas: vec![],
            ..c.clone()
        };
        assert!(Hsvr::fit(&[0.0], &[0.0], &bad).is_err());
        assert!(Hsvr::fit(&[0.0], &[0.0], &HsvrConfig { epsilon: -1.0, ..c }).is_err());
    }
}
