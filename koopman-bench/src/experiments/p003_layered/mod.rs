//! Deep Koopman-layered models with Toeplitz generators (paper 003).
//!
//! Three experiments on the example systems of SPEC 3.1, all trained with candle-nn AdamW (weight
//! decay 0, lr `1e-3`), the model's default exponential (the device-resident Taylor action,
//! `koopman_core::taylor`, on its fused gather kernel) forward and backward:
//!
//! | name | system | claim |
//! |---|---|---|
//! | `layered_vdp` | van der Pol, `mu = 3`, pairs `(x_0, x_100)` | `J = 2` beats `J = 1`; the norm regulariser helps on 30 noisy samples with `J = 3` |
//! | `layered_measure` | measure-preserving flow on `T^2` | layer eigenvalues on the unit circle; per-window EDMD / kernel DMD not |
//! | `layered_damped` | damped forced oscillator | layer eigenvalues inside the unit disk, changing along the layers |

pub mod damped;
pub mod krylov;
pub mod measure;
pub mod vdp;

use crate::experiments::BySize;
use crate::report::RunContext;
use crate::Result;
use indicatif::ProgressBar;
use koopman_core::dmd::KernelDmdConfig;
use koopman_core::{c64, IndexSet};
use koopman_layers::analysis::{
    layer_eigenvalues, state_dictionary, unit_circle_svg, window_edmd_eigenvalues,
    window_kernel_dmd_eigenvalues,
};
use koopman_layers::train::{data_loss, Loss, SnapshotData, TrainConfig, Trainer};
use koopman_layers::{
    CoordinateFunction, DeepKoopmanLayered, DeepKoopmanLayeredBuilder, TorusNormalization,
};
use std::sync::Arc;

