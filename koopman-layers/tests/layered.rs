//! Integration tests of the deep Koopman-layered model (small sizes).

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use koopman_core::IndexSet;
use koopman_layers::analysis::{
    geometric_mean_modulus, layer_eigenvalues, mean_unit_circle_distance,
    unit_determinant_tolerance,
};
use koopman_layers::model::{DeepKoopmanLayeredBuilder, ExpMode};
use koopman_layers::systems::{van_der_pol_pairs, VanDerPol};
use koopman_layers::train::{data_loss, objective, Loss, SnapshotData, TrainConfig, Trainer};
use koopman_layers::{LayersError, TorusNormalization};
use std::sync::Arc;

fn small_sets() -> (Arc<IndexSet>, Arc<IndexSet>) {
    let n = Arc::new(
        IndexSet::product_of_ranges(&[(-2, 2), (-2, 2), (-1, 1)])
            .unwrap()
            .without_origin()
            .unwrap(),
    );
    let m = Arc::new(
        IndexSet::product_of_ranges(&[(-1, 1), (-1, 1), (-1, 1)])
            .unwrap()
            .without_origin()
            .unwrap(),
    );
    (n, m)
}

fn small_data(rows: usize, snapshots: usize, seed: u64) -> SnapshotData {
    let (x0, xt) = van_der_pol_pairs(
        &VanDerPol {
            steps: 20,
            ..Default::default()
        },
        rows,
        0.0,
        seed,
    );
    let all: Vec<f64> = x0.iter().chain(&xt).copied().collect();
    let norm = TorusNormalization::fit(&all, 2, std::f64::consts::FRAC_PI_2).unwrap();
    let a = norm.forward(&x0).unwrap();
    let b = norm.forward(&xt).unwrap();
    let mut s = vec![a.clone()];
    for j in 1..snapshots {
        let w = j as f64 / (snapshots - 1) as f64;
        s.push(
            a.iter()
                .zip(&b)
                .map(|(u, v)| (1.0 - w) * u + w * v)
                .collect(),
        );
    }
    SnapshotData::new(s, 2).unwrap()
}

#[test]
fn gradient_matches_finite_differences() {
    let (n, m) = small_sets();
    // data losses: exact gradients; regularisers: the power iterate is detached, so the gradient
    // is the envelope gradient, exact once the iteration has converged (many iterations here)
    let cases = [
        (Loss::EndToEnd, 0.0, 0.0, 1e-5),
        (Loss::WindowWise, 0.0, 0.0, 1e-5),
        (Loss::Suffix, 0.0, 0.0, 1e-5),
        (Loss::EndToEnd, 0.1, 0.1, 1e-3),
    ];
    for (loss, norm_weight, continuity_weight, tol) in cases {
        let config = TrainConfig {
            loss,
            steps: 0,
            init_std: 0.05,
            norm_weight,
            continuity_weight,
            power_iterations: if norm_weight > 0.0 { 100 } else { 3 },
            progress: false,
            seed: 3,
            ..Default::default()
        };
        let builder = DeepKoopmanLayeredBuilder::new(2, n.clone(), vec![m.clone()])
            .layers(2)
            .expv_config(koopman_core::ExpvConfig {
                tol: 1e-13,
                ..Default::default()
            });
        let trainer = Trainer::new(builder, &config).unwrap();
        let data = small_data(12, 3, 1);
        let f = objective(&trainer.model, &data, &config, 7).unwrap();
        let grads = f.backward().unwrap();
        let mut checked = 0;
        let vars = trainer.vars();
        // vars() is in name order, so the regularised case checks the same parameter every run
        let take = if norm_weight > 0.0 { 1 } else { 4 };
        for var in vars.into_iter().take(take) {
            let g = grads
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            let base = var
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap();
            {
                let idx = base.len() / 2;
                let h = 1e-6;
                let eval = |delta: f64| {
                    let mut v = base.clone();
                    v[idx] += delta;
                    var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                        .unwrap();
                    let out = objective(&trainer.model, &data, &config, 7)
                        .unwrap()
                        .to_scalar::<f64>()
                        .unwrap();
                    var.set(&Tensor::from_vec(base.clone(), var.shape(), &Device::Cpu).unwrap())
                        .unwrap();
                    out
                };
                let fd = (eval(h) - eval(-h)) / (2.0 * h);
                let err = (fd - g[idx]).abs() / g[idx].abs().max(1e-3);
                assert!(
                    err < tol,
                    "{loss:?} (reg {norm_weight}): d/d{idx} analytic {} fd {fd} rel {err}",
                    g[idx]
                );
                checked += 1;
            }
        }
        assert!(checked >= 1);
    }
}

