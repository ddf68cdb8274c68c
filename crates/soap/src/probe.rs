//! The liveness probe every supervisor of an OSCAR worker shares: SOAP
//! `SystemInfoService.isAlive`, which stock OSCAR and `oscar-emr` both answer with `alive`.
//!
//! Only the verdict on an answer lives here, so that the watchdog and the proxy judge answers
//! identically; each brings its own HTTP client and timeout.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use crate::{OSCAR_NS, SOAP11_NS};

/// The request body a real OSCAR client sends for `isAlive`.
pub const IS_ALIVE_REQUEST: &str = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ws="http://ws.oscarehr.org/"><soapenv:Header/><soapenv:Body><ws:isAlive/></soapenv:Body></soapenv:Envelope>"#;

/// The path of the probe below an OSCAR context (`/oscar` for stock OSCAR, `` for ours).
pub const IS_ALIVE_PATH: &str = "/ws/SystemInfoService";

/// What an answer to the probe says about the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAnswer {
    /// HTTP 200 and a SOAP `isAliveResponse` whose `return` is `alive`.
    Alive,
    /// Anything else, with the reason in words for `oscarbox status`.
    NotAlive(String),
}

/// Judges an HTTP answer to [`IS_ALIVE_REQUEST`]. Garbage, a fault, an HTTP error or a wrong
/// value never counts as alive.
pub fn judge(status: u16, body: &[u8]) -> ProbeAnswer {
    if status != 200 {
        return ProbeAnswer::NotAlive(format!("HTTP status {status}"));
    }
    match return_value(body) {
        Some(v) if v == "alive" => ProbeAnswer::Alive,
        Some(v) => ProbeAnswer::NotAlive(format!(
            "isAlive returned {:?} instead of \"alive\"",
            truncate(&v, 40)
        )),
        None => ProbeAnswer::NotAlive("the answer is not an isAliveResponse envelope".into()),
    }
}

/// Sends the probe to `base_url` (`http://host:port` plus any context path such as `/oscar`)
/// and judges the answer. The client's timeout is the probe's timeout.
#[cfg(feature = "http-client")]
pub async fn send(client: &reqwest::Client, base_url: &str) -> ProbeAnswer {
    let resp = client
        .post(format!("{base_url}{IS_ALIVE_PATH}"))
        .header("content-type", "text/xml; charset=UTF-8")
        .header("SOAPAction", "\"\"")
        .body(IS_ALIVE_REQUEST)
        .send()
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return ProbeAnswer::NotAlive("no answer within the probe timeout".into())
        }
        Err(e) if e.is_connect() => {
            return ProbeAnswer::NotAlive("connection refused or unreachable".into())
        }
        Err(e) => return ProbeAnswer::NotAlive(format!("request failed: {e}")),
    };
    let status = resp.status().as_u16();
    match resp.bytes().await {
        Ok(body) => judge(status, &body),
        Err(e) => ProbeAnswer::NotAlive(format!("reading the answer failed: {e}")),
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The text of `Envelope/Body/isAliveResponse/return`, if the body has exactly that shape.
fn return_value(body: &[u8]) -> Option<String> {
    let mut reader = NsReader::from_reader(body);
    reader.config_mut().expand_empty_elements = true;
    let expected: [(&str, &str); 4] = [
        ("Envelope", SOAP11_NS),
        ("Body", SOAP11_NS),
        ("isAliveResponse", OSCAR_NS),
        ("return", ""),
    ];
    let mut depth = 0usize;
    let mut value = None;
    let mut buf = Vec::new();
    loop {
        let (ns, event) = reader.read_resolved_event_into(&mut buf).ok()?;
        match event {
            Event::DocType(_) => return None,
            Event::Start(start) => {
                let (name, want_ns) = expected.get(depth)?;
                let ns_ok = match ns {
                    ResolveResult::Bound(n) => n.as_ref() == want_ns.as_bytes(),
                    _ => want_ns.is_empty(),
                };
                if start.local_name().as_ref() != name.as_bytes() || !ns_ok {
                    return None;
                }
                depth += 1;
                if depth == 4 {
                    value = Some(String::new());
                }
            }
            Event::Text(t) if depth == 4 => {
                value.as_mut()?.push_str(&t.decode().ok()?);
            }
            Event::End(_) => {
                if depth == 4 {
                    return value;
                }
                depth = depth.checked_sub(1)?;
            }
            Event::Eof => return None,
            _ => {}
        }
        buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALIVE: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ns2:isAliveResponse xmlns:ns2="http://ws.oscarehr.org/"><return>alive</return></ns2:isAliveResponse></soap:Body></soap:Envelope>"#;

    #[test]
    fn alive_only_for_the_real_answer() {
        assert_eq!(judge(200, ALIVE.as_bytes()), ProbeAnswer::Alive);
        assert!(matches!(
            judge(500, ALIVE.as_bytes()),
            ProbeAnswer::NotAlive(_)
        ));
        assert!(matches!(judge(200, b"alive"), ProbeAnswer::NotAlive(_)));
        assert!(matches!(judge(200, b""), ProbeAnswer::NotAlive(_)));
        let dead = ALIVE.replace(">alive<", ">dead<");
        assert_eq!(
            judge(200, dead.as_bytes()),
            ProbeAnswer::NotAlive("isAlive returned \"dead\" instead of \"alive\"".into())
        );
        let wrong_op = ALIVE.replace("isAliveResponse", "helloWorldResponse");
        assert!(matches!(
            judge(200, wrong_op.as_bytes()),
            ProbeAnswer::NotAlive(_)
        ));
    }

    proptest::proptest! {
        #[test]
        fn garbage_is_never_alive(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            proptest::prop_assert!(matches!(judge(200, &bytes), ProbeAnswer::NotAlive(_)));
        }
    }
}
