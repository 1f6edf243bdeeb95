//! The HTML report: one self-contained page with SVG plots, from one or more reports.
//!
//! The page loads nothing: its CSS is inline, it has no script, and a Content-Security-Policy
//! meta forbids every network load, so it can be archived as a CI artifact and opened offline.
//! It is written with maud, whose templates escape every interpolated value (a kernel key such
//! as `attention[batch=8,causal=0,heads=16,seq=4096]`, a message, a file name).
//!
//! The plots are SVG written by hand through the same templates, not by plotters: plotters'
//! text needs a font backend (font-kit and fontconfig, or an embedded font) for what the
//! browser lays out itself here, and the four chart kinds are simple. The numeric parts (scales,
//! ticks, formats) are pure functions in [`plot`], and every coordinate goes through
//! [`plot::num`], so a NaN in a report never reaches an attribute. Each plot has a stable
//! class (`svg.distribution[data-kernel=…]`, `svg.roofline`, `svg.history`, `svg.sweep`) and
//! `<title>` tooltips on its points.

mod plot;

use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};

use super::{Ceiling, Report, Row};
use crate::compare::Verdict;
use crate::workload::Unit;
use plot::{extent, num, pad, percent, polyline, seconds, sig3, Frame, Scale};

/// No network, no script: inline styles only (the page's `<style>` and SVG attributes). Also
/// sent as a header where the page is served.
pub const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'";

/// At most this many raw samples of one run are drawn as dots (evenly spread over the run).
const MAX_DOTS: usize = 300;

