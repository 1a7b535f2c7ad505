//! Links the system BLAS/LAPACKE libraries when the `expm` reference feature is enabled.
//! The `expm` crate calls CBLAS and LAPACKE through `-sys` crates that name no library.
fn main() {
    println!("cargo:rerun-if-env-changed=CARGO_FEATURE_EXPM");
    if std::env::var_os("CARGO_FEATURE_EXPM").is_some() {
        println!("cargo:rustc-link-lib=lapacke");
        println!("cargo:rustc-link-lib=openblas");
    }
}
