//! The gate as a library: measure, compare with this device's baseline, decide — and `run`,
//! `record`, the first-run bootstrap and `calibrate`, which share its measuring. Options are plain
//! types (no clap, no printing): `cli` maps arguments onto them and prints the [`Report`]; `serve`
//! maps its configuration onto them.
//!
//! A check is two rounds, each of fresh child processes. Round 1 (`runs`) judges every kernel;
//! kernels that look slower than half their threshold are suspects and are re-measured in
//! `confirm_runs` new processes; a suspect's verdict comes from that confirmation round alone
//! (rounds are never pooled, never repeated). Regressions must then survive Holm's step-down at
//! the suite's α over every kernel judged ([`compare::holm`]).

mod calibrate;
mod compare_reports;
mod profile;
mod record;

use std::collections::BTreeMap;
use std::path::PathBuf;

pub use calibrate::{calibrate, CalibrateOptions};
pub use compare_reports::{compare_reports, CompareOptions, MIN_COMPARE_RUNS};
pub use profile::{parse_axis, profile, ProfileOptions, MAX_SWEEP_POINTS};
pub(crate) use record::detectable;
pub use record::{bootstrap, record, BootstrapOptions, RecordOptions};

use crate::baseline::{self, Baseline, BaselineKernel};
use crate::compare::{
    self, Comparison, Design, DriverPolicy, GateOutcome, Judged, Model, Policy, Reason, Require,
    RunMedians, Verdict,
};
use crate::device::{AdapterChoice, Gpu, ShaderChecks};
use crate::error::{exit, Error, Result};
use crate::report::{self, CheckPolicy, DriverChange, Report, Row, Unsupported};
use crate::runner::{self, KernelResult, Plan, PlanItem, RunResult};
use crate::sampler::{SamplerConfig, TimingMethod};
use crate::telemetry;
use crate::workload::{self, suite, suite::Suite};

/// Runs a check makes by default, each in a fresh process.
pub const DEFAULT_CHECK_RUNS: usize = baseline::DEFAULT_CHECK_RUNS;
/// Fewest check runs: a check estimates its own run-to-run spread, and one process in an odd
/// speed mode must not decide a verdict alone.
pub const MIN_CHECK_RUNS: usize = 3;
/// Runs of the confirmation round, made only for suspects: more than round 1, because only a few
/// kernels need them and they decide the verdict (the noise margin shrinks by √(1/10 + 1/5) vs
/// √(1/10 + 1/3)).
pub const DEFAULT_CONFIRM_RUNS: usize = 5;

/// How kernels are measured, for every command.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MeasureOptions {
    /// Only these kernels (empty = all of the suite or baseline).
    pub kernels: Vec<String>,
    /// Stop sampling once the median's 95 % CI half-width is within this percentage.
    pub noise_target_pct: Option<f64>,
    /// Cap on measuring seconds per kernel and run.
    pub max_time_s: Option<f64>,
    /// Seconds one kernel may take before the run is a fault; None = the sampler's default.
    pub deadline_s: Option<f64>,
    /// Timing method; None = GPU timestamps where available (a check uses its baseline's).
    pub timing: Option<TimingMethod>,
    /// Test only: encode KERNEL this many times per iteration.
    pub slowdown: BTreeMap<String, u32>,
}

/// The gate's options.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckOptions {
    /// Directory of baselines (the file is picked by device key), or one file.
    pub baselines: PathBuf,
    /// Practical threshold in percent for every kernel (overrides the file's).
    pub threshold_pct: Option<f64>,
    /// Practical threshold in percent per kernel name.
    pub kernel_threshold_pct: BTreeMap<String, f64>,
    pub runs: usize,
    pub confirm_runs: usize,
    /// Suite-wide false-alarm rate.
    pub alpha: f64,
    pub require: Require,
    pub on_driver_change: DriverPolicy,
    pub measure: MeasureOptions,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            baselines: PathBuf::from("baselines"),
            threshold_pct: None,
            kernel_threshold_pct: BTreeMap::new(),
            runs: DEFAULT_CHECK_RUNS,
            confirm_runs: DEFAULT_CONFIRM_RUNS,
            alpha: compare::DEFAULT_ALPHA,
            require: Require::All,
            on_driver_change: DriverPolicy::Warn,
            measure: MeasureOptions::default(),
        }
    }
}

