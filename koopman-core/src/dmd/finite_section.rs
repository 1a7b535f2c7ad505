//! Finite section `U = F' F^+` (paper 000, Eq. 4), one operator or many of equal size at once.
//!
//! The solve is SVD based with a relative cut-off and an optional ridge term (see
//! [`SolveOptions`]), so rank-deficient data give a finite least-norm operator, never NaN. The
//! batched form factors each `X_b^T = Q_b R_b` (thin QR, `O(m d^2)`), then
//! `U_b = (Y_b Q_b) (R_b^T)^+` with the pseudo-inverse of the small `d x d` factor by SVD; the
//! operators are spread over the available cores.
//!
//! ```
//! use faer::Mat;
//! use koopman_core::dmd::{finite_section_batched, FiniteSectionConfig};
//!
//! # fn main() -> koopman_core::Result<()> {
//! // Two operators of size 2 from 3 snapshots each; the second data set is rank deficient.
//! let x1 = Mat::from_fn(2, 3, |i, j| (i + 2 * j) as f64 + 1.0);
//! let y1 = Mat::from_fn(2, 3, |i, j| 0.5 * x1[(i, j)]);
//! let x2 = Mat::from_fn(2, 3, |_, j| j as f64);
//! let y2 = x2.clone();
//! let us = finite_section_batched(
//!     &[x1.as_ref(), x2.as_ref()],
//!     &[y1.as_ref(), y2.as_ref()],
//!     &FiniteSectionConfig::default(),
//! )?;
//! assert!((us[0][(0, 0)] - 0.5).abs() < 1e-12);
//! assert!(us[1].col_iter().all(|c| c.iter().all(|v| v.is_finite())));
//! # Ok(()) }
//! ```

use super::{check_pair, FitMethod, KoopmanFit};
use crate::complex::c64;
use crate::error::{CoreError, Result};
use crate::linalg::{self, Scalar, SolveOptions};
use crate::parallel::{available_workers, on_workers, parallel_map};
use candle_core::Tensor;
use faer::{Mat, MatRef};

/// Settings of the finite-section solve.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FiniteSectionConfig {
    /// Relative cut-off and ridge of the SVD solve.
    pub solve: SolveOptions,
}

impl FiniteSectionConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        self.solve.validate()
    }
}

/// The operator `U = Y X^+` (`n x n`), by the same QR + small-SVD route as the batched form.
pub fn finite_section_operator<T: Scalar>(
    x: MatRef<'_, T>,
    y: MatRef<'_, T>,
    config: &FiniteSectionConfig,
) -> Result<Mat<T>> {
    config.validate()?;
    check_pair(x, y)?;
    solve_one(x, y, &config.solve)
}

fn solve_one<T: Scalar>(x: MatRef<'_, T>, y: MatRef<'_, T>, opts: &SolveOptions) -> Result<Mat<T>> {
    // X^T = Q R  =>  X = R^T Q^T (real) / X = (R^* Q^*) with adjoints (complex), and
    // X^+ = Q (R^*)^+ since Q has orthonormal columns.
    let (q, r) = linalg::thin_qr(x.adjoint().to_owned().as_ref());
    let yq = y * q.as_ref();
    let rh = r.as_ref().adjoint().to_owned();
    solve_small(yq.as_ref(), rh.as_ref(), opts, x.nrows(), x.ncols())
}

/// `B L^+` for the small `d x d` factors of a compressed finite section (`L` has the singular
/// values of `X`, `B` is `Y` in the same orthonormal basis), by SVD with the cut-off relative to
/// those singular values; `nrows x ncols` is the shape of `X` (for the default cut-off).
fn solve_small<T: Scalar>(
    b: MatRef<'_, T>,
    l: MatRef<'_, T>,
    opts: &SolveOptions,
    nrows: usize,
    ncols: usize,
) -> Result<Mat<T>> {
    let svd = linalg::thin_svd(l)?;
    let (f, _) = opts.filter(&svd.s, nrows, ncols);
    let bv = b * svd.v.as_ref();
    let scaled = Mat::from_fn(bv.nrows(), bv.ncols(), |i, j| {
        bv[(i, j)] * T::from_f64(f[j])
    });
    Ok(scaled.as_ref() * svd.u.as_ref().adjoint())
}

/// `sum_i a_i b_i` in `simd` lanes with four independent accumulators.
#[inline(always)]
fn dot<S: pulp::Simd>(simd: S, a: &[f64], b: &[f64]) -> f64 {
    let (ah, at) = S::as_simd_f64s(a);
    let (bh, bt) = S::as_simd_f64s(b);
    let mut acc = [simd.splat_f64s(0.0); 4];
    let (ac, bc) = (ah.chunks_exact(4), bh.chunks_exact(4));
    let rest: f64 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(&p, &q)| simd.reduce_sum_f64s(simd.mul_f64s(p, q)))
        .sum();
    for (pa, pb) in ac.zip(bc) {
        for k in 0..4 {
            acc[k] = simd.mul_add_e_f64s(pa[k], pb[k], acc[k]);
        }
    }
    let tail: f64 = at.iter().zip(bt).map(|(p, q)| p * q).sum();
    let sum = simd.add_f64s(simd.add_f64s(acc[0], acc[1]), simd.add_f64s(acc[2], acc[3]));
    simd.reduce_sum_f64s(sum) + rest + tail
}

