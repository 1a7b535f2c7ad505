//! `koopman replace`: one layer of a user's trained MLP replaced by a delay-embedded linear
//! operator (paper 002), with the accuracy table.
//!
//! The model is a safetensors file with PyTorch `nn.Sequential` names (`0.weight`, `0.bias`,
//! `2.weight`, ...; e.g. `safetensors.torch.save_file(model.state_dict(), path)`). The command
//! trains the layer-scaling block in front of layer `--layer` on the data set's training inputs,
//! fits the Hankel-DMD hybrid with both readouts (the iterated operator of rank `--r` on windows of
//! `--h` states, and the direct least-squares readout from the same window), and writes into
//! `--out`, published together: `hybrid.iterated.safetensors`, `hybrid.direct.safetensors`, then
//! `replace.json` (the settings and the test accuracies of the original and both hybrids).
//! `--write-demo-model FILE` trains a Yin-Yang MLP 4-8-6-4-3 to try it on.

use crate::report::write_json;
use crate::{BenchError, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use clap::ValueEnum;
use koopman_core::data::yinyang::{yinyang, YinYangConfig};
use koopman_core::io::Staging;
use koopman_core::nn::{accuracy, train_classifier, Activation, MinibatchConfig, Mlp};
use koopman_layers::replace::{fit_hybrid, HybridConfig, ReadoutKind, ScaledLayer, ScalingConfig};
use serde::Serialize;
use std::path::PathBuf;

/// The data set the model classifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dataset {
    /// Yin-Yang (generated, seeded: 5,000 training and 1,000 test samples, 4 inputs, 3 classes).
    Yinyang,
    /// MNIST (`--data-dir`, else `$KOOPMAN_DATA_DIR/mnist`, else the bundled subset).
    Mnist,
}

/// The arguments of `koopman replace`.
#[derive(Clone, Debug, clap::Args)]
pub struct ReplaceArgs {
    /// The trained MLP (safetensors, PyTorch nn.Sequential names).
    #[arg(long, required_unless_present = "write_demo_model")]
    pub model: Option<PathBuf>,
    /// Its activation between the Linear layers.
    #[arg(long, default_value = "relu")]
    pub activation: String,
    /// The data set.
    #[arg(long, value_enum, default_value = "yinyang")]
    pub dataset: Dataset,
    /// MNIST folder (IDX files).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The Linear layer to replace (0-based); default: the last.
    #[arg(long)]
    pub layer: Option<usize>,
    /// Window length h (states per delay-embedded state).
    #[arg(long, default_value_t = 4)]
    pub h: usize,
    /// Rank r of the Hankel-DMD operator.
    #[arg(long, default_value_t = 16)]
    pub r: usize,
    /// Scaled layers S of the block; default max(h + 4, 8).
    #[arg(long)]
    pub scaled: Option<usize>,
    /// Training epochs of the scaling block.
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// Output folder.
    #[arg(long, default_value = "koopman_replace_out")]
    pub out: PathBuf,
    /// Instead: train a Yin-Yang MLP 4-8-6-4-3 and save it here.
    #[arg(long, conflicts_with = "model")]
    pub write_demo_model: Option<PathBuf>,
    /// Epochs of the demo model's training.
    #[arg(long, default_value_t = 150)]
    pub demo_epochs: usize,
}

/// What `replace.json` holds.
#[derive(Debug, Serialize)]
pub struct ReplaceReport {
    /// The model file.
    pub model: String,
    /// Its layer widths.
    pub sizes: Vec<usize>,
    /// The data set.
    pub dataset: Dataset,
    /// The replaced layer.
    pub layer: usize,
    /// Window length h.
    pub h: usize,
    /// Rank r.
    pub r: usize,
    /// Scaled layers S.
    pub scaled: usize,
    /// Mean |y_scaled - y| of the scaling block on the test inputs.
    pub matching_error: f64,
    /// Test accuracy of the original MLP.
    pub original: f64,
    /// Test accuracy with the iterated Hankel-DMD operator (the paper's method).
    pub iterated: f64,
    /// Test accuracy with the direct readout (a baseline).
    pub direct: f64,
    /// The files written beside `replace.json`.
    pub files: Vec<String>,
}

