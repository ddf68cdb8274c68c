//! OAuth 1.0a for `/ws/services/`, as OSCAR 19 serves it through CXF (reference §2.3): the
//! three-legged handshake at `/ws/oauth/initiate`, `/ws/oauth/authorize` (a consent page for
//! the signed-in user) and `/ws/oauth/token`, and the check of every protected request.
//!
//! Clients, request tokens and access tokens live in OSCAR's own tables (`ServiceClient`,
//! `ServiceRequestToken`, `ServiceAccessToken`), so an imported OSCAR keeps its integrations.
//! Nonces are remembered in the database for as long as their timestamp could pass, so a replay
//! is refused by every instance, not only the one that saw the original.

pub mod clients;
pub mod signature;

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, OriginalUri, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt as _;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, TxOpts};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use self::signature::{Freshness, OAuthError, OAuthParams};
use crate::app::AppState;
use crate::db::DbError;
use crate::html::{self, escape};
use crate::principal::{Principal, Via};
use crate::session;
use crate::soap::client_ip;

/// How far a client's clock may be from ours. Nonces are kept twice this long.
pub const FRESHNESS: Freshness = Freshness { max_skew_secs: 300 };
/// Request tokens older than this are refused (OSCAR's `getRequestToken` deletes them).
const REQUEST_TOKEN_LIFETIME_SECS: i64 = 3600;
/// The largest form body read for its OAuth parameters.
const MAX_FORM: usize = signature::MAX_FORM_LEN;

/// A registered client (`ServiceClient`).
#[derive(Debug, Clone)]
pub struct Client {
    pub id: i32,
    pub name: String,
    pub key: String,
    pub secret: String,
    pub uri: Option<String>,
    /// Seconds an access token lasts; -1 never expires (CXF's convention).
    pub lifetime: i64,
}

/// Why a signed request was refused, with OSCAR/Open-O's plain-text problem word.
#[derive(Debug)]
enum Refusal {
    Protocol(OAuthError),
    Unauthenticated,
    InvalidConsumer,
    InvalidToken,
    TokenExpired,
    InvalidSignature,
    NonceUsed,
    InvalidVerifier,
    InvalidCallback,
    Db(DbError),
}

impl From<DbError> for Refusal {
    fn from(e: DbError) -> Self {
        Refusal::Db(e)
    }
}

impl From<mysql_async::Error> for Refusal {
    fn from(e: mysql_async::Error) -> Self {
        Refusal::Db(DbError::Sql(e))
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, word) = match &self {
            Refusal::Protocol(e) if e.is_bad_request() => (StatusCode::BAD_REQUEST, e.problem()),
            Refusal::Protocol(e) => (StatusCode::UNAUTHORIZED, e.problem()),
            Refusal::Unauthenticated => (StatusCode::UNAUTHORIZED, "parameter_absent"),
            Refusal::InvalidConsumer => (StatusCode::UNAUTHORIZED, "invalid_consumer"),
            Refusal::InvalidToken => (StatusCode::UNAUTHORIZED, "invalid_request_token"),
            Refusal::TokenExpired => (StatusCode::UNAUTHORIZED, "token_expired"),
            Refusal::InvalidSignature => (StatusCode::UNAUTHORIZED, "invalid_signature"),
            Refusal::NonceUsed => (StatusCode::UNAUTHORIZED, "nonce_used"),
            Refusal::InvalidVerifier => (StatusCode::UNAUTHORIZED, "invalid_verifier"),
            Refusal::InvalidCallback => (StatusCode::BAD_REQUEST, "parameter_rejected: oauth_callback must be \"oob\" or an absolute http(s) URL under the client's registered URI"),
            Refusal::Db(e) => {
                tracing::error!("failed to check an OAuth request: {e}");
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
        };
        (
            status,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain;charset=UTF-8"),
                ),
                (
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("OAuth realm=\"OSCAR\""),
                ),
            ],
            word.to_owned(),
        )
            .into_response()
    }
}

/// What the request's token must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    /// `initiate`: no token yet.
    None,
    /// `token`: the authorized request token.
    Request,
    /// A protected resource: an access token.
    Access,
}

/// A request whose signature, timestamp and nonce have been checked.
#[derive(Debug)]
struct Signed {
    client: Client,
    params: OAuthParams,
    /// The token's row, for `Request` and `Access`.
    token: Option<TokenRow>,
}

