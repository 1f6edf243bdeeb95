//! `gpugate serve`: the sidecar / DaemonSet mode.
//!
//! One worker thread owns all GPU work: it validates the node on start, every `--interval` (with
//! jitter, so a fleet does not measure in lock-step) and on `POST /api/v1/runs`, each time through
//! [`crate::gate::check`], the path `gpugate check` takes: every measurement runs in fresh child
//! processes, so a driver that wedges or crashes takes a child down, not the server. The HTTP layer ([`api`]) only
//! reads [`State`] and enqueues runs. Finished runs go to [`history::History`] (durable files) and
//! to [`metrics::Metrics`].
//!
//! The worker cannot wedge the scheduler: each run is measured under `catch_unwind`, so a panic
//! (or any error) ends as an `error` run — recorded, counted, the slot freed, the next run
//! scheduled. `/livez` fails only when the scheduler task or the worker thread itself is gone
//! ([`State::liveness`]).
//!
//! Before the first run, the worker's start-up probe opens the adapter: from then on `/readyz`,
//! the verdict and `gpugate_device_info` name the device (key and fingerprint), and whether it
//! has a baseline is known. A device without one is ready (the process works) but its verdict is
//! `no_baseline`, never a pass. serve never records a baseline itself: a node that baselined
//! itself would take its own slowness as the norm. Baselines are recorded with `gpugate record`
//! on a known-good node of the same model and mounted.

pub mod api;
pub mod history;
pub mod metrics;
pub mod node_condition;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::compare::Verdict;
use crate::device::{AdapterChoice, Fingerprint, Gpu, GpuIdentity, GpuTarget};
use crate::error::{exit, Error, Result};
use crate::gate::CheckOptions;
use history::{GpuRun, History, RunRecord, RunResult, Trigger};
use metrics::Metrics;

/// Everything `serve` is configured with (flags or their environment variables).
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub interval: Duration,
    /// Each wait is `interval` ± this fraction, drawn at random.
    pub jitter: f64,
    pub history: Option<PathBuf>,
    pub retention: history::Retention,
    /// How many of the latest runs change points are looked for in.
    pub changes_window: usize,
    pub token: Option<String>,
    pub hostname: String,
    pub choice: AdapterChoice,
    pub check: CheckOptions,
    /// `--node-condition`: where to set the node's GPUPerformanceDegraded condition.
    pub node_condition: Option<node_condition::Target>,
}

/// What `/readyz` reports.
#[derive(Clone, Debug, PartialEq)]
pub enum Readiness {
    /// The start-up probe has not finished.
    Starting,
    /// The node's GPUs were acquired (by the probe, or by a run since), in GPU order.
    Ready(Vec<Node>),
    /// No adapter could be acquired: why.
    Failed(String),
}

/// One GPU this process validates and the state of its baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub gpu: GpuIdentity,
    pub device_key: String,
    pub fingerprint: Fingerprint,
    pub baseline: BaselineState,
}

impl Node {
    /// The GPU as its identity, the adapter `fingerprint` and the baselines under `baselines`
    /// show it.
    pub fn new(gpu: GpuIdentity, fingerprint: Fingerprint, baselines: &std::path::Path) -> Node {
        let device_key = fingerprint.device_key();
        Node {
            gpu,
            baseline: BaselineState::of(baselines, &device_key),
            device_key,
            fingerprint,
        }
    }
}

/// This device's baseline, as the probe or the latest run found it.
#[derive(Clone, Debug, PartialEq)]
pub enum BaselineState {
    /// Loaded from this file.
    Loaded(String),
    /// There is none for this device ([`Error::NoBaseline`]): its message, naming where it
    /// looked and what is there.
    Missing(String),
    /// One is configured but cannot be used (a broken file, no such `--baselines`): the error,
    /// which runs report as `error`.
    Unusable(String),
}

impl BaselineState {
    /// Look up (and validate) the baseline for `device_key` the way `check` does. Reads files
    /// only; never writes one.
    pub fn of(baselines: &std::path::Path, device_key: &str) -> BaselineState {
        match crate::baseline::for_device(baselines, device_key) {
            Ok((path, _)) => BaselineState::Loaded(path.display().to_string()),
            Err(e @ Error::NoBaseline { .. }) => BaselineState::Missing(e.to_string()),
            Err(e) => BaselineState::Unusable(e.to_string()),
        }
    }

    pub fn is_loaded(&self) -> bool {
        matches!(self, BaselineState::Loaded(_))
    }
}

/// `GET /api/v1/verdict`: the latest finished run's verdict, shaped for Argo Rollouts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerdictDoc {
    /// True only when the latest run passed the gate.
    pub ok: bool,
    /// The latest run's result (`pass`, `regression`, `wrong_result`, `inconclusive`,
    /// `no_baseline`, `error`); `no_baseline` as soon as the probe finds no baseline for this
    /// device, before any run; `pending` while nothing is known.
    pub verdict: String,
    /// The largest current/baseline time ratio among the kernels (above 1 is slower).
    pub worst_ratio: Option<f64>,
    /// Keys of the kernels that regressed or computed a wrong result.
    pub regressions: Vec<String>,
    /// Kernels the latest run could not judge, each with its reason.
    #[serde(default)]
    pub inconclusive: Vec<crate::compare::Unjudged>,
    /// Kernels whose latest run was throttled unlike their baseline (NVML), with why.
    #[serde(default)]
    pub throttled: Vec<String>,
    /// Set when the latest run's driver differs from its baseline's (the first GPU's that
    /// does).
    #[serde(default)]
    pub driver_change: Option<crate::report::DriverChange>,
    /// Each GPU's part of the latest run: the node's verdict is the worst of theirs.
    #[serde(default)]
    pub gpus: Vec<GpuVerdict>,
    pub run_id: Option<u64>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Whole seconds since `finished_at`, as of this answer: how fresh the verdict is (an
    /// analysis can refuse a stale one).
    #[serde(default)]
    pub age_seconds: Option<u64>,
    pub message: String,
    /// The device this process validates (the first GPU's), once the adapter was acquired.
    #[serde(default)]
    pub device_key: Option<String>,
    #[serde(default)]
    pub fingerprint: Option<Fingerprint>,
}

