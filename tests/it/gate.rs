//! The gate end to end through the binary: A/A passes, a real slowdown fails.

use crate::{gpugate, recorded_baseline, timing_lock, MECHANICS_THRESHOLD, SOFTWARE_THRESHOLD};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The A/A property at the documented software threshold. Robust, not retried: the check makes
/// five runs in fresh processes, so one process in a slow host mode cannot carry the verdict. The
/// margin t·ŝ·√(1/10 + 1/5) ≈ 1.65 ŝ stays below ln 2 while the pooled sd ŝ is under 42 %; on an
/// idle 2-core VM lavapipe's kernels run at 2–35 % (a true 30 % gives ŝ > 42 % about 2 % of the
/// time per kernel, and all four kernels must be inconclusive together for exit 3).
#[test]
fn record_then_check_on_the_same_device_passes() {
    let baseline = recorded_baseline();
    let _lock = timing_lock();
    let out = gpugate()
        .args(["--format", "json", "check", "--runs", "5"])
        .args(["--threshold", SOFTWARE_THRESHOLD, "--baselines"])
        .arg(baseline)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        out.status.code(),
        Some(0),
        "A/A check did not pass:\n{report:#}"
    );
    let verdicts: Vec<&str> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts.len(), crate::GATE_KERNELS.len());
    assert!(
        verdicts
            .iter()
            .all(|v| matches!(*v, "pass" | "inconclusive" | "improvement")),
        "{verdicts:?}"
    );
    assert!(verdicts.contains(&"pass"), "no kernel passed: {verdicts:?}");
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
    assert_eq!(report["shader_checks"], "trusted", "the default, and said");
    assert_eq!(report["runs"][0]["shader_checks"], "trusted");
}

