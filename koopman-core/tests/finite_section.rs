//! The finite section on many data sets at once: batched (equal shapes) and partitioned (one
//! operator per group of state entries, paper 000's hot path), against single fits and on
//! rank-deficient, constant and underflowing data.

mod common;

use common::{known_system, random_mat, rng};
use faer::{Mat, MatRef};
use koopman_core::dmd::{
    finite_section_batched, finite_section_operator, finite_section_partitioned,
    FiniteSectionConfig,
};
use koopman_core::linalg::{frobenius, SolveOptions};
use koopman_core::{CoreError, Result};
use rand::Rng;

#[test]
fn batched_finite_section_equals_single_fits_and_is_finite_on_rank_deficient_data() -> Result<()> {
    let d = 11;
    let m = 40;
    let count = 24;
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for k in 0..count {
        let a = random_mat(d, d, 200 + k);
        let x = match k % 4 {
            // rank-deficient: rank 3
            1 => &random_mat(d, 3, 300 + k) * &random_mat(3, m, 400 + k),
            // exactly zero data
            2 => Mat::<f64>::zeros(d, m),
            _ => random_mat(d, m, 500 + k),
        };
        ys.push(&a * &x);
        xs.push(x);
    }
    let xr: Vec<MatRef<'_, f64>> = xs.iter().map(|x| x.as_ref()).collect();
    let yr: Vec<MatRef<'_, f64>> = ys.iter().map(|y| y.as_ref()).collect();
    for config in [
        FiniteSectionConfig::default(),
        FiniteSectionConfig {
            solve: SolveOptions {
                rcond: Some(1e-8),
                ridge: 1e-6,
            },
        },
    ] {
        let batched = finite_section_batched(&xr, &yr, &config)?;
        assert_eq!(batched.len(), count as usize);
        for (k, u) in batched.iter().enumerate() {
            let single = finite_section_operator(xr[k], yr[k], &config)?;
            assert!(
                frobenius((u - &single).as_ref()) <= 1e-13 * (1.0 + frobenius(single.as_ref()))
            );
            assert!(
                u.col_iter().all(|c| c.iter().all(|v| v.is_finite())),
                "NaN in operator {k}"
            );
            // U X reproduces Y on the data
            let fit_err = frobenius((u * &xs[k] - &ys[k]).as_ref());
            let tol = if config.solve.ridge > 0.0 {
                1e-4
            } else {
                1e-10
            };
            assert!(
                fit_err <= tol * (1.0 + frobenius(ys[k].as_ref())),
                "operator {k}: {fit_err:e}"
            );
        }
    }
    Ok(())
}

/// `n` snapshots of `p` coordinates: iid uniform except coordinate 21, a copy of 20 (so groups
/// holding both are rank deficient).
fn partition_states(p: usize, n: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut g = rng(seed);
    (0..n)
        .map(|_| {
            let mut s: Vec<f64> = (0..p).map(|_| g.random_range(-1.0..1.0)).collect();
            s[21] = s[20];
            s
        })
        .collect()
}

#[test]
fn partitioned_finite_section_matches_the_batched_fit_on_gathered_data() -> Result<()> {
    let groups: Vec<Vec<usize>> = vec![
        (0..5).collect(),
        (5..16).collect(),
        vec![29, 3, 17],
        vec![7],
        vec![20, 21, 22],
    ];
    let refs: Vec<&[usize]> = groups.iter().map(|g| g.as_slice()).collect();
    let config = FiniteSectionConfig {
        solve: SolveOptions {
            rcond: Some(1e-10),
            ridge: 0.0,
        },
    };
    // 2,600 pairs: every group streams (several chunks, the small groups several chunks per
    // block and a partly filled last block, the time range split over the cores);
    // 60 pairs: the 11-coordinate group takes the QR route, the others stream.
    for n in [2601, 61] {
        let states = partition_states(30, n, 11);
        check_partitioned_against_batched(&states, &refs, &config)?;
    }
    Ok(())
}

