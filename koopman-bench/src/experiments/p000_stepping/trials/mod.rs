//! Paper 000's problems, each with a trial that measures Koopman stepping (`koopman_train::stepping`)
//! against the optimizer and the straight-line baseline: the NN differential-equation solver
//! ([`de_solver`]), the MNIST classifier ([`classifier`]) and the perceptron ([`perceptron`]).
//!
//! They are the paper's experiments, not part of the method a user of koopman-train calls, so they
//! live here beside the experiments that run them (and `perf`, which times the DE solver).

pub mod classifier;
pub mod de_solver;
pub mod perceptron;

/// What carries the weights past `t2` in a trial.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Operators {
    /// The Koopman operators fitted on the recorded window (the method).
    #[default]
    Fitted,
    /// The identity operator: the weights stay at `w(t2)`, so `T_eq = 0`. The broken input of
    /// the verdict tests ([`RunContext::broken_input`](crate::report::RunContext::broken_input)).
    Identity,
}

impl Operators {
    /// The trial's operators for a run: [`Operators::Identity`] on a broken-input run.
    pub fn for_run(ctx: &crate::report::RunContext) -> Self {
        if ctx.broken_input {
            Self::Identity
        } else {
            Self::Fitted
        }
    }

    /// `evolved` (the fitted operators' weights past `t2`), or `w2` for the identity operator.
    pub fn apply(self, evolved: Vec<f64>, w2: &[f64]) -> Vec<f64> {
        match self {
            Self::Fitted => evolved,
            Self::Identity => w2.to_vec(),
        }
    }
}
