//! Koopman / DMD estimators with one result type, [`KoopmanFit`].
//!
//! Snapshot convention: **columns are states**. A fit takes a pair `(X, Y)` with `Y ≈ A X` (column
//! `j` of `Y` is the successor of column `j` of `X`), or one trajectory split by
//! [`trajectory_pairs`]. Every estimator returns a [`KoopmanFit`]: eigenvalues, modes, amplitudes,
//! optional per-eigenpair residuals and the reduced operator, with [`KoopmanFit::predict`],
//! [`KoopmanFit::reconstruct`] and [`KoopmanFit::jump`] (which evaluates `lambda^steps` directly).
//!
//! | estimator | function |
//! |---|---|
//! | finite section `U = F' F^+`, also batched | [`finite_section`](fn@finite_section), [`finite_section_batched`] |
//! | exact DMD with rank policies | [`exact_dmd`] ([`RankPolicy`]) |
//! | DMD_RRR (Drmač, Mezić & Mohr 2018) | [`dmd_rrr`] |
//! | Hankel / delay DMD over trajectories | [`hankel_dmd`], [`delay_embed`] |
//! | EDMD with dictionaries, kernel DMD | [`edmd`](fn@edmd) ([`Dictionary`]), [`kernel_dmd`] |
//!
//! Input: faer matrices directly, candle tensors ([`snapshots_from_tensor`]), `.npy` files
//! ([`snapshots_from_npy`]) and CSV ([`snapshots_from_csv`]), with the layout stated by
//! [`StateLayout`]. Decompositions run on the host (faer); tensors on any device are accepted and
//! tensor results come back on the caller's device.
//!
//! ```
//! use faer::Mat;
//! use koopman_core::dmd::{exact_dmd, trajectory_pairs, ExactDmdConfig};
//!
//! # fn main() -> koopman_core::Result<()> {
//! // x_{k+1} = A x_k with eigenvalues 0.9 and 0.5.
//! let a = [[0.9, 0.0], [0.2, 0.5]];
//! let mut traj = Mat::<f64>::zeros(2, 20);
//! traj[(0, 0)] = 1.0;
//! traj[(1, 0)] = -1.0;
//! for k in 1..20 {
//!     for i in 0..2 {
//!         traj[(i, k)] = a[i][0] * traj[(0, k - 1)] + a[i][1] * traj[(1, k - 1)];
//!     }
//! }
//! let (x, y) = trajectory_pairs(traj.as_ref())?;
//! let fit = exact_dmd(x, y, &ExactDmdConfig::default())?;
//! let mut lambdas: Vec<f64> = fit.eigenvalues.iter().map(|z| z.re).collect();
//! lambdas.sort_by(f64::total_cmp);
//! assert!((lambdas[0] - 0.5).abs() < 1e-10 && (lambdas[1] - 0.9).abs() < 1e-10);
//! // Jump 10 steps ahead from the first state.
//! let x10 = fit.jump(&[1.0, -1.0], 10)?;
//! assert!((x10[0].re - traj[(0, 10)]).abs() < 1e-10);
//! # Ok(()) }
//! ```

use crate::complex::{c64, ComplexTensor};
use crate::error::{CoreError, Result};
use crate::linalg::{self, Scalar, SolveOptions};
use crate::spectrum::Spectrum;
use candle_core::{Device, Tensor};
use faer::{Mat, MatRef};
use std::path::Path;

pub mod edmd;
pub mod estimator;
pub mod exact;
pub mod finite_section;
pub mod hankel;
pub mod rrr;

pub use edmd::{edmd, kernel_dmd, Dictionary, EdmdConfig, KernelDmdConfig};
pub use estimator::{Fit, Pairs};
pub use exact::{choose_rank, exact_dmd, ExactDmdConfig, RankPolicy};
pub use finite_section::{
    finite_section, finite_section_batched, finite_section_batched_tensor, finite_section_operator,
    finite_section_partitioned, Batch, FiniteSectionConfig, Partitioned,
};
pub use hankel::{delay_embed, hankel_dmd, HankelConfig, HankelEstimator};
pub use rrr::{dmd_rrr, RefineSelection, RrrConfig};

/// Which estimator produced a [`KoopmanFit`].
#[derive(Clone, Debug, PartialEq)]
pub enum FitMethod {
    /// Finite section `U = F' F^+` (full operator).
    FiniteSection,
    /// Exact DMD (Tu et al.).
    Exact,
    /// DMD_RRR (refined Rayleigh-Ritz).
    Rrr,
    /// Hankel / delay DMD with this many stacked snapshots per window.
    Hankel {
        /// Window length.
        delays: usize,
    },
    /// Extended DMD on a dictionary of this many observables.
    Edmd {
        /// Dictionary size.
        dictionary_len: usize,
    },
    /// Kernel DMD (Gaussian kernel).
    KernelDmd,
}

