//! Replacing a trained MLP layer by a delay-embedded linear operator (paper 002, SPEC 3.2).
//!
//! The pipeline, for Linear layer `k` of an [`Mlp`](koopman_core::nn::Mlp) (any index, first and last included; the
//! "layer" is the Linear map with the activation that follows it, none after the last):
//!
//! 1. **Layer-scaling block** ([`ScaledLayer::train`]): `S` extra trainable `in -> in` Linear +
//!    ReLU layers are inserted before layer `k` (Kaiming normal weights, bias 0.01) and trained,
//!    with the original network frozen, so that layer `k` applied after them reproduces layer `k`
//!    applied to the original input (Huber loss, `delta = 1`, AdamW lr 1e-3, weight decay 1e-3).
//! 2. **Trajectories** ([`ScaledLayer::trajectories`]): per sample, the states `x_in, s_1, ...,
//!    s_S, y` (layer `k`'s input, each scaled layer's output, layer `k`'s output on the scaled
//!    path), each padded with a constant (paper: -1) to the common width `max(in, out)`: `S + 2`
//!    states of fixed width.
//! 3. **Hankel DMD** ([`fit_hybrid`]): windows of `h` consecutive states of each trajectory (never
//!    straddling two) are the delay-embedded states; exact DMD of rank `r` on the window pairs
//!    gives `A ≈ B U_r^T` with `A_r = U_r^T B` (`r x r`).
//! 4. **Hybrid model** ([`HybridModel`]): the layers before `k`, then the first `h - 1` scaled
//!    layers give the first window `w_0`; the readout maps it to layer `k`'s output, the padding is
//!    dropped, and the layers after `k` continue. Layer `k` itself is never executed (it is not even
//!    stored in the hybrid). Two readouts ([`ReadoutKind`]):
//!    - [`ReadoutKind::Iterated`] (the paper's): step the reduced linear model `steps = S + 2 - h`
//!      times, `w_steps = B A_r^(steps-1) U_r^T w_0`, and read the last state of the last window;
//!    - [`ReadoutKind::Direct`]: least squares from the same window `w_0` plus a constant straight
//!      to layer `k`'s original output (one linear map, no compounding of step errors).
//!
//! Hybrids save to safetensors plus a small JSON file and load back with identical predictions.
//!
//! ```
//! use candle_core::{DType, Device};
//! use candle_nn::{VarBuilder, VarMap};
//! use koopman_core::nn::{accuracy, train_classifier, Activation, Mlp, MinibatchConfig};
//! use koopman_core::data::yinyang::{yinyang, YinYangConfig};
//! use koopman_layers::replace::{fit_hybrid, HybridConfig, ReadoutKind, ScaledLayer, ScalingConfig};
//!
//! # fn main() -> koopman_layers::Result<()> {
//! let dev = Device::Cpu;
//! let (x, y) = yinyang(400, 1, &YinYangConfig::default())?.to_tensors(DType::F32, &dev)?;
//! let vm = VarMap::new();
//! let mlp = Mlp::new(&[4, 16, 8, 3], Activation::Relu, VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
//! train_classifier(&mlp, vm.all_vars(), &x, &y, &MinibatchConfig { epochs: 20, lr: 1e-2, ..Default::default() })?;
//! let scaled = ScaledLayer::train(&mlp, 2, &x, &ScalingConfig { layers: 3, epochs: 5, ..Default::default() })?;
//! let traj = scaled.trajectories(&x, -1.0)?;
//! let direct = fit_hybrid(&scaled, &traj, &HybridConfig { delays: 2, rank: 8, readout: ReadoutKind::Direct, ..Default::default() })?;
//! // The last layer is linear in the window (which holds its input): the direct readout reproduces it.
//! let (a, b) = (accuracy(&mlp, &x, &y)?, accuracy(&direct, &x, &y)?);
//! assert!((a - b).abs() < 0.02, "{a} vs {b}");
//! let iterated = fit_hybrid(&scaled, &traj, &HybridConfig { delays: 2, rank: 8, ..Default::default() })?;
//! assert_eq!(iterated.meta().steps, 3);
//! # Ok(()) }
//! ```

mod hankel;
mod hybrid;
mod scaling;

pub use hankel::{hankel_svd, HankelSvd};
pub use hybrid::{fit_hybrid, load_mlp, HybridConfig, HybridMeta, HybridModel, ReadoutKind};
pub use scaling::{ScaledLayer, ScalingConfig, ScalingInit, Trajectories, MAX_SCALED_LAYERS};
