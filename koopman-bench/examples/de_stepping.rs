//! Koopman stepping of the NN DE solver at the paper's sizes (t1 = 35,000, t2 = 45,000,
//! T = 2,500), a few seeds, one optimizer: prints one JSON line per seed and fit setting
//! (default cut-off, paper-style cut-off, Gram solve).
//!
//! ```text
//! cargo run --release -p koopman-bench --example de_stepping -- --optimizer adadelta --seeds 2
//! ```

use candle_core::Device;
use koopman_bench::experiments::p000_stepping::trials::de_solver::{
    evaluate_de, paper_partition, train_de, DeTrialConfig,
};
use koopman_train::stepping::{FitConfig, FitSolver, OptimizerKind};

fn main() -> koopman_train::Result<()> {
    koopman_train::koopman_core::parallel::pin_candle_threads();
    // `--name value` pairs of the known options; anything else is an error naming it.
    let invalid = |msg: String| koopman_train::TrainError::InvalidArgument(msg);
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let mut options = std::collections::HashMap::new();
    for pair in raw.chunks(2) {
        let name = pair[0].as_str();
        if !["--optimizer", "--seeds", "--first-seed"].contains(&name) {
            return Err(invalid(format!(
                "unknown argument '{name}' (options: --optimizer, --seeds, --first-seed)"
            )));
        }
        let value = pair
            .get(1)
            .ok_or_else(|| invalid(format!("{name} needs a value")))?;
        options.insert(name.to_string(), value.clone());
    }
    let get = |name: &str| options.get(name).cloned();
    let number = |name: &str, default: u64| -> koopman_train::Result<u64> {
        get(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| invalid(format!("{name} needs a non-negative integer, got '{v}'")))
        })
    };
    let kind = match get("--optimizer").as_deref().unwrap_or("adadelta") {
        "adam" => OptimizerKind::Adam {
            betas: (0.999, 0.9999),
        },
        "adagrad" => OptimizerKind::Adagrad,
        "adadelta" => OptimizerKind::Adadelta { rho: 0.999 },
        other => {
            return Err(koopman_train::TrainError::InvalidArgument(format!(
                "unknown optimizer '{other}' (adam, adagrad, adadelta)"
            )))
        }
    };
    let seeds = number("--seeds", 1)?;
    let first = number("--first-seed", 0)?;
    let dev = Device::Cpu;
    let cfg = DeTrialConfig::paper(kind);
    let fits = [
        ("default", FitConfig::default()),
        ("paper-style", FitConfig::paper_style()),
        (
            "gram",
            FitConfig {
                solver: FitSolver::Gram,
                ..FitConfig::default()
            },
        ),
    ];
    for seed in first..first + seeds {
        let run = train_de(&cfg, seed, &dev, None)?;
        for (label, fc) in &fits {
            let o = evaluate_de(&run, &paper_partition(3), fc, &dev)?;
            println!(
                "{}",
                serde_json::json!({
                    "optimizer": kind.name(), "seed": seed, "fit": label,
                    "t_eq_over_T": o.t_eq.value / cfg.horizon as f64, "capped": o.t_eq.capped,
                    "line_t_eq_over_T": o.t_eq_baseline.value / cfg.horizon as f64,
                    "err_ratio": o.error.map(|e| e.median_ratio),
                    "err_norm": o.error.map(|e| e.norm_ratio),
                    "line_err_ratio": o.error_baseline.map(|e| e.median_ratio),
                    "line_err_norm": o.error_baseline.map(|e| e.norm_ratio),
                    "losses_t2_opt_ko_line": [o.loss_t2, o.loss_optimizer, o.loss_koopman, o.loss_baseline],
                    "opt_step_s": o.optimizer_step_seconds, "opt_teq_s": o.optimizer_seconds,
                    "fit_s": o.fit_seconds, "fit_first_s": o.fit_first_seconds,
                    "loop_s": o.loop_seconds, "loop_first_s": o.loop_first_seconds, "jump_s": o.jump_seconds,
                    "eig_s": o.diagonalize_seconds, "eigen_jump_s": o.eigen_seconds,
                    "step_eigen_gap": o.step_eigen_gap,
                    "speedup_loop_fit": o.speedup_loop(true), "speedup_loop": o.speedup_loop(false),
                    "speedup_jump": o.speedup_jump(false), "speedup_eigen": o.speedup_eigen(false),
                    "speedup_eigen_fit": o.speedup_eigen(true),
                })
            );
        }
    }
    Ok(())
}
