//! Koopman-mode pruning (paper 001, section 4, Algorithms 1 and 2).
//!
//! From the weight snapshots `w_0, ..., w_{m-1}` of a [`TrainingObserver`], DMD_RRR gives
//! `w_t ≈ sum_k m_k lambda_k^t c_k` with unit-norm modes `m_k`; modes are ranked by `|c_k|`, the
//! coefficient in the reconstruction of the first snapshot. The reconstruction `Y` keeps the mode
//! of the eigenvalue closest to 1 (which must lie within [`PruningConfig::one_tol`] of 1) and
//! every mode ranked at or above it (a complex mode always with its conjugate partner), evaluated
//! at the last recorded snapshot `t = m - 1`.
//!
//! - **Algorithm 1** ([`prune_reconstruction`]): `Y[|Y| < epsilon] = 0`, the weights become `Y`.
//! - **Algorithm 2** ([`prune_reinitialised`]): the weights are re-drawn by the model's own
//!   initialiser, then the entries with `|Y| < epsilon` are set to 0.
//!
//! Both return a [`PruningMask`]; calling [`PruningMask::apply`] after every optimizer step keeps
//! the pruned weights pinned at zero during further training.
//!
//! ```
//! use candle_core::{DType, Device, Tensor, Var};
//! use koopman_train::analysis::observer::TrainingObserver;
//! use koopman_train::analysis::pruning::{prune_reconstruction, PruningConfig};
//!
//! # fn main() -> koopman_train::Result<()> {
//! let dev = Device::Cpu;
//! let w = Var::from_tensor(&Tensor::zeros(4, DType::F64, &dev)?)?;
//! let mut obs = TrainingObserver::new(vec![("w".into(), w.clone())])?;
//! // Weights relaxing to (1, 0.001, -2, 0.002) at rate 0.5.
//! for t in 0..10 {
//!     let c = 0.5f64.powi(t);
//!     w.set(&Tensor::new(&[1.0 + c, 0.001 + c, -2.0 - c, 0.002], &dev)?)?;
//!     obs.record(c)?;
//! }
//! let mask = prune_reconstruction(&obs, &PruningConfig { epsilon: 0.01, ..Default::default() })?;
//! assert_eq!(mask.pruned(), 2);
//! let v = w.as_tensor().to_vec1::<f64>()?;
//! assert_eq!((v[1], v[3]), (0.0, 0.0));
//! // The decaying mode ranks below the fixed point, so Y is the fixed point itself.
//! assert!((v[0] - 1.0).abs() < 1e-8 && (v[2] + 2.0).abs() < 1e-8);
//! # Ok(()) }
//! ```

use super::observer::TrainingObserver;
use crate::error::{Result, TrainError};
use candle_core::{Tensor, Var};
use koopman_core::c64;
use koopman_core::dmd::{int_power, RrrConfig};

/// Settings of the pruning algorithms.
#[derive(Clone, Debug, PartialEq)]
pub struct PruningConfig {
    /// Pruning threshold: entries of the reconstruction with `|Y| < epsilon` are pinned to 0
    /// (`epsilon >= 0`).
    pub epsilon: f64,
    /// The eigenvalue-1 mode must lie within this distance of 1.
    pub one_tol: f64,
    /// DMD_RRR settings.
    pub rrr: RrrConfig,
}

impl Default for PruningConfig {
    fn default() -> Self {
        Self {
            epsilon: 1e-2,
            one_tol: 0.1,
            rrr: RrrConfig {
                tol: 1e-10,
                ..Default::default()
            },
        }
    }
}

impl PruningConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        koopman_core::validate::non_negative("pruning threshold epsilon", self.epsilon)?;
        koopman_core::validate::positive("eigenvalue-1 tolerance", self.one_tol)?;
        Ok(self.rrr.validate()?)
    }
}

/// The Koopman-mode reconstruction used by both algorithms.
#[derive(Clone, Debug, PartialEq)]
pub struct ModeReconstruction {
    /// `Y`, flattened in the observer's variable order.
    pub values: Vec<f64>,
    /// The eigenvalue taken as "1".
    pub eigenvalue_one: c64,
    /// Modes kept (of the fit's rank).
    pub modes_used: usize,
    /// Rank of the DMD_RRR fit.
    pub rank: usize,
}

