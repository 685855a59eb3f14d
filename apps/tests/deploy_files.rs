//! The deployment files under `deploy/` against the code they deploy: the Prometheus configuration,
//! alert rules and their unit tests pass `promtool`; the Grafana dashboard is valid, names its data
//! sources by provisioned uid and queries only metrics the apps export; the Compose file pins its
//! images and takes every credential from the environment.
//!
//! The metric names are read from the sources that define them (`pub const NAME: &str = "..."` in
//! the collector's and detector's `metric_names.rs` and in `anomaly-stream`'s `metrics.rs`, whose
//! runtime metrics the detector exports), so renaming a metric without updating `deploy/` fails
//! here.
//!
//! `promtool` comes with the Debian package `prometheus` (scripts/test installs it). Without it
//! these tests fail; they never skip.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const PROMETHEUS_CONFIG: &str = "deploy/prometheus/prometheus.yml";
const ALERT_RULES: &str = "deploy/prometheus/rules/anomaly.yml";
const ALERT_RULE_TESTS: &str = "deploy/prometheus/tests/anomaly.test.yml";
const DATASOURCES: &str = "deploy/grafana/provisioning/datasources/datasources.yml";
const DASHBOARD_PROVIDERS: &str = "deploy/grafana/provisioning/dashboards/dashboards.yml";
const DASHBOARD: &str = "deploy/grafana/dashboards/anomaly.json";
const COMPOSE: &str = "deploy/docker-compose.yml";
const DOCKERFILE: &str = "deploy/Dockerfile";
const ENV_EXAMPLE: &str = "deploy/.env.example";
const COLLECT_ARGS: &str = "apps/src/cmd/collect.rs";
const DETECT_ARGS: &str = "apps/src/cmd/detect.rs";

/// Where the exported metric names are defined.
const METRIC_SOURCES: &[&str] = &[
    "apps/src/collect/metric_names.rs",
    "apps/src/detect/metric_names.rs",
    "anomaly-stream/src/metrics.rs",
];
/// Series a Prometheus histogram or summary exports besides its own name.
const HISTOGRAM_SUFFIXES: &[&str] = &["_bucket", "_sum", "_count"];
const HOST_VARIABLE_QUERY: &str = "label_values(anomaly_host_cpu_busy_ratio, host)";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("apps/ has a parent")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    fs::read_to_string(repo_root().join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
}

/// Runs promtool from the repository root and returns its output; panics unless it succeeds.
fn promtool(args: &[&str]) -> String {
    let output = match Command::new("promtool")
        .args(args)
        .current_dir(repo_root())
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "promtool is not installed, so deploy/prometheus cannot be checked. It ships in the \
             Debian package `prometheus`: run scripts/test, or `apt-get install prometheus` (and \
             stop the server its postinst may start)."
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "`promtool {}` failed ({}):\n{text}",
        args.join(" "),
        output.status
    );
    text
}

/// Every `anomaly_*` string constant of the metric sources, read as text.
fn defined_metric_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for rel in METRIC_SOURCES {
        let source = read(rel);
        let before = names.len();
        for declaration in source.split("pub const ").skip(1) {
            let end = declaration
                .find(';')
                .unwrap_or_else(|| panic!("{rel}: a `pub const` without `;`"));
            let Some((_, value)) = declaration[..end].split_once(": &str") else {
                continue;
            };
            let Some(open) = value.find('"') else {
                continue;
            };
            let value = &value[open + 1..];
            let close = value
                .find('"')
                .unwrap_or_else(|| panic!("{rel}: unterminated string in a `pub const`"));
            let value = &value[..close];
            if value.starts_with("anomaly_") {
                names.insert(value.to_owned());
            }
        }
        assert!(
            names.len() > before,
            "no `pub const NAME: &str = \"anomaly_...\";` found in {rel}: did its format change?"
        );
    }
    names
}

/// Every `anomaly_[a-z0-9_]+` identifier in `text` (not preceded by an identifier character, so
/// `job:anomaly_x` recording-rule names and the like are not taken for metric names).
fn metric_identifiers(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut found = BTreeSet::new();
    let mut from = 0;
    while let Some(pos) = text[from..].find("anomaly_") {
        let start = from + pos;
        let mut end = start + "anomaly_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        if start == 0 || !is_ident(bytes[start - 1]) {
            found.insert(text[start..end].to_owned());
        }
        from = end;
    }
    found
}

