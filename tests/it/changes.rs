//! Change points (`gpugate::changes`) on seeded synthetic histories: planted steps found where
//! they are and nowhere else, false detections on noise-only series within the documented
//! significance, and `gpugate history` on saved reports and on a serve history directory.

use std::path::Path;

use gpugate::changes::{detect, Options};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal, StudentT, Uniform};
use statrs::distribution::{Binomial, DiscreteCDF};

use crate::gpugate;

const POINTS: usize = 200;

/// Where a scenario plants its steps (index, ratio from there on), drawn from a seeded source.
type Plant = fn(&mut StdRng) -> Vec<(usize, f64)>;
/// One run median of a noise-only distribution, around 1.
type Draw = Box<dyn Fn(&mut StdRng) -> f64>;
/// The noise of every synthetic series: 1 % coefficient of variation.
const CV: f64 = 0.01;

/// 200 log-normal run medians at CV 1 % around 1 ms, times each planted step's ratio from its
/// index on.
fn stepped(seed: u64, steps: &[(usize, f64)]) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let noise = Normal::new(0.0, CV).unwrap();
    (0..POINTS)
        .map(|i| {
            let level: f64 = steps
                .iter()
                .filter(|&&(at, _)| i >= at)
                .map(|&(_, r)| r)
                .product();
            let e: f64 = noise.sample(&mut rng);
            1e-3 * level * e.exp()
        })
        .collect()
}

/// Planted steps at seeded random places, 20 seeds per scenario: a series counts as a hit when
/// every planted step is found within ±3 of its index and nothing else is found. A step is a
/// 3σ or 10σ shift over ≥ 20 points a side, so detection is certain; what can fail is the
/// location and, in the noise-only segments either side, a false split at the significance
/// (1 %, so ≈ 2–3 % per series). Allowed: one miss per 20.
#[test]
fn planted_steps_are_found_where_they_are_and_nowhere_else() {
    const SEEDS: u64 = 20;
    let opts = Options::default();
    let scenarios: [(&str, Plant); 4] = [
        ("3 % step", |r| vec![(r.random_range(20..180), 1.03)]),
        ("10 % step", |r| vec![(r.random_range(20..180), 1.10)]),
        ("3 % faster", |r| {
            vec![(r.random_range(20..180), 1.0 / 1.03)]
        }),
        ("3 % then 10 %", |r| {
            vec![
                (r.random_range(20..90), 1.03),
                (r.random_range(110..180), 1.10),
            ]
        }),
    ];
    let mut failed = vec![];
    let started = std::time::Instant::now();
    for (name, plant) in scenarios {
        let (mut hits, mut located, mut extra) = (0, 0, 0);
        for seed in 0..SEEDS {
            let mut rng = StdRng::seed_from_u64(1000 + seed);
            let steps = plant(&mut rng);
            let found = detect(&stepped(seed, &steps), &opts);
            let near = |at: usize| found.iter().any(|c| c.index.abs_diff(at) <= 3);
            let all_found = steps.iter().all(|&(at, _)| near(at));
            let others = found
                .iter()
                .filter(|c| !steps.iter().any(|&(at, _)| c.index.abs_diff(at) <= 3))
                .count();
            // Each found step's ratio is the planted one, within the noise of the segment means.
            for &(at, ratio) in &steps {
                if let Some(c) = found.iter().find(|c| c.index.abs_diff(at) <= 3) {
                    assert!(
                        (c.ratio / ratio - 1.0).abs() < 0.01,
                        "{name}, seed {seed}: ratio {} for a planted {ratio}",
                        c.ratio
                    );
                }
            }
            located += usize::from(all_found);
            extra += others;
            hits += usize::from(all_found && others == 0);
            if !(all_found && others == 0) {
                failed.push(format!(
                    "{name}, seed {seed}: planted {steps:?}, found {found:?}"
                ));
            }
        }
        eprintln!(
            "change points, {name}: {hits}/{SEEDS} exact hits (every step within ±3, nothing \
             else); steps located in {located}/{SEEDS}; {extra} extra change point(s)"
        );
        assert!(hits + 1 >= SEEDS as usize, "{name}: {failed:#?}");
    }
    // For the note's cost figure (serve runs this after every run), never asserted.
    eprintln!(
        "change points: {:.1} ms per 200-point series with steps (this build)",
        started.elapsed().as_secs_f64() * 1e3 / (4 * SEEDS) as f64
    );
}

