//! Dependencies and the random wait before a restart, on simulated time: a target whose
//! dependency is down is held (never restarted), checked again at spread intervals, given a
//! whole timeout once the dependency is back, and still restarted when it hangs with its
//! dependency up; a check that never answers holds it at its bound; `restart_splay` spreads
//! a fleet's restarts and a heartbeat during the wait calls a restart off.

use std::time::Duration;

use super::harness::{Behaviour, Harness, secs};
use super::{config, target};
use crate::state::TargetStatus;

/// A target `a` (timeout 10 s) that depends on a TCP endpoint, with `more` settings of
/// `depends_on`.
fn held_config(more: &str) -> String {
    config(
        &[target(
            "a",
            &format!("    depends_on: {{tcp: ['master:4506'], recheck: 20s{more}}}\n"),
        )],
        "",
    )
}

/// Runs the loop in small steps until `done`, at most `max` of simulated time.
fn until(h: &mut Harness, max: f64, done: impl Fn(&Harness) -> bool) {
    let end = h.now() + secs(max);
    while !done(h) {
        assert!(h.now() < end, "not within {max} s");
        h.advance(secs(0.1));
    }
}

const DOWN: Behaviour = Behaviour::Exit(1, Duration::from_millis(300));
const UP: Behaviour = Behaviour::Exit(0, Duration::from_millis(300));

/// When each dependency check of `target` began.
fn checks(h: &Harness, target: &str) -> Vec<Duration> {
    h.commands(target)
        .into_iter()
        .filter(|c| c.0 == "depends")
        .map(|c| c.1)
        .collect()
}

fn count(events: &[String], event: &str) -> usize {
    events.iter().filter(|e| *e == event).count()
}

#[test]
fn held_while_the_dependency_is_down_and_checked_again_at_spread_intervals() {
    let mut h = Harness::new(&held_config(""));
    h.behave("a", "depends", DOWN);
    h.advance(secs(600.0));
    assert!(h.stops("a").is_empty(), "{:?}", h.commands("a"));
    assert!(!h.commands("a").iter().any(|c| c.0 == "start"));
    assert_eq!(h.slot("a").status(), TargetStatus::Held);
    let at = checks(&h, "a");
    // First checked when judged stale (startup grace 10 s), then every 10 to 20 s.
    assert_eq!(at[0], secs(10.0));
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 25, "{gaps:?}");
    // Each gap: the check itself (0.3 s), then a wait of half recheck to recheck.
    assert!(
        gaps.iter().all(|g| *g >= secs(10.3) && *g <= secs(20.3)),
        "{gaps:?}"
    );
    assert!(
        gaps.iter().any(|g| *g != gaps[0]),
        "spread, not in step: {gaps:?}"
    );
    let events = h.events("a");
    assert_eq!(count(&events, "dependency_down"), 1, "{events:?}");
    assert_eq!(count(&events, "stale"), 1, "{events:?}");
    let record = h.record("a");
    assert_eq!(record.state, TargetStatus::Held);
    assert_eq!(record.dependency.as_deref(), Some("fake: down"));
    assert!(record.held_since.is_some());
}

#[test]
fn back_from_a_hold_the_target_gets_a_whole_timeout_then_a_hung_service_is_restarted() {
    let mut h = Harness::new(&held_config(""));
    h.behave("a", "depends", DOWN);
    h.advance(secs(100.0));
    h.behave("a", "depends", UP);
    // The first check begun from now on finds it up.
    until(&mut h, 25.0, |h| {
        h.events("a").contains(&"dependency_up".into())
    });
    let up_at = h.now();
    let asked = *checks(&h, "a").last().unwrap();
    assert!(
        asked >= secs(100.0) && up_at - asked <= secs(0.4),
        "{asked:?} {up_at:?}"
    );
    let events = h.events("a");
    assert_eq!(count(&events, "dependency_up"), 1, "{events:?}");
    assert_eq!(h.slot("a").status(), TargetStatus::Watching);
    assert!(h.stops("a").is_empty());
    // No heartbeat: a whole timeout (10 s) after the check found it up, it is judged stale,
    // checked once more (up) and restarted.
    until(&mut h, 30.0, |h| !h.stops("a").is_empty());
    let stops = h.stops("a");
    assert_eq!(stops[0], asked + secs(0.3) + secs(10.0) + secs(0.3));
    assert_eq!(count(&h.events("a"), "dependency_down"), 1);
}

#[test]
fn a_service_that_hangs_while_its_dependency_is_up_is_restarted_on_time() {
    let mut h = Harness::new(&held_config(""));
    h.behave("a", "depends", UP);
    h.advance(secs(1.0));
    h.touch("a");
    h.advance(secs(11.0));
    let stops = h.stops("a");
    assert_eq!(stops, [secs(11.3)], "{:?}", h.commands("a"));
    assert_eq!(checks(&h, "a"), [secs(11.0)]);
    assert_eq!(h.slot("a").status(), TargetStatus::Recovering);
}

