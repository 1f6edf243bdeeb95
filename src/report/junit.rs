//! JUnit XML (the Jenkins/GitLab flavour) for CI test tabs: one testsuite per report, one
//! testcase per kernel instance, plus the suite-level `gate-policy` testcase, which fails
//! whenever the report's exit code is not 0 — so a job failed by inconclusive kernels, a
//! missing baseline or a driver change never shows "0 failures".
//!
//! Mapping: regression → `<failure>` with the numbers; wrong result → `<error>` with the
//! verification's detail; inconclusive and unsupported kernels → `<skipped>` with the reason;
//! pass and improvement → passed, the numbers in `<system-out>`. An error report (no rows) is
//! one `gpugate` testcase with an `<error>` of the error's kind.
//!
//! The texts here are shared with the GitHub annotations and the Markdown summary, so every CI
//! surface words a verdict the same way.

use std::io::{self, Write};
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};

use super::{fmt_time, Report, Reporter, Row};
use crate::compare::{Comparison, Verdict};

pub struct Junit;

impl Reporter for Junit {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        let xml = document(report).to_string().map_err(io::Error::other)?;
        out.write_all(&without_root_skipped(&xml)?)
    }
}

/// The testcase that stands for the gate's verdict on the whole suite.
pub const GATE_POLICY: &str = "gate-policy";

fn document(report: &Report) -> quick_junit::Report {
    let classname = format!("gpugate.{}", report.command);
    let mut suite = TestSuite::new(format!("gpugate {}", report.command));
    suite.add_properties(properties(report));
    if let Some(start) = report.runs.iter().map(|r| r.started_at).min() {
        suite.set_timestamp(start.fixed_offset());
    }
    let runs_s: f64 = all_runs(report)
        .map(|r| (r.finished_at - r.started_at).as_seconds_f64())
        .sum();
    if runs_s > 0.0 {
        suite.set_time(Duration::from_secs_f64(runs_s));
    }
    if let Some(error) = &report.error {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status
            .set_type(error.kind.as_str())
            .set_message(error.message.as_str());
        let located: Vec<String> = [("file", &error.file), ("field", &error.field)]
            .into_iter()
            .filter_map(|(what, v)| v.as_ref().map(|v| format!("{what}: {v}")))
            .collect();
        if !located.is_empty() {
            status.set_description(located.join("\n"));
        }
        let mut case = TestCase::new("gpugate", status);
        case.set_classname(classname.as_str());
        suite.add_test_case(case);
    }
    for row in &report.rows {
        let mut case = TestCase::new(row.key.as_str(), row_status(report, row));
        case.set_classname(format!("{classname}.{}", row.kernel));
        // The GPU time this kernel cost the job (warm-ups and samples over every run): what a
        // test tab's duration means. Its median per iteration is in the message and properties.
        let spent = measuring_time_s(report, &row.key);
        if spent > 0.0 {
            case.set_time(Duration::from_secs_f64(spent));
        }
        if matches!(row.verdict, Verdict::Pass | Verdict::Improvement) {
            case.set_system_out(numbers(row));
        }
        suite.add_test_case(case);
    }
    for u in &report.unsupported {
        let mut status = TestCaseStatus::skipped();
        status
            .set_type("unsupported")
            .set_message(format!("unsupported: {}", u.reason));
        let mut case = TestCase::new(u.key.as_str(), status);
        case.set_classname(format!("{classname}.{}", u.kernel));
        suite.add_test_case(case);
    }
    suite.add_test_case(gate_policy(report, &classname));
    let mut doc = quick_junit::Report::new("gpugate");
    doc.add_test_suite(suite);
    doc
}

fn row_status(report: &Report, row: &Row) -> TestCaseStatus {
    if row.verdict == Verdict::WrongResult || !row.verification.ok {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status
            .set_type("wrong_result")
            .set_message(wrong_result_text(row))
            .set_description(numbers(row));
        return status;
    }
    match row.verdict {
        Verdict::Regression => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status
                .set_type("regression")
                .set_message(regression_text(row))
                .set_description(numbers(row));
            status
        }
        Verdict::Inconclusive => {
            let mut status = TestCaseStatus::skipped();
            status
                .set_type("inconclusive")
                .set_message(inconclusive_text(report, row));
            status
        }
        _ => TestCaseStatus::success(),
    }
}

