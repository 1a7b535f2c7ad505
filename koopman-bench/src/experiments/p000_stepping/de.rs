//! `stepping_de`: the NN differential-equation solver of paper 000 (S8.1, Figure 2), Koopman stepping against Adam / Adagrad / Adadelta and the straight line.

use super::torch_peer::{peer_python, DePeer};
use super::{pct, timing_note, weights_figure};
use crate::experiments::p000_stepping::trials::de_solver::{
    de_paths, evaluate_de, paper_partition, train_de, DeOutcome, DePaths, DeTrialConfig,
};
use crate::experiments::p000_stepping::trials::Operators;
use crate::experiments::{BySize, Experiment, Paper};
use crate::plot::{lines_svg, scatter_svg, Axes};
use crate::provenance::kernel_threads;
use crate::report::{sci, Comparison, ExperimentReport, RunContext, Table};
use crate::Result;
use indicatif::ProgressBar;
use koopman_train::stepping::metrics::median;
use koopman_train::stepping::{FitConfig, FitSolver, OptimizerKind};

/// Training steps the PyTorch peer times per thread count (after 50 warm-up steps).
const PEER_STEPS: usize = 1000;

/// Sizes of `stepping_de`.
#[derive(Clone, Copy, Debug)]
pub struct DeSizes {
    /// Seeds (trials per optimizer).
    pub seeds: usize,
    /// Every step count of the paper's schedule (t1, t2, T, the steps after t2) divided by this.
    pub divisor: usize,
}

/// Smoke / quick: the paper's schedule divided by 100 / 8; full: the paper's, with 25 seeds.
pub const SIZES: BySize<DeSizes> = BySize {
    smoke: DeSizes {
        seeds: 1,
        divisor: 100,
    },
    quick: DeSizes {
        seeds: 3,
        divisor: 8,
    },
    full: DeSizes {
        seeds: 25,
        divisor: 1,
    },
};

/// The registered experiment `stepping_de`.
pub struct SteppingDe;

/// The cut-off settings compared (label, config); the first is the default.
fn fit_variants() -> Vec<(String, FitConfig)> {
    let mut v = vec![
        ("default (rcond 1e-9)".to_string(), FitConfig::default()),
        (
            "paper-style (max(size) eps)".to_string(),
            FitConfig::paper_style(),
        ),
    ];
    for r in [1e-12, 1e-10, 1e-8, 1e-6] {
        v.push((
            format!("rcond {r:.0e}"),
            FitConfig {
                rcond: Some(r),
                ..FitConfig::default()
            },
        ));
    }
    v.push((
        "paper-style + unit-disk projection".to_string(),
        FitConfig {
            project_unit_disk: true,
            ..FitConfig::paper_style()
        },
    ));
    v.push((GRAM_LABEL.to_string(), gram()));
    v
}

const GRAM_LABEL: &str = "Gram / normal equations (rcond 1e-9, floored at sqrt(d eps))";

pub(super) fn gram() -> FitConfig {
    FitConfig {
        solver: FitSolver::Gram,
        ..FitConfig::default()
    }
}

struct Summary {
    success: f64,
    teq_ratio: f64,
    capped: usize,
    err: f64,
    err_norm: f64,
}

fn summarize(outs: &[DeOutcome], horizon: usize, baseline: bool) -> Summary {
    let n = outs.len().max(1) as f64;
    let te = |o: &DeOutcome| if baseline { o.t_eq_baseline } else { o.t_eq };
    let err = |o: &DeOutcome| if baseline { o.error_baseline } else { o.error };
    Summary {
        success: outs.iter().filter(|o| te(o).success()).count() as f64 / n,
        teq_ratio: median(
            &outs
                .iter()
                .map(|o| te(o).value / horizon as f64)
                .collect::<Vec<_>>(),
        ),
        capped: outs.iter().filter(|o| te(o).capped).count(),
        err: median(
            &outs
                .iter()
                .map(|o| err(o).map_or(f64::INFINITY, |e| e.median_ratio))
                .collect::<Vec<_>>(),
        ),
        err_norm: median(
            &outs
                .iter()
                .map(|o| err(o).map_or(f64::INFINITY, |e| e.norm_ratio))
                .collect::<Vec<_>>(),
        ),
    }
}

