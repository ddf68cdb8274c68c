//! `oscarbox-bench failover`: the two-node MariaDB pair (both `small`, on loopback, in a
//! temporary directory) run by the executor, ticking every `TICK` in a task as the watchdog
//! does (policy: `confirm_after` and `replica_silence` 2 s, the rest the defaults), under four
//! writers that insert (writer, seq) rows through the stable endpoint and log each write
//! MariaDB acknowledged, with when it was sent and when its answer came.
//!
//! 1. Crash trials: kill -9 of the current primary (named by the ledger), each injected once the
//!    pair is settled (the other node replicating, semi-sync active on the primary, writes
//!    flowing). A primary with its data intact is restarted in place (the policy allows two
//!    restarts in ten minutes, then fails over instead); each trial says which happened, from
//!    the ledger's primary before and after.
//! 2. Hang trials: SIGSTOP of the current primary, which is fenced and failed over from. After
//!    each, the old primary rejoins as a replica (rebuilt with mariabackup if it diverged).
//! 3. Switchovers, retried while refused: the write block is the longest gap between two
//!    consecutive acknowledged writes around each.
//!
//! A fault's figure is the time from the signal to the first acknowledgement of a write sent
//! after it, by any writer. `OSCARBOX_BENCH_TRIALS` sets the number of crash and of hang trials
//! (default 10; switchovers: 3, or fewer if the trials are fewer). Any trial, and any wait for
//! the pair to settle, is abandoned with a warning after 120 s. At the end the writers stop and
//! every row is read from the final primary: acknowledged writes lost = acknowledged − present.
//!
//! The anchors (orchestrator at GitHub, MHA, MaxScale) are published figures, printed as such:
//! they cannot run here. Prints a table; asserts nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use mysql_async::prelude::Queryable as _;
use mysql_async::Conn;
use nix::sys::signal::Signal;
use oscarbox_dbpair::endpoint::Endpoint;
use oscarbox_dbpair::executor::{Executor, Paths, SwitchoverError, TICK};
use oscarbox_dbpair::ledger;
use oscarbox_failover::{NodeId, Policy};
use oscarbox_test_harness::{free_port, pair};
use tokio::sync::Mutex as AsyncMutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::percentile;

/// Crash trials and hang trials, each, unless `OSCARBOX_BENCH_TRIALS` says otherwise.
const DEFAULT_TRIALS: usize = 10;
const SWITCHOVERS: usize = 3;
const WRITERS: u32 = 4;
/// The longest a trial, or a wait for the pair to settle, may take before it is abandoned.
const LIMIT: Duration = Duration::from_secs(120);

const CRASH_TARGET: Duration = Duration::from_secs(5);
const HANG_TARGET: Duration = Duration::from_secs(8);
const SWITCHOVER_TARGET: Duration = Duration::from_secs(2);
const PUBLISHED: &str = "published: orchestrator at GitHub 10-13 s, MHA 10-30 s, MaxScale defaults up to 25 s before failover starts";

/// What the writers were told.
#[derive(Debug, Default)]
struct Log {
    /// Every acknowledged write: (writer, seq).
    acked: BTreeSet<(u32, u32)>,
    /// Each acknowledged write's (sent, acknowledged) instants, in the order they were logged:
    /// a write logged after index `i` was acknowledged after entry `i` was read.
    times: Vec<(Instant, Instant)>,
}

type SharedLog = Arc<Mutex<Log>>;

fn lock(log: &Mutex<Log>) -> MutexGuard<'_, Log> {
    // Nothing panics while holding it: a poisoned lock still holds a consistent log.
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Crash,
    Hang,
}

impl Fault {
    fn signal(self) -> Signal {
        match self {
            Fault::Crash => Signal::SIGKILL,
            Fault::Hang => Signal::SIGSTOP,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Fault::Crash => "kill -9",
            Fault::Hang => "SIGSTOP",
        }
    }
}

/// One fault trial.
#[derive(Debug)]
struct Trial {
    before: NodeId,
    /// The ledger's primary once writes resumed.
    after: Option<NodeId>,
    /// Fault to the first acknowledged write sent after it; `None`: none within `LIMIT`.
    outage: Option<Duration>,
    /// The first acknowledged write to the pair settled again (replica replicating, semi-sync
    /// active); `None`: not within `LIMIT`.
    resettled: Option<Duration>,
    /// Whether a node's data directory was replaced (rebuilt) during the trial.
    rebuilt: bool,
}

