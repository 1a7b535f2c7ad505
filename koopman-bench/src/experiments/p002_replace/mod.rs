//! Layer replacement by delay-embedded linear operators (paper 002): Yin-Yang and MNIST.
//!
//! For each seed an MLP is trained, then each replaced layer gets a trained layer-scaling block,
//! trajectories, and a small grid of hybrids for both readouts (the paper's iterated Hankel DMD
//! and the direct least-squares readout from the same first window). The configuration of each
//! readout is chosen on a validation set and its **test** accuracy is reported, so the grid search
//! does not peek at the test set.

pub mod mnist;
pub mod yinyang;

use crate::experiments::verdict::mean_sd;
use crate::report::RunContext;
use crate::Result;
use candle_core::{DType, Tensor};
use koopman_core::candle_nn::{VarBuilder, VarMap};
use koopman_core::nn::{accuracy, train_classifier, Activation, MinibatchConfig, Mlp};
use koopman_layers::replace::{
    fit_hybrid, HybridConfig, HybridModel, ReadoutKind, ScaledLayer, Trajectories,
};

/// One fitted grid point.
struct GridPoint {
    config: HybridConfig,
    rank_used: usize,
    val: f64,
    test: f64,
    model: HybridModel,
}

/// Test accuracy of the iterated operator against the number of iterations of its linear map
/// (`S + 1 - h`, `S = s_layers`): at each delay `h` of `points`, the rank chosen on validation.
fn accuracy_by_iterations(points: &[GridPoint], s_layers: usize) -> Vec<(f64, f64)> {
    let mut delays: Vec<usize> = points.iter().map(|p| p.config.delays).collect();
    delays.sort_unstable();
    delays.dedup();
    delays
        .into_iter()
        .filter_map(|h| {
            points
                .iter()
                .filter(|p| p.config.delays == h)
                .max_by(|a, b| a.val.total_cmp(&b.val))
                .map(|p| ((s_layers + 1 - h) as f64, p.test))
        })
        .collect()
}

/// The figure of [`accuracy_by_iterations`], one point set per replaced layer (every seed's
/// points together); returns the file's name.
fn iterations_figure(
    ctx: &RunContext,
    file: &str,
    title: &str,
    layers: &[(String, Vec<(f64, f64)>)],
) -> Result<String> {
    let sets: Vec<(&str, &[(f64, f64)])> = layers
        .iter()
        .map(|(n, p)| (n.as_str(), p.as_slice()))
        .collect();
    ctx.write_file(
        file,
        &crate::plot::scatter_svg(
            title,
            &crate::plot::Axes::new(
                "iterations of the linear map (S + 1 - h)",
                "test accuracy, iterated Hankel DMD",
            ),
            &sets,
        ),
    )
}

struct Split<'a> {
    x_val: &'a Tensor,
    y_val: &'a Tensor,
    x_test: &'a Tensor,
    y_test: &'a Tensor,
}

/// Fits every (h, r) of the grid for one readout; returns the points in grid order.
fn sweep(
    scaled: &ScaledLayer,
    traj: &Trajectories,
    readout: ReadoutKind,
    delays: &[usize],
    ranks: &[usize],
    base: &HybridConfig,
    split: &Split<'_>,
) -> Result<Vec<GridPoint>> {
    let m = traj.len_states();
    let width = scaled.width();
    let fitted = base
        .max_trajectories
        .unwrap_or(traj.states.len())
        .min(traj.states.len());
    let mut out = Vec::new();
    for &h in delays.iter().filter(|&&h| h < m) {
        let rank_list: Vec<usize> = match readout {
            ReadoutKind::Direct => vec![0],
            ReadoutKind::Iterated => {
                let cap = (h * width).min(fitted * (m - h));
                let mut v: Vec<usize> = ranks.iter().map(|&r| r.min(cap)).collect();
                v.dedup();
                v
            }
        };
        for r in rank_list {
            let config = HybridConfig {
                delays: h,
                rank: r.max(1),
                readout,
                ..base.clone()
            };
            let model = fit_hybrid(scaled, traj, &config)?;
            let val = accuracy(&model, split.x_val, split.y_val)?;
            let test = accuracy(&model, split.x_test, split.y_test)?;
            out.push(GridPoint {
                rank_used: model.meta().rank,
                config,
                val,
                test,
                model,
            });
        }
    }
    Ok(out)
}

