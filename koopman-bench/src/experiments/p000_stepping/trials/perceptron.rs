//! The perceptron of paper 000 (supplement S8, Fig. S4): single-weight vs node vs network
//! Koopman operators.
//!
//! Four binary inputs (each active with probability 1/4), two outputs with a step activation
//! `y_i = [w_i . x > 1]`; output 1 learns the OR of inputs 1-2, output 2 the OR of inputs 3-4.
//! The perceptron rule `w -= lr (y_hat - y) x^T` (lr 0.005) runs from weights drawn in
//! `[0.5, 1]`. After `t2` training steps the weights of steps `0 ..= t2` are fitted with
//! single-weight (`d = 1`), node (`d = 4`) or network (`d = 8`) operators and evolved by them
//! instead of the rule. All simulations share one recorder and one batched fit per operator
//! size. The error at every step is the exact expected fraction of wrong output bits over the
//! 16 input patterns, averaged over the simulations.
//!
//! ```
//! use koopman_bench::experiments::p000_stepping::trials::perceptron::{run_perceptron, PerceptronConfig};
//!
//! # fn main() -> koopman_train::Result<()> {
//! let cfg = PerceptronConfig { simulations: 20, steps: 300, ..Default::default() };
//! let r = run_perceptron(&cfg, &candle_core::Device::Cpu)?;
//! assert_eq!(r.curves.len(), 4);
//! assert_eq!(r.movement.len(), 4);
//! assert_eq!(r.example_weights[1].len(), 300); // single weight: one row per step
//! assert!(r.curves[0].1[299] < r.curves[0].1[0]); // the rule learns
//! # Ok(()) }
//! ```

use super::Operators;
use candle_core::Device;
use koopman_core::c64;
use koopman_train::stepping::fit::{fit, Evolution, FitConfig};
use koopman_train::stepping::metrics::median;
use koopman_train::stepping::partition::PartitionPlan;
use koopman_train::stepping::recorder::Recorder;
use koopman_train::{Result, TrainError};
use rand::{Rng, SeedableRng};

/// Settings (defaults: the paper's Table S3, Koopman after 100 steps).
#[derive(Clone, Debug, PartialEq)]
pub struct PerceptronConfig {
    /// Learning rate.
    pub lr: f64,
    /// Probability that an input unit is active.
    pub p_active: f64,
    /// Training steps.
    pub steps: usize,
    /// Independent simulations.
    pub simulations: usize,
    /// Steps of the perceptron rule before Koopman stepping takes over (`t1 = 0`).
    pub t2: usize,
    /// Fit settings.
    pub fit: FitConfig,
    /// Seed.
    pub seed: u64,
    /// What evolves the weights past `t2` (the fitted operators unless a verdict test breaks it).
    pub operators: Operators,
}

impl Default for PerceptronConfig {
    fn default() -> Self {
        Self {
            lr: 0.005,
            p_active: 0.25,
            steps: 1000,
            simulations: 1000,
            t2: 100,
            fit: FitConfig::default(),
            seed: 0,
            operators: Operators::Fitted,
        }
    }
}

impl PerceptronConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if !(self.lr.is_finite() && self.lr > 0.0 && (0.0..=1.0).contains(&self.p_active)) {
            return Err(TrainError::InvalidArgument(
                "lr must be > 0 and p_active in [0, 1]".into(),
            ));
        }
        if self.simulations == 0 || self.t2 < 9 || self.t2 >= self.steps {
            return Err(TrainError::InvalidArgument(format!(
                "need >= 1 simulation and 9 <= t2 < steps (network operators are 8 x 8), got {} and t2 = {}, steps = {}",
                self.simulations, self.t2, self.steps
            )));
        }
        Ok(())
    }
}

/// Mean error curves: `("perceptron" | "single weight" | "node" | "network", error per step)`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PerceptronResult {
    /// Error at steps `0 .. steps` for each method.
    pub curves: Vec<(String, Vec<f64>)>,
    /// The final error of the perceptron rule (mean of its last 10% of steps).
    pub asymptote: f64,
    /// Median absolute change of a weight from step `t2` to step `steps`, per method (same order
    /// as `curves`): how far each method moves the weights after the fit.
    pub movement: Vec<f64>,
    /// The first simulation's eight weights (row-major 2 x 4: output 1 from inputs 1-4, then
    /// output 2) at steps `0 .. steps`, per method (same order as `curves`), as in Fig. S4b.
    pub example_weights: Vec<Vec<[f64; 8]>>,
    /// The fitted operators' spectra, one entry per Koopman method (the methods of `curves`
    /// after the rule).
    pub spectra: Vec<OperatorSpectra>,
    /// Share of the rule's steps `0 .. t2` in which a relevant / an irrelevant weight changed.
    pub early_update_rates: [f64; 2],
    /// Reference for the node operators: node operators fitted in the same way to synthetic
    /// trajectories from the same initial weights in which every update is an independent coin
    /// flip at `early_update_rates` (relevant weights each on their own, the two irrelevant
    /// weights of a node together, as under the rule). Matching spectra mean the node
    /// operators' eigenvalues come from fitting counting processes by least squares, not from
    /// the perceptron's weight dynamics.
    pub node_counting_reference: OperatorSpectra,
}

