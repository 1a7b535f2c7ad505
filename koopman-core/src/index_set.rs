//! Finite multi-index sets over `Z^d`.
//!
//! The Fourier representation space of the deep Koopman-layered model (SPEC 3.1) is indexed by a
//! set `N` of multi-indices, and each Toeplitz factor of a generator by a set `M` of offsets.
//! Sets are built as boxes (products of integer ranges), with optional exclusions:
//!
//! ```
//! use koopman_core::index_set::IndexSet;
//!
//! # fn main() -> koopman_core::Result<()> {
//! // N = {-5..5}^3 \ {0}, the paper's representation space
//! let n = IndexSet::cube(3, 5)?.without_origin()?;
//! assert_eq!(n.len(), 1330);
//! // M = {-2..2}^2 x {-1..1} \ {0}
//! let m = IndexSet::product_of_ranges(&[(-2, 2), (-2, 2), (-1, 1)])?.without_origin()?;
//! assert_eq!(m.len(), 74);
//! assert_eq!(n.position(&[0, 0, 1]).is_some(), true);
//! # Ok(()) }
//! ```

use crate::error::{CoreError, Result};
use std::collections::HashMap;

/// A finite, ordered set of distinct multi-indices in `Z^d`, with O(1) position lookup.
#[derive(Clone, Debug)]
pub struct IndexSet {
    dim: usize,
    points: Vec<i64>,
    lookup: HashMap<Vec<i64>, usize>,
}

impl PartialEq for IndexSet {
    fn eq(&self, other: &Self) -> bool {
        self.dim == other.dim && self.points == other.points
    }
}

impl IndexSet {
    /// A set from explicit points (in the given order). Every point must have `dim` coordinates,
    /// points must be distinct, and the set must not be empty.
    pub fn from_points<P: AsRef<[i64]>>(
        dim: usize,
        points: impl IntoIterator<Item = P>,
    ) -> Result<Self> {
        if dim == 0 {
            return Err(CoreError::InvalidArgument(
                "index set dimension must be at least 1".into(),
            ));
        }
        let mut flat = Vec::new();
        let mut lookup = HashMap::new();
        for (i, p) in points.into_iter().enumerate() {
            let p = p.as_ref();
            if p.len() != dim {
                return Err(CoreError::ShapeMismatch(format!(
                    "index set point {i} has {} coordinates, expected {dim}",
                    p.len()
                )));
            }
            if lookup.insert(p.to_vec(), lookup.len()).is_some() {
                return Err(CoreError::InvalidArgument(format!(
                    "index set point {p:?} appears twice"
                )));
            }
            flat.extend_from_slice(p);
        }
        if lookup.is_empty() {
            return Err(CoreError::Empty("index set has no points".into()));
        }
        Ok(Self {
            dim,
            points: flat,
            lookup,
        })
    }

    /// The box `[lo_1, hi_1] x ... x [lo_d, hi_d]` (inclusive), in lexicographic order.
    pub fn product_of_ranges(ranges: &[(i64, i64)]) -> Result<Self> {
        if ranges.is_empty() {
            return Err(CoreError::InvalidArgument(
                "a box index set needs at least one range".into(),
            ));
        }
        for (k, &(lo, hi)) in ranges.iter().enumerate() {
            if lo > hi {
                return Err(CoreError::Empty(format!(
                    "range {k} of the index box is empty ({lo} > {hi})"
                )));
            }
        }
        let mut points = vec![Vec::new()];
        for &(lo, hi) in ranges {
            points = points
                .into_iter()
                .flat_map(|p| {
                    (lo..=hi).map(move |v| {
                        let mut q = p.clone();
                        q.push(v);
                        q
                    })
                })
                .collect();
        }
        Self::from_points(ranges.len(), points)
    }

    /// The cube `{-radius..radius}^dim`.
    pub fn cube(dim: usize, radius: i64) -> Result<Self> {
        if radius < 0 {
            return Err(CoreError::InvalidArgument(format!(
                "cube radius must be >= 0, got {radius}"
            )));
        }
        if dim == 0 {
            return Err(CoreError::InvalidArgument(
                "index set dimension must be at least 1".into(),
            ));
        }
        Self::product_of_ranges(&vec![(-radius, radius); dim])
    }

    /// This set without the given points (points not in the set are ignored, but each must have
    /// the set's dimension). The result must not be empty.
    pub fn without<P: AsRef<[i64]>>(&self, excluded: &[P]) -> Result<Self> {
        for p in excluded {
            if p.as_ref().len() != self.dim {
                return Err(CoreError::ShapeMismatch(format!(
                    "excluded point {:?} has {} coordinates, the set has {}",
                    p.as_ref(),
                    p.as_ref().len(),
                    self.dim
                )));
            }
        }
        let drop: std::collections::HashSet<&[i64]> = excluded.iter().map(|p| p.as_ref()).collect();
        Self::from_points(self.dim, self.iter().filter(|p| !drop.contains(p)))
    }

    /// This set without the origin `0 in Z^d`.
    pub fn without_origin(&self) -> Result<Self> {
        self.without(&[vec![0; self.dim]])
    }

