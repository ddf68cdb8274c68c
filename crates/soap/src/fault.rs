//! The SOAP faults OSCAR's CXF endpoints send, all with HTTP 500.

use std::fmt::Write as _;

use crate::response::ResponseWriter;
use crate::{OSCAR_NS, WSSE_NS};

/// A SOAP fault as OSCAR sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The request could not be understood (`soap:Client`). The string names what was wrong.
    Client(String),
    /// An exception inside an operation: CXF hides the cause behind a fixed string.
    Server,
    /// `org.oscarehr.util.NotAuthorisedException`, the declared fault of `LoginService`.
    NotAuthorised(String),
    /// No `wsse:Security` header on a protected endpoint.
    InvalidSecurity,
    /// A wrong id, token or password type in the `UsernameToken`.
    FailedAuthentication,
}

impl Fault {
    /// HTTP status for the fault: CXF answers every SOAP 1.1 fault with 500.
    pub const HTTP_STATUS: u16 = 500;

    /// The full envelope, exactly as CXF writes it.
    pub fn to_envelope(&self) -> String {
        let mut body = String::with_capacity(256);
        body.push_str("<soap:Fault>");
        match self {
            Fault::Client(msg) => {
                let _ = write!(
                    body,
                    "<faultcode>soap:Client</faultcode><faultstring>{}</faultstring>",
                    quick_xml::escape::partial_escape(msg)
                );
            }
            Fault::Server => {
                body.push_str("<faultcode>soap:Server</faultcode><faultstring>Fault occurred while processing.</faultstring>");
            }
            Fault::NotAuthorised(msg) => {
                let msg = quick_xml::escape::partial_escape(msg);
                let _ = write!(
                    body,
                    "<faultcode>soap:Server</faultcode><faultstring>{msg}</faultstring><detail><ns2:NotAuthorisedException xmlns:ns2=\"{OSCAR_NS}\"><message>{msg}</message></ns2:NotAuthorisedException></detail>"
                );
            }
            Fault::InvalidSecurity => {
                let _ = write!(
                    body,
                    "<faultcode xmlns:ns1=\"{WSSE_NS}\">ns1:InvalidSecurity</faultcode><faultstring>An error was discovered processing the &lt;wsse:Security&gt; header</faultstring>"
                );
            }
            Fault::FailedAuthentication => {
                let _ = write!(
                    body,
                    "<faultcode xmlns:ns1=\"{WSSE_NS}\">ns1:FailedAuthentication</faultcode><faultstring>The security token could not be authenticated or authorized</faultstring>"
                );
            }
        }
        body.push_str("</soap:Fault>");
        ResponseWriter::envelope(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_authorised_matches_oscar() {
        assert_eq!(
            Fault::NotAuthorised("Invalid Username/Password".into()).to_envelope(),
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>soap:Server</faultcode><faultstring>Invalid Username/Password</faultstring><detail><ns2:NotAuthorisedException xmlns:ns2="http://ws.oscarehr.org/"><message>Invalid Username/Password</message></ns2:NotAuthorisedException></detail></soap:Fault></soap:Body></soap:Envelope>"#
        );
    }
}
