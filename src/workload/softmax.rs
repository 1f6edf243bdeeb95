//! `softmax`: row-wise, numerically stable softmax over f32 rows × cols (attention scores,
//! logits). GB/s of one read and one write per element.

use rand::rngs::StdRng;

use super::launch::{f32s, random_f32, rows_to_check, Launch, Set};
use super::{param, Kernel, Param, Params, Prepared, Unit, Work, U32};
use crate::device::Gpu;
use crate::error::Result;

pub struct Softmax;

const NAME: &str = "softmax";
/// Rows the CPU recomputes at most (chosen at random beyond that, first and last always).
const CHECKED_ROWS: u64 = 256;
/// The longest row the shader holds in registers (`CAP` in shaders/softmax.wgsl); longer rows
/// take `main_long`, which reads them twice.
pub(crate) const REGISTER_COLS: u64 = 8192;

/// The entry point for rows of `cols` columns: registers with vec4 loads when every row starts
/// 16-byte aligned, registers with scalar loads otherwise, the re-reading sweep past the cap.
/// Shared with layernorm, whose shader has the same three entry points.
pub(crate) fn entry_for(cols: u64) -> usize {
    if cols > REGISTER_COLS {
        2
    } else if cols.is_multiple_of(4) {
        0
    } else {
        1
    }
}

/// The shaders bind every f32 array as `array<vec4<f32>>`: buffers of `len` floats are padded
/// to whole vec4s (the padding is never read into a result nor written).
pub(crate) fn padded(len: u64) -> u64 {
    len.next_multiple_of(4)
}

pub(crate) const ENTRY_POINTS: [&str; 3] = ["main", "main_scalar", "main_long"];

impl Kernel for Softmax {
    fn name(&self) -> &'static str {
        NAME
    }
    fn describe(&self) -> &'static str {
        "row-wise stable softmax, f32 rows × cols (attention scores, logits), one workgroup per row \
         held in registers up to 8192 columns; GB/s of read + write"
    }
    fn unit(&self) -> Unit {
        Unit::Bandwidth
    }
    fn shader(&self) -> &'static str {
        include_str!("../../shaders/softmax.wgsl")
    }
    fn params(&self) -> &'static [Param] {
        const PARAMS: &[Param] = &[param("rows", 1, U32), param("cols", 1, U32)];
        PARAMS
    }
    fn work(&self, params: &Params) -> Result<Work> {
        let (rows, cols) = super::rows_cols(NAME, params)?;
        Ok(Work {
            bytes: 2 * 4 * rows * cols,
            // max, subtract, exp, add, multiply per element, counted once each.
            flops: 5 * rows * cols,
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
        let uniform = super::uniform_buffer(gpu, "softmax.dims", &[rows as u32, cols as u32, 0, 0]);
        let sets = (0..slots)
            .map(|_| {
                let mut x = random_f32(rng, rows * cols, -8.0, 8.0);
                x.resize(padded(rows * cols) as usize, 0.0);
                let x_buf = super::input_buffer(gpu, "softmax.x", bytemuck::cast_slice(&x));
                let y_buf = super::poisoned_buffer(gpu, "softmax.y", 4 * padded(rows * cols));
                let bind = super::bind_group(gpu, &pipelines, &[&uniform, &x_buf, &y_buf]);
                // Keep only the rows the CPU will check.
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
                            reference::softmax(xr)
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

/// CPU reference in f64. The tolerance covers WGSL's `exp` (3 + 2·|x| ulp on Vulkan), the
/// rescalings of the running sum and the sequential part of the sum.
pub mod reference {
    pub fn softmax(x: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let eps = f64::from(f32::EPSILON);
        let max = x.iter().map(|&v| f64::from(v)).fold(f64::MIN, f64::max);
        let sum: f64 = x.iter().map(|&v| (f64::from(v) - max).exp()).sum();
        let sequential = x.len().div_ceil(256) as f64;
        x.iter()
            .map(|&v| {
                let d = max - f64::from(v);
                let y = (-d).exp() / sum;
                let rel = eps * (4.0 * (3.0 + 2.0 * d) + 2.0 * sequential + 64.0);
                (y, rel * y + f64::from(f32::MIN_POSITIVE))
            })
            .unzip()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_register_cap_is_the_shaders_cap() {
        let line = format!("const CAP: u32 = {REGISTER_COLS}u;");
        assert!(Softmax.shader().contains(&line));
        assert!(include_str!("../../shaders/layernorm.wgsl").contains(&line));
    }

    #[test]
    fn rows_take_the_entry_point_their_length_needs() {
        let cases = [
            (1, 1),
            (4, 0),
            (7, 1),
            (8191, 1),
            (8192, 0),
            (8193, 2),
            (8196, 2),
        ];
        for (cols, entry) in cases {
            assert_eq!(entry_for(cols), entry, "cols {cols}");
        }
        assert_eq!(padded(1), 4);
        assert_eq!(padded(8), 8);
    }
}
