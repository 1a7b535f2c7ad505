//! The CUDA launches of the gather kernels (`gather.cu`, compiled to PTX by build.rs under the
//! `cuda` feature), and the launch plumbing the Arnoldi kernel shares.
//!
//! What: one launch per CPU kernel of [`gather`](super::gather) and
//! [`taylor`](super::taylor) (a gather, the structured gather, the weight gradient, and the
//! forward and adjoint Taylor sweeps as a sequence of gathers on one stream), each on the raw
//! device addresses of candle's CUDA storages.
//!
//! How: [`Kernels`] loads the PTX module once per device and names the kernel of a float type
//! (`koopman_{kernel}_{f32|f64}`); a gather launches one warp per output entry (32 threads
//! per value, `THREADS` per block). The pattern's tables must already be on the device
//! ([`GatherPattern::on_device`]); outputs are fresh allocations that every kernel writes in full
//! before any read.

use super::gather::{dispatch_float, Direction, WeightMode};
use crate::gather::{GatherPattern, TaylorSteps};
use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig, PushKernelArg,
};
use candle_core::cuda_backend::{CudaDevice, WrapErr};
use candle_core::{CudaStorage, DType, Layout, Shape, Storage, WithDType};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/gather.ptx"));
const MODULE: &str = "koopman_gather";
const THREADS: u32 = 256;

type R<T> = candle_core::Result<T>;

fn err(msg: String) -> candle_core::Error {
    candle_core::Error::Msg(msg)
}

/// The kernels of one float type on one device.
pub(crate) struct Kernels<'a> {
    dev: &'a CudaDevice,
    suffix: &'static str,
}

impl<'a> Kernels<'a> {
    pub(crate) fn new(dev: &'a CudaDevice, dtype: DType) -> R<Self> {
        let suffix = match dtype {
            DType::F32 => "f32",
            DType::F64 => "f64",
            d => {
                return Err(err(format!(
                    "gather kernels support f32 and f64, got {d:?}"
                )))
            }
        };
        Ok(Self { dev, suffix })
    }

    /// The exported name of `kernel` for this float type (`koopman_{kernel}_{f32|f64}`).
    pub(crate) fn name(&self, kernel: &str) -> String {
        format!("koopman_{kernel}_{}", self.suffix)
    }

    /// `out = scale_out (base + scale_in gather(y))` over `rows` rows; pointers may be 0.
    #[allow(clippy::too_many_arguments)]
    fn gather<T: DeviceRepr + WithDType>(
        &self,
        ptrs: [u64; 6],
        scale_in: f64,
        scale_out: f64,
        n: usize,
        k: usize,
        rows: usize,
        dir: Direction,
    ) -> R<()> {
        let [y, w, table, out, base, acc] = ptrs;
        let func = self
            .dev
            .get_or_load_custom_func(&self.name("gather"), MODULE, PTX)?;
        let (scale_in, scale_out) = (T::from_f64(scale_in), T::from_f64(scale_out));
        let (n32, k32, rows32) = (n as u32, k as u32, rows as u32);
        let (mode, conj) = (dir.mode as i32, i32::from(dir.conj));
        let threads = (rows * n) as u64 * 32;
        let cfg = LaunchConfig {
            grid_dim: (threads.div_ceil(THREADS as u64) as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = func.builder();
        b.arg(&y)
            .arg(&w)
            .arg(&table)
            .arg(&out)
            .arg(&base)
            .arg(&acc)
            .arg(&scale_in)
            .arg(&scale_out)
            .arg(&n32)
            .arg(&k32)
            .arg(&rows32)
            .arg(&mode)
            .arg(&conj);
        // SAFETY: the pointers are live device allocations of the sizes the kernel reads and
        // writes (checked by the callers), all on this device's stream.
        unsafe { b.launch(cfg) }.w()?;
        Ok(())
    }

    fn copy(&self, from: u64, to: u64, len: usize) -> R<()> {
        let func = self
            .dev
            .get_or_load_custom_func(&self.name("copy"), MODULE, PTX)?;
        let len64 = len as u64;
        let cfg = LaunchConfig {
            grid_dim: (len64.div_ceil(THREADS as u64) as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = func.builder();
        b.arg(&from).arg(&to).arg(&len64);
        // SAFETY: both pointers hold `len` elements of the kernel's type.
        unsafe { b.launch(cfg) }.w()?;
        Ok(())
    }
}

/// The device address of a storage's data at the layout's offset (contiguous data only).
pub(crate) fn address<T: candle_core::cuda_backend::CudaDType + DeviceRepr>(
    s: &CudaStorage,
    l: &Layout,
) -> R<(u64, usize)> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| err("gather kernels need contiguous input".into()))?;
    let slice: &CudaSlice<T> = s.as_cuda_slice::<T>()?;
    let stream = s.device.cuda_stream();
    let (ptr, _sync) = slice.device_ptr(&stream);
    Ok((ptr + (start * std::mem::size_of::<T>()) as u64, end - start))
}

pub(crate) fn table_address(
    pattern: &GatherPattern,
    transposed: bool,
) -> R<(u64, CudaStorageGuard)> {
    let (t, tt) = pattern
        .device_tables()
        .ok_or_else(|| err("gather pattern has no device tables (on_device)".into()))?;
    let tensor = if transposed { tt.clone() } else { t.clone() };
    let ptr = {
        let (storage, layout) = tensor.storage_and_layout();
        match &*storage {
            Storage::Cuda(cs) => address::<u32>(cs, layout)?.0,
            _ => return Err(err("gather tables are not on a CUDA device".into())),
        }
    };
    // The tensor (and so the allocation) is kept alive by the returned guard.
    Ok((ptr, CudaStorageGuard(tensor)))
}

/// Keeps a tensor alive while raw addresses into it are in use.
pub(crate) struct CudaStorageGuard(#[allow(dead_code)] candle_core::Tensor);

pub(crate) fn alloc<T: DeviceRepr>(dev: &CudaDevice, len: usize) -> R<CudaSlice<T>> {
    // SAFETY: every element is written by the kernels before it is read.
    unsafe { dev.alloc::<T>(len.max(1)) }
}

pub(crate) fn base_address<T: DeviceRepr>(out: &mut CudaSlice<T>, dev: &CudaDevice) -> u64 {
    let stream = dev.cuda_stream();
    let (ptr, _sync) = out.device_ptr_mut(&stream);
    ptr
}

pub(crate) fn gather(
    pattern: &GatherPattern,
    dir: Direction,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
) -> R<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let kernels = Kernels::new(dev, s1.dtype())?;
    let (table, _keep) = table_address(pattern, dir.transposed)?;
    dispatch_float!(s1.dtype(), "gather kernels", |T| {
        let (y, len) = address::<T>(s1, l1)?;
        let (w, _) = address::<T>(s2, l2)?;
        let rows = len / (2 * pattern.len());
        let mut out = alloc::<T>(dev, len)?;
        let o = base_address(&mut out, dev);
        kernels.gather::<T>(
            [y, w, table, o, 0, 0],
            1.0,
            1.0,
            pattern.len(),
            pattern.columns(),
            rows,
            dir,
        )?;
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev.clone()),
            l1.shape().clone(),
        ))
    })
}

