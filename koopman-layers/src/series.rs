//! Multi-trajectory time series from a user's file: the input of `koopman fit`.
//!
//! A `.npy` array (`<f8` or `<i8`) of shape trajectories x time x dimension, or a CSV file whose
//! rows are `trajectory, x_1, ..., x_d` (the rows of one trajectory in time order, every
//! trajectory of the same length; a non-numeric first line is a header). Malformed files are
//! errors naming the file and the line.
//!
//! ```
//! use koopman_layers::series::Series;
//!
//! # fn main() -> koopman_layers::Result<()> {
//! let path = std::env::temp_dir().join(format!("koopman-series-doc-{}.csv", std::process::id()));
//! std::fs::write(&path, "id,x,y\na,0,1\na,1,2\nb,5,6\nb,7,8\n").unwrap();
//! let s = Series::read(&path)?;
//! assert_eq!((s.n_traj, s.n_time, s.dim), (2, 2, 2));
//! assert_eq!(s.values, vec![0.0, 1.0, 1.0, 2.0, 5.0, 6.0, 7.0, 8.0]);
//! # std::fs::remove_file(&path).unwrap();
//! # Ok(()) }
//! ```

use crate::error::{LayersError, Result};
use koopman_core::io::{read_npy, NpyData};
use koopman_core::CoreError;
use std::path::Path;

/// Trajectories of equal length, row-major `trajectory x time x dimension`.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The values.
    pub values: Vec<f64>,
    /// Trajectories.
    pub n_traj: usize,
    /// Time steps per trajectory.
    pub n_time: usize,
    /// State dimension.
    pub dim: usize,
}

/// A series file that is not a series: a [`CoreError::Format`] naming the file.
fn format_error(path: &Path, what: impl std::fmt::Display) -> LayersError {
    CoreError::Format(format!("{}: {what}", path.display())).into()
}

impl Series {
    /// Reads a `.npy` or CSV series (see the [module documentation](self)); non-finite values and
    /// empty series are errors.
    pub fn read(path: &Path) -> Result<Series> {
        let series = read_series(path)?;
        if series.values.is_empty() || series.n_time == 0 || series.dim == 0 {
            return Err(format_error(path, "holds no data"));
        }
        if let Some(k) = series.values.iter().position(|v| !v.is_finite()) {
            return Err(LayersError::NonFinite(format!(
                "{}: value {k} (trajectory {}, time {})",
                path.display(),
                k / (series.n_time * series.dim),
                (k / series.dim) % series.n_time
            )));
        }
        Ok(series)
    }
}

fn read_series(path: &Path) -> Result<Series> {
    if path.extension().is_some_and(|e| e == "npy") {
        let (shape, data) = read_npy(path)?;
        if shape.len() != 3 {
            return Err(LayersError::ShapeMismatch(format!(
                "expected a 3-D array (trajectories x time x dimension), got shape {shape:?}"
            )));
        }
        let values = match data {
            NpyData::F64(v) => v,
            NpyData::I64(v) => v.into_iter().map(|x| x as f64).collect(),
        };
        return Ok(Series {
            values,
            n_traj: shape[0],
            n_time: shape[1],
            dim: shape[2],
        });
    }
    let text = std::fs::read_to_string(path).map_err(|source| CoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut trajectories: Vec<(String, Vec<Vec<f64>>)> = Vec::new();
    for (line_no, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() < 2 || fields.iter().all(|f| f.is_empty()) {
            continue;
        }
        let parsed: std::result::Result<Vec<f64>, _> =
            fields[1..].iter().map(|f| f.parse::<f64>()).collect();
        let Ok(row) = parsed else {
            if line_no == 0 {
                continue; // header
            }
            return Err(format_error(
                path,
                format!("line {}: not numeric", line_no + 1),
            ));
        };
        match trajectories.last_mut() {
            Some((id, rows)) if id == fields[0] => rows.push(row),
            _ => trajectories.push((fields[0].to_string(), vec![row])),
        }
    }
    let Some((_, first)) = trajectories.first() else {
        return Err(format_error(path, "no data rows"));
    };
    let (n_time, dim) = (first.len(), first[0].len());
    let mut values = Vec::new();
    for (id, rows) in &trajectories {
        if rows.len() != n_time || rows.iter().any(|r| r.len() != dim) {
            return Err(LayersError::ShapeMismatch(format!(
                "trajectory {id} has {} rows (expected {n_time}) or a row of the wrong width",
                rows.len()
            )));
        }
        values.extend(rows.iter().flatten());
    }
    Ok(Series {
        values,
        n_traj: trajectories.len(),
        n_time,
        dim,
    })
}
