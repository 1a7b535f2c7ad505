//! Build steps behind cargo features:
//! - `expm`: links the system BLAS/LAPACKE libraries (the `expm` crate calls CBLAS and LAPACKE
//!   through `-sys` crates that name no library).
//! - `cuda`: compiles the CUDA kernels of `src/kernels/*.cu` to PTX with nvcc (as candle's own
//!   kernels are), for the compute capability in `CUDA_COMPUTE_CAP` (default 80; the PTX is
//!   JIT-compiled by the driver for that GPU or a newer one). nvcc is taken from `NVCC`, else
//!   `$CUDA_HOME/bin/nvcc`, else the `PATH`. The driver must accept the PTX version of that nvcc
//!   (an R580 driver, CUDA 13.0, refuses PTX from a newer toolkit).
use std::path::PathBuf;
use std::process::Command;

const KERNELS: &[&str] = &["gather", "arnoldi"];

fn main() {
    println!("cargo:rerun-if-env-changed=CARGO_FEATURE_EXPM");
    if std::env::var_os("CARGO_FEATURE_EXPM").is_some() {
        println!("cargo:rustc-link-lib=lapacke");
        println!("cargo:rustc-link-lib=openblas");
    }
    println!("cargo:rerun-if-env-changed=CARGO_FEATURE_CUDA");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        compile_kernels();
    }
}

fn nvcc() -> PathBuf {
    if let Some(p) = std::env::var_os("NVCC") {
        return PathBuf::from(p);
    }
    if let Some(home) = std::env::var_os("CUDA_HOME") {
        let p = PathBuf::from(home).join("bin").join("nvcc");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("nvcc")
}

fn compile_kernels() {
    for var in ["NVCC", "CUDA_HOME", "CUDA_COMPUTE_CAP"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into());
    let cap: String = cap.chars().filter(|c| c.is_ascii_digit()).collect();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let nvcc = nvcc();
    println!("cargo:rerun-if-changed=src/kernels/common.cuh");
    for name in KERNELS {
        let src = PathBuf::from("src/kernels").join(format!("{name}.cu"));
        println!("cargo:rerun-if-changed={}", src.display());
        let ptx = out_dir.join(format!("{name}.ptx"));
        let status = Command::new(&nvcc)
            .args(["--ptx", "-O3", "-std=c++17"])
            .arg(format!("-arch=compute_{cap}"))
            .arg("-o")
            .arg(&ptx)
            .arg(&src)
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "feature `cuda`: cannot run nvcc ({}): {e}; install a CUDA toolkit or set NVCC",
                    nvcc.display()
                )
            });
        assert!(
            status.success(),
            "feature `cuda`: nvcc failed on {} ({status})",
            src.display()
        );
    }
}
