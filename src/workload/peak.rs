//! `peak_bandwidth` and `peak_fma`: the device's own ceilings, measured like any kernel, so every
//! other result can be shown as a percentage of what this device reaches (see `report::Peaks`).
//! A drop in either is itself a node regression worth gating.

use rand::rngs::StdRng;

use super::launch::{f32s, random_f32, u32s, Launch, Set};
use super::{
    param, size, Kernel, Param, Params, Pipelines, Prepared, Unit, Verification, Work, U32,
};
use crate::device::Gpu;
use crate::error::Result;

pub struct PeakBandwidth;
pub struct PeakFma;

/// FMA chain coefficients: a = 1 − 2⁻¹⁰ and b = 2⁻¹¹, so chains contract toward 0.5.
const A: f32 = 1.0 - 1.0 / 1024.0;
const B: f32 = 1.0 / 2048.0;
const CHAINS: u64 = 8;
/// Workgroups of peak_bandwidth: about a full H100 of resident invocations (132 SMs × 2048),
/// each keeping four loads in flight over its grid-stride slice.
const MAX_READ_GROUPS: u32 = 1024;
/// Invocations whose FMA chains the CPU replays at most.
const CHECKED_THREADS: u64 = 1024;
/// Chain steps (one vec4 FMA of one chain) the CPU replays per buffer set at most, each twice
/// (fused and unfused): 128 invocations at 4096 steps, all 1024 up to 512 steps.
const REPLAY_STEPS: u64 = 1 << 22;

/// How many invocations of a peak_fma run at `iters` steps the CPU checks: as many as the replay
/// budget allows, at least the first and the last, at most [`CHECKED_THREADS`].
fn checked_threads(iters: u64) -> u64 {
    (REPLAY_STEPS / (CHAINS * iters.max(1))).clamp(2, CHECKED_THREADS)
}

/// The access patterns peak_bandwidth picks from, in the shader's entry-point order. Each moves
/// exactly the 4·n bytes the work counts, once: the reads read every f32 (and write one word per
/// invocation, not counted), the write writes every f32 slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Grid-stride over a persistent grid (≤ 1024 workgroups; 16 on a CPU adapter), one vec4 per
    /// invocation and round, max-folded.
    ReadStrided,
    /// Blocks of 1024 vec4s as in `copy` (four loads in flight per invocation), max-folded.
    ReadBlocked,
    /// The same blocks written with their own indices.
    WriteBlocked,
}

impl Pattern {
    pub const ALL: [Pattern; 3] = [
        Pattern::ReadStrided,
        Pattern::ReadBlocked,
        Pattern::WriteBlocked,
    ];

    pub fn entry_point(self) -> &'static str {
        match self {
            Pattern::ReadStrided => "read_strided",
            Pattern::ReadBlocked => "read_blocked",
            Pattern::WriteBlocked => "write_blocked",
        }
    }

    fn index(self) -> usize {
        Pattern::ALL.iter().position(|&p| p == self).unwrap_or(0)
    }

    /// Workgroups of this pattern over `vec4s` vec4s on `gpu`.
    fn groups(self, gpu: &Gpu, vec4s: u64) -> u32 {
        match self {
            Pattern::ReadStrided => {
                // A CPU adapter pays per invocation, so it gets few long-running ones.
                let cap = if gpu.is_software() {
                    16
                } else {
                    MAX_READ_GROUPS
                };
                super::grid_groups(gpu, vec4s, 256, cap)
            }
            Pattern::ReadBlocked | Pattern::WriteBlocked => {
                super::stream_groups(gpu, vec4s, super::ONE_BLOCK_EACH)
            }
        }
    }
}

/// GPU work one probe trial of a pattern aims at (the dispatch count is scaled up to it), so the
/// wall-clock time of a submission is dominated by the dispatches rather than by submitting.
const PROBE_TRIAL: f64 = 5e-3;
/// Timed trials per pattern (after one warm-up dispatch), interleaved across patterns.
const PROBE_TRIALS: usize = 3;
/// Most dispatches in one trial.
const PROBE_MAX_REPS: u32 = 64;

