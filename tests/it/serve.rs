//! `gpugate serve`: the API through `app(state).oneshot(…)` (no GPU needed: the test plays the
//! worker), the history store, and the real binary over a socket (SIGTERM, kill -9, restart).

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Utc;
use gpugate::compare::Verdict;
use gpugate::device::Fingerprint;
use gpugate::report::Report;
use gpugate::serve::api::{app, BODY_LIMIT};
use gpugate::serve::history::{GpuRun, History, Retention, RunRecord, RunResult, Trigger};
use gpugate::serve::metrics::Metrics;
use gpugate::serve::{BaselineState, Node, Readiness, State};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

const TOKEN: &str = "test-token";

fn state(token: Option<&str>) -> (Arc<State>, mpsc::Receiver<(u64, Trigger)>) {
    state_over(History::open(None, Retention::runs(10)).unwrap(), token)
}

fn state_over(
    history: History,
    token: Option<&str>,
) -> (Arc<State>, mpsc::Receiver<(u64, Trigger)>) {
    let (tx, rx) = mpsc::channel();
    let state = State::new(
        history,
        Metrics::new("node-a", std::time::Duration::from_secs(3600)),
        token.map(String::from),
        tx,
    );
    (Arc::new(state), rx)
}

/// A finished run of one GPU ended in `result`, with `report` when it measured.
fn gpu_run(result: RunResult, report: Option<gpugate::report::Report>) -> GpuRun {
    GpuRun {
        gpu: Default::default(),
        adapter: "Test GPU".into(),
        result,
        error: match result {
            RunResult::Error => Some("no adapter".to_string()),
            RunResult::NoBaseline => Some("no baseline for device \"Test-GPU-vulkan\"".to_string()),
            _ => None,
        },
        report,
    }
}

fn record(id: u64, result: RunResult) -> RunRecord {
    RunRecord::new(
        id,
        Trigger::Api,
        Utc::now(),
        vec![gpu_run(result, None)],
        None,
    )
}

/// A device as the probe would see it; `driver` tells two apart.
fn fingerprint(driver: &str) -> Fingerprint {
    Fingerprint {
        name: "Test GPU".into(),
        vendor_id: 0x10de,
        device_id: 0x2330,
        device_type: "DiscreteGpu".into(),
        driver: driver.into(),
        driver_info: String::new(),
        backend: "vulkan".into(),
        cpu_model: None,
    }
}

const KEY: &str = "Test-GPU-vulkan";

/// What the worker sets once the probe acquired the adapter.
fn ready(driver: &str, baseline: BaselineState) -> Readiness {
    let fingerprint = fingerprint(driver);
    assert_eq!(fingerprint.device_key(), KEY);
    Readiness::Ready(vec![Node {
        gpu: Default::default(),
        device_key: KEY.into(),
        fingerprint,
        baseline,
    }])
}

fn missing() -> BaselineState {
    BaselineState::Missing(format!(
        "no baseline for device {KEY:?} in baselines (have: none); record one with `gpugate record`"
    ))
}

