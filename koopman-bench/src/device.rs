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
