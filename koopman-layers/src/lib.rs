//! # koopman-layers
//!
//! Koopman-operator layers for neural models (SPEC section 3):
//!
//! - deep Koopman-layered models with Toeplitz generators for non-autonomous time series
//!   (paper 003): each layer is `exp(L_j)` of a [`koopman_core::ToeplitzGenerator`], applied to
//!   Fourier coefficients with [`koopman_core::expv`](fn@koopman_core::expv);
//! - replacement of a trained MLP layer by a delay-embedded (Hankel DMD) linear operator
//!   (paper 002).
//!
//! | module | what it holds |
//! |---|---|
//! | [`replace`] | layer-scaling block, trajectories, Hankel-DMD fit, [`HybridModel`] with iterated and direct readouts, save/load |
//! | [`plot`] | decision-boundary plots (SVG) of 2-D classifiers such as Yin-Yang |
//! | [`error`] | [`LayersError`] |
//! | [`torus`] | the stored affine normalisation onto `[-a, a]^d` |
//! | [`observable`] | vector outputs through the extra torus coordinate |
//! | [`memory`] | the memory a model needs, estimated from its sizes before anything is allocated |
//! | [`model`] | [`KoopmanLayer`], [`DeepKoopmanLayered`] and its builder |
//! | [`train`] | losses, regularisers, Adam, checkpoints |
//! | [`analysis`] | layer / EDMD / kernel DMD eigenvalues, unit-circle SVG plots |
//! | [`series`] | multi-trajectory time series from `.npy` / CSV files (the input of `koopman fit`) |
//! | [`systems`] | the example systems (van der Pol, measure-preserving flow, damped forced oscillator) |
//!
//! ```
//! use std::sync::Arc;
//! use koopman_core::IndexSet;
//! use koopman_layers::model::DeepKoopmanLayeredBuilder;
//! use koopman_layers::systems::{van_der_pol_pairs, VanDerPol};
//! use koopman_layers::torus::TorusNormalization;
//! use koopman_layers::train::{rmse, SnapshotData, TrainConfig, Trainer};
//!
//! # fn main() -> koopman_layers::Result<()> {
//! let (x0, xt) = van_der_pol_pairs(&VanDerPol::default(), 50, 0.01, 0);
//! let all: Vec<f64> = x0.iter().chain(&xt).copied().collect();
//! let norm = TorusNormalization::fit(&all, 2, std::f64::consts::FRAC_PI_2)?;
//! let data = SnapshotData::new(vec![norm.forward(&x0)?, norm.forward(&xt)?], 2)?;
//! let n = Arc::new(IndexSet::cube(3, 2)?.without_origin()?);
//! let m = Arc::new(IndexSet::product_of_ranges(&[(-1, 1), (-1, 1), (-1, 1)])?.without_origin()?);
//! let config = TrainConfig { steps: 3, progress: false, ..Default::default() };
//! let mut trainer = Trainer::new(DeepKoopmanLayeredBuilder::new(2, n, vec![m]).layers(2), &config)?;
//! trainer.train(&data, &config)?;
//! let error = rmse(&trainer.model, &data.snapshots()[0], &data.snapshots()[1])?;
//! assert!(error.is_finite());
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod analysis;
pub mod error;
pub mod memory;
pub mod model;
pub mod observable;
pub mod plot;
pub mod replace;
pub mod series;
pub mod systems;
pub mod torus;
pub mod train;

pub use error::{LayersError, Result};
pub use koopman_core;
pub use model::{DeepKoopmanLayered, DeepKoopmanLayeredBuilder, ExpMode, KoopmanLayer};
pub use observable::{CoordinateFunction, VectorObservable};
pub use replace::{
    fit_hybrid, HybridConfig, HybridModel, ReadoutKind, ScaledLayer, ScalingConfig, ScalingInit,
    Trajectories,
};
pub use torus::TorusNormalization;
pub use train::{Loss, SnapshotData, TrainConfig, TrainReport, Trainer};
