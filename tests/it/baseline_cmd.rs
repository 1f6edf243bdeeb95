//! `gpugate baseline show | diff | prune` on copies of the recorded baseline and doctored ones;
//! bad files (the whole bad-baseline corpus) are exit 2 naming the file and field.

use std::path::{Path, PathBuf};

use crate::{gpugate, recorded_baseline, shared_lock, MECHANICS_THRESHOLD};

/// `gpugate [--format json] baseline ARGS…`: (exit code, stdout, stderr).
fn baseline(json: bool, args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let mut cmd = gpugate();
    if json {
        cmd.args(["--format", "json"]);
    }
    let out = cmd.arg("baseline").args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

/// `baseline ARGS…` under `--format json`, which must exit 0: its document.
fn json_of(args: &[&std::ffi::OsStr]) -> serde_json::Value {
    let (code, out, err) = baseline(true, args);
    assert_eq!(code, Some(0), "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// A copy of the recorded baseline at `dir/name`, edited as JSON.
fn copy(dir: &Path, name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(recorded_baseline()).unwrap()).unwrap();
    edit(&mut doc);
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    path
}

/// Kernel `i`'s entry in a baseline document.
fn kernel<'a>(doc: &'a mut serde_json::Value, name: &str) -> &'a mut serde_json::Value {
    doc["kernels"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|k| k["kernel"] == name)
        .unwrap()
}

#[test]
fn show_lists_every_kernel_with_what_a_check_detects() {
    let dir = tempfile::tempdir().unwrap();
    let file = copy(dir.path(), "b.json", |_| {});
    let doc = json_of(&[os("show"), file.as_os_str()]);
    let base = gpugate::baseline::load(&file).unwrap();
    assert_eq!(doc["device_key"], base.device_key);
    assert_eq!(
        doc["sessions"][0]["driver"],
        base.fingerprint.driver_string()
    );
    assert_eq!(doc["check"]["runs"], 3);
    assert_eq!(doc["check"]["confirm_runs"], 5);
    assert_eq!(doc["check"]["family"], crate::GATE_KERNELS.len());
    let kernels = doc["kernels"].as_array().unwrap();
    assert_eq!(kernels.len(), crate::GATE_KERNELS.len());
    for (k, b) in kernels.iter().zip(&base.kernels) {
        assert_eq!(k["key"], b.key);
        assert_eq!(k["runs"], b.runs.len());
        assert_eq!(k["sessions"], serde_json::json!([0]));
        assert_eq!(k["median_s"].as_f64().unwrap(), b.median_s);
        assert!(!k["modes"].as_array().unwrap().is_empty());
        assert_eq!(k["threshold_pct"], 100.0, "a software baseline's threshold");
        assert!(k.get("detectable_ratio").is_some());
    }
    let (code, table, err) = baseline(false, &[os("show"), file.as_os_str()]);
    assert_eq!(code, Some(0), "{err}");
    for k in &base.kernels {
        assert!(table.contains(&k.key), "{table}");
    }
    assert!(
        table.contains("detects") && table.contains("session 0"),
        "{table}"
    );
}

