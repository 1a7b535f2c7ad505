//! Self-contained SVG figures for the reports: curves over a shared x grid ([`lines_svg`]; solid,
//! dashed and dotted in turn), curves with shaded spread bands ([`spread_svg`]) and point clouds
//! ([`scatter_svg`]), with labelled axes, a legend and
//! a title wrapped onto as many lines as it needs. No plotting dependency: each figure is a few
//! hundred lines of SVG that any browser opens.
//!
//! ```
//! use koopman_bench::plot::{lines_svg, scatter_svg, Axes};
//!
//! let axes = Axes::new("steps past t2", "loss").x_range(0.0, 2500.0);
//! let svg = lines_svg("loss", &axes, &[("optimizer", &[1.0, 0.8, 0.7])], &[]);
//! assert!(svg.contains("steps past t2") && svg.contains("2500"));
//! let svg = scatter_svg("errors", &Axes::new("|true change|", "|error|"), &[("seed 0", &[(0.1, 0.01)])]);
//! assert!(svg.starts_with("<svg") && svg.contains("<circle"));
//! ```

/// Axis labels and the x range of a figure.
#[derive(Clone, Debug, Default)]
pub struct Axes {
    /// Label under the x axis.
    pub x_label: String,
    /// Label beside the y axis.
    pub y_label: String,
    /// The x values of the first and last grid point of [`lines_svg`] (the grid is uniform);
    /// `None`: the point index.
    pub x_range: Option<(f64, f64)>,
}

impl Axes {
    /// Axes labelled `x_label` and `y_label`.
    pub fn new(x_label: &str, y_label: &str) -> Self {
        Self {
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_range: None,
        }
    }

    /// The same axes with the x grid running from `first` to `last`.
    pub fn x_range(self, first: f64, last: f64) -> Self {
        Self {
            x_range: Some((first, last)),
            ..self
        }
    }
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
/// Solid, dashed, dotted: a count coprime to the colours', so that the first 24 curves differ in
/// colour or dash (and curves lying on each other stay visible).
const DASHES: [&str; 3] = ["none", "6 3", "2 3"];
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 380.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 56.0;
/// Characters of a title line (14 px sans-serif across the figure's width).
const TITLE_CHARS: usize = 80;
/// Height of a title line.
const TITLE_LINE: f64 = 17.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The finite range of `values`, widened to a unit interval when empty or flat.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if lo.is_finite() && hi > lo {
        (lo, hi)
    } else if lo.is_finite() {
        (lo - 0.5, lo + 0.5)
    } else {
        (0.0, 1.0)
    }
}

/// A number for a tick label: plain for moderate magnitudes, scientific otherwise.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || (1e-2..1e4).contains(&a) {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.2e}")
    }
}

/// `title` broken at spaces into lines of at most [`TITLE_CHARS`] characters (a longer word
/// stands on its own line).
fn title_lines(title: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in title.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= TITLE_CHARS => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    if lines.is_empty() {
        lines.push(String::new());
    }
    lines
}

