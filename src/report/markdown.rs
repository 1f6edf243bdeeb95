//! Markdown: GitHub's job summary (`$GITHUB_STEP_SUMMARY`, appended) and `--export md`.
//!
//! A heading with the command and the gate's outcome, the device, then one GitHub-flavoured
//! table with a row per kernel: against a baseline, its median then and now, the change, the
//! change's interval, the smallest regression this check could detect and the verdict; without
//! one (run, record, profile), the median, rate and % of peak. Notes, unsupported kernels and an
//! error report's error follow. Every cell's text is escaped, so a `|` in a kernel key or a
//! message cannot split the table.

use std::io::{self, Write};

use super::fmt_time;
use super::junit::{fmt_change, inconclusive_text};
use super::{Report, Reporter, Row};
use crate::compare::Verdict;

pub struct Markdown;

impl Reporter for Markdown {
    fn write(&self, r: &Report, out: &mut dyn Write) -> io::Result<()> {
        let o = &r.outcome;
        writeln!(
            out,
            "### gpugate {}: {} (exit {})\n",
            escape(&r.command),
            o.verdict.as_str(),
            o.exit_code
        )?;
        writeln!(out, "{}\n", escape(&o.message))?;
        let mut facts = vec![];
        if let Some(key) = &r.device_key {
            facts.push(format!("**Device:** {}", escape(key)));
        }
        if let Some(mode) = r.shader_checks {
            facts.push(format!("**Shaders:** {mode}"));
        }
        if let Some(file) = &r.baseline_file {
            facts.push(format!("**Baseline:** {}", escape(file)));
        }
        if let Some(c) = &r.compared {
            facts.push(format!(
                "**Compared:** {} (before) with {} (after)",
                escape(&c.before),
                escape(&c.after)
            ));
        }
        if !facts.is_empty() {
            writeln!(out, "{}\n", facts.join(" · "))?;
        }
        if let Some(e) = &r.error {
            let mut line = format!("**Error** ({}): {}", escape(&e.kind), escape(&e.message));
            if let Some(file) = &e.file {
                line += &format!(" — file {}", escape(file));
            }
            if let Some(field) = &e.field {
                line += &format!(", field {}", escape(field));
            }
            writeln!(out, "{line}\n")?;
        }
        if !r.rows.is_empty() {
            if r.rows.iter().any(|row| row.comparison.is_some()) {
                comparison_table(r, out)?;
            } else {
                measurement_table(r, out)?;
            }
            writeln!(out)?;
        }
        if let Some(c) = &r.calibration {
            writeln!(
                out,
                "**Calibration:** {} false alarm(s) in {} A/A checks (95 % upper bound {:.1} %, designed α {:.1} %); {} inconclusive check(s)\n",
                c.false_alarms,
                c.checks,
                c.false_alarm_upper95 * 100.0,
                c.alpha * 100.0,
                c.inconclusive_checks
            )?;
        }
        list(
            out,
            "Unsupported on this device",
            r.unsupported
                .iter()
                .map(|u| format!("{}: {}", escape(&u.key), escape(&u.reason))),
        )?;
        list(out, "Notes", r.notes.iter().map(|n| escape(n)))
    }
}

fn comparison_table(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    let (before, after) = match r.compared {
        Some(_) => ("Before", "After"),
        None => ("Baseline", "Now"),
    };
    writeln!(
        out,
        "| Kernel | {before} | {after} | Δ | Interval | Detectable regression | Verdict |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---|")?;
    for row in &r.rows {
        let c = row.comparison.as_ref();
        let cells = [
            escape(&row.key),
            c.map_or("—".into(), |c| fmt_time(c.baseline_s)),
            fmt_time(c.map_or(row.median_s, |c| c.current_s)),
            c.map_or("—".into(), |c| fmt_change(c.ratio)),
            c.map_or("—".into(), |c| {
                format!("{} … {}", fmt_change(c.ratio_low), fmt_change(c.ratio_high))
            }),
            row.detectable_ratio.map_or("—".into(), fmt_change),
            verdict(r, row),
        ];
        writeln!(out, "| {} |", cells.join(" | "))?;
    }
    Ok(())
}