/// Every operator of the partitioned fit against the batched fit of its gathered `X`, `Y`.
fn check_partitioned_against_batched(
    states: &[Vec<f64>],
    groups: &[&[usize]],
    config: &FiniteSectionConfig,
) -> Result<()> {
    let n = states.len();
    let snaps: Vec<&[f64]> = states.iter().map(|s| s.as_slice()).collect();
    let us = finite_section_partitioned(&snaps, groups, config)?;
    assert_eq!(us.len(), groups.len());
    for (g, u) in groups.iter().zip(&us) {
        let x = Mat::from_fn(g.len(), n - 1, |i, t| states[t][g[i]]);
        let y = Mat::from_fn(g.len(), n - 1, |i, t| states[t + 1][g[i]]);
        let reference = &finite_section_batched(&[x.as_ref()], &[y.as_ref()], config)?[0];
        let scale = 1.0 + frobenius(reference.as_ref());
        let gap = frobenius((u - reference).as_ref());
        assert!(
            gap <= 1e3 * f64::EPSILON * (n as f64).sqrt() * scale,
            "group {g:?}, {n} snapshots: gap {gap:e}"
        );
    }
    Ok(())
}

#[test]
fn partitioned_finite_section_with_many_groups_streams_them_in_tiles() -> Result<()> {
    // 1,200 coordinates in 118 groups of 10 and 20 of 1 to 4 coordinates: their work blocks
    // (about 330,000 doubles) do not fit the time-split path, so the groups are split over the
    // cores in tiles (several tiles, one partly filled), over 300 pairs (three chunks, the last
    // one partial) and over 101 pairs (one partial chunk).
    let mut groups: Vec<Vec<usize>> = (0..118).map(|k| (10 * k..10 * k + 10).collect()).collect();
    groups.extend((0..20).map(|k| {
        (1180 + k..1180 + k + 1 + k % 4)
            .filter(|&i| i < 1200)
            .collect()
    }));
    groups.retain(|g: &Vec<usize>| !g.is_empty());
    let refs: Vec<&[usize]> = groups.iter().map(|g| g.as_slice()).collect();
    let config = FiniteSectionConfig::default();
    for n in [301, 102] {
        let mut states = partition_states(1200, n, 5);
        // Slowly drifting coordinates as in training (X far from orthogonal).
        for t in 1..n {
            let (done, rest) = states.split_at_mut(t);
            for (z, previous) in rest[0].iter_mut().zip(&done[t - 1]) {
                *z = 0.99 * previous + 0.05 * *z;
            }
        }
        check_partitioned_against_batched(&states, &refs, &config)?;
    }
    Ok(())
}

#[test]
fn partitioned_finite_section_recovers_linear_dynamics() -> Result<()> {
    // z(t + 1) = A z(t) on 6 coordinates (A with the known spectrum in a 4-block and a 2-block).
    let (a4, _) = known_system();
    let mut a = Mat::<f64>::zeros(6, 6);
    for i in 0..4 {
        for j in 0..4 {
            a[(i, j)] = a4[(i, j)];
        }
    }
    a[(4, 4)] = 0.95;
    a[(5, 4)] = 0.1;
    a[(5, 5)] = 0.8;
    // Restarted every 40 steps from a random state so the data do not decay to zero.
    let mut g = rng(3);
    let mut states = Vec::new();
    let mut z: Vec<f64> = (0..6).map(|_| g.random_range(-1.0..1.0)).collect();
    for t in 0..3000 {
        if t % 40 == 0 && t > 0 {
            // a kick keeps every direction excited; the pair across it is still exact for the
            // 2-block because the kick only touches coordinates 0..4
            for v in z.iter_mut().take(4) {
                *v += g.random_range(-1.0..1.0);
            }
        }
        states.push(z.clone());
        z = (0..6)
            .map(|i| (0..6).map(|j| a[(i, j)] * z[j]).sum())
            .collect();
    }
    let snaps: Vec<&[f64]> = states.iter().map(|s| s.as_slice()).collect();
    let us = finite_section_partitioned(&snaps, &[&[4, 5]], &FiniteSectionConfig::default())?;
    for (i, j) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        assert!((us[0][(i, j)] - a[(4 + i, 4 + j)]).abs() < 1e-10);
    }
    Ok(())
}