    /// Number of coordinates of each point.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.points.len() / self.dim
    }

    /// Always false: index sets are never empty.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The `i`-th point.
    pub fn point(&self, i: usize) -> &[i64] {
        &self.points[i * self.dim..(i + 1) * self.dim]
    }

    /// All points in order.
    pub fn iter(&self) -> impl Iterator<Item = &[i64]> + '_ {
        self.points.chunks_exact(self.dim)
    }

    /// Position of a point, if it belongs to the set.
    pub fn position(&self, p: &[i64]) -> Option<usize> {
        self.lookup.get(p).copied()
    }

    /// Largest `|n_k|` over the set, for coordinate `k`.
    pub fn max_abs_coordinate(&self, k: usize) -> i64 {
        self.iter().map(|p| p[k].abs()).max().unwrap_or(0)
    }

    /// The table `T[i * |offsets| + j] = position(self[i] - sign * offsets[j])`, with `self.len()`
    /// standing for "outside the set". With `sign = 1` this gathers `x_{n - m}` (a Toeplitz
    /// product), with `sign = -1` it gathers `x_{n + m}` (its adjoint).
    pub fn shift_table(&self, offsets: &IndexSet, sign: i64) -> Result<Vec<u32>> {
        self.check_same_dim(offsets, "offset set")?;
        let outside = self.len() as u32;
        let mut table = Vec::with_capacity(self.len() * offsets.len());
        let mut buf = vec![0i64; self.dim];
        for n in self.iter() {
            for m in offsets.iter() {
                for k in 0..self.dim {
                    buf[k] = n[k] - sign * m[k];
                }
                table.push(self.position(&buf).map_or(outside, |p| p as u32));
            }
        }
        Ok(table)
    }

    /// The dense Toeplitz pattern: `T[i * len + j] = offsets.position(self[i] - self[j])`, with
    /// `offsets.len()` standing for "not an offset". Entry `(n, l)` of a Toeplitz matrix over this
    /// set is `a_{n - l}`, so gathering padded coefficients by `T` materialises it.
    pub fn difference_table(&self, offsets: &IndexSet) -> Result<Vec<u32>> {
        self.check_same_dim(offsets, "offset set")?;
        let outside = offsets.len() as u32;
        let mut table = Vec::with_capacity(self.len() * self.len());
        let mut buf = vec![0i64; self.dim];
        for n in self.iter() {
            for l in self.iter() {
                for k in 0..self.dim {
                    buf[k] = n[k] - l[k];
                }
                table.push(offsets.position(&buf).map_or(outside, |p| p as u32));
            }
        }
        Ok(table)
    }

    /// Fails unless `other` has the same dimension as `self`.
    pub fn check_same_dim(&self, other: &IndexSet, what: &str) -> Result<()> {
        if other.dim != self.dim {
            return Err(CoreError::ShapeMismatch(format!(
                "{what} has dimension {}, expected {}",
                other.dim, self.dim
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_and_exclusions() {
        let n = IndexSet::product_of_ranges(&[(-5, 5), (-5, 5), (-2, 2)]).unwrap();
        assert_eq!(n.len(), 11 * 11 * 5);
        let n0 = n.without_origin().unwrap();
        assert_eq!(n0.len(), n.len() - 1);
        assert!(n0.position(&[0, 0, 0]).is_none());
        for (i, p) in n0.iter().enumerate() {
            assert_eq!(n0.position(p), Some(i));
        }
    }

    #[test]
    fn bad_sets_are_errors() {
        assert!(matches!(
            IndexSet::from_points(2, Vec::<Vec<i64>>::new()),
            Err(CoreError::Empty(_))
        ));
        assert!(matches!(
            IndexSet::from_points(2, [vec![1, 2], vec![3]]),
            Err(CoreError::ShapeMismatch(_))
        ));
        assert!(matches!(
            IndexSet::from_points(1, [vec![1], vec![1]]),
            Err(CoreError::InvalidArgument(_))
        ));
        assert!(IndexSet::product_of_ranges(&[(1, 0)]).is_err());
        assert!(IndexSet::cube(0, 2).is_err());
        let single = IndexSet::from_points(1, [vec![0]]).unwrap();
        assert!(matches!(single.without_origin(), Err(CoreError::Empty(_))));
        let n = IndexSet::cube(2, 1).unwrap();
        assert!(matches!(
            n.without(&[vec![0, 0, 0]]),
            Err(CoreError::ShapeMismatch(_))
        ));
        let m3 = IndexSet::cube(3, 1).unwrap();
        assert!(matches!(
            n.shift_table(&m3, 1),
            Err(CoreError::ShapeMismatch(_))
        ));
    }

    #[test]
    fn shift_table_matches_definition() {
        let n = IndexSet::cube(1, 2).unwrap(); // -2..2
        let m = IndexSet::from_points(1, [vec![1], vec![-1]]).unwrap();
        let t = n.shift_table(&m, 1).unwrap();
        // n = -2: n-1 = -3 (outside), n+1 = -1 (pos 1)
        assert_eq!(&t[0..2], &[5, 1]);
        // n = 2: n-1 = 1 (pos 3), n+1 = 3 (outside)
        assert_eq!(&t[8..10], &[3, 5]);
    }
}
