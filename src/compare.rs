//! The decision rule: one kernel's verdict against its baseline, suite-wide error control over
//! all kernels (Holm), and the rule's power (the smallest slowdown it detects).
//!
//! The unit of evidence is a *run median* (one process). Between processes a kernel's time varies
//! more than within one, so the noise used here is the spread of run medians across processes —
//! within each speed mode the baseline recorded, within each recording session, and with the
//! session-to-session variance when the baseline holds several sessions — never smaller than the
//! within-run error of a median. A kernel regressed when its slowdown is beyond the practical
//! threshold and significant at the suite's Holm-adjusted α; when the noise is so large that a
//! threshold-sized change could hide in it, the answer is *inconclusive*, with a reason, never
//! pass. The formulas are in docs/statistics.md.

use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::error::exit;
use crate::stats;

/// Default practical threshold: a 5 % slowdown.
pub const DEFAULT_THRESHOLD: f64 = 0.05;
/// Suite-wide one-sided false-alarm rate: the probability that an A/A check names any kernel as
/// regressed, whatever the number of kernels (Holm), is at most this.
pub const DEFAULT_ALPHA: f64 = 0.005;
/// The power at which detectable slowdowns are quoted: a slowdown of that size or more is called
/// a regression in at least 95 % of checks.
pub const DETECTION_POWER: f64 = 0.95;
/// A round-1 kernel is a suspect, and re-measured, when it looks slower than this fraction of
/// its threshold (in log units): a regression of threshold size is picked almost surely, an A/A
/// kernel rarely (a few % at the noise levels where the gate is conclusive).
pub const SUSPECT_FRACTION: f64 = 0.5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Improvement,
    Inconclusive,
    Regression,
    /// The kernel computed a wrong result: fails whatever the timing.
    WrongResult,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Improvement => "improvement",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Regression => "regression",
            Verdict::WrongResult => "wrong_result",
        }
    }

    pub fn fails(self) -> bool {
        matches!(self, Verdict::Regression | Verdict::WrongResult)
    }
}

/// Why a kernel is inconclusive: every inconclusive verdict carries one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The noise margin exceeds the threshold: a threshold-sized change could hide in it.
    Noise,
    /// As `Noise`, on a kernel whose processes settle in several speed modes.
    Bimodal,
    /// No degrees of freedom for run-to-run noise (one run on each side).
    TooFewRuns,
    /// A current run's warm-up did not settle: never compared.
    Unsteady,
    /// Other processes used the GPU around a run: never compared.
    Contended,
    /// Slower than the threshold, but not significant at the suite's Holm-adjusted α.
    NotSignificant,
    /// A timing was not a positive finite number: never compared, never a pass.
    Invalid,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::Noise,
        Reason::Bimodal,
        Reason::TooFewRuns,
        Reason::Unsteady,
        Reason::Contended,
        Reason::NotSignificant,
        Reason::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Noise => "noise",
            Reason::Bimodal => "bimodal",
            Reason::TooFewRuns => "too_few_runs",
            Reason::Unsteady => "unsteady",
            Reason::Contended => "contended",
            Reason::NotSignificant => "not_significant",
            Reason::Invalid => "invalid",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// Practical threshold as a fraction (0.05 = 5 % slower).
    pub threshold: f64,
    /// Suite-wide α (see [`DEFAULT_ALPHA`]); one kernel alone is tested at this level.
    pub alpha: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            threshold: DEFAULT_THRESHOLD,
            alpha: DEFAULT_ALPHA,
        }
    }
}

impl Policy {
    fn limit(&self) -> f64 {
        (1.0 + self.threshold).ln()
    }
}

/// The evidence from one side: each run's median and its within-run standard error (log units).
#[derive(Clone, Debug, PartialEq)]
pub struct RunMedians {
    pub medians_s: Vec<f64>,
    pub within_log_se: Vec<f64>,
}

impl RunMedians {
    pub fn from_summaries<'a>(summaries: impl IntoIterator<Item = &'a stats::Summary>) -> Self {
        let (medians_s, within_log_se) = summaries
            .into_iter()
            .map(|s| (s.median_s, stats::within_run_log_se(s)))
            .unzip();
        RunMedians {
            medians_s,
            within_log_se,
        }
    }

    fn logs(&self) -> Vec<f64> {
        self.medians_s.iter().map(|m| m.ln()).collect()
    }

    /// Geometric mean of the run medians: the central time used for ratios.
    pub fn center_s(&self) -> f64 {
        mean(&self.logs()).exp()
    }

    fn valid(&self) -> bool {
        !self.medians_s.is_empty()
            && self.medians_s.len() == self.within_log_se.len()
            && self.medians_s.iter().all(|m| m.is_finite() && *m > 0.0)
            && self
                .within_log_se
                .iter()
                .all(|s| s.is_finite() && *s >= 0.0)
    }
}

/// Root mean square from a sum of squares over `n` values.
fn rms(sum_of_squares: f64, n: usize) -> f64 {
    (sum_of_squares / n.max(1) as f64).sqrt()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// A speed mode of a baseline: processes that settled at the same speed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mode {
    /// Geometric mean of the mode's run medians.
    pub center_s: f64,
    pub runs: usize,
}

