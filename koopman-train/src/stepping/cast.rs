//! The evolution in another float dtype: the operators of a [`KoopmanStepper`] cast once, f32
//! for a GPU (where f64 is slow) or for large operators on the CPU (half the bytes per operator).
//!
//! What: the fit is always f64 (on the host: the SVD cut-off at `1e-9 s_max` needs it).
//! [`KoopmanStepper::cast`] casts the operators once; [`CastStepper::evolve`] then evolves by the
//! same host loops as the f64 [`evolution`](super::evolution) on the CPU, and by batched matmuls
//! in the cast dtype elsewhere.
//!
//! Accuracy: each f32 step adds a relative error of about `(d + 1) eps_f32`, at most linearly
//! over `s` steps for operators of spectral radius <= 1: the bound `(s + 1) (d + 1) eps_f32`
//! (7.2e-4 at `s = 1000`, `d = 5`), which the test `f32_evolution_against_f64` checks for the
//! step-wise loop and the jump by squaring (it prints the errors it measures, far below the
//! bound). On the DE solver trained in f32 (paper 000's DE-solver trial in koopman-bench), the test
//! `f32_trial_against_f64` there bounds the difference of the Koopman weights and loss from an
//! all-f64 trial.

use super::evolution::{evolve_groups, Evolution, HostBatch};
use super::fit::KoopmanStepper;
use crate::error::{Result, TrainError};
use candle_core::{DType, Tensor};
use koopman_core::kernels::dense::HostReal;

/// The operators of a [`KoopmanStepper`] cast once to another float dtype on their device
/// (made by [`KoopmanStepper::cast`]): evolving in f32 on a GPU, where f64 matmuls are slow, or
/// on the CPU, where f32 halves the memory traffic of large operators.
///
/// The fit stays in f64 (on the host); only the evolution runs in the cast dtype: by the host
/// loops on the CPU (f32 and f64), by batched matmuls as [`KoopmanStepper::evolve_batched`]
/// elsewhere ([`evolve_batched`](Self::evolve_batched) forces the latter).
///
/// Rounding `U` to f32 moves its eigenvalues by up to about `eps_f32` times the condition number
/// of its eigenvectors, so f32 suits well-conditioned operators only: on the MNIST MLP the
/// quasi-node operators of size 157 (fitted in f64 with the default cut-off) are far from
/// normal, and their f32 evolution over two epochs blew up where the f64 one did not, so the
/// classifier trials evolve in f64.
///
/// Each f32 step adds a relative error of about `(d + 1) eps_f32` (`eps_f32 = 1.2e-7`: `d eps`
/// from the `d`-term dot products, `eps / 2` from rounding `U` once), and for operators with
/// spectral radius <= 1 these add up at most linearly: `||w_f32 - w_f64|| / ||w_f64|| <= (s + 1)
/// (d + 1) eps_f32` after `s` steps, for the step-wise loop and the jump by squaring alike (the
/// tests check this bound).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use koopman_train::stepping::{fit, Evolution, FitConfig, PartitionPlan, PartitionSpec, Recorder};
///
/// # fn main() -> koopman_train::Result<()> {
/// let mut rec = Recorder::with_layout(vec![("w".into(), vec![2])])?;
/// for t in 0..10 {
///     let a = 0.99f64.powi(t);
///     rec.push(t as usize, &[a, -a])?;
/// }
/// let plan = PartitionPlan::build(rec.params(), &PartitionSpec::Network)?;
/// let k = fit(&rec, &plan, 0, 9, &FitConfig::default(), &Device::Cpu)?;
/// let k32 = k.cast(DType::F32)?; // cast once, evolve many times
/// let w = Tensor::new(rec.snapshot(9)?, &Device::Cpu)?;
/// let w32 = k32.evolve(&w, 100, Evolution::Jump)?;
/// assert_eq!(w32.dtype(), DType::F32);
/// let got = w32.to_dtype(DType::F64)?.to_vec1::<f64>()?;
/// assert!((got[0] - 0.99f64.powi(109)).abs() < 1e-5);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct CastStepper {
    n: usize,
    dtype: DType,
    groups: Vec<(Tensor, Tensor)>,
    host: CastHost,
}

/// Host copies of a [`CastStepper`]'s operators: on the CPU, f32 and f64 evolve by the host
/// loops (split over the cores) instead of batched tensor ops.
#[derive(Clone, Debug)]
enum CastHost {
    None,
    F32(Vec<HostBatch<f32>>),
    F64(Vec<HostBatch<f64>>),
}

