//! Vector outputs through one extra torus coordinate (SPEC 3.1, paper 003 Remark 1).
//!
//! The model lives on `T^(d+1)`: state coordinates `x` and one extra coordinate `y`. The observable
//!
//! `v(x, y) = sum_k phi_k(y) f(x_k)`
//!
//! with `phi_k` the trigonometric Lagrange basis on `P = 2K + 1` equispaced nodes `y_k = 2 pi k / P`
//! (`K = floor(d / 2)`, so `phi_k(y_l) = delta_kl` and `phi_k` has frequencies `|m| <= K`) gives
//! output `k` as `G(x, y_k)`. `f` is the coordinate itself or `sin`. For the coordinate, the
//! truncated Fourier series of the sawtooth converges badly, so its coefficients are those of the
//! least-squares sine series `sum_{n <= K_k} b_n sin(n x)` fitted to `x` on `[-a, a]` (quadrature on
//! a fine grid; `K_k` is the largest frequency of `N` along coordinate `k`); for `sin` they are
//! exact. The `y` coefficients are analytic. Everything is computed for any `d` (for `d = 2`, `K = 1`).
//!
//! ```
//! use koopman_core::IndexSet;
//! use koopman_layers::observable::{CoordinateFunction, VectorObservable};
//!
//! # fn main() -> koopman_layers::Result<()> {
//! let n = IndexSet::cube(3, 4)?.without_origin()?; // T^(2+1)
//! let obs = VectorObservable::new(2, CoordinateFunction::Identity, &n, std::f64::consts::FRAC_PI_2)?;
//! assert_eq!(obs.nodes().len(), 2);
//! // evaluating the truncated series of v at (x, y_k) approximates x_k
//! let values = obs.evaluate_host(&[0.3, -0.2])?;
//! assert!((values[0] - 0.3).abs() < 0.01 && (values[1] + 0.2).abs() < 0.01);
//! # Ok(()) }
//! ```

use crate::{LayersError, Result};
use candle_core::{DType, Device, Tensor};
use koopman_core::faer::Mat;
use koopman_core::linalg::{self, SolveOptions};
use koopman_core::{c64, ComplexTensor, IndexSet};
use serde::{Deserialize, Serialize};

/// The function of each state coordinate that the outputs are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CoordinateFunction {
    /// The coordinate itself (for data normalised into `[-a, a]`, `a < pi`).
    #[default]
    Identity,
    /// `sin(x_k)` (for angles that wrap around the torus).
    Sine,
}

impl CoordinateFunction {
    /// The function's value.
    pub fn value(&self, x: f64) -> f64 {
        match self {
            Self::Identity => x,
            Self::Sine => x.sin(),
        }
    }

    /// Sine-series coefficients `b_1..b_K` of the function on `[-a, a]`: least squares on a
    /// 400-point grid for the coordinate, `(1, 0, ...)` for `sin`.
    pub fn sine_coefficients(&self, k_max: usize, a: f64) -> Result<Vec<f64>> {
        if k_max == 0 {
            return Err(LayersError::ShapeMismatch(
                "the index set has no frequency +-1 along a state coordinate".into(),
            ));
        }
        match self {
            Self::Sine => {
                let mut b = vec![0.0; k_max];
                b[0] = 1.0;
                Ok(b)
            }
            Self::Identity => {
                let grid = 400;
                let xs: Vec<f64> = (0..grid)
                    .map(|i| -a + 2.0 * a * (i as f64 + 0.5) / grid as f64)
                    .collect();
                let design = Mat::from_fn(grid, k_max, |i, n| ((n + 1) as f64 * xs[i]).sin());
                let rhs = Mat::from_fn(grid, 1, |i, _| xs[i]);
                let (b, _) =
                    linalg::lstsq(design.as_ref(), rhs.as_ref(), &SolveOptions::default())?;
                Ok((0..k_max).map(|n| b[(n, 0)]).collect())
            }
        }
    }
}

fn k_max_y(state_dim: usize) -> i64 {
    (state_dim / 2) as i64
}

/// The vector observable `v` on `T^(d+1)` and its Fourier coefficients over `N`.
#[derive(Clone, Debug)]
pub struct VectorObservable {
    state_dim: usize,
    function: CoordinateFunction,
    nodes: Vec<f64>,
    /// Frequencies of `N`, row-major `(|N|, d + 1)`.
    frequencies: Vec<f64>,
    coefficients: Vec<c64>,
}

