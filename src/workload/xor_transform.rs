//! `xor_transform`: the catalytic-memory check. The kernel borrows an auxiliary buffer full of
//! someone else's data, transforms it with a key, computes a result from it, and must restore it
//! bit-exactly. Reports GB/s of all bytes moved by the three steps (each reads two words and
//! writes one per element, as PyTorch's in-place xor is counted).

use rand::rngs::StdRng;
use rand::Rng;

use super::launch::{u32s, Launch, Set};
use super::{param, Kernel, Param, Params, Prepared, Unit, Verification, Work, U32};
use crate::device::Gpu;
use crate::error::Result;

pub struct XorTransform;

const NAME: &str = "xor_transform";

impl Kernel for XorTransform {
    fn name(&self) -> &'static str {
        NAME
    }
    fn describe(&self) -> &'static str {
        "catalytic transform: borrow aux memory, use it, restore it bit-exactly (4 vec4s per \
         invocation in 16 KiB blocks); GB/s"
    }
    fn unit(&self) -> Unit {
        Unit::Bandwidth
    }
    fn shader(&self) -> &'static str {
        include_str!("../../shaders/xor_transform.wgsl")
    }
    fn params(&self) -> &'static [Param] {
        const PARAMS: &[Param] = &[param("n", 4, U32)];
        PARAMS
    }
    fn work(&self, params: &Params) -> Result<Work> {
        // transform, consume, transform again: 3 steps × (2 reads + 1 write) × 4 bytes.
        Ok(Work {
            bytes: 3 * 3 * 4 * params.vec4_len(NAME)?,
            flops: 0,
            ..Work::default()
        })
    }
    fn footprint(&self, params: &Params) -> Result<u64> {
        Ok(3 * 4 * params.vec4_len(NAME)?)
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
        let pipelines = super::pipelines(gpu, NAME, self.shader(), &["transform", "consume"])?;
        let groups = super::stream_groups(gpu, n / 4, super::ONE_BLOCK_EACH);
        let sets = (0..slots)
            .map(|_| {
                // A zero key would make the transform trivially visible; draw a non-zero one.
                let key = rng.random_range(1..=u32::MAX);
                let x: Vec<u32> = (0..n).map(|_| rng.random()).collect();
                let aux: Vec<u32> = (0..n).map(|_| rng.random()).collect();
                let uniform = super::uniform_buffer(gpu, "xor_transform.params", &[key, 0, 0, 0]);
                let x_buf = super::input_buffer(gpu, "xor_transform.x", bytemuck::cast_slice(&x));
                let aux_buf =
                    super::input_buffer(gpu, "xor_transform.aux", bytemuck::cast_slice(&aux));
                let out_buf = super::poisoned_buffer(gpu, "xor_transform.out", 4 * n);
                let bind =
                    super::bind_group(gpu, &pipelines, &[&uniform, &x_buf, &aux_buf, &out_buf]);
                Set {
                    bind,
                    outputs: vec![out_buf, aux_buf],
                    check: Box::new(move |got| {
                        Verification::all(vec![
                            reference::check_out(&u32s(&got[0]), &x, &aux, key),
                            reference::check_restored(&u32s(&got[1]), &aux),
                        ])
                    }),
                }
            })
            .collect();
        Ok(Box::new(Launch {
            kernel: NAME,
            pipelines,
            // Borrow (transform), use (consume), give back (transform again: XOR undoes itself).
            steps: vec![
                (0, [groups, 1, 1]),
                (1, [groups, 1, 1]),
                (0, [groups, 1, 1]),
            ],
            sets,
        }))
    }
}

/// CPU reference for the catalytic transform.
pub mod reference {
    use super::Verification;

    pub fn mix(v: u32, key: u32) -> u32 {
        (v ^ key).wrapping_mul(0x9E37_79B1)
    }

    /// `out = (aux ^ mix(x)) + x`, computed from the original aux.
    pub fn expected_out<'a>(
        x: &'a [u32],
        aux: &'a [u32],
        key: u32,
    ) -> impl Iterator<Item = u32> + 'a {
        x.iter()
            .zip(aux)
            .map(move |(&x, &a)| (a ^ mix(x, key)).wrapping_add(x))
    }

    pub fn check_out(got: &[u32], x: &[u32], aux: &[u32], key: u32) -> Verification {
        let want: Vec<u32> = expected_out(x, aux, key).collect();
        super::super::compare_exact("out", got, &want)
    }

    /// The borrowed memory must come back exactly as it was lent.
    pub fn check_restored(got: &[u32], original: &[u32]) -> Verification {
        super::super::compare_exact("aux restored", got, original)
    }
}
