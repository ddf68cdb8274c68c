//! The watchdog with real processes and real signals: hangs (SIGSTOP, the EMR's injected hang),
//! crashes (kill -9), workers that exit at once, a slow-starting Tomcat stand-in, workers that
//! answer the probe wrongly, the watchdog's own death, and the database pair it runs.

use std::time::Duration;

use oscarbox_test_harness::{
    descendants, is_gone, write_pair_config, EmrConfig, MariaDb, Signal, Watchdog,
};
use oscarbox_watchdog_api::Status;

const OSCARBOX: &str = env!("CARGO_BIN_EXE_oscarbox");
const STANDIN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/workers/standin.py"
);

/// Fast settings so that the tests finish in seconds; the verdict logic is the same.
const FAST: &str = r#"
[watchdog]
probe-interval = "200ms"
probe-timeout = "500ms"
failure-threshold = 3
startup-budget = "20s"
dump-wait = "3s"
stop-grace = "7s"
backoff-initial = "300ms"
backoff-max = "1s"
crash-loop-restarts = 3
crash-loop-window = "60s"
failed-retry-interval = "60s"
"#;

const WAIT: Duration = Duration::from_secs(60);

fn all_healthy(n: usize) -> impl Fn(&Status) -> bool {
    move |s| s.workers.len() == n && s.workers.iter().all(|w| w.state == "healthy")
}

fn pid_of(s: &Status, instance: u32) -> i32 {
    s.workers
        .iter()
        .find(|w| w.instance == instance)
        .and_then(|w| w.pid)
        .expect("a running worker has a pid")
}

fn kill(pid: i32, signal: Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("signal a worker");
}

async fn start(db: &MariaDb, instances: u32) -> anyhow::Result<(Watchdog, Status)> {
    let cfg = db.write_config(instances, FAST)?;
    let wd = Watchdog::start(OSCARBOX.as_ref(), &cfg)?;
    let status = wd
        .wait_until(WAIT, "all healthy", all_healthy(instances as usize))
        .await?;
    Ok((wd, status))
}

#[tokio::test]
async fn sigstop_one_of_three_restarts_it_and_only_it() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let (wd, before) = start(&db, 3).await?;
    let stopped = pid_of(&before, 2);
    kill(stopped, Signal::SIGSTOP);
    let after = wd
        .wait_until(WAIT, "instance 2 replaced", |s| {
            s.workers
                .iter()
                .any(|w| w.instance == 2 && w.state == "healthy" && w.pid != Some(stopped))
        })
        .await?;
    assert!(is_gone(stopped), "the stopped process was killed");
    for n in [1, 3] {
        assert_eq!(
            pid_of(&after, n),
            pid_of(&before, n),
            "instance {n} kept its process"
        );
        assert_eq!(after.workers[(n - 1) as usize].restarts, 0);
    }
    assert_eq!(after.workers[1].restarts, 1);
    let log = wd.log().join("\n");
    assert!(log.contains("healing a hung worker"), "{log}");
    assert!(log.contains("the process is stopped (SIGSTOP); it cannot write a dump"));
    Ok(())
}

#[tokio::test]
async fn injected_hang_is_dumped_then_restarted() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let (wd, before) = start(&db, 1).await?;
    let hung = pid_of(&before, 1);
    let resp = reqwest::Client::new()
        .post(format!("http://{}/oscarbox/fault/hang", wd.config.addr(1)))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let after = wd
        .wait_until(WAIT, "the hung instance replaced", |s| {
            s.workers[0].state == "healthy" && s.workers[0].pid != Some(hung)
        })
        .await?;
    assert_eq!(after.workers[0].restarts, 1);
    let log = wd.log().join("\n");
    // The diagnostic came before the stop: the EMR's task dump is in the watchdog's log.
    let dump = log
        .find("task dump (SIGQUIT)")
        .expect("a task dump in the log");
    let stop = log
        .find("process stopped")
        .or_else(|| log.find("sending SIGKILL"))
        .expect("a stop");
    assert!(dump < stop, "dump before stop");
    assert!(log.contains("diagnostic dump written to the log"));
    Ok(())
}

#[tokio::test]
async fn kill_9_is_restarted() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let (wd, before) = start(&db, 2).await?;
    let victim = pid_of(&before, 1);
    kill(victim, Signal::SIGKILL);
    let after = wd
        .wait_until(WAIT, "instance 1 replaced", |s| {
            s.workers[0].state == "healthy" && s.workers[0].pid != Some(victim)
        })
        .await?;
    assert_eq!(after.workers[0].restarts, 1);
    assert_eq!(pid_of(&after, 2), pid_of(&before, 2));
    Ok(())
}

