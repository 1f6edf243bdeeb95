//! Statistics of raw samples: order-statistic median CI, quantiles from an hdrhistogram,
//! dispersion, and a within-run error that survives autocorrelated samples. Raw samples are
//! always kept beside what is derived from them.

use serde::{Deserialize, Serialize};
use statrs::distribution::{Beta, ContinuousCDF, StudentsT};

/// Confidence level of the median's interval.
pub const CI_LEVEL: f64 = 0.95;
const Z_95: f64 = 1.959_963_984_540_054;

/// Derived statistics of one run's samples (seconds per iteration).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub median_s: f64,
    pub mean_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    pub p05_s: f64,
    pub p25_s: f64,
    pub p75_s: f64,
    pub p95_s: f64,
    pub p99_s: f64,
    /// Interquartile range over the median.
    pub iqr_rel: f64,
    /// 95 % confidence interval of the median (distribution-free, from order statistics).
    pub ci_low_s: f64,
    pub ci_high_s: f64,
    /// Within-run standard error of the run's level in log units: the larger of the batch-means
    /// se of the log mean (honest when consecutive samples are correlated) and the se implied by
    /// the median's CI (iid). 0 when undefined, and in summaries written before it existed.
    #[serde(default)]
    pub log_se: f64,
    /// Lag-1 autocorrelation of the log samples in the order taken: how far an iid interval
    /// understates the error. 0 for n < 3, when undefined, and in older summaries.
    #[serde(default)]
    pub lag1: f64,
}

/// Relative tolerance of `Summary::disagreement`. Recomputation is the same arithmetic, but a
/// stored value may have passed through serde_json's default float parser, which is not
/// correctly rounded (the checked-in baselines differ from a recomputation by up to 3 ulps,
/// 5.6e-16 relative), and `ln` may differ by an ulp between platforms' maths libraries.
const AGREEMENT_TOLERANCE: f64 = 1e-9;

impl Summary {
    /// Half the CI's width over the median: the iid half of the sampler's stop rule.
    pub fn rel_ci_half_width(&self) -> f64 {
        (self.ci_high_s - self.ci_low_s) / (2.0 * self.median_s)
    }

    /// The first field of this (stored) summary that a summary recomputed from the same samples
    /// contradicts, as "field: stored X, recomputed Y"; None when they agree. `n` must be equal;
    /// every other field agrees within a relative 1e-9 (`lag1`, a correlation near 0 where
    /// rounding is large relative to it, on the scale of 1), NaN only with NaN. `log_se` and
    /// `lag1` stored as exactly 0 are skipped: that is what files written before them read as.
    pub fn disagreement(&self, recomputed: &Summary) -> Option<String> {
        if self.n != recomputed.n {
            return Some(format!("n: stored {}, recomputed {}", self.n, recomputed.n));
        }
        let (a, b) = (self, recomputed);
        // (name, stored, recomputed, smallest scale, skipped when stored as 0)
        let fields = [
            ("median_s", a.median_s, b.median_s, 0.0, false),
            ("mean_s", a.mean_s, b.mean_s, 0.0, false),
            ("min_s", a.min_s, b.min_s, 0.0, false),
            ("max_s", a.max_s, b.max_s, 0.0, false),
            ("p05_s", a.p05_s, b.p05_s, 0.0, false),
            ("p25_s", a.p25_s, b.p25_s, 0.0, false),
            ("p75_s", a.p75_s, b.p75_s, 0.0, false),
            ("p95_s", a.p95_s, b.p95_s, 0.0, false),
            ("p99_s", a.p99_s, b.p99_s, 0.0, false),
            ("iqr_rel", a.iqr_rel, b.iqr_rel, 0.0, false),
            ("ci_low_s", a.ci_low_s, b.ci_low_s, 0.0, false),
            ("ci_high_s", a.ci_high_s, b.ci_high_s, 0.0, false),
            ("log_se", a.log_se, b.log_se, 0.0, true),
            ("lag1", a.lag1, b.lag1, 1.0, true),
        ];
        fields
            .into_iter()
            .filter(|&(_, stored, _, _, optional)| !(optional && stored == 0.0))
            .find(|&(_, stored, re, scale, _)| !agree(stored, re, scale))
            .map(|(name, stored, re, _, _)| format!("{name}: stored {stored:e}, recomputed {re:e}"))
    }
}

/// Equal within `AGREEMENT_TOLERANCE` of the larger magnitude (at least `scale`); non-finite
/// values only agree with themselves (NaN with NaN).
fn agree(stored: f64, recomputed: f64, scale: f64) -> bool {
    if !stored.is_finite() || !recomputed.is_finite() {
        return stored == recomputed || (stored.is_nan() && recomputed.is_nan());
    }
    let size = stored.abs().max(recomputed.abs()).max(scale);
    (stored - recomputed).abs() <= AGREEMENT_TOLERANCE * size
}

/// Median of a slice (not necessarily sorted).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    sorted_median(&v)
}