/// `[r_0 . v, r_1 . v, r_2 . v, r_3 . v]` in `simd` lanes, two accumulators per row (each load
/// of `v` serves four rows).
#[inline(always)]
fn dot4<S: pulp::Simd>(simd: S, r: [&[f64]; 4], v: &[f64]) -> [f64; 4] {
    let (vh, vt) = S::as_simd_f64s(v);
    let rows = r.map(|row| S::as_simd_f64s(row));
    let zero = simd.splat_f64s(0.0);
    let mut acc = [[zero; 2]; 4];
    let pairs = vh.len() / 2 * 2;
    for k in (0..pairs).step_by(2) {
        let (v0, v1) = (vh[k], vh[k + 1]);
        for (a, (rh, _)) in acc.iter_mut().zip(&rows) {
            a[0] = simd.mul_add_e_f64s(rh[k], v0, a[0]);
            a[1] = simd.mul_add_e_f64s(rh[k + 1], v1, a[1]);
        }
    }
    if pairs < vh.len() {
        for (a, (rh, _)) in acc.iter_mut().zip(&rows) {
            a[0] = simd.mul_add_e_f64s(rh[pairs], vh[pairs], a[0]);
        }
    }
    let mut out = [0.0; 4];
    for ((o, a), (_, rt)) in out.iter_mut().zip(&acc).zip(&rows) {
        let tail: f64 = rt.iter().zip(vt).map(|(p, q)| p * q).sum();
        *o = simd.reduce_sum_f64s(simd.add_f64s(a[0], a[1])) + tail;
    }
    out
}

/// `r_i -= s_i v` for four rows in `simd` lanes (each load of `v` serves four rows).
#[inline(always)]
fn axpy4<S: pulp::Simd>(simd: S, r: [&mut [f64]; 4], s: [f64; 4], v: &[f64]) {
    let (vh, vt) = S::as_simd_f64s(v);
    let [r0, r1, r2, r3] = r;
    let (h0, t0) = S::as_mut_simd_f64s(r0);
    let (h1, t1) = S::as_mut_simd_f64s(r1);
    let (h2, t2) = S::as_mut_simd_f64s(r2);
    let (h3, t3) = S::as_mut_simd_f64s(r3);
    let sv = s.map(|x| simd.splat_f64s(x));
    for (k, &q) in vh.iter().enumerate() {
        h0[k] = simd.negate_mul_add_e_f64s(sv[0], q, h0[k]);
        h1[k] = simd.negate_mul_add_e_f64s(sv[1], q, h1[k]);
        h2[k] = simd.negate_mul_add_e_f64s(sv[2], q, h2[k]);
        h3[k] = simd.negate_mul_add_e_f64s(sv[3], q, h3[k]);
    }
    for (k, &q) in vt.iter().enumerate() {
        t0[k] -= s[0] * q;
        t1[k] -= s[1] * q;
        t2[k] -= s[2] * q;
        t3[k] -= s[3] * q;
    }
}

/// `[[r_i . v, r_i . w]; 4]` in `simd` lanes (each load of `v` and `w` serves four rows, each
/// load of a row both vectors).
#[inline(always)]
fn dot2x4<S: pulp::Simd>(simd: S, r: [&[f64]; 4], v: &[f64], w: &[f64]) -> [[f64; 2]; 4] {
    let (vh, vt) = S::as_simd_f64s(v);
    let (wh, wt) = S::as_simd_f64s(w);
    let len = vh.len();
    let wh = &wh[..len];
    let rows = r.map(|row| {
        let (h, t) = S::as_simd_f64s(row);
        (&h[..len], t)
    });
    let zero = simd.splat_f64s(0.0);
    let mut acc = [[zero; 2]; 4];
    for k in 0..len {
        let (p, q) = (vh[k], wh[k]);
        for (a, (rh, _)) in acc.iter_mut().zip(&rows) {
            a[0] = simd.mul_add_e_f64s(rh[k], p, a[0]);
            a[1] = simd.mul_add_e_f64s(rh[k], q, a[1]);
        }
    }
    let mut out = [[0.0; 2]; 4];
    for ((o, a), (_, rt)) in out.iter_mut().zip(&acc).zip(&rows) {
        let tv: f64 = rt.iter().zip(vt).map(|(p, q)| p * q).sum();
        let tw: f64 = rt.iter().zip(wt).map(|(p, q)| p * q).sum();
        *o = [
            simd.reduce_sum_f64s(a[0]) + tv,
            simd.reduce_sum_f64s(a[1]) + tw,
        ];
    }
    out
}

/// `r_i -= s_i v + t_i w` for four rows in `simd` lanes, `(s_i, t_i)` given per row.
#[inline(always)]
fn axpy2x4<S: pulp::Simd>(simd: S, r: [&mut [f64]; 4], st: [(f64, f64); 4], v: &[f64], w: &[f64]) {
    let (vh, vt) = S::as_simd_f64s(v);
    let (wh, wt) = S::as_simd_f64s(w);
    let len = vh.len();
    let wh = &wh[..len];
    let [r0, r1, r2, r3] = r;
    let (h0, t0) = S::as_mut_simd_f64s(r0);
    let (h1, t1) = S::as_mut_simd_f64s(r1);
    let (h2, t2) = S::as_mut_simd_f64s(r2);
    let (h3, t3) = S::as_mut_simd_f64s(r3);
    let (h0, h1, h2, h3) = (
        &mut h0[..len],
        &mut h1[..len],
        &mut h2[..len],
        &mut h3[..len],
    );
    let sv = st.map(|(s, _)| simd.splat_f64s(s));
    let tv = st.map(|(_, t)| simd.splat_f64s(t));
    for k in 0..len {
        let (p, q) = (vh[k], wh[k]);
        h0[k] = simd.negate_mul_add_e_f64s(tv[0], q, simd.negate_mul_add_e_f64s(sv[0], p, h0[k]));
        h1[k] = simd.negate_mul_add_e_f64s(tv[1], q, simd.negate_mul_add_e_f64s(sv[1], p, h1[k]));
        h2[k] = simd.negate_mul_add_e_f64s(tv[2], q, simd.negate_mul_add_e_f64s(sv[2], p, h2[k]));
        h3[k] = simd.negate_mul_add_e_f64s(tv[3], q, simd.negate_mul_add_e_f64s(sv[3], p, h3[k]));
    }
    for (i, t) in [t0, t1, t2, t3].into_iter().enumerate() {
        for ((x, &p), &q) in t.iter_mut().zip(vt).zip(wt) {
            *x -= st[i].0 * p + st[i].1 * q;
        }
    }
}

