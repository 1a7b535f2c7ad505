//! Complex tensors on candle.
//!
//! candle 0.11 has no complex dtype, so a [`ComplexTensor`] carries a pair of real tensors of the
//! same shape, dtype and device: the real part `re` and the imaginary part `im`. Every operation is
//! written in candle ops, so gradients flow through the real and imaginary parts alike.
//!
//! ```
//! use candle_core::{DType, Device};
//! use koopman_core::complex::{c64, ComplexTensor};
//!
//! # fn main() -> koopman_core::Result<()> {
//! let dev = Device::Cpu;
//! let a = ComplexTensor::from_c64(&[c64::new(1.0, 2.0), c64::new(0.0, -1.0)], 2, DType::F64, &dev)?;
//! let b = a.mul(&a.conj()?)?; // |a|^2 as a complex tensor
//! let v = b.to_c64_vec()?;
//! assert!((v[0].re - 5.0).abs() < 1e-15 && v[0].im.abs() < 1e-15);
//! # Ok(()) }
//! ```

use crate::error::{CoreError, Result};
use candle_core::{DType, Device, Shape, Tensor, D};

/// Double-precision complex scalar; the same type as `faer::c64`.
pub use num_complex::Complex64 as c64;

/// A complex tensor stored as two real candle tensors of equal shape, dtype and device.
#[derive(Clone, Debug)]
pub struct ComplexTensor {
    re: Tensor,
    im: Tensor,
}

impl ComplexTensor {
    /// Builds a complex tensor from its real and imaginary parts; they must agree in shape, dtype
    /// and device, and the dtype must be a float type.
    pub fn new(re: Tensor, im: Tensor) -> Result<Self> {
        if re.shape() != im.shape() {
            return Err(CoreError::ShapeMismatch(format!(
                "real part {:?} and imaginary part {:?} differ in shape",
                re.dims(),
                im.dims()
            )));
        }
        if re.dtype() != im.dtype() {
            return Err(CoreError::InvalidArgument(format!(
                "real part is {:?} but imaginary part is {:?}",
                re.dtype(),
                im.dtype()
            )));
        }
        if !re.dtype().is_float() {
            return Err(CoreError::InvalidArgument(format!(
                "complex tensors need a float dtype, got {:?}",
                re.dtype()
            )));
        }
        if !re.device().same_device(im.device()) {
            return Err(CoreError::InvalidArgument(
                "real and imaginary parts live on different devices".into(),
            ));
        }
        Ok(Self { re, im })
    }

    /// A complex tensor with zero imaginary part.
    pub fn from_real(re: Tensor) -> Result<Self> {
        let im = re.zeros_like()?;
        Self::new(re, im)
    }

