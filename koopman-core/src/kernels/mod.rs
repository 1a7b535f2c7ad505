//! The compute kernels of the workspace, apart from the algorithms that call them: host loops in
//! the CPU's vector lanes, the streamed LQ factorisation, and the weighted-gather and Arnoldi
//! kernels of the structured operators with their CUDA launches.
//!
//! Each kernel family is one file with its own tests against plain scalar references (textbook
//! loops, a dense matrix in place of a gather table, `L L^T = A A^T` for a factorisation):
//!
//! | file | kernels | used by |
//! |---|---|---|
//! | [`dense`] | `y = A x`, `C = A B` for small row-major blocks (faer from 16 columns, plain loops below), many small operators stepped together lane by lane | koopman-train's host evolution of Koopman operators |
//! | `simd` | dot products and `r -= s v` updates of f64 rows, one or four rows against one or two vectors, in [`pulp`] lanes | the Householder sweep |
//! | `householder` | the lower-triangular factor `L` of `A = L Q` by Householder reflectors in pairs, `Q` never formed | the streamed LQ |
//! | `streamed_lq` | `L` of `[X_g; Y_g]` for many groups of one trajectory, streamed chunk by chunk, split over the cores | [`finite_section_partitioned`](crate::dmd::finite_section_partitioned) |
//! | `gather` | the weighted gather `out[j, i] = sum_k w(i, k) y[j, T[i, k]]` and its weight gradient on the CPU (rayon) | the custom ops of [`gather`](crate::gather), the Toeplitz generator |
//! | `taylor` | the fused Taylor sweep `T_m(h A)^s v` of a gather operator and its adjoint sweep on the CPU | [`GatherPattern::taylor`](crate::gather::GatherPattern::taylor) |
//! | `arnoldi` | the fused Arnoldi process of a gather operator on the CPU, and its CUDA launch | [`arnoldi`](crate::arnoldi), [`expv`](fn@crate::expv) |
//! | `gather_cuda` | (feature `cuda`) the CUDA launches of `gather.cu` and the launch plumbing the Arnoldi kernel shares | as `gather` and `taylor` |
//!
//! The CUDA sources (`gather.cu`, `arnoldi.cu`, `common.cuh`) sit in this folder too; build.rs
//! compiles them to PTX with nvcc under the `cuda` feature.
//!
//! Host kernels that dispatch on the CPU's instruction set are [`pulp::WithSimd`] operations:
//! pulp calls `with_simd` inside a function compiled for the detected instruction set (AVX2 /
//! AVX-512 where present), and everything it inlines is compiled for that set too (a closure
//! passed to `dispatch` is not inlined there and would run as baseline SSE2).
//!
//! Only [`dense`] is public (koopman-train evolves its operators with it); the others are the
//! crate's own.

pub(crate) mod arnoldi;
pub mod dense;
pub(crate) mod gather;
#[cfg(feature = "cuda")]
pub(crate) mod gather_cuda;
pub(crate) mod householder;
pub(crate) mod simd;
pub(crate) mod streamed_lq;
pub(crate) mod taylor;

/// Seeded test data for the kernels' tests.
#[cfg(test)]
pub(crate) mod testing {
    use crate::complex::c64;

    /// A seeded generator of values uniform in `[-0.5, 0.5)` (a 64-bit LCG's top bits).
    pub(crate) fn uniform(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed;
        move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        }
    }

    /// `len` values of [`uniform`]`(seed)`.
    pub(crate) fn values(seed: u64, len: usize) -> Vec<f64> {
        let mut next = uniform(seed);
        (0..len).map(|_| next()).collect()
    }

    /// `len` complex values with parts from [`uniform`]`(seed)`.
    pub(crate) fn complex_values(seed: u64, len: usize) -> Vec<c64> {
        let v = values(seed, 2 * len);
        v.chunks_exact(2).map(|p| c64::new(p[0], p[1])).collect()
    }

    /// Complex values packed as `(re, im)` pairs, the gather kernels' layout.
    pub(crate) fn pack(z: &[c64]) -> Vec<f64> {
        z.iter().flat_map(|z| [z.re, z.im]).collect()
    }

    /// Packed `(re, im)` pairs as complex values.
    pub(crate) fn unpack(x: &[f64]) -> Vec<c64> {
        x.chunks_exact(2).map(|p| c64::new(p[0], p[1])).collect()
    }

    /// The gather tables of shifts over `n` positions: column `c` of row `i` reads position
    /// `i + shifts[c]` (`n`, read as zero, outside `0..n`). Returns `T` and its transpose `T'`
    /// (the opposite shifts), row-major `(n, K)`.
    pub(crate) fn shift_tables(n: usize, shifts: &[isize]) -> (Vec<u32>, Vec<u32>) {
        let table = |sign: isize| -> Vec<u32> {
            (0..n)
                .flat_map(|i| {
                    shifts.iter().map(move |&s| {
                        let src = i as isize + sign * s;
                        if (0..n as isize).contains(&src) {
                            src as u32
                        } else {
                            n as u32
                        }
                    })
                })
                .collect()
        };
        (table(1), table(-1))
    }

    /// The dense `n x n` matrix (row-major) of the gather over `table` with the weight
    /// `weight(i, c)` of entry `(i, c)`: `A[i, l] = sum_c weight(i, c) [T[i, c] = l]`.
    pub(crate) fn dense_gather(
        table: &[u32],
        n: usize,
        k: usize,
        weight: impl Fn(usize, usize) -> c64,
    ) -> Vec<c64> {
        let mut a = vec![c64::new(0.0, 0.0); n * n];
        for i in 0..n {
            for c in 0..k {
                let src = table[i * k + c] as usize;
                if src < n {
                    a[i * n + src] += weight(i, c);
                }
            }
        }
        a
    }

    /// `A x` for a dense row-major `n x n` matrix.
    pub(crate) fn dense_apply(a: &[c64], x: &[c64]) -> Vec<c64> {
        a.chunks_exact(x.len())
            .map(|row| row.iter().zip(x).map(|(p, q)| p * q).sum())
            .collect()
    }

    /// The conjugate transpose of a dense row-major `n x n` matrix.
    pub(crate) fn adjoint(a: &[c64], n: usize) -> Vec<c64> {
        (0..n * n)
            .map(|idx| a[(idx % n) * n + idx / n].conj())
            .collect()
    }

    /// The largest `|a_i - b_i|`.
    pub(crate) fn max_diff(a: &[c64], b: &[c64]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(p, q)| (p - q).norm())
            .fold(0.0, f64::max)
    }
}
