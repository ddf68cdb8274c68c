//! Push heartbeats: the request that tells a dead-man's-switch monitor (Healthchecks.io, an
//! Uptime Kuma push monitor) the box is alive, and whether it is well. A box that stops pinging
//! is noticed by the monitor even when the box cannot send anything at all.
//!
//! The summary sent is the box's name, the verdict and the reasons' keys: only our own words,
//! since monitors show it to whoever has access to them.

use oscarbox_watchdog_api::{BoxStatus, Verdict};

/// Which monitor's conventions to follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `POST url` for alive, `POST url/fail` for failing, the body a log line.
    Healthchecks,
    /// `GET url?status=up|down&msg=...`.
    UptimeKuma,
}

/// One request to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// `POST` or `GET`.
    pub method: &'static str,
    pub url: String,
    pub body: Option<String>,
}

/// How many reason keys a summary lists before it only counts the rest: monitors keep short
/// messages, and the status page has the whole story.
const MAX_KEYS: usize = 8;

/// The ping for `s` to the monitor at `url`. Only a critical verdict reports the box down: a
/// degraded box still serves clinics, and the webhook alerts carry the details.
pub fn ping(style: Style, url: &str, s: &BoxStatus) -> Ping {
    let down = s.verdict == Verdict::Critical;
    match style {
        Style::Healthchecks => {
            let base = url.trim_end_matches('/');
            Ping {
                method: "POST",
                url: if down {
                    format!("{base}/fail")
                } else {
                    base.to_owned()
                },
                body: Some(summary(s)),
            }
        }
        Style::UptimeKuma => {
            // A URL copied from Uptime Kuma already carries `?status=up&msg=OK&ping=`; a
            // repeated parameter would reach its handler as a list, so ours replace those.
            let url = url.split_once('#').map_or(url, |(url, _)| url);
            let (base, query) = url.split_once('?').unwrap_or((url, ""));
            let kept = (query.split('&'))
                .filter(|p| !p.is_empty())
                .filter(|p| !matches!(p.split('=').next(), Some("status" | "msg" | "ping")));
            let mut params: Vec<String> = kept.map(str::to_owned).collect();
            params.push(format!("status={}", if down { "down" } else { "up" }));
            params.push(format!("msg={}", percent_encode(&summary(s))));
            Ping {
                method: "GET",
                url: format!("{base}?{}", params.join("&")),
                body: None,
            }
        }
    }
}

/// `box NAME: VERDICT`, then the reasons' keys in brackets.
fn summary(s: &BoxStatus) -> String {
    let mut line = format!("box {}: {}", s.box_name, s.verdict.as_str());
    if !s.reasons.is_empty() {
        let mut keys: Vec<String> = s.reasons.iter().take(MAX_KEYS).map(|r| r.key()).collect();
        if s.reasons.len() > MAX_KEYS {
            keys.push(format!("{} more", s.reasons.len() - MAX_KEYS));
        }
        line.push_str(&format!(" ({})", keys.join(", ")));
    }
    line
}

/// `s` for a URL query value: RFC 3986 unreserved characters as they are, every other byte of
/// its UTF-8 as `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assess::fixture::{assessed, fine, worker};

    fn degraded() -> BoxStatus {
        let mut s = fine();
        s.instances[1] = worker(2, "hung");
        s.instances[1].why = "SECRET & odd".into();
        s.system.memory_available_bytes = 0;
        assessed(s)
    }

    fn critical() -> BoxStatus {
        let mut s = fine();
        s.proxy.reachable = false;
        assessed(s)
    }

    #[test]
    fn healthchecks_posts_and_fails() {
        let url = "https://hc-ping.com/0f3c/";
        assert_eq!(
            ping(Style::Healthchecks, url, &assessed(fine())),
            Ping {
                method: "POST",
                url: "https://hc-ping.com/0f3c".into(),
                body: Some("box clinic-a: ok".into()),
            }
        );
        let p = ping(Style::Healthchecks, url, &degraded());
        assert_eq!(p.url, "https://hc-ping.com/0f3c", "degraded is still alive");
        assert_eq!(
            p.body.as_deref(),
            Some("box clinic-a: degraded (emr-instance-down/2, memory-low)")
        );
        let p = ping(Style::Healthchecks, url, &critical());
        assert_eq!(p.url, "https://hc-ping.com/0f3c/fail");
        assert_eq!(
            p.body.as_deref(),
            Some("box clinic-a: critical (proxy-down)")
        );
    }

    #[test]
    fn uptime_kuma_gets_with_status_and_message() {
        let p = ping(
            Style::UptimeKuma,
            "https://kuma.example/api/push/Ab1",
            &assessed(fine()),
        );
        assert_eq!(
            p,
            Ping {
                method: "GET",
                url: "https://kuma.example/api/push/Ab1?status=up&msg=box%20clinic-a%3A%20ok"
                    .into(),
                body: None,
            }
        );
        let p = ping(
            Style::UptimeKuma,
            "https://kuma.example/api/push/Ab1",
            &critical(),
        );
        assert!(
            p.url
                .ends_with("?status=down&msg=box%20clinic-a%3A%20critical%20%28proxy-down%29"),
            "{}",
            p.url
        );
        let p = ping(
            Style::UptimeKuma,
            "https://kuma.example/api/push/Ab1",
            &degraded(),
        );
        assert!(p.url.contains("status=up&"), "degraded is still up");
        assert!(!p.url.contains("SECRET"));
    }

    #[test]
    fn uptime_kuma_keeps_other_parameters_and_replaces_its_own() {
        let copied = "https://kuma.example/api/push/Ab1?status=up&msg=OK&ping=&token=x#frag";
        let p = ping(Style::UptimeKuma, copied, &critical());
        assert_eq!(
            p.url,
            "https://kuma.example/api/push/Ab1?token=x&status=down\
             &msg=box%20clinic-a%3A%20critical%20%28proxy-down%29"
        );
        let p = ping(Style::UptimeKuma, "https://k.example/push/A?", &critical());
        assert!(
            p.url
                .starts_with("https://k.example/push/A?status=down&msg="),
            "{}",
            p.url
        );
    }

    #[test]
    fn long_lists_are_counted() {
        let mut s = fine();
        s.instances = (1..=12).map(|n| worker(n, "hung")).collect();
        let body = ping(Style::Healthchecks, "u", &assessed(s))
            .body
            .expect("a body");
        assert!(body.ends_with("emr-instance-down/8, 5 more)"), "{body}");
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(percent_encode("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(percent_encode("a b&c=d/e?f%"), "a%20b%26c%3Dd%2Fe%3Ff%25");
        assert_eq!(percent_encode("é+"), "%C3%A9%2B");
        assert_eq!(percent_encode(""), "");
    }
}
