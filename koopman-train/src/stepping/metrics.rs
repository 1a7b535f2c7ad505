//! The figures of merit of paper 000: `T_eq`, `T_eq / T`, success, speedup, prediction error.
//!
//! `T_eq` is the number of optimizer steps (or epochs) after `t2` that the optimizer needs to
//! reach the loss the Koopman-evolved weights have at horizon `T`. With `l_i` the optimizer's
//! loss after `i` steps past `t2` (`l_0` = loss at `t2`) and `l_KO` the Koopman loss, the
//! paper's fractional definition (supplement S10) is `T_eq = Q + R`, `Q = max{i : l_i > l_KO}`,
//! `R = (l_Q - l_KO) / (l_Q - l_{Q+1})`. Success is `T_eq > 0` (the Koopman weights lowered the
//! loss below `l_0`): a Koopman loss at or above `l_0` gives `T_eq = 0` even where the
//! optimizer's loss rises above `l_0` later (a non-monotone loss), so that weights left where
//! they were at `t2` never count as a success. When the optimizer never reaches `l_KO` within the recorded losses `T_eq`
//! is the recorded length, flagged as capped. The equivalent optimizer time is
//! `sum_{i <= Q} tau_i + R tau_{Q+1}`, and speedup = that time / the Koopman time.
//!
//! ```
//! use koopman_train::stepping::metrics::{equivalent_time, t_eq};
//!
//! # fn main() -> koopman_train::Result<()> {
//! let losses = [1.0, 0.8, 0.6, 0.4];
//! let te = t_eq(&losses, 0.7)?;
//! assert!((te.value - 1.5).abs() < 1e-12 && te.success() && !te.capped);
//! assert!((equivalent_time(&[2.0, 4.0, 6.0], te.value)? - 4.0).abs() < 1e-12);
//! assert_eq!(t_eq(&losses, 1.5)?.value, 0.0); // worse than at t2: failure
//! assert!(t_eq(&losses, 0.1)?.capped);
//! # Ok(()) }
//! ```

use crate::error::{Result, TrainError};

/// `T_eq` and whether it hit the end of the recorded losses.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct TEq {
    /// Equivalent optimizer steps (fractional).
    pub value: f64,
    /// The optimizer did not reach the Koopman loss within the recorded losses.
    pub capped: bool,
}

impl TEq {
    /// `T_eq > 0`.
    pub fn success(&self) -> bool {
        self.value > 0.0
    }
}

/// `T_eq` by the paper's fractional definition; see the [module docs](self).
pub fn t_eq(losses: &[f64], koopman_loss: f64) -> Result<TEq> {
    if losses.len() < 2 {
        return Err(TrainError::NotEnoughData(format!(
            "T_eq needs the losses at t2 and at least one step after it, got {}",
            losses.len()
        )));
    }
    if losses.iter().any(|l| !l.is_finite()) {
        return Err(TrainError::NonFinite("optimizer losses".into()));
    }
    if !koopman_loss.is_finite() {
        // Blown-up weights: a failure, not an error.
        return Ok(TEq {
            value: 0.0,
            capped: false,
        });
    }
    if koopman_loss >= losses[0] {
        // No better than at t2: the optimizer needs no step to get there.
        return Ok(TEq {
            value: 0.0,
            capped: false,
        });
    }
    let Some(q) = losses.iter().rposition(|&l| l > koopman_loss) else {
        return Ok(TEq {
            value: 0.0,
            capped: false,
        });
    };
    if q + 1 == losses.len() {
        return Ok(TEq {
            value: q as f64,
            capped: true,
        });
    }
    let r = (losses[q] - koopman_loss) / (losses[q] - losses[q + 1]);
    Ok(TEq {
        value: q as f64 + r,
        capped: false,
    })
}

