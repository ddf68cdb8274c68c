//! Every shipped config parses; broken ones give exact, actionable messages.

use super::*;
use std::path::PathBuf;
use std::time::Duration;

fn errors(text: &str) -> String {
    parse("test.toml", text)
        .expect_err("config should be refused")
        .to_string()
}

const MINIMAL: &str = r#"version = 1
[box]
profile = "dev"
[[database.nodes]]
name = "db1"
port = 3306
data-dir = "var/db1"
"#;

#[test]
fn every_shipped_config_parses() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("config/ is readable") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            load(&path).unwrap_or_else(|e| panic!("{} does not validate:\n{e}", path.display()));
            seen += 1;
        }
    }
    assert!(
        seen >= 2,
        "expected at least box.toml and dev.toml, found {seen}"
    );
    let dev = dev_default();
    assert_eq!(dev.box_.profile, Profile::Dev);
    assert_eq!(dev.emr.instance_addr(2).map(|a| a.port()), Some(18082));
}

#[test]
fn appliance_has_no_fault_injection_and_requires_the_mount() {
    let cfg = load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/box.toml"
    )))
    .expect("box.toml validates");
    assert_eq!(cfg.box_.profile, Profile::Appliance);
    assert!(!cfg.emr.fault_injection.enabled);
    assert!(cfg.backup.require_mount);
    assert_eq!(cfg.proxy.https_ports, vec![443, 8443]);
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let text = format!("{MINIMAL}[emr]\ninstances = 2\nbase-prot = 8081\n");
    let msg = errors(&text);
    assert!(
        msg.starts_with("test.toml:10: emr.base-prot: unknown field `base-prot`, expected one of"),
        "{msg}"
    );
}

#[test]
fn bad_port_names_the_range() {
    let text = format!("{MINIMAL}[emr]\nbase-port = 70000\n");
    assert_eq!(
        errors(&text),
        "test.toml:9: emr.base-port: expected a port number from 1 to 65535, found 70000"
    );
    let text = MINIMAL.replace("port = 3306", "port = 0");
    assert_eq!(
        errors(&text),
        "test.toml:6: database.nodes[0].port: expected a port number from 1 to 65535, found 0"
    );
}

#[test]
fn wrong_type_and_bad_duration() {
    let msg = errors(&format!("{MINIMAL}[emr]\ninstances = \"two\"\n"));
    assert!(msg.starts_with("test.toml:9: "), "{msg}");
    assert!(
        msg.contains("invalid type: string \"two\", expected i64"),
        "{msg}"
    );
    assert_eq!(
        errors(&format!("{MINIMAL}[emr]\nshutdown-grace = \"soon\"\n")),
        "test.toml:9: emr.shutdown-grace: expected a duration such as \"500ms\", \"10s\" or \"5m\", found \"soon\" (expected number at 0)"
    );
}

#[test]
fn missing_file_is_named() {
    let err = load(Path::new("/nonexistent/box.toml")).expect_err("missing file");
    assert_eq!(
        err.to_string(),
        "/nonexistent/box.toml: cannot read the configuration file: No such file or directory (os error 2); check the path, or omit --config to use the embedded development default"
    );
    let text = format!("{MINIMAL}[proxy]\ntls-cert-file = \"/nonexistent/cert.pem\"\ntls-key-file = \"/nonexistent/key.pem\"\n");
    let msg = errors(&text);
    assert!(msg.contains("test.toml:9: proxy.tls-cert-file: cannot read /nonexistent/cert.pem: No such file or directory (os error 2)"), "{msg}");
}

#[test]
fn fault_injection_is_refused_on_the_appliance() {
    let text = MINIMAL.replace("profile = \"dev\"", "profile = \"appliance\"")
        + "[emr.fault-injection]\nenabled = true\n";
    let msg = errors(&text);
    assert_eq!(
        msg,
        "test.toml:9: emr.fault-injection.enabled: fault injection is for development and tests only; remove it, or set box.profile = \"dev\" on a machine that holds no patient data"
    );
}

