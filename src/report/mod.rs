//! Reports: one [`Report`] value, written by any [`Reporter`]: the table for people, JSON for
//! machines, JUnit for CI test tabs, Markdown for job summaries, BMF and CSV for trackers and
//! spreadsheets; the HTML page renders one or more reports with SVG plots.

pub mod export;
pub mod github;
pub mod html;
pub mod junit;
pub mod markdown;
mod table;

use std::io::{self, Write};
use std::path::Path;

pub use export::{Bmf, Csv};
pub use junit::Junit;
pub use markdown::Markdown;
pub use table::{colour_allowed, render, Layout, Table};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::compare::{Comparison, DriverPolicy, GateOutcome, Verdict};
use crate::device::{Fingerprint, GpuIdentity, ShaderChecks};
use crate::error::{Error, Result};
use crate::runner::RunResult;
use crate::sampler::{StopReason, TimingMethod};
use crate::workload::{Params, Unit, Verification};

/// Version of the report's JSON shape, whose JSON Schema is `docs/report.schema.json` (its
/// `schema_version` const, checked by the tests); bumped, with the schema, on any change a
/// consumer could trip on: a field removed, renamed or retyped, a value added to an enum.
/// Reports written before it existed read as 0.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    #[serde(default)]
    pub schema_version: u32,
    /// `run`, `record`, `check`, `calibrate`, `compare` or `profile`.
    pub command: String,
    /// None only in an error report written before an adapter was chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    /// Which physical GPU, in dcgm-exporter's terms (NVML index, UUID, model, PCI bus id), where
    /// the adapter reports a PCI bus id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuIdentity>,
    /// How the measured kernels were compiled (`--shader-checks`), from the runs; in an error
    /// report, the mode the command was asked to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shader_checks: Option<ShaderChecks>,
    /// When the command finished (UTC): what `gpugate history` orders saved reports by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Set when the command failed before it had an outcome to report (exit 2, 3 or 4): the
    /// report is still written, so a pipeline always has something to archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ReportError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_file: Option<String>,
    /// Things a reader must not miss, e.g. a driver that differs from the baseline's.
    pub notes: Vec<String>,
    pub rows: Vec<Row>,
    /// Kernels this adapter lacks a feature for: neither pass nor fail, left out of the verdict.
    #[serde(default)]
    pub unsupported: Vec<Unsupported>,
    /// The device's measured ceilings that `pct_of_peak` refers to, one per unit at most.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ceilings: Vec<Ceiling>,
    pub outcome: GateOutcome,
    /// Set when this run bootstrapped the device's first baseline (`check --record-missing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<Bootstrap>,
    /// Set by `calibrate`: the gate's measured false-alarm rate and detectable regressions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Calibration>,
    /// Set when the driver differs from the baseline's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_change: Option<DriverChange>,
    /// How a check was judged (set by `check`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<CheckPolicy>,
    /// Set by `compare`: the two saved reports compared (the first plays the baseline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compared: Option<Compared>,
    /// Set by `profile`: the parameter axes swept; each row is one point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<Sweep>,
    /// Everything measured in round 1 (or the only round), raw samples included.
    pub runs: Vec<RunResult>,
    /// The confirmation round's runs: suspects only, fresh processes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confirmation_runs: Vec<RunResult>,
}

impl Report {
    /// A report with nothing but its command, device, outcome, rows and runs.
    pub fn new(
        command: &str,
        fingerprint: Fingerprint,
        outcome: GateOutcome,
        rows: Vec<Row>,
        unsupported: Vec<Unsupported>,
        runs: Vec<RunResult>,
    ) -> Report {
        Report {
            schema_version: REPORT_SCHEMA_VERSION,
            command: command.into(),
            device_key: Some(fingerprint.device_key()),
            fingerprint: Some(fingerprint),
            gpu: None,
            shader_checks: runs.iter().find_map(|r| r.shader_checks),
            finished_at: Some(Utc::now()),
            error: None,
            baseline_file: None,
            notes: vec![],
            rows,
            unsupported,
            ceilings: vec![],
            outcome,
            bootstrap: None,
            calibration: None,
            driver_change: None,
            policy: None,
            compared: None,
            sweep: None,
            runs,
            confirmation_runs: vec![],
        }
    }

