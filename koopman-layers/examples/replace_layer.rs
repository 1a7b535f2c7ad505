//! Replace one layer of your trained MLP by a delay-embedded linear operator and compare
//! accuracies.
//!
//! ```text
//! cargo run --release -p koopman-layers --example replace_layer -- \
//!     --model my_mlp.safetensors --dataset mnist --layer 1 --h 10 --r 50 [--scaled 12] \
//!     [--activation relu] [--data-dir DIR] [--save hybrid.safetensors]
//! cargo run --release -p koopman-layers --example replace_layer -- --write-demo-model yy.safetensors
//! ```
//!
//! `--model` is a safetensors file with PyTorch `nn.Sequential` names (`0.weight`, `0.bias`,
//! `2.weight`, ...), e.g. `safetensors.torch.save_file(model.state_dict(), path)`. `--dataset` is
//! `yinyang` (generated: 5,000 training, 1,000 test samples) or `mnist` (IDX files in
//! `--data-dir`, default `$KOOPMAN_DATA_DIR/mnist`, else the 10,000-digit subset bundled with
//! koopman-core). Both readouts are reported: the iterated
//! Hankel DMD of rank `r` and the direct least-squares readout from the same window of `h` states.
//! `--write-demo-model` trains a Yin-Yang MLP 4-8-6-4-3 and saves it, to try the example on.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use koopman_core::mlp::{accuracy, train_classifier, Activation, Mlp, TrainConfig};
use koopman_core::yinyang::{yinyang, YinYangConfig};
use koopman_layers::replace::{fit_hybrid, HybridConfig, ReadoutKind, ScaledLayer, ScalingConfig};
use std::collections::HashMap;
use std::path::PathBuf;

type R<T> = Result<T, Box<dyn std::error::Error>>;

/// The options this example reads; any other is an error (a misspelt option must not be
/// silently ignored).
const OPTIONS: &[&str] = &[
    "model",
    "dataset",
    "data-dir",
    "layer",
    "h",
    "r",
    "scaled",
    "epochs",
    "activation",
    "save",
    "write-demo-model",
];

fn parse_args() -> R<HashMap<String, String>> {
    let mut map = HashMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let key = a
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument '{a}' (options start with --)"))?;
        if !OPTIONS.contains(&key) {
            return Err(format!(
                "unknown option --{key} (options: --{})",
                OPTIONS.join(", --")
            )
            .into());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("option --{key} needs a value"))?;
        map.insert(key.to_string(), value);
    }
    Ok(map)
}

fn num(args: &HashMap<String, String>, key: &str, default: usize) -> R<usize> {
    match args.get(key) {
        None => Ok(default),
        Some(v) => Ok(v
            .parse()
            .map_err(|_| format!("--{key} must be a non-negative integer, got '{v}'"))?),
    }
}

fn dataset(args: &HashMap<String, String>, dev: &Device) -> R<(Tensor, Tensor, Tensor, Tensor)> {
    match args.get("dataset").map(String::as_str).unwrap_or("yinyang") {
        "yinyang" => {
            let cfg = YinYangConfig::default();
            let (x, y) = yinyang(5000, 42, &cfg)?.to_tensors(DType::F32, dev)?;
            let (xt, yt) = yinyang(1000, 41, &cfg)?.to_tensors(DType::F32, dev)?;
            Ok((x, y, xt, yt))
        }
        "mnist" => {
            let dir = match args.get("data-dir") {
                Some(d) => PathBuf::from(d),
                None => koopman_core::mnist::mnist_dir_default()?,
            };
            let m = koopman_core::mnist::load_mnist(&dir, dev)?;
            Ok((m.train_images, m.train_labels, m.test_images, m.test_labels))
        }
        other => Err(format!("unknown dataset '{other}' (yinyang or mnist)").into()),
    }
}

fn main() -> R<()> {
    koopman_core::parallel::pin_candle_threads();
    let args = parse_args()?;
    let dev = Device::Cpu;
    if let Some(out) = args.get("write-demo-model") {
        let (x, y, xt, yt) = dataset(&HashMap::new(), &dev)?;
        let vm = VarMap::new();
        let mlp = Mlp::new(
            &[4, 8, 6, 4, 3],
            Activation::Relu,
            VarBuilder::from_varmap(&vm, DType::F32, &dev),
        )?;
        koopman_core::mlp::init_seeded(&vm, 0)?;
        let cfg = TrainConfig {
            epochs: 150,
            batch_size: 128,
            lr: 2e-2,
            final_lr_fraction: 0.01,
            ..Default::default()
        };
        train_classifier(&mlp, vm.all_vars(), &x, &y, &cfg)?;
        mlp.save(out)?;
        println!(
            "demo MLP 4-8-6-4-3 saved to {out}; test accuracy {:.1}%",
            100.0 * accuracy(&mlp, &xt, &yt)?
        );
        return Ok(());
    }
    let model = args
        .get("model")
        .ok_or("--model FILE.safetensors is required (or --write-demo-model FILE)")?;
    let activation = Activation::from_name(args.get("activation").map_or("relu", String::as_str))?;
    let mlp = Mlp::load(model, activation, DType::F32, &dev)?;
    let layer = num(&args, "layer", mlp.num_layers() - 1)?;
    let h = num(&args, "h", 4)?;
    let r = num(&args, "r", 16)?;
    let s = num(&args, "scaled", (h + 4).max(8))?;
    let (x, _y, xt, yt) = dataset(&args, &dev)?;
    println!(
        "MLP {:?} ({}), replacing Linear layer {layer}; h = {h}, r = {r}, S = {s}",
        mlp.sizes(),
        activation.name()
    );
    let original = accuracy(&mlp, &xt, &yt)?;
    let scaling = ScalingConfig {
        layers: s,
        epochs: num(&args, "epochs", 20)?,
        batch_size: 128,
        ..Default::default()
    };
    let scaled = ScaledLayer::train(&mlp, layer, &x, &scaling)?;
    println!(
        "scaling block: matching error {:.4} (mean |y_scaled - y| on test inputs)",
        scaled.matching_error(&xt)?
    );
    let traj = scaled.trajectories(&x, -1.0)?;
    println!("original            test accuracy {:.2}%", 100.0 * original);
    for readout in [ReadoutKind::Iterated, ReadoutKind::Direct] {
        let cfg = HybridConfig {
            delays: h,
            rank: r,
            readout,
            max_trajectories: Some(5000),
            ..Default::default()
        };
        let hybrid = fit_hybrid(&scaled, &traj, &cfg)?;
        let acc = accuracy(&hybrid, &xt, &yt)?;
        println!(
            "hybrid ({:<8})   test accuracy {:.2}%",
            readout.name(),
            100.0 * acc
        );
        if let Some(path) = args.get("save") {
            let p = PathBuf::from(path).with_extension(format!("{}.safetensors", readout.name()));
            hybrid.save(&p)?;
            println!("  saved to {}", p.display());
        }
    }
    Ok(())
}