/// What a baseline says about one kernel's noise: its speed modes, the run-to-run variance
/// within a mode and session, and the session-to-session variance.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// Log centre and run count of each mode, fastest first.
    centers: Vec<f64>,
    counts: Vec<usize>,
    /// Sum of squared within-mode, within-session log residuals, and its degrees of freedom.
    ss: f64,
    df: usize,
    /// Session-to-session variance of a mode's centre (0 with one session) and its df.
    tau2: f64,
    df_tau: usize,
    sessions: usize,
    /// Sum of squared within-run standard errors of the baseline's runs, and their RMS.
    within_ss: f64,
    within: f64,
    runs: usize,
    valid: bool,
}

impl Model {
    /// Fit a baseline's runs (`sessions[i]` labels run i's recording session).
    pub fn fit(baseline: &RunMedians, sessions: &[u32]) -> Model {
        let valid = baseline.valid() && sessions.len() == baseline.medians_s.len();
        let logs = baseline.logs();
        let groups = if valid {
            stats::modes(&baseline.medians_s)
        } else {
            vec![(0..logs.len()).collect()]
        };
        let mut centers = Vec::new();
        let mut counts = Vec::new();
        let mut mode_of = vec![0; logs.len()];
        for (k, g) in groups.iter().enumerate() {
            centers.push(mean(&g.iter().map(|&i| logs[i]).collect::<Vec<_>>()));
            counts.push(g.len());
            for &i in g {
                mode_of[i] = k;
            }
        }
        let residual: Vec<f64> = (0..logs.len())
            .map(|i| logs[i] - centers[mode_of[i]])
            .collect();
        // Sessions: each session's mean residual, then residuals around it.
        let mut ids: Vec<u32> = sessions.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let session_means: Vec<(f64, usize)> = ids
            .iter()
            .map(|id| {
                let r: Vec<f64> = (0..logs.len())
                    .filter(|&i| sessions.get(i) == Some(id))
                    .map(|i| residual[i])
                    .collect();
                (mean(&r), r.len())
            })
            .collect();
        let s = ids.len().max(1);
        let (ss, df): (f64, usize) = if s >= 2 {
            let ss = (0..logs.len())
                .map(|i| {
                    let k = ids
                        .iter()
                        .position(|id| Some(id) == sessions.get(i))
                        .unwrap_or(0);
                    (residual[i] - session_means[k].0).powi(2)
                })
                .sum();
            (ss, logs.len().saturating_sub(centers.len() + s - 1))
        } else {
            (
                residual.iter().map(|r| r * r).sum(),
                logs.len().saturating_sub(centers.len()),
            )
        };
        let within_ss: f64 = baseline.within_log_se.iter().map(|s| s * s).sum();
        let within = rms(within_ss, logs.len());
        // Session means vary by τ² plus their own run noise σ²/n_s: subtract that part.
        let (tau2, df_tau) = if s >= 2 && df > 0 {
            let means: Vec<f64> = session_means.iter().map(|m| m.0).collect();
            let grand = mean(&means);
            let var = means.iter().map(|m| (m - grand).powi(2)).sum::<f64>() / (s - 1) as f64;
            let sigma2 = (ss / df as f64).max(within * within);
            let run_part = sigma2
                * mean(
                    &session_means
                        .iter()
                        .map(|m| 1.0 / m.1 as f64)
                        .collect::<Vec<_>>(),
                );
            ((var - run_part).max(0.0), s - 1)
        } else {
            (0.0, 0)
        };
        Model {
            centers,
            counts,
            ss,
            df,
            tau2,
            df_tau,
            sessions: s,
            within_ss,
            within,
            runs: logs.len(),
            valid,
        }
    }

    /// The recorded speed modes (one for most kernels).
    pub fn modes(&self) -> Vec<Mode> {
        self.centers
            .iter()
            .zip(&self.counts)
            .map(|(c, &runs)| Mode {
                center_s: c.exp(),
                runs,
            })
            .collect()
    }

    pub fn sessions(&self) -> usize {
        self.sessions
    }

    /// The session-to-session sd of a mode's centre (log units; 0 with one session): what a
    /// new session, or a new node against a pooled baseline, adds to a verdict's noise.
    pub fn session_sd(&self) -> f64 {
        self.tau2.sqrt()
    }

    /// The run-to-run sd of a run median (log units), as the baseline alone estimates it.
    pub fn run_sd(&self) -> f64 {
        let observed = if self.df > 0 {
            (self.ss / self.df as f64).sqrt()
        } else {
            0.0
        };
        observed.max(self.within)
    }

