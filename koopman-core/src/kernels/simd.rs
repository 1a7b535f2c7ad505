//! Row kernels in the CPU's vector lanes: dot products and updates `r -= s v` of f64 rows, one
//! row or four at a time, against one vector or two.
//!
//! What: the inner loops of the Householder sweep of [`householder`](super::householder), which
//! streams the rows of a snapshot matrix: `r . v` and `r -= s v` for every row below a reflector
//! `v`, or for a pair of reflectors `(v, w)` at once.
//!
//! How: generic over [`pulp::Simd`], so that they are compiled for the instruction set pulp
//! detects when inlined into a [`pulp::WithSimd`] operation (AVX2 / AVX-512 where present); rows
//! are read as whole vector registers with a scalar tail. The four-row forms load each register
//! of `v` (and `w`) once for four rows, and every row keeps its own accumulators, so consecutive
//! fused multiply-adds do not wait for each other. Rows must be at least as long as `v`; `w` as
//! long as `v`.

/// `sum_i a_i b_i` in `simd` lanes with four independent accumulators.
#[inline(always)]
pub(crate) fn dot<S: pulp::Simd>(simd: S, a: &[f64], b: &[f64]) -> f64 {
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
pub(crate) fn dot4<S: pulp::Simd>(simd: S, r: [&[f64]; 4], v: &[f64]) -> [f64; 4] {
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
pub(crate) fn axpy4<S: pulp::Simd>(simd: S, r: [&mut [f64]; 4], s: [f64; 4], v: &[f64]) {
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
pub(crate) fn dot2x4<S: pulp::Simd>(
    simd: S,
    r: [&[f64]; 4],
    v: &[f64],
    w: &[f64],
) -> [[f64; 2]; 4] {
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
pub(crate) fn axpy2x4<S: pulp::Simd>(
    simd: S,
    r: [&mut [f64]; 4],
    st: [(f64, f64); 4],
    v: &[f64],
    w: &[f64],
) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testing::values;
    use pulp::WithSimd;

    /// Four rows, `v`, `w` and the coefficients of one check; `with_simd` runs every kernel on
    /// them and returns `(dot(r_0, v), dot4, dot2x4, rows after axpy4, rows after axpy2x4)`.
    struct Run {
        rows: [Vec<f64>; 4],
        v: Vec<f64>,
        w: Vec<f64>,
        s: [f64; 4],
        t: [f64; 4],
    }

    type Results = (f64, [f64; 4], [[f64; 2]; 4], [Vec<f64>; 4], [Vec<f64>; 4]);

    impl WithSimd for &Run {
        type Output = Results;

        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, simd: S) -> Results {
            let r = [
                &self.rows[0][..],
                &self.rows[1],
                &self.rows[2],
                &self.rows[3],
            ];
            let one = dot(simd, r[0], &self.v);
            let four = dot4(simd, r, &self.v);
            let two = dot2x4(simd, r, &self.v, &self.w);
            let mut a = self.rows.clone();
            let [a0, a1, a2, a3] = &mut a;
            axpy4(simd, [a0, a1, a2, a3], self.s, &self.v);
            let mut b = self.rows.clone();
            let [b0, b1, b2, b3] = &mut b;
            let st = std::array::from_fn(|i| (self.s[i], self.t[i]));
            axpy2x4(simd, [b0, b1, b2, b3], st, &self.v, &self.w);
            (one, four, two, a, b)
        }
    }

    /// `|got - want| <= tol`, with the row length and the checked quantity in the message.
    fn close(got: f64, want: f64, tol: f64, what: &str) {
        assert!(
            (got - want).abs() <= tol,
            "{what}: {got} vs {want} (tol {tol:e})"
        );
    }

    /// Every kernel against the textbook loops, at lengths that leave every kind of remainder
    /// (partial registers, an odd register count, fewer than four registers), through pulp's
    /// dispatch to the detected instruction set, its scalar fallback and its emulated 512-bit
    /// registers (the AVX-512 layout on any CPU).
    #[test]
    fn row_kernels_match_the_textbook_loops() {
        let arch = pulp::Arch::new();
        for len in [
            0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 131,
        ] {
            let seed = 100 * len as u64;
            let run = Run {
                rows: std::array::from_fn(|i| values(seed + i as u64, len)),
                v: values(seed + 4, len),
                w: values(seed + 5, len),
                s: [0.5, -1.25, 2.0, 0.0],
                t: [-0.75, 0.3, 0.0, 1.5],
            };
            let naive_dot = |a: &[f64], b: &[f64]| -> (f64, f64) {
                let sum = a.iter().zip(b).map(|(p, q)| p * q).sum();
                let abs = a.iter().zip(b).map(|(p, q)| (p * q).abs()).sum::<f64>();
                (sum, abs)
            };
            // Summation in another order: at most (len + 1) eps of the sum of |a_i b_i|.
            let tol = |abs: f64| (len as f64 + 1.0) * f64::EPSILON * abs;
            for (how, (one, four, two, a, b)) in [
                ("dispatched", arch.dispatch(&run)),
                ("scalar", (&run).with_simd(pulp::Scalar::new())),
                ("8 emulated lanes", (&run).with_simd(pulp::Scalar512b)),
            ] {
                let what = |q: &str| format!("{how}, length {len}: {q}");
                let (want, abs) = naive_dot(&run.rows[0], &run.v);
                close(one, want, tol(abs), &what("dot"));
                for i in 0..4 {
                    let (dv, av) = naive_dot(&run.rows[i], &run.v);
                    let (dw, aw) = naive_dot(&run.rows[i], &run.w);
                    close(four[i], dv, tol(av), &what(&format!("dot4 row {i}")));
                    close(
                        two[i][0],
                        dv,
                        tol(av),
                        &what(&format!("dot2x4 row {i} . v")),
                    );
                    close(
                        two[i][1],
                        dw,
                        tol(aw),
                        &what(&format!("dot2x4 row {i} . w")),
                    );
                    for k in 0..len {
                        let (r, v, w) = (run.rows[i][k], run.v[k], run.w[k]);
                        let (s, t) = (run.s[i], run.t[i]);
                        // A fused multiply-add rounds once, the loop twice: eps each.
                        let want = r - s * v;
                        let tol = 2.0 * f64::EPSILON * (r.abs() + (s * v).abs());
                        close(a[i][k], want, tol, &what(&format!("axpy4 row {i}[{k}]")));
                        let want = r - (s * v + t * w);
                        let tol = 3.0 * f64::EPSILON * (r.abs() + (s * v).abs() + (t * w).abs());
                        close(b[i][k], want, tol, &what(&format!("axpy2x4 row {i}[{k}]")));
                    }
                }
            }
        }
    }
}