/// One GPU's verdict in the latest run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuVerdict {
    pub gpu: GpuIdentity,
    pub adapter: String,
    pub device_key: Option<String>,
    /// `pass`, `regression`, `wrong_result`, `inconclusive`, `no_baseline` or `error`.
    pub verdict: String,
    pub worst_ratio: Option<f64>,
    pub regressions: Vec<String>,
    #[serde(default)]
    pub inconclusive: Vec<crate::compare::Unjudged>,
    #[serde(default)]
    pub throttled: Vec<String>,
    #[serde(default)]
    pub driver_change: Option<crate::report::DriverChange>,
    pub message: String,
}

impl GpuVerdict {
    fn of(run: &GpuRun) -> GpuVerdict {
        let rows = run.report.as_ref().map_or(&[][..], |r| &r.rows[..]);
        GpuVerdict {
            gpu: run.gpu.clone(),
            adapter: run.adapter.clone(),
            device_key: run.report.as_ref().and_then(|r| r.device_key.clone()),
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
            inconclusive: run
                .report
                .as_ref()
                .map(|r| r.outcome.inconclusive.clone())
                .unwrap_or_default(),
            throttled: rows
                .iter()
                .filter_map(|r| r.throttled.as_ref().map(|why| format!("{}: {why}", r.key)))
                .collect(),
            driver_change: run.report.as_ref().and_then(|r| r.driver_change.clone()),
            message: run
                .report
                .as_ref()
                .map(|r| r.outcome.message.clone())
                .or(run.error.clone())
                .unwrap_or_default(),
        }
    }
}

/// How a GPU is named to people: `GPU 3 (00000000:3B:00.0)`, or the adapter without a bus id.
pub fn gpu_label(gpu: &GpuIdentity, adapter: &str) -> String {
    match (gpu.index, &gpu.pci_bus_id) {
        (Some(i), Some(bus)) => format!("GPU {i} ({bus})"),
        (None, Some(bus)) => format!("GPU at {bus}"),
        _ => adapter.to_string(),
    }
}

struct Running {
    current: Option<u64>,
}

/// Why a run was not started.
#[derive(Clone, Debug, PartialEq)]
pub enum Refused {
    /// A run is in progress: its id.
    Busy(u64),
    /// The worker thread is gone; nothing can run until the process restarts.
    Stopped,
    /// The run could not be made durable before it was acknowledged (an API request is then
    /// refused): why.
    NotRecorded(String),
    /// Every run id was handed out (ids are never reused): the history must be moved away.
    IdsExhausted,
}

/// The bearer token, kept as its SHA-256 digest: a presented token is hashed and the two
/// fixed-length digests compared in constant time, so neither the length nor the content of
/// the secret leaks through timing.
pub struct Token([u8; 32]);

impl Token {
    pub fn new(secret: &str) -> Token {
        Token(sha2::Sha256::digest(secret.as_bytes()).into())
    }

    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = sha2::Sha256::digest(presented.as_bytes()).into();
        subtle::ConstantTimeEq::ct_eq(&digest[..], &self.0[..]).into()
    }
}

use sha2::Digest as _;

/// Cleared when dropped — by a clean end, a panic's unwinding, or a task's abort — so
/// `/livez` sees a scheduler or worker that is gone.
struct AliveWhileHeld(Arc<AtomicBool>);

