//! Koopman stepping of an epoch-structured classifier (paper 000, MNIST; SPEC 4.1).
//!
//! An MLP (the paper: 784:20:20:20:10 ReLU) is trained with mini-batch Adadelta (lr 1.0, batch
//! 64, the learning rate multiplied by `gamma` after every epoch as PyTorch's `StepLR`). The
//! weights are recorded from the start of epoch `t1_epoch + 1` to the end of epoch `t2_epoch`,
//! the optimizer keeps training for `after_epochs` more epochs (validation loss after each,
//! epoch times), and [`evaluate_classifier`] fits the operators (quasi-node `q = 157` for layer
//! 1, node operators elsewhere), evolves them `T` = `horizon_epochs` epochs of steps and measures
//! the paper's fractional `T_eq` (supplement S10) on the validation loss, the straight-line
//! baseline and the speedups.
//!
//! ```no_run
//! use candle_core::Device;
//! use koopman_bench::experiments::p000_stepping::trials::classifier::{evaluate_classifier, train_classifier_trial, ClassifierData, ClassifierTrialConfig};
//! use koopman_train::stepping::FitConfig;
//!
//! # fn main() -> koopman_train::Result<()> {
//! let dev = Device::Cpu;
//! let dir = koopman_core::data::mnist::mnist_dir_default()?; // $KOOPMAN_DATA_DIR/mnist or the bundled subset
//! let mnist = koopman_core::data::mnist::load_mnist(dir, &dev)?;
//! let data = ClassifierData::new(mnist.train_images, mnist.train_labels, mnist.test_images, mnist.test_labels)?;
//! let cfg = ClassifierTrialConfig::default();
//! let run = train_classifier_trial(&data, &cfg, 0, &dev, None)?;
//! let out = evaluate_classifier(&run, &data, &FitConfig::default(), &dev)?;
//! println!("T_eq/T = {}", out.t_eq.value / cfg.horizon_epochs as f64);
//! # Ok(()) }
//! ```

use super::{path_steps, Operators, WeightPaths};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use indicatif::ProgressBar;
use koopman_core::nn::{init_seeded, Activation, Mlp};
use koopman_train::stepping::fit::{fit, straight_line, to_host, Evolution, FitConfig};
use koopman_train::stepping::metrics::{equivalent_time, t_eq, timed_runs, TEq, TIMING_RUNS};
use koopman_train::stepping::optim::OptimizerKind;
use koopman_train::stepping::partition::{Partition, PartitionPlan, PartitionSpec};
use koopman_train::stepping::recorder::Recorder;
use koopman_train::{Result, TrainError};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::time::Instant;

/// Training and validation tensors: images `(n, features)` float, labels `(n,)` u32.
#[derive(Clone, Debug)]
pub struct ClassifierData {
    x_train: Tensor,
    y_train: Tensor,
    x_val: Tensor,
    y_val: Tensor,
}

impl ClassifierData {
    /// Checks shapes and dtypes.
    pub fn new(x_train: Tensor, y_train: Tensor, x_val: Tensor, y_val: Tensor) -> Result<Self> {
        for (x, y, what) in [
            (&x_train, &y_train, "training"),
            (&x_val, &y_val, "validation"),
        ] {
            let (n, _) = x.dims2().map_err(|_| {
                TrainError::ShapeMismatch(format!("{what} inputs must be 2-D, got {:?}", x.dims()))
            })?;
            if y.dims() != [n] || y.dtype() != DType::U32 || n == 0 {
                return Err(TrainError::ShapeMismatch(format!(
                    "{what} labels must be u32 of shape [{n}] (n > 0), got {:?} {:?}",
                    y.dtype(),
                    y.dims()
                )));
            }
        }
        Ok(Self {
            x_train,
            y_train,
            x_val,
            y_val,
        })
    }

    /// Number of training samples.
    pub fn train_len(&self) -> usize {
        self.y_train.dims()[0]
    }

    /// Mean cross-entropy of `model` on the training set.
    pub fn train_loss<M: Module>(&self, model: &M) -> Result<f64> {
        mean_loss(model, &self.x_train, &self.y_train, None)
    }