/// The four rows of `quad` (rows of length `m`), each split at column `lo`.
#[inline(always)]
fn split_quad(quad: &mut [f64], m: usize, lo: usize) -> [(&mut [f64], &mut [f64]); 4] {
    let (r01, r23) = quad.split_at_mut(2 * m);
    let (r0, r1) = r01.split_at_mut(m);
    let (r2, r3) = r23.split_at_mut(m);
    [r0, r1, r2, r3].map(|r| r.split_at_mut(lo))
}

/// The first `k` columns (`n x k`, lower trapezoidal) of the lower-triangular factor `L` of the
/// Householder LQ factorisation `A = L Q` of the row-major `n x m` matrix `a`, which is
/// overwritten; `Q` is not formed (for `m < k` the columns of `L` from `m` on are zero). Only the
/// reflectors of the first `k` rows are computed: they alone determine those columns, and for
/// `A = [X; Y]` with `k` rows in `X` they give `X = L_11 Q_1` and `Y Q_1^T = L_21` without
/// the factorisation of `Y`'s residual. Reflectors go in pairs, each pair one pass of dot
/// products and one of updates over contiguous rows in the CPU's vector lanes (AVX2 / AVX-512
/// where present, through pulp's dispatcher). With `offset > 0` the first `offset >= k` columns
/// must hold a lower-triangular factor (zeros above its diagonal, as a previous `L` has), whose
/// zeros the sweep skips.
fn householder_l(a: &mut [f64], n: usize, m: usize, k: usize, offset: usize) -> Mat<f64> {
    let diag = pulp::Arch::new().dispatch(ReflectRows { a, n, m, k, offset });
    Mat::from_fn(n, k, |i, j| match i.cmp(&j) {
        std::cmp::Ordering::Less => 0.0,
        std::cmp::Ordering::Equal => diag[i],
        std::cmp::Ordering::Greater if j < m => a[i * m + j],
        std::cmp::Ordering::Greater => 0.0,
    })
}

/// [`reflect_rows`] as a [`pulp::WithSimd`] operation: pulp calls `with_simd` inside a function
/// compiled for the detected instruction set, and everything it inlines (the whole sweep) is
/// compiled for that set too. A closure passed to `dispatch` is not inlined there (its
/// `FnOnce::call_once` shim stays an out-of-line call), so its body would run as baseline SSE2.
struct ReflectRows<'a> {
    a: &'a mut [f64],
    n: usize,
    m: usize,
    k: usize,
    offset: usize,
}

impl pulp::WithSimd for ReflectRows<'_> {
    type Output = Vec<f64>;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) -> Vec<f64> {
        reflect_rows(simd, self.a, self.n, self.m, self.k, self.offset)
    }
}

/// The Householder sweep of [`householder_l`] over the first `k` rows; returns the diagonal of
/// `L` (the strict lower part is left in `a`). Reflectors are applied two at a time (a compact
/// WY pair): each pass over a row then serves both, which halves the loads and stores of the
/// rows below. With `offset > 0` the first `offset` columns hold a lower-triangular factor (row
/// `i` is zero in columns `i + 1 .. offset`); reflector `j` is then zero in columns
/// `j + 1 .. offset` and those columns are skipped.
#[inline(always)]
fn reflect_rows<S: pulp::Simd>(
    simd: S,
    a: &mut [f64],
    n: usize,
    m: usize,
    k: usize,
    offset: usize,
) -> Vec<f64> {
    let mut diag = vec![0.0; k];
    // Rows left with a norm below eps^2 times the largest row norm are round-off of rows that
    // depend on earlier ones (rank-deficient data): they count as zero. Reflecting them would
    // square norms into the subnormal range (and overflow 1 / (v^T v)) without adding anything
    // the data resolve.
    let largest = a
        .chunks_exact(m)
        .map(|row| dot(simd, row, row))
        .fold(0.0, f64::max)
        .sqrt();
    let sweep = Sweep {
        m,
        offset,
        negligible: largest * f64::EPSILON * f64::EPSILON,
    };
    let k = k.min(n).min(m);
    let mut j = 0;
    while j < k {
        if j + 1 < k && sweep.reflect_pair(simd, a, j, &mut diag) {
            j += 2;
        } else {
            sweep.reflect_one(simd, a, j, &mut diag);
            j += 1;
        }
    }
    diag
}

/// The shape of one Householder sweep of [`reflect_rows`].
struct Sweep {
    /// Row length.
    m: usize,
    /// Columns of the leading lower-triangular factor (0 for none).
    offset: usize,
    /// Row norms at or below this count as zero.
    negligible: f64,
}

/// The reflector `H = I - beta v v^T` that maps the row `(a0, rest)` (`rest` of squared norm
/// `rest_sq`) onto `(alpha, 0)`: returns `(alpha, v_0 = a0 - alpha, beta)`, or `None` for a
/// (numerically) zero row.
#[inline(always)]
fn reflector(a0: f64, rest_sq: f64, negligible: f64) -> Option<(f64, f64, f64)> {
    let norm = (a0 * a0 + rest_sq).sqrt();
    if norm <= negligible || norm == 0.0 {
        return None;
    }
    let alpha = if a0 >= 0.0 { -norm } else { norm };
    // beta = 2 / v^T v = 1 / (alpha (alpha - a0)) > 0.
    Some((alpha, a0 - alpha, 1.0 / (alpha * (alpha - a0))))
}

impl Sweep {
    /// First column of reflector `j`'s dense part (column `j` itself is kept apart).
    fn dense_from(&self, j: usize) -> usize {
        if j < self.offset {
            self.offset
        } else {
            j + 1
        }
    }

