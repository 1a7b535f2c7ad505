//! Depth from spectra (paper 001, section 5): how many layers a hierarchical model needs for a
//! multiscale signal.
//!
//! 1. The frequencies of a uniformly sampled 1-D signal `v_j = h(a + j dx)` are computed by the
//!    FFT ([`fft_frequencies`]; mean removed, one-sided amplitudes `2 |F_k| / n`, frequency
//!    `k / (n dx)` for `k = 1..n/2`) or by Hankel DMD ([`dmd_frequencies`]; DMD_RRR on the
//!    delay-embedded signal, frequency `|arg lambda| / (2 pi dx)`, amplitude `|b_j phi_j[0]|`,
//!    doubled for a complex-conjugate pair).
//! 2. **Which frequencies count** is the documented parameter [`AmplitudeThreshold`]: by
//!    default those whose amplitude reaches `0.01 (max h - min h)`, the paper's SVR tolerance
//!    `epsilon` (a component below the tolerance cannot matter to an `epsilon`-SVR layer;
//!    [`AmplitudeThreshold::RangeFraction`]); a fraction of the largest amplitude or an absolute
//!    amplitude can be used instead. Frequencies below half the FFT resolution `1 / (2 n dx)`
//!    (the mean / trend) never count.
//! 3. Each counted frequency `f` gives the Gaussian scale `gamma = (6 f)^2` (three standard
//!    deviations span half a period, `sigma = 1 / (6 f)`); with `gamma_0` the smallest and
//!    `gamma_max` the largest, `L = min{l : rho^l gamma_0 >= gamma_max}` and the model has the
//!    `L + 1` layers `l = 0..L` of `S(x) = sum_{l=0}^{L} a_l(x; gamma_l)` (a single-scale signal
//!    gives one layer, as the paper's table). [`ScaleStep`] says what `rho` multiplies: the
//!    scale `gamma` (the formula as printed, default) or the Gaussian width `sigma` (so
//!    `gamma_{l+1} = rho^2 gamma_l`), which is what reproduces the paper's 7 layers for
//!    `x + sin(2 pi x^4)`; [`DepthEstimate::bands`] also counts only the occupied scale bands.
//!
//! ```
//! use koopman_train::analysis::depth::{estimate_depth, sample, DepthConfig};
//!
//! # fn main() -> koopman_train::Result<()> {
//! // A single sinusoid has one scale: one layer.
//! let (values, dx) = sample(|x| (2.0 * std::f64::consts::PI * 3.0 * x).sin(), 0.0, 2.0, 512)?;
//! let d = estimate_depth(&values, dx, &DepthConfig::default())?;
//! assert!((d.f_min - 3.0).abs() < 1e-9 && (d.f_max - 3.0).abs() < 1e-9);
//! assert_eq!(d.layers, 1);
//! # Ok(()) }
//! ```

use crate::error::{Result, TrainError};
use koopman_core::c64;
use koopman_core::dmd::{hankel_dmd, HankelConfig, HankelEstimator, RrrConfig};
use koopman_core::faer::Mat;

/// One frequency of a signal with its amplitude (in the units of the signal).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Frequency {
    /// Cycles per unit of `x`.
    pub frequency: f64,
    /// Amplitude of the sinusoid at that frequency.
    pub amplitude: f64,
}

/// Which frequencies count for the depth rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AmplitudeThreshold {
    /// Amplitude `>= fraction * (largest amplitude)`, `0 < fraction <= 1`.
    Relative(f64),
    /// Amplitude `>= value`, `value > 0`.
    Absolute(f64),
    /// Amplitude `>= fraction * (max h - min h)` (the paper's SVR `epsilon` uses `0.01`).
    RangeFraction(f64),
}

