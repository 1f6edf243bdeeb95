//! `reduce_sum`: two-stage f32 sum (loss and norm reductions). Reports GB/s of bytes read.

use rand::rngs::StdRng;
use rand::Rng;

use super::{Kernel, Params, Prepared, Unit, Verification, Work};
use crate::device::Gpu;
use crate::error::Result;

pub struct ReduceSum;

const NAME: &str = "reduce_sum";
/// Workgroups of the first stage: enough to keep a large GPU's memory system busy.
const MAX_PARTIALS: u32 = 1024;

impl Kernel for ReduceSum {
    fn name(&self) -> &'static str {
        NAME
    }
    fn describe(&self) -> &'static str {
        "f32 sum in two stages (loss/norm reductions); GB/s of bytes read"
    }
    fn unit(&self) -> Unit {
        Unit::Bandwidth
    }
    fn shader(&self) -> &'static str {
        include_str!("../../shaders/reduce_sum.wgsl")
    }
    fn param_names(&self) -> &'static [&'static str] {
        &["n"]
    }
    fn work(&self, params: &Params) -> Result<Work> {
        let n = params.vec4_len(NAME)?;
        Ok(Work {
            bytes: 4 * n,
            flops: n,
        })
    }
    fn footprint(&self, params: &Params) -> Result<u64> {
        Ok(4 * params.vec4_len(NAME)?)
    }

    fn prepare(
        &self,
        gpu: &Gpu,
        params: &Params,
        slots: usize,
        rng: &mut StdRng,
    ) -> Result<Box<dyn Prepared>> {
        let n = params.vec4_len(NAME)?;
        super::check_binding(gpu, NAME, params, 4 * n)?;
        let pipelines = super::pipelines(gpu, NAME, self.shader(), &["partial", "finish"])?;
        let groups = super::grid_groups(gpu, n / 4, 256, MAX_PARTIALS);
        let mut sets = Vec::with_capacity(slots);
        for _ in 0..slots {
            let input: Vec<f32> = (0..n).map(|_| rng.random_range(0.25f32..1.25)).collect();
            let input_buf =
                super::input_buffer(gpu, "reduce_sum.input", bytemuck::cast_slice(&input));
            let partials =
                super::poisoned_buffer(gpu, "reduce_sum.partials", 4 * u64::from(groups));
            let total = super::poisoned_buffer(gpu, "reduce_sum.total", 4);
            let bind = super::bind_group(gpu, &pipelines, &[&input_buf, &partials, &total]);
            let (want, tolerance) = reference::sum(&input, u64::from(groups) * 256);
            sets.push(Slot {
                want,
                tolerance,
                total,
                bind,
            });
        }
        Ok(Box::new(ReduceRun {
            pipelines,
            sets,
            groups,
        }))
    }
}

struct Slot {
    want: f64,
    tolerance: f64,
    total: wgpu::Buffer,
    bind: wgpu::BindGroup,
}

struct ReduceRun {
    /// Entry points `partial`, then `finish`.
    pipelines: super::Pipelines,
    sets: Vec<Slot>,
    groups: u32,
}

impl Prepared for ReduceRun {
    fn encode(&self, pass: &mut wgpu::ComputePass<'_>, slot: usize) {
        let [partial, finish] = &self.pipelines.entries[..] else {
            unreachable!("two entry points")
        };
        pass.set_bind_group(0, &self.sets[slot].bind, &[]);
        pass.set_pipeline(partial);
        pass.dispatch_workgroups(self.groups, 1, 1);
        pass.set_pipeline(finish);
        pass.dispatch_workgroups(1, 1, 1);
    }

    fn verify(&self, gpu: &Gpu) -> Result<Verification> {
        let mut parts = Vec::new();
        for set in &self.sets {
            let got: Vec<f32> = super::read_back(gpu, NAME, &set.total)?;
            parts.push(super::compare_f32(
                "total",
                &got,
                &[set.want],
                &[set.tolerance],
            ));
        }
        Ok(Verification::all(parts))
    }
}

/// CPU reference: the sum in f64, and a tolerance from the f32 error bound of the GPU's order:
/// each invocation adds `n / threads` vec4s in sequence, then two 256-wide trees and a final fold.
pub mod reference {
    pub fn sum(input: &[f32], threads: u64) -> (f64, f64) {
        let exact: f64 = input.iter().map(|&x| f64::from(x)).sum();
        let abs_sum: f64 = input.iter().map(|&x| f64::from(x).abs()).sum();
        let sequential = (input.len() as u64 / 4).div_ceil(threads.max(1)) as f64;
        let depth = sequential + 2.0 + 8.0 + 8.0 + 4.0;
        (exact, depth * f64::from(f32::EPSILON) * abs_sum)
    }
}
