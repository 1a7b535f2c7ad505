//! The evolution `w(t2 + s) = U^s w(t2)` of the weights by fitted partitioned Koopman operators,
//! and the straight-line baseline.
//!
//! What: [`KoopmanStepper::evolve`] continues the weights of every group of a partition by its
//! operator: step by step ([`Evolution::Step`], the paper's loop), by powers by squaring applied
//! to the state ([`Evolution::Jump`], `O(log s)` products), or by the operators'
//! eigendecompositions ([`Evolution::Eigen`], `O(d^2)` per operator whatever `s`).
//! [`KoopmanStepper::evolve_host_horizons`] shares the squarings between several horizons.
//! [`straight_line`] is the baseline every Koopman prediction is compared with: each weight
//! continued along its last step.
//!
//! How: the operators of one size form an [`OperatorBatch`], one `(count, d, d)` tensor on the
//! caller's device and a host copy. On the CPU each operator is applied by the host loops of
//! koopman-core's [`kernels::dense`](koopman_core::kernels::dense) (faer's SIMD kernel from
//! `d = 16`; below it, all operators of a size stepped together in the vector lanes), the
//! groups split over the cores when a batch's work exceeds 2^24 (about 17 million) multiply-adds;
//! on other devices by batched matmuls, one `bmm` per size and step
//! ([`KoopmanStepper::evolve_batched`]). The evolution in f32 is [`cast`](super::cast)'s.

use super::fit::KoopmanStepper;
use crate::error::{Result, TrainError};
use candle_core::{DType, Device, Tensor};
use faer::Mat;
use koopman_core::c64;
use koopman_core::kernels::dense::{interleaved_steps, matmul, matvec, HostReal, FAER_FROM};
use koopman_core::linalg::{self, SolveOptions};
use koopman_core::parallel::parallel_map;

/// Step-by-step evolution (the paper) or a direct jump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evolution {
    /// `s` batched matrix-vector products.
    Step,
    /// Powers by squaring applied to the state: `O(log s)` batched matmuls.
    Jump,
    /// `V diag(l^s) V^{-1} w` from the eigendecomposition computed by
    /// [`KoopmanStepper::diagonalize`]: `O(d^2)` per operator whatever `s`. Inaccurate when an
    /// operator is close to defective (a Jordan block, as for weights drifting along a line);
    /// compare with [`Evolution::Step`].
    Eigen,
}

/// Eigendecompositions `U = V diag(l) W` (`W = V^{-1}`) of every operator of a batch, operator
/// by operator, with `V` and `W` as real planes so that a jump is two real matrix-vector
/// products: `inverse` holds `[Re W; Im W]` (`2d x d`) and `vectors` `[Re V, -Im V]` (`d x 2d`),
/// row-major; then `c = W x` is the first product and `Re(V diag(l^s) c)` the second.
#[derive(Clone, Debug)]
pub(super) struct EigenBatch {
    values: Vec<c64>,
    vectors: Vec<f64>,
    inverse: Vec<f64>,
}

/// From this many multiply-adds an eigen jump splits the groups over the cores. Its products
/// stream each operator's `V` and `W` once (memory-bound, unlike the step-wise loops that
/// keep an operator in cache, see [`PARALLEL_WORK`]), so the split pays off earlier: MNIST's 100
/// operators of size 157 (9.9e6) gain from it, the DE solver's 22 small ones (5.8e3) would only
/// pay the hand-off.
const EIGEN_PARALLEL_WORK: usize = 1 << 20;

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
    /// The host copy of the operators.
    pub(super) host: HostBatch<f64>,
    /// Their eigendecompositions, after [`KoopmanStepper::diagonalize`].
    pub(super) eigen: Option<EigenBatch>,
}

/// One size's operators on the host in the evolution dtype: `index` (`count * size` flat
/// parameter indices) and `operators` (`count` row-major `size x size` blocks).
#[derive(Clone, Debug)]
pub(super) struct HostBatch<T> {
    /// Operator size `d`.
    pub(super) size: usize,
    /// Flat parameter indices, group by group.
    pub(super) index: Vec<usize>,
    /// The operators, row-major blocks.
    pub(super) operators: Vec<T>,
}

