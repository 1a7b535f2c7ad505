//! Run context and reports: paper-versus-measured tables written as Markdown and JSON.

use crate::device::device_name;
use crate::provenance::Provenance;
use crate::{Result, Size};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Everything an experiment needs to know about the run.
#[derive(Clone, Debug)]
pub struct RunContext {
    /// Smoke, quick or full (paper) sizes.
    pub size: Size,
    /// Device the experiment computes on.
    pub device: Device,
    /// Folder for the report and any files (plots, arrays) experiments write.
    pub out_dir: PathBuf,
    /// Data folder (`KOOPMAN_DATA_DIR`), if set.
    pub data_dir: Option<PathBuf>,
    /// Base seed of every random choice.
    pub seed: u64,
    /// Whether missing data is an error rather than a reason to skip (under CI or with
    /// `KOOPMAN_DATA_DIR` set, as [`koopman_core::testing::data_required`]); applied to smoke
    /// runs (the CI run), see [`RunContext::missing_data_fails`].
    pub data_required: bool,
    /// A Python with torch and torchvision for the PyTorch peer of `stepping_mnist` (the paper's
    /// speed comparison), if one is to be run.
    pub torch_python: Option<PathBuf>,
    /// Commit, date and machine of the run.
    pub provenance: Provenance,
    /// When the run started (its wall time is reported).
    pub started: std::time::Instant,
    /// Test hook: each experiment runs on its deliberately broken input
    /// ([`Experiment::broken_input`](crate::experiments::Experiment::broken_input) says which),
    /// so that the tests can show its verdicts fail. Never set by the command line.
    pub broken_input: bool,
}

impl RunContext {
    /// A context with the data folder taken from `KOOPMAN_DATA_DIR` and seed 0.
    pub fn new(size: Size, device: Device, out_dir: PathBuf) -> Self {
        Self {
            size,
            device,
            out_dir,
            data_dir: std::env::var_os("KOOPMAN_DATA_DIR").map(PathBuf::from),
            seed: 0,
            data_required: koopman_core::testing::data_required(),
            torch_python: None,
            provenance: Provenance::now(),
            started: std::time::Instant::now(),
            broken_input: false,
        }
    }

    /// Whether an experiment whose data is missing fails the run instead of being skipped: a
    /// smoke run (the CI run) where data is required.
    pub fn missing_data_fails(&self) -> bool {
        self.size == Size::Smoke && self.data_required
    }

    /// Makes the output folder and checks that files can be written there, before any work:
    /// `--out` naming a file or a read-only place is refused at once, not after the run.
    pub fn check_out_dir(&self) -> Result<()> {
        let dir = &self.out_dir;
        let refuse = |why: String| {
            crate::BenchError::Usage(format!(
                "--out {}: not a writable folder ({why})",
                dir.display()
            ))
        };
        if dir.exists() && !dir.is_dir() {
            return Err(refuse("a file of that name exists".into()));
        }
        std::fs::create_dir_all(dir).map_err(|e| refuse(e.to_string()))?;
        let probe = dir.join(format!(".koopman-write-check-{}", std::process::id()));
        std::fs::write(&probe, b"").map_err(|e| refuse(e.to_string()))?;
        std::fs::remove_file(&probe).map_err(|e| refuse(e.to_string()))?;
        Ok(())
    }

    /// Writes `text` atomically to `name` among the run's files (staged, see
    /// [`RunContext::file_path`]) and returns `name`, ready for [`ExperimentReport::files`].
    pub fn write_file(&self, name: &str, text: &str) -> Result<String> {
        koopman_core::io::write_atomic(self.file_path(name)?, text.as_bytes())?;
        Ok(name.to_string())
    }

    /// Where an experiment writes its file `name` during the run: a staging folder inside the
    /// output folder ([`koopman_core::io::Staging`]), published by [`write_reports`] together
    /// with the reports, so that an interrupted run leaves the previous run's figures and reports
    /// untouched (never a mix).
    pub fn file_path(&self, name: &str) -> Result<PathBuf> {
        Ok(self.staging().path(name)?)
    }