impl HostBatch<f64> {
    /// The same operators rounded to `U`.
    pub(super) fn cast<U: HostReal>(&self) -> HostBatch<U> {
        HostBatch {
            size: self.size,
            index: self.index.clone(),
            operators: self.operators.iter().map(|&v| U::from_f64(v)).collect(),
        }
    }
}

/// `w(t2 + steps)` by the host loops over `batches` (`w` on the CPU in `T`'s dtype; an eigen jump
/// is done by squaring).
fn evolve_host_tensor<T: HostReal + candle_core::WithDType>(
    batches: &[HostBatch<T>],
    w: &Tensor,
    steps: u64,
    mode: Evolution,
) -> Result<Tensor> {
    let mode = if mode == Evolution::Eigen {
        Evolution::Jump
    } else {
        mode
    };
    let host = w.to_vec1::<T>()?;
    let mut out = vec![T::default(); host.len()];
    for b in batches {
        b.evolve_into(&host, &mut out, steps, mode)?;
    }
    Ok(Tensor::from_vec(out, host.len(), w.device())?)
}

impl KoopmanStepper {
    /// The operators cast once to `dtype` (a float type; f32 is the GPU path), on their device;
    /// see [`CastStepper`]. Errors: a non-float `dtype` ([`TrainError::InvalidArgument`]).
    pub fn cast(&self, dtype: DType) -> Result<CastStepper> {
        if !dtype.is_float() {
            return Err(TrainError::InvalidArgument(format!(
                "Koopman operators evolve in a float dtype, got {dtype:?}"
            )));
        }
        let groups = self
            .batches
            .iter()
            .map(|b| Ok((b.index.clone(), b.operators.to_dtype(dtype)?)))
            .collect::<Result<_>>()?;
        let on_host = self.batches.iter().all(|b| b.operators.device().is_cpu());
        let host = match dtype {
            DType::F32 if on_host => {
                CastHost::F32(self.batches.iter().map(|b| b.host.cast()).collect())
            }
            DType::F64 if on_host => {
                CastHost::F64(self.batches.iter().map(|b| b.host.clone()).collect())
            }
            _ => CastHost::None,
        };
        Ok(CastStepper {
            n: self.n,
            dtype,
            groups,
            host,
        })
    }
}

impl CastStepper {
    /// The dtype the operators were cast to.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of parameters evolved.
    pub fn num_params(&self) -> usize {
        self.n
    }

    /// `w(t2 + steps)` from `w` = `w(t2)` (shape `(n,)`, any float dtype, on the operators'
    /// device, converted to [`dtype`](Self::dtype)); returns a tensor of that dtype. Host loops
    /// on the CPU for f32 / f64, batched matmuls otherwise ([`Evolution::Eigen`] jumps by
    /// squaring).
    pub fn evolve(&self, w: &Tensor, steps: u64, mode: Evolution) -> Result<Tensor> {
        let w = self.checked_state(w)?;
        match &self.host {
            CastHost::F32(b) if w.device().is_cpu() => evolve_host_tensor(b, &w, steps, mode),
            CastHost::F64(b) if w.device().is_cpu() => evolve_host_tensor(b, &w, steps, mode),
            _ => self.evolve_batched(&w, steps, mode),
        }
    }

    /// [`evolve`](Self::evolve) by batched matmuls on the operators' device, also on the CPU.
    pub fn evolve_batched(&self, w: &Tensor, steps: u64, mode: Evolution) -> Result<Tensor> {
        let w = self.checked_state(w)?;
        let groups = self.groups.iter().map(|(i, u)| (i, u));
        evolve_groups(&w, groups, steps, mode)
    }

