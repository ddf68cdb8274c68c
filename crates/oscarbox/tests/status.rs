//! The box's status end to end, with real parts: MariaDB, the watchdog with an EMR instance,
//! the proxy, the admin listener over HTTPS, headless Chromium on the status page, `promtool`
//! on the metrics, a webhook and a push monitor on loopback, `oscarbox status` and `oscarbox
//! fleet status`; and no patient's name in any of it.

use std::convert::Infallible;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use oscarbox_test_harness::{box_client, MariaDb, Proxy, Watchdog};
use oscarbox_watchdog_api::BoxStatus;

const OSCARBOX: &str = env!("CARGO_BIN_EXE_oscarbox");
const WAIT: Duration = Duration::from_secs(60);

/// Patients with names no status text could contain by chance.
const PATIENTS: [(&str, &str); 3] = [
    ("Quillfeather", "Zenobia"),
    ("Marblethwaite", "Octavius"),
    ("Vantongeren", "Philomena"),
];

/// What a webhook or push monitor received: method and path, then the body.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A webhook and push-monitor receiver on loopback. The first `proxy-down` alert it gets is
/// answered 503, so that its delivery has to retry.
async fn receiver() -> anyhow::Result<(String, Seen)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let record = Arc::clone(&record);
                        async move {
                            let what = format!("{} {}", req.method(), req.uri());
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let is_proxy_down = |body: &[u8]| {
                                serde_json::from_slice::<serde_json::Value>(body)
                                    .is_ok_and(|v| v["id"] == "proxy-down")
                            };
                            let mut seen = record.lock().expect("lock");
                            let first_alert = what.starts_with("POST /hook")
                                && is_proxy_down(&body)
                                && !seen.iter().any(|(_, b)| is_proxy_down(b.as_bytes()));
                            seen.push((what, String::from_utf8_lossy(&body).into_owned()));
                            let code = if first_alert { 503 } else { 200 };
                            let mut r = hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
                            *r.status_mut() = hyper::StatusCode::from_u16(code).expect("a status");
                            Ok::<_, Infallible>(r)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((base, seen))
}

async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = probe().await {
            return Ok(v);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "not {what} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn oscarbox(args: &[&str]) -> anyhow::Result<(i32, String)> {
    let out = Command::new(OSCARBOX).args(args).output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// Runs a Debian tool the test suite installs; a missing one fails with how to get it.
fn tool(program: &str, args: &[&str], stdin: Option<&str>) -> anyhow::Result<std::process::Output> {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!("cannot run {program} ({e}); run scripts/install-deps --test")
        })?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(text.as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

/// Prometheus's own OpenMetrics parser reads the exposition: `promtool tsdb
/// create-blocks-from openmetrics`, the backfill path, which wants a timestamp on every sample
/// (a scrape supplies its own), so one is appended. (`promtool check metrics` reads only the
/// older text format.) Every sample must arrive as a series.
fn prometheus_parses(metrics: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let samples: Vec<String> = metrics
        .lines()
        .map(|l| {
            if l.starts_with('#') {
                l.to_owned()
            } else {
                format!("{l} 1700000000")
            }
        })
        .collect();
    let series = samples.iter().filter(|l| !l.starts_with('#')).count();
    let input = dir.path().join("metrics.om");
    std::fs::write(&input, samples.join("\n") + "\n")?;
    let blocks = dir.path().join("blocks");
    let (input, blocks) = (input.to_string_lossy(), blocks.to_string_lossy());
    let args = ["tsdb", "create-blocks-from", "openmetrics", &input, &blocks];
    let out = tool("promtool", &args, None)?;
    let report = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "promtool refused the metrics: {}{report}\n{metrics}",
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(
        report
            .lines()
            .any(|l| l.split_whitespace().nth(6) == Some(&series.to_string())),
        "{series} series expected in:\n{report}"
    );
    Ok(())
}

/// A name the box's certificate carries that need not resolve here: the machine's `.local`
/// name (its plain name when it has dots), as the certificate authority names it.
fn certificate_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    if host.is_empty() || host == "localhost" {
        "localhost".to_owned()
    } else if host.contains('.') {
        host.to_owned()
    } else {
        format!("{host}.local")
    }
}

