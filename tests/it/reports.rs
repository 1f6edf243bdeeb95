//! Every report kind, made by the real binary, against its consumers: the JSON report against
//! docs/report.schema.json and BMF exports against tests/schemas/bmf.schema.json (both with
//! Python's `jsonschema`, the reference implementation, through tests/schemas/validate.py), CSV
//! exports through Python's `csv` module. Error reports too: every exit writes every file asked
//! for, stdout under `--format json` is one JSON document naming the error, and `--json` holds the
//! same bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gpugate::report::export::CSV_COLUMNS;
use gpugate::runner::TEST_FAULT_ENV;
use serde_json::Value;

use crate::{gpugate, MECHANICS_THRESHOLD, SOFTWARE_THRESHOLD};

/// One report to make: `gpugate --format json ARGS… SINKS…` in an empty directory. In `args`,
/// `{baseline}` is the shared recorded baseline ([`crate::recorded_baseline`]), `{out}` a new
/// directory of the case's own, `{corpus}` tests/corpus/baselines, and `{json:NAME}` the report
/// an earlier case NAME wrote (`compare`'s inputs).
struct Case {
    name: &'static str,
    args: &'static [&'static str],
    exit: i32,
    /// `error.kind` of an error report; None for a report with an outcome.
    error: Option<&'static str>,
    env: &'static [(&'static str, &'static str)],
    /// The verdict is timing-sensitive: measured with the device to itself, and accepted as
    /// exit 3 when every kernel is inconclusive as `unsteady` or `contended` (a machine too
    /// loaded to settle a warm-up; the report is validated all the same).
    exclusive: bool,
}

const fn report(name: &'static str, args: &'static [&'static str], exit: i32) -> Case {
    Case {
        name,
        args,
        exit,
        error: None,
        env: &[],
        exclusive: false,
    }
}

const fn failed(
    name: &'static str,
    args: &'static [&'static str],
    exit: i32,
    kind: &'static str,
) -> Case {
    Case {
        error: Some(kind),
        ..report(name, args, exit)
    }
}

impl Case {
    const fn env(self, env: &'static [(&'static str, &'static str)]) -> Case {
        Case { env, ..self }
    }

    const fn exclusive(self) -> Case {
        Case {
            exclusive: true,
            ..self
        }
    }
}

/// Every report kind, one line each, in order (a later case may read an earlier one's report).
/// Kept short: copy only, 0.2 s per kernel and run, the shared baseline.
#[rustfmt::skip]
const CASES: &[Case] = &[
    report("run", &["run", "--kernel", "copy", "--max-time", "0.2"], 0),
    report("run-2", &["run", "--runs", "2", "--kernel", "copy", "--max-time", "0.2"], 0),
    report("record", &["record", "--runs", "2", "--kernel", "copy", "--max-time", "0.2", "--out", "{out}/b.json"], 0),
    report("check", &["check", "--baselines", "{baseline}", "--kernel", "copy", "--max-time", "0.2", "--threshold", MECHANICS_THRESHOLD], 0),
    report("check-regression", &["check", "--baselines", "{baseline}", "--kernel", "copy", "--max-time", "0.2", "--threshold", SOFTWARE_THRESHOLD, "--test-slowdown", "copy=8"], 1).exclusive(),
    // Under CI a bootstrap records and stops (exit 3): the bootstrap report without a self-check.
    report("check-bootstrap", &["check", "--record-missing", "--record-runs", "2", "--baselines", "{out}/baselines", "--kernel", "copy", "--max-time", "0.2"], 3).env(&[("CI", "true")]),
    report("calibrate", &["calibrate", "--checks", "1", "--baselines", "{baseline}", "--kernel", "copy", "--max-time", "0.2", "--threshold", MECHANICS_THRESHOLD], 0),
    report("compare", &["compare", "{json:run-2}", "{json:run-2}", "--threshold", MECHANICS_THRESHOLD], 0),
    report("profile", &["profile", "copy", "--sweep", "n=1024,4096", "--max-time", "0.2"], 0),
    failed("compare-one-run", &["compare", "{json:run}", "{json:run-2}"], 2, "report_file"),
    failed("no-baseline", &["check", "--baselines", "{out}", "--kernel", "copy", "--max-time", "0.2"], 3, "no_baseline"),
    failed("no-adapter", &["--adapter", "no-such-adapter", "run", "--kernel", "copy"], 3, "adapter_not_found"),
    failed("bad-baseline", &["check", "--baselines", "{corpus}/batch-zero.json"], 2, "baseline_file"),
    failed("failed-child", &["run", "--runs", "2", "--kernel", "copy", "--max-time", "0.2"], 4, "child_run").env(&[(TEST_FAULT_ENV, "panic")]),
    failed("panic", &["run", "--kernel", "copy", "--max-time", "0.2"], 4, "fault").env(&[(TEST_FAULT_ENV, "panic")]),
];