    /// Applies reflector `j` alone to the rows below it.
    #[inline(always)]
    fn reflect_one<S: pulp::Simd>(&self, simd: S, a: &mut [f64], j: usize, diag: &mut [f64]) {
        let (m, lo) = (self.m, self.dense_from(j));
        let (head, tail) = a.split_at_mut((j + 1) * m);
        let row = &mut head[j * m..];
        let Some((alpha, vj, beta)) =
            reflector(row[j], dot(simd, &row[lo..], &row[lo..]), self.negligible)
        else {
            return; // the row is (numerically) zero from column j on: no reflection
        };
        row[j] = vj;
        let v = &row[lo..];
        // Four rows at a time share each load of v.
        let mut rows = tail.chunks_exact_mut(4 * m);
        for quad in &mut rows {
            let [(h0, r0), (h1, r1), (h2, r2), (h3, r3)] = split_quad(quad, m, lo);
            let dots = dot4(simd, [&*r0, &*r1, &*r2, &*r3], v);
            let mut heads = [h0, h1, h2, h3];
            let s: [f64; 4] = std::array::from_fn(|i| beta * (dots[i] + heads[i][j] * vj));
            axpy4(simd, [r0, r1, r2, r3], s, v);
            for (h, s) in heads.iter_mut().zip(s) {
                h[j] -= s * vj;
            }
        }
        for row in rows.into_remainder().chunks_exact_mut(m) {
            let s = beta * (dot(simd, &row[lo..], v) + row[j] * vj);
            row[j] -= s * vj;
            for (p, q) in row[lo..].iter_mut().zip(v.iter()) {
                *p -= s * q;
            }
        }
        diag[j] = alpha;
    }

    /// Applies reflectors `j` and `j + 1` together to the rows below them: `H_j H_{j+1} =
    /// I - V T V^T` with `V = [v_j, v_{j+1}]`, so a row `r` takes `s_j = beta_j (r . v_j)`,
    /// `s_{j+1} = beta_{j+1} (r . v_{j+1} - s_j (v_j . v_{j+1}))` and `r -= s_j v_j + s_{j+1}
    /// v_{j+1}` in one pass of dot products and one of updates. Returns `false` (and changes
    /// nothing) when reflector `j` is void, for [`Self::reflect_one`] to skip it.
    #[inline(always)]
    fn reflect_pair<S: pulp::Simd>(
        &self,
        simd: S,
        a: &mut [f64],
        j: usize,
        diag: &mut [f64],
    ) -> bool {
        // Columns j and j + 1 are kept apart (v_{j+1} is zero in column j; with a leading
        // factor, v_j is zero in column j + 1); both vectors are dense from `lo` on.
        let (m, lo) = (self.m, self.dense_from(j + 1));
        let (head, tail) = a.split_at_mut((j + 2) * m);
        let (row_j, row_k) = head[j * m..].split_at_mut(m);
        let (hj, vj) = row_j.split_at_mut(lo);
        let rest_sq = hj[j + 1] * hj[j + 1] + dot(simd, vj, vj);
        let Some((alpha_j, pj, beta_j)) = reflector(hj[j], rest_sq, self.negligible) else {
            return false;
        };
        hj[j] = pj;
        let pk = hj[j + 1];
        let vj = &*vj;
        // Reflector j on row j + 1, which then defines reflector j + 1.
        let (hk, vk) = row_k.split_at_mut(lo);
        let s = beta_j * (hk[j] * pj + hk[j + 1] * pk + dot(simd, vk, vj));
        hk[j] -= s * pj;
        hk[j + 1] -= s * pk;
        for (p, q) in vk.iter_mut().zip(vj) {
            *p -= s * q;
        }
        let (qk, beta_k) = match reflector(hk[j + 1], dot(simd, vk, vk), self.negligible) {
            Some((alpha_k, qk, beta_k)) => {
                hk[j + 1] = qk;
                diag[j + 1] = alpha_k;
                (qk, beta_k)
            }
            None => (0.0, 0.0), // row j + 1 is (numerically) zero: reflector j alone
        };
        let vk = &*vk;
        let c = pk * qk + dot(simd, vj, vk);
        // The two coefficients of a row from its heads (columns j, j + 1) and dense dots.
        let coefficients = |h: &[f64], dj: f64, dk: f64| {
            let sj = beta_j * (dj + h[j] * pj + h[j + 1] * pk);
            let sk = beta_k * (dk + h[j + 1] * qk - sj * c);
            (sj, sk)
        };
        let update_heads = |h: &mut [f64], (sj, sk): (f64, f64)| {
            h[j] -= sj * pj;
            h[j + 1] -= sj * pk + sk * qk;
        };
        let mut rows = tail.chunks_exact_mut(4 * m);
        for quad in &mut rows {
            let [(h0, r0), (h1, r1), (h2, r2), (h3, r3)] = split_quad(quad, m, lo);
            let dots = dot2x4(simd, [&*r0, &*r1, &*r2, &*r3], vj, vk);
            let mut heads = [h0, h1, h2, h3];
            let s: [(f64, f64); 4] =
                std::array::from_fn(|i| coefficients(heads[i], dots[i][0], dots[i][1]));
            axpy2x4(simd, [r0, r1, r2, r3], s, vj, vk);
            for (h, s) in heads.iter_mut().zip(s) {
                update_heads(h, s);
            }
        }
        for row in rows.into_remainder().chunks_exact_mut(m) {
            let (h, r) = row.split_at_mut(lo);
            let s = coefficients(h, dot(simd, r, vj), dot(simd, r, vk));
            for ((p, &x), &y) in r.iter_mut().zip(vj).zip(vk) {
                *p -= s.0 * x + s.1 * y;
            }
            update_heads(h, s);
        }
        diag[j] = alpha_j;
        true
    }
}
/// Groups with at least this many snapshot pairs per coordinate take the streamed LQ route of
/// [`finite_section_partitioned`]; shorter ones the QR route (cheaper when `m` is close to `d`,
/// where the stacked `2d x m` factorisation does twice the work).
const LQ_MIN_PAIRS_PER_DIM: usize = 8;

/// Snapshot pairs absorbed per pass of the streamed LQ factorisation: the snapshots of one
/// chunk stay in cache while every group reads its coordinates from them, and a group's work
/// block (`2d x (d + 192)`, 36 KB at `d = 11`) stays in the L1 cache during its reflections.
/// Measured on the NN DE solver's fit (12 groups of 11 and 10 of 2 over 10,000 pairs, two
/// cores): with one reflector per pass, on an AMD EPYC (32 KB L1), 5.8 ms at 128, 6.1 at 96,
/// 6.8 at 256, 7.9 at 512; with reflectors in pairs, on a Xeon with AVX-512 (48 KB L1), 3.5-3.7
/// ms at 96 and 128, 3.2 at 144, 176, 192, 208 and 224, 3.3 at 256, but 4.7 at 160 (a row stride
/// of 171 doubles puts every third row 4,104 bytes on: loads and stores alias modulo 4 KB).
const LQ_CHUNK_PAIRS: usize = 192;

