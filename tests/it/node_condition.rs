//! `serve --node-condition` against a stub Kubernetes API server: HTTPS with a self-signed
//! certificate (rcgen), recording every request (method, path, content type, Authorization,
//! body) and answering as the API server does — the Node on GET, the Node with its conditions
//! merged by `type` on a strategic-merge PATCH, a Status with 404 for another node.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::Utc;
use gpugate::report::Report;
use gpugate::serve::history::{GpuRun, RunRecord, RunResult, Trigger};
use gpugate::serve::metrics::Metrics;
use gpugate::serve::node_condition::{NodeCondition, Target, CONDITION_TYPE};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};
use tokio_rustls::rustls;

const NODE: &str = "gpu-node-1";
const PATH: &str = "/api/v1/nodes/gpu-node-1/status";
const PATCH_TYPE: &str = "application/strategic-merge-patch+json";

#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    content_type: Option<String>,
    authorization: Option<String>,
    body: Value,
}

/// The stub API server, serving on 127.0.0.1 until the test binary exits.
struct Stub {
    port: u16,
    /// Its self-signed certificate (PEM): the CA a client must trust.
    cert_pem: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    node: Arc<Mutex<Value>>,
}

/// A self-signed certificate for 127.0.0.1: (certificate PEM, certificate DER, key DER).
fn self_signed() -> (String, Vec<u8>, Vec<u8>) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    (cert.pem(), cert.der().to_vec(), signing_key.serialize_der())
}

