//! The deep Koopman-layered model (SPEC 3.1, paper 003).
//!
//! Layer `j` holds a Toeplitz generator `L_j = t_j sum_k A^{j,k}_1 ... A^{j,k}_R D_k` over the
//! representation index set `N` (dimension `d + 1`: the state plus the extra output coordinate) with
//! complex coefficients on the offset sets `M_1..M_R` for each state coordinate `k` (the vector
//! field's component along the extra coordinate is zero). The model is
//!
//! `G = Q_N e^{L_1} ... e^{L_J} Q_N^* v`,
//!
//! computed right to left, and evaluated as `Re G(x, y_k)` at a batch of samples. Each `e^{L_j}`
//! is applied by [`ExpMode`]: by default the device-resident Taylor action
//! ([`koopman_core::taylor`]: one norm bound per generator fixes the degree and sub-steps, the
//! fused gather kernel runs it, nothing is read back inside the loop), or the Krylov
//! [`koopman_core::expv`](fn@koopman_core::expv) with its a-posteriori error control, or the dense exponential
//! (reference). The gather tables of each layer are built once ([`ToeplitzStructure`]); a training
//! step only recomputes the generators' weights.
//!
//! ```
//! use std::sync::Arc;
//! use candle_core::{DType, Device};
//! use candle_nn::{VarBuilder, VarMap};
//! use koopman_core::IndexSet;
//! use koopman_layers::model::DeepKoopmanLayeredBuilder;
//!
//! # fn main() -> koopman_layers::Result<()> {
//! let n = Arc::new(IndexSet::cube(3, 2)?.without_origin()?);
//! let m = Arc::new(IndexSet::product_of_ranges(&[(-1, 1), (-1, 1), (0, 0)])?.without_origin()?);
//! let varmap = VarMap::new();
//! let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
//! let model = DeepKoopmanLayeredBuilder::new(2, n, vec![m]).layers(2).build(vb)?;
//! let z = [0.1, -0.4, 0.7, 0.2]; // two samples on the torus
//! let y = model.predict(&z)?;
//! assert_eq!(y.len(), 4);
//! # Ok(()) }
//! ```

use crate::observable::{CoordinateFunction, VectorObservable};
use crate::{LayersError, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder};
use koopman_core::operator::Adjoint;
use koopman_core::taylor::{self, TaylorConfig, TaylorPath, TaylorPlan};
use koopman_core::{
    expv, expv_dense, expv_taylor, ComplexTensor, ExpvConfig, IndexSet, ToeplitzGenerator,
    ToeplitzStructure,
};
use std::sync::Arc;

/// How each `e^{L_j}` is applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExpMode {
    /// The Taylor action with an a-priori plan ([`koopman_core::taylor`]), on the path of
    /// [`TaylorPath`] (fused gather kernel by default): no host synchronisation inside, the
    /// training default.
    #[default]
    Taylor,
    /// Krylov `expv` with a-posteriori error control (never forms an `|N| x |N|` matrix; reads
    /// norms back from the device at every Krylov step).
    Krylov,
    /// Materialise `L_j` and take the dense exponential (reference path, `O(|N|^3)`; refused
    /// beyond the dense memory limit).
    Dense,
}

/// How one factor's coefficients are parametrised.
#[derive(Clone, Debug)]
enum FactorParams {
    /// Free complex coefficients.
    Free { re: Tensor, im: Tensor },
    /// `a_{-m} = conj(a_m)`: parameters on half of `M`, expanded by index tables.
    Symmetric {
        re: Tensor,
        im: Tensor,
        re_index: Tensor,
        im_index: Tensor,
    },
}

impl FactorParams {
    fn coefficients(&self) -> Result<ComplexTensor> {
        match self {
            Self::Free { re, im } => Ok(ComplexTensor::new(re.clone(), im.clone())?),
            Self::Symmetric {
                re,
                im,
                re_index,
                im_index,
            } => {
                let zero = Tensor::zeros(1, re.dtype(), re.device())?;
                let re_src = Tensor::cat(&[re, &zero], 0)?;
                let im_src = Tensor::cat(&[im, &im.neg()?, &zero], 0)?;
                Ok(ComplexTensor::new(
                    re_src.index_select(re_index, 0)?,
                    im_src.index_select(im_index, 0)?,
                )?)
            }
        }
    }
}

