//! `oscarbox-bench emr|watchdog|proxy|clinical|failover|backup`: figures that the issues set
//! targets for.
//!
//! `emr`: one `oscar-emr` instance on a real MariaDB:
//! - time from process start to its first `alive` (fresh database, then a restart);
//! - idle RSS, and RSS after load;
//! - `isAlive` throughput and latency percentiles under `wrk` (Debian's), which shares this
//!   machine's cores with the server, so the figures are a floor.
//!
//! `watchdog`: over 20 trials, the time from a hang (SIGSTOP) of one of three instances to the
//! watchdog's detection, and to a healthy replacement, with the shipped probe settings.
//!
//! `proxy`: `oscarbox proxy` beside HAProxy in front of the same three instances, both
//! terminating TLS: saturation throughput, latency added at a fixed rate, and a hang (see
//! [`proxy`]).
//!
//! `clinical`: one instance's clinical API: SOAP `getDemographic` and REST
//! `GET /ws/rs/demographics/{id}` under `wrk` beside `isAlive` at the same concurrency, and a
//! 100 MiB document's upload and download rates and peak RSS beside the disk's own rate (see
//! [`clinical`]).
//!
//! `failover`: the two-node MariaDB pair under writes through its endpoint: over 10 kill -9 and
//! 10 SIGSTOP trials of the primary, the time to the first acknowledged write after the fault;
//! the write block of a switchover; acknowledged writes lost (see [`failover`]).
//!
//! `backup`: documents snapshots and a full restore beside stock restic on the same files, and
//! the binlog archive's recovery point under write load (see [`backup`]).
//!
//! Prints a table; asserts nothing. Run it through `scripts/bench`, which builds in release.

#![expect(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use oscarbox_test_harness::{is_alive, Emr, EmrConfig, MariaDb, Signal, Watchdog, IS_ALIVE};

mod backup;
mod clinical;
mod failover;
mod proxy;

fn beside_me(name: &str) -> anyhow::Result<PathBuf> {
    let p = oscarbox_test_harness::bin_path(name);
    std::fs::metadata(&p)
        .with_context(|| format!("{} is not built; run scripts/bench", p.display()))?;
    Ok(p)
}