impl Drop for AliveWhileHeld {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// Shared between the HTTP handlers, the scheduler and the worker.
pub struct State {
    history: Mutex<History>,
    running: Mutex<Running>,
    readiness: Mutex<Readiness>,
    pub metrics: Metrics,
    pub token: Option<Token>,
    queue: Mutex<mpsc::Sender<(u64, Trigger)>>,
    /// Runs with a smaller id were kept from an earlier process: listed, never a verdict (they may
    /// name a replaced GPU, driver or baseline).
    first_id: u64,
    scheduler_alive: Arc<AtomicBool>,
    worker_alive: Arc<AtomicBool>,
    /// The page at `/` and the latest run it shows: rendered once per finished run, not per
    /// request, since it draws every kept report (at most `--retention`).
    page: Mutex<Option<(Option<u64>, axum::body::Bytes)>>,
    /// The change points over the latest `--changes-window` runs, as of the run named: computed
    /// by the worker after each run ([`State::update_changes`]), served as they are.
    changes: Mutex<Changes>,
}

/// `GET /api/v1/changes`: the change points of every (GPU, kernel) series in the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Changes {
    /// The latest run the window ends at; None before any run was kept.
    pub run_id: Option<u64>,
    /// How many runs the window held.
    pub runs: usize,
    pub series: Vec<crate::changes::KernelChanges>,
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
        metrics.init(&history);
        // No device metric from the kept history: it may name a replaced GPU or driver. The
        // probe sets it from the adapter this process opens. A run the last process left
        // unfinished ended now, as interrupted.
        if history.interrupted_at_open().is_some() {
            metrics.count_result(RunResult::Interrupted);
        }
        for _ in 0..history.failed_saves_at_open() {
            metrics.history_save_failed();
        }
        let first_id = history.next_id();
        State {
            history: Mutex::new(history),
            running: Mutex::new(Running { current: None }),
            readiness: Mutex::new(Readiness::Starting),
            metrics,
            token: token.as_deref().map(Token::new),
            queue: Mutex::new(queue),
            first_id,
            scheduler_alive: Arc::new(AtomicBool::new(true)),
            worker_alive: Arc::new(AtomicBool::new(true)),
            page: Mutex::new(None),
            changes: Mutex::new(Changes::default()),
        }
    }

    /// `Ok` while the scheduler and the worker are there; why not otherwise. A busy worker is
    /// alive: a run is bounded by its own deadlines, not by this probe.
    pub fn liveness(&self) -> std::result::Result<(), String> {
        if !self.scheduler_alive.load(Ordering::SeqCst) {
            return Err("the scheduler has stopped: no further runs would be scheduled".into());
        }
        if !self.worker_alive.load(Ordering::SeqCst) {
            return Err("the worker thread has stopped: no run can be measured".into());
        }
        Ok(())
    }

    fn scheduler_guard(&self) -> AliveWhileHeld {
        AliveWhileHeld(self.scheduler_alive.clone())
    }

    fn worker_guard(&self) -> AliveWhileHeld {
        AliveWhileHeld(self.worker_alive.clone())
    }

    pub fn history(&self) -> MutexGuard<'_, History> {
        lock(&self.history)
    }

    /// The HTML page of the history as it stands ([`api::history_page`]), rendered again only
    /// when a run has finished since; from stored reports, never touching the GPU. Renders
    /// under the history's lock (no copy of the reports): call it off the async runtime.
    pub fn page(&self) -> axum::body::Bytes {
        let history = self.history();
        let latest = history.latest().map(|r| r.id);
        let mut cached = lock(&self.page);
        match &*cached {
            Some((id, page)) if *id == latest => page.clone(),
            _ => {
                let page = axum::body::Bytes::from(api::history_page(&history));
                *cached = Some((latest, page.clone()));
                page
            }
        }
    }

    /// Look for change points over the latest `window` kept runs, update their metrics and keep
    /// them for the API. The reports are copied without their raw samples under the history's
    /// lock and searched after it is released, so the API is never held up by the search.
    pub fn update_changes(&self, window: usize) {
        let (latest, runs): (Option<RunRecord>, Vec<(u64, crate::report::Report)>) = {
            let history = self.history();
            let mut runs: Vec<(u64, crate::report::Report)> = history
                .iter()
                .take(window)
                .flat_map(|run| {
                    run.reports().map(|r| {
                        let mut r = r.clone();
                        r.runs.clear();
                        r.confirmation_runs.clear();
                        (run.id, r)
                    })
                })
                .collect();
            runs.reverse();
            (history.latest().cloned(), runs)
        };
        let series = crate::changes::over_reports(
            runs.iter().map(|(id, r)| (Some(*id), r)),
            None,
            &crate::changes::Options::default(),
        );
        if let Some(latest) = &latest {
            self.metrics.set_changes(latest, &series);
        }
        let window_runs: std::collections::BTreeSet<u64> = runs.iter().map(|(id, _)| *id).collect();
        *lock(&self.changes) = Changes {
            run_id: latest.map(|r| r.id),
            runs: window_runs.len(),
            series,
        };
    }

    pub fn changes(&self) -> Changes {
        lock(&self.changes).clone()
    }

    pub fn readiness(&self) -> Readiness {
        lock(&self.readiness).clone()
    }

    /// What the probe or a run found; the device and baseline metrics follow.
    pub fn set_readiness(&self, r: Readiness) {
        let mut readiness = lock(&self.readiness);
        match &r {
            Readiness::Ready(nodes) => self.metrics.set_devices(nodes),
            Readiness::Failed(_) => self.metrics.set_devices(&[]),
            Readiness::Starting => {}
        }
        *readiness = r;
    }

    /// The node's GPUs, once acquired.
    pub fn nodes(&self) -> Vec<Node> {
        match self.readiness() {
            Readiness::Ready(nodes) => nodes,
            _ => vec![],
        }
    }

    pub fn running_id(&self) -> Option<u64> {
        lock(&self.running).current
    }

    /// Queue a run and return its id. Its acceptance is made durable first (the id high-water
    /// mark and the in-flight marker, [`History::accept`]): an API run is refused when that
    /// fails, since its 202 would promise what the disk does not hold; a scheduled run goes on
    /// in memory, the failure counted and logged. Does file I/O: call it off the async runtime.
    pub fn start_run(&self, trigger: Trigger) -> std::result::Result<u64, Refused> {
        let mut running = lock(&self.running);
        if let Some(id) = running.current {
            return Err(Refused::Busy(id));
        }
        if !self.worker_alive.load(Ordering::SeqCst) {
            return Err(Refused::Stopped);
        }
        // The history keeps the id counter: `accept` consumes the id even when it cannot save
        // the acceptance, so an id is never handed out twice.
        let mut history = self.history();
        let id = history.next_id();
        if id == u64::MAX {
            return Err(Refused::IdsExhausted);
        }
        let accepted = history.accept(id, trigger);
        drop(history);
        if let Err(e) = accepted {
            self.metrics.history_save_failed();
            tracing::error!(id, "cannot record that run {id} was accepted: {e}");
            if trigger == Trigger::Api {
                return Err(Refused::NotRecorded(e.to_string()));
            }
        }
        if lock(&self.queue).send((id, trigger)).is_err() {
            tracing::error!("the worker has stopped; run {id} will not happen");
            return Err(Refused::Stopped);
        }
        running.current = Some(id);
        self.metrics.set_in_progress(true);
        Ok(id)
    }

    /// Record a finished run: history (kept in memory whatever the disk does), metrics, then
    /// the slot frees up.
    pub fn finish(&self, record: RunRecord) {
        self.metrics.observe(&record);
        let id = record.id;
        if let Err(e) = self.history().push(record) {
            self.metrics.history_save_failed();
            tracing::error!(
                id,
                "run {id} finished but could not be saved (kept in memory): {e}"
            );
        }
        let mut running = lock(&self.running);
        if running.current == Some(id) {
            running.current = None;
        }
        self.metrics.set_in_progress(false);
    }

    /// The latest finished run's verdict — of this process only: a run kept from an earlier
    /// process may name a replaced GPU, driver or baseline. `no_baseline` whenever this device is
    /// known to have no baseline (from the probe on); before this process's first run, what the
    /// probe found: `pending` while starting or measuring, `error` without an adapter or with an
    /// unusable baseline.
    pub fn verdict(&self) -> VerdictDoc {
        let readiness = self.readiness();
        let nodes = self.nodes();
        let (device_key, fingerprint) = nodes
            .first()
            .map(|n| (n.device_key.clone(), n.fingerprint.clone()))
            .unzip();
        let history = self.history();
        let latest = history.latest().filter(|r| r.id >= self.first_id);
        let without_run = |verdict: &str, message: String| VerdictDoc {
            ok: false,
            verdict: verdict.into(),
            worst_ratio: None,
            regressions: vec![],
            inconclusive: vec![],
            throttled: vec![],
            driver_change: None,
            gpus: vec![],
            run_id: None,
            finished_at: None,
            age_seconds: None,
            message,
            device_key: device_key.clone(),
            fingerprint: fingerprint.clone(),
        };
        // A GPU known to lack a baseline makes the node `no_baseline` until a run says worse.
        let missing = nodes.iter().find_map(|n| match &n.baseline {
            BaselineState::Missing(why) => Some(why.clone()),
            _ => None,
        });
        let unusable = nodes.iter().find_map(|n| match &n.baseline {
            BaselineState::Unusable(why) => Some(why.clone()),
            _ => None,
        });
        // A run of this process decides (a GPU without a baseline is `no_baseline` in it, and
        // the node's result is already the worst); before one, what the probe found.
        let run = match (latest, missing) {
            (Some(run), _) => run,
            (None, Some(why)) => return without_run(RunResult::NoBaseline.as_str(), why),
            (None, None) => {
                return match (readiness, unusable) {
                    (_, Some(why)) | (Readiness::Failed(why), _) => {
                        without_run(RunResult::Error.as_str(), why)
                    }
                    _ => without_run(PENDING, "no run of this process has finished yet".into()),
                }
            }
        };
        let gpus: Vec<GpuVerdict> = run.gpus.iter().map(GpuVerdict::of).collect();
        let union = |each: fn(&GpuVerdict) -> &Vec<String>| {
            let all: std::collections::BTreeSet<String> =
                gpus.iter().flat_map(|g| each(g).clone()).collect();
            all.into_iter().collect::<Vec<_>>()
        };
        let message = match gpus.as_slice() {
            [] => run.error.clone().unwrap_or_default(),
            [one] => one.message.clone(),
            many => many
                .iter()
                .map(|g| format!("{}: {}", gpu_label(&g.gpu, &g.adapter), g.message))
                .collect::<Vec<_>>()
                .join("; "),
        };
        VerdictDoc {
            ok: run.result == RunResult::Pass,
            verdict: run.result.as_str().into(),
            worst_ratio: gpus.iter().filter_map(|g| g.worst_ratio).reduce(f64::max),
            regressions: union(|g| &g.regressions),
            inconclusive: gpus.iter().flat_map(|g| g.inconclusive.clone()).collect(),
            throttled: union(|g| &g.throttled),
            driver_change: gpus.iter().find_map(|g| g.driver_change.clone()),
            run_id: Some(run.id),
            finished_at: Some(run.finished_at),
            age_seconds: Some(
                u64::try_from((Utc::now() - run.finished_at).num_seconds()).unwrap_or(0),
            ),
            message,
            gpus,
            device_key,
            fingerprint,
        }
    }
}

