//! The few HTML pages the EMR serves itself (sign-in, OAuth consent): self-contained, no
//! script, no external asset, everything escaped.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub use oscarbox_common::escape_html as escape;

/// A page with `title` and `body` (already escaped HTML). Framing is refused so that a consent
/// or sign-in form cannot be overlaid by another site (clickjacking).
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:32em;margin:3em auto;padding:0 1em}}label{{display:block;margin:.6em 0}}input{{font-size:1em}}.error{{color:#a00}}</style>\
         </head><body>{body}</body></html>",
        title = escape(title)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html;charset=UTF-8")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http: https:; frame-ancestors 'none'"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        html,
    )
        .into_response()
}

/// The fields of an `application/x-www-form-urlencoded` body or query string.
pub fn form_fields(data: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(data).into_owned().collect()
}

/// The first value of `name`.
pub fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
