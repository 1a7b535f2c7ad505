//! # koopman-core
//!
//! The numerical core of the koopman workspace: complex tensors on candle, linear operators
//! (dense and the structured Toeplitz generator of deep Koopman-layered models), the dense matrix
//! exponential and Krylov exponential actions `exp(tA) v` with error control, and Koopman/DMD
//! estimators with spectral comparisons (decompositions on the host with faer). The tensor code is written
//! in candle ops on a caller-chosen [`candle_core::Device`] and dtype, so gradients flow through
//! operators and exponentials alike.
//!
//! | module | what it holds |
//! |---|---|
//! | [`complex`] | [`ComplexTensor`]: a pair of real tensors `(re, im)` with differentiable ops |
//! | [`index_set`] | finite multi-index sets over `Z^d` (boxes with exclusions) |
//! | [`io`] | atomic file writes, `.npy` read/write |
//! | [`kernels`] | the compute kernels apart from the algorithms: SIMD host loops, the streamed LQ factorisation, the gather and Arnoldi kernels with their CUDA launches |
//! | [`gather`] | the one-pass weighted-gather kernels, CPU and CUDA (candle custom ops with backward), and the fused Taylor action |
//! | [`nn`] | [`Mlp`]: Linear + activation stacks, PyTorch-named safetensors I/O, AdamW mini-batch training (apart from the numerics) |
//! | [`data`] | the MNIST IDX loader (gzip or raw, with the bundled subset) and the seeded Yin-Yang generator |
//! | [`linalg`] | faer helpers: thin SVD, eigen, QR, SVD least squares, tensor <-> matrix |
//! | [`dmd`] | Koopman/DMD estimators (finite section, exact DMD, DMD_RRR, Hankel, EDMD, kernel DMD) returning one [`KoopmanFit`] |
//! | [`spectrum`] | [`Spectrum`]: unit-circle distances, Wasserstein-1 between spectra, subset matching, permutation test |
//! | [`operator`] | the [`LinearOperator`] trait and [`DenseOperator`] |
//! | [`toeplitz`] | [`ToeplitzGenerator`]: `L = t sum_k A^k_1 ... A^k_R D_k`, applied by gathers |
//! | [`validate`] | shared checks of settings (`positive`, `non_negative`), failing with a typed [`CoreError::OutOfRange`] |
//! | [`matrix_exp`] | dense `exp(A)` by scaling and squaring (Taylor, Paterson–Stockmeyer) |
//! | [`arnoldi`] | the fused Arnoldi process of a one-gather operator (one custom op per Krylov basis, CPU and CUDA) |
//! | [`expv`](mod@expv) | Krylov `exp(tA) v`: Arnoldi/Lanczos, sub-stepping to a tolerance, a report |
//! | [`taylor`] | Taylor `exp(tA) v` with an a-priori plan (no host synchronisation): fused, dense or term by term |
//! | [`reference`] | (feature `expm`) the `expm` crate as an independent dense reference |
//! | [`testing`] | the `test_device!` macro: one test body, one test per compiled device |
//!
//! ```
//! use std::sync::Arc;
//! use candle_core::{DType, Device};
//! use koopman_core::{expv, ComplexTensor, ExpvConfig, IndexSet, ToeplitzGenerator};
//!
//! # fn main() -> koopman_core::Result<()> {
//! let dev = Device::Cpu;
//! let n = Arc::new(IndexSet::cube(3, 2)?.without_origin()?);
//! let m = Arc::new(IndexSet::product_of_ranges(&[(-2, 2), (-2, 2), (-1, 1)])?.without_origin()?);
//! let generator = ToeplitzGenerator::random(n.clone(), vec![m], 0.05, 1.0, 1, DType::F64, &dev)?;
//! let v = ComplexTensor::eye(n.len(), DType::F64, &dev)?.narrow(1, 0, 1)?;
//! let (w, report) = expv(&generator, 1.0, &v, &ExpvConfig { tol: 1e-10, ..Default::default() })?;
//! assert_eq!(w.dims(), &[n.len(), 1]);
//! assert!(report.error_estimate <= 1e-10);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod arnoldi;
pub mod complex;
pub mod data;
pub mod dmd;
pub mod error;
pub mod expv;
pub mod gather;
pub mod index_set;
pub mod io;
pub mod kernels;
pub mod linalg;
pub mod matrix_exp;
pub mod nn;
pub mod operator;
pub mod parallel;
#[cfg(feature = "expm")]
pub mod reference;
pub mod spectrum;
pub mod taylor;
pub mod testing;
pub mod toeplitz;
pub mod validate;

pub use candle_core;
pub use candle_nn;
pub use complex::{c64, ComplexTensor};
pub use dmd::KoopmanFit;
pub use error::{CoreError, Result};
pub use expv::{expv, expv_dense, ExpvConfig, ExpvReport, KrylovMethod};
pub use faer;
pub use index_set::IndexSet;
pub use matrix_exp::expm;
pub use nn::{Activation, Mlp};
pub use operator::{DenseOperator, LinearOperator};
pub use spectrum::Spectrum;
pub use taylor::{expv_taylor, TaylorConfig, TaylorPath, TaylorPlan, TaylorReport};
pub use toeplitz::{GatherKernel, ToeplitzGenerator, ToeplitzStructure};
