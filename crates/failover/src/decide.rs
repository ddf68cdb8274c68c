//! The pair's decision state machine: one [`Observation`] per tick in, one [`Plan`] out.
//!
//! The ledger is the authority on roles: its holder is the primary, the other node is the
//! replica, and every tick converges the pair towards that (a cut-short plan is finished or
//! undone by the next tick's plan). The order of concerns in a tick:
//! 1. Only the holder may be writable: any other writable node is set read-only at once.
//! 2. The primary: serving; or read-only and needing a new epoch (just started, restarted in
//!    place, a promotion or switchover cut short); or down (restart in place within a budget,
//!    then fail over); or unresponsive (fail over once the replica confirms).
//! 3. The replica: restarted, rejoined, rebuilt or alerted about, while the primary carries on.
//!
//! Every promotion records a new epoch first, even of the same node after a restart in place
//! (it comes back read-only, as configured): "writable" and "holds the newest epoch" never
//! part. A holder that comes back read-only is promoted again unless the other node has
//! everything it has and more; then the other is promoted, and nothing is stranded.
//!
//! Time is an explicit argument (`Observation::now`), so tests run the machine under a fake
//! clock. The executor applies a plan completely (or until a step fails) before the next tick.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::gtid::GtidList;
use crate::observe::{
    IoThread, Node, NodeId, Observation, Replica, Status, ER_MASTER_FATAL_ERROR_READING_BINLOG,
};
use crate::plan::{Incident, Kind, Plan, Step};

/// How patient to be. The defaults aim at the targets: a crash recovered within 5 s, a
/// hang within 8 s, a switchover blocking writes at most 2 s.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Restarts in place of a primary that exited with its data intact, within
    /// `restart_window`, before failing over instead.
    pub restart_attempts: u32,
    pub restart_window: Duration,
    /// How long a primary restarted in place may take to answer (InnoDB crash recovery)
    /// before it counts as hung.
    pub restart_grace: Duration,
    /// How long a running primary must stay unresponsive before the failover (which also needs
    /// the replica to have lost it).
    pub confirm_after: Duration,
    /// The replica has lost its primary when its IO thread is not connected or has received
    /// nothing (not even the master heartbeat) for this long.
    pub replica_silence: Duration,
    /// How long a failover waits for the replica to apply its relay log.
    pub drain_timeout: Duration,
    /// The longest a switchover blocks writes waiting for the replica to catch up.
    pub catch_up_timeout: Duration,
    /// A switchover is refused while the replica is further behind than this.
    pub switchover_max_lag: Duration,
    /// How long a replica may be unresponsive or broken before it is restarted or rebuilt.
    pub replica_grace: Duration,
    /// The least time between two repairs of the replica, and between two starts of a primary
    /// that cannot be failed over.
    pub retry_interval: Duration,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            restart_attempts: 2,
            restart_window: Duration::from_secs(600),
            restart_grace: Duration::from_secs(4),
            confirm_after: Duration::from_secs(3),
            replica_silence: Duration::from_secs(3),
            drain_timeout: Duration::from_secs(60),
            catch_up_timeout: Duration::from_secs(2),
            switchover_max_lag: Duration::from_secs(1),
            replica_grace: Duration::from_secs(30),
            retry_interval: Duration::from_secs(30),
        }
    }
}

/// Standing problems, alerted once when they begin and recorded when they end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Condition {
    StrayWritable,
    SemiSyncOff,
    FailoverBlocked,
    ReplicaDown,
    ReplicaBroken,
}

impl Condition {
    fn ended(self) -> &'static str {
        match self {
            Condition::StrayWritable => "no node but the epoch's holder is writable any more",
            Condition::SemiSyncOff => "semi-sync is on again: acknowledged writes reach both nodes",
            Condition::FailoverBlocked => "the pair no longer needs a person to fail over",
            Condition::ReplicaDown => "the replica runs again",
            Condition::ReplicaBroken => "the replica replicates cleanly again",
        }
    }
}

/// The repairs of a replica, rate-limited one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fix {
    Start,
    Restart,
    Attach,
    StartReplication,
    Rebuild,
}

