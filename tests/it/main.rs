//! gpugate's one integration-test binary. Every test runs for real on whatever adapter gpugate
//! picks — software Vulkan (lavapipe) in CI — and fails, never skips, when there is none.
//!
//! No test depends on the host: every gpugate started here reports [`TEST_CPU_MODEL`] as its CPU
//! (part of a software device key) and runs in an empty directory, so no shipped baseline can
//! match; tests that need a baseline record their own in a temp dir. Only
//! `gate::shipped_baselines_are_valid_and_agree_with_their_raw_samples` reads `baselines/`.
//!
//! Modules:
//! - `shaders`: every WGSL file parses and validates with naga; reflected bindings match use.
//! - `kernels`: every kernel verified against its CPU reference at several shapes, including
//!   sizes that are not multiples of the workgroup or tile; unrun kernels fail verification;
//!   property tests over random small shapes (fixed seed) for softmax, layernorm, attention and
//!   lattice_bfs;
//!   kernels an adapter lacks a feature for are the ones expected of it.
//! - `gate`: `record` → `check` A/A passes; a real slowdown fails and names the kernel; `list`
//!   shows every kernel and suite; unsupported kernels are reported, never passed; the first run
//!   (`check --record-missing`) records, self-checks and says what it detects, exits 3 under CI,
//!   and never overwrites another device's file; the shipped baselines are valid data.
//! - `bad_input`: broken baseline files, missing baselines and missing adapters give exit 2 or 3
//!   naming the file and field, never a panic; every entry of the committed corpus
//!   (tests/corpus: bad baselines with a manifest, bad argument lists) gets its listed exit code
//!   and names its field or flag; sizes past this adapter's binding limit are refused; property
//!   tests throw spoiled baselines at the loader and arbitrary flag values at the parser.
//! - `faults`: a measurement child killed (SIGKILL, as the OOM killer), aborted, panicking, hung
//!   or stopped, gpugate's own panic, a lost device and GPU work past its `--deadline` all exit 4
//!   within the deadline, naming the run or kernel; a regression with an unwritable `--json`
//!   still exits 1; `--help` documents exit 4; `--backend gl` is refused.
//! - `manifests`: k8s/ passes kubernetes-validate --strict (core kinds), a promtool unit test of
//!   the Flagger query and a documented field check (CRDs); its args, ports and probe paths are
//!   accepted by the binary.
//! - `alerts`: k8s/prometheusrule.yaml passes `promtool check rules` and the unit tests in
//!   tests/promtool/ (each recording rule evaluated, each alert firing and not: staleness at
//!   --interval 1h vs 6h, a fleet of 4 with one 25 % slower vs a fleet of 2), and a rule without
//!   a test fails; each alert's runbook_url is a section of docs/runbooks.md; rules and the
//!   Grafana dashboard read only the metric contract's names; every dashboard query and every
//!   ```promql block of docs/ (the dcgm-exporter join) parses; the dashboard ConfigMap built by
//!   kustomize passes kubernetes-validate --strict.
//! - `node_condition`: `serve --node-condition` against a stub Kubernetes API server (HTTPS,
//!   rcgen's self-signed certificate, every request recorded): a real regression sets
//!   `GPUPerformanceDegraded=True` by one strategic-merge PATCH of `nodes/NAME/status` with the
//!   token read again after a rotation, a pass sets `False`, inconclusive/error/no_baseline send
//!   nothing, `lastTransitionTime` moves only on a flip; a wrong CA, a 404 and a closed port are
//!   counted errors; a real `serve` on a doctored baseline patches the node and, with a wrong CA,
//!   counts the error and goes on; outside a cluster `--node-condition` is exit 2 naming what is
//!   missing (NODE_NAME, KUBERNETES_SERVICE_HOST, the CA file); the opt-in kustomize component
//!   builds, passes kubernetes-validate and checkov, and grants nothing beyond nodes/status; its
//!   admission policy's CEL, evaluated by cel-python (tests/k8s/admission_policy.py), allows the
//!   pod's own node and condition only.
//! - `serve`: the sidecar's API through `oneshot` (401/403/409/413/404/400, verdict shapes,
//!   readiness and the device from the start-up probe, `no_baseline` and its 412, metrics format
//!   and bounded labels on a real check report), its history store (durable acceptance,
//!   `interrupted` runs, ids never reused, runs kept in memory when the disk fails), and the real
//!   binary: SIGTERM, kill -9 and restart (the killed run `interrupted`), kill -9 at seeded random
//!   points losing no acknowledged run, an injected worker panic recorded as `error` with the
//!   sidecar going on, a missing token file, a device without a baseline (ready, `no_baseline`,
//!   nothing recorded); promtool accepts /metrics and a real Prometheus scrapes it.
//! - `html`: the HTML report in headless Chromium (Selenium, tests/browser/check_page.py): the
//!   pages of `run --html`, `check --html`, `report A.json B.json --html` and a real `serve`'s
//!   `/` log no console error, load nothing over the network and hold their plots (one sample
//!   distribution per kernel, one roofline, a history chart from two reports on); `report` names
//!   a bad file and its field (exit 2); `/` before any run and over kept runs through `oneshot`.
//! - `http`: the sidecar's HTTP server in-process over real sockets: half-sent requests dropped
//!   after the header-read timeout, connections past the limit wait, a corpus of malformed
//!   requests gets its expected status and body (JSON from the router, empty where hyper
//!   answers), framework errors rewritten as JSON.
//! - `changes`: change points on seeded synthetic histories (200 points, CV 1 %): 3 % and 10 %
//!   steps found within ±3 of where they were planted and nowhere else; 500 noise-only series of
//!   five distributions (bimodal included) with false change points within the significance;
//!   `gpugate history` over saved reports and a serve history directory, bad input exit 2.
//! - `statistics`: the decision rule on seeded simulated suites (autocorrelated samples,
//!   between-process shifts, speed modes): 2 000 A/A suites of 20 kernels false-alarm ≤ 1 %;
//!   twice the calibrated detectable slowdown is caught ≥ 95 % and only that kernel is named; a
//!   bimodal kernel passes inside its modes and fails in a third; the detectable slowdown is
//!   detected 95 % of the time.
//! - `trust`: five cross-process A/A checks name no regression; a baseline doctored to 0.2× on
//!   copy fails copy only (confirmed in its own fresh processes); summaries that disagree with
//!   their raw samples are exit 2, a rewritten kernel exit 3, a timing method unlike the
//!   baseline's exit 2; a version-1 file still gates; a driver change is reported (warn) or never
//!   passes (fail); `record --append` adds a session; `calibrate` reports.
//! - `ci_reports`: what CI systems read, through the real binary and their real consumers: a
//!   real regression, an inconclusive kernel (a doctored baseline) and an error report (no
//!   baseline) each give a `--junit` file that validates against Jenkins' schema
//!   (tests/schemas/junit-10.xsd, xmlschema) and that junitparser counts as expected, with the
//!   `gate-policy` testcase failing exactly when the exit code is not 0; under
//!   `GITHUB_ACTIONS=true` the `::error`/`::warning` annotations go to stderr while stdout stays
//!   one JSON document, and `$GITHUB_STEP_SUMMARY` gets one Markdown summary appended per run,
//!   parsed by markdown-it-py as a GFM table (a key full of Markdown syntax included); the
//!   README's GitHub Actions and GitLab jobs parse as YAML with the keys their runners need.
//! - `reports`: every report kind (run with 1 and 2 runs, record, check passing and regressed,
//!   the `check --record-missing` bootstrap, calibrate) and the error reports (no baseline, no
//!   adapter, a bad baseline file naming its field, a failed child, a panic) made by the binary
//!   with every sink asked for: each exit code as documented, stdout one JSON document equal to
//!   `--json`, every file written on every exit; the reports valid against
//!   docs/report.schema.json and the BMF exports against tests/schemas/bmf.schema.json (Python's
//!   jsonschema), the CSV exports read by Python's csv module; the schema's version and enums are
//!   the code's, and it refuses unknown fields, verdicts and versions.
//! - `compare_reports`: `compare A.json B.json` on real `run --runs N --json` reports: an A/A
//!   comparison never fails (and says when the drivers differ), three times the work on copy fails
//!   naming it, a one-run report is exit 2 with the `--runs 3` fix, bad files (a negative sample,
//!   a wrong type, a missing file, an error report) are exit 2 naming file and field, kernels in
//!   one report only are listed in the notes, and nothing comparable is exit 3.
//! - `profile`: `profile KERNEL --sweep …` measures one row per point with its parameters, rate and
//!   % of the measured peak, the axes in the JSON; axes combine, unswept parameters keep the quick
//!   suite's values, `--runs 2` measures in fresh processes; bad sweeps (unknown parameter, out of
//!   range, empty, not a number, a value or an axis twice, too many points) are exit 2 naming the
//!   flag.
//! - `baseline_cmd`: `baseline show` (per kernel runs, sessions, spread, modes, threshold,
//!   detectable slowdown), `diff` (only-in-one, thresholds, kernel code and drivers changed) and
//!   `prune` (kernels by name or key, sessions renumbered, kernels left with one run dropped,
//!   re-summarised, the result loads and still gates) on copies of the recorded baseline; unknown
//!   names and sessions and every exit-2 file of the bad-baseline corpus are exit 2 naming the
//!   flag, or the file and field.
//! - `pool`: a baseline pooled from several nodes. Simulated (seeded) pools of 5 nodes at a 2 %
//!   node-to-node CV: a new node of the model is flagged ≤ 1 % of 2 000 checks (α 0.5 %), a node
//!   15 % slower is caught ≥ 80 % and never passed, a baseline from one node instead flags far
//!   more, and the detectable slowdown quoted for a pool is caught ≥ 93 % of 400. On lavapipe:
//!   `record` under two `NODE_NAME`s, `baseline pool` (nodes, spreads, a kernel on one node
//!   dropped, a file without node names named after its file), `baseline show` of the pool, a
//!   `check` against it; another device key, changed kernel code and one node only are exit 2
//!   naming the file.
//! - `peer`: benches/peer/compare.py pairs a real lavapipe report with a peer_bench.py output at the
//!   same shape only (ratio = gpugate over peer), names shapes it lacks, exits 1 when nothing
//!   paired and 2 naming the file and field of a bad peer file.
//! - `scripts`: `scripts/ensure-rust` on a stub machine (keeps a new cargo, installs Debian's
//!   cargo-web over an old or missing one, adds clippy/rustfmt the toolchain's way, or stops
//!   naming the commands to run); shellcheck passes on `scripts/` and `.ci/run`.
//! - `terminal`: the human table through a pipe (whole, aligned, the longest quick-suite keys
//!   intact, no escapes) and progress on stderr through a pseudo-terminal (`script` from
//!   util-linux): process and kernel bars on a terminal, none with `--quiet`, JSON logs or a
//!   redirected stderr; `NO_COLOR=1` leaves no SGR escape; `--format json` keeps stdout one
//!   JSON document while bars are drawn.

