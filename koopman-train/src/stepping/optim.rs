//! Adagrad and Adadelta as [`candle_nn::Optimizer`]s (candle-nn 0.11.1 ships only SGD and AdamW),
//! the learning-rate schedule `8 / (1000 + t)` of paper 000, and [`AnyOptimizer`], one type for
//! the three optimisers the paper compares (Adam, Adagrad, Adadelta).
//!
//! The update rules are PyTorch's (`torch.optim.Adagrad`, `torch.optim.Adadelta`, no weight decay):
//!
//! - Adagrad: `s += g^2`, `w -= lr * g / (sqrt(s) + eps)`;
//! - Adadelta: `v = rho v + (1 - rho) g^2`, `d = sqrt(u + eps) / sqrt(v + eps) * g`,
//!   `u = rho u + (1 - rho) d^2`, `w -= lr * d`.
//!
//! ```
//! use candle_core::{DType, Device, Var};
//! use candle_nn::Optimizer;
//! use koopman_train::stepping::optim::{Adagrad, ParamsAdagrad};
//!
//! # fn main() -> candle_core::Result<()> {
//! let w = Var::new(&[1.0f64], &Device::Cpu)?;
//! let mut opt = Adagrad::new(vec![w.clone()], ParamsAdagrad { lr: 0.1, ..Default::default() })?;
//! // loss = w^2, g = 2: s = 4, w = 1 - 0.1 * 2 / (2 + 1e-10)
//! opt.backward_step(&w.as_tensor().sqr()?.sum_all()?)?;
//! let v = w.as_tensor().to_vec1::<f64>()?[0];
//! assert!((v - 0.9).abs() < 1e-9);
//! # Ok(()) }
//! ```

use crate::error::{Result, TrainError};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::Optimizer;

/// Learning rate as a function of the step count `t` (0 for the first step).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum LrSchedule {
    /// The same rate at every step.
    Constant(f64),
    /// `a / (b + t)`; the paper's NN DE solver uses `8 / (1000 + t)`.
    InverseTime {
        /// Numerator.
        a: f64,
        /// Offset.
        b: f64,
    },
}

impl LrSchedule {
    /// The paper's schedule `8 / (1000 + t)`.
    pub fn paper() -> Self {
        LrSchedule::InverseTime { a: 8.0, b: 1000.0 }
    }

    /// The rate at step `t`.
    pub fn at(&self, t: usize) -> f64 {
        match *self {
            LrSchedule::Constant(lr) => lr,
            LrSchedule::InverseTime { a, b } => a / (b + t as f64),
        }
    }

    /// Checks that every rate is finite and positive.
    pub fn validate(&self) -> Result<()> {
        let ok = match *self {
            LrSchedule::Constant(lr) => lr.is_finite() && lr > 0.0,
            LrSchedule::InverseTime { a, b } => {
                a.is_finite() && b.is_finite() && a > 0.0 && b > 0.0
            }
        };
        if ok {
            Ok(())
        } else {
            Err(TrainError::InvalidArgument(format!(
                "learning-rate schedule {self:?} must give finite rates > 0"
            )))
        }
    }
}

fn float_vars(vars: Vec<Var>) -> Vec<Var> {
    vars.into_iter().filter(|v| v.dtype().is_float()).collect()
}

fn check_positive(what: &str, x: f64) -> candle_core::Result<()> {
    koopman_core::validate::positive(what, x).map_err(candle_core::Error::wrap)
}

/// Settings of [`Adagrad`] (PyTorch defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamsAdagrad {
    /// Learning rate.
    pub lr: f64,
    /// Added to `sqrt(s)` in the denominator.
    pub eps: f64,
    /// Starting value of the squared-gradient sum.
    pub initial_accumulator: f64,
}

impl Default for ParamsAdagrad {
    fn default() -> Self {
        Self {
            lr: 1e-2,
            eps: 1e-10,
            initial_accumulator: 0.0,
        }
    }
}

