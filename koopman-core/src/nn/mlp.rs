//! Multi-layer perceptrons (Linear + activation stacks) with PyTorch-compatible safetensors I/O.
//!
//! An [`Mlp`] of `L` Linear layers applies the activation after every layer but the last (the
//! last layer returns logits). Tensors are named as PyTorch's `nn.Sequential` names them: the
//! Linear layers sit at the even indices `0, 2, 4, ...` (`0.weight` of shape `(out, in)`,
//! `0.bias` of shape `(out,)`) and the activations, which have no parameters, at the odd ones. A
//! `state_dict` saved from `nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))` with
//! `safetensors.torch.save_file` therefore loads with [`Mlp::load`], and [`Mlp::save`] writes a
//! file PyTorch loads back (atomically: temporary file, `fsync`, rename).
//!
//! Training ([`train_classifier`](super::train_classifier), and the general
//! [`train_minibatch`](super::train_minibatch)) uses candle-nn's AdamW over seeded shuffled
//! mini-batches (rand `StdRng`); [`accuracy`](super::accuracy) and
//! [`predict_classes`](super::predict_classes) evaluate a classifier.
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use candle_nn::{VarBuilder, VarMap};
//! use koopman_core::nn::{accuracy, train_classifier, Activation, Mlp, MinibatchConfig};
//!
//! # fn main() -> koopman_core::Result<()> {
//! let dev = Device::Cpu;
//! // Two separable clusters.
//! let x: Vec<f32> = (0..64).flat_map(|i| {
//!     let c = if i % 2 == 0 { 1.0 } else { -1.0 };
//!     [c + 0.01 * i as f32, c]
//! }).collect();
//! let y: Vec<u32> = (0..64).map(|i| (i % 2) as u32).collect();
//! let x = Tensor::from_vec(x, (64, 2), &dev)?;
//! let y = Tensor::from_vec(y, 64, &dev)?;
//! let varmap = VarMap::new();
//! let mlp = Mlp::new(&[2, 8, 2], Activation::Relu, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
//! koopman_core::nn::init_seeded(&varmap, 0)?; // reproducible initialisation
//! let config = MinibatchConfig { epochs: 30, batch_size: 16, lr: 1e-2, ..Default::default() };
//! train_classifier(&mlp, varmap.all_vars(), &x, &y, &config)?;
//! assert!(accuracy(&mlp, &x, &y)? > 0.95);
//!
//! // Round trip through a PyTorch-named safetensors file.
//! let path = std::env::temp_dir().join(format!("koopman-mlp-doc-{}.safetensors", std::process::id()));
//! mlp.save(&path)?;
//! let back = Mlp::load(&path, Activation::Relu, DType::F32, &dev)?;
//! assert_eq!(back.sizes(), &[2, 8, 2]);
//! assert_eq!(accuracy(&back, &x, &y)?, accuracy(&mlp, &x, &y)?);
//! # std::fs::remove_file(&path).ok();
//! # Ok(()) }
//! ```

use super::tensors::{load_tensors, save_tensors_atomic};
use crate::error::{CoreError, Result};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The activation between Linear layers (PyTorch `nn.ReLU`, `nn.Sigmoid`, `nn.Tanh`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
}

impl Activation {
    /// Applies the activation elementwise.
    pub fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Relu => x.relu(),
            Activation::Sigmoid => candle_nn::ops::sigmoid(x),
            Activation::Tanh => x.tanh(),
        }
    }

    /// The lower-case name (`relu`, `sigmoid`, `tanh`).
    pub fn name(&self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
        }
    }

    /// Parses a name as written by [`name`](Self::name) (case-insensitive).
    pub fn from_name(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "relu" => Ok(Activation::Relu),
            "sigmoid" => Ok(Activation::Sigmoid),
            "tanh" => Ok(Activation::Tanh),
            other => Err(CoreError::InvalidArgument(format!(
                "unknown activation '{other}' (expected relu, sigmoid or tanh)"
            ))),
        }
    }
}

