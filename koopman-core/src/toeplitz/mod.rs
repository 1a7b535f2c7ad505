//! The structured Toeplitz generator of the deep Koopman-layered model (SPEC 3.1, paper 003).
//!
//! Over a representation index set `N` in `Z^d` and offset sets `M_1..M_R`, the generator is
//!
//! `L = t * sum_{k=1}^{d} A^k_1 A^k_2 ... A^k_R D_k`,
//!
//! where `A^k_r` is the Toeplitz matrix with entry `(n, l) = a^{k,r}_{n-l}` when `n - l` lies in
//! `M_r` (zero otherwise) and `D_k = diag(i l_k)`. Applying `L` costs `O(d R |N| |M|)`: each
//! Toeplitz factor is a gather of the operand by a precomputed index table followed by a weighted
//! sum over the offsets, so the `|N| x |N|` matrix is never formed (unless
//! [`LinearOperator::to_dense`] asks for it). Everything is candle ops: gradients flow to the
//! coefficients, the time `t` and the operand.
//!
//! ```
//! use std::sync::{Arc, OnceLock};
//! use candle_core::{DType, Device};
//! use koopman_core::index_set::IndexSet;
//! use koopman_core::operator::LinearOperator;
//! use koopman_core::toeplitz::ToeplitzGenerator;
//!
//! # fn main() -> koopman_core::Result<()> {
//! let n = Arc::new(IndexSet::cube(2, 3)?.without_origin()?);
//! let m = Arc::new(IndexSet::cube(2, 1)?.without_origin()?);
//! let op = ToeplitzGenerator::random(n, vec![m], 0.1, 1.0, 7, DType::F64, &Device::Cpu)?;
//! let dense = op.to_dense()?; // (48, 48), for checks on small problems
//! assert_eq!(dense.dims(), &[48, 48]);
//! # Ok(()) }
//! ```

mod structure;

pub use structure::ToeplitzStructure;
use structure::{as_columns, build_chains, pack, unpack, DenseTables, GatherWeights};

use crate::complex::{with_gradient, ComplexTensor};
use crate::error::{CoreError, Result};
use crate::gather::{GatherPattern, TaylorSteps};
use crate::index_set::IndexSet;
use crate::operator::{check_dense_memory, check_operand, LinearOperator};
use candle_core::{DType, Device, Tensor};
use std::sync::{Arc, OnceLock};

/// How Toeplitz factors are applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GatherKernel {
    /// The one-pass gather kernels of [`crate::gather`] (CPU, and CUDA with the `cuda` feature),
    /// portable candle ops on other devices.
    #[default]
    Auto,
    /// Portable candle ops (`index_select`, broadcast multiply, sum) on every device.
    Portable,
    /// As `Auto`, with products that need no gradient of a one-factor generator by the
    /// structured gather ([`GatherPattern::apply_structured`]) on the CPU too (`Auto` takes it on
    /// GPUs only, where the products are memory-bound and it reads a quarter of the data; on the
    /// CPU the stored weights are faster).
    Structured,
}

/// The generator `L = t * sum_k A^k_1 ... A^k_R D_k` over a multi-index set `N`.
#[derive(Clone, Debug)]
pub struct ToeplitzGenerator {
    structure: Arc<ToeplitzStructure>,
    /// `coeffs[k][r]` has shape `(|M_r|,)`.
    coeffs: Vec<Vec<ComplexTensor>>,
    time: Tensor,
    /// Gather weights of each product chain, applied right to left: for `R = 1` a single chain
    /// with `W[n, m] = t sum_k i (n - m)_k a^k_m` (all coordinates merged into one gather); for
    /// `R > 1` one chain per coordinate `k`, the first-applied factor carrying `t` and `D_k`
    /// (`(|N|, |M_R|)`), the others the plain coefficients (`(1, |M_r|)`).
    chains: Vec<Vec<GatherWeights>>,
    kernel: GatherKernel,
    /// For `R = 1`: the coefficients `i t a^k` as `(d, |M|, 2)`, detached, made on the first
    /// structured product.
    structured: OnceLock<Tensor>,
    /// Upper bounds of `||L||_1` and `||L||_inf` (exact for `R = 1`), read once at construction.
    norms: (f64, f64),
}

