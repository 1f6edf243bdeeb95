//! The sampler: warm a prepared kernel up to steady state, then time samples with GPU timestamps
//! around each compute pass until the median is known to the noise target.
//!
//! A sample is one compute pass holding `batch` iterations, each on the next buffer set (slot) so
//! that caches are cold when the working set would otherwise fit in them. Sample times are
//! reported per iteration.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::device::Gpu;
use crate::error::{Error, Result};
use crate::stats;
use crate::workload::Prepared;

/// Samples resolved per submission when timing with GPU timestamps.
const CHUNK: u32 = 8;
/// Warm-up is steady when this many consecutive chunk medians agree within `STEADY_TOLERANCE`.
const STEADY_CHUNKS: usize = 3;
const STEADY_TOLERANCE: f64 = 0.02;
/// A run whose discarded timestamp pairs reach this count and exceed a quarter of all pairs it
/// took fails: a rare wrap costs one sample, timestamps that keep going backwards mean no
/// sample can be trusted.
const MIN_DISCARDS_TO_FAIL: u32 = 8;
/// How far apart the last chunk medians may be for warm-up to count as settled: 2 %, or more
/// where the samples themselves are that noisy. The median of 8 samples has an sd of about
/// 0.44·σ (σ ≈ IQR/1.35), and the range of three such medians stays below 1.46·σ ≈ 1.1·IQR in 95 %
/// of chunks of pure noise; 1.5·IQR leaves room for a slightly skewed distribution. A drift (clocks
/// still ramping, caches filling) larger than the noise still keeps warming up.
fn steady_tolerance(chunk_iqr_rel: f64) -> f64 {
    let noise = if chunk_iqr_rel.is_finite() {
        1.5 * chunk_iqr_rel
    } else {
        0.0
    };
    STEADY_TOLERANCE.max(noise)
}

/// A batch never grows beyond this many iterations per sample.
pub const MAX_BATCH: u32 = 4096;
/// Host timing includes submit and wait overhead, so its samples must be much longer.
const HOST_MIN_SAMPLE_S: f64 = 2e-3;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplerConfig {
    /// Stop once the level's 95 % half-width over it is at most this (0.005 = 0.5 %), by both the
    /// median's order-statistic CI and the batch-means interval (see `stats::rel_half_width`).
    pub noise_target: f64,
    pub min_samples: usize,
    pub max_samples: usize,
    /// Cap on measuring time per kernel (warm-up not included).
    pub max_time_s: f64,
    pub warmup_min_s: f64,
    pub warmup_max_s: f64,
    /// A sample should last at least this long; short kernels are batched up to it.
    pub min_sample_s: f64,
    /// Rotate buffer sets until this many bytes are touched, so each iteration starts cache-cold.
    pub cold_bytes: u64,
    pub max_slots: usize,
    /// Seconds one kernel instance may take, GPU waits included, before the run is a fault
    /// (`--deadline`); None = [`SamplerConfig::kernel_deadline`]'s default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_s: Option<f64>,
}

/// The default kernel deadline is this many times the longest warm-up plus the time cap, plus
/// [`KERNEL_DEADLINE_SLACK_S`]: the caps are only checked between chunks, so a kernel may overrun
/// them by a chunk, and prepare and verify come on top; a kernel far past that is hung.
pub const KERNEL_DEADLINE_FACTOR: f64 = 2.0;
pub const KERNEL_DEADLINE_SLACK_S: f64 = 10.0;
/// No deadline is longer than a day (`--deadline`'s bound too).
pub const MAX_DEADLINE_S: f64 = 86_400.0;

