//! Files: atomic writes and `.npy` arrays.
//!
//! Every file the workspace writes goes through [`write_atomic`]: the bytes land in a temporary
//! file beside the target, are flushed to disk, and are renamed over the target, so an interrupted
//! save never destroys the previous file. [`write_npy`] and [`read_npy`] handle NumPy's `.npy`
//! format for little-endian `f64` (`<f8`) and `i64` (`<i8`) C-order arrays.
//!
//! ```
//! use koopman_core::io::{read_npy, write_npy, NpyData};
//! # fn main() -> koopman_core::Result<()> {
//! let dir = std::env::temp_dir().join(format!("koopman-io-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("a.npy");
//! write_npy(&path, &[2, 3], &NpyData::F64(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]))?;
//! let (shape, data) = read_npy(&path)?;
//! assert_eq!(shape, vec![2, 3]);
//! assert_eq!(data, NpyData::F64(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]));
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(()) }
//! ```

use crate::error::{CoreError, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

fn io_err(path: &Path, source: std::io::Error) -> CoreError {
    CoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically: temporary file in the same folder, `fsync`, rename.
/// Creates missing parent folders.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        std::fs::File::create(tmp)
            .and_then(|mut f| f.write_all(bytes))
            .map_err(|e| io_err(tmp, e))
    })
}

/// Atomic write through a writer that produces the file at a temporary path: `write(tmp)` creates
/// the complete file, which is then flushed to disk and renamed over `path`. On any error the
/// temporary file is removed and `path` is left as it was. Creates missing parent folders.
pub fn write_atomic_with(
    path: impl AsRef<Path>,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let path = path.as_ref();
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| io_err(&parent, e))?;
    let name = path
        .file_name()
        .ok_or_else(|| CoreError::InvalidArgument(format!("{} names no file", path.display())))?;
    let tmp = parent.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = write(&tmp).and_then(|_| {
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| io_err(path, e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// FNV-1a (64 bit) over bytes fed in order: a fast checksum to tell contents apart (a data set
/// version, the files of one run), not a cryptographic hash.
///
/// ```
/// use koopman_core::io::Fnv1a;
/// let a = Fnv1a::default().update(b"model").update(b"v1").value();
/// assert_eq!(a, Fnv1a::default().update(b"modelv1").value());
/// assert_ne!(a, Fnv1a::default().update(b"modelv2").value());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    /// The checksum with `bytes` appended.
    pub fn update(self, bytes: &[u8]) -> Self {
        Self(bytes.iter().fold(self.0, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        }))
    }

    /// The checksum so far.
    pub fn value(self) -> u64 {
        self.0
    }
}

/// The files of one run, written into a staging folder inside the output folder and published
/// together: until [`Staging::publish`] the output folder keeps the previous run's set, so an
/// interrupted run never leaves a mix of two runs (a new model beside an old normalisation, new
/// figures beside an old report). Write the file that describes the set (a report, a manifest)
/// after publishing, last.
///
/// ```
/// use koopman_core::io::{write_atomic, Staging};
///
/// # fn main() -> koopman_core::Result<()> {
/// let out = std::env::temp_dir().join(format!("koopman-staging-doc-{}", std::process::id()));
/// let staging = Staging::new(&out);
/// write_atomic(staging.path("model.txt")?, b"new model")?;
/// assert!(!out.join("model.txt").exists()); // not published yet
/// assert_eq!(staging.publish()?, vec!["model.txt".to_string()]);
/// assert_eq!(std::fs::read(out.join("model.txt")).unwrap(), b"new model");
/// # std::fs::remove_dir_all(&out).unwrap();
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Staging {
    out: PathBuf,
    dir: PathBuf,
}

impl Staging {
    /// The staging folder of this process for the output folder `out` (nothing is created yet).
    pub fn new(out: impl AsRef<Path>) -> Self {
        let out = out.as_ref().to_path_buf();
        let dir = out.join(format!(".staging-{}", std::process::id()));
        Self { out, dir }
    }

    /// The staging folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where to write the file `name` of this run (the staging folder is created).
    pub fn path(&self, name: &str) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io_err(&self.dir, e))?;
        Ok(self.dir.join(name))
    }

    /// Moves every staged file into the output folder (replacing older files of the same name),
    /// removes the staging folder, and returns the names, sorted.
    pub fn publish(&self) -> Result<Vec<String>> {
        if !self.dir.is_dir() {
            return Ok(Vec::new());
        }
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| io_err(&self.dir, e))? {
            let entry = entry.map_err(|e| io_err(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let target = self.out.join(&name);
            std::fs::rename(entry.path(), &target).map_err(|e| io_err(&target, e))?;
            names.push(name);
        }
        std::fs::remove_dir(&self.dir).map_err(|e| io_err(&self.dir, e))?;
        self.remove_abandoned();
        names.sort();
        Ok(names)
    }

    /// Removes the staging folders that runs killed before publishing left in the output folder:
    /// those of processes that no longer exist (Linux: no `/proc/<pid>`; elsewhere none are
    /// removed). Best effort: a folder that cannot be removed stays.
    fn remove_abandoned(&self) {
        if !cfg!(target_os = "linux") {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.out) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(".staging-")
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// The element data of a `.npy` array.
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    /// `<f8`
    F64(Vec<f64>),
    /// `<i8`
    I64(Vec<i64>),
}

impl NpyData {
    fn len(&self) -> usize {
        match self {
            NpyData::F64(v) => v.len(),
            NpyData::I64(v) => v.len(),
        }
    }

    fn descr(&self) -> &'static str {
        match self {
            NpyData::F64(_) => "<f8",
            NpyData::I64(_) => "<i8",
        }
    }
}

