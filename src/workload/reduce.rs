//! `reduce_sum`, `reduce_min`, `reduce_max`: two-stage f32 reductions (loss, norm and clipping
//! statistics). One shape, three shaders (`shaders/reduce_<op>.wgsl`); GB/s of bytes read.

use rand::rngs::StdRng;

use super::launch::{f32s, Launch, Set};
use super::{param, Kernel, Param, Params, Prepared, Unit, Verification, Work, U32};
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

/// Workgroups of the first stage on a GPU, at most: about 8 per SM of an H100/H200 (132 SMs), so
/// the grid is resident in one wave there, each invocation walking its blocks with four 16-byte
/// loads in flight (~16 MiB in flight over the GPU, several times what HBM needs). On a GPU that
/// holds fewer at once, the second wave still keeps megabytes in flight, so a memory-bound pass
/// loses little to it; and the finish stage stays one workgroup reading at most 4 KiB.
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
            Op::Sum => {
                "f32 sum in two stages, 4 vec4s per invocation in 16 KiB blocks (loss/norm \
                 reductions); GB/s of bytes read"
            }
            Op::Min => {
                "f32 minimum in two stages, 4 vec4s per invocation in 16 KiB blocks \
                 (range/clipping statistics); GB/s of bytes read"
            }
            Op::Max => {
                "f32 maximum in two stages, 4 vec4s per invocation in 16 KiB blocks \
                 (softmax/quantisation scales); GB/s of bytes read"
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
    fn params(&self) -> &'static [Param] {
        const PARAMS: &[Param] = &[param("n", 4, U32)];
        PARAMS
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
    fn largest_binding(&self, params: &Params) -> Result<u64> {
        self.footprint(params)
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
        super::fits_device(gpu, self, params)?;
        let pipelines = super::pipelines(gpu, name, self.shader(), &["partial", "finish"])?;
        let groups = super::stream_groups(gpu, n / 4, MAX_PARTIALS);
        let op = self.0;
        let sets = (0..slots)
            .map(|_| {
                let input = reference::inputs(op, n, rng);
                let input_buf =
                    super::input_buffer(gpu, "reduce.input", bytemuck::cast_slice(&input));
                let partials =
                    super::poisoned_buffer(gpu, "reduce.partials", 4 * u64::from(groups));
                let total = super::poisoned_buffer(gpu, "reduce.total", 4);
                let bind = super::bind_group(gpu, &pipelines, &[&input_buf, &partials, &total]);
                let (want, tolerance) = reference::reduce(op, &input, u64::from(groups));
                // Min and max partials are exact too: checking them catches a first stage that
                // keeps the wrong element per invocation even when the total comes out right.
                let want_partials = if op == Op::Sum {
                    vec![]
                } else {
                    reference::partials(op, &input, u64::from(groups))
                };
                Set {
                    bind,
                    outputs: vec![total, partials],
                    check: Box::new(move |out| {
                        let total =
                            super::compare_f32("total", &f32s(&out[0]), &[want], &[tolerance]);
                        if want_partials.is_empty() {
                            return total;
                        }
                        Verification::all(vec![
                            total,
                            super::compare_exact(
                                "partials",
                                bytemuck::cast_slice(&f32s(&out[1])),
                                bytemuck::cast_slice(&want_partials),
                            ),
                        ])
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

/// Inputs, CPU reference and tolerance. Min and max are exact. For the sum, the tolerance is 0
/// while f32 holds every partial sum exactly (see [`reference::reduce`]), else the f32 error
/// bound of the GPU's order: each invocation adds one pairwise-summed group of four vec4s per
/// round of its grid-stride loop, then two 256-wide trees and a final fold.
pub mod reference {
    use rand::Rng;

    use super::super::launch::random_f32;
    use super::Op;

    /// One buffer set's `n` inputs (`n` a positive multiple of 4).
    ///
    /// Sum: multiples of 1/16 in [0.25, 1.25), so the sum is exact at the test sizes and one
    /// element dropped or added moves it by at least 0.25. Min and max: uniform in
    /// [−1000, 1000), with the extreme (a value in (−2000, −1000) for min, (1000, 2000) for max,
    /// so beyond every other input) at a random lane of the final vec4. That vec4 is in the last
    /// block, which the grid-stride loop's last round reads (through the guarded tail path when
    /// n is not a multiple of 4096), and it is the last vec4 its invocation reads, so a kernel
    /// that drops the tail, the wrapped round or the final vec4 cannot verify.
    pub fn inputs(op: Op, n: u64, rng: &mut impl Rng) -> Vec<f32> {
        match op {
            Op::Sum => (0..n)
                .map(|_| f32::from(rng.random_range(4u8..20)) / 16.0)
                .collect(),
            Op::Min | Op::Max => {
                assert!(
                    n >= 4 && n.is_multiple_of(4),
                    "n={n} is not a positive multiple of 4"
                );
                let mut input = random_f32(rng, n, -1e3, 1e3);
                let extreme = rng.random_range(1001.0..2000.0);
                let at = n as usize - 4 + rng.random_range(0..4);
                input[at] = if op == Op::Min { -extreme } else { extreme };
                input
            }
        }
    }

    /// What each of the `groups` first-stage workgroups of min or max writes: vec4 i lies in
    /// block i / 1024, and block b is read by workgroup b mod groups.
    pub fn partials(op: Op, input: &[f32], groups: u64) -> Vec<f32> {
        let (init, fold): (f32, fn(f32, f32) -> f32) = match op {
            Op::Min => (f32::MAX, f32::min),
            _ => (f32::MIN, f32::max),
        };
        let groups = groups as usize;
        let block = super::super::BLOCK as usize;
        let mut out = vec![init; groups];
        for (i, v) in input.chunks_exact(4).enumerate() {
            let w = (i / block) % groups;
            out[w] = v.iter().copied().fold(out[w], fold);
        }
        out
    }

    /// (expected value, absolute tolerance) of reducing `input` with `groups` workgroups in the
    /// first stage.
    ///
    /// Sum: when every input is a multiple of 1/16, so is every partial sum, in any order of
    /// addition, and each is at most Σ|x| in magnitude. While 16·Σ|x| ≤ 2²⁴, every such partial
    /// sum is an integer multiple of 1/16 of at most 2²⁴ units, which an f32 holds exactly: every
    /// addition the GPU does is exact and the result must equal the exact sum (tolerance 0).
    /// Beyond that (or for other inputs) the tolerance is the f32 error bound of the GPU's order.
    pub fn reduce(op: Op, input: &[f32], groups: u64) -> (f64, f64) {
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
                let sixteenths = input.iter().all(|&x| (x * 16.0).fract() == 0.0);
                if sixteenths && 16.0 * abs_sum <= f64::from(1u32 << 24) {
                    return (exact, 0.0);
                }
                // Additions an element goes through, at most: two pairing its block's four
                // vec4s, one per round of the grid-stride loop, two folding the lanes, eight in
                // the first tree, up to four in a finish invocation's loop (≤ 1024 partials over
                // 256 invocations), eight in the final tree. First-order bound: depth·ε·Σ|x|.
                let blocks = (input.len() as u64 / 4).div_ceil(super::super::BLOCK);
                let rounds = blocks.div_ceil(groups.max(1)) as f64;
                let finish = groups.div_ceil(256) as f64;
                let depth = 2.0 + rounds + 2.0 + 8.0 + finish + 8.0;
                (exact, depth * f64::from(f32::EPSILON) * abs_sum)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::reference::{inputs, reduce};
    use super::*;

    use crate::workload::{groups_for, BLOCK, SOFTWARE_GROUPS};

    /// Wraps the grid-stride loop on a CPU adapter (257 blocks over at most 256 workgroups) and
    /// ends in a 77-vec4 tail block; the sum stays exact there.
    const WRAPPING: u64 = 4 * (1024 * 256 + 77);
    /// Wraps it on a GPU too (1028 blocks over at most 1024 workgroups: 514 of two rounds each).
    const GPU_WRAPPING: u64 = 4 * (1024 * 1027 + 77);

    /// The shapes `tests/it/kernels.rs` runs each reduction at: sizes below one invocation's
    /// four vec4s, below one block, a block with a tail, and the two wrapping ones.
    fn test_shapes() -> [(Op, &'static [u64]); 3] {
        const SMALL: [u64; 7] = [4, 8, 12, 16, 20, 4 * 1001, 1 << 18];
        const SUM: [u64; 8] = [
            SMALL[0], SMALL[1], SMALL[2], SMALL[3], SMALL[4], SMALL[5], SMALL[6], WRAPPING,
        ];
        const EXTREMES: [u64; 9] = [
            SMALL[0],
            SMALL[1],
            SMALL[2],
            SMALL[3],
            SMALL[4],
            SMALL[5],
            SMALL[6],
            WRAPPING,
            GPU_WRAPPING,
        ];
        [(Op::Sum, &SUM), (Op::Min, &EXTREMES), (Op::Max, &EXTREMES)]
    }

    /// The first stage's workgroup caps: a GPU's and a CPU adapter's.
    const CAPS: [u32; 2] = [MAX_PARTIALS, SOFTWARE_GROUPS];

    /// First-stage workgroups at `n` elements under `cap`, as `stream_groups` picks them.
    fn groups(n: u64, cap: u32) -> u64 {
        u64::from(groups_for(n / 4, cap))
    }

    /// How far `changed` moves the reference at `n`, and the tolerance there.
    fn moved(op: Op, input: &[f32], n: u64, cap: u32, changed: &[f32]) -> (f64, f64) {
        let (want, tol) = reduce(op, input, groups(n, cap));
        let (got, _) = reduce(op, changed, groups(n, cap));
        ((got - want).abs(), tol)
    }

    #[test]
    fn a_dropped_final_vec4_fails_at_every_test_shape() {
        let mut rng = StdRng::seed_from_u64(7);
        for (op, sizes) in test_shapes() {
            for &n in sizes {
                let input = inputs(op, n, &mut rng);
                for cap in CAPS {
                    let (moved, tol) = moved(op, &input, n, cap, &input[..n as usize - 4]);
                    assert!(moved > tol, "{op:?} n={n}: moved {moved}, tolerance {tol}");
                }
            }
        }
    }

    /// What a first stage that keeps only the last vec4 each invocation reads (`acc = x`
    /// instead of a fold) writes per workgroup. An invocation reads its vec4s in increasing
    /// order (t, t + 256, t + 512, t + 768 of a block, block after block), so walking the input
    /// in order and overwriting leaves each invocation's last one.
    fn keeping_last(op: Op, input: &[f32], groups: u64) -> Vec<f32> {
        let fold = if op == Op::Min { f32::min } else { f32::max };
        let (groups, block) = (groups as usize, BLOCK as usize);
        let mut last = vec![None; groups * 256];
        for (i, v) in input.chunks_exact(4).enumerate() {
            let invocation = (i / block) % groups * 256 + i % block % 256;
            last[invocation] = Some(v.iter().copied().reduce(fold).unwrap());
        }
        let mut out = vec![if op == Op::Min { f32::MAX } else { f32::MIN }; groups];
        for (t, v) in last.iter().enumerate() {
            if let Some(v) = v {
                out[t / 256] = fold(out[t / 256], *v);
            }
        }
        out
    }

    #[test]
    fn a_first_stage_keeping_only_its_last_element_fails_the_partials() {
        // The planted extreme is the last element read, so the total still comes out right;
        // the exact partials do not, since every invocation reads four vec4s per round.
        let mut rng = StdRng::seed_from_u64(9);
        for op in [Op::Min, Op::Max] {
            let fold = if op == Op::Min { f32::min } else { f32::max };
            for n in [WRAPPING, GPU_WRAPPING] {
                let input = inputs(op, n, &mut rng);
                for cap in CAPS {
                    let groups = groups(n, cap);
                    let bad = keeping_last(op, &input, groups);
                    let want = reference::partials(op, &input, groups);
                    assert_eq!(
                        bad.iter().copied().reduce(fold),
                        want.iter().copied().reduce(fold),
                        "{op:?} n={n} cap={cap}: the total alone cannot tell"
                    );
                    assert_ne!(bad, want, "{op:?} n={n} cap={cap}: the partials must");
                }
            }
        }
    }

    #[test]
    fn the_wrapping_shapes_wrap_and_end_in_a_tail_block() {
        for (n, cap) in [(WRAPPING, SOFTWARE_GROUPS), (GPU_WRAPPING, MAX_PARTIALS)] {
            let vec4s = n / 4;
            let blocks = vec4s.div_ceil(BLOCK);
            assert!(blocks > groups(n, cap), "n={n} cap={cap} does not wrap");
            assert_ne!(vec4s % BLOCK, 0, "n={n} has no tail block");
            // The final vec4 takes the guarded path: its invocation's fourth vec4 is past the end.
            assert!(vec4s % BLOCK < 3 * 256, "n={n}");
        }
    }

    #[test]
    fn the_extreme_is_beyond_every_other_input_in_the_final_vec4() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut lanes = [0; 4];
        for _ in 0..64 {
            for op in [Op::Min, Op::Max] {
                let input = inputs(op, 4 * 100, &mut rng);
                let (want, _) = reduce(op, &input, 1);
                let at = input.iter().position(|&x| f64::from(x) == want).unwrap();
                assert!(at >= 4 * 99, "{op:?}: extreme at {at}");
                lanes[at % 4] += 1;
                let others = input.iter().enumerate().filter(|&(i, _)| i != at);
                for (_, &x) in others {
                    match op {
                        Op::Min => assert!(f64::from(x) > want + 1.0),
                        _ => assert!(f64::from(x) < want - 1.0),
                    }
                }
            }
        }
        assert!(lanes.iter().all(|&l| l > 0), "lanes {lanes:?}");
    }

    #[test]
    fn one_element_dropped_or_duplicated_fails_the_sum_at_every_test_shape() {
        let mut rng = StdRng::seed_from_u64(7);
        for &n in test_shapes()[0].1 {
            let input = inputs(Op::Sum, n, &mut rng);
            for cap in CAPS {
                let (_, tol) = reduce(Op::Sum, &input, groups(n, cap));
                assert_eq!(tol, 0.0, "n={n}: the sum should be exact");
                let (dropped, _) = moved(Op::Sum, &input, n, cap, &input[..n as usize - 1]);
                assert!(dropped >= 0.25, "n={n}: dropping the last moved {dropped}");
                let mut duplicated = input.clone();
                duplicated.push(input[rng.random_range(0..n as usize)]);
                let (added, _) = moved(Op::Sum, &input, n, cap, &duplicated);
                assert!(added >= 0.25, "n={n}: a duplicate moved {added}");
            }
        }
    }

    #[test]
    fn sums_of_sixteenths_are_exact_in_f32_in_any_order_below_the_bound() {
        let mut rng = StdRng::seed_from_u64(3);
        let input = inputs(Op::Sum, WRAPPING, &mut rng);
        let (exact, tol) = reduce(Op::Sum, &input, groups(WRAPPING, MAX_PARTIALS));
        assert_eq!(tol, 0.0);
        let forward = input.iter().fold(0f32, |a, &x| a + x);
        let backward = input.iter().rev().fold(0f32, |a, &x| a + x);
        let pairwise = input
            .chunks(4)
            .map(|v| (v[0] + v[1]) + (v[2] + v[3]))
            .fold(0f32, |a, x| a + x);
        for sum in [forward, backward, pairwise] {
            assert_eq!(f64::from(sum), exact);
        }
        // Past 2²⁴ sixteenths the f32 sum rounds, and the error bound takes over.
        let big = inputs(Op::Sum, 4 << 20, &mut rng);
        let (_, tol) = reduce(Op::Sum, &big, groups(4 << 20, MAX_PARTIALS));
        assert!(tol > 0.0);
    }

    #[test]
    fn sum_inputs_are_sixteenths_in_range() {
        let mut rng = StdRng::seed_from_u64(5);
        let input = inputs(Op::Sum, 4096, &mut rng);
        assert!(input.iter().all(|&x| (0.25..1.25).contains(&x)));
        assert!(input.iter().all(|&x| (x * 16.0).fract() == 0.0));
        let distinct: std::collections::BTreeSet<u32> = input.iter().map(|x| x.to_bits()).collect();
        assert_eq!(distinct.len(), 16);
    }
}