#[test]
fn taylor_krylov_and_dense_paths_agree_and_conjugate_symmetry_gives_unitary_free_real_field() {
    let (n, m) = small_sets();
    let config = TrainConfig {
        init_std: 0.05,
        progress: false,
        ..Default::default()
    };
    for symmetric in [false, true] {
        for factors in [1usize, 2] {
            let builder = DeepKoopmanLayeredBuilder::new(2, n.clone(), vec![m.clone(); factors])
                .layers(2)
                .conjugate_symmetric(symmetric)
                .expv_config(koopman_core::ExpvConfig {
                    tol: 1e-12,
                    ..Default::default()
                });
            let mut trainer = Trainer::new(builder, &config).unwrap();
            let z = [0.3, -0.2, 1.0, 0.5, -1.2, 0.1];
            assert_eq!(trainer.model.exp_mode(), ExpMode::Taylor);
            let taylor = trainer.model.predict(&z).unwrap();
            trainer.model.set_exp_mode(ExpMode::Krylov);
            let krylov = trainer.model.predict(&z).unwrap();
            trainer.model.set_exp_mode(ExpMode::Dense);
            let b = trainer.model.predict(&z).unwrap();
            for a in [&taylor, &krylov] {
                for (x, y) in a.iter().zip(&b) {
                    assert!(
                        (x - y).abs() < 1e-9,
                        "R = {factors}, sym = {symmetric}: {x} vs {y}"
                    );
                }
            }
            if symmetric {
                // a real vector field: the full series G is real up to round-off
                let g = trainer.model.generators().unwrap();
                let c = trainer.model.suffix_coefficients(&g).unwrap()[0].clone();
                let feats = trainer.model.features(&z).unwrap();
                let im = (feats.0.matmul(&c.im().unsqueeze(1).unwrap()).unwrap()
                    + feats.1.matmul(&c.re().unsqueeze(1).unwrap()).unwrap())
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
                assert!(im < 1e-9, "imaginary part {im}");
            }
        }
    }
}

/// `Re tr L = 0` for one factor (a real field, or any field over the symmetric `N`), so
/// `|det e^L| = 1`: the eigenvalues' geometric-mean modulus is 1 even when they spread off the
/// circle in both directions.
#[test]
fn one_factor_layers_have_unit_determinant_modulus() {
    let (n, m) = small_sets();
    for symmetric in [false, true] {
        let config = TrainConfig {
            init_std: 0.3,
            progress: false,
            ..Default::default()
        };
        let builder = DeepKoopmanLayeredBuilder::new(2, n.clone(), vec![m.clone()])
            .layers(3)
            .conjugate_symmetric(symmetric);
        let trainer = Trainer::new(builder, &config).unwrap();
        for (j, s) in layer_eigenvalues(&trainer.model, 500)
            .unwrap()
            .iter()
            .enumerate()
        {
            let moduli: Vec<f64> = s.iter().map(|z| z.norm()).collect();
            let max = moduli.iter().copied().fold(0.0, f64::max);
            let min = moduli.iter().copied().fold(f64::INFINITY, f64::min);
            let log_det = geometric_mean_modulus(s).ln();
            assert!(
                max > 1.01 && min < 0.99,
                "spectrum stays on the circle: [{min}, {max}]"
            );
            // eig is backward stable: each log |lambda| carries a relative error of order
            // |N| eps, scaled by the spread of the spectrum
            let tol = unit_determinant_tolerance(s);
            assert!(
                log_det.abs() < tol,
                "sym = {symmetric}, layer {j}: mean log |lambda| = {log_det:e} (tol {tol:e})"
            );
        }
    }
}