    /// All zeros.
    pub fn zeros(shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Self> {
        let shape = shape.into();
        let re = Tensor::zeros(shape.clone(), dtype, device)?;
        let im = Tensor::zeros(shape, dtype, device)?;
        Self::new(re, im)
    }

    /// The `n x n` identity matrix.
    pub fn eye(n: usize, dtype: DType, device: &Device) -> Result<Self> {
        Self::from_real(Tensor::eye(n, dtype, device)?)
    }

    /// Builds a tensor of the given shape from row-major complex values.
    pub fn from_c64(
        data: &[c64],
        shape: impl Into<Shape>,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let shape = shape.into();
        if shape.elem_count() != data.len() {
            return Err(CoreError::ShapeMismatch(format!(
                "{} values given for shape {:?}",
                data.len(),
                shape.dims()
            )));
        }
        let re: Vec<f64> = data.iter().map(|z| z.re).collect();
        let im: Vec<f64> = data.iter().map(|z| z.im).collect();
        let re = Tensor::from_vec(re, shape.clone(), device)?.to_dtype(dtype)?;
        let im = Tensor::from_vec(im, shape, device)?.to_dtype(dtype)?;
        Self::new(re, im)
    }

    /// I.i.d. complex Gaussian entries (real and imaginary parts each `N(0, std^2)`), drawn on the
    /// host from a seeded RNG so that results are reproducible on every device.
    pub fn randn(
        shape: impl Into<Shape>,
        std: f64,
        seed: u64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        use rand::SeedableRng;
        use rand_distr::{Distribution, StandardNormal};
        let shape = shape.into();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let values: Vec<c64> = (0..shape.elem_count())
            .map(|_| {
                let re: f64 = StandardNormal.sample(&mut rng);
                let im: f64 = StandardNormal.sample(&mut rng);
                c64::new(std * re, std * im)
            })
            .collect();
        Self::from_c64(&values, shape, dtype, device)
    }

    /// All values, flattened in row-major order, as `c64`.
    pub fn to_c64_vec(&self) -> Result<Vec<c64>> {
        let re = self
            .re
            .flatten_all()?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        let im = self
            .im
            .flatten_all()?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?;
        Ok(re
            .into_iter()
            .zip(im)
            .map(|(r, i)| c64::new(r, i))
            .collect())
    }

    /// The single value of a tensor with one element.
    pub fn to_c64_scalar(&self) -> Result<c64> {
        let v = self.to_c64_vec()?;
        if v.len() != 1 {
            return Err(CoreError::ShapeMismatch(format!(
                "expected one element, tensor has shape {:?}",
                self.dims()
            )));
        }
        Ok(v[0])
    }

    /// The real part.
    pub fn re(&self) -> &Tensor {
        &self.re
    }

    /// The imaginary part.
    pub fn im(&self) -> &Tensor {
        &self.im
    }

    /// Splits into `(re, im)`.
    pub fn into_parts(self) -> (Tensor, Tensor) {
        (self.re, self.im)
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        self.re.dims()
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        self.re.shape()
    }

    /// Size along dimension `d`.
    pub fn dim(&self, d: usize) -> Result<usize> {
        Ok(self.re.dim(d)?)
    }

    /// Number of complex elements.
    pub fn elem_count(&self) -> usize {
        self.re.elem_count()
    }

    /// The dtype of both parts.
    pub fn dtype(&self) -> DType {
        self.re.dtype()
    }

    /// The device of both parts.
    pub fn device(&self) -> &Device {
        self.re.device()
    }

    fn map2(
        &self,
        other: &Self,
        f: impl Fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>,
    ) -> Result<Self> {
        Ok(Self {
            re: f(&self.re, &other.re)?,
            im: f(&self.im, &other.im)?,
        })
    }

    fn map(&self, f: impl Fn(&Tensor) -> candle_core::Result<Tensor>) -> Result<Self> {
        Ok(Self {
            re: f(&self.re)?,
            im: f(&self.im)?,
        })
    }

    /// Elementwise sum (shapes must match).
    pub fn add(&self, other: &Self) -> Result<Self> {
        self.map2(other, |a, b| a.add(b))
    }

    /// Elementwise difference (shapes must match).
    pub fn sub(&self, other: &Self) -> Result<Self> {
        self.map2(other, |a, b| a.sub(b))
    }

    /// Elementwise sum with broadcasting.
    pub fn broadcast_add(&self, other: &Self) -> Result<Self> {
        self.map2(other, |a, b| a.broadcast_add(b))
    }

    /// Elementwise difference with broadcasting.
    pub fn broadcast_sub(&self, other: &Self) -> Result<Self> {
        self.map2(other, |a, b| a.broadcast_sub(b))
    }

    /// Elementwise complex product (shapes must match).
    pub fn mul(&self, other: &Self) -> Result<Self> {
        let re = ((&self.re * &other.re)? - (&self.im * &other.im)?)?;
        let im = ((&self.re * &other.im)? + (&self.im * &other.re)?)?;
        Ok(Self { re, im })
    }

    /// Elementwise complex product with broadcasting.
    pub fn broadcast_mul(&self, other: &Self) -> Result<Self> {
        let re = self
            .re
            .broadcast_mul(&other.re)?
            .sub(&self.im.broadcast_mul(&other.im)?)?;
        let im = self
            .re
            .broadcast_mul(&other.im)?
            .add(&self.im.broadcast_mul(&other.re)?)?;
        Ok(Self { re, im })
    }

    /// Multiplies by a real tensor, with broadcasting.
    pub fn broadcast_mul_real(&self, factor: &Tensor) -> Result<Self> {
        self.map(|a| a.broadcast_mul(factor))
    }

    /// Divides by a real tensor, with broadcasting.
    pub fn broadcast_div_real(&self, divisor: &Tensor) -> Result<Self> {
        self.map(|a| a.broadcast_div(divisor))
    }

    /// Multiplies by a real scalar.
    pub fn scale_real(&self, s: f64) -> Result<Self> {
        self.map(|a| a.affine(s, 0.0))
    }

    /// Multiplies by a complex scalar.
    pub fn scale(&self, s: c64) -> Result<Self> {
        let re = (self.re.affine(s.re, 0.0)? - self.im.affine(s.im, 0.0)?)?;
        let im = (self.re.affine(s.im, 0.0)? + self.im.affine(s.re, 0.0)?)?;
        Ok(Self { re, im })
    }

    /// Multiplies by the imaginary unit: `i (a + ib) = -b + ia`.
    pub fn mul_i(&self) -> Result<Self> {
        Ok(Self {
            re: self.im.neg()?,
            im: self.re.clone(),
        })
    }

    /// Complex conjugate.
    pub fn conj(&self) -> Result<Self> {
        Ok(Self {
            re: self.re.clone(),
            im: self.im.neg()?,
        })
    }

    /// Negation.
    pub fn neg(&self) -> Result<Self> {
        self.map(|a| a.neg())
    }

    /// Matrix product (batched over leading dimensions like candle's `matmul`), for operands of
    /// any layout (see [`matmul`]).
    pub fn matmul(&self, other: &Self) -> Result<Self> {
        let (a_re, a_im) = (gemm_ready(&self.re)?, gemm_ready(&self.im)?);
        let (b_re, b_im) = (gemm_ready(&other.re)?, gemm_ready(&other.im)?);
        let re = (a_re.matmul(&b_re)? - a_im.matmul(&b_im)?)?;
        let im = (a_re.matmul(&b_im)? + a_im.matmul(&b_re)?)?;
        Ok(Self { re, im })
    }

    /// Product with a real matrix on the right.
    pub fn matmul_real(&self, other: &Tensor) -> Result<Self> {
        let other = gemm_ready(other)?;
        self.map(|a| gemm_ready(a)?.matmul(&other))
    }

    /// Transpose of the last two dimensions (no conjugation).
    pub fn t(&self) -> Result<Self> {
        self.map(|a| a.t())
    }

    /// Conjugate transpose of the last two dimensions.
    pub fn adjoint(&self) -> Result<Self> {
        self.t()?.conj()
    }

    /// Makes both parts contiguous in memory.
    pub fn contiguous(&self) -> Result<Self> {
        self.map(|a| a.contiguous())
    }

    /// Reshapes both parts.
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        self.map(|a| a.reshape(shape.clone()))
    }

