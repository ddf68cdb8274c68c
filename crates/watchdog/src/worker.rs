//! One worker's executor: spawns the process, probes it, feeds [`crate::verdict`], and carries
//! out its actions (spawn, heal, alert). Everything it knows is published in [`Shared`] for the
//! control socket.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use oscar_soap::probe::{self, ProbeAnswer};
use oscarbox_config::WorkerKind;
use oscarbox_supervisor::{Child, ChildSpec, Output};
use oscarbox_watchdog_api::WorkerStatus;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::verdict::{Action, Event, Gc, Policy, State, Worker};

/// Longer output lines are forwarded in pieces of this size.
const MAX_LINE: u64 = 16 * 1024;

/// How often a starting process is probed (at most; never more rarely than the interval).
const STARTUP_PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// How to run and judge one worker.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub instance: u32,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub kind: WorkerKind,
    /// `http://127.0.0.1:PORT` plus the probe path's context prefix.
    pub probe_base: String,
    pub dump_wait: Duration,
    pub stop_grace: Duration,
    /// The proxy's admin socket, asked to drain the instance before it is stopped.
    pub proxy_socket: PathBuf,
    /// How long a drain lasts if the watchdog never comes back to end it.
    pub drain_lease: Duration,
}

impl WorkerSpec {
    /// The log line that ends a diagnostic dump, when the worker writes one.
    fn dump_marker(&self) -> Option<&'static str> {
        match self.kind {
            // The last line oscar-emr's SIGQUIT handler writes.
            WorkerKind::OscarEmr => Some("task dump: end"),
            // HotSpot ends a thread dump with its JNI reference count, after every thread.
            WorkerKind::Jvm => Some("JNI global refs"),
            WorkerKind::Process => None,
        }
    }
}

/// How long a replacement may take to pass the proxy's own probes after the watchdog's.
pub(crate) const PROXY_UP_WAIT: Duration = Duration::from_secs(10);

/// Requests from the supervisor (rolling restarts, the memory guard).
#[derive(Debug)]
pub enum Command {
    /// Stop the process as for a hang (drain, diagnostic skipped, TERM, KILL) and start a new
    /// one; `done` answers whether the new one became healthy.
    Restart {
        reason: String,
        done: oneshot::Sender<bool>,
    },
}

/// What the supervisor and the control socket can see of a worker.
#[derive(Debug)]
pub struct Shared {
    pub status: Mutex<WorkerStatus>,
    /// Milliseconds since the supervisor started, written on every loop turn: the systemd
    /// watchdog is fed only while every worker loop makes progress.
    pub heartbeat_ms: AtomicU64,
}

impl Shared {
    pub fn new(instance: u32) -> Shared {
        Shared {
            status: Mutex::new(WorkerStatus {
                instance,
                state: "starting".into(),
                why: "not started yet".into(),
                pid: None,
                uptime_seconds: None,
                restarts: 0,
                last_probe_ms: None,
                rss_bytes: None,
            }),
            heartbeat_ms: AtomicU64::new(0),
        }
    }

    pub fn snapshot(&self) -> WorkerStatus {
        self.status.lock().expect("status lock").clone()
    }
}

struct Running {
    child: Child,
    generation: u64,
    started: Instant,
    /// Dump markers seen in the output so far.
    dumps: Arc<AtomicU64>,
}

struct ProbeResult {
    generation: u64,
    answer: ProbeAnswer,
    latency: Duration,
}

