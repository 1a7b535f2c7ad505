//! Layer replacement: save/load round trips, PyTorch-named models, every layer index, bad input.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use koopman_core::data::yinyang::{yinyang, YinYangConfig};
use koopman_core::nn::{
    accuracy, predict_classes, train_classifier, Activation, MinibatchConfig, Mlp,
};
use koopman_layers::replace::{
    fit_hybrid, HybridConfig, HybridModel, ReadoutKind, ScaledLayer, ScalingConfig,
    MAX_SCALED_LAYERS,
};
use koopman_layers::LayersError;
use std::collections::HashMap;
use std::path::PathBuf;

type R = Result<(), Box<dyn std::error::Error>>;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("koopman-layers-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn small_yinyang_mlp(dev: &Device) -> Result<(Mlp, Tensor, Tensor), Box<dyn std::error::Error>> {
    let (x, y) = yinyang(600, 5, &YinYangConfig::default())?.to_tensors(DType::F32, dev)?;
    let vm = VarMap::new();
    let mlp = Mlp::new(
        &[4, 12, 8, 6, 3],
        Activation::Relu,
        VarBuilder::from_varmap(&vm, DType::F32, dev),
    )?;
    koopman_core::nn::init_seeded(&vm, 3)?;
    let cfg = MinibatchConfig {
        epochs: 15,
        batch_size: 32,
        lr: 1e-2,
        seed: 1,
        ..Default::default()
    };
    train_classifier(&mlp, vm.all_vars(), &x, &y, &cfg)?;
    Ok((mlp, x, y))
}

fn scaling(layers: usize) -> ScalingConfig {
    ScalingConfig {
        layers,
        epochs: 3,
        batch_size: 64,
        ..Default::default()
    }
}

#[test]
fn every_layer_both_readouts_round_trip() -> R {
    let dev = Device::Cpu;
    let (mlp, x, y) = small_yinyang_mlp(&dev)?;
    for layer in 0..mlp.num_layers() {
        let scaled = ScaledLayer::train(&mlp, layer, &x, &scaling(3))?;
        let traj = scaled.trajectories(&x, -1.0)?;
        assert_eq!(traj.len_states(), 5);
        for readout in [ReadoutKind::Iterated, ReadoutKind::Direct] {
            for stabilize in [false, true] {
                let cfg = HybridConfig {
                    delays: 2,
                    rank: 6,
                    readout,
                    normalize: stabilize,
                    stabilize,
                    affine: stabilize,
                    ..Default::default()
                };
                let hybrid = fit_hybrid(&scaled, &traj, &cfg)?;
                let before = hybrid.forward(&x)?;
                assert_eq!(before.dims(), &[600, 3]);
                let path = tmp(&format!(
                    "hybrid-{layer}-{}-{stabilize}.safetensors",
                    readout.name()
                ));
                hybrid.save(&path)?;
                let back = HybridModel::load(&path, &dev)?;
                assert_eq!(back.meta(), hybrid.meta());
                let after = back.forward(&x)?;
                assert_eq!(
                    before.to_vec2::<f32>()?,
                    after.to_vec2::<f32>()?,
                    "layer {layer} {readout:?}"
                );
                assert_eq!(predict_classes(&back, &x)?, predict_classes(&hybrid, &x)?);
            }
        }
    }
    // The output layer is affine in the window, which holds its input: the direct readout
    // reproduces the original classifier.
    let last = mlp.num_layers() - 1;
    let scaled = ScaledLayer::train(&mlp, last, &x, &scaling(2))?;
    let traj = scaled.trajectories(&x, -1.0)?;
    let direct = fit_hybrid(
        &scaled,
        &traj,
        &HybridConfig {
            delays: 1,
            readout: ReadoutKind::Direct,
            ..Default::default()
        },
    )?;
    let (a, b) = (accuracy(&mlp, &x, &y)?, accuracy(&direct, &x, &y)?);
    assert!((a - b).abs() <= 0.005, "original {a} vs direct {b}");
    Ok(())
}