impl ToeplitzGenerator {
    /// Builds the generator. `offsets[r]` is the offset set `M_{r+1}` of factor `r`; `coeffs[k][r]`
    /// holds the complex coefficients `a^{k,r}_m` for `m` in `offsets[r]` (shape `(|M_r|,)`), for
    /// each of the `d` coordinates `k`; `time` is a real scalar tensor.
    pub fn new(
        index_set: Arc<IndexSet>,
        offsets: Vec<Arc<IndexSet>>,
        coeffs: Vec<Vec<ComplexTensor>>,
        time: Tensor,
    ) -> Result<Self> {
        if !time.dtype().is_float() {
            return Err(CoreError::InvalidArgument(format!(
                "time must be a float tensor, got {:?}",
                time.dtype()
            )));
        }
        let structure = ToeplitzStructure::new(index_set, offsets, time.dtype(), time.device())?;
        Self::from_structure(structure, coeffs, time)
    }

    /// Builds the generator on a prepared [`ToeplitzStructure`] (no table is rebuilt). The
    /// coefficients and the time must have the structure's dtype and device; they are checked for
    /// NaN/Inf together with the norm bounds, in one read from the device.
    pub fn from_structure(
        structure: Arc<ToeplitzStructure>,
        coeffs: Vec<Vec<ComplexTensor>>,
        time: Tensor,
    ) -> Result<Self> {
        let d = structure.index_set.dim();
        if coeffs.len() != d {
            return Err(CoreError::ShapeMismatch(format!(
                "{} coefficient groups given for an index set of dimension {d}",
                coeffs.len()
            )));
        }
        if time.elem_count() != 1 {
            return Err(CoreError::ShapeMismatch(format!(
                "time must be a scalar tensor, got shape {:?}",
                time.dims()
            )));
        }
        let time = time.reshape(())?;
        let (dtype, device) = (structure.dtype, structure.device.clone());
        if time.dtype() != dtype || !time.device().same_device(&device) {
            return Err(CoreError::InvalidArgument(format!(
                "time is {:?} on {:?}, the generator's structure {dtype:?} on {device:?}",
                time.dtype(),
                time.device()
            )));
        }
        for (k, group) in coeffs.iter().enumerate() {
            if group.len() != structure.factors.len() {
                return Err(CoreError::ShapeMismatch(format!(
                    "coordinate {k} has {} coefficient vectors for {} factors",
                    group.len(),
                    structure.factors.len()
                )));
            }
            for (r, a) in group.iter().enumerate() {
                let m = structure.factors[r].offsets.len();
                if a.dims() != [m] {
                    return Err(CoreError::ShapeMismatch(format!(
                        "coefficients ({k}, {r}) have shape {:?}, expected ({m},)",
                        a.dims()
                    )));
                }
                if a.dtype() != dtype || !a.device().same_device(&device) {
                    return Err(CoreError::InvalidArgument(format!(
                        "coefficients ({k}, {r}) are {:?} on {:?}, the generator computes in \
                         {dtype:?} on {device:?}",
                        a.dtype(),
                        a.device()
                    )));
                }
            }
        }
        let chains = build_chains(&structure, &coeffs, &time)?;
        let mut op = Self {
            structure,
            coeffs,
            time,
            chains,
            kernel: GatherKernel::Auto,
            structured: OnceLock::new(),
            norms: (0.0, 0.0),
        };
        op.norms = op.norm_bounds()?;
        Ok(op)
    }