fn gate_policy(report: &Report, classname: &str) -> TestCase {
    let outcome = &report.outcome;
    let status = if outcome.exit_code == 0 {
        TestCaseStatus::success()
    } else {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
        status
            .set_type(format!("exit_{}", outcome.exit_code))
            .set_message(gate_text(report))
            .set_description(gate_details(report).join("\n"));
        status
    };
    let mut case = TestCase::new(GATE_POLICY, status);
    case.set_classname(classname);
    if outcome.exit_code == 0 {
        case.set_system_out(gate_text(report));
    }
    case
}

fn properties(report: &Report) -> Vec<Property> {
    let mut props = vec![
        Property::new("command", report.command.as_str()),
        Property::new("gpugate_version", env!("CARGO_PKG_VERSION")),
        Property::new("schema_version", report.schema_version.to_string()),
        Property::new("verdict", report.outcome.verdict.as_str()),
        Property::new("exit_code", report.outcome.exit_code.to_string()),
        Property::new("outcome", report.outcome.message.as_str()),
    ];
    let optional = [
        ("device_key", report.device_key.clone()),
        (
            "device",
            report.fingerprint.as_ref().map(|f| f.name.clone()),
        ),
        (
            "driver",
            report.fingerprint.as_ref().map(|f| f.driver_string()),
        ),
        (
            "shader_checks",
            report.shader_checks.map(|m| m.name().to_string()),
        ),
        ("baseline_file", report.baseline_file.clone()),
        (
            "compared_before",
            report.compared.as_ref().map(|c| c.before.clone()),
        ),
        (
            "compared_after",
            report.compared.as_ref().map(|c| c.after.clone()),
        ),
        (
            "suite_alpha",
            report.policy.as_ref().map(|p| p.alpha.to_string()),
        ),
        (
            "require_conclusive",
            report.policy.as_ref().map(|p| p.require_conclusive.clone()),
        ),
        (
            "driver_change",
            report
                .driver_change
                .as_ref()
                .map(|d| format!("{} → {} ({})", d.baseline, d.current, d.policy.as_str())),
        ),
        (
            "calibration",
            report.calibration.as_ref().map(|c| {
                format!(
                    "{} false alarm(s) in {} A/A checks (95 % upper bound {:.3}, α {})",
                    c.false_alarms, c.checks, c.false_alarm_upper95, c.alpha
                )
            }),
        ),
    ];
    props.extend(
        optional
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| Property::new(name, v))),
    );
    props.extend(
        report
            .notes
            .iter()
            .map(|note| Property::new("note", note.as_str())),
    );
    props
}

fn all_runs(report: &Report) -> impl Iterator<Item = &crate::runner::RunResult> {
    report.runs.iter().chain(&report.confirmation_runs)
}

/// Seconds of GPU work spent measuring instance `key`: warm-up plus every sample's batch.
fn measuring_time_s(report: &Report, key: &str) -> f64 {
    all_runs(report)
        .flat_map(|run| &run.kernels)
        .filter(|k| k.key == key)
        .map(|k| {
            let m = &k.measurement;
            m.warmup.seconds + m.samples_s.iter().sum::<f64>() * f64::from(m.batch)
        })
        .filter(|s| s.is_finite())
        .sum()
}

// The texts every CI surface shows (JUnit, GitHub annotations, Markdown).

/// A time ratio as a signed percentage change: 1.25 → "+25.0 %".
pub(super) fn fmt_change(ratio: f64) -> String {
    if ratio.is_finite() {
        format!("{:+.1} %", (ratio - 1.0) * 100.0)
    } else {
        "n/a".into()
    }
}