/// Below this many multiply-adds a batch evolves on one thread: each operator stays in cache
/// over all its steps, so a small batch (the DE solver's 12 operators of size 11 over 2,500
/// steps, 3.6e6) loses more in the hand-off to the pool than it gains, while a large one
/// (MNIST's 100 operators of size 157 over 250 steps, 6.2e8) gains from the split.
/// Step-wise evolution of operators below [`FAER_FROM`] takes the lane-interleaved kernel on one
/// thread instead.
const PARALLEL_WORK: u64 = 1 << 24;

impl<T: HostReal> HostBatch<T> {
    /// Number of operators.
    fn count(&self) -> usize {
        self.index.len() / self.size
    }

    /// Step-wise evolution of every group at once (the lane-interleaved
    /// [`interleaved_steps`]); the states, one vector per group.
    fn evolve_interleaved(&self, w: &[T], steps: u64) -> Vec<Vec<T>> {
        let states: Vec<T> = self.index.iter().map(|&i| w[i]).collect();
        interleaved_steps(&self.operators, &states, self.size, steps)
            .chunks_exact(self.size)
            .map(<[T]>::to_vec)
            .collect()
    }

    /// The state of group `g` after `steps` steps (step-wise or by squaring) from its entries
    /// of `w`.
    fn evolve_group(&self, g: usize, w: &[T], steps: u64, mode: Evolution) -> Vec<T> {
        if mode != Evolution::Step {
            return self.jump_group(g, w, &[steps]).pop().unwrap_or_default();
        }
        let d = self.size;
        let u = &self.operators[g * d * d..(g + 1) * d * d];
        let mut x = self.gather(g, w);
        let mut y = vec![T::default(); d];
        for _ in 0..steps {
            matvec(u, &x, &mut y);
            std::mem::swap(&mut x, &mut y);
        }
        x
    }

    /// Group `g`'s entries of `w`.
    pub(super) fn gather(&self, g: usize, w: &[T]) -> Vec<T> {
        let mut x = vec![T::default(); self.size];
        self.gather_into(g, w, &mut x);
        x
    }

    /// Group `g`'s entries of `w`, into `x`.
    pub(super) fn gather_into(&self, g: usize, w: &[T], x: &mut [T]) {
        let d = self.size;
        for (xi, &i) in x.iter_mut().zip(&self.index[g * d..(g + 1) * d]) {
            *xi = w[i];
        }
    }

    /// Writes group `g`'s state `x` to its entries of `out`.
    pub(super) fn put(&self, g: usize, x: &[T], out: &mut [T]) {
        let d = self.size;
        for (&i, &v) in self.index[g * d..(g + 1) * d].iter().zip(x) {
            out[i] = v;
        }
    }

    /// `f` of every group index in order, split over the cores when `parallel`.
    pub(super) fn map_groups<O: Send>(
        &self,
        parallel: bool,
        f: impl Fn(usize) -> koopman_core::Result<O> + Sync,
    ) -> koopman_core::Result<Vec<O>> {
        let groups: Vec<usize> = (0..self.count()).collect();
        if parallel {
            parallel_map(&groups, |&g| f(g))
        } else {
            groups.into_iter().map(f).collect()
        }
    }

    /// Group `g`'s states `U^h x` for every horizon `h` (powers by squaring: the squarings
    /// `U^(2^k)` are computed once for all horizons, each state takes the matvecs of its bits).
    fn jump_group(&self, g: usize, w: &[T], horizons: &[u64]) -> Vec<Vec<T>> {
        let d = self.size;
        let x0 = self.gather(g, w);
        let mut xs: Vec<Vec<T>> = horizons.iter().map(|_| x0.clone()).collect();
        let mut y = vec![T::default(); d];
        let mut base = self.operators[g * d * d..(g + 1) * d * d].to_vec();
        let mut tmp = vec![T::default(); d * d];
        let longest = horizons.iter().copied().max().unwrap_or(0);
        let mut bit = 0;
        loop {
            for (x, &h) in xs.iter_mut().zip(horizons) {
                if (h >> bit) & 1 == 1 {
                    matvec(&base, x, &mut y);
                    std::mem::swap(x, &mut y);
                }
            }
            bit += 1;
            if bit >= 64 || longest >> bit == 0 {
                return xs;
            }
            matmul(&base, &base, &mut tmp, d);
            std::mem::swap(&mut base, &mut tmp);
        }
    }

