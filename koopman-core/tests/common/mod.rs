//! Helpers shared by koopman-core's integration tests.
#![allow(dead_code)]

use candle_core::{DType, Device};
use koopman_core::{c64, ComplexTensor, IndexSet, Result, ToeplitzGenerator};
use std::sync::Arc;

/// Relative Frobenius distance `||a - b|| / max(||b||, tiny)`.
pub fn rel_err(a: &ComplexTensor, b: &ComplexTensor) -> Result<f64> {
    let diff = a.sub(b)?.norm_f64()?;
    Ok(diff / b.norm_f64()?.max(f64::MIN_POSITIVE))
}

/// Absolute error relative to a given scale.
pub fn err_rel_to(a: &ComplexTensor, b: &ComplexTensor, scale: f64) -> Result<f64> {
    Ok(a.sub(b)?.norm_f64()? / scale)
}

/// A matrix from row-major complex values.
pub fn matrix(values: &[c64], n: usize, dev: &Device) -> Result<ComplexTensor> {
    ComplexTensor::from_c64(values, (n, n), DType::F64, dev)
}

/// A real matrix from a closure `f(i, j)`.
pub fn real_matrix(
    n: usize,
    dev: &Device,
    f: impl Fn(usize, usize) -> f64,
) -> Result<ComplexTensor> {
    let vals: Vec<c64> = (0..n * n).map(|k| c64::new(f(k / n, k % n), 0.0)).collect();
    matrix(&vals, n, dev)
}

/// `N = {-r..r}^3 \ {0}` and the paper's offsets `M = {-2..2}^2 x {-1..1} \ {0}` (|M| = 74).
pub fn paper_sets(radius: i64) -> Result<(Arc<IndexSet>, Arc<IndexSet>)> {
    let n = IndexSet::cube(3, radius)?.without_origin()?;
    let m = IndexSet::product_of_ranges(&[(-2, 2), (-2, 2), (-1, 1)])?.without_origin()?;
    Ok((Arc::new(n), Arc::new(m)))
}

/// A one-factor generator over [`paper_sets`] with random coefficients, `t = 1`.
pub fn generator(
    radius: i64,
    scale: f64,
    seed: u64,
    dtype: DType,
    dev: &Device,
) -> Result<ToeplitzGenerator> {
    let (n_set, m_set) = paper_sets(radius)?;
    ToeplitzGenerator::random(n_set, vec![m_set], scale, 1.0, seed, dtype, dev)
}
