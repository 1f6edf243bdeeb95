//! The human table: what a person reads in a terminal, drawn with comfy-table.
//!
//! Width: `COLUMNS` when set (a positive number), else the terminal's width when stdout is one;
//! cells then wrap to fit. Otherwise (a pipe, a file) every column is as wide as its widest
//! cell: nothing is wrapped or cut, and the table stays aligned whatever the key length.
//! Colour: verdicts only, and only when stdout is a terminal and `NO_COLOR` is unset or empty.

use std::io::{self, IsTerminal, Write};

use comfy_table::{presets, CellAlignment, Color, ColumnConstraint, ContentArrangement, Width};

use super::{fmt_time, Bootstrap, Calibration, CeilingSource, Report, Reporter, Row};
use crate::compare::Verdict;
use crate::sampler::StopReason;

/// The table for stdout: width and colour from stdout's terminal ([`Layout::stdout`]).
pub struct Table;

impl Reporter for Table {
    fn write(&self, report: &Report, out: &mut dyn Write) -> io::Result<()> {
        render(report, Layout::stdout(), out)
    }
}

/// How a table is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Wrap cells to fit this many columns; None: every column as wide as its widest cell.
    pub width: Option<u16>,
    /// Colour verdicts (ANSI SGR).
    pub colour: bool,
}

/// Narrowest width honoured: below it a wrapped table is unreadable, so cells wrap at this.
const MIN_WIDTH: u16 = 40;

impl Layout {
    /// For a file or a pipe: natural widths, no colour.
    pub fn plain() -> Layout {
        Layout {
            width: None,
            colour: false,
        }
    }

    /// For stdout: `COLUMNS` if set, else the terminal's width on a terminal, else natural
    /// widths; colour on a terminal unless `NO_COLOR` says otherwise.
    pub fn stdout() -> Layout {
        let terminal = io::stdout().is_terminal();
        let columns = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.trim().parse::<u16>().ok())
            .filter(|&c| c > 0);
        // comfy-table asks the terminal (crossterm) for its size when stdout is one. A
        // terminal that reports no size (a bare pseudo-terminal) is drawn at natural widths.
        let detected = || {
            terminal
                .then(|| comfy_table::Table::new().width())
                .flatten()
                .filter(|&w| w > 0)
        };
        Layout {
            width: columns.or_else(detected).map(|w| w.max(MIN_WIDTH)),
            colour: colour_allowed(terminal),
        }
    }
}