impl PeakBandwidth {
    /// Time every pattern on scratch buffers of this instance's size and return the fastest, with
    /// each pattern's best seconds per dispatch.
    ///
    /// A prepare-time probe (like vkpeak's and nvbench's best-of-patterns): one warm-up dispatch,
    /// then [`PROBE_TRIALS`] rounds, each timing every pattern over enough dispatches for
    /// [`PROBE_TRIAL`] of work, wall-clock from submit to the end of the wait. Each pattern keeps
    /// its best trial. Where one pattern is clearly faster (a CPU adapter, whose per-lane loads
    /// cost several times its stores, always picks the write) the choice is the same in every
    /// run. Where two are within the probe's noise (reads and writes on an HBM GPU can be) the
    /// choice may differ between runs; the ceiling is then still comparable across runs because
    /// the candidates are equally fast, and the measurement proper times only the chosen one.
    fn fastest_pattern(
        gpu: &Gpu,
        pipelines: &Pipelines,
        n: u64,
    ) -> Result<(Pattern, Vec<(Pattern, f64)>)> {
        let name = "peak_bandwidth";
        let scratch = |label, bytes: u64| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes.max(16),
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        let vec4s = n / 4;
        let threads = Pattern::ALL
            .iter()
            .map(|p| u64::from(p.groups(gpu, vec4s)) * 256)
            .max()
            .unwrap_or(256);
        let src = scratch("peak_bandwidth.probe.src", 4 * n);
        let out = scratch("peak_bandwidth.probe.out", 4 * threads);
        let sink = scratch("peak_bandwidth.probe.sink", 4 * n);
        let bind = super::bind_group(gpu, pipelines, &[&src, &out, &sink]);
        let time = |pattern: Pattern, reps: u32| -> Result<f64> {
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipelines.entries[pattern.index()]);
                pass.set_bind_group(0, &bind, &[]);
                for _ in 0..reps {
                    pass.dispatch_workgroups(pattern.groups(gpu, vec4s), 1, 1);
                }
            }
            let start = std::time::Instant::now();
            gpu.queue.submit([encoder.finish()]);
            gpu.wait(name)?;
            Ok(start.elapsed().as_secs_f64() / f64::from(reps))
        };
        let mut reps = Vec::with_capacity(Pattern::ALL.len());
        for pattern in Pattern::ALL {
            let once = time(pattern, 1)?;
            reps.push(
                (PROBE_TRIAL / once.max(1e-9))
                    .ceil()
                    .clamp(1.0, f64::from(PROBE_MAX_REPS)) as u32,
            );
        }
        let mut best = vec![f64::INFINITY; Pattern::ALL.len()];
        for _ in 0..PROBE_TRIALS {
            for (i, pattern) in Pattern::ALL.into_iter().enumerate() {
                best[i] = best[i].min(time(pattern, reps[i])?);
            }
        }
        let times: Vec<(Pattern, f64)> = Pattern::ALL.into_iter().zip(best).collect();
        let fastest = times
            .iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(Pattern::ReadStrided, |t| t.0);
        tracing::info!(
            "peak_bandwidth[n={n}]: probe {}; measuring {}",
            times
                .iter()
                .map(|(p, t)| format!("{} {:.3} ms", p.entry_point(), t * 1e3))
                .collect::<Vec<_>>()
                .join(", "),
            fastest.entry_point()
        );
        Ok((fastest, times))
    }

    /// Prepare the instance to run `pattern`, or the fastest by [`Self::fastest_pattern`].
    fn prepare_pattern(
        &self,
        gpu: &Gpu,
        params: &Params,
        slots: usize,
        rng: &mut StdRng,
        pattern: Option<Pattern>,
    ) -> Result<Box<dyn Prepared>> {
        let name = self.name();
        let n = params.vec4_len(name)?;
        super::fits_device(gpu, self, params)?;
        let entries = Pattern::ALL.map(Pattern::entry_point);
        let pipelines = super::pipelines(gpu, name, self.shader(), &entries)?;
        let pattern = match pattern {
            Some(p) => p,
            None => Self::fastest_pattern(gpu, &pipelines, n)?.0,
        };
        let groups = pattern.groups(gpu, n / 4);
        let threads = u64::from(groups) * 256;
        let entry = pattern.entry_point();
        let sets = (0..slots)
            .map(|_| {
                // The bindings a pattern does not use get 16-byte stand-ins.
                let stand_in = |label| super::poisoned_buffer(gpu, label, 16);
                if pattern == Pattern::WriteBlocked {
                    let sink = super::poisoned_buffer(gpu, "peak_bandwidth.sink", 4 * n);
                    let (src, out) = (
                        stand_in("peak_bandwidth.src"),
                        stand_in("peak_bandwidth.out"),
                    );
                    let bind = super::bind_group(gpu, &pipelines, &[&src, &out, &sink]);
                    return Set {
                        bind,
                        outputs: vec![sink],
                        check: Box::new(move |got| {
                            let mut v = reference::check_written(&u32s(&got[0]), n);
                            v.detail = format!("{entry}: {}", v.detail);
                            v
                        }),
                    };
                }
                let src = random_f32(rng, n, -1e3, 1e3);
                let src_buf =
                    super::input_buffer(gpu, "peak_bandwidth.src", bytemuck::cast_slice(&src));
                let out_buf = super::poisoned_buffer(gpu, "peak_bandwidth.out", 4 * threads);
                let sink = stand_in("peak_bandwidth.sink");
                let bind = super::bind_group(gpu, &pipelines, &[&src_buf, &out_buf, &sink]);
                Set {
                    bind,
                    outputs: vec![out_buf],
                    check: Box::new(move |out| {
                        let want = match pattern {
                            Pattern::ReadStrided => reference::strided_max(&src, threads as usize),
                            _ => reference::blocked_max(&src, u64::from(groups)),
                        };
                        let got = f32s(&out[0]);
                        let mut v = super::compare_exact(
                            "out",
                            bytemuck::cast_slice(&got),
                            bytemuck::cast_slice(&want),
                        );
                        v.detail = format!("{entry}: {}", v.detail);
                        v
                    }),
                }
            })
            .collect();
        Ok(Box::new(Launch {
            kernel: name,
            pipelines,
            steps: vec![(pattern.index(), [groups, 1, 1])],
            sets,
        }))
    }
}