/// The result of every estimator.
///
/// With eigenvalues `lambda_j`, modes `phi_j` (columns of [`modes`](Self::modes)) and amplitudes
/// `b_j`, the model is `x_k = sum_j phi_j lambda_j^k b_j`, where `b` are the coordinates of the
/// first snapshot.
#[derive(Clone, Debug)]
pub struct KoopmanFit {
    /// The estimator.
    pub method: FitMethod,
    /// Discrete-time eigenvalues.
    pub eigenvalues: Vec<c64>,
    /// Modes, one column per eigenvalue (`state_dim x rank`).
    pub modes: Mat<c64>,
    /// Amplitudes: coordinates of the first snapshot in the modes.
    pub amplitudes: Vec<c64>,
    /// Per-eigenpair residuals `||A z - lambda z||` for unit Ritz vectors `z`, where available.
    pub residuals: Option<Vec<f64>>,
    /// The reduced (projected) operator whose eigenvalues are [`eigenvalues`](Self::eigenvalues).
    pub reduced_operator: Mat<c64>,
    /// Singular values of the (scaled) data matrix that fixed the rank, where an SVD was used.
    pub singular_values: Vec<f64>,
}

impl KoopmanFit {
    /// Assembles a fit from eigenpairs; computes the amplitudes from `x0` by least squares.
    pub(crate) fn assemble(
        method: FitMethod,
        eigenvalues: Vec<c64>,
        modes: Mat<c64>,
        x0: &[c64],
        residuals: Option<Vec<f64>>,
        reduced_operator: Mat<c64>,
        singular_values: Vec<f64>,
    ) -> Result<Self> {
        let mut fit = Self {
            method,
            eigenvalues,
            modes,
            amplitudes: Vec::new(),
            residuals,
            reduced_operator,
            singular_values,
        };
        fit.amplitudes = fit.coordinates(x0)?;
        Ok(fit)
    }

    /// Number of eigenpairs (the rank of the fit).
    pub fn rank(&self) -> usize {
        self.eigenvalues.len()
    }

    /// Dimension of the states the modes live in.
    pub fn state_dim(&self) -> usize {
        self.modes.nrows()
    }

    /// Continuous-time eigenvalues `ln(lambda) / dt` (principal logarithm); `lambda = 0` gives a
    /// real part of `-inf`.
    pub fn continuous_eigenvalues(&self, dt: f64) -> Result<Vec<c64>> {
        crate::validate::positive("time step", dt)?;
        Ok(self.eigenvalues.iter().map(|l| l.ln() / dt).collect())
    }

    /// The eigenvalues with residuals and amplitudes as a [`Spectrum`].
    pub fn spectrum(&self) -> Spectrum {
        Spectrum {
            eigenvalues: self.eigenvalues.clone(),
            residuals: self.residuals.clone(),
            amplitudes: Some(self.amplitudes.clone()),
        }
    }

    /// Coordinates `b` of a state in the modes (`argmin ||Phi b - x0||`, SVD least squares).
    pub fn coordinates<T: Scalar>(&self, x0: &[T]) -> Result<Vec<c64>> {
        if x0.len() != self.state_dim() {
            return Err(CoreError::ShapeMismatch(format!(
                "state of length {} for modes of dimension {}",
                x0.len(),
                self.state_dim()
            )));
        }
        if x0.iter().any(|v| !v.finite()) {
            return Err(CoreError::NonFinite("initial state".into()));
        }
        if self.rank() == 0 {
            return Ok(Vec::new());
        }
        let b = Mat::from_fn(x0.len(), 1, |i, _| x0[i].to_c64());
        let (sol, _) = linalg::lstsq(self.modes.as_ref(), b.as_ref(), &SolveOptions::default())?;
        Ok((0..sol.nrows()).map(|i| sol[(i, 0)]).collect())
    }

    fn combine(&self, coeffs: &[c64]) -> Vec<c64> {
        (0..self.state_dim())
            .map(|i| {
                coeffs
                    .iter()
                    .enumerate()
                    .map(|(j, c)| self.modes[(i, j)] * c)
                    .sum()
            })
            .collect()
    }

