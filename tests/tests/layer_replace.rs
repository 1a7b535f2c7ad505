//! Cross-crate: the layer-replacement experiments are registered, and the MNIST one names the
//! missing data instead of failing; a hybrid built from koopman-core's MLP round-trips on disk.

use candle_core::{DType, Device, Module};
use koopman_bench::experiments;
use koopman_bench::report::RunContext;
use koopman_bench::Size;
use koopman_core::candle_nn::{VarBuilder, VarMap};
use koopman_core::data::yinyang::{yinyang, YinYangConfig};
use koopman_core::nn::{init_seeded, Activation, Mlp};
use koopman_layers::replace::{fit_hybrid, HybridConfig, HybridModel, ScaledLayer, ScalingConfig};

#[test]
fn layer_experiments_registered_and_mnist_skips_without_data() {
    let selected = experiments::select(Some("yinyang,mnist")).unwrap();
    assert_eq!(selected.len(), 2);
    let dir = std::env::temp_dir().join(format!("koopman-tests-lr-{}", std::process::id()));
    let mut ctx = RunContext::new(Size::Quick, Device::Cpu, dir.clone());
    ctx.data_dir = Some(dir.join("no-such-data"));
    let reason = selected[1]
        .missing_data(&ctx)
        .expect("mnist data is absent here");
    assert!(reason.contains("MNIST"), "{reason}");
    assert!(selected[0].missing_data(&ctx).is_none());
}

#[test]
fn hybrid_round_trip_across_crates() {
    let dev = Device::Cpu;
    let (x, _) = yinyang(300, 9, &YinYangConfig::default())
        .unwrap()
        .to_tensors(DType::F32, &dev)
        .unwrap();
    let vm = VarMap::new();
    let mlp = Mlp::new(
        &[4, 8, 6, 3],
        Activation::Relu,
        VarBuilder::from_varmap(&vm, DType::F32, &dev),
    )
    .unwrap();
    init_seeded(&vm, 4).unwrap();
    let scaled = ScaledLayer::train(
        &mlp,
        1,
        &x,
        &ScalingConfig {
            layers: 3,
            epochs: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let traj = scaled.trajectories(&x, -1.0).unwrap();
    let hybrid = fit_hybrid(
        &scaled,
        &traj,
        &HybridConfig {
            delays: 3,
            rank: 10,
            ..Default::default()
        },
    )
    .unwrap();
    let path = std::env::temp_dir().join(format!(
        "koopman-tests-hybrid-{}.safetensors",
        std::process::id()
    ));
    hybrid.save(&path).unwrap();
    let back = HybridModel::load(&path, &dev).unwrap();
    assert_eq!(
        hybrid.forward(&x).unwrap().to_vec2::<f32>().unwrap(),
        back.forward(&x).unwrap().to_vec2::<f32>().unwrap()
    );
}