impl Kernel for PeakBandwidth {
    fn name(&self) -> &'static str {
        "peak_bandwidth"
    }
    fn describe(&self) -> &'static str {
        "device ceiling: the fastest of three stream patterns over f32 vec4s (strided and blocked \
         reads, blocked write), picked by a probe at prepare; GB/s of bytes moved"
    }
    fn unit(&self) -> Unit {
        Unit::Bandwidth
    }
    fn shader(&self) -> &'static str {
        include_str!("../../shaders/peak_bandwidth.wgsl")
    }
    fn params(&self) -> &'static [Param] {
        const PARAMS: &[Param] = &[param("n", 4, U32)];
        PARAMS
    }
    fn work(&self, params: &Params) -> Result<Work> {
        // Every pattern moves each of the n f32s once (read, or written) and spends one
        // operation on it (a max, or forming the written value).
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
        self.prepare_pattern(gpu, params, slots, rng, None)
    }
}

impl Kernel for PeakFma {
    fn name(&self) -> &'static str {
        "peak_fma"
    }
    fn describe(&self) -> &'static str {
        "device ceiling: independent f32 FMA chains in registers; GFLOP/s (2 per FMA)"
    }
    fn unit(&self) -> Unit {
        Unit::Flops
    }
    fn shader(&self) -> &'static str {
        include_str!("../../shaders/peak_fma.wgsl")
    }
    fn params(&self) -> &'static [Param] {
        // Chain steps: 16× the largest suite's 4096. Each invocation runs them serially and the
        // CPU replays at least two invocations' chains, so 2^32 would be hours in one iteration.
        const PARAMS: &[Param] = &[param("groups", 1, U32), param("iters", 1, 1 << 16)];
        PARAMS
    }
    fn work(&self, params: &Params) -> Result<Work> {
        let name = self.name();
        // At most 2^40 threads (groups fits in 32 bits): the bytes cannot overflow.
        let threads = 256 * params.get(name, "groups")?;
        let iters = params.get(name, "iters")?;
        Ok(Work {
            bytes: 8 * threads,
            flops: (size(threads) * iters * CHAINS * 4 * 2).get(name, params, "FLOPs")?,
            ..Work::default()
        })
    }
    fn footprint(&self, params: &Params) -> Result<u64> {
        self.work(params).map(|w| w.bytes)
    }
    fn largest_binding(&self, params: &Params) -> Result<u64> {
        Ok(4 * 256 * params.get(self.name(), "groups")?)
    }
    fn workgroups(&self, params: &Params) -> Result<[u64; 3]> {
        Ok([params.get(self.name(), "groups")?, 1, 1])
    }

    fn prepare(
        &self,
        gpu: &Gpu,
        params: &Params,
        slots: usize,
        rng: &mut StdRng,
    ) -> Result<Box<dyn Prepared>> {
        let name = self.name();
        let groups = params.get(name, "groups")?;
        let iters = params.get(name, "iters")?;
        super::fits_device(gpu, self, params)?;
        let dispatch = super::dispatch_groups(self, params)?;
        let threads = 256 * groups;
        let pipelines = super::pipelines(gpu, name, self.shader(), &["main"])?;
        let uniform = super::uniform_buffer(
            gpu,
            "peak_fma.params",
            &[iters as u32, A.to_bits(), B.to_bits(), 0],
        );
        let sets = (0..slots)
            .map(|_| {
                let seeds = reference::seeds(rng, threads);
                let checked: Vec<(usize, f32)> =
                    super::launch::rows_to_check(threads, checked_threads(iters), rng)
                        .into_iter()
                        .map(|t| (t as usize, seeds[t as usize]))
                        .collect();
                let seeds_buf =
                    super::input_buffer(gpu, "peak_fma.seeds", bytemuck::cast_slice(&seeds));
                let out_buf = super::poisoned_buffer(gpu, "peak_fma.out", 4 * threads);
                let bind = super::bind_group(gpu, &pipelines, &[&uniform, &seeds_buf, &out_buf]);
                Set {
                    bind,
                    outputs: vec![out_buf],
                    check: Box::new(move |out| {
                        let all = f32s(&out[0]);
                        let got: Vec<f32> = checked.iter().map(|&(t, _)| all[t]).collect();
                        let (want, tol): (Vec<f64>, Vec<f64>) = checked
                            .iter()
                            .map(|&(_, s)| reference::chains(s, iters, A, B))
                            .unzip();
                        super::compare_f32("out", &got, &want, &tol)
                    }),
                }
            })
            .collect();
        Ok(Box::new(Launch {
            kernel: name,
            pipelines,
            steps: vec![(0, dispatch)],
            sets,
        }))
    }
}

