//! The error type of koopman-layers.
//!
//! ```
//! use koopman_layers::LayersError;
//! let e = LayersError::InvalidArgument("layer index 7 out of range".into());
//! assert!(e.to_string().contains("out of range"));
//! let core: LayersError = koopman_core::CoreError::Format("truncated".into()).into();
//! assert!(matches!(core, LayersError::Core(_)));
//! ```

/// Everything that can go wrong in koopman-layers.
#[derive(Debug, thiserror::Error)]
pub enum LayersError {
    /// An error from koopman-core (numerics, files, model loading).
    #[error(transparent)]
    Core(#[from] koopman_core::CoreError),
    /// An error raised by candle.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// An argument is outside its admissible range (a layer index, a delay or a rank too large
    /// for the data, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A saved model's metadata or tensors are inconsistent.
    #[error("bad model file: {0}")]
    Format(String),
    /// Reading or writing JSON metadata failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// Result alias for koopman-layers.
pub type Result<T> = std::result::Result<T, LayersError>;
