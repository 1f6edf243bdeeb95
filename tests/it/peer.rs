//! benches/peer/compare.py pairs a real gpugate report with peer_bench.py's output by shape:
//! the ratio is gpugate's rate over the peer's, only identical shapes pair, and nothing paired
//! is a failure, not an empty table.

use std::path::Path;
use std::process::Command;

use crate::{gpugate, timing_lock};

fn compare(args: &[&Path]) -> (Option<i32>, String, String) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peer/compare.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script);
    for pair in args.chunks(2) {
        cmd.arg(pair[0]).arg(pair[1]);
    }
    let out = cmd.output().expect("python3 runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// peer_bench.py's output shape: its arguments, then its figures.
fn peer(dir: &Path, name: &str, copy_mib: u64, copy_gbps: f64) -> std::path::PathBuf {
    let path = dir.join(name);
    let doc = serde_json::json!({
        "device": "NVIDIA H200", "torch": "2.11", "cuda": "12.9",
        "args": {"copy_mib": copy_mib, "gemm_n": 4096, "rows": 16384, "cols": 8192, "reps": 30},
        "copy_GBps": copy_gbps, "sgemm4096_fp32_TFLOPs": 51.0,
    });
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

#[test]
fn a_real_report_pairs_with_the_peer_at_the_same_shape_only() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("run.json");
    {
        let _lock = timing_lock();
        // copy at 1 MiB elements = 4 MiB, the peer's --copy-mib 4.
        let out = gpugate()
            .args(["run", "--max-time", "0.1", "--kernel", "copy", "--json"])
            .arg(&report)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let row = &doc["rows"][0];
    assert_eq!(
        row["key"], "copy[n=1048576]",
        "the quick suite's software size"
    );
    let ours = row["rate"].as_f64().unwrap();

    let same = peer(dir.path(), "same.json", 4, ours * 2.0);
    let flag = |s: &str| Path::new(s).to_path_buf();
    let (r, p) = (flag("--report"), flag("--peer"));
    let (code, out, err) = compare(&[&r, &report, &p, &same]);
    assert_eq!(code, Some(0), "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("| `copy[n=1048576]`"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains("| 0.50× | no |"),
        "half the peer's rate: {line}"
    );
    assert!(
        out.contains("sgemm[k=4096,m=4096,n=4096]"),
        "named as not measured: {out}"
    );

    // Another shape never pairs: nothing compared is exit 1, not an empty table.
    let other = peer(dir.path(), "other.json", 1024, 3000.0);
    let (code, out, err) = compare(&[&r, &report, &p, &other]);
    assert_eq!(code, Some(1), "{out}");
    assert!(err.contains("nothing compared"), "{err}");
    assert!(err.contains("copy[n=268435456]"), "{err}");

    // A file that is not peer_bench's output is named with the field at fault.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"copy_GBps": 1.0}"#).unwrap();
    let (code, _, err) = compare(&[&r, &report, &p, &bad]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("bad.json: field `args`"), "{err}");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&same).unwrap()).unwrap();
    doc["copy_GBps"] = serde_json::Value::Null;
    std::fs::write(&bad, doc.to_string()).unwrap();
    let (code, _, err) = compare(&[&r, &report, &p, &bad]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("bad.json: field `copy_GBps`: expected a positive rate"),
        "{err}"
    );
    std::fs::write(&bad, "[1, 2]").unwrap();
    let (code, _, err) = compare(&[&r, &report, &p, &bad]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("bad.json: expected a JSON object"), "{err}");
}