    /// `w` converted to the dtype, after checking its shape.
    fn checked_state(&self, w: &Tensor) -> Result<Tensor> {
        if w.dims() != [self.n] {
            return Err(TrainError::ShapeMismatch(format!(
                "state of shape {:?}, expected [{}]",
                w.dims(),
                self.n
            )));
        }
        Ok(w.to_dtype(self.dtype)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stepping::{
        fit, to_host, FitConfig, Partition, PartitionPlan, PartitionSpec, Recorder,
    };
    use candle_core::Device;

    /// The f32 evolution against the f64 one for the same fitted operators: 4 node operators of
    /// size d = 5, each `Q diag(0.999 R(0.05), 0.99 R(0.3), 1) Q^T` (`Q` a reflection, so the
    /// operators are normal with spectral radius 1), s = 1000 steps, step-wise and by squaring.
    /// Bound: `(s + 1) (d + 1) eps_f32 = 7.2e-4` (see [`CastStepper`]); it is loose (rounding
    /// errors mostly cancel; the test prints the relative 2-norm errors), but an evolution in
    /// f16/bf16 or with a wrong operator misses it.
    fn body_f32_evolution_against_f64(dev: &Device) -> Result<()> {
        let d = 5;
        let block = |r: f64, th: f64| [[r * th.cos(), -r * th.sin()], [r * th.sin(), r * th.cos()]];
        let (b1, b2) = (block(0.999, 0.05), block(0.99, 0.3));
        let mut core = [[0.0; 5]; 5];
        for i in 0..2 {
            for j in 0..2 {
                core[i][j] = b1[i][j];
                core[2 + i][2 + j] = b2[i][j];
            }
        }
        core[4][4] = 1.0;
        // Householder reflection Q = I - 2 v v^T / v^T v
        let v = [1.0, -0.5, 0.25, 0.8, -0.3];
        let vv: f64 = v.iter().map(|x| x * x).sum();
        let q = |i: usize, j: usize| f64::from(u8::from(i == j)) - 2.0 * v[i] * v[j] / vv;
        let a: [[f64; 5]; 5] = std::array::from_fn(|i| {
            std::array::from_fn(|j| {
                (0..d)
                    .flat_map(|k| (0..d).map(move |l| (k, l)))
                    .map(|(k, l)| q(i, k) * core[k][l] * q(l, j))
                    .sum()
            })
        });
        // layout: 0.bias (4) then 0.weight (4 x 4); node g = (weight row g, bias g)
        let mut rec = Recorder::with_layout(vec![
            ("0.bias".into(), vec![4]),
            ("0.weight".into(), vec![4, 4]),
        ])?;
        let mut nodes: Vec<Vec<f64>> = (0..4)
            .map(|g| {
                (0..d)
                    .map(|i| ((g * 5 + i) as f64 * 0.7).sin() + 0.1)
                    .collect()
            })
            .collect();
        for t in 0..40 {
            let mut flat = vec![0.0; 20];
            for (g, n) in nodes.iter().enumerate() {
                flat[g] = n[4];
                flat[4 + 4 * g..8 + 4 * g].copy_from_slice(&n[..4]);
            }
            rec.push(t, &flat)?;
            for n in nodes.iter_mut() {
                let old = n.clone();
                for i in 0..d {
                    n[i] = (0..d).map(|j| a[i][j] * old[j]).sum();
                }
            }
        }
        let plan = PartitionPlan::build(rec.params(), &PartitionSpec::uniform(Partition::Node))?;
        assert_eq!(plan.size_counts(), vec![(5, 4)]);
        let k = fit(&rec, &plan, 0, 39, &FitConfig::default(), dev)?;
        let k32 = k.cast(DType::F32)?;
        assert_eq!(k32.dtype(), DType::F32);
        assert!(matches!(
            k.cast(DType::U32),
            Err(TrainError::InvalidArgument(_))
        ));
        let w = Tensor::new(rec.snapshot(39)?, dev)?;
        assert!(matches!(
            k32.evolve(&w.narrow(0, 0, 3)?, 1, Evolution::Step),
            Err(TrainError::ShapeMismatch(_))
        ));
        let steps = 1000u64;
        let eps32 = f64::from(f32::EPSILON);
        let bound = (steps + 1) as f64 * (d + 1) as f64 * eps32;
        for (mode, batched) in [Evolution::Step, Evolution::Jump]
            .into_iter()
            .flat_map(|m| [(m, false), (m, true)])
        {
            let w64 = to_host(&k.evolve_batched(&w, steps, mode)?)?;
            let got = if batched {
                k32.evolve_batched(&w, steps, mode)?
            } else {
                k32.evolve(&w, steps, mode)?
            };
            assert_eq!(got.dtype(), DType::F32);
            assert!(got.device().same_device(dev));
            let w32 = to_host(&got)?;
            let norm = |x: &[f64]| x.iter().map(|v| v * v).sum::<f64>().sqrt();
            let diff: Vec<f64> = w32.iter().zip(&w64).map(|(a, b)| a - b).collect();
            let rel = norm(&diff) / norm(&w64);
            eprintln!("f32 (batched: {batched}) vs f64 evolve_batched, {mode:?}, s = {steps}, d = {d}: relative error {rel:.2e} (bound {bound:.2e})");
            assert!(rel < bound, "{mode:?}: {rel:e} >= {bound:e}");
            // and the f32 result is no better than f32 resolution allows: it did compute in f32
            assert!(rel > 0.1 * eps32, "{mode:?}: {rel:e}");
        }
        Ok(())
    }
    koopman_core::test_device!(
        body_f32_evolution_against_f64,
        f32_evolution_against_f64_cpu,
        f32_evolution_against_f64_cuda
    );
}
