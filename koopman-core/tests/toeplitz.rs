//! The Toeplitz generator: structure, dense materialisation, adjoint, expv, gradients, bad input.
mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{err_rel_to, paper_sets, rel_err};
use koopman_core::{
    c64, expv, expv_dense, expv_taylor, test_device, ComplexTensor, CoreError, ExpvConfig,
    IndexSet, LinearOperator, Result, TaylorConfig, TaylorPath, ToeplitzGenerator,
};
use std::sync::Arc;

/// Trainable copies `(re, im)` of a generator's coefficients, indexed `[k][r]`.
fn coefficient_vars(base: &ToeplitzGenerator) -> Result<Vec<Vec<(Var, Var)>>> {
    base.coeffs()
        .iter()
        .map(|g| {
            g.iter()
                .map(|a| Ok((Var::from_tensor(a.re())?, Var::from_tensor(a.im())?)))
                .collect::<Result<Vec<_>>>()
        })
        .collect()
}

test_device!(
    matches_dense_definition,
    matches_dense_cpu,
    matches_dense_cuda
);
fn matches_dense_definition(dev: &Device) -> Result<()> {
    // Entry (n, l) of L for R = 1 by the definition, computed on the host.
    let n_set = Arc::new(IndexSet::cube(2, 2)?.without_origin()?);
    let m_set = Arc::new(IndexSet::cube(2, 1)?);
    let op = ToeplitzGenerator::random(
        n_set.clone(),
        vec![m_set.clone()],
        0.5,
        0.7,
        3,
        DType::F64,
        dev,
    )?;
    let coeffs: Vec<Vec<c64>> = op
        .coeffs()
        .iter()
        .map(|g| g[0].to_c64_vec())
        .collect::<Result<_>>()?;
    let len = n_set.len();
    let mut expect = vec![c64::new(0.0, 0.0); len * len];
    for (i, n) in n_set.iter().enumerate() {
        for (j, l) in n_set.iter().enumerate() {
            let diff: Vec<i64> = n.iter().zip(l).map(|(a, b)| a - b).collect();
            if let Some(p) = m_set.position(&diff) {
                for (k, a) in coeffs.iter().enumerate() {
                    expect[i * len + j] += 0.7 * a[p] * c64::new(0.0, l[k] as f64);
                }
            }
        }
    }
    let expect = ComplexTensor::from_c64(&expect, (len, len), DType::F64, dev)?;
    assert!(rel_err(&op.to_dense()?, &expect)? < 1e-15);
    Ok(())
}

test_device!(
    apply_equals_dense,
    apply_equals_dense_cpu,
    apply_equals_dense_cuda
);
fn apply_equals_dense(dev: &Device) -> Result<()> {
    let (n_set, m_set) = paper_sets(3)?;
    for factors in [1usize, 2, 3] {
        let offsets = vec![m_set.clone(); factors];
        let op = ToeplitzGenerator::random(
            n_set.clone(),
            offsets,
            0.2,
            1.3,
            10 + factors as u64,
            DType::F64,
            dev,
        )?;
        let dense = op.to_dense()?;
        let x = ComplexTensor::randn((n_set.len(), 4), 1.0, 5, DType::F64, dev)?;
        let y = op.apply(&x)?;
        assert!(rel_err(&y, &dense.matmul(&x)?)? < 1e-13, "R = {factors}");
        // Single vector shape is kept.
        let x1 = x.narrow(1, 0, 1)?.squeeze(1)?;
        assert_eq!(op.apply(&x1)?.dims(), &[n_set.len()]);
        // Adjoint: <A x, z> = <x, A^* z> and equals the dense conjugate transpose.
        let z = ComplexTensor::randn((n_set.len(), 4), 1.0, 6, DType::F64, dev)?;
        assert!(rel_err(&op.apply_adjoint(&z)?, &dense.adjoint()?.matmul(&z)?)? < 1e-13);
        // Norm estimate is an upper bound of the 1-norm.
        assert!(op.norm_estimate()? >= dense.norm1_f64()? * (1.0 - 1e-12));
    }
    Ok(())
}