/// Spawns an instance and measures the time until it first answers `alive`.
async fn time_to_alive(binary: &Path, cfg: &EmrConfig) -> anyhow::Result<(Emr, Duration)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()?;
    let started = tokio::time::Instant::now();
    let emr = Emr::spawn(binary, cfg, 1)?;
    loop {
        if is_alive(&client, emr.addr).await {
            return Ok((emr, started.elapsed()));
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("no alive within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn rss_kib(pid: i32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS in /proc/PID/status")
}

#[derive(Debug, Default)]
struct WrkFigures {
    /// Requests completed in the run, whatever their status.
    requests: u64,
    requests_per_sec: f64,
    p50: String,
    p99: String,
    errors: String,
}

/// What `wrk` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WrkRequest<'a> {
    /// A POST of the SOAP `isAlive` envelope.
    IsAlive,
    /// A plain GET.
    Get,
    /// A GET with these headers (name, value).
    GetWith(&'a [(&'a str, &'a str)]),
    /// A POST of this SOAP envelope, with `SOAPAction: ""` as SOAP clients send it.
    Soap(&'a str),
}

impl WrkRequest<'_> {
    /// The Lua script that makes `wrk` send this; `None` for a plain GET.
    fn script(&self) -> Option<String> {
        let soap = |body: &str| {
            format!(
                "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"text/xml; charset=UTF-8\"\nwrk.body = {}\n",
                lua_string(body)
            )
        };
        match *self {
            WrkRequest::Get => None,
            WrkRequest::IsAlive => Some(soap(IS_ALIVE)),
            WrkRequest::Soap(body) => Some(soap(body) + "wrk.headers[\"SOAPAction\"] = '\"\"'\n"),
            // Spaces inside the index brackets: `t[[[x]]]` is a call of `t` with a long string.
            WrkRequest::GetWith(headers) => Some(
                headers
                    .iter()
                    .map(|(name, value)| {
                        format!(
                            "wrk.headers[ {} ] = {}\n",
                            lua_string(name),
                            lua_string(value)
                        )
                    })
                    .collect(),
            ),
        }
    }
}

/// `s` as a Lua long string, `[==[…]==]`, with as many `=` as it takes to hold `s` verbatim.
fn lua_string(s: &str) -> String {
    let mut level = String::new();
    // The first closing bracket must be the one after `s`, not one in it or across its end.
    while format!("{s}]{level}]").find(&format!("]{level}]")) != Some(s.len()) {
        level.push('=');
    }
    // Lua drops a newline right after the opening bracket: one more keeps `s`'s own.
    let newline = if s.starts_with(['\n', '\r']) {
        "\n"
    } else {
        ""
    };
    format!("[{level}[{newline}{s}]{level}]")
}

async fn wrk(
    url: &str,
    request: WrkRequest<'_>,
    threads: u32,
    connections: u32,
    seconds: u32,
) -> anyhow::Result<WrkFigures> {
    let mut cmd = tokio::process::Command::new("wrk");
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{seconds}s"))
        .arg("--latency");
    let script = std::env::temp_dir().join(format!("oscarbox-bench-{}.lua", std::process::id()));
    let lua = request.script();
    if let Some(lua) = &lua {
        std::fs::write(&script, lua)?;
        cmd.arg("-s").arg(&script);
    }
    let out = cmd.arg(url).output().await;
    if lua.is_some() {
        let _ = std::fs::remove_file(&script);
    }
    let out = out.context("run wrk (apt-get install wrk, or scripts/install-deps)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut f = WrkFigures {
        errors: "none".into(),
        ..WrkFigures::default()
    };
    for line in text.lines().map(str::trim) {
        if let Some((n, _)) = line.split_once(" requests in ") {
            f.requests = n.trim().parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("Requests/sec:") {
            f.requests_per_sec = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = line.strip_prefix("50%") {
            f.p50 = v.trim().to_owned();
        } else if let Some(v) = line.strip_prefix("99%") {
            f.p99 = v.trim().to_owned();
        } else if line.starts_with("Non-2xx") || line.starts_with("Socket errors") {
            if f.errors == "none" {
                f.errors = line.to_owned();
            } else {
                f.errors = format!("{}; {line}", f.errors);
            }
        }
    }
    Ok(f)
}

async fn bench_emr() -> anyhow::Result<()> {
    let binary = beside_me("oscar-emr")?;
    let db = MariaDb::start().await?;
    let cfg = db.write_config(1, "")?;

    let (mut first, fresh) = time_to_alive(&binary, &cfg).await?;
    first.signal(Signal::SIGTERM);
    first.wait_exit(Duration::from_secs(10)).await?;
    drop(first);
    let mut restarts = Vec::new();
    for _ in 0..5 {
        let (mut e, t) = time_to_alive(&binary, &cfg).await?;
        restarts.push(t);
        e.signal(Signal::SIGTERM);
        e.wait_exit(Duration::from_secs(10)).await?;
    }
    restarts.sort();
    let (emr, _) = time_to_alive(&binary, &cfg).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_kib(emr.pid())?;

    let url = emr.url("/ws/SystemInfoService");
    let mut runs = Vec::new();
    for (threads, conns) in [(1, 32), (2, 64)] {
        runs.push((
            threads,
            conns,
            wrk(&url, WrkRequest::IsAlive, threads, conns, 10).await?,
        ));
    }
    let loaded = rss_kib(emr.pid())?;

    println!(
        "oscar-emr, one instance, this machine ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!("{:<44} {:>14}   target / anchor", "figure", "ours");
    println!(
        "{:<44} {:>11.0} ms   ≤ 1000 ms; stock OSCAR on Tomcat: minutes",
        "start to first alive, fresh database",
        fresh.as_secs_f64() * 1000.0
    );
    println!(
        "{:<44} {:>11.0} ms   ≤ 1000 ms",
        "start to first alive, restart (median of 5)",
        restarts[2].as_secs_f64() * 1000.0
    );
    println!(
        "{:<44} {:>11.1} MB   ≤ 30 MB; stock OSCAR: a JVM heap of 1 GB or more",
        "idle RSS",
        idle as f64 / 1024.0
    );
    for (t, c, f) in &runs {
        println!(
            "{:<44} {:>11.0} /s   ≥ 20000 /s",
            format!("isAlive throughput (wrk -t{t} -c{c})"),
            f.requests_per_sec
        );
        println!(
            "{:<44} {:>14}",
            format!("  p50 / p99 latency (wrk -t{t} -c{c})"),
            format!("{} / {}", f.p50, f.p99)
        );
        println!(
            "{:<44} {:>14}",
            format!("  errors (wrk -t{t} -c{c})"),
            f.errors
        );
    }
    println!(
        "{:<44} {:>11.1} MB",
        "RSS after load",
        loaded as f64 / 1024.0
    );
    println!();
    println!("wrk runs on the same two cores as the server, so throughput is a floor.");
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

async fn bench_watchdog() -> anyhow::Result<()> {
    const TRIALS: usize = 20;
    let oscarbox = beside_me("oscarbox")?;
    beside_me("oscar-emr")?;
    let db = MariaDb::start().await?;
    // The shipped probe settings (config/box.toml's defaults). Twenty deliberate hangs in a
    // minute would rightly be a crash loop; this measures detection, so the loop limit is lifted.
    let cfg = db.write_config(3, "[watchdog]\ncrash-loop-restarts = 1000\n")?;
    let wd = Watchdog::start(&oscarbox, &cfg)?;
    let all_healthy =
        |s: &oscarbox_test_harness::WatchdogStatus| s.workers.iter().all(|w| w.state == "healthy");
    wd.wait_until(Duration::from_secs(60), "all healthy", all_healthy)
        .await?;
    let mut detect = Vec::new();
    let mut replace = Vec::new();
    for trial in 0..TRIALS {
        let instance = trial % 3;
        let before = wd.status().await?;
        let pid = before.workers[instance].pid.context("a running instance")?;
        // Hangs strike at any moment of the probe cycle: stop the process at a random phase.
        let phase = Duration::from_millis(rand::random_range(0..500));
        tokio::time::sleep(phase).await;
        let stopped_at = tokio::time::Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGSTOP,
        )?;
        let mut detected = None;
        loop {
            let s = wd.status().await?;
            let w = &s.workers[instance];
            if detected.is_none() && (w.state == "hung" || w.pid != Some(pid)) {
                detected = Some(stopped_at.elapsed());
            }
            if w.state == "healthy" && w.pid != Some(pid) {
                break;
            }
            if stopped_at.elapsed() > Duration::from_secs(60) {
                bail!("trial {trial}: no replacement within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let total = stopped_at.elapsed();
        let d = detected.unwrap_or(total);
        detect.push(d);
        replace.push(total - d);
        wd.wait_until(Duration::from_secs(60), "all healthy", all_healthy)
            .await?;
    }
    detect.sort();
    replace.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("watchdog, {TRIALS} SIGSTOP trials over three oscar-emr instances, probe every 500 ms, timeout 1 s");
    println!();
    println!(
        "{:<44} {:>8} {:>8} {:>8}   target / anchor",
        "figure", "median", "p95", "max"
    );
    println!(
        "{:<44} {:>5.0} ms {:>5.0} ms {:>5.0} ms   ≤ 2000 ms median; Kubernetes liveness defaults ~30 s, HAProxy defaults ~6 s, monit ≥ 30 s",
        "hang to detection",
        ms(percentile(&detect, 0.5)),
        ms(percentile(&detect, 0.95)),
        ms(percentile(&detect, 1.0))
    );
    println!(
        "{:<44} {:>5.0} ms {:>5.0} ms {:>5.0} ms   ≤ 3000 ms",
        "detection to healthy replacement",
        ms(percentile(&replace, 0.5)),
        ms(percentile(&replace, 0.95)),
        ms(percentile(&replace, 1.0))
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("emr") => bench_emr().await,
        Some("watchdog") => bench_watchdog().await,
        Some("proxy") => proxy::bench().await,
        Some("clinical") => clinical::bench().await,
        Some("failover") => failover::bench().await,
        Some("backup") => backup::bench().await,
        None => {
            bench_emr().await?;
            println!();
            bench_watchdog().await?;
            println!();
            proxy::bench().await?;
            println!();
            clinical::bench().await?;
            println!();
            failover::bench().await?;
            println!();
            backup::bench().await
        }
        Some(other) => {
            bail!("unknown benchmark {other:?}: expected `emr`, `watchdog`, `proxy`, `clinical`, `failover` or `backup`")
        }
    }
}