fn is_defined(name: &str, defined: &BTreeSet<String>) -> bool {
    defined.contains(name)
        || HISTOGRAM_SUFFIXES.iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| defined.contains(base))
        })
}

/// Names used in `text` (from `what`) that no metric source defines, as a failure message.
fn assert_known_metrics(what: &str, text: &str, defined: &BTreeSet<String>) {
    let unknown: Vec<_> = metric_identifiers(text)
        .into_iter()
        .filter(|name| !is_defined(name, defined))
        .collect();
    assert!(
        unknown.is_empty(),
        "{what} uses metric names the apps do not export: {unknown:?}\n(defined in {METRIC_SOURCES:?}: {defined:?})"
    );
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The value of a `key: value` YAML line, without quotes; `None` when the line has another key.
fn yaml_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = line.trim_start().trim_start_matches("- ");
    let value = rest.strip_prefix(key)?.strip_prefix(':')?;
    Some(value.trim().trim_matches(|c| c == '"' || c == '\''))
}

// ----- Prometheus -----------------------------------------------------------------------------

#[test]
fn prometheus_config_rules_and_rule_tests_pass_promtool() {
    let config = read(PROMETHEUS_CONFIG);
    assert!(
        config.contains("rule_files:") && config.contains("- rules/anomaly.yml"),
        "{PROMETHEUS_CONFIG} must load rules/anomaly.yml (relative to its own folder)"
    );
    // check config also loads and checks the rule files it names.
    promtool(&["check", "config", PROMETHEUS_CONFIG]);
    promtool(&["check", "rules", ALERT_RULES]);
    promtool(&["test", "rules", ALERT_RULE_TESTS]);
}

#[test]
fn prometheus_scrapes_the_ports_the_apps_listen_on() {
    let config = read(PROMETHEUS_CONFIG);
    let compose = read(COMPOSE);
    for (job, target, listen) in [
        ("collector", "collector:9101", "--listen=0.0.0.0:9101"),
        ("detector", "detector:9102", "--listen=0.0.0.0:9102"),
    ] {
        assert!(
            config.contains(&format!("job_name: {job}")),
            "{PROMETHEUS_CONFIG}: no `{job}` scrape job"
        );
        assert!(
            config.contains(&format!("\"{target}\"")),
            "{PROMETHEUS_CONFIG}: the {job} job must scrape {target}"
        );
        assert!(
            compose.contains(listen),
            "{COMPOSE}: the {job} must listen with {listen} for Prometheus to reach it"
        );
    }
}

/// Every defined metric with the kind its documentation gives it (`Counter`, `Gauge`,
/// `Histogram`: the first word of the `///` block above its `pub const`).
fn defined_metric_kinds() -> Vec<(String, String)> {
    let mut kinds = Vec::new();
    for rel in METRIC_SOURCES {
        let source = read(rel);
        let lines: Vec<&str> = source.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(rest) = line.strip_prefix("pub const ") else {
                continue;
            };
            // The value may sit on the next line (rustfmt wraps long ones).
            let declaration = format!("{rest} {}", lines.get(i + 1).unwrap_or(&""));
            let Some(name) = declaration
                .split('"')
                .nth(1)
                .filter(|v| v.starts_with("anomaly_"))
            else {
                continue;
            };
            let doc_start = lines[..i]
                .iter()
                .rposition(|l| !l.starts_with("///"))
                .map_or(0, |p| p + 1);
            let kind = lines
                .get(doc_start)
                .and_then(|l| l.strip_prefix("/// "))
                .and_then(|l| l.split([':', ',']).next())
                .unwrap_or_else(|| panic!("{rel}: {name} has no documentation"));
            kinds.push((name.to_string(), kind.to_string()));
        }
    }
    kinds
}

