//! The training objective: the data loss (end-to-end or window-wise), the norm regulariser by
//! warm-started power iteration and the continuity regulariser, on prepared features.

use crate::model::DeepKoopmanLayered;
use crate::{LayersError, Result};
use candle_core::{DType, Device, Tensor};
use koopman_core::complex::dtype_epsilon;
use koopman_core::{ComplexTensor, ToeplitzGenerator};

use super::{Loss, SnapshotData, TrainConfig};

/// Features and targets of a snapshot set, on the model's device.
pub(super) struct Prepared {
    features: Vec<(Tensor, Tensor)>,
    targets: Vec<Tensor>,
}

pub(super) fn prepare(model: &DeepKoopmanLayered, data: &SnapshotData) -> Result<Prepared> {
    if data.dim() != model.state_dim() {
        return Err(LayersError::ShapeMismatch(format!(
            "data of dimension {} for a model of state dimension {}",
            data.dim(),
            model.state_dim()
        )));
    }
    let obs = model.observable();
    let b = data.rows();
    let features = data
        .snapshots()
        .iter()
        .map(|s| model.features(s))
        .collect::<Result<Vec<_>>>()?;
    let targets = data
        .snapshots()
        .iter()
        .map(|s| {
            Ok(
                Tensor::from_vec(obs.targets(s), (b, data.dim()), model.device())?
                    .to_dtype(model.dtype())?,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Prepared { features, targets })
}

fn mse(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    Ok((pred - target)?.sqr()?.mean_all()?)
}

/// The data loss of `model` on `data` (a scalar tensor, differentiable in the variables).
pub fn data_loss(model: &DeepKoopmanLayered, data: &SnapshotData, loss: Loss) -> Result<Tensor> {
    let generators = model.generators()?;
    let prepared = prepare(model, data)?;
    loss_from(model, &generators, &prepared, loss)
}

fn loss_from(
    model: &DeepKoopmanLayered,
    generators: &[ToeplitzGenerator],
    p: &Prepared,
    loss: Loss,
) -> Result<Tensor> {
    let j_count = generators.len();
    let k = p.features.len();
    let last = k - 1;
    match loss {
        Loss::EndToEnd => {
            let c = model.suffix_coefficients(generators)?;
            mse(&model.evaluate(&c[0], &p.features[0])?, &p.targets[last])
        }
        Loss::WindowWise | Loss::Suffix => {
            if k != j_count + 1 {
                return Err(LayersError::ShapeMismatch(format!(
                    "{loss:?} loss needs J + 1 = {} snapshots, got {k}",
                    j_count + 1
                )));
            }
            let coeffs = if loss == Loss::WindowWise {
                model.window_coefficients(generators)?
            } else {
                model.suffix_coefficients(generators)?
            };
            let mut total: Option<Tensor> = None;
            for (j, c) in coeffs.iter().enumerate() {
                let target = if loss == Loss::WindowWise {
                    &p.targets[j + 1]
                } else {
                    &p.targets[last]
                };
                let term = mse(&model.evaluate(c, &p.features[j])?, target)?;
                total = Some(match total {
                    None => term,
                    Some(t) => (t + term)?,
                });
            }
            let total = total.ok_or_else(|| LayersError::InvalidArgument("no layers".into()))?;
            Ok((total / j_count as f64)?)
        }
    }
}

/// Unit iterates of the regularisers' power iterations, one slot per 2-norm term, carried from
/// one training step to the next ([`TrainConfig::warm_start_power`]).
#[derive(Clone, Debug, Default)]
pub(super) struct PowerIterates {
    norm: Vec<Option<ComplexTensor>>,
    continuity: Vec<Option<ComplexTensor>>,
}

/// Slot `k` of `slots` (grown on demand), or `None` without warm starts.
fn slot<'a>(
    slots: &'a mut Option<&mut Vec<Option<ComplexTensor>>>,
    k: usize,
) -> Option<&'a mut Option<ComplexTensor>> {
    slots.as_mut().map(|v| {
        if v.len() <= k {
            v.resize(k + 1, None);
        }
        &mut v[k]
    })
}

