//! Server-side OAuth 1.0a (RFC 5849) request verification with HMAC-SHA1, pure and clock-free.
//!
//! No well-kept Rust crate verifies OAuth 1 signatures on the server side, so the parts of
//! RFC 5849 a service provider needs are written here by hand.
//!
//! The module does no I/O and never reads a clock: the caller passes the current time in Unix
//! seconds, which keeps every decision testable. Verifying one request goes:
//!
//! 1. [`OAuthParams::from_request`] collects the protocol parameters and the list of parameters
//!    that are signed, from the `Authorization` header (§3.5.1), the query string (§3.5.3) and an
//!    `application/x-www-form-urlencoded` body (§3.5.2);
//! 2. [`Freshness::check`] refuses a timestamp too far from the server clock;
//! 3. the caller looks up the consumer secret and token secret, and checks the nonce was not seen
//!    before for that consumer key, timestamp and token. A nonce need only be remembered for
//!    `2 × max_skew_secs` ([`Freshness::nonce_retention_secs`]): a replay later than that carries
//!    a timestamp that step 2 refuses on its own;
//! 4. [`verify`] recomputes the signature and compares it in constant time.
//!
//! Every refusal is an [`OAuthError`], which knows its OAuth Problem Reporting word
//! ([`OAuthError::problem`]) and whether it is a 400 or a 401 (§3.2), so the HTTP layer can answer
//! the way OSCAR's clients expect.

use std::collections::BTreeSet;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// The only signature method accepted: PLAINTEXT sends the secrets in the clear, and RSA-SHA1
/// needs a public key registered for each client, which this server does not keep.
pub const HMAC_SHA1: &str = "HMAC-SHA1";

/// The most parameters (query, form body and header together) one request may carry.
///
/// Everything here runs before the client is authenticated, so the work it costs (decoding,
/// sorting, hashing) must be bounded; OSCAR's web services take a handful of parameters.
pub const MAX_PARAMS: usize = 128;

/// The longest `Authorization` header accepted, in bytes.
pub const MAX_HEADER_LEN: usize = 8 * 1024;

/// The longest query string accepted, in bytes.
pub const MAX_QUERY_LEN: usize = 16 * 1024;

/// The longest form body accepted, in bytes; a body is signed only when it is form-encoded.
pub const MAX_FORM_LEN: usize = 1024 * 1024;

/// The `Authorization` scheme name, matched without regard to case as HTTP auth schemes are.
const SCHEME: &str = "OAuth";

const HEADER: &str = "authorization header";
const QUERY: &str = "query string";
const FORM_BODY: &str = "form body";

/// RFC 5849 §3.6: everything but ALPHA, DIGIT, `-`, `.`, `_` and `~` is percent-encoded, with
/// upper-case hex digits.
const ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why a request's OAuth parameters or signature were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// The header, query string or body could not be parsed.
    #[error("malformed {place}: {reason}")]
    Malformed {
        place: &'static str,
        reason: &'static str,
    },
    /// The header, query string or body is longer than this module reads.
    #[error("{place} is longer than {limit} bytes")]
    TooLarge { place: &'static str, limit: usize },
    /// The request carries more than [`MAX_PARAMS`] parameters.
    #[error("the request carries more than {limit} parameters")]
    TooManyParameters { limit: usize },
    /// A required protocol parameter is missing or empty.
    #[error("the request has no {0} parameter")]
    ParameterAbsent(&'static str),
    /// An `oauth_*` parameter appears more than once, across all places (§3.2).
    #[error("oauth parameter {0:?} is given more than once")]
    DuplicateParameter(String),
    /// `oauth_timestamp` is not a whole number of seconds.
    #[error("oauth_timestamp is not a whole number of seconds")]
    InvalidTimestamp,
    /// `oauth_signature_method` is not `HMAC-SHA1`.
    #[error("signature method {0:?} is not supported, only HMAC-SHA1 is")]
    SignatureMethodRejected(String),
    /// `oauth_version` is present and not `1.0`.
    #[error("oauth_version {0:?} is not supported, only 1.0 is")]
    VersionRejected(String),
    /// The timestamp is too far from the server clock.
    #[error(
        "timestamp {timestamp} is more than {max_skew_secs} seconds away from the server clock {now}"
    )]
    TimestampRefused {
        timestamp: u64,
        now: u64,
        max_skew_secs: u64,
    },
    /// The signature does not match the request; for callers of [`verify`].
    #[error("the signature does not match the request")]
    SignatureInvalid,
    /// The nonce was seen before with this timestamp; for the nonce store.
    #[error("the nonce was already used")]
    NonceUsed,
}

impl OAuthError {
    /// The OAuth Problem Reporting word (as OSCAR answers with `oauth_problem=...`).
    pub fn problem(&self) -> &'static str {
        match self {
            Self::Malformed { .. }
            | Self::TooLarge { .. }
            | Self::TooManyParameters { .. }
            | Self::DuplicateParameter(_)
            | Self::InvalidTimestamp => "parameter_rejected",
            Self::ParameterAbsent(_) => "parameter_absent",
            Self::SignatureMethodRejected(_) => "signature_method_rejected",
            Self::VersionRejected(_) => "version_rejected",
            Self::TimestampRefused { .. } => "timestamp_refused",
            Self::SignatureInvalid => "signature_invalid",
            Self::NonceUsed => "nonce_used",
        }
    }

    /// Whether to answer 400 rather than 401.
    ///
    /// RFC 5849 §3.2 gives 400 for a malformed, missing, duplicated or unsupported parameter or
    /// signature method, and 401 for a request that is well-formed but not authentic: a bad
    /// signature, or a timestamp and nonce that fail the replay checks.
    pub fn is_bad_request(&self) -> bool {
        !matches!(
            self,
            Self::TimestampRefused { .. } | Self::SignatureInvalid | Self::NonceUsed
        )
    }
}

