//! The weighted-gather kernels on the CPU: one gather, the weight gradient, the adjoint's
//! weights, and the structured gather of the one-factor Toeplitz generator.
//!
//! What: `out[j, i] = sum_k w(i, k) y[j, T[i, k]]` for packed complex rows `y` `(b, n, 2)` and a
//! table `T` `(n, K)` (entries `n` read zero), with the weights read per row, shared by all rows
//! or at the gathered row (the adjoint over the transposed table), optionally conjugated; and
//! the gradients the custom ops of [`crate::gather`] need. These loops are the reference of the
//! CUDA kernels of `gather.cu` (same arguments, same results up to rounding), whose launches are
//! in `gather_cuda`.
//!
//! How: one output value per iteration, the table row walked once with the weight mode chosen
//! per row and two accumulators (consecutive multiply-adds do not wait for each other), in f64
//! whatever the storage type; blocks of outputs in parallel on rayon's pool once the work
//! exceeds [`PARALLEL_WORK`] complex multiply-adds.

use crate::gather::GatherPattern;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Layout, Shape, WithDType};
use rayon::prelude::*;

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
pub(crate) struct Direction {
    /// Whether the kernel walks the transposed table `T'`.
    pub(crate) transposed: bool,
    /// How it reads the weights.
    pub(crate) mode: WeightMode,
    /// Whether it conjugates them.
    pub(crate) conj: bool,
}

impl Direction {
    /// `A` itself (weights per row, or shared).
    pub(crate) fn forward(shared: bool) -> Self {
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
    pub(crate) fn adjoint(shared: bool) -> Self {
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

    /// The other one of `A` and `A^*`, with the same weights.
    pub(crate) fn reversed(self) -> Self {
        let shared = self.mode == WeightMode::Shared;
        if self.transposed {
            Self::forward(shared)
        } else {
            Self::adjoint(shared)
        }
    }
}

/// The contiguous data of a CPU storage at a layout, as `T`.
pub(crate) fn slice<'a, T: WithDType>(
    s: &'a CpuStorage,
    l: &Layout,
) -> candle_core::Result<&'a [T]> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("gather kernels need contiguous input".into()))?;
    Ok(&s.as_slice::<T>()?[start..end])
}

/// Complex value `idx` of packed `(re, im)` data, in f64.
#[inline]
pub(crate) fn pair<T: WithDType>(data: &[T], idx: usize) -> (f64, f64) {
    (data[2 * idx].to_f64(), data[2 * idx + 1].to_f64())
}

/// One gather (the CPU reference of the CUDA kernel `koopman_gather`):
/// `out[j, i] = scale_out (base[j, i] + scale_in sum_k w(i, k) y[j, T[i, k]])`, the gather
/// skipped when `y` is `None`.
pub(crate) struct Gather<'a, T> {
    /// Packed rows `(b, n, 2)`, or `None` for no gather.
    pub(crate) y: Option<&'a [T]>,
    /// Packed weights, as `mode` reads them.
    pub(crate) w: &'a [T],
    /// The table walked, `(n, K)`.
    pub(crate) table: &'a [u32],
    /// Positions.
    pub(crate) n: usize,
    /// Table columns.
    pub(crate) k: usize,
    /// How the weights are read.
    pub(crate) mode: WeightMode,
    /// Whether the weights are conjugated.
    pub(crate) conj: bool,
    /// Factor of the gather.
    pub(crate) scale_in: f64,
    /// Packed values added to the gather, the shape of the output.
    pub(crate) base: Option<&'a [T]>,
    /// Factor of the sum.
    pub(crate) scale_out: f64,
}

