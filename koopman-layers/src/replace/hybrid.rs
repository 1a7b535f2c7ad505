//! The hybrid model: an MLP whose layer `k` is replaced by a delay-embedded linear readout, fitted
//! from a scaled layer's trajectories, with its files (safetensors + JSON).

use super::hankel::{embed, Embedded};
use super::scaling::{pad_to, ScaledLayer, Trajectories};
use crate::error::{LayersError, Result};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::Linear;
use koopman_core::c64;
use koopman_core::dmd::{choose_rank, RankPolicy};
use koopman_core::faer::Mat;
use koopman_core::linalg::{self, SolveOptions};
use koopman_core::nn::{save_tensors_atomic, Activation, Mlp};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Which readout a hybrid uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadoutKind {
    /// Step the reduced Hankel-DMD model to the final state (the paper's).
    Iterated,
    /// Least squares from the first window plus a constant to the original layer output.
    Direct,
}

impl ReadoutKind {
    /// `iterated` or `direct`.
    pub fn name(&self) -> &'static str {
        match self {
            ReadoutKind::Iterated => "iterated",
            ReadoutKind::Direct => "direct",
        }
    }
}

/// Settings of [`fit_hybrid`].
#[derive(Clone, Debug, PartialEq)]
pub struct HybridConfig {
    /// Window length `h` (stacked states per delay-embedded state; 1 is plain DMD); at most
    /// `S + 1`.
    pub delays: usize,
    /// DMD rank `r` (iterated readout); at most `min(h * width, number of windows)`.
    pub rank: usize,
    /// The readout.
    pub readout: ReadoutKind,
    /// Standardise every state coordinate (mean 0, standard deviation 1 over all states) before
    /// the DMD fit.
    pub normalize: bool,
    /// Pull DMD eigenvalues of modulus > 1 back onto the unit circle.
    pub stabilize: bool,
    /// Append the constant observable 1 to every state before the DMD fit (iterated readout),
    /// so the linear model can carry the layers' biases.
    pub affine: bool,
    /// Fit on at most this many trajectories (the first ones); `None` uses all.
    pub max_trajectories: Option<usize>,
}

impl Default for HybridConfig {
    fn default() -> Self {
        Self {
            delays: 1,
            rank: 8,
            readout: ReadoutKind::Iterated,
            normalize: false,
            stabilize: false,
            affine: false,
            max_trajectories: None,
        }
    }
}

/// What describes a hybrid besides its tensors (written as JSON beside them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HybridMeta {
    /// Format tag.
    pub format: String,
    /// Widths of the original MLP.
    pub sizes: Vec<usize>,
    /// Its activation.
    pub activation: Activation,
    /// The replaced Linear layer.
    pub layer: usize,
    /// Width of the trajectory states.
    pub width: usize,
    /// Scaled layers trained (`S`).
    pub scaled_layers: usize,
    /// Window length `h`.
    pub delays: usize,
    /// DMD rank requested.
    pub requested_rank: usize,
    /// DMD rank used (the numerical rank may be lower); 0 for the direct readout.
    pub rank: usize,
    /// Linear steps from the first window to the window ending in the output (`S + 2 - h`).
    pub steps: usize,
    /// Padding constant.
    pub pad_value: f64,
    /// The readout.
    pub readout: ReadoutKind,
    /// Whether states were standardised.
    pub normalize: bool,
    /// Whether eigenvalues were stabilised.
    pub stabilize: bool,
    /// Whether every state carries the constant observable 1 (iterated readout).
    #[serde(default)]
    pub affine: bool,
}

const FORMAT: &str = "koopman-hybrid-v1";

/// An MLP whose layer `k` is replaced by a delay-embedded linear readout; see the
/// [module documentation](super).
#[derive(Clone, Debug)]
pub struct HybridModel {
    meta: HybridMeta,
    before: Vec<Linear>,
    scaled: Vec<Linear>,
    after: Vec<Linear>,
    /// Readout tensors (f64): iterated `mean, scale, u, a_t, b_out, out_mean, out_scale`;
    /// direct `weight`.
    readout: HashMap<String, Tensor>,
    eigenvalues: Vec<c64>,
}