    fn nearest(&self, y: f64) -> usize {
        (0..self.centers.len())
            .min_by(|&a, &b| {
                (y - self.centers[a])
                    .abs()
                    .total_cmp(&(y - self.centers[b]).abs())
            })
            .unwrap_or(0)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
/// Numbers that cannot be computed (an invalid input) are NaN, written as null in JSON.
pub struct Comparison {
    #[serde(with = "nan_as_null")]
    pub baseline_s: f64,
    #[serde(with = "nan_as_null")]
    pub current_s: f64,
    /// current / baseline: above 1 is slower.
    #[serde(with = "nan_as_null")]
    pub ratio: f64,
    /// Two-sided (1 − 2·alpha) interval of the ratio.
    #[serde(with = "nan_as_null")]
    pub ratio_low: f64,
    #[serde(with = "nan_as_null")]
    pub ratio_high: f64,
    pub threshold: f64,
    /// Estimated run-to-run relative standard deviation of a run median.
    #[serde(with = "nan_as_null")]
    pub noise_rel: f64,
    pub baseline_runs: usize,
    pub current_runs: usize,
    /// One-sided p-value of "no slowdown" (NaN when it cannot be computed).
    #[serde(default = "nan", with = "nan_as_null")]
    pub p_value: f64,
    /// Degrees of freedom of the noise estimate.
    #[serde(default, with = "nan_as_null")]
    pub df: f64,
    /// The α a regression was tested at: the suite's Holm-adjusted level once the suite is
    /// judged (NaN, null in JSON, for a kernel that never looked regressed).
    #[serde(default = "nan", with = "nan_as_null")]
    pub tested_alpha: f64,
    /// The baseline's speed modes, when it has more than one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modes: Vec<Mode>,
    /// Recording sessions in the baseline.
    #[serde(default = "one")]
    pub sessions: usize,
    pub verdict: Verdict,
    /// Why an inconclusive verdict is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inconclusive: Option<Reason>,
    pub reason: String,
}

fn nan() -> f64 {
    f64::NAN
}

fn one() -> usize {
    1
}

/// NaN is not JSON: written as null, read back as NaN.
pub(crate) mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

impl Comparison {
    /// Mark inconclusive for a reason found outside the statistics (unsteady, contended).
    pub fn set_inconclusive(&mut self, reason: Reason, why: impl Into<String>) {
        self.verdict = Verdict::Inconclusive;
        self.inconclusive = Some(reason);
        self.reason = why.into();
    }

    /// A round-1 result worth re-measuring before the verdict is final.
    pub fn is_suspect(&self) -> bool {
        self.ratio.is_finite()
            && self.ratio.ln() > SUSPECT_FRACTION * (1.0 + self.threshold).ln()
            && !matches!(
                self.inconclusive,
                Some(Reason::Invalid | Reason::Unsteady | Reason::Contended)
            )
    }
}

/// The noise estimate and the slowdown of `current` against `model`: (d, se, df, s).
struct Estimate {
    d: f64,
    se: f64,
    df: f64,
    s: f64,
    baseline_log: f64,
}

fn estimate(model: &Model, current: &RunMedians) -> Estimate {
    let m = current.medians_s.len();
    let ys = current.logs();
    // Each current run is judged against the mode nearest to it.
    let mut assigned = vec![0usize; model.centers.len()];
    let residual: Vec<f64> = ys
        .iter()
        .map(|&y| {
            let k = model.nearest(y);
            assigned[k] += 1;
            y - model.centers[k]
        })
        .collect();
    let d = mean(&residual);
    let ss_c: f64 = residual.iter().map(|r| (r - d).powi(2)).sum();
    let df_s = model.df + m.saturating_sub(1);
    let pooled = if df_s > 0 {
        (model.ss + ss_c) / df_s as f64
    } else {
        0.0
    };
    // A run median is never more certain than its own sampling error: the floor is the
    // within-run error of a typical run (root mean square over both sides), not the worst run's,
    // which one drifting run would let blunt the whole comparison.
    let within = rms(
        model.within_ss + current.within_log_se.iter().map(|s| s * s).sum::<f64>(),
        model.runs + m,
    );
    let s = pooled.sqrt().max(within);
    // Var(d) = σ²·(1/m + Σ_k (c_k/m)²/n_k) + τ²·(1 + 1/S): the current runs, the centres of the
    // modes they were judged against, and a new session's offset plus the baseline's mean one.
    let centre_var: f64 = assigned
        .iter()
        .zip(&model.counts)
        .map(|(&c, &n)| (c as f64 / m as f64).powi(2) / n as f64)
        .sum();
    let a = s * s * (1.0 / m as f64 + centre_var);
    let b = model.tau2 * (1.0 + 1.0 / model.sessions as f64);
    let se = (a + b).sqrt();
    // Welch–Satterthwaite degrees of freedom when the session term is present.
    let df = if b > 0.0 && model.df_tau > 0 && df_s > 0 {
        (a + b).powi(2) / (a * a / df_s as f64 + b * b / model.df_tau as f64)
    } else {
        df_s as f64
    };
    let main = assigned
        .iter()
        .enumerate()
        .max_by_key(|(_, &c)| c)
        .map_or(0, |(k, _)| k);
    Estimate {
        d,
        se,
        df,
        s,
        baseline_log: model.centers[main],
    }
}

/// One kernel's verdict, as if it were tested alone at `policy.alpha`; [`holm`] then applies the
/// suite-wide correction. Never a pass on a non-finite input.
pub fn compare(model: &Model, current: &RunMedians, policy: Policy) -> Comparison {
    let (n, m) = (model.runs, current.medians_s.len());
    let invalid = !model.valid || !current.valid();
    let e = if invalid {
        Estimate {
            d: f64::NAN,
            se: f64::NAN,
            df: 0.0,
            s: f64::NAN,
            baseline_log: f64::NAN,
        }
    } else {
        estimate(model, current)
    };
    let t = if e.df > 0.0 && e.df.is_finite() {
        StudentsT::new(0.0, 1.0, e.df)
            .map(|dist| {
                (
                    dist.inverse_cdf(1.0 - policy.alpha),
                    1.0 - dist.cdf(e.d / e.se),
                )
            })
            .ok()
    } else {
        None
    };
    let limit = policy.limit();
    let pct = |x: f64| (x.exp() - 1.0) * 100.0;
    let bimodal = model.centers.len() > 1;
    let (margin, p_value) = t.map_or((f64::INFINITY, f64::NAN), |(t, p)| (t * e.se, p));
    let (verdict, inconclusive, reason) = if invalid || !e.d.is_finite() || !e.se.is_finite() {
        (
            Verdict::Inconclusive,
            Some(Reason::Invalid),
            "a timing is not a positive finite number: not compared".to_string(),
        )
    } else if t.is_none() {
        (
            Verdict::Inconclusive,
            Some(Reason::TooFewRuns),
            format!("{n} + {m} runs leave no degrees of freedom for run-to-run noise"),
        )
    } else if e.d > limit && e.d > margin {
        (
            Verdict::Regression,
            None,
            format!(
                "{:+.1} % slower, beyond the {:.1} % threshold and the ±{:.1} % noise margin",
                pct(e.d),
                policy.threshold * 100.0,
                pct(margin)
            ),
        )
    } else if e.d < -limit && -e.d > margin {
        (
            Verdict::Improvement,
            None,
            format!("{:.1} % faster, beyond threshold and noise", -pct(e.d)),
        )
    } else if margin > limit {
        (
            Verdict::Inconclusive,
            Some(if bimodal { Reason::Bimodal } else { Reason::Noise }),
            format!(
                "noise margin ±{:.1} % exceeds the {:.1} % threshold (run-to-run sd {:.2} %, {} + {} runs{})",
                pct(margin),
                policy.threshold * 100.0,
                e.s * 100.0,
                n,
                m,
                if bimodal {
                    format!(", {} speed modes", model.centers.len())
                } else {
                    String::new()
                }
            ),
        )
    } else {
        (
            Verdict::Pass,
            None,
            format!("{:+.1} % (noise margin ±{:.1} %)", pct(e.d), pct(margin)),
        )
    };
    let baseline_s = e.baseline_log.exp();
    Comparison {
        baseline_s,
        current_s: baseline_s * e.d.exp(),
        ratio: e.d.exp(),
        ratio_low: (e.d - margin).exp(),
        ratio_high: (e.d + margin).exp(),
        threshold: policy.threshold,
        noise_rel: e.s,
        baseline_runs: n,
        current_runs: m,
        p_value,
        df: e.df,
        tested_alpha: if verdict == Verdict::Regression {
            policy.alpha
        } else {
            f64::NAN
        },
        modes: if bimodal { model.modes() } else { vec![] },
        sessions: model.sessions,
        verdict,
        inconclusive,
        reason,
    }
}

/// Holm's step-down over a suite of `family` kernels at suite-wide `alpha`: the regression with
/// the smallest p-value must reach α/family, the next α/(family − 1), and so on; the first that
/// misses stops the procedure. A regression that misses its level becomes inconclusive
/// (`not_significant`). Kernels that were not candidates count in the family (their p-value is
/// taken as 1), so the suite's false-alarm rate stays ≤ α whatever their dependence.
pub fn holm(comparisons: &mut [&mut Comparison], alpha: f64, family: usize) {
    let mut candidates: Vec<usize> = (0..comparisons.len())
        .filter(|&i| comparisons[i].verdict == Verdict::Regression)
        .collect();
    candidates.sort_by(|&a, &b| comparisons[a].p_value.total_cmp(&comparisons[b].p_value));
    let mut open = true;
    for (rank, i) in candidates.into_iter().enumerate() {
        let level = alpha / family.saturating_sub(rank).max(1) as f64;
        let c = &mut *comparisons[i];
        c.tested_alpha = level;
        open = open && c.p_value <= level;
        if !open {
            let why = format!(
                "{:+.1} % slower, but not significant at the suite's Holm-adjusted α (p = {:.2e}, \
                 needed ≤ {:.2e} among {family} kernels)",
                (c.ratio - 1.0) * 100.0,
                c.p_value,
                level
            );
            c.set_inconclusive(Reason::NotSignificant, why);
        }
    }
}

/// One kernel's final comparison, and round 1's when it was a suspect and re-measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    pub screening: Option<Comparison>,
    pub comparison: Comparison,
}

/// The gate's decision over a suite. `round1` holds each kernel's round-1 comparison; suspects
/// ([`Comparison::is_suspect`]) are handed to `confirm`, which measures them afresh and returns
/// their comparisons in the same order; a suspect's verdict is its confirmation alone (rounds are
/// never pooled, never repeated). Then [`holm`] over every kernel at the suite's `alpha`. With
/// `confirm_runs` 0, round 1 is final.
pub fn two_rounds<E>(
    round1: Vec<Comparison>,
    confirm_runs: usize,
    alpha: f64,
    confirm: impl FnOnce(&[usize]) -> Result<Vec<Comparison>, E>,
) -> Result<Vec<Judgement>, E> {
    let suspects: Vec<usize> = if confirm_runs > 0 {
        (0..round1.len())
            .filter(|&i| round1[i].is_suspect())
            .collect()
    } else {
        vec![]
    };
    let mut judged: Vec<Judgement> = round1
        .into_iter()
        .map(|comparison| Judgement {
            screening: None,
            comparison,
        })
        .collect();
    if !suspects.is_empty() {
        let again = confirm(&suspects)?;
        for (&i, c) in suspects.iter().zip(again) {
            let first = std::mem::replace(&mut judged[i].comparison, c);
            judged[i].screening = Some(first);
        }
    }
    let family = judged.len();
    let mut all: Vec<&mut Comparison> = judged.iter_mut().map(|j| &mut j.comparison).collect();
    holm(&mut all, alpha, family);
    Ok(judged)
}

/// How a check is run, for [`detectable_slowdown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Design {
    /// Runs of round 1 (fresh processes).
    pub check_runs: usize,
    /// Runs of the confirmation round for suspects; 0 = the verdict comes from round 1.
    pub confirm_runs: usize,
    /// Kernels judged together (Holm's family).
    pub family: usize,
}