impl<T: WithDType> Gather<'_, T> {
    /// Writes the result to `out` (the shape of the rows), in parallel above a work threshold.
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
pub(crate) fn weight_grad_kernel<T: WithDType>(
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
pub(crate) fn transpose_weights<T: WithDType>(
    w: &[T],
    table_t: &[u32],
    n: usize,
    k: usize,
) -> Vec<T> {
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

/// `$body` with the type alias `$t` set to the Rust type of a float `$dtype` (f32 or f64); an
/// error naming `$name` for other dtypes.
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

/// The weighted gather `dir` of `pattern` on CPU storages: rows `s1` (`(b, n, 2)`) and weights
/// `s2`; the output has the rows' shape.
pub(crate) fn cpu_gather(
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
            n: pattern.len(),
            k: pattern.columns(),
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
pub(crate) fn structured_gather_cpu<T: WithDType>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::complex::c64;
    use crate::kernels::testing::{
        adjoint, complex_values, dense_apply, dense_gather, max_diff, pack, shift_tables, unpack,
        values,
    };

    /// [`Gather::run`] with these operands into a new output of `len` values.
    #[allow(clippy::too_many_arguments)]
    fn gather<T: WithDType>(
        y: Option<&[T]>,
        w: &[T],
        table: &[u32],
        n: usize,
        k: usize,
        (mode, conj): (WeightMode, bool),
        (scale_in, scale_out): (f64, f64),
        base: Option<&[T]>,
        len: usize,
    ) -> Vec<T> {
        let mut out = vec![T::from_f64(f64::NAN); len];
        Gather {
            y,
            w,
            table,
            n,
            k,
            mode,
            conj,
            scale_in,
            base,
            scale_out,
        }
        .run(&mut out);
        out
    }

    /// `(n, shifts, b)`: a small pattern, and one whose work is above [`PARALLEL_WORK`] (the
    /// parallel blocks, with a last block that is not full).
    fn cases() -> Vec<(usize, Vec<isize>, usize)> {
        let wide: Vec<isize> = (-10..10).map(|s| 3 * s + 1).collect();
        assert!(11 * 301 * wide.len() >= PARALLEL_WORK && (11 * 301) % BLOCK != 0);
        vec![(7, vec![-2, 0, 1, 3], 3), (301, wide, 11)]
    }

    /// One gather in every weight mode, conjugated or not, with and without a base and with
    /// scales, against the dense matrix of its weights (in f64, and in f32 to f32 accuracy);
    /// without input rows, the scaled base alone.
    #[test]
    fn gather_matches_its_dense_matrix() {
        for (n, shifts, b) in cases() {
            let k = shifts.len();
            let (table, _) = shift_tables(n, &shifts);
            let y = complex_values(1, b * n);
            let (rows, shared) = (complex_values(2, n * k), complex_values(3, k));
            let base = complex_values(4, b * n);
            let (scale_in, scale_out) = (0.7, -1.3);
            for mode in [WeightMode::PerRow, WeightMode::Shared, WeightMode::AtTarget] {
                for conj in [false, true] {
                    let w = if mode == WeightMode::Shared {
                        &shared
                    } else {
                        &rows
                    };
                    let weight = |i: usize, c: usize| {
                        let z = match mode {
                            WeightMode::PerRow => rows[i * k + c],
                            WeightMode::Shared => shared[c],
                            WeightMode::AtTarget => rows[(table[i * k + c] as usize) * k + c],
                        };
                        if conj {
                            z.conj()
                        } else {
                            z
                        }
                    };
                    let a = dense_gather(&table, n, k, weight);
                    let want: Vec<c64> = y
                        .chunks_exact(n)
                        .zip(base.chunks_exact(n))
                        .flat_map(|(yj, bj)| {
                            let ay = dense_apply(&a, yj);
                            ay.into_iter()
                                .zip(bj)
                                .map(|(p, q)| (q + p * scale_in) * scale_out)
                                .collect::<Vec<_>>()
                        })
                        .collect();
                    let (yp, wp, bp) = (pack(&y), pack(w), pack(&base));
                    let (how, scales, len) = ((mode, conj), (scale_in, scale_out), 2 * b * n);
                    let run = |y| gather(y, &wp, &table, n, k, how, scales, Some(&bp), len);
                    let err = max_diff(&unpack(&run(Some(&yp))), &want);
                    let what = format!("n = {n}, {mode:?}, conj {conj}");
                    assert!(err <= 1e-14 * k as f64, "{what}: {err:e}");
                    let scaled: Vec<c64> = base.iter().map(|q| q * scale_out).collect();
                    let err = max_diff(&unpack(&run(None)), &scaled);
                    assert!(err <= 1e-15, "{what}, base only: {err:e}");
                    let to32 = |x: &[f64]| -> Vec<f32> { x.iter().map(|&v| v as f32).collect() };
                    let (y32, w32, b32) = (to32(&yp), to32(&wp), to32(&bp));
                    let out32 =
                        gather(Some(&y32), &w32, &table, n, k, how, scales, Some(&b32), len);
                    let out32: Vec<f64> = out32.iter().map(|&v| f64::from(v)).collect();
                    let err = max_diff(&unpack(&out32), &want);
                    assert!(err <= 4e-7 * k as f64, "{what}, f32: {err:e}");
                }
            }
        }
    }

    /// [`Direction::adjoint`] over the transposed table is the conjugate transpose of
    /// [`Direction::forward`] over the table, for per-row and shared weights.
    #[test]
    fn the_adjoint_direction_is_the_conjugate_transpose() {
        for (n, shifts, b) in cases() {
            let k = shifts.len();
            let (table, transpose) = shift_tables(n, &shifts);
            let y = complex_values(5, b * n);
            for shared in [false, true] {
                let w = complex_values(6, if shared { k } else { n * k });
                let a = dense_gather(&table, n, k, |i, c| w[if shared { c } else { i * k + c }]);
                let ah = adjoint(&a, n);
                let want: Vec<c64> = y
                    .chunks_exact(n)
                    .flat_map(|yj| dense_apply(&ah, yj))
                    .collect();
                let dir = Direction::adjoint(shared);
                assert!(dir.transposed && dir.reversed() == Direction::forward(shared));
                let (yp, wp) = (pack(&y), pack(&w));
                let how = (dir.mode, dir.conj);
                let (len, scales) = (2 * b * n, (1.0, 1.0));
                let out = gather(Some(&yp), &wp, &transpose, n, k, how, scales, None, len);
                let err = max_diff(&unpack(&out), &want);
                assert!(err <= 1e-14 * k as f64, "n = {n}, shared {shared}: {err:e}");
            }
        }
    }

    /// The weight gradient `dw[i, c] = sum_j conj(y[j, T[i, c]]) g[j, i]` (summed over `i` for
    /// shared weights) against the textbook sums.
    #[test]
    fn weight_gradient_matches_the_textbook_sums() {
        for (n, shifts, b) in cases() {
            let k = shifts.len();
            let (table, _) = shift_tables(n, &shifts);
            let (y, g) = (complex_values(7, b * n), complex_values(8, b * n));
            let entry = |i: usize, c: usize| -> c64 {
                let src = table[i * k + c] as usize;
                if src >= n {
                    return c64::new(0.0, 0.0);
                }
                (0..b).map(|j| y[j * n + src].conj() * g[j * n + i]).sum()
            };
            let per_row: Vec<c64> = (0..n * k).map(|idx| entry(idx / k, idx % k)).collect();
            let shared: Vec<c64> = (0..k).map(|c| (0..n).map(|i| entry(i, c)).sum()).collect();
            let (yp, gp) = (pack(&y), pack(&g));
            for (is_shared, want) in [(false, per_row), (true, shared)] {
                let got = unpack(&weight_grad_kernel(&yp, &gp, &table, n, k, is_shared));
                let err = max_diff(&got, &want);
                let tol = 1e-14 * (b * if is_shared { n } else { 1 }) as f64;
                assert!(err <= tol, "n = {n}, shared {is_shared}: {err:e}");
            }
        }
    }

    /// `wt[l, c] = conj(w[T'[l, c], c])` (zero where `T'` reads nothing), and the structured
    /// gather against the dense matrix of its weights `u(i, c) = sum_q f[T[i, c], q] a[q, c]`.
    #[test]
    fn transposed_weights_and_the_structured_gather_match_their_definitions() {
        for (n, shifts, b) in cases() {
            let k = shifts.len();
            let (table, transpose) = shift_tables(n, &shifts);
            let w = complex_values(9, n * k);
            let got = unpack(&transpose_weights(&pack(&w), &transpose, n, k));
            for (idx, z) in got.iter().enumerate() {
                let src = transpose[idx] as usize;
                let want = if src < n {
                    w[src * k + idx % k].conj()
                } else {
                    c64::new(0.0, 0.0)
                };
                assert_eq!(*z, want, "n = {n}, entry {idx}");
            }
            let d = 3;
            let (a, f, y) = (
                complex_values(10, d * k),
                values(11, n * d),
                complex_values(12, b * n),
            );
            let dense = dense_gather(&table, n, k, |i, c| {
                let src = table[i * k + c] as usize;
                (0..d).map(|q| a[q * k + c] * f[src * d + q]).sum()
            });
            let want: Vec<c64> = y
                .chunks_exact(n)
                .flat_map(|yj| dense_apply(&dense, yj))
                .collect();
            let got = unpack(&structured_gather_cpu(
                &pack(&y),
                &pack(&a),
                &f,
                &table,
                n,
                k,
            ));
            let err = max_diff(&got, &want);
            assert!(err <= 1e-14 * (k * d) as f64, "n = {n}: {err:e}");
        }
    }
}
