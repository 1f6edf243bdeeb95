//! `serve --node-condition`: the node's verdict as a NodeCondition, as node-problem-detector
//! reports its problems, so the scheduler's and an operator's tooling can act on it (taint,
//! cordon, drain) without reading gpugate's metrics.
//!
//! After each run the worker calls [`NodeCondition::update`]: a `regression` or `wrong_result`
//! sets `GPUPerformanceDegraded` to `True` (reason `GPURegression` / `GPUWrongResult`, the
//! message naming the GPUs and kernels with their ratio), a `pass` sets it to `False` (reason
//! `GPUPerformanceOK`). Every other result (inconclusive, error, no_baseline, interrupted)
//! leaves the condition as it is: such a run is no evidence either way, and flapping a
//! condition that a cordon may follow on a noisy or broken run would do more harm than a verdict
//! that stays one run old.
//!
//! Each update reads the node's status first (`GET nodes/NAME/status`), so `lastTransitionTime`
//! changes only when the status flips — across restarts too — then sends a strategic-merge
//! patch of `status.conditions` (merged by `type`, so the kubelet's conditions are untouched);
//! `lastHeartbeatTime` is the time of each update. A failure is logged and counted
//! (`gpugate_node_condition_updates_total{result="error"}`), never fatal, and bounded by
//! [`TIMEOUT`] so a dead API server cannot hold up the worker for long.
//!
//! In-cluster only: the API server from `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`,
//! the service account's token (read again for each update: bound tokens rotate) and CA (TLS is
//! always verified against it). Tests and unusual setups override them with [`API_ENV`],
//! [`TOKEN_FILE_ENV`] and [`CA_FILE_ENV`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};
use tokio_rustls::rustls;

use super::history::{RunRecord, RunResult};
use super::metrics::Metrics;
use crate::compare::Verdict;
use crate::error::{Error, Result};

/// The condition's type on the Node.
pub const CONDITION_TYPE: &str = "GPUPerformanceDegraded";
/// Test/advanced knob: the API server's URL (`https://host:port`) instead of the in-cluster one.
pub const API_ENV: &str = "GPUGATE_KUBE_API";
/// Test/advanced knob: the bearer token's file instead of the service account's.
pub const TOKEN_FILE_ENV: &str = "GPUGATE_KUBE_TOKEN_FILE";
/// Test/advanced knob: the CA bundle (PEM) the API server's certificate is verified against.
pub const CA_FILE_ENV: &str = "GPUGATE_KUBE_CA_FILE";
/// Where Kubernetes mounts a pod's service-account token and CA.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The longest one update (connect, TLS, GET, PATCH) may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest response body read (a Node with many images is some hundred KiB).
const MAX_RESPONSE: usize = 8 << 20;
/// Kernels named in a message before "and N more": a condition's message is for people.
const MAX_NAMED: usize = 5;
const PATCH_TYPE: &str = "application/strategic-merge-patch+json";

/// Where the API server is and as whom to call it, as found at start.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// `https://host[:port]`.
    pub api: String,
    /// The Node whose status is patched.
    pub node: String,
    pub token_file: PathBuf,
    pub ca_file: PathBuf,
}

impl Target {
    /// The in-cluster target for node `node` (`NODE_NAME`), with `lookup` reading the
    /// environment; an error naming what is missing when this is not a pod in a cluster.
    pub fn from_env(node: Option<&str>, lookup: impl Fn(&str) -> Option<String>) -> Result<Target> {
        let node = node
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                Error::Usage(
                    "--node-condition: no node name: set NODE_NAME from the downward API \
                 (fieldRef spec.nodeName) or --hostname"
                        .into(),
                )
            })?;
        // Node names are DNS subdomains: checked so the name goes into the URL path as it is.
        if node.len() > 253
            || !node
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        {
            return Err(Error::Usage(format!(
                "--node-condition: NODE_NAME {node:?} is not a Kubernetes node name \
                 (lowercase letters, digits, '-' and '.')"
            )));
        }
        let api = match lookup(API_ENV).filter(|v| !v.is_empty()) {
            Some(url) => url,
            None => {
                let host = lookup("KUBERNETES_SERVICE_HOST").filter(|v| !v.is_empty());
                let port = lookup("KUBERNETES_SERVICE_PORT").filter(|v| !v.is_empty());
                match (host, port) {
                    (Some(host), port) => {
                        let host = if host.contains(':') {
                            format!("[{host}]")
                        } else {
                            host
                        };
                        format!("https://{host}:{}", port.as_deref().unwrap_or("443"))
                    }
                    (None, _) => {
                        return Err(Error::Usage(format!(
                            "--node-condition: KUBERNETES_SERVICE_HOST is not set: not in a \
                             Kubernetes pod (or set {API_ENV})"
                        )))
                    }
                }
            }
        };
        let file = |env: &str, name: &str| {
            lookup(env)
                .filter(|v| !v.is_empty())
                .map_or_else(|| Path::new(SERVICE_ACCOUNT_DIR).join(name), PathBuf::from)
        };
        Ok(Target {
            api,
            node: node.to_string(),
            token_file: file(TOKEN_FILE_ENV, "token"),
            ca_file: file(CA_FILE_ENV, "ca.crt"),
        })
    }
}

