//! `oscarbox-bench clinical`: the clinical API of one `oscar-emr` instance on a real MariaDB.
//!
//! 1. Reads at 16 concurrent clients (`wrk -t2 -c16`, 10 s each): SOAP `getDemographic` with
//!    a WS-Security `UsernameToken` carrying the token `login2` returned (what OSCAR's SOAP
//!    clients send on every call once signed in), and REST `GET /ws/rs/demographics/{id}` with
//!    a browser session cookie. Each looks up its caller (the token in `security`, the session
//!    in `oscarbox_session`) and the patient, and writes audit rows to `log`; the rows written
//!    per call are counted. The anchor, in the same run at the same concurrency, is
//!    SystemInfoService `isAlive`, which touches no database: the difference is what the
//!    database and the audit rows cost per call. A short run at one connection with the
//!    password itself as the token shows what a client that never calls `login2` pays: an
//!    Argon2 verification per call. It is not run at 16: each such call counts as a sign-in
//!    attempt until its password is verified, so 16 at once lock the account.
//! 2. A 100 MiB document uploaded (streamed, `POST /ws/rs/demographics/{id}/documents`) and
//!    downloaded (`GET /ws/rs/documents/{no}/download`), rates measured at the client, with
//!    the instance's peak RSS (`VmHWM`) before and after, and the SHA-256 of what came back
//!    compared with what was sent. The anchor is the same bytes written to a file in the
//!    documents directory with fsync (file and directory, as the instance does), then read
//!    back. Before each read the file's pages are dropped from the page cache, so both reads
//!    come from the disk.
//!
//! Prints a table; asserts nothing.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context as _};
use bytes::Bytes;
use mysql_async::prelude::Queryable as _;
use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
use oscarbox_test_harness::{login_envelope, soap, Emr, EmrConfig, MariaDb, IS_ALIVE};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;

use crate::{beside_me, wrk, WrkFigures, WrkRequest};

const THREADS: u32 = 2;
const CONNECTIONS: u32 = 16;
const SECONDS: u32 = 10;
/// The password-as-token run: one connection, so that no two sign-in attempts overlap.
const PASSWORD_SECONDS: u32 = 5;
const MIB: usize = 1024 * 1024;
const DOCUMENT_MIB: usize = 100;
/// Every single request of the bench gives up after this long.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The administrator's user name, password and PIN, from the 0600 credentials file.
fn credentials(cfg: &EmrConfig) -> anyhow::Result<(String, String, String)> {
    let path = cfg.state_dir.join("secrets/initial-admin-password");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            .with_context(|| format!("no {name} line in {}", path.display()))
    };
    Ok((field("user name:")?, field("password:")?, field("PIN:")?))
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// Signs in through the browser form; returns the `Cookie` header value.
async fn sign_in(
    c: &reqwest::Client,
    emr: &Emr,
    (user, password, pin): (&str, &str, &str),
) -> anyhow::Result<String> {
    let resp = c
        .post(emr.url("/login.do"))
        .form(&[("username", user), ("password", password), ("pin", pin)])
        .send()
        .await?;
    ensure!(resp.status() == 200, "sign-in answered {}", resp.status());
    let set = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .context("sign-in set no session cookie")?;
    Ok(set.split(';').next().unwrap_or_default().to_owned())
}

/// Sends `body` as JSON and returns the JSON answer, which must be a 200.
async fn json_request(req: reqwest::RequestBuilder, body: Option<&Value>) -> anyhow::Result<Value> {
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(serde_json::to_vec(b)?),
        None => req,
    };
    let resp = req.send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    ensure!(status == 200, "answered {status}: {text}");
    serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A `getDemographic` envelope for patient `id`, signed by the administrator (`security_no`
/// 128) with `password` (the `login2` token or the password itself).
fn get_demographic(password: &str, id: i64) -> String {
    format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:ws="http://ws.oscarehr.org/" xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><soapenv:Header><wsse:Security><wsse:UsernameToken><wsse:Username>128</wsse:Username><wsse:Password>{}</wsse:Password></wsse:UsernameToken></wsse:Security></soapenv:Header><soapenv:Body><ws:getDemographic><arg0>{id}</arg0></ws:getDemographic></soapenv:Body></soapenv:Envelope>"#,
        xml_escape(password)
    )
}

/// The text of the first `<tag>` element in `xml`.
fn element<'x>(xml: &'x str, tag: &str) -> Option<&'x str> {
    let (_, rest) = xml.split_once(&format!("<{tag}>"))?;
    rest.split_once(&format!("</{tag}>")).map(|(v, _)| v)
}

