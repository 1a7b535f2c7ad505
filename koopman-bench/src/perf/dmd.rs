//! DMD fit timings: exact DMD and DMD_RRR on a low-rank system, and the batched finite section.

use crate::report::sci;
use crate::Result;
use koopman_core::c64;
use koopman_core::dmd::{
    dmd_rrr, exact_dmd, finite_section_batched, ExactDmdConfig, FiniteSectionConfig, RankPolicy,
    RrrConfig,
};
use koopman_core::faer::{Mat, MatRef};
use koopman_core::io::{write_npy, NpyData};
use koopman_core::spectrum::{wasserstein, Spectrum};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::path::Path;

/// Sizes of the DMD timing.
#[derive(Clone, Debug, Serialize)]
pub struct DmdPerfConfig {
    /// State dimension `n` of the snapshot matrix.
    pub n: usize,
    /// Snapshot pairs `m`.
    pub m: usize,
    /// Rank of the underlying linear system (even: conjugate pairs).
    pub rank: usize,
    /// Operators fitted by the batched finite section.
    pub batch_operators: usize,
    /// Size `d` of each batched operator.
    pub batch_dim: usize,
    /// Snapshots per batched operator.
    pub batch_snapshots: usize,
    /// Seed.
    pub seed: u64,
}

impl Default for DmdPerfConfig {
    fn default() -> Self {
        Self {
            n: 10_000,
            m: 1_000,
            rank: 10,
            batch_operators: 1_000,
            batch_dim: 11,
            batch_snapshots: 10_000,
            seed: 0,
        }
    }
}

/// DMD fit timings.
#[derive(Clone, Debug, Serialize)]
pub struct DmdTiming {
    /// Sizes.
    pub config: DmdPerfConfig,
    /// Seconds of one exact DMD fit (`RankPolicy::OptimalHardThreshold`).
    pub exact_seconds: f64,
    /// Rank exact DMD chose.
    pub exact_rank: usize,
    /// Wasserstein-1 distance of the exact-DMD eigenvalues to the true ones.
    pub exact_eigenvalue_error: f64,
    /// Seconds of one DMD_RRR fit (tol 1e-10, no refinement).
    pub rrr_seconds: f64,
    /// Rank DMD_RRR chose.
    pub rrr_rank: usize,
    /// Wasserstein-1 distance of the DMD_RRR eigenvalues to the true ones.
    pub rrr_eigenvalue_error: f64,
    /// Largest DMD_RRR residual.
    pub rrr_max_residual: f64,
    /// Seconds of the batched finite section.
    pub batched_seconds: f64,
    /// Largest `||U_b - A||_F / ||A||_F` over the batch.
    pub batched_max_error: f64,
}

/// The true eigenvalues of the low-rank test system: `rank / 2` conjugate pairs with moduli
/// just below 1 (so that 1,000 steps neither vanish nor blow up).
pub fn dmd_test_eigenvalues(rank: usize) -> Vec<c64> {
    (0..rank / 2)
        .flat_map(|k| {
            let r = 1.0 - 0.0005 * k as f64;
            let theta = 0.05 + 0.37 * k as f64;
            [c64::from_polar(r, theta), c64::from_polar(r, -theta)]
        })
        .collect()
}

