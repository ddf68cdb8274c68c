//! The balancer's cases and invariants, on tokio's paused clock.

use super::*;
use proptest::prelude::*;

const POLICY: Policy = Policy {
    rise: 2,
    fall: 2,
    passive_fall: 2,
    slow_start: Duration::from_secs(10),
};

fn pool(n: u32) -> Pool {
    let backends = (1..=n)
        .map(|i| Backend::new(i, SocketAddr::from(([127, 0, 0, 1], 8080 + i as u16))))
        .collect();
    Pool::new(POLICY, backends)
}

fn all_up(p: &mut Pool, now: Instant) {
    for i in 1..=p.backends.len() as u32 {
        p.probed(i, Ok(()), now);
    }
}

#[tokio::test(start_paused = true)]
async fn nothing_is_picked_before_a_probe_passes() {
    let now = Instant::now();
    let mut p = pool(2);
    assert!(p.pick(None, &[], now).is_none());
    p.probed(2, Ok(()), now);
    // A backend never up needs one pass, not `rise`.
    assert_eq!(p.pick(None, &[], now).map(|b| b.instance), Some(2));
}

#[tokio::test(start_paused = true)]
async fn least_outstanding_wins_and_ties_rotate() {
    let now = Instant::now();
    let mut p = pool(3);
    all_up(&mut p, now);
    let first: Vec<u32> = (0..3)
        .filter_map(|_| p.pick(None, &[], now).map(|b| b.instance))
        .collect();
    let mut sorted = first.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        vec![1, 2, 3],
        "one each while all are equally loaded"
    );
    p.finish(2, Outcome::Answered, now);
    assert_eq!(p.pick(None, &[], now).map(|b| b.instance), Some(2));
}

#[tokio::test(start_paused = true)]
async fn probes_eject_after_fall_and_return_after_rise_with_slow_start() {
    let mut now = Instant::now();
    let mut p = pool(2);
    all_up(&mut p, now);
    p.probed(1, Err("no answer within the probe timeout".into()), now);
    assert!(p.backends[0].is_up(), "one failed probe is not enough");
    p.probed(1, Err("no answer within the probe timeout".into()), now);
    assert!(!p.backends[0].is_up());
    assert_eq!(
        p.backends[0].state(now),
        (
            "down",
            "2 probes in a row failed: no answer within the probe timeout".into()
        )
    );
    for _ in 0..10 {
        assert_eq!(p.pick(None, &[], now).map(|b| b.instance), Some(2));
    }
    p.probed(1, Ok(()), now);
    assert!(
        !p.backends[0].is_up(),
        "a returning instance needs `rise` passes"
    );
    p.probed(1, Ok(()), now);
    assert!(p.backends[0].is_up());
    assert!((p.backends[0].weight(&POLICY, now) - 0.1).abs() < 1e-9);
    now += Duration::from_secs(5);
    assert!((p.backends[0].weight(&POLICY, now) - 0.5).abs() < 1e-9);
    now += Duration::from_secs(60);
    assert!((p.backends[0].weight(&POLICY, now) - 1.0).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn a_warming_instance_gets_a_small_share() {
    let now = Instant::now();
    let mut p = pool(2);
    all_up(&mut p, now);
    for _ in 0..2 {
        p.probed(1, Err("down".into()), now);
    }
    for _ in 0..2 {
        p.probed(1, Ok(()), now);
    }
    // Weight 0.1: instance 1 takes its first request only once instance 2 has ten.
    let picks: Vec<u32> = (0..11)
        .filter_map(|_| p.pick(None, &[], now).map(|b| b.instance))
        .collect();
    assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 1, "{picks:?}");
}

#[tokio::test(start_paused = true)]
async fn passive_failures_eject_but_never_the_last_instance() {
    let now = Instant::now();
    let mut p = pool(2);
    all_up(&mut p, now);
    for _ in 0..2 {
        let b = p.pick(Some(1), &[], now).expect("instance 1 is up");
        p.finish(b.instance, Outcome::Failed(FailureKind::Timeout), now);
    }
    assert!(!p.backends[0].is_up());
    assert_eq!(
        p.backends[0].state(now).1,
        "2 times in a row: requests got no answer in time"
    );
    for _ in 0..5 {
        let b = p.pick(None, &[], now).expect("instance 2 is up");
        p.finish(b.instance, Outcome::Failed(FailureKind::Connect), now);
    }
    assert!(
        p.backends[1].is_up(),
        "the last instance stays until its probes fail"
    );
}

#[tokio::test(start_paused = true)]
async fn an_answer_resets_the_passive_count() {
    let now = Instant::now();
    let mut p = pool(2);
    all_up(&mut p, now);
    for outcome in [
        Outcome::Failed(FailureKind::Status(502)),
        Outcome::Answered,
        Outcome::Failed(FailureKind::Status(502)),
    ] {
        p.pick(Some(1), &[], now);
        p.finish(1, outcome, now);
    }
    assert!(p.backends[0].is_up());
}

#[tokio::test(start_paused = true)]
async fn drains_stop_new_requests_and_leases_expire() {
    let mut now = Instant::now();
    let mut p = pool(2);
    all_up(&mut p, now);
    assert!(p.drain(1, Some(now + Duration::from_secs(30))));
    for _ in 0..5 {
        assert_eq!(p.pick(Some(1), &[], now).map(|b| b.instance), Some(2));
    }
    assert_eq!(p.backends[0].state(now).0, "draining");
    now += Duration::from_secs(31);
    assert_eq!(p.pick(Some(1), &[], now).map(|b| b.instance), Some(1));
    assert!(p.drain(2, None));
    now += Duration::from_secs(3600);
    assert!(
        p.backends[1].is_draining(now),
        "a drain without a lease lasts"
    );
    // The watchdog's lease neither shortens nor ends a person's drain.
    assert!(p.drain(2, Some(now + Duration::from_secs(1))));
    assert!(p.enable(2, true));
    assert!(p.backends[1].is_draining(now + Duration::from_secs(10)));
    assert!(p.enable(2, false));
    assert!(!p.backends[1].is_draining(now));
    assert!(!p.drain(7, None), "unknown instances are refused");
}

#[tokio::test(start_paused = true)]
async fn sticky_preference_falls_over_when_the_instance_is_down() {
    let now = Instant::now();
    let mut p = pool(3);
    all_up(&mut p, now);
    assert_eq!(p.pick(Some(3), &[], now).map(|b| b.instance), Some(3));
    for _ in 0..2 {
        p.probed(3, Err("gone".into()), now);
    }
    let b = p.pick(Some(3), &[], now).expect("others are up");
    assert_ne!(b.instance, 3);
    // A retry never goes back to an instance already tried.
    let again = p
        .pick(Some(b.instance), &[b.instance], now)
        .expect("one left");
    assert_ne!(again.instance, b.instance);
}

#[tokio::test(start_paused = true)]
async fn reload_keeps_state_of_unchanged_backends() {
    let now = Instant::now();
    let mut p = pool(2);
    all_up(&mut p, now);
    let a1 = p.backends[0].addr;
    p.replace(
        POLICY,
        vec![(1, a1), (3, SocketAddr::from(([127, 0, 0, 1], 9999)))],
    );
    assert!(p.backends[0].is_up());
    assert!(!p.backends[1].is_up(), "a new backend waits for its probe");
    assert_eq!(p.backends.len(), 2);
}

#[derive(Debug, Clone)]
enum Event {
    Pick(Option<u32>),
    Finish(u32, bool),
    Probe(u32, bool),
    Drain(u32),
    Enable(u32),
    Wait(u64),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        proptest::option::of(1u32..=4).prop_map(Event::Pick),
        (1u32..=4, any::<bool>()).prop_map(|(i, ok)| Event::Finish(i, ok)),
        (1u32..=4, any::<bool>()).prop_map(|(i, ok)| Event::Probe(i, ok)),
        (1u32..=4).prop_map(Event::Drain),
        (1u32..=4).prop_map(Event::Enable),
        (0u64..20_000).prop_map(Event::Wait),
    ]
}