/// What a run says the condition should be; `None` for a run that says nothing either way.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub degraded: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Desired {
    pub fn of(run: &RunRecord) -> Option<Desired> {
        // A GPU without a baseline cannot be judged: it must not keep a node whose other GPUs
        // pass degraded for ever, so the condition clears once every GPU that has a baseline
        // passed (and at least one did).
        let unjudged = run
            .gpus
            .iter()
            .filter(|g| g.result == RunResult::NoBaseline)
            .count();
        let all_judged_passed = run.gpus.len() > unjudged
            && run
                .gpus
                .iter()
                .all(|g| matches!(g.result, RunResult::Pass | RunResult::NoBaseline));
        let (degraded, reason) = match run.result {
            RunResult::Regression => (true, "GPURegression"),
            RunResult::WrongResult => (true, "GPUWrongResult"),
            RunResult::Pass => (false, "GPUPerformanceOK"),
            RunResult::NoBaseline if all_judged_passed => (false, "GPUPerformanceOK"),
            RunResult::Inconclusive
            | RunResult::NoBaseline
            | RunResult::Error
            | RunResult::Interrupted => return None,
        };
        let message = if degraded {
            format!("gpugate run {}: {}", run.id, failures(run))
        } else if unjudged > 0 {
            format!(
                "gpugate run {}: every kernel within its baseline's threshold on the GPUs with a \
                 baseline ({unjudged} GPU(s) without one)",
                run.id
            )
        } else {
            format!(
                "gpugate run {}: every kernel within its baseline's threshold",
                run.id
            )
        };
        Some(Desired {
            degraded,
            reason,
            message,
        })
    }
}

