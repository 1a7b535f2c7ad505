//! Weighted gathers: the inner kernel of structured operators, on the CPU and on NVIDIA GPUs.
//!
//! A weighted gather maps rows `y` of shape `(b, n)` to `out[j, i] = sum_k w[i, k] y[j, T[i, k]]`
//! for a fixed index table `T` of shape `(n, K)` (entries equal to `n` read zero) and complex
//! weights `w` of shape `(n, K)` or `(1, K)` (one weight per column `k`, shared by all rows).
//! candle's `index_select` + broadcast multiply + sum computes the same thing portably but makes
//! three passes over `b n K` values (and, on a GPU, a dozen kernel launches); this module does it
//! in one pass as a candle custom op with a hand-written backward (one pass each for the start
//! vector and the weights), so it stays differentiable. Complex values are packed as a trailing
//! dimension of size 2 (`re`, `im`). Memory is `O(n K)` (the table and the weights), never `n^2`.
//!
//! The backward needs the transposed table `T'` (for each source index `l` and column `k`, the row
//! `i` with `T[i, k] = l`, or `n`); for Toeplitz tables, `T'` is the table of the opposite shift.
//!
//! [`GatherPattern::taylor`] fuses a whole truncated Taylor action `T_m(h A)^s v` of the gather
//! operator `A` (or of its adjoint) into one custom op: `m s` kernel launches on a GPU, no host
//! synchronisation, and a backward (the adjoint recursion plus one batched weight gradient) that
//! reuses the Taylor terms the forward stored. The Taylor plan (degree, sub-steps) is chosen in
//! [`crate::taylor`].
//!
//! Every kernel runs on the CPU (rayon) and, with the `cuda` feature, on CUDA devices (the kernels
//! of `src/kernels/gather.cu`, compiled to PTX by nvcc at build time). The CPU kernels are the
//! reference the CUDA ones are tested against (`tests/gather.rs`, on each compiled device).
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use koopman_core::gather::GatherPattern;
//!
//! # fn main() -> koopman_core::Result<()> {
//! // A cyclic shift on 3 positions: out[i] = 2 * y[i - 1] (T = [3, 0, 1] reads 0 at i = 0).
//! let pattern = GatherPattern::new(vec![3, 0, 1], vec![1, 2, 3], 3, 1)?;
//! let y = Tensor::new(&[[[1.0f64, 0.0], [2.0, 0.0], [3.0, 1.0]]], &Device::Cpu)?; // (1, 3, 2)
//! let w = Tensor::new(&[[[2.0f64, 0.0]]], &Device::Cpu)?; // shared weight 2, (1, 1, 2)
//! let out = pattern.apply(&y, &w)?.flatten_all()?.to_vec1::<f64>()?;
//! assert_eq!(out, vec![0.0, 0.0, 2.0, 0.0, 4.0, 0.0]);
//! # Ok(()) }
//! ```

use crate::error::{CoreError, Result};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;
use std::sync::Arc;

/// Work (complex multiply-adds) above which the CPU kernels run in parallel.
const PARALLEL_WORK: usize = 1 << 16;

/// Outputs per parallel task.
const BLOCK: usize = 128;

/// How a gather reads its weights (the `mode` argument of the CUDA kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WeightMode {
    /// `w[i, k]`: one weight per output row.
    PerRow = 0,
    /// `w[k]`: shared by all rows.
    Shared = 1,
    /// `w[T[i, k], k]`: the weight of the gathered row (the adjoint of `PerRow` over `T'`).
    AtTarget = 2,
}

/// Which table a kernel walks and how it weights: the operator `A` or its adjoint `A^*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Direction {
    transposed: bool,
    mode: WeightMode,
    conj: bool,
}

impl Direction {
    /// `A` itself (weights per row, or shared).
    fn forward(shared: bool) -> Self {
        Self {
            transposed: false,
            mode: if shared {
                WeightMode::Shared
            } else {
                WeightMode::PerRow
            },
            conj: false,
        }
    }

    /// `A^*`: the transposed table, conjugated weights read at the gathered row.
    fn adjoint(shared: bool) -> Self {
        Self {
            transposed: true,
            mode: if shared {
                WeightMode::Shared
            } else {
                WeightMode::AtTarget
            },
            conj: true,
        }
    }

    fn reversed(self) -> Self {
        let shared = self.mode == WeightMode::Shared;
        if self.transposed {
            Self::forward(shared)
        } else {
            Self::adjoint(shared)
        }
    }
}

/// A fixed gather pattern: table `T` `(n, K)` and its transpose `T'` `(n, K)`, on the host and,
/// after [`GatherPattern::on_device`], on a GPU.
#[derive(Clone, Debug)]
pub struct GatherPattern {
    table: Arc<Vec<u32>>,
    transpose: Arc<Vec<u32>>,
    n: usize,
    k: usize,
    /// `(T, T')` as `u32` tensors on a non-CPU device.
    device_tables: Option<(Tensor, Tensor)>,
}

impl GatherPattern {
    /// A pattern over `n` positions with `k` columns. Every table entry must be `<= n` (`n` means
    /// "zero"), and `transpose` must be the transpose of `table`.
    pub fn new(table: Vec<u32>, transpose: Vec<u32>, n: usize, k: usize) -> Result<Self> {
        if table.len() != n * k || transpose.len() != n * k {
            return Err(CoreError::ShapeMismatch(format!(
                "gather tables of lengths {} and {} for n = {n}, K = {k}",
                table.len(),
                transpose.len()
            )));
        }
        if n >= u32::MAX as usize {
            return Err(CoreError::InvalidArgument(format!(
                "gather over n = {n} positions: at most {} fit the u32 tables",
                u32::MAX - 1
            )));
        }
        if table
            .iter()
            .chain(transpose.iter())
            .any(|&t| t as usize > n)
        {
            return Err(CoreError::InvalidArgument(format!(
                "gather table entry beyond n = {n}"
            )));
        }
        Ok(Self {
            table: Arc::new(table),
            transpose: Arc::new(transpose),
            n,
            k,
            device_tables: None,
        })
    }

    /// The pattern ready for tensors on `device`: the tables are copied there once (a no-op on
    /// the CPU). Fails for devices without gather kernels (see [`GatherPattern::supports`]).
    pub fn on_device(mut self, device: &Device) -> Result<Self> {
        if !Self::supports(device) {
            return Err(CoreError::Unsupported(format!(
                "no gather kernels for {device:?} (CPU, and CUDA with the `cuda` feature)"
            )));
        }
        self.device_tables = if device.is_cpu() {
            None
        } else {
            Some((
                Tensor::from_slice(&self.table, self.n * self.k, device)?,
                Tensor::from_slice(&self.transpose, self.n * self.k, device)?,
            ))
        };
        Ok(self)
    }