    /// The report of a command that failed before it had an outcome: the error, its exit code,
    /// nothing measured. Written wherever a report would have been.
    pub fn from_error(command: &str, err: &Error) -> Report {
        let code = err.exit_code();
        let outcome = GateOutcome {
            verdict: Verdict::Inconclusive,
            exit_code: code,
            message: format!("error: {err}"),
            inconclusive: vec![],
        };
        Report {
            schema_version: REPORT_SCHEMA_VERSION,
            command: command.into(),
            device_key: None,
            fingerprint: None,
            gpu: None,
            shader_checks: None,
            finished_at: Some(Utc::now()),
            error: Some(ReportError::of(err)),
            baseline_file: None,
            notes: vec![],
            rows: vec![],
            unsupported: vec![],
            ceilings: vec![],
            outcome,
            bootstrap: None,
            calibration: None,
            driver_change: None,
            policy: None,
            compared: None,
            sweep: None,
            runs: vec![],
            confirmation_runs: vec![],
        }
    }
}

/// Why a command ended without an outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportError {
    /// Machine-readable class: `usage`, `baseline_file`, `no_baseline`, `no_adapter`, `fault`, …
    /// (see [`Error::kind`]).
    pub kind: String,
    pub message: String,
    /// The file at fault, for file errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The field at fault in that file, e.g. `kernels[0].params.n`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ReportError {
    pub fn of(err: &Error) -> ReportError {
        let (file, field) = match err {
            Error::BaselineFile { path, field, .. } => {
                (Some(path.display().to_string()), Some(field.clone()))
            }
            Error::Io { path, .. } => (Some(path.display().to_string()), None),
            _ => (None, None),
        };
        ReportError {
            kind: err.kind().into(),
            message: err.to_string(),
            file,
            field,
        }
    }
}

/// A saved report, read back with errors that name the file and the field at fault.
pub fn load(path: &Path) -> Result<Report> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |field: String, reason: String| Error::ReportFile {
        path: path.to_path_buf(),
        field,
        reason,
    };
    let de = &mut serde_json::Deserializer::from_str(&text);
    let report: Report = serde_path_to_error::deserialize(de)
        .map_err(|e| bad(e.path().to_string(), e.into_inner().to_string()))?;
    // A saved report is someone else's file: what the text writers print from it must not carry
    // control characters (a newline followed by `::error::` is a GitHub workflow command on
    // stdout), and rows must name gpugate's kernels (a key starting with `=` is a spreadsheet
    // formula in the CSV export).
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(String::new(), e.to_string()))?;
    if let Some(field) = control_character_at(&value, String::new()) {
        return Err(bad(field, "a string holds a control character".into()));
    }
    for (i, row) in report.rows.iter().enumerate() {
        if crate::workload::find(&row.kernel).is_err() {
            return Err(bad(
                format!("rows[{i}].kernel"),
                format!("unknown kernel {:?}", row.kernel),
            ));
        }
        if row.key != row.kernel && !row.key.starts_with(&format!("{}[", row.kernel)) {
            return Err(bad(
                format!("rows[{i}].key"),
                format!("{:?} is not an instance key of {}", row.key, row.kernel),
            ));
        }
    }
    Ok(report)
}

/// The path of the first string (key or value) under `value` holding a control character.
fn control_character_at(value: &serde_json::Value, at: String) -> Option<String> {
    let controlled = |s: &str| s.chars().any(char::is_control);
    match value {
        serde_json::Value::String(s) => controlled(s).then_some(at),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| control_character_at(v, format!("{at}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            let here = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            if controlled(k) {
                Some(here)
            } else {
                control_character_at(v, here)
            }
        }),
        _ => None,
    }
}

