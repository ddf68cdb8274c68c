//! Lenient, defensive parsing of a SOAP 1.1 request into its operation and simple parameters.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use crate::{OSCAR_NS, PASSWORD_TEXT_TYPE, SOAP11_NS, SOAP12_NS, WSSE_NS};

/// Bounds that keep a hostile request cheap to refuse.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest element nesting accepted. OSCAR's messages need about six levels.
    pub max_depth: usize,
    /// Most parameters (wrapper children) accepted in one operation.
    pub max_params: usize,
    /// Most elements in the whole document, and most namespace declarations: resolving names
    /// scans the declarations in scope, so many of both would cost quadratic CPU.
    pub max_elements: usize,
    pub max_namespace_declarations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 32,
            max_params: 1000,
            max_elements: 10_000,
            max_namespace_declarations: 64,
        }
    }
}

/// A parameter's value as it arrived. Typed accessors on [`Request`] turn it into what the
/// operation expects and name the parameter when it is of the wrong shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// Character content (possibly empty).
    Text(String),
    /// `xsi:nil="true"`.
    Nil,
    /// An element with child elements where a simple value was expected.
    Complex,
}

/// A WS-Security `UsernameToken`, as OSCAR's validator reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsernameToken {
    pub username: String,
    pub password: String,
    /// The `Type` attribute of `wsse:Password`, when present.
    pub password_type: Option<String>,
}

impl UsernameToken {
    /// OSCAR accepts only `PasswordText` (an absent `Type` means the same, per the profile).
    pub fn is_password_text(&self) -> bool {
        self.password_type
            .as_deref()
            .is_none_or(|t| t == PASSWORD_TEXT_TYPE)
    }
}

/// One parsed SOAP request: the body's first element and its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Local name of the body's first element, e.g. `isAlive`.
    pub operation: String,
    /// Parameters in document order, by local name (`arg0`, `arg1`, ...). Repeated names repeat.
    pub params: Vec<(String, Value)>,
    /// Whether the header carried a `wsse:Security` element at all.
    pub has_security_header: bool,
    /// The `UsernameToken` inside `wsse:Security`, when complete.
    pub username_token: Option<UsernameToken>,
}

impl Request {
    /// The first parameter named `name`.
    pub fn param(&self, name: &str) -> Option<&Value> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// A parameter declared `xs:string minOccurs="0"`: absent or nil is `None`.
    pub fn string(&self, name: &str) -> Result<Option<&str>, ParseError> {
        match self.param(name) {
            None | Some(Value::Nil) => Ok(None),
            Some(Value::Text(t)) => Ok(Some(t)),
            Some(Value::Complex) => Err(ParseError::WrongType {
                param: name.to_owned(),
                expected: "a string",
            }),
        }
    }
}

/// Why a request was refused. Each maps to a `soap:Client` fault naming the problem.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("the request body is not well-formed XML: {0}")]
    Malformed(String),
    #[error("document type declarations are not allowed in SOAP messages")]
    Dtd,
    #[error("the request nests elements deeper than {0} levels")]
    TooDeep(usize),
    #[error("the request has more than {0} parameters")]
    TooManyParams(usize),
    #[error("the request has more than {0} elements")]
    TooManyElements(usize),
    #[error("the request declares more than {0} namespaces")]
    TooManyNamespaces(usize),
    #[error("the request has more than one {0}")]
    Repeated(&'static str),
    #[error("the root element is not a SOAP 1.1 Envelope")]
    NotAnEnvelope,
    #[error("SOAP 1.2 is not supported by this endpoint; send a SOAP 1.1 envelope")]
    Soap12,
    #[error("the SOAP Envelope has no Body element")]
    NoBody,
    #[error("the SOAP Body is empty")]
    EmptyBody,
    #[error(
        "unexpected wrapper element {{{namespace}}}{local}: expected the namespace {OSCAR_NS}"
    )]
    WrongNamespace { namespace: String, local: String },
    #[error("parameter {param} has the wrong type: expected {expected}")]
    WrongType {
        param: String,
        expected: &'static str,
    },
    #[error("parameter {param} is not a valid {expected}: {value:?}")]
    BadValue {
        param: String,
        expected: &'static str,
        value: String,
    },
}

/// Where the parser is inside the envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Envelope,
    Header,
    Security,
    UsernameToken,
    Username,
    Password,
    Body,
    Wrapper,
    Param,
    /// Inside an element we skip (unknown header blocks, nested parameter content).
    Skip,
    /// After the body's wrapper: everything else is ignored.
    Done,
}

