//! Operators' requests on simulated time: a pause holds off restarts and ends by itself, a
//! reset revives a given-up target, a restart asked for runs at once, is never called off by a
//! heartbeat and is refused while one runs; pauses survive a reload.

use std::sync::mpsc;

use super::harness::{Behaviour, Harness, secs};
use super::{config, target};
use crate::control::{Reply, Request, Verb};
use crate::daemon::Msg;
use crate::state::TargetStatus;

fn ask(
    h: &mut Harness,
    command: Verb,
    names: &[&str],
    for_secs: Option<f64>,
) -> mpsc::Receiver<Reply> {
    let (reply, replies) = mpsc::channel();
    let req = Request {
        protocol: crate::control::PROTOCOL,
        command,
        targets: names.iter().map(|n| n.to_string()).collect(),
        all: false,
        for_secs,
        until_resumed: for_secs == Some(f64::INFINITY),
        reason: Some("maintenance".into()),
    };
    h.exit = h.d.handle(Msg::Control { req, reply });
    replies
}

/// The replies given so far (all of them once the loop let go of the channel).
fn answers(rx: &mpsc::Receiver<Reply>) -> Vec<String> {
    rx.try_iter()
        .map(|r| match r {
            Reply::Error(e) => format!("error: {e}"),
            Reply::Pending(n) => format!("{n}: pending"),
            Reply::Target(t) => format!(
                "{}: {} {}",
                t.name,
                if t.ok { "ok" } else { "FAILED" },
                t.message
            ),
            Reply::Message { ok, message } => format!("{ok}: {message}"),
        })
        .collect()
}

#[test]
fn a_pause_holds_off_restarts_and_ends_by_itself() {
    let mut h = Harness::new(&config(&[target("a", ""), target("b", "")], ""));
    let rx = ask(&mut h, Verb::Pause, &["a"], Some(30.0));
    assert_eq!(answers(&rx), ["a: ok paused for 30s: maintenance"]);
    assert_eq!(h.slot("a").status(), TargetStatus::Paused);
    h.advance(secs(29.0));
    assert!(h.stops("a").is_empty(), "paused: never restarted");
    assert_eq!(
        h.stops("b"),
        [secs(10.0), secs(20.0)],
        "the other target goes on"
    );
    // At 30 s the pause ends; the heartbeat is stale, so it gets startup_grace (10 s).
    h.advance(secs(2.0));
    assert_eq!(h.slot("a").status(), TargetStatus::Watching);
    h.advance(secs(10.0));
    assert_eq!(h.stops("a"), [secs(40.0)]);
}

#[test]
fn a_pause_until_resumed_has_no_end_and_is_said_once_a_day() {
    let mut h = Harness::new(&config(&[target("a", "")], ""));
    let rx = ask(&mut h, Verb::Pause, &["a"], Some(f64::INFINITY));
    assert_eq!(answers(&rx), ["a: ok paused until resumed: maintenance"]);
    h.advance(secs(1.5 * 86_400.0));
    // A reload that changes the target keeps the pause as it was: with no end.
    let changed = config(&[target("a", "    restart_grace: 20s\n")], "");
    h.d.apply(super::parse(&changed), false);
    h.advance(secs(2.0 * 86_400.0));
    assert!(h.stops("a").is_empty(), "never restarted while paused");
    assert_eq!(h.slot("a").status(), TargetStatus::Paused);
    let said = |h: &Harness| {
        h.events("a")
            .iter()
            .filter(|e| *e == "still_paused")
            .count()
    };
    assert_eq!(said(&h), 3, "once a day");
    // What the state file keeps: a pause with no end, its next reminder in paused_until.
    let rec = h.record("a");
    assert!(rec.pause_until_resumed && rec.paused_until.is_some());
    // Resumed: watched again (the heartbeat is long stale: startup_grace, then a restart).
    let rx = ask(&mut h, Verb::Resume, &["a"], None);
    assert_eq!(answers(&rx), ["a: ok watched again; next check in 10s"]);
    let resumed = h.now();
    h.advance(secs(11.0));
    assert_eq!(h.stops("a"), [resumed + secs(10.0)]);
    assert!(!h.record("a").pause_until_resumed);
}

#[test]
fn a_resumed_target_with_a_fresh_heartbeat_is_judged_from_it() {
    let mut h = Harness::new(&config(&[target("a", "")], ""));
    ask(&mut h, Verb::Pause, &["a"], None);
    h.advance(secs(100.0));
    h.touch("a");
    h.advance(secs(5.0));
    let rx = ask(&mut h, Verb::Resume, &["a"], None);
    assert_eq!(answers(&rx), ["a: ok watched again; next check in 5s"]);
    h.advance(secs(6.0));
    assert_eq!(
        h.stops("a"),
        [secs(110.0)],
        "one timeout after the heartbeat"
    );
    let rx = ask(&mut h, Verb::Resume, &["a"], None);
    assert_eq!(answers(&rx), ["a: ok was not paused"]);
}

