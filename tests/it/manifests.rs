//! The Kubernetes manifests in `k8s/`: core kinds pass `kubernetes-validate --strict`; the CRDs
//! (ServiceMonitor, PrometheusRule, AnalysisTemplate), which it has no schemas for, get a
//! documented check of the fields that matter, and PrometheusRule's groups pass
//! `promtool check rules` (GpugateNoBaseline also a `promtool test rules` unit test). Ports, args,
//! probe paths and the AnalysisTemplate's verdicts are ones the binary really accepts or gives.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use clap::Parser;
use gpugate::device::Fingerprint;
use gpugate::serve::api::app;
use gpugate::serve::history::{History, RunResult};
use gpugate::serve::metrics::Metrics;
use gpugate::serve::{BaselineState, Node, Readiness, State};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

fn k8s() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s")
}

fn load(name: &str) -> Yaml {
    let text = std::fs::read_to_string(k8s().join(name)).unwrap();
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("k8s/{name}: {e}"));
    assert_eq!(docs.len(), 1, "k8s/{name}: one document per file");
    docs.remove(0)
}

fn s(y: &Yaml) -> &str {
    y.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {y:?}"))
}

#[test]
fn core_manifests_pass_kubernetes_validate_strict() {
    // A spawned tool loads the CPU: not while a timing test measures.
    let _lock = crate::shared_lock();
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/kubernetes-validate");
    assert!(
        tool.exists(),
        "{} is missing: run scripts/test (scripts/ensure-test-tools installs it)",
        tool.display()
    );
    let core = ["daemonset.yaml", "service.yaml", "job-ci.yaml"];
    let out = std::process::Command::new(&tool)
        .arg("--strict")
        .args(core.map(|f| k8s().join(f)))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for f in core {
        assert!(
            text.lines().any(|l| l.contains(f) && l.contains("passed")),
            "{f} was not validated against a schema:\n{text}"
        );
    }
}

#[test]
fn kustomization_lists_every_manifest_but_the_ci_job() {
    let k = load("kustomization.yaml");
    let mut listed: Vec<&str> = k["resources"].as_vec().unwrap().iter().map(s).collect();
    listed.sort();
    let mut files: Vec<String> = std::fs::read_dir(k8s())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml" && f != "job-ci.yaml")
        .collect();
    files.sort();
    assert_eq!(listed, files);
}

#[test]
fn daemonset_has_the_gpu_node_shape() {
    let ds = load("daemonset.yaml");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(s(&pod["nodeSelector"]["nvidia.com/gpu.present"]), "true");
    assert!(pod["tolerations"]
        .as_vec()
        .unwrap()
        .iter()
        .any(|t| s(&t["key"]) == "nvidia.com/gpu"));
    assert_eq!(s(&pod["runtimeClassName"]), "nvidia");
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let c = &pod["containers"][0];
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    assert_eq!(
        c["securityContext"]["allowPrivilegeEscalation"].as_bool(),
        Some(false)
    );
    assert_eq!(s(&c["securityContext"]["capabilities"]["drop"][0]), "ALL");
    let env = |name: &str| {
        c["env"]
            .as_vec()
            .unwrap()
            .iter()
            .find(|e| s(&e["name"]) == name)
            .unwrap_or_else(|| panic!("env {name} missing"))
            .clone()
    };
    assert!(s(&env("NVIDIA_DRIVER_CAPABILITIES")["value"]).contains("graphics"));
    assert_eq!(
        s(&env("NODE_NAME")["valueFrom"]["fieldRef"]["fieldPath"]),
        "spec.nodeName"
    );
    // The documented choice: no nvidia.com/gpu request (see the comment in the manifest).
    assert!(c["resources"]["limits"]["nvidia.com/gpu"].is_badvalue());
}

