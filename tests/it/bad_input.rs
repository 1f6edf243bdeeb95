//! Bad input never panics: broken baseline files → exit 2 naming file and field; a missing
//! baseline or adapter → exit 3 with advice.

use std::path::Path;

use crate::{gpugate, recorded_baseline, shared_lock};

/// Run `check` against `file` and return (exit code, stderr).
fn check_with(file: &Path) -> (Option<i32>, String) {
    let _lock = shared_lock();
    let out = gpugate()
        .args(["check", "--baselines"])
        .arg(file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "gpugate panicked:\n{stderr}");
    (out.status.code(), stderr)
}

/// A copy of the recorded baseline, edited as JSON.
fn edited(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> std::path::PathBuf {
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(recorded_baseline()).unwrap()).unwrap();
    edit(&mut doc);
    let path = dir.join("edited.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    path
}

#[test]
fn truncated_file_is_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(recorded_baseline()).unwrap();
    let path = dir.path().join("truncated.json");
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    let (code, err) = check_with(&path);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("truncated.json") && err.contains("not valid JSON"),
        "{err}"
    );
}

#[test]
fn wrong_schema_version_is_exit_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited(dir.path(), |d| d["schema_version"] = 99.into());
    let (code, err) = check_with(&path);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("edited.json") && err.contains("schema_version: is 99"),
        "{err}"
    );
}

#[test]
fn negative_or_missing_times_are_exit_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited(dir.path(), |d| {
        d["kernels"][1]["runs"][2]["samples_s"][3] = (-1.0).into()
    });
    let (code, err) = check_with(&path);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("kernels[1].runs[2].samples_s[3]: must be a positive"),
        "{err}"
    );

    let path = edited(dir.path(), |d| {
        d["kernels"][0]["median_s"] = serde_json::Value::Null
    });
    let (code, err) = check_with(&path);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("kernels[0].median_s"), "{err}");
}

#[test]
fn nan_in_a_file_is_exit_2() {
    // JSON has no NaN; a file that writes one is not JSON, and says where.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(recorded_baseline()).unwrap();
    let at = text.find("\"median_s\": ").unwrap() + "\"median_s\": ".len();
    let end = at + text[at..].find([',', '\n']).unwrap();
    let path = dir.path().join("nan.json");
    std::fs::write(&path, format!("{}NaN{}", &text[..at], &text[end..])).unwrap();
    let (code, err) = check_with(&path);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("nan.json") && err.contains("line"), "{err}");
}

#[test]
fn another_devices_file_is_exit_3_naming_both_devices() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited(dir.path(), |d| {
        d["fingerprint"]["name"] = "NVIDIA H100 80GB HBM3".into();
        d["fingerprint"]["device_type"] = "DiscreteGpu".into();
        d["fingerprint"]
            .as_object_mut()
            .unwrap()
            .remove("cpu_model");
        d["device_key"] = "NVIDIA-H100-80GB-HBM3-vulkan".into();
    });
    let (code, err) = check_with(&path);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("NVIDIA-H100-80GB-HBM3-vulkan") && err.contains("edited.json"),
        "{err}"
    );
    let this = crate::this_device_key();
    assert!(
        err.contains(&format!("{this:?}")),
        "names this device too: {err}"
    );
}

#[test]
fn inconsistent_device_key_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited(dir.path(), |d| d["device_key"] = "something-else".into());
    let (code, err) = check_with(&path);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("device_key"), "{err}");
}

#[test]
fn a_baseline_with_one_run_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited(dir.path(), |d| {
        let runs = d["kernels"][0]["runs"].as_array_mut().unwrap();
        runs.truncate(1);
    });
    let (code, err) = check_with(&path);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("kernels[0].runs: has 1 run"), "{err}");
}

#[test]
fn no_baseline_for_this_device_is_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Some-Other-GPU-vulkan.json"), "{}").unwrap();
    let (code, err) = check_with(dir.path());
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("no baseline for device") && err.contains("Some-Other-GPU-vulkan"),
        "{err}"
    );
    assert!(err.contains("gpugate record"), "advice is given: {err}");
}

#[test]
fn missing_baselines_path_is_exit_2() {
    let (code, err) = check_with(Path::new("/nonexistent/baselines"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/nonexistent/baselines"), "{err}");
}

#[test]
fn no_matching_adapter_is_exit_3_listing_what_is_present() {
    let _lock = crate::shared_lock();
    let out = gpugate()
        .args(["--adapter", "no-such-gpu", "run"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("no-such-gpu") && err.contains("present:"),
        "{err}"
    );
}

#[test]
fn no_vulkan_driver_is_exit_3_with_advice() {
    let _lock = crate::shared_lock();
    let out = gpugate()
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .args(["--backend", "vulkan", "check"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("apt-get install libvulkan1 mesa-vulkan-drivers"),
        "{err}"
    );
}

#[test]
fn usage_errors_are_exit_2() {
    let _lock = crate::shared_lock();
    // Each with the words of the check that refuses it: gpugate's own checks, not clap's parser
    // (`--threshold -3` would be refused by clap as an unknown flag, never reaching gpugate).
    for (args, says) in [
        (vec!["run", "--kernel", "no_such_kernel"], "no_such_kernel"),
        (
            vec!["check", "--threshold=-3"],
            "--threshold -3: expected a positive percentage",
        ),
        (
            vec!["check", "--threshold=0"],
            "--threshold 0: expected a positive percentage",
        ),
        (
            vec!["check", "--threshold=NaN"],
            "expected a positive percentage",
        ),
        (
            vec!["check", "--kernel-threshold", "sgemm"],
            "--kernel-threshold",
        ),
        (vec!["record", "--runs", "1"], "--runs 1: at least 2 needed"),
        (vec!["check", "--runs", "2"], "--runs 2: at least 3 needed"),
        (
            vec!["check", "--record-missing", "--record-runs", "1"],
            "--record-runs 1: at least 2 needed",
        ),
        (
            vec!["--backend", "nonsense", "list"],
            "--backend \"nonsense\"",
        ),
        // serve never bootstraps: a node that baselines itself hides its own slowness.
        (
            vec!["serve", "--record-missing"],
            "unexpected argument '--record-missing'",
        ),
        (vec!["check", "--record-runs", "3"], "--record-missing"),
        (vec!["frobnicate"], "unrecognized subcommand"),
    ] {
        let out = gpugate().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?} should say {says:?}: {err}");
    }
}

#[test]
fn help_documents_the_exit_codes() {
    let _lock = crate::shared_lock();
    let out = gpugate().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "0  pass",
        "1  a regression",
        "2  usage",
        "3  cannot validate here",
    ] {
        assert!(text.contains(line), "--help lacks {line:?}");
    }
}