#[derive(Debug)]
struct TokenRow {
    id: i32,
    verifier: Option<String>,
    provider_no: Option<String>,
}

async fn client_by_key(conn: &mut Conn, key: &str) -> Result<Option<Client>, DbError> {
    let row: Option<(i32, String, String, String, Option<String>, Option<i64>)> = conn
        .exec_first(
            "SELECT id, name, clientKey, clientSecret, uri, lifetime FROM ServiceClient WHERE clientKey = ? LIMIT 1",
            (key,),
        )
        .await?;
    Ok(row.map(|(id, name, key, secret, uri, lifetime)| Client {
        id,
        name,
        key,
        secret,
        uri,
        lifetime: lifetime.unwrap_or(0),
    }))
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        })
}

/// Checks a signed request: client, token, signature, then timestamp and nonce (after the
/// signature, so that nobody but the client can use up its nonces).
#[expect(clippy::too_many_arguments, reason = "the parts of one HTTP request")]
async fn check_signed(
    state: &AppState,
    kind: TokenKind,
    method: &Method,
    peer: SocketAddr,
    headers: &HeaderMap,
    path: &str,
    query: Option<&str>,
    form: Option<&[u8]>,
) -> Result<Signed, Refusal> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let (params, all) =
        OAuthParams::from_request(authorization, query, form).map_err(Refusal::Protocol)?;
    let mut conn = state.db.conn().await?;
    let Some(client) = client_by_key(&mut conn, &params.consumer_key).await? else {
        return Err(Refusal::InvalidConsumer);
    };
    let (token_secret, token) = match kind {
        TokenKind::None => (String::new(), None),
        TokenKind::Request => {
            let Some(id) = params.token.as_deref() else {
                return Err(Refusal::InvalidToken);
            };
            let row: Option<(i32, String, Option<String>, Option<String>, i64)> = conn
                .exec_first(
                    "SELECT id, tokenSecret, verifier, providerNo, TIMESTAMPDIFF(SECOND, dateCreated, NOW())
                     FROM ServiceRequestToken WHERE tokenId = ? AND clientId = ?",
                    (id, client.id),
                )
                .await?;
            let Some((id, secret, verifier, provider_no, age)) = row else {
                return Err(Refusal::InvalidToken);
            };
            if age > REQUEST_TOKEN_LIFETIME_SECS {
                return Err(Refusal::TokenExpired);
            }
            (
                secret,
                Some(TokenRow {
                    id,
                    verifier,
                    provider_no,
                }),
            )
        }
        TokenKind::Access => {
            let Some(id) = params.token.as_deref() else {
                return Err(Refusal::InvalidToken);
            };
            // The token acts for a provider: it is good only while a usable account of that
            // provider exists, so expiring the account ends its applications' access too.
            let row: Option<(i32, String, i64, i64, Option<String>, i64, i64)> = conn
                .exec_first(
                    "SELECT t.id, t.tokenSecret, t.lifetime, t.issued, t.providerNo, UNIX_TIMESTAMP(),
                            EXISTS (SELECT 1 FROM security s JOIN provider p ON p.provider_no = s.provider_no
                                    WHERE s.provider_no = t.providerNo AND p.status = '1'
                                      AND (s.date_ExpireDate IS NULL OR s.date_ExpireDate >= CURDATE()))
                     FROM ServiceAccessToken t WHERE t.tokenId = ? AND t.clientId = ?",
                    (id, client.id),
                )
                .await?;
            let Some((id, secret, lifetime, issued, provider_no, now, usable)) = row else {
                return Err(Refusal::InvalidToken);
            };
            if usable == 0 {
                return Err(Refusal::TokenExpired);
            }
            // CXF's `OAuthUtils.isExpired`: -1 lives forever, anything else from `issued`.
            if lifetime != -1 && issued.saturating_add(lifetime) < now {
                return Err(Refusal::TokenExpired);
            }
            (
                secret,
                Some(TokenRow {
                    id,
                    verifier: None,
                    provider_no,
                }),
            )
        }
    };
    let base_uri = crate::wsdl::location(peer, headers, path);
    if !signature::verify(
        &params,
        &all,
        method.as_str(),
        &base_uri,
        &client.secret,
        &token_secret,
    ) {
        return Err(Refusal::InvalidSignature);
    }
    let now = u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0);
    FRESHNESS
        .check(params.timestamp, now)
        .map_err(Refusal::Protocol)?;
    let nonce = Sha256::new()
        .chain_update(client.key.as_bytes())
        .chain_update([0])
        .chain_update(params.nonce.as_bytes())
        .chain_update([0])
        .chain_update(params.timestamp.to_string().as_bytes())
        .finalize()
        .to_vec();
    conn.exec_drop(
        "INSERT IGNORE INTO oscarbox_oauth_nonce (nonce_hash, expires) VALUES (?, NOW() + INTERVAL ? SECOND)",
        (nonce, FRESHNESS.nonce_retention_secs()),
    )
    .await?;
    if conn.affected_rows() == 0 {
        return Err(Refusal::NonceUsed);
    }
    Ok(Signed {
        client,
        params,
        token,
    })
}

