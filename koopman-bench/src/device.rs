//! Devices by name, and timing that waits for the device.

use crate::{BenchError, Result};
use candle_core::Device;
use std::time::Instant;

/// The device kinds the command accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum DeviceKind {
    /// The host CPU.
    Cpu,
    /// The first CUDA GPU (needs a build with `--features cuda`).
    Cuda,
}

impl DeviceKind {
    /// Opens the device, with a clear error when CUDA is not compiled in or not present.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceKind::Cpu => Ok(Device::Cpu),
            DeviceKind::Cuda => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(BenchError::Device(
                        "CUDA requested but this binary was built without `--features cuda`".into(),
                    ));
                }
                Device::new_cuda(0)
                    .map_err(|e| BenchError::Device(format!("no usable CUDA device: {e}")))
            }
        }
    }
}

/// A short name of a device for reports.
pub fn device_name(device: &Device) -> &'static str {
    if device.is_cuda() {
        "cuda"
    } else if device.is_metal() {
        "metal"
    } else {
        "cpu"
    }
}

/// Runs `f` and returns its result and the seconds it took, waiting for the device to finish
/// queued work before starting and before stopping the clock.
pub fn timed<T>(device: &Device, f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    device.synchronize()?;
    let start = Instant::now();
    let out = f()?;
    device.synchronize()?;
    Ok((out, start.elapsed().as_secs_f64()))
}

/// Resets the device's peak-memory mark (see [`peak_memory`]); a no-op off CUDA.
pub fn reset_peak_memory(device: &Device) {
    #[cfg(feature = "cuda")]
    if let Some(pool) = cuda_pool::default_pool(device) {
        cuda_pool::set_high_water(pool, 0);
    }
    #[cfg(not(feature = "cuda"))]
    let _ = device;
}

/// Peak bytes allocated on the device since the last [`reset_peak_memory`]: the high-water mark
/// of the CUDA memory pool that candle's allocations (`cuMemAllocAsync`) come from. `None` off
/// CUDA or when the driver does not report it.
pub fn peak_memory(device: &Device) -> Option<u64> {
    #[cfg(feature = "cuda")]
    {
        let pool = cuda_pool::default_pool(device)?;
        cuda_pool::high_water(pool)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = device;
        None
    }
}

#[cfg(feature = "cuda")]
mod cuda_pool {
    use candle_core::cuda_backend::cudarc::driver::sys;
    use candle_core::{Device, DeviceLocation};

    pub(super) fn default_pool(device: &Device) -> Option<sys::CUmemoryPool> {
        let DeviceLocation::Cuda { gpu_id } = device.location() else {
            return None;
        };
        device.synchronize().ok()?;
        let mut dev: sys::CUdevice = 0;
        let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
        // SAFETY: plain driver queries with out-pointers to locals; the context exists (the
        // device was opened).
        unsafe {
            if sys::cuDeviceGet(&mut dev, gpu_id as i32) != sys::CUresult::CUDA_SUCCESS {
                return None;
            }
            if sys::cuDeviceGetDefaultMemPool(&mut pool, dev) != sys::CUresult::CUDA_SUCCESS {
                return None;
            }
        }
        Some(pool)
    }

    pub(super) fn high_water(pool: sys::CUmemoryPool) -> Option<u64> {
        let mut value: u64 = 0;
        // SAFETY: the attribute is a cuuint64_t written through the pointer.
        let status = unsafe {
            sys::cuMemPoolGetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
                &mut value as *mut u64 as *mut std::ffi::c_void,
            )
        };
        (status == sys::CUresult::CUDA_SUCCESS).then_some(value)
    }

    pub(super) fn set_high_water(pool: sys::CUmemoryPool, value: u64) {
        let mut value = value;
        // SAFETY: as above; resetting the mark is allowed with the value 0.
        unsafe {
            sys::cuMemPoolSetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
                &mut value as *mut u64 as *mut std::ffi::c_void,
            );
        }
    }
}
