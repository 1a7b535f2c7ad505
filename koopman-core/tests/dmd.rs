//! Koopman/DMD estimators on systems with known spectra, residual identities, batched finite
//! section, input loaders and bad-input errors.

use candle_core::{DType, Device, Tensor};
use faer::{Mat, MatRef};
use koopman_core::dmd::{
    delay_embed, dmd_rrr, edmd, exact_dmd, finite_section, finite_section_batched,
    finite_section_batched_tensor, finite_section_operator, finite_section_partitioned, hankel_dmd,
    kernel_dmd, snapshots_from_csv, snapshots_from_npy, snapshots_from_tensor, trajectory_pairs,
    Batch, Dictionary, EdmdConfig, ExactDmdConfig, FiniteSectionConfig, Fit, HankelConfig,
    HankelEstimator, KernelDmdConfig, Pairs, Partitioned, RankPolicy, RefineSelection, RrrConfig,
    StateLayout,
};
use koopman_core::io::{write_npy, NpyData};
use koopman_core::linalg::{frobenius, thin_qr, SolveOptions};
use koopman_core::spectrum::{wasserstein, Spectrum};
use koopman_core::{c64, test_device, CoreError, KoopmanFit, Result};
use rand::{Rng, SeedableRng};

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

fn random_mat(r: usize, c: usize, seed: u64) -> Mat<f64> {
    let mut g = rng(seed);
    Mat::from_fn(r, c, |_, _| g.random_range(-1.0..1.0))
}

/// `A = P B P^T` with `P` orthogonal and `B` block diagonal: eigenvalues 0.9, 0.5, 0.7 ± 0.2i.
fn known_system() -> (Mat<f64>, Vec<c64>) {
    let (p, _) = thin_qr(random_mat(4, 4, 7).as_ref());
    let mut b = Mat::<f64>::zeros(4, 4);
    b[(0, 0)] = 0.9;
    b[(1, 1)] = 0.5;
    b[(2, 2)] = 0.7;
    b[(3, 3)] = 0.7;
    b[(2, 3)] = -0.2;
    b[(3, 2)] = 0.2;
    let a = &p * &b * p.transpose();
    let eig = vec![
        c64::new(0.9, 0.0),
        c64::new(0.5, 0.0),
        c64::new(0.7, 0.2),
        c64::new(0.7, -0.2),
    ];
    (a, eig)
}

fn trajectory(a: MatRef<'_, f64>, x0: &[f64], len: usize) -> Mat<f64> {
    let n = x0.len();
    let mut t = Mat::<f64>::zeros(n, len);
    for i in 0..n {
        t[(i, 0)] = x0[i];
    }
    for k in 1..len {
        for i in 0..n {
            t[(i, k)] = (0..n).map(|j| a[(i, j)] * t[(j, k - 1)]).sum();
        }
    }
    t
}

/// Every expected eigenvalue has an estimate within `tol`.
fn assert_contains(fit: &KoopmanFit, expected: &[c64], tol: f64, what: &str) {
    for e in expected {
        let best = fit
            .eigenvalues
            .iter()
            .map(|l| (l - e).norm())
            .fold(f64::INFINITY, f64::min);
        assert!(
            best < tol,
            "{what}: eigenvalue {e} missed by {best:e}; got {:?}",
            fit.eigenvalues
        );
    }
}

fn assert_same_spectrum(fit: &KoopmanFit, expected: &[c64], tol: f64, what: &str) -> Result<()> {
    assert_eq!(fit.rank(), expected.len(), "{what}: rank");
    let d = wasserstein(&fit.spectrum(), &Spectrum::new(expected.to_vec()))?;
    assert!(
        d < tol,
        "{what}: Wasserstein distance {d:e} to the true spectrum"
    );
    Ok(())
}

