//! The command line of the `koopman` and `koopman-bench` binaries (one CLI, two names).
//!
//! ```text
//! koopman reproduce [--smoke | --quick | --full] [--device cpu|cuda] [--only NAME[,NAME]] [--out DIR]
//!                   [--torch-python PATH | --no-torch-peer]
//! koopman perf [--device cpu|cuda] [--radii 3,5,7,10,15] [--max-dense 1500] [--json FILE]
//!              [--skip-dmd] [--skip-layered] [--skip-stepping]
//! koopman dmd FILE [--method exact|rrr|hankel|edmd|kernel] [--layout rows|columns] [--out DIR] ...
//! koopman fit SERIES [--layers J] [--radius R] [--steps S] [--out DIR] ...
//! koopman predict MODEL_DIR STATES [--out FILE]
//! koopman replace --model MLP.safetensors [--dataset yinyang|mnist] [--layer K] [--h H] [--r R] [--out DIR]
//! ```

use crate::device::DeviceKind;
use crate::experiments::{self, Experiment};
use crate::perf::{self, PerfConfig};
use crate::report::{write_reports, Outcome, RunContext};
use crate::{BenchError, Result, Size};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

/// The parsed command line.
#[derive(Parser)]
#[command(
    version,
    about = "Koopman operators on your data and the papers' reproductions: DMD spectra of snapshot \
             files, paper reproductions and performance runs"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// DMD of a snapshot file (.npy or CSV): eigenvalues, residuals, modes and the eigenvalue plot.
    Dmd(crate::dmd_command::DmdArgs),
    /// Fit a deep Koopman-layered model to a time series (.npy or CSV) and save it.
    Fit(crate::fit_command::FitArgs),
    /// Predict end states from initial states with a model saved by `fit`.
    Predict(crate::fit_command::PredictArgs),
    /// Replace a layer of a trained MLP (safetensors) by a delay-embedded linear operator.
    Replace(crate::replace_command::ReplaceArgs),
    /// Run the papers' experiments and write a paper-vs-measured report.
    Reproduce {
        /// Tiny sizes that run every experiment's whole pipeline in about a minute (a run check
        /// for CI, not a reproduction).
        #[arg(long, conflicts_with_all = ["quick", "full"])]
        smoke: bool,
        /// Reduced sizes (the default): minutes on two cores.
        #[arg(long, conflicts_with = "full")]
        quick: bool,
        /// The papers' sizes.
        #[arg(long)]
        full: bool,
        /// Device to compute on.
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceKind,
        /// Only these experiments (comma-separated names; see --list).
        #[arg(long)]
        only: Option<String>,
        /// Folder for report.md, report.json and plots.
        #[arg(long, default_value = "reports")]
        out: PathBuf,
        /// Base seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// List the experiments and exit.
        #[arg(long)]
        list: bool,
        /// Python with torch and torchvision for the PyTorch peer of `stepping_mnist` (the
        /// paper's speed comparison, S10 Eq. 13). Default: `.venv-peers/bin/python` in the
        /// workspace root when `bash koopman-bench/peers/setup_torch_peer.sh` has made it.
        #[arg(long, conflicts_with = "no_torch_peer")]
        torch_python: Option<PathBuf>,
        /// Do not run the PyTorch peer even if its interpreter is there.
        #[arg(long)]
        no_torch_peer: bool,
    },
    /// File a run's results under koopman-bench/results and write the README's results table.
    #[command(subcommand)]
    Results(ResultsAction),
    /// Timed runs (ratios measured in one process), printed and written as JSON.
    Perf {
        /// Device to compute on.
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceKind,
        /// Radii r of N = {-r..r}^3 \ {0}.
        #[arg(long, value_delimiter = ',', default_values_t = vec![3i64, 5, 7, 10, 15])]
        radii: Vec<i64>,
        /// Largest |N| for which the dense exponential is timed too.
        #[arg(long, default_value_t = 1500)]
        max_dense: usize,
        /// expv tolerance.
        #[arg(long, default_value_t = 1e-8)]
        tol: f64,
        /// Where to write the JSON report.
        #[arg(long, default_value = "reports/perf.json")]
        json: PathBuf,
        /// Also write one generator (|N| for this radius) as .npy files for the SciPy peer script.
        #[arg(long)]
        export_peer: Option<i64>,
        /// Folder for the exported .npy files.
        #[arg(long, default_value = "reports/peer")]
        peer_dir: PathBuf,
        /// Skip the DMD timings (exact DMD / DMD_RRR on 10,000 x 1,000, batched finite section).
        #[arg(long)]
        skip_dmd: bool,
        /// Also write the DMD snapshot data as .npy files for the PyDMD peer script.
        #[arg(long)]
        export_dmd_peer: bool,
        /// Skip the deep Koopman-layered training-step timing (|N| = 1330, J = 2, batch 1000:
        /// Taylor in f64 and f32, its dense path, Krylov expv, the dense exponential).
        #[arg(long)]
        skip_layered: bool,
        /// Radius of the large-|N| training step (23: |N| = 103,822), with its peak device memory
        /// and the dense path's refusal; default: 23 on a GPU, none on the CPU.
        #[arg(long)]
        scale_radius: Option<i64>,
        /// Skip the large-|N| training step.
        #[arg(long, conflicts_with = "scale_radius")]
        skip_scale: bool,
        /// Skip the Koopman-stepping timing (NN DE solver, Adadelta, paper steps / 8: optimizer vs
        /// fit, loop, jump and eigen jump; f32 vs f64 batched evolution).
        #[arg(long)]
        skip_stepping: bool,
    },
}

