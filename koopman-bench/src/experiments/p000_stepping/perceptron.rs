//! `stepping_perceptron`: the perceptron of paper 000 (S8.2, Fig. S4): steps to asymptotic performance with single-weight, node and network partitions.

use crate::experiments::p000_stepping::trials::perceptron::{
    run_perceptron, PerceptronConfig, PerceptronResult,
};
use crate::experiments::p000_stepping::trials::Operators;
use crate::experiments::{BySize, Experiment, Paper};
use crate::plot::{lines_svg, Axes};
use crate::report::{Comparison, ExperimentReport, RunContext, Table};
use crate::Result;
use indicatif::ProgressBar;

/// Sizes of `stepping_perceptron`.
#[derive(Clone, Copy, Debug)]
pub struct PerceptronSizes {
    /// Simulations (independent perceptrons).
    pub simulations: usize,
    /// Training steps of each (the tables read the error at t2 + 200 and the last step).
    pub steps: usize,
}

/// Full: the paper's 1,000 simulations.
pub const SIZES: BySize<PerceptronSizes> = BySize {
    smoke: PerceptronSizes {
        simulations: 30,
        steps: 400,
    },
    quick: PerceptronSizes {
        simulations: 300,
        steps: 1000,
    },
    full: PerceptronSizes {
        simulations: 1000,
        steps: 1000,
    },
};

/// The registered experiment `stepping_perceptron`.
pub struct SteppingPerceptron;