/// Largest work block of a small group's streamed LQ (doubles; 24 KB, so it stays in the L1
/// cache during the reflections): a group whose `2d x (d + LQ_CHUNK_PAIRS)` block is smaller
/// collects several chunks before it factors, which saves the per-block costs (the previous
/// factor's columns, one dispatch) that dominate for tiny groups. Measured on the NN DE
/// solver's fit (two cores): its 10 groups of 2 took 0.65 ms of the 5.2 ms streaming with one
/// chunk per block; with blocks of 640 pairs the whole fit takes 5.2 ms against 5.7.
const LQ_BLOCK_DOUBLES: usize = 3072;

/// Up to this many doubles of work blocks in all (2 MB), the groups share the time range
/// between the workers (the NN DE solver's 22 groups: 67,000); beyond it the blocks would not
/// stay in the cache between two snapshots, and the groups are split instead, in tiles of
/// [`LQ_TILE_DOUBLES`].
const LQ_TIME_SPLIT_DOUBLES: usize = 1 << 18;

/// Doubles of work blocks in one tile of groups streamed together (256 KB, the L2 cache of the
/// machines measured). Measured on 1,580 groups of 10 and 50 of 21 over 250 pairs (an MNIST
/// wrapper window, two cores): 42-50 ms against 80-89 ms with the time range split (the
/// blocks, 36 MB, scattered to from every snapshot); tiles of 2^13 / 2^14 / 2^16 / 2^17
/// doubles: 58 / 50 / 60 / 63 ms.
const LQ_TILE_DOUBLES: usize = 1 << 15;

/// The running compression of `[X; Y]` for one group of `d` coordinates: after absorbing
/// snapshot pairs block by block, `L = [L_11; L_21]` (`2d x d`) with `X = L_11 Q_1` and
/// `Y Q_1^T = L_21` for the pairs seen so far (a flat TSQR tree: each block factors
/// `[L_previous | new columns]` with the reflectors of `X`'s rows only, which gives the same
/// `L`; `Y`'s residual is never factored).
struct StreamedLq {
    d: usize,
    /// Snapshot pairs a block holds (a multiple of the chunk length).
    capacity: usize,
    l: Option<Mat<f64>>,
    /// Row-major `2d x (offset + capacity)`: the previous factor, then the block's pairs.
    block: Vec<f64>,
    /// Columns taken by the previous factor (0 or `d`).
    offset: usize,
    /// Pairs in the block before the current chunk.
    filled: usize,
    /// Pairs in the current chunk.
    chunk: usize,
}

impl StreamedLq {
    fn new(d: usize) -> Self {
        let chunks = (LQ_BLOCK_DOUBLES / (2 * d * (d + LQ_CHUNK_PAIRS))).max(1);
        Self {
            d,
            capacity: chunks * LQ_CHUNK_PAIRS,
            l: None,
            block: Vec::new(),
            offset: 0,
            filled: 0,
            chunk: 0,
        }
    }

    fn stride(&self) -> usize {
        self.offset + self.capacity
    }

    /// Doubles of this group's work block.
    fn block_len(&self) -> usize {
        2 * self.d * (self.d + self.capacity)
    }

    /// Starts a chunk of `c <= LQ_CHUNK_PAIRS` snapshot pairs, absorbing the block first when
    /// the chunk would not fit; the chunk's states are then set by [`Self::fill_chunk`].
    fn begin(&mut self, c: usize) {
        self.filled += self.chunk;
        self.chunk = 0;
        if self.block.is_empty() || self.filled + c > self.capacity {
            self.absorb();
            let (d, n) = (self.d, 2 * self.d);
            self.offset = if self.l.is_some() { d } else { 0 };
            let w = self.stride();
            self.block.resize(n * w, 0.0);
            if let Some(prev) = &self.l {
                for i in 0..n {
                    for k in 0..d {
                        self.block[i * w + k] = if k <= i { prev[(i, k)] } else { 0.0 };
                    }
                }
            }
        }
        self.chunk = c;
    }

    /// Fills the chunk begun by [`Self::begin`] from its `c + 1` full states: state `t` is `X`'s
    /// pair `t` (for `t < c`) and `Y`'s pair `t - 1` (for `t > 0`). Row by row, so the writes
    /// are contiguous (a `Y` row is its `X` row moved by one pair, and the state after).
    fn fill_chunk(&mut self, group: &[usize], states: &[&[f64]]) {
        let (d, w, c) = (self.d, self.stride(), self.chunk);
        let col = self.offset + self.filled;
        let (xs, ys) = self.block.split_at_mut(d * w);
        for (i, &g) in group.iter().enumerate() {
            let x = &mut xs[i * w + col..i * w + col + c];
            for (z, state) in x.iter_mut().zip(states) {
                *z = state[g];
            }
            let y = &mut ys[i * w + col..i * w + col + c];
            y[..c - 1].copy_from_slice(&x[1..]);
            y[c - 1] = states[c][g];
        }
    }

    /// Absorbs the block's pairs into the running factor (a partly filled block is first
    /// packed to its used columns) and empties it.
    fn absorb(&mut self) {
        self.filled += self.chunk;
        self.chunk = 0;
        if self.filled > 0 {
            let (n, w) = (2 * self.d, self.stride());
            let used = self.offset + self.filled;
            if used < w {
                for i in 1..n {
                    self.block.copy_within(i * w..i * w + used, i * used);
                }
            }
            let block = &mut self.block[..n * used];
            self.l = Some(householder_l(block, n, used, self.d, self.offset));
        }
        self.filled = 0;
    }

