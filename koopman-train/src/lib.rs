//! # koopman-train
//!
//! Koopman operator theory applied to training (SPEC section 4):
//!
//! - partitioned Koopman stepping that accelerates ordinary candle MLP training (paper 000);
//! - Koopman analysis of training dynamics: convergence monitoring, Koopman-mode pruning, depth
//!   from spectra, negative-Sobolev losses (paper 001); comparison of iterative algorithms by their
//!   Koopman spectra (paper 004).
//!
//! This crate builds on koopman-core's estimators and spectra; the training tools are added by the
//! Koopman-stepping and training-analysis issues.
//!
//! [`analysis`] holds the training analysis of paper 001: the observer and convergence monitor,
//! Koopman-mode pruning, depth from spectra and the negative-Sobolev losses.

#![warn(missing_docs)]

pub mod analysis;
pub mod error;
pub mod stepping;

pub use error::{Result, TrainError};
pub use koopman_core;
