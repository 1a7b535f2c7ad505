//! The batched partitioned fit `U_g = F'_g F_g^+` and the evolution `w(t2 + s) = U^s w(t2)`.
//!
//! [`fit`] takes the snapshots `t1 ..= t2` of a [`Recorder`], builds `F_g` (`d x (t2 - t1)`) and
//! `F'_g` (shifted by one step) for every group of a [`PartitionPlan`], and fits all operators in
//! one call of koopman-core's partitioned finite section (SVD-regularised: finite for any data).
//! For long windows that call never gathers `F_g`: it streams the snapshots chunk by chunk into
//! a Householder LQ factorisation of `[F_g; F'_g]` per group, the time range split over the
//! cores (at the paper's DE sizes, 10,000 snapshots of 152 weights, the fit takes 25 ms on two
//! cores against 40-50 ms for gather + thin QR). The operators are kept per size as one `(count, d, d)` tensor on the caller's
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
//! **Host loops.** On the CPU, [`KoopmanStepper::evolve`] applies each operator by plain loops
//! (faer's SIMD kernel from `d = 16`), the groups split over the cores when a batch's work
//! exceeds 2^24 (about 17 million) multiply-adds.
//!
//! **f32 evolution.** The fit is always f64 (on the host: the SVD cut-off at `1e-9 s_max` needs
//! it). [`KoopmanStepper::cast`] casts the operators once to f32: [`CastStepper::evolve`] then
//! evolves by the same host loops in f32 on the CPU (about twice as fast as f64 at `d = 157`:
//! half the bytes per operator) and by batched matmuls in f32 on a GPU, where f64 is slow. Each
//! step adds a relative error of about `(d + 1) eps_f32`, at most linearly over `s` steps for
//! operators of spectral radius <= 1: the bound `(s + 1) (d + 1) eps_f32` (7.2e-4 at `s = 1000`,
//! `d = 5`) against measured 1.2e-5 (step-wise) and 2.0e-5 (squaring) relative to the f64 result
//! (test `f32_evolution_against_f64`). On the DE solver trained in f32 (see
//! [`de_solver`](super::de_solver)) the Koopman weights after 50 f32 steps differ from the
//! all-f64 trial by 2.3e-6 and its loss by 1.1e-5 (test `f32_trial_against_f64`).
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
use koopman_core::dmd::{finite_section_partitioned, FiniteSectionConfig};
use koopman_core::linalg::{self, SolveOptions};
use koopman_core::parallel::parallel_map;

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
    /// How `F^+` is computed.
    pub solver: FitSolver,
}

/// The solve behind `U = F' F^+`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum FitSolver {
    /// An orthogonal factorisation of the data (streamed LQ of `[F; F']`, or thin QR of `F^T`
    /// for short windows) and an SVD of the small factor (koopman-core's partitioned finite
    /// section): resolves singular values down to `~eps * s_max`.
    Svd,
    /// Normal equations: `U = (F' F^T) (F F^T)^+` with a symmetric eigendecomposition of the
    /// `d x d` Gram matrix (the "Cholesky method" the paper suggests for speed). One pass over
    /// the data as two matmuls, but it resolves singular values only down to
    /// `~sqrt(d eps) * s_max`, so the cut-off is floored there.
    Gram,
}