#[tokio::test]
async fn a_worker_that_exits_at_once_backs_off_then_fails_with_the_reason() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let cfg = db.write_config_with(
        1,
        "command = \"/bin/false\"\nargs = []\nkind = \"process\"",
        FAST,
    )?;
    let mut wd = Watchdog::start(OSCARBOX.as_ref(), &cfg)?;
    wd.allow_error("crash loop");
    let failed = wd
        .wait_until(WAIT, "failed", |s| s.workers[0].state == "failed")
        .await?;
    let why = &failed.workers[0].why;
    assert!(
        why.starts_with("crash loop: 3 restarts within 60s; last: exited with exit status: 1"),
        "{why}"
    );
    // The CLI shows the same reason to a person.
    let out = std::process::Command::new(OSCARBOX)
        .args(["status", "--config"])
        .arg(&cfg.path)
        .output()?;
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "no instance serves: critical\n{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("0 of 1 EMR instances healthy"), "{table}");
    assert!(
        table.contains("failed") && table.contains("crash loop: 3 restarts"),
        "{table}"
    );
    // The first start and three restarts, then no more: the exits are counted from the
    // watchdog's log, which may reach the test a little after its status.
    let exits = || {
        wd.log()
            .iter()
            .filter(|l| l.trim_end().ends_with("exited with exit status: 1"))
            .count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while exits() < 4 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(exits(), 4, "the first start and three restarts");
    Ok(())
}

fn standin(
    db: &MariaDb,
    mode: &str,
    seconds: u32,
    extra_watchdog: &str,
) -> anyhow::Result<EmrConfig> {
    db.write_config_with(
        1,
        &format!(
            "command = \"/usr/bin/python3\"\nargs = [\"{STANDIN}\", \"{mode}\", \"{{port}}\", \"{seconds}\"]\nkind = \"process\"\nprobe-path = \"/oscar/ws/SystemInfoService\""
        ),
        &FAST.replace("startup-budget = \"20s\"", extra_watchdog),
    )
}

#[tokio::test]
async fn a_slow_starting_tomcat_is_never_killed_within_its_startup_budget() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let cfg = standin(&db, "slow-start", 20, "startup-budget = \"40s\"")?;
    let wd = Watchdog::start(OSCARBOX.as_ref(), &cfg)?;
    let first = wd
        .wait_until(Duration::from_secs(10), "started", |s| {
            // The status may come before the worker is registered.
            s.workers.first().is_some_and(|w| w.pid.is_some())
        })
        .await?;
    let pid = pid_of(&first, 1);
    let healthy = wd
        .wait_until(Duration::from_secs(45), "healthy", |s| {
            s.workers.first().is_some_and(|w| w.state == "healthy")
        })
        .await?;
    assert_eq!(pid_of(&healthy, 1), pid, "the same process, never killed");
    assert_eq!(healthy.workers[0].restarts, 0);
    Ok(())
}

#[tokio::test]
async fn wrong_answers_never_count_as_alive() -> anyhow::Result<()> {
    for mode in ["garbage", "http500", "wrong-soap"] {
        let db = MariaDb::start().await?;
        let cfg = standin(&db, mode, 0, "startup-budget = \"2s\"")?;
        let wd = Watchdog::start(OSCARBOX.as_ref(), &cfg)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
        let mut restarted = false;
        while tokio::time::Instant::now() < deadline {
            if let Ok(s) = wd.status().await {
                assert_ne!(
                    s.workers[0].state, "healthy",
                    "{mode} was judged alive: {s:?}"
                );
                restarted |= s.workers[0].restarts > 0;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            restarted,
            "{mode}: restarted once its startup budget was spent"
        );
    }
    Ok(())
}

#[tokio::test]
async fn sigterm_to_the_watchdog_leaves_no_child() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let (mut wd, _) = start(&db, 2).await?;
    let children = descendants(wd.pid());
    assert!(children.len() >= 2, "{children:?}");
    wd.signal(Signal::SIGTERM);
    let status = wd.wait_exit(Duration::from_secs(30)).await?;
    assert!(status.success(), "{status}");
    for p in children {
        assert!(is_gone(p), "process {p} survived the watchdog");
    }
    Ok(())
}