    /// The pattern with its tables already on a device (`table` and `transpose` as `u32` tensors
    /// there, equal to the host tables).
    pub(crate) fn with_device_tables(mut self, table: Tensor, transpose: Tensor) -> Self {
        self.device_tables = Some((table, transpose));
        self
    }

    /// The host table `T` (row-major `(n, K)`).
    pub fn table(&self) -> &[u32] {
        &self.table
    }

    /// Whether the gather kernels run on `device`: always on the CPU, on CUDA devices when the
    /// crate is built with its `cuda` feature.
    pub fn supports(device: &Device) -> bool {
        device.is_cpu() || (cfg!(feature = "cuda") && device.is_cuda())
    }

    /// The same pattern read backwards (table and transpose swapped).
    pub fn transposed(&self) -> Self {
        Self {
            table: self.transpose.clone(),
            transpose: self.table.clone(),
            n: self.n,
            k: self.k,
            device_tables: self
                .device_tables
                .as_ref()
                .map(|(t, tt)| (tt.clone(), t.clone())),
        }
    }

    /// Positions `n`.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the pattern has no positions.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Columns `K`.
    pub fn columns(&self) -> usize {
        self.k
    }

    /// `out[j, i] = sum_k w[i, k] y[j, T[i, k]]` for packed complex `y` `(b, n, 2)` and `w`
    /// `(n, K, 2)` or `(1, K, 2)`; differentiable in both.
    pub fn apply(&self, y: &Tensor, w: &Tensor) -> Result<Tensor> {
        self.check(y, w)?;
        Ok(y.contiguous()?.apply_op2(
            &w.contiguous()?,
            GatherOp {
                pattern: self.clone(),
                adjoint: false,
            },
        )?)
    }

    /// `out[j, l] = sum_k conj(w[i, k]) y[j, i]` over the rows `i` with `T[i, k] = l`: the
    /// adjoint of [`GatherPattern::apply`] (same shapes), differentiable in both.
    pub fn apply_adjoint(&self, y: &Tensor, w: &Tensor) -> Result<Tensor> {
        self.check(y, w)?;
        Ok(y.contiguous()?.apply_op2(
            &w.contiguous()?,
            GatherOp {
                pattern: self.clone(),
                adjoint: true,
            },
        )?)
    }

    /// `T_m(h A)^s v` (or with `A^*` when `adjoint`) for the gather operator `A` with per-row
    /// weights `w` `(n, K, 2)` and packed start vectors `v` `(b, n, 2)`: `s = steps.substeps`
    /// sub-steps of the degree-`m = steps.degree` Taylor polynomial of `exp(h A)`,
    /// `h = steps.step`. One custom op, differentiable in `v` and `w`; returns `(b, n, 2)`.
    pub fn taylor(
        &self,
        v: &Tensor,
        w: &Tensor,
        steps: TaylorSteps,
        adjoint: bool,
    ) -> Result<Tensor> {
        self.check(v, w)?;
        if w.dims()[0] != self.n {
            return Err(CoreError::ShapeMismatch(format!(
                "the fused Taylor action needs per-row weights ({}, {}, 2), got {:?}",
                self.n,
                self.k,
                w.dims()
            )));
        }
        steps.validate()?;
        let op = TaylorSweep {
            pattern: self.clone(),
            direction: if adjoint {
                Direction::adjoint(false)
            } else {
                Direction::forward(false)
            },
            steps,
            backward: false,
        };
        let rows = steps.terms();
        let all = v.contiguous()?.apply_op2(&w.contiguous()?, op)?;
        Ok(all.narrow(0, rows, 1)?.squeeze(0)?)
    }

    /// `out[j, i] = sum_k u(i, k) y[j, T[i, k]]` with weights `u(i, k) = sum_q f[T[i, k], q]
    /// a[q, k]` built in the kernel from `d` shared complex coefficient rows `a` `(d, K, 2)` and
    /// real factors `f` `(n, d)` of the gathered position: the one-factor Toeplitz generator
    /// (`a = i t a^q`, `f` the frequencies) without its `(n, K)` weights, so a product reads
    /// `O(n K)` table entries and `O(n d + d K)` values instead of `O(n K)` complex weights. Not
    /// differentiable (the no-gradient product of a GPU; see [`crate::toeplitz`]).
    pub fn apply_structured(&self, y: &Tensor, a: &Tensor, f: &Tensor) -> Result<Tensor> {
        let (ad, fd) = (a.dims(), f.dims());
        if ad.len() != 3 || ad[1] != self.k || ad[2] != 2 || fd != [self.n, ad[0]] {
            return Err(CoreError::ShapeMismatch(format!(
                "structured gather coefficients {ad:?} and factors {fd:?}, expected (d, {}, 2) and \
                 ({}, d)",
                self.k, self.n
            )));
        }
        self.check(y, &a.narrow(0, 0, 1)?)?;
        if f.dtype() != y.dtype() || !f.device().same_device(y.device()) {
            return Err(CoreError::InvalidArgument(format!(
                "structured gather factors are {:?} on {:?}, the input {:?} on {:?}",
                f.dtype(),
                f.device(),
                y.dtype(),
                y.device()
            )));
        }
        Ok(y.contiguous()?.apply_op3_no_bwd(
            &a.contiguous()?,
            &f.contiguous()?,
            &StructuredGather {
                pattern: self.clone(),
            },
        )?)
    }

