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
    /// An error from koopman-core (numerics, operators, files, model loading).
    #[error(transparent)]
    Core(#[from] koopman_core::CoreError),
    /// An error raised by candle.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// An argument is outside its admissible range (a layer index, a delay or a rank too large
    /// for the data, J = 0, a learning rate <= 0, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A saved model's metadata or tensors are inconsistent.
    #[error("bad model file: {0}")]
    Format(String),
    /// Reading or writing JSON metadata failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// Data outside the declared range of the torus normalisation.
    #[error("data out of range: {0}")]
    OutOfRange(String),
    /// Data containing NaN or an infinite value.
    #[error("non-finite value (NaN or Inf) in {0}")]
    NonFinite(String),
    /// Arguments that disagree in shape or dimension (e.g. an index set of the wrong dimension).
    #[error("shape mismatch: {0}")]
    ShapeMismatch(String),
    /// A model would need more memory than its limit (refused before allocating; see
    /// [`crate::memory`]).
    #[error(
        "the model needs about {:.1} GB (|N| = {n}, {offsets} offsets per row, J = {layers} \
         layers), above the limit of {:.1} GB: lower the radius of N (|N|), the number of \
         layers, or raise the memory limit",
        *needed as f64 / 1e9,
        *limit as f64 / 1e9
    )]
    MemoryLimit {
        /// Estimated bytes.
        needed: u64,
        /// The limit in bytes (the memory available, or the one set).
        limit: u64,
        /// `|N|`.
        n: usize,
        /// Offsets per row over all factors.
        offsets: usize,
        /// Layers `J`.
        layers: usize,
    },
}

/// Result alias for koopman-layers.
pub type Result<T> = std::result::Result<T, LayersError>;
