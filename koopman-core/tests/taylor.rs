//! The Taylor action: its theta table and plan, the three paths against expv and each other,
//! the fused kernel's gradients (forward and adjoint) against the unfused path, f32, bad input.
mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{generator, paper_sets};
use koopman_core::operator::Adjoint;
use koopman_core::taylor::{expv_taylor, plan, theta, TaylorPlan, MAX_DEGREE};
use koopman_core::{
    expv, test_device, ComplexTensor, CoreError, DenseOperator, ExpvConfig, GatherKernel, IndexSet,
    LinearOperator, Result, TaylorConfig, TaylorPath, ToeplitzGenerator,
};
use std::sync::Arc;

/// `theta_m` for the unit round-offs of double and single precision against the published
/// tables (Higham & Al-Mohy 2010, "Computing matrix functions", Table A.3 and Al-Mohy & Higham
/// 2011, Table 3.1, as printed, 3 or 2 significant digits).
#[test]
fn theta_matches_published_tables() {
    let double = [
        (2, 2.58e-8),
        (3, 1.39e-5),
        (5, 2.40e-3),
        (10, 1.44e-1),
        (15, 6.41e-1),
        (20, 1.44),
        (25, 2.43),
        (30, 3.54),
        (40, 6.0),
        (55, 9.9),
    ];
    for (m, published) in double {
        let ours = theta(m, 2f64.powi(-53));
        assert!(
            (ours - published).abs() <= 0.01 * published,
            "double, m = {m}: {ours} vs {published}"
        );
    }
    let single = [(5, 1.3e-1), (10, 1.0), (20, 3.6), (30, 6.3), (40, 9.1)];
    for (m, published) in single {
        let ours = theta(m, 2f64.powi(-24));
        assert!(
            (ours - published).abs() <= 0.02 * published,
            "single, m = {m}: {ours} vs {published}"
        );
    }
    // Looser tolerances allow longer steps.
    assert!(theta(30, 1e-8) > theta(30, 2f64.powi(-53)));
}

/// The plan is admissible (each sub-step within theta) and no other admissible pair is cheaper.
#[test]
fn plan_is_the_cheapest_admissible_pair() -> Result<()> {
    for (norm, tol) in [
        (0.0, 1e-8),
        (0.3, 1e-8),
        (5.0, 1e-8),
        (37.0, 2f64.powi(-53)),
        (900.0, 1e-6),
    ] {
        let p = TaylorPlan::for_norm(norm, tol, MAX_DEGREE)?;
        assert!(p.degree >= 1 && p.substeps >= 1);
        assert!(norm / p.substeps as f64 <= theta(p.degree, tol), "{p:?}");
        for m in 1..=MAX_DEGREE {
            let s = ((norm / theta(m, tol)).ceil() as usize).max(1);
            assert!(m * s >= p.matvecs(), "{m} x {s} beats {p:?}");
        }
    }
    assert!(matches!(
        TaylorPlan::for_norm(f64::NAN, 1e-8, MAX_DEGREE),
        Err(CoreError::NonFinite(_))
    ));
    Ok(())
}

/// `||e^{A+E} v - e^A v|| <= ||E|| e^{beta (1 + tol)} ||v||` with `||E|| <= tol beta`: the
/// rigorous forward bound of the Taylor plan's backward error, plus round-off.
fn forward_bound(beta: f64, tol: f64, eps: f64, matvecs: usize) -> f64 {
    tol * beta * (beta * (1.0 + tol)).exp() + 10.0 * eps * (matvecs as f64) * beta.exp()
}

