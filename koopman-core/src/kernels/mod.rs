//! The compute kernels of the workspace, apart from the algorithms that call them: host loops in
//! the CPU's vector lanes and the streamed LQ factorisation.
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

pub mod dense;
pub(crate) mod householder;
pub(crate) mod simd;
pub(crate) mod streamed_lq;

/// Seeded test data for the kernels' tests.
#[cfg(test)]
pub(crate) mod testing {
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
}