/// One estimator through the `Fit` interface: it recovers the known system, and data of two shapes
/// are refused by `check`, before any work.
fn fit_through_trait<'a, E>(
    estimator: &E,
    pairs: Pairs<'a, f64>,
    bad: Pairs<'a, f64>,
    expected: &[c64],
    what: &str,
) -> Result<()>
where
    E: Fit<Pairs<'a, f64>, Output = KoopmanFit>,
{
    assert!(
        matches!(estimator.check(&bad), Err(CoreError::ShapeMismatch(_))),
        "{what}: X and Y of two shapes passed the check"
    );
    assert!(estimator.fit(bad).is_err(), "{what}");
    let fit = estimator.fit(pairs)?;
    assert_contains(&fit, expected, 1e-10, what);
    Ok(())
}

// Every DMD-family estimator is used the same way (settings, then `fit` on its data), gives the
// same fit as its free function, and checks settings and data before any work.
#[test]
fn every_estimator_fits_through_one_interface() -> Result<()> {
    let (a, expected) = known_system();
    let x = random_mat(4, 30, 1);
    let y = &a * &x;
    let y_short = y.as_ref().subcols(0, 29);
    let (pairs, bad) = ((x.as_ref(), y.as_ref()), (x.as_ref(), y_short));
    fit_through_trait(
        &FiniteSectionConfig::default(),
        pairs,
        bad,
        &expected,
        "finite section",
    )?;
    fit_through_trait(
        &ExactDmdConfig::default(),
        pairs,
        bad,
        &expected,
        "exact DMD",
    )?;
    fit_through_trait(&RrrConfig::default(), pairs, bad, &expected, "DMD_RRR")?;
    let edmd_config = EdmdConfig {
        dictionary: Dictionary::Monomials { degree: 2 },
        ..Default::default()
    };
    fit_through_trait(&edmd_config, pairs, bad, &expected, "EDMD")?;
    // Kernel DMD's Gaussian features do not span the linear observables: only the checks.
    let kernel = KernelDmdConfig::default();
    assert!(matches!(
        kernel.check(&bad),
        Err(CoreError::ShapeMismatch(_))
    ));
    assert_eq!(
        kernel.fit(pairs)?.eigenvalues,
        kernel_dmd(x.as_ref(), y.as_ref(), &kernel)?.eigenvalues
    );
    // Settings are checked before the data are touched.
    let bad_settings = RrrConfig {
        tol: 2.0,
        ..Default::default()
    };
    assert!(matches!(
        bad_settings.check(&pairs),
        Err(CoreError::InvalidArgument(_))
    ));
    let bad_kernel = KernelDmdConfig {
        bandwidth: -1.0,
        ..Default::default()
    };
    assert!(matches!(
        bad_kernel.fit(pairs),
        Err(CoreError::OutOfRange { ref name, .. }) if name == "kernel bandwidth"
    ));
    // Hankel DMD on trajectories.
    let traj = trajectory(a.as_ref(), &[1.0, -0.5, 0.25, 2.0], 20);
    let trajs = [traj.as_ref()];
    let hankel = HankelConfig {
        delays: 2,
        ..Default::default()
    };
    assert_same_spectrum(&hankel.fit(&trajs[..])?, &expected, 1e-10, "Hankel DMD")?;
    // The batched and partitioned finite sections: one operator per data set / group.
    let xs = [x.as_ref(), x.as_ref()];
    let ys = [y.as_ref(), y.as_ref()];
    let fs = FiniteSectionConfig::default();
    let us = fs.fit(Batch { xs: &xs, ys: &ys })?;
    assert_eq!(us.len(), 2);
    assert!(frobenius((&us[0] - &a).as_ref()) < 1e-10);
    let ys_bad = [y.as_ref(), y_short];
    assert!(fs
        .check(&Batch {
            xs: &xs,
            ys: &ys_bad
        })
        .is_err());
    let states: Vec<Vec<f64>> = (0..traj.ncols())
        .map(|k| (0..4).map(|i| traj[(i, k)]).collect())
        .collect();
    let snaps: Vec<&[f64]> = states.iter().map(|s| s.as_slice()).collect();
    let groups: [&[usize]; 1] = [&[0, 1, 2, 3]];
    let whole = fs.fit(Partitioned {
        snapshots: &snaps,
        groups: &groups,
    })?;
    assert_eq!(
        whole,
        finite_section_partitioned(&snaps, &groups, &fs)?,
        "the trait and the free function differ"
    );
    assert!(frobenius((&whole[0] - &a).as_ref()) < 1e-8);
    Ok(())
}