    /// Trajectory `x_0, ..., x_steps` from `x0` by repeated stepping of the modal coordinates;
    /// one column per step (`state_dim x (steps + 1)`).
    pub fn predict<T: Scalar>(&self, x0: &[T], steps: usize) -> Result<Mat<c64>> {
        let mut b = self.coordinates(x0)?;
        let mut out = Mat::<c64>::zeros(self.state_dim(), steps + 1);
        for k in 0..=steps {
            let x = self.combine(&b);
            for (i, v) in x.into_iter().enumerate() {
                out[(i, k)] = v;
            }
            for (bj, l) in b.iter_mut().zip(&self.eigenvalues) {
                *bj *= l;
            }
        }
        Ok(out)
    }

    /// The state `steps` steps after `x0`, evaluating `lambda^steps` directly (binary powers,
    /// `O(r log steps)` plus one `O(n r)` combination; no repeated stepping).
    pub fn jump<T: Scalar>(&self, x0: &[T], steps: u64) -> Result<Vec<c64>> {
        let b = self.coordinates(x0)?;
        let coeffs: Vec<c64> = b
            .iter()
            .zip(&self.eigenvalues)
            .map(|(bj, l)| bj * int_power(*l, steps))
            .collect();
        Ok(self.combine(&coeffs))
    }

    /// [`jump`](Self::jump) for a batch of states: `x0` is `(n,)` or `(n, batch)` (columns are
    /// states) on any device; the result is a complex tensor of the same shape on that device.
    pub fn jump_tensor(&self, x0: &Tensor, steps: u64) -> Result<ComplexTensor> {
        let device = x0.device().clone();
        let vector = x0.dims().len() == 1;
        let x = if vector { x0.unsqueeze(1)? } else { x0.clone() };
        let m = linalg::mat_from_tensor(&x)?;
        let mut out = Mat::<c64>::zeros(m.nrows(), m.ncols());
        for j in 0..m.ncols() {
            let col: Vec<f64> = (0..m.nrows()).map(|i| m[(i, j)]).collect();
            for (i, v) in self.jump(&col, steps)?.into_iter().enumerate() {
                out[(i, j)] = v;
            }
        }
        let t = linalg::complex_tensor_from_mat(out.as_ref(), &device)?;
        if vector {
            t.squeeze(1)
        } else {
            Ok(t)
        }
    }

    /// The fitted model at (possibly non-integer) times `t` in steps: column `k` is
    /// `sum_j phi_j lambda_j^t_k b_j` with the fit's amplitudes (`lambda^t = exp(t ln lambda)`,
    /// exact powers for non-negative integer `t`).
    pub fn reconstruct(&self, times: &[f64]) -> Result<Mat<c64>> {
        let mut out = Mat::<c64>::zeros(self.state_dim(), times.len());
        for (k, &t) in times.iter().enumerate() {
            if !t.is_finite() {
                return Err(CoreError::NonFinite(format!("time {k}")));
            }
            let coeffs: Vec<c64> = self
                .amplitudes
                .iter()
                .zip(&self.eigenvalues)
                .map(|(b, l)| b * real_power(*l, t))
                .collect();
            for (i, v) in self.combine(&coeffs).into_iter().enumerate() {
                out[(i, k)] = v;
            }
        }
        Ok(out)
    }

    /// [`reconstruct`](Self::reconstruct) as a complex tensor on `device`.
    pub fn reconstruct_tensor(&self, times: &[f64], device: &Device) -> Result<ComplexTensor> {
        linalg::complex_tensor_from_mat(self.reconstruct(times)?.as_ref(), device)
    }
}

/// `z^k` by binary powering.
pub fn int_power(z: c64, mut k: u64) -> c64 {
    let mut base = z;
    let mut acc = c64::new(1.0, 0.0);
    while k > 0 {
        if k & 1 == 1 {
            acc *= base;
        }
        base *= base;
        k >>= 1;
    }
    acc
}

fn real_power(z: c64, t: f64) -> c64 {
    if t >= 0.0 && t.fract() == 0.0 && t < u64::MAX as f64 {
        int_power(z, t as u64)
    } else if z == c64::new(0.0, 0.0) {
        if t > 0.0 {
            z
        } else {
            c64::new(f64::INFINITY, 0.0)
        }
    } else {
        (z.ln() * t).exp()
    }
}

/// Checks a snapshot pair: same shape, non-empty, finite.
pub(crate) fn check_pair<T: Scalar>(x: MatRef<'_, T>, y: MatRef<'_, T>) -> Result<()> {
    if x.nrows() == 0 || x.ncols() == 0 {
        return Err(CoreError::Empty(format!(
            "snapshot matrix X is {} x {}",
            x.nrows(),
            x.ncols()
        )));
    }
    if x.nrows() != y.nrows() || x.ncols() != y.ncols() {
        return Err(CoreError::ShapeMismatch(format!(
            "X is {} x {} but Y is {} x {}",
            x.nrows(),
            x.ncols(),
            y.nrows(),
            y.ncols()
        )));
    }
    linalg::ensure_finite_mat(x, "snapshot matrix X")?;
    linalg::ensure_finite_mat(y, "snapshot matrix Y")
}

