//! Faults exit 4 ("fault, retry") within their deadline, never as a verdict: a measurement child
//! killed by a signal, aborted, panicking, hung or stopped; gpugate panicking itself; a lost
//! device; GPU work that outlasts its kernel's deadline. A regression whose `--json` cannot be
//! written still exits 1. Faults are injected with the test-only `GPUGATE_TEST_FAULT` hook
//! (ARCHITECTURE.md), except the GPU timeout, which is real work past a short `--deadline`.

use std::time::{Duration, Instant};

use gpugate::runner::{RUN_DEADLINE_SLACK_S, TEST_FAULT_ENV};

use crate::{gpugate, shared_lock, timing_lock, SOFTWARE_THRESHOLD};

/// How far past its deadline a fault may be reported on a loaded CI machine. Generous on
/// purpose: this bounds "ends", it does not measure speed.
const SLACK: Duration = Duration::from_secs(30);

/// Run gpugate with `fault` injected: exit code, stderr, how long it took.
fn with_fault(fault: &str, args: &[&str]) -> (Option<i32>, String, Duration) {
    let _lock = shared_lock();
    let started = Instant::now();
    let out = gpugate()
        .env(TEST_FAULT_ENV, fault)
        .args(args)
        .output()
        .unwrap();
    let took = started.elapsed();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        took,
    )
}

/// Two runs of copy: both in fresh child processes, the first of which gets the fault.
const IN_CHILDREN: [&str; 7] = [
    "run",
    "--runs",
    "2",
    "--kernel",
    "copy",
    "--max-time",
    "0.1",
];

/// One run of copy, measured in gpugate's own process.
const IN_PROCESS: [&str; 7] = [
    "run",
    "--runs",
    "1",
    "--kernel",
    "copy",
    "--max-time",
    "0.1",
];

/// A child's deadline with `--deadline 2` and one kernel.
fn child_deadline() -> Duration {
    Duration::from_secs(2) + Duration::from_secs_f64(RUN_DEADLINE_SLACK_S)
}

#[test]
fn help_documents_exit_4() {
    let out = gpugate().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("4  fault, worth a retry"), "{help}");
    assert!(
        help.contains("--deadline") || help.contains("deadline"),
        "{help}"
    );
    let out = gpugate().args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--deadline <SECONDS>"), "{help}");
}

#[cfg(unix)] // signals
#[test]
fn a_child_killed_by_sigkill_is_a_fault_naming_the_run_and_signal() {
    let (code, err, _) = with_fault("kill", &IN_CHILDREN);
    assert_eq!(code, Some(4), "{err}");
    assert!(
        err.contains("measurement run 1/2") && err.contains("signal 9 (SIGKILL"),
        "{err}"
    );
}

#[cfg(unix)] // signals
#[test]
fn an_aborted_child_is_a_fault() {
    let (code, err, _) = with_fault("abort", &IN_CHILDREN);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("signal 6 (SIGABRT)"), "{err}");
}

#[test]
fn a_panicking_child_is_a_fault() {
    let (code, err, _) = with_fault("panic", &IN_CHILDREN);
    assert_eq!(code, Some(4), "{err}");
    assert!(
        err.contains("injected panic") && err.contains("measurement run 1 failed"),
        "{err}"
    );
}

#[test]
fn a_panic_in_gpugate_itself_exits_4_not_101() {
    let (code, err, _) = with_fault("panic", &IN_PROCESS);
    assert_eq!(code, Some(4), "{err}");
    assert!(
        err.contains("injected panic") && err.contains("fault: gpugate panicked"),
        "{err}"
    );
}

#[test]
fn a_lost_device_is_a_fault_naming_the_kernel() {
    let (code, err, _) = with_fault("lose-device", &IN_PROCESS);
    assert_eq!(code, Some(4), "{err}");
    assert!(
        err.contains("fault in copy[") && err.contains("device lost"),
        "{err}"
    );
}

