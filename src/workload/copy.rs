//! `copy`: vec4<f32> stream copy. Mirrors the memory traffic of tensor moves; reports GB/s counting
//! bytes read plus bytes written. Its grid is the block grid every streaming kernel shares
//! ([`super::stream_groups`]).

use rand::rngs::StdRng;

use super::launch::{f32s, random_f32, Launch, Set};
use super::{param, Kernel, Param, Params, Prepared, Unit, Verification, Work, U32};
use crate::device::Gpu;
use crate::error::Result;

pub struct Copy;

const NAME: &str = "copy";

impl Kernel for Copy {
    fn name(&self) -> &'static str {
        NAME
    }
    fn describe(&self) -> &'static str {
        "stream copy of f32 vec4s, 4 per invocation in 16 KiB blocks (tensor moves); GB/s of bytes read + written"
    }
    fn unit(&self) -> Unit {
        Unit::Bandwidth
    }
    fn shader(&self) -> &'static str {
        include_str!("../../shaders/copy.wgsl")
    }
    fn params(&self) -> &'static [Param] {
        const PARAMS: &[Param] = &[param("n", 4, U32)];
        PARAMS
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
    fn largest_binding(&self, params: &Params) -> Result<u64> {
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
        super::fits_device(gpu, self, params)?;
        let pipelines = super::pipelines(gpu, NAME, self.shader(), &["main"])?;
        let sets = (0..slots)
            .map(|_| {
                let src = random_f32(rng, n, 0.25, 1.25);
                let src_buf = super::input_buffer(gpu, "copy.src", bytemuck::cast_slice(&src));
                let dst_buf = super::poisoned_buffer(gpu, "copy.dst", 4 * n);
                let bind = super::bind_group(gpu, &pipelines, &[&src_buf, &dst_buf]);
                Set {
                    bind,
                    outputs: vec![dst_buf],
                    check: Box::new(move |got| reference::compare(&f32s(&got[0]), &src)),
                }
            })
            .collect();
        let groups = super::stream_groups(gpu, n / 4, super::ONE_BLOCK_EACH);
        Ok(Box::new(Launch {
            kernel: NAME,
            pipelines,
            steps: vec![(0, [groups, 1, 1])],
            sets,
        }))
    }
}

/// CPU reference: the destination equals the source bit for bit.
pub mod reference {
    use super::Verification;

    pub fn compare(got: &[f32], want: &[f32]) -> Verification {
        super::super::compare_exact("dst", bytemuck::cast_slice(got), bytemuck::cast_slice(want))
    }
}