#[test]
fn the_checked_shader_path_runs_verifies_and_says_so() {
    let report = run_json(&["--shader-checks", "checked", "--kernel", "sgemm"]);
    assert_eq!(report["shader_checks"], "checked", "{report}");
    assert_eq!(report["rows"][0]["verification"]["ok"], true, "{report}");
    let _lock = timing_lock();
    let out = gpugate()
        .env("GPUGATE_SHADER_CHECKS", "checked")
        .args(["run", "--max-time", "0.1", "--kernel", "copy"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("shaders  checked (--shader-checks)"),
        "{text}"
    );
}

#[test]
fn record_writes_a_loadable_baseline_with_run_to_run_spread() {
    let baseline = gpugate::baseline::load(recorded_baseline()).unwrap();
    assert_eq!(baseline.schema_version, gpugate::baseline::SCHEMA_VERSION);
    let kernels: Vec<&str> = baseline.kernels.iter().map(|k| k.kernel.as_str()).collect();
    assert_eq!(kernels, crate::GATE_KERNELS);
    for k in &baseline.kernels {
        // Runs whose warm-up did not settle (or that shared the GPU) are left out of a baseline,
        // never more than leave the minimum.
        assert!(
            (gpugate::baseline::MIN_RUNS..=gpugate::baseline::DEFAULT_RUNS).contains(&k.runs.len()),
            "{}: {} runs",
            k.key,
            k.runs.len()
        );
        assert!(
            k.runs
                .iter()
                .all(|r| r.warmup.as_ref().is_some_and(|w| w.steady)),
            "{}: an unsteady run was recorded",
            k.key
        );
        assert!(k.runs.iter().all(|r| !r.samples_s.is_empty()));
        assert!(
            k.between_run_rel_sd > 0.0,
            "{}: separate processes never time identically",
            k.key
        );
    }
    if baseline.fingerprint.device_type == "Cpu" {
        assert_eq!(
            baseline.fingerprint.cpu_model.as_deref(),
            Some(crate::TEST_CPU_MODEL),
            "software baselines carry the CPU (here the test suite's stand-in)"
        );
        assert!(
            baseline.device_key.contains("gpugate-test-suite-CPU"),
            "{}: the CPU is part of the key",
            baseline.device_key
        );
        // A new software baseline carries the documented lavapipe threshold, and says why.
        assert_eq!(
            baseline.threshold_pct,
            Some(gpugate::baseline::SOFTWARE_THRESHOLD_PCT)
        );
        assert_eq!(
            crate::SOFTWARE_THRESHOLD.parse::<f64>().unwrap(),
            gpugate::baseline::SOFTWARE_THRESHOLD_PCT
        );
        assert!(baseline.note.is_some());
    }
}

/// The only test that reads `baselines/`: the shipped files are data to validate, not a gate on
/// the test host. Each loads, is named by its key, names only known kernels with their own
/// parameters, and its summaries agree with its raw samples.
#[test]
fn shipped_baselines_are_valid_and_agree_with_their_raw_samples() {
    use gpugate::stats;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("baselines");
    let close = |a: f64, b: f64, rel: f64| (a - b).abs() <= rel * a.abs().max(b.abs());
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let b = gpugate::baseline::load(&path).unwrap_or_else(|e| panic!("{e}"));
        // `load` hands out summaries recomputed from the samples: compare what the file stores.
        let raw: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = path.display();
        assert_eq!(path.file_stem().unwrap().to_str().unwrap(), b.device_key);
        assert!(b.kernels.len() >= 4, "{name} covers the suite");
        for k in &b.kernels {
            let kernel = gpugate::workload::find(&k.kernel)
                .unwrap_or_else(|e| panic!("{name}: {}: {e}", k.key));
            let mut want: Vec<&str> = kernel.params().iter().map(|p| p.name).collect();
            let mut have: Vec<&str> = k.params.0.keys().map(String::as_str).collect();
            want.sort_unstable();
            have.sort_unstable();
            assert_eq!(have, want, "{name}: {} parameters", k.key);
            let medians: Vec<f64> = k.runs.iter().map(|r| r.summary.median_s).collect();
            assert!(
                close(k.median_s, stats::median(&medians), 1e-12),
                "{name}: {}",
                k.key
            );
            let sd = stats::log_sd(&medians).unwrap();
            assert!(close(k.between_run_rel_sd, sd, 1e-9), "{name}: {}", k.key);
            let stored = raw["kernels"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["key"] == k.key.as_str())
                .unwrap();
            for (j, run) in k.runs.iter().enumerate() {
                let kept: stats::Summary =
                    serde_json::from_value(stored["runs"][j]["summary"].clone()).unwrap();
                let (kept, derived) = (&kept, stats::summarize(&run.samples_s));
                let at = format!("{name}: {} run {j}", k.key);
                assert_eq!(kept.n, run.samples_s.len(), "{at}");
                // Order statistics are exact; quantiles come from a 3-digit hdrhistogram.
                for (a, b) in [
                    (kept.median_s, derived.median_s),
                    (kept.mean_s, derived.mean_s),
                    (kept.min_s, derived.min_s),
                    (kept.max_s, derived.max_s),
                    (kept.ci_low_s, derived.ci_low_s),
                    (kept.ci_high_s, derived.ci_high_s),
                ] {
                    assert!(close(a, b, 1e-12), "{at}: {kept:?} vs {derived:?}");
                }
                for (a, b) in [
                    (kept.p05_s, derived.p05_s),
                    (kept.p25_s, derived.p25_s),
                    (kept.p75_s, derived.p75_s),
                    (kept.p95_s, derived.p95_s),
                    (kept.p99_s, derived.p99_s),
                ] {
                    assert!(close(a, b, 2e-3), "{at}: {kept:?} vs {derived:?}");
                }
            }
        }
        count += 1;
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
/// verdict; the rest of the check still decides the exit code. At the mechanics threshold sgemm
/// passes, so the exit code is decisive: 0 — never 3 for the unsupported entry.
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
    let coop_supported = {
        let gpu = gpugate::device::Gpu::open(&Default::default()).unwrap();
        let coop = gpugate::workload::find("hgemm_coop").unwrap();
        coop.unsupported(&gpu).is_none()
    };
    let out = gpugate()
        .args([
            "--format",
            "json",
            "check",
            "--threshold",
            MECHANICS_THRESHOLD,
        ])
        .args(["--kernel", "sgemm", "--kernel", "hgemm_coop", "--baselines"])
        .arg(&file)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.code(), Some(0), "{report}");
    let rows = report["rows"].as_array().unwrap();
    let verdict = |kernel: &str| {
        rows.iter()
            .find(|r| r["kernel"] == kernel)
            .map(|r| r["verdict"].as_str().unwrap().to_string())
    };
    assert_eq!(verdict("sgemm").as_deref(), Some("pass"), "{report}");
    let unsupported = report["unsupported"].as_array().unwrap();
    if coop_supported {
        // An adapter with cooperative matrices measures and verifies it like any kernel.
        assert!(unsupported.is_empty(), "{report}");
        assert_eq!(verdict("hgemm_coop").as_deref(), Some("pass"), "{report}");
    } else {
        assert_eq!(verdict("hgemm_coop"), None, "never measured: {report}");
        assert_eq!(unsupported.len(), 1, "{report}");
        assert_eq!(unsupported[0]["kernel"], "hgemm_coop");
        let message = report["outcome"]["message"].as_str().unwrap();
        assert!(
            message.contains("1 kernel(s) unsupported on this adapter, left out"),
            "{message}"
        );
    }
}

