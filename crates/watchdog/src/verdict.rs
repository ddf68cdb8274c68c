//! The verdict on one worker: pure decision logic, observations in, actions out.
//!
//! Time is an explicit argument (a `Duration` since the supervisor started), so the whole state
//! machine runs under a fake clock in tests. The executor (`worker.rs`) turns process exits and
//! probe answers into [`Event`]s and carries out the [`Action`]s.

use std::collections::VecDeque;
use std::time::Duration;

/// How patient to be, and how to restart.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    /// Consecutive failed probes after which a started worker is hung.
    pub failure_threshold: u32,
    /// How long a new process may take to answer its first probe (Tomcat needs minutes).
    pub startup_budget: Duration,
    /// The most extra time a hang episode gets while a JVM is collecting garbage.
    pub gc_max_extension: Duration,
    /// The first restart after an exit waits this long after the immediate one...
    pub backoff_initial: Duration,
    /// ...doubling up to this.
    pub backoff_max: Duration,
    /// This many restarts within `crash_loop_window` is a crash loop.
    pub crash_loop_restarts: u32,
    pub crash_loop_window: Duration,
    /// How often a failed (crash-looping) worker is still tried.
    pub failed_retry_interval: Duration,
}

impl Policy {
    /// The delay before restart number `attempt` (0 = the first restart after a healthy run,
    /// which is immediate), with `jitter` in [0, 1) spreading it by up to a quarter.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        let exp = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        let base = self
            .backoff_initial
            .saturating_mul(exp)
            .min(self.backoff_max);
        let spread = base.mul_f64(0.25 * jitter.clamp(0.0, 1.0));
        (base + spread).min(self.backoff_max)
    }
}

/// What the supervisor last decided about a worker. The names are what `oscarbox status` shows.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Process started; waiting for its first good probe within the startup budget.
    Starting {
        since: Duration,
    },
    Healthy,
    /// Answered before, failing now; `failures` consecutive failed probes.
    Suspect {
        failures: u32,
    },
    /// Judged hung: being drained, dumped and stopped.
    Hung,
    /// The process ended; a restart is scheduled at `restart_at`.
    Restarting {
        restart_at: Duration,
    },
    /// Crash loop: retried slowly, at `retry_at`.
    Failed {
        retry_at: Duration,
    },
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Starting { .. } => "starting",
            State::Healthy => "healthy",
            State::Suspect { .. } => "suspect",
            State::Hung => "hung",
            State::Restarting { .. } => "restarting",
            State::Failed { .. } => "failed",
        }
    }
}

/// What a JVM's counters say while its probes fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gc {
    /// Not a JVM, or its counters could not be read.
    Unknown,
    /// A collection is running and the process is using CPU: a pause, not a hang.
    Collecting,
    /// No collection running (or no CPU use): a failed probe counts fully.
    Idle,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A new process was started.
    Spawned,
    ProbeOk,
    ProbeFailed {
        reason: String,
        gc: Gc,
    },
    /// The process ended (by itself, or after the supervisor stopped it).
    Exited {
        reason: String,
    },
    /// Time passed; lets scheduled restarts fire.
    Tick,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start the process now.
    Spawn,
    /// Drain, take a diagnostic, SIGTERM, grace, SIGKILL; then report `Exited`.
    Heal { reason: String },
    /// Tell people: a crash loop began or ended.
    Alert { message: String },
}

/// Everything the supervisor remembers about one worker.
#[derive(Debug, Clone)]
pub struct Worker {
    pub state: State,
    /// Why it is in its state, in words for `oscarbox status`.
    pub why: String,
    /// Restarts so far (every start after the first).
    pub restarts: u32,
    /// Restarts since the worker was last healthy: the backoff exponent.
    attempt: u32,
    /// When recent restarts happened, for crash-loop detection.
    recent: VecDeque<Duration>,
    /// When the current hang episode's GC extension began.
    gc_extension_since: Option<Duration>,
    started_once: bool,
    /// A crash loop was reported and its end not yet.
    in_crash_loop_alerted: bool,
}

impl Default for Worker {
    fn default() -> Self {
        Worker::new()
    }
}

impl Worker {
    /// A worker not yet started; the first `Tick` spawns it.
    pub fn new() -> Worker {
        Worker {
            state: State::Restarting {
                restart_at: Duration::ZERO,
            },
            why: "not started yet".into(),
            restarts: 0,
            attempt: 0,
            recent: VecDeque::new(),
            gc_extension_since: None,
            started_once: false,
            in_crash_loop_alerted: false,
        }
    }