impl Stub {
    /// A stub serving node [`NODE`], whose status holds the kubelet's `Ready` condition and
    /// `conditions` besides.
    fn start(conditions: Vec<Value>) -> Stub {
        let (cert_pem, cert_der, key_der) = self_signed();
        let mut all = vec![json!({
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": "2026-01-01T00:00:00Z",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        })];
        all.extend(conditions);
        let node = Arc::new(Mutex::new(json!({
            "kind": "Node", "apiVersion": "v1",
            "metadata": {"name": NODE},
            "status": {"conditions": all},
        })));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert_der.into()],
            rustls::pki_types::PrivatePkcs8KeyDer::from(key_der).into(),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (r, n) = (requests.clone(), node.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let (acceptor, r, n) = (acceptor.clone(), r.clone(), n.clone());
                    tokio::spawn(async move {
                        // A client that refuses the certificate ends here.
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service = hyper::service::service_fn(move |req| {
                            let (r, n) = (r.clone(), n.clone());
                            async move { Ok::<_, hyper::Error>(answer(req, &r, &n).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                            .await;
                    });
                }
            });
        });
        Stub {
            port,
            cert_pem,
            requests,
            node,
        }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    fn condition(&self) -> Value {
        let node = self.node.lock().unwrap();
        node["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == CONDITION_TYPE)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Change the stored condition, as an earlier process's update would have left it.
    fn set_transition_time(&self, at: &str) {
        let mut node = self.node.lock().unwrap();
        for c in node["status"]["conditions"].as_array_mut().unwrap() {
            if c["type"] == CONDITION_TYPE {
                c["lastTransitionTime"] = at.into();
            }
        }
    }
}

/// The API server's answer: the node (after merging a PATCH's conditions by type), or a 404
/// Status for any other path.
async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    requests: &Mutex<Vec<Recorded>>,
    node: &Mutex<Value>,
) -> hyper::Response<Full<Bytes>> {
    let header = |name: hyper::header::HeaderName| {
        req.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let recorded = Recorded {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        content_type: header(hyper::header::CONTENT_TYPE),
        authorization: header(hyper::header::AUTHORIZATION),
        body: Value::Null,
    };
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    requests.lock().unwrap().push(Recorded {
        body: body.clone(),
        ..recorded.clone()
    });
    let json = |status: u16, doc: &Value| {
        hyper::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(doc.to_string())))
            .unwrap()
    };
    if recorded.path != PATH {
        return json(
            404,
            &json!({"kind": "Status", "status": "Failure", "reason": "NotFound",
                    "message": format!("nodes {:?} not found", recorded.path), "code": 404}),
        );
    }
    let mut node = node.lock().unwrap();
    if recorded.method == "PATCH" {
        let stored = node["status"]["conditions"].as_array_mut().unwrap();
        for patch in body["status"]["conditions"].as_array().unwrap() {
            match stored.iter_mut().find(|c| c["type"] == patch["type"]) {
                Some(c) => *c = patch.clone(),
                None => stored.push(patch.clone()),
            }
        }
    }
    json(200, &node)
}

/// A copy of the recorded baseline claiming copy ran ten times faster: every run of copy now is
/// a regression at lavapipe's 100 % threshold. Made once.
fn doctored_baseline() -> &'static Path {
    static FILE: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &FILE
        .get_or_init(|| crate::trust::doctored(|b| crate::trust::scale_copy(b, |_, _| 0.1)))
        .1
}

/// The flags that make a check of copy a regression against [`doctored_baseline`].
fn regressing(cmd: &mut std::process::Command) {
    cmd.args(["--kernel", "copy", "--max-time", "0.2"])
        .args(["--threshold", crate::SOFTWARE_THRESHOLD, "--baselines"])
        .arg(doctored_baseline());
}

/// A real `check` of copy against the doctored baseline, as the record of run `id`.
fn regression_run(id: u64) -> RunRecord {
    static REPORT: OnceLock<Report> = OnceLock::new();
    let report = REPORT
        .get_or_init(|| {
            doctored_baseline();
            let _lock = crate::shared_lock();
            let mut cmd = crate::gpugate_command();
            cmd.args(["--format", "json", "check"]);
            regressing(&mut cmd);
            let out = cmd.output().unwrap();
            assert_eq!(
                out.status.code(),
                Some(1),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .clone();
    let result = RunResult::of(&report);
    assert_eq!(result, RunResult::Regression);
    run(id, result, Some(report))
}

fn run(id: u64, result: RunResult, report: Option<Report>) -> RunRecord {
    let gpu = GpuRun {
        gpu: report
            .as_ref()
            .and_then(|r| r.gpu.clone())
            .unwrap_or_default(),
        adapter: "llvmpipe".into(),
        result,
        report,
        error: None,
    };
    RunRecord::new(id, Trigger::Interval, Utc::now(), vec![gpu], None)
}

/// `gpugate_node_condition_updates_total{result=…}` in a text exposition.
fn updates(exposition: &str, result: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|l| {
            l.starts_with("gpugate_node_condition_updates_total{")
                && l.contains(&format!("result=\"{result}\""))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn rendered(metrics: &Metrics) -> String {
    String::from_utf8(metrics.render().1.to_vec()).unwrap()
}

/// Files a pod would have: the token and the CA bundle.
struct Credentials {
    dir: tempfile::TempDir,
}

impl Credentials {
    fn new(token: &str, ca_pem: &str) -> Credentials {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), format!("{token}\n")).unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca_pem).unwrap();
        Credentials { dir }
    }

    fn token(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    fn target(&self, api: String) -> Target {
        Target {
            api,
            node: NODE.into(),
            token_file: self.token(),
            ca_file: self.ca(),
        }
    }
}

fn is_time(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok() && t.ends_with('Z'))
}

#[test]
fn a_regression_sets_the_condition_a_pass_clears_it_and_other_results_leave_it() {
    let stub = Stub::start(vec![json!({
        "type": CONDITION_TYPE, "status": "False", "reason": "GPUPerformanceOK",
        "message": "earlier", "lastHeartbeatTime": "2020-01-01T00:00:00Z",
        "lastTransitionTime": "2020-01-01T00:00:00Z",
    })]);
    let creds = Credentials::new("token-1", &stub.cert_pem);
    let condition = NodeCondition::new(creds.target(stub.url())).unwrap();
    let metrics = Metrics::new(NODE, Duration::from_secs(3600));
    metrics.init_node_condition();
    assert_eq!(updates(&rendered(&metrics), "ok"), Some(0.0));
    assert_eq!(updates(&rendered(&metrics), "error"), Some(0.0));

    // A regression: the status is read, then one strategic-merge patch sets True.
    condition.update(&regression_run(1), &metrics);
    let requests = stub.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("GET", PATH)
    );
    let patch = &requests[1];
    assert_eq!(
        (patch.method.as_str(), patch.path.as_str()),
        ("PATCH", PATH)
    );
    assert_eq!(patch.content_type.as_deref(), Some(PATCH_TYPE));
    for r in &requests {
        assert_eq!(r.authorization.as_deref(), Some("Bearer token-1"));
    }
    let sent = patch.body["status"]["conditions"].as_array().unwrap();
    assert_eq!(sent.len(), 1, "only gpugate's condition: {sent:?}");
    assert_eq!(
        patch.body.as_object().unwrap().len(),
        1,
        "status only: {}",
        patch.body
    );
    let c = &sent[0];
    assert_eq!(c["type"], CONDITION_TYPE);
    assert_eq!(c["status"], "True");
    assert_eq!(c["reason"], "GPURegression");
    let message = c["message"].as_str().unwrap();
    assert!(
        message.starts_with("gpugate run 1: ")
            && message.contains("copy[")
            && message.contains("× its baseline"),
        "{message}"
    );
    assert!(is_time(&c["lastHeartbeatTime"]), "{c}");
    assert_eq!(
        c["lastTransitionTime"], c["lastHeartbeatTime"],
        "False → True is a transition: {c}"
    );
    assert_eq!(updates(&rendered(&metrics), "ok"), Some(1.0));

    // Still a regression, with the token rotated: the transition time stays what the node holds,
    // the heartbeat moves, and the new token is used.
    stub.set_transition_time("2021-06-01T00:00:00Z");
    std::fs::write(creds.token(), "token-2").unwrap();
    condition.update(&regression_run(2), &metrics);
    let requests = stub.requests();
    assert_eq!(requests.len(), 4, "{requests:#?}");
    assert!(requests[2..]
        .iter()
        .all(|r| r.authorization.as_deref() == Some("Bearer token-2")));
    let c = &requests[3].body["status"]["conditions"][0];
    assert_eq!(c["status"], "True");
    assert_eq!(c["lastTransitionTime"], "2021-06-01T00:00:00Z", "{c}");
    assert_ne!(c["lastHeartbeatTime"], "2021-06-01T00:00:00Z", "{c}");
    assert!(c["message"]
        .as_str()
        .unwrap()
        .starts_with("gpugate run 2: "));

    // No evidence either way: nothing is sent.
    for silent in [
        RunResult::Inconclusive,
        RunResult::Error,
        RunResult::NoBaseline,
        RunResult::Interrupted,
    ] {
        condition.update(&run(3, silent, None), &metrics);
    }
    assert_eq!(stub.requests().len(), 4);
    assert_eq!(stub.condition()["status"], "True");

    // A pass clears it: False, a new transition.
    condition.update(&run(4, RunResult::Pass, None), &metrics);
    let requests = stub.requests();
    assert_eq!(requests.len(), 6, "{requests:#?}");
    let c = &requests[5].body["status"]["conditions"][0];
    assert_eq!(c["status"], "False");
    assert_eq!(c["reason"], "GPUPerformanceOK");
    assert!(is_time(&c["lastTransitionTime"]), "{c}");
    assert_ne!(c["lastTransitionTime"], "2021-06-01T00:00:00Z", "{c}");
    assert_eq!(stub.condition(), *c);
    assert_eq!(updates(&rendered(&metrics), "ok"), Some(3.0));
    assert_eq!(updates(&rendered(&metrics), "error"), Some(0.0));
}

#[test]
fn a_refused_update_is_counted_and_never_panics() {
    let stub = Stub::start(vec![]);
    let metrics = Metrics::new(NODE, Duration::from_secs(3600));
    metrics.init_node_condition();

    // A CA the server's certificate does not chain to: TLS is refused, nothing reaches it.
    let (other_ca, _, _) = self_signed();
    let creds = Credentials::new("token-1", &other_ca);
    let condition = NodeCondition::new(creds.target(stub.url())).unwrap();
    condition.update(&run(1, RunResult::Pass, None), &metrics);
    assert!(stub.requests().is_empty());
    assert_eq!(updates(&rendered(&metrics), "error"), Some(1.0));

    // The API server's refusal (here: no such node) is an error too.
    let creds = Credentials::new("token-1", &stub.cert_pem);
    let mut target = creds.target(stub.url());
    target.node = "other-node".into();
    NodeCondition::new(target)
        .unwrap()
        .update(&run(2, RunResult::Pass, None), &metrics);
    assert_eq!(stub.requests().len(), 1, "the GET only");
    assert_eq!(updates(&rendered(&metrics), "error"), Some(2.0));

    // Nothing listening: an error well within the timeout, not a hang.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let started = std::time::Instant::now();
    NodeCondition::new(creds.target(url))
        .unwrap()
        .update(&run(3, RunResult::Pass, None), &metrics);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(updates(&rendered(&metrics), "error"), Some(3.0));
    assert_eq!(updates(&rendered(&metrics), "ok"), Some(0.0));
}

/// `gpugate serve --node-condition` on this adapter, pointed at `stub` through the test knobs.
struct Serve {
    child: std::process::Child,
    port: u16,
}

impl Serve {
    fn start(stub: &Stub, creds: &Credentials, history: &Path) -> Serve {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = crate::gpugate_command();
        cmd.args(["serve", "--node-condition", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--history")
            .arg(history);
        regressing(&mut cmd);
        let child = cmd
            .env("NODE_NAME", NODE)
            .env("GPUGATE_KUBE_API", stub.url())
            .env("GPUGATE_KUBE_TOKEN_FILE", creds.token())
            .env("GPUGATE_KUBE_CA_FILE", creds.ca())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Serve { child, port }
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, text.split("\r\n\r\n").nth(1)?.to_string()))
    }

    /// Poll `path` until `done` holds, up to three minutes; the body then.
    fn wait_for(&self, path: &str, done: impl Fn(&str) -> bool) -> String {
        for _ in 0..1800 {
            if let Some((200, body)) = self.get(path) {
                if done(&body) {
                    return body;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{path} never reached the expected state");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_sets_the_condition_on_a_real_regression_and_survives_a_refused_tls() {
    doctored_baseline();
    let _lock = crate::shared_lock();
    let stub = Stub::start(vec![]);
    let creds = Credentials::new("serve-token", &stub.cert_pem);
    let history = tempfile::tempdir().unwrap();
    let serve = Serve::start(&stub, &creds, history.path());
    let run: Value = serde_json::from_str(&serve.wait_for("/api/v1/runs/1", |_| true)).unwrap();
    assert_eq!(run["result"], "regression", "{run}");
    let metrics = serve.wait_for("/metrics", |m| updates(m, "ok") == Some(1.0));
    assert_eq!(updates(&metrics, "error"), Some(0.0));
    let requests = stub.requests();
    let patches: Vec<&Recorded> = requests.iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), 1, "{requests:#?}");
    assert_eq!(patches[0].path, PATH);
    assert_eq!(patches[0].content_type.as_deref(), Some(PATCH_TYPE));
    assert_eq!(
        patches[0].authorization.as_deref(),
        Some("Bearer serve-token")
    );
    let c = stub.condition();
    assert_eq!(c["status"], "True", "{c}");
    assert_eq!(c["reason"], "GPURegression", "{c}");
    assert!(c["message"].as_str().unwrap().contains("copy["), "{c}");
    drop(serve);

    // The CA does not match the server's certificate: the update fails, is counted, and the
    // sidecar goes on serving.
    let (other_ca, _, _) = self_signed();
    let wrong = Credentials::new("serve-token", &other_ca);
    let before = stub.requests().len();
    let history = tempfile::tempdir().unwrap();
    let serve = Serve::start(&stub, &wrong, history.path());
    serve.wait_for("/metrics", |m| updates(m, "error") == Some(1.0));
    assert_eq!(serve.get("/livez").map(|r| r.0), Some(200));
    let run: Value = serde_json::from_str(&serve.wait_for("/api/v1/runs/1", |_| true)).unwrap();
    assert_eq!(run["result"], "regression", "{run}");
    assert_eq!(stub.requests().len(), before, "TLS refused: no request");
}

#[test]
fn serve_refuses_node_condition_outside_a_cluster() {
    let serve = |env: &[(&str, &str)]| {
        let mut cmd = crate::gpugate();
        cmd.args(["serve", "--node-condition", "--listen", "127.0.0.1:0"])
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.timeout(Duration::from_secs(60)).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = serve(&[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("NODE_NAME"), "{stderr}");
    let (code, stderr) = serve(&[("NODE_NAME", NODE)]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("KUBERNETES_SERVICE_HOST"), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t").unwrap();
    let missing_ca = dir.path().join("no-ca.crt");
    let (code, stderr) = serve(&[
        ("NODE_NAME", NODE),
        ("GPUGATE_KUBE_API", "https://127.0.0.1:1"),
        ("GPUGATE_KUBE_TOKEN_FILE", token.to_str().unwrap()),
        ("GPUGATE_KUBE_CA_FILE", missing_ca.to_str().unwrap()),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(missing_ca.to_str().unwrap()), "{stderr}");
    // The variable turns it on as the flag does.
    let out = crate::gpugate()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("GPUGATE_NODE_CONDITION", "true")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NODE_NAME"));
}

fn kubectl() -> PathBuf {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/kubectl");
    if local.exists() {
        local
    } else {
        PathBuf::from("kubectl")
    }
}

fn s(y: &yaml_rust2::Yaml) -> &str {
    y.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {y:?}"))
}

/// `kubectl kustomize` of an overlay of k8s/ with the component, as its kustomization.yaml
/// documents: the output's text.
fn built_with_the_component() -> String {
    let overlay = tempfile::tempdir().unwrap();
    // Kustomize loads bases by relative path only.
    let up = "../".repeat(overlay.path().components().count() - 1);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = root.strip_prefix("/").unwrap_or(root).display();
    std::fs::write(
        overlay.path().join("kustomization.yaml"),
        format!(
            "resources: [{up}{root}/k8s]\ncomponents: [{up}{root}/k8s/components/node-condition]\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(kubectl())
        .arg("kustomize")
        .arg(overlay.path())
        .output()
        .unwrap_or_else(|e| {
            panic!("kubectl: {e}: run scripts/test (scripts/ensure-test-tools installs it)")
        });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The opt-in component: the DaemonSet runs as its service account with a token and
/// `--node-condition` (args the binary accepts), RBAC grants get and patch on nodes/status and
/// nothing else, the admission policy is bound and selects that service account; the build
/// passes kubernetes-validate --strict and checkov.
#[test]
fn the_component_grants_only_nodes_status_and_validates() {
    let _lock = crate::shared_lock();
    let text = built_with_the_component();
    let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap();
    let find = |kind: &str| {
        let found: Vec<&yaml_rust2::Yaml> = docs.iter().filter(|d| s(&d["kind"]) == kind).collect();
        assert_eq!(found.len(), 1, "one {kind} in the build");
        found[0]
    };
    let sa = find("ServiceAccount");
    let (sa_name, sa_ns) = (s(&sa["metadata"]["name"]), s(&sa["metadata"]["namespace"]));

    let pod = &find("DaemonSet")["spec"]["template"]["spec"];
    assert_eq!(s(&pod["serviceAccountName"]), sa_name);
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(true));
    let container = &pod["containers"][0];
    let mut args = vec!["gpugate"];
    args.extend(container["args"].as_vec().unwrap().iter().map(s));
    match crate::parse_cli(args.iter().copied()).unwrap().command {
        gpugate::cli::Command::Serve(serve) => assert!(serve.node_condition, "{args:?}"),
        other => panic!("{other:?}"),
    }
    assert!(
        container["env"]
            .as_vec()
            .unwrap()
            .iter()
            .any(|e| s(&e["name"]) == "NODE_NAME"
                && s(&e["valueFrom"]["fieldRef"]["fieldPath"]) == "spec.nodeName"),
        "NODE_NAME from the downward API"
    );

    let role = find("ClusterRole");
    let rules = role["rules"].as_vec().unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    let list = |y: &yaml_rust2::Yaml| -> Vec<String> {
        y.as_vec()
            .unwrap()
            .iter()
            .map(|v| s(v).to_string())
            .collect()
    };
    assert_eq!(list(&rules[0]["apiGroups"]), [""]);
    assert_eq!(list(&rules[0]["resources"]), ["nodes/status"]);
    assert_eq!(list(&rules[0]["verbs"]), ["get", "patch"]);
    let binding = find("ClusterRoleBinding");
    assert_eq!(s(&binding["roleRef"]["name"]), s(&role["metadata"]["name"]));
    let subjects = binding["subjects"].as_vec().unwrap();
    assert_eq!(subjects.len(), 1);
    assert_eq!(
        (
            s(&subjects[0]["kind"]),
            s(&subjects[0]["name"]),
            s(&subjects[0]["namespace"])
        ),
        ("ServiceAccount", sa_name, sa_ns)
    );

    let policy = find("ValidatingAdmissionPolicy");
    assert_eq!(
        s(&find("ValidatingAdmissionPolicyBinding")["spec"]["policyName"]),
        s(&policy["metadata"]["name"])
    );
    let spec = &policy["spec"];
    assert_eq!(s(&spec["failurePolicy"]), "Fail");
    let rule = &spec["matchConstraints"]["resourceRules"][0];
    assert_eq!(list(&rule["resources"]), ["nodes/status"]);
    assert_eq!(
        s(&spec["matchConditions"][0]["expression"]),
        format!("request.userInfo.username == 'system:serviceaccount:{sa_ns}:{sa_name}'")
    );
    assert!(
        text.contains("authentication.kubernetes.io/node-name") && text.contains(CONDITION_TYPE)
    );

    // The build as a file, for the validators; not in a hidden directory (`.tmp…`), which
    // checkov skips.
    let dir = tempfile::Builder::new()
        .prefix("node-condition-build")
        .tempdir()
        .unwrap();
    std::fs::write(dir.path().join("build.yaml"), &text).unwrap();
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin");
    let out = std::process::Command::new(tools.join("kubernetes-validate"))
        .arg("--strict")
        .arg(dir.path().join("build.yaml"))
        .output()
        .expect("kubernetes-validate: run scripts/test (scripts/ensure-test-tools installs it)");
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    for resource in [
        "serviceaccount/gpugate",
        "clusterrole/gpugate-node-condition",
        "clusterrolebinding/gpugate-node-condition",
        "validatingadmissionpolicy/gpugate-node-condition",
        "validatingadmissionpolicybinding/gpugate-node-condition",
        "daemonset/gpugate",
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.contains("passed") && l.contains(&format!("resource {resource} "))),
            "{resource} not validated:\n{report}"
        );
    }

    let out = std::process::Command::new(tools.join("checkov"))
        .args(["--directory"])
        .arg(dir.path())
        .args([
            "--framework",
            "kubernetes",
            "--skip-download",
            "--output",
            "json",
        ])
        .env("BC_SKIP_MAPPING", "TRUE")
        .output()
        .expect("checkov: run scripts/test (scripts/ensure-test-tools installs it)");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "checkov's output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let failed = &report["results"]["failed_checks"];
    assert!(failed.as_array().is_none_or(|f| f.is_empty()), "{failed:#}");
    assert_eq!(report["summary"]["parsing_errors"], 0, "{report:#}");
    assert!(
        report["summary"]["resource_count"].as_u64() > Some(10),
        "{report:#}"
    );
    for skipped in report["results"]["skipped_checks"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let reason = skipped["check_result"]["suppress_comment"]
            .as_str()
            .unwrap_or("");
        assert!(reason.trim().len() > 20, "{skipped:#}");
    }
    assert!(out.status.success(), "checkov exited {:?}", out.status);
}

/// The admission policy's CEL, evaluated by cel-python (tests/k8s/admission_policy.py) on
/// requests a cluster would send: its own node and condition allowed (the first time too);
/// another node, a token naming none, another condition, capacity, allocatable, addresses or the
/// kubelet's port denied by the validation meant for it; other users not matched.
#[test]
fn the_admission_policy_allows_only_the_own_node_and_condition() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".tools/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test (scripts/ensure-test-tools installs it)",
        python.display()
    );
    let out = std::process::Command::new(python)
        .arg(root.join("tests/k8s/admission_policy.py"))
        .arg(root.join("k8s/components/node-condition/validatingadmissionpolicy.yaml"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("ok: ")).collect();
    assert_eq!(lines.len(), 11, "{text}");
    for decision in ["allowed", "denied 0", "denied 1", "denied 2", "not matched"] {
        assert!(
            lines.iter().any(|l| l.ends_with(decision)),
            "{decision}: {text}"
        );
    }
}