/// What the decision core remembers across ticks about the pair.
#[derive(Debug, Clone, Default)]
pub struct Pair {
    /// The primary the rest is about; when the ledger names another, the rest starts afresh.
    primary: Option<NodeId>,
    /// When the primary was first seen not serving in this outage.
    down_since: Option<Duration>,
    /// Its restarts in place within the policy's window.
    restarts: VecDeque<Duration>,
    last_restart: Option<Duration>,
    /// The primary's `gtid_binlog_pos` and semi-sync state when last seen writable, for the
    /// incident report.
    last_seen: Option<(GtidList, bool)>,
    /// When the replica was first seen down, unresponsive or broken in this episode.
    replica_trouble_since: Option<Duration>,
    /// When each repair of the replica was last planned: each is retried at most every
    /// `retry_interval`, while a different one (attach after a start) may follow at once.
    replica_fixes: BTreeMap<Fix, Duration>,
    alerted: BTreeMap<Condition, String>,
}

/// A switchover the pair is not in a state to do safely; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("switchover refused: {0}")]
pub struct Refused(pub String);

/// A plan under construction.
#[derive(Debug, Default)]
struct Builder {
    kind: Option<Kind>,
    reasons: Vec<String>,
    steps: Vec<Step>,
    raised: BTreeMap<Condition, String>,
    alerts: Vec<String>,
}

impl Builder {
    fn kind(&mut self, kind: Kind) {
        self.kind = self.kind.max(Some(kind));
    }

    fn why(&mut self, reason: String) {
        self.reasons.push(reason);
    }

    fn step(&mut self, step: Step) {
        self.steps.push(step);
    }

    fn raise(&mut self, condition: Condition, message: String) {
        self.raised.entry(condition).or_insert(message);
    }
}

impl Pair {
    pub fn new() -> Pair {
        Pair::default()
    }

    /// Decides this tick's plan. The executor applies it (until a step fails) before it
    /// observes the pair again, and never runs two plans at once.
    pub fn tick(&mut self, obs: &Observation, policy: &Policy) -> Plan {
        let (p, r) = (obs.ledger.primary, obs.ledger.primary.other());
        if self.primary != Some(p) {
            // A new primary: the old one's outage, restarts and repairs are history.
            *self = Pair {
                primary: Some(p),
                alerted: std::mem::take(&mut self.alerted),
                ..Pair::default()
            };
        }
        let mut b = Builder::default();
        if obs.node(r).is_writable() {
            b.kind(Kind::Repair);
            b.step(Step::SetReadOnly { node: r });
            let why = format!(
                "{r} accepted writes although {p} holds the newest epoch ({}); {r} is set read-only at once, so that only one node is ever writable.",
                obs.ledger.epoch
            );
            b.raise(Condition::StrayWritable, why.clone());
            b.why(why);
        }
        let mut care_for_replica = true;
        match obs.node(p) {
            Node::Up(sp) if sp.read_only => {
                care_for_replica = self.promote(obs, policy, sp, &mut b) == p;
            }
            Node::Up(sp) => self.serving(obs, sp, &mut b),
            Node::Down {
                exited,
                data_intact,
            } => {
                care_for_replica = !self.down(obs, policy, exited.as_deref(), *data_intact, &mut b);
            }
            Node::Unresponsive { stopped, reason } => {
                care_for_replica = !self.unresponsive(obs, policy, *stopped, reason, &mut b);
            }
        }
        if care_for_replica {
            self.care_for_replica(obs, policy, &mut b);
        }
        self.finish(b, obs)
    }

    /// The primary is up and writable.
    fn serving(&mut self, obs: &Observation, sp: &Status, b: &mut Builder) {
        let p = obs.ledger.primary;
        self.down_since = None;
        self.last_seen = Some((sp.gtid_binlog_pos.clone(), sp.semi_sync.active));
        if obs.endpoint != Some(p) {
            b.kind(Kind::Repair);
            b.step(Step::RepointEndpoint { to: p });
            b.why(format!(
                "the database endpoint did not point at {p}, the primary; it does now."
            ));
        }
        let r = p.other();
        let replica_follows = obs
            .node(r)
            .status()
            .and_then(|st| st.replica.as_ref())
            .is_some_and(|x| x.source == Some(p) && x.io == IoThread::Running);
        if !sp.semi_sync.enabled {
            // Off after a failover, while the old primary is away: with no replica to wait for,
            // every write would stall for the semi-sync timeout. Back on as soon as one follows.
            if replica_follows {
                b.kind(Kind::Repair);
                b.step(Step::SetSemiSyncMaster { node: p, on: true });
                b.why(format!("semi-sync master was off on {p}, the primary, and {r} replicates from it; it is switched on, so that a write is acknowledged only once {r} has it."));
            }
        } else if !sp.semi_sync.active {
            b.raise(Condition::SemiSyncOff, format!(
                "semi-sync on {p} fell back to asynchronous replication: writes are acknowledged before {} has them, so a failover now could lose the latest ones",
                p.other()
            ));
        }
    }

