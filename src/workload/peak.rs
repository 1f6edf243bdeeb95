//! `peak_bandwidth` and `peak_fma`: the device's own ceilings, measured like any kernel, so every
//! other result can be shown as a percentage of what this device reaches (see `report::Peaks`).
//! A drop in either is itself a node regression worth gating.

use rand::rngs::StdRng;

use super::launch::{f32s, random_f32, Launch, Set};
use super::{Kernel, Params, Prepared, Unit, Work};
use crate::device::Gpu;
use crate::error::Result;

pub struct PeakBandwidth;
pub struct PeakFma;

/// FMA chain coefficients: a = 1 − 2⁻¹⁰ and b = 2⁻¹¹, so chains contract toward 0.5.
const A: f32 = 1.0 - 1.0 / 1024.0;
const B: f32 = 1.0 / 2048.0;
const CHAINS: u64 = 8;
/// Workgroups of peak_bandwidth: about a full H100 of resident invocations (132 SMs × 2048),
/// each keeping four loads in flight over its grid-stride slice.
const MAX_READ_GROUPS: u32 = 1024;
/// Invocations whose FMA chains the CPU replays at most.
const CHECKED_THREADS: u64 = 1024;

impl Kernel for PeakBandwidth {
    fn name(&self) -> &'static str {
        "peak_bandwidth"
    }
    fn describe(&self) -> &'static str {
        "device ceiling: stream read of f32 vec4s, max-folded; GB/s of bytes read"
    }
    fn unit(&self) -> Unit {
        Unit::Bandwidth
    }
    fn shader(&self) -> &'static str {
        include_str!("../../shaders/peak_bandwidth.wgsl")
    }
    fn param_names(&self) -> &'static [&'static str] {
        &["n"]
    }
    fn work(&self, params: &Params) -> Result<Work> {
        let n = params.vec4_len(self.name())?;
        Ok(Work {
            bytes: 4 * n,
            flops: n,
            ..Work::default()
        })
    }
    fn footprint(&self, params: &Params) -> Result<u64> {
        Ok(4 * params.vec4_len(self.name())?)
    }

    fn prepare(
        &self,
        gpu: &Gpu,
        params: &Params,
        slots: usize,
        rng: &mut StdRng,
    ) -> Result<Box<dyn Prepared>> {
        let name = self.name();
        let n = params.vec4_len(name)?;
        super::check_binding(gpu, name, params, 4 * n)?;
        let pipelines = super::pipelines(gpu, name, self.shader(), &["main"])?;
        // A CPU adapter pays per invocation, so it gets few long-running ones.
        let cap = if gpu.is_software() {
            16
        } else {
            MAX_READ_GROUPS
        };
        let groups = super::grid_groups(gpu, n / 4, 256, cap);
        let threads = u64::from(groups) * 256;
        let sets = (0..slots)
            .map(|_| {
                let src = random_f32(rng, n, -1e3, 1e3);
                let src_buf =
                    super::input_buffer(gpu, "peak_bandwidth.src", bytemuck::cast_slice(&src));
                let out_buf = super::poisoned_buffer(gpu, "peak_bandwidth.out", 4 * threads);
                let bind = super::bind_group(gpu, &pipelines, &[&src_buf, &out_buf]);
                Set {
                    bind,
                    outputs: vec![out_buf],
                    check: Box::new(move |out| {
                        let want = reference::strided_max(&src, threads as usize);
                        let got = f32s(&out[0]);
                        super::compare_exact(
                            "out",
                            bytemuck::cast_slice(&got),
                            bytemuck::cast_slice(&want),
                        )
                    }),
                }
            })
            .collect();
        Ok(Box::new(Launch {
            kernel: name,
            pipelines,
            steps: vec![(0, [groups, 1, 1])],
            sets,
        }))
    }
}