#[test]
fn linear_system_recovered_by_every_estimator() -> Result<()> {
    let (a, expected) = known_system();
    let x = random_mat(4, 30, 1);
    let y = &a * &x;
    let tol = 1e-10;
    let fs = finite_section(x.as_ref(), y.as_ref(), &FiniteSectionConfig::default())?;
    assert_same_spectrum(&fs, &expected, tol, "finite section")?;
    let ex = exact_dmd(x.as_ref(), y.as_ref(), &ExactDmdConfig::default())?;
    assert_same_spectrum(&ex, &expected, tol, "exact DMD")?;
    let rrr = dmd_rrr(x.as_ref(), y.as_ref(), &RrrConfig::default())?;
    assert_same_spectrum(&rrr, &expected, tol, "DMD_RRR")?;
    assert!(rrr.residuals.as_ref().unwrap().iter().all(|r| *r < 1e-12));
    // Hankel DMD over several short trajectories (windows of 2 states).
    let trajs: Vec<Mat<f64>> = (0..5)
        .map(|s| {
            let x0: Vec<f64> = (0..4).map(|i| random_mat(4, 1, 100 + s)[(i, 0)]).collect();
            trajectory(a.as_ref(), &x0, 12)
        })
        .collect();
    let refs: Vec<MatRef<'_, f64>> = trajs.iter().map(|t| t.as_ref()).collect();
    let hk = hankel_dmd(
        &refs,
        &HankelConfig {
            delays: 2,
            ..Default::default()
        },
    )?;
    assert_same_spectrum(&hk, &expected, tol, "Hankel DMD")?;
    let hk_rrr = hankel_dmd(
        &refs,
        &HankelConfig {
            delays: 3,
            estimator: HankelEstimator::Rrr(RrrConfig {
                tol: 1e-10,
                ..Default::default()
            }),
        },
    )?;
    assert_same_spectrum(&hk_rrr, &expected, tol, "Hankel DMD_RRR")?;
    // EDMD: monomials to degree 2 contain the linear observables (and are invariant).
    let ed = edmd(
        x.as_ref(),
        y.as_ref(),
        &EdmdConfig {
            dictionary: Dictionary::Monomials { degree: 2 },
            ..Default::default()
        },
    )?;
    assert_eq!(ed.rank(), 15);
    assert_contains(&ed, &expected, tol, "EDMD monomials");
    let ed_id = edmd(
        x.as_ref(),
        y.as_ref(),
        &EdmdConfig {
            dictionary: Dictionary::Union(vec![
                Dictionary::Identity,
                Dictionary::Custom {
                    len: 1,
                    f: std::sync::Arc::new(|_x: &[f64]| vec![c64::new(1.0, 0.0)]),
                },
            ]),
            ..Default::default()
        },
    )?;
    assert_contains(&ed_id, &expected, tol, "EDMD identity + constant");
    // Continuous-time eigenvalues.
    let ct = ex.continuous_eigenvalues(0.1)?;
    for (l, c) in ex.eigenvalues.iter().zip(&ct) {
        assert!(((c * 0.1).exp() - l).norm() < 1e-12);
    }
    Ok(())
}

