//! `oscarbox proxy` in front of real `oscar-emr` instances on a real MariaDB: TLS as a
//! standard client sees it, no failed request while an instance hangs and dies, no write
//! replayed, drains that wait, and clients that misbehave cut off without hurting others.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable as _;
use oscarbox_proxy_api::{Answer, Request};
use oscarbox_test_harness::{
    bin_path, login_envelope, Emr, EmrConfig, MariaDb, Proxy, Signal, IS_ALIVE,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::time::Instant;

const OSCARBOX: &str = env!("CARGO_BIN_EXE_oscarbox");

async fn instances(config: &EmrConfig, n: u32) -> anyhow::Result<Vec<Emr>> {
    let emr = bin_path("oscar-emr");
    let mut out = Vec::new();
    for i in 1..=n {
        out.push(Emr::start(&emr, config, i).await?);
    }
    Ok(out)
}

/// `n` EMR instances and the proxy in front of them, once it sees them all up.
async fn serving(config: &EmrConfig, n: u32) -> anyhow::Result<(Vec<Emr>, Proxy)> {
    let emrs = instances(config, n).await?;
    let proxy = Proxy::start(std::path::Path::new(OSCARBOX), config).await?;
    all_up(&proxy, usize::try_from(n)?).await?;
    Ok((emrs, proxy))
}

async fn all_up(proxy: &Proxy, n: usize) -> anyhow::Result<()> {
    proxy
        .wait_backends(Duration::from_secs(30), "all up", |b| {
            b.len() == n && b.iter().all(|b| b.state == "up")
        })
        .await
}

async fn fault(client: &reqwest::Client, emr: &Emr, what: &str) -> anyhow::Result<()> {
    let resp = client
        .post(emr.url(&format!("/oscarbox/fault/{what}")))
        .send()
        .await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "fault {what}: {}",
        resp.status()
    );
    Ok(())
}

/// Clients sending requests through the proxy until stopped, counting every answer: even
/// workers GET a WSDL, odd ones POST `isAlive`. A request counts as good only with a 200 and
/// its whole body.
struct Load {
    stop: Arc<tokio::sync::Notify>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    slowest_ms: Arc<AtomicU64>,
}