test_device!(
    expv_on_generator,
    expv_on_generator_cpu,
    expv_on_generator_cuda
);
fn expv_on_generator(dev: &Device) -> Result<()> {
    let (n_set, m_set) = paper_sets(3)?;
    let op = ToeplitzGenerator::random(n_set.clone(), vec![m_set], 0.05, 1.0, 21, DType::F64, dev)?;
    let v = ComplexTensor::randn(n_set.len(), 1.0, 22, DType::F64, dev)?;
    let exact = expv_dense(&op, 1.0, &v)?;
    for tol in [1e-6, 1e-10] {
        let (w, report) = expv(
            &op,
            1.0,
            &v,
            &ExpvConfig {
                tol,
                ..Default::default()
            },
        )?;
        let err = err_rel_to(&w, &exact, v.norm_f64()?)?;
        assert!(err <= 10.0 * tol, "tol {tol}: {err:e}");
        assert!(report.error_estimate >= 0.1 * err, "{report:?} vs {err:e}");
    }
    Ok(())
}

// Finite-difference check of d loss / d coefficients (and time) through expv, f64: a random
// generator with R = 2 factors, and the zero generator with R = 1 (where expv takes its shortcut,
// which must keep the first-order derivative so that training can start from zero coefficients).
test_device!(gradient_wrt_parameters, grad_params_cpu, grad_params_cuda);
fn gradient_wrt_parameters(dev: &Device) -> Result<()> {
    // Krylov expv, and the Taylor action: fused kernel for R = 1, term by term for R = 2.
    for taylor in [false, true] {
        gradient_wrt_parameters_at(dev, 0.15, 2, taylor)?;
        gradient_wrt_parameters_at(dev, 0.15, 1, taylor)?;
        gradient_wrt_parameters_at(dev, 0.0, 1, taylor)?;
    }
    Ok(())
}

