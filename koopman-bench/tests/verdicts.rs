//! Every experiment's verdicts can fail: run at smoke size on its deliberately broken input
//! ([`Experiment::broken_input`]: an untrained model, the identity operator, random spectra,
//! shuffled targets, ...), the rows of the paper's claims must not hold. No timing is asserted:
//! each broken input fails its criterion through the measured quantity (`T_eq = 0`, an accuracy
//! at chance, a distance), not through a clock.

use candle_core::Device;
use koopman_bench::experiments::{registry, run_experiment, Experiment};
use koopman_bench::report::{Comparison, ExperimentReport, Outcome, RunContext};
use koopman_bench::Size;

fn experiment(name: &str) -> Box<dyn Experiment> {
    registry()
        .into_iter()
        .find(|e| e.name() == name)
        .unwrap_or_else(|| panic!("no experiment {name}"))
}

fn run(name: &str, broken_input: bool) -> ExperimentReport {
    let out = std::env::temp_dir().join(format!(
        "koopman-verdicts-{name}-{broken_input}-{}",
        std::process::id()
    ));
    let mut ctx = RunContext::new(Size::Smoke, Device::Cpu, out.clone());
    ctx.broken_input = broken_input;
    ctx.check_out_dir().unwrap();
    let outcome = run_experiment(
        experiment(name).as_ref(),
        &ctx,
        &indicatif::ProgressBar::hidden(),
    );
    std::fs::remove_dir_all(&out).ok();
    match outcome {
        Outcome::Ran(r) => r,
        other => panic!("{name} did not run: {other:?}"),
    }
}

/// The rows whose quantity contains `what` (at least one).
fn rows<'a>(r: &'a ExperimentReport, what: &str) -> Vec<&'a Comparison> {
    let found: Vec<&Comparison> = r
        .comparisons
        .iter()
        .filter(|c| c.quantity.contains(what))
        .collect();
    assert!(
        !found.is_empty(),
        "{}: no row contains {what:?}; rows: {:#?}",
        r.name,
        r.comparisons
    );
    found
}

/// Runs `name` on its broken input and checks that every row of each of `claims` fails, and
/// that the report says which input it ran on.
fn fails_on_broken_input(name: &str, claims: &[&str]) -> ExperimentReport {
    let r = run(name, true);
    let said = experiment(name).broken_input();
    assert!(
        r.notes.iter().any(|n| n.contains(said)),
        "{name}: the report does not name its broken input"
    );
    for claim in claims {
        // Rows of a claim not judged at this size ("not run at this size") carry no verdict.
        let judged: Vec<&Comparison> = rows(&r, claim)
            .into_iter()
            .filter(|row| row.holds.is_some())
            .collect();
        assert!(!judged.is_empty(), "{name}: no verdict on {claim:?}");
        for row in judged {
            assert_eq!(
                row.holds,
                Some(false),
                "{name} on its broken input ({said}): {row:#?}"
            );
        }
    }
    r
}

#[test]
fn krylov_fails_for_a_wrong_action() {
    fails_on_broken_input(
        "krylov",
        &["worst achieved error", "error estimate >= 0.1 x true error"],
    );
}

#[test]
fn conjugacy_fails_for_random_spectra() {
    fails_on_broken_input(
        "conjugacy",
        &[
            "linear invertible",
            "nonlinear invertible",
            "shifted",
            "semi-conjugate",
            "control distance / worst conjugate distance",
            "linear oracle (global conjugacy)",
        ],
    );
}

#[test]
fn yinyang_fails_for_an_untrained_mlp() {
    let r = fails_on_broken_input("yinyang", &["original MLP", "iterated Hankel DMD"]);
    // An untrained 3-class MLP is near chance.
    assert!(rows(&r, "original MLP")[0]
        .measured
        .starts_with(char::is_numeric));
}

#[test]
fn mnist_replacement_fails_for_an_untrained_mlp() {
    fails_on_broken_input("mnist", &["iterated Hankel DMD"]);
}

#[test]
fn layered_vdp_fails_for_untrained_models() {
    fails_on_broken_input("layered_vdp", &["J = 2 vs J = 1", "norm reg. 1e-5 vs none"]);
}