    /// Mean cross-entropy of `model` on the validation set.
    pub fn val_loss<M: Module>(&self, model: &M) -> Result<f64> {
        mean_loss(model, &self.x_val, &self.y_val, None)
    }

    /// [`val_loss`](Self::val_loss) of a model computing in `dtype` (the inputs are converted
    /// chunk by chunk).
    pub fn val_loss_in<M: Module>(&self, model: &M, dtype: DType) -> Result<f64> {
        mean_loss(model, &self.x_val, &self.y_val, Some(dtype))
    }
}

fn mean_loss<M: Module>(model: &M, x: &Tensor, y: &Tensor, dtype: Option<DType>) -> Result<f64> {
    let n = y.dims()[0];
    let mut sum = 0.0;
    let mut start = 0;
    while start < n {
        let len = 4096.min(n - start);
        let mut xs = x.narrow(0, start, len)?;
        if let Some(dt) = dtype {
            xs = xs.to_dtype(dt)?;
        }
        let logits = model.forward(&xs)?;
        let l = candle_nn::loss::cross_entropy(&logits, &y.narrow(0, start, len)?)?;
        sum += l.to_dtype(DType::F64)?.to_scalar::<f64>()? * len as f64;
        start += len;
    }
    let v = sum / n as f64;
    Ok(if v.is_finite() { v } else { f64::INFINITY })
}

/// Settings of a classifier trial (defaults: the paper's MNIST setting).
#[derive(Clone, Debug, PartialEq)]
pub struct ClassifierTrialConfig {
    /// Layer widths.
    pub sizes: Vec<usize>,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Initial learning rate.
    pub lr: f64,
    /// Learning-rate factor after every epoch (`StepLR`).
    pub gamma: f64,
    /// Optimizer.
    pub optimizer: OptimizerKind,
    /// Recording starts after this many epochs (2 = start of epoch 3).
    pub t1_epoch: usize,
    /// Recording ends after this many epochs (5 = end of epoch 5).
    pub t2_epoch: usize,
    /// Koopman horizon in epochs.
    pub horizon_epochs: usize,
    /// Optimizer epochs after `t2` (>= horizon).
    pub after_epochs: usize,
    /// Partition.
    pub partition: PartitionSpec,
    /// Also time the eigendecomposition jump in [`evaluate_classifier`].
    pub eigen_jump: bool,
    /// Float type of the model and its training (F32 by default; the inputs are converted per
    /// mini-batch). The recorder and the fit work in f64 whatever this is.
    pub dtype: DType,
    /// What evolves the weights past `t2` (the fitted operators unless a verdict test breaks it).
    pub operators: Operators,
}

impl Default for ClassifierTrialConfig {
    fn default() -> Self {
        Self {
            sizes: vec![784, 20, 20, 20, 10],
            batch_size: 64,
            lr: 1.0,
            gamma: 0.7,
            optimizer: OptimizerKind::Adadelta { rho: 0.9 },
            t1_epoch: 2,
            t2_epoch: 5,
            horizon_epochs: 2,
            after_epochs: 4,
            partition: PartitionSpec::PerLayer(vec![
                ("0".into(), Partition::QuasiNode(157)),
                ("2".into(), Partition::Node),
                ("4".into(), Partition::Node),
                ("6".into(), Partition::Node),
            ]),
            eigen_jump: true,
            dtype: DType::F32,
            operators: Operators::Fitted,
        }
    }
}

impl ClassifierTrialConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(TrainError::InvalidArgument("batch size must be > 0".into()));
        }
        koopman_core::validate::positive("learning rate", self.lr)?;
        koopman_core::validate::positive("gamma", self.gamma)?;
        if self.t1_epoch >= self.t2_epoch {
            return Err(TrainError::InvalidArgument(format!(
                "t1 (epoch {}) must be before t2 (epoch {})",
                self.t1_epoch, self.t2_epoch
            )));
        }
        if self.horizon_epochs == 0 || self.after_epochs < self.horizon_epochs {
            return Err(TrainError::InvalidArgument(format!(
                "need 1 <= horizon ({}) <= epochs after t2 ({})",
                self.horizon_epochs, self.after_epochs
            )));
        }
        if !self.dtype.is_float() {
            return Err(TrainError::InvalidArgument(format!(
                "the classifier needs a float dtype, got {:?}",
                self.dtype
            )));
        }
        Ok(())
    }
}