/// node_exporter's naming rules: counters and only counters end in `_total`, ratios are gauges,
/// histograms measure seconds or bytes, and every unit is a base unit.
#[test]
fn metric_names_follow_node_exporter_conventions() {
    let kinds = defined_metric_kinds();
    assert_eq!(
        kinds.len(),
        defined_metric_names().len(),
        "a metric name whose kind could not be read: {kinds:?}"
    );
    for (name, kind) in &kinds {
        assert!(
            ["Counter", "Gauge", "Histogram"].contains(&kind.as_str()),
            "{name}: its documentation must start with Counter, Gauge or Histogram, not {kind:?}"
        );
        assert_eq!(
            name.ends_with("_total"),
            kind == "Counter",
            "{name} ({kind}): `_total` is for counters, and every counter has it"
        );
        if name.ends_with("_ratio") {
            assert_eq!(kind, "Gauge", "{name}: a ratio is a gauge in 0..1");
        }
        if kind == "Histogram" {
            assert!(
                name.ends_with("_seconds") || name.ends_with("_bytes"),
                "{name}: a histogram of seconds or bytes"
            );
        }
        for unit in [
            "_ms",
            "_milliseconds",
            "_percent",
            "_kb",
            "_kilobytes",
            "_mb",
            "_minutes",
            "_hours",
        ] {
            assert!(
                !name.ends_with(unit) && !name.contains(&format!("{unit}_")),
                "{name}: `{unit}` is not a base unit (seconds, bytes, ratio)"
            );
        }
    }
}

#[test]
fn alert_rules_use_only_exported_metrics() {
    let defined = defined_metric_names();
    let rules = read(ALERT_RULES);
    assert_known_metrics(ALERT_RULES, &rules, &defined);
    for required in [
        "anomaly_detector_anomalies_total",
        "anomaly_detector_score",
        "anomaly_detector_threshold",
        "up{job=\"collector\"}",
        "anomaly_collector_delivery_errors_total",
        "anomaly_collector_buffer_depth",
    ] {
        assert!(
            rules.contains(required),
            "{ALERT_RULES} has no rule on {required}"
        );
    }
}

// ----- Grafana --------------------------------------------------------------------------------

