//! Command-line interface: argument types and one function per command. Each command returns the
//! exit code it earned; errors carry their own (see [`crate::error::exit`]).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::baseline::{self, Baseline};
use crate::compare::{self, GateOutcome, Policy, RunMedians, Verdict};
use crate::device::{self, AdapterChoice, Gpu};
use crate::error::{exit, Error, Result};
use crate::report::{self, Reporter, Row, Unsupported};
use crate::runner::{self, Plan, PlanItem, RunResult};
use crate::sampler::{SamplerConfig, TimingMethod};
use crate::workload::{self, suite, suite::Suite};

const EXIT_CODES: &str = "\
Exit codes:
  0  pass: every kernel verified, no regression
  1  a regression, or a kernel computed a wrong result
  2  usage, configuration or baseline-file error
  3  cannot validate here: no usable adapter, no baseline for this device, or nothing conclusive";

#[derive(Parser, Debug)]
#[command(name = "gpugate", version, about = "GPU performance validation: did this node or build get slower?", after_help = EXIT_CODES)]
pub struct Cli {
    /// Use the first adapter whose name contains this (case-insensitive).
    #[arg(long, global = true, env = "WGPU_ADAPTER_NAME")]
    pub adapter: Option<String>,
    /// Restrict to these wgpu backends (vulkan, metal, dx12, gl; comma-separated).
    #[arg(long, global = true, env = "WGPU_BACKEND")]
    pub backend: Option<String>,
    /// What to print on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
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
    /// The sidecar / DaemonSet: validate on start, on an interval and on request; serve the
    /// results, a verdict and Prometheus metrics over HTTP.
    Serve(ServeArgs),
    /// Internal: one independent run, plan on stdin, result JSON on stdout.
    #[command(hide = true)]
    MeasureChild,
}

#[derive(Args, Debug, Clone)]
pub struct MeasureArgs {
    /// Only these kernels (repeatable).
    #[arg(long = "kernel", value_name = "NAME")]
    pub kernels: Vec<String>,
    /// Stop sampling a kernel once its median's 95 % CI half-width is within this percentage.
    #[arg(long, value_name = "PCT")]
    pub noise_target: Option<f64>,
    /// Cap on measuring seconds per kernel and run.
    #[arg(long, value_name = "SECONDS")]
    pub max_time: Option<f64>,
    /// Also write the full report (raw samples included) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// How to time samples: GPU timestamps around each pass, or the host clock around submit + wait
    /// [default: gpu-timestamp where the adapter has it; a check uses its baseline's].
    #[arg(long, value_enum)]
    pub timing: Option<TimingMethod>,
    /// Test only: encode KERNEL FACTOR times per iteration — real extra work, counted once.
    #[arg(long, value_name = "KERNEL=FACTOR", hide = true)]
    pub test_slowdown: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[arg(long, value_enum, default_value_t = Suite::Quick)]
    pub suite: Suite,
    /// Independent runs, each in its own process.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    #[command(flatten)]
    pub measure: MeasureArgs,
}

#[derive(Args, Debug)]
pub struct RecordArgs {
    #[arg(long, value_enum, default_value_t = Suite::Quick)]
    pub suite: Suite,
    /// Independent runs, each in its own process; their spread is the run-to-run noise.
    #[arg(long, default_value_t = baseline::DEFAULT_RUNS)]
    pub runs: usize,
    /// Baseline file to write or update [default: BASELINES/<device-key>.json].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
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
    #[arg(long, value_name = "PCT")]
    pub threshold: Option<f64>,
    /// Practical threshold for one kernel, e.g. `sgemm=8` (repeatable).
    #[arg(long, value_name = "KERNEL=PCT")]
    pub kernel_threshold: Vec<String>,
    /// Independent runs to measure now, each in a fresh process (one process can settle in a
    /// slow or fast mode for its whole life, so one run alone may land in either).
    #[arg(long, default_value_t = baseline::DEFAULT_CHECK_RUNS)]
    pub runs: usize,
    #[command(flatten)]
    pub measure: MeasureArgs,
}

