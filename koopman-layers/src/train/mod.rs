//! Training of [`DeepKoopmanLayered`]: losses, regularisers, Adam, checkpoints.
//!
//! Data are *snapshots* `S_0, ..., S_J` (torus coordinates, `B x d` each) where row `b` of `S_j`
//! is row `b` of `S_{j-1}` flowed over one window. With only `S_0` and `S_J` (pairs
//! `(x_0, x_T)`) only the end-to-end loss is available.
//!
//! - [`Loss::EndToEnd`]: `mean |G_{1..J}(S_0) - v(S_J)|^2` (paper 6.1);
//! - [`Loss::WindowWise`]: `sum_j mean |G_j(S_{j-1}) - v(S_j)|^2` (paper 6.2);
//! - [`Loss::Suffix`]: `sum_j mean |G_{j..J}(S_{j-1}) - v(S_J)|^2` (Corollary 6; one sweep).
//!
//! Regularisers: the norm regulariser `sum_j ||e^{L_j}||_2` (Remark 15) and the continuity
//! regulariser `sum_j ||e^{L_j} - e^{L_{j-1}}||_2`, each 2-norm *estimated by power iteration*
//! (a few detached iterations of `A^* A`, then the differentiable `||A u||` at the unit iterate
//! `u`; a lower bound of the 2-norm). A [`Trainer`] starts each step's iterations from the last
//! step's iterate ([`TrainConfig::warm_start_power`]), so the estimate follows the top singular
//! vector through training instead of restarting from a random vector. Every application is a
//! Krylov `expv` of `L_j` or `L_j^*`, so no `|N| x |N|` matrix is formed. Optimiser: candle-nn
//! AdamW, with weight decay [`TrainConfig::coefficient_decay`] on the generators' coefficients
//! only (0 by default; it pulls the directions of `L_j` the data leave free towards `L = 0`) and
//! none on the other variables.
//!
//! ```
//! use std::sync::Arc;
//! use koopman_core::IndexSet;
//! use koopman_layers::model::DeepKoopmanLayeredBuilder;
//! use koopman_layers::train::{Loss, SnapshotData, TrainConfig, Trainer};
//!
//! # fn main() -> koopman_layers::Result<()> {
//! let n = Arc::new(IndexSet::cube(2, 2)?.without_origin()?);
//! let m = Arc::new(IndexSet::product_of_ranges(&[(-1, 1), (0, 0)])?.without_origin()?);
//! let x0: Vec<f64> = (0..20).map(|i| -1.0 + 0.1 * i as f64).collect();
//! let x1: Vec<f64> = x0.iter().map(|x| 0.9 * x).collect();
//! let data = SnapshotData::new(vec![x0, x1], 1)?;
//! let builder = DeepKoopmanLayeredBuilder::new(1, n, vec![m]);
//! let config = TrainConfig { steps: 5, lr: 1e-2, progress: false, ..Default::default() };
//! let mut trainer = Trainer::new(builder, &config)?;
//! let report = trainer.train(&data, &config)?;
//! assert!(report.losses.last().unwrap() < &report.losses[0]);
//! # Ok(()) }
//! ```

mod data;
mod objective;

pub use data::SnapshotData;
pub use objective::{continuity_regulariser, data_loss, norm_regulariser, objective};
use objective::{objective_from, prepare, PowerIterates, Prepared};

