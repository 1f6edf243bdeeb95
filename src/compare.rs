//! Baseline comparison: pass | regression | improvement | inconclusive, per kernel instance.
//!
//! The unit of evidence is a *run median* (one process). Between processes a kernel's time varies
//! more than within one, so the noise used here is the spread of run medians, pooled over the
//! baseline's runs and the current runs (Student t with their degrees of freedom), never smaller
//! than the within-run error of a median. A change is a regression only when it is both
//! significant at `alpha` and larger than the practical threshold; when the noise is so large that
//! a threshold-sized change could hide in it, the answer is *inconclusive*, not pass.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF, StudentsT};

use crate::stats;
use std::f64::consts::SQRT_2;

/// Default practical threshold: a 5 % slowdown.
pub const DEFAULT_THRESHOLD: f64 = 0.05;
/// One-sided false-alarm rate of the significance test: at most 1 % of A/A checks may fail, so
/// the test itself must sit below that.
pub const DEFAULT_ALPHA: f64 = 0.005;
/// The power at which detectable slowdowns are quoted: a slowdown of that size or more is called
/// a regression in at least 95 % of checks.
pub const DETECTION_POWER: f64 = 0.95;

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

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// Practical threshold as a fraction (0.05 = 5 % slower).
    pub threshold: f64,
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

    fn log_mean(&self) -> f64 {
        self.medians_s.iter().map(|m| m.ln()).sum::<f64>() / self.medians_s.len() as f64
    }

    /// Sum of squared log deviations from the mean, and its degrees of freedom.
    fn log_ss(&self) -> (f64, usize) {
        let mean = self.log_mean();
        let ss = self.medians_s.iter().map(|m| (m.ln() - mean).powi(2)).sum();
        (ss, self.medians_s.len().saturating_sub(1))
    }

    /// Geometric mean of the run medians: the central time used for ratios.
    pub fn center_s(&self) -> f64 {
        self.log_mean().exp()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub baseline_s: f64,
    pub current_s: f64,
    /// current / baseline: above 1 is slower.
    pub ratio: f64,
    /// Two-sided (1 − 2·alpha) interval of the ratio.
    pub ratio_low: f64,
    pub ratio_high: f64,
    pub threshold: f64,
    /// Estimated run-to-run relative standard deviation of a run median.
    pub noise_rel: f64,
    pub baseline_runs: usize,
    pub current_runs: usize,
    pub verdict: Verdict,
    pub reason: String,
}

pub fn compare(baseline: &RunMedians, current: &RunMedians, policy: Policy) -> Comparison {
    let (n, m) = (baseline.medians_s.len(), current.medians_s.len());
    let (ss_b, df_b) = baseline.log_ss();
    let (ss_c, df_c) = current.log_ss();
    let df = df_b + df_c;
    let pooled = if df > 0 {
        (ss_b + ss_c) / df as f64
    } else {
        0.0
    };
    // A run median is never more certain than its own sampling error.
    let within = baseline
        .within_log_se
        .iter()
        .chain(&current.within_log_se)
        .fold(0.0f64, |acc, &s| acc.max(s));
    let s = pooled.sqrt().max(within);
    let se = s * (1.0 / n as f64 + 1.0 / m as f64).sqrt();
    let t = if df > 0 {
        StudentsT::new(0.0, 1.0, df as f64)
            .expect("df > 0 is valid")
            .inverse_cdf(1.0 - policy.alpha)
    } else {
        f64::INFINITY // one run on each side says nothing about run-to-run noise
    };
    let d = current.log_mean() - baseline.log_mean();
    let margin = t * se;
    let limit = (1.0 + policy.threshold).ln();

    let pct = |x: f64| (x.exp() - 1.0) * 100.0;
    let (verdict, reason) = if d > limit && d > margin {
        (
            Verdict::Regression,
            format!(
                "{:+.1} % slower, beyond the {:.1} % threshold and the ±{:.1} % noise margin",
                pct(d),
                policy.threshold * 100.0,
                pct(margin)
            ),
        )
    } else if d < -limit && -d > margin {
        (
            Verdict::Improvement,
            format!("{:.1} % faster, beyond threshold and noise", -pct(d)),
        )
    } else if margin > limit {
        (
            Verdict::Inconclusive,
            format!(
                "noise margin ±{:.1} % exceeds the {:.1} % threshold (run-to-run sd {:.2} %, {} + {} runs)",
                pct(margin),
                policy.threshold * 100.0,
                s * 100.0,
                n,
                m
            ),
        )
    } else {
        (
            Verdict::Pass,
            format!("{:+.1} % (noise margin ±{:.1} %)", pct(d), pct(margin)),
        )
    };
    Comparison {
        baseline_s: baseline.center_s(),
        current_s: current.center_s(),
        ratio: d.exp(),
        ratio_low: (d - margin).exp(),
        ratio_high: (d + margin).exp(),
        threshold: policy.threshold,
        noise_rel: s,
        baseline_runs: n,
        current_runs: m,
        verdict,
        reason,
    }
}

