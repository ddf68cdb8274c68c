//! Browser sessions: sign-in with user name, password and PIN (as OSCAR's login page asks),
//! kept in MariaDB so that any instance serves any browser and restarting one signs nobody out.
//!
//! The cookie is OSCAR's `JSESSIONID`, so that integrators' scripts that scrape it keep
//! working. Its value is 32 random bytes; the database holds only their SHA-256.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use mysql_async::prelude::Queryable;
use rand::RngCore as _;
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::db::DbError;
use crate::html::{self, escape};
use crate::login::{self, CheckError};
use crate::principal::{Principal, Via};
use crate::soap::client_ip;

pub const COOKIE: &str = "JSESSIONID";

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    /// The anti-forgery token forms of this session carry.
    pub csrf: String,
}

pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn id_hash(cookie: &str) -> Vec<u8> {
    Sha256::digest(cookie.as_bytes()).to_vec()
}

/// The session cookie's value, if the request carries one of the right shape.
pub fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
        .filter(|v| {
            v.len() == 43
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Whether the browser reached the box over HTTPS (through the proxy), so cookies are `Secure`.
pub fn is_https(peer: SocketAddr, headers: &HeaderMap) -> bool {
    peer.ip().is_loopback()
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// Whether a state-changing request may come from where the browser says it comes from. A
/// browser names the page that sent a request (`Sec-Fetch-Site`, `Origin`); a request sent by
/// another site is refused, since a cookie alone cannot tell it from the user's own (cookies
/// are `SameSite=Lax`, which does not cover other ports or names of the same site). Clients
/// that are not browsers send neither header and are not affected.
pub fn same_origin(peer: SocketAddr, headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = header("origin") else {
        return true;
    };
    let Ok(origin) = url::Url::parse(origin) else {
        return false;
    };
    let host = peer
        .ip()
        .is_loopback()
        .then(|| header("x-forwarded-host"))
        .flatten()
        .or_else(|| header("host"));
    let Some(host) = host else {
        return false;
    };
    let origin_host = match (origin.host_str(), origin.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => return false,
    };
    origin_host.eq_ignore_ascii_case(host)
}

/// The answer to a request refused by [`same_origin`].
pub fn cross_site() -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain;charset=UTF-8")],
        "cross-site request refused: send it from OSCAR's own pages",
    )
        .into_response()
}

/// The session of this request, if it is live; touches it (at most once a minute).
pub async fn lookup(
    state: &AppState,
    headers: &HeaderMap,
    ip: &str,
) -> Result<Option<Session>, DbError> {
    let Some(cookie) = cookie_value(headers) else {
        return Ok(None);
    };
    let hash = id_hash(cookie);
    let idle = state.config.emr.session_idle_timeout.as_secs();
    let mut conn = state.db.conn().await?;
    // The account must still be usable: an expired account's sessions end with it.
    let row: Option<(i32, Option<String>, String, i64)> = conn
        .exec_first(
            "SELECT s.security_no, s.provider_no, s.csrf, TIMESTAMPDIFF(SECOND, s.last_seen, NOW())
             FROM oscarbox_session s JOIN security a ON a.security_no = s.security_no
             WHERE s.id_hash = ? AND s.expires > NOW()
               AND s.last_seen > NOW() - INTERVAL ? SECOND
               AND (a.date_ExpireDate IS NULL OR a.date_ExpireDate >= CURDATE())",
            (&hash, idle),
        )
        .await?;
    let Some((security_no, provider_no, csrf, since)) = row else {
        return Ok(None);
    };
    if since >= 60 {
        conn.exec_drop(
            "UPDATE oscarbox_session SET last_seen = NOW() WHERE id_hash = ?",
            (&hash,),
        )
        .await?;
    }
    Ok(Some(Session {
        principal: Principal {
            security_no: Some(security_no),
            provider_no,
            via: Via::Session,
            ip: ip.to_owned(),
        },
        csrf,
    }))
}

/// Starts a session for a signed-in account; returns the cookie's value and the session.
pub async fn create(
    state: &AppState,
    account: &login::Account,
    ip: &str,
) -> Result<(String, Session), DbError> {
    let cookie = random_token();
    let csrf = random_token();
    let max_age = state.config.emr.session_max_age.as_secs();
    let mut conn = state.db.conn().await?;
    conn.exec_drop(
        "INSERT INTO oscarbox_session (id_hash, security_no, provider_no, csrf, ip, created, last_seen, expires)
         VALUES (?, ?, ?, ?, ?, NOW(), NOW(), NOW() + INTERVAL ? SECOND)",
        (
            id_hash(&cookie),
            account.security_no,
            &account.provider_no,
            &csrf,
            ip,
            max_age,
        ),
    )
    .await?;
    let session = Session {
        principal: Principal {
            security_no: Some(account.security_no),
            provider_no: account.provider_no.clone(),
            via: Via::Session,
            ip: ip.to_owned(),
        },
        csrf,
    };
    Ok((cookie, session))
}

/// The `Set-Cookie` value for a new session (or, with an empty value, one that ends it).
pub fn set_cookie(value: &str, secure: bool, max_age_secs: u64) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let v =
        format!("{COOKIE}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; SameSite=Lax{secure}");
    HeaderValue::from_str(&v).expect("a session cookie is visible ASCII")
}