#[test]
fn all_errors_are_reported_at_once() {
    let text = "version = 2\n[box]\nprofile = \"lab\"\n";
    let msg = errors(text);
    assert_eq!(msg.lines().count(), 3, "{msg}");
    assert!(msg.contains(
        "test.toml:1: version: this oscarbox understands configuration version 1, found 2"
    ));
    assert!(
        msg.contains("test.toml:3: box.profile: expected \"appliance\" or \"dev\", found \"lab\"")
    );
    assert!(msg.contains("database.nodes: expected at least one [[database.nodes]] entry"));
}

#[test]
fn port_collisions_are_refused() {
    let text = format!("{MINIMAL}[emr]\nbase-port = 3305\ninstances = 2\n");
    let msg = errors(&text);
    assert!(
        msg.contains("port 3306 of database.nodes[0].port is also used by emr instance 2"),
        "{msg}"
    );
}

#[test]
fn database_endpoint_must_be_loopback() {
    let text = MINIMAL.replace(
        "[[database.nodes]]",
        "[database]\nendpoint = \"10.0.0.5:3306\"\n[[database.nodes]]",
    );
    assert!(errors(&text).contains("database.endpoint: the database endpoint must be on loopback"));
}

#[test]
fn worker_arguments_expand_their_placeholders() {
    let text = format!("{MINIMAL}[emr]\nbase-port = 9000\nargs = [\"--config\", \"{{config}}\", \"-p{{port}}\", \"--instance={{instance}}\"]\n");
    let cfg = parse("test.toml", &text).expect("valid");
    assert_eq!(
        cfg.emr.worker_args(Path::new("/etc/oscarbox/box.toml"), 2),
        [
            "--config",
            "/etc/oscarbox/box.toml",
            "-p9001",
            "--instance=2"
        ]
    );
    let bad = format!(
        "{MINIMAL}[emr]\nargs = [\"{{conf}}\"]\nkind = \"tomcat\"\nprobe-path = \"oscar/ws\"\n"
    );
    let msg = errors(&bad);
    assert!(msg.contains("test.toml:10: emr.kind: expected \"oscar-emr\", \"jvm\" or \"process\", found \"tomcat\""), "{msg}");
    assert!(
        msg.contains("test.toml:11: emr.probe-path: expected the SystemInfoService path"),
        "{msg}"
    );
    assert!(
        msg.contains(
            "emr.args[0]: unknown placeholder {conf}: expected {config}, {instance} or {port}"
        ),
        "{msg}"
    );
}

#[test]
fn watchdog_settings_are_typed() {
    let text = format!("{MINIMAL}[watchdog]\nprobe-interval = \"250ms\"\nmemory-ceiling-mib = 512\nfailure-threshold = 0\n");
    assert_eq!(
        errors(&text),
        "test.toml:11: watchdog.failure-threshold: expected a whole number from 1 to 100, found 0"
    );
    let cfg = parse(
        "test.toml",
        &format!("{MINIMAL}[watchdog]\nprobe-interval = \"250ms\"\nmemory-ceiling-mib = 512\n"),
    )
    .expect("valid");
    assert_eq!(
        cfg.watchdog.probe_interval,
        std::time::Duration::from_millis(250)
    );
    assert_eq!(cfg.watchdog.memory_ceiling, Some(512 * 1024 * 1024));
    assert!(cfg.watchdog.control_socket.ends_with("run/watchdog.sock"));
}