/// The OAuth protocol parameters of one request, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthParams {
    pub consumer_key: String,
    /// `None` when absent or empty: two-legged clients send either.
    pub token: Option<String>,
    pub signature_method: String,
    pub signature: String,
    pub timestamp: u64,
    pub nonce: String,
    pub version: Option<String>,
    pub callback: Option<String>,
    pub verifier: Option<String>,
}

impl OAuthParams {
    /// Collects the protocol parameters from the `Authorization` header value, the query string
    /// (without its `?`) and the body, and returns them with the decoded list of parameters that
    /// go into the signature base string (§3.4.1.3.1).
    ///
    /// Pass `form_body` only when the body is a single-part `application/x-www-form-urlencoded`
    /// one, as §3.4.1.3.1 signs no other. The returned list holds every query and body parameter,
    /// and the header parameters except `realm`; `oauth_signature` is left out wherever it was.
    pub fn from_request(
        authorization_header: Option<&str>,
        query: Option<&str>,
        form_body: Option<&[u8]>,
    ) -> Result<(Self, Vec<(String, String)>), OAuthError> {
        let mut pairs = Vec::new();
        if let Some(query) = query {
            parse_form(query.as_bytes(), QUERY, MAX_QUERY_LEN, &mut pairs)?;
        }
        if let Some(body) = form_body {
            parse_form(body, FORM_BODY, MAX_FORM_LEN, &mut pairs)?;
        }
        if let Some(header) = authorization_header {
            parse_header(header, &mut pairs)?;
        }
        Self::from_pairs(pairs)
    }

    fn from_pairs(
        pairs: Vec<(String, String)>,
    ) -> Result<(Self, Vec<(String, String)>), OAuthError> {
        let mut seen = BTreeSet::new();
        let mut signed = Vec::with_capacity(pairs.len());
        let mut consumer_key = None;
        let mut token = None;
        let mut signature_method = None;
        let mut signature = None;
        let mut timestamp = None;
        let mut nonce = None;
        let mut version = None;
        let mut callback = None;
        let mut verifier = None;
        for (name, value) in pairs {
            if name.starts_with("oauth_") {
                if seen.contains(&name) {
                    return Err(OAuthError::DuplicateParameter(name));
                }
                seen.insert(name.clone());
                let slot = match name.as_str() {
                    "oauth_signature" => {
                        // The signature cannot sign itself (§3.4.1.3.1).
                        signature = Some(value);
                        continue;
                    }
                    "oauth_consumer_key" => &mut consumer_key,
                    "oauth_token" => &mut token,
                    "oauth_signature_method" => &mut signature_method,
                    "oauth_timestamp" => &mut timestamp,
                    "oauth_nonce" => &mut nonce,
                    "oauth_version" => &mut version,
                    "oauth_callback" => &mut callback,
                    "oauth_verifier" => &mut verifier,
                    // Extensions such as oauth_body_hash are signed like any other parameter.
                    _ => {
                        signed.push((name, value));
                        continue;
                    }
                };
                *slot = Some(value.clone());
            }
            signed.push((name, value));
        }

        let consumer_key = required(consumer_key, "oauth_consumer_key")?;
        let signature_method = required(signature_method, "oauth_signature_method")?;
        let signature = required(signature, "oauth_signature")?;
        let timestamp = required(timestamp, "oauth_timestamp")?;
        let nonce = required(nonce, "oauth_nonce")?;
        if signature_method != HMAC_SHA1 {
            return Err(OAuthError::SignatureMethodRejected(signature_method));
        }
        if let Some(version) = &version {
            if version != "1.0" {
                return Err(OAuthError::VersionRejected(version.clone()));
            }
        }
        // u64's FromStr takes a leading `+`, which no client sends and nothing should sign.
        if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
            return Err(OAuthError::InvalidTimestamp);
        }
        let timestamp = timestamp
            .parse()
            .map_err(|_| OAuthError::InvalidTimestamp)?;

        let params = Self {
            consumer_key,
            token: token.filter(|token| !token.is_empty()),
            signature_method,
            signature,
            timestamp,
            nonce,
            version,
            callback,
            verifier,
        };
        Ok((params, signed))
    }
}

/// An empty required parameter is as good as none: nothing can be looked up or checked by it.
fn required(value: Option<String>, name: &'static str) -> Result<String, OAuthError> {
    value
        .filter(|value| !value.is_empty())
        .ok_or(OAuthError::ParameterAbsent(name))
}

fn push(pairs: &mut Vec<(String, String)>, name: String, value: String) -> Result<(), OAuthError> {
    if pairs.len() >= MAX_PARAMS {
        return Err(OAuthError::TooManyParameters { limit: MAX_PARAMS });
    }
    pairs.push((name, value));
    Ok(())
}