/// A trained classifier with its recorded weights and the optimizer's continuation.
pub struct ClassifierRun {
    /// The model (weights at the end of training).
    pub mlp: Mlp,
    /// Its variables.
    pub varmap: VarMap,
    /// Snapshots `t1 ..= t2` (steps).
    pub recorder: Recorder,
    /// The settings.
    pub config: ClassifierTrialConfig,
    /// Optimizer steps per epoch.
    pub steps_per_epoch: usize,
    /// Validation loss at `t2` and after each epoch past it.
    pub val_losses: Vec<f64>,
    /// Training seconds of each epoch past `t2`.
    pub epoch_seconds: Vec<f64>,
    /// Weights at `t2 + T` from the optimizer.
    pub truth: Vec<f64>,
    /// The optimizer's weights at the [`path_steps`] of `T` past `t2` (Figure 3b).
    pub path: Vec<Vec<f64>>,
}

/// Trains one seed; see the [module docs](self).
pub fn train_classifier_trial(
    data: &ClassifierData,
    config: &ClassifierTrialConfig,
    seed: u64,
    device: &Device,
    progress: Option<&ProgressBar>,
) -> Result<ClassifierRun> {
    config.validate()?;
    let varmap = VarMap::new();
    let mlp = Mlp::new(
        &config.sizes,
        Activation::Relu,
        VarBuilder::from_varmap(&varmap, config.dtype, device),
    )?;
    init_seeded(&varmap, seed)?;
    let mut recorder = Recorder::from_varmap(&varmap)?;
    let n = data.train_len();
    let steps_per_epoch = n.div_ceil(config.batch_size);
    let (t1, t2) = (
        config.t1_epoch * steps_per_epoch,
        config.t2_epoch * steps_per_epoch,
    );
    recorder.reserve(t2 - t1 + 1);
    let mut opt = config.optimizer.build(varmap.all_vars(), config.lr)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut val_losses = Vec::new();
    let mut epoch_seconds = Vec::new();
    let mut truth = Vec::new();
    let path_at = path_steps(config.horizon_epochs * steps_per_epoch);
    let mut path = Vec::with_capacity(path_at.len());
    let mut step = 0;
    let epochs = config.t2_epoch + config.after_epochs;
    for epoch in 0..epochs {
        if epoch >= config.t2_epoch {
            val_losses.push(data.val_loss_in(&mlp, config.dtype)?);
        }
        if epoch == config.t2_epoch + config.horizon_epochs {
            truth = recorder.current()?;
        }
        opt.set_learning_rate(config.lr * config.gamma.powi(epoch as i32));
        order.shuffle(&mut rng);
        let start = Instant::now();
        let mut record_seconds = 0.0;
        for chunk in order.chunks(config.batch_size) {
            if (t1..=t2).contains(&step) {
                let r = Instant::now();
                recorder.record(step)?;
                record_seconds += r.elapsed().as_secs_f64();
            }
            if step >= t2 && path_at.get(path.len()) == Some(&(step - t2)) {
                let r = Instant::now();
                path.push(recorder.current()?);
                record_seconds += r.elapsed().as_secs_f64();
            }
            let idx = Tensor::from_slice(chunk, chunk.len(), device)?;
            let xb = data.x_train.index_select(&idx, 0)?.to_dtype(config.dtype)?;
            let logits = mlp.forward(&xb)?;
            let loss =
                candle_nn::loss::cross_entropy(&logits, &data.y_train.index_select(&idx, 0)?)?;
            opt.backward_step(&loss)?;
            step += 1;
        }
        if epoch >= config.t2_epoch {
            epoch_seconds.push(start.elapsed().as_secs_f64() - record_seconds);
        }
        if let Some(p) = progress {
            p.inc(1);
        }
    }
    val_losses.push(data.val_loss_in(&mlp, config.dtype)?);
    if truth.is_empty() {
        truth = recorder.current()?;
    }
    if path_at.get(path.len()) == Some(&(step - t2)) {
        path.push(recorder.current()?);
    }
    if val_losses.iter().any(|l| !l.is_finite()) {
        return Err(TrainError::NonFinite(
            "validation loss during training".into(),
        ));
    }
    Ok(ClassifierRun {
        mlp,
        varmap,
        recorder,
        config: config.clone(),
        steps_per_epoch,
        val_losses,
        epoch_seconds,
        truth,
        path,
    })
}

