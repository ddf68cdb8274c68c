//! Bad input gets an OSCAR-style fault or a 4xx, never a panic, and changes nothing.

use std::time::Duration;

use oscarbox_test_harness::{is_alive, login_envelope, soap, Emr, MariaDb};

const EMR: &str = env!("CARGO_BIN_EXE_oscar-emr");

#[tokio::test]
async fn hostile_and_malformed_requests_are_refused_cheaply() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let cfg = db.write_config(1, "")?;
    let emr = Emr::start(EMR.as_ref(), &cfg, 1).await?;
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let before = db.checksums(&["log"]).await?;
    let login = emr.url("/ws/LoginService");

    let billion_laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><login2><arg0>&lol3;</arg0><arg1>x</arg1></login2></soap:Body></soap:Envelope>"#;
    let external_entity = r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><login2><arg0>&xxe;</arg0></login2></soap:Body></soap:Envelope>"#;
    let deep = format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><login2><arg0>{}</arg0></login2></soap:Body></soap:Envelope>"#,
        "<a>".repeat(50_000)
    );
    let wrong_type = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><login2 xmlns="http://ws.oscarehr.org/"><arg0><name>oscardoc</name></arg0><arg1>x</arg1></login2></soap:Body></soap:Envelope>"#;
    let cases: Vec<(&str, String, &str)> = vec![
        ("truncated XML", r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><login2>"#.into(), "not well-formed"),
        ("mismatched tags", r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><login2></login3></soap:Body></soap:Envelope>"#.into(), "not well-formed"),
        ("unbound prefix", "<soap:Envelope><soap:Body>".into(), "not a SOAP 1.1 Envelope"),
        ("not XML at all", "GET / HTTP/1.1".into(), "not a SOAP 1.1 Envelope"),
        ("billion laughs", billion_laughs.into(), "document type declarations are not allowed"),
        ("external entity", external_entity.into(), "document type declarations are not allowed"),
        ("deep nesting", deep, "deeper than 32 levels"),
        ("wrong element type", wrong_type.into(), "parameter arg0 has the wrong type: expected a string"),
        ("SOAP 1.2", r#"<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body/></e:Envelope>"#.into(), "SOAP 1.2 is not supported"),
        ("empty body", String::new(), "not a SOAP 1.1 Envelope"),
    ];
    for (what, body, expected) in cases {
        let (status, answer) = soap(&c, &login, &body).await?;
        assert_eq!(status, 500, "{what}: {answer}");
        assert!(
            answer.contains("<faultcode>soap:Client</faultcode>"),
            "{what}: {answer}"
        );
        assert!(
            answer.contains(expected),
            "{what}: expected {expected:?} in {answer}"
        );
    }

    // SQL metacharacters in a user name are data, never SQL.
    for user in [
        "' OR '1'='1",
        "oscardoc'; DROP TABLE security; --",
        "\\' OR 1=1 #",
        "%",
        "_",
    ] {
        let (status, answer) =
            soap(&c, &login, &login_envelope("login2", user, "x' OR '1'='1")).await?;
        assert_eq!(status, 500, "{user}");
        assert!(
            answer.contains("Invalid Username/Password"),
            "{user}: {answer}"
        );
    }

    // A body over the limit is refused before it is read whole.
    let huge = "x".repeat(2 * 1024 * 1024);
    let resp = c.post(&login).body(huge).send().await?;
    assert_eq!(resp.status(), 413);

    // The instance is still well (asked on a new connection: the server closes the one it
    // refused a body on), and nothing but the audit log changed.
    let fresh = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    assert!(is_alive(&fresh, emr.addr).await);
    assert_eq!(db.checksums(&["log"]).await?, before);
    assert!(emr.log().iter().all(|l| !l.contains("panicked")));
    Ok(())
}
