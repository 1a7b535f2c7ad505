//! One training step of the deep Koopman-layered model (paper 003), by exponential path and
//! dtype, and at a large `|N|`.

use super::paper_offsets;
use crate::device::timed;
use crate::report::sci;
use crate::Result;
use candle_core::{DType, Device};
use koopman_core::{IndexSet, TaylorPath, TaylorPlan};
use serde::Serialize;
use std::sync::Arc;

/// One timed configuration of the layered training step.
#[derive(Clone, Debug, Serialize)]
pub struct StepRow {
    /// `taylor`, `krylov` or `dense exponential`.
    pub exponential: String,
    /// For Taylor rows: the path that ran and the first layer's plan at the last timed step.
    pub taylor: Option<(TaylorPath, TaylorPlan)>,
    /// `f64` or `f32`.
    pub dtype: String,
    /// Median seconds of one step (forward, backward, AdamW), after one warm-up step.
    pub seconds: f64,
    /// Seconds of the warm-up step (it also prepares the features on the device).
    pub first_step_seconds: f64,
    /// Steps timed after the warm-up.
    pub repeats: usize,
}

/// One training step of the deep Koopman-layered model, by exponential path and dtype.
#[derive(Clone, Debug, Serialize)]
pub struct LayeredStepTiming {
    /// `|N|`.
    pub n: usize,
    /// `|M|`.
    pub m: usize,
    /// `J`.
    pub layers: usize,
    /// Samples per step.
    pub batch: usize,
    /// One row per configuration.
    pub rows: Vec<StepRow>,
    /// The step at a large `|N|` (where run).
    pub scale: Option<ScaleStepTiming>,
}

/// One training step at a large `|N|` (Taylor action, f64).
#[derive(Clone, Debug, Serialize)]
pub struct ScaleStepTiming {
    /// `|N|`.
    pub n: usize,
    /// The timed configuration.
    pub row: StepRow,
    /// Peak bytes allocated on the device during the timed steps (the high-water mark of the
    /// CUDA memory pool the allocations come from), where the device reports it.
    pub peak_device_bytes: Option<u64>,
    /// What the dense path said when asked for the same step.
    pub dense_refusal: String,
}

/// Van der Pol pairs `(x_0, x_100)` on the torus, the data of the layered step timings.
fn layered_step_data(batch: usize) -> Result<koopman_layers::train::SnapshotData> {
    use koopman_layers::systems::{van_der_pol_pairs, VanDerPol};
    use koopman_layers::train::SnapshotData;
    use koopman_layers::TorusNormalization;
    let (x0, xt) = van_der_pol_pairs(&VanDerPol::default(), batch, 0.01, 0);
    let all: Vec<f64> = x0.iter().chain(&xt).copied().collect();
    let norm = TorusNormalization::fit(&all, 2, std::f64::consts::FRAC_PI_2).map_err(layered)?;
    SnapshotData::new(
        vec![
            norm.forward(&x0).map_err(layered)?,
            norm.forward(&xt).map_err(layered)?,
        ],
        2,
    )
    .map_err(layered)
}

fn layered(e: koopman_layers::LayersError) -> crate::BenchError {
    crate::BenchError::Usage(format!("koopman-layers: {e}"))
}

/// One configuration of [`time_steps`].
#[derive(Clone, Copy, Debug)]
struct StepSetup {
    exponential: koopman_layers::model::ExpMode,
    path: TaylorPath,
    dtype: DType,
    repeats: usize,
}

/// Times training steps (end-to-end loss, forward + backward + AdamW) of a `J`-layer model over
/// `N = {-r..r}^3 \ {0}`, `M` = [`paper_offsets`], seeded init 0.01: one warm-up step, then the
/// median of `repeats` (fewer when a step takes over a second).
fn time_steps(
    radius: i64,
    layers: usize,
    data: &koopman_layers::train::SnapshotData,
    setup: StepSetup,
    device: &Device,
) -> Result<StepRow> {
    let StepSetup {
        exponential,
        path,
        dtype,
        repeats,
    } = setup;
    use koopman_layers::model::{DeepKoopmanLayeredBuilder, ExpMode};
    use koopman_layers::train::{TrainConfig, Trainer};
    let n = Arc::new(IndexSet::cube(3, radius)?.without_origin()?);
    let config = TrainConfig {
        steps: 1,
        init_std: 0.01,
        progress: false,
        ..Default::default()
    };
    let builder = DeepKoopmanLayeredBuilder::new(2, n, vec![paper_offsets()?])
        .layers(layers)
        .exp_mode(exponential)
        .taylor_path(path);
    let mut trainer = Trainer::on(builder, &config, dtype, device).map_err(layered)?;
    let (_, first_step_seconds) =
        timed(device, || trainer.step(data, &config, 0).map_err(layered))?;
    let repeats = if first_step_seconds > 1.0 {
        1
    } else {
        repeats.max(1)
    };
    let mut times = Vec::with_capacity(repeats);
    for step in 0..repeats {
        let (_, secs) = timed(device, || {
            trainer
                .step(data, &config, step as u64 + 1)
                .map_err(layered)
        })?;
        times.push(secs);
    }
    times.sort_by(f64::total_cmp);
    let taylor = if exponential == ExpMode::Taylor {
        let generators = trainer.model.generators().map_err(layered)?;
        Some(trainer.model.taylor_plan(&generators[0]).map_err(layered)?)
    } else {
        None
    };
    Ok(StepRow {
        exponential: match exponential {
            ExpMode::Taylor => "taylor",
            ExpMode::Krylov => "krylov",
            ExpMode::Dense => "dense exponential",
        }
        .into(),
        taylor,
        dtype: format!("{dtype:?}").to_lowercase(),
        seconds: times[times.len() / 2],
        first_step_seconds,
        repeats,
    })
}

