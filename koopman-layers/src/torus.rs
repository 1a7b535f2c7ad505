//! The torus normalisation: a stored affine map of data onto `[-a, a]^d` with `a < pi`
//! (SPEC 3.1), so trajectories never wrap around the torus `T^d = [-pi, pi)^d`.
//!
//! ```
//! use koopman_layers::torus::TorusNormalization;
//!
//! # fn main() -> koopman_layers::Result<()> {
//! let data = [0.0, 10.0, 2.0, 20.0]; // two states (x, y) = (0, 10) and (2, 20)
//! let norm = TorusNormalization::fit(&data, 2, std::f64::consts::FRAC_PI_2)?;
//! let z = norm.forward(&data)?;
//! assert!((z[0] + std::f64::consts::FRAC_PI_2).abs() < 1e-12);
//! assert!((norm.inverse(&z)?[3] - 20.0).abs() < 1e-12);
//! assert!(norm.forward(&[5.0, 15.0]).is_err()); // outside the declared range
//! # Ok(()) }
//! ```

use crate::{LayersError, Result};
use serde::{Deserialize, Serialize};

/// How far (relative to the half-width) data may leave the fitted box before it is rejected.
pub const RANGE_SLACK: f64 = 0.25;

/// The affine map `z_i = (x_i - center_i) * a / half_width_i` onto `[-a, a]^d`, or the identity
/// on angles already living on the torus (`periodic`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TorusNormalization {
    /// Centre of the fitted box, per coordinate.
    pub center: Vec<f64>,
    /// Half-width of the fitted box, per coordinate (> 0).
    pub half_width: Vec<f64>,
    /// The target half-width `a` (`0 < a < pi`), or `pi` for the periodic identity.
    pub a: f64,
    /// Whether the data are angles on the torus (identity map, wrapped to `[-pi, pi)`).
    pub periodic: bool,
}

fn check_finite(data: &[f64], what: &str) -> Result<()> {
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(LayersError::NonFinite(format!("{what} (entry {i})")));
    }
    Ok(())
}

impl TorusNormalization {
    /// Fits the box of the rows of `data` (row-major, `dim` columns) and maps it onto `[-a, a]^dim`.
    pub fn fit(data: &[f64], dim: usize, a: f64) -> Result<Self> {
        if dim == 0 {
            return Err(LayersError::InvalidArgument("state dimension 0".into()));
        }
        if !(a.is_finite() && a > 0.0 && a < std::f64::consts::PI) {
            return Err(LayersError::InvalidArgument(format!(
                "torus half-width a must lie in (0, pi), got {a}"
            )));
        }
        if data.is_empty() || data.len() % dim != 0 {
            return Err(LayersError::ShapeMismatch(format!(
                "{} values are not a non-empty set of rows of dimension {dim}",
                data.len()
            )));
        }
        check_finite(data, "data to normalise")?;
        let mut lo = vec![f64::INFINITY; dim];
        let mut hi = vec![f64::NEG_INFINITY; dim];
        for row in data.chunks(dim) {
            for i in 0..dim {
                lo[i] = lo[i].min(row[i]);
                hi[i] = hi[i].max(row[i]);
            }
        }
        let center = (0..dim).map(|i| 0.5 * (lo[i] + hi[i])).collect();
        let half_width = (0..dim)
            .map(|i| {
                let h = 0.5 * (hi[i] - lo[i]);
                if h > 0.0 {
                    h
                } else {
                    1.0
                }
            })
            .collect();
        Ok(Self {
            center,
            half_width,
            a,
            periodic: false,
        })
    }

    /// The identity on angles (data already on `T^dim`; values are wrapped to `[-pi, pi)`).
    pub fn periodic(dim: usize) -> Self {
        Self {
            center: vec![0.0; dim],
            half_width: vec![std::f64::consts::PI; dim],
            a: std::f64::consts::PI,
            periodic: true,
        }
    }

    /// The state dimension.
    pub fn dim(&self) -> usize {
        self.center.len()
    }

    /// Maps rows of `data` to the torus. Fails on NaN/Inf and, for the affine map, on data more
    /// than [`RANGE_SLACK`] half-widths outside the fitted box (whose image must stay inside
    /// `(-pi, pi)`).
    pub fn forward(&self, data: &[f64]) -> Result<Vec<f64>> {
        let dim = self.dim();
        if data.len() % dim != 0 {
            return Err(LayersError::ShapeMismatch(format!(
                "{} values are not rows of dimension {dim}",
                data.len()
            )));
        }
        check_finite(data, "data to normalise")?;
        let pi = std::f64::consts::PI;
        if self.periodic {
            return Ok(data
                .iter()
                .map(|&v| (v + pi).rem_euclid(2.0 * pi) - pi)
                .collect());
        }
        let limit = (self.a * (1.0 + RANGE_SLACK)).min(pi * (1.0 - 1e-9));
        data.iter()
            .enumerate()
            .map(|(j, &v)| {
                let i = j % dim;
                let z = (v - self.center[i]) * self.a / self.half_width[i];
                if z.abs() > limit {
                    Err(LayersError::OutOfRange(format!(
                        "value {v} of coordinate {i} (row {}) maps to {z:.3}, outside the declared \
                         range [{:.4}, {:.4}] by more than {RANGE_SLACK} half-widths",
                        j / dim,
                        self.center[i] - self.half_width[i],
                        self.center[i] + self.half_width[i]
                    )))
                } else {
                    Ok(z)
                }
            })
            .collect()
    }

    /// Maps torus coordinates back to data units.
    pub fn inverse(&self, z: &[f64]) -> Result<Vec<f64>> {
        let dim = self.dim();
        if z.len() % dim != 0 {
            return Err(LayersError::ShapeMismatch(format!(
                "{} values are not rows of dimension {dim}",
                z.len()
            )));
        }
        check_finite(z, "torus coordinates")?;
        Ok(z.iter()
            .enumerate()
            .map(|(j, &v)| {
                let i = j % dim;
                self.center[i] + v * self.half_width[i] / self.a
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_round_trip() {
        let data = [1.0, -2.0, 3.0, 4.0, 2.0, 0.0];
        let n = TorusNormalization::fit(&data, 2, 1.5).unwrap();
        let z = n.forward(&data).unwrap();
        assert!(z.iter().all(|v| v.abs() <= 1.5 + 1e-12));
        let back = n.inverse(&z).unwrap();
        for (a, b) in back.iter().zip(&data) {
            assert!((a - b).abs() < 1e-12);
        }
        assert!(matches!(
            n.forward(&[100.0, 0.0]),
            Err(LayersError::OutOfRange(_))
        ));
        assert!(matches!(
            n.forward(&[f64::NAN, 0.0]),
            Err(LayersError::NonFinite(_))
        ));
        assert!(TorusNormalization::fit(&data, 2, 4.0).is_err());
        assert!(TorusNormalization::fit(&[f64::NAN, 1.0], 2, 1.0).is_err());
        let p = TorusNormalization::periodic(1);
        assert!((p.forward(&[4.0]).unwrap()[0] - (4.0 - 2.0 * std::f64::consts::PI)).abs() < 1e-12);
    }
}
