//! Weighted gathers: the inner kernel of structured operators, on the CPU and on NVIDIA GPUs.
//!
//! A weighted gather maps rows `y` of shape `(b, n)` to `out[j, i] = sum_k w[i, k] y[j, T[i, k]]`
//! for a fixed index table `T` of shape `(n, K)` (entries equal to `n` read zero) and complex
//! weights `w` of shape `(n, K)` or `(1, K)` (one weight per column `k`, shared by all rows).
//! candle's `index_select` + broadcast multiply + sum computes the same thing portably but makes
//! three passes over `b n K` values (and, on a GPU, a dozen kernel launches); this module does it
//! in one pass as a candle custom op with a hand-written backward (one pass each for the start
//! vector and the weights), so it stays differentiable. Complex values are packed as a trailing
//! dimension of size 2 (`re`, `im`). Memory is `O(n K)` (the table and the weights), never `n^2`.
//!
//! The backward needs the transposed table `T'` (for each source index `l` and column `k`, the row
//! `i` with `T[i, k] = l`, or `n`); for Toeplitz tables, `T'` is the table of the opposite shift.
//!
//! [`GatherPattern::taylor`] fuses a whole truncated Taylor action `T_m(h A)^s v` of the gather
//! operator `A` (or of its adjoint) into one custom op: `m s` kernel launches on a GPU, no host
//! synchronisation, and a backward (the adjoint recursion plus one batched weight gradient) that
//! reuses the Taylor terms the forward stored. The Taylor plan (degree, sub-steps) is chosen in
//! [`crate::taylor`].
//!
//! This module holds the pattern and the custom ops (shapes, dtypes, devices, what each gradient
//! is); the loops are in [`kernels`](crate::kernels): the CPU kernels (rayon) and, with the
//! `cuda` feature, their CUDA launches (`src/kernels/gather.cu`, compiled to PTX by nvcc at build
//! time). The CPU kernels are the reference of the CUDA ones: each kernel against a dense matrix
//! in its unit tests, the two devices against each other in the integration tests of the
//! Toeplitz generator, `expv` and the Taylor action (on each compiled device).
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use koopman_core::gather::GatherPattern;
//!
//! # fn main() -> koopman_core::Result<()> {
//! // A cyclic shift on 3 positions: out[i] = 2 * y[i - 1] (T = [3, 0, 1] reads 0 at i = 0).
//! let pattern = GatherPattern::new(vec![3, 0, 1], vec![1, 2, 3], 3, 1)?;
//! let y = Tensor::new(&[[[1.0f64, 0.0], [2.0, 0.0], [3.0, 1.0]]], &Device::Cpu)?; // (1, 3, 2)
//! let w = Tensor::new(&[[[2.0f64, 0.0]]], &Device::Cpu)?; // shared weight 2, (1, 1, 2)
//! let out = pattern.apply(&y, &w)?.flatten_all()?.to_vec1::<f64>()?;
//! assert_eq!(out, vec![0.0, 0.0, 2.0, 0.0, 4.0, 0.0]);
//! # Ok(()) }
//! ```

use crate::error::{CoreError, Result};
use crate::kernels::gather::{
    cpu_gather, dispatch_float, slice, structured_gather_cpu, weight_grad_kernel, Direction,
};
#[cfg(feature = "cuda")]
use crate::kernels::gather_cuda as cuda;
use crate::kernels::taylor::{taylor_backward_cpu, taylor_forward_cpu};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor, WithDType};
use std::sync::Arc;

/// A fixed gather pattern: table `T` `(n, K)` and its transpose `T'` `(n, K)`, on the host and,
/// after [`GatherPattern::on_device`], on a GPU.
#[derive(Clone, Debug)]
pub struct GatherPattern {
    table: Arc<Vec<u32>>,
    transpose: Arc<Vec<u32>>,
    n: usize,
    k: usize,
    /// `(T, T')` as `u32` tensors on a non-CPU device.
    device_tables: Option<(Tensor, Tensor)>,
}

