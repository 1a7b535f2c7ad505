//! # koopman-bench
//!
//! The library behind the `koopman` and `koopman-bench` commands ([`cli`]): the user commands
//! on a user's files ([`dmd_command`], [`fit_command`], [`replace_command`]), a registry of paper
//! reproductions
//! ([`experiments`]), each run at smoke, quick or full (paper) sizes on a chosen device and reported as a
//! paper-versus-measured table in Markdown and JSON ([`report`]), and timed performance runs whose
//! ratios are measured in one process ([`perf`]).
//!
//! ```
//! use koopman_bench::{experiments, report::RunContext, Size};
//! # fn main() -> Result<(), koopman_bench::BenchError> {
//! let ctx = RunContext::new(Size::Quick, candle_core::Device::Cpu, "reports".into());
//! // Each experiment states its sizes by name; the run's size picks one row.
//! let sizes = experiments::p000_stepping::de::SIZES.at(ctx.size);
//! assert_eq!((sizes.seeds, sizes.divisor), (3, 8));
//! for exp in experiments::registry() {
//!     println!("{} (paper {}): {}", exp.name(), exp.paper().number(), exp.description());
//! }
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod cli;
pub mod device;
pub mod dmd_command;
pub mod experiments;
pub mod fit_command;
pub mod perf;
pub mod plot;
pub mod provenance;
pub mod replace_command;
pub mod report;
pub mod results;

/// How large the experiments are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Size {
    /// Tiny sizes that exercise every code path of every experiment in about a minute; a run
    /// check, not a reproduction: figures are not expected to meet the papers'.
    Smoke,
    /// Reduced sizes: the whole `reproduce` run finishes in minutes on two cores.
    Quick,
    /// The papers' sizes.
    Full,
}

/// Errors of the bench crate.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An error from koopman-core.
    #[error(transparent)]
    Core(#[from] koopman_core::CoreError),
    /// An error from koopman-layers.
    #[error(transparent)]
    Layers(#[from] koopman_layers::LayersError),
    /// An error from koopman-train.
    #[error(transparent)]
    Train(#[from] koopman_train::TrainError),
    /// An error from candle.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// Serialising a report failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A bad command-line value or experiment name.
    #[error("{0}")]
    Usage(String),
    /// A requested device is not available in this build or on this machine.
    #[error("device: {0}")]
    Device(String),
    /// An optional peer (another tool timed beside ours) failed or wrote a bad report.
    #[error("peer: {0}")]
    Peer(String),
}

/// Result alias for the bench crate.
pub type Result<T> = std::result::Result<T, BenchError>;