fn sorted_median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Distribution-free CI of the median: the order statistics whose ranks bracket n/2 by
/// z·√n/2 (normal approximation to the binomial). Falls back to [min, max] for tiny n.
pub fn median_ci(sorted: &[f64]) -> (f64, f64) {
    let n = sorted.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let half = Z_95 * (n as f64).sqrt() / 2.0;
    let lo = ((n as f64 / 2.0 - half).floor() as isize - 1).max(0) as usize;
    let hi = ((n as f64 / 2.0 + half).ceil() as usize).min(n - 1);
    (sorted[lo], sorted[hi])
}

/// Half the median's 95 % CI over the median, without the rest of a summary (the iid half of
/// the stop rule, `rel_half_width`).
pub fn rel_ci_half_width(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (lo, hi) = median_ci(&sorted);
    (hi - lo) / (2.0 * sorted_median(&sorted))
}

/// The sampler's stop rule: the larger of the median CI's relative half-width (iid, order
/// statistics) and the batch-means 95 % half-width of the level, 1.96·`batch_means_log_se`, as a
/// relative width exp(x) − 1. The second keeps autocorrelated samples from stopping the sampler
/// with an interval far narrower than the truth. NaN (never "narrow enough") for n < 2 or samples
/// that are not positive.
pub fn rel_half_width(samples: &[f64]) -> f64 {
    let ci = rel_ci_half_width(samples);
    let bm = (Z_95 * batch_means_log_se(samples)).exp_m1();
    if ci.is_nan() || bm.is_nan() {
        f64::NAN
    } else {
        ci.max(bm)
    }
}

/// Summarise samples in seconds. Quantiles come from an hdrhistogram of nanoseconds at three
/// significant digits (0.1 %); the median and its CI from the exact sorted samples.
pub fn summarize(samples: &[f64]) -> Summary {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    // Auto-resizing; `saturating_record` would clamp to the initial range instead of growing.
    let mut hist = hdrhistogram::Histogram::<u64>::new(3).expect("3 significant digits is valid");
    for &s in &sorted {
        // Sub-nanosecond samples are recorded as 1 ns rather than dropped.
        hist.record((s * 1e9).round().max(1.0) as u64)
            .expect("an auto-resizing u64 histogram grows to any u64");
    }
    let q = |p: f64| hist.value_at_quantile(p) as f64 * 1e-9;
    let median_s = sorted_median(&sorted);
    let (ci_low_s, ci_high_s) = median_ci(&sorted);
    let (p25_s, p75_s) = (q(0.25), q(0.75));
    // Both new fields read the samples in the order taken, not sorted.
    let log_se = batch_means_log_se(samples).max(ci_log_se(ci_low_s, ci_high_s));
    Summary {
        n: sorted.len(),
        median_s,
        mean_s: sorted.iter().sum::<f64>() / sorted.len().max(1) as f64,
        min_s: sorted.first().copied().unwrap_or(f64::NAN),
        max_s: sorted.last().copied().unwrap_or(f64::NAN),
        p05_s: q(0.05),
        p25_s,
        p75_s,
        p95_s: q(0.95),
        p99_s: q(0.99),
        iqr_rel: (p75_s - p25_s) / median_s,
        ci_low_s,
        ci_high_s,
        log_se: finite_or_zero(log_se),
        lag1: finite_or_zero(log_lag1(samples)),
    }
}

