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
        let groups = super::grid_groups(gpu, n / 4, 256, MAX_PARTIALS);
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
                let threads = u64::from(groups) * 256;
                let (want, tolerance) = reference::reduce(op, &input, threads);
                // Min and max partials are exact too: checking them catches a first stage that
                // keeps the wrong element per invocation even when the total comes out right.
                let want_partials = if op == Op::Sum {
                    vec![]
                } else {
                    reference::partials(op, &input, threads)
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
/// bound of the GPU's order: each invocation adds `n / threads` vec4s in sequence, then two
/// 256-wide trees and a final fold.
pub mod reference {
    use rand::Rng;

    use super::super::launch::random_f32;
    use super::Op;

    /// One buffer set's `n` inputs (`n` a positive multiple of 4).
    ///
    /// Sum: multiples of 1/16 in [0.25, 1.25), so the sum is exact at the test sizes and one
    /// element dropped or added moves it by at least 0.25. Min and max: uniform in
    /// [−1000, 1000), with the extreme (a value in (−2000, −1000) for min, (1000, 2000) for max,
    /// so beyond every other input) at a random lane of the final vec4. That vec4 is in the
    /// grid-stride loop's last round and is the last one read, so a kernel that drops the
    /// wrapping tail or the final vec4 cannot verify.
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

    /// What each first-stage workgroup of min or max writes: invocation t folds vec4s
    /// i ≡ t (mod threads), and workgroup w holds invocations 256·w … 256·w + 255.
    pub fn partials(op: Op, input: &[f32], threads: u64) -> Vec<f32> {
        let (init, fold): (f32, fn(f32, f32) -> f32) = match op {
            Op::Min => (f32::MAX, f32::min),
            _ => (f32::MIN, f32::max),
        };
        let threads = threads as usize;
        let mut out = vec![init; threads / 256];
        for (i, v) in input.chunks_exact(4).enumerate() {
            let w = (i % threads) / 256;
            out[w] = v.iter().copied().fold(out[w], fold);
        }
        out
    }

    /// (expected value, absolute tolerance) of reducing `input` with `threads` invocations in
    /// the first stage.
    ///
    /// Sum: when every input is a multiple of 1/16, so is every partial sum, in any order of
    /// addition, and each is at most Σ|x| in magnitude. While 16·Σ|x| ≤ 2²⁴, every such partial
    /// sum is an integer multiple of 1/16 of at most 2²⁴ units, which an f32 holds exactly: every
    /// addition the GPU does is exact and the result must equal the exact sum (tolerance 0).
    /// Beyond that (or for other inputs) the tolerance is the f32 error bound of the GPU's order.
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
                let sixteenths = input.iter().all(|&x| (x * 16.0).fract() == 0.0);
                if sixteenths && 16.0 * abs_sum <= f64::from(1u32 << 24) {
                    return (exact, 0.0);
                }
                let sequential = (input.len() as u64 / 4).div_ceil(threads.max(1)) as f64;
                let depth = sequential + 2.0 + 8.0 + 8.0 + 4.0;
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

    const WRAPPING: u64 = 4 * (1024 * 256 + 77);

    /// The shapes `tests/it/kernels.rs` runs each reduction at.
    fn test_shapes() -> [(Op, &'static [u64]); 3] {
        [
            (Op::Sum, &[4, 4 * 1001, WRAPPING]),
            (Op::Min, &[4, 4 * 1001, WRAPPING]),
            (Op::Max, &[4, 4 * 1001, WRAPPING]),
        ]
    }

    /// First-stage invocations at `n` elements, as `grid_groups` picks them.
    fn threads(n: u64) -> u64 {
        (n / 4).div_ceil(256).min(u64::from(MAX_PARTIALS)) * 256
    }

    /// How far `changed` moves the reference at `n`, and the tolerance there.
    fn moved(op: Op, input: &[f32], n: u64, changed: &[f32]) -> (f64, f64) {
        let (want, tol) = reduce(op, input, threads(n));
        let (got, _) = reduce(op, changed, threads(n));
        ((got - want).abs(), tol)
    }

    #[test]
    fn a_dropped_final_vec4_fails_at_every_test_shape() {
        let mut rng = StdRng::seed_from_u64(7);
        for (op, sizes) in test_shapes() {
            for &n in sizes {
                let input = inputs(op, n, &mut rng);
                let (moved, tol) = moved(op, &input, n, &input[..n as usize - 4]);
                assert!(moved > tol, "{op:?} n={n}: moved {moved}, tolerance {tol}");
            }
        }
    }

    #[test]
    fn a_first_stage_keeping_only_its_last_element_fails_the_partials() {
        // `acc = x` instead of `acc = min(acc, x)`: the planted extreme is the last element read,
        // so the total still comes out right; the exact partials do not, once invocations read
        // several rounds (production sizes read dozens; the GPU tests include this shape).
        const DEEP: u64 = 4 * (3 * 1024 * 256 + 77);
        let mut rng = StdRng::seed_from_u64(9);
        for op in [Op::Min, Op::Max] {
            let input = inputs(op, DEEP, &mut rng);
            let threads = threads(DEEP) as usize;
            let fold = if op == Op::Min { f32::min } else { f32::max };
            let mut last = vec![None; threads];
            for (i, v) in input.chunks_exact(4).enumerate() {
                last[i % threads] = Some(v.iter().copied().reduce(fold).unwrap());
            }
            let mut keeping_last =
                vec![if op == Op::Min { f32::MAX } else { f32::MIN }; threads / 256];
            for (t, v) in last.iter().enumerate() {
                if let Some(v) = v {
                    keeping_last[t / 256] = fold(keeping_last[t / 256], *v);
                }
            }
            let want = reference::partials(op, &input, threads as u64);
            assert_eq!(
                keeping_last.iter().copied().reduce(fold),
                want.iter().copied().reduce(fold),
                "{op:?}: the total alone cannot tell"
            );
            assert_ne!(keeping_last, want, "{op:?}: the partials must");
        }
    }

    #[test]
    fn the_wrapping_shape_wraps_and_its_final_vec4_is_in_the_tail() {
        // The final vec4's index is past the first round of the grid-stride loop.
        let last = WRAPPING / 4 - 1;
        assert!(last >= threads(WRAPPING));
    }

    #[test]
    fn the_extreme_is_beyond_every_other_input_in_the_final_vec4() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut lanes = [0; 4];
        for _ in 0..64 {
            for op in [Op::Min, Op::Max] {
                let input = inputs(op, 4 * 100, &mut rng);
                let (want, _) = reduce(op, &input, 256);
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
            let (_, tol) = reduce(Op::Sum, &input, threads(n));
            assert_eq!(tol, 0.0, "n={n}: the sum should be exact");
            let (dropped, _) = moved(Op::Sum, &input, n, &input[..n as usize - 1]);
            assert!(dropped >= 0.25, "n={n}: dropping the last moved {dropped}");
            let mut duplicated = input.clone();
            duplicated.push(input[rng.random_range(0..n as usize)]);
            let (added, _) = moved(Op::Sum, &input, n, &duplicated);
            assert!(added >= 0.25, "n={n}: a duplicate moved {added}");
        }
    }

    #[test]
    fn sums_of_sixteenths_are_exact_in_f32_in_any_order_below_the_bound() {
        let mut rng = StdRng::seed_from_u64(3);
        let input = inputs(Op::Sum, WRAPPING, &mut rng);
        let (exact, tol) = reduce(Op::Sum, &input, threads(WRAPPING));
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
        let (_, tol) = reduce(Op::Sum, &big, threads(4 << 20));
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