    /// `L` of the pairs absorbed by all parts (an LQ factorisation of `[L_1 | L_2 | ...]`).
    fn merge(parts: &[StreamedLq]) -> Option<Mat<f64>> {
        let ls: Vec<&Mat<f64>> = parts.iter().filter_map(|p| p.l.as_ref()).collect();
        if ls.len() <= 1 {
            return ls.first().map(|&l| l.clone());
        }
        let (n, d) = (ls[0].nrows(), ls[0].ncols());
        let w = d * ls.len();
        let mut stacked = vec![0.0; n * w];
        for (p, l) in ls.iter().enumerate() {
            for i in 0..n {
                for k in 0..d {
                    stacked[i * w + p * d + k] = l[(i, k)];
                }
            }
        }
        Some(householder_l(&mut stacked, n, w, d, d))
    }
}

/// The streamed factors of `groups` for the snapshot pairs `lo..hi`, a chunk of
/// [`LQ_CHUNK_PAIRS`] pairs at a time: every group gathers its rows of the chunk (whose states
/// stay in cache for all groups) into contiguous rows of its block, and factors the block when
/// it is full. Gathering row by row beat scattering each state to every group's rows: 2.9 against
/// 3.2 ms for the NN DE solver's fit, 20.7 against 22.1 ms for an MNIST wrapper window (the
/// `partitioned_fit` bench, two cores); the scattered writes touched `2d` cache lines of every
/// group per state. The work blocks are freed at the end.
fn stream_groups(
    snapshots: &[&[f64]],
    groups: &[&[usize]],
    lo: usize,
    hi: usize,
) -> Vec<StreamedLq> {
    let mut lqs: Vec<StreamedLq> = groups.iter().map(|g| StreamedLq::new(g.len())).collect();
    let mut t0 = lo;
    while t0 < hi {
        let c = LQ_CHUNK_PAIRS.min(hi - t0);
        for lq in lqs.iter_mut() {
            lq.begin(c);
        }
        for (lq, g) in lqs.iter_mut().zip(groups) {
            lq.fill_chunk(g, &snapshots[t0..=t0 + c]);
        }
        t0 += c;
    }
    for lq in lqs.iter_mut() {
        lq.absorb();
        lq.block = Vec::new();
    }
    lqs
}

/// `U = Y X^+` from the first `d` columns `[L11; L21]` of the LQ factor of `[X; Y]` (`X` is
/// `d x m`): `X = L11 Q1` and `Y Q1^T = L21`, so `U = L21 L11^+` (`X^+ = Q1^T L11^+` as `Q1` has
/// orthonormal rows), and `L11` has the singular values of `X`, on which the cut-off acts exactly
/// as in the QR route.
fn solve_from_l(l: &Mat<f64>, d: usize, m: usize, opts: &SolveOptions) -> Result<Mat<f64>> {
    solve_small(
        l.as_ref().submatrix(d, 0, d, d),
        l.as_ref().submatrix(0, 0, d, d),
        opts,
        d,
        m,
    )
}

/// Whether every entry is finite.
fn is_finite(a: MatRef<'_, f64>) -> bool {
    linalg::ensure_finite_mat(a, "").is_ok()
}

/// The error naming the first NaN / Inf among a group's coordinates.
fn locate_non_finite(snapshots: &[&[f64]], group: &[usize]) -> CoreError {
    for (t, snap) in snapshots.iter().enumerate() {
        if let Some(&i) = group.iter().find(|&&i| !snap[i].is_finite()) {
            return CoreError::NonFinite(format!("snapshot {t}, coordinate {i}"));
        }
    }
    CoreError::NonFinite("the factorisation of finite data overflowed".into())
}

