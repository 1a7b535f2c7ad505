//! The layer-scaling block: `S` trained layers in front of layer `k` of an MLP, and the
//! trajectories of the layer's inputs through it (the data the linear operator is fitted on).

use crate::error::{LayersError, Result};
use candle_core::{DType, Module, Tensor};
use candle_nn::{Init, Linear, VarBuilder, VarMap};
use koopman_core::faer::Mat;
use koopman_core::nn::{train_minibatch, MinibatchConfig, MinibatchReport, Mlp};
use serde::{Deserialize, Serialize};

/// Initialisation of the scaled layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScalingInit {
    /// Kaiming normal weights (fan-in, ReLU gain), bias 0.01 (the paper's choice).
    Kaiming,
    /// Identity weights plus Kaiming noise scaled by 0.1, bias 0.01 (starts at the original path).
    NearIdentity,
}

/// Settings of the layer-scaling block and its training.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingConfig {
    /// Number `S` of scaled layers (trajectories have `S + 2` states).
    pub layers: usize,
    /// Training epochs over the inputs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// AdamW learning rate (paper 1e-3).
    pub lr: f64,
    /// AdamW weight decay (paper 1e-3).
    pub weight_decay: f64,
    /// Huber loss threshold (paper 1).
    pub huber_delta: f64,
    /// Initialisation of the scaled layers.
    pub init: ScalingInit,
    /// Seed of the initialisation and the shuffling.
    pub seed: u64,
}

impl Default for ScalingConfig {
    fn default() -> Self {
        Self {
            layers: 8,
            epochs: 20,
            batch_size: 64,
            lr: 1e-3,
            weight_decay: 1e-3,
            huber_delta: 1.0,
            init: ScalingInit::Kaiming,
            seed: 0,
        }
    }
}

/// Most scaled layers a block may have. Its training graph grows with `S`, and candle walks a
/// graph recursively in its backward pass, so a block deep enough overflows the thread's stack
/// (`S` in the thousands did, within a second): refused before any work instead.
pub const MAX_SCALED_LAYERS: usize = 256;

/// A trained MLP with a trained layer-scaling block in front of layer `k`.
#[derive(Clone, Debug)]
pub struct ScaledLayer {
    pub(super) mlp: Mlp,
    pub(super) layer: usize,
    pub(super) scaled: Vec<Linear>,
    report: MinibatchReport,
}

fn check_layer(mlp: &Mlp, layer: usize) -> Result<()> {
    if layer >= mlp.num_layers() {
        return Err(LayersError::InvalidArgument(format!(
            "layer index {layer} out of range: the MLP {:?} has {} Linear layers (0..={})",
            mlp.sizes(),
            mlp.num_layers(),
            mlp.num_layers() - 1
        )));
    }
    Ok(())
}

pub(super) fn pad_to(t: &Tensor, width: usize, value: f64) -> candle_core::Result<Tensor> {
    let (n, c) = t.dims2()?;
    if c == width {
        return Ok(t.clone());
    }
    let pad = Tensor::full(value, (n, width - c), t.device())?.to_dtype(t.dtype())?;
    Tensor::cat(&[t, &pad], 1)
}

