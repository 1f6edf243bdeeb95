//! Change points in a kernel's run history: "when did it change?", next to the baseline's "is it
//! slower now?".
//!
//! E-divisive means (Matteson & James, 2014) as Apache Otava (ex-Hunter) and MongoDB's
//! signal-processing-algorithms run it over performance history: within a segment, the split
//! that maximises the energy statistic Q̂ (α = 1) between its two sides is the candidate; a
//! permutation test decides whether it is significant; if so both sides are searched in turn
//! (recursive bisection), else the segment has no change point. A split leaves at least
//! `min_segment` points on each side. Detection runs on log(time), so a change is a ratio
//! whatever the kernel's scale. The formulas, what the significance means and the measured
//! false-detection and hit rates are in docs/statistics.md ("Change points").
//!
//! No crate fits: `edivisive` (a 2021 port, one unstable release) is unmaintained, and the
//! statistic on one dimension with α = 1 is a few lines with prefix sums.

use std::collections::BTreeMap;
use std::io::{self, Write};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::report::{fmt_time, Report};

/// How change points are searched for and tested.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The permutation test's level for each candidate split: a segment without a change is
    /// split with probability ≤ this.
    pub significance: f64,
    /// Permutations per candidate; the smallest p-value is 1 / (permutations + 1), so it must be
    /// ≥ 1 / significance − 1 for anything to be significant ([`Options::validate`]).
    pub permutations: usize,
    /// Fewest points either side of a split (≥ 2: the statistic needs a pair on each side).
    pub min_segment: usize,
    /// Seed of the permutations: the same series and options give the same change points.
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            significance: 0.01,
            permutations: 199,
            min_segment: 5,
            seed: 0x6770_7567_6174_6531,
        }
    }
}

impl Options {
    /// Options that can find something: a level in (0, 1), enough permutations to reach it, a
    /// minimum segment of at least 2.
    pub fn validate(&self) -> Result<()> {
        if !(self.significance > 0.0 && self.significance < 1.0) {
            return Err(Error::Usage(format!(
                "change-point significance {} is not in (0, 1)",
                self.significance
            )));
        }
        if 1.0 / (self.permutations as f64 + 1.0) > self.significance {
            return Err(Error::Usage(format!(
                "{} permutations cannot reach significance {}: the smallest p-value is 1/{}",
                self.permutations,
                self.significance,
                self.permutations + 1
            )));
        }
        if self.min_segment < 2 {
            return Err(Error::Usage(format!(
                "change-point minimum segment {} is below 2",
                self.min_segment
            )));
        }
        Ok(())
    }
}

/// One change point of a series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangePoint {
    /// Index (into the series given) of the first value of the new segment.
    pub index: usize,
    /// Geometric means of the segments just before and just after it, between the neighbouring
    /// change points, in the series' units (seconds).
    pub before: f64,
    pub after: f64,
    /// after / before: above 1 slower.
    pub ratio: f64,
    /// The permutation test's p-value for the split that found it.
    pub p_value: f64,
}

/// The change points of `series`, in index order. Values that are not positive finite numbers
/// (a failed run's NaN, a zero) are skipped: detection runs on the others, and every index
/// still refers to `series`. Fewer than 2·`min_segment` usable values give none.
pub fn detect(series: &[f64], opts: &Options) -> Vec<ChangePoint> {
    let min = opts.min_segment.max(2);
    let (at, logs): (Vec<usize>, Vec<f64>) = series
        .iter()
        .enumerate()
        .filter(|(_, v)| v.is_finite() && **v > 0.0)
        .map(|(i, v)| (i, v.ln()))
        .unzip();
    // Segments still to search, as [start, end) into `logs`.
    let mut todo = vec![(0, logs.len())];
    let mut found: Vec<(usize, f64)> = Vec::new();
    let mut buf = Vec::new();
    while let Some((a, b)) = todo.pop() {
        let segment = &logs[a..b];
        let Some((split, q)) = best_split(segment, min) else {
            continue;
        };
        // Seeded per segment, so a segment's test does not depend on the order segments are
        // searched in.
        let mut rng = StdRng::seed_from_u64(opts.seed ^ (((a as u64) << 32) | b as u64));
        if let Some(p) = permutation_p(segment, q, min, opts, &mut rng, &mut buf) {
            found.push((a + split, p));
            todo.push((a, a + split));
            todo.push((a + split, b));
        }
    }
    found.sort_by_key(|&(i, _)| i);
    let bounds: Vec<usize> = std::iter::once(0)
        .chain(found.iter().map(|&(i, _)| i))
        .chain(std::iter::once(logs.len()))
        .collect();
    let geomean = |s: &[f64]| (s.iter().sum::<f64>() / s.len() as f64).exp();
    found
        .iter()
        .enumerate()
        .map(|(k, &(i, p_value))| {
            let before = geomean(&logs[bounds[k]..i]);
            let after = geomean(&logs[i..bounds[k + 2]]);
            ChangePoint {
                index: at[i],
                before,
                after,
                ratio: after / before,
                p_value,
            }
        })
        .collect()
}

