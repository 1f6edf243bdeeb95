//! What CI systems read, through the real binary and the real consumers: the `--junit` file
//! against Jenkins' schema (tests/schemas/junit-10.xsd, with xmlschema) and read by junitparser;
//! GitHub's annotations and step summary (the summary parsed by markdown-it-py as a GFM table);
//! and the README's GitHub Actions and GitLab jobs, parsed as YAML.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

use crate::{gpugate_command, recorded_baseline, timing_lock, MECHANICS_THRESHOLD};

/// The test tools' Python (xmlschema, junitparser, markdown-it-py): failing, never skipping,
/// when it is missing.
fn python() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/python");
    assert!(
        path.exists(),
        "{} is missing: run scripts/test (scripts/ensure-test-tools installs it)",
        path.display()
    );
    path
}

/// Runs a Python script with arguments; its stdout as JSON.
fn python_json(script: &str, args: &[&Path]) -> Value {
    let out = std::process::Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Validates a JUnit file against the schema (xmlschema raises on any violation), then reads it
/// with junitparser: the suites' counts and each case's result.
const JUNIT: &str = r#"
import json, sys, xmlschema
from junitparser import JUnitXml, Failure, Error, Skipped
xmlschema.XMLSchema(sys.argv[1]).validate(sys.argv[2])
doc = JUnitXml.fromfile(sys.argv[2])
suites = []
for suite in doc:
    cases = []
    for case in suite:
        results = [{"kind": type(r).__name__.lower(), "type": r.type, "message": r.message}
                   for r in case.result if isinstance(r, (Failure, Error, Skipped))]
        cases.append({"name": case.name, "classname": case.classname, "time": case.time,
                      "results": results})
    props = {p.name: p.value for p in suite.properties()}
    suites.append({"name": suite.name, "tests": suite.tests, "failures": suite.failures,
                   "errors": suite.errors, "skipped": suite.skipped, "cases": cases,
                   "properties": props})
print(json.dumps(suites))
"#;

/// Parses Markdown with markdown-it-py (CommonMark plus GFM tables): the headings and each
/// table's rows of cell texts, as a renderer would show them.
const MARKDOWN: &str = r#"
import json, sys
from markdown_it import MarkdownIt
tokens = MarkdownIt("commonmark").enable("table").parse(open(sys.argv[1], encoding="utf-8").read())
def text(inline):
    return "".join(c.content for c in inline.children if c.type in ("text", "code_inline"))
headings, tables, cell = [], [], False
for i, t in enumerate(tokens):
    if t.type == "heading_open":
        headings.append(text(tokens[i + 1]))
    elif t.type == "table_open":
        tables.append([])
    elif t.type == "tr_open":
        tables[-1].append([])
    elif t.type in ("th_open", "td_open"):
        tables[-1][-1].append(text(tokens[i + 1]))
print(json.dumps({"headings": headings, "tables": tables}))
"#;

struct Run {
    out: Output,
    dir: tempfile::TempDir,
}

impl Run {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
}

/// `gpugate --format json ARGS --junit … --export md=…` as on a GitHub runner: GITHUB_ACTIONS
/// set and the step summary appended to `summary`.
fn on_github(args: &[&str], baselines: &Path, summary: &Path) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let out = gpugate_command()
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", summary)
        .args(["--format", "json"])
        .args(args)
        .arg("--baselines")
        .arg(baselines)
        .arg("--junit")
        .arg(dir.path().join("junit.xml"))
        .arg("--export")
        .arg(format!("md={}", dir.path().join("report.md").display()))
        .output()
        .unwrap();
    // Annotations go to stderr: stdout is one JSON document.
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(
        report["outcome"]["exit_code"].as_i64(),
        out.status.code().map(i64::from),
        "{report:#}"
    );
    Run { out, dir }
}