/// Runs one worker until `token` is cancelled, then stops its process.
pub async fn run(
    spec: WorkerSpec,
    policy: Policy,
    epoch: Instant,
    shared: Arc<Shared>,
    mut commands: mpsc::Receiver<Command>,
    token: CancellationToken,
) {
    let span = tracing::info_span!("worker", instance = spec.instance);
    async move {
        let client = match reqwest::Client::builder()
            .timeout(policy.probe_timeout)
            .pool_max_idle_per_host(0)
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("failed to build the probe client: {e}");
                return;
            }
        };
        let mut w = Worker::new();
        let mut running: Option<Running> = None;
        let mut generation = 0u64;
        let mut last_probe: Option<Duration> = None;
        let mut pending_restart: Option<oneshot::Sender<bool>> = None;
        // This watchdog drained the instance at the proxy; the replacement's health ends it.
        let mut drained = false;
        let mut gc = GcReader::default();
        let (probe_tx, mut probe_rx) = mpsc::channel::<ProbeResult>(256);
        let mut ticker = tokio::time::interval(policy.probe_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // While a process is starting, probe it more often than the interval, so that a fast
        // starter is counted healthy (and a replacement in service) as soon as it answers.
        // Refused connections cost microseconds, so even a Tomcat's minutes of startup are cheap.
        let mut startup_ticker = tokio::time::interval(STARTUP_PROBE_INTERVAL.min(policy.probe_interval));
        startup_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);

        loop {
            let now = epoch.elapsed();
            shared
                .heartbeat_ms
                .store(u64::try_from(now.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
            let mut actions = Vec::new();
            tokio::select! {
                // A stop request wins over a tick that would start a new process.
                biased;
                () = token.cancelled() => break,
                _ = ticker.tick() => {
                    actions = w.on(Event::Tick, now, &policy, rand::random());
                    if let Some(r) = &running {
                        if !matches!(w.state, State::Hung) {
                            spawn_probe(&client, &spec.probe_base, r.generation, &probe_tx);
                        }
                    }
                }
                _ = startup_ticker.tick(), if matches!(w.state, State::Starting { .. }) => {
                    if let Some(r) = &running {
                        spawn_probe(&client, &spec.probe_base, r.generation, &probe_tx);
                    }
                }
                Some(result) = probe_rx.recv() => {
                    let current = running.as_ref().is_some_and(|r| r.generation == result.generation);
                    if current {
                        let event = match result.answer {
                            ProbeAnswer::Alive => {
                                last_probe = Some(result.latency);
                                Event::ProbeOk
                            }
                            ProbeAnswer::NotAlive(reason) => {
                                let pid = running.as_ref().map(|r| r.child.pid());
                                Event::ProbeFailed { reason, gc: gc.read(spec.kind, pid) }
                            }
                        };
                        let was_healthy = w.state == State::Healthy;
                        actions = w.on(event, epoch.elapsed(), &policy, rand::random());
                        if !was_healthy && w.state == State::Healthy {
                            tracing::info!("healthy");
                            if std::mem::take(&mut drained) {
                                undrain(&spec).await;
                            }
                            if let Some(done) = pending_restart.take() {
                                let _ = done.send(true);
                            }
                        }
                    }
                }
                status = wait(&mut running) => {
                    let reason = match status {
                        Ok(s) => format!("exited with {s}"),
                        Err(e) => format!("could not be waited for: {e}"),
                    };
                    tracing::warn!("{reason}");
                    // The leader is gone; whatever it left in its group (a wrapper script's
                    // children) must not live on holding the port.
                    if let Some(r) = running.take() {
                        let _ = r.child.signal_group(Signal::SIGKILL);
                    }
                    if let Some(done) = pending_restart.take() {
                        let _ = done.send(false);
                    }
                    actions = w.on(Event::Exited { reason }, epoch.elapsed(), &policy, rand::random());
                }
                Some(command) = commands.recv() => match command {
                    Command::Restart { reason, done } => {
                        if let Some(mut r) = running.take() {
                            tracing::info!(%reason, "restarting on request");
                            drained |= stop(&mut r, &spec, false).await;
                            actions = w.on(Event::Exited { reason: format!("restarted: {reason}") }, epoch.elapsed(), &policy, rand::random());
                            if let Some(old) = pending_restart.replace(done) {
                                let _ = old.send(false);
                            }
                        } else {
                            let _ = done.send(false);
                        }
                    }
                },
            }
            // Actions can lead to events whose actions follow at once (a failed spawn is an
            // exit; a healed worker's exit restarts it), so they go through one queue.
            let mut queue: std::collections::VecDeque<Action> = actions.into();
            while let Some(action) = queue.pop_front() {
                match action {
                    Action::Spawn => {
                        generation += 1;
                        match spawn(&spec, generation) {
                            Ok(r) => {
                                tracing::info!(pid = r.child.pid(), "started");
                                running = Some(r);
                                w.on(Event::Spawned, epoch.elapsed(), &policy, 0.0);
                                // Probe the new process at once rather than a tick later.
                                ticker.reset_immediately();
                            }
                            Err(e) => {
                                let reason = format!("could not be started: {e}");
                                tracing::warn!("{reason}");
                                w.on(Event::Spawned, epoch.elapsed(), &policy, 0.0);
                                if let Some(done) = pending_restart.take() {
                                    let _ = done.send(false);
                                }
                                queue.extend(w.on(Event::Exited { reason }, epoch.elapsed(), &policy, rand::random()));
                            }
                        }
                    }
                    Action::Heal { reason } => {
                        tracing::warn!(%reason, "healing a hung worker");
                        // Show "hung" now, not after the stop: that is when it was detected.
                        publish(&shared, &w, running.as_ref(), last_probe);
                        if let Some(mut r) = running.take() {
                            drained |= stop(&mut r, &spec, true).await;
                        }
                        if let Some(done) = pending_restart.take() {
                            let _ = done.send(false);
                        }
                        queue.extend(w.on(
                            Event::Exited { reason: format!("stopped after a hang ({reason})") },
                            epoch.elapsed(),
                            &policy,
                            rand::random(),
                        ));
                    }
                    Action::Alert { message } => {
                        tracing::error!(alert = true, "worker {}: {message}", spec.instance);
                    }
                }
            }
            publish(&shared, &w, running.as_ref(), last_probe);
        }
        if let Some(mut r) = running.take() {
            stop(&mut r, &spec, false).await;
            tracing::info!("stopped");
        }
        if let Some(done) = pending_restart.take() {
            let _ = done.send(false);
        }
    }
    .instrument(span)
    .await;
}

