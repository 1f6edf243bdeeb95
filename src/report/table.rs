//! The human table: what a person reads in a terminal.

use std::io::{self, Write};

use super::{Bootstrap, Calibration, Report, Reporter};
use crate::compare::Verdict;
use crate::sampler::StopReason;

pub struct Table;

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
        if let Some(f) = &r.fingerprint {
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