/// JSON has no NaN (serde_json writes null, which then fails to load as f64): an undefined new
/// field is stored as 0, which is also what a file without the field reads as.
fn finite_or_zero(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Fewest samples in a batch: shorter batches are dominated by the correlation they should
/// average out (their means stay correlated, and the se comes out low).
const MIN_BATCH_LEN: usize = 5;

/// Standard error of the mean of ln(samples) by non-overlapping batch means, widened for the
/// few degrees of freedom it is estimated with.
///
/// Consecutive timing samples are autocorrelated (lag-1 ρ of 0.3–0.7 on GPUs: clocks, thermals,
/// queue state drift), so sd/√n understates the error of the mean, by √((1+ρ)/(1−ρ)) for AR(1)
/// noise (2× at ρ = 0.6). Means of consecutive batches are nearly independent once a batch spans
/// several correlation times, and `len·var(batch means)` then estimates the long-run variance.
///
/// About √n batches of about √n samples each balance the two errors of the method: longer
/// batches leave less correlation between batch means (less bias low), more batches give the
/// variance estimate more degrees of freedom (k − 1). At least `MIN_BATCH_LEN` (5) samples per
/// batch, so the batch count is `min(⌊√n⌋, ⌊n/5⌋)`; the first `n mod k` samples (closest to
/// warm-up) are left out of the batches. With fewer than 2 batches (n < 10) the estimate is the
/// iid sd/√n of the logs, which cannot see correlation; for n < 2 the result is NaN, and
/// non-positive or NaN samples give NaN.
///
/// The estimate is multiplied by t(df, 0.975)/z(0.975), df = k − 1 (n − 1 in the iid case):
/// with 17 batches (16 df) at n = 300 a normal-quantile interval on the bare estimate covers
/// ~97 % where it claims 99 % even on iid samples, because the estimate itself is uncertain. So
/// widened, 1.96·se is exactly the Student-t 95 % half-width and normal intervals keep about
/// their coverage. At n = 10 (two batches) the factor is 6.5: a stop rule on it waits for more
/// samples.
pub fn batch_means_log_se(samples: &[f64]) -> f64 {
    let n = samples.len();
    if n < 2 {
        return f64::NAN;
    }
    let logs: Vec<f64> = samples.iter().map(|s| s.ln()).collect();
    let batches = n.isqrt().min(n / MIN_BATCH_LEN);
    if batches < 2 {
        let m = mean(&logs);
        let var = logs.iter().map(|l| (l - m).powi(2)).sum::<f64>() / (n - 1) as f64;
        return (var / n as f64).sqrt() * small_sample_factor(n - 1);
    }
    let len = n / batches;
    let means: Vec<f64> = logs[n - batches * len..]
        .chunks_exact(len)
        .map(mean)
        .collect();
    let grand = mean(&means);
    let var_means = means.iter().map(|m| (m - grand).powi(2)).sum::<f64>() / (batches - 1) as f64;
    // len·var(batch means) estimates the long-run variance; the mean of n samples has 1/n of it.
    (var_means * len as f64 / n as f64).sqrt() * small_sample_factor(batches - 1)
}

/// t(df, 0.975)/z(0.975): how much wider a 95 % interval must be when its se is estimated with
/// `df` degrees of freedom (1.08 at df = 16, 12.7/1.96 at df = 1).
fn small_sample_factor(df: usize) -> f64 {
    StudentsT::new(0.0, 1.0, df as f64)
        .map(|t| t.inverse_cdf(0.975) / Z_95)
        .unwrap_or(f64::NAN)
}

/// Lag-1 autocorrelation of ln(samples) in the order given: 0 for n < 3 or constant samples,
/// NaN for non-positive or NaN samples.
pub fn log_lag1(samples: &[f64]) -> f64 {
    if samples.len() < 3 {
        return 0.0;
    }
    let logs: Vec<f64> = samples.iter().map(|s| s.ln()).collect();
    // Exact test: the rounded mean of equal values can differ from them by an ulp, and the ratio
    // of such crumbs would be a spurious correlation.
    if logs.iter().all(|&l| l == logs[0]) {
        return 0.0;
    }
    let m = mean(&logs);
    let dev: Vec<f64> = logs.iter().map(|l| l - m).collect();
    let var: f64 = dev.iter().map(|d| d * d).sum();
    dev.windows(2).map(|w| w[0] * w[1]).sum::<f64>() / var
}

/// Interquartile range over the median of a few values (exact order statistics, linear
/// interpolation); 0 for fewer than two.
pub fn iqr_rel(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let pos = q * (v.len() - 1) as f64;
        let (i, frac) = (pos.floor() as usize, pos.fract());
        let next = v[(i + 1).min(v.len() - 1)];
        v[i] + frac * (next - v[i])
    };
    (at(0.75) - at(0.25)) / sorted_median(&v)
}

/// Sample standard deviation (n − 1) of natural logs: the relative spread of positive values.
pub fn log_sd(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let logs: Vec<f64> = values.iter().map(|v| v.ln()).collect();
    let mean = logs.iter().sum::<f64>() / logs.len() as f64;
    let var = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (logs.len() - 1) as f64;
    Some(var.sqrt())
}

/// The within-run standard error of a run's level, in log units: `summary.log_se` where it is
/// set, else (summaries read from files older than it) the iid se read back from the median's CI.
pub fn within_run_log_se(summary: &Summary) -> f64 {
    if summary.log_se > 0.0 && summary.log_se.is_finite() {
        summary.log_se
    } else {
        ci_log_se(summary.ci_low_s, summary.ci_high_s)
    }
}

/// The standard error of a median, in log units, read back from its 95 % CI (iid samples).
fn ci_log_se(ci_low_s: f64, ci_high_s: f64) -> f64 {
    (ci_high_s / ci_low_s).ln() / (2.0 * Z_95)
}

/// A gap between modes must be at least this many pooled within-mode standard deviations.
pub const MODE_GAP_SDS: f64 = 6.0;
/// Floor of that pooled sd, in log units (0.5 %): identical values cannot make a gap significant.
pub const MODE_SD_FLOOR: f64 = 0.005;
/// Smallest gap between modes, in log units (≈ 10.5 %): below it a second mode is noise to a gate
/// whose threshold is 5 %.
pub const MODE_MIN_GAP: f64 = 0.10;
/// Most groups `modes` returns.
pub const MAX_MODES: usize = 3;

