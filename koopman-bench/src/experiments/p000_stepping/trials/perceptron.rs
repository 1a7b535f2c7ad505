//! The perceptron of paper 000 (supplement S8, Fig. S4, and the larger perceptrons of S8.3):
//! single-weight vs node vs network Koopman operators.
//!
//! `n1` binary inputs (default 4) in two halves, two outputs with a step activation
//! `y_i = [w_i . x > 1]`; output 1 learns the OR of the first half of the inputs, output 2 the
//! OR of the second half. The inputs come in groups of `group` units that are active together
//! (default 1: every unit on its own), each group active with probability `p_active`
//! (default 1/4, the paper's Table S3). The perceptron rule `w -= lr (y_hat - y) x^T` (lr 0.005)
//! runs from weights drawn in `[0.5, 1]`. After `t2` training steps the weights of steps
//! `0 ..= t2` are fitted with single-weight (`d = 1`), node (`d = n1`) or network (`d = 2 n1`)
//! operators and evolved by them instead of the rule. All simulations share one recorder and
//! one batched fit per operator size.
//!
//! The error at every step is the expected fraction of wrong output bits over the input
//! patterns, averaged over the simulations: exact (every pattern of the groups, weighted by its
//! probability) for up to [`EXACT_GROUPS`] groups, else the mean over `error_samples` patterns
//! drawn once per simulation from the same distribution (the same patterns for every method).
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
//!
//! // S8.3: sixteen inputs, each active with probability 1/16 (error sampled).
//! let wide = PerceptronConfig { simulations: 10, steps: 200, ..PerceptronConfig::independent(16) };
//! let r = run_perceptron(&wide, &candle_core::Device::Cpu)?;
//! assert_eq!(r.example_weights[0][0].len(), 32);
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

/// Up to this many input groups the error is exact (all `2^groups` patterns); above, sampled.
pub const EXACT_GROUPS: usize = 8;

/// Settings (defaults: the paper's Table S3, Koopman after 100 steps).
#[derive(Clone, Debug, PartialEq)]
pub struct PerceptronConfig {
    /// Learning rate.
    pub lr: f64,
    /// Number of input units `n1` (even: two halves).
    pub inputs: usize,
    /// Units of one half that are active together (divides `inputs / 2`).
    pub group: usize,
    /// Probability that an input group is active.
    pub p_active: f64,
    /// Initial weights are drawn uniformly in `[init.0, init.1)`.
    pub init: (f64, f64),
    /// Training steps.
    pub steps: usize,
    /// Independent simulations.
    pub simulations: usize,
    /// Steps of the perceptron rule before Koopman stepping takes over (`t1 = 0`).
    pub t2: usize,
    /// Input patterns drawn per simulation for the error when there are more than
    /// [`EXACT_GROUPS`] groups.
    pub error_samples: usize,
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
            inputs: 4,
            group: 1,
            p_active: 0.25,
            init: (0.5, 1.0),
            steps: 1000,
            simulations: 1000,
            t2: 100,
            error_samples: 1024,
            fit: FitConfig::default(),
            seed: 0,
            operators: Operators::Fitted,
        }
    }
}

impl PerceptronConfig {
    /// S8.3's larger perceptron: `inputs` units, each active on its own with probability
    /// `1 / inputs`; everything else as in Table S3.
    pub fn independent(inputs: usize) -> Self {
        Self {
            inputs,
            p_active: 1.0 / inputs as f64,
            ..Self::default()
        }
    }

    /// S8.3's remedy, "increasing the number of input units in the same half that are active
    /// together": `inputs` units in four groups of `inputs / 4` (two per half), each group
    /// active with probability 1/4. The initial domain and the learning rate are divided by the
    /// group size, so that a group's summed weight starts and moves as one unit of the
    /// four-input perceptron does (this scaling is ours; the paper does not say).
    pub fn grouped(inputs: usize) -> Self {
        let m = (inputs / 4).max(1);
        let base = Self::default();
        Self {
            inputs,
            group: m,
            lr: base.lr / m as f64,
            init: (base.init.0 / m as f64, base.init.1 / m as f64),
            ..base
        }
    }