    /// The ledger's holder answers but is read-only: make the node with all the data writable
    /// under a new epoch. Returns that node.
    fn promote(
        &mut self,
        obs: &Observation,
        policy: &Policy,
        sp: &Status,
        b: &mut Builder,
    ) -> NodeId {
        let (p, r) = (obs.ledger.primary, obs.ledger.primary.other());
        self.down_since = None;
        // What was seen of the primary before is no guide to the promoted node's semi-sync:
        // an incident report must not claim it was on from a sample of an earlier life.
        self.last_seen = None;
        // The ledger's holder, unless the other node answers and has everything it has and
        // more: then promoting the other loses nothing, and promoting the holder would strand
        // the other's extra transactions.
        let ahead = obs.node(r).status().filter(|sr| {
            sr.history_after_drain().compare(&sp.history_after_drain())
                == crate::gtid::History::Ahead
        });
        let (target, st) = match ahead {
            Some(sr) => (r, sr),
            None => (p, sp),
        };
        let epoch = obs.ledger.epoch + 1;
        b.kind(Kind::Promote);
        let mut why = format!(
            "{p} holds epoch {} but is read-only (it was just started or restarted, or a promotion or switchover was cut short).",
            obs.ledger.epoch
        );
        if target == r {
            why.push_str(&format!(
                " {r} has everything {p} has and more ({} against {}), so {r} is promoted instead and nothing is lost.",
                st.history_after_drain(),
                sp.history_after_drain()
            ));
        }
        if let Some(repl) = &st.replica {
            b.step(Step::DrainRelayLog {
                node: target,
                io_pos: repl.gtid_io_pos.clone(),
                timeout: policy.drain_timeout,
            });
            why.push_str(&format!(
                " {target} first applies what its relay log holds."
            ));
        }
        b.step(Step::AdvanceEpoch {
            epoch,
            primary: target,
        });
        b.step(Step::Promote {
            node: target,
            epoch,
        });
        if obs.endpoint != Some(target) {
            b.step(Step::RepointEndpoint { to: target });
        }
        why.push_str(&format!(
            " Epoch {epoch} is recorded for {target}, then {target} becomes the writable primary."
        ));
        b.why(why);
        target
    }

    /// The primary's process is not running. Returns whether a failover was planned.
    fn down(
        &mut self,
        obs: &Observation,
        policy: &Policy,
        exited: Option<&str>,
        data_intact: bool,
        b: &mut Builder,
    ) -> bool {
        let (p, now) = (obs.ledger.primary, obs.now);
        self.down_since.get_or_insert(now);
        while self
            .restarts
            .front()
            .is_some_and(|&t| now.saturating_sub(t) > policy.restart_window)
        {
            self.restarts.pop_front();
        }
        let how = match exited {
            Some(status) => format!("exited ({status})"),
            None => "is not running".to_string(),
        };
        if data_intact && self.restarts.len() < policy.restart_attempts as usize {
            self.restarts.push_back(now);
            self.last_restart = Some(now);
            b.kind(Kind::RestartPrimary);
            b.step(Step::Start { node: p });
            b.why(format!(
                "{p}'s mariadbd {how}; its data is intact, so it is started again on its own data (attempt {} of {} within {}s) before anything more drastic.",
                self.restarts.len(),
                policy.restart_attempts,
                policy.restart_window.as_secs()
            ));
            return false;
        }
        let cause = if data_intact {
            format!(
                "{p}'s mariadbd {how} again after {} restart(s) in place within {}s",
                self.restarts.len(),
                policy.restart_window.as_secs()
            )
        } else {
            format!("{p}'s mariadbd {how} and its data directory is not intact")
        };
        self.fail_over(obs, policy, cause, b)
    }