/// A device ceiling: the best rate of its unit's peak kernel (peak_bandwidth for GB/s, peak_fma
/// for GFLOP/s), measured with the report or taken from the baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ceiling {
    pub unit: Unit,
    /// The peak kernel's instance key.
    pub key: String,
    /// In the unit's table unit (GB/s, GFLOP/s).
    pub rate: f64,
    pub source: CeilingSource,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CeilingSource {
    /// Measured in this report's runs.
    Measured,
    /// The baseline's median for the peak kernel (a check filtered with --kernel).
    Baseline,
}

/// The two reports `compare` read: `before` is judged as the baseline, `after` as now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Compared {
    pub before: String,
    pub after: String,
}

/// `profile`'s parameter axes (nvbench's): every combination of their values is one row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    pub kernel: String,
    pub axes: Vec<Axis>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    pub name: String,
    pub values: Vec<u64>,
}

/// A driver that differs from the baseline's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriverChange {
    pub baseline: String,
    pub current: String,
    pub policy: DriverPolicy,
}

/// How a check was judged: what the verdict's error rates refer to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckPolicy {
    /// Runs of round 1 and of the confirmation round (suspects only).
    pub runs: usize,
    pub confirm_runs: usize,
    /// Suite-wide α: Holm over `family` kernels.
    pub alpha: f64,
    pub family: usize,
    pub require_conclusive: String,
    /// Kernels re-measured in the confirmation round.
    pub suspects: Vec<String>,
}

/// What `calibrate` measured: K cross-process A/A checks against this baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub checks: usize,
    /// Checks that named any kernel as regressed (on an unchanged node: false alarms).
    pub false_alarms: usize,
    /// One-sided 95 % Clopper–Pearson upper bound of the suite's false-alarm rate.
    pub false_alarm_upper95: f64,
    /// The suite α the gate is designed for.
    pub alpha: f64,
    /// Checks that ended inconclusive (exit 3).
    pub inconclusive_checks: usize,
    pub kernels: Vec<CalibratedKernel>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CalibratedKernel {
    pub key: String,
    pub threshold: f64,
    /// Smallest slowdown (ratio) detected with 95 % power at the suite's α; None = never.
    pub detectable_ratio: Option<f64>,
    pub false_alarms: usize,
    pub inconclusive: usize,
}

/// What a first run on a device without a baseline did, and what the new baseline can detect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bootstrap {
    /// The baseline file written.
    pub baseline_file: String,
    /// Independent processes recorded per kernel.
    pub recorded_runs: usize,
    /// Whether a check against the new file followed (never under CI, where a bootstrap stops).
    pub self_checked: bool,
    /// Runs a `check` makes, which `detectable` assumes.
    pub check_runs: usize,
    /// Per kernel: how large a slowdown such a check detects against this baseline.
    pub detectable: Vec<Detectable>,
}

/// The smallest slowdown a check detects with [`crate::compare::DETECTION_POWER`] for one kernel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detectable {
    pub key: String,
    /// The practical threshold the kernel is judged at, as a fraction.
    pub threshold: f64,
    /// Current/baseline time ratio detected with 95 % power; None when a check cannot conclude.
    pub slowdown_ratio: Option<f64>,
}