/// The split of `z` (index of the right side's first value, each side ≥ `min` long) with the
/// largest Q̂ = m·n/(m+n) · Ê(left, right), and that Q̂; the first on ties. With α = 1,
/// Ê = 2/(mn)·Σ|x−y| − Σ_{i<k}|xᵢ−xₖ| / C(m,2) − Σ_{j<l}|yⱼ−yₗ| / C(n,2). None when `z` is too
/// short to split.
fn best_split(z: &[f64], min: usize) -> Option<(usize, f64)> {
    let n = z.len();
    if n < 2 * min {
        return None;
    }
    // left[t] = Σ_{i<t} |zᵢ − zₜ|, right[t] = Σ_{j>t} |zₜ − zⱼ|: each pair once, O(n²).
    let mut left = vec![0.0; n];
    let mut right = vec![0.0; n];
    for t in 1..n {
        for i in 0..t {
            let d = (z[i] - z[t]).abs();
            left[t] += d;
            right[i] += d;
        }
    }
    let total: f64 = left.iter().sum();
    // within_left = Σ over pairs inside [0, τ); within_right over pairs inside [τ, n).
    let mut within_left: f64 = left[..min].iter().sum();
    let mut within_right: f64 = right[min..].iter().sum();
    let mut best: Option<(usize, f64)> = None;
    for tau in min..=n - min {
        if tau > min {
            within_left += left[tau - 1];
            within_right -= right[tau - 1];
        }
        let cross = total - within_left - within_right;
        let (m, k) = (tau as f64, (n - tau) as f64);
        let e = 2.0 * cross / (m * k)
            - within_left / (m * (m - 1.0) / 2.0)
            - within_right / (k * (k - 1.0) / 2.0);
        let q = m * k / (m + k) * e;
        if best.is_none_or(|(_, b)| q > b) {
            best = Some((tau, q));
        }
    }
    best
}

/// The permutation p-value of `q`, the best split's statistic of `segment`, when it is at most
/// `opts.significance`; None otherwise. p = (1 + #{permutations whose best Q̂ ≥ q}) / (R + 1),
/// exact under exchangeability. Permuting stops as soon as the count already puts p above the
/// level (the outcome is decided; its p-value is never reported), which is what makes the
/// test cheap on the noise-only segments that are most of a history.
fn permutation_p(
    segment: &[f64],
    q: f64,
    min: usize,
    opts: &Options,
    rng: &mut StdRng,
    buf: &mut Vec<f64>,
) -> Option<f64> {
    let total = opts.permutations as f64 + 1.0;
    // A permuted statistic equal to q up to rounding counts as reaching it (conservative).
    let reach = q - 1e-12 * q.abs();
    buf.clear();
    buf.extend_from_slice(segment);
    let mut reached = 0usize;
    for _ in 0..opts.permutations {
        buf.shuffle(rng);
        if best_split(buf, min).is_some_and(|(_, qp)| qp >= reach) {
            reached += 1;
            if (1.0 + reached as f64) / total > opts.significance {
                return None;
            }
        }
    }
    let p = (1.0 + reached as f64) / total;
    (p <= opts.significance).then_some(p)
}

