//! Krylov exponential action against the dense exponential, closed forms, edge cases, gradients.
mod common;

use candle_core::{DType, Device, Var};
use common::{err_rel_to, real_matrix};
use koopman_core::{
    c64, expm, expv, test_device, ComplexTensor, CoreError, DenseOperator, ExpvConfig, ExpvReport,
    KrylovMethod, LinearOperator, Result,
};

/// Runs `expv` and the dense reference; checks the achieved error against `10 tol` and the
/// estimate against a tenth of the true error. Returns the report.
fn check_against_dense(
    op: &dyn LinearOperator,
    t: f64,
    v: &ComplexTensor,
    config: &ExpvConfig,
    what: &str,
) -> Result<ExpvReport> {
    let (w, report) = expv(op, t, v, config)?;
    let exact = expm(&op.to_dense()?.scale_real(t)?)?
        .matmul(&v.unsqueeze(1)?)?
        .squeeze(1)?;
    let err = err_rel_to(&w, &exact, v.norm_f64()?)?;
    assert!(
        err <= 10.0 * config.tol,
        "{what}: error {err:e} above 10 x tol {:e} ({report:?})",
        config.tol
    );
    // The dense reference itself carries a relative error of a few eps.
    let reference_noise = 1e3 * f64::EPSILON * exact.norm_f64()? / v.norm_f64()?;
    assert!(
        report.error_estimate >= 0.1 * err || err <= reference_noise,
        "{what}: estimate {:e} below a tenth of the true error {err:e}",
        report.error_estimate
    );
    Ok(report)
}

fn tols() -> [f64; 3] {
    [1e-6, 1e-9, 1e-12]
}

fn start_vector(n: usize, seed: u64, dev: &Device) -> Result<ComplexTensor> {
    ComplexTensor::randn(n, 1.0, seed, DType::F64, dev)
}

test_device!(random_operator, random_operator_cpu, random_operator_cuda);
fn random_operator(dev: &Device) -> Result<()> {
    let n = 80;
    let a = ComplexTensor::randn((n, n), 1.0 / (n as f64).sqrt(), 11, DType::F64, dev)?;
    let op = DenseOperator::new(a)?;
    assert!(!op.is_hermitian());
    let v = start_vector(n, 12, dev)?;
    for tol in tols() {
        for t in [0.5, 2.0] {
            let config = ExpvConfig {
                tol,
                krylov_dim: 20,
                ..Default::default()
            };
            check_against_dense(&op, t, &v, &config, &format!("random tol {tol} t {t}"))?;
        }
    }
    Ok(())
}

test_device!(
    non_normal_operator,
    non_normal_operator_cpu,
    non_normal_operator_cuda
);
fn non_normal_operator(dev: &Device) -> Result<()> {
    // Strongly non-normal: stable diagonal, large upper band (transient growth before decay).
    let n = 60;
    let a = real_matrix(n, dev, |i, j| {
        if i == j {
            -1.0 - 0.05 * i as f64
        } else if j == i + 1 {
            3.0
        } else if j == i + 2 {
            -1.5
        } else {
            0.0
        }
    })?;
    let op = DenseOperator::new(a)?;
    let v = start_vector(n, 5, dev)?;
    for tol in tols() {
        let config = ExpvConfig {
            tol,
            krylov_dim: 25,
            ..Default::default()
        };
        check_against_dense(&op, 1.5, &v, &config, &format!("non-normal tol {tol}"))?;
    }
    Ok(())
}

test_device!(
    hermitian_uses_lanczos,
    hermitian_uses_lanczos_cpu,
    hermitian_uses_lanczos_cuda
);
fn hermitian_uses_lanczos(dev: &Device) -> Result<()> {
    let n = 70;
    let b = ComplexTensor::randn((n, n), 1.0 / (n as f64).sqrt(), 21, DType::F64, dev)?;
    let h = b.add(&b.adjoint()?)?.scale_real(0.5)?;
    let op = DenseOperator::new(h)?;
    assert!(op.is_hermitian());
    let v = start_vector(n, 22, dev)?;
    for tol in tols() {
        for method in [
            KrylovMethod::Auto,
            KrylovMethod::Lanczos,
            KrylovMethod::Arnoldi,
        ] {
            let config = ExpvConfig {
                tol,
                method,
                ..Default::default()
            };
            let report = check_against_dense(
                &op,
                -1.3,
                &v,
                &config,
                &format!("hermitian {method:?} {tol}"),
            )?;
            assert_eq!(report.lanczos, method != KrylovMethod::Arnoldi);
        }
    }
    Ok(())
}

