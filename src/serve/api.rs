//! The HTTP layer: `app(state) -> Router`, served by [`serve_http`]. Handlers read the shared
//! state and enqueue runs; they never touch wgpu and never wait on the GPU. Every error the
//! router answers is one JSON shape, `{"error": …, "status": …}` ([`AppError`]) — the
//! framework's own 404/405/408/413 included ([`json_errors`]) — never an internal detail.
//! Connections are bounded in number and in how long their request head may take
//! ([`HttpLimits`]); a request hyper cannot parse is answered by hyper itself (400, 414, 431,
//! with an empty body) before the router sees it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State as AxumState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use super::history::{History, RunRecord, RunResult, Trigger};
use super::{BaselineState, Readiness, Refused, State, VerdictDoc, PENDING};

/// Requests carry no meaningful body; anything larger than this is refused with 413.
pub const BODY_LIMIT: usize = 16 * 1024;
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub fn app(state: Arc<State>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/runs", get(list_runs).post(trigger_run))
        .route("/api/v1/runs/latest", get(latest_run))
        .route("/api/v1/runs/{id}", get(run_by_id))
        .route("/api/v1/verdict", get(verdict))
        .route("/api/v1/changes", get(changes))
        // Flagger's webhooks POST; Argo's and a person's checks GET.
        .route(
            "/api/v1/verdict/status",
            get(verdict_status).post(verdict_status),
        )
        .fallback(|| async { AppError::NotFound("no such endpoint".into()) })
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::map_response(json_errors))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Every error the API returns: a status and a JSON `{"error", "status"}` that names what was
/// wrong.
#[derive(Debug)]
pub enum AppError {
    Unauthorized,
    /// Triggering is switched off: no token was configured.
    Forbidden,
    NotFound(String),
    BadRequest(String),
    /// A run is in progress (its id).
    Conflict(u64),
    /// The service cannot do this now: why.
    Unavailable(String),
    /// An error the framework answered (405, 408, 413, an extractor's 400, …) with what its
    /// body said, rewritten as JSON by [`json_errors`].
    Status(StatusCode, String),
}

impl From<Refused> for AppError {
    fn from(refused: Refused) -> AppError {
        match refused {
            Refused::Busy(id) => AppError::Conflict(id),
            Refused::Stopped => AppError::Unavailable(
                "the worker has stopped: no run can be measured until the process restarts".into(),
            ),
            Refused::NotRecorded(why) => AppError::Unavailable(format!(
                "the run was not started: its acceptance could not be saved to the history \
                 ({why})"
            )),
            Refused::IdsExhausted => AppError::Unavailable(
                "every run id was handed out and ids are never reused: move the history away"
                    .into(),
            ),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, error, running_id) = match self {
            AppError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token".to_string(),
                None,
            ),
            AppError::Forbidden => (
                StatusCode::FORBIDDEN,
                "triggering runs is disabled: no token is configured (GPUGATE_TOKEN or --token-file)"
                    .to_string(),
                None,
            ),
            AppError::NotFound(what) => (StatusCode::NOT_FOUND, what, None),
            AppError::BadRequest(what) => (StatusCode::BAD_REQUEST, what, None),
            AppError::Conflict(id) => (
                StatusCode::CONFLICT,
                "a run is already in progress".to_string(),
                Some(id),
            ),
            AppError::Unavailable(why) => (StatusCode::SERVICE_UNAVAILABLE, why, None),
            AppError::Status(status, said) => (status, framework_message(status, said), None),
        };
        let mut body = json!({"error": error, "status": status.as_u16()});
        if let Some(id) = running_id {
            body["running_id"] = id.into();
        }
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// What an error the framework answered means here.
fn framework_message(status: StatusCode, said: String) -> String {
    match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            "method not allowed on this endpoint (see the Allow header)".into()
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("request body too large: the limit is {BODY_LIMIT} bytes")
        }
        StatusCode::REQUEST_TIMEOUT => format!(
            "the request was not answered within {} s",
            REQUEST_TIMEOUT.as_secs()
        ),
        _ if !said.trim().is_empty() => said.trim().to_string(),
        other => other
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase(),
    }
}

/// Rewrite an error the router's layers or axum answered in their own shape (an empty 405 or
/// 408, a plain-text 413) as [`AppError`]'s JSON, keeping headers such as `Allow`.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    // What the framework said (an extractor's rejection, say), if it is short text.
    let said = axum::body::to_bytes(body, 1024)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .unwrap_or_default();
    let mut rendered = AppError::Status(status, said).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rendered.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rendered
}

