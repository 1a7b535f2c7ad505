//! Memory a deep Koopman-layered model needs, estimated before anything is allocated.
//!
//! The index set `N` grows as `(2r + 1)^D` with the state dimension, and every layer holds
//! `|N| x |M|` tables and, during a training step, a few dozen bytes per entry of gather weights
//! and their gradients per coordinate. A model a few times too large for the machine used to abort
//! in an allocation deep inside a step (or be killed by the kernel); [`MemoryEstimate`] counts
//! those bytes from the sizes alone, and [`crate::DeepKoopmanLayeredBuilder::build`] refuses a
//! model above its limit with [`LayersError::MemoryLimit`], naming the sizes and the limit.
//!
//! The per-entry constants below come from the peak resident memory of `koopman fit` on the CPU
//! (release, f64), rounded up so that the estimate errs on the large side (the measurement is in
//! `koopman-bench/results/`).
//!
//! ```
//! use std::sync::Arc;
//! use koopman_core::IndexSet;
//! use koopman_layers::memory::MemoryEstimate;
//!
//! # fn main() -> koopman_layers::Result<()> {
//! let n = IndexSet::cube(5, 3)?.without_origin()?; // |N| = 16,806
//! let m = IndexSet::cube(5, 1)?.without_origin()?; // |M| = 242
//! let e = MemoryEstimate::new(&n, &[Arc::new(m)], 2, 8);
//! assert!(e.total_bytes() > 5_000_000_000); // about 6 GB: refused on a small machine
//! # Ok(()) }
//! ```

use crate::error::{LayersError, Result};
use koopman_core::IndexSet;
use std::sync::Arc;

/// Bytes per table entry `(n, m)` and layer that a model keeps: the gather table and its
/// transpose (host and device copies, `u32`), the column index, and `D` gathered frequencies.
const STATIC_PER_ENTRY: u64 = 20;
/// ... plus per coordinate (`D` of them) the gathered frequency (`8`).
const STATIC_PER_ENTRY_COORDINATE: u64 = 8;
/// Bytes per entry, layer and coordinate that a training step allocates: the complex weight
/// temporaries of the chain (4 per coordinate) and their gradients.
const STEP_PER_ENTRY_COORDINATE: u64 = 128;
/// Bytes per entry and layer of a step besides: merged and packed weights and their gradients.
const STEP_PER_ENTRY: u64 = 64;

/// The estimated memory of a model (and one training step) from its sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// `|N|`.
    pub n: usize,
    /// `sum_r |M_r|`: table entries per row over all factors.
    pub offsets: usize,
    /// The dimension `D` of `N`.
    pub coordinates: usize,
    /// Layers `J`.
    pub layers: usize,
    /// Bytes per float (8 for f64, 4 for f32).
    pub float_bytes: usize,
}

impl MemoryEstimate {
    /// The estimate for `layers` layers over `index_set` with the factors' offset sets.
    pub fn new(
        index_set: &IndexSet,
        offsets: &[Arc<IndexSet>],
        layers: usize,
        float_bytes: usize,
    ) -> Self {
        Self {
            n: index_set.len(),
            offsets: offsets.iter().map(|m| m.len()).sum(),
            coordinates: index_set.dim(),
            layers,
            float_bytes,
        }
    }

    /// Bytes the model keeps (tables, frequencies), allocated when it is built.
    pub fn model_bytes(&self) -> u64 {
        let per_entry = STATIC_PER_ENTRY + STATIC_PER_ENTRY_COORDINATE * self.coordinates as u64;
        self.entries().saturating_mul(per_entry)
    }

    /// Bytes one training step allocates on top (weights, temporaries, gradients), at the
    /// dtype's width.
    pub fn step_bytes(&self) -> u64 {
        let per_entry = STEP_PER_ENTRY + STEP_PER_ENTRY_COORDINATE * self.coordinates as u64;
        // The constants are for 8-byte floats.
        (self.entries().saturating_mul(per_entry) / 8).saturating_mul(self.float_bytes as u64)
    }

    /// [`MemoryEstimate::model_bytes`] plus [`MemoryEstimate::step_bytes`].
    pub fn total_bytes(&self) -> u64 {
        self.model_bytes().saturating_add(self.step_bytes())
    }

    /// Table entries over all layers, `J |N| sum_r |M_r|`.
    fn entries(&self) -> u64 {
        (self.layers as u64)
            .saturating_mul(self.n as u64)
            .saturating_mul(self.offsets as u64)
    }

    /// Fails with [`LayersError::MemoryLimit`] when [`MemoryEstimate::total_bytes`] exceeds
    /// `limit` bytes.
    pub fn check(&self, limit: u64) -> Result<()> {
        let needed = self.total_bytes();
        if needed > limit {
            return Err(LayersError::MemoryLimit {
                needed,
                limit,
                n: self.n,
                offsets: self.offsets,
                layers: self.layers,
            });
        }
        Ok(())
    }
}

/// The memory `device` can still give: the host's available memory on the CPU, the GPU's free
/// memory on a CUDA device (builds with the `cuda` feature); `None` where it cannot be read.
pub fn available_memory(device: &candle_core::Device) -> Option<u64> {
    if device.is_cpu() {
        return available_host_memory();
    }
    #[cfg(feature = "cuda")]
    if let Ok(cuda) = device.as_cuda_device() {
        return cuda
            .cuda_stream()
            .context()
            .mem_get_info()
            .ok()
            .map(|(free, _total)| free as u64);
    }
    None
}

/// The memory the host can still give (`MemAvailable` of `/proc/meminfo`), where it can be read.
pub fn available_host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_grows_with_the_sizes_and_refuses_above_the_limit() {
        let n = IndexSet::cube(4, 2).unwrap().without_origin().unwrap();
        let m = Arc::new(IndexSet::cube(4, 1).unwrap().without_origin().unwrap());
        let one = MemoryEstimate::new(&n, std::slice::from_ref(&m), 1, 8);
        let two = MemoryEstimate::new(&n, std::slice::from_ref(&m), 2, 8);
        assert_eq!(two.total_bytes(), 2 * one.total_bytes());
        let f32 = MemoryEstimate::new(&n, std::slice::from_ref(&m), 1, 4);
        assert!(f32.total_bytes() < one.total_bytes());
        assert!(one.check(one.total_bytes()).is_ok());
        match one.check(one.total_bytes() - 1) {
            Err(LayersError::MemoryLimit {
                needed,
                limit,
                n: size,
                layers,
                ..
            }) => {
                assert_eq!(
                    (needed, limit, size, layers),
                    (one.total_bytes(), needed - 1, n.len(), 1)
                );
            }
            other => panic!("not refused: {other:?}"),
        }
        // Sizes whose product overflows saturate instead of wrapping to a small number.
        let huge = MemoryEstimate {
            n: usize::MAX,
            offsets: usize::MAX,
            coordinates: 9,
            layers: 2,
            float_bytes: 8,
        };
        assert_eq!(huge.total_bytes(), u64::MAX);
        assert!(available_host_memory().is_none_or(|b| b > 0));
        assert_eq!(
            available_memory(&candle_core::Device::Cpu).is_some(),
            available_host_memory().is_some()
        );
    }
}