/// [`check_signed`] for a handshake endpoint, whose parameters may come in a form body.
async fn check_handshake(
    state: &AppState,
    kind: TokenKind,
    peer: SocketAddr,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Signed, Refusal> {
    let form = is_form(headers).then_some(&body[..]);
    check_signed(
        state,
        kind,
        method,
        peer,
        headers,
        uri.path(),
        uri.query(),
        form,
    )
    .await
}

fn form_response(pairs: &[(&str, &str)]) -> Response {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/x-www-form-urlencoded"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// Whether `callback` may receive this client's verifiers: `oob`, or an absolute http(s) URL
/// on the client's registered origin (scheme, host and port exactly) and under its path, when
/// it registered one. Compared parsed, not as text: `https://app.example@evil.example/` and
/// `https://app.example.evil.example/` start with `https://app.example` too.
fn callback_allowed(client: &Client, callback: &str) -> bool {
    if callback == "oob" {
        return true;
    }
    if callback.len() > 255 {
        return false;
    }
    let Some(cb) = http_url(callback) else {
        return false;
    };
    match client.uri.as_deref().filter(|u| !u.is_empty()) {
        Some(registered) => http_url(registered).is_some_and(|reg| {
            let base = reg.path().trim_end_matches('/');
            cb.origin() == reg.origin()
                && (cb.path() == base
                    || cb
                        .path()
                        .strip_prefix(base)
                        .is_some_and(|rest| rest.starts_with('/')))
        }),
        None => true,
    }
}

/// An absolute http(s) URL without credentials, or `None`.
pub fn http_url(text: &str) -> Option<url::Url> {
    let u = url::Url::parse(text).ok()?;
    let ok = matches!(u.scheme(), "http" | "https")
        && u.host().is_some()
        && u.username().is_empty()
        && u.password().is_none();
    ok.then_some(u)
}

/// `GET|POST /ws/oauth/initiate`: a request token for a client.
pub async fn initiate(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signed = match check_handshake(
        &state,
        TokenKind::None,
        peer,
        &method,
        &uri,
        &headers,
        &body,
    )
    .await
    {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let Some(callback) = signed
        .params
        .callback
        .as_deref()
        .filter(|c| callback_allowed(&signed.client, c))
    else {
        return Refusal::InvalidCallback.into_response();
    };
    let token = session::random_token();
    let secret = session::random_token();
    let result = async {
        let mut conn = state.db.conn().await?;
        conn.exec_drop(
            "DELETE FROM ServiceRequestToken WHERE dateCreated < NOW() - INTERVAL ? SECOND",
            (REQUEST_TOKEN_LIFETIME_SECS,),
        )
        .await?;
        conn.exec_drop(
            "INSERT INTO ServiceRequestToken (clientId, tokenId, tokenSecret, callback, dateCreated) VALUES (?, ?, ?, ?, NOW())",
            (signed.client.id, &token, &secret, callback),
        )
        .await?;
        Ok::<_, DbError>(())
    }
    .await;
    if let Err(e) = result {
        return Refusal::Db(e).into_response();
    }
    form_response(&[
        ("oauth_token", &token),
        ("oauth_token_secret", &secret),
        ("oauth_callback_confirmed", "true"),
    ])
}

/// A pending request token, as the consent page needs it.
#[derive(Debug)]
struct Pending {
    id: i32,
    client_id: i32,
    secret: String,
    callback: String,
    client_name: String,
}

async fn pending(state: &AppState, token: &str) -> Result<Option<Pending>, DbError> {
    let mut conn = state.db.conn().await?;
    let row: Option<(i32, i32, String, String, String)> = conn
        .exec_first(
            "SELECT t.id, c.id, t.tokenSecret, t.callback, c.name
             FROM ServiceRequestToken t JOIN ServiceClient c ON c.id = t.clientId
             WHERE t.tokenId = ? AND t.verifier IS NULL
               AND t.dateCreated > NOW() - INTERVAL ? SECOND",
            (token, REQUEST_TOKEN_LIFETIME_SECS),
        )
        .await?;
    Ok(
        row.map(|(id, client_id, secret, callback, client_name)| Pending {
            id,
            client_id,
            secret,
            callback,
            client_name,
        }),
    )
}

/// The anti-forgery value of a consent form shown to someone not yet signed in: derived from
/// the request token's secret, which only this server and the client know. The credentials
/// the form also carries are what protect it.
fn anonymous_authenticity(p: &Pending) -> String {
    Sha256::new()
        .chain_update(b"oscarbox authorize\0")
        .chain_update(p.secret.as_bytes())
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn consent_page(
    status: StatusCode,
    action: &str,
    token: &str,
    p: &Pending,
    session: Option<&session::Session>,
    error: Option<&str>,
) -> Response {
    let (authenticity, credentials, who) = match session {
        Some(s) => (
            s.csrf.clone(),
            String::new(),
            format!(
                "<p>You are signed in as provider {}.</p>",
                escape(s.principal.provider_no.as_deref().unwrap_or("(none)"))
            ),
        ),
        None => (
            anonymous_authenticity(p),
            session::CREDENTIAL_FIELDS.to_owned(),
            "<p>Sign in to decide.</p>".to_owned(),
        ),
    };
    let error = error
        .map(|m| format!("<p class=\"error\">{}</p>", escape(m)))
        .unwrap_or_default();
    html::page(
        status,
        "Allow access to OSCAR",
        &format!(
            "<h1>Allow access?</h1>{error}<p>The application <strong>{client}</strong> asks to read and change patient records in OSCAR on your behalf.</p>{who}\
             <form method=\"post\" action=\"{action}\">\
             <input type=\"hidden\" name=\"oauth_token\" value=\"{token}\">\
             <input type=\"hidden\" name=\"session_authenticity_token\" value=\"{authenticity}\">{credentials}\
             <button type=\"submit\" name=\"oauthDecision\" value=\"allow\">Allow</button> \
             <button type=\"submit\" name=\"oauthDecision\" value=\"deny\">Deny</button></form>",
            client = escape(&p.client_name),
            action = escape(action),
            token = escape(token),
        ),
    )
}

fn invalid_link() -> Response {
    html::page(
        StatusCode::BAD_REQUEST,
        "Link not valid",
        "<h1>This link is not valid</h1><p>The authorization request is unknown, already decided, or older than an hour. Start again from the application.</p>",
    )
}

/// `GET /ws/oauth/authorize?oauth_token=`: the consent page (with sign-in fields when the
/// browser has no session).
pub async fn authorize(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let action = format!("{}/decision", uri.path().trim_end_matches('/'));
    let fields = html::form_fields(query.as_deref().unwrap_or("").as_bytes());
    let Some(token) = html::field(&fields, "oauth_token") else {
        return invalid_link();
    };
    let ip = client_ip(peer, &headers);
    let found = async {
        let p = pending(&state, token).await?;
        let s = session::lookup(&state, &headers, &ip).await?;
        Ok::<_, DbError>((p, s))
    }
    .await;
    match found {
        Ok((Some(p), s)) => consent_page(StatusCode::OK, &action, token, &p, s.as_ref(), None),
        Ok((None, _)) => invalid_link(),
        Err(e) => Refusal::Db(e).into_response(),
    }
}

fn redirect(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(v) => (StatusCode::FOUND, [(header::LOCATION, v)]).into_response(),
        Err(_) => invalid_link(),
    }
}

fn with_params(callback: &str, pairs: &[(&str, &str)]) -> String {
    let q = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let sep = if callback.contains('?') { '&' } else { '?' };
    format!("{callback}{sep}{q}")
}

/// `POST /ws/oauth/authorize/decision`: the user allows or denies; on allow, the browser goes
/// to the client's callback with `oauth_token` and `oauth_verifier` (or sees the verifier, for
/// an `oob` client).
pub async fn decision(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let action = uri.path().to_owned();
    if !session::same_origin(peer, &headers) {
        return session::cross_site();
    }
    let fields = html::form_fields(&body);
    let ip = client_ip(peer, &headers);
    let Some(token) = html::field(&fields, "oauth_token") else {
        return invalid_link();
    };
    let p = match pending(&state, token).await {
        Ok(Some(p)) => p,
        Ok(None) => return invalid_link(),
        Err(e) => return Refusal::Db(e).into_response(),
    };
    let given = html::field(&fields, "session_authenticity_token").unwrap_or("");
    let mut new_cookie = None;
    let principal = if html::field(&fields, "username").is_some() {
        if !bool::from(
            given
                .as_bytes()
                .ct_eq(anonymous_authenticity(&p).as_bytes()),
        ) {
            return consent_page(
                StatusCode::FORBIDDEN,
                &action,
                token,
                &p,
                None,
                Some("This form is out of date; try again."),
            );
        }
        match session::sign_in(&state, &fields, &ip).await {
            Ok(Some((cookie, s))) => {
                new_cookie = Some(cookie);
                s.principal
            }
            Ok(None) => {
                return consent_page(
                    StatusCode::UNAUTHORIZED,
                    &action,
                    token,
                    &p,
                    None,
                    Some("The user name, password or PIN is not right, or the account is locked or expired."),
                )
            }
            Err(e) => {
                tracing::error!("failed to check a sign-in on the consent page: {e}");
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
        }
    } else {
        match session::lookup(&state, &headers, &ip).await {
            Ok(Some(s)) if bool::from(given.as_bytes().ct_eq(s.csrf.as_bytes())) => s.principal,
            Ok(Some(s)) => {
                return consent_page(
                    StatusCode::FORBIDDEN,
                    &action,
                    token,
                    &p,
                    Some(&s),
                    Some("This form is out of date; try again."),
                )
            }
            Ok(None) => {
                return consent_page(
                    StatusCode::UNAUTHORIZED,
                    &action,
                    token,
                    &p,
                    None,
                    Some("Sign in to decide."),
                )
            }
            Err(e) => return Refusal::Db(e).into_response(),
        }
    };
    if principal.provider_no.is_none() {
        return consent_page(
            StatusCode::FORBIDDEN,
            &action,
            token,
            &p,
            None,
            Some("This account is not a provider's, so it cannot give an application access to records."),
        );
    }
    let allow = html::field(&fields, "oauthDecision") == Some("allow");
    let verifier = session::random_token();
    let result = async {
        let mut conn = state.db.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        if allow {
            tx.exec_drop(
                "UPDATE ServiceRequestToken SET verifier = ?, providerNo = ? WHERE id = ? AND verifier IS NULL",
                (&verifier, &principal.provider_no, p.id),
            )
            .await?;
        } else {
            tx.exec_drop("DELETE FROM ServiceRequestToken WHERE id = ?", (p.id,))
                .await?;
        }
        if tx.affected_rows() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        let mut entry = principal.audit(if allow { "oauth allow" } else { "oauth deny" }, "ServiceClient");
        entry.content_id = Some(p.client_id.to_string());
        crate::audit::write_in(&mut tx, entry).await?;
        tx.commit().await?;
        Ok::<_, Refusal>(true)
    }
    .await;
    let mut resp = match result {
        Ok(false) => invalid_link(),
        Ok(true) if p.callback == "oob" => {
            if allow {
                html::page(
                    StatusCode::OK,
                    "Access allowed",
                    &format!("<h1>Access allowed</h1><p>Give this code to the application:</p><p><code id=\"verifier\">{}</code></p>", escape(&verifier)),
                )
            } else {
                html::page(StatusCode::OK, "Access denied", "<h1>Access denied</h1>")
            }
        }
        Ok(true) if allow => redirect(&with_params(
            &p.callback,
            &[("oauth_token", token), ("oauth_verifier", &verifier)],
        )),
        Ok(true) => redirect(&with_params(
            &p.callback,
            &[("oauth_token", token), ("oauth_problem", "user_refused")],
        )),
        Err(r) => r.into_response(),
    };
    if let Some(cookie) = new_cookie {
        let max_age = state.config.emr.session_max_age.as_secs();
        resp.headers_mut().insert(
            header::SET_COOKIE,
            session::set_cookie(&cookie, session::is_https(peer, &headers), max_age),
        );
    }
    resp
}

/// `GET|POST /ws/oauth/token`: exchanges an authorized request token and its verifier for an
/// access token. A successful exchange uses the request token up; a wrong verifier does not
/// (the signature already proved the client, and the verifier is 256 random bits).
pub async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let signed = match check_handshake(
        &state,
        TokenKind::Request,
        peer,
        &method,
        &uri,
        &headers,
        &body,
    )
    .await
    {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let row = signed.token.expect("a request-token check yields its row");
    let matches = match (&row.verifier, &signed.params.verifier) {
        (Some(stored), Some(given)) => bool::from(stored.as_bytes().ct_eq(given.as_bytes())),
        _ => false,
    };
    if !matches {
        return Refusal::InvalidVerifier.into_response();
    }
    let token = session::random_token();
    let secret = session::random_token();
    let result = async {
        let mut conn = state.db.conn().await?;
        let mut tx = conn.start_transaction(TxOpts::default()).await?;
        tx.exec_drop("DELETE FROM ServiceRequestToken WHERE id = ?", (row.id,))
            .await?;
        if tx.affected_rows() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.exec_drop(
            "INSERT INTO ServiceAccessToken (clientId, tokenId, tokenSecret, lifetime, issued, providerNo, dateCreated)
             VALUES (?, ?, ?, ?, UNIX_TIMESTAMP(), ?, NOW())",
            (signed.client.id, &token, &secret, signed.client.lifetime, &row.provider_no),
        )
        .await?;
        tx.commit().await?;
        Ok::<_, Refusal>(true)
    }
    .await;
    match result {
        Ok(true) => form_response(&[("oauth_token", &token), ("oauth_token_secret", &secret)]),
        Ok(false) => Refusal::InvalidToken.into_response(),
        Err(r) => r.into_response(),
    }
}

/// `/ws/services/*`: every request carries an OAuth signature with an access token; the
/// token's provider is who the request acts for.
pub async fn require(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    // No credentials at all is "authentication required" (401), not a malformed request.
    let bare = !parts.headers.contains_key(header::AUTHORIZATION)
        && !parts.uri.query().unwrap_or("").contains("oauth_")
        && !is_form(&parts.headers);
    if bare {
        return Refusal::Unauthenticated.into_response();
    }
    let path = parts
        .extensions
        .get::<OriginalUri>()
        .map_or_else(|| parts.uri.clone(), |o| o.0.clone());
    // Only a form body is signed (RFC 5849 §3.4.1.3.1); any other body streams on untouched.
    let (form, body) = if is_form(&parts.headers) {
        match http_body_util::Limited::new(body, MAX_FORM).collect().await {
            Ok(c) => {
                let bytes = c.to_bytes();
                (Some(bytes.clone()), Body::from(bytes))
            }
            Err(_) => {
                return (StatusCode::PAYLOAD_TOO_LARGE, "form body too large").into_response()
            }
        }
    } else {
        (None, body)
    };
    let signed = check_signed(
        &state,
        TokenKind::Access,
        &parts.method,
        peer,
        &parts.headers,
        path.path(),
        path.query(),
        form.as_deref(),
    )
    .await;
    match signed {
        Ok(s) => {
            let provider_no = s.token.and_then(|t| t.provider_no);
            parts.extensions.insert(Principal {
                security_no: None,
                provider_no,
                via: Via::OAuth,
                ip: client_ip(peer, &parts.headers),
            });
            next.run(Request::from_parts(parts, body)).await
        }
        Err(r) => r.into_response(),
    }
}

/// Removes nonces and request tokens that can no longer be used.
pub async fn purge(state: &AppState) -> Result<(), DbError> {
    let mut conn = state.db.conn().await?;
    conn.exec_drop(
        "DELETE FROM oscarbox_oauth_nonce WHERE expires < NOW() LIMIT 10000",
        (),
    )
    .await?;
    conn.exec_drop(
        "DELETE FROM ServiceRequestToken WHERE dateCreated < NOW() - INTERVAL ? SECOND LIMIT 10000",
        (REQUEST_TOKEN_LIFETIME_SECS,),
    )
    .await?;
    Ok(())
}
