use serde_json::{json, Value};

use super::*;

fn row(key: &str, unit: &str, median_s: f64, rate: f64, intensity: f64) -> Value {
    json!({
        "key": key, "kernel": key.split('[').next().unwrap(), "unit": unit,
        "median_s": median_s, "p95_s": median_s * 1.1, "rate": rate, "intensity": intensity,
        "iqr_rel": 0.02, "timing": "gpu_timestamp", "stop": "noise_target",
        "verification": {"ok": true, "checked": 10, "max_error": 0.0, "tolerance": 0.0, "detail": "ok"},
        "verdict": "pass",
    })
}

fn comparison(ratio: f64, verdict: &str) -> Value {
    json!({
        "baseline_s": 1e-3, "current_s": 1e-3 * ratio, "ratio": ratio, "ratio_low": ratio * 0.9,
        "ratio_high": ratio * 1.1, "threshold": 0.05, "noise_rel": 0.01, "baseline_runs": 10,
        "current_runs": 3, "verdict": verdict, "reason": "within the threshold",
    })
}

fn report(rows: Vec<Value>, extra: Value) -> Report {
    let mut doc = json!({
        "command": "check",
        "device_key": "test-gpu-vulkan",
        "fingerprint": {"name": "Test <GPU>", "vendor_id": 1, "device_id": 2, "device_type": "Cpu",
            "driver": "llvmpipe", "driver_info": "1.0", "backend": "vulkan"},
        "notes": ["a note"],
        "rows": rows,
        "outcome": {"verdict": "pass", "exit_code": 0, "message": "all kernels pass"},
        "runs": [],
    });
    for (k, v) in extra.as_object().unwrap() {
        doc[k] = v.clone();
    }
    serde_json::from_value(doc).unwrap()
}

fn count(page: &str, needle: &str) -> usize {
    page.matches(needle).count()
}

#[test]
fn kernel_keys_and_messages_are_escaped() {
    let key = "attention[batch=8,causal=0,heads=16,seq=4096]";
    let mut evil = row(
        "x\"><script>alert(1)</script>",
        "bandwidth",
        1e-3,
        10.0,
        0.0,
    );
    evil["kernel"] = json!("<b>");
    let r = report(
        vec![row(key, "flops", 1e-3, 100.0, 8.0), evil],
        json!({"baseline_file": "a&b.json"}),
    );
    let page = page(&[r]);
    assert!(page.contains(&format!("data-kernel=\"{key}\"")), "{page}");
    assert!(!page.contains("<script"), "a key became markup");
    assert!(!page.contains("<b>"));
    assert!(page.contains("x&quot;&gt;&lt;script&gt;"));
    assert!(page.contains("a&amp;b.json"));
    assert!(page.contains("Test &lt;GPU&gt;"));
    assert_eq!(count(&page, "<svg class=\"distribution\""), 2);
    assert_eq!(count(&page, "<svg class=\"roofline\""), 1);
}

#[test]
fn the_page_forbids_network_loads_and_has_no_script() {
    let page = page(&[report(
        vec![row("copy", "bandwidth", 1e-3, 10.0, 0.0)],
        json!({}),
    )]);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(page.contains("http-equiv=\"Content-Security-Policy\""));
    assert!(page.contains("default-src 'none'"));
    assert!(!page.contains("<script"));
    assert!(!page.contains("src="));
    assert!(!page.contains("href="));
}

#[test]
fn non_finite_numbers_never_reach_the_svg() {
    // JSON has no NaN: spoil the values after reading.
    let mut bad = row("copy", "bandwidth", 1e-3, 1.0, 0.0);
    bad["comparison"] = comparison(1.0, "inconclusive");
    bad["baseline_run_medians_s"] = json!([1e-3, 2e-3]);
    let flops = row("sgemm", "flops", 2e-3, 1.0, 4.0);
    let mut r = report(vec![bad, flops], json!({}));
    let nan = f64::NAN;
    r.rows[0].baseline_run_medians_s.push(nan);
    (r.rows[0].median_s, r.rows[0].rate, r.rows[0].intensity) = (nan, nan, nan);
    r.rows[0].pct_of_peak = Some(nan);
    let c = r.rows[0].comparison.as_mut().unwrap();
    (c.ratio, c.ratio_low, c.baseline_s) = (nan, nan, nan);
    r.rows[1].rate = f64::INFINITY;
    r.ceilings = vec![Ceiling {
        unit: Unit::Bandwidth,
        key: "peak_bandwidth".into(),
        rate: nan,
        source: crate::report::CeilingSource::Measured,
    }];
    let page = page(&[r.clone(), r]);
    assert!(!page.contains("NaN"), "{page}");
    assert!(!page.contains("inf"), "{page}");
    assert_eq!(count(&page, "<svg class=\"history\""), 1);
}