#[test]
fn diff_names_what_changed_kernel_by_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let a = copy(dir.path(), "a.json", |_| {});
    let b = copy(dir.path(), "b.json", |doc| {
        doc["kernels"]
            .as_array_mut()
            .unwrap()
            .retain(|k| k["kernel"] != "sgemm");
        kernel(doc, "copy")["threshold_pct"] = 50.0.into();
        kernel(doc, "xor_transform")["kernel_hash"] = "sha256:00".into();
        doc["sessions"][0]["driver"] = "another driver 2.0".into();
    });
    let doc = json_of(&[os("diff"), a.as_os_str(), b.as_os_str()]);
    let find = |name: &str| {
        doc["kernels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["key"].as_str().unwrap().starts_with(&format!("{name}[")))
            .unwrap()
            .clone()
    };
    assert_eq!(find("sgemm")["presence"], "only_a");
    let copy_row = find("copy");
    assert_eq!(copy_row["presence"], "both");
    assert_eq!(copy_row["delta_pct"], 0.0);
    assert_eq!(
        (
            copy_row["threshold_a_pct"].as_f64(),
            copy_row["threshold_b_pct"].as_f64()
        ),
        (Some(100.0), Some(50.0))
    );
    assert_eq!(find("xor_transform")["kernel_hash_changed"], true);
    assert_eq!(find("lattice_bfs")["kernel_hash_changed"], false);
    assert_eq!(doc["drivers_b"], serde_json::json!(["another driver 2.0"]));
    let (code, table, err) = baseline(false, &[os("diff"), a.as_os_str(), b.as_os_str()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        table.contains("only A")
            && table.contains("kernel code")
            && table.contains("→ another driver 2.0"),
        "{table}"
    );
}

#[test]
fn prune_drops_kernels_and_the_result_still_gates() {
    let dir = tempfile::tempdir().unwrap();
    let file = copy(dir.path(), "b.json", |_| {});
    let before = std::fs::read(&file).unwrap();
    let copy_key = gpugate::baseline::load(&file).unwrap().kernels[0]
        .key
        .clone();
    let out = dir.path().join("pruned.json");
    let doc = json_of(&[
        os("prune"),
        file.as_os_str(),
        os("--kernel"),
        os("sgemm"),
        os("--kernel"),
        os(&copy_key),
        os("--out"),
        out.as_os_str(),
    ]);
    let dropped: Vec<&str> = doc["dropped_kernels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap())
        .collect();
    assert_eq!(dropped.len(), 2, "{doc:#}");
    assert!(dropped.contains(&copy_key.as_str()), "{dropped:?}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "--out leaves FILE alone"
    );
    let pruned = gpugate::baseline::load(&out).unwrap();
    let left: Vec<&str> = pruned.kernels.iter().map(|k| k.kernel.as_str()).collect();
    assert_eq!(left, ["xor_transform", "lattice_bfs"]);
    // Judged against the pruned file: a pass, or inconclusive when a warm-up did not settle on
    // a loaded machine, but never an error or a regression.
    let _lock = shared_lock();
    let check = gpugate()
        .args(["--format", "json", "check", "--kernel", "xor_transform"])
        .args([
            "--confirm-runs",
            "0",
            "--threshold",
            MECHANICS_THRESHOLD,
            "--baselines",
        ])
        .arg(&out)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert!(matches!(check.status.code(), Some(0 | 3)), "{report:#}");
    assert_eq!(report["rows"][0]["kernel"], "xor_transform");
    assert!(
        report["rows"][0]["comparison"]["ratio"].as_f64().is_some(),
        "{report:#}"
    );
}

/// A two-session copy: session 1 holds the last half of every kernel's runs, but only the last
/// run of lattice_bfs, which dropping session 0 leaves with one run.
#[test]
fn prune_drops_a_session_renumbers_and_drops_kernels_left_too_thin() {
    let dir = tempfile::tempdir().unwrap();
    let file = copy(dir.path(), "b.json", |doc| {
        let mut second = doc["sessions"][0].clone();
        second["driver"] = "later driver".into();
        doc["sessions"].as_array_mut().unwrap().push(second);
        for k in doc["kernels"].as_array_mut().unwrap() {
            let bfs = k["kernel"] == "lattice_bfs";
            let runs = k["runs"].as_array_mut().unwrap();
            let n = runs.len();
            for (i, run) in runs.iter_mut().enumerate() {
                let later = if bfs { i + 1 == n } else { i >= n / 2 };
                run["session"] = u32::from(later).into();
            }
        }
    });
    let base = gpugate::baseline::load(&file).unwrap();
    let doc = json_of(&[os("prune"), file.as_os_str(), os("--session"), os("0")]);
    assert_eq!(doc["dropped_sessions"][0]["index"], 0);
    assert_eq!(doc["sessions"], 1);
    let dropped = &doc["dropped_kernels"][0];
    assert!(
        dropped["key"].as_str().unwrap().starts_with("lattice_bfs["),
        "{doc:#}"
    );
    assert!(
        dropped["why"]
            .as_str()
            .unwrap()
            .contains("a baseline needs 2"),
        "{doc:#}"
    );
    let pruned = gpugate::baseline::load(&file).unwrap();
    assert_eq!(pruned.sessions.len(), 1);
    assert_eq!(pruned.sessions[0].driver, "later driver");
    assert_eq!(pruned.kernels.len(), 3);
    for k in &pruned.kernels {
        let was = base.kernels.iter().find(|b| b.key == k.key).unwrap();
        assert_eq!(k.runs.len(), was.runs.len() - was.runs.len() / 2);
        assert!(k.runs.iter().all(|r| r.session == 0));
        let medians: Vec<f64> = k.runs.iter().map(|r| r.summary.median_s).collect();
        assert_eq!(
            k.median_s,
            gpugate::stats::median(&medians),
            "re-summarised"
        );
    }
    // Dropping the only session left would leave nothing.
    let (code, _, err) = baseline(
        false,
        &[os("prune"), file.as_os_str(), os("--session"), os("0")],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("nothing would be left"), "{err}");
}

#[test]
fn prune_refuses_names_and_sessions_not_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = copy(dir.path(), "b.json", |_| {});
    let before = std::fs::read(&file).unwrap();
    for (flag, value) in [
        ("--kernel", "gelu"),
        ("--kernel", "copy[n=4]"),
        ("--session", "1"),
    ] {
        let (code, _, err) = baseline(false, &[os("prune"), file.as_os_str(), os(flag), os(value)]);
        assert_eq!(code, Some(2), "{flag} {value}: {err}");
        assert!(err.contains(&format!("{flag} {value}")), "{err}");
    }
    let (code, _, err) = baseline(false, &[os("prune"), file.as_os_str()]);
    assert_eq!(code, Some(2), "nothing to drop: {err}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "a refused prune writes nothing"
    );
}

/// Every bad file of the corpus that `check` refuses as exit 2 is refused by show, diff and
/// prune alike, naming the same field.
#[test]
fn bad_files_are_exit_2_naming_the_file_and_field() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/baselines");
    let manifest = std::fs::read_to_string(corpus.join("manifest.tsv")).unwrap();
    let good = recorded_baseline();
    let mut seen = 0;
    for line in manifest.lines().filter(|l| !l.starts_with('#')) {
        let mut cols = line.split('\t');
        let (case, code, wanted) = (
            cols.next().unwrap(),
            cols.next().unwrap(),
            cols.next().unwrap(),
        );
        if code != "2" {
            continue;
        }
        let file = corpus.join(format!("{case}.json"));
        for args in [
            vec![os("show"), file.as_os_str()],
            vec![os("diff"), good.as_os_str(), file.as_os_str()],
            vec![os("prune"), file.as_os_str(), os("--kernel"), os("copy")],
        ] {
            let (got, _, err) = baseline(false, &args);
            assert_eq!(got, Some(2), "{case} {args:?}: {err}");
            assert!(
                err.contains(&format!("{case}.json")) && err.contains(wanted),
                "{case}: {err}"
            );
        }
        seen += 1;
    }
    assert!(seen > 20, "the corpus has its bad files");
}
