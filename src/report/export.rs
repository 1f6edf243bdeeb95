//! Exports for other tools: Bencher Metric Format and CSV.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

use super::{Report, Reporter, Row};
use crate::stats::Summary;

/// Bencher Metric Format (<https://bencher.dev/docs/reference/bencher-metric-format/>): one
/// benchmark per kernel instance, named by its key, with Bencher's two built-in measures in
/// their built-in units:
///
/// - `latency`, nanoseconds per iteration: the row's median;
/// - `throughput`, operations per second, an operation being what the kernel's unit counts (a
///   byte for GB/s kernels, a FLOP for GFLOP/s, a traversed edge for GTEPS): the row's rate
///   × 10⁹. Bencher's Throughput measure is in ops/s, so the built-in measure keeps its unit
///   rather than showing GB/s under an ops/s axis, and a project needs no custom measures.
///
/// Bounds: the smallest lower and largest upper end among the deciding runs' 95 % intervals of
/// their medians (order statistics). One run's interval is within-process only and misses the
/// process-to-process spread that a tracker's history varies by; this envelope covers the runs
/// and always contains the value (the geometric mean of the same runs' medians). Throughput's
/// bounds are latency's, inverted.
///
/// Rows left out: a wrong result (its timing measured something else) and a row without a
/// positive finite median. An error report writes `{}`: an empty object is valid BMF, and the
/// file exists for a pipeline step that uploads it; the exit code carries the failure.
pub struct Bmf;

/// One CSV row per kernel (RFC 4180, header first); cells that do not apply are empty. The
/// columns are [`CSV_COLUMNS`].
pub struct Csv;

#[derive(Serialize)]
struct Metric {
    value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    lower_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upper_value: Option<f64>,
}

#[derive(Serialize)]
struct Measures {
    latency: Metric,
    #[serde(skip_serializing_if = "Option::is_none")]
    throughput: Option<Metric>,
}

impl Reporter for Bmf {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        let benchmarks: BTreeMap<&str, Measures> = report
            .rows
            .iter()
            .filter_map(|row| Some((row.key.as_str(), measures(report, row)?)))
            .collect();
        serde_json::to_writer_pretty(&mut *out, &benchmarks)?;
        writeln!(out)
    }
}

fn measures(report: &Report, row: &Row) -> Option<Measures> {
    let median = row.median_s;
    if !(row.verification.ok && median.is_finite() && median > 0.0) {
        return None;
    }
    let runs = deciding_summaries(report, &row.key);
    let low = runs
        .iter()
        .map(|s| s.ci_low_s)
        .fold(f64::INFINITY, f64::min);
    let high = runs.iter().map(|s| s.ci_high_s).fold(0.0, f64::max);
    // An envelope of positive finite ends, widened to hold the value whatever the runs said.
    let bounds = (low.is_finite() && low > 0.0 && high.is_finite())
        .then(|| (low.min(median), high.max(median)));
    let latency = Metric {
        value: median * 1e9,
        lower_value: bounds.map(|(low, _)| low * 1e9),
        upper_value: bounds.map(|(_, high)| high * 1e9),
    };
    let ops = row.rate * 1e9;
    let throughput = (ops.is_finite() && ops >= 0.0).then(|| Metric {
        value: ops,
        lower_value: bounds.map(|(_, high)| ops * median / high),
        upper_value: bounds.map(|(low, _)| ops * median / low),
    });
    Some(Measures {
        latency,
        throughput,
    })
}

/// The summaries of the runs a row's numbers come from: a suspect re-measured in the
/// confirmation round shows that round's runs (see `gate::check`), every other row round 1's.
fn deciding_summaries<'a>(report: &'a Report, key: &str) -> Vec<&'a Summary> {
    let of = |runs: &'a [crate::runner::RunResult]| -> Vec<&'a Summary> {
        runs.iter()
            .flat_map(|r| &r.kernels)
            .filter(|k| k.key == key)
            .map(|k| &k.summary)
            .collect()
    };
    let confirmed = of(&report.confirmation_runs);
    if confirmed.is_empty() {
        of(&report.runs)
    } else {
        confirmed
    }
}