/// Signs in from a form's `username`, `password` and `pin`: the session and its cookie, or
/// `None` when refused (for any reason, indistinguishably).
pub async fn sign_in(
    state: &AppState,
    fields: &[(String, String)],
    ip: &str,
) -> Result<Option<(String, Session)>, CheckError> {
    let (Some(user), Some(password)) = (
        html::field(fields, "username"),
        html::field(fields, "password"),
    ) else {
        return Ok(None);
    };
    let pin = html::field(fields, "pin").unwrap_or("");
    let Some(account) = login::authenticate(state, user, password, Some(pin)).await? else {
        login::audit(state, None, "LOGIN_FAILURE", ip).await;
        return Ok(None);
    };
    login::audit(state, account.provider_no.as_deref(), "login", ip).await;
    Ok(Some(create(state, &account, ip).await?))
}

/// The sign-in fields, for the sign-in page and the OAuth consent page.
pub const CREDENTIAL_FIELDS: &str = "<label>User name <input name=\"username\" autocomplete=\"username\" required></label>\
<label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
<label>PIN <input name=\"pin\" type=\"password\" inputmode=\"numeric\" autocomplete=\"off\"></label>";

fn login_page(status: StatusCode, message: Option<&str>) -> Response {
    let message = message
        .map(|m| format!("<p class=\"error\">{}</p>", escape(m)))
        .unwrap_or_default();
    html::page(
        status,
        "OSCAR sign-in",
        &format!("<h1>Sign in</h1>{message}<form method=\"post\" action=\"login.do\">{CREDENTIAL_FIELDS}<button type=\"submit\">Sign in</button></form>"),
    )
}

/// `GET /login.do`: the sign-in form.
pub async fn login_form() -> Response {
    login_page(StatusCode::OK, None)
}

/// `POST /login.do`: signs in and sets the session cookie.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !same_origin(peer, &headers) {
        return cross_site();
    }
    let ip = client_ip(peer, &headers);
    let fields = html::form_fields(&body);
    match sign_in(&state, &fields, &ip).await {
        Ok(Some((cookie, _))) => {
            let max_age = state.config.emr.session_max_age.as_secs();
            let mut resp = html::page(
                StatusCode::OK,
                "Signed in",
                "<h1>Signed in</h1><p>You are signed in to OSCAR.</p>",
            );
            resp.headers_mut().insert(
                header::SET_COOKIE,
                set_cookie(&cookie, is_https(peer, &headers), max_age),
            );
            resp
        }
        Ok(None) => login_page(
            StatusCode::UNAUTHORIZED,
            Some(
                "The user name, password or PIN is not right, or the account is locked or expired.",
            ),
        ),
        Err(e) => {
            tracing::error!("failed to check a browser sign-in: {e}");
            login_page(
                StatusCode::SERVICE_UNAVAILABLE,
                Some("Signing in is not possible just now; try again in a minute."),
            )
        }
    }
}

