//! The watchdog's top level: one task per worker, the control socket, systemd notification,
//! SIGHUP reload, the memory guard, and an ordered stop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use oscarbox_config::Config;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::verdict::Policy;
use crate::worker::{self, Command, Shared, WorkerSpec};

/// A running worker task and the handles to reach it.
#[derive(Debug)]
pub(crate) struct WorkerHandle {
    pub shared: Arc<Shared>,
    pub commands: mpsc::Sender<Command>,
    token: CancellationToken,
    task: JoinHandle<()>,
}

/// Everything the supervisor and its control socket share.
#[derive(Debug)]
pub(crate) struct Supervisor {
    pub config: tokio::sync::RwLock<Arc<Config>>,
    pub config_path: PathBuf,
    pub workers: tokio::sync::Mutex<BTreeMap<u32, WorkerHandle>>,
    /// Held while one worker is deliberately restarted (rolling restart, memory guard), so
    /// that such restarts happen one at a time, never all at once.
    pub restart_lane: tokio::sync::Mutex<()>,
    pub epoch: Instant,
    /// The newest box status, once the status service runs.
    pub box_status:
        std::sync::OnceLock<tokio::sync::watch::Receiver<oscarbox_watchdog_api::BoxStatus>>,
    token: CancellationToken,
}

pub fn policy(config: &Config) -> Policy {
    let w = &config.watchdog;
    Policy {
        probe_interval: w.probe_interval,
        probe_timeout: w.probe_timeout,
        failure_threshold: w.failure_threshold.get(),
        startup_budget: w.startup_budget,
        gc_max_extension: w.gc_max_extension,
        backoff_initial: w.backoff_initial,
        backoff_max: w.backoff_max,
        crash_loop_restarts: w.crash_loop_restarts.get(),
        crash_loop_window: w.crash_loop_window,
        failed_retry_interval: w.failed_retry_interval,
    }
}

/// The worker program: `oscar-emr` beside this executable when it is there (a cargo build or a
/// package installs them together), else the command as configured (found on `PATH`).
pub fn worker_program(command: &str) -> PathBuf {
    if command == "oscar-emr" {
        if let Some(beside) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("oscar-emr")))
            .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file()))
        {
            return beside;
        }
    }
    PathBuf::from(command)
}

fn spec(config: &Config, config_path: &Path, instance: u32) -> WorkerSpec {
    let probe_base = config
        .emr
        .probe_base(instance)
        .expect("instances come from the config's range");
    WorkerSpec {
        instance,
        program: worker_program(&config.emr.command),
        args: config.emr.worker_args(config_path, instance),
        env: config.emr.env.clone(),
        kind: config.emr.kind,
        probe_base,
        dump_wait: config.watchdog.dump_wait,
        stop_grace: config.watchdog.stop_grace,
        proxy_socket: config.proxy.admin_socket.clone(),
        // Long enough for a stop, a start and its startup budget; after that the proxy ends
        // the drain by itself, so a watchdog that died mid-restart leaves nothing drained.
        drain_lease: config.watchdog.stop_grace * 2
            + config.watchdog.dump_wait
            + config.watchdog.startup_budget
            + Duration::from_secs(30),
    }
}

impl Supervisor {
    fn start_worker(&self, config: &Config, instance: u32) -> WorkerHandle {
        let shared = Arc::new(Shared::new(instance));
        let (tx, rx) = mpsc::channel(4);
        let token = self.token.child_token();
        let task = tokio::spawn(worker::run(
            spec(config, &self.config_path, instance),
            policy(config),
            self.epoch,
            Arc::clone(&shared),
            rx,
            token.clone(),
        ));
        WorkerHandle {
            shared,
            commands: tx,
            token,
            task,
        }
    }

    async fn stop_worker(handle: WorkerHandle) {
        handle.token.cancel();
        let _ = handle.task.await;
    }

    /// Matches the running workers to the configured count: starts missing ones, stops extra
    /// ones (together, outside the lock).
    async fn reconcile(&self) {
        let config = Arc::clone(&*self.config.read().await);
        let want = config.emr.instances.get();
        let mut workers = self.workers.lock().await;
        let extra: Vec<u32> = workers.keys().copied().filter(|&n| n > want).collect();
        let removed: Vec<WorkerHandle> = extra.iter().filter_map(|n| workers.remove(n)).collect();
        for n in 1..=want {
            workers
                .entry(n)
                .or_insert_with(|| self.start_worker(&config, n));
        }
        // Stop removed workers without holding the map: status and the systemd ping go on.
        drop(workers);
        for h in &removed {
            tracing::info!("stopping a worker the configuration no longer has");
            h.token.cancel();
        }
        for h in removed {
            Self::stop_worker(h).await;
        }
    }