/// The snapshot pair `(X, Y)` of size `n x m` of the low-rank system: `x_k = L z_k`,
/// `z_{k+1} = B z_k` with `B` real block-diagonal holding [`dmd_test_eigenvalues`].
pub fn dmd_test_data(config: &DmdPerfConfig) -> Result<(Mat<f64>, Mat<f64>)> {
    let r = config.rank;
    if r < 2 || r % 2 != 0 || config.n < r || config.m < r {
        return Err(crate::BenchError::Usage(format!(
            "DMD perf needs an even rank >= 2 below n and m, got rank {r}, n {}, m {}",
            config.n, config.m
        )));
    }
    let eig = dmd_test_eigenvalues(r);
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let lift = Mat::from_fn(config.n, r, |_, _| rng.random_range(-1.0..1.0));
    let mut z = Mat::<f64>::zeros(r, config.m + 1);
    for i in 0..r {
        z[(i, 0)] = rng.random_range(-1.0..1.0);
    }
    for k in 1..=config.m {
        for p in 0..r / 2 {
            let l = eig[2 * p];
            let (a, b) = (z[(2 * p, k - 1)], z[(2 * p + 1, k - 1)]);
            z[(2 * p, k)] = l.re * a - l.im * b;
            z[(2 * p + 1, k)] = l.im * a + l.re * b;
        }
    }
    let data = &lift * &z;
    Ok((
        data.as_ref().subcols(0, config.m).to_owned(),
        data.as_ref().subcols(1, config.m).to_owned(),
    ))
}

/// Times exact DMD and DMD_RRR on [`dmd_test_data`], and the batched finite section of
/// `batch_operators` operators of size `batch_dim`, each from `batch_snapshots` snapshots (windows
/// of one long trajectory of a rotation-like system, so every operator should equal `A`).
pub fn run_dmd_perf(config: &DmdPerfConfig) -> Result<DmdTiming> {
    let (x, y) = dmd_test_data(config)?;
    let truth = Spectrum::new(dmd_test_eigenvalues(config.rank));
    let t = std::time::Instant::now();
    let exact = exact_dmd(
        x.as_ref(),
        y.as_ref(),
        &ExactDmdConfig {
            rank: RankPolicy::OptimalHardThreshold,
        },
    )?;
    let exact_seconds = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let rrr = dmd_rrr(
        x.as_ref(),
        y.as_ref(),
        &RrrConfig {
            tol: 1e-10,
            ..Default::default()
        },
    )?;
    let rrr_seconds = t.elapsed().as_secs_f64();
    let err = |s: &Spectrum| -> f64 {
        if s.len() == truth.len() {
            wasserstein(s, &truth).unwrap_or(f64::INFINITY)
        } else {
            f64::INFINITY
        }
    };
    // batched finite section: one long trajectory, overlapping windows
    let d = config.batch_dim;
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed + 1);
    let (q, _) = koopman_core::linalg::thin_qr(
        Mat::from_fn(d, d, |_, _| rng.random_range(-1.0..1.0)).as_ref(),
    );
    let a = Mat::from_fn(d, d, |i, j| 0.999 * q[(i, j)]);
    let len = config.batch_snapshots + config.batch_operators + 1;
    let mut traj = Mat::<f64>::zeros(d, len);
    for i in 0..d {
        traj[(i, 0)] = rng.random_range(-1.0..1.0);
    }
    for k in 1..len {
        for i in 0..d {
            traj[(i, k)] = (0..d).map(|j| a[(i, j)] * traj[(j, k - 1)]).sum();
        }
    }
    let xs: Vec<MatRef<'_, f64>> = (0..config.batch_operators)
        .map(|b| traj.as_ref().subcols(b, config.batch_snapshots))
        .collect();
    let ys: Vec<MatRef<'_, f64>> = (0..config.batch_operators)
        .map(|b| traj.as_ref().subcols(b + 1, config.batch_snapshots))
        .collect();
    let t = std::time::Instant::now();
    let us = finite_section_batched(&xs, &ys, &FiniteSectionConfig::default())?;
    let batched_seconds = t.elapsed().as_secs_f64();
    let an = koopman_core::linalg::frobenius(a.as_ref());
    let batched_max_error = us
        .iter()
        .map(|u| koopman_core::linalg::frobenius((u - &a).as_ref()) / an)
        .fold(0.0, f64::max);
    Ok(DmdTiming {
        config: config.clone(),
        exact_seconds,
        exact_rank: exact.rank(),
        exact_eigenvalue_error: err(&exact.spectrum()),
        rrr_seconds,
        rrr_rank: rrr.rank(),
        rrr_eigenvalue_error: err(&rrr.spectrum()),
        rrr_max_residual: rrr
            .residuals
            .as_ref()
            .map_or(f64::NAN, |r| r.iter().cloned().fold(0.0, f64::max)),
        batched_seconds,
        batched_max_error,
    })
}