    /// Number of input groups (`inputs / group`).
    pub fn groups(&self) -> usize {
        self.inputs / self.group.max(1)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if !(self.lr.is_finite() && self.lr > 0.0 && (0.0..=1.0).contains(&self.p_active)) {
            return Err(TrainError::InvalidArgument(
                "lr must be > 0 and p_active in [0, 1]".into(),
            ));
        }
        let (lo, hi) = self.init;
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(TrainError::InvalidArgument(format!(
                "the initial weight domain [{lo}, {hi}) is empty or not finite"
            )));
        }
        if self.inputs < 2 || self.inputs % 2 != 0 || self.inputs > u16::MAX as usize {
            return Err(TrainError::InvalidArgument(format!(
                "the perceptron needs an even number of inputs (two halves), got {}",
                self.inputs
            )));
        }
        if self.group == 0 || (self.inputs / 2) % self.group != 0 {
            return Err(TrainError::InvalidArgument(format!(
                "a group of {} units does not divide a half of {} inputs",
                self.group,
                self.inputs / 2
            )));
        }
        let d = 2 * self.inputs;
        if self.simulations == 0 || self.t2 <= d || self.t2 >= self.steps {
            return Err(TrainError::InvalidArgument(format!(
                "need >= 1 simulation and {d} < t2 < steps (network operators are {d} x {d}), got {} and t2 = {}, steps = {}",
                self.simulations, self.t2, self.steps
            )));
        }
        if self.error_samples == 0 {
            return Err(TrainError::InvalidArgument(
                "error_samples must be >= 1".into(),
            ));
        }
        Ok(())
    }
}

/// Mean error curves: `("perceptron" | "single weight" | "node" | "network", error per step)`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PerceptronResult {
    /// Error at steps `0 .. steps` for each method.
    pub curves: Vec<(String, Vec<f64>)>,
    /// Each method's lead over the rule after the fit: the mean over simulations of the mean
    /// over steps `t2 .. steps` of (rule's error - method's error), with its standard error
    /// over simulations (same order as `curves`; the rule's own is 0). Positive: the method is
    /// ahead of the rule.
    pub gains: Vec<(f64, f64)>,
    /// The final error of the perceptron rule (mean of its last 10% of steps).
    pub asymptote: f64,
    /// Median absolute change of a weight from step `t2` to step `steps`, per method (same order
    /// as `curves`): how far each method moves the weights after the fit.
    pub movement: Vec<f64>,
    /// The first simulation's `2 n1` weights (row-major 2 x n1: output 1 from every input,
    /// then output 2) at steps `0 .. steps`, per method (same order as `curves`), as in
    /// Fig. S4b.
    pub example_weights: Vec<Vec<Vec<f64>>>,
    /// The fitted operators' spectra, one entry per Koopman method (the methods of `curves`
    /// after the rule).
    pub spectra: Vec<OperatorSpectra>,
    /// Share of the rule's steps `0 .. t2` in which a relevant / an irrelevant weight changed.
    pub early_update_rates: [f64; 2],
    /// How much of a node's relevant / irrelevant weights change together under the rule
    /// (steps `0 .. t2`): over the steps in which at least one of them changes, the mean share
    /// of them that change (S8.3: "the expected proportion of relevant/irrelevant weights that
    /// change together").
    pub co_update: [f64; 2],
    /// Reference for the node operators of the four-input perceptron (`None` for other
    /// inputs): node operators fitted in the same way to synthetic trajectories from the same
    /// initial weights in which every update is an independent coin flip at
    /// `early_update_rates` (relevant weights each on their own, the two irrelevant weights of
    /// a node together, as under the rule). Matching spectra mean the node operators'
    /// eigenvalues come from fitting counting processes by least squares, not from the
    /// perceptron's weight dynamics.
    pub node_counting_reference: Option<OperatorSpectra>,
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

/// Input patterns with their weights in the error: the active groups of each pattern, its
/// probability (exact) or `1 / samples` (sampled), and the target of each output.
#[derive(Clone, Debug, Default)]
struct Patterns {
    weight: Vec<f64>,
    target: Vec<[bool; 2]>,
    /// Pattern `k`'s active groups are `active[start[k] .. start[k + 1]]`.
    start: Vec<usize>,
    active: Vec<u16>,
}

impl Patterns {
    fn push(&mut self, weight: f64, active: &[u16], half: usize) {
        if self.start.is_empty() {
            self.start.push(0);
        }
        let mut target = [false; 2];
        for &g in active {
            target[usize::from(g as usize >= half)] = true;
        }
        self.weight.push(weight);
        self.target.push(target);
        self.active.extend_from_slice(active);
        self.start.push(self.active.len());
    }