#[test]
fn pytorch_named_model_is_replaced() -> R {
    let dev = Device::Cpu;
    // A state_dict as nn.Sequential(Linear(4,6), ReLU(), Linear(6,5), ReLU(), Linear(5,3)) names it.
    let mut t = HashMap::new();
    let sizes = [4usize, 6, 5, 3];
    for (i, w) in sizes.windows(2).enumerate() {
        let weight: Vec<f32> = (0..w[0] * w[1])
            .map(|k| ((k * 7 + i) % 11) as f32 / 11.0 - 0.4)
            .collect();
        t.insert(
            format!("{}.weight", 2 * i),
            Tensor::from_vec(weight, (w[1], w[0]), &dev)?,
        );
        t.insert(
            format!("{}.bias", 2 * i),
            Tensor::full(0.05f32, w[1], &dev)?,
        );
    }
    let path = tmp("torch-mlp.safetensors");
    candle_core::safetensors::save(&t, &path)?;
    let mlp = koopman_layers::replace::load_mlp(&path, Activation::Relu, &dev)?;
    assert_eq!(mlp.sizes(), &sizes);
    let (x, _) = yinyang(200, 3, &YinYangConfig::default())?.to_tensors(DType::F32, &dev)?;
    let scaled = ScaledLayer::train(&mlp, 1, &x, &scaling(2))?;
    let traj = scaled.trajectories(&x, -1.0)?;
    let h = fit_hybrid(
        &scaled,
        &traj,
        &HybridConfig {
            delays: 1,
            rank: 4,
            ..Default::default()
        },
    )?;
    assert_eq!(h.forward(&x)?.dims(), &[200, 3]);
    // Misshapen file: the second weight does not chain.
    t.insert("2.weight".into(), Tensor::zeros((5, 7), DType::F32, &dev)?);
    candle_core::safetensors::save(&t, &path)?;
    let err = koopman_layers::replace::load_mlp(&path, Activation::Relu, &dev).unwrap_err();
    assert!(err.to_string().contains("takes 7 inputs"), "{err}");
    // Missing bias.
    t.insert("2.weight".into(), Tensor::zeros((5, 6), DType::F32, &dev)?);
    t.remove("4.bias");
    candle_core::safetensors::save(&t, &path)?;
    let err = koopman_layers::replace::load_mlp(&path, Activation::Relu, &dev).unwrap_err();
    assert!(err.to_string().contains("missing tensor '4.bias'"), "{err}");
    Ok(())
}

