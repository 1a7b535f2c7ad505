//! Koopman stepping of a small MNIST MLP (the `stepping_mnist` experiment at test size).
//!
//! Needs `KOOPMAN_DATA_DIR/mnist`: fails when CI is set and the data is missing, skips with a
//! printed reason otherwise.

use candle_core::Device;
use koopman_bench::experiments::p000_stepping::trials::classifier::{
    evaluate_classifier, train_classifier_trial, ClassifierData, ClassifierTrialConfig,
};
use koopman_train::stepping::{FitConfig, Partition, PartitionSpec};

#[test]
fn mnist_koopman_stepping_beats_the_straight_line() -> Result<(), Box<dyn std::error::Error>> {
    let Some(dir) =
        koopman_core::testing::mnist_dir_for_test("mnist_koopman_stepping_beats_the_straight_line")
    else {
        return Ok(());
    };
    let dev = Device::Cpu;
    let m = koopman_core::data::mnist::load_mnist(dir, &dev)?.subset(1600, 500)?;
    // 2x2 average pooling (14 x 14 inputs) keeps the debug-build fit small.
    let pool = |x: &candle_core::Tensor| -> candle_core::Result<candle_core::Tensor> {
        let n = x.dims()[0];
        x.reshape((n, 14, 2, 14, 2))?
            .mean(4)?
            .mean(2)?
            .reshape((n, 196))
    };
    let data = ClassifierData::new(
        pool(&m.train_images)?,
        m.train_labels,
        pool(&m.test_images)?,
        m.test_labels,
    )?;
    let cfg = ClassifierTrialConfig {
        sizes: vec![196, 4, 10],
        partition: PartitionSpec::PerLayer(vec![
            ("0".into(), Partition::QuasiNode(20)),
            ("2".into(), Partition::Node),
        ]),
        eigen_jump: false,
        ..Default::default()
    };
    let run = train_classifier_trial(&data, &cfg, 0, &dev, None)?;
    assert_eq!(run.steps_per_epoch, 25);
    assert_eq!(run.recorder.len(), 3 * 25 + 1);
    // 76 snapshots of noisy mini-batch dynamics: a firm cut-off and the unit-disk projection.
    let fit = FitConfig {
        rcond: Some(1e-6),
        project_unit_disk: true,
        ..Default::default()
    };
    let out = evaluate_classifier(&run, &data, &fit, &dev)?;
    // Recorder memory: every snapshot of every parameter in f64, nothing else.
    let params = 196 * 4 + 4 + 4 * 10 + 10;
    assert_eq!(out.recorder_bytes, 76 * params * 8);
    assert!(out.losses[2].is_finite(), "{out:?}");
    assert!(out.norm_errors[0] < out.norm_errors[1], "{out:?}");
    Ok(())
}