test_device!(
    skew_hermitian_preserves_norm,
    skew_hermitian_cpu,
    skew_hermitian_cuda
);
fn skew_hermitian_preserves_norm(dev: &Device) -> Result<()> {
    let n = 64;
    let b = ComplexTensor::randn((n, n), 1.0 / (n as f64).sqrt(), 31, DType::F64, dev)?;
    let s = b.sub(&b.adjoint()?)?.scale_real(0.5)?;
    let op = DenseOperator::new(s)?;
    let v = start_vector(n, 32, dev)?;
    for tol in tols() {
        let config = ExpvConfig {
            tol,
            ..Default::default()
        };
        let report = check_against_dense(&op, 3.0, &v, &config, &format!("skew tol {tol}"))?;
        let (w, _) = expv(&op, 3.0, &v, &config)?;
        let drift = (w.norm_f64()? / v.norm_f64()? - 1.0).abs();
        assert!(
            drift <= 10.0 * tol,
            "norm drift {drift:e} at tol {tol:e} ({report:?})"
        );
    }
    Ok(())
}

test_device!(
    nilpotent_closed_form,
    nilpotent_closed_form_cpu,
    nilpotent_closed_form_cuda
);
fn nilpotent_closed_form(dev: &Device) -> Result<()> {
    // N e_j = e_{j-1}: exp(tN) e_{n-1} = sum_k t^k / k! e_{n-1-k}.
    let n = 12;
    let op = DenseOperator::new(real_matrix(
        n,
        dev,
        |i, j| if j == i + 1 { 1.0 } else { 0.0 },
    )?)?;
    let mut e_last = vec![c64::new(0.0, 0.0); n];
    e_last[n - 1] = c64::new(1.0, 0.0);
    let v = ComplexTensor::from_c64(&e_last, n, DType::F64, dev)?;
    let t = 2.5_f64;
    let mut expect = vec![c64::new(0.0, 0.0); n];
    let mut term = 1.0;
    for k in 0..n {
        expect[n - 1 - k] = c64::new(term, 0.0);
        term *= t / (k + 1) as f64;
    }
    let expect = ComplexTensor::from_c64(&expect, n, DType::F64, dev)?;
    for tol in tols() {
        let (w, report) = expv(
            &op,
            t,
            &v,
            &ExpvConfig {
                tol,
                ..Default::default()
            },
        )?;
        let err = err_rel_to(&w, &expect, 1.0)?;
        assert!(err <= 10.0 * tol, "nilpotent: {err:e} at tol {tol:e}");
        assert!(report.error_estimate >= 0.1 * err);
    }
    Ok(())
}

test_device!(edge_cases, edge_cases_cpu, edge_cases_cuda);
fn edge_cases(dev: &Device) -> Result<()> {
    let n = 30;
    let a = ComplexTensor::randn((n, n), 0.3, 41, DType::F64, dev)?;
    let op = DenseOperator::new(a)?;
    let v = start_vector(n, 42, dev)?;
    let config = ExpvConfig {
        tol: 1e-10,
        ..Default::default()
    };
    // t = 0 returns v unchanged, with no work.
    let (w, report) = expv(&op, 0.0, &v, &config)?;
    assert_eq!(w.to_c64_vec()?, v.to_c64_vec()?);
    assert_eq!(report.matvecs, 0);
    // Zero vector stays zero.
    let zero = ComplexTensor::zeros(n, DType::F64, dev)?;
    let (w, _) = expv(&op, 1.0, &zero, &config)?;
    assert_eq!(w.norm_f64()?, 0.0);
    // Negative t against the dense reference, and exp(-tA) exp(tA) v = v.
    check_against_dense(&op, -0.8, &v, &config, "negative t")?;
    let (fwd, _) = expv(&op, 0.8, &v, &config)?;
    let (back, _) = expv(&op, -0.8, &fwd, &config)?;
    assert!(err_rel_to(&back, &v, v.norm_f64()?)? < 1e-8);
    // An eigenvector start breaks down at the first step.
    let diag = real_matrix(
        n,
        dev,
        |i, j| if i == j { 0.1 * i as f64 - 1.0 } else { 0.0 },
    )?;
    let diag_op = DenseOperator::new(diag)?;
    let mut e3 = vec![c64::new(0.0, 0.0); n];
    e3[3] = c64::new(2.0, -1.0);
    let e3 = ComplexTensor::from_c64(&e3, n, DType::F64, dev)?;
    let (w, report) = expv(&diag_op, 1.5, &e3, &config)?;
    assert!(
        report.breakdown,
        "eigenvector start must break down: {report:?}"
    );
    assert_eq!(report.matvecs, 1);
    let lambda: f64 = 0.1 * 3.0 - 1.0;
    let expect = e3.scale_real((1.5 * lambda).exp())?;
    assert!(err_rel_to(&w, &expect, e3.norm_f64()?)? < 1e-14);
    // Krylov dimension larger than n: the whole space, exact up to round-off.
    let big = ExpvConfig {
        krylov_dim: 100,
        ..config.clone()
    };
    let report = check_against_dense(&op, 1.0, &v, &big, "m > n")?;
    assert!(report.breakdown);
    Ok(())
}