/// The JUnit file's one suite, validated and read; asserts `gate-policy` fails exactly when the
/// exit code is not 0.
fn junit(run: &Run) -> Value {
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemas/junit-10.xsd");
    let suites = python_json(JUNIT, &[&schema, &run.path("junit.xml")]);
    assert_eq!(suites.as_array().unwrap().len(), 1, "{suites:#}");
    let suite = suites[0].clone();
    let gate = cases(&suite)
        .into_iter()
        .find(|c| c["name"] == "gate-policy")
        .unwrap_or_else(|| panic!("no gate-policy testcase: {suite:#}"));
    let failed = gate["results"][0]["kind"] == "failure";
    assert_eq!(failed, run.out.status.code() != Some(0), "{suite:#}");
    suite
}

fn cases(suite: &Value) -> Vec<Value> {
    suite["cases"].as_array().unwrap().clone()
}

fn counts(suite: &Value) -> [i64; 4] {
    ["tests", "failures", "errors", "skipped"].map(|k| suite[k].as_i64().unwrap())
}

/// The Markdown file parsed: headings and tables.
fn markdown(path: &Path) -> Value {
    python_json(MARKDOWN, &[path])
}

/// A real regression (copy encoded eight times per iteration, judged at 100 %) beside a kernel
/// that passes at the mechanics threshold: a failure with the numbers, annotations on stderr, and
/// a summary whose table has a row per kernel.
#[test]
fn a_regression_fails_its_testcase_and_the_gate_and_is_annotated() {
    let baseline = recorded_baseline();
    let _lock = timing_lock();
    let summary = tempfile::NamedTempFile::new().unwrap();
    let run = on_github(
        &[
            "check",
            "--kernel",
            "copy",
            "--kernel",
            "xor_transform",
            "--threshold",
            MECHANICS_THRESHOLD,
            "--kernel-threshold",
            "copy=100",
            "--test-slowdown",
            "copy=8",
        ],
        baseline,
        summary.path(),
    );
    assert_eq!(run.out.status.code(), Some(1), "{}", run.stderr());

    let suite = junit(&run);
    assert_eq!(suite["name"], "gpugate check");
    assert_eq!(counts(&suite), [3, 2, 0, 0], "{suite:#}");
    assert_eq!(suite["properties"]["exit_code"], "1", "{suite:#}");
    assert!(suite["properties"]["device_key"].is_string(), "{suite:#}");
    let copy = cases(&suite)
        .into_iter()
        .find(|c| c["classname"] == "gpugate.check.copy")
        .unwrap();
    assert!(
        copy["name"].as_str().unwrap().starts_with("copy["),
        "{copy}"
    );
    assert!(copy["time"].as_f64().unwrap() > 0.0, "{copy}");
    let failure = &copy["results"][0];
    assert_eq!(failure["kind"], "failure", "{copy}");
    assert_eq!(failure["type"], "regression", "{copy}");
    let message = failure["message"].as_str().unwrap();
    for part in [
        "ratio ",
        "interval ",
        "threshold +100 %",
        "p = ",
        "baseline → ",
    ] {
        assert!(message.contains(part), "{part:?} missing: {message}");
    }

    let stderr = run.stderr();
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("::error title="))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].starts_with("::error title=gpugate%3A regression copy["),
        "{stderr}"
    );

    for file in [summary.path().to_path_buf(), run.path("report.md")] {
        let md = markdown(&file);
        assert_eq!(
            md["headings"][0], "gpugate check: regression (exit 1)",
            "{md:#}"
        );
        let table = md["tables"][0].as_array().unwrap();
        assert_eq!(table.len(), 3, "header and two kernels: {md:#}");
        assert!(
            table.iter().all(|r| r.as_array().unwrap().len() == 7),
            "{md:#}"
        );
        assert_eq!(table[0][0], "Kernel", "{md:#}");
        let copy = table
            .iter()
            .find(|r| r[0].as_str().unwrap().starts_with("copy["))
            .unwrap();
        assert_eq!(copy[6], "regression", "{md:#}");
        assert!(copy[3].as_str().unwrap().starts_with('+'), "{md:#}");
    }
}

