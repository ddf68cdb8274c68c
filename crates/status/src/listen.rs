//! The admin listener: HTTPS with the box's certificate, HTTP/1.1, read-only. `/` is the status
//! page, `/health` the health document, `/metrics` the Prometheus metrics. Loopback clients
//! need no token; any other client must present the box's status token, as
//! `Authorization: Bearer TOKEN` or, for a bookmarked browser, `?token=TOKEN`.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use oscarbox_watchdog_api::BoxStatus;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Connections served at once from the box itself, from anywhere else, and from one other
/// address: a client on the clinic's network can neither take every slot nor crowd out the
/// box's own checks or the provider's Prometheus. A connection beyond them is closed at once.
const LOCAL_CONNECTIONS: usize = 16;
const REMOTE_CONNECTIONS: usize = 48;
const PER_ADDRESS: usize = 8;
/// A client must finish the TLS handshake and send its request head within this time.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// No connection lives longer: a slot is never held by one client for good.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// How often the status page reloads itself.
const PAGE_REFRESH_SECONDS: u32 = 10;

/// Who may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// No token, from off the box.
    TokenRequired,
    /// A token that is not the box's (refused on loopback too: a wrong token is a mistake to
    /// report, not to ignore).
    WrongToken,
}

/// Pure: whether a request from `peer` with this `Authorization` header and query may read.
pub fn authorize(
    peer: IpAddr,
    authorization: Option<&str>,
    query: Option<&str>,
    token: &str,
) -> Access {
    let presented = authorization
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .or_else(|| {
            query?
                .split('&')
                .find_map(|pair| pair.strip_prefix("token="))
        });
    match presented {
        Some(p) if constant_time_eq(p.as_bytes(), token.as_bytes()) => Access::Allowed,
        Some(_) => Access::WrongToken,
        None if is_local(peer) => Access::Allowed,
        None => Access::TokenRequired,
    }
}

/// The box itself: loopback, also as an IPv4-mapped IPv6 address.
fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        IpAddr::V4(v4) => v4.is_loopback(),
    }
}

/// Compares without an early exit, so the time taken says nothing about how much of a guess
/// was right. (Two lines; not worth a dependency.)
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves until `token` is cancelled, each request from the newest status in `status`, each
/// connection with the newest certificate in `tls`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: watch::Receiver<Arc<rustls::ServerConfig>>,
    bearer: Arc<str>,
    status: watch::Receiver<BoxStatus>,
    token: CancellationToken,
) {
    let slots = Arc::new(std::sync::Mutex::new(Slots::default()));
    loop {
        let (stream, peer) = tokio::select! {
            () = token.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("failed to accept an admin connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(slot) = Slot::take(&slots, peer.ip()) else {
            drop(stream);
            continue;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.borrow()));
        let bearer = Arc::clone(&bearer);
        let status = status.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let Ok(Ok(tls)) = tokio::time::timeout(HEAD_TIMEOUT, acceptor.accept(stream)).await
            else {
                return;
            };
            let service = hyper::service::service_fn(move |req| {
                let answer = answer(&req, peer, &bearer, &status.borrow());
                async move { Ok::<_, Infallible>(answer) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(64 << 10)
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = tokio::time::sleep(CONNECTION_LIFETIME) => {}
                () = token.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
                }
            }
        });
    }
}

/// Connections in use, by where they come from.
#[derive(Debug, Default)]
struct Slots {
    local: usize,
    remote: usize,
    by_address: std::collections::HashMap<IpAddr, usize>,
}

impl Slots {
    /// Pure: whether a connection from `ip` may be served now; if so, it is counted.
    fn admit(&mut self, ip: IpAddr) -> bool {
        if is_local(ip) {
            if self.local >= LOCAL_CONNECTIONS {
                return false;
            }
            self.local += 1;
            return true;
        }
        let mine = self.by_address.entry(ip).or_default();
        if self.remote >= REMOTE_CONNECTIONS || *mine >= PER_ADDRESS {
            return false;
        }
        *mine += 1;
        self.remote += 1;
        true
    }

    fn release(&mut self, ip: IpAddr) {
        if is_local(ip) {
            self.local = self.local.saturating_sub(1);
        } else if let Some(n) = self.by_address.get_mut(&ip) {
            *n = n.saturating_sub(1);
            self.remote = self.remote.saturating_sub(1);
            if *n == 0 {
                self.by_address.remove(&ip);
            }
        }
    }
}