test_device!(large_norm_needs_substeps, large_norm_cpu, large_norm_cuda);
fn large_norm_needs_substeps(dev: &Device) -> Result<()> {
    let n = 120;
    let b = ComplexTensor::randn((n, n), 40.0 / (n as f64).sqrt(), 51, DType::F64, dev)?;
    let s = b.sub(&b.adjoint()?)?.scale_real(0.5)?;
    let op = DenseOperator::new(s)?;
    let v = start_vector(n, 52, dev)?;
    for tol in tols() {
        let config = ExpvConfig {
            tol,
            krylov_dim: 20,
            method: KrylovMethod::Arnoldi,
            ..Default::default()
        };
        let report = check_against_dense(&op, 1.0, &v, &config, &format!("large norm {tol}"))?;
        assert!(report.substeps > 1, "expected sub-steps: {report:?}");
    }
    Ok(())
}

test_device!(
    block_of_vectors,
    block_of_vectors_cpu,
    block_of_vectors_cuda
);
fn block_of_vectors(dev: &Device) -> Result<()> {
    let n = 40;
    let a = ComplexTensor::randn((n, n), 0.2, 61, DType::F64, dev)?;
    let op = DenseOperator::new(a.clone())?;
    let block = ComplexTensor::randn((n, 3), 1.0, 62, DType::F64, dev)?;
    let config = ExpvConfig {
        tol: 1e-11,
        ..Default::default()
    };
    let (w, report) = expv(&op, 1.2, &block, &config)?;
    assert_eq!(w.dims(), &[n, 3]);
    assert_eq!(report.columns, 3);
    let exact = expm(&a.scale_real(1.2)?)?.matmul(&block)?;
    for j in 0..3 {
        let col = block.narrow(1, j, 1)?;
        let err = err_rel_to(
            &w.narrow(1, j, 1)?,
            &exact.narrow(1, j, 1)?,
            col.norm_f64()?,
        )?;
        assert!(err <= 1e-10, "column {j}: {err:e}");
    }
    Ok(())
}

test_device!(
    single_precision,
    single_precision_cpu,
    single_precision_cuda
);
fn single_precision(dev: &Device) -> Result<()> {
    let n = 50;
    let a = ComplexTensor::randn((n, n), 1.0 / (n as f64).sqrt(), 71, DType::F64, dev)?;
    let v = start_vector(n, 72, dev)?;
    let config = ExpvConfig {
        tol: 1e-5,
        ..Default::default()
    };
    let (w64, _) = expv(&DenseOperator::new(a.clone())?, 1.0, &v, &config)?;
    let op32 = DenseOperator::new(a.to_dtype(DType::F32)?)?;
    let (w32, report) = expv(&op32, 1.0, &v.to_dtype(DType::F32)?, &config)?;
    let err = err_rel_to(&w32.to_dtype(DType::F64)?, &w64, v.norm_f64()?)?;
    assert!(err <= 10.0 * config.tol, "f32 error {err:e}");
    assert!(report.error_estimate >= 0.1 * err);
    Ok(())
}