#[test]
fn training_reduces_the_loss_and_checkpoints_round_trip() {
    let (n, m) = small_sets();
    let data = small_data(40, 3, 2);
    let dir = std::env::temp_dir().join(format!("koopman-layers-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ckpt.safetensors");
    for loss in [Loss::EndToEnd, Loss::WindowWise, Loss::Suffix] {
        let config = TrainConfig {
            loss,
            steps: 15,
            lr: 1e-2,
            batch_size: Some(16),
            progress: false,
            checkpoint: Some((path.clone(), 5)),
            ..Default::default()
        };
        let builder = DeepKoopmanLayeredBuilder::new(2, n.clone(), vec![m.clone()]).layers(2);
        let mut trainer = Trainer::new(builder.clone(), &config).unwrap();
        let before = data_loss(&trainer.model, &data, loss)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let report = trainer.train(&data, &config).unwrap();
        assert_eq!(report.losses.len(), 15);
        let after = data_loss(&trainer.model, &data, loss)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(after < before, "{loss:?}: {after} !< {before}");
        // reload into a fresh model
        let fresh = TrainConfig {
            init_std: 0.0,
            ..config.clone()
        };
        let mut other = Trainer::new(builder, &fresh).unwrap();
        other.load(&path).unwrap();
        let z = &data.snapshots()[0][..8];
        assert_eq!(
            trainer.model.predict(z).unwrap(),
            other.model.predict(z).unwrap()
        );
    }
    let eig = layer_eigenvalues(
        &Trainer::new(
            DeepKoopmanLayeredBuilder::new(2, n, vec![m]),
            &TrainConfig {
                init_std: 0.0,
                progress: false,
                ..Default::default()
            },
        )
        .unwrap()
        .model,
        500,
    )
    .unwrap();
    // zero coefficients: e^L = I
    assert!(mean_unit_circle_distance(&eig) < 1e-12);
    std::fs::remove_dir_all(&dir).ok();
}

/// One step with and without coefficient decay from the same start: the coefficients differ by
/// exactly `-lr * decay * w0` (decoupled AdamW decay, same gradients), every other variable (R
/// factors, times) is untouched by the decay.
#[test]
fn coefficient_decay_shrinks_only_the_coefficients() {
    let (n, m) = small_sets();
    let data = small_data(24, 3, 5);
    let (lr, decay) = (1e-2, 3.0);
    let step = |coefficient_decay: f64| {
        let config = TrainConfig {
            loss: Loss::WindowWise,
            steps: 1,
            lr,
            coefficient_decay,
            init_std: 0.05,
            progress: false,
            ..Default::default()
        };
        let builder = DeepKoopmanLayeredBuilder::new(2, n.clone(), vec![m.clone()]).layers(2);
        let mut trainer = Trainer::new(builder, &config).unwrap();
        let values = |t: &Trainer| -> std::collections::BTreeMap<String, Vec<f64>> {
            let data = t.varmap.data().lock().unwrap();
            data.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
                    )
                })
                .collect()
        };
        let before = values(&trainer);
        trainer.step(&data, &config, 0).unwrap();
        (before, values(&trainer))
    };
    let (start, plain) = step(0.0);
    let (start_decayed, decayed) = step(decay);
    assert_eq!(start, start_decayed);
    let mut coefficients = 0;
    for (name, w0) in &start {
        let coefficient = name.contains("coef") && (name.ends_with(".re") || name.ends_with(".im"));
        coefficients += usize::from(coefficient);
        for ((a, b), w) in plain[name].iter().zip(&decayed[name]).zip(w0) {
            let expected = if coefficient { -lr * decay * w } else { 0.0 };
            assert!(
                (b - a - expected).abs() <= 1e-12 * (1.0 + w.abs()),
                "{name}: {} vs {expected}",
                b - a
            );
        }
    }
    assert!(
        coefficients > 0 && coefficients < start.len(),
        "{:?}",
        start.keys()
    );
    let bad = TrainConfig {
        coefficient_decay: f64::NAN,
        ..Default::default()
    };
    let err = Trainer::new(DeepKoopmanLayeredBuilder::new(2, n, vec![m]), &bad);
    assert!(err.err().unwrap().to_string().contains("coefficient decay"));
}