/// `gpugate --format json ARGS…` with `env`: exit code and the report on stdout.
fn report_of(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, serde_json::Value) {
    let out = gpugate()
        .args(["--format", "json"])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {}\nstderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), report)
}

/// The README's main command on a device without a baseline: record it (independent processes),
/// self-check against it in fresh processes, say what it detects; afterwards a plain check gates.
#[test]
fn first_run_records_a_baseline_checks_itself_and_says_what_it_detects() {
    let _lock = timing_lock();
    let dir = tempfile::tempdir().unwrap();
    let baselines = dir.path().join("baselines"); // does not exist yet: created
    let dir_arg = baselines.to_str().unwrap();
    // Five recorded runs and three self-check runs at the mechanics threshold: the self-check is
    // inconclusive only past a run-to-run sd of about 85 %, so exit 0 is decisive here.
    let (code, report) = report_of(
        &[
            "check",
            "--record-missing",
            "--kernel",
            "copy",
            "--record-runs",
            "5",
            "--runs",
            "3",
            "--threshold",
            MECHANICS_THRESHOLD,
            "--baselines",
            dir_arg,
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{report}");
    let key = report["device_key"].as_str().unwrap();
    let file = baselines.join(format!("{key}.json"));
    let b = &report["bootstrap"];
    assert_eq!(b["baseline_file"], file.to_str().unwrap(), "{b}");
    assert_eq!(
        (b["recorded_runs"].as_u64(), b["self_checked"].as_bool()),
        (Some(5), Some(true))
    );
    assert_eq!(b["check_runs"], 3);
    let detectable = b["detectable"].as_array().unwrap();
    assert_eq!(detectable.len(), 1, "{b}");
    assert!(detectable[0]["key"]
        .as_str()
        .unwrap()
        .starts_with("copy[n="));
    assert!(
        detectable[0]["slowdown_ratio"].as_f64().unwrap() > 1.0,
        "{b}"
    );
    assert!(report["outcome"]["message"]
        .as_str()
        .unwrap()
        .starts_with("bootstrap self-check: pass"));
    // The self-check compared five recorded runs with three fresh ones.
    let c = &report["rows"][0]["comparison"];
    assert_eq!(
        (c["baseline_runs"].as_u64(), c["current_runs"].as_u64()),
        (Some(5), Some(3)),
        "{c}"
    );
    assert_eq!(report["runs"].as_array().unwrap().len(), 3);

    let written = gpugate::baseline::load(&file).unwrap();
    // Five recorded; a run whose warm-up did not settle is left out of the file.
    assert!(written
        .kernels
        .iter()
        .all(|k| (gpugate::baseline::MIN_RUNS..=5).contains(&k.runs.len())));
    if written.fingerprint.is_software() {
        assert_eq!(
            written.threshold_pct,
            Some(gpugate::baseline::SOFTWARE_THRESHOLD_PCT)
        );
        assert!(written
            .note
            .as_deref()
            .is_some_and(|n| n.contains("lavapipe")));
    }
    // Committed, the file makes the next plain check a gate.
    let (code, report) = report_of(
        &[
            "check",
            "--runs",
            "3",
            "--threshold",
            MECHANICS_THRESHOLD,
            "--baselines",
            dir_arg,
        ],
        &[],
    );
    assert_eq!(code, Some(0), "{report}");
    assert!(report.get("bootstrap").is_none());
}

/// The table a newcomer sees ends with where the file is, what to commit and what it detects.
/// Under CI the bootstrap writes the file and exits 3: a throwaway runner never passes by it.
#[test]
fn under_ci_a_bootstrap_writes_the_file_and_exits_3() {
    let _lock = timing_lock();
    // GitHub/GitLab set CI; Jenkins sets JENKINS_URL and not CI.
    for (name, value) in [("CI", "true"), ("JENKINS_URL", "http://jenkins.example/")] {
        under_ci_bootstrap(name, value);
    }
}

fn under_ci_bootstrap(name: &str, value: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = gpugate()
        .env(name, value)
        .args([
            "check",
            "--record-missing",
            "--kernel",
            "copy",
            "--record-runs",
            "2",
        ])
        .arg("--baselines")
        .arg(dir.path())
        .output()
        .unwrap();
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(3), "{text}");
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = files[0].to_str().unwrap();
    assert!(text.contains(&format!("wrote {file}")), "{text}");
    assert!(text.contains(&format!("git add {file}")), "{text}");
    assert!(
        text.contains("smallest slowdown a check (3 runs) detects with 95 % power"),
        "{text}"
    );
    assert!(text.contains("a bootstrap never passes in CI"), "{text}");
    assert!(
        !text.contains("then checked against"),
        "no self-check under CI: {text}"
    );
}

/// Without `--record-missing`, check stays strict: exit 3 and nothing written. With it, another
/// device's file is never overwritten.
#[test]
fn check_never_records_unless_asked_and_never_over_another_devices_file() {
    let recorded = recorded_baseline();
    let _lock = crate::shared_lock();
    let dir = tempfile::tempdir().unwrap();
    let out = gpugate()
        .arg("check")
        .arg("--baselines")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("check --record-missing"),
        "the hint names the way out: {err}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    let other = dir.path().join("other.json");
    std::fs::copy(recorded, &other).unwrap();
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&other).unwrap()).unwrap();
    doc["fingerprint"]["name"] = "NVIDIA H100 80GB HBM3".into();
    doc["fingerprint"]["device_type"] = "DiscreteGpu".into();
    doc["fingerprint"]
        .as_object_mut()
        .unwrap()
        .remove("cpu_model");
    doc["device_key"] = "NVIDIA-H100-80GB-HBM3-vulkan".into();
    let before = serde_json::to_vec_pretty(&doc).unwrap();
    std::fs::write(&other, &before).unwrap();
    let out = gpugate()
        .args(["check", "--record-missing", "--baselines"])
        .arg(&other)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("belongs to another device"), "{err}");
    assert_eq!(std::fs::read(&other).unwrap(), before, "left untouched");
}