fn gradient_wrt_parameters_at(dev: &Device, scale: f64, r: usize, taylor: bool) -> Result<()> {
    let n_set =
        Arc::new(IndexSet::product_of_ranges(&[(-3, 3), (-3, 3), (-1, 1)])?.without_origin()?);
    let m_set =
        Arc::new(IndexSet::product_of_ranges(&[(-1, 1), (-1, 1), (-1, 1)])?.without_origin()?);
    let d = 3;
    let base = ToeplitzGenerator::random(
        n_set.clone(),
        vec![m_set.clone(); r],
        scale,
        1.0,
        31,
        DType::F64,
        dev,
    )?;
    let vars = coefficient_vars(&base)?;
    let time = Var::from_tensor(&Tensor::new(0.8f64, dev)?)?;
    let v = ComplexTensor::randn(n_set.len(), 1.0, 32, DType::F64, dev)?;
    let probe = ComplexTensor::randn(n_set.len(), 1.0, 33, DType::F64, dev)?;
    let config = ExpvConfig {
        tol: 1e-14,
        krylov_dim: 40,
        ..Default::default()
    };
    let loss = |coeffs: Vec<Vec<ComplexTensor>>, t: Tensor| -> Result<Tensor> {
        let op = ToeplitzGenerator::new(n_set.clone(), vec![m_set.clone(); r], coeffs, t)?;
        let w = if taylor {
            let config = TaylorConfig {
                tol: 1e-14,
                ..Default::default()
            };
            let (w, report) = expv_taylor(&op, 1.0, &v, &config)?;
            let expected = if r == 1 && op.supports_fused_taylor() {
                TaylorPath::Fused
            } else if dev.is_cuda() {
                TaylorPath::Dense
            } else {
                TaylorPath::Operator
            };
            assert_eq!(report.path, expected);
            w
        } else {
            expv(&op, 1.0, &v, &config)?.0
        };
        Ok((probe.conj()?.mul(&w)?.re().sum_all()? + w.abs2()?.sum_all()?.affine(0.1, 0.0)?)?)
    };
    let current =
        |bump: Option<(usize, usize, usize, bool, f64)>| -> Result<Vec<Vec<ComplexTensor>>> {
            let mut out = Vec::new();
            for (k, g) in vars.iter().enumerate() {
                let mut row = Vec::new();
                for (rr, (re, im)) in g.iter().enumerate() {
                    let (mut re_t, mut im_t) = (re.as_tensor().clone(), im.as_tensor().clone());
                    if let Some((bk, br, idx, imag, h)) = bump {
                        if bk == k && br == rr {
                            let mut delta = vec![0.0; m_set.len()];
                            delta[idx] = h;
                            let delta = Tensor::from_vec(delta, m_set.len(), dev)?;
                            if imag {
                                im_t = (im_t.detach() + delta)?;
                            } else {
                                re_t = (re_t.detach() + delta)?;
                            }
                        }
                    }
                    row.push(ComplexTensor::new(re_t, im_t)?);
                }
                out.push(row);
            }
            Ok(out)
        };
    let value = loss(current(None)?, time.as_tensor().clone())?;
    let grads = value.backward()?;
    let h = 1e-6;
    let mut checked = 0;
    let cases = [
        (0, 0, 0, false),
        (1, 1, 7, true),
        (2, 0, 13, false),
        (2, 1, 25, true),
        (0, 1, 4, true),
        (1, 0, 9, true),
    ];
    let expected = cases.iter().filter(|c| c.1 < r).count();
    for (k, rr, idx, imag) in cases.into_iter().filter(|c| c.1 < r) {
        assert!(k < d);
        let var = if imag { &vars[k][rr].1 } else { &vars[k][rr].0 };
        let analytic = grads
            .get(var.as_tensor())
            .expect("coefficient gradient")
            .to_vec1::<f64>()?[idx];
        let plus = loss(
            current(Some((k, rr, idx, imag, h)))?,
            time.as_tensor().detach(),
        )?
        .to_scalar::<f64>()?;
        let minus = loss(
            current(Some((k, rr, idx, imag, -h)))?,
            time.as_tensor().detach(),
        )?
        .to_scalar::<f64>()?;
        let fd = (plus - minus) / (2.0 * h);
        let rel = (fd - analytic).abs() / fd.abs().max(1e-3);
        assert!(
            rel < 1e-5,
            "d/da[{k},{rr},{idx},{imag}] (R = {r}, taylor {taylor}): fd {fd} vs autograd {analytic}"
        );
        if scale == 0.0 {
            // at A = 0 the derivative t dA v is not zero: the check must not pass vacuously
            assert!(
                fd.abs() > 1e-3,
                "zero generator: derivative {fd} unexpectedly ~0"
            );
        }
        checked += 1;
    }
    // Time derivative.
    let analytic_t = grads
        .get(time.as_tensor())
        .expect("time gradient")
        .to_scalar::<f64>()?;
    let at = |t: f64| -> Result<f64> {
        Ok(loss(current(None)?, Tensor::new(t, dev)?)?.to_scalar::<f64>()?)
    };
    let fd_t = (at(0.8 + h)? - at(0.8 - h)?) / (2.0 * h);
    assert!(
        (fd_t - analytic_t).abs() / fd_t.abs().max(1e-3) < 1e-5,
        "d/dt (R = {r}, taylor {taylor}): fd {fd_t} vs {analytic_t}"
    );
    assert_eq!(checked, expected);
    Ok(())
}