test_device!(
    gradient_wrt_start_vector,
    grad_start_vector_cpu,
    grad_start_vector_cuda
);
fn gradient_wrt_start_vector(dev: &Device) -> Result<()> {
    let n = 16;
    let a = ComplexTensor::randn((n, n), 0.4, 81, DType::F64, dev)?;
    let op = DenseOperator::new(a)?;
    let v0 = ComplexTensor::randn(n, 1.0, 82, DType::F64, dev)?;
    let weights = ComplexTensor::randn(n, 1.0, 83, DType::F64, dev)?;
    let config = ExpvConfig {
        tol: 1e-13,
        krylov_dim: 10,
        ..Default::default()
    };
    // loss(v) = Re <weights, exp(A) v> + |exp(A) v|^2 / 4
    let loss =
        |re: &candle_core::Tensor, im: &candle_core::Tensor| -> Result<candle_core::Tensor> {
            let v = ComplexTensor::new(re.clone(), im.clone())?;
            let (w, _) = expv(&op, 1.0, &v, &config)?;
            let lin = weights.conj()?.mul(&w)?.re().sum_all()?;
            Ok((lin + w.abs2()?.sum_all()?.affine(0.25, 0.0)?)?)
        };
    let re = Var::from_tensor(v0.re())?;
    let im = Var::from_tensor(v0.im())?;
    let value = loss(re.as_tensor(), im.as_tensor())?;
    let grads = value.backward()?;
    let g_re = grads
        .get(re.as_tensor())
        .expect("gradient for re")
        .to_vec1::<f64>()?;
    let g_im = grads
        .get(im.as_tensor())
        .expect("gradient for im")
        .to_vec1::<f64>()?;
    let h = 1e-6;
    for (part, analytic) in [(0usize, &g_re), (1, &g_im)] {
        for i in [0usize, 5, 15] {
            let bump = |s: f64| -> Result<f64> {
                let mut d = vec![0.0; n];
                d[i] = s;
                let delta = candle_core::Tensor::from_vec(d, n, dev)?;
                let (r, m) = if part == 0 {
                    ((v0.re() + &delta)?, v0.im().clone())
                } else {
                    (v0.re().clone(), (v0.im() + &delta)?)
                };
                Ok(loss(&r, &m)?.to_scalar::<f64>()?)
            };
            let fd = (bump(h)? - bump(-h)?) / (2.0 * h);
            let rel = (fd - analytic[i]).abs() / fd.abs().max(1e-3);
            assert!(
                rel < 1e-5,
                "d/dv[{part},{i}]: fd {fd} vs autograd {}",
                analytic[i]
            );
        }
    }
    Ok(())
}

#[test]
fn bad_input_is_an_error() -> Result<()> {
    let dev = Device::Cpu;
    let n = 6;
    let op = DenseOperator::new(ComplexTensor::randn((n, n), 1.0, 1, DType::F64, &dev)?)?;
    let v = ComplexTensor::randn(n, 1.0, 2, DType::F64, &dev)?;
    let ok = ExpvConfig::default();
    let bad_tol = ExpvConfig {
        tol: 0.0,
        ..Default::default()
    };
    assert!(matches!(
        expv(&op, 1.0, &v, &bad_tol),
        Err(CoreError::InvalidArgument(_))
    ));
    let neg_tol = ExpvConfig {
        tol: -1e-3,
        ..Default::default()
    };
    assert!(matches!(
        expv(&op, 1.0, &v, &neg_tol),
        Err(CoreError::InvalidArgument(_))
    ));
    let no_krylov = ExpvConfig {
        krylov_dim: 0,
        ..Default::default()
    };
    assert!(matches!(
        expv(&op, 1.0, &v, &no_krylov),
        Err(CoreError::InvalidArgument(_))
    ));
    let short = ComplexTensor::randn(n + 1, 1.0, 3, DType::F64, &dev)?;
    assert!(matches!(
        expv(&op, 1.0, &short, &ok),
        Err(CoreError::ShapeMismatch(_))
    ));
    let nan_v = ComplexTensor::from_c64(&vec![c64::new(f64::NAN, 0.0); n], n, DType::F64, &dev)?;
    assert!(matches!(
        expv(&op, 1.0, &nan_v, &ok),
        Err(CoreError::NonFinite(_))
    ));
    assert!(matches!(
        expv(&op, f64::INFINITY, &v, &ok),
        Err(CoreError::NonFinite(_))
    ));
    let inf_a = real_matrix(n, &dev, |i, j| if i == j { f64::INFINITY } else { 0.0 })?;
    assert!(matches!(
        DenseOperator::new(inf_a),
        Err(CoreError::NonFinite(_))
    ));
    let v32 = v.to_dtype(DType::F32)?;
    assert!(matches!(
        expv(&op, 1.0, &v32, &ok),
        Err(CoreError::InvalidArgument(_))
    ));
    let lanczos = ExpvConfig {
        method: KrylovMethod::Lanczos,
        ..Default::default()
    };
    assert!(matches!(
        expv(&op, 1.0, &v, &lanczos),
        Err(CoreError::InvalidArgument(_))
    ));
    // A tolerance far below the working precision is reported, not hidden.
    let f32_op = DenseOperator::new(ComplexTensor::randn((n, n), 3.0, 4, DType::F32, &dev)?)?;
    let tiny = ExpvConfig {
        tol: 1e-15,
        krylov_dim: 2,
        max_rejections: 3,
        ..Default::default()
    };
    assert!(matches!(
        expv(&f32_op, 5.0, &v32, &tiny),
        Err(CoreError::NoConvergence(_))
    ));
    Ok(())
}