/// Groups of processes that settle at clearly different speeds, from their run medians (positive
/// seconds, one per process): indices, each group sorted, groups fastest first. One group — no
/// split — is the common case.
///
/// On ln values, sorted, a group is split at its largest gap between consecutive values among
/// the places that leave both sides at least 2 values (one outlier is not a mode), when the gap
/// is at least `MODE_GAP_SDS` (6) times the pooled within-side sd (n − 2 df), that sd floored
/// at `MODE_SD_FLOOR` (0.005), and at least `MODE_MIN_GAP` (0.10, ≈ 10.5 %). Groups split again
/// the same way, the largest qualifying gap of all groups first, up to `MAX_MODES` (3) groups.
/// A side that still holds two modes has a large sd, so three modes are found only when one
/// pair of them lies much closer together than the third: three evenly spaced ones stay one
/// group. Of 1 000 seeded unimodal sets of 10 at CV 0.5–5 % none split (the tests); the 0.10
/// floor dominates the sd test whenever the pooled sd is under 1/60.
///
/// Empty input gives no groups; input with a value that is not positive and finite gives one
/// group of everything (nothing to measure gaps on).
pub fn modes(values: &[f64]) -> Vec<Vec<usize>> {
    if values.is_empty() {
        return Vec::new();
    }
    let logs: Vec<f64> = values.iter().map(|v| v.ln()).collect();
    if logs.iter().any(|l| !l.is_finite()) {
        return vec![(0..values.len()).collect()];
    }
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| logs[a].total_cmp(&logs[b]).then(a.cmp(&b)));
    let sorted: Vec<f64> = order.iter().map(|&i| logs[i]).collect();
    // Groups are ranges of `sorted`, kept in order, so they stay fastest first.
    let mut groups: Vec<std::ops::Range<usize>> = Vec::with_capacity(MAX_MODES);
    groups.push(0..sorted.len());
    while groups.len() < MAX_MODES {
        let best = groups
            .iter()
            .enumerate()
            .filter_map(|(g, r)| {
                mode_split(&sorted[r.clone()]).map(|(at, gap)| (g, r.start + at, gap))
            })
            .max_by(|a, b| a.2.total_cmp(&b.2));
        let Some((g, at, _)) = best else { break };
        let r = groups[g].clone();
        groups.splice(g..=g, [r.start..at, at..r.end]);
    }
    groups
        .into_iter()
        .map(|r| {
            let mut idx = order[r].to_vec();
            idx.sort_unstable();
            idx
        })
        .collect()
}

/// Where a sorted group of logs splits under the `modes` rule, if it does: the index of the
/// first value of the upper side, and the gap.
fn mode_split(sorted: &[f64]) -> Option<(usize, f64)> {
    let n = sorted.len();
    if n < 4 {
        return None;
    }
    let gap = |at: usize| sorted[at] - sorted[at - 1];
    let at = (2..=n - 2).max_by(|&a, &b| gap(a).total_cmp(&gap(b)))?;
    let ss = |side: &[f64]| {
        let m = mean(side);
        side.iter().map(|x| (x - m).powi(2)).sum::<f64>()
    };
    let pooled = ((ss(&sorted[..at]) + ss(&sorted[at..])) / (n - 2) as f64).sqrt();
    let g = gap(at);
    (g >= MODE_GAP_SDS * pooled.max(MODE_SD_FLOOR) && g >= MODE_MIN_GAP).then_some((at, g))
}

/// One-sided exact (Clopper–Pearson) upper confidence bound of a binomial proportion after `k`
/// events in `n` trials: the p at which seeing k or fewer has probability 1 − `confidence`, the
/// `confidence` quantile of Beta(k + 1, n − k). Exact rather than normal-approximate because
/// rates such as false alarms over simulated checks are counted near 0, where the normal
/// interval collapses to nothing. 1 when k = n (including n = 0: nothing observed);
/// NaN for k > n or a confidence outside [0, 1].
pub fn clopper_pearson_upper(k: usize, n: usize, confidence: f64) -> f64 {
    if k > n || !(0.0..=1.0).contains(&confidence) {
        return f64::NAN;
    }
    if k == n {
        return 1.0;
    }
    Beta::new((k + 1) as f64, (n - k) as f64)
        .map(|b| b.inverse_cdf(confidence))
        .unwrap_or(f64::NAN)
}

