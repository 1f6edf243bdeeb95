//! The Kubernetes manifests in `k8s/` and the Dockerfile: core kinds pass
//! `kubernetes-validate --strict`; the CRDs (ServiceMonitor, PrometheusRule, AnalysisTemplate,
//! MetricTemplate), which it has no schemas for, get a documented check of the fields that matter;
//! the Flagger query passes a promtool unit test (the PrometheusRule: `alerts`); the
//! kustomization builds with `kubectl kustomize`; checkov (k8s/ and the Dockerfile) and hadolint
//! find nothing that is not skipped in the file with its reason. Ports, args, probe paths, volumes
//! and the AnalysisTemplate's fields and verdicts are ones the binary really accepts or gives.

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use gpugate::device::Fingerprint;
use gpugate::serve::api::app;
use gpugate::serve::history::{History, Retention, RunResult};
use gpugate::serve::metrics::Metrics;
use gpugate::serve::{BaselineState, Node, Readiness, State};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use yaml_rust2::{Yaml, YamlLoader};

fn k8s() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s")
}

pub(crate) fn load(name: &str) -> Yaml {
    let text = std::fs::read_to_string(k8s().join(name)).unwrap();
    let mut docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("k8s/{name}: {e}"));
    assert_eq!(docs.len(), 1, "k8s/{name}: one document per file");
    docs.remove(0)
}

pub(crate) fn s(y: &Yaml) -> &str {
    y.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {y:?}"))
}

/// Every manifest in k8s/ (kustomization.yaml aside), by file name.
fn manifests() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(k8s())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    files.sort();
    files
}

/// Kinds of the Prometheus Operator, Argo Rollouts and Flagger: no schema in kubernetes-validate.
fn is_crd(doc: &Yaml) -> bool {
    let api = s(&doc["apiVersion"]);
    ["monitoring.coreos.com/", "argoproj.io/", "flagger.app/"]
        .iter()
        .any(|group| api.starts_with(group))
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
    let core: Vec<String> = manifests()
        .into_iter()
        .filter(|f| !is_crd(&load(f)))
        .collect();
    for must in [
        "daemonset.yaml",
        "job-ci.yaml",
        "job-record-baseline.yaml",
        "networkpolicy.yaml",
    ] {
        assert!(core.iter().any(|f| f == must), "{must} in {core:?}");
    }
    let out = std::process::Command::new(&tool)
        .arg("--strict")
        .args(core.iter().map(|f| k8s().join(f)))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    for f in &core {
        assert!(
            text.lines()
                .any(|l| l.contains(f.as_str()) && l.contains("passed")),
            "{f} was not validated against a schema:\n{text}"
        );
    }
}

/// The kustomization lists every manifest except the Jobs (run by a pipeline or by hand) and the
/// progressive-delivery examples (their CRDs may be absent), lists only files that exist, and its
/// `images:` override names the image every manifest uses.
#[test]
fn kustomization_lists_the_deployment_and_overrides_its_image() {
    let k = load("kustomization.yaml");
    assert_eq!(s(&k["namespace"]), "gpugate");
    let mut listed: Vec<&str> = k["resources"].as_vec().unwrap().iter().map(s).collect();
    listed.sort();
    let not_applied = [
        "analysistemplate.yaml",
        "flagger-metrictemplate.yaml",
        "job-ci.yaml",
        "job-record-baseline.yaml",
    ];
    let expected: Vec<String> = manifests()
        .into_iter()
        .filter(|f| !not_applied.contains(&f.as_str()))
        .collect();
    assert_eq!(listed, expected);

    let overridden: Vec<&str> = k["images"]
        .as_vec()
        .expect("an images: override")
        .iter()
        .map(|i| s(&i["name"]))
        .collect();
    let mut used = vec![];
    for f in manifests() {
        let doc = load(&f);
        // The AnalysisTemplate goes into the Rollout's namespace; the Namespace has none.
        if !["AnalysisTemplate", "Namespace"].contains(&s(&doc["kind"])) {
            assert_eq!(
                s(&doc["metadata"]["namespace"]),
                "gpugate",
                "{f}: not the default namespace"
            );
        }
        let pod = match s(&doc["kind"]) {
            "DaemonSet" | "Job" => &doc["spec"]["template"]["spec"],
            _ => continue,
        };
        for list in ["initContainers", "containers"] {
            for c in pod[list].as_vec().into_iter().flatten() {
                let image = s(&c["image"]);
                let name = image.rsplit_once(':').map_or(image, |(n, _)| n);
                assert!(overridden.contains(&name), "{f}: {image} is not overridden");
                assert_eq!(s(&c["imagePullPolicy"]), "Always", "{f}: {image}");
                assert!(
                    !c["resources"]["limits"]["cpu"].is_badvalue(),
                    "{f}: no CPU limit"
                );
                used.push(name.to_string());
            }
        }
    }
    for name in overridden {
        assert!(
            used.iter().any(|u| u == name),
            "{name} overridden but unused"
        );
    }
}

