//! One client request: choose an instance, forward, stream the answer back, and on failure
//! decide (with [`crate::retry`]) whether another instance may have it.

use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri, Version};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::balance::{FailureKind, Outcome};
use crate::pages::Page;
use crate::retry::{AttemptError, Route};
use crate::{Body, BoxError, Shared};

/// The largest body an idempotent request may have: it is kept in memory so that it can be
/// sent again (a SOAP `isAlive` envelope is a few hundred bytes).
const REPLAYABLE_BODY_MAX: usize = 64 * 1024;
/// At most this many instances are tried for one request.
const MAX_ATTEMPTS: usize = 3;
/// A body that moves no byte for this long, either way, is cut off: a client trickling an
/// upload, or an instance stalled mid-answer, must not hold a connection forever.
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The cookie that names a sticky session's instance.
pub const STICKY_COOKIE: &str = "oscarbox_instance";

/// Headers that belong to one connection and are never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The body of one request, in the form that lets it be sent again when that is safe.
enum RequestBody {
    /// Small and already read: sent again as often as needed.
    Buffered(Bytes),
    /// Streamed: sent again only if no attempt ever started reading it.
    Streamed(Arc<StreamSlot>),
}

/// Holds a streamed client body until the first attempt reads it. An attempt that failed to
/// connect never polls its body, so the body is still here for the next instance: that is how
/// "nothing was sent" is known for certain, rather than guessed from the error.
struct StreamSlot {
    body: Mutex<Option<Incoming>>,
    limit: u64,
    seen: AtomicU64,
    too_large: AtomicBool,
    /// The client's side failed (it went away, stalled, or sent too much): not the
    /// instance's fault, and never counted against it.
    client_failed: AtomicBool,
}

impl StreamSlot {
    fn untouched(&self) -> bool {
        self.body.lock().expect("slot lock").is_some()
    }
}

/// The idle timer both body wrappers keep: reset by every frame, expired after
/// [`BODY_IDLE_TIMEOUT`] without one.
struct Idle(Pin<Box<tokio::time::Sleep>>);

impl Idle {
    fn new() -> Idle {
        Idle(Box::pin(tokio::time::sleep(BODY_IDLE_TIMEOUT)))
    }

    fn touch(&mut self) {
        self.0
            .as_mut()
            .reset(tokio::time::Instant::now() + BODY_IDLE_TIMEOUT);
    }

    /// Whether the body has been idle too long (registers the waker when not).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.0.as_mut().poll(cx).is_ready()
    }
}

/// The body an attempt sends: takes the client's body from the slot on first poll and counts
/// it against the size limit and the idle timeout.
struct SlotBody {
    slot: Arc<StreamSlot>,
    body: Option<Incoming>,
    idle: Idle,
}

impl SlotBody {
    fn new(slot: Arc<StreamSlot>) -> SlotBody {
        SlotBody {
            slot,
            body: None,
            idle: Idle::new(),
        }
    }

    fn client_failed(&self, why: &'static str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.slot.client_failed.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err(why.into())))
    }
}

impl http_body::Body for SlotBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.body.is_none() {
            this.body = this.slot.body.lock().expect("slot lock").take();
            this.idle.touch();
        }
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(Some(Err("the request body was already sent".into())));
        };
        match Pin::new(body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let seen = this
                        .slot
                        .seen
                        .fetch_add(data.len() as u64, Ordering::Relaxed)
                        + data.len() as u64;
                    if seen > this.slot.limit {
                        this.slot.too_large.store(true, Ordering::Relaxed);
                        return this.client_failed("the request body is over the limit");
                    }
                }
                this.idle.touch();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(_))) => this.client_failed("the client's request body broke off"),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending if this.idle.expired(cx) => {
                this.client_failed("the client stopped sending its request body")
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_some_and(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.body {
            Some(b) => b.size_hint(),
            None => self
                .slot
                .body
                .lock()
                .expect("slot lock")
                .as_ref()
                .map_or_else(SizeHint::default, |b| b.size_hint()),
        }
    }
}

/// One request counted as outstanding on an instance. It ends exactly once: with what the
/// attempt showed of the instance, or, when dropped (the client went away, the request was
/// cancelled), as saying nothing against it.
struct Lease {
    shared: Arc<Shared>,
    instance: u32,
    ended: bool,
}

impl Lease {
    fn end(mut self, outcome: Outcome) {
        self.ended = true;
        self.shared.finish(self.instance, outcome);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.ended {
            self.shared.finish(self.instance, Outcome::Answered);
        }
    }
}

