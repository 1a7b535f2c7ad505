//! The data sets of the papers' experiments: the MNIST IDX loader with the bundled subset
//! ([`mnist`]) and the seeded Yin-Yang generator ([`yinyang`]).

pub mod mnist;
pub mod yinyang;