/// The files every case asks for besides stdout, as (flag, value) with `{dir}` the case's own
/// directory: each must exist after every exit, errors included. Every sink gpugate writes
/// belongs here; the test checks the content of those this module knows (JSON, BMF, CSV).
const SINKS: &[(&str, &str)] = &[
    ("--json", "{dir}/report.json"),
    ("--export", "bmf={dir}/bmf.json"),
    ("--export", "csv={dir}/report.csv"),
    ("--export", "md={dir}/summary.md"),
    ("--junit", "{dir}/junit.xml"),
    ("--html", "{dir}/report.html"),
];

/// What one case left: its directory and its report (stdout).
struct Made {
    dir: PathBuf,
    report: Value,
}

impl Made {
    fn json(&self) -> PathBuf {
        self.dir.join("report.json")
    }
    fn bmf(&self) -> PathBuf {
        self.dir.join("bmf.json")
    }
    fn junit(&self) -> PathBuf {
        self.dir.join("junit.xml")
    }
    fn csv(&self) -> PathBuf {
        self.dir.join("report.csv")
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    let path = root().join(".tools/venv/bin/python");
    assert!(
        path.exists(),
        "{} is missing: run scripts/test (scripts/ensure-test-tools installs jsonschema)",
        path.display()
    );
    path
}

fn expand(arg: &str, out: &Path, made: &BTreeMap<&str, Made>) -> String {
    if let Some(name) = arg.strip_prefix("{json:").and_then(|a| a.strip_suffix('}')) {
        let earlier = made
            .get(name)
            .unwrap_or_else(|| panic!("{{json:{name}}}: no earlier case {name}"));
        return earlier.json().display().to_string();
    }
    arg.replace(
        "{baseline}",
        &crate::recorded_baseline().display().to_string(),
    )
    .replace("{out}", &out.display().to_string())
    .replace(
        "{corpus}",
        &root().join("tests/corpus/baselines").display().to_string(),
    )
}

/// Make one case's report and check what needs no other tool: the exit code, one JSON document
/// on stdout, the error it names, every sink written, `--json` equal to stdout.
fn make(case: &Case, under: &Path, made: &BTreeMap<&str, Made>) -> Made {
    let dir = under.join(case.name);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    let args: Vec<String> = case.args.iter().map(|a| expand(a, &out, made)).collect();
    let mut cmd = gpugate();
    cmd.args(["--format", "json"]).args(&args);
    for (flag, value) in SINKS {
        cmd.arg(flag)
            .arg(value.replace("{dir}", &dir.display().to_string()));
    }
    for (name, value) in case.env {
        cmd.env(name, value);
    }
    let output = {
        let _lock = case.exclusive.then(crate::timing_lock);
        let _shared = (!case.exclusive).then(crate::shared_lock);
        cmd.output().unwrap()
    };
    let name = case.name;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{name}: exit {:?}, stdout is not one JSON document ({e}):\n{}\n{stderr}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout)
        )
    });
    let exit = if case.exclusive && unsettled(&report) {
        eprintln!("{name}: every kernel unsteady or contended here: exit 3 accepted");
        3
    } else {
        case.exit
    };
    assert_eq!(
        output.status.code(),
        Some(exit),
        "{name}: {args:?}\n{stderr}"
    );
    assert_eq!(report["outcome"]["exit_code"], exit, "{name}: {report}");
    match case.error {
        Some(kind) => {
            assert_eq!(report["error"]["kind"], kind, "{name}: {report}");
            assert!(report["rows"].as_array().unwrap().is_empty(), "{name}");
        }
        None => assert!(report.get("error").is_none(), "{name}: {report}"),
    }
    for (_, value) in SINKS {
        let path = value
            .split('=')
            .next_back()
            .unwrap()
            .replace("{dir}", &dir.display().to_string());
        assert!(
            Path::new(&path).is_file(),
            "{name}: {path} not written\n{stderr}"
        );
    }
    let made = Made { dir, report };
    assert_eq!(
        std::fs::read(made.json()).unwrap(),
        output.stdout,
        "{name}: --json differs from stdout"
    );
    // What gpugate wrote, gpugate reads back (compare and report load saved reports).
    gpugate::report::load(&made.json()).unwrap_or_else(|e| panic!("{name}: {e}"));
    made
}