/// Splits one trajectory (columns are consecutive states) into `(X, Y) = (x_0..x_{m-2},
/// x_1..x_{m-1})`; at least two snapshots are needed.
pub fn trajectory_pairs<T: Scalar>(
    trajectory: MatRef<'_, T>,
) -> Result<(MatRef<'_, T>, MatRef<'_, T>)> {
    let m = trajectory.ncols();
    if trajectory.nrows() == 0 || m == 0 {
        return Err(CoreError::Empty("trajectory has no snapshots".into()));
    }
    if m < 2 {
        return Err(CoreError::InvalidArgument(
            "a trajectory needs at least two snapshots to form a pair".into(),
        ));
    }
    Ok((trajectory.subcols(0, m - 1), trajectory.subcols(1, m - 1)))
}

/// How states are laid out in a 2-D array on disk or in a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateLayout {
    /// One state per column (the snapshot convention of this module).
    StatePerColumn,
    /// One state per row (the usual layout of a time-series table); transposed on load.
    StatePerRow,
}

fn arrange(rows: usize, cols: usize, data: &[f64], layout: StateLayout) -> Mat<f64> {
    match layout {
        StateLayout::StatePerColumn => Mat::from_fn(rows, cols, |i, j| data[i * cols + j]),
        StateLayout::StatePerRow => Mat::from_fn(cols, rows, |i, j| data[j * cols + i]),
    }
}

/// A 2-D tensor (any device, any float dtype) as a host snapshot matrix (states as columns).
pub fn snapshots_from_tensor(t: &Tensor, layout: StateLayout) -> Result<Mat<f64>> {
    let m = linalg::mat_from_tensor(t)?;
    Ok(match layout {
        StateLayout::StatePerColumn => m,
        StateLayout::StatePerRow => m.transpose().to_owned(),
    })
}

/// A 2-D (or 1-D: one scalar observable over time) `f64` `.npy` file as a snapshot matrix.
pub fn snapshots_from_npy(path: impl AsRef<Path>, layout: StateLayout) -> Result<Mat<f64>> {
    let path = path.as_ref();
    let (shape, data) = crate::io::read_npy(path)?;
    let data = match data {
        crate::io::NpyData::F64(v) => v,
        crate::io::NpyData::I64(v) => v.into_iter().map(|x| x as f64).collect(),
    };
    // Before any matrix is shaped: an empty array may claim any size along its other axis.
    if data.is_empty() {
        return Err(CoreError::Empty(format!(
            "{} holds no data (shape {shape:?})",
            path.display()
        )));
    }
    let m = match shape.as_slice() {
        [n] => Mat::from_fn(1, *n, |_, j| data[j]),
        [r, c] => arrange(*r, *c, &data, layout),
        _ => {
            return Err(CoreError::ShapeMismatch(format!(
                "{}: expected a 1-D or 2-D array, got shape {shape:?}",
                path.display()
            )))
        }
    };
    linalg::ensure_finite_mat(m.as_ref(), &path.display().to_string())?;
    Ok(m)
}

/// A numeric CSV file (comma-separated; an optional non-numeric header line is skipped) as a
/// snapshot matrix.
pub fn snapshots_from_csv(path: impl AsRef<Path>, layout: StateLayout) -> Result<Mat<f64>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| CoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut rows: Vec<Vec<f64>> = Vec::new();
    for (lineno, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let parsed: std::result::Result<Vec<f64>, _> =
            line.split(',').map(|s| s.trim().parse::<f64>()).collect();
        match parsed {
            Ok(v) => rows.push(v),
            Err(_) if rows.is_empty() && lineno == 0 => continue, // header
            Err(e) => {
                return Err(CoreError::InvalidArgument(format!(
                    "{} line {}: {e}",
                    path.display(),
                    lineno + 1
                )))
            }
        }
    }
    let Some(width) = rows.first().map(Vec::len) else {
        return Err(CoreError::Empty(format!(
            "{} holds no data rows",
            path.display()
        )));
    };
    if let Some((k, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != width) {
        return Err(CoreError::ShapeMismatch(format!(
            "{}: data row {} has {} fields, the first has {width}",
            path.display(),
            k + 1,
            r.len()
        )));
    }
    let data: Vec<f64> = rows.iter().flatten().copied().collect();
    let m = arrange(rows.len(), width, &data, layout);
    linalg::ensure_finite_mat(m.as_ref(), &path.display().to_string())?;
    Ok(m)
}