proptest! {
    /// Whatever happens: a pick is an up, undrained backend; it is never more loaded than
    /// another eligible one after weighting; nothing is picked only when nothing is eligible;
    /// outstanding counts never go wrong.
    #[test]
    fn picks_are_always_eligible_and_least_loaded(events in proptest::collection::vec(event(), 1..200)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("runtime");
        rt.block_on(async {
            let mut now = Instant::now();
            let mut p = pool(4);
            let mut open: Vec<u32> = Vec::new();
            for e in events {
                match e {
                    Event::Pick(prefer) => {
                        let loads: Vec<(u32, f64, bool)> = p.backends.iter()
                            .map(|b| (b.instance, f64::from(b.outstanding + 1) / b.weight(&POLICY, now), b.eligible(now)))
                            .collect();
                        match p.pick(prefer, &[], now) {
                            Some(b) => {
                                let (_, load, eligible) = loads.iter().copied().find(|l| l.0 == b.instance).expect("known");
                                prop_assert!(eligible, "picked an ineligible backend");
                                if prefer != Some(b.instance) {
                                    let min = loads.iter().filter(|l| l.2).map(|l| l.1).fold(f64::INFINITY, f64::min);
                                    prop_assert!(load <= min + 1e-9, "picked load {load}, least {min}");
                                }
                                open.push(b.instance);
                            }
                            None => prop_assert!(!loads.iter().any(|l| l.2), "nothing picked while one was eligible"),
                        }
                    }
                    Event::Finish(i, ok) => {
                        if let Some(pos) = open.iter().position(|&o| o == i) {
                            open.swap_remove(pos);
                            let outcome = if ok { Outcome::Answered } else { Outcome::Failed(FailureKind::Timeout) };
                            p.finish(i, outcome, now);
                        }
                    }
                    Event::Probe(i, ok) => p.probed(i, if ok { Ok(()) } else { Err("no".into()) }, now),
                    Event::Drain(i) => { p.drain(i, Some(now + Duration::from_secs(5))); }
                    Event::Enable(i) => { p.enable(i, false); }
                    Event::Wait(ms) => now += Duration::from_millis(ms),
                }
                for b in &p.backends {
                    let expected = open.iter().filter(|&&o| o == b.instance).count() as u32;
                    prop_assert_eq!(b.outstanding, expected);
                }
            }
            Ok(())
        })?;
    }
}