/// Colour on a stream: only a terminal, and only while `NO_COLOR` is unset or empty
/// (<https://no-color.org>: any non-empty value disables it).
pub fn colour_allowed(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// What an empty cell shows; a column of nothing else is left out.
const EMPTY: &str = "-";

/// Marks a median whose warm-up did not settle.
const UNSTEADY: &str = "~";

/// Marks a rate above its ceiling.
const ABOVE_PEAK: &str = "!";

/// An empty-looking table: comfy-table with the report's style, widths and colour.
fn new_table(layout: Layout) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_style(presets::UTF8_FULL_CONDENSED);
    // The layout decided width and colour; comfy-table must not ask stdout again.
    t.force_no_tty();
    if layout.colour {
        t.enforce_styling();
    }
    match layout.width {
        Some(w) => {
            t.set_width(w);
            t.set_content_arrangement(ContentArrangement::Dynamic);
        }
        None => {
            t.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    t
}

/// A column: its header, whether numbers (right-aligned), and one cell per row.
struct Column {
    header: &'static str,
    numeric: bool,
    /// Kept even when every cell is empty.
    always: bool,
    cells: Vec<String>,
}

impl Column {
    fn new(header: &'static str, rows: &[Row], cell: impl Fn(&Row) -> String) -> Column {
        Column {
            header,
            numeric: true,
            always: false,
            cells: rows.iter().map(cell).collect(),
        }
    }

    fn text(mut self) -> Column {
        self.numeric = false;
        self.always = true;
        self
    }
}

/// Draw `columns` (those with something in them) as one table, the first being the key.
fn draw(columns: Vec<Column>, colours: &[Option<Color>], layout: Layout) -> comfy_table::Table {
    let columns: Vec<Column> = columns
        .into_iter()
        .filter(|c| c.always || c.cells.iter().any(|s| s != EMPTY))
        .collect();
    let mut t = new_table(layout);
    t.set_header(columns.iter().map(|c| c.header).collect::<Vec<_>>());
    let rows = columns.first().map_or(0, |c| c.cells.len());
    for i in 0..rows {
        t.add_row(columns.iter().map(|c| {
            let cell = comfy_table::Cell::new(&c.cells[i]);
            match colours.get(i).copied().flatten() {
                Some(colour) if layout.colour && c.header == "verdict" => cell.fg(colour),
                _ => cell,
            }
        }));
    }
    for (i, c) in columns.iter().enumerate() {
        if let Some(col) = t.column_mut(i) {
            if c.numeric {
                col.set_cell_alignment(CellAlignment::Right);
            }
        }
    }
    if let Some(width) = layout.width {
        fit(&mut t, &columns, width);
    }
    t
}

/// Narrowest a wrapped key column gets while the other columns still fit unbroken.
const KEY_MIN: usize = 16;

/// Fit a table into `width` columns. At natural widths when they fit; else no word of a
/// number, header or verdict is broken while that leaves the key (which has no spaces) at least
/// [`KEY_MIN`], the key wrapping within what is left; below that comfy-table wraps every column
/// as it can.
fn fit(t: &mut comfy_table::Table, columns: &[Column], width: u16) {
    // Per column a space of padding either side and a separator; one border closes the row.
    let overhead = 3 * columns.len() + 1;
    let widest = |c: &Column, by_word: bool| -> usize {
        std::iter::once(c.header)
            .chain(c.cells.iter().map(String::as_str))
            .flat_map(|s| {
                if by_word {
                    s.split(' ').collect::<Vec<_>>()
                } else {
                    vec![s]
                }
            })
            .map(|w| w.chars().count())
            .max()
            .unwrap_or(0)
    };
    let natural: usize = columns.iter().map(|c| widest(c, false)).sum();
    if natural + overhead <= width as usize {
        t.set_content_arrangement(ContentArrangement::Disabled);
        return;
    }
    let words: usize = columns.iter().skip(1).map(|c| widest(c, true)).sum();
    if words + overhead + KEY_MIN <= width as usize {
        for (i, c) in columns.iter().enumerate().skip(1) {
            if let Some(col) = t.column_mut(i) {
                // comfy-table's widths count the padding.
                let fixed = u16::try_from(widest(c, true) + 2).unwrap_or(u16::MAX);
                col.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(fixed)));
            }
        }
    }
}

fn verdict_text(row: &Row) -> String {
    let verdict = match row.comparison.as_ref().and_then(|c| c.inconclusive) {
        Some(reason) if row.verdict == Verdict::Inconclusive => {
            format!("inconclusive:{}", reason.as_str())
        }
        _ => row.verdict.as_str().to_string(),
    };
    if row.screening.is_some() {
        format!("{verdict} (2nd)")
    } else {
        verdict
    }
}

fn verdict_colour(v: Verdict) -> Option<Color> {
    match v {
        Verdict::Pass | Verdict::Improvement => Some(Color::Green),
        Verdict::Regression | Verdict::WrongResult => Some(Color::Red),
        Verdict::Inconclusive => Some(Color::Yellow),
    }
}