fn to_tensor(m: &Mat<f64>, device: &Device) -> Result<Tensor> {
    Ok(linalg::tensor_from_mat(m.as_ref(), device)?)
}

/// Fits a hybrid from a scaled layer and its trajectories; see the
/// [module documentation](super). Fails on a delay or rank too large for the data.
pub fn fit_hybrid(
    scaled: &ScaledLayer,
    trajectories: &Trajectories,
    config: &HybridConfig,
) -> Result<HybridModel> {
    let m = trajectories.len_states();
    let width = scaled.width();
    if trajectories.states.is_empty() || m != scaled.num_scaled() + 2 {
        return Err(LayersError::InvalidArgument(format!(
            "trajectories of {m} states do not belong to a block of {} scaled layers",
            scaled.num_scaled()
        )));
    }
    let h = config.delays;
    if h == 0 || h > m - 1 {
        return Err(LayersError::InvalidArgument(format!(
            "delay window h = {h} too large or zero: trajectories have S + 2 = {m} states, so 1 <= h <= {}",
            m - 1
        )));
    }
    let count = config
        .max_trajectories
        .unwrap_or(trajectories.states.len())
        .min(trajectories.states.len());
    if count == 0 {
        return Err(LayersError::InvalidArgument(
            "no trajectories to fit".into(),
        ));
    }
    let steps = m - h;
    let affine = config.affine && config.readout == ReadoutKind::Iterated;
    let width_eff = width + usize::from(affine);
    let n = h * width_eff;
    let out = scaled.out_dim();
    let device = scaled.mlp.layer(0)?.weight().device().clone();
    let mut readout = HashMap::new();
    let mut eigenvalues = Vec::new();
    let mut rank_used = 0;
    match config.readout {
        ReadoutKind::Direct => {
            // Features: first window plus a constant; targets: original output.
            let n = h * width;
            let feats = Mat::from_fn(count, n + 1, |i, j| {
                if j == n {
                    1.0
                } else {
                    trajectories.states[i][(j % width, j / width)]
                }
            });
            let targets = trajectories.original_output.as_ref().subrows(0, count);
            let (w, _) = linalg::lstsq(feats.as_ref(), targets, &SolveOptions::default())?;
            readout.insert("weight".to_string(), to_tensor(&w, &device)?);
        }
        ReadoutKind::Iterated => {
            let windows = count * (m - h);
            let max_rank = n.min(windows);
            if config.rank == 0 || config.rank > max_rank {
                return Err(LayersError::InvalidArgument(format!(
                    "rank r = {} out of range: the delay-embedded data ({n} x {windows}) allow 1 <= r <= {max_rank}",
                    config.rank
                )));
            }
            let Embedded { mean, scale, x, y } =
                embed(trajectories, count, h, affine, config.normalize)?;
            // Thin SVD of X through its Gram matrix (n x n; the windows far outnumber n).
            let gram = x.as_ref() * x.as_ref().transpose();
            let svd = linalg::thin_svd(gram.as_ref())?;
            let s: Vec<f64> = svd.s.iter().map(|v| v.max(0.0).sqrt()).collect();
            let s1 = s.first().copied().unwrap_or(0.0);
            // The Gram route resolves singular values down to ~sqrt(eps) s_1.
            let floor = 1e-7 * s1;
            let r = choose_rank(&s, n, windows, &RankPolicy::Fixed(config.rank))?
                .min(s.iter().take_while(|&&v| v > floor).count());
            if r == 0 {
                return Err(LayersError::InvalidArgument(
                    "the trajectories carry no signal (all states equal)".into(),
                ));
            }
            rank_used = r;
            let ur = svd.u.as_ref().subcols(0, r).to_owned();
            let yx = y.as_ref() * x.as_ref().transpose();
            let yxu = yx.as_ref() * ur.as_ref();
            let b = Mat::from_fn(n, r, |i, j| yxu[(i, j)] / (s[j] * s[j]));
            let mut ar = ur.as_ref().transpose() * b.as_ref();
            let (vals, vecs) = linalg::eig(ar.as_ref())?;
            eigenvalues = vals.clone();
            if config.stabilize && vals.iter().any(|l| l.norm() > 1.0) {
                let clamped: Vec<c64> = vals
                    .iter()
                    .map(|l| if l.norm() > 1.0 { l / l.norm() } else { *l })
                    .collect();
                let eye = Mat::<c64>::identity(r, r);
                let (winv, _) =
                    linalg::lstsq(vecs.as_ref(), eye.as_ref(), &SolveOptions::default())?;
                let wl = Mat::from_fn(r, r, |i, j| vecs[(i, j)] * clamped[j]);
                let rebuilt = wl.as_ref() * winv.as_ref();
                ar = Mat::from_fn(r, r, |i, j| rebuilt[(i, j)].re);
                eigenvalues = clamped;
            }
            // Rows of B giving the first `out` coordinates of the last state of the window.
            let last = (h - 1) * width_eff;
            let b_out = Mat::from_fn(r, out, |i, j| b[(last + j, i)]);
            let a_t = ar.transpose().to_owned();
            let mean_w = Mat::from_fn(1, n, |_, j| mean.get(j % width_eff).copied().unwrap_or(0.0));
            let scale_w = Mat::from_fn(1, n, |_, j| {
                scale.get(j % width_eff).copied().unwrap_or(1.0)
            });
            let out_mean = Mat::from_fn(1, out, |_, j| mean[j]);
            let out_scale = Mat::from_fn(1, out, |_, j| scale[j]);
            for (name, mat) in [
                ("mean", &mean_w),
                ("scale", &scale_w),
                ("u", &ur),
                ("a_t", &a_t),
                ("b_out", &b_out),
                ("out_mean", &out_mean),
                ("out_scale", &out_scale),
            ] {
                readout.insert(name.to_string(), to_tensor(mat, &device)?);
            }
        }
    }
    let mlp = &scaled.mlp;
    let k = scaled.layer;
    Ok(HybridModel {
        meta: HybridMeta {
            format: FORMAT.into(),
            sizes: mlp.sizes().to_vec(),
            activation: mlp.activation(),
            layer: k,
            width,
            scaled_layers: scaled.num_scaled(),
            delays: h,
            requested_rank: config.rank,
            rank: rank_used,
            steps,
            pad_value: trajectories.pad_value,
            readout: config.readout,
            normalize: config.normalize,
            stabilize: config.stabilize,
            affine,
        },
        before: mlp.layers()[..k].to_vec(),
        scaled: scaled.scaled[..h - 1].to_vec(),
        after: mlp.layers()[k + 1..].to_vec(),
        readout,
        eigenvalues,
    })
}

