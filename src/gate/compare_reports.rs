//! `gpugate compare BEFORE.json AFTER.json`: two saved reports judged like a check, critcmp
//! style. BEFORE's run medians play the baseline (one recording session), AFTER's the current
//! runs; each kernel in both is judged by [`compare::compare`], the suite by [`compare::holm`]
//! and [`compare::gate`], so the verdicts and exit codes are `check`'s.

use std::path::{Path, PathBuf};

use crate::baseline;
use crate::compare::{self, Design, GateOutcome, Model, Policy, Require, RunMedians, Verdict};
use crate::error::{Error, Result};
use crate::report::{self, CheckPolicy, Compared, Report};
use crate::runner::{KernelResult, RunResult};
use crate::stats;

use super::{rows, unfit};

/// Fewest runs per side: one run says nothing about run-to-run noise.
pub const MIN_COMPARE_RUNS: usize = 2;

/// `gpugate compare`'s options.
#[derive(Clone, Debug, PartialEq)]
pub struct CompareOptions {
    /// The earlier report, judged as the baseline.
    pub before: PathBuf,
    /// The later report, judged against it.
    pub after: PathBuf,
    /// Practical threshold in percent; None = 5 %, or the software-adapter threshold when AFTER
    /// ran on one (as a recorded baseline there would carry).
    pub threshold_pct: Option<f64>,
    /// Suite-wide false-alarm rate (Holm over the kernels compared).
    pub alpha: f64,
    pub require: Require,
}

impl CompareOptions {
    pub fn new(before: PathBuf, after: PathBuf) -> CompareOptions {
        CompareOptions {
            before,
            after,
            threshold_pct: None,
            alpha: compare::DEFAULT_ALPHA,
            require: Require::All,
        }
    }

    fn validate(&self) -> Result<()> {
        if let Some(t) = self
            .threshold_pct
            .filter(|t| !(t.is_finite() && *t > 0.0 && *t < 1000.0))
        {
            return Err(Error::Usage(format!(
                "--threshold {t}: expected a positive percentage below 1000"
            )));
        }
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            return Err(Error::Usage(format!(
                "--alpha {}: expected a probability in (0, 0.5)",
                self.alpha
            )));
        }
        Ok(())
    }
}

/// A saved report read for comparison: measured, not an error report, every run holding the
/// same kernels in the same order, summaries recomputed from the raw samples.
fn load_side(path: &Path) -> Result<Report> {
    let mut r = report::load(path)?;
    let bad = |field: String, reason: String| Error::ReportFile {
        path: path.to_path_buf(),
        field,
        reason,
    };
    if let Some(e) = &r.error {
        return Err(bad(
            "error".into(),
            format!(
                "is an error report ({}: {}); it measured nothing to compare",
                e.kind, e.message
            ),
        ));
    }
    if r.runs.is_empty() {
        return Err(bad(
            "runs".into(),
            format!(
                "is empty: a {} report with no runs has nothing to compare",
                r.command
            ),
        ));
    }
    let keys: Vec<String> = r.runs[0].kernels.iter().map(|k| k.key.clone()).collect();
    for (i, run) in r.runs.iter_mut().enumerate() {
        let here: Vec<&str> = run.kernels.iter().map(|k| k.key.as_str()).collect();
        if here != keys {
            return Err(bad(
                format!("runs[{i}].kernels"),
                format!("lists {here:?}, but runs[0] lists {keys:?}: runs must measure the same kernels"),
            ));
        }
        for (j, k) in run.kernels.iter_mut().enumerate() {
            resummarise(k).map_err(|(field, reason)| {
                bad(format!("runs[{i}].kernels[{j}].{field}"), reason)
            })?;
        }
    }
    for (i, row) in r.rows.iter().enumerate() {
        if !keys.contains(&row.key) {
            return Err(bad(
                format!("rows[{i}].key"),
                format!("{:?} is not among the kernels its runs measured", row.key),
            ));
        }
    }
    Ok(r)
}

/// No derived number trusted: a kernel's summary is what its raw samples give.
fn resummarise(k: &mut KernelResult) -> std::result::Result<(), (String, String)> {
    let samples = &k.measurement.samples_s;
    if samples.is_empty() {
        return Err(("measurement.samples_s".into(), "is empty".into()));
    }
    let range = baseline::MIN_TIME_S..=baseline::MAX_TIME_S;
    if let Some((n, v)) = samples.iter().enumerate().find(|(_, v)| !range.contains(v)) {
        return Err((
            format!("measurement.samples_s[{n}]"),
            format!(
                "must be a positive, finite time in seconds from {:e} to {}, found {v:e}",
                baseline::MIN_TIME_S,
                baseline::MAX_TIME_S
            ),
        ));
    }
    k.summary = stats::summarize(samples);
    Ok(())
}

