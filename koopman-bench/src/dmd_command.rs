//! `koopman dmd FILE`: the DMD family on a user's snapshot file.
//!
//! Reads a `.npy` (`<f8` or `<i8`, 1-D: one observable over time, or 2-D) or CSV file (an
//! optional header line, then one row per line) with [`koopman_core::dmd`]'s loaders, takes
//! consecutive snapshots as pairs, fits the chosen estimator and writes, into `--out`:
//! `eigenvalues.csv` (`re, im, abs, residual`), `modes_re.npy` / `modes_im.npy` (`state x rank`;
//! for Hankel DMD the delay-embedded space), `eigenvalues.svg` (against the unit circle), and
//! last `dmd.json` (the settings, the sizes, the eigenvalues and the file list). The files are
//! published together ([`koopman_core::io::Staging`]): a failed or interrupted run leaves the
//! previous run's files as they were, and bad input writes nothing.
//!
//! ```no_run
//! use koopman_bench::dmd_command::{run, DmdArgs, DmdMethod, Layout};
//! # fn main() -> koopman_bench::Result<()> {
//! let args = DmdArgs {
//!     input: "snapshots.npy".into(),
//!     method: DmdMethod::Rrr,
//!     layout: Layout::Rows,
//!     rank: None,
//!     delays: 8,
//!     degree: 2,
//!     bandwidth: 1.0,
//!     out: "dmd_out".into(),
//! };
//! println!("{}", run(&args)?);
//! # Ok(()) }
//! ```

use crate::report::write_json;
use crate::{BenchError, Result};
use clap::ValueEnum;
use koopman_core::c64;
use koopman_core::dmd::{
    dmd_rrr, edmd, exact_dmd, hankel_dmd, kernel_dmd, snapshots_from_csv, snapshots_from_npy,
    trajectory_pairs, Dictionary, EdmdConfig, ExactDmdConfig, HankelConfig, HankelEstimator,
    KernelDmdConfig, KoopmanFit, RankPolicy, RrrConfig, StateLayout,
};
use koopman_core::io::{write_atomic, write_npy, NpyData, Staging};
use serde::Serialize;
use std::path::PathBuf;

/// The estimator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DmdMethod {
    /// Exact DMD (Tu et al.), rank by `--rank` or a relative tolerance.
    Exact,
    /// DMD_RRR (refined Rayleigh-Ritz) with a residual for every eigenpair.
    Rrr,
    /// Hankel (delay) DMD with windows of `--delays` snapshots.
    Hankel,
    /// Extended DMD on monomials up to `--degree`.
    Edmd,
    /// Kernel DMD with a Gaussian kernel of width `--bandwidth`, `--rank` components.
    Kernel,
}

impl DmdMethod {
    /// The estimator's usual name.
    pub fn label(self) -> &'static str {
        match self {
            DmdMethod::Exact => "exact DMD",
            DmdMethod::Rrr => "DMD_RRR",
            DmdMethod::Hankel => "Hankel DMD",
            DmdMethod::Edmd => "EDMD",
            DmdMethod::Kernel => "kernel DMD",
        }
    }
}

/// How states are laid out in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// One state per row (a time-series table: rows are times).
    Rows,
    /// One state per column.
    Columns,
}

/// The arguments of `koopman dmd`.
#[derive(Clone, Debug, clap::Args)]
pub struct DmdArgs {
    /// Snapshot file: .npy (f64 or i64, 1-D or 2-D) or .csv.
    pub input: PathBuf,
    /// Estimator.
    #[arg(long, value_enum, default_value = "exact")]
    pub method: DmdMethod,
    /// Layout of the states in the file.
    #[arg(long, value_enum, default_value = "rows")]
    pub layout: Layout,
    /// Rank: the number of modes (exact and Hankel DMD: fixed truncation; kernel DMD: kernel
    /// components). Default: exact and Hankel keep singular values above 1e-10 of the largest,
    /// kernel DMD 20 components.
    #[arg(long)]
    pub rank: Option<usize>,
    /// Hankel DMD: snapshots per window.
    #[arg(long, default_value_t = 8)]
    pub delays: usize,
    /// EDMD: largest monomial degree.
    #[arg(long, default_value_t = 2)]
    pub degree: u32,
    /// Kernel DMD: Gaussian kernel width.
    #[arg(long, default_value_t = 1.0)]
    pub bandwidth: f64,
    /// Output folder.
    #[arg(long, default_value = "koopman_dmd_out")]
    pub out: PathBuf,
}

/// What `dmd.json` holds.
#[derive(Debug, Serialize)]
pub struct DmdSummary {
    /// The input file.
    pub input: String,
    /// The estimator.
    pub method: DmdMethod,
    /// The file's layout.
    pub layout: Layout,
    /// State dimension (rows of the snapshot matrix).
    pub state_dim: usize,
    /// Snapshots read.
    pub snapshots: usize,
    /// Eigenpairs fitted.
    pub rank: usize,
    /// Eigenvalues as `[re, im]`.
    pub eigenvalues: Vec<[f64; 2]>,
    /// Residuals `||A z - lambda z||` per eigenpair (DMD_RRR), else absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub residuals: Option<Vec<f64>>,
    /// Files written beside `dmd.json`.
    pub files: Vec<String>,
    /// The output folder.
    #[serde(skip)]
    pub out: PathBuf,
}