test_device!(
    paths_agree_with_expv,
    paths_agree_with_expv_cpu,
    paths_agree_with_expv_cuda
);
fn paths_agree_with_expv(dev: &Device) -> Result<()> {
    let (n_set, m_set) = paper_sets(3)?;
    for (scale, time, tol, seed) in [
        (0.01, 1.0, 1e-8, 1u64),
        (0.02, 1.5, 1e-12, 2),
        (0.0, 1.0, 1e-8, 3),
    ] {
        let op = ToeplitzGenerator::random(
            n_set.clone(),
            vec![m_set.clone()],
            scale,
            1.0,
            seed,
            DType::F64,
            dev,
        )?;
        let v = ComplexTensor::randn(n_set.len(), 1.0, seed + 10, DType::F64, dev)?;
        let config = ExpvConfig {
            tol: 1e-14,
            ..Default::default()
        };
        let (reference, _) = expv(&op, time, &v, &config)?;
        for path in [TaylorPath::Fused, TaylorPath::Dense, TaylorPath::Operator] {
            let (w, report) = expv_taylor(
                &op,
                time,
                &v,
                &TaylorConfig {
                    tol,
                    path,
                    ..Default::default()
                },
            )?;
            assert_eq!(report.path, path);
            assert_eq!(report.matvecs, report.plan.matvecs());
            let beta = report.plan.norm_bound;
            let err = w.sub(&reference)?.norm_f64()? / v.norm_f64()?;
            let bound = forward_bound(beta, tol, f64::EPSILON, report.matvecs);
            assert!(
                err <= bound,
                "{path:?}, scale {scale}, tol {tol:e}: error {err:e} > bound {bound:e} ({report:?})"
            );
            if scale == 0.0 {
                assert_eq!(report.matvecs, 1);
                assert!(err == 0.0, "exp(0) v = v exactly, error {err:e}");
            }
        }
        // Auto takes the fused kernel wherever it exists.
        let (_, auto) = expv_taylor(&op, time, &v, &TaylorConfig::default())?;
        assert_eq!(auto.path, TaylorPath::Fused);
    }
    // A block of columns, and a dense operator (no fused kernel: Auto picks dense on a GPU).
    let op = generator(3, 0.01, 4, DType::F64, dev)?;
    let block = ComplexTensor::randn((n_set.len(), 3), 1.0, 5, DType::F64, dev)?;
    let config = TaylorConfig {
        tol: 1e-12,
        ..Default::default()
    };
    let (w, _) = expv_taylor(&op, 1.0, &block, &config)?;
    assert_eq!(w.dims(), &[n_set.len(), 3]);
    for j in 0..3 {
        let (wj, _) = expv_taylor(&op, 1.0, &block.narrow(1, j, 1)?.squeeze(1)?, &config)?;
        let diff = w.narrow(1, j, 1)?.squeeze(1)?.sub(&wj)?.norm_f64()? / wj.norm_f64()?;
        assert!(diff < 1e-13, "column {j}: {diff:e}");
    }
    let dense = DenseOperator::new(op.to_dense()?)?;
    let (wd, report) = expv_taylor(&dense, 1.0, &block, &config)?;
    let expect = if dev.is_cuda() {
        TaylorPath::Dense
    } else {
        TaylorPath::Operator
    };
    assert_eq!(report.path, expect);
    assert!(wd.sub(&w)?.norm_f64()? / w.norm_f64()? < 1e-11);
    Ok(())
}

test_device!(
    single_precision,
    single_precision_cpu,
    single_precision_cuda
);
fn single_precision(dev: &Device) -> Result<()> {
    let (n_set, _) = paper_sets(3)?;
    let op64 = generator(3, 0.01, 7, DType::F64, dev)?;
    let op32 = generator(3, 0.01, 7, DType::F32, dev)?;
    let v = ComplexTensor::randn(n_set.len(), 1.0, 8, DType::F64, dev)?;
    let (reference, _) = expv(
        &op64,
        1.0,
        &v,
        &ExpvConfig {
            tol: 1e-14,
            ..Default::default()
        },
    )?;
    let (w, report) = expv_taylor(
        &op32,
        1.0,
        &v.to_dtype(DType::F32)?,
        &TaylorConfig::default(),
    )?;
    assert_eq!(report.path, TaylorPath::Fused);
    let eps32 = f32::EPSILON as f64;
    let err = w.to_dtype(DType::F64)?.sub(&reference)?.norm_f64()? / v.norm_f64()?;
    // The plan uses max(tol, u_f32) = 2^-24.
    let bound = forward_bound(report.plan.norm_bound, eps32 / 2.0, eps32, report.matvecs);
    assert!(err <= bound, "f32 error {err:e} > {bound:e}");
    Ok(())
}

