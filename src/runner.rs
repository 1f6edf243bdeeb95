//! Runs a plan of kernel instances: prepare → measure → verify → summarise, one instance at a time.
//!
//! Several independent runs are made in separate child processes (`gpugate measure-child`), because
//! within-process noise is not the whole noise: on an H100 a kernel's time was seen to differ by
//! 1.8× between processes while steady within each. A baseline and a check built from separate
//! processes see that variance instead of being fooled by it.

use std::io::{BufReader, Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::device::{AdapterChoice, Fingerprint, Gpu, ShaderChecks};
use crate::error::{exit, Error, Result};
use crate::progress;
use crate::sampler::{self, Measurement, SamplerConfig, TimingMethod};
use crate::stats::{self, Summary};
use crate::telemetry::{Probe, Telemetry};
use crate::workload::{self, instance_key, Params, Unit, Verification, Work};

/// One kernel instance to measure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanItem {
    pub kernel: String,
    pub params: Params,
    /// Fixed iterations per sample (a check reuses the baseline's); None = size it here.
    #[serde(default)]
    pub batch: Option<u32>,
    /// Test-only: encode the kernel this many times per iteration — real extra work, counted once.
    #[serde(default = "one")]
    pub repeat: u32,
    /// Timing method (a check reuses the baseline's); None = GPU timestamps where available.
    #[serde(default)]
    pub timing: Option<TimingMethod>,
    /// Buffer sets to rotate through (a check reuses the baseline's); None = size them here.
    #[serde(default)]
    pub slots: Option<usize>,
}

impl PlanItem {
    /// Measure the way `result` was measured: same batch, slots and timing.
    pub fn fixed_like(&mut self, result: &KernelResult) {
        self.batch = Some(result.measurement.batch);
        self.slots = Some(result.measurement.slots);
        self.timing = Some(result.measurement.timing);
    }
}

fn one() -> u32 {
    1
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub items: Vec<PlanItem>,
    pub sampler: SamplerConfig,
}

/// Everything measured about one kernel instance in one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelResult {
    pub kernel: String,
    pub params: Params,
    pub key: String,
    /// [`workload::kernel_hash`] of the code that ran.
    #[serde(default)]
    pub kernel_hash: String,
    pub unit: Unit,
    pub work: Work,
    pub verification: Verification,
    pub measurement: Measurement,
    pub summary: Summary,
    /// NVML's view of the GPU just before and after this kernel was measured (or why none).
    #[serde(default)]
    pub telemetry: Telemetry,
}

impl KernelResult {
    /// GB/s or GFLOP/s at the median.
    pub fn rate(&self) -> f64 {
        self.unit.rate(self.work, self.summary.median_s)
    }
}

/// One run: one process, one device, every instance of the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub fingerprint: Fingerprint,
    pub device_key: String,
    pub gpugate_version: String,
    pub seed: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// How the kernels were compiled (absent in runs written before the mode existed: checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shader_checks: Option<ShaderChecks>,
    pub kernels: Vec<KernelResult>,
}

/// Test-only fault injection, read by the process that measures (a measurement child, or `run`
/// with one run): `panic`, `abort`, `kill` (SIGKILL, as the OOM killer sends), `stop` (SIGSTOP),
/// `hang` (sleep forever) or `lose-device` (destroy the device before the first kernel). The
/// fault tests use it to prove each one ends as exit 4 within its deadline; nothing else sets it.
/// `worker-panic` is serve's (see `serve::Fault`) and leaves the runner alone.
pub const TEST_FAULT_ENV: &str = "GPUGATE_TEST_FAULT";