/// Time of `t_eq` optimizer steps: `step_seconds[i]` is the duration of step `i + 1` (from
/// `l_i` to `l_{i+1}`); the fractional part takes that share of the next step.
pub fn equivalent_time(step_seconds: &[f64], t_eq: f64) -> Result<f64> {
    if !(t_eq.is_finite() && t_eq >= 0.0) || t_eq > step_seconds.len() as f64 {
        return Err(TrainError::InvalidArgument(format!(
            "T_eq = {t_eq} outside the {} timed steps",
            step_seconds.len()
        )));
    }
    let q = t_eq.floor() as usize;
    let whole: f64 = step_seconds[..q].iter().sum();
    let frac = if q < step_seconds.len() {
        (t_eq - q as f64) * step_seconds[q]
    } else {
        0.0
    };
    Ok(whole + frac)
}

/// How close predicted weights are to the optimizer's.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct PredictionError {
    /// Median over weights of `|w_pred - w_true(t2+T)| / |w_true(t2+T) - w_true(t2)|` (weights
    /// that did not move are left out), the paper's figure (0.0044 for Adadelta).
    pub median_ratio: f64,
    /// `||w_pred - w_true(t2+T)|| / ||w_true(t2+T) - w_true(t2)||`.
    pub norm_ratio: f64,
}

/// Prediction error of `predicted` against the optimizer's `truth_end` (at `t2 + T`) relative
/// to the true change from `truth_start` (at `t2`).
pub fn prediction_error(
    predicted: &[f64],
    truth_end: &[f64],
    truth_start: &[f64],
) -> Result<PredictionError> {
    if predicted.len() != truth_end.len() || truth_end.len() != truth_start.len() {
        return Err(TrainError::ShapeMismatch(format!(
            "{}, {} and {} weights",
            predicted.len(),
            truth_end.len(),
            truth_start.len()
        )));
    }
    let mut ratios = Vec::new();
    let (mut err2, mut chg2) = (0.0, 0.0);
    for ((p, e), s) in predicted.iter().zip(truth_end).zip(truth_start) {
        let (err, chg) = ((p - e).abs(), (e - s).abs());
        err2 += err * err;
        chg2 += chg * chg;
        if chg > 0.0 {
            ratios.push(if err.is_finite() {
                err / chg
            } else {
                f64::INFINITY
            });
        }
    }
    if ratios.is_empty() {
        return Err(TrainError::NotEnoughData(
            "no weight changed between t2 and t2 + T".into(),
        ));
    }
    Ok(PredictionError {
        median_ratio: median(&ratios),
        norm_ratio: (err2 / chg2).sqrt(),
    })
}

/// Multiply-adds of the matrix products in one optimizer step of an MLP and in the Koopman work:
/// the arithmetic each side needs whatever the implementation, so the speedup that arithmetic
/// alone allows ([`WorkCount::speedup_bound`]) can be set beside the measured one.
///
/// ```
/// use koopman_train::stepping::metrics::WorkCount;
///
/// # fn main() -> koopman_train::Result<()> {
/// // 4:3:2 MLP, batch 10; two operators of size 2 fitted on 5 snapshot pairs
/// let w = WorkCount::new(&[4, 3, 2], 10, &[(2, 2)], 5)?;
/// assert_eq!(w.optimizer_step, 10.0 * (3.0 * 18.0 - 12.0));
/// assert_eq!(w.evolution_step, 8.0);
/// assert_eq!(w.fit, 2.0 * (1.5 * 5.0 * 4.0 + 7.0 / 6.0 * 8.0));
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct WorkCount {
    /// One optimizer step: `batch (3 sum_l n_l n_{l+1} - n_0 n_1)`, i.e. the forward products,
    /// the weight gradients and the input gradients of every layer but the first (biases,
    /// activations and the update are left out: O(weights), not O(batch x weights)).
    pub optimizer_step: f64,
    /// One Koopman step: `sum count d^2` over the operators.
    pub evolution_step: f64,
    /// The cheapest standard fit, by the normal equations over `m` snapshot pairs: `F F^T`
    /// (symmetric, `m d^2 / 2`), `F' F^T` (`m d^2`), Cholesky (`d^3 / 6`) and two triangular
    /// solves with `d` right-hand sides (`d^3`), summed over the operators.
    pub fit: f64,
}

