//! Benchmarks of the statistics and comparison code, which run after every sample chunk (stop
//! rule) and once per kernel per check. `CI=true` shortens measurement so `cargo bench` stays quick.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use gpugate::compare::{self, Design, Model, Policy, RunMedians};
use gpugate::stats;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn samples(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| 1e-3 * (1.0 + 0.02 * rng.random::<f64>()))
        .collect()
}

fn bench_stats(c: &mut Criterion) {
    let mut group = c.benchmark_group("stats");
    for n in [16usize, 128, 1024] {
        let s = samples(n, 1);
        group.bench_with_input(BenchmarkId::new("summarize", n), &s, |b, s| {
            b.iter(|| stats::summarize(s))
        });
        group.bench_with_input(BenchmarkId::new("stop_rule_ci", n), &s, |b, s| {
            b.iter(|| stats::rel_ci_half_width(s))
        });
    }
    group.finish();
}

fn bench_compare(c: &mut Criterion) {
    let base: Vec<_> = (0..10)
        .map(|i| stats::summarize(&samples(200, i)))
        .collect();
    let cur: Vec<_> = (0..3)
        .map(|i| stats::summarize(&samples(200, 99 + i)))
        .collect();
    let (base, cur) = (
        Model::fit(&RunMedians::from_summaries(&base), &[0; 10]),
        RunMedians::from_summaries(&cur),
    );
    c.bench_function("compare/10_vs_3_runs", |b| {
        b.iter(|| compare::compare(&base, &cur, Policy::default()))
    });
    // Quoted per kernel in every check's table: it must stay cheap.
    let design = Design {
        check_runs: 3,
        confirm_runs: 5,
        family: 20,
    };
    c.bench_function("detectable_slowdown/default_design", |b| {
        b.iter(|| compare::detectable_slowdown(&base, design, Policy::default(), 0.95))
    });
}

fn config() -> Criterion {
    let quick = std::env::var_os("CI").is_some();
    let c = Criterion::default();
    if quick {
        c.warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(500))
            .sample_size(10)
    } else {
        c
    }
}

criterion_group! { name = benches; config = config(); targets = bench_stats, bench_compare }
criterion_main!(benches);