impl CheckOptions {
    /// Everything checkable before a device is opened, with errors naming the option.
    pub fn validate(&self) -> Result<()> {
        at_least("--runs", self.runs, MIN_CHECK_RUNS)?;
        if self.confirm_runs != 0 && self.confirm_runs < MIN_CHECK_RUNS {
            // A confirmation decides a suspect's verdict alone: as many processes as round 1 needs.
            return Err(Error::Usage(format!(
                "--confirm-runs {}: 0 (no confirmation round) or at least {MIN_CHECK_RUNS}",
                self.confirm_runs
            )));
        }
        if let Some(t) = self.threshold_pct.filter(|t| !(*t > 0.0 && t.is_finite())) {
            return Err(Error::Usage(format!(
                "--threshold {t}: expected a positive percentage"
            )));
        }
        for (kernel, pct) in &self.kernel_threshold_pct {
            workload::find(kernel)?;
            if !(*pct > 0.0 && pct.is_finite()) {
                return Err(Error::Usage(format!(
                    "--kernel-threshold {kernel}={pct}: expected a positive percentage"
                )));
            }
        }
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            return Err(Error::Usage(format!(
                "--alpha {}: expected a probability in (0, 0.5)",
                self.alpha
            )));
        }
        self.measure.validate()
    }

    /// The threshold for one kernel: per-kernel option, global option, file per-kernel, file,
    /// default.
    fn threshold(&self, base: &Baseline, k: &BaselineKernel) -> f64 {
        self.kernel_threshold_pct
            .get(&k.kernel)
            .copied()
            .or(self.threshold_pct)
            .or(k.threshold_pct)
            .or(base.threshold_pct)
            .map_or(compare::DEFAULT_THRESHOLD, |p| p / 100.0)
    }

    /// The decision rule's policy for one kernel: its threshold at the suite's α.
    fn policy(&self, base: &Baseline, k: &BaselineKernel) -> Policy {
        Policy {
            threshold: self.threshold(base, k),
            alpha: self.alpha,
        }
    }

    /// The smallest slowdown a check made with these options detects with 95 % power for kernel
    /// `k` (noise `model`), judged in a suite of `family` kernels.
    fn detectable(
        &self,
        base: &Baseline,
        k: &BaselineKernel,
        model: &Model,
        family: usize,
    ) -> Option<f64> {
        let design = Design {
            check_runs: self.runs,
            confirm_runs: self.confirm_runs,
            family,
        };
        compare::detectable_slowdown(
            model,
            design,
            self.policy(base, k),
            compare::DETECTION_POWER,
        )
    }
}

impl MeasureOptions {
    pub fn validate(&self) -> Result<()> {
        for k in self.kernels.iter().chain(self.slowdown.keys()) {
            workload::find(k)?;
        }
        if let Some(pct) = self.noise_target_pct {
            if !(pct > 0.0 && pct < 100.0) {
                return Err(Error::Usage(format!(
                    "--noise-target {pct}: expected a percentage in (0, 100)"
                )));
            }
        }
        if let Some(s) = self.max_time_s {
            // Bounded, so the sampler's Duration::from_secs_f64 cannot panic.
            if !(s > 0.0 && s <= crate::baseline::MAX_TIME_S) {
                return Err(Error::Usage(format!(
                    "--max-time {s}: expected seconds in (0, {}]",
                    crate::baseline::MAX_TIME_S
                )));
            }
        }
        if let Some(s) = self.deadline_s {
            if !(s > 0.0 && s <= crate::sampler::MAX_DEADLINE_S) {
                return Err(Error::Usage(format!(
                    "--deadline {s}: expected seconds in (0, {}]",
                    crate::sampler::MAX_DEADLINE_S
                )));
            }
        }
        Ok(())
    }

