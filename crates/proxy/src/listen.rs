//! The listeners: HTTPS (HTTP/1.1 and HTTP/2 by ALPN) on every configured port, and plain
//! HTTP only to redirect to HTTPS. Every connection is its own task, so a slow or malicious
//! client holds one task and one socket, never another client's turn. A connection must
//! finish its TLS handshake and send a whole first request head within `header-read-timeout`;
//! on HTTP/1.1 every later head too (which also closes idle keep-alive connections), within
//! `max-header-kib`; HTTP/2 connections are pinged and closed when the peer stops answering.
//! The protocol is chosen by ALPN, never by reading the first bytes, which would be a read
//! without a deadline.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use oscarbox_config::ProxyConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{Body, Shared};

/// More simultaneous client connections than a clinic has devices by far, and far fewer than
/// the file descriptors the service gets: past it, new connections wait in the backlog.
const MAX_CONNECTIONS: usize = 4096;

#[derive(Debug)]
pub struct Listener {
    inner: TcpListener,
    kind: Kind,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Https,
    /// Redirects to HTTPS on this port.
    Redirect {
        https_port: u16,
    },
}

pub async fn bind(config: &ProxyConfig) -> anyhow::Result<Vec<Listener>> {
    let mut out = Vec::new();
    for &port in &config.https_ports {
        let addr = SocketAddr::new(config.listen_address, port);
        let inner = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listen on {addr} (proxy.https-ports)"))?;
        out.push(Listener {
            inner,
            kind: Kind::Https,
        });
    }
    if let (Some(port), Some(&https_port)) = (config.http_port, config.https_ports.first()) {
        let addr = SocketAddr::new(config.listen_address, port);
        let inner = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listen on {addr} (proxy.http-port)"))?;
        out.push(Listener {
            inner,
            kind: Kind::Redirect { https_port },
        });
    }
    Ok(out)
}

/// The two protocol servers, configured once per listener.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

fn builders(config: &ProxyConfig) -> Builders {
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(config.max_header_bytes);
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(128)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    Builders { http1, http2 }
}

/// Accepts until `token`, then lets open connections finish their requests in flight (hyper
/// closes each after its current request) for up to `grace`.
pub async fn serve(
    listener: Listener,
    shared: Arc<Shared>,
    config: ProxyConfig,
    token: CancellationToken,
) {
    let builders = Arc::new(builders(&config));
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            () = token.cancelled() => break,
            p = Arc::clone(&limit).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = token.cancelled() => break,
            accepted = listener.inner.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!("failed to accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let builders = Arc::clone(&builders);
        let watcher = graceful.watcher();
        let handshake_timeout = config.header_read_timeout;
        let kind = listener.kind;
        connections.spawn(async move {
            let _permit = permit;
            match kind {
                Kind::Https => {
                    https(stream, peer, shared, &builders, handshake_timeout, watcher).await;
                }
                Kind::Redirect { https_port } => {
                    let svc = service_fn(move |req| redirect(req, https_port));
                    let conn = builders.http1.serve_connection(TokioIo::new(stream), svc);
                    let _ = watcher.watch(conn).await;
                }
            }
        });
    }
    // Closed now, so that connections waiting in the backlog are refused rather than left hanging.
    drop(listener);
    connections.close();
    let grace = config.shutdown_grace;
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(?grace, "requests still in flight after the grace period; closing them");
        }
    }
}

async fn https(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    builders: &Builders,
    handshake_timeout: Duration,
    watcher: Watcher,
) {
    let started = tokio::time::Instant::now();
    let acceptor = tokio_rustls::TlsAcceptor::from(shared.tls());
    let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        // Scanners, clients that distrust the certificate, slow handshakes: nothing to log
        // above debug, or a port scan would flood the journal.
        Ok(Err(e)) => {
            tracing::debug!(%peer, "TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let first_request = Arc::new(AtomicBool::new(false));
    let svc = {
        let first_request = Arc::clone(&first_request);
        service_fn(move |req: Request<Incoming>| {
            first_request.store(true, Ordering::Relaxed);
            crate::forward::handle(Arc::clone(&shared), req, peer)
        })
    };
    let io = TokioIo::new(tls);
    let conn: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = if h2 {
        let conn = builders.http2.serve_connection(io, svc);
        Box::pin(async move {
            let _ = watcher.watch(conn).await;
        })
    } else {
        let conn = builders.http1.serve_connection(io, svc);
        Box::pin(async move {
            let _ = watcher.watch(conn).await;
        })
    };
    tokio::pin!(conn);
    // The handshake and the first request share one deadline: a client that connects and then
    // says nothing (HTTP/2 has no header timeout of its own) is let go.
    tokio::select! {
        () = conn.as_mut() => return,
        () = tokio::time::sleep_until(started + handshake_timeout) => {}
    }
    if !first_request.load(Ordering::Relaxed) {
        tracing::debug!(%peer, "no request within the header timeout; closing");
        return;
    }
    conn.await;
}

/// `http://host/path` → `https://host:port/path`, permanently (308 keeps the method).
async fn redirect(
    req: Request<Incoming>,
    https_port: u16,
) -> Result<Response<Body>, std::convert::Infallible> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or("localhost");
    let host = host_without_port(host);
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = if https_port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{https_port}{path}")
    };
    let mut resp = Response::new(
        Full::new(Bytes::from_static(b"This EMR is served over HTTPS only.\n"))
            .map_err(|n| match n {})
            .boxed(),
    );
    match HeaderValue::from_str(&location) {
        Ok(v) if valid_host(host) => {
            *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
            resp.headers_mut().insert(header::LOCATION, v);
        }
        _ => *resp.status_mut() = StatusCode::BAD_REQUEST,
    }
    Ok(resp)
}

fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 2]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// A host name or address, nothing that could turn the redirect into another URL.
fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_port_and_odd_ones_are_refused() {
        assert_eq!(host_without_port("box.local:80"), "box.local");
        assert_eq!(host_without_port("box.local"), "box.local");
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
        assert!(valid_host("192.168.1.5"));
        assert!(!valid_host("evil.example/phish?"));
        assert!(!valid_host("a@b"));
    }
}