    pub(crate) fn check(&self, y: &Tensor, w: &Tensor) -> Result<()> {
        let yd = y.dims();
        let wd = w.dims();
        if yd.len() != 3 || yd[1] != self.n || yd[2] != 2 {
            return Err(CoreError::ShapeMismatch(format!(
                "gather input has shape {yd:?}, expected (b, {}, 2)",
                self.n
            )));
        }
        if wd.len() != 3 || (wd[0] != self.n && wd[0] != 1) || wd[1] != self.k || wd[2] != 2 {
            return Err(CoreError::ShapeMismatch(format!(
                "gather weights have shape {wd:?}, expected ({}|1, {}, 2)",
                self.n, self.k
            )));
        }
        if y.dtype() != w.dtype() {
            return Err(CoreError::InvalidArgument(format!(
                "gather input is {:?} but the weights are {:?}",
                y.dtype(),
                w.dtype()
            )));
        }
        if !matches!(y.dtype(), DType::F32 | DType::F64) {
            return Err(CoreError::InvalidArgument(format!(
                "gathers compute in f32 or f64, got {:?}",
                y.dtype()
            )));
        }
        if !y.device().same_device(w.device()) {
            return Err(CoreError::InvalidArgument(
                "gather input and weights live on different devices".into(),
            ));
        }
        let on_device = self.device_tables.as_ref().map(|(t, _)| t.device());
        let ready = match on_device {
            None => y.device().is_cpu(),
            Some(d) => y.device().same_device(d),
        };
        if !ready {
            return Err(CoreError::InvalidArgument(format!(
                "gather pattern prepared for {:?}, operands on {:?} (use GatherPattern::on_device)",
                on_device.cloned().unwrap_or(Device::Cpu),
                y.device()
            )));
        }
        Ok(())
    }

    pub(crate) fn host_table(&self, transposed: bool) -> &[u32] {
        if transposed {
            &self.transpose
        } else {
            &self.table
        }
    }
}

/// Degree, sub-steps and step of a truncated Taylor action (chosen by [`crate::taylor`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TaylorSteps {
    /// Degree `m >= 1` of the Taylor polynomial.
    pub degree: usize,
    /// Sub-steps `s >= 1`.
    pub substeps: usize,
    /// Step `h` (the total time over `s`).
    pub step: f64,
}

impl TaylorSteps {
    /// Operator applications, `m s` (also the number of stored Taylor terms).
    pub fn terms(&self) -> usize {
        self.degree * self.substeps
    }

    fn validate(&self) -> Result<()> {
        if self.degree == 0 || self.substeps == 0 || !self.step.is_finite() {
            return Err(CoreError::InvalidArgument(format!(
                "Taylor action needs degree >= 1, sub-steps >= 1 and a finite step, got {self:?}"
            )));
        }
        Ok(())
    }
}

pub(crate) fn slice<'a, T: WithDType>(
    s: &'a CpuStorage,
    l: &Layout,
) -> candle_core::Result<&'a [T]> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("gather kernels need contiguous input".into()))?;
    Ok(&s.as_slice::<T>()?[start..end])
}

#[inline]
fn pair<T: WithDType>(data: &[T], idx: usize) -> (f64, f64) {
    (data[2 * idx].to_f64(), data[2 * idx + 1].to_f64())
}

/// One gather (the CPU reference of the CUDA kernel `koopman_gather`):
/// `out[j, i] = scale_out (base[j, i] + scale_in sum_k w(i, k) y[j, T[i, k]])`, the gather
/// skipped when `y` is `None`.
pub(crate) struct Gather<'a, T> {
    pub(crate) y: Option<&'a [T]>,
    pub(crate) w: &'a [T],
    pub(crate) table: &'a [u32],
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) mode: WeightMode,
    pub(crate) conj: bool,
    pub(crate) scale_in: f64,
    pub(crate) base: Option<&'a [T]>,
    pub(crate) scale_out: f64,
}

impl<T: WithDType> Gather<'_, T> {
    pub(crate) fn run(&self, out: &mut [T]) {
        let (n, k, w) = (self.n, self.k, self.w);
        let sign = if self.conj { -1.0 } else { 1.0 };
        let compute = |first: usize, chunk: &mut [T]| {
            for (offset, o) in chunk.chunks_exact_mut(2).enumerate() {
                let idx = first + offset;
                let (j, i) = (idx / n, idx % n);
                let (mut re, mut im) = (0.0, 0.0);
                if let Some(y) = self.y {
                    let yrow = &y[j * 2 * n..(j + 1) * 2 * n];
                    let trow = &self.table[i * k..(i + 1) * k];
                    // One loop per weight mode, chosen once per row.
                    (re, im) = match self.mode {
                        WeightMode::PerRow => {
                            let wrow = &w[2 * i * k..2 * (i + 1) * k];
                            row_sum(trow, yrow, n, |c, _| (wrow[2 * c], wrow[2 * c + 1]), sign)
                        }
                        WeightMode::Shared => {
                            row_sum(trow, yrow, n, |c, _| (w[2 * c], w[2 * c + 1]), sign)
                        }
                        WeightMode::AtTarget => row_sum(
                            trow,
                            yrow,
                            n,
                            |c, src| (w[2 * (src * k + c)], w[2 * (src * k + c) + 1]),
                            sign,
                        ),
                    };
                }
                re *= self.scale_in;
                im *= self.scale_in;
                if let Some(b) = self.base {
                    let (br, bi) = pair(b, idx);
                    re += br;
                    im += bi;
                }
                o[0] = T::from_f64(re * self.scale_out);
                o[1] = T::from_f64(im * self.scale_out);
            }
        };
        let rows = out.len() / (2 * n).max(1);
        if rows * n * k >= PARALLEL_WORK {
            out.par_chunks_mut(2 * BLOCK)
                .enumerate()
                .for_each(|(block, chunk)| compute(block * BLOCK, chunk));
        } else {
            compute(0, out);
        }
    }
}

/// `sum_c w(c, src) y[src]` over one table row (`src = T[i, c] < n`), the imaginary part of each
/// weight multiplied by `sign`; two accumulators, so consecutive multiply-adds do not wait for
/// each other.
#[inline(always)]
fn row_sum<T: WithDType, W: Fn(usize, usize) -> (T, T)>(
    trow: &[u32],
    yrow: &[T],
    n: usize,
    weight: W,
    sign: f64,
) -> (f64, f64) {
    let mut acc = [(0.0f64, 0.0f64); 2];
    for (c, &src) in trow.iter().enumerate() {
        let src = src as usize;
        if src >= n {
            continue;
        }
        let (wr, wi) = weight(c, src);
        let (wr, wi) = (wr.to_f64(), sign * wi.to_f64());
        let (yr, yi) = (yrow[2 * src].to_f64(), yrow[2 * src + 1].to_f64());
        let a = &mut acc[c & 1];
        a.0 += wr * yr - wi * yi;
        a.1 += wr * yi + wi * yr;
    }
    (acc[0].0 + acc[1].0, acc[0].1 + acc[1].1)
}