/// Writes a C-order array of the given shape as `.npy` (version 1.0), atomically.
pub fn write_npy(path: impl AsRef<Path>, shape: &[usize], data: &NpyData) -> Result<()> {
    let count: usize = shape.iter().product();
    if count != data.len() {
        return Err(CoreError::ShapeMismatch(format!(
            "{} values for .npy shape {shape:?}",
            data.len()
        )));
    }
    let shape_str = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        data.descr(),
        shape_str
    );
    // Magic (6) + version (2) + length (2) + header + '\n' is a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + 8 * count);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    match data {
        NpyData::F64(v) => v
            .iter()
            .for_each(|x| bytes.extend_from_slice(&x.to_le_bytes())),
        NpyData::I64(v) => v
            .iter()
            .for_each(|x| bytes.extend_from_slice(&x.to_le_bytes())),
    }
    write_atomic(path, &bytes)
}

/// Reads a C-order little-endian `f64` or `i64` `.npy` array; returns its shape and data.
/// Malformed files (bad magic, unsupported dtype or order, truncated data) are errors.
pub fn read_npy(path: impl AsRef<Path>) -> Result<(Vec<usize>, NpyData)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let bad = |why: &str| CoreError::InvalidArgument(format!("{}: {why}", path.display()));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (bad magic)"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(&format!("unsupported .npy version {v}"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or_else(|| bad("truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr").ok_or_else(|| bad("header has no descr"))?;
    let is_f64 = descr.starts_with("'<f8'");
    let is_i64 = descr.starts_with("'<i8'");
    if !is_f64 && !is_i64 {
        return Err(bad(
            "only little-endian f64 ('<f8') and i64 ('<i8') arrays are supported",
        ));
    }
    let fortran = field("fortran_order").ok_or_else(|| bad("header has no fortran_order"))?;
    if fortran.starts_with("True") {
        return Err(bad(
            "Fortran-order arrays are not supported; save with C order",
        ));
    }
    let shape_text = field("shape").ok_or_else(|| bad("header has no shape"))?;
    let close = shape_text.find(')').ok_or_else(|| bad("malformed shape"))?;
    let shape = shape_text[1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad("malformed shape")))
        .collect::<Result<Vec<_>>>()?;
    // Checked: a header may claim any shape, and a wrapped product would accept a short body.
    let count = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|c| c.checked_mul(8).is_some())
        .ok_or_else(|| bad(&format!("shape {shape:?} overflows the address space")))?;
    let body = &bytes[start + header_len..];
    if body.len() != 8 * count {
        return Err(bad(&format!(
            "data holds {} bytes, shape {shape:?} needs {}",
            body.len(),
            8 * count
        )));
    }
    let words = body.chunks_exact(8).map(|c| {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        b
    });
    let data = if is_f64 {
        NpyData::F64(words.map(f64::from_le_bytes).collect())
    } else {
        NpyData::I64(words.map(i64::from_le_bytes).collect())
    };
    Ok((shape, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("koopman-io-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = scratch("atomic");
        let p = dir.join("x.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .collect();
        assert!(leftovers.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Random headers (shapes with huge, zero and overflowing dimensions, versions, dtypes,
    /// orders) over random bodies: the readers return an error or a consistent array, and never
    /// panic or allocate what the file does not hold.
    #[test]
    fn npy_readers_survive_random_headers() {
        use rand::{Rng, SeedableRng};
        let dir = scratch("fuzz");
        let mut rng = rand::rngs::StdRng::seed_from_u64(24);
        let dims = [
            0usize,
            1,
            2,
            3,
            7,
            1 << 31,
            1 << 32,
            1 << 61,
            usize::MAX / 3,
            usize::MAX,
        ];
        for case in 0..400 {
            let rank = rng.random_range(0..4);
            let shape: Vec<String> = (0..rank)
                .map(|_| dims[rng.random_range(0..dims.len())].to_string())
                .collect();
            let shape = match shape.len() {
                1 => format!("({},)", shape[0]),
                _ => format!("({})", shape.join(", ")),
            };
            let descr = ["'<f8'", "'<i8'", "'>f8'", "'<f4'"][rng.random_range(0..4)];
            let order = ["False", "True"][usize::from(rng.random_bool(0.1))];
            let header =
                format!("{{'descr': {descr}, 'fortran_order': {order}, 'shape': {shape}, }}\n");
            let mut bytes = b"\x93NUMPY".to_vec();
            let version = [1u8, 2, 3, 9][rng.random_range(0..4)];
            bytes.extend_from_slice(&[version, 0]);
            if version == 1 {
                bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
            } else {
                bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
            }
            // Sometimes a header length that runs past the file.
            if rng.random_bool(0.05) {
                bytes[8] = 0xff;
            }
            bytes.extend_from_slice(header.as_bytes());
            let body = [0usize, 8, 16, 24, 56][rng.random_range(0..5)];
            bytes.extend((0..body).map(|_| rng.random::<u8>()));
            let p = dir.join(format!("case{case}.npy"));
            std::fs::write(&p, &bytes).unwrap();
            if let Ok((shape, data)) = read_npy(&p) {
                assert_eq!(
                    shape.iter().product::<usize>(),
                    data.len(),
                    "case {case}: {header}"
                );
            }
            let _ = crate::dmd::snapshots_from_npy(&p, crate::dmd::StateLayout::StatePerRow);
            let _ = crate::dmd::snapshots_from_npy(&p, crate::dmd::StateLayout::StatePerColumn);
        }
        // The file of the issue: 128 bytes whose shape product wraps around.
        let p = dir.join("wrap.npy");
        let header =
            "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }\n";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let err = read_npy(&p).unwrap_err().to_string();
        assert!(err.contains("overflows"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn staging_publishes_together_and_removes_abandoned_folders() {
        let out = scratch("staging");
        let abandoned = out.join(".staging-4294967294"); // no such process
        std::fs::create_dir_all(&abandoned).unwrap();
        std::fs::write(abandoned.join("half.svg"), b"x").unwrap();
        write_atomic(out.join("a.txt"), b"old").unwrap();
        let staging = Staging::new(&out);
        write_atomic(staging.path("a.txt").unwrap(), b"new").unwrap();
        write_atomic(staging.path("b.txt").unwrap(), b"new").unwrap();
        assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"old");
        assert!(!out.join("b.txt").exists());
        assert_eq!(staging.publish().unwrap(), ["a.txt", "b.txt"]);
        assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"new");
        assert!(!staging.dir().exists());
        assert_eq!(abandoned.exists(), !cfg!(target_os = "linux"));
        // Nothing staged: nothing published.
        assert!(Staging::new(&out).publish().unwrap().is_empty());
        std::fs::remove_dir_all(out).unwrap();
    }

    #[test]
    fn npy_round_trip_and_malformed_files() {
        let dir = scratch("npy");
        let p = dir.join("i.npy");
        write_npy(&p, &[4], &NpyData::I64(vec![1, -2, 3, 4])).unwrap();
        assert_eq!(
            read_npy(&p).unwrap(),
            (vec![4], NpyData::I64(vec![1, -2, 3, 4]))
        );
        assert!(matches!(
            write_npy(&p, &[3], &NpyData::I64(vec![1])),
            Err(CoreError::ShapeMismatch(_))
        ));
        let bytes = std::fs::read(&p).unwrap();
        let truncated = dir.join("t.npy");
        std::fs::write(&truncated, &bytes[..bytes.len() - 3]).unwrap();
        assert!(read_npy(&truncated).is_err());
        let garbage = dir.join("g.npy");
        std::fs::write(&garbage, b"hello world, not numpy").unwrap();
        assert!(read_npy(&garbage).is_err());
        assert!(matches!(
            read_npy(dir.join("missing.npy")),
            Err(CoreError::Io { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
