//! Command-line interface: argument types and one function per command. Each command returns the
//! exit code it earned; errors carry their own (see [`crate::error::exit`]).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::baseline;
use crate::compare::{self, DriverPolicy, Require};
use crate::device::{self, AdapterChoice, Gpu, ShaderChecks};
use crate::error::{exit, Error, Result};
use crate::gate::{self, CheckOptions, MeasureOptions};
use crate::report::{self, Report, Reporter};
use crate::runner;
use crate::sampler::TimingMethod;
use crate::workload::{self, suite, suite::Suite};

const EXIT_CODES: &str = "\
Exit codes:
  0  pass: every kernel verified, no regression, enough kernels conclusive (--require-conclusive)
  1  a regression, or a kernel computed a wrong result
  2  usage, configuration or baseline-file error (also: summaries that disagree with their raw
     samples, a kernel measured with another batch, slot count or timing than its baseline)
  3  cannot validate here: no usable adapter, no baseline for this device, too few kernels
     conclusive, a kernel changed since its baseline (re-record), or a driver change under
     --on-driver-change fail
  4  fault, worth a retry: a kernel or run past its deadline (--deadline), a lost device, a GPU
     error, a measurement child killed by a signal (e.g. the OOM killer's SIGKILL) or panicked
A report that cannot be written to --json is reported on stderr; it turns only a pass into 2.";

#[derive(Parser, Debug)]
#[command(name = "gpugate", version, about = "GPU performance validation: did this node or build get slower?", after_help = EXIT_CODES)]
pub struct Cli {
    /// Use the first adapter whose name contains this (case-insensitive).
    #[arg(long, global = true, env = "WGPU_ADAPTER_NAME")]
    pub adapter: Option<String>,
    /// Restrict to these wgpu backends (vulkan, metal, dx12; comma-separated). OpenGL is not
    /// offered: it has no GPU timestamp queries to time kernels with.
    #[arg(long, global = true, env = "WGPU_BACKEND")]
    pub backend: Option<String>,
    /// Use the GPU at this PCI bus id (`0000:3b:00.0`) or with this NVML UUID (`GPU-…`); `serve`
    /// validates every GPU without it.
    #[arg(long, global = true, env = "GPUGATE_GPU", value_name = "BUS_ID|UUID")]
    pub gpu: Option<String>,
    /// How kernels are compiled: `trusted` (no runtime bounds checks, workgroup memory not
    /// zeroed: what runs in production) or `checked` (wgpu's WebGPU-safe path, for debugging a
    /// kernel). Reports name the mode; a baseline is only judged in the mode it was recorded in.
    #[arg(long, global = true, value_enum, env = "GPUGATE_SHADER_CHECKS", default_value_t = ShaderChecks::Trusted)]
    pub shader_checks: ShaderChecks,
    /// What to print on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// No progress bars on stderr (they are drawn only when stderr is a terminal).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Log lines on stderr: for people, or one JSON object per line for log collectors
    /// (filter with RUST_LOG).
    #[arg(long, global = true, value_enum, env = "GPUGATE_LOG_FORMAT", default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Adapters (fingerprint, timestamp support, limits) and kernels (suites, parameters).
    List,
    /// Measure and verify, no baseline needed.
    Run(RunArgs),
    /// Measure in several independent processes and write this device's baseline.
    Record(RecordArgs),
    /// The gate: measure, compare with this device's baseline, report, exit code.
    Check(CheckCmdArgs),
    /// What the gate can see here: per kernel the smallest regression detected with 95 % power,
    /// and the false-alarm rate measured from K cross-process A/A checks.
    Calibrate(CalibrateArgs),
    /// The sidecar / DaemonSet: validate on start, on an interval and on request; serve the
    /// results, a verdict and Prometheus metrics over HTTP.
    Serve(ServeArgs),
    /// Compare two saved reports (`run --runs 3 --json A.json`, then B.json): per kernel Δ %,
    /// interval and verdict, the first judged as the baseline; exit codes as `check`.
    Compare(CompareArgs),
    /// Local profiling: one kernel over a sweep of its parameters, throughput and % of peak per
    /// point.
    Profile(ProfileArgs),
    /// Render saved reports (oldest first) as one self-contained HTML page with SVG plots.
    Report(ReportArgs),
    /// Each kernel's run history, from saved reports or serve's --history directory; with
    /// --changes, when it changed (change points). Informational: exit 0 whether or not a change
    /// is found, 2 when there is no history to look at.
    History(HistoryArgs),
    /// Inspect and edit baseline files: show, diff, prune, pool.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Internal: one independent run, plan on stdin, result JSON on stdout.
    #[command(hide = true)]
    MeasureChild,
}

/// How long and how finely to sample, for every command that measures (`profile` included).
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Stop sampling a kernel once its median's 95 % interval half-width is within this
    /// percentage: both the order-statistic interval and the batch-means one, which accounts
    /// for autocorrelated samples.
    #[arg(long, value_name = "PCT", value_parser = bounded::<f64>(|p| p > 0.0 && p < 100.0, "a percentage in (0, 100)"))]
    pub noise_target: Option<f64>,
    /// Cap on measuring seconds per kernel and run.
    #[arg(long, value_name = "SECONDS", value_parser = bounded::<f64>(|s| s > 0.0 && s <= MAX_TIME_S, "seconds in (0, 3600]"))]
    pub max_time: Option<f64>,
    /// Seconds one kernel may take (prepare, warm-up, measuring, verify) before the run is a
    /// fault (exit 4); a run may take its kernels' deadlines plus 30 s [default: 2 × (longest
    /// warm-up + --max-time) + 10 s; at most 86400].
    #[arg(long, value_name = "SECONDS", value_parser = bounded::<f64>(|s| s > 0.0 && s <= crate::sampler::MAX_DEADLINE_S, "seconds in (0, 86400]"))]
    pub deadline: Option<f64>,
    /// How to time samples: GPU timestamps around each pass, or the host clock around submit + wait
    /// [default: gpu-timestamp where the adapter has it; a check uses its baseline's].
    #[arg(long, value_enum)]
    pub timing: Option<TimingMethod>,
}

