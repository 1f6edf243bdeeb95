//! A baseline pooled from several nodes: the statistics on seeded simulated pools (a new node of
//! the same model is rarely flagged, a slow one is, the quoted detectable slowdown holds), and
//! `baseline pool` through the real binary on lavapipe (two recordings under different
//! `NODE_NAME`s pooled, shown, checked against; bad inputs exit 2 naming the file).

use std::path::{Path, PathBuf};

use gpugate::baseline;
use gpugate::compare::{self, Design, Model, Policy, RunMedians, Verdict};
use gpugate::gate::{DEFAULT_CHECK_RUNS, DEFAULT_CONFIRM_RUNS};
use gpugate::stats;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::{gpugate, shared_lock};

/// Nodes pooled, runs per node, the node-to-node CV of a GPU model and the run-to-run CV of one
/// node's processes.
const NODES: u32 = 5;
const RUNS_PER_NODE: usize = 10;
const NODE_CV: f64 = 0.02;
const RUN_CV: f64 = 0.01;

/// One process on a node whose true time is `centre_s`: 30 AR(1) samples (2 % sd, lag-1 0.6)
/// around a process centre drawn at [`RUN_CV`], as tests/it/statistics.rs simulates them.
fn run(rng: &mut StdRng, centre_s: f64) -> stats::Summary {
    let (within, rho) = (0.02, 0.6);
    let centre = centre_s * Normal::new(0.0, RUN_CV).unwrap().sample(rng).exp();
    let innovation = Normal::new(0.0, within * f64::sqrt(1.0 - rho * rho)).unwrap();
    let mut x: f64 = Normal::new(0.0, within).unwrap().sample(rng);
    let samples: Vec<f64> = (0..30)
        .map(|_| {
            x = rho * x + innovation.sample(rng);
            centre * x.exp()
        })
        .collect();
    stats::summarize(&samples)
}

fn medians(rng: &mut StdRng, centre_s: f64, runs: usize) -> RunMedians {
    let s: Vec<_> = (0..runs).map(|_| run(rng, centre_s)).collect();
    RunMedians::from_summaries(&s)
}

/// A node of the model: its own offset from the model's 1 ms.
fn node(rng: &mut StdRng) -> f64 {
    1e-3 * Normal::new(0.0, NODE_CV).unwrap().sample(rng).exp()
}

/// The pool as `baseline pool` builds it: every node's runs, each node its own session.
fn pool(rng: &mut StdRng) -> Model {
    let (mut all, mut sessions) = (
        RunMedians {
            medians_s: vec![],
            within_log_se: vec![],
        },
        vec![],
    );
    for n in 0..NODES {
        let centre = node(rng);
        let m = medians(rng, centre, RUNS_PER_NODE);
        all.medians_s.extend(m.medians_s);
        all.within_log_se.extend(m.within_log_se);
        sessions.extend([n; RUNS_PER_NODE]);
    }
    Model::fit(&all, &sessions)
}

/// A default check (3 runs, suspects confirmed in 5 more, one kernel at α 0.5 %) of a node
/// whose true time is `centre_s`.
fn check(rng: &mut StdRng, model: &Model, centre_s: f64) -> Verdict {
    let policy = Policy::default();
    let round1 = vec![compare::compare(
        model,
        &medians(rng, centre_s, DEFAULT_CHECK_RUNS),
        policy,
    )];
    let judged = compare::two_rounds(round1, DEFAULT_CONFIRM_RUNS, policy.alpha, |_| {
        Ok::<_, ()>(vec![compare::compare(
            model,
            &medians(rng, centre_s, DEFAULT_CONFIRM_RUNS),
            policy,
        )])
    })
    .unwrap();
    judged[0].comparison.verdict
}

