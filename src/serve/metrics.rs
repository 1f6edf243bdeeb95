//! Prometheus metrics, named per Prometheus conventions: prefix `gpugate_`, base units, `_total`
//! counters, `_ratio` fractions. Every series carries `Hostname` (the node name, from
//! `NODE_NAME`) and every per-GPU series DCGM's identity labels `gpu` (NVML's index), `UUID`,
//! `modelName` and `pci_bus_id`, spelled as dcgm-exporter spells them, so PromQL joins the two
//! (`on (Hostname, gpu)`); without NVML only `pci_bus_id` is set (an empty label is no label to
//! Prometheus). Other labels stay bounded — `kernel` (a suite's instance keys), `verdict`,
//! `reason`, `result` — and run ids and shas never become labels.
//!
//! Per-kernel and per-GPU gauges describe the latest run only: they are rebuilt from it, so a
//! GPU whose latest run was an error has no kernel series left showing its last good values.

use std::collections::HashMap;
use std::sync::Mutex;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, Opts, Registry, TextEncoder,
};

use super::history::{History, RunRecord, RunResult};
use super::Node;
use crate::compare::{Reason, Verdict};
use crate::device::GpuIdentity;
use crate::workload::Unit;

const VERDICTS: [Verdict; 5] = [
    Verdict::Pass,
    Verdict::Improvement,
    Verdict::Inconclusive,
    Verdict::Regression,
    Verdict::WrongResult,
];

/// DCGM's identity labels, in this order on every per-GPU series.
pub const GPU_LABELS: [&str; 4] = ["gpu", "UUID", "modelName", "pci_bus_id"];

/// The values of [`GPU_LABELS`] for `gpu`: empty where unknown.
pub fn gpu_labels(gpu: &GpuIdentity) -> [String; 4] {
    [
        gpu.index.map(|i| i.to_string()).unwrap_or_default(),
        gpu.uuid.clone().unwrap_or_default(),
        gpu.model_name.clone().unwrap_or_default(),
        gpu.pci_bus_id.clone().unwrap_or_default(),
    ]
}

