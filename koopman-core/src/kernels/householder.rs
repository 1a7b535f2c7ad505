//! The Householder LQ sweep: the lower-triangular factor `L` of `A = L Q` for a row-major block,
//! `Q` never formed.
//!
//! What: the factorisation behind the streamed finite section
//! ([`streamed_lq`](super::streamed_lq)): for `A = [X; Y]` with `k` rows in `X`, the first `k`
//! columns of `L` give `X = L_11 Q_1` and `Y Q_1^T = L_21`, from which `U = Y X^+` follows on a
//! `k x k` factor. Only the reflectors of `X`'s rows are computed (`Y`'s residual is never
//! factored), and a block that starts with a previous factor `[L | B]` has its known zeros
//! skipped.
//!
//! How: reflectors in pairs (a compact WY pair, `H_j H_{j+1} = I - V T V^T`), each pair one pass
//! of dot products and one of updates over the contiguous rows below, four rows at a time, by the
//! lane kernels of [`simd`](super::simd); the sweep is a [`pulp::WithSimd`] operation, so pulp
//! compiles all of it for the detected instruction set. Rows left below `eps^2` of the largest
//! row norm count as zero (round-off of dependent rows).

use super::simd::{axpy2x4, axpy4, dot, dot2x4, dot4};
use faer::Mat;

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
pub(crate) fn householder_l(
    a: &mut [f64],
    n: usize,
    m: usize,
    k: usize,
    offset: usize,
) -> Mat<f64> {
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

#[cfg(test)]
mod tests {
    use super::householder_l;
    use crate::kernels::testing::uniform;
    use faer::Mat;

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

    /// Zero and dependent rows (rank-deficient data) take the void-reflector paths (a zero row
    /// at an even and an odd position, so both the pair and the single sweep meet one): `L`
    /// stays finite, its rows of zeros stay zero, and it still reproduces the Gram matrix.
    #[test]
    fn householder_l_of_zero_and_dependent_rows() {
        let mut rnd = uniform(3);
        let (n, m) = (8, 40);
        let rows: Vec<Vec<f64>> = {
            let r0: Vec<f64> = (0..m).map(|_| rnd()).collect();
            let r3: Vec<f64> = (0..m).map(|_| rnd()).collect();
            let r6: Vec<f64> = (0..m).map(|_| rnd()).collect();
            let twice: Vec<f64> = r0.iter().map(|x| 2.0 * x).collect();
            let diff: Vec<f64> = r0.iter().zip(&r3).map(|(a, b)| a - b).collect();
            let zero = vec![0.0; m];
            vec![r0, twice, zero.clone(), r3, diff, zero, r6.clone(), r6]
        };
        let a: Vec<f64> = rows.concat();
        let am = Mat::from_fn(n, m, |i, j| a[i * m + j]);
        for k in [n, 5, 3] {
            let mut work = a.clone();
            let l = householder_l(&mut work, n, m, k, 0);
            assert!(l.col_iter().all(|c| c.iter().all(|v| v.is_finite())));
            for i in [2, 5] {
                assert!((0..k).all(|j| l[(i, j)] == 0.0), "zero row {i}, k = {k}");
            }
            let gram = &am * am.subrows(0, k).transpose();
            let llt = &l * l.subrows(0, k).transpose();
            let err = (&gram - &llt).norm_max();
            assert!(
                err <= 50.0 * f64::EPSILON * (m as f64) * gram.norm_max(),
                "k = {k}: {err:e}"
            );
        }
    }
}
