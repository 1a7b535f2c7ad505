//! The criteria behind `reproduce`'s verdicts, as pure functions of measured values, so that each
//! is tested on both sides (a figure that meets it and one that does not) apart from the runs
//! that produce the figures.
//!
//! ```
//! use koopman_bench::experiments::verdict::{falls_along_layers, lower_beyond_standard_error};
//!
//! // Five seeds: the regularised errors are lower by more than the standard error of the
//! // paired differences.
//! let with = [0.10, 0.11, 0.09, 0.10, 0.12];
//! let without = [0.13, 0.12, 0.12, 0.14, 0.13];
//! assert!(lower_beyond_standard_error(&with, &without).holds);
//! // Shares of eigenvalues inside the unit circle, layer by layer.
//! assert!(falls_along_layers(&[0.6, 0.5, 0.5, 0.3, 0.2]));
//! assert!(!falls_along_layers(&[0.0; 5])); // an untrained model (every |lambda| = 1)
//! ```

use koopman_core::c64;

/// Mean and sample standard deviation (0 for fewer than two values).
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = v.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, var.sqrt())
}

/// A paired comparison over seeds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairedDifference {
    /// Mean of `without - with` over the seeds.
    pub mean: f64,
    /// Its standard error (sample standard deviation over `sqrt(n)`).
    pub standard_error: f64,
    /// Whether `with` is lower by more than the standard error (needs two seeds or more).
    pub holds: bool,
}

/// Whether the values `with` (one per seed) are lower than `without` (same seeds, same order) by
/// more than the standard error of the paired differences: the mean of `without - with` exceeds
/// its standard error. Fewer than two seeds, or lengths that differ, never hold.
pub fn lower_beyond_standard_error(with: &[f64], without: &[f64]) -> PairedDifference {
    let d: Vec<f64> = without.iter().zip(with).map(|(b, a)| b - a).collect();
    let (mean, sd) = mean_sd(&d);
    let standard_error = sd / (d.len() as f64).sqrt();
    let valid = d.len() >= 2 && with.len() == without.len() && d.iter().all(|x| x.is_finite());
    PairedDifference {
        mean,
        standard_error,
        holds: valid && mean > standard_error,
    }
}

/// Whether `values` (one per seed, higher is better) are comparable to or better than
/// `reference` (the same seeds): their mean is at least the reference's mean minus the reference's
/// spread over the seeds (sample standard deviation). Needs two seeds or more.
pub fn comparable_or_better(values: &[f64], reference: &[f64]) -> bool {
    if values.len() < 2 || reference.len() < 2 {
        return false;
    }
    let (m, _) = mean_sd(values);
    let (r, sd) = mean_sd(reference);
    m.is_finite() && r.is_finite() && m >= r - sd
}

/// Whether a monitor that `fired` (epoch, or never) did so at or after the `plateau` epoch and
/// at most `slack` epochs after it.
pub fn fires_in_window(fired: Option<usize>, plateau: usize, slack: usize) -> bool {
    fired.is_some_and(|e| e >= plateau && e <= plateau + slack)
}

/// The share of `eigenvalues` strictly inside the unit circle: `|lambda| < 1 - margin`.
pub fn share_inside(eigenvalues: &[c64], margin: f64) -> f64 {
    if eigenvalues.is_empty() {
        return 0.0;
    }
    eigenvalues
        .iter()
        .filter(|z| z.norm() < 1.0 - margin)
        .count() as f64
        / eigenvalues.len() as f64
}

/// Whether `shares` (one per layer, in order) fall as the layer index grows: the last is below
/// the first, and more pairs of layers fall than rise (Kendall's statistic below zero).
pub fn falls_along_layers(shares: &[f64]) -> bool {
    if shares.len() < 2 || shares.iter().any(|s| !s.is_finite()) {
        return false;
    }
    let mut s = 0i64;
    for i in 0..shares.len() {
        for j in i + 1..shares.len() {
            s += match shares[j].partial_cmp(&shares[i]) {
                Some(std::cmp::Ordering::Less) => -1,
                Some(std::cmp::Ordering::Greater) => 1,
                _ => 0,
            };
        }
    }
    shares[shares.len() - 1] < shares[0] && s < 0
}

