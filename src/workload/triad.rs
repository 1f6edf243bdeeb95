//! `triad`: a = b + s·c (STREAM triad; optimizer and residual updates). GB/s of 2 reads + 1 write.

use rand::rngs::StdRng;

use super::launch::{f32s, random_f32, Launch, Set};
use super::{param, Kernel, Param, Params, Prepared, Unit, Work, U32};
use crate::device::Gpu;
use crate::error::Result;

pub struct Triad;

const NAME: &str = "triad";
const SCALE: f32 = 1.5;

impl Kernel for Triad {
    fn name(&self) -> &'static str {
        NAME
    }
    fn describe(&self) -> &'static str {
        "STREAM triad a = b + s·c (optimizer/residual updates); GB/s of 2 reads + 1 write"
    }
    fn unit(&self) -> Unit {
        Unit::Bandwidth
    }
    fn shader(&self) -> &'static str {
        include_str!("../../shaders/triad.wgsl")
    }
    fn params(&self) -> &'static [Param] {
        const PARAMS: &[Param] = &[param("n", 4, U32)];
        PARAMS
    }
    fn work(&self, params: &Params) -> Result<Work> {
        let n = params.vec4_len(NAME)?;
        Ok(Work {
            bytes: 3 * 4 * n,
            flops: 2 * n,
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
        let pipelines = super::pipelines(gpu, NAME, self.shader(), &["main"])?;
        let uniform = super::uniform_buffer(gpu, "triad.params", &[SCALE.to_bits(), 0, 0, 0]);
        let sets = (0..slots)
            .map(|_| {
                let b = random_f32(rng, n, -1.0, 1.0);
                let c = random_f32(rng, n, -1.0, 1.0);
                let b_buf = super::input_buffer(gpu, "triad.b", bytemuck::cast_slice(&b));
                let c_buf = super::input_buffer(gpu, "triad.c", bytemuck::cast_slice(&c));
                let a_buf = super::poisoned_buffer(gpu, "triad.a", 4 * n);
                let bind = super::bind_group(gpu, &pipelines, &[&uniform, &b_buf, &c_buf, &a_buf]);
                Set {
                    bind,
                    outputs: vec![a_buf],
                    check: Box::new(move |out| {
                        let (want, tol) = reference::triad(&b, &c, SCALE);
                        super::compare_f32("a", &f32s(&out[0]), &want, &tol)
                    }),
                }
            })
            .collect();
        let groups = super::grid_groups(gpu, n / 4, 256, 65535);
        Ok(Box::new(Launch {
            kernel: NAME,
            pipelines,
            steps: vec![(0, [groups, 1, 1])],
            sets,
        }))
    }
}

/// CPU reference in f64; the GPU may fuse the multiply-add, so allow one rounding of each term.
pub mod reference {
    pub fn triad(b: &[f32], c: &[f32], s: f32) -> (Vec<f64>, Vec<f64>) {
        let eps = f64::from(f32::EPSILON);
        b.iter()
            .zip(c)
            .map(|(&b, &c)| {
                let (b, sc) = (f64::from(b), f64::from(s) * f64::from(c));
                (b + sc, 2.0 * eps * (b.abs() + sc.abs()))
            })
            .unzip()
    }
}