/// What the access log needs, with the path stripped of anything that could name a patient.
struct LogLine {
    method: Method,
    path: String,
    started: Instant,
}

impl LogLine {
    fn emit(&self, status: u16, instance: Option<u32>, attempts: usize) {
        tracing::info!(
            target: "access",
            method = %self.method,
            path = %self.path,
            status,
            ms = self.started.elapsed().as_millis() as u64,
            instance = instance.map_or_else(|| "-".to_owned(), |i| i.to_string()),
            attempts,
        );
    }
}

/// Path segments an access log may show: the names of OSCAR's routes. Anything else (an id,
/// a file name, a search term in a path such as `/search/Smith`) could name a patient.
const ROUTE_WORDS: &[&str] = &[
    "oscar",
    "ws",
    "rs",
    "services",
    "oauth",
    "initiate",
    "authorize",
    "token",
    "demographics",
    "demographic",
    "basic",
    "quickSearch",
    "search",
    "document",
    "documents",
    "download",
    "upload",
    "saveDocument",
    "login",
    "logout",
    "provider",
    "providers",
    "schedule",
    "appointment",
    "appointments",
    "dms",
    "index.jsp",
    "favicon.ico",
];

/// The path with its query dropped and every segment that is not a known route word or a SOAP
/// service name replaced by `{}`: `/ws/services/demographics/{}`.
pub fn loggable_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for seg in path.split('/').skip(1) {
        out.push('/');
        let service = seg.len() <= 40
            && seg.ends_with("Service")
            && seg.bytes().all(|b| b.is_ascii_alphabetic());
        if seg.is_empty() || service || ROUTE_WORDS.contains(&seg) {
            out.push_str(seg);
        } else {
            out.push_str("{}");
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, std::convert::Infallible> {
    let log = LogLine {
        method: req.method().clone(),
        path: loggable_path(req.uri().path()),
        started: Instant::now(),
    };
    let (resp, instance, attempts) = forward(&shared, req, peer, &log).await;
    if instance.is_none() {
        log.emit(resp.status().as_u16(), None, attempts);
    }
    Ok(resp)
}

/// Returns the answer, the instance that gave it (its access line is written when its body
/// ends), and the number of attempts.
async fn forward(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    peer: SocketAddr,
    log: &LogLine,
) -> (Response<Body>, Option<u32>, usize) {
    let settings = shared.settings();
    let path = req.uri().path();
    // The EMR's own switches (fault injection) answer loopback callers; through the proxy every
    // caller would look like loopback, so they are not reachable from outside.
    if path.starts_with("/oscarbox/") {
        return (Page::NotFound.response(), None, 0);
    }
    let route = Route::classify(req.method(), path).single_use(
        path,
        req.uri().query(),
        req.headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes),
    );
    let sticky = if settings.sticky_sessions {
        sticky_instance(req.headers())
    } else {
        None
    };
    let (parts, incoming) = req.into_parts();
    let limit = settings.max_request_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return (too_large(limit), None, 0);
    }
    let body = if route.idempotent {
        let collected = tokio::time::timeout(
            settings.timeouts.request,
            Limited::new(incoming, REPLAYABLE_BODY_MAX).collect(),
        )
        .await;
        match collected {
            Ok(Ok(c)) => RequestBody::Buffered(c.to_bytes()),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return (too_large(limit.min(REPLAYABLE_BODY_MAX as u64)), None, 0)
            }
            _ => return (Page::BadRequest.response(), None, 0),
        }
    } else {
        RequestBody::Streamed(Arc::new(StreamSlot {
            body: Mutex::new(Some(incoming)),
            limit,
            seen: AtomicU64::new(0),
            too_large: AtomicBool::new(false),
            client_failed: AtomicBool::new(false),
        }))
    };
    let host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    shared
        .budget
        .lock()
        .expect("budget lock")
        .deposit(Instant::now());

    let mut tried: Vec<u32> = Vec::new();
    // The last failure, and whether nothing of the request reached any instance so far.
    let mut last: Option<AttemptError> = None;
    let mut nothing_sent_yet = true;
    let first_byte_timeout = route.first_byte_timeout(&settings.timeouts);
    loop {
        let picked = shared
            .pool
            .lock()
            .expect("pool lock")
            .pick(sticky, &tried, Instant::now());
        let Some(backend) = picked else {
            let maybe_applied = !route.idempotent && !nothing_sent_yet;
            let page = match last {
                None => Page::Maintenance,
                Some(AttemptError::Timeout) => Page::GatewayTimeout { maybe_applied },
                Some(_) => Page::BadGateway { maybe_applied },
            };
            return (page.response(), None, tried.len());
        };
        tried.push(backend.instance);
        let lease = Lease {
            shared: Arc::clone(shared),
            instance: backend.instance,
            ended: false,
        };
        let Ok(uri) = Uri::try_from(format!("http://{}{path_and_query}", backend.addr)) else {
            return (Page::BadRequest.response(), None, tried.len());
        };
        let upstream_body: Body = match &body {
            RequestBody::Buffered(b) => Full::new(b.clone()).map_err(|n| match n {}).boxed(),
            RequestBody::Streamed(slot) => SlotBody::new(Arc::clone(slot)).boxed(),
        };
        let mut up = Request::new(upstream_body);
        *up.method_mut() = parts.method.clone();
        *up.uri_mut() = uri;
        *up.version_mut() = Version::HTTP_11;
        *up.headers_mut() = upstream_headers(&parts.headers, host.as_ref(), peer);

        // An idempotent request waiting on an instance that gets ejected (by a probe, or by
        // other requests' failures) moves on at once.
        let ejected = backend.ejected.notified();
        tokio::pin!(ejected);
        ejected.as_mut().enable();
        let attempt = tokio::select! {
            a = tokio::time::timeout(first_byte_timeout, shared.client.request(up)) => match a {
                Ok(Ok(resp)) => Ok(Ok(resp)),
                Ok(Err(e)) => Ok(Err(Some(e))),
                Err(elapsed) => Err(elapsed),
            },
            () = &mut ejected, if route.idempotent => Ok(Err(None)),
        };
        let error = match attempt {
            Ok(Ok(resp)) => {
                let status = resp.status().as_u16();
                let outcome = if matches!(status, 502..=504) {
                    Outcome::Failed(FailureKind::Status(status))
                } else {
                    Outcome::Answered
                };
                let resp = downstream(resp, lease, outcome, &settings, sticky, log, tried.len());
                return (resp, Some(backend.instance), tried.len());
            }
            Ok(Err(Some(e))) if e.is_connect() => AttemptError::Connect,
            Ok(Err(Some(_))) => AttemptError::Broken,
            // Ejected while waiting: as good as a timeout, and already counted.
            Ok(Err(None)) | Err(_) => AttemptError::Timeout,
        };
        if let RequestBody::Streamed(slot) = &body {
            if slot.client_failed.load(Ordering::Relaxed) {
                // The client's own upload failed; the instance did nothing wrong.
                lease.end(Outcome::Answered);
                let page = if slot.too_large.load(Ordering::Relaxed) {
                    too_large(limit)
                } else {
                    Page::BadRequest.response()
                };
                return (page, None, tried.len());
            }
        }
        lease.end(Outcome::Failed(match error {
            AttemptError::Connect => FailureKind::Connect,
            AttemptError::Timeout => FailureKind::Timeout,
            AttemptError::Broken => FailureKind::Broken,
        }));
        last = Some(error);
        let nothing_sent = match &body {
            RequestBody::Buffered(_) => error == AttemptError::Connect,
            RequestBody::Streamed(slot) => error == AttemptError::Connect && slot.untouched(),
        };
        let may = match &body {
            RequestBody::Buffered(_) => error.may_retry(&route),
            RequestBody::Streamed(_) => nothing_sent,
        };
        nothing_sent_yet &= nothing_sent;
        tracing::debug!(instance = backend.instance, ?error, may, "attempt failed");
        if !may
            || tried.len() >= MAX_ATTEMPTS
            || !shared
                .budget
                .lock()
                .expect("budget lock")
                .withdraw(Instant::now())
        {
            let maybe_applied = !route.idempotent && !nothing_sent_yet;
            let page = match error {
                AttemptError::Timeout => Page::GatewayTimeout { maybe_applied },
                _ => Page::BadGateway { maybe_applied },
            };
            return (page.response(), None, tried.len());
        }
    }
}

