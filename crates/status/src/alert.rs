//! The alert planner: which reasons become webhook notices and when, with de-duplication,
//! a grace period against flapping, reminders, and the retry schedule for delivering one.
//!
//! Pure: time is a [`Duration`] since an arbitrary start, passed in, so tests drive it with a
//! fake clock. The sender (`notify.rs`) owns the real clock and the HTTP client.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use oscarbox_watchdog_api::{Reason, Severity};
use serde_json::{json, Value};

/// When to tell, and how often to remind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// A reason must persist this long before it fires: a blip that heals itself (an instance
    /// restarting after a hang) is not worth waking anyone.
    pub pending: Duration,
    /// A reason still present is sent again this often, so a forgotten problem is not lost.
    pub repeat: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            pending: Duration::from_secs(30),
            repeat: Duration::from_secs(4 * 3600),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeState {
    Firing,
    Resolved,
}

impl NoticeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeState::Firing => "firing",
            NoticeState::Resolved => "resolved",
        }
    }
}

/// One message to send about one reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub state: NoticeState,
    /// The reason as last seen (for `Resolved`, as it was before it went away).
    pub reason: Reason,
    /// When the reason was first seen, on the [`Alerter`]'s clock.
    pub since: Duration,
}

/// Remembers which reasons are present, since when, and what was last sent about each.
#[derive(Debug)]
pub struct Alerter {
    policy: Policy,
    /// By [`Reason::key`].
    tracked: BTreeMap<String, Tracked>,
}

#[derive(Debug)]
struct Tracked {
    since: Duration,
    reason: Reason,
    /// When the last `Firing` went out and at which severity; `None` while pending.
    sent: Option<(Duration, Severity)>,
}

impl Alerter {
    pub fn new(policy: Policy) -> Self {
        Alerter {
            policy,
            tracked: BTreeMap::new(),
        }
    }

    /// The notices due at `now` given the reasons present now: `Firing` for a reason present
    /// for `pending`, again at once when it got worse or every `repeat` while it stays;
    /// `Resolved` once for a reason that fired and is gone. A reason gone before it fired
    /// leaves no trace. Firing notices come in the order of `reasons`, then resolved ones by
    /// key. `now` must not go backwards.
    pub fn observe(&mut self, now: Duration, reasons: &[Reason]) -> Vec<Notice> {
        let mut notices = Vec::new();
        let mut present = BTreeSet::new();
        for reason in reasons {
            let key = reason.key();
            if !present.insert(key.clone()) {
                continue;
            }
            let t = self.tracked.entry(key).or_insert_with(|| Tracked {
                since: now,
                reason: reason.clone(),
                sent: None,
            });
            t.reason = reason.clone();
            let due = match t.sent {
                None => now.saturating_sub(t.since) >= self.policy.pending,
                Some((at, severity)) => {
                    reason.severity > severity || now.saturating_sub(at) >= self.policy.repeat
                }
            };
            if due {
                // A reminder at a lower severity lowers the bar, so a later escalation is news.
                t.sent = Some((now, reason.severity));
                notices.push(Notice {
                    state: NoticeState::Firing,
                    reason: reason.clone(),
                    since: t.since,
                });
            }
        }
        self.tracked.retain(|key, t| {
            let keep = present.contains(key);
            if !keep && t.sent.is_some() {
                notices.push(Notice {
                    state: NoticeState::Resolved,
                    reason: t.reason.clone(),
                    since: t.since,
                });
            }
            keep
        });
        notices
    }
}

/// The webhook body for `notice` (version 1 of its shape). `unix_now` and `now` are the same
/// moment on the wall clock and on the alerter's clock; they turn `since` into Unix seconds.
///
/// Fields: `version`, `box`, `state` (`firing` or `resolved`), `id`, `key` (what to
/// de-duplicate on), `severity`, `component`, `instance` (only when the reason has one),
/// `summary` (what is wrong), `action` (what to do), `since` (first seen) and `at` (this
/// notice), both seconds since the Unix epoch.
pub fn payload(box_name: &str, notice: &Notice, unix_now: u64, now: Duration) -> Value {
    let r = &notice.reason;
    let since = unix_now.saturating_sub(now.saturating_sub(notice.since).as_secs());
    let mut v = json!({
        "version": 1,
        "box": box_name,
        "state": notice.state.as_str(),
        "id": r.id,
        "key": r.key(),
        "severity": r.severity.as_str(),
        "component": r.component,
        "summary": r.what,
        "action": r.todo,
        "since": since,
        "at": unix_now,
    });
    if let Some(n) = r.instance {
        v["instance"] = n.into();
    }
    v
}

/// When to try delivering one notice again.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// The wait after the first failure...
    pub initial: Duration,
    /// ...doubling up to this.
    pub max: Duration,
    /// Tries in all, the first included.
    pub attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            attempts: 8,
        }
    }
}

