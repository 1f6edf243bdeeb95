//! `gelu`: the tanh form of GELU, elementwise (transformer MLP activations). GB/s of read + write.

use rand::rngs::StdRng;

use super::launch::{f32s, random_f32, Launch, Set};
use super::{param, Kernel, Param, Params, Prepared, Unit, Work, U32};
use crate::device::Gpu;
use crate::error::Result;

pub struct Gelu;

const NAME: &str = "gelu";

impl Kernel for Gelu {
    fn name(&self) -> &'static str {
        NAME
    }
    fn describe(&self) -> &'static str {
        "GELU (tanh form), elementwise (transformer MLP activations); GB/s of read + write"
    }
    fn unit(&self) -> Unit {
        Unit::Bandwidth
    }
    fn shader(&self) -> &'static str {
        include_str!("../../shaders/gelu.wgsl")
    }
    fn params(&self) -> &'static [Param] {
        const PARAMS: &[Param] = &[param("n", 4, U32)];
        PARAMS
    }
    fn work(&self, params: &Params) -> Result<Work> {
        let n = params.vec4_len(NAME)?;
        Ok(Work {
            bytes: 2 * 4 * n,
            // 8 arithmetic operations plus tanh, counted as one.
            flops: 9 * n,
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
                // Activations span the region where GELU bends and both tails.
                let x = random_f32(rng, n, -6.0, 6.0);
                let x_buf = super::input_buffer(gpu, "gelu.x", bytemuck::cast_slice(&x));
                let y_buf = super::poisoned_buffer(gpu, "gelu.y", 4 * n);
                let bind = super::bind_group(gpu, &pipelines, &[&x_buf, &y_buf]);
                Set {
                    bind,
                    outputs: vec![y_buf],
                    check: Box::new(move |out| {
                        let (want, tol) = reference::gelu(&x);
                        super::compare_f32("y", &f32s(&out[0]), &want, &tol)
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

/// CPU reference in f64. WGSL's `tanh` is only as accurate as its sinh/cosh form on Vulkan
/// (a few ulp, worse near 0 in relative terms), so the tolerance is 1e-5 relative plus 1e-6.
pub mod reference {
    pub fn gelu(x: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let k = (2.0 / std::f64::consts::PI).sqrt();
        x.iter()
            .map(|&x| {
                let x = f64::from(x);
                let y = 0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh());
                (y, 1e-5 * y.abs() + 1e-6)
            })
            .unzip()
    }
}