#[test]
fn bad_input_gives_clear_errors() {
    let (n, m) = small_sets();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
    // J = 0
    let err = DeepKoopmanLayeredBuilder::new(2, n.clone(), vec![m.clone()])
        .layers(0)
        .build(vb.clone());
    assert!(matches!(err, Err(LayersError::InvalidArgument(ref s)) if s.contains("J")));
    // index set of the wrong dimension
    let n2 = Arc::new(IndexSet::cube(2, 2).unwrap().without_origin().unwrap());
    let err = DeepKoopmanLayeredBuilder::new(2, n2, vec![m.clone()]).build(vb.pp("b"));
    assert!(matches!(err, Err(LayersError::ShapeMismatch(_))));
    let m2 = Arc::new(IndexSet::cube(2, 1).unwrap().without_origin().unwrap());
    let err = DeepKoopmanLayeredBuilder::new(2, n.clone(), vec![m2]).build(vb.pp("c"));
    assert!(matches!(err, Err(LayersError::ShapeMismatch(_))));
    // data out of range and NaN
    let norm = TorusNormalization::fit(&[0.0, 0.0, 1.0, 1.0], 2, 1.5).unwrap();
    assert!(matches!(
        norm.forward(&[0.5, 7.0]),
        Err(LayersError::OutOfRange(_))
    ));
    assert!(matches!(
        norm.forward(&[0.5, f64::NAN]),
        Err(LayersError::NonFinite(_))
    ));
    assert!(matches!(
        SnapshotData::new(vec![vec![0.0, f64::NAN], vec![0.0, 0.0]], 2),
        Err(LayersError::NonFinite(_))
    ));
    let model = DeepKoopmanLayeredBuilder::new(2, n, vec![m])
        .build(vb.pp("d"))
        .unwrap();
    assert!(matches!(
        model.predict(&[0.1, f64::INFINITY]),
        Err(LayersError::NonFinite(_))
    ));
    assert!(matches!(
        model.predict(&[0.1, 0.2, 0.3]),
        Err(LayersError::ShapeMismatch(_))
    ));
    // bad training settings
    let bad = TrainConfig {
        lr: -1.0,
        ..Default::default()
    };
    assert!(bad.validate().is_err());
}

#[test]
fn regularisers_at_zero_coefficients_are_finite() {
    // zero coefficients: every e^{L_j} = I, so neighbouring layers are equal and the continuity
    // term's operator is zero; the objective and its gradient must stay finite (the norm is 0)
    let (n, m) = small_sets();
    let config = TrainConfig {
        loss: Loss::WindowWise,
        steps: 0,
        init_std: 0.0,
        norm_weight: 0.1,
        continuity_weight: 0.1,
        progress: false,
        ..Default::default()
    };
    let builder = DeepKoopmanLayeredBuilder::new(2, n, vec![m]).layers(2);
    let trainer = Trainer::new(builder, &config).unwrap();
    let data = small_data(12, 3, 1);
    let data_only = data_loss(&trainer.model, &data, Loss::WindowWise)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let f = objective(&trainer.model, &data, &config, 7).unwrap();
    let value = f.to_scalar::<f64>().unwrap();
    // two layers, each ||I||_2 = 1, continuity ||I - I|| = 0
    assert!(
        (value - data_only - 0.1 * 2.0).abs() < 1e-9,
        "objective {value} vs data {data_only} + 0.2"
    );
    let grads = f.backward().unwrap();
    let mut seen = 0;
    for var in trainer.vars() {
        if let Some(g) = grads.get(var.as_tensor()) {
            let g = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
            assert!(g.iter().all(|x| x.is_finite()), "non-finite gradient");
            seen += 1;
        }
    }
    assert!(seen > 0);
}

// The f32 path (for GPUs): the same seeded model in f32 and f64 predicts within
// 100 eps_f32 sqrt(|N|) of each other (relative to the output scale), and so does its loss: the gap
// is the f32 round-off of the exponential (the Taylor action, as trained).
koopman_core::test_device!(f32_matches_f64, f32_matches_f64_cpu, f32_matches_f64_cuda);
fn f32_matches_f64(dev: &Device) -> koopman_layers::Result<()> {
    let (n, m) = small_sets();
    let config = TrainConfig {
        init_std: 0.05,
        progress: false,
        seed: 11,
        ..Default::default()
    };
    let data = small_data(16, 3, 4);
    let z = &data.snapshots()[0];
    let mut outputs = Vec::new();
    let mut losses = Vec::new();
    for dtype in [DType::F64, DType::F32] {
        let builder = DeepKoopmanLayeredBuilder::new(2, n.clone(), vec![m.clone()]).layers(2);
        let trainer = Trainer::on(builder, &config, dtype, dev)?;
        outputs.push(trainer.model.predict(z)?);
        losses.push(
            data_loss(&trainer.model, &data, Loss::EndToEnd)?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?,
        );
    }
    let bound = 100.0 * f32::EPSILON as f64 * (n.len() as f64).sqrt();
    let scale = outputs[0].iter().fold(0.0f64, |a, x| a.max(x.abs()));
    let gap = outputs[0]
        .iter()
        .zip(&outputs[1])
        .fold(0.0f64, |a, (x, y)| a.max((x - y).abs()));
    assert!(scale > 0.1, "degenerate outputs");
    assert!(
        gap <= bound * scale,
        "f32 vs f64 prediction gap {gap:e} (scale {scale})"
    );
    let rel = (losses[0] - losses[1]).abs() / losses[0];
    assert!(
        rel <= bound,
        "loss f64 {} vs f32 {}: rel {rel:e}",
        losses[0],
        losses[1]
    );
    println!("f32 vs f64: prediction gap {gap:e} (scale {scale:.3}), loss rel {rel:e}");
    Ok(())
}

