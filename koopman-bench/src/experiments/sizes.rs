//! Typed run sizes: each experiment states its smoke, quick and full (paper) sizes by name in one
//! `const` table of its own sizes struct, and picks the run's row with [`BySize::at`].
//!
//! ```
//! use koopman_bench::experiments::BySize;
//! use koopman_bench::Size;
//!
//! #[derive(Clone, Copy, Debug, PartialEq)]
//! struct Sizes {
//!     seeds: usize,
//!     epochs: usize,
//! }
//! const SIZES: BySize<Sizes> = BySize {
//!     smoke: Sizes { seeds: 1, epochs: 2 },
//!     quick: Sizes { seeds: 3, epochs: 20 },
//!     full: Sizes { seeds: 25, epochs: 1000 },
//! };
//! assert_eq!(SIZES.at(Size::Quick).epochs, 20);
//! ```

use crate::Size;

/// One value per run size, named.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BySize<T> {
    /// The CI run check: the whole pipeline at tiny sizes.
    pub smoke: T,
    /// The default `reproduce` run: minutes on two cores.
    pub quick: T,
    /// The paper's sizes (`--full`).
    pub full: T,
}

impl<T> BySize<T> {
    /// The value for `size`.
    pub fn at(&self, size: Size) -> &T {
        match size {
            Size::Smoke => &self.smoke,
            Size::Quick => &self.quick,
            Size::Full => &self.full,
        }
    }
}