#[test]
fn bad_input_is_an_error() -> Result<()> {
    let dev = Device::Cpu;
    let n3 = Arc::new(IndexSet::cube(3, 2)?);
    let m2 = Arc::new(IndexSet::cube(2, 1)?);
    let m3 = Arc::new(IndexSet::cube(3, 1)?);
    // Offset set of the wrong dimension.
    assert!(matches!(
        ToeplitzGenerator::random(n3.clone(), vec![m2], 0.1, 1.0, 1, DType::F64, &dev),
        Err(CoreError::ShapeMismatch(_))
    ));
    // No factors.
    assert!(matches!(
        ToeplitzGenerator::random(n3.clone(), vec![], 0.1, 1.0, 1, DType::F64, &dev),
        Err(CoreError::InvalidArgument(_))
    ));
    // Wrong coefficient length, wrong number of coordinate groups, NaN coefficients.
    let t = Tensor::new(1.0f64, &dev)?;
    let good = ComplexTensor::randn(m3.len(), 0.1, 2, DType::F64, &dev)?;
    let short = ComplexTensor::randn(m3.len() - 1, 0.1, 2, DType::F64, &dev)?;
    let nan = ComplexTensor::from_c64(
        &vec![c64::new(f64::NAN, 0.0); m3.len()],
        m3.len(),
        DType::F64,
        &dev,
    )?;
    let groups = |a: &ComplexTensor, b: &ComplexTensor| {
        vec![vec![a.clone()], vec![good.clone()], vec![b.clone()]]
    };
    assert!(matches!(
        ToeplitzGenerator::new(
            n3.clone(),
            vec![m3.clone()],
            groups(&good, &short),
            t.clone()
        ),
        Err(CoreError::ShapeMismatch(_))
    ));
    assert!(matches!(
        ToeplitzGenerator::new(
            n3.clone(),
            vec![m3.clone()],
            vec![vec![good.clone()]],
            t.clone()
        ),
        Err(CoreError::ShapeMismatch(_))
    ));
    assert!(matches!(
        ToeplitzGenerator::new(n3.clone(), vec![m3.clone()], groups(&good, &nan), t.clone()),
        Err(CoreError::NonFinite(_))
    ));
    // One NaN or Inf entry among finite ones, in any coordinate, for R = 1 and R = 2, or a NaN
    // time: caught by the one read of the norm bounds at construction.
    let mut values = good.to_c64_vec()?;
    for bad in [c64::new(f64::NAN, 0.0), c64::new(0.0, f64::INFINITY)] {
        values[5] = bad;
        let one_bad = ComplexTensor::from_c64(&values, m3.len(), DType::F64, &dev)?;
        for factors in [1usize, 2] {
            for k in 0..3 {
                let mut coeffs = vec![vec![good.clone(); factors]; 3];
                coeffs[k][factors - 1] = one_bad.clone();
                assert!(
                    matches!(
                        ToeplitzGenerator::new(
                            n3.clone(),
                            vec![m3.clone(); factors],
                            coeffs,
                            t.clone()
                        ),
                        Err(CoreError::NonFinite(_))
                    ),
                    "{bad} in coordinate {k}, R = {factors}"
                );
            }
        }
    }
    assert!(matches!(
        ToeplitzGenerator::new(
            n3.clone(),
            vec![m3.clone()],
            groups(&good, &good),
            Tensor::new(f64::NAN, &dev)?
        ),
        Err(CoreError::NonFinite(_))
    ));
    let op = ToeplitzGenerator::new(n3.clone(), vec![m3.clone()], groups(&good, &good), t)?;
    let wrong = ComplexTensor::randn(n3.len() + 2, 1.0, 3, DType::F64, &dev)?;
    assert!(matches!(op.apply(&wrong), Err(CoreError::ShapeMismatch(_))));
    Ok(())
}

/// Values, coefficient gradient, input gradient and adjoint of one kernel run.
type KernelRun = (Vec<c64>, Vec<f64>, Vec<f64>, Vec<c64>);