#[test]
fn a_new_node_is_judged_against_its_model_not_against_one_node() {
    // CPU-heavy: keep off the cores while a timing test runs.
    let _lock = shared_lock();
    let mut rng = StdRng::seed_from_u64(13_01);
    let draws = 2000;
    let count = |v: &[Verdict], which: Verdict| v.iter().filter(|&&x| x == which).count();
    let (mut same, mut slow, mut against_one) = (vec![], vec![], vec![]);
    for _ in 0..draws {
        let model = pool(&mut rng);
        let new = node(&mut rng);
        same.push(check(&mut rng, &model, new));
        slow.push(check(&mut rng, &model, new * 1.15));
        // The old practice: a baseline recorded on one (other) node.
        let other = node(&mut rng);
        let one = Model::fit(
            &medians(&mut rng, other, RUNS_PER_NODE),
            &[0; RUNS_PER_NODE],
        );
        against_one.push(check(&mut rng, &one, new));
    }
    let rate = |n: usize| n as f64 / draws as f64;
    let flagged = rate(count(&same, Verdict::Regression));
    let caught = rate(count(&slow, Verdict::Regression));
    let one_flagged = rate(count(&against_one, Verdict::Regression));
    eprintln!(
        "pool of {NODES} nodes × {RUNS_PER_NODE} runs, node CV {NODE_CV}, run CV {RUN_CV}: a new \
         node of the model flagged {flagged} (pass {}, inconclusive {}); 15 % slower caught \
         {caught} (pass {}); against one node's baseline instead: flagged {one_flagged}",
        rate(count(&same, Verdict::Pass)),
        rate(count(&same, Verdict::Inconclusive)),
        rate(count(&slow, Verdict::Pass)),
    );
    // The suite's α is 0.5 %; 1 % leaves room for the binomial spread of 2 000 draws.
    assert!(flagged <= 0.01, "a new node of the model flagged {flagged}");
    assert!(caught >= 0.8, "a node 15 % slower caught {caught}");
    assert_eq!(count(&slow, Verdict::Pass), 0, "a node 15 % slower passed");
    // What pooling is for: one node's baseline has no node-to-node variance in it.
    assert!(
        one_flagged > 2.0 * flagged.max(0.005),
        "against one node {one_flagged}, against the pool {flagged}"
    );
}

#[test]
fn the_detectable_slowdown_quoted_for_a_pool_is_detected() {
    let _lock = shared_lock();
    let mut rng = StdRng::seed_from_u64(13_02);
    let design = Design {
        check_runs: DEFAULT_CHECK_RUNS,
        confirm_runs: DEFAULT_CONFIRM_RUNS,
        family: 1,
    };
    let draws = 400;
    let mut caught = 0;
    for _ in 0..draws {
        let model = pool(&mut rng);
        // As `baseline pool` and `baseline show` quote it for this very pool.
        let ratio = compare::detectable_slowdown(&model, design, Policy::default(), 0.95).unwrap();
        let new = node(&mut rng) * ratio;
        caught += usize::from(check(&mut rng, &model, new) == Verdict::Regression);
    }
    let caught = caught as f64 / draws as f64;
    eprintln!("a pool's quoted detectable slowdown: caught {caught}");
    // 95 % power; 0.93 leaves room for the binomial spread of 400 draws.
    assert!(caught >= 0.93, "caught {caught}");
}

/// `record --kernel copy` on node `name` into `dir/name.json`.
fn record(dir: &Path, name: &str) -> PathBuf {
    let file = dir.join(format!("{name}.json"));
    let out = gpugate()
        .env("NODE_NAME", name)
        .args([
            "record",
            "--kernel",
            "copy",
            "--runs",
            "3",
            "--max-time",
            "0.2",
        ])
        .arg("--out")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    file
}

/// `gpugate [--format json] baseline ARGS…`: (exit code, stdout, stderr).
fn baseline_cmd(json: bool, args: &[&Path]) -> (Option<i32>, String, String) {
    let mut cmd = gpugate();
    if json {
        cmd.args(["--format", "json"]);
    }
    let out = cmd.arg("baseline").args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

/// A copy of baseline `from` at `dir/name`, edited.
fn edited(
    from: &Path,
    dir: &Path,
    name: &str,
    edit: impl FnOnce(&mut baseline::Baseline),
) -> PathBuf {
    let mut b = baseline::load(from).unwrap();
    edit(&mut b);
    let path = dir.join(name);
    baseline::save(&path, &b).unwrap();
    path
}

/// `baseline pool FILES… --out OUT` must exit 2 with every `needles` in its error.
fn refused(files: &[&Path], out: &Path, needles: &[&str]) {
    let mut args: Vec<&Path> = vec![Path::new("pool")];
    args.extend(files);
    args.extend([Path::new("--out"), out]);
    let (code, _, err) = baseline_cmd(false, &args);
    assert_eq!(code, Some(2), "{args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: no {n:?} in {err}");
    }
    assert!(!out.exists(), "{args:?} wrote {}", out.display());
}