/// `POST /logout.do`: ends the session here and on every instance.
pub async fn logout(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if !same_origin(peer, &headers) {
        return cross_site();
    }
    if let Some(cookie) = cookie_value(&headers) {
        let result = async {
            let mut conn = state.db.conn().await?;
            conn.exec_drop(
                "DELETE FROM oscarbox_session WHERE id_hash = ?",
                (id_hash(cookie),),
            )
            .await?;
            Ok::<_, DbError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::error!("failed to end a session: {e}");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    let mut resp = html::page(StatusCode::OK, "Signed out", "<h1>Signed out</h1>");
    resp.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie("", is_https(peer, &headers), 0),
    );
    resp
}

/// `/ws/rs/*`: the browser's REST root, open only to a signed-in browser. Without a session,
/// OSCAR's `AuthenticationInInterceptor` answer: 401, `text/xml`, `<error>Not authorized</error>`.
pub async fn require(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && !same_origin(peer, req.headers()) {
        return cross_site();
    }
    let ip = client_ip(peer, req.headers());
    match lookup(&state, req.headers(), &ip).await {
        Ok(Some(session)) => {
            req.extensions_mut().insert(session.principal);
            next.run(req).await
        }
        Ok(None) => (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/xml")],
            "<error>Not authorized</error>",
        )
            .into_response(),
        Err(e) => {
            tracing::error!("failed to look up a session: {e}");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// Removes sessions that ended; run now and then by each instance (any one suffices).
pub async fn purge(state: &AppState) -> Result<u64, DbError> {
    let idle = state.config.emr.session_idle_timeout.as_secs();
    let mut conn = state.db.conn().await?;
    conn.exec_drop(
        "DELETE FROM oscarbox_session WHERE expires < NOW() OR last_seen < NOW() - INTERVAL ? SECOND LIMIT 10000",
        (idle,),
    )
    .await?;
    Ok(conn.affected_rows())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cross_site_requests_are_told_from_same_origin_ones() {
        let lan: SocketAddr = "192.0.2.7:5000".parse().expect("addr");
        let proxy: SocketAddr = "127.0.0.1:5000".parse().expect("addr");
        assert!(same_origin(lan, &headers(&[])), "not a browser");
        assert!(same_origin(
            lan,
            &headers(&[("sec-fetch-site", "same-origin")])
        ));
        assert!(!same_origin(
            lan,
            &headers(&[("sec-fetch-site", "cross-site")])
        ));
        assert!(!same_origin(
            lan,
            &headers(&[("sec-fetch-site", "same-site")])
        ));
        assert!(same_origin(
            lan,
            &headers(&[
                ("host", "box.local:8443"),
                ("origin", "https://box.local:8443")
            ])
        ));
        assert!(!same_origin(
            lan,
            &headers(&[
                ("host", "box.local:8443"),
                ("origin", "https://box.local:9443")
            ])
        ));
        assert!(!same_origin(
            lan,
            &headers(&[("host", "box.local"), ("origin", "null")])
        ));
        assert!(same_origin(
            proxy,
            &headers(&[
                ("host", "127.0.0.1:8081"),
                ("x-forwarded-host", "box.local"),
                ("origin", "https://box.local")
            ])
        ));
        assert!(
            !same_origin(
                lan,
                &headers(&[
                    ("host", "127.0.0.1:8081"),
                    ("x-forwarded-host", "box.local"),
                    ("origin", "https://box.local")
                ])
            ),
            "forwarded headers count only from the proxy"
        );
    }
}
