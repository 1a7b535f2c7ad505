//! The error type of koopman-layers.

use koopman_core::CoreError;

/// Everything that can go wrong in koopman-layers.
#[derive(Debug, thiserror::Error)]
pub enum LayersError {
    /// An error from koopman-core (operators, `expv`, decompositions, i/o).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// An error raised by candle.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// Data outside the declared range of the torus normalisation.
    #[error("data out of range: {0}")]
    OutOfRange(String),
    /// Data containing NaN or an infinite value.
    #[error("non-finite value (NaN or Inf) in {0}")]
    NonFinite(String),
    /// Arguments that disagree in shape or dimension (e.g. an index set of the wrong dimension).
    #[error("shape mismatch: {0}")]
    ShapeMismatch(String),
    /// An argument outside its admissible range (J = 0, a learning rate <= 0, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Reading or writing a file failed.
    #[error("i/o on {path}: {message}")]
    Io {
        /// The file involved.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// Result alias for koopman-layers.
pub type Result<T> = std::result::Result<T, LayersError>;
