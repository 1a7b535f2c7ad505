//! Checks of settings and arguments shared by every crate of the workspace, each failing with a
//! [`CoreError::OutOfRange`] that names the setting, the value and what it must be (the other
//! crates' errors wrap it).
//!
//! ```
//! use koopman_core::validate::{non_negative, positive};
//! use koopman_core::CoreError;
//!
//! assert!(positive("learning rate", 1e-3).is_ok());
//! assert!(non_negative("weight decay", 0.0).is_ok());
//! let err = positive("learning rate", f64::NAN).unwrap_err();
//! assert!(matches!(err, CoreError::OutOfRange { ref name, .. } if name == "learning rate"));
//! assert_eq!(err.to_string(), "learning rate must be finite and > 0, got NaN");
//! ```

use crate::error::{CoreError, Result};

fn out_of_range(name: &str, value: f64, requirement: &'static str) -> CoreError {
    CoreError::OutOfRange {
        name: name.to_string(),
        value,
        requirement,
    }
}

/// `value` is finite and `> 0`.
pub fn positive(name: &str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(out_of_range(name, value, "finite and > 0"))
    }
}

/// `value` is finite and `>= 0`.
pub fn non_negative(name: &str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(out_of_range(name, value, "finite and >= 0"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_of_each_bound() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(positive("x", bad).is_err(), "{bad}");
        }
        for bad in [-1e-300, f64::NAN, f64::NEG_INFINITY, f64::INFINITY] {
            assert!(non_negative("x", bad).is_err(), "{bad}");
        }
        assert!(positive("x", f64::MIN_POSITIVE).is_ok());
        assert!(non_negative("x", 0.0).is_ok());
    }
}