pub(crate) fn structured(
    pattern: &GatherPattern,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    s3: &CudaStorage,
    l3: &Layout,
) -> R<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let kernels = Kernels::new(dev, s1.dtype())?;
    let (table, _keep) = table_address(pattern, false)?;
    let (n, k) = (pattern.len(), pattern.columns());
    let d = l3.dims()[1];
    dispatch_float!(s1.dtype(), "gather kernels", |T| {
        let (y, len) = address::<T>(s1, l1)?;
        let (a, _) = address::<T>(s2, l2)?;
        let (f, _) = address::<T>(s3, l3)?;
        let rows = len / (2 * n);
        let mut out = alloc::<T>(dev, len)?;
        let o = base_address(&mut out, dev);
        let func = dev.get_or_load_custom_func(&kernels.name("gather_structured"), MODULE, PTX)?;
        let (n32, k32, d32, rows32) = (n as u32, k as u32, d as u32, rows as u32);
        let threads = (rows * n) as u64 * 32;
        let cfg = LaunchConfig {
            grid_dim: (threads.div_ceil(THREADS as u64) as u32, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = func.builder();
        b.arg(&y)
            .arg(&a)
            .arg(&f)
            .arg(&table)
            .arg(&o)
            .arg(&n32)
            .arg(&k32)
            .arg(&d32)
            .arg(&rows32);
        // SAFETY: y holds `rows` rows of n complex values, a d x k complex coefficients, f
        // n x d factors, the table n x k entries, and `out` the size of y.
        unsafe { b.launch(cfg) }.w()?;
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev.clone()),
            l1.shape().clone(),
        ))
    })
}