/// CPU references. The strided max is exact.
///
/// The FMA chains are replayed in f32, in the shader's order, twice: fused (`mul_add`, one
/// rounding per step) and unfused (`x * a + b`, two), since WGSL's `fma` may be computed either
/// way. The start values are exact whatever the evaluation order (seeds are multiples of 2⁻⁸ in
/// [0, 1), so `s + k + c/8` needs at most 11 significant bits). The tolerance is the distance
/// between the two replays plus [`SUM_ULPS`] ulps of the result, which covers a compiler that
/// reorders the 31 final additions of positive values (each order is within 15.5 ulps of the
/// exact sum, so two orders differ by at most 31) or mixes fused and unfused steps.
///
/// Each step moves a chain's distance from 0.5 by the factor a, so the result is
/// 16 + (Σ start − 16)·aⁿ up to rounding: it depends on the seed (32·aⁿ per unit) and on every
/// step (one step fewer adds (Σ start − 16)·aⁿ⁻¹·2⁻¹⁰). Both stay far beyond the tolerance at the
/// suites' step counts (64 to 4096, see the tests); past about 6500 steps aⁿ is too small.
pub mod reference {
    use rand::Rng;

    /// Ulps of the result the tolerance allows beyond the fused/unfused difference.
    pub const SUM_ULPS: f32 = 64.0;

    /// What each of `threads` invocations computes: the max over elements i ≡ t (mod threads).
    pub fn strided_max(src: &[f32], threads: usize) -> Vec<f32> {
        let vec4s = src.len() / 4;
        (0..threads)
            .map(|t| {
                (t..vec4s)
                    .step_by(threads)
                    .flat_map(|i| &src[4 * i..4 * i + 4])
                    .copied()
                    .fold(-3.0e38f32, f32::max)
            })
            .collect()
    }

    /// What `read_blocked` writes with `groups` workgroups: vec4 i lies in block i / 1024, read by
    /// workgroup (i / 1024) mod groups, invocation i mod 256 of it; each invocation's max.
    pub fn blocked_max(src: &[f32], groups: u64) -> Vec<f32> {
        let groups = groups as usize;
        let block = super::super::BLOCK as usize;
        let mut out = vec![-3.0e38f32; groups * 256];
        for (i, v) in src.chunks_exact(4).enumerate() {
            let t = (i / block) % groups * 256 + i % 256;
            out[t] = v.iter().copied().fold(out[t], f32::max);
        }
        out
    }

