//! Incident reports: one plain-text file per failover under `<state>/db/incidents/`, written for
//! a person (`key: value` lines), completed with the transactions lost once the old primary is
//! back, and read back for `oscarbox db status` and the box's status. Pure text in and out; the
//! executor does the file work.

use std::time::{Duration, SystemTime};

use oscarbox_failover::{GtidList, Incident, NodeId};
use oscarbox_watchdog_api::db::DbFailover;

/// The line that completes a report; a report without it is still waiting for the old primary.
const LOST: &str = "transactions lost: ";

/// The report's file name for the failover to `epoch`.
pub fn file_name(epoch: u64) -> String {
    format!("epoch-{epoch:06}.txt")
}

/// The report of a failover that happened `at`, `recovery` after the old primary last served
/// (when it was seen serving at all); `steps` is the failover's timeline: each step applied,
/// with when it finished after the plan began.
pub fn report(
    i: &Incident,
    at: SystemTime,
    recovery: Option<Duration>,
    steps: &[(Duration, String)],
) -> String {
    let gtids = |g: &Option<GtidList>| {
        g.as_ref()
            .map_or_else(|| "unknown".to_owned(), ToString::to_string)
    };
    let semi = match i.semi_sync_was_on {
        Some(true) => "on: every acknowledged write had reached the new primary",
        Some(false) => {
            "OFF: writes acknowledged while it was off may be missing; see the transactions below"
        }
        None => "unknown: the old primary was not seen serving since it was last promoted",
    };
    let mut timeline = String::from("timeline:\n");
    if let Some(r) = recovery {
        timeline.push_str(&format!(
            "  -{:.2} s  the old primary last served (seen by the watchdog)\n",
            r.as_secs_f64()
        ));
    }
    for (after, step) in steps {
        timeline.push_str(&format!("  +{:.2} s  {step}\n", after.as_secs_f64()));
    }
    let recovery = recovery.map_or_else(
        || "unknown".to_owned(),
        |d| format!("{:.1} s", d.as_secs_f64()),
    );
    format!(
        "OSCAR Box database failover\n\
         at: {}\n\
         from: {}\n\
         to: {}\n\
         epoch: {}\n\
         cause: {}\n\
         since the old primary last served: {recovery}\n\
         semi-sync: {semi}\n\
         old primary last seen at: {}\n\
         new primary promoted at: {}\n\
         {timeline}\
         (the transactions lost are added below when the old primary comes back)\n",
        humantime::format_rfc3339_seconds(at),
        i.from,
        i.to,
        i.epoch,
        i.cause,
        gtids(&i.last_seen_primary),
        i.promoted_at,
    )
}

/// `text` completed with the transactions lost, if it is the report of the failover away from
/// `old_primary` and is not complete yet.
pub fn complete(text: &str, old_primary: NodeId, lost: &str) -> Option<String> {
    let from = format!("\nfrom: {old_primary}\n");
    if !text.contains(&from) || text.contains(&format!("\n{LOST}")) {
        return None;
    }
    Some(format!("{text}{LOST}{lost}\n"))
}

/// The line for an old primary that came back with nothing the new one lacks.
pub fn none_lost(old: NodeId, new: NodeId) -> String {
    format!("none ({old} came back with a history that is a prefix of {new}'s and follows it)")
}

/// The line for an old primary whose extra transactions were saved for review.
pub fn saved(old: NodeId, new: NodeId, gtids: &[String], dir: &std::path::Path) -> String {
    if gtids.is_empty() {
        return format!("none ({old} had nothing {new} lacks)");
    }
    format!(
        "{} that {old} had and {new} lacked, never acknowledged to a client if semi-sync was on: {}; saved as SQL for review in {}",
        gtids.len(),
        gtids.join(", "),
        dir.display()
    )
}

