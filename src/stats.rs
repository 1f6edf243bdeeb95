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

/// Summarise samples in seconds. Quantiles come from an hdrhistogram of nanoseconds at four
/// significant digits; the median and its CI from the exact sorted samples.
pub fn summarize(samples: &[f64]) -> Summary {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut hist = hdrhistogram::Histogram::<u64>::new(4).expect("4 significant digits is valid");
    for &s in &sorted {
        // Sub-nanosecond samples are recorded as 1 ns rather than dropped.
        hist.saturating_record((s * 1e9).round().max(1.0) as u64);
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
