//! The verdict state machine under a fake clock: cases, and properties over random schedules.

use proptest::prelude::*;

use super::*;

fn policy() -> Policy {
    Policy {
        probe_interval: Duration::from_millis(500),
        probe_timeout: Duration::from_millis(1000),
        failure_threshold: 3,
        startup_budget: Duration::from_secs(30),
        gc_max_extension: Duration::from_secs(20),
        backoff_initial: Duration::from_secs(1),
        backoff_max: Duration::from_secs(60),
        crash_loop_restarts: 5,
        crash_loop_window: Duration::from_secs(300),
        failed_retry_interval: Duration::from_secs(300),
    }
}

fn s(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

fn failed(gc: Gc) -> Event {
    Event::ProbeFailed {
        reason: "no answer within the probe timeout".into(),
        gc,
    }
}

#[test]
fn first_tick_spawns_and_a_good_probe_makes_it_healthy() {
    let p = policy();
    let mut w = Worker::new();
    assert_eq!(w.on(Event::Tick, s(0.0), &p, 0.0), vec![Action::Spawn]);
    w.on(Event::Spawned, s(0.0), &p, 0.0);
    assert_eq!(w.state.name(), "starting");
    w.on(Event::ProbeOk, s(0.5), &p, 0.0);
    assert_eq!(w.state, State::Healthy);
    assert_eq!(w.restarts, 0);
}

#[test]
fn slow_starter_is_never_judged_within_its_budget() {
    let p = policy();
    let mut w = Worker::new();
    w.on(Event::Spawned, s(0.0), &p, 0.0);
    let mut t = 1.0;
    while t < 29.9 {
        assert!(
            w.on(failed(Gc::Unknown), s(t), &p, 0.0).is_empty(),
            "at {t}"
        );
        assert_eq!(w.state.name(), "starting");
        t += 0.5;
    }
    let actions = w.on(failed(Gc::Unknown), s(30.5), &p, 0.0);
    assert!(
        matches!(&actions[..], [Action::Heal { reason }] if reason.starts_with("no answer within its startup budget of 30s")),
        "{actions:?}"
    );
}

#[test]
fn healthy_worker_that_stops_answering_is_healed_after_the_threshold() {
    let p = policy();
    let mut w = Worker::new();
    w.on(Event::Spawned, s(0.0), &p, 0.0);
    w.on(Event::ProbeOk, s(0.1), &p, 0.0);
    assert!(w.on(failed(Gc::Unknown), s(1.5), &p, 0.0).is_empty());
    assert_eq!(w.state, State::Suspect { failures: 1 });
    // A good answer in between resets the count.
    w.on(Event::ProbeOk, s(2.0), &p, 0.0);
    assert!(w.on(failed(Gc::Unknown), s(3.5), &p, 0.0).is_empty());
    assert!(w.on(failed(Gc::Unknown), s(4.0), &p, 0.0).is_empty());
    let actions = w.on(failed(Gc::Unknown), s(4.5), &p, 0.0);
    assert!(matches!(&actions[..], [Action::Heal { .. }]));
    assert_eq!(w.state, State::Hung);
    // Late probe answers while it is being healed change nothing.
    assert!(w.on(failed(Gc::Unknown), s(5.0), &p, 0.0).is_empty());
    // Once stopped, it restarts at once (its first restart since it was healthy).
    assert_eq!(
        w.on(
            Event::Exited {
                reason: "stopped after a hang".into()
            },
            s(6.0),
            &p,
            0.0
        ),
        vec![Action::Spawn]
    );
    w.on(Event::Spawned, s(6.0), &p, 0.0);
    assert_eq!(w.restarts, 1);
}

#[test]
fn a_collecting_jvm_gets_a_bounded_extension() {
    let p = policy();
    let mut w = Worker::new();
    w.on(Event::Spawned, s(0.0), &p, 0.0);
    w.on(Event::ProbeOk, s(0.1), &p, 0.0);
    w.on(failed(Gc::Collecting), s(1.0), &p, 0.0);
    w.on(failed(Gc::Collecting), s(1.5), &p, 0.0);
    // At the threshold, but collecting: extended.
    assert!(w.on(failed(Gc::Collecting), s(2.0), &p, 0.0).is_empty());
    assert!(w.why.contains("collecting garbage"), "{}", w.why);
    assert!(w.on(failed(Gc::Collecting), s(21.9), &p, 0.0).is_empty());
    // The extension is bounded: 20 s after it began, it is healed even mid-collection.
    assert!(matches!(
        &w.on(failed(Gc::Collecting), s(22.0), &p, 0.0)[..],
        [Action::Heal { .. }]
    ));
}

#[test]
fn an_idle_jvm_gets_no_extension() {
    let p = policy();
    let mut w = Worker::new();
    w.on(Event::Spawned, s(0.0), &p, 0.0);
    w.on(Event::ProbeOk, s(0.1), &p, 0.0);
    w.on(failed(Gc::Idle), s(1.0), &p, 0.0);
    w.on(failed(Gc::Idle), s(1.5), &p, 0.0);
    assert!(matches!(
        &w.on(failed(Gc::Idle), s(2.0), &p, 0.0)[..],
        [Action::Heal { .. }]
    ));
}

#[test]
fn exits_back_off_then_become_a_crash_loop_with_one_alert() {
    let p = policy();
    let mut w = Worker::new();
    let mut now = s(0.0);
    let mut spawns = Vec::new();
    let mut alerts = 0;
    for _ in 0..200 {
        for a in w.on(Event::Tick, now, &p, 0.0) {
            assert_eq!(a, Action::Spawn);
            w.on(Event::Spawned, now, &p, 0.0);
            spawns.push(now);
            // It dies 100 ms after every start.
            now += s(0.1);
            for a in w.on(
                Event::Exited {
                    reason: "exited with status 1".into(),
                },
                now,
                &p,
                0.0,
            ) {
                match a {
                    Action::Alert { .. } => alerts += 1,
                    Action::Spawn => {
                        w.on(Event::Spawned, now, &p, 0.0);
                        spawns.push(now);
                        now += s(0.1);
                        w.on(
                            Event::Exited {
                                reason: "exited with status 1".into(),
                            },
                            now,
                            &p,
                            0.0,
                        );
                    }
                    Action::Heal { .. } => panic!("an exited worker is not healed"),
                }
            }
        }
        now += s(0.5);
        if matches!(w.state, State::Failed { .. }) {
            break;
        }
    }
    assert!(matches!(w.state, State::Failed { .. }), "{:?}", w.state);
    assert!(
        w.why
            .starts_with("crash loop: 5 restarts within 300s; last: exited with status 1"),
        "{}",
        w.why
    );
    assert_eq!(alerts, 1);
    // Gaps grow: immediate, then about 1, 2, 4 s.
    let gaps: Vec<f64> = spawns
        .windows(2)
        .map(|p| (p[1] - p[0]).as_secs_f64())
        .collect();
    assert!(
        gaps[0] < 0.2 && gaps[1] >= 1.0 && gaps[2] >= 2.0 && gaps[3] >= 4.0,
        "{gaps:?}"
    );
    // It is still retried, slowly.
    assert!(w.on(Event::Tick, now + p.failed_retry_interval, &p, 0.0) == vec![Action::Spawn]);
}

#[test]
fn recovery_is_announced_only_after_a_reported_crash_loop() {
    let p = policy();
    let mut w = Worker::new();
    let mut now = s(0.0);
    // Four hang restarts, each followed by a healthy run: below the crash-loop count, so no
    // alert either way.
    for _ in 0..4 {
        w.on(Event::Spawned, now, &p, 0.0);
        assert!(w.on(Event::ProbeOk, now + s(0.1), &p, 0.0).is_empty());
        now += s(10.0);
        w.on(
            Event::Exited {
                reason: "stopped after a hang".into(),
            },
            now,
            &p,
            0.0,
        );
    }
    // Into a crash loop: one alert; the first good answer after it: one recovery alert.
    let mut alerts = Vec::new();
    for _ in 0..3 {
        w.on(Event::Spawned, now, &p, 0.0);
        now += s(1.0);
        alerts.extend(w.on(
            Event::Exited {
                reason: "exited with status 1".into(),
            },
            now,
            &p,
            0.0,
        ));
    }
    assert!(matches!(w.state, State::Failed { .. }));
    assert_eq!(
        alerts
            .iter()
            .filter(|a| matches!(a, Action::Alert { .. }))
            .count(),
        1
    );
    w.on(Event::Spawned, now + p.failed_retry_interval, &p, 0.0);
    let recovered = w.on(
        Event::ProbeOk,
        now + p.failed_retry_interval + s(1.0),
        &p,
        0.0,
    );
    assert_eq!(
        recovered,
        vec![Action::Alert {
            message: "recovered from a crash loop".into()
        }]
    );
    assert!(w
        .on(
            Event::ProbeOk,
            now + p.failed_retry_interval + s(2.0),
            &p,
            0.0
        )
        .is_empty());
}

#[test]
fn backoff_doubles_with_bounded_jitter() {
    let p = policy();
    assert_eq!(p.backoff(0, 0.9), Duration::ZERO);
    assert_eq!(p.backoff(1, 0.0), s(1.0));
    assert_eq!(p.backoff(2, 0.0), s(2.0));
    assert_eq!(p.backoff(3, 0.0), s(4.0));
    assert_eq!(p.backoff(3, 0.999_999).as_millis(), 4999);
    assert_eq!(p.backoff(20, 0.5), s(60.0));
    assert_eq!(p.backoff(u32::MAX, 1.0), s(60.0));
}

/// Drives a worker the way the executor does: from each spawn, a probe is sent every interval
/// whether or not earlier ones have answered; a good probe answers at once, a failed one at the
/// timeout; answers from an earlier process are discarded; Heal stops the process after
/// `grace`. Returns the times of Heal actions and the final worker.
fn simulate(
    p: &Policy,
    answers_until: Option<Duration>,
    horizon: Duration,
    grace: Duration,
) -> (Vec<Duration>, Worker) {
    let mut w = Worker::new();
    let mut heals = Vec::new();
    let mut spawn_at = Duration::ZERO;
    assert_eq!(w.on(Event::Tick, spawn_at, p, 0.0), vec![Action::Spawn]);
    'generation: while spawn_at < horizon {
        w.on(Event::Spawned, spawn_at, p, 0.0);
        let mut results: Vec<(Duration, bool)> = Vec::new();
        let mut sent = spawn_at;
        while sent < horizon {
            let ok = answers_until.is_none_or(|t| sent < t);
            results.push((if ok { sent } else { sent + p.probe_timeout }, ok));
            sent += p.probe_interval;
        }
        results.sort_by_key(|r| r.0);
        for (at, ok) in results {
            let event = if ok {
                Event::ProbeOk
            } else {
                failed(Gc::Unknown)
            };
            if w.on(event, at, p, 0.0)
                .iter()
                .any(|a| matches!(a, Action::Heal { .. }))
            {
                heals.push(at);
                spawn_at = at + grace;
                let mut actions = w.on(
                    Event::Exited {
                        reason: "stopped".into(),
                    },
                    spawn_at,
                    p,
                    0.0,
                );
                // A repeat offender waits out its backoff; ticks let the restart fire.
                while !actions.contains(&Action::Spawn) {
                    spawn_at = match w.state {
                        State::Restarting { restart_at } => restart_at,
                        State::Failed { retry_at } => retry_at,
                        ref other => panic!("unexpected state after an exit: {other:?}"),
                    };
                    actions = w.on(Event::Tick, spawn_at, p, 0.0);
                }
                continue 'generation;
            }
        }
        break;
    }
    (heals, w)
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    (100u64..2000, 100u64..3000, 1u32..6, 0u64..60_000).prop_map(
        |(interval, timeout, threshold, budget)| Policy {
            probe_interval: Duration::from_millis(interval),
            probe_timeout: Duration::from_millis(timeout),
            failure_threshold: threshold,
            startup_budget: Duration::from_millis(budget),
            ..policy()
        },
    )
}