/// The smallest slowdown (a current/baseline time ratio, e.g. 1.068) that [`compare`] calls a
/// regression with probability `power`, for a check of `current_runs` runs against `baseline`.
///
/// It is the power expected on a device with this baseline's noise: run medians are log-normal
/// with the run-to-run sd the baseline shows (taken as the true sd, floored by its within-run
/// error as `compare` floors it), the same on both sides, and the baseline and check both drawn
/// afresh. The rule flags d̂ > max(threshold, t·ŝ·c) where ŝ² is the pooled variance,
/// σ²·χ²(df)/df; the power is E[Φ((δ − max(threshold, t·c·ŝ)) / (σ·c))] over that χ², integrated
/// on its quantiles, and δ is found by bisection. It is exact for that model, not conditional on
/// the noise this particular baseline happened to show. None when the rule has no degrees of
/// freedom and can never conclude, or the baseline holds a non-finite value.
pub fn detectable_slowdown(
    baseline: &RunMedians,
    current_runs: usize,
    policy: Policy,
    power: f64,
) -> Option<f64> {
    let (n, m) = (baseline.medians_s.len(), current_runs);
    let df = (n + m)
        .checked_sub(2)
        .filter(|&df| df > 0 && n > 0 && m > 0)?;
    let finite = |v: &[f64]| v.iter().all(|x| x.is_finite() && *x >= 0.0);
    if !finite(&baseline.medians_s) || !finite(&baseline.within_log_se) {
        return None;
    }
    let (ss, df_b) = baseline.log_ss();
    let within = baseline.within_log_se.iter().fold(0.0f64, |a, &s| a.max(s));
    let observed = if df_b > 0 {
        (ss / df_b as f64).sqrt()
    } else {
        0.0
    };
    let sigma = observed.max(within);
    let limit = (1.0 + policy.threshold).ln();
    if !sigma.is_finite() {
        return None;
    }
    if sigma == 0.0 {
        return Some(limit.exp()); // no noise at all: anything beyond the threshold is caught
    }
    let c = (1.0 / n as f64 + 1.0 / m as f64).sqrt();
    let t = StudentsT::new(0.0, 1.0, df as f64)
        .ok()?
        .inverse_cdf(1.0 - policy.alpha);
    let chi = ChiSquared::new(df as f64).ok()?;
    const POINTS: usize = 400;
    // Each quantile of ŝ gives the bar d̂ must clear.
    let bars: Vec<f64> = (0..POINTS)
        .map(|i| {
            let u = chi.inverse_cdf((i as f64 + 0.5) / POINTS as f64);
            let s_hat = (sigma * (u / df as f64).sqrt()).max(within);
            limit.max(t * c * s_hat)
        })
        .collect();
    let spread = sigma * c;
    let power_at = |delta: f64| {
        bars.iter()
            .map(|bar| 0.5 * statrs::function::erf::erfc((bar - delta) / (spread * SQRT_2)))
            .sum::<f64>()
            / POINTS as f64
    };
    let top = bars.iter().fold(limit, |a, &b| a.max(b));
    let (mut lo, mut hi) = (0.0, top + 10.0 * spread);
    if power_at(hi) < power {
        return None; // only a power beyond what the quantile grid resolves was asked for
    }
    for _ in 0..80 {
        let mid = 0.5 * (lo + hi);
        if power_at(mid) < power {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(hi.exp())
}

/// The gate's answer over all kernels, and the exit code it maps to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateOutcome {
    pub verdict: Verdict,
    pub exit_code: u8,
    pub message: String,
}

/// Wrong results and regressions fail; nothing conclusive cannot pass — exit 3, never 0.
pub fn gate(verdicts: &[Verdict]) -> GateOutcome {
    use crate::error::exit;
    let count = |v: Verdict| verdicts.iter().filter(|&&x| x == v).count();
    let (wrong, regressed, unsure) = (
        count(Verdict::WrongResult),
        count(Verdict::Regression),
        count(Verdict::Inconclusive),
    );
    if verdicts.is_empty() {
        return GateOutcome {
            verdict: Verdict::Inconclusive,
            exit_code: exit::CANNOT_VALIDATE,
            message: "no kernel was validated".into(),
        };
    }
    if wrong + regressed > 0 {
        return GateOutcome {
            verdict: if wrong > 0 {
                Verdict::WrongResult
            } else {
                Verdict::Regression
            },
            exit_code: exit::FAIL,
            message: format!("{wrong} wrong result(s), {regressed} regression(s)"),
        };
    }
    if unsure == verdicts.len() {
        return GateOutcome {
            verdict: Verdict::Inconclusive,
            exit_code: exit::CANNOT_VALIDATE,
            message:
                "every kernel was inconclusive: this node is too noisy to validate performance"
                    .into(),
        };
    }
    GateOutcome {
        verdict: Verdict::Pass,
        exit_code: exit::PASS,
        message: if unsure > 0 {
            format!("pass; {unsure} kernel(s) inconclusive (too noisy to judge)")
        } else {
            "pass".into()
        },
    }
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

    #[test]
    fn verdicts() {
        let base = runs(&[1.00, 1.01, 0.99, 1.00, 1.005, 0.995, 1.0, 1.01, 0.99, 1.0]);
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
        let noisy = runs(&[1.0, 1.4, 0.7, 1.2, 0.8]);
        assert_eq!(
            compare(&noisy, &runs(&[1.1]), p).verdict,
            Verdict::Inconclusive
        );
        // One run on each side cannot know run-to-run noise.
        assert_eq!(
            compare(&runs(&[1.0]), &runs(&[1.0]), p).verdict,
            Verdict::Inconclusive
        );
    }

    /// Run medians whose log sd is exactly `cv`, with a negligible within-run error.
    fn with_sd(n: usize, cv: f64) -> RunMedians {
        let raw: Vec<f64> = (0..n).map(|i| i as f64 - (n - 1) as f64 / 2.0).collect();
        let sd = (raw.iter().map(|x| x * x).sum::<f64>() / (n - 1) as f64).sqrt();
        RunMedians {
            medians_s: raw.iter().map(|x| (x / sd * cv).exp()).collect(),
            within_log_se: vec![1e-6; n],
        }
    }

    #[test]
    fn detectable_slowdown_matches_the_rules_simulated_power() {
        // 10 baseline runs, 1 check run, α 0.5 %, 5 % threshold: the smallest slowdowns detected
        // with 95 % power in a simulation of this exact rule were 5.9 / 6.8 / 11.6 / 31.6 % at a
        // run-to-run CV of 0.5 / 1 / 2 / 5 %.
        for (cv, simulated) in [(0.005, 5.9), (0.01, 6.8), (0.02, 11.6), (0.05, 31.6)] {
            let ratio =
                detectable_slowdown(&with_sd(10, cv), 1, Policy::default(), DETECTION_POWER)
                    .unwrap();
            let pct = (ratio - 1.0) * 100.0;
            assert!(
                (pct - simulated).abs() < 0.3,
                "CV {cv}: {pct:.2} % vs simulated {simulated} %"
            );
        }
        // More check runs detect less; one run on each side can never conclude.
        let base = with_sd(10, 0.02);
        let one = detectable_slowdown(&base, 1, Policy::default(), 0.95).unwrap();
        let three = detectable_slowdown(&base, 3, Policy::default(), 0.95).unwrap();
        assert!(three < one, "{three} < {one}");
        let one = RunMedians {
            medians_s: vec![1.0],
            within_log_se: vec![0.001],
        };
        assert_eq!(detectable_slowdown(&one, 1, Policy::default(), 0.95), None);
        let broken = RunMedians {
            medians_s: vec![1.0, f64::INFINITY, 1.0],
            within_log_se: vec![0.001; 3],
        };
        assert_eq!(
            detectable_slowdown(&broken, 3, Policy::default(), 0.95),
            None
        );
        // Without noise, the practical threshold is what remains.
        let flat = RunMedians {
            medians_s: vec![1.0; 10],
            within_log_se: vec![0.0; 10],
        };
        let r = detectable_slowdown(&flat, 1, Policy::default(), 0.95).unwrap();
        assert!((r - 1.05).abs() < 1e-12, "{r}");
    }

    #[test]
    fn gate_never_passes_what_was_not_validated() {
        use Verdict::*;
        assert_eq!(gate(&[]).exit_code, 3);
        assert_eq!(gate(&[Inconclusive, Inconclusive]).exit_code, 3);
        assert_eq!(gate(&[Pass, Inconclusive]).exit_code, 0);
        assert_eq!(gate(&[Pass, Improvement]).exit_code, 0);
        assert_eq!(gate(&[Pass, Regression]).exit_code, 1);
        assert_eq!(gate(&[Pass, WrongResult]).exit_code, 1);
        assert_eq!(gate(&[Inconclusive, WrongResult]).verdict, WrongResult);
    }
}