/// Decodes `application/x-www-form-urlencoded` pairs (§3.4.1.3.1), where `+` is a space.
///
/// A `%` without two hex digits after it is refused rather than kept literally, as lenient
/// decoders do, because the client and this server could then disagree on what was signed.
fn parse_form(
    input: &[u8],
    place: &'static str,
    limit: usize,
    pairs: &mut Vec<(String, String)>,
) -> Result<(), OAuthError> {
    if input.len() > limit {
        return Err(OAuthError::TooLarge { place, limit });
    }
    let malformed = |reason| OAuthError::Malformed { place, reason };
    for part in input.split(|&b| b == b'&').filter(|part| !part.is_empty()) {
        let mut halves = part.splitn(2, |&b| b == b'=');
        let name = halves.next().unwrap_or_default();
        let value = halves.next().unwrap_or_default();
        let name = percent_decode(name, true).map_err(malformed)?;
        let value = percent_decode(value, true).map_err(malformed)?;
        push(pairs, name, value)?;
    }
    Ok(())
}

/// Parses an `Authorization: OAuth k="v", ...` header value (§3.5.1), dropping `realm`.
///
/// Values must be quoted; names and values are percent-decoded, except `realm`'s, which is an
/// HTTP quoted-string rather than an OAuth parameter. A backslash escapes the next character
/// as in any quoted-string. Commas and linear white space separate parameters, and empty list
/// elements are skipped as RFC 2616's `#rule` allows.
fn parse_header(header: &str, pairs: &mut Vec<(String, String)>) -> Result<(), OAuthError> {
    if header.len() > MAX_HEADER_LEN {
        return Err(OAuthError::TooLarge {
            place: HEADER,
            limit: MAX_HEADER_LEN,
        });
    }
    let malformed = |reason| OAuthError::Malformed {
        place: HEADER,
        reason,
    };
    let trimmed = header.trim_start_matches(SPACE);
    let rest = match trimmed.split_at_checked(SCHEME.len()) {
        Some((scheme, rest))
            if scheme.eq_ignore_ascii_case(SCHEME) && rest.bytes().next().is_none_or(is_space) =>
        {
            rest
        }
        _ => return Err(malformed("the scheme is not OAuth")),
    };

    let bytes = rest.as_bytes();
    let mut i = 0;
    loop {
        while bytes.get(i).is_some_and(|&b| b == b',' || is_space(b)) {
            i += 1;
        }
        if i >= bytes.len() {
            return Ok(());
        }

        let start = i;
        while bytes
            .get(i)
            .is_some_and(|&b| !matches!(b, b'=' | b',' | b'"') && !is_space(b))
        {
            i += 1;
        }
        let raw_name = bytes.get(start..i).unwrap_or_default();
        if raw_name.is_empty() {
            return Err(malformed("a parameter has no name"));
        }
        i = skip_space(bytes, i);
        if bytes.get(i) != Some(&b'=') {
            return Err(malformed("a parameter has no value"));
        }
        i = skip_space(bytes, i + 1);
        if bytes.get(i) != Some(&b'"') {
            return Err(malformed("a parameter value is not quoted"));
        }
        i += 1;

        let mut raw_value = Vec::new();
        loop {
            match bytes.get(i) {
                None => return Err(malformed("a quoted value is not closed")),
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(b'\\') => match bytes.get(i + 1) {
                    Some(&b) if !b.is_ascii_control() => {
                        raw_value.push(b);
                        i += 2;
                    }
                    _ => return Err(malformed("a backslash in a value escapes nothing")),
                },
                Some(&b) if b.is_ascii_control() => {
                    return Err(malformed("a value holds a control character"));
                }
                Some(&b) => {
                    raw_value.push(b);
                    i += 1;
                }
            }
        }
        i = skip_space(bytes, i);
        if bytes.get(i).is_some_and(|&b| b != b',') {
            return Err(malformed("parameters are not separated by commas"));
        }

        // §3.4.1.3.1 leaves realm out of the signature; it names a protection space, not a
        // parameter of the request.
        if raw_name.eq_ignore_ascii_case(b"realm") {
            continue;
        }
        let name = percent_decode(raw_name, false).map_err(malformed)?;
        let value = percent_decode(&raw_value, false).map_err(malformed)?;
        push(pairs, name, value)?;
    }
}

/// Linear white space between header parameters; CR and LF are taken too so that a folded
/// header passed through unchanged still parses.
const SPACE: [char; 4] = [' ', '\t', '\r', '\n'];

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn skip_space(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(|&b| is_space(b)) {
        i += 1;
    }
    i
}

/// Strict percent-decoding into UTF-8 (§3.6 encodes UTF-8 octets).
fn percent_decode(raw: &[u8], plus_is_space: bool) -> Result<String, &'static str> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'%' => {
                let high = raw.get(i + 1).and_then(|&h| hex_digit(h));
                let low = raw.get(i + 2).and_then(|&l| hex_digit(l));
                let (Some(high), Some(low)) = (high, low) else {
                    return Err("a % is not followed by two hex digits");
                };
                out.push(high << 4 | low);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "a name or value is not UTF-8 once percent-decoded")
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes per RFC 5849 §3.6: the UTF-8 octets of everything but ALPHA, DIGIT, `-`,
/// `.`, `_` and `~`, with upper-case hex.
pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, ENCODE_SET).to_string()
}

