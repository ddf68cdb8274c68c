//! Whether a failed attempt may be tried on another instance: pure decisions, no I/O.
//!
//! The rule that keeps retries harmless: a request is replayed only when replaying cannot
//! apply it twice. That is any request whose connection failed before a byte was sent, and an
//! idempotent request (GET, HEAD, OPTIONS, a `SystemInfoService` SOAP call) after any failure.
//! As in pingora, the error itself carries what happened to the request, and the decision is
//! made from that; unlike pingora, a reused connection that breaks after the request was
//! written never counts as "nothing sent".

use std::time::Duration;

use http::Method;
use tokio::time::Instant;

/// How far an attempt got before it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptError {
    /// No connection: nothing reached the instance.
    Connect,
    /// Sent (perhaps in part), and no answer's first byte within the route's timeout.
    Timeout,
    /// Sent (perhaps in part), and the connection broke before an answer.
    Broken,
}

impl AttemptError {
    /// Whether the request may be sent to another instance.
    pub fn may_retry(self, route: &Route) -> bool {
        match self {
            AttemptError::Connect => true,
            AttemptError::Timeout | AttemptError::Broken => route.idempotent,
        }
    }
}

/// What the proxy knows of a request before sending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Replaying it cannot change anything.
    pub idempotent: bool,
    /// A web service call (`/ws/`: SOAP, REST, OAuth), which answers in milliseconds; browser
    /// pages (stock OSCAR's JSPs, reports) may legitimately take many seconds.
    pub api: bool,
    /// It carries a document (long timeouts, large bodies).
    pub document: bool,
    /// It is the liveness probe itself (the shortest timeout).
    pub is_alive: bool,
}

/// The timeouts a route gets, from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub first_byte: Duration,
    pub request: Duration,
    pub document: Duration,
}

impl Route {
    /// Classifies a request by method and path (with or without OSCAR's `/oscar` context).
    pub fn classify(method: &Method, path: &str) -> Route {
        let path = path.strip_prefix("/oscar").unwrap_or(path);
        let system_info = path == "/ws/SystemInfoService";
        let idempotent =
            matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) || system_info;
        // Case-insensitive without a copy: this runs on every request.
        let document = path
            .as_bytes()
            .windows(b"/document".len())
            .any(|w| w.eq_ignore_ascii_case(b"/document"))
            || path
                .get(..5)
                .is_some_and(|p| p.eq_ignore_ascii_case("/dms/"));
        Route {
            idempotent,
            api: path.starts_with("/ws/"),
            document,
            is_alive: system_info,
        }
    }

    /// The same route for a request that carries single-use credentials: an OAuth 1.0a
    /// signature (its nonce is spent by the first instance that checks it, so a replay would
    /// be refused) or an OAuth handshake step (which spends a request token or verifier). Such
    /// a request is never replayed once it may have reached an instance.
    pub fn single_use(
        self,
        path: &str,
        query: Option<&str>,
        authorization: Option<&[u8]>,
    ) -> Route {
        let path = path.strip_prefix("/oscar").unwrap_or(path);
        let oauth_header = authorization.is_some_and(|a| {
            a.get(..6)
                .is_some_and(|s| s.eq_ignore_ascii_case(b"oauth "))
        });
        let oauth_query = query.is_some_and(|q| q.contains("oauth_"));
        if oauth_header || oauth_query || path.starts_with("/ws/oauth/") {
            Route {
                idempotent: false,
                ..self
            }
        } else {
            self
        }
    }

    /// How long an attempt waits for the answer's first byte. Only idempotent web service
    /// calls get the short wait; a slow page is not a dead instance (and an idempotent
    /// request waiting on an instance that gets ejected moves on at once, whatever its wait).
    pub fn first_byte_timeout(&self, t: &Timeouts) -> Duration {
        if self.document {
            t.document
        } else if self.idempotent && self.api {
            t.first_byte
        } else {
            t.request
        }
    }
}

/// A retry budget in the style of linkerd's and Finagle's: every request deposits a fraction of
/// a retry, every retry withdraws one, and a small allowance per second keeps a quiet box able
/// to retry at all. When instances fail together, retries stop multiplying the load.
#[derive(Debug, Clone)]
pub struct Budget {
    ratio: f64,
    per_second: f64,
    cap: f64,
    tokens: f64,
    refilled: Instant,
}