/// Adagrad (Duchi et al. 2011), PyTorch's update rule.
#[derive(Debug)]
pub struct Adagrad {
    vars: Vec<(Var, Tensor)>,
    params: ParamsAdagrad,
}

impl Optimizer for Adagrad {
    type Config = ParamsAdagrad;

    fn new(vars: Vec<Var>, params: ParamsAdagrad) -> candle_core::Result<Self> {
        check_positive("Adagrad learning rate", params.lr)?;
        check_positive("Adagrad eps", params.eps)?;
        if !(params.initial_accumulator.is_finite() && params.initial_accumulator >= 0.0) {
            candle_core::bail!("Adagrad initial accumulator must be finite and >= 0");
        }
        let vars = float_vars(vars)
            .into_iter()
            .map(|v| {
                let s = (v.ones_like()? * params.initial_accumulator)?;
                Ok((v, s))
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Self { vars, params })
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        for (var, sum) in self.vars.iter_mut() {
            if let Some(g) = grads.get(var) {
                *sum = (&*sum + g.sqr()?)?;
                let denom = (sum.sqrt()? + self.params.eps)?;
                let update = ((g / denom)? * self.params.lr)?;
                var.set(&var.sub(&update)?)?;
            }
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.params.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr;
    }
}

/// Settings of [`Adadelta`] (PyTorch defaults; the paper uses `rho = 0.999`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamsAdadelta {
    /// Learning rate (scales the update).
    pub lr: f64,
    /// Decay of the running averages.
    pub rho: f64,
    /// Regulariser inside the square roots.
    pub eps: f64,
}

impl Default for ParamsAdadelta {
    fn default() -> Self {
        Self {
            lr: 1.0,
            rho: 0.9,
            eps: 1e-6,
        }
    }
}

/// Adadelta (Zeiler 2012), PyTorch's update rule.
#[derive(Debug)]
pub struct Adadelta {
    vars: Vec<(Var, Tensor, Tensor)>,
    params: ParamsAdadelta,
}

impl Optimizer for Adadelta {
    type Config = ParamsAdadelta;

    fn new(vars: Vec<Var>, params: ParamsAdadelta) -> candle_core::Result<Self> {
        check_positive("Adadelta learning rate", params.lr)?;
        check_positive("Adadelta eps", params.eps)?;
        if !(params.rho.is_finite() && (0.0..1.0).contains(&params.rho)) {
            candle_core::bail!("Adadelta rho must lie in [0, 1), got {}", params.rho);
        }
        let vars = float_vars(vars)
            .into_iter()
            .map(|v| {
                let z = v.zeros_like()?;
                Ok((v, z.clone(), z))
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Self { vars, params })
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        let ParamsAdadelta { lr, rho, eps } = self.params;
        for (var, sq, acc) in self.vars.iter_mut() {
            if let Some(g) = grads.get(var) {
                *sq = ((&*sq * rho)? + (g.sqr()? * (1.0 - rho))?)?;
                let std = (&*sq + eps)?.sqrt()?;
                let delta = (((&*acc + eps)?.sqrt()? / std)? * g)?;
                *acc = ((&*acc * rho)? + (delta.sqr()? * (1.0 - rho))?)?;
                var.set(&var.sub(&(delta * lr)?)?)?;
            }
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.params.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.params.lr = lr;
    }
}

/// Which optimiser, with its settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    /// Adam (candle-nn's AdamW with weight decay 0) with these betas.
    Adam {
        /// `(beta1, beta2)`; the paper uses `(0.999, 0.9999)`.
        betas: (f64, f64),
    },
    /// Adagrad.
    Adagrad,
    /// Adadelta with this `rho`.
    Adadelta {
        /// Decay of the running averages; the paper's DE solver uses 0.999.
        rho: f64,
    },
}

impl OptimizerKind {
    /// Short name (`adam`, `adagrad`, `adadelta`).
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerKind::Adam { .. } => "adam",
            OptimizerKind::Adagrad => "adagrad",
            OptimizerKind::Adadelta { .. } => "adadelta",
        }
    }