/// A stack of Linear layers with an activation after every layer but the last.
#[derive(Clone, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    sizes: Vec<usize>,
    activation: Activation,
}

fn check_sizes(sizes: &[usize]) -> Result<()> {
    if sizes.len() < 2 {
        return Err(CoreError::InvalidArgument(format!(
            "an MLP needs at least an input and an output size, got {sizes:?}"
        )));
    }
    if sizes.contains(&0) {
        return Err(CoreError::InvalidArgument(format!(
            "layer sizes must be >= 1, got {sizes:?}"
        )));
    }
    Ok(())
}

impl Mlp {
    /// A new MLP with layer widths `sizes` (input first, output last), parameters created by
    /// `vb` under the PyTorch names (`0.weight`, `0.bias`, `2.weight`, ...): weights Kaiming
    /// normal, biases uniform in `±1/sqrt(in)` as candle-nn's `linear`.
    pub fn new(sizes: &[usize], activation: Activation, vb: VarBuilder) -> Result<Self> {
        check_sizes(sizes)?;
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(i, w)| candle_nn::linear(w[0], w[1], vb.pp(2 * i)))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            sizes: sizes.to_vec(),
            activation,
        })
    }

    /// An MLP from existing Linear layers (consecutive widths must agree; every layer needs a
    /// bias).
    pub fn from_layers(layers: Vec<Linear>, activation: Activation) -> Result<Self> {
        if layers.is_empty() {
            return Err(CoreError::Empty("an MLP needs at least one layer".into()));
        }
        let mut tensors = HashMap::new();
        for (i, l) in layers.iter().enumerate() {
            tensors.insert(format!("{}.weight", 2 * i), l.weight().clone());
            let bias = l
                .bias()
                .ok_or_else(|| CoreError::InvalidArgument(format!("layer {i} has no bias")))?;
            tensors.insert(format!("{}.bias", 2 * i), bias.clone());
        }
        Self::from_tensors(&tensors, activation, "layers")
    }

    /// An MLP from named tensors with PyTorch `nn.Sequential` names; `source` names the origin in
    /// error messages. Fails with [`CoreError::Format`] on a missing weight or bias, a tensor of
    /// the wrong rank or shape, Linear layers at odd indices or with gaps, widths that do not
    /// chain, or an unexpected tensor name.
    pub fn from_tensors(
        tensors: &HashMap<String, Tensor>,
        activation: Activation,
        source: &str,
    ) -> Result<Self> {
        let mut by_index: BTreeMap<usize, (Option<&Tensor>, Option<&Tensor>)> = BTreeMap::new();
        for (name, t) in tensors {
            let parsed = name.split_once('.').and_then(|(idx, kind)| {
                idx.parse::<usize>()
                    .ok()
                    .filter(|_| kind == "weight" || kind == "bias")
                    .map(|i| (i, kind))
            });
            let Some((i, kind)) = parsed else {
                return Err(CoreError::Format(format!(
                    "{source}: unexpected tensor '{name}' (expected '<index>.weight' / '<index>.bias')"
                )));
            };
            let entry = by_index.entry(i).or_insert((None, None));
            if kind == "weight" {
                entry.0 = Some(t);
            } else {
                entry.1 = Some(t);
            }
        }
        if by_index.is_empty() {
            return Err(CoreError::Format(format!("{source}: no tensors")));
        }
        let mut layers = Vec::new();
        let mut sizes = Vec::new();
        for (k, (&i, &(w, b))) in by_index.iter().enumerate() {
            if i != 2 * k {
                return Err(CoreError::Format(format!(
                    "{source}: expected Linear layer {k} at index {} ('{}.weight'), found index {i}; \
                     Linear layers sit at even indices with activations in between",
                    2 * k,
                    2 * k
                )));
            }
            let w = w.ok_or_else(|| {
                CoreError::Format(format!("{source}: missing tensor '{i}.weight'"))
            })?;
            let b =
                b.ok_or_else(|| CoreError::Format(format!("{source}: missing tensor '{i}.bias'")))?;
            let (out_dim, in_dim) = w.dims2().map_err(|_| {
                CoreError::Format(format!(
                    "{source}: '{i}.weight' has shape {:?}, expected (out, in)",
                    w.dims()
                ))
            })?;
            if b.dims() != [out_dim] {
                return Err(CoreError::Format(format!(
                    "{source}: '{i}.bias' has shape {:?}, expected [{out_dim}] to match '{i}.weight' {:?}",
                    b.dims(),
                    w.dims()
                )));
            }
            if out_dim == 0 || in_dim == 0 {
                return Err(CoreError::Format(format!(
                    "{source}: '{i}.weight' is empty ({:?})",
                    w.dims()
                )));
            }
            if let Some(&prev) = sizes.last() {
                if prev != in_dim {
                    return Err(CoreError::Format(format!(
                        "{source}: '{i}.weight' takes {in_dim} inputs but the previous layer has {prev} outputs"
                    )));
                }
            } else {
                sizes.push(in_dim);
            }
            sizes.push(out_dim);
            if w.dtype() != b.dtype() {
                return Err(CoreError::Format(format!(
                    "{source}: '{i}.weight' is {:?} but '{i}.bias' is {:?}",
                    w.dtype(),
                    b.dtype()
                )));
            }
            layers.push(Linear::new(w.clone(), Some(b.clone())));
        }
        Ok(Self {
            layers,
            sizes,
            activation,
        })
    }

    /// Loads a safetensors file with PyTorch `nn.Sequential` names, inferring the widths;
    /// tensors are converted to `dtype` on `device`.
    pub fn load(
        path: impl AsRef<Path>,
        activation: Activation,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let path = path.as_ref();
        let tensors = load_tensors(path, dtype, device)?;
        Self::from_tensors(&tensors, activation, &path.display().to_string())
    }

    /// [`load`](Self::load) and check that the widths are `sizes`.
    pub fn load_with_sizes(
        path: impl AsRef<Path>,
        sizes: &[usize],
        activation: Activation,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let mlp = Self::load(path.as_ref(), activation, dtype, device)?;
        if mlp.sizes != sizes {
            return Err(CoreError::Format(format!(
                "{}: layer widths {:?}, expected {sizes:?}",
                path.as_ref().display(),
                mlp.sizes
            )));
        }
        Ok(mlp)
    }

    /// The tensors under their PyTorch names.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        let mut map = HashMap::new();
        for (i, l) in self.layers.iter().enumerate() {
            map.insert(format!("{}.weight", 2 * i), l.weight().clone());
            if let Some(b) = l.bias() {
                map.insert(format!("{}.bias", 2 * i), b.clone());
            }
        }
        map
    }

    /// Saves the tensors as safetensors under PyTorch names, atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        save_tensors_atomic(&self.tensors(), path)
    }

    /// Layer widths, input first.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// Number of Linear layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Linear layer `i`.
    pub fn layer(&self, i: usize) -> Result<&Linear> {
        self.layers.get(i).ok_or_else(|| {
            CoreError::InvalidArgument(format!(
                "layer index {i} out of range: the MLP has {} Linear layers",
                self.layers.len()
            ))
        })
    }

    /// The Linear layers.
    pub fn layers(&self) -> &[Linear] {
        &self.layers
    }

    /// The activation.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// Whether layer `i` is followed by the activation (every layer but the last).
    pub fn has_activation(&self, i: usize) -> bool {
        i + 1 < self.layers.len()
    }

    /// Layer `i` with its activation (none after the last layer).
    pub fn forward_layer(&self, i: usize, x: &Tensor) -> Result<Tensor> {
        let y = self.layer(i)?.forward(x)?;
        Ok(if self.has_activation(i) {
            self.activation.apply(&y)?
        } else {
            y
        })
    }

    /// Layers `range.start .. range.end` (each with its activation) applied to `x`.
    pub fn forward_range(&self, x: &Tensor, range: std::ops::Range<usize>) -> Result<Tensor> {
        if range.end > self.layers.len() || range.start > range.end {
            return Err(CoreError::InvalidArgument(format!(
                "layer range {range:?} outside 0..{}",
                self.layers.len()
            )));
        }
        let mut h = x.clone();
        for i in range {
            h = self.forward_layer(i, &h)?;
        }
        Ok(h)
    }
}