/// The fewest runs `--changes-window` may look at: E-divisive needs segments on both sides of a
/// change.
pub const MIN_CHANGES_WINDOW: usize = 8;

/// The most runs `--changes-window` may look at: the search is quadratic in the window, and runs
/// in the worker after every run.
pub const MAX_CHANGES_WINDOW: usize = 1000;

/// The verdict before any run, while nothing is known.
pub const PENDING: &str = "pending";

/// A test-only fault injected through `GPUGATE_TEST_FAULT` (documented in ARCHITECTURE.md). It
/// is read once at start; unset, nothing on the run path changes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// `worker-panic`: the first run of the process panics inside the worker, as a capacity
    /// overflow deep in a measurement would. Later runs measure normally.
    WorkerPanic,
}

/// The environment variable that injects a [`Fault`]: the runner's, shared with its child faults.
pub use crate::runner::TEST_FAULT_ENV as FAULT_ENV;

impl Fault {
    /// `worker-panic` only: the variable's other values are faults the measurement children
    /// inject (the runner's hook, same variable), not serve's.
    fn from_env() -> Option<Fault> {
        let value = std::env::var(FAULT_ENV).ok()?;
        (value == "worker-panic").then(|| {
            tracing::warn!(
                "{FAULT_ENV}={value}: the first run will panic (fault injection for tests)"
            );
            Fault::WorkerPanic
        })
    }
}

