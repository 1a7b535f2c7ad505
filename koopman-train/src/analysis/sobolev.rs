//! Negative-Sobolev losses (paper 001, section 6) as candle losses, and the network with the
//! auxiliary per-layer outputs that loss 1 needs.
//!
//! Samples `x_j` of a domain of length `P` are mapped to the torus `R / Z` by `x / P`; the Fourier
//! coefficient of a sampled function is the quadrature `f^(k) = (1/n) sum_j f(x_j)
//! e^{-2 pi i k x_j / P}`, a matmul with precomputed cosine and sine matrices (exact for
//! trigonometric polynomials on a uniform grid, a Monte-Carlo estimate on scattered samples such
//! as a random training split). In one dimension the shell `||k||_1 = s` is `{-s, s}` (`{0}` for
//! `s = 0`); for real functions both members contribute `|h^(s) - f^(s)|^2`, so the shell counts
//! twice. Every term is weighted by `(1 + (2 pi |k|)^2)^{-p}` with `p = 1/2` in the paper
//! ([`SobolevConfig::exponent`]).
//!
//! - **Loss 1**: `sum_l L_l(h, f_l)`, `L_l = sum_m sum_{||k||_1 = s(l)} w(k) |h^(m)(k) -
//!   f_l^(m)(k)|^2`: the auxiliary output `f_l = C_l z_l` of hidden layer `l` is fitted at the
//!   scale `s(l)` only ([`SobolevLoss::loss1`], outputs from [`SobolevNet::forward_aux`]); the
//!   signal it reconstructs is the sum over layers of each layer's own scale
//!   ([`SobolevLoss::shell_synthesis`]).
//! - **Loss 2**: the same shells `s(0), ..., s(L-1)` all applied to the final output `f_{L-1}`
//!   ([`SobolevLoss::loss2`]).
//!
//! The scale function is `s(l) = l` ([`ScaleFunction::Linear`], the paper's choice) or
//! `s(l) = 2^l` ([`ScaleFunction::Exponential`]).
//!
//! ```
//! use candle_core::{DType, Device, Tensor};
//! use koopman_train::analysis::sobolev::{SobolevConfig, SobolevLoss};
//!
//! # fn main() -> koopman_train::Result<()> {
//! let dev = Device::Cpu;
//! // Uniform grid of 9 points on [0, 2), a target made of wavenumbers 0..=2.
//! let xs: Vec<f64> = (0..9).map(|j| 2.0 * j as f64 / 9.0).collect();
//! let h: Vec<f64> = xs.iter().map(|x| 1.0 + (std::f64::consts::PI * x).cos()).collect();
//! let x = Tensor::from_vec(xs, (9, 1), &dev)?;
//! let h = Tensor::from_vec(h, (9, 1), &dev)?;
//! let loss = SobolevLoss::new(&x, 3, &SobolevConfig { period: 2.0, ..Default::default() })?;
//! // The target matches itself at every shell.
//! let zero = loss.loss2(&h, &h)?.to_scalar::<f64>()?;
//! assert!(zero.abs() < 1e-15);
//! // A constant offset of 1 is seen only by the k = 0 shell, with weight 1.
//! let off = loss.loss2(&h, &(&h + 1.0)?)?.to_scalar::<f64>()?;
//! assert!((off - 1.0).abs() < 1e-12);
//! # Ok(()) }
//! ```

use crate::error::{Result, TrainError};
use candle_core::{DType, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use koopman_core::Activation;

/// The scale `s(l)` of layer `l`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ScaleFunction {
    /// `s(l) = l`.
    Linear,
    /// `s(l) = 2^l`.
    Exponential,
}

impl ScaleFunction {
    /// `s(l)`.
    pub fn scale(self, l: usize) -> usize {
        match self {
            ScaleFunction::Linear => l,
            ScaleFunction::Exponential => 1usize << l.min(usize::BITS as usize - 1),
        }
    }
}

