//! Spectral analysis: eigenvalues of each layer's `e^{L_j}`, of per-window EDMD (the same Fourier
//! dictionary) and kernel DMD, and an SVG plot against the unit circle.
//!
//! For one Toeplitz factor (`R = 1`) the diagonal of `L_j` is `t_j sum_k i n_k a^k_0`: purely
//! imaginary for a real field (conjugate-symmetric coefficients) and summing to an imaginary
//! number over a symmetric `N` for any field. So `Re tr L_j = 0` and `|det e^{L_j}| = 1`: the
//! eigenvalues' [`geometric_mean_modulus`] is 1, and eigenvalues inside the unit circle are
//! balanced by eigenvalues outside it. Only a spectrum on the circle lies in the closed disk.
//!
//! ```
//! use koopman_core::c64;
//! use koopman_layers::analysis::{
//!     geometric_mean_modulus, mean_unit_circle_distance, unit_circle_svg, unit_determinant_tolerance,
//! };
//!
//! let sets = vec![vec![c64::new(1.0, 0.0), c64::new(0.0, 0.9)]];
//! assert!((mean_unit_circle_distance(&sets) - 0.05).abs() < 1e-12);
//! let balanced = [c64::new(0.5, 0.0), c64::new(0.0, 2.0)];
//! assert!((geometric_mean_modulus(&balanced) - 1.0).abs() < 1e-15);
//! assert!(unit_determinant_tolerance(&balanced) > 0.0);
//! let svg = unit_circle_svg("example", &[("layer 1", &sets[0])]);
//! assert!(svg.starts_with("<svg") && svg.contains(">Re</text>") && svg.contains(">Im</text>"));
//! assert!(svg.contains("font-size=\"14.0\">example"));
//! // A long title shrinks to fit the figure's width on one line.
//! let long = unit_circle_svg(&"x".repeat(100), &[]);
//! assert!(long.contains("font-size=\"7.7\">xxx"));
//! ```

use crate::model::DeepKoopmanLayered;
use crate::train::SnapshotData;
use crate::{LayersError, Result};
use koopman_core::dmd::{edmd, kernel_dmd, Dictionary, EdmdConfig, KernelDmdConfig};
use koopman_core::faer::Mat;
use koopman_core::linalg::{self, cmat_from_complex_tensor};
use koopman_core::operator::LinearOperator;
use koopman_core::{c64, expm, IndexSet};
use std::sync::Arc;

/// Eigenvalues of each layer's `e^{L_j}` by a dense eigendecomposition (faer) of the dense
/// exponential; refuses `|N| > max_dense` (the Krylov path does not need it for training).
pub fn layer_eigenvalues(model: &DeepKoopmanLayered, max_dense: usize) -> Result<Vec<Vec<c64>>> {
    let n = model.index_set().len();
    if n > max_dense {
        return Err(LayersError::InvalidArgument(format!(
            "dense eigenvalues of |N| = {n} exceed the limit {max_dense}"
        )));
    }
    model
        .generators()?
        .iter()
        .map(|g| {
            let e = expm(&g.to_dense()?.detach())?;
            let m = cmat_from_complex_tensor(&e)?;
            Ok(linalg::eig(m.as_ref())?.0)
        })
        .collect()
}

/// Mean of `| |lambda| - 1 |` over all eigenvalues of all sets.
pub fn mean_unit_circle_distance(sets: &[Vec<c64>]) -> f64 {
    let (sum, count) = sets.iter().flatten().fold((0.0, 0usize), |(s, c), z| {
        (s + (z.norm() - 1.0).abs(), c + 1)
    });
    if count == 0 {
        0.0
    } else {
        sum / count as f64
    }
}

/// `(prod |lambda_i|)^{1/n} = |det|^{1/n}`, computed as `exp(mean log |lambda_i|)`; 0 for an
/// empty set or a zero eigenvalue.
pub fn geometric_mean_modulus(eigenvalues: &[c64]) -> f64 {
    if eigenvalues.is_empty() {
        return 0.0;
    }
    let mean_log =
        eigenvalues.iter().map(|z| z.norm().ln()).sum::<f64>() / eigenvalues.len() as f64;
    mean_log.exp()
}

/// Bound on `|ln geometric_mean_modulus|` for a spectrum whose determinant has modulus 1, from
/// eig's backward error: each `ln |lambda|` carries a relative error of order `n eps`, scaled by
/// the spread `max |ln |lambda||` of the spectrum: `100 n eps (1 + spread)`.
pub fn unit_determinant_tolerance(eigenvalues: &[c64]) -> f64 {
    let spread = eigenvalues
        .iter()
        .map(|z| z.norm().ln().abs())
        .fold(0.0, f64::max);
    100.0 * eigenvalues.len() as f64 * f64::EPSILON * (1.0 + spread)
}

