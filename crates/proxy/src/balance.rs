//! Which instance gets the next request: pure decision logic, no I/O, time passed in.
//!
//! Each backend is up or down (from active `isAlive` probes and from passive observation of
//! real requests) and enabled or draining (from the admin API). New requests go to the up,
//! enabled backend with the fewest requests outstanding, scaled by its slow-start weight, so
//! that an instance just back from an ejection is not flooded while its caches are cold.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// The thresholds that move a backend between up and down.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Consecutive passed probes that bring a down backend up (one for a backend never up).
    pub rise: u32,
    /// Consecutive failed probes that take an up backend down.
    pub fall: u32,
    /// Consecutive failed requests that take an up backend down.
    pub passive_fall: u32,
    pub slow_start: Duration,
}

/// What a real request saw of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An answer that says nothing against the backend (any status but 502, 503 or 504).
    Answered,
    /// No connection, no answer in time, a broken connection, or a gateway-class status.
    Failed(FailureKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Connect,
    Timeout,
    Broken,
    Status(u16),
}

impl FailureKind {
    fn describe(self) -> String {
        match self {
            FailureKind::Connect => "requests could not connect".into(),
            FailureKind::Timeout => "requests got no answer in time".into(),
            FailureKind::Broken => "connections broke mid-request".into(),
            FailureKind::Status(s) => format!("requests were answered with HTTP {s}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Health {
    /// Serving; `since` starts the slow start (`None`: up from the start, no warm-up).
    Up {
        since: Option<Instant>,
    },
    Down {
        why: String,
    },
}

#[derive(Debug, Clone)]
pub struct Backend {
    pub instance: u32,
    pub addr: SocketAddr,
    health: Health,
    /// Set by the admin API; `Some(None)` lasts until enabled, `Some(Some(t))` ends at `t`.
    drain: Option<Option<Instant>>,
    ever_up: bool,
    passes: u32,
    fails: u32,
    passive_fails: u32,
    pub outstanding: u32,
    pub requests: u64,
    /// Woken when the backend is taken down, so that idempotent requests waiting on it go
    /// elsewhere at once rather than at their timeout.
    pub ejected: Arc<tokio::sync::Notify>,
}

impl Backend {
    pub fn new(instance: u32, addr: SocketAddr) -> Backend {
        Backend {
            instance,
            addr,
            health: Health::Down {
                why: "not probed yet".into(),
            },
            drain: None,
            ever_up: false,
            passes: 0,
            fails: 0,
            passive_fails: 0,
            outstanding: 0,
            requests: 0,
            ejected: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub fn is_up(&self) -> bool {
        matches!(self.health, Health::Up { .. })
    }

    pub fn is_draining(&self, now: Instant) -> bool {
        match self.drain {
            None => false,
            Some(None) => true,
            Some(Some(until)) => now < until,
        }
    }

    fn eligible(&self, now: Instant) -> bool {
        self.is_up() && !self.is_draining(now)
    }

    /// Its share of load while warming up: from 0.1 to 1 over the slow-start period.
    pub fn weight(&self, policy: &Policy, now: Instant) -> f64 {
        match self.health {
            Health::Up { since: Some(t) } if !policy.slow_start.is_zero() => {
                let f = now.saturating_duration_since(t).as_secs_f64()
                    / policy.slow_start.as_secs_f64();
                f.clamp(0.1, 1.0)
            }
            Health::Up { .. } => 1.0,
            Health::Down { .. } => 0.0,
        }
    }

    /// `up`, `down` or `draining`, and why, for the admin API.
    pub fn state(&self, now: Instant) -> (&'static str, String) {
        match (&self.health, self.is_draining(now)) {
            (_, true) => ("draining", "drained through the admin API".into()),
            (Health::Up { .. }, false) => ("up", "answers isAlive".into()),
            (Health::Down { why }, false) => ("down", why.clone()),
        }
    }

    fn go_down(&mut self, why: String) {
        if self.is_up() {
            tracing::warn!(instance = self.instance, addr = %self.addr, "instance ejected: {why}");
            self.ejected.notify_waiters();
        }
        self.health = Health::Down { why };
        self.passes = 0;
        self.passive_fails = 0;
    }
}

/// All backends, and the round-robin cursor that breaks ties.
#[derive(Debug)]
pub struct Pool {
    pub policy: Policy,
    pub backends: Vec<Backend>,
    cursor: usize,
}

impl Pool {
    pub fn new(policy: Policy, backends: Vec<Backend>) -> Pool {
        Pool {
            policy,
            backends,
            cursor: 0,
        }
    }

    fn get(&mut self, instance: u32) -> Option<&mut Backend> {
        self.backends.iter_mut().find(|b| b.instance == instance)
    }

    /// The backend for the next request: `prefer` (a sticky session's instance) when it can
    /// take it, else the least loaded eligible one not in `tried`. Counts it as outstanding;
    /// the caller must call [`Pool::finish`] exactly once.
    pub fn pick(&mut self, prefer: Option<u32>, tried: &[u32], now: Instant) -> Option<Backend> {
        let n = self.backends.len();
        if n == 0 {
            return None;
        }
        let policy = self.policy;
        let preferred = prefer.and_then(|p| {
            self.backends
                .iter()
                .position(|b| b.instance == p && b.eligible(now) && !tried.contains(&p))
        });
        let chosen = preferred.or_else(|| {
            let start = self.cursor % n;
            self.cursor = self.cursor.wrapping_add(1);
            let mut best: Option<(usize, f64)> = None;
            for i in (0..n).map(|k| (start + k) % n) {
                let b = &self.backends[i];
                if !b.eligible(now) || tried.contains(&b.instance) {
                    continue;
                }
                let load = f64::from(b.outstanding + 1) / b.weight(&policy, now);
                if best.is_none_or(|(_, l)| load < l) {
                    best = Some((i, load));
                }
            }
            best.map(|(i, _)| i)
        })?;
        let b = &mut self.backends[chosen];
        b.outstanding += 1;
        b.requests += 1;
        Some(b.clone())
    }

    /// Ends a request picked with [`Pool::pick`] and learns from how it went.
    pub fn finish(&mut self, instance: u32, outcome: Outcome, now: Instant) {
        let passive_fall = self.policy.passive_fall;
        let eligible_others = self
            .backends
            .iter()
            .filter(|b| b.instance != instance && b.eligible(now))
            .count();
        let Some(b) = self.get(instance) else { return };
        b.outstanding = b.outstanding.saturating_sub(1);
        match outcome {
            Outcome::Answered => b.passive_fails = 0,
            Outcome::Failed(kind) => {
                b.passive_fails += 1;
                // Never eject the last instance on passive evidence alone: with nowhere else to
                // send requests, only the probes decide.
                if b.is_up() && b.passive_fails >= passive_fall && eligible_others > 0 {
                    b.go_down(format!(
                        "{} {} {}",
                        b.passive_fails,
                        if b.passive_fails == 1 {
                            "time:"
                        } else {
                            "times in a row:"
                        },
                        kind.describe()
                    ));
                }
            }
        }
    }

    /// Learns from an active probe: `Ok(())` for `alive`, else why not.
    pub fn probed(&mut self, instance: u32, result: Result<(), String>, now: Instant) {
        let policy = self.policy;
        let Some(b) = self.get(instance) else { return };
        match result {
            Ok(()) => {
                b.fails = 0;
                b.passes += 1;
                let needed = if b.ever_up { policy.rise } else { 1 };
                if !b.is_up() && b.passes >= needed {
                    let since = b.ever_up.then_some(now);
                    tracing::info!(instance = b.instance, addr = %b.addr, "instance is up");
                    b.health = Health::Up { since };
                    b.ever_up = true;
                    b.passive_fails = 0;
                }
            }
            Err(why) => {
                b.passes = 0;
                b.fails += 1;
                if !b.is_up() {
                    b.health = Health::Down { why };
                } else if b.fails >= policy.fall {
                    b.go_down(format!("{} probes in a row failed: {why}", b.fails));
                }
            }
        }
    }

    /// Stops new requests to `instance`; `until` ends the drain by itself. A drain with a
    /// lease never replaces one without (a person's drain outlives the watchdog's restarts).
    pub fn drain(&mut self, instance: u32, until: Option<Instant>) -> bool {
        match self.get(instance) {
            Some(b) => {
                if b.drain != Some(None) || until.is_none() {
                    b.drain = Some(until);
                }
                true
            }
            None => false,
        }
    }

    /// Ends a drain; with `lease_only`, only one that has a lease.
    pub fn enable(&mut self, instance: u32, lease_only: bool) -> bool {
        match self.get(instance) {
            Some(b) => {
                if !lease_only || b.drain != Some(None) {
                    b.drain = None;
                }
                true
            }
            None => false,
        }
    }

    pub fn outstanding(&self, instance: u32) -> Option<u32> {
        self.backends
            .iter()
            .find(|b| b.instance == instance)
            .map(|b| b.outstanding)
    }

    /// Whether any request could be served now.
    pub fn any_eligible(&self, now: Instant) -> bool {
        self.backends.iter().any(|b| b.eligible(now))
    }

    /// Replaces the set of backends (a reload), keeping what is known of those that stay at
    /// the same address.
    pub fn replace(&mut self, policy: Policy, wanted: Vec<(u32, SocketAddr)>) {
        let mut old = std::mem::take(&mut self.backends);
        self.policy = policy;
        self.backends = wanted
            .into_iter()
            .map(|(instance, addr)| {
                match old
                    .iter()
                    .position(|b| b.instance == instance && b.addr == addr)
                {
                    Some(i) => old.swap_remove(i),
                    None => Backend::new(instance, addr),
                }
            })
            .collect();
    }
}

#[cfg(test)]
mod tests;
