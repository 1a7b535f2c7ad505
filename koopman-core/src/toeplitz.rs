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
//! use std::sync::Arc;
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

use crate::complex::ComplexTensor;
use crate::error::{CoreError, Result};
use crate::gather::GatherPattern;
use crate::index_set::IndexSet;
use crate::operator::{check_operand, LinearOperator};
use candle_core::{DType, Device, Tensor};
use std::sync::Arc;

/// One Toeplitz factor position `r`: its offsets and the gather tables over `N`.
#[derive(Clone, Debug)]
struct FactorPattern {
    offsets: Arc<IndexSet>,
    /// `position(n - m)` for every `(n, m)`, `|N|` when outside `N`.
    gather: Tensor,
    /// `position(n + m)` for every `(n, m)`, `|N|` when outside `N` (the adjoint).
    gather_adjoint: Tensor,
    /// The same tables for the CPU kernel.
    pattern: GatherPattern,
}

/// How Toeplitz factors are applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GatherKernel {
    /// The one-pass CPU kernel of [`crate::gather`] on CPU tensors, portable candle ops elsewhere.
    #[default]
    Auto,
    /// Portable candle ops (`index_select`, broadcast multiply, sum) on every device.
    Portable,
}

/// Complex gather weights, kept both as a [`ComplexTensor`] and packed `(.., .., 2)` for the CPU
/// kernel (both views are in the autograd graph of the coefficients).
#[derive(Clone, Debug)]
struct GatherWeights {
    complex: ComplexTensor,
    packed: Tensor,
}

impl GatherWeights {
    fn new(complex: ComplexTensor) -> Result<Self> {
        let packed = Tensor::stack(&[complex.re(), complex.im()], 2)?;
        Ok(Self { complex, packed })
    }
}