/// Monte Carlo draws behind [`detectable_slowdown`]: the 95th percentile is then known to about
/// ±0.15 % of the noise sd. Seeded, so the figure is the same on every call.
const DETECTABLE_DRAWS: usize = 20_000;

/// The smallest slowdown (a current/baseline time ratio, e.g. 1.068) that the gate calls a
/// regression with probability `power`, for a check run as `design` against this baseline, with
/// the other kernels of the suite unchanged (the regressed one then has the smallest p-value and
/// is tested at α/family, Holm's first step).
///
/// The truth simulated is this baseline's noise: run medians log-normal with the run-to-run sd it
/// shows (floored by its within-run error, as [`compare`] floors it) and its session variance, a
/// fresh baseline of the same size and fresh check runs. Each draw is detected from a slowdown δ
/// on: round 1 must make it a suspect (d₁ > ½·limit) and the confirmation round must reject
/// (d₂ > limit and d₂ > t·se₂), each linear in δ, so a draw's smallest detected δ is exact and the
/// answer is that quantity's `power` quantile. None when the rule has no degrees of freedom or the
/// baseline holds a non-finite value.
pub fn detectable_slowdown(
    model: &Model,
    design: Design,
    policy: Policy,
    power: f64,
) -> Option<f64> {
    let n = model.runs;
    let m1 = design.check_runs;
    let m2 = design.confirm_runs;
    if !model.valid || n == 0 || m1 == 0 || !(0.0..1.0).contains(&power) {
        return None;
    }
    let sigma = model.run_sd();
    let tau = model.tau2.sqrt();
    let limit = policy.limit();
    if !sigma.is_finite() {
        return None;
    }
    let k = model.centers.len();
    let sessions = model.sessions.max(1);
    // With several sessions (an appended baseline, a pool of nodes) a check estimates τ² from
    // the baseline's session means, S − 1 df, and tests at Welch–Satterthwaite's df: each draw
    // does the same, so a pool of few nodes is quoted the power it has, not the power a known
    // τ² would give.
    let estimate_tau = sessions >= 2 && model.df > 0;
    let df_base = if estimate_tau {
        n.saturating_sub(k + sessions - 1)
    } else {
        n.saturating_sub(k)
    };
    let confirm = if m2 > 0 { m2 } else { m1 };
    let df = df_base + confirm - 1;
    if df == 0 {
        return None;
    }
    if sigma == 0.0 && tau == 0.0 {
        return Some(limit.exp()); // no noise at all: anything beyond the threshold is caught
    }
    let level = policy.alpha / design.family.max(1) as f64;
    // Student's t quantile at `df`, rounded to steps of 0.05 df and cached: Welch's df differs
    // in every draw, and each quantile is an iterative inversion.
    let mut quantiles = std::collections::BTreeMap::<u64, Option<f64>>::new();
    let mut t_at = |df: f64| -> Option<f64> {
        let step = (df * 20.0).round().max(1.0);
        *quantiles.entry(step as u64).or_insert_with(|| {
            StudentsT::new(0.0, 1.0, step / 20.0)
                .ok()
                .map(|d| d.inverse_cdf(1.0 - level))
        })
    };
    let t = t_at(df as f64)?;
    let mut rng = StdRng::seed_from_u64(0x6a7e_5eed);
    let mut z = || -> f64 { StandardNormal.sample(&mut rng) };
    let per_mode = (n / k).max(1) as f64;
    let per_session = (n / sessions).max(1) as f64;
    let mut needed: Vec<f64> = (0..DETECTABLE_DRAWS)
        .map(|_| {
            // Baseline: each session's offset, a mode centre's error, the pooled within-mode
            // (and within-session) sum of squares.
            let centre_err = sigma * z() / per_mode.sqrt();
            let offsets: Vec<f64> = (0..sessions).map(|_| tau * z()).collect();
            let base_err = centre_err + mean(&offsets);
            let ss_base: f64 = (0..df_base).map(|_| (sigma * z()).powi(2)).sum();
            // The session means a check sees: offset plus their runs' mean noise.
            let session_means: Vec<f64> = if estimate_tau {
                offsets
                    .iter()
                    .map(|o| o + sigma * z() / per_session.sqrt())
                    .collect()
            } else {
                vec![]
            };
            let session_now = tau * z();
            let round = |m: usize, z: &mut dyn FnMut() -> f64| -> (f64, f64) {
                let runs: Vec<f64> = (0..m).map(|_| sigma * z()).collect();
                let mean_run = mean(&runs);
                let ss: f64 = runs.iter().map(|r| (r - mean_run).powi(2)).sum();
                (mean_run + session_now - base_err, ss)
            };
            let (e1, _) = round(m1, &mut z);
            let (e2, ss2) = if m2 > 0 { round(m2, &mut z) } else { (e1, 0.0) };
            let ss2 = if m2 > 0 {
                ss2
            } else {
                // Round 1 is the confirmation: its own sum of squares.
                let runs: Vec<f64> = (0..m1).map(|_| sigma * z()).collect();
                let mr = mean(&runs);
                runs.iter().map(|r| (r - mr).powi(2)).sum()
            };
            let s = ((ss_base + ss2) / df as f64).sqrt().max(model.within);
            let a = s * s * (1.0 / confirm as f64 + 1.0 / per_mode);
            let (b, t) = if estimate_tau {
                // As `Model::fit` estimates τ² and `estimate` tests with it.
                let sigma2 = if df_base > 0 {
                    (ss_base / df_base as f64).max(model.within * model.within)
                } else {
                    model.within * model.within
                };
                let grand = mean(&session_means);
                let var = session_means
                    .iter()
                    .map(|m| (m - grand).powi(2))
                    .sum::<f64>()
                    / (sessions - 1) as f64;
                let b = (var - sigma2 / per_session).max(0.0) * (1.0 + 1.0 / sessions as f64);
                let welch = if b > 0.0 {
                    (a + b).powi(2) / (a * a / df as f64 + b * b / (sessions - 1) as f64)
                } else {
                    df as f64
                };
                (b, t_at(welch).unwrap_or(f64::INFINITY))
            } else {
                (model.tau2 * (1.0 + 1.0 / sessions as f64), t)
            };
            let se = (a + b).sqrt();
            let screen = if m2 > 0 {
                SUSPECT_FRACTION * limit - e1
            } else {
                f64::NEG_INFINITY
            };
            screen.max(limit - e2).max(t * se - e2)
        })
        .collect();
    needed.sort_by(f64::total_cmp);
    let at = ((power * needed.len() as f64).ceil() as usize).clamp(1, needed.len()) - 1;
    Some(needed[at].max(limit).exp())
}

