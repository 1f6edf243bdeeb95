//! Bad input never panics: broken baseline files → exit 2 naming file and field; a missing
//! baseline or adapter → exit 3 with advice.

use std::path::Path;

use crate::{gpugate, recorded_baseline, shared_lock};

/// Run `check` against `file` and return (exit code, stderr).
fn check_with(file: &Path) -> (Option<i32>, String) {
    let _lock = shared_lock();
    let out = gpugate()
        .args(["check", "--baselines"])
        .arg(file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "gpugate panicked:\n{stderr}");
    (out.status.code(), stderr)
}

/// A copy of the recorded baseline, edited as JSON.
fn edited(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> std::path::PathBuf {
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(recorded_baseline()).unwrap()).unwrap();
    edit(&mut doc);
    let path = dir.join("edited.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    path
}

#[test]
fn truncated_file_is_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(recorded_baseline()).unwrap();
    let path = dir.path().join("truncated.json");
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    let (code, err) = check_with(&path);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("truncated.json") && err.contains("not valid JSON"),
        "{err}"
    );
}

#[test]
fn wrong_schema_version_is_exit_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited(dir.path(), |d| d["schema_version"] = 99.into());
    let (code, err) = check_with(&path);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("edited.json") && err.contains("schema_version: is 99"),
        "{err}"
    );
}

#[test]
fn negative_or_missing_times_are_exit_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited(dir.path(), |d| {
        d["kernels"][1]["runs"][2]["samples_s"][3] = (-1.0).into()
    });
    let (code, err) = check_with(&path);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("kernels[1].runs[2].samples_s[3]: must be a positive"),
        "{err}"
    );

    let path = edited(dir.path(), |d| {
        d["kernels"][0]["median_s"] = serde_json::Value::Null
    });
    let (code, err) = check_with(&path);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("kernels[0].median_s"), "{err}");
}

#[test]
fn nan_in_a_file_is_exit_2() {
    // JSON has no NaN; a file that writes one is not JSON, and says where.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(recorded_baseline()).unwrap();
    let at = text.find("\"median_s\": ").unwrap() + "\"median_s\": ".len();
    let end = at + text[at..].find([',', '\n']).unwrap();
    let path = dir.path().join("nan.json");
    std::fs::write(&path, format!("{}NaN{}", &text[..at], &text[end..])).unwrap();
    let (code, err) = check_with(&path);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("nan.json") && err.contains("line"), "{err}");
}

#[test]
fn another_devices_file_is_exit_3_naming_both_devices() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited(dir.path(), |d| {
        d["fingerprint"]["name"] = "NVIDIA H100 80GB HBM3".into();
        d["fingerprint"]["device_type"] = "DiscreteGpu".into();
        d["fingerprint"]
            .as_object_mut()
            .unwrap()
            .remove("cpu_model");
        d["device_key"] = "NVIDIA-H100-80GB-HBM3-vulkan".into();
    });
    let (code, err) = check_with(&path);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("NVIDIA-H100-80GB-HBM3-vulkan") && err.contains("edited.json"),
        "{err}"
    );
    let this = crate::this_device_key();
    assert!(
        err.contains(&format!("{this:?}")),
        "names this device too: {err}"
    );
}

#[test]
fn inconsistent_device_key_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited(dir.path(), |d| d["device_key"] = "something-else".into());
    let (code, err) = check_with(&path);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("device_key"), "{err}");
}

#[test]
fn a_baseline_with_one_run_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = edited(dir.path(), |d| {
        let runs = d["kernels"][0]["runs"].as_array_mut().unwrap();
        runs.truncate(1);
    });
    let (code, err) = check_with(&path);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("kernels[0].runs: has 1 run"), "{err}");
}

#[test]
fn no_baseline_for_this_device_is_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Some-Other-GPU-vulkan.json"), "{}").unwrap();
    let (code, err) = check_with(dir.path());
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("no baseline for device") && err.contains("Some-Other-GPU-vulkan"),
        "{err}"
    );
    assert!(err.contains("gpugate record"), "advice is given: {err}");
}

