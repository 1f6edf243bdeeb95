//! The pure parts of the plots: scales, ticks, number formats and SVG coordinates. Every number
//! that reaches an SVG attribute goes through [`num`], so a NaN or an infinity in a report can
//! never make the page's SVG invalid.

/// Where a plot draws: the SVG's size and the margins around its plotting area.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Frame {
    pub width: f64,
    pub height: f64,
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
}

impl Frame {
    /// The plotting area's horizontal range, left to right.
    pub fn x_range(&self) -> (f64, f64) {
        (self.left, self.width - self.right)
    }

    /// The plotting area's vertical range, bottom to top (SVG's y grows downwards).
    pub fn y_range(&self) -> (f64, f64) {
        (self.height - self.bottom, self.top)
    }

    pub fn view_box(&self) -> String {
        format!("0 0 {} {}", num(self.width), num(self.height))
    }
}

/// A map from data to SVG coordinates along one axis.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scale {
    Linear {
        domain: (f64, f64),
        range: (f64, f64),
    },
    /// Base-10 logarithmic; the domain must be positive.
    Log {
        domain: (f64, f64),
        range: (f64, f64),
    },
}

impl Scale {
    /// A linear scale; a degenerate domain is widened so that its one value sits in the middle.
    pub fn linear(domain: (f64, f64), range: (f64, f64)) -> Scale {
        Scale::Linear {
            domain: widen(domain, false),
            range,
        }
    }

    /// A log scale over a positive domain (a degenerate one is widened by a factor of 2 each way).
    pub fn log(domain: (f64, f64), range: (f64, f64)) -> Scale {
        Scale::Log {
            domain: widen(domain, true),
            range,
        }
    }

    pub fn map(&self, v: f64) -> f64 {
        let (t, range) = match *self {
            Scale::Linear { domain, range } => ((v - domain.0) / (domain.1 - domain.0), range),
            Scale::Log { domain, range } => (
                (v.log10() - domain.0.log10()) / (domain.1.log10() - domain.0.log10()),
                range,
            ),
        };
        range.0 + t * (range.1 - range.0)
    }

    /// Tick values inside the domain: "nice" steps on a linear scale, powers of ten on a log
    /// scale (with 2 and 5 between them when the domain spans less than two decades).
    pub fn ticks(&self) -> Vec<f64> {
        match *self {
            Scale::Linear { domain, .. } => linear_ticks(domain.0, domain.1, 6),
            Scale::Log { domain, .. } => log_ticks(domain.0, domain.1),
        }
    }

    /// Whether `v` can be drawn on this scale (finite, positive on a log scale).
    pub fn accepts(&self, v: f64) -> bool {
        v.is_finite() && (matches!(self, Scale::Linear { .. }) || v > 0.0)
    }
}

/// A domain with room: equal ends pulled apart, so no scale divides by zero.
fn widen((lo, hi): (f64, f64), log: bool) -> (f64, f64) {
    if lo < hi {
        (lo, hi)
    } else if log {
        (lo / 2.0, lo * 2.0)
    } else if lo == 0.0 {
        (-1.0, 1.0)
    } else {
        (lo - lo.abs() / 2.0, lo + lo.abs() / 2.0)
    }
}

/// The smallest and largest finite values (positive only, for a log axis), if any.
pub fn extent(values: impl IntoIterator<Item = f64>, positive: bool) -> Option<(f64, f64)> {
    values
        .into_iter()
        .filter(|v| v.is_finite() && (!positive || *v > 0.0))
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// `(lo, hi)` widened by `fraction` of its span on each side (linear axes).
pub fn pad((lo, hi): (f64, f64), fraction: f64) -> (f64, f64) {
    let span = if hi > lo {
        hi - lo
    } else {
        lo.abs().max(1e-12)
    };
    (lo - span * fraction, hi + span * fraction)
}

/// Up to about `target` ticks at 1, 2 or 5 × 10ⁿ steps inside `[lo, hi]`.
pub fn linear_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite() && hi > lo) || target == 0 {
        return vec![];
    }
    let raw = (hi - lo) / target as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Powers of ten inside `[lo, hi]` (a positive domain), with 2× and 5× between them when that
/// gives fewer than three ticks.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && hi > lo) {
        return vec![];
    }
    let decades = lo.log10().floor() as i32..=hi.log10().ceil() as i32;
    let within = |v: &f64| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9);
    let powers: Vec<f64> = decades
        .clone()
        .map(|e| 10f64.powi(e))
        .filter(within)
        .collect();
    if powers.len() >= 3 {
        return powers;
    }
    let finer: Vec<f64> = decades
        .flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e)))
        .filter(within)
        .collect();
    // Less than a factor of 5: plain steps read better than one lone tick.
    if finer.len() >= 2 {
        finer
    } else {
        linear_ticks(lo, hi, 4)
    }
}

