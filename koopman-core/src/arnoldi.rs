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
//! On the CPU it runs on slices (the matrix-vector products are the gather kernel's, in parallel
//! above a work threshold); on a CUDA device one thread block runs the whole process
//! (`src/kernels/arnoldi.cu`), for `n <= CUDA_MAX_N`. The CPU code is the reference of the CUDA
//! kernel (same layout, same decisions); tests compare the two on each compiled device. The basis
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
use crate::gather::{GatherPattern, WeightMode};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// Largest Krylov dimension of the fused process (the CUDA kernel's shared-memory tables).
pub const MAX_DIM: usize = 64;

/// Largest operator dimension for which the CUDA kernel (one thread block) is used; larger
/// operators keep the step-by-step path, whose products fill the whole GPU.
pub const CUDA_MAX_N: usize = 16_384;

/// Values before the projected matrix in the op's output (see `arnoldi.cu`).
const INFO: usize = 8;

/// A second Gram–Schmidt pass when the first keeps less than this fraction of the norm.
const REORTHOGONALIZE_BELOW: f64 = std::f64::consts::FRAC_1_SQRT_2;

/// Work (complex multiply-adds) above which the CPU Gram–Schmidt runs in parallel.
const PARALLEL_WORK: usize = 1 << 14;

/// Positions per parallel Gram–Schmidt task.
const CHUNK: usize = 512;

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

/// Values of the projected matrix `(m + 1) x m` (complex pairs).
fn projected_len(m: usize) -> usize {
    2 * m * (m + 1)
}

/// The whole process as one op: `(v (2, n), w (n, K, 2)) -> (INFO + 2 m (m + 1) + 2 (m + 2) n,)`.
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
        crate::gather::dispatch_float!(s1.dtype(), "fused Arnoldi", |T| {
            let (v, w) = (crate::gather::slice(s1, l1)?, crate::gather::slice(s2, l2)?);
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
        cuda::arnoldi(&self.pattern, self.m, self.threshold, s1, l1, s2, l2)
    }
}