fn inject_test_fault(gpu: &Gpu) {
    let Ok(fault) = std::env::var(TEST_FAULT_ENV) else {
        return;
    };
    if fault == "worker-panic" {
        return;
    }
    tracing::warn!("{TEST_FAULT_ENV}={fault}: injecting a fault for a test");
    let signal_self = |signal: &str| {
        // The `kill` utility keeps this test hook free of a libc dependency.
        let _ = Command::new("kill")
            .args([signal, &std::process::id().to_string()])
            .status();
    };
    match fault.as_str() {
        "panic" => panic!("{TEST_FAULT_ENV}=panic: injected panic"),
        "abort" => std::process::abort(),
        "kill" => signal_self("-KILL"),
        "stop" => signal_self("-STOP"),
        "hang" => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        "lose-device" => gpu.lose_for_test(),
        other => tracing::warn!("{TEST_FAULT_ENV}={other}: unknown fault, none injected"),
    }
}

/// How long one run of `plan` may take: every kernel's deadline plus [`RUN_DEADLINE_SLACK_S`].
/// A measurement child still running past it is killed and the run is a fault.
pub fn run_deadline(plan: &Plan) -> Duration {
    let kernels =
        plan.sampler.kernel_deadline() * u32::try_from(plan.items.len()).unwrap_or(u32::MAX);
    kernels.saturating_add(Duration::from_secs_f64(RUN_DEADLINE_SLACK_S))
}

/// Per run, for starting a process, opening the device (a driver's first open and NVML's init can
/// take seconds each) and handing the result back.
pub const RUN_DEADLINE_SLACK_S: f64 = 30.0;

/// Run the plan in this process on an opened device. Each kernel instance runs within its
/// deadline ([`SamplerConfig::kernel_deadline`]): a GPU wait past it is an [`Error::Fault`].
pub fn run_in_process(gpu: &Gpu, plan: &Plan) -> Result<RunResult> {
    inject_test_fault(gpu);
    let started_at = Utc::now();
    let seed = rand::random::<u64>();
    let mut rng = StdRng::seed_from_u64(seed);
    tracing::debug!(seed, "input seed");
    let mut kernels = Vec::new();
    // Opened once per process, outside any timed section (NVML's init can take seconds).
    let probe = Probe::open(&gpu.info.device_pci_bus_id);
    let (_bars, progress) = progress::this_process(plan.items.len());
    for (index, item) in plan.items.iter().enumerate() {
        let kernel = workload::find(&item.kernel)?;
        let key = instance_key(kernel.name(), &item.params);
        progress.start(index + 1, plan.items.len(), &key);
        if let Some(reason) = kernel.unsupported(gpu) {
            return Err(Error::CannotValidate(format!(
                "{key} is unsupported on this adapter: {reason}"
            )));
        }
        let slots = match item.slots {
            Some(slots) => slots,
            None => plan.sampler.slots_for(kernel.footprint(&item.params)?),
        };
        gpu.check_lost(&key)?;
        tracing::info!(%key, slots, "measuring");
        let deadline = Instant::now() + plan.sampler.kernel_deadline();
        // Buffers live only while their instance is measured, so one kernel's memory is not
        // another's neighbour.
        let prepared = gpu.within(deadline, || {
            gpu.scoped(&key, || kernel.prepare(gpu, &item.params, slots, &mut rng))
        })?;
        let job = sampler::Job {
            kernel: kernel.name(),
            prepared: prepared.as_ref(),
            slots,
            batch: item.batch,
            repeat: item.repeat.max(1),
            timing: item.timing,
        };
        let before = probe.sample();
        let (measurement, verification) = gpu.within(deadline, || {
            gpu.scoped(&key, || {
                let measurement = sampler::measure(gpu, &job, &plan.sampler)?;
                Ok((measurement, prepared.verify(gpu)?))
            })
        })?;
        let telemetry = probe.telemetry(before, probe.sample());
        if !verification.ok {
            tracing::error!(%key, detail = %verification.detail, "wrong result");
        }
        let summary = stats::summarize(&measurement.samples_s);
        kernels.push(KernelResult {
            kernel: kernel.name().to_string(),
            params: item.params.clone(),
            key,
            kernel_hash: workload::kernel_hash(kernel, gpu.shader_checks),
            unit: kernel.unit(),
            work: kernel.work(&item.params)?,
            verification,
            measurement,
            summary,
            telemetry,
        });
    }
    Ok(RunResult {
        device_key: gpu.fingerprint.device_key(),
        fingerprint: gpu.fingerprint.clone(),
        gpugate_version: env!("CARGO_PKG_VERSION").to_string(),
        seed,
        started_at,
        finished_at: Utc::now(),
        shader_checks: Some(gpu.shader_checks),
        kernels,
    })
}