/// What a panic carried, for the run's error.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// The worker: probe the GPUs once, then measure each queued run in turn. GPU work happens
/// here only. A run that panics is recorded as an `error` run and the worker goes on.
fn worker(
    state: Arc<State>,
    queue: mpsc::Receiver<(u64, Trigger)>,
    choice: AdapterChoice,
    check: CheckOptions,
    fault: Option<Fault>,
    node_condition: Option<node_condition::NodeCondition>,
    changes_window: usize,
) {
    let _alive = state.worker_guard();
    let (mut known, probed) = guarded_probe(&choice, &check);
    // A GPU the last process validated and that is not found now is still missed: a restart
    // must not let a node pass with a GPU fewer.
    if choice.gpu.is_none() {
        let latest = state.history().latest().map(|r| r.gpus.clone());
        for g in latest.into_iter().flatten() {
            let target = GpuTarget {
                choice: AdapterChoice {
                    gpu: g.gpu.pci_bus_id.clone(),
                    ..choice.clone()
                },
                adapter: g.adapter,
                identity: g.gpu,
            };
            if target.identity.pci_bus_id.is_some() && !known.iter().any(|k| same_gpu(k, &target)) {
                known.push(target);
            }
        }
    }
    match &probed {
        Readiness::Ready(nodes) => {
            for node in nodes {
                let gpu = gpu_label(&node.gpu, &node.fingerprint.name);
                match &node.baseline {
                    BaselineState::Loaded(path) => {
                        tracing::info!(%gpu, device_key = %node.device_key, baseline = %path, "ready")
                    }
                    BaselineState::Missing(why) | BaselineState::Unusable(why) => tracing::warn!(
                        %gpu,
                        device_key = %node.device_key,
                        "ready, but this GPU cannot be validated: {why}"
                    ),
                }
            }
        }
        Readiness::Failed(why) => tracing::error!("not ready: {why}"),
        Readiness::Starting => {}
    }
    state.set_readiness(probed);
    // Change points of the kept history are known before the first run of this process.
    state.update_changes(changes_window);
    let mut inject_panic = fault == Some(Fault::WorkerPanic);
    while let Ok((id, trigger)) = queue.recv() {
        tracing::info!(id, ?trigger, "validation run starting");
        let started_at = Utc::now();
        let panic_now = std::mem::take(&mut inject_panic);
        let measured = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if panic_now {
                panic!("{FAULT_ENV}=worker-panic: a panic injected into run {id}");
            }
            measure(&choice, &mut known, &check)
        }));
        let record = match measured {
            Ok((seen, gpus, error)) => {
                state.set_readiness(seen);
                RunRecord::new(id, trigger, started_at, gpus, error)
            }
            Err(payload) => {
                let why = panic_message(payload.as_ref());
                tracing::error!(id, "validation run panicked: {why}");
                RunRecord::failed(
                    id,
                    trigger,
                    started_at,
                    RunResult::Error,
                    format!("the run panicked: {why}"),
                )
            }
        };
        tracing::info!(
            id,
            result = record.result.as_str(),
            gpus = record.gpus.len(),
            "validation run finished"
        );
        // --node-condition: the verdict onto the Node once the run is recorded (node_condition.rs).
        let finished = node_condition.as_ref().map(|_| record.clone());
        state.finish(record);
        state.update_changes(changes_window);
        if let (Some(condition), Some(run)) = (&node_condition, finished) {
            condition.update(&run, &state.metrics);
        }
    }
}