    /// Builds the optimiser over `vars` with initial learning rate `lr`.
    pub fn build(&self, vars: Vec<Var>, lr: f64) -> Result<AnyOptimizer> {
        Ok(match *self {
            OptimizerKind::Adam { betas } => AnyOptimizer::Adam(candle_nn::AdamW::new(
                vars,
                candle_nn::ParamsAdamW {
                    lr,
                    beta1: betas.0,
                    beta2: betas.1,
                    eps: 1e-8,
                    weight_decay: 0.0,
                },
            )?),
            OptimizerKind::Adagrad => AnyOptimizer::Adagrad(Adagrad::new(
                vars,
                ParamsAdagrad {
                    lr,
                    ..Default::default()
                },
            )?),
            OptimizerKind::Adadelta { rho } => AnyOptimizer::Adadelta(Adadelta::new(
                vars,
                ParamsAdadelta {
                    lr,
                    rho,
                    ..Default::default()
                },
            )?),
        })
    }
}

/// One of the three optimisers of the paper behind one type.
#[derive(Debug)]
pub enum AnyOptimizer {
    /// Adam (AdamW without weight decay).
    Adam(candle_nn::AdamW),
    /// Adagrad.
    Adagrad(Adagrad),
    /// Adadelta.
    Adadelta(Adadelta),
}

impl Optimizer for AnyOptimizer {
    type Config = (OptimizerKind, f64);

    fn new(vars: Vec<Var>, (kind, lr): (OptimizerKind, f64)) -> candle_core::Result<Self> {
        kind.build(vars, lr)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))
    }

    fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        match self {
            AnyOptimizer::Adam(o) => o.step(grads),
            AnyOptimizer::Adagrad(o) => o.step(grads),
            AnyOptimizer::Adadelta(o) => o.step(grads),
        }
    }

    fn learning_rate(&self) -> f64 {
        AnyOptimizer::learning_rate(self)
    }

    fn set_learning_rate(&mut self, lr: f64) {
        AnyOptimizer::set_learning_rate(self, lr)
    }
}