pub(crate) fn weight_grad(
    pattern: &GatherPattern,
    shared: bool,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
) -> R<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let kernels = Kernels::new(dev, s1.dtype())?;
    let (table, _keep) = table_address(pattern, false)?;
    let (n, k) = (pattern.len(), pattern.columns());
    let out_rows = if shared { 1 } else { n };
    dispatch_float!(s1.dtype(), "gather kernels", |T| {
        let (y, len) = address::<T>(s1, l1)?;
        let (g, _) = address::<T>(s2, l2)?;
        let rows = (len / (2 * n)) as u32;
        let mut out = alloc::<T>(dev, out_rows * k * 2)?;
        let o = base_address(&mut out, dev);
        let (n32, k32) = (n as u32, k as u32);
        let kernel = if shared {
            "weight_grad_shared"
        } else {
            "weight_grad_rows"
        };
        let func = dev.get_or_load_custom_func(&kernels.name(kernel), MODULE, PTX)?;
        let blocks = if shared {
            k32
        } else {
            ((n * k) as u64).div_ceil(THREADS as u64) as u32
        };
        let cfg = LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = func.builder();
        b.arg(&y)
            .arg(&g)
            .arg(&table)
            .arg(&o)
            .arg(&n32)
            .arg(&k32)
            .arg(&rows);
        // SAFETY: y and g hold `rows` rows of n complex values, the output n (or 1) x k.
        unsafe { b.launch(cfg) }.w()?;
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev.clone()),
            Shape::from((out_rows, k, 2)),
        ))
    })
}

/// The forward sweep (`backward` false: input `v`) or the adjoint sweep (`backward` true:
/// input the gradient of the result), with `dir` the direction of the operator applied in
/// this sweep. Same row layout as the CPU sweeps.
#[allow(clippy::too_many_arguments)]
pub(crate) fn taylor(
    pattern: &GatherPattern,
    dir: Direction,
    steps: TaylorSteps,
    backward: bool,
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
) -> R<(CudaStorage, Shape)> {
    let dev = &s1.device;
    let kernels = Kernels::new(dev, s1.dtype())?;
    let (table, _keep) = table_address(pattern, dir.transposed)?;
    let (n, k, m) = (pattern.len(), pattern.columns(), steps.degree);
    let terms = steps.terms();
    dispatch_float!(s1.dtype(), "gather kernels", |T| {
        let (input, len) = address::<T>(s1, l1)?;
        let (w, _) = address::<T>(s2, l2)?;
        // The adjoint of per-row weights: transpose them once, then every gather of the
        // sweep reads its weights per output row (coalesced).
        let mut transposed = None;
        let (w, dir) = if dir.mode == WeightMode::AtTarget {
            let mut wt = alloc::<T>(dev, 2 * n * k)?;
            let wt_ptr = base_address(&mut wt, dev);
            let func =
                dev.get_or_load_custom_func(&kernels.name("transpose_weights"), MODULE, PTX)?;
            let (n32, k32) = (n as u32, k as u32);
            let cfg = LaunchConfig {
                grid_dim: (((n * k) as u64).div_ceil(THREADS as u64) as u32, 1, 1),
                block_dim: (THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = func.builder();
            b.arg(&w).arg(&table).arg(&wt_ptr).arg(&n32).arg(&k32);
            // SAFETY: w holds n x k complex weights, the table n x k entries, wt n x k.
            unsafe { b.launch(cfg) }.w()?;
            transposed = Some(wt);
            let per_row = Direction {
                transposed: dir.transposed,
                mode: WeightMode::PerRow,
                conj: false,
            };
            (wt_ptr, per_row)
        } else {
            (w, dir)
        };
        let cols = len / (2 * n);
        let mut out = alloc::<T>(dev, (terms + 1) * len)?;
        let base = base_address(&mut out, dev);
        let row = |r: usize| base + (r * len * std::mem::size_of::<T>()) as u64;
        let alpha = |term: usize| steps.step / term as f64;
        let launch = |y: u64, o: u64, b: u64, acc: u64, scale_out: f64| {
            kernels.gather::<T>([y, w, table, o, b, acc], 1.0, scale_out, n, k, cols, dir)
        };
        if backward {
            let mut grad = input;
            for s in (0..steps.substeps).rev() {
                let start = s * m;
                launch(0, row(start + m - 1), grad, 0, alpha(m))?;
                for term in (1..m).rev() {
                    launch(
                        row(start + term),
                        row(start + term - 1),
                        grad,
                        0,
                        alpha(term),
                    )?;
                }
                // zbar_0 into the last row (read as `base` and written by the same thread).
                launch(row(start), row(terms), grad, 0, 1.0)?;
                grad = row(terms);
            }
        } else {
            kernels.copy(input, row(0), len)?;
            for s in 0..steps.substeps {
                let start = s * m;
                let acc = row((s + 1) * m);
                kernels.copy(row(start), acc, len)?;
                for term in 1..=m {
                    let o = if term < m { row(start + term) } else { 0 };
                    launch(row(start + term - 1), o, 0, acc, alpha(term))?;
                }
            }
        }
        // The transposed weights are freed in stream order after the sweep's kernels.
        drop(transposed);
        let mut dims = vec![terms + 1];
        dims.extend_from_slice(l1.dims());
        Ok((
            CudaStorage::wrap_cuda_slice(out, dev.clone()),
            Shape::from(dims),
        ))
    })
}
