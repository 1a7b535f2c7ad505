//! The example systems of SPEC 3.1 as seeded generators, integrated by classical RK4.
//!
//! ```
//! use koopman_layers::systems::{van_der_pol_pairs, VanDerPol};
//!
//! let (x0, xt) = van_der_pol_pairs(&VanDerPol::default(), 10, 0.0, 3);
//! assert_eq!((x0.len(), xt.len()), (20, 20));
//! ```

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// One RK4 step of `x' = f(t, x)`.
pub fn rk4_step(f: &dyn Fn(f64, &[f64]) -> Vec<f64>, t: f64, x: &[f64], dt: f64) -> Vec<f64> {
    let add = |a: &[f64], b: &[f64], s: f64| -> Vec<f64> {
        a.iter().zip(b).map(|(u, v)| u + s * v).collect()
    };
    let k1 = f(t, x);
    let k2 = f(t + 0.5 * dt, &add(x, &k1, 0.5 * dt));
    let k3 = f(t + 0.5 * dt, &add(x, &k2, 0.5 * dt));
    let k4 = f(t + dt, &add(x, &k3, dt));
    (0..x.len())
        .map(|i| x[i] + dt / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]))
        .collect()
}

/// A trajectory of `steps + 1` states (row-major), sampled every `dt` from time `t0`, with
/// `substeps` RK4 steps per sample.
pub fn integrate(
    f: &dyn Fn(f64, &[f64]) -> Vec<f64>,
    x0: &[f64],
    t0: f64,
    dt: f64,
    steps: usize,
    substeps: usize,
) -> Vec<f64> {
    let sub = substeps.max(1);
    let h = dt / sub as f64;
    let mut out = Vec::with_capacity((steps + 1) * x0.len());
    let mut x = x0.to_vec();
    out.extend_from_slice(&x);
    for s in 0..steps {
        for q in 0..sub {
            x = rk4_step(f, t0 + s as f64 * dt + q as f64 * h, &x, h);
        }
        out.extend_from_slice(&x);
    }
    out
}

/// Van der Pol `x'' = mu (1 - x^2) x' - x` (paper 6.1).
#[derive(Clone, Debug, PartialEq)]
pub struct VanDerPol {
    /// `mu` (paper: 3).
    pub mu: f64,
    /// Sample step (paper: 0.01).
    pub dt: f64,
    /// Steps between `x_0` and `x_T` (paper: 100).
    pub steps: usize,
}

impl Default for VanDerPol {
    fn default() -> Self {
        Self {
            mu: 3.0,
            dt: 0.01,
            steps: 100,
        }
    }
}

/// Pairs `(x_0, x_T)` (row-major `n x 2` each) from `x_0 ~ U[-1, 1]^2`, with i.i.d.
/// `N(0, noise^2)` added to both (paper: 0.01), seeded.
pub fn van_der_pol_pairs(
    system: &VanDerPol,
    n: usize,
    noise: f64,
    seed: u64,
) -> (Vec<f64>, Vec<f64>) {
    let mu = system.mu;
    let f = move |_t: f64, x: &[f64]| vec![x[1], mu * (1.0 - x[0] * x[0]) * x[1] - x[0]];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0, noise.abs()).ok();
    let mut x0s = Vec::with_capacity(2 * n);
    let mut xts = Vec::with_capacity(2 * n);
    for _ in 0..n {
        let x0 = [rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0)];
        let traj = integrate(&f, &x0, 0.0, system.dt, system.steps, 1);
        let xt = &traj[traj.len() - 2..];
        for i in 0..2 {
            let (e0, e1) = match &normal {
                Some(nd) if noise > 0.0 => (nd.sample(&mut rng), nd.sample(&mut rng)),
                _ => (0.0, 0.0),
            };
            x0s.push(x0[i] + e0);
            xts.push(xt[i] + e1);
        }
    }
    (x0s, xts)
}