/// The signature base string (§3.4.1.1): the upper-cased method, the normalised base string URI
/// and the normalised parameters, each percent-encoded and joined with `&`.
///
/// `base_uri` is the request's scheme, host and path as the client addressed them (the `Host`
/// header, not a proxy's upstream address); a query or fragment in it is dropped, the
/// parameters being passed in `params`, decoded, exactly as [`OAuthParams::from_request`]
/// returns them.
pub fn base_string(method: &str, base_uri: &str, params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .map(|(name, value)| (percent_encode(name), percent_encode(value)))
        .collect();
    // §3.4.1.3.2: by encoded name, then encoded value, in byte order, which is how Rust orders
    // string tuples.
    encoded.sort_unstable();
    let normalised = encoded
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&");
    format!(
        "{}&{}&{}",
        percent_encode(&method.to_ascii_uppercase()),
        percent_encode(&normalise_base_uri(base_uri)),
        percent_encode(&normalised),
    )
}

/// Normalises a base string URI per §3.4.1.2: lower-case scheme and host, no default port, no
/// user information, query or fragment, and `/` for an empty path.
///
/// Something that is not an absolute URI is used as it is, less any query or fragment, so a
/// caller's mistake shows up as a signature mismatch rather than a panic.
fn normalise_base_uri(uri: &str) -> String {
    let uri = uri.split_once('#').map_or(uri, |(before, _)| before);
    let uri = uri.split_once('?').map_or(uri, |(before, _)| before);
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, ""),
    };
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host_port)| host_port);
    // The port is what follows the last colon, unless that colon is inside an IPv6 literal.
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (host, Some(port)),
        _ => (host_port, None),
    };
    let port = match (scheme.as_str(), port) {
        (_, Some("")) | ("http", Some("80")) | ("https", Some("443")) | (_, None) => None,
        (_, Some(port)) => Some(port),
    };
    let path = if path.is_empty() { "/" } else { path };
    let host = host.to_ascii_lowercase();
    match port {
        Some(port) => format!("{scheme}://{host}:{port}{path}"),
        None => format!("{scheme}://{host}{path}"),
    }
}