/// One run of the node: every GPU, one after the other, each through the path `gpugate check`
/// takes (its measurements in fresh child processes opened on that GPU alone). One GPU at a
/// time, so one GPU's CPU-side work (references, verification) never competes with another's
/// timing. GPUs are looked up again first: one that was `known` and is gone now (fallen off
/// the bus) is an `error` for as long as this process lives, never silently dropped. Returns
/// what the run showed of the GPUs and their baselines, each GPU's part, and why nothing was
/// measured when no GPU could be.
fn measure(
    choice: &AdapterChoice,
    known: &mut Vec<GpuTarget>,
    check: &CheckOptions,
) -> (Readiness, Vec<GpuRun>, Option<String>) {
    let (mut found, lookup_error) = match crate::device::gpus(choice) {
        Ok(found) => (found, None),
        Err(e) => (vec![], Some(e.to_string())),
    };
    let gone = reconcile(known, &mut found);
    let mut nodes = vec![];
    let mut runs = vec![];
    for target in &found {
        let outcome = crate::gate::check(&target.choice, check);
        let node = match &outcome {
            Ok(crate::report::Report {
                device_key: Some(device_key),
                fingerprint: Some(fingerprint),
                baseline_file,
                ..
            }) => Some(Node {
                gpu: target.identity.clone(),
                device_key: device_key.clone(),
                fingerprint: fingerprint.clone(),
                baseline: BaselineState::Loaded(baseline_file.clone().unwrap_or_default()),
            }),
            // The GPU or its baseline may have changed since the probe: look again.
            _ => open_node(target, check).ok(),
        };
        nodes.extend(node);
        runs.push(match outcome {
            Ok(report) => GpuRun {
                gpu: target.identity.clone(),
                adapter: target.adapter.clone(),
                result: RunResult::of(&report),
                report: Some(report),
                error: None,
            },
            Err(e) => GpuRun {
                gpu: target.identity.clone(),
                adapter: target.adapter.clone(),
                result: RunResult::of_error(&e),
                report: None,
                error: Some(e.to_string()),
            },
        });
    }
    for gone in gone {
        runs.push(GpuRun {
            gpu: gone.identity.clone(),
            adapter: gone.adapter.clone(),
            result: RunResult::Error,
            report: None,
            error: Some(format!(
                "{} was validated before and is no longer among the adapters{}",
                gpu_label(&gone.identity, &gone.adapter),
                lookup_error
                    .as_ref()
                    .map_or(String::new(), |e| format!(" ({e})"))
            )),
        });
    }
    let readiness = if nodes.is_empty() {
        Readiness::Failed(
            lookup_error
                .clone()
                .or_else(|| runs.iter().find_map(|r| r.error.clone()))
                .unwrap_or_else(|| "no GPU could be opened".into()),
        )
    } else {
        Readiness::Ready(nodes)
    };
    let error = runs.is_empty().then_some(lookup_error).flatten();
    (readiness, runs, error)
}

/// Match the GPUs `found` now with those `known` from earlier runs: a found GPU keeps the NVML
/// identity it last had when NVML fails to give one now; `known` becomes every GPU ever found,
/// each as found latest. Returns the known GPUs not found now.
fn reconcile(known: &mut Vec<GpuTarget>, found: &mut [GpuTarget]) -> Vec<GpuTarget> {
    for target in found.iter_mut() {
        if let Some(k) = known.iter_mut().find(|k| same_gpu(k, target)) {
            if target.identity.index.is_none() && k.identity.index.is_some() {
                target.identity = k.identity.clone();
            }
            *k = target.clone();
        }
    }
    let gone = known
        .iter()
        .filter(|k| !found.iter().any(|f| same_gpu(f, k)))
        .cloned()
        .collect();
    for target in found.iter() {
        if !known.iter().any(|k| same_gpu(k, target)) {
            known.push(target.clone());
        }
    }
    gone
}

/// Whether two targets are the same physical GPU: by PCI bus id (NVML's index and UUID may be
/// missing when NVML fails once), by adapter name where neither has a bus id.
fn same_gpu(a: &GpuTarget, b: &GpuTarget) -> bool {
    match (&a.identity.pci_bus_id, &b.identity.pci_bus_id) {
        (Some(x), Some(y)) => crate::telemetry::same_pci_bus_id(x, y),
        (None, None) => a.adapter == b.adapter,
        _ => false,
    }
}

/// Open one GPU and look up its baseline; never records one.
fn open_node(target: &GpuTarget, check: &CheckOptions) -> Result<Node> {
    let gpu = Gpu::open(&target.choice)?;
    let fingerprint = gpu.fingerprint.clone();
    drop(gpu);
    Ok(Node::new(
        target.identity.clone(),
        fingerprint,
        &check.baselines,
    ))
}

/// [`probe`], a panic in it reported as an unready node instead of a dead worker.
fn guarded_probe(choice: &AdapterChoice, check: &CheckOptions) -> (Vec<GpuTarget>, Readiness) {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| probe(choice, check))).unwrap_or_else(
        |payload| {
            (
                vec![],
                Readiness::Failed(format!(
                    "the start-up probe panicked: {}",
                    panic_message(payload.as_ref())
                )),
            )
        },
    )
}

/// Find the node's GPUs, open each and look up its baseline; never records one. A missing or
/// unusable baseline does not make the node unready: it is the verdict's business. Ready while
/// at least one GPU opens; one that does not is an error in every run.
fn probe(choice: &AdapterChoice, check: &CheckOptions) -> (Vec<GpuTarget>, Readiness) {
    let targets = match crate::device::gpus(choice) {
        Ok(targets) => targets,
        Err(e) => return (vec![], Readiness::Failed(e.to_string())),
    };
    let mut nodes = vec![];
    let mut failed = vec![];
    for target in &targets {
        match open_node(target, check) {
            Ok(node) => nodes.push(node),
            Err(e) => {
                let gpu = gpu_label(&target.identity, &target.adapter);
                tracing::error!(%gpu, "cannot open this GPU: {e}");
                failed.push(format!("{gpu}: {e}"));
            }
        }
    }
    let readiness = if nodes.is_empty() {
        Readiness::Failed(failed.join("; "))
    } else {
        Readiness::Ready(nodes)
    };
    (targets, readiness)
}