/// A hung child (asleep forever) is killed once the run's deadline passes.
#[test]
fn a_hung_child_is_killed_past_its_deadline() {
    let mut args = IN_CHILDREN.to_vec();
    args.extend(["--deadline", "2"]);
    let (code, err, took) = with_fault("hang", &args);
    assert_eq!(code, Some(4), "{err}");
    assert!(
        err.contains("measurement run 1/2") && err.contains("after its deadline"),
        "{err}"
    );
    assert!(took >= child_deadline(), "killed early: {took:?}\n{err}");
    assert!(took < child_deadline() + SLACK, "took {took:?}\n{err}");
}

/// A stopped child (SIGSTOP) would block its parent forever; it is killed at its deadline.
#[cfg(unix)] // signals
#[test]
fn a_stopped_child_is_killed_past_its_deadline() {
    let mut args = IN_CHILDREN.to_vec();
    args.extend(["--deadline", "2"]);
    let (code, err, took) = with_fault("stop", &args);
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("after its deadline"), "{err}");
    assert!(took < child_deadline() + SLACK, "took {took:?}\n{err}");
}

/// Real GPU work far longer than the kernel's deadline (the test-only slowdown encodes sgemm
/// 1000 times per iteration, its most; warm-up and measuring need at least five chunks of eight
/// such samples): the GPU wait times out and the run ends as a fault naming the kernel, instead of
/// waiting for the work (or forever, on a hung GPU).
#[test]
fn gpu_work_past_the_kernel_deadline_is_a_fault() {
    let _lock = shared_lock();
    let started = Instant::now();
    let out = gpugate()
        .args([
            "run",
            "--runs",
            "1",
            "--kernel",
            "sgemm",
            "--test-slowdown",
            "sgemm=1000",
            "--deadline",
            "1",
        ])
        .output()
        .unwrap();
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("fault in sgemm") && err.contains("did not finish its work"),
        "{err}"
    );
    // Startup (device open) plus the deadline plus slack.
    assert!(
        took < Duration::from_secs(1) + Duration::from_secs_f64(RUN_DEADLINE_SLACK_S) + SLACK,
        "took {took:?}\n{err}"
    );
}

#[test]
fn deadline_is_bounded() {
    for bad in ["0", "-1", "nan", "inf", "86401"] {
        let out = gpugate()
            .args(["run", "--kernel", "copy", &format!("--deadline={bad}")])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--deadline {bad}: {err}");
        assert!(err.contains("--deadline"), "{err}");
    }
}

#[test]
fn gl_is_not_offered() {
    let out = gpugate()
        .args(["--backend", "gl", "list"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("OpenGL is not offered"), "{err}");
}

/// A regression whose `--json` report cannot be written still exits 1 (a 2 would be retried as
/// a configuration problem, hiding the regression); the write failure is still reported.
#[test]
fn a_regression_with_an_unwritable_json_path_exits_1() {
    let (dir, file) = crate::trust::doctored(crate::trust::copy_five_times_faster);
    // A directory where the file should go: found out only when the report is written.
    let unwritable = dir.path().join("report.json");
    std::fs::create_dir(&unwritable).unwrap();

    let _lock = timing_lock();
    let out = gpugate()
        .args([
            "check",
            "--kernel",
            "copy",
            "--threshold",
            SOFTWARE_THRESHOLD,
        ])
        .arg("--baselines")
        .arg(&file)
        .arg("--json")
        .arg(&unwritable)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("report.json") && err.contains("exit 1 stands"),
        "{err}"
    );

    // A file in a directory that does not exist is refused before anything is measured.
    let missing = dir.path().join("no-such-dir").join("report.json");
    let out = gpugate()
        .args(["check", "--kernel", "copy", "--baselines"])
        .arg(&file)
        .arg("--junit")
        .arg(&missing)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--junit") && err.contains("does not exist"),
        "{err}"
    );
}