/// The `uid:` values of the provisioned data sources.
fn datasource_uids() -> BTreeSet<String> {
    read(DATASOURCES)
        .lines()
        .filter_map(|line| yaml_value(line, "uid"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn datasources_are_provisioned_without_credentials() {
    let text = read(DATASOURCES);
    let uids = datasource_uids();
    for uid in ["prometheus", "postgres"] {
        assert!(
            uids.contains(uid),
            "{DATASOURCES}: no data source with uid {uid} (found {uids:?})"
        );
    }
    for key in ["password", "user", "database"] {
        for value in text.lines().filter_map(|line| yaml_value(line, key)) {
            assert!(
                value.starts_with("${") || value.starts_with("$__env{"),
                "{DATASOURCES}: `{key}: {value}` must come from the environment (${{VAR}} or $__env{{VAR}})"
            );
        }
    }
    let providers = read(DASHBOARD_PROVIDERS);
    assert!(
        providers.contains("type: file") && providers.contains("path: /etc/grafana/dashboards"),
        "{DASHBOARD_PROVIDERS}: expected a file provider reading /etc/grafana/dashboards"
    );
    assert!(
        read(COMPOSE).contains("./grafana/dashboards:/etc/grafana/dashboards"),
        "{COMPOSE} must mount deploy/grafana/dashboards where the dashboard provider reads"
    );
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

/// Every panel, nested ones (inside rows) included.
fn all_panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in panels.as_array().into_iter().flatten() {
            out.push(panel);
            if let Some(nested) = panel.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Every value of a `datasource` key anywhere in the dashboard, with the path leading to it.
fn all_datasource_refs(value: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let child_path = format!("{path}.{key}");
                if key == "datasource" {
                    out.push((child_path.clone(), child.clone()));
                }
                all_datasource_refs(child, &child_path, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                all_datasource_refs(child, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn uid_of(datasource: &Value) -> Option<&str> {
    datasource.get("uid").and_then(Value::as_str)
}

/// PromQL of every panel target.
fn panel_promql(dashboard: &Value) -> Vec<String> {
    all_panels(dashboard)
        .into_iter()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .filter_map(|target| target["expr"].as_str().map(str::to_owned))
        .collect()
}

/// PromQL of every panel target and the queries of the Prometheus template variables (Grafana's
/// `label_values(...)` included).
fn dashboard_promql(dashboard: &Value) -> Vec<String> {
    let mut queries = panel_promql(dashboard);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["datasource"]["type"] == "prometheus" {
            let query = &variable["query"];
            if let Some(q) = query.as_str().or_else(|| query["query"].as_str()) {
                queries.push(q.to_owned());
            }
            if let Some(q) = variable["definition"].as_str() {
                queries.push(q.to_owned());
            }
        }
    }
    queries
}

#[test]
fn dashboard_is_valid_and_live() {
    let dashboard = dashboard();
    assert_eq!(
        dashboard["time"]["from"], "now-1h",
        "{DASHBOARD}: time.from must be now-1h"
    );
    assert_eq!(
        dashboard["time"]["to"], "now",
        "{DASHBOARD}: time.to must be now"
    );
    let refresh = dashboard["refresh"].as_str().unwrap_or("");
    assert!(
        !refresh.is_empty(),
        "{DASHBOARD}: set \"refresh\" (e.g. \"10s\") so the dashboard follows live data"
    );

    let mut ids = BTreeSet::new();
    for panel in all_panels(&dashboard) {
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{DASHBOARD}: panel {} has no numeric id", panel["title"]));
        assert!(ids.insert(id), "{DASHBOARD}: panel id {id} is used twice");
    }

    let host = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == "host")
        .unwrap_or_else(|| panic!("{DASHBOARD}: no `host` template variable"));
    let query = host["query"]
        .as_str()
        .or_else(|| host["query"]["query"].as_str())
        .unwrap_or("");
    assert_eq!(
        collapse_whitespace(query),
        HOST_VARIABLE_QUERY,
        "{DASHBOARD}: the host variable must list label_values(anomaly_host_cpu_busy_ratio, host)"
    );
}

#[test]
fn dashboard_names_every_datasource_by_a_provisioned_uid() {
    let dashboard = dashboard();
    let uids = datasource_uids();
    for panel in all_panels(&dashboard) {
        if panel["type"] == "row" {
            continue;
        }
        let title = &panel["title"];
        assert!(
            uid_of(&panel["datasource"]).is_some(),
            "{DASHBOARD}: panel {title} names no datasource uid"
        );
        let targets = panel["targets"].as_array();
        assert!(
            targets.is_some_and(|t| !t.is_empty()),
            "{DASHBOARD}: panel {title} has no targets"
        );
        for target in targets.into_iter().flatten() {
            assert!(
                uid_of(&target["datasource"]).is_some(),
                "{DASHBOARD}: a target of panel {title} names no datasource uid"
            );
        }
    }
    let mut refs = Vec::new();
    all_datasource_refs(&dashboard, "$", &mut refs);
    assert!(!refs.is_empty(), "{DASHBOARD}: no datasource references");
    for (path, datasource) in refs {
        let uid = uid_of(&datasource).unwrap_or_else(|| {
            panic!("{DASHBOARD}: {path} = {datasource} must be an object with a uid")
        });
        assert!(
            uids.contains(uid),
            "{DASHBOARD}: {path} names datasource uid {uid:?}, which {DATASOURCES} does not provision ({uids:?})"
        );
    }
}

#[test]
fn dashboard_queries_only_exported_metrics_and_all_host_metrics() {
    let dashboard = dashboard();
    let defined = defined_metric_names();
    let queries = dashboard_promql(&dashboard);
    assert!(!queries.is_empty(), "{DASHBOARD}: no PromQL queries");
    for query in &queries {
        assert_known_metrics(&format!("{DASHBOARD} query `{query}`"), query, &defined);
    }

    let host_metrics: Vec<_> = defined
        .iter()
        .filter(|name| name.starts_with("anomaly_host_"))
        .collect();
    assert!(
        host_metrics.len() >= 7,
        "expected the collector's 7 host metrics, found {host_metrics:?}"
    );
    let panel_queries = panel_promql(&dashboard);
    for metric in host_metrics {
        let using: Vec<_> = panel_queries
            .iter()
            .filter(|q| metric_identifiers(q).contains(metric.as_str()))
            .collect();
        assert!(!using.is_empty(), "{DASHBOARD}: no panel shows {metric}");
        for query in using {
            assert!(
                query.contains("$host"),
                "{DASHBOARD}: `{query}` must filter on the host variable"
            );
        }
    }

    let score_vs_threshold = all_panels(&dashboard).into_iter().any(|panel| {
        let exprs: String = panel["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["expr"].as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let names = metric_identifiers(&exprs);
        names.contains("anomaly_detector_score") && names.contains("anomaly_detector_threshold")
    });
    assert!(
        score_vs_threshold,
        "{DASHBOARD}: no panel shows anomaly_detector_score against anomaly_detector_threshold"
    );
}

/// Parses every panel's PromQL with promtool, as recording rules with Grafana's variables replaced
/// by plausible values.
#[test]
fn dashboard_promql_parses() {
    let queries = panel_promql(&dashboard());
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, query) in queries.iter().enumerate() {
        let expr = query
            .replace("$__rate_interval", "1m")
            .replace("$__interval", "15s")
            .replace("$__range", "1h")
            .replace("$host", "web-1|web-2");
        assert!(
            !expr.contains('$'),
            "{DASHBOARD}: `{query}` uses a Grafana variable this test does not know"
        );
        let expr = serde_json::to_string(&expr).unwrap();
        rules.push_str(&format!(
            "      - record: dashboard:query_{i}\n        expr: {expr}\n"
        ));
    }
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deploy_files_dashboard_rules.yml");
    fs::write(&path, rules).unwrap();
    promtool(&["check", "rules", path.to_str().unwrap()]);
}

#[test]
fn dashboard_annotates_anomaly_events_from_postgres() {
    let dashboard = dashboard();
    let annotations: Vec<&Value> = dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| uid_of(&a["datasource"]) == Some("postgres"))
        .collect();
    assert!(
        !annotations.is_empty(),
        "{DASHBOARD}: no annotation query on the postgres datasource"
    );
    let sql: Vec<String> = annotations
        .iter()
        .filter_map(|a| {
            a["target"]["rawSql"]
                .as_str()
                .or_else(|| a["rawQuery"].as_str())
                .map(|s| collapse_whitespace(s).to_lowercase())
        })
        .collect();
    assert!(
        sql.iter().any(|s| s.contains("from anomalies")
            && s.contains("window_start as time")
            && s.contains("window_end as timeend")
            && s.contains(" as text")),
        "{DASHBOARD}: the PostgreSQL annotation must select window_start AS time, window_end AS \
         timeend and a text column FROM anomalies; found {sql:?}"
    );
}

// ----- Compose and image ----------------------------------------------------------------------

/// The lines of one top-level service of the Compose file.
fn compose_service<'a>(compose: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("  {name}:");
    let mut lines = compose.lines().skip_while(|line| *line != header);
    assert!(lines.next().is_some(), "{COMPOSE}: no service `{name}`");
    lines
        .take_while(|line| {
            line.is_empty() || line.starts_with("    ") || line.trim_start().starts_with('#')
        })
        .collect()
}

/// `(i, c)` for the characters of `s` outside `${...}` references.
fn outside_references(s: &str) -> Vec<(usize, char)> {
    let mut depth = 0usize;
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '$' if chars.peek().is_some_and(|&(_, next)| next == '{') => {
                depth += 1;
                chars.next();
            }
            '}' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push((i, c)),
            _ => {}
        }
    }
    out
}

/// `(authority, password)` of every `scheme://user:password@host` URL in `line`; `${...}`
/// references may hold any character.
fn url_passwords(line: &str) -> Vec<(&str, &str)> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(pos) = rest.find("://") {
        rest = &rest[pos + 3..];
        let top = outside_references(rest);
        let end = top
            .iter()
            .find(|(_, c)| matches!(c, '/' | '"' | '\'') || c.is_whitespace())
            .map_or(rest.len(), |&(i, _)| i);
        let authority = &rest[..end];
        let Some(&(at, _)) = top.iter().rev().find(|&&(i, c)| i < end && c == '@') else {
            continue;
        };
        if let Some(&(colon, _)) = top.iter().find(|&&(i, c)| i < at && c == ':') {
            found.push((authority, &rest[colon + 1..at]));
        }
    }
    found
}

#[test]
fn compose_pins_images_and_keeps_credentials_out() {
    let compose = read(COMPOSE);
    for service in [
        "kafka",
        "postgres",
        "prometheus",
        "grafana",
        "collector",
        "detector",
    ] {
        compose_service(&compose, service);
    }

    let images: Vec<&str> = compose
        .lines()
        .filter_map(|line| yaml_value(line, "image"))
        .collect();
    assert!(
        images.len() >= 5,
        "{COMPOSE}: expected images, found {images:?}"
    );
    for image in images {
        assert!(
            !image.contains('$'),
            "{COMPOSE}: image {image} must be pinned, not set from a variable"
        );
        if image.contains("@sha256:") {
            continue;
        }
        let name_end = image.rfind('/').map_or(0, |slash| slash + 1);
        let tag = image[name_end..]
            .split_once(':')
            .map(|(_, tag)| tag)
            .unwrap_or_else(|| panic!("{COMPOSE}: image {image} has no tag"));
        assert!(
            tag != "latest" && tag.bytes().any(|b| b.is_ascii_digit()),
            "{COMPOSE}: image {image} must be pinned to a version, not {tag:?}"
        );
    }

    for (n, line) in compose.lines().enumerate() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        if trimmed.starts_with('#') {
            continue;
        }
        let Some((key, value)) = trimmed.split_once(": ").or_else(|| trimmed.split_once('='))
        else {
            continue;
        };
        let key = key.to_ascii_uppercase();
        if ["PASSWORD", "SECRET", "TOKEN"]
            .iter()
            .any(|k| key.contains(k))
        {
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            assert!(
                value.starts_with("${"),
                "{COMPOSE}:{}: {key} must be a ${{VAR}} reference to deploy/.env, not a literal",
                n + 1
            );
        }
        for (authority, password) in url_passwords(line) {
            assert!(
                password.starts_with("${"),
                "{COMPOSE}:{}: the password in {authority} must be a ${{VAR}} reference",
                n + 1
            );
        }
    }

    let kafka = compose_service(&compose, "kafka").join("\n");
    for setting in [
        "KAFKA_PROCESS_ROLES",
        "KAFKA_CONTROLLER_QUORUM_VOTERS",
        "KAFKA_CONTROLLER_LISTENER_NAMES",
    ] {
        assert!(
            kafka.contains(setting),
            "{COMPOSE}: Kafka must run in KRaft mode ({setting} missing)"
        );
    }
    assert!(
        !compose
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .any(|l| l.to_ascii_lowercase().contains("zookeeper")),
        "{COMPOSE}: KRaft mode needs no ZooKeeper"
    );
}

