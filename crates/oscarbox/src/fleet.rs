//! `oscarbox fleet status FILE`: a support provider's view of many boxes. Each box's health
//! document is fetched concurrently over HTTPS with its token, checked against its own
//! authority, and shown as one line; a box that cannot be asked is a line saying why.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use oscarbox_config::fleet::FleetBox;
use oscarbox_watchdog_api::{BoxStatus, Verdict};

/// How long one box may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Boxes asked at once: enough for a large fleet in seconds, few enough for any file limit.
const CONCURRENCY: usize = 32;
/// A health document is a few KiB; anything far larger is not one.
const MAX_DOCUMENT: usize = 1 << 20;

/// One box's answer.
#[derive(Debug)]
pub struct Polled {
    pub name: String,
    pub result: Result<BoxStatus, String>,
}

/// Prints one line per box; exits 0 when every box answered ok, 1 when any is degraded, 2 when
/// any is critical or could not be asked.
pub fn status(file: &Path, json: bool) -> ExitCode {
    let fleet = match oscarbox_config::fleet::load(file) {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{e}");
            return ExitCode::from(64);
        }
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return ExitCode::FAILURE;
    };
    let polled: Vec<Polled> = runtime.block_on(async {
        let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let tasks: Vec<_> = fleet
            .boxes
            .into_iter()
            .map(|b| {
                let slots = Arc::clone(&slots);
                let name = b.name.clone();
                let task = tokio::spawn(async move {
                    let _slot = slots.acquire_owned().await;
                    poll(b).await
                });
                (name, task)
            })
            .collect();
        let mut polled = Vec::new();
        for (name, task) in tasks {
            polled.push(task.await.unwrap_or_else(|e| Polled {
                name,
                result: Err(format!("could not be asked: {e}")),
            }));
        }
        polled
    });
    let mut out = std::io::stdout().lock();
    if json {
        let docs: Vec<serde_json::Value> = polled
            .iter()
            .map(|p| match &p.result {
                Ok(s) => serde_json::json!({"name": p.name, "status": s}),
                Err(e) => serde_json::json!({"name": p.name, "error": e}),
            })
            .collect();
        let _ = writeln!(out, "{}", serde_json::Value::Array(docs));
    } else {
        let _ = write!(out, "{}", table(&polled));
    }
    let worst = polled
        .iter()
        .map(|p| match &p.result {
            Ok(s) if s.verdict == Verdict::Ok => 0,
            Ok(s) if s.verdict == Verdict::Degraded => 1,
            _ => 2,
        })
        .max()
        .unwrap_or(0);
    ExitCode::from(worst)
}

async fn poll(b: FleetBox) -> Polled {
    let result = fetch(&b).await;
    Polled {
        name: b.name,
        result,
    }
}

async fn fetch(b: &FleetBox) -> Result<BoxStatus, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .tls_built_in_native_certs(true);
    if let Some(pem) = &b.ca_pem {
        let ca = reqwest::Certificate::from_pem(pem)
            .map_err(|e| format!("its ca-file is not a PEM certificate: {e}"))?;
        builder = builder.add_root_certificate(ca);
    }
    if let Some(ip) = b.address {
        // The url's own port is used; reqwest ignores the one given here.
        let authority = b.url.trim_start_matches("https://");
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        builder = builder.resolve(host, std::net::SocketAddr::new(ip, 0));
    }
    let client = builder
        .build()
        .map_err(|e| format!("cannot build a client: {e}"))?;
    let mut request = client.get(format!("{}/health", b.url));
    if let Some(token) = &b.token {
        request = request.bearer_auth(token);
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| oscarbox_status::notify::describe(&e))?;
    let code = response.status();
    if code == reqwest::StatusCode::UNAUTHORIZED {
        return Err(match b.token {
            Some(_) => "the box refused the token (check token-file against `oscarbox status token` on the box)".into(),
            None => "the box wants its status token: add token-file for it".into(),
        });
    }
    // A failing box answers 503 with its document: that is a verdict, not an error.
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        format!(
            "the answer broke off: {}",
            oscarbox_status::notify::describe(&e)
        )
    })? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(format!(
                "answered {code} with more than 1 MiB: not a health document"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let doc: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|_| format!("answered {code} without a health document"))?;
    let model = doc
        .get("oscarbox")
        .cloned()
        .ok_or_else(|| format!("answered {code} with a health document of another kind"))?;
    serde_json::from_value(model)
        .map_err(|e| format!("its status is of a newer or older shape: {e}"))
}

/// One line per box, the worst first.
pub fn table(polled: &[Polled]) -> String {
    let mut rows: Vec<&Polled> = polled.iter().collect();
    let rank = |p: &Polled| match &p.result {
        Ok(s) => s.verdict as u8,
        Err(_) => 3,
    };
    rows.sort_by(|a, b| rank(b).cmp(&rank(a)).then(a.name.cmp(&b.name)));
    let mut s = format!(
        "{:<20}{:<10}{:<11}{:<10}{:<13}{:<8}{:<8}{}\n",
        "BOX", "STATUS", "INSTANCES", "DATABASE", "BACKUP DISK", "DISK", "CERT", "WHY"
    );
    for p in rows {
        match &p.result {
            Err(e) => s.push_str(&format!("{:<20}{:<10}{e}\n", p.name, "UNKNOWN")),
            Ok(st) => {
                let healthy = st.instances.iter().filter(|w| w.state == "healthy").count();
                let database = st.database.summary();
                let backup = if st.backups.disk_present {
                    st.backups.disk.as_ref().map_or_else(
                        || "present".into(),
                        |d| format!("{:.0}% used", d.used_percent()),
                    )
                } else {
                    "MISSING".into()
                };
                let disk = st
                    .system
                    .disk
                    .as_ref()
                    .map_or_else(|| "-".into(), |d| format!("{:.0}%", d.used_percent()));
                let cert = st.tls.as_ref().map_or_else(
                    || "-".into(),
                    |t| format!("{}d", t.days_left(st.checked_at)),
                );
                let why: Vec<&str> = st.reasons.iter().map(|r| r.what.as_str()).collect();
                s.push_str(&format!(
                    "{:<20}{:<10}{:<11}{:<10}{:<13}{:<8}{:<8}{}\n",
                    p.name,
                    st.verdict.as_str(),
                    format!("{healthy}/{}", st.instances.len()),
                    database,
                    backup,
                    disk,
                    cert,
                    if why.is_empty() {
                        "-".to_owned()
                    } else {
                        why.join("; ")
                    }
                ));
            }
        }
    }
    s
}