/// Settings of [`SobolevLoss`].
#[derive(Clone, Debug, PartialEq)]
pub struct SobolevConfig {
    /// Length `P` of the domain mapped onto the torus (`x / P`).
    pub period: f64,
    /// The scale of each layer.
    pub scale: ScaleFunction,
    /// The weight exponent `p` in `(1 + (2 pi |k|)^2)^{-p}` (the paper: `1/2`, index `s = -1/2`).
    pub exponent: f64,
}

impl Default for SobolevConfig {
    fn default() -> Self {
        Self {
            period: 1.0,
            scale: ScaleFunction::Linear,
            exponent: 0.5,
        }
    }
}

impl SobolevConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        koopman_core::validate::positive("period", self.period)?;
        koopman_core::validate::non_negative("weight exponent", self.exponent)?;
        Ok(())
    }
}

/// The negative-Sobolev losses for fixed sample points and `L` layers; see the
/// [module documentation](self). The shells are stored stacked (`L x n` cosine and sine
/// quadrature rows and `L` weights), so each loss is a few batched matmuls.
#[derive(Clone, Debug)]
pub struct SobolevLoss {
    /// `cos(omega_l x_j) / n`, shape `(L, 1, n)`.
    cos: Tensor,
    /// `-sin(omega_l x_j) / n`, shape `(L, 1, n)`.
    sin: Tensor,
    /// `w(s(l))`, doubled for `s(l) > 0`, shape `(L, 1, 1)`.
    weights: Tensor,
    /// `omega_l = 2 pi s(l) / P`.
    omegas: Vec<f64>,
    samples: usize,
}

impl SobolevLoss {
    /// Precomputes the shells `s(0), ..., s(layers - 1)` for the sample points `x` (`(n,)` or
    /// `(n, 1)`, any float dtype; the matrices take `x`'s dtype and device).
    pub fn new(x: &Tensor, layers: usize, config: &SobolevConfig) -> Result<Self> {
        config.validate()?;
        if layers == 0 {
            return Err(TrainError::InvalidArgument(
                "a Sobolev loss needs at least one layer".into(),
            ));
        }
        let xs = sample_points(x)?;
        let n = xs.len();
        let (dtype, device) = (x.dtype(), x.device());
        let mut cos = Vec::with_capacity(layers * n);
        let mut sin = Vec::with_capacity(layers * n);
        let mut weights = Vec::with_capacity(layers);
        let mut omegas = Vec::with_capacity(layers);
        for l in 0..layers {
            let s = config.scale.scale(l);
            let k = s as f64;
            let omega = 2.0 * std::f64::consts::PI * k / config.period;
            cos.extend(xs.iter().map(|x| (omega * x).cos() / n as f64));
            sin.extend(xs.iter().map(|x| -(omega * x).sin() / n as f64));
            let multiplicity = if s == 0 { 1.0 } else { 2.0 };
            weights.push(
                multiplicity
                    * (1.0 + (2.0 * std::f64::consts::PI * k).powi(2)).powf(-config.exponent),
            );
            omegas.push(omega);
        }
        let t = |v: Vec<f64>, shape: (usize, usize, usize)| -> Result<Tensor> {
            Ok(Tensor::from_vec(v, shape, device)?.to_dtype(dtype)?)
        };
        Ok(Self {
            cos: t(cos, (layers, 1, n))?,
            sin: t(sin, (layers, 1, n))?,
            weights: t(weights, (layers, 1, 1))?,
            omegas,
            samples: n,
        })
    }

    /// Number of layers (shells).
    pub fn layers(&self) -> usize {
        self.omegas.len()
    }

    fn check(&self, t: &Tensor, what: &str) -> Result<Tensor> {
        let ok = (t.rank() == 2 && t.dims()[0] == self.samples)
            || (t.rank() == 1 && t.dims()[0] == self.samples);
        if !ok {
            return Err(TrainError::ShapeMismatch(format!(
                "{what} has shape {:?}; expected (n, M) or (n,) with n = {}",
                t.dims(),
                self.samples
            )));
        }
        Ok(if t.rank() == 1 {
            t.unsqueeze(1)?
        } else {
            t.clone()
        })
    }

