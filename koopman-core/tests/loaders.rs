//! Every file loader against seeded random input: an error or a consistent result, never a panic,
//! and never an allocation that the file does not justify. (`read_npy` and the IDX parser have
//! their own random-header tests beside their code.)

use candle_core::{DType, Device};
use koopman_core::dmd::{snapshots_from_csv, StateLayout};
use koopman_core::nn::{load_tensors, Activation, Mlp};
use rand::{Rng, SeedableRng};

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("koopman-loaders-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// CSV snapshot files of random rows: numbers, `NaN` / `inf`, text, empty fields, ragged rows.
#[test]
fn csv_snapshots_survive_random_files() {
    let dir = scratch("csv");
    let mut rng = rand::rngs::StdRng::seed_from_u64(31);
    let cells = [
        "1", "-2.5", "3e300", "1e-320", "NaN", "inf", "x", "", " 4 ", "0x10",
    ];
    for case in 0..300 {
        let rows = rng.random_range(0..6);
        let width = rng.random_range(1..5);
        let mut text = String::new();
        if rng.random_bool(0.3) {
            text.push_str("a,b,c\n");
        }
        for _ in 0..rows {
            let w = if rng.random_bool(0.1) {
                width + 1
            } else {
                width
            };
            let row: Vec<&str> = (0..w)
                .map(|_| {
                    if rng.random_bool(0.8) {
                        cells[rng.random_range(0..3)]
                    } else {
                        cells[rng.random_range(0..cells.len())]
                    }
                })
                .collect();
            text.push_str(&row.join(","));
            text.push('\n');
        }
        let path = dir.join(format!("case{case}.csv"));
        std::fs::write(&path, &text).unwrap();
        for layout in [StateLayout::StatePerRow, StateLayout::StatePerColumn] {
            if let Ok(m) = snapshots_from_csv(&path, layout) {
                assert!(
                    m.nrows() > 0 && m.ncols() > 0,
                    "case {case}: empty matrix\n{text}"
                );
                for j in 0..m.ncols() {
                    for i in 0..m.nrows() {
                        assert!(
                            m[(i, j)].is_finite(),
                            "case {case}: non-finite accepted\n{text}"
                        );
                    }
                }
            }
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// safetensors files with random headers (dtypes, shapes up to `u64::MAX`, offsets past the
/// data) and random bodies.
#[test]
fn safetensors_survive_random_headers() {
    let dir = scratch("st");
    let mut rng = rand::rngs::StdRng::seed_from_u64(32);
    let dims = ["0", "1", "3", "4294967296", "18446744073709551615"];
    for case in 0..300 {
        let shape: Vec<&str> = (0..rng.random_range(0..3))
            .map(|_| dims[rng.random_range(0..dims.len())])
            .collect();
        let dtype = ["F32", "F64", "U8", "Q9"][rng.random_range(0..4)];
        let end = [0u64, 8, 16, 1 << 40][rng.random_range(0..4)];
        let header = format!(
            "{{\"0.weight\":{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[0,{end}]}}}}",
            shape.join(",")
        );
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        if rng.random_bool(0.05) {
            bytes = u64::MAX.to_le_bytes().to_vec();
        }
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend((0..rng.random_range(0..24)).map(|_| rng.random::<u8>()));
        let path = dir.join(format!("case{case}.safetensors"));
        std::fs::write(&path, &bytes).unwrap();
        let _ = load_tensors(&path, DType::F32, &Device::Cpu);
        let _ = Mlp::load(&path, Activation::Relu, DType::F32, &Device::Cpu);
    }
    std::fs::remove_dir_all(dir).unwrap();
}