impl GatherPattern {
    /// A pattern over `n` positions with `k` columns. Every table entry must be `<= n` (`n` means
    /// "zero"), and `transpose` must be the transpose of `table`.
    pub fn new(table: Vec<u32>, transpose: Vec<u32>, n: usize, k: usize) -> Result<Self> {
        if table.len() != n * k || transpose.len() != n * k {
            return Err(CoreError::ShapeMismatch(format!(
                "gather tables of lengths {} and {} for n = {n}, K = {k}",
                table.len(),
                transpose.len()
            )));
        }
        if n >= u32::MAX as usize {
            return Err(CoreError::InvalidArgument(format!(
                "gather over n = {n} positions: at most {} fit the u32 tables",
                u32::MAX - 1
            )));
        }
        if table
            .iter()
            .chain(transpose.iter())
            .any(|&t| t as usize > n)
        {
            return Err(CoreError::InvalidArgument(format!(
                "gather table entry beyond n = {n}"
            )));
        }
        Ok(Self {
            table: Arc::new(table),
            transpose: Arc::new(transpose),
            n,
            k,
            device_tables: None,
        })
    }

    /// The pattern ready for tensors on `device`: the tables are copied there once (a no-op on
    /// the CPU). Fails for devices without gather kernels (see [`GatherPattern::supports`]).
    pub fn on_device(mut self, device: &Device) -> Result<Self> {
        if !Self::supports(device) {
            return Err(CoreError::Unsupported(format!(
                "no gather kernels for {device:?} (CPU, and CUDA with the `cuda` feature)"
            )));
        }
        self.device_tables = if device.is_cpu() {
            None
        } else {
            Some((
                Tensor::from_slice(&self.table, self.n * self.k, device)?,
                Tensor::from_slice(&self.transpose, self.n * self.k, device)?,
            ))
        };
        Ok(self)
    }

    /// The pattern with its tables already on a device (`table` and `transpose` as `u32` tensors
    /// there, equal to the host tables).
    pub(crate) fn with_device_tables(mut self, table: Tensor, transpose: Tensor) -> Self {
        self.device_tables = Some((table, transpose));
        self
    }