impl WorkCount {
    /// Counts for an MLP of widths `mlp_sizes` trained with mini-batches of `batch`, and
    /// operators given as `(size, count)` fitted on `pairs` snapshot pairs.
    pub fn new(
        mlp_sizes: &[usize],
        batch: usize,
        operators: &[(usize, usize)],
        pairs: usize,
    ) -> Result<Self> {
        if mlp_sizes.len() < 2 || mlp_sizes.contains(&0) || batch == 0 {
            return Err(TrainError::InvalidArgument(format!(
                "work count needs at least two nonzero widths and a nonzero batch, got {mlp_sizes:?} and batch {batch}"
            )));
        }
        let products: f64 = mlp_sizes.windows(2).map(|w| (w[0] * w[1]) as f64).sum();
        let first = (mlp_sizes[0] * mlp_sizes[1]) as f64;
        let (mut evolution_step, mut fit) = (0.0, 0.0);
        let m = pairs as f64;
        for &(size, count) in operators {
            let (d, c) = (size as f64, count as f64);
            evolution_step += c * d * d;
            fit += c * (1.5 * m * d * d + 7.0 / 6.0 * d * d * d);
        }
        Ok(Self {
            optimizer_step: batch as f64 * (3.0 * products - first),
            evolution_step,
            fit,
        })
    }

    /// `t_eq` optimizer steps against `horizon` Koopman steps, plus the fit if `with_fit`:
    /// the speedup the arithmetic allows when both sides run at the same rate.
    pub fn speedup_bound(&self, t_eq: f64, horizon: f64, with_fit: bool) -> f64 {
        let koopman = horizon * self.evolution_step + if with_fit { self.fit } else { 0.0 };
        t_eq * self.optimizer_step / koopman
    }
}

/// Runs of each timed Koopman phase (fit, evolutions) in the evaluations of this crate: the
/// speedups use the median, and the first (cold) run is reported beside it. Phases slower than
/// [`TIMING_SECONDS`] in all stop earlier (after at least two runs).
pub const TIMING_RUNS: usize = 5;

/// Time after which [`timed_runs`] stops repeating a phase (once it has run twice).
pub const TIMING_SECONDS: f64 = 1.0;

/// Wall time of a repeated piece of work: the first run (cold: fresh allocations, a second core
/// woken from idle) and the median over all runs (warm, as the optimizer's per-step times are
/// measured inside a long run).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Timing {
    /// Seconds of the first run.
    pub first: f64,
    /// Median seconds over the runs.
    pub median: f64,
}

/// Runs `work` `runs` times (at least once; after two runs it stops once [`TIMING_SECONDS`]
/// have passed) and times each run; returns the last run's result and the [`Timing`].
///
/// ```
/// use koopman_train::stepping::metrics::timed_runs;
///
/// # fn main() -> koopman_train::Result<()> {
/// let mut calls = 0;
/// let (last, timing) = timed_runs(3, || {
///     calls += 1;
///     Ok(calls)
/// })?;
/// assert_eq!((last, calls), (3, 3));
/// assert!(timing.first >= 0.0 && timing.median >= 0.0);
/// // a slow phase stops after two runs
/// let mut slow = 0;
/// timed_runs(5, || {
///     slow += 1;
///     std::thread::sleep(std::time::Duration::from_millis(600));
///     Ok(())
/// })?;
/// assert_eq!(slow, 2);
/// # Ok(()) }
/// ```
pub fn timed_runs<R>(runs: usize, mut work: impl FnMut() -> Result<R>) -> Result<(R, Timing)> {
    let mut seconds = Vec::with_capacity(runs.max(1));
    let mut last = None;
    for run in 0..runs.max(1) {
        if run >= 2 && seconds.iter().sum::<f64>() > TIMING_SECONDS {
            break;
        }
        let start = std::time::Instant::now();
        last = Some(work()?);
        seconds.push(start.elapsed().as_secs_f64());
    }
    let last = last.ok_or_else(|| TrainError::InvalidArgument("no timed run".into()))?;
    Ok((
        last,
        Timing {
            first: seconds[0],
            median: median(&seconds),
        },
    ))
}