#[tokio::test]
async fn sigkill_to_the_watchdog_leaves_no_child_holding_a_port() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let (mut wd, _) = start(&db, 2).await?;
    let children = descendants(wd.pid());
    wd.signal(Signal::SIGKILL);
    wd.wait_exit(Duration::from_secs(10)).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !children.iter().all(|&p| is_gone(p)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "children outlived a SIGKILLed watchdog"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for n in [1, 2] {
        let addr = wd.config.addr(n);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while std::net::TcpListener::bind(addr).is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "port of instance {n} is still held"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // A new watchdog on the same configuration starts cleanly (stale socket replaced).
    let again = Watchdog::start(OSCARBOX.as_ref(), &wd.config)?;
    again
        .wait_until(WAIT, "all healthy again", all_healthy(2))
        .await?;
    Ok(())
}

#[tokio::test]
async fn rolling_restart_and_sighup_reload() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    // Three consecutive ports are reserved; the box starts with two and reloads to three.
    let cfg = db.write_config(3, FAST)?;
    let text = std::fs::read_to_string(&cfg.path)?;
    std::fs::write(&cfg.path, text.replace("instances = 3", "instances = 2"))?;
    let wd = Watchdog::start(OSCARBOX.as_ref(), &cfg)?;
    let before = wd.wait_until(WAIT, "two healthy", all_healthy(2)).await?;
    let out = tokio::process::Command::new(OSCARBOX)
        .args(["workers", "restart", "--config"])
        .arg(&wd.config.path)
        .output()
        .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("restarted instances [1, 2]"));
    let after = wd.status().await?;
    for n in [1, 2] {
        assert_ne!(
            pid_of(&after, n),
            pid_of(&before, n),
            "instance {n} was replaced"
        );
    }
    assert!(all_healthy(2)(&after));

    // SIGHUP with one more instance configured adds it, and leaves the others alone.
    std::fs::write(&cfg.path, text)?;
    wd.signal(Signal::SIGHUP);
    let grown = wd.wait_until(WAIT, "three healthy", all_healthy(3)).await?;
    for n in [1, 2] {
        assert_eq!(pid_of(&grown, n), pid_of(&after, n));
    }
    Ok(())
}

#[tokio::test]
async fn a_jvm_in_a_long_collection_gets_a_bounded_extension() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let cfg = db.write_config_with(
        1,
        &format!(
            "command = \"/usr/bin/python3\"\nargs = [\"{STANDIN}\", \"gc-pause\", \"{{port}}\", \"3\"]\nkind = \"jvm\"\nprobe-path = \"/oscar/ws/SystemInfoService\""
        ),
        &FAST.replace("startup-budget = \"20s\"", "startup-budget = \"20s\"\ngc-max-extension = \"5s\""),
    )?;
    let wd = Watchdog::start(OSCARBOX.as_ref(), &cfg)?;
    let healthy = wd
        .wait_until(WAIT, "healthy", |s| s.workers[0].state == "healthy")
        .await?;
    let pid = pid_of(&healthy, 1);
    // HotSpot's counters for this pid say a collection is running (entered, not exited).
    let dir = std::env::temp_dir().join(format!("hsperfdata_oscarbox-test-{pid}"));
    std::fs::create_dir_all(&dir)?;
    let counters = oscarbox_watchdog::hsperf::encode(
        &[
            ("sun.gc.collector.0.invocations", 7),
            ("sun.gc.collector.0.lastEntryTime", 2_000),
            ("sun.gc.collector.0.lastExitTime", 1_000),
            ("sun.os.hrt.frequency", 1_000_000_000),
        ],
        false,
    );
    std::fs::write(dir.join(pid.to_string()), counters)?;
    // It stops answering (and burns CPU) after 3 s: extended, not healed, while collecting.
    let extended = wd
        .wait_until(Duration::from_secs(20), "extended for a collection", |s| {
            s.workers[0].why.contains("collecting garbage")
        })
        .await;
    let started = tokio::time::Instant::now();
    let healed = wd
        .wait_until(Duration::from_secs(30), "healed after the extension", |s| {
            s.workers[0].pid != Some(pid)
        })
        .await;
    let _ = std::fs::remove_dir_all(&dir);
    extended?;
    healed?;
    // The extension held it for most of its 5 s (then it was healed even mid-collection).
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "healed after {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn memory_ceiling_restarts_one_at_a_time_and_never_the_last_healthy() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    // A 1 MiB ceiling that every oscar-emr exceeds: the guard keeps restarting them, which
    // shows that it does so one at a time.
    let cfg = db.write_config(2, &format!("{FAST}memory-ceiling-mib = 1\n"))?;
    let mut wd = Watchdog::start(OSCARBOX.as_ref(), &cfg)?;
    // Restarting again and again for memory is itself a crash loop, and is reported as one.
    wd.allow_error("crash loop");
    wd.wait_until(WAIT, "both healthy", all_healthy(2)).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut restarts = 0;
    while tokio::time::Instant::now() < deadline {
        let s = wd.status().await?;
        let healthy = s.workers.iter().filter(|w| w.state == "healthy").count();
        assert!(healthy >= 1, "both instances were down at once: {s:#?}");
        restarts = s.workers.iter().map(|w| w.restarts).sum();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        restarts >= 2,
        "the guard restarted instances over their ceiling ({restarts})"
    );
    assert!(wd
        .log()
        .iter()
        .any(|l| l.contains("above its memory ceiling: restarting it")));
    Ok(())
}