mod alerts;
mod bad_input;
mod baseline_cmd;
mod changes;
mod ci_reports;
mod compare_reports;
mod faults;
mod gate;
mod html;
mod http;
mod kernels;
mod manifests;
mod node_condition;
mod peer;
mod pool;
mod profile;
mod reports;
mod scripts;
mod serve;
mod shaders;
mod statistics;
mod terminal;
mod trust;

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Timing-sensitive tests hold this exclusively so no other test loads the CPU under them
/// (software Vulkan shares the two CI cores); every other test that runs work shares it.
/// Take it once per test, and never around `recorded_baseline()`, which takes it exclusively.
static DEVICE: RwLock<()> = RwLock::new(());

pub fn timing_lock() -> RwLockWriteGuard<'static, ()> {
    DEVICE.write().unwrap_or_else(|e| e.into_inner())
}

pub fn shared_lock() -> RwLockReadGuard<'static, ()> {
    DEVICE.read().unwrap_or_else(|e| e.into_inner())
}

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The threshold the shipped llvmpipe baseline carries (see its `note` and docs/performance.md):
/// on a shared 2-core VM, processes settle at speeds up to 2× apart.
pub const SOFTWARE_THRESHOLD: &str = "100";

/// The CPU model every gpugate the tests start reports (`GPUGATE_TEST_CPU_MODEL`): on a software
/// adapter it is part of the device key, so no shipped baseline can ever match a test's device.
pub const TEST_CPU_MODEL: &str = "gpugate test suite CPU";