/// The measure-preserving non-autonomous flow on `T^2` (paper 6.2.1, as restated in SPEC 3.1):
/// `x1' = d zeta / d x2`, `x2' = -d zeta / d x1`, `zeta = exp(r (cos(x1 - t) + cos x2))`.
#[derive(Clone, Debug, PartialEq)]
pub struct MeasurePreserving {
    /// `r` (paper: 1; the prototype also used 0.5).
    pub r: f64,
    /// Sample step.
    pub dt: f64,
}

impl Default for MeasurePreserving {
    fn default() -> Self {
        Self { r: 1.0, dt: 0.02 }
    }
}

/// `n_traj` trajectories of `n_time` states (row-major `n_traj x n_time x 2`, angles wrapped to
/// `[-pi, pi)`) from `x_0 ~ U[-pi, pi)^2`, seeded.
pub fn measure_preserving_trajectories(
    system: &MeasurePreserving,
    n_traj: usize,
    n_time: usize,
    seed: u64,
) -> Vec<f64> {
    let r = system.r;
    let f = move |t: f64, x: &[f64]| {
        let zeta = (r * ((x[0] - t).cos() + x[1].cos())).exp();
        vec![-r * x[1].sin() * zeta, r * (x[0] - t).sin() * zeta]
    };
    let pi = std::f64::consts::PI;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n_traj * n_time * 2);
    for _ in 0..n_traj {
        let x0 = [rng.random_range(-pi..pi), rng.random_range(-pi..pi)];
        let traj = integrate(&f, &x0, 0.0, system.dt, n_time.saturating_sub(1), 10);
        out.extend(traj.iter().map(|&v| (v + pi).rem_euclid(2.0 * pi) - pi));
    }
    out
}

/// The damped, forced oscillator `x'' = -alpha x' - x + a sin(b t)` (paper 6.2.2).
#[derive(Clone, Debug, PartialEq)]
pub struct DampedForced {
    /// Damping `alpha` (paper: 0.1).
    pub alpha: f64,
    /// Forcing amplitude `a` (paper: 1).
    pub a: f64,
    /// Forcing frequency `b` (paper: 1).
    pub b: f64,
    /// Sample step.
    pub dt: f64,
}

impl Default for DampedForced {
    fn default() -> Self {
        Self {
            alpha: 0.1,
            a: 1.0,
            b: 1.0,
            dt: 0.05,
        }
    }
}

/// `n_traj` trajectories of `n_time` states `(x, x')` (row-major `n_traj x n_time x 2`) from
/// `U[-1, 1]^2`, seeded.
pub fn damped_forced_trajectories(
    system: &DampedForced,
    n_traj: usize,
    n_time: usize,
    seed: u64,
) -> Vec<f64> {
    let (alpha, a, b) = (system.alpha, system.a, system.b);
    let f = move |t: f64, x: &[f64]| vec![x[1], -alpha * x[1] - x[0] + a * (b * t).sin()];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n_traj * n_time * 2);
    for _ in 0..n_traj {
        let x0 = [rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0)];
        out.extend(integrate(
            &f,
            &x0,
            0.0,
            system.dt,
            n_time.saturating_sub(1),
            4,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rk4_is_fourth_order_on_exp() {
        let f = |_t: f64, x: &[f64]| vec![-x[0]];
        let x = integrate(&f, &[1.0], 0.0, 0.1, 10, 1);
        assert!((x[10] - (-1.0f64).exp()).abs() < 1e-6);
    }

    #[test]
    fn generators_are_seeded_and_shaped() {
        let a = measure_preserving_trajectories(&MeasurePreserving::default(), 3, 5, 1);
        let b = measure_preserving_trajectories(&MeasurePreserving::default(), 3, 5, 1);
        assert_eq!(a, b);
        assert_eq!(a.len(), 30);
        assert!(a.iter().all(|v| v.abs() <= std::f64::consts::PI));
        let c = damped_forced_trajectories(&DampedForced::default(), 2, 4, 0);
        assert_eq!(c.len(), 16);
    }
}
