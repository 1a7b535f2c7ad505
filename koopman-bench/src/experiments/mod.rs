//! The registry of reproductions run by `koopman-bench reproduce`.
//!
//! Each experiment runs a method of the workspace on the paper's problem (never writes a paper's
//! number down as a result) and returns a paper-versus-measured report. Later issues add their
//! experiments to [`registry`].

use crate::report::{ExperimentReport, Outcome, RunContext};
use crate::{BenchError, Result};
use indicatif::ProgressBar;

pub mod p000_stepping;
pub mod p001_analysis;
pub mod p002_replace;
pub mod p003_layered;
pub mod p004_conjugacy;
mod paper;
mod sizes;
pub mod verdict;

pub use paper::Paper;
pub use sizes::BySize;

/// The run's MNIST folder: `$KOOPMAN_DATA_DIR/mnist` when the data folder is set, else the
/// subset bundled with koopman-core ([`koopman_core::data::mnist::bundled_mnist_dir`]).
pub(crate) fn mnist_dir(ctx: &RunContext) -> Result<std::path::PathBuf> {
    Ok(match &ctx.data_dir {
        Some(d) => d.join("mnist"),
        None => koopman_core::data::mnist::bundled_mnist_dir()?,
    })
}

/// Why an MNIST experiment cannot run (a data folder without the IDX files, or the bundled subset
/// could not be written), or `None`.
pub(crate) fn mnist_missing(ctx: &RunContext) -> Option<String> {
    match mnist_dir(ctx) {
        Err(e) => Some(format!("the bundled MNIST could not be written: {e}")),
        Ok(d) if !koopman_core::data::mnist::mnist_files_present(&d) => {
            Some(format!("MNIST IDX files not found in {}", d.display()))
        }
        Ok(_) => None,
    }
}

/// Loads the run's MNIST ([`mnist_dir`]), cut to the first `limit = (train, test)` digits of
/// each split when given (the smoke size).
pub(crate) fn load_mnist(
    ctx: &RunContext,
    limit: Option<(usize, usize)>,
) -> Result<koopman_core::data::mnist::Mnist> {
    let data = koopman_core::data::mnist::load_mnist(mnist_dir(ctx)?, &ctx.device)?;
    Ok(match limit {
        Some((train, test)) => data.subset(train, test)?,
        None => data,
    })
}

/// Runs one experiment. It is skipped when its data is missing, except in a run where missing
/// data fails ([`RunContext::missing_data_fails`]: a smoke run under CI); an error fails it.
pub fn run_experiment(exp: &dyn Experiment, ctx: &RunContext, progress: &ProgressBar) -> Outcome {
    if let Some(reason) = exp.missing_data(ctx) {
        if ctx.missing_data_fails() {
            return Outcome::Failed {
                name: exp.name().into(),
                error: format!(
                    "data missing ({reason}); CI / KOOPMAN_DATA_DIR is set, so the data must be there"
                ),
            };
        }
        return Outcome::Skipped {
            name: exp.name().into(),
            reason,
        };
    }
    match exp.run(ctx, progress) {
        Ok(mut report) => {
            if ctx.broken_input {
                report.notes.insert(
                    0,
                    format!(
                        "Broken input (a test that the verdicts can fail, not a result): {}.",
                        exp.broken_input()
                    ),
                );
            }
            Outcome::Ran(report)
        }
        Err(e) => Outcome::Failed {
            name: exp.name().into(),
            error: e.to_string(),
        },
    }
}

/// One reproducible experiment.
pub trait Experiment {
    /// Registry name (used by `--only`).
    fn name(&self) -> &'static str;
    /// The paper the experiment reproduces.
    fn paper(&self) -> Paper;
    /// One line on what it measures.
    fn description(&self) -> &'static str;
    /// Why the experiment cannot run here (missing data), or `None` when it can.
    fn missing_data(&self, _ctx: &RunContext) -> Option<String> {
        None
    }
    /// The deliberately broken input the experiment runs on when
    /// [`RunContext::broken_input`] is set (an untrained model, the identity operator, random
    /// spectra, ...): its paper verdicts must fail on it, and a test shows that they do.
    fn broken_input(&self) -> &'static str;
    /// Runs the experiment, advancing `progress`.
    fn run(&self, ctx: &RunContext, progress: &ProgressBar) -> Result<ExperimentReport>;
}

/// Every registered experiment, in run order.
pub fn registry() -> Vec<Box<dyn Experiment>> {
    vec![
        Box::new(p003_layered::krylov::KrylovAccuracy),
        Box::new(p004_conjugacy::Conjugacy),
        Box::new(p002_replace::yinyang::YinYangReplace),
        Box::new(p002_replace::mnist::MnistReplace),
        Box::new(p003_layered::vdp::LayeredVdp),
        Box::new(p003_layered::measure::LayeredMeasure),
        Box::new(p003_layered::damped::LayeredDamped),
        Box::new(p001_analysis::spectrum::TrainSpectrum),
        Box::new(p001_analysis::init::TrainInit),
        Box::new(p001_analysis::pruning::TrainPruning {
            network: p001_analysis::Network::Mlp,
        }),
        Box::new(p001_analysis::pruning::TrainPruning {
            network: p001_analysis::Network::Cnn,
        }),
        Box::new(p001_analysis::depth::DepthTable),
        Box::new(p001_analysis::sobolev::SobolevNoise),
        Box::new(p000_stepping::de::SteppingDe),
        Box::new(p000_stepping::mnist::SteppingMnist),
        Box::new(p000_stepping::perceptron::SteppingPerceptron),
        Box::new(p000_stepping::perceptron_scaled::SteppingPerceptronScaled),
        Box::new(p000_stepping::wrapper::SteppingWrapper),
    ]
}

/// The experiments selected by `--only` (comma-separated names), or all of them.
pub fn select(only: Option<&str>) -> Result<Vec<Box<dyn Experiment>>> {
    let all = registry();
    let Some(only) = only else { return Ok(all) };
    let wanted: Vec<&str> = only
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let known: Vec<&str> = all.iter().map(|e| e.name()).collect();
    if wanted.is_empty() {
        return Err(BenchError::Usage(format!(
            "--only '{only}' names no experiment; known: {}",
            known.join(", ")
        )));
    }
    for w in &wanted {
        if !known.contains(w) {
            return Err(BenchError::Usage(format!(
                "unknown experiment '{w}'; known: {}",
                known.join(", ")
            )));
        }
    }
    Ok(all
        .into_iter()
        .filter(|e| wanted.contains(&e.name()))
        .collect())
}