#[derive(Args, Debug, Clone)]
pub struct MeasureArgs {
    /// Only these kernels (repeatable).
    #[arg(long = "kernel", value_name = "NAME")]
    pub kernels: Vec<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Test only: encode KERNEL FACTOR times per iteration — real extra work, counted once.
    #[arg(long, value_name = "KERNEL=FACTOR", hide = true)]
    pub test_slowdown: Vec<String>,
}

/// Where a report goes besides stdout. Every file is written on every exit once the command
/// line parsed: an error leaves a report that says so.
#[derive(Args, Debug, Clone, Default)]
pub struct OutputArgs {
    /// Also write the full report (raw samples included) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also write a JUnit XML report to FILE: one testcase per kernel and a `gate-policy`
    /// testcase (GitLab's `artifacts:reports:junit`, Jenkins' junit step).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Also export as `bmf=FILE` (Bencher Metric Format), `csv=FILE` or `md=FILE` (Markdown);
    /// repeatable.
    #[arg(long, value_name = "KIND=FILE", value_parser = parse_value::<Export>)]
    pub export: Vec<Export>,
    /// Also write a self-contained HTML page with SVG plots to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

impl OutputArgs {
    /// Every file asked for, with the flag that asked.
    fn paths(&self) -> Vec<(&'static str, &PathBuf)> {
        let mut paths = vec![];
        paths.extend(self.json.iter().map(|p| ("--json", p)));
        paths.extend(self.junit.iter().map(|p| ("--junit", p)));
        paths.extend(self.export.iter().map(|e| ("--export", &e.path)));
        paths.extend(self.html.iter().map(|p| ("--html", p)));
        paths
    }

    /// Each file's directory exists (checked before anything is measured); exit 2 naming the
    /// flag otherwise.
    fn check_paths(&self) -> Result<()> {
        for (flag, path) in self.paths() {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => std::path::Path::new("."),
            };
            if !dir.is_dir() {
                return Err(Error::Usage(format!(
                    "{flag} {}: directory {} does not exist",
                    path.display(),
                    dir.display()
                )));
            }
        }
        Ok(())
    }
}

/// One `--export KIND=FILE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    pub kind: ExportKind,
    pub path: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    Bmf,
    Csv,
    Md,
}

