//! Baseline files: `baselines/<device-key>.json`, one per device, schema-versioned, human-diffable.
//!
//! A baseline keeps each independent run's raw samples, so a later gpugate can re-test them with
//! different statistics. Files are validated on load; every error names the file and the field.

pub mod inspect;
pub mod pool;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::compare::{Mode, Model, RunMedians};
use crate::device::Fingerprint;
use crate::error::{Error, Result};
use crate::runner::{KernelResult, RunResult};
use crate::sampler::{Measurement, StopReason, TimingMethod, Warmup};
use crate::stats::{self, Summary};
use crate::telemetry::{Telemetry, TelemetrySource};
use crate::workload::{instance_key, Params, Unit, Work};

/// Version 2 added sessions, kernel hashes, speed modes and per-run warm-up; version-1 files are
/// still read (their runs become one session, their kernels carry no hash).
pub const SCHEMA_VERSION: u32 = 2;
/// The oldest file format this gpugate reads.
pub const OLDEST_SCHEMA_VERSION: u32 = 1;
/// Run-to-run noise cannot be estimated from fewer runs.
pub const MIN_RUNS: usize = 2;
/// Most buffer sets a file may ask a check to rotate through (the samplers use at most 8): every
/// set is allocated, so the bound keeps a doctored file from exhausting memory.
pub const MAX_SLOTS: usize = 64;
/// Runs `record` makes by default. With five, a device whose processes fall into two speed modes
/// (reported for an H100 by a probe outside this repository; lavapipe shows it too) lands all
/// runs in one mode 6 % of the time, and a later process in the other mode then looks like a
/// regression; with ten, 0.2 %.
pub const DEFAULT_RUNS: usize = 10;
/// Runs a `check` makes by default, each in a fresh process: against 10 baseline runs, three
/// shrink the noise margin by a third compared with one (√(1/10 + 1/3) vs √(1/10 + 1)), and one
/// process in an odd speed mode no longer decides the verdict alone.
pub const DEFAULT_CHECK_RUNS: usize = 3;
/// Threshold written into a new baseline for a software adapter (lavapipe): on shared 2-core VMs
/// run medians spread 5–35 % and whole processes settle at speeds up to 2× apart
/// (docs/performance.md), so nothing near 5 % could ever be conclusive there.
pub const SOFTWARE_THRESHOLD_PCT: f64 = 100.0;
/// The `note` a new software-adapter baseline carries, saying why its threshold is what it is.
pub const SOFTWARE_NOTE: &str =
    "Software Vulkan (lavapipe): timings are CPU timings, and on shared \
    VMs processes settle at speeds up to 2x apart while steady within themselves (run-median sd \
    5-35 % measured). This baseline gates wrong results and gross (2x) slowdowns only; performance \
    gating at 5 % belongs to GPU baselines.";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    pub schema_version: u32,
    pub device_key: String,
    pub fingerprint: Fingerprint,
    pub gpugate_version: String,
    pub recorded_at: DateTime<Utc>,
    /// Practical threshold in percent for every kernel of this file, unless a kernel sets its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_pct: Option<f64>,
    /// Why the thresholds are what they are (e.g. measured CI noise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Recording sessions, in order: `record` makes one, each `record --append` adds one. A
    /// run's `session` indexes this list.
    #[serde(default)]
    pub sessions: Vec<Session>,
    pub kernels: Vec<BaselineKernel>,
}

/// One `record` (or `record --append`): when, by which gpugate, on which driver.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    pub recorded_at: DateTime<Utc>,
    pub gpugate_version: String,
    pub driver: String,
    /// The node that recorded it ([`node_name`]): a pooled baseline
    /// ([`pool::pool`]) keeps each node's sessions apart. Absent in files from before pooling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// This machine's node name: `NODE_NAME` (Kubernetes sets it from the downward API, as for