// Values and gradients (coefficients, time, start vector) of the fused kernel against the
// same plan run term by term in portable candle ops, for `A` and `A^*`, two sub-steps.
test_device!(
    fused_gradients_match_unfused,
    fused_gradients_match_unfused_cpu,
    fused_gradients_match_unfused_cuda
);
fn fused_gradients_match_unfused(dev: &Device) -> Result<()> {
    let (n_set, m_set) = paper_sets(2)?;
    let base = generator(2, 0.08, 21, DType::F64, dev)?;
    let vars: Vec<(Var, Var)> = base
        .coeffs()
        .iter()
        .map(|g| Ok((Var::from_tensor(g[0].re())?, Var::from_tensor(g[0].im())?)))
        .collect::<Result<_>>()?;
    let time = Var::from_tensor(&Tensor::new(0.9f64, dev)?)?;
    let v_re = Var::from_tensor(&Tensor::randn(0f64, 1.0, n_set.len(), dev)?)?;
    let v = ComplexTensor::new(
        v_re.as_tensor().clone(),
        Tensor::randn(0f64, 1.0, n_set.len(), dev)?,
    )?;
    let probe = ComplexTensor::randn(n_set.len(), 1.0, 22, DType::F64, dev)?;
    for adjoint in [false, true] {
        let run = |path: TaylorPath, kernel: GatherKernel| -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
            let coeffs = vars
                .iter()
                .map(|(re, im)| {
                    Ok(vec![ComplexTensor::new(
                        re.as_tensor().clone(),
                        im.as_tensor().clone(),
                    )?])
                })
                .collect::<Result<Vec<_>>>()?;
            let op = ToeplitzGenerator::new(
                n_set.clone(),
                vec![m_set.clone()],
                coeffs,
                time.as_tensor().clone(),
            )?
            .with_kernel(kernel);
            let config = TaylorConfig {
                tol: 1e-12,
                path,
                ..Default::default()
            };
            // A time of 2.5 forces several sub-steps.
            let (w, report) = if adjoint {
                expv_taylor(&Adjoint(&op), 2.5, &v, &config)?
            } else {
                expv_taylor(&op, 2.5, &v, &config)?
            };
            assert!(report.plan.substeps >= 2, "{report:?}");
            let loss = (probe.conj()?.mul(&w)?.re().sum_all()? + w.abs2()?.sum_all()?)?;
            let grads = loss.backward()?;
            let mut g = Vec::new();
            for (re, im) in &vars {
                for var in [re, im] {
                    g.push(
                        grads
                            .get(var.as_tensor())
                            .expect("coefficient grad")
                            .to_vec1()?,
                    );
                }
            }
            g.push(vec![grads
                .get(time.as_tensor())
                .expect("time grad")
                .to_scalar()?]);
            g.push(grads.get(v_re.as_tensor()).expect("start grad").to_vec1()?);
            let values = w.to_c64_vec()?.iter().flat_map(|z| [z.re, z.im]).collect();
            Ok((values, g))
        };
        let fused = run(TaylorPath::Fused, GatherKernel::Auto)?;
        let plain = run(TaylorPath::Operator, GatherKernel::Portable)?;
        let close = |a: &[f64], b: &[f64]| {
            let scale = b.iter().map(|x| x.abs()).fold(1.0, f64::max);
            a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-11 * scale)
        };
        assert!(
            close(&fused.0, &plain.0),
            "adjoint {adjoint}: values differ"
        );
        for (i, (a, b)) in fused.1.iter().zip(&plain.1).enumerate() {
            assert!(
                close(a, b),
                "adjoint {adjoint}: gradient {i} differs: {:?} vs {:?}",
                &a[..a.len().min(3)],
                &b[..b.len().min(3)]
            );
        }
    }
    Ok(())
}

