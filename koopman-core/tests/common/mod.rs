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

/// A seeded generator.
pub fn rng(seed: u64) -> rand::rngs::StdRng {
    use rand::SeedableRng;
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// A seeded matrix with entries uniform in `[-1, 1)`.
pub fn random_mat(r: usize, c: usize, seed: u64) -> faer::Mat<f64> {
    use rand::Rng;
    let mut g = rng(seed);
    faer::Mat::from_fn(r, c, |_, _| g.random_range(-1.0..1.0))
}

/// `A = P B P^T` with `P` orthogonal and `B` block diagonal: eigenvalues 0.9, 0.5, 0.7 ± 0.2i.
pub fn known_system() -> (faer::Mat<f64>, Vec<c64>) {
    let (p, _) = koopman_core::linalg::thin_qr(random_mat(4, 4, 7).as_ref());
    let mut b = faer::Mat::<f64>::zeros(4, 4);
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
