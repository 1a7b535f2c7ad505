//! Workspace-level integration tests (package `koopman-tests`): cross-crate scenarios live in
//! `tests/tests/`. This library holds nothing but shared helpers for them.

/// Relative Frobenius distance between two complex tensors.
pub fn relative_distance(
    a: &koopman_core::ComplexTensor,
    b: &koopman_core::ComplexTensor,
) -> koopman_core::Result<f64> {
    Ok(a.sub(b)?.norm_f64()? / b.norm_f64()?.max(f64::MIN_POSITIVE))
}
