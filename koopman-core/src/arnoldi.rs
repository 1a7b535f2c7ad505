//! The fused Arnoldi process of a weighted-gather operator: a whole Krylov basis in one custom op.
//!
//! [`crate::expv`](fn@crate::expv) builds its Krylov basis vector by vector in candle ops and decides on the host,
//! after each vector, whether to orthogonalise once more or to stop at a breakdown. That is a dozen
//! small operations and one device read per vector: on a GPU the Krylov loop waits for the host
//! dozens of times per call, and on the CPU each small operation allocates. For an operator that is
//! one weighted gather ([`GatherPattern`] with per-row weights, the Toeplitz generator with one
//! factor) this module runs the same process as one operation:
//!
//! - Arnoldi with classical Gram–Schmidt, a second pass when the first keeps less than `1/sqrt(2)`
//!   of the norm (the DGKS criterion), a breakdown when `||p|| <= threshold` or after `n` vectors;
//! - the product `A v_m` that Expokit's error estimate needs, after `m` steps without breakdown;
//! - the result: the basis as interleaved real rows `(2 (m + 2), n)` on the device, and on the host
//!   the projected matrix and the process's numbers ([`ArnoldiBasis`]), read back in one transfer.
//!
//! The process itself is a kernel of [`kernels`](crate::kernels): on the CPU on slices (the
//! matrix-vector products are the gather kernel's, in parallel above a work threshold); on a CUDA
//! device one thread block runs the whole process (`src/kernels/arnoldi.cu`), for
//! `n <= CUDA_MAX_N`. The CPU code is the reference of the CUDA kernel (same layout, same
//! decisions); tests compare the two on each compiled device. The basis
//! is not differentiable: [`crate::expv`](fn@crate::expv) takes this path only when no gradient is asked for.
//!
//! ```
//! use std::sync::Arc;
//! use candle_core::{DType, Device, Tensor};
//! use koopman_core::{IndexSet, LinearOperator, ToeplitzGenerator};
//!
//! # fn main() -> koopman_core::Result<()> {
//! let n = Arc::new(IndexSet::cube(3, 2)?.without_origin()?);
//! let m = Arc::new(IndexSet::product_of_ranges(&[(-1, 1), (-1, 1), (-1, 1)])?.without_origin()?);
//! let op = ToeplitzGenerator::random(n.clone(), vec![m], 0.1, 1.0, 3, DType::F64, &Device::Cpu)?;
//! let v = Tensor::ones((2, n.len()), DType::F64, &Device::Cpu)?; // Re and Im rows
//! let basis = op.fused_arnoldi(&v, 10, 1e-12).expect("one gather")?;
//! assert_eq!(basis.steps, 10);
//! // Hessenberg: the subdiagonal entries are the norms before normalisation.
//! assert!(basis.entry(1, 0).re > 0.0 && basis.entry(1, 0).im == 0.0);
//! # Ok(()) }
//! ```

use crate::complex::c64;
use crate::error::{CoreError, Result};
use crate::gather::GatherPattern;
use crate::kernels::arnoldi::{arnoldi_cpu, projected_len, INFO};
use crate::kernels::gather::{dispatch_float, slice};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor, WithDType};

/// Largest Krylov dimension of the fused process (the CUDA kernel's shared-memory tables).
pub const MAX_DIM: usize = 64;

/// Largest operator dimension for which the CUDA kernel (one thread block) is used; larger
/// operators keep the step-by-step path, whose products fill the whole GPU.
pub const CUDA_MAX_N: usize = 16_384;

/// A Krylov basis built by [`GatherPattern::arnoldi`].
#[derive(Clone, Debug)]
pub struct ArnoldiBasis {
    /// The basis as real rows `(2 (m + 2), n)` on the operator's device: row `2i` is `Re v_i`, row
    /// `2i + 1` is `Im v_i`, for `i <= steps` (without breakdown) or `i < steps` (with one).
    pub rows: Tensor,
    /// `H` `((m + 1) x m`, column-major): `H[i, j]` for `i <= j + 1 <= steps`.
    projected: Vec<c64>,
    /// The Krylov dimension asked for.
    pub m: usize,
    /// Arnoldi steps taken (`m` unless a breakdown came first).
    pub steps: usize,
    /// `||v||` of the start vector (the basis starts at `v / beta`).
    pub beta: f64,
    /// `||A v_m||` after `m` steps without breakdown (Expokit's error estimate), else 0.
    pub avnorm: f64,
    /// The norm of the last orthogonalised vector (`H[steps, steps - 1]`; the residual at a
    /// breakdown).
    pub last_norm: f64,
    /// Whether the Krylov space became invariant (`||p|| <= threshold` or `steps = n`).
    pub breakdown: bool,
    /// Vectors that took the second Gram–Schmidt pass.
    pub reorthogonalized: usize,
}

