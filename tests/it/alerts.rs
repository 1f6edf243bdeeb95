//! What Prometheus and Grafana get from `k8s/`: the PrometheusRule's groups pass `promtool check
//! rules` and the unit tests in `tests/promtool/`, which cover every rule (each recording rule
//! evaluated, each alert both firing and not); every alert has a severity, a summary, a
//! description and a `runbook_url` whose anchor is a section of docs/runbooks.md; rules and
//! dashboard query only the metrics of the metric contract (or the recording rules); the Grafana
//! dashboard is valid JSON whose every query parses as PromQL once Grafana's variables are
//! substituted, and kustomize ships it as the ConfigMap kube-prometheus-stack's sidecar imports;
//! the PromQL in docs/monitoring.md and docs/runbooks.md (the DCGM join included) parses.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

use crate::manifests::{load, s};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every metric family serve registers, whether or not it has a series yet (histograms with
/// their `_bucket`/`_sum`/`_count` series). A rule, panel or doc naming anything else is a typo or
/// a metric that was renamed under it.
fn exported() -> Vec<String> {
    gpugate::serve::metrics::Metrics::new("n", std::time::Duration::from_secs(3600))
        .names()
        .to_vec()
}

/// The rules of every group of a PrometheusRule.
fn rules_of(rule: &Yaml) -> Vec<Yaml> {
    assert_eq!(s(&rule["kind"]), "PrometheusRule");
    rule["spec"]["groups"]
        .as_vec()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_vec().unwrap().clone())
        .collect()
}

/// The rules of k8s/prometheusrule.yaml.
fn rules() -> Vec<Yaml> {
    rules_of(&load("prometheusrule.yaml"))
}

/// Names of the recording rules and of the alerts of a PrometheusRule.
fn rule_names_of(rule: &Yaml) -> (Vec<String>, Vec<String>) {
    let (mut records, mut alerts) = (vec![], vec![]);
    for r in rules_of(rule) {
        match (r["record"].as_str(), r["alert"].as_str()) {
            (Some(name), None) => records.push(name.to_string()),
            (None, Some(name)) => alerts.push(name.to_string()),
            _ => panic!("a rule is either a recording rule or an alert: {r:?}"),
        }
    }
    (records, alerts)
}

fn rule_names() -> (Vec<String>, Vec<String>) {
    rule_names_of(&load("prometheusrule.yaml"))
}

/// Runs promtool with `args` in `dir`; its stdout, or a panic with everything it said.
fn promtool(dir: &Path, args: &[&str]) -> String {
    // A spawned tool loads the CPU: not while a timing test measures.
    let _lock = crate::shared_lock();
    let out = std::process::Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool is missing: run scripts/test (it installs Debian's prometheus)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// `expressions` as recording rules in a rule file: `promtool check rules` parses each, which is
/// the offline PromQL parser this promtool has.
fn check_promql(what: &str, expressions: &[String]) {
    assert!(!expressions.is_empty(), "{what}: no expression found");
    let rules: Vec<Value> = expressions
        .iter()
        .enumerate()
        .map(|(i, expr)| serde_json::json!({"record": format!("parse_check_{i}"), "expr": expr}))
        .collect();
    let file = serde_json::json!({"groups": [{"name": what, "rules": rules}]});
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("exprs.yaml"), file.to_string()).unwrap();
    let out = promtool(dir.path(), &["check", "rules", "exprs.yaml"]);
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", expressions.len())),
        "{what}: {out}"
    );
}

/// The metric names (and recording rule names) an expression reads: identifiers starting with
/// `gpugate_` or `gpugate:`, outside string literals.
fn metrics_in(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut chars = expr.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            // Skip a string literal (label values), escapes included.
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => break,
                    _ => {}
                }
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' || d == ':' {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let word = &expr[i..end];
            if word.starts_with("gpugate_") || word.starts_with("gpugate:") {
                names.insert(word.to_string());
            }
        }
    }
    names
}