/// How the frequencies are computed.
#[derive(Clone, Debug, PartialEq)]
pub enum FrequencyMethod {
    /// FFT of the mean-free signal.
    Fft,
    /// Hankel DMD (DMD_RRR) with this window length and relative rank tolerance.
    Dmd {
        /// Delay window length `h` (the signal needs at least `h + 1` samples).
        delays: usize,
        /// DMD_RRR rank tolerance `s_i / s_1 > tol`.
        tol: f64,
    },
}

/// Settings of [`estimate_depth`].
#[derive(Clone, Debug, PartialEq)]
pub struct DepthConfig {
    /// Scale ratio between consecutive layers, `gamma_{l+1} = rho gamma_l` (`rho > 1`).
    pub rho: f64,
    /// Which frequencies count.
    pub threshold: AmplitudeThreshold,
    /// FFT or DMD.
    pub method: FrequencyMethod,
    /// What the ratio `rho` multiplies from one layer to the next.
    pub step: ScaleStep,
}

/// What the ratio `rho` between consecutive layers multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ScaleStep {
    /// The scale: `gamma_{l+1} = rho gamma_l` (the paper's formula as printed).
    Gamma,
    /// The Gaussian width: `sigma_{l+1} = sigma_l / rho`, i.e. `gamma_{l+1} = rho^2 gamma_l`
    /// (equivalently the frequency: `f_{l+1} = rho f_l`).
    Width,
}

impl ScaleStep {
    /// The factor between the scales `gamma` of consecutive layers for a ratio `rho`.
    pub fn gamma_factor(self, rho: f64) -> f64 {
        match self {
            ScaleStep::Gamma => rho,
            ScaleStep::Width => rho * rho,
        }
    }
}

impl Default for DepthConfig {
    fn default() -> Self {
        Self {
            rho: 2.0,
            threshold: AmplitudeThreshold::RangeFraction(0.01),
            method: FrequencyMethod::Fft,
            step: ScaleStep::Gamma,
        }
    }
}

impl DepthConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if !(self.rho.is_finite() && self.rho > 1.0) {
            return Err(TrainError::InvalidArgument(format!(
                "scale ratio rho must be finite and > 1, got {}",
                self.rho
            )));
        }
        let ok = match self.threshold {
            AmplitudeThreshold::Relative(f) => f > 0.0 && f <= 1.0,
            AmplitudeThreshold::Absolute(v) | AmplitudeThreshold::RangeFraction(v) => {
                v.is_finite() && v > 0.0
            }
        };
        if !ok {
            return Err(TrainError::InvalidArgument(format!(
                "amplitude threshold out of range: {:?} (relative fractions lie in (0, 1], \
                 absolute values and range fractions are > 0)",
                self.threshold
            )));
        }
        if let FrequencyMethod::Dmd { delays, tol } = self.method {
            if delays == 0 {
                return Err(TrainError::InvalidArgument(
                    "DMD delay window length must be >= 1".into(),
                ));
            }
            RrrConfig {
                tol,
                ..Default::default()
            }
            .validate()?;
        }
        Ok(())
    }
}

/// The depth rule applied to one signal.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DepthEstimate {
    /// Every frequency found (before thresholding), by increasing frequency.
    pub spectrum: Vec<Frequency>,
    /// The frequencies that count, by increasing frequency.
    pub counted: Vec<Frequency>,
    /// Smallest counted frequency.
    pub f_min: f64,
    /// Largest counted frequency.
    pub f_max: f64,
    /// `(6 f_min)^2`.
    pub gamma_0: f64,
    /// `(6 f_max)^2`.
    pub gamma_max: f64,
    /// `L = min{l : rho^l gamma_0 >= gamma_max}` (with `rho^2` for [`ScaleStep::Width`]).
    pub depth: usize,
    /// Number of layers `L + 1`.
    pub layers: usize,
    /// Occupied scale bands: the counted scales grouped greedily from the smallest, each band
    /// spanning one layer ratio (`[gamma, factor gamma)`); at most `layers`, fewer when the
    /// spectrum has gaps (a sparse multi-frequency signal).
    pub bands: usize,
}