impl VectorObservable {
    /// The observable of `state_dim` outputs over the index set `n` (which must have dimension
    /// `state_dim + 1` and contain the frequencies `+-e_k` with `|n_y| <= floor(state_dim / 2)`);
    /// `a` is the half-width of the normalised data range (the fit interval of the coordinate).
    pub fn new(
        state_dim: usize,
        function: CoordinateFunction,
        n: &IndexSet,
        a: f64,
    ) -> Result<Self> {
        if !(a.is_finite() && a > 0.0 && a <= std::f64::consts::PI) {
            return Err(LayersError::InvalidArgument(format!(
                "data half-width a must lie in (0, pi], got {a}"
            )));
        }
        if state_dim == 0 {
            return Err(LayersError::InvalidArgument("state dimension 0".into()));
        }
        if n.dim() != state_dim + 1 {
            return Err(LayersError::ShapeMismatch(format!(
                "index set of dimension {} given for {state_dim} state coordinates: the model lives \
                 on T^(d+1) = T^{} (one extra coordinate for vector outputs)",
                n.dim(),
                state_dim + 1
            )));
        }
        let k_max = k_max_y(state_dim);
        let p = (2 * k_max + 1) as f64;
        let nodes: Vec<f64> = (0..state_dim)
            .map(|k| {
                let y = 2.0 * std::f64::consts::PI * k as f64 / p;
                if y >= std::f64::consts::PI {
                    y - 2.0 * std::f64::consts::PI
                } else {
                    y
                }
            })
            .collect();
        for k in 0..state_dim {
            for m in -k_max..=k_max {
                for s in [-1i64, 1] {
                    let mut point = vec![0i64; state_dim + 1];
                    point[k] = s;
                    point[state_dim] = m;
                    if n.position(&point).is_none() {
                        return Err(LayersError::ShapeMismatch(format!(
                            "index set lacks frequency {point:?}, needed by output {k}"
                        )));
                    }
                }
            }
        }
        // largest K_k with +-1..+-K_k along coordinate k (and every |m| <= K) in N
        let mut sine = Vec::with_capacity(state_dim);
        for k in 0..state_dim {
            let mut k_max = 0usize;
            'grow: loop {
                let f = (k_max + 1) as i64;
                for m in -k_max_y(state_dim)..=k_max_y(state_dim) {
                    for s in [-f, f] {
                        let mut point = vec![0i64; state_dim + 1];
                        point[k] = s;
                        point[state_dim] = m;
                        if n.position(&point).is_none() {
                            break 'grow;
                        }
                    }
                }
                k_max += 1;
            }
            sine.push(function.sine_coefficients(k_max, a)?);
        }
        let mut frequencies = Vec::with_capacity(n.len() * (state_dim + 1));
        let mut coefficients = Vec::with_capacity(n.len());
        for point in n.iter() {
            frequencies.extend(point.iter().map(|&v| v as f64));
            let m = point[state_dim];
            let nonzero: Vec<usize> = (0..state_dim).filter(|&i| point[i] != 0).collect();
            let c = if nonzero.len() == 1 && m.abs() <= k_max {
                let k = nonzero[0];
                let phase = -(m as f64) * nodes[k];
                let phi = c64::new(phase.cos(), phase.sin()) / p;
                let f = point[k].unsigned_abs() as usize;
                let b = sine[k].get(f - 1).copied().unwrap_or(0.0);
                // b sin(f x) = (b / 2i) e^{ifx} - (b / 2i) e^{-ifx}
                let sign = if point[k] > 0 { -0.5 } else { 0.5 };
                c64::new(0.0, sign * b) * phi
            } else {
                c64::new(0.0, 0.0)
            };
            coefficients.push(c);
        }
        Ok(Self {
            state_dim,
            function,
            nodes,
            frequencies,
            coefficients,
        })
    }

    /// The number of state coordinates (= outputs).
    pub fn state_dim(&self) -> usize {
        self.state_dim
    }

    /// The coordinate function.
    pub fn function(&self) -> CoordinateFunction {
        self.function
    }

    /// The nodes `y_k` of the extra coordinate, one per output.
    pub fn nodes(&self) -> &[f64] {
        &self.nodes
    }

    /// The Fourier coefficients of `v` over `N` (`Q_N^* v`).
    pub fn coefficients(&self) -> &[c64] {
        &self.coefficients
    }

    /// The coefficients as a complex tensor `(|N|,)`.
    pub fn coefficient_tensor(&self, dtype: DType, device: &Device) -> Result<ComplexTensor> {
        Ok(ComplexTensor::from_c64(
            &self.coefficients,
            self.coefficients.len(),
            dtype,
            device,
        )?)
    }

    /// The targets `f(x_k)` for rows of `z` (torus coordinates, `state_dim` columns).
    pub fn targets(&self, z: &[f64]) -> Vec<f64> {
        z.iter().map(|&v| self.function.value(v)).collect()
    }

    /// `cos` and `sin` of the phases `n . (x_b, y_k)`, each `(B * d, |N|)` with row `b * d + k`,
    /// computed where they are used: on a GPU by [`features_tensor`](Self::features_tensor) (only
    /// the `B d` samples are copied to the device), on the CPU with one `sin_cos` per entry, in
    /// parallel. Phases are formed in f64 and the features converted to `dtype`.
    pub fn features(&self, z: &[f64], dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
        let d = self.state_dim;
        if z.is_empty() || z.len() % d != 0 {
            return Err(LayersError::ShapeMismatch(format!(
                "{} values are not a non-empty set of rows of dimension {d}",
                z.len()
            )));
        }
        if let Some(i) = z.iter().position(|v| !v.is_finite()) {
            return Err(LayersError::NonFinite(format!("samples (entry {i})")));
        }
        let b = z.len() / d;
        if !device.is_cpu() {
            return self.features_tensor(&Tensor::from_slice(z, (b, d), device)?, dtype);
        }
        let n = self.coefficients.len();
        // The sample points (x_b, y_k), one row per output: (B d, d + 1).
        let mut points = Vec::with_capacity(b * d * (d + 1));
        for row in z.chunks(d) {
            for &y in &self.nodes {
                points.extend_from_slice(row);
                points.push(y);
            }
        }
        use rayon::prelude::*;
        let mut cos = vec![0.0; b * d * n];
        let mut sin = vec![0.0; b * d * n];
        cos.par_chunks_mut(n)
            .zip(sin.par_chunks_mut(n))
            .zip(points.par_chunks(d + 1))
            .for_each(|((c_row, s_row), p)| {
                for ((c, s), f) in c_row
                    .iter_mut()
                    .zip(s_row.iter_mut())
                    .zip(self.frequencies.chunks(d + 1))
                {
                    let phase: f64 = p.iter().zip(f).map(|(x, n)| x * n).sum();
                    (*s, *c) = phase.sin_cos();
                }
            });
        let cos = Tensor::from_vec(cos, (b * d, n), device)?.to_dtype(dtype)?;
        let sin = Tensor::from_vec(sin, (b * d, n), device)?.to_dtype(dtype)?;
        Ok((cos, sin))
    }

    /// [`features`](Self::features) of samples already in a tensor `z` `(B, d)` on any device
    /// (any float dtype; the phases are formed in f64), without a copy through the host: the
    /// points `(x_b, y_k)` are built by broadcasting and the phases are one matrix product.
    pub fn features_tensor(&self, z: &Tensor, dtype: DType) -> Result<(Tensor, Tensor)> {
        let d = self.state_dim;
        let (b, cols) = z.dims2().map_err(|_| {
            LayersError::ShapeMismatch(format!(
                "samples of shape {:?}, expected (B, {d})",
                z.dims()
            ))
        })?;
        if cols != d || b == 0 {
            return Err(LayersError::ShapeMismatch(format!(
                "samples of shape {:?}, expected (B, {d}) with B >= 1",
                z.dims()
            )));
        }
        koopman_core::complex::ensure_finite(z, "samples")?;
        let device = z.device();
        let n = self.coefficients.len();
        let z = z.to_dtype(DType::F64)?.detach();
        let rows = z.unsqueeze(1)?.broadcast_as((b, d, d))?;
        let nodes = Tensor::from_slice(&self.nodes, (1, d, 1), device)?.broadcast_as((b, d, 1))?;
        let points = Tensor::cat(&[&rows, &nodes], 2)?.reshape((b * d, d + 1))?;
        let freqs = Tensor::from_slice(&self.frequencies, (n, d + 1), device)?;
        let phases = koopman_core::complex::matmul(&points, &freqs.t()?)?;
        Ok((
            phases.cos()?.to_dtype(dtype)?,
            phases.sin()?.to_dtype(dtype)?,
        ))
    }

    /// `Re G` at the samples for coefficients `c` (`(|N|,)`), as `(B, d)`, differentiable in `c`.
    pub fn evaluate(&self, c: &ComplexTensor, features: &(Tensor, Tensor)) -> Result<Tensor> {
        let n = self.coefficients.len();
        let re = c.re().reshape((n, 1))?;
        let im = c.im().reshape((n, 1))?;
        // The features are data: only the coefficients get a gradient.
        let matmul = koopman_core::complex::matmul_fixed_lhs;
        let g = (matmul(&features.0, &re)? - matmul(&features.1, &im)?)?;
        let rows = g.dim(0)?;
        Ok(g.reshape((rows / self.state_dim, self.state_dim))?)
    }

    /// The truncated series of `v` itself at rows of `z` (host evaluation, for checks).
    pub fn evaluate_host(&self, z: &[f64]) -> Result<Vec<f64>> {
        let features = self.features(z, DType::F64, &Device::Cpu)?;
        let c = self.coefficient_tensor(DType::F64, &Device::Cpu)?;
        Ok(self
            .evaluate(&c, &features)?
            .flatten_all()?
            .to_vec1::<f64>()?)
    }
}