    /// `sum_l w_l sum_m |DFT_{s(l)}(r_l^(m))|^2` for residuals stacked as `(L, n, M)`.
    fn energy(&self, residuals: &Tensor) -> Result<Tensor> {
        let re = self.cos.matmul(residuals)?;
        let im = self.sin.matmul(residuals)?;
        Ok((re.sqr()? + im.sqr()?)?
            .broadcast_mul(&self.weights)?
            .sum_all()?)
    }

    /// Loss 1: shell `s(l)` of `aux[l]` against the target, summed over the `L` layers.
    pub fn loss1(&self, h: &Tensor, aux: &[Tensor]) -> Result<Tensor> {
        if aux.len() != self.layers() {
            return Err(TrainError::ShapeMismatch(format!(
                "loss 1 needs one auxiliary output per layer: {} given, {} layers",
                aux.len(),
                self.layers()
            )));
        }
        let h = self.check(h, "target")?;
        let residuals = aux
            .iter()
            .enumerate()
            .map(|(l, f)| {
                let f = self.check(f, &format!("auxiliary output {l}"))?;
                if f.dims() != h.dims() {
                    return Err(TrainError::ShapeMismatch(format!(
                        "auxiliary output {l} {:?} vs target {:?}",
                        f.dims(),
                        h.dims()
                    )));
                }
                Ok((&h - &f)?)
            })
            .collect::<Result<Vec<_>>>()?;
        self.energy(&Tensor::stack(&residuals, 0)?)
    }

    /// Loss 2: every shell `s(0), ..., s(L-1)` applied to the final output.
    pub fn loss2(&self, h: &Tensor, output: &Tensor) -> Result<Tensor> {
        let h = self.check(h, "target")?;
        let f = self.check(output, "output")?;
        if f.dims() != h.dims() {
            return Err(TrainError::ShapeMismatch(format!(
                "output {:?} vs target {:?}",
                f.dims(),
                h.dims()
            )));
        }
        let r = (h - f)?.unsqueeze(0)?;
        let l = self.layers();
        let (n, m) = (self.samples, r.dims()[2]);
        self.energy(&r.broadcast_as((l, n, m))?.contiguous()?)
    }

    /// The scale-by-scale reconstruction behind loss 1: the shell-`s(l)` Fourier component of
    /// `aux[l]` (sampled at this loss's points), summed over the layers and evaluated at
    /// `x_eval` (`(p,)` or `(p, 1)`); returns `(p, M)`. For real functions shell `s > 0`
    /// contributes `2 (c cos(omega x) + s sin(omega x))` with `c`, `s` the cosine and sine
    /// quadratures, shell 0 the mean.
    pub fn shell_synthesis(&self, aux: &[Tensor], x_eval: &Tensor) -> Result<Tensor> {
        if aux.len() != self.layers() {
            return Err(TrainError::ShapeMismatch(format!(
                "{} auxiliary outputs for {} layers",
                aux.len(),
                self.layers()
            )));
        }
        let xs = sample_points(x_eval)?;
        let (dtype, device) = (self.cos.dtype(), self.cos.device());
        let mut total: Option<Tensor> = None;
        for (l, f) in aux.iter().enumerate() {
            let f = self.check(f, &format!("auxiliary output {l}"))?;
            // re = c, im = -s in the module's convention; the component is 2 (re cos + (-im) sin).
            let re = self.cos.get(l)?.matmul(&f)?;
            let im = self.sin.get(l)?.matmul(&f)?;
            let omega = self.omegas[l];
            let factor = if omega == 0.0 { 1.0 } else { 2.0 };
            let basis = |g: fn(f64) -> f64| -> Result<Tensor> {
                Ok(Tensor::from_vec(
                    xs.iter()
                        .map(|x| factor * g(omega * x))
                        .collect::<Vec<f64>>(),
                    (xs.len(), 1),
                    device,
                )?
                .to_dtype(dtype)?)
            };
            let part = (basis(f64::cos)?.matmul(&re)? - basis(f64::sin)?.matmul(&im)?)?;
            total = Some(match total {
                None => part,
                Some(t) => (t + part)?,
            });
        }
        total.ok_or_else(|| TrainError::InvalidArgument("no layers".into()))
    }
}