impl Load {
    fn start(proxy: &Proxy, client: &reqwest::Client, workers: usize) -> Load {
        let stop = Arc::new(tokio::sync::Notify::new());
        let (ok, failed, slowest_ms) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let tasks = (0..workers)
            .map(|worker| {
                let (client, stop) = (client.clone(), Arc::clone(&stop));
                let (ok, failed, slowest_ms) = (
                    Arc::clone(&ok),
                    Arc::clone(&failed),
                    Arc::clone(&slowest_ms),
                );
                let wsdl = proxy.url("/oscar/ws/SystemInfoService?wsdl");
                let soap = proxy.url("/oscar/ws/SystemInfoService");
                tokio::spawn(async move {
                    let stopped = stop.notified();
                    tokio::pin!(stopped);
                    loop {
                        let started = Instant::now();
                        let req = if worker % 2 == 0 {
                            client.get(&wsdl)
                        } else {
                            client
                                .post(&soap)
                                .header("content-type", "text/xml; charset=UTF-8")
                                .body(IS_ALIVE)
                        };
                        let result = tokio::select! {
                            () = &mut stopped => return,
                            r = req.send() => r,
                        };
                        let good = match result {
                            Ok(r) if r.status() == 200 => r.bytes().await.is_ok(),
                            _ => false,
                        };
                        let counter = if good { &ok } else { &failed };
                        counter.fetch_add(1, Ordering::Relaxed);
                        slowest_ms
                            .fetch_max(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Load {
            stop,
            tasks,
            ok,
            failed,
            slowest_ms,
        }
    }

    /// Stops the clients; answers (good, failed, slowest in ms).
    async fn stop(self) -> anyhow::Result<(u64, u64, u64)> {
        self.stop.notify_waiters();
        for t in self.tasks {
            t.await?;
        }
        Ok((
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.slowest_ms.load(Ordering::Relaxed),
        ))
    }
}

/// Waits until the proxy counts no request in flight on any instance.
async fn nothing_in_flight(proxy: &Proxy) -> anyhow::Result<()> {
    proxy
        .wait_backends(Duration::from_secs(10), "nothing counted in flight", |b| {
            b.iter().all(|b| b.in_flight == 0)
        })
        .await
}

async fn curl(args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let out = tokio::process::Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(args)
        .output()
        .await?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn tls_verified_by_curl_redirects_and_the_maintenance_page() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let config = db.write_config(1, "")?;
    let proxy = Proxy::start(std::path::Path::new(OSCARBOX), &config).await?;
    let ca = proxy.ca_cert();
    let ca = ca.to_str().expect("utf-8 path");

    // No instance yet: the maintenance page, which says when to come back.
    let (ok, head, _) = curl(&["--cacert", ca, "--include", &proxy.url("/oscar/ws/")]).await?;
    assert!(ok);
    assert!(head.starts_with("HTTP/2 503"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 10"),
        "{head}"
    );
    assert!(head.contains("The EMR is restarting"), "{head}");

    let _emr = instances(&config, 1).await?;
    all_up(&proxy, 1).await?;
    // curl (OpenSSL) trusting only the generated authority verifies the chain and the name.
    let (ok, out, err) = curl(&[
        "--cacert",
        ca,
        "--include",
        &proxy.url("/oscar/ws/SystemInfoService?wsdl"),
    ])
    .await?;
    assert!(ok, "{err}");
    assert!(out.starts_with("HTTP/2 200"), "{out}");
    assert!(
        out.contains("strict-transport-security: max-age=31536000"),
        "{out}"
    );
    // The WSDL names the address the client used, through the proxy.
    assert!(
        out.contains(&format!(
            "https://localhost:{}/oscar/ws/SystemInfoService",
            config.https_port
        )),
        "{out}"
    );
    // Without the authority, the system's roots do not vouch for the box.
    let (ok, _, err) = curl(&[&proxy.url("/oscar/ws/")]).await?;
    assert!(!ok, "an untrusted certificate must fail: {err}");
    // TLS 1.1 and older are refused.
    let (ok, _, _) = curl(&["--cacert", ca, "--tls-max", "1.1", &proxy.url("/")]).await?;
    assert!(!ok, "TLS 1.1 was accepted");
    let (ok, out, err) = curl(&[
        "--cacert",
        ca,
        "--http1.1",
        "--tlsv1.2",
        "--tls-max",
        "1.2",
        "--write-out",
        "%{http_code}",
        "--output",
        "/dev/null",
        &proxy.url("/oscar/ws/SystemInfoService?wsdl"),
    ])
    .await?;
    assert!(ok && out == "200", "TLS 1.2 over HTTP/1.1: {out} {err}");
    // Plain HTTP only redirects, keeping the path.
    let (ok, head, _) = curl(&[
        "--include",
        &format!("http://localhost:{}/oscar/ws/?x=1", config.http_port),
    ])
    .await?;
    assert!(ok);
    assert!(head.starts_with("HTTP/1.1 308"), "{head}");
    assert!(
        head.contains(&format!(
            "location: https://localhost:{}/oscar/ws/?x=1",
            config.https_port
        )),
        "{head}"
    );
    // The EMR's fault switches are not reachable through the proxy.
    let (_, out, _) = curl(&[
        "--cacert",
        ca,
        "--request",
        "POST",
        "--write-out",
        "%{http_code}",
        "--output",
        "/dev/null",
        &proxy.url("/oscarbox/fault/exit"),
    ])
    .await?;
    assert_eq!(out, "404");
    Ok(())
}

#[tokio::test]
#[expect(
    clippy::print_stderr,
    reason = "the figures, shown by the test runner when the test fails"
)]
async fn a_hung_then_killed_instance_fails_no_request() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let config = db.write_config(3, "")?;
    let (emrs, proxy) = serving(&config, 3).await?;
    let client = proxy.client(Duration::from_secs(10))?;

    let load = Load::start(&proxy, &client, 8);
    tokio::time::sleep(Duration::from_secs(2)).await;
    emrs[1].signal(Signal::SIGSTOP);
    let stopped_at = Instant::now();
    proxy
        .wait_backends(Duration::from_secs(10), "instance 2 ejected", |b| {
            b[1].state == "down"
        })
        .await?;
    let ejected_after = stopped_at.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    emrs[1].signal(Signal::SIGKILL);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ok, failed, slowest_ms) = load.stop().await?;
    eprintln!(
        "{ok} requests answered, {failed} failed, slowest {slowest_ms} ms, ejected after {ejected_after:?}"
    );
    assert_eq!(failed, 0, "requests failed while an instance hung and died");
    assert!(ok > 100, "the load ran ({ok} requests)");
    // Generous: the probes alone eject within interval × fall + timeout.
    assert!(ejected_after < Duration::from_secs(5), "{ejected_after:?}");
    Ok(())
}

#[tokio::test]
async fn a_write_whose_instance_dies_is_never_replayed() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let config = db.write_config(3, "")?;
    let (mut emrs, proxy) = serving(&config, 3).await?;
    let direct = reqwest::Client::new();
    // Whichever instance gets the write applies it, then dies before answering; had the proxy
    // replayed it, a second instance would apply it too.
    for emr in &mut emrs {
        fault(&direct, emr, "crash-after").await?;
        emr.allow_error("exiting with status 70");
    }
    // A failed sign-in is a write: it counts against the account and leaves an audit row.
    let (user, _) = emrs[0]
        .admin_credentials()
        .expect("the first start wrote them");
    let client = proxy.client(Duration::from_secs(30))?;
    let resp = client
        .post(proxy.url("/oscar/ws/LoginService"))
        .header("content-type", "text/xml; charset=UTF-8")
        .body(login_envelope("login", &user, "wrong-password"))
        .send()
        .await?;
    let status = resp.status().as_u16();
    let page = resp.text().await?;
    assert_eq!(status, 502, "{page}");
    assert!(
        page.contains("check whether your change is there"),
        "{page}"
    );

    let mut conn = db.root().await?;
    let failures: Option<u32> = conn
        .exec_first(
            "SELECT failures FROM oscar.oscarbox_login_failure WHERE user_name = ?",
            (&user,),
        )
        .await?;
    assert_eq!(failures, Some(1), "the write was applied exactly once");
    let audits: Option<u64> = conn
        .query_first("SELECT COUNT(*) FROM oscar.log WHERE action = 'WS_LOGIN_FAILURE'")
        .await?;
    assert_eq!(audits, Some(1));
    let mut exited = 0;
    for emr in &mut emrs {
        if emr.wait_exit(Duration::from_millis(500)).await.is_ok() {
            exited += 1;
        }
    }
    assert_eq!(exited, 1, "exactly one instance received the write");
    Ok(())
}

#[tokio::test]
async fn drain_waits_for_the_request_in_flight_then_sends_nothing_new() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let config = db.write_config_full(3, "", "health-timeout = \"2s\"", "")?;
    let (emrs, mut proxy) = serving(&config, 3).await?;
    let direct = reqwest::Client::new();
    fault(&direct, &emrs[1], "slow?ms=1500").await?;
    let client = proxy.client(Duration::from_secs(30))?;
    // A document route: the long timeout, so a slow answer is waited for, not retried.
    let slow_url = proxy.url("/oscar/ws/services/document/none");
    let mut in_flight = Vec::new();
    for _ in 0..6 {
        let (client, url) = (client.clone(), slow_url.clone());
        in_flight.push(tokio::spawn(async move {
            let r = client.get(url).send().await?;
            let status = r.status().as_u16();
            r.bytes().await?;
            Ok::<_, reqwest::Error>((status, Instant::now()))
        }));
    }
    proxy
        .wait_backends(
            Duration::from_secs(5),
            "a request in flight on instance 2",
            |b| b[1].in_flight > 0,
        )
        .await?;
    let before = proxy.backends().await?[1].requests;
    let asked = Instant::now();
    let answer = proxy
        .ask(&Request::Drain {
            instance: 2,
            wait_ms: 20_000,
            lease_ms: None,
        })
        .await?;
    let drained_at = Instant::now();
    assert_eq!(
        answer,
        Answer::Drained {
            instance: 2,
            in_flight: 0
        }
    );
    let mut last_answer = asked;
    for t in in_flight {
        let (status, at) = t.await??;
        assert_ne!(status / 100, 5, "a request in flight failed");
        last_answer = last_answer.max(at);
    }
    assert!(
        drained_at >= last_answer
            || drained_at.duration_since(asked) >= Duration::from_millis(1000),
        "the drain answered before the slow request finished"
    );
    // Nothing new reaches instance 2: its counter stands still, and no answer takes its
    // 1.5 s delay.
    for _ in 0..30 {
        let started = Instant::now();
        let r = client
            .get(proxy.url("/oscar/ws/SystemInfoService?wsdl"))
            .send()
            .await?;
        assert_eq!(r.status(), 200);
        r.bytes().await?;
        assert!(started.elapsed() < Duration::from_millis(1500));
    }
    let after = proxy.backends().await?;
    assert_eq!(
        after[1].requests, before,
        "instance 2 got requests while drained"
    );
    assert_eq!(after[1].state, "draining");
    assert!(matches!(
        proxy
            .ask(&Request::Enable {
                instance: 2,
                lease_only: false
            })
            .await?,
        Answer::Enabled { instance: 2 }
    ));
    assert!(matches!(
        proxy
            .ask(&Request::Drain {
                instance: 9,
                wait_ms: 0,
                lease_ms: None
            })
            .await?,
        Answer::Error { .. }
    ));

    // Graceful shutdown: a request in flight is finished, then the proxy exits cleanly.
    fault(&direct, &emrs[0], "slow?ms=1500").await?;
    fault(&direct, &emrs[2], "slow?ms=1500").await?;
    let pending = tokio::spawn({
        let client = client.clone();
        async move { Ok::<_, reqwest::Error>(client.get(slow_url).send().await?.status().as_u16()) }
    });
    proxy
        .wait_backends(Duration::from_secs(5), "a request in flight", |b| {
            b.iter().any(|b| b.in_flight > 0)
        })
        .await?;
    proxy.signal(Signal::SIGTERM);
    assert_eq!(pending.await??, 404, "the request in flight was finished");
    assert!(proxy.wait_exit(Duration::from_secs(30)).await?.success());
    Ok(())
}

/// A TLS connection trusting the proxy's authority, for raw bytes.
async fn raw_tls(
    proxy: &Proxy,
) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(proxy.ca_cert())? {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", proxy.config.https_port)).await?;
    Ok(connector.connect("localhost".try_into()?, tcp).await?)
}

async fn read_some(s: &mut (impl tokio::io::AsyncRead + Unpin), within: Duration) -> String {
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(within, s.read(&mut buf)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Ok(Err(_)) => String::new(),
        Err(_) => "<no answer>".into(),
    }
}

#[tokio::test]
async fn bad_and_slow_clients_are_cut_off_without_starving_others() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let config = db.write_config_full(
        1,
        "",
        "header-read-timeout = \"2s\"\nmax-header-kib = 16",
        "",
    )?;
    let (_emrs, proxy) = serving(&config, 1).await?;

