//! The batched partitioned fit `U_g = F'_g F_g^+` and the evolution `w(t2 + s) = U^s w(t2)`.
//!
//! [`fit`] takes the snapshots `t1 ..= t2` of a [`Recorder`], builds `F_g` (`d x (t2 - t1)`) and
//! `F'_g` (shifted by one step) for every group of a [`PartitionPlan`], and fits all operators of
//! equal size `d` in one call of koopman-core's batched finite section (SVD-regularised: finite
//! for any data). The operators are kept per size as one `(count, d, d)` tensor on the caller's
//! device, so evolving them is one batched matmul per step ([`Evolution::Step`], the paper's
//! loop) or `O(log s)` batched matmuls for a direct jump ([`Evolution::Jump`], powers by
//! squaring applied to the state).
//!
//! The pseudo-inverse cut-off decides whether the stepping works at all: with a MATLAB-style
//! cut-off (`max(size) * eps * s_max`, [`FitConfig::paper_style`]) an operator keeps round-off
//! directions of `F`, which can carry eigenvalues slightly outside the unit circle that blow up
//! over thousands of steps. [`FitConfig::rcond`] sets the cut-off relative to `s_max`, and
//! [`FitConfig::project_unit_disk`] optionally moves eigenvalues of modulus > 1 onto the unit
//! circle.
//!
//! [`straight_line`] is the baseline every Koopman prediction is compared with: each weight
//! continued along its last step.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use koopman_train::stepping::{fit, Evolution, FitConfig, Partition, PartitionPlan, PartitionSpec, Recorder};
//!
//! # fn main() -> koopman_train::Result<()> {
//! // Two decaying weights w(t) = 0.99^t (1, 2): exactly linear dynamics.
//! let mut rec = Recorder::with_layout(vec![("0.weight".into(), vec![1, 2])])?;
//! for t in 0..20 {
//!     let a = 0.99f64.powi(t as i32);
//!     rec.push(t, &[a, 2.0 * a])?;
//! }
//! let plan = PartitionPlan::build(rec.params(), &PartitionSpec::uniform(Partition::SingleWeight))?;
//! let k = fit(&rec, &plan, 0, 19, &FitConfig::default(), &Device::Cpu)?;
//! let w19 = Tensor::new(rec.snapshot(19)?, &Device::Cpu)?;
//! let w119 = k.evolve(&w19, 100, Evolution::Jump)?.to_vec1::<f64>()?;
//! assert!((w119[1] - 2.0 * 0.99f64.powi(119)).abs() < 1e-10);
//! # Ok(()) }
//! ```

use super::partition::PartitionPlan;
use super::recorder::Recorder;
use crate::error::{Result, TrainError};
use candle_core::{DType, Device, Tensor};
use faer::Mat;
use koopman_core::c64;
use koopman_core::dmd::{finite_section_batched, FiniteSectionConfig};
use koopman_core::linalg::{self, SolveOptions};

/// Settings of the partitioned fit.
#[derive(Clone, Debug, PartialEq)]
pub struct FitConfig {
    /// Pseudo-inverse cut-off relative to the largest singular value of `F`: singular values
    /// `<= rcond * s_max` are dropped. `None` is the MATLAB-style `max(size) * eps`.
    pub rcond: Option<f64>,
    /// Tikhonov term added to the kept squared singular values (0 = plain pseudo-inverse).
    pub ridge: f64,
    /// Move eigenvalues of modulus > 1 onto the unit circle after the fit.
    pub project_unit_disk: bool,
}

impl Default for FitConfig {
    /// The default chosen by the `stepping_de` experiment: cut-off `1e-9 * s_max`, no
    /// projection.
    fn default() -> Self {
        Self {
            rcond: Some(1e-9),
            ridge: 0.0,
            project_unit_disk: false,
        }
    }
}

impl FitConfig {
    /// The paper's setting (MATLAB `pinv`): cut-off `max(size) * eps * s_max`, no projection.
    pub fn paper_style() -> Self {
        Self {
            rcond: None,
            ridge: 0.0,
            project_unit_disk: false,
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        self.solve_options().validate()?;
        Ok(())
    }

    fn solve_options(&self) -> SolveOptions {
        SolveOptions {
            rcond: self.rcond,
            ridge: self.ridge,
        }
    }
}

/// Step-by-step evolution (the paper) or a direct jump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evolution {
    /// `s` batched matrix-vector products.
    Step,
    /// Powers by squaring applied to the state: `O(log s)` batched matmuls.
    Jump,
}