/// 200 while the scheduler and the worker are there; 503 when either is gone, so the kubelet
/// restarts the container. A long run is not a failure.
async fn livez(AxumState(state): AxumState<Arc<State>>) -> Response {
    match state.liveness() {
        Ok(()) => Json(json!({"status": "ok"})).into_response(),
        Err(why) => AppError::Unavailable(why).into_response(),
    }
}

/// 200 once the GPUs were acquired, with each GPU and its baseline (the first GPU's also at the
/// top level); a missing or unusable baseline is not a readiness failure (the verdict says
/// `no_baseline` or the run `error`). 503 while starting or when no adapter could be acquired.
async fn readyz(AxumState(state): AxumState<Arc<State>>) -> Response {
    match state.readiness() {
        Readiness::Ready(nodes) => {
            let gpus: Vec<serde_json::Value> = nodes
                .iter()
                .map(|node| {
                    let (baseline, error) = match &node.baseline {
                        BaselineState::Loaded(path) => (Some(path), None),
                        BaselineState::Missing(why) | BaselineState::Unusable(why) => {
                            (None, Some(why))
                        }
                    };
                    json!({
                        "gpu": node.gpu,
                        "device_key": node.device_key,
                        "fingerprint": node.fingerprint,
                        "baseline": baseline,
                        "baseline_present": baseline.is_some(),
                        "baseline_error": error,
                    })
                })
                .collect();
            let mut body = gpus.first().cloned().unwrap_or_else(|| json!({}));
            body["ready"] = true.into();
            body["baseline_present"] = gpus.iter().all(|g| g["baseline_present"] == true).into();
            body["gpus"] = gpus.into();
            Json(body).into_response()
        }
        Readiness::Starting => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": "acquiring the adapter"})),
        )
            .into_response(),
        Readiness::Failed(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": reason})),
        )
            .into_response(),
    }
}

/// The change points the worker found after the latest run (never computed per request).
async fn changes(AxumState(state): AxumState<Arc<State>>) -> Json<super::Changes> {
    Json(state.changes())
}

async fn metrics(AxumState(state): AxumState<Arc<State>>) -> Response {
    let (content_type, body) = state.metrics.render();
    (
        [(header::CONTENT_TYPE, content_type)],
        body.as_ref().clone(),
    )
        .into_response()
}

/// The HTML report of the kept history ([`State::page`]): the latest run in full, history
/// charts over the kept runs; before any run, a page that says so.
async fn index(AxumState(state): AxumState<Arc<State>>) -> Result<Response, AppError> {
    let page = tokio::task::spawn_blocking(move || state.page())
        .await
        .map_err(|e| AppError::Unavailable(format!("the page could not be rendered: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, crate::report::html::CSP),
        ],
        page,
    )
        .into_response())
}

/// The page over `history`: its reports oldest first, with notices naming the latest run and
/// the runs that did not measure (those have no report to draw).
///
/// The charts follow one GPU — the latest run's worst, whose history matters most — since
/// several GPUs' reports in one series would read as one GPU changing; a notice gives every
/// GPU's result.
pub fn history_page(history: &History) -> String {
    let mut records: Vec<&RunRecord> = history.iter().collect();
    records.reverse();
    // Of the latest run that measured, the worst GPU with a report (the first on ties); its
    // reports matched by PCI bus id, which NVML's hiccups cannot change.
    let shown = records.iter().rev().find_map(|r| {
        r.gpus.iter().filter(|g| g.report.is_some()).reduce(|a, b| {
            let worse = RunResult::worst([a.result, b.result]) == Some(b.result);
            if worse && b.result != a.result {
                b
            } else {
                a
            }
        })
    });
    let reports: Vec<&crate::report::Report> = records
        .iter()
        .flat_map(|r| r.gpus.iter())
        .filter(|g| shown.is_some_and(|s| s.gpu.pci_bus_id == g.gpu.pci_bus_id))
        .filter_map(|g| g.report.as_ref())
        .collect();
    let mut notices = vec![];
    match records.last() {
        None => notices.push(
            "No run has finished yet: the report appears here once the first validation run \
             has finished."
                .to_string(),
        ),
        Some(latest) => {
            notices.push(format!(
                "Latest run: #{} ({:?} trigger), finished {}: {}. {} run(s) kept.",
                latest.id,
                latest.trigger,
                latest.finished_at.format("%Y-%m-%d %H:%M:%S UTC"),
                latest.result.as_str(),
                records.len()
            ));
            if latest.gpus.len() > 1 {
                notices.push(format!(
                    "GPUs: {}. The charts follow {}.",
                    latest
                        .gpus
                        .iter()
                        .map(|g| format!(
                            "{} {}",
                            super::gpu_label(&g.gpu, &g.adapter),
                            g.result.as_str()
                        ))
                        .collect::<Vec<_>>()
                        .join(", "),
                    shown.map_or(String::new(), |g| super::gpu_label(&g.gpu, &g.adapter))
                ));
            }
            if let Some(why) = latest.why().filter(|_| latest.reports().next().is_none()) {
                notices.push(format!(
                    "Run #{} did not measure: {why}. The report below is the latest that did.",
                    latest.id
                ));
            }
        }
    }
    let unmeasured = records
        .iter()
        .filter(|r| r.reports().next().is_none())
        .count();
    if unmeasured > 0 {
        notices.push(format!(
            "{unmeasured} kept run(s) did not measure (error, no baseline or interrupted): \
             they have no point in the history chart."
        ));
    }
    crate::report::html::render("gpugate serve", &notices, &reports)
}

