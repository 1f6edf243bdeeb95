//! The gate end to end through the binary: A/A passes, a real slowdown fails.

use crate::{gpugate, recorded_baseline, timing_lock, SOFTWARE_THRESHOLD};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn record_then_check_on_the_same_device_passes() {
    let baseline = recorded_baseline();
    let _lock = timing_lock();
    let out = gpugate()
        .args(["check", "--threshold", SOFTWARE_THRESHOLD, "--baselines"])
        .arg(baseline)
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "A/A check did not pass:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("regression") && !text.contains("wrong_result"),
        "{text}"
    );
    assert!(text.contains(" pass "), "no kernel passed:\n{text}");
}

#[test]
fn a_real_slowdown_fails_the_gate_and_names_the_kernel() {
    let baseline = recorded_baseline();
    let _lock = timing_lock();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    // The test-only variant encodes copy eight times per iteration: eight times the real work,
    // far beyond the software threshold and its noise margin.
    let out = gpugate()
        .args([
            "check",
            "--threshold",
            SOFTWARE_THRESHOLD,
            "--kernel",
            "copy",
            "--test-slowdown",
            "copy=8",
            "--baselines",
        ])
        .arg(baseline)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "slowdown not caught:\n{text}");
    assert!(text.contains("regression copy[n="), "{text}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let row = &report["rows"][0];
    assert_eq!(row["verdict"], "regression");
    assert!(row["comparison"]["ratio"].as_f64().unwrap() > 3.0, "{row}");
    assert_eq!(report["outcome"]["exit_code"], 1);
}

