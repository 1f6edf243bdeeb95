//! `gpugate profile KERNEL --sweep …`: one row per point with its parameters, rate and % of
//! peak, the axes in the JSON; bad sweeps are exit 2 naming the flag.

use crate::{gpugate, shared_lock};

/// `gpugate --format json profile ARGS…`: (exit code, stdout as JSON, stderr).
fn profile(args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let _lock = shared_lock();
    let out = gpugate()
        .args(["--format", "json", "profile"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let doc = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), doc, stderr)
}

#[test]
fn a_sweep_measures_every_point_with_its_params_and_percent_of_peak() {
    let (code, doc, err) = profile(&["copy", "--sweep", "n=1024,4096", "--max-time", "0.2"]);
    assert_eq!(code, Some(0), "{err}\n{doc:#}");
    assert_eq!(doc["command"], "profile");
    assert_eq!(doc["sweep"]["kernel"], "copy");
    assert_eq!(
        doc["sweep"]["axes"],
        serde_json::json!([{"name": "n", "values": [1024, 4096]}])
    );
    let rows = doc["rows"].as_array().unwrap();
    let ns: Vec<u64> = rows
        .iter()
        .map(|r| r["params"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, [1024, 4096]);
    for row in rows {
        assert_eq!(row["verification"]["ok"], true, "{row}");
        assert!(row["rate"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["pct_of_peak"].as_f64().is_some(), "{row}");
    }
    assert_eq!(
        doc["ceilings"][0]["unit"], "bandwidth",
        "{:#}",
        doc["ceilings"]
    );
}

/// Two axes on a kernel with more parameters: the product of the axes, the rest (k) from the
/// quick suite, measured in fresh processes with --runs 2.
#[test]
fn axes_combine_and_unswept_parameters_keep_their_default() {
    let (code, doc, err) = profile(&[
        "sgemm",
        "--sweep",
        "m=32,64",
        "--sweep",
        "n=32",
        "--max-time",
        "0.1",
        "--runs",
        "2",
    ]);
    assert_eq!(code, Some(0), "{err}\n{doc:#}");
    let keys: Vec<&str> = doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys[0].starts_with("sgemm[k=") && keys[0].ends_with(",m=32,n=32]"),
        "{keys:?}"
    );
    assert!(keys[1].ends_with(",m=64,n=32]"), "{keys:?}");
    assert_eq!(doc["runs"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_sweeps_are_exit_2_naming_the_flag() {
    for (args, wanted) in [
        (
            &["copy", "--sweep", "zzz=1"][..],
            "--sweep zzz: unknown parameter; copy takes n",
        ),
        (&["copy", "--sweep", "n=0"][..], "--sweep n=0"),
        (&["copy", "--sweep", "n=1023"][..], "--sweep n=1023"),
        (&["copy", "--sweep", "n="][..], "--sweep n=: no values"),
        (
            &["copy", "--sweep", "n=4,x"][..],
            "--sweep n=4,x: \"x\" is not",
        ),
        (&["copy", "--sweep", "n=4,4"][..], "4 is given twice"),
        (
            &["copy", "--sweep", "n=4", "--sweep", "n=8"][..],
            "--sweep n: axis given twice",
        ),
        (
            &[
                "sgemm",
                "--sweep",
                "m=1,2,3,4,5,6,7,8,9",
                "--sweep",
                "n=1,2,3,4,5,6,7,8",
            ][..],
            "9 × 8 = 72 points; at most 64",
        ),
        (&["no_such_kernel", "--sweep", "n=4"][..], "unknown kernel"),
        (&["copy"][..], "--sweep"),
    ] {
        let (code, _, err) = profile(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(wanted), "{args:?}: {err}");
    }
}