    let mut s = raw_tls(&proxy).await?;
    s.write_all(b"THIS IS NOT HTTP\r\n\r\n").await?;
    let answer = read_some(&mut s, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    let mut s = raw_tls(&proxy).await?;
    let big = "a".repeat(32 * 1024);
    s.write_all(format!("GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .await?;
    let answer = read_some(&mut s, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    // Slowloris: many connections each trickling a request head.
    let mut slow = Vec::new();
    for _ in 0..40 {
        let mut s = raw_tls(&proxy).await?;
        s.write_all(b"GET /oscar/ws/ HTTP/1.1\r\nHost: localhost\r\n")
            .await?;
        slow.push(s);
    }
    let trickle = tokio::spawn(async move {
        let started = Instant::now();
        let mut open = slow.len();
        while open > 0 && started.elapsed() < Duration::from_secs(15) {
            open = 0;
            for s in &mut slow {
                if s.write_all(b"X").await.is_ok() && s.flush().await.is_ok() {
                    open += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Each was cut off (its writes fail once the server closed it, after a 408 or not).
        let mut cut = 0;
        for s in &mut slow {
            let answer = read_some(s, Duration::from_millis(200)).await;
            if answer != "<no answer>" {
                cut += 1;
            }
        }
        (open, cut, started.elapsed())
    });
    let client = proxy.client(Duration::from_secs(5))?;
    for _ in 0..20 {
        let started = Instant::now();
        let r = client
            .get(proxy.url("/oscar/ws/SystemInfoService?wsdl"))
            .send()
            .await?;
        assert_eq!(r.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a normal client was starved"
        );
    }
    let (open, cut, took) = trickle.await?;
    assert_eq!(open, 0, "slow clients still connected after {took:?}");
    assert_eq!(cut, 40);
    Ok(())
}

#[tokio::test]
async fn a_rolling_restart_by_the_watchdog_drains_through_the_proxy() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let config = db.write_config(2, "")?;
    let oscarbox = std::path::Path::new(OSCARBOX);
    let watchdog = oscarbox_test_harness::Watchdog::start(oscarbox, &config)?;
    let proxy = Proxy::start(oscarbox, &config).await?;
    all_up(&proxy, 2).await?;
    let client = proxy.client(Duration::from_secs(30))?;
    let load = Load::start(&proxy, &client, 1);
    let answer = oscarbox_watchdog::control::ask(
        &watchdog.socket,
        &oscarbox_watchdog_api::Request::RestartWorkers,
    )
    .await?;
    assert!(
        matches!(answer, oscarbox_watchdog_api::Answer::Restarted { ref restarted } if restarted.len() == 2),
        "{answer:?}"
    );
    all_up(&proxy, 2).await?;
    let (ok, failed, _) = load.stop().await?;
    assert_eq!(
        failed, 0,
        "requests failed during the rolling restart ({ok} answered)"
    );
    assert!(ok > 20, "the load ran ({ok} requests)");
    let log = proxy.log();
    for n in 1..=2 {
        let needle = format!("draining instance instance={n}");
        assert!(log.iter().any(|l| l.contains(&needle)), "no drain of {n}");
    }
    let wlog = watchdog.log();
    assert_eq!(
        wlog.iter()
            .filter(|l| l.contains("enabled at the proxy"))
            .count(),
        2,
        "each replacement ended its drain"
    );
    Ok(())
}

#[tokio::test]
async fn sticky_sessions_stay_and_fail_over() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let config = db.write_config_full(2, "", "sticky-sessions = true", "")?;
    let (emrs, proxy) = serving(&config, 2).await?;
    let client = proxy.client(Duration::from_secs(10))?;
    let url = proxy.url("/oscar/ws/SystemInfoService?wsdl");
    let sticky_of = |r: &reqwest::Response| -> Option<u32> {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("oscarbox_instance="))
            .and_then(|v| v.split(';').next())
            .and_then(|v| v.parse().ok())
    };
    let first = client.get(&url).send().await?;
    let home = sticky_of(&first).expect("the first answer sets the cookie");
    let cookie = format!("JSESSIONID=abc; oscarbox_instance={home}");
    let before = proxy.backends().await?;
    for _ in 0..10 {
        let r = client.get(&url).header("cookie", &cookie).send().await?;
        assert_eq!(r.status(), 200);
        assert_eq!(
            sticky_of(&r),
            None,
            "no new cookie while the instance serves"
        );
    }
    let after = proxy.backends().await?;
    let i = (home - 1) as usize;
    assert_eq!(after[i].requests - before[i].requests, 10);
    assert_eq!(after[1 - i].requests, before[1 - i].requests);

    // Its instance dies: the session moves, and the cookie follows.
    emrs[i].signal(Signal::SIGKILL);
    let r = client.get(&url).header("cookie", &cookie).send().await?;
    assert_eq!(r.status(), 200);
    assert_eq!(sticky_of(&r), Some(3 - home));
    Ok(())
}

#[tokio::test]
async fn sighup_adds_backends_without_dropping_a_request() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let config = db.write_config(2, "")?;
    let emrs = instances(&config, 2).await?;
    // The proxy starts knowing one instance; the reload tells it of the second.
    let text = std::fs::read_to_string(&config.path)?;
    std::fs::write(&config.path, text.replace("instances = 2", "instances = 1"))?;
    let proxy = Proxy::start(std::path::Path::new(OSCARBOX), &config).await?;
    all_up(&proxy, 1).await?;
    let direct = reqwest::Client::new();
    fault(&direct, &emrs[0], "slow?ms=1500").await?;
    let client = proxy.client(Duration::from_secs(30))?;
    let pending = tokio::spawn({
        let (client, url) = (
            client.clone(),
            proxy.url("/oscar/ws/services/document/none"),
        );
        async move { Ok::<_, reqwest::Error>(client.get(url).send().await?.status().as_u16()) }
    });
    proxy
        .wait_backends(Duration::from_secs(5), "a request in flight", |b| {
            b[0].in_flight > 0
        })
        .await?;
    std::fs::write(&config.path, text)?;
    proxy.signal(Signal::SIGHUP);
    all_up(&proxy, 2).await?;
    assert_eq!(pending.await??, 404, "the request in flight was finished");
    assert!(proxy
        .log()
        .iter()
        .any(|l| l.contains("reloaded the configuration")));
    Ok(())
}

/// The proxy's peak resident memory, from /proc.
fn peak_rss_mib(pid: i32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM in /proc/{pid}/status"))?;
    Ok(kib / 1024)
}

#[tokio::test]
async fn a_100_mib_document_streams_both_ways_in_flat_memory() -> anyhow::Result<()> {
    use sha2::Digest as _;
    const MIB: usize = 1024 * 1024;
    let db = MariaDb::start().await?;
    let config = db.write_config_full(2, "", "max-request-body-mib = 128", "")?;
    // The EMR's own document routes come with the clinical API; stand-ins serve the same
    // paths so that what is measured here is the proxy.
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/workers/standin.py"
    );
    let mut standins = Vec::new();
    for port in [config.base_port, config.base_port + 1] {
        standins.push(
            tokio::process::Command::new("/usr/bin/python3")
                .args([script, "documents", &port.to_string()])
                .kill_on_drop(true)
                .spawn()?,
        );
    }
    let proxy = Proxy::start(std::path::Path::new(OSCARBOX), &config).await?;
    all_up(&proxy, 2).await?;
    let client = proxy.client(Duration::from_secs(120))?;
    let pattern: Vec<u8> = (0..=255u8).cycle().take(64 * 1024).collect();
    let pattern = bytes::Bytes::from(pattern);

    let mut expected = sha2::Sha256::new();
    for _ in 0..1600 {
        expected.update(&pattern);
    }
    let expected = format!("{:x}", expected.finalize());
    let chunks = {
        let pattern = pattern.clone();
        futures_util::stream::iter((0..1600).map(move |_| Ok::<_, std::io::Error>(pattern.clone())))
    };
    let up = client
        .post(proxy.url("/oscar/ws/services/document/upload"))
        .header("content-length", (100 * MIB).to_string())
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await?;
    assert_eq!(up.status(), 200);
    let answer = up.text().await?;
    assert!(
        answer.contains(&format!("\"bytes\": {}", 100 * MIB)),
        "{answer}"
    );
    assert!(
        answer.contains(&expected),
        "the instance got other bytes: {answer}"
    );

    let mut down = client
        .get(proxy.url("/oscar/ws/services/document/big?mb=100"))
        .send()
        .await?;
    assert_eq!(down.status(), 200);
    let (mut got, mut digest) = (0usize, sha2::Sha256::new());
    while let Some(chunk) = down.chunk().await? {
        got += chunk.len();
        digest.update(&chunk);
    }
    assert_eq!(got, 100 * MIB);
    assert_eq!(format!("{:x}", digest.finalize()), expected);

    // Generous: far below one copy of the document, which is what matters.
    let peak = peak_rss_mib(proxy.pid())?;
    assert!(peak < 64, "the proxy's peak RSS was {peak} MiB");

    // Over the limit: refused before a byte of the body is read.
    let mut s = raw_tls(&proxy).await?;
    s.write_all(
        b"POST /oscar/ws/services/document/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 200000000\r\n\r\n",
    )
    .await?;
    let answer = read_some(&mut s, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("up to 128 MiB"), "{answer}");

    // Clients that give up mid-upload are their own failure: no instance is ejected for them,
    // and nothing stays counted in flight.
    for _ in 0..4 {
        let mut s = raw_tls(&proxy).await?;
        s.write_all(b"POST /oscar/ws/services/document/upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\n\r\n")
            .await?;
        s.write_all(&pattern).await?;
        s.flush().await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nothing_in_flight(&proxy).await?;
    let backends = proxy.backends().await?;
    assert!(backends.iter().all(|b| b.state == "up"), "{backends:#?}");
    Ok(())
}

#[tokio::test]
async fn clients_that_go_away_or_say_nothing_hold_nothing() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let config = db.write_config_full(2, "", "header-read-timeout = \"2s\"", "")?;
    let (emrs, proxy) = serving(&config, 2).await?;
    let direct = reqwest::Client::new();
    for emr in &emrs {
        fault(&direct, emr, "slow?ms=1500").await?;
    }
    // Each client gives up after 300 ms, while its request waits on a slow instance.
    let impatient = proxy.client(Duration::from_millis(300))?;
    for _ in 0..4 {
        let r = impatient
            .get(proxy.url("/oscar/ws/services/document/none"))
            .send()
            .await;
        assert!(r.is_err(), "the client should have given up");
    }
    nothing_in_flight(&proxy).await?;
    assert!(proxy.backends().await?.iter().all(|b| b.state == "up"));

    // A connection that finishes its handshake and then says nothing is closed.
    let mut idle = raw_tls(&proxy).await?;
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the idle connection was not closed: {read:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}