/// The GPUs and kernels a failed run names, e.g. `GPU 0 (NVIDIA H100, 00000000:3B:00.0): copy[…]
/// 1.53× its baseline; sgemm[…] wrong result`.
fn failures(run: &RunRecord) -> String {
    let mut named = Vec::new();
    let mut more = 0;
    for report in run.reports() {
        let gpu = match &report.gpu {
            Some(id) => {
                let index = id.index.map(|i| format!("GPU {i}"));
                let detail: Vec<&str> = [id.model_name.as_deref(), id.pci_bus_id.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect();
                match (index, detail.is_empty()) {
                    (Some(i), true) => i,
                    (Some(i), false) => format!("{i} ({})", detail.join(", ")),
                    (None, _) => detail.join(", "),
                }
            }
            None => report
                .fingerprint
                .as_ref()
                .map_or_else(|| "the GPU".into(), |f| f.name.clone()),
        };
        let mut kernels = Vec::new();
        for row in &report.rows {
            let what = match (row.verdict, &row.comparison) {
                (Verdict::WrongResult, _) => "wrong result".to_string(),
                (Verdict::Regression, Some(c)) => format!("{:.2}× its baseline", c.ratio),
                (Verdict::Regression, None) => "regression".to_string(),
                _ => continue,
            };
            if named.len() + kernels.len() < MAX_NAMED {
                kernels.push(format!("{} {what}", row.key));
            } else {
                more += 1;
            }
        }
        if !kernels.is_empty() {
            named.push(format!("{gpu}: {}", kernels.join(", ")));
        }
    }
    let mut text = if named.is_empty() {
        // A report-less failure cannot happen today (regression and wrong_result come from a
        // report), but the condition must still say something.
        run.result.as_str().replace('_', " ")
    } else {
        named.join("; ")
    };
    if more > 0 {
        text.push_str(&format!("; and {more} more kernel(s)"));
    }
    text
}

/// The updater: a TLS client bound to the service account's CA and a small runtime of its own
/// (the worker is a plain thread).
pub struct NodeCondition {
    target: Target,
    connector: tokio_rustls::TlsConnector,
    server_name: rustls::pki_types::ServerName<'static>,
    /// `host:port` to connect to, and the Host header.
    authority: String,
    runtime: tokio::runtime::Runtime,
}

/// The target only: the rest is a TLS configuration and a runtime.
impl std::fmt::Debug for NodeCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCondition")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl NodeCondition {
    /// Check everything an update will need now, so a misconfigured pod fails at start (exit 2)
    /// instead of at its first verdict: the URL, a readable non-empty token, a CA that parses.
    pub fn new(target: Target) -> Result<NodeCondition> {
        let uri: hyper::Uri = target.api.parse().map_err(|e| {
            Error::Usage(format!(
                "--node-condition: API server URL {:?}: {e}",
                target.api
            ))
        })?;
        if uri.scheme_str() != Some("https") || uri.host().is_none() {
            return Err(Error::Usage(format!(
                "--node-condition: API server URL {:?}: expected https://host[:port]",
                target.api
            )));
        }
        let host = uri.host().unwrap_or_default();
        let port = uri.port_u16().unwrap_or(443);
        let server_name =
            rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .map_err(|e| {
                    Error::Usage(format!(
                        "--node-condition: API server URL {:?}: host: {e}",
                        target.api
                    ))
                })?;
        read_token(&target.token_file).map_err(Error::Usage)?;
        let roots = read_ca(&target.ca_file)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Usage(format!("--node-condition: TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Usage(format!("--node-condition: cannot start a runtime: {e}")))?;
        Ok(NodeCondition {
            authority: format!("{host}:{port}"),
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
            target,
            runtime,
        })
    }

    /// Set the condition from a finished run (the node's verdict is `run.result`), logging and
    /// counting the outcome; a run that says nothing either way sends nothing.
    pub fn update(&self, run: &RunRecord, metrics: &Metrics) {
        let Some(desired) = Desired::of(run) else {
            tracing::debug!(
                id = run.id,
                result = run.result.as_str(),
                "{CONDITION_TYPE} left as it is: the run is no evidence either way"
            );
            return;
        };
        let status = if desired.degraded { "True" } else { "False" };
        match self.set(&desired, Utc::now()) {
            Ok(flipped) => {
                metrics.node_condition_update(true);
                tracing::info!(
                    id = run.id,
                    node = %self.target.node,
                    reason = desired.reason,
                    flipped,
                    "{CONDITION_TYPE}={status}"
                );
            }
            Err(why) => {
                metrics.node_condition_update(false);
                tracing::error!(
                    id = run.id,
                    node = %self.target.node,
                    "cannot set {CONDITION_TYPE}={status}: {why}"
                );
            }
        }
    }

    /// Read the current condition, then patch it to `desired` as of `now`; whether its status
    /// flipped (or it was new).
    fn set(&self, desired: &Desired, now: DateTime<Utc>) -> std::result::Result<bool, String> {
        self.runtime.block_on(async {
            tokio::time::timeout(TIMEOUT, self.exchange(desired, now))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {TIMEOUT:?}")))
        })
    }

    async fn exchange(
        &self,
        desired: &Desired,
        now: DateTime<Utc>,
    ) -> std::result::Result<bool, String> {
        let token = read_token(&self.target.token_file)?;
        let tcp = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| format!("connect to {}: {e}", self.target.api))?;
        let tls = self
            .connector
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS with {}: {e}", self.target.api))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| format!("HTTP with {}: {e}", self.target.api))?;
        // The connection is driven beside the requests and dropped (closed) with them: nothing
        // of an update outlives it, even past the timeout.
        tokio::select! {
            done = self.talk(&mut sender, &token, desired, now) => done,
            ended = connection => Err(match ended {
                Ok(()) => format!("{} closed the connection", self.target.api),
                Err(e) => format!("HTTP with {}: {e}", self.target.api),
            }),
        }
    }

    /// GET the node's status, then PATCH the condition; whether its status flipped.
    async fn talk(
        &self,
        sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
        token: &str,
        desired: &Desired,
        now: DateTime<Utc>,
    ) -> std::result::Result<bool, String> {
        let path = format!("/api/v1/nodes/{}/status", self.target.node);
        let node = self.call(sender, Method::GET, &path, token, None).await?;
        let current = node["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == CONDITION_TYPE));
        let status = if desired.degraded { "True" } else { "False" };
        let kept = current
            .filter(|c| c["status"] == status)
            .and_then(|c| c["lastTransitionTime"].as_str())
            .map(String::from);
        let flipped = kept.is_none();
        let stamp = now.to_rfc3339_opts(SecondsFormat::Secs, true);
        let patch = json!({"status": {"conditions": [{
            "type": CONDITION_TYPE,
            "status": status,
            "reason": desired.reason,
            "message": desired.message,
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": kept.unwrap_or_else(|| stamp.clone()),
        }]}});
        self.call(sender, Method::PATCH, &path, token, Some(patch.to_string()))
            .await?;
        Ok(flipped)
    }

    /// One request on the connection; the JSON answer of a 2xx, else an error with the API
    /// server's message.
    async fn call(
        &self,
        sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
        method: Method,
        path: &str,
        token: &str,
        patch: Option<String>,
    ) -> std::result::Result<Value, String> {
        let mut bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| format!("{}: not a valid token", self.target.token_file.display()))?;
        bearer.set_sensitive(true);
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(HOST, &self.authority)
            .header(ACCEPT, "application/json")
            .header(AUTHORIZATION, bearer);
        if patch.is_some() {
            request = request.header(CONTENT_TYPE, PATCH_TYPE);
        }
        let request = request
            .body(Full::new(Bytes::from(patch.unwrap_or_default())))
            .map_err(|e| format!("{method} {path}: {e}"))?;
        sender
            .ready()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| format!("{method} {path}: reading the answer: {e}"))?
            .to_bytes();
        let doc: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(doc);
        }
        // The API server answers errors with a Status object whose message says why (RBAC,
        // admission, no such node).
        let why = doc["message"]
            .as_str()
            .map(|m| m.chars().take(300).collect::<String>())
            .unwrap_or_default();
        Err(match status {
            StatusCode::UNAUTHORIZED => format!("{method} {path}: 401 (token rejected) {why}"),
            _ => format!("{method} {path}: {status} {why}"),
        })
    }
}