    /// `write_blocked`'s output: word j of the n written holds j.
    pub fn check_written(got: &[u32], n: u64) -> super::Verification {
        let want: Vec<u32> = (0..n as u32).collect();
        super::super::compare_exact("sink", got, &want)
    }

    /// peak_fma's seeds: random multiples of 2⁻⁸ in [0, 1).
    pub fn seeds(rng: &mut impl Rng, threads: u64) -> Vec<f32> {
        (0..threads)
            .map(|_| f32::from(rng.random_range(0u8..=255)) / 256.0)
            .collect()
    }

    /// The shader's result for `seed` after `iters` steps, with every `fma` fused or every one
    /// unfused: start values, `iters` steps per chain, vec4 sum over the chains in chain order,
    /// then `(t.x + t.y) + (t.z + t.w)`.
    pub fn replay(seed: f32, iters: u64, a: f32, b: f32, fused: bool) -> f32 {
        const CHAINS: usize = super::CHAINS as usize;
        const LANES: [f32; 4] = [1.0, 2.0, 3.0, 4.0];
        // x[4·c + lane]: chain c's vec4, as in the shader.
        let mut x = [0f32; 4 * CHAINS];
        for (i, v) in x.iter_mut().enumerate() {
            *v = seed + LANES[i % 4] + (i / 4) as f32 * 0.125;
        }
        if fused {
            for _ in 0..iters {
                for v in &mut x {
                    *v = v.mul_add(a, b);
                }
            }
        } else {
            for _ in 0..iters {
                for v in &mut x {
                    *v = *v * a + b;
                }
            }
        }
        let mut t = [0f32; 4];
        for chain in x.chunks_exact(4) {
            for (t, v) in t.iter_mut().zip(chain) {
                *t += v;
            }
        }
        (t[0] + t[1]) + (t[2] + t[3])
    }