#[test]
fn a_check_that_never_answers_holds_the_target_at_its_bound() {
    let mut h = Harness::new(&held_config(", check_timeout: 3s"));
    h.behave("a", "depends", Behaviour::Hang);
    h.advance(secs(14.0));
    // Judged stale at 10 s; the check's bound is check_timeout + 2 s of slack.
    assert_eq!(h.slot("a").status(), TargetStatus::Restarting);
    h.advance(secs(1.1));
    assert_eq!(h.slot("a").status(), TargetStatus::Held);
    let record = h.record("a");
    assert_eq!(record.dependency.as_deref(), Some("no verdict within 5s"));
    h.advance(secs(300.0));
    assert!(h.stops("a").is_empty());
    assert_eq!(count(&h.events("a"), "dependency_down"), 1);
    // Late answers ("up") of earlier checks, between two checks, change nothing: only the
    // latest check counts.
    until(&mut h, 30.0, |h| {
        h.slot("a").state.phase == crate::schedule::Phase::Held
    });
    h.finish_hung("a");
    h.advance(secs(0.1));
    assert_eq!(h.slot("a").status(), TargetStatus::Held);
    assert!(!h.events("a").contains(&"dependency_up".into()));
}

#[test]
fn a_heartbeat_ends_a_hold() {
    let mut h = Harness::new(&held_config(""));
    h.behave("a", "depends", DOWN);
    h.advance(secs(60.0));
    assert_eq!(h.slot("a").status(), TargetStatus::Held);
    h.touch("a");
    // Seen at the next look (the next recheck, within 20 s): the hold is over.
    until(&mut h, 21.0, |h| {
        h.events("a").contains(&"dependency_up".into())
    });
    assert_eq!(h.slot("a").status(), TargetStatus::Watching);
    assert!(h.record("a").dependency.is_none());
    // Then watched as usual: stale a timeout after the heartbeat, checked, held again.
    h.advance(secs(30.0));
    assert_eq!(h.slot("a").status(), TargetStatus::Held);
    assert_eq!(count(&h.events("a"), "dependency_down"), 2);
    assert!(h.stops("a").is_empty());
}

#[test]
fn shutting_down_during_a_check_or_a_random_wait_begins_no_restart() {
    let targets = [
        target("a", "    depends_on: {tcp: ['master:4506']}\n"),
        target("b", "    restart_splay: 1h\n"),
    ];
    let mut h = Harness::new(&config(&targets, ""));
    h.behave("a", "depends", Behaviour::Exit(0, secs(3.0)));
    h.advance(secs(11.0));
    assert_eq!(h.slot("a").status(), TargetStatus::Restarting);
    assert_eq!(h.slot("b").status(), TargetStatus::Restarting);
    h.signal(crate::platform::Signal::Shutdown);
    h.advance(secs(5.0));
    assert_eq!(h.exit, Some(super::Exit::Clean));
    assert!(h.stops("a").is_empty() && h.stops("b").is_empty());
    for t in ["a", "b"] {
        assert!(h.events(t).contains(&"restart_called_off".into()), "{t}");
    }
}

#[test]
fn an_operator_restart_of_a_held_target_is_not_held() {
    let mut h = Harness::new(&held_config(""));
    h.behave("a", "depends", DOWN);
    h.advance(secs(60.0));
    let i = h.d.slots.iter().position(|s| s.target.name == "a").unwrap();
    let first = {
        let slot = &mut h.d.slots[i];
        slot.state.restart_now(&slot.rules)
    };
    assert!(first.is_some());
    assert!(!h.d.slots[i].state.is_held());
}

#[test]
fn restart_splay_spreads_a_fleets_restarts_and_a_heartbeat_calls_one_off() {
    let targets: Vec<String> = (0..40)
        .map(|i| target(&format!("t{i}"), "    restart_splay: 60s\n"))
        .collect();
    let mut h = Harness::new(&config(&targets, ""));
    h.advance(secs(9.0));
    // All stale together at 10 s; one of them beats again during its wait.
    h.advance(secs(2.0));
    h.touch("t0");
    h.advance(secs(70.0));
    let firsts: Vec<Duration> = (1..40).map(|i| h.stops(&format!("t{i}"))[0]).collect();
    assert!(
        firsts.iter().all(|s| *s >= secs(10.0) && *s <= secs(70.0)),
        "{firsts:?}"
    );
    let in_first_ten = firsts.iter().filter(|s| **s < secs(20.0)).count();
    assert!(in_first_ten < 20, "not spread: {firsts:?}");
    let mut seconds: Vec<u64> = firsts.iter().map(Duration::as_secs).collect();
    seconds.dedup();
    assert!(seconds.len() > 20, "not spread: {firsts:?}");
    // t0 was still waiting when it beat: its restart was called off, and the heartbeat
    // counts (not judged again before 21 s).
    assert!(h.events("t0").contains(&"restart_called_off".to_string()));
    assert!(
        h.stops("t0").iter().all(|s| *s >= secs(21.0)),
        "{:?}",
        h.stops("t0")
    );
}