fn sample_points(x: &Tensor) -> Result<Vec<f64>> {
    let n = x.elem_count();
    if x.rank() == 0 || x.rank() > 2 || (x.rank() == 2 && x.dims()[1] != 1) || n == 0 {
        return Err(TrainError::ShapeMismatch(format!(
            "sample points must be (n,) or (n, 1) with n >= 1, got {:?}",
            x.dims()
        )));
    }
    let xs = x.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    if let Some(j) = xs.iter().position(|v| !v.is_finite()) {
        return Err(TrainError::NonFinite(format!("sample point {j}")));
    }
    Ok(xs)
}

/// A fully connected network whose every hidden layer `l` has an auxiliary linear output
/// `f_l = C_l z_l` (no bias); the last auxiliary output is the network's output. Parameters are
/// named `hidden.{l}.weight` / `hidden.{l}.bias` and `aux.{l}.weight`.
#[derive(Clone, Debug)]
pub struct SobolevNet {
    hidden: Vec<Linear>,
    aux: Vec<Linear>,
    activation: Activation,
}

impl SobolevNet {
    /// `layers` hidden layers of `width` units from `inputs` inputs, each with an auxiliary output
    /// of `outputs` units.
    pub fn new(
        inputs: usize,
        width: usize,
        layers: usize,
        outputs: usize,
        activation: Activation,
        vb: VarBuilder,
    ) -> Result<Self> {
        if inputs == 0 || width == 0 || layers == 0 || outputs == 0 {
            return Err(TrainError::InvalidArgument(format!(
                "inputs, width, layers and outputs must be >= 1, got {inputs}, {width}, {layers}, {outputs}"
            )));
        }
        let mut hidden = Vec::with_capacity(layers);
        let mut aux = Vec::with_capacity(layers);
        for l in 0..layers {
            let fan_in = if l == 0 { inputs } else { width };
            hidden.push(candle_nn::linear(fan_in, width, vb.pp("hidden").pp(l))?);
            aux.push(candle_nn::linear_no_bias(
                width,
                outputs,
                vb.pp("aux").pp(l),
            )?);
        }
        Ok(Self {
            hidden,
            aux,
            activation,
        })
    }

    /// Number of hidden layers.
    pub fn layers(&self) -> usize {
        self.hidden.len()
    }

    /// The auxiliary outputs `f_0, ..., f_{L-1}` (the last one is the network output).
    pub fn forward_aux(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut z = x.clone();
        let mut out = Vec::with_capacity(self.hidden.len());
        for (h, c) in self.hidden.iter().zip(&self.aux) {
            z = self.activation.apply(&h.forward(&z)?)?;
            out.push(c.forward(&z)?);
        }
        Ok(out)
    }
}

