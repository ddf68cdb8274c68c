//! The control socket: a unix socket of mode 0600 in the state directory's private `run/`,
//! one JSON request line in, one JSON answer line out (`oscarbox-watchdog-api`).

use std::path::Path;
use std::sync::Arc;

use oscarbox_watchdog_api::{Answer, Request, Status, VERSION};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use crate::supervisor::Supervisor;

pub use oscarbox_socket_rpc::{bind, AskError};

/// Asks the watchdog listening on `socket` one question: the client side of [`serve`], for
/// `oscarbox` and for tests.
pub async fn ask(socket: &Path, request: &Request) -> Result<Answer, AskError> {
    oscarbox_socket_rpc::ask("watchdog", socket, request).await
}

pub(crate) async fn serve(listener: UnixListener, sup: Arc<Supervisor>, token: CancellationToken) {
    let garbled = |message| Answer::Error { message };
    oscarbox_socket_rpc::serve(listener, token.cancelled_owned(), garbled, move |request| {
        let sup = Arc::clone(&sup);
        async move { answer(&sup, request).await }
    })
    .await;
}

async fn answer(sup: &Supervisor, request: Request) -> Answer {
    match request {
        Request::Status => Answer::Status(Status {
            version: VERSION,
            box_name: sup.config.read().await.box_.name.clone(),
            workers: sup.statuses().await,
        }),
        Request::BoxStatus => match sup.box_status.get() {
            Some(rx) => {
                let last = rx.borrow().clone();
                let config = Arc::clone(&*sup.config.read().await);
                let now =
                    oscarbox_status::gather::with_instances(last, sup.statuses().await, &config);
                Answer::BoxStatus(Box::new(now))
            }
            None => Answer::Error {
                message: "the box status is not running (see the watchdog's log)".into(),
            },
        },
        Request::RestartWorkers => rolling_restart(sup).await,
    }
}

/// One instance at a time, the next only after the replacement is healthy.
async fn rolling_restart(sup: &Supervisor) -> Answer {
    let _lane = sup.restart_lane.lock().await;
    let instances: Vec<u32> = sup.workers.lock().await.keys().copied().collect();
    let mut restarted = Vec::new();
    for n in instances {
        tracing::info!(instance = n, "rolling restart");
        if sup.restart_one(n, "rolling restart").await {
            restarted.push(n);
        } else {
            return Answer::Error {
                message: format!(
                    "instance {n} did not become healthy after its restart; stopped the rolling restart (restarted so far: {restarted:?})"
                ),
            };
        }
    }
    Answer::Restarted { restarted }
}