use crate::model::{DeepKoopmanLayered, DeepKoopmanLayeredBuilder};
use crate::{LayersError, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The training loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum Loss {
    /// `x_0 -> x_T` through all layers.
    #[default]
    EndToEnd,
    /// Layer `j` maps window `j - 1` to window `j`.
    WindowWise,
    /// The suffix products `e^{L_j} ... e^{L_J}` map window `j - 1` to the last.
    Suffix,
}

/// Training settings.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// The data loss.
    pub loss: Loss,
    /// Optimisation steps.
    pub steps: usize,
    /// Adam learning rate (paper: `1e-3`).
    pub lr: f64,
    /// Weight of `sum_j ||e^{L_j}||_2`.
    pub norm_weight: f64,
    /// Weight of `sum_j ||e^{L_j} - e^{L_{j-1}}||_2`.
    pub continuity_weight: f64,
    /// Decoupled (AdamW) weight decay of the generators' coefficients only (R factors and times
    /// are not decayed): pulls the directions of a generator the data do not determine towards
    /// `L = 0`, i.e. `e^L` towards the identity.
    pub coefficient_decay: f64,
    /// Power iterations per 2-norm estimate.
    pub power_iterations: usize,
    /// In [`Trainer`], start each step's power iterations from the previous step's unit
    /// iterate (as PyTorch's `spectral_norm` does): the iterate then follows the top singular
    /// vector from step to step, so one iteration per step suffices once it has settled.
    /// `false`: a fresh seeded random start at every step.
    pub warm_start_power: bool,
    /// Rows per mini-batch (`None`: full batch).
    pub batch_size: Option<usize>,
    /// Seed of the mini-batches, power-iteration start vectors and initial coefficients.
    pub seed: u64,
    /// Standard deviation of the initial coefficients (per real part); 0 starts at `e^L = I`.
    pub init_std: f64,
    /// Show an indicatif progress bar.
    pub progress: bool,
    /// Write a checkpoint every so many steps (and at the end) to this file.
    pub checkpoint: Option<(PathBuf, usize)>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            loss: Loss::EndToEnd,
            steps: 1000,
            lr: 1e-3,
            norm_weight: 0.0,
            continuity_weight: 0.0,
            coefficient_decay: 0.0,
            power_iterations: 3,
            warm_start_power: true,
            batch_size: None,
            seed: 0,
            init_std: 1e-3,
            progress: true,
            checkpoint: None,
        }
    }
}

impl TrainConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        koopman_core::validate::positive("learning rate", self.lr)?;
        for (w, name) in [
            (self.norm_weight, "norm weight"),
            (self.continuity_weight, "continuity weight"),
            (self.coefficient_decay, "coefficient decay"),
            (self.init_std, "initial std"),
        ] {
            koopman_core::validate::non_negative(name, w)?;
        }
        if self.batch_size == Some(0) {
            return Err(LayersError::InvalidArgument("batch size 0".into()));
        }
        if let Some((_, 0)) = &self.checkpoint {
            return Err(LayersError::InvalidArgument("checkpoint interval 0".into()));
        }
        Ok(())
    }
}