/// Rows in the audit table `log`.
async fn log_rows(db: &MariaDb) -> anyhow::Result<u64> {
    let mut conn = db.root().await?;
    let n: Option<u64> = conn.query_first("SELECT COUNT(*) FROM log").await?;
    Ok(n.unwrap_or(0))
}

/// One `wrk` run, with the audit rows it wrote per completed request.
#[derive(Debug)]
struct Run {
    wrk: WrkFigures,
    audit_per_call: f64,
}

async fn run(
    db: &MariaDb,
    url: &str,
    request: WrkRequest<'_>,
    (threads, connections, seconds): (u32, u32, u32),
) -> anyhow::Result<Run> {
    let before = log_rows(db).await?;
    let wrk = wrk(url, request, threads, connections, seconds).await?;
    let after = log_rows(db).await?;
    let audit_per_call = if wrk.requests == 0 {
        0.0
    } else {
        after.saturating_sub(before) as f64 / wrk.requests as f64
    };
    Ok(Run {
        wrk,
        audit_per_call,
    })
}

/// Peak resident memory of a process so far (`VmHWM`), in KiB.
fn peak_kib(pid: i32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmHWM in /proc/PID/status")
}

fn sha256_hex<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h = Sha256::new();
    for c in chunks {
        h.update(c);
    }
    format!("{:x}", h.finalize())
}

/// Drops a file's pages from the page cache (they are clean: it was fsynced).
fn drop_cached(path: &Path) -> anyhow::Result<()> {
    let f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    posix_fadvise(&f, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED)
        .with_context(|| format!("posix_fadvise {}", path.display()))?;
    Ok(())
}

/// Removes the anchor file however the bench ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The disk anchor: `data` written to a file in `dir` in 1 MiB writes, the file and the
/// directory fsynced; then, its pages dropped from the cache, read back. The two times, and
/// whether the bytes read back are the bytes written.
fn disk_anchor(dir: &Path, data: &[u8]) -> anyhow::Result<(Duration, Duration, bool)> {
    let scratch = Scratch(dir.join(format!("oscarbox-bench-anchor-{}", std::process::id())));
    let path = &scratch.0;
    let started = Instant::now();
    let mut f =
        std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    for chunk in data.chunks(MIB) {
        f.write_all(chunk)?;
    }
    f.sync_all()?;
    std::fs::File::open(dir)?.sync_all()?;
    let write = started.elapsed();
    drop(f);
    drop_cached(path)?;
    let started = Instant::now();
    let mut back = Vec::with_capacity(data.len());
    std::fs::File::open(path)?.read_to_end(&mut back)?;
    let read = started.elapsed();
    Ok((write, read, back == data))
}

/// What moving the document measured.
#[derive(Debug)]
struct Documents {
    upload: Duration,
    download: Duration,
    disk_write: Duration,
    disk_read: Duration,
    intact: bool,
    disk_intact: bool,
    peak_before: u64,
    peak_after_upload: u64,
    peak_after_download: u64,
}

