//! Koopman/DMD estimators on systems with known spectra, the one estimator interface, residual
//! identities, input loaders and bad-input errors (the batched and partitioned finite section:
//! `finite_section.rs`).

mod common;

use candle_core::{DType, Device, Tensor};
use common::{known_system, random_mat};
use faer::{Mat, MatRef};
use koopman_core::dmd::{
    delay_embed, dmd_rrr, edmd, exact_dmd, finite_section, finite_section_batched,
    finite_section_batched_tensor, finite_section_partitioned, hankel_dmd, kernel_dmd,
    snapshots_from_csv, snapshots_from_npy, snapshots_from_tensor, trajectory_pairs, Batch,
    Dictionary, EdmdConfig, ExactDmdConfig, FiniteSectionConfig, Fit, HankelConfig,
    HankelEstimator, KernelDmdConfig, Pairs, Partitioned, RankPolicy, RefineSelection, RrrConfig,
    StateLayout,
};
use koopman_core::io::{write_npy, NpyData};
use koopman_core::linalg::frobenius;
use koopman_core::spectrum::{wasserstein, Spectrum};
use koopman_core::{c64, test_device, CoreError, KoopmanFit, Result};

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