// The observable's features where they are used (a matrix product of the sample points with the
// frequencies and cos/sin on a GPU, one sin_cos per entry on the CPU) against the definition,
// cos and sin of n . (x_b, y_k) at row b d + k, computed here entry by entry.
koopman_core::test_device!(
    features_match_definition,
    features_match_definition_cpu,
    features_match_definition_cuda
);
fn features_match_definition(dev: &Device) -> koopman_layers::Result<()> {
    use koopman_layers::observable::{CoordinateFunction, VectorObservable};
    let (n, _) = small_sets();
    let obs = VectorObservable::new(
        2,
        CoordinateFunction::Identity,
        &n,
        std::f64::consts::FRAC_PI_2,
    )?;
    let z: Vec<f64> = (0..40)
        .map(|i| ((i * 37 % 17) as f64 - 8.0) / 6.0)
        .collect();
    // From host samples and from samples already in a tensor on the device.
    let z_tensor = Tensor::from_slice(&z, (z.len() / 2, 2), dev)?;
    for (cos, sin) in [
        obs.features(&z, DType::F64, dev)?,
        obs.features_tensor(&z_tensor, DType::F64)?,
    ] {
        let cos = cos.to_device(&Device::Cpu)?.to_vec2::<f64>()?;
        let sin = sin.to_device(&Device::Cpu)?.to_vec2::<f64>()?;
        assert_eq!(cos.len(), z.len());
        for (row, (c_row, s_row)) in cos.iter().zip(&sin).enumerate() {
            let (b, k) = (row / 2, row % 2);
            let point = [z[2 * b], z[2 * b + 1], obs.nodes()[k]];
            for (i, p) in n.iter().enumerate() {
                let phase: f64 = p.iter().zip(&point).map(|(&f, x)| f as f64 * x).sum();
                assert!(
                    (c_row[i] - phase.cos()).abs() < 1e-13,
                    "cos at ({row}, {i})"
                );
                assert!(
                    (s_row[i] - phase.sin()).abs() < 1e-13,
                    "sin at ({row}, {i})"
                );
            }
        }
    }
    Ok(())
}

// The model as a candle Module: the tensor forward equals the host prediction, carries the
// gradient to the model's variables, and refuses samples of the wrong shape, on another device
// or not finite.
koopman_core::test_device!(
    module_forward_matches_predict,
    module_forward_matches_predict_cpu,
    module_forward_matches_predict_cuda
);
fn module_forward_matches_predict(dev: &Device) -> koopman_layers::Result<()> {
    use candle_core::Module;
    let (n, m) = small_sets();
    let config = TrainConfig {
        init_std: 0.05,
        progress: false,
        seed: 5,
        ..Default::default()
    };
    let builder = DeepKoopmanLayeredBuilder::new(2, n.clone(), vec![m]).layers(2);
    let trainer = Trainer::on(builder, &config, DType::F64, dev)?;
    let model = &trainer.model;
    let z: Vec<f64> = (0..24)
        .map(|i| ((i * 29 % 13) as f64 - 6.0) / 4.0)
        .collect();
    let host = model.predict(&z)?;
    let xs = Tensor::from_slice(&z, (12, 2), dev)?;
    let out = model.forward(&xs)?;
    assert_eq!(out.dims(), &[12, 2]);
    let out = out
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let scale = host.iter().fold(0.0f64, |a, x| a.max(x.abs()));
    assert!(scale > 1e-3, "degenerate outputs");
    let gap = host
        .iter()
        .zip(&out)
        .fold(0.0f64, |a, (x, y)| a.max((x - y).abs()));
    let bound = 100.0 * f64::EPSILON * (n.len() as f64) * scale;
    assert!(gap <= bound, "forward vs predict gap {gap:e} > {bound:e}");
    // The gradient reaches every variable of the model.
    let grads = model.forward(&xs)?.sqr()?.sum_all()?.backward()?;
    for var in trainer.vars() {
        let g = grads
            .get(var.as_tensor())
            .expect("a gradient for every variable");
        let norm = g
            .sqr()?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
        assert!(norm.is_finite() && norm > 0.0, "zero gradient");
    }
    // Bad samples.
    assert!(model
        .forward(&Tensor::zeros((4, 3), DType::F64, dev)?)
        .is_err());
    assert!(model.forward(&Tensor::zeros(4, DType::F64, dev)?).is_err());
    let nan = Tensor::from_slice(&[0.0, f64::NAN], (1, 2), dev)?;
    let err = model.forward_tensor(&nan).unwrap_err();
    assert!(err.to_string().contains("samples"), "{err}");
    if !dev.is_cpu() {
        assert!(model.forward(&xs.to_device(&Device::Cpu)?).is_err());
    }
    Ok(())
}

