//! `oscarbox-bench proxy`: `oscarbox proxy` beside HAProxy in front of the same three
//! `oscar-emr` instances, both terminating TLS with the same certificate.
//!
//! HAProxy (Debian's, /usr/sbin/haproxy) is tuned as an expert would for this job: an HTTP
//! health check that POSTs the SOAP `isAlive` envelope every 500 ms with a 1 s timeout,
//! `retry-on` for idempotent requests, `redispatch`. The issue measured it that way marking a
//! SIGSTOPped instance down in about 2.2 s with no client error and a slowest answer of 1 s:
//! that is the bar, printed beside what this run measures of HAProxy itself. Our proxy runs
//! exactly as shipped (the harness's config sets only ports and paths).
//!
//! 1. Saturation: requests/s under `wrk`, ours / HAProxy's.
//! 2. A fixed rate well below saturation: p50 and p99 added over hitting an instance directly.
//! 3. Instance 2 SIGSTOPped in the middle of the fixed-rate load: failed requests, the slowest
//!    answer, and the time until the proxy ejects the instance.
//!
//! The load is `GET /oscar/ws/SystemInfoService?wsdl`: idempotent by method, so both proxies
//! may replay it on another instance after it was sent, and it exercises the EMR's real
//! request path (the WSDL names the address the client used) rather than the health probe's.
//! Every client uses HTTP/1.1 keep-alive.
//!
//! Prints a table; asserts nothing.

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use oscarbox_test_harness::{bin_path, free_port, Emr, MariaDb, Proxy, Signal, IS_ALIVE};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::time::{Instant, MissedTickBehavior};

use crate::{beside_me, percentile, wrk, WrkFigures, WrkRequest};

const HAPROXY: &str = "/usr/sbin/haproxy";
const INSTANCES: u32 = 3;
/// The load's path, below OSCAR's `/oscar` context as integrators call it.
const LOAD_PATH: &str = "/oscar/ws/SystemInfoService?wsdl";
/// Index of the instance that hangs (instance 2).
const HUNG: usize = 1;
const WRK_THREADS: u32 = 2;
const WRK_CONNECTIONS: u32 = 32;
const SATURATION_SECONDS: u32 = 5;
/// Alternating rounds of `wrk` per proxy; the best counts, since on a shared two-core machine
/// noise only ever lowers a throughput figure.
const SATURATION_ROUNDS: usize = 2;
/// The fixed rate is this share of the lower saturation figure: clearly below the knee, so the
/// latency measured is the proxy's, not a queue's.
const FIXED_RATE_SHARE: f64 = 0.3;
const FIXED_RATE_MIN: u32 = 100;
/// At most this: the load client (reqwest, one task per request) shares the two cores with
/// the proxies and the instances, and costs more per request than `wrk`.
const FIXED_RATE_MAX: u32 = 1000;
const FIXED_LENGTH: Duration = Duration::from_secs(10);
const WARM_UP: Duration = Duration::from_secs(1);
/// Hang runs per proxy. Detection depends on where in the probe cycle the hang strikes, so one
/// run alone could land anywhere in a half-second window.
const HANG_TRIALS: usize = 3;
/// The length of a hang run: long enough to see the ejection and the load after it.
const HANG_LENGTH: Duration = Duration::from_secs(7);
/// When, in a hang run, instance 2 is stopped: this, plus a random phase below
/// [`STOP_PHASE_MS`] (the probe interval), so that hangs strike anywhere in the probe cycle.
const STOP_AFTER: Duration = Duration::from_secs(2);
const STOP_PHASE_MS: u64 = 500;
/// Every request of the fixed-rate load gives up after this long and counts as timed out.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);

