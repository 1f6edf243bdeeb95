//! `attention`: fused scaled-dot-product attention with an online (flash-style) softmax, f32,
//! batch × heads × seq × 64, optionally causal (transformer inference and training).
//! GFLOP/s of 4·B·H·S²·D, halved when causal.

use rand::rngs::StdRng;

use super::launch::{f32s, random_f32, Launch, Set};
use super::{param, size, Kernel, Param, Params, Prepared, Unit, Work, U32};
use crate::device::Gpu;
use crate::error::{Error, Result};

pub struct Attention;

const NAME: &str = "attention";
/// Head dimension, fixed by the shader.
pub const HEAD_DIM: usize = 64;
/// Query rows per workgroup (see shaders/attention.wgsl).
const BR: u64 = 128;
/// Query rows the CPU recomputes at most.
const CHECKED_ROWS: usize = 256;

#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub batch: usize,
    pub heads: usize,
    pub seq: usize,
    pub causal: bool,
}

/// The shape, with `batch·heads·seq·64` within 32-bit indices, so no product of the
/// dimensions below overflows.
fn dims(params: &Params) -> Result<Dims> {
    let [batch, heads, seq] = ["batch", "heads", "seq"].map(|p| params.get(NAME, p));
    let (batch, heads, seq) = (batch?, heads?, seq?);
    let elements = (size(batch) * heads * seq * HEAD_DIM as u64).get(NAME, params, "elements")?;
    if elements > U32 {
        return Err(Error::Usage(format!(
            "{}: batch·heads·seq·{HEAD_DIM} must fit in 32-bit indices",
            super::instance_key(NAME, params)
        )));
    }
    Ok(Dims {
        batch: batch as usize,
        heads: heads as usize,
        seq: seq as usize,
        causal: params.flag(NAME, "causal")?,
    })
}

impl Dims {
    fn elements(&self) -> u64 {
        (self.batch * self.heads * self.seq * HEAD_DIM) as u64
    }
}

impl Kernel for Attention {
    fn name(&self) -> &'static str {
        NAME
    }
    fn describe(&self) -> &'static str {
        "flash-style fused attention, f32, head dim 64, optional causal mask (transformers); a query \
         row per invocation, 128 per workgroup, double-buffered 16-key K/V tiles; GFLOP/s"
    }
    fn unit(&self) -> Unit {
        Unit::Flops
    }
    fn shader(&self) -> &'static str {
        include_str!("../../shaders/attention.wgsl")
    }
    fn params(&self) -> &'static [Param] {
        const PARAMS: &[Param] = &[
            param("batch", 1, U32),
            param("heads", 1, U32),
            param("seq", 1, U32),
            param("causal", 0, 1),
        ];
        PARAMS
    }
    fn work(&self, params: &Params) -> Result<Work> {
        let d = dims(params)?;
        let full = (size(4) * d.elements() * d.seq as u64).get(NAME, params, "FLOPs")?;
        Ok(Work {
            bytes: 4 * 4 * d.elements(),
            flops: if d.causal { full / 2 } else { full },
            ..Work::default()
        })
    }
    fn footprint(&self, params: &Params) -> Result<u64> {
        self.work(params).map(|w| w.bytes)
    }
    fn largest_binding(&self, params: &Params) -> Result<u64> {
        Ok(4 * dims(params)?.elements())
    }
    fn workgroups(&self, params: &Params) -> Result<[u64; 3]> {
        let d = dims(params)?;
        Ok([
            (d.seq as u64).div_ceil(BR),
            d.batch as u64 * d.heads as u64,
            1,
        ])
    }

    fn prepare(
        &self,
        gpu: &Gpu,
        params: &Params,
        slots: usize,
        rng: &mut StdRng,
    ) -> Result<Box<dyn Prepared>> {
        let d = dims(params)?;
        super::fits_device(gpu, self, params)?;
        let groups = super::dispatch_groups(self, params)?;
        let pipelines = super::pipelines(gpu, NAME, self.shader(), &["main"])?;
        let scale = 1.0 / (HEAD_DIM as f32).sqrt();
        let words = [d.seq as u32, u32::from(d.causal), scale.to_bits(), 0];
        let uniform = super::uniform_buffer(gpu, "attention.dims", &words);
        let sets = (0..slots)
            .map(|_| {
                let [q, k, v] = [(); 3].map(|_| random_f32(rng, d.elements(), -1.0, 1.0));
                let bufs = [
                    ("attention.q", &q),
                    ("attention.k", &k),
                    ("attention.v", &v),
                ]
                .map(|(label, data)| super::input_buffer(gpu, label, bytemuck::cast_slice(data)));
                let o_buf = super::poisoned_buffer(gpu, "attention.o", 4 * d.elements());
                let bind = super::bind_group(
                    gpu,
                    &pipelines,
                    &[&uniform, &bufs[0], &bufs[1], &bufs[2], &o_buf],
                );
                let rows = reference::rows_to_check(d, rng);
                Set {
                    bind,
                    outputs: vec![o_buf],
                    check: Box::new(move |out| {
                        let o = f32s(&out[0]);
                        let (mut got, mut want, mut tol) = (vec![], vec![], vec![]);
                        for &r in &rows {
                            let (w, t) = reference::row(&q, &k, &v, d, r, scale);
                            got.extend_from_slice(&o[r * HEAD_DIM..(r + 1) * HEAD_DIM]);
                            want.extend(w);
                            tol.extend(t);
                        }
                        super::compare_f32("o", &got, &want, &tol)
                    }),
                }
            })
            .collect();
        Ok(Box::new(Launch {
            kernel: NAME,
            pipelines,
            steps: vec![(0, groups)],
            sets,
        }))
    }
}