/// The state-space projection of `N` (the distinct state parts of its frequencies): the Fourier
/// dictionary of per-window EDMD.
pub fn state_dictionary(index_set: &IndexSet, state_dim: usize) -> Result<Arc<IndexSet>> {
    let mut seen = std::collections::HashSet::new();
    let points: Vec<Vec<i64>> = index_set
        .iter()
        .map(|p| p[..state_dim].to_vec())
        .filter(|p| seen.insert(p.clone()))
        .collect();
    Ok(Arc::new(IndexSet::from_points(state_dim, points)?))
}

fn columns(rows: &[f64], dim: usize) -> Mat<f64> {
    let n = rows.len() / dim;
    Mat::from_fn(dim, n, |i, j| rows[j * dim + i])
}

/// EDMD eigenvalues per window `(S_{j-1}, S_j)` with the Fourier dictionary `dictionary`.
pub fn window_edmd_eigenvalues(
    data: &SnapshotData,
    dictionary: Arc<IndexSet>,
) -> Result<Vec<Vec<c64>>> {
    let config = EdmdConfig {
        dictionary: Dictionary::Fourier {
            index_set: dictionary,
        },
        ..Default::default()
    };
    data.snapshots()
        .windows(2)
        .map(|w| {
            let x = columns(&w[0], data.dim());
            let y = columns(&w[1], data.dim());
            Ok(edmd(x.as_ref(), y.as_ref(), &config)?.eigenvalues)
        })
        .collect()
}

/// Kernel DMD eigenvalues per window (Gaussian kernel), on at most `max_samples` rows.
pub fn window_kernel_dmd_eigenvalues(
    data: &SnapshotData,
    config: &KernelDmdConfig,
    max_samples: usize,
) -> Result<Vec<Vec<c64>>> {
    let rows: Vec<usize> = (0..data.rows().min(max_samples.max(1))).collect();
    let data = data.select(&rows)?;
    data.snapshots()
        .windows(2)
        .map(|w| {
            let x = columns(&w[0], data.dim());
            let y = columns(&w[1], data.dim());
            Ok(kernel_dmd(x.as_ref(), y.as_ref(), config)?.eigenvalues)
        })
        .collect()
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// A self-contained SVG of eigenvalue sets against the unit circle (no fonts or plotting crates
/// needed). The axes span the larger of 1.1 and the largest modulus.
pub fn unit_circle_svg(title: &str, sets: &[(&str, &[c64])]) -> String {
    let size = 480.0;
    let radius = sets
        .iter()
        .flat_map(|(_, s)| s.iter())
        .map(|z| z.norm())
        .filter(|r| r.is_finite())
        .fold(1.1f64, f64::max)
        .min(10.0);
    let scale = 0.45 * size / radius;
    let c = size / 2.0;
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    // The title on one line across the figure: 14 px, smaller for a long title (a sans-serif
    // character is about 0.6 em wide).
    let title_px = (14.0f64).min((size - 20.0) / (0.6 * title.chars().count().max(1) as f64));
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{size}\" height=\"{}\" viewBox=\"0 0 {size} {}\" font-family=\"sans-serif\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"18\" font-size=\"{title_px:.1}\">{}</text>\n\
         <line x1=\"0\" y1=\"{c}\" x2=\"{size}\" y2=\"{c}\" stroke=\"#bbb\"/>\n\
         <line x1=\"{c}\" y1=\"0\" x2=\"{c}\" y2=\"{size}\" stroke=\"#bbb\"/>\n\
         <circle cx=\"{c}\" cy=\"{c}\" r=\"{}\" fill=\"none\" stroke=\"black\"/>\n\
         <text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">Re</text>\n\
         <text x=\"{}\" y=\"40\" font-size=\"12\">Im</text>\n\
         <text x=\"{:.1}\" y=\"{}\" font-size=\"11\">1</text>\n",
        size + 20.0 * sets.len() as f64,
        size + 20.0 * sets.len() as f64,
        esc(title),
        scale,
        size - 4.0,
        c - 6.0,
        c + 6.0,
        c + scale + 3.0,
        c + 14.0,
    );
    for (i, (name, values)) in sets.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        for z in values
            .iter()
            .filter(|z| z.re.is_finite() && z.im.is_finite())
        {
            svg.push_str(&format!(
                "<circle cx=\"{:.2}\" cy=\"{:.2}\" r=\"2.5\" fill=\"{color}\" fill-opacity=\"0.7\"/>\n",
                c + scale * z.re.clamp(-radius, radius),
                c - scale * z.im.clamp(-radius, radius)
            ));
        }
        svg.push_str(&format!(
            "<circle cx=\"14\" cy=\"{:.0}\" r=\"4\" fill=\"{color}\"/><text x=\"24\" y=\"{:.0}\" font-size=\"12\">{}</text>\n",
            size + 10.0 + 20.0 * i as f64,
            size + 14.0 + 20.0 * i as f64,
            esc(name)
        ));
    }
    svg.push_str("</svg>\n");
    svg
}