    /// `(T, T')` as `u32` tensors on the device of [`GatherPattern::on_device`] (`None` on the
    /// CPU).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) fn device_tables(&self) -> Option<(&Tensor, &Tensor)> {
        self.device_tables.as_ref().map(|(t, tt)| (t, tt))
    }

    /// The host table `T` (row-major `(n, K)`).
    pub fn table(&self) -> &[u32] {
        &self.table
    }

    /// Whether the gather kernels run on `device`: always on the CPU, on CUDA devices when the
    /// crate is built with its `cuda` feature.
    pub fn supports(device: &Device) -> bool {
        device.is_cpu() || (cfg!(feature = "cuda") && device.is_cuda())
    }

    /// The same pattern read backwards (table and transpose swapped).
    pub fn transposed(&self) -> Self {
        Self {
            table: self.transpose.clone(),
            transpose: self.table.clone(),
            n: self.n,
            k: self.k,
            device_tables: self
                .device_tables
                .as_ref()
                .map(|(t, tt)| (tt.clone(), t.clone())),
        }
    }

    /// Positions `n`.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the pattern has no positions.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Columns `K`.
    pub fn columns(&self) -> usize {
        self.k
    }

    /// `out[j, i] = sum_k w[i, k] y[j, T[i, k]]` for packed complex `y` `(b, n, 2)` and `w`
    /// `(n, K, 2)` or `(1, K, 2)`; differentiable in both.
    pub fn apply(&self, y: &Tensor, w: &Tensor) -> Result<Tensor> {
        self.check(y, w)?;
        Ok(y.contiguous()?.apply_op2(
            &w.contiguous()?,
            GatherOp {
                pattern: self.clone(),
                adjoint: false,
            },
        )?)
    }

    /// `out[j, l] = sum_k conj(w[i, k]) y[j, i]` over the rows `i` with `T[i, k] = l`: the
    /// adjoint of [`GatherPattern::apply`] (same shapes), differentiable in both.
    pub fn apply_adjoint(&self, y: &Tensor, w: &Tensor) -> Result<Tensor> {
        self.check(y, w)?;
        Ok(y.contiguous()?.apply_op2(
            &w.contiguous()?,
            GatherOp {
                pattern: self.clone(),
                adjoint: true,
            },
        )?)
    }

    /// `T_m(h A)^s v` (or with `A^*` when `adjoint`) for the gather operator `A` with per-row
    /// weights `w` `(n, K, 2)` and packed start vectors `v` `(b, n, 2)`: `s = steps.substeps`
    /// sub-steps of the degree-`m = steps.degree` Taylor polynomial of `exp(h A)`,
    /// `h = steps.step`. One custom op, differentiable in `v` and `w`; returns `(b, n, 2)`.
    pub fn taylor(
        &self,
        v: &Tensor,
        w: &Tensor,
        steps: TaylorSteps,
        adjoint: bool,
    ) -> Result<Tensor> {
        self.check(v, w)?;
        if w.dims()[0] != self.n {
            return Err(CoreError::ShapeMismatch(format!(
                "the fused Taylor action needs per-row weights ({}, {}, 2), got {:?}",
                self.n,
                self.k,
                w.dims()
            )));
        }
        steps.validate()?;
        let op = TaylorSweep {
            pattern: self.clone(),
            direction: if adjoint {
                Direction::adjoint(false)
            } else {
                Direction::forward(false)
            },
            steps,
            backward: false,
        };
        let rows = steps.terms();
        let all = v.contiguous()?.apply_op2(&w.contiguous()?, op)?;
        Ok(all.narrow(0, rows, 1)?.squeeze(0)?)
    }

    /// `out[j, i] = sum_k u(i, k) y[j, T[i, k]]` with weights `u(i, k) = sum_q f[T[i, k], q]
    /// a[q, k]` built in the kernel from `d` shared complex coefficient rows `a` `(d, K, 2)` and
    /// real factors `f` `(n, d)` of the gathered position: the one-factor Toeplitz generator
    /// (`a = i t a^q`, `f` the frequencies) without its `(n, K)` weights, so a product reads
    /// `O(n K)` table entries and `O(n d + d K)` values instead of `O(n K)` complex weights. Not
    /// differentiable (the no-gradient product of a GPU; see [`crate::toeplitz`]).
    pub fn apply_structured(&self, y: &Tensor, a: &Tensor, f: &Tensor) -> Result<Tensor> {
        let (ad, fd) = (a.dims(), f.dims());
        if ad.len() != 3 || ad[1] != self.k || ad[2] != 2 || fd != [self.n, ad[0]] {
            return Err(CoreError::ShapeMismatch(format!(
                "structured gather coefficients {ad:?} and factors {fd:?}, expected (d, {}, 2) and \
                 ({}, d)",
                self.k, self.n
            )));
        }
        self.check(y, &a.narrow(0, 0, 1)?)?;
        if f.dtype() != y.dtype() || !f.device().same_device(y.device()) {
            return Err(CoreError::InvalidArgument(format!(
                "structured gather factors are {:?} on {:?}, the input {:?} on {:?}",
                f.dtype(),
                f.device(),
                y.dtype(),
                y.device()
            )));
        }
        Ok(y.contiguous()?.apply_op3_no_bwd(
            &a.contiguous()?,
            &f.contiguous()?,
            &StructuredGather {
                pattern: self.clone(),
            },
        )?)
    }

    pub(crate) fn check(&self, y: &Tensor, w: &Tensor) -> Result<()> {
        let yd = y.dims();
        let wd = w.dims();
        if yd.len() != 3 || yd[1] != self.n || yd[2] != 2 {
            return Err(CoreError::ShapeMismatch(format!(
                "gather input has shape {yd:?}, expected (b, {}, 2)",
                self.n
            )));
        }
        if wd.len() != 3 || (wd[0] != self.n && wd[0] != 1) || wd[1] != self.k || wd[2] != 2 {
            return Err(CoreError::ShapeMismatch(format!(
                "gather weights have shape {wd:?}, expected ({}|1, {}, 2)",
                self.n, self.k
            )));
        }
        if y.dtype() != w.dtype() {
            return Err(CoreError::InvalidArgument(format!(
                "gather input is {:?} but the weights are {:?}",
                y.dtype(),
                w.dtype()
            )));
        }
        if !matches!(y.dtype(), DType::F32 | DType::F64) {
            return Err(CoreError::InvalidArgument(format!(
                "gathers compute in f32 or f64, got {:?}",
                y.dtype()
            )));
        }
        if !y.device().same_device(w.device()) {
            return Err(CoreError::InvalidArgument(
                "gather input and weights live on different devices".into(),
            ));
        }
        let on_device = self.device_tables.as_ref().map(|(t, _)| t.device());
        let ready = match on_device {
            None => y.device().is_cpu(),
            Some(d) => y.device().same_device(d),
        };
        if !ready {
            return Err(CoreError::InvalidArgument(format!(
                "gather pattern prepared for {:?}, operands on {:?} (use GatherPattern::on_device)",
                on_device.cloned().unwrap_or(Device::Cpu),
                y.device()
            )));
        }
        Ok(())
    }

    pub(crate) fn host_table(&self, transposed: bool) -> &[u32] {
        if transposed {
            &self.transpose
        } else {
            &self.table
        }
    }
}