/// The reconstruction `Y` of the last snapshot from the eigenvalue-1 mode and every mode ranked
/// at or above it; see the [module documentation](self).
pub fn mode_reconstruction(
    observer: &TrainingObserver,
    config: &PruningConfig,
) -> Result<ModeReconstruction> {
    config.validate()?;
    let m = observer.len();
    let fit = observer.weight_fit(m, &config.rrr)?;
    let r = fit.rank();
    let one = c64::new(1.0, 0.0);
    let j1 = (0..r)
        .min_by(|&a, &b| {
            (fit.eigenvalues[a] - one)
                .norm()
                .total_cmp(&(fit.eigenvalues[b] - one).norm())
        })
        .ok_or_else(|| TrainError::NotEnoughData("the weight spectrum is empty".into()))?;
    let l1 = fit.eigenvalues[j1];
    if (l1 - one).norm() > config.one_tol {
        return Err(TrainError::InvalidArgument(format!(
            "no eigenvalue within {} of 1 (closest {l1}): the weights have not settled towards \
             a fixed point after {m} snapshots",
            config.one_tol
        )));
    }
    let amp: Vec<f64> = fit.amplitudes.iter().map(|c| c.norm()).collect();
    let mut keep: Vec<bool> = amp.iter().map(|&a| a >= amp[j1]).collect();
    keep[j1] = true;
    // Complex modes with their conjugate partners.
    for j in 0..r {
        if keep[j] && fit.eigenvalues[j].im != 0.0 {
            let target = fit.eigenvalues[j].conj();
            if let Some(k) = (0..r).filter(|&k| k != j).min_by(|&a, &b| {
                (fit.eigenvalues[a] - target)
                    .norm()
                    .total_cmp(&(fit.eigenvalues[b] - target).norm())
            }) {
                keep[k] = true;
            }
        }
    }
    let t = (m - 1) as u64;
    let coeffs: Vec<(usize, c64)> = (0..r)
        .filter(|&j| keep[j])
        .map(|j| (j, fit.amplitudes[j] * int_power(fit.eigenvalues[j], t)))
        .collect();
    let values: Vec<f64> = (0..fit.state_dim())
        .map(|i| {
            coeffs
                .iter()
                .map(|(j, c)| (fit.modes[(i, *j)] * c).re)
                .sum()
        })
        .collect();
    if values.iter().any(|v| !v.is_finite()) {
        return Err(TrainError::NonFinite("Koopman-mode reconstruction".into()));
    }
    Ok(ModeReconstruction {
        values,
        eigenvalue_one: l1,
        modes_used: coeffs.len(),
        rank: r,
    })
}

/// Keep-masks (1 kept, 0 pinned to zero) for a set of variables.
#[derive(Clone, Debug)]
pub struct PruningMask {
    entries: Vec<(String, Var, Tensor)>,
    pruned: usize,
    total: usize,
}

impl PruningMask {
    /// Masks `|y| >= epsilon` from values `y` flattened in the order of `vars`.
    pub fn from_values(vars: &[(String, Var)], y: &[f64], epsilon: f64) -> Result<Self> {
        koopman_core::validate::non_negative("pruning threshold epsilon", epsilon)?;
        let total: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();
        if total != y.len() {
            return Err(TrainError::ShapeMismatch(format!(
                "{} values for variables holding {total}",
                y.len()
            )));
        }
        let mut entries = Vec::with_capacity(vars.len());
        let mut offset = 0;
        let mut pruned = 0;
        for (name, var) in vars {
            let n = var.elem_count();
            let keep: Vec<f64> = y[offset..offset + n]
                .iter()
                .map(|v| if v.abs() < epsilon { 0.0 } else { 1.0 })
                .collect();
            pruned += keep.iter().filter(|k| **k == 0.0).count();
            let mask = Tensor::from_vec(keep, var.dims(), var.device())?.to_dtype(var.dtype())?;
            entries.push((name.clone(), var.clone(), mask));
            offset += n;
        }
        Ok(Self {
            entries,
            pruned,
            total,
        })
    }

    /// Sets the pruned entries of every variable to zero (call after each optimizer step).
    pub fn apply(&self) -> Result<()> {
        for (_, var, mask) in &self.entries {
            var.set(&var.as_tensor().mul(mask)?)?;
        }
        Ok(())
    }

    /// Number of pruned entries.
    pub fn pruned(&self) -> usize {
        self.pruned
    }

    /// Number of masked entries in all.
    pub fn total(&self) -> usize {
        self.total
    }

    /// `pruned / total`.
    pub fn zero_fraction(&self) -> f64 {
        self.pruned as f64 / self.total.max(1) as f64
    }

    /// The masks by variable name.
    pub fn masks(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().map(|(n, _, m)| (n.as_str(), m))
    }
}