/// A run without its report: what the list shows.
fn summary(r: &RunRecord) -> serde_json::Value {
    json!({
        "id": r.id,
        "trigger": r.trigger,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "result": r.result,
        "message": match r.reports().collect::<Vec<_>>().as_slice() {
            [one] if r.gpus.len() == 1 => Some(one.outcome.message.clone()),
            _ => r.why().map(str::to_string).or_else(|| {
                Some(format!("{} GPU(s): {}", r.gpus.len(), r.result.as_str()))
            }),
        },
    })
}

async fn list_runs(AxumState(state): AxumState<Arc<State>>) -> Json<serde_json::Value> {
    // The run slot before the history: `start_run` takes them in this order.
    let running_id = state.running_id();
    let runs: Vec<_> = state.history().iter().map(summary).collect();
    Json(json!({"running_id": running_id, "runs": runs}))
}

async fn latest_run(AxumState(state): AxumState<Arc<State>>) -> Result<Json<RunRecord>, AppError> {
    state
        .history()
        .latest()
        .cloned()
        .map(Json)
        .ok_or_else(|| AppError::NotFound("no run has finished yet".into()))
}

async fn run_by_id(
    AxumState(state): AxumState<Arc<State>>,
    Path(id): Path<String>,
) -> Result<Json<RunRecord>, AppError> {
    let id: u64 = id
        .parse()
        .map_err(|_| AppError::BadRequest(format!("run id {id:?} is not a number")))?;
    state
        .history()
        .get(id)
        .cloned()
        .map(Json)
        .ok_or_else(|| AppError::NotFound(format!("no run {id} in the kept history")))
}

/// For Argo Rollouts' web provider: always 200, the verdict in the body (non-2xx is an *error*
/// there, not a failed analysis).
async fn verdict(AxumState(state): AxumState<Arc<State>>) -> Json<VerdictDoc> {
    Json(state.verdict())
}

/// For Flagger webhooks: the status code is the verdict. 200 pass; 412 failed validation,
/// `no_baseline` included (before any run too); 503 `pending`.
async fn verdict_status(AxumState(state): AxumState<Arc<State>>) -> Response {
    let doc = state.verdict();
    let status = if doc.ok {
        StatusCode::OK
    } else if doc.verdict == PENDING {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::PRECONDITION_FAILED
    };
    (status, Json(doc)).into_response()
}

async fn trigger_run(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let Some(token) = &state.token else {
        return Err(AppError::Forbidden);
    };
    if !bearer(&headers).is_some_and(|p| token.matches(p)) {
        return Err(AppError::Unauthorized);
    }
    // The acceptance is written (and synced) before the 202: off the async threads.
    let starter = state.clone();
    let id = tokio::task::spawn_blocking(move || starter.start_run(Trigger::Api))
        .await
        .map_err(|e| AppError::Unavailable(format!("the run was not started: {e}")))??;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/api/v1/runs/{id}"))],
        Json(json!({"id": id, "status": "queued", "url": format!("/api/v1/runs/{id}")})),
    )
        .into_response())
}

/// The credentials of an `Authorization: Bearer <token>` header; the scheme is matched
/// case-insensitively (RFC 7235), the token as is.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
        .filter(|t| !t.is_empty())
}

/// Bounds on the connections [`serve_http`] holds.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// How long a connection may take to send a whole request head (and may sit idle between
    /// keep-alive requests): a slow or half-sent request is dropped after this.
    pub header_read_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// How long a graceful shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 128,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serve `app` on `listener` over HTTP/1.1 until `shutdown` resolves, then finish the requests
/// in flight (for at most `limits.shutdown_grace`). hyper's own builder, not `axum::serve`:
/// axum 0.8 gives hyper no timer, so its header-read timeout never fires.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.map_err(std::io::Error::other)?,
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection ended: {e}");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after {:?}; closing",
            limits.shutdown_grace
        );
    }
    Ok(())
}
