//! Snapshots of every parameter of a candle model over a range of consecutive training steps.
//!
//! The [`Recorder`] holds the named variables of a model (sorted by name, so the flat parameter
//! order is deterministic), concatenates their values into one flat vector per step and keeps
//! the snapshots in one contiguous `f64` buffer (`steps x parameters`, nothing else per step);
//! [`Recorder::memory_bytes`] reports its size. It also writes flat parameter vectors back into
//! the model ([`Recorder::write_back`]), which is how Koopman-evolved weights reach the network.
//!
//! ```
//! use candle_core::{DType, Device};
//! use candle_nn::{VarBuilder, VarMap};
//! use koopman_train::stepping::Recorder;
//!
//! # fn main() -> koopman_train::Result<()> {
//! let vm = VarMap::new();
//! let vb = VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu);
//! let _layer = candle_nn::linear(3, 2, vb.pp("0"))?;
//! let mut rec = Recorder::from_varmap(&vm)?;
//! assert_eq!(rec.num_params(), 8); // 0.bias (2) then 0.weight (6)
//! rec.record(10)?;
//! rec.record(11)?;
//! assert_eq!(rec.steps(), Some((10, 11)));
//! assert_eq!(rec.memory_bytes(), 2 * 8 * 8);
//! # Ok(()) }
//! ```

use crate::error::{Result, TrainError};
use candle_core::{DType, Device, Tensor, Var};

/// The `(name, variable)` pairs of a `VarMap`.
pub fn named_vars(varmap: &candle_nn::VarMap) -> Result<Vec<(String, Var)>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| TrainError::InvalidArgument("poisoned variable map".into()))?;
    Ok(data.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// Where one parameter tensor sits in the flat parameter vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamInfo {
    /// Variable name (`0.weight`, `2.bias`, ...).
    pub name: String,
    /// Tensor shape.
    pub shape: Vec<usize>,
    /// First index in the flat vector.
    pub offset: usize,
    /// Number of entries.
    pub len: usize,
}

/// Records parameter snapshots at consecutive steps; see the [module docs](self).
#[derive(Clone, Debug)]
pub struct Recorder {
    params: Vec<ParamInfo>,
    vars: Vec<(String, Var)>,
    n: usize,
    first: Option<usize>,
    count: usize,
    data: Vec<f64>,
}

impl Recorder {
    /// A recorder over named variables (sorted by name here).
    pub fn new(mut named: Vec<(String, Var)>) -> Result<Self> {
        named.sort_by(|a, b| a.0.cmp(&b.0));
        if named.is_empty() {
            return Err(TrainError::InvalidArgument(
                "a recorder needs at least one variable".into(),
            ));
        }
        for w in named.windows(2) {
            if w[0].0 == w[1].0 {
                return Err(TrainError::InvalidArgument(format!(
                    "variable name '{}' appears twice",
                    w[0].0
                )));
            }
        }
        let layout = named
            .iter()
            .map(|(n, v)| (n.clone(), v.dims().to_vec()))
            .collect();
        let mut rec = Self::with_layout(layout)?;
        rec.vars = named;
        Ok(rec)
    }

    /// A recorder over every variable of a `VarMap`.
    pub fn from_varmap(varmap: &candle_nn::VarMap) -> Result<Self> {
        Self::new(named_vars(varmap)?)
    }

    /// A recorder with a parameter layout but no model: snapshots come from [`push`](Self::push)
    /// (models trained outside candle, like the perceptron).
    pub fn with_layout(layout: Vec<(String, Vec<usize>)>) -> Result<Self> {
        let mut params = Vec::with_capacity(layout.len());
        let mut offset = 0;
        for (name, shape) in layout {
            let len: usize = shape.iter().product();
            if len == 0 {
                return Err(TrainError::InvalidArgument(format!(
                    "parameter '{name}' is empty ({shape:?})"
                )));
            }
            params.push(ParamInfo {
                name,
                shape,
                offset,
                len,
            });
            offset += len;
        }
        if params.is_empty() {
            return Err(TrainError::InvalidArgument(
                "a recorder needs at least one parameter".into(),
            ));
        }
        Ok(Self {
            params,
            vars: Vec::new(),
            n: offset,
            first: None,
            count: 0,
            data: Vec::new(),
        })
    }

    /// The recorded variables (name, variable) in name order; empty for a layout-only recorder.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// The first `snapshots` snapshots re-targeted onto other variables of the same layout (a
    /// copy of the model forked at that step), so that writes act on the copy.
    pub fn fork(&self, snapshots: usize, vars: Vec<(String, Var)>) -> Result<Self> {
        if snapshots > self.count {
            return Err(TrainError::NotEnoughData(format!(
                "fork: {snapshots} snapshots requested, only {} recorded",
                self.count
            )));
        }
        let mut fork = Self::new(vars)?;
        if fork.params.len() != self.params.len()
            || fork
                .params
                .iter()
                .zip(&self.params)
                .any(|(a, b)| a.shape != b.shape)
        {
            return Err(TrainError::ShapeMismatch(
                "a fork needs variables of the same shapes, in the same name order".into(),
            ));
        }
        fork.first = self.first.filter(|_| snapshots > 0);
        fork.count = snapshots;
        fork.data = self.data[..snapshots * self.n].to_vec();
        Ok(fork)
    }