/// Index tables of the conjugate-symmetric parametrisation of offsets `m`: the number of
/// parameters `h` and, per offset, the source in `[re, 0]` and in `[im, -im, 0]`.
fn symmetric_tables(m: &IndexSet) -> Result<(usize, Vec<u32>, Vec<u32>)> {
    let positive = |p: &[i64]| p.iter().find(|&&v| v != 0).is_some_and(|&v| v > 0);
    let mut half: Vec<Vec<i64>> = Vec::new();
    let mut origin = None;
    for p in m.iter() {
        let neg: Vec<i64> = p.iter().map(|v| -v).collect();
        if m.position(&neg).is_none() {
            return Err(LayersError::InvalidArgument(format!(
                "conjugate symmetry needs a symmetric offset set: {p:?} is in M but {neg:?} is not"
            )));
        }
        if p.iter().all(|&v| v == 0) {
            origin = Some(half.len());
            half.push(p.to_vec());
        } else if positive(p) {
            half.push(p.to_vec());
        }
    }
    let h = half.len();
    let lookup = |p: &[i64]| half.iter().position(|q| q == p);
    let mut re_index = Vec::with_capacity(m.len());
    let mut im_index = Vec::with_capacity(m.len());
    for p in m.iter() {
        if let Some(i) = lookup(p) {
            re_index.push(i as u32);
            im_index.push(if Some(i) == origin {
                (2 * h) as u32
            } else {
                i as u32
            });
        } else {
            let neg: Vec<i64> = p.iter().map(|v| -v).collect();
            let i = lookup(&neg).ok_or_else(|| {
                LayersError::InvalidArgument(format!("no mirror of offset {p:?}"))
            })?;
            re_index.push(i as u32);
            im_index.push((h + i) as u32);
        }
    }
    Ok((h, re_index, im_index))
}

/// One layer: the parameters of `L_j` (coefficients per state coordinate and factor, and `t_j`).
#[derive(Clone, Debug)]
pub struct KoopmanLayer {
    index_set: Arc<IndexSet>,
    offsets: Vec<Arc<IndexSet>>,
    /// Gather tables and frequencies, built once on the layer's device.
    structure: Arc<ToeplitzStructure>,
    /// `params[k][r]` for the state coordinates `k`.
    params: Vec<Vec<FactorParams>>,
    time: Tensor,
    conjugate_symmetric: bool,
}

impl KoopmanLayer {
    /// Creates the layer's variables under `vb` (`coef{k}.{r}.re|im`, `time`). Coefficients start
    /// at zero (`e^{L} = I`) and `t_j` at `init_time`; [`crate::train::seed_coefficients`] draws
    /// seeded random coefficients afterwards.
    pub fn new(
        index_set: Arc<IndexSet>,
        offsets: Vec<Arc<IndexSet>>,
        conjugate_symmetric: bool,
        init_time: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        if offsets.is_empty() {
            return Err(LayersError::InvalidArgument(
                "a layer needs at least one Toeplitz factor (R >= 1)".into(),
            ));
        }
        for (r, m) in offsets.iter().enumerate() {
            if m.dim() != index_set.dim() {
                return Err(LayersError::ShapeMismatch(format!(
                    "offset set of factor {r} has dimension {}, the index set N has {}",
                    m.dim(),
                    index_set.dim()
                )));
            }
        }
        let state_dim = index_set.dim() - 1;
        let device = vb.device().clone();
        let mut params = Vec::with_capacity(state_dim);
        for k in 0..state_dim {
            let mut group = Vec::with_capacity(offsets.len());
            for (r, m) in offsets.iter().enumerate() {
                let vb = vb.pp(format!("coef{k}")).pp(r.to_string());
                group.push(if conjugate_symmetric {
                    let (h, re_index, im_index) = symmetric_tables(m)?;
                    FactorParams::Symmetric {
                        re: vb.get_with_hints(h, "re", Init::Const(0.0))?,
                        im: vb.get_with_hints(h, "im", Init::Const(0.0))?,
                        re_index: Tensor::from_vec(re_index, m.len(), &device)?,
                        im_index: Tensor::from_vec(im_index, m.len(), &device)?,
                    }
                } else {
                    FactorParams::Free {
                        re: vb.get_with_hints(m.len(), "re", Init::Const(0.0))?,
                        im: vb.get_with_hints(m.len(), "im", Init::Const(0.0))?,
                    }
                });
            }
            params.push(group);
        }
        let time = vb.get_with_hints((), "time", Init::Const(init_time))?;
        let structure =
            ToeplitzStructure::new(index_set.clone(), offsets.clone(), vb.dtype(), &device)?;
        Ok(Self {
            index_set,
            offsets,
            structure,
            params,
            time,
            conjugate_symmetric,
        })
    }