/// What a report says, for the status. Lines it does not know are ignored, and a damaged
/// report yields what could be read.
pub fn parse(report: &str, text: &str) -> DbFailover {
    let mut f = DbFailover {
        report: report.to_owned(),
        epoch: 0,
        from: String::new(),
        to: String::new(),
        at: None,
        seconds_to_recover: None,
        semi_sync_was_on: None,
        transactions_lost: None,
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(": ") else {
            continue;
        };
        match key {
            "at" => {
                f.at = humantime::parse_rfc3339(value)
                    .ok()
                    .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs());
            }
            "from" => value.clone_into(&mut f.from),
            "to" => value.clone_into(&mut f.to),
            "epoch" => f.epoch = value.parse().unwrap_or(0),
            "since the old primary last served" => {
                f.seconds_to_recover = value.strip_suffix(" s").and_then(|v| v.parse().ok());
            }
            "semi-sync" => {
                f.semi_sync_was_on = if value.starts_with("on") {
                    Some(true)
                } else if value.starts_with("OFF") {
                    Some(false)
                } else {
                    None
                };
            }
            "transactions lost" => {
                let first = value.split_whitespace().next().unwrap_or_default();
                f.transactions_lost = if first == "none" {
                    Some(0)
                } else {
                    first.parse().ok()
                };
            }
            _ => {}
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(semi: Option<bool>) -> Incident {
        Incident {
            from: NodeId::A,
            to: NodeId::B,
            epoch: 3,
            cause: "node A is stopped (SIGSTOP) and has not answered for 2.0s".into(),
            last_seen_primary: Some("0-1-89".parse().expect("valid")),
            promoted_at: "0-1-91".parse().expect("valid"),
            semi_sync_was_on: semi,
        }
    }

    #[test]
    fn a_report_reads_back_and_is_completed_once() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_460_568);
        let steps = [
            (Duration::from_millis(120), "stop node A".to_owned()),
            (Duration::from_millis(900), "promote node B".to_owned()),
        ];
        let text = report(
            &incident(Some(true)),
            at,
            Some(Duration::from_millis(4_250)),
            &steps,
        );
        assert!(text.contains("at: 2026-11-23T"), "{text}");
        assert!(
            text.contains("timeline:\n  -4.25 s  the old primary last served (seen by the watchdog)\n  +0.12 s  stop node A\n  +0.90 s  promote node B\n"),
            "{text}"
        );
        let f = parse("epoch-000003.txt", &text);
        assert_eq!(f.epoch, 3);
        assert_eq!((f.from.as_str(), f.to.as_str()), ("node A", "node B"));
        assert_eq!(f.at, Some(1_795_460_568));
        assert_eq!(f.seconds_to_recover, Some(4.2));
        assert_eq!(f.semi_sync_was_on, Some(true));
        assert_eq!(f.transactions_lost, None, "not known before A is back");

        // Only the report of a failover away from the node that came back is completed.
        assert_eq!(complete(&text, NodeId::B, "none"), None);
        let gtids = ["0-1-90".to_owned(), "0-1-91".to_owned()];
        let line = saved(
            NodeId::A,
            NodeId::B,
            &gtids,
            std::path::Path::new("/x/preserved"),
        );
        let done = complete(&text, NodeId::A, &line).expect("completed");
        assert_eq!(parse("r", &done).transactions_lost, Some(2));
        assert!(done.contains("0-1-90, 0-1-91; saved as SQL for review in /x/preserved"));
        assert_eq!(complete(&done, NodeId::A, "none"), None, "completed once");

        let clean = complete(&text, NodeId::A, &none_lost(NodeId::A, NodeId::B)).expect("done");
        assert_eq!(parse("r", &clean).transactions_lost, Some(0));
    }

    #[test]
    fn semi_sync_is_reported_as_seen() {
        let at = SystemTime::UNIX_EPOCH;
        for (semi, read) in [
            (Some(true), Some(true)),
            (Some(false), Some(false)),
            (None, None),
        ] {
            let text = report(&incident(semi), at, None, &[]);
            let f = parse("r", &text);
            assert_eq!(f.semi_sync_was_on, read, "{text}");
            assert_eq!(f.seconds_to_recover, None);
        }
    }

    #[test]
    fn damaged_reports_yield_what_can_be_read() {
        let f = parse(
            "r",
            "garbage\nepoch: x\nat: yesterday\ntransactions lost: many\n",
        );
        assert_eq!((f.epoch, f.at, f.transactions_lost), (0, None, None));
        let f = parse("r", "");
        assert_eq!(f.from, "");
    }
}