    /// The primary runs (or is stopped) but does not answer. Returns whether a failover was
    /// planned.
    fn unresponsive(
        &mut self,
        obs: &Observation,
        policy: &Policy,
        stopped: bool,
        reason: &str,
        b: &mut Builder,
    ) -> bool {
        let (p, now) = (obs.ledger.primary, obs.now);
        let since = *self.down_since.get_or_insert(now);
        let silent = now.saturating_sub(since);
        let how = if stopped {
            format!(
                "is stopped (SIGSTOP) and has not answered for {}s",
                secs(silent)
            )
        } else {
            format!("has not answered for {}s ({reason})", secs(silent))
        };
        let recovering = self
            .last_restart
            .is_some_and(|t| now.saturating_sub(t) < policy.restart_grace);
        if recovering && !stopped {
            b.kind(Kind::Waiting);
            b.why(format!(
                "{p} was restarted in place and {how}; crash recovery gets up to {}s.",
                secs(policy.restart_grace)
            ));
            return false;
        }
        if silent < policy.confirm_after {
            b.kind(Kind::Waiting);
            b.why(format!(
                "{p} {how}; confirming for up to {}s before acting.",
                secs(policy.confirm_after)
            ));
            return false;
        }
        self.fail_over(obs, policy, format!("{p} {how}"), b)
    }

    /// The primary is gone by our own signals; fail over if the replica agrees and can take
    /// over without losing what it received. Returns whether a failover was planned.
    fn fail_over(
        &mut self,
        obs: &Observation,
        policy: &Policy,
        cause: String,
        b: &mut Builder,
    ) -> bool {
        let (p, r) = (obs.ledger.primary, obs.ledger.primary.other());
        let sr = match obs.node(r) {
            Node::Up(sr) => sr,
            Node::Down { .. } => {
                self.blocked(
                    obs,
                    policy,
                    format!("{cause}, and {r} is down too: there is no node to fail over to."),
                    b,
                );
                return false;
            }
            Node::Unresponsive { .. } => {
                self.blocked(obs, policy, format!("{cause}, and {r} does not answer either: it can neither confirm that {p} is gone nor take over."), b);
                return false;
            }
        };
        let Some(repl) = sr.replica.as_ref().filter(|x| x.source == Some(p)) else {
            self.blocked(obs, policy, format!("{cause}, but {r} is not replicating from {p}, so it may lack {p}'s data and cannot confirm that {p} is gone."), b);
            return false;
        };
        // The second, independent signal: the replica's own view of the primary.
        if sees_primary(repl, policy) {
            b.kind(Kind::Waiting);
            b.why(format!(
                "{cause}, but {r} still receives from {p} ({}): the fault is more likely between the watchdog and {p} than in {p}, so there is no failover.",
                view(repl)
            ));
            return false;
        }
        let received_all = repl.gtid_io_pos.is_prefix_of(&sr.gtid_current_pos);
        if let (Some(errno), false) = (repl.sql_error, received_all) {
            self.blocked(obs, policy, format!(
                "{cause}, and {r} lost it too, but {r}'s SQL thread stopped with error {errno} before applying everything it received (applied {}, received {}): promoting it would lose those transactions, so there is no automatic failover. A person must look; the transactions are still in {r}'s relay log and on {p}'s disk.",
                sr.gtid_current_pos, repl.gtid_io_pos
            ), b);
            return false;
        }
        let epoch = obs.ledger.epoch + 1;
        let promoted_at = sr.history_after_drain();
        let mut why = format!(
            "{cause}, and {r} lost it too ({}): two independent signals agree that {p} is gone, so {r} takes over. {p} is stopped, so that it can never take writes again;",
            view(repl)
        );
        if !received_all {
            why.push_str(&format!(
                " {r} applies the transactions still in its relay log (up to {});",
                repl.gtid_io_pos
            ));
        }
        why.push_str(&format!(
            " epoch {epoch} is recorded for {r}; {r} becomes the writable primary and the endpoint moves to it."
        ));
        why.push_str(&match &self.last_seen {
            Some((_, true)) => format!(" Semi-sync was on, so every acknowledged write reached {r}."),
            Some((pos, false)) => format!(" Semi-sync was off when {p} was last seen (at {pos}): writes past {promoted_at} may be lost; they will be saved for review if {p} comes back."),
            None => format!(" {p} was not seen serving since the watchdog started or since it was last promoted: whether anything is lost is known when {p} comes back."),
        });
        b.kind(Kind::Failover);
        b.step(Step::Stop { node: p });
        b.step(Step::DrainRelayLog {
            node: r,
            io_pos: repl.gtid_io_pos.clone(),
            timeout: policy.drain_timeout,
        });
        b.step(Step::AdvanceEpoch { epoch, primary: r });
        b.step(Step::Promote { node: r, epoch });
        // The old primary is stopped: a semi-sync primary would hold every write for the whole
        // semi-sync timeout waiting for a replica that is not there. Switched off before the
        // endpoint lets a client in; on again once the old primary follows (see `serving`).
        b.step(Step::SetSemiSyncMaster { node: r, on: false });
        b.step(Step::RepointEndpoint { to: r });
        b.step(Step::Incident(Incident {
            from: p,
            to: r,
            epoch,
            cause: cause.clone(),
            last_seen_primary: self.last_seen.as_ref().map(|(pos, _)| pos.clone()),
            promoted_at,
            semi_sync_was_on: self.last_seen.as_ref().map(|&(_, on)| on),
        }));
        b.alerts.push(format!(
            "failed over from {p} to {r} (epoch {epoch}): {cause}"
        ));
        b.why(why);
        true
    }

