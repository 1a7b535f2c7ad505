//! The Yin-Yang classification data set (Kriener et al. 2021), generated in-crate and seeded.
//!
//! With `r_small = 0.1`, `r_big = 0.5`: draw a class uniformly from `{0, 1, 2}`, then
//! rejection-sample `(x, y)` in `U[0, 2 r_big]^2` inside the circle of centre `(r_big, r_big)` and
//! radius `r_big` until [`yinyang_class`] of the point is that class. Features are
//! `[x, y, 2 r_big - x, 2 r_big - y]` (`[x, y, 1 - x, 1 - y]` for the standard radii); classes are
//! yang (0), yin (1) and dot (2).
//!
//! ```
//! use koopman_core::data::yinyang::{yinyang, yinyang_class, YinYangConfig};
//!
//! let data = yinyang(300, 42, &YinYangConfig::default()).unwrap();
//! assert_eq!(data.len(), 300);
//! for (f, &c) in data.features.iter().zip(&data.labels) {
//!     assert_eq!(yinyang_class(f[0], f[1], &YinYangConfig::default()), c);
//!     assert!((f[0] + f[2] - 1.0).abs() < 1e-12);
//! }
//! // Every class appears.
//! assert!((0..3).all(|c| data.labels.contains(&c)));
//! ```

use crate::error::{CoreError, Result};
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};

/// Radii of the Yin-Yang figure.
#[derive(Clone, Debug, PartialEq)]
pub struct YinYangConfig {
    /// Radius of the two dots (0.1).
    pub r_small: f64,
    /// Radius of the whole figure (0.5).
    pub r_big: f64,
}

impl Default for YinYangConfig {
    fn default() -> Self {
        Self {
            r_small: 0.1,
            r_big: 0.5,
        }
    }
}

/// The class of a point: dot (2) within `r_small` of either dot centre; else yin (1) if
/// `d_right <= r_small`, or `r_small < d_left <= r_big / 2`, or (`y > r_big` and
/// `d_right > r_big / 2`); else yang (0).
pub fn yinyang_class(x: f64, y: f64, config: &YinYangConfig) -> u32 {
    let (rs, rb) = (config.r_small, config.r_big);
    let d_right = ((x - 1.5 * rb).powi(2) + (y - rb).powi(2)).sqrt();
    let d_left = ((x - 0.5 * rb).powi(2) + (y - rb).powi(2)).sqrt();
    if d_right < rs || d_left < rs {
        return 2;
    }
    let yin =
        d_right <= rs || (d_left > rs && d_left <= 0.5 * rb) || (y > rb && d_right > 0.5 * rb);
    u32::from(yin)
}

/// A generated Yin-Yang sample set.
#[derive(Clone, Debug, PartialEq)]
pub struct YinYang {
    /// `[x, y, 2 r_big - x, 2 r_big - y]` per sample.
    pub features: Vec<[f64; 4]>,
    /// Class per sample (0 yang, 1 yin, 2 dot).
    pub labels: Vec<u32>,
}

impl YinYang {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Features `(n, 4)` in `dtype` and labels `(n,)` `u32` on `device`.
    pub fn to_tensors(&self, dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
        let flat: Vec<f64> = self.features.iter().flatten().copied().collect();
        let x = Tensor::from_vec(flat, (self.len(), 4), device)?.to_dtype(dtype)?;
        let y = Tensor::from_vec(self.labels.clone(), self.len(), device)?;
        Ok((x, y))
    }
}

/// `n` samples drawn with the seeded generator (rand `StdRng`).
pub fn yinyang(n: usize, seed: u64, config: &YinYangConfig) -> Result<YinYang> {
    let (rs, rb) = (config.r_small, config.r_big);
    if !(rb.is_finite() && rb > 0.0 && rs.is_finite() && rs > 0.0 && rs < 0.5 * rb) {
        return Err(CoreError::InvalidArgument(format!(
            "Yin-Yang radii need 0 < r_small < r_big / 2, got r_small = {rs}, r_big = {rb}"
        )));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut features = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let goal: u32 = rng.random_range(0..3);
        loop {
            let x = rng.random::<f64>() * 2.0 * rb;
            let y = rng.random::<f64>() * 2.0 * rb;
            if ((x - rb).powi(2) + (y - rb).powi(2)).sqrt() > rb {
                continue;
            }
            if yinyang_class(x, y, config) == goal {
                features.push([x, y, 2.0 * rb - x, 2.0 * rb - y]);
                labels.push(goal);
                break;
            }
        }
    }
    Ok(YinYang { features, labels })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_at_landmarks_and_balance() {
        let c = YinYangConfig::default();
        assert_eq!(yinyang_class(0.75, 0.5, &c), 2);
        assert_eq!(yinyang_class(0.25, 0.5, &c), 2);
        // Ring around the left dot is yin, around the right dot yang.
        assert_eq!(yinyang_class(0.25 + 0.12, 0.5, &c), 1);
        assert_eq!(yinyang_class(0.75 + 0.12, 0.5, &c), 0);
        // Top far from the right dot: yin; bottom: yang.
        assert_eq!(yinyang_class(0.5, 0.9, &c), 1);
        assert_eq!(yinyang_class(0.5, 0.1, &c), 0);
        let d = yinyang(3000, 1, &c).unwrap();
        for k in 0..3 {
            let count = d.labels.iter().filter(|&&l| l == k).count();
            assert!((850..1150).contains(&count), "class {k}: {count}");
        }
        assert_eq!(d, yinyang(3000, 1, &c).unwrap());
        assert_ne!(d, yinyang(3000, 2, &c).unwrap());
    }
}