/// `M = {-2..2}^2 x {-1..1} \ {0}` (74 offsets), the paper's offset set.
fn offsets() -> Result<Arc<IndexSet>> {
    Ok(Arc::new(
        IndexSet::product_of_ranges(&[(-2, 2), (-2, 2), (-1, 1)])?.without_origin()?,
    ))
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Trains a window-wise model on trajectories and returns the eigenvalues before and after.
struct WindowRun {
    initial: Vec<Vec<c64>>,
    trained: Vec<Vec<c64>>,
    data: SnapshotData,
    first_loss: f64,
    last_loss: f64,
    /// The trained model.
    model: DeepKoopmanLayered,
}

/// How a window-wise model is trained: initial coefficient std, AdamW learning rate and the
/// coefficients' weight decay.
#[derive(Clone, Copy)]
struct WindowTraining {
    init_std: f64,
    lr: f64,
    coefficient_decay: f64,
}

/// Trains 5 conjugate-symmetric layers window-wise on `traj` (`sizes.n_traj` trajectories of
/// `sizes.n_time` steps, windows of 20) as `training` says.
fn window_run(
    ctx: &RunContext,
    sizes: &WindowSizes,
    traj: &[f64],
    norm: &TorusNormalization,
    function: CoordinateFunction,
    training: WindowTraining,
) -> Result<WindowRun> {
    let z = norm.forward(traj)?;
    let data = SnapshotData::from_trajectories(&z, sizes.n_traj, sizes.n_time, 2, 20, 5)?;
    let config = TrainConfig {
        loss: Loss::WindowWise,
        steps: sizes.steps,
        lr: training.lr,
        continuity_weight: 0.01,
        coefficient_decay: training.coefficient_decay,
        power_iterations: sizes.power_iterations,
        batch_size: Some(sizes.batch_size),
        init_std: training.init_std,
        seed: ctx.seed,
        progress: false,
        ..Default::default()
    };
    let builder = window_builder(sizes, norm, function)?;
    let mut trainer = Trainer::on(builder, &config, candle_core::DType::F64, &ctx.device)?;
    let initial = layer_eigenvalues(&trainer.model, 2000)?;
    // A broken-input run keeps the layers as initialised (no training step).
    let losses = if ctx.broken_input {
        vec![window_loss(&trainer.model, &data)?]
    } else {
        trainer.train(&data, &config)?.losses
    };
    let trained = layer_eigenvalues(&trainer.model, 2000)?;
    let k = losses.len().clamp(1, 10);
    Ok(WindowRun {
        initial,
        trained,
        data,
        first_loss: mean(&losses[..k.min(losses.len())]),
        last_loss: mean(&losses[losses.len().saturating_sub(k)..]),
        model: trainer.model,
    })
}

/// The window-wise model: 5 conjugate-symmetric layers on `sizes.index_set`, outputs `function`
/// of the state in `norm`'s units.
fn window_builder(
    sizes: &WindowSizes,
    norm: &TorusNormalization,
    function: CoordinateFunction,
) -> Result<DeepKoopmanLayeredBuilder> {
    Ok(
        DeepKoopmanLayeredBuilder::new(2, sizes.index_set()?, vec![offsets()?])
            .layers(5)
            .conjugate_symmetric(true)
            .outputs(function, norm.a),
    )
}

/// Window-wise loss of `model` on all windows of `data`.
fn window_loss(model: &DeepKoopmanLayered, data: &SnapshotData) -> Result<f64> {
    Ok(data_loss(model, data, Loss::WindowWise)?.to_scalar::<f64>()?)
}

fn write_svg(ctx: &RunContext, name: &str, title: &str, sets: &[(&str, &[c64])]) -> Result<String> {
    ctx.write_file(name, &unit_circle_svg(title, sets))
}

/// Sizes of the window-wise experiments on T^2 (`layered_measure`, `layered_damped`).
#[derive(Clone, Copy, Debug)]
pub struct WindowSizes {
    /// `r` of the index set `N = {-r..r}^2 x {-2..2} \ {0}`.
    pub radius: i64,
    /// Trajectories.
    pub n_traj: usize,
    /// Time steps per trajectory.
    pub n_time: usize,
    /// AdamW steps.
    pub steps: usize,
    /// Power iterations of the norm regulariser's spectral-norm estimate.
    pub power_iterations: usize,
    /// Windows per mini-batch.
    pub batch_size: usize,
}

/// Full: the paper's 1,000 trajectories, `r = 5`, 3,000 steps.
pub const WINDOW_SIZES: BySize<WindowSizes> = BySize {
    smoke: WindowSizes {
        radius: 1,
        n_traj: 10,
        n_time: 120,
        steps: 5,
        power_iterations: 1,
        batch_size: 50,
    },
    quick: WindowSizes {
        radius: 2,
        n_traj: 40,
        n_time: 120,
        steps: 100,
        power_iterations: 1,
        batch_size: 200,
    },
    full: WindowSizes {
        radius: 5,
        n_traj: 1000,
        n_time: 120,
        steps: 3000,
        power_iterations: 3,
        batch_size: 500,
    },
};

impl WindowSizes {
    /// `N = {-r..r}^2 x {-2..2} \ {0}`.
    fn index_set(&self) -> Result<Arc<IndexSet>> {
        let r = self.radius;
        Ok(Arc::new(
            IndexSet::product_of_ranges(&[(-r, r), (-r, r), (-2, 2)])?.without_origin()?,
        ))
    }
}

/// EDMD and kernel DMD of each window separately, on the windows a layered model trains on (the
/// paper's comparison in Figures 2 and 3).
struct WindowBaselines {
    /// EDMD's dictionary: `exp(i n.x)` for the state frequencies of `N`.
    dictionary: Arc<IndexSet>,
    /// EDMD's eigenvalues per window.
    edmd: Vec<Vec<c64>>,
    /// Kernel DMD's settings (Gaussian kernel, bandwidth 1, rank up to 60).
    kdmd_config: KernelDmdConfig,
    /// Kernel DMD's eigenvalues per window (first 1000 samples of each).
    kdmd: Vec<Vec<c64>>,
}

fn window_baselines(
    data: &SnapshotData,
    index_set: &IndexSet,
    progress: &ProgressBar,
) -> Result<WindowBaselines> {
    let dictionary = state_dictionary(index_set, 2)?;
    let edmd = window_edmd_eigenvalues(data, dictionary.clone())?;
    progress.inc(1);
    let kdmd_config = KernelDmdConfig {
        bandwidth: 1.0,
        rank: dictionary.len().min(60),
        rcond: 1e-10,
    };
    let kdmd = window_kernel_dmd_eigenvalues(data, &kdmd_config, 1000)?;
    progress.inc(1);
    Ok(WindowBaselines {
        dictionary,
        edmd,
        kdmd_config,
        kdmd,
    })
}

/// Mean absolute difference of the sorted moduli of two spectra of equal size.
fn spectrum_shift(a: &[c64], b: &[c64]) -> f64 {
    let mut x: Vec<f64> = a.iter().map(|z| z.norm()).collect();
    let mut y: Vec<f64> = b.iter().map(|z| z.norm()).collect();
    x.sort_by(f64::total_cmp);
    y.sort_by(f64::total_cmp);
    mean(
        &x.iter()
            .zip(&y)
            .map(|(u, v)| (u - v).abs())
            .collect::<Vec<_>>(),
    )
}