/// Sets every coefficient variable (`….re`, `….im` under a `coef` path) of `varmap` to seeded
/// i.i.d. `N(0, std^2)` values (names sorted, so the draw is reproducible).
pub fn seed_coefficients(varmap: &VarMap, std: f64, seed: u64) -> Result<()> {
    use rand_distr::{Distribution, Normal};
    let data = varmap
        .data()
        .lock()
        .map_err(|_| LayersError::InvalidArgument("variable map lock poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().filter(|n| is_coefficient(n)).collect();
    names.sort();
    let normal = Normal::new(0.0, std)
        .map_err(|e| LayersError::InvalidArgument(format!("initial std: {e}")))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for name in names {
        let var = &data[name];
        let values: Vec<f64> = (0..var.elem_count())
            .map(|_| normal.sample(&mut rng))
            .collect();
        let t = Tensor::from_vec(values, var.shape(), var.device())?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(())
}

/// Whether the variable `name` holds generator coefficients (`….re` / `….im` under `coef`).
fn is_coefficient(name: &str) -> bool {
    name.contains("coef") && (name.ends_with(".re") || name.ends_with(".im"))
}

/// Saves all variables of `varmap` to a safetensors file, atomically (koopman-core's
/// [`save_tensors_atomic`](koopman_core::nn::save_tensors_atomic): temporary file, `fsync`,
/// rename).
pub fn save_checkpoint(varmap: &VarMap, path: &Path) -> Result<()> {
    let tensors: HashMap<String, Tensor> = {
        let data = varmap
            .data()
            .lock()
            .map_err(|_| LayersError::InvalidArgument("variable map lock poisoned".into()))?;
        data.iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect()
    };
    koopman_core::nn::save_tensors_atomic(&tensors, path)?;
    Ok(())
}

/// Loads a checkpoint written by [`save_checkpoint`] into the variables of `varmap` (which must
/// already exist: build the model first).
pub fn load_checkpoint(varmap: &mut VarMap, path: &Path) -> Result<()> {
    varmap.load(path)?;
    Ok(())
}

/// What a training run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TrainReport {
    /// Objective per step (before the update).
    pub losses: Vec<f64>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// A model, its variables and its optimiser.
pub struct Trainer {
    /// The model.
    pub model: DeepKoopmanLayered,
    /// Its variables.
    pub varmap: VarMap,
    /// AdamW for the coefficients (with `coefficient_decay`) and for the other variables.
    optimizers: [AdamW; 2],
    /// The regularisers' power iterates, carried between steps.
    iterates: PowerIterates,
    /// Features and targets of the last data set, on the device (keyed by its identity).
    prepared: Option<(u64, Prepared)>,
}

impl Trainer {
    /// Builds the model on CPU in f64 from `builder`, draws seeded initial coefficients
    /// (`config.init_std`, `config.seed`) and sets up AdamW (`config.lr`; weight decay
    /// `config.coefficient_decay` on the coefficients, 0 on the other variables).
    pub fn new(builder: DeepKoopmanLayeredBuilder, config: &TrainConfig) -> Result<Self> {
        Self::on(builder, config, DType::F64, &Device::Cpu)
    }

    /// As [`Trainer::new`] with a chosen dtype and device.
    pub fn on(
        builder: DeepKoopmanLayeredBuilder,
        config: &TrainConfig,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, dtype, device);
        let model = builder.build(vb)?;
        if config.init_std > 0.0 {
            seed_coefficients(&varmap, config.init_std, config.seed)?;
        }
        let (coefficients, others): (Vec<Var>, Vec<Var>) = {
            let data = varmap
                .data()
                .lock()
                .map_err(|_| LayersError::InvalidArgument("variable map lock poisoned".into()))?;
            let mut named: Vec<(&String, &Var)> = data.iter().collect();
            named.sort_by(|a, b| a.0.cmp(b.0));
            let (c, o): (Vec<_>, Vec<_>) = named.into_iter().partition(|(n, _)| is_coefficient(n));
            let vars = |v: Vec<(&String, &Var)>| v.into_iter().map(|(_, v)| v.clone()).collect();
            (vars(c), vars(o))
        };
        let adam = |vars: Vec<Var>, weight_decay: f64| {
            AdamW::new(
                vars,
                ParamsAdamW {
                    lr: config.lr,
                    weight_decay,
                    ..Default::default()
                },
            )
        };
        let optimizers = [
            adam(coefficients, config.coefficient_decay)?,
            adam(others, 0.0)?,
        ];
        Ok(Self {
            model,
            varmap,
            optimizers,
            iterates: PowerIterates::default(),
            prepared: None,
        })
    }

    /// The variables.
    pub fn vars(&self) -> Vec<Var> {
        // In name order, so that callers (tests, checkpoints, reports) see a stable order; the
        // VarMap itself is a hash map.
        let data = self.varmap.data().lock().map(|d| {
            let mut named: Vec<(String, Var)> =
                d.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            named.sort_by(|a, b| a.0.cmp(&b.0));
            named.into_iter().map(|(_, v)| v).collect::<Vec<_>>()
        });
        data.unwrap_or_else(|_| self.varmap.all_vars())
    }

    /// One step (forward, backward, Adam update) on `data`; returns the objective before it.
    /// The features of `data` are prepared on the device once and reused while the same data
    /// (or a clone of it) is passed again; the objective is read back once, after the backward
    /// pass is queued and before the update (a non-finite objective is an error, and the
    /// variables are left unchanged).
    pub fn step(&mut self, data: &SnapshotData, config: &TrainConfig, step: u64) -> Result<f64> {
        let generators = self.model.generators()?;
        let prepared = match self.prepared.take() {
            Some((id, p)) if id == data.id => p,
            _ => prepare(&self.model, data)?,
        };
        let warm = config.warm_start_power.then_some(&mut self.iterates);
        let objective = objective_from(
            &self.model,
            &generators,
            &prepared,
            config,
            config.seed,
            warm,
        );
        self.prepared = Some((data.id, prepared));
        let objective = objective?;
        let grads = objective.backward()?;
        let value = objective.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !value.is_finite() {
            return Err(LayersError::NonFinite(format!(
                "training objective at step {step}"
            )));
        }
        for optimizer in &mut self.optimizers {
            optimizer.step(&grads)?;
        }
        Ok(value)
    }

    /// Trains for `config.steps` steps (mini-batches drawn with `config.seed`), with an optional
    /// progress bar and checkpoints.
    pub fn train(&mut self, data: &SnapshotData, config: &TrainConfig) -> Result<TrainReport> {
        config.validate()?;
        let start = std::time::Instant::now();
        let bar = if config.progress {
            let bar = indicatif::ProgressBar::new(config.steps as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "train [{elapsed_precise}] {bar:30} {pos}/{len} (about {eta} left) {msg}",
            ) {
                bar.set_style(style);
            }
            Some(bar)
        } else {
            None
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed ^ 0x5eed);
        let full = match config.batch_size {
            Some(b) if b < data.rows() => None,
            _ => Some(data.clone()),
        };
        let mut order: Vec<usize> = (0..data.rows()).collect();
        let mut cursor = data.rows();
        let mut losses = Vec::with_capacity(config.steps);
        for step in 0..config.steps {
            let value = match &full {
                Some(d) => self.step(d, config, step as u64)?,
                None => {
                    let b = config.batch_size.unwrap_or(order.len()).min(order.len());
                    if cursor + b > order.len() {
                        order.shuffle(&mut rng);
                        cursor = 0;
                    }
                    let batch = data.select(&order[cursor..cursor + b])?;
                    cursor += b;
                    self.step(&batch, config, step as u64)?
                }
            };
            losses.push(value);
            if let Some(bar) = &bar {
                if step == 0 && config.steps > 1 {
                    // The time estimate, from the first step (it includes one-time preparation, so
                    // the estimate errs on the long side).
                    let first = start.elapsed().as_secs_f64();
                    bar.println(format!(
                        "first step {first:.2} s: about {:.0} s for all {} steps",
                        first * config.steps as f64,
                        config.steps
                    ));
                }
                bar.set_message(format!("loss {value:.3e}"));
                bar.inc(1);
            }
            if let Some((path, every)) = &config.checkpoint {
                if (step + 1) % every == 0 || step + 1 == config.steps {
                    save_checkpoint(&self.varmap, path)?;
                }
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        Ok(TrainReport {
            losses,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// Saves the variables (see [`save_checkpoint`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        save_checkpoint(&self.varmap, path)
    }

    /// Loads variables saved by [`Trainer::save`].
    pub fn load(&mut self, path: &Path) -> Result<()> {
        load_checkpoint(&mut self.varmap, path)
    }
}

/// Root-mean-square error of end-to-end predictions from `x0` against `target` (both torus
/// coordinates, row-major) in the output function's units.
pub fn rmse(model: &DeepKoopmanLayered, x0: &[f64], target: &[f64]) -> Result<f64> {
    let pred = model.predict(x0)?;
    let t = model.observable().targets(target);
    if pred.len() != t.len() {
        return Err(LayersError::ShapeMismatch(format!(
            "{} predictions for {} targets",
            pred.len(),
            t.len()
        )));
    }
    let s: f64 = pred.iter().zip(&t).map(|(a, b)| (a - b).powi(2)).sum();
    Ok((s / t.len() as f64).sqrt())
}
