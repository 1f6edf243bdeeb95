//! `transpose`: 2-D f32 transpose tiled through workgroup memory (layout changes between
//! attention heads and GEMMs). GB/s of read + write; the result must be bit-exact.

use rand::rngs::StdRng;

use super::launch::{random_f32, u32s, Launch, Set};
use super::{param, Kernel, Param, Params, Prepared, Unit, Work, U32};
use crate::device::Gpu;
use crate::error::Result;

pub struct Transpose;

const NAME: &str = "transpose";
const TILE: u64 = 32;

impl Kernel for Transpose {
    fn name(&self) -> &'static str {
        NAME
    }
    fn describe(&self) -> &'static str {
        "2-D f32 transpose through 32×32 workgroup tiles (head/GEMM layout changes); GB/s"
    }
    fn unit(&self) -> Unit {
        Unit::Bandwidth
    }
    fn shader(&self) -> &'static str {
        include_str!("../../shaders/transpose.wgsl")
    }
    fn params(&self) -> &'static [Param] {
        const PARAMS: &[Param] = &[param("rows", 1, U32), param("cols", 1, U32)];
        PARAMS
    }
    fn work(&self, params: &Params) -> Result<Work> {
        let (rows, cols) = super::rows_cols(NAME, params)?;
        Ok(Work {
            bytes: 2 * 4 * rows * cols,
            ..Work::default()
        })
    }
    fn footprint(&self, params: &Params) -> Result<u64> {
        self.work(params).map(|w| w.bytes)
    }
    fn largest_binding(&self, params: &Params) -> Result<u64> {
        // rows·cols fits in 32 bits (`rows_cols`), so this cannot overflow.
        let (rows, cols) = super::rows_cols(NAME, params)?;
        Ok(4 * rows * cols)
    }
    fn workgroups(&self, params: &Params) -> Result<[u64; 3]> {
        let (rows, cols) = super::rows_cols(NAME, params)?;
        Ok([cols.div_ceil(TILE), rows.div_ceil(TILE), 1])
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
        let pipelines = super::pipelines(gpu, NAME, self.shader(), &["main"])?;
        let uniform =
            super::uniform_buffer(gpu, "transpose.dims", &[rows as u32, cols as u32, 0, 0]);
        let sets = (0..slots)
            .map(|_| {
                let src = random_f32(rng, rows * cols, -1.0, 1.0);
                let src_buf = super::input_buffer(gpu, "transpose.src", bytemuck::cast_slice(&src));
                let dst_buf = super::poisoned_buffer(gpu, "transpose.dst", 4 * rows * cols);
                let bind = super::bind_group(gpu, &pipelines, &[&uniform, &src_buf, &dst_buf]);
                Set {
                    bind,
                    outputs: vec![dst_buf],
                    check: Box::new(move |out| {
                        let want = reference::transpose(&src, rows as usize, cols as usize);
                        super::compare_exact("dst", &u32s(&out[0]), bytemuck::cast_slice(&want))
                    }),
                }
            })
            .collect();
        let groups = super::dispatch_groups(self, params)?;
        Ok(Box::new(Launch {
            kernel: NAME,
            pipelines,
            steps: vec![(0, groups)],
            sets,
        }))
    }
}

/// CPU reference: the transpose, bit for bit.
pub mod reference {
    pub fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut out = vec![0.0; src.len()];
        for r in 0..rows {
            for c in 0..cols {
                out[c * rows + r] = src[r * cols + c];
            }
        }
        out
    }
}
