//! Independent dense reference exponential (feature `expm`).
//!
//! Wraps the `expm` crate (Al-Mohy & Higham 2009 Padé scaling and squaring, on system
//! OpenBLAS/LAPACKE). The crate is real-f64 only, so a complex `A = X + iY` is exponentiated
//! through its real embedding `[[X, -Y], [Y, X]]`, whose exponential is `[[Re, -Im], [Im, Re]]` of
//! `exp(A)`. Host-side computation; the result is returned on `A`'s device and dtype.
//!
//! expm 0.1.1 panics on its degree-9 and degree-13 Padé paths (it passes four matrix powers where
//! the degree-13 sum asserts seven), which it takes when the 1-norm exceeds about 0.95. So the
//! embedding is first scaled by `2^-s` to 1-norm at most 1/2, where the crate uses degree <= 7,
//! and the result is squared `s` times with ndarray's own matrix product: the approximant and the
//! products stay independent of koopman-core's candle implementation.
//!
//! The crate's LU solve is OpenBLAS's `dgetrf_parallel`, which keeps per-thread job tables on the
//! stack, several hundred KiB per recursion level (Debian's OpenBLAS 0.3.21, measured: a 40 x 40
//! solve crashed with SIGSEGV in 75% of runs on a 2 MiB thread stack, the size of Rust's spawned
//! threads and test threads, and never on 4 MiB). So the call runs on a scoped thread with a
//! [`REFERENCE_STACK_BYTES`] stack, whatever stack the caller has.

use crate::complex::{c64, ComplexTensor};
use crate::error::{CoreError, Result};

/// Stack of the thread that runs the `expm` crate (reserved lazily, so mostly untouched).
pub const REFERENCE_STACK_BYTES: usize = 64 << 20;

/// `exp(A)` computed by the `expm` crate through the real embedding of `A`.
pub fn expm_reference(a: &ComplexTensor) -> Result<ComplexTensor> {
    let dims = a.dims();
    if dims.len() != 2 || dims[0] != dims[1] || dims[0] == 0 {
        return Err(CoreError::ShapeMismatch(format!(
            "reference exponential needs a non-empty square matrix, got shape {dims:?}"
        )));
    }
    a.ensure_finite("reference exponential argument")?;
    let n = dims[0];
    let values = a.to_c64_vec()?;
    let mut embedded = ndarray::Array2::<f64>::zeros((2 * n, 2 * n));
    for i in 0..n {
        for j in 0..n {
            let z = values[i * n + j];
            embedded[[i, j]] = z.re;
            embedded[[i + n, j + n]] = z.re;
            embedded[[i, j + n]] = -z.im;
            embedded[[i + n, j]] = z.im;
        }
    }
    let norm1 = (0..2 * n)
        .map(|j| embedded.column(j).iter().map(|x| x.abs()).sum::<f64>())
        .fold(0.0, f64::max);
    let squarings = if norm1 > 0.5 {
        (norm1 / 0.5).log2().ceil() as i32
    } else {
        0
    };
    let scaled = embedded.mapv(|x| x * 0.5f64.powi(squarings));
    let mut out = ndarray::Array2::<f64>::zeros((2 * n, 2 * n));
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("expm-reference".into())
            .stack_size(REFERENCE_STACK_BYTES)
            .spawn_scoped(scope, || expm::expm(&scaled, &mut out))
            .map_err(|e| {
                CoreError::Unsupported(format!(
                    "cannot start the reference exponential's thread: {e}"
                ))
            })?;
        worker.join().map_err(|_| {
            CoreError::Decomposition("the expm crate panicked in the reference exponential".into())
        })
    })?;
    for _ in 0..squarings {
        out = out.dot(&out);
    }
    let result: Vec<c64> = (0..n)
        .flat_map(|i| (0..n).map(move |j| (i, j)))
        .map(|(i, j)| c64::new(out[[i, j]], out[[i + n, j]]))
        .collect();
    ComplexTensor::from_c64(&result, (n, n), a.dtype(), a.device())
}