/// The comparison's numbers in one line: ratio, interval, threshold, p-value and medians.
pub(super) fn comparison_text(c: &Comparison) -> String {
    let tested = if c.tested_alpha.is_finite() {
        format!(" at α {:.4}", c.tested_alpha)
    } else {
        String::new()
    };
    let p = if c.p_value.is_finite() {
        format!("p = {:.2e}{tested}", c.p_value)
    } else {
        "p n/a".into()
    };
    format!(
        "ratio {:.3} ({}), interval {:.3}–{:.3}, threshold +{:.0} %, {p}; median {} baseline → {} now",
        c.ratio,
        fmt_change(c.ratio),
        c.ratio_low,
        c.ratio_high,
        c.threshold * 100.0,
        fmt_time(c.baseline_s),
        fmt_time(c.current_s),
    )
}

/// `regression <key>: <numbers>`.
pub(super) fn regression_text(row: &Row) -> String {
    match &row.comparison {
        Some(c) => format!("regression {}: {}", row.key, comparison_text(c)),
        None => format!("regression {}", row.key),
    }
}

/// `wrong result <key>: <verification detail>`.
pub(super) fn wrong_result_text(row: &Row) -> String {
    let v = &row.verification;
    format!(
        "wrong result {}: {} (max error {} > tolerance {} over {} values)",
        row.key, v.detail, v.max_error, v.tolerance, v.checked
    )
}

/// `inconclusive: <reason>: <text>`, the reason from the comparison or else the outcome's list.
pub(super) fn inconclusive_text(report: &Report, row: &Row) -> String {
    let reason = row
        .comparison
        .as_ref()
        .and_then(|c| c.inconclusive)
        .or_else(|| {
            report
                .outcome
                .inconclusive
                .iter()
                .find(|u| u.key == row.key)
                .map(|u| u.reason)
        })
        .map_or("unknown", |r| r.as_str());
    let text = row.comparison.as_ref().map_or("", |c| c.reason.as_str());
    format!("inconclusive: {reason}: {text}")
}

/// The gate's verdict in one line: `exit N (verdict): message`.
pub(super) fn gate_text(report: &Report) -> String {
    let o = &report.outcome;
    format!(
        "exit {} ({}): {}",
        o.exit_code,
        o.verdict.as_str(),
        o.message
    )
}

/// Everything that made the gate fail, one line each: the error, the failed and inconclusive
/// kernels with their reasons, a driver change.
fn gate_details(report: &Report) -> Vec<String> {
    let mut lines = vec![];
    if let Some(e) = &report.error {
        lines.push(format!("error ({}): {}", e.kind, e.message));
    }
    for row in &report.rows {
        if row.verdict == Verdict::Regression {
            lines.push(regression_text(row));
        } else if row.verdict == Verdict::WrongResult || !row.verification.ok {
            lines.push(wrong_result_text(row));
        }
    }
    for u in &report.outcome.inconclusive {
        lines.push(format!("inconclusive {} ({})", u.key, u.reason.as_str()));
    }
    if let Some(d) = &report.driver_change {
        lines.push(format!(
            "driver changed: {} → {} (--driver-change {})",
            d.baseline,
            d.current,
            d.policy.as_str()
        ));
    }
    lines
}

/// A row's measurement, for a passed testcase's output or a failure's body.
fn numbers(row: &Row) -> String {
    let mut text = format!(
        "median {} per iteration, {:.3} {}",
        fmt_time(row.median_s),
        row.rate,
        row.unit.label()
    );
    if let Some(peak) = row.pct_of_peak {
        text += &format!(" ({:.1} % of peak)", peak * 100.0);
    }
    if let Some(c) = &row.comparison {
        text += &format!("\n{}: {}", c.verdict.as_str(), comparison_text(c));
    }
    if let Some(d) = row.detectable_ratio {
        text += &format!("\ndetectable regression: {}", fmt_change(d));
    }
    text
}