    fn sampler(&self, gpu: &Gpu) -> SamplerConfig {
        let mut cfg = SamplerConfig::for_device(gpu.is_software());
        if let Some(pct) = self.noise_target_pct {
            cfg.noise_target = pct / 100.0;
        }
        if let Some(s) = self.max_time_s {
            cfg.max_time_s = s;
        }
        cfg.deadline_s = self.deadline_s;
        cfg
    }

    fn repeat(&self, kernel: &str) -> u32 {
        self.slowdown.get(kernel).copied().unwrap_or(1).max(1)
    }
}

fn at_least(flag: &str, value: usize, min: usize) -> Result<()> {
    if value < min {
        return Err(Error::Usage(format!(
            "{flag} {value}: at least {min} needed"
        )));
    }
    Ok(())
}

/// The shader mode whose hash of today's `kernel` is `hash`, when the baseline recorded this very
/// code in some mode.
fn recorded_mode(kernel: &dyn workload::Kernel, hash: &str) -> Option<ShaderChecks> {
    [ShaderChecks::Trusted, ShaderChecks::Checked]
        .into_iter()
        .find(|m| workload::kernel_hash(kernel, *m) == hash)
}

/// The gate: measure, compare with this device's baseline, decide. `check`, `serve` and
/// `calibrate` all validate through this one path; every run is a fresh child process.
pub fn check(choice: &AdapterChoice, opts: &CheckOptions) -> Result<Report> {
    opts.validate()?;
    let gpu = Gpu::open(choice)?;
    let fingerprint = gpu.fingerprint.clone();
    let identity = gpu.identity();
    let key = fingerprint.device_key();
    let (path, base) = baseline::for_device(&opts.baselines, &key)?;
    let mut notes = vec![];
    if base.fingerprint.cpu_model != fingerprint.cpu_model {
        notes.push("host CPU differs from the baseline's".into());
    }

    let mut chosen: Vec<(usize, &BaselineKernel)> = Vec::new();
    let mut unsupported = Vec::new();
    let mut changed = Vec::new();
    for (i, k) in base.kernels.iter().enumerate() {
        let Ok(kernel) = workload::find(&k.kernel) else {
            return Err(Error::baseline(
                &path,
                format!("kernels[{i}].kernel"),
                format!("unknown kernel {:?}", k.kernel),
            ));
        };
        if !opts.measure.kernels.is_empty() && !opts.measure.kernels.contains(&k.kernel) {
            continue;
        }
        if let Some(t) = opts.measure.timing.filter(|t| *t != k.timing) {
            return Err(Error::baseline(
                &path,
                format!("kernels[{i}].timing"),
                format!(
                    "{} was recorded with {:?} timing; --timing {t:?} would measure it \
                     differently: drop --timing or re-record",
                    k.key, k.timing
                ),
            ));
        }
        // Sizes the file asks for must fit this device, refused before anything is allocated.
        workload::fits_device(&gpu, kernel, &k.params)
            .map_err(|e| Error::baseline(&path, format!("kernels[{i}].params"), e.to_string()))?;
        match supported(&gpu, kernel, &k.params) {
            Err(u) => unsupported.push(u),
            // Only code that would run here must be what the baseline measured.
            Ok(()) => match &k.kernel_hash {
                Some(h) if *h != workload::kernel_hash(kernel, gpu.shader_checks) => {
                    changed.push((k.key.clone(), recorded_mode(kernel, h)))
                }
                _ => chosen.push((i, k)),
            },
        }
    }
    for name in &opts.measure.kernels {
        if !base.kernels.iter().any(|k| &k.kernel == name) {
            return Err(Error::Usage(format!(
                "--kernel {name}: not in baseline {}",
                path.display()
            )));
        }
    }
    if !changed.is_empty() {
        let keys: Vec<&str> = changed.iter().map(|(k, _)| k.as_str()).collect();
        // Same code compiled the other way: the flag, not the kernel, differs.
        let hint = match changed.iter().find_map(|(_, mode)| *mode) {
            Some(mode) => format!(
                "; it was recorded with --shader-checks {mode}: check with that flag, or \
                 re-record with --shader-checks {}",
                gpu.shader_checks
            ),
            None => String::new(),
        };
        return Err(Error::CannotValidate(format!(
            "kernel changed: re-record: the WGSL or pipeline options of {} differ from what \
             {} measured, so its times describe other code{hint}",
            keys.join(", "),
            path.display()
        )));
    }
    // Per kernel: its times describe the drivers its own sessions were recorded with (one
    // re-recorded kernel must not vouch for the others).
    let current_driver = fingerprint.driver_string();
    let mut recorded: Vec<String> = chosen
        .iter()
        .map(|(_, k)| base.drivers_of(k))
        .filter(|drivers| !drivers.contains(&current_driver))
        .flatten()
        .collect();
    recorded.sort();
    recorded.dedup();
    let driver_change = (!recorded.is_empty()).then(|| DriverChange {
        baseline: recorded.join(" / "),
        current: current_driver.clone(),
        policy: opts.on_driver_change,
    });
    if let Some(d) = &driver_change {
        notes.push(format!(
            "driver differs from the baseline's: recorded with {:?}, running {:?} \
             (--on-driver-change {})",
            d.baseline,
            d.current,
            d.policy.as_str()
        ));
    }
    if chosen.iter().any(|(_, k)| k.kernel_hash.is_none()) {
        notes.push(
            "baseline predates kernel hashes (file version 1): a rewritten kernel cannot be told \
             from a slower node; re-record to protect against that"
                .into(),
        );
    }
    let item = |k: &BaselineKernel| PlanItem {
        kernel: k.kernel.clone(),
        params: k.params.clone(),
        batch: Some(k.batch),
        slots: Some(k.slots),
        timing: Some(k.timing),
        repeat: opts.measure.repeat(&k.kernel),
    };
    let sampler = opts.measure.sampler(&gpu);
    drop(gpu); // children open their own device
    let plan = Plan {
        items: chosen.iter().map(|(_, k)| item(k)).collect(),
        sampler: sampler.clone(),
    };
    let results = measure_fresh(choice, &key, &plan, opts.runs)?;
    let same_way = |results: &[RunResult], kernels: &[(usize, &BaselineKernel)]| {
        same_as_baseline(&path, results, kernels)
    };
    same_way(&results, &chosen)?;

    // Round 1: every kernel. Each kernel's noise model is fitted once, for both rounds and its
    // detectable slowdown.
    let models: Vec<Model> = chosen.iter().map(|(_, k)| k.model()).collect();
    let judge = |results: &[RunResult], j: usize, chosen_index: usize| -> Comparison {
        let per_run: Vec<_> = results.iter().map(|r| &r.kernels[j]).collect();
        let current = RunMedians::from_summaries(per_run.iter().map(|r| &r.summary));
        let k = chosen[chosen_index].1;
        let mut c = compare::compare(&models[chosen_index], &current, opts.policy(&base, k));
        if let Some((reason, why)) = unfit(&per_run) {
            c.set_inconclusive(reason, why);
        }
        c
    };
    let mut rows = rows(&results, |j| Some(judge(&results, j, j)));
    let round1: Vec<Comparison> = rows
        .iter_mut()
        .map(|r| r.comparison.take().expect("every check row is judged"))
        .collect();

    // Round 2: suspects only, in fresh processes; then Holm over the suite.
    let mut confirmation_runs = vec![];
    let mut suspects = vec![];
    let judged = compare::two_rounds(round1, opts.confirm_runs, opts.alpha, |picked| {
        suspects = picked.to_vec();
        tracing::info!(
            suspects = picked.len(),
            runs = opts.confirm_runs,
            "confirming suspected regressions in fresh processes"
        );
        let kernels: Vec<(usize, &BaselineKernel)> = picked.iter().map(|&j| chosen[j]).collect();
        let plan = Plan {
            items: kernels.iter().map(|(_, k)| item(k)).collect(),
            sampler: sampler.clone(),
        };
        let again = measure_fresh(choice, &key, &plan, opts.confirm_runs)?;
        same_way(&again, &kernels)?;
        let confirmed = self::rows(&again, |s| Some(judge(&again, s, picked[s])));
        // A suspect's row shows what decided it: the confirmation round's measurements.
        for (s, &j) in picked.iter().enumerate() {
            let (row, again) = (&mut rows[j], &confirmed[s]);
            row.median_s = again.median_s;
            row.rate = again.rate;
            row.iqr_rel = again.iqr_rel;
            row.steady = again.steady;
            if !again.verification.ok {
                row.verification = again.verification.clone();
            }
        }
        confirmation_runs = again;
        Ok::<_, Error>(
            confirmed
                .into_iter()
                .map(|r| r.comparison.expect("every check row is judged"))
                .collect(),
        )
    })?;
    let family = judged.len();
    for (j, (row, judgement)) in rows.iter_mut().zip(judged).enumerate() {
        row.screening = judgement.screening;
        row.comparison = Some(judgement.comparison);
        // Judged, but never silently: a throttled GPU is a finding about the node.
        let k = chosen[j].1;
        let recorded: Vec<_> = k.runs.iter().filter_map(|r| r.telemetry.clone()).collect();
        row.throttled = results
            .iter()
            .chain(&confirmation_runs)
            .filter_map(|r| r.kernels.iter().find(|x| x.key == k.key))
            .find_map(|x| telemetry::throttled_unlike(&recorded, &x.telemetry));
    }
    for (j, row) in rows.iter_mut().enumerate() {
        row.verdict = if !row.verification.ok {
            Verdict::WrongResult
        } else {
            row.comparison.as_ref().map_or(Verdict::Pass, |c| c.verdict)
        };
        row.detectable_ratio = opts.detectable(&base, chosen[j].1, &models[j], family);
        row.baseline_run_medians_s = chosen[j].1.summaries().map(|s| s.median_s).collect();
    }
    let ceilings = check_ceilings(&rows, &base);
    notes.extend(report::apply_peaks(&mut rows, &ceilings));
    let mut outcome = compare::gate(&judged_rows(&rows), opts.require);
    if let Some(d) = driver_change
        .as_ref()
        .filter(|d| d.policy == DriverPolicy::Fail)
    {
        if outcome.exit_code == exit::PASS {
            outcome.verdict = Verdict::Inconclusive;
            outcome.exit_code = exit::CANNOT_VALIDATE;
        }
        outcome.message = format!(
            "{}; driver changed ({} → {}) and --on-driver-change fail: re-record the baseline \
             for this driver",
            outcome.message, d.baseline, d.current
        );
    }
    note_unsupported(&mut outcome, &unsupported);
    Ok(Report {
        schema_version: report::REPORT_SCHEMA_VERSION,
        command: "check".into(),
        device_key: Some(key),
        fingerprint: Some(fingerprint),
        gpu: identity,
        shader_checks: results.iter().find_map(|r| r.shader_checks),
        finished_at: Some(chrono::Utc::now()),
        error: None,
        baseline_file: Some(path.display().to_string()),
        notes,
        outcome,
        rows,
        unsupported,
        ceilings,
        bootstrap: None,
        calibration: None,
        compared: None,
        sweep: None,
        driver_change,
        policy: Some(CheckPolicy {
            runs: opts.runs,
            confirm_runs: opts.confirm_runs,
            alpha: opts.alpha,
            family,
            require_conclusive: opts.require.to_string(),
            suspects: suspects.iter().map(|&j| chosen[j].1.key.clone()).collect(),
        }),
        runs: results,
        confirmation_runs,
    })
}

