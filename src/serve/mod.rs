//! `gpugate serve`: the sidecar / DaemonSet mode.
//!
//! One worker thread owns all GPU work: it validates the node on start, every `--interval` (with
//! jitter, so a fleet does not measure in lock-step) and on `POST /api/v1/runs`, each time through
//! [`crate::cli::check_report`], the path `gpugate check` takes. The HTTP layer ([`api`]) only
//! reads [`State`] and enqueues runs. Finished runs go to [`history::History`] (atomic files) and
//! to [`metrics::Metrics`].

pub mod api;
pub mod history;
pub mod metrics;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cli::CheckArgs;
use crate::compare::Verdict;
use crate::device::{AdapterChoice, Gpu};
use crate::error::{exit, Error, Result};
use history::{History, RunRecord, RunResult, Trigger};
use metrics::Metrics;

/// Everything `serve` is configured with (flags or their environment variables).
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub interval: Duration,
    /// Each wait is `interval` ± this fraction, drawn at random.
    pub jitter: f64,
    pub history: Option<PathBuf>,
    pub retention: usize,
    pub token: Option<String>,
    pub hostname: String,
    pub choice: AdapterChoice,
    pub check: CheckArgs,
}

/// What `/readyz` reports.
#[derive(Clone, Debug, PartialEq)]
pub enum Readiness {
    Starting,
    Ready {
        device_key: String,
        baseline: String,
    },
    Failed(String),
}

/// `GET /api/v1/verdict`: the latest finished run's verdict, shaped for Argo Rollouts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerdictDoc {
    /// True only when the latest run passed the gate.
    pub ok: bool,
    /// `pass`, `regression`, `wrong_result`, `inconclusive`, `error`, or `pending` before any run.
    pub verdict: String,
    /// The largest current/baseline time ratio among the kernels (above 1 is slower).
    pub worst_ratio: Option<f64>,
    /// Keys of the kernels that regressed or computed a wrong result.
    pub regressions: Vec<String>,
    pub run_id: Option<u64>,
    pub finished_at: Option<DateTime<Utc>>,
    pub message: String,
}

struct Running {
    current: Option<u64>,
    next_id: u64,
}

/// Shared between the HTTP handlers, the scheduler and the worker.
pub struct State {
    history: Mutex<History>,
    running: Mutex<Running>,
    readiness: Mutex<Readiness>,
    pub metrics: Metrics,
    pub token: Option<String>,
    queue: Mutex<mpsc::Sender<(u64, Trigger)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicked holder cannot leave these structures half-updated in a way readers mind.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl State {
    /// State over `history`, sending run requests to `queue` (the worker's receiver).
    pub fn new(
        history: History,
        metrics: Metrics,
        token: Option<String>,
        queue: mpsc::Sender<(u64, Trigger)>,
    ) -> State {
        metrics.init_results();
        // The device of the newest measured run: older ones may name a replaced driver.
        if let Some(report) = history.iter().find_map(|r| r.report.as_ref()) {
            metrics.set_device(&report.fingerprint);
        }
        let next_id = history.next_id();
        State {
            history: Mutex::new(history),
            running: Mutex::new(Running {
                current: None,
                next_id,
            }),
            readiness: Mutex::new(Readiness::Starting),
            metrics,
            token,
            queue: Mutex::new(queue),
        }
    }

    pub fn history(&self) -> MutexGuard<'_, History> {
        lock(&self.history)
    }

    pub fn readiness(&self) -> Readiness {
        lock(&self.readiness).clone()
    }

    pub fn set_readiness(&self, r: Readiness) {
        *lock(&self.readiness) = r;
    }

    pub fn running_id(&self) -> Option<u64> {
        lock(&self.running).current
    }

    /// Queue a run; its id, or `Err(id)` of the run already in progress.
    pub fn start_run(&self, trigger: Trigger) -> std::result::Result<u64, u64> {
        let mut running = lock(&self.running);
        if let Some(id) = running.current {
            return Err(id);
        }
        let id = running.next_id;
        running.next_id += 1;
        running.current = Some(id);
        self.metrics.set_in_progress(true);
        if lock(&self.queue).send((id, trigger)).is_err() {
            tracing::error!("the worker has stopped; run {id} will not happen");
        }
        Ok(id)
    }

    /// Record a finished run: history (persisted first), metrics, then the slot frees up.
    pub fn finish(&self, record: RunRecord) {
        self.metrics.observe(&record);
        let id = record.id;
        if let Err(e) = self.history().push(record) {
            tracing::error!("run {id} finished but could not be saved: {e}");
        }
        let mut running = lock(&self.running);
        if running.current == Some(id) {
            running.current = None;
        }
        self.metrics.set_in_progress(false);
    }