/// The operators of equal size `d`.
#[derive(Clone, Debug)]
pub struct OperatorBatch {
    /// Operator size.
    pub size: usize,
    /// Number of operators.
    pub count: usize,
    /// Flat parameter indices, `count * size` (u32), group by group.
    pub index: Tensor,
    /// The operators, `(count, size, size)` f64.
    pub operators: Tensor,
}

/// Fitted partitioned Koopman operators; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct KoopmanStepper {
    n: usize,
    batches: Vec<OperatorBatch>,
    projected: usize,
}

/// `U = U + Re(sum_k (l'_k - l_k) v_k w_k^T)` over the eigenvalues with `|l_k| > 1`, `l'_k =
/// l_k / |l_k|` and `W = V^{-1}` (least-squares inverse). Returns the number of eigenvalues moved.
fn project_unit_disk(u: &mut Mat<f64>) -> Result<usize> {
    let (vals, vecs) = linalg::eig(u.as_ref())?;
    let outside: Vec<usize> = (0..vals.len()).filter(|&k| vals[k].norm() > 1.0).collect();
    if outside.is_empty() {
        return Ok(0);
    }
    let d = u.nrows();
    let eye = Mat::<c64>::identity(d, d);
    let (w, _) = linalg::lstsq(vecs.as_ref(), eye.as_ref(), &SolveOptions::default())?;
    for &k in &outside {
        let shift = vals[k] / vals[k].norm() - vals[k];
        for i in 0..d {
            for j in 0..d {
                u[(i, j)] += (shift * vecs[(i, k)] * w[(k, j)]).re;
            }
        }
    }
    Ok(outside.len())
}

/// Fits the operators of `plan` on the snapshots `t1 ..= t2` of `recorder`; see the
/// [module docs](self).
///
/// Errors: `t1 >= t2` ([`TrainError::InvalidArgument`]), steps not recorded or fewer snapshot
/// pairs than the largest group size ([`TrainError::NotEnoughData`]), a plan for another model
/// ([`TrainError::ShapeMismatch`]).
pub fn fit(
    recorder: &Recorder,
    plan: &PartitionPlan,
    t1: usize,
    t2: usize,
    config: &FitConfig,
    device: &Device,
) -> Result<KoopmanStepper> {
    config.validate()?;
    if t1 >= t2 {
        return Err(TrainError::InvalidArgument(format!(
            "t1 = {t1} must be below t2 = {t2}"
        )));
    }
    if plan.num_params() != recorder.num_params() {
        return Err(TrainError::ShapeMismatch(format!(
            "the partition covers {} parameters, the recorder holds {}",
            plan.num_params(),
            recorder.num_params()
        )));
    }
    let m = t2 - t1;
    if plan.max_size() > m {
        return Err(TrainError::NotEnoughData(format!(
            "a partition of size {} needs at least {} snapshot pairs, t1..t2 = {t1}..{t2} gives {m}",
            plan.max_size(),
            plan.max_size()
        )));
    }
    let snaps: Vec<&[f64]> = (t1..=t2)
        .map(|t| recorder.snapshot(t))
        .collect::<Result<_>>()?;
    let solve = FiniteSectionConfig {
        solve: config.solve_options(),
    };
    let mut batches = Vec::new();
    let mut projected = 0;
    for (size, _) in plan.size_counts() {
        let groups: Vec<&Vec<usize>> = plan.groups().iter().filter(|g| g.len() == size).collect();
        let xs: Vec<Mat<f64>> = groups
            .iter()
            .map(|g| Mat::from_fn(size, m, |i, j| snaps[j][g[i]]))
            .collect();
        let ys: Vec<Mat<f64>> = groups
            .iter()
            .map(|g| Mat::from_fn(size, m, |i, j| snaps[j + 1][g[i]]))
            .collect();
        let xr: Vec<_> = xs.iter().map(|a| a.as_ref()).collect();
        let yr: Vec<_> = ys.iter().map(|a| a.as_ref()).collect();
        let mut us = finite_section_batched(&xr, &yr, &solve)?;
        if config.project_unit_disk {
            for u in us.iter_mut() {
                projected += project_unit_disk(u)?;
            }
        }
        let mut data = Vec::with_capacity(groups.len() * size * size);
        for u in &us {
            for i in 0..size {
                for j in 0..size {
                    data.push(u[(i, j)]);
                }
            }
        }
        if data.iter().any(|v| !v.is_finite()) {
            return Err(TrainError::NonFinite(format!(
                "fitted operators of size {size}"
            )));
        }
        let index: Vec<u32> = groups
            .iter()
            .flat_map(|g| g.iter().map(|&i| i as u32))
            .collect();
        batches.push(OperatorBatch {
            size,
            count: groups.len(),
            index: Tensor::from_vec(index, groups.len() * size, device)?,
            operators: Tensor::from_vec(data, (groups.len(), size, size), device)?,
        });
    }
    Ok(KoopmanStepper {
        n: recorder.num_params(),
        batches,
        projected,
    })
}

