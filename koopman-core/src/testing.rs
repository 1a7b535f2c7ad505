//! Device-generic tests: one body, one `#[test]` per compiled device.
//!
//! [`test_device!`](crate::test_device) expands a function `fn body(&Device) -> Result<..>` into a
//! CPU test and a CUDA test. The CUDA test is marked ignored (with the reason shown by
//! `cargo test`) when the crate is built without its `cuda` feature, and prints why it skipped
//! when the build has CUDA but the machine has no usable GPU; it never passes silently.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! koopman_core::test_device!(ones_sum, ones_sum_cpu, ones_sum_cuda);
//! fn ones_sum(dev: &Device) -> koopman_core::Result<()> {
//!     let s = Tensor::ones(4, DType::F64, dev)?.sum_all()?.to_scalar::<f64>()?;
//!     assert_eq!(s, 4.0);
//!     Ok(())
//! }
//! # fn main() { ones_sum(&Device::Cpu).unwrap() }
//! ```

use candle_core::Device;

/// The first CUDA device, or `None` with the reason printed (to stderr, shown by `cargo test`
/// with `--nocapture` and in failure output) when there is none.
pub fn cuda_device_or_skip(test: &str) -> Option<Device> {
    match Device::new_cuda(0) {
        Ok(dev) if dev.is_cuda() => Some(dev),
        Ok(_) => {
            eprintln!("SKIPPED {test}: candle returned a non-CUDA device");
            None
        }
        Err(e) => {
            eprintln!("SKIPPED {test}: no usable CUDA device ({e})");
            None
        }
    }
}

/// Expands `test_device!(body, name_cpu, name_cuda)` into two `#[test]` functions that call
/// `body(&device)`; see the [module documentation](crate::testing).
#[macro_export]
macro_rules! test_device {
    ($body:ident, $test_cpu:ident, $test_cuda:ident) => {
        #[test]
        fn $test_cpu() -> ::std::result::Result<(), ::std::boxed::Box<dyn ::std::error::Error>> {
            $body(&$crate::candle_core::Device::Cpu)?;
            Ok(())
        }

        #[test]
        #[cfg_attr(
            not(feature = "cuda"),
            ignore = "CUDA variant: this build has no `cuda` feature"
        )]
        fn $test_cuda() -> ::std::result::Result<(), ::std::boxed::Box<dyn ::std::error::Error>> {
            if let Some(dev) = $crate::testing::cuda_device_or_skip(stringify!($test_cuda)) {
                $body(&dev)?;
            }
            Ok(())
        }
    };
}

/// Whether data a test or run needs must be present rather than skipped: under CI (`CI` set) or
/// when `KOOPMAN_DATA_DIR` is set (the data was promised). [`mnist_dir_for_test`] panics on missing
/// data then; `koopman-bench reproduce --smoke` counts a skipped experiment as failed.
pub fn data_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("KOOPMAN_DATA_DIR").is_some()
}

/// The MNIST folder for a test that needs it: `$KOOPMAN_DATA_DIR/mnist` when the variable is set,
/// else the subset bundled with this crate ([`crate::data::mnist::mnist_dir_default`]), so MNIST tests
/// run on a fresh clone. When the data is still missing (a set variable pointing at an empty
/// folder, an unwritable temporary folder) the test must not pass silently: under CI (`CI` or
/// `KOOPMAN_DATA_DIR` set) this panics with the reason; elsewhere it prints why `test` is skipped
/// and returns `None`.
///
/// ```
/// if let Some(dir) = koopman_core::testing::mnist_dir_for_test("doc example") {
///     assert!(koopman_core::data::mnist::mnist_files_present(&dir));
/// }
/// ```
pub fn mnist_dir_for_test(test: &str) -> Option<std::path::PathBuf> {
    let reason = match crate::data::mnist::mnist_dir_default() {
        Ok(d) if crate::data::mnist::mnist_files_present(&d) => return Some(d),
        Ok(d) => format!("MNIST IDX files not found in {}", d.display()),
        Err(e) => format!("the bundled MNIST could not be written: {e}"),
    };
    if data_required() {
        panic!("{test}: {reason}; CI / KOOPMAN_DATA_DIR is set, so the data must be there");
    }
    eprintln!("SKIPPED {test}: {reason}");
    None
}
