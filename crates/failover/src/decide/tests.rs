//! The decision core under a fake clock: one named case per situation (in the style of
//! orchestrator's analysis cases), and properties over random observation sequences checked
//! against a small model of the pair.

use proptest::prelude::*;

use super::*;
use crate::gtid::History;
use crate::observe::{Ledger, SemiSync};

use NodeId::{A, B};

fn s(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

fn pos(text: &str) -> GtidList {
    text.parse().expect("a valid position in the test")
}

/// A writable primary at `at`, semi-sync on and acknowledged.
fn primary(at: &str) -> Node {
    Node::Up(Status {
        read_only: false,
        gtid_binlog_pos: pos(at),
        gtid_current_pos: pos(at),
        replica: None,
        semi_sync: SemiSync {
            enabled: true,
            active: true,
            clients: 1,
        },
        heartbeat_lag: None,
    })
}

/// A read-only node that replicates from `source`, has applied `applied` and received
/// `received`, and heard from its primary 0.5 s ago.
fn replica(source: NodeId, applied: &str, received: &str) -> Node {
    Node::Up(Status {
        read_only: true,
        gtid_binlog_pos: pos(applied),
        gtid_current_pos: pos(applied),
        replica: Some(Replica {
            source: Some(source),
            io: IoThread::Running,
            sql_running: true,
            io_error: None,
            sql_error: None,
            gtid_io_pos: pos(received),
            gtid_slave_pos: pos(applied),
            last_received: Some(s(0.5)),
        }),
        semi_sync: SemiSync::default(),
        heartbeat_lag: Some(s(0.3)),
    })
}

/// A read-only node with no replication configured (an old primary coming back).
fn stray(at: &str) -> Node {
    Node::Up(Status {
        read_only: true,
        gtid_binlog_pos: pos(at),
        gtid_current_pos: pos(at),
        replica: None,
        semi_sync: SemiSync::default(),
        heartbeat_lag: None,
    })
}

fn with_status(mut node: Node, f: impl FnOnce(&mut Status)) -> Node {
    if let Node::Up(st) = &mut node {
        f(st);
    }
    node
}

fn with_replica(node: Node, f: impl FnOnce(&mut Replica)) -> Node {
    with_status(node, |st| {
        if let Some(r) = &mut st.replica {
            f(r);
        }
    })
}

/// The replica lost its primary: its IO thread is reconnecting.
fn lost(node: Node) -> Node {
    with_replica(node, |r| {
        r.io = IoThread::Connecting;
        r.io_error = Some(2003);
        r.last_received = Some(s(5.0));
    })
}

fn crashed(intact: bool) -> Node {
    Node::Down {
        exited: Some("killed by signal 9".into()),
        data_intact: intact,
    }
}

fn obs(now: f64, epoch: u64, primary: NodeId, a: Node, b: Node) -> Observation {
    Observation {
        now: s(now),
        ledger: Ledger { epoch, primary },
        endpoint: Some(primary),
        a,
        b,
    }
}

/// The steps that act on the pair (alerts and records left out).
fn actions(plan: &Plan) -> Vec<Step> {
    plan.steps
        .iter()
        .filter(|s| !matches!(s, Step::Alert { .. } | Step::Record { .. }))
        .cloned()
        .collect()
}

fn alerts(plan: &Plan) -> Vec<&str> {
    plan.steps
        .iter()
        .filter_map(|s| match s {
            Step::Alert { message } => Some(message.as_str()),
            _ => None,
        })
        .collect()
}

fn has(plan: &Plan, text: &str) -> bool {
    plan.reason.contains(text)
}

/// A pair that has seen A serving at `0-1-42` with semi-sync on.
fn settled() -> (Pair, Policy) {
    let policy = Policy::default();
    let mut pair = Pair::new();
    let plan = pair.tick(
        &obs(0.0, 3, A, primary("0-1-42"), replica(A, "0-1-42", "0-1-42")),
        &policy,
    );
    assert_eq!(plan.kind, Kind::Steady, "{plan}");
    assert!(plan.steps.is_empty(), "{plan}");
    assert!(
        has(
            &plan,
            "node A is the primary (epoch 3) and node B follows it, 0.3s behind"
        ),
        "{plan}"
    );
    (pair, policy)
}

fn failover_to_b(epoch: u64, received: &str) -> Vec<Step> {
    vec![
        Step::Stop { node: A },
        Step::DrainRelayLog {
            node: B,
            io_pos: pos(received),
            timeout: Policy::default().drain_timeout,
        },
        Step::AdvanceEpoch { epoch, primary: B },
        Step::Promote { node: B, epoch },
        Step::SetSemiSyncMaster { node: B, on: false },
        Step::RepointEndpoint { to: B },
    ]
}

#[test]
fn primary_crashed_with_data_intact_is_restarted_in_place_then_promoted_under_a_new_epoch() {
    let (mut pair, p) = settled();
    let b = lost(replica(A, "0-1-42", "0-1-42"));
    let plan = pair.tick(&obs(10.0, 3, A, crashed(true), b.clone()), &p);
    assert_eq!(plan.kind, Kind::RestartPrimary);
    assert_eq!(actions(&plan), vec![Step::Start { node: A }]);
    assert!(has(&plan, "node A's mariadbd exited (killed by signal 9); its data is intact, so it is started again on its own data (attempt 1 of 2 within 600s)"), "{plan}");
    // Crash recovery: not answering yet, within its grace.
    let recovering = Node::Unresponsive {
        stopped: false,
        reason: "connection refused".into(),
    };
    let plan = pair.tick(&obs(13.5, 3, A, recovering, b.clone()), &p);
    assert_eq!(plan.kind, Kind::Waiting);
    assert!(
        actions(&plan).is_empty() && has(&plan, "crash recovery gets up to 4.0s"),
        "{plan}"
    );
    // Back, read-only as configured: writable again only under a new epoch.
    let back = with_status(primary("0-1-42"), |st| st.read_only = true);
    let plan = pair.tick(&obs(14.0, 3, A, back, replica(A, "0-1-42", "0-1-42")), &p);
    assert_eq!(plan.kind, Kind::Promote);
    assert_eq!(
        actions(&plan),
        vec![
            Step::AdvanceEpoch {
                epoch: 4,
                primary: A
            },
            Step::Promote { node: A, epoch: 4 }
        ]
    );
}

#[test]
fn a_primary_hung_before_it_was_seen_serving_again_claims_nothing_about_semi_sync() {
    let (mut pair, p) = settled();
    let b = lost(replica(A, "0-1-42", "0-1-42"));
    pair.tick(&obs(10.0, 3, A, crashed(true), b), &p);
    let back = with_status(primary("0-1-50"), |st| st.read_only = true);
    let plan = pair.tick(&obs(11.0, 3, A, back, replica(A, "0-1-50", "0-1-50")), &p);
    assert_eq!(plan.kind, Kind::Promote, "{plan}");
    // Hung at once, before any tick saw it serving at epoch 4 (and its semi-sync with it).
    let hung = Node::Unresponsive {
        stopped: true,
        reason: "timed out".into(),
    };
    let b = lost(replica(A, "0-1-61", "0-1-61"));
    pair.tick(&obs(11.5, 4, A, hung.clone(), b.clone()), &p);
    let plan = pair.tick(&obs(15.0, 4, A, hung, b), &p);
    assert_eq!(plan.kind, Kind::Failover, "{plan}");
    let incident = plan.steps.iter().find_map(|s| match s {
        Step::Incident(i) => Some(i.clone()),
        _ => None,
    });
    let incident = incident.expect("an incident report");
    assert_eq!(
        incident.semi_sync_was_on, None,
        "not the earlier life's sample"
    );
    assert_eq!(incident.last_seen_primary, None);
    assert!(
        has(
            &plan,
            "whether anything is lost is known when node A comes back"
        ),
        "{plan}"
    );
}

#[test]
fn restart_budget_exhausted_fails_over() {
    let (mut pair, p) = settled();
    let b = lost(replica(A, "0-1-42", "0-1-42"));
    for t in [10.0, 11.0] {
        let plan = pair.tick(&obs(t, 3, A, crashed(true), b.clone()), &p);
        assert_eq!(actions(&plan), vec![Step::Start { node: A }], "{plan}");
    }
    let plan = pair.tick(&obs(12.0, 3, A, crashed(true), b), &p);
    assert_eq!(plan.kind, Kind::Failover, "{plan}");
    let mut expected = failover_to_b(4, "0-1-42");
    expected.push(Step::Incident(Incident {
        from: A,
        to: B,
        epoch: 4,
        cause: "node A's mariadbd exited (killed by signal 9) again after 2 restart(s) in place within 600s".into(),
        last_seen_primary: Some(pos("0-1-42")),
        promoted_at: pos("0-1-42"),
        semi_sync_was_on: Some(true),
    }));
    assert_eq!(actions(&plan), expected);
    assert!(
        has(&plan, "two independent signals agree that node A is gone"),
        "{plan}"
    );
    assert!(
        has(
            &plan,
            "Semi-sync was on, so every acknowledged write reached node B."
        ),
        "{plan}"
    );
    assert_eq!(alerts(&plan).len(), 1);
}

#[test]
fn primary_with_damaged_data_fails_over_without_a_restart() {
    let (mut pair, p) = settled();
    let plan = pair.tick(
        &obs(
            10.0,
            3,
            A,
            crashed(false),
            lost(replica(A, "0-1-42", "0-1-42")),
        ),
        &p,
    );
    assert_eq!(plan.kind, Kind::Failover);
    assert_eq!(actions(&plan)[..6], failover_to_b(4, "0-1-42")[..]);
}

#[test]
fn hung_primary_confirmed_by_the_replica_fails_over_after_the_window() {
    let (mut pair, p) = settled();
    let hung = Node::Unresponsive {
        stopped: true,
        reason: "no answer within 1s".into(),
    };
    let b = lost(replica(A, "0-1-42", "0-1-42"));
    for t in [10.0, 11.0, 12.9] {
        let plan = pair.tick(&obs(t, 3, A, hung.clone(), b.clone()), &p);
        assert_eq!(plan.kind, Kind::Waiting, "at {t}: {plan}");
        assert!(
            actions(&plan).is_empty() && has(&plan, "confirming for up to 3.0s"),
            "{plan}"
        );
    }
    let plan = pair.tick(&obs(13.0, 3, A, hung, b), &p);
    assert_eq!(plan.kind, Kind::Failover, "{plan}");
    // The hung process is stopped first: woken up, it must find nothing to write to.
    assert_eq!(actions(&plan)[..6], failover_to_b(4, "0-1-42")[..]);
    assert!(has(&plan, "node A is stopped (SIGSTOP) and has not answered for 3.0s, and node B lost it too (its IO thread is reconnecting)"), "{plan}");
}

#[test]
fn our_probe_fails_but_the_replica_still_sees_the_primary_means_no_failover() {
    let (mut pair, p) = settled();
    let blip = Node::Unresponsive {
        stopped: false,
        reason: "no answer within 1s".into(),
    };
    for t in [10.0, 15.0, 60.0] {
        let plan = pair.tick(
            &obs(t, 3, A, blip.clone(), replica(A, "0-1-42", "0-1-42")),
            &p,
        );
        assert!(actions(&plan).is_empty(), "{plan}");
    }
    let plan = pair.tick(&obs(61.0, 3, A, blip, replica(A, "0-1-42", "0-1-42")), &p);
    assert_eq!(plan.kind, Kind::Waiting);
    assert!(has(&plan, "but node B still receives from node A (last received 0.5s ago): the fault is more likely between the watchdog and node A"), "{plan}");
}

#[test]
fn replica_behind_with_a_relay_log_is_drained_then_promoted() {
    let (mut pair, p) = settled();
    let plan = pair.tick(
        &obs(
            10.0,
            3,
            A,
            crashed(false),
            lost(replica(A, "0-1-40", "0-1-42")),
        ),
        &p,
    );
    assert_eq!(plan.kind, Kind::Failover);
    let steps = actions(&plan);
    assert_eq!(steps[..6], failover_to_b(4, "0-1-42")[..]);
    let Step::Incident(incident) = &steps[6] else {
        panic!("an incident report: {plan}");
    };
    assert_eq!(incident.promoted_at, pos("0-1-42"));
    assert!(
        has(
            &plan,
            "node B applies the transactions still in its relay log (up to 0-1-42)"
        ),
        "{plan}"
    );
}

#[test]
fn replica_sql_thread_errored_blocks_failover_and_alerts_once() {
    let (mut pair, p) = settled();
    let broken = lost(with_replica(replica(A, "0-1-40", "0-1-42"), |r| {
        r.sql_running = false;
        r.sql_error = Some(1062);
    }));
    let plan = pair.tick(&obs(10.0, 3, A, crashed(false), broken.clone()), &p);
    assert_eq!(plan.kind, Kind::Blocked);
    assert!(actions(&plan).is_empty(), "{plan}");
    assert!(has(&plan, "node B's SQL thread stopped with error 1062 before applying everything it received (applied 0-1-40, received 0-1-42)"), "{plan}");
    assert_eq!(alerts(&plan).len(), 1);
    let plan = pair.tick(&obs(11.0, 3, A, crashed(false), broken), &p);
    assert_eq!(plan.kind, Kind::Blocked);
    assert!(alerts(&plan).is_empty(), "alerted once: {plan}");
}

#[test]
fn both_writable_fences_the_one_without_the_newest_epoch() {
    let mut pair = Pair::new();
    let mut o = obs(0.0, 5, B, primary("0-1-42"), primary("0-2-43"));
    o.endpoint = Some(A);
    let plan = pair.tick(&o, &Policy::default());
    let steps = actions(&plan);
    assert_eq!(steps[0], Step::SetReadOnly { node: A });
    assert_eq!(steps[1], Step::RepointEndpoint { to: B });
    assert!(has(&plan, "node A accepted writes although node B holds the newest epoch (5); node A is set read-only at once"), "{plan}");
    assert_eq!(alerts(&plan).len(), 1, "{plan}");
}

#[test]
fn old_primary_returning_with_a_prefix_history_rejoins() {
    let mut pair = Pair::new();
    let plan = pair.tick(
        &obs(0.0, 4, B, stray("0-1-42"), primary("0-2-50")),
        &Policy::default(),
    );
    assert_eq!(plan.kind, Kind::Rejoin);
    assert_eq!(
        actions(&plan),
        vec![Step::AttachReplica {
            node: A,
            primary: B
        }]
    );
    assert!(
        has(
            &plan,
            "its history (0-1-42) is a prefix of node B's (0-2-50)"
        ),
        "{plan}"
    );
}

#[test]
fn diverged_old_primary_is_preserved_and_rebuilt() {
    let mut pair = Pair::new();
    let plan = pair.tick(
        &obs(0.0, 4, B, stray("0-1-45"), primary("0-2-44")),
        &Policy::default(),
    );
    assert_eq!(plan.kind, Kind::Rebuild);
    assert_eq!(
        actions(&plan),
        vec![
            Step::PreserveExtra {
                node: A,
                primary_pos: pos("0-2-44")
            },
            Step::Rebuild { node: A, from: B }
        ]
    );
    assert!(
        has(&plan, "domain 0: up to 0-1-45 where node B has 0-2-44"),
        "{plan}"
    );
    assert_eq!(alerts(&plan).len(), 1);
}

#[test]
fn a_divergence_hidden_below_the_last_gtid_is_caught_by_error_1236() {
    let mut pair = Pair::new();
    // 0-1-44 looks like a prefix of 0-2-50, but 43 and 44 were A's own: MariaDB refuses it.
    let a = with_replica(replica(B, "0-1-44", "0-1-44"), |r| {
        r.io = IoThread::Stopped;
        r.io_error = Some(ER_MASTER_FATAL_ERROR_READING_BINLOG);
    });
    let plan = pair.tick(&obs(0.0, 4, B, a, primary("0-2-50")), &Policy::default());
    assert_eq!(plan.kind, Kind::Rebuild);
    assert!(
        matches!(
            actions(&plan)[..],
            [
                Step::PreserveExtra { node: A, .. },
                Step::Rebuild { node: A, from: B }
            ]
        ),
        "{plan}"
    );
    assert_eq!(alerts(&plan).len(), 1);
}

#[test]
fn replica_dead_is_restarted_while_the_primary_carries_on_and_semi_sync_fallback_is_recorded() {
    let (mut pair, p) = settled();
    let fallen_back = with_status(primary("0-1-50"), |st| st.semi_sync.active = false);
    let plan = pair.tick(&obs(10.0, 3, A, fallen_back.clone(), crashed(true)), &p);
    assert_eq!(plan.kind, Kind::Repair);
    assert_eq!(actions(&plan), vec![Step::Start { node: B }]);
    let said = alerts(&plan);
    assert_eq!(said.len(), 2, "{plan}");
    assert!(said
        .iter()
        .any(|a| a.starts_with("semi-sync on node A fell back to asynchronous replication")));
    assert!(said
        .iter()
        .any(|a| a.contains("new writes have no second copy")));
    let starting = Node::Unresponsive {
        stopped: false,
        reason: "connection refused".into(),
    };
    let plan = pair.tick(&obs(11.0, 3, A, fallen_back, starting), &p);
    assert_eq!(plan.kind, Kind::Waiting);
    assert!(plan.steps.is_empty(), "no repeated alerts: {plan}");
    let plan = pair.tick(
        &obs(
            15.0,
            3,
            A,
            primary("0-1-50"),
            replica(A, "0-1-50", "0-1-50"),
        ),
        &p,
    );
    assert_eq!(plan.kind, Kind::Steady);
    assert_eq!(
        plan.steps,
        vec![
            Step::Record {
                message: "semi-sync is on again: acknowledged writes reach both nodes".into()
            },
            Step::Record {
                message: "the replica runs again".into()
            }
        ]
    );
}

#[test]
fn a_restarted_replica_gets_its_replication_started_at_once() {
    let (mut pair, _) = settled();
    let p = Policy {
        replica_grace: s(5.0),
        ..Policy::default()
    };
    let stopped = with_replica(replica(A, "0-1-42", "0-1-42"), |r| {
        r.io = IoThread::Stopped;
        r.sql_running = false;
    });
    let plan = pair.tick(&obs(10.0, 3, A, primary("0-1-42"), stopped.clone()), &p);
    assert_eq!(
        actions(&plan),
        vec![Step::StartReplication { node: B }],
        "{plan}"
    );
    // It hangs, and is restarted after its grace.
    let hung = Node::Unresponsive {
        stopped: true,
        reason: "timed out".into(),
    };
    pair.tick(&obs(11.0, 3, A, primary("0-1-42"), hung.clone()), &p);
    let plan = pair.tick(&obs(17.0, 3, A, primary("0-1-42"), hung), &p);
    assert_eq!(
        actions(&plan),
        vec![Step::Stop { node: B }, Step::Start { node: B }],
        "{plan}"
    );
    // Back, with replication not started (skip-slave-start): a new process, so it is started
    // at once, not 30 s after the attempt on the old one.
    let plan = pair.tick(&obs(19.0, 3, A, primary("0-1-42"), stopped), &p);
    assert_eq!(
        actions(&plan),
        vec![Step::StartReplication { node: B }],
        "{plan}"
    );
}

#[test]
fn semi_sync_stays_off_after_a_failover_until_the_old_primary_follows() {
    let mut pair = Pair::new();
    // B was promoted with semi-sync off; A is fenced and down.
    let b = with_status(primary("0-1-5"), |st| {
        st.semi_sync.enabled = false;
        st.semi_sync.active = false;
    });
    let down = Node::Down {
        exited: Some("stopped by the watchdog".into()),
        data_intact: true,
    };
    let plan = pair.tick(&obs(0.0, 2, B, down, b.clone()), &Policy::default());
    assert!(
        !actions(&plan).contains(&Step::SetSemiSyncMaster { node: B, on: true }),
        "nothing to wait for: {plan}"
    );
    // A follows again: semi-sync on.
    let plan = pair.tick(
        &obs(1.0, 2, B, replica(B, "0-1-5", "0-1-5"), b),
        &Policy::default(),
    );
    assert_eq!(
        actions(&plan),
        vec![Step::SetSemiSyncMaster { node: B, on: true }],
        "{plan}"
    );
}

#[test]
fn semi_sync_master_is_only_on_the_primary() {
    let mut pair = Pair::new();
    let a = with_status(primary("0-1-5"), |st| st.semi_sync.enabled = false);
    let b = with_status(replica(A, "0-1-5", "0-1-5"), |st| {
        st.semi_sync.enabled = true
    });
    let plan = pair.tick(&obs(0.0, 1, A, a, b), &Policy::default());
    assert_eq!(
        actions(&plan),
        vec![
            Step::SetSemiSyncMaster { node: A, on: true },
            Step::SetSemiSyncMaster { node: B, on: false }
        ]
    );
}

#[test]
fn a_fresh_pair_starts_both_then_promotes_the_ledger_holder_and_attaches_the_other() {
    let mut pair = Pair::new();
    let p = Policy::default();
    let never = Node::Down {
        exited: None,
        data_intact: true,
    };
    let mut o = obs(0.0, 0, A, never.clone(), never);
    o.endpoint = None;
    let plan = pair.tick(&o, &p);
    assert_eq!(
        actions(&plan),
        vec![Step::Start { node: A }, Step::Start { node: B }]
    );
    let mut o = obs(2.0, 0, A, stray(""), stray(""));
    o.endpoint = None;
    let plan = pair.tick(&o, &p);
    assert_eq!(plan.kind, Kind::Promote);
    assert_eq!(
        actions(&plan),
        vec![
            Step::AdvanceEpoch {
                epoch: 1,
                primary: A
            },
            Step::Promote { node: A, epoch: 1 },
            Step::RepointEndpoint { to: A },
            Step::AttachReplica {
                node: B,
                primary: A
            },
        ]
    );
}

#[test]
fn the_node_with_more_data_is_promoted_when_the_holder_is_behind() {
    let mut pair = Pair::new();
    // A holds the epoch but came back read-only without its last two transactions (say, a disk
    // that lied about fsync); B has them all.
    let plan = pair.tick(
        &obs(0.0, 3, A, stray("0-1-40"), replica(A, "0-1-42", "0-1-42")),
        &Policy::default(),
    );
    assert_eq!(plan.kind, Kind::Promote);
    assert_eq!(
        actions(&plan),
        vec![
            Step::DrainRelayLog {
                node: B,
                io_pos: pos("0-1-42"),
                timeout: Policy::default().drain_timeout
            },
            Step::AdvanceEpoch {
                epoch: 4,
                primary: B
            },
            Step::Promote { node: B, epoch: 4 },
            Step::RepointEndpoint { to: B },
        ]
    );
    assert!(
        has(&plan, "node B has everything node A has and more"),
        "{plan}"
    );
}

#[test]
fn a_failover_cut_short_after_the_epoch_is_finished_by_the_next_tick() {
    let mut pair = Pair::new();
    // The ledger already names B (epoch 4), but B was never made writable nor the endpoint
    // moved; A, stopped by the failover, is now B's replica-to-be.
    let mut o = obs(
        0.0,
        4,
        B,
        crashed(true),
        lost(replica(A, "0-1-42", "0-1-42")),
    );
    o.endpoint = Some(A);
    let plan = pair.tick(&o, &Policy::default());
    assert_eq!(plan.kind, Kind::Promote);
    let steps = actions(&plan);
    assert!(
        matches!(steps[0], Step::DrainRelayLog { node: B, .. }),
        "{plan}"
    );
    assert_eq!(
        steps[1..],
        [
            Step::AdvanceEpoch {
                epoch: 5,
                primary: B
            },
            Step::Promote { node: B, epoch: 5 },
            Step::RepointEndpoint { to: B },
            Step::Start { node: A },
        ]
    );
}

#[test]
fn switchover_blocks_writes_waits_promotes_repoints_then_reattaches() {
    let p = Policy::default();
    let o = obs(0.0, 3, A, primary("0-1-42"), replica(A, "0-1-41", "0-1-42"));
    let plan = plan_switchover(&o, &p).expect("a healthy pair switches over");
    assert_eq!(plan.kind, Kind::Switchover);
    assert_eq!(
        plan.steps,
        vec![
            Step::SetReadOnly { node: A },
            Step::WaitForCatchUp {
                replica: B,
                primary: A,
                timeout: p.catch_up_timeout
            },
            Step::AdvanceEpoch {
                epoch: 4,
                primary: B
            },
            Step::Promote { node: B, epoch: 4 },
            Step::RepointEndpoint { to: B },
            Step::AttachReplica {
                node: A,
                primary: B
            },
        ]
    );
    assert!(has(&plan, "writes are blocked at most 2.0s"), "{plan}");
}

#[test]
fn switchover_is_refused_unless_both_nodes_are_healthy_and_close() {
    let p = Policy::default();
    let refused = |b: Node| {
        plan_switchover(&obs(0.0, 3, A, primary("0-1-42"), b), &p)
            .expect_err("refused")
            .to_string()
    };
    assert_eq!(
        refused(with_status(replica(A, "0-1-30", "0-1-42"), |st| st.heartbeat_lag = Some(s(12.0)))),
        "switchover refused: node B is 12s behind, more than the 1.0s a switchover allows; try again when it has caught up"
    );
    assert_eq!(
        refused(with_replica(replica(A, "0-1-40", "0-1-42"), |r| {
            r.sql_running = false;
            r.sql_error = Some(1062);
        })),
        "switchover refused: replication on node B is not running cleanly"
    );
    assert_eq!(
        refused(crashed(true)),
        "switchover refused: node B does not answer"
    );
    assert_eq!(
        refused(stray("0-1-42")),
        "switchover refused: node B does not replicate from node A"
    );
}

// ---- Properties over random observation sequences ----

/// What the pair would look like as the executor applies a plan, as far as safety goes.
struct Model {
    ledger: Ledger,
    writable: [bool; 2],
    /// Each node's history as the plan's drain and catch-up steps leave it (`None`: unknown).
    history: [Option<GtidList>; 2],
}

fn ix(n: NodeId) -> usize {
    match n {
        A => 0,
        B => 1,
    }
}

impl Model {
    fn of(o: &Observation) -> Model {
        let writable = |n: NodeId| match o.node(n) {
            Node::Up(st) => !st.read_only,
            // A hung holder may wake up and take writes; no other node can have been made
            // writable but by the watchdog, which sets it read-only on sight.
            Node::Unresponsive { .. } => n == o.ledger.primary,
            Node::Down { .. } => false,
        };
        let history = |n: NodeId| o.node(n).status().map(|s| s.gtid_current_pos.clone());
        Model {
            ledger: o.ledger,
            writable: [writable(A), writable(B)],
            history: [history(A), history(B)],
        }
    }
}

/// Checks the safety properties of one plan for the observation it was made from.
fn check(o: &Observation, plan: &Plan) -> Result<(), String> {
    let mut m = Model::of(o);
    let fail = |i: usize, what: &str| Err(format!("{what} at step {} of {plan}", i + 1));
    for (i, step) in plan.steps.iter().enumerate() {
        match *step {
            Step::AdvanceEpoch { epoch, primary } => {
                if epoch <= m.ledger.epoch {
                    return fail(i, "the epoch does not grow");
                }
                let Some(ours) = &m.history[ix(primary)] else {
                    return fail(i, "chose a node that does not answer");
                };
                let theirs = o.node(primary.other()).status();
                if theirs.is_some_and(|t| ours.compare(&t.history_after_drain()) == History::Behind)
                {
                    return fail(i, "chose a node behind the other");
                }
                m.ledger = Ledger { epoch, primary };
            }
            Step::Promote { node, epoch } => {
                if m.ledger
                    != (Ledger {
                        epoch,
                        primary: node,
                    })
                    || epoch <= o.ledger.epoch
                {
                    return fail(i, "promoted without a new epoch for it first");
                }
                if m.writable[ix(node.other())] {
                    return fail(i, "promoted while the other node may be writable");
                }
                m.writable[ix(node)] = true;
            }
            Step::RepointEndpoint { to } if m.writable[ix(to.other())] => {
                return fail(i, "repointed before fencing the other node");
            }
            Step::SetReadOnly { node }
            | Step::Stop { node }
            | Step::Start { node }
            | Step::Rebuild { node, .. } => m.writable[ix(node)] = false,
            Step::DrainRelayLog { node, .. } => {
                m.history[ix(node)] = o.node(node).status().map(Status::history_after_drain);
            }
            Step::WaitForCatchUp {
                replica, primary, ..
            } => {
                if let (Some(r), Some(p)) = (&m.history[ix(replica)], &m.history[ix(primary)]) {
                    m.history[ix(replica)] = Some(r.advanced_to(p));
                }
            }
            _ => {}
        }
    }
    if m.writable == [true, true] {
        return Err(format!("two writable nodes after {plan}"));
    }
    Ok(())
}

fn history(o: &Observation, n: NodeId) -> String {
    o.node(n)
        .status()
        .map(|s| s.gtid_current_pos.to_string())
        .unwrap_or_default()
}

/// Plays the executor: applies the first `applied` steps of the plan to the observation.
fn apply(o: &mut Observation, plan: &Plan, applied: usize) {
    for step in plan.steps.iter().take(applied) {
        let edit = |o: &mut Observation, n: NodeId, f: &dyn Fn(&mut Status)| {
            *o.node_mut(n) = with_status(o.node(n).clone(), f);
        };
        match step {
            Step::Start { node } => *o.node_mut(*node) = stray(&history(o, *node)),
            Step::Stop { node } => *o.node_mut(*node) = crashed(true),
            Step::SetReadOnly { node } => edit(o, *node, &|st| st.read_only = true),
            Step::DrainRelayLog { node, .. } => edit(o, *node, &|st| {
                st.gtid_current_pos = st.history_after_drain();
            }),
            Step::WaitForCatchUp {
                replica, primary, ..
            } => {
                let to = pos(&history(o, *primary));
                edit(o, *replica, &|st| {
                    st.gtid_current_pos = st.gtid_current_pos.advanced_to(&to);
                });
            }
            Step::AdvanceEpoch { epoch, primary } => {
                o.ledger = Ledger {
                    epoch: *epoch,
                    primary: *primary,
                };
            }
            Step::Promote { node, .. } => *o.node_mut(*node) = primary(&history(o, *node)),
            Step::RepointEndpoint { to } => o.endpoint = Some(*to),
            Step::AttachReplica { node, primary } => {
                let at = history(o, *node);
                *o.node_mut(*node) = replica(*primary, &at, &at);
            }
            Step::Rebuild { node, from } => {
                let at = history(o, *from);
                *o.node_mut(*node) = replica(*from, &at, &at);
            }
            Step::StartReplication { node } => {
                *o.node_mut(*node) = with_replica(o.node(*node).clone(), |r| {
                    r.io = IoThread::Running;
                    r.sql_running = true;
                });
            }
            Step::SetSemiSyncMaster { node, on } => edit(o, *node, &|st| {
                st.semi_sync.enabled = *on;
                st.semi_sync.active = *on;
            }),
            _ => {}
        }
    }
}

fn arb_pos() -> impl Strategy<Value = GtidList> {
    prop::collection::vec((0u32..2, 1u32..3, 0u64..8), 0..3).prop_map(|v| {
        v.into_iter()
            .map(|(domain, server, seq)| crate::gtid::Gtid {
                domain,
                server,
                seq,
            })
            .collect()
    })
}

fn arb_node_id() -> impl Strategy<Value = NodeId> {
    prop_oneof![Just(A), Just(B)]
}

fn arb_replica() -> impl Strategy<Value = Replica> {
    (
        prop::option::weighted(0.9, arb_node_id()),
        prop_oneof![
            Just(IoThread::Running),
            Just(IoThread::Connecting),
            Just(IoThread::Stopped)
        ],
        any::<bool>(),
        prop::option::weighted(
            0.2,
            prop_oneof![Just(2003u32), Just(ER_MASTER_FATAL_ERROR_READING_BINLOG)],
        ),
        prop::option::weighted(0.2, Just(1062u32)),
        arb_pos(),
        prop::option::of(0u64..8),
    )
        .prop_map(
            |(source, io, sql_running, io_error, sql_error, io_pos, age)| Replica {
                source,
                io,
                sql_running,
                io_error,
                sql_error,
                gtid_slave_pos: GtidList::default(),
                gtid_io_pos: io_pos,
                last_received: age.map(Duration::from_secs),
            },
        )
}

fn arb_node() -> impl Strategy<Value = Node> {
    let up = (
        any::<bool>(),
        arb_pos(),
        prop::option::weighted(0.6, arb_replica()),
        any::<(bool, bool)>(),
        prop::option::of(0u64..5),
    )
        .prop_map(|(read_only, at, replica, (enabled, active), lag)| {
            Node::Up(Status {
                read_only,
                gtid_binlog_pos: at.clone(),
                gtid_current_pos: at,
                replica,
                semi_sync: SemiSync {
                    enabled,
                    active,
                    clients: u32::from(active),
                },
                heartbeat_lag: lag.map(Duration::from_secs),
            })
        });
    prop_oneof![
        3 => up,
        1 => (any::<bool>(), any::<bool>()).prop_map(|(exited, data_intact)| Node::Down {
            exited: exited.then(|| "exited with status 1".into()),
            data_intact,
        }),
        1 => any::<bool>().prop_map(|stopped| Node::Unresponsive { stopped, reason: "timed out".into() }),
    ]
}

/// One tick of a random history: time passes, either node may change, the executor may stop
/// part-way through the plan, and sometimes a person asks for a switchover.
#[derive(Debug, Clone)]
struct TickInput {
    dt_ms: u64,
    a: Option<Node>,
    b: Option<Node>,
    endpoint: Option<Option<NodeId>>,
    cut_short_at: Option<usize>,
    switchover: bool,
}

fn arb_tick() -> impl Strategy<Value = TickInput> {
    (
        0u64..5000,
        prop::option::weighted(0.3, arb_node()),
        prop::option::weighted(0.3, arb_node()),
        prop::option::weighted(0.05, prop::option::of(arb_node_id())),
        prop::option::weighted(0.2, 0usize..6),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(dt_ms, a, b, endpoint, cut_short_at, switchover)| TickInput {
                dt_ms,
                a,
                b,
                endpoint,
                cut_short_at,
                switchover,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Over random histories: no plan chooses a node behind the other, makes a node writable
    /// without a new, strictly greater epoch recorded for it first, leaves or makes two nodes
    /// writable, or repoints the endpoint before the other node is fenced.
    #[test]
    fn plans_are_safe_over_random_histories(ticks in prop::collection::vec(arb_tick(), 1..60)) {
        let policy = Policy::default();
        let mut pair = Pair::new();
        let mut o = obs(0.0, 1, A, primary("0-1-5"), replica(A, "0-1-5", "0-1-5"));
        for t in ticks {
            o.now += Duration::from_millis(t.dt_ms);
            if let Some(a) = t.a { o.a = a; }
            if let Some(b) = t.b { o.b = b; }
            if let Some(e) = t.endpoint { o.endpoint = e; }
            let plan = match plan_switchover(&o, &policy) {
                Ok(plan) if t.switchover => plan,
                _ => pair.tick(&o, &policy),
            };
            prop_assert!(!plan.reason.is_empty());
            if let Err(violation) = check(&o, &plan) {
                return Err(TestCaseError::fail(format!("{violation}\nobserved: {o:?}")));
            }
            apply(&mut o, &plan, t.cut_short_at.unwrap_or(usize::MAX));
        }
    }

    /// However the replica looks, a failover or promotion of it waits for its relay log to be
    /// applied, unless its SQL thread cannot apply it (and then it is not promoted at all).
    #[test]
    fn a_promoted_replica_is_drained_first(b in arb_node(), now in 0u64..100) {
        let mut pair = Pair::new();
        let plan = pair.tick(&obs(now as f64, 3, A, crashed(false), b.clone()), &Policy::default());
        let promotes_b = plan.steps.iter().position(|s| matches!(s, Step::Promote { node: B, .. }));
        if let (Some(at), Some(repl)) = (promotes_b, b.status().and_then(|s| s.replica.as_ref())) {
            let drained = plan.steps[..at].iter().any(|s| matches!(s, Step::DrainRelayLog { node: B, .. }));
            prop_assert!(drained, "{plan}");
            prop_assert!(repl.sql_error.is_none() || repl.gtid_io_pos.is_prefix_of(&b.status().map(|s| s.gtid_current_pos.clone()).unwrap_or_default()), "{plan}");
        }
    }
}