    /// Number of Toeplitz factors `R`.
    pub fn num_factors(&self) -> usize {
        self.offsets.len()
    }

    /// Whether the coefficients are conjugate-symmetric (a real vector field).
    pub fn conjugate_symmetric(&self) -> bool {
        self.conjugate_symmetric
    }

    /// The time `t_j` (scalar tensor, a variable).
    pub fn time(&self) -> &Tensor {
        &self.time
    }

    /// The generator `L_j` built from the current variables (gradients flow to them). The
    /// component along the extra output coordinate is zero.
    pub fn generator(&self) -> Result<ToeplitzGenerator> {
        let mut coeffs = Vec::with_capacity(self.index_set.dim());
        for group in &self.params {
            coeffs.push(
                group
                    .iter()
                    .map(FactorParams::coefficients)
                    .collect::<Result<Vec<_>>>()?,
            );
        }
        let (dtype, device) = (self.time.dtype(), self.time.device());
        coeffs.push(
            self.offsets
                .iter()
                .map(|m| Ok(ComplexTensor::zeros(m.len(), dtype, device)?))
                .collect::<Result<Vec<_>>>()?,
        );
        Ok(ToeplitzGenerator::from_structure(
            self.structure.clone(),
            coeffs,
            self.time.clone(),
        )?)
    }
}

/// Builder of [`DeepKoopmanLayered`] (candle style: configure, then `build(vb)`).
#[derive(Clone, Debug)]
pub struct DeepKoopmanLayeredBuilder {
    state_dim: usize,
    index_set: Arc<IndexSet>,
    offsets: Vec<Arc<IndexSet>>,
    layers: usize,
    conjugate_symmetric: bool,
    init_time: f64,
    function: CoordinateFunction,
    data_half_width: f64,
    expv: ExpvConfig,
    mode: ExpMode,
    taylor_path: TaylorPath,
    memory_limit: Option<u64>,
}

impl DeepKoopmanLayeredBuilder {
    /// A model of `state_dim` outputs over `N` (dimension `state_dim + 1`) with the offset sets
    /// `offsets` (one per factor, `R = offsets.len()`). Defaults: `J = 1`, free complex
    /// coefficients, `t_j = 1`, identity outputs on `[-pi/2, pi/2]`, the Taylor exponential on
    /// its automatic path, tolerance `1e-8`.
    pub fn new(state_dim: usize, index_set: Arc<IndexSet>, offsets: Vec<Arc<IndexSet>>) -> Self {
        Self {
            state_dim,
            index_set,
            offsets,
            layers: 1,
            conjugate_symmetric: false,
            init_time: 1.0,
            function: CoordinateFunction::Identity,
            data_half_width: std::f64::consts::FRAC_PI_2,
            expv: ExpvConfig {
                tol: 1e-8,
                ..Default::default()
            },
            mode: ExpMode::Taylor,
            taylor_path: TaylorPath::Auto,
            memory_limit: None,
        }
    }

    /// Largest memory, in bytes, the model (with one training step) may need by
    /// [`crate::memory::MemoryEstimate`]; [`Self::build`] refuses a larger one before
    /// allocating. Default: the memory the device has available (the host's on the CPU, the
    /// GPU's free memory on CUDA; no limit where it cannot be read).
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// The estimated memory of the model this builder makes, in `dtype`.
    pub fn memory_estimate(&self, dtype: DType) -> crate::memory::MemoryEstimate {
        crate::memory::MemoryEstimate::new(
            &self.index_set,
            &self.offsets,
            self.layers,
            dtype.size_in_bytes(),
        )
    }

    /// Number of layers `J >= 1`.
    pub fn layers(mut self, j: usize) -> Self {
        self.layers = j;
        self
    }

    /// Conjugate-symmetric coefficients `a_{-m} = conj(a_m)` (paper Remark 3: a real vector field).
    pub fn conjugate_symmetric(mut self, on: bool) -> Self {
        self.conjugate_symmetric = on;
        self
    }

    /// Initial `t_j`.
    pub fn init_time(mut self, t: f64) -> Self {
        self.init_time = t;
        self
    }

    /// The function of each coordinate that the outputs are, and the half-width `a` of the
    /// normalised data range.
    pub fn outputs(mut self, function: CoordinateFunction, a: f64) -> Self {
        self.function = function;
        self.data_half_width = a;
        self
    }

    /// Settings of the Krylov exponential; its tolerance is also the Taylor action's.
    pub fn expv_config(mut self, config: ExpvConfig) -> Self {
        self.expv = config;
        self
    }

    /// Taylor, Krylov or dense exponentials.
    pub fn exp_mode(mut self, mode: ExpMode) -> Self {
        self.mode = mode;
        self
    }