/// The kernel table of a report: the columns its kind has.
fn kernel_table(r: &Report, layout: Layout) -> comfy_table::Table {
    let rows = &r.rows;
    fn compared(f: fn(&crate::compare::Comparison) -> String) -> impl Fn(&Row) -> String {
        move |row| row.comparison.as_ref().map_or(EMPTY.into(), f)
    }
    let columns = vec![
        Column::new("kernel", rows, |row| row.key.clone()).text(),
        Column::new("median", rows, |row| {
            let mark = if row.steady { "" } else { UNSTEADY };
            format!("{}{mark}", fmt_time(row.median_s))
        }),
        Column::new("p95", rows, |row| {
            if row.p95_s > 0.0 {
                fmt_time(row.p95_s)
            } else {
                EMPTY.into()
            }
        }),
        Column::new("IQR %", rows, |row| {
            if row.iqr_rel.is_finite() {
                format!("{:.1}", 100.0 * row.iqr_rel)
            } else {
                EMPTY.into()
            }
        }),
        Column::new("baseline", rows, compared(|c| fmt_time(c.baseline_s))),
        Column::new("ratio", rows, compared(|c| format!("{:.3}", c.ratio))),
        Column::new(
            "ratio interval",
            rows,
            compared(|c| format!("{:.3}–{:.3}", c.ratio_low, c.ratio_high)),
        ),
        Column::new("detects", rows, |row| {
            match (&row.comparison, row.detectable_ratio) {
                (Some(_), Some(r)) => fmt_slowdown(r),
                (Some(_), None) => "never".into(),
                (None, _) => EMPTY.into(),
            }
        }),
        Column::new("verdict", rows, verdict_text).text(),
        Column::new("rate", rows, |row| {
            if row.rate.is_finite() {
                format!("{:.2} {}", row.rate, row.unit.label())
            } else {
                EMPTY.into()
            }
        }),
        Column::new("% peak", rows, |row| match row.pct_of_peak {
            Some(p) if p.is_finite() => {
                let mark = if p > 1.0 { ABOVE_PEAK } else { "" };
                format!("{:.1}{mark}", 100.0 * p)
            }
            _ => EMPTY.into(),
        }),
        Column::new("FLOP/B", rows, |row| {
            if row.intensity.is_finite() && row.intensity > 0.0 {
                format!("{:.2}", row.intensity)
            } else {
                EMPTY.into()
            }
        }),
    ];
    let colours: Vec<Option<Color>> = rows.iter().map(|r| verdict_colour(r.verdict)).collect();
    draw(columns, &colours, layout)
}

/// Render `r` for people: header lines, the kernel table, then every line a reader must not
/// miss, and the result.
pub fn render(r: &Report, layout: Layout, out: &mut dyn Write) -> io::Result<()> {
    if let Some(f) = &r.fingerprint {
        writeln!(
            out,
            "device   {} ({}, {}, driver {})",
            f.name,
            f.backend,
            f.device_type,
            f.driver_string()
        )?;
        if let Some(cpu) = &f.cpu_model {
            writeln!(out, "host cpu {cpu}")?;
        }
    }
    if let Some(mode) = r.shader_checks {
        writeln!(out, "shaders  {mode} (--shader-checks)")?;
    }
    if let Some(file) = &r.baseline_file {
        writeln!(out, "baseline {file}")?;
    }
    if let Some(c) = &r.compared {
        writeln!(out, "compared {} (as the baseline) → {}", c.before, c.after)?;
    }
    if let Some(s) = &r.sweep {
        let axes: Vec<String> = s
            .axes
            .iter()
            .map(|a| {
                let values: Vec<String> = a.values.iter().map(u64::to_string).collect();
                format!("{}={}", a.name, values.join(","))
            })
            .collect();
        writeln!(out, "sweep    {} over {}", s.kernel, axes.join(" × "))?;
    }
    if let Some(e) = &r.error {
        writeln!(out, "error    {}: {}", e.kind, e.message)?;
        if let Some(file) = &e.file {
            writeln!(out, "  file   {file}")?;
        }
        if let Some(field) = &e.field {
            writeln!(out, "  field  {field}")?;
        }
    }
    if !r.rows.is_empty() {
        writeln!(out)?;
        writeln!(out, "{}", kernel_table(r, layout))?;
        if r.rows.iter().any(|row| !row.steady) {
            writeln!(
                out,
                "{UNSTEADY} after a median: a run's warm-up did not settle (unsteady, below)"
            )?;
        }
    }
    writeln!(out)?;
    write_ceilings(r, out)?;
    for row in &r.rows {
        if !row.verification.ok {
            writeln!(out, "WRONG RESULT {}: {}", row.key, row.verification.detail)?;
        }
        if let Some(first) = &row.screening {
            writeln!(
                out,
                "suspect {}: round 1 {:.3}× ({}); re-measured in {} fresh run(s), which alone decide",
                row.key,
                first.ratio,
                first.verdict.as_str(),
                row.comparison.as_ref().map_or(0, |c| c.current_runs)
            )?;
        }
        if let Some(c) = row
            .comparison
            .as_ref()
            .filter(|c| c.verdict != Verdict::Pass)
        {
            writeln!(out, "{} {}: {}", c.verdict.as_str(), row.key, c.reason)?;
        }
        if let Some(c) = row.comparison.as_ref().filter(|c| c.modes.len() > 1) {
            let modes: Vec<String> = c
                .modes
                .iter()
                .map(|m| format!("{} ({} runs)", fmt_time(m.center_s), m.runs))
                .collect();
            writeln!(
                out,
                "bimodal {}: the baseline's processes settle in {} speed modes: {}; each run is judged against the nearest",
                row.key,
                c.modes.len(),
                modes.join(", ")
            )?;
        }
        if let Some(why) = &row.throttled {
            writeln!(out, "throttled {}: {why}", row.key)?;
        }
        if !row.steady {
            writeln!(out, "unsteady {}: a run's warm-up did not settle", row.key)?;
        }
    }
    for row in r.rows.iter().filter(|r| r.stop != StopReason::NoiseTarget) {
        let cap = match row.stop {
            StopReason::SampleCap => "sample cap",
            _ => "time cap",
        };
        writeln!(
            out,
            "sampling {}: stopped at the {cap} before the noise target",
            row.key
        )?;
    }
    for u in &r.unsupported {
        writeln!(
            out,
            "unsupported on this adapter {}: {} (not measured, left out of the verdict)",
            u.key, u.reason
        )?;
    }
    for note in &r.notes {
        writeln!(out, "note: {note}")?;
    }
    if let Some(p) = &r.policy {
        writeln!(
            out,
            "policy: {} runs + {} confirmation runs for suspects ({}), suite α {:.2} % (Holm over {} kernels), require conclusive: {}; \"detects\" = smallest slowdown caught with 95 % power",
            p.runs,
            p.confirm_runs,
            if p.suspects.is_empty() {
                "none".to_string()
            } else {
                p.suspects.join(", ")
            },
            100.0 * p.alpha,
            p.family,
            p.require_conclusive
        )?;
    }
    if let Some(b) = &r.bootstrap {
        write_bootstrap(b, layout, out)?;
    }
    if let Some(c) = &r.calibration {
        write_calibration(c, layout, out)?;
    }
    writeln!(
        out,
        "result: {} (exit {})",
        r.outcome.message, r.outcome.exit_code
    )
}