/// `gpugate check`: the gate's flags, shared with `serve`, plus the first-run bootstrap, which
/// `serve` never offers (a node that baselines itself hides its own slowness).
#[derive(Args, Debug)]
pub struct CheckCmdArgs {
    #[command(flatten)]
    pub check: CheckArgs,
    #[command(flatten)]
    pub bootstrap: BootstrapArgs,
}

#[derive(Args, Debug, Clone)]
pub struct BootstrapArgs {
    /// If this device has no baseline: record one as `record` does (independent processes), then
    /// check against it once in a fresh process as a self-test, and say what it can detect. With
    /// CI set, write it and exit 3 instead: a throwaway runner never passes by bootstrapping.
    #[arg(long)]
    pub record_missing: bool,
    /// Suite to record when bootstrapping.
    #[arg(long, value_enum, default_value_t = Suite::Quick, requires = "record_missing")]
    pub suite: Suite,
    /// Independent runs to record when bootstrapping.
    #[arg(long, value_name = "N", default_value_t = baseline::DEFAULT_RUNS, requires = "record_missing")]
    pub record_runs: usize,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "GPUGATE_LISTEN", default_value = "0.0.0.0:9400")]
    pub listen: std::net::SocketAddr,
    /// Time between scheduled validations, e.g. `30m`, `6h`.
    #[arg(long, env = "GPUGATE_INTERVAL", default_value = "1h", value_parser = humantime::parse_duration)]
    pub interval: std::time::Duration,
    /// Random spread of each wait, in percent of the interval, so a fleet does not run in lock-step.
    #[arg(
        long,
        env = "GPUGATE_JITTER",
        value_name = "PCT",
        default_value_t = 10.0
    )]
    pub jitter: f64,
    /// Directory for run history (one JSON file per finished run); in memory only without it.
    #[arg(long, env = "GPUGATE_HISTORY", value_name = "DIR")]
    pub history: Option<PathBuf>,
    /// Finished runs kept in memory and on disk.
    #[arg(long, env = "GPUGATE_RETENTION", default_value_t = 100)]
    pub retention: usize,
    /// File holding the bearer token that `POST /api/v1/runs` requires (a mounted Secret).
    #[arg(long, env = "GPUGATE_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The bearer token itself; prefer --token-file. Without either, triggering is disabled.
    #[arg(long, env = "GPUGATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The `hostname` label on every metric (Kubernetes: the node name, as dcgm-exporter uses).
    #[arg(long, env = "NODE_NAME")]
    pub hostname: Option<String>,
    #[command(flatten)]
    pub check: CheckArgs,
}

/// Run the parsed command; the exit code it earned, or an error carrying its own.
pub fn run(cli: Cli) -> Result<u8> {
    let choice = AdapterChoice {
        name_contains: cli.adapter.clone(),
        backend: cli.backend.clone(),
    };
    match &cli.command {
        Command::List => list(&choice, cli.format),
        Command::Run(args) => run_cmd(&choice, cli.format, args),
        Command::Record(args) => record(&choice, cli.format, args),
        Command::Check(args) => check(&choice, cli.format, args),
        Command::Serve(args) => serve(choice, args),
        Command::MeasureChild => measure_child(&choice),
    }
}

fn serve(choice: AdapterChoice, args: &ServeArgs) -> Result<u8> {
    if !(0.0..=100.0).contains(&args.jitter) {
        return Err(Error::Usage(format!(
            "--jitter {}: expected a percentage in [0, 100]",
            args.jitter
        )));
    }
    if args.interval.is_zero() {
        return Err(Error::Usage("--interval must be longer than zero".into()));
    }
    let token = match (&args.token_file, &args.token) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            let token = text.trim().to_string();
            if token.is_empty() {
                return Err(Error::Usage(format!(
                    "--token-file {}: the file is empty",
                    path.display()
                )));
            }
            Some(token)
        }
        (None, Some(t)) if !t.trim().is_empty() => Some(t.trim().to_string()),
        (None, _) => None,
    };
    if token.is_none() {
        tracing::warn!("no token configured: POST /api/v1/runs is disabled");
    }
    crate::serve::serve(crate::serve::Config {
        listen: args.listen,
        interval: args.interval,
        jitter: args.jitter / 100.0,
        history: args.history.clone(),
        retention: args.retention,
        token,
        hostname: args.hostname.clone().unwrap_or_else(hostname_fallback),
        choice,
        check: args.check.clone(),
    })
}