    /// The path of the Taylor exponential (automatic by default).
    pub fn taylor_path(mut self, path: TaylorPath) -> Self {
        self.taylor_path = path;
        self
    }

    /// Creates the variables under `vb` (`layer{j}.…`) and the model.
    pub fn build(self, vb: VarBuilder) -> Result<DeepKoopmanLayered> {
        if self.layers == 0 {
            return Err(LayersError::InvalidArgument(
                "the number of layers J must be at least 1".into(),
            ));
        }
        if self.index_set.dim() != self.state_dim + 1 {
            return Err(LayersError::ShapeMismatch(format!(
                "index set N has dimension {} but the model needs {} (state dimension {} plus the \
                 output coordinate)",
                self.index_set.dim(),
                self.state_dim + 1,
                self.state_dim
            )));
        }
        if !(self.init_time.is_finite()) {
            return Err(LayersError::NonFinite("initial time t_j".into()));
        }
        self.expv.validate()?;
        let limit = self
            .memory_limit
            .or_else(|| crate::memory::available_memory(vb.device()));
        if let Some(limit) = limit {
            self.memory_estimate(vb.dtype()).check(limit)?;
        }
        let observable = VectorObservable::new(
            self.state_dim,
            self.function,
            &self.index_set,
            self.data_half_width,
        )?;
        let layers = (0..self.layers)
            .map(|j| {
                KoopmanLayer::new(
                    self.index_set.clone(),
                    self.offsets.clone(),
                    self.conjugate_symmetric,
                    self.init_time,
                    vb.pp(format!("layer{j}")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let v = observable.coefficient_tensor(vb.dtype(), vb.device())?;
        Ok(DeepKoopmanLayered {
            index_set: self.index_set,
            layers,
            observable,
            v,
            expv: self.expv,
            mode: self.mode,
            taylor_path: self.taylor_path,
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }
}

/// `G = Q_N e^{L_1} ... e^{L_J} Q_N^* v` with outputs `Re G(x, y_k)`.
#[derive(Clone, Debug)]
pub struct DeepKoopmanLayered {
    index_set: Arc<IndexSet>,
    layers: Vec<KoopmanLayer>,
    observable: VectorObservable,
    v: ComplexTensor,
    expv: ExpvConfig,
    mode: ExpMode,
    taylor_path: TaylorPath,
    dtype: DType,
    device: Device,
}

impl candle_core::Module for DeepKoopmanLayered {
    /// [`DeepKoopmanLayered::forward_tensor`], with its error as a candle error.
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_tensor(xs).map_err(candle_core::Error::wrap)
    }
}

impl DeepKoopmanLayered {
    /// The layers, first (earliest in time) first.
    pub fn layers(&self) -> &[KoopmanLayer] {
        &self.layers
    }

    /// Number of layers `J`.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// The representation index set `N`.
    pub fn index_set(&self) -> &Arc<IndexSet> {
        &self.index_set
    }

    /// The output observable.
    pub fn observable(&self) -> &VectorObservable {
        &self.observable
    }

    /// The dtype the model computes in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device the model lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The exponential mode.
    pub fn exp_mode(&self) -> ExpMode {
        self.mode
    }

    /// Switches between Taylor, Krylov and dense exponentials.
    pub fn set_exp_mode(&mut self, mode: ExpMode) {
        self.mode = mode;
    }

    /// Sets the path of the Taylor exponential.
    pub fn set_taylor_path(&mut self, path: TaylorPath) {
        self.taylor_path = path;
    }

    /// The settings of the Taylor exponential (the model's tolerance and path).
    pub fn taylor_config(&self) -> TaylorConfig {
        TaylorConfig {
            tol: self.expv.tol,
            path: self.taylor_path,
            ..Default::default()
        }
    }

    /// The path and plan (degree, sub-steps, norm bound) the Taylor exponential takes for
    /// `generator`: what runs in [`DeepKoopmanLayered::apply_exp`] in [`ExpMode::Taylor`].
    pub fn taylor_plan(&self, generator: &ToeplitzGenerator) -> Result<(TaylorPath, TaylorPlan)> {
        Ok(taylor::plan(generator, 1.0, &self.taylor_config())?)
    }

    /// The Krylov settings.
    pub fn expv_config(&self) -> &ExpvConfig {
        &self.expv
    }

    /// The state dimension `d`.
    pub fn state_dim(&self) -> usize {
        self.observable.state_dim()
    }

    /// The generators of all layers from the current variables.
    pub fn generators(&self) -> Result<Vec<ToeplitzGenerator>> {
        self.layers.iter().map(KoopmanLayer::generator).collect()
    }

    /// `e^{L} c` by the configured path.
    pub fn apply_exp(
        &self,
        generator: &ToeplitzGenerator,
        c: &ComplexTensor,
    ) -> Result<ComplexTensor> {
        Ok(match self.mode {
            ExpMode::Taylor => expv_taylor(generator, 1.0, c, &self.taylor_config())?.0,
            ExpMode::Krylov => expv(generator, 1.0, c, &self.expv)?.0,
            ExpMode::Dense => expv_dense(generator, 1.0, c)?,
        })
    }

    /// `e^{L^*} c` (Taylor and Krylov paths: the adjoint is applied by gathers).
    pub fn apply_exp_adjoint(
        &self,
        generator: &ToeplitzGenerator,
        c: &ComplexTensor,
    ) -> Result<ComplexTensor> {
        let adjoint = Adjoint(generator);
        Ok(match self.mode {
            ExpMode::Taylor => expv_taylor(&adjoint, 1.0, c, &self.taylor_config())?.0,
            ExpMode::Krylov => expv(&adjoint, 1.0, c, &self.expv)?.0,
            ExpMode::Dense => expv_dense(&adjoint, 1.0, c)?,
        })
    }

    /// `Q_N^* v`, the coefficients of the output observable.
    pub fn observable_coefficients(&self) -> &ComplexTensor {
        &self.v
    }

    /// The suffix coefficients `c_j = e^{L_j} ... e^{L_J} Q_N^* v` for `j = 1..J` (index `j - 1`);
    /// `c_1` is the end-to-end model. One right-to-left sweep.
    pub fn suffix_coefficients(
        &self,
        generators: &[ToeplitzGenerator],
    ) -> Result<Vec<ComplexTensor>> {
        let mut out = Vec::with_capacity(generators.len());
        let mut c = self.v.clone();
        for g in generators.iter().rev() {
            c = self.apply_exp(g, &c)?;
            out.push(c.clone());
        }
        out.reverse();
        Ok(out)
    }

    /// The single-layer coefficients `e^{L_j} Q_N^* v` (window-wise model of layer `j`).
    pub fn window_coefficients(
        &self,
        generators: &[ToeplitzGenerator],
    ) -> Result<Vec<ComplexTensor>> {
        generators
            .iter()
            .map(|g| self.apply_exp(g, &self.v))
            .collect()
    }

    /// Outputs `Re G(x_b, y_k)` `(B, d)` for coefficients `c` at precomputed features.
    pub fn evaluate(&self, c: &ComplexTensor, features: &(Tensor, Tensor)) -> Result<Tensor> {
        self.observable.evaluate(c, features)
    }

    /// Cos/sin features of torus samples `z` (row-major, `d` columns).
    pub fn features(&self, z: &[f64]) -> Result<(Tensor, Tensor)> {
        self.observable.features(z, self.dtype, &self.device)
    }

    /// The end-to-end coefficients `c_1 = e^{L_1} ... e^{L_J} Q_N^* v`.
    fn end_to_end(&self) -> Result<ComplexTensor> {
        let generators = self.generators()?;
        self.suffix_coefficients(&generators)?
            .into_iter()
            .next()
            .ok_or_else(|| LayersError::InvalidArgument("model without layers".into()))
    }

    /// End-to-end prediction (torus coordinates in, outputs `f(x_T)` out, row-major).
    pub fn predict(&self, z: &[f64]) -> Result<Vec<f64>> {
        self.predict_with(&self.end_to_end()?, z)
    }

    /// End-to-end outputs `(B, d)` for torus coordinates `z` `(B, d)` on the model's device,
    /// differentiable in the model's variables (the tensor form of [`predict`](Self::predict),
    /// also [`candle_core::Module::forward`]).
    pub fn forward_tensor(&self, z: &Tensor) -> Result<Tensor> {
        if !z.device().same_device(&self.device) {
            return Err(LayersError::InvalidArgument(format!(
                "samples on {:?}, the model is on {:?}",
                z.device(),
                self.device
            )));
        }
        let features = self.observable.features_tensor(z, self.dtype)?;
        self.evaluate(&self.end_to_end()?, &features)
    }

    /// Prediction with given coefficients (e.g. a suffix or a single layer).
    pub fn predict_with(&self, c: &ComplexTensor, z: &[f64]) -> Result<Vec<f64>> {
        let features = self.features(z)?;
        Ok(self
            .evaluate(&c.detach(), &features)?
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?)
    }
}
