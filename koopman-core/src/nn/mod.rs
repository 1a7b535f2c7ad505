//! Neural networks of the papers' experiments, kept apart from the numerics: multi-layer
//! perceptrons with PyTorch-named safetensors I/O ([`mlp`]), paper 001's small convolutional
//! classifier ([`cnn`]), their seeded initialisation ([`init`]),
//! named-tensor files ([`tensors`]) and seeded mini-batch training with AdamW ([`train`]).
//!
//! The Koopman methods of the other crates take any candle `Module`; these are the models the
//! layer-replacement (paper 002) and training-analysis (paper 001) experiments train and replace.

pub mod cnn;
pub mod init;
pub mod mlp;
pub mod tensors;
pub mod train;

pub use cnn::{Cnn, CnnConfig};
pub use init::{init_scheme, init_seeded, Init};
pub use mlp::{Activation, Mlp};
pub use tensors::{load_tensors, save_tensors_atomic};
pub use train::{
    accuracy, optimizer_step, predict_classes, shuffled_batches, train_classifier, train_minibatch,
    MinibatchConfig, MinibatchReport,
};
