//! `koopman replace` end to end: the demo model written, a layer replaced with both readouts,
//! and the inputs a user gets wrong (a layer index out of range, NaN weights, foreign tensor
//! names, a model for another data set).

mod common;

use common::{koopman, s, scratch};
use std::collections::HashMap;

#[test]
fn replace_a_layer_and_refuse_bad_models() {
    let dir = scratch("replace");
    let model = dir.join("yy.safetensors");
    let run = koopman(&[
        "replace",
        "--write-demo-model",
        s(&model),
        "--demo-epochs",
        "30",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out = dir.join("out");
    let run = koopman(&[
        "replace",
        "--model",
        s(&model),
        "--layer",
        "2",
        "--h",
        "2",
        "--r",
        "4",
        "--epochs",
        "2",
        "--out",
        s(&out),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("replace.json")).unwrap()).unwrap();
    for key in ["original", "iterated", "direct"] {
        let a = report[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&a), "{key}: {a}");
    }
    // The demo model learned something (3 classes: chance is 1/3).
    assert!(report["original"].as_f64().unwrap() > 0.5, "{report}");
    for f in ["hybrid.iterated.safetensors", "hybrid.direct.safetensors"] {
        assert!(out.join(f).is_file(), "{f}");
    }

    let fails = |args: &[&str], needle: &str| {
        let run = koopman(args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains(needle) && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
    };
    let bad_out = dir.join("bad_out");
    fails(
        &[
            "replace",
            "--model",
            s(&model),
            "--layer",
            "9",
            "--out",
            s(&bad_out),
        ],
        "out of range",
    );
    fails(
        &[
            "replace",
            "--model",
            s(&model),
            "--dataset",
            "mnist",
            "--out",
            s(&bad_out),
        ],
        "width 4",
    );
    // NaN weights and foreign names.
    let dev = candle_core::Device::Cpu;
    let mut tensors = candle_core::safetensors::load(&model, &dev).unwrap();
    let w = tensors["0.weight"].clone();
    let mut values = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    values[3] = f32::NAN;
    tensors.insert(
        "0.weight".into(),
        candle_core::Tensor::from_vec(values, w.dims(), &dev).unwrap(),
    );
    let nan = dir.join("nan.safetensors");
    candle_core::safetensors::save(&tensors, &nan).unwrap();
    fails(
        &["replace", "--model", s(&nan), "--out", s(&bad_out)],
        "NaN",
    );
    let foreign: HashMap<String, candle_core::Tensor> =
        [("fc1.weight".to_string(), w)].into_iter().collect();
    let names = dir.join("names.safetensors");
    candle_core::safetensors::save(&foreign, &names).unwrap();
    fails(
        &["replace", "--model", s(&names), "--out", s(&bad_out)],
        "fc1.weight",
    );
    assert!(!bad_out.join("replace.json").exists());
    std::fs::remove_dir_all(dir).unwrap();
}