/// The machine's host name when `NODE_NAME` is not set.
fn hostname_fallback() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
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
                "params": k.param_names(),
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
        writeln!(
            out,
            "  {name:<18} {unit:<8} params {}  {}",
            k["params"],
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

/// Encodes per iteration for each kernel: the test-only `--test-slowdown` factor, else 1.
fn repeats(args: &MeasureArgs) -> Result<impl Fn(&str) -> u32> {
    let factors = parse_pairs("--test-slowdown", &args.test_slowdown)?;
    Ok(move |kernel: &str| factors.get(kernel).map_or(1, |&f| f as u32))
}

fn sampler_config(gpu: &Gpu, args: &MeasureArgs) -> Result<SamplerConfig> {
    let mut cfg = SamplerConfig::for_device(gpu.is_software());
    if let Some(pct) = args.noise_target {
        if !(pct > 0.0 && pct < 100.0) {
            return Err(Error::Usage(format!(
                "--noise-target {pct}: expected a percentage in (0, 100)"
            )));
        }
        cfg.noise_target = pct / 100.0;
    }
    if let Some(s) = args.max_time {
        if !(s > 0.0 && s.is_finite()) {
            return Err(Error::Usage(format!(
                "--max-time {s}: expected positive seconds"
            )));
        }
        cfg.max_time_s = s;
    }
    Ok(cfg)
}

fn check_runs(runs: usize, min: usize) -> Result<()> {
    if runs < min {
        return Err(Error::Usage(format!(
            "--runs {runs}: at least {min} needed"
        )));
    }
    Ok(())
}

/// Where a run's measurements happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Processes {
    /// In this process for one run, in fresh child processes for several.
    AsNeeded,
    /// Always in fresh child processes, even for one run (a self-check right after recording).
    Fresh,
}

/// Measure `items` `runs` times: in this process or in fresh child processes (see [`Processes`]).
/// An empty plan measures nothing and yields one empty run.
fn measure(
    choice: &AdapterChoice,
    gpu: Gpu,
    plan: &Plan,
    runs: usize,
    processes: Processes,
) -> Result<Vec<RunResult>> {
    if plan.items.is_empty() || (runs == 1 && processes == Processes::AsNeeded) {
        return Ok(vec![runner::run_in_process(&gpu, plan)?]);
    }
    let key = gpu.fingerprint.device_key();
    drop(gpu); // children open their own device
    let results = runner::run_in_children(choice, plan, runs)?;
    if let Some(other) = results.iter().find(|r| r.device_key != key) {
        return Err(Error::Usage(format!(
            "a child run chose adapter {:?}, not {key:?}; pin it with --adapter",
            other.device_key
        )));
    }
    Ok(results)
}

/// The kernel, or why this adapter cannot run it.
fn supported(
    gpu: &Gpu,
    kernel: &'static dyn workload::Kernel,
    params: &workload::Params,
) -> std::result::Result<(), Unsupported> {
    match kernel.unsupported(gpu) {
        None => Ok(()),
        Some(reason) => Err(Unsupported {
            key: workload::instance_key(kernel.name(), params),
            kernel: kernel.name().to_string(),
            reason,
        }),
    }
}

/// The suite's instances this adapter can run, as a plan, and those it cannot.
fn suite_plan(gpu: &Gpu, suite: Suite, args: &MeasureArgs) -> Result<(Plan, Vec<Unsupported>)> {
    let repeat = repeats(args)?;
    let mut items = vec![];
    let mut unsupported = vec![];
    for (k, params) in suite::select(suite, suite::Scale::of(gpu), &args.kernels)? {
        if let Err(u) = supported(gpu, k, &params) {
            unsupported.push(u);
            continue;
        }
        items.push(PlanItem {
            kernel: k.name().to_string(),
            repeat: repeat(k.name()),
            params,
            batch: None,
            timing: args.timing,
        });
    }
    let plan = Plan {
        items,
        sampler: sampler_config(gpu, args)?,
    };
    Ok((plan, unsupported))
}