/// One kernel instance, over all current runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub key: String,
    pub kernel: String,
    /// The instance's parameters (those in `key`).
    #[serde(default)]
    pub params: Params,
    pub unit: Unit,
    /// Central time per iteration over the runs (geometric mean of run medians).
    pub median_s: f64,
    /// Largest 95th percentile of a sample among the runs.
    #[serde(default)]
    pub p95_s: f64,
    /// GB/s, GFLOP/s or GTEPS at `median_s`.
    pub rate: f64,
    /// `rate` over this device's measured ceiling for the unit (peak_bandwidth or peak_fma in
    /// the same report), as a fraction; None without a ceiling to compare with.
    #[serde(default)]
    pub pct_of_peak: Option<f64>,
    /// FLOPs per byte counted: where the kernel sits on the roofline.
    #[serde(default)]
    pub intensity: f64,
    /// Largest interquartile range over median among the runs.
    pub iqr_rel: f64,
    pub timing: TimingMethod,
    pub stop: StopReason,
    /// False when a run's warm-up did not settle (such a kernel is never compared).
    #[serde(default = "yes")]
    pub steady: bool,
    pub verification: Verification,
    /// Round 1's comparison of a suspect that was re-measured; `comparison` is then the
    /// confirmation round's, which alone decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screening: Option<Comparison>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
    /// The baseline's run medians (seconds) this row was judged against, for plots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseline_run_medians_s: Vec<f64>,
    /// Smallest slowdown (current/baseline ratio) this check detects with 95 % power.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detectable_ratio: Option<f64>,
    /// Why a run looks throttled unlike the baseline's runs (NVML clocks and throttle reasons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled: Option<String>,
    pub verdict: Verdict,
}

fn yes() -> bool {
    true
}

/// A kernel instance left out because the adapter lacks what it needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unsupported {
    pub key: String,
    pub kernel: String,
    /// e.g. `needs SHADER_F16`.
    pub reason: String,
}

/// The kernel whose rate is the ceiling of `unit`, if any.
pub fn peak_kernel(unit: Unit) -> Option<&'static str> {
    match unit {
        Unit::Bandwidth => Some("peak_bandwidth"),
        Unit::Flops => Some("peak_fma"),
        Unit::Teps => None,
    }
}

/// The ceilings measured among `rows`: each unit's peak kernel, its best instance.
pub fn measured_ceilings(rows: &[Row]) -> Vec<Ceiling> {
    [Unit::Bandwidth, Unit::Flops]
        .into_iter()
        .filter_map(|unit| {
            let name = peak_kernel(unit)?;
            rows.iter()
                .filter(|r| r.kernel == name && r.verification.ok)
                .filter(|r| r.rate.is_finite() && r.rate > 0.0)
                .max_by(|a, b| a.rate.total_cmp(&b.rate))
                .map(|r| Ceiling {
                    unit,
                    key: r.key.clone(),
                    rate: r.rate,
                    source: CeilingSource::Measured,
                })
        })
        .collect()
}

/// Set every row's `pct_of_peak` from the device's ceilings: bandwidth kernels against
/// peak_bandwidth, FLOP kernels against peak_fma (f32 FMA). Graph kernels (GTEPS) have no ceiling
/// here. Returns a note for every row above a ceiling of its own arithmetic (a tensor-core kernel
/// may exceed the f32 one): the ceiling kernel under-measures this device, so no % of peak of
/// that unit can be read as a fraction of what the device can do.
#[must_use]
pub fn apply_peaks(rows: &mut [Row], ceilings: &[Ceiling]) -> Vec<String> {
    let mut notes = vec![];
    for row in rows.iter_mut() {
        let ceiling = ceilings.iter().find(|c| c.unit == row.unit && c.rate > 0.0);
        row.pct_of_peak = ceiling.map(|c| row.rate / c.rate);
        let comparable =
            crate::workload::find(&row.kernel).is_ok_and(|k| k.comparable_to_ceiling());
        if let (Some(c), Some(p)) = (ceiling, row.pct_of_peak) {
            if p > 1.0 && comparable && row.verification.ok && row.key != c.key {
                notes.push(format!(
                    "{} runs at {:.0} % of its ceiling {} ({:.1} {}): the ceiling kernel \
                     under-measures this device, so every % of peak in {} here is overstated \
                     (docs/performance.md, \"Peaks that are peaks\")",
                    row.key,
                    100.0 * p,
                    c.key,
                    c.rate,
                    c.unit.label(),
                    c.unit.label()
                ));
            }
        }
    }
    notes
}

/// A time per iteration in the unit that reads best (`1.500 ms`, `2.50 µs`); `n/a` when it could
/// not be computed. Every text writer uses it, so a time reads the same everywhere.
pub fn fmt_time(s: f64) -> String {
    if !s.is_finite() {
        "n/a".into()
    } else if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.2} µs", s * 1e6)
    }
}

