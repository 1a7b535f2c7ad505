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
//! | module | what it holds |
//! |---|---|
//! | [`replace`] | layer-scaling block, trajectories, Hankel-DMD fit, [`HybridModel`] with iterated and direct readouts, save/load |
//! | [`plot`] | decision-boundary plots (SVG) of 2-D classifiers such as Yin-Yang |
//! | [`error`] | [`LayersError`] |
//!
//! ```
//! use koopman_layers::replace::{HybridConfig, ReadoutKind};
//! let config = HybridConfig { delays: 4, rank: 16, readout: ReadoutKind::Direct, ..Default::default() };
//! assert_eq!(config.readout.name(), "direct");
//! ```

pub mod error;
pub mod plot;
pub mod replace;

pub use error::{LayersError, Result};
pub use koopman_core;
pub use replace::{
    fit_hybrid, HybridConfig, HybridModel, ReadoutKind, ScaledLayer, ScalingConfig, ScalingInit,
    Trajectories,
};