    /// A slice `start..start + len` along dimension `dim`.
    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Self> {
        self.map(|a| a.narrow(dim, start, len))
    }

    /// Inserts a dimension of size one.
    pub fn unsqueeze(&self, dim: usize) -> Result<Self> {
        self.map(|a| a.unsqueeze(dim))
    }

    /// Removes a dimension of size one.
    pub fn squeeze(&self, dim: usize) -> Result<Self> {
        self.map(|a| a.squeeze(dim))
    }

    /// Selects entries along `dim` by an integer index tensor (differentiable; backward uses
    /// `index_add`, which is correct in candle 0.11).
    pub fn index_select(&self, indexes: &Tensor, dim: usize) -> Result<Self> {
        self.map(|a| a.index_select(indexes, dim))
    }

    /// Sum over dimension `dim` (removed).
    pub fn sum(&self, dim: usize) -> Result<Self> {
        self.map(|a| a.sum(dim))
    }

    /// Sum over dimension `dim` (kept with size one).
    pub fn sum_keepdim(&self, dim: usize) -> Result<Self> {
        self.map(|a| a.sum_keepdim(dim))
    }

    /// Concatenates along `dim`.
    pub fn cat(items: &[&Self], dim: usize) -> Result<Self> {
        if items.is_empty() {
            return Err(CoreError::Empty("nothing to concatenate".into()));
        }
        let re: Vec<&Tensor> = items.iter().map(|c| &c.re).collect();
        let im: Vec<&Tensor> = items.iter().map(|c| &c.im).collect();
        Self::new(Tensor::cat(&re, dim)?, Tensor::cat(&im, dim)?)
    }