#[test]
fn watchdog_bounds_protect_the_box() {
    let msg = errors(&format!(
        "{MINIMAL}[emr]\nshutdown-grace = \"20s\"\nprobe-path = \"/oscar/ws/SystemInfoService/\"\n[watchdog]\nprobe-interval = \"1ms\"\nstop-grace = \"10s\"\nmemory-ceiling-mib = 9223372036854775807\n"
    ));
    assert!(
        msg.contains("emr.probe-path: expected the SystemInfoService path"),
        "{msg}"
    );
    assert!(
        msg.contains("watchdog.probe-interval: expected at least 50ms"),
        "{msg}"
    );
    assert!(
        msg.contains("watchdog.stop-grace: must be longer than emr.shutdown-grace (20s)"),
        "{msg}"
    );
    assert!(
        msg.contains("watchdog.memory-ceiling-mib: expected 0 (no ceiling) or a size in MiB"),
        "{msg}"
    );
    let msg = errors(&format!("{MINIMAL}[emr]\nlogin-lockout = \"30days\"\n"));
    assert!(
        msg.contains("emr.login-lockout: expected at most 24h"),
        "{msg}"
    );
}

#[test]
fn proxy_settings_are_typed_and_bounded() {
    let ok = parse(
        "test.toml",
        &format!("{MINIMAL}[proxy]\nfirst-byte-timeout = \"600ms\"\nmax-request-body-mib = 100\nsticky-sessions = true\n"),
    )
    .expect("valid");
    assert_eq!(ok.proxy.first_byte_timeout, Duration::from_millis(600));
    assert_eq!(ok.proxy.max_request_body_bytes, 100 << 20);
    assert!(ok.proxy.sticky_sessions);
    assert_eq!(
        ok.proxy.admin_socket,
        PathBuf::from("/var/lib/oscarbox/run/proxy.sock")
    );
    assert_eq!(
        ok.emr.probe_base(2).as_deref(),
        Some("http://127.0.0.1:8082")
    );

    let e = errors(&format!(
        "{MINIMAL}[proxy]\nhttps-ports = []\nretry-budget-percent = 150\nmax-header-kib = 2\nhealth-timeout = \"5s\"\n"
    ));
    for needle in [
        "proxy.https-ports: expected at least one HTTPS port",
        "proxy.retry-budget-percent: expected a percentage from 0 to 100, found 150",
        "proxy.max-header-kib: expected a size from 8 to 1024 KiB, found 2",
        "proxy.health-timeout: expected at most four health intervals",
    ] {
        assert!(e.contains(needle), "missing {needle:?} in:\n{e}");
    }
}

#[test]
fn status_and_alerts_are_typed_and_bounded() {
    let c = parse(
        "test.toml",
        &format!(
            "{MINIMAL}[status]\nport = 9444\ninterval = \"3s\"\n[alerts]\nheartbeat-url = \"http://127.0.0.1:9/ping\"\nheartbeat-style = \"uptime-kuma\"\n"
        ),
    )
    .expect("valid");
    assert_eq!(c.status.listen.port(), 9444);
    assert_eq!(c.status.interval, Duration::from_secs(3));
    let hb = c.alerts.heartbeat.expect("a heartbeat");
    assert_eq!(hb.style, HeartbeatStyle::UptimeKuma);
    assert_eq!(hb.interval, Duration::from_secs(60));

    let e = errors(&format!(
        "{MINIMAL}[status]\ninterval = \"10m\"\n[alerts]\nrepeat-interval = \"1s\"\nheartbeat-style = \"pager\"\n"
    ));
    assert!(
        e.contains("test.toml:9: status.interval: expected from 1s to 5m"),
        "{e}"
    );
    assert!(
        e.contains("alerts.repeat-interval: expected from 1m to 7days"),
        "{e}"
    );
    assert!(
        e.contains("alerts.heartbeat-style: expected \"healthchecks\" or \"uptime-kuma\""),
        "{e}"
    );

    let appliance = MINIMAL.replace("profile = \"dev\"", "profile = \"appliance\"");
    let e = errors(&format!(
        "{appliance}[backup]\ndisk = \"/srv/backup\"\n[alerts]\nwebhook-url = \"http://alerts.example.org/hook\"\n"
    ));
    assert!(
        e.contains("alerts.webhook-url: expected an https:// URL"),
        "{e}"
    );
}
