//! The fused Taylor action on the CPU: a whole truncated Taylor sweep `T_m(h A)^s v` of a
//! gather operator, and its adjoint sweep for the gradient.
//!
//! What: the forward sweep keeps the input of every operator application (the backward needs
//! them for the weight gradient) and the result; the adjoint sweep runs the recursion
//! `u_m = (h / m) g`, `u_k = (h / k) (g + A^* u_{k+1})`, `zbar_0 = g + A^* u_1` sub-step by
//! sub-step backwards, giving the gradient of the start vector and the terms `u_k` aligned with
//! the stored inputs. These are the references of the sweeps that `gather_cuda` launches (same
//! row layout); the custom op and its plan are [`crate::gather::GatherPattern::taylor`] and
//! [`crate::taylor`].
//!
//! How: every term is one [`Gather`] of the CPU gather kernel, with the sub-step's sum
//! accumulated in place; the adjoint of per-row weights first transposes them once, so that
//! every gather of the sweep reads its weights per output row.

use super::gather::{transpose_weights, Direction, Gather, WeightMode};
use crate::gather::TaylorSteps;
use candle_core::WithDType;

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

/// The forward Taylor sweep on the CPU (`dir` over `table`, the table it walks): rows `0..m s`
/// of the result hold the input of every operator application (row `s m + k - 1` holds `z_{k-1}` of sub-step `s`), row `m s` the result.
#[allow(clippy::too_many_arguments)]
pub(crate) fn taylor_forward_cpu<T: WithDType>(
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
/// vector. `dir` and `table` are those of the operator this sweep applies, the adjoint `A^*` of
/// the forward sweep's `A`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn taylor_backward_cpu<T: WithDType>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::complex::c64;
    use crate::kernels::testing::{
        adjoint, complex_values, dense_apply, dense_gather, max_diff, pack, shift_tables, unpack,
    };

    /// The row blocks of a sweep's output (`rows + 1` blocks of `b n` complex values).
    fn blocks(out: &[f64], len: usize) -> Vec<Vec<c64>> {
        out.chunks_exact(2 * len).map(unpack).collect()
    }

    /// A pattern with per-row weights, its dense matrix `A`, and the steps of the checks.
    struct Case {
        n: usize,
        k: usize,
        table: Vec<u32>,
        transpose: Vec<u32>,
        w: Vec<c64>,
        a: Vec<c64>,
        steps: TaylorSteps,
    }

    fn case() -> Case {
        let (n, shifts) = (9, [-2isize, -1, 1, 3]);
        let k = shifts.len();
        let (table, transpose) = shift_tables(n, &shifts);
        let w = complex_values(21, n * k);
        let a = dense_gather(&table, n, k, |i, c| w[i * k + c]);
        let steps = TaylorSteps {
            degree: 3,
            substeps: 2,
            step: 0.4,
        };
        Case {
            n,
            k,
            table,
            transpose,
            w,
            a,
            steps,
        }
    }

    /// The forward sweep of `A` and of `A^*` (per-row weights transposed first) against the
    /// Taylor recursion `z_k = (h / k) B z_{k-1}`, `v <- sum_k z_k` with the dense `B`: every
    /// stored input `z_{k-1}` and the result.
    #[test]
    fn forward_sweep_matches_the_dense_taylor_recursion() {
        let c = case();
        let (b, m) = (2, c.steps.degree);
        let v = complex_values(22, b * c.n);
        for (dir, table, op) in [
            (Direction::forward(false), &c.table, c.a.clone()),
            (Direction::adjoint(false), &c.transpose, adjoint(&c.a, c.n)),
        ] {
            let mut want = Vec::new();
            let mut x = v.clone();
            for _ in 0..c.steps.substeps {
                let mut z = x.clone();
                for term in 1..=m {
                    want.push(z.clone());
                    let h = c.steps.step / term as f64;
                    z = z
                        .chunks_exact(c.n)
                        .flat_map(|zj| dense_apply(&op, zj))
                        .map(|q| q * h)
                        .collect();
                    x.iter_mut().zip(&z).for_each(|(p, q)| *p += q);
                }
            }
            want.push(x);
            let out = taylor_forward_cpu(&pack(&v), &pack(&c.w), table, c.n, c.k, dir, c.steps);
            let got = blocks(&out, b * c.n);
            assert_eq!(got.len(), c.steps.terms() + 1);
            for (r, (g, w)) in got.iter().zip(&want).enumerate() {
                let err = max_diff(g, w);
                assert!(err <= 1e-13, "{dir:?}, row {r}: {err:e}");
            }
        }
    }

    /// The adjoint sweep against the adjoint recursion with the dense `A^*`, sub-step by
    /// sub-step backwards: `u_m = (h / m) g`, `u_k = (h / k) (g + A^* u_{k+1})`, `g <- g + A^*
    /// u_1`; rows `0..m s` hold the `u_k`, the last row the final `g`.
    #[test]
    fn adjoint_sweep_matches_the_dense_adjoint_recursion() {
        let c = case();
        let (b, m) = (3, c.steps.degree);
        let ah = adjoint(&c.a, c.n);
        let apply = |x: &[c64]| -> Vec<c64> {
            x.chunks_exact(c.n)
                .flat_map(|xj| dense_apply(&ah, xj))
                .collect()
        };
        let g0 = complex_values(23, b * c.n);
        let rows = c.steps.terms();
        let mut want = vec![Vec::new(); rows + 1];
        let mut g = g0.clone();
        for s in (0..c.steps.substeps).rev() {
            let alpha = |term: usize| c.steps.step / term as f64;
            let mut u: Vec<c64> = g.iter().map(|q| q * alpha(m)).collect();
            want[s * m + m - 1] = u.clone();
            for term in (1..m).rev() {
                u = apply(&u)
                    .iter()
                    .zip(&g)
                    .map(|(p, q)| (p + q) * alpha(term))
                    .collect();
                want[s * m + term - 1] = u.clone();
            }
            g = apply(&u).iter().zip(&g).map(|(p, q)| p + q).collect();
        }
        want[rows] = g;
        let dir = Direction::forward(false).reversed();
        let out = taylor_backward_cpu(
            &pack(&g0),
            &pack(&c.w),
            &c.transpose,
            c.n,
            c.k,
            dir,
            c.steps,
        );
        let got = blocks(&out, b * c.n);
        assert_eq!(got.len(), rows + 1);
        for (r, (gr, wr)) in got.iter().zip(&want).enumerate() {
            let err = max_diff(gr, wr);
            assert!(err <= 1e-13, "row {r}: {err:e}");
        }
    }
}