/// dcgm-exporter), else the kernel's host name; None when neither is known.
pub fn node_name() -> Option<String> {
    let named = |n: String| Some(n.trim().to_string()).filter(|n| !n.is_empty());
    std::env::var("NODE_NAME")
        .ok()
        .and_then(named)
        .or_else(|| named(std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?))
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineKernel {
    pub key: String,
    pub kernel: String,
    pub params: Params,
    pub unit: Unit,
    pub work: Work,
    /// How, with how many iterations per sample and over how many buffer sets every run was
    /// measured; a check measures the same way.
    pub timing: TimingMethod,
    pub batch: u32,
    pub slots: usize,
    /// `sha256:` of the WGSL source and pipeline options that were measured
    /// ([`crate::workload::kernel_hash`]); a check refuses a kernel whose code changed since.
    /// Absent only in version-1 files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_pct: Option<f64>,
    /// Median of the run medians, their relative spread and their speed modes (when more than
    /// one): for readers, recomputed from the runs at load and rejected when they disagree.
    pub median_s: f64,
    pub between_run_rel_sd: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modes: Vec<Mode>,
    pub runs: Vec<BaselineRun>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineRun {
    pub recorded_at: DateTime<Utc>,
    /// Index into [`Baseline::sessions`].
    #[serde(default)]
    pub session: u32,
    pub stop: StopReason,
    /// Absent in version-1 files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<Warmup>,
    /// Clocks, throttle reasons and other processes around the run, where NVML was present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<Telemetry>,
    pub summary: Summary,
    pub samples_s: Vec<f64>,
}

/// The first way `m` was measured unlike `(batch, slots, timing)`: the field, its value in `m`,
/// and the expected one. Runs that are compared must time the same pass shape the same way.
pub fn unlike(
    m: &Measurement,
    (batch, slots, timing): (u32, usize, TimingMethod),
) -> Option<(&'static str, String, String)> {
    if m.batch != batch {
        Some(("batch", m.batch.to_string(), batch.to_string()))
    } else if m.slots != slots {
        Some(("slots", m.slots.to_string(), slots.to_string()))
    } else if m.timing != timing {
        Some(("timing", format!("{:?}", m.timing), format!("{timing:?}")))
    } else {
        None
    }
}

impl BaselineKernel {
    /// How every run of this kernel was measured: batch, slots, timing.
    pub fn measured_as(&self) -> (u32, usize, TimingMethod) {
        (self.batch, self.slots, self.timing)
    }

    pub fn summaries(&self) -> impl Iterator<Item = &Summary> {
        self.runs.iter().map(|r| &r.summary)
    }

    /// The noise model the gate judges this kernel by: modes, sessions, run-to-run variance.
    pub fn model(&self) -> Model {
        let sessions: Vec<u32> = self.runs.iter().map(|r| r.session).collect();
        Model::fit(&RunMedians::from_summaries(self.summaries()), &sessions)
    }

    /// The readers' summaries of `runs`: median of run medians, their log sd, their modes (what
    /// `load` checks a file's stored values against).
    pub fn summarise_runs(&mut self) {
        let medians: Vec<f64> = self.runs.iter().map(|r| r.summary.median_s).collect();
        self.median_s = stats::median(&medians);
        self.between_run_rel_sd = stats::log_sd(&medians).unwrap_or(0.0);
        let modes = self.model().modes();
        self.modes = if modes.len() > 1 { modes } else { vec![] };
    }
}

impl Baseline {
    /// The drivers `kernel`'s runs were recorded with (several after `record --append`).
    pub fn drivers_of(&self, kernel: &BaselineKernel) -> Vec<String> {
        let mut drivers: Vec<String> = kernel
            .runs
            .iter()
            .map(|r| {
                self.sessions
                    .get(r.session as usize)
                    .map_or_else(|| self.fingerprint.driver_string(), |s| s.driver.clone())
            })
            .collect();
        drivers.sort();
        drivers.dedup();
        drivers
    }

    /// The session a new recording on `fingerprint` becomes.
    fn new_session(&mut self, fingerprint: &Fingerprint, gpugate_version: &str) -> u32 {
        self.sessions.push(Session {
            recorded_at: Utc::now(),
            gpugate_version: gpugate_version.to_string(),
            driver: fingerprint.driver_string(),
            node: node_name(),
        });
        (self.sessions.len() - 1) as u32
    }
}

/// Build a baseline from independent runs of the same plan on this device.
pub fn from_runs(runs: &[RunResult]) -> Result<Baseline> {
    let first = runs
        .first()
        .ok_or_else(|| Error::Usage("no runs to record".into()))?;
    if runs.len() < MIN_RUNS {
        return Err(Error::Usage(format!(
            "a baseline needs at least {MIN_RUNS} independent runs to know its run-to-run noise"
        )));
    }
    let mut kernels = Vec::new();
    for (i, k) in first.kernels.iter().enumerate() {
        let per_run: Vec<_> = runs.iter().map(|r| &r.kernels[i]).collect();
        let m = &k.measurement;
        let alike = (m.batch, m.slots, m.timing);
        for r in &per_run {
            let odd = unlike(&r.measurement, alike).or_else(|| {
                (r.kernel_hash != k.kernel_hash)
                    .then(|| ("kernel_hash", r.kernel_hash.clone(), k.kernel_hash.clone()))
            });
            if let Some((field, now, first)) = odd {
                return Err(Error::CannotValidate(format!(
                    "{}: runs measured differently ({field} {now}, the first run's {first}): a \
                     baseline's runs must be alike",
                    k.key
                )));
            }
        }
        let mut kernel = BaselineKernel {
            key: k.key.clone(),
            kernel: k.kernel.clone(),
            params: k.params.clone(),
            unit: k.unit,
            work: k.work,
            timing: m.timing,
            batch: m.batch,
            slots: m.slots,
            kernel_hash: Some(k.kernel_hash.clone()),
            threshold_pct: None,
            median_s: 0.0,
            between_run_rel_sd: 0.0,
            modes: vec![],
            runs: baseline_runs(runs, &per_run, 0)?,
        };
        kernel.summarise_runs();
        kernels.push(kernel);
    }
    let mut baseline = Baseline {
        schema_version: SCHEMA_VERSION,
        device_key: first.device_key.clone(),
        fingerprint: first.fingerprint.clone(),
        gpugate_version: first.gpugate_version.clone(),
        recorded_at: Utc::now(),
        threshold_pct: None,
        note: None,
        sessions: vec![],
        kernels,
    };
    baseline.new_session(&first.fingerprint, &first.gpugate_version);
    Ok(baseline)
}

/// Why a measured run must not become part of a baseline: the gate would refuse to judge it
/// (a warm-up that did not settle, a GPU shared with other processes), so it must not set the
/// norm either.
pub fn unfit(kr: &KernelResult) -> Option<String> {
    if !kr.measurement.warmup.steady {
        return Some("warm-up did not settle".into());
    }
    crate::telemetry::contended(&kr.telemetry)
}

/// The runs of one kernel fit for a baseline; an error when fewer than [`MIN_RUNS`] are.
fn baseline_runs(
    runs: &[RunResult],
    per_run: &[&KernelResult],
    session: u32,
) -> Result<Vec<BaselineRun>> {
    let kept: Vec<BaselineRun> = runs
        .iter()
        .zip(per_run)
        .filter(|(_, kr)| unfit(kr).is_none())
        .map(|(run, kr)| BaselineRun {
            recorded_at: run.finished_at,
            session,
            stop: kr.measurement.stop,
            warmup: Some(kr.measurement.warmup.clone()),
            telemetry: matches!(kr.telemetry.source, TelemetrySource::Nvml { .. })
                .then(|| kr.telemetry.clone()),
            summary: kr.summary.clone(),
            samples_s: kr.measurement.samples_s.clone(),
        })
        .collect();
    if kept.len() < MIN_RUNS {
        let key = per_run.first().map_or("?", |k| k.key.as_str());
        return Err(Error::CannotValidate(format!(
            "{key}: only {} of {} runs settled on an uncontended GPU; a baseline needs {MIN_RUNS}: \
             record again on a quiet node, or with more --runs",
            kept.len(),
            per_run.len()
        )));
    }
    Ok(kept)
}

/// Add a later session's runs (`record --append`) to the kernels they measured, keeping
/// sessions apart so the gate can measure session-to-session variance. Every run must have been
/// measured as the baseline's kernel was (batch, slots, timing, kernel hash).
pub fn append(mut base: Baseline, runs: &[RunResult]) -> Result<Baseline> {
    let first = runs
        .first()
        .ok_or_else(|| Error::Usage("no runs to append".into()))?;
    let session = base.new_session(&first.fingerprint, &first.gpugate_version);
    for (i, k) in first.kernels.iter().enumerate() {
        let per_run: Vec<_> = runs.iter().map(|r| &r.kernels[i]).collect();
        let Some(kernel) = base.kernels.iter_mut().find(|b| b.key == k.key) else {
            return Err(Error::Usage(format!("{}: not in the baseline", k.key)));
        };
        for r in &per_run {
            let odd = unlike(&r.measurement, kernel.measured_as()).or_else(|| {
                kernel
                    .kernel_hash
                    .as_ref()
                    .filter(|h| **h != r.kernel_hash)
                    .map(|h| ("kernel_hash", r.kernel_hash.clone(), h.clone()))
            });
            if let Some((field, now, then)) = odd {
                return Err(Error::CannotValidate(format!(
                    "{}: the new runs were measured differently from the baseline's ({field} \
                     {now}, the baseline's {then})",
                    k.key
                )));
            }
        }
        kernel.runs.extend(baseline_runs(runs, &per_run, session)?);
        kernel.summarise_runs();
    }
    base.schema_version = SCHEMA_VERSION;
    Ok(base)
}

/// Merge a fresh recording into an existing file for the same device: re-recorded kernels are
/// replaced, others kept; hand-set thresholds and the note survive.
pub fn merge(old: Baseline, mut new: Baseline) -> Baseline {
    let old_thresholds: BTreeMap<_, _> = old
        .kernels
        .iter()
        .map(|k| (k.key.clone(), k.threshold_pct))
        .collect();
    // The new runs become the merged file's newest session.
    let session = old.sessions.len().max(1) as u32;
    for k in &mut new.kernels {
        k.threshold_pct = old_thresholds.get(&k.key).copied().flatten();
        for run in &mut k.runs {
            run.session = session;
        }
    }
    let mut sessions = if old.sessions.is_empty() {
        vec![v1_session(&old)]
    } else {
        old.sessions.clone()
    };
    sessions.append(&mut new.sessions);
    let mut kept: Vec<_> = old
        .kernels
        .into_iter()
        .filter(|o| !new.kernels.iter().any(|n| n.key == o.key))
        .collect();
    kept.append(&mut new.kernels);
    new.kernels = kept;
    new.threshold_pct = old.threshold_pct;
    new.note = old.note;
    new.sessions = sessions;
    new
}

/// The one session a version-1 file held.
fn v1_session(b: &Baseline) -> Session {
    Session {
        recorded_at: b.recorded_at,
        gpugate_version: b.gpugate_version.clone(),
        driver: b.fingerprint.driver_string(),
        node: None,
    }
}

/// Where the baseline for `device_key` lives: `DIR/<key>.json`, or the file given.
pub fn locate(path: &Path, device_key: &str) -> Result<PathBuf> {
    if path.is_dir() {
        let file = path.join(format!("{device_key}.json"));
        if file.is_file() {
            return Ok(file);
        }
        let have = std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()?
                            .strip_suffix(".json")
                            .map(String::from)
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        return Err(Error::NoBaseline {
            key: device_key.to_string(),
            searched: path.to_path_buf(),
            have: if have.is_empty() {
                "none".into()
            } else {
                have.join(", ")
            },
        });
    }
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    Err(Error::Usage(format!(
        "--baselines {}: no such file or directory",
        path.display()
    )))
}

/// Read and validate a baseline file.
pub fn load(path: &Path) -> Result<Baseline> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // Check the schema version first, so an old or future file says so instead of failing on
    // whichever field changed.
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::baseline(path, "(document)", format!("not valid JSON: {e}")))?;
    match value.get("schema_version").and_then(|v| v.as_u64()) {
        Some(v) if (u64::from(OLDEST_SCHEMA_VERSION)..=u64::from(SCHEMA_VERSION)).contains(&v) => {}
        Some(v) => {
            return Err(Error::baseline(
                path,
                "schema_version",
                format!(
                    "is {v}; this gpugate reads versions {OLDEST_SCHEMA_VERSION} to \
                     {SCHEMA_VERSION}: re-record the baseline"
                ),
            ))
        }
        None => {
            return Err(Error::baseline(
                path,
                "schema_version",
                "missing or not an integer",
            ))
        }
    }
    // From the text, not the `Value`: a `Value` keeps the last of two equal keys, whereas the
    // derived structs (and `Params`) refuse a key given twice ("duplicate field `batch`").
    let mut baseline: Baseline = serde_path_to_error::deserialize(
        &mut serde_json::Deserializer::from_str(&text),
    )
    .map_err(|e| {
        let mut field = e.path().to_string();
        let reason = e.into_inner().to_string();
        // serde reports a repeated key at its parent: name the key itself.
        let repeated = ["duplicate field `", "duplicate parameter `"]
            .iter()
            .find_map(|p| reason.strip_prefix(p)?.split_once('`'));
        if let Some((key, _)) = repeated {
            field = if field == "." {
                key.to_string()
            } else {
                format!("{field}.{key}")
            };
        }
        Error::baseline(path, field, reason)
    })?;
    validate(&baseline).map_err(|(field, reason)| Error::baseline(path, field, reason))?;
    if baseline.sessions.is_empty() {
        // Version 1: every run was one recording.
        baseline.sessions = vec![v1_session(&baseline)];
    }
    // What the gate uses is what the samples give, including fields a stored summary lacks
    // (version 1 had no autocorrelation-aware error); `validate` showed the rest agrees.
    for k in &mut baseline.kernels {
        for run in &mut k.runs {
            run.summary = stats::summarize(&run.samples_s);
        }
    }
    Ok(baseline)
}

