//! Recording baselines: `record` (a new file, or new kernels merged into one), `record --append`
//! (a later session's runs added to the same kernels), and the first-run bootstrap of `check
//! --record-missing`.

use std::path::PathBuf;

use crate::baseline::{self, Baseline};
use crate::compare::{GateOutcome, Verdict};
use crate::device::{AdapterChoice, Gpu};
use crate::error::{exit, Error, Result};
use crate::report::{self, Report};
use crate::runner::{Plan, PlanItem};
use crate::workload::{self, suite::Suite};

use super::{
    at_least, check, correctness_outcome, measure_fresh, note_unsupported, rows, suite_plan,
    supported, CheckOptions, MeasureOptions,
};

/// `gpugate record`'s options.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordOptions {
    pub suite: Suite,
    pub runs: usize,
    /// The file to write or update [default: BASELINES/<device-key>.json].
    pub out: Option<PathBuf>,
    pub baselines: PathBuf,
    /// Add a new session's runs to the kernels of an existing file instead of replacing them.
    pub append: bool,
    pub measure: MeasureOptions,
}

/// Measure in independent processes, write or merge (or append to) the file, report.
pub fn record(choice: &AdapterChoice, opts: &RecordOptions) -> Result<Report> {
    at_least("--runs", opts.runs, baseline::MIN_RUNS)?;
    opts.measure.validate()?;
    let gpu = Gpu::open(choice)?;
    let fingerprint = gpu.fingerprint.clone();
    let identity = gpu.identity();
    let key = fingerprint.device_key();
    let path = opts
        .out
        .clone()
        .unwrap_or_else(|| opts.baselines.join(format!("{key}.json")));
    // Read an existing file before measuring, so a broken one fails fast.
    let existing = if path.is_file() {
        let old = baseline::load(&path)?;
        if old.device_key != key {
            return Err(Error::baseline(
                &path,
                "device_key",
                format!(
                    "file belongs to {:?}, this device is {key:?}; use another --out",
                    old.device_key
                ),
            ));
        }
        Some(old)
    } else if opts.append {
        return Err(Error::Usage(format!(
            "--append: {} does not exist; record it first",
            path.display()
        )));
    } else {
        None
    };
    let (plan, unsupported) = match (&existing, opts.append) {
        (Some(old), true) => append_plan(&gpu, old, &path, &opts.measure)?,
        _ => suite_plan(&gpu, opts.suite, &opts.measure)?,
    };
    drop(gpu); // children open their own device
    let results = measure_fresh(choice, &key, &plan, opts.runs)?;
    let mut rows = rows(&results, |_| None);
    let ceilings = report::measured_ceilings(&rows);
    let above_ceiling = report::apply_peaks(&mut rows, &ceilings);
    let mut outcome = correctness_outcome(&rows);
    let mut notes: Vec<String> = rows
        .iter()
        .enumerate()
        .filter_map(|(j, row)| {
            let why: Vec<String> = results
                .iter()
                .filter_map(|r| baseline::unfit(&r.kernels[j]))
                .collect();
            (!why.is_empty()).then(|| {
                format!(
                    "{}: {} of {} runs left out of the baseline ({})",
                    row.key,
                    why.len(),
                    results.len(),
                    why.join("; ")
                )
            })
        })
        .collect();
    notes.extend(above_ceiling);
    if outcome.exit_code == exit::PASS {
        let written = match existing {
            Some(old) => {
                if old.fingerprint.driver_string() != fingerprint.driver_string() {
                    notes.push(format!(
                        "driver changed since the previous recording: {} → {}",
                        old.fingerprint.driver_string(),
                        fingerprint.driver_string()
                    ));
                }
                if opts.append {
                    baseline::append(old, &results)?
                } else {
                    baseline::merge(old, baseline::from_runs(&results)?)
                }
            }
            None if fingerprint.is_software() => Baseline {
                threshold_pct: Some(baseline::SOFTWARE_THRESHOLD_PCT),
                note: Some(baseline::SOFTWARE_NOTE.into()),
                ..baseline::from_runs(&results)?
            },
            None => baseline::from_runs(&results)?,
        };
        baseline::save(&path, &written)?;
        outcome.message = format!(
            "{}; wrote {}{}",
            outcome.message,
            path.display(),
            if opts.append {
                format!(" (added session {})", written.sessions.len())
            } else {
                String::new()
            }
        );
    } else {
        outcome.message = format!("{}; baseline not written", outcome.message);
    }
    note_unsupported(&mut outcome, &unsupported);
    let mut report = Report::new("record", fingerprint, outcome, rows, unsupported, results);
    report.gpu = identity;
    report.ceilings = ceilings;
    report.baseline_file = Some(path.display().to_string());
    report.notes = notes;
    Ok(report)
}