    /// A generator with i.i.d. complex Gaussian coefficients of standard deviation `scale` (per
    /// real and imaginary part), seeded; `offsets` gives one offset set per factor.
    pub fn random(
        index_set: Arc<IndexSet>,
        offsets: Vec<Arc<IndexSet>>,
        scale: f64,
        time: f64,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let factors = offsets.len() as u64;
        let coeffs = (0..index_set.dim() as u64)
            .map(|k| {
                offsets
                    .iter()
                    .enumerate()
                    .map(|(r, m)| {
                        let stream = seed
                            .wrapping_mul(1_000_003)
                            .wrapping_add(k * factors + r as u64);
                        ComplexTensor::randn(m.len(), scale, stream, dtype, device)
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let time = Tensor::new(time, device)?.to_dtype(dtype)?;
        Self::new(index_set, offsets, coeffs, time)
    }

    /// The representation index set `N`.
    pub fn index_set(&self) -> &Arc<IndexSet> {
        &self.structure.index_set
    }

    /// The shared tables this generator is built on.
    pub fn structure(&self) -> &Arc<ToeplitzStructure> {
        &self.structure
    }

    /// The offset set of each factor.
    pub fn offsets(&self) -> Vec<Arc<IndexSet>> {
        self.structure
            .factors
            .iter()
            .map(|f| f.offsets.clone())
            .collect()
    }

    /// The coefficients, indexed `[k][r]`.
    pub fn coeffs(&self) -> &[Vec<ComplexTensor>] {
        &self.coeffs
    }

    /// The time `t` (scalar tensor).
    pub fn time(&self) -> &Tensor {
        &self.time
    }

    /// Number of Toeplitz factors `R`.
    pub fn num_factors(&self) -> usize {
        self.structure.factors.len()
    }

    /// Upper bounds of `||L||_1` and `||L||_inf` (both exact for `R = 1`).
    pub fn norm_bounds_1_inf(&self) -> (f64, f64) {
        self.norms
    }

    /// Selects how factors are applied (the gather kernels by default).
    pub fn with_kernel(mut self, kernel: GatherKernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// Whether the gather kernels (rather than portable candle ops) apply this generator.
    fn uses_kernels(&self) -> bool {
        self.kernel != GatherKernel::Portable && GatherPattern::supports(self.device())
    }

    /// The packed weights of the one merged gather (`R = 1`, applied by the kernels) when they
    /// track no gradient: the operator the no-gradient fast paths (the structured gather, the
    /// fused Arnoldi process) may take over.
    fn untracked_merged_weights(&self) -> Option<&Tensor> {
        let weights = &self.chains.first()?.first()?.packed;
        (self.supports_fused_taylor() && !weights.track_op()).then_some(weights)
    }

    /// Whether products use the structured gather: one merged gather whose weights track no
    /// gradient, on a GPU (or anywhere with [`GatherKernel::Structured`]).
    fn uses_structured(&self) -> bool {
        let here = self.kernel == GatherKernel::Structured || !self.device().is_cpu();
        here && self.untracked_merged_weights().is_some()
    }

    /// `L y` for rows `(b, |N|)` by the structured gather (see [`Self::uses_structured`]).
    fn apply_structured_rows(&self, rows: &ComplexTensor) -> Result<ComplexTensor> {
        let a = match self.structured.get() {
            Some(a) => a,
            None => {
                let rows = self
                    .coeffs
                    .iter()
                    .map(|group| {
                        let a = group[0]
                            .detach()
                            .mul_i()?
                            .broadcast_mul_real(&self.time.detach())?;
                        Ok(Tensor::stack(&[a.re(), a.im()], 1)?)
                    })
                    .collect::<Result<Vec<_>>>()?;
                let made = Tensor::stack(&rows, 0)?;
                self.structured.get_or_init(|| made)
            }
        };
        let pattern = &self.structure.factors[0].pattern;
        unpack(&pattern.apply_structured(&pack(rows)?, a, &self.structure.frequency_rows)?)
    }

    /// `||L||_1` and `||L||_inf` bounds, computed on the device and read back once; NaN/Inf in
    /// the coefficients or the time make them non-finite, which is reported.
    fn norm_bounds(&self) -> Result<(f64, f64)> {
        let s = &self.structure;
        let (one, inf, total) = match (&s.column_index, self.chains.as_slice()) {
            (Some(column_index), [chain]) if chain.len() == 1 => {
                // R = 1: the rows of W are the rows of L, so the exact norms are the largest
                // row and column sums of |W| (W is 0 where n - m lies outside N).
                let modulus = chain[0].complex.detach().abs2()?.sqrt()?;
                let inf = modulus.sum(1)?.max(0)?;
                let zero = Tensor::zeros(1, s.dtype, &s.device)?;
                let flat = Tensor::cat(&[&modulus.flatten_all()?, &zero], 0)?;
                let (n, k) = (modulus.dims()[0], modulus.dims()[1]);
                let one = flat
                    .index_select(column_index, 0)?
                    .reshape((n, k))?
                    .sum(1)?
                    .max(0)?;
                // max skips NaN on some backends; the plain sum propagates it.
                (one, inf, modulus.sum_all()?)
            }
            _ => {
                // Each Toeplitz factor's 1- and inf-norms are bounded by the sum of its
                // coefficients' moduli, D_k's by max |n_k|.
                let mut total = Tensor::zeros((), s.dtype, &s.device)?;
                for (k, group) in self.coeffs.iter().enumerate() {
                    let mut prod =
                        Tensor::new(s.index_set.max_abs_coordinate(k) as f64, &s.device)?
                            .to_dtype(s.dtype)?;
                    for a in group {
                        prod = (prod * a.detach().abs2()?.sqrt()?.sum_all()?)?;
                    }
                    total = (total + prod)?;
                }
                let total = (total * self.time.detach().abs()?)?;
                (total.clone(), total.clone(), total)
            }
        };
        let read = Tensor::stack(&[&one, &inf, &total], 0)?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        // A NaN or infinite coefficient or time reaches both bounds (0 * NaN and 0 * Inf are NaN,
        // so even coefficients whose offsets never land in N do); finite coefficients whose
        // moduli overflow the dtype give an infinite bound.
        if !read.iter().all(|x| x.is_finite()) {
            return Err(CoreError::NonFinite(format!(
                "Toeplitz generator coefficients or time (NaN/Inf, or moduli that overflow {:?})",
                s.dtype
            )));
        }
        Ok((read[0], read[1]))
    }

    /// `out[j, n] = sum_m w[n, m] y[j, T[n, m]]` for rows `y` of shape `(b, |N|)`, with `T` the
    /// forward (or, with `adjoint`, the adjoint) table of factor `r`; `T` entries equal to `|N|`
    /// read zero, and `weights` is `(|N|, |M_r|)` or `(1, |M_r|)`.
    fn gather_weighted(
        &self,
        rows: &ComplexTensor,
        r: usize,
        adjoint: bool,
        weights: &GatherWeights,
    ) -> Result<ComplexTensor> {
        let factor = &self.structure.factors[r];
        if self.uses_kernels() {
            let pattern = if adjoint {
                factor.pattern.transposed()
            } else {
                factor.pattern.clone()
            };
            let out = pattern.apply(&pack(rows)?, &weights.packed)?;
            return unpack(&out);
        }
        let table = if adjoint {
            &factor.gather_adjoint
        } else {
            &factor.gather
        };
        let (b, n) = (rows.dims()[0], rows.dims()[1]);
        let m = factor.offsets.len();
        let pad = ComplexTensor::zeros((b, 1), rows.dtype(), rows.device())?;
        let padded = ComplexTensor::cat(&[rows, &pad], 1)?.contiguous()?;
        let gathered = padded.index_select(table, 1)?.reshape((b, n, m))?;
        gathered
            .broadcast_mul(&weights.complex.unsqueeze(0)?)?
            .sum(2)
    }

    /// `L y` for rows `y` of shape `(b, |N|)` (each row one vector).
    fn apply_rows(&self, rows: &ComplexTensor) -> Result<ComplexTensor> {
        if self.uses_structured() {
            return self.apply_structured_rows(rows);
        }
        let mut total: Option<ComplexTensor> = None;
        for chain in &self.chains {
            let mut y = rows.clone();
            for (r, w) in chain.iter().enumerate().rev() {
                y = self.gather_weighted(&y, r, false, w)?;
            }
            total = Some(match total {
                None => y,
                Some(t) => t.add(&y)?,
            });
        }
        total.ok_or_else(|| CoreError::Empty("generator without coordinates".into()))
    }

    /// `L^* y` for rows `y` of shape `(b, |N|)`: `t sum_k D_k^* A_R^* ... A_1^*`.
    fn apply_adjoint_rows(&self, rows: &ComplexTensor) -> Result<ComplexTensor> {
        if let ([chain], true) = (self.chains.as_slice(), self.uses_kernels()) {
            if let [w] = chain.as_slice() {
                // R = 1: L^* is one adjoint gather of the merged weights,
                // (L^* y)_l = sum_m conj(W[l + m, m]) y_{l + m}.
                let pattern = &self.structure.factors[0].pattern;
                return unpack(&pattern.apply_adjoint(&pack(rows)?, &w.packed)?);
            }
        }
        let n = self.index_set().len();
        let mut total: Option<ComplexTensor> = None;
        for (k, group) in self.coeffs.iter().enumerate() {
            let mut y = rows.clone();
            for (r, a) in group.iter().enumerate() {
                let weights = GatherWeights::new(a.conj()?.unsqueeze(0)?)?;
                y = self.gather_weighted(&y, r, true, &weights)?;
            }
            let freq_row = self.structure.frequencies[k].reshape((1, n))?;
            let y = y.broadcast_mul_real(&freq_row)?.mul_i()?.neg()?;
            total = Some(match total {
                None => y,
                Some(t) => t.add(&y)?,
            });
        }
        let total =
            total.ok_or_else(|| CoreError::Empty("generator without coordinates".into()))?;
        total.broadcast_mul_real(&self.time)
    }

    fn apply_any(&self, x: &ComplexTensor, adjoint: bool) -> Result<ComplexTensor> {
        check_operand(self, x)?;
        let out = as_columns(x, |rows| {
            if adjoint {
                self.apply_adjoint_rows(rows)
            } else {
                self.apply_rows(rows)
            }
        })?;
        Ok(out)
    }
}

impl LinearOperator for ToeplitzGenerator {
    fn dim(&self) -> usize {
        self.structure.index_set.len()
    }

    fn dtype(&self) -> DType {
        self.time.dtype()
    }

    fn device(&self) -> &Device {
        self.time.device()
    }

    fn apply(&self, x: &ComplexTensor) -> Result<ComplexTensor> {
        self.apply_any(x, false)
    }

    fn apply_adjoint(&self, x: &ComplexTensor) -> Result<ComplexTensor> {
        self.apply_any(x, true)
    }

    /// `max(||L||_1, ||L||_inf)`, an upper bound of the 1-, 2- and infinity-norms: exact row and
    /// column sums of the merged weights for `R = 1`, else `|t| sum_k max_n |n_k| prod_r sum_m
    /// |a^{k,r}_m|` (each Toeplitz factor's norms are bounded by the sum of its coefficients'
    /// moduli). Computed at construction; no device read here.
    fn norm_estimate(&self) -> Result<f64> {
        Ok(self.norms.0.max(self.norms.1))
    }

    /// `sqrt(||L||_1 ||L||_inf) >= ||L||_2`.
    fn norm_bound(&self) -> Result<f64> {
        Ok((self.norms.0 * self.norms.1).sqrt())
    }

    /// Checked at construction (coefficients and time are read once with the norm bounds).
    fn ensure_finite(&self) -> Result<()> {
        Ok(())
    }

    fn supports_fused_taylor(&self) -> bool {
        self.uses_kernels() && self.chains.len() == 1 && self.chains[0].len() == 1
    }

    fn fused_taylor(
        &self,
        v: &ComplexTensor,
        steps: TaylorSteps,
        adjoint: bool,
    ) -> Option<Result<ComplexTensor>> {
        if !self.supports_fused_taylor() {
            return None;
        }
        let run = || -> Result<ComplexTensor> {
            check_operand(self, v)?;
            let pattern = &self.structure.factors[0].pattern;
            as_columns(v, |rows| {
                unpack(&pattern.taylor(&pack(rows)?, &self.chains[0][0].packed, steps, adjoint)?)
            })
        };
        Some(run())
    }

    /// The fused Arnoldi process for one merged gather (`R = 1`, as the fused Taylor action),
    /// when neither the coefficients nor the time track a gradient; on a GPU up to
    /// [`crate::arnoldi::CUDA_MAX_N`].
    fn fused_arnoldi(
        &self,
        v: &Tensor,
        m: usize,
        threshold: f64,
    ) -> Option<Result<crate::arnoldi::ArnoldiBasis>> {
        let weights = self.untracked_merged_weights()?;
        if !self.device().is_cpu() && self.dim() > crate::arnoldi::CUDA_MAX_N {
            return None;
        }
        let pattern = &self.structure.factors[0].pattern;
        Some(pattern.arnoldi(v, weights, m, threshold))
    }

    /// Materialises `L` from the definition: each Toeplitz factor by gathering its padded
    /// coefficients over the `|N| x |N|` difference pattern, products of factors, then `D_k` as a
    /// column scaling. Independent of [`LinearOperator::apply`], so the two check each other.
    /// Refuses (before allocating) sizes whose matrices exceed the dense memory limit.
    fn to_dense(&self) -> Result<ComplexTensor> {
        let s = &self.structure;
        let n = s.index_set.len();
        let (dtype, device) = (self.dtype(), self.device().clone());
        // The difference table (u32) and, per factor product, about three complex matrices.
        check_dense_memory(n, dtype, 4, "the dense Toeplitz generator")?;
        let tables = match s.difference_tables.get() {
            Some(t) => t,
            None => {
                let made = s
                    .factors
                    .iter()
                    .map(|f| {
                        let k = f.offsets.len();
                        let difference = s.index_set.difference_table(&f.offsets)?;
                        let gradient: Vec<u32> = f
                            .pattern
                            .table()
                            .iter()
                            .enumerate()
                            .map(|(idx, &src)| {
                                if (src as usize) < n {
                                    ((idx / k) * n) as u32 + src
                                } else {
                                    (n * n) as u32
                                }
                            })
                            .collect();
                        Ok(DenseTables {
                            difference: Tensor::from_vec(difference, n * n, &device)?,
                            gradient: Tensor::from_vec(gradient, n * k, &device)?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                s.difference_tables.get_or_init(|| made)
            }
        };
        // One factor as an (n, n) matrix from its zero-padded coefficients (|M| + 1,). The gather
        // is taken outside the graph and its gradient given by a gather-sum: candle's backward
        // of index_select (index_add) runs serially per target on CUDA.
        let factor_matrix = |padded: &Tensor, t: &DenseTables, k: usize| -> Result<Tensor> {
            let value = padded
                .detach()
                .index_select(&t.difference, 0)?
                .reshape((n, n))?;
            let gradient = t.gradient.clone();
            with_gradient(value, padded, move |g| {
                let zero = Tensor::zeros(1, g.dtype(), g.device())?;
                let flat = Tensor::cat(&[&g.flatten_all()?, &zero], 0)?;
                let per_entry = flat.index_select(&gradient, 0)?.reshape((n, k))?;
                Tensor::cat(&[&per_entry.sum(0)?, &zero], 0)
            })
        };
        let mut total: Option<ComplexTensor> = None;
        for (k, group) in self.coeffs.iter().enumerate() {
            let mut product: Option<ComplexTensor> = None;
            for (r, a) in group.iter().enumerate() {
                let zero = ComplexTensor::zeros(1, dtype, &device)?;
                let padded = ComplexTensor::cat(&[a, &zero], 0)?;
                let k = s.factors[r].offsets.len();
                let dense = ComplexTensor::new(
                    factor_matrix(padded.re(), &tables[r], k)?,
                    factor_matrix(padded.im(), &tables[r], k)?,
                )?;
                product = Some(match product {
                    None => dense,
                    Some(p) => p.matmul(&dense)?,
                });
            }
            let product = product.ok_or_else(|| CoreError::Empty("no factors".into()))?;
            let column_scale = s.frequencies[k].reshape((1, n))?;
            let term = product.broadcast_mul_real(&column_scale)?.mul_i()?;
            total = Some(match total {
                None => term,
                Some(t) => t.add(&term)?,
            });
        }
        let total =
            total.ok_or_else(|| CoreError::Empty("generator without coordinates".into()))?;
        total.broadcast_mul_real(&self.time)
    }
}