    /// Feeds one event at `now`; `jitter` in [0, 1) comes from the caller so tests are
    /// deterministic.
    pub fn on(&mut self, event: Event, now: Duration, policy: &Policy, jitter: f64) -> Vec<Action> {
        match event {
            Event::Spawned => {
                if self.started_once {
                    self.restarts += 1;
                    self.recent.push_back(now);
                }
                self.started_once = true;
                self.state = State::Starting { since: now };
                self.why = "started; waiting for its first isAlive".into();
                self.gc_extension_since = None;
                Vec::new()
            }
            Event::ProbeOk => {
                self.state = State::Healthy;
                self.why = "answers isAlive".into();
                self.attempt = 0;
                self.gc_extension_since = None;
                if self.in_crash_loop_alerted {
                    // People were told it was failing; tell them it recovered.
                    self.in_crash_loop_alerted = false;
                    self.recent.clear();
                    return vec![Action::Alert {
                        message: "recovered from a crash loop".into(),
                    }];
                }
                Vec::new()
            }
            Event::ProbeFailed { reason, gc } => self.probe_failed(reason, gc, now, policy),
            Event::Exited { reason } => self.exited(reason, now, policy, jitter),
            Event::Tick => match self.state {
                State::Restarting { restart_at }
                | State::Failed {
                    retry_at: restart_at,
                } if now >= restart_at => {
                    vec![Action::Spawn]
                }
                _ => Vec::new(),
            },
        }
    }

    fn probe_failed(
        &mut self,
        reason: String,
        gc: Gc,
        now: Duration,
        policy: &Policy,
    ) -> Vec<Action> {
        let (failures, budget_spent) = match self.state {
            State::Starting { since } => {
                let used = now.saturating_sub(since);
                if used < policy.startup_budget {
                    self.why = format!(
                        "starting, {} of its startup budget used: {reason}",
                        fmt(used)
                    );
                    return Vec::new();
                }
                // The budget is spent: a worker that never answered is hung at once.
                (policy.failure_threshold, true)
            }
            State::Healthy => (1, false),
            State::Suspect { failures } => (failures.saturating_add(1), false),
            // Already being handled, or not running: a late probe answer changes nothing.
            State::Hung | State::Restarting { .. } | State::Failed { .. } => return Vec::new(),
        };
        if failures < policy.failure_threshold {
            self.state = State::Suspect { failures };
            self.why = format!("{failures} failed probe(s) in a row: {reason}");
            return Vec::new();
        }
        if gc == Gc::Collecting {
            let since = *self.gc_extension_since.get_or_insert(now);
            let given = now.saturating_sub(since);
            if given < policy.gc_max_extension {
                self.state = State::Suspect { failures };
                self.why = format!(
                    "not answering, but collecting garbage: given {} of at most {} more",
                    fmt(given),
                    fmt(policy.gc_max_extension)
                );
                return Vec::new();
            }
        }
        self.state = State::Hung;
        self.why = if budget_spent {
            format!(
                "no answer within its startup budget of {}: {reason}",
                fmt(policy.startup_budget)
            )
        } else {
            format!("hung: {failures} failed probes in a row: {reason}")
        };
        vec![Action::Heal {
            reason: self.why.clone(),
        }]
    }

    fn exited(
        &mut self,
        reason: String,
        now: Duration,
        policy: &Policy,
        jitter: f64,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.in_crash_loop(now, policy) {
            let retry_at = now + policy.failed_retry_interval;
            self.state = State::Failed { retry_at };
            self.why = format!(
                "crash loop: {} restarts within {}; last: {reason}; next try in {}",
                self.recent.len(),
                fmt(policy.crash_loop_window),
                fmt(policy.failed_retry_interval)
            );
            // One alert per crash loop, however many slow retries fail.
            if !self.in_crash_loop_alerted {
                self.in_crash_loop_alerted = true;
                actions.push(Action::Alert {
                    message: self.why.clone(),
                });
            }
            return actions;
        }
        let delay = policy.backoff(self.attempt, jitter);
        self.attempt = self.attempt.saturating_add(1);
        self.state = State::Restarting {
            restart_at: now + delay,
        };
        self.why = format!("{reason}; restarting in {}", fmt(delay));
        if delay.is_zero() {
            actions.push(Action::Spawn);
        }
        actions
    }

    fn in_crash_loop(&mut self, now: Duration, policy: &Policy) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|&t| now.saturating_sub(t) > policy.crash_loop_window)
        {
            self.recent.pop_front();
        }
        self.recent.len() >= policy.crash_loop_restarts as usize
    }
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}s", d.as_secs())
    }
}

#[cfg(test)]
mod tests;
