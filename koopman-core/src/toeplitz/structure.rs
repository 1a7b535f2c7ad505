//! What a family of Toeplitz generators shares (the gather tables of each factor, the
//! frequencies, the tables that materialise a factor), the weights of the product chains, and the
//! packing of operands for the gather kernels.

use crate::complex::ComplexTensor;
use crate::error::{CoreError, Result};
use crate::gather::GatherPattern;
use crate::index_set::IndexSet;
use candle_core::{DType, Device, Tensor};
use std::sync::{Arc, OnceLock};

/// One Toeplitz factor position `r`: its offsets and the gather tables over `N`.
#[derive(Clone, Debug)]
pub(super) struct FactorPattern {
    pub(super) offsets: Arc<IndexSet>,
    /// `position(n - m)` for every `(n, m)`, `|N|` when outside `N`.
    pub(super) gather: Tensor,
    /// `position(n + m)` for every `(n, m)`, `|N|` when outside `N` (the adjoint).
    pub(super) gather_adjoint: Tensor,
    /// The same tables for the gather kernels (on the device, where it has kernels).
    pub(super) pattern: GatherPattern,
}

/// Complex gather weights, kept both as a [`ComplexTensor`] and packed `(.., .., 2)` for the
/// kernels (both views are in the autograd graph of the coefficients).
#[derive(Clone, Debug)]
pub(super) struct GatherWeights {
    pub(super) complex: ComplexTensor,
    pub(super) packed: Tensor,
}

impl GatherWeights {
    pub(super) fn new(complex: ComplexTensor) -> Result<Self> {
        let packed = Tensor::stack(&[complex.re(), complex.im()], 2)?;
        Ok(Self { complex, packed })
    }
}

/// What a family of Toeplitz generators over `N` with offset sets `M_1..M_R` shares, on one device
/// and dtype: the gather tables, the frequencies `n_k` and the gathered frequencies of the
/// first-applied factor. Building it costs `O(R |N| |M|)` set lookups and an upload; build it once
/// (per layer, per model) and make each step's generator with [`ToeplitzGenerator::from_structure`](super::ToeplitzGenerator::from_structure).
#[derive(Debug)]
pub struct ToeplitzStructure {
    pub(super) index_set: Arc<IndexSet>,
    pub(super) factors: Vec<FactorPattern>,
    /// `frequencies[k]` holds `n_k` for every `n` in `N`, shape `(|N|, 1)`.
    pub(super) frequencies: Vec<Tensor>,
    /// All frequencies as rows `(|N|, d)` (the factors of the structured gather).
    pub(super) frequency_rows: Tensor,
    /// `(n - m)_k` for every `(n, m)` of the last factor (0 where `n - m` is outside `N`),
    /// `(|N|, |M_R|)` per coordinate `k`.
    pub(super) gathered_frequencies: Vec<Tensor>,
    /// For `R = 1`: entry `(l, m)` is the flat index `i |M| + m` of the weight that multiplies
    /// `y_l` in output row `i = position(l + m)`, or `|N| |M|` (a zero pad): column sums of the
    /// weight moduli, i.e. `||L||_1`.
    pub(super) column_index: Option<Tensor>,
    /// Per factor, the `|N| x |N|` difference table and the flat gradient index (see
    /// [`DenseTables`]), made on the first dense materialisation (after its size check) and kept
    /// for the next ones.
    pub(super) difference_tables: OnceLock<Vec<DenseTables>>,
    pub(super) dtype: DType,
    pub(super) device: Device,
}