/// 500 noise-only series of 200 points, 100 from each of five distributions (CV ≈ 1 %): the
/// share with any change point is the permutation test's level on the whole series, 1 %. The
/// bound: the 99.9 % quantile of Binomial(500, 0.01), so a correct detector fails this one time
/// in a thousand seeds at most.
#[test]
fn noise_only_series_have_false_changes_at_the_significance() {
    const PER_DISTRIBUTION: u64 = 100;
    let opts = Options::default();
    let normal = Normal::new(0.0, 1.0).unwrap();
    let t3 = StudentT::new(3.0).unwrap();
    let uniform = Uniform::new(-1.0, 1.0).unwrap();
    let distributions: [(&str, Draw); 5] = [
        ("normal", Box::new(move |r| 1.0 + CV * normal.sample(r))),
        (
            "log-normal",
            Box::new(move |r| (CV * normal.sample(r)).exp()),
        ),
        // Student t with 3 df, scaled to CV 1 % (its sd is √3 per unit scale).
        (
            "student-t3",
            Box::new(move |r| (CV / 3f64.sqrt() * t3.sample(r)).exp()),
        ),
        // Uniform on ±√3 %, CV 1 %.
        (
            "uniform",
            Box::new(move |r| 1.0 + CV * 3f64.sqrt() * uniform.sample(r)),
        ),
        // Two speed modes 5 % apart, each run in either at random (iid), 1 % noise within.
        (
            "bimodal",
            Box::new(move |r| {
                let mode = if r.random_bool(0.5) { 1.05 } else { 1.0 };
                mode * (CV * normal.sample(r)).exp()
            }),
        ),
    ];
    let series_count = distributions.len() * PER_DISTRIBUTION as usize;
    let mut with_false = 0;
    let started = std::time::Instant::now();
    for (d, (name, draw)) in distributions.iter().enumerate() {
        let mut here = 0;
        for seed in 0..PER_DISTRIBUTION {
            let mut rng = StdRng::seed_from_u64(((d as u64) << 32) | seed);
            let series: Vec<f64> = (0..POINTS).map(|_| 1e-3 * draw(&mut rng)).collect();
            here += usize::from(!detect(&series, &opts).is_empty());
        }
        eprintln!(
            "change points, noise only, {name}: {here}/{PER_DISTRIBUTION} series with a false \
             change point"
        );
        with_false += here;
    }
    eprintln!(
        "change points: {:.2} ms per 200-point noise-only series (this build)",
        started.elapsed().as_secs_f64() * 1e3 / series_count as f64
    );
    let null = Binomial::new(opts.significance, series_count as u64).unwrap();
    let bound = (0..=series_count as u64)
        .find(|&k| null.cdf(k) >= 0.999)
        .unwrap() as usize;
    eprintln!(
        "change points, noise only: {with_false}/{series_count} series with a false change point \
         (expected {:.1} at significance {}; bound {bound}, the 99.9 % quantile; 95 % \
         Clopper-Pearson upper bound of the rate {:.2} %)",
        opts.significance * series_count as f64,
        opts.significance,
        gpugate::stats::clopper_pearson_upper(with_false, series_count, 0.95) * 100.0
    );
    assert!(
        with_false <= bound,
        "{with_false} of {series_count} noise-only series had a change point (bound {bound})"
    );
}

/// A real `run --kernel copy` report as JSON, made once: the template of the synthetic history.
fn template() -> &'static serde_json::Value {
    static REPORT: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    REPORT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::compare_reports::run_report(dir.path(), "run.json", &[]);
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    })
}

/// Where the synthetic histories change: 60 hourly runs, copy 10 % slower from run 35 on.
const HISTORY_RUNS: usize = 60;
const PLANTED: usize = 35;

/// The template report of run `i` of the synthetic history: its finish time and copy's median.
fn report_of_run(i: usize, median_s: f64) -> serde_json::Value {
    let mut report = template().clone();
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap()
        + chrono::Duration::hours(i as i64);
    report["finished_at"] = at.to_utc().to_rfc3339().into();
    report["rows"][0]["median_s"] = median_s.into();
    report
}