/// Number of bands of one layer ratio `factor` (> 1) needed to cover sorted scales `gammas`,
/// grouping greedily from the smallest.
pub fn occupied_bands(gammas: &[f64], factor: f64) -> usize {
    let mut bands = 0;
    let mut start = f64::NAN;
    for &g in gammas {
        if bands == 0 || g >= start * factor * (1.0 - 4.0 * f64::EPSILON) {
            bands += 1;
            start = g;
        }
    }
    bands
}

/// `n` samples of `h` on `[a, b)` (endpoint excluded, so a `b - a`-periodic signal is sampled
/// over whole periods); returns the values and the spacing `dx = (b - a) / n`.
pub fn sample(h: impl Fn(f64) -> f64, a: f64, b: f64, n: usize) -> Result<(Vec<f64>, f64)> {
    if !(a.is_finite() && b.is_finite() && b > a) {
        return Err(TrainError::InvalidArgument(format!(
            "sampling interval [{a}, {b}) must be finite and non-empty"
        )));
    }
    if n < 2 {
        return Err(TrainError::NotEnoughData(format!(
            "{n} samples; at least 2 are needed"
        )));
    }
    let dx = (b - a) / n as f64;
    let values: Vec<f64> = (0..n).map(|j| h(a + j as f64 * dx)).collect();
    check_signal(&values, dx)?;
    Ok((values, dx))
}

fn check_signal(values: &[f64], dx: f64) -> Result<()> {
    if values.len() < 2 {
        return Err(TrainError::NotEnoughData(format!(
            "signal of {} samples; at least 2 are needed",
            values.len()
        )));
    }
    koopman_core::validate::positive("sample spacing", dx)?;
    if let Some(j) = values.iter().position(|v| !v.is_finite()) {
        return Err(TrainError::NonFinite(format!("signal sample {j}")));
    }
    Ok(())
}

/// The discrete Fourier transform `F_k = sum_j z_j e^{-2 pi i j k / n}`: iterative radix-2
/// Cooley–Tukey when `n` is a power of two, the direct `O(n^2)` sum otherwise.
pub fn dft(z: &[c64]) -> Vec<c64> {
    let n = z.len();
    if n <= 1 {
        return z.to_vec();
    }
    if !n.is_power_of_two() {
        return (0..n)
            .map(|k| {
                z.iter()
                    .enumerate()
                    .map(|(j, v)| {
                        // (j k) mod n keeps the angle small and exact in integers.
                        let angle = -2.0 * std::f64::consts::PI * ((j * k) % n) as f64 / n as f64;
                        v * c64::new(angle.cos(), angle.sin())
                    })
                    .sum()
            })
            .collect();
    }
    let bits = n.trailing_zeros();
    let mut a: Vec<c64> = (0..n)
        .map(|i| z[i.reverse_bits() >> (usize::BITS - bits)])
        .collect();
    let mut len = 2;
    while len <= n {
        let half = len / 2;
        for start in (0..n).step_by(len) {
            for j in 0..half {
                let angle = -2.0 * std::f64::consts::PI * j as f64 / len as f64;
                let w = c64::new(angle.cos(), angle.sin());
                let u = a[start + j];
                let v = a[start + j + half] * w;
                a[start + j] = u + v;
                a[start + j + half] = u - v;
            }
        }
        len *= 2;
    }
    a
}

/// One-sided FFT spectrum of the mean-free signal: frequencies `k / (n dx)`, `k = 1..=n/2`,
/// amplitudes `2 |F_k| / n` (`|F_k| / n` at the Nyquist bin of an even `n`), so a sinusoid
/// `A sin(2 pi f x)` with `f` on the grid shows amplitude `A` at `f`.
pub fn fft_frequencies(values: &[f64], dx: f64) -> Result<Vec<Frequency>> {
    check_signal(values, dx)?;
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    let z: Vec<c64> = values.iter().map(|v| c64::new(v - mean, 0.0)).collect();
    let f = dft(&z);
    Ok((1..=n / 2)
        .map(|k| {
            let scale = if 2 * k == n { 1.0 } else { 2.0 };
            Frequency {
                frequency: k as f64 / (n as f64 * dx),
                amplitude: scale * f[k].norm() / n as f64,
            }
        })
        .collect())
}

