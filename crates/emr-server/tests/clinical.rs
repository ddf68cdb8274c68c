//! The clinical API end to end, on real MariaDB and real `oscar-emr` instances: OAuth 1.0a
//! driven by Python's `oauthlib`/`requests-oauthlib`, SOAP `DemographicService` by a `zeep`
//! client generated from our WSDL, browser sessions across instances and restarts, documents
//! streamed both ways, and bad input that changes nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use oscarbox_test_harness::{soap, Emr, EmrConfig, MariaDb};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const EMR: &str = env!("CARGO_BIN_EXE_oscar-emr");
const CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/soap-clients");

/// The administrator's user name, password and PIN, from the 0600 credentials file.
fn credentials(cfg: &EmrConfig) -> anyhow::Result<(String, String, String)> {
    let text = std::fs::read_to_string(cfg.state_dir.join("secrets/initial-admin-password"))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            .ok_or_else(|| anyhow::anyhow!("no {name} in the credentials file"))
    };
    Ok((field("user name:")?, field("password:")?, field("PIN:")?))
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// Signs in through the browser form; returns the `Cookie` header value.
async fn sign_in(
    c: &reqwest::Client,
    emr: &Emr,
    user: &str,
    password: &str,
    pin: &str,
) -> anyhow::Result<String> {
    let resp = c
        .post(emr.url("/oscar/login.do"))
        .form(&[("username", user), ("password", password), ("pin", pin)])
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 200, "sign-in answered {}", resp.status());
    let set = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| anyhow::anyhow!("no session cookie"))?;
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax"),
        "{set}"
    );
    Ok(set.split(';').next().unwrap_or_default().to_owned())
}

async fn create_patient(
    c: &reqwest::Client,
    emr: &Emr,
    cookie: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let resp = c
        .post(emr.url("/ws/rs/demographics"))
        .header("cookie", cookie)
        .json(body)
        .send()
        .await?;
    let status = resp.status();
    let text = resp.text().await?;
    anyhow::ensure!(status == 200, "create answered {status}: {text}");
    Ok(serde_json::from_str(&text)?)
}

fn patient(last: &str, first: &str) -> Value {
    json!({
        "lastName": last, "firstName": first, "sex": "F",
        "dobYear": "1961", "dobMonth": "04", "dobDay": "07",
        "hin": "9876543217", "hcType": "ON", "phone": "905-555-0142",
        "address": {"address": "12 Queen St", "city": "Hamilton", "province": "ON", "postal": "L8P 1A1"},
        "providerNo": "999998", "chartNo": "C-17"
    })
}

async fn oscar_emr(cfg: &EmrConfig, args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(EMR)
        .arg("--config")
        .arg(&cfg.path)
        .args(args)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "oscar-emr {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn key_and_secret(out: &str) -> anyhow::Result<(String, String)> {
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            .ok_or_else(|| anyhow::anyhow!("no {name} in {out:?}"))
    };
    Ok((field("key:")?, field("secret:")?))
}

