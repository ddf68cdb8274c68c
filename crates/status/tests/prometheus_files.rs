//! The fleet monitoring files a support provider installs (`appliance/prometheus` and
//! `appliance/grafana`): the alerting rules pass `promtool check rules` and their own unit tests,
//! the rules and the dashboard name only metrics a box exposes, and a fully populated status
//! exposes every one of those metrics with the labels the rules select on.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use oscarbox_watchdog_api::{
    BackupStatus, BoxStatus, DatabaseStatus, DbNodeStatus, DrillSummary, FailoverSummary,
    ProxyStatus, Reason, Severity, Space, SystemStatus, TlsStatus, Verdict, WorkerStatus,
};

const RULES: &str = "appliance/prometheus/oscarbox-rules.yml";
const RULE_TESTS: &str = "appliance/prometheus/oscarbox-rules.test.yml";
const DASHBOARD: &str = "appliance/grafana/oscarbox-fleet.json";

/// Every metric a box exposes, as its samples are named (counters end in `_total`, info metrics
/// in `_info`), and Prometheus's own `up`. The rules and the dashboard may name no other.
const METRICS: &[&str] = &[
    "up",
    "oscarbox_box_info",
    "oscarbox_status",
    "oscarbox_problem",
    "oscarbox_status_checked_timestamp_seconds",
    "oscarbox_watchdog_up",
    "oscarbox_emr_instances",
    "oscarbox_emr_instance_healthy",
    "oscarbox_emr_instance_restarts_total",
    "oscarbox_emr_instance_probe_seconds",
    "oscarbox_emr_instance_resident_memory_bytes",
    "oscarbox_proxy_up",
    "oscarbox_proxy_backends_up",
    "oscarbox_database_up",
    "oscarbox_database_writable",
    "oscarbox_database_replication_lag_seconds",
    "oscarbox_database_semi_sync_enabled",
    "oscarbox_database_last_failover_timestamp_seconds",
    "oscarbox_backup_disk_present",
    "oscarbox_backup_newest_age_seconds",
    "oscarbox_backup_drill_last_timestamp_seconds",
    "oscarbox_backup_drill_passed",
    "oscarbox_filesystem_size_bytes",
    "oscarbox_filesystem_avail_bytes",
    "oscarbox_memory_total_bytes",
    "oscarbox_memory_available_bytes",
    "oscarbox_cpus",
    "oscarbox_cpu_usage_ratio",
    "oscarbox_load_average",
    "oscarbox_tls_certificate_expiry_timestamp_seconds",
];

/// The alerts the rules must define, each with `for:`, a severity, a summary and a description.
const ALERTS: &[&str] = &[
    "OscarBoxUnreachable",
    "OscarBoxCritical",
    "OscarBoxDegraded",
    "OscarBoxEmrInstanceDown",
    "OscarBoxNoEmrInstance",
    "OscarBoxDatabaseDown",
    "OscarBoxDatabaseReadOnly",
    "OscarBoxReplicationLag",
    "OscarBoxBackupDiskMissing",
    "OscarBoxBackupStale",
    "OscarBoxBackupDrillFailed",
    "OscarBoxDiskWillFill",
    "OscarBoxDiskAlmostFull",
    "OscarBoxTlsExpiring",
    "OscarBoxStatusStale",
    "OscarBoxRestartsHigh",
];