/// An error report (no baseline for this device) is one errored testcase and a failed gate, an
/// `::error` annotation, and a summary appended once per run.
#[test]
fn an_error_report_is_an_errored_testcase_and_each_run_appends_a_summary() {
    let empty = tempfile::tempdir().unwrap();
    let summary = tempfile::NamedTempFile::new().unwrap();
    let _lock = crate::shared_lock();
    for n in 1..=2 {
        let run = on_github(&["check", "--kernel", "copy"], empty.path(), summary.path());
        let code = run.out.status.code().unwrap();
        assert!(matches!(code, 2 | 3), "exit {code}: {}", run.stderr());
        let suite = junit(&run);
        assert_eq!(counts(&suite), [2, 1, 1, 0], "{suite:#}");
        let case = &cases(&suite)[0];
        assert_eq!(case["name"], "gpugate", "{suite:#}");
        assert_eq!(case["results"][0]["kind"], "error", "{suite:#}");
        assert!(case["results"][0]["type"].is_string(), "{suite:#}");
        assert!(
            run.stderr()
                .contains("::error title=gpugate check failed ("),
            "{}",
            run.stderr()
        );
        let md = markdown(summary.path());
        let headings = md["headings"].as_array().unwrap();
        assert_eq!(headings.len(), n, "one summary per run: {md:#}");
        assert!(headings.iter().all(|h| h
            .as_str()
            .unwrap()
            .starts_with(&format!("gpugate check: inconclusive (exit {code})"))));
    }
}

/// A baseline whose copy runs are spread evenly (in log) from e⁻⁴ to e⁴ times their recorded
/// speed — one wide mode, not several — cannot judge copy even at the mechanics threshold (a
/// run-to-run sd near 250 % against ln 10): the kernel is skipped with its reason, and the gate
/// (every kernel required conclusive) fails with exit 3 — never "0 failures" — with a warning
/// and a gate-level error annotation.
#[test]
fn an_inconclusive_kernel_is_skipped_and_fails_the_gate() {
    let (_dir, file) = crate::trust::doctored(|b| {
        crate::trust::scale_copy(b, |i, n| (8.0 * i as f64 / (n - 1) as f64 - 4.0).exp());
    });
    let summary = tempfile::NamedTempFile::new().unwrap();
    let _lock = timing_lock();
    let run = on_github(
        &[
            "check",
            "--kernel",
            "copy",
            "--threshold",
            MECHANICS_THRESHOLD,
            "--require-conclusive",
            "all",
        ],
        &file,
        summary.path(),
    );
    assert_eq!(run.out.status.code(), Some(3), "{}", run.stderr());
    let suite = junit(&run);
    assert_eq!(counts(&suite), [2, 1, 0, 1], "{suite:#}");
    let copy = &cases(&suite)[0];
    assert_eq!(copy["results"][0]["kind"], "skipped", "{suite:#}");
    let message = copy["results"][0]["message"].as_str().unwrap();
    assert!(message.starts_with("inconclusive: "), "{message}");
    let stderr = run.stderr();
    assert!(
        stderr.contains("::warning title=gpugate%3A inconclusive copy["),
        "{stderr}"
    );
    assert!(
        stderr.contains("::error title=gpugate check%3A gate failed (exit 3)::"),
        "{stderr}"
    );
    let md = markdown(summary.path());
    let row = &md["tables"][0][1];
    assert!(
        row[6].as_str().unwrap().starts_with("inconclusive: "),
        "{md:#}"
    );
}

