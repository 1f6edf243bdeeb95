//! `copy`: vec4<f32> stream copy. Mirrors the memory traffic of tensor moves; reports GB/s counting
//! bytes read plus bytes written. Also home of the block grid every streaming kernel shares
//! ([`stream_groups`]).

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
        let groups = stream_groups(gpu, n / 4, ONE_BLOCK_EACH);
        Ok(Box::new(Launch {
            kernel: NAME,
            pipelines,
            steps: vec![(0, [groups, 1, 1])],
            sets,
        }))
    }
}

/// vec4s one workgroup covers per step of the streaming kernels (copy, reductions, xor_transform,
/// peak_bandwidth's blocked variants): 256 invocations × 4 vec4s, 16 KiB of f32s.
pub const BLOCK: u64 = 1024;

/// The block-grid cap of copy and xor_transform on a GPU: one block per workgroup up to the
/// dispatch limit. wgpu does not tell how many SMs (or how many resident workgroups) a device has,
/// so a grid sized to "k workgroups per SM" cannot be computed here; and a persistent grid just
/// above the resident capacity runs a second, nearly empty wave that costs almost a whole one.
/// Many short workgroups (PyTorch's elementwise launch shape) keep every SM fed on any device, the
/// last partial wave costing at most one block's time, and each invocation still keeps four 16-byte
/// loads in flight. Past 65535 blocks (n > 2^28 f32s) the grid-stride loop takes over.
pub const ONE_BLOCK_EACH: u32 = 65535;

/// Workgroups a CPU adapter (lavapipe) gets at most: the quick suite's 1 Mi f32s are exactly 256
/// blocks, one per workgroup. Fewer, longer workgroups amortise the reductions' barrier tree (a
/// coroutine switch per invocation and barrier on lavapipe) further, but on a busy host llvmpipe
/// then balances worse (64 cost copy ~11 % wall time at equal CPU time); 256 is 4× fewer trees
/// than the old one-vec4-per-invocation grid. It also makes the test size 4·(1024·256 + 77) wrap
/// the grid-stride loop there.
pub const SOFTWARE_GROUPS: u32 = 256;

/// Workgroups for `vec4s` vec4s in blocks of [`BLOCK`], at most `cap`: the blocks are spread so
/// that every workgroup walks the same number of them, give or take one (so a grid just over the
/// cap does not leave one workgroup a second round alone).
pub fn groups_for(vec4s: u64, cap: u32) -> u32 {
    let blocks = vec4s.div_ceil(BLOCK).max(1);
    let rounds = blocks.div_ceil(u64::from(cap.max(1)));
    // blocks / rounds ≤ cap, so it fits in u32.
    blocks.div_ceil(rounds) as u32
}

/// [`groups_for`] on `gpu`: `gpu_cap` on a GPU, [`SOFTWARE_GROUPS`] on a CPU adapter, never more
/// than the device's dispatch limit.
pub fn stream_groups(gpu: &Gpu, vec4s: u64, gpu_cap: u32) -> u32 {
    let cap = if gpu.is_software() {
        SOFTWARE_GROUPS.min(gpu_cap)
    } else {
        gpu_cap
    };
    groups_for(
        vec4s,
        cap.min(gpu.limits.max_compute_workgroups_per_dimension),
    )
}

/// CPU reference: the destination equals the source bit for bit.
pub mod reference {
    use super::Verification;

    pub fn compare(got: &[f32], want: &[f32]) -> Verification {
        super::super::compare_exact("dst", bytemuck::cast_slice(got), bytemuck::cast_slice(want))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_cover_every_block_evenly() {
        for cap in [1, 7, 64, 1024, 65535] {
            for vec4s in [
                1,
                1024,
                1025,
                64 * 1024,
                257 * 1024 + 77,
                65536 * 1024,
                1 << 30,
            ] {
                let groups = u64::from(groups_for(vec4s, cap));
                let blocks = vec4s.div_ceil(BLOCK);
                assert!((1..=u64::from(cap)).contains(&groups), "{vec4s} {cap}");
                // As few rounds as the cap allows, spread over as few workgroups as that needs.
                let rounds = blocks.div_ceil(groups);
                assert_eq!(rounds, blocks.div_ceil(u64::from(cap)), "{vec4s} {cap}");
                assert!(
                    groups == 1 || (groups - 1) * rounds < blocks,
                    "{vec4s} {cap}"
                );
            }
        }
        // The default suite's 1 GiB stream: 65536 blocks, two each, not one workgroup alone.
        assert_eq!(groups_for(1 << 26, ONE_BLOCK_EACH), 32768);
        assert_eq!(groups_for(4, ONE_BLOCK_EACH), 1);
    }
}