    /// This run's staging of files (see [`RunContext::file_path`]).
    pub fn staging(&self) -> koopman_core::io::Staging {
        koopman_core::io::Staging::new(&self.out_dir)
    }
}

/// One headline quantity: what the paper reports and what this run measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Comparison {
    /// What is compared.
    pub quantity: String,
    /// The paper's figure or claim.
    pub paper: String,
    /// The measured figure.
    pub measured: String,
    /// Whether the measured figure meets the acceptance criterion, where there is one.
    pub holds: Option<bool>,
}

/// A plain table of measurements.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Table {
    /// Caption.
    pub title: String,
    /// Column names.
    pub header: Vec<String>,
    /// Rows of formatted cells.
    pub rows: Vec<Vec<String>>,
}

/// What one experiment produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExperimentReport {
    /// Registry name.
    pub name: String,
    /// One-line title.
    pub title: String,
    /// The paper it reproduces.
    pub paper: String,
    /// Headline comparisons.
    pub comparisons: Vec<Comparison>,
    /// Detailed tables.
    pub tables: Vec<Table>,
    /// Remarks (choices made, caveats).
    pub notes: Vec<String>,
    /// Files written beside the report (relative to the output folder).
    pub files: Vec<String>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// The fate of one experiment in a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    /// It ran.
    Ran(ExperimentReport),
    /// Its data was missing.
    Skipped {
        /// Registry name.
        name: String,
        /// Why.
        reason: String,
    },
    /// It failed with an error.
    Failed {
        /// Registry name.
        name: String,
        /// The error.
        error: String,
    },
}

/// What `report.json` holds: the run's settings and provenance, and every experiment's outcome.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSummary {
    /// The device the experiments computed on.
    pub device: String,
    /// Smoke, quick or full.
    pub size: Size,
    /// Base seed of the run (`--seed`).
    pub seed: u64,
    /// Commit, date and machine.
    pub provenance: Provenance,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
    /// Set for smoke runs: the figures are a run check, not a reproduction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The files this run wrote beside the reports.
    pub files: Vec<String>,
    /// Every experiment's outcome, in run order.
    pub outcomes: Vec<Outcome>,
}

/// A Markdown table; pipes inside cells (`|lambda|`, `|N|`) are escaped so that they do not
/// split columns.
fn markdown_table(out: &mut String, header: &[String], rows: &[Vec<String>]) {
    let line = |cells: &[String]| {
        let escaped: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
        format!("| {} |\n", escaped.join(" | "))
    };
    out.push_str(&line(header));
    out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    for row in rows {
        out.push_str(&line(row));
    }
    out.push('\n');
}

/// What a smoke report says about its figures (Markdown header and JSON `note`).
pub const SMOKE_NOTE: &str =
    "Smoke run: a run check, not a reproduction. Every experiment ran its \
     whole pipeline at tiny sizes; the figures are not expected to meet the papers' (\"no\" / MISS \
     rows are expected).";

/// Renders all outcomes as one Markdown document.
pub fn render_markdown(ctx: &RunContext, outcomes: &[Outcome]) -> String {
    let p = &ctx.provenance;
    let mut md = format!(
        "# koopman-bench reproduce\n\nDevice: {}; sizes: {:?}; seed {}. Commit {}, {}, on {} \
         ({} threads); {:.0} s in all.\n\n",
        device_name(&ctx.device),
        ctx.size,
        ctx.seed,
        p.short_commit(),
        p.date,
        p.machine,
        p.threads,
        ctx.started.elapsed().as_secs_f64()
    );
    if ctx.size == Size::Smoke {
        md.push_str(&format!("**{SMOKE_NOTE}**\n\n"));
    }
    for outcome in outcomes {
        md.push_str(&render_outcome(outcome));
    }
    md
}

