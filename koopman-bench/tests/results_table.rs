//! README's results table is the one the committed results give (no hand-typed figures), and
//! filing a run's results refuses what cannot be traced.

use koopman_bench::results::{results_table, store, with_table, TABLE_BEGIN, TABLE_END};
use std::path::Path;

#[test]
fn readme_table_is_generated_from_the_committed_results() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("../README.md")).unwrap();
    let table = results_table(&root.join("results")).unwrap();
    assert_eq!(
        with_table(&readme, &table).unwrap(),
        readme,
        "README's results table is not the generated one: run `cargo run -p koopman-bench -- results table`"
    );
}

#[test]
fn markers_are_required_and_the_table_replaces_what_is_between_them() {
    assert!(with_table("no markers", "t").is_err());
    let doc = format!("a\n{TABLE_BEGIN}\nold\n{TABLE_END}\nb\n");
    assert_eq!(
        with_table(&doc, "new\n").unwrap(),
        format!("a\n{TABLE_BEGIN}\nnew\n{TABLE_END}\nb\n")
    );
}

#[test]
fn smoke_runs_and_untraceable_runs_are_not_stored() {
    let dir = std::env::temp_dir().join(format!("koopman-results-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write_from = |size: &str, commit: &str, dirty: bool| {
        let path = dir.join(format!("report-{size}-{commit}-{dirty}.json"));
        let json = format!(
            r#"{{"device":"cpu","size":"{size}","seed":0,"provenance":{{"commit":"{commit}","dirty":{dirty},"date":"2026-12-05T00:00:00Z","machine":"m","threads":1}},"seconds":1.0,"files":[],"outcomes":[]}}"#
        );
        std::fs::write(&path, json).unwrap();
        path
    };
    let write = |size: &str, dirty: bool| write_from(size, "abc", dirty);
    let results = dir.join("results");
    let err = store(&write("Smoke", false), &results).unwrap_err();
    assert!(err.to_string().contains("smoke"), "{err}");
    let err = store(&write("Quick", true), &results).unwrap_err();
    assert!(err.to_string().contains("uncommitted"), "{err}");
    let err = store(&write_from("Quick", "unknown", false), &results).unwrap_err();
    assert!(err.to_string().contains("commit is unknown"), "{err}");
    assert!(store(&write("Quick", false), &results).unwrap().is_empty());
    let bad = dir.join("bad.json");
    std::fs::write(&bad, b"{").unwrap();
    assert!(store(&bad, &results).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_report_s_own_json_files_are_kept_and_stray_ones_refused() {
    use koopman_bench::provenance::Provenance;
    use koopman_bench::report::{ExperimentReport, Outcome, RunSummary};
    use koopman_bench::results::stored_results;
    let dir = std::env::temp_dir().join(format!("koopman-results-peer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A quick run of `krylov` that wrote a peer's JSON beside its report.
    std::fs::write(dir.join("krylov_peer.json"), br#"{"peer": true}"#).unwrap();
    let run = RunSummary {
        device: "cpu".into(),
        size: koopman_bench::Size::Quick,
        seed: 0,
        provenance: Provenance {
            commit: "abc".into(),
            dirty: false,
            date: "2026-12-05T00:00:00Z".into(),
            machine: "m".into(),
            threads: 1,
        },
        seconds: 1.0,
        note: None,
        files: vec!["krylov_peer.json".into()],
        outcomes: vec![Outcome::Ran(ExperimentReport {
            name: "krylov".into(),
            title: "t".into(),
            paper: "p".into(),
            comparisons: vec![],
            tables: vec![],
            notes: vec![],
            files: vec!["krylov_peer.json".into()],
            seconds: 1.0,
        })],
    };
    let run_json = dir.join("report.json");
    std::fs::write(&run_json, serde_json::to_vec(&run).unwrap()).unwrap();
    let results = dir.join("results");
    assert_eq!(store(&run_json, &results).unwrap().len(), 3);
    let stored = stored_results(&results).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].report.name, "krylov");
    // A JSON that is neither a report nor one of a report's files is an error.
    std::fs::write(results.join("quick/stray.json"), b"{}").unwrap();
    let err = stored_results(&results).unwrap_err().to_string();
    assert!(err.contains("stray.json"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