/// `dw[i', k] = sum_j sum_{i -> i'} conj(y[j, table[i, k]]) g[j, i]` (the CPU reference of the
/// CUDA kernels `koopman_weight_grad_rows` / `_shared`).
fn weight_grad_kernel<T: WithDType>(
    y: &[T],
    g: &[T],
    table: &[u32],
    n: usize,
    k: usize,
    shared_weights: bool,
) -> Vec<T> {
    let b = y.len() / (2 * n);
    let entry = |i: usize, c: usize| -> (f64, f64) {
        let src = table[i * k + c] as usize;
        let mut acc = (0.0, 0.0);
        if src >= n {
            return acc;
        }
        for j in 0..b {
            let yv = pair(y, j * n + src);
            let gv = pair(g, j * n + i);
            // conj(y) * g
            acc.0 += yv.0 * gv.0 + yv.1 * gv.1;
            acc.1 += yv.0 * gv.1 - yv.1 * gv.0;
        }
        acc
    };
    let rows = if shared_weights { 1 } else { n };
    if !shared_weights {
        // One weight row i at a time, rows j outer and columns inner: the row's accumulators
        // stay in cache and each y row is read where the table points.
        let fill_row = |i: usize, out: &mut [T]| {
            let trow = &table[i * k..(i + 1) * k];
            let mut acc = vec![(0.0f64, 0.0f64); k];
            for j in 0..b {
                let gv = pair(g, j * n + i);
                if gv == (0.0, 0.0) {
                    continue;
                }
                let yrow = &y[j * 2 * n..(j + 1) * 2 * n];
                for (a, &src) in acc.iter_mut().zip(trow) {
                    let src = src as usize;
                    if src >= n {
                        continue;
                    }
                    let yv = (yrow[2 * src].to_f64(), yrow[2 * src + 1].to_f64());
                    // conj(y) * g
                    a.0 += yv.0 * gv.0 + yv.1 * gv.1;
                    a.1 += yv.0 * gv.1 - yv.1 * gv.0;
                }
            }
            for (o, a) in out.chunks_exact_mut(2).zip(&acc) {
                o[0] = T::from_f64(a.0);
                o[1] = T::from_f64(a.1);
            }
        };
        let mut out = vec![T::zero(); n * k * 2];
        if b * n * k >= PARALLEL_WORK {
            out.par_chunks_mut(2 * k)
                .enumerate()
                .for_each(|(i, chunk)| fill_row(i, chunk));
        } else {
            out.chunks_mut(2 * k)
                .enumerate()
                .for_each(|(i, chunk)| fill_row(i, chunk));
        }
        return out;
    }
    let fill = |first: usize, chunk: &mut [T]| {
        for (offset, out) in chunk.chunks_exact_mut(2).enumerate() {
            let idx = first + offset;
            let (re, im) = (0..n).fold((0.0, 0.0), |s, i| {
                let e = entry(i, idx);
                (s.0 + e.0, s.1 + e.1)
            });
            out[0] = T::from_f64(re);
            out[1] = T::from_f64(im);
        }
    };
    let mut out = vec![T::zero(); rows * k * 2];
    if b * n * k >= PARALLEL_WORK {
        out.par_chunks_mut(2 * BLOCK)
            .enumerate()
            .for_each(|(block, chunk)| fill(block * BLOCK, chunk));
    } else {
        fill(0, &mut out);
    }
    out
}

/// `wt[l, c] = conj(w[T'[l, c], c])` (0 outside) for the transposed table `table_t`: the adjoint
/// gather's weights per output row (the CPU reference of `koopman_transpose_weights`).
fn transpose_weights<T: WithDType>(w: &[T], table_t: &[u32], n: usize, k: usize) -> Vec<T> {
    let mut wt = vec![T::from_f64(0.0); 2 * n * k];
    for (idx, (o, &src)) in wt.chunks_exact_mut(2).zip(table_t).enumerate() {
        let src = src as usize;
        if src < n {
            let from = 2 * (src * k + idx % k);
            o[0] = w[from];
            o[1] = T::from_f64(-w[from + 1].to_f64());
        }
    }
    wt
}

/// The weights and direction a sweep of `dir` gathers should use: for the adjoint of per-row
/// weights, the transposed weights read per row (one pass here instead of scattered reads in
/// every gather of the sweep).
fn per_row_weights<'a, T: WithDType>(
    w: &'a [T],
    table: &[u32],
    n: usize,
    k: usize,
    dir: Direction,
) -> (std::borrow::Cow<'a, [T]>, Direction) {
    if dir.mode == WeightMode::AtTarget {
        (
            std::borrow::Cow::Owned(transpose_weights(w, table, n, k)),
            Direction {
                transposed: dir.transposed,
                mode: WeightMode::PerRow,
                conj: false,
            },
        )
    } else {
        (std::borrow::Cow::Borrowed(w), dir)
    }
}

/// The forward Taylor sweep on the CPU: rows `0..m s` of the result hold the input of every
/// operator application (row `s m + k - 1` holds `z_{k-1}` of sub-step `s`), row `m s` the result.
#[allow(clippy::too_many_arguments)]
fn taylor_forward_cpu<T: WithDType>(
    v: &[T],
    w: &[T],
    table: &[u32],
    n: usize,
    k: usize,
    dir: Direction,
    steps: TaylorSteps,
) -> Vec<T> {
    let (w, dir) = per_row_weights(w, table, n, k, dir);
    let w = &w[..];
    let len = v.len();
    let m = steps.degree;
    let rows = steps.terms();
    let mut out = vec![T::zero(); (rows + 1) * len];
    out[..len].copy_from_slice(v);
    let mut z = vec![T::zero(); len];
    for s in 0..steps.substeps {
        let start = s * m;
        let acc = (s + 1) * m;
        out.copy_within(start * len..(start + 1) * len, acc * len);
        for term in 1..=m {
            let input = &out[(start + term - 1) * len..(start + term) * len];
            Gather {
                y: Some(input),
                w,
                table,
                n,
                k,
                mode: dir.mode,
                conj: dir.conj,
                scale_in: 1.0,
                base: None,
                scale_out: steps.step / term as f64,
            }
            .run(&mut z);
            if term < m {
                out[(start + term) * len..(start + term + 1) * len].copy_from_slice(&z);
            }
            for (a, &x) in out[acc * len..(acc + 1) * len].iter_mut().zip(&z) {
                *a += x;
            }
        }
    }
    out
}