/// The CSV header. Times in seconds per iteration; `unit` is the unit of `rate` (GB/s,
/// GFLOP/s, GTEPS); `pct_of_peak` and `iqr_rel` are fractions; `baseline_s` to `threshold` are
/// the check's comparison (ratio = current / baseline, above 1 slower), `detectable_ratio` the
/// smallest slowdown the check detects with 95 % power.
pub const CSV_COLUMNS: [&str; 17] = [
    "key",
    "kernel",
    "unit",
    "median_s",
    "p95_s",
    "iqr_rel",
    "rate",
    "pct_of_peak",
    "intensity",
    "verdict",
    "inconclusive_reason",
    "baseline_s",
    "ratio",
    "ratio_low",
    "ratio_high",
    "threshold",
    "detectable_ratio",
];

impl Reporter for Csv {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        let mut csv = csv::Writer::from_writer(out);
        csv.write_record(CSV_COLUMNS)?;
        for row in &report.rows {
            let c = row.comparison.as_ref();
            let from_comparison = |field: fn(&crate::compare::Comparison) -> f64| {
                c.map_or_else(String::new, |c| number(field(c)))
            };
            let record: [String; CSV_COLUMNS.len()] = [
                row.key.clone(),
                row.kernel.clone(),
                row.unit.label().into(),
                number(row.median_s),
                number(row.p95_s),
                number(row.iqr_rel),
                number(row.rate),
                row.pct_of_peak.map_or_else(String::new, number),
                number(row.intensity),
                row.verdict.as_str().into(),
                c.and_then(|c| c.inconclusive)
                    .map_or("", |r| r.as_str())
                    .into(),
                from_comparison(|c| c.baseline_s),
                from_comparison(|c| c.ratio),
                from_comparison(|c| c.ratio_low),
                from_comparison(|c| c.ratio_high),
                from_comparison(|c| c.threshold),
                row.detectable_ratio.map_or_else(String::new, number),
            ];
            csv.write_record(&record)?;
        }
        csv.flush()
    }
}