// The one-pass gather kernels (CPU, and the CUDA kernels on a GPU) and the portable candle-ops
// path agree in values and gradients (per-row and shared weights, forward and adjoint).
test_device!(
    kernel_matches_portable_ops,
    kernel_matches_portable_ops_cpu,
    kernel_matches_portable_ops_cuda
);
fn kernel_matches_portable_ops(dev: &Device) -> Result<()> {
    use koopman_core::GatherKernel;
    let (n_set, m_set) = paper_sets(2)?;
    for factors in [1usize, 2] {
        let base = ToeplitzGenerator::random(
            n_set.clone(),
            vec![m_set.clone(); factors],
            0.2,
            0.9,
            40 + factors as u64,
            DType::F64,
            dev,
        )?;
        let vars = coefficient_vars(&base)?;
        let coeffs: Vec<Vec<ComplexTensor>> = vars
            .iter()
            .map(|g| {
                g.iter()
                    .map(|(re, im)| {
                        ComplexTensor::new(re.as_tensor().clone(), im.as_tensor().clone())
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        let x_re = Var::from_tensor(&Tensor::randn(0f64, 1.0, (n_set.len(), 3), dev)?)?;
        let x = ComplexTensor::new(
            x_re.as_tensor().clone(),
            Tensor::randn(0f64, 1.0, (n_set.len(), 3), dev)?,
        )?;
        let run = |kernel: GatherKernel| -> Result<KernelRun> {
            let op = ToeplitzGenerator::new(
                n_set.clone(),
                vec![m_set.clone(); factors],
                coeffs.clone(),
                Tensor::new(0.9f64, dev)?,
            )?
            .with_kernel(kernel);
            let y = op.apply(&x)?;
            let adj = op.apply_adjoint(&x)?;
            let loss = (y.abs2()?.sum_all()? + adj.re().sum_all()?)?;
            let grads = loss.backward()?;
            let g_coeff = grads
                .get(vars[1][factors - 1].1.as_tensor())
                .expect("coefficient gradient")
                .to_vec1::<f64>()?;
            let g_x = grads
                .get(x_re.as_tensor())
                .expect("input gradient")
                .flatten_all()?
                .to_vec1::<f64>()?;
            Ok((y.to_c64_vec()?, g_coeff, g_x, adj.to_c64_vec()?))
        };
        let fast = run(GatherKernel::Auto)?;
        let portable = run(GatherKernel::Portable)?;
        let close_c = |a: &[c64], b: &[c64]| {
            a.iter()
                .zip(b)
                .all(|(p, q)| (p - q).norm() <= 1e-12 * (1.0 + q.norm()))
        };
        let close_r = |a: &[f64], b: &[f64]| {
            a.iter()
                .zip(b)
                .all(|(p, q)| (p - q).abs() <= 1e-12 * (1.0 + q.abs()))
        };
        assert!(
            close_c(&fast.0, &portable.0),
            "R = {factors}: values differ"
        );
        assert!(
            close_r(&fast.1, &portable.1),
            "R = {factors}: coefficient gradients differ"
        );
        assert!(
            close_r(&fast.2, &portable.2),
            "R = {factors}: input gradients differ"
        );
        assert!(
            close_c(&fast.3, &portable.3),
            "R = {factors}: adjoints differ"
        );
    }
    Ok(())
}

// The dense materialisation's gradient (a gather-sum given by hand, not candle's index_select
// backward) against the gradient of the operator applied to the identity in portable candle
// ops: two independent constructions of dL/da, for R = 1 and R = 2.
test_device!(
    dense_gradient_matches_apply,
    dense_gradient_matches_apply_cpu,
    dense_gradient_matches_apply_cuda
);
fn dense_gradient_matches_apply(dev: &Device) -> Result<()> {
    use koopman_core::GatherKernel;
    let (n_set, m_set) = paper_sets(1)?;
    let n = n_set.len();
    for factors in [1usize, 2] {
        let base = ToeplitzGenerator::random(
            n_set.clone(),
            vec![m_set.clone(); factors],
            0.3,
            0.7,
            50 + factors as u64,
            DType::F64,
            dev,
        )?;
        let vars = coefficient_vars(&base)?;
        let probe = ComplexTensor::randn((n, n), 1.0, 9, DType::F64, dev)?;
        let grads = |dense: bool| -> Result<Vec<Vec<f64>>> {
            let coeffs = vars
                .iter()
                .map(|g| {
                    g.iter()
                        .map(|(re, im)| {
                            ComplexTensor::new(re.as_tensor().clone(), im.as_tensor().clone())
                        })
                        .collect::<Result<Vec<_>>>()
                })
                .collect::<Result<Vec<_>>>()?;
            let op = ToeplitzGenerator::new(
                n_set.clone(),
                vec![m_set.clone(); factors],
                coeffs,
                Tensor::new(0.7f64, dev)?,
            )?
            .with_kernel(GatherKernel::Portable);
            let matrix = if dense {
                op.to_dense()?
            } else {
                op.apply(&ComplexTensor::eye(n, DType::F64, dev)?)?
            };
            let loss = probe.conj()?.mul(&matrix)?.re().sum_all()?;
            let g = loss.backward()?;
            vars.iter()
                .flatten()
                .flat_map(|(re, im)| [re, im])
                .map(|v| Ok(g.get(v.as_tensor()).expect("gradient").to_vec1::<f64>()?))
                .collect()
        };
        let (a, b) = (grads(true)?, grads(false)?);
        for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
            assert!(
                (x - y).abs() <= 1e-12 * (1.0 + y.abs()),
                "R = {factors}: {x} vs {y}"
            );
        }
    }
    Ok(())
}

test_device!(
    structured_gather_matches_stored_weights,
    structured_gather_matches_stored_weights_cpu,
    structured_gather_matches_stored_weights_cuda
);
/// Products that need no gradient by the structured gather (weights built in the kernel from the
/// coefficients and the frequencies; `Auto` takes it on a GPU) against the portable candle ops,
/// f64 and f32, vectors and blocks; with coefficients that track a gradient the stored-weight
/// path runs and the gradient arrives; shape errors of the op.
fn structured_gather_matches_stored_weights(dev: &Device) -> Result<()> {
    use koopman_core::gather::GatherPattern;
    use koopman_core::GatherKernel;
    let (n_set, m_set) = paper_sets(3)?;
    let n = n_set.len();
    for (dtype, eps) in [
        (DType::F64, f64::EPSILON),
        (DType::F32, f32::EPSILON as f64),
    ] {
        let base = ToeplitzGenerator::random(
            n_set.clone(),
            vec![m_set.clone()],
            0.2,
            0.7,
            61,
            dtype,
            dev,
        )?;
        let make = |kernel| -> Result<ToeplitzGenerator> {
            Ok(ToeplitzGenerator::new(
                n_set.clone(),
                vec![m_set.clone()],
                base.coeffs().to_vec(),
                base.time().clone(),
            )?
            .with_kernel(kernel))
        };
        let (structured, portable) = (
            make(GatherKernel::Structured)?,
            make(GatherKernel::Portable)?,
        );
        let scale = structured.norm_estimate()?;
        for shape in [vec![n], vec![n, 3]] {
            let x = ComplexTensor::randn(shape.as_slice(), 1.0, 62, dtype, dev)?;
            let a = structured.apply(&x)?;
            let b = portable.apply(&x)?;
            let d = a.sub(&b)?.to_dtype(DType::F64)?.norm_f64()?
                / x.to_dtype(DType::F64)?.norm_f64()?;
            assert!(d <= 1e2 * eps * scale, "{dtype:?} {shape:?}: {d:e}");
        }
    }
    // With a tracked coefficient: same values, and the gradient reaches it.
    let base = ToeplitzGenerator::random(
        n_set.clone(),
        vec![m_set.clone()],
        0.2,
        0.7,
        63,
        DType::F64,
        dev,
    )?;
    let re = Var::from_tensor(base.coeffs()[2][0].re())?;
    let mut coeffs = base.coeffs().to_vec();
    coeffs[2][0] = ComplexTensor::new(re.as_tensor().clone(), coeffs[2][0].im().clone())?;
    let tracked = ToeplitzGenerator::new(
        n_set.clone(),
        vec![m_set.clone()],
        coeffs,
        base.time().clone(),
    )?
    .with_kernel(GatherKernel::Structured);
    let x = ComplexTensor::randn(n, 1.0, 64, DType::F64, dev)?;
    let y = tracked.apply(&x)?;
    assert!(
        err_rel_to(
            &y,
            &base.with_kernel(GatherKernel::Portable).apply(&x)?,
            x.norm_f64()?
        )? <= 1e-13
    );
    let grads = y.abs2()?.sum_all()?.backward()?;
    assert!(
        grads.get(re.as_tensor()).is_some(),
        "gradient through the stored weights"
    );
    // The op's own checks.
    let pattern = GatherPattern::new(vec![1, 2, 0], vec![2, 0, 1], 3, 1)?;
    let y = Tensor::zeros((1, 3, 2), DType::F64, &Device::Cpu)?;
    let a = Tensor::zeros((2, 1, 2), DType::F64, &Device::Cpu)?;
    let f = Tensor::zeros((3, 2), DType::F64, &Device::Cpu)?;
    assert!(pattern.apply_structured(&y, &a, &f).is_ok());
    let bad_f = Tensor::zeros((3, 3), DType::F64, &Device::Cpu)?;
    assert!(matches!(
        pattern.apply_structured(&y, &a, &bad_f),
        Err(CoreError::ShapeMismatch(_))
    ));
    let f32_f = f.to_dtype(DType::F32)?;
    assert!(matches!(
        pattern.apply_structured(&y, &a, &f32_f),
        Err(CoreError::InvalidArgument(_))
    ));
    Ok(())
}