/// The adjoint Taylor sweep on the CPU for the gradient `g` of the result: rows `0..m s` hold
/// `u_k = (h / k) zbar_k` aligned with the stored inputs, row `m s` the gradient of the start
/// vector (`dir` is the direction of the *forward* sweep).
#[allow(clippy::too_many_arguments)]
fn taylor_backward_cpu<T: WithDType>(
    g: &[T],
    w: &[T],
    table: &[u32],
    n: usize,
    k: usize,
    dir: Direction,
    steps: TaylorSteps,
) -> Vec<T> {
    let (w, dir) = per_row_weights(w, table, n, k, dir);
    let w = &w[..];
    let len = g.len();
    let m = steps.degree;
    let rows = steps.terms();
    let mut out = vec![T::zero(); (rows + 1) * len];
    let mut grad = g.to_vec();
    let mut next = vec![T::zero(); len];
    let alpha = |term: usize| steps.step / term as f64;
    for s in (0..steps.substeps).rev() {
        let start = s * m;
        // u_m = alpha_m g; u_k = alpha_k (g + A^* u_{k+1}); zbar_0 = g + A^* u_1.
        Gather {
            y: None,
            w,
            table,
            n,
            k,
            mode: dir.mode,
            conj: dir.conj,
            scale_in: 1.0,
            base: Some(&grad),
            scale_out: alpha(m),
        }
        .run(&mut out[(start + m - 1) * len..(start + m) * len]);
        for term in (0..m).rev() {
            let (head, tail) = out.split_at_mut((start + term) * len);
            let input = &tail[..len];
            let target: &mut [T] = if term == 0 {
                &mut next
            } else {
                &mut head[(start + term - 1) * len..]
            };
            Gather {
                y: Some(input),
                w,
                table,
                n,
                k,
                mode: dir.mode,
                conj: dir.conj,
                scale_in: 1.0,
                base: Some(&grad),
                scale_out: if term == 0 { 1.0 } else { alpha(term) },
            }
            .run(&mut target[..len]);
        }
        std::mem::swap(&mut grad, &mut next);
    }
    out[rows * len..].copy_from_slice(&grad);
    out
}

macro_rules! dispatch_float {
    ($dtype:expr, $name:literal, |$t:ident| $body:expr) => {
        match $dtype {
            DType::F64 => {
                type $t = f64;
                $body
            }
            DType::F32 => {
                type $t = f32;
                $body
            }
            _ => Err(candle_core::Error::Msg(
                concat!($name, " supports f32 and f64 only").into(),
            )),
        }
    };
}
pub(crate) use dispatch_float;

/// The weighted gather `A` (or, with `adjoint`, `A^*`), differentiable; each is the other's
/// input gradient.
struct GatherOp {
    pattern: GatherPattern,
    adjoint: bool,
}

impl GatherOp {
    fn direction(&self, l2: &Layout) -> Direction {
        let shared = l2.dims()[0] == 1;
        if self.adjoint {
            Direction::adjoint(shared)
        } else {
            Direction::forward(shared)
        }
    }
}

impl CustomOp2 for GatherOp {
    fn name(&self) -> &'static str {
        if self.adjoint {
            "koopman-weighted-gather-adjoint"
        } else {
            "koopman-weighted-gather"
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        cpu_gather(&self.pattern, self.direction(l2), s1, l1, s2, l2)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        cuda::gather(&self.pattern, self.direction(l2), s1, l1, s2, l2)
    }

    fn bwd(
        &self,
        y: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let shared = w.dims()[0] == 1;
        // The input gradient of A is A^* of the output gradient (a gather along the transpose
        // with the weights conjugated and read at the gathered row), and vice versa.
        let dy = grad.apply_op2_no_bwd(
            w,
            &GatherOp {
                pattern: self.pattern.clone(),
                adjoint: !self.adjoint,
            },
        )?;
        // A: dw[i, k] = sum_j conj(y[j, T[i, k]]) g[j, i]; A^* takes conjugated weights at the
        // gathered row: dw[i, k] = sum_j conj(g[j, T[i, k]]) y[j, i].
        let (first, second) = if self.adjoint { (&grad, y) } else { (y, &grad) };
        let dw = first.apply_op2_no_bwd(
            second,
            &WeightGrad {
                pattern: self.pattern.clone(),
                shared,
            },
        )?;
        Ok((Some(dy), Some(dw)))
    }
}