/// A `run` report (no baseline) through the library's writers with a kernel key full of Markdown
/// syntax: the table still parses with one row per kernel and the key's text intact, and the
/// JUnit file is valid.
#[test]
fn run_reports_escape_markdown_and_pass_without_a_comparison() {
    use gpugate::report::{Junit, Markdown, Reporter};
    let out = {
        let _lock = crate::shared_lock();
        crate::gpugate()
            .args([
                "--format",
                "json",
                "run",
                "--max-time",
                "0.2",
                "--kernel",
                "copy",
            ])
            .output()
            .unwrap()
    };
    assert_eq!(out.status.code(), Some(0));
    let mut report: gpugate::report::Report = serde_json::from_slice(&out.stdout).unwrap();
    let odd = "copy[n=1|2]_*x*`<b>`\\ #1 & ~y~";
    report.rows[0].key = odd.into();
    report.notes.push("a | note\nover two lines".into());
    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("run.md");
    let mut text = vec![];
    Markdown.write(&report, &mut text).unwrap();
    std::fs::write(&md, text).unwrap();
    let parsed = markdown(&md);
    let table = parsed["tables"][0].as_array().unwrap();
    assert_eq!(table.len(), 2, "{parsed:#}");
    assert_eq!(
        table[0],
        serde_json::json!(["Kernel", "Median", "Rate", "% of peak", "Verdict"])
    );
    assert_eq!(table[1][0], odd, "{parsed:#}");
    assert_eq!(table[1][4], "pass", "{parsed:#}");

    let mut xml = vec![];
    Junit.write(&report, &mut xml).unwrap();
    std::fs::write(dir.path().join("junit.xml"), xml).unwrap();
    let run = Run { out, dir };
    let suite = junit(&run);
    assert_eq!(counts(&suite), [2, 0, 0, 0], "{suite:#}");
    assert_eq!(cases(&suite)[0]["name"], odd);
}

/// The README's two CI jobs parse as YAML and carry what each runner needs.
#[test]
fn the_readme_ci_examples_are_valid_jobs() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("\n## In a CI pipeline (GitHub Actions, GitLab)\n")
        .nth(1)
        .expect("README section \"In a CI pipeline\"");
    let section = section.split("\n## ").next().unwrap();
    let blocks: Vec<&str> = section
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("\n```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 2, "a GitHub and a GitLab job");
    let load = |text: &str| {
        let mut docs = YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(docs.len(), 1);
        docs.remove(0)
    };
    let github = load(blocks[0]);
    let gitlab = load(blocks[1]);

    // GitHub: one job whose steps run gpugate with --junit and keep the files whatever happens.
    let jobs = github["jobs"].as_hash().expect("jobs");
    assert_eq!(jobs.len(), 1);
    let job = jobs.values().next().unwrap();
    assert!(!job["runs-on"].is_badvalue());
    let steps = job["steps"].as_vec().expect("jobs.<id>.steps");
    let gate = steps
        .iter()
        .filter_map(|s| s["run"].as_str())
        .find(|r| r.contains("--junit gpugate-junit.xml"))
        .expect("a step running gpugate with --junit");
    assert!(gate.starts_with("scripts/check "), "{gate}");
    let upload = steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-artifact@"))
        })
        .expect("an upload-artifact step");
    assert_eq!(upload["if"].as_str(), Some("always()"));
    let uploaded = upload["with"]["path"].as_str().unwrap();
    for file in ["gpugate-junit.xml", "gpugate.json", "gpugate.md"] {
        assert!(uploaded.contains(file), "{uploaded}");
        assert!(gate.contains(file), "{gate}");
    }

    // GitLab: a job with a script, the JUnit report, artifacts kept always, retried on 4 only.
    let job = &gitlab["gpugate"];
    let script: Vec<&str> = job["script"]
        .as_vec()
        .expect("script")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(script
        .iter()
        .any(|s| s.contains("--junit gpugate-junit.xml")));
    let artifacts = &job["artifacts"];
    assert_eq!(artifacts["when"].as_str(), Some("always"));
    assert_eq!(
        artifacts["reports"]["junit"].as_str(),
        Some("gpugate-junit.xml")
    );
    let paths: Vec<&str> = artifacts["paths"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(paths, ["gpugate-junit.xml", "gpugate.json", "gpugate.md"]);
    assert_eq!(job["retry"]["exit_codes"].as_i64(), Some(4));
    assert!(
        job["retry"]["when"].is_badvalue(),
        "when: would retry exit 1 too"
    );
}
