//! Reports: one [`Report`] value, written by any [`Reporter`] (table for people, JSON for machines).

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use crate::compare::{Comparison, DriverPolicy, GateOutcome, Verdict};
use crate::device::Fingerprint;
use crate::runner::RunResult;
use crate::sampler::{StopReason, TimingMethod};
use crate::workload::{Unit, Verification};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `run`, `record` or `check`.
    pub command: String,
    pub device_key: String,
    pub fingerprint: Fingerprint,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_file: Option<String>,
    /// Things a reader must not miss, e.g. a driver that differs from the baseline's.
    pub notes: Vec<String>,
    pub rows: Vec<Row>,
    /// Kernels this adapter lacks a feature for: neither pass nor fail, left out of the verdict.
    #[serde(default)]
    pub unsupported: Vec<Unsupported>,
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
            command: command.into(),
            device_key: fingerprint.device_key(),
            fingerprint,
            baseline_file: None,
            notes: vec![],
            rows,
            unsupported,
            outcome,
            bootstrap: None,
            calibration: None,
            driver_change: None,
            policy: None,
            runs,
            confirmation_runs: vec![],
        }
    }
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
    pub unit: Unit,
    /// Central time per iteration over the runs (geometric mean of run medians).
    pub median_s: f64,
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

/// Set every row's `pct_of_peak` from the ceiling kernels measured in the same report:
/// bandwidth kernels against peak_bandwidth, FLOP kernels against peak_fma (f32 FMA; a
/// tensor-core kernel can exceed it). Graph kernels (GTEPS) have no ceiling here.
pub fn apply_peaks(rows: &mut [Row]) {
    let ceiling = |name: &str| rows.iter().find(|r| r.kernel == name).map(|r| r.rate);
    let (bandwidth, flops) = (ceiling("peak_bandwidth"), ceiling("peak_fma"));
    for row in rows.iter_mut() {
        let peak = match row.unit {
            Unit::Bandwidth => bandwidth,
            Unit::Flops => flops,
            Unit::Teps => None,
        };
        row.pct_of_peak = peak.filter(|p| *p > 0.0).map(|p| row.rate / p);
    }
}

pub trait Reporter {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()>;
}

pub struct Table;
pub struct Json;

fn fmt_time(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.2} µs", s * 1e6)
    }
}