async fn python(script: &str, args: &[String]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("/usr/bin/python3")
        .arg(format!("{CLIENTS}/{script}"))
        .args(args)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "{script} failed ({}); run scripts/install-deps --test if a module is missing\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

fn line_json(out: &str, prefix: &str) -> anyhow::Result<Value> {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .ok_or_else(|| anyhow::anyhow!("no {prefix:?} line in {out}"))?;
    Ok(serde_json::from_str(line)?)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[tokio::test]
async fn oauth_rest_and_soap_clients_read_the_same_patient() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let cfg = db.write_config(1, "")?;
    let emr = Emr::start(EMR.as_ref(), &cfg, 1).await?;
    let (user, password, pin) = credentials(&cfg)?;
    let c = client()?;
    let cookie = sign_in(&c, &emr, &user, &password, &pin).await?;

    // SQL metacharacters in a name are characters: stored and read back verbatim.
    let created = create_patient(&c, &emr, &cookie, &patient("O'Brien; --", "Zoë")).await?;
    let id = created["demographicNo"].as_i64().expect("a patient number");
    assert_eq!(created["lastName"], "O'BRIEN; --");
    let updated = c
        .put(emr.url("/ws/rs/demographics"))
        .header("cookie", &cookie)
        .json(&json!({"demographicNo": id, "phone": "905-555-0199", "email": null}))
        .send()
        .await?;
    assert_eq!(updated.status(), 200);
    let updated: Value = updated.json().await?;
    assert_eq!(updated["phone"], "905-555-0199");
    assert_eq!(
        updated["firstName"], created["firstName"],
        "fields left out keep their value"
    );

    let full = key_and_secret(
        &oscar_emr(
            &cfg,
            &[
                "oauth-client",
                "add",
                "--name",
                "booking",
                "--uri",
                "http://127.0.0.1:9/",
                "--lifetime",
                "1h",
            ],
        )
        .await?,
    )?;
    let short = key_and_secret(
        &oscar_emr(
            &cfg,
            &[
                "oauth-client",
                "add",
                "--name",
                "short",
                "--uri",
                "http://127.0.0.1:9/",
                "--lifetime",
                "2",
            ],
        )
        .await?,
    )?;
    let listed = oscar_emr(&cfg, &["oauth-client", "list"]).await?;
    assert!(
        listed.contains("booking") && listed.contains(&full.0) && !listed.contains(&full.1),
        "{listed}"
    );

    let base = format!("http://{}", emr.addr);
    let oauth = python(
        "oauth_flow.py",
        &[
            base.clone(),
            full.0,
            full.1,
            short.0,
            short.1,
            user.clone(),
            password.clone(),
            pin,
            id.to_string(),
        ],
    )
    .await?;
    for line in [
        "initiate: ok",
        "authorize with a wrong password: refused",
        "authorize: ok",
        "token: ok",
        "token exchange replayed: refused",
        "quickSearch: found",
        "checkIfAuthed: ok",
        "tampered signature: 401",
        "replayed nonce: 401",
        "stale timestamp: 401",
        "no Authorization: 401",
        "authorize signed in: ok",
        "expired token: 401",
    ] {
        assert!(
            oauth.lines().any(|l| l == line),
            "missing {line:?} in:\n{oauth}"
        );
    }
    let rest = line_json(&oauth, "demographic: ")?;

    let zeep = python(
        "zeep_demographic.py",
        &[base, user, password, id.to_string(), "O'BRIEN".into()],
    )
    .await?;
    for line in [
        "getDemographic2: ok",
        "searchDemographicByName: found",
        "getDemographics: 1",
        "password as token: ok",
        "no security header: fault",
        "wrong token: fault",
        "unknown id: none",
    ] {
        assert!(
            zeep.lines().any(|l| l == line),
            "missing {line:?} in:\n{zeep}"
        );
    }
    let soap = line_json(&zeep, "getDemographic: ")?;

    // Field by field: REST's JSON names against SOAP's transfer names.
    let pairs = [
        ("demographicNo", "demographicNo"),
        ("lastName", "lastName"),
        ("firstName", "firstName"),
        ("sex", "sex"),
        ("hin", "hin"),
        ("hcType", "hcType"),
        ("phone", "phone"),
        ("chartNo", "chartNo"),
        ("providerNo", "providerNo"),
        ("patientStatus", "patientStatus"),
        ("dobYear", "yearOfBirth"),
        ("dobMonth", "monthOfBirth"),
        ("dobDay", "dateOfBirth"),
    ];
    for (r, s) in pairs {
        assert_eq!(text(&rest[r]), text(&soap[s]), "REST {r} against SOAP {s}");
        assert!(text(&rest[r]).is_some(), "REST {r} is empty");
    }
    for (r, s) in [
        ("address", "address"),
        ("city", "city"),
        ("province", "province"),
        ("postal", "postal"),
    ] {
        assert_eq!(
            text(&rest["address"][r]),
            text(&soap[s]),
            "REST address.{r} against SOAP {s}"
        );
    }

    // Every read was audited, with who and which patient, and no patient data in `data`.
    let mut conn = db.root().await?;
    let reads: Vec<(Option<String>, String, Option<String>)> = conn
        .exec(
            format!(
                "SELECT provider_no, action, data FROM {}.log WHERE demographic_no = ? ORDER BY id",
                db.database
            ),
            (id,),
        )
        .await?;
    let actions: Vec<&str> = reads.iter().map(|(_, a, _)| a.as_str()).collect();
    assert!(
        actions.contains(&"add") && actions.contains(&"update") && actions.contains(&"read"),
        "{actions:?}"
    );
    assert!(
        reads.iter().all(|(p, _, _)| p.as_deref() == Some("999998")),
        "{reads:?}"
    );
    assert!(
        reads
            .iter()
            .filter_map(|(_, _, d)| d.as_deref())
            .all(|d| !d.contains("BRIEN") && !d.contains("9876543217")),
        "{reads:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_browser_session_is_valid_on_every_instance_and_survives_a_restart() -> anyhow::Result<()>
{
    let db = MariaDb::start().await?;
    let cfg = db.write_config(2, "")?;
    let one = Emr::start(EMR.as_ref(), &cfg, 1).await?;
    let two = Emr::start(EMR.as_ref(), &cfg, 2).await?;
    let (user, password, pin) = credentials(&cfg)?;
    let c = client()?;

    let unauthorized = c.get(two.url("/ws/rs/status/checkIfAuthed")).send().await?;
    assert_eq!(unauthorized.status(), 401);
    assert_eq!(unauthorized.headers()["content-type"], "text/xml");
    assert_eq!(unauthorized.text().await?, "<error>Not authorized</error>");
    let wrong_pin = c
        .post(one.url("/login.do"))
        .form(&[
            ("username", user.as_str()),
            ("password", password.as_str()),
            ("pin", "00000"),
        ])
        .send()
        .await?;
    assert_eq!(wrong_pin.status(), 401, "a wrong PIN is refused");
    assert!(wrong_pin.headers().get("set-cookie").is_none());

    let cookie = sign_in(&c, &one, &user, &password, &pin).await?;
    let check = |emr: &Emr| {
        c.get(emr.url("/ws/rs/status/checkIfAuthed"))
            .header("cookie", &cookie)
            .send()
    };
    let authed: Value = check(&two).await?.json().await?;
    assert_eq!(
        authed,
        json!({"success": true, "message": "999998"}),
        "made on one, valid on two"
    );

    let mut one = one;
    one.signal(nix::sys::signal::Signal::SIGTERM);
    one.wait_exit(Duration::from_secs(20)).await?;
    drop(one);
    let one = Emr::start(EMR.as_ref(), &cfg, 1).await?;
    assert_eq!(
        check(&one).await?.status(),
        200,
        "valid after the instance that made it restarted"
    );

    let out = c
        .post(two.url("/logout.do"))
        .header("cookie", &cookie)
        .send()
        .await?;
    assert_eq!(out.status(), 200);
    assert_eq!(check(&one).await?.status(), 401, "signed out everywhere");
    Ok(())
}

/// Peak resident memory of a process so far, in bytes (`VmHWM`).
fn peak_rss(pid: i32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmHWM"))?;
    Ok(kib * 1024)
}

const MIB: usize = 1024 * 1024;

/// `n` MiB of deterministic, incompressible-looking bytes, one MiB per chunk.
fn chunks(n: usize, seed: u8) -> impl Iterator<Item = Vec<u8>> {
    (0..n).map(move |i| {
        let mut h = Sha256::new();
        h.update([seed]);
        h.update(i.to_le_bytes());
        let block = h.finalize();
        (0..MIB).map(|j| block[j % 32] ^ (j / 32) as u8).collect()
    })
}

#[tokio::test]
async fn documents_stream_both_ways_in_flat_memory_and_refuse_bad_names() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let cfg = db.write_config_with(1, "max-document-mib = 110", "")?;
    let emr = Emr::start(EMR.as_ref(), &cfg, 1).await?;
    let (user, password, pin) = credentials(&cfg)?;
    let c = client()?;
    let cookie = sign_in(&c, &emr, &user, &password, &pin).await?;
    let p = create_patient(&c, &emr, &cookie, &patient("Streamer", "Ann")).await?;
    let id = p["demographicNo"].as_i64().expect("a patient number");
    let docs_dir = cfg
        .state_dir
        .parent()
        .expect("the test directory")
        .join("documents");
    let upload_url = |name: &str| {
        format!(
            "{}?fileName={}&docType=lab",
            emr.url(&format!("/ws/rs/demographics/{id}/documents")),
            percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
        )
    };

    let before = peak_rss(emr.pid())?;
    let mut expected = Sha256::new();
    for chunk in chunks(100, 1) {
        expected.update(&chunk);
    }
    let expected = format!("{:x}", expected.finalize());
    let stream = futures_util::stream::iter(chunks(100, 1).map(Ok::<_, std::io::Error>));
    let resp = c
        .post(upload_url("scan (1).pdf"))
        .header("cookie", &cookie)
        .header("content-type", "application/pdf")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let doc: Value = resp.json().await?;
    assert_eq!(doc["sha256"], expected.as_str());
    assert_eq!(doc["size"], 100 * MIB as u64);
    let stored = doc["docFilename"]
        .as_str()
        .expect("a stored name")
        .to_owned();
    assert!(
        stored.len() == 14 + "scan (1).pdf".len()
            && stored[..14].bytes().all(|b| b.is_ascii_digit())
            && stored.ends_with("scan (1).pdf"),
        "OSCAR's naming: {stored}"
    );
    assert_eq!(
        std::fs::metadata(docs_dir.join(&stored))?.len(),
        100 * MIB as u64
    );

    let no = doc["documentNo"].as_i64().expect("a document number");
    let mut resp = c
        .get(emr.url(&format!("/ws/rs/documents/{no}/download")))
        .header("cookie", &cookie)
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/pdf");
    let mut got = Sha256::new();
    let mut len = 0usize;
    while let Some(chunk) = resp.chunk().await? {
        len += chunk.len();
        got.update(&chunk);
    }
    assert_eq!(len, 100 * MIB);
    assert_eq!(format!("{:x}", got.finalize()), expected);
    let after = peak_rss(emr.pid())?;
    assert!(
        after.saturating_sub(before) < 48 * MIB as u64,
        "peak memory grew by {} MiB moving a 100 MiB document",
        after.saturating_sub(before) / MIB as u64
    );

    let mut conn = db.root().await?;
    let rows: Option<(String, i64, String)> = conn
        .exec_first(
            format!("SELECT d.docfilename, c.module_id, f.sha256 FROM {0}.document d JOIN {0}.ctl_document c USING (document_no) JOIN {0}.oscarbox_document_file f USING (document_no) WHERE d.document_no = ?", db.database),
            (no,),
        )
        .await?;
    assert_eq!(rows, Some((stored.clone(), id, expected.clone())));

    // Refused: names that could escape the directory, an unknown patient, an oversized body.
    let before = db.checksums(&["log", "oscarbox_session"]).await?;
    let files_before = std::fs::read_dir(&docs_dir)?.count();
    for name in [
        "../escape.pdf",
        "/etc/passwd",
        "a/b.pdf",
        "..",
        "nul\0.pdf",
        ".hidden",
    ] {
        let resp = c
            .post(upload_url(name))
            .header("cookie", &cookie)
            .body("x")
            .send()
            .await?;
        assert_eq!(resp.status(), 400, "{name:?}");
    }
    let unknown = c
        .post(emr.url("/ws/rs/demographics/99999/documents?fileName=a.pdf"))
        .header("cookie", &cookie)
        .body("x")
        .send()
        .await?;
    assert_eq!(unknown.status(), 404);
    // Declared too large: refused before a byte of the body is read.
    let declared = format!(
        "POST /ws/rs/demographics/{id}/documents?fileName=big.pdf HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nContent-Length: {}\r\n\r\n",
        emr.addr,
        200 * MIB
    );
    let mut raw = tokio::net::TcpStream::connect(emr.addr).await?;
    tokio::io::AsyncWriteExt::write_all(&mut raw, declared.as_bytes()).await?;
    let mut head = vec![0u8; 64];
    let n = tokio::io::AsyncReadExt::read(&mut raw, &mut head).await?;
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    // Streamed past the limit without a declared length: cut off (413, or the connection
    // closed under the sender), and nothing kept.
    let big = futures_util::stream::iter(chunks(111, 2).map(Ok::<_, std::io::Error>));
    let resp = c
        .post(upload_url("big.pdf"))
        .header("cookie", &cookie)
        .body(reqwest::Body::wrap_stream(big))
        .send()
        .await;
    if let Ok(resp) = resp {
        assert_eq!(resp.status(), 413);
    }
    assert_eq!(db.checksums(&["log", "oscarbox_session"]).await?, before);
    assert_eq!(
        std::fs::read_dir(&docs_dir)?.count(),
        files_before,
        "nothing left behind"
    );
    Ok(())
}

#[tokio::test]
async fn bad_input_is_answered_4xx_or_a_fault_and_changes_nothing() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    let cfg = db.write_config(1, "")?;
    let emr = Emr::start(EMR.as_ref(), &cfg, 1).await?;
    let (user, password, pin) = credentials(&cfg)?;
    let c = client()?;
    let cookie = sign_in(&c, &emr, &user, &password, &pin).await?;
    let p = create_patient(&c, &emr, &cookie, &patient("Stable", "Sam")).await?;
    let id = p["demographicNo"].as_i64().expect("a patient number");
    let volatile = ["log", "oscarbox_session", "oscarbox_login_failure"];
    let before = db.checksums(&volatile).await?;

    let long = "X".repeat(31);
    let bodies: Vec<(&str, String, u16)> = vec![
        ("invalid JSON", "{\"lastName\": ".into(), 400),
        ("not an object", "[1,2]".into(), 400),
        ("wrong type", json!({"lastName": 5, "firstName": "A", "sex": "F", "dobYear": "1990", "dobMonth": "01", "dobDay": "02"}).to_string(), 400),
        ("unknown field", json!({"lastName": "A", "firstName": "B", "sex": "F", "dobYear": "1990", "dobMonth": "01", "dobDay": "02", "drop": "table"}).to_string(), 400),
        ("missing names", json!({"sex": "F", "dobYear": "1990", "dobMonth": "01", "dobDay": "02"}).to_string(), 400),
        ("oversized name", json!({"lastName": long, "firstName": "B", "sex": "F", "dobYear": "1990", "dobMonth": "01", "dobDay": "02"}).to_string(), 400),
        ("SQL in an oversized name", json!({"lastName": "x'); DROP TABLE demographic; --", "firstName": "B", "sex": "F", "dobYear": "1990", "dobMonth": "01", "dobDay": "02"}).to_string(), 400),
        ("impossible birth date", json!({"lastName": "A", "firstName": "B", "sex": "F", "dobYear": "1990", "dobMonth": "02", "dobDay": "30"}).to_string(), 400),
        ("bad sex", json!({"lastName": "A", "firstName": "B", "sex": "Q", "dobYear": "1990", "dobMonth": "01", "dobDay": "02"}).to_string(), 400),
    ];
    for (what, body, status) in &bodies {
        let resp = c
            .post(emr.url("/ws/rs/demographics"))
            .header("cookie", &cookie)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await?;
        assert_eq!(resp.status().as_u16(), *status, "{what}");
        let answer: Value = resp.json().await?;
        assert_eq!(answer["success"], false, "{what}: {answer}");
    }
    let not_json = c
        .post(emr.url("/ws/rs/demographics"))
        .header("cookie", &cookie)
        .header("content-type", "text/plain")
        .body("lastName=A")
        .send()
        .await?;
    assert_eq!(not_json.status(), 415);
    let put_unknown = c
        .put(emr.url("/ws/rs/demographics"))
        .header("cookie", &cookie)
        .json(&json!({"demographicNo": 99999, "phone": "1"}))
        .send()
        .await?;
    assert_eq!(put_unknown.status(), 404);
    let put_bad = c
        .put(emr.url("/ws/rs/demographics"))
        .header("cookie", &cookie)
        .json(&json!({"demographicNo": id, "sex": "bad", "firstName": ""}))
        .send()
        .await?;
    assert_eq!(put_bad.status(), 400);
    let errors: Value = put_bad.json().await?;
    let fields: Vec<&str> = errors["errors"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        fields.contains(&"sex") && fields.contains(&"firstName"),
        "every problem is named: {errors}"
    );

    for (path, status) in [
        ("/ws/rs/demographics/99999".to_owned(), 404),
        ("/ws/rs/demographics/abc".to_owned(), 400),
        ("/ws/rs/demographics/-1".to_owned(), 400),
        ("/ws/rs/documents/99999/download".to_owned(), 404),
    ] {
        let resp = c
            .get(emr.url(&path))
            .header("cookie", &cookie)
            .send()
            .await?;
        assert_eq!(resp.status().as_u16(), status, "{path}");
    }
    // Searches with SQL and LIKE metacharacters match literally: nothing here.
    let mut searches: BTreeMap<&str, i64> = BTreeMap::new();
    for q in ["%", "_", "' OR 1=1 --", "addr:%", "chartNo:_%", "STABLE\\"] {
        let resp = c
            .get(emr.url("/ws/rs/demographics/quickSearch"))
            .query(&[("query", q)])
            .header("cookie", &cookie)
            .send()
            .await?;
        assert_eq!(resp.status(), 200, "{q}");
        let v: Value = resp.json().await?;
        searches.insert(q, v["total"].as_i64().unwrap_or(-1));
    }
    assert!(searches.values().all(|t| *t == 0), "{searches:?}");
    let found: Value = c
        .get(emr.url("/ws/rs/demographics/quickSearch"))
        .query(&[("query", "stab")])
        .header("cookie", &cookie)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        found["total"], 1,
        "a real prefix still finds the patient: {found}"
    );

    // SOAP: no header, a wrong token, a malformed id, an unknown id.
    let url = emr.url("/ws/DemographicService");
    let envelope = |header: &str, arg: &str| {
        format!(
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ws="http://ws.oscarehr.org/" xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><soapenv:Header>{header}</soapenv:Header><soapenv:Body><ws:getDemographic><arg0>{arg}</arg0></ws:getDemographic></soapenv:Body></soapenv:Envelope>"#
        )
    };
    let token = |pw: &str| {
        format!("<wsse:Security><wsse:UsernameToken><wsse:Username>128</wsse:Username><wsse:Password>{pw}</wsse:Password></wsse:UsernameToken></wsse:Security>")
    };
    let (status, body) = soap(&c, &url, &envelope("", "1")).await?;
    assert_eq!(status, 500);
    assert!(body.contains("ns1:InvalidSecurity"), "{body}");
    let (status, body) = soap(&c, &url, &envelope(&token("wrong"), "1")).await?;
    assert_eq!(status, 500);
    assert!(body.contains("ns1:FailedAuthentication"), "{body}");
    let (status, body) = soap(&c, &url, &envelope(&token(&password), "abc")).await?;
    assert_eq!(status, 500);
    assert!(
        body.contains("soap:Client") && body.contains("arg0"),
        "{body}"
    );
    let (status, body) = soap(&c, &url, &envelope(&token(&password), "99999")).await?;
    assert_eq!(status, 200);
    assert!(
        body.contains("<ns2:getDemographicResponse xmlns:ns2=\"http://ws.oscarehr.org/\"/>"),
        "{body}"
    );

    assert_eq!(
        db.checksums(&volatile).await?,
        before,
        "bad input changed the database"
    );
    Ok(())
}