impl Default for FitConfig {
    /// Cut-off `1e-9 * s_max`, SVD solve, no projection. Chosen by experiment on the NN DE
    /// solver at the paper's sizes (25 seeds, `koopman-bench/results/`): success 80 / 100 /
    /// 100% for Adam / Adagrad / Adadelta, as for the paper-style cut-off with this streamed
    /// LQ fit (with the earlier gather + thin-QR fit the paper-style cut-off blew up on two of
    /// four Adadelta seeds), against 36 / 44 / 68% for the Gram solve and 8-12% (Adam; two
    /// runs) with the unit-disk projection. Larger cut-offs lose per-weight accuracy
    /// (Adadelta's median error ratio 1.7e-5 at 1e-9, 4.9e-5 at 1e-8, 1.3e-3 at 1e-6).
    fn default() -> Self {
        Self {
            rcond: Some(1e-9),
            ridge: 0.0,
            project_unit_disk: false,
            solver: FitSolver::Svd,
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
            solver: FitSolver::Svd,
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
struct EigenBatch {
    values: Vec<c64>,
    vectors: Vec<f64>,
    inverse: Vec<f64>,
}

/// From this many multiply-adds an eigen jump splits the groups over the cores. Its products
/// stream each operator's `V` and `W` once (memory-bound, unlike the step-wise loops that
/// keep an operator in cache, see [`PARALLEL_WORK`]): MNIST's 100 operators of size 157
/// (9.9e6) took 9 ms on one thread with complex arithmetic, 3-5 ms now on two cores; the DE
/// solver's 22 small ones (5.8e3) take 3.5 us on one.
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
    host: HostBatch<f64>,
    eigen: Option<EigenBatch>,
}

/// The float types of the host loops: f64, and f32 after [`KoopmanStepper::cast`].
trait HostReal:
    faer::traits::RealField
    + faer::traits::Conjugate<Canonical = Self>
    + Copy
    + Default
    + Send
    + Sync
    + std::ops::Mul<Output = Self>
    + std::ops::AddAssign
    + std::iter::Sum
{
    fn from_f64(v: f64) -> Self;
}

impl HostReal for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
}

impl HostReal for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

/// Size from which faer's kernels beat the plain host loops (per-call overhead below it); below
/// it step-wise evolution takes the lane-interleaved [`InterleavedSteps`].
const FAER_FROM: usize = 16;

/// `y = A x` for a row-major `y.len() x x.len()` block. From [`FAER_FROM`] columns by faer's
/// SIMD kernel on one thread (measured against the plain loop on square blocks: 1.1x at
/// `d = 16`, 2x at 32, 3.7x at 157); below, the plain loop, as faer's per-call overhead makes it
/// 2-7x slower at `d = 2 ..= 11`.
fn matvec<T: HostReal>(a: &[T], x: &[T], y: &mut [T]) {
    let (rows, d) = (y.len(), x.len());
    if d < FAER_FROM {
        for (yi, row) in y.iter_mut().zip(a.chunks_exact(d)) {
            *yi = row.iter().zip(x).map(|(&p, &q)| p * q).sum();
        }
        return;
    }
    faer::linalg::matmul::matmul(
        faer::MatMut::from_column_major_slice_mut(y, rows, 1),
        faer::Accum::Replace,
        faer::MatRef::from_row_major_slice(a, rows, d),
        faer::MatRef::from_column_major_slice(x, d, 1),
        T::from_f64(1.0),
        faer::Par::Seq,
    );
}

/// Groups per lane block of [`InterleavedSteps`].
const LANES: usize = 4;

/// `steps` products `x <- U_g x` for all groups of size `d` at once, lane-interleaved in blocks
/// of [`LANES`] groups: `ops[(b d d + i d + k) LANES + l]` is entry `(i, k)` of operator
/// `b LANES + l` and `x[(b d + k) LANES + l]` entry `k` of its state (groups padded with zeros
/// to whole blocks), so each multiply-add acts on a block's lanes at once with the row sums
/// held in registers; pulp compiles it for the CPU's vector extensions (AVX2 / AVX-512 where
/// present). Measured on the NN DE solver's 12 operators of size 11 over 2,500 steps (two-core
/// AMD EPYC, AVX2): 0.35 ms (0.43 with one row at a time), against 1.43 ms for the
/// group-by-group loop of [`matvec`].
struct InterleavedSteps<'a, T> {
    ops: &'a [T],
    x: &'a mut Vec<T>,
    d: usize,
    steps: u64,
}

impl<T: HostReal> pulp::WithSimd for InterleavedSteps<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let d = self.d;
        let mut y = vec![T::default(); self.x.len()];
        for _ in 0..self.steps {
            for ((ob, xb), yb) in self
                .ops
                .chunks_exact(d * d * LANES)
                .zip(self.x.chunks_exact(d * LANES))
                .zip(y.chunks_exact_mut(d * LANES))
            {
                // Two rows at a time: two independent sums share each load of x.
                let mut rows = ob.chunks_exact(2 * d * LANES);
                let mut outs = yb.chunks_exact_mut(2 * LANES);
                for (pair, yi) in (&mut rows).zip(&mut outs) {
                    let (r0, r1) = pair.split_at(d * LANES);
                    let mut acc = [[T::default(); LANES]; 2];
                    for ((a0, a1), xk) in r0
                        .chunks_exact(LANES)
                        .zip(r1.chunks_exact(LANES))
                        .zip(xb.chunks_exact(LANES))
                    {
                        for l in 0..LANES {
                            acc[0][l] += a0[l] * xk[l];
                            acc[1][l] += a1[l] * xk[l];
                        }
                    }
                    yi[..LANES].copy_from_slice(&acc[0]);
                    yi[LANES..].copy_from_slice(&acc[1]);
                }
                let (row, yi) = (rows.remainder(), outs.into_remainder());
                if !row.is_empty() {
                    let mut acc = [T::default(); LANES];
                    for (a, xk) in row.chunks_exact(LANES).zip(xb.chunks_exact(LANES)) {
                        for l in 0..LANES {
                            acc[l] += a[l] * xk[l];
                        }
                    }
                    yi.copy_from_slice(&acc);
                }
            }
            std::mem::swap(self.x, &mut y);
        }
    }
}