    pub fn verdict(&self) -> VerdictDoc {
        let history = self.history();
        let Some(run) = history.latest() else {
            return VerdictDoc {
                ok: false,
                verdict: "pending".into(),
                worst_ratio: None,
                regressions: vec![],
                run_id: None,
                finished_at: None,
                message: "no run has finished yet".into(),
            };
        };
        let rows = run.report.as_ref().map_or(&[][..], |r| &r.rows[..]);
        VerdictDoc {
            ok: run.result == RunResult::Pass,
            verdict: run.result.as_str().into(),
            worst_ratio: rows
                .iter()
                .filter_map(|r| r.comparison.as_ref().map(|c| c.ratio))
                .reduce(f64::max),
            regressions: rows
                .iter()
                .filter(|r| matches!(r.verdict, Verdict::Regression | Verdict::WrongResult))
                .map(|r| r.key.clone())
                .collect(),
            run_id: Some(run.id),
            finished_at: Some(run.finished_at),
            message: run
                .report
                .as_ref()
                .map(|r| r.outcome.message.clone())
                .or(run.error.clone())
                .unwrap_or_default(),
        }
    }
}

/// Compare a presented secret with the configured one without an early exit on the first
/// differing byte.
pub fn same_secret(presented: &str, expected: &str) -> bool {
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The worker: probe readiness once, then measure each queued run in turn. GPU work happens
/// here only.
fn worker(
    state: Arc<State>,
    queue: mpsc::Receiver<(u64, Trigger)>,
    choice: AdapterChoice,
    check: CheckArgs,
) {
    state.set_readiness(match probe(&choice, &check) {
        Ok((device_key, baseline)) => {
            tracing::info!(%device_key, %baseline, "ready");
            Readiness::Ready {
                device_key,
                baseline,
            }
        }
        Err(e) => {
            tracing::error!("not ready: {e}");
            Readiness::Failed(e.to_string())
        }
    });
    while let Ok((id, trigger)) = queue.recv() {
        tracing::info!(id, ?trigger, "validation run starting");
        let started_at = Utc::now();
        let outcome = crate::cli::check_report(&choice, &check);
        let finished_at = Utc::now();
        let record = match outcome {
            Ok(report) => RunRecord {
                id,
                trigger,
                started_at,
                finished_at,
                result: RunResult::of(&report),
                report: Some(report),
                error: None,
            },
            Err(e) => RunRecord {
                id,
                trigger,
                started_at,
                finished_at,
                result: RunResult::Error,
                report: None,
                error: Some(e.to_string()),
            },
        };
        tracing::info!(
            id,
            result = record.result.as_str(),
            "validation run finished"
        );
        state.finish(record);
    }
}

/// Adapter acquired and this device's baseline loaded.
fn probe(choice: &AdapterChoice, check: &CheckArgs) -> Result<(String, String)> {
    let gpu = Gpu::open(choice)?;
    let key = gpu.fingerprint.device_key();
    drop(gpu);
    let (path, _) = crate::baseline::for_device(&check.baselines, &key)?;
    Ok((key, path.display().to_string()))
}

/// The wait before the next scheduled run: `interval` ± `jitter`·`interval`.
pub fn next_wait(interval: Duration, jitter: f64) -> Duration {
    let j = jitter.clamp(0.0, 1.0);
    let factor = 1.0 + rand::random_range(-j..=j);
    interval.mul_f64(factor.max(0.0))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: no new requests; finished runs are already on disk");
}

/// Run the sidecar until SIGTERM or Ctrl-C.
pub fn serve(config: Config) -> Result<u8> {
    let history = History::open(config.history.as_deref(), config.retention)?;
    let (tx, rx) = mpsc::channel();
    let state = Arc::new(State::new(
        history,
        Metrics::new(&config.hostname),
        config.token.clone(),
        tx,
    ));
    {
        let state = state.clone();
        let (choice, check) = (config.choice.clone(), config.check.clone());
        std::thread::Builder::new()
            .name("gpugate-worker".into())
            .spawn(move || worker(state, rx, choice, check))
            .map_err(|e| Error::Usage(format!("cannot start the worker thread: {e}")))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| Error::Usage(format!("--listen {}: {e}", config.listen)))?;
        tracing::info!(listen = %config.listen, interval = ?config.interval, "serving");
        // Validate on start, then on the (jittered) interval; a busy worker skips a tick.
        let _ = state.start_run(Trigger::Start);
        let scheduler = {
            let state = state.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(next_wait(config.interval, config.jitter)).await;
                    if let Err(id) = state.start_run(Trigger::Interval) {
                        tracing::info!(
                            running = id,
                            "interval reached while a run is in progress; skipped"
                        );
                    }
                }
            })
        };
        let served = axum::serve(listener, api::app(state))
            .with_graceful_shutdown(shutdown_signal())
            .await;
        scheduler.abort();
        served.map_err(|e| Error::Usage(format!("server: {e}")))
    })?;
    Ok(exit::PASS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_spread_within_the_jitter() {
        let hour = Duration::from_secs(3600);
        let waits: Vec<_> = (0..1000).map(|_| next_wait(hour, 0.1)).collect();
        assert!(waits
            .iter()
            .all(|w| *w >= hour.mul_f64(0.9) && *w <= hour.mul_f64(1.1)));
        let spread =
            waits.iter().max().unwrap().as_secs_f64() - waits.iter().min().unwrap().as_secs_f64();
        assert!(
            spread > 0.1 * 3600.0,
            "a fleet must not run in lock-step: spread {spread} s"
        );
        assert_eq!(next_wait(hour, 0.0), hour);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
        assert!(!same_secret("ab", "abc"));
        assert!(!same_secret("", "abc"));
    }
}
