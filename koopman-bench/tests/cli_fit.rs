//! `koopman fit` and `koopman predict` end to end: the binary on real files in a temporary
//! folder, and the inputs a user gets wrong (a model too large, a folder mixing two runs, states
//! of the wrong dimension).

mod common;

use common::{koopman, s, scratch};

use koopman_core::io::{write_npy, NpyData};
use std::path::{Path, PathBuf};
use std::process::Output;

/// 12 trajectories x 9 times x 2 of a slow rotation, as `.npy`.
fn series(dir: &Path) -> PathBuf {
    let mut values = Vec::new();
    for t in 0..12 {
        let (mut x, mut y) = (0.1 * t as f64 - 0.5, 0.3);
        for _ in 0..9 {
            values.extend([x, y]);
            (x, y) = (0.99 * x - 0.1 * y, 0.1 * x + 0.99 * y);
        }
    }
    let path = dir.join("series.npy");
    write_npy(&path, &[12, 9, 2], &NpyData::F64(values)).unwrap();
    path
}

/// A small fit (J = 1, radius 2, three steps) of `input` into `out`, then `extra`.
fn fit_args<'a>(input: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "fit",
        s(input),
        "--layers",
        "1",
        "--radius",
        "2",
        "--steps",
        "3",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    args
}

fn assert_fails(run: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "succeeded: {stderr}");
    assert!(stderr.contains(needle), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn fit_then_predict_and_refuse_mixed_or_wrong_inputs() {
    let dir = scratch("flow");
    let input = series(&dir);
    let out = dir.join("model");
    let fit = fit_args(&input, &out, &[]);
    let run = koopman(&fit);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for f in [
        "model.safetensors",
        "normalization.json",
        "predictions.csv",
        "eigenvalues.csv",
        "eigenvalues.svg",
        "run.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let states = dir.join("states.csv");
    std::fs::write(&states, "x,y\n-0.2,0.3\n0.1,0.25\n").unwrap();
    let predicted = dir.join("predicted.csv");
    let run = koopman(&["predict", s(&out), s(&states), "--out", s(&predicted)]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(&predicted).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.lines().skip(1).all(|l| l
        .split(',')
        .skip(1)
        .all(|v| v.parse::<f64>().unwrap().is_finite())));

    // States of another dimension.
    let wide = dir.join("wide.csv");
    std::fs::write(&wide, "1,2,3\n").unwrap();
    assert_fails(&koopman(&["predict", s(&out), s(&wide)]), "dimension 3");
    // A folder whose normalisation belongs to another run.
    let other = dir.join("other");
    let fit_other = fit_args(&input, &other, &["--seed", "5", "--lr", "0.01"]);
    assert!(koopman(&fit_other).status.success());
    std::fs::copy(
        other.join("model.safetensors"),
        out.join("model.safetensors"),
    )
    .unwrap();
    assert_fails(
        &koopman(&[
            "predict",
            s(&out),
            s(&states),
            "--out",
            s(&dir.join("p2.csv")),
        ]),
        "does not belong to the run",
    );
    assert!(!dir.join("p2.csv").exists());
    // Not a fit folder.
    assert_fails(
        &koopman(&["predict", s(&dir), s(&states)]),
        "not a `koopman fit` folder",
    );
    // A model above the memory limit: refused before anything is written.
    let big = dir.join("big");
    assert_fails(
        &koopman(&[
            "fit",
            s(&input),
            "--radius",
            "40",
            "--mem-limit",
            "0.01",
            "--out",
            s(&big),
        ]),
        "lower --radius or --layers, or set --mem-limit",
    );
    assert!(!big.exists(), "the refused fit created its folder");
    // A series with NaN.
    let nan = dir.join("nan.npy");
    write_npy(
        &nan,
        &[1, 2, 2],
        &NpyData::F64(vec![0.0, f64::NAN, 1.0, 2.0]),
    )
    .unwrap();
    assert_fails(
        &koopman(&["fit", s(&nan), "--out", s(&dir.join("nan_out"))]),
        "NaN",
    );
    std::fs::remove_dir_all(dir).unwrap();
}