impl ToeplitzStructure {
    /// The structure over `index_set` with one offset set per factor (`R = offsets.len() >= 1`).
    pub fn new(
        index_set: Arc<IndexSet>,
        offsets: Vec<Arc<IndexSet>>,
        dtype: DType,
        device: &Device,
    ) -> Result<Arc<Self>> {
        if offsets.is_empty() {
            return Err(CoreError::InvalidArgument(
                "a Toeplitz generator needs at least one factor (R >= 1)".into(),
            ));
        }
        if !dtype.is_float() {
            return Err(CoreError::InvalidArgument(format!(
                "Toeplitz generators compute in a float dtype, got {dtype:?}"
            )));
        }
        for (r, m) in offsets.iter().enumerate() {
            index_set.check_same_dim(m, &format!("offset set of factor {r}"))?;
        }
        let n = index_set.len();
        let kernels = GatherPattern::supports(device);
        let factors = offsets
            .into_iter()
            .map(|m| {
                let table = index_set.shift_table(&m, 1)?;
                let transpose = index_set.shift_table(&m, -1)?;
                let gather = Tensor::from_slice(&table, n * m.len(), device)?;
                let gather_adjoint = Tensor::from_slice(&transpose, n * m.len(), device)?;
                let mut pattern = GatherPattern::new(table, transpose, n, m.len())?;
                if kernels && !device.is_cpu() {
                    pattern = pattern.with_device_tables(gather.clone(), gather_adjoint.clone());
                }
                Ok(FactorPattern {
                    pattern,
                    gather,
                    gather_adjoint,
                    offsets: m,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let d = index_set.dim();
        let frequencies = (0..d)
            .map(|k| {
                let f: Vec<f64> = index_set.iter().map(|p| p[k] as f64).collect();
                Ok(Tensor::from_vec(f, (n, 1), device)?.to_dtype(dtype)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let frequency_rows = Tensor::cat(&frequencies, 1)?;
        let last = factors.len() - 1;
        let m_last = factors[last].offsets.len();
        let gathered_frequencies = (0..d)
            .map(|k| {
                let zero = Tensor::zeros((1, 1), dtype, device)?;
                let padded = Tensor::cat(&[&frequencies[k], &zero], 0)?.squeeze(1)?;
                Ok(padded
                    .index_select(&factors[last].gather, 0)?
                    .reshape((n, m_last))?)
            })
            .collect::<Result<Vec<_>>>()?;
        let column_index = if factors.len() == 1 {
            let k = m_last;
            let transpose = factors[0].pattern.transposed();
            let mut index = vec![(n * k) as u32; n * k];
            for (l, row) in transpose.table().chunks_exact(k).enumerate() {
                for (c, &i) in row.iter().enumerate() {
                    if (i as usize) < n {
                        index[l * k + c] = i * k as u32 + c as u32;
                    }
                }
            }
            Some(Tensor::from_vec(index, n * k, device)?)
        } else {
            None
        };
        Ok(Arc::new(Self {
            index_set,
            factors,
            frequencies,
            frequency_rows,
            gathered_frequencies,
            column_index,
            difference_tables: OnceLock::new(),
            dtype,
            device: device.clone(),
        }))
    }

    /// The representation index set `N`.
    pub fn index_set(&self) -> &Arc<IndexSet> {
        &self.index_set
    }

    /// Number of Toeplitz factors `R`.
    pub fn num_factors(&self) -> usize {
        self.factors.len()
    }

    /// The dtype of the generators built on it.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device of the generators built on it.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

/// What materialising one Toeplitz factor needs.
#[derive(Debug)]
pub(super) struct DenseTables {
    /// `position_M(n_i - n_j)` for every `(i, j)` (`|M|` when not an offset): gathering the
    /// zero-padded coefficients by it gives the factor.
    pub(super) difference: Tensor,
    /// `i |N| + T[i, c]` for every `(i, c)` (`|N|^2` where `T[i, c]` is outside): the entries of
    /// the factor that hold coefficient `c` are `(i, T[i, c])`, so its gradient is a gather of the
    /// flat, zero-padded matrix gradient by this index, summed over `i`.
    pub(super) gradient: Tensor,
}

/// `f` applied to the operand as rows `(b, n)` (a vector `(n,)` is one row, a block `(n, b)` its
/// transpose), the result returned in the operand's shape. Only views are taken here: the
/// packing copies once, and the unpacked result stays a strided view (no copy back).
pub(super) fn as_columns(
    x: &ComplexTensor,
    f: impl FnOnce(&ComplexTensor) -> Result<ComplexTensor>,
) -> Result<ComplexTensor> {
    if x.dims().len() == 1 {
        f(&x.unsqueeze(0)?)?.squeeze(0)
    } else {
        f(&x.t()?)?.t()
    }
}

/// Rows `(b, n)` as packed complex `(b, n, 2)`.
pub(super) fn pack(rows: &ComplexTensor) -> Result<Tensor> {
    Ok(Tensor::stack(&[rows.re(), rows.im()], 2)?)
}

/// Packed complex `(b, n, 2)` as rows `(b, n)`.
pub(super) fn unpack(packed: &Tensor) -> Result<ComplexTensor> {
    ComplexTensor::new(
        packed.narrow(2, 0, 1)?.squeeze(2)?,
        packed.narrow(2, 1, 1)?.squeeze(2)?,
    )
}

/// The gather weights of [`ToeplitzGenerator::chains`] (differentiable in coefficients and time).
pub(super) fn build_chains(
    structure: &ToeplitzStructure,
    coeffs: &[Vec<ComplexTensor>],
    time: &Tensor,
) -> Result<Vec<Vec<GatherWeights>>> {
    let last = structure.factors.len() - 1;
    // t i (n - m)_k a^{k,R}_m for every (n, m).
    let first_applied = |k: usize| -> Result<ComplexTensor> {
        coeffs[k][last]
            .unsqueeze(0)?
            .broadcast_mul_real(&structure.gathered_frequencies[k])?
            .mul_i()?
            .broadcast_mul_real(time)
    };
    if structure.factors.len() == 1 {
        let mut merged = first_applied(0)?;
        for k in 1..coeffs.len() {
            merged = merged.add(&first_applied(k)?)?;
        }
        return Ok(vec![vec![GatherWeights::new(merged)?]]);
    }
    (0..coeffs.len())
        .map(|k| {
            let mut chain = coeffs[k][..last]
                .iter()
                .map(|a| GatherWeights::new(a.unsqueeze(0)?))
                .collect::<Result<Vec<_>>>()?;
            chain.push(GatherWeights::new(first_applied(k)?)?);
            Ok(chain)
        })
        .collect()
}
