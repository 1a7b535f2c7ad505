//! Koopman analysis of training (paper 001, SPEC section 4.2).
//!
//! | module | what it holds |
//! |---|---|
//! | [`depth`] | frequencies of a sampled signal by FFT and Hankel DMD; the depth rule `gamma = (6 f)^2`, `L = min{l : rho^l gamma_0 >= gamma_max}` |
//! | [`observer`] | [`TrainingObserver`](observer::TrainingObserver) (per-epoch weights and loss, DMD_RRR spectra) and the [`ConvergenceMonitor`](observer::ConvergenceMonitor) |
//! | [`pruning`] | Koopman-mode pruning, Algorithms 1 and 2, and the [`PruningMask`](pruning::PruningMask) re-applied after every optimizer step |
//! | [`sobolev`] | negative-Sobolev losses 1 and 2 (DFT by matmul), the network with per-layer auxiliary outputs |

pub mod depth;
pub mod hsvr;
pub mod observer;
pub mod pruning;
pub mod sobolev;
