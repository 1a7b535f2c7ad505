//! Koopman spectra: distances to the unit circle, convergence counts, amplitude ordering, and
//! comparisons between spectra (paper 004).
//!
//! Two spectra of equal size are compared by the **Wasserstein-1 distance** of their uniform
//! empirical measures in the complex plane: `W1 = min_perm (1/n) sum_i |a_i - b_perm(i)|`, solved
//! exactly as an optimal assignment (Hungarian algorithm, `O(n^3)`). For semi-conjugacy ("is A
//! approximately a subset of B") [`subset_distance`] matches every point of the smaller spectrum
//! to a distinct point of the larger one at minimal mean cost. [`permutation_test`] turns a
//! distance into a p-value by re-splitting the pooled eigenvalues at random (seeded).
//!
//! ```
//! use koopman_core::c64;
//! use koopman_core::spectrum::{subset_distance, wasserstein, Spectrum};
//!
//! # fn main() -> koopman_core::Result<()> {
//! let a = Spectrum::new(vec![c64::new(0.9, 0.1), c64::new(0.9, -0.1), c64::new(0.5, 0.0)]);
//! let b = Spectrum::new(vec![c64::new(0.5, 0.0), c64::new(0.9, -0.1), c64::new(0.9, 0.1)]);
//! assert!(wasserstein(&a, &b)? < 1e-15);
//! let sub = Spectrum::new(vec![c64::new(0.5, 0.0)]);
//! assert!(subset_distance(&sub, &a)? < 1e-15);
//! assert_eq!(a.count_near_one(0.2), 2);
//! # Ok(()) }
//! ```

