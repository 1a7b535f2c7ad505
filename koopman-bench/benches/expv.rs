//! Criterion benches: `expv` and single operator applications on paper-shaped Toeplitz generators,
//! and the dense exponential at the smallest size.
use candle_core::{DType, Device};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use koopman_bench::perf::paper_generator;
use koopman_core::{expm, expv, ComplexTensor, ExpvConfig, LinearOperator};

fn benches(c: &mut Criterion) {
    // the first thing the bench binary runs, before any thread starts
    koopman_core::parallel::pin_candle_threads();
    let dev = Device::Cpu;
    let config = ExpvConfig {
        tol: 1e-8,
        ..Default::default()
    };
    let mut group = c.benchmark_group("toeplitz");
    group.sample_size(10);
    for radius in [3i64, 5, 7] {
        let op = paper_generator(radius, 0.01, 0, DType::F64, &dev).expect("generator");
        let n = op.dim();
        let v = ComplexTensor::randn(n, 1.0 / (n as f64).sqrt(), 1, DType::F64, &dev).expect("v");
        group.bench_with_input(BenchmarkId::new("expv", n), &n, |b, _| {
            b.iter(|| expv(&op, 1.0, &v, &config).expect("expv"))
        });
        group.bench_with_input(BenchmarkId::new("matvec", n), &n, |b, _| {
            b.iter(|| op.apply(&v).expect("apply"))
        });
        if radius == 3 {
            let dense = op.to_dense().expect("dense");
            group.bench_with_input(BenchmarkId::new("dense_expm", n), &n, |b, _| {
                b.iter(|| expm(&dense).expect("expm"))
            });
        }
    }
    group.finish();
}

criterion_group!(expv_benches, benches);
criterion_main!(expv_benches);
