//! The HTML report in a real browser: pages from `run --html`, `check --html`, `report A B
//! --html` and `serve`'s `/` loaded in headless Chromium through Selenium
//! (tests/browser/check_page.py), which must log no console error, hold the expected plots and
//! load nothing over the network; `/` through `oneshot` before any run and once runs are kept.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Utc;
use gpugate::serve::api::app;
use gpugate::serve::history::{GpuRun, History, Retention, RunRecord, RunResult, Trigger};
use gpugate::serve::metrics::Metrics;
use gpugate::serve::State;
use serde_json::Value;
use tower::ServiceExt;

use crate::{gpugate, recorded_baseline, shared_lock, MECHANICS_THRESHOLD};

const MISSING: &str =
    "run scripts/test (scripts/ensure-test-tools installs Chromium, chromedriver and selenium)";

/// The browser check's verdict on `urls`: one JSON object per page. Fails (never skips) when
/// the browser or its driver is missing.
fn browse(urls: &[String]) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".tools/venv/bin/python");
    for tool in [
        python.as_path(),
        Path::new("/usr/bin/chromium"),
        Path::new("/usr/bin/chromedriver"),
    ] {
        assert!(tool.exists(), "{} is missing: {MISSING}", tool.display());
    }
    let out = std::process::Command::new(&python)
        .arg(root.join("tests/browser/check_page.py"))
        .args(urls)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the browser check failed ({MISSING} if selenium is missing): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    doc["pages"].as_array().unwrap().clone()
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// What every page must show a browser: no console error, no network request, no shape that
/// swallowed its siblings, and these plot counts.
fn assert_page(page: &Value, distributions: usize, history: usize) {
    let url = &page["url"];
    assert_eq!(
        page["severe"],
        serde_json::json!([]),
        "{url}: console errors: {page}"
    );
    assert_eq!(
        page["resources"],
        serde_json::json!([]),
        "{url}: network loads: {page}"
    );
    assert_eq!(page["misnested"], 0, "{url}: {page}");
    assert_eq!(page["distribution"], distributions, "{url}: {page}");
    assert_eq!(page["roofline"], 1, "{url}: {page}");
    assert_eq!(page["history"], history, "{url}: {page}");
    assert!(
        page["points_with_tooltips"].as_u64().unwrap() > 0,
        "{url}: {page}"
    );
    for size in page["svg_sizes"].as_array().unwrap() {
        assert!(
            size[0].as_f64().unwrap() > 100.0 && size[1].as_f64().unwrap() > 50.0,
            "{url}: {page}"
        );
    }
}

fn run_ok(args: &[&str], paths: &[&Path]) -> std::process::Output {
    let mut cmd = gpugate();
    cmd.args(args);
    for p in paths {
        cmd.arg(p);
    }
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "gpugate {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn run_check_and_report_pages_render_in_chromium() {
    let baseline = recorded_baseline();
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| -> PathBuf { dir.path().join(name) };
    let kernels = ["--kernel", "copy", "--kernel", "sgemm", "--max-time", "0.2"];
    {
        let _lock = shared_lock();
        let mut args = vec!["run", "--runs", "2"];
        args.extend(kernels);
        args.push("--json");
        let mut cmd = gpugate();
        cmd.args(&args)
            .arg(path("run.json"))
            .arg("--html")
            .arg(path("run.html"));
        let out = cmd.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut cmd = gpugate();
        cmd.args(["check", "--threshold", MECHANICS_THRESHOLD])
            .args(kernels)
            .arg("--baselines")
            .arg(baseline)
            .arg("--json")
            .arg(path("check.json"))
            .arg("--html")
            .arg(path("check.html"));
        let out = cmd.output().unwrap();
        // A pass, or inconclusive when a loaded host made a short run noisy: either way the
        // page must render (a regression or an error would not be this test's subject).
        assert!(
            matches!(out.status.code(), Some(0 | 3)),
            "check exited {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run_ok(
        &["report"],
        &[
            &path("run.json"),
            &path("check.json"),
            Path::new("--html"),
            &path("both.html"),
        ],
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&path("both.html").display().to_string()),
        "{said}"
    );

    let check_html = std::fs::read_to_string(path("check.html")).unwrap();
    assert!(check_html.contains("data-kernel=\"copy["));
    assert!(
        check_html.contains("class=\"baseline\""),
        "the baseline's run medians are drawn"
    );

    let pages = browse(&[
        file_url(&path("run.html")),
        file_url(&path("check.html")),
        file_url(&path("both.html")),
    ]);
    assert_eq!(pages.len(), 3);
    assert_page(&pages[0], 2, 0);
    assert_page(&pages[1], 2, 0);
    assert_page(&pages[2], 2, 1);
    let kernels: Vec<&str> = pages[1]["distribution_kernels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(kernels.len(), 2);
    assert!(
        kernels.iter().any(|k| k.starts_with("copy"))
            && kernels.iter().any(|k| k.starts_with("sgemm")),
        "{kernels:?}"
    );
    assert!(
        pages[1]["text"].as_str().unwrap().contains("Baseline"),
        "{}",
        pages[1]
    );
}

#[test]
fn report_refuses_a_file_that_is_not_a_report_naming_it_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"command": "run", "rows": 3}"#).unwrap();
    let out_file = dir.path().join("out.html");
    let out = gpugate()
        .arg("report")
        .arg(&bad)
        .arg("--html")
        .arg(&out_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("bad.json") && said.contains("rows"), "{said}");
    assert!(!out_file.exists());
    let missing = gpugate()
        .arg("report")
        .arg(dir.path().join("nope.json"))
        .arg("--html")
        .arg(&out_file)
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.json"));
}