/// HAProxy's configuration for this job, as an expert would write it.
fn haproxy_config(port: u16, pem: &Path, stats: &Path, backends: &[SocketAddr]) -> String {
    let mut servers = String::new();
    for (i, addr) in backends.iter().enumerate() {
        servers.push_str(&format!("    server e{} {addr} check\n", i + 1));
    }
    format!(
        r#"# Written by oscarbox-bench proxy.
global
    # One line per request, as our proxy's access log at its shipped level: both write to a
    # pipe the bench drains, so neither is measured without the cost of its log.
    log stderr format raw local0
    # `show stat` tells when a server is marked down.
    stats socket {stats} mode 600 level user
    ssl-default-bind-options ssl-min-ver TLSv1.2
    # nbthread left at its default: one thread per CPU, as our proxy runs one worker per core.

defaults
    mode http
    log global
    option httplog
    timeout client 30s
    timeout http-request 10s
    timeout connect 1s
    # A request sent to a hung instance waits this long for an answer, then `response-timeout`
    # replays it on another instance: it bounds the slowest answer during a hang at about
    # this plus one normal answer. 1 s is the bar the issue measured HAProxy at; lower would
    # also cut off (and replay) every legitimately slower answer. Ours waits 800 ms.
    timeout server 1s
    # With `timeout check`, a check's connect timeout is min(timeout connect, inter) and this
    # is its read timeout: the 1 s probe timeout ours uses.
    timeout check 1s
    retries 3
    retry-on conn-failure empty-response response-timeout
    # Every retry goes to another server, not the hung one again.
    option redispatch 1

frontend https
    bind 127.0.0.1:{port} ssl crt {pem} alpn h2,http/1.1
    default_backend emr

backend emr
    balance leastconn
    # Replay after sending only what cannot be applied twice, as ours does (GET, HEAD,
    # OPTIONS and SystemInfoService calls); a connection failure is retried for anything.
    acl idempotent method GET HEAD OPTIONS
    acl idempotent path /ws/SystemInfoService /oscar/ws/SystemInfoService
    http-request disable-l7-retry unless idempotent
    option httpchk
    http-check send meth POST uri /ws/SystemInfoService ver HTTP/1.1 hdr Host localhost hdr Content-Type "text/xml; charset=UTF-8" hdr SOAPAction '""' body '{IS_ALIVE}'
    http-check expect string <return>alive</return>
    default-server inter 500 fall 2 rise 2
{servers}"#,
        stats = stats.display(),
        pem = pem.display(),
    )
}

/// A running HAProxy, killed on drop.
#[derive(Debug)]
struct HaProxy {
    /// Held only to be dropped: spawned with `kill_on_drop`.
    _child: tokio::process::Child,
    port: u16,
    stats: PathBuf,
}

impl HaProxy {
    /// Writes the config and the certificate (the one our proxy generated, key appended, as
    /// HAProxy wants them in one file) into `dir`, validates the config, starts HAProxy in the
    /// foreground and waits until every server is up.
    async fn start(dir: &Path, tls_dir: &Path, backends: &[SocketAddr]) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let pem = dir.join("proxy.pem");
        let mut both = std::fs::read(tls_dir.join("proxy.crt")).context("our proxy's cert")?;
        both.extend(std::fs::read(tls_dir.join("proxy.key")).context("our proxy's key")?);
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&pem)
            .and_then(|mut f| f.write_all(&both))
            .with_context(|| format!("write {}", pem.display()))?;
        let port = free_port();
        let stats = dir.join("stats.sock");
        let cfg = dir.join("haproxy.cfg");
        std::fs::write(&cfg, haproxy_config(port, &pem, &stats, backends))
            .with_context(|| format!("write {}", cfg.display()))?;
        let check = tokio::process::Command::new(HAPROXY)
            .arg("-c")
            .arg("-f")
            .arg(&cfg)
            .output()
            .await
            .context("run haproxy -c (scripts/install-deps --test installs HAProxy)")?;
        if !check.status.success() {
            bail!(
                "haproxy rejected {}:\n{}{}",
                cfg.display(),
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
        }
        // -db: foreground, no master process, so the child is HAProxy itself.
        let mut child = tokio::process::Command::new(HAPROXY)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("start haproxy")?;
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(echo("haproxy", stderr));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("haproxy exited with {status}");
            }
            if let Ok(states) = stat_states(&stats).await {
                if states.len() == backends.len() && states.iter().all(|s| s == "up") {
                    return Ok(HaProxy {
                        _child: child,
                        port,
                        stats,
                    });
                }
            }
            if Instant::now() > deadline {
                bail!("haproxy did not see every instance up within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn states(&self) -> anyhow::Result<Vec<String>> {
        stat_states(&self.stats).await
    }
}

