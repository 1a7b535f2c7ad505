//! Partitioned Koopman stepping of training (paper 000).
//!
//! | name | problem | claim |
//! |---|---|---|
//! | `stepping_de` | NN DE solver 1:10:10:2, Adam / Adagrad / Adadelta, `8 / (1000 + t)` | success, `T_eq / T`, prediction error below the straight line, speedup loop / jump |
//! | `stepping_mnist` | MNIST MLP 784:20:20:20:10, Adadelta, quasi-node `q = 157` | success, `T_eq / T` (S10 fractional, per epoch), speedup, recorder memory |
//! | `stepping_perceptron` | perceptron of S8 | steps to asymptotic performance: single weight vs node vs network |
//! | `stepping_perceptron_scaled` | perceptron of S8.3, 8 to 32 inputs, independent or grouped | weaker node / network leads with independent inputs, comparable single weight, recovered with grouped inputs |
//! | `stepping_wrapper` | DE solver and MNIST | the training wrapper reaches the plain optimizer's loss in less wall time |
//!
//! Every Koopman figure is printed beside the straight-line baseline (each weight continued
//! along its last step), and the pseudo-inverse cut-off is swept, the paper-style (MATLAB)
//! default beside the one chosen here.

pub mod de;
pub mod mnist;
pub mod perceptron;
pub mod perceptron_scaled;
pub mod torch_peer;
pub mod trials;
pub mod wrapper;

use crate::plot::{lines_svg, Axes};
use crate::report::RunContext;
use crate::Result;
use koopman_train::stepping::metrics::{TIMING_RUNS, TIMING_SECONDS};
use trials::WeightPaths;

/// The figure of the two weights that moved most between `t2` and `t2 + T` (Figures 2d and 3b
/// of paper 000): each one's change from `w(t2)` under the optimizer (`name`), Koopman stepping
/// and the straight line, over the x axis `steps`. Returns the file's name.
fn weights_figure(
    ctx: &RunContext,
    file: &str,
    title: &str,
    name: &str,
    p: &WeightPaths,
    steps: Axes,
) -> Result<String> {
    let (start, end) = (&p.optimizer[0], &p.optimizer[p.optimizer.len() - 1]);
    let mut order: Vec<usize> = (0..start.len()).collect();
    order.sort_by(|&a, &b| {
        (end[b] - start[b])
            .abs()
            .total_cmp(&(end[a] - start[a]).abs())
    });
    let change = |path: &[Vec<f64>], i: usize| -> Vec<f64> {
        path.iter().map(|w| w[i] - start[i]).collect()
    };
    let mut series = Vec::new();
    for &i in order.iter().take(2) {
        series.push((format!("weight {i}: {name}"), change(&p.optimizer, i)));
        series.push((format!("weight {i}: Koopman"), change(&p.koopman, i)));
        series.push((format!("weight {i}: straight line"), change(&p.line, i)));
    }
    let refs: Vec<(&str, &[f64])> = series
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    ctx.write_file(
        file,
        &lines_svg(
            title,
            &Axes {
                y_label: "w(t) - w(t2)".into(),
                ..steps
            },
            &refs,
            &[],
        ),
    )
}

/// How the Koopman side is timed (the same in every stepping experiment).
fn timing_note() -> String {
    format!(
        "Timing: the optimizer's time is the sum of its own per-step (per-epoch) times, measured inside the training run; each Koopman phase (fit, step-wise loop, jumps, eigendecompositions) is run {TIMING_RUNS} times in the same process (phases over {TIMING_SECONDS} s in all stop after two or more runs) and its median is used in the speedups. The first fit is listed beside it: it pays one-time costs (cache misses on the recorded snapshots, fresh buffers), which the optimizer's warm per-step times do not contain."
    )
}

fn pct(x: f64) -> String {
    format!("{:.0}%", 100.0 * x)
}
