//! # koopman-layers
//!
//! Koopman-operator layers for neural models (SPEC section 3):
//!
//! - deep Koopman-layered models with Toeplitz generators for non-autonomous time series
//!   (paper 003): each layer is `exp(L_j)` of a [`koopman_core::ToeplitzGenerator`], applied to
//!   Fourier coefficients with [`koopman_core::expv`];
//! - replacement of a trained MLP layer by a delay-embedded (Hankel DMD) linear operator
//!   (paper 002).
//!
//! This crate builds on koopman-core's operators and Krylov exponentials; the models themselves
//! are added by the layered-model and layer-replacement issues.

pub use koopman_core;