impl SamplerConfig {
    /// Defaults for a device: GPUs need a longer warm-up (clocks ramp from idle) and get a
    /// larger cold-cache budget (an H100's L2 is 50 MB).
    pub fn for_device(software: bool) -> Self {
        if software {
            SamplerConfig {
                noise_target: 0.005,
                min_samples: 10,
                max_samples: 300,
                // Between-process noise dominates on a software adapter (run medians 2–45 %
                // apart against a within-run CI under 1 %), so a run buys little with more
                // samples; shorter runs leave time for more of them. No clocks ramp there.
                max_time_s: 1.0,
                warmup_min_s: 0.1,
                // Long enough for a shared 2-core VM to settle: at 0.75 s one run in five of
                // some kernel did not, and an unsteady kernel is never compared.
                warmup_max_s: 2.0,
                min_sample_s: 1e-3,
                cold_bytes: 64 << 20,
                max_slots: 4,
                deadline_s: None,
            }
        } else {
            SamplerConfig {
                noise_target: 0.005,
                min_samples: 10,
                max_samples: 500,
                max_time_s: 3.0,
                warmup_min_s: 0.5,
                warmup_max_s: 5.0,
                min_sample_s: 1e-4,
                cold_bytes: 256 << 20,
                max_slots: 8,
                deadline_s: None,
            }
        }
    }

    /// How long one kernel instance (prepare, warm-up, measuring, verify) may take.
    pub fn kernel_deadline(&self) -> Duration {
        let s = self.deadline_s.unwrap_or(
            KERNEL_DEADLINE_FACTOR * (self.warmup_max_s + self.max_time_s)
                + KERNEL_DEADLINE_SLACK_S,
        );
        // Bounded even for values the options did not bound: never a panic, never forever.
        Duration::try_from_secs_f64(s.min(MAX_DEADLINE_S))
            .unwrap_or(Duration::from_secs_f64(MAX_DEADLINE_S))
    }