/// Figure 2 (b-e) of paper 000 for one optimizer (the paper shows Adadelta; Figs. S2-S3 the
/// others): the loss over the `T` steps past `t2` of the optimizer, Koopman stepping and the
/// straight line (first seed); `T_eq / T` of every seed, sorted; the change of the two most
/// dynamic weights from `w(t2)` along the three; and every weight's error at `t2 + T` against its
/// true change for the ten seeds with the smallest mean error.
fn figure_2(
    ctx: &RunContext,
    name: &str,
    p: &DePaths,
    outs: &[DeOutcome],
    horizon: usize,
) -> Result<Vec<String>> {
    let steps = Axes::new("optimizer steps past t2", "").x_range(0.0, horizon as f64);
    let mut files = vec![ctx.write_file(
        &format!("stepping_de_{name}_loss.svg"),
        &lines_svg(
            &format!("Fig. 2b: loss over T steps past t2, {name} (seed 0)"),
            &Axes {
                y_label: "loss".into(),
                ..steps.clone()
            },
            &[
                (name, &p.optimizer_loss),
                ("Koopman", &p.koopman_loss),
                ("straight line", &p.line_loss),
            ],
            &[],
        ),
    )?];
    let sorted = |f: &dyn Fn(&DeOutcome) -> f64| -> Vec<(f64, f64)> {
        let mut v: Vec<f64> = outs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len().max(1) as f64;
        v.into_iter()
            .enumerate()
            .map(|(i, y)| ((i as f64 + 0.5) / n, y))
            .collect()
    };
    let h = horizon as f64;
    files.push(ctx.write_file(
        &format!("stepping_de_{name}_teq.svg"),
        &scatter_svg(
            &format!("Fig. 2c: T_eq / T of every seed, sorted, {name}"),
            &Axes::new("share of seeds", "T_eq / T"),
            &[
                ("Koopman", &sorted(&|o| o.t_eq.value / h)),
                ("straight line", &sorted(&|o| o.t_eq_baseline.value / h)),
            ],
        ),
    )?);
    files.push(weights_figure(
        ctx,
        &format!("stepping_de_{name}_weights.svg"),
        &format!("Fig. 2d: the two most dynamic weights, {name} (seed 0)"),
        name,
        &p.weights,
        steps,
    )?);
    // Figure 2e: the ten seeds with the smallest mean error.
    let mean_error = |o: &DeOutcome| {
        o.per_weight.iter().map(|p| p.1).sum::<f64>() / o.per_weight.len().max(1) as f64
    };
    let mut best: Vec<&DeOutcome> = outs.iter().collect();
    best.sort_by(|a, b| mean_error(a).total_cmp(&mean_error(b)));
    let points: Vec<(f64, f64)> = best
        .iter()
        .take(10)
        .flat_map(|o| o.per_weight.iter().copied())
        .collect();
    files.push(ctx.write_file(
        &format!("stepping_de_{name}_errors.svg"),
        &scatter_svg(
            &format!(
                "Fig. 2e: error at t2 + T vs true change, all weights, {} best seeds, {name}",
                best.len().min(10)
            ),
            &Axes::new(
                "|w_true(t2 + T) - w_true(t2)|",
                "|w_Koopman(t2 + T) - w_true(t2 + T)|",
            ),
            &[("weights", &points)],
        ),
    )?);
    Ok(files)
}