/// The CPU process (the reference of `koopman_arnoldi` in `arnoldi.cu`), same output layout.
fn arnoldi_cpu<T: WithDType>(
    v: &[T],
    w: &[T],
    pattern: &GatherPattern,
    m: usize,
    threshold: f64,
) -> Vec<T> {
    let n = pattern.len();
    let k = pattern.columns();
    let head = INFO + projected_len(m);
    let mut out = vec![T::zero(); head + 2 * (m + 2) * n];
    let (info, rest) = out.split_at_mut(INFO);
    let (h, basis) = rest.split_at_mut(projected_len(m));
    let beta = norm(&v[..n], &v[n..]);
    let (mut steps, mut avnorm, mut last) = (0usize, 0.0, 0.0);
    let (mut breakdown, mut reorth, mut nonfinite) = (false, 0usize, false);
    // The product's input packed as complex pairs, and its packed output.
    let mut packed = vec![T::zero(); 2 * n];
    let mut product = vec![T::zero(); 2 * n];
    let mut apply = |basis: &mut [T], from: usize, to: usize| {
        for (l, p) in packed.chunks_exact_mut(2).enumerate() {
            p[0] = basis[2 * from * n + l];
            p[1] = basis[(2 * from + 1) * n + l];
        }
        crate::gather::Gather {
            y: Some(&packed),
            w,
            table: pattern.host_table(false),
            n,
            k,
            mode: WeightMode::PerRow,
            conj: false,
            scale_in: 1.0,
            base: None,
            scale_out: 1.0,
        }
        .run(&mut product);
        for (l, p) in product.chunks_exact(2).enumerate() {
            basis[2 * to * n + l] = p[0];
            basis[(2 * to + 1) * n + l] = p[1];
        }
    };
    if !beta.is_finite() {
        nonfinite = true;
    } else if beta > 0.0 {
        for (b, x) in basis[..2 * n].iter_mut().zip(v) {
            *b = T::from_f64(x.to_f64() / beta);
        }
        let mut hs = vec![c64::new(0.0, 0.0); m + 1];
        for j in 0..m {
            apply(basis, j, j + 1);
            let (done, p) = basis.split_at_mut(2 * (j + 1) * n);
            let (pre, pim) = p[..2 * n].split_at_mut(n);
            let before = norm(pre, pim);
            hs[..=j].fill(c64::new(0.0, 0.0));
            project(done, pre, pim, n, j + 1, &mut hs);
            let mut s = norm(pre, pim);
            if s < REORTHOGONALIZE_BELOW * before {
                project(done, pre, pim, n, j + 1, &mut hs);
                s = norm(pre, pim);
                reorth += 1;
            }
            let column = &mut h[2 * j * (m + 1)..2 * (j + 1) * (m + 1)];
            for (i, x) in hs[..=j].iter().enumerate() {
                column[2 * i] = T::from_f64(x.re);
                column[2 * i + 1] = T::from_f64(x.im);
            }
            column[2 * (j + 1)] = T::from_f64(s);
            steps = j + 1;
            last = s;
            if !s.is_finite() {
                nonfinite = true;
                break;
            }
            if s <= threshold || j + 1 == n {
                breakdown = true;
                break;
            }
            for x in pre.iter_mut().chain(pim.iter_mut()) {
                *x = T::from_f64(x.to_f64() / s);
            }
        }
        if !breakdown && !nonfinite {
            apply(basis, m, m + 1);
            let p = &basis[2 * (m + 1) * n..];
            avnorm = norm(&p[..n], &p[n..]);
        }
    }
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    for (slot, x) in info.iter_mut().zip([
        steps as f64,
        beta,
        avnorm,
        last,
        flag(breakdown),
        reorth as f64,
        flag(nonfinite),
        0.0,
    ]) {
        *slot = T::from_f64(x);
    }
    out
}

/// `||(re, im)||` in f64.
fn norm<T: WithDType>(re: &[T], im: &[T]) -> f64 {
    let sum = |x: &[T]| x.iter().map(|a| a.to_f64() * a.to_f64()).sum::<f64>();
    (sum(re) + sum(im)).sqrt()
}