/// A threshold for tests of the gate's mechanics rather than its statistics: with 10 baseline
/// runs and the default 3 check runs, one kernel is inconclusive only when its run-to-run sd
/// exceeds about 110 % (margin t·s·√(1/10 + 1/3) above ln 10) and regresses only when 10×
/// slower, so an A/A verdict is a pass.
pub const MECHANICS_THRESHOLD: &str = "900";

/// A new empty directory for one gpugate the tests start: a default `--baselines baselines`
/// finds nothing there, so no test can lean on the shipped files by accident, and nothing one
/// command writes there can be seen by another.
pub fn empty_cwd() -> PathBuf {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let root = ROOT.get_or_init(|| tempfile::tempdir().unwrap()).path();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = root.join(n.to_string());
    std::fs::create_dir(&dir).unwrap();
    dir
}

/// Whether a variable from a developer's shell or a CI runner would steer a test's gpugate:
/// every `GPUGATE_*` (its flags' variables, the test hooks) and `WGPU_*` (adapter, backend), the
/// log filter and the node name, beside the CI variables ([`gpugate::cli::CI_VARIABLES`]) and
/// GitHub's step summary file, which every report is appended to. By prefix, so a flag given a
/// variable later is covered without a list to keep.
fn steers(name: &str) -> bool {
    name.starts_with("GPUGATE_")
        || name.starts_with("WGPU_")
        || ["RUST_LOG", "NODE_NAME", "GITHUB_STEP_SUMMARY"].contains(&name)
        || gpugate::cli::CI_VARIABLES.contains(&name)
}