#[test]
fn rank_policies_on_low_rank_data() -> Result<()> {
    // rank-3 data in R^50: every policy finds 3 (noise-free)
    let (a, expected) = known_system();
    let lift = random_mat(50, 4, 3);
    let x4 = random_mat(4, 40, 4);
    // project out one direction: use three eigen-directions only via the 4x4 system data
    let x = &lift * &x4;
    let y = &lift * (&a * &x4);
    for policy in [
        RankPolicy::Fixed(4),
        RankPolicy::Energy(1.0),
        RankPolicy::OptimalHardThreshold,
        RankPolicy::RelativeTolerance(1e-10),
    ] {
        let fit = exact_dmd(
            x.as_ref(),
            y.as_ref(),
            &ExactDmdConfig {
                rank: policy.clone(),
            },
        )?;
        assert_same_spectrum(&fit, &expected, 1e-9, &format!("{policy:?}"))?;
        // no n x n matrix: modes are n x r
        assert_eq!(fit.modes.nrows(), 50);
        assert_eq!(fit.modes.ncols(), 4);
    }
    let two = exact_dmd(
        x.as_ref(),
        y.as_ref(),
        &ExactDmdConfig {
            rank: RankPolicy::Fixed(2),
        },
    )?;
    assert_eq!(two.rank(), 2);
    Ok(())
}

#[test]
fn rrr_residuals_match_direct_computation_and_refinement_helps() -> Result<()> {
    // 20-dimensional system observed with 8 snapshots: the Ritz pairs are inexact.
    let n = 20;
    let a = {
        let r = random_mat(n, n, 21);
        Mat::from_fn(n, n, |i, j| {
            0.3 * r[(i, j)] + if i == j { 0.5 } else { 0.0 }
        })
    };
    let x = random_mat(n, 8, 22);
    let y = &a * &x;
    let plain = dmd_rrr(x.as_ref(), y.as_ref(), &RrrConfig::default())?;
    let res = plain.residuals.clone().unwrap();
    assert_eq!(res.len(), 8);
    let ac = koopman_core::linalg::to_complex(a.as_ref());
    let direct = |fit: &KoopmanFit, i: usize| -> f64 {
        let z: Vec<c64> = (0..n).map(|p| fit.modes[(p, i)]).collect();
        let norm = koopman_core::linalg::norm_c64(&z);
        let az: Vec<c64> = (0..n)
            .map(|p| (0..n).map(|q| ac[(p, q)] * z[q]).sum::<c64>())
            .collect();
        let r: Vec<c64> = az
            .iter()
            .zip(&z)
            .map(|(u, v)| u - fit.eigenvalues[i] * v)
            .collect();
        koopman_core::linalg::norm_c64(&r) / norm
    };
    let scale = frobenius(a.as_ref());
    for (i, r) in res.iter().enumerate() {
        let d = direct(&plain, i);
        assert!(*r > 1e-6, "expected inexact Ritz pairs, residual {r:e}");
        assert!(
            (r - d).abs() <= 1e3 * f64::EPSILON * scale,
            "pair {i}: residual {r:e} vs direct {d:e}"
        );
    }
    for refine in [
        RefineSelection::All,
        RefineSelection::SmallestResidual(3),
        RefineSelection::ClosestToUnitCircle(2),
        RefineSelection::ClosestToTarget {
            target: c64::new(0.5, 0.0),
            count: 4,
        },
    ] {
        let refined = dmd_rrr(
            x.as_ref(),
            y.as_ref(),
            &RrrConfig {
                refine: refine.clone(),
                ..Default::default()
            },
        )?;
        let rr = refined.residuals.clone().unwrap();
        let mut improved = 0;
        for i in 0..8 {
            assert!(
                rr[i] <= res[i],
                "{refine:?}: pair {i} residual grew {:e} -> {:e}",
                res[i],
                rr[i]
            );
            let d = direct(&refined, i);
            assert!((rr[i] - d).abs() <= 1e3 * f64::EPSILON * scale);
            if rr[i] < 0.999 * res[i] {
                improved += 1;
            }
        }
        if refine == RefineSelection::All {
            assert!(improved > 0, "refinement changed nothing");
        }
    }
    Ok(())
}