/// The weights of Figure 3b for `run`, fitted as `fit_config` says ([`WeightPaths`]).
pub fn classifier_paths(
    run: &ClassifierRun,
    fit_config: &FitConfig,
    device: &Device,
) -> Result<WeightPaths> {
    let c = &run.config;
    let spe = run.steps_per_epoch;
    WeightPaths::fit(
        &run.recorder,
        &PartitionPlan::build(run.recorder.params(), &c.partition)?,
        (c.t1_epoch * spe, c.t2_epoch * spe),
        path_steps(c.horizon_epochs * spe),
        run.path.clone(),
        fit_config,
        c.operators,
        device,
    )
}

/// What Koopman stepping achieved on one classifier run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClassifierOutcome {
    /// Validation loss at `t2`, of the optimizer at `t2 + T`, of the Koopman and straight-line
    /// weights at `t2 + T`.
    pub losses: [f64; 4],
    /// `T_eq` in epochs (fractional).
    pub t_eq: TEq,
    /// `T_eq` of the straight line, in epochs.
    pub t_eq_baseline: TEq,
    /// `||w_KO - w_true|| / ||w_true(t2+T) - w_true(t2)||` and the same for the straight line.
    pub norm_errors: [f64; 2],
    /// Fit seconds (median of [`TIMING_RUNS`] runs, as every Koopman time here).
    pub fit_seconds: f64,
    /// Seconds of the first of those fits (cold).
    pub fit_first_seconds: f64,
    /// Step-wise evolution seconds.
    pub loop_seconds: f64,
    /// Eigendecomposition seconds (NaN unless `eigen_jump`).
    pub diagonalize_seconds: f64,
    /// Eigen-jump seconds (NaN unless `eigen_jump`).
    pub eigen_seconds: f64,
    /// Optimizer seconds equivalent to `T_eq` (S10, Eq. 13).
    pub optimizer_seconds: f64,
    /// Recorder memory (bytes).
    pub recorder_bytes: usize,
    /// `(size, count)` of the operators.
    pub operator_sizes: Vec<(usize, usize)>,
}