impl std::fmt::Display for DmdSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let largest = self
            .eigenvalues
            .iter()
            .map(|z| z[0].hypot(z[1]))
            .fold(0.0, f64::max);
        write!(
            f,
            "{} of {} ({} states of dimension {}): {} eigenvalues, largest |lambda| = {:.6}; \
             wrote {}",
            self.method.label(),
            self.input,
            self.snapshots,
            self.state_dim,
            self.rank,
            largest,
            self.out.display()
        )
    }
}

/// Fits and writes; see the [module documentation](self). Errors name the input and the flag.
pub fn run(args: &DmdArgs) -> Result<DmdSummary> {
    let usage = |msg: String| BenchError::Usage(msg);
    if args.rank == Some(0) {
        return Err(usage("--rank must be at least 1".into()));
    }
    if args.rank.is_some() && matches!(args.method, DmdMethod::Rrr | DmdMethod::Edmd) {
        return Err(usage(format!(
            "--rank applies to exact, hankel and kernel DMD, not {:?} (which keeps every \
             numerically non-zero mode)",
            args.method
        )));
    }
    let layout = match args.layout {
        Layout::Rows => StateLayout::StatePerRow,
        Layout::Columns => StateLayout::StatePerColumn,
    };
    let extension = args
        .input
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase());
    let data = match extension.as_deref() {
        Some("npy") => snapshots_from_npy(&args.input, layout)?,
        Some("csv") => snapshots_from_csv(&args.input, layout)?,
        _ => {
            return Err(usage(format!(
                "{}: expected a .npy or .csv snapshot file",
                args.input.display()
            )))
        }
    };
    let (x, y) = trajectory_pairs(data.as_ref())?;
    let exact = ExactDmdConfig {
        rank: args
            .rank
            .map(RankPolicy::Fixed)
            .unwrap_or(ExactDmdConfig::default().rank),
    };
    let fit: KoopmanFit = match args.method {
        DmdMethod::Exact => exact_dmd(x, y, &exact)?,
        DmdMethod::Rrr => dmd_rrr(x, y, &RrrConfig::default())?,
        DmdMethod::Hankel => hankel_dmd(
            &[data.as_ref()],
            &HankelConfig {
                delays: args.delays,
                estimator: HankelEstimator::Exact(exact),
            },
        )?,
        DmdMethod::Edmd => {
            let config = EdmdConfig {
                dictionary: Dictionary::Monomials {
                    degree: args.degree,
                },
                ..Default::default()
            };
            edmd(x, y, &config)?
        }
        DmdMethod::Kernel => kernel_dmd(
            x,
            y,
            &KernelDmdConfig {
                bandwidth: args.bandwidth,
                rank: args.rank.unwrap_or(KernelDmdConfig::default().rank),
                ..Default::default()
            },
        )?,
    };
    let staging = Staging::new(&args.out);
    let mut csv = String::from("re,im,abs,residual\n");
    for (k, z) in fit.eigenvalues.iter().enumerate() {
        let residual = fit
            .residuals
            .as_ref()
            .map_or(String::new(), |r| r[k].to_string());
        csv.push_str(&format!("{},{},{},{residual}\n", z.re, z.im, z.norm()));
    }
    write_atomic(staging.path("eigenvalues.csv")?, csv.as_bytes())?;
    let (rows, cols) = (fit.modes.nrows(), fit.modes.ncols());
    let part = |f: fn(&c64) -> f64| -> Vec<f64> {
        (0..rows)
            .flat_map(|i| (0..cols).map(move |j| (i, j)))
            .map(|(i, j)| f(&fit.modes[(i, j)]))
            .collect()
    };
    write_npy(
        staging.path("modes_re.npy")?,
        &[rows, cols],
        &NpyData::F64(part(|z| z.re)),
    )?;
    write_npy(
        staging.path("modes_im.npy")?,
        &[rows, cols],
        &NpyData::F64(part(|z| z.im)),
    )?;
    let title = format!(
        "{} eigenvalues of {}",
        args.method.label(),
        args.input.display()
    );
    let svg =
        koopman_layers::analysis::unit_circle_svg(&title, &[("eigenvalues", &fit.eigenvalues)]);
    write_atomic(staging.path("eigenvalues.svg")?, svg.as_bytes())?;
    let files = staging.publish()?;
    let summary = DmdSummary {
        input: args.input.display().to_string(),
        method: args.method,
        layout: args.layout,
        state_dim: data.nrows(),
        snapshots: data.ncols(),
        rank: fit.eigenvalues.len(),
        eigenvalues: fit.eigenvalues.iter().map(|z| [z.re, z.im]).collect(),
        residuals: fit.residuals.clone(),
        files,
        out: args.out.clone(),
    };
    write_json(args.out.join("dmd.json"), &summary)?;
    Ok(summary)
}