/// Run the plan `runs` times, each in a fresh child process of this executable. What the plan
/// leaves open (batch, slots, timing) the first run decides, and every later run measures the
/// same way: runs that are compared must time the same pass shape.
pub fn run_in_children(choice: &AdapterChoice, plan: &Plan, runs: usize) -> Result<Vec<RunResult>> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Usage(format!("cannot find own executable: {e}")))?;
    let mut plan = plan.clone();
    let mut input = serde_json::to_vec(&plan).expect("a plan serialises");
    let mut results: Vec<RunResult> = Vec::with_capacity(runs);
    let started = std::time::Instant::now();
    let bars = progress::runs(runs, plan.items.len());
    for run in 1..=runs {
        // Runs take seconds on a GPU and tens of seconds on lavapipe. Where bars show that
        // (a terminal), the log line is for the debug log; elsewhere it is the progress.
        let done = run - 1;
        let left = (done > 0).then(|| {
            let per_run = started.elapsed().as_secs_f64() / done as f64;
            let secs = (per_run * (runs - done) as f64).round() as u64;
            humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
        });
        let line = format!(
            "independent run {run}/{runs}, in a fresh process{}",
            left.map_or(String::new(), |l| format!("; about {l} left"))
        );
        let kernels = bars.start(run);
        if kernels.wanted() {
            tracing::debug!("{line}");
        } else {
            tracing::info!("{line}");
        }
        let mut cmd = Command::new(&exe);
        cmd.arg("measure-child");
        if let Some(name) = &choice.name_contains {
            cmd.args(["--adapter", name]);
        }
        if let Some(backend) = &choice.backend {
            cmd.args(["--backend", backend]);
        }
        if let Some(gpu) = &choice.gpu {
            cmd.args(["--gpu", gpu]);
        }
        cmd.args(["--shader-checks", choice.shader_checks.name()]);
        // With bars drawn, the child reports its kernels on its stderr, which is read here.
        let stderr = if kernels.wanted() {
            cmd.env(progress::CHILD_ENV, "1");
            Stdio::piped()
        } else {
            Stdio::inherit()
        };
        let deadline = run_deadline(&plan);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| Error::ChildRun {
                run,
                code: exit::CANNOT_VALIDATE,
                reason: format!("spawn {}: {e}", exe.display()),
            })?;
        let fault = |reason: String| Error::Fault {
            what: format!("measurement run {run}/{runs}"),
            reason,
        };
        let output = wait_child(&mut child, &input, deadline, kernels).map_err(fault)?;
        if let Some(reason) = killed_or_panicked(output.status) {
            return Err(fault(reason));
        }
        if !output.status.success() {
            let code = output.status.code().map_or(exit::FAULT, |c| c as u8);
            return Err(Error::ChildRun {
                run,
                code,
                reason: format!("child exited with {}", output.status),
            });
        }
        let result: RunResult = serde_json::from_slice(&output.stdout)
            .map_err(|e| fault(format!("unreadable result: {e}")))?;
        let expected: Vec<String> = plan
            .items
            .iter()
            .map(|i| instance_key(&i.kernel, &i.params))
            .collect();
        let got: Vec<&String> = result.kernels.iter().map(|k| &k.key).collect();
        if got.len() != expected.len() || got.iter().zip(&expected).any(|(g, e)| *g != e) {
            return Err(fault(format!(
                "the result names kernels {got:?}, the plan {expected:?}"
            )));
        }
        if run == 1 {
            for (item, measured) in plan.items.iter_mut().zip(&result.kernels) {
                item.fixed_like(measured);
            }
            input = serde_json::to_vec(&plan).expect("a plan serialises");
        }
        results.push(result);
    }
    Ok(results)
}