/// Whether `name` is a contract metric (a histogram's series included) or one of our recording
/// rules.
fn known_metric(name: &str, records: &[String]) -> bool {
    let base = ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .filter(|base| base.ends_with("_seconds"));
    let exported = exported();
    let known = |n: &str| exported.iter().any(|e| e == n);
    known(name) || base.is_some_and(known) || records.iter().any(|r| r == name)
}

#[test]
fn metrics_in_finds_metric_and_rule_names_outside_strings() {
    let names = metrics_in(
        r#"max by (Hostname) (gpugate_last_success_timestamp_seconds{job="gpugate_x\"y"}) / gpugate:kernel_median_seconds:fleet_ratio"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "gpugate:kernel_median_seconds:fleet_ratio",
            "gpugate_last_success_timestamp_seconds"
        ]
    );
}

/// The rule groups pass `promtool check rules`, and the unit tests in
/// tests/promtool/prometheusrule.test.yaml pass against them.
#[test]
fn prometheus_rules_pass_promtool_check_and_unit_tests() {
    let rule = load("prometheusrule.yaml");
    let dir = tempfile::tempdir().unwrap();
    let mut file = String::new();
    YamlEmitter::new(&mut file).dump(&rule["spec"]).unwrap();
    std::fs::write(dir.path().join("rules.yaml"), file).unwrap();
    std::fs::copy(
        root().join("tests/promtool/prometheusrule.test.yaml"),
        dir.path().join("test.yaml"),
    )
    .unwrap();
    let (records, alerts) = rule_names();
    let checked = promtool(dir.path(), &["check", "rules", "rules.yaml"]);
    assert!(
        checked.contains(&format!(
            "SUCCESS: {} rules found",
            records.len() + alerts.len()
        )),
        "{checked}"
    );
    promtool(dir.path(), &["test", "rules", "test.yaml"]);
}

/// What the promtool unit tests `tests` leave uncovered in `rule`: recording rules no
/// `promql_expr_test` evaluates, alerts without an `alert_rule_test` where they fire or one where
/// they do not, and tested alerts that do not exist.
fn coverage_gaps(rule: &Yaml, tests: &Yaml) -> Vec<String> {
    let (records, alerts) = rule_names_of(rule);
    let (mut tested, mut fires, mut silent) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let mut gaps = vec![];
    for test in tests["tests"].as_vec().unwrap() {
        for t in test["promql_expr_test"].as_vec().into_iter().flatten() {
            tested.extend(metrics_in(s(&t["expr"])));
        }
        for t in test["alert_rule_test"].as_vec().into_iter().flatten() {
            let name = s(&t["alertname"]).to_string();
            if !alerts.contains(&name) {
                gaps.push(format!("{name}: tested but not a rule"));
            }
            if t["exp_alerts"].as_vec().is_some_and(|a| !a.is_empty()) {
                fires.insert(name);
            } else {
                silent.insert(name);
            }
        }
    }
    for r in records.iter().filter(|r| !tested.contains(*r)) {
        gaps.push(format!("{r}: no promql_expr_test"));
    }
    for a in &alerts {
        if !fires.contains(a) {
            gaps.push(format!("{a}: no case where it fires"));
        }
        if !silent.contains(a) {
            gaps.push(format!("{a}: no case where it does not fire"));
        }
    }
    gaps
}