    /// A failover is needed but not safe: explain, alert, and keep starting a primary that
    /// exited with its data intact, the only way back without a person.
    fn blocked(&mut self, obs: &Observation, policy: &Policy, why: String, b: &mut Builder) {
        let (p, now) = (obs.ledger.primary, obs.now);
        b.kind(Kind::Blocked);
        b.raise(Condition::FailoverBlocked, why.clone());
        b.why(why);
        if matches!(
            obs.node(p),
            Node::Down {
                data_intact: true,
                ..
            }
        ) && self
            .last_restart
            .is_none_or(|t| now.saturating_sub(t) >= policy.retry_interval)
        {
            self.last_restart = Some(now);
            b.step(Step::Start { node: p });
            b.why(format!(
                "Meanwhile {p} is started again on its own data, at most every {}s.",
                secs(policy.retry_interval)
            ));
        }
    }

    /// Whether `fix` may be planned now; if so, it counts as planned.
    fn replica_fix(&mut self, fix: Fix, now: Duration, policy: &Policy) -> bool {
        let due = self
            .replica_fixes
            .get(&fix)
            .is_none_or(|&t| now.saturating_sub(t) >= policy.retry_interval);
        if due {
            self.replica_fixes.insert(fix, now);
        }
        due
    }

    /// Restart, rejoin, rebuild or alert about the replica while the primary carries on.
    fn care_for_replica(&mut self, obs: &Observation, policy: &Policy, b: &mut Builder) {
        let (p, r, now) = (obs.ledger.primary, obs.ledger.primary.other(), obs.now);
        let Node::Up(sr) = obs.node(r) else {
            return self.replica_down(obs, policy, b);
        };
        // Judge the replica only against a primary that serves: mid-outage its IO thread is
        // expected to have lost the primary.
        let Some(sp) = obs.node(p).status() else {
            return;
        };
        if sr.semi_sync.enabled {
            b.kind(Kind::Repair);
            b.step(Step::SetSemiSyncMaster { node: r, on: false });
            b.why(format!("semi-sync master was on on {r}, the replica, where it would stall every transaction; it is switched off."));
        }
        let history_ok = sr.gtid_current_pos.is_prefix_of(&sp.gtid_current_pos);
        match sr.replica.as_ref().filter(|x| x.source == Some(p)) {
            None if history_ok => {
                if self.replica_fix(Fix::Attach, now, policy) {
                    b.kind(Kind::Rejoin);
                    b.step(Step::AttachReplica {
                        node: r,
                        primary: p,
                    });
                    b.why(format!("{r} does not replicate from {p}; its history ({}) is a prefix of {p}'s ({}), so it rejoins as a replica and catches up.", sr.gtid_current_pos, sp.gtid_current_pos));
                }
            }
            None => self.preserve_and_rebuild(obs, policy, "does not replicate from", false, b),
            Some(repl) if repl.io_error == Some(ER_MASTER_FATAL_ERROR_READING_BINLOG) => {
                self.preserve_and_rebuild(
                    obs,
                    policy,
                    "cannot follow (error 1236: the primary cannot serve the position it asks for)",
                    true,
                    b,
                );
            }
            Some(repl) => self.attached(obs, policy, sr, repl, b),
        }
    }