/// The DMD timings as a printable table.
pub fn format_dmd_table(d: &DmdTiming) -> String {
    let c = &d.config;
    let mut out = format!(
        "DMD fits on a {} x {} snapshot matrix of a rank-{} system; batched finite section of {} \
         operators of size {} from {} snapshots each\n",
        c.n, c.m, c.rank, c.batch_operators, c.batch_dim, c.batch_snapshots
    );
    out.push_str(&format!(
        "{:>22} {:>11} {:>6} {:>15}\n",
        "fit", "time [s]", "rank", "eig error / max"
    ));
    out.push_str(&format!(
        "{:>22} {:>11} {:>6} {:>15}\n",
        "exact DMD (GD thresh)",
        sci(d.exact_seconds),
        d.exact_rank,
        sci(d.exact_eigenvalue_error)
    ));
    out.push_str(&format!(
        "{:>22} {:>11} {:>6} {:>15}\n",
        "DMD_RRR (tol 1e-10)",
        sci(d.rrr_seconds),
        d.rrr_rank,
        sci(d.rrr_eigenvalue_error)
    ));
    out.push_str(&format!(
        "{:>22} {:>11} {:>6} {:>15}\n",
        "batched finite section",
        sci(d.batched_seconds),
        c.batch_dim,
        sci(d.batched_max_error)
    ));
    out
}

/// Writes the DMD test data (`dmd_x.npy`, `dmd_y.npy`, `n x m`, states as columns), the true
/// eigenvalues and the measured fit time for `koopman-bench/peers/pydmd_peer.py`.
pub fn export_dmd_for_peer(dir: &Path, config: &DmdPerfConfig, timing: &DmdTiming) -> Result<()> {
    let (x, y) = dmd_test_data(config)?;
    let flat = |a: &Mat<f64>| -> Vec<f64> {
        let mut v = Vec::with_capacity(a.nrows() * a.ncols());
        for i in 0..a.nrows() {
            for j in 0..a.ncols() {
                v.push(a[(i, j)]);
            }
        }
        v
    };
    write_npy(
        dir.join("dmd_x.npy"),
        &[x.nrows(), x.ncols()],
        &NpyData::F64(flat(&x)),
    )?;
    write_npy(
        dir.join("dmd_y.npy"),
        &[y.nrows(), y.ncols()],
        &NpyData::F64(flat(&y)),
    )?;
    let eig = dmd_test_eigenvalues(config.rank);
    write_npy(
        dir.join("dmd_true_eigs.npy"),
        &[eig.len(), 2],
        &NpyData::F64(eig.iter().flat_map(|z| [z.re, z.im]).collect()),
    )?;
    write_npy(
        dir.join("dmd_rust_seconds.npy"),
        &[2],
        &NpyData::F64(vec![timing.exact_seconds, timing.rrr_seconds]),
    )?;
    Ok(())
}

#[cfg(test)]
mod dmd_perf_tests {
    use super::*;

    #[test]
    fn small_dmd_perf_recovers_the_system() -> Result<()> {
        let config = DmdPerfConfig {
            n: 300,
            m: 80,
            rank: 6,
            batch_operators: 20,
            batch_dim: 5,
            batch_snapshots: 60,
            seed: 1,
        };
        let t = run_dmd_perf(&config)?;
        assert_eq!(t.exact_rank, 6);
        assert_eq!(t.rrr_rank, 6);
        assert!(t.exact_eigenvalue_error < 1e-9, "{t:?}");
        assert!(t.rrr_eigenvalue_error < 1e-9, "{t:?}");
        assert!(t.batched_max_error < 1e-8, "{t:?}");
        assert!(format_dmd_table(&t).contains("DMD_RRR"));
        Ok(())
    }
}
