//! Criterion bench: the partitioned finite section (streamed LQ) at the shapes Koopman stepping
//! fits: the NN DE solver's node partition (10 operators of size 2 and 12 of size 11 over 10,000
//! snapshot pairs) and an MNIST wrapper window (1,580 operators of size 10 and 50 of size 21 over
//! 250 pairs). The snapshots follow a slow, slightly noisy linear drift, as weights late in
//! training do.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use koopman_core::dmd::{finite_section_partitioned, FiniteSectionConfig};

/// `pairs + 1` snapshots of `sum(size * count)` coordinates and the groups, in order.
fn drift(groups: &[(usize, usize)], pairs: usize) -> (Vec<Vec<f64>>, Vec<Vec<usize>>) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let mut coordinates = Vec::new();
    let mut next = 0;
    for &(size, count) in groups {
        for _ in 0..count {
            coordinates.push((next..next + size).collect());
            next += size;
        }
    }
    let mut x: Vec<f64> = (0..next).map(|_| uniform()).collect();
    let mut snapshots = Vec::with_capacity(pairs + 1);
    for _ in 0..=pairs {
        snapshots.push(x.clone());
        for (i, v) in x.iter_mut().enumerate() {
            *v = 0.9999 * *v + 1e-4 * (i as f64).sin() + 1e-6 * uniform();
        }
    }
    (snapshots, coordinates)
}

fn benches(c: &mut Criterion) {
    koopman_core::parallel::pin_candle_threads();
    let config = FiniteSectionConfig::default();
    let mut group = c.benchmark_group("partitioned_fit");
    group.sample_size(20);
    for (name, groups, pairs) in [
        ("de_solver", vec![(2, 10), (11, 12)], 10_000),
        ("mnist_window", vec![(10, 1580), (21, 50)], 250),
    ] {
        let (snapshots, coordinates) = drift(&groups, pairs);
        let snaps: Vec<&[f64]> = snapshots.iter().map(Vec::as_slice).collect();
        let groups: Vec<&[usize]> = coordinates.iter().map(Vec::as_slice).collect();
        group.bench_with_input(BenchmarkId::new("finite_section", name), &pairs, |b, _| {
            b.iter(|| finite_section_partitioned(&snaps, &groups, &config).expect("fit"))
        });
    }
    group.finish();
}

criterion_group!(fit_benches, benches);
criterion_main!(fit_benches);