    /// The replica does not answer: start, restart or rebuild it, patiently.
    fn replica_down(&mut self, obs: &Observation, policy: &Policy, b: &mut Builder) {
        let (p, r, now) = (obs.ledger.primary, obs.ledger.primary.other(), obs.now);
        let since = *self.replica_trouble_since.get_or_insert(now);
        let (how, fix) = match obs.node(r) {
            Node::Down {
                exited,
                data_intact,
            } => (
                exited
                    .as_ref()
                    .map_or("is not running".into(), |s| format!("exited ({s})")),
                if *data_intact {
                    Fix::Start
                } else {
                    Fix::Rebuild
                },
            ),
            _ => (
                format!("has not answered for {}s", secs(now.saturating_sub(since))),
                Fix::Restart,
            ),
        };
        b.raise(
            Condition::ReplicaDown,
            format!("{r}, the replica, {how}: new writes have no second copy until it is back"),
        );
        let wait = match fix {
            Fix::Restart if now.saturating_sub(since) < policy.replica_grace => Some(format!(
                "it is given {}s to answer before it is restarted",
                secs(policy.replica_grace)
            )),
            Fix::Rebuild if !obs.node(p).is_writable() => Some(format!(
                "its data directory is not intact; it is rebuilt once {p} serves"
            )),
            _ if !self.replica_fix(fix, now, policy) => Some(format!(
                "it was last repaired less than {}s ago",
                secs(policy.retry_interval)
            )),
            _ => None,
        };
        if let Some(wait) = wait {
            b.kind(Kind::Waiting);
            b.why(format!("{r}, the replica, {how}; {wait}."));
            return;
        }
        b.kind(Kind::Repair);
        // A new process: starting its replication or attaching it is a first attempt again,
        // not a retry to rate-limit (the replica would otherwise sit idle, and semi-sync off,
        // until the last attempt's interval ran out).
        self.replica_fixes.remove(&Fix::StartReplication);
        self.replica_fixes.remove(&Fix::Attach);
        match fix {
            Fix::Restart => {
                b.step(Step::Stop { node: r });
                b.step(Step::Start { node: r });
                b.why(format!(
                    "{r}, the replica, {how}: it is restarted while {p} carries on."
                ));
            }
            Fix::Start => {
                b.step(Step::Start { node: r });
                b.why(format!("{r}, the replica, {how}; its data is intact, so it is started again while {p} carries on."));
            }
            _ => {
                b.kind(Kind::Rebuild);
                b.step(Step::Rebuild { node: r, from: p });
                b.why(format!("{r}, the replica, {how} and its data directory is not intact: it is rebuilt from {p}."));
            }
        }
        // The new process gets its own time to answer.
        self.replica_trouble_since = Some(now);
    }

