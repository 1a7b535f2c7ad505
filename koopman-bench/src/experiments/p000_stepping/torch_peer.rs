//! The optional PyTorch peers of `stepping_mnist` and `stepping_de`: the paper's own speed
//! comparisons.
//!
//! Paper 000 measures its MNIST speedup (15x) against the epoch run times `tau_i` of PyTorch's
//! example training loop (supplement S10, Eq. 13), not against an optimizer in the same
//! process. `peers/torch_mnist_peer.py` runs that loop (torchvision `MNIST` + `ToTensor` +
//! `Normalize`, `DataLoader` with batch 64, Adadelta, `StepLR`) and a lean PyTorch loop over a
//! pre-loaded tensor on the same IDX files, and writes the training seconds of every epoch as
//! JSON. [`TorchPeer`] reads that file (or runs the script with a Python that has torch and
//! torchvision, [`TorchPeer::run`]) and [`TorchPeer::equivalent_seconds`] turns a `T_eq` in epochs
//! into PyTorch seconds, Eq. 13 over the peer's epochs after `t2`.
//!
//! The paper's DE solver also trained in PyTorch (S9). `peers/torch_de_peer.py` trains the same
//! solver there with the trial's optimizer and schedule and times its steps; [`DePeer`] reads
//! its report (or runs it, [`DePeer::run`]) and [`DePeer::equivalent_seconds`] is `T_eq` steps
//! of it.
//!
//! ```
//! use koopman_bench::experiments::p000_stepping::torch_peer::TorchPeer;
//!
//! # fn main() -> koopman_bench::Result<()> {
//! let json = r#"{"torch": "2.15.0", "threads": 2, "train_samples": 640, "batch_size": 64,
//!   "epochs": 3, "loops": {"paper_loop": {"epoch_seconds": [1.0, 2.0, 4.0],
//!   "val_losses": [0.5, 0.4, 0.3], "steps_per_epoch": 10}}}"#;
//! let peer = TorchPeer::parse(json)?;
//! // T_eq = 1.5 epochs after t2 = epoch 1: the whole of epoch 2 and half of epoch 3.
//! assert_eq!(peer.equivalent_seconds("paper_loop", 1, 1.5)?, 2.0 + 0.5 * 4.0);
//! # Ok(()) }
//! ```

use crate::experiments::p000_stepping::trials::classifier::ClassifierTrialConfig;
use crate::{BenchError, Result};
use koopman_train::stepping::metrics::equivalent_time;
use koopman_train::stepping::OptimizerKind;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The paper's loop (torchvision dataset and `DataLoader`), as PyTorch's MNIST example.
pub const PAPER_LOOP: &str = "paper_loop";
/// The same training over one pre-loaded tensor (no per-sample transforms, no `DataLoader`).
pub const TENSOR_LOOP: &str = "tensor_loop";

/// The root of the workspace this binary was built from.
const BUILT_FROM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// A file of this workspace, `relative` to its root: looked up under the current directory
/// first (where `cargo run` is started), then under the workspace the binary was built from
/// (a target directory shared between checkouts can hold a binary built from another one).
fn workspace_file(relative: &str) -> Option<PathBuf> {
    std::env::current_dir()
        .ok()
        .into_iter()
        .chain([PathBuf::from(BUILT_FROM)])
        .map(|root| root.join(relative))
        .find(|path| path.is_file())
}

/// The peer script, `koopman-bench/peers/torch_mnist_peer.py` of this workspace (the built-from
/// path if neither lookup finds it, so that the error names it).
pub fn script_path() -> PathBuf {
    peer_script("torch_mnist_peer.py")
}

/// `koopman-bench/peers/{name}` of this workspace (see [`script_path`]).
fn peer_script(name: &str) -> PathBuf {
    let relative = format!("koopman-bench/peers/{name}");
    workspace_file(&relative).unwrap_or_else(|| Path::new(BUILT_FROM).join(relative))
}