fn too_large(limit: u64) -> Response<Body> {
    Page::TooLarge { limit_bytes: limit }.response()
}

/// The instance named by the sticky cookie, if any.
fn sticky_instance(headers: &HeaderMap) -> Option<u32> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == STICKY_COOKIE).then(|| v.parse().ok()).flatten()
        })
}

/// Names listed in `Connection`, which are hop-by-hop too.
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::try_from(n.trim()).ok())
        .collect()
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in connection_listed(headers) {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The client's headers as the instance gets them: hop-by-hop ones removed and the
/// `X-Forwarded-*` set by us alone (the instance trusts them from loopback, so a client's own
/// must never pass through).
fn upstream_headers(client: &HeaderMap, host: Option<&HeaderValue>, peer: SocketAddr) -> HeaderMap {
    let mut h = client.clone();
    strip_hop_by_hop(&mut h);
    for name in [
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "forwarded",
        "x-real-ip",
    ] {
        h.remove(name);
    }
    if let Some(host) = host {
        h.insert(header::HOST, host.clone());
        h.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
    }
    if let Ok(ip) = HeaderValue::from_str(&peer.ip().to_string()) {
        h.insert(HeaderName::from_static("x-forwarded-for"), ip);
    }
    h.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("https"),
    );
    h
}