    /// [`jump_group`](Self::jump_group) for every group, into `outs` (one state per horizon),
    /// the groups split over the cores when the work is large enough.
    pub(super) fn jump_into(&self, w: &[T], outs: &mut [Vec<T>], horizons: &[u64]) -> Result<()> {
        let d = self.size as u64;
        let longest = horizons.iter().copied().max().unwrap_or(0);
        let work = self.count() as u64 * d * d * d * (64 - longest.leading_zeros() as u64);
        let states = self.map_groups(work >= PARALLEL_WORK, |g| {
            Ok(self.jump_group(g, w, horizons))
        })?;
        for (g, per_horizon) in states.iter().enumerate() {
            for (out, x) in outs.iter_mut().zip(per_horizon) {
                self.put(g, x, out);
            }
        }
        Ok(())
    }

    /// Evolves every group of this batch (step-wise or by squaring; [`Evolution::Eigen`] is
    /// handled by the caller) from `w` into `out`, the groups split over the host's cores when
    /// the work is large enough.
    pub(super) fn evolve_into(
        &self,
        w: &[T],
        out: &mut [T],
        steps: u64,
        mode: Evolution,
    ) -> Result<()> {
        let d = self.size as u64;
        let work = self.count() as u64
            * match mode {
                Evolution::Step => d * d * steps,
                _ => d * d * d * (64 - steps.leading_zeros() as u64),
            };
        // Small operators step together in the vector lanes; larger ones group by group (each
        // operator then stays in cache over all steps).
        let states = if mode == Evolution::Step && self.size < FAER_FROM {
            self.evolve_interleaved(w, steps)
        } else {
            self.map_groups(work >= PARALLEL_WORK, |g| {
                Ok(self.evolve_group(g, w, steps, mode))
            })?
        };
        self.scatter(states, out);
        Ok(())
    }

    /// Writes each group's state (one vector per group, in order) to its entries of `out`.
    pub(super) fn scatter(&self, states: Vec<Vec<T>>, out: &mut [T]) {
        for (g, x) in states.iter().enumerate() {
            self.put(g, x, out);
        }
    }
}

impl OperatorBatch {
    /// Host evolution of this batch's groups of `w` by their eigendecompositions (in place in
    /// `out`); an error when [`KoopmanStepper::diagonalize`] has not computed them.
    fn evolve_eigen(&self, w: &[f64], out: &mut [f64], steps: u64) -> Result<()> {
        let d = self.size;
        let e = self.eigen.as_ref().ok_or_else(|| {
            TrainError::InvalidArgument(
                "Evolution::Eigen needs KoopmanStepper::diagonalize first".into(),
            )
        })?;
        // Group g's state after `steps` steps from its entries x, with c (2d) and y (d) as
        // work space.
        let jump = |g: usize, x: &[f64], c: &mut [f64], y: &mut [f64]| {
            matvec(&e.inverse[g * 2 * d * d..(g + 1) * 2 * d * d], x, c);
            for (k, &lam) in e.values[g * d..(g + 1) * d].iter().enumerate() {
                let z = c64::new(c[k], c[d + k]) * koopman_core::dmd::int_power(lam, steps);
                (c[k], c[d + k]) = (z.re, z.im);
            }
            matvec(&e.vectors[g * 2 * d * d..(g + 1) * 2 * d * d], c, y);
        };
        if self.count * 4 * d * d < EIGEN_PARALLEL_WORK {
            // One set of buffers for all groups (the DE solver's 22 operators take microseconds).
            let (mut x, mut c, mut y) = (vec![0.0; d], vec![0.0; 2 * d], vec![0.0; d]);
            for g in 0..self.count {
                self.host.gather_into(g, w, &mut x);
                jump(g, &x, &mut c, &mut y);
                self.host.put(g, &y, out);
            }
        } else {
            let states = self.host.map_groups(true, |g| {
                let (mut c, mut y) = (vec![0.0; 2 * d], vec![0.0; d]);
                jump(g, &self.host.gather(g, w), &mut c, &mut y);
                Ok(y)
            })?;
            self.host.scatter(states, out);
        }
        Ok(())
    }
}