pub trait Reporter {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()>;
}

pub struct Json;

impl Reporter for Json {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, report)?;
        writeln!(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CI fixture report with `spoil` applied, saved, and loaded back.
    fn load_spoilt(spoil: impl FnOnce(&mut serde_json::Value)) -> Result<Report> {
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/ci-check-report.json"
        );
        let mut doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
        spoil(&mut doc);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        std::fs::write(&path, doc.to_string()).unwrap();
        load(&path)
    }

    fn bare_row(kernel: &str, unit: Unit, rate: f64, ok: bool) -> Row {
        serde_json::from_value(serde_json::json!({
            "key": format!("{kernel}[n=4]"), "kernel": kernel, "unit": unit, "median_s": 1.0,
            "rate": rate, "iqr_rel": 0.0, "timing": "gpu_timestamp", "stop": "noise_target",
            "verification": {"ok": ok, "checked": 1, "max_error": 0.0, "tolerance": 0.0,
                             "detail": ""},
            "verdict": "pass",
        }))
        .unwrap()
    }

    #[test]
    fn a_kernel_above_a_ceiling_of_its_own_arithmetic_is_noted() {
        let mut rows = vec![
            bare_row("peak_bandwidth", Unit::Bandwidth, 1.39, true),
            bare_row("copy", Unit::Bandwidth, 4.61, true),
            bare_row("triad", Unit::Bandwidth, 1.0, true),
            // A wrong result's rate means nothing.
            bare_row("gelu", Unit::Bandwidth, 9.0, false),
            bare_row("peak_fma", Unit::Flops, 100.0, true),
            bare_row("sgemm", Unit::Flops, 150.0, true),
            // Tensor cores may rightly beat the f32 FMA ceiling.
            bare_row("hgemm_coop", Unit::Flops, 900.0, true),
            bare_row("lattice_bfs", Unit::Teps, 1.0, true),
        ];
        let ceilings = measured_ceilings(&rows);
        let notes = apply_peaks(&mut rows, &ceilings);
        assert_eq!(notes.len(), 2, "{notes:#?}");
        assert!(
            notes[0].starts_with(
                "copy[n=4] runs at 332 % of its ceiling peak_bandwidth[n=4] (1.4 GB/s)"
            ),
            "{}",
            notes[0]
        );
        assert!(
            notes[1].starts_with("sgemm[n=4] runs at 150 % of its ceiling peak_fma[n=4]"),
            "{}",
            notes[1]
        );
        let pct: Vec<Option<f64>> = rows.iter().map(|r| r.pct_of_peak).collect();
        assert_eq!(pct[2], Some(1.0 / 1.39));
        assert_eq!(pct[6], Some(9.0), "shown, though not flagged");
        assert_eq!(pct[7], None, "no GTEPS ceiling");
    }

    #[test]
    fn a_saved_report_cannot_smuggle_commands_or_formulas_into_the_text_sinks() {
        load_spoilt(|_| {}).expect("the fixture loads");
        let field = |r: Result<Report>| match r {
            Err(Error::ReportFile { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        };
        // A newline then a workflow command: GitHub would run it from the table on stdout.
        let r = load_spoilt(|d| d["rows"][0]["key"] = "sgemm[n=64]\n::error::pwned".into());
        assert_eq!(field(r), "rows[0].key");
        let r = load_spoilt(|d| d["notes"] = serde_json::json!(["ok", "x\r::stop-commands::t"]));
        assert_eq!(field(r), "notes[1]");
        // A formula in the CSV export's first cell.
        let r = load_spoilt(|d| d["rows"][0]["key"] = "=HYPERLINK(\"http://x\")".into());
        assert_eq!(field(r), "rows[0].key");
        let r = load_spoilt(|d| d["rows"][0]["kernel"] = "no_such_kernel".into());
        assert_eq!(field(r), "rows[0].kernel");
    }
}