#[test]
fn bad_input_is_an_error() -> R {
    let dev = Device::Cpu;
    let (mlp, x, _) = small_yinyang_mlp(&dev)?;
    let e = ScaledLayer::train(&mlp, 4, &x, &scaling(2)).unwrap_err();
    assert!(
        matches!(e, LayersError::InvalidArgument(_)) && e.to_string().contains("out of range"),
        "{e}"
    );
    assert!(ScaledLayer::train(&mlp, 1, &x, &scaling(0)).is_err());
    let wrong = Tensor::zeros((10, 3), DType::F32, &dev)?;
    assert!(ScaledLayer::train(&mlp, 1, &wrong, &scaling(2)).is_err());
    let scaled = ScaledLayer::train(&mlp, 1, &x, &scaling(2))?;
    let traj = scaled.trajectories(&x, -1.0)?;
    // S = 2: four states, so h <= 3.
    let e = fit_hybrid(
        &scaled,
        &traj,
        &HybridConfig {
            delays: 4,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("too large"), "{e}");
    assert!(fit_hybrid(
        &scaled,
        &traj,
        &HybridConfig {
            delays: 0,
            ..Default::default()
        }
    )
    .is_err());
    // Width 12, h = 2: rank at most 24.
    let e = fit_hybrid(
        &scaled,
        &traj,
        &HybridConfig {
            delays: 2,
            rank: 25,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("rank r = 25"), "{e}");
    assert!(fit_hybrid(
        &scaled,
        &traj,
        &HybridConfig {
            rank: 0,
            ..Default::default()
        }
    )
    .is_err());
    assert!(scaled.trajectories(&x, f64::NAN).is_err());

    // A saved hybrid with a missing or misshapen readout tensor fails to load.
    let hybrid = fit_hybrid(
        &scaled,
        &traj,
        &HybridConfig {
            delays: 2,
            rank: 5,
            ..Default::default()
        },
    )?;
    let path = tmp("broken-hybrid.safetensors");
    hybrid.save(&path)?;
    let mut tensors = candle_core::safetensors::load(&path, &dev)?;
    tensors.insert(
        "readout.a_t".into(),
        Tensor::zeros((4, 5), DType::F64, &dev)?,
    );
    candle_core::safetensors::save(&tensors, &path)?;
    let e = HybridModel::load(&path, &dev).unwrap_err();
    assert!(
        matches!(e, LayersError::Format(_)) && e.to_string().contains("readout.a_t"),
        "{e}"
    );
    tensors.remove("readout.a_t");
    candle_core::safetensors::save(&tensors, &path)?;
    let e = HybridModel::load(&path, &dev).unwrap_err();
    assert!(
        e.to_string().contains("missing tensor 'readout.a_t'"),
        "{e}"
    );
    std::fs::write(&path, b"garbage").unwrap();
    assert!(matches!(
        HybridModel::load(&path, &dev),
        Err(LayersError::Format(_))
    ));
    Ok(())
}

/// MNIST from `KOOPMAN_DATA_DIR/mnist`: fails when CI is set and the data is missing, skips
/// with a printed reason otherwise.
#[test]
fn mnist_last_layer_direct_readout_keeps_accuracy() -> R {
    let Some(dir) =
        koopman_core::testing::mnist_dir_for_test("mnist_last_layer_direct_readout_keeps_accuracy")
    else {
        return Ok(());
    };
    let dev = Device::Cpu;
    let data = koopman_core::data::mnist::load_mnist(dir, &dev)?.subset(3000, 1000)?;
    let vm = VarMap::new();
    let mlp = Mlp::new(
        &[784, 32, 16, 10],
        Activation::Relu,
        VarBuilder::from_varmap(&vm, DType::F32, &dev),
    )?;
    koopman_core::nn::init_seeded(&vm, 0)?;
    let cfg = MinibatchConfig {
        epochs: 4,
        batch_size: 64,
        lr: 2e-3,
        seed: 0,
        ..Default::default()
    };
    train_classifier(
        &mlp,
        vm.all_vars(),
        &data.train_images,
        &data.train_labels,
        &cfg,
    )?;
    let orig = accuracy(&mlp, &data.test_images, &data.test_labels)?;
    assert!(orig > 0.8, "original accuracy {orig}");
    let scaled = ScaledLayer::train(&mlp, 2, &data.train_images, &scaling(3))?;
    let traj = scaled.trajectories(&data.train_images, -1.0)?;
    let direct = fit_hybrid(
        &scaled,
        &traj,
        &HybridConfig {
            delays: 2,
            readout: ReadoutKind::Direct,
            ..Default::default()
        },
    )?;
    let acc = accuracy(&direct, &data.test_images, &data.test_labels)?;
    assert!(orig - acc <= 0.02, "original {orig}, hybrid {acc}");
    let iterated = fit_hybrid(
        &scaled,
        &traj,
        &HybridConfig {
            delays: 2,
            rank: 16,
            ..Default::default()
        },
    )?;
    let it = accuracy(&iterated, &data.test_images, &data.test_labels)?;
    println!("original {orig}, direct {acc}, iterated {it}");
    // The iterated map must carry the layer: at least three times the 10% of chance that a
    // broken operator (or a hybrid that ignores its input) gives on ten balanced classes.
    assert!(it >= 0.3, "iterated hybrid {it} (original {orig})");
    Ok(())
}

/// The deepest block allowed trains on a test thread's stack (2 MiB); one layer more is refused
/// before any work, naming the limit (deep blocks used to overflow the stack, SIGABRT).
#[test]
fn scaling_depth_is_bounded() -> R {
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let mlp = Mlp::new(
        &[4, 6, 3],
        Activation::Relu,
        VarBuilder::from_varmap(&vm, DType::F32, &dev),
    )?;
    koopman_core::nn::init_seeded(&vm, 1)?;
    let x = Tensor::randn(0f32, 1.0, (8, 4), &dev)?;
    let config = ScalingConfig {
        layers: MAX_SCALED_LAYERS,
        epochs: 1,
        batch_size: 8,
        ..Default::default()
    };
    let scaled = ScaledLayer::train(&mlp, 1, &x, &config)?;
    assert_eq!(scaled.num_scaled(), MAX_SCALED_LAYERS);
    let deeper = ScalingConfig {
        layers: MAX_SCALED_LAYERS + 1,
        ..config
    };
    let err = ScaledLayer::train(&mlp, 1, &x, &deeper).unwrap_err();
    assert!(
        matches!(err, LayersError::OutOfRange(_)) && err.to_string().contains("at most 256"),
        "{err}"
    );
    Ok(())
}