fn dataset(args: &ReplaceArgs, dev: &Device) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    Ok(match args.dataset {
        Dataset::Yinyang => {
            let cfg = YinYangConfig::default();
            let (x, y) = yinyang(5000, 42, &cfg)?.to_tensors(DType::F32, dev)?;
            let (xt, yt) = yinyang(1000, 41, &cfg)?.to_tensors(DType::F32, dev)?;
            (x, y, xt, yt)
        }
        Dataset::Mnist => {
            let dir = match &args.data_dir {
                Some(d) => d.clone(),
                None => koopman_core::data::mnist::mnist_dir_default()?,
            };
            let m = koopman_core::data::mnist::load_mnist(&dir, dev)?;
            (m.train_images, m.train_labels, m.test_images, m.test_labels)
        }
    })
}

/// `--write-demo-model FILE`: trains and saves the demo MLP; returns its test accuracy.
pub fn write_demo_model(args: &ReplaceArgs, path: &std::path::Path) -> Result<f64> {
    let dev = Device::Cpu;
    let (x, y, xt, yt) = dataset(
        &ReplaceArgs {
            dataset: Dataset::Yinyang,
            ..args.clone()
        },
        &dev,
    )?;
    let vm = VarMap::new();
    let mlp = Mlp::new(
        &[4, 8, 6, 4, 3],
        Activation::Relu,
        VarBuilder::from_varmap(&vm, DType::F32, &dev),
    )?;
    koopman_core::nn::init_seeded(&vm, 0)?;
    let cfg = MinibatchConfig {
        epochs: args.demo_epochs.max(1),
        batch_size: 128,
        lr: 2e-2,
        final_lr_fraction: 0.01,
        ..Default::default()
    };
    train_classifier(&mlp, vm.all_vars(), &x, &y, &cfg)?;
    mlp.save(path)?;
    Ok(accuracy(&mlp, &xt, &yt)?)
}

/// `koopman replace`; see the [module documentation](self).
pub fn replace(args: &ReplaceArgs) -> Result<ReplaceReport> {
    let dev = Device::Cpu;
    let model = args
        .model
        .as_ref()
        .ok_or_else(|| BenchError::Usage("--model FILE.safetensors is required".into()))?;
    let activation = Activation::from_name(&args.activation)?;
    let mlp = Mlp::load(model, activation, DType::F32, &dev)?;
    let layer = args.layer.unwrap_or(mlp.num_layers() - 1);
    let scaled_layers = args.scaled.unwrap_or((args.h + 4).max(8));
    let (x, _y, xt, yt) = dataset(args, &dev)?;
    let original = accuracy(&mlp, &xt, &yt)?;
    let scaling = ScalingConfig {
        layers: scaled_layers,
        epochs: args.epochs,
        batch_size: 128,
        ..Default::default()
    };
    let scaled = ScaledLayer::train(&mlp, layer, &x, &scaling)?;
    let matching_error = scaled.matching_error(&xt)?;
    let traj = scaled.trajectories(&x, -1.0)?;
    let staging = Staging::new(&args.out);
    let mut accuracies = [0.0; 2];
    for (slot, readout) in accuracies
        .iter_mut()
        .zip([ReadoutKind::Iterated, ReadoutKind::Direct])
    {
        let cfg = HybridConfig {
            delays: args.h,
            rank: args.r,
            readout,
            max_trajectories: Some(5000),
            ..Default::default()
        };
        let hybrid = fit_hybrid(&scaled, &traj, &cfg)?;
        *slot = accuracy(&hybrid, &xt, &yt)?;
        hybrid.save(&staging.path(&format!("hybrid.{}.safetensors", readout.name()))?)?;
    }
    let files = staging.publish()?;
    let report = ReplaceReport {
        model: model.display().to_string(),
        sizes: mlp.sizes().to_vec(),
        dataset: args.dataset,
        layer,
        h: args.h,
        r: args.r,
        scaled: scaled_layers,
        matching_error,
        original,
        iterated: accuracies[0],
        direct: accuracies[1],
        files,
    };
    write_json(args.out.join("replace.json"), &report)?;
    Ok(report)
}