impl std::str::FromStr for Export {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (kind, path) = s
            .split_once('=')
            .filter(|(_, path)| !path.is_empty())
            .ok_or_else(|| format!("{s:?}: expected KIND=FILE, KIND one of bmf, csv, md"))?;
        let kind = match kind {
            "bmf" => ExportKind::Bmf,
            "csv" => ExportKind::Csv,
            "md" => ExportKind::Md,
            other => return Err(format!("{other:?}: expected bmf, csv or md")),
        };
        Ok(Export {
            kind,
            path: PathBuf::from(path),
        })
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[arg(long, value_enum, default_value_t = Suite::Quick)]
    pub suite: Suite,
    /// Independent runs, each in its own process.
    #[arg(long, default_value_t = 1, value_parser = runs)]
    pub runs: usize,
    #[command(flatten)]
    pub measure: MeasureArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The earlier report (judged as the baseline), e.g. from `run --runs 3 --json A.json`.
    pub before: PathBuf,
    /// The later report, judged against it.
    pub after: PathBuf,
    /// Practical threshold in percent for every kernel [default: 5; 100 when AFTER ran on a
    /// software adapter, as a baseline recorded there would carry].
    #[arg(long, value_name = "PCT", value_parser = bounded::<f64>(|p| p > 0.0 && p < 1000.0, "a positive percentage below 1000"))]
    pub threshold: Option<f64>,
    /// Suite-wide false-alarm rate (Holm across the kernels compared).
    #[arg(long, value_name = "P", default_value_t = compare::DEFAULT_ALPHA, value_parser = bounded::<f64>(|p| p > 0.0 && p < 0.5, "a probability in (0, 0.5)"))]
    pub alpha: f64,
    /// How many kernels must be conclusive for a pass: `all`, a count, or `none` (any one).
    #[arg(long, value_name = "all|N|none", default_value = "all", value_parser = parse_value::<Require>)]
    pub require_conclusive: Require,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct ProfileArgs {
    /// The kernel to profile (`gpugate list` names them and their parameters).
    pub kernel: String,
    /// A parameter axis, NAME=V1,V2,… (repeatable: every combination is one point, at most
    /// 64); parameters not swept keep the quick suite's values for this adapter.
    #[arg(long, value_name = "NAME=V1,V2,…", required = true)]
    pub sweep: Vec<String>,
    /// Independent runs per point: 1 in this process, more each in a fresh process.
    #[arg(long, default_value_t = 1, value_parser = runs)]
    pub runs: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Saved reports (`--json FILE` of run, check, record, compare or profile), oldest first.
    #[arg(required = true, value_name = "REPORT.json")]
    pub files: Vec<PathBuf>,
    /// The page to write.
    #[arg(long, value_name = "OUT.html", required = true)]
    pub html: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum BaselineCommand {
    /// Per kernel: runs, sessions, median, spread, modes, threshold and the smallest slowdown a
    /// default check detects; the file's device, driver and sessions.
    Show { file: PathBuf },
    /// What changed between two baseline files: device, drivers, and kernel by kernel medians,
    /// runs, sessions, code and thresholds. Informational: exit 0.
    Diff { a: PathBuf, b: PathBuf },
    /// Drop kernels or recording sessions from a baseline file, re-summarise what remains and
    /// write it atomically (in place unless --out).
    Prune {
        file: PathBuf,
        /// A kernel name (every instance) or instance key to drop (repeatable).
        #[arg(
            long = "kernel",
            value_name = "NAME_OR_KEY",
            required_unless_present = "sessions"
        )]
        kernels: Vec<String>,
        /// A recording session to drop, numbered from 0 as `baseline show` lists them
        /// (repeatable); the sessions left are renumbered, and a kernel left with fewer than
        /// 2 runs is dropped.
        #[arg(long = "session", value_name = "N", value_parser = runs)]
        sessions: Vec<usize>,
        /// Write the pruned baseline here instead of over FILE.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// One baseline for a GPU model from the baselines of several known-good nodes (same
    /// device key, same kernel code): each node's sessions kept apart, so a check adds the
    /// node-to-node variance; reports per kernel the nodes, node-to-node and run-to-run
    /// spread, what a default check detects, and the node farthest from the others.
    Pool {
        /// Baseline files, one or more per node (`record` on each node, NODE_NAME set).
        #[arg(required = true, num_args = 2.., value_name = "BASELINE.json")]
        files: Vec<PathBuf>,
        /// The pooled baseline to write (atomically).
        #[arg(long, value_name = "MODEL.json", required = true)]
        out: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct RecordArgs {
    #[arg(long, value_enum, default_value_t = Suite::Quick)]
    pub suite: Suite,
    /// Independent runs, each in its own process; their spread is the run-to-run noise (at
    /// least 2).
    #[arg(long, default_value_t = baseline::DEFAULT_RUNS, value_parser = runs)]
    pub runs: usize,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Baseline file to write or update [default: BASELINES/<device-key>.json].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Add this session's runs to the kernels of the existing file, measured exactly as they
    /// were recorded, instead of replacing them: session-to-session variance is then measured
    /// and the gate uses it.
    #[arg(long)]
    pub append: bool,
    #[arg(
        long,
        value_name = "DIR",
        env = "GPUGATE_BASELINES",
        default_value = "baselines"
    )]
    pub baselines: PathBuf,
    #[command(flatten)]
    pub measure: MeasureArgs,
}

#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// Directory of baselines (the file for this device is picked by its key), or one file.
    #[arg(
        long,
        value_name = "DIR|FILE",
        env = "GPUGATE_BASELINES",
        default_value = "baselines"
    )]
    pub baselines: PathBuf,
    /// Practical threshold in percent for every kernel (overrides the baseline file's).
    #[arg(long, value_name = "PCT", value_parser = bounded::<f64>(|p| p > 0.0 && p < 1000.0, "a positive percentage below 1000"))]
    pub threshold: Option<f64>,
    /// Practical threshold for one kernel, e.g. `sgemm=8` (repeatable).
    #[arg(long, value_name = "KERNEL=PCT")]
    pub kernel_threshold: Vec<String>,
    /// Independent runs to measure now, each in a fresh process (one process can settle in a
    /// slow or fast mode for its whole life, so one run alone may land in either); at least 3.
    #[arg(long, default_value_t = gate::DEFAULT_CHECK_RUNS, value_parser = runs)]
    pub runs: usize,
    /// Fresh runs that re-measure kernels looking slower than half their threshold; their
    /// verdict comes from these runs alone: 0 (judge round 1 only) or at least 3.
    #[arg(long, value_name = "N", default_value_t = gate::DEFAULT_CONFIRM_RUNS, value_parser = runs)]
    pub confirm_runs: usize,
    /// Suite-wide false-alarm rate: the chance that a check of an unchanged node names any
    /// kernel as regressed (Holm across kernels).
    #[arg(long, value_name = "P", default_value_t = compare::DEFAULT_ALPHA, value_parser = bounded::<f64>(|p| p > 0.0 && p < 0.5, "a probability in (0, 0.5)"))]
    pub alpha: f64,
    /// How many kernels must be conclusive for a pass: `all`, a count, or `none` (any one).
    #[arg(long, value_name = "all|N|none", default_value = "all", value_parser = parse_value::<Require>)]
    pub require_conclusive: Require,
    /// When the driver differs from the baseline's: `warn` (judge and say so) or `fail` (never
    /// pass: exit 3 unless something failed).
    #[arg(long, value_name = "warn|fail", default_value = "warn", value_parser = parse_value::<DriverPolicy>)]
    pub on_driver_change: DriverPolicy,
    #[command(flatten)]
    pub measure: MeasureArgs,
}

/// A flag value through the type's own `FromStr`, whose message names the accepted values.
fn parse_value<T: std::str::FromStr<Err = String>>(s: &str) -> std::result::Result<T, String> {
    s.parse()
}

// Every numeric flag is bounded where it is parsed, so no value (from the command line or its
// environment variable) can overflow what is computed from it: clap then names the flag and
// exits 2. Lower bounds that depend on the command (at least 2 runs to record, 3 to check) are
// checked with the options ([`gate::CheckOptions::validate`]).

/// Longest `--max-time`: an hour per kernel and run (a sample may not be longer, see
/// [`baseline::MAX_TIME_S`]).
pub const MAX_TIME_S: f64 = baseline::MAX_TIME_S;
/// Most runs, confirmation runs or calibration checks one command may ask for.
pub const MAX_RUNS: usize = 1000;
/// Longest `serve --interval`: a year.
pub const MAX_INTERVAL: std::time::Duration = std::time::Duration::from_secs(366 * 24 * 3600);
/// Most finished runs `serve --retention` keeps.
pub const MAX_RETENTION: usize = 100_000;

/// A number held to `ok`; the error says what was `expected` (clap adds the flag and value).
fn bounded<T: std::str::FromStr + Copy + Send + Sync + 'static>(
    ok: fn(T) -> bool,
    expected: &'static str,
) -> impl Fn(&str) -> std::result::Result<T, String> + Clone + Send + Sync + 'static {
    move |s| {
        s.trim()
            .parse::<T>()
            .ok()
            .filter(|&v| ok(v))
            .ok_or_else(|| format!("expected {expected}"))
    }
}

/// A count of runs or checks: at most [`MAX_RUNS`].
fn runs(s: &str) -> std::result::Result<usize, String> {
    bounded::<usize>(|n| n <= MAX_RUNS, "a count of at most 1000")(s)
}

