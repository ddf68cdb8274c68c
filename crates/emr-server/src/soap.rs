//! SOAP routing: `/ws/{service}` and `/oscar/ws/{service}` (stock OSCAR's context path), POST
//! dispatched on the body's first element, `GET ?wsdl` for the service description.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, OriginalUri, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use oscar_soap::{parse_request, Fault, Limits, ParseError, CONTENT_TYPE, OSCAR_NS};

use crate::app::AppState;
use crate::{demographic, login, system_info, ws_security, wsdl};

/// The services this server implements, by the name in their URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    SystemInfo,
    Login,
    Demographic,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::SystemInfo, Service::Login, Service::Demographic];

    pub fn from_path(name: &str) -> Option<Service> {
        match name {
            "SystemInfoService" => Some(Service::SystemInfo),
            "LoginService" => Some(Service::Login),
            "DemographicService" => Some(Service::Demographic),
            _ => None,
        }
    }

    pub fn path_name(self) -> &'static str {
        match self {
            Service::SystemInfo => "SystemInfoService",
            Service::Login => "LoginService",
            Service::Demographic => "DemographicService",
        }
    }
}

pub fn unknown_operation(op: &str) -> Fault {
    Fault::Client(format!(
        "Unexpected wrapper element {{{OSCAR_NS}}}{op} found."
    ))
}

fn soap_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        body,
    )
        .into_response()
}

pub fn fault_response(fault: &Fault) -> Response {
    soap_response(StatusCode::INTERNAL_SERVER_ERROR, fault.to_envelope())
}

fn parse_error_fault(e: &ParseError) -> Fault {
    Fault::Client(e.to_string())
}

/// The client's address: the peer, or `X-Forwarded-For` when the peer is the local proxy.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap) -> String {
    if peer.ip().is_loopback() {
        if let Some(first) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| v.parse::<std::net::IpAddr>().is_ok())
        {
            return first.to_owned();
        }
    }
    peer.ip().to_string()
}

/// `POST /ws/{service}`.
pub async fn post(
    State(state): State<AppState>,
    Path(service): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(service) = Service::from_path(&service) else {
        return no_such_service();
    };
    let req = match parse_request(&body, Limits::default()) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(service = service.path_name(), error = %e, "refused a malformed SOAP request");
            return fault_response(&parse_error_fault(&e));
        }
    };
    let result = match service {
        Service::SystemInfo => system_info::handle(&req, &jiff::Zoned::now()),
        Service::Login => login::handle(&state, &req, &client_ip(peer, &headers)).await,
        Service::Demographic => {
            match ws_security::authenticate(&state, &req, &client_ip(peer, &headers)).await {
                Ok(who) => demographic::soap::handle(&state, &req, &who).await,
                Err(fault) => Err(fault),
            }
        }
    };
    match result {
        Ok(body) => soap_response(StatusCode::OK, body),
        Err(fault) => fault_response(&fault),
    }
}

/// `GET /ws/{service}?wsdl`. Other GETs are not part of OSCAR's SOAP surface.
pub async fn get(
    Path(service): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let Some(service) = Service::from_path(&service) else {
        return no_such_service();
    };
    let wants_wsdl = query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|p| p.eq_ignore_ascii_case("wsdl")));
    if !wants_wsdl {
        return fault_response(&Fault::Client(
            "No such operation: send a SOAP POST, or GET ?wsdl for the service description".into(),
        ));
    }
    let location = wsdl::location(peer, &headers, uri.path());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        wsdl::document(service, &location),
    )
        .into_response()
}

fn no_such_service() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain;charset=UTF-8")],
        "No service was found.",
    )
        .into_response()
}

/// `GET /ws/`: the list of services, as CXF's service list page offers it.
pub async fn service_list(
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    OriginalUri(uri): OriginalUri,
) -> Html<String> {
    let base = uri.path().trim_end_matches('/');
    let mut html = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>CXF - Service list</title></head><body><span class=\"heading\">Available SOAP services:</span><br/><table>",
    );
    for s in Service::ALL {
        let loc = wsdl::location(peer, &headers, &format!("{base}/{}", s.path_name()));
        html.push_str(&format!(
            "<tr><td><span class=\"porttypename\">{name}</span></td><td><span class=\"field\">Endpoint address:</span> <span class=\"value\">{loc}</span><br/><span class=\"field\">WSDL :</span> <a href=\"{loc}?wsdl\">{{{OSCAR_NS}}}{name}WsService</a></td></tr>",
            name = s.path_name().trim_end_matches("Service"),
        ));
    }
    html.push_str("</table></body></html>");
    Html(html)
}
