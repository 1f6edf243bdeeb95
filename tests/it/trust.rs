//! A gate one can trust, on the real binary and lavapipe: cross-process A/A checks name no
//! regression; a doctored baseline fails exactly the doctored kernel; files whose derived numbers,
//! kernel code, timing method or driver disagree with what runs now are refused with the right
//! exit code; version-1 files still gate; `record --append` adds a session; `calibrate` reports.

use std::path::{Path, PathBuf};

use gpugate::baseline::{self, Baseline};
use gpugate::stats;

use crate::{gpugate, recorded_baseline, timing_lock, MECHANICS_THRESHOLD, SOFTWARE_THRESHOLD};

/// A check of copy alone at the mechanics threshold: for tests of what is refused or reported,
/// where the verdict itself must be a pass.
const COPY_AT_MECHANICS_THRESHOLD: [&str; 5] = [
    "check",
    "--kernel",
    "copy",
    "--threshold",
    MECHANICS_THRESHOLD,
];

/// A copy of the shared recorded baseline, changed by `edit`, in a temp dir.
pub fn doctored(edit: impl FnOnce(&mut Baseline)) -> (tempfile::TempDir, PathBuf) {
    let mut b = baseline::load(recorded_baseline()).unwrap();
    edit(&mut b);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doctored.json");
    baseline::save(&file, &b).unwrap();
    (dir, file)
}

/// Scale every sample of copy's run `i` (of `n`) by `factor(i, n)`, keeping every derived number
/// consistent with the samples: each run's summary, and the kernel's as the library derives it.
pub fn scale_copy(b: &mut Baseline, factor: impl Fn(usize, usize) -> f64) {
    let k = b.kernels.iter_mut().find(|k| k.kernel == "copy").unwrap();
    let n = k.runs.len();
    for (i, run) in k.runs.iter_mut().enumerate() {
        let f = factor(i, n);
        for s in &mut run.samples_s {
            *s *= f;
        }
        run.summary = stats::summarize(&run.samples_s);
    }
    k.summarise_runs();
}

/// Claim copy ran 5× faster than it was recorded (beyond lavapipe's 2× threshold).
pub fn copy_five_times_faster(b: &mut Baseline) {
    scale_copy(b, |_, _| 0.2);
}

/// The same edit on the file's JSON, for changes the typed API would not allow.
fn doctored_json(edit: impl FnOnce(&mut serde_json::Value)) -> (tempfile::TempDir, PathBuf) {
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(recorded_baseline()).unwrap()).unwrap();
    edit(&mut doc);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doctored.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    (dir, file)
}