/// Degree, sub-steps and step of a truncated Taylor action (chosen by [`crate::taylor`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TaylorSteps {
    /// Degree `m >= 1` of the Taylor polynomial.
    pub degree: usize,
    /// Sub-steps `s >= 1`.
    pub substeps: usize,
    /// Step `h` (the total time over `s`).
    pub step: f64,
}

impl TaylorSteps {
    /// Operator applications, `m s` (also the number of stored Taylor terms).
    pub fn terms(&self) -> usize {
        self.degree * self.substeps
    }

    fn validate(&self) -> Result<()> {
        if self.degree == 0 || self.substeps == 0 || !self.step.is_finite() {
            return Err(CoreError::InvalidArgument(format!(
                "Taylor action needs degree >= 1, sub-steps >= 1 and a finite step, got {self:?}"
            )));
        }
        Ok(())
    }
}

/// The weighted gather `A` (or, with `adjoint`, `A^*`), differentiable; each is the other's
/// input gradient.
struct GatherOp {
    pattern: GatherPattern,
    adjoint: bool,
}

impl GatherOp {
    fn direction(&self, l2: &Layout) -> Direction {
        let shared = l2.dims()[0] == 1;
        if self.adjoint {
            Direction::adjoint(shared)
        } else {
            Direction::forward(shared)
        }
    }
}

impl CustomOp2 for GatherOp {
    fn name(&self) -> &'static str {
        if self.adjoint {
            "koopman-weighted-gather-adjoint"
        } else {
            "koopman-weighted-gather"
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        cpu_gather(&self.pattern, self.direction(l2), s1, l1, s2, l2)
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        cuda::gather(&self.pattern, self.direction(l2), s1, l1, s2, l2)
    }

    fn bwd(
        &self,
        y: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let shared = w.dims()[0] == 1;
        // The input gradient of A is A^* of the output gradient (a gather along the transpose
        // with the weights conjugated and read at the gathered row), and vice versa.
        let dy = grad.apply_op2_no_bwd(
            w,
            &GatherOp {
                pattern: self.pattern.clone(),
                adjoint: !self.adjoint,
            },
        )?;
        // A: dw[i, k] = sum_j conj(y[j, T[i, k]]) g[j, i]; A^* takes conjugated weights at the
        // gathered row: dw[i, k] = sum_j conj(g[j, T[i, k]]) y[j, i].
        let (first, second) = if self.adjoint { (&grad, y) } else { (y, &grad) };
        let dw = first.apply_op2_no_bwd(
            second,
            &WeightGrad {
                pattern: self.pattern.clone(),
                shared,
            },
        )?;
        Ok((Some(dy), Some(dw)))
    }
}

/// `(y (b, n, 2), a (d, K, 2), f (n, d)) -> (b, n, 2)`, see [`GatherPattern::apply_structured`].
struct StructuredGather {
    pattern: GatherPattern,
}