#[test]
fn compose_variables_are_all_in_the_env_example() {
    let compose = read(COMPOSE);
    let example = read(ENV_EXAMPLE);
    assert!(
        example.trim_start().starts_with('#'),
        "{ENV_EXAMPLE} must open with a comment saying how to use it"
    );
    let defined: BTreeMap<&str, &str> = example
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let mut references = 0;
    for line in compose.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(pos) = rest.find("${") {
            // `$${` is Compose's escape for a literal `${`, expanded by the container's shell.
            let escaped = rest[..pos].ends_with('$');
            rest = &rest[pos + 2..];
            if escaped {
                continue;
            }
            let end = rest
                .find('}')
                .unwrap_or_else(|| panic!("{COMPOSE}: unterminated ${{ in `{line}`"));
            let reference = &rest[..end];
            let name_end = reference.find([':', '-', '?']).unwrap_or(reference.len());
            let (name, modifier) = reference.split_at(name_end);
            let has_default = modifier.starts_with(":-") || modifier.starts_with('-');
            assert!(
                has_default || defined.contains_key(name),
                "{COMPOSE} needs ${{{name}}}, which {ENV_EXAMPLE} does not define"
            );
            references += 1;
        }
    }
    assert!(references > 0, "{COMPOSE} takes nothing from deploy/.env");
    for (key, value) in &defined {
        if key.contains("PASSWORD") {
            assert!(
                value.contains("change-me"),
                "{ENV_EXAMPLE}: {key} must hold a placeholder, not a real password"
            );
        }
    }
}