/// `C = A B` for row-major `d x d` blocks: from [`FAER_FROM`] by faer's kernel on one thread,
/// below by the plain loop.
fn matmul<T: HostReal>(a: &[T], b: &[T], c: &mut [T], d: usize) {
    if d >= FAER_FROM {
        faer::linalg::matmul::matmul(
            faer::MatMut::from_row_major_slice_mut(c, d, d),
            faer::Accum::Replace,
            faer::MatRef::from_row_major_slice(a, d, d),
            faer::MatRef::from_row_major_slice(b, d, d),
            T::from_f64(1.0),
            faer::Par::Seq,
        );
        return;
    }
    c.fill(T::default());
    for i in 0..d {
        for k in 0..d {
            let aik = a[i * d + k];
            for j in 0..d {
                c[i * d + j] += aik * b[k * d + j];
            }
        }
    }
}

/// One size's operators on the host in the evolution dtype: `index` (`count * size` flat
/// parameter indices) and `operators` (`count` row-major `size x size` blocks).
#[derive(Clone, Debug)]
struct HostBatch<T> {
    size: usize,
    index: Vec<usize>,
    operators: Vec<T>,
}

impl HostBatch<f64> {
    /// The same operators rounded to `U`.
    fn cast<U: HostReal>(&self) -> HostBatch<U> {
        HostBatch {
            size: self.size,
            index: self.index.clone(),
            operators: self.operators.iter().map(|&v| U::from_f64(v)).collect(),
        }
    }
}

/// Below this many multiply-adds a batch evolves on one thread. Measured on two cores: the DE
/// solver's 12 operators of size 11 over 2,500 steps (3.6e6) took 2.0-3.2 ms on two threads
/// against 1.5-1.7 ms on one (step-wise evolution of operators below size 16 now takes the
/// lane-interleaved [`InterleavedSteps`] instead: 0.35 ms); MNIST's 100 operators of size 157
/// over 250 steps (6.2e8) 0.047 s against 0.155 s.
const PARALLEL_WORK: u64 = 1 << 24;

impl<T: HostReal> HostBatch<T> {
    fn count(&self) -> usize {
        self.index.len() / self.size
    }