fn measurement_table(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "| Kernel | Median | Rate | % of peak | Verdict |")?;
    writeln!(out, "|---|---:|---:|---:|---|")?;
    for row in &r.rows {
        let cells = [
            escape(&row.key),
            fmt_time(row.median_s),
            format!("{:.3} {}", row.rate, row.unit.label()),
            row.pct_of_peak
                .map_or("—".into(), |p| format!("{:.1} %", p * 100.0)),
            verdict(r, row),
        ];
        writeln!(out, "| {} |", cells.join(" | "))?;
    }
    Ok(())
}

/// The verdict, bold when it fails, with the reason of an inconclusive one and the detail of a
/// wrong result.
fn verdict(r: &Report, row: &Row) -> String {
    if row.verdict == Verdict::WrongResult || !row.verification.ok {
        return format!("**wrong result**: {}", escape(&row.verification.detail));
    }
    match row.verdict {
        Verdict::Regression => "**regression**".into(),
        Verdict::Inconclusive => escape(&inconclusive_text(r, row)),
        v => v.as_str().into(),
    }
}

fn list(out: &mut dyn Write, title: &str, items: impl Iterator<Item = String>) -> io::Result<()> {
    let items: Vec<String> = items.collect();
    if items.is_empty() {
        return Ok(());
    }
    writeln!(out, "**{title}:**\n")?;
    for item in items {
        writeln!(out, "- {item}")?;
    }
    writeln!(out)
}

/// Text as literal Markdown inside a line or a table cell: every ASCII punctuation character
/// that CommonMark or GFM could read as syntax is backslash-escaped (`|` splits table cells even
/// inside code spans, so it is escaped too), and line breaks become spaces so a cell stays on its
/// row.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '~' | '&' | '!' => {
                out.push('\\');
                out.push(ch);
            }
            '\r' | '\n' => out.push(' '),
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn markdown(report: &Report) -> String {
        let mut out = vec![];
        Markdown.write(report, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escaping_keeps_cells_and_lines_whole() {
        assert_eq!(escape("a|b"), r"a\|b");
        assert_eq!(escape("copy[n=1024]"), r"copy\[n=1024\]");
        assert_eq!(
            escape("x_y*z `c` <b> #1 ~s~ &amp; !"),
            r"x\_y\*z \`c\` \<b\> \#1 \~s\~ \&amp; \!"
        );
        assert_eq!(escape(r"C:\dir"), r"C:\\dir");
        assert_eq!(escape("two\nlines\r\n"), "two lines  ");
    }

    #[test]
    fn a_check_is_one_row_per_kernel_with_the_numbers() {
        let text = markdown(&crate::report::junit::tests::fixture());
        assert!(
            text.starts_with("### gpugate check: wrong_result (exit 1)\n"),
            "{text}"
        );
        let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| ")).collect();
        // The header and five kernels.
        assert_eq!(rows.len(), 6, "{text}");
        assert!(rows[0].contains("| Baseline | Now | Δ | Interval | Detectable regression |"));
        let regression = rows.iter().find(|r| r.contains("**regression**")).unwrap();
        assert!(
            regression.contains("| +700.0 % | +650.0 % … +750.0 % |"),
            "{regression}"
        );
        assert!(text.contains("inconclusive: noise: "), "{text}");
        assert!(
            text.contains("- copy\\_f16\\[n=1024\\]: needs SHADER\\_F16"),
            "{text}"
        );
    }

    #[test]
    fn a_run_shows_median_rate_and_peak_and_an_error_report_its_error() {
        let mut report = crate::report::junit::tests::fixture();
        report.command = "run".into();
        report.baseline_file = None;
        for row in &mut report.rows {
            row.comparison = None;
        }
        let text = markdown(&report);
        assert!(
            text.contains("| Kernel | Median | Rate | % of peak | Verdict |"),
            "{text}"
        );
        let err = crate::error::Error::Usage("--kernel nope: no such kernel".into());
        let text = markdown(&Report::from_error("check", &err));
        assert!(text.contains("**Error** (usage): "), "{text}");
        assert!(!text.contains("| Kernel"), "{text}");
    }
}