/// Series colours, in order of a kernel's first appearance.
const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1100px}
h1{font-size:1.5em}h2{font-size:1.25em;margin-top:1.6em}h3{font-size:1.05em;margin:1.2em 0 .3em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right}
td:first-child,th:first-child,td.text{text-align:left}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:600}dd{margin:0}
.verdict-pass{color:#2e7d32}.verdict-improvement{color:#1565c0}.verdict-inconclusive{color:#b26a00}
.verdict-regression,.verdict-wrong_result{color:#c62828;font-weight:600}
.error{border:2px solid #c62828;padding:.5em 1em;background:#fdecea}
.notice{border-left:4px solid #b26a00;padding:.3em .8em;background:#fff8e1}
.note{color:#555;font-size:.9em}
figure{margin:.5em 0 1.5em}figcaption{color:#555;font-size:.85em;max-width:720px}
svg{background:#fff;border:1px solid #eee;max-width:100%;height:auto}
svg text{font-size:11px;fill:#333}
";

/// The page for `reports`, oldest first (several reports make a history).
pub fn page(reports: &[Report]) -> String {
    render("gpugate report", &[], &reports.iter().collect::<Vec<_>>())
}

/// The page titled `title`, with `notices` above the reports (serve says there what its history
/// holds): the newest report in full, and a history chart over all of them when there are two
/// or more with rows.
pub fn render(title: &str, notices: &[String], reports: &[&Report]) -> String {
    let with_rows: Vec<&Report> = reports
        .iter()
        .copied()
        .filter(|r| !r.rows.is_empty())
        .collect();
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="Content-Security-Policy" content=(CSP);
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                h1 { (title) }
                @for notice in notices {
                    p.notice { (notice) }
                }
                @match reports.last() {
                    None => p.empty { "No report to show." },
                    Some(latest) => (report_section(latest, reports.len() > 1)),
                }
                @if with_rows.len() >= 2 {
                    (history_section(&with_rows))
                }
                @if reports.len() > 1 {
                    (reports_list(reports))
                }
            }
        }
    };
    markup.into_string()
}

/// One report in full: header, kernel table and its plots (none for an error report).
fn report_section(report: &Report, several: bool) -> Markup {
    let device = report.fingerprint.as_ref();
    html! {
        section.report {
            h2 {
                @if several { "Latest report: " }
                "gpugate " (report.command)
                @if let Some(fp) = device { " on " (fp.name) }
            }
            dl.header {
                dt { "Command" } dd { (report.command) }
                dt { "Device" } dd {
                    @match (device, &report.device_key) {
                        (Some(fp), Some(key)) => { (fp.name) " (" (fp.backend) ", " (fp.device_type) ") — key " code { (key) } }
                        (_, Some(key)) => code { (key) },
                        _ => "none (no adapter was chosen)",
                    }
                }
                @if let Some(fp) = device {
                    dt { "Driver" } dd { (fp.driver) @if !fp.driver_info.is_empty() { " " (fp.driver_info) } }
                }
                @if let Some(mode) = report.shader_checks {
                    dt { "Shaders" } dd { (mode.name()) }
                }
                @if let Some(file) = &report.baseline_file {
                    dt { "Baseline" } dd { code { (file) } }
                }
                @if let Some(started) = started_at(report) {
                    dt { "Started" } dd { (started.format("%Y-%m-%d %H:%M:%S UTC")) }
                }
                dt { "Outcome" } dd {
                    span class=(verdict_class(report.outcome.verdict)) { (report.outcome.verdict.as_str()) }
                    " — exit " (report.outcome.exit_code) " — " (report.outcome.message)
                }
                @if let Some(change) = &report.driver_change {
                    dt { "Driver change" } dd { (change.baseline) " → " (change.current) }
                }
            }
            @if !report.notes.is_empty() {
                ul.notes { @for note in &report.notes { li { (note) } } }
            }
            @if let Some(error) = &report.error {
                div.error {
                    strong { "Error (" (error.kind) "): " } (error.message)
                    @if let Some(file) = &error.file { br; "File: " code { (file) } }
                    @if let Some(field) = &error.field { br; "Field: " code { (field) } }
                }
            }
            @if !report.rows.is_empty() {
                (kernel_table(report))
            }
            @if !report.unsupported.is_empty() {
                h3 { "Unsupported on this adapter" }
                ul { @for u in &report.unsupported { li { code { (u.key) } ": " (u.reason) } } }
            }
            @if report.error.is_none() && !report.rows.is_empty() {
                @if let Some(sweep) = &report.sweep {
                    (sweep_section(report, sweep))
                }
                h3 { "Samples per kernel: now vs baseline" }
                @for row in &report.rows {
                    (distribution(report, row))
                }
                (roofline(report))
            }
        }
    }
}

fn started_at(report: &Report) -> Option<DateTime<Utc>> {
    report.runs.first().map(|r| r.started_at)
}

fn verdict_class(v: Verdict) -> String {
    format!("verdict-{}", v.as_str())
}

fn verdict_color(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "#2e7d32",
        Verdict::Improvement => "#1565c0",
        Verdict::Inconclusive => "#b26a00",
        Verdict::Regression => "#c62828",
        Verdict::WrongResult => "#6a1b9a",
    }
}

/// Why a row has its verdict: the comparison's reason, or the verification's detail.
fn verdict_reason(row: &Row) -> String {
    if !row.verification.ok {
        return format!("wrong result: {}", row.verification.detail);
    }
    match &row.comparison {
        Some(c) => c.reason.clone(),
        None if !row.steady => "warm-up did not settle".into(),
        None => String::new(),
    }
}

fn kernel_table(report: &Report) -> Markup {
    let compared = report.rows.iter().any(|r| r.comparison.is_some());
    html! {
        h3 { "Kernels" }
        table.kernels {
            thead { tr {
                th { "Kernel" } th { "Median" } th { "p95" } th { "IQR" } th { "Rate" } th { "% of peak" }
                @if compared { th { "Ratio" } th { "Interval" } }
                th { "Verdict" }
            } }
            tbody {
                @for row in &report.rows {
                    tr data-kernel=(row.key) {
                        td { code { (row.key) } }
                        td { (seconds(row.median_s)) }
                        td { (seconds(row.p95_s)) }
                        td { (percent(row.iqr_rel)) }
                        td { (sig3(row.rate)) " " (row.unit.label()) }
                        td { (row.pct_of_peak.map_or("–".into(), percent)) }
                        @if compared {
                            @match &row.comparison {
                                Some(c) => {
                                    td { "×" (sig3(c.ratio)) }
                                    td { "×" (sig3(c.ratio_low)) " – ×" (sig3(c.ratio_high)) }
                                }
                                None => { td { "–" } td { "–" } }
                            }
                        }
                        td.text {
                            span class=(verdict_class(row.verdict)) { (row.verdict.as_str()) }
                            @let why = verdict_reason(row);
                            @if !why.is_empty() { br; span.note { (why) } }
                        }
                    }
                }
            }
        }
    }
}

/// One run's samples of a kernel, as drawn in its band.
struct Band {
    label: String,
    samples: Vec<f64>,
    median: f64,
    p05: f64,
    p25: f64,
    p75: f64,
    p95: f64,
    confirmation: bool,
}

fn bands(report: &Report, key: &str) -> Vec<Band> {
    let round = |runs: &[crate::runner::RunResult], name: &str, confirmation: bool| {
        runs.iter()
            .enumerate()
            .filter_map(|(i, run)| {
                let k = run.kernels.iter().find(|k| k.key == key)?;
                Some(Band {
                    label: format!("{name} {}", i + 1),
                    samples: k.measurement.samples_s.clone(),
                    median: k.summary.median_s,
                    p05: k.summary.p05_s,
                    p25: k.summary.p25_s,
                    p75: k.summary.p75_s,
                    p95: k.summary.p95_s,
                    confirmation,
                })
            })
            .collect::<Vec<_>>()
    };
    let mut all = round(&report.runs, "run", false);
    all.extend(round(&report.confirmation_runs, "confirm", true));
    all
}

/// Per kernel: each current run's raw samples (a box and a strip per run), then the run medians
/// now against the baseline's, on one linear time axis, with the threshold band.
fn distribution(report: &Report, row: &Row) -> Markup {
    const BAND: f64 = 26.0;
    let bands = bands(report, &row.key);
    let now_medians: Vec<(f64, bool)> = bands.iter().map(|b| (b.median, b.confirmation)).collect();
    let baseline = &row.baseline_run_medians_s;
    let lanes = bands.len() + 1 + usize::from(!baseline.is_empty());
    let frame = Frame {
        width: 760.0,
        height: 56.0 + lanes as f64 * BAND,
        left: 150.0,
        right: 20.0,
        top: 12.0,
        bottom: 44.0,
    };
    let center = row.comparison.as_ref().map(|c| (c.baseline_s, c.threshold));
    let values = bands
        .iter()
        .flat_map(|b| b.samples.iter().copied().chain([b.p05, b.p95]))
        .chain(baseline.iter().copied())
        .chain(center.map(|c| c.0));
    let domain = extent(values, true).map(|d| pad(d, 0.05));
    let total: usize = bands.iter().map(|b| b.samples.len()).sum();
    html! {
        figure {
            svg.distribution data-kernel=(row.key) xmlns="http://www.w3.org/2000/svg"
                viewBox=(frame.view_box()) width=(num(frame.width)) height=(num(frame.height))
                role="img" aria-label={ "samples of " (row.key) } {
                title { "Samples of " (row.key) }
                @match domain {
                    None => text x=(num(frame.left)) y="30" { "no timing recorded for this kernel" },
                    Some(domain) => {
                        @let x = Scale::linear(domain, frame.x_range());
                        @let lane_y = |i: usize| frame.top + (i as f64 + 0.5) * BAND;
                        @let (y_lo, y_hi) = (frame.top, frame.height - frame.bottom);
                        @if let Some((base, threshold)) = center {
                            @if x.accepts(base) && base > 0.0 {
                                @let hi = (base * (1.0 + threshold)).min(domain.1);
                                @if hi > base {
                                    rect.threshold x=(num(x.map(base))) y=(num(y_lo))
                                        width=(num(x.map(hi) - x.map(base))) height=(num(y_hi - y_lo))
                                        fill="#fdecea" {
                                        title { "threshold band: from the baseline's center (" (seconds(base)) ") to +" (percent(threshold)) " (" (seconds(base * (1.0 + threshold))) ")" }
                                    }
                                }
                                line x1=(num(x.map(base))) x2=(num(x.map(base))) y1=(num(y_lo)) y2=(num(y_hi))
                                    stroke="#c62828" stroke-dasharray="4 3" {
                                    title { "baseline center " (seconds(base)) }
                                }
                            }
                        }
                        (x_axis(&x, &frame, seconds, "time per iteration (linear axis)"))
                        @for (i, band) in bands.iter().enumerate() {
                            @let y = lane_y(i);
                            @let color = if band.confirmation { "#8e24aa" } else { "#1f77b4" };
                            g.run {
                                title { (band.label) ": " (band.samples.len()) " samples, median " (seconds(band.median)) ", 25–75 % " (seconds(band.p25)) "–" (seconds(band.p75)) }
                                text x=(num(frame.left - 8.0)) y=(num(y + 4.0)) text-anchor="end" { (band.label) }
                                @if x.accepts(band.p05) && x.accepts(band.p95) {
                                    line x1=(num(x.map(band.p05))) x2=(num(x.map(band.p95))) y1=(num(y)) y2=(num(y)) stroke=(color) {}
                                }
                                @if x.accepts(band.p25) && x.accepts(band.p75) {
                                    rect x=(num(x.map(band.p25))) y=(num(y - 7.0)) width=(num(x.map(band.p75) - x.map(band.p25))) height="14"
                                        fill="none" stroke=(color) {}
                                }
                                @for j in plot::thin(band.samples.len(), MAX_DOTS) {
                                    @let s = band.samples[j];
                                    @if x.accepts(s) {
                                        circle cx=(num(x.map(s))) cy=(num(y + plot::jitter(j) * 18.0)) r="1.6"
                                            fill=(color) fill-opacity="0.35" {}
                                    }
                                }
                                @if x.accepts(band.median) {
                                    line x1=(num(x.map(band.median))) x2=(num(x.map(band.median))) y1=(num(y - 9.0)) y2=(num(y + 9.0))
                                        stroke="#000" stroke-width="2" {}
                                }
                            }
                        }
                        @let now_y = lane_y(bands.len());
                        text x=(num(frame.left - 8.0)) y=(num(now_y + 4.0)) text-anchor="end" { "run medians now" }
                        @for (i, (m, confirmation)) in now_medians.iter().enumerate() {
                            @if x.accepts(*m) {
                                circle.now cx=(num(x.map(*m))) cy=(num(now_y)) r="4"
                                    fill=(if *confirmation { "#8e24aa" } else { "#1f77b4" }) {
                                    title { (bands[i].label) " median " (seconds(*m)) }
                                }
                            }
                        }
                        @if !baseline.is_empty() {
                            @let base_y = lane_y(bands.len() + 1);
                            text x=(num(frame.left - 8.0)) y=(num(base_y + 4.0)) text-anchor="end" { "baseline run medians" }
                            @for (i, m) in baseline.iter().enumerate() {
                                @if x.accepts(*m) {
                                    circle.baseline cx=(num(x.map(*m))) cy=(num(base_y)) r="4"
                                        fill="none" stroke="#c62828" stroke-width="1.5" {
                                        title { "baseline run " (i + 1) " median " (seconds(*m)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            figcaption {
                code { (row.key) } ": each current run's raw samples, seconds per iteration ("
                (total) " in all; at most " (MAX_DOTS) " dots per run, evenly spread; box 25–75 %, whiskers 5–95 %, bar median"
                @if bands.iter().any(|b| b.confirmation) { "; purple: the confirmation round, which decides" }
                "). Below: each run's median now"
                @if baseline.is_empty() { " (no baseline in this report)." } @else { " (filled) against the baseline's run medians (hollow)." }
                @if let Some((_, threshold)) = center {
                    " Shaded: the threshold band, from the baseline's center to +" (percent(threshold)) " (clipped to the axis)."
                }
            }
        }
    }
}

/// A bottom axis with ticks, their labels (`label`) and a title.
fn x_axis(x: &Scale, frame: &Frame, label: impl Fn(f64) -> String, title: &str) -> Markup {
    let y = frame.height - frame.bottom;
    html! {
        g.axis {
            line x1=(num(frame.left)) x2=(num(frame.width - frame.right)) y1=(num(y)) y2=(num(y)) stroke="#999" {}
            @for t in x.ticks() {
                line x1=(num(x.map(t))) x2=(num(x.map(t))) y1=(num(y)) y2=(num(y + 4.0)) stroke="#999" {}
                text x=(num(x.map(t))) y=(num(y + 16.0)) text-anchor="middle" { (label(t)) }
            }
            text x=(num((frame.left + frame.width - frame.right) / 2.0)) y=(num(frame.height - 6.0)) text-anchor="middle" { (title) }
        }
    }
}

/// A left axis with ticks, their labels and a title.
fn y_axis(y: &Scale, frame: &Frame, label: impl Fn(f64) -> String, title: &str) -> Markup {
    let x = frame.left;
    let mid = (frame.top + frame.height - frame.bottom) / 2.0;
    html! {
        g.axis {
            line x1=(num(x)) x2=(num(x)) y1=(num(frame.top)) y2=(num(frame.height - frame.bottom)) stroke="#999" {}
            @for t in y.ticks() {
                line x1=(num(x - 4.0)) x2=(num(frame.width - frame.right)) y1=(num(y.map(t))) y2=(num(y.map(t))) stroke="#eee" {}
                text x=(num(x - 6.0)) y=(num(y.map(t) + 4.0)) text-anchor="end" { (label(t)) }
            }
            text transform={ "translate(14," (num(mid)) ") rotate(-90)" } text-anchor="middle" { (title) }
        }
    }
}

fn ceiling(report: &Report, unit: Unit) -> Option<&Ceiling> {
    report
        .ceilings
        .iter()
        .find(|c| c.unit == unit && c.rate.is_finite() && c.rate > 0.0)
}

/// Where a row sits on the roofline: (FLOP/byte, attained GFLOP/s), when it does.
fn roofline_point(row: &Row) -> Option<(f64, f64)> {
    let attained = match row.unit {
        Unit::Flops => row.rate,
        Unit::Bandwidth => row.rate * row.intensity,
        Unit::Teps => return None,
    };
    let ok = |v: f64| v.is_finite() && v > 0.0;
    (ok(row.intensity) && ok(attained)).then_some((row.intensity, attained))
}

/// The roofline (log–log): kernels by arithmetic intensity and attained GFLOP/s under the
/// device's bandwidth slope and FMA roof. Kernels without FLOPs cannot sit on a log axis: a
/// strip under the plot shows them as % of the bandwidth peak.
fn roofline(report: &Report) -> Markup {
    let bw = ceiling(report, Unit::Bandwidth).map(|c| c.rate);
    let fma = ceiling(report, Unit::Flops).map(|c| c.rate);
    let placed: Vec<(&Row, (f64, f64))> = report
        .rows
        .iter()
        .filter_map(|r| roofline_point(r).map(|p| (r, p)))
        .collect();
    let zero_flop: Vec<&Row> = report
        .rows
        .iter()
        .filter(|r| r.unit == Unit::Bandwidth && roofline_point(r).is_none())
        .collect();
    let unplaced: Vec<&Row> = report
        .rows
        .iter()
        .filter(|r| r.unit != Unit::Bandwidth && roofline_point(r).is_none())
        .collect();
    let ridge = bw.zip(fma).map(|(b, f)| f / b);
    let x_domain = extent(placed.iter().map(|(_, p)| p.0).chain(ridge), true)
        .map(|(lo, hi)| (lo / 4.0, hi * 4.0));
    let strip_h = 22.0 * zero_flop.len() as f64 + if zero_flop.is_empty() { 0.0 } else { 26.0 };
    let frame = Frame {
        width: 760.0,
        height: 420.0 + strip_h,
        left: 70.0,
        right: 20.0,
        top: 14.0,
        bottom: 44.0 + strip_h,
    };
    // The roof's corners across the x domain: min(bandwidth × intensity, FMA peak).
    let roof: Vec<(f64, f64)> = match (x_domain, bw, fma) {
        (Some((lo, hi)), Some(b), Some(f)) => {
            let r = f / b;
            vec![
                (lo, (b * lo).min(f)),
                (r.clamp(lo, hi), (b * r.clamp(lo, hi)).min(f)),
                (hi, (b * hi).min(f)),
            ]
        }
        (Some((lo, hi)), Some(b), None) => vec![(lo, b * lo), (hi, b * hi)],
        (Some((lo, hi)), None, Some(f)) => vec![(lo, f), (hi, f)],
        _ => vec![],
    };
    let y_domain = extent(
        placed
            .iter()
            .map(|(_, p)| p.1)
            .chain(roof.iter().map(|p| p.1)),
        true,
    )
    .map(|(lo, hi)| (lo / 3.0, hi * 3.0));
    let strip_top = 436.0;
    html! {
        h3 { "Roofline" }
        figure {
            svg.roofline xmlns="http://www.w3.org/2000/svg" viewBox=(frame.view_box())
                width=(num(frame.width)) height=(num(frame.height)) role="img" aria-label="roofline" {
                title { "Roofline: attained GFLOP/s against arithmetic intensity" }
                @if let (Some(xd), Some(yd)) = (x_domain, y_domain) {
                    @let x = Scale::log(xd, frame.x_range());
                    @let y = Scale::log(yd, (420.0 - 44.0, frame.top));
                    @let plot_frame = Frame { height: 420.0, bottom: 44.0, ..frame };
                    (y_axis(&y, &plot_frame, sig3, "attained GFLOP/s (log)"))
                    (x_axis(&x, &plot_frame, sig3, "arithmetic intensity, FLOP/byte (log)"))
                    @if !roof.is_empty() {
                        @let pts: Vec<(f64, f64)> = roof.iter().map(|(a, b)| (x.map(*a), y.map(*b))).collect();
                        polyline.roof points=(polyline(&pts)) fill="none" stroke="#444" stroke-width="2" {
                            title {
                                "roof:"
                                @if let Some(b) = bw { " bandwidth " (sig3(b)) " GB/s" }
                                @if let Some(f) = fma { " FMA " (sig3(f)) " GFLOP/s" }
                            }
                        }
                    }
                    @for (i, (row, (ai, gf))) in placed.iter().enumerate() {
                        circle.kernel data-kernel=(row.key) cx=(num(x.map(*ai))) cy=(num(y.map(*gf))) r="5"
                            fill=(PALETTE[i % PALETTE.len()]) stroke="#000" stroke-width="0.5" {
                            title {
                                (row.key) ": " (sig3(*ai)) " FLOP/byte, " (sig3(*gf)) " GFLOP/s"
                                @if let Some(p) = row.pct_of_peak { " (" (percent(p)) " of the " (row.unit.label()) " peak)" }
                            }
                        }
                        text x=(num(x.map(*ai) + 7.0)) y=(num(y.map(*gf) - 6.0)) { (row.key) }
                    }
                } @else {
                    text x=(num(frame.left)) y="40" { "no kernel with a FLOP count and no ceiling to draw" }
                }
                @if !zero_flop.is_empty() {
                    g.zero-flop {
                        text x=(num(frame.left)) y=(num(strip_top)) { "No FLOPs (not on a log axis): share of the bandwidth peak" }
                        @for (i, row) in zero_flop.iter().enumerate() {
                            @let yy = strip_top + 10.0 + i as f64 * 22.0;
                            @let share = row.pct_of_peak.filter(|p| p.is_finite() && *p >= 0.0);
                            @let full = frame.width - frame.right - frame.left - 200.0;
                            text x=(num(frame.left + 150.0)) y=(num(yy + 12.0)) text-anchor="end" { (row.key) }
                            rect x=(num(frame.left + 160.0)) y=(num(yy)) width=(num(full)) height="14" fill="#f3f3f3" {}
                            rect.share data-kernel=(row.key) x=(num(frame.left + 160.0)) y=(num(yy))
                                width=(num(full * share.unwrap_or(0.0).min(1.0))) height="14" fill="#1f77b4" {
                                title { (row.key) ": " (sig3(row.rate)) " GB/s" @if let Some(p) = share { ", " (percent(p)) " of the bandwidth peak" } }
                            }
                            text x=(num(frame.left + 165.0 + full)) y=(num(yy + 12.0)) {
                                @match share { Some(p) => (percent(p)), None => { (sig3(row.rate)) " GB/s" } }
                            }
                        }
                    }
                }
            }
            figcaption {
                "Each kernel at its arithmetic intensity (FLOPs per byte counted) and attained GFLOP/s "
                "(FLOP kernels: their rate; bandwidth kernels: GB/s × intensity). "
                @match (bw, fma) {
                    (Some(b), Some(f)) => { "Roof: the measured bandwidth ceiling (" (sig3(b)) " GB/s, the slope) and FMA ceiling (" (sig3(f)) " GFLOP/s, flat)." }
                    (Some(b), None) => { "Roof: the bandwidth ceiling (" (sig3(b)) " GB/s) only: no FMA ceiling in this report (peak_fma not measured), so no flat roof is drawn." }
                    (None, Some(f)) => { "Roof: the FMA ceiling (" (sig3(f)) " GFLOP/s) only: no bandwidth ceiling in this report (peak_bandwidth not measured), so no slope is drawn." }
                    (None, None) => { "No ceiling in this report (neither peak_bandwidth nor peak_fma measured): no roof is drawn." }
                }
                @if !zero_flop.is_empty() { " Kernels that do no FLOPs are shown in the strip below as a share of the bandwidth peak." }
                @for row in &unplaced { " " code { (row.key) } " (" (row.unit.label()) ") has no place on a roofline." }
            }
        }
    }
}

/// One point of the history: a report's value for a kernel.
struct HistoryPoint {
    report: usize,
    value: f64,
    verdict: Verdict,
}

/// Per kernel, over the reports (oldest left): the ratio to the baseline where every row was
/// compared, else the median time; markers coloured by verdict.
fn history_section(reports: &[&Report]) -> Markup {
    let ratios = reports
        .iter()
        .flat_map(|r| &r.rows)
        .all(|row| row.comparison.as_ref().is_some_and(|c| c.ratio.is_finite()));
    let value = |row: &Row| match (&row.comparison, ratios) {
        (Some(c), true) => c.ratio,
        _ => row.median_s,
    };
    let mut keys: Vec<&str> = vec![];
    for row in reports.iter().flat_map(|r| &r.rows) {
        if !keys.contains(&row.key.as_str()) {
            keys.push(&row.key);
        }
    }
    let series: Vec<(&str, Vec<HistoryPoint>)> = keys
        .iter()
        .map(|key| {
            let points = reports
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    let row = r.rows.iter().find(|row| row.key == *key)?;
                    let v = value(row);
                    (v.is_finite() && v > 0.0).then_some(HistoryPoint {
                        report: i,
                        value: v,
                        verdict: row.verdict,
                    })
                })
                .collect();
            (*key, points)
        })
        .collect();
    let legend_h = 18.0 * keys.len() as f64;
    let frame = Frame {
        width: 760.0,
        height: 340.0 + legend_h,
        left: 80.0,
        right: 30.0,
        top: 14.0,
        bottom: 60.0 + legend_h,
    };
    let plot_frame = Frame {
        height: 340.0,
        bottom: 60.0,
        ..frame
    };
    let x = Scale::linear((-0.3, reports.len() as f64 - 0.7), frame.x_range());
    let y_domain = extent(
        series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|p| p.value))
            .chain(ratios.then_some(1.0)),
        true,
    )
    .map(|(lo, hi)| (lo / 1.2, hi * 1.2));
    let label = |i: usize| {
        started_at(reports[i]).map_or(format!("#{}", i + 1), |t| {
            t.format("%m-%d %H:%M").to_string()
        })
    };
    let tick_every = reports.len().div_ceil(8).max(1);
    let value_text = |v: f64| {
        if ratios {
            format!("×{}", sig3(v))
        } else {
            seconds(v)
        }
    };
    html! {
        h2 { "History" }
        figure {
            svg.history xmlns="http://www.w3.org/2000/svg" viewBox=(frame.view_box())
                width=(num(frame.width)) height=(num(frame.height)) role="img" aria-label="history" {
                title { "History over " (reports.len()) " reports" }
                @if let Some(yd) = y_domain {
                    @let y = Scale::log(yd, plot_frame.y_range());
                    (y_axis(&y, &plot_frame, |v| if ratios { format!("×{}", sig3(v)) } else { seconds(v) },
                        if ratios { "current / baseline (log)" } else { "median time per iteration (log)" }))
                    @let base = plot_frame.height - plot_frame.bottom;
                    line x1=(num(frame.left)) x2=(num(frame.width - frame.right)) y1=(num(base)) y2=(num(base)) stroke="#999" {}
                    @for i in (0..reports.len()).step_by(tick_every) {
                        text x=(num(x.map(i as f64))) y=(num(base + 16.0)) text-anchor="middle" { (label(i)) }
                    }
                    text x=(num((frame.left + frame.width - frame.right) / 2.0)) y=(num(base + 34.0)) text-anchor="middle" {
                        "reports in order, oldest left (first run's start time, UTC)"
                    }
                    @if ratios {
                        line x1=(num(frame.left)) x2=(num(frame.width - frame.right)) y1=(num(y.map(1.0))) y2=(num(y.map(1.0)))
                            stroke="#444" stroke-dasharray="4 3" { title { "×1: as fast as the baseline" } }
                    }
                    @for (s, (key, points)) in series.iter().enumerate() {
                        @let color = PALETTE[s % PALETTE.len()];
                        @let pts: Vec<(f64, f64)> = points.iter().map(|p| (x.map(p.report as f64), y.map(p.value))).collect();
                        g.series data-kernel=(key) {
                            polyline points=(polyline(&pts)) fill="none" stroke=(color) stroke-width="1.5" {}
                            @for (p, (px, py)) in points.iter().zip(&pts) {
                                circle class={ "point verdict-" (p.verdict.as_str()) } cx=(num(*px)) cy=(num(*py)) r="4.5"
                                    fill=(verdict_color(p.verdict)) stroke=(color) stroke-width="2" {
                                    title { (key) ", " (label(p.report)) ": " (value_text(p.value)) ", " (p.verdict.as_str()) }
                                }
                            }
                        }
                        @let ly = 340.0 + 4.0 + s as f64 * 18.0;
                        line x1=(num(frame.left)) x2=(num(frame.left + 24.0)) y1=(num(ly)) y2=(num(ly)) stroke=(color) stroke-width="3" {}
                        text x=(num(frame.left + 30.0)) y=(num(ly + 4.0)) { (key) }
                    }
                } @else {
                    text x=(num(frame.left)) y="40" { "no finite value to draw" }
                }
            }
            figcaption {
                @if ratios { "Per kernel, each report's ratio of the current time to the baseline's (above ×1 is slower)" }
                @else { "Per kernel, each report's median time per iteration" }
                "; marker fill is the verdict (green pass, blue improvement, amber inconclusive, red regression, purple wrong result), line colour the kernel."
            }
        }
    }
}

fn reports_list(reports: &[&Report]) -> Markup {
    html! {
        h2 { "Reports" }
        table.reports {
            thead { tr { th { "#" } th { "Command" } th { "Started (UTC)" } th { "Device" } th { "Outcome" } } }
            tbody {
                @for (i, r) in reports.iter().enumerate() {
                    tr {
                        td { (i + 1) }
                        td.text { (r.command) }
                        td.text { @match started_at(r) { Some(t) => (t.format("%Y-%m-%d %H:%M:%S")), None => "–" } }
                        td.text { (r.device_key.as_deref().unwrap_or("–")) }
                        td.text {
                            span class=(verdict_class(r.outcome.verdict)) { (r.outcome.verdict.as_str()) }
                            " (exit " (r.outcome.exit_code) ") " (r.outcome.message)
                        }
                    }
                }
            }
        }
    }
}

/// `profile`: throughput against the first swept axis with more than one value; one series per
/// combination of the other axes.
fn sweep_section(report: &Report, sweep: &super::Sweep) -> Markup {
    let axis = sweep
        .axes
        .iter()
        .find(|a| a.values.len() > 1)
        .or(sweep.axes.first());
    let Some(axis) = axis else {
        return html! {};
    };
    let unit = report.rows[0].unit;
    let others: Vec<&str> = sweep
        .axes
        .iter()
        .map(|a| a.name.as_str())
        .filter(|n| *n != axis.name)
        .collect();
    let series_of = |row: &Row| {
        others
            .iter()
            .map(|n| {
                format!(
                    "{n}={}",
                    row.params.0.get(*n).map_or("?".into(), |v| v.to_string())
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut series: Vec<(String, Vec<(f64, &Row)>)> = vec![];
    for row in &report.rows {
        let Some(v) = row.params.0.get(&axis.name) else {
            continue;
        };
        let name = series_of(row);
        match series.iter_mut().find(|(n, _)| *n == name) {
            Some((_, pts)) => pts.push((*v as f64, row)),
            None => series.push((name, vec![(*v as f64, row)])),
        }
    }
    for (_, pts) in &mut series {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let peak = ceiling(report, unit).map(|c| c.rate);
    let frame = Frame {
        width: 760.0,
        height: 360.0 + 18.0 * series.len() as f64,
        left: 80.0,
        right: 30.0,
        top: 14.0,
        bottom: 60.0 + 18.0 * series.len() as f64,
    };
    let plot_frame = Frame {
        height: 360.0,
        bottom: 60.0,
        ..frame
    };
    let xs = extent(axis.values.iter().map(|v| *v as f64), false);
    let log_x = axis.values.iter().all(|v| *v > 0) && xs.is_some_and(|(lo, hi)| hi / lo >= 4.0);
    let y_hi = extent(report.rows.iter().map(|r| r.rate).chain(peak), true).map(|(_, hi)| hi * 1.1);
    html! {
        h3 { "Sweep of " (sweep.kernel) " over " (axis.name) }
        figure {
            svg.sweep xmlns="http://www.w3.org/2000/svg" viewBox=(frame.view_box())
                width=(num(frame.width)) height=(num(frame.height)) role="img" aria-label="sweep" {
                title { "Throughput against " (axis.name) }
                @if let (Some(xd), Some(hi)) = (xs, y_hi) {
                    @let x = if log_x { Scale::log(xd, frame.x_range()) } else { Scale::linear(pad(xd, 0.05), frame.x_range()) };
                    @let y = Scale::linear((0.0, hi), plot_frame.y_range());
                    (y_axis(&y, &plot_frame, sig3, &format!("throughput, {}", unit.label())))
                    @let base = plot_frame.height - plot_frame.bottom;
                    line x1=(num(frame.left)) x2=(num(frame.width - frame.right)) y1=(num(base)) y2=(num(base)) stroke="#999" {}
                    @for v in &axis.values {
                        @if x.accepts(*v as f64) {
                            text x=(num(x.map(*v as f64))) y=(num(base + 16.0)) text-anchor="middle" { (v) }
                        }
                    }
                    text x=(num((frame.left + frame.width - frame.right) / 2.0)) y=(num(base + 34.0)) text-anchor="middle" {
                        (axis.name) @if log_x { " (log axis)" }
                    }
                    @if let Some(p) = peak {
                        line x1=(num(frame.left)) x2=(num(frame.width - frame.right)) y1=(num(y.map(p))) y2=(num(y.map(p)))
                            stroke="#444" stroke-dasharray="4 3" { title { "device peak " (sig3(p)) " " (unit.label()) } }
                    }
                    @for (s, (name, pts)) in series.iter().enumerate() {
                        @let color = PALETTE[s % PALETTE.len()];
                        @let drawn: Vec<(f64, f64, &Row)> = pts.iter()
                            .filter(|(v, r)| x.accepts(*v) && r.rate.is_finite())
                            .map(|(v, r)| (x.map(*v), y.map(r.rate), *r)).collect();
                        @let line_pts: Vec<(f64, f64)> = drawn.iter().map(|(a, b, _)| (*a, *b)).collect();
                        g.series {
                            polyline points=(polyline(&line_pts)) fill="none" stroke=(color) stroke-width="1.5" {}
                            @for (px, py, row) in &drawn {
                                circle cx=(num(*px)) cy=(num(*py)) r="4" fill=(color) {
                                    title {
                                        (row.key) ": " (sig3(row.rate)) " " (row.unit.label())
                                        @if let Some(p) = row.pct_of_peak { " (" (percent(p)) " of peak)" }
                                        ", median " (seconds(row.median_s))
                                    }
                                }
                            }
                        }
                        @let ly = 360.0 + 4.0 + s as f64 * 18.0;
                        line x1=(num(frame.left)) x2=(num(frame.left + 24.0)) y1=(num(ly)) y2=(num(ly)) stroke=(color) stroke-width="3" {}
                        text x=(num(frame.left + 30.0)) y=(num(ly + 4.0)) { @if name.is_empty() { (sweep.kernel) } @else { (name) } }
                    }
                }
            }
            figcaption {
                "Throughput at each point of the sweep"
                @if !others.is_empty() { ", one line per combination of " (others.join(", ")) }
                @match peak {
                    Some(p) => { "; dashed: the device's " (unit.label()) " peak (" (sig3(p)) "), which % of peak refers to." }
                    None => { "; no ceiling for " (unit.label()) " in this report, so no % of peak." }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
