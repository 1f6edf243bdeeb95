//! Statistics of raw samples: order-statistic median CI, quantiles from an hdrhistogram,
//! dispersion. Raw samples are always kept beside what is derived from them.

use serde::{Deserialize, Serialize};

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
}

impl Summary {
    /// Half the CI's width over the median: the sampler's stop criterion.
    pub fn rel_ci_half_width(&self) -> f64 {
        (self.ci_high_s - self.ci_low_s) / (2.0 * self.median_s)
    }
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

/// Half the median's 95 % CI over the median, without the rest of a summary (the stop rule).
pub fn rel_ci_half_width(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (lo, hi) = median_ci(&sorted);
    (hi - lo) / (2.0 * sorted_median(&sorted))
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
    }
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

/// The within-run standard error of a median, in log units, read back from its 95 % CI.
pub fn within_run_log_se(summary: &Summary) -> f64 {
    (summary.ci_high_s / summary.ci_low_s).ln() / (2.0 * Z_95)
}

impl Summary {
    /// PLACEHOLDER until wip-stats lands.
    pub fn disagreement(&self, recomputed: &Summary) -> Option<String> {
        (self.median_s != recomputed.median_s).then(|| "median_s".into())
    }
}

/// PLACEHOLDER until wip-stats lands.
pub fn clopper_pearson_upper(k: usize, n: usize, confidence: f64) -> f64 {
    let _ = (k, confidence);
    1.0 / n as f64
}

/// PLACEHOLDER until wip-stats lands: one mode.
pub fn modes(values: &[f64]) -> Vec<Vec<usize>> {
    vec![(0..values.len()).collect()]
}

#[cfg(test)]
mod tests {
    use super::*;

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