async fn call(state: &Arc<State>, req: Request<Body>) -> (StatusCode, Value) {
    let response = app(state.clone()).oneshot(req).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
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

/// `/metrics`: content type and body.
async fn scrape(state: &Arc<State>) -> (String, String) {
    let response = app(state.clone()).oneshot(get("/metrics")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (content_type, String::from_utf8(bytes.to_vec()).unwrap())
}

/// One sample line of the Prometheus text format: `name{label="value",…} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_sample(line: &str) -> Option<Sample> {
    let end = line.find(['{', ' '])?;
    let name = line[..end].to_string();
    let mut rest = &line[end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        while !rest.starts_with('}') {
            let (label, r) = rest.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = r.char_indices();
            let close = loop {
                match chars.next()? {
                    (_, '\\') => value.push(match chars.next()?.1 {
                        'n' => '\n',
                        c => c,
                    }),
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            labels.insert(label.to_string(), value);
            rest = &r[close + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
        rest = &rest[1..];
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Every sample of an exposition; panics on a line that is neither a sample nor a comment.
fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| parse_sample(l).unwrap_or_else(|| panic!("not a sample line: {l:?}")))
        .collect()
}

/// The samples of metric `name`.
fn series<'a>(samples: &'a [Sample], name: &str) -> Vec<&'a Sample> {
    samples.iter().filter(|s| s.name == name).collect()
}

/// The value of the one series of `name` whose labels include `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<_> = series(samples, name)
        .into_iter()
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?}: {found:?}");
    found.first().map(|s| s.value)
}

#[test]
fn the_sample_parser_reads_labels_with_commas_and_escapes() {
    let s = parse_sample(r#"m{a="x, \"y\"",b="z\\"} 1.5"#).unwrap();
    assert_eq!(s.name, "m");
    assert_eq!(s.labels["a"], "x, \"y\"");
    assert_eq!(s.labels["b"], "z\\");
    assert_eq!(s.value, 1.5);
    let s = parse_sample("gpugate_run_in_progress 0").unwrap();
    assert!(s.labels.is_empty() && s.value == 0.0);
}

#[tokio::test]
async fn probes_report_liveness_and_readiness() {
    let (state, _rx) = state(Some(TOKEN));
    assert_eq!(call(&state, get("/livez")).await.0, StatusCode::OK);
    let (status, body) = call(&state, get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["ready"], false);
    let m = samples(&scrape(&state).await.1);
    assert!(series(&m, "gpugate_device_info").is_empty(), "{m:?}");
    assert!(series(&m, "gpugate_baseline_present").is_empty(), "{m:?}");

    // No adapter: the only readiness failure besides starting.
    state.set_readiness(Readiness::Failed(
        "no usable GPU adapter found (none)".into(),
    ));
    let (status, body) = call(&state, get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["reason"].as_str().unwrap().contains("adapter"));

    // The adapter is acquired but this device has no baseline: ready, and the device is known.
    state.set_readiness(ready("1.0", missing()));
    let (status, body) = call(&state, get("/readyz")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a missing baseline is no readiness failure"
    );
    assert_eq!(body["ready"], true);
    assert_eq!(body["device_key"], KEY);
    assert_eq!(body["fingerprint"]["name"], "Test GPU");
    assert_eq!(body["fingerprint"]["driver"], "1.0");
    assert_eq!(body["fingerprint"]["backend"], "vulkan");
    assert_eq!(body["baseline"], Value::Null);
    assert_eq!(body["baseline_present"], false);
    assert!(body["baseline_error"]
        .as_str()
        .unwrap()
        .contains("gpugate record"));
    let m = samples(&scrape(&state).await.1);
    let device = series(&m, "gpugate_device_info");
    assert_eq!(device.len(), 1, "{device:?}");
    assert_eq!(device[0].labels["device_key"], KEY);
    assert_eq!(device[0].labels["adapter"], "Test GPU");
    assert_eq!(device[0].labels["backend"], "vulkan");
    assert_eq!(device[0].value, 1.0);
    assert_eq!(value(&m, "gpugate_baseline_present", &[]), Some(0.0));

    // A baseline file that cannot be loaded: still ready; the runs report it as errors.
    state.set_readiness(ready(
        "1.0",
        BaselineState::Unusable(format!(
            "baseline file baselines/{KEY}.json: kernels: is empty"
        )),
    ));
    let (status, body) = call(&state, get("/readyz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["baseline_present"], false);
    assert!(body["baseline_error"].as_str().unwrap().contains("kernels"));

    // The baseline loads; a changed driver replaces the device series instead of adding one.
    let path = format!("baselines/{KEY}.json");
    state.set_readiness(ready("2.0", BaselineState::Loaded(path.clone())));
    let (status, body) = call(&state, get("/readyz")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["baseline"], path.as_str());
    assert_eq!(body["baseline_present"], true);
    assert_eq!(body["baseline_error"], Value::Null);
    let m = samples(&scrape(&state).await.1);
    let device = series(&m, "gpugate_device_info");
    assert_eq!(device.len(), 1, "one device series: {device:?}");
    assert_eq!(device[0].labels["driver"], "2.0");
    assert_eq!(value(&m, "gpugate_baseline_present", &[]), Some(1.0));

    // The adapter is gone: neither series claims a device.
    state.set_readiness(Readiness::Failed(
        "no usable GPU adapter found (none)".into(),
    ));
    let m = samples(&scrape(&state).await.1);
    assert!(series(&m, "gpugate_device_info").is_empty(), "{m:?}");
    assert!(series(&m, "gpugate_baseline_present").is_empty(), "{m:?}");
}

#[tokio::test]
async fn triggering_needs_the_token_and_one_run_at_a_time() {
    let (state, rx) = state(Some(TOKEN));
    let (status, body) = call(&state, post("/api/v1/runs", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["error"].is_string());
    // Wrong tokens of every length, and other schemes, are refused alike.
    for wrong in [
        "Bearer wrong-token",
        "Bearer test-tokeX",
        "Bearer test-token-and-more",
        "Bearer ",
        "Basic dGVzdC10b2tlbg==",
        "test-token",
    ] {
        let req = Request::post("/api/v1/runs")
            .header("authorization", wrong)
            .body(Body::empty())
            .unwrap();
        let (status, body) = call(&state, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong}: {body}");
        assert_eq!(body["status"], 401, "{body}");
    }
    assert!(rx.try_recv().is_err(), "no run was queued");

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

    // The worker finishes; the next trigger gets the next id. The scheme is case-insensitive.
    for (previous, scheme) in (id..).zip(["bearer", "BEARER", "BeArEr"]) {
        state.finish(record(previous, RunResult::Pass));
        let req = Request::post("/api/v1/runs")
            .header("authorization", format!("{scheme} {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let (status, body) = call(&state, req).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{scheme}: {body}");
        assert_eq!(body["id"], previous + 1);
    }
}

#[tokio::test]
async fn without_a_token_triggering_is_disabled() {
    let (state, _rx) = state(None);
    let (status, body) = call(&state, post("/api/v1/runs", Some("anything"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no token"),
        "{body}"
    );
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
    let (status, body) = call(&state, get("/no/such/path")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["status"], 404, "{body}");
    let big = Request::post("/api/v1/runs")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-length", (BODY_LIMIT + 1).to_string())
        .body(Body::from(vec![b'x'; BODY_LIMIT + 1]))
        .unwrap();
    let (status, body) = call(&state, big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains(&BODY_LIMIT.to_string()),
        "413 is JSON too: {body}"
    );
    // 405 is JSON and keeps its Allow header.
    let response = app(state.clone())
        .oneshot(Request::delete("/api/v1/runs").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = response.headers()["allow"].to_str().unwrap().to_string();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    assert_eq!(response.headers()["content-type"], "application/json");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["status"], 405, "{body}");
    assert!(body["error"].as_str().unwrap().contains("method"), "{body}");
}

/// `/api/v1/verdict` (always 200) and `/api/v1/verdict/status` (the status is the verdict).
async fn verdicts(state: &Arc<State>) -> (Value, StatusCode) {
    let (status, body) = call(state, get("/api/v1/verdict")).await;
    assert_eq!(status, StatusCode::OK, "Argo's provider needs 2xx: {body}");
    let (flagger, same) = call(state, get("/api/v1/verdict/status")).await;
    // Flagger's webhooks POST (no token: the endpoint only reads).
    let (flagger_post, same_post) = call(state, post("/api/v1/verdict/status", None)).await;
    assert_eq!(flagger_post, flagger, "POST answers as GET does");
    // age_seconds is computed per answer and may tick between the calls.
    let without_age = |mut v: Value| {
        v.as_object_mut().unwrap().remove("age_seconds");
        v
    };
    assert_eq!(
        without_age(same),
        without_age(body.clone()),
        "/status answers the same body"
    );
    assert_eq!(
        without_age(same_post),
        without_age(body.clone()),
        "so does its POST"
    );
    (body, flagger)
}

#[tokio::test]
async fn verdict_endpoints_follow_the_latest_finished_run() {
    let (state, _rx) = state(Some(TOKEN));
    let (body, flagger) = verdicts(&state).await;
    assert_eq!(body["verdict"], "pending");
    assert_eq!(body["ok"], false);
    assert_eq!(body["device_key"], Value::Null, "nothing known yet");
    assert_eq!(flagger, StatusCode::SERVICE_UNAVAILABLE);

    let id = state.start_run(Trigger::Api).unwrap();
    state.set_readiness(ready("1.0", BaselineState::Loaded(format!("{KEY}.json"))));
    state.finish(record(id, RunResult::Pass));
    let (body, flagger) = verdicts(&state).await;
    for field in [
        "ok",
        "verdict",
        "worst_ratio",
        "regressions",
        "run_id",
        "finished_at",
        "age_seconds",
        "message",
        "device_key",
        "fingerprint",
    ] {
        assert!(body.get(field).is_some(), "{field} missing: {body}");
    }
    // Freshness, for an analysis that refuses a stale verdict: seconds since finished_at.
    assert!(
        body["age_seconds"].as_u64().is_some_and(|a| a < 60),
        "{body}"
    );
    assert_eq!(
        (body["ok"].clone(), body["run_id"].clone()),
        (true.into(), id.into())
    );
    assert_eq!(body["device_key"], KEY);
    assert_eq!(body["fingerprint"]["name"], "Test GPU");
    assert_eq!(flagger, StatusCode::OK);

    let id = state.start_run(Trigger::Interval).unwrap();
    state.finish(record(id, RunResult::Error));
    let (body, flagger) = verdicts(&state).await;
    assert_eq!(body["verdict"], "error");
    assert_eq!(body["message"], "no adapter");
    assert_eq!(flagger, StatusCode::PRECONDITION_FAILED);
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
async fn a_device_without_a_baseline_says_no_baseline_from_the_probe_on() {
    let (state, _rx) = state(Some(TOKEN));
    let m = samples(&scrape(&state).await.1);
    assert_eq!(
        value(&m, "gpugate_runs_total", &[("result", "no_baseline")]),
        Some(0.0),
        "the no_baseline series exists from the start"
    );

    // The probe found the device but no baseline: the verdict says so before any run.
    state.set_readiness(ready("1.0", missing()));
    let (body, flagger) = verdicts(&state).await;
    assert_eq!(body["verdict"], "no_baseline");
    assert_eq!(body["ok"], false);
    assert_eq!(body["run_id"], Value::Null);
    assert_eq!(body["device_key"], KEY);
    assert_eq!(body["fingerprint"]["driver"], "1.0");
    assert!(body["message"].as_str().unwrap().contains(KEY), "{body}");
    assert_eq!(
        flagger,
        StatusCode::PRECONDITION_FAILED,
        "Flagger: non-2xx fails"
    );
    let m = samples(&scrape(&state).await.1);
    assert_eq!(value(&m, "gpugate_baseline_present", &[]), Some(0.0));
    assert_eq!(
        value(&m, "gpugate_device_info", &[("device_key", KEY)]),
        Some(1.0)
    );

    // The first run ends the same way.
    let id = state.start_run(Trigger::Start).unwrap();
    state.finish(record(id, RunResult::NoBaseline));
    let (body, flagger) = verdicts(&state).await;
    assert_eq!(body["verdict"], "no_baseline");
    assert_eq!(body["ok"], false);
    assert_eq!(body["run_id"], id);
    assert_eq!(flagger, StatusCode::PRECONDITION_FAILED);
    let (_, run) = call(&state, get("/api/v1/runs/latest")).await;
    assert_eq!(run["result"], "no_baseline");
    let m = samples(&scrape(&state).await.1);
    assert_eq!(
        value(&m, "gpugate_runs_total", &[("result", "no_baseline")]),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "gpugate_runs_total", &[("result", "error")]),
        Some(0.0)
    );

    // An operator mounts the baseline; the next run passes and the metric follows.
    let id = state.start_run(Trigger::Api).unwrap();
    state.set_readiness(ready("1.0", BaselineState::Loaded(format!("{KEY}.json"))));
    state.finish(record(id, RunResult::Pass));
    let (body, flagger) = verdicts(&state).await;
    assert_eq!(
        (body["verdict"].as_str(), flagger),
        (Some("pass"), StatusCode::OK)
    );
    let m = samples(&scrape(&state).await.1);
    assert_eq!(value(&m, "gpugate_baseline_present", &[]), Some(1.0));

    // A pass kept from an earlier process is listed, never a verdict: it may name a replaced
    // GPU, driver or baseline. Nor does it hide that this device has no baseline now.
    let mut kept = History::open(None, Retention::runs(10)).unwrap();
    kept.push(record(7, RunResult::Pass)).unwrap();
    let (restarted, _rx) = state_over(kept, Some(TOKEN));
    let (body, flagger) = verdicts(&restarted).await;
    assert_eq!(
        (body["verdict"].as_str(), flagger),
        (Some("pending"), StatusCode::SERVICE_UNAVAILABLE),
        "{body}"
    );
    restarted.set_readiness(ready("1.0", BaselineState::Loaded(format!("{KEY}.json"))));
    assert_eq!(verdicts(&restarted).await.0["verdict"], "pending");
    restarted.set_readiness(Readiness::Failed("no adapter".into()));
    let (body, flagger) = verdicts(&restarted).await;
    assert_eq!(
        (body["verdict"].as_str(), flagger),
        (Some("error"), StatusCode::PRECONDITION_FAILED)
    );
    restarted.set_readiness(ready("1.0", missing()));
    let (body, flagger) = verdicts(&restarted).await;
    assert_eq!(body["verdict"], "no_baseline");
    assert_eq!(body["run_id"], Value::Null);
    assert_eq!(flagger, StatusCode::PRECONDITION_FAILED);
}

/// A real check report of `copy` against the recorded baseline: rows with comparisons. Made
/// once for the tests that need one.
fn real_check_report() -> Report {
    static REPORT: std::sync::OnceLock<Report> = std::sync::OnceLock::new();
    REPORT.get_or_init(make_check_report).clone()
}

fn make_check_report() -> Report {
    let baseline = crate::recorded_baseline();
    let _lock = crate::shared_lock();
    let out = crate::gpugate()
        .args(["--format", "json", "check", "--kernel", "copy"])
        .args(["--threshold", crate::MECHANICS_THRESHOLD, "--baselines"])
        .arg(baseline)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check --format json: {e}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test]
async fn metrics_use_the_text_format_and_bounded_labels() {
    let report = real_check_report();
    assert!(!report.rows.is_empty(), "{report:?}");
    assert!(report.rows.iter().all(|r| r.comparison.is_some()));
    let kernels: Vec<String> = report.rows.iter().map(|r| r.key.clone()).collect();

    let (state, _rx) = state(Some(TOKEN));
    let id = state.start_run(Trigger::Api).unwrap();
    // As the worker does with a report.
    state.set_readiness(Readiness::Ready(vec![Node {
        gpu: Default::default(),
        device_key: report.device_key.clone().unwrap(),
        fingerprint: report.fingerprint.clone().unwrap(),
        baseline: BaselineState::Loaded(report.baseline_file.clone().unwrap()),
    }]));
    let result = RunResult::of(&report);
    state.finish(RunRecord::new(
        id,
        Trigger::Api,
        Utc::now(),
        vec![gpu_run(result, Some(report.clone()))],
        None,
    ));
    let (content_type, text) = scrape(&state).await;
    assert_eq!(content_type, "text/plain; version=0.0.4");
    for line in [
        "gpugate_build_info{version=",
        "gpugate_run_in_progress{Hostname=\"node-a\"} 0",
        "gpugate_last_run_timestamp_seconds{Hostname=\"node-a\"}",
        "gpugate_interval_seconds{Hostname=\"node-a\"} 3600",
        "# TYPE gpugate_run_duration_seconds histogram",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line) || l == line),
            "{line} missing:\n{text}"
        );
    }
    let m = samples(&text);
    assert_eq!(
        value(&m, "gpugate_runs_total", &[("result", result.as_str())]),
        Some(1.0)
    );
    assert_eq!(
        value(
            &m,
            "gpugate_device_info",
            &[("device_key", report.device_key.as_deref().unwrap())]
        ),
        Some(1.0)
    );
    // The kernel series, one per row of the report.
    for row in &report.rows {
        let kernel = [("kernel", row.key.as_str())];
        assert_eq!(
            value(&m, "gpugate_kernel_median_seconds", &kernel),
            Some(row.median_s),
            "{text}"
        );
        assert_eq!(
            value(&m, "gpugate_kernel_baseline_ratio", &kernel),
            Some(row.comparison.as_ref().unwrap().ratio)
        );
        assert!(value(&m, "gpugate_kernel_throughput_bytes_per_second", &kernel).is_some());
        assert_eq!(
            value(
                &m,
                "gpugate_kernel_verdict",
                &[
                    ("kernel", row.key.as_str()),
                    ("verdict", row.verdict.as_str())
                ]
            ),
            Some(1.0)
        );
        let verdicts = series(&m, "gpugate_kernel_verdict");
        assert_eq!(
            verdicts
                .iter()
                .filter(|s| s.labels["kernel"] == row.key)
                .map(|s| s.value)
                .sum::<f64>(),
            1.0,
            "one verdict per kernel"
        );
        assert!(value(&m, "gpugate_sample_duration_seconds_count", &kernel).unwrap() > 0.0);
    }

    // Label names and values stay within the bounded set: never a run id or sha.
    let verdict_names = [
        Verdict::Pass,
        Verdict::Improvement,
        Verdict::Inconclusive,
        Verdict::Regression,
        Verdict::WrongResult,
    ]
    .map(Verdict::as_str);
    let results = RunResult::ALL.map(RunResult::as_str);
    let device_labels = ["adapter", "driver", "backend", "device_key"];
    for s in &m {
        for (label, v) in &s.labels {
            match label.as_str() {
                "Hostname" => assert_eq!(v, "node-a"),
                // DCGM's identity labels: empty for a GPU without a PCI bus id, as here.
                "gpu" | "UUID" | "modelName" | "pci_bus_id" => assert_eq!(v, "", "{s:?}"),
                "kernel" => assert!(kernels.contains(v), "kernel {v} in {s:?}"),
                "verdict" => assert!(
                    verdict_names.contains(&v.as_str()) || results.contains(&v.as_str()),
                    "{s:?}"
                ),
                "reason" => assert!(
                    gpugate::compare::Reason::ALL
                        .iter()
                        .any(|r| r.as_str() == v.as_str()),
                    "{s:?}"
                ),
                "result" => assert!(results.contains(&v.as_str()), "{s:?}"),
                "version" => assert_eq!(s.name, "gpugate_build_info"),
                "le" => assert!(s.name.ends_with("_bucket"), "{s:?}"),
                l if device_labels.contains(&l) => assert_eq!(s.name, "gpugate_device_info"),
                other => panic!("label {other} in {s:?}"),
            }
        }
    }
    assert!(
        m.iter().any(|s| s.labels.contains_key("kernel")),
        "the bounded-label check saw kernel series"
    );
}

/// JSON cannot hold infinity: a ratio against a near-zero baseline is written as `null`. The
/// record must still load after a restart (as NaN), not be skipped as unreadable.
#[test]
fn a_record_with_non_finite_numbers_loads_after_a_restart() {
    let mut report = real_check_report();
    let row = &mut report.rows[0];
    row.median_s = f64::INFINITY;
    let comparison = row.comparison.as_mut().unwrap();
    comparison.ratio = f64::INFINITY;
    comparison.threshold = f64::NAN;
    let dir = tempfile::tempdir().unwrap();
    let mut history = History::open(Some(dir.path()), Retention::runs(10)).unwrap();
    let run = RunRecord::new(
        1,
        Trigger::Api,
        Utc::now(),
        vec![gpu_run(RunResult::Regression, Some(report.clone()))],
        None,
    );
    history.push(run).unwrap();
    drop(history);

    let reopened = History::open(Some(dir.path()), Retention::runs(10)).unwrap();
    let loaded = reopened
        .get(1)
        .expect("the record loads")
        .reports()
        .next()
        .cloned()
        .unwrap();
    let row = &loaded.rows[0];
    assert!(row.median_s.is_nan());
    let comparison = row.comparison.as_ref().unwrap();
    assert!(comparison.ratio.is_nan() && comparison.threshold.is_nan());
    assert_eq!(loaded.rows.len(), report.rows.len());
    assert_eq!(loaded.rows[0].key, report.rows[0].key);
    assert_eq!(loaded.runs, report.runs, "the raw samples are intact");
}

#[test]
fn history_survives_restart_skips_corrupt_files_and_keeps_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut history = History::open(Some(dir.path()), Retention::runs(3)).unwrap();
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
    let reopened = History::open(Some(dir.path()), Retention::runs(3)).unwrap();
    assert_eq!(ids(&reopened), [4, 3, 2]);
    assert_eq!(
        reopened.next_id(),
        10,
        "a torn file's id is never handed out again"
    );
    assert!(
        !dir.path().join(".run-000000000010.json.tmp").exists(),
        "stale temporary files are removed at start"
    );
}

#[test]
fn an_accepted_run_is_durable_and_ends_as_interrupted_if_the_process_dies() {
    let dir = tempfile::tempdir().unwrap();
    let mut history = History::open(Some(dir.path()), Retention::runs(10)).unwrap();
    history.push(record(1, RunResult::Pass)).unwrap();
    history.accept(2, Trigger::Api).unwrap();
    drop(history); // as kill -9 would leave it: run 2 accepted, never finished

    let reopened = History::open(Some(dir.path()), Retention::runs(10)).unwrap();
    assert_eq!(reopened.interrupted_at_open(), Some(2));
    let run = reopened.get(2).expect("run 2 is recorded");
    assert_eq!(run.result, RunResult::Interrupted);
    assert_eq!(run.trigger, Trigger::Api);
    assert!(
        run.error.as_deref().unwrap().contains("interrupted"),
        "{run:?}"
    );
    assert_eq!(reopened.next_id(), 3);
    drop(reopened);
    // The interrupted record is itself on disk: a second restart finds nothing new.
    let again = History::open(Some(dir.path()), Retention::runs(10)).unwrap();
    assert_eq!(again.interrupted_at_open(), None);
    assert_eq!(again.get(2).unwrap().result, RunResult::Interrupted);

    // Ids are never reused, even when every run file is deleted: the high-water mark stays.
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let path = e.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("run-")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    // (Run 2, the latest accepted, has no record of its end any more: interrupted again.)
    let emptied = History::open(Some(dir.path()), Retention::runs(10)).unwrap();
    assert_eq!(emptied.iter().map(|r| r.id).collect::<Vec<_>>(), [2]);
    assert_eq!(emptied.next_id(), 3);
}

#[tokio::test]
async fn a_run_is_kept_in_memory_whatever_the_disk_does() {
    let dir = tempfile::tempdir().unwrap();
    let history_dir = dir.path().join("history");
    let (state, rx) = state_over(
        History::open(Some(&history_dir), Retention::runs(10)).unwrap(),
        Some(TOKEN),
    );
    let id = state.start_run(Trigger::Start).unwrap();
    assert_eq!(rx.try_recv().unwrap(), (id, Trigger::Start));
    // The disk goes away mid-run.
    std::fs::remove_dir_all(&history_dir).unwrap();
    state.set_readiness(ready("1.0", BaselineState::Loaded(format!("{KEY}.json"))));
    state.finish(record(id, RunResult::Pass));
    let (body, _) = verdicts(&state).await;
    assert_eq!(
        body["verdict"], "pass",
        "the unsaved run is still the verdict: {body}"
    );
    assert_eq!(
        call(&state, get(&format!("/api/v1/runs/{id}"))).await.0,
        StatusCode::OK
    );
    let m = samples(&scrape(&state).await.1);
    assert_eq!(
        value(&m, "gpugate_history_save_failures_total", &[]),
        Some(1.0)
    );
    assert_eq!(value(&m, "gpugate_run_in_progress", &[]), Some(0.0));

    // A scheduled run still starts (its acceptance counted as a failed save) ...
    let id = state.start_run(Trigger::Interval).unwrap();
    state.finish(record(id, RunResult::Pass));
    // ... but an API run is refused: a 202 would promise what the disk does not hold.
    let (status, body) = call(&state, post("/api/v1/runs", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("history"),
        "{body}"
    );
    let m = samples(&scrape(&state).await.1);
    assert_eq!(
        value(&m, "gpugate_history_save_failures_total", &[]),
        Some(4.0)
    );
    assert_eq!(value(&m, "gpugate_run_in_progress", &[]), Some(0.0));
    // Once the disk is back, API runs are accepted again, with ids never handed out before.
    std::fs::create_dir_all(&history_dir).unwrap();
    let (status, body) = call(&state, post("/api/v1/runs", Some(TOKEN))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(body["id"].as_u64().unwrap() > id + 1, "{body}");
}

// ---- the real binary over a socket ---------------------------------------------------------------

/// A GET over a real socket to 127.0.0.1:`port`: status and body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_request(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
}

/// `request` over a real socket to 127.0.0.1:`port`: status and body.
fn http_request(port: u16, request: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        status,
        text.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    ))
}

/// POST /api/v1/runs with the token over a raw socket; the run's id on 202.
fn post_over_socket(port: u16) -> Option<u64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let request = format!(
        "POST /api/v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    if !text.starts_with("HTTP/1.1 202") {
        return None;
    }
    let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1)?).ok()?;
    body["id"].as_u64()
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
        Server::start_with(history, baseline, |cmd| {
            cmd.env("GPUGATE_TOKEN", TOKEN);
        })
    }

    /// As [`Server::start`], `configure` adding to the command (environment, flags).
    fn start_with(
        history: &std::path::Path,
        baseline: &std::path::Path,
        configure: impl FnOnce(&mut std::process::Command),
    ) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = crate::gpugate_command();
        cmd.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--kernel",
            "copy",
        ])
        .args(["--threshold", crate::MECHANICS_THRESHOLD, "--baselines"])
        .arg(baseline)
        .arg("--history")
        .arg(history);
        configure(&mut cmd);
        let child = cmd
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

    /// Wait until run `id` has finished and no run is in progress (so a POST is accepted, not
    /// refused with 409 in the moment between the history and the slot); run `id` then.
    fn wait_finished(&self, id: u64) -> Value {
        self.wait_for("/api/v1/runs", |s, body| {
            let runs: Value = serde_json::from_str(body).unwrap_or_default();
            s == 200
                && runs["running_id"].is_null()
                && runs["runs"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["id"] == id))
        });
        let (status, body) = self.get(&format!("/api/v1/runs/{id}")).unwrap();
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
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
    let run = server.wait_finished(1);
    assert_eq!(run["result"], "pass", "{run}");
    let (_, body) = server.get("/api/v1/verdict").unwrap();
    assert!(body.contains("\"verdict\":\"pass\""), "{body}");
    assert_eq!(server.get("/readyz").unwrap().0, 200);
    let (status, metrics) = server.get("/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("gpugate_kernel_median_seconds{"),
        "{metrics}"
    );

    // kill -9 in the middle of a second run: the finished first run is on disk, and so is the
    // acceptance of the second (it got a 202).
    let id = post_over_socket(server.port).expect("POST /api/v1/runs");
    assert_eq!(id, 2);
    server.wait_for("/metrics", |_, m| {
        value(&samples(m), "gpugate_run_in_progress", &[]) == Some(1.0)
    });
    server.signal("-KILL");
    server.child.wait().unwrap();
    assert_eq!(
        run_files(dir.path()),
        ["accepted.json", "run-000000000001.json"],
        "run 1 survived kill -9; run 2, killed while in progress, is marked accepted"
    );
    let mut server = Server::start(dir.path(), baseline);
    server.wait_for("/livez", |s, _| s == 200);
    let (status, body) = server.get("/api/v1/runs/1").unwrap();
    assert_eq!(status, 200, "run 1 survived kill -9: {body}");
    // Run 2 was acknowledged, so it is not lost: it ended as interrupted.
    let (status, body) = server.get("/api/v1/runs/2").unwrap();
    assert_eq!(status, 200, "{body}");
    let run: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(run["result"], "interrupted", "{run}");
    assert_eq!(run["trigger"], "api", "{run}");
    let m = samples(&server.get("/metrics").unwrap().1);
    assert_eq!(
        value(&m, "gpugate_runs_total", &[("result", "interrupted")]),
        Some(1.0)
    );
    // The restarted service validates again with a new id: 2 is never reused.
    server.wait_finished(3);
    // The verdict is this process's own run, never the interrupted one.
    let (_, body) = server.get("/api/v1/verdict").unwrap();
    assert!(body.contains("\"run_id\":3"), "{body}");

    server.signal("-TERM");
    let code = server.child.wait().unwrap().code();
    assert_eq!(code, Some(0), "graceful shutdown on SIGTERM");
    assert_eq!(
        run_files(dir.path()),
        [
            "accepted.json",
            "run-000000000001.json",
            "run-000000000002.json",
            "run-000000000003.json"
        ]
    );
}

