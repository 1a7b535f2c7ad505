//! Koopman analysis of training (paper 001): the spectrum during MNIST training with the
//! convergence monitor (`train_spectrum`), a bad initialisation detected from the early spectrum
//! and the restart (`train_init`), Koopman-mode pruning at an early and a late epoch
//! (`train_pruning` on the MLP, `train_pruning_cnn` on the paper's CNN), the depth table of the supplementary material (`depth_table`) and noise
//! rejection with negative-Sobolev losses (`sobolev_noise`).
//!
//! The paper trains a small CNN on full MNIST for 1000 epochs; here (except `train_pruning_cnn`) an MLP (784-32-32-10, ReLU,
//! Adam lr 1e-3, batch 64) is trained on MNIST (`$KOOPMAN_DATA_DIR/mnist`, else the subset bundled with koopman-core), for a
//! few dozen epochs at quick sizes and with the paper's epoch counts at `--full`.

pub mod depth;
pub mod init;
pub mod pruning;
pub mod sobolev;
pub mod spectrum;

use crate::experiments::load_mnist;
use crate::report::RunContext;
use crate::Result;
use candle_core::{DType, Device, Module, Tensor};
use koopman_core::candle_nn::{self, Optimizer, VarBuilder, VarMap};
use koopman_core::data::mnist::Mnist;
use koopman_core::nn::{init_seeded, Activation, Mlp};
use koopman_train::analysis::observer::run_epoch;
use koopman_train::analysis::pruning::PruningMask;
use koopman_train::koopman_core::dmd::RrrConfig;

const WIDTHS: [usize; 4] = [784, 32, 32, 10];

/// Training, validation (the last digits of the training file) and test sets.
struct Data {
    x_tr: Tensor,
    y_tr: Tensor,
    x_val: Tensor,
    y_val: Tensor,
    x_te: Tensor,
    y_te: Tensor,
}

/// The MNIST digits an experiment trains on.
#[derive(Clone, Copy, Debug)]
pub struct DataSizes {
    /// The data files cut to their first (training, test) digits, or kept whole.
    pub files: Option<(usize, usize)>,
    /// At most this many training digits (after the validation digits are held out).
    pub n_train: usize,
}

/// The smoke size cuts the files to their first 1,500 training and 500 test digits (300 of
/// those training digits validate).
const SMOKE_DATA: DataSizes = DataSizes {
    files: Some((1500, 500)),
    n_train: 1200,
};

/// The training digits of `sizes`; the last digits of the training file (1,000, at most a fifth)
/// validate.
fn load(ctx: &RunContext, sizes: &DataSizes) -> Result<Data> {
    let data: Mnist = load_mnist(ctx, sizes.files)?;
    let n_train = sizes.n_train;
    let n_all = data.train_len();
    let n_val = 1000.min(n_all / 5);
    let n_tr = n_train.min(n_all - n_val);
    Ok(Data {
        x_tr: data.train_images.narrow(0, 0, n_tr)?,
        y_tr: data.train_labels.narrow(0, 0, n_tr)?,
        x_val: data.train_images.narrow(0, n_all - n_val, n_val)?,
        y_val: data.train_labels.narrow(0, n_all - n_val, n_val)?,
        x_te: data.test_images,
        y_te: data.test_labels,
    })
}

fn cross_entropy(model: &dyn Module, x: &Tensor, y: &Tensor) -> Result<f64> {
    Ok(candle_nn::loss::cross_entropy(&model.forward(x)?, y)?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?)
}

/// A fresh MLP with seeded weights.
fn new_mlp(seed: u64, device: &Device) -> Result<(VarMap, Mlp)> {
    let vm = VarMap::new();
    let mlp = Mlp::new(
        &WIDTHS,
        Activation::Relu,
        VarBuilder::from_varmap(&vm, DType::F32, device),
    )?;
    init_seeded(&vm, seed)?;
    Ok((vm, mlp))
}

/// The classifier an experiment trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    /// The MLP [`WIDTHS`], ReLU.
    Mlp,
    /// Paper 001's CNN ([`koopman_core::nn::CnnConfig::default`]).
    Cnn,
}