/// What `results` does.
#[derive(Debug, clap::Subcommand)]
pub enum ResultsAction {
    /// File every experiment of a quick or full run (its report.json) as the current result of
    /// that experiment and size, with its figures, then rewrite the README's results table.
    Store {
        /// The run's report.json.
        report: PathBuf,
    },
    /// Rewrite the README's results table (and each stored result's Markdown) from the committed
    /// results (`--check`: only say whether the table is current, failing when not).
    Table {
        /// Fail instead of writing when the README's table is not the generated one.
        #[arg(long)]
        check: bool,
    },
}

/// The workspace's results folder and README (the tree this binary was built from).
fn results_paths() -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = root.join("..").join("README.md");
    (
        root.join("results"),
        readme.canonicalize().unwrap_or(readme),
    )
}

fn results(action: &ResultsAction) -> Result<bool> {
    let (dir, readme_path) = results_paths();
    match action {
        ResultsAction::Store { report } => {
            let written = crate::results::store(report, &dir)?;
            println!("stored {} files under {}", written.len(), dir.display());
        }
        ResultsAction::Table { check: false } => {
            let n = crate::results::render_stored(&dir)?;
            println!("rendered the Markdown of {n} stored results");
        }
        ResultsAction::Table { check: true } => {}
    }
    let readme =
        std::fs::read_to_string(&readme_path).map_err(|source| koopman_core::CoreError::Io {
            path: readme_path.clone(),
            source,
        })?;
    let updated = crate::results::with_table(&readme, &crate::results::results_table(&dir)?)?;
    if matches!(action, ResultsAction::Table { check: true }) {
        if updated != readme {
            eprintln!(
                "{}: the results table is not the one the committed results give; run \
                 `cargo run -p koopman-bench -- results table`",
                readme_path.display()
            );
            return Ok(false);
        }
        println!("{}: results table is current", readme_path.display());
        return Ok(true);
    }
    koopman_core::io::write_atomic(&readme_path, updated.as_bytes())?;
    println!("wrote the results table of {}", readme_path.display());
    Ok(true)
}

