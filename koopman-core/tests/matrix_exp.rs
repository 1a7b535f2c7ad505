//! Dense exponential: closed forms and invariants.
mod common;

use candle_core::{DType, Device};
use common::{real_matrix, rel_err};
use koopman_core::{c64, expm, test_device, ComplexTensor, CoreError, Result};

test_device!(
    rotation_closed_form,
    rotation_closed_form_cpu,
    rotation_closed_form_cuda
);
fn rotation_closed_form(dev: &Device) -> Result<()> {
    for &t in &[0.0, 1e-3, 0.7, 3.0, 40.0] {
        let a = real_matrix(2, dev, |i, j| match (i, j) {
            (0, 1) => -t,
            (1, 0) => t,
            _ => 0.0,
        })?;
        let e = expm(&a)?;
        let expect = real_matrix(2, dev, |i, j| match (i, j) {
            (0, 0) | (1, 1) => t.cos(),
            (0, 1) => -t.sin(),
            _ => t.sin(),
        })?;
        assert!(
            rel_err(&e, &expect)? < 64.0 * f64::EPSILON * (1.0 + t),
            "t = {t}"
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
    // exp(tN) for the shift N has entries t^(j-i)/(j-i)! above the diagonal.
    let n = 8;
    let t = 1.7_f64;
    let a = real_matrix(n, dev, |i, j| if j == i + 1 { t } else { 0.0 })?;
    let fact = |k: usize| (1..=k).map(|x| x as f64).product::<f64>();
    let expect = real_matrix(n, dev, |i, j| {
        if j >= i {
            t.powi((j - i) as i32) / fact(j - i)
        } else {
            0.0
        }
    })?;
    assert!(rel_err(&expm(&a)?, &expect)? < 16.0 * n as f64 * f64::EPSILON);
    Ok(())
}

test_device!(
    inverse_and_diagonal,
    inverse_and_diagonal_cpu,
    inverse_and_diagonal_cuda
);
fn inverse_and_diagonal(dev: &Device) -> Result<()> {
    let n = 12;
    let a = ComplexTensor::randn((n, n), 1.0, 3, DType::F64, dev)?;
    let prod = expm(&a)?.matmul(&expm(&a.neg()?)?)?;
    let eye = ComplexTensor::eye(n, DType::F64, dev)?;
    // exp(A) exp(-A) = I up to the conditioning of exp(A): ||exp(A)|| ||exp(-A)|| eps n.
    let cond = expm(&a)?.norm_f64()? * expm(&a.neg()?)?.norm_f64()?;
    assert!(prod.sub(&eye)?.norm_f64()? < 64.0 * n as f64 * f64::EPSILON * cond);
    // Diagonal complex matrix: exp of each entry.
    let diag: Vec<c64> = (0..4)
        .map(|k| c64::new(-1.0 + k as f64, 2.0 * k as f64))
        .collect();
    let mut vals = vec![c64::new(0.0, 0.0); 16];
    let mut expect = vec![c64::new(0.0, 0.0); 16];
    for k in 0..4 {
        vals[k * 5] = diag[k];
        expect[k * 5] = diag[k].exp();
    }
    let e = expm(&common::matrix(&vals, 4, dev)?)?;
    assert!(rel_err(&e, &common::matrix(&expect, 4, dev)?)? < 64.0 * f64::EPSILON);
    Ok(())
}

test_device!(
    single_precision,
    single_precision_cpu,
    single_precision_cuda
);
fn single_precision(dev: &Device) -> Result<()> {
    let a = ComplexTensor::randn((10, 10), 0.5, 9, DType::F64, dev)?;
    let e64 = expm(&a)?;
    let e32 = expm(&a.to_dtype(DType::F32)?)?.to_dtype(DType::F64)?;
    assert!(rel_err(&e32, &e64)? < 100.0 * f32::EPSILON as f64);
    Ok(())
}

#[test]
fn bad_input_is_an_error() {
    let dev = Device::Cpu;
    let rect = ComplexTensor::zeros((2, 3), DType::F64, &dev).unwrap();
    assert!(matches!(expm(&rect), Err(CoreError::ShapeMismatch(_))));
    let nan = real_matrix(2, &dev, |_, _| f64::NAN).unwrap();
    assert!(matches!(expm(&nan), Err(CoreError::NonFinite(_))));
    let inf = real_matrix(2, &dev, |i, _| if i == 0 { f64::INFINITY } else { 0.0 }).unwrap();
    assert!(matches!(expm(&inf), Err(CoreError::NonFinite(_))));
}

#[cfg(feature = "expm")]
#[test]
fn agrees_with_expm_crate() -> Result<()> {
    use koopman_core::reference::expm_reference;
    let dev = Device::Cpu;
    for (seed, scale, n) in [
        (1u64, 0.3, 6usize),
        (2, 1.0, 20),
        (3, 3.0, 15),
        (4, 12.0, 10),
    ] {
        let a = ComplexTensor::randn((n, n), scale / (n as f64).sqrt(), seed, DType::F64, &dev)?;
        let ours = expm(&a)?;
        let theirs = expm_reference(&a)?;
        let err = rel_err(&ours, &theirs)?;
        assert!(err < 1e-12, "seed {seed}: relative difference {err:e}");
    }
    Ok(())
}

/// OpenBLAS's parallel LU inside the `expm` crate needs more than a small thread stack: before
/// the reference ran on its own large-stack thread, a 40 x 40 solve on a 2 MiB test thread crashed
/// with SIGSEGV in 75% of runs. Here the caller's stack is 512 KiB, so without that thread every
/// call would overflow it.
#[cfg(feature = "expm")]
#[test]
fn reference_runs_from_a_small_stack() {
    use koopman_core::reference::expm_reference;
    let worker = std::thread::Builder::new()
        .stack_size(512 << 10)
        .spawn(|| -> Result<f64> {
            let dev = Device::Cpu;
            let mut worst = 0f64;
            for seed in 0..8u64 {
                let a = ComplexTensor::randn((20, 20), 1.0 / 20f64.sqrt(), seed, DType::F64, &dev)?;
                worst = worst.max(rel_err(&expm(&a)?, &expm_reference(&a)?)?);
            }
            Ok(worst)
        })
        .expect("spawn a test thread");
    let worst = worker
        .join()
        .expect("the test thread finished")
        .expect("exponentials");
    assert!(worst < 1e-12, "relative difference {worst:e}");
}