#[test]
fn compose_collector_reads_the_host_and_uses_real_flags() {
    let compose = read(COMPOSE);
    let collector = compose_service(&compose, "collector");
    let text = collector.join("\n");
    for needle in [
        "- collect",
        "--proc-root=/host/proc",
        "--sys-root=/host/sys",
        "/proc:/host/proc:ro",
        "/sys:/host/sys:ro",
    ] {
        assert!(
            text.contains(needle),
            "{COMPOSE}: the collector service needs `{needle}`"
        );
    }
    assert_flags_exist(&collector, "collect", COLLECT_ARGS);
    let detector = compose_service(&compose, "detector");
    assert!(
        detector.join("\n").contains("- detect")
            && detector.join("\n").contains("--brokers=kafka:9092"),
        "{COMPOSE}: the detector service must run `anomaly detect` against kafka:9092"
    );
    assert_flags_exist(&detector, "detect", DETECT_ARGS);
    // Secrets travel by environment: no password on any command line.
    for line in compose_service(&compose, "detector") {
        assert!(
            !(line.trim().starts_with("- --") && line.contains("${POSTGRES_PASSWORD")),
            "{COMPOSE}: the detector's database URL must come from the environment: {line}"
        );
    }
    assert!(
        detector
            .iter()
            .any(|line| line.trim().starts_with("ANOMALY_DATABASE_URL:")),
        "{COMPOSE}: the detector needs ANOMALY_DATABASE_URL"
    );
    // The dead-letter topic exists before the detector starts (auto-creation is off).
    let init = compose_service(&compose, "kafka-init").join("\n");
    assert!(
        init.contains("metrics.dead-letter"),
        "{COMPOSE}: kafka-init must create the dead-letter topic"
    );

    // Bind mounts of deploy/ folders exist.
    for line in compose.lines() {
        if let Some(mount) = line.trim().strip_prefix("- ./") {
            let source = mount.split(':').next().unwrap();
            assert!(
                repo_root().join("deploy").join(source).exists(),
                "{COMPOSE} mounts ./{source}, which does not exist under deploy/"
            );
        }
    }
}