/// Jenkins' JUnit schema (tests/schemas/junit-10.xsd, which the xunit plugin validates against)
/// has no `skipped` attribute on `<testsuites>`, which quick-junit always writes: drop it there.
/// The `<testsuite>` keeps its `skipped` count, where GitLab, Jenkins and junitparser read it.
fn without_root_skipped(xml: &str) -> io::Result<Vec<u8>> {
    use quick_xml::events::{BytesStart, Event};
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut writer = quick_xml::Writer::new(Vec::with_capacity(xml.len()));
    loop {
        match reader.read_event().map_err(io::Error::other)? {
            Event::Eof => break,
            Event::Start(start) if start.name().as_ref() == b"testsuites" => {
                let mut root = BytesStart::new("testsuites");
                for attr in start.attributes() {
                    let attr = attr.map_err(io::Error::other)?;
                    if attr.key.as_ref() != b"skipped" {
                        root.push_attribute(attr);
                    }
                }
                writer.write_event(Event::Start(root))?;
            }
            event => writer.write_event(event)?,
        }
    }
    Ok(writer.into_inner())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A check report with one row per verdict, one unsupported kernel, exit 1.
    pub(crate) fn fixture() -> Report {
        serde_json::from_str(include_str!("../../tests/fixtures/ci-check-report.json")).unwrap()
    }

    fn xml(report: &Report) -> String {
        let mut out = vec![];
        Junit.write(report, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    #[test]
    fn every_verdict_maps_to_its_element() {
        let text = xml(&fixture());
        assert!(text.starts_with("<?xml"), "{text}");
        // regression → failure, wrong result → error, inconclusive + unsupported → skipped, and
        // the failed gate-policy.
        assert_eq!(count(&text, "<failure "), 2, "{text}");
        assert_eq!(count(&text, "<error "), 1, "{text}");
        assert_eq!(count(&text, "<skipped "), 2, "{text}");
        assert!(
            text.contains(
                r#"<testsuite name="gpugate check" tests="7" skipped="2" errors="1" failures="2""#
            ),
            "{text}"
        );
        assert!(text.contains("inconclusive: noise: "), "{text}");
        assert!(text.contains("unsupported: needs SHADER_F16"), "{text}");
        assert!(
            text.contains("ratio 8.000 (+700.0 %), interval 7.500–8.500"),
            "{text}"
        );
        assert!(text.contains(r#"<testcase name="gate-policy" classname="gpugate.check">"#));
        // Jenkins' schema has no skipped count on the root.
        let root = &text[text.find("<testsuites").unwrap()..];
        let root = &root[..root.find('>').unwrap()];
        assert!(!root.contains("skipped"), "{root}");
    }

    #[test]
    fn gate_policy_passes_only_on_exit_0() {
        let mut report = fixture();
        report.rows.retain(|r| r.verdict == Verdict::Pass);
        report.outcome.exit_code = 0;
        report.outcome.verdict = Verdict::Pass;
        report.outcome.message = "pass".into();
        report.outcome.inconclusive.clear();
        let text = xml(&report);
        assert_eq!(count(&text, "<failure "), 0, "{text}");
        // Exit 3 with nothing failed per kernel: the gate-policy testcase alone fails.
        report.outcome.exit_code = 3;
        report.outcome.message = "no kernel was validated".into();
        let text = xml(&report);
        assert_eq!(count(&text, "<failure "), 1, "{text}");
        assert!(
            text.contains("exit 3 (pass): no kernel was validated"),
            "{text}"
        );
    }

    #[test]
    fn an_error_report_is_one_errored_testcase_and_a_failed_gate() {
        let err = crate::error::Error::Usage("no baseline for this device".into());
        let report = Report::from_error("check", &err);
        let text = xml(&report);
        assert!(
            text.contains(r#"<testcase name="gpugate" classname="gpugate.check">"#),
            "{text}"
        );
        assert!(text.contains(r#"type="usage"/>"#), "{text}");
        assert_eq!(count(&text, "<failure "), 1, "{text}");
        assert!(text.contains(r#"tests="2""#), "{text}");
    }

    #[test]
    fn a_regression_message_carries_the_numbers() {
        let report = fixture();
        let row = report
            .rows
            .iter()
            .find(|r| r.verdict == Verdict::Regression);
        let text = regression_text(row.unwrap());
        assert!(
            text.starts_with("regression copy[n=1024]: ratio 8.000"),
            "{text}"
        );
        assert!(text.contains("threshold +100 %"), "{text}");
        assert!(text.contains("p = "), "{text}");
        assert!(text.contains("baseline → "), "{text}");
        assert_eq!(fmt_change(0.95), "-5.0 %");
        assert_eq!(fmt_time(2.5e-6), "2.50 µs");
    }
}
