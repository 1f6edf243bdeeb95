//! `copy`: vec4<f32> stream copy. Mirrors the memory traffic of tensor moves; reports GB/s counting
//! bytes read plus bytes written.

use rand::rngs::StdRng;
use rand::Rng;

use super::{Kernel, Params, Prepared, Unit, Verification, Work};
use crate::device::Gpu;
use crate::error::Result;

pub struct Copy;

const NAME: &str = "copy";

impl Kernel for Copy {
    fn name(&self) -> &'static str {
        NAME
    }
    fn describe(&self) -> &'static str {
        "stream copy of f32 vec4s (tensor moves); GB/s of bytes read + written"
    }
    fn unit(&self) -> Unit {
        Unit::Bandwidth
    }
    fn shader(&self) -> &'static str {
        include_str!("../../shaders/copy.wgsl")
    }
    fn param_names(&self) -> &'static [&'static str] {
        &["n"]
    }
    fn work(&self, params: &Params) -> Result<Work> {
        Ok(Work {
            bytes: 2 * 4 * params.vec4_len(NAME)?,
            flops: 0,
            ..Work::default()
        })
    }
    fn footprint(&self, params: &Params) -> Result<u64> {
        Ok(2 * 4 * params.vec4_len(NAME)?)
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
        let pipelines = super::pipelines(gpu, NAME, self.shader(), &["main"])?;
        let mut sets = Vec::with_capacity(slots);
        for _ in 0..slots {
            let src: Vec<f32> = (0..n).map(|_| rng.random_range(0.25f32..1.25)).collect();
            let src_buf = super::input_buffer(gpu, "copy.src", bytemuck::cast_slice(&src));
            let dst_buf = super::poisoned_buffer(gpu, "copy.dst", 4 * n);
            let bind = super::bind_group(gpu, &pipelines, &[&src_buf, &dst_buf]);
            sets.push(Slot { src, dst_buf, bind });
        }
        let groups = super::grid_groups(gpu, n / 4, 256, 65535);
        Ok(Box::new(CopyRun {
            pipelines,
            sets,
            groups,
        }))
    }
}

struct Slot {
    src: Vec<f32>,
    dst_buf: wgpu::Buffer,
    bind: wgpu::BindGroup,
}

struct CopyRun {
    pipelines: super::Pipelines,
    sets: Vec<Slot>,
    groups: u32,
}

impl Prepared for CopyRun {
    fn encode(&self, pass: &mut wgpu::ComputePass<'_>, slot: usize) {
        pass.set_pipeline(&self.pipelines.entries[0]);
        pass.set_bind_group(0, &self.sets[slot].bind, &[]);
        pass.dispatch_workgroups(self.groups, 1, 1);
    }

    fn verify(&self, gpu: &Gpu) -> Result<Verification> {
        let mut parts = Vec::new();
        for set in &self.sets {
            let got: Vec<f32> = super::read_back(gpu, NAME, &set.dst_buf)?;
            parts.push(reference::compare(&got, &set.src));
        }
        Ok(Verification::all(parts))
    }
}

/// CPU reference: the destination equals the source bit for bit.
pub mod reference {
    use super::Verification;

    pub fn compare(got: &[f32], want: &[f32]) -> Verification {
        super::super::compare_exact("dst", bytemuck::cast_slice(got), bytemuck::cast_slice(want))
    }
}