/// The plot area mapping data to pixels.
struct Frame {
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.x.0) / (self.x.1 - self.x.0) * (WIDTH - LEFT - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        TOP + (self.y.1 - y) / (self.y.1 - self.y.0) * (HEIGHT - TOP - BOTTOM)
    }

    /// The figure's opening: title, box, tick labels at the ends and middle of both axes, axis
    /// labels; `legend` entries below the plot area. Everything after the title sits in a group
    /// shifted down by the title's extra lines; [`close`] ends it.
    fn open(&self, title: &str, axes: &Axes, legend: usize) -> String {
        let (w, h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let lines = title_lines(title);
        let extra = TITLE_LINE * (lines.len() - 1) as f64;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
            HEIGHT + extra + 20.0 * legend as f64,
        );
        for (k, line) in lines.iter().enumerate() {
            svg.push_str(&format!(
                "<text x=\"10\" y=\"{:.0}\" font-size=\"14\">{}</text>\n",
                18.0 + TITLE_LINE * k as f64,
                esc(line)
            ));
        }
        svg.push_str(&format!(
            "<g transform=\"translate(0 {extra:.0})\">\n\
             <rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{w}\" height=\"{h}\" fill=\"none\" stroke=\"black\"/>\n"
        ));
        for k in 0..3 {
            let f = k as f64 / 2.0;
            let (xv, yv) = (
                self.x.0 + f * (self.x.1 - self.x.0),
                self.y.0 + f * (self.y.1 - self.y.0),
            );
            // The outer x ticks sit inside the figure's width.
            let anchor = ["start", "middle", "end"][k];
            svg.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
                self.px(xv),
                TOP + h + 15.0,
                tick(xv),
                LEFT - 4.0,
                self.py(yv) + 4.0,
                tick(yv),
            ));
        }
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n\
             <text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
            LEFT + w / 2.0,
            TOP + h + 34.0,
            esc(&axes.x_label),
            TOP + h / 2.0,
            esc(&axes.y_label),
        ));
        svg
    }
}

/// The end of a figure opened by [`Frame::open`].
fn close(mut svg: String) -> String {
    svg.push_str("</g>\n</svg>\n");
    svg
}

/// The colour and dash of curve (or point set) `k`.
fn stroke(k: usize) -> (&'static str, &'static str) {
    (COLORS[k % COLORS.len()], DASHES[k % DASHES.len()])
}

/// Legend line `k`: a swatch of set `k`'s colour (a short line in its dash for a curve, a square
/// for a point cloud) and its name.
fn legend_entry(k: usize, name: &str, curve: bool) -> String {
    let y = HEIGHT + 20.0 * k as f64 - 8.0;
    let (color, dash) = stroke(k);
    let (swatch, text_x) = if curve {
        let (mid, end) = (y + 5.0, LEFT + 24.0);
        (
            format!(
                "<line x1=\"{LEFT}\" y1=\"{mid:.0}\" x2=\"{end}\" y2=\"{mid:.0}\" stroke=\"{color}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\"/>"
            ),
            LEFT + 30.0,
        )
    } else {
        (
            format!(
                "<rect x=\"{LEFT}\" y=\"{y:.0}\" width=\"10\" height=\"10\" fill=\"{color}\"/>"
            ),
            LEFT + 16.0,
        )
    };
    format!(
        "{swatch}<text x=\"{text_x}\" y=\"{:.0}\">{}</text>\n",
        y + 10.0,
        esc(name)
    )
}

/// The uniform x grid shared by series of at most `n` points: over `axes.x_range`, or the point
/// index. Returns the grid's ends and the x of point `i`.
fn grid(axes: &Axes, n: usize) -> ((f64, f64), impl Fn(usize) -> f64) {
    let n = n.max(2);
    let x = axes.x_range.unwrap_or((0.0, (n - 1) as f64));
    (x, move |i: usize| {
        x.0 + (x.1 - x.0) * i as f64 / (n - 1) as f64
    })
}

/// Pixel coordinates `x,y` of the finite points of `s` on the grid `at`.
fn pixels(frame: &Frame, at: &impl Fn(usize) -> f64, s: &[f64]) -> Vec<String> {
    s.iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .map(|(i, v)| format!("{:.1},{:.1}", frame.px(at(i)), frame.py(*v)))
        .collect()
}

/// Curve `k` through `points`, in its colour and dash.
fn polyline(k: usize, points: &[String]) -> String {
    let (color, dash) = stroke(k);
    format!(
        "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" stroke-dasharray=\"{dash}\" points=\"{}\"/>\n",
        points.join(" "),
    )
}