/// The layered training step at `|N| = (2r+1)^3 - 1`: Taylor (automatic path) in f64 and f32, the
/// Taylor dense path where it fits, Krylov `expv`, and the dense exponential, in one process;
/// with `scale_radius`, one more Taylor step at that radius with its peak device memory and the
/// dense path's refusal.
pub fn run_layered_step_perf(
    radius: i64,
    layers: usize,
    batch: usize,
    repeats: usize,
    scale_radius: Option<i64>,
    device: &Device,
) -> Result<LayeredStepTiming> {
    use koopman_layers::model::ExpMode;
    let data = layered_step_data(batch)?;
    let n = IndexSet::cube(3, radius)?.without_origin()?.len();
    let mut rows = Vec::new();
    let configs = [
        (ExpMode::Taylor, TaylorPath::Auto, DType::F64, repeats),
        (ExpMode::Taylor, TaylorPath::Auto, DType::F32, repeats),
        (ExpMode::Taylor, TaylorPath::Dense, DType::F64, repeats),
        (ExpMode::Krylov, TaylorPath::Auto, DType::F64, 1),
        (ExpMode::Dense, TaylorPath::Auto, DType::F64, 1),
    ];
    for (exponential, path, dtype, repeats) in configs {
        let setup = StepSetup {
            exponential,
            path,
            dtype,
            repeats,
        };
        rows.push(time_steps(radius, layers, &data, setup, device)?);
    }
    let scale = match scale_radius {
        Some(r) => Some(run_scale_step(r, layers, &data, device)?),
        None => None,
    };
    Ok(LayeredStepTiming {
        n,
        m: paper_offsets()?.len(),
        layers,
        batch,
        rows,
        scale,
    })
}

fn run_scale_step(
    radius: i64,
    layers: usize,
    data: &koopman_layers::train::SnapshotData,
    device: &Device,
) -> Result<ScaleStepTiming> {
    use koopman_layers::model::ExpMode;
    let n = IndexSet::cube(3, radius)?.without_origin()?.len();
    crate::device::reset_peak_memory(device);
    let setup = |exponential| StepSetup {
        exponential,
        path: TaylorPath::Auto,
        dtype: DType::F64,
        repeats: 1,
    };
    let row = time_steps(radius, layers, data, setup(ExpMode::Taylor), device)?;
    let peak_device_bytes = crate::device::peak_memory(device);
    let dense_refusal = match time_steps(radius, layers, data, setup(ExpMode::Dense), device) {
        Ok(r) => format!("the dense path ran ({} s)", r.seconds),
        Err(e) => e.to_string(),
    };
    Ok(ScaleStepTiming {
        n,
        row,
        peak_device_bytes,
        dense_refusal,
    })
}

/// The layered step table.
pub fn format_layered_step(l: &LayeredStepTiming) -> String {
    let mut out = format!(
        "deep Koopman-layered training step (forward + backward + AdamW), |N| = {}, |M| = {}, \
         J = {}, batch {}:\n{:>18} {:>9} {:>6} {:>11} {:>8} {:>11} {:>16}\n",
        l.n,
        l.m,
        l.layers,
        l.batch,
        "exponential",
        "path",
        "dtype",
        "step [s]",
        "repeats",
        "first [s]",
        "plan (m x s)"
    );
    let row = |r: &StepRow| {
        let (path, plan) = match &r.taylor {
            Some((p, plan)) => (
                format!("{p:?}").to_lowercase(),
                format!(
                    "{} x {} (|L| <= {:.2})",
                    plan.degree, plan.substeps, plan.norm_bound
                ),
            ),
            None => ("-".into(), "-".into()),
        };
        format!(
            "{:>18} {:>9} {:>6} {:>11} {:>8} {:>11} {:>16}\n",
            r.exponential,
            path,
            r.dtype,
            sci(r.seconds),
            r.repeats,
            sci(r.first_step_seconds),
            plan
        )
    };
    for r in &l.rows {
        out.push_str(&row(r));
    }
    if let Some(s) = &l.scale {
        out.push_str(&format!("at |N| = {}:\n", s.n));
        out.push_str(&row(&s.row));
        out.push_str(&format!(
            "  peak device memory {}; dense path: {}\n",
            s.peak_device_bytes
                .map_or("not reported".to_string(), |b| format!(
                    "{:.2} GB",
                    b as f64 / 1e9
                )),
            s.dense_refusal
        ));
    }
    out
}
