//! The error type of koopman-core.

/// Everything that can go wrong in koopman-core.
///
/// Bad input is reported with a message that names the argument and the problem; numerical
/// failures (non-convergence, failed decompositions) are reported rather than hidden.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// An error raised by candle (tensor operations, devices, safetensors).
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// Two arguments disagree in shape or dimension.
    #[error("shape mismatch: {0}")]
    ShapeMismatch(String),
    /// An argument contains NaN or an infinite value.
    #[error("non-finite value (NaN or Inf) in {0}")]
    NonFinite(String),
    /// An argument is outside its admissible range (a tolerance <= 0, a Krylov dimension of 0, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A number outside its allowed range (see [`crate::validate`]): names the setting or
    /// argument, the value given and what it must be.
    #[error("{name} must be {requirement}, got {value}")]
    OutOfRange {
        /// The setting or argument.
        name: String,
        /// The value given.
        value: f64,
        /// What it must be (`"finite and > 0"`, ...).
        requirement: &'static str,
    },
    /// A computation would need more memory than its limit allows (refused before allocating).
    #[error("too large: {0}")]
    TooLarge(String),
    /// Data is empty where at least one element is needed.
    #[error("empty input: {0}")]
    Empty(String),
    /// An iterative method did not meet its target.
    #[error("no convergence: {0}")]
    NoConvergence(String),
    /// The operation is not provided by this implementation (e.g. an adjoint that is not available).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A dense decomposition (SVD, eigen, QR) failed.
    #[error("decomposition failed: {0}")]
    Decomposition(String),
    /// A file's contents are malformed (wrong magic number, truncated data, missing or
    /// misshapen tensors in a model file).
    #[error("bad file format: {0}")]
    Format(String),
    /// Reading or writing a file failed.
    #[error("i/o on {path}: {source}")]
    Io {
        /// The file involved.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for koopman-core.
pub type Result<T> = std::result::Result<T, CoreError>;