async fn get_page(state: &Arc<State>) -> (StatusCode, String, String) {
    let response = app(state.clone())
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn serve_page_before_any_run_and_over_kept_runs() {
    let (tx, _rx) = std::sync::mpsc::channel();
    let state = Arc::new(State::new(
        History::open(None, Retention::runs(10)).unwrap(),
        Metrics::new("node-a", std::time::Duration::from_secs(3600)),
        None,
        tx,
    ));
    let (status, content_type, body) = get_page(&state).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "text/html; charset=utf-8");
    assert!(body.contains("No run has finished yet"), "{body}");
    assert!(!body.contains("<svg"));

    let report = |verdict: &str, ratio: f64| -> gpugate::report::Report {
        serde_json::from_value(serde_json::json!({
            "command": "check", "device_key": "test-gpu", "notes": [], "runs": [],
            "outcome": {"verdict": verdict, "exit_code": 0, "message": "m"},
            "rows": [{
                "key": "copy[n=4]", "kernel": "copy", "unit": "bandwidth", "median_s": 1e-3 * ratio,
                "rate": 1.0, "iqr_rel": 0.0, "timing": "gpu_timestamp", "stop": "noise_target",
                "verification": {"ok": true, "checked": 1, "max_error": 0.0, "tolerance": 0.0, "detail": ""},
                "verdict": verdict,
                "baseline_run_medians_s": [1e-3, 1.1e-3],
                "comparison": {"baseline_s": 1e-3, "current_s": 1e-3 * ratio, "ratio": ratio,
                    "ratio_low": ratio, "ratio_high": ratio, "threshold": 0.05, "noise_rel": 0.01,
                    "baseline_runs": 2, "current_runs": 3, "verdict": verdict, "reason": "r"},
            }],
        }))
        .unwrap()
    };
    let record = |id: u64, report: Option<gpugate::report::Report>| {
        let gpu = GpuRun {
            gpu: Default::default(),
            adapter: "Test GPU".into(),
            result: if report.is_some() {
                RunResult::Pass
            } else {
                RunResult::Error
            },
            error: report.is_none().then(|| "no adapter".to_string()),
            report,
        };
        RunRecord::new(id, Trigger::Interval, Utc::now(), vec![gpu], None)
    };
    state
        .history()
        .push(record(1, Some(report("pass", 1.0))))
        .unwrap();
    let (_, _, one) = get_page(&state).await;
    assert!(one.contains("Latest run: #1"), "{one}");
    assert_eq!(one.matches("<svg class=\"history\"").count(), 0);
    state
        .history()
        .push(record(2, Some(report("regression", 2.0))))
        .unwrap();
    state.history().push(record(3, None)).unwrap();
    let (status, _, page) = get_page(&state).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Run #3 did not measure: no adapter"),
        "{page}"
    );
    assert!(page.contains("1 kept run(s) did not measure"), "{page}");
    assert_eq!(page.matches("<svg class=\"history\"").count(), 1);
    assert_eq!(page.matches("<svg class=\"distribution\"").count(), 1);
    assert!(page.contains("×2.00, regression"), "{page}");
    // Rendered once per finished run: the same bytes until the next one.
    assert_eq!(get_page(&state).await.2, page);
}

/// The real binary: the page at `/` after two finished runs (the one at start and one asked
/// for), in Chromium.
#[test]
fn serve_page_renders_in_chromium() {
    const TOKEN: &str = "html-test-token";
    let baseline = recorded_baseline();
    let _lock = shared_lock();
    let history = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(
        crate::gpugate_command()
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--kernel",
                "copy",
            ])
            .args([
                "--max-time",
                "0.2",
                "--threshold",
                MECHANICS_THRESHOLD,
                "--baselines",
            ])
            .arg(baseline)
            .arg("--history")
            .arg(history.path())
            .env("GPUGATE_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let runs_done = |n: usize| {
        for _ in 0..1200 {
            if let Some(body) = http(port, "GET /api/v1/runs", None) {
                let doc: Value = serde_json::from_str(&body).unwrap_or_default();
                if doc["running_id"].is_null()
                    && doc["runs"].as_array().is_some_and(|r| r.len() >= n)
                {
                    return;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("serve never finished {n} run(s)");
    };
    runs_done(1);
    assert!(http(port, "POST /api/v1/runs", Some(TOKEN)).is_some());
    runs_done(2);
    let pages = browse(&[format!("http://127.0.0.1:{port}/")]);
    assert_page(&pages[0], 1, 1);
    assert!(
        pages[0]["text"]
            .as_str()
            .unwrap()
            .contains("Latest run: #2"),
        "{}",
        pages[0]
    );
}

/// `request` (method and path) over a socket, with a bearer token if given; the body on 2xx.
fn http(port: u16, request: &str, token: Option<&str>) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{request} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.starts_with("HTTP/1.1 2")
        .then(|| text.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}
