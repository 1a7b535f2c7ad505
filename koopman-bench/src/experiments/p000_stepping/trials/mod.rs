//! Paper 000's problems, each with a trial that measures Koopman stepping (`koopman_train::stepping`)
//! against the optimizer and the straight-line baseline: the NN differential-equation solver
//! ([`de_solver`]), the MNIST classifier ([`classifier`]) and the perceptron ([`perceptron`]).
//!
//! They are the paper's experiments, not part of the method a user of koopman-train calls, so they
//! live here beside the experiments that run them (and `perf`, which times the DE solver).

pub mod classifier;
pub mod de_solver;
pub mod perceptron;
