//! The small convolutional classifier of paper 001 (its Section 3 and Figure 1): two
//! convolutional layers of 16 and 32 kernels of `5 x 5`, each followed by `2 x 2` max-pooling,
//! then a fully-connected layer of 100 units and one of 10, with a softmax (cross-entropy) on top.
//!
//! The paper does not name the activation; [`Cnn`] uses ReLU after both convolutions and the
//! first fully-connected layer (the usual choice for this architecture). Tensors are named as
//! PyTorch's `nn.Sequential(Conv2d, ReLU, MaxPool2d, Conv2d, ReLU, MaxPool2d, Flatten, Linear,
//! ReLU, Linear)` names them: `0.weight` `(16, 1, 5, 5)`, `3.weight` `(32, 16, 5, 5)`,
//! `7.weight` `(100, 512)`, `9.weight` `(10, 100)`, each with its bias. Inputs are images
//! `(n, channels, side, side)` or their flattened rows `(n, channels * side * side)`.
//!
//! ```
//! use candle_core::{DType, Device, Module, Tensor};
//! use candle_nn::{VarBuilder, VarMap};
//! use koopman_core::nn::{Cnn, CnnConfig};
//!
//! # fn main() -> koopman_core::Result<()> {
//! let varmap = VarMap::new();
//! let cnn = Cnn::new(&CnnConfig::default(), VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
//! koopman_core::nn::init_seeded(&varmap, 0)?;
//! let x = Tensor::zeros((3, 784), DType::F32, &Device::Cpu)?; // three flattened digits
//! assert_eq!(cnn.forward(&x)?.dims(), &[3, 10]);
//! assert_eq!(varmap.data().lock().unwrap()["7.weight"].dims(), &[100, 512]);
//! # Ok(()) }
//! ```

use crate::{CoreError, Result};
use candle_core::{Module, Tensor};
use candle_nn::{Conv2d, Linear, VarBuilder};

/// Shape of a [`Cnn`] (default: the paper's MNIST network).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CnnConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Side of the square input images.
    pub side: usize,
    /// Kernels of the two convolutional layers.
    pub channels: [usize; 2],
    /// Side of the square kernels.
    pub kernel: usize,
    /// Units of the hidden fully-connected layer.
    pub hidden: usize,
    /// Classes (units of the output layer).
    pub classes: usize,
}

impl Default for CnnConfig {
    fn default() -> Self {
        Self {
            in_channels: 1,
            side: 28,
            channels: [16, 32],
            kernel: 5,
            hidden: 100,
            classes: 10,
        }
    }
}

impl CnnConfig {
    /// Side of the feature maps after both convolution + pooling stages, or an error when the
    /// images are too small for them.
    pub fn final_side(&self) -> Result<usize> {
        let stage = |s: usize| -> Option<usize> {
            let c = s.checked_sub(self.kernel)? + 1;
            (c >= 2).then_some(c / 2)
        };
        let sizes = [
            self.in_channels,
            self.side,
            self.channels[0],
            self.channels[1],
            self.kernel,
            self.hidden,
            self.classes,
        ];
        if sizes.contains(&0) {
            return Err(CoreError::InvalidArgument(format!(
                "every size of a CNN must be >= 1, got {self:?}"
            )));
        }
        stage(self.side)
            .and_then(stage)
            .filter(|&s| s >= 1)
            .ok_or_else(|| {
                CoreError::InvalidArgument(format!(
                    "images of side {} are too small for two {k} x {k} convolutions with 2 x 2 pooling",
                    self.side,
                    k = self.kernel
                ))
            })
    }
}

/// The convolutional classifier; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Cnn {
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
    config: CnnConfig,
}

impl Cnn {
    /// Builds the layers on `vb` (PyTorch names, see the [module docs](self)).
    pub fn new(config: &CnnConfig, vb: VarBuilder) -> Result<Self> {
        let last = config.final_side()?;
        let conv = Default::default();
        let [c1, c2] = config.channels;
        Ok(Self {
            conv1: candle_nn::conv2d(config.in_channels, c1, config.kernel, conv, vb.pp("0"))?,
            conv2: candle_nn::conv2d(c1, c2, config.kernel, conv, vb.pp("3"))?,
            fc1: candle_nn::linear(c2 * last * last, config.hidden, vb.pp("7"))?,
            fc2: candle_nn::linear(config.hidden, config.classes, vb.pp("9"))?,
            config: config.clone(),
        })
    }