/// Eigenvalue moduli of one method's operators (all simulations).
#[derive(Clone, Debug, serde::Serialize)]
pub struct OperatorSpectra {
    /// The method (`"single weight"`, `"node"` or `"network"`).
    pub method: String,
    /// Median over the operators of the k-th largest eigenvalue modulus, `k = 0 .. d`.
    pub median_moduli: Vec<f64>,
    /// Share of the operators with an eigenvalue of modulus above `1 + 1e-9` (they diverge).
    pub unstable_share: f64,
}

impl OperatorSpectra {
    /// Summarises the eigenvalues of a method's operators (one list per operator, all of one
    /// size).
    fn of(method: &str, eigenvalues: &[Vec<c64>]) -> Result<Self> {
        let d = eigenvalues.first().map_or(0, Vec::len);
        if d == 0 || eigenvalues.iter().any(|e| e.len() != d) {
            return Err(TrainError::InvalidArgument(format!(
                "{method}: operators of unequal or zero size"
            )));
        }
        let sorted: Vec<Vec<f64>> = eigenvalues
            .iter()
            .map(|e| {
                let mut m: Vec<f64> = e.iter().map(|z| z.norm()).collect();
                m.sort_by(|a, b| b.total_cmp(a));
                m
            })
            .collect();
        let median_moduli = (0..d)
            .map(|k| median(&sorted.iter().map(|m| m[k]).collect::<Vec<_>>()))
            .collect();
        let unstable = sorted.iter().filter(|m| m[0] > 1.0 + 1e-9).count();
        Ok(Self {
            method: method.to_string(),
            median_moduli,
            unstable_share: unstable as f64 / sorted.len() as f64,
        })
    }
}

impl PerceptronResult {
    /// First step from which the method's mean error stays at or below `threshold`.
    pub fn steps_to(&self, method: usize, threshold: f64) -> Option<usize> {
        let c = &self.curves.get(method)?.1;
        let last_above = c.iter().rposition(|&e| e > threshold);
        match last_above {
            None => Some(0),
            Some(k) if k + 1 < c.len() => Some(k + 1),
            Some(_) => None,
        }
    }
}

/// Whether input `input` (0..4) is relevant to output `output` (0..2): output i is the OR of
/// inputs 2i and 2i + 1.
fn is_relevant(output: usize, input: usize) -> bool {
    input / 2 == output
}

/// Expected fraction of wrong output bits of weights `w` (2 x 4, row-major).
fn expected_error(w: &[f64], p: f64) -> f64 {
    let mut err = 0.0;
    for pattern in 0..16u32 {
        let x: Vec<f64> = (0..4).map(|k| ((pattern >> k) & 1) as f64).collect();
        let active = x.iter().filter(|&&v| v > 0.0).count() as i32;
        let prob = p.powi(active) * (1.0 - p).powi(4 - active);
        for i in 0..2 {
            let y = if x[2 * i] + x[2 * i + 1] > 0.0 {
                1.0
            } else {
                0.0
            };
            let s: f64 = (0..4).map(|k| w[i * 4 + k] * x[k]).sum();
            let yh = if s > 1.0 { 1.0 } else { 0.0 };
            if yh != y {
                err += prob * 0.5;
            }
        }
    }
    err
}