/// Say in the outcome what was left out, so a reader never takes it for a pass.
fn note_unsupported(outcome: &mut GateOutcome, unsupported: &[Unsupported]) {
    if !unsupported.is_empty() {
        outcome.message = format!(
            "{}; {} kernel(s) unsupported on this adapter, left out",
            outcome.message,
            unsupported.len()
        );
    }
}

/// Rows from the current runs: per instance, the run medians' centre, verification over all runs.
fn rows(
    results: &[RunResult],
    mut judge: impl FnMut(usize, &RunMedians) -> Option<compare::Comparison>,
) -> Vec<Row> {
    let first = &results[0];
    let mut rows: Vec<Row> = first
        .kernels
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let per_run: Vec<_> = results.iter().map(|r| &r.kernels[i]).collect();
            let current = RunMedians::from_summaries(per_run.iter().map(|r| &r.summary));
            let verification = per_run
                .iter()
                .map(|r| &r.verification)
                .find(|v| !v.ok)
                .unwrap_or(&k.verification)
                .clone();
            let comparison = judge(i, &current);
            let verdict = if !verification.ok {
                Verdict::WrongResult
            } else {
                comparison.as_ref().map_or(Verdict::Pass, |c| c.verdict)
            };
            let median_s = current.center_s();
            Row {
                key: k.key.clone(),
                kernel: k.kernel.clone(),
                unit: k.unit,
                median_s,
                rate: k.unit.rate(k.work, median_s),
                pct_of_peak: None,
                intensity: k.work.intensity(),
                iqr_rel: per_run
                    .iter()
                    .map(|r| r.summary.iqr_rel)
                    .fold(0.0, f64::max),
                timing: k.measurement.timing,
                stop: k.measurement.stop,
                verification,
                comparison,
                verdict,
            }
        })
        .collect();
    report::apply_peaks(&mut rows);
    rows
}