impl candle_core::CustomOp3 for StructuredGather {
    fn name(&self) -> &'static str {
        "koopman-structured-gather"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let p = &self.pattern;
        dispatch_float!(s1.dtype(), "structured gather", |T| {
            let out = structured_gather_cpu::<T>(
                slice(s1, l1)?,
                slice(s2, l2)?,
                slice(s3, l3)?,
                &p.table,
                p.n,
                p.k,
            );
            Ok((T::to_cpu_storage_owned(out), l1.shape().clone()))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
        s3: &candle_core::CudaStorage,
        l3: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        cuda::structured(&self.pattern, s1, l1, s2, l2, s3, l3)
    }
}

/// Gradient with respect to the weights: `dw[i, k] = sum_j conj(first[j, T[i, k]]) second[j, i]`.
struct WeightGrad {
    pattern: GatherPattern,
    shared: bool,
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "koopman-weighted-gather-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let p = &self.pattern;
        let rows = if self.shared { 1 } else { p.n };
        dispatch_float!(s1.dtype(), "weighted gather gradient", |T| {
            let out = weight_grad_kernel::<T>(
                slice(s1, l1)?,
                slice(s2, l2)?,
                &p.table,
                p.n,
                p.k,
                self.shared,
            );
            Ok((T::to_cpu_storage_owned(out), Shape::from((rows, p.k, 2))))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        cuda::weight_grad(&self.pattern, self.shared, s1, l1, s2, l2)
    }
}

/// One sweep of the fused Taylor action, `(x (b, n, 2), w (n, K, 2)) -> (m s + 1, b, n, 2)`:
/// the forward sweep (`x = v`; rows `0..m s` the stored Taylor inputs, the last row the result)
/// or, with `backward`, its adjoint sweep (`x` the gradient of the result; rows `0..m s` the
/// scaled adjoint terms aligned with the stored inputs, the last row the gradient of `v`).
/// `direction` is the operator of the forward sweep.
struct TaylorSweep {
    pattern: GatherPattern,
    direction: Direction,
    steps: TaylorSteps,
    backward: bool,
}

impl TaylorSweep {
    /// The operator this sweep applies.
    fn applied(&self) -> Direction {
        if self.backward {
            self.direction.reversed()
        } else {
            self.direction
        }
    }
}

impl CustomOp2 for TaylorSweep {
    fn name(&self) -> &'static str {
        if self.backward {
            "koopman-taylor-action-backward"
        } else {
            "koopman-taylor-action"
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let p = &self.pattern;
        let dir = self.applied();
        dispatch_float!(s1.dtype(), "Taylor action", |T| {
            let sweep = if self.backward {
                taylor_backward_cpu::<T>
            } else {
                taylor_forward_cpu::<T>
            };
            let (x, w) = (slice(s1, l1)?, slice(s2, l2)?);
            let table = p.host_table(dir.transposed);
            // The sweep on a worker of the thread pool, so that its m s parallel gathers start
            // there instead of each being handed off from (and back to) a foreign thread.
            let out = rayon::scope(|_| sweep(x, w, table, p.n, p.k, dir, self.steps));
            let mut dims = vec![self.steps.terms() + 1];
            dims.extend_from_slice(l1.dims());
            Ok((T::to_cpu_storage_owned(out), Shape::from(dims)))
        })
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        cuda::taylor(
            &self.pattern,
            self.applied(),
            self.steps,
            self.backward,
            s1,
            l1,
            s2,
            l2,
        )
    }

    fn bwd(
        &self,
        _v: &Tensor,
        w: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        if self.backward {
            return Err(candle_core::Error::Msg(
                "the Taylor action has no second derivative".into(),
            ));
        }
        // Only the result row carries a gradient: the stored terms are internal.
        let rows = self.steps.terms();
        let g = grad.narrow(0, rows, 1)?.squeeze(0)?.contiguous()?;
        let (b, n) = (g.dims()[0], g.dims()[1]);
        let back = g.apply_op2_no_bwd(
            w,
            &TaylorSweep {
                pattern: self.pattern.clone(),
                direction: self.direction,
                steps: self.steps,
                backward: true,
            },
        )?;
        let dv = back.narrow(0, rows, 1)?.squeeze(0)?;
        let u = back.narrow(0, 0, rows)?.reshape((rows * b, n, 2))?;
        let z = res.narrow(0, 0, rows)?.reshape((rows * b, n, 2))?;
        // Forward A: dw[i, k] = sum conj(z[T[i, k]]) u[i]; adjoint A^*: sum conj(u[T[i, k]]) z[i].
        let (first, second) = if self.direction.transposed {
            (u, z)
        } else {
            (z, u)
        };
        let dw = first.apply_op2_no_bwd(
            &second,
            &WeightGrad {
                pattern: self.pattern.clone(),
                shared: false,
            },
        )?;
        Ok((Some(dv), Some(dw)))
    }
}