/// The longest wait between scheduled runs, whatever `--interval` says: the arithmetic below
/// saturates here instead of overflowing.
pub const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// The wait before the next scheduled run: `interval` ± `jitter`·`interval`, never above
/// [`MAX_WAIT`]. Total: no interval or jitter (NaN, infinite, huge) can make it panic.
pub fn next_wait(interval: Duration, jitter: f64) -> Duration {
    let j = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let factor = if j > 0.0 {
        1.0 + rand::random_range(-j..=j)
    } else {
        1.0
    };
    Duration::try_from_secs_f64(interval.as_secs_f64() * factor.max(0.0))
        .unwrap_or(MAX_WAIT)
        .min(MAX_WAIT)
}

/// Resolves on SIGTERM (what Kubernetes sends) or Ctrl-C; on other platforms on Ctrl-C only.
/// The Unix handlers are installed by this call, not at the first poll, so a SIGTERM that comes
/// as soon as the port answers is a graceful shutdown too. Call it inside the runtime.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
                match s {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(e) => {
                        tracing::warn!("cannot listen for a signal: {e}");
                        std::future::pending::<()>().await;
                    }
                }
            };
            let (term, int) = signals;
            tokio::select! {
                () = wait(term) => {},
                () = wait(int) => {},
            }
        }
        #[cfg(not(unix))]
        {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::warn!("cannot listen for Ctrl-C: {e}");
                std::future::pending::<()>().await;
            }
        }
        tracing::info!("shutting down: no new requests");
    }
}

/// Start a run from the scheduler, off the async runtime (it writes the acceptance durably).
async fn start_scheduled(state: &Arc<State>, trigger: Trigger) {
    let s = state.clone();
    match tokio::task::spawn_blocking(move || s.start_run(trigger)).await {
        Ok(Ok(_)) => {}
        Ok(Err(Refused::Busy(id))) => tracing::info!(
            running = id,
            "interval reached while a run is in progress; skipped"
        ),
        Ok(Err(why)) => tracing::error!("scheduled run not started: {why:?}"),
        Err(e) => tracing::error!("scheduled run not started: {e}"),
    }
}

/// Run the sidecar until SIGTERM or Ctrl-C.
pub fn serve(config: Config) -> Result<u8> {
    let fault = Fault::from_env();
    // Before anything starts: a pod that cannot reach its API server fails now, exit 2.
    let node_condition = (config.node_condition.clone())
        .map(node_condition::NodeCondition::new)
        .transpose()?;
    let history = History::open(config.history.as_deref(), config.retention)?;
    let (tx, rx) = mpsc::channel();
    let state = Arc::new(State::new(
        history,
        Metrics::new(&config.hostname, config.interval),
        config.token.clone(),
        tx,
    ));
    if node_condition.is_some() {
        state.metrics.init_node_condition();
    }
    {
        let state = state.clone();
        let (choice, check) = (config.choice.clone(), config.check.clone());
        std::thread::Builder::new()
            .name("gpugate-worker".into())
            .spawn(move || {
                worker(
                    state,
                    rx,
                    choice,
                    check,
                    fault,
                    node_condition,
                    config.changes_window,
                )
            })
            .map_err(|e| Error::Usage(format!("cannot start the worker thread: {e}")))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Usage(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let shutdown = shutdown_signal();
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| Error::Usage(format!("--listen {}: {e}", config.listen)))?;
        tracing::info!(listen = %config.listen, interval = ?config.interval, "serving");
        // Validate on start, then on the (jittered) interval; a busy worker skips a tick.
        start_scheduled(&state, Trigger::Start).await;
        let scheduler = {
            let state = state.clone();
            tokio::spawn(async move {
                let _alive = state.scheduler_guard();
                loop {
                    tokio::time::sleep(next_wait(config.interval, config.jitter)).await;
                    start_scheduled(&state, Trigger::Interval).await;
                }
            })
        };
        let served = api::serve_http(
            listener,
            api::app(state.clone()),
            api::HttpLimits::default(),
            shutdown,
        )
        .await;
        scheduler.abort();
        wait_for_the_worker(&state, SHUTDOWN_WAIT).await;
        served.map_err(|e| Error::Usage(format!("server: {e}")))
    })?;
    Ok(exit::PASS)
}

/// How long a shutdown waits for the run in progress (or the start-up probe) to end.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(20);

