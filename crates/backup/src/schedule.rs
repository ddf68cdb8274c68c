//! When to take a documents snapshot: pure, under an explicit clock. Changes the watcher saw
//! are debounced (a snapshot once the directory has been quiet for `debounce`, but never later
//! than `max_delay` after the first unsaved change, so a directory that never goes quiet is
//! still saved); a full scan is due every `rescan`, and at once when the watcher says it lost
//! events (its queue overflowed, or it asks for a rescan). A snapshot that failed is retried
//! after `retry`.

use std::time::Duration;

/// What triggers the next snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Changes the watcher reported.
    Changes,
    /// The periodic full scan, or the watcher lost events.
    Rescan,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    debounce: Duration,
    max_delay: Duration,
    rescan: Duration,
    retry: Duration,
    /// The first and the latest change not yet in a snapshot.
    pending: Option<(Duration, Duration)>,
    /// When the last full scan finished (a snapshot always scans the whole tree, so every
    /// snapshot is one).
    last_scan: Option<Duration>,
    /// The watcher lost events: scan at once.
    lost_events: bool,
    /// When a failed snapshot may be tried again.
    retry_at: Option<Duration>,
}

impl Schedule {
    pub fn new(debounce: Duration, rescan: Duration, retry: Duration) -> Schedule {
        Schedule {
            debounce,
            max_delay: debounce * 6,
            rescan,
            retry,
            pending: None,
            last_scan: None,
            lost_events: false,
            retry_at: None,
        }
    }

    /// The watcher saw a change at `now`.
    pub fn changed(&mut self, now: Duration) {
        self.pending = Some(match self.pending {
            Some((first, _)) => (first, now),
            None => (now, now),
        });
    }

    /// The watcher lost events (overflow, or it asked for a rescan).
    pub fn lost_events(&mut self) {
        self.lost_events = true;
    }

    /// Whether a snapshot is due at `now`, and why.
    pub fn due(&self, now: Duration) -> Option<Due> {
        if self.retry_at.is_some_and(|t| now < t) {
            return None;
        }
        if self.lost_events
            || self
                .last_scan
                .is_none_or(|t| now.saturating_sub(t) >= self.rescan)
        {
            return Some(Due::Rescan);
        }
        let (first, latest) = self.pending?;
        (now.saturating_sub(latest) >= self.debounce || now.saturating_sub(first) >= self.max_delay)
            .then_some(Due::Changes)
    }

    /// When to look again if nothing happens meanwhile.
    pub fn next_check(&self, now: Duration) -> Duration {
        let scan = if self.lost_events {
            now
        } else {
            self.last_scan.map_or(now, |t| t + self.rescan)
        };
        let changes = self
            .pending
            .map(|(first, latest)| (latest + self.debounce).min(first + self.max_delay));
        let at = changes.map_or(scan, |c| c.min(scan));
        at.max(self.retry_at.unwrap_or(now)).max(now)
    }

    /// A snapshot started at `started` (it saw every change up to then) finished at `now`.
    pub fn saved(&mut self, started: Duration, now: Duration) {
        if self.pending.is_some_and(|(_, latest)| latest < started) {
            self.pending = None;
        } else if let Some((_, latest)) = self.pending {
            // Changes during the snapshot may have been missed by it: they start a new round.
            self.pending = Some((started, latest));
        }
        self.last_scan = Some(now);
        self.lost_events = false;
        self.retry_at = None;
    }

    /// A snapshot failed at `now`: everything stays due, after the retry interval.
    pub fn failed(&mut self, now: Duration) {
        self.retry_at = Some(now + self.retry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    fn fresh() -> Schedule {
        let mut sch = Schedule::new(s(10), s(86_400), s(60));
        assert_eq!(
            sch.due(s(0)),
            Some(Due::Rescan),
            "the first scan is due at once"
        );
        sch.saved(s(0), s(1));
        sch
    }

    #[test]
    fn a_change_is_saved_once_the_directory_is_quiet() {
        let mut sch = fresh();
        sch.changed(s(100));
        assert_eq!(sch.due(s(105)), None);
        assert_eq!(sch.next_check(s(105)), s(110));
        sch.changed(s(108));
        assert_eq!(
            sch.due(s(110)),
            None,
            "a later change restarts the quiet time"
        );
        assert_eq!(sch.due(s(118)), Some(Due::Changes));
        sch.saved(s(118), s(119));
        assert_eq!(sch.due(s(200)), None);
    }

    #[test]
    fn a_directory_that_never_goes_quiet_is_saved_within_the_longest_delay() {
        let mut sch = fresh();
        for t in (100..200).step_by(5) {
            sch.changed(s(t));
            if t < 160 {
                assert_eq!(sch.due(s(t)), None, "at {t}");
            }
        }
        assert_eq!(sch.due(s(160)), Some(Due::Changes));
    }

    #[test]
    fn lost_events_and_the_daily_scan_force_a_rescan() {
        let mut sch = fresh();
        sch.lost_events();
        assert_eq!(sch.due(s(2)), Some(Due::Rescan));
        sch.saved(s(2), s(3));
        assert_eq!(sch.due(s(4)), None);
        assert_eq!(sch.due(s(86_403)), Some(Due::Rescan));
    }

    #[test]
    fn a_change_during_a_snapshot_is_saved_by_the_next_one() {
        let mut sch = fresh();
        sch.changed(s(100));
        assert_eq!(sch.due(s(110)), Some(Due::Changes));
        sch.changed(s(112));
        sch.saved(s(110), s(115));
        assert_eq!(sch.due(s(122)), Some(Due::Changes));
    }

    #[test]
    fn a_failed_snapshot_is_retried_after_the_interval() {
        let mut sch = fresh();
        sch.changed(s(100));
        sch.failed(s(110));
        assert_eq!(sch.due(s(150)), None);
        assert_eq!(sch.next_check(s(150)), s(170));
        assert_eq!(sch.due(s(170)), Some(Due::Changes));
    }

    proptest! {
        /// Every change is in a snapshot taken no later than `max_delay` after it (snapshots
        /// succeed and take no time), and snapshots are never due while nothing changed and no
        /// scan is due.
        #[test]
        fn every_change_is_saved_in_time(changes in prop::collection::btree_set(1u64..2_000, 0..60)) {
            let mut sch = Schedule::new(s(10), s(86_400), s(60));
            sch.saved(s(0), s(0));
            let mut unsaved: Vec<u64> = Vec::new();
            for now in 1u64..2_100 {
                if changes.contains(&now) {
                    sch.changed(s(now));
                    unsaved.push(now);
                }
                match sch.due(s(now)) {
                    Some(_) => {
                        prop_assert!(!unsaved.is_empty(), "due at {now} with nothing to save");
                        sch.saved(s(now), s(now));
                        unsaved.clear();
                    }
                    None => {
                        for &c in &unsaved {
                            prop_assert!(now - c < 60, "a change at {c} still unsaved at {now}");
                        }
                    }
                }
            }
        }
    }
}