#[test]
fn hankel_dmd_recovers_three_frequencies_from_one_signal() -> Result<()> {
    let dt = 0.1;
    let omegas = [0.5, 1.3, 2.1];
    let signal = Mat::from_fn(1, 200, |_, k| {
        let t = k as f64 * dt;
        1.0 * (omegas[0] * t + 0.3).sin()
            + 0.5 * (omegas[1] * t + 1.1).sin()
            + 0.25 * (omegas[2] * t - 0.4).sin()
    });
    for estimator in [
        HankelEstimator::Exact(ExactDmdConfig::default()),
        HankelEstimator::Rrr(RrrConfig {
            tol: 1e-10,
            ..Default::default()
        }),
    ] {
        let fit = hankel_dmd(
            &[signal.as_ref()],
            &HankelConfig {
                delays: 12,
                estimator,
            },
        )?;
        assert_eq!(fit.rank(), 6);
        let ct = fit.continuous_eigenvalues(dt)?;
        let mut freqs: Vec<f64> = ct.iter().map(|z| z.im).filter(|w| *w > 0.0).collect();
        freqs.sort_by(f64::total_cmp);
        assert_eq!(freqs.len(), 3);
        for (f, w) in freqs.iter().zip(omegas) {
            assert!((f - w).abs() < 1e-8, "frequency {f} vs {w}");
        }
        assert!(ct.iter().all(|z| z.re.abs() < 1e-8));
        // the model reproduces the signal
        let rec = fit.reconstruct(&[0.0, 50.0])?;
        assert!((rec[(0, 1)].re - signal[(0, 50)]).abs() < 1e-8);
    }
    Ok(())
}

#[test]
fn edmd_monomials_recover_polynomial_map_spectrum() -> Result<()> {
    let (lambda, mu) = (0.9, 0.5);
    let x = random_mat(2, 60, 31);
    let y = Mat::from_fn(2, 60, |i, j| {
        let (a, b) = (x[(0, j)], x[(1, j)]);
        if i == 0 {
            lambda * a
        } else {
            mu * b + (lambda * lambda - mu) * a * a
        }
    });
    let fit = edmd(
        x.as_ref(),
        y.as_ref(),
        &EdmdConfig {
            dictionary: Dictionary::Monomials { degree: 2 },
            ..Default::default()
        },
    )?;
    assert_eq!(fit.rank(), 6);
    let expected = [lambda, mu, lambda * lambda].map(|v| c64::new(v, 0.0));
    assert_contains(&fit, &expected, 1e-10, "EDMD polynomial map");
    // A Fourier dictionary on the circle map x -> x + 0.4 recovers exp(i n 0.4).
    let theta = random_mat(1, 30, 32);
    let shifted = Mat::from_fn(1, 30, |_, j| theta[(0, j)] + 0.4);
    let set = std::sync::Arc::new(koopman_core::IndexSet::product_of_ranges(&[(-2, 2)])?);
    let fourier = edmd(
        theta.as_ref(),
        shifted.as_ref(),
        &EdmdConfig {
            dictionary: Dictionary::Fourier { index_set: set },
            ..Default::default()
        },
    )?;
    let expected: Vec<c64> = (-2..=2)
        .map(|n| c64::new(0.0, 0.4 * n as f64).exp())
        .collect();
    assert_same_spectrum(&fourier, &expected, 1e-10, "Fourier EDMD")?;
    // Gaussian RBFs + identity: runs, finite, contains lambda approximately
    let centers: Vec<Vec<f64>> = (0..10).map(|k| vec![-1.0 + 0.2 * k as f64, 0.0]).collect();
    let rbf = edmd(
        x.as_ref(),
        y.as_ref(),
        &EdmdConfig {
            dictionary: Dictionary::Union(vec![
                Dictionary::Identity,
                Dictionary::GaussianRbf {
                    centers,
                    width: 0.5,
                },
            ]),
            ..Default::default()
        },
    )?;
    assert!(rbf
        .eigenvalues
        .iter()
        .all(|z| z.re.is_finite() && z.im.is_finite()));
    Ok(())
}