impl KoopmanStepper {
    /// The operators, one batch per size.
    pub fn batches(&self) -> &[OperatorBatch] {
        &self.batches
    }

    /// Number of parameters evolved.
    pub fn num_params(&self) -> usize {
        self.n
    }

    /// Number of eigenvalues moved onto the unit circle by the projection.
    pub fn projected_eigenvalues(&self) -> usize {
        self.projected
    }

    /// `w(t2 + steps)` from `w` = `w(t2)` (shape `(n,)`, any float dtype, on the operators'
    /// device); returns f64.
    pub fn evolve(&self, w: &Tensor, steps: u64, mode: Evolution) -> Result<Tensor> {
        if w.dims() != [self.n] {
            return Err(TrainError::ShapeMismatch(format!(
                "state of shape {:?}, expected [{}]",
                w.dims(),
                self.n
            )));
        }
        let w = w.to_dtype(DType::F64)?;
        let mut out = w.zeros_like()?;
        for b in &self.batches {
            let mut x = w.index_select(&b.index, 0)?.reshape((b.count, b.size, 1))?;
            match mode {
                Evolution::Step => {
                    for _ in 0..steps {
                        x = b.operators.matmul(&x)?;
                    }
                }
                Evolution::Jump => {
                    let mut base = b.operators.clone();
                    let mut k = steps;
                    while k > 0 {
                        if k & 1 == 1 {
                            x = base.matmul(&x)?;
                        }
                        k >>= 1;
                        if k > 0 {
                            base = base.matmul(&base)?;
                        }
                    }
                }
            }
            out = out.index_add(&b.index, &x.flatten_all()?, 0)?;
        }
        Ok(out)
    }

    /// Eigenvalues of every operator (host), batch by batch, group by group.
    pub fn eigenvalues(&self) -> Result<Vec<Vec<c64>>> {
        let mut out = Vec::new();
        for b in &self.batches {
            let data = b
                .operators
                .to_device(&Device::Cpu)?
                .flatten_all()?
                .to_vec1::<f64>()?;
            let d = b.size;
            for k in 0..b.count {
                let u = Mat::from_fn(d, d, |i, j| data[k * d * d + i * d + j]);
                out.push(linalg::eig(u.as_ref())?.0);
            }
        }
        Ok(out)
    }
}

/// The straight-line baseline: every weight continued along its last step,
/// `w(t2) + s (w(t2) - w(t2 - 1))`.
pub fn straight_line(last: &[f64], previous: &[f64], steps: f64) -> Result<Vec<f64>> {
    if last.len() != previous.len() {
        return Err(TrainError::ShapeMismatch(format!(
            "{} and {} weights",
            last.len(),
            previous.len()
        )));
    }
    Ok(last
        .iter()
        .zip(previous)
        .map(|(a, b)| a + steps * (a - b))
        .collect())
}

