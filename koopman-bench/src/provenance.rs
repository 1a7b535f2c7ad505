//! Where and when a run was made: the commit (and whether the tree had uncommitted changes), the
//! UTC date, the machine (CPU model, cores, OS) and the threads the run used. Every `reproduce`
//! report carries it, so that a committed result says what produced it.
//!
//! ```
//! let p = koopman_bench::provenance::Provenance::now();
//! assert_eq!(p.date.len(), 20); // 2026-12-05T12:00:00Z
//! assert!(!p.machine.is_empty());
//! ```

use serde::{Deserialize, Serialize};

/// Where and when a run was made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// `git rev-parse HEAD` of the workspace the binary was built from, or `unknown`.
    pub commit: String,
    /// Whether that tree had uncommitted changes to tracked files when the run started.
    pub dirty: bool,
    /// UTC time the run started, ISO 8601 (`2026-12-05T12:00:00Z`).
    pub date: String,
    /// CPU model, logical cores and OS.
    pub machine: String,
    /// Threads of the CPU kernels (`RAYON_NUM_THREADS`, else the logical cores).
    pub threads: usize,
}

impl Provenance {
    /// The provenance of a run starting now.
    pub fn now() -> Self {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(&root)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
        let dirty =
            git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = kernel_threads();
        Self {
            commit,
            dirty,
            date: utc_now(),
            machine: format!(
                "{}, {cores} logical cores, {} {}",
                cpu_model(),
                std::env::consts::OS,
                std::env::consts::ARCH
            ),
            threads,
        }
    }

    /// The first 7 characters of the commit, with `+` when the tree was dirty.
    pub fn short_commit(&self) -> String {
        let short: String = self.commit.chars().take(7).collect();
        if self.dirty {
            format!("{short}+")
        } else {
            short
        }
    }
}

/// Threads of the CPU kernels: `RAYON_NUM_THREADS`, else the logical cores.
pub fn kernel_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The CPU model from `/proc/cpuinfo`, or `unknown CPU`.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The current UTC time as `YYYY-MM-DDThh:mm:ssZ`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    iso_utc(secs)
}

/// `secs` after the Unix epoch as `YYYY-MM-DDThh:mm:ssZ` (proleptic Gregorian calendar; the
/// civil-from-days algorithm of H. Hinnant).
fn iso_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::iso_utc;

    #[test]
    fn dates_of_known_instants() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso_utc(1_796_472_000), "2026-12-05T12:00:00Z");
        assert_eq!(iso_utc(4_107_542_399), "2100-02-28T23:59:59Z");
    }
}