/// `GPU_LABELS` followed by `extra`.
fn per_gpu(extra: &[&'static str]) -> Vec<&'static str> {
    GPU_LABELS.iter().chain(extra).copied().collect()
}

/// `labels` (a GPU's) followed by `extra` values.
fn values<'a>(labels: &'a [String; 4], extra: &[&'a str]) -> Vec<&'a str> {
    labels
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
        .collect()
}

pub struct Metrics {
    registry: Registry,
    names: Vec<String>,
    gpus: IntGauge,
    device_info: GaugeVec,
    /// Per GPU: one series once the GPU is known, none before (or without an adapter), so an
    /// alert on 0 only fires where a baseline is known to be missing.
    baseline_present: GaugeVec,
    median_seconds: GaugeVec,
    /// Rate per second in base units, one family per unit: bytes, FLOP, edges.
    throughput: [GaugeVec; 3],
    baseline_ratio: GaugeVec,
    detectable_ratio: GaugeVec,
    verdict: GaugeVec,
    inconclusive: GaugeVec,
    throttled: GaugeVec,
    driver_changed: GaugeVec,
    gpu_verdict: GaugeVec,
    node_verdict: GaugeVec,
    consecutive: GaugeVec,
    /// Per GPU (its label values): the latest result and how many runs in a row ended so.
    streaks: Mutex<HashMap<[String; 4], (RunResult, u64)>>,
    change_ratio: GaugeVec,
    change_time: GaugeVec,
    runs_total: IntCounterVec,
    history_save_failures: IntCounter,
    /// `--node-condition`: updates of the node's GPUPerformanceDegraded condition, by outcome.
    node_condition_updates: IntCounterVec,
    run_duration: Histogram,
    run_in_progress: IntGauge,
    last_run: Gauge,
    last_success: Gauge,
    sample_duration: HistogramVec,
    /// The last rendered exposition: series change only when a run starts or ends, so scrapes
    /// between those serve these bytes instead of re-encoding every histogram.
    rendered: Mutex<Option<std::sync::Arc<Vec<u8>>>>,
}

/// The registry being built, and the name of every family registered in it (a family without
/// series yet is not in the exposition, and the docs and rules must still name only real ones).
struct Families {
    registry: Registry,
    names: std::cell::RefCell<Vec<String>>,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(r: &Families, metric: T) -> T {
    let names = metric
        .desc()
        .iter()
        .map(|d| d.fq_name.clone())
        .collect::<Vec<_>>();
    r.registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique and valid");
    r.names.borrow_mut().extend(names);
    metric
}

fn gauge_vec(r: &Families, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    register(r, GaugeVec::new(Opts::new(name, help), labels).unwrap())
}

impl Metrics {
    /// The registry of a pod on node `hostname`, validating every `--interval`.
    pub fn new(hostname: &str, interval: std::time::Duration) -> Metrics {
        let labels = [("Hostname".to_string(), hostname.to_string())].into();
        let families = Families {
            registry: Registry::new_custom(None, Some(labels)).expect("valid const labels"),
            names: Default::default(),
        };
        let r = &families;
        gauge_vec(
            r,
            "gpugate_build_info",
            "gpugate build, always 1",
            &["version"],
        )
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1.0);
        register(
            r,
            Gauge::new(
                "gpugate_interval_seconds",
                "the configured time between scheduled runs (alerts scale their windows by it)",
            )
            .unwrap(),
        )
        .set(interval.as_secs_f64());
        let kernel = per_gpu(&["kernel"]);
        let sample_buckets = prometheus::exponential_buckets(1e-6, 4.0, 13).unwrap();
        let run_buckets = prometheus::exponential_buckets(1.0, 2.0, 12).unwrap();
        Metrics {
            gpus: register(
                r,
                IntGauge::new("gpugate_gpus", "GPUs this pod validates").unwrap(),
            ),
            device_info: gauge_vec(
                r,
                "gpugate_device_info",
                "a GPU validated, always 1",
                &per_gpu(&["adapter", "driver", "backend", "device_key"]),
            ),
            baseline_present: gauge_vec(
                r,
                "gpugate_baseline_present",
                "1 when the GPU's baseline loaded, 0 when it has none or it cannot be loaded",
                &per_gpu(&[]),
            ),
            median_seconds: gauge_vec(
                r,
                "gpugate_kernel_median_seconds",
                "latest run's median time per iteration (the median of its run medians)",
                &kernel,
            ),
            throughput: [
                ("bytes", "bytes moved"),
                ("flops", "floating-point operations"),
                ("edges", "graph edges traversed"),
            ]
            .map(|(unit, what)| {
                gauge_vec(
                    r,
                    &format!("gpugate_kernel_throughput_{unit}_per_second"),
                    &format!("latest run's {what} per second"),
                    &kernel,
                )
            }),
            baseline_ratio: gauge_vec(
                r,
                "gpugate_kernel_baseline_ratio",
                "latest run's time over the baseline's (above 1 is slower)",
                &kernel,
            ),
            detectable_ratio: gauge_vec(
                r,
                "gpugate_kernel_detectable_ratio",
                "smallest slowdown (time ratio) the latest run's check detects with 95 % power",
                &kernel,
            ),
            verdict: gauge_vec(
                r,
                "gpugate_kernel_verdict",
                "1 for the latest run's verdict of each kernel, 0 for the others",
                &per_gpu(&["kernel", "verdict"]),
            ),
            inconclusive: gauge_vec(
                r,
                "gpugate_kernel_inconclusive",
                "1 for why the latest run left a kernel inconclusive, 0 for the other reasons",
                &per_gpu(&["kernel", "reason"]),
            ),
            throttled: gauge_vec(
                r,
                "gpugate_kernel_throttled",
                "1 when the latest run of a kernel was throttled unlike its baseline (NVML)",
                &kernel,
            ),
            driver_changed: gauge_vec(
                r,
                "gpugate_driver_changed",
                "1 when the latest run's driver differs from its baseline's",
                &per_gpu(&[]),
            ),
            gpu_verdict: gauge_vec(
                r,
                "gpugate_gpu_verdict",
                "1 for the GPU's latest result, 0 for the others",
                &per_gpu(&["verdict"]),
            ),
            node_verdict: gauge_vec(
                r,
                "gpugate_node_verdict",
                "1 for the node's latest result (the worst over its GPUs), 0 for the others",
                &["verdict"],
            ),
            consecutive: gauge_vec(
                r,
                "gpugate_gpu_consecutive_runs",
                "how many of the GPU's latest runs in a row ended with this result",
                &per_gpu(&["result"]),
            ),
            streaks: Mutex::new(HashMap::new()),
            change_ratio: gauge_vec(
                r,
                "gpugate_kernel_change_point_ratio",
                "mean time after over before the latest change point in the window (above 1 is slower)",
                &kernel,
            ),
            change_time: gauge_vec(
                r,
                "gpugate_kernel_change_point_timestamp_seconds",
                "when the first run after the latest change point finished (Unix time)",
                &kernel,
            ),
            runs_total: register(
                r,
                IntCounterVec::new(
                    Opts::new("gpugate_runs_total", "finished validation runs by result"),
                    &["result"],
                )
                .unwrap(),
            ),
            node_condition_updates: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "gpugate_node_condition_updates_total",
                        "updates of the node's GPUPerformanceDegraded condition (--node-condition), by result: ok or error",
                    ),
                    &["result"],
                )
                .unwrap(),
            ),
            history_save_failures: register(
                r,
                IntCounter::new(
                    "gpugate_history_save_failures_total",
                    "history writes that failed (the run is kept in memory only)",
                )
                .unwrap(),
            ),
            run_duration: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new("gpugate_run_duration_seconds", "wall time of a run")
                        .buckets(run_buckets),
                )
                .unwrap(),
            ),
            run_in_progress: register(
                r,
                IntGauge::new("gpugate_run_in_progress", "1 while a run is measuring").unwrap(),
            ),
            last_run: register(
                r,
                Gauge::new(
                    "gpugate_last_run_timestamp_seconds",
                    "when the latest run finished (Unix time)",
                )
                .unwrap(),
            ),
            last_success: register(
                r,
                Gauge::new(
                    "gpugate_last_success_timestamp_seconds",
                    "when the latest run in which every GPU passed finished (Unix time)",
                )
                .unwrap(),
            ),
            sample_duration: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "gpugate_sample_duration_seconds",
                        "time per iteration of every sample taken",
                    )
                    .buckets(sample_buckets),
                    &kernel,
                )
                .unwrap(),
            ),
            names: families.names.take(),
            registry: families.registry,
            rendered: Mutex::new(None),
        }
    }

    /// Every metric family's name, whether or not it has a series yet.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    fn invalidate(&self) {
        *self.rendered.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The GPUs this process validates: one `gpugate_device_info` and `gpugate_baseline_present`
    /// series each, never a stale one beside them; none without an adapter.
    pub fn set_devices(&self, nodes: &[Node]) {
        self.device_info.reset();
        self.baseline_present.reset();
        for node in nodes {
            let fp = &node.fingerprint;
            let id = gpu_labels(&node.gpu);
            let (driver, key) = (fp.driver_string(), fp.device_key());
            self.device_info
                .with_label_values(&values(&id, &[&fp.name, &driver, &fp.backend, &key]))
                .set(1.0);
            self.baseline_present
                .with_label_values(&values(&id, &[]))
                .set(f64::from(u8::from(node.baseline.is_loaded())));
        }
        self.gpus
            .set(i64::try_from(nodes.len()).unwrap_or(i64::MAX));
        self.invalidate();
    }

    pub fn set_in_progress(&self, running: bool) {
        self.run_in_progress.set(i64::from(running));
        self.invalidate();
    }

    /// Zero every counter's result label so the series exist before the first run, and take
    /// each GPU's streak from the kept history, so a restart does not forget that a GPU has
    /// been inconclusive for days.
    pub fn init(&self, history: &History) {
        for r in RunResult::ALL {
            self.runs_total.with_label_values(&[r.as_str()]);
        }
        let mut runs: Vec<&RunRecord> = history.iter().collect();
        runs.reverse();
        for run in runs {
            self.count_streaks(run);
        }
        self.set_streaks();
        // Staleness survives a restart: the last success is the kept history's.
        let at = |r: &RunRecord| r.finished_at.timestamp_millis() as f64 / 1e3;
        if let Some(latest) = history.latest() {
            self.last_run.set(at(latest));
        }
        if let Some(pass) = history.iter().find(|r| r.result == RunResult::Pass) {
            self.last_success.set(at(pass));
        }
    }

    /// A run that ended without being measured here (interrupted by the last process's end).
    pub fn count_result(&self, result: RunResult) {
        self.runs_total.with_label_values(&[result.as_str()]).inc();
        self.invalidate();
    }

    /// `--node-condition` is on: both results exist from the start, so an alert on errors has a
    /// series to compare with.
    pub fn init_node_condition(&self) {
        for result in ["ok", "error"] {
            self.node_condition_updates.with_label_values(&[result]);
        }
        self.invalidate();
    }

    pub fn node_condition_update(&self, ok: bool) {
        self.node_condition_updates
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
        self.invalidate();
    }

    pub fn history_save_failed(&self) {
        self.history_save_failures.inc();
        self.invalidate();
    }

    pub fn observe(&self, run: &RunRecord) {
        self.record(run);
        self.invalidate();
    }

    /// Count `run` into each GPU's streak. A run that measured no GPU (a panic, no adapter, an
    /// interruption) counts against every GPU known; otherwise only the run's GPUs keep a streak,
    /// so one replaced or gone leaves no series frozen at its last count.
    fn count_streaks(&self, run: &RunRecord) {
        let bump = |streak: &mut (RunResult, u64), result: RunResult| {
            *streak = match *streak {
                (last, n) if last == result => (last, n + 1),
                _ => (result, 1),
            };
        };
        let mut streaks = self.streaks.lock().unwrap_or_else(|e| e.into_inner());
        if run.gpus.is_empty() {
            for streak in streaks.values_mut() {
                bump(streak, run.result);
            }
            return;
        }
        let current: Vec<[String; 4]> = run.gpus.iter().map(|g| gpu_labels(&g.gpu)).collect();
        streaks.retain(|id, _| current.contains(id));
        for (id, g) in current.into_iter().zip(&run.gpus) {
            bump(streaks.entry(id).or_insert((g.result, 0)), g.result);
        }
    }

    fn set_streaks(&self) {
        self.consecutive.reset();
        let streaks = self.streaks.lock().unwrap_or_else(|e| e.into_inner());
        for (id, (last, n)) in streaks.iter() {
            for r in RunResult::ALL {
                let count = if r == *last { *n as f64 } else { 0.0 };
                self.consecutive
                    .with_label_values(&values(id, &[r.as_str()]))
                    .set(count);
            }
        }
    }

    fn record(&self, run: &RunRecord) {
        self.runs_total
            .with_label_values(&[run.result.as_str()])
            .inc();
        self.run_duration.observe(run.duration_s());
        let finished = run.finished_at.timestamp_millis() as f64 / 1e3;
        self.last_run.set(finished);
        if run.result == RunResult::Pass {
            self.last_success.set(finished);
        }
        for r in RunResult::ALL {
            self.node_verdict
                .with_label_values(&[r.as_str()])
                .set(f64::from(u8::from(r == run.result)));
        }
        self.count_streaks(run);
        self.set_streaks();
        // The latest run's series only: whatever an earlier run (or a GPU gone since) set goes.
        for family in [
            &self.median_seconds,
            &self.baseline_ratio,
            &self.detectable_ratio,
            &self.verdict,
            &self.inconclusive,
            &self.throttled,
            &self.driver_changed,
            &self.gpu_verdict,
        ]
        .into_iter()
        .chain(&self.throughput)
        {
            family.reset();
        }
        for g in &run.gpus {
            let id = gpu_labels(&g.gpu);
            for r in RunResult::ALL {
                self.gpu_verdict
                    .with_label_values(&values(&id, &[r.as_str()]))
                    .set(f64::from(u8::from(r == g.result)));
            }
            if let Some(report) = &g.report {
                self.record_report(&id, report);
            }
        }
    }

    fn record_report(&self, id: &[String; 4], report: &crate::report::Report) {
        for row in &report.rows {
            let labels = values(id, &[row.key.as_str()]);
            self.median_seconds
                .with_label_values(&labels)
                .set(row.median_s);
            let family = match row.unit {
                Unit::Bandwidth => 0,
                Unit::Flops => 1,
                Unit::Teps => 2,
            };
            // Reports keep rates in G-units per second; metrics use base units.
            self.throughput[family]
                .with_label_values(&labels)
                .set(row.rate * 1e9);
            if let Some(c) = &row.comparison {
                self.baseline_ratio.with_label_values(&labels).set(c.ratio);
            }
            self.throttled
                .with_label_values(&labels)
                .set(f64::from(u8::from(row.throttled.is_some())));
            if let Some(r) = row.detectable_ratio {
                self.detectable_ratio.with_label_values(&labels).set(r);
            }
            for v in VERDICTS {
                self.verdict
                    .with_label_values(&values(id, &[&row.key, v.as_str()]))
                    .set(f64::from(u8::from(v == row.verdict)));
            }
            let why = row
                .comparison
                .as_ref()
                .and_then(|c| c.inconclusive)
                .filter(|_| row.verdict == Verdict::Inconclusive);
            for reason in Reason::ALL {
                self.inconclusive
                    .with_label_values(&values(id, &[&row.key, reason.as_str()]))
                    .set(f64::from(u8::from(why == Some(reason))));
            }
        }
        self.driver_changed
            .with_label_values(&values(id, &[]))
            .set(f64::from(u8::from(report.driver_change.is_some())));
        for run in &report.runs {
            for k in &run.kernels {
                let h = self
                    .sample_duration
                    .with_label_values(&values(id, &[k.key.as_str()]));
                for &s in &k.measurement.samples_s {
                    h.observe(s);
                }
            }
        }
    }

    /// The latest change point of each kernel of each GPU in `latest` (the run the window ends
    /// at), from `series`; none for a series without one or a GPU no longer measured.
    pub fn set_changes(&self, latest: &RunRecord, series: &[crate::changes::KernelChanges]) {
        self.change_ratio.reset();
        self.change_time.reset();
        for g in &latest.gpus {
            let Some(report) = &g.report else { continue };
            let bus = report.gpu.as_ref().and_then(|id| id.pci_bus_id.as_ref());
            let id = gpu_labels(&g.gpu);
            for k in series.iter().filter(|k| {
                k.series.pci_bus_id.as_ref() == bus
                    && report.device_key.as_ref() == Some(&k.series.device_key)
            }) {
                let Some(last) = k.changes.last() else {
                    continue;
                };
                let labels = values(&id, &[k.series.kernel.as_str()]);
                self.change_ratio
                    .with_label_values(&labels)
                    .set(last.point.ratio);
                if let Some(at) = last.at {
                    self.change_time
                        .with_label_values(&labels)
                        .set(at.timestamp_millis() as f64 / 1e3);
                }
            }
        }
        self.invalidate();
    }

    /// The text exposition format's content type and body.
    pub fn render(&self) -> (&'static str, std::sync::Arc<Vec<u8>>) {
        let mut cached = self.rendered.lock().unwrap_or_else(|e| e.into_inner());
        let body = cached.get_or_insert_with(|| {
            let mut out = Vec::new();
            TextEncoder::new()
                .encode(&self.registry.gather(), &mut out)
                .expect("text encoding into memory cannot fail");
            std::sync::Arc::new(out)
        });
        (prometheus::TEXT_FORMAT, body.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Fingerprint;

    fn fingerprint(name: &str, driver: &str) -> Fingerprint {
        Fingerprint {
            name: name.into(),
            vendor_id: 0x10de,
            device_id: 1,
            device_type: "DiscreteGpu".into(),
            driver: driver.into(),
            driver_info: String::new(),
            backend: "vulkan".into(),
            cpu_model: None,
        }
    }

    fn text(m: &Metrics) -> String {
        String::from_utf8(m.render().1.to_vec()).unwrap()
    }

    fn lines<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .collect()
    }

    /// The series of `name`: each one's labels (in any order) and value.
    fn series(text: &str, name: &str) -> Vec<(std::collections::BTreeMap<String, String>, f64)> {
        lines(text, name)
            .into_iter()
            .map(|l| {
                let (labels, value) = l[name.len() + 1..].rsplit_once("} ").unwrap();
                let labels = labels
                    .split("\",")
                    .map(|kv| {
                        let (k, v) = kv.split_once("=\"").unwrap();
                        (k.to_string(), v.trim_end_matches('"').to_string())
                    })
                    .collect();
                (labels, value.parse().unwrap())
            })
            .collect()
    }

    /// The value of the one series of `name` whose labels include `having`.
    fn value(text: &str, name: &str, having: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<f64> = series(text, name)
            .into_iter()
            .filter(|(l, _)| {
                having
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, v)| v)
            .collect();
        assert!(found.len() <= 1, "{name} {having:?}: {found:?}");
        found.first().copied()
    }

    fn node(index: u32, driver: &str, loaded: bool) -> Node {
        Node {
            gpu: GpuIdentity {
                index: Some(index),
                uuid: Some(format!("GPU-{index}")),
                model_name: Some("GPU A".into()),
                pci_bus_id: Some(format!("00000000:0{index}:00.0")),
            },
            device_key: "GPU-A-vulkan".into(),
            fingerprint: fingerprint("GPU A", driver),
            baseline: if loaded {
                super::super::BaselineState::Loaded("b.json".into())
            } else {
                super::super::BaselineState::Missing("none".into())
            },
        }
    }

    fn metrics() -> Metrics {
        Metrics::new("n", std::time::Duration::from_secs(6 * 3600))
    }

    #[test]
    fn one_device_series_per_gpu_and_baseline_series_only_once_known() {
        let m = metrics();
        let t = text(&m);
        assert!(lines(&t, "gpugate_device_info").is_empty(), "{t}");
        assert!(lines(&t, "gpugate_baseline_present").is_empty(), "{t}");
        assert_eq!(
            value(&t, "gpugate_interval_seconds", &[("Hostname", "n")]),
            Some(21600.0)
        );

        m.set_devices(&[node(0, "550", false), node(1, "550", true)]);
        m.set_devices(&[node(0, "560", false), node(1, "560", true)]);
        let t = text(&m);
        let device = lines(&t, "gpugate_device_info");
        assert_eq!(device.len(), 2, "{t}");
        assert!(device.iter().all(|l| l.contains("driver=\"560\"")), "{t}");
        let present = series(&t, "gpugate_baseline_present");
        assert_eq!(present.len(), 2, "{t}");
        let dcgm = [
            ("Hostname", "n"),
            ("gpu", "1"),
            ("UUID", "GPU-1"),
            ("modelName", "GPU A"),
            ("pci_bus_id", "00000000:01:00.0"),
        ];
        assert_eq!(
            value(&t, "gpugate_baseline_present", &dcgm),
            Some(1.0),
            "{t}"
        );
        assert_eq!(
            value(&t, "gpugate_baseline_present", &[("gpu", "0")]),
            Some(0.0)
        );
        assert_eq!(value(&t, "gpugate_gpus", &[]), Some(2.0));

        m.set_devices(&[]);
        let t = text(&m);
        assert!(lines(&t, "gpugate_device_info").is_empty(), "{t}");
        assert!(lines(&t, "gpugate_baseline_present").is_empty(), "{t}");
    }

    fn run(id: u64, gpus: &[(u32, RunResult, bool)]) -> RunRecord {
        let report = crate::report::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/ci-check-report.json"
        )))
        .unwrap();
        let gpus = gpus
            .iter()
            .map(|&(index, result, measured)| super::super::history::GpuRun {
                gpu: node(index, "560", true).gpu,
                adapter: "GPU A".into(),
                result,
                report: measured.then(|| report.clone()),
                error: (!measured).then(|| "no".into()),
            })
            .collect();
        RunRecord::new(
            id,
            super::super::history::Trigger::Interval,
            chrono::Utc::now(),
            gpus,
            None,
        )
    }

    #[test]
    fn kernel_series_follow_the_latest_run_and_vanish_after_an_error() {
        let m = metrics();
        m.observe(&run(
            1,
            &[(0, RunResult::Pass, true), (1, RunResult::Pass, true)],
        ));
        let t = text(&m);
        let kernels = lines(&t, "gpugate_kernel_median_seconds").len();
        assert!(kernels >= 2 && kernels.is_multiple_of(2), "{t}");
        assert_eq!(
            value(&t, "gpugate_node_verdict", &[("verdict", "pass")]),
            Some(1.0)
        );
        // GPU 1 cannot be measured: its kernel series go, GPU 0's stay, the node is an error.
        m.observe(&run(
            2,
            &[(0, RunResult::Pass, true), (1, RunResult::Error, false)],
        ));
        let t = text(&m);
        let medians = series(&t, "gpugate_kernel_median_seconds");
        assert_eq!(medians.len(), kernels / 2, "{t}");
        assert!(medians.iter().all(|(l, _)| l["gpu"] == "0"), "{t}");
        assert_eq!(
            value(&t, "gpugate_node_verdict", &[("verdict", "error")]),
            Some(1.0)
        );
        let error = [("gpu", "1"), ("verdict", "error")];
        assert_eq!(value(&t, "gpugate_gpu_verdict", &error), Some(1.0));
    }

    #[test]
    fn consecutive_results_count_per_gpu_and_survive_a_restart() {
        let streak = |t: &str, gpu: &str, result: &str| {
            let n = value(
                t,
                "gpugate_gpu_consecutive_runs",
                &[("gpu", gpu), ("result", result)],
            );
            n.map(|n| n.to_string()).unwrap_or_default()
        };
        let m = metrics();
        let mut history = History::open(None, super::super::history::Retention::runs(10)).unwrap();
        for id in 1..=3 {
            let record = run(
                id,
                &[
                    (0, RunResult::Inconclusive, true),
                    (1, RunResult::Pass, true),
                ],
            );
            m.observe(&record);
            history.push(record).unwrap();
        }
        let t = text(&m);
        assert_eq!(streak(&t, "0", "inconclusive"), "3", "{t}");
        assert_eq!(streak(&t, "0", "pass"), "0", "{t}");
        assert_eq!(streak(&t, "1", "pass"), "3", "{t}");
        // A new process replays the kept history.
        let again = metrics();
        again.init(&history);
        let t = text(&again);
        assert_eq!(streak(&t, "0", "inconclusive"), "3");
        let last = history.latest().unwrap().finished_at.timestamp_millis() as f64 / 1e3;
        assert_eq!(
            value(&t, "gpugate_last_run_timestamp_seconds", &[]),
            Some(last)
        );
        assert_eq!(
            value(&t, "gpugate_last_success_timestamp_seconds", &[]),
            Some(0.0),
            "no pass kept"
        );
        // A different result starts a new streak.
        m.observe(&run(
            4,
            &[(0, RunResult::Pass, true), (1, RunResult::Pass, true)],
        ));
        let t = text(&m);
        assert_eq!(streak(&t, "0", "inconclusive"), "0", "{t}");
        assert_eq!(streak(&t, "0", "pass"), "1", "{t}");
        // Runs that measured no GPU (a worker panic) count as errors against every GPU known.
        for id in 5..=7 {
            m.observe(&RunRecord::failed(
                id,
                super::super::history::Trigger::Interval,
                chrono::Utc::now(),
                RunResult::Error,
                "panicked".into(),
            ));
        }
        let t = text(&m);
        assert_eq!(streak(&t, "0", "error"), "3", "{t}");
        assert_eq!(streak(&t, "1", "error"), "3", "{t}");
        // A GPU no longer in the run has no streak series left.
        m.observe(&run(8, &[(0, RunResult::Pass, true)]));
        let t = text(&m);
        assert_eq!(streak(&t, "1", "error"), "", "{t}");
        assert_eq!(streak(&t, "0", "pass"), "1", "{t}");
    }

    #[test]
    fn every_result_has_a_series_from_the_start() {
        let m = metrics();
        m.init(&History::open(None, super::super::history::Retention::runs(1)).unwrap());
        let t = text(&m);
        for r in RunResult::ALL {
            let having = [("Hostname", "n"), ("result", r.as_str())];
            assert_eq!(value(&t, "gpugate_runs_total", &having), Some(0.0), "{t}");
        }
    }
}