/// One experiment's section of the Markdown report: its paper-versus-measured table, tables,
/// notes and figures.
pub fn render_outcome(outcome: &Outcome) -> String {
    let mut md = String::new();
    match outcome {
        Outcome::Ran(r) => {
            md.push_str(&format!(
                "## {} — {}\n\nPaper: {}. Took {:.1} s.\n\n",
                r.name, r.title, r.paper, r.seconds
            ));
            let header = ["quantity", "paper", "measured", "holds"].map(String::from);
            let rows: Vec<Vec<String>> = r
                .comparisons
                .iter()
                .map(|c| {
                    let holds = match c.holds {
                        Some(true) => "yes",
                        Some(false) => "no",
                        None => "-",
                    };
                    vec![
                        c.quantity.clone(),
                        c.paper.clone(),
                        c.measured.clone(),
                        holds.into(),
                    ]
                })
                .collect();
            markdown_table(&mut md, &header, &rows);
            for t in &r.tables {
                md.push_str(&format!("**{}**\n\n", t.title));
                markdown_table(&mut md, &t.header, &t.rows);
            }
            for n in &r.notes {
                md.push_str(&format!("- {n}\n"));
            }
            for f in &r.files {
                if f.ends_with(".svg") || f.ends_with(".png") {
                    md.push_str(&format!("\n![{f}]({f})\n"));
                }
            }
            md.push('\n');
        }
        Outcome::Skipped { name, reason } => {
            md.push_str(&format!("## {name} — skipped\n\n{reason}\n\n"));
        }
        Outcome::Failed { name, error } => {
            md.push_str(&format!("## {name} — FAILED\n\n```\n{error}\n```\n\n"));
        }
    }
    md
}

/// Writes `value` as pretty-printed JSON to `path`, atomically (reports, manifests).
pub fn write_json(path: impl AsRef<std::path::Path>, value: &impl Serialize) -> Result<()> {
    koopman_core::io::write_atomic(path, &serde_json::to_vec_pretty(value)?)?;
    Ok(())
}

/// Writes `report.md` and `report.json` into the output folder (atomically); returns their paths.
pub fn write_reports(ctx: &RunContext, outcomes: &[Outcome]) -> Result<(PathBuf, PathBuf)> {
    let md_path = ctx.out_dir.join("report.md");
    let json_path = ctx.out_dir.join("report.json");
    // The run's figures first, the reports (which name them) last.
    let files = ctx.staging().publish()?;
    koopman_core::io::write_atomic(&md_path, render_markdown(ctx, outcomes).as_bytes())?;
    let summary = RunSummary {
        device: device_name(&ctx.device).into(),
        size: ctx.size,
        seed: ctx.seed,
        provenance: ctx.provenance.clone(),
        seconds: ctx.started.elapsed().as_secs_f64(),
        note: (ctx.size == Size::Smoke).then(|| SMOKE_NOTE.to_string()),
        files,
        outcomes: outcomes.to_vec(),
    };
    write_json(&json_path, &summary)?;
    Ok((md_path, json_path))
}

/// Formats a float in scientific notation with 2 decimals.
pub fn sci(x: f64) -> String {
    format!("{x:.2e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files written during a run stay staged until the reports are written: an interrupted run
    /// (no `write_reports`) leaves the previous run's files as they were, a finished one replaces
    /// them and records its seed and files.
    #[test]
    fn run_outputs_are_published_together() {
        let out = std::env::temp_dir().join(format!("koopman-publish-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let mut ctx = RunContext::new(Size::Smoke, Device::Cpu, out.clone());
        ctx.check_out_dir().unwrap();
        ctx.write_file("fig.svg", "old").unwrap();
        write_reports(&ctx, &[]).unwrap();
        ctx.seed = 7;
        ctx.write_file("fig.svg", "new").unwrap();
        // Interrupted here: the published set is the old one.
        assert_eq!(std::fs::read_to_string(out.join("fig.svg")).unwrap(), "old");
        let old: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(old["seed"], 0);
        let skipped = Outcome::Skipped {
            name: "x".into(),
            reason: "y".into(),
        };
        write_reports(&ctx, &[skipped]).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("fig.svg")).unwrap(), "new");
        assert!(!ctx.staging().dir().exists());
        let new: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        assert_eq!(new["seed"], 7);
        assert_eq!(new["files"], serde_json::json!(["fig.svg"]));
        std::fs::remove_dir_all(&out).unwrap();
    }
}
