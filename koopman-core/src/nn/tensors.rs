//! Named tensors in safetensors files, read and written with the checks every model file gets:
//! NaN or Inf weights refused naming the tensor, files written atomically.

use crate::error::{CoreError, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Reads every tensor of a safetensors file, converted to `dtype` on `device`; a file that is
/// not valid safetensors is a [`CoreError::Format`], a float tensor holding NaN or Inf a
/// [`CoreError::NonFinite`] naming it.
pub fn load_tensors(
    path: impl AsRef<Path>,
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| CoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let map = candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| {
        CoreError::Format(format!(
            "{}: not a readable safetensors file ({e})",
            path.display()
        ))
    })?;
    // NaN or Inf weights would give a model whose every output (and so every accuracy or error
    // computed from it) is meaningless: refused here, naming the tensor.
    map.into_iter()
        .map(|(k, t)| {
            if t.dtype().is_float() {
                crate::complex::ensure_finite(&t, &format!("{}: tensor '{k}'", path.display()))?;
            }
            Ok((k, t.to_dtype(dtype)?))
        })
        .collect()
}

/// Writes named tensors as a safetensors file atomically (temporary file beside the target,
/// `fsync`, rename). Creates missing parent folders.
pub fn save_tensors_atomic(
    tensors: &HashMap<String, Tensor>,
    path: impl AsRef<Path>,
) -> Result<()> {
    let contiguous: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.contiguous()?)))
        .collect::<Result<_>>()?;
    crate::io::write_atomic_with(path, |tmp| {
        Ok(candle_core::safetensors::save(&contiguous, tmp)?)
    })
}
