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
    labels.iter().map(String::as_str).chain(extra.iter().copied()).collect()
}

pub struct Metrics {
    registry: Registry,
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
    run_duration: Histogram,
    run_in_progress: IntGauge,
    last_run: Gauge,
    last_success: Gauge,
    sample_duration: HistogramVec,
    /// The last rendered exposition: series change only when a run starts or ends, so scrapes
    /// between those serve these bytes instead of re-encoding every histogram.
    rendered: Mutex<Option<std::sync::Arc<Vec<u8>>>>,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique and valid");
    metric
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    register(r, GaugeVec::new(Opts::new(name, help), labels).unwrap())
}

impl Metrics {
    /// The registry of a pod on node `hostname`, validating every `--interval`.
    pub fn new(hostname: &str, interval: std::time::Duration) -> Metrics {
        let labels = [("Hostname".to_string(), hostname.to_string())].into();
        let registry = Registry::new_custom(None, Some(labels)).expect("valid const labels");
        let r = &registry;
        gauge_vec(r, "gpugate_build_info", "gpugate build, always 1", &["version"])
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
            registry,
            rendered: Mutex::new(None),
        }
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
        self.gpus.set(i64::try_from(nodes.len()).unwrap_or(i64::MAX));
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
    }

    /// A run that ended without being measured here (interrupted by the last process's end).
    pub fn count_result(&self, result: RunResult) {
        self.runs_total.with_label_values(&[result.as_str()]).inc();
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

    fn count_streaks(&self, run: &RunRecord) {
        let mut streaks = self.streaks.lock().unwrap_or_else(|e| e.into_inner());
        for g in &run.gpus {
            let streak = streaks.entry(gpu_labels(&g.gpu)).or_insert((g.result, 0));
            *streak = match *streak {
                (last, n) if last == g.result => (last, n + 1),
                _ => (g.result, 1),
            };
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

    #[test]
    fn one_device_series_and_a_baseline_series_only_once_known() {
        let m = Metrics::new("n");
        let t = text(&m);
        assert!(lines(&t, "gpugate_device_info").is_empty(), "{t}");
        assert!(lines(&t, "gpugate_baseline_present").is_empty(), "{t}");

        m.set_device(&fingerprint("GPU A", "550"));
        m.set_baseline_present(false);
        m.set_device(&fingerprint("GPU A", "560"));
        let t = text(&m);
        let device = lines(&t, "gpugate_device_info");
        assert_eq!(device.len(), 1, "{t}");
        assert!(device[0].contains("driver=\"560\""), "{t}");
        assert_eq!(
            lines(&t, "gpugate_baseline_present"),
            ["gpugate_baseline_present{hostname=\"n\"} 0"]
        );
        m.set_baseline_present(true);
        assert_eq!(
            lines(&text(&m), "gpugate_baseline_present"),
            ["gpugate_baseline_present{hostname=\"n\"} 1"]
        );

        m.clear_device();
        let t = text(&m);
        assert!(lines(&t, "gpugate_device_info").is_empty(), "{t}");
        assert!(lines(&t, "gpugate_baseline_present").is_empty(), "{t}");
    }

    #[test]
    fn every_result_has_a_series_from_the_start() {
        let m = Metrics::new("n");
        m.init_results();
        let t = text(&m);
        for r in RunResult::ALL {
            let line = format!(
                "gpugate_runs_total{{hostname=\"n\",result=\"{}\"}} 0",
                r.as_str()
            );
            let alt = format!(
                "gpugate_runs_total{{result=\"{}\",hostname=\"n\"}} 0",
                r.as_str()
            );
            assert!(t.lines().any(|l| l == line || l == alt), "{line}\n{t}");
        }
    }
}
