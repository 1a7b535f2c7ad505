//! Small dense products on the host: `y = A x` and `C = A B` for row-major blocks, and many small
//! operators stepped together in the CPU's vector lanes.
//!
//! What: the loops behind the host evolution of partitioned Koopman operators (koopman-train's
//! `stepping`): many operators of a few to a few hundred rows, each applied thousands of times,
//! in f64 or f32 ([`HostReal`]).
//!
//! How: from [`FAER_FROM`] columns on, [`matvec`] and [`matmul`] call faer's SIMD kernel on one
//! thread (the caller splits its operators over the cores); below, plain loops, as faer's
//! per-call overhead outweighs its kernel on tiny blocks. [`interleaved_steps`] stores [`LANES`]
//! operators entry by entry side by side, so that each multiply-add acts on all of them at once
//! with the row sums held in registers; pulp compiles it for the CPU's vector extensions (AVX2 /
//! AVX-512 where present).
//!
//! ```
//! use koopman_core::kernels::dense::{interleaved_steps, matvec};
//!
//! // Two operators of size 2, three steps each from (1, 0) and (0, 1).
//! let ops = [0.5, 0.0, 0.0, 2.0, /* second: */ 0.0, 1.0, 1.0, 0.0];
//! let x = interleaved_steps(&ops, &[1.0, 0.0, 0.0, 1.0], 2, 3);
//! assert_eq!(x, vec![0.125, 0.0, 1.0, 0.0]);
//! let mut y = [0.0; 2];
//! matvec(&ops[..4], &[1.0, 1.0], &mut y);
//! assert_eq!(y, [0.5, 2.0]);
//! ```

/// The float types of the host loops: f64, and f32 (half the bytes per operator).
pub trait HostReal:
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
    /// `v` rounded to this type.
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

/// Size from which faer's kernels beat the plain loops of [`matvec`] and [`matmul`] (its per-call
/// overhead dominates below); below it step-wise evolution is best done by
/// [`interleaved_steps`].
pub const FAER_FROM: usize = 16;

