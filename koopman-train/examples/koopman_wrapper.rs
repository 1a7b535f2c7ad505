//! Koopman jumps inside the training loop of your own candle model.
//!
//! A user-defined model (two Linear layers with tanh, written with plain candle-nn) is fitted to
//! a smooth 1-D function twice from the same initialisation: with Adam alone, and with Adam
//! wrapped in `KoopmanTrainer`, which records the weights, fits node operators every `window`
//! steps, checks their spectra and, when the weights are in a basin, jumps ahead by the horizon
//! that lowers the loss most. Both runs stop at the same target loss; the wall times are printed.
//!
//! ```text
//! cargo run --release -p koopman-train --example koopman_wrapper -- [--steps 6000] [--window 300]
//! ```

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, Optimizer, VarBuilder, VarMap};
use koopman_train::stepping::wrapper::{KoopmanTrainer, StepEvent, WrapperConfig};
use koopman_train::stepping::{Partition, PartitionSpec};
use std::time::Instant;

/// The user's model: any struct of candle-nn layers.
struct MyModel {
    hidden: Linear,
    out: Linear,
}

impl MyModel {
    fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            hidden: candle_nn::linear(1, 16, vb.pp("hidden"))?,
            out: candle_nn::linear(16, 1, vb.pp("out"))?,
        })
    }
}

impl Module for MyModel {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.out.forward(&self.hidden.forward(x)?.tanh()?)
    }
}

/// `--steps N` and `--window N` (both optional); anything else, or a value that is not a
/// non-negative integer, is an error naming it.
fn args() -> koopman_train::Result<(usize, usize)> {
    let (mut steps, mut window) = (6000, 300);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let target = match a.as_str() {
            "--steps" => &mut steps,
            "--window" => &mut window,
            _ => {
                return Err(koopman_train::TrainError::InvalidArgument(format!(
                    "unknown argument '{a}' (options: --steps N, --window N)"
                )))
            }
        };
        let value = it.next().unwrap_or_default();
        *target = value.parse().map_err(|_| {
            koopman_train::TrainError::InvalidArgument(format!(
                "{a} needs a non-negative integer, got '{value}'"
            ))
        })?;
    }
    Ok((steps, window))
}

fn build(dev: &Device) -> koopman_train::Result<(MyModel, VarMap)> {
    let vm = VarMap::new();
    let model = MyModel::new(VarBuilder::from_varmap(&vm, DType::F64, dev))?;
    koopman_train::koopman_core::nn::init_seeded(&vm, 7)?;
    Ok((model, vm))
}

fn main() -> koopman_train::Result<()> {
    koopman_train::koopman_core::parallel::pin_candle_threads();
    let dev = Device::Cpu;
    let (steps, window) = args()?;
    let xs: Vec<f64> = (0..128).map(|i| -2.0 + 4.0 * i as f64 / 127.0).collect();
    let ys: Vec<f64> = xs
        .iter()
        .map(|x| (1.5 * x).sin() * (-0.2 * x * x).exp())
        .collect();
    let x = Tensor::from_vec(xs, (128, 1), &dev)?;
    let y = Tensor::from_vec(ys, (128, 1), &dev)?;
    let mse = |m: &MyModel| -> koopman_train::Result<Tensor> {
        Ok((m.forward(&x)? - &y)?.sqr()?.mean_all()?)
    };
    let adam = |vm: &VarMap| {
        candle_nn::AdamW::new(
            vm.all_vars(),
            candle_nn::ParamsAdamW {
                lr: 3e-3,
                weight_decay: 0.0,
                ..Default::default()
            },
        )
    };

    // Plain Adam: the target is its loss after `steps` steps.
    let (model, vm) = build(&dev)?;
    let mut opt = adam(&vm)?;
    let start = Instant::now();
    for _ in 0..steps {
        opt.backward_step(&mse(&model)?)?;
    }
    let plain = start.elapsed().as_secs_f64();
    let target = mse(&model)?.to_scalar::<f64>()?;
    println!("plain Adam: loss {target:.3e} after {steps} steps in {plain:.2} s");

    // The same model and optimizer inside the wrapper.
    let (model, vm) = build(&dev)?;
    let config = WrapperConfig {
        window,
        horizons: vec![window as u64, 4 * window as u64, 16 * window as u64],
        partition: PartitionSpec::uniform(Partition::Node),
        basin_tolerance: 0.02,
        ..Default::default()
    };
    let mut trainer = KoopmanTrainer::from_varmap(&vm, adam(&vm)?, config)?;
    let start = Instant::now();
    let mut reached = None;
    for _ in 0..2 * steps {
        let event = trainer.step(|| mse(&model))?;
        if let StepEvent::Jumped {
            horizon,
            before,
            after,
        } = &event
        {
            println!("  jump of {horizon} steps: loss {before:.3e} -> {after:.3e}");
        }
        let now = match event {
            StepEvent::Jumped { after, .. } => after,
            _ => trainer.last_loss(),
        };
        if now <= target {
            reached = Some(start.elapsed().as_secs_f64());
            break;
        }
    }
    let s = trainer.stats();
    match reached {
        Some(t) => println!(
            "wrapper: reached {target:.3e} in {t:.2} s ({} optimizer steps, {} jumps covering {} steps)",
            s.optimizer_steps, s.jumps, s.jumped_steps
        ),
        None => println!("wrapper: did not reach {target:.3e} within {} steps ({s:?})", 2 * steps),
    }
    Ok(())
}