    /// Every pattern of `groups` independent groups, each active with probability `p`.
    fn exact(groups: usize, p: f64) -> Self {
        let mut out = Self::default();
        for bits in 0..1u32 << groups {
            let active: Vec<u16> = (0..groups as u16).filter(|&g| bits >> g & 1 == 1).collect();
            let a = active.len() as i32;
            out.push(
                p.powi(a) * (1.0 - p).powi(groups as i32 - a),
                &active,
                groups / 2,
            );
        }
        out
    }

    /// `samples` patterns drawn from the data distribution.
    fn sampled(groups: usize, p: f64, samples: usize, rng: &mut impl Rng) -> Self {
        let mut out = Self::default();
        let mut active = Vec::with_capacity(groups);
        for _ in 0..samples {
            active.clear();
            active.extend((0..groups as u16).filter(|_| rng.random_bool(p)));
            out.push(1.0 / samples as f64, &active, groups / 2);
        }
        out
    }

    /// Expected fraction of wrong output bits of one simulation whose summed weight per output
    /// and group is `sums` (`[output][group]`, row-major).
    fn error(&self, sums: &[f64], groups: usize) -> f64 {
        let mut err = 0.0;
        for (k, (&weight, target)) in self.weight.iter().zip(&self.target).enumerate() {
            let active = &self.active[self.start[k]..self.start[k + 1]];
            for (i, &y) in target.iter().enumerate() {
                let s: f64 = active.iter().map(|&g| sums[i * groups + g as usize]).sum();
                if (s > 1.0) != y {
                    err += 0.5 * weight;
                }
            }
        }
        err
    }
}

/// The error model of a run: one shared exact pattern set, or one sampled set per simulation.
struct ErrorModel {
    groups: usize,
    group: usize,
    inputs: usize,
    sets: Vec<Patterns>,
}

impl ErrorModel {
    fn new(config: &PerceptronConfig) -> Self {
        let groups = config.groups();
        let sets = if groups <= EXACT_GROUPS {
            vec![Patterns::exact(groups, config.p_active)]
        } else {
            // Its own stream, so that the training inputs do not depend on the error model.
            let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed ^ 0x5eed_e770_0000_0001);
            (0..config.simulations)
                .map(|_| Patterns::sampled(groups, config.p_active, config.error_samples, &mut rng))
                .collect()
        };
        Self {
            groups,
            group: config.group,
            inputs: config.inputs,
            sets,
        }
    }

    /// Each simulation's error for the weights `w` (all simulations, `2 n1` each).
    fn errors(&self, w: &[f64]) -> Vec<f64> {
        let mut sums = vec![0.0; 2 * self.groups];
        w.chunks(2 * self.inputs)
            .enumerate()
            .map(|(sim, sw)| {
                for (s, c) in sums.iter_mut().zip(sw.chunks(self.group)) {
                    *s = c.iter().sum();
                }
                self.sets[sim % self.sets.len()].error(&sums, self.groups)
            })
            .collect()
    }
}

/// Whether input `input` is relevant to output `output` of a perceptron with `inputs` inputs:
/// output i is the OR of half i.
fn is_relevant(output: usize, input: usize, inputs: usize) -> bool {
    input / (inputs / 2) == output
}

