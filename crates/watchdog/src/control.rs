//! The control socket: a unix socket of mode 0600 in the state directory's private `run/`,
//! one JSON request line in, one JSON answer line out (`oscarbox-watchdog-api`).

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;

use oscarbox_watchdog_api::{from_line, to_line, Answer, Request, Status, VERSION};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::supervisor::Supervisor;

/// Why a question to the watchdog got no answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// Nothing listens on the socket: the watchdog is not running.
    #[error("cannot connect to {}: {cause}", socket.display())]
    Unreachable {
        socket: std::path::PathBuf,
        cause: std::io::Error,
    },
    #[error("failed to talk to the watchdog: {0}")]
    Io(#[from] std::io::Error),
    #[error("the watchdog answered something this oscarbox does not understand: {0}")]
    Garbled(#[from] serde_json::Error),
}

/// Asks the watchdog listening on `socket` one question: the client side of [`serve`], for
/// `oscarbox` and for tests.
pub async fn ask(socket: &Path, request: &Request) -> Result<Answer, AskError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|cause| AskError::Unreachable {
            socket: socket.to_path_buf(),
            cause,
        })?;
    let (read, mut write) = stream.into_split();
    write.write_all(to_line(request).as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    Ok(from_line::<Answer>(&line)?)
}

/// Binds the socket, replacing a stale one left by a watchdog that was killed.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub(crate) async fn serve(listener: UnixListener, sup: Arc<Supervisor>, token: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = token.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("failed to accept a control connection: {e}");
                    continue;
                }
            },
        };
        tokio::spawn(handle(stream, Arc::clone(&sup)));
    }
}

async fn handle(stream: UnixStream, sup: Arc<Supervisor>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    // One bounded line: a control request is a few dozen bytes.
    let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(read, 64 * 1024));
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let answer = match from_line::<Request>(&line) {
        Err(e) => Answer::Error {
            message: format!("not a control request: {e}"),
        },
        Ok(Request::Status) => Answer::Status(Status {
            version: VERSION,
            box_name: sup.config.read().await.box_.name.clone(),
            workers: sup.statuses().await,
        }),
        Ok(Request::RestartWorkers) => rolling_restart(&sup).await,
    };
    let _ = write.write_all(to_line(&answer).as_bytes()).await;
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
