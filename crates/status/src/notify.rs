//! Sends what [`crate::alert`] and [`crate::heartbeat`] decide: webhook alerts, each delivered
//! with retries and backoff (a newer notice for the same problem replaces one still being
//! retried), and push heartbeats on their interval.

use std::collections::HashMap;
use std::time::Duration;

use oscarbox_config::{AlertsConfig, HeartbeatStyle};
use oscarbox_watchdog_api::{BoxStatus, Reason, Verdict};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::alert::{Alerter, Backoff, Notice, NoticeState, Policy};

/// How long one webhook or heartbeat request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP client for alerts: the system's trust store (a provider's private authority is
/// installed there), no redirects (an alert goes where it was configured to go).
pub fn client() -> anyhow::Result<reqwest::Client> {
    use anyhow::Context as _;
    reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("oscarbox/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("build the alert client")
}

/// Watches the status and sends alerts for problems that last, until `token` is cancelled.
///
/// What has fired is kept in `firing_file`, so that a problem that ended while the watchdog
/// was down (a restart often is the cure) is resolved at the receiver after the next start,
/// instead of staying open there for good.
pub async fn alerts(
    config: AlertsConfig,
    box_name: String,
    firing_file: std::path::PathBuf,
    client: reqwest::Client,
    mut status: watch::Receiver<BoxStatus>,
    token: CancellationToken,
) {
    let Some(url) = config.webhook_url else {
        return;
    };
    let start = Instant::now();
    let mut alerter = Alerter::new(Policy {
        pending: config.pending,
        repeat: config.repeat_interval,
    });
    let mut deliveries: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut firing: HashMap<String, Reason> = HashMap::new();
    // Fired before this start; settled once a whole `pending` has been observed.
    let mut before: Vec<Reason> = std::fs::read(&firing_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    loop {
        tokio::select! {
            () = token.cancelled() => break,
            changed = status.changed() => if changed.is_err() { break },
        }
        let (reasons, checked_at) = {
            let s = status.borrow_and_update();
            (s.reasons.clone(), s.checked_at)
        };
        let now = start.elapsed();
        let mut notices = alerter.observe(now, &reasons);
        if now >= config.pending && !before.is_empty() {
            let present: Vec<String> = reasons.iter().map(Reason::key).collect();
            notices.extend(
                std::mem::take(&mut before)
                    .into_iter()
                    .filter(|r| !present.contains(&r.key()))
                    .map(|reason| Notice {
                        state: NoticeState::Resolved,
                        reason,
                        since: Duration::ZERO,
                    }),
            );
        }
        let was = firing.len();
        for n in &notices {
            match n.state {
                NoticeState::Firing => firing.insert(n.reason.key(), n.reason.clone()),
                NoticeState::Resolved => firing.remove(&n.reason.key()),
            };
        }
        if !notices.is_empty() || was != firing.len() {
            let all: Vec<&Reason> = firing.values().chain(before.iter()).collect();
            if let Err(e) = oscarbox_common::write_private(
                &firing_file,
                serde_json::to_string(&all).unwrap_or_default().as_bytes(),
            ) {
                tracing::warn!(
                    "failed to record the firing alerts in {}: {e}",
                    firing_file.display()
                );
            }
        }
        for notice in notices {
            let body = crate::alert::payload(&box_name, &notice, checked_at, now);
            tracing::info!(
                alert = %notice.reason.key(),
                state = ?notice.state,
                "sending an alert"
            );
            let task = tokio::spawn(deliver(
                client.clone(),
                url.clone(),
                body,
                notice_label(&notice),
                token.clone(),
            ));
            if let Some(old) = deliveries.insert(notice.reason.key(), task) {
                // The newer notice says more; the older one's retries would only confuse.
                old.abort();
            }
        }
        deliveries.retain(|_, t| !t.is_finished());
    }
    for (_, t) in deliveries {
        t.abort();
    }
}

fn notice_label(notice: &Notice) -> String {
    format!("{} ({:?})", notice.reason.key(), notice.state)
}

/// Posts one alert until it is taken, refused for good, or out of attempts.
async fn deliver(
    client: reqwest::Client,
    url: String,
    body: serde_json::Value,
    label: String,
    token: CancellationToken,
) {
    let backoff = Backoff::default();
    for attempt in 0.. {
        let outcome = client.post(&url).json(&body).send().await;
        let why = match outcome {
            Ok(r) if r.status().is_success() => return,
            Ok(r) if !crate::alert::is_retryable(r.status().as_u16()) => {
                tracing::error!(alert = %label, status = %r.status(), "the alert webhook refused an alert; check alerts.webhook-url");
                return;
            }
            Ok(r) => format!("answered {}", r.status()),
            Err(e) => format!("failed: {}", describe(&e)),
        };
        let Some(delay) = backoff.delay(attempt, rand::random::<f64>()) else {
            tracing::error!(alert = %label, "gave up sending an alert: the webhook {why}");
            return;
        };
        tracing::warn!(alert = %label, retry_in = ?delay, "the alert webhook {why}; retrying");
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// A reqwest error without its URL: a push-monitor URL is a secret of sorts (anyone who has
/// it can report the box healthy).
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request error"
    };
    match std::error::Error::source(e) {
        Some(source) => format!("{kind}: {source}"),
        None => kind.to_owned(),
    }
}

/// Pings the push monitor every interval with the newest verdict, until `token` is cancelled.
pub async fn heartbeats(
    config: AlertsConfig,
    client: reqwest::Client,
    status: watch::Receiver<BoxStatus>,
    token: CancellationToken,
) {
    let Some(hb) = config.heartbeat else {
        return;
    };
    let style = match hb.style {
        HeartbeatStyle::Healthchecks => crate::heartbeat::Style::Healthchecks,
        HeartbeatStyle::UptimeKuma => crate::heartbeat::Style::UptimeKuma,
    };
    let mut tick = tokio::time::interval(hb.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut critical_since: Option<Instant> = None;
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut now = status.borrow().clone();
        // Like an alert, "down" waits until it has lasted `alerts.pending`: a box starting up
        // or healing itself in seconds pages nobody.
        if now.verdict == Verdict::Critical {
            let since = *critical_since.get_or_insert_with(Instant::now);
            if since.elapsed() < config.pending {
                now.verdict = Verdict::Degraded;
            }
        } else {
            critical_since = None;
        }
        let ping = crate::heartbeat::ping(style, &hb.url, &now);
        let request = match ping.method {
            "GET" => client.get(&ping.url),
            _ => client.post(&ping.url).body(ping.body.unwrap_or_default()),
        };
        match request.send().await {
            Ok(r) if r.status().is_success() => {
                if failing {
                    tracing::info!("the heartbeat monitor takes pings again");
                }
                failing = false;
            }
            outcome => {
                let why = match outcome {
                    Ok(r) => format!("answered {}", r.status()),
                    Err(e) => describe(&e),
                };
                if !failing {
                    tracing::warn!("the heartbeat monitor {why}; the provider may think this box is down (alerts.heartbeat-url)");
                }
                failing = true;
            }
        }
    }
}