#[test]
fn missing_baselines_path_is_exit_2() {
    let (code, err) = check_with(Path::new("/nonexistent/baselines"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/nonexistent/baselines"), "{err}");
}

#[test]
fn no_matching_adapter_is_exit_3_listing_what_is_present() {
    let _lock = crate::shared_lock();
    let out = gpugate()
        .args(["--adapter", "no-such-gpu", "run"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("no-such-gpu") && err.contains("present:"),
        "{err}"
    );
}

#[test]
fn no_vulkan_driver_is_exit_3_with_advice() {
    let _lock = crate::shared_lock();
    let out = gpugate()
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .args(["--backend", "vulkan", "check"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("apt-get install libvulkan1 mesa-vulkan-drivers"),
        "{err}"
    );
}

#[test]
fn usage_errors_are_exit_2() {
    let _lock = crate::shared_lock();
    // Each with the words of the check that refuses it: the flag's bounded value parser or
    // gpugate's options (`--threshold -3` would be refused by clap as an unknown flag, never
    // reaching either).
    for (args, says) in [
        (vec!["run", "--kernel", "no_such_kernel"], "no_such_kernel"),
        (
            vec!["check", "--threshold=-3"],
            "invalid value '-3' for '--threshold <PCT>': expected a positive percentage",
        ),
        (
            vec!["check", "--threshold=0"],
            "invalid value '0' for '--threshold <PCT>': expected a positive percentage",
        ),
        (
            vec!["check", "--threshold=NaN"],
            "expected a positive percentage",
        ),
        (
            vec!["check", "--kernel-threshold", "sgemm"],
            "--kernel-threshold",
        ),
        (vec!["record", "--runs", "1"], "--runs 1: at least 2 needed"),
        (vec!["check", "--runs", "2"], "--runs 2: at least 3 needed"),
        (
            vec!["check", "--record-missing", "--record-runs", "1"],
            "--record-runs 1: at least 2 needed",
        ),
        (
            vec!["--backend", "nonsense", "list"],
            "--backend \"nonsense\"",
        ),
        // serve never bootstraps: a node that baselines itself hides its own slowness.
        (
            vec!["serve", "--record-missing"],
            "unexpected argument '--record-missing'",
        ),
        (vec!["check", "--record-runs", "3"], "--record-missing"),
        (vec!["frobnicate"], "unrecognized subcommand"),
    ] {
        let out = gpugate().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?} should say {says:?}: {err}");
    }
}

#[test]
fn help_documents_the_exit_codes() {
    let _lock = crate::shared_lock();
    let out = gpugate().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "0  pass",
        "1  a regression",
        "2  usage",
        "3  cannot validate here",
    ] {
        assert!(text.contains(line), "--help lacks {line:?}");
    }
}

// ---- the committed corpus (tests/corpus) ------------------------------------------------------

fn corpus() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Run gpugate with `args`, killed past a minute (every corpus entry must fail long before):
/// (exit code, stderr), asserting that nothing panicked.
fn refused(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let mut child = crate::gpugate_command()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
        text
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            break child.wait().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let err = reader.join().unwrap();
    assert!(
        !err.contains("panicked at") && status.code() != Some(101),
        "{args:?} panicked:\n{err}"
    );
    (status.code(), err)
}

/// Each `(name, code, says, args)` through the binary, four at a time; every mismatch listed.
fn run_all(cases: Vec<(String, i32, String, Vec<std::ffi::OsString>)>) {
    let _lock = shared_lock();
    let failures: Vec<String> = std::thread::scope(|s| {
        let chunks: Vec<_> = cases.chunks(cases.len().div_ceil(4)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    let mut bad = vec![];
                    for (name, code, says, args) in chunk {
                        let args: Vec<_> = args.iter().map(|a| a.as_os_str()).collect();
                        let (got, err) = refused(&args);
                        if got != Some(*code) || !err.contains(says.as_str()) {
                            bad.push(format!(
                                "{name}: exit {got:?}, want {code} and {says:?}:\n{err}"
                            ));
                        }
                    }
                    bad
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every file of tests/corpus/baselines (the overflows, the capacity overflow, duplicate keys,
/// unknown and out-of-range parameters, implausible statistics…) gives the exit code its
/// manifest lists, names the field, and never panics (a debug build: overflow checks on).
#[test]
fn corpus_of_bad_baselines_is_refused_naming_the_field() {
    let dir = corpus().join("baselines");
    let manifest = std::fs::read_to_string(dir.join("manifest.tsv")).unwrap();
    let cases: Vec<_> = manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let [name, code, says]: [&str; 3] =
                line.splitn(3, '\t').collect::<Vec<_>>().try_into().unwrap();
            let file = dir.join(format!("{name}.json"));
            assert!(file.is_file(), "{name}: no {}", file.display());
            let args = vec!["check".into(), "--baselines".into(), file.into_os_string()];
            (
                name.to_string(),
                code.parse().unwrap(),
                says.to_string(),
                args,
            )
        })
        .collect();
    assert!(
        cases.len() >= 70,
        "the manifest lists {} cases",
        cases.len()
    );
    run_all(cases);
}

/// Every line of tests/corpus/args.txt is refused with its exit code, naming the flag.
#[test]
fn corpus_of_bad_arguments_is_refused_naming_the_flag() {
    let text = std::fs::read_to_string(corpus().join("args.txt")).unwrap();
    let cases: Vec<_> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let [code, says, args]: [&str; 3] =
                line.splitn(3, '\t').collect::<Vec<_>>().try_into().unwrap();
            let args = args.split(' ').map(Into::into).collect();
            (
                line.to_string(),
                code.parse().unwrap(),
                says.to_string(),
                args,
            )
        })
        .collect();
    assert!(cases.len() >= 30, "args.txt lists {} cases", cases.len());
    run_all(cases);
}

/// A file for this very device asking for a buffer within the static cap but past this
/// adapter's binding limit, or for more workgroups than it dispatches per dimension, is refused
/// once the device is known, before anything is allocated.
#[test]
fn sizes_past_this_devices_limits_are_refused_naming_the_field() {
    let _lock = shared_lock();
    let out = gpugate()
        .args(["--format", "json", "list"])
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let adapter = &list["adapters"][0];
    let base: serde_json::Value =
        serde_json::from_slice(&std::fs::read(corpus().join("baselines/base.json")).unwrap())
            .unwrap();
    // 16 GiB of f32: under the static cap, over any adapter's binding limit.
    let n = (u32::MAX - 3) as u64;
    // 64 MiB in one column: 2^24 rows make a workgroup row per tile, past lavapipe's 65 535 per
    // dimension (WebGPU's default; Vulkan GPUs report the same for y).
    let rows = 1u64 << 24;
    for (kernel, params, key, limit) in [
        (
            "copy",
            serde_json::json!({ "n": n }),
            format!("copy[n={n}]"),
            "storage binding limit",
        ),
        (
            "transpose",
            serde_json::json!({ "rows": rows, "cols": 1 }),
            format!("transpose[cols=1,rows={rows}]"),
            "workgroups, over this adapter's",
        ),
    ] {
        let mut doc = base.clone();
        doc["fingerprint"] = adapter["fingerprint"].clone();
        doc["device_key"] = adapter["device_key"].clone();
        doc["kernels"][0]["kernel"] = kernel.into();
        doc["kernels"][0]["params"] = params;
        doc["kernels"][0]["key"] = key.clone().into();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("too-big.json");
        std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
        let (code, err) = check_with(&path);
        assert_eq!(code, Some(2), "{err}");
        assert!(
            err.contains(&format!("too-big.json: kernels[0].params: {key}")) && err.contains(limit),
            "{err}"
        );
    }
}

// ---- property tests: arbitrary files at the loader, arbitrary values at the parser ------------

mod properties {
    use gpugate::cli::Command;
    use gpugate::error::exit;
    use proptest::prelude::*;
    use serde_json::Value;

    /// Values that stress what a field's reader assumes: wrong types, huge, tiny, negative.
    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            prop_oneof![
                Just(5e-324),
                Just(1e-12),
                Just(-0.0),
                Just(1e300),
                Just(f64::MAX),
                any::<f64>().prop_filter("JSON has no NaN or inf", |v| v.is_finite()),
            ]
            .prop_map(Value::from),
            Just(Value::from(1u64 << 62)),
            Just(Value::from(u32::MAX)),
            "[a-z0-9_\\[\\]=,]{0,12}".prop_map(Value::from),
            Just(Value::Array(vec![])),
            Just(serde_json::json!({"n": 4, "zzz": 7})),
        ]
    }

    /// How a document is spoiled, at the `pick`-th place a walk reaches.
    #[derive(Clone, Debug)]
    enum Spoil {
        Set(Value),
        Remove,
        AddKey(String, Value),
        /// Write the key's member twice, the first with another value (raw text).
        Duplicate(Value),
    }

    fn spoil() -> impl Strategy<Value = Spoil> {
        prop_oneof![
            4 => value().prop_map(Spoil::Set),
            1 => Just(Spoil::Remove),
            1 => ("[a-z]{1,5}", value()).prop_map(|(k, v)| Spoil::AddKey(k, v)),
            2 => value().prop_map(Spoil::Duplicate),
        ]
    }

    /// Every (object, key) of the document, in a fixed order, as JSON pointers.
    fn members(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let here = format!("{at}/{k}");
                    out.push(here.clone());
                    members(child, here, out);
                }
            }
            // Only the first few elements: samples are many and alike.
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate().take(3) {
                    let here = format!("{at}/{i}");
                    out.push(here.clone());
                    members(child, here, out);
                }
            }
            _ => {}
        }
    }

    fn spoiled(base: &Value, pick: usize, how: &Spoil) -> String {
        let mut doc = base.clone();
        let mut places = vec![];
        members(&doc, String::new(), &mut places);
        let place = &places[pick % places.len()];
        let (parent, last) = place.rsplit_once('/').unwrap();
        let parent = doc.pointer_mut(parent).unwrap();
        match how {
            Spoil::Set(v) => *doc.pointer_mut(place).unwrap() = v.clone(),
            Spoil::Remove => match parent {
                Value::Object(map) => drop(map.remove(last)),
                Value::Array(items) => drop(items.remove(last.parse().unwrap())),
                _ => unreachable!(),
            },
            Spoil::AddKey(k, v) => {
                if let Some(map) = doc.pointer_mut(place).unwrap().as_object_mut() {
                    map.insert(k.clone(), v.clone());
                }
            }
            Spoil::Duplicate(v) => {
                if parent.is_object() {
                    let text = serde_json::to_string(&doc).unwrap();
                    let member = format!("\"{last}\":");
                    if let Some(at) = text.find(&member) {
                        return format!("{}{member}{v},{}", &text[..at], &text[at..]);
                    }
                }
            }
        }
        serde_json::to_string(&doc).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        /// A spoiled baseline loads (and its noise model fits) or is refused as a baseline-file
        /// error naming a field: exit 2, never a panic.
        #[test]
        fn arbitrary_baselines_load_or_name_a_field(
            pick in any::<usize>(),
            how in spoil(),
            second in proptest::option::of((any::<usize>(), spoil())),
        ) {
            let base: Value = serde_json::from_slice(
                &std::fs::read(super::corpus().join("baselines/base.json")).unwrap(),
            )
            .unwrap();
            let mut text = spoiled(&base, pick, &how);
            if let (Some((pick, how)), Ok(doc)) = (&second, serde_json::from_str::<Value>(&text)) {
                text = spoiled(&doc, *pick, how);
            }
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("spoiled.json");
            std::fs::write(&path, &text).unwrap();
            match gpugate::baseline::load(&path) {
                Ok(b) => {
                    for k in &b.kernels {
                        let _ = k.model();
                    }
                }
                Err(e @ gpugate::Error::BaselineFile { .. }) => {
                    prop_assert_eq!(e.exit_code(), exit::USAGE);
                    let gpugate::Error::BaselineFile { field, .. } = &e else { unreachable!() };
                    prop_assert!(!field.is_empty(), "{}", e);
                }
                Err(e) => prop_assert!(false, "not a baseline-file error: {e}"),
            }
        }

        /// Any value of a numeric flag is refused by the parser or the options (exit 2, naming
        /// the flag), or is safe to compute with: a duration the sampler and scheduler can hold.
        #[test]
        fn arbitrary_flag_values_parse_to_safe_options_or_exit_2(
            flag in proptest::sample::select(vec![
                ("check", "--max-time"), ("run", "--max-time"), ("check", "--noise-target"),
                ("check", "--threshold"), ("check", "--alpha"), ("check", "--runs"),
                ("check", "--confirm-runs"), ("record", "--runs"), ("run", "--runs"),
                ("calibrate", "--checks"), ("serve", "--interval"), ("serve", "--jitter"),
                ("serve", "--retention"), ("check", "--kernel-threshold"),
                ("run", "--test-slowdown"), ("check", "--require-conclusive"),
            ]),
            number in prop_oneof![
                any::<f64>().prop_map(|v| v.to_string()),
                any::<u64>().prop_map(|v| v.to_string()),
                any::<i64>().prop_map(|v| v.to_string()),
                (0u64..100_000).prop_map(|v| v.to_string()),
                (0.0f64..200.0).prop_map(|v| v.to_string()),
                proptest::sample::select(vec!["NaN", "inf", "-inf", "1e300", "1e-300", "-0", "",
                    "5e-324", "1e400", "18446744073709551616"]).prop_map(String::from),
            ],
            unit in proptest::sample::select(vec!["", "s", "ms", "m", "h", "d", "y", "ns"]),
        ) {
            let (command, name) = flag;
            let value = match name {
                "--interval" => format!("{number}{unit}"),
                "--kernel-threshold" | "--test-slowdown" => format!("copy={number}"),
                _ => number,
            };
            let args = ["gpugate", command, &format!("{name}={value}")];
            let cli = match crate::parse_cli(args) {
                Err(e) => {
                    prop_assert_eq!(e.exit_code(), 2);
                    prop_assert!(e.to_string().contains(name), "{e}");
                    return Ok(());
                }
                Ok(cli) => cli,
            };
            let (measure, interval) = match &cli.command {
                Command::Check(a) => (a.check.options().map(|o| o.measure), None),
                Command::Calibrate(a) => (a.check.options().map(|o| o.measure), None),
                Command::Run(a) => (a.measure.options(), None),
                Command::Record(a) => (a.measure.options(), None),
                Command::Serve(a) => (a.check.options().map(|o| o.measure), Some((a.interval, a.jitter))),
                _ => unreachable!("only measuring commands are generated"),
            };
            match measure {
                Err(e) => {
                    prop_assert_eq!(e.exit_code(), exit::USAGE);
                    prop_assert!(e.to_string().contains(name), "{e}");
                }
                Ok(m) => {
                    let mut sampler = gpugate::sampler::SamplerConfig::for_device(true);
                    if let Some(s) = m.max_time_s {
                        sampler.max_time_s = s;
                    }
                    prop_assert!(std::time::Duration::try_from_secs_f64(sampler.max_time_s).is_ok());
                }
            }
            if let Some((interval, jitter)) = interval {
                let wait = gpugate::serve::next_wait(interval, jitter / 100.0);
                prop_assert!(std::time::Instant::now().checked_add(wait * 2).is_some());
            }
        }
    }
}

/// `--gpu` names one GPU by PCI bus id or NVML UUID; one that is not there is exit 3 naming it
/// and what is there, a UUID without NVML exit 2 saying why.
#[test]
fn a_gpu_that_is_not_there_is_named() {
    let out = crate::gpugate()
        .args(["run", "--kernel", "copy", "--gpu", "0000:ee:1f.7"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("--gpu 0000:ee:1f.7"), "{stderr}");
    assert!(stderr.contains("present:"), "{stderr}");
    let out = crate::gpugate()
        .args([
            "run",
            "--kernel",
            "copy",
            "--gpu",
            "GPU-00000000-1111-2222-3333-444444444444",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // This machine has no NVIDIA driver: the UUID cannot be looked up.
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("NVML"), "{stderr}");
}

/// serve's history must keep the change-point window, by count and by age.
#[test]
fn a_retention_shorter_than_the_change_window_is_refused() {
    for (args, flag) in [
        (&["--retention", "20"][..], "--retention 20"),
        (
            &["--retention-age", "2d", "--interval", "1h"][..],
            "--retention-age 2days",
        ),
        (&["--changes-window", "3"][..], "--changes-window"),
    ] {
        let out = crate::gpugate()
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}