/// `serve --interval`: a duration from one second to [`MAX_INTERVAL`].
fn interval(s: &str) -> std::result::Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < std::time::Duration::from_secs(1) || d > MAX_INTERVAL {
        return Err("expected a duration from 1s to 366d".into());
    }
    Ok(d)
}

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// A/A checks to make, each a full check in its own fresh processes.
    #[arg(long, value_name = "K", default_value_t = 20, value_parser = bounded::<usize>(|n| (1..=MAX_RUNS).contains(&n), "a count from 1 to 1000"))]
    pub checks: usize,
    #[command(flatten)]
    pub check: CheckArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

impl MeasureArgs {
    pub fn options(&self) -> Result<MeasureOptions> {
        let slowdown = parse_pairs("--test-slowdown", &self.test_slowdown)?
            .into_iter()
            .map(|(k, f)| match f {
                1.0..=1000.0 => Ok((k, f.round() as u32)),
                _ => Err(Error::Usage(format!(
                    "--test-slowdown {k}={f}: expected a factor from 1 to 1000"
                ))),
            })
            .collect::<Result<_>>()?;
        let opts = MeasureOptions {
            kernels: self.kernels.clone(),
            noise_target_pct: self.sampling.noise_target,
            max_time_s: self.sampling.max_time,
            deadline_s: self.sampling.deadline,
            timing: self.sampling.timing,
            slowdown,
        };
        opts.validate()?;
        Ok(opts)
    }
}

impl CheckArgs {
    /// The gate's options; validated here so a bad flag fails before a device is opened.
    pub fn options(&self) -> Result<CheckOptions> {
        let opts = CheckOptions {
            baselines: self.baselines.clone(),
            threshold_pct: self.threshold,
            kernel_threshold_pct: parse_pairs("--kernel-threshold", &self.kernel_threshold)?,
            runs: self.runs,
            confirm_runs: self.confirm_runs,
            alpha: self.alpha,
            require: self.require_conclusive,
            on_driver_change: self.on_driver_change,
            measure: self.measure.options()?,
        };
        opts.validate()?;
        Ok(opts)
    }
}

/// `gpugate check`: the gate's flags, shared with `serve`, plus the first-run bootstrap, which
/// `serve` never offers (a node that baselines itself hides its own slowness).
#[derive(Args, Debug)]
pub struct CheckCmdArgs {
    #[command(flatten)]
    pub check: CheckArgs,
    #[command(flatten)]
    pub bootstrap: BootstrapArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug, Clone)]
pub struct BootstrapArgs {
    /// If this device has no baseline: record one as `record` does (independent processes), then
    /// check against it in fresh processes as a self-test, and say what it can detect. With
    /// CI set, write it and exit 3 instead: a throwaway runner never passes by bootstrapping.
    #[arg(long)]
    pub record_missing: bool,
    /// Suite to record when bootstrapping.
    #[arg(long, value_enum, default_value_t = Suite::Quick, requires = "record_missing")]
    pub suite: Suite,
    /// Independent runs to record when bootstrapping.
    #[arg(long, value_name = "N", default_value_t = baseline::DEFAULT_RUNS, requires = "record_missing", value_parser = runs)]
    pub record_runs: usize,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (not dcgm-exporter's 9400: on host networking they would clash).
    #[arg(long, env = "GPUGATE_LISTEN", default_value = "0.0.0.0:9478")]
    pub listen: std::net::SocketAddr,
    /// Time between scheduled validations, e.g. `30m`, `6h`.
    #[arg(long, env = "GPUGATE_INTERVAL", default_value = "1h", value_parser = interval)]
    pub interval: std::time::Duration,
    /// Random spread of each wait, in percent of the interval, so a fleet does not run in lock-step.
    #[arg(
        long,
        env = "GPUGATE_JITTER",
        value_name = "PCT",
        default_value_t = 10.0,
        value_parser = bounded::<f64>(|p| (0.0..=100.0).contains(&p), "a percentage in [0, 100]")
    )]
    pub jitter: f64,
    /// Directory for run history (one JSON file per finished run); in memory only without it.
    #[arg(long, env = "GPUGATE_HISTORY", value_name = "DIR")]
    pub history: Option<PathBuf>,
    /// Finished runs kept in memory and on disk, at most; at least --changes-window.
    #[arg(long, env = "GPUGATE_RETENTION", default_value_t = 100, value_parser = bounded::<usize>(|n| (1..=MAX_RETENTION).contains(&n), "a count from 1 to 100000"))]
    pub retention: usize,
    /// Drop finished runs older than this (e.g. `30d`) [default: 30 days, or twice
    /// --changes-window × --interval when that is longer]; it must cover --changes-window runs.
    #[arg(long, env = "GPUGATE_RETENTION_AGE", value_name = "AGE", value_parser = interval)]
    pub retention_age: Option<std::time::Duration>,
    /// How many of the latest runs change points are looked for in, after every run.
    #[arg(long, env = "GPUGATE_CHANGES_WINDOW", value_name = "RUNS", default_value_t = 100, value_parser = bounded::<usize>(|n| (crate::serve::MIN_CHANGES_WINDOW..=crate::serve::MAX_CHANGES_WINDOW).contains(&n), "a count from 8 to 1000"))]
    pub changes_window: usize,
    /// File holding the bearer token that `POST /api/v1/runs` requires (a mounted Secret).
    #[arg(long, env = "GPUGATE_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The bearer token itself; prefer --token-file. Without either, triggering is disabled.
    #[arg(long, env = "GPUGATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The `Hostname` label on every metric (Kubernetes: the node name, as dcgm-exporter uses).
    #[arg(long, env = "NODE_NAME")]
    pub hostname: Option<String>,
    /// Set the node's `GPUPerformanceDegraded` condition from each verdict (Kubernetes only:
    /// needs NODE_NAME, the pod's service-account token and CA, and RBAC on nodes/status).
    #[arg(long, env = "GPUGATE_NODE_CONDITION")]
    pub node_condition: bool,
    #[command(flatten)]
    pub check: CheckArgs,
}