#[tokio::test]
async fn systemd_hears_ready_watchdog_and_status() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let cfg = db.write_config(1, FAST)?;
    let notify = db.dir.path().join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&notify)?;
    let wd = Watchdog::start_with_env(
        OSCARBOX.as_ref(),
        &cfg,
        &[("NOTIFY_SOCKET", notify.as_path())],
    )?;
    let mut heard = String::new();
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(heard.contains("READY=1")
        && heard.contains("WATCHDOG=1")
        && heard.contains("STATUS=1 of 1 EMR instances healthy"))
    {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let n = tokio::time::timeout(left, socket.recv(&mut buf)).await??;
        heard.push_str(&String::from_utf8_lossy(&buf[..n]));
        heard.push('\n');
    }
    // The control socket is for this user only.
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&wd.socket)?.permissions());
    assert_eq!(mode & 0o777, 0o600);
    Ok(())
}

/// The appliance's layout: two database nodes and an endpoint of their own. The watchdog runs
/// the pair as its children behind the endpoint, the instances reach the primary through it,
/// the box's status and `oscarbox db status` tell the roles, lag and semi-sync, and a SIGTERM
/// stops both `mariadbd` with everything else.
#[tokio::test]
async fn the_watchdog_runs_the_database_pair_and_reports_it() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (config, endpoint) = write_pair_config(dir.path(), 2, FAST)?;
    let mut wd = Watchdog::start(OSCARBOX.as_ref(), &config)?;
    wd.wait_until(Duration::from_secs(180), "all healthy", all_healthy(2))
        .await?;

    // The box's status carries the pair's own view.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let db = loop {
        let s = wd.box_status().await?;
        let db = s.database;
        let seen = db.endpoint_reachable
            && db.writable == Some(true)
            && db.nodes.len() == 2
            && db.nodes[0].role.as_deref() == Some("primary")
            && db.nodes[0].semi_sync == Some(true)
            && db.nodes[1].role.as_deref() == Some("replica")
            && db.nodes[1].lag_seconds.is_some();
        if seen {
            break db;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the status never showed the pair: {db:#?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert!(
        db.nodes.iter().all(|n| n.reachable == Some(true)),
        "{db:#?}"
    );
    assert!(db.last_failover.is_none(), "no failover happened");

    let out = tokio::process::Command::new(OSCARBOX)
        .args(["db", "status", "--json", "--config"])
        .arg(&config.path)
        .output()
        .await?;
    assert!(out.status.success(), "{out:?}");
    let pair: oscarbox_watchdog_api::db::DbPairStatus =
        oscarbox_watchdog_api::from_line(std::str::from_utf8(&out.stdout)?)?;
    assert_eq!(pair.primary, "A");
    assert_eq!(pair.endpoint_target.as_deref(), Some("A"));
    assert!(pair.epoch >= 1, "promoted under an epoch: {pair:?}");
    assert_eq!(pair.nodes[1].replicating, Some(true), "{pair:?}");

    // Both mariadbd are the watchdog's children, and go with it.
    let children = descendants(wd.pid());
    let mariadbd: Vec<i32> = children
        .iter()
        .copied()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "mariadbd")
        })
        .collect();
    assert_eq!(mariadbd.len(), 2, "both nodes run under the watchdog");
    wd.signal(Signal::SIGTERM);
    let status = wd.wait_exit(Duration::from_secs(120)).await?;
    assert!(status.success(), "{status}");
    for p in children {
        assert!(is_gone(p), "process {p} survived the watchdog");
    }
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", endpoint)).is_ok(),
        "the endpoint's port is free again"
    );
    Ok(())
}