fn emit(format: Format, report: &report::Report, json: Option<&PathBuf>) -> Result<u8> {
    let mut stdout = std::io::stdout().lock();
    let written = match format {
        Format::Table => report::Table.write(report, &mut stdout),
        Format::Json => report::Json.write(report, &mut stdout),
    };
    written.map_err(|e| Error::Usage(format!("writing to stdout: {e}")))?;
    if let Some(path) = json {
        let mut file = std::fs::File::create(path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        report::Json
            .write(report, &mut file)
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
    }
    Ok(report.outcome.exit_code)
}

/// Outcome of a run or record: only correctness is judged.
fn correctness_outcome(rows: &[Row]) -> GateOutcome {
    let wrong = rows.iter().filter(|r| !r.verification.ok).count();
    match (rows.len(), wrong) {
        (0, _) => GateOutcome {
            verdict: Verdict::Inconclusive,
            exit_code: exit::CANNOT_VALIDATE,
            message: "no kernel ran".into(),
        },
        (_, 0) => GateOutcome {
            verdict: Verdict::Pass,
            exit_code: exit::PASS,
            message: format!("{} kernel(s) measured and verified", rows.len()),
        },
        (_, w) => GateOutcome {
            verdict: Verdict::WrongResult,
            exit_code: exit::FAIL,
            message: format!("{w} kernel(s) computed a wrong result"),
        },
    }
}

fn run_cmd(choice: &AdapterChoice, format: Format, args: &RunArgs) -> Result<u8> {
    check_runs(args.runs, 1)?;
    let gpu = Gpu::open(choice)?;
    let (plan, unsupported) = suite_plan(&gpu, args.suite, &args.measure)?;
    let fingerprint = gpu.fingerprint.clone();
    let results = measure(choice, gpu, &plan, args.runs, Processes::AsNeeded)?;
    let rows = rows(&results, |_, _| None);
    let mut outcome = correctness_outcome(&rows);
    note_unsupported(&mut outcome, &unsupported);
    let report = report::Report {
        command: "run".into(),
        device_key: fingerprint.device_key(),
        fingerprint,
        baseline_file: None,
        notes: vec![],
        outcome,
        rows,
        unsupported,
        bootstrap: None,
        runs: results,
    };
    emit(format, &report, args.measure.json.as_ref())
}

fn record(choice: &AdapterChoice, format: Format, args: &RecordArgs) -> Result<u8> {
    let report = record_report(choice, args)?;
    emit(format, &report, args.measure.json.as_ref())
}

/// Record without output: measure in independent processes, write or merge the file, report.
fn record_report(choice: &AdapterChoice, args: &RecordArgs) -> Result<report::Report> {
    check_runs(args.runs, baseline::MIN_RUNS)?;
    let gpu = Gpu::open(choice)?;
    let (plan, unsupported) = suite_plan(&gpu, args.suite, &args.measure)?;
    let fingerprint = gpu.fingerprint.clone();
    let key = fingerprint.device_key();
    let path = args
        .out
        .clone()
        .unwrap_or_else(|| args.baselines.join(format!("{key}.json")));
    // Read an existing file before measuring, so a broken one fails fast.
    let existing = if path.is_file() {
        Some(baseline::load(&path)?)
    } else {
        None
    };
    let results = measure(choice, gpu, &plan, args.runs, Processes::AsNeeded)?;
    let rows = rows(&results, |_, _| None);
    let mut outcome = correctness_outcome(&rows);
    let mut notes = vec![];
    if outcome.exit_code == exit::PASS {
        let fresh = baseline::from_runs(&results)?;
        let merged = match existing {
            Some(old) if old.device_key == key => {
                if old.fingerprint.driver_string() != fingerprint.driver_string() {
                    notes.push(format!(
                        "driver changed since the previous baseline: {} → {}",
                        old.fingerprint.driver_string(),
                        fingerprint.driver_string()
                    ));
                }
                baseline::merge(old, fresh)
            }
            Some(old) => {
                return Err(Error::baseline(
                    &path,
                    "device_key",
                    format!(
                        "file belongs to {:?}, this device is {key:?}; use another --out",
                        old.device_key
                    ),
                ))
            }
            None if fingerprint.is_software() => Baseline {
                threshold_pct: Some(baseline::SOFTWARE_THRESHOLD_PCT),
                note: Some(baseline::SOFTWARE_NOTE.into()),
                ..fresh
            },
            None => fresh,
        };
        baseline::save(&path, &merged)?;
        outcome.message = format!("{}; wrote {}", outcome.message, path.display());
    } else {
        outcome.message = format!("{}; baseline not written", outcome.message);
    }
    note_unsupported(&mut outcome, &unsupported);
    let report = report::Report {
        command: "record".into(),
        device_key: key,
        fingerprint,
        baseline_file: Some(path.display().to_string()),
        notes,
        outcome,
        rows,
        unsupported,
        bootstrap: None,
        runs: results,
    };
    Ok(report)
}

/// The threshold for one kernel: CLI per-kernel, CLI global, file per-kernel, file, default.
fn threshold_for(
    kernel: &str,
    cli_kernel: &BTreeMap<String, f64>,
    cli_global: Option<f64>,
    file: &Baseline,
    file_kernel: Option<f64>,
) -> f64 {
    cli_kernel
        .get(kernel)
        .copied()
        .or(cli_global)
        .or(file_kernel)
        .or(file.threshold_pct)
        .map_or(compare::DEFAULT_THRESHOLD, |p| p / 100.0)
}

fn check(choice: &AdapterChoice, format: Format, args: &CheckCmdArgs) -> Result<u8> {
    let json = args.check.measure.json.as_ref();
    let record_missing = args.bootstrap.record_missing;
    if record_missing && args.bootstrap.record_runs < baseline::MIN_RUNS {
        return Err(Error::Usage(format!(
            "--record-runs {}: at least {} needed",
            args.bootstrap.record_runs,
            baseline::MIN_RUNS
        )));
    }
    // A `--baselines` path that does not exist yet is where the first baseline goes.
    if record_missing && !args.check.baselines.exists() {
        kernel_thresholds(&args.check)?;
        return emit(format, &bootstrap(choice, args)?, json);
    }
    match check_report(choice, &args.check) {
        Ok(report) => emit(format, &report, json),
        Err(Error::NoBaseline { .. }) if record_missing => {
            emit(format, &bootstrap(choice, args)?, json)
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

/// A first run on a device without a baseline: record one, then self-check against it in a fresh
/// process, judged like any check; under CI stop after writing it (exit 3).
fn bootstrap(choice: &AdapterChoice, args: &CheckCmdArgs) -> Result<report::Report> {
    let key = Gpu::open(choice)?.fingerprint.device_key();
    let path = baseline::bootstrap_path(&args.check.baselines, &key)?;
    // Minutes of measuring must not end in "cannot write": try the directory first.
    baseline::ensure_writable(&path)?;
    tracing::info!(
        device_key = %key,
        file = %path.display(),
        runs = args.bootstrap.record_runs,
        "no baseline for this device: recording one, each run in a fresh process"
    );
    let record = RecordArgs {
        suite: args.bootstrap.suite,
        runs: args.bootstrap.record_runs,
        out: Some(path.clone()),
        baselines: args.check.baselines.clone(),
        measure: MeasureArgs {
            json: None,
            ..args.check.measure.clone()
        },
    };
    let mut recorded = record_report(choice, &record)?;
    if recorded.outcome.exit_code != exit::PASS {
        return Ok(recorded); // a wrong result: nothing was written, the report says why
    }
    let written = baseline::load(&path)?;
    let check = CheckArgs {
        baselines: path.clone(),
        ..args.check.clone()
    };
    let ci = on_ci();
    let summary = report::Bootstrap {
        baseline_file: path.display().to_string(),
        recorded_runs: args.bootstrap.record_runs,
        self_checked: !ci,
        check_runs: check.runs,
        detectable: detectable(&written, &check)?,
    };
    if ci {
        recorded.outcome = GateOutcome {
            verdict: Verdict::Inconclusive,
            exit_code: exit::CANNOT_VALIDATE,
            message: format!(
                "CI: recorded {} but validated nothing: a bootstrap never passes in CI. Commit \
                 that file (keep it as a job artifact) and the next run is a gate",
                path.display()
            ),
        };
        note_unsupported(&mut recorded.outcome, &recorded.unsupported);
        recorded.bootstrap = Some(summary);
        return Ok(recorded);
    }
    tracing::info!("self-check against the new baseline in a fresh process");
    let mut report = match check_report_in(choice, &check, Processes::Fresh) {
        Ok(report) => report,
        // The file is written either way; say so, with what the recording measured.
        Err(e) => {
            recorded.outcome = GateOutcome {
                verdict: Verdict::Inconclusive,
                exit_code: e.exit_code(),
                message: format!(
                    "recorded {}, but the self-check against it failed: {e}",
                    path.display()
                ),
            };
            recorded.bootstrap = Some(report::Bootstrap {
                self_checked: false,
                ..summary
            });
            return Ok(recorded);
        }
    };
    // What the recording could not run on this adapter was never in the baseline: say so here.
    if report.unsupported.is_empty() && !recorded.unsupported.is_empty() {
        report.unsupported = recorded.unsupported;
        note_unsupported(&mut report.outcome, &report.unsupported);
    }
    report.outcome.message = format!(
        "bootstrap self-check: {}{}",
        report.outcome.message,
        if report.outcome.exit_code == exit::PASS {
            ""
        } else {
            " (the baseline is written; re-record it on a quieter node before committing it)"
        }
    );
    report.bootstrap = Some(summary);
    Ok(report)
}

/// Per kernel of `base`: the smallest slowdown a check made with `check` detects, at the
/// threshold it would be judged by.
fn detectable(base: &Baseline, check: &CheckArgs) -> Result<Vec<report::Detectable>> {
    let per_kernel = kernel_thresholds(check)?;
    Ok(base
        .kernels
        .iter()
        .map(|k| {
            let threshold = threshold_for(
                &k.kernel,
                &per_kernel,
                check.threshold,
                base,
                k.threshold_pct,
            );
            let policy = Policy {
                threshold,
                ..Policy::default()
            };
            report::Detectable {
                key: k.key.clone(),
                threshold,
                slowdown_ratio: compare::detectable_slowdown(
                    &RunMedians::from_summaries(k.summaries()),
                    check.runs,
                    policy,
                    compare::DETECTION_POWER,
                ),
            }
        })
        .collect())
}

/// Check's flags validated before anything is measured; the per-kernel thresholds.
fn kernel_thresholds(args: &CheckArgs) -> Result<BTreeMap<String, f64>> {
    check_runs(args.runs, 1)?;
    if let Some(t) = args.threshold.filter(|t| !(*t > 0.0 && t.is_finite())) {
        return Err(Error::Usage(format!(
            "--threshold {t}: expected a positive percentage"
        )));
    }
    parse_pairs("--kernel-threshold", &args.kernel_threshold)
}

/// The gate without its output: measure, compare with this device's baseline, decide. `check` and
/// `serve` both validate through this one path.
pub fn check_report(choice: &AdapterChoice, args: &CheckArgs) -> Result<report::Report> {
    check_report_in(choice, args, Processes::AsNeeded)
}

fn check_report_in(
    choice: &AdapterChoice,
    args: &CheckArgs,
    processes: Processes,
) -> Result<report::Report> {
    let per_kernel = kernel_thresholds(args)?;
    let gpu = Gpu::open(choice)?;
    let fingerprint = gpu.fingerprint.clone();
    let key = fingerprint.device_key();
    let (path, base) = baseline::for_device(&args.baselines, &key)?;
    let mut notes = vec![];
    if base.fingerprint.driver_string() != fingerprint.driver_string() {
        notes.push(format!(
            "driver differs from the baseline's: recorded with {:?}, running {:?}",
            base.fingerprint.driver_string(),
            fingerprint.driver_string()
        ));
    }
    if base.fingerprint.cpu_model != fingerprint.cpu_model {
        notes.push("host CPU differs from the baseline's".into());
    }

    let repeat = repeats(&args.measure)?;
    let mut chosen = Vec::new();
    let mut unsupported = Vec::new();
    for (i, k) in base.kernels.iter().enumerate() {
        let Ok(kernel) = workload::find(&k.kernel) else {
            return Err(Error::baseline(
                &path,
                format!("kernels[{i}].kernel"),
                format!("unknown kernel {:?}", k.kernel),
            ));
        };
        if !args.measure.kernels.is_empty() && !args.measure.kernels.contains(&k.kernel) {
            continue;
        }
        match supported(&gpu, kernel, &k.params) {
            Ok(()) => chosen.push(k),
            Err(u) => unsupported.push(u),
        }
    }
    for name in &args.measure.kernels {
        if !base.kernels.iter().any(|k| &k.kernel == name) {
            return Err(Error::Usage(format!(
                "--kernel {name}: not in baseline {}",
                path.display()
            )));
        }
    }
    let plan = Plan {
        items: chosen
            .iter()
            .map(|k| PlanItem {
                kernel: k.kernel.clone(),
                params: k.params.clone(),
                batch: Some(k.batch),
                repeat: repeat(&k.kernel),
                timing: Some(args.measure.timing.unwrap_or(k.timing)),
            })
            .collect(),
        sampler: sampler_config(&gpu, &args.measure)?,
    };
    let results = measure(choice, gpu, &plan, args.runs, processes)?;
    let rows = rows(&results, |i, current| {
        let b = chosen[i];
        let threshold = threshold_for(
            &b.kernel,
            &per_kernel,
            args.threshold,
            &base,
            b.threshold_pct,
        );
        let baseline = RunMedians::from_summaries(b.summaries());
        Some(compare::compare(
            &baseline,
            current,
            Policy {
                threshold,
                ..Policy::default()
            },
        ))
    });
    let verdicts: Vec<Verdict> = rows.iter().map(|r| r.verdict).collect();
    let mut outcome = compare::gate(&verdicts);
    note_unsupported(&mut outcome, &unsupported);
    Ok(report::Report {
        command: "check".into(),
        device_key: key,
        fingerprint,
        baseline_file: Some(path.display().to_string()),
        notes,
        outcome,
        rows,
        unsupported,
        bootstrap: None,
        runs: results,
    })
}

fn measure_child(choice: &AdapterChoice) -> Result<u8> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| Error::Usage(format!("reading the plan from stdin: {e}")))?;
    let plan: Plan =
        serde_json::from_str(&input).map_err(|e| Error::Usage(format!("plan on stdin: {e}")))?;
    let gpu = Gpu::open(choice)?;
    let result = runner::run_in_process(&gpu, &plan)?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &result)
        .map_err(|e| Error::Usage(format!("writing the result: {e}")))?;
    Ok(exit::PASS)
}