/// Run the parsed command; the exit code it earned, or an error carrying its own. A command that
/// writes reports writes one on every exit: an error (or a panic) becomes an error report in
/// every requested sink before it is returned (or resumed).
pub fn run(cli: Cli) -> Result<u8> {
    // Bars for people at a terminal; log collectors (JSON lines) get the log lines instead.
    crate::progress::enable(
        cli.command.measures() && !cli.quiet && cli.log_format == LogFormat::Human,
    );
    let sinks = cli
        .command
        .output()
        .map(|(name, output)| (name, output.clone()));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // A file that cannot be written should fail now, not after minutes of measuring.
        if let Some((_, output)) = &sinks {
            output.check_paths()?;
        }
        dispatch(&cli)
    }));
    let failed = match &outcome {
        Ok(Err(e)) => Some(Report::from_error("?", e)),
        Err(_) => Some(Report::from_error(
            "?",
            &Error::Fault {
                what: "gpugate".into(),
                reason: "panicked (message on stderr)".into(),
            },
        )),
        Ok(Ok(_)) => None,
    };
    let emitted = EMITTED.load(std::sync::atomic::Ordering::SeqCst);
    if let (Some(mut report), Some((command, output)), false) = (failed, sinks, emitted) {
        report.command = command.into();
        // The mode asked for: a "kernel changed" refusal may be about the mode alone.
        report.shader_checks = Some(cli.shader_checks);
        // The error's exit code stands whatever happens to its report.
        let _ = emit(cli.format, &report, &output);
    }
    match outcome {
        Ok(result) => result,
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

/// Set once a report went to its sinks: an error after that (a failed write) must not write a
/// second report over the first.
static EMITTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Command {
    /// Whether the command measures kernels at length, with progress bars to show (never
    /// `serve`: a sidecar's stderr is a log).
    fn measures(&self) -> bool {
        matches!(
            self,
            Command::Run(_)
                | Command::Record(_)
                | Command::Check(_)
                | Command::Calibrate(_)
                | Command::Profile(_)
        )
    }

    /// The command's name in reports and its report sinks, for commands that write reports.
    fn output(&self) -> Option<(&'static str, &OutputArgs)> {
        match self {
            Command::Run(a) => Some(("run", &a.output)),
            Command::Record(a) => Some(("record", &a.output)),
            Command::Check(a) => Some(("check", &a.output)),
            Command::Calibrate(a) => Some(("calibrate", &a.output)),
            Command::Compare(a) => Some(("compare", &a.output)),
            Command::Profile(a) => Some(("profile", &a.output)),
            Command::List
            | Command::Serve(_)
            | Command::Report(_)
            | Command::History(_)
            | Command::Baseline(_)
            | Command::MeasureChild => None,
        }
    }
}

fn dispatch(cli: &Cli) -> Result<u8> {
    let choice = AdapterChoice {
        name_contains: cli.adapter.clone(),
        backend: cli.backend.clone(),
        gpu: cli.gpu.clone(),
        shader_checks: cli.shader_checks,
    };
    match &cli.command {
        Command::List => list(&choice, cli.format),
        Command::Run(args) => run_cmd(&choice, cli.format, args),
        Command::Record(args) => record(&choice, cli.format, args),
        Command::Check(args) => check(&choice, cli.format, args),
        Command::Calibrate(args) => {
            let opts = gate::CalibrateOptions {
                check: args.check.options()?,
                checks: args.checks,
            };
            emit(cli.format, &gate::calibrate(&choice, &opts)?, &args.output)
        }
        Command::Serve(args) => serve(choice, args),
        Command::Compare(args) => compare_reports(cli.format, args),
        Command::Profile(args) => profile(&choice, cli.format, args),
        Command::Report(args) => html_report(args),
        Command::History(args) => history(cli.format, args),
        Command::Baseline(cmd) => baseline_cmd(cli.format, cmd),
        Command::MeasureChild => measure_child(&choice),
    }
}

fn compare_reports(format: Format, args: &CompareArgs) -> Result<u8> {
    let opts = gate::CompareOptions {
        threshold_pct: args.threshold,
        alpha: args.alpha,
        require: args.require_conclusive,
        ..gate::CompareOptions::new(args.before.clone(), args.after.clone())
    };
    emit(format, &gate::compare_reports(&opts)?, &args.output)
}

fn profile(choice: &AdapterChoice, format: Format, args: &ProfileArgs) -> Result<u8> {
    let opts = gate::ProfileOptions {
        kernel: args.kernel.clone(),
        axes: args
            .sweep
            .iter()
            .map(|s| gate::parse_axis(s))
            .collect::<Result<_>>()?,
        runs: args.runs,
        measure: MeasureOptions {
            noise_target_pct: args.sampling.noise_target,
            max_time_s: args.sampling.max_time,
            deadline_s: args.sampling.deadline,
            timing: args.sampling.timing,
            ..MeasureOptions::default()
        },
    };
    emit(format, &gate::profile(choice, &opts)?, &args.output)
}

/// `report A.json [B.json…] --html OUT`: one page over saved reports, oldest first (several make
/// a history). A file that does not read as a report is exit 2, naming it and the field.
fn html_report(args: &ReportArgs) -> Result<u8> {
    let reports = args
        .files
        .iter()
        .map(|path| report::load(path))
        .collect::<Result<Vec<_>>>()?;
    let page = report::html::page(&reports);
    write_file(&args.html, |out| out.write_all(page.as_bytes()))?;
    eprintln!(
        "gpugate: wrote {} ({} report{})",
        args.html.display(),
        reports.len(),
        if reports.len() == 1 { "" } else { "s" }
    );
    Ok(exit::PASS)
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// serve's --history directory, read without changing it (safe while serve writes there).
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "reports",
        required_unless_present = "reports"
    )]
    pub history: Option<PathBuf>,
    /// Saved reports (`--json FILE` of run, check, record, …) in any order: each series is
    /// ordered by the reports' finish times.
    #[arg(value_name = "REPORT.json")]
    pub reports: Vec<PathBuf>,
    /// Only this kernel: a name (every instance) or an instance key.
    #[arg(long, value_name = "NAME_OR_KEY")]
    pub kernel: Option<String>,
    /// Find change points in each series: E-divisive means on log(time), a permutation test at
    /// significance 0.01 per split (docs/statistics.md, "Change points").
    #[arg(long)]
    pub changes: bool,
}