fn unit_tests() -> Yaml {
    let text =
        std::fs::read_to_string(root().join("tests/promtool/prometheusrule.test.yaml")).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

/// Every rule of k8s/prometheusrule.yaml has its unit tests: each recording rule evaluated, each
/// alert firing in one case and silent in another.
#[test]
fn every_rule_has_a_unit_test() {
    let (records, alerts) = rule_names();
    assert!(
        records.len() >= 3 && alerts.len() >= 8,
        "{records:?} {alerts:?}"
    );
    let gaps = coverage_gaps(&load("prometheusrule.yaml"), &unit_tests());
    assert!(gaps.is_empty(), "{gaps:#?}");
}

/// The coverage check names a rule added without tests, and a test left behind by a removed one.
#[test]
fn coverage_check_names_untested_and_unknown_rules() {
    let added = "
kind: PrometheusRule
spec:
  groups:
    - name: g
      rules:
        - record: gpugate:kernel_median_seconds:fleet_median
          expr: vector(1)
        - record: gpugate:kernel_median_seconds:fleet_max
          expr: vector(1)
        - alert: GpugateRegressionDetected
          expr: vector(1)
        - alert: GpugateNew
          expr: vector(1)
";
    let rule = YamlLoader::load_from_str(added).unwrap().remove(0);
    let gaps = coverage_gaps(&rule, &unit_tests());
    assert!(
        gaps.contains(&"gpugate:kernel_median_seconds:fleet_max: no promql_expr_test".into()),
        "{gaps:?}"
    );
    assert!(
        gaps.contains(&"GpugateNew: no case where it fires".into()),
        "{gaps:?}"
    );
    assert!(
        gaps.contains(&"GpugateNew: no case where it does not fire".into()),
        "{gaps:?}"
    );
    assert!(
        gaps.contains(&"GpugateAbsent: tested but not a rule".into()),
        "{gaps:?}"
    );
    assert!(
        !gaps
            .iter()
            .any(|g| g.starts_with("GpugateRegressionDetected") || g.contains("fleet_median")),
        "{gaps:?}"
    );
}

/// Recording rules are named `level:metric:operations` (Prometheus' convention), the metric
/// part naming the metric they aggregate.
#[test]
fn recording_rule_names_follow_level_metric_operations() {
    let (records, _) = rule_names();
    for name in &records {
        let parts: Vec<&str> = name.split(':').collect();
        assert_eq!(parts.len(), 3, "{name}: level:metric:operations");
        assert!(
            parts.iter().all(|p| !p.is_empty()),
            "{name}: level:metric:operations"
        );
        assert!(
            exported().contains(&format!("gpugate_{}", parts[1])),
            "{name}: the metric part names the metric it aggregates"
        );
    }
}

/// GitHub's anchor for a Markdown heading: lower case, spaces to `-`, other punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Each alert: a severity Alertmanager routes on, a summary and a description, and a
/// `runbook_url` into docs/runbooks.md whose anchor is one of its headings; each alert's
/// section exists, and the rules query only contract metrics with the contract's labels.
#[test]
fn every_alert_has_a_runbook_section_and_queries_contract_metrics() {
    const BASE: &str = "https://github.com/gpugate/gpugate/blob/main/docs/runbooks.md#";
    let runbooks = std::fs::read_to_string(root().join("docs/runbooks.md")).unwrap();
    let anchors: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(anchor)
        .collect();
    let (records, _) = rule_names();
    for r in rules() {
        let expr = s(&r["expr"]);
        for metric in metrics_in(expr) {
            assert!(known_metric(&metric, &records), "{metric} in {expr}");
        }
        // The contract's node label is DCGM's `Hostname`; `hostname` was its old spelling.
        assert!(!expr.contains("hostname"), "{expr}");
        let Some(alert) = r["alert"].as_str() else {
            continue;
        };
        assert!(
            ["critical", "warning", "info"].contains(&s(&r["labels"]["severity"])),
            "{alert}: severity"
        );
        for key in ["summary", "description"] {
            assert!(s(&r["annotations"][key]).len() > 20, "{alert}: {key}");
        }
        let url = s(&r["annotations"]["runbook_url"]);
        let fragment = url
            .strip_prefix(BASE)
            .unwrap_or_else(|| panic!("{alert}: {url} is not into docs/runbooks.md"));
        assert_eq!(fragment, anchor(alert), "{alert}: the anchor is its name");
        assert!(
            anchors.contains(fragment),
            "{alert}: no section `## {alert}` in docs/runbooks.md"
        );
    }
}

/// Grafana's built-in variables and the dashboard's own, replaced by values PromQL accepts where
/// they stand (a duration in a range, a word in a label matcher).
fn substitute_grafana_variables(expr: &str, variables: &[String]) -> String {
    let mut out = expr.to_string();
    for (builtin, value) in [
        ("$__rate_interval", "5m"),
        ("$__interval_ms", "60000"),
        ("$__interval", "1m"),
        ("$__range_s", "3600"),
        ("$__range", "1h"),
    ] {
        out = out.replace(builtin, value);
    }
    for v in variables {
        out = out
            .replace(&format!("${{{v}}}"), "x")
            .replace(&format!("${v}"), "x");
    }
    assert!(
        !out.contains('$'),
        "a variable the test does not know: {expr}"
    );
    out
}

/// Every panel of the dashboard, those inside rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = vec![];
    for p in dashboard["panels"].as_array().unwrap() {
        all.push(p);
        all.extend(p["panels"].as_array().into_iter().flatten());
    }
    all
}