/// Wait, up to `limit`, until the worker is idle: exiting while it is inside the GPU driver
/// runs the driver's static destructors under it (a segfault on lavapipe). A run still going
/// after `limit` is left; the next start records it as `interrupted`.
async fn wait_for_the_worker(state: &State, limit: Duration) {
    let busy = || state.readiness() == Readiness::Starting || state.running_id().is_some();
    if !busy() {
        return;
    }
    tracing::info!("waiting up to {limit:?} for the run in progress to finish");
    let deadline = tokio::time::Instant::now() + limit;
    while busy() && state.worker_alive.load(Ordering::SeqCst) {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                running = state.running_id(),
                "exiting with a run unfinished: the next start records it as interrupted"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    fn a_baseline_is_loaded_missing_or_unusable() {
        let dir = tempfile::tempdir().unwrap();
        let missing = BaselineState::of(dir.path(), "GPU-vulkan");
        assert!(
            matches!(&missing, BaselineState::Missing(why) if why.contains("GPU-vulkan")),
            "{missing:?}"
        );
        std::fs::write(dir.path().join("GPU-vulkan.json"), "{").unwrap();
        let broken = BaselineState::of(dir.path(), "GPU-vulkan");
        assert!(
            matches!(&broken, BaselineState::Unusable(why) if why.contains("GPU-vulkan.json")),
            "{broken:?}"
        );
        let nowhere = BaselineState::of(&dir.path().join("absent"), "GPU-vulkan");
        assert!(matches!(nowhere, BaselineState::Unusable(_)), "{nowhere:?}");
        assert!(!missing.is_loaded() && !broken.is_loaded());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "looking never writes"
        );
    }

    #[tokio::test]
    async fn livez_fails_only_once_the_scheduler_or_the_worker_is_gone() {
        use axum::body::Body;
        use axum::http::{Request, StatusCode};
        use tower::ServiceExt;
        let livez = |state: &Arc<State>| {
            let app = api::app(state.clone());
            async move {
                let response = app
                    .oneshot(Request::get("/livez").body(Body::empty()).unwrap())
                    .await
                    .unwrap();
                response.status()
            }
        };
        for which in ["scheduler", "worker"] {
            let (tx, _rx) = mpsc::channel();
            let state = Arc::new(State::new(
                History::open(None, history::Retention::runs(10)).unwrap(),
                Metrics::new("n", Duration::from_secs(3600)),
                None,
                tx,
            ));
            let guard = match which {
                "scheduler" => state.scheduler_guard(),
                _ => state.worker_guard(),
            };
            // A run in progress is no liveness failure.
            let id = state.start_run(Trigger::Start).unwrap();
            assert_eq!(livez(&state).await, StatusCode::OK);
            // The task or thread ends (a panic unwinds through the guard the same way).
            drop(guard);
            assert_eq!(
                livez(&state).await,
                StatusCode::SERVICE_UNAVAILABLE,
                "{which}"
            );
            assert!(state.liveness().unwrap_err().contains(which));
            if which == "worker" {
                state.finish(RunRecord::failed(
                    id,
                    Trigger::Start,
                    Utc::now(),
                    RunResult::Error,
                    "x".into(),
                ));
                assert_eq!(state.start_run(Trigger::Api), Err(Refused::Stopped));
            }
        }
    }

    #[test]
    fn the_last_id_is_never_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("run-18446744073709551614.json"), b"garbage").unwrap();
        let (tx, _rx) = mpsc::channel();
        let state = State::new(
            History::open(Some(dir.path()), history::Retention::runs(10)).unwrap(),
            Metrics::new("n", Duration::from_secs(3600)),
            None,
            tx,
        );
        assert_eq!(state.start_run(Trigger::Api), Err(Refused::IdsExhausted));
        assert_eq!(state.start_run(Trigger::Api), Err(Refused::IdsExhausted));
    }

    #[test]
    fn gpus_are_matched_across_runs_by_bus_id_and_keep_their_nvml_identity() {
        let target = |bus: &str, index: Option<u32>| GpuTarget {
            choice: AdapterChoice::default(),
            adapter: "H100".into(),
            identity: GpuIdentity {
                index,
                uuid: index.map(|i| format!("GPU-{i}")),
                model_name: index.map(|_| "NVIDIA H100".into()),
                pci_bus_id: Some(bus.into()),
            },
        };
        let mut known = vec![
            target("00000000:1B:00.0", Some(0)),
            target("00000000:C1:00.0", Some(1)),
        ];
        // NVML fails this once: both GPUs are found by bus id alone, in wgpu's spelling.
        let mut found = vec![target("0000:c1:00.0", None), target("0000:1b:00.0", None)];
        let gone = reconcile(&mut known, &mut found);
        assert!(gone.is_empty(), "{gone:?}");
        assert_eq!(found[0].identity.index, Some(1), "the identity it last had");
        assert_eq!(found[1].identity.uuid.as_deref(), Some("GPU-0"));
        assert_eq!(known.len(), 2);
        // One falls off the bus: it is gone, and stays known.
        let mut found = vec![target("0000:1b:00.0", Some(0))];
        let gone = reconcile(&mut known, &mut found);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].identity.index, Some(1));
        assert_eq!(known.len(), 2);
        // A new one is added.
        let mut found = vec![
            target("0000:1b:00.0", Some(0)),
            target("0000:c1:00.0", Some(1)),
            target("0000:db:00.0", Some(2)),
        ];
        assert!(reconcile(&mut known, &mut found).is_empty());
        assert_eq!(known.len(), 3);
    }

    #[test]
    fn tokens_compare_whole() {
        let token = Token::new("abc");
        assert!(token.matches("abc"));
        for wrong in ["abd", "ab", "abcd", "", "ABC"] {
            assert!(!token.matches(wrong), "{wrong}");
        }
    }

    #[test]
    fn waits_never_panic_and_saturate() {
        for interval in [Duration::ZERO, Duration::from_secs(1), Duration::MAX] {
            for jitter in [0.0, 0.5, 1.0, 100.0, -1.0, f64::NAN, f64::INFINITY] {
                assert!(
                    next_wait(interval, jitter) <= MAX_WAIT,
                    "{interval:?} {jitter}"
                );
            }
        }
        assert_eq!(next_wait(Duration::MAX, 0.0), MAX_WAIT);
        assert_eq!(
            next_wait(Duration::from_secs(7), f64::NAN),
            Duration::from_secs(7)
        );
    }
}