/// One switchover.
#[derive(Debug)]
struct Switchover {
    before: NodeId,
    after: Option<NodeId>,
    /// Attempts refused before the one that was done, over how long, and the last reason.
    refused: u32,
    refused_for: Duration,
    last_refusal: Option<String>,
    /// The longest gap between consecutive acknowledged writes around it; `None`: it failed or
    /// writes did not resume within `LIMIT`.
    block: Option<Duration>,
    error: Option<String>,
}

#[derive(Debug)]
struct Bench {
    dir: PathBuf,
    ex: Arc<AsyncMutex<Executor>>,
    paths: Paths,
    sockets: [PathBuf; 2],
    log: SharedLog,
}

impl Bench {
    fn socket(&self, id: NodeId) -> &Path {
        match id {
            NodeId::A => &self.sockets[0],
            NodeId::B => &self.sockets[1],
        }
    }

    fn primary(&self) -> anyhow::Result<NodeId> {
        ledger::read(&self.paths.ledger)?
            .map(|l| l.primary)
            .context("no promotion ledger")
    }

    /// Data directories replaced by a rebuild so far (each kept as `data.replaced-*`).
    fn rebuilds(&self) -> usize {
        ["a", "b"]
            .iter()
            .filter_map(|n| std::fs::read_dir(self.dir.join(n)).ok())
            .flat_map(|d| d.filter_map(Result::ok))
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("data.replaced-")
            })
            .count()
    }

    fn logged(&self) -> usize {
        lock(&self.log).times.len()
    }

    /// Waits until a write sent at `since` or later is acknowledged; returns when that first
    /// happened (the earliest such acknowledgement logged from index `from` on), or `None`
    /// after `within`.
    async fn first_ack(&self, since: Instant, from: usize, within: Duration) -> Option<Instant> {
        let deadline = since + within;
        let mut next = from;
        loop {
            {
                let log = lock(&self.log);
                let first = log
                    .times
                    .get(next..)
                    .unwrap_or_default()
                    .iter()
                    .filter(|(sent, _)| *sent >= since)
                    .map(|(_, at)| *at)
                    .min();
                if first.is_some() {
                    return first;
                }
                next = log.times.len().max(next);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until the pair is settled (the ledger's primary writable with semi-sync active, the
    /// other node replicating) and takes writes; returns the primary.
    async fn settle(&self, within: Duration) -> anyhow::Result<NodeId> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(p) = self.primary() {
                if pair::replicating(self.socket(p.other())).await
                    && pair::serving_semi_sync(self.socket(p)).await
                {
                    let (now, from) = (Instant::now(), self.logged());
                    let left = deadline.saturating_duration_since(now);
                    self.first_ack(now, from, left)
                        .await
                        .context("the pair settled but took no write")?;
                    if self.primary()? == p {
                        return Ok(p);
                    }
                }
            }
            if Instant::now() >= deadline {
                bail!("the pair did not settle within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn trial(&self, fault: Fault) -> anyhow::Result<Trial> {
        let before = self.settle(LIMIT).await?;
        let rebuilds = self.rebuilds();
        // Faults strike at any moment of the tick: a random phase.
        let phase = Duration::from_millis(rand::random_range(0..1000));
        tokio::time::sleep(phase).await;
        let (at, from) = {
            let ex = self.ex.lock().await;
            let from = self.logged();
            let at = Instant::now();
            ex.signal(before, fault.signal());
            (at, from)
        };
        let first = self.first_ack(at, from, LIMIT).await;
        let after = self.primary().ok();
        let resettled = match first {
            Some(first) => match self.settle(LIMIT).await {
                Ok(_) => Some(first.elapsed()),
                Err(_) => None,
            },
            None => None,
        };
        Ok(Trial {
            before,
            after,
            outage: first.map(|f| f - at),
            resettled,
            rebuilt: self.rebuilds() > rebuilds,
        })
    }

    async fn switchover(&self) -> anyhow::Result<Switchover> {
        let before = self.settle(LIMIT).await?;
        let from = self.logged().saturating_sub(2 * WRITERS as usize);
        let asked = Instant::now();
        let deadline = asked + LIMIT;
        let (mut refused, mut refused_for, mut last_refusal) = (0, Duration::ZERO, None);
        let outcome = loop {
            let result = self.ex.lock().await.switchover().await;
            match result {
                Ok(_) => break Ok(()),
                Err(SwitchoverError::Refused(why)) => {
                    refused += 1;
                    refused_for = asked.elapsed();
                    if Instant::now() >= deadline {
                        break Err(format!("still refused after {LIMIT:?}: {why}"));
                    }
                    last_refusal = Some(why);
                }
                Err(e) => break Err(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let done = Instant::now();
        let after = self.primary().ok();
        if let Err(e) = outcome {
            return Ok(Switchover {
                before,
                after,
                refused,
                refused_for,
                last_refusal,
                block: None,
                error: Some(e),
            });
        }
        let Some(resumed) = self.first_ack(done, from, LIMIT).await else {
            return Ok(Switchover {
                before,
                after,
                refused,
                refused_for,
                last_refusal,
                block: None,
                error: Some(format!("no acknowledged write within {LIMIT:?} of it")),
            });
        };
        let mut acks: Vec<Instant> = lock(&self.log)
            .times
            .get(from..)
            .unwrap_or_default()
            .iter()
            .map(|(_, at)| *at)
            .filter(|at| *at <= resumed)
            .collect();
        acks.sort();
        let block = acks.windows(2).map(|w| w[1] - w[0]).max();
        Ok(Switchover {
            before,
            after,
            refused,
            refused_for,
            last_refusal,
            block,
            error: None,
        })
    }
}

/// The number of crash and of hang trials.
fn trials() -> anyhow::Result<usize> {
    match std::env::var("OSCARBOX_BENCH_TRIALS") {
        Ok(v) => {
            let n: usize = v
                .trim()
                .parse()
                .with_context(|| format!("OSCARBOX_BENCH_TRIALS={v:?} is not a number"))?;
            ensure!(n >= 1, "OSCARBOX_BENCH_TRIALS must be at least 1");
            Ok(n)
        }
        Err(std::env::VarError::NotPresent) => Ok(DEFAULT_TRIALS),
        Err(e) => Err(e).context("OSCARBOX_BENCH_TRIALS"),
    }
}

/// What the run measured.
#[derive(Debug, Default)]
struct Figures {
    crash: Vec<Trial>,
    hang: Vec<Trial>,
    switchovers: Vec<Switchover>,
    /// Why the run stopped early, if it did.
    stopped: Option<String>,
}

async fn measure(bench: &Bench, trials: usize, figures: &mut Figures) -> anyhow::Result<()> {
    for fault in [Fault::Crash, Fault::Hang] {
        for n in 1..=trials {
            let t = bench
                .trial(fault)
                .await
                .with_context(|| format!("before {} trial {n}", fault.name()))?;
            if t.outage.is_none() {
                println!(
                    "warning: {} trial {n}: no acknowledged write within {LIMIT:?}; trial stopped",
                    fault.name()
                );
            } else if t.resettled.is_none() {
                println!(
                    "warning: {} trial {n}: the pair did not settle again within {LIMIT:?}",
                    fault.name()
                );
            }
            match fault {
                Fault::Crash => figures.crash.push(t),
                Fault::Hang => figures.hang.push(t),
            }
        }
    }
    for n in 1..=SWITCHOVERS.min(trials) {
        let s = bench
            .switchover()
            .await
            .with_context(|| format!("before switchover {n}"))?;
        if let Some(e) = &s.error {
            println!("warning: switchover {n}: {e}");
        }
        figures.switchovers.push(s);
    }
    // The old primary of the last switchover follows the new one before the writers stop.
    bench.settle(LIMIT).await.context("after the switchovers")?;
    Ok(())
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Median, p95 and max of the completed figures, with the timed-out count.
fn spread(figures: impl Iterator<Item = Option<Duration>>) -> (String, String, String, usize) {
    let mut done = Vec::new();
    let mut missing = 0;
    for f in figures {
        match f {
            Some(d) => done.push(d),
            None => missing += 1,
        }
    }
    done.sort();
    if done.is_empty() {
        return ("-".into(), "-".into(), "-".into(), missing);
    }
    (
        secs(percentile(&done, 0.5)),
        secs(percentile(&done, 0.95)),
        secs(percentile(&done, 1.0)),
        missing,
    )
}

fn row(figure: &str, (median, p95, max): (&str, &str, &str), note: &str) {
    println!("{figure:<44} {median:>8} {p95:>8} {max:>8}   {note}");
}

pub async fn bench() -> anyhow::Result<()> {
    let trials = trials()?;
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    let (a, b) = (
        pair::node_spec(dir.path(), "a", 1),
        pair::node_spec(dir.path(), "b", 2),
    );
    let sockets = [a.socket.clone(), b.socket.clone()];
    let shutdown = CancellationToken::new();
    let endpoint = Endpoint::bind(([127, 0, 0, 1], free_port()).into(), shutdown.clone()).await?;
    let endpoint_addr = endpoint.local_addr();
    let paths = Paths::under(dir.path());
    let policy = Policy {
        confirm_after: Duration::from_secs(2),
        replica_silence: Duration::from_secs(2),
        ..Policy::default()
    };
    let secret = || format!("{:016x}", rand::random::<u64>());
    let app_password = secret();
    let mut ex = Executor::new(a, b, endpoint, paths.clone(), secret(), policy);
    ex.bootstrap("oscar", "oscar_app", &app_password, &secret())
        .await
        .context("start the pair")?;
    let ex = Arc::new(AsyncMutex::new(ex));
    let bench = Bench {
        dir: dir.path().to_owned(),
        ex: Arc::clone(&ex),
        paths,
        sockets,
        log: SharedLog::default(),
    };

    let mut figures = Figures::default();
    let mut writers = Vec::new();
    let stop_writers = Arc::new(AtomicBool::new(false));
    let mut ticking = None;
    let run = async {
        pair::settle(&ex, NodeId::A, LIMIT).await?;
        let mut conn = Conn::new(oscarbox_mariadb::root_opts(bench.socket(NodeId::A))).await?;
        conn.query_drop("CREATE TABLE oscar.acked (writer int NOT NULL, seq int NOT NULL, PRIMARY KEY (writer, seq)) ENGINE=InnoDB").await?;
        let _ = conn.disconnect().await;
        // The executor ticks on its own from here, as in the watchdog.
        ticking = Some(pair::ticking(&ex, &shutdown));
        writers = (1..=WRITERS)
            .map(|w| {
                let log = Arc::clone(&bench.log);
                tokio::spawn(pair::writer(
                    endpoint_addr,
                    app_password.clone(),
                    w,
                    move |seq, sent, at| {
                        let mut log = lock(&log);
                        log.acked.insert((w, seq));
                        log.times.push((sent, at));
                    },
                    Arc::clone(&stop_writers),
                ))
            })
            .collect();
        measure(&bench, trials, &mut figures).await
    };
    let outcome = run.await;
    if let Err(e) = outcome {
        println!("warning: the run stopped early: {e:#}");
        figures.stopped = Some(format!("{e:#}"));
    }

    stop_writers.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.await;
    }
    let final_primary = bench.primary();
    let present = match &final_primary {
        Ok(p) => pair::acked_rows(bench.socket(*p)).await,
        Err(e) => Err(anyhow::anyhow!("{e:#}")),
    };
    let acked = lock(&bench.log).acked.clone();
    shutdown.cancel();
    if let Some(t) = ticking {
        let _ = t.await;
    }
    drop(bench);
    if let Some(ex) = Arc::into_inner(ex) {
        ex.into_inner().stop().await;
    }
    drop(dir);

    print(
        &figures,
        trials,
        &acked,
        final_primary.ok(),
        present,
        started.elapsed(),
    );
    Ok(())
}

fn print(
    figures: &Figures,
    trials: usize,
    acked: &BTreeSet<(u32, u32)>,
    final_primary: Option<NodeId>,
    present: anyhow::Result<Vec<(u32, u32)>>,
    runtime: Duration,
) {
    println!(
        "database pair failover: two mariadbd nodes (small) on loopback under the executor, {WRITERS} writers through the endpoint, this machine ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "policy: confirm_after 2 s, replica_silence 2 s, the rest the defaults (a crashed primary with intact data is restarted in place, twice in 10 min, then failed over); tick {} ms",
        TICK.as_millis()
    );
    println!(
        "{trials} kill -9 and {trials} SIGSTOP trials of the ledger's primary, each once settled with semi-sync active; {} switchovers; total {:.0} s",
        SWITCHOVERS.min(trials),
        runtime.as_secs_f64()
    );
    println!();
    row("figure", ("median", "p95", "max"), "target / anchor");
    let kinds = [
        (
            "kill -9 to first acknowledged write",
            &figures.crash,
            CRASH_TARGET,
        ),
        (
            "SIGSTOP to first acknowledged write",
            &figures.hang,
            HANG_TARGET,
        ),
    ];
    for (name, list, target) in kinds {
        let (median, p95, max, missing) = spread(list.iter().map(|t| t.outage));
        row(
            name,
            (&median, &p95, &max),
            &format!("≤ {} s; {PUBLISHED}", target.as_secs()),
        );
        let in_place = |t: &&Trial| t.outage.is_some() && t.after == Some(t.before);
        let moved = |t: &&Trial| t.outage.is_some() && t.after.is_some_and(|a| a != t.before);
        for (label, outcome) in [
            ("restarted in place", &in_place as &dyn Fn(&&Trial) -> bool),
            ("failed over", &moved),
        ] {
            let of: Vec<&Trial> = list.iter().filter(outcome).collect();
            if of.is_empty() {
                continue;
            }
            let (median, p95, max, _) = spread(of.iter().map(|t| t.outage));
            row(
                &format!("  {label}: {} of {}", of.len(), list.len()),
                (&median, &p95, &max),
                "",
            );
        }
        if missing > 0 {
            println!(
                "  {missing} of {} stopped after {} s without an acknowledged write",
                list.len(),
                LIMIT.as_secs()
            );
        }
        let (median, p95, max, _) = spread(list.iter().map(|t| t.resettled));
        row(
            "  then to settled again (replica, semi-sync)",
            (&median, &p95, &max),
            "",
        );
    }
    let (median, p95, max, missing) = spread(figures.switchovers.iter().map(|s| s.block));
    row(
        "switchover write block (longest ack gap)",
        (&median, &p95, &max),
        &format!(
            "≤ {} s{}",
            SWITCHOVER_TARGET.as_secs(),
            if missing > 0 {
                format!("; {missing} failed or did not resume")
            } else {
                String::new()
            }
        ),
    );
    let lost_line = match &present {
        Ok(rows) => {
            let unique: BTreeSet<(u32, u32)> = rows.iter().copied().collect();
            let lost: Vec<_> = acked.difference(&unique).collect();
            println!(
                "{:<44} {:>26}   0 (target); none of the anchors proves it",
                "acknowledged writes lost",
                format!("{} of {}", lost.len(), acked.len())
            );
            println!(
                "{:<44} {:>26}   impossible: PRIMARY KEY (writer, seq)",
                "rows present twice",
                rows.len() - unique.len()
            );
            if lost.is_empty() {
                None
            } else {
                Some(format!(
                    "lost (writer, seq), first 10: {:?}",
                    lost.iter().take(10).collect::<Vec<_>>()
                ))
            }
        }
        Err(e) => Some(format!(
            "acknowledged writes lost: unknown, the final primary's rows were not read: {e:#}"
        )),
    };
    if let Some(line) = lost_line {
        println!("{line}");
    }
    println!(
        "(rows read from the final primary, {}, through root's socket after the writers stopped)",
        final_primary.map_or_else(|| "unknown".to_owned(), |p| p.to_string())
    );
    println!();
    println!("published anchors (their authors' figures; they cannot run here):");
    println!("  orchestrator, GitHub's setup: 10 to 13 s of outage");
    println!("  MHA: 10 to 30 s");
    println!("  MaxScale with its defaults: up to 25 s before the failover starts");
    println!("  none of them proves that no acknowledged write was lost");
    println!();
    println!("trials (ledger's primary before -> after):");
    let node = |n: Option<NodeId>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
    for (fault, list) in [(Fault::Crash, &figures.crash), (Fault::Hang, &figures.hang)] {
        for (i, t) in list.iter().enumerate() {
            let what = match (t.outage, t.after) {
                (None, _) => "no write within the limit".to_owned(),
                (Some(_), Some(a)) if a == t.before => "restarted in place".to_owned(),
                (Some(_), _) => "failed over".to_owned(),
            };
            println!(
                "  {:<8} {:>2}: {} -> {}, {what}{}: {}; settled again {}",
                fault.name(),
                i + 1,
                t.before,
                node(t.after),
                if t.rebuilt { ", a node rebuilt" } else { "" },
                t.outage.map_or_else(|| "-".to_owned(), secs),
                t.resettled.map_or_else(
                    || "not within the limit".to_owned(),
                    |d| format!("{} later", secs(d))
                )
            );
        }
    }
    for (i, s) in figures.switchovers.iter().enumerate() {
        println!(
            "  {:<8} {:>2}: {} -> {}, block {}; {}{}",
            "switch",
            i + 1,
            s.before,
            node(s.after),
            s.block.map_or_else(|| "-".to_owned(), secs),
            match (s.refused, &s.last_refusal) {
                (0, _) => "not refused".to_owned(),
                (n, last) => format!(
                    "refused {n} time{} over {} first (last: {})",
                    if n == 1 { "" } else { "s" },
                    secs(s.refused_for),
                    last.as_deref().unwrap_or("-")
                ),
            },
            s.error
                .as_ref()
                .map_or_else(String::new, |e| format!(" ({e})"))
        );
    }
    if let Some(why) = &figures.stopped {
        println!();
        println!("The run stopped early: {why}");
    }
}