impl KoopmanStepper {
    /// `w(t2 + steps)` from `w` = `w(t2)` (shape `(n,)`, any float dtype, on the operators'
    /// device); returns f64 on the same device. On the CPU the small operators are applied by
    /// plain loops (no per-op dispatch: this is the cost the paper's complexity analysis
    /// counts); on other devices by batched matmuls ([`evolve_batched`](Self::evolve_batched)).
    pub fn evolve(&self, w: &Tensor, steps: u64, mode: Evolution) -> Result<Tensor> {
        self.check_state(w)?;
        if !w.device().is_cpu() && mode != Evolution::Eigen {
            return self.evolve_batched(w, steps, mode);
        }
        let host = to_host(w)?;
        let out = self.evolve_host(&host, steps, mode)?;
        Ok(Tensor::from_vec(out, self.n, w.device())?)
    }

    /// [`evolve`](Self::evolve) on a host vector.
    pub fn evolve_host(&self, w: &[f64], steps: u64, mode: Evolution) -> Result<Vec<f64>> {
        self.check_host_state(w)?;
        let mut out = vec![0.0; self.n];
        for b in &self.batches {
            if mode == Evolution::Eigen {
                b.evolve_eigen(w, &mut out, steps)?;
            } else {
                b.host.evolve_into(w, &mut out, steps, mode)?;
            }
        }
        Ok(out)
    }

    /// `w(t2 + h)` for every horizon `h` of `horizons` by [`Evolution::Jump`] (host): the
    /// squarings of each operator are shared by all horizons, so several candidate horizons
    /// cost about as much as the longest one. Equal to calling
    /// [`evolve_host`](Self::evolve_host) once per horizon.
    pub fn evolve_host_horizons(&self, w: &[f64], horizons: &[u64]) -> Result<Vec<Vec<f64>>> {
        self.check_host_state(w)?;
        let mut outs = vec![vec![0.0; self.n]; horizons.len()];
        for b in &self.batches {
            b.host.jump_into(w, &mut outs, horizons)?;
        }
        Ok(outs)
    }

    /// Computes and keeps the eigendecomposition `U = V diag(l) V^{-1}` of every operator (host),
    /// for [`Evolution::Eigen`]; `V^{-1}` is a least-squares inverse, finite even for
    /// (near-)defective operators.
    pub fn diagonalize(&mut self) -> Result<()> {
        for b in self.batches.iter_mut() {
            let d = b.size;
            let mut e = EigenBatch {
                values: Vec::with_capacity(b.count * d),
                vectors: Vec::with_capacity(b.count * 2 * d * d),
                inverse: Vec::with_capacity(b.count * 2 * d * d),
            };
            let eye = Mat::<c64>::identity(d, d);
            let decompose = |g: usize| {
                let u = Mat::from_fn(d, d, |i, j| b.host.operators[g * d * d + i * d + j]);
                let (vals, vecs) = linalg::eig(u.as_ref())?;
                let (inv, _) =
                    linalg::lstsq(vecs.as_ref(), eye.as_ref(), &SolveOptions::default())?;
                Ok((vals, vecs, inv))
            };
            // Split over the cores from size FAER_FROM on, where the decompositions outweigh
            // the hand-off to the pool.
            let parts = b.host.map_groups(d >= FAER_FROM, decompose)?;
            for (vals, vecs, inv) in parts {
                e.values.extend(vals);
                for part in [|z: c64| z.re, |z: c64| z.im] {
                    e.inverse
                        .extend((0..d * d).map(|k| part(inv[(k / d, k % d)])));
                }
                for i in 0..d {
                    e.vectors.extend((0..d).map(|k| vecs[(i, k)].re));
                    e.vectors.extend((0..d).map(|k| -vecs[(i, k)].im));
                }
            }
            b.eigen = Some(e);
        }
        Ok(())
    }

    fn check_host_state(&self, w: &[f64]) -> Result<()> {
        if w.len() != self.n {
            return Err(TrainError::ShapeMismatch(format!(
                "{} weights, the operators evolve {}",
                w.len(),
                self.n
            )));
        }
        Ok(())
    }

    fn check_state(&self, w: &Tensor) -> Result<()> {
        if w.dims() != [self.n] {
            return Err(TrainError::ShapeMismatch(format!(
                "state of shape {:?}, expected [{}]",
                w.dims(),
                self.n
            )));
        }
        Ok(())
    }