fn downstream(
    resp: Response<Incoming>,
    lease: Lease,
    outcome: Outcome,
    settings: &crate::Settings,
    sticky: Option<u32>,
    log: &LogLine,
    attempts: usize,
) -> Response<Body> {
    let status = resp.status().as_u16();
    let instance = lease.instance;
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if settings.hsts {
        parts.headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if settings.sticky_sessions && sticky != Some(instance) {
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{STICKY_COOKIE}={instance}; Path=/; Secure; HttpOnly; SameSite=Lax"
        )) {
            parts.headers.append(header::SET_COOKIE, v);
        }
    }
    let tracked = Tracked {
        body,
        idle: Idle::new(),
        end: Some(End {
            lease,
            outcome,
            log: LogLine {
                method: log.method.clone(),
                path: log.path.clone(),
                started: log.started,
            },
            status,
            attempts,
        }),
    };
    Response::from_parts(parts, tracked.boxed())
}

/// An instance's answer body on its way to the client: the request counts as outstanding on
/// the instance until the body ends (or the client goes away), and its access line is written
/// then, with the whole duration.
struct Tracked {
    body: Incoming,
    idle: Idle,
    end: Option<End>,
}

struct End {
    lease: Lease,
    outcome: Outcome,
    log: LogLine,
    status: u16,
    attempts: usize,
}

impl Tracked {
    fn finish(&mut self, broken: bool) {
        if let Some(end) = self.end.take() {
            let outcome = if broken {
                Outcome::Failed(FailureKind::Broken)
            } else {
                end.outcome
            };
            let instance = end.lease.instance;
            end.lease.end(outcome);
            end.log.emit(end.status, Some(instance), end.attempts);
        }
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.finish(false),
            Poll::Ready(Some(Err(_))) => self.finish(true),
            Poll::Ready(Some(Ok(_))) => self.idle.touch(),
            Poll::Pending => {
                if self.idle.expired(cx) {
                    self.finish(true);
                    return Poll::Ready(Some(
                        Err("the instance stopped sending its answer".into()),
                    ));
                }
            }
        }
        polled.map(|o| o.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // The client went away before the end: not the instance's fault.
        self.finish(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_paths_keep_words_only() {
        assert_eq!(
            loggable_path("/oscar/ws/services/demographics/1234"),
            "/oscar/ws/services/demographics/{}"
        );
        assert_eq!(
            loggable_path("/ws/services/document/20250101120000_Smith%20referral.pdf"),
            "/ws/services/document/{}"
        );
        assert_eq!(
            loggable_path("/ws/SystemInfoService"),
            "/ws/SystemInfoService"
        );
        assert_eq!(
            loggable_path("/oscar/ws/rs/search/Smith"),
            "/oscar/ws/rs/search/{}"
        );
        assert_eq!(loggable_path("/"), "/");
        assert_eq!(loggable_path("/ws/"), "/ws/");
    }

    #[test]
    fn forwarded_headers_are_ours_alone() {
        let mut client = HeaderMap::new();
        client.insert("x-forwarded-for", HeaderValue::from_static("10.9.9.9"));
        client.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
        client.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        client.insert("x-secret", HeaderValue::from_static("1"));
        client.insert(header::COOKIE, HeaderValue::from_static("a=b"));
        let host = HeaderValue::from_static("box.local:8443");
        let h = upstream_headers(
            &client,
            Some(&host),
            "192.168.1.20:5555".parse().expect("addr"),
        );
        assert_eq!(h["x-forwarded-for"], "192.168.1.20");
        assert_eq!(h["x-forwarded-host"], "box.local:8443");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert!(h.get("x-secret").is_none() && h.get(header::CONNECTION).is_none());
        assert_eq!(h[header::COOKIE], "a=b");
    }

    #[test]
    fn the_sticky_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("JSESSIONID=abc; oscarbox_instance=3; x=y"),
        );
        assert_eq!(sticky_instance(&h), Some(3));
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("oscarbox_instance=../1"),
        );
        assert_eq!(sticky_instance(&h), None);
    }
}