/// `gpugate --format json ARGS…`: asserts exit 0 and returns stdout as JSON.
fn json_of(args: &[&str]) -> serde_json::Value {
    let out = gpugate()
        .args(["--format", "json"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `gpugate run …` with a short time cap, alone on the machine.
fn run_json(args: &[&str]) -> serde_json::Value {
    let _lock = timing_lock();
    json_of(&[&["run", "--max-time", "0.2"], args].concat())
}

#[test]
fn run_measures_and_verifies_without_a_baseline() {
    let report = run_json(&["--kernel", "sgemm"]);
    let row = &report["rows"][0];
    assert_eq!(row["kernel"], "sgemm");
    assert_eq!(row["verification"]["ok"], true);
    assert!(row["rate"].as_f64().unwrap() > 0.0);
    let samples = report["runs"][0]["kernels"][0]["measurement"]["samples_s"]
        .as_array()
        .unwrap();
    assert!(samples.len() >= 10, "raw samples are kept");
}

#[test]
fn record_writes_a_loadable_baseline_with_run_to_run_spread() {
    let baseline = gpugate::baseline::load(recorded_baseline()).unwrap();
    assert_eq!(baseline.schema_version, gpugate::baseline::SCHEMA_VERSION);
    let kernels: Vec<&str> = baseline.kernels.iter().map(|k| k.kernel.as_str()).collect();
    assert_eq!(kernels, crate::GATE_KERNELS);
    for k in &baseline.kernels {
        assert_eq!(k.runs.len(), gpugate::baseline::DEFAULT_RUNS, "{}", k.key);
        assert!(k.runs.iter().all(|r| !r.samples_s.is_empty()));
        assert!(
            k.between_run_rel_sd > 0.0,
            "{}: separate processes never time identically",
            k.key
        );
    }
    if baseline.fingerprint.device_type == "Cpu" {
        assert!(
            baseline.fingerprint.cpu_model.is_some(),
            "software baselines carry the CPU"
        );
    }
}

#[test]
fn shipped_baselines_are_valid_and_named_by_their_key() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("baselines");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let b = gpugate::baseline::load(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(path.file_stem().unwrap().to_str().unwrap(), b.device_key);
            assert!(b.kernels.len() >= 4, "{} covers the suite", path.display());
            count += 1;
        }
    }
    assert!(
        count >= 1,
        "baselines/ ships at least the software-Vulkan baseline"
    );
}

#[test]
fn host_timing_fallback_is_recorded_as_such() {
    let report = run_json(&["--kernel", "copy", "--timing", "host"]);
    assert_eq!(report["rows"][0]["timing"], "host");
    assert_eq!(report["rows"][0]["verification"]["ok"], true);
    let m = &report["runs"][0]["kernels"][0]["measurement"];
    assert_eq!(m["timing"], "host");
    // Host samples include submit and wait, so each batches up to at least a millisecond.
    let per_sample = m["samples_s"][0].as_f64().unwrap() * m["batch"].as_f64().unwrap();
    assert!(per_sample >= 0.5e-3, "{m}");
}

#[test]
fn list_shows_adapters_kernels_and_suites() {
    let _lock = crate::shared_lock();
    let doc = json_of(&["list"]);
    let adapter = &doc["adapters"][0];
    assert!(adapter["fingerprint"]["name"]
        .as_str()
        .is_some_and(|n| !n.is_empty()));
    assert!(adapter["timestamp_query"].is_boolean());
    assert!(
        adapter["limits"]["max_storage_buffer_binding_size"]
            .as_u64()
            .unwrap()
            > 0
    );
    let names: Vec<_> = doc["kernels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    let registered: Vec<_> = gpugate::workload::all().iter().map(|k| k.name()).collect();
    assert_eq!(names, registered);
    for name in [
        "attention",
        "hgemm_coop",
        "lattice_bfs",
        "softmax",
        "peak_fma",
    ] {
        assert!(names.contains(&name), "{name} not listed");
    }
    let gpu_default = doc["suites"]["gpu"]["default"].as_array().unwrap();
    for key in [
        "sgemm[k=4096,m=4096,n=4096]",
        "hgemm_coop[k=8192,m=8192,n=8192]",
        "softmax[cols=8192,rows=16384]",
        "layernorm[cols=8192,rows=16384]",
    ] {
        assert!(
            gpu_default.iter().any(|k| k == key),
            "{key} not in the GPU default suite"
        );
    }
    for suite in ["quick", "default", "full", "peak"] {
        let keys = doc["suites"]["software"][suite].as_array().unwrap();
        assert!(
            keys[0].as_str().unwrap().starts_with("peak_bandwidth["),
            "{suite}"
        );
    }
    // quick and default hold every kernel; full adds instances; peak is the two ceilings.
    let len = |s: &str| doc["suites"]["software"][s].as_array().unwrap().len();
    assert_eq!(len("quick"), registered.len());
    assert!(len("full") > len("default"));
    assert_eq!(len("peak"), 2);
}

/// lavapipe has no cooperative matrices, so hgemm_coop must be reported unsupported there —
/// neither passed nor failed, and never exit 0 when nothing else ran.
#[test]
fn a_kernel_the_adapter_lacks_a_feature_for_is_unsupported_not_passed() {
    let _lock = crate::shared_lock();
    let out = gpugate()
        .args(["--format", "json", "run", "--kernel", "hgemm_coop"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let unsupported = report["unsupported"].as_array().unwrap();
    if report["fingerprint"]["name"]
        .as_str()
        .unwrap()
        .starts_with("llvmpipe")
    {
        assert_eq!(out.status.code(), Some(3), "{report}");
        assert_eq!(unsupported.len(), 1);
        assert_eq!(unsupported[0]["kernel"], "hgemm_coop");
        let reason = unsupported[0]["reason"].as_str().unwrap();
        assert!(reason.contains("COOPERATIVE_MATRIX"), "{reason}");
        assert!(report["rows"].as_array().unwrap().is_empty());
        assert!(report["outcome"]["message"]
            .as_str()
            .unwrap()
            .contains("unsupported on this adapter"));
    } else if unsupported.is_empty() {
        // An adapter with tensor cores runs and verifies it.
        assert_eq!(out.status.code(), Some(0), "{report}");
        assert_eq!(report["rows"][0]["verification"]["ok"], true);
    } else {
        assert_eq!(out.status.code(), Some(3), "{report}");
    }
}

/// A baseline entry this adapter cannot run is listed as unsupported and left out of the
/// verdict; the rest of the check still decides the exit code.
#[test]
fn check_leaves_unsupported_baseline_kernels_out_of_the_verdict() {
    let baseline = recorded_baseline();
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(baseline).unwrap()).unwrap();
    let kernels = doc["kernels"].as_array_mut().unwrap();
    let mut coop = kernels
        .iter()
        .find(|k| k["kernel"] == "sgemm")
        .unwrap()
        .clone();
    coop["kernel"] = "hgemm_coop".into();
    coop["key"] = coop["key"]
        .as_str()
        .unwrap()
        .replace("sgemm", "hgemm_coop")
        .into();
    kernels.push(coop);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("with_coop.json");
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let _lock = timing_lock();
    let out = gpugate()
        .args(["check", "--threshold", SOFTWARE_THRESHOLD])
        .args(["--kernel", "sgemm", "--kernel", "hgemm_coop", "--baselines"])
        .arg(&file)
        .output()
        .unwrap();
    let text = stdout(&out);
    if doc["fingerprint"]["name"]
        .as_str()
        .unwrap()
        .starts_with("llvmpipe")
    {
        // sgemm alone decides: pass, or inconclusive (3) when this run was too noisy to judge.
        assert!(matches!(out.status.code(), Some(0 | 3)), "{text}");
        assert!(text.contains("sgemm[k="), "{text}");
        assert!(
            text.contains("unsupported on this adapter hgemm_coop[k="),
            "{text}"
        );
        assert!(
            text.contains("1 kernel(s) unsupported on this adapter, left out"),
            "{text}"
        );
    }
}
