//! # koopman-train
//!
//! Koopman operator theory applied to training (SPEC section 4):
//!
//! - partitioned Koopman stepping that accelerates ordinary candle MLP training (paper 000);
//! - Koopman analysis of training dynamics: convergence monitoring, Koopman-mode pruning, depth
//!   from spectra, negative-Sobolev losses (paper 001); comparison of iterative algorithms by their
//!   Koopman spectra (paper 004).
//!
//! This crate builds on koopman-core's estimators and spectra.
//!
//! [`analysis`] holds the training analysis of paper 001: the observer and convergence monitor,
//! Koopman-mode pruning, depth from spectra and the negative-Sobolev losses.
//!
//! Koopman stepping of recorded weights (a fit over snapshots `0..=9`, then ten steps of the
//! fitted operator instead of ten optimizer steps):
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use koopman_train::stepping::{fit, Evolution, FitConfig, PartitionPlan, PartitionSpec, Recorder};
//!
//! # fn main() -> koopman_train::Result<()> {
//! let mut rec = Recorder::with_layout(vec![("w".into(), vec![2])])?;
//! for t in 0..10 {
//!     rec.push(t, &[1.0 + 0.01 * t as f64, 2.0 - 0.02 * t as f64])?;
//! }
//! let plan = PartitionPlan::build(rec.params(), &PartitionSpec::Network)?;
//! let k = fit(&rec, &plan, 0, 9, &FitConfig::default(), &Device::Cpu)?;
//! let w = k.evolve(&Tensor::new(rec.snapshot(9)?, &Device::Cpu)?, 10, Evolution::Step)?;
//! assert!((w.to_vec1::<f64>()?[0] - 1.19).abs() < 1e-9);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod analysis;
pub mod error;
pub mod stepping;

pub use error::{Result, TrainError};
pub use koopman_core;
