//! The training data of a layered model: snapshots `S_0..S_K` of torus coordinates, with the
//! windows and pairs the losses read.

use crate::{LayersError, Result};

/// Snapshots `S_0..S_K` (row-major `B x d` torus coordinates each).
#[derive(Clone, Debug)]
pub struct SnapshotData {
    snapshots: Vec<Vec<f64>>,
    dim: usize,
    /// Identity of these values (kept by clones): a [`Trainer`] prepares the features of the
    /// same data on the device once.
    pub(super) id: u64,
}

/// A fresh [`SnapshotData`] identity.
fn next_data_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl SnapshotData {
    /// Checks shapes (at least two snapshots, equal row counts) and finiteness.
    pub fn new(snapshots: Vec<Vec<f64>>, dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(LayersError::InvalidArgument("state dimension 0".into()));
        }
        if snapshots.len() < 2 {
            return Err(LayersError::InvalidArgument(
                "at least two snapshots (S_0 and S_J) are needed".into(),
            ));
        }
        let len = snapshots[0].len();
        if len == 0 || len % dim != 0 {
            return Err(LayersError::ShapeMismatch(format!(
                "snapshot of {len} values is not a non-empty set of rows of dimension {dim}"
            )));
        }
        for (j, s) in snapshots.iter().enumerate() {
            if s.len() != len {
                return Err(LayersError::ShapeMismatch(format!(
                    "snapshot {j} has {} values, snapshot 0 has {len}",
                    s.len()
                )));
            }
            if let Some(i) = s.iter().position(|v| !v.is_finite()) {
                return Err(LayersError::NonFinite(format!("snapshot {j} (entry {i})")));
            }
        }
        Ok(Self {
            snapshots,
            dim,
            id: next_data_id(),
        })
    }

    /// Snapshots from trajectories `traj` (row-major `n_traj x n_time x dim`, torus coordinates):
    /// `S_j` holds the states at times `s + j * window` for every trajectory and every start
    /// `s < min(window, n_time - windows * window)`.
    pub fn from_trajectories(
        traj: &[f64],
        n_traj: usize,
        n_time: usize,
        dim: usize,
        window: usize,
        windows: usize,
    ) -> Result<Self> {
        if traj.len() != n_traj * n_time * dim {
            return Err(LayersError::ShapeMismatch(format!(
                "{} values for {n_traj} x {n_time} x {dim} trajectories",
                traj.len()
            )));
        }
        if window == 0 || windows == 0 || n_time < windows * window + 1 {
            return Err(LayersError::InvalidArgument(format!(
                "{windows} windows of {window} steps need at least {} time steps, got {n_time}",
                windows * window + 1
            )));
        }
        let starts = window.min(n_time - windows * window);
        let snapshots = (0..=windows)
            .map(|j| {
                let mut s = Vec::with_capacity(n_traj * starts * dim);
                for i in 0..n_traj {
                    for t in 0..starts {
                        let at = (i * n_time + t + j * window) * dim;
                        s.extend_from_slice(&traj[at..at + dim]);
                    }
                }
                s
            })
            .collect();
        Self::new(snapshots, dim)
    }

    /// The snapshots.
    pub fn snapshots(&self) -> &[Vec<f64>] {
        &self.snapshots
    }

    /// Rows per snapshot.
    pub fn rows(&self) -> usize {
        self.snapshots[0].len() / self.dim
    }

    /// State dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The rows `rows` of every snapshot.
    pub fn select(&self, rows: &[usize]) -> Result<Self> {
        let d = self.dim;
        let snapshots = self
            .snapshots
            .iter()
            .map(|s| {
                rows.iter()
                    .flat_map(|&r| s[r * d..(r + 1) * d].iter().copied())
                    .collect()
            })
            .collect();
        Self::new(snapshots, d)
    }
}