/// A number as Rust writes it (shortest text that reads back to the same f64, no exponent);
/// empty when it is not finite, as the JSON report writes null.
fn number(v: f64) -> String {
    if v.is_finite() {
        v.to_string()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::error::Error;

    /// A run report of one copy row measured in `runs` runs, each run's samples given.
    fn report(runs: &[&[f64]], ok: bool) -> Report {
        let fingerprint = json!({
            "name": "t", "vendor_id": 0, "device_id": 0, "device_type": "Cpu", "driver": "",
            "driver_info": "", "backend": "vulkan"
        });
        let verification =
            json!({"ok": ok, "checked": 1, "max_error": 0.0, "tolerance": 0.0, "detail": ""});
        let summaries: Vec<Summary> = runs.iter().map(|s| crate::stats::summarize(s)).collect();
        let run = |summary: &Summary| {
            json!({
                "fingerprint": fingerprint, "device_key": "t-vulkan", "gpugate_version": "0",
                "seed": 1, "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:01Z",
                "kernels": [{
                    "kernel": "copy", "params": {"n": 4}, "key": "copy[n=4]", "unit": "bandwidth",
                    "work": {"bytes": 1_000_000_000u64, "flops": 0}, "verification": verification,
                    "measurement": {"timing": "host", "batch": 1, "slots": 1, "repeat": 1,
                        "warmup": {"samples": 0, "seconds": 0.0, "steady": true},
                        "stop": "time_cap", "samples_s": []},
                    "summary": summary,
                }]
            })
        };
        let medians = crate::compare::RunMedians::from_summaries(&summaries);
        let median_s = medians.center_s();
        serde_json::from_value(json!({
            "schema_version": 1, "command": "run", "device_key": "t-vulkan",
            "fingerprint": fingerprint, "notes": [],
            "rows": [{
                "key": "copy[n=4]", "kernel": "copy", "params": {"n": 4}, "unit": "bandwidth",
                "median_s": median_s, "p95_s": 0.0, "rate": 1.0 / median_s, "iqr_rel": 0.0,
                "timing": "host", "stop": "time_cap", "verification": verification,
                "verdict": if ok { "pass" } else { "wrong_result" },
            }],
            "outcome": {"verdict": "pass", "exit_code": 0, "message": ""},
            "runs": summaries.iter().map(run).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    fn written(reporter: &dyn Reporter, report: &Report) -> String {
        let mut out = vec![];
        reporter.write(report, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn bmf(report: &Report) -> Value {
        serde_json::from_str(&written(&Bmf, report)).unwrap()
    }

    #[test]
    fn bmf_latency_is_the_median_in_ns_within_every_runs_interval() {
        let r = report(&[&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]], true);
        let m = &bmf(&r)["copy[n=4]"];
        let median = r.rows[0].median_s;
        assert_eq!(m["latency"]["value"], median * 1e9);
        // The envelope of both runs' intervals: the first run's low end, the second's high.
        assert_eq!(m["latency"]["lower_value"], 1.0e9);
        assert_eq!(m["latency"]["upper_value"], 6.0e9);
        // 1 GB per iteration: bytes per second, its bounds the latency's inverted.
        let t = &m["throughput"];
        assert!((t["value"].as_f64().unwrap() - 1e9 / median).abs() < 1e-3);
        assert!((t["lower_value"].as_f64().unwrap() - 1e9 / 6.0).abs() < 1e-3);
        assert!((t["upper_value"].as_f64().unwrap() - 1e9).abs() < 1e-3);
    }

    #[test]
    fn bmf_leaves_out_wrong_results_and_error_reports_are_empty_objects() {
        assert_eq!(bmf(&report(&[&[1.0, 2.0, 3.0]], false)), json!({}));
        let failed = Report::from_error("check", &Error::NoAdapter("none".into()));
        assert_eq!(written(&Bmf, &failed).trim(), "{}");
    }

    #[test]
    fn bmf_bounds_come_from_the_confirmation_round_when_it_measured_the_row() {
        let mut r = report(&[&[1.0, 2.0, 3.0]], true);
        r.confirmation_runs = report(&[&[0.5, 2.0, 9.0]], true).runs;
        let m = &bmf(&r)["copy[n=4]"]["latency"];
        assert_eq!(
            (&m["lower_value"], &m["upper_value"]),
            (&json!(0.5e9), &json!(9.0e9))
        );
    }

    #[test]
    fn csv_has_the_header_then_one_row_per_kernel_with_empty_cells_where_nothing_applies() {
        let mut r = report(&[&[1.0, 2.0, 3.0]], true);
        r.rows[0].key = "odd, \"key\"".into();
        let text = written(&Csv, &r);
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(reader.headers().unwrap(), CSV_COLUMNS.as_slice());
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), 1);
        let cell = |c: &str| &records[0][CSV_COLUMNS.iter().position(|h| *h == c).unwrap()];
        assert_eq!(cell("key"), "odd, \"key\"");
        assert_eq!(cell("unit"), "GB/s");
        assert_eq!(cell("median_s"), "2");
        assert_eq!(cell("verdict"), "pass");
        for empty in [
            "pct_of_peak",
            "inconclusive_reason",
            "ratio",
            "threshold",
            "detectable_ratio",
        ] {
            assert_eq!(cell(empty), "", "{empty}");
        }
        let failed = Report::from_error("run", &Error::NoAdapter("none".into()));
        assert_eq!(written(&Csv, &failed), CSV_COLUMNS.join(",") + "\n");
    }

    /// A kernel whose output was NaN has a NaN `max_error`: the JSON report writes null and
    /// reads it back (as `compare` and `report` read saved reports).
    #[test]
    fn a_nan_max_error_round_trips_through_the_json_report() {
        let mut r = report(&[&[1.0, 2.0, 3.0]], false);
        r.rows[0].verification.max_error = f64::NAN;
        let text = written(&super::super::Json, &r);
        assert!(text.contains("\"max_error\": null"), "{text}");
        let back: Report = serde_json::from_str(&text).unwrap();
        assert!(back.rows[0].verification.max_error.is_nan());
    }

    #[test]
    fn a_nan_comparison_number_is_an_empty_cell() {
        assert_eq!(number(f64::NAN), "");
        assert_eq!(number(f64::INFINITY), "");
        assert_eq!(number(0.1), "0.1");
    }
}