/// A container's `args`, parsed by gpugate's own command line.
fn parse_args(container: &Yaml) -> gpugate::cli::Cli {
    let args: Vec<&str> = container["args"].as_vec().unwrap().iter().map(s).collect();
    gpugate::cli::Cli::try_parse_from(std::iter::once("gpugate").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{} args {args:?}: {e}", s(&container["name"])))
}

#[tokio::test]
async fn daemonset_and_job_args_ports_and_probes_are_what_the_binary_accepts() {
    let ds = load("daemonset.yaml");
    let c = &ds["spec"]["template"]["spec"]["containers"][0];
    let gpugate::cli::Command::Serve(serve) = parse_args(c).command else {
        panic!("the DaemonSet must run `serve`")
    };
    let port = c["ports"][0]["containerPort"].as_i64().unwrap();
    assert_eq!(
        i64::from(serve.listen.port()),
        port,
        "--listen port = containerPort"
    );
    assert_eq!(s(&c["ports"][0]["name"]), "http");

    // The probes hit routes the app serves (not its 404 fallback), on the named port.
    let (tx, _rx) = mpsc::channel();
    let state = Arc::new(State::new(
        History::open(None, 1).unwrap(),
        Metrics::new("n"),
        None,
        tx,
    ));
    for probe in ["livenessProbe", "readinessProbe"] {
        let path = s(&c[probe]["httpGet"]["path"]);
        assert_eq!(s(&c[probe]["httpGet"]["port"]), "http");
        let response = app(state.clone())
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_ne!(response.status(), StatusCode::NOT_FOUND, "{probe} {path}");
    }

    let job = load("job-ci.yaml");
    let jc = &job["spec"]["template"]["spec"]["containers"][0];
    assert!(matches!(
        parse_args(jc).command,
        gpugate::cli::Command::Check(_)
    ));
    // podFailurePolicy fails the Job on the regression exit code, from the named container.
    let rule = &job["spec"]["podFailurePolicy"]["rules"][0];
    assert_eq!(s(&rule["action"]), "FailJob");
    assert_eq!(s(&rule["onExitCodes"]["containerName"]), s(&jc["name"]));
    let codes: Vec<i64> = rule["onExitCodes"]["values"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert!(
        codes.contains(&i64::from(gpugate::error::exit::FAIL)),
        "{codes:?}"
    );
}

/// ServiceMonitor and Service agree: selector, port name, metrics path.
#[test]
fn service_monitor_scrapes_the_service_metrics_port() {
    let (svc, sm) = (load("service.yaml"), load("servicemonitor.yaml"));
    assert_eq!(s(&sm["apiVersion"]), "monitoring.coreos.com/v1");
    assert_eq!(s(&sm["kind"]), "ServiceMonitor");
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"],
        "the ServiceMonitor selects the Service by its labels"
    );
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(s(&endpoint["port"]), s(&svc["spec"]["ports"][0]["name"]));
    assert_eq!(s(&endpoint["path"]), "/metrics");
}

/// A serve state whose probe found an H100 without a baseline.
fn state_without_baseline() -> Arc<State> {
    let (tx, _rx) = mpsc::channel();
    let state = Arc::new(State::new(
        History::open(None, 1).unwrap(),
        Metrics::new("n"),
        None,
        tx,
    ));
    let fingerprint = Fingerprint {
        name: "NVIDIA H100 80GB HBM3".into(),
        vendor_id: 0x10de,
        device_id: 0x2330,
        device_type: "DiscreteGpu".into(),
        driver: "NVIDIA".into(),
        driver_info: "550.54.15".into(),
        backend: "vulkan".into(),
        cpu_model: None,
    };
    state.set_readiness(Readiness::Ready(Node {
        device_key: fingerprint.device_key(),
        fingerprint,
        baseline: BaselineState::Missing("no baseline for device".into()),
    }));
    state
}

/// GET `path` from the app over `state`: the body.
async fn body(state: &Arc<State>, path: &str) -> String {
    let response = app(state.clone())
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// PrometheusRule: the groups are a valid rule file for promtool, the alerts exist and query
/// metrics gpugate exports, and GpugateNoBaseline fires (after its 15 minutes) on a node whose
/// baseline is missing, naming the device, and on no other.
#[tokio::test]
async fn prometheus_rule_groups_pass_promtool_check_rules() {
    let rule = load("prometheusrule.yaml");
    assert_eq!(s(&rule["kind"]), "PrometheusRule");
    let rules = rule["spec"]["groups"][0]["rules"].as_vec().unwrap();
    let alerts: Vec<&str> = rules.iter().map(|r| s(&r["alert"])).collect();
    assert_eq!(
        alerts,
        [
            "GpugateRegressionDetected",
            "GpugateValidationStale",
            "GpugateRunsFailing",
            "GpugateNoBaseline",
        ]
    );
    // Every metric an alert queries is one gpugate exports once the device is known (kernel series
    // need a measured run: tests/it/serve.rs checks those).
    let exposition = body(&state_without_baseline(), "/metrics").await;
    for (r, metrics) in rules.iter().zip([
        &["gpugate_kernel_verdict"][..],
        &["gpugate_last_success_timestamp_seconds"],
        &["gpugate_runs_total"],
        &["gpugate_baseline_present", "gpugate_device_info"],
    ]) {
        for metric in metrics {
            assert!(s(&r["expr"]).contains(metric), "{:?}", r["expr"]);
            assert!(
                metric.starts_with("gpugate_kernel_")
                    || exposition.contains(&format!("# TYPE {metric} ")),
                "{metric} is not exported:\n{exposition}"
            );
        }
    }
    let no_baseline = &rules[3];
    assert_eq!(s(&no_baseline["for"]), "15m");
    assert!(s(&no_baseline["expr"]).contains("gpugate_baseline_present == 0"));
    let summary = s(&no_baseline["annotations"]["summary"]);
    let description = s(&no_baseline["annotations"]["description"]);
    assert!(summary.contains("No gpugate baseline"), "{summary}");
    assert!(description.contains("gpugate record"), "{description}");

    let dir = tempfile::tempdir().unwrap();
    let mut file = String::new();
    YamlEmitter::new(&mut file).dump(&rule["spec"]).unwrap();
    std::fs::write(dir.path().join("rules.yaml"), file).unwrap();

    // A unit test for promtool (JSON is YAML): node `missing` has no baseline, node `has` has.
    let device = |hostname: &str, instance: &str| {
        format!(
            "gpugate_device_info{{hostname=\"{hostname}\",instance=\"{instance}\",adapter=\"NVIDIA H100 80GB HBM3\",driver=\"NVIDIA 550.54.15\",backend=\"vulkan\",device_key=\"NVIDIA-H100-80GB-HBM3-vulkan\"}}"
        )
    };
    let labels = [
        ("severity", "warning"),
        ("hostname", "missing"),
        ("instance", "10.0.0.1:9400"),
        ("adapter", "NVIDIA H100 80GB HBM3"),
        ("device_key", "NVIDIA-H100-80GB-HBM3-vulkan"),
    ];
    let expand = |template: &str| {
        let text = labels.iter().fold(template.to_string(), |t, (k, v)| {
            t.replace(&format!("{{{{ $labels.{k} }}}}"), v)
        });
        assert!(
            !text.contains("{{"),
            "a template the test does not know: {text}"
        );
        text
    };
    let unit_test = json!({
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": "gpugate_baseline_present{hostname=\"missing\",instance=\"10.0.0.1:9400\"}", "values": "0x30"},
                {"series": device("missing", "10.0.0.1:9400"), "values": "1x30"},
                {"series": "gpugate_baseline_present{hostname=\"has\",instance=\"10.0.0.2:9400\"}", "values": "1x30"},
                {"series": device("has", "10.0.0.2:9400"), "values": "1x30"},
            ],
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "GpugateNoBaseline", "exp_alerts": []},
                {"eval_time": "20m", "alertname": "GpugateNoBaseline", "exp_alerts": [{
                    "exp_labels": labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                    "exp_annotations": {"summary": expand(summary), "description": expand(description)},
                }]},
            ],
        }],
    });
    std::fs::write(dir.path().join("test.yaml"), unit_test.to_string()).unwrap();

    // A spawned tool loads the CPU: not while a timing test measures.
    let _lock = crate::shared_lock();
    for args in [
        ["check", "rules", "rules.yaml"],
        ["test", "rules", "test.yaml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("promtool is missing: run scripts/test (it installs Debian's prometheus)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// AnalysisTemplate: the web provider asks the always-200 verdict endpoint and judges its body.
/// Only `ok == true` succeeds; a node without a baseline is a failure, never a pass.
#[tokio::test]
async fn analysis_template_reads_the_verdict_body() {
    let t = load("analysistemplate.yaml");
    assert_eq!(s(&t["apiVersion"]), "argoproj.io/v1alpha1");
    assert_eq!(s(&t["kind"]), "AnalysisTemplate");
    let metric = &t["spec"]["metrics"][0];
    let url = s(&metric["provider"]["web"]["url"]);
    assert!(url.ends_with(":9400/api/v1/verdict"), "{url}");
    assert_eq!(s(&metric["successCondition"]), "result.ok == true");
    let arg = s(&t["spec"]["args"][0]["name"]);
    assert!(
        url.contains(&format!("{{{{args.{arg}}}}}")),
        "{url} uses the declared arg"
    );
    // failureCondition: `result.verdict == "…"` terms joined by `||`, each a verdict gpugate gives.
    let failing: Vec<&str> = s(&metric["failureCondition"])
        .split("||")
        .map(|term| {
            term.trim()
                .strip_prefix("result.verdict == \"")
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or_else(|| panic!("unexpected failureCondition term {term:?}"))
        })
        .collect();
    let results = RunResult::ALL.map(RunResult::as_str);
    assert!(
        failing.iter().all(|v| results.contains(v)),
        "{failing:?} are not all verdicts gpugate gives ({results:?})"
    );
    for must in ["regression", "wrong_result", "no_baseline"] {
        assert!(failing.contains(&must), "{must} must fail the analysis");
    }
    // What the endpoint serves for a node without a baseline, before any run: a failure.
    let verdict: Value =
        serde_json::from_str(&body(&state_without_baseline(), "/api/v1/verdict").await).unwrap();
    assert_eq!(verdict["ok"], false, "{verdict}");
    assert!(
        failing.contains(&verdict["verdict"].as_str().unwrap()),
        "{verdict}"
    );
}

/// The image cannot be built here (no container runtime, no registry), so its claims are checked
/// as text: two stages, the Vulkan loader, a non-root user matching the pods' runAsUser, the port
/// the DaemonSet uses, and COPY sources that exist.
#[test]
fn dockerfile_is_multi_stage_non_root_with_the_vulkan_loader() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let stages = lines.iter().filter(|l| l.starts_with("FROM ")).count();
    assert_eq!(stages, 2, "build stage + runtime stage");
    let runtime = &text[text.rfind("\nFROM ").unwrap()..];
    assert!(
        runtime.contains("libvulkan1"),
        "the runtime stage installs the Vulkan loader"
    );
    assert!(
        !runtime.contains("mesa-vulkan-drivers"),
        "no lavapipe in the image"
    );
    let user = lines
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    let uid: i64 = user.split(':').next().unwrap().trim().parse().unwrap();
    assert_ne!(uid, 0);
    let pod = &load("daemonset.yaml")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"].as_i64(), Some(uid));
    let expose: i64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        Some(expose),
        pod["containers"][0]["ports"][0]["containerPort"].as_i64()
    );
    for l in lines
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from="))
    {
        let parts: Vec<&str> = l.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(root.join(src).exists(), "COPY source {src} does not exist");
        }
    }
    assert!(
        text.contains("--locked"),
        "the image builds from Cargo.lock"
    );
}