/// A change point in a kernel's history: where it is and when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeAt {
    #[serde(flatten)]
    pub point: ChangePoint,
    /// `finished_at` of the first report after the change.
    pub at: Option<DateTime<Utc>>,
    /// Its serve run id, when the reports came from serve's history.
    pub run_id: Option<u64>,
}

/// One series (a kernel instance on one GPU) out of a sequence of reports, and its change points.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelChanges {
    #[serde(flatten)]
    pub series: SeriesInfo,
    pub changes: Vec<ChangeAt>,
}

/// A series before detection: one value per report, oldest first.
struct Series {
    device_key: String,
    pci_bus_id: Option<String>,
    kernel: String,
    medians_s: Vec<f64>,
    at: Vec<Option<DateTime<Utc>>>,
    run_ids: Vec<Option<u64>>,
}

impl Series {
    fn info(&self) -> SeriesInfo {
        SeriesInfo {
            device_key: self.device_key.clone(),
            pci_bus_id: self.pci_bus_id.clone(),
            kernel: self.kernel.clone(),
            points: self.medians_s.len(),
            first_at: self.at.first().copied().flatten(),
            last_at: self.at.last().copied().flatten(),
            last_median_s: self.medians_s.last().copied().unwrap_or(f64::NAN),
        }
    }

    fn with(self, changes: Vec<ChangeAt>) -> KernelChanges {
        KernelChanges {
            series: self.info(),
            changes,
        }
    }
}

/// A series without detection: `gpugate history` without `--changes` (no `changes` field, so
/// a listing never reads as "no change").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeriesInfo {
    pub device_key: String,
    /// `Report.gpu`'s PCI bus id: which GPU of a node with several of one model.
    pub pci_bus_id: Option<String>,
    /// The row key (`name[params]`).
    pub kernel: String,
    /// Reports in the series.
    pub points: usize,
    pub first_at: Option<DateTime<Utc>>,
    pub last_at: Option<DateTime<Utc>>,
    /// The latest report's median time per iteration (seconds).
    pub last_median_s: f64,
}

/// The series in `reports` (each with its serve run id, if any): reports ordered by
/// `finished_at` (reports without one first), then input order; one series per (device key,
/// PCI bus id, row key), sorted by that triple. A row counts when its `median_s` is a positive
/// finite number; error reports are skipped. `kernel` keeps the rows whose key or kernel name
/// equals it.
fn series<'a>(
    reports: impl IntoIterator<Item = (Option<u64>, &'a Report)>,
    kernel: Option<&str>,
) -> Vec<Series> {
    let mut reports: Vec<(Option<u64>, &Report)> = reports
        .into_iter()
        .filter(|(_, r)| r.error.is_none())
        .collect();
    reports.sort_by_key(|(_, r)| r.finished_at);
    let mut by_key: BTreeMap<(String, Option<String>, String), Series> = BTreeMap::new();
    for (run_id, report) in reports {
        let device_key = report.device_key.clone().unwrap_or_default();
        let pci_bus_id = report.gpu.as_ref().and_then(|g| g.pci_bus_id.clone());
        for row in &report.rows {
            let wanted = kernel.is_none_or(|k| row.key == k || row.kernel == k);
            if !(wanted && row.median_s.is_finite() && row.median_s > 0.0) {
                continue;
            }
            let s = by_key
                .entry((device_key.clone(), pci_bus_id.clone(), row.key.clone()))
                .or_insert_with(|| Series {
                    device_key: device_key.clone(),
                    pci_bus_id: pci_bus_id.clone(),
                    kernel: row.key.clone(),
                    medians_s: vec![],
                    at: vec![],
                    run_ids: vec![],
                });
            s.medians_s.push(row.median_s);
            s.at.push(report.finished_at);
            s.run_ids.push(run_id);
        }
    }
    by_key.into_values().collect()
}