impl Experiment for SteppingPerceptron {
    fn name(&self) -> &'static str {
        "stepping_perceptron"
    }

    fn paper(&self) -> Paper {
        Paper::KoopmanTraining
    }

    fn description(&self) -> &'static str {
        "perceptron (S8): steps to asymptotic performance, single-weight vs node vs network operators"
    }

    fn broken_input(&self) -> &'static str {
        "the identity operator in place of the fitted Koopman operators (the weights stay at w(t2) and never reach the rule's asymptote)"
    }

    fn run(&self, ctx: &RunContext, progress: &ProgressBar) -> Result<ExperimentReport> {
        let start = std::time::Instant::now();
        progress.set_length(1);
        progress.set_message("perceptron");
        let cfg = PerceptronConfig {
            simulations: SIZES.at(ctx.size).simulations,
            steps: SIZES.at(ctx.size).steps,
            seed: ctx.seed,
            operators: Operators::for_run(ctx),
            ..Default::default()
        };
        let r = run_perceptron(&cfg, &ctx.device)?;
        progress.inc(1);
        // Asymptotic performance: within 0.005 of the rule's final error (the mean of its last
        // 100 steps).
        let threshold = r.asymptote + 0.005;
        let steps: Vec<Option<usize>> = (0..r.curves.len())
            .map(|m| r.steps_to(m, threshold))
            .collect();
        let show = |s: Option<usize>| s.map_or(format!("> {}", cfg.steps), |v| v.to_string());
        let rows = r
            .curves
            .iter()
            .zip(&steps)
            .map(|((name, c), s)| {
                vec![
                    name.clone(),
                    show(*s),
                    format!("{:.4}", c[cfg.t2 + 50]),
                    format!("{:.4}", c[cfg.t2 + 200]),
                    format!("{:.4}", c[cfg.steps - 1]),
                ]
            })
            .collect();
        // Threshold-free view: the first step from which each method stays at or below fixed
        // error levels (the rule has not converged by step 1000, so its last-100-step mean is a
        // moving target).
        let levels = [0.15, 0.10, 0.05];
        let level_rows = r
            .curves
            .iter()
            .enumerate()
            .map(|(m, (name, _))| {
                let mut row = vec![name.clone()];
                row.extend(levels.iter().map(|&l| show(r.steps_to(m, l))));
                row.push(format!("{:.4}", r.movement[m]));
                row
            })
            .collect();
        let rule_curve = &r.curves[0].1;
        let files = perceptron_figures(ctx, &cfg, &r)?;
        let by = |m: usize| steps[m].unwrap_or(usize::MAX);
        let all_faster = (1..4).all(|m| by(m) <= by(0));
        let single_fastest = by(1) <= by(2) && by(1) <= by(3) && by(1) < by(0);
        Ok(ExperimentReport {
            name: self.name().into(),
            title: "Perceptron: single-weight vs node vs network Koopman operators".into(),
            paper: self.paper().to_string(),
            comparisons: vec![
                Comparison {
                    quantity: "every Koopman variant reaches asymptotic performance in fewer steps than the rule".into(),
                    paper: "Fig. S4d, S8.2: \"All three implementations of Koopman training led to a reduction in the number of training steps needed to reach asymptotic performance\"".into(),
                    measured: format!(
                        "rule {} / single {} / node {} / network {} steps",
                        show(steps[0]),
                        show(steps[1]),
                        show(steps[2]),
                        show(steps[3])
                    ),
                    holds: Some(all_faster),
                },
                Comparison {
                    quantity: "single-weight operators get there first".into(),
                    paper: "S8.2: \"the Single Weight Koopman training approach felt this advantage the strongest\"".into(),
                    measured: if single_fastest { "yes" } else { "no" }.into(),
                    holds: Some(single_fastest),
                },
            ],
            tables: vec![Table {
                title: format!(
                    "Mean expected error over {} simulations; Koopman from step {} (fit on steps 0..={}); asymptote {:.4}, threshold {:.4}",
                    cfg.simulations, cfg.t2, cfg.t2, r.asymptote, threshold
                ),
                header: [
                    "method".to_string(),
                    "steps to asymptotic performance".to_string(),
                    format!("error at step {}", cfg.t2 + 50),
                    format!("error at step {}", cfg.t2 + 200),
                    format!("error at step {}", cfg.steps - 1),
                ]
                .to_vec(),
                rows,
            },
            Table {
                title: format!(
                    "Steps until the mean error stays at or below fixed levels, and the median |w(step {}) - w(step {})| over all weights",
                    cfg.steps, cfg.t2
                ),
                header: [
                    "method".to_string(),
                    "error <= 0.15".to_string(),
                    "error <= 0.10".to_string(),
                    "error <= 0.05".to_string(),
                    "median weight movement after the fit".to_string(),
                ]
                .to_vec(),
                rows: level_rows,
            },
            Table {
                title: "Fitted operators' eigenvalue moduli: median over the operators of the k-th largest, and the share with one above 1".into(),
                header: [
                    "method".to_string(),
                    "median |lambda_k|, k = 1 .. d".to_string(),
                    "operators with |lambda| > 1".to_string(),
                ]
                .to_vec(),
                rows: r
                    .spectra
                    .iter()
                    .chain(r.node_counting_reference.iter())
                    .map(|sp| {
                        let moduli: Vec<String> =
                            sp.median_moduli.iter().map(|m| format!("{m:.4}")).collect();
                        vec![
                            sp.method.clone(),
                            moduli.join(" "),
                            format!("{:.1}%", 100.0 * sp.unstable_share),
                        ]
                    })
                    .collect(),
            }],
            notes: vec![
                "Error: the exact expected fraction of wrong output bits over the 16 input patterns (inputs active with probability 1/4), averaged over simulations (the paper samples it and smooths with a 50-step window).".into(),
                "All simulations' operators of one size are fitted in one batched call.".into(),
                "Setup as in Algorithm 1 / S8: t1 = 0, t2 = 100, operators fitted on the snapshots 0..=100 of each simulation (F = w(0..99), F' = w(1..100)), then evolved step by step from w(100); step counts include the 100 rule steps. A single-weight operator is the scalar least-squares ratio sum w(t+1) w(t) / sum w(t)^2 of that weight's own trajectory (m = 1 in S1).".into(),
                format!(
                    "Why the step count misses: the rule has not converged at step {} (error {:.4} at step {} vs {:.4} mean of the last {} steps; measured once with 300 simulations, seed 0: a 4,000-step run reaches error 0 by step 3,000), so the asymptote is a moving target near the end of the run. Single-weight operators lead the rule through the transient (second table) but fall behind near the end: each rate is extrapolated from ~3.5 irrelevant-weight updates in 100 steps (an update needs both irrelevant inputs on and both relevant off, p = 0.035), so simulations with a slow early rate lag; and an irrelevant weight's decay w(t2) lambda^t starts at the rule's rate but slows as the weight shrinks (the rule removes lr = 0.005 per update until the pair is right, at any weight), so it falls behind the rule's straight line before the pair is right (error at step 999 in the first table).",
                    cfg.steps,
                    rule_curve[cfg.steps - 1],
                    cfg.steps - 1,
                    r.asymptote,
                    cfg.steps / 10
                ),
                format!(
                    "Why node and network operators stall: under the rule a node's four weights are its level plus the update counts of its inputs (the two irrelevant weights move together; measured update rates over steps 0..{}: {:.3} per step for a relevant weight, {:.3} for an irrelevant one), so the snapshots span the constant direction and the fit is a least-squares autoregression of the count increments on the counts with an intercept. The counts' deviations from their trend are driftless random walks, and over {} snapshots that regression has the Dickey-Fuller small-sample bias: slopes below 1. The operators keep an eigenvalue ~1 (the level) and pull the counts back with eigenvalues well below 1, i.e. towards a fixed point next to w(t2); the weights then barely move (movement column), the error stalls, and the few operators with an eigenvalue above 1 diverge. The row 'node, counting processes' of the third table checks this in the same run: node operators fitted in the same way to synthetic trajectories where every update is an independent coin flip at those rates, with no perceptron at all, get the same spectrum. A single-weight operator has no intercept (w(t+1) = lambda w(t), with w ~ 0.75 far from 0), so it keeps the drift. Tried in a numpy prototype (1,000 simulations): an explicit affine term changes nothing (the constant is already in the span), and cut-offs of 1e-3 .. 1e-1 * s_max make node and network operators worse (error at step 999 0.22 against 0.13). The paper's S8.3 warns about such uncorrelated weight changes.",
                    cfg.t2, r.early_update_rates[0], r.early_update_rates[1], cfg.t2
                ),
                "Figures: stepping_perceptron_error.svg (mean error per step, as Fig. S4d) and stepping_perceptron_weights_{relevant,irrelevant}.svg (the first simulation's weights from input 1 and input 3 to output 1 under each method, as Fig. S4b; a relevant weight does its job above 1, an irrelevant one below 0.5).".into(),
            ],
            files,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}

/// Fig. S4d (mean error per step) and S4b (one simulation's relevant and irrelevant weight)
/// of a perceptron run, written to the output folder; returns the file names.
fn perceptron_figures(
    ctx: &RunContext,
    cfg: &PerceptronConfig,
    r: &PerceptronResult,
) -> Result<Vec<String>> {
    let mut files = vec![error_figure(
        ctx,
        "stepping_perceptron_error.svg",
        &format!(
            "perceptron: mean expected error (%) per step, {} simulations",
            cfg.simulations
        ),
        cfg,
        r,
    )?];
    for (kind, index) in [("relevant", 0), ("irrelevant", 2)] {
        files.push(method_figure(
            ctx,
            &format!("stepping_perceptron_weights_{kind}.svg"),
            format!(
                "perceptron, simulation 1: {kind} weight (input {} to output 1) per step",
                index + 1
            ),
            "weight",
            cfg,
            r,
            r.example_weights
                .iter()
                .map(|w| w.iter().map(|row| row[index]).collect())
                .collect(),
        )?);
    }
    Ok(files)
}

/// Fig. S4d of a perceptron run: every method's mean error (%) per step, with the step at which
/// Koopman stepping takes over marked. Returns the file's name.
pub(super) fn error_figure(
    ctx: &RunContext,
    file: &str,
    title: &str,
    cfg: &PerceptronConfig,
    r: &PerceptronResult,
) -> Result<String> {
    method_figure(
        ctx,
        file,
        title.to_string(),
        "mean expected error (%)",
        cfg,
        r,
        r.curves
            .iter()
            .map(|(_, c)| c.iter().map(|e| 100.0 * e).collect())
            .collect(),
    )
}

/// One curve per method of `r` (its `curves`' names) from a per-method value per step.
fn method_figure(
    ctx: &RunContext,
    file: &str,
    title: String,
    y_label: &str,
    cfg: &PerceptronConfig,
    r: &PerceptronResult,
    values: Vec<Vec<f64>>,
) -> Result<String> {
    let series: Vec<(&str, &[f64])> = r
        .curves
        .iter()
        .zip(&values)
        .map(|((method, _), v)| (method.as_str(), v.as_slice()))
        .collect();
    ctx.write_file(
        file,
        &lines_svg(
            &title,
            &Axes::new("step", y_label),
            &series,
            &[("Koopman from here", cfg.t2 as f64)],
        ),
    )
}