#[tokio::test]
async fn a_password_sent_with_many_calls_at_once_does_not_lock_the_account() -> anyhow::Result<()> {
    let db = MariaDb::start().await?;
    // login-max-failures = 3 in the test configuration.
    let cfg = db.write_config(1, "")?;
    let emr = Emr::start(EMR.as_ref(), &cfg, 1).await?;
    let (user, password, pin) = credentials(&cfg)?;
    let c = client()?;
    let cookie = sign_in(&c, &emr, &user, &password, &pin).await?;
    let id = create_patient(&c, &emr, &cookie, &patient("Parallel", "Pia")).await?["demographicNo"]
        .as_i64()
        .expect("a patient number");
    let url = emr.url("/ws/DemographicService");
    let call = |pw: String| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let body = format!(
                r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ws="http://ws.oscarehr.org/" xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><soapenv:Header><wsse:Security><wsse:UsernameToken><wsse:Username>128</wsse:Username><wsse:Password>{pw}</wsse:Password></wsse:UsernameToken></wsse:Security></soapenv:Header><soapenv:Body><ws:getDemographic><arg0>{id}</arg0></ws:getDemographic></soapenv:Body></soapenv:Envelope>"#
            );
            soap(&c, &url, &body).await
        }
    };
    let calls: Vec<_> = (0..16).map(|_| call(password.clone())).collect();
    for answer in futures_util::future::join_all(calls).await {
        let (status, body) = answer?;
        assert_eq!(status, 200, "{body}");
    }
    // Wrong passwords still lock it, and then even the right one is refused.
    for _ in 0..3 {
        let (status, body) = call("wrong".into()).await?;
        assert_eq!(status, 500);
        assert!(body.contains("FailedAuthentication"), "{body}");
    }
    let (status, body) = call(password.clone()).await?;
    assert_eq!(status, 500, "locked after three wrong passwords");
    assert!(body.contains("FailedAuthentication"), "{body}");
    Ok(())
}