/// CPU reference: plain softmax(q·kᵀ·scale)·v in f64 for chosen query rows. The tolerance covers
/// the f32 dot products, the shader's `exp2` of base-2 scores (3 + 2·|x| ulp for x = log2(e)·Δ,
/// Δ ≤ spread, plus about 2·Δ ulp from rounding scale·log2(e) into q, all within the
/// 8·(3 + 2·spread) ulp budgeted) and the sums over the keys.
pub mod reference {
    use rand::Rng;

    use super::{Dims, HEAD_DIM};

    /// Global row indices (over batch·heads·seq) to check: all when few, else a sample with the
    /// first and last row of the first and last head.
    pub fn rows_to_check(d: Dims, rng: &mut impl Rng) -> Vec<usize> {
        let total = d.batch * d.heads * d.seq;
        if total <= super::CHECKED_ROWS {
            return (0..total).collect();
        }
        let mut rows = vec![0, d.seq - 1, total - d.seq, total - 1];
        rows.extend((4..super::CHECKED_ROWS).map(|_| rng.random_range(0..total)));
        rows
    }

    pub fn row(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        d: Dims,
        r: usize,
        scale: f32,
    ) -> (Vec<f64>, Vec<f64>) {
        let head = r / d.seq * d.seq; // first row of this (batch, head)
        let pos = r % d.seq;
        let keys = if d.causal { pos + 1 } else { d.seq };
        let at = |m: &[f32], row: usize, c: usize| f64::from(m[(head + row) * HEAD_DIM + c]);
        let scores: Vec<f64> = (0..keys)
            .map(|j| {
                (0..HEAD_DIM)
                    .map(|c| at(q, pos, c) * f64::from(scale) * at(k, j, c))
                    .sum()
            })
            .collect();
        let max = scores.iter().copied().fold(f64::MIN, f64::max);
        let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        let spread = scores.iter().map(|s| (max - s).abs()).fold(0.0, f64::max);
        let eps = f64::from(f32::EPSILON);
        let rel = eps * (4.0 * keys as f64 + 8.0 * (3.0 + 2.0 * spread) + 2.0 * HEAD_DIM as f64);
        (0..HEAD_DIM)
            .map(|c| {
                let out: f64 = weights
                    .iter()
                    .enumerate()
                    .map(|(j, w)| w * at(v, j, c))
                    .sum();
                let mag: f64 = weights
                    .iter()
                    .enumerate()
                    .map(|(j, w)| w * at(v, j, c).abs())
                    .sum();
                (out / total, rel * (mag / total + 1e-3))
            })
            .unzip()
    }
}