/// The smallest, over the sets, of the largest `|arg lambda|` in a set: how far every layer's
/// spectrum reaches around the circle (0 for the identity, whose eigenvalues are all 1).
pub fn least_phase_reach(sets: &[Vec<c64>]) -> f64 {
    sets.iter()
        .map(|s| s.iter().map(|z| z.arg().abs()).fold(0.0f64, f64::max))
        .fold(f64::INFINITY, f64::min)
}

/// Whether a model's error `error` is at most `fraction` of a baseline's (both finite, the
/// baseline above zero).
pub fn below_fraction_of(error: f64, baseline: f64, fraction: f64) -> bool {
    error.is_finite() && baseline.is_finite() && baseline > 0.0 && error <= fraction * baseline
}

/// Whether an accuracy `measured` on `n_test` test samples reaches the paper's `paper` within the
/// sampling error of such a test set: `measured >= paper - 2 sqrt(paper (1 - paper) / n_test)`.
pub fn reaches_within_sampling_error(measured: f64, paper: f64, n_test: usize) -> bool {
    if !(measured.is_finite() && (0.0..=1.0).contains(&paper)) || n_test == 0 {
        return false;
    }
    measured >= paper - 2.0 * (paper * (1.0 - paper) / n_test as f64).sqrt()
}

/// How a rule that flags runs did against the runs' outcomes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    /// Bad runs flagged / bad runs.
    pub hit_rate: f64,
    /// Good runs flagged / good runs.
    pub false_alarm_rate: f64,
    /// Bad runs.
    pub bad: usize,
    /// Good runs.
    pub good: usize,
}

impl Detection {
    /// Rates of `flagged` (one per run) against `bad` (the same runs' outcomes).
    pub fn of(flagged: &[bool], bad: &[bool]) -> Self {
        let count = |want_bad: bool, want_flag: bool| {
            flagged
                .iter()
                .zip(bad)
                .filter(|(f, b)| **b == want_bad && **f == want_flag)
                .count()
        };
        let (hits, misses) = (count(true, true), count(true, false));
        let (alarms, quiet) = (count(false, true), count(false, false));
        let rate = |a: usize, b: usize| a as f64 / (a + b).max(1) as f64;
        Self {
            hit_rate: rate(hits, misses),
            false_alarm_rate: rate(alarms, quiet),
            bad: hits + misses,
            good: alarms + quiet,
        }
    }