impl Budget {
    /// `percent` of requests may be retried, plus `per_second` retries a second.
    pub fn new(percent: u32, per_second: f64, now: Instant) -> Budget {
        let ratio = f64::from(percent) / 100.0;
        let cap = (per_second * 10.0).max(10.0);
        Budget {
            ratio,
            per_second,
            cap,
            tokens: cap,
            refilled: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.cap);
    }

    /// A request arrived.
    pub fn deposit(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens + self.ratio).min(self.cap);
    }

    /// Whether a retry may happen now; takes it from the budget if so.
    pub fn withdraw(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_requests_are_replayed_after_they_were_sent() {
        let get = Route::classify(&Method::GET, "/oscar/ws/services/demographics/1");
        let probe = Route::classify(&Method::POST, "/ws/SystemInfoService");
        let post = Route::classify(&Method::POST, "/ws/services/demographics");
        let soap_write = Route::classify(&Method::POST, "/oscar/ws/DemographicService");
        for e in [
            AttemptError::Connect,
            AttemptError::Timeout,
            AttemptError::Broken,
        ] {
            assert!(e.may_retry(&get));
            assert!(e.may_retry(&probe));
        }
        for route in [post, soap_write] {
            assert!(AttemptError::Connect.may_retry(&route));
            assert!(!AttemptError::Timeout.may_retry(&route));
            assert!(!AttemptError::Broken.may_retry(&route));
        }
        assert!(Route::classify(&Method::POST, "/oscar/ws/SystemInfoService").is_alive);
        assert!(!Route::classify(&Method::POST, "/ws/SystemInfoServiceX").idempotent);
    }

    #[test]
    fn documents_get_the_long_timeout() {
        let t = Timeouts {
            first_byte: Duration::from_millis(800),
            request: Duration::from_secs(120),
            document: Duration::from_secs(1800),
        };
        let upload = Route::classify(&Method::POST, "/ws/services/document/saveDocument");
        let signed = Route::classify(&Method::GET, "/ws/services/demographics/7").single_use(
            "/ws/services/demographics/7",
            None,
            Some(b"OAuth oauth_consumer_key=\"k\""),
        );
        assert!(
            !signed.idempotent,
            "a signed request spends its nonce: never replayed"
        );
        let token = Route::classify(&Method::GET, "/oscar/ws/oauth/token").single_use(
            "/oscar/ws/oauth/token",
            None,
            None,
        );
        assert!(!token.idempotent);
        let in_query = Route::classify(&Method::GET, "/ws/services/demographics/7").single_use(
            "/ws/services/demographics/7",
            Some("oauth_token=t&oauth_nonce=n"),
            None,
        );
        assert!(!in_query.idempotent);
        let session = Route::classify(&Method::GET, "/ws/rs/demographics/7").single_use(
            "/ws/rs/demographics/7",
            Some("x=1"),
            Some(b"Basic abc"),
        );
        assert!(session.idempotent, "other GETs stay replayable");
        let download = Route::classify(&Method::GET, "/oscar/ws/services/documents/7/download");
        let api = Route::classify(&Method::GET, "/ws/services/demographics/7");
        let page = Route::classify(&Method::GET, "/oscar/provider/providercontrol.jsp");
        let write = Route::classify(&Method::PUT, "/ws/services/demographics");
        assert_eq!(upload.first_byte_timeout(&t), t.document);
        assert_eq!(download.first_byte_timeout(&t), t.document);
        assert_eq!(api.first_byte_timeout(&t), t.first_byte);
        assert_eq!(page.first_byte_timeout(&t), t.request);
        assert_eq!(write.first_byte_timeout(&t), t.request);
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_stops_a_retry_storm_and_refills() {
        let mut now = Instant::now();
        let mut b = Budget::new(20, 1.0, now);
        // The initial reserve, then nothing: every request failing cannot double the load.
        let mut granted = 0;
        for _ in 0..1000 {
            b.deposit(now);
            if b.withdraw(now) {
                granted += 1;
            }
        }
        assert!((200..=215).contains(&granted), "granted {granted}");
        now += Duration::from_secs(3);
        assert!(b.withdraw(now) && b.withdraw(now) && b.withdraw(now));
        assert!(!b.withdraw(now));
        let mut none = Budget::new(0, 0.0, now);
        for _ in 0..10 {
            assert!(none.withdraw(now), "the reserve of ten");
        }
        assert!(!none.withdraw(now + Duration::from_secs(3600)));
    }
}
