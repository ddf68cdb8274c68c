//! `SystemInfoService`: OSCAR's unauthenticated health and clock operations (reference §1.3).

use jiff::Zoned;
use oscar_soap::{Fault, Request, ResponseWriter};

/// OSCAR's `AbstractDao.MAX_LIST_RETURN_SIZE`.
pub const MAX_LIST_RETURN_SIZE: i32 = 5000;

/// Answers one `SystemInfoService` operation as of `now`. Touches nothing: `isAlive` must stay
/// cheap and must not depend on the database, exactly like OSCAR's.
pub fn handle(req: &Request, now: &Zoned) -> Result<String, Fault> {
    let op = req.operation.as_str();
    let body = match op {
        "isAlive" => ResponseWriter::write(op, |e| {
            e.text("return", Some("alive"));
        }),
        "helloWorld" => ResponseWriter::write(op, |e| {
            let text = format!(
                "Hello World! the configuration works! and your client works! :) {}",
                java_date_to_string(now)
            );
            e.text("return", Some(&text));
        }),
        "getMaxListReturnSize" => ResponseWriter::write(op, |e| {
            e.display("return", Some(MAX_LIST_RETURN_SIZE));
        }),
        "getServerTime" => ResponseWriter::write(op, |e| {
            e.display("return", Some(xs_date_time(now)));
        }),
        "getServerTimeGmtOffset" => ResponseWriter::write(op, |e| {
            e.display("return", Some(now.offset().seconds() * 1000));
        }),
        other => return Err(crate::soap::unknown_operation(other)),
    };
    Ok(body)
}

/// `java.util.Date.toString()`: `Mon Nov 23 02:24:55 EST 2026`.
pub fn java_date_to_string(t: &Zoned) -> String {
    t.strftime("%a %b %d %H:%M:%S %Z %Y").to_string()
}

/// JAXB's `xs:dateTime` for a `Calendar`: milliseconds only when non-zero (always three
/// digits), the offset as `±hh:mm`, or `Z` for UTC.
pub fn xs_date_time(t: &Zoned) -> String {
    let mut s = t.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let ms = t.millisecond();
    if ms != 0 {
        s.push_str(&format!(".{ms:03}"));
    }
    if t.offset().seconds() == 0 {
        s.push('Z');
    } else {
        s.push_str(&t.strftime("%:z").to_string());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Zoned {
        s.parse().expect("a valid zoned time")
    }

    fn request(op: &str) -> Request {
        let body = format!(
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ws="http://ws.oscarehr.org/"><soapenv:Body><ws:{op}/></soapenv:Body></soapenv:Envelope>"#
        );
        oscar_soap::parse_request(body.as_bytes(), oscar_soap::Limits::default()).expect("valid")
    }

    /// Every operation, byte for byte against the reference envelopes (§1.3), at the
    /// reference's instant in the reference's zone.
    #[test]
    fn every_operation_matches_the_reference_envelope() {
        let now = at("2026-11-23T02:24:55.469-05:00[America/Toronto]");
        let frame = |op: &str, value: &str| {
            format!(
                r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ns2:{op}Response xmlns:ns2="http://ws.oscarehr.org/"><return>{value}</return></ns2:{op}Response></soap:Body></soap:Envelope>"#
            )
        };
        let cases = [
            ("isAlive", "alive"),
            ("getServerTime", "2026-11-23T02:24:55.469-05:00"),
            ("getServerTimeGmtOffset", "-18000000"),
            ("getMaxListReturnSize", "5000"),
            ("helloWorld", "Hello World! the configuration works! and your client works! :) Mon Nov 23 02:24:55 EST 2026"),
        ];
        for (op, value) in cases {
            assert_eq!(handle(&request(op), &now), Ok(frame(op, value)), "{op}");
        }
        assert!(matches!(
            handle(&request("shutdown"), &now),
            Err(Fault::Client(_))
        ));
    }

    #[test]
    fn formats_dates_as_jaxb_and_java_do() {
        let t = at("2026-11-23T02:24:55.469-05:00[America/Toronto]");
        assert_eq!(xs_date_time(&t), "2026-11-23T02:24:55.469-05:00");
        assert_eq!(java_date_to_string(&t), "Mon Nov 23 02:24:55 EST 2026");
        let whole = at("2019-07-16T00:00:00-04:00[America/Toronto]");
        assert_eq!(xs_date_time(&whole), "2019-07-16T00:00:00-04:00");
        let utc = at("2026-09-21T10:00:00+00:00[UTC]");
        assert_eq!(xs_date_time(&utc), "2026-09-21T10:00:00Z");
        assert_eq!(java_date_to_string(&utc), "Mon Sep 21 10:00:00 UTC 2026");
        let early_ms = at("2026-01-02T03:04:05.007+05:30[Asia/Kolkata]");
        assert_eq!(xs_date_time(&early_ms), "2026-01-02T03:04:05.007+05:30");
    }
}
