//! Active health checks: SOAP `isAlive` to every instance, with the probe code the watchdog
//! uses (`oscar_soap::probe`), so both judge an answer identically. A probe is sent every
//! interval whether or not the previous one has answered (at most timeout / interval + 1 are
//! in flight), so a hang is known within interval × fall + timeout: waiting for each probe to
//! time out before sending the next would add a whole timeout per failed probe, which is how
//! HAProxy takes 2.5 to 3 s to mark a stopped server down with these settings. Answers are
//! applied in the order the probes were sent; a late answer to an older probe is dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use oscar_soap::probe::{self, ProbeAnswer};
use oscarbox_config::Config;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Shared;

/// Starts one probe loop per configured instance; cancel the returned token to stop them (a
/// reload starts a new set).
pub fn start(
    shared: &Arc<Shared>,
    config: &Config,
    tasks: &TaskTracker,
    parent: &CancellationToken,
) -> CancellationToken {
    let token = parent.child_token();
    let interval = config.proxy.health_interval;
    let timeout = config.proxy.health_timeout;
    for n in 1..=config.emr.instances.get() {
        let Some(base) = config.emr.probe_base(n) else {
            continue;
        };
        tasks.spawn(probe_loop(
            Arc::clone(shared),
            n,
            base,
            interval,
            timeout,
            token.clone(),
        ));
    }
    token
}

async fn probe_loop(
    shared: Arc<Shared>,
    instance: u32,
    base: String,
    interval: Duration,
    timeout: Duration,
    token: CancellationToken,
) {
    // Its own client: a probe must not queue behind client requests in the shared pool. Fresh
    // connections each time, so that a probe never rides a connection to a process that has
    // since been replaced, and overlapping probes never wait for each other.
    let client = match reqwest::Client::builder()
        .timeout(timeout)
        .pool_max_idle_per_host(0)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(instance, "failed to build the health-check client: {e}");
            return;
        }
    };
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let sent = Arc::new(AtomicU64::new(0));
    let applied = Arc::new(AtomicU64::new(0));
    let probes = TaskTracker::new();
    loop {
        tokio::select! {
            () = token.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let seq = sent.fetch_add(1, Ordering::Relaxed) + 1;
        let (client, base, shared, applied) = (
            client.clone(),
            base.clone(),
            Arc::clone(&shared),
            Arc::clone(&applied),
        );
        let token = token.clone();
        probes.spawn(async move {
            let answer = tokio::select! {
                () = token.cancelled() => return,
                a = probe::send(&client, &base) => a,
            };
            let result = match answer {
                ProbeAnswer::Alive => Ok(()),
                ProbeAnswer::NotAlive(why) => Err(why),
            };
            let mut pool = shared.pool.lock().expect("pool lock");
            // Under the pool lock, so that order checks and updates are one step.
            if applied.fetch_max(seq, Ordering::Relaxed) < seq {
                pool.probed(instance, result, Instant::now());
            }
        });
    }
    probes.close();
    probes.wait().await;
}
