//! The fused Arnoldi process: the Arnoldi relation and orthonormality of its basis, its decisions
//! (breakdown, second pass), agreement with the step-by-step `expv` path and between devices,
//! and bad input.
mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::generator;
use koopman_core::arnoldi::{ArnoldiBasis, MAX_DIM};
use koopman_core::{
    c64, expv, test_device, ComplexTensor, CoreError, ExpvConfig, IndexSet, LinearOperator, Result,
    ToeplitzGenerator,
};
use std::sync::Arc;

/// Basis vector `i` of the fused basis as a column `(n, 1)`.
fn vector(basis: &ArnoldiBasis, i: usize) -> Result<ComplexTensor> {
    ComplexTensor::new(
        basis.rows.narrow(0, 2 * i, 1)?.t()?,
        basis.rows.narrow(0, 2 * i + 1, 1)?.t()?,
    )
}

fn start_rows(n: usize, seed: u64, dtype: DType, dev: &Device) -> Result<Tensor> {
    let v = ComplexTensor::randn((n, 1), 1.0, seed, dtype, dev)?;
    Ok(Tensor::cat(&[&v.re().t()?, &v.im().t()?], 0)?)
}

test_device!(
    arnoldi_relation,
    arnoldi_relation_cpu,
    arnoldi_relation_cuda
);
/// `A v_j = sum_{i <= j+1} H[i, j] v_i`, `V^* V = I`, `beta = ||v||`, and `||A v_m||`, to
/// tolerances scaled by epsilon, the size and the operator norm.
fn arnoldi_relation(dev: &Device) -> Result<()> {
    let op = generator(3, 0.05, 5, DType::F64, dev)?;
    let n = op.dim();
    let v = start_rows(n, 6, DType::F64, dev)?;
    let m = 20;
    let basis = op.fused_arnoldi(&v, m, 0.0).expect("one merged gather")?;
    assert_eq!((basis.steps, basis.breakdown), (m, false));
    let vnorm = v.sqr()?.sum_all()?.sqrt()?.to_scalar::<f64>()?;
    assert!((basis.beta - vnorm).abs() <= 1e-14 * vnorm);
    let anorm = op.norm_estimate()?;
    let tol = 100.0 * f64::EPSILON * (n as f64).sqrt() * (m as f64);
    let vectors: Vec<ComplexTensor> = (0..=m).map(|i| vector(&basis, i)).collect::<Result<_>>()?;
    for j in 0..m {
        let av = op.apply(&vectors[j])?;
        let mut combo = ComplexTensor::zeros((n, 1), DType::F64, dev)?;
        for (i, vi) in vectors.iter().enumerate().take(j + 2) {
            combo = combo.add(&vi.scale(basis.entry(i, j))?)?;
        }
        let residual = av.sub(&combo)?.norm_f64()?;
        assert!(
            residual <= tol * anorm,
            "Arnoldi relation at j = {j}: {residual:e}"
        );
        let sub = basis.entry(j + 1, j);
        assert!(sub.re > 0.0 && sub.im == 0.0, "subdiagonal {sub}");
    }
    for (i, vi) in vectors.iter().enumerate() {
        for (k, vk) in vectors.iter().enumerate().take(i + 1) {
            let dot = vk.adjoint()?.matmul(vi)?.to_c64_scalar()?;
            let expected = if i == k { 1.0 } else { 0.0 };
            assert!(
                (dot - c64::new(expected, 0.0)).norm() <= tol,
                "<v{k}, v{i}> = {dot}"
            );
        }
    }
    let avm = op.apply(&vectors[m])?.norm_f64()?;
    assert!((basis.avnorm - avm).abs() <= tol * anorm);
    assert_eq!(basis.last_norm, basis.entry(m, m - 1).re);
    Ok(())
}