/// Every series in `reports` with its change points (see [`series`] for how reports become
/// series); what `gpugate history --changes` prints and serve's `GET /api/v1/changes` returns.
pub fn over_reports<'a>(
    reports: impl IntoIterator<Item = (Option<u64>, &'a Report)>,
    kernel: Option<&str>,
    opts: &Options,
) -> Vec<KernelChanges> {
    series(reports, kernel)
        .into_iter()
        .map(|s| {
            let changes = detect(&s.medians_s, opts)
                .into_iter()
                .map(|point| ChangeAt {
                    at: s.at[point.index],
                    run_id: s.run_ids[point.index],
                    point,
                })
                .collect();
            s.with(changes)
        })
        .collect()
}

/// The series in `reports` without detection: `gpugate history` without `--changes`.
pub fn list<'a>(
    reports: impl IntoIterator<Item = (Option<u64>, &'a Report)>,
    kernel: Option<&str>,
) -> Vec<SeriesInfo> {
    series(reports, kernel).iter().map(Series::info).collect()
}

fn fmt_at(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "-".into(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

fn gpu_of(device_key: &str, pci_bus_id: &Option<String>) -> String {
    match pci_bus_id {
        Some(bus) => format!("{device_key} (GPU {bus})"),
        None => device_key.to_owned(),
    }
}

/// `gpugate history`: one line per series.
pub fn write_list(out: &mut dyn Write, series: &[SeriesInfo]) -> io::Result<()> {
    let rows: Vec<Vec<String>> = series
        .iter()
        .map(|k| {
            vec![
                k.kernel.clone(),
                gpu_of(&k.device_key, &k.pci_bus_id),
                k.points.to_string(),
                fmt_at(k.first_at),
                fmt_at(k.last_at),
                fmt_time(k.last_median_s),
            ]
        })
        .collect();
    crate::baseline::inspect::write_columns(
        out,
        &[
            "kernel",
            "device",
            "points",
            "first",
            "last",
            "latest median",
        ],
        &rows,
    )
}

/// `gpugate history --changes`: per series a heading and its change points, or a line saying
/// there are none at `opts`' significance.
pub fn write_changes(
    out: &mut dyn Write,
    series: &[KernelChanges],
    opts: &Options,
) -> io::Result<()> {
    for (i, k) in series.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        let s = &k.series;
        writeln!(
            out,
            "{}  {}  {} points, {} → {}",
            s.kernel,
            gpu_of(&s.device_key, &s.pci_bus_id),
            s.points,
            fmt_at(s.first_at),
            fmt_at(s.last_at)
        )?;
        if k.changes.is_empty() {
            writeln!(
                out,
                "  no change point (significance {}, segments ≥ {} points)",
                opts.significance, opts.min_segment
            )?;
            continue;
        }
        let rows: Vec<Vec<String>> = k
            .changes
            .iter()
            .map(|c| {
                let p = &c.point;
                vec![
                    format!("  {}", p.index),
                    fmt_at(c.at),
                    c.run_id.map_or_else(|| "-".into(), |id| id.to_string()),
                    format!("{} → {}", fmt_time(p.before), fmt_time(p.after)),
                    format!("{:+.1} %", (p.ratio - 1.0) * 100.0),
                    format!("{:.3}", p.p_value),
                ]
            })
            .collect();
        crate::baseline::inspect::write_columns(
            out,
            &["  index", "time", "run", "before → after", "Δ", "p"],
            &rows,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, Normal};

    fn noisy(n: usize, seed: u64, steps: &[(usize, f64)]) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        let noise = Normal::new(0.0, 0.01).unwrap();
        (0..n)
            .map(|i| {
                let level: f64 = steps
                    .iter()
                    .filter(|(at, _)| i >= *at)
                    .map(|(_, r)| r)
                    .product();
                let e: f64 = noise.sample(&mut rng);
                1e-3 * level * e.exp()
            })
            .collect()
    }

    #[test]
    fn empty_short_and_constant_series_have_no_change() {
        let opts = Options::default();
        assert!(detect(&[], &opts).is_empty());
        assert!(detect(&[1.0; 9], &opts).is_empty());
        assert!(detect(&[2.5; 100], &opts).is_empty());
    }

    #[test]
    fn a_clear_step_is_found_where_it_is_with_its_ratio() {
        let series = noisy(100, 1, &[(60, 1.2)]);
        let found = detect(&series, &Options::default());
        assert_eq!(found.len(), 1, "{found:?}");
        let c = &found[0];
        assert_eq!(c.index, 60);
        assert!((c.ratio - 1.2).abs() < 0.01, "{c:?}");
        assert!((c.before - 1e-3).abs() < 1e-5 && (c.after - 1.2e-3).abs() < 1e-5);
        assert!(c.p_value <= 0.01 && c.p_value >= 1.0 / 200.0);
    }

    #[test]
    fn ties_split_exactly_and_the_first_best_split_wins() {
        let mut series = vec![1.0; 50];
        series.extend([2.0; 50]);
        let found = detect(&series, &Options::default());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].index, 50);
        assert!((found[0].ratio - 2.0).abs() < 1e-12);
        // A symmetric series has two equally good splits: the first is taken.
        let z = [0.0, 0.0, 1.0, 1.0, 0.0, 0.0];
        assert_eq!(best_split(&z, 2).unwrap().0, 2);
    }

    #[test]
    fn non_finite_and_non_positive_values_are_skipped_and_indices_kept() {
        let mut series = noisy(80, 2, &[(40, 1.5)]);
        for i in [3, 10, 39, 41, 70] {
            series[i] = [f64::NAN, 0.0, -1.0, f64::INFINITY, f64::NAN][i % 5];
        }
        let found = detect(&series, &Options::default());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].index, 40);
        assert!(detect(&[f64::NAN; 50], &Options::default()).is_empty());
    }

    #[test]
    fn segments_shorter_than_the_minimum_are_never_split_off() {
        let opts = Options {
            min_segment: 10,
            ..Options::default()
        };
        // A large change 4 points from the end cannot be a segment of its own.
        let found = detect(&noisy(60, 3, &[(56, 2.0)]), &opts);
        assert!(
            found.iter().all(|c| c.index >= 10 && c.index <= 50),
            "{found:?}"
        );
    }

    #[test]
    fn detection_is_deterministic_and_follows_the_seed() {
        let series = noisy(150, 4, &[(50, 1.05), (100, 0.9)]);
        let opts = Options::default();
        assert_eq!(detect(&series, &opts), detect(&series, &opts));
        let found = detect(&series, &opts);
        let at: Vec<usize> = found.iter().map(|c| c.index).collect();
        assert_eq!(at, [50, 100]);
    }

    #[test]
    fn the_statistic_matches_its_definition() {
        let z = [0.3, -1.2, 0.8, 2.0, 1.1, 0.4, -0.5];
        let (tau, q) = best_split(&z, 2).unwrap();
        let direct = |t: usize| {
            let (x, y) = z.split_at(t);
            let (m, n) = (x.len() as f64, y.len() as f64);
            let pairs = |s: &[f64]| {
                let mut d = 0.0;
                for i in 0..s.len() {
                    for k in i + 1..s.len() {
                        d += (s[i] - s[k]).abs();
                    }
                }
                d
            };
            let cross: f64 = x
                .iter()
                .flat_map(|a| y.iter().map(move |b| (a - b).abs()))
                .sum();
            let e = 2.0 * cross / (m * n)
                - pairs(x) / (m * (m - 1.0) / 2.0)
                - pairs(y) / (n * (n - 1.0) / 2.0);
            m * n / (m + n) * e
        };
        let best = (2..=5).map(direct).fold(f64::MIN, f64::max);
        assert!((q - best).abs() < 1e-12 && (direct(tau) - q).abs() < 1e-12);
    }

    #[test]
    fn options_that_cannot_find_anything_are_refused() {
        assert!(Options::default().validate().is_ok());
        let few = Options {
            permutations: 50,
            ..Options::default()
        };
        assert!(few
            .validate()
            .unwrap_err()
            .to_string()
            .contains("50 permutations"));
        for bad in [
            Options {
                significance: 0.0,
                ..Options::default()
            },
            Options {
                min_segment: 1,
                ..Options::default()
            },
        ] {
            assert!(bad.validate().is_err());
        }
    }
}
