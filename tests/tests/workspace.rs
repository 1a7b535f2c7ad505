//! Cross-crate scenarios: the bench crate's generators and reports over koopman-core numerics.

use candle_core::Device;
use koopman_bench::experiments;
use koopman_bench::perf::{format_device_comparison, format_table, run_perf, PerfConfig};
use koopman_bench::report::{
    render_markdown, write_reports, Comparison, ExperimentReport, Outcome, RunContext,
};
use koopman_bench::Size;

#[test]
fn perf_run_measures_expv_against_dense() {
    let config = PerfConfig {
        radii: vec![1, 2],
        max_dense: 200,
        tol: 1e-10,
        matvec_repeats: 2,
        ..Default::default()
    };
    let mut ticks = 0;
    let report = run_perf(&config, &Device::Cpu, |_| ticks += 1).unwrap();
    assert_eq!(ticks, 2);
    assert_eq!(report.expv_vs_dense.len(), 2);
    for e in &report.expv_vs_dense {
        let err = e.error_vs_dense.expect("dense path ran below max_dense");
        assert!(err <= 10.0 * config.tol, "|N| = {}: error {err:e}", e.n);
        assert!(e.matvecs > 0 && e.expv_seconds > 0.0);
        // the Taylor action beside it, same tolerance, on its fused kernel and its dense path
        assert!(
            e.taylor_vs_expv <= 10.0 * config.tol,
            "|N| = {}: Taylor {:e}",
            e.n,
            e.taylor_vs_expv
        );
        assert_eq!(e.taylor_path, koopman_core::TaylorPath::Fused);
        assert!(e.taylor_matvecs > 0 && e.taylor_seconds > 0.0);
        assert!(e.taylor_dense_seconds.is_some());
    }
    assert_eq!(report.expv_vs_dense[0].n, 26);
    assert_eq!(report.expv_vs_dense[1].n, 124);
    assert!(format_table(&report).contains("124"));
    assert!(format_table(&report).contains("Taylor action"));
    // the CPU-vs-device table (on a GPU run the reference is the CPU; here both are the CPU)
    let mut with_reference = report.clone();
    with_reference.cpu_reference = Some(report.expv_vs_dense.clone());
    assert!(format_table(&with_reference).contains("CPU vs cpu"));
    let table = format_device_comparison(&report, &report.expv_vs_dense);
    assert_eq!(table.lines().count(), 4, "{table}");
    // expv, Taylor and matvec ratios per size
    assert_eq!(table.matches(" 1.0x").count(), 6, "{table}");
}

#[test]
fn experiment_selection_and_reports() {
    assert!(experiments::select(Some("krylov")).unwrap().len() == 1);
    let err = match experiments::select(Some("nope")) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("unknown experiment accepted"),
    };
    assert!(err.contains("unknown experiment 'nope'") && err.contains("krylov"));
    let dir = std::env::temp_dir().join(format!("koopman-tests-report-{}", std::process::id()));
    let ctx = RunContext::new(Size::Quick, Device::Cpu, dir.clone());
    let outcomes = vec![
        Outcome::Ran(ExperimentReport {
            name: "demo".into(),
            title: "demo".into(),
            paper: "none".into(),
            comparisons: vec![Comparison {
                quantity: "q".into(),
                paper: "1".into(),
                measured: "2".into(),
                holds: Some(false),
            }],
            tables: vec![],
            notes: vec![],
            files: vec![],
            seconds: 0.1,
        }),
        Outcome::Skipped {
            name: "mnist".into(),
            reason: "no data".into(),
        },
    ];
    let md = render_markdown(&ctx, &outcomes);
    assert!(md.contains("| q | 1 | 2 | no |") && md.contains("mnist — skipped"));
    let (md_path, json_path) = write_reports(&ctx, &outcomes).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(json_path).unwrap()).unwrap();
    assert_eq!(json["outcomes"][1]["status"], "skipped");
    assert!(std::fs::read_to_string(md_path)
        .unwrap()
        .starts_with("# koopman-bench"));
    std::fs::remove_dir_all(dir).unwrap();
}