test_device!(
    matches_cpu_reference,
    matches_cpu_reference_cpu,
    matches_cpu_reference_cuda
);
/// The process on `dev` against the CPU process (the reference of the CUDA kernel), f64 and f32:
/// same steps, projected matrix and basis to rounding.
fn matches_cpu_reference(dev: &Device) -> Result<()> {
    for (dtype, eps) in [
        (DType::F64, f64::EPSILON),
        (DType::F32, f32::EPSILON as f64),
    ] {
        let op = generator(3, 0.05, 9, dtype, dev)?;
        let reference = generator(3, 0.05, 9, dtype, &Device::Cpu)?;
        let n = op.dim();
        let v = start_rows(n, 10, dtype, &Device::Cpu)?;
        let m = 24;
        let here = op
            .fused_arnoldi(&v.to_device(dev)?, m, 0.0)
            .expect("fused")?;
        let there = reference.fused_arnoldi(&v, m, 0.0).expect("fused")?;
        assert_eq!(here.steps, there.steps);
        let scale = op.norm_estimate()?;
        let tol = 1e3 * eps * (n as f64).sqrt();
        for j in 0..m {
            for i in 0..=j + 1 {
                let d = (here.entry(i, j) - there.entry(i, j)).norm();
                assert!(d <= tol * scale, "{dtype:?} H[{i}, {j}]: {d:e}");
            }
        }
        let rows = 2 * (m + 1);
        let a = here
            .rows
            .narrow(0, 0, rows)?
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F64)?;
        let b = there.rows.narrow(0, 0, rows)?.to_dtype(DType::F64)?;
        let d = (a - b)?.abs()?.max_all()?.to_scalar::<f64>()?;
        // The basis loses accuracy as it grows (the products and projections round differently).
        assert!(d <= tol * (m as f64), "{dtype:?} basis: {d:e}");
    }
    Ok(())
}

test_device!(
    breakdown_when_invariant,
    breakdown_when_invariant_cpu,
    breakdown_when_invariant_cuda
);
/// After `n` vectors the space is the whole space: a breakdown with a residual at round-off, and
/// `expv` on such a small operator is exact to its tolerance.
fn breakdown_when_invariant(dev: &Device) -> Result<()> {
    let n_set = IndexSet::product_of_ranges(&[(-1, 1), (-1, 1), (0, 0)])?.without_origin()?;
    let m_set = IndexSet::product_of_ranges(&[(-1, 1), (-1, 1), (0, 0)])?.without_origin()?;
    let op = ToeplitzGenerator::random(
        Arc::new(n_set),
        vec![Arc::new(m_set)],
        0.3,
        1.0,
        3,
        DType::F64,
        dev,
    )?;
    let n = op.dim();
    let basis = op
        .fused_arnoldi(&start_rows(n, 4, DType::F64, dev)?, n, 0.0)
        .expect("fused")?;
    assert!(basis.breakdown && basis.steps == n, "{basis:?}");
    assert_eq!(basis.avnorm, 0.0);
    // A threshold above every norm stops after the first vector.
    let early = op
        .fused_arnoldi(&start_rows(n, 4, DType::F64, dev)?, n, 1e6)
        .expect("fused")?;
    assert!(early.breakdown && early.steps == 1);
    let v = ComplexTensor::randn(n, 1.0, 5, DType::F64, dev)?;
    let config = ExpvConfig {
        tol: 1e-12,
        krylov_dim: 30,
        ..Default::default()
    };
    let (w, report) = expv(&op, 1.5, &v, &config)?;
    let reference = koopman_core::expv_dense(&op, 1.5, &v)?;
    let err = w.sub(&reference)?.norm_f64()? / v.norm_f64()?;
    assert!(report.breakdown && err <= 1e-12, "{err:e} {report:?}");
    Ok(())
}