#[test]
fn a_panicking_run_is_recorded_as_an_error_and_the_sidecar_goes_on() {
    let baseline = crate::recorded_baseline();
    let _lock = crate::timing_lock();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(dir.path(), baseline, |cmd| {
        cmd.env("GPUGATE_TOKEN", TOKEN)
            .env(gpugate::serve::FAULT_ENV, "worker-panic");
    });
    let run = server.wait_finished(1);
    assert_eq!(run["result"], "error", "{run}");
    assert!(run["error"].as_str().unwrap().contains("panicked"), "{run}");
    assert_eq!(
        server.get("/livez").unwrap().0,
        200,
        "the scheduler is alive"
    );
    let (_, body) = server.get("/api/v1/verdict").unwrap();
    let verdict: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(verdict["verdict"], "error", "{verdict}");
    let m = samples(&server.get("/metrics").unwrap().1);
    assert_eq!(
        value(&m, "gpugate_runs_total", &[("result", "error")]),
        Some(1.0)
    );
    assert_eq!(value(&m, "gpugate_run_in_progress", &[]), Some(0.0));

    // The slot was freed: the next request is accepted and measures normally.
    assert_eq!(post_over_socket(server.port), Some(2));
    let run = server.wait_finished(2);
    assert_eq!(run["result"], "pass", "{run}");
    assert_eq!(server.get("/livez").unwrap().0, 200);

    server.signal("-TERM");
    assert_eq!(server.child.wait().unwrap().code(), Some(0));
}