test_device!(
    bad_input_is_an_error,
    bad_input_is_an_error_cpu,
    bad_input_is_an_error_cuda
);
fn bad_input_is_an_error(dev: &Device) -> Result<()> {
    let (n_set, m_set) = paper_sets(2)?;
    let op = generator(2, 0.05, 1, DType::F64, dev)?;
    let v = ComplexTensor::randn(n_set.len(), 1.0, 2, DType::F64, dev)?;
    let config = TaylorConfig::default();
    // dtype, shape, time, tolerance
    assert!(matches!(
        expv_taylor(&op, 1.0, &v.to_dtype(DType::F32)?, &config),
        Err(CoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        expv_taylor(&op, 1.0, &v.narrow(0, 0, 5)?, &config),
        Err(CoreError::ShapeMismatch(_))
    ));
    assert!(matches!(
        expv_taylor(&op, f64::NAN, &v, &config),
        Err(CoreError::NonFinite(_))
    ));
    for tol in [0.0, -1.0, 1.5, f64::NAN] {
        assert!(matches!(
            expv_taylor(
                &op,
                1.0,
                &v,
                &TaylorConfig {
                    tol,
                    ..config.clone()
                }
            ),
            Err(CoreError::InvalidArgument(_))
        ));
    }
    assert!(matches!(
        expv_taylor(
            &op,
            1.0,
            &v,
            &TaylorConfig {
                max_degree: 0,
                ..config.clone()
            }
        ),
        Err(CoreError::InvalidArgument(_))
    ));
    // A fused kernel asked of an operator without one.
    let dense = DenseOperator::new(op.to_dense()?)?;
    let fused = TaylorConfig {
        path: TaylorPath::Fused,
        ..config.clone()
    };
    assert!(matches!(
        expv_taylor(&dense, 1.0, &v, &fused),
        Err(CoreError::Unsupported(_))
    ));
    // ... or of a generator forced onto portable ops.
    let portable = op.clone().with_kernel(GatherKernel::Portable);
    assert!(matches!(
        expv_taylor(&portable, 1.0, &v, &fused),
        Err(CoreError::Unsupported(_))
    ));
    // NaN coefficients are refused when the generator is built.
    let mut coeffs: Vec<Vec<ComplexTensor>> = op.coeffs().to_vec();
    let nan = Tensor::full(f64::NAN, m_set.len(), dev)?;
    coeffs[1][0] = ComplexTensor::new(nan, coeffs[1][0].im().clone())?;
    assert!(matches!(
        ToeplitzGenerator::new(
            n_set.clone(),
            vec![m_set.clone()],
            coeffs,
            op.time().clone()
        ),
        Err(CoreError::NonFinite(_))
    ));
    // An operand on another device.
    if !dev.is_cpu() {
        let host = v.to_device(&Device::Cpu)?;
        assert!(matches!(
            expv_taylor(&op, 1.0, &host, &config),
            Err(CoreError::InvalidArgument(_))
        ));
    }
    Ok(())
}

/// The dense paths refuse sizes beyond the memory limit before allocating, naming the memory.
#[test]
fn dense_paths_refuse_huge_sizes() -> Result<()> {
    let dev = Device::Cpu;
    // |N| = 29^3 - 1 = 24,388: one dense complex f64 matrix is 9.5 GB.
    let n_set = Arc::new(IndexSet::cube(3, 14)?.without_origin()?);
    let m_set = Arc::new(IndexSet::from_points(3, vec![vec![1, 0, 0]])?);
    let op = ToeplitzGenerator::random(n_set.clone(), vec![m_set], 0.01, 1.0, 1, DType::F64, &dev)?;
    let v = ComplexTensor::randn(n_set.len(), 1.0, 2, DType::F64, &dev)?;
    let dense = TaylorConfig {
        path: TaylorPath::Dense,
        ..Default::default()
    };
    for result in [
        op.to_dense().map(|_| ()),
        koopman_core::expv_dense(&op, 1.0, &v).map(|_| ()),
        expv_taylor(&op, 1.0, &v, &dense).map(|_| ()),
    ] {
        match result {
            Err(CoreError::TooLarge(msg)) => {
                assert!(msg.contains("GB") && msg.contains("24388"), "{msg}")
            }
            other => panic!("expected a size refusal, got {other:?}"),
        }
    }
    // The matrix-free paths run at this size.
    let (w, report) = expv_taylor(&op, 1.0, &v, &TaylorConfig::default())?;
    assert_eq!(report.path, TaylorPath::Fused);
    assert_eq!(w.dims(), &[n_set.len()]);
    let (path, _) = plan(&op, 1.0, &TaylorConfig::default())?;
    assert_eq!(path, TaylorPath::Fused);
    Ok(())
}