fn best(points: Vec<GridPoint>) -> Option<GridPoint> {
    points.into_iter().max_by(|a, b| {
        a.val
            .total_cmp(&b.val)
            .then(b.config.delays.cmp(&a.config.delays))
    })
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn fmt_ms(v: &[f64]) -> String {
    let (m, s) = mean_sd(v);
    format!("{:.1} ± {:.1}%", 100.0 * m, 100.0 * s)
}

fn config_label(p: &GridPoint) -> String {
    match p.config.readout {
        ReadoutKind::Direct => format!("h={}", p.config.delays),
        ReadoutKind::Iterated => format!(
            "h={}, r={}{}",
            p.config.delays,
            p.rank_used,
            if p.config.stabilize { ", stab" } else { "" }
        ),
    }
}

/// A trained MLP frozen into plain tensors (detached copies of its variables).
fn frozen(mlp: &Mlp) -> Result<Mlp> {
    Ok(Mlp::from_tensors(
        &mlp.tensors()
            .into_iter()
            .map(|(k, t)| Ok((k, t.detach().copy()?)))
            .collect::<Result<_>>()?,
        Activation::Relu,
        "trained MLP",
    )?)
}

/// Trains an MLP of `sizes` on `(x, y)`; on a broken-input run ([`RunContext::broken_input`])
/// it is returned as initialised, untrained.
fn train_mlp(
    ctx: &RunContext,
    sizes: &[usize],
    x: &Tensor,
    y: &Tensor,
    config: &MinibatchConfig,
) -> Result<Mlp> {
    let device = &ctx.device;
    let vm = VarMap::new();
    let mlp = Mlp::new(
        sizes,
        Activation::Relu,
        VarBuilder::from_varmap(&vm, DType::F32, device),
    )?;
    // candle's initialisers draw from an unseeded RNG: overwrite them from the seed.
    reseed(&vm, config.seed)?;
    if !ctx.broken_input {
        train_classifier(&mlp, vm.all_vars(), x, y, config)?;
    }
    frozen(&mlp)
}

/// Trains `restarts` candidates (seeds `config.seed * 100 + i`) for `screen_epochs` each,
/// keeps the one with the best validation accuracy and trains it for `config.epochs` more; on a
/// broken-input run ([`RunContext::broken_input`]) the first candidate is returned untrained.
fn train_mlp_restarts(
    ctx: &RunContext,
    sizes: &[usize],
    train: (&Tensor, &Tensor),
    val: (&Tensor, &Tensor),
    config: &MinibatchConfig,
    restarts: usize,
    screen_epochs: usize,
) -> Result<Mlp> {
    let device = &ctx.device;
    let mut best: Option<(f64, VarMap, Mlp)> = None;
    for i in 0..restarts.max(1) {
        let vm = VarMap::new();
        let mlp = Mlp::new(
            sizes,
            Activation::Relu,
            VarBuilder::from_varmap(&vm, DType::F32, device),
        )?;
        let seed = config.seed * 100 + i as u64;
        reseed(&vm, seed)?;
        if ctx.broken_input {
            return frozen(&mlp);
        }
        let screen = MinibatchConfig {
            epochs: screen_epochs,
            final_lr_fraction: 1.0,
            seed,
            ..config.clone()
        };
        train_classifier(&mlp, vm.all_vars(), train.0, train.1, &screen)?;
        let acc = accuracy(&mlp, val.0, val.1)?;
        if best.as_ref().is_none_or(|b| acc > b.0) {
            best = Some((acc, vm, mlp));
        }
    }
    let (_, vm, mlp) = best.ok_or_else(|| crate::BenchError::Usage("no restart trained".into()))?;
    train_classifier(&mlp, vm.all_vars(), train.0, train.1, config)?;
    frozen(&mlp)
}

/// Re-initialises every variable of `vm` from `seed`: weights Kaiming normal (fan-in), biases
/// uniform in `±1/sqrt(fan_in)`, as candle-nn's `linear` does, but reproducibly.
fn reseed(vm: &VarMap, seed: u64) -> Result<()> {
    Ok(koopman_core::nn::init_seeded(vm, seed)?)
}