impl HybridModel {
    /// The dtype of the MLP weights (f32 where the hybrid keeps no MLP layer).
    pub fn dtype(&self) -> DType {
        self.before
            .iter()
            .chain(&self.after)
            .next()
            .map_or(DType::F32, |l| l.weight().dtype())
    }

    /// The metadata.
    pub fn meta(&self) -> &HybridMeta {
        &self.meta
    }

    /// Eigenvalues of the reduced DMD operator (after stabilisation, if requested); empty for
    /// the direct readout.
    pub fn eigenvalues(&self) -> &[c64] {
        &self.eigenvalues
    }

    fn r(&self, name: &str) -> candle_core::Result<&Tensor> {
        self.readout
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("readout tensor '{name}' missing")))
    }

    /// The first delay-embedded window `w_0` (`batch x h * width`, f64) for network inputs `x`.
    pub fn first_window(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let act = self.meta.activation;
        let mut h = x.clone();
        if let Some(l) = self.before.first() {
            h = h.to_dtype(l.weight().dtype())?;
        }
        for l in &self.before {
            h = act.apply(&l.forward(&h)?)?;
        }
        let width = self.meta.width;
        let pad = self.meta.pad_value;
        let affine = self.meta.affine;
        let state = |h: &Tensor| -> candle_core::Result<Tensor> {
            let p = pad_to(h, width, pad)?.to_dtype(DType::F64)?;
            if affine {
                let ones = Tensor::ones((p.dims()[0], 1), DType::F64, p.device())?;
                Tensor::cat(&[&p, &ones], 1)
            } else {
                Ok(p)
            }
        };
        let mut states = vec![state(&h)?];
        for l in &self.scaled {
            h = l.forward(&h.to_dtype(l.weight().dtype())?)?.relu()?;
            states.push(state(&h)?);
        }
        Tensor::cat(&states, 1)
    }

    /// The readout: the replaced layer's (post-activation) output predicted from `x`, f64.
    pub fn replaced_output(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let w0 = self.first_window(x)?;
        match self.meta.readout {
            ReadoutKind::Direct => {
                let ones = Tensor::ones((w0.dims()[0], 1), DType::F64, w0.device())?;
                Tensor::cat(&[&w0, &ones], 1)?.matmul(self.r("weight")?)
            }
            ReadoutKind::Iterated => {
                let w = w0
                    .broadcast_sub(self.r("mean")?)?
                    .broadcast_div(self.r("scale")?)?;
                let mut z = w.matmul(self.r("u")?)?;
                let a_t = self.r("a_t")?;
                for _ in 1..self.meta.steps {
                    z = z.matmul(a_t)?;
                }
                z.matmul(self.r("b_out")?)?
                    .broadcast_mul(self.r("out_scale")?)?
                    .broadcast_add(self.r("out_mean")?)
            }
        }
    }

    /// Saves the hybrid: tensors to `path` (safetensors), metadata to `path` with extension
    /// `json`; both atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut tensors = HashMap::new();
        for (prefix, layers) in [
            ("before", &self.before),
            ("scaled", &self.scaled),
            ("after", &self.after),
        ] {
            for (i, l) in layers.iter().enumerate() {
                tensors.insert(format!("{prefix}.{i}.weight"), l.weight().clone());
                if let Some(b) = l.bias() {
                    tensors.insert(format!("{prefix}.{i}.bias"), b.clone());
                }
            }
        }
        for (k, t) in &self.readout {
            tensors.insert(format!("readout.{k}"), t.clone());
        }
        if !self.eigenvalues.is_empty() {
            let flat: Vec<f64> = self.eigenvalues.iter().flat_map(|z| [z.re, z.im]).collect();
            let dev = self.r("u")?.device().clone();
            tensors.insert(
                "readout.eigenvalues".into(),
                Tensor::from_vec(flat, (self.eigenvalues.len(), 2), &dev)?,
            );
        }
        save_tensors_atomic(&tensors, path)?;
        koopman_core::io::write_atomic(
            meta_path(path),
            serde_json::to_string_pretty(&self.meta)?.as_bytes(),
        )?;
        Ok(())
    }

    /// Loads a hybrid written by [`save`](Self::save) onto `device`; missing or misshapen
    /// tensors and inconsistent metadata are [`LayersError::Format`] errors.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        let mp = meta_path(path);
        let text = std::fs::read_to_string(&mp).map_err(|source| {
            LayersError::Core(koopman_core::CoreError::Io {
                path: mp.clone(),
                source,
            })
        })?;
        let meta: HybridMeta = serde_json::from_str(&text)?;
        if meta.format != FORMAT {
            return Err(LayersError::Format(format!(
                "{}: format '{}', expected '{FORMAT}'",
                mp.display(),
                meta.format
            )));
        }
        let l = meta.sizes.len();
        if l < 2 || meta.layer + 1 >= l || meta.delays == 0 || meta.delays > meta.scaled_layers + 1
        {
            return Err(LayersError::Format(format!(
                "{}: inconsistent metadata (sizes {:?}, layer {}, h {}, S {})",
                mp.display(),
                meta.sizes,
                meta.layer,
                meta.delays,
                meta.scaled_layers
            )));
        }
        let tensors = load_raw(path, device)?;
        let get = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let t = tensors.get(name).ok_or_else(|| {
                LayersError::Format(format!("{}: missing tensor '{name}'", path.display()))
            })?;
            if t.dims() != shape {
                return Err(LayersError::Format(format!(
                    "{}: tensor '{name}' has shape {:?}, expected {shape:?}",
                    path.display(),
                    t.dims()
                )));
            }
            Ok(t.clone())
        };
        let k = meta.layer;
        let sizes = &meta.sizes;
        let linear = |prefix: &str, i: usize, inp: usize, out: usize| -> Result<Linear> {
            Ok(Linear::new(
                get(&format!("{prefix}.{i}.weight"), &[out, inp])?,
                Some(get(&format!("{prefix}.{i}.bias"), &[out])?),
            ))
        };
        let before = (0..k)
            .map(|i| linear("before", i, sizes[i], sizes[i + 1]))
            .collect::<Result<Vec<_>>>()?;
        let inp = sizes[k];
        let scaled = (0..meta.delays - 1)
            .map(|j| linear("scaled", j, inp, inp))
            .collect::<Result<Vec<_>>>()?;
        let after = (k + 1..l - 1)
            .map(|i| linear("after", i - k - 1, sizes[i], sizes[i + 1]))
            .collect::<Result<Vec<_>>>()?;
        let n = meta.delays * meta.width;
        let n_it = meta.delays * (meta.width + usize::from(meta.affine));
        let out = sizes[k + 1];
        let mut readout = HashMap::new();
        let mut eigenvalues = Vec::new();
        match meta.readout {
            ReadoutKind::Direct => {
                readout.insert("weight".into(), get("readout.weight", &[n + 1, out])?);
            }
            ReadoutKind::Iterated => {
                let r = meta.rank;
                for (name, shape) in [
                    ("mean", [1, n_it]),
                    ("scale", [1, n_it]),
                    ("u", [n_it, r]),
                    ("a_t", [r, r]),
                    ("b_out", [r, out]),
                    ("out_mean", [1, out]),
                    ("out_scale", [1, out]),
                ] {
                    readout.insert(name.to_string(), get(&format!("readout.{name}"), &shape)?);
                }
                if let Some(e) = tensors.get("readout.eigenvalues") {
                    eigenvalues = e
                        .to_dtype(DType::F64)?
                        .to_vec2::<f64>()?
                        .into_iter()
                        .map(|p| c64::new(p[0], p.get(1).copied().unwrap_or(0.0)))
                        .collect();
                }
            }
        }
        Ok(Self {
            meta,
            before,
            scaled,
            after,
            readout,
            eigenvalues,
        })
    }
}

