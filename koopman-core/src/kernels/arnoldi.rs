//! The fused Arnoldi process of a weighted-gather operator on the CPU, and its CUDA launch.
//!
//! What: up to `m` steps of Arnoldi with classical Gram–Schmidt for the operator `A` of a
//! [`GatherPattern`] with per-row weights: a second Gram–Schmidt pass when the first keeps less
//! than `1/sqrt(2)` of the norm (the DGKS criterion), a breakdown when `||p|| <= threshold` or
//! after `n` vectors, and the product `A v_m` for Expokit's error estimate after `m` steps
//! without breakdown. One output buffer holds everything: [`INFO`] numbers (steps, `beta`,
//! `||A v_m||`, the last norm, breakdown, re-orthogonalisations, a non-finite flag), the
//! projected matrix `H` (`(m + 1) x m`, column-major complex pairs), then the basis as real rows
//! (`2 (m + 2)` rows of `n`: `Re v_i`, `Im v_i`). [`crate::arnoldi`] wraps it as a custom op.
//!
//! How: on the CPU the products are the CPU gather kernel's and the Gram–Schmidt passes run in
//! chunks of positions on rayon's pool above a work threshold (four partial sums per dot
//! product); this is the reference of `koopman_arnoldi` in `arnoldi.cu`, where one thread block
//! runs the whole process (same layout, same decisions).

use super::gather::{Gather, WeightMode};
use crate::complex::c64;
use crate::gather::GatherPattern;
use candle_core::WithDType;
use rayon::prelude::*;

/// Values before the projected matrix in the op's output (see `arnoldi.cu`).
pub(crate) const INFO: usize = 8;

/// A second Gram–Schmidt pass when the first keeps less than this fraction of the norm.
const REORTHOGONALIZE_BELOW: f64 = std::f64::consts::FRAC_1_SQRT_2;

/// Work (complex multiply-adds) above which the CPU Gram–Schmidt runs in parallel.
const PARALLEL_WORK: usize = 1 << 14;

/// Positions per parallel Gram–Schmidt task.
const CHUNK: usize = 512;

/// Values of the projected matrix `(m + 1) x m` (complex pairs).
pub(crate) fn projected_len(m: usize) -> usize {
    2 * m * (m + 1)
}