/// Shortest time a file may hold: no kernel iteration takes under a nanosecond, and a time of
/// 5e-324 s would make every ratio against it infinite.
pub const MIN_TIME_S: f64 = 1e-9;
/// Longest: an hour per iteration is far past any cap a run measures under.
pub const MAX_TIME_S: f64 = 3600.0;

fn positive(field: String, v: f64) -> Result<(), (String, String)> {
    if (MIN_TIME_S..=MAX_TIME_S).contains(&v) {
        Ok(())
    } else {
        Err((
            field,
            format!(
                "must be a positive, finite time in seconds from {MIN_TIME_S:e} to \
                 {MAX_TIME_S}, found {v:e}"
            ),
        ))
    }
}

/// A dimensionless statistic that must be finite and within `range`, described as `expected`.
fn within(
    field: String,
    v: f64,
    range: std::ops::RangeInclusive<f64>,
    expected: &str,
) -> Result<(), (String, String)> {
    if range.contains(&v) {
        Ok(())
    } else {
        Err((field, format!("must be {expected}, found {v:e}")))
    }
}

fn check_threshold(field: String, pct: Option<f64>) -> Result<(), (String, String)> {
    match pct {
        Some(p) if !(p.is_finite() && p > 0.0 && p < 1000.0) => Err((
            field,
            format!("must be a percentage in (0, 1000), found {p}"),
        )),
        _ => Ok(()),
    }
}