/// The spawn action can fire from a Tick that a Heal scheduled; `Action::Spawn` from `Tick` is
/// handled in the same loop, so nothing else is needed here.
fn spawn(spec: &WorkerSpec, generation: u64) -> std::io::Result<Running> {
    let mut child_spec = ChildSpec::new(format!("emr-{}", spec.instance), &spec.program)
        .args(spec.args.iter())
        .output(Output::Piped);
    for (k, v) in &spec.env {
        child_spec = child_spec.env(k, v);
    }
    let mut child = Child::spawn(&child_spec)?;
    let dumps = Arc::new(AtomicU64::new(0));
    let marker = spec.dump_marker();
    let streams: [Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>; 2] = [
        child.stdout().map(|s| Box::new(s) as _),
        child.stderr().map(|s| Box::new(s) as _),
    ];
    for stream in streams.into_iter().flatten() {
        let dumps = Arc::clone(&dumps);
        let instance = spec.instance;
        tokio::spawn(async move {
            // Bytes, not UTF-8 lines: a JVM may print Latin-1, and one bad line must not stop
            // the forwarding (the pipe would fill, or close and kill the worker with SIGPIPE).
            let mut reader = BufReader::new(stream);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match (&mut reader)
                    .take(MAX_LINE)
                    .read_until(b'\n', &mut buf)
                    .await
                {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']);
                tracing::info!(target: "oscarbox::worker_output", instance, "{line}");
                if marker.is_some_and(|m| line.contains(m)) {
                    dumps.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    Ok(Running {
        child,
        generation,
        started: Instant::now(),
        dumps,
    })
}

fn spawn_probe(
    client: &reqwest::Client,
    base: &str,
    generation: u64,
    tx: &mpsc::Sender<ProbeResult>,
) {
    let (client, base, tx) = (client.clone(), base.to_owned(), tx.clone());
    tokio::spawn(async move {
        let sent = Instant::now();
        let answer = probe::send(&client, &base).await;
        let _ = tx
            .send(ProbeResult {
                generation,
                answer,
                latency: sent.elapsed(),
            })
            .await;
    });
}

async fn wait(running: &mut Option<Running>) -> std::io::Result<std::process::ExitStatus> {
    match running {
        Some(r) => r.child.wait().await,
        None => std::future::pending().await,
    }
}

/// Whether the process is stopped (SIGSTOP, or a debugger): it can write no dump and handle no
/// SIGTERM until it is continued.
fn is_stopped(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('T'))
        })
        .unwrap_or(false)
}

/// Asks the proxy to send the instance no new requests and waits (up to `wait`) for those in
/// flight. True when a proxy took the drain, so that it is ended once the replacement is
/// healthy. Without a proxy (none runs, as in some tests), the stop proceeds at once.
async fn drain(spec: &WorkerSpec, wait: Duration) -> bool {
    use oscarbox_proxy_api::{client, Answer, Request};
    let request = Request::Drain {
        instance: spec.instance,
        wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        lease_ms: Some(u64::try_from(spec.drain_lease.as_millis()).unwrap_or(u64::MAX)),
    };
    let asked = tokio::time::timeout(
        wait + Duration::from_secs(2),
        client::ask(&spec.proxy_socket, &request),
    )
    .await;
    match asked {
        Ok(Ok(Answer::Drained { in_flight: 0, .. })) => {
            tracing::info!("drained at the proxy");
            true
        }
        Ok(Ok(Answer::Drained { in_flight, .. })) => {
            tracing::warn!(
                in_flight,
                ?wait,
                "drained at the proxy; requests still in flight are cut off"
            );
            true
        }
        Ok(Ok(other)) => {
            tracing::warn!(?other, "the proxy refused the drain");
            false
        }
        Ok(Err(client::AskError::Unreachable { .. })) => {
            tracing::debug!("no proxy to drain at");
            false
        }
        Ok(Err(e)) => {
            tracing::warn!("failed to drain at the proxy: {e}");
            false
        }
        Err(_) => {
            tracing::warn!("the proxy did not answer the drain in time");
            false
        }
    }
}

/// Ends a drain [`drain`] put in place, now that the replacement answers its probes, and
/// waits (bounded) until the proxy's own probes have it up: a rolling restart must not drain
/// the next instance while the proxy still counts this one out, or no instance would be left.
async fn undrain(spec: &WorkerSpec) {
    use oscarbox_proxy_api::{client, Answer, Request};
    // Only the drain this watchdog leased: a person's own drain stays until they end it.
    let enable = Request::Enable {
        instance: spec.instance,
        lease_only: true,
    };
    let ask = |r: Request| async move {
        tokio::time::timeout(Duration::from_secs(2), client::ask(&spec.proxy_socket, &r)).await
    };
    match ask(enable).await {
        Ok(Ok(_)) => tracing::info!("enabled at the proxy"),
        // The drain's lease ends it anyway.
        Ok(Err(e)) => return tracing::warn!("failed to end the drain at the proxy: {e}"),
        Err(_) => return tracing::warn!("the proxy did not answer in time to end the drain"),
    }
    let deadline = Instant::now() + PROXY_UP_WAIT;
    while Instant::now() < deadline {
        if let Ok(Ok(Answer::Backends { backends, .. })) = ask(Request::Backends).await {
            if backends
                .iter()
                .any(|b| b.instance == spec.instance && b.state == "up")
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!(waited = ?PROXY_UP_WAIT, "the proxy does not see the replacement up yet");
}

/// Stops a worker: a diagnostic first when it is hung (SIGQUIT, then wait a bounded time for
/// the dump to appear in its output: a JVM writes it asynchronously), then SIGTERM (and
/// SIGCONT, so a stopped process can act on it) to the group, the grace period, SIGKILL.
async fn stop(r: &mut Running, spec: &WorkerSpec, diagnose: bool) -> bool {
    // A hung instance finishes nothing: its requests in flight are not waited for.
    let drained = drain(
        spec,
        if diagnose {
            Duration::ZERO
        } else {
            spec.stop_grace
        },
    )
    .await;
    let pid = r.child.pid();
    if diagnose && spec.dump_marker().is_some() {
        if is_stopped(pid) {
            tracing::warn!(
                pid,
                "the process is stopped (SIGSTOP); it cannot write a dump"
            );
        } else {
            let before = r.dumps.load(Ordering::Relaxed);
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGQUIT);
            let deadline = Instant::now() + spec.dump_wait;
            while r.dumps.load(Ordering::Relaxed) == before && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if r.dumps.load(Ordering::Relaxed) == before {
                tracing::warn!(pid, waited = ?spec.dump_wait, "no diagnostic dump appeared");
            } else {
                tracing::info!(pid, "diagnostic dump written to the log");
            }
        }
    }
    let _ = r.child.signal_group(Signal::SIGTERM);
    let _ = r.child.signal_group(Signal::SIGCONT);
    match tokio::time::timeout(spec.stop_grace, r.child.wait()).await {
        Ok(status) => {
            let _ = r.child.signal_group(Signal::SIGKILL);
            tracing::info!(pid, status = ?status.ok(), "process stopped");
        }
        Err(_) => {
            tracing::warn!(pid, grace = ?spec.stop_grace, "no exit after SIGTERM; sending SIGKILL");
            let _ = r.child.signal_group(Signal::SIGKILL);
            let _ = r.child.wait().await;
        }
    }
    drained
}

fn publish(shared: &Shared, w: &Worker, running: Option<&Running>, last_probe: Option<Duration>) {
    let mut s = shared.status.lock().expect("status lock");
    s.state = w.state.name().to_owned();
    s.why.clone_from(&w.why);
    s.restarts = w.restarts;
    s.pid = running.map(|r| r.child.pid());
    s.uptime_seconds = running.map(|r| r.started.elapsed().as_secs());
    s.last_probe_ms = last_probe.map(|d| d.as_secs_f64() * 1000.0);
}

/// Reads whether a JVM worker is collecting garbage, with its CPU use: a collection that uses
/// no CPU is not a pause worth waiting for.
#[derive(Default)]
struct GcReader {
    system: Option<sysinfo::System>,
}

impl std::fmt::Debug for GcReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GcReader")
    }
}

impl GcReader {
    fn read(&mut self, kind: WorkerKind, pid: Option<i32>) -> Gc {
        let (WorkerKind::Jvm, Some(pid)) = (kind, pid) else {
            return Gc::Unknown;
        };
        let Some(path) = crate::hsperf::find(&std::env::temp_dir(), pid) else {
            return Gc::Unknown;
        };
        let collecting = match crate::hsperf::read(&path) {
            Ok(snapshot) => snapshot.collecting,
            Err(e) => {
                tracing::debug!("failed to read the JVM's performance counters: {e}");
                return Gc::Unknown;
            }
        };
        let system = self.system.get_or_insert_with(sysinfo::System::new);
        let spid = sysinfo::Pid::from_u32(u32::try_from(pid).unwrap_or(0));
        system.refresh_processes(sysinfo::ProcessesToUpdate::Some(&[spid]), true);
        let busy = system.process(spid).is_some_and(|p| p.cpu_usage() > 5.0);
        if collecting && busy {
            Gc::Collecting
        } else {
            Gc::Idle
        }
    }
}