/// Curves over a shared uniform x grid (point `i` of every series at the same x; the grid runs
/// over `axes.x_range`, or the point index), with vertical markers at x positions (in the
/// grid's x units). Non-finite points are left out.
pub fn lines_svg(
    title: &str,
    axes: &Axes,
    series: &[(&str, &[f64])],
    markers: &[(&str, f64)],
) -> String {
    let (x, at) = grid(axes, series.iter().map(|(_, s)| s.len()).max().unwrap_or(1));
    let frame = Frame {
        x,
        y: range(series.iter().flat_map(|(_, s)| s.iter().copied())),
    };
    let mut svg = frame.open(title, axes, series.len());
    for (k, (name, s)) in series.iter().enumerate() {
        svg.push_str(&polyline(k, &pixels(&frame, &at, s)));
        svg.push_str(&legend_entry(k, name, true));
    }
    for (name, m) in markers {
        let px = frame.px(*m);
        svg.push_str(&format!(
            "<line x1=\"{px:.1}\" y1=\"{TOP}\" x2=\"{px:.1}\" y2=\"{}\" stroke=\"black\" stroke-dasharray=\"4 3\"/>\
             <text x=\"{:.1}\" y=\"{}\">{}</text>\n",
            HEIGHT - BOTTOM,
            px + 3.0,
            TOP + 14.0,
            esc(name)
        ));
    }
    close(svg)
}

/// A curve with its spread over runs (seeds): the `mean` drawn as a line, the band from `lo` to
/// `hi` (for example mean ± sd) shaded in the line's colour.
#[derive(Clone, Copy, Debug)]
pub struct Spread<'a> {
    /// Legend name.
    pub name: &'a str,
    /// The central curve.
    pub mean: &'a [f64],
    /// Lower edge of the band, point by point.
    pub lo: &'a [f64],
    /// Upper edge of the band.
    pub hi: &'a [f64],
}

/// Curves with shaded spread bands over a shared uniform x grid (as [`lines_svg`]): one legend
/// entry per curve, its band in the same colour. A band leaves out the points where either edge
/// is not finite.
///
/// ```
/// use koopman_bench::plot::{spread_svg, Axes, Spread};
///
/// let (mean, lo, hi) = ([3.0, 2.0, 1.5], [2.5, 1.8, 1.4], [3.5, 2.2, 1.6]);
/// let svg = spread_svg(
///     "test error",
///     &Axes::new("training step", "RMSE").x_range(10.0, 30.0),
///     &[Spread { name: "J = 1", mean: &mean, lo: &lo, hi: &hi }],
/// );
/// assert_eq!(svg.matches("<polygon").count(), 1);
/// assert!(svg.contains("J = 1") && svg.contains("training step"));
/// ```
pub fn spread_svg(title: &str, axes: &Axes, series: &[Spread]) -> String {
    let len = |s: &Spread| s.mean.len().max(s.lo.len()).max(s.hi.len());
    let (x, at) = grid(axes, series.iter().map(len).max().unwrap_or(1));
    let frame = Frame {
        x,
        y: range(
            series
                .iter()
                .flat_map(|s| s.mean.iter().chain(s.lo).chain(s.hi).copied()),
        ),
    };
    let mut svg = frame.open(title, axes, series.len());
    for (k, s) in series.iter().enumerate() {
        // The band: along the lower edge, back along the upper one, where both are finite.
        let both: Vec<(usize, f64, f64)> =
            s.lo.iter()
                .zip(s.hi)
                .enumerate()
                .filter(|(_, (a, b))| a.is_finite() && b.is_finite())
                .map(|(i, (a, b))| (i, *a, *b))
                .collect();
        let edge: Vec<String> = both
            .iter()
            .map(|&(i, a, _)| (i, a))
            .chain(both.iter().rev().map(|&(i, _, b)| (i, b)))
            .map(|(i, v)| format!("{:.1},{:.1}", frame.px(at(i)), frame.py(v)))
            .collect();
        svg.push_str(&format!(
            "<polygon fill=\"{}\" fill-opacity=\"0.2\" stroke=\"none\" points=\"{}\"/>\n",
            stroke(k).0,
            edge.join(" "),
        ));
        svg.push_str(&polyline(k, &pixels(&frame, &at, s.mean)));
        svg.push_str(&legend_entry(k, s.name, true));
    }
    close(svg)
}