    /// Elementwise squared modulus `re^2 + im^2` (a real tensor).
    pub fn abs2(&self) -> Result<Tensor> {
        Ok((self.re.sqr()? + self.im.sqr()?)?)
    }

    /// Frobenius norm over all elements as a scalar tensor (differentiable away from zero).
    pub fn norm(&self) -> Result<Tensor> {
        Ok(self.abs2()?.sum_all()?.sqrt()?)
    }

    /// Frobenius norm over all elements, read back as `f64`.
    pub fn norm_f64(&self) -> Result<f64> {
        Ok(self
            .abs2()?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?
            .sqrt())
    }

    /// Column norms of a matrix `(n, k)`, as a real tensor of shape `(1, k)`.
    pub fn column_norms(&self) -> Result<Tensor> {
        Ok(self.abs2()?.sum_keepdim(0)?.sqrt()?)
    }

    /// Largest column sum of moduli of a matrix (the induced 1-norm), read back as `f64`.
    pub fn norm1_f64(&self) -> Result<f64> {
        let modulus = self.abs2()?.sqrt()?;
        let col_sums = modulus.sum(D::Minus2)?;
        Ok(col_sums
            .flatten_all()?
            .max(0)?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?)
    }

    /// Converts both parts to another float dtype.
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        self.map(|a| a.to_dtype(dtype))
    }

    /// Moves both parts to another device.
    pub fn to_device(&self, device: &Device) -> Result<Self> {
        self.map(|a| a.to_device(device))
    }

    /// Cuts the tensor out of the autograd graph.
    pub fn detach(&self) -> Self {
        Self {
            re: self.re.detach(),
            im: self.im.detach(),
        }
    }

    /// Fails with [`CoreError::NonFinite`] naming `what` if any entry is NaN or infinite.
    pub fn ensure_finite(&self, what: &str) -> Result<()> {
        ensure_finite(&self.re, what)?;
        ensure_finite(&self.im, what)
    }
}

/// `a.matmul(b)` for operands of any layout. candle's CUDA matmul accepts only matrices whose
/// rows (or columns) are packed, refusing e.g. a column block narrowed out of a wider matrix
/// that the CPU gemm takes; such operands are copied to a contiguous layout first.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(gemm_ready(a)?.matmul(&gemm_ready(b)?)?)
}

/// `fixed . x` for a matrix `fixed` that is data, not a parameter (no gradient is wanted for
/// it), differentiable in `x` only. candle's matmul backward forms the gradient of both operands
/// (for a `(B, |N|)` feature matrix, a `B x |N|` outer product and its accumulator per step); here
/// the product is taken on a detached `x`, and the gradient `fixed^T g` reaches `x` through a
/// zero-valued custom op added to it.
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// let f = Tensor::new(&[[1.0f64, 2.0], [3.0, 4.0]], &Device::Cpu)?;
/// let x = Var::new(&[[1.0f64], [-1.0]], &Device::Cpu)?;
/// let y = koopman_core::complex::matmul_fixed_lhs(&f, x.as_tensor())?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f64>()?, vec![-1.0, -1.0]);
/// let g = y.sum_all()?.backward()?;
/// assert_eq!(g.get(x.as_tensor()).unwrap().flatten_all()?.to_vec1::<f64>()?, vec![4.0, 6.0]);
/// # Ok::<(), koopman_core::CoreError>(())
/// ```
pub fn matmul_fixed_lhs(fixed: &Tensor, x: &Tensor) -> Result<Tensor> {
    let fixed = fixed.detach();
    let value = matmul(&fixed, &x.detach())?;
    with_gradient(value, x, move |g| {
        gemm_ready(&fixed.t()?)?.matmul(&gemm_ready(g)?)
    })
}