/// Fits and evolves on `run` and measures against the optimizer; the model's weights are
/// restored afterwards.
pub fn evaluate_classifier(
    run: &ClassifierRun,
    data: &ClassifierData,
    fit_config: &FitConfig,
    device: &Device,
) -> Result<ClassifierOutcome> {
    let c = &run.config;
    let rec = &run.recorder;
    let saved = rec.current()?;
    let (t1, t2) = (
        c.t1_epoch * run.steps_per_epoch,
        c.t2_epoch * run.steps_per_epoch,
    );
    let horizon = (c.horizon_epochs * run.steps_per_epoch) as u64;
    let plan = PartitionPlan::build(rec.params(), &c.partition)?;
    let w2 = rec.snapshot(t2)?.to_vec();
    let (mut stepper, fit_timing) =
        timed_runs(TIMING_RUNS, || fit(rec, &plan, t1, t2, fit_config, device))?;
    let start_tensor = Tensor::new(w2.as_slice(), device)?;
    let (stepped, loop_timing) = timed_runs(TIMING_RUNS, || {
        to_host(&stepper.evolve(&start_tensor, horizon, Evolution::Step)?)
    })?;
    let stepped = c.operators.apply(stepped, &w2);
    let (mut diagonalize_seconds, mut eigen_seconds) = (f64::NAN, f64::NAN);
    if c.eigen_jump {
        diagonalize_seconds = timed_runs(TIMING_RUNS, || stepper.diagonalize())?.1.median;
        eigen_seconds = timed_runs(TIMING_RUNS, || {
            stepper.evolve_host(&w2, horizon, Evolution::Eigen)
        })?
        .1
        .median;
    }
    let baseline = straight_line(&w2, rec.snapshot(t2 - 1)?, horizon as f64)?;
    let loss_at = |w: &[f64]| -> Result<f64> {
        if w.iter().any(|v| !v.is_finite()) {
            return Ok(f64::INFINITY);
        }
        rec.write_back(w)?;
        data.val_loss_in(&run.mlp, c.dtype)
    };
    let l_ko = loss_at(&stepped)?;
    let l_line = loss_at(&baseline)?;
    rec.write_back(&saved)?;
    let te = t_eq(&run.val_losses, l_ko)?;
    let norm_err = |w: &[f64]| {
        let e: f64 = w.iter().zip(&run.truth).map(|(a, b)| (a - b).powi(2)).sum();
        let d: f64 = run
            .truth
            .iter()
            .zip(&w2)
            .map(|(a, b)| (a - b).powi(2))
            .sum();
        (e / d).sqrt()
    };
    Ok(ClassifierOutcome {
        losses: [
            run.val_losses[0],
            run.val_losses[c.horizon_epochs],
            l_ko,
            l_line,
        ],
        t_eq: te,
        t_eq_baseline: t_eq(&run.val_losses, l_line)?,
        norm_errors: [norm_err(&stepped), norm_err(&baseline)],
        fit_seconds: fit_timing.median,
        fit_first_seconds: fit_timing.first,
        loop_seconds: loop_timing.median,
        diagonalize_seconds,
        eigen_seconds,
        optimizer_seconds: equivalent_time(&run.epoch_seconds, te.value)?,
        recorder_bytes: rec.memory_bytes(),
        operator_sizes: plan.size_counts(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small synthetic classification problem through the whole trial (MNIST is exercised by
    /// the `stepping_mnist` experiment and the MNIST integration test).
    #[test]
    fn synthetic_trial_and_bad_input() -> Result<()> {
        let dev = Device::Cpu;
        let n = 256;
        let xs: Vec<f32> = (0..n * 8)
            .map(|i| {
                (((i * 7919) % 97) as f32 / 97.0) - 0.5 + if (i / 8) % 2 == 0 { 0.3 } else { -0.3 }
            })
            .collect();
        let ys: Vec<u32> = (0..n as u32).map(|i| i % 2).collect();
        let x = Tensor::from_vec(xs, (n, 8), &dev)?;
        let y = Tensor::from_vec(ys, n, &dev)?;
        let data = ClassifierData::new(x.clone(), y.clone(), x, y)?;
        let cfg = ClassifierTrialConfig {
            sizes: vec![8, 6, 2],
            batch_size: 16,
            partition: PartitionSpec::uniform(Partition::Node),
            eigen_jump: false,
            ..Default::default()
        };
        let run = train_classifier_trial(&data, &cfg, 0, &dev, None)?;
        assert_eq!(run.val_losses.len(), 5);
        assert_eq!(run.recorder.len(), 3 * 16 + 1);
        let out = evaluate_classifier(&run, &data, &FitConfig::default(), &dev)?;
        assert!(out.losses.iter().take(2).all(|l| l.is_finite()));
        assert!(out.recorder_bytes == run.recorder.len() * run.recorder.num_params() * 8);
        let bad = ClassifierTrialConfig {
            t1_epoch: 5,
            ..cfg.clone()
        };
        assert!(train_classifier_trial(&data, &bad, 0, &dev, None).is_err());
        // The model in f64 (inputs converted per batch) trains from the same initial weights.
        let f64_cfg = ClassifierTrialConfig {
            dtype: DType::F64,
            ..cfg.clone()
        };
        let run64 = train_classifier_trial(&data, &f64_cfg, 0, &dev, None)?;
        assert_eq!(run64.varmap.all_vars()[0].dtype(), DType::F64);
        let (l32, l64) = (run.val_losses[0], run64.val_losses[0]);
        assert!((l32 - l64).abs() < 1e-3 * l64, "{l32} vs {l64}");
        let bad_dtype = ClassifierTrialConfig {
            dtype: DType::U32,
            ..cfg.clone()
        };
        assert!(train_classifier_trial(&data, &bad_dtype, 0, &dev, None).is_err());
        Ok(())
    }
}