/// `args` (the program name first) as gpugate's command line parses them in this process, but
/// blind to the environment, as [`gpugate_command`] makes the binary: a developer's
/// `GPUGATE_INTERVAL`, say, must not steer what a test parses.
pub fn parse_cli<'a>(
    args: impl IntoIterator<Item = &'a str>,
) -> Result<gpugate::cli::Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let command = gpugate::cli::Cli::command()
        .mut_args(|a| a.env(None))
        .mut_subcommands(|s| s.mut_args(|a| a.env(None)));
    gpugate::cli::Cli::from_arg_matches(&command.try_get_matches_from(args)?)
}

/// `std::process::Command` for the gpugate binary, as every test starts it.
pub fn gpugate_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("gpugate"));
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(steers) {
            cmd.env_remove(name);
        }
    }
    cmd.env(gpugate::device::TEST_CPU_MODEL_ENV, TEST_CPU_MODEL)
        .current_dir(empty_cwd());
    cmd
}

/// This device's key as the gpugate the tests start sees it (with [`TEST_CPU_MODEL`]).
pub fn this_device_key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        let out = gpugate()
            .args(["--format", "json", "list"])
            .output()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["adapters"][0]["device_key"]
            .as_str()
            .unwrap()
            .to_string()
    })
}

pub fn gpugate() -> assert_cmd::Command {
    assert_cmd::Command::from_std(gpugate_command())
}

/// The kernels of the test baseline: a streaming kernel, a tiled one, the catalytic one and the
/// indirect-dispatch BFS — every shape of `Prepared`, at a CI-friendly recording time.
pub const GATE_KERNELS: [&str; 4] = ["copy", "sgemm", "xor_transform", "lattice_bfs"];

/// A quick-suite baseline of [`GATE_KERNELS`] recorded once for the whole test binary, with
/// `record`'s default runs.
pub fn recorded_baseline() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let _lock = timing_lock();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("recorded.json");
        let mut cmd = gpugate();
        cmd.arg("record");
        for k in GATE_KERNELS {
            cmd.args(["--kernel", k]);
        }
        let out = cmd.arg("--out").arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "record failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (dir, file)
    })
    .1
}