/// The partitioned finite section: one operator `U_g = Y_g X_g^+` per group of coordinates,
/// fitted from one trajectory of full states. `snapshots[t]` is the state at time `t` (all of
/// equal length); group `g` lists the coordinates its operator acts on, and its `X_g` / `Y_g`
/// are those coordinates at times `0..m` / `1..=m` (`m = snapshots.len() - 1`). The operators
/// are those of [`finite_section_batched`] on the gathered data (same cut-off on the singular
/// values of `X_g`).
///
/// Long trajectories (`m >= 8 d`) are never gathered: the snapshots are read chunk by chunk
/// (each chunk stays in cache while every group takes its coordinates from it) into a running
/// Householder LQ factorisation of `[X_g; Y_g] = L Q` that never forms `Q` and reflects only
/// by `X_g`'s rows, so `U_g = L_21 L_11^+` costs about `6 m d^2` flops in passes over
/// contiguous rows. The time range is split between the available cores and the partial factors
/// merged (a TSQR tree). Short trajectories take the QR route.
///
/// ```
/// use koopman_core::dmd::{finite_section_partitioned, FiniteSectionConfig};
///
/// # fn main() -> koopman_core::Result<()> {
/// // Three decaying coordinates; coordinates 0 and 2 form one group, 1 another.
/// let states: Vec<Vec<f64>> = (0..50)
///     .map(|t| vec![0.9f64.powi(t), 2.0 * 0.5f64.powi(t), -0.9f64.powi(t)])
///     .collect();
/// let snaps: Vec<&[f64]> = states.iter().map(|s| s.as_slice()).collect();
/// let us = finite_section_partitioned(&snaps, &[&[0, 2], &[1]], &FiniteSectionConfig::default())?;
/// assert!((us[1][(0, 0)] - 0.5).abs() < 1e-12);
/// // the group's states are collinear: the least-norm operator still maps them by 0.9
/// let (a, b) = (us[0][(0, 0)] - us[0][(0, 1)], us[0][(1, 0)] - us[0][(1, 1)]);
/// assert!((a - 0.9).abs() < 1e-10 && (b + 0.9).abs() < 1e-10);
/// # Ok(()) }
/// ```
pub fn finite_section_partitioned(
    snapshots: &[&[f64]],
    groups: &[&[usize]],
    config: &FiniteSectionConfig,
) -> Result<Vec<Mat<f64>>> {
    config.validate()?;
    if snapshots.len() < 2 {
        return Err(CoreError::Empty(format!(
            "the partitioned finite section needs at least two snapshots, got {}",
            snapshots.len()
        )));
    }
    if groups.is_empty() {
        return Err(CoreError::Empty(
            "no groups for the partitioned finite section".into(),
        ));
    }
    let n = snapshots[0].len();
    for (t, snap) in snapshots.iter().enumerate() {
        if snap.len() != n {
            return Err(CoreError::ShapeMismatch(format!(
                "snapshot {t} has {} coordinates, snapshot 0 has {n}",
                snap.len()
            )));
        }
    }
    for (g, group) in groups.iter().enumerate() {
        if group.is_empty() {
            return Err(CoreError::Empty(format!("group {g} has no coordinates")));
        }
        if let Some(&i) = group.iter().find(|&&i| i >= n) {
            return Err(CoreError::ShapeMismatch(format!(
                "group {g} names coordinate {i}, the states have {n}"
            )));
        }
    }
    let m = snapshots.len() - 1;
    let opts = &config.solve;
    let streamed = |g: &&[usize]| m >= LQ_MIN_PAIRS_PER_DIM * g.len();
    // Short trajectories: gather X and Y and take the QR route, group by group.
    let short: Vec<&[usize]> = groups.iter().copied().filter(|g| !streamed(g)).collect();
    let mut short_us = parallel_map(&short, |g| {
        let x = Mat::from_fn(g.len(), m, |i, t| snapshots[t][g[i]]);
        let y = Mat::from_fn(g.len(), m, |i, t| snapshots[t + 1][g[i]]);
        if !(is_finite(x.as_ref()) && is_finite(y.as_ref())) {
            return Err(locate_non_finite(snapshots, g));
        }
        solve_one(x.as_ref(), y.as_ref(), opts)
    })?
    .into_iter();
    // Long ones: every worker streams its share of the time range into all groups' factors.
    let long: Vec<&[usize]> = groups.iter().copied().filter(|g| streamed(g)).collect();
    let mut long_us = if long.is_empty() {
        Vec::new().into_iter()
    } else {
        let blocks: usize = long
            .iter()
            .map(|g| StreamedLq::new(g.len()).block_len())
            .sum();
        let per_group: Vec<Vec<StreamedLq>> = if blocks <= LQ_TIME_SPLIT_DOUBLES {
            // Few groups: every worker streams its share of the time range into all of them.
            let workers = available_workers().min(m.div_ceil(LQ_CHUNK_PAIRS));
            let parts = on_workers(workers, |w, workers| {
                let (lo, hi) = (w * m / workers, (w + 1) * m / workers);
                stream_groups(snapshots, &long, lo, hi)
            })?;
            let mut per_group: Vec<Vec<StreamedLq>> = long.iter().map(|_| Vec::new()).collect();
            for part in parts {
                for (slot, lq) in per_group.iter_mut().zip(part) {
                    slot.push(lq);
                }
            }
            per_group
        } else {
            // Many groups (their blocks would not stay in cache together): the groups are split
            // over the workers, and each streams the whole time range into tiles of groups
            // whose blocks fit in the cache, one tile after the other.
            let mut tiles: Vec<&[&[usize]]> = Vec::new();
            let (mut start, mut doubles) = (0, 0);
            for (k, g) in long.iter().enumerate() {
                doubles += StreamedLq::new(g.len()).block_len();
                if doubles > LQ_TILE_DOUBLES {
                    tiles.push(&long[start..=k]);
                    (start, doubles) = (k + 1, 0);
                }
            }
            if start < long.len() {
                tiles.push(&long[start..]);
            }
            parallel_map(&tiles, |tile| Ok(stream_groups(snapshots, tile, 0, m)))?
                .into_iter()
                .flatten()
                .map(|lq| vec![lq])
                .collect()
        };
        let merged: Vec<(&[usize], Vec<StreamedLq>)> =
            long.iter().copied().zip(per_group).collect();
        parallel_map(&merged, |(g, parts)| {
            let l = StreamedLq::merge(parts)
                .ok_or_else(|| CoreError::Empty("a group without snapshot pairs".into()))?;
            // NaN or Inf anywhere in the group's data reaches L (every reflector sums over all
            // columns), so the data are checked on the small factor, not in a pass of their own.
            if !is_finite(l.as_ref()) {
                return Err(locate_non_finite(snapshots, g));
            }
            solve_from_l(&l, g.len(), m, opts)
        })?
        .into_iter()
    };
    groups
        .iter()
        .map(|g| {
            if streamed(g) {
                long_us.next()
            } else {
                short_us.next()
            }
            .ok_or_else(|| CoreError::Decomposition("partitioned fit lost a group".into()))
        })
        .collect()
}

/// Finite section as a [`KoopmanFit`]: `U = Y X^+`, its eigenvalues and unit eigenvectors as
/// modes, amplitudes of the first snapshot. `U` is `n x n`: meant for small state dimensions.
pub fn finite_section<T: Scalar>(
    x: MatRef<'_, T>,
    y: MatRef<'_, T>,
    config: &FiniteSectionConfig,
) -> Result<KoopmanFit> {
    let u = finite_section_operator(x, y, config)?;
    let (values, vectors) = linalg::eig(u.as_ref())?;
    let x0: Vec<c64> = (0..x.nrows()).map(|i| x[(i, 0)].to_c64()).collect();
    KoopmanFit::assemble(
        FitMethod::FiniteSection,
        values,
        vectors,
        &x0,
        None,
        linalg::to_complex(u.as_ref()),
        Vec::new(),
    )
}

