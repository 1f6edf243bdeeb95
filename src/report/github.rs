//! GitHub Actions workflow commands: `::error` for regressions and wrong results, `::warning`
//! for inconclusive kernels, `::error` for an error report and for a gate that failed with no
//! kernel-level error to show for it (e.g. exit 3 under `--require-conclusive`), so a red job
//! always carries an error annotation that says why.
//!
//! The runner reads workflow commands from the step's stdout and stderr alike (actions/runner,
//! src/Runner.Worker/Handlers/ScriptHandler.cs: both `OutputDataReceived` and
//! `ErrorDataReceived` go through an `OutputManager` with the `ActionCommandManager`), which is
//! why `emit` can send them to stderr under `--format json` and keep stdout one JSON document.

use super::junit::{gate_text, inconclusive_text, regression_text, wrong_result_text};
use super::Report;
use crate::compare::Verdict;

/// One workflow command per line, in the order the report lists the kernels.
pub fn annotations(report: &Report) -> Vec<String> {
    let mut lines = vec![];
    if let Some(e) = &report.error {
        lines.push(command(
            "error",
            &format!("gpugate {} failed ({})", report.command, e.kind),
            &e.message,
        ));
    }
    for row in &report.rows {
        if row.verdict == Verdict::WrongResult || !row.verification.ok {
            lines.push(command(
                "error",
                &format!("gpugate: wrong result {}", row.key),
                &wrong_result_text(row),
            ));
        } else if row.verdict == Verdict::Regression {
            lines.push(command(
                "error",
                &format!("gpugate: regression {}", row.key),
                &regression_text(row),
            ));
        } else if row.verdict == Verdict::Inconclusive {
            lines.push(command(
                "warning",
                &format!("gpugate: inconclusive {}", row.key),
                &inconclusive_text(report, row),
            ));
        }
    }
    let has_error = lines.iter().any(|l| l.starts_with("::error "));
    if report.outcome.exit_code != 0 && !has_error {
        lines.push(command(
            "error",
            &format!(
                "gpugate {}: gate failed (exit {})",
                report.command, report.outcome.exit_code
            ),
            &gate_text(report),
        ));
    }
    lines
}

/// `::name title=…::message`, escaped as @actions/core does (actions/toolkit,
/// packages/core/src/command.ts: `escapeData` and `escapeProperty`; documented in GitHub's
/// "Workflow commands for GitHub Actions"): without it a newline in a message would end the
/// command early and a `::` or `,` in a title would split it.
fn command(name: &str, title: &str, message: &str) -> String {
    format!(
        "::{name} title={}::{}",
        escape_property(title),
        escape_data(message)
    )
}

/// `escapeData`: `%` first, so the escapes themselves are not escaped again.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// `escapeProperty`: the data escapes plus the property separators `:` and `,`.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_the_toolkit() {
        assert_eq!(escape_data("50%\r\nnext"), "50%25%0D%0Anext");
        // A data escape is not re-escaped: `%` goes first.
        assert_eq!(escape_data("%0A"), "%250A");
        assert_eq!(
            escape_property("sgemm[m=64,n=64]: 5%"),
            "sgemm[m=64%2Cn=64]%3A 5%25"
        );
        assert_eq!(escape_data("a: b, c"), "a: b, c");
    }

    #[test]
    fn one_annotation_per_failed_or_unjudged_kernel() {
        let report = crate::report::junit::tests::fixture();
        let lines = annotations(&report);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(lines[0].starts_with("::error title=gpugate%3A regression copy[n=1024]::regression copy[n=1024]: ratio 8.000 (+700.0 %25)"), "{lines:#?}");
        assert!(
            lines[1].starts_with("::error title=gpugate%3A wrong result "),
            "{lines:#?}"
        );
        assert!(
            lines[2].starts_with("::warning title=gpugate%3A inconclusive "),
            "{lines:#?}"
        );
        assert!(lines[2].contains("::inconclusive: noise: "), "{lines:#?}");
        // Every command is one line.
        assert!(lines.iter().all(|l| !l.contains('\n')));
    }

    #[test]
    fn a_gate_failed_by_warnings_alone_gets_an_error() {
        let mut report = crate::report::junit::tests::fixture();
        report.rows.retain(|r| r.verdict == Verdict::Inconclusive);
        report.outcome.exit_code = 3;
        report.outcome.message = "every kernel was inconclusive".into();
        let lines = annotations(&report);
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].starts_with("::warning "));
        assert!(
            lines[1].starts_with("::error title=gpugate check%3A gate failed (exit 3)::exit 3"),
            "{lines:#?}"
        );
        // A passing gate with nothing inconclusive says nothing.
        report.rows.clear();
        report.outcome.exit_code = 0;
        assert!(annotations(&report).is_empty());
    }

    #[test]
    fn an_error_report_is_one_error() {
        let err = crate::error::Error::Usage("bad flag\nsecond line".into());
        let lines = annotations(&Report::from_error("run", &err));
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(
            lines[0].starts_with("::error title=gpugate run failed (usage)::"),
            "{lines:#?}"
        );
        assert!(lines[0].contains("bad flag%0Asecond line"), "{lines:#?}");
    }
}