/// `history [--history DIR | REPORT…] [--kernel K] [--changes]`: one series per (device, GPU,
/// kernel instance). Seeing nothing is exit 2 naming the input, so an empty or misnamed history
/// never reads as "no change".
fn history(format: Format, args: &HistoryArgs) -> Result<u8> {
    use crate::changes;
    let records = match &args.history {
        Some(dir) => crate::serve::history::read(dir)?,
        None => vec![],
    };
    let files = args
        .reports
        .iter()
        .map(|path| report::load(path))
        .collect::<Result<Vec<_>>>()?;
    let reports = records
        .iter()
        .flat_map(|run| run.reports().map(move |r| (Some(run.id), r)))
        .chain(files.iter().map(|r| (None, r)));
    let kernel = args.kernel.as_deref();
    let read = records.len() + files.len();
    let opts = changes::Options::default();
    let mut out = std::io::stdout().lock();
    let written = if args.changes {
        let series = changes::over_reports(reports, kernel, &opts);
        if series.is_empty() {
            return Err(no_history(args, read));
        }
        match format {
            Format::Table => changes::write_changes(&mut out, &series, &opts),
            Format::Json => json(&mut out, &series),
        }
    } else {
        let series = changes::list(reports, kernel);
        if series.is_empty() {
            return Err(no_history(args, read));
        }
        match format {
            Format::Table => changes::write_list(&mut out, &series),
            Format::Json => json(&mut out, &series),
        }
    };
    written.map_err(|e| Error::Usage(format!("writing to stdout: {e}")))?;
    Ok(exit::PASS)
}

/// `history`'s error when the `read` runs or reports held no series: the input, and the kernel
/// when one was asked for.
fn no_history(args: &HistoryArgs, read: usize) -> Error {
    let input = match (&args.history, args.reports.as_slice()) {
        (Some(dir), _) => format!("history directory {}", dir.display()),
        (None, [one]) => one.display().to_string(),
        (None, [first, .., last]) => format!(
            "{} reports ({} … {})",
            args.reports.len(),
            first.display(),
            last.display()
        ),
        (None, []) => "no input".into(),
    };
    let rows = match &args.kernel {
        Some(k) => format!("no measured row of kernel {k:?}"),
        None => "no measured kernel row".into(),
    };
    Error::Usage(format!(
        "{input}: {rows} in {read} run(s) read: no history to look at"
    ))
}

fn baseline_cmd(format: Format, cmd: &BaselineCommand) -> Result<u8> {
    use baseline::inspect;
    let mut out = std::io::stdout().lock();
    let written = match cmd {
        BaselineCommand::Show { file } => {
            let shown = inspect::show(file)?;
            match format {
                Format::Table => shown.write_table(&mut out),
                Format::Json => json(&mut out, &shown),
            }
        }
        BaselineCommand::Diff { a, b } => {
            let diff = inspect::diff(a, b)?;
            match format {
                Format::Table => diff.write_table(&mut out),
                Format::Json => json(&mut out, &diff),
            }
        }
        BaselineCommand::Prune {
            file,
            kernels,
            sessions,
            out: to,
        } => {
            let pruned = inspect::prune(file, kernels, sessions, to.as_deref())?;
            match format {
                Format::Table => pruned.write_table(&mut out),
                Format::Json => json(&mut out, &pruned),
            }
        }
        BaselineCommand::Pool { files, out: to } => {
            let pooled = baseline::pool::pool(files, to)?;
            match format {
                Format::Table => pooled.write_table(&mut out),
                Format::Json => json(&mut out, &pooled),
            }
        }
    };
    written.map_err(|e| Error::Usage(format!("writing to stdout: {e}")))?;
    Ok(exit::PASS)
}

/// One JSON document on stdout (`--format json` of the baseline commands).
fn json(out: &mut dyn Write, doc: &impl serde::Serialize) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, doc)?;
    writeln!(out)
}

fn serve(choice: AdapterChoice, args: &ServeArgs) -> Result<u8> {
    // --interval and --jitter were bounded where clap parsed them.
    let token = match (&args.token_file, &args.token) {
        (Some(path), _) => match std::fs::read_to_string(path) {
            // A missing file is no token: an `optional: true` Secret that does not exist
            // mounts nothing, and the sidecar must still come up, with writes refused.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(
                    "--token-file {}: no such file; POST /api/v1/runs is disabled",
                    path.display()
                );
                None
            }
            Err(source) => {
                return Err(Error::Io {
                    path: path.clone(),
                    source,
                })
            }
            Ok(text) if text.trim().is_empty() => {
                return Err(Error::Usage(format!(
                    "--token-file {}: the file is empty",
                    path.display()
                )))
            }
            Ok(text) => Some(text.trim().to_string()),
        },
        (None, Some(t)) if !t.trim().is_empty() => Some(t.trim().to_string()),
        (None, _) => {
            tracing::warn!("no token configured: POST /api/v1/runs is disabled");
            None
        }
    };
    let node_condition = args
        .node_condition
        .then(|| {
            crate::serve::node_condition::Target::from_env(args.hostname.as_deref(), |name| {
                std::env::var(name).ok()
            })
        })
        .transpose()?;
    crate::serve::serve(crate::serve::Config {
        listen: args.listen,
        interval: args.interval,
        jitter: args.jitter / 100.0,
        history: args.history.clone(),
        retention: retention(args)?,
        changes_window: args.changes_window,
        token,
        hostname: args
            .hostname
            .clone()
            .or_else(crate::baseline::node_name)
            .unwrap_or_else(|| "unknown".into()),
        choice,
        check: args.check.options()?,
        node_condition,
    })
}