fn cpu_gather(
    pattern: &GatherPattern,
    dir: Direction,
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> candle_core::Result<(CpuStorage, Shape)> {
    dispatch_float!(s1.dtype(), "weighted gather", |T| {
        let y = slice::<T>(s1, l1)?;
        let mut out = vec![T::from_f64(0.0); y.len()];
        Gather {
            y: Some(y),
            w: slice::<T>(s2, l2)?,
            table: pattern.host_table(dir.transposed),
            n: pattern.n,
            k: pattern.k,
            mode: dir.mode,
            conj: dir.conj,
            scale_in: 1.0,
            base: None,
            scale_out: 1.0,
        }
        .run(&mut out);
        Ok((T::to_cpu_storage_owned(out), l1.shape().clone()))
    })
}

/// [`GatherPattern::apply_structured`] on the CPU (the reference of the CUDA kernel
/// `koopman_gather_structured`): `out[j, i] = sum_c (sum_q f[src, q] a[q, c]) y[j, src]`,
/// `src = T[i, c] < n`.
fn structured_gather_cpu<T: WithDType>(
    y: &[T],
    a: &[T],
    f: &[T],
    table: &[u32],
    n: usize,
    k: usize,
) -> Vec<T> {
    let d = f.len() / n.max(1);
    let mut out = vec![T::zero(); y.len()];
    for (yrow, orow) in y.chunks_exact(2 * n).zip(out.chunks_exact_mut(2 * n)) {
        for (i, o) in orow.chunks_exact_mut(2).enumerate() {
            let (mut re, mut im) = (0.0, 0.0);
            for (c, &src) in table[i * k..(i + 1) * k].iter().enumerate() {
                let src = src as usize;
                if src >= n {
                    continue;
                }
                let (mut ur, mut ui) = (0.0, 0.0);
                for q in 0..d {
                    let fq = f[src * d + q].to_f64();
                    ur += fq * a[2 * (q * k + c)].to_f64();
                    ui += fq * a[2 * (q * k + c) + 1].to_f64();
                }
                let (yr, yi) = pair(yrow, src);
                re += ur * yr - ui * yi;
                im += ur * yi + ui * yr;
            }
            o[0] = T::from_f64(re);
            o[1] = T::from_f64(im);
        }
    }
    out
}

/// `(y (b, n, 2), a (d, K, 2), f (n, d)) -> (b, n, 2)`, see [`GatherPattern::apply_structured`].
struct StructuredGather {
    pattern: GatherPattern,
}

impl candle_core::CustomOp3 for StructuredGather {
    fn name(&self) -> &'static str {
        "koopman-structured-gather"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let p = &self.pattern;
        dispatch_float!(s1.dtype(), "structured gather", |T| {
            let out = structured_gather_cpu::<T>(
                slice(s1, l1)?,
                slice(s2, l2)?,
                slice(s3, l3)?,
                &p.table,
                p.n,
                p.k,
            );
            Ok((T::to_cpu_storage_owned(out), l1.shape().clone()))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        cuda::structured(&self.pattern, s1, l1, s2, l2, s3, l3)
    }
}

/// Gradient with respect to the weights: `dw[i, k] = sum_j conj(first[j, T[i, k]]) second[j, i]`.
struct WeightGrad {
    pattern: GatherPattern,
    shared: bool,
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "koopman-weighted-gather-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let p = &self.pattern;
        let rows = if self.shared { 1 } else { p.n };
        dispatch_float!(s1.dtype(), "weighted gather gradient", |T| {
            let out = weight_grad_kernel::<T>(
                slice(s1, l1)?,
                slice(s2, l2)?,
                &p.table,
                p.n,
                p.k,
                self.shared,
            );
            Ok((T::to_cpu_storage_owned(out), Shape::from((rows, p.k, 2))))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        cuda::weight_grad(&self.pattern, self.shared, s1, l1, s2, l2)
    }
}

/// One sweep of the fused Taylor action, `(x (b, n, 2), w (n, K, 2)) -> (m s + 1, b, n, 2)`:
/// the forward sweep (`x = v`; rows `0..m s` the stored Taylor inputs, the last row the result)
/// or, with `backward`, its adjoint sweep (`x` the gradient of the result; rows `0..m s` the
/// scaled adjoint terms aligned with the stored inputs, the last row the gradient of `v`).
/// `direction` is the operator of the forward sweep.
struct TaylorSweep {
    pattern: GatherPattern,
    direction: Direction,
    steps: TaylorSteps,
    backward: bool,
}

impl TaylorSweep {
    /// The operator this sweep applies.
    fn applied(&self) -> Direction {
        if self.backward {
            self.direction.reversed()
        } else {
            self.direction
        }
    }
}

impl CustomOp2 for TaylorSweep {
    fn name(&self) -> &'static str {
        if self.backward {
            "koopman-taylor-action-backward"
        } else {
            "koopman-taylor-action"
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let p = &self.pattern;
        let dir = self.applied();
        dispatch_float!(s1.dtype(), "Taylor action", |T| {
            let sweep = if self.backward {
                taylor_backward_cpu::<T>
            } else {
                taylor_forward_cpu::<T>
            };
            let (x, w) = (slice(s1, l1)?, slice(s2, l2)?);
            let table = p.host_table(dir.transposed);
            // The sweep on a worker of the thread pool, so that its m s parallel gathers start
            // there instead of each being handed off from (and back to) a foreign thread.
            let out = rayon::scope(|_| sweep(x, w, table, p.n, p.k, dir, self.steps));
            let mut dims = vec![self.steps.terms() + 1];
            dims.extend_from_slice(l1.dims());
            Ok((T::to_cpu_storage_owned(out), Shape::from(dims)))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        cuda::taylor(
            &self.pattern,
            self.applied(),
            self.steps,
            self.backward,
            s1,
            l1,
            s2,
            l2,
        )
    }

    fn bwd(
        &self,
        _v: &Tensor,
        w: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        if self.backward {
            return Err(candle_core::Error::Msg(
                "the Taylor action has no second derivative".into(),
            ));
        }
        // Only the result row carries a gradient: the stored terms are internal.
        let rows = self.steps.terms();
        let g = grad.narrow(0, rows, 1)?.squeeze(0)?.contiguous()?;
        let (b, n) = (g.dims()[0], g.dims()[1]);
        let back = g.apply_op2_no_bwd(
            w,
            &TaylorSweep {
                pattern: self.pattern.clone(),
                direction: self.direction,
                steps: self.steps,
                backward: true,
            },
        )?;
        let dv = back.narrow(0, rows, 1)?.squeeze(0)?;
        let u = back.narrow(0, 0, rows)?.reshape((rows * b, n, 2))?;
        let z = res.narrow(0, 0, rows)?.reshape((rows * b, n, 2))?;
        // Forward A: dw[i, k] = sum conj(z[T[i, k]]) u[i]; adjoint A^*: sum conj(u[T[i, k]]) z[i].
        let (first, second) = if self.direction.transposed {
            (u, z)
        } else {
            (z, u)
        };
        let dw = first.apply_op2_no_bwd(
            &second,
            &WeightGrad {
                pattern: self.pattern.clone(),
                shared: false,
            },
        )?;
        Ok((Some(dv), Some(dw)))
    }
}

/// The CUDA launches of the gather kernels (`src/kernels/gather.cu`).
#[cfg(feature = "cuda")]
pub(crate) mod cuda {
    use super::{Direction, GatherPattern, TaylorSteps, WeightMode};
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{
        CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig, PushKernelArg,
    };
    use candle_core::cuda_backend::{CudaDevice, WrapErr};
    use candle_core::{CudaStorage, DType, Layout, Shape, Storage, WithDType};

    const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/gather.ptx"));
    const MODULE: &str = "koopman_gather";
    const THREADS: u32 = 256;

    type R<T> = candle_core::Result<T>;

    fn err(msg: String) -> candle_core::Error {
        candle_core::Error::Msg(msg)
    }

    /// The kernels of one float type on one device.
    pub(crate) struct Kernels<'a> {
        dev: &'a CudaDevice,
        suffix: &'static str,
    }

    impl<'a> Kernels<'a> {
        pub(crate) fn new(dev: &'a CudaDevice, dtype: DType) -> R<Self> {
            let suffix = match dtype {
                DType::F32 => "f32",
                DType::F64 => "f64",
                d => {
                    return Err(err(format!(
                        "gather kernels support f32 and f64, got {d:?}"
                    )))
                }
            };
            Ok(Self { dev, suffix })
        }

        /// The exported name of `kernel` for this float type (`koopman_{kernel}_{f32|f64}`).
        pub(crate) fn name(&self, kernel: &str) -> String {
            format!("koopman_{kernel}_{}", self.suffix)
        }

        /// `out = scale_out (base + scale_in gather(y))` over `rows` rows; pointers may be 0.
        #[allow(clippy::too_many_arguments)]
        fn gather<T: DeviceRepr + WithDType>(
            &self,
            ptrs: [u64; 6],
            scale_in: f64,
            scale_out: f64,
            n: usize,
            k: usize,
            rows: usize,
            dir: Direction,
        ) -> R<()> {
            let [y, w, table, out, base, acc] = ptrs;
            let func = self
                .dev
                .get_or_load_custom_func(&self.name("gather"), MODULE, PTX)?;
            let (scale_in, scale_out) = (T::from_f64(scale_in), T::from_f64(scale_out));
            let (n32, k32, rows32) = (n as u32, k as u32, rows as u32);
            let (mode, conj) = (dir.mode as i32, i32::from(dir.conj));
            let threads = (rows * n) as u64 * 32;
            let cfg = LaunchConfig {
                grid_dim: (threads.div_ceil(THREADS as u64) as u32, 1, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = func.builder();
            b.arg(&y)
                .arg(&w)
                .arg(&table)
                .arg(&out)
                .arg(&base)
                .arg(&acc)
                .arg(&scale_in)
                .arg(&scale_out)
                .arg(&n32)
                .arg(&k32)
                .arg(&rows32)
                .arg(&mode)
                .arg(&conj);
            // SAFETY: the pointers are live device allocations of the sizes the kernel reads and
            // writes (checked by the callers), all on this device's stream.
            unsafe { b.launch(cfg) }.w()?;
            Ok(())
        }

        fn copy(&self, from: u64, to: u64, len: usize) -> R<()> {
            let func = self
                .dev
                .get_or_load_custom_func(&self.name("copy"), MODULE, PTX)?;
            let len64 = len as u64;
            let cfg = LaunchConfig {
                grid_dim: (len64.div_ceil(THREADS as u64) as u32, 1, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = func.builder();
            b.arg(&from).arg(&to).arg(&len64);
            // SAFETY: both pointers hold `len` elements of the kernel's type.
            unsafe { b.launch(cfg) }.w()?;
            Ok(())
        }
    }

    /// The device address of a storage's data at the layout's offset (contiguous data only).
    pub(crate) fn address<T: candle_core::cuda_backend::CudaDType + DeviceRepr>(
        s: &CudaStorage,
        l: &Layout,
    ) -> R<(u64, usize)> {
        let (start, end) = l
            .contiguous_offsets()
            .ok_or_else(|| err("gather kernels need contiguous input".into()))?;
        let slice: &CudaSlice<T> = s.as_cuda_slice::<T>()?;
        let stream = s.device.cuda_stream();
        let (ptr, _sync) = slice.device_ptr(&stream);
        Ok((ptr + (start * std::mem::size_of::<T>()) as u64, end - start))
    }

    pub(crate) fn table_address(
        pattern: &GatherPattern,
        transposed: bool,
    ) -> R<(u64, CudaStorageGuard)> {
        let (t, tt) = pattern
            .device_tables
            .as_ref()
            .ok_or_else(|| err("gather pattern has no device tables (on_device)".into()))?;
        let tensor = if transposed { tt.clone() } else { t.clone() };
        let ptr = {
            let (storage, layout) = tensor.storage_and_layout();
            match &*storage {
                Storage::Cuda(cs) => address::<u32>(cs, layout)?.0,
                _ => return Err(err("gather tables are not on a CUDA device".into())),
            }
        };
        // The tensor (and so the allocation) is kept alive by the returned guard.
        Ok((ptr, CudaStorageGuard(tensor)))
    }

    /// Keeps a tensor alive while raw addresses into it are in use.
    pub(crate) struct CudaStorageGuard(#[allow(dead_code)] candle_core::Tensor);

    pub(crate) fn alloc<T: DeviceRepr>(dev: &CudaDevice, len: usize) -> R<CudaSlice<T>> {
        // SAFETY: every element is written by the kernels before it is read.
        unsafe { dev.alloc::<T>(len.max(1)) }
    }

    pub(crate) fn base_address<T: DeviceRepr>(out: &mut CudaSlice<T>, dev: &CudaDevice) -> u64 {
        let stream = dev.cuda_stream();
        let (ptr, _sync) = out.device_ptr_mut(&stream);
        ptr
    }

    macro_rules! dispatch {
        ($dtype:expr, |$t:ident| $body:expr) => {
            match $dtype {
                DType::F64 => {
                    type $t = f64;
                    $body
                }
                DType::F32 => {
                    type $t = f32;
                    $body
                }
                d => Err(err(format!(
                    "gather kernels support f32 and f64, got {d:?}"
                ))),
            }
        };
    }

    pub(super) fn gather(
        pattern: &GatherPattern,
        dir: Direction,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> R<(CudaStorage, Shape)> {
        let dev = &s1.device;
        let kernels = Kernels::new(dev, s1.dtype())?;
        let (table, _keep) = table_address(pattern, dir.transposed)?;
        dispatch!(s1.dtype(), |T| {
            let (y, len) = address::<T>(s1, l1)?;
            let (w, _) = address::<T>(s2, l2)?;
            let rows = len / (2 * pattern.n);
            let mut out = alloc::<T>(dev, len)?;
            let o = base_address(&mut out, dev);
            kernels.gather::<T>(
                [y, w, table, o, 0, 0],
                1.0,
                1.0,
                pattern.n,
                pattern.k,
                rows,
                dir,
            )?;
            Ok((
                CudaStorage::wrap_cuda_slice(out, dev.clone()),
                l1.shape().clone(),
            ))
        })
    }

    pub(super) fn structured(
        pattern: &GatherPattern,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
        s3: &CudaStorage,
        l3: &Layout,
    ) -> R<(CudaStorage, Shape)> {
        let dev = &s1.device;
        let kernels = Kernels::new(dev, s1.dtype())?;
        let (table, _keep) = table_address(pattern, false)?;
        let (n, k) = (pattern.n, pattern.k);
        let d = l3.dims()[1];
        dispatch!(s1.dtype(), |T| {
            let (y, len) = address::<T>(s1, l1)?;
            let (a, _) = address::<T>(s2, l2)?;
            let (f, _) = address::<T>(s3, l3)?;
            let rows = len / (2 * n);
            let mut out = alloc::<T>(dev, len)?;
            let o = base_address(&mut out, dev);
            let func =
                dev.get_or_load_custom_func(&kernels.name("gather_structured"), MODULE, PTX)?;
            let (n32, k32, d32, rows32) = (n as u32, k as u32, d as u32, rows as u32);
            let threads = (rows * n) as u64 * 32;
            let cfg = LaunchConfig {
                grid_dim: (threads.div_ceil(THREADS as u64) as u32, 1, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = func.builder();
            b.arg(&y)
                .arg(&a)
                .arg(&f)
                .arg(&table)
                .arg(&o)
                .arg(&n32)
                .arg(&k32)
                .arg(&d32)
                .arg(&rows32);
            // SAFETY: y holds `rows` rows of n complex values, a d x k complex coefficients, f
            // n x d factors, the table n x k entries, and `out` the size of y.
            unsafe { b.launch(cfg) }.w()?;
            Ok((
                CudaStorage::wrap_cuda_slice(out, dev.clone()),
                l1.shape().clone(),
            ))
        })
    }

    pub(super) fn weight_grad(
        pattern: &GatherPattern,
        shared: bool,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> R<(CudaStorage, Shape)> {
        let dev = &s1.device;
        let kernels = Kernels::new(dev, s1.dtype())?;
        let (table, _keep) = table_address(pattern, false)?;
        let (n, k) = (pattern.n, pattern.k);
        let out_rows = if shared { 1 } else { n };
        dispatch!(s1.dtype(), |T| {
            let (y, len) = address::<T>(s1, l1)?;
            let (g, _) = address::<T>(s2, l2)?;
            let rows = (len / (2 * n)) as u32;
            let mut out = alloc::<T>(dev, out_rows * k * 2)?;
            let o = base_address(&mut out, dev);
            let (n32, k32) = (n as u32, k as u32);
            let kernel = if shared {
                "weight_grad_shared"
            } else {
                "weight_grad_rows"
            };
            let func = dev.get_or_load_custom_func(&kernels.name(kernel), MODULE, PTX)?;
            let blocks = if shared {
                k32
            } else {
                ((n * k) as u64).div_ceil(THREADS as u64) as u32
            };
            let cfg = LaunchConfig {
                grid_dim: (blocks, 1, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = func.builder();
            b.arg(&y)
                .arg(&g)
                .arg(&table)
                .arg(&o)
                .arg(&n32)
                .arg(&k32)
                .arg(&rows);
            // SAFETY: y and g hold `rows` rows of n complex values, the output n (or 1) x k.
            unsafe { b.launch(cfg) }.w()?;
            Ok((
                CudaStorage::wrap_cuda_slice(out, dev.clone()),
                Shape::from((out_rows, k, 2)),
            ))
        })
    }

    /// The forward sweep (`backward` false: input `v`) or the adjoint sweep (`backward` true:
    /// input the gradient of the result), with `dir` the direction of the operator applied in
    /// this sweep. Same row layout as the CPU sweeps.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn taylor(
        pattern: &GatherPattern,
        dir: Direction,
        steps: TaylorSteps,
        backward: bool,
        s1: &CudaStorage,
        l1: &Layout,
        s2: &CudaStorage,
        l2: &Layout,
    ) -> R<(CudaStorage, Shape)> {
        let dev = &s1.device;
        let kernels = Kernels::new(dev, s1.dtype())?;
        let (table, _keep) = table_address(pattern, dir.transposed)?;
        let (n, k, m) = (pattern.n, pattern.k, steps.degree);
        let terms = steps.terms();
        dispatch!(s1.dtype(), |T| {
            let (input, len) = address::<T>(s1, l1)?;
            let (w, _) = address::<T>(s2, l2)?;
            // The adjoint of per-row weights: transpose them once, then every gather of the
            // sweep reads its weights per output row (coalesced).
            let mut transposed = None;
            let (w, dir) = if dir.mode == WeightMode::AtTarget {
                let mut wt = alloc::<T>(dev, 2 * n * k)?;
                let wt_ptr = base_address(&mut wt, dev);
                let func =
                    dev.get_or_load_custom_func(&kernels.name("transpose_weights"), MODULE, PTX)?;
                let (n32, k32) = (n as u32, k as u32);
                let cfg = LaunchConfig {
                    grid_dim: (((n * k) as u64).div_ceil(THREADS as u64) as u32, 1, 1),
                    block_dim: (THREADS, 1, 1),
                    shared_mem_bytes: 0,
                };
                let mut b = func.builder();
                b.arg(&w).arg(&table).arg(&wt_ptr).arg(&n32).arg(&k32);
                // SAFETY: w holds n x k complex weights, the table n x k entries, wt n x k.
                unsafe { b.launch(cfg) }.w()?;
                transposed = Some(wt);
                let per_row = Direction {
                    transposed: dir.transposed,
                    mode: WeightMode::PerRow,
                    conj: false,
                };
                (wt_ptr, per_row)
            } else {
                (w, dir)
            };
            let cols = len / (2 * n);
            let mut out = alloc::<T>(dev, (terms + 1) * len)?;
            let base = base_address(&mut out, dev);
            let row = |r: usize| base + (r * len * std::mem::size_of::<T>()) as u64;
            let alpha = |term: usize| steps.step / term as f64;
            let launch = |y: u64, o: u64, b: u64, acc: u64, scale_out: f64| {
                kernels.gather::<T>([y, w, table, o, b, acc], 1.0, scale_out, n, k, cols, dir)
            };
            if backward {
                let mut grad = input;
                for s in (0..steps.substeps).rev() {
                    let start = s * m;
                    launch(0, row(start + m - 1), grad, 0, alpha(m))?;
                    for term in (1..m).rev() {
                        launch(
                            row(start + term),
                            row(start + term - 1),
                            grad,
                            0,
                            alpha(term),
                        )?;
                    }
                    // zbar_0 into the last row (read as `base` and written by the same thread).
                    launch(row(start), row(terms), grad, 0, 1.0)?;
                    grad = row(terms);
                }
            } else {
                kernels.copy(input, row(0), len)?;
                for s in 0..steps.substeps {
                    let start = s * m;
                    let acc = row((s + 1) * m);
                    kernels.copy(row(start), acc, len)?;
                    for term in 1..=m {
                        let o = if term < m { row(start + term) } else { 0 };
                        launch(row(start + term - 1), o, 0, acc, alpha(term))?;
                    }
                }
            }
            // The transposed weights are freed in stream order after the sweep's kernels.
            drop(transposed);
            let mut dims = vec![terms + 1];
            dims.extend_from_slice(l1.dims());
            Ok((
                CudaStorage::wrap_cuda_slice(out, dev.clone()),
                Shape::from(dims),
            ))
        })
    }
}
