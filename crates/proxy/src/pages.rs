//! The answers the proxy writes itself: self-contained pages (no scripts, styles inline, no
//! outside resources) that tell a person at a clinic what happened and what to do.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};

use crate::Body;

/// Why the proxy answers instead of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// No instance can take requests.
    Maintenance,
    /// The instance broke the connection; a non-idempotent request may have been applied.
    BadGateway {
        maybe_applied: bool,
    },
    /// The instance did not answer in time.
    GatewayTimeout {
        maybe_applied: bool,
    },
    TooLarge {
        limit_bytes: u64,
    },
    NotFound,
    BadRequest,
}

const RETRY_AFTER_SECONDS: &str = "10";

impl Page {
    fn status(self) -> StatusCode {
        match self {
            Page::Maintenance => StatusCode::SERVICE_UNAVAILABLE,
            Page::BadGateway { .. } => StatusCode::BAD_GATEWAY,
            Page::GatewayTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Page::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Page::NotFound => StatusCode::NOT_FOUND,
            Page::BadRequest => StatusCode::BAD_REQUEST,
        }
    }

    fn text(self) -> (&'static str, String) {
        const CHECK: &str = "If you were saving something, open the record again and check whether your change is there before you repeat it.";
        match self {
            Page::Maintenance => (
                "The EMR is restarting",
                format!("The EMR is briefly unavailable while the box restarts it. This page will try again by itself in {RETRY_AFTER_SECONDS} seconds. If it stays for more than a few minutes, call your support provider."),
            ),
            Page::BadGateway { maybe_applied } => (
                "The EMR stopped answering",
                if maybe_applied {
                    format!("The EMR stopped while handling your request. {CHECK}")
                } else {
                    "The EMR stopped while handling your request. Please try again.".into()
                },
            ),
            Page::GatewayTimeout { maybe_applied } => (
                "The EMR took too long to answer",
                if maybe_applied {
                    format!("The EMR did not answer in time. {CHECK}")
                } else {
                    "The EMR did not answer in time. Please try again in a moment.".into()
                },
            ),
            Page::TooLarge { limit_bytes } => (
                "The upload is too large",
                format!("This box accepts uploads of up to {}. Make the file smaller (for example, scan at a lower resolution) and try again.", size(limit_bytes)),
            ),
            Page::NotFound => ("Not found", "There is nothing at this address.".into()),
            Page::BadRequest => (
                "Bad request",
                "The request could not be understood.".into(),
            ),
        }
    }

    pub fn response(self) -> Response<Body> {
        let (title, text) = self.text();
        let html = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{refresh}<title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222;line-height:1.5}}h1{{font-size:1.4em}}</style></head><body><h1>{title}</h1><p>{text}</p><p><small>OSCAR Box</small></p></body></html>\n",
            refresh = if self == Page::Maintenance {
                format!("<meta http-equiv=\"refresh\" content=\"{RETRY_AFTER_SECONDS}\">")
            } else {
                String::new()
            }
        );
        let mut resp = Response::new(
            Full::new(Bytes::from(html))
                .map_err(|never| match never {})
                .boxed(),
        );
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self == Page::Maintenance {
            h.insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        resp
    }
}

fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", (bytes >> 10).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_say_what_happened() {
        assert_eq!(size(128 << 20), "128 MiB");
        assert_eq!(size(64 << 10), "64 KiB");
        let r = Page::Maintenance.response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "10");
    }
}