/// Fits `U_b = Y_b X_b^+` for many data sets of equal shape `d x m` at once (spread over the
/// available cores). Rank-deficient data give finite least-norm operators.
pub fn finite_section_batched<T: Scalar>(
    xs: &[MatRef<'_, T>],
    ys: &[MatRef<'_, T>],
    config: &FiniteSectionConfig,
) -> Result<Vec<Mat<T>>> {
    config.validate()?;
    if xs.is_empty() {
        return Err(CoreError::Empty(
            "no data sets for the batched finite section".into(),
        ));
    }
    if xs.len() != ys.len() {
        return Err(CoreError::ShapeMismatch(format!(
            "{} X matrices but {} Y matrices",
            xs.len(),
            ys.len()
        )));
    }
    let (d, m) = (xs[0].nrows(), xs[0].ncols());
    for (b, (x, y)) in xs.iter().zip(ys).enumerate() {
        if x.nrows() != d || x.ncols() != m {
            return Err(CoreError::ShapeMismatch(format!(
                "data set {b} is {} x {}, the first is {d} x {m}",
                x.nrows(),
                x.ncols()
            )));
        }
        check_pair(*x, *y).map_err(|e| match e {
            CoreError::NonFinite(w) => CoreError::NonFinite(format!("data set {b}: {w}")),
            CoreError::ShapeMismatch(w) => CoreError::ShapeMismatch(format!("data set {b}: {w}")),
            other => other,
        })?;
    }
    let pairs: Vec<(MatRef<'_, T>, MatRef<'_, T>)> =
        xs.iter().copied().zip(ys.iter().copied()).collect();
    parallel_map(&pairs, |(x, y)| solve_one(*x, *y, &config.solve))
}

/// The batched finite section on tensors: `x` and `y` of shape `(batch, d, m)` on any device;
/// returns `U` of shape `(batch, d, d)` (f64) on the same device.
pub fn finite_section_batched_tensor(
    x: &Tensor,
    y: &Tensor,
    config: &FiniteSectionConfig,
) -> Result<Tensor> {
    let (b, d, m) = x.dims3().map_err(|_| {
        CoreError::ShapeMismatch(format!(
            "expected x of shape (batch, d, m), got {:?}",
            x.dims()
        ))
    })?;
    if y.dims() != x.dims() {
        return Err(CoreError::ShapeMismatch(format!(
            "x has shape {:?} but y has shape {:?}",
            x.dims(),
            y.dims()
        )));
    }
    let device = x.device().clone();
    let host = |t: &Tensor| -> Result<Vec<f64>> {
        Ok(t.to_dtype(candle_core::DType::F64)?
            .to_device(&candle_core::Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f64>()?)
    };
    let (xv, yv) = (host(x)?, host(y)?);
    let to_mats = |v: &[f64]| -> Vec<Mat<f64>> {
        (0..b)
            .map(|k| Mat::from_fn(d, m, |i, j| v[k * d * m + i * m + j]))
            .collect()
    };
    let (xm, ym) = (to_mats(&xv), to_mats(&yv));
    let xr: Vec<MatRef<'_, f64>> = xm.iter().map(|a| a.as_ref()).collect();
    let yr: Vec<MatRef<'_, f64>> = ym.iter().map(|a| a.as_ref()).collect();
    let us = finite_section_batched(&xr, &yr, config)?;
    let mut data = Vec::with_capacity(b * d * d);
    for u in &us {
        for i in 0..d {
            for j in 0..d {
                data.push(u[(i, j)]);
            }
        }
    }
    Ok(Tensor::from_vec(data, (b, d, d), &device)?)
}

#[cfg(test)]
mod tests {
    use super::householder_l;
    use faer::Mat;

    /// A seeded generator of values uniform in `[-0.5, 0.5)` (a 64-bit LCG's top bits).
    fn uniform(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed;
        move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        }
    }

    /// `A A^T = L Q Q^T L^T = L L^T`, and `L` is lower triangular, for wide, square and tall
    /// blocks (the streamed factorisation meets all three).
    #[test]
    fn householder_l_reproduces_the_gram_matrix() {
        let mut rnd = uniform(17);
        // Full factors, and the leading columns alone: for A = [X; Y] with k rows in X, the
        // n x k factor L satisfies X X^T = L_11 L_11^T and Y X^T = L_21 L_11^T.
        for (n, m, k) in [
            (6, 300, 6),
            (6, 6, 6),
            (22, 9, 22),
            (5, 1, 5),
            (22, 267, 11),
            (8, 5, 4),
        ] {
            let a: Vec<f64> = (0..n * m).map(|_| rnd()).collect();
            let am = Mat::from_fn(n, m, |i, j| a[i * m + j]);
            let mut work = a.clone();
            let l = householder_l(&mut work, n, m, k, 0);
            assert_eq!((l.nrows(), l.ncols()), (n, k));
            let gram = &am * am.subrows(0, k).transpose();
            let llt = &l * l.subrows(0, k).transpose();
            let err = (&gram - &llt).norm_max();
            assert!(
                err <= 50.0 * f64::EPSILON * (m as f64) * gram.norm_max(),
                "{n} x {m}, {k} columns: {err:e}"
            );
            for i in 0..n {
                for j in i + 1..k {
                    assert_eq!(l[(i, j)], 0.0);
                }
            }
        }
    }

    /// A block that starts with a previous factor (`[L | B]`, the streamed case) gives the same
    /// `L` whether the sweep skips the factor's zeros or reflects them, for even and odd `k`.
    #[test]
    fn householder_l_skips_a_leading_factor_exactly() {
        let mut rnd = uniform(5);
        for (n, k, extra) in [(22, 11, 128), (4, 2, 640), (6, 3, 7), (10, 5, 1), (2, 1, 9)] {
            let m = k + extra;
            let a: Vec<f64> = (0..n * m)
                .map(|idx| {
                    let (i, j) = (idx / m, idx % m);
                    let x = rnd();
                    if j < k && j > i {
                        0.0
                    } else {
                        x
                    }
                })
                .collect();
            let (mut skipped, mut full) = (a.clone(), a.clone());
            let l_skip = householder_l(&mut skipped, n, m, k, k);
            let l_full = householder_l(&mut full, n, m, k, 0);
            let err = (&l_skip - &l_full).norm_max();
            assert!(
                err <= 20.0 * f64::EPSILON * (m as f64).sqrt() * l_full.norm_max(),
                "{n} x {m}, k = {k}: {err:e}"
            );
        }
    }
}