    /// Restarts one worker through the restart lane; true when its replacement became healthy.
    pub async fn restart_one(&self, instance: u32, reason: &str) -> bool {
        let commands = {
            let workers = self.workers.lock().await;
            match workers.get(&instance) {
                Some(h) => h.commands.clone(),
                None => return false,
            }
        };
        let (done, answer) = oneshot::channel();
        if commands
            .send(Command::Restart {
                reason: reason.to_owned(),
                done,
            })
            .await
            .is_err()
        {
            return false;
        }
        // Bounded: the worker answers when its replacement is healthy, or fails, or stops.
        let w = &self.config.read().await.watchdog;
        let bound = w.startup_budget
            + w.dump_wait
            + w.stop_grace * 2
            + crate::worker::PROXY_UP_WAIT
            + Duration::from_secs(12);
        matches!(tokio::time::timeout(bound, answer).await, Ok(Ok(true)))
    }

    pub async fn statuses(&self) -> Vec<oscarbox_watchdog_api::WorkerStatus> {
        self.workers
            .lock()
            .await
            .values()
            .map(|h| h.shared.snapshot())
            .collect()
    }
}

/// Runs the watchdog until `token` is cancelled. `config_path` is what the workers are given
/// as `{config}` and what SIGHUP re-reads.
pub async fn run(
    config: Arc<Config>,
    config_path: PathBuf,
    token: CancellationToken,
) -> anyhow::Result<()> {
    let sup = Arc::new(Supervisor {
        config: tokio::sync::RwLock::new(Arc::clone(&config)),
        config_path,
        workers: tokio::sync::Mutex::new(BTreeMap::new()),
        restart_lane: tokio::sync::Mutex::new(()),
        epoch: Instant::now(),
        box_status: std::sync::OnceLock::new(),
        token: token.clone(),
    });
    let listener = crate::control::bind(&config.watchdog.control_socket).with_context(|| {
        format!(
            "open the control socket {}",
            config.watchdog.control_socket.display()
        )
    })?;
    let tasks = tokio_util::task::TaskTracker::new();
    tasks.spawn(crate::control::serve(
        listener,
        Arc::clone(&sup),
        token.clone(),
    ));
    tasks.spawn(notify_systemd(Arc::clone(&sup), token.clone()));
    tasks.spawn(reload_on_sighup(Arc::clone(&sup), token.clone()));
    tasks.spawn(memory_guard(Arc::clone(&sup), token.clone()));
    sup.reconcile().await;
    tasks.spawn(keep_status(Arc::clone(&sup), token.child_token()));
    tracing::info!(
        workers = config.emr.instances.get(),
        socket = %config.watchdog.control_socket.display(),
        "watchdog running"
    );

    token.cancelled().await;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    tracing::info!("stopping the workers");
    let handles: Vec<WorkerHandle> = {
        let mut workers = sup.workers.lock().await;
        std::mem::take(&mut *workers).into_values().collect()
    };
    for h in &handles {
        h.token.cancel();
    }
    for h in handles {
        let _ = h.task.await;
    }
    tasks.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
    let _ = std::fs::remove_file(&config.watchdog.control_socket);
    tracing::info!("watchdog stopped");
    Ok(())
}

/// Runs the box's status (admin listener, alerts, heartbeats) on its own thread until `token`
/// is cancelled. A failure to start it is reported and retried every 30 s, never fatal: the
/// instances are supervised without it meanwhile.
async fn keep_status(sup: Arc<Supervisor>, token: CancellationToken) {
    let for_status = Arc::clone(&sup);
    let workers: oscarbox_status::Workers = Arc::new(move || {
        let sup = Arc::clone(&for_status);
        Box::pin(async move {
            let config = Arc::clone(&*sup.config.read().await);
            (config, sup.statuses().await)
        })
    });
    let mut failures = 0u32;
    let running = loop {
        let config = Arc::clone(&*sup.config.read().await);
        let (workers, child) = (Arc::clone(&workers), token.clone());
        match tokio::task::spawn_blocking(move || oscarbox_status::start(config, workers, child))
            .await
        {
            Ok(Ok(running)) => break running,
            Ok(Err(e)) if failures == 0 => tracing::error!(alert = true, "failed to start the box status (admin listener, alerts, heartbeats): {e:#}; the EMR instances are supervised without it; retrying every 30 s"),
            Ok(Err(e)) => tracing::warn!("failed to start the box status again: {e:#}"),
            Err(e) => tracing::error!(alert = true, "the box status failed to start: {e}"),
        }
        failures += 1;
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    };
    if failures > 0 {
        tracing::info!("the box status is running");
    }
    let _ = sup.box_status.set(running.status.clone());
    token.cancelled().await;
    let joined = tokio::task::spawn_blocking(move || running.join());
    if tokio::time::timeout(Duration::from_secs(4), joined)
        .await
        .is_err()
    {
        tracing::warn!("the status thread did not stop within 4 s; leaving it");
    }
}