/// Power-iteration estimate of `||A||_2` for `A` given by `apply` and `apply_adjoint`;
/// differentiable in the operator (the iterate is detached). Starts from `warm`'s iterate when
/// it holds one (else a seeded random vector) and leaves the last unit iterate there.
#[allow(clippy::too_many_arguments)]
fn power_norm(
    dim: usize,
    iterations: usize,
    seed: u64,
    dtype: DType,
    device: &Device,
    apply: &dyn Fn(&ComplexTensor) -> Result<ComplexTensor>,
    apply_adjoint: &dyn Fn(&ComplexTensor) -> Result<ComplexTensor>,
    warm: Option<&mut Option<ComplexTensor>>,
) -> Result<Tensor> {
    // x / ||x|| (detached), or None when ||x|| <= eps^2: for the unit iterate u, ||A* A u|| ~
    // ||A||^2, so A is zero to working precision (equal neighbouring layers in the continuity
    // term, zero coefficients). Its norm is 0 and 0 is a subgradient; the 2-norm has no
    // derivative there, and normalising a (sub)denormal iterate would overflow to NaN.
    let normalise = |x: &ComplexTensor| -> Result<Option<ComplexTensor>> {
        let n = x.norm_f64()?;
        if !n.is_finite() {
            return Err(LayersError::NonFinite("power iteration vector".into()));
        }
        if n <= dtype_epsilon(dtype).powi(2) {
            return Ok(None);
        }
        Ok(Some(x.scale_real(1.0 / n)?.detach()))
    };
    let zero = || Ok(Tensor::zeros((), dtype, device)?);
    let start = match warm.as_deref() {
        Some(Some(u)) => u.clone(),
        _ => ComplexTensor::randn(dim, 1.0, seed, dtype, device)?,
    };
    let Some(mut u) = normalise(&start)? else {
        return zero();
    };
    for _ in 0..iterations {
        let w = apply_adjoint(&apply(&u.detach())?.detach())?;
        match normalise(&w)? {
            Some(next) => u = next,
            None => return zero(),
        }
    }
    let norm = apply(&u)?.norm()?;
    if let Some(w) = warm {
        *w = Some(u);
    }
    Ok(norm)
}

/// `sum_j ||e^{L_j}||_2` (power-iteration estimates).
pub fn norm_regulariser(
    model: &DeepKoopmanLayered,
    generators: &[ToeplitzGenerator],
    iterations: usize,
    seed: u64,
) -> Result<Tensor> {
    norm_regulariser_from(model, generators, iterations, seed, None)
}

/// [`norm_regulariser`], warm-started from `warm` when given.
fn norm_regulariser_from(
    model: &DeepKoopmanLayered,
    generators: &[ToeplitzGenerator],
    iterations: usize,
    seed: u64,
    mut warm: Option<&mut Vec<Option<ComplexTensor>>>,
) -> Result<Tensor> {
    let n = model.index_set().len();
    let mut total = Tensor::zeros((), model.dtype(), model.device())?;
    for (j, g) in generators.iter().enumerate() {
        let term = power_norm(
            n,
            iterations,
            seed.wrapping_add(j as u64),
            model.dtype(),
            model.device(),
            &|x| model.apply_exp(g, x),
            &|x| model.apply_exp_adjoint(g, x),
            slot(&mut warm, j),
        )?;
        total = (total + term)?;
    }
    Ok(total)
}

/// `sum_{j >= 2} ||e^{L_j} - e^{L_{j-1}}||_2` (power-iteration estimates).
pub fn continuity_regulariser(
    model: &DeepKoopmanLayered,
    generators: &[ToeplitzGenerator],
    iterations: usize,
    seed: u64,
) -> Result<Tensor> {
    continuity_regulariser_from(model, generators, iterations, seed, None)
}

/// [`continuity_regulariser`], warm-started from `warm` when given.
fn continuity_regulariser_from(
    model: &DeepKoopmanLayered,
    generators: &[ToeplitzGenerator],
    iterations: usize,
    seed: u64,
    mut warm: Option<&mut Vec<Option<ComplexTensor>>>,
) -> Result<Tensor> {
    let n = model.index_set().len();
    let mut total = Tensor::zeros((), model.dtype(), model.device())?;
    for (j, pair) in generators.windows(2).enumerate() {
        let (a, b) = (&pair[1], &pair[0]);
        let term = power_norm(
            n,
            iterations,
            seed.wrapping_add(1000 + j as u64),
            model.dtype(),
            model.device(),
            &|x| Ok(model.apply_exp(a, x)?.sub(&model.apply_exp(b, x)?)?),
            &|x| {
                Ok(model
                    .apply_exp_adjoint(a, x)?
                    .sub(&model.apply_exp_adjoint(b, x)?)?)
            },
            slot(&mut warm, j),
        )?;
        total = (total + term)?;
    }
    Ok(total)
}