/// `kubectl kustomize k8s/` builds what `kubectl apply -k k8s/` would apply: every listed kind,
/// in namespace gpugate, with the override's image.
#[test]
fn kustomization_builds_with_kubectl() {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/kubectl");
    let kubectl = if local.exists() {
        local
    } else {
        PathBuf::from("kubectl")
    };
    let _lock = crate::shared_lock();
    let out = std::process::Command::new(&kubectl)
        .args(["kustomize", "k8s"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| {
            panic!("kubectl: {e}: run scripts/test (scripts/ensure-test-tools installs it)")
        });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = YamlLoader::load_from_str(&text).unwrap();
    let kinds: Vec<&str> = docs.iter().map(|d| s(&d["kind"])).collect();
    for kind in [
        "Namespace",
        "PersistentVolumeClaim",
        "DaemonSet",
        "Service",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
        "ConfigMap",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let k = load("kustomization.yaml");
    let image = &k["images"][0];
    let want = format!(
        "{}:{}",
        s(&image["newName"]),
        image["newTag"].as_str().unwrap_or("")
    );
    for d in docs.iter().filter(|d| s(&d["kind"]) != "Namespace") {
        assert_eq!(s(&d["metadata"]["namespace"]), "gpugate", "{:?}", d["kind"]);
    }
    let ds = docs.iter().find(|d| s(&d["kind"]) == "DaemonSet").unwrap();
    for list in ["initContainers", "containers"] {
        for c in ds["spec"]["template"]["spec"][list].as_vec().unwrap() {
            assert_eq!(s(&c["image"]), want);
        }
    }
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
    crate::parse_cli(std::iter::once("gpugate").chain(args.iter().copied()))
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
        History::open(None, Retention::runs(1)).unwrap(),
        Metrics::new("n", std::time::Duration::from_secs(3600)),
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
}

/// The CI Job's podFailurePolicy follows the exit codes: 1, 2 and 3 fail the Job at once (a
/// regression, a configuration error and "nothing validated" come out the same on a retry); 4, a
/// fault, is retried within backoffLimit; a disruption (eviction, preemption) is not counted.
#[test]
fn ci_job_fails_on_1_2_3_and_retries_faults() {
    use gpugate::error::exit;
    let job = load("job-ci.yaml");
    let container = s(&job["spec"]["template"]["spec"]["containers"][0]["name"]);
    assert_eq!(
        s(&job["spec"]["template"]["spec"]["restartPolicy"]),
        "Never"
    );
    assert!(
        job["spec"]["backoffLimit"].as_i64().unwrap() >= 1,
        "faults get a retry"
    );
    let rules = job["spec"]["podFailurePolicy"]["rules"].as_vec().unwrap();
    let on_codes = |action: &str| -> Vec<u8> {
        rules
            .iter()
            .filter(|r| s(&r["action"]) == action && !r["onExitCodes"].is_badvalue())
            .flat_map(|r| {
                assert_eq!(s(&r["onExitCodes"]["containerName"]), container);
                assert_eq!(s(&r["onExitCodes"]["operator"]), "In");
                r["onExitCodes"]["values"].as_vec().unwrap().clone()
            })
            .map(|v| u8::try_from(v.as_i64().unwrap()).unwrap())
            .collect()
    };
    assert_eq!(
        on_codes("FailJob"),
        [exit::FAIL, exit::USAGE, exit::CANNOT_VALIDATE]
    );
    // Count (not Ignore): a GPU that faults every time must not retry for ever.
    assert_eq!(on_codes("Count"), [exit::FAULT]);
    assert!(on_codes("Ignore").is_empty());
    assert!(rules.iter().any(|r| s(&r["action"]) == "Ignore"
        && s(&r["onPodConditions"][0]["type"]) == "DisruptionTarget"));
}

/// A volume of `pod` by name.
fn volume<'a>(pod: &'a Yaml, name: &str) -> &'a Yaml {
    pod["volumes"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|v| s(&v["name"]) == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

/// Where `container` mounts the volume `name`.
fn mount_path<'a>(container: &'a Yaml, name: &str) -> &'a str {
    container["volumeMounts"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|m| s(&m["name"]) == name)
        .map(|m| s(&m["mountPath"]))
        .unwrap_or_else(|| panic!("{} does not mount {name}", s(&container["name"])))
}