    /// The parameter layout.
    pub fn params(&self) -> &[ParamInfo] {
        &self.params
    }

    /// Number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.n
    }

    /// First and last recorded step, if any.
    pub fn steps(&self) -> Option<(usize, usize)> {
        self.first.map(|f| (f, f + self.count - 1))
    }

    /// Number of recorded snapshots.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes held by the snapshot buffer.
    pub fn memory_bytes(&self) -> usize {
        self.data.len() * std::mem::size_of::<f64>()
    }

    /// Drops every snapshot (the layout stays).
    pub fn clear(&mut self) {
        self.first = None;
        self.count = 0;
        self.data.clear();
    }

    /// Reserves room for `steps` more snapshots.
    pub fn reserve(&mut self, steps: usize) {
        self.data.reserve(steps * self.n);
    }

    /// The current values of the model's variables as one flat `f64` vector.
    pub fn current(&self) -> Result<Vec<f64>> {
        if self.vars.is_empty() {
            return Err(TrainError::InvalidArgument(
                "this recorder has no model variables (built with a layout only)".into(),
            ));
        }
        let mut out = Vec::with_capacity(self.n);
        for (_, v) in &self.vars {
            let flat = v.as_tensor().flatten_all()?.to_device(&Device::Cpu)?;
            // f32 and f64 are read as they are (one copy); other dtypes go through f64.
            match flat.dtype() {
                DType::F32 => out.extend(flat.to_vec1::<f32>()?.into_iter().map(f64::from)),
                DType::F64 => out.extend(flat.to_vec1::<f64>()?),
                _ => out.extend(flat.to_dtype(DType::F64)?.to_vec1::<f64>()?),
            }
        }
        Ok(out)
    }

    /// Records the model's current values as the snapshot of `step`.
    pub fn record(&mut self, step: usize) -> Result<()> {
        let values = self.current()?;
        self.push(step, &values)
    }

    /// Appends a snapshot given as a flat vector. Steps must be consecutive; NaN or Inf values
    /// are refused with an error naming the parameter.
    pub fn push(&mut self, step: usize, values: &[f64]) -> Result<()> {
        if values.len() != self.n {
            return Err(TrainError::ShapeMismatch(format!(
                "snapshot has {} values, the model has {} parameters",
                values.len(),
                self.n
            )));
        }
        if let Some((_, last)) = self.steps() {
            if step != last + 1 {
                return Err(TrainError::InvalidArgument(format!(
                    "snapshots must be consecutive: got step {step} after step {last}"
                )));
            }
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            let p = self
                .params
                .iter()
                .find(|p| i < p.offset + p.len)
                .map_or("?", |p| p.name.as_str());
            return Err(TrainError::NonFinite(format!(
                "recorded weights of '{p}' at step {step}"
            )));
        }
        self.first.get_or_insert(step);
        self.count += 1;
        self.data.extend_from_slice(values);
        Ok(())
    }

    /// The snapshot of `step`.
    pub fn snapshot(&self, step: usize) -> Result<&[f64]> {
        let (first, last) = self
            .steps()
            .ok_or_else(|| TrainError::NotEnoughData("nothing recorded".into()))?;
        if step < first || step > last {
            return Err(TrainError::NotEnoughData(format!(
                "step {step} is outside the recorded steps {first}..={last}"
            )));
        }
        let k = step - first;
        Ok(&self.data[k * self.n..(k + 1) * self.n])
    }

    /// Writes a flat parameter vector back into the model's variables (converted to each
    /// variable's dtype and device).
    pub fn write_back(&self, values: &[f64]) -> Result<()> {
        if self.vars.is_empty() {
            return Err(TrainError::InvalidArgument(
                "this recorder has no model variables to write to".into(),
            ));
        }
        if values.len() != self.n {
            return Err(TrainError::ShapeMismatch(format!(
                "{} values for {} parameters",
                values.len(),
                self.n
            )));
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(TrainError::NonFinite("weights to write back".into()));
        }
        for (p, (_, v)) in self.params.iter().zip(&self.vars) {
            let t = Tensor::from_slice(
                &values[p.offset..p.offset + p.len],
                p.shape.as_slice(),
                v.device(),
            )?
            .to_dtype(v.dtype())?;
            v.set(&t)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_writes_back_and_refuses_bad_input() -> Result<()> {
        let dev = Device::Cpu;
        let a = Var::new(&[[1.0f32, 2.0], [3.0, 4.0]], &dev)?;
        let b = Var::new(&[5.0f32], &dev)?;
        let mut rec = Recorder::new(vec![("b".into(), b.clone()), ("a".into(), a.clone())])?;
        assert_eq!(rec.params()[0].name, "a");
        rec.record(3)?;
        assert_eq!(rec.snapshot(3)?, &[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!(matches!(rec.record(5), Err(TrainError::InvalidArgument(_))));
        assert!(matches!(rec.snapshot(4), Err(TrainError::NotEnoughData(_))));
        rec.write_back(&[0.0, 1.0, 2.0, 3.0, 4.0])?;
        assert_eq!(b.as_tensor().to_vec1::<f32>()?, vec![4.0]);
        let bad = [0.0, f64::NAN, 0.0, 0.0, 0.0];
        let err = rec.push(4, &bad).unwrap_err();
        assert!(err.to_string().contains("'a'"), "{err}");
        assert!(rec.write_back(&bad).is_err());
        Ok(())
    }
}