/// Each server's state from `show stat` on the stats socket: `up` while it takes requests
/// (HAProxy's `UP` and `UP 1/2`, going down), `down` once marked down, else HAProxy's word.
async fn stat_states(socket: &Path) -> anyhow::Result<Vec<String>> {
    let mut s = tokio::net::UnixStream::connect(socket).await?;
    s.write_all(b"show stat\n").await?;
    let mut text = String::new();
    s.read_to_string(&mut text).await?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .and_then(|h| h.strip_prefix("# "))
        .context("show stat: no header")?
        .split(',')
        .collect();
    let col = |name: &str| header.iter().position(|c| *c == name);
    let (px, sv, status) = (col("pxname"), col("svname"), col("status"));
    let (Some(px), Some(sv), Some(status)) = (px, sv, status) else {
        bail!("show stat: unexpected header {header:?}");
    };
    Ok(lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.get(px) == Some(&"emr") && f.get(sv).is_some_and(|s| s.starts_with('e')))
        .map(|f| {
            let s = f.get(status).copied().unwrap_or_default();
            if s.starts_with("UP") {
                "up".to_owned()
            } else if s.starts_with("DOWN") {
                "down".to_owned()
            } else {
                s.to_ascii_lowercase()
            }
        })
        .collect())
}

/// Echoes a child's stderr tagged as the harness does its processes' logs, so that
/// `scripts/bench` filters both alike.
#[expect(
    clippy::print_stderr,
    reason = "the child's log goes where the others go"
)]
async fn echo(tag: &'static str, stream: impl tokio::io::AsyncRead + Unpin) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("[{tag}] {line}");
    }
}

/// One of the two proxies under test.
#[derive(Debug, Clone, Copy)]
enum Target<'a> {
    Ours(&'a Proxy),
    HaProxy(&'a HaProxy),
}

impl Target<'_> {
    fn url(&self) -> String {
        let port = match self {
            Target::Ours(p) => p.config.https_port,
            Target::HaProxy(h) => h.port,
        };
        format!("https://localhost:{port}{LOAD_PATH}")
    }

    /// Each instance's state as the proxy sees it: `up`, `down`, or another word.
    async fn states(&self) -> anyhow::Result<Vec<String>> {
        match self {
            Target::Ours(p) => Ok(p.backends().await?.into_iter().map(|b| b.state).collect()),
            Target::HaProxy(h) => h.states().await,
        }
    }

    async fn wait_all_up(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let states = self.states().await?;
            if states.len() == INSTANCES as usize && states.iter().all(|s| s == "up") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("not every instance up within 30 s: {states:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// HTTP/1.1 with keep-alive, as `wrk` speaks. An idle connection is dropped by the client
/// well before any server here closes it (HAProxy after 10 s, `timeout http-request`), so
/// no request races a server's close of the connection it was sent on.
fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .http1_only()
        .pool_idle_timeout(Duration::from_secs(5))
}

/// A client that trusts only the generated authority. `localhost` is pinned to 127.0.0.1,
/// where both proxies listen, so no lookup or fallback from ::1 sits in a measured request.
fn tls_client(ca: &Path) -> anyhow::Result<reqwest::Client> {
    let pem = std::fs::read(ca).with_context(|| format!("read {}", ca.display()))?;
    Ok(client_builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem)?)
        .resolve("localhost", SocketAddr::from(([127, 0, 0, 1], 0)))
        .build()?)
}

/// What became of every request of one fixed-rate run.
#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    /// An answer other than 200, or a broken connection.
    failed: u64,
    /// No complete answer within [`REQUEST_TIMEOUT`].
    timed_out: u64,
    /// Of the requests answered 200, sorted.
    latencies: Vec<Duration>,
    /// Of every request, whatever its outcome.
    slowest: Duration,
}

impl Tally {
    fn ms(&self, p: f64) -> f64 {
        ms(percentile(&self.latencies, p))
    }
}

enum Outcome {
    Ok,
    Failed,
    TimedOut,
}

