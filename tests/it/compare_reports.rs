//! `gpugate compare A.json B.json` on real saved reports: an A/A comparison never fails, a real
//! slowdown does and names the kernel, one-run reports and bad files are exit 2 naming the file.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::{gpugate, shared_lock};

/// `run --kernel copy --max-time 0.2 --json FILE` with `extra` flags: the report's path.
pub(crate) fn run_report(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let _lock = shared_lock();
    let out = gpugate()
        .args(["run", "--kernel", "copy", "--max-time", "0.2"])
        .args(extra)
        .arg("--json")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// Reports shared by this module's tests: A and A2 (unchanged, 3 and 2 runs), B (copy doing
/// three times the work, 3 runs) and ONE (a single run). Not eight times: lavapipe's copy takes
/// ~20 ms, and the 24 warm-up samples of eight copies would outlast the software sampler's 2 s
/// warm-up cap, leaving the run unsteady, which is never judged.
struct Reports {
    _dir: tempfile::TempDir,
    a: PathBuf,
    a2: PathBuf,
    b: PathBuf,
    one: PathBuf,
}

fn reports() -> &'static Reports {
    static R: OnceLock<Reports> = OnceLock::new();
    R.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        Reports {
            a: run_report(d, "A.json", &["--runs", "3"]),
            a2: run_report(d, "A2.json", &["--runs", "2"]),
            b: run_report(d, "B.json", &["--runs", "3", "--test-slowdown", "copy=3"]),
            one: run_report(d, "ONE.json", &[]),
            _dir: dir,
        }
    })
}

/// `gpugate --format json compare ARGS…`: (exit code, stdout as JSON, stderr).
fn compare(args: &[&std::ffi::OsStr]) -> (Option<i32>, serde_json::Value, String) {
    let out = gpugate()
        .args(["--format", "json", "compare"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: stdout is not JSON; stderr:\n{stderr}"));
    (out.status.code(), doc, stderr)
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

/// A copy of `report` edited as JSON, at `dir/name`.
fn edited(
    report: &Path,
    dir: &Path,
    name: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> PathBuf {
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
    edit(&mut doc);
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    path
}

#[test]
fn an_unchanged_build_never_fails_and_another_driver_is_said() {
    let r = reports();
    let dir = tempfile::tempdir().unwrap();
    let a2 = edited(&r.a2, dir.path(), "A2.json", |d| {
        d["fingerprint"]["driver_info"] = "another build".into();
    });
    let (code, doc, err) = compare(&[
        r.a.as_os_str(),
        a2.as_os_str(),
        os("--threshold"),
        os(crate::MECHANICS_THRESHOLD),
    ]);
    assert!(
        matches!(code, Some(0 | 3)),
        "A/A compare exit {code:?}: {err}\n{doc:#}"
    );
    assert_eq!(doc["command"], "compare");
    assert_eq!(doc["compared"]["before"], r.a.display().to_string());
    assert_eq!(doc["compared"]["after"], a2.display().to_string());
    let row = &doc["rows"][0];
    assert_eq!(row["kernel"], "copy");
    assert_eq!(row["comparison"]["baseline_runs"], 3);
    assert_eq!(row["comparison"]["current_runs"], 2);
    assert_eq!(row["baseline_run_medians_s"].as_array().unwrap().len(), 3);
    assert_eq!(doc["runs"].as_array().unwrap().len(), 2, "AFTER's runs");
    assert_ne!(row["verdict"], "regression");
    let notes = doc["notes"].to_string();
    assert!(notes.contains("different drivers"), "{notes}");
}

#[test]
fn a_real_slowdown_fails_and_names_the_kernel() {
    let r = reports();
    // Three times the work on copy; α 0.05 because two sides of three runs leave 4 degrees of
    // freedom for lavapipe's run-to-run noise (the margin 2.13·s·√(2/3) stays under ln 3 while
    // the run-to-run sd s is under 63 %).
    let out = gpugate()
        .arg("compare")
        .args([&r.a, &r.b])
        .args(["--threshold", "50", "--alpha", "0.05"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("regression copy[n="), "{text}");
}

#[test]
fn one_run_reports_are_refused_with_the_fix() {
    let r = reports();
    let (code, doc, err) = compare(&[r.one.as_os_str(), r.a.as_os_str()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("ONE.json")
            && err.contains("copy[n=")
            && err.contains("has 1 run; compare needs at least 2 per side")
            && err.contains("run --runs 3 --json"),
        "{err}"
    );
    // The error report goes to stdout under --format json, as on every exit.
    assert_eq!(doc["error"]["kind"], "report_file");
}

#[test]
fn bad_files_are_exit_2_naming_the_file_and_field() {
    let r = reports();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let negative = edited(&r.a, d, "negative.json", |doc| {
        doc["runs"][1]["kernels"][0]["measurement"]["samples_s"][0] = (-1.0).into();
    });
    let wrong_type = edited(&r.a, d, "wrong-type.json", |doc| doc["runs"] = 5.into());
    let stray_row = edited(&r.a, d, "stray-row.json", |doc| {
        doc["rows"][0]["key"] = "copy[n=4]".into()
    });
    let missing = d.join("missing.json");
    let error_report = d.join("error.json");
    let _ = gpugate()
        .args(["run", "--kernel", "no_such_kernel", "--json"])
        .arg(&error_report)
        .output()
        .unwrap();
    for (file, wanted) in [
        (&negative, "runs[1].kernels[0].measurement.samples_s[0]"),
        (&wrong_type, "runs"),
        (&stray_row, "rows[0].key"),
        (&missing, "missing.json"),
        (&error_report, "is an error report"),
    ] {
        let (code, _, err) = compare(&[r.a.as_os_str(), file.as_os_str()]);
        let name = file.file_name().unwrap().to_str().unwrap();
        assert_eq!(code, Some(2), "{name}: {err}");
        assert!(err.contains(name) && err.contains(wanted), "{name}: {err}");
    }
}

#[test]
fn kernels_in_one_report_only_are_listed_not_judged() {
    let r = reports();
    let dir = tempfile::tempdir().unwrap();
    let renamed = edited(&r.a2, dir.path(), "renamed.json", |doc| {
        doc["rows"][0]["key"] = "copy[n=4]".into();
        for run in doc["runs"].as_array_mut().unwrap() {
            run["kernels"][0]["key"] = "copy[n=4]".into();
        }
    });
    let (code, doc, err) = compare(&[r.a.as_os_str(), renamed.as_os_str()]);
    assert_eq!(code, Some(3), "nothing comparable is exit 3: {err}");
    assert!(doc["rows"].as_array().unwrap().is_empty());
    let notes = doc["notes"].to_string();
    assert!(
        notes.contains("only in") && notes.contains("copy[n=4]"),
        "{notes}"
    );
}