/// How many kernels must be conclusive for the suite to pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Require {
    /// Every kernel (the default): one stable kernel cannot carry a suite.
    #[default]
    All,
    /// At least this many kernels.
    AtLeast(usize),
    /// Any one kernel (but never none).
    One,
}

impl std::str::FromStr for Require {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(Require::All),
            "none" => Ok(Require::One),
            n => n
                .parse::<usize>()
                .ok()
                .filter(|&n| n >= 1)
                .map(Require::AtLeast)
                .ok_or_else(|| format!("{s:?}: expected all, none or a count ≥ 1")),
        }
    }
}

impl std::fmt::Display for Require {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Require::All => write!(f, "all"),
            Require::AtLeast(n) => write!(f, "{n}"),
            Require::One => write!(f, "none"),
        }
    }
}

/// What to do when the driver differs from the baseline's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriverPolicy {
    /// Judge, and say so everywhere.
    #[default]
    Warn,
    /// Judge, but never pass: exit 3 unless something failed outright.
    Fail,
}

impl DriverPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DriverPolicy::Warn => "warn",
            DriverPolicy::Fail => "fail",
        }
    }
}

impl std::str::FromStr for DriverPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "warn" => Ok(DriverPolicy::Warn),
            "fail" => Ok(DriverPolicy::Fail),
            _ => Err(format!("{s:?}: expected warn or fail")),
        }
    }
}