/// % of peak survives `--kernel`: `run` measures the unit's peak kernel anyway and reports it as
/// a ceiling, not a row; a filtered `check` takes the ceiling from its baseline.
#[test]
fn percent_of_peak_survives_a_kernel_filter() {
    let _lock = timing_lock();
    let report = json_of(&["run", "--max-time", "0.2", "--kernel", "copy"]);
    let keys: Vec<&str> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kernel"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["copy"], "the ceiling kernel is not a row");
    let ceiling = &report["ceilings"][0];
    assert_eq!(ceiling["unit"], "bandwidth", "{report}");
    assert_eq!(ceiling["source"], "measured");
    assert!(ceiling["key"]
        .as_str()
        .unwrap()
        .starts_with("peak_bandwidth["));
    let pct = report["rows"][0]["pct_of_peak"].as_f64().unwrap();
    let expected = report["rows"][0]["rate"].as_f64().unwrap() / ceiling["rate"].as_f64().unwrap();
    assert!((pct - expected).abs() < 1e-12, "{pct} vs {expected}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("base.json");
    let recorded = gpugate()
        .args(["record", "--runs", "2", "--max-time", "0.2"])
        .args(["--kernel", "copy", "--kernel", "peak_bandwidth", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(recorded.status.success(), "{}", stdout(&recorded));
    let (code, report) = report_of(
        &[
            "check",
            "--kernel",
            "copy",
            "--confirm-runs",
            "0",
            "--max-time",
            "0.2",
            "--threshold",
            crate::MECHANICS_THRESHOLD,
            "--baselines",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(matches!(code, Some(0 | 3)), "{report}");
    assert_eq!(report["ceilings"][0]["source"], "baseline", "{report}");
    assert!(report["rows"][0]["pct_of_peak"].as_f64().unwrap() > 0.0);
}