struct ChildOutput {
    status: ExitStatus,
    stdout: Vec<u8>,
}

/// Send `input` to a started child, collect its stdout and wait for it to exit, for at most
/// `limit`; past it the child is killed (a hung or stopped child) and the error says so. A piped
/// stderr carries the child's progress to `kernels`, its other lines to this stderr.
fn wait_child(
    child: &mut std::process::Child,
    input: &[u8],
    limit: Duration,
    kernels: progress::Kernels,
) -> std::result::Result<ChildOutput, String> {
    use wait_timeout::ChildExt;
    // Write and read on threads: a child that stops before reading all its plan, or a result
    // larger than the pipe's buffer, would otherwise block this thread past any deadline.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stdout.read_to_end(&mut bytes).map(|_| bytes)
    });
    // Read to the end whatever happens to the lines, so the child never blocks on this pipe.
    let forwarder = child.stderr.take().map(|stderr| {
        std::thread::spawn(move || progress::forward_child_stderr(BufReader::new(stderr), &kernels))
    });
    let waited = child
        .wait_timeout(limit)
        .map_err(|e| format!("waiting for the child: {e}"))?;
    let Some(status) = waited else {
        // SIGKILL ends a stopped (SIGSTOP) child too.
        let _ = child.kill();
        let _ = child.wait();
        // The pipes closed with the child: both threads end. The stderr forwarder is not
        // waited for: it writes to this process's stderr, which may itself be stuck.
        let _ = (writer.join(), reader.join());
        drop(forwarder);
        return Err(format!(
            "still running after its deadline of {} (every kernel's deadline, see --deadline, \
             plus {RUN_DEADLINE_SLACK_S} s): killed it",
            humantime::format_duration(Duration::from_secs(limit.as_secs()))
        ));
    };
    let stdout = reader
        .join()
        .map_err(|_| "the reader of the child's output panicked".to_string())?
        .map_err(|e| format!("reading the child's result: {e}"))?;
    // Every line the child wrote is passed on before its result is used.
    if let Some(forwarder) = forwarder {
        let _ = forwarder.join();
    }
    // A child that died early closed its stdin; then its exit status says why.
    let sent = writer
        .join()
        .map_err(|_| "the writer of the child's plan panicked".to_string())?;
    if let Err(e) = sent {
        if status.success() {
            return Err(format!("sending the plan: {e}"));
        }
    }
    Ok(ChildOutput { status, stdout })
}

/// Why a child's exit is a fault rather than a verdict: killed by a signal (SIGKILL is what the
/// OOM killer sends) or a panic (Rust's exit status 101; gpugate's own panics exit 4).
fn killed_or_panicked(status: ExitStatus) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = match signal {
                6 => " (SIGABRT)",
                9 => " (SIGKILL, as the OOM killer sends)",
                11 => " (SIGSEGV)",
                15 => " (SIGTERM)",
                _ => "",
            };
            return Some(format!("the child was killed by signal {signal}{name}"));
        }
    }
    (status.code() == Some(101)).then(|| "the child panicked (exit status 101)".to_string())
}

/// Run one iteration on every buffer set, untimed: a correctness-only pass.
pub fn execute_once(gpu: &Gpu, prepared: &dyn workload::Prepared, slots: usize) -> Result<()> {
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        for slot in 0..slots {
            prepared.encode(&mut pass, slot);
        }
    }
    gpu.queue.submit([encoder.finish()]);
    gpu.wait("execute_once")
}