impl Experiment for SteppingDe {
    fn name(&self) -> &'static str {
        "stepping_de"
    }

    fn paper(&self) -> Paper {
        Paper::KoopmanTraining
    }

    fn description(&self) -> &'static str {
        "NN DE solver: Koopman stepping vs Adam/Adagrad/Adadelta and the straight line; speedups"
    }

    fn broken_input(&self) -> &'static str {
        "the identity operator in place of the fitted Koopman operators (the weights stay at w(t2), so T_eq = 0)"
    }

    fn run(&self, ctx: &RunContext, progress: &ProgressBar) -> Result<ExperimentReport> {
        let start = std::time::Instant::now();
        let dev = &ctx.device;
        let DeSizes { seeds, divisor } = *SIZES.at(ctx.size);
        let scale = |c: DeTrialConfig| -> DeTrialConfig {
            DeTrialConfig {
                t1: c.t1 / divisor,
                t2: c.t2 / divisor,
                horizon: c.horizon / divisor,
                after: c.after / divisor,
                operators: Operators::for_run(ctx),
                ..c
            }
        };
        let optimizers = [
            (
                OptimizerKind::Adam {
                    betas: (0.999, 0.9999),
                },
                0.84,
                0.85,
                98.0,
            ),
            (OptimizerKind::Adagrad, 0.92, 1.00, 132.0),
            (OptimizerKind::Adadelta { rho: 0.999 }, 1.00, 1.00, 141.0),
        ];
        let variants = fit_variants();
        let spec = paper_partition(3);
        let probe = scale(DeTrialConfig::paper(OptimizerKind::Adagrad));
        progress.set_length((optimizers.len() * seeds * (probe.t2 + probe.after)) as u64);
        progress.set_message("DE solver");
        let mut comparisons = Vec::new();
        let mut main_rows = Vec::new();
        let mut speed_rows = Vec::new();
        let mut cut_rows = Vec::new();
        let mut files = Vec::new();
        // The paper's Table 1 per optimizer: success, median T_eq / T, median speedup.
        for (kind, p_succ, p_teq, p_speed) in optimizers {
            let cfg = scale(DeTrialConfig::paper(kind));
            let mut per_variant: Vec<Vec<DeOutcome>> = vec![Vec::new(); variants.len()];
            let name = kind.name();
            let mut paths = None;
            for s in 0..seeds {
                let run = train_de(&cfg, ctx.seed + s as u64, dev, Some(progress))?;
                for (k, (_, fc)) in variants.iter().enumerate() {
                    per_variant[k].push(evaluate_de(&run, &spec, fc, dev)?);
                }
                if s == 0 {
                    paths = Some(de_paths(&run, &spec, &variants[0].1, dev)?);
                }
            }
            let outs = &per_variant[0];
            if let Some(p) = &paths {
                files.extend(figure_2(ctx, name, p, outs, cfg.horizon)?);
            }
            let ko = summarize(outs, cfg.horizon, false);
            let base = summarize(outs, cfg.horizon, true);
            for ((label, _), o) in variants.iter().zip(&per_variant) {
                let s = summarize(o, cfg.horizon, false);
                cut_rows.push(vec![
                    name.to_string(),
                    label.clone(),
                    pct(s.success),
                    format!("{:.3}", s.teq_ratio),
                    sci(s.err),
                    sci(s.err_norm),
                    o.iter().map(|x| x.projected).sum::<usize>().to_string(),
                ]);
            }
            main_rows.push(vec![
                name.to_string(),
                pct(ko.success),
                format!("{:.3} ({} capped)", ko.teq_ratio, ko.capped),
                sci(ko.err),
                sci(ko.err_norm),
                pct(base.success),
                format!("{:.3}", base.teq_ratio),
                sci(base.err),
                sci(base.err_norm),
            ]);
            let gram_outs = &per_variant[variants.len() - 1];
            let mut speeds = Vec::new();
            for (solver, o) in [("svd", outs), ("gram", gram_outs)] {
                let sp =
                    |f: &dyn Fn(&DeOutcome) -> f64| median(&o.iter().map(f).collect::<Vec<_>>());
                let row = [
                    sp(&|o| o.speedup_loop(true)),
                    sp(&|o| o.speedup_loop(false)),
                    sp(&|o| o.speedup_jump(true)),
                    sp(&|o| o.speedup_jump(false)),
                    sp(&|o| o.speedup_eigen(true)),
                    sp(&|o| o.speedup_eigen(false)),
                ];
                speed_rows.push(vec![
                    name.to_string(),
                    solver.to_string(),
                    sci(sp(&|o| o.optimizer_step_seconds)),
                    sci(sp(&|o| o.optimizer_seconds)),
                    sci(sp(&|o| o.fit_seconds)),
                    sci(sp(&|o| o.fit_first_seconds)),
                    sci(sp(&|o| o.loop_seconds)),
                    sci(sp(&|o| o.jump_seconds)),
                    sci(sp(&|o| o.diagonalize_seconds)),
                    sci(sp(&|o| o.eigen_seconds)),
                    sci(sp(&|o| o.step_eigen_gap)),
                    format!("{:.0}x", row[0]),
                    format!("{:.0}x", row[1]),
                    format!("{:.0}x", row[2]),
                    format!("{:.0}x", row[3]),
                    format!("{:.0}x", row[4]),
                    format!("{:.0}x", row[5]),
                ]);
                speeds.push(row);
            }
            let [loop_fit, _, _, jump_nofit, _, eigen_nofit] = speeds[0];
            let gram_loop_fit = speeds[1][0];
            // The first (cold) fit of each seed in place of the median of the repeated fits.
            let cold = median(
                &outs
                    .iter()
                    .map(|o| o.optimizer_seconds / (o.loop_seconds + o.fit_first_seconds))
                    .collect::<Vec<_>>(),
            );
            comparisons.push(Comparison {
                quantity: format!(
                    "{name}: success, T_eq > 0 (Koopman / straight line; {seeds} seeds)"
                ),
                paper: format!("Table 1: {}", pct(p_succ)),
                measured: format!("{} / {}", pct(ko.success), pct(base.success)),
                holds: Some(ko.success >= p_succ),
            });
            comparisons.push(Comparison {
                quantity: format!(
                    "{name}: median T_eq/T (Koopman / straight line; ours: within 0.05 of the paper's two-digit median)"
                ),
                paper: format!("Table 1: {p_teq:.2}"),
                measured: format!("{:.3} / {:.3}", ko.teq_ratio, base.teq_ratio),
                holds: Some(ko.teq_ratio >= p_teq - 0.05),
            });
            comparisons.push(Comparison {
                quantity: format!(
                    "{name}: median |error| / |true change| over t2..t2+T (Koopman / straight line; all seeds, the paper's ten best)"
                ),
                paper: if name == "adadelta" {
                    "Sec. 4.2, Fig. 2e: \"the median ratio between them is 0.0044\""
                } else {
                    "- (Adadelta only)"
                }
                .into(),
                measured: format!("{} / {}", sci(ko.err), sci(base.err)),
                holds: (name == "adadelta").then_some(ko.err <= 0.0044),
            });
            // The paper's framework: the same T_eq steps of PyTorch's optimizer, if a Python
            // with torch is at hand (never at smoke size).
            let peer = peer_python(ctx).and_then(|python| {
                progress.set_message(format!("PyTorch peer, {name}"));
                let file = format!("stepping_de_torch_peer_{name}.json");
                std::fs::create_dir_all(&ctx.out_dir).map_err(|e| e.to_string())?;
                let peer = DePeer::run(
                    python,
                    kind,
                    PEER_STEPS,
                    kernel_threads(),
                    ctx.seed,
                    &ctx.out_dir.join(&file),
                )
                .map_err(|e| format!("failed: {e}"))?;
                files.push(file);
                Ok(peer)
            });
            let torch_measured = match &peer {
                Ok(p) => {
                    let ours = median(
                        &outs
                            .iter()
                            .map(|o| o.optimizer_step_seconds)
                            .collect::<Vec<_>>(),
                    );
                    let speedup = median(
                        &outs
                            .iter()
                            .map(|o| {
                                p.equivalent_seconds(o.t_eq.value)
                                    / (o.loop_seconds + o.fit_seconds)
                            })
                            .collect::<Vec<_>>(),
                    );
                    format!(
                        "{speedup:.0}x (PyTorch {} s per step at {} thread(s), candle {} s)",
                        sci(p.step_seconds_median),
                        p.threads,
                        sci(ours)
                    )
                }
                Err(why) => why.clone(),
            };
            comparisons.push(Comparison {
                quantity: format!(
                    "{name}: median speedup against PyTorch's {name} (peer, no verdict): T_eq steps of the PyTorch peer against T step-wise Koopman steps incl. the default fit"
                ),
                paper: format!("Table 1: {p_speed:.0}x (against PyTorch's {name})"),
                measured: torch_measured,
                holds: None,
            });
            comparisons.push(Comparison {
                quantity: format!(
                    "{name}: median speedup, T_eq optimizer steps against T step-wise Koopman steps incl. the default (SVD) fit, same process; \
                     beside it (no verdict): cold first fit, Gram fit, jumps excl. fit (squaring / eigen)"
                ),
                paper: format!("Table 1: {p_speed:.0}x (against PyTorch's {name})"),
                measured: format!(
                    "{loop_fit:.0}x; cold {cold:.0}x, Gram {gram_loop_fit:.0}x; jumps {jump_nofit:.0}x / {eigen_nofit:.0}x"
                ),
                holds: Some(loop_fit >= p_speed),
            });
        }
        let c = scale(DeTrialConfig::paper(OptimizerKind::Adagrad));
        Ok(ExperimentReport {
            name: self.name().into(),
            title: "Koopman stepping of the NN DE solver".into(),
            paper: self.paper().to_string(),
            comparisons,
            tables: vec![
                Table {
                    title: format!(
                        "Koopman (default cut-off) vs straight line, {seeds} seeds, t1 = {}, t2 = {}, T = {}",
                        c.t1, c.t2, c.horizon
                    ),
                    header: [
                        "optimizer",
                        "success",
                        "median T_eq/T",
                        "median err ratio",
                        "median norm err ratio",
                        "line success",
                        "line T_eq/T",
                        "line err ratio",
                        "line norm err ratio",
                    ]
                    .map(String::from)
                    .to_vec(),
                    rows: main_rows,
                },
                Table {
                    title: "Timings (medians over seeds, seconds) and speedups = time of T_eq optimizer steps / Koopman time".into(),
                    header: [
                        "optimizer",
                        "fit solver",
                        "optimizer step",
                        "T_eq optimizer steps",
                        "fit",
                        "fit, first run",
                        "step-wise evolution",
                        "jump (squaring)",
                        "eigendecompositions",
                        "jump (eigen)",
                        "max |step - eigen|",
                        "loop incl. fit",
                        "loop excl. fit",
                        "squaring incl. fit",
                        "squaring excl. fit",
                        "eigen incl. fit + eig",
                        "eigen excl. fit",
                    ]
                    .map(String::from)
                    .to_vec(),
                    rows: speed_rows,
                },
                Table {
                    title: "Pseudo-inverse cut-off (relative to s_max) and unit-disk projection".into(),
                    header: [
                        "optimizer",
                        "fit",
                        "success",
                        "median T_eq/T",
                        "median err ratio",
                        "median norm err ratio",
                        "eigenvalues projected",
                    ]
                    .map(String::from)
                    .to_vec(),
                    rows: cut_rows,
                },
            ],
            notes: vec![
                "T_eq uses the paper's fractional definition (S10) on per-step losses; the optimizer runs 2T steps past t2, so T_eq/T up to 2 is measured ('capped' = never reached).".into(),
                "Partition as in the paper: quasi-node q = 2 for layer 1 (= node), node operators for layers 2 and 3 (12 operators of size 2, 11, 11 fitted in one batched call per size).".into(),
                timing_note(),
                format!("PyTorch peer (optional, quick and full sizes, when a Python with torch is at hand): peers/torch_de_peer.py trains the same solver in PyTorch (float64, 1:10:10:2 sigmoid MLP, time derivatives by torch.autograd.grad with create_graph, the same optimizer, hyper-parameters and 8 / (1000 + t) schedule) and times {PEER_STEPS} steps after 50 warm-up steps, at 1 thread and at this run's thread count; the faster median step time, times each seed's T_eq, is the PyTorch side of its speedup (its report: stepping_de_torch_peer_<optimizer>.json). The paper's 98 / 132 / 141x were measured against PyTorch's optimizers; the verdict row stays the same-process comparison against candle's."),
                "Error ratio: per weight |w_pred - w_true(t2+T)| / |w_true(t2+T) - w_true(t2)|, median over weights then seeds (the paper's 0.0044); norm ratio: the same with Euclidean norms over all weights.".into(),
                "Quick size divides t1, t2, T and the steps past t2 by 8 (smoke: by 100; schedule unchanged); --full uses the paper's setting (t1 = 35,000, t2 = 45,000, T = 2,500; 50,000 steps are run, the paper's last 10,000 are not needed) and 25 seeds.".into(),
            ],
            files,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}