/// `gpugate --format json <args> --baselines FILE`: exit code, report (null if none), stderr.
fn check(args: &[&str], file: &Path) -> (Option<i32>, serde_json::Value, String) {
    let out = gpugate()
        .args(["--format", "json"])
        .args(args)
        .arg("--baselines")
        .arg(file)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code(),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn verdicts(report: &serde_json::Value) -> Vec<(String, String)> {
    report["rows"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (
                        r["kernel"].as_str().unwrap().to_string(),
                        r["verdict"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Five separate cross-process checks of an unchanged node at the documented lavapipe
/// threshold: none may name a regression. (Inconclusive is allowed — it is exit 3, never a
/// failure — and is reported with its reason.)
#[test]
fn five_cross_process_a_a_checks_name_no_regression() {
    let file = recorded_baseline();
    let _lock = timing_lock();
    for i in 1..=5 {
        let (code, report, err) = check(&["check", "--threshold", SOFTWARE_THRESHOLD], file);
        assert_ne!(code, Some(1), "A/A check {i} failed:\n{report:#}\n{err}");
        assert!(matches!(code, Some(0 | 3)), "check {i}: {code:?} {err}");
        let v = verdicts(&report);
        assert_eq!(v.len(), crate::GATE_KERNELS.len(), "{report}");
        assert!(v.iter().all(|(_, v)| v != "regression"), "check {i}: {v:?}");
        for u in report["outcome"]["inconclusive"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert!(
                u["reason"].is_string(),
                "every inconclusive kernel has a reason: {u}"
            );
        }
        assert_eq!(
            report["runs"].as_array().unwrap().len(),
            3,
            "three fresh processes"
        );
    }
}

/// A baseline claiming copy ran 5× faster (beyond lavapipe's 2× threshold): exit 1, and copy is
/// the only kernel named.
#[test]
fn a_baseline_doctored_to_a_fifth_fails_that_kernel_only() {
    let (_dir, file) = doctored(copy_five_times_faster);
    let _lock = timing_lock();
    let (code, report, err) = check(&["check", "--threshold", SOFTWARE_THRESHOLD], &file);
    assert_eq!(code, Some(1), "{report:#}\n{err}");
    let failed: Vec<_> = verdicts(&report)
        .into_iter()
        .filter(|(_, v)| v == "regression" || v == "wrong_result")
        .collect();
    assert_eq!(
        failed,
        vec![("copy".to_string(), "regression".to_string())],
        "{report:#}"
    );
    let row = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kernel"] == "copy")
        .unwrap();
    assert!(row["comparison"]["ratio"].as_f64().unwrap() > 2.0, "{row}");
    // The suspect was confirmed in its own fresh processes, and the report shows both rounds.
    assert!(row["screening"].is_object(), "{row}");
    assert_eq!(row["comparison"]["current_runs"], 5, "{row}");
    assert!(report["policy"]["suspects"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s.as_str().unwrap().starts_with("copy[")));
    assert!(!report["confirmation_runs"].as_array().unwrap().is_empty());
    let message = report["outcome"]["message"].as_str().unwrap();
    assert!(message.contains("copy["), "{message}");
}

#[test]
fn summaries_that_disagree_with_their_raw_samples_are_exit_2() {
    let (_dir, file) = doctored_json(|doc| {
        let s = &mut doc["kernels"][0]["runs"][1]["summary"];
        s["p95_s"] = (s["p95_s"].as_f64().unwrap() * 1.01).into();
    });
    let _lock = crate::shared_lock();
    let (code, _, err) = check(&["check"], &file);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("kernels[0].runs[1].summary"), "{err}");
    assert!(err.contains("disagrees with its raw samples"), "{err}");
    assert!(err.contains(file.to_str().unwrap()), "{err}");

    let (_dir, file) = doctored_json(|doc| {
        doc["kernels"][1]["median_s"] = 1.0.into();
    });
    let (code, _, err) = check(&["check"], &file);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("kernels[1].median_s"), "{err}");
}

#[test]
fn a_baseline_is_judged_only_in_the_shader_mode_it_was_recorded_in() {
    let file = crate::recorded_baseline();
    let _lock = crate::shared_lock();
    // Recorded trusted (the default); checked code is other code, and the error says which flag.
    let (code, report, err) = check(&["--shader-checks", "checked", "check"], file);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("kernel changed: re-record"), "{err}");
    assert!(
        err.contains("recorded with --shader-checks trusted"),
        "{err}"
    );
    assert_eq!(report["error"]["kind"], "cannot_validate", "{report}");
    assert_eq!(
        report["shader_checks"], "checked",
        "the mode asked for: {report}"
    );
}

#[test]
fn a_rewritten_kernel_is_exit_3_re_record_never_a_verdict() {
    let (_dir, file) = doctored(|b| {
        b.kernels[0].kernel_hash = Some("sha256:0000".into());
    });
    let _lock = crate::shared_lock();
    let (code, report, err) = check(&["check"], &file);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("kernel changed: re-record"), "{err}");
    // Nothing was judged, and the report says why: an error report, written all the same.
    assert_eq!(report["error"]["kind"], "cannot_validate", "{report}");
    assert_eq!(report["outcome"]["exit_code"], 3, "{report}");
    assert_eq!(report["rows"].as_array().map(Vec::len), Some(0), "{report}");
}

#[test]
fn a_timing_method_unlike_the_baselines_is_exit_2_naming_kernel_and_field() {
    let recorded = baseline::load(recorded_baseline()).unwrap();
    let other = match recorded.kernels[0].timing {
        gpugate::sampler::TimingMethod::GpuTimestamp => "host",
        gpugate::sampler::TimingMethod::Host => "gpu-timestamp",
    };
    let _lock = crate::shared_lock();
    let (code, _, err) = check(&["check", "--timing", other], recorded_baseline());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("kernels[0].timing"), "{err}");
    assert!(err.contains(&recorded.kernels[0].key), "{err}");
}

