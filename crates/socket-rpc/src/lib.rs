//! The box's admin sockets (the watchdog's control socket, the proxy's admin socket): a unix
//! socket of mode 0600, one JSON request line in, one JSON answer line out. The protocols
//! themselves live in `watchdog-api` and `proxy-api`; this is the plumbing they share.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// A request is a few dozen bytes; anything longer than this is not one.
const MAX_LINE: u64 = 64 * 1024;

/// Encodes one line (no newline inside, one at the end).
pub fn to_line<T: Serialize>(value: &T) -> String {
    let mut s = serde_json::to_string(value).expect("plain data always serializes");
    s.push('\n');
    s
}

/// Decodes one line.
pub fn from_line<'a, T: Deserialize<'a>>(line: &'a str) -> Result<T, serde_json::Error> {
    serde_json::from_str(line.trim_end())
}

/// Why a question got no answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// Nothing listens on the socket: the service (`peer`) is not running.
    #[error("cannot connect to {}: {cause}", socket.display())]
    Unreachable {
        peer: &'static str,
        socket: PathBuf,
        cause: std::io::Error,
    },
    #[error("failed to talk to the {peer}: {cause}")]
    Io {
        peer: &'static str,
        cause: std::io::Error,
    },
    #[error("the {peer} answered something this oscarbox does not understand: {cause}")]
    Garbled {
        peer: &'static str,
        cause: serde_json::Error,
    },
}

/// Asks the `peer` (for messages: "watchdog", "proxy") listening on `socket` one question.
pub async fn ask<Q: Serialize, A: DeserializeOwned>(
    peer: &'static str,
    socket: &Path,
    request: &Q,
) -> Result<A, AskError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|cause| AskError::Unreachable {
            peer,
            socket: socket.to_path_buf(),
            cause,
        })?;
    let io = |cause| AskError::Io { peer, cause };
    let (read, mut write) = stream.into_split();
    write
        .write_all(to_line(request).as_bytes())
        .await
        .map_err(io)?;
    let mut line = String::new();
    BufReader::new(read.take(MAX_LINE))
        .read_line(&mut line)
        .await
        .map_err(io)?;
    from_line(&line).map_err(|cause| AskError::Garbled { peer, cause })
}

/// Binds the socket with mode 0600, replacing a stale one left by a process that was killed.
/// A directory it has to create is made private (0700); an existing one keeps its mode.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| std::fs::metadata(d).is_err()) {
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

/// Serves the socket until `stop`: every connection in a task of its own, where one bounded
/// request line is answered with `answer(request)`, or with `garbled(why)` when the line is
/// not a request.
pub async fn serve<Q, A, F, Fut>(
    listener: UnixListener,
    stop: impl std::future::Future<Output = ()>,
    garbled: fn(String) -> A,
    answer: F,
) where
    Q: DeserializeOwned + Send + 'static,
    A: Serialize + Send + 'static,
    F: Fn(Q) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = A> + Send + 'static,
{
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            () = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!("failed to accept a connection on an admin socket: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        tokio::spawn(serve_one(stream, garbled, answer.clone()));
    }
}

async fn serve_one<Q, A, F, Fut>(stream: UnixStream, garbled: fn(String) -> A, answer: F)
where
    Q: DeserializeOwned,
    A: Serialize,
    F: FnOnce(Q) -> Fut,
    Fut: std::future::Future<Output = A>,
{
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    if BufReader::new(read.take(MAX_LINE))
        .read_line(&mut line)
        .await
        .is_err()
    {
        return;
    }
    let reply = match from_line::<Q>(&line) {
        Ok(q) => answer(q).await,
        Err(e) => garbled(format!("not a request: {e}")),
    };
    let _ = write.write_all(to_line(&reply).as_bytes()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_question_one_answer_over_a_private_socket() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("run/test.sock");
        let listener = bind(&path).expect("bind");
        let mode = std::fs::metadata(&path)
            .expect("socket")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            async move {
                let _ = stopped.await;
            },
            |why| why,
            |q: u32| async move { format!("got {q}") },
        ));
        let a: String = ask("test", &path, &7u32).await.expect("answer");
        assert_eq!(a, "got 7");
        let a: String = ask("test", &path, &"nonsense").await.expect("answer");
        assert!(a.starts_with("not a request"), "{a}");
        let _ = stop.send(());
        server.await.expect("server");
        drop(dir);
        let e = ask::<_, String>("test", &path, &1u32)
            .await
            .expect_err("gone");
        assert!(
            matches!(e, AskError::Unreachable { peer: "test", .. }),
            "{e}"
        );
    }
}
