//! `cargo bench --bench suite`: the quick suite through gpugate's own harness (warm-up, GPU
//! timestamps, cache-cold rotation, stop at the noise target, CPU verification) on the adapter
//! gpugate picks. With `CI` set it shrinks to tiny sizes and short caps, as a smoke run.
//! Kernels the adapter lacks a feature for are listed as unsupported, not timed.

use gpugate::device::{AdapterChoice, Gpu};
use gpugate::runner::{self, Plan, PlanItem};
use gpugate::sampler::SamplerConfig;
use gpugate::workload::instance_key;
use gpugate::workload::suite::{self, Scale, Suite};

fn main() {
    let gpu = Gpu::open(&AdapterChoice::default()).unwrap_or_else(|e| panic!("{e}"));
    let ci = std::env::var_os("CI").is_some();
    let scale = if ci { Scale::Tiny } else { Scale::of(&gpu) };
    let mut sampler = SamplerConfig::for_device(gpu.is_software());
    if ci {
        sampler.max_time_s = 0.3;
        sampler.warmup_max_s = 0.3;
    }
    let mut items = vec![];
    for (kernel, params) in suite::instances(Suite::Quick, scale) {
        if let Some(reason) = kernel.unsupported(&gpu) {
            println!(
                "{:<48} unsupported: {reason}",
                instance_key(kernel.name(), &params)
            );
            continue;
        }
        items.push(PlanItem {
            kernel: kernel.name().to_string(),
            params,
            batch: None,
            repeat: 1,
            timing: None,
            slots: None,
        });
    }
    let result =
        runner::run_in_process(&gpu, &Plan { items, sampler }).unwrap_or_else(|e| panic!("{e}"));
    println!("adapter {} ({:?} scale)", gpu.fingerprint.name, scale);
    for k in &result.kernels {
        println!(
            "{:<48} {:>12.3} µs {:>12.3} {:<8} ±{:.2}% (median CI) {}",
            k.key,
            k.summary.median_s * 1e6,
            k.rate(),
            k.unit.label(),
            100.0 * k.summary.rel_ci_half_width(),
            if k.verification.ok {
                "verified"
            } else {
                "WRONG RESULT"
            },
        );
    }
    let wrong: Vec<_> = result
        .kernels
        .iter()
        .filter(|k| !k.verification.ok)
        .map(|k| k.key.as_str())
        .collect();
    assert!(wrong.is_empty(), "wrong results: {wrong:?}");
}
