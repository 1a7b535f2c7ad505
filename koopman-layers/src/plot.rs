//! Decision-boundary plots of classifiers on a 2-D domain, written as SVG by hand (no fonts or
//! system libraries needed), like Figure 3 of paper 002.
//!
//! Each panel colours a `grid x grid` raster of the domain by the predicted class (light
//! colours, runs of equal cells merged into one rectangle) and overlays labelled points (dark
//! colours) with a title such as the model's accuracy.
//!
//! ```
//! use candle_core::{Device, Module, Tensor};
//! use koopman_layers::plot::{decision_boundary_svg, Panel, PlotDomain};
//!
//! # fn main() -> koopman_layers::Result<()> {
//! // A "classifier" whose logits are (x, 1 - x): class 0 right of x = 0.5.
//! struct Half;
//! impl Module for Half {
//!     fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
//!         let a = x.narrow(1, 0, 1)?;
//!         Tensor::cat(&[&a, &(1.0 - &a)?], 1)
//!     }
//! }
//! let domain = PlotDomain { x: (0.0, 1.0), y: (0.0, 1.0), grid: 20, features: Box::new(|x, y| vec![x, y]) };
//! let svg = decision_boundary_svg(&[Panel { title: "half".into(), model: &Half }], &domain, &[], &Device::Cpu)?;
//! assert!(svg.starts_with("<svg") && svg.contains("half"));
//! # Ok(()) }
//! ```

use crate::error::Result;
use candle_core::{DType, Device, Module, Tensor};
use koopman_core::nn::predict_classes;

/// The plotted domain and how a point becomes a model input.
pub struct PlotDomain {
    /// Horizontal range.
    pub x: (f64, f64),
    /// Vertical range.
    pub y: (f64, f64),
    /// Raster cells per side.
    pub grid: usize,
    /// Feature vector of the point `(x, y)`.
    pub features: Box<dyn Fn(f64, f64) -> Vec<f64>>,
}

impl PlotDomain {
    /// The Yin-Yang square `[0, 1]^2` with features `[x, y, 1 - x, 1 - y]`.
    pub fn yinyang(grid: usize) -> Self {
        Self {
            x: (0.0, 1.0),
            y: (0.0, 1.0),
            grid,
            features: Box::new(|x, y| vec![x, y, 1.0 - x, 1.0 - y]),
        }
    }
}

/// One panel: a title and a classifier returning logits.
pub struct Panel<'a> {
    /// Title shown above the panel.
    pub title: String,
    /// The classifier.
    pub model: &'a dyn Module,
}

const LIGHT: [&str; 10] = [
    "#f6c9a8", "#a9cbe8", "#bfe3b4", "#e9b8e0", "#f3e6a2", "#c7c7c7", "#b8e6e6", "#f2b6b6",
    "#d6c8f0", "#e0d4b8",
];
const DARK: [&str; 10] = [
    "#c2560f", "#1f5f9e", "#2e7d32", "#8e2a7b", "#a08300", "#555555", "#00838f", "#b71c1c",
    "#4527a0", "#6d4c41",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Renders the panels side by side; `points` are `(x, y, label)` drawn on every panel.
pub fn decision_boundary_svg(
    panels: &[Panel<'_>],
    domain: &PlotDomain,
    points: &[(f64, f64, u32)],
    device: &Device,
) -> Result<String> {
    let g = domain.grid.max(2);
    let size = 260.0;
    let (margin, top) = (10.0, 30.0);
    let width = panels.len() as f64 * (size + margin) + margin;
    let height = size + top + margin;
    let mut feats = Vec::with_capacity(g * g);
    for row in 0..g {
        for col in 0..g {
            let x = domain.x.0 + (col as f64 + 0.5) / g as f64 * (domain.x.1 - domain.x.0);
            let y = domain.y.1 - (row as f64 + 0.5) / g as f64 * (domain.y.1 - domain.y.0);
            feats.push((domain.features)(x, y));
        }
    }
    let dim = feats.first().map_or(0, Vec::len);
    let flat: Vec<f64> = feats.into_iter().flatten().collect();
    let input = Tensor::from_vec(flat, (g * g, dim), device)?.to_dtype(DType::F32)?;
    let cell = size / g as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"13\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for (p, panel) in panels.iter().enumerate() {
        let ox = margin + p as f64 * (size + margin);
        let classes = predict_classes(panel.model, &input)?;
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"20\" text-anchor=\"middle\">{}</text>\n<g shape-rendering=\"crispEdges\">\n",
            ox + size / 2.0,
            esc(&panel.title)
        ));
        for row in 0..g {
            let mut col = 0;
            while col < g {
                let c = classes[row * g + col];
                let mut end = col + 1;
                while end < g && classes[row * g + end] == c {
                    end += 1;
                }
                svg.push_str(&format!(
                    "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{:.2}\" fill=\"{}\"/>\n",
                    ox + col as f64 * cell,
                    top + row as f64 * cell,
                    (end - col) as f64 * cell + 0.01,
                    cell + 0.01,
                    LIGHT[c as usize % LIGHT.len()]
                ));
                col = end;
            }
        }
        svg.push_str("</g>\n");
        for &(x, y, label) in points {
            let px = ox + (x - domain.x.0) / (domain.x.1 - domain.x.0) * size;
            let py = top + (domain.y.1 - y) / (domain.y.1 - domain.y.0) * size;
            svg.push_str(&format!(
                "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"1.6\" fill=\"{}\"/>\n",
                DARK[label as usize % DARK.len()]
            ));
        }
        svg.push_str(&format!(
            "<rect x=\"{ox:.1}\" y=\"{top:.1}\" width=\"{size:.1}\" height=\"{size:.1}\" fill=\"none\" stroke=\"black\"/>\n"
        ));
    }
    svg.push_str("</svg>\n");
    Ok(svg)
}

/// Writes an SVG string atomically.
pub fn write_svg(path: impl AsRef<std::path::Path>, svg: &str) -> Result<()> {
    Ok(koopman_core::io::write_atomic(path, svg.as_bytes())?)
}