#[tokio::test]
async fn status_health_metrics_page_alerts_heartbeats_and_fleet() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let (hooks, seen) = receiver().await?;
    let cfg = db.write_config(
        1,
        &format!(
            r#"
[alerts]
webhook-url = "{hooks}/hook"
pending = "1s"
heartbeat-url = "{hooks}/ping"
heartbeat-interval = "1s"
"#
        ),
    )?;
    let config = cfg.path.to_str().expect("utf-8 path");
    let mut wd = Watchdog::start(OSCARBOX.as_ref(), &cfg)?;
    let mut proxy = Proxy::start(OSCARBOX.as_ref(), &cfg).await?;

    // Patients in the chart, so that their absence from every output below means something.
    let mut conn = db.root().await?;
    for (last, first) in PATIENTS {
        wait_for("the schema migrated", async || {
            mysql_async::prelude::Queryable::exec_drop(
                &mut conn,
                format!("INSERT INTO {}.demographic (last_name, first_name, sex, lastUpdateDate) VALUES (?, ?, 'F', NOW())", db.database),
                (last, first),
            )
            .await
            .ok()
        })
        .await?;
    }

    let healthy = |s: &BoxStatus| {
        s.instances.iter().all(|w| w.state == "healthy")
            && s.instances.len() == 1
            && s.proxy.reachable
            && s.proxy.backends_up == 1
            && s.database.endpoint_reachable
            && s.database.writable == Some(true)
    };
    let status = wait_for("healthy", async || {
        wd.box_status().await.ok().filter(healthy)
    })
    .await?;
    assert!(status.backups.disk_present, "{status:#?}");
    assert!(status.tls.is_some(), "the certificate's end is read");
    // Only this test machine's own disk, memory or load may show (the box's parts are all up).
    let machine = [
        "system-disk-full",
        "backup-disk-full",
        "memory-low",
        "load-high",
    ];
    assert!(
        status
            .reasons
            .iter()
            .all(|r| machine.contains(&r.id.as_str())),
        "{:#?}",
        status.reasons
    );

    // Loopback reads without a token; a wrong token is refused; the right one is taken.
    let client = box_client(&cfg, Duration::from_secs(10))?;
    let token = std::fs::read_to_string(cfg.state_dir.join("secrets/status-token"))?;
    let health = client.get(wd.status_url("/health")).send().await?;
    assert_eq!(health.headers()["content-type"], "application/health+json");
    // The document's status is its model's verdict; the model's reasons can only be this
    // machine's own (a full disk, which a test cannot choose). The document is the status
    // loop's latest gathering, which may predate the instance's healthy answer by an interval.
    let (doc, model) = wait_for("served healthy at /health", async || {
        let doc: serde_json::Value = client
            .get(wd.status_url("/health"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let model: BoxStatus = serde_json::from_value(doc["oscarbox"].clone()).ok()?;
        model
            .reasons
            .iter()
            .all(|r| machine.contains(&r.id.as_str()))
            .then_some((doc, model))
    })
    .await?;
    let expected = ["pass", "warn", "fail"][model.verdict as usize];
    assert_eq!(doc["status"], expected, "{doc:#}");
    assert_eq!(doc["serviceId"], "oscarbox:test");
    let wrong = client
        .get(wd.status_url("/metrics"))
        .bearer_auth("not-the-token")
        .send()
        .await?;
    assert_eq!(wrong.status(), 401);
    let metrics = client
        .get(wd.status_url("/metrics"))
        .bearer_auth(token.trim())
        .send()
        .await?
        .text()
        .await?;
    for line in [
        "oscarbox_emr_instance_healthy{emr_instance=\"1\"} 1",
        "oscarbox_proxy_up 1",
        "oscarbox_database_up 1",
        "oscarbox_backup_disk_present 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    prometheus_parses(&metrics)?;

    // The status page, as a browser renders it.
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let url = wd.status_url("/");
    let browser = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--ignore-certificate-errors",
        "--window-size=1280,1200",
    ];
    let shot_arg = format!("--screenshot={}", shot.display());
    let out = tool(
        "chromium",
        &[&browser[..], &[shot_arg.as_str(), url.as_str()]].concat(),
        None,
    )?;
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot)?;
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a screenshot at {}",
        shot.display()
    );
    let out = tool(
        "chromium",
        &[&browser[..], &["--dump-dom", url.as_str()]].concat(),
        None,
    )?;
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("id=\"verdict\"") && dom.contains("id=\"instances\""),
        "{dom}"
    );

    // The CLI, for people and for tools.
    let (code, table) = oscarbox(&["status", "--config", config])?;
    assert!(table.contains("1 of 1 EMR instances healthy"), "{table}");
    let headline = ["OK:", "DEGRADED:", "CRITICAL:"]
        .iter()
        .position(|v| table.lines().next().unwrap_or_default().contains(v));
    assert_eq!(
        headline.and_then(|v| i32::try_from(v).ok()),
        Some(code),
        "the exit code is the verdict shown\n{table}"
    );
    let (_, json) = oscarbox(&["status", "--json", "--config", config])?;
    let from_cli: BoxStatus = serde_json::from_str(&json)?;
    assert!(healthy(&from_cli), "{json}");

    // The proxy dies: after `pending`, one alert (retried past the receiver's first 503).
    // Heartbeats say `fail` meanwhile. The watchdog is restarted while the proxy comes back, and
    // the alert that fired before the restart is resolved after it.
    proxy.signal(nix::sys::signal::Signal::SIGKILL);
    proxy.wait_exit(WAIT).await?;
    let hooks_of = |state: &str| -> Vec<serde_json::Value> {
        seen.lock()
            .expect("lock")
            .iter()
            .filter(|(w, _)| w.starts_with("POST /hook"))
            .filter_map(|(_, b)| serde_json::from_str::<serde_json::Value>(b).ok())
            .filter(|v| v["id"] == "proxy-down" && v["state"] == state)
            .collect()
    };
    let fired = wait_for("alerted", async || {
        (hooks_of("firing").len() >= 2).then_some(())
    })
    .await;
    fired.map_err(|e| anyhow::anyhow!("{e}: {:#?}", seen.lock().expect("lock")))?;
    let firing = hooks_of("firing");
    assert_eq!(
        firing.len(),
        2,
        "one alert, sent twice because the first try got 503: {firing:#?}"
    );
    assert_eq!(firing[0]["severity"], "critical");
    wait_for("a failing heartbeat", async || {
        seen.lock()
            .expect("lock")
            .iter()
            .any(|(w, _)| w == "POST /ping/fail")
            .then_some(())
    })
    .await?;
    wd.signal(nix::sys::signal::Signal::SIGTERM);
    wd.wait_exit(WAIT).await?;
    let mut proxy = Proxy::start(OSCARBOX.as_ref(), &cfg).await?;
    let mut wd = Watchdog::start(OSCARBOX.as_ref(), &cfg)?;
    wait_for("resolved after the restart", async || {
        (!hooks_of("resolved").is_empty()).then_some(())
    })
    .await?;
    assert_eq!(
        hooks_of("firing").len(),
        2,
        "no repeat while it lasted less than repeat-interval, nor after the restart"
    );
    wait_for("healthy again", async || {
        wd.box_status().await.ok().filter(healthy)
    })
    .await?;

    // The fleet view: this box, a box with a wrong token, and one that is not there.
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("wrong.token"), "nope")?;
    let closed = oscarbox_test_harness::free_port();
    let fleet = dir.path().join("fleet.toml");
    std::fs::write(
        &fleet,
        format!(
            r#"version = 1
[[box]]
name = "here"
url = "https://localhost:{port}"
token-file = "{token}"
ca-file = "{ca}"
[[box]]
name = "wrong-token"
url = "https://localhost:{port}"
token-file = "wrong.token"
ca-file = "{ca}"
[[box]]
name = "gone"
url = "https://localhost:{closed}"
[[box]]
name = "by-name"
url = "https://{name}:{port}"
address = "127.0.0.1"
token-file = "{token}"
ca-file = "{ca}"
"#,
            name = certificate_name(),
            port = cfg.status_port,
            token = cfg.state_dir.join("secrets/status-token").display(),
            ca = cfg.state_dir.join("tls/ca.crt").display(),
        ),
    )?;
    let (code, fleet_table) = oscarbox(&["fleet", "status", fleet.to_str().expect("utf-8")])?;
    assert_eq!(
        code, 2,
        "a box that cannot be asked is the worst case\n{fleet_table}"
    );
    let line = |name: &str| {
        fleet_table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line("here ").contains("1/1") && !line("here ").contains("UNKNOWN"),
        "{fleet_table}"
    );
    assert!(
        line("wrong-token").contains("refused the token"),
        "{fleet_table}"
    );
    assert!(line("gone").contains("could not connect"), "{fleet_table}");
    assert!(
        line("by-name").contains("1/1"),
        "reached by address, checked by name\n{fleet_table}"
    );

    // Without the watchdog, `oscarbox status` still reports, and says so first.
    wd.signal(nix::sys::signal::Signal::SIGTERM);
    wd.wait_exit(WAIT).await?;
    let (code, down_table) = oscarbox(&["status", "--config", config])?;
    assert_eq!(code, 2, "{down_table}");
    assert!(
        down_table.contains("watchdog is not running"),
        "{down_table}"
    );

    // No patient's name anywhere.
    let heard: Vec<String> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|(w, b)| format!("{w} {b}"))
        .collect();
    let outputs = [
        metrics,
        doc.to_string(),
        dom,
        table,
        json,
        fleet_table,
        down_table,
        heard.join("\n"),
        wd.log().join("\n"),
        proxy.log().join("\n"),
    ];
    for text in &outputs {
        for (last, first) in PATIENTS {
            assert!(
                !text.contains(last) && !text.contains(first),
                "a patient's name leaked into:\n{text}"
            );
        }
    }
    proxy.signal(nix::sys::signal::Signal::SIGTERM);
    proxy.wait_exit(WAIT).await?;
    Ok(())
}
