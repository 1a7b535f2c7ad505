//! `koopman dmd` end to end: the binary on real files in a temporary folder, its outputs read
//! back, and bad inputs (one line on standard error, a non-zero exit, no output written).

mod common;

use common::{koopman, scratch};

use koopman_core::io::{write_npy, NpyData};
use std::path::Path;

/// A decaying rotation `x_{k+1} = 0.95 R(0.3) x_k` in two coordinates, 40 states, one per row.
fn rotation_states() -> Vec<f64> {
    let (r, a) = (0.95f64, 0.3f64);
    let mut x = [1.0, 0.5];
    let mut out = Vec::new();
    for _ in 0..40 {
        out.extend_from_slice(&x);
        x = [
            r * (a.cos() * x[0] - a.sin() * x[1]),
            r * (a.sin() * x[0] + a.cos() * x[1]),
        ];
    }
    out
}

fn eigenvalues(json: &Path) -> Vec<(f64, f64)> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    v["eigenvalues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| (z[0].as_f64().unwrap(), z[1].as_f64().unwrap()))
        .collect()
}

#[test]
fn dmd_recovers_a_known_spectrum_from_npy_and_csv() {
    let dir = scratch("ok");
    let states = rotation_states();
    let npy = dir.join("x.npy");
    write_npy(&npy, &[40, 2], &NpyData::F64(states.clone())).unwrap();
    let csv = dir.join("x.csv");
    let mut text = String::from("x,y\n");
    for s in states.chunks(2) {
        text.push_str(&format!("{},{}\n", s[0], s[1]));
    }
    std::fs::write(&csv, text).unwrap();
    for (input, method) in [
        (&npy, "exact"),
        (&npy, "rrr"),
        (&csv, "exact"),
        (&npy, "hankel"),
    ] {
        let out = dir.join(format!("out-{method}"));
        let mut args = vec![
            "dmd",
            input.to_str().unwrap(),
            "--method",
            method,
            "--out",
            out.to_str().unwrap(),
        ];
        if method == "hankel" {
            args.extend(["--delays", "2", "--rank", "2"]);
        }
        let run = koopman(&args);
        assert!(
            run.status.success(),
            "{method}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let z = eigenvalues(&out.join("dmd.json"));
        assert_eq!(z.len(), 2, "{method}: {z:?}");
        for (re, im) in z {
            assert!(
                (re.hypot(im) - 0.95).abs() < 1e-8,
                "{method}: |lambda| {}",
                re.hypot(im)
            );
            assert!((im.atan2(re).abs() - 0.3).abs() < 1e-8, "{method}: arg");
        }
        for f in [
            "eigenvalues.csv",
            "eigenvalues.svg",
            "modes_re.npy",
            "modes_im.npy",
        ] {
            assert!(out.join(f).is_file(), "{method}: {f} missing");
        }
        let svg = std::fs::read_to_string(out.join("eigenvalues.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("circle"));
        if method == "rrr" {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(out.join("dmd.json")).unwrap()).unwrap();
            assert!(v["residuals"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r.as_f64().unwrap() < 1e-8));
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_inputs_are_one_line_errors_and_write_nothing() {
    let dir = scratch("bad");
    let nan = dir.join("nan.npy");
    let mut states = rotation_states();
    states[7] = f64::NAN;
    write_npy(&nan, &[40, 2], &NpyData::F64(states)).unwrap();
    let cube = dir.join("cube.npy");
    write_npy(&cube, &[2, 2, 2], &NpyData::F64(vec![1.0; 8])).unwrap();
    let txt = dir.join("x.txt");
    std::fs::write(&txt, "1,2\n").unwrap();
    let garbage = dir.join("garbage.npy");
    std::fs::write(&garbage, b"not an array").unwrap();
    let good = dir.join("good.npy");
    write_npy(&good, &[40, 2], &NpyData::F64(rotation_states())).unwrap();
    let missing = dir.join("missing.npy");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![s(&missing)], "missing.npy"),
        (vec![s(&nan)], "NaN"),
        (vec![s(&cube)], "1-D or 2-D"),
        (vec![s(&txt)], ".npy or .csv"),
        (vec![s(&garbage)], "bad magic"),
        (vec![s(&good), "--rank".into(), "0".into()], "--rank"),
        (
            vec![
                s(&good),
                "--method".into(),
                "rrr".into(),
                "--rank".into(),
                "2".into(),
            ],
            "--rank",
        ),
        (
            vec![
                s(&good),
                "--method".into(),
                "kernel".into(),
                "--bandwidth=-1".into(),
            ],
            "bandwidth",
        ),
    ];
    for (k, (args, needle)) in cases.into_iter().enumerate() {
        let out = dir.join(format!("out{k}"));
        let mut all = vec!["dmd".to_string()];
        all.extend(args);
        all.extend(["--out".to_string(), s(&out)]);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let run = koopman(&refs);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "case {k} succeeded");
        assert!(stderr.contains(needle), "case {k}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "case {k}: {stderr}");
        assert!(!stderr.contains("panicked"), "case {k}: {stderr}");
        assert!(!out.join("dmd.json").exists(), "case {k}: output written");
    }
    // An unknown option is clap's usage error (exit 2).
    let run = koopman(&["dmd", &s(&good), "--metod", "rrr"]);
    assert_eq!(run.status.code(), Some(2));
    std::fs::remove_dir_all(dir).unwrap();
}