/// Committed baselines must keep working: a version-1 file (no sessions, hashes, modes,
/// warm-ups) still gates, and the report says what it cannot protect against.
#[test]
fn a_version_1_file_still_gates() {
    let (_dir, file) = doctored_json(|doc| {
        doc["schema_version"] = 1.into();
        let top = doc.as_object_mut().unwrap();
        top.remove("sessions");
        for k in top["kernels"].as_array_mut().unwrap() {
            let k = k.as_object_mut().unwrap();
            k.remove("kernel_hash");
            k.remove("modes");
            for run in k["runs"].as_array_mut().unwrap() {
                let run = run.as_object_mut().unwrap();
                run.remove("session");
                run.remove("warmup");
                run.remove("telemetry");
                let s = run["summary"].as_object_mut().unwrap();
                s.remove("log_se");
                s.remove("lag1");
            }
        }
    });
    let _lock = timing_lock();
    let (code, report, err) = check(&COPY_AT_MECHANICS_THRESHOLD, &file);
    assert_eq!(code, Some(0), "{report:#}\n{err}");
    assert_eq!(report["rows"][0]["comparison"]["sessions"], 1);
    let notes = report["notes"].to_string();
    assert!(notes.contains("predates kernel hashes"), "{notes}");
}

#[test]
fn a_driver_change_is_reported_and_fails_only_under_the_fail_policy() {
    let (_dir, file) = doctored(|b| {
        b.fingerprint.driver = "some other driver 1.0".into();
        for s in &mut b.sessions {
            s.driver = "some other driver 1.0".into();
        }
    });
    let _lock = timing_lock();
    let args = COPY_AT_MECHANICS_THRESHOLD;
    let (code, report, err) = check(&args, &file);
    assert_eq!(code, Some(0), "warn is the default: {report:#}\n{err}");
    assert_eq!(report["driver_change"]["policy"], "warn", "{report}");
    assert!(report["driver_change"]["baseline"]
        .as_str()
        .unwrap()
        .contains("some other driver"));
    let mut fail = args.to_vec();
    fail.extend(["--on-driver-change", "fail"]);
    let (code, report, err) = check(&fail, &file);
    assert_eq!(code, Some(3), "{report:#}\n{err}");
    assert!(report["outcome"]["message"]
        .as_str()
        .unwrap()
        .contains("driver changed"));
}

/// `record --append` adds a session's runs to the same kernels, measured as they were recorded;
/// the gate then knows two sessions.
#[test]
fn record_append_adds_a_session_and_the_gate_uses_it() {
    let (_dir, file) = doctored(|_| {});
    let before = baseline::load(&file).unwrap();
    let _lock = timing_lock();
    let out = gpugate()
        .args([
            "record", "--append", "--runs", "3", "--kernel", "copy", "--out",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let after = baseline::load(&file).unwrap();
    assert_eq!(after.sessions.len(), 2);
    for (b, a) in before.kernels.iter().zip(&after.kernels) {
        // Three runs appended to copy (two if a warm-up did not settle: that run is left out);
        // the others untouched.
        let added = a.runs.len() - b.runs.len();
        let expected = if a.kernel == "copy" { 2..=3 } else { 0..=0 };
        assert!(expected.contains(&added), "{}: {added} runs added", a.key);
        assert_eq!((a.batch, a.slots, a.timing), (b.batch, b.slots, b.timing));
    }
    let copy = after.kernels.iter().find(|k| k.kernel == "copy").unwrap();
    assert!(copy.runs.iter().rev().take(2).all(|r| r.session == 1));
    assert!(copy.runs.iter().filter(|r| r.session == 0).count() >= 2);
    let (code, report, err) = check(&COPY_AT_MECHANICS_THRESHOLD, &file);
    assert_eq!(code, Some(0), "{report:#}\n{err}");
    assert_eq!(report["rows"][0]["comparison"]["sessions"], 2);
}

/// `calibrate`: per kernel the detectable slowdown, and the false-alarm count over K A/A checks
/// with its Clopper–Pearson bound (0 of 2 only bounds the rate at 77.6 %).
#[test]
fn calibrate_reports_detectable_slowdowns_and_a_bounded_false_alarm_rate() {
    let file = recorded_baseline();
    let _lock = timing_lock();
    let (code, report, err) = check(
        &[
            "calibrate",
            "--checks",
            "2",
            "--kernel",
            "copy",
            "--threshold",
            MECHANICS_THRESHOLD,
        ],
        file,
    );
    assert_eq!(code, Some(0), "{report:#}\n{err}");
    let c = &report["calibration"];
    assert_eq!(
        (c["checks"].as_u64(), c["false_alarms"].as_u64()),
        (Some(2), Some(0))
    );
    let bound = c["false_alarm_upper95"].as_f64().unwrap();
    assert!((bound - (1.0 - 0.05f64.sqrt())).abs() < 1e-9, "{bound}");
    let k = &c["kernels"][0];
    assert!(k["key"].as_str().unwrap().starts_with("copy["));
    assert!(k["detectable_ratio"].as_f64().unwrap() > 1.0, "{k}");
    assert_eq!(report["command"], "calibrate");
}