#[test]
fn an_error_report_shows_the_error_and_no_plots() {
    let err = crate::error::Error::Usage("no such kernel \"nope\"".into());
    let r = Report::from_error("check", &err);
    let page = page(&[r]);
    assert!(page.contains("class=\"error\""));
    assert!(page.contains("no such kernel &quot;nope&quot;"));
    assert!(!page.contains("<svg"));
}

#[test]
fn no_report_says_so() {
    let page = render("gpugate serve", &["No run has finished yet.".into()], &[]);
    assert!(page.contains("No run has finished yet."));
    assert!(!page.contains("<svg"));
}

#[test]
fn roofline_draws_the_roofs_it_has_and_says_which_are_missing() {
    let rows = vec![
        row("copy", "bandwidth", 1e-3, 40.0, 0.0),
        row("sgemm", "flops", 1e-3, 100.0, 16.0),
        row("lattice_bfs", "teps", 1e-3, 0.1, 0.0),
    ];
    let bw =
        json!({"unit": "bandwidth", "key": "peak_bandwidth", "rate": 80.0, "source": "measured"});
    let fma = json!({"unit": "flops", "key": "peak_fma", "rate": 500.0, "source": "measured"});
    let both = page(&[report(rows.clone(), json!({"ceilings": [bw, fma]}))]);
    assert_eq!(count(&both, "class=\"roof\""), 1);
    assert!(
        both.contains("class=\"zero-flop\""),
        "copy has no FLOPs: the strip"
    );
    assert!(
        both.contains("has no place on a roofline"),
        "GTEPS kernels are named"
    );
    assert!(both.contains("data-kernel=\"sgemm\" cx="));
    let bw_only = page(&[report(rows.clone(), json!({"ceilings": [bw]}))]);
    assert!(bw_only.contains("no FMA ceiling in this report"));
    let none = page(&[report(rows, json!({}))]);
    assert!(none.contains("No ceiling in this report"));
    assert_eq!(count(&none, "class=\"roof\""), 0);
    assert_eq!(count(&none, "<svg class=\"roofline\""), 1);
}

#[test]
fn history_needs_two_reports_and_uses_ratios_when_every_row_was_compared() {
    let mut a = row("copy", "bandwidth", 1e-3, 40.0, 0.0);
    a["comparison"] = comparison(1.02, "pass");
    let mut b = a.clone();
    b["comparison"] = comparison(1.5, "regression");
    b["verdict"] = json!("regression");
    let one = page(&[report(vec![a.clone()], json!({}))]);
    assert_eq!(count(&one, "<svg class=\"history\""), 0);
    let two = page(&[report(vec![a], json!({})), report(vec![b], json!({}))]);
    assert_eq!(count(&two, "<svg class=\"history\""), 1);
    assert!(two.contains("current / baseline"));
    assert!(two.contains("verdict-regression"));
    assert!(two.contains("×1.50, regression"));
    let run = page(&[
        report(vec![row("copy", "bandwidth", 1e-3, 40.0, 0.0)], json!({})),
        report(vec![row("copy", "bandwidth", 2e-3, 20.0, 0.0)], json!({})),
    ]);
    assert!(run.contains("median time per iteration (log)"));
}

#[test]
fn a_sweep_has_one_series_per_combination_of_the_other_axes() {
    let mut rows = vec![];
    for m in [64, 128] {
        for n in [256, 1024, 4096] {
            let mut r = row(&format!("sgemm[m={m},n={n}]"), "flops", 1e-3, n as f64, 8.0);
            r["params"] = json!({"m": m, "n": n});
            rows.push(r);
        }
    }
    let sweep = json!({"kernel": "sgemm", "axes": [{"name": "m", "values": [64, 128]}, {"name": "n", "values": [256, 1024, 4096]}]});
    let r = report(rows, json!({"command": "profile", "sweep": sweep}));
    let page = page(&[r]);
    assert_eq!(count(&page, "<svg class=\"sweep\""), 1);
    // The first axis with several values is the x axis; the other makes the series.
    assert!(page.contains("Sweep of sgemm over m"));
    assert_eq!(count(&page, "<g class=\"series\""), 3);
    assert!(page.contains(">n=4096<"));
}

#[test]
fn rendering_is_deterministic() {
    let rows = vec![row("copy", "bandwidth", 1e-3, 40.0, 0.0)];
    let r = report(rows, json!({}));
    assert_eq!(page(std::slice::from_ref(&r)), page(&[r]));
}
