//! Active health checks: SOAP `isAlive` to every instance, with the probe code the watchdog
//! uses (`oscar_soap::probe`), so both judge an answer identically. A probe never overlaps the
//! previous one to the same instance: a hung instance costs one probe timeout per verdict.

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
    // Its own client and connection: a probe must not queue behind client requests in the
    // shared pool, and must not reuse a connection to a process that has since been replaced.
    let client = match reqwest::Client::builder()
        .timeout(timeout)
        .pool_max_idle_per_host(1)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(instance, "failed to build the health-check client: {e}");
            return;
        }
    };
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let answer = tokio::select! {
            () = token.cancelled() => return,
            a = probe::send(&client, &base) => a,
        };
        let result = match answer {
            ProbeAnswer::Alive => Ok(()),
            ProbeAnswer::NotAlive(why) => Err(why),
        };
        shared
            .pool
            .lock()
            .expect("pool lock")
            .probed(instance, result, Instant::now());
    }
}