/// Algorithm 1: the observed variables become the reconstruction `Y` with `|Y| < epsilon` set to
/// zero; returns the mask that keeps them there.
pub fn prune_reconstruction(
    observer: &TrainingObserver,
    config: &PruningConfig,
) -> Result<PruningMask> {
    let rec = mode_reconstruction(observer, config)?;
    let mask = PruningMask::from_values(observer.vars(), &rec.values, config.epsilon)?;
    let mut offset = 0;
    for (_, var) in observer.vars() {
        let n = var.elem_count();
        let y = Tensor::from_slice(&rec.values[offset..offset + n], var.dims(), var.device())?
            .to_dtype(var.dtype())?;
        var.set(&y)?;
        offset += n;
    }
    mask.apply()?;
    Ok(mask)
}

/// Algorithm 2: `reinitialise` re-draws the model's weights with its own initialiser, then the
/// entries with `|Y| < epsilon` are set to zero; returns the mask that keeps them there.
pub fn prune_reinitialised<F>(
    observer: &TrainingObserver,
    config: &PruningConfig,
    reinitialise: F,
) -> Result<PruningMask>
where
    F: FnOnce() -> Result<()>,
{
    let rec = mode_reconstruction(observer, config)?;
    let mask = PruningMask::from_values(observer.vars(), &rec.values, config.epsilon)?;
    reinitialise()?;
    mask.apply()?;
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::{Optimizer, VarBuilder, VarMap};
    use koopman_core::nn::{init_seeded, Activation, Mlp};
    use rand::SeedableRng;

    /// Records a small MLP's weights while training it on a toy problem.
    fn trained(dev: &Device) -> Result<(VarMap, Mlp, TrainingObserver, Tensor, Tensor)> {
        let vm = VarMap::new();
        let mlp = Mlp::new(
            &[4, 6, 2],
            Activation::Tanh,
            VarBuilder::from_varmap(&vm, DType::F64, dev),
        )?;
        init_seeded(&vm, 3)?;
        let x = Tensor::from_vec(
            (0..64 * 4)
                .map(|i| ((i * 37 % 101) as f64 / 50.0) - 1.0)
                .collect(),
            (64, 4),
            dev,
        )?;
        let y = Tensor::from_vec(
            (0..64).map(|i| ((i * 37 % 101) > 50) as u32).collect(),
            64,
            dev,
        )?;
        let mut obs = TrainingObserver::from_varmap(&vm, |n| n.ends_with("weight"))?;
        let mut opt = candle_nn::AdamW::new(
            vm.all_vars(),
            candle_nn::ParamsAdamW {
                lr: 0.02,
                weight_decay: 0.0,
                ..Default::default()
            },
        )?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let loss = |idx: &Tensor| -> Result<Tensor> {
            let xb = x.index_select(idx, 0)?;
            let yb = y.index_select(idx, 0)?;
            Ok(candle_nn::loss::cross_entropy(
                &candle_core::Module::forward(&mlp, &xb)?,
                &yb,
            )?)
        };
        obs.record(loss(&Tensor::arange(0u32, 64, dev)?)?.to_scalar::<f64>()?)?;
        for _ in 0..30 {
            let l = super::super::observer::run_epoch(
                &mut opt,
                64,
                16,
                &mut rng,
                dev,
                loss,
                || Ok(()),
            )?;
            obs.record(l)?;
        }
        Ok((vm, mlp, obs, x, y))
    }

    #[test]
    fn algorithm_1_sets_reconstruction_and_mask_survives_training() -> Result<()> {
        let dev = Device::Cpu;
        let (vm, mlp, obs, x, y) = trained(&dev)?;
        let config = PruningConfig {
            epsilon: 0.2,
            ..Default::default()
        };
        let rec = mode_reconstruction(&obs, &config)?;
        assert!((rec.eigenvalue_one - c64::new(1.0, 0.0)).norm() <= 0.1);
        // The reconstruction is close to the last snapshot.
        let last = obs.weights(obs.len() - 1)?;
        let err: f64 = rec
            .values
            .iter()
            .zip(last)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm: f64 = last.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(
            err < 0.05 * norm,
            "reconstruction error {err} vs norm {norm}"
        );
        let mask = prune_reconstruction(&obs, &config)?;
        let expected = rec.values.iter().filter(|v| v.abs() < 0.2).count();
        assert_eq!(mask.pruned(), expected);
        assert!(mask.pruned() > 0 && mask.pruned() < mask.total());
        let now = obs.current()?;
        for (a, b) in now.iter().zip(&rec.values) {
            let want = if b.abs() < 0.2 { 0.0 } else { *b };
            assert!((a - want).abs() < 1e-12);
        }
        // Further training with the mask: pruned entries stay at zero, the others move.
        let mut opt = candle_nn::AdamW::new(vm.all_vars(), Default::default())?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        super::super::observer::run_epoch(
            &mut opt,
            64,
            16,
            &mut rng,
            &dev,
            |idx| {
                let xb = x.index_select(idx, 0)?;
                let yb = y.index_select(idx, 0)?;
                Ok(candle_nn::loss::cross_entropy(
                    &candle_core::Module::forward(&mlp, &xb)?,
                    &yb,
                )?)
            },
            || mask.apply(),
        )?;
        let after = obs.current()?;
        let mut moved = 0;
        for ((a, b), y) in after.iter().zip(&now).zip(&rec.values) {
            if y.abs() < 0.2 {
                assert_eq!(*a, 0.0);
            } else if a != b {
                moved += 1;
            }
        }
        assert!(moved > 0);
        Ok(())
    }

    #[test]
    fn algorithm_2_reinitialises_and_masks() -> Result<()> {
        let dev = Device::Cpu;
        let (vm, _, obs, _, _) = trained(&dev)?;
        let config = PruningConfig {
            epsilon: 0.2,
            ..Default::default()
        };
        let mask1 =
            PruningMask::from_values(obs.vars(), &mode_reconstruction(&obs, &config)?.values, 0.2)?;
        let mask = prune_reinitialised(&obs, &config, || Ok(init_seeded(&vm, 11)?))?;
        assert_eq!(mask.pruned(), mask1.pruned());
        // The kept entries are the fresh initialisation, the pruned ones zero.
        let vm2 = VarMap::new();
        Mlp::new(
            &[4, 6, 2],
            Activation::Tanh,
            VarBuilder::from_varmap(&vm2, DType::F64, &dev),
        )?;
        init_seeded(&vm2, 11)?;
        let fresh = TrainingObserver::from_varmap(&vm2, |n| n.ends_with("weight"))?.current()?;
        let now = obs.current()?;
        let keep: Vec<f64> = mask
            .masks()
            .flat_map(|(_, m)| m.flatten_all().unwrap().to_vec1::<f64>().unwrap())
            .collect();
        for ((a, f), k) in now.iter().zip(&fresh).zip(&keep) {
            assert_eq!(*a, if *k == 0.0 { 0.0 } else { *f });
        }
        Ok(())
    }

    #[test]
    fn bad_input_is_an_error() -> Result<()> {
        let dev = Device::Cpu;
        let (_, _, obs, _, _) = trained(&dev)?;
        let e = mode_reconstruction(
            &obs,
            &PruningConfig {
                epsilon: -1.0,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("epsilon"), "{e}");
        // One snapshot: not enough for a spectrum.
        let w = Var::from_tensor(&Tensor::ones(3, DType::F64, &dev)?)?;
        let mut one = TrainingObserver::new(vec![("w".into(), w)])?;
        one.record(1.0)?;
        let e = prune_reconstruction(&one, &PruningConfig::default()).unwrap_err();
        assert!(matches!(e, TrainError::NotEnoughData(_)), "{e}");
        // Weights decaying to zero: no eigenvalue near 1.
        let w = Var::from_tensor(&Tensor::ones(3, DType::F64, &dev)?)?;
        let mut decay = TrainingObserver::new(vec![("w".into(), w.clone())])?;
        for t in 0..8 {
            w.set(&Tensor::new(&[1.0, 2.0, -1.0], &dev)?.affine(0.5f64.powi(t), 0.0)?)?;
            decay.record(1.0)?;
        }
        let e = prune_reconstruction(&decay, &PruningConfig::default()).unwrap_err();
        assert!(e.to_string().contains("fixed point"), "{e}");
        Ok(())
    }

    #[test]
    fn mask_from_values_checks_lengths() -> Result<()> {
        let w = Var::from_tensor(&Tensor::ones(3, DType::F32, &Device::Cpu)?)?;
        let vars = vec![("w".to_string(), w)];
        assert!(PruningMask::from_values(&vars, &[1.0, 2.0], 0.1).is_err());
        assert!(PruningMask::from_values(&vars, &[1.0, 2.0, 3.0], -0.1).is_err());
        let m = PruningMask::from_values(&vars, &[0.05, 2.0, -0.01], 0.1)?;
        assert_eq!((m.pruned(), m.total()), (2, 3));
        Ok(())
    }
}