    /// [`evolve`](Self::evolve) by batched matmuls on the tensors' device: one `bmm` per size
    /// and step, or `O(log steps)` for a jump.
    pub fn evolve_batched(&self, w: &Tensor, steps: u64, mode: Evolution) -> Result<Tensor> {
        self.check_state(w)?;
        let groups = self.batches.iter().map(|b| (&b.index, &b.operators));
        evolve_groups(&w.to_dtype(DType::F64)?, groups, steps, mode)
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

/// `w(t2 + steps)` by batched matmuls in `w`'s dtype on its device: for every `(index,
/// operators)` pair (`(count * d,)` u32 and `(count, d, d)`), one `bmm` per step or `O(log
/// steps)` for a jump (also for [`Evolution::Eigen`]).
pub(super) fn evolve_groups<'a>(
    w: &Tensor,
    groups: impl Iterator<Item = (&'a Tensor, &'a Tensor)>,
    steps: u64,
    mode: Evolution,
) -> Result<Tensor> {
    let mut out = w.zeros_like()?;
    for (index, ops) in groups {
        let (count, size, _) = ops.dims3()?;
        let mut x = w.index_select(index, 0)?.reshape((count, size, 1))?;
        match mode {
            Evolution::Step => {
                for _ in 0..steps {
                    x = ops.matmul(&x)?;
                }
            }
            Evolution::Jump | Evolution::Eigen => {
                let mut base = ops.clone();
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
        out = out.index_add(index, &x.flatten_all()?, 0)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stepping::{fit, FitConfig, Partition, PartitionPlan, PartitionSpec, Recorder};
    use koopman_core::kernels::dense::LANES;

    /// The eigen jump of many operators of size 17 (faer's products, the groups split over the
    /// cores) equals step-wise evolution: nodes of 16 weights and a bias that each turn by the
    /// same normal map `0.97 Q` (`Q` orthogonal, so the eigenvectors are well conditioned).
    #[test]
    fn eigen_jump_of_many_large_operators_matches_step_wise() -> Result<()> {
        let (count, d) = (1000, 17);
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut rnd = move || rng.random::<f64>() - 0.5;
        // Q by Gram-Schmidt of a random matrix (rows orthonormal).
        let mut q: Vec<Vec<f64>> = Vec::new();
        while q.len() < d {
            let mut r: Vec<f64> = (0..d).map(|_| rnd()).collect();
            for p in &q {
                let c: f64 = r.iter().zip(p).map(|(a, b)| a * b).sum();
                r.iter_mut().zip(p).for_each(|(a, b)| *a -= c * b);
            }
            let norm = r.iter().map(|a| a * a).sum::<f64>().sqrt();
            q.push(r.iter().map(|a| a / norm).collect());
        }
        let mut rec = Recorder::with_layout(vec![
            ("0.weight".into(), vec![count, d - 1]),
            ("0.bias".into(), vec![count]),
        ])?;
        let mut nodes: Vec<Vec<f64>> = (0..count)
            .map(|_| (0..d).map(|_| rnd()).collect())
            .collect();
        for t in 0..40 {
            let mut v = vec![0.0; count * d];
            for (j, n) in nodes.iter().enumerate() {
                v[j * (d - 1)..(j + 1) * (d - 1)].copy_from_slice(&n[..d - 1]);
                v[count * (d - 1) + j] = n[d - 1];
            }
            rec.push(t, &v)?;
            for n in nodes.iter_mut() {
                *n = q
                    .iter()
                    .map(|row| 0.97 * row.iter().zip(n.iter()).map(|(a, b)| a * b).sum::<f64>())
                    .collect();
            }
        }
        let plan = PartitionPlan::build(rec.params(), &PartitionSpec::uniform(Partition::Node))?;
        assert_eq!(plan.size_counts(), vec![(d, count)]);
        assert!(d >= FAER_FROM && count * 4 * d * d >= EIGEN_PARALLEL_WORK);
        let mut k = fit(&rec, &plan, 0, 39, &FitConfig::default(), &Device::Cpu)?;
        k.diagonalize()?;
        let w = rec.snapshot(39)?;
        for steps in [1, 25] {
            let step = k.evolve_host(w, steps, Evolution::Step)?;
            let eigen = k.evolve_host(w, steps, Evolution::Eigen)?;
            let scale = step.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let err = step
                .iter()
                .zip(&eigen)
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            let bound = 100.0 * f64::EPSILON * (d as f64) * (steps as f64) * scale;
            assert!(err <= bound, "{steps} steps: {err:e} > {bound:e}");
        }
        Ok(())
    }

    /// The host loops (groups split over the cores, faer's kernel at `d >= 16`, f64 and f32)
    /// against the batched tensor matmuls: 32 random operators of size 48 (entries uniform with
    /// variance `1/d`, spectral radius about 1), 300 steps, step-wise (2.2e7 multiply-adds,
    /// above [`PARALLEL_WORK`], so the threaded path runs) and by squaring (one thread).
    #[test]
    fn host_loops_match_batched_matmuls() -> Result<()> {
        // Large groups (threaded, group by group) and small ones (lane-interleaved, a count
        // that does not fill the last lane block; fewer steps, as these random operators grow
        // about 1.5x per step and f32 would overflow by step 220).
        let (count, d, steps) = (32usize, 48usize, 300u64);
        assert!(count as u64 * (d * d) as u64 * steps > PARALLEL_WORK);
        host_loops_match(count, d, steps)?;
        const { assert!(11 < FAER_FROM && 7 % LANES != 0) };
        host_loops_match(7, 11, 60)
    }

    fn host_loops_match(count: usize, d: usize, steps: u64) -> Result<()> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let scale = 1.0 / (d as f64).sqrt();
        let operators: Vec<f64> = (0..count * d * d)
            .map(|_| (rng.random::<f64>() * 2.0 - 1.0) * scale * 3f64.sqrt())
            .collect();
        // groups interleaved over the parameters, plus 3 parameters in no group (stay 0)
        let n = count * d + 3;
        let index: Vec<usize> = (0..count * d)
            .map(|k| (k % count) * d + k / count)
            .collect();
        let w: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).cos()).collect();
        let host = HostBatch {
            size: d,
            index: index.clone(),
            operators: operators.clone(),
        };
        let dev = Device::Cpu;
        let idx: Vec<u32> = index.iter().map(|&i| i as u32).collect();
        let index_t = Tensor::from_vec(idx, count * d, &dev)?;
        let ops_t = Tensor::from_vec(operators, (count, d, d), &dev)?;
        let w_t = Tensor::from_vec(w.clone(), n, &dev)?;
        let norm = |x: &[f64]| x.iter().map(|v| v * v).sum::<f64>().sqrt();
        let rel = |a: &[f64], b: &[f64]| {
            let diff: Vec<f64> = a.iter().zip(b).map(|(p, q)| p - q).collect();
            norm(&diff) / norm(b)
        };
        for mode in [Evolution::Step, Evolution::Jump] {
            let reference = to_host(&evolve_groups(
                &w_t,
                std::iter::once((&index_t, &ops_t)),
                steps,
                mode,
            )?)?;
            let mut got = vec![0.0; n];
            host.evolve_into(&w, &mut got, steps, mode)?;
            let r64 = rel(&got, &reference);
            assert!(
                r64 < 1e3 * f64::EPSILON * (steps * d as u64) as f64,
                "{mode:?} f64: {r64:e}"
            );
            assert!(got[n - 3..].iter().all(|&v| v == 0.0));
            let host32: HostBatch<f32> = host.cast();
            let w32: Vec<f32> = w.iter().map(|&v| v as f32).collect();
            let mut got32 = vec![0.0f32; n];
            host32.evolve_into(&w32, &mut got32, steps, mode)?;
            let got32: Vec<f64> = got32.iter().map(|&v| f64::from(v)).collect();
            let r32 = rel(&got32, &reference);
            let bound = (steps + 1) as f64 * (d + 1) as f64 * f64::from(f32::EPSILON);
            eprintln!("host loops, {mode:?}: f64 {r64:.1e}, f32 {r32:.1e} (bound {bound:.1e})");
            assert!(
                r32 < bound && r32 > 0.1 * f64::from(f32::EPSILON),
                "{mode:?} f32: {r32:e}"
            );
        }
        Ok(())
    }
}