test_device!(
    expv_paths_agree,
    expv_paths_agree_cpu,
    expv_paths_agree_cuda
);
/// `expv` with the fused process against the step-by-step path (the same algorithm in candle
/// ops), over tolerances and times that take several sub-steps and rejections, and against the
/// dense exponential; the fused path also serves f32.
fn expv_paths_agree(dev: &Device) -> Result<()> {
    let op = generator(3, 0.08, 11, DType::F64, dev)?;
    let v = ComplexTensor::randn(op.dim(), 1.0, 12, DType::F64, dev)?;
    let exact = koopman_core::expv_dense(&op, 3.0, &v)?;
    let mut substeps = 0;
    for tol in [1e-6, 1e-10] {
        for krylov_dim in [8, 30] {
            let fused = ExpvConfig {
                tol,
                krylov_dim,
                ..Default::default()
            };
            let stepwise = ExpvConfig {
                fused: false,
                ..fused.clone()
            };
            let (a, ra) = expv(&op, 3.0, &v, &fused)?;
            let (b, rb) = expv(&op, 3.0, &v, &stepwise)?;
            assert!(ra.fused && !rb.fused, "paths not as configured");
            // exp(3L) grows: errors are relative to the larger of ||v|| and ||exp(3L) v||.
            let scale = v.norm_f64()?.max(exact.norm_f64()?);
            assert!(
                a.sub(&b)?.norm_f64()? <= 10.0 * tol * scale,
                "paths differ ({ra:?} / {rb:?})"
            );
            assert!(
                a.sub(&exact)?.norm_f64()? <= 10.0 * tol * scale,
                "fused vs dense ({ra:?})"
            );
            assert_eq!(
                (ra.substeps, ra.matvecs),
                (rb.substeps, rb.matvecs),
                "tol {tol}, m {krylov_dim}"
            );
            assert!(
                ra.error_estimate <= 2.0 * tol * scale / v.norm_f64()?,
                "estimate {ra:?}"
            );
            substeps = substeps.max(ra.substeps);
        }
    }
    assert!(substeps >= 3, "no test case took several sub-steps");
    let op32 = generator(3, 0.08, 11, DType::F32, dev)?;
    let v32 = v.to_dtype(DType::F32)?;
    let (w32, _) = expv(
        &op32,
        3.0,
        &v32,
        &ExpvConfig {
            tol: 1e-5,
            ..Default::default()
        },
    )?;
    let err = w32.to_dtype(DType::F64)?.sub(&exact)?.norm_f64()? / exact.norm_f64()?;
    assert!(err <= 1e-4, "f32: {err:e}");
    Ok(())
}

test_device!(
    gradients_keep_the_tensor_path,
    gradients_keep_the_tensor_path_cpu,
    gradients_keep_the_tensor_path_cuda
);
/// With coefficients that track a gradient the operator offers no fused process, and `expv`'s
/// gradient reaches them.
fn gradients_keep_the_tensor_path(dev: &Device) -> Result<()> {
    let base = generator(2, 0.08, 13, DType::F64, dev)?;
    let re = Var::from_tensor(base.coeffs()[0][0].re())?;
    let mut coeffs = base.coeffs().to_vec();
    coeffs[0][0] = ComplexTensor::new(re.as_tensor().clone(), base.coeffs()[0][0].im().clone())?;
    let op = ToeplitzGenerator::new(
        base.index_set().clone(),
        base.offsets(),
        coeffs,
        base.time().clone(),
    )?;
    let n = op.dim();
    assert!(op
        .fused_arnoldi(&start_rows(n, 1, DType::F64, dev)?, 5, 0.0)
        .is_none());
    let v = ComplexTensor::randn(n, 1.0, 14, DType::F64, dev)?;
    let (w, report) = expv(&op, 1.0, &v, &ExpvConfig::default())?;
    assert!(!report.fused);
    let grads = w.abs2()?.sum_all()?.backward()?;
    let g = grads
        .get(re.as_tensor())
        .expect("gradient reaches the coefficients");
    assert!(g.abs()?.sum_all()?.to_scalar::<f64>()? > 0.0);
    Ok(())
}

test_device!(bad_input, bad_input_cpu, bad_input_cuda);
fn bad_input(dev: &Device) -> Result<()> {
    let op = generator(2, 0.05, 1, DType::F64, dev)?;
    let n = op.dim();
    let v = start_rows(n, 2, DType::F64, dev)?;
    let fused =
        |v: &Tensor, m: usize, threshold: f64| op.fused_arnoldi(v, m, threshold).expect("fused");
    assert!(matches!(
        fused(&v, 0, 0.0),
        Err(CoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        fused(&v, MAX_DIM + 1, 0.0),
        Err(CoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        fused(&v, 5, f64::NAN),
        Err(CoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        fused(&v.narrow(1, 1, n - 1)?, 5, 0.0),
        Err(CoreError::ShapeMismatch(_))
    ));
    assert!(matches!(
        fused(&v.to_dtype(DType::F32)?, 5, 0.0),
        Err(CoreError::InvalidArgument(_))
    ));
    let nan = Tensor::full(f64::NAN, (2, n), dev)?;
    assert!(matches!(fused(&nan, 5, 0.0), Err(CoreError::NonFinite(_))));
    let huge = (v.clone() * 1e300)?;
    assert!(matches!(fused(&huge, 5, 0.0), Err(CoreError::NonFinite(_))));
    if !dev.is_cpu() {
        assert!(matches!(
            fused(&v.to_device(&Device::Cpu)?, 5, 0.0),
            Err(CoreError::InvalidArgument(_))
        ));
    }
    Ok(())
}