/// The generator `L = t * sum_k A^k_1 ... A^k_R D_k` over a multi-index set `N`.
#[derive(Clone, Debug)]
pub struct ToeplitzGenerator {
    index_set: Arc<IndexSet>,
    factors: Vec<FactorPattern>,
    /// `coeffs[k][r]` has shape `(|M_r|,)`.
    coeffs: Vec<Vec<ComplexTensor>>,
    time: Tensor,
    /// `frequencies[k]` holds `n_k` for every `n` in `N`, shape `(|N|, 1)`.
    frequencies: Vec<Tensor>,
    /// Gather weights of each product chain, applied right to left: for `R = 1` a single chain
    /// with `W[n, m] = t sum_k i (n - m)_k a^k_m` (all coordinates merged into one gather); for
    /// `R > 1` one chain per coordinate `k`, the first-applied factor carrying `t` and `D_k`
    /// (`(|N|, |M_R|)`), the others the plain coefficients (`(1, |M_r|)`).
    chains: Vec<Vec<GatherWeights>>,
    kernel: GatherKernel,
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
        let d = index_set.dim();
        if offsets.is_empty() {
            return Err(CoreError::InvalidArgument(
                "a Toeplitz generator needs at least one factor (R >= 1)".into(),
            ));
        }
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
        let dtype = time.dtype();
        let device = time.device().clone();
        if !dtype.is_float() {
            return Err(CoreError::InvalidArgument(format!(
                "time must be a float tensor, got {dtype:?}"
            )));
        }
        for (r, m) in offsets.iter().enumerate() {
            index_set.check_same_dim(m, &format!("offset set of factor {r}"))?;
        }
        for (k, group) in coeffs.iter().enumerate() {
            if group.len() != offsets.len() {
                return Err(CoreError::ShapeMismatch(format!(
                    "coordinate {k} has {} coefficient vectors for {} factors",
                    group.len(),
                    offsets.len()
                )));
            }
            for (r, a) in group.iter().enumerate() {
                if a.dims() != [offsets[r].len()] {
                    return Err(CoreError::ShapeMismatch(format!(
                        "coefficients ({k}, {r}) have shape {:?}, expected ({},)",
                        a.dims(),
                        offsets[r].len()
                    )));
                }
                if a.dtype() != dtype || !a.device().same_device(&device) {
                    return Err(CoreError::InvalidArgument(format!(
                        "coefficients ({k}, {r}) differ from the time tensor in dtype or device"
                    )));
                }
            }
        }
        let n = index_set.len();
        let factors = offsets
            .into_iter()
            .map(|m| {
                let gather = index_set.shift_table(&m, 1)?;
                let gather_adjoint = index_set.shift_table(&m, -1)?;
                Ok(FactorPattern {
                    pattern: GatherPattern::new(
                        gather.clone(),
                        gather_adjoint.clone(),
                        n,
                        m.len(),
                    )?,
                    gather: Tensor::from_vec(gather, n * m.len(), &device)?,
                    gather_adjoint: Tensor::from_vec(gather_adjoint, n * m.len(), &device)?,
                    offsets: m,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let frequencies = (0..d)
            .map(|k| {
                let f: Vec<f64> = index_set.iter().map(|p| p[k] as f64).collect();
                Ok(Tensor::from_vec(f, (n, 1), &device)?.to_dtype(dtype)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let chains = build_chains(&index_set, &factors, &coeffs, &time, &frequencies)?;
        let op = Self {
            index_set,
            factors,
            coeffs,
            time,
            frequencies,
            chains,
            kernel: GatherKernel::Auto,
        };
        op.ensure_finite()?;
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
        &self.index_set
    }

    /// The offset set of each factor.
    pub fn offsets(&self) -> Vec<Arc<IndexSet>> {
        self.factors.iter().map(|f| f.offsets.clone()).collect()
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
        self.factors.len()
    }

    /// Selects how factors are applied (the CPU kernel by default).
    pub fn with_kernel(mut self, kernel: GatherKernel) -> Self {
        self.kernel = kernel;
        self
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
        let factor = &self.factors[r];
        if self.kernel == GatherKernel::Auto && rows.device().is_cpu() {
            let pattern = if adjoint {
                factor.pattern.transposed()
            } else {
                factor.pattern.clone()
            };
            let packed = Tensor::stack(&[rows.re(), rows.im()], 2)?;
            let out = pattern.apply(&packed, &weights.packed)?;
            return ComplexTensor::new(
                out.narrow(2, 0, 1)?.squeeze(2)?,
                out.narrow(2, 1, 1)?.squeeze(2)?,
            );
        }
        let table = if adjoint {
            &factor.gather_adjoint
        } else {
            &factor.gather
        };
        let (b, n) = (rows.dims()[0], rows.dims()[1]);
        let m = factor.offsets.len();
        let pad = ComplexTensor::zeros((b, 1), rows.dtype(), rows.device())?;
        let padded = ComplexTensor::cat(&[rows, &pad], 1)?;
        let gathered = padded.index_select(table, 1)?.reshape((b, n, m))?;
        gathered
            .broadcast_mul(&weights.complex.unsqueeze(0)?)?
            .sum(2)
    }

    /// `L y` for rows `y` of shape `(b, |N|)` (each row one vector).
    fn apply_rows(&self, rows: &ComplexTensor) -> Result<ComplexTensor> {
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
        let mut total: Option<ComplexTensor> = None;
        for (k, group) in self.coeffs.iter().enumerate() {
            let mut y = rows.clone();
            for (r, a) in group.iter().enumerate() {
                let weights = GatherWeights::new(a.conj()?.unsqueeze(0)?)?;
                y = self.gather_weighted(&y, r, true, &weights)?;
            }
            let freq_row = self.frequencies[k].reshape((1, self.index_set.len()))?;
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
        let n = self.index_set.len();
        let rows = if x.dims().len() == 1 {
            x.reshape((1, n))?
        } else {
            x.t()?.contiguous()?
        };
        let out = if adjoint {
            self.apply_adjoint_rows(&rows)?
        } else {
            self.apply_rows(&rows)?
        };
        if x.dims().len() == 1 {
            out.reshape(n)
        } else {
            out.t()?.contiguous()
        }
    }
}

/// The gather weights of [`ToeplitzGenerator::chains`] (differentiable in coefficients and time).
fn build_chains(
    index_set: &IndexSet,
    factors: &[FactorPattern],
    coeffs: &[Vec<ComplexTensor>],
    time: &Tensor,
    frequencies: &[Tensor],
) -> Result<Vec<Vec<GatherWeights>>> {
    let n = index_set.len();
    let last = factors.len() - 1;
    let m_last = factors[last].offsets.len();
    // (l - 0)_k for the gathered index l = n - m: frequencies padded with 0 for "outside".
    let gathered_freq = |k: usize| -> Result<Tensor> {
        let zero = Tensor::zeros((1, 1), time.dtype(), time.device())?;
        let padded = Tensor::cat(&[&frequencies[k], &zero], 0)?.squeeze(1)?;
        Ok(padded
            .index_select(&factors[last].gather, 0)?
            .reshape((n, m_last))?)
    };
    // t i (n - m)_k a^{k,R}_m for every (n, m).
    let first_applied = |k: usize| -> Result<ComplexTensor> {
        coeffs[k][last]
            .unsqueeze(0)?
            .broadcast_mul_real(&gathered_freq(k)?)?
            .mul_i()?
            .broadcast_mul_real(time)
    };
    if factors.len() == 1 {
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

impl LinearOperator for ToeplitzGenerator {
    fn dim(&self) -> usize {
        self.index_set.len()
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

    /// `|t| sum_k max_n |n_k| prod_r sum_m |a^{k,r}_m|`, an upper bound of the 1-, 2- and
    /// infinity-norms (each Toeplitz factor's norms are bounded by the sum of its coefficients'
    /// moduli).
    fn norm_estimate(&self) -> Result<f64> {
        let t = self.time.to_dtype(DType::F64)?.to_scalar::<f64>()?.abs();
        let mut total = 0.0;
        for (k, group) in self.coeffs.iter().enumerate() {
            let mut prod = self.index_set.max_abs_coordinate(k) as f64;
            for a in group {
                let l1 = a
                    .abs2()?
                    .sqrt()?
                    .sum_all()?
                    .to_dtype(DType::F64)?
                    .to_scalar::<f64>()?;
                prod *= l1;
            }
            total += prod;
        }
        Ok(t * total)
    }

    fn ensure_finite(&self) -> Result<()> {
        crate::complex::ensure_finite(&self.time, "Toeplitz generator time")?;
        for (k, group) in self.coeffs.iter().enumerate() {
            for (r, a) in group.iter().enumerate() {
                a.ensure_finite(&format!("Toeplitz coefficients ({k}, {r})"))?;
            }
        }
        Ok(())
    }

    /// Materialises `L` from the definition: each Toeplitz factor by gathering its padded
    /// coefficients over the `|N| x |N|` difference pattern, products of factors, then `D_k` as a
    /// column scaling. Independent of [`LinearOperator::apply`], so the two check each other.
    fn to_dense(&self) -> Result<ComplexTensor> {
        let n = self.index_set.len();
        let (dtype, device) = (self.dtype(), self.device().clone());
        let patterns = self
            .factors
            .iter()
            .map(|f| {
                let t = self.index_set.difference_table(&f.offsets)?;
                Ok(Tensor::from_vec(t, n * n, &device)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut total: Option<ComplexTensor> = None;
        for (k, group) in self.coeffs.iter().enumerate() {
            let mut product: Option<ComplexTensor> = None;
            for (r, a) in group.iter().enumerate() {
                let zero = ComplexTensor::zeros(1, dtype, &device)?;
                let padded = ComplexTensor::cat(&[a, &zero], 0)?;
                let dense = padded.index_select(&patterns[r], 0)?.reshape((n, n))?;
                product = Some(match product {
                    None => dense,
                    Some(p) => p.matmul(&dense)?,
                });
            }
            let product = product.ok_or_else(|| CoreError::Empty("no factors".into()))?;
            let column_scale = self.frequencies[k].reshape((1, n))?;
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