impl Module for SobolevNet {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut z = x.clone();
        for h in &self.hidden {
            z = self.activation.apply(&h.forward(&z)?)?;
        }
        self.aux[self.aux.len() - 1].forward(&z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use candle_nn::VarMap;
    use std::f64::consts::PI;

    fn points(n: usize, dev: &Device) -> Result<Tensor> {
        // Scattered points on [0, 2).
        let xs: Vec<f64> = (0..n)
            .map(|j| 2.0 * ((j as f64 * 0.618_033_988_75).fract()))
            .collect();
        Ok(Tensor::from_vec(xs, (n, 1), dev)?)
    }

    koopman_core::test_device!(parseval, parseval_cpu, parseval_cuda);
    /// With weight exponent 0 and every shell up to n/2 on a uniform grid of odd n, loss 2 is
    /// the mean squared error (Parseval).
    fn parseval(dev: &Device) -> Result<()> {
        let n = 11;
        let xs: Vec<f64> = (0..n).map(|j| 3.0 * j as f64 / n as f64).collect();
        let x = Tensor::from_vec(xs, (n, 1), dev)?;
        let cfg = SobolevConfig {
            period: 3.0,
            exponent: 0.0,
            ..Default::default()
        };
        let loss = SobolevLoss::new(&x, n / 2 + 1, &cfg)?;
        let h = Tensor::from_vec(
            (0..2 * n).map(|i| (i as f64 * 0.7).sin()).collect(),
            (n, 2),
            dev,
        )?;
        let f = Tensor::from_vec(
            (0..2 * n).map(|i| (i as f64 * 0.3).cos()).collect(),
            (n, 2),
            dev,
        )?;
        let got = loss.loss2(&h, &f)?.to_scalar::<f64>()?;
        let mse = ((&h - &f)?.sqr()?.sum_all()?.to_scalar::<f64>()?) / n as f64;
        assert!(
            (got - mse).abs() < 16.0 * n as f64 * f64::EPSILON * mse,
            "{got} vs {mse}"
        );
        Ok(())
    }

    fn fd_check(loss_of: &dyn Fn(&[Tensor]) -> Result<Tensor>, vars: &[Var]) -> Result<()> {
        let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let grads = loss_of(&tensors)?.backward()?;
        let step = 1e-6;
        for (vi, v) in vars.iter().enumerate() {
            let g = grads
                .get(v.as_tensor())
                .ok_or_else(|| TrainError::InvalidArgument("no gradient".into()))?
                .flatten_all()?
                .to_vec1::<f64>()?;
            let base = v.as_tensor().flatten_all()?.to_vec1::<f64>()?;
            for i in 0..base.len() {
                let eval = |delta: f64| -> Result<f64> {
                    let mut p = base.clone();
                    p[i] += delta;
                    let mut ts = tensors.clone();
                    ts[vi] = Tensor::from_vec(p, v.dims(), v.device())?;
                    Ok(loss_of(&ts)?.to_scalar::<f64>()?)
                };
                let fd = (eval(step)? - eval(-step)?) / (2.0 * step);
                assert!(
                    (fd - g[i]).abs() < 1e-7 * (1.0 + fd.abs()),
                    "var {vi} entry {i}: autograd {} vs finite difference {fd}",
                    g[i]
                );
            }
        }
        Ok(())
    }

    koopman_core::test_device!(
        gradients_match_fd,
        gradients_match_fd_cpu,
        gradients_match_fd_cuda
    );
    /// Both losses' gradients with respect to the outputs and to the target, against central
    /// differences in f64.
    fn gradients_match_fd(dev: &Device) -> Result<()> {
        let n = 10;
        let x = points(n, dev)?;
        for scale in [ScaleFunction::Linear, ScaleFunction::Exponential] {
            let cfg = SobolevConfig {
                period: 2.0,
                scale,
                ..Default::default()
            };
            let loss = SobolevLoss::new(&x, 3, &cfg)?;
            let mk = |seed: f64| -> Result<Var> {
                Ok(Var::from_tensor(&Tensor::from_vec(
                    (0..2 * n).map(|i| (seed * i as f64).sin()).collect(),
                    (n, 2),
                    dev,
                )?)?)
            };
            let vars = [mk(0.3)?, mk(0.7)?, mk(1.1)?, mk(1.9)?];
            fd_check(&|t: &[Tensor]| loss.loss1(&t[0], &t[1..4]), &vars)?;
            fd_check(&|t: &[Tensor]| loss.loss2(&t[0], &t[1]), &vars[..2])?;
        }
        Ok(())
    }

    koopman_core::test_device!(
        net_gradients_match_fd,
        net_gradients_match_fd_cpu,
        net_gradients_match_fd_cuda
    );
    /// Loss 1 through the auxiliary outputs of a small network: parameter gradients against
    /// central differences.
    fn net_gradients_match_fd(dev: &Device) -> Result<()> {
        let n = 8;
        let x = points(n, dev)?;
        let h = x.sin()?;
        let vm = VarMap::new();
        let net = SobolevNet::new(
            1,
            3,
            2,
            1,
            Activation::Tanh,
            VarBuilder::from_varmap(&vm, DType::F64, dev),
        )?;
        let loss = SobolevLoss::new(
            &x,
            2,
            &SobolevConfig {
                period: 2.0,
                ..Default::default()
            },
        )?;
        let mut names: Vec<(String, Var)> = vm
            .data()
            .lock()
            .map_err(|_| TrainError::InvalidArgument("poisoned".into()))?
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        let vars: Vec<Var> = names.iter().map(|(_, v)| v.clone()).collect();
        let value = |t: &[Tensor]| -> Result<Tensor> {
            // Rebuild the network from the given tensors (same names, same order).
            let map: std::collections::HashMap<String, Tensor> = names
                .iter()
                .map(|(k, _)| k.clone())
                .zip(t.iter().cloned())
                .collect();
            let vb = VarBuilder::from_tensors(map, DType::F64, dev);
            let net = SobolevNet::new(1, 3, 2, 1, Activation::Tanh, vb)?;
            loss.loss1(&h, &net.forward_aux(&x)?)
        };
        // The network's own forward agrees with the rebuilt one.
        let direct = loss.loss1(&h, &net.forward_aux(&x)?)?.to_scalar::<f64>()?;
        let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        assert_eq!(direct, value(&tensors)?.to_scalar::<f64>()?);
        fd_check(&value, &vars)
    }

    koopman_core::test_device!(
        synthesis_recovers_trig_polynomial,
        synthesis_cpu,
        synthesis_cuda
    );
    /// On a uniform grid the shell synthesis of a trigonometric polynomial of wavenumbers
    /// `0..L-1` reproduces it everywhere.
    fn synthesis_recovers_trig_polynomial(dev: &Device) -> Result<()> {
        let n = 16;
        let h = |x: f64| {
            1.0 + (PI * x).cos() - 0.5 * (2.0 * PI * x).sin() + 0.25 * (3.0 * PI * x + 0.3).cos()
        };
        let xs: Vec<f64> = (0..n).map(|j| 2.0 * j as f64 / n as f64).collect();
        let x = Tensor::from_vec(xs.clone(), (n, 1), dev)?;
        let hv = Tensor::from_vec(xs.iter().map(|&x| h(x)).collect::<Vec<f64>>(), (n, 1), dev)?;
        let loss = SobolevLoss::new(
            &x,
            4,
            &SobolevConfig {
                period: 2.0,
                ..Default::default()
            },
        )?;
        let aux = vec![hv.clone(); 4];
        let xe: Vec<f64> = (0..7).map(|j| 0.13 + 0.27 * j as f64).collect();
        let got = loss
            .shell_synthesis(&aux, &Tensor::from_vec(xe.clone(), 7, dev)?)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        for (g, x) in got.iter().zip(&xe) {
            assert!((g - h(*x)).abs() < 64.0 * f64::EPSILON, "{g} vs {}", h(*x));
        }
        // Fewer layers: only the lower wavenumbers come back.
        let two = SobolevLoss::new(
            &x,
            2,
            &SobolevConfig {
                period: 2.0,
                ..Default::default()
            },
        )?;
        let low = two
            .shell_synthesis(&aux[..2], &Tensor::from_vec(vec![0.5f64], 1, dev)?)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        assert!((low[0] - (1.0 + (PI * 0.5).cos())).abs() < 64.0 * f64::EPSILON);
        Ok(())
    }

    #[test]
    fn bad_input_is_an_error() -> Result<()> {
        let dev = Device::Cpu;
        let x = points(6, &dev)?;
        assert!(SobolevLoss::new(&x, 0, &SobolevConfig::default()).is_err());
        let bad = SobolevConfig {
            period: -1.0,
            ..Default::default()
        };
        assert!(SobolevLoss::new(&x, 2, &bad).is_err());
        let loss = SobolevLoss::new(&x, 2, &SobolevConfig::default())?;
        let h = Tensor::zeros((6, 1), DType::F64, &dev)?;
        let wrong = Tensor::zeros((5, 1), DType::F64, &dev)?;
        assert!(matches!(
            loss.loss2(&h, &wrong),
            Err(TrainError::ShapeMismatch(_))
        ));
        assert!(matches!(
            loss.loss1(&h, std::slice::from_ref(&h)),
            Err(TrainError::ShapeMismatch(_))
        ));
        let nan = Tensor::from_vec(vec![0.0, f64::NAN], (2, 1), &dev)?;
        assert!(matches!(
            SobolevLoss::new(&nan, 1, &SobolevConfig::default()),
            Err(TrainError::NonFinite(_))
        ));
        Ok(())
    }
}