#[test]
fn a_missing_token_file_is_no_token() {
    let _lock = crate::shared_lock();
    let (history, baselines) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut server = Server::start_with(history.path(), baselines.path(), |cmd| {
        cmd.arg("--token-file")
            .arg(history.path().join("absent/token"));
    });
    // It comes up (an optional Secret that does not exist must not CrashLoop) ...
    server.wait_for("/livez", |s, _| s == 200);
    // ... with triggering refused.
    let (status, body) = http_request(
        server.port,
        &format!("POST /api/v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    )
    .unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("no token"), "{body}");
    server.signal("-TERM");
    let st = server.child.wait().unwrap();
    assert_eq!(st.code(), Some(0), "{st:?}");
}

/// kill -9 at random (seeded) moments while runs are being requested, then restart on the same
/// history: every run that got a 202 is there (finished or interrupted), and ids only grow.
/// The baselines directory is empty, so each run is short (`no_baseline` after the adapter
/// opens) and the kills land before, during and between runs.
#[test]
fn kill_9_at_random_points_loses_no_acknowledged_run() {
    use rand::{Rng, SeedableRng};
    let _lock = crate::shared_lock();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let (history, baselines) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Runs take tens of milliseconds here: keep every one (retention would rightly drop some).
    let start = |history: &tempfile::TempDir, baselines: &tempfile::TempDir| {
        Server::start_with(history.path(), baselines.path(), |cmd| {
            cmd.env("GPUGATE_TOKEN", TOKEN)
                .args(["--retention", "100000"]);
        })
    };
    let mut acknowledged: Vec<u64> = vec![];
    let mut highest_seen = 0;
    for round in 0..4 {
        let mut server = start(&history, &baselines);
        server.wait_for("/livez", |s, _| s == 200);
        // Everything acknowledged so far is listed, finished or interrupted; nothing running
        // from before is left running.
        let (_, body) = server.get("/api/v1/runs").unwrap();
        let runs: Value = serde_json::from_str(&body).unwrap();
        let listed: Vec<u64> = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_u64().unwrap())
            .collect();
        for id in &acknowledged {
            assert!(
                listed.contains(id),
                "round {round}: run {id} got a 202 and is gone: {runs}"
            );
        }
        for r in runs["runs"].as_array().unwrap() {
            let result = r["result"].as_str().unwrap();
            assert!(
                ["no_baseline", "interrupted", "error"].contains(&result),
                "round {round}: {r}"
            );
        }
        assert!(
            listed.windows(2).all(|w| w[0] > w[1]),
            "newest first, each id once: {listed:?}"
        );
        if let Some(&newest) = listed.first() {
            assert!(
                newest >= highest_seen,
                "round {round}: ids went back: {listed:?}"
            );
        }
        highest_seen = listed.first().copied().unwrap_or(0);

        // Request runs until the kill, at a random moment within about three runs.
        let kill_at =
            std::time::Instant::now() + std::time::Duration::from_millis(rng.random_range(0..3000));
        while std::time::Instant::now() < kill_at {
            if let Some(id) = post_over_socket(server.port) {
                assert!(
                    acknowledged.last().is_none_or(|&last| id > last) && id > highest_seen,
                    "round {round}: id {id} after {acknowledged:?} (highest listed {highest_seen})"
                );
                acknowledged.push(id);
            }
            std::thread::sleep(std::time::Duration::from_millis(rng.random_range(0..50)));
        }
        server.signal("-KILL");
        server.child.wait().unwrap();
    }
    let server = start(&history, &baselines);
    server.wait_for("/livez", |s, _| s == 200);
    for id in &acknowledged {
        let (status, body) = server.get(&format!("/api/v1/runs/{id}")).unwrap();
        assert_eq!(status, 200, "run {id} got a 202 and is gone: {body}");
    }
    assert!(
        acknowledged.len() >= 2,
        "the loop acknowledged runs: {acknowledged:?}"
    );
    let (_, body) = server.get("/api/v1/runs").unwrap();
    let interrupted: Vec<u64> = serde_json::from_str::<Value>(&body).unwrap()["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["result"] == "interrupted")
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    eprintln!(
        "acknowledged across 4 kill -9 rounds: {acknowledged:?}; interrupted: {interrupted:?}"
    );
}

/// Every file in `dir`, sorted.
fn run_files(dir: &std::path::Path) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    files
}