impl ScaledLayer {
    /// Trains a block of `config.layers` scaled layers in front of layer `layer` of `mlp` on the
    /// network inputs `x` (`samples x features`); the MLP stays frozen.
    pub fn train(mlp: &Mlp, layer: usize, x: &Tensor, config: &ScalingConfig) -> Result<Self> {
        check_layer(mlp, layer)?;
        if config.layers == 0 {
            return Err(LayersError::InvalidArgument(
                "the layer-scaling block needs at least one layer (S >= 1)".into(),
            ));
        }
        if config.layers > MAX_SCALED_LAYERS {
            return Err(LayersError::OutOfRange(format!(
                "the layer-scaling block has {} layers, at most {MAX_SCALED_LAYERS} are trained \
                 (its graph is differentiated recursively; deeper blocks overflow the stack): \
                 lower the number of scaled layers S (or the window h, which needs S >= h)",
                config.layers
            )));
        }
        koopman_core::validate::positive("Huber delta", config.huber_delta)?;
        let (n, features) = x.dims2().map_err(|_| {
            LayersError::InvalidArgument(format!(
                "inputs must be (samples, features), got {:?}",
                x.dims()
            ))
        })?;
        if features != mlp.sizes()[0] {
            return Err(LayersError::InvalidArgument(format!(
                "inputs have {features} features, the MLP expects {}",
                mlp.sizes()[0]
            )));
        }
        let device = x.device().clone();
        let dtype = mlp.layer(layer)?.weight().dtype();
        let x_in = mlp.forward_range(&x.to_dtype(dtype)?, 0..layer)?.detach();
        let target = mlp.forward_layer(layer, &x_in)?.detach();
        let width = mlp.sizes()[layer];
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, dtype, &device);
        let mut scaled = Vec::with_capacity(config.layers);
        // Seeded initialisation: candle's init uses the device RNG, so draw it here instead.
        let mut rng_seed = config
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(1);
        for j in 0..config.layers {
            let w = vb
                .pp(j)
                .get_with_hints((width, width), "weight", Init::Const(0.0))?;
            let b = vb.pp(j).get_with_hints(width, "bias", Init::Const(0.01))?;
            let std = (2.0 / width as f64).sqrt();
            let noise = seeded_normal(width * width, rng_seed);
            rng_seed = rng_seed.wrapping_add(0x632B_E59B_D9B4_E019);
            let init: Vec<f64> = (0..width * width)
                .map(|i| match config.init {
                    ScalingInit::Kaiming => std * noise[i],
                    ScalingInit::NearIdentity => {
                        let eye = if i / width == i % width { 1.0 } else { 0.0 };
                        eye + 0.1 * std * noise[i]
                    }
                })
                .collect();
            let init = Tensor::from_vec(init, (width, width), &device)?.to_dtype(dtype)?;
            varmap
                .data()
                .lock()
                .map_err(|_| LayersError::InvalidArgument("poisoned variable map".into()))?
                .get(&format!("{j}.weight"))
                .ok_or_else(|| LayersError::InvalidArgument("scaled weight not created".into()))?
                .set(&init)?;
            scaled.push(Linear::new(w, Some(b)));
        }
        let train_config = MinibatchConfig {
            epochs: config.epochs,
            batch_size: config.batch_size,
            lr: config.lr,
            weight_decay: config.weight_decay,
            final_lr_fraction: 1.0,
            seed: config.seed,
        };
        let delta = config.huber_delta;
        let report = train_minibatch(varmap.all_vars(), n, &device, &train_config, |idx| {
            let mut h = x_in.index_select(idx, 0)?;
            for l in &scaled {
                h = l.forward(&h)?.relu()?;
            }
            let out = mlp.forward_layer(layer, &h)?;
            let t = target.index_select(idx, 0)?;
            Ok(candle_nn::loss::huber(&out, &t, delta)?)
        })?;
        // Freeze: keep plain tensors, detached from the variables.
        let scaled = scaled
            .into_iter()
            .map(|l| {
                Ok(Linear::new(
                    l.weight().detach().copy()?,
                    l.bias().map(|b| b.detach().copy()).transpose()?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            mlp: mlp.clone(),
            layer,
            scaled,
            report,
        })
    }

    /// The original MLP.
    pub fn mlp(&self) -> &Mlp {
        &self.mlp
    }

    /// The index of the replaced Linear layer.
    pub fn layer(&self) -> usize {
        self.layer
    }

    /// Number `S` of scaled layers.
    pub fn num_scaled(&self) -> usize {
        self.scaled.len()
    }

    /// The scaled layers (each followed by ReLU).
    pub fn scaled_layers(&self) -> &[Linear] {
        &self.scaled
    }

    /// Input width of the replaced layer.
    pub fn in_dim(&self) -> usize {
        self.mlp.sizes()[self.layer]
    }

    /// Output width of the replaced layer.
    pub fn out_dim(&self) -> usize {
        self.mlp.sizes()[self.layer + 1]
    }

    /// Width of the trajectory states, `max(in, out)`.
    pub fn width(&self) -> usize {
        self.in_dim().max(self.out_dim())
    }

    /// The training report of the block (mean Huber loss per epoch).
    pub fn report(&self) -> &MinibatchReport {
        &self.report
    }

    fn inputs(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = self.mlp.layer(self.layer)?.weight().dtype();
        Ok(self.mlp.forward_range(&x.to_dtype(dtype)?, 0..self.layer)?)
    }

    /// Mean absolute difference between layer `k`'s output on the scaled path and on the
    /// original path, for network inputs `x`.
    pub fn matching_error(&self, x: &Tensor) -> Result<f64> {
        let x_in = self.inputs(x)?;
        let mut h = x_in.clone();
        for l in &self.scaled {
            h = l.forward(&h)?.relu()?;
        }
        let a = self.mlp.forward_layer(self.layer, &h)?;
        let b = self.mlp.forward_layer(self.layer, &x_in)?;
        Ok((a - b)?
            .abs()?
            .mean_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?)
    }

    /// The trajectories of the network inputs `x`: per sample `S + 2` states of width
    /// [`width`](Self::width), shorter states padded with `pad_value`.
    pub fn trajectories(&self, x: &Tensor, pad_value: f64) -> Result<Trajectories> {
        if !pad_value.is_finite() {
            return Err(LayersError::InvalidArgument(format!(
                "padding constant must be finite, got {pad_value}"
            )));
        }
        let width = self.width();
        let x_in = self.inputs(x)?;
        let n = x_in.dims()[0];
        if n == 0 {
            return Err(LayersError::InvalidArgument("no samples".into()));
        }
        let mut states = vec![pad_to(&x_in, width, pad_value)?];
        let mut h = x_in.clone();
        for l in &self.scaled {
            h = l.forward(&h)?.relu()?;
            states.push(pad_to(&h, width, pad_value)?);
        }
        let y = self.mlp.forward_layer(self.layer, &h)?;
        states.push(pad_to(&y, width, pad_value)?);
        let original = self.mlp.forward_layer(self.layer, &x_in)?;
        let host: Vec<Vec<Vec<f64>>> = states
            .iter()
            .map(|s| s.to_dtype(DType::F64)?.to_vec2::<f64>())
            .collect::<candle_core::Result<_>>()?;
        let m = states.len();
        let trajs = (0..n)
            .map(|i| Mat::from_fn(width, m, |r, t| host[t][i][r]))
            .collect();
        let orig = original.to_dtype(DType::F64)?.to_vec2::<f64>()?;
        let out = self.out_dim();
        Ok(Trajectories {
            states: trajs,
            original_output: Mat::from_fn(n, out, |i, j| orig[i][j]),
            pad_value,
        })
    }
}

fn seeded_normal(len: usize, seed: u64) -> Vec<f64> {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let normal = rand_distr::StandardNormal;
    (0..len).map(|_| normal.sample(&mut rng)).collect()
}

/// Trajectories through a scaled layer.
#[derive(Clone, Debug)]
pub struct Trajectories {
    /// One matrix per sample: states as columns (`width x (S + 2)`).
    pub states: Vec<Mat<f64>>,
    /// The replaced layer's output on the original path (`samples x out`).
    pub original_output: Mat<f64>,
    /// The padding constant.
    pub pad_value: f64,
}

impl Trajectories {
    /// Number of states per trajectory (`S + 2`).
    pub fn len_states(&self) -> usize {
        self.states.first().map_or(0, |m| m.ncols())
    }
}