/// Every run's result for kernel `j`.
fn per_run(runs: &[RunResult], j: usize) -> Vec<&KernelResult> {
    runs.iter().map(|r| &r.kernels[j]).collect()
}

/// Compare two saved reports: per kernel in both, Δ %, interval and verdict; exit codes as
/// `check` (0 pass, 1 regression or wrong result, 3 inconclusive or nothing comparable).
pub fn compare_reports(opts: &CompareOptions) -> Result<Report> {
    opts.validate()?;
    let before = load_side(&opts.before)?;
    let after = load_side(&opts.after)?;
    let name = |p: &Path| p.display().to_string();
    let mut notes = vec![];

    // Kernels in both (by index into each side's runs), in AFTER's order; the rest are listed,
    // not judged. A report's kernels are its rows: its runs also hold the ceiling kernels that
    // `--kernel` left out, which were measured for % of peak, not asked about.
    let index = |side: &Report, key: &str| side.runs[0].kernels.iter().position(|k| k.key == key);
    let common: Vec<(usize, usize)> = after
        .rows
        .iter()
        .filter_map(|row| Some((index(&before, &row.key)?, index(&after, &row.key)?)))
        .filter(|&(b, _)| {
            before
                .rows
                .iter()
                .any(|r| r.key == before.runs[0].kernels[b].key)
        })
        .collect();
    let only = |side: &Report, other: &Report| -> Vec<String> {
        side.rows
            .iter()
            .filter(|r| !other.rows.iter().any(|o| o.key == r.key))
            .map(|r| r.key.clone())
            .collect()
    };
    for (list, path) in [
        (only(&before, &after), &opts.before),
        (only(&after, &before), &opts.after),
    ] {
        if !list.is_empty() {
            notes.push(format!(
                "only in {}, not compared: {}",
                name(path),
                list.join(", ")
            ));
        }
    }
    // Run-to-run noise needs at least two runs on each side of every kernel judged.
    if let Some(&(_, a)) = common.first() {
        let key = &after.runs[0].kernels[a].key;
        for (side, path) in [(&before, &opts.before), (&after, &opts.after)] {
            if side.runs.len() < MIN_COMPARE_RUNS {
                return Err(Error::ReportFile {
                    path: path.clone(),
                    field: "runs".into(),
                    reason: format!(
                        "{key} has {} run; compare needs at least {MIN_COMPARE_RUNS} per side: \
                         `{} run --runs 3 --json {}`",
                        side.runs.len(),
                        crate::error::invoked_as(),
                        name(path)
                    ),
                });
            }
        }
    }
    note_devices(&mut notes, &before, &after);

    // Either side on a software adapter: processes there settle up to 2× apart, so its
    // threshold applies whichever side it is.
    let software = [&before, &after]
        .iter()
        .any(|r| r.fingerprint.as_ref().is_some_and(|f| f.is_software()));
    let threshold = opts
        .threshold_pct
        .or(software.then_some(baseline::SOFTWARE_THRESHOLD_PCT))
        .map_or(compare::DEFAULT_THRESHOLD, |p| p / 100.0);
    let policy = Policy {
        threshold,
        alpha: opts.alpha,
    };
    let models: Vec<Model> = common
        .iter()
        .map(|&(b, _)| {
            let medians = RunMedians::from_summaries(
                per_run(&before.runs, b).into_iter().map(|k| &k.summary),
            );
            Model::fit(&medians, &vec![0; before.runs.len()])
        })
        .collect();
    notes.push(format!(
        "{} is fitted as one recording session: a shift of a whole invocation (clocks, another \
         machine) is not estimated and reads as a change, so compare builds measured on the \
         same machine",
        name(&opts.before)
    ));
    let mut comparisons: Vec<compare::Comparison> = common
        .iter()
        .zip(&models)
        .map(|(&(b, a), model)| {
            let now = per_run(&after.runs, a);
            let current = RunMedians::from_summaries(now.iter().map(|k| &k.summary));
            let mut c = compare::compare(model, &current, policy);
            // Either side's runs unfit to compare, named by its file.
            let side = |path: &Path, runs: &[&KernelResult]| {
                unfit(runs).map(|(reason, why)| (reason, format!("{}: {why}", name(path))))
            };
            let unfit =
                side(&opts.before, &per_run(&before.runs, b)).or_else(|| side(&opts.after, &now));
            if let Some((reason, why)) = unfit {
                c.set_inconclusive(reason, why);
            }
            c
        })
        .collect();
    let family = comparisons.len();
    compare::holm(
        &mut comparisons.iter_mut().collect::<Vec<_>>(),
        opts.alpha,
        family,
    );

    // Rows from AFTER's runs (its verification, rate, spread), judged against BEFORE's.
    let all_rows = rows(&after.runs, |_| None);
    let mut rows = vec![];
    for ((&(b, a), c), model) in common.iter().zip(comparisons).zip(&models) {
        let mut row = all_rows[a].clone();
        row.verdict = if row.verification.ok {
            c.verdict
        } else {
            Verdict::WrongResult
        };
        row.comparison = Some(c);
        row.baseline_run_medians_s = per_run(&before.runs, b)
            .iter()
            .map(|k| k.summary.median_s)
            .collect();
        let design = Design {
            check_runs: after.runs.len(),
            confirm_runs: 0,
            family,
        };
        row.detectable_ratio =
            compare::detectable_slowdown(model, design, policy, compare::DETECTION_POWER);
        if let Some(bad) = per_run(&before.runs, b).iter().find(|k| !k.verification.ok) {
            notes.push(format!(
                "{}: {} computed a wrong result ({}), so its times are of a broken kernel",
                row.key,
                name(&opts.before),
                bad.verification.detail
            ));
        }
        rows.push(row);
    }
    note_measured_unlike(&mut notes, &before, &after, &common);
    notes.extend(report::apply_peaks(&mut rows, &after.ceilings));

    let judged = super::judged_rows(&rows);
    let mut outcome: GateOutcome = compare::gate(&judged, opts.require);
    if judged.is_empty() {
        outcome.message = format!(
            "no kernel in both {} and {}: nothing compared",
            name(&opts.before),
            name(&opts.after)
        );
    }
    Ok(Report {
        schema_version: report::REPORT_SCHEMA_VERSION,
        command: "compare".into(),
        device_key: after.device_key.clone(),
        fingerprint: after.fingerprint.clone(),
        gpu: after.gpu.clone(),
        shader_checks: after.shader_checks,
        finished_at: Some(chrono::Utc::now()),
        error: None,
        baseline_file: None,
        notes,
        rows,
        unsupported: after.unsupported.clone(),
        ceilings: after.ceilings.clone(),
        outcome,
        bootstrap: None,
        calibration: None,
        driver_change: None,
        policy: Some(CheckPolicy {
            runs: after.runs.len(),
            confirm_runs: 0,
            alpha: opts.alpha,
            family,
            require_conclusive: opts.require.to_string(),
            suspects: vec![],
        }),
        compared: Some(Compared {
            before: name(&opts.before),
            after: name(&opts.after),
        }),
        sweep: None,
        runs: after.runs,
        confirmation_runs: vec![],
    })
}