#[test]
fn two_nodes_pool_into_a_model_baseline_that_shows_and_gates() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b) = {
        let _lock = shared_lock();
        (record(d, "node-a"), record(d, "node-b"))
    };
    let recorded = baseline::load(&a).unwrap();
    assert_eq!(recorded.sessions[0].node.as_deref(), Some("node-a"));
    // A session from before nodes were kept is named after its file, and the output says so.
    let c = edited(&b, d, "node-c.json", |b| b.sessions[0].node = None);
    // A kernel on one node only is not pooled.
    let extra = edited(&a, d, "node-a-extra.json", |b| {
        let mut k = b.kernels[0].clone();
        let n = k.params.0.values_mut().next().unwrap();
        *n /= 2;
        k.key = gpugate::workload::instance_key(&k.kernel, &k.params);
        b.kernels.push(k);
    });
    let model = d.join("model.json");
    let (code, out, err) = baseline_cmd(
        true,
        &[
            Path::new("pool"),
            &extra,
            &b,
            &c,
            Path::new("--out"),
            &model,
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        doc["nodes"],
        serde_json::json!(["node-a", "node-b", "node-c"])
    );
    assert_eq!(doc["inputs"][2]["node_from_file_name"], true);
    assert!(
        doc["notes"][0].as_str().unwrap().contains("node-c"),
        "{doc:#}"
    );
    let dropped = &doc["dropped_kernels"][0];
    assert!(
        dropped["why"].as_str().unwrap().contains("node-a"),
        "{doc:#}"
    );
    let k = &doc["kernels"][0];
    assert_eq!(k["nodes"].as_array().unwrap().len(), 3, "{doc:#}");
    assert!(k["node_spread"].as_f64().unwrap() > 0.0, "{doc:#}");
    assert!(k["run_spread"].as_f64().unwrap() > 0.0, "{doc:#}");
    assert!(k["farthest"]["node"].is_string(), "{doc:#}");
    let pooled = baseline::load(&model).unwrap();
    assert_eq!(pooled.kernels.len(), 1);
    assert_eq!(pooled.sessions.len(), 3);
    assert_eq!(
        pooled.kernels[0].runs.len(),
        recorded.kernels[0].runs.len() + 2 * baseline::load(&b).unwrap().kernels[0].runs.len()
    );

    // Two nodes only, the table this time.
    let two = d.join("two.json");
    let (code, table, err) = baseline_cmd(
        false,
        &[Path::new("pool"), &a, &b, Path::new("--out"), &two],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        table.contains("node spread") && table.contains("node-a") && table.contains("node-b"),
        "{table}"
    );
    let (code, shown, err) = baseline_cmd(true, &[Path::new("show"), &two]);
    assert_eq!(code, Some(0), "{err}");
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["nodes"], serde_json::json!(["node-a", "node-b"]));
    assert_eq!(shown["kernels"][0]["nodes"].as_array().unwrap().len(), 2);
    assert!(shown["kernels"][0]["node_spread"].as_f64().is_some());
    let (code, table, err) = baseline_cmd(false, &[Path::new("show"), &two]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        table.contains("nodes     2 (node-a, node-b)") && table.contains("node spread"),
        "{table}"
    );
    // A one-node file shows no node columns.
    let (_, table, _) = baseline_cmd(false, &[Path::new("show"), &a]);
    assert!(!table.contains("node spread"), "{table}");

    // A check against the pool runs (any verdict: lavapipe's speed is not under test).
    let check = {
        let _lock = shared_lock();
        gpugate()
            .args([
                "--format",
                "json",
                "check",
                "--kernel",
                "copy",
                "--max-time",
                "0.2",
            ])
            .arg("--baselines")
            .arg(&two)
            .output()
            .unwrap()
    };
    let report: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert!(
        matches!(check.status.code(), Some(0 | 1 | 3)),
        "{report:#}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(report["rows"][0]["comparison"]["sessions"], 2, "{report:#}");

    // Bad inputs: exit 2 naming the file and the field, nothing written.
    let bad = d.join("bad.json");
    let other = edited(&b, d, "other-gpu.json", |b| {
        b.fingerprint.name = "another GPU".into();
        b.device_key = b.fingerprint.device_key();
    });
    refused(&[&a, &other], &bad, &["other-gpu.json", "device_key"]);
    let rewritten = edited(&b, d, "rewritten.json", |b| {
        b.kernels[0].kernel_hash = Some("sha256:00".into());
    });
    refused(
        &[&a, &rewritten],
        &bad,
        &["rewritten.json", "kernels[0].kernel_hash", "copy["],
    );
    let again = edited(&a, d, "node-a-again.json", |_| {});
    refused(
        &[&a, &again],
        &bad,
        &["node-a.json", "node-a-again.json", "2 nodes"],
    );
    refused(&[&a], &bad, &["BASELINE.json"]);
}