impl Network {
    /// A fresh network with seeded weights (He), in f32 on `device`.
    fn build(self, seed: u64, device: &Device) -> Result<(VarMap, Box<dyn Module>)> {
        match self {
            Network::Mlp => {
                let (vm, mlp) = new_mlp(seed, device)?;
                Ok((vm, Box::new(mlp)))
            }
            Network::Cnn => {
                let vm = VarMap::new();
                let cnn = koopman_core::nn::Cnn::new(
                    &koopman_core::nn::CnnConfig::default(),
                    VarBuilder::from_varmap(&vm, DType::F32, device),
                )?;
                init_seeded(&vm, seed)?;
                Ok((vm, Box::new(cnn)))
            }
        }
    }

    /// One line on the architecture.
    fn describe(self) -> String {
        match self {
            Network::Mlp => format!("MLP {WIDTHS:?} ReLU"),
            Network::Cnn => "CNN as paper 001 (Sec. 3): conv 16 x 5x5, 2x2 max-pool, conv 32 x 5x5, 2x2 max-pool, dense 100, dense 10; ReLU (the paper names no activation)".into(),
        }
    }
}

fn adam(vm: &VarMap) -> Result<candle_nn::AdamW> {
    Ok(candle_nn::AdamW::new(
        vm.all_vars(),
        candle_nn::ParamsAdamW {
            lr: 1e-3,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?)
}

/// One epoch of Adam mini-batches (batch 64); `mask` is re-applied after every step.
fn epoch(
    opt: &mut candle_nn::AdamW,
    mlp: &dyn Module,
    data: &Data,
    rng: &mut rand::rngs::StdRng,
    mask: Option<&PruningMask>,
) -> Result<f64> {
    let n = data.y_tr.dims()[0];
    Ok(run_epoch(
        opt,
        n,
        64,
        rng,
        data.x_tr.device(),
        |idx| {
            let xb = data.x_tr.index_select(idx, 0)?;
            let yb = data.y_tr.index_select(idx, 0)?;
            Ok(candle_nn::loss::cross_entropy(&mlp.forward(&xb)?, &yb)?)
        },
        || match mask {
            Some(m) => m.apply(),
            None => Ok(()),
        },
    )?)
}

fn rrr() -> RrrConfig {
    RrrConfig {
        tol: 1e-10,
        ..Default::default()
    }
}

/// DMD_RRR for the spectra of training: rank by `s_i / s_1 > 1e-2` of the column-scaled
/// snapshots (the directions below 1% of the leading one are fitted noise: with the full rank the
/// amplitudes of spurious high-residual pairs rival the physical ones).
fn spectrum_rrr() -> RrrConfig {
    RrrConfig {
        tol: 1e-2,
        ..Default::default()
    }
}

/// What the training observer watches: the trained network, or on a broken-input run
/// ([`RunContext::broken_input`]) a second network whose weights are re-drawn from its
/// initialiser every epoch (random weights in place of the trajectory).
struct Watched(Option<VarMap>);

impl Watched {
    fn for_run(ctx: &RunContext, seed: u64) -> Result<Self> {
        Ok(Self(if ctx.broken_input {
            Some(new_mlp(seed + 1, &ctx.device)?.0)
        } else {
            None
        }))
    }

    /// The variables to observe.
    fn varmap<'a>(&'a self, trained: &'a VarMap) -> &'a VarMap {
        self.0.as_ref().unwrap_or(trained)
    }

    /// Before the record of `epoch`: re-draws the random weights (nothing otherwise).
    fn before_record(&self, seed: u64, epoch: usize) -> Result<()> {
        if let Some(vm) = &self.0 {
            init_seeded(vm, seed + 1 + epoch as u64)?;
        }
        Ok(())
    }
}

/// Delay window for the loss observable with `m` snapshots: half the snapshots, at most 50.
fn loss_delays(m: usize) -> usize {
    (m / 2).clamp(1, 50)
}