    fn attached(
        &mut self,
        obs: &Observation,
        policy: &Policy,
        sr: &Status,
        repl: &Replica,
        b: &mut Builder,
    ) {
        let (p, r, now) = (obs.ledger.primary, obs.ledger.primary.other(), obs.now);
        if let Some(errno) = repl.sql_error {
            let since = *self.replica_trouble_since.get_or_insert(now);
            b.raise(Condition::ReplicaBroken, format!(
                "{r}'s SQL thread stopped with error {errno}: it no longer applies {p}'s writes and is no safe failover target; it is rebuilt from {p} if this lasts {}s",
                secs(policy.replica_grace)
            ));
            if now.saturating_sub(since) >= policy.replica_grace {
                self.preserve_and_rebuild(
                    obs,
                    policy,
                    &format!("has a broken SQL thread (error {errno}) replicating from"),
                    false,
                    b,
                );
            } else {
                b.kind(Kind::Waiting);
                b.why(format!("{r}'s SQL thread stopped with error {errno}; it is rebuilt from {p} if this lasts {}s.", secs(policy.replica_grace)));
            }
        } else if repl.io == IoThread::Stopped || !repl.sql_running {
            if self.replica_fix(Fix::StartReplication, now, policy) {
                b.kind(Kind::Repair);
                b.step(Step::StartReplication { node: r });
                b.why(format!(
                    "replication on {r} was stopped without an error; it is started again."
                ));
            }
        } else if repl.io == IoThread::Connecting {
            let since = *self.replica_trouble_since.get_or_insert(now);
            let errno = repl
                .io_error
                .map_or(String::new(), |e| format!(" (error {e})"));
            if now.saturating_sub(since) >= policy.replica_grace {
                b.raise(
                    Condition::ReplicaBroken,
                    format!("{r} cannot connect to {p}{errno}: it falls behind"),
                );
            }
            b.kind(Kind::Waiting);
            b.why(format!(
                "{r} is reconnecting to {p}{errno} for {}s.",
                secs(now.saturating_sub(since))
            ));
        } else {
            self.replica_trouble_since = None;
            let lag = sr
                .heartbeat_lag
                .map_or("an unknown time".into(), |l| format!("{}s", secs(l)));
            b.why(format!(
                "{p} is the primary (epoch {}) and {r} follows it, {lag} behind.",
                obs.ledger.epoch
            ));
        }
    }

    /// `r` cannot follow `p` as it is: save whatever only it has, then rebuild it from `p`.
    /// The save is planned even when the positions show nothing extra: they cannot see a
    /// divergence below the last GTID (see [`crate::gtid`]), and the executor checks GTID by
    /// GTID.
    fn preserve_and_rebuild(
        &mut self,
        obs: &Observation,
        policy: &Policy,
        what: &str,
        refused_by_primary: bool,
        b: &mut Builder,
    ) {
        let (p, r) = (obs.ledger.primary, obs.ledger.primary.other());
        let (Some(sp), Some(sr)) = (obs.node(p).status(), obs.node(r).status()) else {
            unreachable!("a rebuild is planned only while both nodes answer");
        };
        if !self.replica_fix(Fix::Rebuild, obs.now, policy) {
            b.kind(Kind::Waiting);
            b.why(format!(
                "{r} {what} {p}; it was rebuilt less than {}s ago.",
                secs(policy.retry_interval)
            ));
            return;
        }
        b.kind(Kind::Rebuild);
        let extra: Vec<String> = sr
            .gtid_current_pos
            .extra_over(&sp.gtid_current_pos)
            .iter()
            .map(|(ours, theirs)| match theirs {
                Some(t) => format!("domain {}: up to {ours} where {p} has {t}", ours.domain),
                None => format!("domain {}: up to {ours}, which {p} never had", ours.domain),
            })
            .collect();
        if extra.is_empty() {
            if refused_by_primary {
                b.alerts.push(format!("{r} cannot follow {p} (error 1236): it may hold transactions {p} lacks; anything only it had is saved as SQL for review, and it is rebuilt from {p}"));
            }
            b.why(format!("{r} {what} {p}; any transaction it has that {p} lacks is saved as SQL for a person to review, then {r} is rebuilt from {p}."));
        } else {
            let extra = extra.join("; ");
            b.why(format!("{r} {what} {p} and has transactions {p} lacks ({extra}): they are saved as SQL for a person to review, then {r} is rebuilt from {p}."));
            b.alerts.push(format!("{r} had transactions {p} lacks ({extra}); they were saved as SQL for review before {r} was rebuilt from {p}"));
        }
        b.step(Step::PreserveExtra {
            node: r,
            primary_pos: sp.gtid_current_pos.clone(),
        });
        b.step(Step::Rebuild { node: r, from: p });
    }

