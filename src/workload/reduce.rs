//! `reduce_sum`, `reduce_min`, `reduce_max`: two-stage f32 reductions (loss, norm and clipping
//! statistics). One shape, three shaders (`shaders/reduce_<op>.wgsl`); GB/s of bytes read.

use rand::rngs::StdRng;

use super::launch::{f32s, random_f32, Launch, Set};
use super::{Kernel, Params, Prepared, Unit, Work};
use crate::device::Gpu;
use crate::error::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Sum,
    Min,
    Max,
}

pub struct Reduce(pub Op);

pub const REDUCE_SUM: Reduce = Reduce(Op::Sum);
pub const REDUCE_MIN: Reduce = Reduce(Op::Min);
pub const REDUCE_MAX: Reduce = Reduce(Op::Max);

/// Workgroups of the first stage: enough to keep a large GPU's memory system busy.
const MAX_PARTIALS: u32 = 1024;

impl Kernel for Reduce {
    fn name(&self) -> &'static str {
        match self.0 {
            Op::Sum => "reduce_sum",
            Op::Min => "reduce_min",
            Op::Max => "reduce_max",
        }
    }
    fn describe(&self) -> &'static str {
        match self.0 {
            Op::Sum => "f32 sum in two stages (loss/norm reductions); GB/s of bytes read",
            Op::Min => "f32 minimum in two stages (range/clipping statistics); GB/s of bytes read",
            Op::Max => {
                "f32 maximum in two stages (softmax/quantisation scales); GB/s of bytes read"
            }
        }
    }
    fn unit(&self) -> Unit {
        Unit::Bandwidth
    }
    fn shader(&self) -> &'static str {
        match self.0 {
            Op::Sum => include_str!("../../shaders/reduce_sum.wgsl"),
            Op::Min => include_str!("../../shaders/reduce_min.wgsl"),
            Op::Max => include_str!("../../shaders/reduce_max.wgsl"),
        }
    }
    fn param_names(&self) -> &'static [&'static str] {
        &["n"]
    }
    fn work(&self, params: &Params) -> Result<Work> {
        let n = params.vec4_len(self.name())?;
        Ok(Work {
            bytes: 4 * n,
            flops: n,
            ..Work::default()
        })
    }
    fn footprint(&self, params: &Params) -> Result<u64> {
        Ok(4 * params.vec4_len(self.name())?)
    }

    fn prepare(
        &self,
        gpu: &Gpu,
        params: &Params,
        slots: usize,
        rng: &mut StdRng,
    ) -> Result<Box<dyn Prepared>> {
        let name = self.name();
        let n = params.vec4_len(name)?;
        super::check_binding(gpu, name, params, 4 * n)?;
        let pipelines = super::pipelines(gpu, name, self.shader(), &["partial", "finish"])?;
        let groups = super::grid_groups(gpu, n / 4, 256, MAX_PARTIALS);
        let op = self.0;
        let sets = (0..slots)
            .map(|_| {
                let (low, high) = match op {
                    Op::Sum => (0.25, 1.25),
                    _ => (-1e3, 1e3),
                };
                let input = random_f32(rng, n, low, high);
                let input_buf =
                    super::input_buffer(gpu, "reduce.input", bytemuck::cast_slice(&input));
                let partials =
                    super::poisoned_buffer(gpu, "reduce.partials", 4 * u64::from(groups));
                let total = super::poisoned_buffer(gpu, "reduce.total", 4);
                let bind = super::bind_group(gpu, &pipelines, &[&input_buf, &partials, &total]);
                let (want, tolerance) = reference::reduce(op, &input, u64::from(groups) * 256);
                Set {
                    bind,
                    outputs: vec![total],
                    check: Box::new(move |out| {
                        super::compare_f32("total", &f32s(&out[0]), &[want], &[tolerance])
                    }),
                }
            })
            .collect();
        Ok(Box::new(Launch {
            kernel: name,
            pipelines,
            steps: vec![(0, [groups, 1, 1]), (1, [1, 1, 1])],
            sets,
        }))
    }
}

/// CPU reference and tolerance. Min and max are exact. For the sum, the tolerance is the f32 error
/// bound of the GPU's order: each invocation adds `n / threads` vec4s in sequence, then two
/// 256-wide trees and a final fold.
pub mod reference {
    use super::Op;

    pub fn reduce(op: Op, input: &[f32], threads: u64) -> (f64, f64) {
        match op {
            Op::Min => (
                f64::from(input.iter().copied().fold(f32::MAX, f32::min)),
                0.0,
            ),
            Op::Max => (
                f64::from(input.iter().copied().fold(f32::MIN, f32::max)),
                0.0,
            ),
            Op::Sum => {
                let exact: f64 = input.iter().map(|&x| f64::from(x)).sum();
                let abs_sum: f64 = input.iter().map(|&x| f64::from(x).abs()).sum();
                let sequential = (input.len() as u64 / 4).div_ceil(threads.max(1)) as f64;
                let depth = sequential + 2.0 + 8.0 + 8.0 + 4.0;
                (exact, depth * f64::from(f32::EPSILON) * abs_sum)
            }
        }
    }
}