/// Runs the perceptron rule and the three Koopman variants; see the [module docs](self).
pub fn run_perceptron(config: &PerceptronConfig, device: &Device) -> Result<PerceptronResult> {
    config.validate()?;
    let s = config.simulations;
    let (n1, m) = (config.inputs, config.group);
    let per_sim = 2 * n1;
    let groups = config.groups();
    let model = ErrorModel::new(config);
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let mut w: Vec<f64> = (0..s * per_sim)
        .map(|_| rng.random_range(config.init.0..config.init.1))
        .collect();
    let mut rec = Recorder::with_layout(vec![("0.weight".into(), vec![s * 2, n1])])?;
    let mean = |e: &[f64]| e.iter().sum::<f64>() / s as f64;
    let first = |w: &[f64]| w[..per_sim].to_vec();
    let initial = w.clone();
    // Updates of relevant / irrelevant weights during steps 0 .. t2, and the co-update shares:
    // (sum of shares, steps with an update) per kind.
    let mut early_moves = [0usize; 2];
    let mut together = [(0.0f64, 0usize); 2];
    let mut rule = Vec::with_capacity(config.steps);
    let mut rule_weights = Vec::with_capacity(config.steps);
    // Each simulation's rule error at steps t2 .. steps, for the gains.
    let mut rule_after = Vec::with_capacity(config.steps - config.t2);
    let mut at_t2 = Vec::new();
    let mut x = vec![false; n1];
    for t in 0..config.steps {
        if t <= config.t2 {
            rec.push(t, &w)?;
        }
        if t == config.t2 {
            at_t2 = w.clone();
        }
        let errors = model.errors(&w);
        rule.push(mean(&errors));
        if t >= config.t2 {
            rule_after.push(errors);
        }
        rule_weights.push(first(&w));
        for sim in w.chunks_mut(per_sim) {
            for g in 0..groups {
                let on = rng.random_bool(config.p_active);
                x[g * m..(g + 1) * m].fill(on);
            }
            for i in 0..2 {
                let y = x[i * n1 / 2..(i + 1) * n1 / 2].iter().any(|&v| v);
                let sum: f64 = (0..n1).filter(|&k| x[k]).map(|k| sim[i * n1 + k]).sum();
                let yh = sum > 1.0;
                if yh == y {
                    continue;
                }
                let delta = if yh { config.lr } else { -config.lr };
                let mut moved = [0usize; 2];
                for k in (0..n1).filter(|&k| x[k]) {
                    moved[usize::from(!is_relevant(i, k, n1))] += 1;
                    sim[i * n1 + k] -= delta;
                }
                if t < config.t2 {
                    for kind in 0..2 {
                        early_moves[kind] += moved[kind];
                        if moved[kind] > 0 {
                            together[kind].0 += moved[kind] as f64 / (n1 / 2) as f64;
                            together[kind].1 += 1;
                        }
                    }
                }
            }
        }
    }
    let n = s * per_sim;
    let partition = |size: usize| -> Vec<Vec<usize>> {
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
    let mut gains = vec![(0.0, 0.0)];
    let mut example_weights = vec![rule_weights.clone()];
    let mut spectra = Vec::new();
    let node_plan = PartitionPlan::from_groups(n, partition(n1))?;
    let single_plan = PartitionPlan::from_groups(n, partition(1))?;
    let network_plan = PartitionPlan::from_groups(n, partition(per_sim))?;
    for (name, plan) in [
        ("single weight", &single_plan),
        ("node", &node_plan),
        ("network", &network_plan),
    ] {
        let k = fit(&rec, plan, 0, config.t2, &config.fit, device)?;
        spectra.push(OperatorSpectra::of(name, &k.eigenvalues()?)?);
        let mut curve = rule[..config.t2].to_vec();
        let mut weights = rule_weights[..config.t2].to_vec();
        let mut lead = vec![0.0; s];
        let mut cur = at_t2.clone();
        for rule_errors in &rule_after {
            let errors = model.errors(&cur);
            curve.push(mean(&errors));
            for ((l, r), e) in lead.iter_mut().zip(rule_errors).zip(&errors) {
                *l += (r - e) / rule_after.len() as f64;
            }
            weights.push(first(&cur));
            cur = config
                .operators
                .apply(k.evolve_host(&cur, 1, Evolution::Step)?, &cur);
        }
        movement.push(moved(&cur));
        gains.push(mean_and_standard_error(&lead));
        curves.push((name.to_string(), curve));
        example_weights.push(weights);
    }
    // Each simulation has n1 relevant and n1 irrelevant weights.
    let per_kind = (n1 * s * config.t2) as f64;
    let early_update_rates = [
        early_moves[0] as f64 / per_kind,
        early_moves[1] as f64 / per_kind,
    ];
    let co_update = together.map(|(sum, count)| sum / count.max(1) as f64);
    let node_counting_reference = if n1 == 4 && m == 1 {
        Some(counting_process_spectra(
            config,
            &initial,
            early_update_rates,
            &mut rng,
            &node_plan,
            device,
        )?)
    } else {
        None
    };
    let tail = config.steps / 10;
    let asymptote = rule[config.steps - tail.max(1)..].iter().sum::<f64>() / tail.max(1) as f64;
    Ok(PerceptronResult {
        curves,
        gains,
        asymptote,
        movement,
        example_weights,
        spectra,
        early_update_rates,
        co_update,
        node_counting_reference,
    })
}

/// Mean and standard error of the mean (0 for fewer than two values).
fn mean_and_standard_error(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
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
                if is_relevant(output, k, 4) {
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
        let four = Patterns::exact(4, 0.25);
        assert!((four.weight.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        // Perfect weights: relevant 1.5, irrelevant 0 (group sums of the four-input perceptron).
        let good = [1.5, 1.5, 0.0, 0.0, 0.0, 0.0, 1.5, 1.5];
        assert_eq!(four.error(&good, 4), 0.0);
        // All zero: every output is 0, wrong whenever its pair has an active input:
        // P(OR) = 1 - 0.75^2 = 0.4375 per output.
        assert!((four.error(&[0.0; 8], 4) - 0.4375).abs() < 1e-12);
        // Only relevant weights 0.6: an output is right iff both of its inputs are on or both
        // off: P(exactly one on) = 2 * 0.25 * 0.75 = 0.375 per output.
        let half = [0.6, 0.6, 0.0, 0.0, 0.0, 0.0, 0.6, 0.6];
        assert!((four.error(&half, 4) - 0.375).abs() < 1e-12);
        // Sampled patterns estimate the same numbers.
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let sampled = Patterns::sampled(4, 0.25, 40_000, &mut rng);
        assert!((sampled.error(&half, 4) - 0.375).abs() < 0.01);
        for bad in [
            PerceptronConfig {
                t2: 5,
                ..Default::default()
            },
            PerceptronConfig {
                t2: 32, // network operators of 16 inputs are 32 x 32
                ..PerceptronConfig::independent(16)
            },
            PerceptronConfig {
                inputs: 5,
                ..Default::default()
            },
            PerceptronConfig {
                group: 3,
                ..PerceptronConfig::independent(8)
            },
            PerceptronConfig {
                init: (1.0, 0.5),
                ..Default::default()
            },
            PerceptronConfig {
                error_samples: 0,
                ..Default::default()
            },
        ] {
            assert!(run_perceptron(&bad, &Device::Cpu).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn grouped_inputs_match_the_four_input_perceptron() {
        // Sixteen inputs in four groups of four, weights and rate divided by four: each group's
        // summed weight is a unit of the four-input perceptron, so the error model is exact and
        // the rule learns as fast.
        let g = PerceptronConfig::grouped(16);
        assert_eq!((g.groups(), g.group), (4, 4));
        assert!((g.lr - 0.00125).abs() < 1e-15 && g.init == (0.125, 0.25));
        let small = |c: PerceptronConfig| PerceptronConfig {
            simulations: 200,
            steps: 400,
            ..c
        };
        let wide = run_perceptron(&small(g), &Device::Cpu).unwrap();
        let four = run_perceptron(&small(PerceptronConfig::default()), &Device::Cpu).unwrap();
        let (a, b) = (&wide.curves[0].1, &four.curves[0].1);
        // Same start (a group's sum of four U[1/8, 1/4) has mean 0.75 as a unit's U[1/2, 1))
        // and the same learning: the curves agree to sampling noise of 200 simulations.
        for t in [0, 100, 399] {
            assert!((a[t] - b[t]).abs() < 0.03, "step {t}: {} vs {}", a[t], b[t]);
        }
        assert!(a[399] < a[0] - 0.05);
        // A group moves as one: every relevant update moves half of a node's relevant weights
        // (one group of two), as often at four inputs when one unit of the pair moves.
        assert!(
            (wide.co_update[0] - 0.5).abs() < 0.05,
            "{:?}",
            wide.co_update
        );
        assert!(four.node_counting_reference.is_some() && wide.node_counting_reference.is_none());
        // Independent inputs: a relevant update moves ~ one of the eight relevant weights.
        let ind = run_perceptron(&small(PerceptronConfig::independent(16)), &Device::Cpu).unwrap();
        assert!(ind.co_update[0] < 0.2, "{:?}", ind.co_update);
        // Gains: mean and standard error by hand.
        assert_eq!(mean_and_standard_error(&[1.0, 3.0]), (2.0, 1.0));
        for r in [&wide, &four, &ind] {
            assert_eq!(r.gains.len(), 4);
            assert_eq!(r.gains[0], (0.0, 0.0));
            assert!(r.gains.iter().all(|(g, se)| g.is_finite() && *se >= 0.0));
        }
    }

    #[test]
    fn identity_operators_fall_behind_the_rule() {
        let cfg = PerceptronConfig {
            simulations: 100,
            steps: 400,
            operators: Operators::Identity,
            ..Default::default()
        };
        let r = run_perceptron(&cfg, &Device::Cpu).unwrap();
        // The weights stay at w(t2) while the rule keeps learning.
        for (g, se) in &r.gains[1..] {
            assert!(*g < -2.0 * se && *g < 0.0, "{:?}", r.gains);
        }
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
        let (node, reference) = (&r.spectra[1], r.node_counting_reference.as_ref().unwrap());
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