    fn finish(&mut self, b: Builder, obs: &Observation) -> Plan {
        let Builder {
            kind,
            mut reasons,
            mut steps,
            raised,
            alerts,
        } = b;
        for (condition, message) in &raised {
            if !self.alerted.contains_key(condition) {
                steps.push(Step::Alert {
                    message: message.clone(),
                });
            }
        }
        for condition in self.alerted.keys() {
            if !raised.contains_key(condition) {
                steps.push(Step::Record {
                    message: condition.ended().into(),
                });
            }
        }
        steps.extend(alerts.into_iter().map(|message| Step::Alert { message }));
        self.alerted = raised;
        if reasons.is_empty() {
            reasons.push(format!(
                "{} is the primary (epoch {}).",
                obs.ledger.primary, obs.ledger.epoch
            ));
        }
        Plan {
            kind: kind.unwrap_or(Kind::Steady),
            reason: reasons.join(" "),
            steps,
        }
    }
}

/// A planned switchover (`oscarbox db switchover`): block writes, let the replica catch up,
/// promote it under a new epoch, repoint, and make the old primary its replica. Refused
/// unless both nodes are healthy and the replica is close behind, so the write block stays
/// short and nothing can be lost.
pub fn plan_switchover(obs: &Observation, policy: &Policy) -> Result<Plan, Refused> {
    let (p, r) = (obs.ledger.primary, obs.ledger.primary.other());
    let refuse = |why: String| Err(Refused(why));
    if !obs.node(p).is_writable() {
        return refuse(format!("{p}, the primary, is not up and writable"));
    }
    if obs.node(p).status().is_some_and(|s| s.replica.is_some()) {
        // Its relay log could hold transactions its binlog lacks, which the catch-up (to the
        // binlog position) would not wait for.
        return refuse(format!(
            "{p}, the primary, has replication configured; it should not"
        ));
    }
    let Some(sr) = obs.node(r).status() else {
        return refuse(format!("{r} does not answer"));
    };
    let Some(repl) = sr.replica.as_ref().filter(|x| x.source == Some(p)) else {
        return refuse(format!("{r} does not replicate from {p}"));
    };
    if repl.io != IoThread::Running || !repl.sql_running || repl.sql_error.is_some() {
        return refuse(format!("replication on {r} is not running cleanly"));
    }
    match sr.heartbeat_lag {
        Some(lag) if lag <= policy.switchover_max_lag => {}
        Some(lag) => return refuse(format!(
            "{r} is {}s behind, more than the {}s a switchover allows; try again when it has caught up",
            secs(lag),
            secs(policy.switchover_max_lag)
        )),
        None => return refuse(format!("{r}'s lag is unknown: it has applied no heartbeat yet")),
    }
    let epoch = obs.ledger.epoch + 1;
    Ok(Plan {
        kind: Kind::Switchover,
        reason: format!(
            "switchover asked for: {p} stops taking writes; {r} applies everything {p} wrote (writes are blocked at most {}s; if {r} is not caught up by then the switchover stops and the next tick makes {p} writable again); epoch {epoch} is recorded for {r}; {r} becomes the writable primary and the endpoint moves to it; {p} follows {r} as its replica. Nothing is lost: {r} has every transaction {p} wrote before it is promoted.",
            secs(policy.catch_up_timeout)
        ),
        steps: vec![
            Step::SetReadOnly { node: p },
            Step::WaitForCatchUp {
                replica: r,
                primary: p,
                timeout: policy.catch_up_timeout,
            },
            Step::AdvanceEpoch { epoch, primary: r },
            Step::Promote { node: r, epoch },
            Step::RepointEndpoint { to: r },
            Step::AttachReplica { node: p, primary: r },
        ],
    })
}

/// Whether the replica still hears from its primary. A connected IO thread that cannot say
/// when it last received anything counts as hearing: a hung primary keeps its connections
/// open, and only the heartbeat's age tells a replica it is gone.
fn sees_primary(repl: &Replica, policy: &Policy) -> bool {
    repl.io == IoThread::Running
        && repl
            .last_received
            .is_none_or(|age| age < policy.replica_silence)
}

fn view(repl: &Replica) -> String {
    match (repl.io, repl.last_received) {
        (IoThread::Running, Some(age)) => format!("last received {}s ago", secs(age)),
        (IoThread::Running, None) => "connected".into(),
        (IoThread::Connecting, _) => "its IO thread is reconnecting".into(),
        (IoThread::Stopped, _) => "its IO thread is stopped".into(),
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.1}")
    } else {
        format!("{}", d.as_secs())
    }
}

#[cfg(test)]
mod tests;