/// `serve`'s retention: the count and age asked for, or by default an age that keeps the
/// change-point window; either must keep `--changes-window` runs at `--interval`.
fn retention(args: &ServeArgs) -> Result<crate::serve::history::Retention> {
    let window = args.changes_window;
    if args.retention < window {
        return Err(Error::Usage(format!(
            "--retention {} keeps fewer runs than --changes-window {window} looks at: raise \
             --retention or lower --changes-window",
            args.retention
        )));
    }
    let span = args
        .interval
        .saturating_mul(u32::try_from(window).unwrap_or(u32::MAX));
    let age = match args.retention_age {
        Some(age) if age < span => {
            return Err(Error::Usage(format!(
                "--retention-age {} keeps less than --changes-window {window} runs at --interval \
                 {} ({}): raise --retention-age or lower --changes-window",
                humantime::format_duration(age),
                humantime::format_duration(args.interval),
                humantime::format_duration(span)
            )))
        }
        Some(age) => age,
        None => DEFAULT_RETENTION_AGE.max(span.saturating_mul(2)),
    };
    Ok(crate::serve::history::Retention {
        runs: args.retention,
        age: Some(age),
    })
}

/// `serve --retention-age` when not given (and the change-point window fits in it).
const DEFAULT_RETENTION_AGE: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

fn run_cmd(choice: &AdapterChoice, format: Format, args: &RunArgs) -> Result<u8> {
    let opts = gate::RunOptions {
        suite: args.suite,
        runs: args.runs,
        measure: args.measure.options()?,
    };
    emit(format, &gate::run(choice, &opts)?, &args.output)
}

fn record(choice: &AdapterChoice, format: Format, args: &RecordArgs) -> Result<u8> {
    let opts = gate::RecordOptions {
        suite: args.suite,
        runs: args.runs,
        out: args.out.clone(),
        baselines: args.baselines.clone(),
        append: args.append,
        measure: args.measure.options()?,
    };
    emit(format, &gate::record(choice, &opts)?, &args.output)
}

fn check(choice: &AdapterChoice, format: Format, args: &CheckCmdArgs) -> Result<u8> {
    let json = &args.output;
    let opts = args.check.options()?;
    let bootstrap = gate::BootstrapOptions {
        suite: args.bootstrap.suite,
        record_runs: args.bootstrap.record_runs,
        ci: on_ci(),
    };
    let record_missing = args.bootstrap.record_missing;
    // A `--baselines` path that does not exist yet is where the first baseline goes.
    if record_missing && !opts.baselines.exists() {
        return emit(format, &gate::bootstrap(choice, &opts, &bootstrap)?, json);
    }
    match gate::check(choice, &opts) {
        Ok(report) => emit(format, &report, json),
        Err(Error::NoBaseline { .. }) if record_missing => {
            emit(format, &gate::bootstrap(choice, &opts, &bootstrap)?, json)
        }
        Err(e @ Error::NoBaseline { .. }) => {
            eprintln!(
                "gpugate: hint: `{} check --record-missing` records this device's first baseline \
                 and checks against it (the README's scripts/check does)",
                crate::error::invoked_as()
            );
            Err(e)
        }
        Err(e) => Err(e),
    }
}

fn list(choice: &AdapterChoice, format: Format) -> Result<u8> {
    let adapters = device::enumerate(choice)?;
    let adapters: Vec<serde_json::Value> = adapters
        .iter()
        .map(|a| {
            let info = a.get_info();
            let fp = device::Fingerprint::from_info(&info);
            let limits = a.limits();
            serde_json::json!({
                "device_key": fp.device_key(),
                "fingerprint": fp,
                "timestamp_query": a.features().contains(wgpu::Features::TIMESTAMP_QUERY),
                "timestamp_query_inside_passes": a.features().contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
                "limits": {
                    "max_buffer_size": limits.max_buffer_size,
                    "max_storage_buffer_binding_size": limits.max_storage_buffer_binding_size,
                    "max_compute_workgroup_storage_size": limits.max_compute_workgroup_storage_size,
                    "max_compute_invocations_per_workgroup": limits.max_compute_invocations_per_workgroup,
                    "max_compute_workgroups_per_dimension": limits.max_compute_workgroups_per_dimension,
                },
            })
        })
        .collect();
    let suite_keys = |scale| {
        Suite::ALL
            .map(|s| {
                let keys: Vec<String> = suite::instances(s, scale)
                    .iter()
                    .map(|(k, p)| workload::instance_key(k.name(), p))
                    .collect();
                (s.name(), keys)
            })
            .into_iter()
            .collect::<BTreeMap<_, _>>()
    };
    let kernels: Vec<serde_json::Value> = workload::all()
        .iter()
        .map(|k| {
            serde_json::json!({
                "name": k.name(),
                "describe": k.describe(),
                "unit": k.unit().label(),
                // Names and accepted ranges, as the baseline loader checks them.
                "params": k.params(),
            })
        })
        .collect();
    let doc = serde_json::json!({
        "adapters": adapters,
        "kernels": kernels,
        "suites": { "gpu": suite_keys(suite::Scale::Large), "software": suite_keys(suite::Scale::Small) },
    });
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&doc).expect("json")),
        Format::Table => list_table(&mut out, &doc),
    }
    .map_err(|e| Error::Usage(format!("writing to stdout: {e}")))?;
    if adapters.is_empty() {
        return Err(Error::NoAdapter("wgpu found none".into()));
    }
    Ok(exit::PASS)
}

/// `list`'s human form, read from the same document as its JSON form.
fn list_table(out: &mut dyn Write, doc: &serde_json::Value) -> std::io::Result<()> {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_string();
    writeln!(out, "adapters (best first):")?;
    for a in doc["adapters"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "  {}  timestamps={}  max_binding={}  [{}]",
            text(&a["fingerprint"]["name"]),
            a["timestamp_query"],
            a["limits"]["max_storage_buffer_binding_size"],
            text(&a["device_key"]),
        )?;
    }
    writeln!(out, "kernels:")?;
    for k in doc["kernels"].as_array().into_iter().flatten() {
        let (name, unit) = (text(&k["name"]), text(&k["unit"]));
        let params: Vec<String> = k["params"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("{}={}..{}", text(&p["name"]), p["min"], p["max"]))
            .collect();
        writeln!(
            out,
            "  {name:<18} {unit:<8} params {}  {}",
            params.join(","),
            text(&k["describe"])
        )?;
    }
    for (class, suites) in doc["suites"].as_object().into_iter().flatten() {
        writeln!(out, "suites on a {class} adapter:")?;
        for (name, keys) in suites.as_object().into_iter().flatten() {
            let keys: Vec<String> = keys.as_array().into_iter().flatten().map(text).collect();
            writeln!(out, "  {name:<8} {}", keys.join(" "))?;
        }
    }
    Ok(())
}