/// Semantic checks serde cannot do: positive finite times, enough runs, consistent keys.
fn validate(b: &Baseline) -> Result<(), (String, String)> {
    if b.device_key != b.fingerprint.device_key() {
        return Err((
            "device_key".into(),
            format!(
                "{:?} does not match its fingerprint, which gives {:?}",
                b.device_key,
                b.fingerprint.device_key()
            ),
        ));
    }
    check_threshold("threshold_pct".into(), b.threshold_pct)?;
    if b.kernels.is_empty() {
        return Err(("kernels".into(), "is empty".into()));
    }
    for (i, k) in b.kernels.iter().enumerate() {
        let at = |field: &str| format!("kernels[{i}].{field}");
        // Version 2 records every kernel's hash; without one a rewritten kernel would pass as
        // the recorded one. (Version 1 files predate hashes and are gated without them.)
        if b.schema_version >= 2 && k.kernel_hash.is_none() {
            return Err((
                at("kernel_hash"),
                "is missing: a version-2 file records each kernel's hash; re-record".into(),
            ));
        }
        let want_key = instance_key(&k.kernel, &k.params);
        if k.key != want_key {
            return Err((
                at("key"),
                format!(
                    "{:?} should be {want_key:?} for its kernel and params",
                    k.key
                ),
            ));
        }
        if b.kernels[..i].iter().any(|o| o.key == k.key) {
            return Err((at("key"), format!("{:?} appears twice", k.key)));
        }
        // Names and ranges of the parameters, and sizes that fit: nothing later computes with
        // a size that overflows or allocates for one no device could bind.
        let kernel = crate::workload::find(&k.kernel).map_err(|e| (at("kernel"), e.to_string()))?;
        crate::workload::check_params(kernel, &k.params).map_err(|(param, reason)| {
            let field = if param.is_empty() {
                at("params")
            } else {
                at(&format!("params.{param}"))
            };
            (field, reason)
        })?;
        check_threshold(at("threshold_pct"), k.threshold_pct)?;
        positive(at("median_s"), k.median_s)?;
        if !(1..=crate::sampler::MAX_BATCH).contains(&k.batch) {
            return Err((
                at("batch"),
                format!(
                    "must be 1 to {}, found {}",
                    crate::sampler::MAX_BATCH,
                    k.batch
                ),
            ));
        }
        if !(1..=MAX_SLOTS).contains(&k.slots) {
            return Err((
                at("slots"),
                format!("must be 1 to {MAX_SLOTS}, found {}", k.slots),
            ));
        }
        if k.runs.len() < MIN_RUNS {
            return Err((
                at("runs"),
                format!(
                    "has {} run(s); at least {MIN_RUNS} are needed to know run-to-run noise",
                    k.runs.len()
                ),
            ));
        }
        for (j, run) in k.runs.iter().enumerate() {
            let s = &run.summary;
            let at = |field: &str| format!("kernels[{i}].runs[{j}].{field}");
            for (name, v) in [
                ("median_s", s.median_s),
                ("mean_s", s.mean_s),
                ("min_s", s.min_s),
                ("max_s", s.max_s),
                ("p05_s", s.p05_s),
                ("p25_s", s.p25_s),
                ("p75_s", s.p75_s),
                ("p95_s", s.p95_s),
                ("p99_s", s.p99_s),
                ("ci_low_s", s.ci_low_s),
                ("ci_high_s", s.ci_high_s),
            ] {
                positive(at(&format!("summary.{name}")), v)?;
            }
            let non_negative = "finite and at least 0";
            within(
                at("summary.iqr_rel"),
                s.iqr_rel,
                0.0..=f64::MAX,
                non_negative,
            )?;
            within(at("summary.log_se"), s.log_se, 0.0..=f64::MAX, non_negative)?;
            within(at("summary.lag1"), s.lag1, -1.0..=1.0, "from -1 to 1")?;
            if s.ci_low_s > s.median_s || s.ci_high_s < s.median_s {
                return Err((
                    at("summary"),
                    "the median lies outside its confidence interval".into(),
                ));
            }
            if run.samples_s.is_empty() {
                return Err((at("samples_s"), "is empty".into()));
            }
            for (n, &v) in run.samples_s.iter().enumerate() {
                positive(at(&format!("samples_s[{n}]")), v)?;
            }
            if !b.sessions.is_empty() && run.session as usize >= b.sessions.len() {
                return Err((
                    at("session"),
                    format!(
                        "is {}, but the file lists {} session(s)",
                        run.session,
                        b.sessions.len()
                    ),
                ));
            }
            // Derived numbers are never trusted: they must be what the raw samples give.
            if let Some(why) = s.disagreement(&stats::summarize(&run.samples_s)) {
                return Err((
                    at("summary"),
                    format!("disagrees with its raw samples: {why}"),
                ));
            }
        }
        let mut recomputed = k.clone();
        recomputed.summarise_runs();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) + 1e-15;
        if !close(k.median_s, recomputed.median_s) {
            return Err((
                at("median_s"),
                format!(
                    "is {}, but the runs' medians give {}",
                    k.median_s, recomputed.median_s
                ),
            ));
        }
        if !close(k.between_run_rel_sd, recomputed.between_run_rel_sd) {
            return Err((
                at("between_run_rel_sd"),
                format!(
                    "is {}, but the runs' medians give {}",
                    k.between_run_rel_sd, recomputed.between_run_rel_sd
                ),
            ));
        }
        // Version-1 files stored no modes: only a stored list is held to the recomputed one.
        if !k.modes.is_empty()
            && (k.modes.len() != recomputed.modes.len()
                || k.modes
                    .iter()
                    .zip(&recomputed.modes)
                    .any(|(a, b)| a.runs != b.runs || !close(a.center_s, b.center_s)))
        {
            return Err((
                at("modes"),
                format!(
                    "are {:?}, but the runs give {:?}",
                    k.modes, recomputed.modes
                ),
            ));
        }
    }
    Ok(())
}