/// The one-sided exact lower bound of a binomial proportion: the rate is at least this with
/// `confidence` (0 for k = 0). `calibrate` fails only when even this exceeds the design α.
pub fn clopper_pearson_lower(k: usize, n: usize, confidence: f64) -> f64 {
    if k > n || !(0.0..=1.0).contains(&confidence) {
        return f64::NAN;
    }
    if k == 0 {
        return 0.0;
    }
    Beta::new(k as f64, (n - k + 1) as f64)
        .map(|b| b.inverse_cdf(1.0 - confidence))
        .unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clopper_pearson_lower_bounds() {
        assert_eq!(clopper_pearson_lower(0, 20, 0.95), 0.0);
        // One of n: 1 − 0.95^(1/n).
        let lo = clopper_pearson_lower(1, 20, 0.95);
        assert!((lo - (1.0 - 0.95f64.powf(1.0 / 20.0))).abs() < 1e-9, "{lo}");
        assert!(clopper_pearson_lower(3, 2, 0.95).is_nan());
    }
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal};

    /// Samples whose logs are `level` plus stationary AR(1) noise of marginal sd `sd`.
    fn ar1(rng: &mut StdRng, n: usize, rho: f64, sd: f64, level: f64) -> Vec<f64> {
        let mut z = || -> f64 { StandardNormal.sample(rng) };
        let innovation = sd * (1.0 - rho * rho).sqrt();
        let mut x = sd * z();
        (0..n)
            .map(|_| {
                let v = (level + x).exp();
                x = rho * x + innovation * z();
                v
            })
            .collect()
    }

    fn iid_log_se(samples: &[f64]) -> f64 {
        log_sd(samples).unwrap() / (samples.len() as f64).sqrt()
    }

    #[test]
    fn batch_means_se_covers_the_level_of_autocorrelated_runs() {
        const RUNS: usize = 2000;
        const N: usize = 300;
        const Z: f64 = 2.576; // two-sided 99 %
        let level = (1e-3f64).ln();
        let mut rng = StdRng::seed_from_u64(0x5eed_0ac1);
        let (mut covered, mut covered_iid) = (0usize, 0usize);
        let mut ratios = Vec::with_capacity(RUNS);
        let mut raw_ratios = Vec::with_capacity(RUNS);
        let mut lag1 = 0.0;
        for _ in 0..RUNS {
            let samples = ar1(&mut rng, N, 0.6, 0.02, level);
            let s = summarize(&samples);
            let log_mean = samples.iter().map(|v| v.ln()).sum::<f64>() / N as f64;
            let iid = iid_log_se(&samples);
            ratios.push(batch_means_log_se(&samples) / iid);
            raw_ratios.push(batch_means_log_se(&samples) / small_sample_factor(16) / iid);
            covered += usize::from((log_mean - level).abs() <= Z * s.log_se);
            covered_iid += usize::from((log_mean - level).abs() <= Z * iid);
            lag1 += s.lag1 / RUNS as f64;
        }
        let (coverage, coverage_iid) = (
            covered as f64 / RUNS as f64,
            covered_iid as f64 / RUNS as f64,
        );
        let ratio = median(&ratios);
        let raw = median(&raw_ratios);
        eprintln!(
            "bm/iid se median {ratio:.3} (unwidened {raw:.3}), coverage {coverage:.4} \
             (iid {coverage_iid:.4}), mean lag1 {lag1:.3}"
        );
        // AR(1) at ρ = 0.6 inflates the se of the mean by √((1+ρ)/(1−ρ)) = 2.
        assert!(raw >= 1.5, "batch-means se only {raw:.2}× the iid se");
        assert!(coverage >= 0.97, "±2.576·log_se covered {coverage}");
        assert!(
            coverage_iid < coverage - 0.05,
            "iid {coverage_iid} vs batch means {coverage}"
        );
        assert!((lag1 - 0.6).abs() < 0.05, "mean lag-1 {lag1}");
    }

    #[test]
    fn batch_means_se_matches_the_iid_se_on_iid_samples() {
        let mut rng = StdRng::seed_from_u64(7);
        let ratios: Vec<f64> = (0..200)
            .map(|_| {
                let samples = ar1(&mut rng, 300, 0.0, 0.02, 0.0);
                batch_means_log_se(&samples) / iid_log_se(&samples)
            })
            .collect();
        let ratio = median(&ratios);
        assert!((ratio - 1.0).abs() < 0.1, "median ratio {ratio}");
    }

    #[test]
    fn stop_rule_takes_the_wider_interval() {
        let mut rng = StdRng::seed_from_u64(5);
        // Correlated: the batch-means width is the wider, so it decides.
        let drifting = ar1(&mut rng, 300, 0.9, 0.02, -9.0);
        let (ci, bm) = (
            rel_ci_half_width(&drifting),
            (Z_95 * batch_means_log_se(&drifting)).exp_m1(),
        );
        assert!(bm > ci, "{bm} {ci}");
        assert_eq!(rel_half_width(&drifting), bm);
        // Wide iid samples from a bimodal mix: the median CI is the wider.
        let bimodal: Vec<f64> = (0..300)
            .map(|i| if i % 2 == 0 { 1.0 } else { 1.2 })
            .collect();
        assert_eq!(rel_half_width(&bimodal), rel_ci_half_width(&bimodal));
        assert!(rel_half_width(&bimodal) > 0.05);
        // Never "narrow enough" on nothing or on garbage.
        for bad in [
            &[][..],
            &[1.0][..],
            &[1.0, -1.0, 1.0][..],
            &[1.0, f64::NAN, 1.0][..],
        ] {
            assert!(rel_half_width(bad).is_nan(), "{bad:?}");
        }
        assert_eq!(rel_half_width(&[2.0; 20]), 0.0);
    }

    /// `centres[i]` seconds with lognormal noise of relative sd `cv`, `counts[i]` of each.
    fn clusters(rng: &mut StdRng, centres: &[f64], counts: &[usize], cv: f64) -> Vec<f64> {
        let mut out = Vec::new();
        for (&c, &k) in centres.iter().zip(counts) {
            for _ in 0..k {
                let z: f64 = StandardNormal.sample(rng);
                out.push(c * (cv * z).exp());
            }
        }
        out
    }

    #[test]
    fn one_speed_is_one_mode() {
        let mut rng = StdRng::seed_from_u64(21);
        let v = clusters(&mut rng, &[1e-3], &[10], 0.01);
        assert_eq!(modes(&v), vec![(0..10).collect::<Vec<_>>()]);
        // One process at 2× is an outlier, not a mode: each side needs two.
        let mut v = clusters(&mut rng, &[1e-3], &[10], 0.01);
        v[4] *= 2.0;
        assert_eq!(modes(&v).len(), 1);
    }

    #[test]
    fn two_speeds_are_two_modes() {
        let mut rng = StdRng::seed_from_u64(22);
        // The lavapipe pattern: 3 processes settle at 0.353 ms, 7 at 0.642 ms; interleaved.
        let mut v = clusters(&mut rng, &[0.353e-3, 0.642e-3], &[3, 7], 0.01);
        let fast: Vec<usize> = vec![1, 5, 8];
        let mut perm: Vec<usize> = fast.clone();
        perm.extend((0..10).filter(|i| !fast.contains(i)));
        let mut placed = vec![0.0; 10];
        for (slot, &value) in perm.iter().zip(&v) {
            placed[*slot] = value;
        }
        v = placed;
        assert_eq!(modes(&v), vec![fast, vec![0, 2, 3, 4, 6, 7, 9]]);
    }

    #[test]
    fn three_speeds_are_three_modes_and_no_more() {
        let mut rng = StdRng::seed_from_u64(23);
        let v = clusters(&mut rng, &[1e-3, 1.25e-3, 4e-3], &[3, 3, 4], 0.01);
        assert_eq!(
            modes(&v),
            vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7, 8, 9]]
        );
        // Four would qualify; the smallest gap stays unsplit.
        let v = clusters(&mut rng, &[1.0, 1.25, 8.0, 1e5], &[2, 2, 2, 2], 0.01);
        assert_eq!(modes(&v), vec![vec![0, 1, 2, 3], vec![4, 5], vec![6, 7]]);
        // The documented limit: evenly spaced modes (×1.5 apart) leave a side with two of them,
        // whose sd hides the gap, so nothing splits.
        let v = clusters(&mut rng, &[1e-3, 1.5e-3, 2.25e-3], &[3, 3, 4], 0.01);
        assert_eq!(modes(&v).len(), 1);
    }

    #[test]
    fn unimodal_runs_are_almost_never_split() {
        let mut rng = StdRng::seed_from_u64(24);
        let mut split = 0;
        for i in 0..1000 {
            let cv = 0.005 + 0.045 * f64::from(i) / 999.0;
            let v = clusters(&mut rng, &[1e-3], &[10], cv);
            split += usize::from(modes(&v).len() > 1);
        }
        eprintln!("{split} of 1000 unimodal sets split");
        assert!(split <= 5, "{split} of 1000 unimodal sets split");
    }

    #[test]
    fn modes_edges() {
        assert!(modes(&[]).is_empty());
        assert_eq!(modes(&[1.0]), vec![vec![0]]);
        assert_eq!(modes(&[1.0, 1.0, 2.0, 2.0]), vec![vec![0, 1], vec![2, 3]]);
        assert_eq!(modes(&[1.0, 1.0, 1.05, 1.05]).len(), 1); // under the 0.10 floor
        assert_eq!(
            modes(&[1.0, 1.0, 2.0, f64::NAN, 2.0]),
            vec![vec![0, 1, 2, 3, 4]]
        );
        assert_eq!(modes(&[1.0, 0.0, 2.0, 2.0]).len(), 1);
    }

    /// P(X ≤ k) for X ~ Binomial(n, p), summed in log space: an oracle independent of statrs.
    fn binomial_cdf(k: usize, n: usize, p: f64) -> f64 {
        let ln_choose = |i: usize| -> f64 {
            (1..=i)
                .map(|j| ((n - i + j) as f64).ln() - (j as f64).ln())
                .sum()
        };
        (0..=k)
            .map(|i| (ln_choose(i) + i as f64 * p.ln() + (n - i) as f64 * (-p).ln_1p()).exp())
            .sum()
    }

    #[test]
    fn clopper_pearson_upper_bounds() {
        // 0 of n has the closed form 1 − (1 − c)^(1/n).
        let b = clopper_pearson_upper(0, 20, 0.95);
        assert!((b - (1.0 - 0.05f64.powf(1.0 / 20.0))).abs() < 1e-12, "{b}");
        assert_eq!((b * 1e3).round() / 1e3, 0.139);
        assert!((clopper_pearson_upper(1, 20, 0.95) - 0.2161).abs() < 5e-5);
        // 1 − 0.05^(1/2000) = 0.0014967; −ln(0.05)/2000 = 0.0014979 is its first-order
        // approximation, 8e-4 relative above it.
        let b = clopper_pearson_upper(0, 2000, 0.95);
        assert!(
            (b - (1.0 - 0.05f64.powf(1.0 / 2000.0))).abs() < 1e-12,
            "{b}"
        );
        assert!((b - 0.0014967).abs() < 5e-8, "{b}");
        // The defining property, against an independent binomial sum.
        for (k, n) in [(1, 20), (3, 50), (10, 200), (5, 2000), (99, 100)] {
            for c in [0.9, 0.95, 0.99] {
                let p = clopper_pearson_upper(k, n, c);
                let tail = binomial_cdf(k, n, p);
                assert!(
                    (tail - (1.0 - c)).abs() < 1e-9,
                    "k={k} n={n} c={c}: P(X≤k)={tail}"
                );
            }
        }
        assert_eq!(clopper_pearson_upper(20, 20, 0.95), 1.0);
        assert_eq!(clopper_pearson_upper(0, 0, 0.95), 1.0);
        assert!(clopper_pearson_upper(21, 20, 0.95).is_nan());
        assert!(clopper_pearson_upper(1, 20, f64::NAN).is_nan());
        assert!(clopper_pearson_upper(1, 20, 1.5).is_nan());
        assert_eq!(clopper_pearson_upper(1, 20, 1.0), 1.0);
    }

    /// Every object holding both a `summary` and its `samples_s`, wherever it sits in the file.
    fn stored_runs(v: &serde_json::Value, out: &mut Vec<(Summary, Vec<f64>)>) {
        match v {
            serde_json::Value::Object(o) => {
                if let (Some(s), Some(samples)) = (o.get("summary"), o.get("samples_s")) {
                    out.push((
                        serde_json::from_value(s.clone()).unwrap(),
                        serde_json::from_value(samples.clone()).unwrap(),
                    ));
                }
                o.values().for_each(|v| stored_runs(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| stored_runs(v, out)),
            _ => {}
        }
    }

    /// Baseline files store summaries that a loader recomputes from the raw samples: the fields
    /// that existed when they were written must come out the same. (Not bit for bit: the files'
    /// values went through serde_json's float parser, which is off by an ulp at times.)
    #[test]
    fn summarize_agrees_with_the_checked_in_baselines() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("baselines");
        let mut runs = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).unwrap();
                stored_runs(&serde_json::from_str(&text).unwrap(), &mut runs);
            }
        }
        assert!(runs.len() >= 10, "found only {} stored runs", runs.len());
        let mut worst = 0.0f64;
        for (stored, samples) in &runs {
            let s = summarize(samples);
            assert_eq!(stored.disagreement(&s), None);
            // Version-1 files were written before log_se and lag1 existed (absent, read as 0,
            // skipped); version-2 files carry them, and they agree too (checked above).
            for (x, y) in [
                (stored.median_s, s.median_s),
                (stored.mean_s, s.mean_s),
                (stored.p99_s, s.p99_s),
            ] {
                worst = worst.max((x / y - 1.0).abs());
            }
            // And the new fields of a fresh summary survive the file round trip.
            let back: Summary = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
            assert_eq!(back.disagreement(&s), None);
        }
        eprintln!(
            "{} stored runs; worst relative difference {worst:e}",
            runs.len()
        );
    }

    #[test]
    fn disagreement_names_the_first_field_that_differs() {
        let mut rng = StdRng::seed_from_u64(31);
        let stored = summarize(&ar1(&mut rng, 100, 0.5, 0.02, -7.0));
        assert!(stored.log_se > 0.0 && stored.lag1 != 0.0);
        assert_eq!(stored.disagreement(&stored.clone()), None);
        let mut re = stored.clone();
        re.median_s *= 1.0 + 1e-12; // within the tolerance
        re.lag1 += 1e-12;
        assert_eq!(stored.disagreement(&re), None);
        re.median_s = 1.3e-3;
        re.p99_s *= 2.0;
        let mut fixed = stored.clone();
        fixed.median_s = 1.2e-3;
        assert_eq!(
            fixed.disagreement(&re).as_deref(),
            Some("median_s: stored 1.2e-3, recomputed 1.3e-3")
        );
        re.n += 1;
        assert_eq!(
            stored.disagreement(&re),
            Some(format!("n: stored {}, recomputed {}", stored.n, re.n))
        );
        // New fields: compared when present, skipped when absent (0).
        let mut re = stored.clone();
        re.log_se *= 1.01;
        assert!(stored.disagreement(&re).unwrap().starts_with("log_se: "));
        let mut re = stored.clone();
        re.lag1 = 0.1;
        assert!(stored.disagreement(&re).unwrap().starts_with("lag1: "));
        let mut old = stored.clone();
        (old.log_se, old.lag1) = (0.0, 0.0);
        assert_eq!(old.disagreement(&re), None);
        // Non-finite values agree only with themselves.
        let mut odd = stored.clone();
        odd.iqr_rel = f64::NAN;
        assert!(odd
            .disagreement(&stored)
            .unwrap()
            .starts_with("iqr_rel: stored NaN"));
        assert_eq!(odd.disagreement(&odd.clone()), None);
        let mut re = odd.clone();
        re.max_s = f64::INFINITY;
        assert!(odd.disagreement(&re).unwrap().starts_with("max_s: "));
        let empty = summarize(&[]);
        assert_eq!(empty.disagreement(&summarize(&[])), None);
    }

    #[test]
    fn batch_means_se_edges() {
        assert!(batch_means_log_se(&[]).is_nan());
        assert!(batch_means_log_se(&[1.0]).is_nan());
        // n < 10: one batch at most, so the iid se of the log mean.
        let few = [1.0, 1.1, 0.9, 1.05, 0.95, 1.0, 1.02, 0.98, 1.01];
        let t8 = 2.306_004_135; // t(8, 0.975)
        let se = batch_means_log_se(&few);
        assert!((se / iid_log_se(&few) - t8 / Z_95).abs() < 1e-6, "{se}");
        // n = 10: two batches of five; constant batch means give 0.
        let two = [1.0, 2.0, 1.0, 2.0, 1.5, 2.0, 1.0, 2.0, 1.0, 1.5];
        assert_eq!(batch_means_log_se(&two), 0.0);
        assert!(batch_means_log_se(&[1.0, 0.0, 1.0]).is_nan());
        assert!(batch_means_log_se(&[1.0, f64::NAN, 1.0]).is_nan());
        assert_eq!(batch_means_log_se(&[2.0; 50]), 0.0);
    }

    #[test]
    fn lag1_reads_the_order_taken() {
        assert_eq!(log_lag1(&[1.0, 2.0]), 0.0);
        assert_eq!(log_lag1(&[3.0; 10]), 0.0);
        let alternating: Vec<f64> = (0..100)
            .map(|i| if i % 2 == 0 { 1.0 } else { 2.0 })
            .collect();
        assert!(log_lag1(&alternating) < -0.95);
        // A drift (in order) against the same values in a scrambled order.
        let drift: Vec<f64> = (0..100).map(|i| 1.0 + 1e-3 * f64::from(i)).collect();
        let mut scrambled = drift.clone();
        scrambled.shuffle(&mut StdRng::seed_from_u64(11));
        assert!(log_lag1(&drift) > 0.95);
        assert!(log_lag1(&scrambled).abs() < 0.3, "{}", log_lag1(&scrambled));
        // Order changes none of the iid statistics, only the order-aware ones.
        let (a, b) = (summarize(&scrambled), summarize(&drift));
        assert_eq!(
            (a.median_s, a.ci_low_s, a.ci_high_s),
            (b.median_s, b.ci_low_s, b.ci_high_s)
        );
        assert!(b.log_se > 1.5 * a.log_se, "{a:?} {b:?}");
    }

    #[test]
    fn log_se_falls_back_to_the_median_ci() {
        let mut rng = StdRng::seed_from_u64(3);
        let s = summarize(&ar1(&mut rng, 200, 0.0, 0.02, -7.0));
        let from_ci = ci_log_se(s.ci_low_s, s.ci_high_s);
        assert!(s.log_se >= from_ci && s.log_se > 0.0);
        assert_eq!(within_run_log_se(&s), s.log_se);
        // A summary from a file written before log_se and lag1 existed.
        let mut old = serde_json::to_value(&s).unwrap();
        let obj = old.as_object_mut().unwrap();
        obj.remove("log_se");
        obj.remove("lag1");
        let old: Summary = serde_json::from_value(old).unwrap();
        assert_eq!((old.log_se, old.lag1), (0.0, 0.0));
        assert_eq!(within_run_log_se(&old), from_ci);
        // Nothing undefined reaches a file as NaN (JSON null).
        for samples in [&[][..], &[1e-3][..], &[0.0, 1e-3, 2e-3][..]] {
            let s = summarize(samples);
            assert!(s.log_se.is_finite() && s.lag1.is_finite(), "{s:?}");
        }
    }

    #[test]
    fn median_and_ci_bracket_the_middle() {
        let v: Vec<f64> = (1..=101).map(f64::from).collect();
        let s = summarize(&v);
        assert_eq!(s.median_s, 51.0);
        assert!(s.ci_low_s < 51.0 && s.ci_high_s > 51.0);
        // ~95 % of a uniform sample's median CI spans about ±1.96·√n/2 ranks.
        assert!((s.ci_high_s - s.ci_low_s - 20.0).abs() <= 3.0, "{s:?}");
        assert_eq!(median(&[3.0, 1.0, 2.0, 4.0]), 2.5);
    }

    #[test]
    fn quantiles_come_from_the_samples() {
        let v: Vec<f64> = (1..=1000).map(|i| f64::from(i) * 1e-6).collect();
        let s = summarize(&v);
        assert!((s.p25_s / 250e-6 - 1.0).abs() < 0.01, "{s:?}");
        assert!((s.p75_s / 750e-6 - 1.0).abs() < 0.01, "{s:?}");
        assert!((s.iqr_rel - 1.0).abs() < 0.02, "{s:?}");
    }

    #[test]
    fn log_sd_is_relative_spread() {
        assert_eq!(log_sd(&[1.0]), None);
        let sd = log_sd(&[1.0, 1.1, 0.9, 1.05, 0.95]).unwrap();
        assert!(sd > 0.05 && sd < 0.1, "{sd}");
    }
}