/// The CPU process (the reference of `koopman_arnoldi` in `arnoldi.cu`), same output layout.
pub(crate) fn arnoldi_cpu<T: WithDType>(
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
        Gather {
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

/// The CUDA launch of `koopman_arnoldi_*` (`arnoldi.cu`).
#[cfg(feature = "cuda")]
pub(crate) mod cuda {
    use super::{projected_len, INFO};
    use crate::gather::GatherPattern;
    use crate::kernels::gather_cuda::{address, alloc, base_address, table_address, Kernels};
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::WrapErr;
    use candle_core::{CudaStorage, DType, Layout, Shape, WithDType};

    const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/arnoldi.ptx"));
    const MODULE: &str = "koopman_arnoldi";
    /// `ARNOLDI_THREADS` of the kernel (one block).
    const THREADS: u32 = 512;

    /// The whole process in one thread block; output as [`arnoldi_cpu`](super::arnoldi_cpu).
    pub(crate) fn arnoldi(
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
        crate::kernels::gather::dispatch_float!(s1.dtype(), "the fused Arnoldi kernel", |T| {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::{complex_values, dense_apply, dense_gather, pack, shift_tables};

    /// The process's output, parsed: `(info, H (m + 1) x m, basis vectors)`.
    fn parse(out: &[f64], n: usize, m: usize) -> (Vec<f64>, Vec<Vec<c64>>, Vec<Vec<c64>>) {
        let info = out[..INFO].to_vec();
        let h = out[INFO..INFO + projected_len(m)]
            .chunks_exact(2 * (m + 1))
            .map(|col| col.chunks_exact(2).map(|p| c64::new(p[0], p[1])).collect())
            .collect();
        let basis = out[INFO + projected_len(m)..]
            .chunks_exact(2 * n)
            .map(|v| (0..n).map(|l| c64::new(v[l], v[n + l])).collect())
            .collect();
        (info, h, basis)
    }

    fn dot(a: &[c64], b: &[c64]) -> c64 {
        a.iter().zip(b).map(|(p, q)| p.conj() * q).sum()
    }

    /// The CPU process against the dense matrix of its gather: `beta = ||v||`, an orthonormal
    /// basis, the Arnoldi relation `A v_j = sum_{i <= j + 1} H[i, j] v_i`, and `A v_m` with its
    /// norm after `m` steps; a Krylov dimension above `n` stops at `n` with a breakdown. Sizes
    /// with parallel and serial Gram–Schmidt.
    #[test]
    fn arnoldi_process_satisfies_the_arnoldi_relation() {
        for (n, m) in [(40, 6), (40, 12), (700, 24), (5, 9)] {
            let shifts = [-3isize, -1, 0, 2, 5];
            let k = shifts.len();
            let (table, transpose) = shift_tables(n, &shifts);
            let w = complex_values(31, n * k);
            let a = dense_gather(&table, n, k, |i, c| w[i * k + c]);
            let pattern = GatherPattern::new(table, transpose, n, k).unwrap();
            let v = complex_values(32, n);
            let rows: Vec<f64> = v
                .iter()
                .map(|z| z.re)
                .chain(v.iter().map(|z| z.im))
                .collect();
            let out = arnoldi_cpu::<f64>(&rows, &pack(&w), &pattern, m, 1e-12);
            assert_eq!(out.len(), INFO + projected_len(m) + 2 * (m + 2) * n);
            let (info, h, basis) = parse(&out, n, m);
            let steps = info[0] as usize;
            let breakdown = info[4] != 0.0;
            assert_eq!(info[6], 0.0, "finite");
            assert_eq!((steps, breakdown), (m.min(n), m >= n), "n = {n}, m = {m}");
            let beta = dot(&v, &v).re.sqrt();
            assert!((info[1] - beta).abs() <= 1e-14 * beta);
            let tol = 1e-12;
            let kept = if breakdown { steps } else { steps + 1 };
            for i in 0..kept {
                for j in 0..kept {
                    let want = if i == j { 1.0 } else { 0.0 };
                    let err = (dot(&basis[i], &basis[j]) - want).norm();
                    assert!(
                        err <= tol,
                        "n = {n}, m = {m}: <v_{i}, v_{j}> off by {err:e}"
                    );
                }
            }
            let first: Vec<c64> = v.iter().map(|z| z / beta).collect();
            assert!(basis[0]
                .iter()
                .zip(&first)
                .all(|(p, q)| (p - q).norm() <= 1e-15));
            for j in 0..steps {
                let av = dense_apply(&a, &basis[j]);
                let top = if breakdown && j + 1 == steps {
                    j
                } else {
                    j + 1
                };
                let mut r = av.clone();
                for (i, vi) in basis.iter().enumerate().take(top + 1) {
                    r.iter_mut().zip(vi).for_each(|(p, q)| *p -= h[j][i] * q);
                }
                let err = r.iter().map(|z| z.norm()).fold(0.0, f64::max);
                assert!(err <= tol, "n = {n}, m = {m}, column {j}: {err:e}");
                assert!(h[j][j + 1].im == 0.0 && h[j][j + 1].re >= 0.0);
            }
            if !breakdown {
                let av = dense_apply(&a, &basis[m]);
                let err = av
                    .iter()
                    .zip(&basis[m + 1])
                    .map(|(p, q)| (p - q).norm())
                    .fold(0.0, f64::max);
                assert!(err <= tol, "A v_m: {err:e}");
                let norm = dot(&av, &av).re.sqrt();
                assert!((info[2] - norm).abs() <= 1e-12 * norm, "||A v_m||");
            }
        }
    }
}