/// Why one kernel's runs cannot be compared whatever their times: another process used the GPU
/// around a run (contended), or a run's warm-up did not settle (unsteady).
fn unfit(per_run: &[&KernelResult]) -> Option<(Reason, String)> {
    if let Some(why) = per_run
        .iter()
        .find_map(|r| telemetry::contended(&r.telemetry))
    {
        return Some((
            Reason::Contended,
            format!("the GPU was busy with other work around a run, so it is not judged: {why}"),
        ));
    }
    per_run
        .iter()
        .position(|r| !r.measurement.warmup.steady)
        .map(|n| {
            (
                Reason::Unsteady,
                format!(
                    "run {} of {}: warm-up did not settle, so its times are not comparable",
                    n + 1,
                    per_run.len()
                ),
            )
        })
}

/// Each row's final word, as [`compare::gate`] takes it.
fn judged_rows(rows: &[Row]) -> Vec<Judged> {
    rows.iter()
        .map(|r| Judged {
            key: r.key.clone(),
            verdict: r.verdict,
            reason: r.comparison.as_ref().and_then(|c| c.inconclusive),
        })
        .collect()
}

/// A check's ceilings: measured where the peak kernels were checked, else the baseline's (a
/// check filtered with --kernel still shows % of peak).
fn check_ceilings(rows: &[Row], base: &Baseline) -> Vec<report::Ceiling> {
    let mut ceilings = report::measured_ceilings(rows);
    for unit in [workload::Unit::Bandwidth, workload::Unit::Flops] {
        if ceilings.iter().any(|c| c.unit == unit) {
            continue;
        }
        let best = base
            .kernels
            .iter()
            .filter(|k| Some(k.kernel.as_str()) == report::peak_kernel(unit))
            .map(|k| (k, k.unit.rate(k.work, k.median_s)))
            .filter(|(_, rate)| rate.is_finite() && *rate > 0.0)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((k, rate)) = best {
            ceilings.push(report::Ceiling {
                unit,
                key: k.key.clone(),
                rate,
                source: report::CeilingSource::Baseline,
            });
        }
    }
    ceilings
}

