//! Spectra: Wasserstein-1 by optimal assignment against brute force, subset matching,
//! permutation tests, unit-circle and amplitude helpers.

use koopman_core::spectrum::{
    hungarian, permutation_test, spectral_distance, subset_distance, wasserstein, Spectrum,
};
use koopman_core::{c64, CoreError, Result};
use rand::{Rng, SeedableRng};

fn random_spectrum(n: usize, seed: u64) -> Spectrum {
    let mut g = rand::rngs::StdRng::seed_from_u64(seed);
    Spectrum::new(
        (0..n)
            .map(|_| c64::new(g.random_range(-1.0..1.0), g.random_range(-1.0..1.0)))
            .collect(),
    )
}

/// Minimum mean matching cost over every injective map of `a` into `b` (brute force).
fn brute_force(a: &[c64], b: &[c64]) -> f64 {
    fn rec(a: &[c64], b: &[c64], used: &mut Vec<bool>, i: usize, acc: f64, best: &mut f64) {
        if i == a.len() {
            *best = best.min(acc);
            return;
        }
        for j in 0..b.len() {
            if !used[j] {
                used[j] = true;
                rec(a, b, used, i + 1, acc + (a[i] - b[j]).norm(), best);
                used[j] = false;
            }
        }
    }
    let mut best = f64::INFINITY;
    rec(a, b, &mut vec![false; b.len()], 0, 0.0, &mut best);
    best / a.len() as f64
}

#[test]
fn wasserstein_is_zero_for_identical_spectra_and_symmetric() -> Result<()> {
    for n in [1, 3, 8, 20] {
        let a = random_spectrum(n, n as u64);
        let mut shuffled = a.clone();
        shuffled.eigenvalues.reverse();
        assert_eq!(wasserstein(&a, &a)?, 0.0);
        assert!(wasserstein(&a, &shuffled)? <= 4.0 * f64::EPSILON);
        let b = random_spectrum(n, 100 + n as u64);
        let (ab, ba) = (wasserstein(&a, &b)?, wasserstein(&b, &a)?);
        assert!((ab - ba).abs() <= 8.0 * f64::EPSILON * ab.max(1.0));
        assert!(ab > 0.0);
    }
    Ok(())
}

#[test]
fn wasserstein_equals_brute_force_assignment() -> Result<()> {
    for n in 1..=7 {
        for seed in 0..4 {
            let a = random_spectrum(n, 1000 + 10 * n as u64 + seed);
            let b = random_spectrum(n, 2000 + 10 * n as u64 + seed);
            let w = wasserstein(&a, &b)?;
            let bf = brute_force(&a.eigenvalues, &b.eigenvalues);
            assert!(
                (w - bf).abs() <= 1e-14 * bf.max(1.0),
                "n = {n}: {w} vs brute force {bf}"
            );
        }
    }
    Ok(())
}

#[test]
fn subset_distance_equals_brute_force_and_detects_subsets() -> Result<()> {
    for (k, n) in [(1, 4), (2, 5), (3, 6), (4, 7)] {
        let sup = random_spectrum(n, 3000 + n as u64);
        let other = random_spectrum(k, 4000 + k as u64);
        let d = subset_distance(&other, &sup)?;
        let bf = brute_force(&other.eigenvalues, &sup.eigenvalues);
        assert!((d - bf).abs() <= 1e-14 * bf.max(1.0));
        // a true subset has distance 0
        let sub = sup.select(&(0..k).rev().collect::<Vec<_>>());
        assert!(subset_distance(&sub, &sup)? <= 4.0 * f64::EPSILON);
        assert_eq!(spectral_distance(&sup, &sub)?, subset_distance(&sub, &sup)?);
    }
    Ok(())
}

#[test]
fn hungarian_handles_rectangular_and_ties() -> Result<()> {
    let cost = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
    let a = hungarian(&cost, 2, 3)?;
    assert_ne!(a[0], a[1]);
    let cost = [4.0, 1.0, 3.0, 2.0, 0.0, 5.0, 3.0, 2.0, 2.0];
    let a = hungarian(&cost, 3, 3)?;
    let total: f64 = a.iter().enumerate().map(|(i, &j)| cost[i * 3 + j]).sum();
    assert_eq!(total, 5.0);
    assert!(matches!(
        hungarian(&cost, 3, 2),
        Err(CoreError::ShapeMismatch(_))
    ));
    Ok(())
}

#[test]
fn permutation_test_separates_different_spectra() -> Result<()> {
    let a = random_spectrum(12, 5);
    let same = Spectrum::new(a.eigenvalues.iter().rev().copied().collect());
    let t = permutation_test(&a, &same, 200, 9)?;
    assert!(t.distance < 1e-14);
    assert!(t.p_value > 0.9, "identical spectra: p = {}", t.p_value);
    // shifted by 3: every split mixes the two clouds, so the observed distance is extreme
    let far = Spectrum::new(a.eigenvalues.iter().map(|z| z + 3.0).collect());
    let t = permutation_test(&a, &far, 200, 9)?;
    assert!(t.p_value < 0.01, "separated spectra: p = {}", t.p_value);
    // seeded: the same seed gives the same p-value
    assert_eq!(permutation_test(&a, &far, 200, 9)?, t);
    assert!(matches!(
        permutation_test(&a, &far, 0, 9),
        Err(CoreError::InvalidArgument(_))
    ));
    Ok(())
}

#[test]
fn unit_circle_amplitude_and_convergence_helpers() -> Result<()> {
    let s = Spectrum {
        eigenvalues: vec![
            c64::new(1.0, 0.0),
            c64::new(0.0, 0.5),
            c64::new(0.999, 0.0),
            c64::new(-1.2, 0.0),
        ],
        residuals: Some(vec![0.0, 0.1, 0.2, 0.3]),
        amplitudes: Some(vec![
            c64::new(0.1, 0.0),
            c64::new(3.0, 0.0),
            c64::new(0.0, 2.0),
            c64::new(1.0, 0.0),
        ]),
    };
    let d = s.distance_to_unit_circle();
    assert!((d[1] - 0.5).abs() < 1e-15 && (d[3] - 0.2).abs() < 1e-15);
    assert_eq!(s.near_one(0.01), vec![0, 2]);
    assert_eq!(s.count_near_one(1e-6), 1);
    let sorted = s.sorted_by_amplitude();
    assert_eq!(sorted.eigenvalues[0], c64::new(0.0, 0.5));
    assert_eq!(sorted.residuals.as_ref().unwrap()[0], 0.1);
    assert_eq!(s.top_by_amplitude(2).len(), 2);
    // errors
    let empty = Spectrum::new(vec![]);
    assert!(matches!(
        wasserstein(&empty, &empty),
        Err(CoreError::Empty(_))
    ));
    let nan = Spectrum::new(vec![c64::new(f64::NAN, 0.0)]);
    assert!(matches!(
        wasserstein(&nan, &Spectrum::new(vec![c64::new(0.0, 0.0)])),
        Err(CoreError::NonFinite(_))
    ));
    assert!(matches!(
        wasserstein(&s, &Spectrum::new(vec![c64::new(0.0, 0.0)])),
        Err(CoreError::ShapeMismatch(_))
    ));
    assert!(matches!(
        subset_distance(&s, &Spectrum::new(vec![c64::new(0.0, 0.0)])),
        Err(CoreError::ShapeMismatch(_))
    ));
    Ok(())
}