#[test]
fn layered_measure_fails_for_untrained_layers() {
    fails_on_broken_input("layered_measure", &["trained layers: mean"]);
}

// On the ordinary run, layered_measure also judges the untrained layers (as initialised, before
// any step) beside the trained ones, by the same criterion: the row holds when the criterion
// rejects them.
#[test]
fn layered_measure_rejects_the_untrained_model_beside_the_trained_one() {
    let r = run("layered_measure", false);
    let row = rows(&r, "untrained")[0];
    assert_eq!(row.holds, Some(true), "{row:?}");
    assert!(row.measured.contains("does not fit"), "{row:?}");
}

#[test]
fn layered_damped_fails_for_untrained_layers() {
    fails_on_broken_input(
        "layered_damped",
        &[
            "share of eigenvalues strictly inside",
            "the same shares fall along the layers",
        ],
    );
}

#[test]
fn train_spectrum_fails_for_random_weights() {
    fails_on_broken_input(
        "train_spectrum",
        &["important weight eigenvalues", "monitor"],
    );
}

#[test]
fn train_init_fails_for_random_weights() {
    fails_on_broken_input("train_init", &["spectrum rule after"]);
}

#[test]
fn train_pruning_cnn_fails_when_every_weight_is_pruned() {
    let r = fails_on_broken_input("train_pruning_cnn", &["pruned at epoch"]);
    assert!(rows(&r, "pruned at epoch")
        .iter()
        .all(|row| row.measured.starts_with("100.0% zeros")));
}

#[test]
fn train_pruning_fails_when_every_weight_is_pruned() {
    let r = fails_on_broken_input("train_pruning", &["pruned at epoch"]);
    assert!(rows(&r, "pruned at epoch")
        .iter()
        .all(|row| row.measured.starts_with("100.0% zeros")));
}

#[test]
fn depth_table_fails_for_white_noise() {
    fails_on_broken_input(
        "depth_table",
        &[
            "layers for x + sin",
            "Gaussian width",
            "HSVR with the FFT layers",
        ],
    );
}

#[test]
fn sobolev_noise_fails_for_shuffled_loss_1_targets() {
    fails_on_broken_input("sobolev_noise", &["noise 0.05", "noise 0.5", "noise 1"]);
}

#[test]
fn stepping_de_fails_for_the_identity_operator() {
    let r = fails_on_broken_input(
        "stepping_de",
        &["success, T_eq > 0", "median T_eq/T", "median speedup"],
    );
    // The candle rows (judged): the PyTorch peer's row has no verdict and is
    // "not run" where PyTorch is missing.
    let judged = rows(&r, "median speedup, T_eq optimizer steps");
    assert_eq!(judged.len(), 3);
    assert!(judged.iter().all(|row| row.measured.starts_with("0x")));
}

#[test]
fn stepping_mnist_fails_for_the_identity_operator() {
    fails_on_broken_input("stepping_mnist", &["success, T_eq > 0", "median T_eq/T"]);
}

#[test]
fn stepping_perceptron_fails_for_the_identity_operator() {
    fails_on_broken_input(
        "stepping_perceptron",
        &[
            "every Koopman variant",
            "single-weight operators get there first",
        ],
    );
}

#[test]
fn stepping_perceptron_scaled_fails_for_the_identity_operator() {
    fails_on_broken_input(
        "stepping_perceptron_scaled",
        &[
            "node and network lead the rule by less",
            "single-weight lead comparable",
            "every method leads the rule",
        ],
    );
}

#[test]
fn stepping_wrapper_fails_when_it_never_jumps() {
    fails_on_broken_input(
        "stepping_wrapper",
        &["DE solver: wall time", "MNIST MLP: wall time"],
    );
}

#[test]
fn every_experiment_has_a_broken_input_test() {
    let src: String = include_str!("verdicts.rs")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    for e in registry() {
        assert!(
            src.contains(&format!("fails_on_broken_input(\"{}\"", e.name())),
            "{} has no broken-input test here",
            e.name()
        );
    }
}