/// critcmp compares anything; gpugate says when the two sides ran on different devices or drivers.
fn note_devices(notes: &mut Vec<String>, before: &Report, after: &Report) {
    let (Some(b), Some(a)) = (&before.fingerprint, &after.fingerprint) else {
        return;
    };
    if before.device_key != after.device_key {
        notes.push(format!(
            "different devices: {:?} before, {:?} after: the comparison is across hardware",
            before.device_key.as_deref().unwrap_or("?"),
            after.device_key.as_deref().unwrap_or("?")
        ));
    } else if b.driver_string() != a.driver_string() {
        notes.push(format!(
            "different drivers: {:?} before, {:?} after",
            b.driver_string(),
            a.driver_string()
        ));
    }
}

/// What differs in how a kernel was measured or what code ran: said, not refused (two `run`s
/// size their batches independently, and comparing two versions of a kernel is the point).
fn note_measured_unlike(
    notes: &mut Vec<String>,
    before: &Report,
    after: &Report,
    common: &[(usize, usize)],
) {
    for &(b, a) in common {
        let (then, now) = (&before.runs[0].kernels[b], &after.runs[0].kernels[a]);
        let m = &then.measurement;
        if let Some((field, now_v, then_v)) =
            baseline::unlike(&now.measurement, (m.batch, m.slots, m.timing))
        {
            notes.push(format!(
                "{}: measured with {field} {now_v} after, {then_v} before (times are per \
                 iteration either way)",
                now.key
            ));
        }
        if !then.kernel_hash.is_empty()
            && !now.kernel_hash.is_empty()
            && then.kernel_hash != now.kernel_hash
        {
            notes.push(format!(
                "{}: the kernel's code differs between the two (kernel_hash)",
                now.key
            ));
        }
    }
}