proptest! {
    #[test]
    fn a_worker_that_always_answers_is_never_restarted(p in arb_policy(), horizon_s in 1u64..3600) {
        let (heals, w) = simulate(&p, None, Duration::from_secs(horizon_s), Duration::from_secs(5));
        prop_assert!(heals.is_empty());
        prop_assert_eq!(w.restarts, 0);
        prop_assert_eq!(w.state, State::Healthy);
    }

    #[test]
    fn a_worker_that_stops_answering_is_healed_in_bounded_time(p in arb_policy(), stop_ms in 1u64..600_000) {
        let stop = Duration::from_millis(stop_ms);
        let horizon = stop + p.startup_budget + (p.probe_interval + p.probe_timeout) * (p.failure_threshold + 4);
        let (heals, _) = simulate(&p, Some(stop), horizon, Duration::from_secs(5));
        prop_assert!(!heals.is_empty(), "never healed");
        // Healthy before it stopped (or still within its startup budget): healed within
        // interval x threshold + timeout of the moment it stopped answering.
        let bound = stop.max(p.startup_budget) + p.probe_interval * p.failure_threshold + p.probe_timeout;
        prop_assert!(heals[0] <= bound, "healed at {:?}, bound {:?}", heals[0], bound);
    }

    #[test]
    fn crash_loop_restarts_never_come_faster_than_backoff(exit_after_ms in 0u64..5000, jitter in 0.0f64..1.0) {
        let p = policy();
        let mut w = Worker::new();
        let mut now = Duration::ZERO;
        let mut starts: Vec<Duration> = Vec::new();
        for _ in 0..2000 {
            for a in w.on(Event::Tick, now, &p, jitter) {
                if a == Action::Spawn {
                    w.on(Event::Spawned, now, &p, jitter);
                    starts.push(now);
                    now += Duration::from_millis(exit_after_ms);
                    for a in w.on(Event::Exited { reason: "exit".into() }, now, &p, jitter) {
                        if a == Action::Spawn {
                            w.on(Event::Spawned, now, &p, jitter);
                            starts.push(now);
                            now += Duration::from_millis(exit_after_ms);
                            w.on(Event::Exited { reason: "exit".into() }, now, &p, jitter);
                        }
                    }
                }
            }
            now += Duration::from_millis(100);
        }
        // Within any crash-loop window, at most crash_loop_restarts + 1 starts.
        for (i, &t) in starts.iter().enumerate() {
            let within = starts[i..].iter().take_while(|&&u| u - t <= p.crash_loop_window).count();
            prop_assert!(within <= p.crash_loop_restarts as usize + 1, "{within} starts within the window from {t:?}");
        }
    }
}
