//! Partitioned Koopman stepping (paper 000, SPEC section 4.1): record the weights of a candle
//! model over training steps `t1 ..= t2`, fit one finite-section operator per partition
//! (single weight, quasi-node, node, layer or network), evolve the weights by the operators
//! step by step or by a direct jump, and write them back into the model.
//!
//! - [`optim`]: Adagrad, Adadelta and the schedule `8 / (1000 + t)`;
//! - [`Recorder`], [`PartitionPlan`], [`fit()`] / [`KoopmanStepper`]: the method;
//! - [`evolution`]: the weights continued by the fitted operators (step by step, by a jump or by
//!   eigendecompositions), and the straight-line baseline; [`cast`]: the same in f32;
//! - [`metrics`]: `T_eq`, success, speedup, prediction errors;
//!
//! The paper's own problems (the NN DE solver, the MNIST classifier, the perceptron) and their
//! trials live with its experiments in `koopman-bench` (`experiments::p000_stepping::trials`).
//! - [`wrapper`]: a training loop that alternates optimizer steps and Koopman jumps.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use koopman_train::stepping::{fit, Evolution, FitConfig, PartitionPlan, PartitionSpec, Recorder};
//!
//! # fn main() -> koopman_train::Result<()> {
//! // Weights moving along a straight line, w(t) = (1 + 0.01 t, 2 - 0.02 t): the network operator
//! // (a Jordan block at 1) continues the line exactly.
//! let mut rec = Recorder::with_layout(vec![("w".into(), vec![2])])?;
//! for t in 0..10 {
//!     rec.push(t, &[1.0 + 0.01 * t as f64, 2.0 - 0.02 * t as f64])?;
//! }
//! let plan = PartitionPlan::build(rec.params(), &PartitionSpec::Network)?;
//! let k = fit(&rec, &plan, 0, 9, &FitConfig::default(), &Device::Cpu)?;
//! let w = k.evolve(&Tensor::new(rec.snapshot(9)?, &Device::Cpu)?, 10, Evolution::Step)?;
//! let w = w.to_vec1::<f64>()?;
//! assert!((w[0] - 1.19).abs() < 1e-9 && (w[1] - 1.62).abs() < 1e-9);
//! # Ok(()) }
//! ```

pub mod cast;
pub mod evolution;
pub mod fit;
pub mod metrics;
pub mod optim;
pub mod partition;
pub mod recorder;
pub mod wrapper;

pub use cast::CastStepper;
pub use evolution::{straight_line, to_host, Evolution, OperatorBatch};
pub use fit::{fit, FitConfig, FitSolver, KoopmanStepper};
pub use optim::{Adadelta, Adagrad, AnyOptimizer, LrSchedule, OptimizerKind};
pub use partition::{Partition, PartitionPlan, PartitionSpec};
pub use recorder::{named_vars, ParamInfo, Recorder};