fn meta_path(path: &Path) -> PathBuf {
    path.with_extension("json")
}

fn load_raw(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    // Keep every tensor's stored dtype (MLP weights f32, readout f64).
    let bytes = std::fs::read(path).map_err(|source| {
        LayersError::Core(koopman_core::CoreError::Io {
            path: path.to_path_buf(),
            source,
        })
    })?;
    candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| {
        LayersError::Format(format!(
            "{}: not a readable safetensors file ({e})",
            path.display()
        ))
    })
}

/// Loads an MLP for replacement (re-export of [`Mlp::load`] with f32 weights).
pub fn load_mlp(path: impl AsRef<Path>, activation: Activation, device: &Device) -> Result<Mlp> {
    Ok(Mlp::load(path, activation, DType::F32, device)?)
}

impl Module for HybridModel {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.replaced_output(x)?;
        let act = self.meta.activation;
        let last = self.meta.sizes.len() - 2;
        let mut h = match self.after.first() {
            Some(l) => y.to_dtype(l.weight().dtype())?,
            None => y,
        };
        for (j, l) in self.after.iter().enumerate() {
            h = l.forward(&h)?;
            if self.meta.layer + 1 + j < last {
                h = act.apply(&h)?;
            }
        }
        // Logits in the model's dtype.
        h.to_dtype(self.dtype())
    }
}