async fn one(client: &reqwest::Client, url: &str) -> (Outcome, Duration) {
    let started = Instant::now();
    let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let resp = client.get(url).send().await?;
        let status = resp.status();
        resp.bytes().await?;
        Ok::<_, reqwest::Error>(status)
    })
    .await;
    let outcome = match answer {
        Ok(Ok(status)) if status == reqwest::StatusCode::OK => Outcome::Ok,
        Ok(_) => Outcome::Failed,
        Err(_) => Outcome::TimedOut,
    };
    (outcome, started.elapsed())
}

/// An open-loop load: a request every 1/`rate` s for `length`, each in its own task with its
/// own timeout, whether or not earlier ones have been answered, and every one counted.
///
/// Hand-written rather than `wrk`, `wrk2` or `oha`: a closed loop (`wrk`) stops sending on a
/// connection stuck on a hung instance and so hides exactly the requests that matter here;
/// `oha` would need a `cargo install`, and neither can stop an instance at a known moment of
/// the run nor report the slowest answer and every failure per request.
async fn open_loop(
    client: &reqwest::Client,
    url: &str,
    rate: u32,
    length: Duration,
) -> anyhow::Result<Tally> {
    let total = (f64::from(rate) * length.as_secs_f64()).round() as u64;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    // A late tick is made up at once: the schedule sets the pace, never the answers.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..total {
        ticks.tick().await;
        let (client, url) = (client.clone(), url.to_owned());
        tasks.spawn(async move { one(&client, &url).await });
    }
    let mut tally = Tally {
        sent: total,
        ..Tally::default()
    };
    while let Some(done) = tasks.join_next().await {
        let (outcome, took) = done?;
        tally.slowest = tally.slowest.max(took);
        match outcome {
            Outcome::Ok => tally.latencies.push(took),
            Outcome::Failed => tally.failed += 1,
            Outcome::TimedOut => tally.timed_out += 1,
        }
    }
    tally.latencies.sort();
    Ok(tally)
}

