//! Prometheus metrics, named per Prometheus conventions: prefix `gpugate_`, base units, `_total`
//! counters, `_ratio` fractions. Labels stay bounded — `kernel` (a suite's instance keys),
//! `verdict`, `reason` (why a kernel was inconclusive), `result` — and every series carries `hostname` (from `NODE_NAME`) so it joins with
//! dcgm-exporter's. Run ids and shas never become labels.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, Opts, Registry, TextEncoder,
};

use super::history::{RunRecord, RunResult};
use crate::compare::{Reason, Verdict};
use crate::device::Fingerprint;
use crate::workload::Unit;

const VERDICTS: [Verdict; 5] = [
    Verdict::Pass,
    Verdict::Improvement,
    Verdict::Inconclusive,
    Verdict::Regression,
    Verdict::WrongResult,
];

pub struct Metrics {
    registry: Registry,
    device_info: GaugeVec,
    /// No labels of its own: one series once the device is known, none before (or without an
    /// adapter), so an alert on 0 only fires where a baseline is known to be missing.
    baseline_present: GaugeVec,
    median_seconds: GaugeVec,
    /// Rate per second in base units, one family per unit: bytes, FLOP, edges.
    throughput: [GaugeVec; 3],
    baseline_ratio: GaugeVec,
    detectable_ratio: GaugeVec,
    verdict: GaugeVec,
    inconclusive: GaugeVec,
    driver_changed: IntGauge,
    throttled: GaugeVec,
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
    rendered: std::sync::Mutex<Option<std::sync::Arc<Vec<u8>>>>,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique and valid");
    metric
}

impl Metrics {
    pub fn new(hostname: &str) -> Metrics {
        let labels = [("hostname".to_string(), hostname.to_string())].into();
        let registry = Registry::new_custom(None, Some(labels)).expect("valid const labels");
        let r = &registry;
        let build_info = register(
            r,
            GaugeVec::new(
                Opts::new("gpugate_build_info", "gpugate build, always 1"),
                &["version"],
            )
            .unwrap(),
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1.0);
        let sample_buckets = prometheus::exponential_buckets(1e-6, 4.0, 13).unwrap();
        let run_buckets = prometheus::exponential_buckets(1.0, 2.0, 12).unwrap();
        Metrics {
            device_info: register(
                r,
                GaugeVec::new(
                    Opts::new("gpugate_device_info", "the adapter validated, always 1"),
                    &["adapter", "driver", "backend", "device_key"],
                )
                .unwrap(),
            ),
            baseline_present: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "gpugate_baseline_present",
                        "1 when this device's baseline loaded, 0 when it has none or it cannot be loaded",
                    ),
                    &[],
                )
                .unwrap(),
            ),
            median_seconds: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "gpugate_kernel_median_seconds",
                        "latest run's median time per iteration",
                    ),
                    &["kernel"],
                )
                .unwrap(),
            ),
            throughput: [
                ("bytes", "bytes moved"),
                ("flops", "floating-point operations"),
                ("edges", "graph edges traversed"),
            ]
            .map(|(unit, what)| {
                register(
                    r,
                    GaugeVec::new(
                        Opts::new(
                            format!("gpugate_kernel_throughput_{unit}_per_second"),
                            format!("latest run's {what} per second"),
                        ),
                        &["kernel"],
                    )
                    .unwrap(),
                )
            }),
            baseline_ratio: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "gpugate_kernel_baseline_ratio",
                        "latest run's time over the baseline's (above 1 is slower)",
                    ),
                    &["kernel"],
                )
                .unwrap(),
            ),
            detectable_ratio: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "gpugate_kernel_detectable_ratio",
                        "smallest slowdown (time ratio) the latest run's check detects with 95 % power",
                    ),
                    &["kernel"],
                )
                .unwrap(),
            ),
            verdict: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "gpugate_kernel_verdict",
                        "1 for the latest run's verdict of each kernel, 0 for the others",
                    ),
                    &["kernel", "verdict"],
                )
                .unwrap(),
            ),
            inconclusive: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "gpugate_kernel_inconclusive",
                        "1 for why the latest run left a kernel inconclusive, 0 for the other reasons",
                    ),
                    &["kernel", "reason"],
                )
                .unwrap(),
            ),
            throttled: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "gpugate_kernel_throttled",
                        "1 when the latest run of a kernel was throttled unlike its baseline (NVML)",
                    ),
                    &["kernel"],
                )
                .unwrap(),
            ),
            driver_changed: register(
                r,
                IntGauge::new(
                    "gpugate_driver_changed",
                    "1 when the latest run's driver differs from its baseline's",
                )
                .unwrap(),
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
                    "when the latest passing run finished (Unix time)",
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
                    &["kernel"],
                )
                .unwrap(),
            ),
            registry,
            rendered: std::sync::Mutex::new(None),
        }
    }

    fn invalidate(&self) {
        *self.rendered.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The adapter this process validates: one `gpugate_device_info` series, never a stale one
    /// beside it.
    pub fn set_device(&self, fp: &Fingerprint) {
        self.device_info.reset();
        self.device_info
            .with_label_values(&[
                fp.name.as_str(),
                fp.driver_string().as_str(),
                fp.backend.as_str(),
                fp.device_key().as_str(),
            ])
            .set(1.0);
        self.invalidate();
    }

    /// No adapter: no device series, and no baseline series (it would be about no device).
    pub fn clear_device(&self) {
        self.device_info.reset();
        self.baseline_present.reset();
        self.invalidate();
    }

    pub fn set_baseline_present(&self, present: bool) {
        self.baseline_present
            .with_label_values(&[] as &[&str])
            .set(f64::from(u8::from(present)));
        self.invalidate();
    }

    pub fn set_in_progress(&self, running: bool) {
        self.run_in_progress.set(i64::from(running));
        self.invalidate();
    }

    /// Zero every counter's result label so the series exist before the first run.
    pub fn init_results(&self) {
        for r in RunResult::ALL {
            self.runs_total.with_label_values(&[r.as_str()]);
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
        let Some(report) = &run.report else { return };
        for row in &report.rows {
            let key = row.key.as_str();
            self.median_seconds
                .with_label_values(&[key])
                .set(row.median_s);
            let family = match row.unit {
                Unit::Bandwidth => 0,
                Unit::Flops => 1,
                Unit::Teps => 2,
            };
            // Reports keep rates in G-units per second; metrics use base units.
            self.throughput[family]
                .with_label_values(&[key])
                .set(row.rate * 1e9);
            if let Some(c) = &row.comparison {
                self.baseline_ratio.with_label_values(&[key]).set(c.ratio);
            }
            self.throttled
                .with_label_values(&[key])
                .set(f64::from(u8::from(row.throttled.is_some())));
            if let Some(r) = row.detectable_ratio {
                self.detectable_ratio.with_label_values(&[key]).set(r);
            }
            for v in VERDICTS {
                self.verdict
                    .with_label_values(&[key, v.as_str()])
                    .set(f64::from(u8::from(v == row.verdict)));
            }
            let why = row
                .comparison
                .as_ref()
                .and_then(|c| c.inconclusive)
                .filter(|_| row.verdict == Verdict::Inconclusive);
            for reason in Reason::ALL {
                self.inconclusive
                    .with_label_values(&[key, reason.as_str()])
                    .set(f64::from(u8::from(why == Some(reason))));
            }
        }
        self.driver_changed
            .set(i64::from(report.driver_change.is_some()));
        for run in &report.runs {
            for k in &run.kernels {
                let h = self.sample_duration.with_label_values(&[k.key.as_str()]);
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