/// The Grafana dashboard: JSON with a current-ish schema, a Prometheus datasource variable that
/// every panel and query uses, `modelName` and `Hostname` variables; the panels the docs promise;
/// every target's `expr` and every variable's `label_values` selector parse as PromQL with the
/// variables substituted, and read only contract metrics and our recording rules.
#[test]
fn grafana_dashboard_queries_parse_as_promql() {
    let text = std::fs::read_to_string(root().join("k8s/dashboards/gpugate.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    assert_eq!(
        dashboard["uid"], "gpugate",
        "a fixed uid keeps links stable"
    );
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let names: Vec<String> = variables
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    for must in ["datasource", "modelName", "Hostname"] {
        assert!(
            names.iter().any(|n| n == must),
            "variable {must}: {names:?}"
        );
    }
    let datasource = variables
        .iter()
        .find(|v| v["name"] == "datasource")
        .unwrap();
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");

    let (records, _) = rule_names();
    let mut exprs = vec![];
    let mut read = BTreeSet::new();
    let mut take = |expr: &str| {
        read.extend(metrics_in(expr));
        exprs.push(substitute_grafana_variables(expr, &names));
    };
    for v in variables.iter().filter(|v| v["type"] == "query") {
        assert_eq!(v["datasource"]["uid"], "${datasource}", "{v}");
        let query = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap();
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{query}: not label_values(SELECTOR, LABEL)"));
        let (selector, label) = inner.rsplit_once(',').unwrap();
        assert!(names.iter().any(|n| n == label.trim()), "{query}");
        take(selector.trim());
    }
    let mut titles = vec![];
    for p in panels(&dashboard) {
        titles.push(p["title"].as_str().unwrap().to_string());
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{}: no query", p["title"]);
        for t in targets {
            take(t["expr"].as_str().unwrap());
        }
    }
    for metric in &read {
        assert!(
            known_metric(metric, &records),
            "the dashboard reads {metric}"
        );
    }
    for must in [
        "gpugate_node_verdict",
        "gpugate_gpu_verdict",
        "gpugate_kernel_baseline_ratio",
        "gpugate_kernel_detectable_ratio",
        "gpugate_kernel_change_point_ratio",
        "gpugate_kernel_change_point_timestamp_seconds",
        "gpugate:kernel_median_seconds:fleet_ratio",
        "gpugate_last_success_timestamp_seconds",
    ] {
        assert!(read.contains(must), "no panel shows {must}: {titles:?}");
    }
    check_promql("dashboard", &exprs);
}

/// `kubectl kustomize k8s/` makes the dashboard a ConfigMap that kube-prometheus-stack's Grafana
/// sidecar imports (label `grafana_dashboard: "1"`, a name without a hash suffix) holding the
/// file as it is in the repository, and that ConfigMap passes `kubernetes-validate --strict`.
#[test]
fn dashboard_configmap_builds_and_validates() {
    let local = root().join(".tools/venv/bin/kubectl");
    let kubectl = if local.exists() {
        local
    } else {
        PathBuf::from("kubectl")
    };
    let validate = root().join(".tools/venv/bin/kubernetes-validate");
    assert!(
        validate.exists(),
        "{} is missing: run scripts/test (scripts/ensure-test-tools installs it)",
        validate.display()
    );
    let _lock = crate::shared_lock();
    let out = std::process::Command::new(&kubectl)
        .args(["kustomize", "k8s"])
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| {
            panic!("kubectl: {e}: run scripts/test (scripts/ensure-test-tools installs it)")
        });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = YamlLoader::load_from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let cm = docs
        .iter()
        .find(|d| s(&d["kind"]) == "ConfigMap")
        .expect("the dashboard ConfigMap");
    assert_eq!(s(&cm["metadata"]["name"]), "gpugate-dashboard");
    assert_eq!(s(&cm["metadata"]["namespace"]), "gpugate");
    assert_eq!(s(&cm["metadata"]["labels"]["grafana_dashboard"]), "1");
    let file = std::fs::read_to_string(root().join("k8s/dashboards/gpugate.json")).unwrap();
    assert_eq!(s(&cm["data"]["gpugate.json"]), file);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("configmap.yaml");
    let mut text = String::new();
    YamlEmitter::new(&mut text).dump(cm).unwrap();
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(&validate)
        .arg("--strict")
        .arg(&path)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("passed"),
        "not validated against a schema: {said}"
    );
}