/// The fixed-rate load through `target` with instance 2 stopped [`STOP_AFTER`] (and a random
/// phase) into it: the tally, and how long after the stop the proxy first reported the
/// instance down (`None`: not before the run ended).
async fn hang(
    target: Target<'_>,
    client: &reqwest::Client,
    rate: u32,
    hung: &Emr,
) -> anyhow::Result<(Tally, Option<Duration>)> {
    let url = target.url();
    let load = open_loop(client, &url, rate, HANG_LENGTH);
    let watch = async {
        let phase = Duration::from_millis(rand::random_range(0..STOP_PHASE_MS));
        tokio::time::sleep(STOP_AFTER + phase).await;
        hung.signal(Signal::SIGSTOP);
        let stopped = Instant::now();
        while stopped.elapsed() < HANG_LENGTH - STOP_AFTER - phase {
            if target.states().await?.get(HUNG).map(String::as_str) == Some("down") {
                return Ok(Some(stopped.elapsed()));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok::<_, anyhow::Error>(None)
    };
    let (tally, ejected) = tokio::join!(load, watch);
    // Resumed whatever happened, so the next phase has three instances again.
    hung.signal(Signal::SIGCONT);
    Ok((tally?, ejected?))
}

/// The hang runs through one proxy, together.
#[derive(Debug, Default)]
struct Hangs {
    sent: u64,
    failed: u64,
    slowest: Duration,
    /// Per run; `None` where the instance was not ejected before the run ended.
    ejections: Vec<Option<Duration>>,
}

impl Hangs {
    fn add(&mut self, t: &Tally, ejected: Option<Duration>) {
        self.sent += t.sent;
        self.failed += t.failed + t.timed_out;
        self.slowest = self.slowest.max(t.slowest);
        self.ejections.push(ejected);
    }

    /// `median (max)`, a run without ejection counting as the longest.
    fn ejection(&self) -> String {
        let mut e = self.ejections.clone();
        // `None` sorts first; a missed ejection is the worst, so it goes last.
        e.sort_by_key(|d| (d.is_none(), *d));
        let show = |d: Option<&Option<Duration>>| match d {
            Some(Some(d)) => format!("{:.0}", ms(*d)),
            _ => "never".to_owned(),
        };
        format!("{} ({}) ms", show(e.get(e.len() / 2)), show(e.last()))
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn row(figure: &str, ours: &str, theirs: &str, target: &str) {
    println!("{figure:<46} {ours:>16} {theirs:>16}   {target}");
}

fn best(runs: &[WrkFigures]) -> &WrkFigures {
    runs.iter()
        .max_by(|a, b| a.requests_per_sec.total_cmp(&b.requests_per_sec))
        .expect("at least one round")
}

pub async fn bench() -> anyhow::Result<()> {
    let oscarbox = beside_me("oscarbox")?;
    beside_me("oscar-emr")?;
    std::fs::metadata(HAPROXY)
        .with_context(|| format!("{HAPROXY}: run scripts/install-deps --test"))?;
    let db = MariaDb::start().await?;
    let cfg = db.write_config(INSTANCES, "")?;
    let mut emrs = Vec::new();
    for n in 1..=INSTANCES {
        emrs.push(Emr::start(&bin_path("oscar-emr"), &cfg, n).await?);
    }
    let ours = Proxy::start(&oscarbox, &cfg).await?;
    let ours_t = Target::Ours(&ours);
    ours_t.wait_all_up().await?;
    let backends: Vec<SocketAddr> = (1..=INSTANCES).map(|n| cfg.addr(n)).collect();
    let tls_dir = cfg.state_dir.join("tls");
    let haproxy = HaProxy::start(&db.dir.path().join("haproxy"), &tls_dir, &backends).await?;
    let theirs_t = Target::HaProxy(&haproxy);
    let version = tokio::process::Command::new(HAPROXY)
        .arg("-v")
        .output()
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let version = version
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("?")
        .to_owned();

    // 1. Saturation, alternating so that neither always runs on a warmer or busier machine.
    let (mut sat_ours, mut sat_theirs) = (Vec::new(), Vec::new());
    for _ in 0..SATURATION_ROUNDS {
        for (t, runs) in [(ours_t, &mut sat_ours), (theirs_t, &mut sat_theirs)] {
            runs.push(
                wrk(
                    &t.url(),
                    WrkRequest::Get,
                    WRK_THREADS,
                    WRK_CONNECTIONS,
                    SATURATION_SECONDS,
                )
                .await?,
            );
        }
    }
    let (sat_ours, sat_theirs) = (best(&sat_ours), best(&sat_theirs));
    let lower = sat_ours.requests_per_sec.min(sat_theirs.requests_per_sec);
    let rate = ((lower * FIXED_RATE_SHARE / 50.0).round() as u32 * 50)
        .clamp(FIXED_RATE_MIN, FIXED_RATE_MAX);

    // 2. Latency at the fixed rate: directly to instance 1 (plain HTTP), then through each.
    let direct_client = client_builder().build()?;
    let direct_url = format!("http://{}{LOAD_PATH}", cfg.addr(1));
    let ours_client = tls_client(&ours.ca_cert())?;
    let theirs_client = tls_client(&ours.ca_cert())?;
    let mut fixed = Vec::new();
    for (client, url) in [
        (&direct_client, direct_url),
        (&ours_client, ours_t.url()),
        (&theirs_client, theirs_t.url()),
    ] {
        // Warm: connections open and TLS sessions set up before anything is measured.
        open_loop(client, &url, rate, WARM_UP).await?;
        fixed.push(open_loop(client, &url, rate, FIXED_LENGTH).await?);
    }
    let [direct, lat_ours, lat_theirs] =
        <[Tally; 3]>::try_from(fixed).map_err(|_| anyhow::anyhow!("three fixed-rate runs"))?;

    // 3. The hang, through ours then HAProxy, with every instance back up in both between.
    //    Alternating, as for saturation.
    let (mut hang_ours, mut hang_theirs) = (Hangs::default(), Hangs::default());
    for _ in 0..HANG_TRIALS {
        for (t, client, hangs) in [
            (ours_t, &ours_client, &mut hang_ours),
            (theirs_t, &theirs_client, &mut hang_theirs),
        ] {
            let (tally, ejected) = hang(t, client, rate, &emrs[HUNG]).await?;
            hangs.add(&tally, ejected);
            ours_t.wait_all_up().await?;
            theirs_t.wait_all_up().await?;
        }
    }

    println!(
        "proxy: oscarbox proxy (as shipped) vs HAProxy {version}, both TLS with the same certificate, \
         over three oscar-emr instances, this machine ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("load: GET {LOAD_PATH} (idempotent), HTTP/1.1 keep-alive");
    println!();
    row("figure", "ours", "HAProxy", "target / bar");
    let rps = |f: &WrkFigures| format!("{:.0} /s", f.requests_per_sec);
    row(
        &format!(
            "saturation, wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS}, best of {SATURATION_ROUNDS}×{SATURATION_SECONDS} s"
        ),
        &rps(sat_ours),
        &rps(sat_theirs),
        "",
    );
    row(
        "  ratio ours / HAProxy",
        &format!(
            "{:.2}×",
            sat_ours.requests_per_sec / sat_theirs.requests_per_sec
        ),
        "",
        "≥ 1.0×",
    );
    row(
        "  p50 / p99 latency at saturation",
        &format!("{} / {}", sat_ours.p50, sat_ours.p99),
        &format!("{} / {}", sat_theirs.p50, sat_theirs.p99),
        "",
    );
    row("  errors (wrk)", &sat_ours.errors, &sat_theirs.errors, "");
    let secs = FIXED_LENGTH.as_secs();
    let p = |t: &Tally| format!("{:.2} / {:.2} ms", t.ms(0.5), t.ms(0.99));
    row(
        &format!("fixed {rate}/s for {secs} s: p50 / p99"),
        &p(&lat_ours),
        &p(&lat_theirs),
        &format!("direct to instance 1 (plain HTTP): {}", p(&direct)),
    );
    let added = |t: &Tally, q: f64| format!("{:+.2} ms", t.ms(q) - direct.ms(q));
    row(
        "  p50 added over direct",
        &added(&lat_ours, 0.5),
        &added(&lat_theirs, 0.5),
        "",
    );
    row(
        "  p99 added over direct",
        &added(&lat_ours, 0.99),
        &added(&lat_theirs, 0.99),
        "≤ 1 ms",
    );
    let bad = |t: &Tally| format!("{} of {}", t.failed + t.timed_out, t.sent);
    row(
        "  failed or timed-out requests",
        &bad(&lat_ours),
        &bad(&lat_theirs),
        &format!("direct: {}", bad(&direct)),
    );
    println!(
        "{:<46} {:>16} {:>16}",
        format!(
            "instance 2 SIGSTOPped, {HANG_TRIALS} runs of {} s at {rate}/s",
            HANG_LENGTH.as_secs()
        ),
        "",
        ""
    );
    let hang_bad = |h: &Hangs| format!("{} of {}", h.failed, h.sent);
    row(
        "  failed requests (timed out at 5 s included)",
        &hang_bad(&hang_ours),
        &hang_bad(&hang_theirs),
        "0; HAProxy bar 0",
    );
    row(
        "  slowest response (max of the runs)",
        &format!("{:.0} ms", ms(hang_ours.slowest)),
        &format!("{:.0} ms", ms(hang_theirs.slowest)),
        "≤ 1000 ms; HAProxy bar 1000 ms",
    );
    row(
        "  hang to ejection, median (max)",
        &hang_ours.ejection(),
        &hang_theirs.ejection(),
        "≤ 2000 ms; HAProxy bar ≈ 2200 ms",
    );
    println!();
    println!(
        "Direct is plain HTTP to one instance; both proxies add TLS termination and balance over three.\n\
         The fixed rate, {rate}/s, is {:.0}% of the lower saturation figure ({:.0}% of it, at most \
         {FIXED_RATE_MAX}/s). wrk, the load client and every process share this machine's cores, so \
         throughput is a floor.\n\
         Ejection is polled every {} ms (our admin socket; HAProxy's `show stat`); each hang run \
         stops the instance at a random point of the 500 ms probe cycle.",
        f64::from(rate) / lower * 100.0,
        FIXED_RATE_SHARE * 100.0,
        POLL.as_millis()
    );
    Ok(())
}