/// `value` (computed from `input` outside the autograd graph) with the gradient `grad(g)` for
/// `input`, where `g` is the gradient of the result: the value plus a zero-valued custom op of
/// `input` whose backward is `grad`. For products and gathers whose candle backward would be
/// wasteful (gradients of constant operands) or serial (candle's CUDA `index_add` with few
/// targets runs in one thread per target).
pub fn with_gradient(
    value: Tensor,
    input: &Tensor,
    grad: impl Fn(&Tensor) -> candle_core::Result<Tensor> + Send + Sync + 'static,
) -> Result<Tensor> {
    if !input.track_op() {
        return Ok(value);
    }
    let through = input.apply_op1(GradientOf {
        shape: value.shape().clone(),
        grad: Box::new(grad),
    })?;
    Ok((value + through)?)
}

/// The gradient function of [`with_gradient`].
type GradientFn = Box<dyn Fn(&Tensor) -> candle_core::Result<Tensor> + Send + Sync>;

/// Zeros of the value's shape in the forward pass; the given gradient in the backward pass.
struct GradientOf {
    shape: Shape,
    grad: GradientFn,
}

impl candle_core::CustomOp1 for GradientOf {
    fn name(&self) -> &'static str {
        "koopman-custom-gradient"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        _layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        let len = self.shape.elem_count();
        let zeros = match storage.dtype() {
            DType::F64 => candle_core::CpuStorage::F64(vec![0.0; len]),
            DType::F32 => candle_core::CpuStorage::F32(vec![0.0; len]),
            d => {
                return Err(candle_core::Error::Msg(format!(
                    "custom gradients compute in f32 or f64, got {d:?}"
                )))
            }
        };
        Ok((zeros, self.shape.clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        _layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        let dev = storage.device();
        let len = self.shape.elem_count();
        let slice = match storage.dtype() {
            DType::F64 => candle_core::cuda_backend::CudaStorageSlice::F64(dev.alloc_zeros(len)?),
            DType::F32 => candle_core::cuda_backend::CudaStorageSlice::F32(dev.alloc_zeros(len)?),
            d => {
                return Err(candle_core::Error::Msg(format!(
                    "custom gradients compute in f32 or f64, got {d:?}"
                )))
            }
        };
        Ok((
            candle_core::CudaStorage {
                slice,
                device: dev.clone(),
            },
            self.shape.clone(),
        ))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some((self.grad)(grad)?))
    }
}

/// `t` itself when its last two dimensions are packed row- or column-major (what every gemm
/// backend accepts), else a contiguous copy.
fn gemm_ready(t: &Tensor) -> candle_core::Result<Tensor> {
    let dims = t.dims();
    if dims.len() < 2 {
        return Ok(t.clone());
    }
    let layout = t.layout();
    let stride = layout.stride();
    let (rows, cols) = (dims[dims.len() - 2], dims[dims.len() - 1]);
    let (s_row, s_col) = (stride[stride.len() - 2], stride[stride.len() - 1]);
    let row_major = (s_col == 1 || cols == 1) && (s_row == cols || rows == 1);
    let col_major = (s_row == 1 || rows == 1) && (s_col == rows || cols == 1);
    // Leading (batch) dimensions must be packed too.
    let batch_packed = dims.len() == 2 || t.is_contiguous();
    if (row_major || col_major) && batch_packed {
        Ok(t.clone())
    } else {
        t.contiguous()
    }
}

/// Fails with [`CoreError::NonFinite`] naming `what` if any entry of `t` is NaN or infinite.
///
/// Multiplying by zero maps finite values to 0 and NaN/Inf to NaN, so the sum is 0 exactly when
/// every entry is finite (a plain sum could overflow on large finite values).
pub fn ensure_finite(t: &Tensor, what: &str) -> Result<()> {
    let probe = t
        .detach()
        .affine(0.0, 0.0)?
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    // affine(0, 0) computes 0 * x + 0, which is NaN for NaN and Inf inputs.
    if probe == 0.0 {
        Ok(())
    } else {
        Err(CoreError::NonFinite(what.to_string()))
    }
}

/// Machine epsilon of a float dtype (f64 for anything that is not f32/f16/bf16).
pub fn dtype_epsilon(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => f32::EPSILON as f64,
        DType::F16 => 9.765625e-4,
        DType::BF16 => 7.8125e-3,
        _ => f64::EPSILON,
    }
}
