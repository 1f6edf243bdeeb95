//! `layernorm`: row-wise layer normalisation with gain and bias over f32 rows × cols
//! (transformer blocks). GB/s of one read and one write per element plus gain and bias.

use rand::rngs::StdRng;

use super::launch::{f32s, random_f32, rows_to_check, Launch, Set};
use super::softmax::{entry_for, padded, ENTRY_POINTS};
use super::{param, Kernel, Param, Params, Prepared, Unit, Work, U32};
use crate::device::Gpu;
use crate::error::Result;

pub struct Layernorm;

const NAME: &str = "layernorm";
const CHECKED_ROWS: u64 = 256;
pub const EPS: f64 = 1e-5;

impl Kernel for Layernorm {
    fn name(&self) -> &'static str {
        NAME
    }
    fn describe(&self) -> &'static str {
        "row-wise layer norm with gain and bias, f32 rows × cols (transformer blocks), one workgroup \
         per row held in registers up to 8192 columns; GB/s"
    }
    fn unit(&self) -> Unit {
        Unit::Bandwidth
    }
    fn shader(&self) -> &'static str {
        include_str!("../../shaders/layernorm.wgsl")
    }
    fn params(&self) -> &'static [Param] {
        const PARAMS: &[Param] = &[param("rows", 1, U32), param("cols", 1, U32)];
        PARAMS
    }
    fn work(&self, params: &Params) -> Result<Work> {
        let (rows, cols) = super::rows_cols(NAME, params)?;
        Ok(Work {
            bytes: 2 * 4 * rows * cols + 2 * 4 * cols,
            // sum, centre, square-add, then normalise, scale, shift: 8 per element.
            flops: 8 * rows * cols,
            ..Work::default()
        })
    }
    fn footprint(&self, params: &Params) -> Result<u64> {
        self.work(params).map(|w| w.bytes)
    }
    fn largest_binding(&self, params: &Params) -> Result<u64> {
        // rows·cols fits in 32 bits (`rows_cols`), so this cannot overflow.
        let (rows, cols) = super::rows_cols(NAME, params)?;
        Ok(4 * padded(rows * cols))
    }

    fn prepare(
        &self,
        gpu: &Gpu,
        params: &Params,
        slots: usize,
        rng: &mut StdRng,
    ) -> Result<Box<dyn Prepared>> {
        let (rows, cols) = super::rows_cols(NAME, params)?;
        super::fits_device(gpu, self, params)?;
        let pipelines = super::pipelines(gpu, NAME, self.shader(), &ENTRY_POINTS)?;
        let uniform =
            super::uniform_buffer(gpu, "layernorm.dims", &[rows as u32, cols as u32, 0, 0]);
        let sets = (0..slots)
            .map(|_| {
                // Padded to whole vec4s (see `softmax::padded`); the CPU sees the unpadded rows.
                let mut x = random_f32(rng, rows * cols, -2.0, 2.0);
                x.resize(padded(rows * cols) as usize, 0.0);
                let mut gain = random_f32(rng, cols, 0.5, 1.5);
                let mut bias = random_f32(rng, cols, -0.5, 0.5);
                gain.resize(padded(cols) as usize, 0.0);
                bias.resize(padded(cols) as usize, 0.0);
                let x_buf = super::input_buffer(gpu, "layernorm.x", bytemuck::cast_slice(&x));
                let g_buf = super::input_buffer(gpu, "layernorm.gain", bytemuck::cast_slice(&gain));
                let b_buf = super::input_buffer(gpu, "layernorm.bias", bytemuck::cast_slice(&bias));
                gain.truncate(cols as usize);
                bias.truncate(cols as usize);
                let y_buf = super::poisoned_buffer(gpu, "layernorm.y", 4 * padded(rows * cols));
                let bind =
                    super::bind_group(gpu, &pipelines, &[&uniform, &x_buf, &g_buf, &b_buf, &y_buf]);
                let checked: Vec<(u64, Vec<f32>)> = rows_to_check(rows, CHECKED_ROWS, rng)
                    .into_iter()
                    .map(|r| (r, super::row(&x, r, cols).to_vec()))
                    .collect();
                Set {
                    bind,
                    outputs: vec![y_buf],
                    check: Box::new(move |out| {
                        let y = f32s(&out[0]);
                        super::launch::compare_rows("y", &y, cols, &checked, |xr| {
                            reference::layernorm(xr, &gain, &bias)
                        })
                    }),
                }
            })
            .collect();
        let groups = super::grid_groups(gpu, rows, 1, 65535);
        Ok(Box::new(Launch {
            kernel: NAME,
            pipelines,
            steps: vec![(entry_for(cols), [groups, 1, 1])],
            sets,
        }))
    }
}

/// CPU reference in f64. The tolerance covers the f32 sums of the mean and variance (sequential
/// per invocation, then a tree), `inverseSqrt` (2 ulp) and the final scale and shift.
pub mod reference {
    pub fn layernorm(x: &[f32], gain: &[f32], bias: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let eps = f64::from(f32::EPSILON);
        let n = x.len() as f64;
        let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = x
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        let rstd = 1.0 / (var + super::EPS).sqrt();
        let depth = x.len().div_ceil(256) as f64 + 8.0;
        x.iter()
            .zip(gain.iter().zip(bias))
            .map(|(&v, (&g, &b))| {
                let z = (f64::from(v) - mean) * rstd;
                let (g, b) = (f64::from(g), f64::from(b));
                let y = z * g + b;
                // The variance's error scales z; the mean's shifts it by up to depth·ε·max|x|·rstd.
                let tol = eps * ((16.0 + depth) * (z.abs() * g + b.abs()) + 8.0 * depth * rstd * g);
                (y, tol)
            })
            .unzip()
    }
}