/// READY=1 once a worker is healthy; WATCHDOG=1 only while every worker loop is turning; a
/// STATUS= line people can read in `systemctl status`.
async fn notify_systemd(sup: Arc<Supervisor>, token: CancellationToken) {
    let mut ready = false;
    let mut last_status = String::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (statuses, stall_ms) = {
            let config = Arc::clone(&*sup.config.read().await);
            let w = &config.watchdog;
            // A stop legitimately holds a loop for the drain at the proxy (up to the stop grace,
            // plus its answer), the dump wait and the stop grace; a replacement's health for
            // the proxy's confirmation.
            let allowed = w.probe_interval * 4
                + w.dump_wait
                + w.stop_grace * 2
                + crate::worker::PROXY_UP_WAIT
                + Duration::from_secs(4);
            (
                sup.statuses().await,
                u64::try_from(allowed.as_millis()).unwrap_or(u64::MAX),
            )
        };
        let now_ms = u64::try_from(sup.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let all_turning = sup.workers.lock().await.values().all(|h| {
            now_ms.saturating_sub(h.shared.heartbeat_ms.load(Ordering::Relaxed)) <= stall_ms
        });
        let healthy = statuses.iter().filter(|s| s.state == "healthy").count();
        let status = format!("{healthy} of {} EMR instances healthy", statuses.len());
        let mut states = Vec::new();
        if !ready && healthy > 0 {
            ready = true;
            states.push(sd_notify::NotifyState::Ready);
            tracing::info!("ready: the first instance is healthy");
        }
        if all_turning {
            states.push(sd_notify::NotifyState::Watchdog);
        } else {
            tracing::warn!("a worker loop has stalled; withholding the systemd watchdog ping");
        }
        if status != last_status {
            states.push(sd_notify::NotifyState::Status(&status));
        }
        if !states.is_empty() {
            let _ = sd_notify::notify(false, &states);
        }
        last_status = status;
    }
}

async fn reload_on_sighup(sup: Arc<Supervisor>, token: CancellationToken) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("failed to install the SIGHUP handler; reload needs a restart");
        return;
    };
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            r = hup.recv() => if r.is_none() { return },
        }
        match oscarbox_config::load(&sup.config_path) {
            Ok(new) => {
                tracing::info!(
                    instances = new.emr.instances.get(),
                    "reloaded the configuration (SIGHUP)"
                );
                *sup.config.write().await = Arc::new(new);
                sup.reconcile().await;
            }
            Err(e) => {
                tracing::error!("failed to reload the configuration, keeping the old one:\n{e}")
            }
        }
    }
}

/// Restarts a worker above its memory ceiling: one at a time, and never the last healthy
/// worker while another is down.
async fn memory_guard(sup: Arc<Supervisor>, token: CancellationToken) {
    let mut system = sysinfo::System::new();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ceiling = sup.config.read().await.watchdog.memory_ceiling;
        let statuses = sup.statuses().await;
        let pids: Vec<sysinfo::Pid> = statuses
            .iter()
            .filter_map(|s| s.pid)
            .filter_map(|p| u32::try_from(p).ok())
            .map(sysinfo::Pid::from_u32)
            .collect();
        system.refresh_processes(sysinfo::ProcessesToUpdate::Some(&pids), true);
        let mut over = None;
        for h in sup.workers.lock().await.values() {
            let mut s = h.shared.status.lock().expect("status lock");
            s.rss_bytes = s
                .pid
                .and_then(|p| u32::try_from(p).ok())
                .and_then(|p| system.process(sysinfo::Pid::from_u32(p)))
                .map(|p| p.memory());
            if let (Some(limit), Some(rss)) = (ceiling, s.rss_bytes) {
                if rss > limit && over.is_none() {
                    over = Some((s.instance, rss, limit));
                }
            }
        }
        let Some((instance, rss, limit)) = over else {
            continue;
        };
        let healthy_others = statuses
            .iter()
            .filter(|s| s.instance != instance && s.state == "healthy")
            .count();
        if healthy_others == 0 {
            tracing::warn!(
                instance,
                rss,
                limit,
                "above its memory ceiling, but no other instance is healthy: not restarting it now"
            );
            continue;
        }
        let Ok(_lane) = sup.restart_lane.try_lock() else {
            continue;
        };
        tracing::warn!(
            instance,
            rss,
            limit,
            "above its memory ceiling: restarting it"
        );
        sup.restart_one(instance, "above its memory ceiling").await;
    }
}