#[test]
fn reset_revives_a_given_up_target_at_once() {
    let mut h = Harness::new(&config(&[target("a", "    max_restarts: 1\n")], ""));
    h.advance(secs(100.0));
    assert_eq!(h.slot("a").status(), TargetStatus::GivenUp);
    assert_eq!(h.stops("a").len(), 1);
    let rx = ask(&mut h, Verb::Reset, &["a"], None);
    assert_eq!(
        answers(&rx),
        ["a: ok reset (was given up): backoff and consecutive restarts cleared; judged now"]
    );
    h.advance(secs(1.0));
    assert_eq!(h.stops("a"), [secs(10.0), secs(100.0)], "restarted at once");
}

#[test]
fn an_asked_restart_runs_now_is_refused_while_running_and_reports_its_outcome() {
    let mut h = Harness::new(&config(&[target("a", "")], ""));
    h.touch("a");
    h.behave("a", "start", Behaviour::Exit(3, secs(2.0)));
    h.advance(secs(1.0));
    let first = ask(&mut h, Verb::Restart, &["a"], None);
    // A heartbeat now does not call it off (it is not a judgement).
    h.touch("a");
    let second = ask(&mut h, Verb::Restart, &["a"], None);
    assert_eq!(
        answers(&second),
        [
            "a: FAILED a restart of this target is already under way; not starting another (see protector status)"
        ]
    );
    h.advance(secs(5.0));
    assert_eq!(h.stops("a"), [secs(1.0)]);
    let first = answers(&first);
    assert_eq!(first[0], "a: pending");
    // "exit status: 3" on Unix, "exit code: 3" on Windows.
    assert!(
        first[1].starts_with("a: FAILED restart failed: the start command ended with exit ")
            && first[1].ends_with(": 3"),
        "{first:?}"
    );
    assert_eq!(
        h.slot("a").state.consecutive,
        0,
        "an asked restart is not a consecutive one"
    );
}

#[test]
fn names_are_checked_and_pauses_survive_a_reload() {
    let yaml = config(&[target("a", ""), target("b", "    enabled: false\n")], "");
    let mut h = Harness::new(&yaml);
    let rx = ask(&mut h, Verb::Pause, &["zz"], None);
    assert_eq!(answers(&rx), [r#"error: no target named "zz"; known: a"#]);
    let rx = ask(&mut h, Verb::Pause, &["b"], None);
    assert_eq!(
        answers(&rx),
        [r#"error: target "b" is disabled in the config (enabled: false); known: a"#]
    );
    let rx = ask(&mut h, Verb::Pause, &[], None);
    assert_eq!(
        answers(&rx),
        ["error: name at least one target (or all); known: a"]
    );
    ask(&mut h, Verb::Pause, &["a"], Some(600.0));
    // A reload that changes the target: it starts timing afresh, still paused.
    let changed = config(&[target("a", "    restart_grace: 20s\n")], "");
    h.d.apply(super::parse(&changed), false);
    assert_eq!(h.slot("a").status(), TargetStatus::Paused);
    h.advance(secs(500.0));
    assert!(h.stops("a").is_empty());
}

#[test]
fn an_asked_restart_waiting_for_a_place_is_never_called_off() {
    let top = "max_parallel_commands: 1\n";
    let mut h = Harness::new(&config(&[target("a", ""), target("b", "")], top));
    h.touch("a");
    h.touch("b");
    h.behave("b", "stop", Behaviour::Exit(0, secs(5.0)));
    ask(&mut h, Verb::Restart, &["b"], None);
    // b's stop holds the one place; a's restart waits for it, and a heartbeat comes meanwhile.
    let a = ask(&mut h, Verb::Restart, &["a"], None);
    h.advance(secs(1.0));
    h.touch("a");
    h.advance(secs(9.0));
    assert_eq!(
        h.stops("a"),
        [secs(5.0)],
        "run once b's stop gave the place back"
    );
    assert_eq!(answers(&a), ["a: pending", "a: ok restarted"]);
}

#[test]
fn whoever_waits_for_a_restart_hears_when_its_target_is_removed() {
    let mut h = Harness::new(&config(&[target("a", ""), target("b", "")], ""));
    h.behave("b", "stop", Behaviour::Exit(0, secs(5.0)));
    let b = ask(&mut h, Verb::Restart, &["b"], None);
    h.advance(secs(1.0));
    h.d.apply(super::parse(&config(&[target("a", "")], "")), false);
    assert_eq!(
        answers(&b),
        [
            "b: pending",
            "b: FAILED the target was removed from the config by a reload before its restart ended"
        ]
    );
}

#[test]
fn a_restart_asked_of_an_observe_only_target_is_refused() {
    let mut h = Harness::new(&config(&[target("o", "    observe_only: true\n")], ""));
    h.touch("o");
    let asked = ask(&mut h, Verb::Restart, &["o"], None);
    assert_eq!(
        answers(&asked),
        [
            "o: FAILED observe only (observe_only: true): protector never runs its stop or start; restart the service yourself"
        ]
    );
    h.advance(secs(5.0));
    assert!(h.commands("o").is_empty());
}
