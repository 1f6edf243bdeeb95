//! `gpugate calibrate`: what the gate can see on this device. Per kernel, the smallest
//! regression detected with 95 % power at the suite's α against this baseline; for the suite, the
//! false-alarm rate measured from K cross-process A/A checks, with its Clopper–Pearson upper
//! bound (0 alarms in 20 checks only bounds the rate at 14 %).

use crate::compare::{self, Verdict};
use crate::device::AdapterChoice;
use crate::error::{exit, Result};
use crate::report::{CalibratedKernel, Calibration, Report};
use crate::stats;

use super::{at_least, check, CheckOptions};

/// Confidence of the false-alarm rate's upper bound.
const BOUND_CONFIDENCE: f64 = 0.95;

#[derive(Clone, Debug, PartialEq)]
pub struct CalibrateOptions {
    pub check: CheckOptions,
    /// A/A checks to make, each a full check (its own fresh processes and confirmation round).
    pub checks: usize,
}

/// Run `checks` A/A checks on an unchanged node and report what the gate detects and how often
/// it cries wolf. Exit 1 when the alarms are too many for the design α (even the one-sided 95 %
/// lower bound of their rate exceeds it: the gate is not calibrated for this node as it stands),
/// 3 when every check was inconclusive, 0 otherwise — one alarm in many checks is what an α of
/// 0.5 % predicts now and then.
pub fn calibrate(choice: &AdapterChoice, opts: &CalibrateOptions) -> Result<Report> {
    at_least("--checks", opts.checks, 1)?;
    opts.check.validate()?;
    let mut reports = Vec::with_capacity(opts.checks);
    let progress = crate::progress::steps("calibration check", opts.checks);
    for i in 1..=opts.checks {
        progress.step(i);
        tracing::info!("calibration check {i}/{}", opts.checks);
        reports.push(check(choice, &opts.check)?);
    }
    let first = reports.remove(0);
    let all = std::iter::once(&first).chain(&reports);
    let alarms = all
        .clone()
        .filter(|r| r.rows.iter().any(|row| row.verdict == Verdict::Regression))
        .count();
    let inconclusive_checks = all
        .clone()
        .filter(|r| r.outcome.exit_code == exit::CANNOT_VALIDATE)
        .count();
    let kernels: Vec<CalibratedKernel> = first
        .rows
        .iter()
        .enumerate()
        .map(|(j, row)| {
            let count = |pred: &dyn Fn(&crate::report::Row) -> bool| {
                all.clone()
                    .filter(|r| r.rows.get(j).is_some_and(pred))
                    .count()
            };
            CalibratedKernel {
                key: row.key.clone(),
                threshold: row.comparison.as_ref().map_or(f64::NAN, |c| c.threshold),
                detectable_ratio: row.detectable_ratio,
                false_alarms: count(&|r| r.verdict == Verdict::Regression),
                inconclusive: count(&|r| r.verdict == Verdict::Inconclusive),
            }
        })
        .collect();
    let checks = opts.checks;
    let calibration = Calibration {
        checks,
        false_alarms: alarms,
        false_alarm_upper95: stats::clopper_pearson_upper(alarms, checks, BOUND_CONFIDENCE),
        alpha: opts.check.alpha,
        inconclusive_checks,
        kernels,
    };
    let mut report = first;
    report.command = "calibrate".into();
    let wrong = any_wrong(&report, &reports);
    report.outcome = if wrong {
        compare::GateOutcome {
            verdict: Verdict::WrongResult,
            exit_code: exit::FAIL,
            message: "a kernel computed a wrong result during calibration".into(),
            inconclusive: vec![],
        }
    } else if stats::clopper_pearson_lower(alarms, checks, BOUND_CONFIDENCE) > opts.check.alpha {
        // Even the lower 95 % bound exceeds α: more alarms than a calibrated gate gives.
        compare::GateOutcome {
            verdict: Verdict::Regression,
            exit_code: exit::FAIL,
            message: format!(
                "{alarms} of {checks} A/A checks named a regression on an unchanged node: the \
                 false-alarm rate here is at least {:.2} % (one-sided 95 % bound), above the \
                 design α {:.2} %",
                100.0 * stats::clopper_pearson_lower(alarms, checks, BOUND_CONFIDENCE),
                100.0 * opts.check.alpha
            ),
            inconclusive: vec![],
        }
    } else if inconclusive_checks == checks {
        compare::GateOutcome {
            verdict: Verdict::Inconclusive,
            exit_code: exit::CANNOT_VALIDATE,
            message: format!(
                "all {checks} checks were inconclusive: this node is too noisy for the gate at \
                 these thresholds ({})",
                noisiest(&calibration)
            ),
            inconclusive: vec![],
        }
    } else {
        compare::GateOutcome {
            verdict: Verdict::Pass,
            exit_code: exit::PASS,
            message: format!(
                "{alarms} false alarm(s) in {checks} A/A checks: the suite's false-alarm rate is \
                 below {:.1} % (95 % bound; design α {:.2} %); {inconclusive_checks} check(s) \
                 inconclusive",
                100.0 * calibration.false_alarm_upper95,
                100.0 * opts.check.alpha
            ),
            inconclusive: vec![],
        }
    };
    report.calibration = Some(calibration);
    Ok(report)
}

fn any_wrong(first: &Report, rest: &[Report]) -> bool {
    std::iter::once(first)
        .chain(rest)
        .any(|r| r.rows.iter().any(|row| row.verdict == Verdict::WrongResult))
}

/// The kernels most often inconclusive, for the message.
fn noisiest(c: &Calibration) -> String {
    let mut k: Vec<&CalibratedKernel> = c.kernels.iter().filter(|k| k.inconclusive > 0).collect();
    k.sort_by_key(|k| std::cmp::Reverse(k.inconclusive));
    k.iter()
        .take(5)
        .map(|k| format!("{} {}/{}", k.key, k.inconclusive, c.checks))
        .collect::<Vec<_>>()
        .join(", ")
}
