//! OSCAR's SOAP wire format, as Apache CXF serves it for `org.oscarehr.ws`.
//!
//! Requests are parsed leniently (any prefixes, default-namespace wrappers, an empty header) and
//! defensively (no DTD, bounded depth and size); responses and faults are written byte for byte
//! as a live OSCAR 19 answers, because some clients string-match the `soap:` and `ns2:` prefixes.
//! See `shared/reference/oscar-wire.md` §1.
//!
//! Written by hand on `quick-xml` because no SOAP crate produces CXF's exact framing, and the
//! subset OSCAR uses (document/literal wrapped, one level of simple parameters) is small.

mod fault;
pub mod probe;
mod request;
mod response;

pub use fault::Fault;
pub use request::{parse_request, Limits, ParseError, Request, UsernameToken, Value};
pub use response::{Elements, ResponseWriter};

/// The target namespace of every OSCAR web service.
pub const OSCAR_NS: &str = "http://ws.oscarehr.org/";
/// SOAP 1.1 envelope namespace: the only SOAP version OSCAR's CXF endpoints bind.
pub const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2 envelope namespace, recognised only to refuse it clearly.
pub const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";
/// WS-Security 1.0 extension namespace (`wsse:`).
pub const WSSE_NS: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
/// The only password type OSCAR's WSS4J configuration accepts.
pub const PASSWORD_TEXT_TYPE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText";

/// The `Content-Type` CXF sends with every SOAP answer, faults included.
pub const CONTENT_TYPE: &str = "text/xml;charset=UTF-8";