impl ArnoldiBasis {
    /// `H[i, j]` of the projected matrix (`i <= j + 1`, `j < steps`).
    pub fn entry(&self, i: usize, j: usize) -> c64 {
        self.projected[j * (self.m + 1) + i]
    }
}

impl GatherPattern {
    /// The Arnoldi process of the gather operator with per-row weights `w` `(n, K, 2)` from the
    /// start vector `v` given as real rows `(2, n)`: up to `m <= MAX_DIM` Krylov vectors, a
    /// breakdown when a new vector's norm is at most `threshold`. One custom op; not
    /// differentiable. Errors: shapes, dtypes, devices (as [`GatherPattern::apply`]), `m` out of
    /// range, a CUDA operator above [`CUDA_MAX_N`], and a non-finite start vector or product.
    pub fn arnoldi(
        &self,
        v: &Tensor,
        w: &Tensor,
        m: usize,
        threshold: f64,
    ) -> Result<ArnoldiBasis> {
        let n = self.len();
        if v.dims() != [2, n] {
            return Err(CoreError::ShapeMismatch(format!(
                "Arnoldi start vector has shape {:?}, expected the rows (2, {n})",
                v.dims()
            )));
        }
        self.check(&v.reshape((1, n, 2))?, w)?;
        if w.dims()[0] != n {
            return Err(CoreError::ShapeMismatch(format!(
                "the fused Arnoldi process needs per-row weights ({n}, {}, 2), got {:?}",
                self.columns(),
                w.dims()
            )));
        }
        if m == 0 || m > MAX_DIM {
            return Err(CoreError::InvalidArgument(format!(
                "fused Arnoldi dimension must lie in 1..={MAX_DIM}, got {m}"
            )));
        }
        if !v.device().is_cpu() && n > CUDA_MAX_N {
            return Err(CoreError::Unsupported(format!(
                "the fused Arnoldi kernel runs in one thread block, for n <= {CUDA_MAX_N} (got {n})"
            )));
        }
        if !(threshold >= 0.0 && threshold.is_finite()) {
            return Err(CoreError::InvalidArgument(format!(
                "Arnoldi breakdown threshold must be finite and >= 0, got {threshold}"
            )));
        }
        let op = ArnoldiOp {
            pattern: self.clone(),
            m,
            threshold,
        };
        let out = v
            .detach()
            .contiguous()?
            .apply_op2_no_bwd(&w.detach().contiguous()?, &op)?;
        let head = INFO + projected_len(m);
        // Only the head is read back (a view's own copy: `to_vec1` of a CUDA view copies the
        // whole buffer).
        let info = out
            .narrow(0, 0, head)?
            .force_contiguous()?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        if info[6] != 0.0 {
            return Err(CoreError::NonFinite(
                "Krylov vector (the start vector or the operator overflowed)".into(),
            ));
        }
        let projected = info[INFO..]
            .chunks_exact(2)
            .map(|p| c64::new(p[0], p[1]))
            .collect();
        Ok(ArnoldiBasis {
            rows: out
                .narrow(0, head, 2 * (m + 2) * n)?
                .reshape((2 * (m + 2), n))?,
            projected,
            m,
            steps: info[0] as usize,
            beta: info[1],
            avnorm: info[2],
            last_norm: info[3],
            breakdown: info[4] != 0.0,
            reorthogonalized: info[5] as usize,
        })
    }
}

/// The whole process as one op: `(v (2, n), w (n, K, 2)) -> (INFO + 2 m (m + 1) + 2 (m + 2) n,)`
/// (the layout of [`crate::kernels`]' Arnoldi process).
struct ArnoldiOp {
    pattern: GatherPattern,
    m: usize,
    threshold: f64,
}

impl CustomOp2 for ArnoldiOp {
    fn name(&self) -> &'static str {
        "koopman-fused-arnoldi"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let p = &self.pattern;
        dispatch_float!(s1.dtype(), "fused Arnoldi", |T| {
            let (v, w) = (slice(s1, l1)?, slice(s2, l2)?);
            // The whole process on a worker of the thread pool: its parallel products and
            // projections then start where the pool already runs, not by a hand-off from (and
            // back to) a foreign thread for each of the m products.
            let out = rayon::scope(|_| arnoldi_cpu::<T>(v, w, p, self.m, self.threshold));
            let len = out.len();
            Ok((T::to_cpu_storage_owned(out), Shape::from(len)))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        crate::kernels::arnoldi::cuda::arnoldi(
            &self.pattern,
            self.m,
            self.threshold,
            s1,
            l1,
            s2,
            l2,
        )
    }
}