/// `KERNEL=VALUE` pairs, with an error naming the flag.
fn parse_pairs(flag: &str, pairs: &[String]) -> Result<BTreeMap<String, f64>> {
    pairs
        .iter()
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| Error::Usage(format!("{flag} {p:?}: expected KERNEL=NUMBER")))?;
            workload::find(k)?;
            let v: f64 = v
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v > 0.0)
                .ok_or_else(|| {
                    Error::Usage(format!("{flag} {p:?}: {v:?} is not a positive number"))
                })?;
            Ok((k.to_string(), v))
        })
        .collect()
}

/// Print the report, annotate and summarise it for GitHub Actions where that runs us, and write
/// every file asked for; the report's exit code. A failed write is reported on stderr and costs
/// a pass (exit 2), but never hides a regression (1) or a fault (4): a masked regression would
/// be retried instead of failing the pipeline.
fn emit(format: Format, report: &Report, output: &OutputArgs) -> Result<u8> {
    EMITTED.store(true, std::sync::atomic::Ordering::SeqCst);
    let code = report.outcome.exit_code;
    let mut failures: Vec<Error> = vec![];
    let stdout_error = |e: std::io::Error| Error::Usage(format!("writing to stdout: {e}"));
    {
        let mut stdout = std::io::stdout().lock();
        let written = match format {
            Format::Table => report::Table.write(report, &mut stdout),
            Format::Json => report::Json.write(report, &mut stdout),
        };
        failures.extend(written.err().map(stdout_error));
    }
    // GitHub reads workflow commands from both streams: under --format json they go to
    // stderr, so stdout stays one JSON document.
    if env_is("GITHUB_ACTIONS", "true") {
        let lines = report::github::annotations(report);
        let written = match format {
            Format::Table => write_lines(&mut std::io::stdout().lock(), &lines),
            Format::Json => write_lines(&mut std::io::stderr().lock(), &lines),
        };
        failures.extend(written.err().map(stdout_error));
    }
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .and_then(|mut file| report::Markdown.write(report, &mut file));
        failures.extend(appended.err().map(|source| Error::Io { path, source }));
    }
    let mut files: Vec<(&PathBuf, &dyn Reporter)> = vec![];
    if let Some(path) = &output.json {
        files.push((path, &report::Json));
    }
    if let Some(path) = &output.junit {
        files.push((path, &report::Junit));
    }
    for export in &output.export {
        let reporter: &dyn Reporter = match export.kind {
            ExportKind::Bmf => &report::Bmf,
            ExportKind::Csv => &report::Csv,
            ExportKind::Md => &report::Markdown,
        };
        files.push((&export.path, reporter));
    }
    for (path, reporter) in files {
        failures.extend(write_file(path, |out| reporter.write(report, out)).err());
    }
    if let Some(path) = &output.html {
        let page = report::html::page(std::slice::from_ref(report));
        failures.extend(write_file(path, |out| out.write_all(page.as_bytes())).err());
    }
    match failures.into_iter().next() {
        None => Ok(code),
        Some(e) if code == exit::PASS => Err(e),
        Some(e) => {
            tracing::error!("{e}");
            eprintln!("gpugate: error: {e} (exit {code} stands: the report's outcome)");
            Ok(code)
        }
    }
}

/// Write a whole file through `write`, naming the file on failure.
/// A regular file (or a new one) is written beside itself and renamed over, so a write that
/// fails half-way never truncates an earlier report; anything else (`/dev/stdout`, a pipe) is
/// written in place.
fn write_file(
    path: &PathBuf,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let replace = std::fs::metadata(path).map_or(true, |m| m.is_file());
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let target = match (&name, replace) {
        (Some(name), true) => path.with_file_name(format!(".{name}.gpugate-tmp")),
        _ => path.clone(),
    };
    std::fs::File::create(&target)
        .and_then(|file| {
            let mut out = std::io::BufWriter::new(file);
            write(&mut out)?;
            out.flush()
        })
        .and_then(|()| match target == *path {
            true => Ok(()),
            false => std::fs::rename(&target, path),
        })
        .map_err(|source| {
            if target != *path {
                let _ = std::fs::remove_file(&target);
            }
            Error::Io {
                path: path.clone(),
                source,
            }
        })
}

fn write_lines(out: &mut dyn Write, lines: &[String]) -> std::io::Result<()> {
    lines.iter().try_for_each(|l| writeln!(out, "{l}"))
}

/// True when environment variable `name` is exactly `value`.
fn env_is(name: &str, value: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == value)
}

/// Variables CI systems set: `CI` (GitHub Actions, GitLab, CircleCI, Travis, Buildkite and
/// others) and the ones that do not set it (Jenkins, Azure Pipelines, TeamCity).
pub const CI_VARIABLES: [&str; 7] = [
    "CI",
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "BUILDKITE",
    "JENKINS_URL",
    "TF_BUILD",
    "TEAMCITY_VERSION",
];

/// True where one of [`CI_VARIABLES`] says a CI system runs us.
fn on_ci() -> bool {
    CI_VARIABLES
        .iter()
        .any(|name| std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "false" && v != "0"))
}

fn measure_child(choice: &AdapterChoice) -> Result<u8> {
    crate::progress::lines_for_parent();
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| Error::Usage(format!("reading the plan from stdin: {e}")))?;
    let plan: runner::Plan =
        serde_json::from_str(&input).map_err(|e| Error::Usage(format!("plan on stdin: {e}")))?;
    let gpu = Gpu::open(choice)?;
    let result = runner::run_in_process(&gpu, &plan)?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &result)
        .map_err(|e| Error::Usage(format!("writing the result: {e}")))?;
    Ok(exit::PASS)
}