/// Runs `script` with `python` and `args` plus `--json json`, and returns the JSON it wrote.
fn run_script(python: &Path, script: &Path, args: &[String], json: &Path) -> Result<String> {
    let output = Command::new(python)
        .arg(script)
        .args(args)
        .arg("--json")
        .arg(json)
        .output()
        .map_err(|e| BenchError::Peer(format!("could not start {}: {e}", python.display())))?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        return Err(BenchError::Peer(format!(
            "PyTorch peer exited with {}: {}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )));
    }
    std::fs::read_to_string(json)
        .map_err(|e| BenchError::Peer(format!("PyTorch peer report {}: {e}", json.display())))
}

/// The interpreter `peers/setup_torch_peer.sh` installs (`.venv-peers` in the workspace root),
/// if it is there.
pub fn default_python() -> Option<PathBuf> {
    workspace_file(".venv-peers/bin/python")
}

/// The Python a run's PyTorch peers use, or why they are not run (never at smoke size; not
/// without a Python with torch).
pub fn peer_python(ctx: &crate::report::RunContext) -> std::result::Result<&Path, String> {
    match (&ctx.torch_python, ctx.size) {
        (_, crate::Size::Smoke) => Err("not run at smoke size".to_string()),
        (None, _) => Err(
            "not run: no Python with torch (bash koopman-bench/peers/setup_torch_peer.sh, or --torch-python)"
                .to_string(),
        ),
        (Some(python), _) => Ok(python),
    }
}

/// One timed PyTorch loop.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
pub struct PeerLoop {
    /// Training seconds of every epoch (the validation pass not included).
    pub epoch_seconds: Vec<f64>,
    /// Validation loss after every epoch.
    pub val_losses: Vec<f64>,
    /// Optimizer steps per epoch.
    pub steps_per_epoch: usize,
}

/// What the peer script wrote.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
pub struct TorchPeer {
    /// PyTorch version.
    pub torch: String,
    /// PyTorch's intra-op threads.
    pub threads: usize,
    /// Training samples.
    pub train_samples: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Epochs run.
    pub epochs: usize,
    /// The timed loops by name ([`PAPER_LOOP`], [`TENSOR_LOOP`]).
    pub loops: BTreeMap<String, PeerLoop>,
}

impl TorchPeer {
    /// Parses and checks the script's JSON: every loop has `epochs` finite, positive epoch times.
    pub fn parse(text: &str) -> Result<Self> {
        let peer: TorchPeer = serde_json::from_str(text)
            .map_err(|e| BenchError::Peer(format!("malformed PyTorch peer report: {e}")))?;
        if peer.loops.is_empty() {
            return Err(BenchError::Peer("PyTorch peer report has no loops".into()));
        }
        for (name, l) in &peer.loops {
            if l.epoch_seconds.len() != peer.epochs || l.val_losses.len() != peer.epochs {
                return Err(BenchError::Peer(format!(
                    "PyTorch peer loop {name}: {} epoch times and {} losses for {} epochs",
                    l.epoch_seconds.len(),
                    l.val_losses.len(),
                    peer.epochs
                )));
            }
            if l.epoch_seconds.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                return Err(BenchError::Peer(format!(
                    "PyTorch peer loop {name}: epoch times must be finite and > 0, got {:?}",
                    l.epoch_seconds
                )));
            }
        }
        Ok(peer)
    }

    /// Runs the peer script with `python` on the MNIST files in `mnist_dir` for the trial's
    /// model, optimizer settings and epochs, writing its report to `json` (atomically, by the
    /// script), and checks that it trained on `train_samples` digits.
    pub fn run(
        python: &Path,
        mnist_dir: &Path,
        config: &ClassifierTrialConfig,
        seed: u64,
        train_samples: usize,
        json: &Path,
    ) -> Result<Self> {
        let OptimizerKind::Adadelta { rho } = config.optimizer else {
            return Err(BenchError::Peer(format!(
                "the PyTorch peer times the paper's Adadelta loop, the trial uses {}",
                config.optimizer.name()
            )));
        };
        let sizes: Vec<String> = config.sizes.iter().map(|s| s.to_string()).collect();
        let text = run_script(
            python,
            &script_path(),
            &[
                "--data".into(),
                mnist_dir.display().to_string(),
                "--epochs".into(),
                (config.t2_epoch + config.after_epochs).to_string(),
                "--batch-size".into(),
                config.batch_size.to_string(),
                "--lr".into(),
                config.lr.to_string(),
                "--rho".into(),
                rho.to_string(),
                "--gamma".into(),
                config.gamma.to_string(),
                "--sizes".into(),
                sizes.join(","),
                "--seed".into(),
                seed.to_string(),
            ],
            json,
        )?;
        let peer = Self::parse(&text)?;
        if peer.train_samples != train_samples || peer.batch_size != config.batch_size {
            return Err(BenchError::Peer(format!(
                "PyTorch peer trained on {} digits at batch {}, the Rust trial on {train_samples} at batch {}",
                peer.train_samples, peer.batch_size, config.batch_size
            )));
        }
        Ok(peer)
    }

    /// The loop called `name`.
    pub fn timed_loop(&self, name: &str) -> Result<&PeerLoop> {
        self.loops
            .get(name)
            .ok_or_else(|| BenchError::Peer(format!("PyTorch peer report has no loop {name}")))
    }

    /// PyTorch seconds of `t_eq` epochs after epoch `t2_epoch` in loop `name` (Eq. 13: the
    /// whole epochs, then the fractional share of the next).
    pub fn equivalent_seconds(&self, name: &str, t2_epoch: usize, t_eq: f64) -> Result<f64> {
        let l = self.timed_loop(name)?;
        let after = l.epoch_seconds.get(t2_epoch..).ok_or_else(|| {
            BenchError::Peer(format!(
                "PyTorch peer ran {} epochs, t2 is epoch {t2_epoch}",
                l.epoch_seconds.len()
            ))
        })?;
        Ok(equivalent_time(after, t_eq)?)
    }

    /// Mean seconds per optimizer step of loop `name`.
    pub fn step_seconds(&self, name: &str) -> Result<f64> {
        let l = self.timed_loop(name)?;
        Ok(
            l.epoch_seconds.iter().sum::<f64>()
                / (l.epoch_seconds.len() * l.steps_per_epoch) as f64,
        )
    }
}

/// One timed run of the DE peer (one thread count).
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
pub struct DePeerRun {
    /// PyTorch's intra-op threads.
    pub threads: usize,
    /// Median seconds per training step.
    pub step_seconds_median: f64,
    /// Mean seconds per training step.
    pub step_seconds_mean: f64,
    /// Loss before and after the run (it trains the same problem).
    pub loss_before: f64,
    /// Loss after the timed steps.
    pub loss_after: f64,
}

/// What `peers/torch_de_peer.py` wrote: the DE solver's training steps timed in PyTorch.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
pub struct DePeer {
    /// PyTorch version.
    pub torch: String,
    /// `adam`, `adagrad` or `adadelta`.
    pub optimizer: String,
    /// Timed steps per run (after a warm-up).
    pub steps: usize,
    /// The threads of the fastest run.
    pub threads: usize,
    /// The fastest run's median seconds per step (the peer at its best).
    pub step_seconds_median: f64,
    /// Every run, one per thread count.
    pub runs: Vec<DePeerRun>,
}

impl DePeer {
    /// Parses and checks the script's JSON: finite, positive step times and losses, and the
    /// reported step time is the fastest run's.
    pub fn parse(text: &str) -> Result<Self> {
        let peer: DePeer = serde_json::from_str(text)
            .map_err(|e| BenchError::Peer(format!("malformed PyTorch DE peer report: {e}")))?;
        let ok = |x: f64| x.is_finite() && x > 0.0;
        if peer.runs.is_empty()
            || peer.runs.iter().any(|r| {
                !(ok(r.step_seconds_median)
                    && ok(r.step_seconds_mean)
                    && r.loss_before.is_finite()
                    && r.loss_after.is_finite())
            })
        {
            return Err(BenchError::Peer(format!(
                "PyTorch DE peer report needs runs with finite, positive step times and finite losses, got {:?}",
                peer.runs
            )));
        }
        let fastest = peer
            .runs
            .iter()
            .map(|r| r.step_seconds_median)
            .fold(f64::INFINITY, f64::min);
        if peer.step_seconds_median != fastest {
            return Err(BenchError::Peer(format!(
                "PyTorch DE peer report: step time {} is not its fastest run's {fastest}",
                peer.step_seconds_median
            )));
        }
        Ok(peer)
    }

    /// Runs `peers/torch_de_peer.py` with `python` for `optimizer` (with the trial's
    /// hyper-parameters), timing `steps` steps at one thread and at `threads`, writing its
    /// report to `json`.
    pub fn run(
        python: &Path,
        optimizer: OptimizerKind,
        steps: usize,
        threads: usize,
        seed: u64,
        json: &Path,
    ) -> Result<Self> {
        let mut args = vec!["--optimizer".to_string(), optimizer.name().to_string()];
        match optimizer {
            OptimizerKind::Adam { betas } => args.extend([
                "--beta1".into(),
                betas.0.to_string(),
                "--beta2".into(),
                betas.1.to_string(),
            ]),
            OptimizerKind::Adadelta { rho } => args.extend(["--rho".into(), rho.to_string()]),
            OptimizerKind::Adagrad => {}
        }
        let thread_counts = if threads > 1 {
            format!("1,{threads}")
        } else {
            "1".into()
        };
        args.extend([
            "--steps".into(),
            steps.to_string(),
            "--threads".into(),
            thread_counts,
            "--seed".into(),
            seed.to_string(),
        ]);
        let peer = Self::parse(&run_script(
            python,
            &peer_script("torch_de_peer.py"),
            &args,
            json,
        )?)?;
        if peer.optimizer != optimizer.name() {
            return Err(BenchError::Peer(format!(
                "PyTorch DE peer ran {}, asked for {}",
                peer.optimizer,
                optimizer.name()
            )));
        }
        Ok(peer)
    }

    /// PyTorch seconds of `t_eq` optimizer steps (the fastest run's median step time).
    pub fn equivalent_seconds(&self, t_eq: f64) -> f64 {
        t_eq * self.step_seconds_median
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_files_are_found_from_the_crate_folder() {
        // Tests run in koopman-bench/, not the workspace root: the lookup falls back to the
        // workspace the binary was built from.
        assert!(script_path().is_file(), "{}", script_path().display());
        assert!(workspace_file("koopman-bench/Cargo.toml").is_some());
        assert_eq!(workspace_file("koopman-bench/no-such-file"), None);
    }

    fn report(epochs: &str) -> String {
        format!(
            r#"{{"torch": "x", "threads": 2, "train_samples": 128, "batch_size": 64, "epochs": 3,
            "loops": {{"paper_loop": {{"epoch_seconds": {epochs}, "val_losses": [1, 0.5, 0.25],
            "steps_per_epoch": 2}}}}}}"#
        )
    }

    #[test]
    fn equivalent_seconds_follow_eq_13() -> Result<()> {
        let peer = TorchPeer::parse(&report("[1.0, 2.0, 3.0]"))?;
        assert_eq!(peer.equivalent_seconds(PAPER_LOOP, 0, 0.0)?, 0.0);
        assert_eq!(
            peer.equivalent_seconds(PAPER_LOOP, 0, 2.25)?,
            1.0 + 2.0 + 0.25 * 3.0
        );
        assert_eq!(peer.equivalent_seconds(PAPER_LOOP, 1, 2.0)?, 2.0 + 3.0);
        assert_eq!(peer.step_seconds(PAPER_LOOP)?, 1.0);
        // Beyond the timed epochs, before t2's epoch, or a loop it did not run: errors.
        assert!(peer.equivalent_seconds(PAPER_LOOP, 1, 2.5).is_err());
        assert!(peer.equivalent_seconds(PAPER_LOOP, 4, 0.5).is_err());
        assert!(peer.equivalent_seconds(TENSOR_LOOP, 0, 1.0).is_err());
        Ok(())
    }

    fn de_report(fast: f64, best: f64) -> String {
        format!(
            r#"{{"torch": "x", "optimizer": "adam", "steps": 10, "threads": 1,
            "step_seconds_median": {best}, "runs": [{{"threads": 1, "step_seconds_median": {fast},
            "step_seconds_mean": 0.002, "loss_before": 7.5, "loss_after": 0.3}},
            {{"threads": 2, "step_seconds_median": 0.01, "step_seconds_mean": 0.01,
            "loss_before": 7.5, "loss_after": 0.3}}]}}"#
        )
    }

    #[test]
    fn de_peer_reports() -> Result<()> {
        let peer = DePeer::parse(&de_report(0.001, 0.001))?;
        assert_eq!(peer.equivalent_seconds(2500.0), 2.5);
        for bad in [
            de_report(0.001, 0.01), // not the fastest run
            de_report(0.0, 0.0),
            de_report(-1.0, -1.0),
            r#"{"torch": "x", "optimizer": "adam", "steps": 1, "threads": 1, "step_seconds_median": 1, "runs": []}"#.into(),
            "{}".into(),
        ] {
            let err = DePeer::parse(&bad).expect_err(&bad).to_string();
            assert!(err.contains("PyTorch DE peer"), "{err}");
        }
        assert!(peer_script("torch_de_peer.py").is_file());
        Ok(())
    }

    #[test]
    fn malformed_reports_are_errors() {
        for bad in [
            "not json".to_string(),
            report("[1.0, 2.0]"),
            report("[1.0, 0.0, 3.0]"),
            report("[1.0, -2.0, 3.0]"),
            r#"{"torch": "x", "threads": 2, "train_samples": 1, "batch_size": 1, "epochs": 0, "loops": {}}"#
                .to_string(),
        ] {
            let err = TorchPeer::parse(&bad).expect_err(&bad).to_string();
            assert!(err.contains("PyTorch peer"), "{err}");
        }
    }

    /// A stand-in interpreter: a shell script that writes `report` to the path after `--json`
    /// (or fails with `exit_code`), so the plumbing of [`TorchPeer::run`] is tested without torch.
    #[cfg(unix)]
    fn fake_python(name: &str, report: &str, exit_code: i32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("koopman_torch_peer_{name}_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("report.json"), report).unwrap();
        let script = dir.join("python");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nwhile [ $# -gt 0 ]; do if [ \"$1\" = --json ]; then out=\"$2\"; fi; shift; done\n\
                 [ {exit_code} -eq 0 ] || {{ echo 'ModuleNotFoundError: torch' >&2; exit {exit_code}; }}\n\
                 cp '{}' \"$out\"\n",
                dir.join("report.json").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    #[cfg(unix)]
    #[test]
    fn run_reads_the_report_and_checks_it_against_the_trial() -> Result<()> {
        let cfg = ClassifierTrialConfig::default();
        let good = report("[1.0, 2.0, 3.0]");
        let python = fake_python("good", &good, 0);
        let json = python.with_file_name("out.json");
        let peer = TorchPeer::run(&python, Path::new("/data"), &cfg, 0, 128, &json)?;
        assert_eq!(peer.equivalent_seconds(PAPER_LOOP, 1, 1.0)?, 2.0);
        // The same report for a trial on other data, a failing interpreter, a bad report.
        let err = TorchPeer::run(&python, Path::new("/data"), &cfg, 0, 7996, &json)
            .expect_err("other data")
            .to_string();
        assert!(err.contains("128 digits"), "{err}");
        let failing = fake_python("failing", &good, 3);
        let err = TorchPeer::run(&failing, Path::new("/data"), &cfg, 0, 128, &json)
            .expect_err("exit 3")
            .to_string();
        assert!(err.contains("ModuleNotFoundError"), "{err}");
        let bad = fake_python("bad", "{", 0);
        let err = TorchPeer::run(&bad, Path::new("/data"), &cfg, 0, 128, &json)
            .expect_err("bad json")
            .to_string();
        assert!(err.contains("malformed"), "{err}");
        // Only the paper's optimizer has a PyTorch loop to time.
        let adam = ClassifierTrialConfig {
            optimizer: OptimizerKind::Adam {
                betas: (0.9, 0.999),
            },
            ..cfg
        };
        let err = TorchPeer::run(&python, Path::new("/data"), &adam, 0, 128, &json)
            .expect_err("adam")
            .to_string();
        assert!(err.contains("Adadelta"), "{err}");
        Ok(())
    }

    #[test]
    fn a_missing_interpreter_is_an_error() {
        let cfg = ClassifierTrialConfig::default();
        let json = std::env::temp_dir().join("koopman_torch_peer_missing.json");
        let err = TorchPeer::run(
            Path::new("/nonexistent/python"),
            Path::new("/nonexistent"),
            &cfg,
            0,
            10,
            &json,
        )
        .expect_err("no interpreter")
        .to_string();
        assert!(err.contains("could not start"), "{err}");
    }
}
