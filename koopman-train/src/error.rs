//! The error type of koopman-train.
//!
//! ```
//! use koopman_train::TrainError;
//! let e = TrainError::InvalidArgument("t1 = 10 must be below t2 = 5".into());
//! assert!(e.to_string().contains("t1"));
//! let core: TrainError = koopman_core::CoreError::Format("truncated".into()).into();
//! assert!(matches!(core, TrainError::Core(_)));
//! ```

/// Everything that can go wrong in koopman-train.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// An error from koopman-core (estimators, spectra, files, model loading).
    #[error(transparent)]
    Core(#[from] koopman_core::CoreError),
    /// An error raised by candle.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// An argument outside its admissible range (t1 >= t2, epsilon < 0, a delay longer than the
    /// signal, a learning rate <= 0, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Too few recorded snapshots for what was asked (a partition larger than the snapshot count,
    /// fewer snapshots than the delay).
    #[error("not enough data: {0}")]
    NotEnoughData(String),
    /// A name (parameter, partition, layer) the model does not have.
    #[error("unknown name: {0}")]
    UnknownName(String),
    /// Data containing NaN or an infinite value.
    #[error("non-finite value (NaN or Inf) in {0}")]
    NonFinite(String),
    /// Arguments that disagree in shape or dimension.
    #[error("shape mismatch: {0}")]
    ShapeMismatch(String),
    /// Reading or writing JSON failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// Result alias for koopman-train.
pub type Result<T> = std::result::Result<T, TrainError>;