/// Median (NaN sorts last; the mean of the two middle values for even lengths); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let k = v.len() / 2;
    if v.len() % 2 == 1 {
        v[k]
    } else {
        0.5 * (v[k - 1] + v[k])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_eq_cases() -> Result<()> {
        // Non-monotone (stochastic) losses: Q is the last index above the Koopman loss.
        let l = [1.0, 0.5, 0.9, 0.4, 0.3];
        let te = t_eq(&l, 0.6)?;
        assert!((te.value - (2.0 + 0.3 / 0.5)).abs() < 1e-12);
        assert_eq!(t_eq(&l, f64::NAN)?.value, 0.0);
        // A non-monotone optimizer loss that rises above l_0 later: the weights at t2 (the
        // identity operator's prediction, l_KO = l_0) and anything worse are no success.
        let bumpy = [1.0, 0.9, 1.2, 0.8, 0.7];
        assert_eq!(t_eq(&bumpy, 1.0)?.value, 0.0);
        assert_eq!(t_eq(&bumpy, 1.1)?.value, 0.0);
        // Below l_0 the last crossing counts: l_2 = 1.2 > 0.95 > l_3 = 0.8.
        assert!((t_eq(&bumpy, 0.95)?.value - (2.0 + 0.25 / 0.4)).abs() < 1e-12);
        assert!(t_eq(&[1.0], 0.5).is_err());
        assert!(t_eq(&[1.0, f64::NAN], 0.5).is_err());
        assert!(equivalent_time(&[1.0], 2.0).is_err());
        assert_eq!(equivalent_time(&[1.0, 2.0], 2.0)?, 3.0);
        Ok(())
    }

    #[test]
    fn prediction_errors() -> Result<()> {
        let p = prediction_error(&[1.1, 2.0, 5.0], &[1.0, 2.0, 5.0], &[0.0, 1.0, 5.0])?;
        assert!((p.median_ratio - 0.05).abs() < 1e-12);
        assert!((p.norm_ratio - 0.1 / 2f64.sqrt()).abs() < 1e-12);
        assert!(prediction_error(&[1.0], &[1.0], &[1.0]).is_err());
        assert_eq!(median(&[3.0, 1.0, 2.0, 10.0]), 2.5);
        Ok(())
    }

    #[test]
    fn work_counts() -> Result<()> {
        // 784:20:20:20:10 at batch 64: 16,680 products of widths, 15,680 in the first layer
        let w = WorkCount::new(&[784, 20, 20, 20, 10], 64, &[(157, 100), (21, 50)], 375)?;
        assert_eq!(w.optimizer_step, 64.0 * (3.0 * 16_680.0 - 15_680.0));
        assert_eq!(w.evolution_step, 100.0 * 157.0 * 157.0 + 50.0 * 441.0);
        // equal work per step: the bound is t_eq / horizon
        let even = WorkCount {
            optimizer_step: 2.0,
            evolution_step: 2.0,
            fit: 10.0,
        };
        assert_eq!(even.speedup_bound(8.0, 10.0, false), 0.8);
        assert_eq!(even.speedup_bound(8.0, 10.0, true), 16.0 / 30.0);
        assert!(WorkCount::new(&[784], 64, &[], 1).is_err());
        assert!(WorkCount::new(&[784, 0], 64, &[], 1).is_err());
        assert!(WorkCount::new(&[784, 10], 0, &[], 1).is_err());
        Ok(())
    }
}
