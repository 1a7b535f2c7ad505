//! Extended DMD with dictionaries, and kernel DMD.
//!
//! EDMD lifts every state `x` to `psi(x)` (a [`Dictionary`]), then fits the finite section
//! `U = Psi_Y Psi_X^+` in dictionary space; eigenvalues of `U` approximate Koopman eigenvalues,
//! exactly when the dictionary spans an invariant subspace. Modes live in dictionary space.
//!
//! Kernel DMD (Williams, Rowley & Kevrekidis 2015) uses a Gaussian kernel
//! `k(a, b) = exp(-||a - b||^2 / (2 sigma^2))`: `G_ij = k(x_i, x_j)`, `A_ij = k(y_i, x_j)`,
//! `G = Q Sigma^2 Q^T` truncated to `r` principal components (kernel PCA), reduced operator
//! `K = Sigma^-1 Q^T A Q Sigma^-1`. Eigenfunction values at the data are `Q Sigma V`; state modes
//! are their least-squares regression onto the states.
//!
//! ```
//! use faer::Mat;
//! use koopman_core::dmd::{edmd, Dictionary, EdmdConfig};
//!
//! # fn main() -> koopman_core::Result<()> {
//! // x -> 0.8 x: monomials {1, x, x^2} are invariant, eigenvalues {1, 0.8, 0.64}.
//! let x = Mat::from_fn(1, 10, |_, j| -1.0 + 0.2 * j as f64);
//! let y = Mat::from_fn(1, 10, |_, j| 0.8 * x[(0, j)]);
//! let fit = edmd(x.as_ref(), y.as_ref(), &EdmdConfig {
//!     dictionary: Dictionary::Monomials { degree: 2 },
//!     ..Default::default()
//! })?;
//! for target in [1.0, 0.8, 0.64] {
//!     assert!(fit.eigenvalues.iter().any(|l| (l.re - target).abs() < 1e-10));
//! }
//! # Ok(()) }
//! ```

use super::estimator::{check_pairs, Fit, Pairs};
use super::{finite_section, FiniteSectionConfig, FitMethod, KoopmanFit};
use crate::complex::c64;
use crate::error::{CoreError, Result};
use crate::index_set::IndexSet;
use crate::linalg::{self, SolveOptions};
use faer::{Mat, MatRef, Side};
use std::sync::Arc;

/// A user observable map: state -> values of its observables.
pub type ObservableFn = Arc<dyn Fn(&[f64]) -> Vec<c64> + Send + Sync>;

/// A dictionary of observables.
#[derive(Clone)]
pub enum Dictionary {
    /// The state coordinates themselves.
    Identity,
    /// All monomials `x^a` of total degree `|a| <= degree`, constant included.
    Monomials {
        /// Largest total degree.
        degree: u32,
    },
    /// Monomials `x^a` with weighted degree `sum_i w_i a_i <= degree` (`w_i >= 1`), constant
    /// included; invariant under maps that preserve a weighted-homogeneous structure.
    WeightedMonomials {
        /// One weight per coordinate.
        weights: Vec<u32>,
        /// Largest weighted degree.
        degree: u32,
    },
    /// Fourier features `exp(i n.x)` for `n` in an index set (of the state's dimension).
    Fourier {
        /// The frequencies.
        index_set: Arc<IndexSet>,
    },
    /// Gaussian radial basis functions `exp(-||x - c||^2 / (2 width^2))`.
    GaussianRbf {
        /// Centres, each of the state's dimension.
        centers: Vec<Vec<f64>>,
        /// Width `> 0`.
        width: f64,
    },
    /// A user closure returning `len` observables.
    Custom {
        /// Number of observables the closure returns.
        len: usize,
        /// The map.
        f: ObservableFn,
    },
    /// The concatenation of several dictionaries.
    Union(Vec<Dictionary>),
}

impl std::fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Identity => write!(f, "Identity"),
            Self::Monomials { degree } => write!(f, "Monomials {{ degree: {degree} }}"),
            Self::WeightedMonomials { weights, degree } => {
                write!(
                    f,
                    "WeightedMonomials {{ weights: {weights:?}, degree: {degree} }}"
                )
            }
            Self::Fourier { index_set } => {
                write!(f, "Fourier {{ {} frequencies }}", index_set.len())
            }
            Self::GaussianRbf { centers, width } => {
                write!(
                    f,
                    "GaussianRbf {{ {} centers, width: {width} }}",
                    centers.len()
                )
            }
            Self::Custom { len, .. } => write!(f, "Custom {{ len: {len} }}"),
            Self::Union(parts) => f.debug_tuple("Union").field(parts).finish(),
        }
    }
}

