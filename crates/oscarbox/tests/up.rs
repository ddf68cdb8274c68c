//! `oscarbox up` runs MariaDB, the EMR instances and the HTTPS proxy in the foreground, and
//! SIGINT (Ctrl-C) stops all of it, leaving no process behind.

use std::time::Duration;

use oscarbox_test_harness::{descendants, free_port, free_ports, is_alive, is_gone, Signal};
use tokio::io::AsyncBufReadExt as _;

const OSCARBOX: &str = env!("CARGO_BIN_EXE_oscarbox");

fn config_https_port(config: &std::path::Path) -> anyhow::Result<u16> {
    let text = std::fs::read_to_string(config)?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("https-ports = ["))
        .ok_or_else(|| anyhow::anyhow!("no https-ports line"))?;
    Ok(line.trim_end_matches(']').parse()?)
}

#[tokio::test]
async fn up_runs_the_box_and_ctrl_c_stops_everything() -> anyhow::Result<()> {
    let db_port = free_port();
    let database = format!(
        "[database]\nendpoint = \"127.0.0.1:{db_port}\"\n[[database.nodes]]\nname = \"db1\"\nport = {db_port}\ndata-dir = \"{{d}}/db1\"\n"
    );
    up_and_down(&database, &[db_port], 3, false).await
}

#[tokio::test]
async fn up_runs_the_database_pair_behind_the_endpoint() -> anyhow::Result<()> {
    let (endpoint, a, b) = (free_port(), free_port(), free_port());
    let database = format!(
        "[database]\nendpoint = \"127.0.0.1:{endpoint}\"\n[[database.nodes]]\nname = \"db1\"\nport = {a}\ndata-dir = \"{{d}}/db1\"\n[[database.nodes]]\nname = \"db2\"\nport = {b}\ndata-dir = \"{{d}}/backup/db2\"\n"
    );
    up_and_down(&database, &[endpoint, a, b], 4, true).await
}

/// Runs `oscarbox up` on a config with `database` (`{d}` is the test directory), checks the
/// box serves, then SIGINT stops everything: `children` processes at least, and `ports` freed.
async fn up_and_down(
    database: &str,
    ports: &[u16],
    children: usize,
    pair: bool,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let base = free_ports(2);
    let config = dir.path().join("box.toml");
    std::fs::write(
        &config,
        format!(
            r#"version = 1
[box]
name = "uptest"
profile = "dev"
state-dir = "{d}/state"
[emr]
instances = 2
base-port = {base}
documents-dir = "{d}/documents"
shutdown-grace = "3s"
{database}
[proxy]
https-ports = [{https}]
http-port = {http}
[backup]
disk = "{d}/backup"
require-mount = false
"#,
            d = dir.path().display(),
            database = database.replace("{d}", &dir.path().display().to_string()),
            https = free_port(),
            http = free_port(),
        ),
    )?;
    let mut child = tokio::process::Command::new(OSCARBOX)
        .arg("up")
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let pid = i32::try_from(child.id().expect("running"))?;
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    let https = config_https_port(&config)?;
    let open = format!("Open https://localhost:{https}/oscar/ws/");
    let (mut announced, mut told_url) = (false, false);
    tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = stdout.next_line().await? {
            announced |= line.contains("is up. Ctrl-C stops it.");
            told_url |= line.contains(&open);
            if announced && told_url {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await??;
    assert!(announced, "oscarbox up announced the box");
    assert!(told_url, "oscarbox up printed the address to open");

    // The proxy answers at that address, with a certificate its authority vouches for.
    let ca = std::fs::read(dir.path().join("state/tls/ca.crt"))?;
    let tls_client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
        .timeout(Duration::from_secs(5))
        .build()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = tls_client
            .get(format!(
                "https://localhost:{https}/oscar/ws/SystemInfoService?wsdl"
            ))
            .send()
            .await?;
        if r.status() == 200 {
            break;
        }
        // The proxy's own probes may not have seen the instances yet.
        assert_eq!(r.status(), 503);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the proxy never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    for port in [base, base + 1] {
        assert!(
            is_alive(&client, ([127, 0, 0, 1], port).into()).await,
            "instance on {port}"
        );
    }
    if pair {
        // The EMR reaches the database through the endpoint: a sign-in touches it.
        let text =
            std::fs::read_to_string(dir.path().join("state/secrets/initial-admin-password"))?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
                .unwrap_or_default()
        };
        let (status, body) = oscarbox_test_harness::soap(
            &tls_client,
            &format!("https://localhost:{https}/oscar/ws/LoginService"),
            &oscarbox_test_harness::login_envelope(
                "login2",
                &field("user name:"),
                &field("password:"),
            ),
        )
        .await?;
        assert_eq!(status, 200, "{body}");
        let ledger = std::fs::read_to_string(dir.path().join("state/db/ledger"))?;
        assert!(ledger.contains("primary = A"), "{ledger}");

        // `oscarbox db status` and `db switchover`, through the pair's control socket.
        let db = |args: &'static [&'static str]| {
            let config = config.clone();
            async move {
                tokio::process::Command::new(OSCARBOX)
                    .arg("db")
                    .args(args)
                    .arg("--config")
                    .arg(&config)
                    .output()
                    .await
            }
        };
        let shown = db(&["status", "--json"]).await?;
        assert!(
            shown.status.success(),
            "{}",
            String::from_utf8_lossy(&shown.stderr)
        );
        let shown: serde_json::Value = serde_json::from_slice(&shown.stdout)?;
        assert_eq!(shown["primary"], "A", "{shown}");
        assert_eq!(shown["endpoint_target"], "A", "{shown}");
        // B may still be catching up: a refusal (exit 2) says why and changes nothing.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let out = db(&["switchover"]).await?;
            if out.status.success() {
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(text.contains("writes were blocked for"), "{text}");
                break;
            }
            assert_eq!(
                out.status.code(),
                Some(2),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "switchover refused for a minute"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let shown = db(&["status"]).await?;
        let text = String::from_utf8_lossy(&shown.stdout);
        assert!(text.contains("primary node B, endpoint on B"), "{text}");
        // The EMR carries on through the endpoint, now on B.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (status, _) = oscarbox_test_harness::soap(
                &tls_client,
                &format!("https://localhost:{https}/oscar/ws/LoginService"),
                &oscarbox_test_harness::login_envelope(
                    "login2",
                    &field("user name:"),
                    &field("password:"),
                ),
            )
            .await?;
            if status == 200 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the EMR did not reach the new primary"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let running = descendants(pid);
    assert!(
        running.len() >= children,
        "MariaDB and two instances run under oscarbox up: {running:?}"
    );
    let children = running;
    let secret = std::fs::metadata(dir.path().join("state/secrets/db-app.password"))?;
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&secret.permissions()) & 0o777,
        0o600
    );

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGINT)?;
    let status = tokio::time::timeout(Duration::from_secs(90), child.wait()).await??;
    assert!(status.success(), "oscarbox up exited with {status}");
    for p in children {
        assert!(is_gone(p), "process {p} survived");
    }
    for &port in [base, base + 1, https].iter().chain(ports) {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} was freed"
        );
    }
    Ok(())
}
