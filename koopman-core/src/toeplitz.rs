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
        let op = Self {
            index_set,
            factors,
            coeffs,
            time,
            frequencies,
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

    /// `A^k_r y` (or its adjoint) for a block `y` of shape `(|N|, b)`.
    fn apply_factor(
        &self,
        r: usize,
        a: &ComplexTensor,
        y: &ComplexTensor,
        adjoint: bool,
    ) -> Result<ComplexTensor> {
        let factor = &self.factors[r];
        let (n, b) = (self.index_set.len(), y.dims()[1]);
        let m = factor.offsets.len();
        let pad = ComplexTensor::zeros((1, b), y.dtype(), y.device())?;
        let padded = ComplexTensor::cat(&[y, &pad], 0)?;
        let table = if adjoint {
            &factor.gather_adjoint
        } else {
            &factor.gather
        };
        let gathered = padded.index_select(table, 0)?.reshape((n, m, b))?;
        let weights = if adjoint { a.conj()? } else { a.clone() };
        gathered.broadcast_mul(&weights.reshape((1, m, 1))?)?.sum(1)
    }

    fn apply_block(&self, x: &ComplexTensor, adjoint: bool) -> Result<ComplexTensor> {
        let mut total: Option<ComplexTensor> = None;
        for (k, group) in self.coeffs.iter().enumerate() {
            let diag = |y: &ComplexTensor| -> Result<ComplexTensor> {
                let scaled = y.broadcast_mul_real(&self.frequencies[k])?.mul_i()?;
                if adjoint {
                    scaled.neg()
                } else {
                    Ok(scaled)
                }
            };
            let term = if adjoint {
                // (A_1 ... A_R D_k)^* = D_k^* A_R^* ... A_1^*
                let mut y = x.clone();
                for (r, a) in group.iter().enumerate() {
                    y = self.apply_factor(r, a, &y, true)?;
                }
                diag(&y)?
            } else {
                let mut y = diag(x)?;
                for (r, a) in group.iter().enumerate().rev() {
                    y = self.apply_factor(r, a, &y, false)?;
                }
                y
            };
            total = Some(match total {
                None => term,
                Some(t) => t.add(&term)?,
            });
        }
        let total =
            total.ok_or_else(|| CoreError::Empty("generator without coordinates".into()))?;
        total.broadcast_mul_real(&self.time)
    }

    fn apply_any(&self, x: &ComplexTensor, adjoint: bool) -> Result<ComplexTensor> {
        check_operand(self, x)?;
        if x.dims().len() == 1 {
            self.apply_block(&x.unsqueeze(1)?, adjoint)?.squeeze(1)
        } else {
            self.apply_block(x, adjoint)
        }
    }
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