/// `y = A x` for a row-major `y.len() x x.len()` block `a`: from [`FAER_FROM`] columns by faer's
/// SIMD kernel on one thread, below by the plain loop.
pub fn matvec<T: HostReal>(a: &[T], x: &[T], y: &mut [T]) {
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

/// `C = A B` for row-major `d x d` blocks: from [`FAER_FROM`] by faer's kernel on one thread,
/// below by the plain loop.
pub fn matmul<T: HostReal>(a: &[T], b: &[T], c: &mut [T], d: usize) {
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

/// Operators per lane block of [`interleaved_steps`].
pub const LANES: usize = 4;

/// `steps` products `x_g <- U_g x_g` for `count` operators of size `d` at once: `operators` holds
/// the row-major `d x d` blocks `U_g` one after the other, `states` the `d`-vectors `x_g` likewise
/// (`count d` values); returns the final states in the same layout.
///
/// The operators are lane-interleaved in blocks of [`LANES`] (padded with zeros to whole blocks),
/// so each multiply-add acts on a block's lanes at once; meant for operators below [`FAER_FROM`],
/// where one operator at a time leaves the vector units idle.
pub fn interleaved_steps<T: HostReal>(
    operators: &[T],
    states: &[T],
    d: usize,
    steps: u64,
) -> Vec<T> {
    if d == 0 {
        return Vec::new();
    }
    let count = states.len() / d;
    let blocks = count.div_ceil(LANES);
    // Slot of operator g's entry e (row-major in its d x d block or its d-vector).
    let slot = |g: usize, e: usize, len: usize| ((g / LANES) * len + e) * LANES + g % LANES;
    let mut ops = vec![T::default(); blocks * d * d * LANES];
    for (g, u) in operators.chunks_exact(d * d).take(count).enumerate() {
        for (e, &v) in u.iter().enumerate() {
            ops[slot(g, e, d * d)] = v;
        }
    }
    let mut x = vec![T::default(); blocks * d * LANES];
    for (g, xg) in states.chunks_exact(d).enumerate() {
        for (k, &v) in xg.iter().enumerate() {
            x[slot(g, k, d)] = v;
        }
    }
    pulp::Arch::new().dispatch(InterleavedSteps {
        ops: &ops,
        x: &mut x,
        d,
        steps,
    });
    (0..count)
        .flat_map(|g| (0..d).map(move |k| (g, k)))
        .map(|(g, k)| x[slot(g, k, d)])
        .collect()
}

/// The stepping of [`interleaved_steps`] on its lane-interleaved layout:
/// `ops[(b d d + i d + k) LANES + l]` is entry `(i, k)` of operator `b LANES + l` and
/// `x[(b d + k) LANES + l]` entry `k` of its state. A [`pulp::WithSimd`] operation, so that the
/// whole loop is compiled for the instruction set pulp detects.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::values;

    /// `y = A x` by the textbook loop, in f64.
    fn naive_matvec(a: &[f64], x: &[f64], rows: usize) -> Vec<f64> {
        let d = x.len();
        (0..rows)
            .map(|i| (0..d).map(|k| a[i * d + k] * x[k]).sum())
            .collect()
    }

    /// `|got - want| <= tol * scale` entry by entry, `scale[i]` the sum of the magnitudes of the
    /// products behind entry `i`.
    fn assert_close<T: Into<f64> + Copy>(
        got: &[T],
        want: &[f64],
        scale: &[f64],
        tol: f64,
        what: &str,
    ) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, ((&g, &w), &s)) in got.iter().zip(want).zip(scale).enumerate() {
            let err = (g.into() - w).abs();
            assert!(
                err <= tol * s,
                "{what}, entry {i}: {err:e} > {tol:e} * {s:e}"
            );
        }
    }

    /// Both routes of [`matvec`] (plain loop below [`FAER_FROM`], faer from it) against the
    /// textbook loop, square and rectangular (the eigen jump's `2d x d` and `d x 2d`), in f64 and
    /// f32, at sizes around the switch and faer's SIMD tails.
    #[test]
    fn matvec_matches_the_textbook_loop() {
        for d in [1, 2, 3, 7, 11, 15, 16, 17, 31, 33, 157] {
            for rows in [d, 2 * d, 1] {
                let a = values(d as u64, rows * d);
                let x = values(7 * d as u64 + 1, d);
                let want = naive_matvec(&a, &x, rows);
                let abs_a: Vec<f64> = a.iter().map(|v| v.abs()).collect();
                let abs_x: Vec<f64> = x.iter().map(|v| v.abs()).collect();
                let scale = naive_matvec(&abs_a, &abs_x, rows);
                let mut y = vec![0.0; rows];
                matvec(&a, &x, &mut y);
                let tol = 2.0 * d as f64 * f64::EPSILON;
                assert_close(&y, &want, &scale, tol, &format!("f64, {rows} x {d}"));
                let (a32, x32): (Vec<f32>, Vec<f32>) = (
                    a.iter().map(|&v| v as f32).collect(),
                    x.iter().map(|&v| v as f32).collect(),
                );
                let mut y32 = vec![0.0f32; rows];
                matvec(&a32, &x32, &mut y32);
                let tol = 2.0 * (d + 2) as f64 * f64::from(f32::EPSILON);
                assert_close(&y32, &want, &scale, tol, &format!("f32, {rows} x {d}"));
            }
        }
    }

    /// Both routes of [`matmul`] against the textbook triple loop, at sizes around the switch.
    #[test]
    fn matmul_matches_the_textbook_loop() {
        for d in [1, 2, 5, 11, 15, 16, 17, 23, 40] {
            let (a, b) = (values(3 + d as u64, d * d), values(5 + d as u64, d * d));
            let mut want = vec![0.0; d * d];
            let mut scale = vec![0.0; d * d];
            for i in 0..d {
                for j in 0..d {
                    for k in 0..d {
                        want[i * d + j] += a[i * d + k] * b[k * d + j];
                        scale[i * d + j] += (a[i * d + k] * b[k * d + j]).abs();
                    }
                }
            }
            let mut c = vec![f64::NAN; d * d];
            matmul(&a, &b, &mut c, d);
            let tol = 2.0 * d as f64 * f64::EPSILON;
            assert_close(&c, &want, &scale, tol, &format!("f64, d = {d}"));
            let (a32, b32): (Vec<f32>, Vec<f32>) = (
                a.iter().map(|&v| v as f32).collect(),
                b.iter().map(|&v| v as f32).collect(),
            );
            let mut c32 = vec![f32::NAN; d * d];
            matmul(&a32, &b32, &mut c32, d);
            let tol = 2.0 * (d + 2) as f64 * f64::from(f32::EPSILON);
            assert_close(&c32, &want, &scale, tol, &format!("f32, d = {d}"));
        }
    }

    /// [`interleaved_steps`] against stepping each operator alone by the textbook loop: odd and
    /// even sizes (the row-pair remainder), operator counts that do not fill the last lane block,
    /// zero steps; operators scaled to spectral radius below one so that the states stay O(1).
    #[test]
    fn interleaved_steps_match_operator_by_operator() {
        const { assert!(LANES > 1) };
        for d in [1, 2, 3, 5, 11, 15] {
            for count in [1, 3, 4, 5, 9] {
                for steps in [0u64, 1, 2, 7, 40] {
                    let scale = 0.9 / d as f64;
                    let ops: Vec<f64> = values(11 * d as u64 + count as u64, count * d * d)
                        .iter()
                        .map(|v| v * scale)
                        .collect();
                    let x0 = values(13 + d as u64, count * d);
                    let mut want = x0.clone();
                    for (u, x) in ops.chunks_exact(d * d).zip(want.chunks_exact_mut(d)) {
                        for _ in 0..steps {
                            let y = naive_matvec(u, x, d);
                            x.copy_from_slice(&y);
                        }
                    }
                    let got = interleaved_steps(&ops, &x0, d, steps);
                    // Each step adds at most d eps relative to |U| |x| <= 0.9 |x|_max.
                    let bound = 4.0 * (steps as f64 + 1.0) * d as f64 * f64::EPSILON;
                    let what = format!("d = {d}, {count} operators, {steps} steps");
                    assert_close(&got, &want, &vec![1.0; want.len()], bound, &what);
                    let ops32: Vec<f32> = ops.iter().map(|&v| v as f32).collect();
                    let x32: Vec<f32> = x0.iter().map(|&v| v as f32).collect();
                    let got32 = interleaved_steps(&ops32, &x32, d, steps);
                    let want32: Vec<f64> = {
                        let mut x: Vec<f32> = x32.clone();
                        for (u, xg) in ops32.chunks_exact(d * d).zip(x.chunks_exact_mut(d)) {
                            for _ in 0..steps {
                                let y: Vec<f32> = (0..d)
                                    .map(|i| (0..d).map(|k| u[i * d + k] * xg[k]).sum())
                                    .collect();
                                xg.copy_from_slice(&y);
                            }
                        }
                        x.iter().map(|&v| f64::from(v)).collect()
                    };
                    let bound = 4.0 * (steps as f64 + 1.0) * d as f64 * f64::from(f32::EPSILON);
                    assert_close(&got32, &want32, &vec![1.0; want.len()], bound, &what);
                }
            }
        }
        assert!(interleaved_steps::<f64>(&[], &[], 3, 5).is_empty());
    }
}