/// One classical Gram–Schmidt pass of `p = (pre, pim)` against the first `count` vectors of
/// `basis` (real rows): `h = V^* p`, `p -= V h`, `h` added to `hs`.
fn project<T: WithDType>(
    basis: &[T],
    pre: &mut [T],
    pim: &mut [T],
    n: usize,
    count: usize,
    hs: &mut [c64],
) {
    let parallel = count * n >= PARALLEL_WORK;
    // conj(v_i) . p over positions first..first + len, four partial sums per part so that the
    // additions do not wait for each other.
    let dots = |first: usize, pre: &[T], pim: &[T]| -> Vec<c64> {
        let len = pre.len();
        (0..count)
            .map(|i| {
                let vre = &basis[2 * i * n + first..2 * i * n + first + len];
                let vim = &basis[(2 * i + 1) * n + first..(2 * i + 1) * n + first + len];
                let (mut re, mut im) = ([0.0f64; 4], [0.0f64; 4]);
                let lanes = len - len % 4;
                for l in (0..lanes).step_by(4) {
                    for q in 0..4 {
                        let (a, b) = (vre[l + q].to_f64(), vim[l + q].to_f64());
                        let (x, y) = (pre[l + q].to_f64(), pim[l + q].to_f64());
                        re[q] += a * x + b * y;
                        im[q] += a * y - b * x;
                    }
                }
                for l in lanes..len {
                    let (a, b) = (vre[l].to_f64(), vim[l].to_f64());
                    let (x, y) = (pre[l].to_f64(), pim[l].to_f64());
                    re[0] += a * x + b * y;
                    im[0] += a * y - b * x;
                }
                c64::new(re.iter().sum(), im.iter().sum())
            })
            .collect()
    };
    let sum = |mut a: Vec<c64>, b: Vec<c64>| {
        a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        a
    };
    let h = if parallel {
        pre.par_chunks(CHUNK)
            .zip(pim.par_chunks(CHUNK))
            .enumerate()
            .map(|(c, (r, i))| dots(c * CHUNK, r, i))
            .reduce(|| vec![c64::new(0.0, 0.0); count], sum)
    } else {
        dots(0, pre, pim)
    };
    // p -= V h, one basis vector at a time (element-wise over positions, so it vectorises).
    let update = |first: usize, pre: &mut [T], pim: &mut [T]| {
        let len = pre.len();
        for (i, c) in h.iter().enumerate() {
            let vre = &basis[2 * i * n + first..2 * i * n + first + len];
            let vim = &basis[(2 * i + 1) * n + first..(2 * i + 1) * n + first + len];
            for (((x, y), a), b) in pre.iter_mut().zip(pim.iter_mut()).zip(vre).zip(vim) {
                let (a, b) = (a.to_f64(), b.to_f64());
                *x = T::from_f64(x.to_f64() - (a * c.re - b * c.im));
                *y = T::from_f64(y.to_f64() - (a * c.im + b * c.re));
            }
        }
    };
    if parallel {
        pre.par_chunks_mut(CHUNK)
            .zip(pim.par_chunks_mut(CHUNK))
            .enumerate()
            .for_each(|(c, (r, i))| update(c * CHUNK, r, i));
    } else {
        update(0, pre, pim);
    }
    hs.iter_mut().zip(&h).for_each(|(x, y)| *x += y);
}

/// The CUDA launch of `koopman_arnoldi_*` (`src/kernels/arnoldi.cu`).
#[cfg(feature = "cuda")]
mod cuda {
    use super::{projected_len, GatherPattern, INFO};
    use crate::gather::cuda::{address, alloc, base_address, table_address, Kernels};
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::WrapErr;
    use candle_core::{CudaStorage, DType, Layout, Shape, WithDType};

    const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/arnoldi.ptx"));
    const MODULE: &str = "koopman_arnoldi";
    /// `ARNOLDI_THREADS` of the kernel (one block).
    const THREADS: u32 = 512;

    pub(super) fn arnoldi(
        pattern: &GatherPattern,
        m: usize,
        threshold: f64,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let dev = &s1.device;
        let kernels = Kernels::new(dev, s1.dtype())?;
        let (n, k) = (pattern.len(), pattern.columns());
        let (table, _keep) = table_address(pattern, false)?;
        let len = INFO + projected_len(m) + 2 * (m + 2) * n;
        crate::gather::dispatch_float!(s1.dtype(), "the fused Arnoldi kernel", |T| {
            let (v, _) = address::<T>(s1, l1)?;
            let (w, _) = address::<T>(s2, l2)?;
            let mut out = alloc::<T>(dev, len)?;
            let o = base_address(&mut out, dev);
            let func = dev.get_or_load_custom_func(&kernels.name("arnoldi"), MODULE, PTX)?;
            let (n32, k32, m32) = (n as u32, k as u32, m as u32);
            let threshold = T::from_f64(threshold);
            let cfg = LaunchConfig {
                grid_dim: (1, 1, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = func.builder();
            b.arg(&v)
                .arg(&w)
                .arg(&table)
                .arg(&o)
                .arg(&n32)
                .arg(&k32)
                .arg(&m32)
                .arg(&threshold);
            // SAFETY: v holds 2 n values, w n k complex weights, the table n k entries, and
            // `out` the `len` values the kernel writes (its layout in arnoldi.cu).
            unsafe { b.launch(cfg) }.w()?;
            Ok((
                CudaStorage::wrap_cuda_slice(out, dev.clone()),
                Shape::from(len),
            ))
        })
    }
}
