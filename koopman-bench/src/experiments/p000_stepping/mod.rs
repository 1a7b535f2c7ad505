//! Partitioned Koopman stepping of training (paper 000).
//!
//! | name | problem | claim |
//! |---|---|---|
//! | `stepping_de` | NN DE solver 1:10:10:2, Adam / Adagrad / Adadelta, `8 / (1000 + t)` | success, `T_eq / T`, prediction error below the straight line, speedup loop / jump |
//! | `stepping_mnist` | MNIST MLP 784:20:20:20:10, Adadelta, quasi-node `q = 157` | success, `T_eq / T` (S10 fractional, per epoch), speedup, recorder memory |
//! | `stepping_perceptron` | perceptron of S8 | steps to asymptotic performance: single weight vs node vs network |
//! | `stepping_wrapper` | DE solver and MNIST | the training wrapper reaches the plain optimizer's loss in less wall time |
//!
//! Every Koopman figure is printed beside the straight-line baseline (each weight continued
//! along its last step), and the pseudo-inverse cut-off is swept, the paper-style (MATLAB)
//! default beside the one chosen here.

pub mod de;
pub mod mnist;
pub mod perceptron;
pub mod torch_peer;
pub mod trials;
pub mod wrapper;

use koopman_train::stepping::metrics::{TIMING_RUNS, TIMING_SECONDS};

/// How the Koopman side is timed (the same in every stepping experiment).
fn timing_note() -> String {
    format!(
        "Timing: the optimizer's time is the sum of its own per-step (per-epoch) times, measured inside the training run; each Koopman phase (fit, step-wise loop, jumps, eigendecompositions) is run {TIMING_RUNS} times in the same process (phases over {TIMING_SECONDS} s in all stop after two or more runs) and its median is used in the speedups. The first fit is listed beside it: it pays one-time costs (cache misses on the recorded snapshots, fresh buffers), which the optimizer's warm per-step times do not contain."
    )
}

fn pct(x: f64) -> String {
    format!("{:.0}%", 100.0 * x)
}
