//! Weighted gathers on the CPU: the inner kernel of structured operators.
//!
//! A weighted gather maps rows `y` of shape `(b, n)` to `out[j, i] = sum_k w[i, k] y[j, T[i, k]]`
//! for a fixed index table `T` of shape `(n, K)` (entries equal to `n` read zero) and complex
//! weights `w` of shape `(n, K)` or `(1, K)` (one weight per column `k`, shared by all rows).
//! candle's `index_select` + broadcast multiply + sum computes the same thing portably but makes
//! three passes over `b n K` values; this module does it in one pass as a candle custom op with a
//! hand-written backward (also one pass each for the start vector and the weights), so it stays
//! differentiable. Complex values are packed as a trailing dimension of size 2 (`re`, `im`).
//!
//! The backward needs the transposed table `T'` (for each source index `l` and column `k`, the row
//! `i` with `T[i, k] = l`, or `n`); for Toeplitz tables, `T'` is the table of the opposite shift.

use crate::error::{CoreError, Result};
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;
use std::sync::Arc;

/// Work (complex multiply-adds) above which the kernels run in parallel.
const PARALLEL_WORK: usize = 1 << 16;

/// A fixed gather pattern: table `T` `(n, K)` and its transpose `T'` `(n, K)`.
#[derive(Clone, Debug)]
pub struct GatherPattern {
    table: Arc<Vec<u32>>,
    transpose: Arc<Vec<u32>>,
    n: usize,
    k: usize,
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
        })
    }

    /// The same pattern read backwards (table and transpose swapped).
    pub fn transposed(&self) -> Self {
        Self {
            table: self.transpose.clone(),
            transpose: self.table.clone(),
            n: self.n,
            k: self.k,
        }
    }

    /// `out[j, i] = sum_k w[i, k] y[j, T[i, k]]` for packed complex `y` `(b, n, 2)` and `w`
    /// `(n, K, 2)` or `(1, K, 2)`; differentiable in both. CPU tensors only.
    pub fn apply(&self, y: &Tensor, w: &Tensor) -> Result<Tensor> {
        self.check(y, w)?;
        Ok(y.contiguous()?.apply_op2(
            &w.contiguous()?,
            Forward {
                pattern: self.clone(),
            },
        )?)
    }

    fn check(&self, y: &Tensor, w: &Tensor) -> Result<()> {
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
            return Err(CoreError::InvalidArgument(
                "gather input and weights differ in dtype".into(),
            ));
        }
        Ok(())
    }
}

fn slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [T]> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("gather kernels need contiguous input".into()))?;
    Ok(&s.as_slice::<T>()?[start..end])
}

#[inline]
fn pair<T: WithDType>(data: &[T], idx: usize) -> (f64, f64) {
    (data[2 * idx].to_f64(), data[2 * idx + 1].to_f64())
}

/// Outputs per parallel task.
const BLOCK: usize = 128;

/// `out[j, i] = sum_k conj?(w[i', k]) y[j, table[i, k]]` with `i' = i` or `0` (shared weights),
/// or, with `weight_at_target`, `w` indexed at the gathered position `table[i, k]` instead of `i`.
#[allow(clippy::too_many_arguments)]
fn gather_kernel<T: WithDType>(
    y: &[T],
    w: &[T],
    table: &[u32],
    n: usize,
    k: usize,
    shared_weights: bool,
    conj_w: bool,
    weight_at_target: bool,
) -> Vec<T> {
    let b = y.len() / (2 * n);
    let sign = if conj_w { -1.0 } else { 1.0 };
    let compute = |first: usize, chunk: &mut [T]| {
        for (offset, out) in chunk.chunks_exact_mut(2).enumerate() {
            let idx = first + offset;
            let (j, i) = (idx / n, idx % n);
            let yrow = &y[j * 2 * n..(j + 1) * 2 * n];
            let trow = &table[i * k..(i + 1) * k];
            let (mut re, mut im) = (0.0, 0.0);
            for (c, &src) in trow.iter().enumerate() {
                let src = src as usize;
                if src == n {
                    continue;
                }
                let widx = if shared_weights {
                    c
                } else if weight_at_target {
                    src * k + c
                } else {
                    i * k + c
                };
                let (wr, wi) = pair(w, widx);
                let wi = sign * wi;
                let (yr, yi) = pair(yrow, src);
                re += wr * yr - wi * yi;
                im += wr * yi + wi * yr;
            }
            out[0] = T::from_f64(re);
            out[1] = T::from_f64(im);
        }
    };
    let mut out = vec![T::zero(); b * n * 2];
    if b * n * k >= PARALLEL_WORK {
        out.par_chunks_mut(2 * BLOCK)
            .enumerate()
            .for_each(|(block, chunk)| compute(block * BLOCK, chunk));
    } else {
        compute(0, &mut out);
    }
    out
}

/// `dw[i', k] = sum_j sum_{i -> i'} conj(y[j, table[i, k]]) g[j, i]`.
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
        if src == n {
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
    let fill = |first: usize, chunk: &mut [T]| {
        for (offset, out) in chunk.chunks_exact_mut(2).enumerate() {
            let idx = first + offset;
            let (re, im) = if shared_weights {
                (0..n).fold((0.0, 0.0), |s, i| {
                    let e = entry(i, idx);
                    (s.0 + e.0, s.1 + e.1)
                })
            } else {
                entry(idx / k, idx % k)
            };
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

macro_rules! dispatch_float {
    ($s:expr, $name:literal, |$t:ident| $body:expr) => {
        match $s {
            CpuStorage::F64(_) => {
                type $t = f64;
                $body
            }
            CpuStorage::F32(_) => {
                type $t = f32;
                $body
            }
            _ => Err(candle_core::Error::Msg(
                concat!($name, " supports f32 and f64 only").into(),
            )),
        }
    };
}

/// Forward weighted gather (differentiable).
struct Forward {
    pattern: GatherPattern,
}

impl CustomOp2 for Forward {
    fn name(&self) -> &'static str {
        "koopman-weighted-gather"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let p = &self.pattern;
        let shared = l2.dims()[0] == 1;
        dispatch_float!(s1, "weighted gather", |T| {
            let out = gather_kernel::<T>(
                slice(s1, l1)?,
                slice(s2, l2)?,
                &p.table,
                p.n,
                p.k,
                shared,
                false,
                false,
            );
            Ok((T::to_cpu_storage_owned(out), l1.shape().clone()))
        })
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
        // dy[j, l] = sum_k conj(w[i, k]) g[j, i] over i = T'[l, k]: a gather along the transpose
        // with the weights read at the gathered row.
        let dy = grad.apply_op2_no_bwd(
            w,
            &InputGrad {
                pattern: self.pattern.clone(),
                shared,
            },
        )?;
        let dw = y.apply_op2_no_bwd(
            &grad,
            &WeightGrad {
                pattern: self.pattern.clone(),
                shared,
            },
        )?;
        Ok((Some(dy), Some(dw)))
    }
}

/// Gradient with respect to the gathered input.
struct InputGrad {
    pattern: GatherPattern,
    shared: bool,
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "koopman-weighted-gather-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let p = &self.pattern;
        dispatch_float!(s1, "weighted gather gradient", |T| {
            let out = gather_kernel::<T>(
                slice(s1, l1)?,
                slice(s2, l2)?,
                &p.transpose,
                p.n,
                p.k,
                self.shared,
                true,
                true,
            );
            Ok((T::to_cpu_storage_owned(out), l1.shape().clone()))
        })
    }
}

/// Gradient with respect to the weights.
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
        dispatch_float!(s1, "weighted gather gradient", |T| {
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
}
