//! The delay-embedded (Hankel) data of a scaled layer's trajectories: the standardised windows
//! that the iterated readout of [`fit_hybrid`](super::fit_hybrid) factors, and their singular
//! value decomposition, whose right singular vectors paper 002 plots (its Figure 5) as evidence
//! that delay coordinates linearise the layer.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{VarBuilder, VarMap};
//! use koopman_core::nn::{Activation, Mlp};
//! use koopman_layers::replace::{hankel_svd, HybridConfig, ScaledLayer, ScalingConfig};
//!
//! # fn main() -> koopman_layers::Result<()> {
//! let dev = Device::Cpu;
//! let vm = VarMap::new();
//! let mlp = Mlp::new(&[2, 4, 3, 2], Activation::Relu, VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
//! let x = Tensor::randn(0f32, 1.0, (64, 2), &dev)?;
//! let config = ScalingConfig { layers: 4, epochs: 2, ..Default::default() };
//! let scaled = ScaledLayer::train(&mlp, 2, &x, &config)?;
//! let traj = scaled.trajectories(&x, -1.0)?;
//! let svd = hankel_svd(&traj, &HybridConfig { delays: 2, ..Default::default() }, 3)?;
//! assert_eq!(svd.right.len(), 3);
//! assert!(svd.singular_values.windows(2).all(|w| w[0] >= w[1]));
//! # Ok(()) }
//! ```

use super::hybrid::{HybridConfig, ReadoutKind};
use super::scaling::Trajectories;
use crate::error::{LayersError, Result};
use koopman_core::dmd::delay_embed;
use koopman_core::faer::Mat;
use koopman_core::linalg;

/// The standardised, delay-embedded windows of the first `count` trajectories.
pub(super) struct Embedded {
    /// Per state coordinate: mean over every state of the fitted trajectories (0 without
    /// standardisation).
    pub mean: Vec<f64>,
    /// Per state coordinate: standard deviation (1 without standardisation or for a constant
    /// coordinate).
    pub scale: Vec<f64>,
    /// Windows `h` states long, one column each (`h (width + affine) x windows`).
    pub x: Mat<f64>,
    /// The same windows one state later.
    pub y: Mat<f64>,
}

/// Standardises each state coordinate over all states of the first `count` trajectories (when
/// `normalize`), appends a constant coordinate (when `affine`), and stacks windows of `h` states.
pub(super) fn embed(
    trajectories: &Trajectories,
    count: usize,
    h: usize,
    affine: bool,
    normalize: bool,
) -> Result<Embedded> {
    let m = trajectories.len_states();
    let width = trajectories.states.first().map_or(0, |t| t.nrows());
    let width_eff = width + usize::from(affine);
    let (mut mean, mut scale) = (vec![0.0; width], vec![1.0; width]);
    if normalize {
        let total = (count * m) as f64;
        for t in &trajectories.states[..count] {
            for c in 0..m {
                for r in 0..width {
                    mean[r] += t[(r, c)] / total;
                }
            }
        }
        let mut var = vec![0.0; width];
        for t in &trajectories.states[..count] {
            for c in 0..m {
                for r in 0..width {
                    var[r] += (t[(r, c)] - mean[r]).powi(2) / total;
                }
            }
        }
        for r in 0..width {
            let s = var[r].sqrt();
            scale[r] = if s > 1e-8 { s } else { 1.0 };
        }
    }
    let normed: Vec<Mat<f64>> = trajectories.states[..count]
        .iter()
        .map(|t| {
            Mat::from_fn(width_eff, m, |r, c| {
                if r == width {
                    1.0
                } else {
                    (t[(r, c)] - mean[r]) / scale[r]
                }
            })
        })
        .collect();
    let refs: Vec<_> = normed.iter().map(|t| t.as_ref()).collect();
    let (x, y) = delay_embed(&refs, h)?;
    Ok(Embedded { mean, scale, x, y })
}

/// Singular values and leading right singular vectors of a Hankel data matrix.
#[derive(Clone, Debug)]
pub struct HankelSvd {
    /// Every singular value, largest first.
    pub singular_values: Vec<f64>,
    /// The leading right singular vectors, one per singular value, each as long as the matrix
    /// has windows (columns: the windows of trajectory 0, then of trajectory 1, ...).
    pub right: Vec<Vec<f64>>,
}