/// The DaemonSet as shipped works on a node where nothing was prepared: the hostPath history is
/// handed to the pod's user by an init container (fsGroup does not apply to hostPath); the
/// token Secret is optional and the file serve reads lies in its mount; baselines come from the
/// PVC that the recording Job writes, with the same args as `record` takes.
#[test]
fn daemonset_volumes_work_on_an_unprepared_node() {
    let ds = load("daemonset.yaml");
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let gpugate::cli::Command::Serve(serve) = parse_args(c).command else {
        panic!("the DaemonSet must run `serve`")
    };
    let (uid, gid) = (
        pod["securityContext"]["runAsUser"].as_i64().unwrap(),
        pod["securityContext"]["runAsGroup"].as_i64().unwrap(),
    );

    // History: a hostPath, chowned to the pod's user before serve starts.
    let history = serve.history.expect("--history");
    assert_eq!(Path::new(mount_path(c, "history")), history);
    assert!(!volume(pod, "history")["hostPath"].is_badvalue());
    let init = &pod["initContainers"][0];
    assert_eq!(mount_path(init, "history"), mount_path(c, "history"));
    let command: Vec<&str> = init["command"].as_vec().unwrap().iter().map(s).collect();
    assert_eq!(
        command,
        ["chown", &format!("{uid}:{gid}"), mount_path(c, "history")]
    );
    assert_eq!(init["securityContext"]["runAsUser"].as_i64(), Some(0));
    assert_eq!(
        s(&init["securityContext"]["capabilities"]["drop"][0]),
        "ALL"
    );
    let added: Vec<&str> = init["securityContext"]["capabilities"]["add"]
        .as_vec()
        .unwrap()
        .iter()
        .map(s)
        .collect();
    assert_eq!(added, ["CHOWN"]);

    // Token: an optional Secret; the file is inside its mount.
    let token = serve.token_file.expect("--token-file");
    assert!(token.starts_with(mount_path(c, "token")));
    assert_eq!(
        volume(pod, "token")["secret"]["optional"].as_bool(),
        Some(true)
    );

    // Baselines: the PVC, read-only here, written by the recording Job.
    assert_eq!(Path::new(mount_path(c, "baselines")), serve.check.baselines);
    let claim = s(&volume(pod, "baselines")["persistentVolumeClaim"]["claimName"]);
    assert_eq!(s(&load("baselines-pvc.yaml")["metadata"]["name"]), claim);
    assert!(load("baselines-pvc.yaml")["spec"]["accessModes"]
        .as_vec()
        .unwrap()
        .iter()
        .any(|m| s(m) == "ReadWriteMany"));

    let job = load("job-record-baseline.yaml");
    let jpod = &job["spec"]["template"]["spec"];
    let jc = &jpod["containers"][0];
    let gpugate::cli::Command::Record(record) = parse_args(jc).command else {
        panic!("the recording Job must run `record`")
    };
    assert_eq!(Path::new(mount_path(jc, "baselines")), record.baselines);
    assert!(
        record.out.is_none(),
        "written as <device-key>.json, as serve looks it up"
    );
    assert_eq!(
        s(&volume(jpod, "baselines")["persistentVolumeClaim"]["claimName"]),
        claim
    );
    // fsGroup makes the claim writable to the Job's user.
    assert_eq!(jpod["securityContext"]["fsGroup"].as_i64(), Some(gid));
    // On the GPU model it records for (GPU Feature Discovery's label), owning one GPU.
    assert!(!jpod["nodeSelector"]["nvidia.com/gpu.product"].is_badvalue());
    assert_eq!(
        jc["resources"]["limits"]["nvidia.com/gpu"].as_i64(),
        Some(1)
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
    // GpugateDown names the node: `up` carries it only as a target label.
    let relabel = &endpoint["relabelings"][0];
    assert_eq!(
        s(&relabel["sourceLabels"][0]),
        "__meta_kubernetes_pod_node_name"
    );
    assert_eq!(s(&relabel["targetLabel"]), "node");
}

/// A serve state whose probe found an H100 without a baseline.
fn state_without_baseline() -> Arc<State> {
    let (tx, _rx) = mpsc::channel();
    let state = Arc::new(State::new(
        History::open(None, Retention::runs(1)).unwrap(),
        Metrics::new("n", std::time::Duration::from_secs(3600)),
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
    state.set_readiness(Readiness::Ready(vec![Node {
        gpu: Default::default(),
        device_key: fingerprint.device_key(),
        fingerprint,
        baseline: BaselineState::Missing("no baseline for device".into()),
    }]));
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

/// Whether an Argo Rollouts condition holds for `result`, for the subset of its expression
/// language the template uses: `||` of `&&` of `result.FIELD OP VALUE`, with OP one of `==`,
/// `!=`, `<=`, `<`, `>=`, `>`, `in`, and VALUE a JSON literal, `nil` or a list of strings. A field
/// the verdict lacks, or an ordering test on a non-number (an error in Argo: the measurement would
/// be Error), panics.
fn holds(condition: &str, result: &Value) -> bool {
    condition.split("||").any(|conjunction| {
        conjunction.split("&&").all(|atom| {
            let atom = atom.trim();
            let (lhs, rest) = atom.split_once(' ').unwrap();
            let (op, rhs) = rest.trim().split_once(' ').unwrap();
            let field = lhs
                .strip_prefix("result.")
                .unwrap_or_else(|| panic!("{atom:?}: not a field of the result"));
            let value = result
                .get(field)
                .unwrap_or_else(|| panic!("{atom:?}: the verdict has no field {field}: {result}"));
            let literal = |text: &str| -> Value {
                if text == "nil" {
                    Value::Null
                } else {
                    serde_json::from_str(text).unwrap_or_else(|e| panic!("{atom:?}: {e}"))
                }
            };
            let number = |v: &Value| {
                v.as_f64()
                    .unwrap_or_else(|| panic!("{atom:?} on {v}: an Error measurement in Argo"))
            };
            let rhs = rhs.trim();
            match op {
                "==" => *value == literal(rhs),
                "!=" => *value != literal(rhs),
                "in" => literal(rhs).as_array().unwrap().contains(value),
                "<=" => number(value) <= number(&literal(rhs)),
                "<" => number(value) < number(&literal(rhs)),
                ">=" => number(value) >= number(&literal(rhs)),
                ">" => number(value) > number(&literal(rhs)),
                _ => panic!("{atom:?}: operator {op} not understood"),
            }
        })
    })
}

/// A web metric's phase for one measurement, as Argo Rollouts decides it when both conditions
/// are set: failure first, then success, else inconclusive.
fn phase(metric: &Yaml, result: &Value) -> &'static str {
    if holds(s(&metric["failureCondition"]), result) {
        "Failed"
    } else if holds(s(&metric["successCondition"]), result) {
        "Successful"
    } else {
        "Inconclusive"
    }
}

/// AnalysisTemplate: the web provider asks the always-200 verdict endpoint and judges its body
/// with conditions on fields the verdict really has. Every verdict gpugate gives has a set
/// meaning (the table in the template's comment), a pass counts only while fresh, and limits of 0
/// make the first Failed or Inconclusive measurement decide the analysis.
#[tokio::test]
async fn analysis_template_gives_every_verdict_a_meaning() {
    let t = load("analysistemplate.yaml");
    assert_eq!(s(&t["apiVersion"]), "argoproj.io/v1alpha1");
    assert_eq!(s(&t["kind"]), "AnalysisTemplate");
    let metric = &t["spec"]["metrics"][0];
    let url = s(&metric["provider"]["web"]["url"]);
    assert!(url.ends_with(":9478/api/v1/verdict"), "{url}");
    assert_eq!(s(&metric["provider"]["web"]["jsonPath"]), "{$}");
    let arg = s(&t["spec"]["args"][0]["name"]);
    assert!(
        url.contains(&format!("{{{{args.{arg}}}}}")),
        "{url} uses the declared arg"
    );
    for limit in ["failureLimit", "inconclusiveLimit"] {
        assert_eq!(metric[limit].as_i64(), Some(0), "{limit}");
    }
    assert!(metric["consecutiveErrorLimit"].as_i64().is_some());

    // The verdict the endpoint serves (before any run, on a node without a baseline): every field
    // a condition names is one of its fields.
    let served: Value =
        serde_json::from_str(&body(&state_without_baseline(), "/api/v1/verdict").await).unwrap();
    for condition in ["successCondition", "failureCondition"] {
        for field in s(&metric[condition]).split("result.").skip(1).map(|rest| {
            rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                .next()
                .unwrap()
        }) {
            assert!(
                served.get(field).is_some(),
                "{condition} reads result.{field}, which the verdict lacks: {served}"
            );
        }
    }
    assert_eq!(phase(metric, &served), "Failed", "no baseline: {served}");

    // Each verdict, fresh (a minute old), stale (three hours) and before any run (null).
    let with = |verdict: &str, age: Value| {
        let mut v = served.clone();
        v["verdict"] = json!(verdict);
        v["ok"] = json!(verdict == RunResult::Pass.as_str());
        v["age_seconds"] = age;
        v
    };
    let expected = |verdict: &str, fresh: bool| match verdict {
        "pass" if fresh => "Successful",
        "pass" | "inconclusive" | "pending" => "Inconclusive",
        "regression" | "wrong_result" | "no_baseline" | "error" => "Failed",
        // A verdict added later must never pass unseen.
        _ => "not Successful",
    };
    let verdicts = RunResult::ALL.map(RunResult::as_str);
    for verdict in verdicts.iter().copied().chain(["pending"]) {
        for (age, fresh) in [
            (json!(60), true),
            (json!(3 * 3600), false),
            (Value::Null, false),
        ] {
            let result = with(verdict, age);
            let got = phase(metric, &result);
            match expected(verdict, fresh) {
                "not Successful" => assert_ne!(got, "Successful", "{result}"),
                want => assert_eq!(got, want, "{result}"),
            }
        }
    }
}

/// The Flagger MetricTemplate's query is valid PromQL and counts the nodes that are not
/// validated: one that never passed and one whose latest run regressed, not one with a fresh pass.
#[test]
fn flagger_metric_template_counts_unvalidated_nodes() {
    let t = load("flagger-metrictemplate.yaml");
    assert_eq!(s(&t["apiVersion"]), "flagger.app/v1beta1");
    assert_eq!(s(&t["kind"]), "MetricTemplate");
    assert_eq!(s(&t["spec"]["provider"]["type"]), "prometheus");
    let query = s(&t["spec"]["query"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("none.yaml"), "groups: []\n").unwrap();
    // At 3 h: `fresh` passed 46 min before, `never` never did (its gauge is 0), `regressed`
    // passed recently but its latest run found a regression on one of its GPUs, `slow` (at
    // --interval 6h) passed 2 h 13 min before: stale at 1 h, not at 6 h.
    let series = |name: &str, host: &str, extra: &str, value: &str| json!({"series": format!("{name}{{Hostname=\"{host}\"{extra}}}"), "values": value});
    let gpu = ",gpu=\"0\",pci_bus_id=\"00000000:3B:00.0\",kernel=\"copy\"";
    let unit_test = json!({
        "rule_files": ["none.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                series("gpugate_last_success_timestamp_seconds", "fresh", "", "8000x200"),
                series("gpugate_last_success_timestamp_seconds", "never", "", "0x200"),
                series("gpugate_last_success_timestamp_seconds", "regressed", "", "8000x200"),
                series("gpugate_last_success_timestamp_seconds", "slow", "", "3000x200"),
                series("gpugate_interval_seconds", "fresh", "", "3600x200"),
                series("gpugate_interval_seconds", "never", "", "3600x200"),
                series("gpugate_interval_seconds", "regressed", "", "3600x200"),
                series("gpugate_interval_seconds", "slow", "", "21600x200"),
                series("gpugate_kernel_verdict", "fresh", &format!("{gpu},verdict=\"pass\""), "1x200"),
                series("gpugate_kernel_verdict", "fresh", &format!("{gpu},verdict=\"regression\""), "0x200"),
                series("gpugate_kernel_verdict", "regressed", &format!("{gpu},verdict=\"regression\""), "1x200"),
            ],
            "promql_expr_test": [
                {"expr": query, "eval_time": "3h", "exp_samples": [{"labels": "{}", "value": 2}]},
            ],
        }],
    });
    std::fs::write(dir.path().join("test.yaml"), unit_test.to_string()).unwrap();
    let _lock = crate::shared_lock();
    let out = std::process::Command::new("promtool")
        .args(["test", "rules", "test.yaml"])
        .current_dir(dir.path())
        .output()
        .expect("promtool is missing: run scripts/test (it installs Debian's prometheus)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// checkov on k8s/ and the Dockerfile, and hadolint on the Dockerfile: no failed check, no file
/// it could not parse, and every skipped check skipped in the file itself with a reason.
#[test]
fn checkov_and_hadolint_find_nothing_unexplained() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tool = |name: &str| {
        let path = root.join(".tools/venv/bin").join(name);
        assert!(
            path.exists(),
            "{} is missing: run scripts/test (scripts/ensure-test-tools installs it)",
            path.display()
        );
        path
    };
    let _lock = crate::shared_lock();
    // One run per framework: given a directory and a file, checkov scans only the directory.
    for (target, framework) in [
        (["--directory", "k8s"], "kubernetes"),
        (["--file", "Dockerfile"], "dockerfile"),
    ] {
        let out = std::process::Command::new(tool("checkov"))
            .args(target)
            .args(["--framework", framework])
            // Offline: no guideline download, no calls home.
            .args(["--skip-download", "--output", "json"])
            .env("BC_SKIP_MAPPING", "TRUE")
            .current_dir(root)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "checkov's output is not JSON ({e}):\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(report["check_type"], framework, "{report}");
        let summary = &report["summary"];
        let failed: Vec<String> = report["results"]["failed_checks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| format!("{} {} ({})", c["check_id"], c["check_name"], c["file_path"]))
            .collect();
        assert!(failed.is_empty(), "{framework}: {failed:#?}");
        assert_eq!(summary["parsing_errors"], 0, "{framework}");
        assert!(summary["passed"].as_u64().unwrap() > 0, "{summary}");
        for skipped in report["results"]["skipped_checks"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let reason = skipped["check_result"]["suppress_comment"]
                .as_str()
                .unwrap_or("");
            assert!(
                reason.trim().len() > 20,
                "{} skipped in {} without a reason",
                skipped["check_id"],
                skipped["file_path"]
            );
        }
        assert!(out.status.success(), "checkov exited {:?}", out.status);
    }

    let out = std::process::Command::new(tool("hadolint"))
        .arg("Dockerfile")
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Each `hadolint ignore` follows a comment saying why.
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let lines: Vec<&str> = dockerfile.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.contains("hadolint ignore=") {
            assert!(
                i > 0 && lines[i - 1].starts_with("# ") && !lines[i - 1].contains("hadolint"),
                "Dockerfile:{}: {line} without a reason above it",
                i + 1
            );
        }
    }
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
