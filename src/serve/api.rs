//! The HTTP layer: `app(state) -> Router`. Handlers read the shared state and enqueue runs; they
//! never touch wgpu and never wait on the GPU. Every error is JSON with a 4xx status for bad
//! requests (see [`AppError`]), never an internal detail.

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

use super::history::{RunRecord, Trigger};
use super::{BaselineState, Readiness, State, VerdictDoc, PENDING};

/// Requests carry no meaningful body; anything larger than this is refused with 413.
pub const BODY_LIMIT: usize = 16 * 1024;
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub fn app(state: Arc<State>) -> Router {
    Router::new()
        .route("/livez", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/runs", get(list_runs).post(trigger_run))
        .route("/api/v1/runs/latest", get(latest_run))
        .route("/api/v1/runs/{id}", get(run_by_id))
        .route("/api/v1/verdict", get(verdict))
        .route("/api/v1/verdict/status", get(verdict_status))
        .fallback(|| async { AppError::NotFound("no such endpoint".into()) })
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Every error the API returns: a status and a JSON `{error}` that names what was wrong.
#[derive(Debug)]
pub enum AppError {
    Unauthorized,
    /// Triggering is switched off: no token was configured.
    Forbidden,
    NotFound(String),
    BadRequest(String),
    /// A run is in progress (its id).
    Conflict(u64),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            AppError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                json!({"error": "missing or wrong bearer token"}),
            ),
            AppError::Forbidden => (
                StatusCode::FORBIDDEN,
                json!({"error": "triggering runs is disabled: no token is configured (GPUGATE_TOKEN or --token-file)"}),
            ),
            AppError::NotFound(what) => (StatusCode::NOT_FOUND, json!({"error": what})),
            AppError::BadRequest(what) => (StatusCode::BAD_REQUEST, json!({"error": what})),
            AppError::Conflict(id) => (
                StatusCode::CONFLICT,
                json!({"error": "a run is already in progress", "running_id": id}),
            ),
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static"));
        }
        response
    }
}

/// 200 once the adapter was acquired, with the device and its baseline; a missing or unusable
/// baseline is not a readiness failure (the verdict says `no_baseline` or the run `error`).
/// 503 while starting or when no adapter could be acquired.
async fn readyz(AxumState(state): AxumState<Arc<State>>) -> Response {
    match state.readiness() {
        Readiness::Ready(node) => {
            let (baseline, error) = match node.baseline {
                BaselineState::Loaded(path) => (Some(path), None),
                BaselineState::Missing(why) | BaselineState::Unusable(why) => (None, Some(why)),
            };
            Json(json!({
                "ready": true,
                "device_key": node.device_key,
                "fingerprint": node.fingerprint,
                "baseline": baseline,
                "baseline_present": baseline.is_some(),
                "baseline_error": error,
            }))
            .into_response()
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

async fn metrics(AxumState(state): AxumState<Arc<State>>) -> Response {
    let (content_type, body) = state.metrics.render();
    (
        [(header::CONTENT_TYPE, content_type)],
        body.as_ref().clone(),
    )
        .into_response()
}

/// A run without its report: what the list shows.
fn summary(r: &RunRecord) -> serde_json::Value {
    json!({
        "id": r.id,
        "trigger": r.trigger,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "result": r.result,
        "message": r.report.as_ref().map(|rep| rep.outcome.message.clone()).or(r.error.clone()),
    })
}

async fn list_runs(AxumState(state): AxumState<Arc<State>>) -> Json<serde_json::Value> {
    let history = state.history();
    let runs: Vec<_> = history.iter().map(summary).collect();
    Json(json!({"running_id": state.running_id(), "runs": runs}))
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
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !presented.is_some_and(|p| super::same_secret(p, token)) {
        return Err(AppError::Unauthorized);
    }
    let id = state.start_run(Trigger::Api).map_err(AppError::Conflict)?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/api/v1/runs/{id}"))],
        Json(json!({"id": id, "status": "queued", "url": format!("/api/v1/runs/{id}")})),
    )
        .into_response())
}