#[test]
fn serve_without_a_baseline_is_ready_says_no_baseline_and_never_records_one() {
    let recorded = crate::recorded_baseline();
    let _lock = crate::timing_lock();
    let baselines = tempfile::tempdir().unwrap();
    let history = tempfile::tempdir().unwrap();
    let server = Server::start(history.path(), baselines.path());

    let ready: Value = serde_json::from_str(&server.wait_for("/readyz", |s, _| s == 200)).unwrap();
    let fingerprint: Fingerprint = serde_json::from_value(ready["fingerprint"].clone()).unwrap();
    let key = fingerprint.device_key();
    assert_eq!(ready["device_key"], key.as_str(), "{ready}");
    assert!(
        key.contains(&gpugate::device::sanitize(crate::TEST_CPU_MODEL)),
        "{key}"
    );
    assert_eq!(ready["baseline"], Value::Null, "{ready}");
    assert_eq!(ready["baseline_present"], false);
    // Before or after run 1 has finished: the verdict is no_baseline either way.
    let (status, body) = server.get("/api/v1/verdict").unwrap();
    assert_eq!(status, 200);
    let verdict: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(verdict["verdict"], "no_baseline", "{verdict}");
    assert_eq!(verdict["ok"], false);
    assert_eq!(verdict["device_key"], key.as_str());

    let run = server.wait_finished(1);
    assert_eq!(run["result"], "no_baseline", "{run}");
    assert!(
        run["gpus"][0]["error"]
            .as_str()
            .unwrap()
            .contains("gpugate record"),
        "{run}"
    );
    let (status, body) = server.get("/api/v1/verdict/status").unwrap();
    assert_eq!(status, 412, "{body}");
    let verdict: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (verdict["verdict"].as_str(), verdict["run_id"].as_u64()),
        (Some("no_baseline"), Some(1))
    );
    let m = samples(&server.get("/metrics").unwrap().1);
    let device = series(&m, "gpugate_device_info");
    assert_eq!(device.len(), 1, "{device:?}");
    assert_eq!(device[0].labels["device_key"], key);
    assert_eq!(device[0].value, 1.0);
    assert_eq!(value(&m, "gpugate_baseline_present", &[]), Some(0.0));
    assert_eq!(
        value(&m, "gpugate_runs_total", &[("result", "no_baseline")]),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "gpugate_runs_total", &[("result", "error")]),
        Some(0.0)
    );
    assert!(
        run_files(baselines.path()).is_empty(),
        "serve never records a baseline"
    );

    // An operator mounts this device's baseline: the next run compares with it, and readiness
    // and the metric follow without a restart.
    let mounted = baselines.path().join(format!("{key}.json"));
    std::fs::copy(recorded, &mounted).unwrap();
    assert_eq!(post_over_socket(server.port), Some(2));
    let run = server.wait_finished(2);
    assert_eq!(run["result"], "pass", "{run}");
    let m = samples(&server.get("/metrics").unwrap().1);
    assert_eq!(value(&m, "gpugate_baseline_present", &[]), Some(1.0));
    let (status, body) = server.get("/readyz").unwrap();
    assert_eq!(status, 200);
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["baseline"], mounted.display().to_string());
    assert_eq!(server.get("/api/v1/verdict/status").unwrap().0, 200);
    assert_eq!(run_files(baselines.path()), [format!("{key}.json")]);
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

    // promtool's linter: names, types, units, help text. It wants snake_case label names, and
    // DCGM's identity labels are camelCase on purpose (`Hostname`, `UUID`, `modelName`: what
    // PromQL joins with dcgm-exporter's series on). So: with those renamed nothing at all is
    // wrong, and as served that is the only complaint.
    let lint = |text: &str| {
        std::process::Command::new(tool("promtool"))
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .output_with_stdin(text.as_bytes())
    };
    let renamed = metrics
        .replace("Hostname=", "hostname=")
        .replace("UUID=", "uuid=")
        .replace("modelName=", "model_name=");
    let (status, output) = lint(&renamed);
    assert!(status.success(), "promtool check metrics:\n{output}");
    let (_, output) = lint(&metrics);
    assert!(
        output.lines().all(|l| l.trim().is_empty()
            || l.ends_with("label names should be written in 'snake_case' not 'camelCase'")),
        "promtool check metrics:\n{output}"
    );

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
        |status, body| status == 200 && body.contains("\"Hostname\""),
    );
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let series = &doc["data"]["result"][0];
    assert_eq!(series["metric"]["__name__"], "gpugate_runs_total", "{doc}");
    assert_eq!(series["metric"]["job"], "gpugate");
    assert_eq!(series["metric"]["result"], "pass");
    assert!(series["metric"]["Hostname"]
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

/// Change points: the worker searches the latest `--changes-window` kept runs after each run;
/// `GET /api/v1/changes` serves what it found (never searching per request) and the metrics name
/// the latest change of each GPU's kernels.
#[tokio::test]
async fn change_points_over_the_kept_runs_are_served_and_exported() {
    let fixture = gpugate::report::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/ci-check-report.json"),
    )
    .unwrap();
    let (state, _rx) = state_over(History::open(None, Retention::runs(100)).unwrap(), None);
    let (_, before) = call(&state, get("/api/v1/changes")).await;
    assert_eq!(before["series"], serde_json::json!([]), "{before}");
    assert_eq!(before["run_id"], Value::Null);

    // 40 hourly runs; every kernel 20 % slower from run 26 on, with ±0.5 % noise.
    let t0 = Utc::now() - chrono::Duration::hours(41);
    let at = |id: u64| t0 + chrono::Duration::hours(id as i64);
    for id in 1..=40u64 {
        let mut report = fixture.clone();
        report.finished_at = Some(at(id));
        let step = if id >= 26 { 1.2 } else { 1.0 };
        let noise = 1.0 + 0.005 * (((id * 7919) % 13) as f64 - 6.0) / 6.0;
        for row in &mut report.rows {
            row.median_s = 1e-3 * step * noise;
        }
        let run = RunRecord::new(
            id,
            Trigger::Interval,
            at(id),
            vec![gpu_run(RunResult::Pass, Some(report))],
            None,
        );
        state.history().push(run).unwrap();
    }
    state.update_changes(30);
    let (status, body) = call(&state, get("/api/v1/changes")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["run_id"].as_u64(), body["runs"].as_u64()),
        (Some(40), Some(30))
    );
    let series = body["series"].as_array().unwrap();
    assert_eq!(series.len(), fixture.rows.len(), "{body}");
    for s in series {
        assert_eq!(s["points"], 30, "{s}");
        let changes = s["changes"].as_array().unwrap();
        assert_eq!(changes.len(), 1, "one step, found once: {s}");
        assert_eq!(changes[0]["run_id"], 26, "{s}");
        let ratio = changes[0]["ratio"].as_f64().unwrap();
        assert!((ratio - 1.2).abs() < 0.01, "{s}");
    }
    let (_, text) = scrape(&state).await;
    let m = samples(&text);
    for row in &fixture.rows {
        let kernel = [("kernel", row.key.as_str())];
        let ratio = value(&m, "gpugate_kernel_change_point_ratio", &kernel).unwrap();
        assert!((ratio - 1.2).abs() < 0.01, "{text}");
        assert_eq!(
            value(&m, "gpugate_kernel_change_point_timestamp_seconds", &kernel),
            Some(at(26).timestamp_millis() as f64 / 1e3)
        );
    }
}