/// The ```promql blocks of a Markdown file, one expression each.
fn promql_blocks(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    let mut blocks = vec![];
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```promql") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), l) => {
                block.push_str(l);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "{file}: an unclosed ```promql block");
    blocks
}

/// The PromQL in the monitoring guide and the runbooks parses, and the guide documents the join
/// with dcgm-exporter: a gpugate slowdown next to DCGM's SM clock and its clock-event reasons, on
/// the identity labels both export, each join giving the expected series on synthetic ones.
#[test]
fn promql_in_the_docs_parses_and_joins_dcgm() {
    let monitoring = promql_blocks("docs/monitoring.md");
    let joins: Vec<&String> = monitoring
        .iter()
        .filter(|b| b.contains("gpugate_kernel_baseline_ratio") && b.contains("DCGM_FI_"))
        .collect();
    assert!(
        joins.iter().any(|b| b.contains("DCGM_FI_DEV_SM_CLOCK")),
        "no join with DCGM's SM clock"
    );
    assert!(
        joins
            .iter()
            .any(|b| b.contains("DCGM_FI_DEV_CLOCKS_EVENT_REASONS")
                || b.contains("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS")),
        "no join with DCGM's clock-event (throttle) reasons"
    );
    for join in &joins {
        assert!(
            join.contains("on (Hostname, pci_bus_id)") || join.contains("on (UUID)"),
            "joins on the identity labels both export: {join}"
        );
    }
    check_promql("monitoring", &monitoring);
    check_promql("runbooks", &promql_blocks("docs/runbooks.md"));

    // Each join is evaluated, as written, on dcgm-exporter-like series in
    // tests/promtool/dcgm-join.test.yaml.
    let file = root().join("tests/promtool/dcgm-join.test.yaml");
    let tests = YamlLoader::load_from_str(&std::fs::read_to_string(&file).unwrap())
        .unwrap()
        .remove(0);
    let words = |e: &str| e.split_whitespace().collect::<Vec<_>>().join(" ");
    let evaluated: Vec<String> = tests["tests"]
        .as_vec()
        .unwrap()
        .iter()
        .flat_map(|t| t["promql_expr_test"].as_vec().unwrap())
        .map(|t| words(s(&t["expr"])))
        .collect();
    for join in &joins {
        assert!(
            evaluated.contains(&words(join)),
            "{join}: not evaluated in {}",
            file.display()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("none.yaml"), "groups: []\n").unwrap();
    std::fs::copy(&file, dir.path().join("test.yaml")).unwrap();
    promtool(dir.path(), &["test", "rules", "test.yaml"]);
}