#[test]
fn kernel_dmd_recovers_dominant_eigenvalue() -> Result<()> {
    let a = Mat::from_fn(2, 2, |i, j| [[0.9, 0.1], [0.0, 0.6]][i][j]);
    let x = random_mat(2, 150, 41);
    let y = &a * &x;
    let fit = kernel_dmd(
        x.as_ref(),
        y.as_ref(),
        &KernelDmdConfig {
            bandwidth: 3.0,
            rank: 40,
            rcond: 1e-12,
        },
    )?;
    // the constant function gives ~1, the dominant linear eigenvalue 0.9 must appear
    let best = fit
        .eigenvalues
        .iter()
        .map(|l| (l - c64::new(0.9, 0.0)).norm())
        .fold(f64::INFINITY, f64::min);
    assert!(
        best < 1e-3,
        "kernel DMD missed 0.9 by {best:e}: {:?}",
        fit.eigenvalues
    );
    assert_eq!(fit.modes.nrows(), 2);
    Ok(())
}

#[test]
fn predict_jump_and_reconstruct_agree_with_the_system() -> Result<()> {
    let (a, _) = known_system();
    let traj = trajectory(a.as_ref(), &[1.0, -0.5, 0.3, 0.8], 25);
    let (x, y) = trajectory_pairs(traj.as_ref())?;
    let fit = exact_dmd(x, y, &ExactDmdConfig::default())?;
    let x0 = [1.0, -0.5, 0.3, 0.8];
    let pred = fit.predict(&x0, 20)?;
    let jump = fit.jump(&x0, 20)?;
    let rec = fit.reconstruct(&[20.0])?;
    for i in 0..4 {
        assert!((pred[(i, 20)].re - traj[(i, 20)]).abs() < 1e-10);
        assert!((jump[i].re - traj[(i, 20)]).abs() < 1e-10);
        assert!((rec[(i, 0)].re - traj[(i, 20)]).abs() < 1e-10);
        assert!(jump[i].im.abs() < 1e-10);
    }
    Ok(())
}

test_device!(
    tensor_io_on_device,
    tensor_io_on_device_cpu,
    tensor_io_on_device_cuda
);
fn tensor_io_on_device(dev: &Device) -> Result<()> {
    let (a, expected) = known_system();
    let traj = trajectory(a.as_ref(), &[1.0, -0.5, 0.3, 0.8], 25);
    // states per row in the tensor
    let rows: Vec<f64> = (0..25)
        .flat_map(|k| (0..4).map(move |i| (k, i)))
        .map(|(k, i)| traj[(i, k)])
        .collect();
    let t = Tensor::from_vec(rows, (25, 4), dev)?.to_dtype(DType::F64)?;
    let m = snapshots_from_tensor(&t, StateLayout::StatePerRow)?;
    assert!(frobenius((&m - &traj).as_ref()) == 0.0);
    let (x, y) = trajectory_pairs(m.as_ref())?;
    let fit = exact_dmd(x, y, &ExactDmdConfig::default())?;
    assert_same_spectrum(&fit, &expected, 1e-10, "from tensor")?;
    // jump on a batch of states, result on the caller's device
    let x0 = Tensor::from_vec(vec![1.0f64, -0.5, 0.3, 0.8], (4, 1), dev)?;
    let out = fit.jump_tensor(&x0, 10)?;
    assert!(out.device().same_device(dev));
    let v = out.to_c64_vec()?;
    for i in 0..4 {
        assert!((v[i].re - traj[(i, 10)]).abs() < 1e-10);
    }
    // batched finite section on tensors
    let b = 6;
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for k in 0..b {
        let xk = random_mat(4, 9, 50 + k as u64);
        let yk = &a * &xk;
        for i in 0..4 {
            for j in 0..9 {
                xs.push(xk[(i, j)]);
                ys.push(yk[(i, j)]);
            }
        }
    }
    let xt = Tensor::from_vec(xs, (b, 4, 9), dev)?;
    let yt = Tensor::from_vec(ys, (b, 4, 9), dev)?;
    let u = finite_section_batched_tensor(&xt, &yt, &FiniteSectionConfig::default())?;
    assert!(u.device().same_device(dev));
    assert_eq!(u.dims(), &[b, 4, 4]);
    let uv = u.flatten_all()?.to_vec1::<f64>()?;
    for k in 0..b {
        for i in 0..4 {
            for j in 0..4 {
                assert!((uv[k * 16 + i * 4 + j] - a[(i, j)]).abs() < 1e-12);
            }
        }
    }
    Ok(())
}

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