/// Every run measured each kernel as its baseline did (batch, slots, timing); else exit 2
/// naming the kernel and the field.
fn same_as_baseline(
    path: &std::path::Path,
    results: &[RunResult],
    kernels: &[(usize, &BaselineKernel)],
) -> Result<()> {
    for run in results {
        for (r, (i, k)) in run.kernels.iter().zip(kernels) {
            if let Some((field, now, then)) = baseline::unlike(&r.measurement, k.measured_as()) {
                return Err(Error::baseline(
                    path,
                    format!("kernels[{i}].{field}"),
                    format!(
                        "{}: measured with {field} {now}, the baseline with {then}",
                        k.key
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `gpugate run`'s options.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOptions {
    pub suite: Suite,
    pub runs: usize,
    pub measure: MeasureOptions,
}

/// Measure and verify, no baseline: correctness only.
pub fn run(choice: &AdapterChoice, opts: &RunOptions) -> Result<Report> {
    at_least("--runs", opts.runs, 1)?;
    opts.measure.validate()?;
    let gpu = Gpu::open(choice)?;
    let (mut plan, unsupported) = suite_plan(&gpu, opts.suite, &opts.measure)?;
    let chosen = plan.items.len();
    plan.items
        .extend(ceiling_items(&gpu, opts.suite, &opts.measure, &plan)?);
    let mut report = measure_with_ceilings(choice, gpu, "run", &plan, chosen, opts.runs)?;
    note_unsupported(&mut report.outcome, &unsupported);
    report.unsupported = unsupported;
    Ok(report)
}

/// Measure `plan` — its first `chosen` items the report's rows, the rest ceiling kernels (see
/// [`ceiling_items`]) — in this process for one run, else in `runs` fresh processes; a
/// `command` report judged for correctness only, with % of peak from the ceilings and a note for
/// a ceiling kernel that computed a wrong result.
fn measure_with_ceilings(
    choice: &AdapterChoice,
    gpu: Gpu,
    command: &str,
    plan: &Plan,
    chosen: usize,
    runs: usize,
) -> Result<Report> {
    let fingerprint = gpu.fingerprint.clone();
    let identity = gpu.identity();
    let results = if runs == 1 || plan.items.is_empty() {
        vec![runner::run_in_process(&gpu, plan)?]
    } else {
        let key = fingerprint.device_key();
        drop(gpu); // children open their own device
        measure_fresh(choice, &key, plan, runs)?
    };
    let mut rows = rows(&results, |_| None);
    let ceilings = report::measured_ceilings(&rows);
    let extra = rows.split_off(chosen);
    let above_ceiling = report::apply_peaks(&mut rows, &ceilings);
    let outcome = correctness_outcome(&rows);
    let mut report = Report::new(command, fingerprint, outcome, rows, vec![], results);
    report.gpu = identity;
    report.notes = above_ceiling;
    report.ceilings = ceilings;
    for row in extra.iter().filter(|r| !r.verification.ok) {
        report.notes.push(format!(
            "ceiling kernel {} computed a wrong result ({}), so no % of peak is shown for its unit",
            row.key, row.verification.detail
        ));
    }
    Ok(report)
}

/// The peak kernels that `--kernel` left out of a plan but its kernels' units need for % of
/// peak: measured after the chosen kernels, reported as ceilings rather than rows.
pub(crate) fn ceiling_items(
    gpu: &Gpu,
    suite: Suite,
    opts: &MeasureOptions,
    plan: &Plan,
) -> Result<Vec<PlanItem>> {
    if opts.kernels.is_empty() {
        return Ok(vec![]);
    }
    let mut wanted = vec![];
    for item in &plan.items {
        let unit = workload::find(&item.kernel)?.unit();
        if let Some(peak) = report::peak_kernel(unit) {
            if !opts.kernels.iter().any(|k| k == peak) && !wanted.contains(&peak) {
                wanted.push(peak);
            }
        }
    }
    let mut items = vec![];
    for (k, params) in suite::instances(suite, suite::Scale::of(gpu)) {
        if wanted.contains(&k.name()) && supported(gpu, k, &params).is_ok() {
            items.push(PlanItem {
                kernel: k.name().to_string(),
                repeat: 1,
                params,
                batch: None,
                slots: None,
                timing: opts.timing,
            });
        }
    }
    Ok(items)
}

/// Measure `plan` `runs` times in fresh child processes, which must all pick device `key`.
/// An empty plan measures nothing and yields one empty run per process.
fn measure_fresh(
    choice: &AdapterChoice,
    key: &str,
    plan: &Plan,
    runs: usize,
) -> Result<Vec<RunResult>> {
    let results = runner::run_in_children(choice, plan, runs)?;
    if let Some(other) = results.iter().find(|r| r.device_key != key) {
        return Err(Error::Usage(format!(
            "a child run chose adapter {:?}, not {key:?}; pin it with --adapter",
            other.device_key
        )));
    }
    Ok(results)
}

/// The kernel, or why this adapter cannot run it.
fn supported(
    gpu: &Gpu,
    kernel: &'static dyn workload::Kernel,
    params: &workload::Params,
) -> std::result::Result<(), Unsupported> {
    match kernel.unsupported(gpu) {
        None => Ok(()),
        Some(reason) => Err(Unsupported {
            key: workload::instance_key(kernel.name(), params),
            kernel: kernel.name().to_string(),
            reason,
        }),
    }
}

/// The suite's instances this adapter can run, as a plan, and those it cannot.
fn suite_plan(gpu: &Gpu, suite: Suite, opts: &MeasureOptions) -> Result<(Plan, Vec<Unsupported>)> {
    let mut items = vec![];
    let mut unsupported = vec![];
    for (k, params) in suite::select(suite, suite::Scale::of(gpu), &opts.kernels)? {
        if let Err(u) = supported(gpu, k, &params) {
            unsupported.push(u);
            continue;
        }
        items.push(PlanItem {
            kernel: k.name().to_string(),
            repeat: opts.repeat(k.name()),
            params,
            batch: None,
            slots: None,
            timing: opts.timing,
        });
    }
    let plan = Plan {
        items,
        sampler: opts.sampler(gpu),
    };
    Ok((plan, unsupported))
}

/// Say in the outcome what was left out, so a reader never takes it for a pass.
fn note_unsupported(outcome: &mut GateOutcome, unsupported: &[Unsupported]) {
    if !unsupported.is_empty() {
        outcome.message = format!(
            "{}; {} kernel(s) unsupported on this adapter, left out",
            outcome.message,
            unsupported.len()
        );
    }
}

/// Rows from the current runs: per instance, the run medians' centre, verification over all runs.
fn rows(results: &[RunResult], mut judge: impl FnMut(usize) -> Option<Comparison>) -> Vec<Row> {
    let Some(first) = results.first() else {
        return vec![];
    };
    first
        .kernels
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let per_run: Vec<_> = results.iter().map(|r| &r.kernels[i]).collect();
            let current = RunMedians::from_summaries(per_run.iter().map(|r| &r.summary));
            let verification = per_run
                .iter()
                .map(|r| &r.verification)
                .find(|v| !v.ok)
                .unwrap_or(&k.verification)
                .clone();
            let comparison = judge(i);
            let verdict = if !verification.ok {
                Verdict::WrongResult
            } else {
                comparison.as_ref().map_or(Verdict::Pass, |c| c.verdict)
            };
            let median_s = current.center_s();
            Row {
                key: k.key.clone(),
                kernel: k.kernel.clone(),
                params: k.params.clone(),
                unit: k.unit,
                median_s,
                p95_s: per_run.iter().map(|r| r.summary.p95_s).fold(0.0, f64::max),
                rate: k.unit.rate(k.work, median_s),
                pct_of_peak: None,
                intensity: k.work.intensity(),
                iqr_rel: per_run
                    .iter()
                    .map(|r| r.summary.iqr_rel)
                    .fold(0.0, f64::max),
                timing: k.measurement.timing,
                stop: k.measurement.stop,
                steady: per_run.iter().all(|r| r.measurement.warmup.steady),
                verification,
                screening: None,
                comparison,
                baseline_run_medians_s: vec![],
                detectable_ratio: None,
                throttled: None,
                verdict,
            }
        })
        .collect()
}

/// Outcome of a run or record: only correctness is judged.
fn correctness_outcome(rows: &[Row]) -> GateOutcome {
    let wrong: Vec<&str> = rows
        .iter()
        .filter(|r| !r.verification.ok)
        .map(|r| r.key.as_str())
        .collect();
    let (verdict, exit_code, message) = match (rows.len(), wrong.len()) {
        (0, _) => (
            Verdict::Inconclusive,
            exit::CANNOT_VALIDATE,
            "no kernel ran".to_string(),
        ),
        (n, 0) => (
            Verdict::Pass,
            exit::PASS,
            format!("{n} kernel(s) measured and verified"),
        ),
        (_, w) => (
            Verdict::WrongResult,
            exit::FAIL,
            format!(
                "{w} kernel(s) computed a wrong result: {}",
                wrong.join(", ")
            ),
        ),
    };
    GateOutcome {
        verdict,
        exit_code,
        message,
        inconclusive: vec![],
    }
}
