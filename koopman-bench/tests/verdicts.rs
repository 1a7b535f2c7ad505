//! Verdicts that must fail for a model that has not learned: run at smoke size, the experiment's
//! own row for its untrained model must show the paper's criterion failing there.

use candle_core::Device;
use koopman_bench::experiments::{registry, run_experiment};
use koopman_bench::report::{Outcome, RunContext};
use koopman_bench::Size;

fn run(name: &str) -> koopman_bench::report::ExperimentReport {
    let out = std::env::temp_dir().join(format!("koopman-verdicts-{name}-{}", std::process::id()));
    let ctx = RunContext::new(Size::Smoke, Device::Cpu, out.clone());
    ctx.check_out_dir().unwrap();
    let exp = registry().into_iter().find(|e| e.name() == name).unwrap();
    let outcome = run_experiment(exp.as_ref(), &ctx, &indicatif::ProgressBar::hidden());
    std::fs::remove_dir_all(&out).ok();
    match outcome {
        Outcome::Ran(r) => r,
        other => panic!("{name} did not run: {other:?}"),
    }
}

// layered_measure judges the untrained layers (as initialised, before any step) by the same
// criterion as the trained ones: "on the unit circle" with our preconditions. They have not
// learned the flow, so the criterion must reject them (the row holds when it does).
#[test]
fn layered_measure_rejects_the_untrained_model() {
    let r = run("layered_measure");
    let row = r
        .comparisons
        .iter()
        .find(|c| c.quantity.contains("untrained"))
        .expect("a row for the untrained layers");
    assert_eq!(row.holds, Some(true), "{row:?}");
    assert!(row.measured.contains("does not fit"), "{row:?}");
}