#[test]
fn snapshot_files_load_in_both_layouts() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("koopman-dmd-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| CoreError::Io {
        path: dir.clone(),
        source: e,
    })?;
    let data: Vec<f64> = (0..6).map(|v| v as f64 * 0.5).collect();
    write_npy(dir.join("a.npy"), &[2, 3], &NpyData::F64(data.clone()))?;
    let cols = snapshots_from_npy(dir.join("a.npy"), StateLayout::StatePerColumn)?;
    assert_eq!((cols.nrows(), cols.ncols()), (2, 3));
    let rows = snapshots_from_npy(dir.join("a.npy"), StateLayout::StatePerRow)?;
    assert_eq!((rows.nrows(), rows.ncols()), (3, 2));
    assert_eq!(rows[(2, 1)], cols[(1, 2)]);
    std::fs::write(dir.join("a.csv"), "x,y\n1,2\n3,4\n5,6\n").unwrap();
    let csv = snapshots_from_csv(dir.join("a.csv"), StateLayout::StatePerRow)?;
    assert_eq!((csv.nrows(), csv.ncols()), (2, 3));
    assert_eq!(csv[(1, 2)], 6.0);
    std::fs::write(dir.join("bad.csv"), "1,2\n3\n").unwrap();
    assert!(matches!(
        snapshots_from_csv(dir.join("bad.csv"), StateLayout::StatePerRow),
        Err(CoreError::ShapeMismatch(_))
    ));
    std::fs::write(dir.join("nan.csv"), "1,2\nNaN,4\n").unwrap();
    assert!(matches!(
        snapshots_from_csv(dir.join("nan.csv"), StateLayout::StatePerColumn),
        Err(CoreError::NonFinite(_))
    ));
    std::fs::write(dir.join("empty.csv"), "\n").unwrap();
    assert!(matches!(
        snapshots_from_csv(dir.join("empty.csv"), StateLayout::StatePerColumn),
        Err(CoreError::Empty(_))
    ));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn bad_input_gives_clear_errors() -> Result<()> {
    let x = random_mat(3, 5, 61);
    let y = random_mat(3, 5, 62);
    let empty = Mat::<f64>::zeros(3, 0);
    let exact = ExactDmdConfig::default();
    // empty data
    assert!(matches!(
        exact_dmd(empty.as_ref(), empty.as_ref(), &exact),
        Err(CoreError::Empty(_))
    ));
    assert!(matches!(
        dmd_rrr(empty.as_ref(), empty.as_ref(), &RrrConfig::default()),
        Err(CoreError::Empty(_))
    ));
    assert!(matches!(
        finite_section_batched::<f64>(&[], &[], &FiniteSectionConfig::default()),
        Err(CoreError::Empty(_))
    ));
    // one snapshot
    let one = random_mat(3, 1, 63);
    assert!(matches!(
        trajectory_pairs(one.as_ref()),
        Err(CoreError::InvalidArgument(_))
    ));
    // NaN / Inf
    let mut bad = x.clone();
    bad[(1, 2)] = f64::NAN;
    assert!(matches!(
        exact_dmd(bad.as_ref(), y.as_ref(), &exact),
        Err(CoreError::NonFinite(_))
    ));
    bad[(1, 2)] = f64::INFINITY;
    assert!(matches!(
        finite_section(x.as_ref(), bad.as_ref(), &FiniteSectionConfig::default()),
        Err(CoreError::NonFinite(_))
    ));
    assert!(matches!(
        edmd(bad.as_ref(), y.as_ref(), &EdmdConfig::default()),
        Err(CoreError::NonFinite(_))
    ));
    // mismatched shapes
    let y4 = random_mat(3, 4, 64);
    assert!(matches!(
        exact_dmd(x.as_ref(), y4.as_ref(), &exact),
        Err(CoreError::ShapeMismatch(_))
    ));
    assert!(matches!(
        dmd_rrr(x.as_ref(), y4.as_ref(), &RrrConfig::default()),
        Err(CoreError::ShapeMismatch(_))
    ));
    assert!(matches!(
        kernel_dmd(x.as_ref(), y4.as_ref(), &KernelDmdConfig::default()),
        Err(CoreError::ShapeMismatch(_))
    ));
    // rank 0: requested, or zero data
    assert!(matches!(
        exact_dmd(
            x.as_ref(),
            y.as_ref(),
            &ExactDmdConfig {
                rank: RankPolicy::Fixed(0)
            }
        ),
        Err(CoreError::InvalidArgument(_))
    ));
    let zero = Mat::<f64>::zeros(3, 5);
    assert!(matches!(
        exact_dmd(zero.as_ref(), y.as_ref(), &exact),
        Err(CoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        dmd_rrr(zero.as_ref(), y.as_ref(), &RrrConfig::default()),
        Err(CoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        kernel_dmd(
            x.as_ref(),
            y.as_ref(),
            &KernelDmdConfig {
                rank: 0,
                ..Default::default()
            }
        ),
        Err(CoreError::InvalidArgument(_))
    ));
    // delays longer than a trajectory
    let short = random_mat(2, 4, 65);
    assert!(matches!(
        delay_embed(&[short.as_ref()], 4),
        Err(CoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        hankel_dmd(
            &[short.as_ref()],
            &HankelConfig {
                delays: 0,
                ..Default::default()
            }
        ),
        Err(CoreError::InvalidArgument(_))
    ));
    // trajectories of different state dimension
    let other = random_mat(3, 10, 66);
    assert!(matches!(
        delay_embed(&[short.as_ref(), other.as_ref()], 1),
        Err(CoreError::ShapeMismatch(_))
    ));
    // invalid settings
    assert!(matches!(
        exact_dmd(
            x.as_ref(),
            y.as_ref(),
            &ExactDmdConfig {
                rank: RankPolicy::Energy(1.5)
            }
        ),
        Err(CoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        dmd_rrr(
            x.as_ref(),
            y.as_ref(),
            &RrrConfig {
                tol: -1.0,
                ..Default::default()
            }
        ),
        Err(CoreError::InvalidArgument(_))
    ));
    let fit = exact_dmd(x.as_ref(), y.as_ref(), &exact)?;
    assert!(matches!(
        fit.jump(&[1.0, 2.0], 3),
        Err(CoreError::ShapeMismatch(_))
    ));
    assert!(matches!(
        fit.continuous_eigenvalues(0.0),
        Err(CoreError::OutOfRange { ref name, value, .. }) if name == "time step" && value == 0.0
    ));
    Ok(())
}

#[test]
fn delay_windows_never_straddle_trajectories() -> Result<()> {
    let t1 = Mat::from_fn(1, 5, |_, k| k as f64);
    let t2 = Mat::from_fn(1, 4, |_, k| 100.0 + k as f64);
    let (x, y) = delay_embed(&[t1.as_ref(), t2.as_ref()], 3)?;
    assert_eq!(x.ncols(), (5 - 3) + (4 - 3));
    for j in 0..x.ncols() {
        // within one window the values are consecutive
        for lag in 1..3 {
            assert_eq!(x[(lag, j)] - x[(lag - 1, j)], 1.0);
            assert_eq!(y[(lag, j)] - y[(lag - 1, j)], 1.0);
        }
        assert_eq!(y[(0, j)], x[(1, j)]);
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