impl Reporter for Table {
    fn write(&self, r: &Report, out: &mut dyn Write) -> io::Result<()> {
        let f = &r.fingerprint;
        writeln!(
            out,
            "device   {} ({}, {}, driver {})",
            f.name,
            f.backend,
            f.device_type,
            f.driver_string()
        )?;
        if let Some(cpu) = &f.cpu_model {
            writeln!(out, "host cpu {cpu}")?;
        }
        if let Some(file) = &r.baseline_file {
            writeln!(out, "baseline {file}")?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "{:<44} {:>11} {:>11} {:>7} {:>15} {:>9} {:>22} {:>16} {:>7} {:>8}",
            "kernel",
            "median",
            "baseline",
            "ratio",
            "ratio CI",
            "detects",
            "verdict",
            "rate",
            "% peak",
            "FLOP/B"
        )?;
        for row in &r.rows {
            let (baseline, ratio, ci) = match &row.comparison {
                Some(c) => (
                    fmt_time(c.baseline_s),
                    format!("{:.3}", c.ratio),
                    format!("{:.3}–{:.3}", c.ratio_low, c.ratio_high),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let pct = row
                .pct_of_peak
                .map_or("-".into(), |p| format!("{:.1}", 100.0 * p));
            let detects = match (&row.comparison, row.detectable_ratio) {
                (Some(_), Some(r)) => fmt_slowdown(r),
                (Some(_), None) => "never".into(),
                (None, _) => "-".into(),
            };
            let verdict = match row.comparison.as_ref().and_then(|c| c.inconclusive) {
                Some(reason) if row.verdict == Verdict::Inconclusive => {
                    format!("inconclusive:{}", reason.as_str())
                }
                _ => row.verdict.as_str().to_string(),
            };
            let verdict = if row.screening.is_some() {
                format!("{verdict} (2nd)")
            } else {
                verdict
            };
            writeln!(
                out,
                "{:<44} {:>11} {:>11} {:>7} {:>15} {:>9} {:>22} {:>16} {:>7} {:>8.2}",
                row.key,
                fmt_time(row.median_s),
                baseline,
                ratio,
                ci,
                detects,
                verdict,
                format!("{:.2} {}", row.rate, row.unit.label()),
                pct,
                row.intensity,
            )?;
        }
        writeln!(out)?;
        for row in &r.rows {
            if !row.verification.ok {
                writeln!(out, "WRONG RESULT {}: {}", row.key, row.verification.detail)?;
            }
            if let Some(first) = &row.screening {
                writeln!(
                    out,
                    "suspect {}: round 1 {:.3}× ({}); re-measured in {} fresh run(s), which alone decide",
                    row.key,
                    first.ratio,
                    first.verdict.as_str(),
                    row.comparison.as_ref().map_or(0, |c| c.current_runs)
                )?;
            }
            if let Some(c) = row
                .comparison
                .as_ref()
                .filter(|c| c.verdict != Verdict::Pass)
            {
                writeln!(out, "{} {}: {}", c.verdict.as_str(), row.key, c.reason)?;
            }
            if let Some(c) = row.comparison.as_ref().filter(|c| c.modes.len() > 1) {
                let modes: Vec<String> = c
                    .modes
                    .iter()
                    .map(|m| format!("{} ({} runs)", fmt_time(m.center_s), m.runs))
                    .collect();
                writeln!(
                    out,
                    "bimodal {}: the baseline's processes settle in {} speed modes: {}; each run is judged against the nearest",
                    row.key,
                    c.modes.len(),
                    modes.join(", ")
                )?;
            }
            if let Some(why) = &row.throttled {
                writeln!(out, "throttled {}: {why}", row.key)?;
            }
            if !row.steady {
                writeln!(out, "unsteady {}: a run's warm-up did not settle", row.key)?;
            }
        }
        for row in r.rows.iter().filter(|r| r.stop != StopReason::NoiseTarget) {
            let cap = match row.stop {
                StopReason::SampleCap => "sample cap",
                _ => "time cap",
            };
            writeln!(
                out,
                "sampling {}: stopped at the {cap} before the noise target",
                row.key
            )?;
        }
        for u in &r.unsupported {
            writeln!(
                out,
                "unsupported on this adapter {}: {} (not measured, left out of the verdict)",
                u.key, u.reason
            )?;
        }
        for note in &r.notes {
            writeln!(out, "note: {note}")?;
        }
        if let Some(p) = &r.policy {
            writeln!(
                out,
                "policy: {} runs + {} confirmation runs for suspects ({}), suite α {:.2} % (Holm over {} kernels), require conclusive: {}; \"detects\" = smallest slowdown caught with 95 % power",
                p.runs,
                p.confirm_runs,
                if p.suspects.is_empty() {
                    "none".to_string()
                } else {
                    p.suspects.join(", ")
                },
                100.0 * p.alpha,
                p.family,
                p.require_conclusive
            )?;
        }
        if let Some(b) = &r.bootstrap {
            write_bootstrap(b, out)?;
        }
        if let Some(c) = &r.calibration {
            write_calibration(c, out)?;
        }
        writeln!(
            out,
            "result: {} (exit {})",
            r.outcome.message, r.outcome.exit_code
        )
    }
}

fn write_bootstrap(b: &Bootstrap, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "bootstrap: this device had no baseline, so one was recorded ({} independent runs per \
         kernel){}:",
        b.recorded_runs,
        if b.self_checked {
            ", then checked against in fresh processes; the table above is that self-check"
        } else {
            ""
        }
    )?;
    writeln!(out, "  wrote {}", b.baseline_file)?;
    writeln!(
        out,
        "  commit it to make every later run a gate against it:  git add {}",
        b.baseline_file
    )?;
    writeln!(
        out,
        "  smallest slowdown a check ({} run{}) detects with {:.0} % power, per kernel:",
        b.check_runs,
        if b.check_runs == 1 { "" } else { "s" },
        100.0 * crate::compare::DETECTION_POWER
    )?;
    for d in &b.detectable {
        let detects = match d.slowdown_ratio {
            Some(r) => format!("{} slower", fmt_slowdown(r)),
            None => "nothing: too few runs to judge".into(),
        };
        writeln!(
            out,
            "    {:<44} {:>16}  (threshold {:.0} %)",
            d.key,
            detects,
            d.threshold * 100.0
        )?;
    }
    Ok(())
}

/// A slowdown ratio for people: `+6.8 %` below 2×, `3.1×` above.
fn fmt_slowdown(r: f64) -> String {
    if r < 2.0 {
        format!("{:+.1} %", (r - 1.0) * 100.0)
    } else {
        format!("{r:.1}×")
    }
}

fn write_calibration(c: &Calibration, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "calibration: {} A/A checks on this node, each in fresh processes: {} false alarm(s), \
         rate ≤ {:.1} % (one-sided 95 % Clopper–Pearson; design α {:.2} %), {} inconclusive",
        c.checks,
        c.false_alarms,
        100.0 * c.false_alarm_upper95,
        100.0 * c.alpha,
        c.inconclusive_checks
    )?;
    writeln!(
        out,
        "  {:<44} {:>10} {:>18} {:>8} {:>13}",
        "kernel", "threshold", "detects (95 %)", "alarms", "inconclusive"
    )?;
    for k in &c.kernels {
        writeln!(
            out,
            "  {:<44} {:>9.0}% {:>18} {:>8} {:>13}",
            k.key,
            100.0 * k.threshold,
            k.detectable_ratio.map_or("never".into(), fmt_slowdown),
            k.false_alarms,
            k.inconclusive
        )?;
    }
    Ok(())
}

impl Reporter for Json {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, report)?;
        writeln!(out)
    }
}