fn root() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize()
        .unwrap_or_else(|e| panic!("find the workspace root {}: {e}", root.display()))
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Runs promtool in the workspace root and returns what it printed; fails the test when promtool
/// is missing or says no.
fn promtool(args: &[&str]) -> String {
    let out = match Command::new("promtool")
        .args(args)
        .current_dir(root())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not installed (it comes with Debian's `prometheus` package): run \
             `scripts/install-deps --test`"
        ),
        Err(e) => panic!("run promtool {}: {e}", args.join(" ")),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    text
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// Every `oscarbox_[a-z0-9_]+` name in `text`, where a name starts (not inside a longer word).
fn oscarbox_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut names = BTreeSet::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("oscarbox_") {
        let start = from + at;
        let len = bytes[start..]
            .iter()
            .take_while(|&&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            .count();
        let end = start + len;
        let inside_a_word = start > 0 && is_name_byte(bytes[start - 1]);
        if !inside_a_word {
            names.insert(text[start..end].to_owned());
        }
        from = end;
    }
    names
}

/// The names in `found` that are not in [`METRICS`], with where they were found.
fn not_exposed(found: &BTreeSet<String>) -> Vec<String> {
    found
        .iter()
        .filter(|n| !METRICS.contains(&n.as_str()))
        .cloned()
        .collect()
}

/// Where `up` is used as a metric in a `PromQL` expression, it must be the boxes' own.
fn assert_up_is_the_boxes(expr: &str, whence: &str) {
    let bytes = expr.as_bytes();
    let mut from = 0;
    while let Some(at) = expr[from..].find("up") {
        let start = from + at;
        let end = start + 2;
        from = end;
        let alone = (start == 0 || !is_name_byte(bytes[start - 1]))
            && bytes.get(end).is_none_or(|&b| !is_name_byte(b));
        if alone {
            assert!(
                expr[end..].starts_with("{job=\"oscarbox\""),
                "{whence}: `up` must select job=\"oscarbox\" first, in:\n{expr}"
            );
        }
    }
}

/// The rules' `expr:` values, read line by line: the rest of the `expr:` line and the lines
/// indented deeper than it.
fn rule_exprs(rules: &str) -> Vec<String> {
    let mut exprs = Vec::new();
    let mut lines = rules.lines().peekable();
    while let Some(line) = lines.next() {
        let indent = line.len() - line.trim_start().len();
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let mut expr = rest.trim().trim_start_matches(">-").trim().to_owned();
        while let Some(next) = lines.peek() {
            let next_indent = next.len() - next.trim_start().len();
            if !next.trim().is_empty() && next_indent <= indent {
                break;
            }
            expr.push(' ');
            expr.push_str(next.trim());
            lines.next();
        }
        exprs.push(expr);
    }
    exprs
}

#[test]
fn promtool_accepts_the_rules() {
    let out = promtool(&["check", "rules", RULES]);
    assert!(out.contains("SUCCESS"), "promtool check rules said:\n{out}");
}

#[test]
fn the_rules_pass_their_unit_tests() {
    let out = promtool(&["test", "rules", RULE_TESTS]);
    assert!(out.contains("SUCCESS"), "promtool test rules said:\n{out}");
}

#[test]
fn every_rule_says_how_long_how_bad_and_what_to_do() {
    let rules = read(RULES);
    let blocks: Vec<&str> = rules.split("- alert: ").skip(1).collect();
    let mut defined = BTreeSet::new();
    for block in &blocks {
        let name = block
            .lines()
            .next()
            .expect("a name after `- alert:`")
            .trim();
        defined.insert(name.to_owned());
        for want in ["for: ", "summary: ", "description: "] {
            assert!(block.contains(want), "{name} has no `{want}`");
        }
        assert!(
            block.contains("severity: warning") || block.contains("severity: critical"),
            "{name}: severity must be warning or critical"
        );
    }
    for alert in ALERTS {
        assert!(defined.contains(*alert), "{RULES} defines no {alert}");
    }
    assert!(
        rules.contains("- name: oscarbox\n"),
        "the group is named oscarbox"
    );
}

#[test]
fn the_rules_name_only_metrics_a_box_exposes() {
    let rules = read(RULES);
    let names = oscarbox_names(&rules);
    assert!(names.len() > 15, "found the rules' metrics: {names:?}");
    let unknown = not_exposed(&names);
    assert!(
        unknown.is_empty(),
        "{RULES} names metrics no box exposes: {unknown:?}"
    );
    let exprs = rule_exprs(&rules);
    assert!(
        exprs.len() >= ALERTS.len(),
        "found the rules' expressions: {exprs:?}"
    );
    assert!(
        exprs
            .iter()
            .any(|e| e.contains("up{job=\"oscarbox\"} == 0")),
        "{exprs:?}"
    );
    for expr in &exprs {
        assert_up_is_the_boxes(expr, RULES);
    }
    // The rules' tests feed series by the same names.
    let unknown_in_tests = not_exposed(&oscarbox_names(&read(RULE_TESTS)));
    assert!(
        unknown_in_tests.is_empty(),
        "{RULE_TESTS} feeds unknown metrics: {unknown_in_tests:?}"
    );
}

/// Every string under a key named `expr`, `query` or `definition`, anywhere in the dashboard:
/// panel targets (rows' nested panels included), template variables and annotations.
fn queries(value: &serde_json::Value, whence: &str, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                let here = format!("{whence}.{key}");
                match (key.as_str(), v) {
                    ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                        out.push((here, s.clone()));
                    }
                    _ => queries(v, &here, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                queries(v, &format!("{whence}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read(DASHBOARD))
        .unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"))
}

#[test]
fn the_dashboard_names_only_metrics_a_box_exposes() {
    let dashboard = dashboard();
    let mut found = Vec::new();
    queries(&dashboard, "", &mut found);
    assert!(found.len() > 20, "found the dashboard's queries: {found:?}");
    let mut all = BTreeSet::new();
    for (whence, query) in &found {
        let names = oscarbox_names(query);
        let unknown = not_exposed(&names);
        assert!(
            unknown.is_empty(),
            "{DASHBOARD} {whence} names metrics no box exposes: {unknown:?}"
        );
        if whence.ends_with(".expr") {
            assert_up_is_the_boxes(query, whence);
        }
        all.extend(names);
    }
    assert!(all.len() > 20, "the dashboard shows most metrics: {all:?}");
}

#[test]
fn the_dashboard_has_its_variables_and_every_panel_its_query() {
    let dashboard = dashboard();
    let schema = dashboard["schemaVersion"]
        .as_u64()
        .expect("a schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    let vars = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let var = |name: &str| {
        vars.iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no template variable {name}"))
    };
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    for name in ["box", "instance"] {
        let query = var(name)["definition"].as_str().expect("a definition");
        assert!(
            query.starts_with("label_values(oscarbox_box_info"),
            "${name}: {query}"
        );
    }

    let mut panels: Vec<&serde_json::Value> = Vec::new();
    let mut stack: Vec<&serde_json::Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect();
    while let Some(p) = stack.pop() {
        if let Some(nested) = p["panels"].as_array() {
            stack.extend(nested);
        }
        if p["type"] != "row" {
            panels.push(p);
        }
    }
    let mut ids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for p in &panels {
        let title = p["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(p["id"].as_u64().expect("an id")),
            "{title}: id used twice"
        );
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "{title}: the datasource variable"
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(expr.contains("oscarbox_"), "{title}: {expr:?}");
            assert!(
                expr.contains("$instance"),
                "{title} follows the $instance variable: {expr}"
            );
        }
        titles.insert(title.to_owned());
    }
    for want in [
        "Fleet",
        "Status",
        "EMR instances healthy",
        "Restarts",
        "Probe seconds",
        "EMR instance memory",
        "Database up / writable",
        "Replication lag",
        "Backup ages",
        "Filesystem use",
        "TLS certificate expiry",
    ] {
        assert!(titles.contains(want), "no panel {want:?} in {titles:?}");
    }
}

/// A status with every optional fact known: two EMR instances, two database nodes.
fn everything_known() -> BoxStatus {
    let now = 1_700_000_000;
    let worker = |instance: u32, state: &str| WorkerStatus {
        instance,
        state: state.into(),
        why: "answers isAlive".into(),
        pid: Some(4000 + i32::try_from(instance).expect("small")),
        uptime_seconds: Some(3600),
        restarts: instance,
        last_probe_ms: Some(1.5),
        rss_bytes: Some(700 << 20),
    };
    let node = |name: &str, role: &str, lag: f64| DbNodeStatus {
        name: name.into(),
        role: Some(role.into()),
        reachable: Some(true),
        lag_seconds: Some(lag),
        semi_sync: Some(true),
    };
    let space = |path: &str| Space {
        path: path.into(),
        total_bytes: 500 << 30,
        available_bytes: 300 << 30,
    };
    BoxStatus {
        version: oscarbox_watchdog_api::VERSION,
        box_name: "maple".into(),
        software_version: "0.1.0".into(),
        checked_at: now,
        verdict: Verdict::Degraded,
        reasons: vec![Reason {
            id: "emr-instance-down".into(),
            severity: Severity::Warning,
            component: "emr".into(),
            instance: Some(2),
            what: "EMR instance 2 does not answer".into(),
            todo: "nothing yet: the watchdog is restarting it".into(),
        }],
        watchdog_running: true,
        instances: vec![worker(1, "healthy"), worker(2, "hung")],
        proxy: ProxyStatus {
            reachable: true,
            backends_up: 1,
            backends: 2,
        },
        database: DatabaseStatus {
            endpoint_reachable: true,
            writable: Some(true),
            nodes: vec![node("db1", "primary", 0.0), node("db2", "replica", 0.4)],
            last_failover: Some(FailoverSummary {
                at: now - 86_400,
                seconds_to_recover: Some(4.5),
                transactions_lost: Some(0),
            }),
        },
        backups: BackupStatus {
            disk_present: true,
            disk_problem: Some("none".into()),
            disk: Some(space("/srv/backup")),
            newest_database_age_seconds: Some(60),
            newest_documents_age_seconds: Some(1800),
            last_drill: Some(DrillSummary {
                at: now - 3600,
                passed: true,
            }),
        },
        system: SystemStatus {
            disk: Some(space("/var/lib/oscarbox")),
            memory_total_bytes: 16 << 30,
            memory_available_bytes: 8 << 30,
            cpus: 4,
            cpu_usage_percent: 12.5,
            load_average: [0.5, 0.75, 1.0],
            uptime_seconds: 86_400,
        },
        tls: Some(TlsStatus {
            not_after: now + 60 * 86_400,
        }),
    }
}

/// Series the rules and the dashboard select on, as the exposition must write them (one label
/// each, so their text is exact).
const SELECTED_SERIES: &[&str] = &[
    "oscarbox_status{status=\"ok\"}",
    "oscarbox_status{status=\"degraded\"}",
    "oscarbox_status{status=\"critical\"}",
    "oscarbox_emr_instance_healthy{emr_instance=\"1\"}",
    "oscarbox_emr_instance_restarts_total{emr_instance=\"2\"}",
    "oscarbox_emr_instance_probe_seconds{emr_instance=\"1\"}",
    "oscarbox_emr_instance_resident_memory_bytes{emr_instance=\"1\"}",
    "oscarbox_database_replication_lag_seconds{node=\"db2\"}",
    "oscarbox_database_semi_sync_enabled{node=\"db1\"}",
    "oscarbox_backup_newest_age_seconds{kind=\"database\"}",
    "oscarbox_backup_newest_age_seconds{kind=\"documents\"}",
    "oscarbox_filesystem_size_bytes{disk=\"system\"}",
    "oscarbox_filesystem_avail_bytes{disk=\"backup\"}",
    "oscarbox_load_average{period=\"5m\"}",
];

#[test]
fn a_box_exposes_every_metric_the_rules_and_dashboard_use() {
    let text = oscarbox_status::metrics::encode(&everything_known());
    let samples: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.rsplit_once(' ').map_or(l, |(series, _)| series))
        .collect();
    let names: BTreeSet<&str> = samples
        .iter()
        .map(|s| s.split('{').next().unwrap_or(s))
        .collect();
    let missing: Vec<&&str> = METRICS
        .iter()
        .filter(|m| **m != "up" && !names.contains(**m))
        .collect();
    assert!(missing.is_empty(), "not exposed: {missing:?} in\n{text}");
    for series in SELECTED_SERIES {
        assert!(samples.contains(series), "no {series} in\n{text}");
    }
    // Prometheus gives every scraped series its target's `instance`: a label of the same name
    // from the box would be renamed `exported_instance`, and the rules would not find it.
    for series in &samples {
        let labels = series.split_once('{').map_or("", |(_, l)| l);
        assert!(
            !labels.starts_with("instance=") && !labels.contains(",instance="),
            "{series}: the EMR instance's label must be `emr_instance`, not `instance`"
        );
    }
    assert!(
        samples
            .iter()
            .any(|s| s.starts_with("oscarbox_problem{") && s.contains("emr_instance=\"2\"")),
        "the problem about instance 2 names it with `emr_instance` in\n{text}"
    );
}