/// Frequencies by Hankel DMD (DMD_RRR with relative rank tolerance `tol`) of the signal with a
/// window of `delays` samples: one entry per eigenvalue with `Im lambda >= 0` (a conjugate pair
/// is one sinusoid, its amplitude doubled), by increasing frequency. Needs more samples than the
/// window length.
pub fn dmd_frequencies(values: &[f64], dx: f64, delays: usize, tol: f64) -> Result<Vec<Frequency>> {
    check_signal(values, dx)?;
    if delays == 0 {
        return Err(TrainError::InvalidArgument(
            "DMD delay window length must be >= 1".into(),
        ));
    }
    if values.len() <= delays {
        return Err(TrainError::NotEnoughData(format!(
            "{} samples for a delay window of {delays}; at least {} are needed",
            values.len(),
            delays + 1
        )));
    }
    let signal = Mat::from_fn(1, values.len(), |_, j| values[j]);
    let fit = hankel_dmd(
        &[signal.as_ref()],
        &HankelConfig {
            delays,
            estimator: HankelEstimator::Rrr(RrrConfig {
                tol,
                ..Default::default()
            }),
        },
    )?;
    let mut out: Vec<Frequency> = fit
        .eigenvalues
        .iter()
        .enumerate()
        .filter(|(_, l)| l.im >= 0.0)
        .map(|(j, l)| {
            let weight = (fit.amplitudes[j] * fit.modes[(0, j)]).norm();
            let pair = if l.im > 0.0 { 2.0 } else { 1.0 };
            Frequency {
                frequency: l.arg().abs() / (2.0 * std::f64::consts::PI * dx),
                amplitude: pair * weight,
            }
        })
        .collect();
    out.sort_by(|a, b| a.frequency.total_cmp(&b.frequency));
    Ok(out)
}

/// Gaussian scale of a sinusoid of frequency `f`: `sigma = 1 / (6 f)`, `gamma = 1 / sigma^2 =
/// (6 f)^2`.
pub fn scale_from_frequency(f: f64) -> f64 {
    (6.0 * f).powi(2)
}

/// `L = min{l : rho^l gamma_0 >= gamma_max}` (0 when `gamma_0 >= gamma_max`).
pub fn depth_for_scales(gamma_0: f64, gamma_max: f64, rho: f64) -> Result<usize> {
    koopman_core::validate::positive("scale gamma_0", gamma_0)?;
    koopman_core::validate::positive("scale gamma_max", gamma_max)?;
    if !(rho.is_finite() && rho > 1.0) {
        return Err(TrainError::InvalidArgument(format!(
            "scale ratio rho must be finite and > 1, got {rho}"
        )));
    }
    // A relative slack of a few ulps keeps exact powers (gamma_max = rho^l gamma_0) at l.
    let target = gamma_max * (1.0 - 4.0 * f64::EPSILON);
    let mut l = 0usize;
    let mut g = gamma_0;
    while g < target {
        g *= rho;
        l += 1;
    }
    Ok(l)
}

