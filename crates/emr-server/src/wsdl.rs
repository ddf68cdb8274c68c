//! WSDL documents: the ones a live OSCAR 19 served (`shared/reference/wsdl-oscar19/`), with the
//! endpoint address rewritten to the URL the client used, as CXF does.

use std::net::SocketAddr;

use axum::http::HeaderMap;

use crate::soap::Service;

const SYSTEM_INFO: &str = include_str!("../wsdl/SystemInfoService.wsdl");
const LOGIN: &str = include_str!("../wsdl/LoginService.wsdl");
const DEMOGRAPHIC: &str = include_str!("../wsdl/DemographicService.wsdl");

/// The WSDL for `service` with `location` as its `soap:address`.
pub fn document(service: Service, location: &str) -> String {
    let template = match service {
        Service::SystemInfo => SYSTEM_INFO,
        Service::Login => LOGIN,
        Service::Demographic => DEMOGRAPHIC,
    };
    const ATTR: &str = "<soap:address location=\"";
    let start = template
        .find(ATTR)
        .expect("every shipped WSDL has a soap:address")
        + ATTR.len();
    let end = start
        + template[start..]
            .find('"')
            .expect("the location attribute is closed");
    let mut out = String::with_capacity(template.len() + location.len());
    out.push_str(&template[..start]);
    out.push_str(&quick_xml_escape(location));
    out.push_str(&template[end..]);
    out
}

fn quick_xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
}

/// The URL the client reached us at. `X-Forwarded-Proto`/`-Host` are honoured only from the
/// local proxy; a Host header with anything but host-name characters is not echoed.
pub fn location(peer: SocketAddr, headers: &HeaderMap, path: &str) -> String {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let trusted = peer.ip().is_loopback();
    let scheme = trusted
        .then(|| header("x-forwarded-proto"))
        .flatten()
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    let host = trusted
        .then(|| header("x-forwarded-host"))
        .flatten()
        .or_else(|| header("host"))
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .map_or_else(|| peer.to_string(), str::to_owned);
    let path: String = path
        .chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '"' | '<' | '>' | '&'))
        .collect();
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_the_address() {
        let doc = document(Service::Login, "http://127.0.0.1:8081/ws/LoginService");
        assert!(doc.contains("<soap:address location=\"http://127.0.0.1:8081/ws/LoginService\"/>"));
        assert_eq!(
            doc.replace(
                "http://127.0.0.1:8081/ws/LoginService",
                "https://oscar.example:8443/oscar/ws/LoginService"
            ),
            LOGIN
        );
    }

    #[test]
    fn hostile_host_headers_are_not_echoed() {
        let peer: SocketAddr = "192.0.2.1:5555".parse().expect("addr");
        let mut h = HeaderMap::new();
        h.insert("host", "evil\"/><x".parse().expect("header"));
        h.insert("x-forwarded-proto", "https".parse().expect("header"));
        assert_eq!(
            location(peer, &h, "/ws/LoginService"),
            "http://192.0.2.1:5555/ws/LoginService"
        );
    }
}