async fn documents(
    c: &reqwest::Client,
    emr: &Emr,
    cookie: &str,
    id: i64,
    docs_dir: &Path,
) -> anyhow::Result<Documents> {
    let data = tokio::task::spawn_blocking(|| {
        let mut v = vec![0u8; DOCUMENT_MIB * MIB];
        rand::fill(&mut v[..]);
        Bytes::from(v)
    })
    .await?;
    let sent = {
        let data = data.clone();
        tokio::task::spawn_blocking(move || sha256_hex(data.chunks(MIB))).await?
    };

    let peak_before = peak_kib(emr.pid())?;
    let body: Vec<Result<Bytes, std::io::Error>> = (0..DOCUMENT_MIB)
        .map(|i| Ok(data.slice(i * MIB..(i + 1) * MIB)))
        .collect();
    let started = Instant::now();
    let resp = c
        .post(format!(
            "{}?fileName=bench.pdf&docType=lab",
            emr.url(&format!("/ws/rs/demographics/{id}/documents"))
        ))
        .header("cookie", cookie)
        .header("content-type", "application/pdf")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(body)))
        .send()
        .await?;
    let status = resp.status();
    let answer = resp.bytes().await?;
    let upload = started.elapsed();
    ensure!(
        status == 200,
        "upload answered {status}: {}",
        String::from_utf8_lossy(&answer)
    );
    let peak_after_upload = peak_kib(emr.pid())?;
    let doc: Value = serde_json::from_slice(&answer).context("the upload's answer")?;
    let no = doc["documentNo"].as_i64().context("a documentNo")?;
    let stored = doc["docFilename"].as_str().context("a docFilename")?;
    ensure!(
        doc["sha256"].as_str() == Some(sent.as_str()),
        "the instance hashed the upload as {}, not {sent}",
        doc["sha256"]
    );
    drop_cached(&docs_dir.join(stored))?;

    let started = Instant::now();
    let mut resp = c
        .get(emr.url(&format!("/ws/rs/documents/{no}/download")))
        .header("cookie", cookie)
        .send()
        .await?;
    ensure!(resp.status() == 200, "download answered {}", resp.status());
    let mut got = Vec::with_capacity(DOCUMENT_MIB * 16);
    while let Some(chunk) = resp.chunk().await? {
        got.push(chunk);
    }
    let download = started.elapsed();
    let peak_after_download = peak_kib(emr.pid())?;
    let received =
        tokio::task::spawn_blocking(move || sha256_hex(got.iter().map(|b| &b[..]))).await?;

    let (disk_write, disk_read, disk_intact) = {
        let dir = docs_dir.to_owned();
        tokio::task::spawn_blocking(move || disk_anchor(&dir, &data)).await??
    };
    Ok(Documents {
        upload,
        download,
        disk_write,
        disk_read,
        intact: received == sent,
        disk_intact,
        peak_before,
        peak_after_upload,
        peak_after_download,
    })
}

fn row(figure: &str, ours: &str, note: &str) {
    println!("{figure:<52} {ours:>18}   {note}");
}

