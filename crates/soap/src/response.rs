//! CXF-exact SOAP responses: no XML declaration, `soap:` envelope, `ns2:` payload, unqualified
//! children in the order the caller writes them (OSCAR's transfer objects are alphabetical).

use std::fmt::Write as _;

use crate::{OSCAR_NS, SOAP11_NS};

const ENVELOPE_OPEN: &str = concat!(
    "<soap:Envelope xmlns:soap=\"",
    "http://schemas.xmlsoap.org/soap/envelope/",
    "\"><soap:Body>"
);
const ENVELOPE_CLOSE: &str = "</soap:Body></soap:Envelope>";

/// Writes one operation's response envelope.
#[derive(Debug)]
pub struct ResponseWriter;

impl ResponseWriter {
    /// `<ns2:{operation}Response>` holding whatever `fill` writes, or the empty wrapper CXF
    /// sends for a `null` return when `fill` writes nothing.
    pub fn write(operation: &str, fill: impl FnOnce(&mut Elements)) -> String {
        debug_assert_eq!(SOAP11_NS, "http://schemas.xmlsoap.org/soap/envelope/");
        let mut inner = Elements::default();
        fill(&mut inner);
        let mut out = String::with_capacity(ENVELOPE_OPEN.len() + inner.buf.len() + 128);
        out.push_str(ENVELOPE_OPEN);
        if inner.buf.is_empty() {
            let _ = write!(out, "<ns2:{operation}Response xmlns:ns2=\"{OSCAR_NS}\"/>");
        } else {
            let _ = write!(
                out,
                "<ns2:{operation}Response xmlns:ns2=\"{OSCAR_NS}\">{}</ns2:{operation}Response>",
                inner.buf
            );
        }
        out.push_str(ENVELOPE_CLOSE);
        out
    }

    /// Wraps an already rendered `<soap:Fault>` in the envelope.
    pub(crate) fn envelope(body: &str) -> String {
        let mut out = String::with_capacity(ENVELOPE_OPEN.len() + body.len() + 32);
        out.push_str(ENVELOPE_OPEN);
        out.push_str(body);
        out.push_str(ENVELOPE_CLOSE);
        out
    }
}

/// Unqualified child elements, escaped the way CXF's Woodstox writer escapes text.
#[derive(Debug, Default)]
pub struct Elements {
    buf: String,
}

impl Elements {
    /// A string element; `None` is omitted, as JAXB omits nulls.
    pub fn text(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        if let Some(v) = value {
            let _ = write!(
                self.buf,
                "<{name}>{}</{name}>",
                quick_xml::escape::partial_escape(v)
            );
        }
        self
    }

    /// A value that needs no escaping (numbers, booleans, formatted dates).
    pub fn display(&mut self, name: &str, value: Option<impl std::fmt::Display>) -> &mut Self {
        if let Some(v) = value {
            let _ = write!(self.buf, "<{name}>{v}</{name}>");
        }
        self
    }

    /// A complex child, omitted when `value` is `None`.
    pub fn nested<T>(
        &mut self,
        name: &str,
        value: Option<T>,
        fill: impl FnOnce(&mut Elements, T),
    ) -> &mut Self {
        if let Some(v) = value {
            let _ = write!(self.buf, "<{name}>");
            fill(self, v);
            let _ = write!(self.buf, "</{name}>");
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_cxf_framing() {
        let s = ResponseWriter::write("isAlive", |e| {
            e.text("return", Some("alive"));
        });
        assert_eq!(
            s,
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ns2:isAliveResponse xmlns:ns2="http://ws.oscarehr.org/"><return>alive</return></ns2:isAliveResponse></soap:Body></soap:Envelope>"#
        );
    }

    #[test]
    fn null_return_is_an_empty_wrapper() {
        let s = ResponseWriter::write("getDemographic", |_| {});
        assert_eq!(
            s,
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ns2:getDemographicResponse xmlns:ns2="http://ws.oscarehr.org/"/></soap:Body></soap:Envelope>"#
        );
    }

    #[test]
    fn escapes_text_and_omits_nulls() {
        let s = ResponseWriter::write("x", |e| {
            e.nested("return", Some(()), |e, ()| {
                e.text("a", Some("<b>&"))
                    .text("b", None)
                    .display("c", Some(5))
                    .display("d", None::<i32>);
            });
        });
        assert!(
            s.contains("<return><a>&lt;b&gt;&amp;</a><c>5</c></return>"),
            "{s}"
        );
    }
}