/// Every row inconclusive because the machine could not measure steadily.
fn unsettled(report: &Value) -> bool {
    let rows = report["rows"].as_array().unwrap();
    !rows.is_empty()
        && rows.iter().all(|r| {
            ["unsteady", "contended"]
                .contains(&r["comparison"]["inconclusive"].as_str().unwrap_or(""))
        })
}

/// `validate.py SCHEMA FILES…`: every file valid, or the errors.
fn validate(schema: &str, files: &[PathBuf]) {
    let out = std::process::Command::new(python())
        .arg(root().join("tests/schemas/validate.py"))
        .arg(root().join(schema))
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{schema}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Each file as Python's csv module reads it: a list of records.
fn read_csv(files: &[PathBuf]) -> Vec<Vec<Vec<String>>> {
    let script = "import csv, json, sys\n\
                  print(json.dumps([list(csv.reader(open(p, newline='', encoding='utf-8'), strict=True)) \
                  for p in sys.argv[1:]]))";
    let out = std::process::Command::new(python())
        .args(["-c", script])
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The BMF export: one benchmark per verified row, named by its key, latency = the median in ns,
/// throughput = the rate in operations/s, each with lower ≤ value ≤ upper and value ≥ 0.
fn check_bmf(name: &str, made: &Made) {
    let bmf: Value = serde_json::from_slice(&std::fs::read(made.bmf()).unwrap()).unwrap();
    let bmf = bmf.as_object().unwrap_or_else(|| panic!("{name}: {bmf}"));
    let rows = made.report["rows"].as_array().unwrap();
    let verified: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r["verification"]["ok"] == true)
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    let names: BTreeSet<&str> = bmf.keys().map(String::as_str).collect();
    assert_eq!(names, verified, "{name}");
    for row in rows
        .iter()
        .filter(|r| verified.contains(r["key"].as_str().unwrap()))
    {
        let bench = &bmf[row["key"].as_str().unwrap()];
        for (measure, expected) in [
            ("latency", row["median_s"].as_f64().unwrap() * 1e9),
            ("throughput", row["rate"].as_f64().unwrap() * 1e9),
        ] {
            let m = &bench[measure];
            let get = |f: &str| {
                m[f].as_f64()
                    .unwrap_or_else(|| panic!("{name}: {measure}.{f}: {m}"))
            };
            let (value, low, high) = (get("value"), get("lower_value"), get("upper_value"));
            assert!(
                (value - expected).abs() <= 1e-9 * expected,
                "{name}: {measure} {value} vs {expected}"
            );
            assert!(
                value >= 0.0 && low <= value && value <= high,
                "{name}: {measure}: {m}"
            );
        }
    }
}

/// The CSV export as Python reads it: the header, then one record per row, in order.
fn check_csv(name: &str, made: &Made, records: &[Vec<String>]) {
    let (header, records) = records
        .split_first()
        .unwrap_or_else(|| panic!("{name}: empty CSV"));
    assert_eq!(header, &CSV_COLUMNS, "{name}");
    let rows = made.report["rows"].as_array().unwrap();
    assert_eq!(records.len(), rows.len(), "{name}: {records:?}");
    let column = |c: &str| CSV_COLUMNS.iter().position(|h| *h == c).unwrap();
    for (record, row) in records.iter().zip(rows) {
        assert_eq!(record.len(), CSV_COLUMNS.len(), "{name}: {record:?}");
        assert_eq!(
            record[column("key")],
            row["key"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(
            record[column("verdict")],
            row["verdict"].as_str().unwrap(),
            "{name}"
        );
        let median: f64 = record[column("median_s")].parse().unwrap();
        assert_eq!(
            median,
            row["median_s"].as_f64().unwrap(),
            "{name}: median_s reads back exactly"
        );
        // The comparison's columns are filled exactly when the row was judged.
        let judged = row.get("comparison").is_some();
        assert_eq!(
            !record[column("threshold")].is_empty(),
            judged,
            "{name}: {record:?}"
        );
        for cell in &record[column("median_s")..] {
            let numeric_or_word = cell.is_empty()
                || cell.parse::<f64>().is_ok()
                || cell.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            assert!(numeric_or_word, "{name}: {cell:?} in {record:?}");
        }
    }
}

/// Every report kind, the error reports included, is valid against the report's schema, reads
/// back, and comes with its BMF and CSV exports, which their consumers accept.
#[test]
fn every_report_kind_is_valid_and_written_on_every_exit() {
    // Recorded before any case holds the device (it takes the device to itself).
    crate::recorded_baseline();
    let under = tempfile::tempdir().unwrap();
    let mut made: BTreeMap<&str, Made> = BTreeMap::new();
    for case in CASES {
        let m = make(case, under.path(), &made);
        assert!(
            made.insert(case.name, m).is_none(),
            "two cases named {}",
            case.name
        );
    }
    let of = |file: fn(&Made) -> PathBuf| made.values().map(file).collect::<Vec<_>>();
    validate("docs/report.schema.json", &of(Made::json));
    validate("tests/schemas/bmf.schema.json", &of(Made::bmf));
    for ((name, m), records) in made.iter().zip(read_csv(&of(Made::csv))) {
        check_csv(name, m, &records);
    }
    for (name, m) in &made {
        check_bmf(name, m);
    }
    // Every kind's JUnit file, error reports included, against Jenkins' schema (ci_reports reads
    // the testcases of a few kinds closely).
    let junit = of(Made::junit);
    let out = std::process::Command::new(python())
        .args([
            "-c",
            "import sys, xmlschema\n\
             schema = xmlschema.XMLSchema(sys.argv[1])\n\
             [schema.validate(p) for p in sys.argv[2:]]",
        ])
        .arg(root().join("tests/schemas/junit-10.xsd"))
        .args(&junit)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The kinds the brief promises are all there.
    let field = |name: &str, f: &str| made[name].report.get(f).is_some();
    assert!(field("check", "policy") && field("check-bootstrap", "bootstrap"));
    assert!(field("calibrate", "calibration"));
    assert!(field("compare", "compared") && field("profile", "sweep"));
    let regressed = &made["check-regression"].report;
    assert!(
        unsettled(regressed) || regressed["rows"][0]["verdict"] == "regression",
        "{regressed}"
    );
    assert_eq!(
        made["bad-baseline"].report["error"]["field"],
        "kernels[0].batch"
    );
    // An error report's exports: a BMF object with no benchmark, a CSV with only its header.
    assert_eq!(
        std::fs::read_to_string(made["no-adapter"].bmf())
            .unwrap()
            .trim(),
        "{}"
    );
}

/// The schema is strict where it matters: an unknown field, an unknown verdict and a wrong
/// version are each refused.
#[test]
fn the_schema_refuses_what_gpugate_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let valid = serde_json::json!({
        "schema_version": gpugate::report::REPORT_SCHEMA_VERSION,
        "command": "check",
        "error": {"kind": "no_baseline", "message": "no baseline for device"},
        "notes": [], "rows": [], "unsupported": [], "runs": [],
        "outcome": {"verdict": "inconclusive", "exit_code": 3, "message": "error: no baseline"}
    });
    let spoilt = |f: fn(&mut Value)| {
        let mut doc = valid.clone();
        f(&mut doc);
        doc
    };
    let cases = [
        ("valid", valid.clone(), true),
        ("unknown-field", spoilt(|d| d["extra"] = 1.into()), false),
        ("version", spoilt(|d| d["schema_version"] = 2.into()), false),
        (
            "verdict",
            spoilt(|d| d["outcome"]["verdict"] = "maybe".into()),
            false,
        ),
        (
            "error-exit-0",
            spoilt(|d| d["outcome"]["exit_code"] = 0.into()),
            false,
        ),
        (
            "no-device",
            spoilt(|d| _ = d.as_object_mut().unwrap().remove("error")),
            false,
        ),
    ];
    for (name, doc, ok) in cases {
        let file = dir.path().join(format!("{name}.json"));
        std::fs::write(&file, doc.to_string()).unwrap();
        let out = std::process::Command::new(python())
            .arg(root().join("tests/schemas/validate.py"))
            .arg(root().join("docs/report.schema.json"))
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(
            out.status.success(),
            ok,
            "{name}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

fn schema() -> Value {
    serde_json::from_slice(&std::fs::read(root().join("docs/report.schema.json")).unwrap()).unwrap()
}

fn schema_enum(at: &str) -> BTreeSet<String> {
    schema()
        .pointer(at)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{at}: no enum"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// The schema's version is the code's, and its enums are the code's values.
#[test]
fn the_schema_matches_the_code() {
    use gpugate::compare::{Reason, Verdict};
    use gpugate::error::Error;
    assert_eq!(
        schema().pointer("/properties/schema_version/const"),
        Some(&Value::from(gpugate::report::REPORT_SCHEMA_VERSION)),
        "bump the schema with REPORT_SCHEMA_VERSION"
    );
    let reasons: BTreeSet<String> = Reason::ALL.iter().map(|r| r.as_str().into()).collect();
    assert_eq!(schema_enum("/$defs/reason/enum"), reasons);
    let verdicts = [
        Verdict::Pass,
        Verdict::Improvement,
        Verdict::Inconclusive,
        Verdict::Regression,
        Verdict::WrongResult,
    ];
    let verdicts: BTreeSet<String> = verdicts.iter().map(|v| v.as_str().into()).collect();
    assert_eq!(schema_enum("/$defs/verdict/enum"), verdicts);
    let io = || std::io::Error::other("x");
    let s = String::new;
    let errors = [
        Error::NoAdapter(s()),
        Error::AdapterNotFound {
            wanted: s(),
            present: s(),
        },
        Error::DeviceRequest {
            adapter: s(),
            reason: s(),
        },
        Error::Gpu {
            kernel: s(),
            reason: s(),
        },
        Error::Usage(s()),
        Error::CannotValidate(s()),
        Error::BaselineFile {
            path: PathBuf::new(),
            field: s(),
            reason: s(),
        },
        Error::NoBaseline {
            key: s(),
            searched: PathBuf::new(),
            have: s(),
        },
        Error::ReportFile {
            path: PathBuf::new(),
            field: s(),
            reason: s(),
        },
        Error::Io {
            path: PathBuf::new(),
            source: io(),
        },
        Error::Fault {
            what: s(),
            reason: s(),
        },
        Error::ChildRun {
            run: 1,
            code: 4,
            reason: s(),
        },
    ];
    // No wildcard: a new error variant does not compile here until it is listed above.
    for e in &errors {
        match e {
            Error::NoAdapter(_)
            | Error::AdapterNotFound { .. }
            | Error::DeviceRequest { .. }
            | Error::Gpu { .. }
            | Error::Usage(_)
            | Error::CannotValidate(_)
            | Error::BaselineFile { .. }
            | Error::NoBaseline { .. }
            | Error::ReportFile { .. }
            | Error::Io { .. }
            | Error::Fault { .. }
            | Error::ChildRun { .. } => {}
        }
    }
    let kinds: BTreeSet<String> = errors.iter().map(|e| e.kind().into()).collect();
    assert_eq!(schema_enum("/$defs/error/properties/kind/enum"), kinds);
    let commands: BTreeSet<String> = ["run", "record", "check", "calibrate", "compare", "profile"]
        .map(String::from)
        .into();
    assert_eq!(schema_enum("/properties/command/enum"), commands);
}