/// The HMAC-SHA1 signature of a base string (§3.4.2), base64-encoded, keyed by
/// `enc(consumer_secret)&enc(token_secret)`; pass an empty token secret when there is no token.
pub fn sign(base_string: &str, consumer_secret: &str, token_secret: &str) -> String {
    let key = format!(
        "{}&{}",
        percent_encode(consumer_secret),
        percent_encode(token_secret)
    );
    let mut mac =
        Hmac::<Sha1>::new_from_slice(key.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(base_string.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// Whether `params.signature` is the HMAC-SHA1 signature of the request, compared in constant
/// time so that timing does not reveal how much of a forged signature was right.
///
/// `all_params` is the list [`OAuthParams::from_request`] returned; `base_uri` is as for
/// [`base_string`]. A failed check is [`OAuthError::SignatureInvalid`] to the HTTP layer.
pub fn verify(
    params: &OAuthParams,
    all_params: &[(String, String)],
    method: &str,
    base_uri: &str,
    consumer_secret: &str,
    token_secret: &str,
) -> bool {
    if params.signature_method != HMAC_SHA1 {
        return false;
    }
    let expected = sign(
        &base_string(method, base_uri, all_params),
        consumer_secret,
        token_secret,
    );
    expected
        .as_bytes()
        .ct_eq(params.signature.as_bytes())
        .into()
}

/// How far a request's timestamp may be from the server clock, either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    pub max_skew_secs: u64,
}

impl Freshness {
    /// Refuses a timestamp more than `max_skew_secs` before or after `now` (both Unix seconds).
    pub fn check(&self, timestamp: u64, now: u64) -> Result<(), OAuthError> {
        let too_old = timestamp.saturating_add(self.max_skew_secs) < now;
        let too_new = timestamp > now.saturating_add(self.max_skew_secs);
        if too_old || too_new {
            return Err(OAuthError::TimestampRefused {
                timestamp,
                now,
                max_skew_secs: self.max_skew_secs,
            });
        }
        Ok(())
    }

    /// How long the nonce store must remember a nonce after first seeing it.
    ///
    /// A timestamp passes [`Freshness::check`] for a window of `2 × max_skew_secs` at most, so a
    /// nonce seen at any moment of that window cannot come back and pass after this long.
    pub fn nonce_retention_secs(&self) -> u64 {
        self.max_skew_secs.saturating_mul(2)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The request of RFC 5849 §3.4.1.1, with its header on one line as an HTTP server passes it.
    const RFC_HEADER: &str = "OAuth realm=\"Example\", \
        oauth_consumer_key=\"9djdj82h48djs9d2\", \
        oauth_token=\"kkk9d7dh3k39sjv7\", \
        oauth_signature_method=\"HMAC-SHA1\", \
        oauth_timestamp=\"137131201\", \
        oauth_nonce=\"7d8f3e4a\", \
        oauth_signature=\"bYT5CMsGcbgUdFHObYMEfcx6bsw%3D\"";

    const RFC_BASE_STRING: &str =
        "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q\
        %26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_\
        key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_m\
        ethod%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk\
        9d7dh3k39sjv7";

    /// The final request of RFC 5849 §1.2.
    const PHOTOS_HEADER: &str = "OAuth realm=\"Photos\",\r\n    \
        oauth_consumer_key=\"dpf43f3p2l4k3l03\",\r\n    \
        oauth_token=\"nnch734d00sl2jdk\",\r\n    \
        oauth_signature_method=\"HMAC-SHA1\",\r\n    \
        oauth_timestamp=\"137131202\",\r\n    \
        oauth_nonce=\"chapoH\",\r\n    \
        oauth_signature=\"MdpQcU8iPSUjWoN%2FUDMsK2sui9I%3D\"";

    fn header_only(header: &str) -> Result<(OAuthParams, Vec<(String, String)>), OAuthError> {
        OAuthParams::from_request(Some(header), None, None)
    }

    /// A valid header with the given extra text after the required parameters.
    fn minimal_header(extra: &str) -> String {
        format!(
            "OAuth oauth_consumer_key=\"ck\", oauth_signature_method=\"HMAC-SHA1\", \
             oauth_signature=\"sig\", oauth_timestamp=\"1\", oauth_nonce=\"n\"{extra}"
        )
    }

    #[test]
    fn rfc_3_4_1_1_base_string() {
        let (params, all) = OAuthParams::from_request(
            Some(RFC_HEADER),
            Some("b5=%3D%253D&a3=a&c%40=&a2=r%20b"),
            Some(b"c2&a3=2+q".as_slice()),
        )
        .expect("the RFC example parses");
        assert_eq!(
            base_string("POST", "http://example.com/request", &all),
            RFC_BASE_STRING
        );
        assert_eq!(params.consumer_key, "9djdj82h48djs9d2");
        assert_eq!(params.token.as_deref(), Some("kkk9d7dh3k39sjv7"));
        assert_eq!(params.timestamp, 137_131_201);
        assert_eq!(params.nonce, "7d8f3e4a");
        assert_eq!(params.signature, "bYT5CMsGcbgUdFHObYMEfcx6bsw=");
        assert!(!all.iter().any(|(name, _)| name == "realm"));
        assert!(!all.iter().any(|(name, _)| name == "oauth_signature"));
    }

    #[test]
    fn rfc_1_2_photos_signature() {
        let (params, all) = OAuthParams::from_request(
            Some(PHOTOS_HEADER),
            Some("file=vacation.jpg&size=original"),
            None,
        )
        .expect("the RFC example parses");
        let uri = "http://photos.example.net/photos";
        assert_eq!(
            sign(
                &base_string("GET", uri, &all),
                "kd94hf93k423kf44",
                "pfkkdhi9sl3r4s00"
            ),
            "MdpQcU8iPSUjWoN/UDMsK2sui9I="
        );
        assert!(verify(
            &params,
            &all,
            "GET",
            uri,
            "kd94hf93k423kf44",
            "pfkkdhi9sl3r4s00"
        ));
        // The same request addressed with upper case, the default port and the query still on
        // normalises to the same base string URI.
        assert!(verify(
            &params,
            &all,
            "get",
            "HTTP://Photos.Example.NET:80/photos?file=vacation.jpg#top",
            "kd94hf93k423kf44",
            "pfkkdhi9sl3r4s00"
        ));
        assert!(!verify(
            &params,
            &all,
            "GET",
            uri,
            "kd94hf93k423kf44",
            "wrong"
        ));
    }

    #[test]
    fn rfc_3_4_1_2_base_uri_examples() {
        assert_eq!(
            normalise_base_uri("HTTP://EXAMPLE.COM:80/r%20v/X?id=123"),
            "http://example.com/r%20v/X"
        );
        assert_eq!(
            normalise_base_uri("https://www.example.net:8080/?q=1"),
            "https://www.example.net:8080/"
        );
        assert_eq!(normalise_base_uri("https://Host:443"), "https://host/");
        assert_eq!(
            normalise_base_uri("http://user:pw@[::1]:8080/a"),
            "http://[::1]:8080/a"
        );
        assert_eq!(normalise_base_uri("http://[::1]/a"), "http://[::1]/a");
        assert_eq!(normalise_base_uri("http://h:443/"), "http://h:443/");
    }

    #[test]
    fn oauth_parameters_in_query_and_body_are_accepted() {
        let (params, all) = OAuthParams::from_request(
            None,
            Some("oauth_consumer_key=ck&oauth_nonce=n&x=1"),
            Some(
                b"oauth_signature_method=HMAC-SHA1&oauth_signature=a%2Bb%3D&oauth_timestamp=5"
                    .as_slice(),
            ),
        )
        .expect("protocol parameters may come in the query and body");
        assert_eq!(params.signature, "a+b=");
        assert_eq!(params.timestamp, 5);
        assert_eq!(params.token, None);
        assert_eq!(all.len(), 5);
    }

    #[test]
    fn header_parameters_other_than_realm_are_signed() {
        let (params, all) = header_only(&minimal_header(
            ", oauth_version=\"1.0\", oauth_callback=\"http%3A%2F%2Fc.example%2Fcb\", \
             oauth_token=\"\", x%20y=\"a%2Cb\", REALM=\"ignored, too\"",
        ))
        .expect("the header parses");
        assert_eq!(params.version.as_deref(), Some("1.0"));
        assert_eq!(params.callback.as_deref(), Some("http://c.example/cb"));
        assert_eq!(params.token, None, "an empty token is no token");
        assert!(all.contains(&("x y".to_owned(), "a,b".to_owned())));
        assert!(all.contains(&("oauth_token".to_owned(), String::new())));
        assert!(!all
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("realm")));
    }

    #[test]
    fn header_scheme_and_spacing_are_lenient_where_http_is() {
        let header = "  oauth\toauth_consumer_key = \"ck\" ,,oauth_signature_method=\"HMAC-SHA1\",\
                      oauth_signature=\"sig\",oauth_timestamp=\"1\",oauth_nonce=\"n\",";
        let (params, _) = header_only(header).expect("the header parses");
        assert_eq!(params.consumer_key, "ck");
    }

    #[test]
    fn duplicates_are_rejected_across_places() {
        let err =
            OAuthParams::from_request(Some(&minimal_header("")), Some("oauth_nonce=other"), None)
                .expect_err("a duplicate is refused");
        assert_eq!(
            err,
            OAuthError::DuplicateParameter("oauth_nonce".to_owned())
        );
        assert_eq!(err.problem(), "parameter_rejected");
        assert!(err.is_bad_request());

        let err = header_only(&minimal_header(", oauth_signature=\"again\""))
            .expect_err("a duplicate signature is refused");
        assert_eq!(err.problem(), "parameter_rejected");

        // Ordinary parameters may repeat, as a3 does in the RFC's own example.
        OAuthParams::from_request(
            Some(&minimal_header("")),
            Some("a=1&a=2"),
            Some(b"a=3".as_slice()),
        )
        .expect("non-protocol parameters may repeat");
    }

    #[test]
    fn missing_parameters_are_named() {
        let full = [
            ("oauth_consumer_key", "ck"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_signature", "sig"),
            ("oauth_timestamp", "1"),
            ("oauth_nonce", "n"),
        ];
        for (missing, _) in full {
            for empty in [false, true] {
                let header = full
                    .iter()
                    .filter(|(name, _)| empty || *name != missing)
                    .map(|(name, value)| {
                        let value = if *name == missing { "" } else { value };
                        format!("{name}=\"{value}\"")
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let err = header_only(&format!("OAuth {header}"))
                    .expect_err("a missing parameter is refused");
                assert_eq!(err, OAuthError::ParameterAbsent(missing));
                assert_eq!(err.problem(), "parameter_absent");
                assert!(err.is_bad_request());
                assert_eq!(
                    err.to_string(),
                    format!("the request has no {missing} parameter")
                );
            }
        }
        let err = OAuthParams::from_request(None, None, None).expect_err("nothing is refused");
        assert_eq!(err, OAuthError::ParameterAbsent("oauth_consumer_key"));
    }

    #[test]
    fn unsupported_method_version_and_timestamp_are_refused() {
        let header = minimal_header("").replace("HMAC-SHA1", "PLAINTEXT");
        let err = header_only(&header).expect_err("PLAINTEXT is refused");
        assert_eq!(err.problem(), "signature_method_rejected");
        assert!(err.is_bad_request());
        let header = minimal_header("").replace("HMAC-SHA1", "hmac-sha1");
        assert_eq!(
            header_only(&header).map(|_| ()),
            Err(OAuthError::SignatureMethodRejected("hmac-sha1".to_owned()))
        );

        let err = header_only(&minimal_header(", oauth_version=\"2.0\""))
            .expect_err("version 2.0 is refused");
        assert_eq!(err.problem(), "version_rejected");
        assert!(err.is_bad_request());

        for bad in ["+1", "-1", "1.5", " 1", "18446744073709551616", "x"] {
            let header = minimal_header("").replace(
                "oauth_timestamp=\"1\"",
                &format!("oauth_timestamp=\"{}\"", percent_encode(bad)),
            );
            assert_eq!(
                header_only(&header).map(|_| ()),
                Err(OAuthError::InvalidTimestamp),
                "timestamp {bad:?}"
            );
        }
        let header = minimal_header("").replace(
            "oauth_timestamp=\"1\"",
            "oauth_timestamp=\"18446744073709551615\"",
        );
        let (params, _) = header_only(&header).expect("u64::MAX is a timestamp");
        assert_eq!(params.timestamp, u64::MAX);
    }

    #[test]
    fn malformed_headers_are_errors() {
        let cases = [
            "Basic dXNlcjpwYXNz".to_owned(),
            "OAuthoauth_consumer_key=\"ck\"".to_owned(),
            "".to_owned(),
            "OAut".to_owned(),
            "OAuth oauth_consumer_key=ck".to_owned(),
            "OAuth oauth_consumer_key=\"ck".to_owned(),
            "OAuth oauth_consumer_key".to_owned(),
            "OAuth =\"ck\"".to_owned(),
            "OAuth oauth_consumer_key=\"a\" oauth_nonce=\"b\"".to_owned(),
            "OAuth oauth_consumer_key=\"%zz\"".to_owned(),
            "OAuth oauth_consumer_key=\"%4\"".to_owned(),
            "OAuth oauth_consumer_key=\"%ff\"".to_owned(),
            "OAuth oauth_consumer_key=\"a\u{1}b\"".to_owned(),
            "OAuth oauth_consumer_key=\"a\\".to_owned(),
            "é".to_owned(),
        ];
        for header in &cases {
            let err = header_only(header).expect_err("a malformed header is refused");
            assert!(
                matches!(err, OAuthError::Malformed { place: HEADER, .. }),
                "{header:?} gave {err:?}"
            );
            assert_eq!(err.problem(), "parameter_rejected");
            assert!(err.is_bad_request());
        }
    }

    #[test]
    fn malformed_query_and_body_are_errors() {
        let err = OAuthParams::from_request(Some(&minimal_header("")), Some("a=%"), None)
            .expect_err("a bad escape is refused");
        assert_eq!(
            err,
            OAuthError::Malformed {
                place: QUERY,
                reason: "a % is not followed by two hex digits"
            }
        );
        assert_eq!(
            err.to_string(),
            "malformed query string: a % is not followed by two hex digits"
        );
        let err =
            OAuthParams::from_request(Some(&minimal_header("")), None, Some(b"a=\xff".as_slice()))
                .expect_err("a non-UTF-8 value is refused");
        assert!(matches!(
            err,
            OAuthError::Malformed {
                place: FORM_BODY,
                ..
            }
        ));
    }

    #[test]
    fn sizes_are_bounded() {
        let huge = minimal_header(&" ".repeat(MAX_HEADER_LEN));
        assert_eq!(
            header_only(&huge).map(|_| ()),
            Err(OAuthError::TooLarge {
                place: HEADER,
                limit: MAX_HEADER_LEN
            })
        );
        let query = "a=1&".repeat(MAX_QUERY_LEN / 4 + 1);
        let err = OAuthParams::from_request(None, Some(&query), None)
            .expect_err("a huge query is refused");
        assert!(matches!(err, OAuthError::TooLarge { place: QUERY, .. }));

        let many = "a=1&".repeat(MAX_PARAMS);
        let err = OAuthParams::from_request(Some(&minimal_header("")), Some(&many), None)
            .expect_err("too many parameters are refused");
        assert_eq!(err, OAuthError::TooManyParameters { limit: MAX_PARAMS });
        assert!(err.is_bad_request());
        let fewer = "a=1&".repeat(MAX_PARAMS - 5);
        OAuthParams::from_request(Some(&minimal_header("")), Some(&fewer), None)
            .expect("exactly the limit is accepted");
    }

    #[test]
    fn percent_encoding_is_rfc_3_6() {
        assert_eq!(percent_encode("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(percent_encode(" +*/=&%é"), "%20%2B%2A%2F%3D%26%25%C3%A9");
    }

    #[test]
    fn verify_refuses_other_methods_and_empty_signatures() {
        let (mut params, all) = header_only(&minimal_header("")).expect("the header parses");
        params.signature = sign(&base_string("GET", "http://h/", &all), "cs", "");
        assert!(verify(&params, &all, "GET", "http://h/", "cs", ""));
        params.signature_method = "PLAINTEXT".to_owned();
        assert!(!verify(&params, &all, "GET", "http://h/", "cs", ""));
        params.signature_method = HMAC_SHA1.to_owned();
        params.signature.clear();
        assert!(!verify(&params, &all, "GET", "http://h/", "cs", ""));
    }

    #[test]
    fn freshness_edges() {
        let freshness = Freshness { max_skew_secs: 300 };
        assert_eq!(freshness.check(1_000, 1_000), Ok(()));
        assert_eq!(freshness.check(700, 1_000), Ok(()));
        assert_eq!(freshness.check(1_300, 1_000), Ok(()));
        let err = freshness.check(699, 1_000).expect_err("too old");
        assert_eq!(
            err,
            OAuthError::TimestampRefused {
                timestamp: 699,
                now: 1_000,
                max_skew_secs: 300
            }
        );
        assert_eq!(err.problem(), "timestamp_refused");
        assert!(!err.is_bad_request());
        assert_eq!(
            err.to_string(),
            "timestamp 699 is more than 300 seconds away from the server clock 1000"
        );
        assert!(freshness.check(1_301, 1_000).is_err());
        assert_eq!(freshness.check(0, 0), Ok(()));
        assert_eq!(freshness.check(300, 0), Ok(()));
        assert!(freshness.check(301, 0).is_err());
        assert_eq!(freshness.check(u64::MAX, u64::MAX), Ok(()));
        assert_eq!(freshness.check(u64::MAX - 300, u64::MAX), Ok(()));
        assert!(freshness.check(u64::MAX - 301, u64::MAX).is_err());
        assert!(freshness.check(0, u64::MAX).is_err());
        assert!(freshness.check(u64::MAX, 0).is_err());

        let exact = Freshness { max_skew_secs: 0 };
        assert_eq!(exact.check(5, 5), Ok(()));
        assert!(exact.check(4, 5).is_err());
        assert!(exact.check(6, 5).is_err());

        let lax = Freshness {
            max_skew_secs: u64::MAX,
        };
        assert_eq!(lax.check(0, u64::MAX), Ok(()));
        assert_eq!(lax.check(u64::MAX, 0), Ok(()));
        assert_eq!(freshness.nonce_retention_secs(), 600);
        assert_eq!(lax.nonce_retention_secs(), u64::MAX);
    }

    #[test]
    fn problem_words_and_statuses() {
        assert_eq!(OAuthError::SignatureInvalid.problem(), "signature_invalid");
        assert!(!OAuthError::SignatureInvalid.is_bad_request());
        assert_eq!(OAuthError::NonceUsed.problem(), "nonce_used");
        assert!(!OAuthError::NonceUsed.is_bad_request());
        assert_eq!(OAuthError::InvalidTimestamp.problem(), "parameter_rejected");
    }

    const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

    proptest! {
        /// Whatever the parameters, a request signed the way a client does verifies, and changing
        /// any one parameter value, the method, the URI or a secret makes it fail.
        #[test]
        fn signed_requests_verify_and_tampering_fails(
            extra in prop::collection::vec(
                ("[a-zA-Z0-9 %&=+@._~-]{0,8}", "\\PC{0,12}", any::<bool>()),
                0..8,
            ),
            consumer_key in "\\PC{1,16}",
            token in prop::option::of("\\PC{1,16}"),
            nonce in "[A-Za-z0-9]{1,32}",
            timestamp in any::<u64>(),
            with_version in any::<bool>(),
            plus_for_space in any::<bool>(),
            method in 0..METHODS.len(),
            uri in "https?://[a-zA-Z0-9.-]{1,12}(:[0-9]{1,5})?/[a-zA-Z0-9/._~%-]{0,20}",
            consumer_secret in "\\PC{0,16}",
            token_secret in "\\PC{0,16}",
            tamper in any::<prop::sample::Index>(),
        ) {
            prop_assume!(extra.iter().all(|(name, _, _)| !name.starts_with("oauth_")));
            let method_name = METHODS[method];

            let mut protocol = vec![
                ("oauth_consumer_key".to_owned(), consumer_key),
                ("oauth_signature_method".to_owned(), HMAC_SHA1.to_owned()),
                ("oauth_timestamp".to_owned(), timestamp.to_string()),
                ("oauth_nonce".to_owned(), nonce),
            ];
            if let Some(token) = token {
                protocol.push(("oauth_token".to_owned(), token));
            }
            if with_version {
                protocol.push(("oauth_version".to_owned(), "1.0".to_owned()));
            }
            let mut expected: Vec<(String, String)> = extra
                .iter()
                .map(|(name, value, _)| (name.clone(), value.clone()))
                .chain(protocol.iter().cloned())
                .collect();
            let signature = sign(
                &base_string(method_name, &uri, &expected),
                &consumer_secret,
                &token_secret,
            );

            // Build the request as a client would send it.
            let mut header = "OAuth realm=\"Example\"".to_owned();
            for (name, value) in protocol
                .iter()
                .chain([&("oauth_signature".to_owned(), signature)])
            {
                header.push_str(&format!(
                    ", {}=\"{}\"",
                    percent_encode(name),
                    percent_encode(value)
                ));
            }
            let encode_pairs = |in_query: bool| {
                extra
                    .iter()
                    .filter(|(_, _, query)| *query == in_query)
                    .map(|(name, value, _)| {
                        format!("{}={}", percent_encode(name), percent_encode(value))
                    })
                    .collect::<Vec<_>>()
                    .join("&")
            };
            let query = encode_pairs(true);
            let mut body = encode_pairs(false);
            if plus_for_space {
                body = body.replace("%20", "+");
            }

            let (params, all) =
                OAuthParams::from_request(Some(&header), Some(&query), Some(body.as_bytes()))
                    .expect("a well-formed request parses");
            let mut sorted = all.clone();
            sorted.sort();
            expected.sort();
            prop_assert_eq!(&sorted, &expected);
            prop_assert!(verify(
                &params, &all, method_name, &uri, &consumer_secret, &token_secret
            ));

            let mut changed = all.clone();
            let index = tamper.index(changed.len());
            changed[index].1.push('x');
            prop_assert!(!verify(
                &params, &changed, method_name, &uri, &consumer_secret, &token_secret
            ));
            let other_method = METHODS[(method + 1) % METHODS.len()];
            prop_assert!(!verify(
                &params, &all, other_method, &uri, &consumer_secret, &token_secret
            ));
            // Formatted outside the macros, which cannot capture names in their format strings.
            let other_uri = format!("{uri}x");
            let other_secret = format!("{consumer_secret}x");
            prop_assert!(!verify(
                &params, &all, method_name, &other_uri, &consumer_secret, &token_secret
            ));
            prop_assert!(!verify(
                &params, &all, method_name, &uri, &other_secret, &token_secret
            ));
        }

        #[test]
        fn from_request_never_panics(
            header in any::<String>(),
            query in any::<String>(),
            body in any::<Vec<u8>>(),
        ) {
            let _ = OAuthParams::from_request(Some(&header), Some(&query), Some(&body));
        }

        #[test]
        fn from_request_never_panics_on_header_like_strings(
            rest in "[ \t\r\n,=\"%\\\\a-z_0-9A-Fé\u{1}]{0,300}",
        ) {
            let _ = header_only(&format!("OAuth {rest}"));
            let _ = header_only(&format!("OAuth oauth_consumer_key=\"{rest}"));
        }

        #[test]
        fn base_string_never_panics(uri in any::<String>(), method in any::<String>()) {
            let _ = base_string(&method, &uri, &[]);
        }
    }
}