fn mib_per_s(d: Duration) -> f64 {
    DOCUMENT_MIB as f64 / d.as_secs_f64()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub async fn bench() -> anyhow::Result<()> {
    let binary = beside_me("oscar-emr")?;
    let db = MariaDb::start().await?;
    let cfg = db.write_config_with(1, "max-document-mib = 200", "")?;
    let mut emr = Emr::start(&binary, &cfg, 1).await?;
    let (user, password, pin) = credentials(&cfg)?;
    let c = client()?;
    let cookie = sign_in(&c, &emr, (&user, &password, &pin)).await?;
    let created = json_request(
        c.post(emr.url("/ws/rs/demographics")).header("cookie", &cookie),
        Some(&json!({
            "lastName": "Bench", "firstName": "Clinical", "sex": "F",
            "dobYear": "1961", "dobMonth": "04", "dobDay": "07",
            "hin": "9876543217", "hcType": "ON", "phone": "905-555-0142",
            "address": {"address": "12 Queen St", "city": "Hamilton", "province": "ON", "postal": "L8P 1A1"},
            "providerNo": "999998", "chartNo": "C-17"
        })),
    )
    .await
    .context("create the patient")?;
    let id = created["demographicNo"]
        .as_i64()
        .context("the new patient's demographicNo")?;

    // 2 first, on an instance that has served nothing else, so that its peak RSS is the
    // document's.
    let docs = documents(&c, &emr, &cookie, id, &db.dir.path().join("documents")).await?;

    // 1. Each request checked once, by hand, before it is measured.
    let (status, body) = soap(
        &c,
        &emr.url("/ws/LoginService"),
        &login_envelope("login2", &user, &password),
    )
    .await?;
    ensure!(status == 200, "login2 answered {status}: {body}");
    let token = element(&body, "securityTokenKey")
        .context("a securityTokenKey in login2's answer")?
        .to_owned();
    let soap_url = emr.url("/ws/DemographicService");
    let with_token = get_demographic(&token, id);
    let with_password = get_demographic(&password, id);
    for envelope in [&with_token, &with_password] {
        let (status, body) = soap(&c, &soap_url, envelope).await?;
        ensure!(
            status == 200 && element(&body, "demographicNo") == Some(id.to_string().as_str()),
            "getDemographic answered {status}: {body}"
        );
    }
    let rest_url = emr.url(&format!("/ws/rs/demographics/{id}"));
    let read = json_request(c.get(&rest_url).header("cookie", &cookie), None).await?;
    ensure!(
        read["demographicNo"].as_i64() == Some(id),
        "GET /demographics/{id} answered {read}"
    );

    let load = (THREADS, CONNECTIONS, SECONDS);
    let alive = run(
        &db,
        &emr.url("/ws/SystemInfoService"),
        WrkRequest::Soap(IS_ALIVE),
        load,
    )
    .await?;
    let by_token = run(&db, &soap_url, WrkRequest::Soap(&with_token), load).await?;
    let by_session = run(
        &db,
        &rest_url,
        WrkRequest::GetWith(&[("Cookie", cookie.as_str())]),
        load,
    )
    .await?;
    let by_password = run(
        &db,
        &soap_url,
        WrkRequest::Soap(&with_password),
        (1, 1, PASSWORD_SECONDS),
    )
    .await?;
    let errors = emr.unexpected_errors();
    // Reported below rather than failing the bench when the instance is dropped.
    emr.allow_error("");

    println!(
        "clinical API: one oscar-emr instance on MariaDB, this machine ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "reads: wrk -t{THREADS} -c{CONNECTIONS}, {SECONDS} s each, keep-alive. Every getDemographic and \
         GET /demographics/{{id}} writes audit rows to `log` (counted per call below); isAlive touches no database."
    );
    println!();
    row("figure", "ours", "anchor / note");
    let rps = |r: &Run| format!("{:.0} /s", r.wrk.requests_per_sec);
    let lat = |r: &Run| format!("{} / {}", r.wrk.p50, r.wrk.p99);
    let share = |r: &Run| {
        format!(
            "{:.0}% of isAlive's rate",
            r.wrk.requests_per_sec / alive.wrk.requests_per_sec * 100.0
        )
    };
    row(
        "isAlive (SystemInfoService, no database)",
        &rps(&alive),
        "anchor",
    );
    row("  p50 / p99", &lat(&alive), "");
    row("  errors", &alive.wrk.errors, "");
    for (name, r) in [
        ("getDemographic (SOAP, login2 token)", &by_token),
        ("GET /ws/rs/demographics/{id} (session cookie)", &by_session),
    ] {
        row(name, &rps(r), &share(r));
        row("  p50 / p99", &lat(r), &format!("isAlive: {}", lat(&alive)));
        row("  errors", &r.wrk.errors, "");
        row(
            "  audit rows written per call",
            &format!("{:.2}", r.audit_per_call),
            "",
        );
    }
    row(
        &format!("getDemographic, password as token, wrk -t1 -c1, {PASSWORD_SECONDS} s"),
        &rps(&by_password),
        "an Argon2 verification per call; 16 at once would lock the account",
    );
    row("  p50 / p99", &lat(&by_password), "");
    row("  errors", &by_password.wrk.errors, "");
    row(
        "  audit rows written per call",
        &format!("{:.2}", by_password.audit_per_call),
        "",
    );
    println!();
    println!(
        "document: {DOCUMENT_MIB} MiB of random bytes, streamed in 1 MiB chunks over plain HTTP; rates at the client. \
         Anchor: the same bytes to a file in the documents directory."
    );
    println!();
    row("figure", "ours", "anchor / note");
    row(
        "upload (POST, stored fsynced)",
        &format!("{:.0} MiB/s", mib_per_s(docs.upload)),
        &format!(
            "disk: write + fsync {:.0} MiB/s",
            mib_per_s(docs.disk_write)
        ),
    );
    row(
        "download (GET, page cache dropped)",
        &format!("{:.0} MiB/s", mib_per_s(docs.download)),
        &format!(
            "disk: read, page cache dropped {:.0} MiB/s",
            mib_per_s(docs.disk_read)
        ),
    );
    let yes = |b: bool| if b { "yes" } else { "NO" };
    row(
        "intact (SHA-256 downloaded = uploaded)",
        yes(docs.intact),
        &format!("disk read back intact: {}", yes(docs.disk_intact)),
    );
    row(
        "peak RSS (VmHWM) before the upload",
        &format!("{:.1} MiB", mib(docs.peak_before)),
        "",
    );
    let grew = |kib: u64| {
        format!(
            "{:.1} MiB (+{:.1})",
            mib(kib),
            mib(kib.saturating_sub(docs.peak_before))
        )
    };
    row(
        "  after the upload",
        &grew(docs.peak_after_upload),
        "flat: growth well under the document's size",
    );
    row(
        "  after the download",
        &grew(docs.peak_after_download),
        "the documents test bounds growth at 48 MiB",
    );
    println!();
    if errors.is_empty() {
        println!("The instance logged no ERROR line.");
    } else {
        println!(
            "The instance logged {} ERROR lines; the first:",
            errors.len()
        );
        for e in errors.iter().take(3) {
            println!("  {e}");
        }
    }
    println!("wrk runs on the same cores as the instance and MariaDB, so throughput is a floor.");
    Ok(())
}