impl Kernel for PeakFma {
    fn name(&self) -> &'static str {
        "peak_fma"
    }
    fn describe(&self) -> &'static str {
        "device ceiling: independent f32 FMA chains in registers; GFLOP/s (2 per FMA)"
    }
    fn unit(&self) -> Unit {
        Unit::Flops
    }
    fn shader(&self) -> &'static str {
        include_str!("../../shaders/peak_fma.wgsl")
    }
    fn param_names(&self) -> &'static [&'static str] {
        &["groups", "iters"]
    }
    fn work(&self, params: &Params) -> Result<Work> {
        let threads = 256 * params.get(self.name(), "groups")?;
        let iters = params.get(self.name(), "iters")?;
        Ok(Work {
            bytes: 8 * threads,
            flops: threads * iters * CHAINS * 4 * 2,
            ..Work::default()
        })
    }
    fn footprint(&self, params: &Params) -> Result<u64> {
        self.work(params).map(|w| w.bytes)
    }

    fn prepare(
        &self,
        gpu: &Gpu,
        params: &Params,
        slots: usize,
        rng: &mut StdRng,
    ) -> Result<Box<dyn Prepared>> {
        let name = self.name();
        let groups = params.get(name, "groups")?;
        let iters = params.get(name, "iters")?;
        super::check_groups(
            gpu,
            name,
            params,
            [groups.min(u64::from(u32::MAX)) as u32, 1, 1],
        )?;
        let threads = 256 * groups;
        let pipelines = super::pipelines(gpu, name, self.shader(), &["main"])?;
        let uniform = super::uniform_buffer(
            gpu,
            "peak_fma.params",
            &[iters as u32, A.to_bits(), B.to_bits(), 0],
        );
        let sets = (0..slots)
            .map(|_| {
                let seeds = random_f32(rng, threads, 0.0, 1.0);
                let checked: Vec<(usize, f32)> =
                    super::launch::rows_to_check(threads, CHECKED_THREADS, rng)
                        .into_iter()
                        .map(|t| (t as usize, seeds[t as usize]))
                        .collect();
                let seeds_buf =
                    super::input_buffer(gpu, "peak_fma.seeds", bytemuck::cast_slice(&seeds));
                let out_buf = super::poisoned_buffer(gpu, "peak_fma.out", 4 * threads);
                let bind = super::bind_group(gpu, &pipelines, &[&uniform, &seeds_buf, &out_buf]);
                Set {
                    bind,
                    outputs: vec![out_buf],
                    check: Box::new(move |out| {
                        let all = f32s(&out[0]);
                        let got: Vec<f32> = checked.iter().map(|&(t, _)| all[t]).collect();
                        let (want, tol): (Vec<f64>, Vec<f64>) = checked
                            .iter()
                            .map(|&(_, s)| reference::chains(s, iters, A, B))
                            .unzip();
                        super::compare_f32("out", &got, &want, &tol)
                    }),
                }
            })
            .collect();
        Ok(Box::new(Launch {
            kernel: name,
            pipelines,
            steps: vec![(0, [groups as u32, 1, 1])],
            sets,
        }))
    }
}

/// CPU references. The strided max is exact. The FMA chains are replayed in f64: an f32 chain
/// that contracts by `a` carries at most ε/(1 − a) of error per value, whether or not the
/// device fuses the multiply-add.
pub mod reference {
    /// What each of `threads` invocations computes: the max over elements i ≡ t (mod threads).
    pub fn strided_max(src: &[f32], threads: usize) -> Vec<f32> {
        let vec4s = src.len() / 4;
        (0..threads)
            .map(|t| {
                (t..vec4s)
                    .step_by(threads)
                    .flat_map(|i| &src[4 * i..4 * i + 4])
                    .copied()
                    .fold(-3.0e38f32, f32::max)
            })
            .collect()
    }

    pub fn chains(seed: f32, iters: u64, a: f32, b: f32) -> (f64, f64) {
        let s = f64::from(seed);
        let mut total = 0.0;
        for c in 0..super::CHAINS {
            let offset = f64::from(c as f32 * 0.01);
            for x0 in [s, 1.0 - s, 0.5 * s, 1.0 - 0.5 * s] {
                let mut x = x0 + offset;
                for _ in 0..iters {
                    x = x * f64::from(a) + f64::from(b);
                }
                total += x;
            }
        }
        let per_value = 4.0 * f64::from(f32::EPSILON) / (1.0 - f64::from(a));
        (total, 32.0 * per_value + 32.0 * f64::from(f32::EPSILON))
    }
}