    /// The shape this network was built with.
    pub fn config(&self) -> &CnnConfig {
        &self.config
    }
}

impl Module for Cnn {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let n = x.dim(0)?;
        let x = x.reshape((n, c.in_channels, c.side, c.side))?;
        let x = max_pool_2x2(&self.conv1.forward(&x)?.relu()?)?;
        let x = max_pool_2x2(&self.conv2.forward(&x)?.relu()?)?;
        let x = self.fc1.forward(&x.flatten_from(1)?)?.relu()?;
        self.fc2.forward(&x)
    }
}

/// `2 x 2` max-pooling with stride 2 of `(n, c, h, w)` (an odd last row or column is dropped,
/// as PyTorch's `MaxPool2d(2)` does), as two max-reductions over a reshaped view. Not candle's
/// `max_pool2d`: its backward pass (candle-core 0.11.1) multiplies the gradient by the share of
/// maxima in each window instead of dividing by their number, a quarter of the true gradient for
/// a unique maximum (found by this module's finite-difference test). The reductions' backward
/// passes route the gradient to the maximum.
fn max_pool_2x2(x: &Tensor) -> candle_core::Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (h2, w2) = (h / 2, w / 2);
    x.narrow(2, 0, 2 * h2)?
        .narrow(3, 0, 2 * w2)?
        .contiguous()?
        .reshape((n, c, h2, 2, w2, 2))?
        .max(5)?
        .max(3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    /// The forward pass written out with loops over indices (a CPU reference for the candle
    /// kernels): valid cross-correlation, ReLU, 2 x 2 max-pooling, then the dense layers.
    fn reference(vm: &VarMap, config: &CnnConfig, image: &[f32]) -> Vec<f32> {
        let data = vm.data().lock().unwrap();
        let get = |n: &str| -> Vec<f32> {
            data[n]
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let conv_pool =
            |input: &[f32], cin: usize, side: usize, w: &[f32], b: &[f32], cout: usize| {
                let k = config.kernel;
                let cs = side - k + 1;
                let mut conv = vec![0f32; cout * cs * cs];
                for o in 0..cout {
                    for i in 0..cs {
                        for j in 0..cs {
                            let mut s = b[o];
                            for c in 0..cin {
                                for di in 0..k {
                                    for dj in 0..k {
                                        s += w[((o * cin + c) * k + di) * k + dj]
                                            * input[(c * side + i + di) * side + j + dj];
                                    }
                                }
                            }
                            conv[(o * cs + i) * cs + j] = s.max(0.0);
                        }
                    }
                }
                let ps = cs / 2;
                let mut pooled = vec![0f32; cout * ps * ps];
                for o in 0..cout {
                    for i in 0..ps {
                        for j in 0..ps {
                            let at =
                                |a: usize, b: usize| conv[(o * cs + 2 * i + a) * cs + 2 * j + b];
                            pooled[(o * ps + i) * ps + j] =
                                at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
                        }
                    }
                }
                (pooled, ps)
            };
        let dense = |input: &[f32], w: &[f32], b: &[f32], relu: bool| -> Vec<f32> {
            b.iter()
                .enumerate()
                .map(|(o, bo)| {
                    let s = bo
                        + input
                            .iter()
                            .enumerate()
                            .map(|(i, v)| w[o * input.len() + i] * v)
                            .sum::<f32>();
                    if relu {
                        s.max(0.0)
                    } else {
                        s
                    }
                })
                .collect()
        };
        let [c1, c2] = config.channels;
        let (h, s) = conv_pool(
            image,
            config.in_channels,
            config.side,
            &get("0.weight"),
            &get("0.bias"),
            c1,
        );
        let (h, _) = conv_pool(&h, c1, s, &get("3.weight"), &get("3.bias"), c2);
        let h = dense(&h, &get("7.weight"), &get("7.bias"), true);
        dense(&h, &get("9.weight"), &get("9.bias"), false)
    }

    #[test]
    fn forward_matches_the_index_reference() -> Result<()> {
        let dev = Device::Cpu;
        let config = CnnConfig {
            side: 14,
            channels: [3, 4],
            kernel: 3,
            hidden: 7,
            classes: 5,
            in_channels: 2,
        };
        let vm = VarMap::new();
        let cnn = Cnn::new(&config, VarBuilder::from_varmap(&vm, DType::F32, &dev))?;
        crate::nn::init_seeded(&vm, 3)?;
        let n = 2;
        let len = config.in_channels * config.side * config.side;
        let x: Vec<f32> = (0..n * len)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let out = cnn.forward(&Tensor::from_vec(x.clone(), (n, len), &dev)?)?;
        assert_eq!(out.dims(), &[n, config.classes]);
        let out: Vec<Vec<f32>> = out.to_vec2()?;
        for (s, row) in out.iter().enumerate() {
            let want = reference(&vm, &config, &x[s * len..(s + 1) * len]);
            for (a, b) in row.iter().zip(&want) {
                // f32 sums of a few hundred terms of size ~1.
                assert!(
                    (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "{row:?} vs {want:?}"
                );
            }
        }
        // The same images as (n, c, h, w).
        let img = Tensor::from_vec(x, (n, config.in_channels, config.side, config.side), &dev)?;
        let again: Vec<Vec<f32>> = cnn.forward(&img)?.to_vec2()?;
        assert_eq!(again, out);
        Ok(())
    }

    #[test]
    fn shapes_and_bad_configs() -> Result<()> {
        assert_eq!(CnnConfig::default().final_side()?, 4); // 28 -> 24 -> 12 -> 8 -> 4
        for bad in [
            CnnConfig {
                side: 8,
                ..Default::default()
            },
            CnnConfig {
                kernel: 0,
                ..Default::default()
            },
            CnnConfig {
                channels: [16, 0],
                ..Default::default()
            },
        ] {
            assert!(bad.final_side().is_err(), "{bad:?}");
            let vm = VarMap::new();
            assert!(
                Cnn::new(&bad, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)).is_err()
            );
        }
        // He initialisation with a convolution's fan-in (16 x 5 x 5 for the second layer).
        let vm = VarMap::new();
        let _cnn = Cnn::new(
            &CnnConfig::default(),
            VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu),
        )?;
        crate::nn::init_seeded(&vm, 2)?;
        let w: Vec<f64> = vm.data().lock().unwrap()["3.weight"]
            .as_tensor()
            .flatten_all()?
            .to_vec1()?;
        let var = w.iter().map(|v| v * v).sum::<f64>() / w.len() as f64;
        // 12,800 draws: the sample variance is within 5% of 2/400 with overwhelming probability.
        assert!((var / (2.0 / 400.0) - 1.0).abs() < 0.05, "{var}");
        // Gradients reach every layer (a finite-difference check of one conv weight).
        let dev = Device::Cpu;
        let config = CnnConfig {
            side: 12,
            channels: [2, 3],
            kernel: 3,
            hidden: 4,
            classes: 3,
            in_channels: 1,
        };
        let vm = VarMap::new();
        let cnn = Cnn::new(&config, VarBuilder::from_varmap(&vm, DType::F64, &dev))?;
        crate::nn::init_seeded(&vm, 1)?;
        let x = Tensor::rand(0f64, 1f64, (4, 144), &dev)?;
        let y = Tensor::new(&[0u32, 1, 2, 1], &dev)?;
        let loss = |m: &Cnn| -> candle_core::Result<Tensor> {
            candle_nn::loss::cross_entropy(&m.forward(&x)?, &y)
        };
        let grads = loss(&cnn)?.backward()?;
        let w = vm.data().lock().unwrap()["0.weight"].clone();
        let g: Vec<f64> = grads.get(w.as_tensor()).unwrap().flatten_all()?.to_vec1()?;
        let base: Vec<f64> = w.as_tensor().flatten_all()?.to_vec1()?;
        let h = 1e-6;
        for idx in [0, 5, 11] {
            let mut plus = base.clone();
            plus[idx] += h;
            w.set(&Tensor::from_vec(plus, w.shape(), &dev)?)?;
            let lp = loss(&cnn)?.to_scalar::<f64>()?;
            let mut minus = base.clone();
            minus[idx] -= h;
            w.set(&Tensor::from_vec(minus, w.shape(), &dev)?)?;
            let lm = loss(&cnn)?.to_scalar::<f64>()?;
            let fd = (lp - lm) / (2.0 * h);
            assert!(
                (fd - g[idx]).abs() <= 1e-6 * (1.0 + fd.abs()),
                "{idx}: {fd} vs {}",
                g[idx]
            );
        }
        Ok(())
    }
}
