//! Mini-batch training of candle models: seeded shuffled batches, AdamW (candle-nn), and the
//! classifier loop and metrics.

use crate::error::{CoreError, Result};
use candle_core::{DType, Device, Module, Tensor, Var, D};
use candle_nn::Optimizer;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Settings of the mini-batch training loops.
#[derive(Clone, Debug, PartialEq)]
pub struct MinibatchConfig {
    /// Passes over the data.
    pub epochs: usize,
    /// Samples per mini-batch (the last batch of an epoch may be smaller).
    pub batch_size: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Learning rate at the end as a fraction of `lr` (cosine decay; 1 keeps it constant).
    pub final_lr_fraction: f64,
    /// Seed of the shuffling.
    pub seed: u64,
}

impl Default for MinibatchConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 32,
            lr: 1e-3,
            weight_decay: 0.0,
            final_lr_fraction: 1.0,
            seed: 0,
        }
    }
}

impl MinibatchConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 || self.batch_size == 0 {
            return Err(CoreError::InvalidArgument(format!(
                "epochs and batch size must be >= 1, got {} and {}",
                self.epochs, self.batch_size
            )));
        }
        crate::validate::positive("learning rate", self.lr)?;
        crate::validate::non_negative("weight decay", self.weight_decay)?;
        crate::validate::positive("final learning-rate fraction", self.final_lr_fraction)?;
        Ok(())
    }
}

/// What a training loop did.
#[derive(Clone, Debug, PartialEq)]
pub struct MinibatchReport {
    /// Mean mini-batch loss of each epoch.
    pub epoch_losses: Vec<f64>,
    /// Optimizer steps taken.
    pub steps: usize,
}

/// The general loop: `epochs` passes of seeded shuffled mini-batches over `n` samples; for each
/// batch, `loss(indices)` (a `u32` index tensor on `device`) returns a scalar loss whose
/// gradient AdamW applies to `vars`.
pub fn train_minibatch<F>(
    vars: Vec<Var>,
    n: usize,
    device: &Device,
    config: &MinibatchConfig,
    mut loss: F,
) -> Result<MinibatchReport>
where
    F: FnMut(&Tensor) -> Result<Tensor>,
{
    config.validate()?;
    if n == 0 {
        return Err(CoreError::Empty("no training samples".into()));
    }
    if vars.is_empty() {
        return Err(CoreError::Empty("no trainable variables".into()));
    }
    let mut opt = candle_nn::AdamW::new(
        vars,
        candle_nn::ParamsAdamW {
            lr: config.lr,
            weight_decay: config.weight_decay,
            ..Default::default()
        },
    )?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let mut order: Vec<u32> = (0..n as u32).collect();
    let batches_per_epoch = n.div_ceil(config.batch_size);
    let total = (config.epochs * batches_per_epoch) as f64;
    let mut steps = 0usize;
    let mut epoch_losses = Vec::with_capacity(config.epochs);
    for _ in 0..config.epochs {
        let mut sum = 0.0;
        for idx in shuffled_batches(&mut order, config.batch_size, &mut rng, device)? {
            if config.final_lr_fraction != 1.0 {
                let progress = steps as f64 / total;
                let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                let f = config.final_lr_fraction + (1.0 - config.final_lr_fraction) * cos;
                opt.set_learning_rate(config.lr * f);
            }
            sum += optimizer_step(&mut opt, &loss(&idx)?, steps)?;
            steps += 1;
        }
        epoch_losses.push(sum / batches_per_epoch as f64);
    }
    Ok(MinibatchReport {
        epoch_losses,
        steps,
    })
}

/// Shuffles `order` in place and cuts it into mini-batches of at most `batch_size` sample
/// indices, as `u32` tensors on `device` (the last batch may be smaller).
pub fn shuffled_batches(
    order: &mut [u32],
    batch_size: usize,
    rng: &mut rand::rngs::StdRng,
    device: &Device,
) -> Result<Vec<Tensor>> {
    if batch_size == 0 {
        return Err(CoreError::InvalidArgument("batch size must be >= 1".into()));
    }
    order.shuffle(rng);
    order
        .chunks(batch_size)
        .map(|chunk| Ok(Tensor::from_slice(chunk, chunk.len(), device)?))
        .collect()
}

/// One optimizer step on a scalar loss; returns the loss value, or an error naming `step` when
/// it is NaN or infinite (no step is taken then).
pub fn optimizer_step<O: Optimizer>(optimizer: &mut O, loss: &Tensor, step: usize) -> Result<f64> {
    let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    if !value.is_finite() {
        return Err(CoreError::NonFinite(format!(
            "training loss at step {step}"
        )));
    }
    optimizer.backward_step(loss)?;
    Ok(value)
}

fn check_classification(x: &Tensor, y: &Tensor) -> Result<usize> {
    let (n, _) = x.dims2().map_err(|_| {
        CoreError::ShapeMismatch(format!(
            "inputs must be (samples, features), got {:?}",
            x.dims()
        ))
    })?;
    if y.dims() != [n] {
        return Err(CoreError::ShapeMismatch(format!(
            "labels have shape {:?}, expected [{n}]",
            y.dims()
        )));
    }
    if y.dtype() != DType::U32 {
        return Err(CoreError::InvalidArgument(format!(
            "labels must be u32, got {:?}",
            y.dtype()
        )));
    }
    Ok(n)
}

/// Trains a classifier with cross-entropy on logits `model(x)` against `u32` labels `y`.
pub fn train_classifier<M: Module + ?Sized>(
    model: &M,
    vars: Vec<Var>,
    x: &Tensor,
    y: &Tensor,
    config: &MinibatchConfig,
) -> Result<MinibatchReport> {
    let n = check_classification(x, y)?;
    train_minibatch(vars, n, x.device(), config, |idx| {
        let xb = x.index_select(idx, 0)?;
        let yb = y.index_select(idx, 0)?;
        Ok(candle_nn::loss::cross_entropy(&model.forward(&xb)?, &yb)?)
    })
}

/// Predicted classes (arg-max of the logits), evaluated in batches of 4096.
pub fn predict_classes<M: Module + ?Sized>(model: &M, x: &Tensor) -> Result<Vec<u32>> {
    let (n, _) = x.dims2().map_err(|_| {
        CoreError::ShapeMismatch(format!(
            "inputs must be (samples, features), got {:?}",
            x.dims()
        ))
    })?;
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    while start < n {
        let len = 4096.min(n - start);
        let logits = model.forward(&x.narrow(0, start, len)?)?;
        out.extend(logits.argmax(D::Minus1)?.to_vec1::<u32>()?);
        start += len;
    }
    Ok(out)
}

/// Fraction of samples whose predicted class equals the label.
pub fn accuracy<M: Module + ?Sized>(model: &M, x: &Tensor, y: &Tensor) -> Result<f64> {
    let n = check_classification(x, y)?;
    if n == 0 {
        return Err(CoreError::Empty("no samples to evaluate".into()));
    }
    let pred = predict_classes(model, x)?;
    let labels = y.to_vec1::<u32>()?;
    Ok(pred.iter().zip(&labels).filter(|(p, l)| p == l).count() as f64 / n as f64)
}