#[test]
fn dockerfile_builds_the_release_binary_on_pinned_bases() {
    let dockerfile = read(DOCKERFILE);
    let bases: Vec<&str> = dockerfile
        .lines()
        .filter_map(|line| line.strip_prefix("FROM "))
        .map(|rest| rest.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        bases.len(),
        2,
        "{DOCKERFILE}: expected a builder and a runtime stage"
    );
    for base in bases {
        let tag = base.split_once(':').map(|(_, tag)| tag);
        assert!(
            tag.is_some_and(|tag| tag != "latest"),
            "{DOCKERFILE}: base image {base} must be pinned to a tag"
        );
    }
    for needle in [
        "-p anomaly-apps",
        "--release",
        "libpq5",
        "ca-certificates",
        "ENTRYPOINT [\"anomaly\"]",
    ] {
        assert!(
            dockerfile.contains(needle),
            "{DOCKERFILE}: missing `{needle}`"
        );
    }
    assert!(
        read(COMPOSE).contains("dockerfile: deploy/Dockerfile"),
        "{COMPOSE} must build the apps from deploy/Dockerfile"
    );
}

/// Every flag the compose service passes to `anomaly <subcommand>` is a field of its clap
/// arguments in `args_file` (clap names `--a-b` after `a_b`).
fn assert_flags_exist(service: &[&str], subcommand: &str, args_file: &str) {
    let args = read(args_file);
    for line in service {
        let Some(flag) = line.trim().strip_prefix("- --") else {
            continue;
        };
        let name = flag.split('=').next().unwrap();
        let field = format!("pub {}:", name.replace('-', "_"));
        assert!(
            args.contains(&field),
            "{COMPOSE}: `anomaly {subcommand}` has no flag --{name} ({args_file} has no `{field}`)"
        );
    }
}
