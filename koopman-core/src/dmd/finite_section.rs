//! Finite section `U = F' F^+` (paper 000, Eq. 4), one operator or many of equal size at once.
//!
//! The solve is SVD based with a relative cut-off and an optional ridge term (see
//! [`SolveOptions`]), so rank-deficient data give a finite least-norm operator, never NaN. The
//! batched form factors each `X_b^T = Q_b R_b` (thin QR, `O(m d^2)`), then
//! `U_b = (Y_b Q_b) (R_b^T)^+` with the pseudo-inverse of the small `d x d` factor by SVD; the
//! operators are spread over the available cores. The partitioned form
//! ([`finite_section_partitioned`]) fits one operator per group of coordinates of one trajectory:
//! long trajectories through the streamed LQ factorisation of
//! [`kernels`](crate::kernels) (the data never gathered), short ones by the QR route.
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

use super::estimator::{check_pairs, Fit, Pairs};
use super::{check_pair, FitMethod, KoopmanFit};
use crate::complex::c64;
use crate::error::{CoreError, Result};
use crate::kernels::streamed_lq::{stream_factors, StreamedLq};
use crate::linalg::{self, Scalar, SolveOptions};
use crate::parallel::parallel_map;
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

/// Groups with at least this many snapshot pairs per coordinate take the streamed LQ route of
/// [`finite_section_partitioned`]; shorter ones the QR route (cheaper when `m` is close to `d`,
/// where the stacked `2d x m` factorisation does twice the work).
const LQ_MIN_PAIRS_PER_DIM: usize = 8;

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
    config.fit(Partitioned { snapshots, groups })
}

/// Snapshots of one state vector and a partition of its entries into groups: the data of the
/// partitioned finite section (one operator per group, [`finite_section_partitioned`]).
#[derive(Clone, Copy, Debug)]
pub struct Partitioned<'a> {
    /// Consecutive snapshots, each a whole state vector.
    pub snapshots: &'a [&'a [f64]],
    /// Each group's entries of the state vector.
    pub groups: &'a [&'a [usize]],
}

impl<'a> Fit<Partitioned<'a>> for FiniteSectionConfig {
    type Output = Vec<Mat<f64>>;

    /// The settings; the snapshots and groups are checked as they are streamed.
    fn check(&self, _: &Partitioned<'a>) -> Result<()> {
        self.validate()
    }

    fn fit_checked(&self, data: Partitioned<'a>) -> Result<Vec<Mat<f64>>> {
        partitioned_fit(data.snapshots, data.groups, self)
    }
}

fn partitioned_fit(
    snapshots: &[&[f64]],
    groups: &[&[usize]],
    config: &FiniteSectionConfig,
) -> Result<Vec<Mat<f64>>> {
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
    // Long ones: streamed into partial LQ factors, then merged and solved group by group.
    let long: Vec<&[usize]> = groups.iter().copied().filter(|g| streamed(g)).collect();
    let mut long_us = if long.is_empty() {
        Vec::new().into_iter()
    } else {
        let per_group = stream_factors(snapshots, &long)?;
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
    config.fit((x, y))
}

impl<'a, T: Scalar> Fit<Pairs<'a, T>> for FiniteSectionConfig {
    type Output = KoopmanFit;

    fn check(&self, data: &Pairs<'a, T>) -> Result<()> {
        self.validate()?;
        check_pairs(data)
    }

    fn fit_checked(&self, (x, y): Pairs<'a, T>) -> Result<KoopmanFit> {
        finite_section_fit(x, y, self)
    }
}

fn finite_section_fit<T: Scalar>(
    x: MatRef<'_, T>,
    y: MatRef<'_, T>,
    config: &FiniteSectionConfig,
) -> Result<KoopmanFit> {
    let u = solve_one(x, y, &config.solve)?;
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
    config.fit(Batch { xs, ys })
}

/// Many data sets `(X_b, Y_b)` of one shape: the data of the batched finite section (one
/// operator per data set, [`finite_section_batched`]).
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a, T> {
    /// The `X_b`.
    pub xs: &'a [MatRef<'a, T>],
    /// The `Y_b`.
    pub ys: &'a [MatRef<'a, T>],
}

impl<'a, T: Scalar> Fit<Batch<'a, T>> for FiniteSectionConfig {
    type Output = Vec<Mat<T>>;

    fn check(&self, data: &Batch<'a, T>) -> Result<()> {
        self.validate()?;
        check_batch(data.xs, data.ys)
    }

    fn fit_checked(&self, data: Batch<'a, T>) -> Result<Vec<Mat<T>>> {
        let pairs: Vec<Pairs<'_, T>> = data
            .xs
            .iter()
            .copied()
            .zip(data.ys.iter().copied())
            .collect();
        parallel_map(&pairs, |(x, y)| solve_one(*x, *y, &self.solve))
    }
}

fn check_batch<T: Scalar>(xs: &[MatRef<'_, T>], ys: &[MatRef<'_, T>]) -> Result<()> {
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
    Ok(())
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