/// Write atomically (temporary file + rename), so a crash never leaves half a baseline.
pub fn save(path: &Path, baseline: &Baseline) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut text = serde_json::to_string_pretty(baseline).expect("a baseline serialises");
    text.push('\n');
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Where a first run writes the baseline for device `key` when `dir_or_file` holds none:
/// `DIR/<key>.json` for a directory (or a path not ending in `.json`, created), the path itself
/// for a `.json` file that does not exist yet. An existing file belongs to another device (else
/// there would be a baseline) and is never overwritten.
pub fn bootstrap_path(dir_or_file: &Path, key: &str) -> Result<PathBuf> {
    if dir_or_file.is_file() {
        return Err(Error::Usage(format!(
            "--baselines {}: that file belongs to another device; give a directory (or a new \
             file) for {key:?}'s baseline",
            dir_or_file.display()
        )));
    }
    if dir_or_file.extension().is_some_and(|e| e == "json") {
        return Ok(dir_or_file.to_path_buf());
    }
    Ok(dir_or_file.join(format!("{key}.json")))
}

/// Make sure `path`'s directory exists and takes a file, before minutes are spent measuring.
pub fn ensure_writable(path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let probe = dir.join(format!(".gpugate-write-test-{}", std::process::id()));
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b""))
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })
}

/// The baseline for device `key` under `dir_or_file`: its path and contents. A file that
/// belongs to another device is [`Error::NoBaseline`] (cannot validate here), like a missing one.
pub fn for_device(dir_or_file: &Path, key: &str) -> Result<(PathBuf, Baseline)> {
    let path = locate(dir_or_file, key)?;
    let base = load(&path)?;
    if base.device_key != key {
        return Err(Error::NoBaseline {
            key: key.to_string(),
            searched: path,
            have: format!(
                "{} (fingerprint.name {:?})",
                base.device_key, base.fingerprint.name
            ),
        });
    }
    Ok((path, base))
}