fn finished_at(i: usize) -> String {
    report_of_run(i, 1.0)["finished_at"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The synthetic history's reports in `dir`, written in a scrambled order with names that do not
/// sort by time: the history's order must come from `finished_at`.
fn saved_reports(dir: &Path) -> Vec<std::path::PathBuf> {
    let medians = stepped(7, &[(PLANTED, 1.10)]);
    let mut paths: Vec<_> = (0..HISTORY_RUNS)
        .map(|i| {
            let path = dir.join(format!("r{:02}.json", (i * 37) % HISTORY_RUNS));
            let text = serde_json::to_string(&report_of_run(i, medians[i])).unwrap();
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect();
    paths.sort();
    paths
}

/// `gpugate --format json history ARGS…`: (exit code, stdout, stderr).
fn history(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let out = gpugate().arg("history").args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn os(paths: &[std::path::PathBuf]) -> Vec<&std::ffi::OsStr> {
    paths.iter().map(|p| p.as_os_str()).collect()
}

#[test]
fn history_of_saved_reports_lists_the_series_and_finds_the_planted_change() {
    let dir = tempfile::tempdir().unwrap();
    let files = saved_reports(dir.path());
    let key = template()["rows"][0]["key"].as_str().unwrap().to_owned();

    let (code, out, err) = history(&os(&files));
    assert_eq!(code, Some(0), "{err}");
    let line = out.lines().find(|l| l.starts_with(&key)).expect(&out);
    assert!(line.contains(" 60 "), "{out}");
    assert!(line.contains(&finished_at(HISTORY_RUNS - 1)[..10]), "{out}");

    let mut args = os(&files);
    args.extend(["--changes", "--format", "json"].map(std::ffi::OsStr::new));
    let (code, out, err) = history(&args);
    assert_eq!(code, Some(0), "{err}");
    let series: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(series.as_array().unwrap().len(), 1, "{series:#}");
    let s = &series[0];
    assert_eq!(
        (s["kernel"].as_str(), s["points"].as_u64()),
        (Some(&*key), Some(60))
    );
    let changes = s["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{series:#}");
    let c = &changes[0];
    assert_eq!(c["index"], PLANTED);
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(c["at"].as_str().unwrap()).unwrap(),
        chrono::DateTime::parse_from_rfc3339(&finished_at(PLANTED)).unwrap()
    );
    assert!((c["ratio"].as_f64().unwrap() - 1.10).abs() < 0.01, "{c}");
    assert!(c["p_value"].as_f64().unwrap() <= 0.01 && c["run_id"].is_null());

    let mut args = os(&files);
    args.push(std::ffi::OsStr::new("--changes"));
    let (code, out, err) = history(&args);
    assert_eq!(code, Some(0), "{err}");
    let row = out
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{PLANTED} ")))
        .expect(&out);
    assert!(row.contains("+10.") || row.contains("+9."), "{out}");
}

#[test]
fn history_of_a_serve_directory_names_the_run_that_changed() {
    let dir = tempfile::tempdir().unwrap();
    let medians = stepped(8, &[(PLANTED, 1.10)]);
    let write = |id: u64, record: serde_json::Value| {
        let path = dir.path().join(format!("run-{id:012}.json"));
        std::fs::write(path, serde_json::to_string(&record).unwrap()).unwrap();
    };
    // Runs 1..=60 carry the history; run 61 failed before measuring; a torn file is skipped.
    for (i, &median) in medians.iter().enumerate().take(HISTORY_RUNS) {
        let at = finished_at(i);
        write(
            i as u64 + 1,
            serde_json::json!({
                "id": i + 1, "trigger": "interval", "started_at": at, "finished_at": at,
                "result": "pass", "report": report_of_run(i, median), "error": null,
            }),
        );
    }
    let at = finished_at(HISTORY_RUNS);
    write(
        HISTORY_RUNS as u64 + 1,
        serde_json::json!({
            "id": HISTORY_RUNS + 1, "trigger": "interval", "started_at": at, "finished_at": at,
            "result": "error", "report": null, "error": "no adapter",
        }),
    );
    std::fs::write(dir.path().join("run-000000000099.json"), "{\"id\": 9").unwrap();

    let d = dir.path().as_os_str();
    let (code, out, err) = history(&[
        "--history".as_ref(),
        d,
        "--kernel".as_ref(),
        "copy".as_ref(),
        "--changes".as_ref(),
        "--format".as_ref(),
        "json".as_ref(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let series: serde_json::Value = serde_json::from_str(&out).unwrap();
    let s = &series[0];
    assert_eq!(s["points"], HISTORY_RUNS, "{series:#}");
    let changes = s["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{series:#}");
    assert_eq!(changes[0]["run_id"], PLANTED + 1);
    assert_eq!(changes[0]["index"], PLANTED);
}

#[test]
fn history_with_nothing_to_look_at_or_a_bad_file_is_exit_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let (code, _, err) = history(&["--history".as_ref(), d.as_os_str(), "--changes".as_ref()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&d.display().to_string()) && err.contains("no history"),
        "{err}"
    );

    let missing = d.join("absent");
    let (code, _, err) = history(&["--history".as_ref(), missing.as_os_str()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("absent"), "{err}");

    let reports_dir = d.join("reports");
    std::fs::create_dir(&reports_dir).unwrap();
    let files = saved_reports(&reports_dir);
    let mut args = os(&files);
    args.extend(["--kernel", "sgemm"].map(std::ffi::OsStr::new));
    let (code, _, err) = history(&args);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("\"sgemm\""), "{err}");

    let bad = d.join("bad.json");
    std::fs::write(&bad, "{\"command\": 3}").unwrap();
    let mut args = os(&files);
    args.push(bad.as_os_str());
    let (code, _, err) = history(&args);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("bad.json"), "{err}");

    // An error report alone is no history either.
    let error_report = d.join("error.json");
    let mut report = template().clone();
    report["error"] = serde_json::json!({"kind": "no_adapter", "message": "none"});
    std::fs::write(&error_report, serde_json::to_string(&report).unwrap()).unwrap();
    let (code, _, err) = history(&[error_report.as_os_str()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("error.json"), "{err}");

    let (code, _, err) = history(&[]);
    assert_eq!(code, Some(2), "{err}");
}