    /// Whether it flags at least `min_hits` of the bad runs and at most `max_alarms` of the good
    /// ones; `None` (not judged) without both bad and good runs.
    pub fn detects(&self, min_hits: f64, max_alarms: f64) -> Option<bool> {
        (self.bad > 0 && self.good > 0)
            .then_some(self.hit_rate >= min_hits && self.false_alarm_rate <= max_alarms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_difference_both_sides() {
        let without = [1.0, 1.1, 0.9, 1.0, 1.05];
        // Lower on every seed: holds.
        let with: Vec<f64> = without.iter().map(|x| x - 0.1).collect();
        let d = lower_beyond_standard_error(&with, &without);
        assert!(d.holds && (d.mean - 0.1).abs() < 1e-12, "{d:?}");
        // Equal: the mean difference 0 does not exceed its standard error 0.
        assert!(!lower_beyond_standard_error(&without, &without).holds);
        // Higher: fails.
        let worse: Vec<f64> = without.iter().map(|x| x + 0.1).collect();
        assert!(!lower_beyond_standard_error(&worse, &without).holds);
        // Lower on average but within the noise of the seeds: fails.
        let noisy = [0.5, 1.6, 0.4, 1.5, 1.0];
        let d = lower_beyond_standard_error(&noisy, &without);
        assert!(d.mean > 0.0 && !d.holds, "{d:?}");
        // One seed, or mismatched lengths, or NaN: never holds.
        assert!(!lower_beyond_standard_error(&[0.0], &[1.0]).holds);
        assert!(!lower_beyond_standard_error(&[0.0, 0.0], &[1.0, 1.0, 1.0]).holds);
        assert!(!lower_beyond_standard_error(&[f64::NAN, 0.0], &[1.0, 1.0]).holds);
    }

    #[test]
    fn shares_inside_and_their_trend() {
        let eig = [
            c64::new(0.5, 0.0),
            c64::new(0.0, 0.999),
            c64::new(1.0, 0.0),
            c64::new(0.0, 1.2),
        ];
        assert_eq!(share_inside(&eig, 1e-3), 0.25);
        assert_eq!(share_inside(&[], 1e-3), 0.0);
        assert!(falls_along_layers(&[0.5, 0.4, 0.45, 0.3, 0.1]));
        // Flat, rising, or falling only at the start and rising after: fail.
        assert!(!falls_along_layers(&[0.3; 5]));
        assert!(!falls_along_layers(&[0.1, 0.2, 0.3, 0.4, 0.5]));
        assert!(!falls_along_layers(&[0.5, 0.1, 0.2, 0.3, 0.4]));
        assert!(!falls_along_layers(&[0.5]));
        assert!(!falls_along_layers(&[0.5, f64::NAN]));
    }

    #[test]
    fn circle_phase_and_baseline_criteria() {
        let on = vec![c64::from_polar(1.0, 0.5), c64::from_polar(1.0, -2.0)];
        let off = vec![c64::from_polar(0.8, 0.5), c64::from_polar(1.3, -2.0)];
        // The identity reaches nowhere around the circle; a rotation does.
        assert_eq!(least_phase_reach(&[vec![c64::new(1.0, 0.0); 3]]), 0.0);
        assert!((least_phase_reach(&[on.clone(), off]) - 2.0).abs() < 1e-12);
        assert!(below_fraction_of(0.2, 1.0, 0.5));
        assert!(!below_fraction_of(0.6, 1.0, 0.5));
        assert!(!below_fraction_of(0.0, 0.0, 0.5));
        assert!(!below_fraction_of(f64::NAN, 1.0, 0.5));
    }

    #[test]
    fn accuracy_against_the_paper_within_sampling_error() {
        // 1,000 test samples at 91.3%: two standard errors are 1.8 points.
        assert!(reaches_within_sampling_error(0.90, 0.913, 1000));
        assert!(!reaches_within_sampling_error(0.89, 0.913, 1000));
        assert!(reaches_within_sampling_error(0.95, 0.913, 1000));
        // A larger test set leaves less room.
        assert!(!reaches_within_sampling_error(0.90, 0.913, 100_000));
        assert!(!reaches_within_sampling_error(f64::NAN, 0.9, 1000));
        assert!(!reaches_within_sampling_error(0.9, 0.9, 0));
    }

    #[test]
    fn comparable_or_better_both_sides() {
        let base = [0.90, 0.92, 0.91];
        assert!(comparable_or_better(&[0.905, 0.91, 0.90], &base));
        assert!(comparable_or_better(&[0.95, 0.96, 0.94], &base));
        assert!(!comparable_or_better(&[0.85, 0.86, 0.84], &base));
        assert!(!comparable_or_better(&[0.95], &[0.9]));
    }

    #[test]
    fn monitor_window_both_sides() {
        assert!(fires_in_window(Some(12), 10, 5));
        assert!(fires_in_window(Some(10), 10, 5));
        assert!(!fires_in_window(Some(9), 10, 5)); // before the plateau
        assert!(!fires_in_window(Some(16), 10, 5)); // too late
        assert!(!fires_in_window(None, 10, 5)); // never
    }

    #[test]
    fn mean_and_sd() {
        let (m, s) = mean_sd(&[1.0, 2.0, 3.0]);
        assert!((m - 2.0).abs() < 1e-15 && (s - 1.0).abs() < 1e-15);
        assert_eq!(mean_sd(&[4.0]), (4.0, 0.0));
        assert!(mean_sd(&[]).0.is_nan());
    }

    #[test]
    fn detection_rates_both_sides() {
        let bad = [true, true, true, false, false, false];
        // Flags every bad run and one good run of three.
        let d = Detection::of(&[true, true, true, true, false, false], &bad);
        assert_eq!((d.bad, d.good), (3, 3));
        assert!((d.hit_rate - 1.0).abs() < 1e-12 && (d.false_alarm_rate - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(d.detects(0.8, 0.4), Some(true));
        assert_eq!(d.detects(0.8, 0.2), Some(false));
        // A rule that never fires, or one that always fires, fails.
        assert_eq!(
            Detection::of(&[false; 6], &bad).detects(0.8, 0.2),
            Some(false)
        );
        assert_eq!(
            Detection::of(&[true; 6], &bad).detects(0.8, 0.2),
            Some(false)
        );
        // Without a bad run there is nothing to detect.
        assert_eq!(
            Detection::of(&[false; 3], &[false; 3]).detects(0.8, 0.2),
            None
        );
    }
}