use crate::complex::c64;
use crate::error::{CoreError, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Eigenvalues with optional residuals and amplitudes (all in the same order).
#[derive(Clone, Debug, PartialEq)]
pub struct Spectrum {
    /// Discrete-time eigenvalues.
    pub eigenvalues: Vec<c64>,
    /// Per-eigenvalue residuals, where known.
    pub residuals: Option<Vec<f64>>,
    /// Per-eigenvalue amplitudes, where known.
    pub amplitudes: Option<Vec<c64>>,
}

impl Spectrum {
    /// A spectrum of bare eigenvalues.
    pub fn new(eigenvalues: Vec<c64>) -> Self {
        Self {
            eigenvalues,
            residuals: None,
            amplitudes: None,
        }
    }

    /// Number of eigenvalues.
    pub fn len(&self) -> usize {
        self.eigenvalues.len()
    }

    /// Whether there are no eigenvalues.
    pub fn is_empty(&self) -> bool {
        self.eigenvalues.is_empty()
    }

    /// `| |lambda| - 1 |` for every eigenvalue.
    pub fn distance_to_unit_circle(&self) -> Vec<f64> {
        self.eigenvalues
            .iter()
            .map(|l| (l.norm() - 1.0).abs())
            .collect()
    }

    /// Indices of eigenvalues within `tol` of `1` (the convergence signature of a training run).
    pub fn near_one(&self, tol: f64) -> Vec<usize> {
        self.eigenvalues
            .iter()
            .enumerate()
            .filter(|(_, l)| (*l - c64::new(1.0, 0.0)).norm() <= tol)
            .map(|(i, _)| i)
            .collect()
    }

    /// How many eigenvalues lie within `tol` of `1`.
    pub fn count_near_one(&self, tol: f64) -> usize {
        self.near_one(tol).len()
    }

    /// The spectrum reordered by decreasing amplitude modulus (unchanged when there are no
    /// amplitudes).
    pub fn sorted_by_amplitude(&self) -> Spectrum {
        let Some(amps) = &self.amplitudes else {
            return self.clone();
        };
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by(|&a, &b| amps[b].norm().total_cmp(&amps[a].norm()));
        self.select(&order)
    }

    /// The sub-spectrum at the given indices, in that order.
    pub fn select(&self, indices: &[usize]) -> Spectrum {
        Spectrum {
            eigenvalues: indices.iter().map(|&i| self.eigenvalues[i]).collect(),
            residuals: self
                .residuals
                .as_ref()
                .map(|r| indices.iter().map(|&i| r[i]).collect()),
            amplitudes: self
                .amplitudes
                .as_ref()
                .map(|a| indices.iter().map(|&i| a[i]).collect()),
        }
    }

    /// The `k` eigenvalues of largest amplitude (or the first `k` without amplitudes).
    pub fn top_by_amplitude(&self, k: usize) -> Spectrum {
        let s = self.sorted_by_amplitude();
        let idx: Vec<usize> = (0..k.min(s.len())).collect();
        s.select(&idx)
    }
}

fn check_points(s: &Spectrum, what: &str) -> Result<()> {
    if s.is_empty() {
        return Err(CoreError::Empty(format!("spectrum {what}")));
    }
    if s.eigenvalues
        .iter()
        .any(|z| !(z.re.is_finite() && z.im.is_finite()))
    {
        return Err(CoreError::NonFinite(format!("spectrum {what}")));
    }
    Ok(())
}

/// Optimal assignment for an `n x m` cost matrix (row-major, `n <= m`): every row gets a distinct
/// column at minimal total cost (Hungarian algorithm with potentials, `O(n^2 m)`). Returns the
/// column of each row.
pub fn hungarian(cost: &[f64], n: usize, m: usize) -> Result<Vec<usize>> {
    if n > m {
        return Err(CoreError::ShapeMismatch(format!(
            "assignment needs rows <= columns, got {n} x {m}"
        )));
    }
    if cost.len() != n * m {
        return Err(CoreError::ShapeMismatch(format!(
            "{} costs for a {n} x {m} matrix",
            cost.len()
        )));
    }
    if cost.iter().any(|c| !c.is_finite()) {
        return Err(CoreError::NonFinite("assignment costs".into()));
    }
    // 1-based potentials formulation (e-maxx).
    let inf = f64::INFINITY;
    let mut u = vec![0.0; n + 1];
    let mut v = vec![0.0; m + 1];
    let mut p = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![inf; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = inf;
            let mut j1 = 0;
            for j in 1..=m {
                if !used[j] {
                    let cur = cost[(i0 - 1) * m + (j - 1)] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut assignment = vec![0usize; n];
    for j in 1..=m {
        if p[j] != 0 {
            assignment[p[j] - 1] = j - 1;
        }
    }
    Ok(assignment)
}

fn matched_mean(a: &[c64], b: &[c64]) -> Result<f64> {
    let (n, m) = (a.len(), b.len());
    let cost: Vec<f64> = a
        .iter()
        .flat_map(|x| b.iter().map(move |y| (x - y).norm()))
        .collect();
    let assign = hungarian(&cost, n, m)?;
    Ok(assign
        .iter()
        .enumerate()
        .map(|(i, &j)| cost[i * m + j])
        .sum::<f64>()
        / n as f64)
}

/// Wasserstein-1 distance between two spectra of equal size (uniform weights, Euclidean cost in
/// the complex plane), by optimal assignment.
pub fn wasserstein(a: &Spectrum, b: &Spectrum) -> Result<f64> {
    check_points(a, "A")?;
    check_points(b, "B")?;
    if a.len() != b.len() {
        return Err(CoreError::ShapeMismatch(format!(
            "Wasserstein distance between spectra of sizes {} and {}; use subset_distance for \
             the semi-conjugacy question",
            a.len(),
            b.len()
        )));
    }
    matched_mean(&a.eigenvalues, &b.eigenvalues)
}

/// Partial matching: the minimal mean distance from each eigenvalue of `sub` to a distinct
/// eigenvalue of `sup` (`|sub| <= |sup|`). Near 0 when `sub` is approximately a subset of `sup`.
pub fn subset_distance(sub: &Spectrum, sup: &Spectrum) -> Result<f64> {
    check_points(sub, "A (subset)")?;
    check_points(sup, "B (superset)")?;
    if sub.len() > sup.len() {
        return Err(CoreError::ShapeMismatch(format!(
            "a spectrum of {} eigenvalues cannot be a subset of one with {}",
            sub.len(),
            sup.len()
        )));
    }
    matched_mean(&sub.eigenvalues, &sup.eigenvalues)
}

/// The statistic of two spectra: [`wasserstein`] for equal sizes, otherwise [`subset_distance`]
/// of the smaller in the larger.
pub fn spectral_distance(a: &Spectrum, b: &Spectrum) -> Result<f64> {
    if a.len() == b.len() {
        wasserstein(a, b)
    } else if a.len() < b.len() {
        subset_distance(a, b)
    } else {
        subset_distance(b, a)
    }
}

/// The outcome of [`permutation_test`].
#[derive(Clone, Debug, PartialEq)]
pub struct PermutationTest {
    /// The observed [`spectral_distance`].
    pub distance: f64,
    /// `(1 + #{permuted >= observed}) / (1 + permutations)`.
    pub p_value: f64,
    /// Number of random re-splits.
    pub permutations: usize,
}

/// Permutation test of "A and B come from the same spectral distribution": pools the
/// eigenvalues, re-splits them at random into sizes `|A|, |B|` (`permutations` times, seeded)
/// and reports the fraction of splits at least as far apart as the observed pair. A large
/// p-value means the spectra are indistinguishable (as for conjugate algorithms).
pub fn permutation_test(
    a: &Spectrum,
    b: &Spectrum,
    permutations: usize,
    seed: u64,
) -> Result<PermutationTest> {
    if permutations == 0 {
        return Err(CoreError::InvalidArgument(
            "a permutation test needs at least one permutation".into(),
        ));
    }
    let observed = spectral_distance(a, b)?;
    let mut pool: Vec<c64> = a
        .eigenvalues
        .iter()
        .chain(&b.eigenvalues)
        .copied()
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut hits = 0usize;
    // Relative slack so that ties at round-off level count as ties.
    let slack = 1e-12 * (1.0 + observed);
    for _ in 0..permutations {
        pool.shuffle(&mut rng);
        let pa = Spectrum::new(pool[..a.len()].to_vec());
        let pb = Spectrum::new(pool[a.len()..].to_vec());
        if spectral_distance(&pa, &pb)? >= observed - slack {
            hits += 1;
        }
    }
    Ok(PermutationTest {
        distance: observed,
        p_value: (1 + hits) as f64 / (1 + permutations) as f64,
        permutations,
    })
}
