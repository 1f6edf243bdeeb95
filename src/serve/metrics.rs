//! Prometheus metrics, named per Prometheus conventions: prefix `gpugate_`, base units, `_total`
//! counters, `_ratio` fractions. Labels stay bounded — `kernel` (a suite's instance keys),
//! `verdict`, `result` — and every series carries `hostname` (from `NODE_NAME`) so it joins with
//! dcgm-exporter's. Run ids and shas never become labels.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

use super::history::{RunRecord, RunResult};
use crate::compare::Verdict;
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
    median_seconds: GaugeVec,
    /// Rate per second in base units, one family per unit: bytes, FLOP, edges.
    throughput: [GaugeVec; 3],
    baseline_ratio: GaugeVec,
    verdict: GaugeVec,
    runs_total: IntCounterVec,
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
            runs_total: register(
                r,
                IntCounterVec::new(
                    Opts::new("gpugate_runs_total", "finished validation runs by result"),
                    &["result"],
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

    pub fn set_device(&self, fp: &Fingerprint) {
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
        self.set_device(&report.fingerprint);
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
            for v in VERDICTS {
                self.verdict
                    .with_label_values(&[key, v.as_str()])
                    .set(f64::from(u8::from(v == row.verdict)));
            }
        }
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