/// The SVD of the Hankel matrix that the iterated readout of [`fit_hybrid`](super::fit_hybrid)
/// with `config` factors (its delays, standardisation, constant coordinate and trajectory
/// count), with the `k` leading right singular vectors (fewer if the matrix has lower rank).
pub fn hankel_svd(
    trajectories: &Trajectories,
    config: &HybridConfig,
    k: usize,
) -> Result<HankelSvd> {
    let m = trajectories.len_states();
    let h = config.delays;
    if trajectories.states.is_empty() || h == 0 || h > m.saturating_sub(1) {
        return Err(LayersError::InvalidArgument(format!(
            "delay window h = {h} needs 1 <= h <= {} for trajectories of {m} states",
            m.saturating_sub(1)
        )));
    }
    let count = config
        .max_trajectories
        .unwrap_or(trajectories.states.len())
        .min(trajectories.states.len());
    let affine = config.affine && config.readout == ReadoutKind::Iterated;
    let Embedded { x, .. } = embed(trajectories, count, h, affine, config.normalize)?;
    // Through the Gram matrix, as the fit does (the windows far outnumber the rows).
    let gram = x.as_ref() * x.as_ref().transpose();
    let svd = linalg::thin_svd(gram.as_ref())?;
    let singular_values: Vec<f64> = svd.s.iter().map(|v| v.max(0.0).sqrt()).collect();
    let floor = 1e-7 * singular_values.first().copied().unwrap_or(0.0);
    let right = (0..k.min(singular_values.len()))
        .take_while(|&j| singular_values[j] > floor)
        .map(|j| {
            let u = svd.u.as_ref().col(j);
            let v = x.as_ref().transpose() * u;
            (0..v.nrows()).map(|i| v[i] / singular_values[j]).collect()
        })
        .collect();
    Ok(HankelSvd {
        singular_values,
        right,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trajectories built by hand: the right singular vectors are unit vectors, orthogonal,
    /// and X v_j = s_j u_j holds for the Hankel matrix assembled independently here.
    #[test]
    fn right_singular_vectors_of_a_known_hankel_matrix() -> Result<()> {
        let states: Vec<Mat<f64>> = (0..5)
            .map(|t| Mat::from_fn(2, 6, |r, c| ((t + 1) as f64 * 0.3 * (c + r) as f64).sin()))
            .collect();
        let traj = Trajectories {
            states: states.clone(),
            original_output: Mat::zeros(5, 2),
            pad_value: -1.0,
        };
        let config = HybridConfig {
            delays: 3,
            normalize: false,
            affine: false,
            ..Default::default()
        };
        let svd = hankel_svd(&traj, &config, 4)?;
        // The Hankel matrix: per trajectory, windows starting at 0..=2 of 3 stacked states.
        let windows: Vec<Vec<f64>> = states
            .iter()
            .flat_map(|t| {
                (0..3).map(move |s| {
                    (0..3)
                        .flat_map(|d| (0..2).map(move |r| t[(r, s + d)]))
                        .collect()
                })
            })
            .collect();
        assert_eq!(svd.right[0].len(), windows.len());
        let eps = 1e-9;
        for (j, v) in svd.right.iter().enumerate() {
            let norm: f64 = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < eps, "|v_{j}| = {norm}");
            for w in &svd.right[..j] {
                let dot: f64 = v.iter().zip(w).map(|(a, b)| a * b).sum();
                assert!(dot.abs() < eps, "v_{j} not orthogonal: {dot}");
            }
            // |X v_j| = s_j.
            let xv: Vec<f64> = (0..6)
                .map(|row| windows.iter().zip(v).map(|(col, vi)| col[row] * vi).sum())
                .collect();
            let n: f64 = xv.iter().map(|a| a * a).sum::<f64>().sqrt();
            assert!((n - svd.singular_values[j]).abs() < 1e-7 * svd.singular_values[0]);
        }
        assert!(hankel_svd(
            &traj,
            &HybridConfig {
                delays: 6,
                ..config
            },
            2
        )
        .is_err());
        Ok(())
    }
}
