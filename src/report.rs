//! Reports: one [`Report`] value, written by any [`Reporter`] (table for people, JSON for machines).

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use crate::compare::{Comparison, GateOutcome, Verdict};
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
    /// Everything measured, raw samples included.
    pub runs: Vec<RunResult>,
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
    pub verification: Verification,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
    pub verdict: Verdict,
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
            "{:<44} {:>11} {:>11} {:>7} {:>15} {:>13} {:>16} {:>7} {:>8}",
            "kernel",
            "median",
            "baseline",
            "ratio",
            "ratio CI",
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
            writeln!(
                out,
                "{:<44} {:>11} {:>11} {:>7} {:>15} {:>13} {:>16} {:>7} {:>8.2}",
                row.key,
                fmt_time(row.median_s),
                baseline,
                ratio,
                ci,
                row.verdict.as_str(),
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
            if let Some(c) = row
                .comparison
                .as_ref()
                .filter(|c| c.verdict != Verdict::Pass)
            {
                writeln!(out, "{} {}: {}", c.verdict.as_str(), row.key, c.reason)?;
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
        if let Some(b) = &r.bootstrap {
            write_bootstrap(b, out)?;
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
            ", then checked against in a fresh process; the table above is that self-check"
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
            Some(r) if r < 2.0 => format!("{:+.1} % slower", (r - 1.0) * 100.0),
            Some(r) => format!("{r:.1}× slower"),
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

impl Reporter for Json {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, report)?;
        writeln!(out)
    }
}