// The training objective's gradient on a device equals the CPU's (f64): every custom op of the
// step (fused Taylor action and its backward, the features' fixed product) on each device.
koopman_core::test_device!(
    gradient_matches_cpu,
    gradient_matches_cpu_cpu,
    gradient_matches_cpu_cuda
);
fn gradient_matches_cpu(dev: &Device) -> koopman_layers::Result<()> {
    let (n, m) = small_sets();
    let config = TrainConfig {
        init_std: 0.05,
        norm_weight: 0.1,
        continuity_weight: 0.1,
        progress: false,
        seed: 5,
        ..Default::default()
    };
    let data = small_data(12, 3, 2);
    let grads_on = |device: &Device| -> koopman_layers::Result<Vec<Vec<f64>>> {
        let builder = DeepKoopmanLayeredBuilder::new(2, n.clone(), vec![m.clone()]).layers(2);
        let trainer = Trainer::on(builder, &config, DType::F64, device)?;
        let f = objective(&trainer.model, &data, &config, 7)?;
        let grads = f.backward()?;
        trainer
            .vars()
            .iter()
            .map(|v| {
                let g = grads
                    .get(v.as_tensor())
                    .expect("every variable gets a gradient");
                Ok(g.flatten_all()?.to_device(&Device::Cpu)?.to_vec1::<f64>()?)
            })
            .collect()
    };
    let here = grads_on(dev)?;
    let cpu = grads_on(&Device::Cpu)?;
    assert_eq!(here.len(), cpu.len());
    for (a, b) in here.iter().zip(&cpu) {
        let scale = b.iter().fold(1e-3f64, |s, x| s.max(x.abs()));
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-10 * scale, "{x} vs {y}");
        }
    }
    Ok(())
}

/// A model whose estimated memory exceeds the limit is refused by `build` before anything is
/// allocated, with the sizes and the limit as typed fields; within the limit it builds.
#[test]
fn models_above_the_memory_limit_are_refused() -> koopman_layers::Result<()> {
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};
    use koopman_core::IndexSet;
    use koopman_layers::{DeepKoopmanLayeredBuilder, LayersError};
    use std::sync::Arc;
    let n = Arc::new(IndexSet::cube(3, 2)?.without_origin()?);
    let m = Arc::new(IndexSet::cube(3, 1)?.without_origin()?);
    let builder = DeepKoopmanLayeredBuilder::new(2, n.clone(), vec![m]).layers(3);
    let needed = builder.memory_estimate(DType::F64).total_bytes();
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu);
    match builder.clone().memory_limit(needed - 1).build(vb.clone()) {
        Err(LayersError::MemoryLimit {
            needed: got,
            limit,
            n: size,
            layers,
            ..
        }) => {
            assert_eq!((got, limit, size, layers), (needed, needed - 1, n.len(), 3));
        }
        other => panic!("not refused: {:?}", other.map(|_| ())),
    }
    assert!(
        vm.all_vars().is_empty(),
        "nothing was allocated for the refused model"
    );
    builder.memory_limit(needed).build(vb)?;
    Ok(())
}