fn bar(multi: &MultiProgress, name: &str) -> ProgressBar {
    let pb = multi.add(ProgressBar::new(1));
    pb.set_style(
        ProgressStyle::with_template("{prefix:>10} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("static progress template")
            .progress_chars("=> "),
    );
    pb.set_prefix(name.to_string());
    pb
}

fn reproduce(ctx: RunContext, selected: Vec<Box<dyn Experiment>>) -> Result<bool> {
    let multi = MultiProgress::new();
    let mut outcomes = Vec::new();
    for exp in &selected {
        let pb = bar(&multi, exp.name());
        let outcome = experiments::run_experiment(exp.as_ref(), &ctx, &pb);
        match &outcome {
            Outcome::Skipped { name, reason } => {
                pb.finish_and_clear();
                eprintln!("skipping {name}: {reason}");
            }
            Outcome::Ran(report) => {
                pb.finish_with_message(format!("done in {:.1} s", report.seconds));
                println!("\n== {} ({})", report.name, report.title);
                for c in &report.comparisons {
                    let mark = match c.holds {
                        Some(true) => "ok  ",
                        Some(false) => "MISS",
                        None => "    ",
                    };
                    println!(
                        "  [{mark}] {:<55} paper: {:<38} measured: {}",
                        c.quantity, c.paper, c.measured
                    );
                }
            }
            Outcome::Failed { name, error } => {
                pb.abandon_with_message("failed");
                eprintln!("{name} failed: {error}");
            }
        }
        outcomes.push(outcome);
    }
    let (md, json) = write_reports(&ctx, &outcomes)?;
    let skipped: Vec<&str> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Skipped { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    println!("\nreport: {} and {}", md.display(), json.display());
    if !skipped.is_empty() {
        println!("skipped (data not found): {}", skipped.join(", "));
    }
    Ok(outcomes
        .iter()
        .all(|o| !matches!(o, Outcome::Failed { .. })))
}

fn run(cli: Cli) -> Result<bool> {
    match cli.command {
        Command::Dmd(args) => {
            let summary = crate::dmd_command::run(&args)?;
            println!("{summary}");
            Ok(true)
        }
        Command::Fit(args) => {
            let manifest = crate::fit_command::fit(&args)?;
            println!(
                "fitted J = {} layers (|N| = {}) to {}: loss {:.3e} -> {:.3e}; wrote {}",
                manifest.layers,
                manifest.index_set_size,
                manifest.input,
                manifest.loss.0,
                manifest.loss.1,
                args.out.display()
            );
            Ok(true)
        }
        Command::Replace(args) => {
            if let Some(path) = &args.write_demo_model {
                let acc = crate::replace_command::write_demo_model(&args, path)?;
                println!(
                    "demo MLP 4-8-6-4-3 saved to {}; test accuracy {:.1}%",
                    path.display(),
                    100.0 * acc
                );
                return Ok(true);
            }
            let r = crate::replace_command::replace(&args)?;
            println!(
                "MLP {:?}, Linear layer {} replaced (h = {}, r = {}, S = {}; scaling block \
                 matching error {:.4})",
                r.sizes, r.layer, r.h, r.r, r.scaled, r.matching_error
            );
            println!(
                "  original            test accuracy {:.2}%",
                100.0 * r.original
            );
            println!(
                "  hybrid (iterated)   test accuracy {:.2}%",
                100.0 * r.iterated
            );
            println!(
                "  hybrid (direct)     test accuracy {:.2}%",
                100.0 * r.direct
            );
            println!("wrote {}", args.out.display());
            Ok(true)
        }
        Command::Predict(args) => {
            let count = crate::fit_command::predict(&args)?;
            println!("predicted {count} states; wrote {}", args.out.display());
            Ok(true)
        }
        Command::Reproduce {
            smoke,
            quick: _,
            full,
            device,
            only,
            out,
            seed,
            list,
            torch_python,
            no_torch_peer,
        } => {
            let selected = experiments::select(only.as_deref())?;
            if list {
                for e in &selected {
                    println!("{:<12} {} [{}]", e.name(), e.description(), e.paper());
                }
                return Ok(true);
            }
            let size = if smoke {
                Size::Smoke
            } else if full {
                Size::Full
            } else {
                Size::Quick
            };
            let mut ctx = RunContext::new(size, device.open()?, out);
            ctx.check_out_dir()?;
            ctx.seed = seed;
            if !no_torch_peer {
                ctx.torch_python =
                    torch_python.or_else(experiments::p000_stepping::torch_peer::default_python);
            }
            reproduce(ctx, selected)
        }
        Command::Results(action) => results(&action),
        Command::Perf {
            device,
            radii,
            max_dense,
            tol,
            json,
            export_peer,
            peer_dir,
            skip_dmd,
            export_dmd_peer,
            skip_layered,
            scale_radius,
            skip_scale,
            skip_stepping,
        } => {
            if radii.iter().any(|&r| r < 1) {
                return Err(BenchError::Usage("radii must be >= 1".into()));
            }
            let dev = device.open()?;
            let config = PerfConfig {
                radii,
                max_dense,
                tol,
                ..Default::default()
            };
            let pb = ProgressBar::new(config.radii.len() as u64);
            pb.set_style(
                ProgressStyle::with_template("perf [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
                    .expect("static progress template"),
            );
            let report = perf::run_perf(&config, &dev, |t| {
                pb.set_message(format!("|N| = {} done", t.n));
                pb.inc(1);
            })?;
            pb.finish_and_clear();
            let mut report = report;
            if !dev.is_cpu() {
                // CPU and GPU side by side, measured in this process (the CLI's CPU reference)
                report.cpu_reference =
                    Some(perf::run_perf(&config, &candle_core::Device::Cpu, |_| {})?.expv_vs_dense);
            }
            if !skip_dmd {
                let dmd_config = perf::DmdPerfConfig::default();
                let timing = perf::run_dmd_perf(&dmd_config)?;
                if export_dmd_peer {
                    std::fs::create_dir_all(&peer_dir).map_err(|e| {
                        BenchError::Usage(format!("cannot create {}: {e}", peer_dir.display()))
                    })?;
                    perf::export_dmd_for_peer(&peer_dir, &dmd_config, &timing)?;
                    println!("DMD peer files: {}", peer_dir.display());
                }
                report.dmd = Some(timing);
            }
            if !skip_layered {
                let scale = if skip_scale {
                    None
                } else {
                    scale_radius.or(dev.is_cuda().then_some(23))
                };
                if let Some(r) = scale {
                    eprintln!(
                        "perf: one training step at radius {r} (|N| = {})",
                        (2 * r + 1).pow(3) - 1
                    );
                }
                report.layered_step =
                    Some(perf::run_layered_step_perf(5, 2, 1000, 5, scale, &dev)?);
            }
            if !skip_stepping {
                eprintln!("perf: Koopman stepping (DE solver training, ~10 s in release)");
                report.stepping = Some(perf::run_stepping_perf(
                    &perf::stepping_perf_trial(),
                    0,
                    &dev,
                )?);
            }
            print!("{}", perf::format_table(&report));
            crate::report::write_json(&json, &report)?;
            println!("json: {}", json.display());
            if let Some(radius) = export_peer {
                perf::export_for_peer(&peer_dir, radius, &config, &dev)?;
                println!("peer files: {}", peer_dir.display());
            }
            Ok(true)
        }
    }
}

/// Parses the command line under the binary's `name` and runs it; exits 1 when an experiment
/// failed and 2 (after one line on standard error) on a usage or input error.
pub fn main(name: &'static str) {
    koopman_core::parallel::pin_candle_threads();
    let matches = Cli::command().name(name).bin_name(name).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}