/// Which ceiling each unit's % of peak refers to (rows above theirs are in the notes).
fn write_ceilings(r: &Report, out: &mut dyn Write) -> io::Result<()> {
    if r.ceilings.is_empty() || r.rows.iter().all(|row| row.pct_of_peak.is_none()) {
        return Ok(());
    }
    let used: Vec<String> = r
        .ceilings
        .iter()
        .map(|c| {
            let source = match c.source {
                CeilingSource::Measured => "measured",
                CeilingSource::Baseline => "baseline",
            };
            format!("{} {:.1} {} ({source})", c.key, c.rate, c.unit.label())
        })
        .collect();
    writeln!(out, "ceilings (% peak): {}", used.join(", "))?;
    Ok(())
}

/// A sub-table indented under the line that introduces it, two columns narrower.
fn write_indented(t: &comfy_table::Table, out: &mut dyn Write) -> io::Result<()> {
    for line in t.lines() {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

fn narrower(layout: Layout) -> Layout {
    Layout {
        width: layout.width.map(|w| w.saturating_sub(2).max(MIN_WIDTH)),
        ..layout
    }
}

fn write_bootstrap(b: &Bootstrap, layout: Layout, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "bootstrap: this device had no baseline, so one was recorded ({} independent runs per \
         kernel){}:",
        b.recorded_runs,
        if b.self_checked {
            ", then checked against in fresh processes; the table above is that self-check"
        } else {
            ""
        }
    )?;
    writeln!(out, "  wrote {}", b.baseline_file)?;
    writeln!(
        out,
        "  commit it to make every later run a gate against it:  git add {}",
        b.baseline_file
    )?;
    writeln!(
        out,
        "  smallest slowdown a check ({} run{}) detects with {:.0} % power, per kernel:",
        b.check_runs,
        if b.check_runs == 1 { "" } else { "s" },
        100.0 * crate::compare::DETECTION_POWER
    )?;
    let d = &b.detectable;
    let columns = vec![
        Column {
            header: "kernel",
            numeric: false,
            always: true,
            cells: d.iter().map(|d| d.key.clone()).collect(),
        },
        Column {
            header: "detects",
            numeric: true,
            always: true,
            cells: d
                .iter()
                .map(|d| match d.slowdown_ratio {
                    Some(r) => format!("{} slower", fmt_slowdown(r)),
                    None => "nothing: too few runs to judge".into(),
                })
                .collect(),
        },
        Column {
            header: "threshold",
            numeric: true,
            always: true,
            cells: d
                .iter()
                .map(|d| format!("{:.0} %", d.threshold * 100.0))
                .collect(),
        },
    ];
    write_indented(&draw(columns, &[], narrower(layout)), out)
}

/// A slowdown ratio for people: `+6.8 %` below 2×, `3.1×` above.
fn fmt_slowdown(r: f64) -> String {
    if r < 2.0 {
        format!("{:+.1} %", (r - 1.0) * 100.0)
    } else {
        format!("{r:.1}×")
    }
}

fn write_calibration(c: &Calibration, layout: Layout, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "calibration: {} A/A checks on this node, each in fresh processes: {} false alarm(s), \
         rate ≤ {:.1} % (one-sided 95 % Clopper–Pearson; design α {:.2} %), {} inconclusive",
        c.checks,
        c.false_alarms,
        100.0 * c.false_alarm_upper95,
        100.0 * c.alpha,
        c.inconclusive_checks
    )?;
    let k = &c.kernels;
    let column = |header, cells: Vec<String>| Column {
        header,
        numeric: header != "kernel",
        always: true,
        cells,
    };
    let columns = vec![
        column("kernel", k.iter().map(|k| k.key.clone()).collect()),
        column(
            "threshold",
            k.iter()
                .map(|k| format!("{:.0} %", 100.0 * k.threshold))
                .collect(),
        ),
        column(
            "detects (95 %)",
            k.iter()
                .map(|k| k.detectable_ratio.map_or("never".into(), fmt_slowdown))
                .collect(),
        ),
        column(
            "alarms",
            k.iter().map(|k| k.false_alarms.to_string()).collect(),
        ),
        column(
            "inconclusive",
            k.iter().map(|k| k.inconclusive.to_string()).collect(),
        ),
    ];
    write_indented(&draw(columns, &[], narrower(layout)), out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Ceiling;
    use crate::workload::Unit;

    const LONG_KEY: &str = "attention[batch=8,causal=0,heads=16,seq=4096]";

    /// A check report of three rows, one with a key longer than the old fixed column, one
    /// confirmed suspect, one unsteady inconclusive; a run's report drops the comparisons.
    fn report(command: &str) -> Report {
        let row = |key: &str, kernel: &str, verdict: &str, extra: serde_json::Value| {
            let mut row = serde_json::json!({
                "key": key, "kernel": kernel, "unit": "bandwidth",
                "median_s": 1.5e-3, "p95_s": 1.9e-3, "rate": 812.25, "pct_of_peak": 0.5,
                "intensity": 0.25, "iqr_rel": 0.034, "timing": "gpu_timestamp",
                "stop": "noise_target", "steady": true,
                "verification": {"ok": true, "checked": 10, "max_error": 0.0,
                                 "tolerance": 0.0, "detail": "ok"},
                "comparison": {"baseline_s": 1.4e-3, "current_s": 1.5e-3, "ratio": 1.071,
                    "ratio_low": 1.01, "ratio_high": 1.13, "threshold": 0.1, "noise_rel": 0.02,
                    "baseline_runs": 10, "current_runs": 3, "verdict": verdict,
                    "reason": "within the threshold"},
                "detectable_ratio": 1.068,
                "verdict": verdict,
            });
            let (Some(row_obj), Some(extra)) = (row.as_object_mut(), extra.as_object()) else {
                unreachable!()
            };
            row_obj.extend(extra.clone());
            row
        };
        let mut doc = serde_json::json!({
            "schema_version": 1, "command": command, "device_key": "llvmpipe-vulkan",
            "fingerprint": {"name": "llvmpipe (LLVM 19)", "vendor_id": 0, "device_id": 0,
                "device_type": "Cpu", "driver": "llvmpipe", "driver_info": "Mesa",
                "backend": "vulkan"},
            "notes": ["a note"],
            "rows": [
                row("copy[n=1048576]", "copy", "pass", serde_json::json!({})),
                row(LONG_KEY, "attention", "regression", serde_json::json!({
                    "pct_of_peak": 1.25,
                    "screening": {"baseline_s": 1.4e-3, "current_s": 1.6e-3, "ratio": 1.14,
                        "ratio_low": 1.05, "ratio_high": 1.2, "threshold": 0.1,
                        "noise_rel": 0.02, "baseline_runs": 10, "current_runs": 3,
                        "verdict": "regression", "reason": "slower"}})),
                row("sgemm[k=256,m=256,n=256]", "sgemm", "inconclusive", serde_json::json!({
                    "steady": false, "unit": "flops"})),
            ],
            "ceilings": [{"unit": "bandwidth", "key": "peak_bandwidth[n=4194304]",
                          "rate": 1624.5, "source": "baseline"}],
            "outcome": {"verdict": "regression", "exit_code": 1, "message": "1 regression"},
            "runs": [],
        });
        doc["rows"][2]["comparison"]["inconclusive"] = "unsteady".into();
        let mut report: Report = serde_json::from_value(doc).unwrap();
        if command == "run" {
            for row in &mut report.rows {
                row.comparison = None;
                row.screening = None;
                row.detectable_ratio = None;
                row.verdict = Verdict::Pass;
            }
        }
        report
    }

    fn rendered(report: &Report, layout: Layout) -> String {
        let mut out = Vec::new();
        render(report, layout, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The table's lines: those drawn with its box characters.
    fn table_lines(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| l.starts_with(['┌', '│', '╞', '└']))
            .collect()
    }

    /// Every line as wide as the others, and column separators at the same places.
    fn assert_aligned(text: &str) {
        let lines = table_lines(text);
        assert!(lines.len() >= 6, "{text}");
        let width = lines[0].chars().count();
        let joints = |l: &str| -> Vec<usize> {
            l.chars()
                .enumerate()
                .filter(|(_, c)| "│┆┬┴╪┌┐└┘╞╡".contains(*c))
                .map(|(i, _)| i)
                .collect()
        };
        for line in &lines {
            assert_eq!(line.chars().count(), width, "{line:?} in\n{text}");
            assert_eq!(joints(line), joints(lines[0]), "{line:?} in\n{text}");
        }
    }

    #[test]
    fn a_long_key_stays_whole_and_aligned_at_natural_width() {
        let text = rendered(&report("check"), Layout::plain());
        assert_aligned(&text);
        assert!(
            table_lines(&text).iter().any(|l| l.contains(LONG_KEY)),
            "{text}"
        );
        assert!(
            !text.contains('\x1b'),
            "no escapes in a plain table: {text}"
        );
        for header in [
            "kernel",
            "median",
            "p95",
            "IQR %",
            "baseline",
            "ratio interval",
        ] {
            assert!(text.contains(header), "{header}: {text}");
        }
        for cell in [
            "regression (2nd)",
            "inconclusive:unsteady",
            "1.500 ms~",
            "1.07",
            "125.0!",
            "+6.8 %",
        ] {
            assert!(text.contains(cell), "{cell}: {text}");
        }
    }

    #[test]
    fn a_narrow_width_wraps_within_it_and_stays_aligned() {
        for width in [60, 120, 140, 170] {
            let text = rendered(
                &report("check"),
                Layout {
                    width: Some(width),
                    colour: false,
                },
            );
            assert_aligned(&text);
            let drawn = table_lines(&text)[0].chars().count();
            assert!(drawn <= width as usize, "{drawn} > {width}:\n{text}");
            // Nothing cut: the key's characters all appear, in order, in its column.
            let key: String = table_lines(&text)
                .iter()
                .filter(|l| l.starts_with('│'))
                .map(|l| l.split('┆').next().unwrap().trim_matches(['│', ' ']))
                .collect();
            assert!(key.contains(LONG_KEY), "{width}: {key}\n{text}");
            if width >= 140 {
                // Room enough: no word of a number, unit or verdict is broken (a rate may wrap
                // between its number and its unit).
                for cell in ["1.010–1.130", "inconclusive:unsteady", "812.25", "GFLOP/s"] {
                    assert!(text.contains(cell), "{width}: {cell}\n{text}");
                }
            }
        }
    }

    #[test]
    fn a_run_has_no_comparison_columns() {
        let text = rendered(&report("run"), Layout::plain());
        assert_aligned(&text);
        let header = table_lines(&text)[1];
        for gone in ["baseline", "ratio", "detects"] {
            assert!(!header.contains(gone), "{gone}: {text}");
        }
        for kept in [
            "median", "p95", "IQR %", "verdict", "rate", "% peak", "FLOP/B",
        ] {
            assert!(header.contains(kept), "{kept}: {text}");
        }
    }

    #[test]
    fn the_lines_below_the_table_stay() {
        let text = rendered(&report("check"), Layout::plain());
        for line in [
            "suspect attention[",
            "regression attention[batch=8,causal=0,heads=16,seq=4096]: within the threshold",
            "unsteady sgemm[",
            "~ after a median",
            "note: a note",
            "ceilings (% peak): peak_bandwidth[n=4194304] 1624.5 GB/s (baseline)",
            "result: 1 regression (exit 1)",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
    }

    #[test]
    fn colour_only_on_verdicts_and_only_when_asked() {
        let layout = Layout {
            width: None,
            colour: true,
        };
        let text = rendered(&report("check"), layout);
        let coloured: Vec<&str> = text.lines().filter(|l| l.contains('\x1b')).collect();
        assert_eq!(coloured.len(), 3, "one per row: {text}");
        // Colour escapes are invisible: the plain text is the uncoloured table.
        let stripped: String = {
            let mut s = String::new();
            let mut chars = text.chars();
            while let Some(c) = chars.next() {
                if c == '\x1b' {
                    chars.by_ref().find(|c| *c == 'm');
                } else {
                    s.push(c);
                }
            }
            s
        };
        assert_eq!(stripped, rendered(&report("check"), Layout::plain()));
    }

    #[test]
    fn no_color_set_and_not_empty_turns_colour_off() {
        assert!(!colour_allowed(false), "never on a pipe");
        // The variable is this process's: read, never set, here.
        let expected = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        assert_eq!(colour_allowed(true), expected);
    }

    #[test]
    fn an_error_report_says_what_failed() {
        let err = crate::Error::baseline(
            std::path::Path::new("base.json"),
            "kernels[0].median_s",
            "not a number",
        );
        let text = rendered(&Report::from_error("check", &err), Layout::plain());
        assert!(text.contains("error    baseline_file: "), "{text}");
        assert!(text.contains("  file   base.json"), "{text}");
        assert!(text.contains("  field  kernels[0].median_s"), "{text}");
        assert!(text.contains("(exit 2)"), "{text}");
        assert!(
            table_lines(&text).is_empty(),
            "no table without rows: {text}"
        );
    }

    #[test]
    fn the_calibration_and_bootstrap_tables_are_drawn_too() {
        let mut r = report("calibrate");
        r.calibration = Some(Calibration {
            checks: 20,
            false_alarms: 0,
            false_alarm_upper95: 0.139,
            alpha: 0.005,
            inconclusive_checks: 1,
            kernels: vec![crate::report::CalibratedKernel {
                key: LONG_KEY.into(),
                threshold: 0.1,
                detectable_ratio: Some(1.05),
                false_alarms: 0,
                inconclusive: 1,
            }],
        });
        r.bootstrap = Some(Bootstrap {
            baseline_file: "baselines/x.json".into(),
            recorded_runs: 10,
            self_checked: true,
            check_runs: 3,
            detectable: vec![crate::report::Detectable {
                key: LONG_KEY.into(),
                threshold: 0.1,
                slowdown_ratio: None,
            }],
        });
        let text = rendered(&r, Layout::plain());
        let sub: Vec<&str> = text.lines().filter(|l| l.starts_with("  │")).collect();
        assert_eq!(sub.len(), 4, "header and one row each: {text}");
        assert!(sub
            .iter()
            .all(|l| l.contains(LONG_KEY) || l.contains("kernel")));
        assert!(text.contains("nothing: too few runs to judge"), "{text}");
        assert!(text.contains("+5.0 %"), "{text}");
    }

    #[test]
    fn ceilings_need_rows_that_use_them() {
        let mut r = report("run");
        for row in &mut r.rows {
            row.pct_of_peak = None;
        }
        r.ceilings = vec![Ceiling {
            unit: Unit::Flops,
            key: "peak_fma[n=1]".into(),
            rate: 10.0,
            source: CeilingSource::Measured,
        }];
        let text = rendered(&r, Layout::plain());
        assert!(!text.contains("ceilings"), "{text}");
        assert!(!table_lines(&text)[1].contains("% peak"), "{text}");
    }
}