    /// Step-wise evolution of every group at once ([`InterleavedSteps`]); the states, one
    /// vector per group.
    fn evolve_interleaved(&self, w: &[T], steps: u64) -> Vec<Vec<T>> {
        let (d, count) = (self.size, self.count());
        let blocks = count.div_ceil(LANES);
        // Slot of group g's entry e (row-major in its d x d operator or its d-vector).
        let slot = |g: usize, e: usize, len: usize| ((g / LANES) * len + e) * LANES + g % LANES;
        let mut ops = vec![T::default(); blocks * d * d * LANES];
        for (g, u) in self.operators.chunks_exact(d * d).enumerate() {
            for (e, &v) in u.iter().enumerate() {
                ops[slot(g, e, d * d)] = v;
            }
        }
        let mut x = vec![T::default(); blocks * d * LANES];
        for (g, idx) in self.index.chunks_exact(d).enumerate() {
            for (k, &i) in idx.iter().enumerate() {
                x[slot(g, k, d)] = w[i];
            }
        }
        pulp::Arch::new().dispatch(InterleavedSteps {
            ops: &ops,
            x: &mut x,
            d,
            steps,
        });
        (0..count)
            .map(|g| (0..d).map(|k| x[slot(g, k, d)]).collect())
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
    fn gather(&self, g: usize, w: &[T]) -> Vec<T> {
        let mut x = vec![T::default(); self.size];
        self.gather_into(g, w, &mut x);
        x
    }

    /// Group `g`'s entries of `w`, into `x`.
    fn gather_into(&self, g: usize, w: &[T], x: &mut [T]) {
        let d = self.size;
        for (xi, &i) in x.iter_mut().zip(&self.index[g * d..(g + 1) * d]) {
            *xi = w[i];
        }
    }

    /// Writes group `g`'s state `x` to its entries of `out`.
    fn put(&self, g: usize, x: &[T], out: &mut [T]) {
        let d = self.size;
        for (&i, &v) in self.index[g * d..(g + 1) * d].iter().zip(x) {
            out[i] = v;
        }
    }

    /// `f` of every group index in order, split over the cores when `parallel`.
    fn map_groups<O: Send>(
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
    fn jump_into(&self, w: &[T], outs: &mut [Vec<T>], horizons: &[u64]) -> Result<()> {
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
    fn evolve_into(&self, w: &[T], out: &mut [T], steps: u64, mode: Evolution) -> Result<()> {
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
    fn scatter(&self, states: Vec<Vec<T>>, out: &mut [T]) {
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

/// `U = (Y X^T) V diag(f) V^T` with `X X^T = V diag(l) V^T`, `f = 1 / (l + ridge)` for
/// `l > max(rcond^2, d eps) l_max`, 0 otherwise.
fn gram_solve(
    x: faer::MatRef<'_, f64>,
    y: faer::MatRef<'_, f64>,
    config: &FitConfig,
) -> Result<Mat<f64>> {
    let (d, m) = (x.nrows(), x.ncols());
    let g = x * x.transpose();
    let c = y * x.transpose();
    let evd = g
        .self_adjoint_eigen(faer::Side::Lower)
        .map_err(|e| linalg::decomposition_error("Gram eigendecomposition", e))?;
    let lam: Vec<f64> = evd.S().column_vector().iter().copied().collect();
    let lmax = lam.iter().copied().fold(0.0, f64::max);
    let r = config.rcond.unwrap_or(d.max(m) as f64 * f64::EPSILON);
    let cut = (r * r).max(d as f64 * f64::EPSILON) * lmax;
    let cv = c * evd.U();
    let scaled = Mat::from_fn(d, d, |i, j| {
        if lmax > 0.0 && lam[j] > cut {
            cv[(i, j)] / (lam[j] + config.ridge)
        } else {
            0.0
        }
    });
    Ok(scaled.as_ref() * evd.U().transpose())
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
    // Every operator in one call, groups ordered by size (the batches below).
    let by_size: Vec<(usize, Vec<&[usize]>)> = plan
        .size_counts()
        .into_iter()
        .map(|(size, _)| {
            let groups = plan.groups().iter().filter(|g| g.len() == size);
            (size, groups.map(|g| g.as_slice()).collect())
        })
        .collect();
    let ordered: Vec<&[usize]> = by_size
        .iter()
        .flat_map(|(_, g)| g.iter().copied())
        .collect();
    let all = match config.solver {
        FitSolver::Svd => finite_section_partitioned(&snaps, &ordered, &solve)?,
        FitSolver::Gram => {
            // One sweep over the snapshots: group g's trajectory as a column-major
            // d x (m + 1) block; F and F' are its first and last m columns.
            let mut bufs: Vec<Vec<f64>> = ordered
                .iter()
                .map(|g| Vec::with_capacity(g.len() * (m + 1)))
                .collect();
            for snap in &snaps {
                for (buf, g) in bufs.iter_mut().zip(&ordered) {
                    buf.extend(g.iter().map(|&i| snap[i]));
                }
            }
            bufs.iter()
                .zip(&ordered)
                .map(|(b, g)| {
                    let z = faer::MatRef::from_column_major_slice(b, g.len(), m + 1);
                    gram_solve(z.subcols(0, m), z.subcols(1, m), config)
                })
                .collect::<Result<Vec<_>>>()?
        }
    };
    let mut fitted = all.into_iter();
    let mut batches = Vec::new();
    let mut projected = 0;
    for (size, groups) in by_size {
        let mut us: Vec<Mat<f64>> = fitted.by_ref().take(groups.len()).collect();
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
        let host_index: Vec<usize> = groups.iter().flat_map(|g| g.iter().copied()).collect();
        let index: Vec<u32> = host_index.iter().map(|&i| i as u32).collect();
        batches.push(OperatorBatch {
            size,
            count: groups.len(),
            index: Tensor::from_vec(index, groups.len() * size, device)?,
            operators: Tensor::from_slice(&data, (groups.len(), size, size), device)?,
            host: HostBatch {
                size,
                index: host_index,
                operators: data,
            },
            eigen: None,
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
            // Split over the cores from size 16 on (MNIST's 100 operators of size 157: 2.7 s
            // on one thread); the DE solver's sizes 2 and 11 take 0.5 ms in all.
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

    /// Eigenvalues of every operator (host, spread over the cores), batch by batch, group by
    /// group.
    pub fn eigenvalues(&self) -> Result<Vec<Vec<c64>>> {
        let mut out = Vec::new();
        for b in &self.batches {
            let (d, ops) = (b.size, &b.host.operators);
            out.extend(b.host.map_groups(true, |k| {
                let u = faer::MatRef::from_row_major_slice(&ops[k * d * d..(k + 1) * d * d], d, d);
                linalg::eigenvalues(u)
            })?);
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

/// `w(t2 + steps)` by batched matmuls in `w`'s dtype on its device: for every `(index,
/// operators)` pair (`(count * d,)` u32 and `(count, d, d)`), one `bmm` per step or `O(log
/// steps)` for a jump (also for [`Evolution::Eigen`]).
fn evolve_groups<'a>(
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
/// normal, and their f32 evolution over two epochs blew up (weight error 3e5 times the true
/// change, against 1.03 in f64), so the classifier trials evolve in f64.
///
/// Each f32 step adds a relative error of about `(d + 1) eps_f32` (`eps_f32 = 1.2e-7`: `d eps`
/// from the `d`-term dot products, `eps / 2` from rounding `U` once), and for operators with spectral radius <= 1 these add up at most
/// linearly: `||w_f32 - w_f64|| / ||w_f64|| <= (s + 1) (d + 1) eps_f32` after `s` steps, for the
/// step-wise loop and the jump by squaring alike (the tests check this bound; measured errors
/// are far below it, see the [module docs](self)).
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
    use crate::stepping::{Partition, PartitionSpec};

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
        let mut k = fit(&rec, &plan, 0, 29, &FitConfig::default(), dev)?;
        k.diagonalize()?;
        let gram = FitConfig {
            solver: FitSolver::Gram,
            ..Default::default()
        };
        let mut kg = fit(&rec, &plan, 0, 29, &gram, dev)?;
        let w = Tensor::new(rec.snapshot(29)?, dev)?;
        assert!(kg.evolve(&w, 3, Evolution::Eigen).is_err());
        kg.diagonalize()?;
        for mode in [Evolution::Step, Evolution::Jump, Evolution::Eigen] {
            let all = [
                k.evolve(&w, 30, mode)?,
                k.evolve_batched(&w, 30, mode)?,
                kg.evolve(&w, 30, mode)?,
            ];
            for got in all {
                assert!(got.device().same_device(dev));
                for (g, e) in to_host(&got)?.iter().zip(&truth[59]) {
                    assert!((g - e).abs() < 1e-10, "{mode:?}: {g} vs {e}");
                }
            }
        }
        // Eigenvalues: 0.98 e^{+-0.3i} and 0.95 per node.
        let eigs = k.eigenvalues()?;
        let mut r: Vec<f64> = eigs[0].iter().map(|z| z.norm()).collect();
        r.sort_by(f64::total_cmp);
        assert!((r[0] - 0.95).abs() < 1e-10 && (r[2] - 0.98).abs() < 1e-10);
        // Several horizons at once (shared squarings): the same states as one jump each, in
        // the caller's order, zero included.
        let host_w = to_host(&w)?;
        let horizons = [37, 0, 1, 30, 1024];
        let many = k.evolve_host_horizons(&host_w, &horizons)?;
        assert_eq!(many.len(), horizons.len());
        for (&h, got) in horizons.iter().zip(&many) {
            assert_eq!(
                got,
                &k.evolve_host(&host_w, h, Evolution::Jump)?,
                "horizon {h}"
            );
        }
        assert_eq!(many[1], host_w);
        assert!(k.evolve_host_horizons(&host_w[1..], &horizons).is_err());
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

    /// The f32 evolution against the f64 one for the same fitted operators: 4 node operators of
    /// size d = 5, each `Q diag(0.999 R(0.05), 0.99 R(0.3), 1) Q^T` (`Q` a reflection, so the
    /// operators are normal with spectral radius 1), s = 1000 steps, step-wise and by squaring.
    /// Bound: `(s + 1) (d + 1) eps_f32 = 7.2e-4` (see [`CastStepper`]). Measured (CPU):
    /// step 1.2e-5, jump 2.0e-5 (relative, 2-norm); the bound is loose (rounding errors mostly
    /// cancel), but an evolution in f16/bf16 or with a wrong operator misses it.
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