test_device!(
    very_large_norms,
    very_large_norms_cpu,
    very_large_norms_cuda
);
fn very_large_norms(dev: &Device) -> Result<()> {
    // ||tA|| in the hundreds: the whole-interval first attempt is rejected many-fold, and a
    // stiff Hermitian negative semi-definite operator decays by many orders of magnitude.
    let n = 60;
    let b = ComplexTensor::randn((n, n), 1.0 / (n as f64).sqrt(), 91, DType::F64, dev)?;
    let skew = b.sub(&b.adjoint()?)?.scale_real(300.0)?;
    let stiff = b.adjoint()?.matmul(&b)?.scale_real(-200.0)?;
    let v = start_vector(n, 92, dev)?;
    for (name, a) in [("skew", skew), ("stiff", stiff)] {
        let op = DenseOperator::new(a)?;
        let config = ExpvConfig {
            tol: 1e-8,
            ..Default::default()
        };
        let report = check_against_dense(&op, 1.0, &v, &config, name)?;
        assert!(
            report.rejected >= 1 && report.substeps >= 2,
            "{name}: {report:?}"
        );
    }
    Ok(())
}

test_device!(
    reorthogonalizes_when_needed,
    reorthogonalizes_when_needed_cpu,
    reorthogonalizes_when_needed_cuda
);
fn reorthogonalizes_when_needed(dev: &Device) -> Result<()> {
    let config = ExpvConfig {
        tol: 1e-10,
        krylov_dim: 20,
        method: KrylovMethod::Arnoldi,
        ..Default::default()
    };
    // A random operator: A v_j is mostly a new direction, so one Gram-Schmidt pass is enough
    // for most Krylov vectors.
    let n = 80;
    let a = ComplexTensor::randn((n, n), 1.0 / (n as f64).sqrt(), 11, DType::F64, dev)?;
    let v = start_vector(n, 12, dev)?;
    let random = check_against_dense(&DenseOperator::new(a)?, 2.0, &v, &config, "random")?;
    // A perturbed identity: A v_j ~ v_j, so the first pass cancels nearly all of it and the
    // second pass must run for every vector; the result must stay accurate.
    let clustered = real_matrix(n, dev, |i, j| {
        if i == j {
            1.0 + 1e-3 * i as f64 / n as f64
        } else if j == i + 1 {
            1e-3
        } else {
            0.0
        }
    })?;
    let near_identity = check_against_dense(
        &DenseOperator::new(clustered)?,
        1.0,
        &v,
        &config,
        "clustered",
    )?;
    assert!(
        2 * random.reorthogonalized < random.matvecs,
        "random: {random:?}"
    );
    // Every Krylov vector (all matvecs but the one error-estimate product per sub-step).
    assert_eq!(
        near_identity.reorthogonalized,
        near_identity.matvecs - near_identity.substeps,
        "clustered: {near_identity:?}"
    );
    Ok(())
}