#[test]
fn partitioned_finite_section_rejects_bad_input() {
    let states = partition_states(30, 100, 5);
    let snaps: Vec<&[f64]> = states.iter().map(|s| s.as_slice()).collect();
    let config = FiniteSectionConfig::default();
    let err = |r: Result<Vec<Mat<f64>>>| r.expect_err("bad input must be refused").to_string();
    assert!(
        err(finite_section_partitioned(&snaps, &[&[0, 30]], &config)).contains("coordinate 30")
    );
    assert!(err(finite_section_partitioned(&snaps, &[&[]], &config)).contains("no coordinates"));
    assert!(err(finite_section_partitioned(&snaps, &[], &config)).contains("no groups"));
    assert!(
        err(finite_section_partitioned(&snaps[..1], &[&[0]], &config)).contains("two snapshots")
    );
    let mut bad = states.clone();
    bad[50][3] = f64::NAN;
    let bad_snaps: Vec<&[f64]> = bad.iter().map(|s| s.as_slice()).collect();
    assert!(matches!(
        finite_section_partitioned(&bad_snaps, &[&[3]], &config),
        Err(CoreError::NonFinite(_))
    ));
    let short = vec![0.0; 29];
    let mut ragged = snaps.clone();
    ragged[10] = &short;
    assert!(matches!(
        finite_section_partitioned(&ragged, &[&[0]], &config),
        Err(CoreError::ShapeMismatch(_))
    ));
}

#[test]
fn partitioned_finite_section_is_finite_on_constant_groups() -> Result<()> {
    // A dead unit: 21 coordinates that never change (X = Y of rank one), over enough pairs to
    // stream and merge partial factors. The repeated round-off rows must not turn into NaN.
    let mut g = rng(9);
    let base: Vec<f64> = (0..21).map(|_| g.random_range(-1.0..1.0)).collect();
    let states: Vec<Vec<f64>> = (0..800).map(|_| base.clone()).collect();
    let snaps: Vec<&[f64]> = states.iter().map(|s| s.as_slice()).collect();
    let group: Vec<usize> = (0..21).collect();
    let us = finite_section_partitioned(&snaps, &[&group], &FiniteSectionConfig::default())?;
    let u = &us[0];
    assert!(u.col_iter().all(|c| c.iter().all(|v| v.is_finite())));
    // the least-norm operator maps the constant state onto itself
    let x = Mat::from_fn(21, 1, |i, _| base[i]);
    let ux = u * &x;
    let gap = (0..21)
        .map(|i| (ux[(i, 0)] - base[i]).abs())
        .fold(0.0, f64::max);
    assert!(gap < 1e-12, "|U x - x| = {gap:e}");
    Ok(())
}

#[test]
fn partitioned_finite_section_is_finite_with_a_coordinate_at_the_underflow_edge() -> Result<()> {
    // Coordinate 1 is 1e-156 times an independent signal: its squared norm is subnormal, where a
    // plain Householder step divides by ~0. Relative to the cut-off it is zero, as in the QR route.
    let mut g = rng(10);
    let states: Vec<Vec<f64>> = (0..600)
        .map(|_| {
            vec![
                g.random_range(-1.0..1.0),
                1e-156 * g.random_range(-1.0..1.0),
            ]
        })
        .collect();
    let snaps: Vec<&[f64]> = states.iter().map(|s| s.as_slice()).collect();
    let config = FiniteSectionConfig::default();
    let u = &finite_section_partitioned(&snaps, &[&[0, 1]], &config)?[0];
    assert!(u.col_iter().all(|c| c.iter().all(|v| v.is_finite())));
    let x = Mat::from_fn(2, 599, |i, t| states[t][i]);
    let y = Mat::from_fn(2, 599, |i, t| states[t + 1][i]);
    let reference = &finite_section_batched(&[x.as_ref()], &[y.as_ref()], &config)?[0];
    assert!((u[(0, 0)] - reference[(0, 0)]).abs() < 1e-12);
    Ok(())
}