    /// (expected value, absolute tolerance) of one invocation's output.
    pub fn chains(seed: f32, iters: u64, a: f32, b: f32) -> (f64, f64) {
        let fused = replay(seed, iters, a, b, true);
        let unfused = replay(seed, iters, a, b, false);
        let top = fused.max(unfused);
        let ulp = f32::from_bits(top.to_bits() + 1) - top;
        (
            f64::from(fused),
            f64::from((fused - unfused).abs()) + f64::from(SUM_ULPS * ulp),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::reference::{chains, replay};
    use super::*;
    use crate::workload::suite::{instances, Scale, Suite};

    /// Every peak_fma step count a suite runs, plus the integration tests' 1 and 1000.
    fn step_counts() -> Vec<u64> {
        let mut iters = vec![1, 1000];
        for suite in Suite::ALL {
            for scale in [Scale::Tiny, Scale::Small, Scale::Large] {
                for (kernel, params) in instances(suite, scale) {
                    if kernel.name() == "peak_fma" {
                        iters.push(params.get("peak_fma", "iters").unwrap());
                    }
                }
            }
        }
        iters.sort_unstable();
        iters.dedup();
        iters
    }

    /// Seeds at both ends of the range and in between.
    const SEEDS: [f32; 5] = [0.0, 1.0 / 256.0, 0.5, 254.0 / 256.0, 255.0 / 256.0];

    /// How far `got` (fused and unfused) lands from the reference at `seed` and `iters`, in units
    /// of the tolerance: the smaller of the two.
    fn distance(seed: f32, iters: u64, got: impl Fn(bool) -> f32) -> f64 {
        let (want, tol) = chains(seed, iters, A, B);
        [true, false]
            .map(|fused| (f64::from(got(fused)) - want).abs() / tol)
            .into_iter()
            .fold(f64::INFINITY, f64::min)
    }

    #[test]
    fn the_suites_run_the_step_counts_these_tests_cover() {
        assert_eq!(step_counts(), [1, 64, 256, 1000, 1024, 4096]);
    }

    #[test]
    fn one_skipped_step_lands_far_beyond_the_tolerance() {
        // Every seed the kernel can draw: the README promises 11 tolerances at least.
        for iters in step_counts() {
            for seed in (0..256).map(|i| i as f32 / 256.0) {
                let d = distance(seed, iters, |fused| replay(seed, iters - 1, A, B, fused));
                assert!(d > 11.0, "iters {iters}, seed {seed}: {d:.2} tolerances");
            }
        }
    }

    #[test]
    fn the_neighbouring_seed_lands_far_beyond_the_tolerance() {
        // The closest other seed; any other is further (the result grows with the seed).
        for iters in step_counts() {
            for seed in (0..256).map(|i| i as f32 / 256.0) {
                for other in [seed - 1.0 / 256.0, seed + 1.0 / 256.0] {
                    if !(0.0..1.0).contains(&other) {
                        continue;
                    }
                    let d = distance(seed, iters, |fused| replay(other, iters, A, B, fused));
                    assert!(d > 11.0, "iters {iters}, seed {seed} vs {other}: {d:.2}");
                }
            }
        }
    }

    #[test]
    fn the_true_chains_verify_fused_or_not() {
        for iters in step_counts() {
            for seed in SEEDS {
                let d = distance(seed, iters, |fused| replay(seed, iters, A, B, fused));
                assert_eq!(d, 0.0, "iters {iters}, seed {seed}");
                let (want, tol) = chains(seed, iters, A, B);
                let unfused = f64::from(replay(seed, iters, A, B, false));
                assert!((unfused - want).abs() <= tol, "iters {iters}, seed {seed}");
            }
        }
    }

    #[test]
    fn start_values_are_exact_in_any_order() {
        let mut rng = <StdRng as rand::SeedableRng>::seed_from_u64(1);
        let seeds = reference::seeds(&mut rng, 4096);
        for s in seeds {
            assert_eq!(s, (s * 256.0).round() / 256.0);
            assert!((0.0..1.0).contains(&s));
            for lane in [1.0f32, 2.0, 3.0, 4.0] {
                for c in 0..CHAINS {
                    let c = c as f32 * 0.125;
                    let exact = f64::from(s) + f64::from(lane) + f64::from(c);
                    assert_eq!(f64::from(s + lane + c), exact);
                    assert_eq!(f64::from(s + (lane + c)), exact);
                    assert_eq!(f64::from((s + c) + lane), exact);
                }
            }
        }
    }

    /// Every peak_bandwidth pattern against its CPU reference on the adapter gpugate picks
    /// (tests/it/kernels.rs runs only the one the probe picks there): sizes below one vec4 per
    /// invocation, a block with a tail, and ones that wrap the blocked patterns' grid on a CPU
    /// adapter (≤ 256 workgroups) and the strided read's on any (≤ 1024).
    #[test]
    fn every_bandwidth_pattern_matches_its_cpu_reference() {
        let gpu = Gpu::open(&crate::device::AdapterChoice::default())
            .expect("tests need an adapter (CI installs lavapipe)");
        let mut rng = <StdRng as rand::SeedableRng>::seed_from_u64(7);
        let sizes = [
            4,
            8,
            12,
            16,
            20,
            4 * 1001,
            4 * (1024 * 257 + 77),
            4 * (1024 * 256 * 5 + 77),
        ];
        for n in sizes {
            let params = Params::new([("n", n)]);
            for pattern in Pattern::ALL {
                let prepared = gpu
                    .scoped("peak_bandwidth", || {
                        PeakBandwidth.prepare_pattern(&gpu, &params, 2, &mut rng, Some(pattern))
                    })
                    .unwrap();
                let unrun = prepared.verify(&gpu).unwrap();
                assert!(!unrun.ok, "{pattern:?} n={n} passed without running");
                crate::runner::execute_once(&gpu, prepared.as_ref(), 2).unwrap();
                let v = prepared.verify(&gpu).unwrap();
                assert!(v.ok, "{pattern:?} n={n}: {}", v.detail);
                assert!(v.detail.starts_with(pattern.entry_point()), "{}", v.detail);
            }
        }
        // The probe picks one of them and says which.
        let prepared = PeakBandwidth
            .prepare(&gpu, &Params::new([("n", 4 * 1001)]), 1, &mut rng)
            .unwrap();
        crate::runner::execute_once(&gpu, prepared.as_ref(), 1).unwrap();
        let v = prepared.verify(&gpu).unwrap();
        assert!(v.ok, "{}", v.detail);
        assert!(Pattern::ALL
            .iter()
            .any(|p| v.detail.starts_with(p.entry_point())));
    }

    #[test]
    fn replay_work_per_buffer_set_is_bounded() {
        for iters in step_counts() {
            let checked = checked_threads(iters);
            assert!((2..=CHECKED_THREADS).contains(&checked), "iters {iters}");
            assert!(checked * CHAINS * iters <= REPLAY_STEPS, "iters {iters}");
        }
        assert_eq!(checked_threads(4096), 128);
        assert_eq!(checked_threads(1), CHECKED_THREADS);
    }
}