/// The bearer token, read again for every update; an error names the file, never the content.
fn read_token(path: &Path) -> std::result::Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--node-condition: token file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!(
            "--node-condition: token file {}: empty",
            path.display()
        ));
    }
    Ok(token.to_string())
}

/// The CA bundle the API server's certificate must chain to.
fn read_ca(path: &Path) -> Result<rustls::RootCertStore> {
    use rustls::pki_types::pem::PemObject;
    let bad = |why: String| {
        Error::Usage(format!(
            "--node-condition: CA file {}: {why}",
            path.display()
        ))
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("not PEM certificates: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("a certificate that cannot be used: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_target_comes_from_the_pod_environment() {
        let in_pod = [
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
        ];
        let t = Target::from_env(Some("gpu-node-1"), env(&in_pod)).unwrap();
        assert_eq!(t.api, "https://10.96.0.1:443");
        assert_eq!(t.node, "gpu-node-1");
        assert_eq!(
            t.token_file,
            Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token")
        );
        assert_eq!(
            t.ca_file,
            Path::new("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
        );
        let v6 = Target::from_env(
            Some("n"),
            env(&[
                ("KUBERNETES_SERVICE_HOST", "fd00::1"),
                ("KUBERNETES_SERVICE_PORT", "6443"),
            ]),
        )
        .unwrap();
        assert_eq!(v6.api, "https://[fd00::1]:6443");
        let overridden = Target::from_env(
            Some("n"),
            env(&[
                (API_ENV, "https://127.0.0.1:8443"),
                (TOKEN_FILE_ENV, "/tmp/t"),
                (CA_FILE_ENV, "/tmp/ca.pem"),
            ]),
        )
        .unwrap();
        assert_eq!(overridden.api, "https://127.0.0.1:8443");
        assert_eq!(overridden.token_file, Path::new("/tmp/t"));
        assert_eq!(overridden.ca_file, Path::new("/tmp/ca.pem"));
    }

    #[test]
    fn outside_a_pod_the_error_names_what_is_missing() {
        let no_node = Target::from_env(None, env(&[])).unwrap_err().to_string();
        assert!(no_node.contains("NODE_NAME"), "{no_node}");
        let bad_node = Target::from_env(Some("Node/1"), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(bad_node.contains("\"Node/1\""), "{bad_node}");
        let no_api = Target::from_env(Some("n"), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(no_api.contains("KUBERNETES_SERVICE_HOST"), "{no_api}");
        let dir = tempfile::tempdir().unwrap();
        let target = |token: &Path, ca: &Path| Target {
            api: "https://127.0.0.1:1".into(),
            node: "n".into(),
            token_file: token.into(),
            ca_file: ca.into(),
        };
        let token = dir.path().join("token");
        let ca = dir.path().join("ca.crt");
        let err = NodeCondition::new(target(&token, &ca))
            .unwrap_err()
            .to_string();
        assert!(err.contains("token file") && err.contains("token"), "{err}");
        std::fs::write(&token, "secret-token\n").unwrap();
        let err = NodeCondition::new(target(&token, &ca))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CA file") && !err.contains("secret-token"),
            "{err}"
        );
        std::fs::write(&ca, "not a certificate").unwrap();
        let err = NodeCondition::new(target(&token, &ca)).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::exit::USAGE);
        assert!(err.to_string().contains("no certificate"), "{err}");
        let http = Target {
            api: "http://127.0.0.1:1".into(),
            ..target(&token, &ca)
        };
        let err = NodeCondition::new(http).unwrap_err().to_string();
        assert!(err.contains("https://"), "{err}");
    }

    #[test]
    fn only_a_regression_a_wrong_result_or_a_pass_sets_the_condition() {
        let run = |result| {
            RunRecord::failed(
                7,
                crate::serve::history::Trigger::Interval,
                Utc::now(),
                result,
                String::new(),
            )
        };
        let regression = Desired::of(&run(RunResult::Regression)).unwrap();
        assert!(regression.degraded);
        assert_eq!(regression.reason, "GPURegression");
        assert!(
            regression.message.starts_with("gpugate run 7: "),
            "{regression:?}"
        );
        let wrong = Desired::of(&run(RunResult::WrongResult)).unwrap();
        assert_eq!((wrong.degraded, wrong.reason), (true, "GPUWrongResult"));
        let pass = Desired::of(&run(RunResult::Pass)).unwrap();
        assert_eq!((pass.degraded, pass.reason), (false, "GPUPerformanceOK"));
        for silent in [
            RunResult::Inconclusive,
            RunResult::NoBaseline,
            RunResult::Error,
            RunResult::Interrupted,
        ] {
            assert_eq!(Desired::of(&run(silent)), None, "{silent:?}");
        }
        // Several GPUs: one without a baseline does not keep a fixed node degraded.
        let gpus = |results: &[RunResult]| {
            let gpus = results
                .iter()
                .map(|&result| crate::serve::history::GpuRun {
                    gpu: Default::default(),
                    adapter: "A".into(),
                    result,
                    report: None,
                    error: None,
                })
                .collect();
            RunRecord::new(
                7,
                crate::serve::history::Trigger::Api,
                Utc::now(),
                gpus,
                None,
            )
        };
        use RunResult::{Inconclusive, NoBaseline, Pass, Regression};
        let cleared = Desired::of(&gpus(&[Pass, NoBaseline])).unwrap();
        assert!(!cleared.degraded && cleared.message.contains("1 GPU(s) without one"));
        assert!(
            Desired::of(&gpus(&[Regression, NoBaseline]))
                .unwrap()
                .degraded
        );
        assert_eq!(Desired::of(&gpus(&[NoBaseline, NoBaseline])), None);
        assert_eq!(Desired::of(&gpus(&[Pass, Inconclusive])), None);
    }
}