/// The baseline's own kernels (or those of `--kernel`), measured exactly as they were recorded.
fn append_plan(
    gpu: &Gpu,
    old: &Baseline,
    path: &std::path::Path,
    measure: &MeasureOptions,
) -> Result<(Plan, Vec<report::Unsupported>)> {
    let mut items = vec![];
    let mut unsupported = vec![];
    for k in &old.kernels {
        if !measure.kernels.is_empty() && !measure.kernels.contains(&k.kernel) {
            continue;
        }
        let kernel = workload::find(&k.kernel)?;
        if k.kernel_hash
            .as_ref()
            .is_some_and(|h| *h != workload::kernel_hash(kernel, gpu.shader_checks))
        {
            return Err(Error::CannotValidate(format!(
                "kernel changed: {} in {} measured other code; re-record it (without --append)",
                k.key,
                path.display()
            )));
        }
        if let Err(u) = supported(gpu, kernel, &k.params) {
            unsupported.push(u);
            continue;
        }
        items.push(PlanItem {
            kernel: k.kernel.clone(),
            params: k.params.clone(),
            batch: Some(k.batch),
            slots: Some(k.slots),
            timing: Some(k.timing),
            repeat: measure.repeat(&k.kernel),
        });
    }
    Ok((
        Plan {
            items,
            sampler: measure.sampler(gpu),
        },
        unsupported,
    ))
}

/// The first run on a device without a baseline (`check --record-missing`).
#[derive(Clone, Debug, PartialEq)]
pub struct BootstrapOptions {
    pub suite: Suite,
    pub record_runs: usize,
    /// Under CI a bootstrap writes the file and stops with exit 3: a throwaway runner never
    /// passes by baselining itself.
    pub ci: bool,
}

/// Record a baseline, then self-check against it in fresh processes, judged like any check;
/// under CI stop after writing it (exit 3).
pub fn bootstrap(
    choice: &AdapterChoice,
    check_opts: &CheckOptions,
    opts: &BootstrapOptions,
) -> Result<Report> {
    at_least("--record-runs", opts.record_runs, baseline::MIN_RUNS)?;
    check_opts.validate()?;
    let key = Gpu::open(choice)?.fingerprint.device_key();
    let path = baseline::bootstrap_path(&check_opts.baselines, &key)?;
    // Minutes of measuring must not end in "cannot write": try the directory first.
    baseline::ensure_writable(&path)?;
    tracing::info!(
        device_key = %key,
        file = %path.display(),
        runs = opts.record_runs,
        "no baseline for this device: recording one, each run in a fresh process"
    );
    let mut recorded = record(
        choice,
        &RecordOptions {
            suite: opts.suite,
            runs: opts.record_runs,
            out: Some(path.clone()),
            baselines: check_opts.baselines.clone(),
            append: false,
            measure: check_opts.measure.clone(),
        },
    )?;
    // Whatever path returns it, this is the report of the `check` the user ran.
    recorded.command = "check".into();
    if recorded.outcome.exit_code != exit::PASS {
        return Ok(recorded); // a wrong result: nothing was written, the report says why
    }
    let written = baseline::load(&path)?;
    let check_opts = CheckOptions {
        baselines: path.clone(),
        ..check_opts.clone()
    };
    let summary = report::Bootstrap {
        baseline_file: path.display().to_string(),
        recorded_runs: opts.record_runs,
        self_checked: !opts.ci,
        check_runs: check_opts.runs,
        detectable: detectable(&written, &check_opts),
    };
    if opts.ci {
        recorded.outcome = GateOutcome {
            verdict: Verdict::Inconclusive,
            exit_code: exit::CANNOT_VALIDATE,
            message: format!(
                "CI: recorded {} but validated nothing: a bootstrap never passes in CI. Commit \
                 that file (keep it as a job artifact) and the next run is a gate",
                path.display()
            ),
            inconclusive: vec![],
        };
        note_unsupported(&mut recorded.outcome, &recorded.unsupported);
        recorded.bootstrap = Some(summary);
        return Ok(recorded);
    }
    tracing::info!("self-check against the new baseline in fresh processes");
    let mut report = match check(choice, &check_opts) {
        Ok(report) => report,
        // The file is written either way; say so, with what the recording measured.
        Err(e) => {
            recorded.outcome = GateOutcome {
                verdict: Verdict::Inconclusive,
                exit_code: e.exit_code(),
                message: format!(
                    "recorded {}, but the self-check against it failed: {e}",
                    path.display()
                ),
                inconclusive: vec![],
            };
            recorded.bootstrap = Some(report::Bootstrap {
                self_checked: false,
                ..summary
            });
            return Ok(recorded);
        }
    };
    // What the recording could not run on this adapter was never in the baseline: say so here.
    if report.unsupported.is_empty() && !recorded.unsupported.is_empty() {
        report.unsupported = recorded.unsupported;
        note_unsupported(&mut report.outcome, &report.unsupported);
    }
    report.outcome.message = format!(
        "bootstrap self-check: {}{}",
        report.outcome.message,
        if report.outcome.exit_code == exit::PASS {
            ""
        } else {
            " (the baseline is written; re-record it on a quieter node before committing it)"
        }
    );
    report.bootstrap = Some(summary);
    Ok(report)
}

/// Per kernel of `base`: the smallest slowdown a check made with `opts` detects, at the
/// threshold it would be judged by, over the whole file as Holm's family.
pub(crate) fn detectable(base: &Baseline, opts: &CheckOptions) -> Vec<report::Detectable> {
    let family = base.kernels.len();
    base.kernels
        .iter()
        .map(|k| report::Detectable {
            key: k.key.clone(),
            threshold: opts.threshold(base, k),
            slowdown_ratio: opts.detectable(base, k, &k.model(), family),
        })
        .collect()
}