/// Runs the perceptron rule and the three Koopman variants; see the [module docs](self).
pub fn run_perceptron(config: &PerceptronConfig, device: &Device) -> Result<PerceptronResult> {
    config.validate()?;
    let s = config.simulations;
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let mut w: Vec<f64> = (0..s * 8).map(|_| rng.random_range(0.5..1.0)).collect();
    let mut rec = Recorder::with_layout(vec![("0.weight".into(), vec![s * 2, 4])])?;
    let mean_error = |w: &[f64]| -> f64 {
        w.chunks(8)
            .map(|c| expected_error(c, config.p_active))
            .sum::<f64>()
            / s as f64
    };
    let first = |w: &[f64]| -> [f64; 8] {
        let mut a = [0.0; 8];
        a.copy_from_slice(&w[..8]);
        a
    };
    let initial = w.clone();
    // Updates of relevant / irrelevant weights during steps 0 .. t2.
    let mut early_moves = [0usize; 2];
    let mut rule = Vec::with_capacity(config.steps);
    let mut rule_weights = Vec::with_capacity(config.steps);
    let mut at_t2 = Vec::new();
    for t in 0..config.steps {
        if t <= config.t2 {
            rec.push(t, &w)?;
        }
        if t == config.t2 {
            at_t2 = w.clone();
        }
        rule.push(mean_error(&w));
        rule_weights.push(first(&w));
        for sim in w.chunks_mut(8) {
            let x: Vec<f64> = (0..4)
                .map(|_| {
                    if rng.random_bool(config.p_active) {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect();
            for i in 0..2 {
                let y = if x[2 * i] + x[2 * i + 1] > 0.0 {
                    1.0
                } else {
                    0.0
                };
                let sum: f64 = (0..4).map(|k| sim[i * 4 + k] * x[k]).sum();
                let yh = if sum > 1.0 { 1.0 } else { 0.0 };
                for k in 0..4 {
                    let delta = config.lr * (yh - y) * x[k];
                    if t < config.t2 && delta != 0.0 {
                        early_moves[usize::from(!is_relevant(i, k))] += 1;
                    }
                    sim[i * 4 + k] -= delta;
                }
            }
        }
    }
    let n = s * 8;
    let groups = |size: usize| -> Vec<Vec<usize>> {
        (0..n / size)
            .map(|g| (g * size..(g + 1) * size).collect())
            .collect()
    };
    let moved = |end: &[f64]| -> f64 {
        let mut d: Vec<f64> = end.iter().zip(&at_t2).map(|(a, b)| (a - b).abs()).collect();
        d.sort_by(f64::total_cmp);
        d[d.len() / 2]
    };
    let mut movement = vec![moved(&w)];
    let mut curves = vec![("perceptron".to_string(), rule.clone())];
    let mut example_weights = vec![rule_weights.clone()];
    let mut spectra = Vec::new();
    let node_plan = PartitionPlan::from_groups(n, groups(4))?;
    let single_plan = PartitionPlan::from_groups(n, groups(1))?;
    let network_plan = PartitionPlan::from_groups(n, groups(8))?;
    for (name, plan) in [
        ("single weight", &single_plan),
        ("node", &node_plan),
        ("network", &network_plan),
    ] {
        let k = fit(&rec, plan, 0, config.t2, &config.fit, device)?;
        spectra.push(OperatorSpectra::of(name, &k.eigenvalues()?)?);
        let mut curve = rule[..config.t2].to_vec();
        let mut weights = rule_weights[..config.t2].to_vec();
        let mut cur = at_t2.clone();
        for _ in config.t2..config.steps {
            curve.push(mean_error(&cur));
            weights.push(first(&cur));
            cur = config
                .operators
                .apply(k.evolve_host(&cur, 1, Evolution::Step)?, &cur);
        }
        movement.push(moved(&cur));
        curves.push((name.to_string(), curve));
        example_weights.push(weights);
    }
    // Each simulation has 4 relevant and 4 irrelevant weights.
    let per_kind = (4 * s * config.t2) as f64;
    let early_update_rates = [
        early_moves[0] as f64 / per_kind,
        early_moves[1] as f64 / per_kind,
    ];
    let node_counting_reference = counting_process_spectra(
        config,
        &initial,
        early_update_rates,
        &mut rng,
        &node_plan,
        device,
    )?;
    let tail = config.steps / 10;
    let asymptote = rule[config.steps - tail.max(1)..].iter().sum::<f64>() / tail.max(1) as f64;
    Ok(PerceptronResult {
        curves,
        asymptote,
        movement,
        example_weights,
        spectra,
        early_update_rates,
        node_counting_reference,
    })
}

/// Node operators fitted to counting-process trajectories: see
/// [`PerceptronResult::node_counting_reference`].
fn counting_process_spectra(
    config: &PerceptronConfig,
    initial: &[f64],
    [p_relevant, p_irrelevant]: [f64; 2],
    rng: &mut rand::rngs::StdRng,
    nodes: &PartitionPlan,
    device: &Device,
) -> Result<OperatorSpectra> {
    let mut rec = Recorder::with_layout(vec![("0.weight".into(), vec![initial.len() / 4, 4])])?;
    let mut w = initial.to_vec();
    for t in 0..=config.t2 {
        rec.push(t, &w)?;
        for (index, weights) in w.chunks_mut(4).enumerate() {
            // Node i of a simulation is output i.
            let output = index % 2;
            let irrelevant_step = rng.random_bool(p_irrelevant);
            for (k, weight) in weights.iter_mut().enumerate() {
                if is_relevant(output, k) {
                    if rng.random_bool(p_relevant) {
                        *weight += config.lr;
                    }
                } else if irrelevant_step {
                    *weight -= config.lr;
                }
            }
        }
    }
    let k = fit(&rec, nodes, 0, config.t2, &config.fit, device)?;
    OperatorSpectra::of("node, counting processes", &k.eigenvalues()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_of_known_weights_and_bad_config() {
        // Perfect weights: relevant 1.5, irrelevant 0.
        let good = [1.5, 1.5, 0.0, 0.0, 0.0, 0.0, 1.5, 1.5];
        assert_eq!(expected_error(&good, 0.25), 0.0);
        // All zero: every output is 0, wrong whenever its pair has an active input:
        // P(OR) = 1 - 0.75^2 = 0.4375 per output.
        assert!((expected_error(&[0.0; 8], 0.25) - 0.4375).abs() < 1e-12);
        let bad = PerceptronConfig {
            t2: 5,
            ..Default::default()
        };
        assert!(run_perceptron(&bad, &Device::Cpu).is_err());
    }

    #[test]
    fn example_weights_follow_the_rule_until_t2() {
        let cfg = PerceptronConfig {
            simulations: 5,
            steps: 60,
            t2: 20,
            ..Default::default()
        };
        let r = run_perceptron(&cfg, &Device::Cpu).unwrap();
        assert_eq!(r.example_weights.len(), r.curves.len());
        for (weights, (_, curve)) in r.example_weights.iter().zip(&r.curves) {
            assert_eq!(weights.len(), cfg.steps);
            assert_eq!(curve.len(), cfg.steps);
            // Every method starts from the rule's weights at step t2.
            assert_eq!(weights[..=cfg.t2], r.example_weights[0][..=cfg.t2]);
        }
        // The rule's example weights are the first simulation's: its error at step 0 is that of
        // initial weights in [0.5, 1].
        assert!(r.example_weights[0][0]
            .iter()
            .all(|w| (0.5..1.0).contains(w)));
    }

    #[test]
    fn operator_spectra_summaries() {
        let cfg = PerceptronConfig {
            simulations: 100,
            steps: 120,
            ..Default::default()
        };
        let r = run_perceptron(&cfg, &Device::Cpu).unwrap();
        let sizes: Vec<usize> = r.spectra.iter().map(|s| s.median_moduli.len()).collect();
        assert_eq!(sizes, [1, 4, 8]);
        for s in &r.spectra {
            assert!(s.median_moduli.windows(2).all(|w| w[0] >= w[1]));
            assert!((0.0..=1.0).contains(&s.unstable_share));
            // The weights move by a few 0.005 steps in 100: every operator keeps a direction
            // with eigenvalue ~1 (the weights' level).
            assert!((s.median_moduli[0] - 1.0).abs() < 1e-2, "{s:?}");
        }
        // Rates by hand: a relevant weight moves when its input is the only active one
        // (0.25 * 0.75^3 = 0.105), an irrelevant one when both irrelevant inputs are on and
        // both relevant off (0.25^2 * 0.75^2 = 0.035); 100 * 4 * 100 draws each, so 5 sigma is
        // ~0.008 and ~0.005. The bounds allow three times that: a weight stops moving once it is right.
        let [rel, irr] = r.early_update_rates;
        assert!(
            (rel - 0.105).abs() < 0.024 && (irr - 0.035).abs() < 0.015,
            "{rel} {irr}"
        );
        // The node operators' spectrum is that of least-squares fits to counting processes at
        // the same rates (the report's explanation of their stall): same medians, in
        // particular the pull-back eigenvalues well below 1.
        let (node, reference) = (&r.spectra[1], &r.node_counting_reference);
        assert_eq!(reference.median_moduli.len(), 4);
        for (a, b) in node.median_moduli.iter().zip(&reference.median_moduli) {
            assert!((a - b).abs() < 0.04, "{node:?} vs {reference:?}");
        }
        assert!(node.median_moduli[3] < 0.95, "{node:?}");
        // By hand: moduli sorted per operator, then the median of each position.
        let e = |v: &[f64]| v.iter().map(|&x| c64::new(x, 0.0)).collect::<Vec<_>>();
        let s =
            OperatorSpectra::of("t", &[e(&[0.5, 2.0]), e(&[-0.9, 0.1]), e(&[0.3, 0.95])]).unwrap();
        assert_eq!(s.median_moduli, [0.95, 0.3]);
        assert!((s.unstable_share - 1.0 / 3.0).abs() < 1e-15);
        assert!(OperatorSpectra::of("t", &[e(&[1.0]), e(&[1.0, 2.0])]).is_err());
        assert!(OperatorSpectra::of("t", &[]).is_err());
    }
}
