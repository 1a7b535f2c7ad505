//! Koopman analysis of MNIST training (paper 001) at test size: the observer and the
//! convergence monitor on a real run, and Algorithm 1 pruning keeping the accuracy.
//!
//! MNIST comes from `KOOPMAN_DATA_DIR/mnist`: the test fails when the variable (or `CI`) is set
//! and the data is missing, and skips with a printed reason otherwise.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Optimizer, VarBuilder, VarMap};
use koopman_core::nn::{accuracy, init_seeded, Activation, Mlp};
use koopman_train::analysis::observer::{
    run_epoch, ConvergenceConfig, ConvergenceMonitor, TrainingObserver,
};
use koopman_train::analysis::pruning::{prune_reconstruction, PruningConfig};
use rand::SeedableRng;

type R = std::result::Result<(), Box<dyn std::error::Error>>;

fn mnist() -> Option<koopman_core::data::mnist::Mnist> {
    let dir = koopman_core::testing::mnist_dir_for_test("mnist_analysis")?;
    let data = koopman_core::data::mnist::load_mnist(dir, &Device::Cpu).expect("readable MNIST");
    Some(data.subset(1000, 500).expect("subset"))
}

fn ce(mlp: &Mlp, x: &Tensor, y: &Tensor) -> candle_core::Result<f64> {
    candle_nn::loss::cross_entropy(&mlp.forward(x)?, y)?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()
}

#[test]
fn observer_monitor_and_pruning_on_mnist() -> R {
    let Some(data) = mnist() else { return Ok(()) };
    let dev = Device::Cpu;
    let (x, y) = (&data.train_images, &data.train_labels);
    let vm = VarMap::new();
    let mlp = Mlp::new(
        &[784, 16, 10],
        Activation::Relu,
        VarBuilder::from_varmap(&vm, DType::F32, &dev),
    )?;
    init_seeded(&vm, 0)?;
    let mut obs = TrainingObserver::from_varmap(&vm, |n| n.ends_with(".weight"))?;
    let mut monitor = ConvergenceMonitor::new(ConvergenceConfig {
        min_snapshots: 5,
        ..Default::default()
    })?;
    let mut opt = candle_nn::AdamW::new(
        vm.all_vars(),
        candle_nn::ParamsAdamW {
            lr: 2e-3,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let epochs = 8;
    let batch_loss = |idx: &Tensor| -> koopman_train::Result<Tensor> {
        Ok(candle_nn::loss::cross_entropy(
            &mlp.forward(&x.index_select(idx, 0)?)?,
            &y.index_select(idx, 0)?,
        )?)
    };
    for e in 0..=epochs {
        obs.record(ce(&mlp, x, y)?)?;
        monitor.check(&obs)?;
        if e < epochs {
            run_epoch(&mut opt, 1000, 50, &mut rng, &dev, &batch_loss, || Ok(()))?;
        }
    }
    assert_eq!(obs.len(), epochs + 1);
    assert_eq!(obs.param_count(), 784 * 16 + 16 * 10);
    // The training loss fell, and the weight spectrum has its fixed-point eigenvalue at 1
    // among the important ones.
    assert!(
        obs.losses()[epochs] < 0.5 * obs.losses()[0],
        "{:?}",
        obs.losses()
    );
    let last = monitor.history().last().ok_or("no monitor check")?;
    assert!(last.fraction_near_one > 0.0, "{last:?}");
    // Too few snapshots for the loss delay: a clear error.
    assert!(obs.loss_fit(5, 5, &Default::default()).is_err());
    let before = accuracy(&mlp, &data.test_images, &data.test_labels)?;
    // Algorithm 1: more than 60% of the weights pinned at zero, accuracy kept after a few
    // further epochs with the mask re-applied after every step.
    let mask = prune_reconstruction(
        &obs,
        &PruningConfig {
            epsilon: 0.08,
            ..Default::default()
        },
    )?;
    assert!(mask.zero_fraction() > 0.6, "{}", mask.zero_fraction());
    for _ in 0..3 {
        run_epoch(&mut opt, 1000, 50, &mut rng, &dev, &batch_loss, || {
            mask.apply()
        })?;
    }
    let zeros = obs.current()?.iter().filter(|v| **v == 0.0).count();
    assert!(zeros >= mask.pruned());
    let after = accuracy(&mlp, &data.test_images, &data.test_labels)?;
    assert!(after > before - 0.03, "pruned {after} vs unpruned {before}");
    Ok(())
}
