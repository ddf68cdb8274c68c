//! SOAP wire compatibility against a real instance on a real MariaDB: byte-for-byte envelopes
//! where the answer does not depend on the clock, OSCAR's shapes where it does, and logins
//! with OSCAR's audit rows, legacy hashes and lockout.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use oscarbox_test_harness::{login_envelope, soap, Emr, MariaDb};

const EMR: &str = env!("CARGO_BIN_EXE_oscar-emr");

fn envelope(op: &str) -> String {
    format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ws="http://ws.oscarehr.org/"><soapenv:Body><ws:{op}/></soapenv:Body></soapenv:Envelope>"#
    )
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

const NOT_AUTHORISED: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>soap:Server</faultcode><faultstring>Invalid Username/Password</faultstring><detail><ns2:NotAuthorisedException xmlns:ns2="http://ws.oscarehr.org/"><message>Invalid Username/Password</message></ns2:NotAuthorisedException></detail></soap:Fault></soap:Body></soap:Envelope>"#;

#[tokio::test]
async fn system_info_answers_as_oscar_does() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let cfg = db.write_config(1, "")?;
    let emr = Emr::start(EMR.as_ref(), &cfg, 1).await?;
    let c = client();
    for prefix in ["", "/oscar"] {
        let url = emr.url(&format!("{prefix}/ws/SystemInfoService"));
        let resp = c
            .post(&url)
            .header("content-type", "text/xml; charset=UTF-8")
            .body(envelope("isAlive"))
            .send()
            .await?;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"],
            "text/xml;charset=UTF-8",
            "CXF's exact content type"
        );
        assert_eq!(
            resp.text().await?,
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ns2:isAliveResponse xmlns:ns2="http://ws.oscarehr.org/"><return>alive</return></ns2:isAliveResponse></soap:Body></soap:Envelope>"#
        );
        let (status, body) = soap(&c, &url, &envelope("getMaxListReturnSize")).await?;
        assert_eq!(
            (status, body.as_str()),
            (
                200,
                r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ns2:getMaxListReturnSizeResponse xmlns:ns2="http://ws.oscarehr.org/"><return>5000</return></ns2:getMaxListReturnSizeResponse></soap:Body></soap:Envelope>"#
            )
        );
    }
    // The clock-dependent answers: the exact bytes are unit-tested with a fixed clock
    // (system_info.rs); here, that the live answers have the same frame and a current value.
    let url = emr.url("/ws/SystemInfoService");
    let frame = |op: &str, inner: &str| {
        format!(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ns2:{op}Response xmlns:ns2="http://ws.oscarehr.org/"><return>{inner}</return></ns2:{op}Response></soap:Body></soap:Envelope>"#
        )
    };
    let now = jiff::Zoned::now();
    let (_, body) = soap(&c, &url, &envelope("getServerTimeGmtOffset")).await?;
    assert_eq!(
        body,
        frame(
            "getServerTimeGmtOffset",
            &(now.offset().seconds() * 1000).to_string()
        )
    );
    let (_, body) = soap(&c, &url, &envelope("getServerTime")).await?;
    let returned = body
        .split("<return>")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .expect("a return value");
    let t: jiff::Timestamp = returned.parse()?;
    assert!(
        (t - now.timestamp()).abs().get_seconds() < 60,
        "server time {returned} is current"
    );
    let (_, body) = soap(&c, &url, &envelope("helloWorld")).await?;
    assert!(
        body.starts_with(
            &frame(
                "helloWorld",
                "Hello World! the configuration works! and your client works! :) "
            )[..180]
        ),
        "{body}"
    );

    // An unknown operation is a client fault, HTTP 500, never a panic.
    let (status, body) = soap(&c, &url, &envelope("dropAllTables")).await?;
    assert_eq!(status, 500);
    assert!(body.contains("<faultcode>soap:Client</faultcode><faultstring>Unexpected wrapper element {http://ws.oscarehr.org/}dropAllTables found.</faultstring>"), "{body}");
    Ok(())
}

#[tokio::test]
async fn wsdl_is_served_with_the_callers_address() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let cfg = db.write_config(1, "")?;
    let emr = Emr::start(EMR.as_ref(), &cfg, 1).await?;
    let c = client();
    for (svc, shipped) in [
        (
            "SystemInfoService",
            include_str!("../wsdl/SystemInfoService.wsdl"),
        ),
        ("LoginService", include_str!("../wsdl/LoginService.wsdl")),
    ] {
        let body = c
            .get(emr.url(&format!("/oscar/ws/{svc}?wsdl")))
            .send()
            .await?
            .text()
            .await?;
        let here = format!("http://{}/oscar/ws/{svc}", emr.addr);
        assert!(body.contains(&format!("location=\"{here}\"")), "{body}");
        // Everything but the address is what OSCAR 19 served.
        let original = shipped
            .split("location=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("a location");
        assert_eq!(body.replace(&here, original), shipped);
    }
    let list = c.get(emr.url("/ws/")).send().await?.text().await?;
    assert!(list.contains("LoginService?wsdl") && list.contains("SystemInfoService?wsdl"));
    let missing = c.get(emr.url("/ws/NoSuchService?wsdl")).send().await?;
    assert_eq!(missing.status(), 404);
    Ok(())
}