/// The frequencies of the signal by the configured method, the counted ones, and the depth.
/// A signal without any frequency above the threshold (for instance a constant) is an error.
pub fn estimate_depth(values: &[f64], dx: f64, config: &DepthConfig) -> Result<DepthEstimate> {
    config.validate()?;
    check_signal(values, dx)?;
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let range = hi - lo;
    if range <= f64::EPSILON * hi.abs().max(lo.abs()) {
        return Err(TrainError::InvalidArgument(format!(
            "the signal is constant ({lo}); it has no frequencies to derive a depth from"
        )));
    }
    let spectrum = match config.method {
        FrequencyMethod::Fft => fft_frequencies(values, dx)?,
        FrequencyMethod::Dmd { delays, tol } => dmd_frequencies(values, dx, delays, tol)?,
    };
    let resolution = 1.0 / (values.len() as f64 * dx);
    let oscillating: Vec<Frequency> = spectrum
        .iter()
        .copied()
        .filter(|f| f.frequency >= 0.5 * resolution && f.amplitude.is_finite())
        .collect();
    let largest = oscillating.iter().map(|f| f.amplitude).fold(0.0, f64::max);
    let cut = match config.threshold {
        AmplitudeThreshold::Relative(fr) => fr * largest,
        AmplitudeThreshold::Absolute(v) => v,
        AmplitudeThreshold::RangeFraction(fr) => fr * range,
    };
    // Round-off in the transform must not decide membership at the cut.
    let slack = 1e3 * f64::EPSILON * largest;
    let counted: Vec<Frequency> = oscillating
        .iter()
        .copied()
        .filter(|f| f.amplitude > 0.0 && f.amplitude + slack >= cut)
        .collect();
    let (Some(first), Some(last)) = (counted.first(), counted.last()) else {
        return Err(TrainError::InvalidArgument(format!(
            "no frequency of the signal reaches the amplitude threshold {cut:e} \
             (largest amplitude {largest:e})"
        )));
    };
    let (f_min, f_max) = (first.frequency, last.frequency);
    let (gamma_0, gamma_max) = (scale_from_frequency(f_min), scale_from_frequency(f_max));
    let factor = config.step.gamma_factor(config.rho);
    let depth = depth_for_scales(gamma_0, gamma_max, factor)?;
    let gammas: Vec<f64> = counted
        .iter()
        .map(|f| scale_from_frequency(f.frequency))
        .collect();
    let bands = occupied_bands(&gammas, factor);
    Ok(DepthEstimate {
        spectrum,
        counted,
        f_min,
        f_max,
        gamma_0,
        gamma_max,
        depth,
        layers: depth + 1,
        bands,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    #[test]
    fn fft_matches_direct_sum_and_finds_pure_sinusoids() -> Result<()> {
        // Radix-2 against the direct sum.
        let z: Vec<c64> = (0..64)
            .map(|j| c64::new((0.37 * j as f64).sin(), (0.11 * j as f64).cos()))
            .collect();
        let fast = dft(&z);
        let n = z.len();
        for (k, fk) in fast.iter().enumerate() {
            let direct: c64 = z
                .iter()
                .enumerate()
                .map(|(j, v)| v * c64::from_polar(1.0, -2.0 * PI * (j * k) as f64 / n as f64))
                .sum();
            assert!((fk - direct).norm() < 64.0 * n as f64 * f64::EPSILON);
        }
        // A sinusoid on the grid: one bin of amplitude A, the rest round-off.
        for n in [256usize, 300] {
            let (v, dx) = sample(|x| 1.5 * (2.0 * PI * 5.0 * x + 0.3).sin(), 0.0, 2.0, n)?;
            let spec = fft_frequencies(&v, dx)?;
            let tol = 32.0 * n as f64 * f64::EPSILON;
            for f in &spec {
                if (f.frequency - 5.0).abs() < 1e-9 {
                    assert!((f.amplitude - 1.5).abs() < tol, "{f:?}");
                } else {
                    assert!(f.amplitude < tol, "{f:?}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn dmd_frequencies_match_closed_form() -> Result<()> {
        // Two sinusoids, frequencies 3 and 7.5 (not on any FFT grid constraint).
        let (v, dx) = sample(
            |x| 2.0 * (2.0 * PI * 3.0 * x).sin() + 0.5 * (2.0 * PI * 7.5 * x).cos(),
            0.0,
            2.0,
            200,
        )?;
        let freqs = dmd_frequencies(&v, dx, 10, 1e-10)?;
        assert_eq!(freqs.len(), 2, "{freqs:?}");
        let tol = 1e-8;
        assert!((freqs[0].frequency - 3.0).abs() < tol, "{freqs:?}");
        assert!((freqs[1].frequency - 7.5).abs() < tol, "{freqs:?}");
        assert!((freqs[0].amplitude - 2.0).abs() < 1e-6, "{freqs:?}");
        assert!((freqs[1].amplitude - 0.5).abs() < 1e-6, "{freqs:?}");
        Ok(())
    }

    #[test]
    fn depth_rule() -> Result<()> {
        assert_eq!(depth_for_scales(9.0, 9.0, 2.0)?, 0);
        assert_eq!(depth_for_scales(9.0, 36.0, 2.0)?, 2);
        assert_eq!(depth_for_scales(9.0, 37.0, 2.0)?, 3);
        assert_eq!(scale_from_frequency(2.0), 144.0);
        // Frequencies 1 and 4 on [0, 2): gamma ratio 16 -> L = 4 -> 5 layers.
        let (v, dx) = sample(
            |x| (2.0 * PI * x).sin() + (2.0 * PI * 4.0 * x).sin(),
            0.0,
            2.0,
            256,
        )?;
        let d = estimate_depth(&v, dx, &DepthConfig::default())?;
        assert_eq!(
            (d.f_min, d.f_max, d.depth, d.layers, d.bands),
            (1.0, 4.0, 4, 5, 2)
        );
        let width = DepthConfig {
            step: ScaleStep::Width,
            ..Default::default()
        };
        assert_eq!(estimate_depth(&v, dx, &width)?.layers, 3);
        assert_eq!(occupied_bands(&[1.0, 1.5, 2.0, 3.0, 4.1], 2.0), 3);
        let dmd = DepthConfig {
            method: FrequencyMethod::Dmd {
                delays: 8,
                tol: 1e-10,
            },
            ..Default::default()
        };
        let d = estimate_depth(&v, dx, &dmd)?;
        assert_eq!(d.layers, 5, "{d:?}");
        Ok(())
    }

    /// The paper's headline: h(x) = x + sin(2 pi x^4) on [0, 2], FFT, rho = 2, frequencies
    /// above the paper's epsilon = 0.01 (max h - min h): the chirp's band 0.5..31.5 gives 7
    /// layers with rho on the width, 13 with rho on gamma as printed.
    #[test]
    fn paper_chirp_depth() -> Result<()> {
        let (v, dx) = sample(|x| x + (2.0 * PI * x.powi(4)).sin(), 0.0, 2.0, 2048)?;
        let gamma = estimate_depth(&v, dx, &DepthConfig::default())?;
        assert_eq!((gamma.f_min, gamma.f_max), (0.5, 31.5));
        assert_eq!((gamma.depth, gamma.layers), (12, 13));
        let width = estimate_depth(
            &v,
            dx,
            &DepthConfig {
                step: ScaleStep::Width,
                ..Default::default()
            },
        )?;
        assert_eq!(width.layers, 7);
        Ok(())
    }

    #[test]
    fn bad_input_is_a_clear_error() -> Result<()> {
        let (c, dx) = sample(|_| 3.0, 0.0, 2.0, 64)?;
        let e = estimate_depth(&c, dx, &DepthConfig::default()).unwrap_err();
        assert!(e.to_string().contains("constant"), "{e}");
        let (v, dx) = sample(|x| x.sin(), 0.0, 2.0, 8)?;
        let e = dmd_frequencies(&v, dx, 8, 1e-10).unwrap_err();
        assert!(matches!(e, TrainError::NotEnoughData(_)), "{e}");
        let e = estimate_depth(
            &v,
            dx,
            &DepthConfig {
                rho: 1.0,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("rho"), "{e}");
        let e = estimate_depth(&[1.0, f64::NAN], 0.1, &DepthConfig::default()).unwrap_err();
        assert!(matches!(e, TrainError::NonFinite(_)), "{e}");
        assert!(sample(|x| x, 1.0, 0.0, 10).is_err());
        Ok(())
    }
}