/// A kernel that could not be judged, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unjudged {
    pub key: String,
    pub reason: Reason,
}

/// The gate's answer over all kernels, and the exit code it maps to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateOutcome {
    pub verdict: Verdict,
    pub exit_code: u8,
    pub message: String,
    /// Inconclusive kernels with their reasons: never silent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inconclusive: Vec<Unjudged>,
}

/// One kernel's final word, as the gate sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Judged {
    pub key: String,
    pub verdict: Verdict,
    pub reason: Option<Reason>,
}

/// Wrong results and regressions fail; otherwise the suite passes only when enough kernels were
/// conclusive (`require`) — else exit 3, never 0.
pub fn gate(judged: &[Judged], require: Require) -> GateOutcome {
    let count = |v: Verdict| judged.iter().filter(|j| j.verdict == v).count();
    let (wrong, regressed) = (count(Verdict::WrongResult), count(Verdict::Regression));
    let inconclusive: Vec<Unjudged> = judged
        .iter()
        .filter(|j| j.verdict == Verdict::Inconclusive)
        .map(|j| Unjudged {
            key: j.key.clone(),
            reason: j.reason.unwrap_or(Reason::Noise),
        })
        .collect();
    let named = |list: &[Unjudged]| {
        list.iter()
            .map(|u| format!("{} ({})", u.key, u.reason.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let outcome = |verdict, exit_code, message: String| GateOutcome {
        verdict,
        exit_code,
        message,
        inconclusive: inconclusive.clone(),
    };
    if judged.is_empty() {
        return outcome(
            Verdict::Inconclusive,
            exit::CANNOT_VALIDATE,
            "no kernel was validated".into(),
        );
    }
    if wrong + regressed > 0 {
        let failed: Vec<&str> = judged
            .iter()
            .filter(|j| j.verdict.fails())
            .map(|j| j.key.as_str())
            .collect();
        return outcome(
            if wrong > 0 {
                Verdict::WrongResult
            } else {
                Verdict::Regression
            },
            exit::FAIL,
            format!(
                "{wrong} wrong result(s), {regressed} regression(s): {}",
                failed.join(", ")
            ),
        );
    }
    let conclusive = judged.len() - inconclusive.len();
    let enough = match require {
        Require::All => inconclusive.is_empty(),
        Require::AtLeast(n) => conclusive >= n,
        Require::One => conclusive >= 1,
    };
    if !enough {
        let message = if matches!(require, Require::AtLeast(n) if n > judged.len()) {
            format!(
                "--require-conclusive {require} asks for more conclusive kernels than the {} judged",
                judged.len()
            )
        } else if conclusive == 0 {
            format!(
                "every kernel was inconclusive: this node is too noisy to validate performance ({})",
                named(&inconclusive)
            )
        } else {
            format!(
                "{} of {} kernel(s) inconclusive, and --require-conclusive {require} asks for more: {}",
                inconclusive.len(),
                judged.len(),
                named(&inconclusive)
            )
        };
        return outcome(Verdict::Inconclusive, exit::CANNOT_VALIDATE, message);
    }
    let message = if inconclusive.is_empty() {
        "pass".into()
    } else {
        format!(
            "pass; {} kernel(s) inconclusive, allowed by --require-conclusive {require}: {}",
            inconclusive.len(),
            named(&inconclusive)
        )
    };
    outcome(Verdict::Pass, exit::PASS, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(medians: &[f64]) -> RunMedians {
        RunMedians {
            medians_s: medians.to_vec(),
            within_log_se: vec![0.001; medians.len()],
        }
    }

    fn model(medians: &[f64]) -> Model {
        Model::fit(&runs(medians), &vec![0; medians.len()])
    }

    #[test]
    fn verdicts() {
        let base = model(&[1.00, 1.01, 0.99, 1.00, 1.005, 0.995, 1.0, 1.01, 0.99, 1.0]);
        let p = Policy::default();
        assert_eq!(compare(&base, &runs(&[1.01]), p).verdict, Verdict::Pass);
        assert_eq!(
            compare(&base, &runs(&[1.30]), p).verdict,
            Verdict::Regression
        );
        assert_eq!(
            compare(&base, &runs(&[0.70]), p).verdict,
            Verdict::Improvement
        );
        // Significant but below the practical threshold: pass.
        assert_eq!(compare(&base, &runs(&[1.04]), p).verdict, Verdict::Pass);
        let noisy = model(&[1.0, 1.4, 0.7, 1.2, 0.8]);
        let c = compare(&noisy, &runs(&[1.1]), p);
        assert_eq!(
            (c.verdict, c.inconclusive),
            (Verdict::Inconclusive, Some(Reason::Noise))
        );
        // One run on each side cannot know run-to-run noise.
        let c = compare(&model(&[1.0]), &runs(&[1.0]), p);
        assert_eq!(c.inconclusive, Some(Reason::TooFewRuns));
    }

    #[test]
    fn nan_is_never_a_pass() {
        let base = model(&[1.0, 1.01, 0.99]);
        for bad in [f64::NAN, f64::INFINITY, 0.0, -1.0] {
            let c = compare(&base, &runs(&[1.0, bad]), Policy::default());
            assert_eq!(c.inconclusive, Some(Reason::Invalid), "{bad}");
        }
        let broken = Model::fit(&runs(&[1.0, f64::NAN]), &[0, 0]);
        let c = compare(&broken, &runs(&[1.0]), Policy::default());
        assert_eq!(c.verdict, Verdict::Inconclusive);
        // Serialised, NaN is null and comes back as NaN.
        let back: Comparison = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert!(back.p_value.is_nan());
    }

    #[test]
    fn holm_demotes_what_the_suite_cannot_afford() {
        let p = Policy::default();
        let base = model(&[1.00, 1.01, 0.99, 1.00, 1.005, 0.995, 1.0, 1.01, 0.99, 1.0]);
        let mut strong = compare(&base, &runs(&[1.5, 1.5, 1.5]), p);
        // Slower than the threshold and significant alone, but weak.
        let wide = model(&[1.0, 1.08, 0.93, 1.0, 1.05, 0.95, 1.0, 1.08, 0.93, 1.0]);
        let mut weak = compare(&wide, &runs(&[1.13, 1.12, 1.14]), p);
        assert_eq!(weak.verdict, Verdict::Regression, "{weak:?}");
        assert!(weak.p_value > p.alpha / 20.0, "{}", weak.p_value);
        holm(&mut [&mut strong, &mut weak], p.alpha, 20);
        assert_eq!(strong.verdict, Verdict::Regression);
        assert!((strong.tested_alpha - p.alpha / 20.0).abs() < 1e-15);
        assert_eq!(weak.inconclusive, Some(Reason::NotSignificant));
        assert!((weak.tested_alpha - p.alpha / 19.0).abs() < 1e-15);
    }

    #[test]
    fn a_run_in_a_recorded_mode_is_judged_against_that_mode() {
        let mut medians = vec![0.353; 3];
        medians.extend([0.642; 7]);
        let jitter = [
            1.0, 1.004, 0.996, 1.002, 0.998, 1.0, 1.003, 0.997, 1.001, 0.999,
        ];
        let medians: Vec<f64> = medians.iter().zip(jitter).map(|(m, j)| m * j).collect();
        let base = model(&medians);
        assert_eq!(base.modes().len(), 2, "{:?}", base.modes());
        let p = Policy::default();
        for now in [
            [0.353, 0.354, 0.352],
            [0.642, 0.641, 0.644],
            [0.353, 0.642, 0.643],
        ] {
            let c = compare(&base, &runs(&now), p);
            assert_eq!(c.verdict, Verdict::Pass, "{now:?}: {c:?}");
            assert_eq!(c.modes.len(), 2);
        }
        let c = compare(&base, &runs(&[0.95, 0.96, 0.95]), p);
        assert_eq!(c.verdict, Verdict::Regression, "{c:?}");
        assert!(
            (c.baseline_s - 0.642).abs() < 0.01,
            "judged against the slow mode: {c:?}"
        );
    }

    #[test]
    fn sessions_add_their_variance() {
        // Two sessions 4 % apart, each tight: one session alone would call a 5 % step certain.
        let mut medians = vec![1.00, 1.001, 0.999, 1.0, 1.0005];
        medians.extend([1.04, 1.041, 1.039, 1.04, 1.0405]);
        let one = Model::fit(&runs(&medians), &[0; 10]);
        let two = Model::fit(&runs(&medians), &[0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
        assert_eq!(two.sessions(), 2);
        let now = runs(&[1.09, 1.09, 1.09]);
        let p = Policy::default();
        let (a, b) = (compare(&one, &now, p), compare(&two, &now, p));
        assert!(
            b.ratio_high - b.ratio_low > 2.0 * (a.ratio_high - a.ratio_low),
            "{a:?}\n{b:?}"
        );
    }

    /// Run medians whose log sd is exactly `cv`, with a negligible within-run error.
    fn with_sd(n: usize, cv: f64) -> Model {
        let raw: Vec<f64> = (0..n).map(|i| i as f64 - (n - 1) as f64 / 2.0).collect();
        let sd = (raw.iter().map(|x| x * x).sum::<f64>() / (n - 1) as f64).sqrt();
        let medians: Vec<f64> = raw.iter().map(|x| (x / sd * cv).exp()).collect();
        Model::fit(
            &RunMedians {
                within_log_se: vec![1e-6; n],
                medians_s: medians,
            },
            &vec![0; n],
        )
    }

    #[test]
    fn detectable_slowdown_matches_the_rules_simulated_power() {
        // 10 baseline runs, 1 check run, one round, one kernel, α 0.5 %, 5 % threshold: the
        // smallest slowdowns detected with 95 % power in a simulation of this exact rule were
        // 5.9 / 6.8 / 11.6 / 31.6 % at a run-to-run CV of 0.5 / 1 / 2 / 5 %.
        let single = Design {
            check_runs: 1,
            confirm_runs: 0,
            family: 1,
        };
        for (cv, simulated) in [(0.005, 5.9), (0.01, 6.8), (0.02, 11.6), (0.05, 31.6)] {
            let ratio =
                detectable_slowdown(&with_sd(10, cv), single, Policy::default(), DETECTION_POWER)
                    .unwrap();
            let pct = (ratio - 1.0) * 100.0;
            assert!(
                (pct - simulated).abs() < 0.4,
                "CV {cv}: {pct:.2} % vs simulated {simulated} %"
            );
        }
        // The default design over a 20-kernel suite beats the benchmark (Holm at 0.5 %
        // with 3 check runs: 5.6 / 6.2 / 9.9 / 26.5 %).
        let default = Design {
            check_runs: 3,
            confirm_runs: 5,
            family: 20,
        };
        for (cv, benchmark) in [(0.005, 5.6), (0.01, 6.2), (0.02, 9.9), (0.05, 26.5)] {
            let pct = (detectable_slowdown(&with_sd(10, cv), default, Policy::default(), 0.95)
                .unwrap()
                - 1.0)
                * 100.0;
            assert!(pct <= benchmark, "CV {cv}: {pct:.2} % vs {benchmark} %");
        }
        let one = Model::fit(&runs(&[1.0]), &[0]);
        assert_eq!(
            detectable_slowdown(&one, single, Policy::default(), 0.95),
            None
        );
        let broken = Model::fit(&runs(&[1.0, f64::INFINITY, 1.0]), &[0; 3]);
        assert_eq!(
            detectable_slowdown(&broken, default, Policy::default(), 0.95),
            None
        );
        // Without noise, the practical threshold is what remains.
        let flat = Model::fit(
            &RunMedians {
                medians_s: vec![1.0; 10],
                within_log_se: vec![0.0; 10],
            },
            &[0; 10],
        );
        let r = detectable_slowdown(&flat, default, Policy::default(), 0.95).unwrap();
        assert!((r - 1.05).abs() < 1e-12, "{r}");
    }

    fn judged(list: &[Verdict]) -> Vec<Judged> {
        list.iter()
            .enumerate()
            .map(|(i, &verdict)| Judged {
                key: format!("k{i}"),
                verdict,
                reason: (verdict == Verdict::Inconclusive).then_some(Reason::Noise),
            })
            .collect()
    }

    #[test]
    fn gate_never_passes_what_was_not_validated() {
        use Verdict::*;
        let g = |v: &[Verdict], r: Require| gate(&judged(v), r).exit_code;
        assert_eq!(g(&[], Require::One), 3);
        assert_eq!(g(&[Inconclusive, Inconclusive], Require::One), 3);
        assert_eq!(g(&[Pass, Inconclusive], Require::One), 0);
        assert_eq!(g(&[Pass, Inconclusive], Require::All), 3);
        assert_eq!(g(&[Pass, Pass, Inconclusive], Require::AtLeast(2)), 0);
        assert_eq!(
            g(&[Pass, Inconclusive, Inconclusive], Require::AtLeast(2)),
            3
        );
        assert_eq!(g(&[Pass, Improvement], Require::All), 0);
        assert_eq!(g(&[Pass, Regression], Require::All), 1);
        assert_eq!(g(&[Pass, WrongResult], Require::All), 1);
        let out = gate(&judged(&[Inconclusive, WrongResult]), Require::All);
        assert_eq!(out.verdict, WrongResult);
        let out = gate(&judged(&[Pass, Inconclusive]), Require::All);
        assert!(out.message.contains("k1 (noise)"), "{}", out.message);
        assert_eq!(out.inconclusive.len(), 1);
        assert_eq!("3".parse::<Require>(), Ok(Require::AtLeast(3)));
        assert!("0".parse::<Require>().is_err());
    }
}