#[tokio::test]
async fn logins_audit_upgrade_and_lock() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let cfg = db.write_config(1, "")?;
    let emr = Emr::start(EMR.as_ref(), &cfg, 1).await?;
    let (user, password) = emr
        .admin_credentials()
        .expect("first start printed the administrator");
    assert_eq!(user, "oscardoc");
    assert_ne!(password, "mac2002", "never OSCAR's well-known default");
    let c = client();
    let url = emr.url("/oscar/ws/LoginService");

    // login2 with the printed password.
    let (status, body) = soap(&c, &url, &login_envelope("login2", &user, &password)).await?;
    assert_eq!(status, 200, "{body}");
    let token = body
        .split("<securityTokenKey>")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .expect("a token")
        .to_owned();
    assert_eq!(
        body,
        format!(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ns2:login2Response xmlns:ns2="http://ws.oscarehr.org/"><return><provider><firstName>doctor</firstName><lastName>oscardoc</lastName><providerNo>999998</providerNo><providerType>doctor</providerType><sex>M</sex><specialty></specialty><status>1</status><team></team></provider><securityId>128</securityId><securityTokenKey>{token}</securityTokenKey></return></ns2:login2Response></soap:Body></soap:Envelope>"#
        )
    );
    // The token is stable across logins, as OSCAR's is between restarts.
    let (_, again) = soap(&c, &url, &login_envelope("login", &user, &password)).await?;
    assert_eq!(
        again,
        format!(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ns2:loginResponse xmlns:ns2="http://ws.oscarehr.org/"><return><securityId>128</securityId><securityTokenKey>{token}</securityTokenKey></return></ns2:loginResponse></soap:Body></soap:Envelope>"#
        )
    );

    // Wrong password and unknown user: the same fault, byte for byte, HTTP 500.
    for (u, p) in [(user.as_str(), "wrong"), ("nobody", "x")] {
        let (status, body) = soap(&c, &url, &login_envelope("login2", u, p)).await?;
        assert_eq!((status, body.as_str()), (500, NOT_AUTHORISED));
    }
    let mut root = db.root().await?;
    let audit: Vec<(String, Option<String>, String)> = root
        .query("SELECT action, provider_no, ip FROM `log` ORDER BY id")
        .await?;
    assert_eq!(
        audit,
        vec![
            (
                "WS_LOGIN_SUCCESS".into(),
                Some("999998".into()),
                "127.0.0.1".into()
            ),
            (
                "WS_LOGIN_SUCCESS".into(),
                Some("999998".into()),
                "127.0.0.1".into()
            ),
            ("WS_LOGIN_FAILURE".into(), None, "127.0.0.1".into()),
            ("WS_LOGIN_FAILURE".into(), None, "127.0.0.1".into()),
        ]
    );

    // An account imported from OSCAR with the legacy SHA-1 hash signs in and is upgraded.
    root.query_drop(
        "INSERT INTO provider (provider_no, last_name, first_name, provider_type, sex, status, lastUpdateDate, dob) VALUES ('100', 'Lee', 'Ann', 'doctor', 'F', '1', NOW(), '1970-01-01')",
    )
    .await?;
    root.query_drop(
        "INSERT INTO security (user_name, password, provider_no, pin) VALUES ('alee', '-51-282443-97-5-9410489-60-1021-45-127-12435464-32', '100', '1117')",
    )
    .await?;
    let (status, body) = soap(&c, &url, &login_envelope("login2", "alee", "mac2002")).await?;
    assert_eq!(status, 200, "{body}");
    let expected_dob = jiff::civil::date(1970, 1, 1).to_zoned(jiff::tz::TimeZone::system())?;
    assert!(
        body.contains(&format!(
            "<provider><dob>{}</dob><firstName>Ann</firstName>",
            oscar_emr::system_info::xs_date_time(&expected_dob)
        )),
        "{body}"
    );
    let stored: Option<String> = root
        .query_first("SELECT password FROM security WHERE user_name = 'alee'")
        .await?;
    assert!(
        stored.is_some_and(|s| s.starts_with("$argon2id$")),
        "legacy hash upgraded"
    );
    let (status, _) = soap(&c, &url, &login_envelope("login2", "alee", "mac2002")).await?;
    assert_eq!(status, 200, "the upgraded hash still accepts the password");
    // Eight sign-ins at once with the right password all succeed (the lockout allows three
    // failures): only failures count, so a busy client never locks its own account.
    let envelope = login_envelope("login2", "alee", "mac2002");
    let at_once = (0..8).map(|_| soap(&c, &url, &envelope));
    for answer in futures_util::future::join_all(at_once).await {
        let (status, body) = answer?;
        assert_eq!(status, 200, "{body}");
    }

    // Three failures lock the account: then even the right password is refused.
    for _ in 0..3 {
        let (status, _) = soap(&c, &url, &login_envelope("login2", "alee", "guess")).await?;
        assert_eq!(status, 500);
    }
    let (status, body) = soap(&c, &url, &login_envelope("login2", "alee", "mac2002")).await?;
    assert_eq!((status, body.as_str()), (500, NOT_AUTHORISED), "locked out");
    let locked: Option<i64> = root
        .query_first(
            "SELECT locked_until > NOW() FROM oscarbox_login_failure WHERE user_name = 'alee'",
        )
        .await?;
    assert_eq!(locked, Some(1));
    // The administrator is not affected by another account's lock.
    let (status, _) = soap(&c, &url, &login_envelope("login2", &user, &password)).await?;
    assert_eq!(status, 200);
    Ok(())
}