impl Module for Mlp {
    /// The network on a batch `(samples, in)`; inputs of another width are refused naming both
    /// widths (not candle's bare matmul shape error).
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let width = x.dims().last().copied();
        if width != Some(self.sizes[0]) {
            return Err(candle_core::Error::Msg(format!(
                "the MLP {:?} takes inputs of width {}, got a tensor of shape {:?}",
                self.sizes,
                self.sizes[0],
                x.dims()
            )));
        }
        let mut h = x.clone();
        for (i, l) in self.layers.iter().enumerate() {
            h = l.forward(&h)?;
            if self.has_activation(i) {
                h = self.activation.apply(&h)?;
            }
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::train::{train_classifier, MinibatchConfig};

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("koopman-mlp-{}-{name}", std::process::id()))
    }

    #[test]
    fn pytorch_named_file_loads() -> Result<()> {
        let dev = Device::Cpu;
        let mut t = HashMap::new();
        t.insert(
            "0.weight".to_string(),
            Tensor::from_vec(vec![1f32, 0., 0., 1., 1., 1.], (3, 2), &dev)?,
        );
        t.insert(
            "0.bias".to_string(),
            Tensor::from_vec(vec![0f32, 0., -1.], 3, &dev)?,
        );
        t.insert(
            "2.weight".to_string(),
            Tensor::from_vec(vec![1f32, -1., 0.5], (1, 3), &dev)?,
        );
        t.insert(
            "2.bias".to_string(),
            Tensor::from_vec(vec![0.25f32], 1, &dev)?,
        );
        let path = tmp("torch.safetensors");
        candle_core::safetensors::save(&t, &path)?;
        let mlp = Mlp::load(&path, Activation::Relu, DType::F32, &dev)?;
        assert_eq!(mlp.sizes(), &[2, 3, 1]);
        let x = Tensor::from_vec(vec![2f32, 1.], (1, 2), &dev)?;
        // hidden = relu([2, 1, 2]) -> out = 2 - 1 + 1 + 0.25
        let y = mlp.forward(&x)?.flatten_all()?.to_vec1::<f32>()?;
        assert!((y[0] - 2.25).abs() < 1e-6);
        std::fs::remove_file(&path).ok();
        Ok(())
    }

    #[test]
    fn missing_and_misshapen_tensors_are_errors() -> Result<()> {
        let dev = Device::Cpu;
        let w0 = Tensor::zeros((3, 2), DType::F32, &dev)?;
        let b0 = Tensor::zeros(3, DType::F32, &dev)?;
        let w2 = Tensor::zeros((1, 3), DType::F32, &dev)?;
        let b2 = Tensor::zeros(1, DType::F32, &dev)?;
        let cases: Vec<(Vec<(&str, &Tensor)>, &str)> = vec![
            (
                vec![("0.weight", &w0), ("2.weight", &w2), ("2.bias", &b2)],
                "missing tensor '0.bias'",
            ),
            (
                vec![
                    ("0.weight", &w0),
                    ("0.bias", &b2),
                    ("2.weight", &w2),
                    ("2.bias", &b2),
                ],
                "'0.bias' has shape",
            ),
            (
                vec![
                    ("0.weight", &w0),
                    ("0.bias", &b0),
                    ("2.weight", &w0),
                    ("2.bias", &b0),
                ],
                "takes 2 inputs",
            ),
            (
                vec![
                    ("0.weight", &w0),
                    ("0.bias", &b0),
                    ("3.weight", &w2),
                    ("3.bias", &b2),
                ],
                "found index 3",
            ),
            (
                vec![("0.weight", &b0), ("0.bias", &b0)],
                "expected (out, in)",
            ),
            (
                vec![("0.weight", &w0), ("0.bias", &b0), ("head", &b0)],
                "unexpected tensor",
            ),
        ];
        for (k, (tensors, needle)) in cases.into_iter().enumerate() {
            let map: HashMap<String, Tensor> = tensors
                .into_iter()
                .map(|(n, t)| (n.to_string(), t.clone()))
                .collect();
            let path = tmp(&format!("bad{k}.safetensors"));
            candle_core::safetensors::save(&map, &path)?;
            let err = Mlp::load(&path, Activation::Relu, DType::F32, &dev).unwrap_err();
            assert!(
                matches!(err, CoreError::Format(_)) && err.to_string().contains(needle),
                "case {k}: {err}"
            );
            std::fs::remove_file(&path).ok();
        }
        let mlp = {
            let vm = candle_nn::VarMap::new();
            Mlp::new(
                &[2, 3],
                Activation::Relu,
                VarBuilder::from_varmap(&vm, DType::F32, &dev),
            )?
        };
        let err = mlp
            .forward(&Tensor::zeros((5, 784), DType::F32, &dev)?)
            .unwrap_err();
        assert!(err.to_string().contains("takes inputs of width 2"), "{err}");
        for bad in [f32::NAN, f32::INFINITY] {
            let mut w = vec![0.5f32; 6];
            w[4] = bad;
            let map: HashMap<String, Tensor> = [
                ("0.weight".to_string(), Tensor::from_vec(w, (3, 2), &dev)?),
                ("0.bias".to_string(), b0.clone()),
            ]
            .into_iter()
            .collect();
            let path = tmp("nonfinite.safetensors");
            candle_core::safetensors::save(&map, &path)?;
            let err = Mlp::load(&path, Activation::Relu, DType::F32, &dev).unwrap_err();
            assert!(
                matches!(err, CoreError::NonFinite(_)) && err.to_string().contains("'0.weight'"),
                "{bad}: {err}"
            );
            std::fs::remove_file(&path).ok();
        }
        let path = tmp("garbage.safetensors");
        std::fs::write(&path, b"not a safetensors file").unwrap();
        assert!(matches!(
            Mlp::load(&path, Activation::Relu, DType::F32, &dev),
            Err(CoreError::Format(_))
        ));
        std::fs::remove_file(&path).ok();
        Ok(())
    }

    #[test]
    fn training_is_seeded() -> Result<()> {
        let dev = Device::Cpu;
        let run = || -> Result<Vec<f64>> {
            let x = Tensor::from_vec((0..40).map(|i| i as f32 / 40.0).collect(), (20, 2), &dev)?;
            let y = Tensor::from_vec((0..20).map(|i| (i % 2) as u32).collect(), 20, &dev)?;
            let vm = candle_nn::VarMap::new();
            let vb = VarBuilder::from_varmap(&vm, DType::F32, &dev);
            let mlp = Mlp::new(&[2, 4, 2], Activation::Tanh, vb)?;
            // Same init: overwrite with constants.
            for (name, var) in vm.data().lock().unwrap().iter() {
                let v = if name.ends_with("weight") { 0.1 } else { 0.0 };
                var.set(&var.as_tensor().ones_like()?.affine(v, 0.0)?)?;
            }
            let cfg = MinibatchConfig {
                epochs: 3,
                batch_size: 3,
                seed: 7,
                ..Default::default()
            };
            Ok(train_classifier(&mlp, vm.all_vars(), &x, &y, &cfg)?.epoch_losses)
        };
        assert_eq!(run()?, run()?);
        Ok(())
    }
}