/// An SVG coordinate or length: two decimals at most, and `0` for anything not finite (the
/// plots leave such values out before they get here; this is the last guard).
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "0".into();
    }
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// `points` as a polyline's `points` attribute.
pub fn polyline(points: &[(f64, f64)]) -> String {
    points
        .iter()
        .map(|(x, y)| format!("{},{}", num(*x), num(*y)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A number for people: three significant digits, SI-free, `–` when not finite.
pub fn sig3(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e6).contains(&a) {
        return format!("{v:.2e}");
    }
    let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
    format!("{v:.decimals$}")
}

/// A time per iteration for people: `12.3 µs`.
pub fn seconds(s: f64) -> String {
    if !s.is_finite() {
        return "–".into();
    }
    let (value, unit) = match s.abs() {
        a if a >= 1.0 || a == 0.0 => (s, "s"),
        a if a >= 1e-3 => (s * 1e3, "ms"),
        a if a >= 1e-6 => (s * 1e6, "µs"),
        _ => (s * 1e9, "ns"),
    };
    format!("{} {unit}", sig3(value))
}

/// A fraction as a percentage: `12.3 %`.
pub fn percent(f: f64) -> String {
    if f.is_finite() {
        format!("{} %", sig3(f * 100.0))
    } else {
        "–".into()
    }
}

/// A deterministic vertical jitter in `[-0.5, 0.5)` for the `i`-th dot of a strip (the golden
/// ratio's low-discrepancy sequence: dots spread evenly, and the page is the same every time).
pub fn jitter(i: usize) -> f64 {
    (i as f64 * 0.618_033_988_749_895).fract() - 0.5
}

/// At most `cap` of `n` indices, evenly spread and always including the first and last.
pub fn thin(n: usize, cap: usize) -> Vec<usize> {
    if n <= cap || cap < 2 {
        return (0..n.min(cap.max(1))).collect();
    }
    (0..cap).map(|k| k * (n - 1) / (cap - 1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_scale_maps_ends_and_widens_a_point() {
        let s = Scale::linear((0.0, 10.0), (100.0, 200.0));
        assert_eq!(s.map(0.0), 100.0);
        assert_eq!(s.map(5.0), 150.0);
        assert_eq!(s.map(10.0), 200.0);
        let point = Scale::linear((4.0, 4.0), (0.0, 10.0));
        assert_eq!(point.map(4.0), 5.0);
        let zero = Scale::linear((0.0, 0.0), (0.0, 10.0));
        assert_eq!(zero.map(0.0), 5.0);
    }

    #[test]
    fn log_scale_maps_decades_evenly() {
        let s = Scale::log((1.0, 1000.0), (0.0, 300.0));
        assert!((s.map(10.0) - 100.0).abs() < 1e-9);
        assert!((s.map(100.0) - 200.0).abs() < 1e-9);
        assert!(!s.accepts(0.0) && !s.accepts(f64::NAN) && s.accepts(1e-9));
        let point = Scale::log((10.0, 10.0), (0.0, 2.0));
        assert!((point.map(10.0) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn linear_ticks_are_nice_and_inside() {
        assert_eq!(
            linear_ticks(0.0, 10.0, 5),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        let t = linear_ticks(0.13, 0.87, 6);
        assert_eq!(t.len(), 4, "{t:?}");
        assert!(t.iter().all(|v| (0.13..=0.87).contains(v)));
        assert!(linear_ticks(1.0, 1.0, 5).is_empty());
        assert!(linear_ticks(f64::NAN, 1.0, 5).is_empty());
    }

    #[test]
    fn log_ticks_are_powers_of_ten_or_finer_on_short_ranges() {
        assert_eq!(log_ticks(0.5, 2000.0), vec![1.0, 10.0, 100.0, 1000.0]);
        assert_eq!(log_ticks(3.0, 30.0), vec![5.0, 10.0, 20.0]);
        assert_eq!(log_ticks(14.0, 40.0), vec![20.0, 30.0, 40.0]);
        assert!(log_ticks(0.0, 10.0).is_empty());
        assert!(log_ticks(10.0, f64::INFINITY).is_empty());
    }

    #[test]
    fn numbers_in_svg_are_never_nan() {
        assert_eq!(num(f64::NAN), "0");
        assert_eq!(num(f64::INFINITY), "0");
        assert_eq!(num(1.0), "1");
        assert_eq!(num(1.256), "1.26");
        assert_eq!(num(-0.001), "0");
        assert_eq!(polyline(&[(1.0, f64::NAN), (2.5, 3.0)]), "1,0 2.5,3");
    }

    #[test]
    fn people_numbers() {
        assert_eq!(sig3(123.456), "123");
        assert_eq!(sig3(1.23456), "1.23");
        assert_eq!(sig3(0.0123456), "0.0123");
        assert_eq!(sig3(f64::NAN), "–");
        assert_eq!(seconds(12.3e-6), "12.3 µs");
        assert_eq!(seconds(0.25), "250 ms");
        assert_eq!(seconds(4e-9), "4.00 ns");
        assert_eq!(percent(0.5), "50.0 %");
    }

    #[test]
    fn extent_skips_what_an_axis_cannot_show() {
        assert_eq!(extent([3.0, f64::NAN, 1.0, 2.0], false), Some((1.0, 3.0)));
        assert_eq!(extent([0.0, -1.0, 4.0], true), Some((4.0, 4.0)));
        assert_eq!(extent([f64::NAN], false), None);
    }

    #[test]
    fn jitter_and_thinning_are_deterministic_and_bounded() {
        assert!((0..1000).map(jitter).all(|j| (-0.5..0.5).contains(&j)));
        assert_eq!(thin(5, 10), vec![0, 1, 2, 3, 4]);
        let t = thin(1000, 5);
        assert_eq!(t, vec![0, 249, 499, 749, 999]);
    }
}
