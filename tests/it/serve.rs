//! `gpugate serve`: the API through `app(state).oneshot(…)` (no GPU needed: the test plays the
//! worker), the history store, and the real binary over a socket (SIGTERM, kill -9, restart).

use std::sync::{mpsc, Arc};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Utc;
use gpugate::serve::api::{app, BODY_LIMIT};
use gpugate::serve::history::{History, RunRecord, RunResult, Trigger};
use gpugate::serve::metrics::Metrics;
use gpugate::serve::{Readiness, State};
use http_body_util::BodyExt;
use tower::ServiceExt;

const TOKEN: &str = "test-token";

fn state(token: Option<&str>) -> (Arc<State>, mpsc::Receiver<(u64, Trigger)>) {
    let (tx, rx) = mpsc::channel();
    let history = History::open(None, 10).unwrap();
    let state = State::new(history, Metrics::new("node-a"), token.map(String::from), tx);
    (Arc::new(state), rx)
}

fn record(id: u64, result: RunResult) -> RunRecord {
    RunRecord {
        id,
        trigger: Trigger::Api,
        started_at: Utc::now(),
        finished_at: Utc::now(),
        result,
        report: None,
        error: (result == RunResult::Error).then(|| "no adapter".to_string()),
    }
}

async fn call(state: &Arc<State>, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let response = app(state.clone()).oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, json)
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn post(path: &str, token: Option<&str>) -> Request<Body> {
    let mut req = Request::post(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn probes_report_liveness_and_readiness() {
    let (state, _rx) = state(Some(TOKEN));
    assert_eq!(call(&state, get("/livez")).await.0, StatusCode::OK);
    let (status, body) = call(&state, get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["ready"], false);
    state.set_readiness(Readiness::Failed("no baseline for this device".into()));
    let (status, body) = call(&state, get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["reason"].as_str().unwrap().contains("no baseline"));
    state.set_readiness(Readiness::Ready {
        device_key: "K".into(),
        baseline: "baselines/K.json".into(),
    });
    let (status, body) = call(&state, get("/readyz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["device_key"], "K");
}

#[tokio::test]
async fn triggering_needs_the_token_and_one_run_at_a_time() {
    let (state, rx) = state(Some(TOKEN));
    let (status, body) = call(&state, post("/api/v1/runs", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["error"].is_string());
    let (status, _) = call(&state, post("/api/v1/runs", Some("wrong-token"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body) = call(&state, post("/api/v1/runs", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["id"].as_u64().unwrap();
    assert_eq!(
        rx.try_recv().unwrap(),
        (id, Trigger::Api),
        "the worker got the run"
    );

    let (status, body) = call(&state, post("/api/v1/runs", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["running_id"], id);

    // The worker finishes; the next trigger gets the next id.
    state.finish(record(id, RunResult::Pass));
    let (status, body) = call(&state, post("/api/v1/runs", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["id"], id + 1);
}

#[tokio::test]
async fn without_a_token_triggering_is_disabled() {
    let (state, _rx) = state(None);
    let (status, body) = call(&state, post("/api/v1/runs", Some("anything"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn bad_requests_get_json_4xx() {
    let (state, _rx) = state(Some(TOKEN));
    let (status, body) = call(&state, get("/api/v1/runs/abc")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("abc"));
    let (status, body) = call(&state, get("/api/v1/runs/7")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains('7'));
    assert_eq!(
        call(&state, get("/api/v1/runs/latest")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&state, get("/no/such/path")).await.0,
        StatusCode::NOT_FOUND
    );
    let big = Request::post("/api/v1/runs")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-length", (BODY_LIMIT + 1).to_string())
        .body(Body::from(vec![b'x'; BODY_LIMIT + 1]))
        .unwrap();
    assert_eq!(call(&state, big).await.0, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn verdict_endpoints_follow_the_latest_finished_run() {
    let (state, _rx) = state(Some(TOKEN));
    let (status, body) = call(&state, get("/api/v1/verdict")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "Argo's provider needs 2xx even before a run"
    );
    assert_eq!(body["verdict"], "pending");
    assert_eq!(body["ok"], false);
    assert_eq!(
        call(&state, get("/api/v1/verdict/status")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let id = state.start_run(Trigger::Api).unwrap();
    state.finish(record(id, RunResult::Pass));
    let (status, body) = call(&state, get("/api/v1/verdict")).await;
    assert_eq!(status, StatusCode::OK);
    for field in [
        "ok",
        "verdict",
        "worst_ratio",
        "regressions",
        "run_id",
        "finished_at",
    ] {
        assert!(body.get(field).is_some(), "{field} missing: {body}");
    }
    assert_eq!(
        (body["ok"].clone(), body["run_id"].clone()),
        (true.into(), id.into())
    );
    assert_eq!(
        call(&state, get("/api/v1/verdict/status")).await.0,
        StatusCode::OK
    );

    let id = state.start_run(Trigger::Interval).unwrap();
    state.finish(record(id, RunResult::Error));
    let (status, body) = call(&state, get("/api/v1/verdict")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["verdict"], "error");
    assert_eq!(body["message"], "no adapter");
    assert_eq!(
        call(&state, get("/api/v1/verdict/status")).await.0,
        StatusCode::PRECONDITION_FAILED
    );
    let (_, runs) = call(&state, get("/api/v1/runs")).await;
    let ids: Vec<u64> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [id, id - 1], "newest first");
}

#[tokio::test]
async fn metrics_use_the_text_format_and_bounded_labels() {
    let (state, _rx) = state(Some(TOKEN));
    let id = state.start_run(Trigger::Api).unwrap();
    state.finish(record(id, RunResult::Regression));
    let response = app(state.clone()).oneshot(get("/metrics")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4"
    );
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    for line in [
        "gpugate_build_info{version=",
        "gpugate_runs_total{result=\"regression\",hostname=\"node-a\"} 1",
        "gpugate_runs_total{result=\"pass\",hostname=\"node-a\"} 0",
        "gpugate_run_in_progress{hostname=\"node-a\"} 0",
        "gpugate_last_run_timestamp_seconds{hostname=\"node-a\"}",
        "# TYPE gpugate_run_duration_seconds histogram",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line) || l == line),
            "{line} missing:\n{text}"
        );
    }
    // Label names stay within the bounded set: never a run id or sha.
    let allowed = [
        "hostname",
        "kernel",
        "verdict",
        "result",
        "version",
        "adapter",
        "driver",
        "backend",
        "device_key",
        "le",
    ];
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(labels) = line
            .split_once('{')
            .map(|(_, rest)| rest.split('}').next().unwrap())
        else {
            continue;
        };
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let name = pair.split('=').next().unwrap();
            assert!(allowed.contains(&name), "label {name} in {line}");
        }
    }
}

#[test]
fn history_survives_restart_skips_corrupt_files_and_keeps_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut history = History::open(Some(dir.path()), 3).unwrap();
    for id in 1..=4 {
        history.push(record(id, RunResult::Pass)).unwrap();
    }
    let ids = |h: &History| h.iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(&history), [4, 3, 2], "retention 3 drops the oldest");
    assert!(!dir.path().join("run-000000000001.json").exists());
    // A torn write and garbage must not stop the service.
    std::fs::write(
        dir.path().join("run-000000000009.json"),
        b"{\"id\": 9, \"trig",
    )
    .unwrap();
    std::fs::write(dir.path().join(".run-000000000010.json.tmp"), b"partial").unwrap();
    let reopened = History::open(Some(dir.path()), 3).unwrap();
    assert_eq!(ids(&reopened), [4, 3, 2]);
    assert_eq!(reopened.next_id(), 5);
}

// ---- the real binary over a socket ---------------------------------------------------------------

/// A GET over a real socket to 127.0.0.1:`port`: status and body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        status,
        text.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    ))
}

/// POST /api/v1/runs with the token over a raw socket; true on 202.
fn post_over_socket(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let request = format!(
        "POST /api/v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    s.write_all(request.as_bytes()).is_ok()
        && s.read_to_string(&mut text).is_ok()
        && text.starts_with("HTTP/1.1 202")
}

/// Poll until `done` holds for a GET of `path`, up to two minutes; the body then.
fn wait_for(port: u16, path: &str, done: impl Fn(u16, &str) -> bool) -> String {
    for _ in 0..1200 {
        if let Some((status, body)) = http_get(port, path) {
            if done(status, &body) {
                return body;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("127.0.0.1:{port}{path} never reached the expected state");
}

struct Server {
    child: std::process::Child,
    port: u16,
}

impl Server {
    /// Call `crate::recorded_baseline()` for `baseline` before taking the timing lock.
    fn start(history: &std::path::Path, baseline: &std::path::Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = crate::gpugate_command()
            .env("GPUGATE_TOKEN", TOKEN)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--kernel",
                "copy",
            ])
            .args(["--threshold", crate::MECHANICS_THRESHOLD, "--baselines"])
            .arg(baseline)
            .arg("--history")
            .arg(history)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Server { child, port }
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.port, path)
    }

    fn wait_for(&self, path: &str, done: impl Fn(u16, &str) -> bool) -> String {
        wait_for(self.port, path, done)
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_validates_on_start_shuts_down_on_sigterm_and_keeps_history_across_kill_9() {
    let baseline = crate::recorded_baseline();
    let _lock = crate::timing_lock();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), baseline);
    server.wait_for("/livez", |s, _| s == 200);
    let body = server.wait_for("/api/v1/verdict", |_, b| b.contains("\"run_id\":1"));
    assert!(body.contains("\"verdict\":\"pass\""), "{body}");
    assert_eq!(server.get("/readyz").unwrap().0, 200);
    let (status, metrics) = server.get("/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("gpugate_kernel_median_seconds{"),
        "{metrics}"
    );

    // kill -9 in the middle of a second run: the finished first run is on disk, the
    // unfinished second leaves nothing behind.
    let posted = post_over_socket(server.port);
    assert!(posted, "POST /api/v1/runs");
    server.wait_for("/metrics", |_, m| {
        m.contains("gpugate_run_in_progress{hostname=\"") && m.contains("} 1\n")
    });
    server.signal("-KILL");
    server.child.wait().unwrap();
    let mut server = Server::start(dir.path(), baseline);
    server.wait_for("/livez", |s, _| s == 200);
    let (status, body) = server.get("/api/v1/runs/1").unwrap();
    assert_eq!(status, 200, "run 1 survived kill -9: {body}");
    // The restarted service validates again with the next id.
    server.wait_for("/api/v1/runs/2", |s, _| s == 200);

    server.signal("-TERM");
    let code = server.child.wait().unwrap().code();
    assert_eq!(code, Some(0), "graceful shutdown on SIGTERM");
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().all(|f| !f.ends_with(".tmp")), "{files:?}");
    assert_eq!(files.len(), 2, "{files:?}");
}

// ---- Prometheus itself -----------------------------------------------------------------------------

/// A tool the test suite needs; `scripts/test` installs it. Missing means fail, never skip.
fn tool(name: &str) -> std::path::PathBuf {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .unwrap();
    assert!(
        found.status.success(),
        "{name} is not installed: run scripts/test (it installs Debian's prometheus package)"
    );
    String::from_utf8(found.stdout).unwrap().trim().into()
}

#[test]
fn metrics_pass_promtool_and_a_real_prometheus_scrapes_them() {
    let baseline = crate::recorded_baseline();
    let _lock = crate::timing_lock();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), baseline);
    server.wait_for("/api/v1/verdict", |_, b| b.contains("\"run_id\":1"));
    let (_, metrics) = server.get("/metrics").unwrap();

    // promtool's linter: names, types, units, help text.
    let (status, output) = std::process::Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(metrics.as_bytes());
    assert!(status.success(), "promtool check metrics:\n{output}");

    // A real Prometheus on loopback scrapes the sidecar every second.
    let prom_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: gpugate\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            server.port
        ),
    )
    .unwrap();
    let mut prometheus = std::process::Command::new(tool("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let body = wait_for(
        prom_port,
        "/api/v1/query?query=gpugate_runs_total%7Bresult%3D%22pass%22%7D",
        |status, body| status == 200 && body.contains("\"hostname\""),
    );
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let series = &doc["data"]["result"][0];
    assert_eq!(series["metric"]["__name__"], "gpugate_runs_total", "{doc}");
    assert_eq!(series["metric"]["job"], "gpugate");
    assert_eq!(series["metric"]["result"], "pass");
    assert!(series["metric"]["hostname"]
        .as_str()
        .is_some_and(|h| !h.is_empty()));
    assert!(
        series["value"][1].as_str().unwrap().parse::<f64>().unwrap() >= 1.0,
        "{doc}"
    );
}

trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> (std::process::ExitStatus, String);
}

impl OutputWithStdin for std::process::Command {
    /// Run with `input` on stdin; exit status and stdout + stderr.
    fn output_with_stdin(&mut self, input: &[u8]) -> (std::process::ExitStatus, String) {
        use std::io::Write;
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status, text)
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let _lock = crate::shared_lock();
    let out = crate::gpugate()
        .args([
            "--log-format",
            "json",
            "check",
            "--baselines",
            "/nonexistent",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logs: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!logs.is_empty(), "{stderr}");
    assert!(
        logs.iter()
            .all(|l| l["level"].is_string() && l["fields"].is_object()),
        "{stderr}"
    );
}