/// Point clouds `(x, y)`, one colour per set; an axis whose values are all `>= 0` starts at 0.
/// Non-finite points are left out.
pub fn scatter_svg(title: &str, axes: &Axes, sets: &[(&str, &[(f64, f64)])]) -> String {
    let points = || sets.iter().flat_map(|(_, s)| s.iter());
    // Magnitudes (no negative value) are drawn from 0.
    let from_zero = |(lo, hi): (f64, f64)| if lo >= 0.0 { (0.0, hi) } else { (lo, hi) };
    let frame = Frame {
        x: from_zero(range(points().map(|p| p.0))),
        y: from_zero(range(points().map(|p| p.1))),
    };
    let mut svg = frame.open(title, axes, sets.len());
    for (k, (name, s)) in sets.iter().enumerate() {
        for &(x, y) in s.iter().filter(|p| p.0.is_finite() && p.1.is_finite()) {
            svg.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{}\" fill-opacity=\"0.7\"/>\n",
                frame.px(x),
                frame.py(y),
                stroke(k).0,
            ));
        }
        svg.push_str(&legend_entry(k, name, false));
    }
    close(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_land_inside_the_frame_and_labels_are_escaped() {
        let svg = lines_svg(
            "a < b",
            &Axes::new("x", "y").x_range(10.0, 20.0),
            &[("s", &[1.0, f64::NAN, 3.0])],
            &[("m", 15.0)],
        );
        assert!(svg.contains("a &lt; b"));
        // The first point at x = 10 sits on the left edge, the last at x = 20 on the right.
        assert!(svg.contains(&format!("points=\"{LEFT:.1},")));
        assert!(svg.contains(&format!("{:.1},{TOP:.1}\"", WIDTH - RIGHT)));
        // The marker at x = 15 is in the middle.
        let mid = (LEFT + WIDTH - RIGHT) / 2.0;
        assert!(svg.contains(&format!("x1=\"{mid:.1}\"")));
        let svg = scatter_svg(
            "p",
            &Axes::new("x", "y"),
            &[("a", &[(0.0, 0.0), (1.0, 2.0)])],
        );
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains(&format!("cx=\"{LEFT:.1}\" cy=\"{:.1}\"", HEIGHT - BOTTOM)));
        // Positive values: the axes start at 0, so (1, 1) is mid-way along x.
        let svg = scatter_svg(
            "q",
            &Axes::new("x", "y"),
            &[("a", &[(1.0, 1.0), (2.0, 2.0)])],
        );
        assert!(svg.contains(&format!("cx=\"{:.1}\"", (LEFT + WIDTH - RIGHT) / 2.0)));
    }

    #[test]
    fn a_long_title_wraps_and_the_figure_grows_by_its_extra_lines() {
        let short = lines_svg("t", &Axes::default(), &[("a", &[1.0, 2.0])], &[]);
        assert!(short.contains("translate(0 0)"));
        let words = ["word"; 40].join(" ");
        let lines = title_lines(&words);
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.chars().count() <= TITLE_CHARS));
        assert_eq!(lines.join(" "), words);
        let long = lines_svg(&words, &Axes::default(), &[("a", &[1.0, 2.0])], &[]);
        let extra = 2.0 * TITLE_LINE;
        assert!(long.contains(&format!("translate(0 {extra:.0})")));
        assert!(long.contains(&format!("height=\"{}\"", HEIGHT + extra + 20.0)));
        assert_eq!(long.matches("font-size=\"14\"").count(), 3);
        // One word longer than a line stands alone.
        assert_eq!(title_lines(&"x".repeat(100)).len(), 1);
    }

    #[test]
    fn the_first_24_curves_differ_and_the_legend_draws_each_curves_dash() {
        let strokes: Vec<_> = (0..24).map(stroke).collect();
        for (i, a) in strokes.iter().enumerate() {
            assert!(!strokes[..i].contains(a), "curve {i} repeats {a:?}");
        }
        // Seven curves (one pruning figure's count): the seventh is neither the first's colour
        // with its dash, and its legend line carries the curve's dash.
        let ys: Vec<Vec<f64>> = (0..7).map(|k| vec![k as f64, k as f64 + 1.0]).collect();
        let names: Vec<String> = (0..7).map(|k| format!("run {k}")).collect();
        let series: Vec<(&str, &[f64])> = names
            .iter()
            .zip(&ys)
            .map(|(n, y)| (n.as_str(), y.as_slice()))
            .collect();
        let svg = lines_svg("t", &Axes::new("x", "y"), &series, &[]);
        let (color, dash) = stroke(6);
        let curve = format!("stroke=\"{color}\" stroke-width=\"1.5\" stroke-dasharray=\"{dash}\"");
        let legend = format!("stroke=\"{color}\" stroke-width=\"2\" stroke-dasharray=\"{dash}\"");
        assert_eq!(svg.matches(&curve).count(), 1, "{svg}");
        assert_eq!(svg.matches(&legend).count(), 1, "{svg}");
        assert_ne!(stroke(6), stroke(0));
    }

    #[test]
    fn a_spread_band_runs_along_its_edges_in_its_curves_colour() {
        let (mean, lo, hi) = ([1.0, 2.0, 3.0], [0.0, f64::NAN, 2.0], [2.0, 3.0, 4.0]);
        let (m2, l2, h2) = ([2.0; 3], [1.5; 3], [2.5; 3]);
        let svg = spread_svg(
            "s",
            &Axes::new("x", "y").x_range(0.0, 2.0),
            &[
                Spread {
                    name: "a",
                    mean: &mean,
                    lo: &lo,
                    hi: &hi,
                },
                Spread {
                    name: "b",
                    mean: &m2,
                    lo: &l2,
                    hi: &h2,
                },
            ],
        );
        // y runs over 0..4 (the bands' edges): the band of "a" skips the middle point (its lower
        // edge is NaN) and goes along lo at x = 0, 2, then back along hi at x = 2, 0.
        let (x0, x2) = (LEFT, WIDTH - RIGHT);
        let py = |v: f64| TOP + (4.0 - v) / 4.0 * (HEIGHT - TOP - BOTTOM);
        let band = format!(
            "fill=\"{}\" fill-opacity=\"0.2\" stroke=\"none\" points=\"{x0:.1},{:.1} {x2:.1},{:.1} {x2:.1},{:.1} {x0:.1},{:.1}\"",
            stroke(0).0,
            py(0.0),
            py(2.0),
            py(4.0),
            py(2.0)
        );
        assert!(svg.contains(&band), "{svg}");
        assert_eq!(svg.matches("<polygon").count(), 2);
        assert!(svg.contains(&format!("fill=\"{}\" fill-opacity", stroke(1).0)));
        // One mean line and one legend entry per curve, the mean through all three points.
        assert_eq!(svg.matches("<polyline").count(), 2);
        let mid = (LEFT + WIDTH - RIGHT) / 2.0;
        assert!(svg.contains(&format!(
            "{x0:.1},{:.1} {mid:.1},{:.1} {x2:.1},{:.1}\"",
            py(1.0),
            py(2.0),
            py(3.0)
        )));
        assert!(svg.contains(">a</text>") && svg.contains(">b</text>"));
    }

    #[test]
    fn empty_and_flat_input_give_a_valid_figure() {
        let svg = lines_svg("e", &Axes::default(), &[], &[]);
        assert!(svg.ends_with("</svg>\n"));
        let svg = scatter_svg("f", &Axes::default(), &[("one", &[(1.0, 1.0)])]);
        assert!(svg.contains("<circle") && !svg.contains("NaN"));
    }
}