impl AnyOptimizer {
    /// One step from the gradients of `loss`.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        match self {
            AnyOptimizer::Adam(o) => o.backward_step(loss)?,
            AnyOptimizer::Adagrad(o) => o.backward_step(loss)?,
            AnyOptimizer::Adadelta(o) => o.backward_step(loss)?,
        }
        Ok(())
    }

    /// Sets the learning rate of the next steps.
    pub fn set_learning_rate(&mut self, lr: f64) {
        match self {
            AnyOptimizer::Adam(o) => o.set_learning_rate(lr),
            AnyOptimizer::Adagrad(o) => o.set_learning_rate(lr),
            AnyOptimizer::Adadelta(o) => o.set_learning_rate(lr),
        }
    }

    /// The current learning rate.
    pub fn learning_rate(&self) -> f64 {
        match self {
            AnyOptimizer::Adam(o) => o.learning_rate(),
            AnyOptimizer::Adagrad(o) => o.learning_rate(),
            AnyOptimizer::Adadelta(o) => o.learning_rate(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    // Hand computation on loss = sum(c * w^2) (gradient 2 c w), w0 = [1, -2], c = [1, 3]:
    //
    // Adagrad, lr = 0.1, eps = 1e-10:
    //   step 1: g = [2, -12], s = [4, 144], w = [1 - 0.1*2/2, -2 + 0.1*12/12] ~ [0.9, -1.9]
    //   step 2: g ~ [1.8, -11.4], s ~ [7.24, 273.96],
    //           w ~ [0.9 - 0.18/sqrt(7.24), -1.9 + 1.14/sqrt(273.96)] (eps kept in the test)
    //
    // Adadelta, lr = 1, rho = 0.9, eps = 1e-6, first coordinate (g = 2):
    //   v = 0.4, d = sqrt(1e-6)/sqrt(0.400001) * 2, u = 0.1 d^2, w = 1 - d
    //   step 2: g' = 2 w, v' = 0.36 + 0.1 g'^2, d' = sqrt(u + 1e-6)/sqrt(v' + 1e-6) * g'
    fn quadratic(w: &Var, c: &Tensor) -> Tensor {
        (w.as_tensor().sqr().unwrap() * c)
            .unwrap()
            .sum_all()
            .unwrap()
    }

    fn body_adagrad(dev: &Device) -> Result<()> {
        let w = Var::new(&[1.0f64, -2.0], dev)?;
        let c = Tensor::new(&[1.0f64, 3.0], dev)?;
        let mut opt = Adagrad::new(
            vec![w.clone()],
            ParamsAdagrad {
                lr: 0.1,
                ..Default::default()
            },
        )?;
        opt.backward_step(&quadratic(&w, &c))?;
        opt.backward_step(&quadratic(&w, &c))?;
        let got = w.as_tensor().to_vec1::<f64>()?;
        let want = [(1.0f64, 1.0f64), (-2.0, 3.0)].map(|(w0, c)| {
            let g1 = 2.0 * c * w0;
            let w1 = w0 - 0.1 * g1 / ((g1 * g1).sqrt() + 1e-10);
            let g2 = 2.0 * c * w1;
            w1 - 0.1 * g2 / ((g1 * g1 + g2 * g2).sqrt() + 1e-10)
        });
        for (g, e) in got.iter().zip(want) {
            assert!((g - e).abs() < 8.0 * f64::EPSILON, "{g} vs {e}");
        }
        Ok(())
    }
    koopman_core::test_device!(
        body_adagrad,
        adagrad_matches_hand_cpu,
        adagrad_matches_hand_cuda
    );

    fn body_adadelta(dev: &Device) -> Result<()> {
        let w = Var::new(&[1.0f64, -2.0], dev)?;
        let c = Tensor::new(&[1.0f64, 3.0], dev)?;
        let mut opt = Adadelta::new(vec![w.clone()], ParamsAdadelta::default())?;
        opt.backward_step(&quadratic(&w, &c))?;
        opt.backward_step(&quadratic(&w, &c))?;
        let got = w.as_tensor().to_vec1::<f64>()?[0];
        let eps: f64 = 1e-6;
        let v = 0.1 * 4.0;
        let d = eps.sqrt() / (v + eps).sqrt() * 2.0;
        let u = 0.1 * d * d;
        let w1 = 1.0 - d;
        let g2 = 2.0 * w1;
        let v2 = 0.9 * v + 0.1 * g2 * g2;
        let d2 = (u + eps).sqrt() / (v2 + eps).sqrt() * g2;
        let want = w1 - d2;
        assert!((got - want).abs() < 8.0 * f64::EPSILON, "{got} vs {want}");
        Ok(())
    }
    koopman_core::test_device!(
        body_adadelta,
        adadelta_matches_hand_cpu,
        adadelta_matches_hand_cuda
    );

    #[test]
    fn schedule_and_bad_settings() {
        assert_eq!(LrSchedule::paper().at(0), 8.0 / 1000.0);
        assert_eq!(LrSchedule::paper().at(1000), 8.0 / 2000.0);
        assert!(LrSchedule::Constant(0.0).validate().is_err());
        assert!(LrSchedule::InverseTime { a: 8.0, b: -1.0 }
            .validate()
            .is_err());
        assert!(Adadelta::new(
            vec![],
            ParamsAdadelta {
                rho: 1.0,
                ..Default::default()
            }
        )
        .is_err());
        assert!(Adagrad::new(
            vec![],
            ParamsAdagrad {
                lr: -1.0,
                ..Default::default()
            }
        )
        .is_err());
    }
}