/// The full training objective (data loss plus weighted regularisers).
pub fn objective(
    model: &DeepKoopmanLayered,
    data: &SnapshotData,
    config: &TrainConfig,
    seed: u64,
) -> Result<Tensor> {
    let generators = model.generators()?;
    let prepared = prepare(model, data)?;
    objective_from(model, &generators, &prepared, config, seed, None)
}

pub(super) fn objective_from(
    model: &DeepKoopmanLayered,
    generators: &[ToeplitzGenerator],
    prepared: &Prepared,
    config: &TrainConfig,
    seed: u64,
    warm: Option<&mut PowerIterates>,
) -> Result<Tensor> {
    let mut total = loss_from(model, generators, prepared, config.loss)?;
    let (norm_warm, continuity_warm) = match warm {
        Some(w) => (Some(&mut w.norm), Some(&mut w.continuity)),
        None => (None, None),
    };
    if config.norm_weight > 0.0 {
        let r = norm_regulariser_from(model, generators, config.power_iterations, seed, norm_warm)?;
        total = (total + (r * config.norm_weight)?)?;
    }
    if config.continuity_weight > 0.0 && generators.len() > 1 {
        let r = continuity_regulariser_from(
            model,
            generators,
            config.power_iterations,
            seed,
            continuity_warm,
        )?;
        total = (total + (r * config.continuity_weight)?)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DeepKoopmanLayeredBuilder;
    use crate::train::Trainer;
    use koopman_core::linalg::{cmat_from_complex_tensor, thin_svd};
    use koopman_core::{expm, IndexSet, LinearOperator};
    use std::sync::Arc;

    /// With one power iteration per step, the warm-started iterate converges to the top right
    /// singular vector over the steps; a cold start stays one iteration away from random.
    #[test]
    fn warm_started_power_iteration_tracks_the_two_norm() -> Result<()> {
        let n = Arc::new(IndexSet::cube(3, 2)?.without_origin()?);
        let m =
            Arc::new(IndexSet::product_of_ranges(&[(-1, 1), (-1, 1), (-1, 1)])?.without_origin()?);
        let builder = DeepKoopmanLayeredBuilder::new(2, n, vec![m]).layers(2);
        let config = TrainConfig {
            steps: 40,
            // Tiny weight and step: the operators barely move, the iterate must converge
            lr: 1e-9,
            norm_weight: 1e-9,
            power_iterations: 1,
            init_std: 0.3,
            progress: false,
            ..Default::default()
        };
        let data = SnapshotData::new(
            vec![vec![0.1, -0.2, 0.3, 0.0], vec![0.2, -0.1, 0.2, 0.1]],
            2,
        )?;
        let mut trainer = Trainer::new(builder, &config)?;
        trainer.train(&data, &config)?;
        let generators = trainer.model.generators()?;
        let exact: f64 = generators
            .iter()
            .map(|g| -> Result<f64> {
                let e = expm(&g.to_dense()?.detach())?;
                Ok(thin_svd(cmat_from_complex_tensor(&e)?.as_ref())?.s[0])
            })
            .sum::<Result<f64>>()?;
        let mut iterates = trainer.iterates.norm.clone();
        assert_eq!(iterates.len(), 2);
        let scalar = |t: Tensor| -> Result<f64> { Ok(t.to_scalar::<f64>()?) };
        let warm = scalar(norm_regulariser_from(
            &trainer.model,
            &generators,
            0,
            0,
            Some(&mut iterates),
        )?)?;
        let cold = scalar(norm_regulariser(&trainer.model, &generators, 1, 0)?)?;
        let (warm_err, cold_err) = ((exact - warm) / exact, (exact - cold) / exact);
        // Power-iteration estimates are lower bounds of the 2-norm.
        assert!(
            warm_err > -1e-12 && cold_err > -1e-12,
            "{warm_err} {cold_err}"
        );
        assert!(warm_err < 1e-3, "warm estimate {warm} vs {exact}");
        assert!(
            warm_err < 0.1 * cold_err,
            "warm {warm_err:e} vs cold {cold_err:e}"
        );
        Ok(())
    }
}