/// Exponent vectors `a` with `sum_i w_i a_i <= degree`, ordered by weighted degree then
/// lexicographically.
pub fn weighted_exponents(weights: &[u32], degree: u32) -> Vec<Vec<u32>> {
    fn rec(weights: &[u32], budget: u32, prefix: &mut Vec<u32>, out: &mut Vec<Vec<u32>>) {
        if prefix.len() == weights.len() {
            out.push(prefix.clone());
            return;
        }
        let w = weights[prefix.len()].max(1);
        let mut a = 0;
        while a * w <= budget {
            prefix.push(a);
            rec(weights, budget - a * w, prefix, out);
            prefix.pop();
            a += 1;
        }
    }
    let mut out = Vec::new();
    rec(weights, degree, &mut Vec::new(), &mut out);
    let wdeg = |a: &Vec<u32>| -> u32 { a.iter().zip(weights).map(|(x, w)| x * w.max(&1)).sum() };
    out.sort_by(|a, b| wdeg(a).cmp(&wdeg(b)).then_with(|| b.cmp(a)));
    out
}

impl Dictionary {
    /// Checks the dictionary against the state dimension `dim`.
    pub fn validate(&self, dim: usize) -> Result<()> {
        match self {
            Self::WeightedMonomials { weights, .. } => {
                if weights.len() != dim {
                    return Err(CoreError::ShapeMismatch(format!(
                        "{} monomial weights for states of dimension {dim}",
                        weights.len()
                    )));
                }
                if weights.contains(&0) {
                    return Err(CoreError::InvalidArgument(
                        "monomial weights must be >= 1".into(),
                    ));
                }
            }
            Self::Fourier { index_set } => {
                if index_set.dim() != dim {
                    return Err(CoreError::ShapeMismatch(format!(
                        "Fourier index set of dimension {} for states of dimension {dim}",
                        index_set.dim()
                    )));
                }
                if index_set.is_empty() {
                    return Err(CoreError::Empty("Fourier index set".into()));
                }
            }
            Self::GaussianRbf { centers, width } => {
                if centers.is_empty() {
                    return Err(CoreError::Empty("RBF centres".into()));
                }
                if let Some(c) = centers.iter().find(|c| c.len() != dim) {
                    return Err(CoreError::ShapeMismatch(format!(
                        "RBF centre of dimension {} for states of dimension {dim}",
                        c.len()
                    )));
                }
                crate::validate::positive("RBF width", *width)?;
            }
            Self::Custom { len, .. } if *len == 0 => {
                return Err(CoreError::Empty(
                    "custom dictionary with no observables".into(),
                ))
            }
            Self::Union(parts) => {
                if parts.is_empty() {
                    return Err(CoreError::Empty("union of no dictionaries".into()));
                }
                for p in parts {
                    p.validate(dim)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Number of observables for states of dimension `dim`.
    pub fn len(&self, dim: usize) -> usize {
        match self {
            Self::Identity => dim,
            Self::Monomials { degree } => weighted_exponents(&vec![1; dim], *degree).len(),
            Self::WeightedMonomials { weights, degree } => {
                weighted_exponents(weights, *degree).len()
            }
            Self::Fourier { index_set } => index_set.len(),
            Self::GaussianRbf { centers, .. } => centers.len(),
            Self::Custom { len, .. } => *len,
            Self::Union(parts) => parts.iter().map(|p| p.len(dim)).sum(),
        }
    }

    fn eval_into(&self, x: &[f64], out: &mut Vec<c64>) -> Result<()> {
        match self {
            Self::Identity => out.extend(x.iter().map(|&v| c64::new(v, 0.0))),
            Self::Monomials { degree } => {
                for a in weighted_exponents(&vec![1; x.len()], *degree) {
                    out.push(c64::new(monomial(x, &a), 0.0));
                }
            }
            Self::WeightedMonomials { weights, degree } => {
                for a in weighted_exponents(weights, *degree) {
                    out.push(c64::new(monomial(x, &a), 0.0));
                }
            }
            Self::Fourier { index_set } => {
                for n in index_set.iter() {
                    let phase: f64 = n.iter().zip(x).map(|(&k, &v)| k as f64 * v).sum();
                    out.push(c64::new(0.0, phase).exp());
                }
            }
            Self::GaussianRbf { centers, width } => {
                for c in centers {
                    let d2: f64 = c.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum();
                    out.push(c64::new((-d2 / (2.0 * width * width)).exp(), 0.0));
                }
            }
            Self::Custom { len, f } => {
                let v = f(x);
                if v.len() != *len {
                    return Err(CoreError::ShapeMismatch(format!(
                        "custom dictionary returned {} values, declared {len}",
                        v.len()
                    )));
                }
                out.extend(v);
            }
            Self::Union(parts) => {
                for p in parts {
                    p.eval_into(x, out)?;
                }
            }
        }
        Ok(())
    }

    /// Evaluates the dictionary on every state (column) of `x`: a `len x m` matrix.
    pub fn evaluate(&self, x: MatRef<'_, f64>) -> Result<Mat<c64>> {
        self.validate(x.nrows())?;
        let k = self.len(x.nrows());
        let mut out = Mat::<c64>::zeros(k, x.ncols());
        let mut buf = Vec::with_capacity(k);
        for j in 0..x.ncols() {
            let state: Vec<f64> = (0..x.nrows()).map(|i| x[(i, j)]).collect();
            buf.clear();
            self.eval_into(&state, &mut buf)?;
            for (i, v) in buf.iter().enumerate() {
                out[(i, j)] = *v;
            }
        }
        linalg::ensure_finite_mat(out.as_ref(), "dictionary values")?;
        Ok(out)
    }
}

fn monomial(x: &[f64], a: &[u32]) -> f64 {
    x.iter().zip(a).map(|(v, &p)| v.powi(p as i32)).product()
}

/// Settings of [`edmd`].
#[derive(Clone, Debug)]
pub struct EdmdConfig {
    /// The observables.
    pub dictionary: Dictionary,
    /// The SVD solve of the finite section in dictionary space.
    pub solve: SolveOptions,
}

impl Default for EdmdConfig {
    fn default() -> Self {
        Self {
            dictionary: Dictionary::Monomials { degree: 2 },
            solve: SolveOptions::default(),
        }
    }
}

impl EdmdConfig {
    /// Checks the settings for states of dimension `dim`.
    pub fn validate(&self, dim: usize) -> Result<()> {
        self.dictionary.validate(dim)?;
        self.solve.validate()
    }
}

/// EDMD of the pair `(X, Y)` (states as columns); see the [module documentation](self).
/// The same as `config.fit((x, y))` ([`Fit`]).
pub fn edmd(x: MatRef<'_, f64>, y: MatRef<'_, f64>, config: &EdmdConfig) -> Result<KoopmanFit> {
    config.fit((x, y))
}

impl<'a> Fit<Pairs<'a, f64>> for EdmdConfig {
    type Output = KoopmanFit;

    fn check(&self, data: &Pairs<'a, f64>) -> Result<()> {
        check_pairs(data)?;
        self.validate(data.0.nrows())
    }

    fn fit_checked(&self, (x, y): Pairs<'a, f64>) -> Result<KoopmanFit> {
        edmd_fit(x, y, self)
    }
}

fn edmd_fit(x: MatRef<'_, f64>, y: MatRef<'_, f64>, config: &EdmdConfig) -> Result<KoopmanFit> {
    let px = config.dictionary.evaluate(x)?;
    let py = config.dictionary.evaluate(y)?;
    let mut fit = finite_section(
        px.as_ref(),
        py.as_ref(),
        &FiniteSectionConfig {
            solve: config.solve.clone(),
        },
    )?;
    fit.method = FitMethod::Edmd {
        dictionary_len: px.nrows(),
    };
    Ok(fit)
}

/// Settings of [`kernel_dmd`].
#[derive(Clone, Debug, PartialEq)]
pub struct KernelDmdConfig {
    /// Gaussian kernel width `sigma > 0`.
    pub bandwidth: f64,
    /// Number of kernel principal components `r >= 1` (fewer if the kernel matrix has lower
    /// numerical rank).
    pub rank: usize,
    /// Relative cut-off on the kernel eigenvalues `sigma_i^2 / sigma_1^2`.
    pub rcond: f64,
}

impl Default for KernelDmdConfig {
    fn default() -> Self {
        Self {
            bandwidth: 1.0,
            rank: 20,
            rcond: 1e-12,
        }
    }
}

impl KernelDmdConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        crate::validate::positive("kernel bandwidth", self.bandwidth)?;
        if self.rank == 0 {
            return Err(CoreError::InvalidArgument(
                "rank 0 requested: kernel DMD needs at least one component".into(),
            ));
        }
        if !(self.rcond.is_finite() && (0.0..1.0).contains(&self.rcond)) {
            return Err(CoreError::InvalidArgument(format!(
                "rcond must lie in [0, 1), got {}",
                self.rcond
            )));
        }
        Ok(())
    }
}

/// Kernel DMD with a Gaussian kernel; see the [module documentation](self).
/// The same as `config.fit((x, y))` ([`Fit`]).
pub fn kernel_dmd(
    x: MatRef<'_, f64>,
    y: MatRef<'_, f64>,
    config: &KernelDmdConfig,
) -> Result<KoopmanFit> {
    config.fit((x, y))
}

impl<'a> Fit<Pairs<'a, f64>> for KernelDmdConfig {
    type Output = KoopmanFit;

    fn check(&self, data: &Pairs<'a, f64>) -> Result<()> {
        self.validate()?;
        check_pairs(data)
    }

    fn fit_checked(&self, (x, y): Pairs<'a, f64>) -> Result<KoopmanFit> {
        kernel_fit(x, y, self)
    }
}

fn kernel_fit(
    x: MatRef<'_, f64>,
    y: MatRef<'_, f64>,
    config: &KernelDmdConfig,
) -> Result<KoopmanFit> {
    let (n, m) = (x.nrows(), x.ncols());
    let s2 = 2.0 * config.bandwidth * config.bandwidth;
    let kernel = |a: MatRef<'_, f64>, i: usize, b: MatRef<'_, f64>, j: usize| -> f64 {
        let d2: f64 = (0..n).map(|p| (a[(p, i)] - b[(p, j)]).powi(2)).sum();
        (-d2 / s2).exp()
    };
    let g = Mat::from_fn(m, m, |i, j| kernel(x, i, x, j));
    let a = Mat::from_fn(m, m, |i, j| kernel(y, i, x, j));
    let evd = g
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| linalg::decomposition_error("kernel eigendecomposition", e))?;
    // ascending order: take from the end
    let lam: Vec<f64> = evd.S().column_vector().iter().copied().collect();
    let top = lam[m - 1];
    let mut idx = Vec::new();
    for k in (0..m).rev() {
        if idx.len() == config.rank {
            break;
        }
        if top > 0.0 && lam[k] > config.rcond * top {
            idx.push(k);
        }
    }
    if idx.is_empty() {
        return Err(CoreError::InvalidArgument(
            "rank 0: the kernel matrix has no eigenvalue above the cut-off".into(),
        ));
    }
    let r = idx.len();
    let sigma: Vec<f64> = idx.iter().map(|&k| lam[k].sqrt()).collect();
    let q = Mat::from_fn(m, r, |i, j| evd.U()[(i, idx[j])]);
    let qaq = q.as_ref().transpose() * a.as_ref() * q.as_ref();
    let khat = Mat::from_fn(r, r, |i, j| qaq[(i, j)] / (sigma[i] * sigma[j]));
    let (values, v) = linalg::eig(khat.as_ref())?;
    // eigenfunction values at the data: Q Sigma V  (m x r)
    let qs = Mat::from_fn(m, r, |i, j| c64::new(q[(i, j)] * sigma[j], 0.0));
    let phi = qs.as_ref() * v.as_ref();
    // modes: least squares phi Xi = X^T
    let xt = Mat::from_fn(m, n, |i, j| c64::new(x[(j, i)], 0.0));
    let (xi, _) = linalg::lstsq(phi.as_ref(), xt.as_ref(), &SolveOptions::default())?;
    let modes = xi.as_ref().transpose().to_owned();
    let amplitudes: Vec<c64> = (0..r).map(|j| phi[(0, j)]).collect();
    Ok(KoopmanFit {
        method: FitMethod::KernelDmd,
        eigenvalues: values,
        modes,
        amplitudes,
        residuals: None,
        reduced_operator: linalg::to_complex(khat.as_ref()),
        singular_values: sigma,
    })
}
