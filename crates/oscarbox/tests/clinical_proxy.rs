//! The clinical API as an integrator meets it on a box: HTTPS through `oscarbox proxy` to two
//! `oscar-emr` instances. Python's `requests-oauthlib` signs for the URL it sees
//! (`https://localhost:PORT/...`), which the instances must reconstruct from the proxy's
//! forwarded headers; the proxy spreads the flow over both instances, so a nonce replayed to
//! the other instance must still be refused.

use std::time::Duration;

use oscarbox_test_harness::{bin_path, Emr, MariaDb, Proxy};

const OSCARBOX: &str = env!("CARGO_BIN_EXE_oscarbox");
const CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/soap-clients");

#[tokio::test]
async fn oauth_through_the_proxy_over_two_instances() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let cfg = db.write_config(2, "")?;
    let emr = bin_path("oscar-emr");
    let _one = Emr::start(&emr, &cfg, 1).await?;
    let _two = Emr::start(&emr, &cfg, 2).await?;
    let proxy = Proxy::start(std::path::Path::new(OSCARBOX), &cfg).await?;
    proxy
        .wait_backends(Duration::from_secs(30), "both up", |b| {
            b.len() == 2 && b.iter().all(|b| b.state == "up")
        })
        .await?;

    let creds = std::fs::read_to_string(cfg.state_dir.join("secrets/initial-admin-password"))?;
    let field = |name: &str| {
        creds
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            .unwrap_or_default()
    };
    let (user, password, pin) = (field("user name:"), field("password:"), field("PIN:"));

    // A patient, made by a signed-in browser through the proxy.
    let c = proxy.client(Duration::from_secs(30))?;
    let signed_in = c
        .post(proxy.url("/oscar/login.do"))
        .form(&[("username", &user), ("password", &password), ("pin", &pin)])
        .send()
        .await?;
    assert_eq!(signed_in.status(), 200);
    let set_cookie = signed_in.headers()["set-cookie"].to_str()?.to_owned();
    assert!(
        set_cookie.contains("; Secure"),
        "HTTPS sessions get Secure cookies: {set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap_or_default().to_owned();
    let created: serde_json::Value = c
        .post(proxy.url("/oscar/ws/rs/demographics"))
        .header("cookie", &cookie)
        .json(&serde_json::json!({
            "lastName": "Proxied", "firstName": "Pat", "sex": "M",
            "dobYear": "1975", "dobMonth": "11", "dobDay": "30"
        }))
        .send()
        .await?
        .json()
        .await?;
    let id = created["demographicNo"].as_i64().expect("a patient number");

    let register = |name: &'static str, lifetime: &'static str| {
        let emr = emr.clone();
        let path = cfg.path.clone();
        async move {
            let out = tokio::process::Command::new(&emr)
                .arg("--config")
                .arg(&path)
                .args([
                    "oauth-client",
                    "add",
                    "--name",
                    name,
                    "--uri",
                    "http://127.0.0.1:9/",
                    "--lifetime",
                    lifetime,
                ])
                .output()
                .await?;
            anyhow::ensure!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let get = |k: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_owned()))
                    .unwrap_or_default()
            };
            Ok::<_, anyhow::Error>((get("key:"), get("secret:")))
        }
    };
    let (key, secret) = register("booking", "1h").await?;
    let (short_key, short_secret) = register("short", "2").await?;

    let out = tokio::process::Command::new("/usr/bin/python3")
        .arg(format!("{CLIENTS}/oauth_flow.py"))
        .args([
            format!("https://localhost:{}", cfg.https_port),
            key,
            secret,
            short_key,
            short_secret,
            user,
            password,
            pin,
            id.to_string(),
        ])
        // Both requests and zeep read the trusted authorities from here.
        .env("REQUESTS_CA_BUNDLE", proxy.ca_cert())
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "oauth_flow.py through the proxy failed ({})\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "token: ok",
        "quickSearch: found",
        "replayed nonce: 401",
        "tampered signature: 401",
        "expired token: 401",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "missing {line:?}:\n{stdout}"
        );
    }
    assert!(stdout.contains("\"lastName\": \"PROXIED\""), "{stdout}");
    Ok(())
}