impl Backoff {
    /// The wait after try number `attempt` (counted from 0) failed, or `None` when it was the
    /// last. `jitter` in [0, 1] comes from the caller; the wait is between half and all of the
    /// exponential step ("equal jitter"), so boxes that lost the same receiver do not retry in
    /// step, yet none retries at once.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Option<Duration> {
        if attempt.saturating_add(1) >= self.attempts {
            return None;
        }
        let step = (self.initial)
            .saturating_mul(2u32.saturating_pow(attempt))
            .min(self.max);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Some(step / 2 + (step / 2).mul_f64(jitter))
    }
}

/// Whether a webhook answer with this HTTP status is worth another try: server errors, a
/// request timeout and rate limiting are passing; any other client error (a wrong URL, a
/// refused token) will be the same next time.
pub fn is_retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reason(id: &str, severity: Severity, instance: Option<u32>) -> Reason {
        Reason {
            id: id.into(),
            severity,
            component: "emr".into(),
            instance,
            what: format!("{id} is wrong."),
            todo: "Call someone.".into(),
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// The notices as `(state, key, severity)`, for compact assertions.
    fn brief(notices: &[Notice]) -> Vec<(NoticeState, String, Severity)> {
        (notices.iter())
            .map(|n| (n.state, n.reason.key(), n.reason.severity))
            .collect()
    }

    use NoticeState::{Firing, Resolved};
    use Severity::{Critical, Warning};

    #[test]
    fn fires_after_pending_once_then_resolves_once() {
        let mut a = Alerter::new(Policy::default());
        let down = [reason("emr-instance-down", Warning, Some(2))];
        assert!(a.observe(secs(0), &down).is_empty());
        assert!(a.observe(secs(29), &down).is_empty());
        let fired = a.observe(secs(30), &down);
        assert_eq!(
            brief(&fired),
            [(Firing, "emr-instance-down/2".into(), Warning)]
        );
        assert_eq!(fired[0].since, secs(0));
        assert!(a.observe(secs(31), &down).is_empty());
        assert!(a.observe(secs(3600), &down).is_empty());
        let resolved = a.observe(secs(3601), &[]);
        assert_eq!(
            brief(&resolved),
            [(Resolved, "emr-instance-down/2".into(), Warning)]
        );
        assert_eq!(resolved[0].since, secs(0));
        assert!(a.observe(secs(3602), &[]).is_empty());
    }

    #[test]
    fn a_blip_shorter_than_pending_makes_no_noise() {
        let mut a = Alerter::new(Policy::default());
        let down = [reason("proxy-down", Critical, None)];
        for t in (0..600).step_by(20) {
            // Present for 20 s, gone for 20 s: it never lasts 30 s.
            let now: &[Reason] = if t % 40 == 0 { &down } else { &[] };
            assert!(a.observe(secs(t), now).is_empty(), "at {t}");
        }
    }

    #[test]
    fn reminds_every_repeat_and_escalates_at_once() {
        let policy = Policy::default();
        let mut a = Alerter::new(policy.clone());
        let warn = [reason("backup-disk-full", Warning, None)];
        let crit = [reason("backup-disk-full", Critical, None)];
        assert!(a.observe(secs(0), &warn).is_empty());
        assert_eq!(a.observe(secs(30), &warn).len(), 1);
        let escalated = a.observe(secs(40), &crit);
        assert_eq!(
            brief(&escalated),
            [(Firing, "backup-disk-full".into(), Critical)]
        );
        // Back to a warning is no news, and neither is critical again.
        assert!(a.observe(secs(50), &warn).is_empty());
        assert!(a.observe(secs(60), &crit).is_empty());
        let repeat = policy.repeat.as_secs();
        assert!(a.observe(secs(40 + repeat - 1), &warn).is_empty());
        let reminder = a.observe(secs(40 + repeat), &warn);
        assert_eq!(
            brief(&reminder),
            [(Firing, "backup-disk-full".into(), Warning)]
        );
        // The reminder was a warning, so critical now is news again.
        assert_eq!(a.observe(secs(41 + repeat), &crit).len(), 1);
    }

    #[test]
    fn keys_are_separate_and_instances_count() {
        let mut a = Alerter::new(Policy {
            pending: Duration::ZERO,
            repeat: secs(100),
        });
        let both = [
            reason("emr-instance-down", Warning, Some(1)),
            reason("emr-instance-down", Warning, Some(2)),
        ];
        assert_eq!(
            a.observe(secs(0), &both).len(),
            2,
            "zero pending fires at once"
        );
        let got = a.observe(secs(1), &both[1..]);
        assert_eq!(
            brief(&got),
            [(Resolved, "emr-instance-down/1".into(), Warning)]
        );
    }

    #[test]
    fn payload_converts_since_to_unix_time() {
        let notice = Notice {
            state: Firing,
            reason: reason("emr-instance-down", Warning, Some(2)),
            since: secs(100),
        };
        let v = payload("clinic-a", &notice, 1_700_000_000, secs(160));
        assert_eq!(
            v,
            json!({
                "version": 1,
                "box": "clinic-a",
                "state": "firing",
                "id": "emr-instance-down",
                "key": "emr-instance-down/2",
                "severity": "warning",
                "component": "emr",
                "instance": 2,
                "summary": "emr-instance-down is wrong.",
                "action": "Call someone.",
                "since": 1_699_999_940u64,
                "at": 1_700_000_000u64,
            })
        );
        let resolved = Notice {
            state: Resolved,
            reason: reason("proxy-down", Critical, None),
            since: secs(0),
        };
        let v = payload("clinic-a", &resolved, 50, secs(100));
        assert_eq!(v["state"], "resolved");
        assert_eq!(v["since"], 0, "never before the epoch");
        assert!(v.get("instance").is_none());
    }

    #[test]
    fn backoff_doubles_caps_and_ends() {
        let b = Backoff::default();
        let full: Vec<_> = (0..8).map(|n| b.delay(n, 1.0)).collect();
        let want = [1, 2, 4, 8, 16, 32, 64].map(|s| Some(secs(s)));
        assert_eq!(full[..7], want);
        assert_eq!(full[7], None, "eight tries in all");
        assert_eq!(b.delay(0, 0.0), Some(Duration::from_millis(500)));
        assert_eq!(b.delay(3, 0.5), Some(Duration::from_secs(6)));
        let long = Backoff {
            attempts: 100,
            ..b.clone()
        };
        assert_eq!(long.delay(20, 1.0), Some(secs(300)));
        assert_eq!(long.delay(98, 1.0), Some(secs(300)), "no overflow");
        assert_eq!(long.delay(5, f64::NAN), Some(secs(16)));
        assert_eq!(long.delay(5, 7.0), Some(secs(32)));
    }

    #[test]
    fn which_answers_are_worth_retrying() {
        for status in [408, 429, 500, 502, 503, 504, 599] {
            assert!(is_retryable(status), "{status}");
        }
        for status in [200, 301, 400, 401, 403, 404, 410, 413, 422, 600] {
            assert!(!is_retryable(status), "{status}");
        }
    }

    /// What the alerter was last told about each key, replayed by the property test.
    #[derive(Default)]
    struct Seen {
        present_since: BTreeMap<String, Duration>,
        last_firing: BTreeMap<String, (Duration, Severity)>,
    }

    proptest! {
        #[test]
        fn notices_follow_the_rules(
            pending in 0u64..60,
            repeat in 1u64..600,
            steps in prop::collection::vec(
                (0u64..120, prop::collection::vec((0usize..3, any::<bool>(), any::<bool>()), 0..4)),
                1..80,
            ),
        ) {
            let policy = Policy { pending: secs(pending), repeat: secs(repeat) };
            let mut a = Alerter::new(policy);
            let mut seen = Seen::default();
            let mut now = Duration::ZERO;
            for (step, set) in steps {
                now += secs(step);
                let reasons: Vec<Reason> = set.into_iter().map(|(id, critical, instance)| {
                    let severity = if critical { Critical } else { Warning };
                    reason(["a", "b", "c"][id], severity, instance.then_some(1))
                }).collect();
                // What the alerter should treat as present: the first of each key.
                let mut present = BTreeMap::new();
                for r in &reasons {
                    present.entry(r.key()).or_insert(r.severity);
                }
                seen.present_since.retain(|k, _| present.contains_key(k));
                for k in present.keys() {
                    seen.present_since.entry(k.clone()).or_insert(now);
                }
                for n in a.observe(now, &reasons) {
                    let key = n.reason.key();
                    match n.state {
                        Firing => {
                            let since = seen.present_since[&key];
                            prop_assert_eq!(n.since, since);
                            prop_assert!(now - since >= secs(pending), "fired before pending");
                            prop_assert_eq!(Some(&n.reason.severity), present.get(&key));
                            if let Some((at, severity)) = seen.last_firing.get(&key) {
                                prop_assert!(
                                    n.reason.severity > *severity || now - *at >= secs(repeat),
                                    "{} fired twice at {:?} and {:?}", key, at, now
                                );
                            }
                            seen.last_firing.insert(key, (now, n.reason.severity));
                        }
                        Resolved => {
                            prop_assert!(!present.contains_key(&key), "resolved while present");
                            let fired = seen.last_firing.remove(&key);
                            prop_assert!(fired.is_some(), "resolved unfired");
                        }
                    }
                }
                // Everything that fired and is gone was resolved in this very step.
                prop_assert!(seen.last_firing.keys().all(|k| present.contains_key(k)));
                // And everything that has lasted `pending` has fired: silence is not safe.
                for (key, since) in &seen.present_since {
                    if now - *since >= secs(pending) {
                        prop_assert!(seen.last_firing.contains_key(key), "{} never fired", key);
                    }
                }
            }
        }
    }
}
