//! The experiment registry's contract, cheaply: unique names, `select` and `--list`, and one
//! experiment run at the smoke size through the public API on the CPU.

use candle_core::Device;
use indicatif::ProgressBar;
use koopman_bench::experiments::{registry, run_experiment, select};
use koopman_bench::report::{render_markdown, write_reports, Outcome, RunContext, SMOKE_NOTE};
use koopman_bench::Size;
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "koopman-bench-registry-{what}-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn names_are_unique_and_described() {
    let all = registry();
    assert!(all.len() >= 15, "{} experiments", all.len());
    let mut seen = HashSet::new();
    let mut papers = HashSet::new();
    for e in &all {
        assert!(
            seen.insert(e.name()),
            "duplicate experiment name {}",
            e.name()
        );
        assert!(
            !e.name().is_empty() && !e.name().contains(','),
            "{}",
            e.name()
        );
        assert!(!e.description().is_empty(), "{}", e.name());
        papers.insert(e.paper());
    }
    for p in koopman_bench::experiments::Paper::ALL {
        assert!(papers.contains(&p), "no experiment reproduces paper {p}");
    }
}

#[test]
fn select_keeps_registry_order_and_rejects_unknown_names() {
    let names: Vec<&str> = select(Some(" conjugacy, krylov ,"))
        .unwrap()
        .iter()
        .map(|e| e.name())
        .collect();
    assert_eq!(names, ["krylov", "conjugacy"]);
    assert_eq!(select(None).unwrap().len(), registry().len());
    let err = match select(Some("krylov,nope")) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("unknown experiment accepted"),
    };
    assert!(err.contains("unknown experiment 'nope'"), "{err}");
    for empty in ["", " , "] {
        match select(Some(empty)) {
            Err(e) => assert!(e.to_string().contains("names no experiment"), "{e}"),
            Ok(_) => panic!("--only '{empty}' accepted: it would run nothing and exit 0"),
        }
    }
    for e in registry() {
        assert!(
            err.contains(e.name()),
            "the error lists the known names: {err}"
        );
    }
}

#[test]
fn cli_lists_experiments_and_rejects_two_sizes() {
    let bin = env!("CARGO_BIN_EXE_koopman-bench");
    let out = Command::new(bin)
        .args(["reproduce", "--list"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), registry().len(), "{text}");
    for e in registry() {
        assert!(text.contains(e.name()), "{} missing from --list", e.name());
    }
    let out = Command::new(bin)
        .args(["reproduce", "--smoke", "--quick", "--list"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "--smoke with --quick accepted");
}

#[test]
fn missing_data_fails_only_a_smoke_run_that_requires_data() {
    let dir = temp_dir("missing");
    let mnist = select(Some("mnist")).unwrap().remove(0);
    let mut ctx = RunContext::new(Size::Smoke, Device::Cpu, dir.clone());
    ctx.data_dir = Some(dir.join("no-such-folder"));
    for (size, required, failed) in [
        (Size::Smoke, true, true),
        (Size::Smoke, false, false),
        (Size::Quick, true, false),
    ] {
        ctx.size = size;
        ctx.data_required = required;
        match run_experiment(mnist.as_ref(), &ctx, &ProgressBar::hidden()) {
            Outcome::Failed { error, .. } => assert!(failed && error.contains("data missing")),
            Outcome::Skipped { reason, .. } => assert!(!failed && reason.contains("not found")),
            Outcome::Ran(_) => panic!("ran without data"),
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn conjugacy_runs_at_smoke_size_on_the_cpu() {
    let dir = temp_dir("smoke");
    let ctx = RunContext::new(Size::Smoke, Device::Cpu, dir.clone());
    let exp = select(Some("conjugacy")).unwrap().remove(0);
    let outcome = run_experiment(exp.as_ref(), &ctx, &ProgressBar::hidden());
    let Outcome::Ran(report) = &outcome else {
        panic!("conjugacy did not run: {outcome:?}");
    };
    assert_eq!(report.name, "conjugacy");
    assert!(!report.comparisons.is_empty() && !report.tables.is_empty());
    assert!(report.comparisons.iter().all(|c| !c.measured.is_empty()));
    let outcomes = vec![outcome];
    assert!(render_markdown(&ctx, &outcomes).contains(SMOKE_NOTE));
    let (_, json) = write_reports(&ctx, &outcomes).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    assert_eq!(json["size"], "Smoke");
    assert_eq!(json["note"], SMOKE_NOTE);
    assert_eq!(json["outcomes"][0]["status"], "ran");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn out_folder_is_checked_before_the_run() {
    use koopman_bench::report::RunContext;
    use koopman_bench::Size;
    let base = std::env::temp_dir().join(format!("koopman-out-check-{}", std::process::id()));
    std::fs::create_dir_all(&base).unwrap();
    let file = base.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let ctx = RunContext::new(Size::Smoke, candle_core::Device::Cpu, file.clone());
    let err = ctx.check_out_dir().unwrap_err().to_string();
    assert!(
        err.contains("--out") && err.contains("a file of that name exists"),
        "{err}"
    );
    let below = RunContext::new(Size::Smoke, candle_core::Device::Cpu, file.join("sub"));
    assert!(below.check_out_dir().is_err(), "a folder below a file");
    let fresh = RunContext::new(
        Size::Smoke,
        candle_core::Device::Cpu,
        base.join("new/deeper"),
    );
    fresh.check_out_dir().unwrap();
    assert!(base.join("new/deeper").is_dir());
    assert_eq!(
        std::fs::read_dir(base.join("new/deeper")).unwrap().count(),
        0,
        "no probe left"
    );
    std::fs::remove_dir_all(&base).unwrap();
}