/// Host copy of a 1-D tensor as f64.
pub fn to_host(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.flatten_all()?
        .to_dtype(DType::F64)?
        .to_device(&Device::Cpu)?
        .to_vec1::<f64>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stepping::{Partition, PartitionSpec};

    /// A rotation-with-decay system on node groups, fitted and evolved both ways.
    fn body_linear_system(dev: &Device) -> Result<()> {
        let mut rec = Recorder::with_layout(vec![
            ("0.weight".into(), vec![2, 2]),
            ("0.bias".into(), vec![2]),
        ])?;
        // Each node (3 values) evolves by its own 3x3 map.
        let (c, s) = (0.3f64.cos() * 0.98, 0.3f64.sin() * 0.98);
        let a = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 0.95]];
        let mut nodes = [[1.0, 0.5, -0.3], [0.2, -1.0, 0.7]];
        let pack = |n: &[[f64; 3]; 2]| -> Vec<f64> {
            // layout: 0.weight (2x2, row j = node j) then 0.bias (2)
            vec![n[0][0], n[0][1], n[1][0], n[1][1], n[0][2], n[1][2]]
        };
        let mut truth = Vec::new();
        for t in 0..60 {
            let v = pack(&nodes);
            if t < 30 {
                rec.push(t, &v)?;
            }
            truth.push(v);
            for n in nodes.iter_mut() {
                let old = *n;
                for i in 0..3 {
                    n[i] = (0..3).map(|j| a[i][j] * old[j]).sum();
                }
            }
        }
        let plan = PartitionPlan::build(rec.params(), &PartitionSpec::uniform(Partition::Node))?;
        assert_eq!(plan.size_counts(), vec![(3, 2)]);
        let k = fit(&rec, &plan, 0, 29, &FitConfig::default(), dev)?;
        let w = Tensor::new(rec.snapshot(29)?, dev)?;
        for mode in [Evolution::Step, Evolution::Jump] {
            let got = to_host(&k.evolve(&w, 30, mode)?)?;
            for (g, e) in got.iter().zip(&truth[59]) {
                assert!((g - e).abs() < 1e-10, "{mode:?}: {g} vs {e}");
            }
        }
        // Eigenvalues: 0.98 e^{+-0.3i} and 0.95 per node.
        let eigs = k.eigenvalues()?;
        let mut r: Vec<f64> = eigs[0].iter().map(|z| z.norm()).collect();
        r.sort_by(f64::total_cmp);
        assert!((r[0] - 0.95).abs() < 1e-10 && (r[2] - 0.98).abs() < 1e-10);
        Ok(())
    }
    koopman_core::test_device!(body_linear_system, fit_and_evolve_cpu, fit_and_evolve_cuda);

    #[test]
    fn bad_input_and_ill_conditioned_data() -> Result<()> {
        let dev = Device::Cpu;
        let mut rec = Recorder::with_layout(vec![("0.weight".into(), vec![1, 4])])?;
        // Rank one: all four weights equal and constant (F has one non-zero singular value).
        for t in 0..10 {
            rec.push(t, &[1.0, 1.0, 1.0, 1.0 + 1e-17 * t as f64])?;
        }
        let layer = PartitionPlan::build(rec.params(), &PartitionSpec::uniform(Partition::Layer))?;
        assert!(matches!(
            fit(&rec, &layer, 5, 5, &FitConfig::default(), &dev),
            Err(TrainError::InvalidArgument(_))
        ));
        assert!(matches!(
            fit(&rec, &layer, 6, 9, &FitConfig::default(), &dev),
            Err(TrainError::NotEnoughData(_))
        ));
        assert!(matches!(
            fit(&rec, &layer, 0, 12, &FitConfig::default(), &dev),
            Err(TrainError::NotEnoughData(_))
        ));
        for cfg in [
            FitConfig::default(),
            FitConfig::paper_style(),
            FitConfig {
                ridge: 1e-8,
                project_unit_disk: true,
                ..Default::default()
            },
        ] {
            let k = fit(&rec, &layer, 0, 9, &cfg, &dev)?;
            let w = Tensor::new(rec.snapshot(9)?, &dev)?;
            let out = to_host(&k.evolve(&w, 1000, Evolution::Jump)?)?;
            assert!(out.iter().all(|v| v.is_finite()), "{cfg:?}: {out:?}");
        }
        assert_eq!(
            straight_line(&[1.0, 2.0], &[0.5, 2.5], 2.0)?,
            vec![2.0, 1.0]
        );
        Ok(())
    }

    #[test]
    fn projection_moves_growing_modes_to_the_circle() -> Result<()> {
        let mut u = Mat::from_fn(2, 2, |i, j| [[1.01, 0.2], [0.0, 0.5]][i][j]);
        assert_eq!(project_unit_disk(&mut u)?, 1);
        let (vals, _) = linalg::eig(u.as_ref())?;
        let mut r: Vec<f64> = vals.iter().map(|z| z.norm()).collect();
        r.sort_by(f64::total_cmp);
        assert!(
            (r[0] - 0.5).abs() < 1e-12 && (r[1] - 1.0).abs() < 1e-12,
            "{r:?}"
        );
        Ok(())
    }
}