/// Parses a SOAP 1.1 request. Dispatch happens on the body's first element, never on the
/// `SOAPAction` header or the `Content-Type`, because real OSCAR clients get both wrong.
pub fn parse_request(body: &[u8], limits: Limits) -> Result<Request, ParseError> {
    let mut reader = NsReader::from_reader(body);
    let config = reader.config_mut();
    config.trim_text(false);
    config.expand_empty_elements = true;
    config.check_end_names = true;

    let mut stack: Vec<Place> = Vec::new();
    let mut operation: Option<String> = None;
    let mut params: Vec<(String, Value)> = Vec::new();
    let mut text = String::new();
    let mut has_security_header = false;
    let mut username: Option<String> = None;
    let mut password: Option<String> = None;
    let mut password_type: Option<String> = None;
    let mut seen_envelope = false;
    let mut seen_body = false;
    let mut param_nil = false;
    let mut param_complex = false;
    let mut elements = 0usize;
    let mut namespaces = 0usize;
    let mut buf = Vec::new();

    loop {
        let (ns, event) = reader
            .read_resolved_event_into(&mut buf)
            .map_err(|e| ParseError::Malformed(e.to_string()))?;
        match event {
            Event::DocType(_) => return Err(ParseError::Dtd),
            Event::Start(start) => {
                if stack.len() >= limits.max_depth {
                    return Err(ParseError::TooDeep(limits.max_depth));
                }
                elements += 1;
                if elements > limits.max_elements {
                    return Err(ParseError::TooManyElements(limits.max_elements));
                }
                namespaces += start
                    .attributes()
                    .with_checks(false)
                    .flatten()
                    .filter(|a| a.key.as_ref().starts_with(b"xmlns"))
                    .count();
                if namespaces > limits.max_namespace_declarations {
                    return Err(ParseError::TooManyNamespaces(
                        limits.max_namespace_declarations,
                    ));
                }
                let local = local_name(&start)?;
                let ns = namespace(&ns);
                let parent = stack.last().copied();
                let place = match parent {
                    None => {
                        if seen_envelope {
                            return Err(ParseError::Repeated("root element"));
                        }
                        if local != "Envelope" {
                            return Err(ParseError::NotAnEnvelope);
                        }
                        match ns.as_deref() {
                            Some(SOAP11_NS) => {
                                seen_envelope = true;
                                Place::Envelope
                            }
                            Some(SOAP12_NS) => return Err(ParseError::Soap12),
                            _ => return Err(ParseError::NotAnEnvelope),
                        }
                    }
                    Some(Place::Envelope) => match (local.as_str(), ns.as_deref()) {
                        ("Header", Some(SOAP11_NS)) => Place::Header,
                        ("Body", Some(SOAP11_NS)) => {
                            if seen_body {
                                return Err(ParseError::Repeated("SOAP Body"));
                            }
                            seen_body = true;
                            Place::Body
                        }
                        _ => Place::Skip,
                    },
                    Some(Place::Header) => {
                        if local == "Security" && ns.as_deref() == Some(WSSE_NS) {
                            has_security_header = true;
                            Place::Security
                        } else {
                            Place::Skip
                        }
                    }
                    Some(Place::Security) => {
                        if local == "UsernameToken" && ns.as_deref() == Some(WSSE_NS) {
                            Place::UsernameToken
                        } else {
                            Place::Skip
                        }
                    }
                    Some(Place::UsernameToken) => match (local.as_str(), ns.as_deref()) {
                        ("Username", Some(WSSE_NS)) => {
                            text.clear();
                            Place::Username
                        }
                        ("Password", Some(WSSE_NS)) => {
                            text.clear();
                            password_type = attribute(&reader, &start, "Type")?;
                            Place::Password
                        }
                        _ => Place::Skip,
                    },
                    Some(Place::Body) => {
                        match ns.as_deref() {
                            None | Some(OSCAR_NS) => {}
                            Some(other) => {
                                return Err(ParseError::WrongNamespace {
                                    namespace: other.to_owned(),
                                    local,
                                })
                            }
                        }
                        operation = Some(local);
                        Place::Wrapper
                    }
                    Some(Place::Wrapper) => {
                        if params.len() >= limits.max_params {
                            return Err(ParseError::TooManyParams(limits.max_params));
                        }
                        text.clear();
                        param_complex = false;
                        param_nil = is_nil(&reader, &start)?;
                        params.push((local, Value::Nil));
                        Place::Param
                    }
                    Some(Place::Param) => {
                        param_complex = true;
                        Place::Skip
                    }
                    Some(Place::Username | Place::Password | Place::Skip) => Place::Skip,
                    Some(Place::Done) => Place::Done,
                };
                stack.push(place);
            }
            Event::Text(t) => {
                if matches!(
                    stack.last(),
                    Some(Place::Param | Place::Username | Place::Password)
                ) {
                    let decoded = t
                        .decode()
                        .map_err(|e| ParseError::Malformed(e.to_string()))?;
                    let unescaped = quick_xml::escape::unescape(&decoded)
                        .map_err(|e| ParseError::Malformed(e.to_string()))?;
                    text.push_str(&unescaped);
                }
            }
            Event::CData(c) => {
                if matches!(
                    stack.last(),
                    Some(Place::Param | Place::Username | Place::Password)
                ) {
                    let decoded = c
                        .decode()
                        .map_err(|e| ParseError::Malformed(e.to_string()))?;
                    text.push_str(&decoded);
                }
            }
            Event::GeneralRef(r) => {
                // Only the five predefined entities and character references are meaningful
                // without a DTD, and DTDs are refused above, so anything else is malformed.
                let name = r
                    .decode()
                    .map_err(|e| ParseError::Malformed(e.to_string()))?;
                let resolved = if let Some(ch) = r
                    .resolve_char_ref()
                    .map_err(|e| ParseError::Malformed(e.to_string()))?
                {
                    ch.to_string()
                } else if let Some(s) = quick_xml::escape::resolve_predefined_entity(&name) {
                    s.to_owned()
                } else {
                    return Err(ParseError::Malformed(format!(
                        "undefined entity reference &{name};"
                    )));
                };
                if matches!(
                    stack.last(),
                    Some(Place::Param | Place::Username | Place::Password)
                ) {
                    text.push_str(&resolved);
                }
            }
            Event::End(_) => {
                let place = stack.pop().expect("check_end_names pairs every end tag");
                match place {
                    Place::Param => {
                        let value = if param_complex {
                            Value::Complex
                        } else if param_nil && text.is_empty() {
                            Value::Nil
                        } else {
                            Value::Text(std::mem::take(&mut text))
                        };
                        if let Some(last) = params.last_mut() {
                            last.1 = value;
                        }
                    }
                    Place::Username => username = Some(std::mem::take(&mut text)),
                    Place::Password => password = Some(std::mem::take(&mut text)),
                    Place::Wrapper => {
                        // Anything after the first body element is ignored, as CXF does.
                        if let Some(body) = stack.last_mut() {
                            *body = Place::Done;
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            Event::Empty(_) => unreachable!("expand_empty_elements is on"),
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
        }
        buf.clear();
    }

    if !stack.is_empty() {
        return Err(ParseError::Malformed("unexpected end of document".into()));
    }
    if !seen_envelope {
        return Err(ParseError::NotAnEnvelope);
    }
    if !seen_body {
        return Err(ParseError::NoBody);
    }
    let operation = operation.ok_or(ParseError::EmptyBody)?;
    let username_token = match (username, password) {
        (Some(username), Some(password)) => Some(UsernameToken {
            username: username.trim().to_owned(),
            password,
            password_type,
        }),
        _ => None,
    };
    Ok(Request {
        operation,
        params,
        has_security_header,
        username_token,
    })
}

fn local_name(start: &BytesStart<'_>) -> Result<String, ParseError> {
    std::str::from_utf8(start.local_name().as_ref())
        .map(str::to_owned)
        .map_err(|e| ParseError::Malformed(e.to_string()))
}

fn namespace(ns: &ResolveResult<'_>) -> Option<String> {
    match ns {
        ResolveResult::Bound(ns) => Some(String::from_utf8_lossy(ns.as_ref()).into_owned()),
        ResolveResult::Unbound | ResolveResult::Unknown(_) => None,
    }
}

fn attribute(
    reader: &NsReader<&[u8]>,
    start: &BytesStart<'_>,
    local: &str,
) -> Result<Option<String>, ParseError> {
    for attr in start.attributes() {
        let attr = attr.map_err(|e| ParseError::Malformed(e.to_string()))?;
        let (_, name) = reader.resolve_attribute(attr.key);
        if name.as_ref() == local.as_bytes() {
            let value = attr
                .decode_and_unescape_value(reader.decoder())
                .map_err(|e| ParseError::Malformed(e.to_string()))?;
            return Ok(Some(value.into_owned()));
        }
    }
    Ok(None)
}

fn is_nil(reader: &NsReader<&[u8]>, start: &BytesStart<'_>) -> Result<bool, ParseError> {
    Ok(attribute(reader, start, "nil")?.is_some_and(|v| v == "true" || v == "1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Request, ParseError> {
        parse_request(s.as_bytes(), Limits::default())
    }

    #[test]
    fn reads_the_usual_client_shape() {
        let r = parse(
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ws="http://ws.oscarehr.org/">
 <soapenv:Header/><soapenv:Body>
  <ws:login2><arg0>oscardoc</arg0><arg1>mac&amp;2002</arg1></ws:login2>
 </soapenv:Body></soapenv:Envelope>"#,
        )
        .expect("valid request");
        assert_eq!(r.operation, "login2");
        assert_eq!(r.string("arg0"), Ok(Some("oscardoc")));
        assert_eq!(r.string("arg1"), Ok(Some("mac&2002")));
        assert!(!r.has_security_header);
    }

    #[test]
    fn reads_default_namespace_wrappers_and_odd_prefixes() {
        let r = parse(
            r#"<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><login2 xmlns="http://ws.oscarehr.org/"><arg0 xmlns="">a</arg0><arg1 xmlns="">b</arg1></login2></s:Body></s:Envelope>"#,
        )
        .expect("valid request");
        assert_eq!(r.operation, "login2");
        assert_eq!(r.string("arg1"), Ok(Some("b")));
    }

    #[test]
    fn reads_username_token() {
        let r = parse(
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ws="http://ws.oscarehr.org/"
    xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" xmlns:wsu="x">
 <soapenv:Header><wsse:Security soapenv:mustUnderstand="1"><wsse:UsernameToken wsu:Id="UsernameToken-1">
   <wsse:Username>128</wsse:Username>
   <wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText">5429696329944</wsse:Password>
 </wsse:UsernameToken></wsse:Security></soapenv:Header>
 <soapenv:Body><ws:getDemographic><arg0>1</arg0></ws:getDemographic></soapenv:Body></soapenv:Envelope>"#,
        )
        .expect("valid request");
        let token = r.username_token.expect("token");
        assert_eq!(token.username, "128");
        assert_eq!(token.password, "5429696329944");
        assert!(token.is_password_text());
        assert!(r.has_security_header);
    }

    #[test]
    fn refuses_dtds_and_entities() {
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><isAlive>&lol2;</isAlive></soap:Body></soap:Envelope>"#;
        assert_eq!(parse(bomb), Err(ParseError::Dtd));
        let undefined = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><login><arg0>&xxe;</arg0></login></soap:Body></soap:Envelope>"#;
        assert!(matches!(parse(undefined), Err(ParseError::Malformed(_))));
    }

    #[test]
    fn refuses_deep_nesting() {
        let mut s = String::from(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><login><arg0>"#,
        );
        for _ in 0..100_000 {
            s.push_str("<a>");
        }
        assert_eq!(parse(&s), Err(ParseError::TooDeep(32)));
    }

    #[test]
    fn names_wrong_shapes() {
        assert_eq!(parse("<a/>"), Err(ParseError::NotAnEnvelope));
        assert_eq!(parse("not xml"), Err(ParseError::NotAnEnvelope));
        assert!(matches!(parse("<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>"), Err(ParseError::Malformed(_))));
        assert_eq!(
            parse(
                r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body/></soap:Envelope>"#
            ),
            Err(ParseError::EmptyBody)
        );
        assert_eq!(
            parse(
                r#"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>"#
            ),
            Err(ParseError::Soap12)
        );
        let nested = parse(r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><login><arg0><x>1</x></arg0></login></soap:Body></soap:Envelope>"#).expect("parses");
        assert!(matches!(
            nested.string("arg0"),
            Err(ParseError::WrongType { .. })
        ));
        assert!(matches!(
            parse(
                r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><j:isAlive xmlns:j="http://v1.soap.external.ws.oscarehr.org/"/></soap:Body></soap:Envelope>"#
            ),
            Err(ParseError::WrongNamespace { .. })
        ));
    }

    #[test]
    fn refuses_costly_and_ambiguous_documents() {
        let decls: String = (0..100)
            .map(|i| format!(" xmlns:p{i}=\"urn:{i}\""))
            .collect();
        let many_ns = format!(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"{decls}><soap:Body><isAlive/></soap:Body></soap:Envelope>"#
        );
        assert_eq!(parse(&many_ns), Err(ParseError::TooManyNamespaces(64)));
        let many = format!(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header>{}</soap:Header><soap:Body><isAlive/></soap:Body></soap:Envelope>"#,
            "<b/>".repeat(20_000)
        );
        assert_eq!(parse(&many), Err(ParseError::TooManyElements(10_000)));
        let two_bodies = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><isAlive/></soap:Body><soap:Body><login/></soap:Body></soap:Envelope>"#;
        assert_eq!(parse(two_bodies), Err(ParseError::Repeated("SOAP Body")));
        let two_roots = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><isAlive/></soap:Body></soap:Envelope><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><login/></soap:Body></soap:Envelope>"#;
        assert_eq!(parse(two_roots), Err(ParseError::Repeated("root element")));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = parse_request(&bytes, Limits::default());
        }

        #[test]
        fn round_trips_any_text_parameter(value in "\\PC*") {
            let escaped = quick_xml::escape::escape(value.as_str());
            let doc = format!(r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><login><arg0>{escaped}</arg0></login></soap:Body></soap:Envelope>"#);
            let r = parse(&doc).expect("valid request");
            proptest::prop_assert_eq!(r.string("arg0").expect("a string"), Some(value.as_str()));
        }
    }
}