    /// How many buffer sets to rotate through for an instance occupying `footprint` bytes.
    pub fn slots_for(&self, footprint: u64) -> usize {
        let wanted = self.cold_bytes.div_ceil(footprint.max(1)) as usize;
        wanted.clamp(1, self.max_slots.max(1))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TimingMethod {
    /// Timestamps written by the GPU at the start and end of the compute pass.
    GpuTimestamp,
    /// Host clock around submit + wait: the fallback where the adapter has no timestamp queries.
    Host,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The level's interval (median CI and batch means) reached the noise target.
    NoiseTarget,
    SampleCap,
    TimeCap,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Warmup {
    pub samples: usize,
    pub seconds: f64,
    /// False when the time cap ended warm-up before timings settled.
    pub steady: bool,
}

/// Raw samples and how they were taken. Statistics are derived elsewhere.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub timing: TimingMethod,
    /// Iterations per sample.
    pub batch: u32,
    /// Buffer sets rotated through.
    pub slots: usize,
    /// Kernel encodes per iteration: 1, except in the test-only slowdown.
    pub repeat: u32,
    pub warmup: Warmup,
    pub stop: StopReason,
    /// Seconds per iteration, in the order taken.
    pub samples_s: Vec<f64>,
    /// Timestamp pairs thrown away (warm-up included) because the pass ended at or before it
    /// started: a counter wrap or reset. 0 for host timing and in older files.
    #[serde(default)]
    pub discarded: u32,
}

/// What to measure: a prepared instance, its slot count, and optional fixed batch (a check reuses
/// the baseline's so both time the same pass shape).
pub struct Job<'a> {
    pub kernel: &'a str,
    pub prepared: &'a dyn Prepared,
    pub slots: usize,
    pub batch: Option<u32>,
    pub repeat: u32,
    /// Timing method to use; None = GPU timestamps where the adapter has them.
    pub timing: Option<TimingMethod>,
}

pub fn measure(gpu: &Gpu, job: &Job<'_>, cfg: &SamplerConfig) -> Result<Measurement> {
    if job.timing == Some(TimingMethod::GpuTimestamp) && !gpu.timestamps {
        return Err(Error::CannotValidate(format!(
            "{} must be timed with GPU timestamps (as its baseline was), and this adapter has no timestamp queries",
            job.kernel
        )));
    }
    let mut timer = Timer::new(gpu, job);
    let min_sample_s = match timer.method() {
        TimingMethod::GpuTimestamp => cfg.min_sample_s,
        TimingMethod::Host => cfg.min_sample_s.max(HOST_MIN_SAMPLE_S),
    };
    let mut batch = job.batch.unwrap_or(1).clamp(1, MAX_BATCH);

    // Warm-up: run chunks until per-iteration medians settle, growing the batch (unless fixed)
    // until a sample is long enough for the timer's resolution.
    let started = Instant::now();
    let mut recent: Vec<f64> = Vec::new();
    // Each chunk's interquartile range over its median: how much chunk medians move by noise alone.
    let mut spread: Vec<f64> = Vec::new();
    let mut warm_samples = 0;
    let steady = loop {
        let times = timer.samples(CHUNK, batch)?;
        warm_samples += times.len();
        // A chunk whose timestamps were all discarded says nothing; the time caps still apply.
        if !times.is_empty() {
            let per_sample = stats::median(&times);
            recent.push(per_sample / f64::from(batch));
            spread.push(stats::iqr_rel(&times));
            if job.batch.is_none() && per_sample < min_sample_s && batch < MAX_BATCH {
                let grow = (min_sample_s / per_sample.max(1e-9)).ceil() as u32;
                batch = batch.saturating_mul(grow.max(2)).min(MAX_BATCH);
                recent.clear(); // a new batch is a new pass shape: settle again
                spread.clear();
                continue;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        if recent.len() >= STEADY_CHUNKS && elapsed >= cfg.warmup_min_s {
            let last = &recent[recent.len() - STEADY_CHUNKS..];
            let (lo, hi) = last
                .iter()
                .fold((f64::MAX, 0.0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            let noise = stats::median(&spread[spread.len() - STEADY_CHUNKS..]);
            if hi / lo - 1.0 <= steady_tolerance(noise) {
                break true;
            }
        }
        if elapsed >= cfg.warmup_max_s {
            tracing::warn!(
                kernel = job.kernel,
                "warm-up did not settle within {:.1} s",
                cfg.warmup_max_s
            );
            break false;
        }
    };
    let warmup = Warmup {
        samples: warm_samples,
        seconds: started.elapsed().as_secs_f64(),
        steady,
    };

    // Measure until the level is known to the noise target, or a cap is hit. The median CI alone
    // assumes independent samples; consecutive ones are correlated, so batch means must agree.
    let started = Instant::now();
    // A cap too large for a Duration is no cap (the kernel deadline still bounds the run).
    let cap = Duration::try_from_secs_f64(cfg.max_time_s).unwrap_or(Duration::MAX);
    let mut samples: Vec<f64> = Vec::new();
    let stop = loop {
        let times = timer.samples(CHUNK, batch)?;
        samples.extend(times.iter().map(|t| t / f64::from(batch)));
        if samples.len() >= cfg.min_samples && stats::rel_half_width(&samples) <= cfg.noise_target {
            break StopReason::NoiseTarget;
        }
        if samples.len() >= cfg.max_samples {
            break StopReason::SampleCap;
        }
        if started.elapsed() >= cap && samples.len() >= cfg.min_samples.min(cfg.max_samples) {
            break StopReason::TimeCap;
        }
    };
    if timer.discarded > 0 {
        tracing::warn!(
            kernel = job.kernel,
            discarded = timer.discarded,
            taken = timer.taken,
            "GPU timestamp pairs that did not advance were discarded"
        );
    }
    Ok(Measurement {
        timing: timer.method(),
        batch,
        slots: job.slots,
        repeat: job.repeat,
        warmup,
        stop,
        samples_s: samples,
        discarded: timer.discarded,
    })
}

/// Seconds per pass from resolved (start, end) tick pairs, and how many pairs were discarded
/// because the end is not after the start (a counter wrap or reset: no duration can be read
/// from such a pair, and one bad pair should not cost the run).
fn pass_seconds(ticks: &[u64], period_ns: f64) -> (Vec<f64>, u32) {
    let mut out = Vec::with_capacity(ticks.len() / 2);
    let mut discarded = 0u32;
    for pair in ticks.chunks_exact(2) {
        if pair[1] <= pair[0] {
            discarded = discarded.saturating_add(1);
        } else {
            out.push((pair[1] - pair[0]) as f64 * period_ns * 1e-9);
        }
    }
    (out, discarded)
}

/// Whether a run's timestamps are too unreliable to go on: at least `MIN_DISCARDS_TO_FAIL`
/// discarded pairs and more than a quarter of all pairs taken. Checked after every chunk, so a
/// timer that always goes backwards fails after its first chunk instead of looping.
fn timestamps_unreliable(discarded: u32, taken: u32) -> bool {
    discarded >= MIN_DISCARDS_TO_FAIL && u64::from(discarded) * 4 > u64::from(taken)
}

/// Encodes samples and times them, with GPU timestamps where the adapter has them.
struct Timer<'a> {
    gpu: &'a Gpu,
    job: &'a Job<'a>,
    queries: Option<Queries>,
    next_slot: usize,
    /// Timestamp pairs read, and those of them discarded, over the whole run.
    taken: u32,
    discarded: u32,
}

struct Queries {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    period_ns: f64,
}

impl<'a> Timer<'a> {
    fn new(gpu: &'a Gpu, job: &'a Job<'a>) -> Self {
        let use_timestamps = gpu.timestamps && job.timing != Some(TimingMethod::Host);
        let queries = use_timestamps.then(|| {
            let bytes = u64::from(2 * CHUNK) * 8;
            Queries {
                set: gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("sampler.timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2 * CHUNK,
                }),
                resolve: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("sampler.resolve"),
                    size: bytes,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                }),
                readback: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("sampler.readback"),
                    size: bytes,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
                period_ns: f64::from(gpu.queue.get_timestamp_period()),
            }
        });
        Timer {
            gpu,
            job,
            queries,
            next_slot: 0,
            taken: 0,
            discarded: 0,
        }
    }

    fn method(&self) -> TimingMethod {
        if self.queries.is_some() {
            TimingMethod::GpuTimestamp
        } else {
            TimingMethod::Host
        }
    }

    fn gpu_err(&self, reason: String) -> Error {
        Error::Gpu {
            kernel: self.job.kernel.to_string(),
            reason,
        }
    }

    /// Record one sample: a compute pass of `batch` iterations.
    fn encode_sample(&mut self, encoder: &mut wgpu::CommandEncoder, batch: u32, index: u32) {
        let timestamp_writes = self
            .queries
            .as_ref()
            .map(|q| wgpu::ComputePassTimestampWrites {
                query_set: &q.set,
                beginning_of_pass_write_index: Some(2 * index),
                end_of_pass_write_index: Some(2 * index + 1),
            });
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(self.job.kernel),
            timestamp_writes,
        });
        for _ in 0..batch {
            for _ in 0..self.job.repeat {
                self.job.prepared.encode(&mut pass, self.next_slot);
            }
            self.next_slot = (self.next_slot + 1) % self.job.slots;
        }
    }

    /// Seconds taken by each of `count` samples of `batch` iterations; with timestamps, fewer
    /// when pairs were discarded (see `pass_seconds`), and an error once they are unreliable.
    fn samples(&mut self, count: u32, batch: u32) -> Result<Vec<f64>> {
        if self.queries.is_none() {
            return (0..count).map(|_| self.host_sample(batch)).collect();
        }
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        for i in 0..count {
            self.encode_sample(&mut encoder, batch, i);
        }
        let q = self.queries.as_ref().expect("checked above");
        encoder.resolve_query_set(&q.set, 0..2 * count, &q.resolve, 0);
        encoder.copy_buffer_to_buffer(&q.resolve, 0, &q.readback, 0, u64::from(2 * count) * 8);
        self.gpu.queue.submit([encoder.finish()]);
        let bytes = self.gpu.read_mapped(self.job.kernel, &q.readback)?;
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
        let ticks = &ticks[..ticks.len().min(2 * count as usize)];
        let (out, discarded) = pass_seconds(ticks, q.period_ns);
        self.taken = self.taken.saturating_add((ticks.len() / 2) as u32);
        self.discarded = self.discarded.saturating_add(discarded);
        if timestamps_unreliable(self.discarded, self.taken) {
            return Err(self.gpu_err(format!(
                "GPU timestamps are unreliable: {} of {} timestamp pairs ended at or before \
                 they started and were discarded",
                self.discarded, self.taken
            )));
        }
        Ok(out)
    }

    fn host_sample(&mut self, batch: u32) -> Result<f64> {
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        self.encode_sample(&mut encoder, batch, 0);
        let start = Instant::now();
        self.gpu.queue.submit([encoder.finish()]);
        self.gpu.wait(self.job.kernel)?;
        Ok(start.elapsed().as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_tolerance_follows_the_samples_noise() {
        assert_eq!(steady_tolerance(0.0), STEADY_TOLERANCE);
        assert_eq!(steady_tolerance(f64::NAN), STEADY_TOLERANCE);
        assert!((steady_tolerance(0.04) - 0.06).abs() < 1e-12);
        // Pure noise: three medians of 8 normal samples stay within the allowance ≥ 95 % of the time.
        use rand::SeedableRng;
        use rand_distr::{Distribution, Normal};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let noise = Normal::new(1.0, 0.05).unwrap();
        let trials = 4000;
        let settled = (0..trials)
            .filter(|_| {
                let chunks: Vec<Vec<f64>> = (0..STEADY_CHUNKS)
                    .map(|_| (0..CHUNK).map(|_| noise.sample(&mut rng)).collect())
                    .collect();
                let medians: Vec<f64> = chunks.iter().map(|c| stats::median(c)).collect();
                let spread: Vec<f64> = chunks.iter().map(|c| stats::iqr_rel(c)).collect();
                let (lo, hi) = medians
                    .iter()
                    .fold((f64::MAX, 0.0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                hi / lo - 1.0 <= steady_tolerance(stats::median(&spread))
            })
            .count();
        assert!(settled as f64 / trials as f64 >= 0.95, "{settled}/{trials}");
    }

    #[test]
    fn kernel_deadlines_follow_the_caps_and_stay_bounded() {
        let mut cfg = SamplerConfig::for_device(true);
        // 2 × (2 s warm-up + 1 s cap) + 10 s.
        assert_eq!(cfg.kernel_deadline(), Duration::from_secs(16));
        cfg.max_time_s = 0.3;
        assert_eq!(cfg.kernel_deadline(), Duration::from_secs_f64(14.6));
        cfg.deadline_s = Some(2.0);
        assert_eq!(cfg.kernel_deadline(), Duration::from_secs(2));
        let day = Duration::from_secs_f64(MAX_DEADLINE_S);
        for huge in [1e300, f64::INFINITY, f64::NAN] {
            cfg.deadline_s = None;
            cfg.max_time_s = huge;
            assert_eq!(cfg.kernel_deadline(), day, "max_time_s {huge}");
            cfg.deadline_s = Some(huge);
            assert_eq!(cfg.kernel_deadline(), day, "deadline_s {huge}");
        }
    }

    #[test]
    fn pairs_that_do_not_advance_are_discarded() {
        // 1 ns ticks: 100 ns, a wrap (end < start), a stall (end = start), 300 ns.
        let ticks = [1000, 1100, u64::MAX - 5, 10, 7, 7, 2000, 2300];
        let (seconds, discarded) = pass_seconds(&ticks, 1.0);
        assert_eq!(discarded, 2);
        assert_eq!(seconds, vec![100.0 * 1e-9, 300.0 * 1e-9]);
        let (seconds, discarded) = pass_seconds(&[5, 5, 9, 1], 1.0);
        assert!(seconds.is_empty());
        assert_eq!(discarded, 2);
        assert_eq!(pass_seconds(&[], 1.0), (vec![], 0));
        // A trailing odd tick is no pair.
        assert_eq!(pass_seconds(&[1, 3, 4], 2.0), (vec![2.0 * 2.0 * 1e-9], 0));
    }

    #[test]
    fn a_run_fails_only_when_many_and_more_than_a_quarter_are_discarded() {
        // Rare wraps cost a sample each.
        assert!(!timestamps_unreliable(0, 8));
        assert!(!timestamps_unreliable(7, 8)); // a bad first chunk, but fewer than 8
        assert!(!timestamps_unreliable(8, 32)); // exactly a quarter
        assert!(!timestamps_unreliable(100, 400));
        // A timer that always goes backwards fails on its first full chunk.
        assert!(timestamps_unreliable(8, 8));
        assert!(timestamps_unreliable(9, 32));
        assert!(timestamps_unreliable(101, 400));
        assert!(timestamps_unreliable(u32::MAX, u32::MAX));
    }
}
