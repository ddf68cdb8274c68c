//! The admin API: a unix socket of mode 0600 (only the box's own user, which is who runs the
//! watchdog and `oscarbox`), one JSON request line in, one answer line out
//! (`oscarbox-proxy-api`).

use std::sync::Arc;
use std::time::Duration;

use oscarbox_proxy_api::{Answer, BackendStatus, Request, VERSION};
use tokio::net::UnixListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Shared;

pub use oscarbox_proxy_api::client::{ask, AskError};
pub use oscarbox_socket_rpc::bind;

pub(crate) async fn serve(listener: UnixListener, shared: Arc<Shared>, token: CancellationToken) {
    let stop = token.clone().cancelled_owned();
    let garbled = |message| Answer::Error { message };
    oscarbox_socket_rpc::serve(listener, stop, garbled, move |request| {
        let (shared, token) = (Arc::clone(&shared), token.clone());
        async move { answer(&shared, request, &token).await }
    })
    .await;
}

async fn answer(shared: &Shared, request: Request, token: &CancellationToken) -> Answer {
    match request {
        Request::Backends => backends(shared),
        Request::Drain {
            instance,
            wait_ms,
            lease_ms,
        } => drain(shared, instance, wait_ms, lease_ms, token).await,
        Request::Enable {
            instance,
            lease_only,
        } => {
            if shared
                .pool
                .lock()
                .expect("pool lock")
                .enable(instance, lease_only)
            {
                tracing::info!(instance, "instance enabled through the admin API");
                Answer::Enabled { instance }
            } else {
                unknown(instance)
            }
        }
    }
}

fn unknown(instance: u32) -> Answer {
    Answer::Error {
        message: format!(
            "no instance {instance} behind this proxy (see `oscarbox proxy backends`)"
        ),
    }
}

fn backends(shared: &Shared) -> Answer {
    let now = Instant::now();
    let pool = shared.pool.lock().expect("pool lock");
    let backends = pool
        .backends
        .iter()
        .map(|b| {
            let (state, why) = b.state(now);
            BackendStatus {
                instance: b.instance,
                address: b.addr.to_string(),
                state: state.to_owned(),
                why,
                in_flight: b.outstanding,
                requests: b.requests,
                weight: b.weight(&pool.policy, now),
            }
        })
        .collect();
    Answer::Backends {
        version: VERSION,
        backends,
    }
}

/// Puts the drain in place at once, then waits (bounded) for the requests in flight.
async fn drain(
    shared: &Shared,
    instance: u32,
    wait_ms: u64,
    lease_ms: Option<u64>,
    token: &CancellationToken,
) -> Answer {
    let now = Instant::now();
    // A lease or a wait too long to represent is as good as forever.
    let until = lease_ms.and_then(|ms| now.checked_add(Duration::from_millis(ms)));
    if !shared
        .pool
        .lock()
        .expect("pool lock")
        .drain(instance, until)
    {
        return unknown(instance);
    }
    tracing::info!(instance, wait_ms, ?lease_ms, "draining instance");
    let deadline = now
        .checked_add(Duration::from_millis(wait_ms))
        .unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
    loop {
        let in_flight = shared
            .pool
            .lock()
            .expect("pool lock")
            .outstanding(instance)
            .unwrap_or(0);
        if in_flight == 0 || Instant::now() >= deadline || token.is_cancelled() {
            return Answer::Drained {
                instance,
                in_flight,
            };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