/// One admitted connection; released when dropped, however the connection ends.
#[derive(Debug)]
struct Slot {
    slots: Arc<std::sync::Mutex<Slots>>,
    ip: IpAddr,
}

impl Slot {
    fn take(slots: &Arc<std::sync::Mutex<Slots>>, ip: IpAddr) -> Option<Slot> {
        let admitted = slots.lock().is_ok_and(|mut s| s.admit(ip));
        admitted.then(|| Slot {
            slots: Arc::clone(slots),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut s) = self.slots.lock() {
            s.release(self.ip);
        }
    }
}

fn answer(
    req: &Request<Incoming>,
    peer: SocketAddr,
    bearer: &str,
    status: &BoxStatus,
) -> Response<Full<Bytes>> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match authorize(peer.ip(), authorization, req.uri().query(), bearer) {
        Access::Allowed => {}
        Access::TokenRequired => {
            return unauthorized("this address needs the box's status token: send `Authorization: Bearer TOKEN`, or add `?token=TOKEN` to the address in a browser (`oscarbox status token` on the box prints it)");
        }
        Access::WrongToken => {
            return unauthorized("the token presented is not this box's status token");
        }
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served here",
        );
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/" | "/status" => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            crate::page::render(status, PAGE_REFRESH_SECONDS),
        ),
        "/health" => {
            let (code, doc) = crate::health::document(status);
            respond(
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                crate::health::CONTENT_TYPE,
                doc.to_string(),
            )
        }
        "/metrics" => respond(
            StatusCode::OK,
            crate::metrics::CONTENT_TYPE,
            crate::metrics::encode(status),
        ),
        _ => plain(
            StatusCode::NOT_FOUND,
            "not found: try /, /health or /metrics",
        ),
    }
}

fn respond(code: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    let h = r.headers_mut();
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    r
}

/// An error answer; the connection closes after it, so a client that only collects refusals
/// does not keep a slot.
fn plain(code: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut r = respond(code, "text/plain; charset=utf-8", format!("{message}\n"));
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

fn unauthorized(message: &str) -> Response<Full<Bytes>> {
    let mut r = plain(StatusCode::UNAUTHORIZED, message);
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer realm=\"oscarbox\""),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "s3cret-token";

    #[test]
    fn one_address_cannot_take_every_slot_nor_crowd_out_the_box() {
        let mut slots = Slots::default();
        let lan = |n: u8| IpAddr::from([192, 168, 1, n]);
        for _ in 0..PER_ADDRESS {
            assert!(slots.admit(lan(1)));
        }
        assert!(!slots.admit(lan(1)), "one address has its share");
        for n in 2..=6 {
            for _ in 0..PER_ADDRESS {
                slots.admit(lan(n));
            }
        }
        assert_eq!(slots.remote, REMOTE_CONNECTIONS);
        assert!(!slots.admit(lan(7)), "the remote slots are all taken");
        assert!(
            slots.admit(IpAddr::from([127, 0, 0, 1])),
            "the box's own checks still get in"
        );
        slots.release(lan(1));
        assert!(slots.admit(lan(7)), "a released slot is free again");
        for n in 1..=7 {
            while slots.by_address.contains_key(&lan(n)) {
                slots.release(lan(n));
            }
        }
        assert_eq!((slots.remote, slots.by_address.len()), (0, 0));
    }

    #[test]
    fn loopback_reads_without_a_token_and_others_need_it() {
        let lan: IpAddr = [192, 168, 1, 20].into();
        let local: IpAddr = [127, 0, 0, 1].into();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("ip");
        assert_eq!(authorize(local, None, None, TOKEN), Access::Allowed);
        assert_eq!(authorize(mapped, None, None, TOKEN), Access::Allowed);
        assert_eq!(authorize(lan, None, None, TOKEN), Access::TokenRequired);
        assert_eq!(
            authorize(lan, Some("Bearer s3cret-token"), None, TOKEN),
            Access::Allowed
        );
        assert_eq!(
            authorize(lan, None, Some("a=1&token=s3cret-token"), TOKEN),
            Access::Allowed
        );
        assert_eq!(
            authorize(lan, Some("Bearer s3cret-tokeN"), None, TOKEN),
            Access::WrongToken
        );
        assert_eq!(
            authorize(local, None, Some("token=guess"), TOKEN),
            Access::WrongToken
        );
        assert_eq!(
            authorize(lan, Some("Basic czNjcmV0"), None, TOKEN),
            Access::TokenRequired
        );
        assert_eq!(
            authorize(lan, Some("bearer s3cret-token"), None, TOKEN),
            Access::Allowed
        );
    }
}
