//! Commands on simulated time: a storm within max_parallel_commands, notify bounds, skip_if,
//! commands that fail, panic or lack resources, restarts called off while they wait, dry
//! runs, a panic in one target's handling contained.

use std::time::Duration;

use super::harness::{Behaviour, Harness, secs};
use super::{config, target};
use crate::platform::Signal;

#[test]
fn a_storm_of_1000_targets_runs_commands_in_order_of_detection_within_the_bound() {
    let mut targets = Vec::new();
    for i in 0..1000 {
        // Deadlines 1 ms apart, so detection order is the target order.
        targets.push(format!(
            "  - name: t{i:04}\n    heartbeat: /h/t{i:04}\n    timeout: {}ms\n    restart_grace: 1h\n    start: [start]\n",
            10_000 + i
        ));
    }
    let mut h = Harness::new(&format!(
        "max_parallel_commands: 8\ntargets:\n{}",
        targets.concat()
    ));
    for i in 0..1000 {
        h.behave(&format!("t{i:04}"), "start", Behaviour::Exit(0, secs(1.0)));
    }
    let mut most = 0;
    for _ in 0..2000 {
        h.advance(secs(0.1));
        most = most.max(h.d.commands.running());
        assert!(h.d.commands.running() <= 8);
    }
    assert_eq!(most, 8);
    let started = h.world.borrow().started.clone();
    assert_eq!(started.len(), 1000, "every stale target restarted once");
    let order: Vec<&str> = started.iter().map(|s| s.target.as_str()).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "commands start in order of detection");
    // Detection is never held up by the queue: every target was judged at its deadline.
    assert!(h.d.slots.iter().all(|s| s.state.restarts_total == 1));
    // 1000 one-second commands, 8 at a time: 125 s.
    let last = started.last().unwrap().at;
    assert!(
        last >= secs(10.0 + 124.0) && last <= secs(10.0 + 126.0),
        "{last:?}"
    );
}

#[test]
fn notify_commands_are_bounded_and_never_take_places_of_restarts() {
    let mut targets = Vec::new();
    for i in 0..6 {
        targets.push(target(&format!("n{i}"), "    notify: [notify]\n"));
    }
    let mut h = Harness::new(&config(&targets, "max_parallel_commands: 2\n"));
    for i in 0..6 {
        h.behave(&format!("n{i}"), "notify", Behaviour::Hang);
    }
    h.advance(secs(10.0));
    let notifies = |h: &Harness| {
        h.world
            .borrow()
            .started
            .iter()
            .filter(|s| s.what == "notify")
            .count()
    };
    assert_eq!(notifies(&h), 2, "two notify commands at a time");
    assert_eq!(h.d.notifies.waiting(), 4);
    // The restarts themselves all went through.
    assert!((0..6).all(|i| h.commands(&format!("n{i}")).iter().any(|c| c.0 == "start")));
    // Their environment says what happened.
    let first = h
        .world
        .borrow()
        .started
        .iter()
        .find(|s| s.what == "notify")
        .cloned()
        .unwrap();
    assert!(first.env.contains(&("PROTECTOR_EVENT", "restart".into())));
    assert!(first.env.contains(&("PROTECTOR_RESTARTS", "1".into())));
    // As they finish, the waiting ones run.
    h.finish_hung("n0");
    h.finish_hung("n1");
    h.advance(secs(0.1));
    assert_eq!(notifies(&h), 4);
    // Shutdown drops the waiting ones.
    h.signal(Signal::Shutdown);
    assert_eq!(h.d.notifies.waiting(), 0);
}

#[test]
fn skip_if_postpones_and_a_failing_one_restarts() {
    let mut h = Harness::new(&config(
        &[target("a", "    skip_if: [busy]\n    skip_delay: 5s\n")],
        "",
    ));
    h.behave("a", "skip_if", Behaviour::Exit(0, Duration::ZERO));
    h.advance(secs(21.0));
    let cmds = h.command_secs("a");
    assert_eq!(
        cmds,
        [("skip_if", 10.0), ("skip_if", 15.0), ("skip_if", 20.0)]
    );
    assert_eq!(h.slot("a").state.restarts_total, 0);
    h.behave("a", "skip_if", Behaviour::Exit(1, Duration::ZERO));
    h.advance(secs(5.0));
    let cmds: Vec<&str> = h.commands("a").iter().map(|c| c.0).collect();
    assert_eq!(&cmds[3..], ["skip_if", "stop", "start"]);
}

#[test]
fn commands_that_fail_to_spawn_panic_or_fail_still_complete_the_restart() {
    let mut h = Harness::new(&config(
        &[
            target("nospawn", ""),
            target("panics", ""),
            target("fails", ""),
        ],
        "",
    ));
    h.behave("nospawn", "stop", Behaviour::NoSpawn);
    h.behave("panics", "stop", Behaviour::Panic);
    h.behave("fails", "stop", Behaviour::Exit(3, secs(1.0)));
    h.advance(secs(15.0));
    for t in ["nospawn", "panics", "fails"] {
        let cmds: Vec<&str> = h.commands(t).iter().map(|c| c.0).collect();
        assert_eq!(
            cmds,
            ["stop", "start"],
            "{t}: a failed stop still leads to start"
        );
        assert_eq!(h.slot(t).failures, 1, "{t}");
        let rec = h.slot(t).last_restart.clone().unwrap();
        assert_eq!(rec.commands.len(), 2);
        assert!(!rec.commands[0].ok() && rec.commands[1].ok());
    }
}

#[test]
fn a_restart_waiting_for_a_place_is_called_off_when_the_heartbeat_comes_back() {
    let mut h = Harness::new(&config(
        &[target("busy", ""), target("waits", "    notify: [n]\n")],
        "max_parallel_commands: 1\n",
    ));
    h.behave("busy", "stop", Behaviour::Exit(0, secs(5.0)));
    h.advance(secs(11.0));
    assert!(
        h.commands("waits").iter().all(|c| c.0 == "notify"),
        "waits for busy's stop"
    );
    h.touch("waits");
    h.advance(secs(5.0));
    assert!(
        h.commands("waits").is_empty(),
        "called off: no command, no notification"
    );
    assert_eq!(h.slot("waits").state.restarts_total, 0, "not counted");
    assert!(!h.slot("waits").is_running());
    // Watched as usual: stale again a timeout after that heartbeat.
    h.advance(secs(10.0));
    assert_eq!(h.stops("waits"), [secs(21.0)]);
}

#[test]
fn a_command_short_of_resources_is_tried_again_soon_and_counts_for_nothing() {
    let mut h = Harness::new(&config(
        &[target("a", "    max_restarts: 1\n    notify: [n]\n")],
        "",
    ));
    h.behave("a", "stop", Behaviour::NoResources);
    h.advance(secs(40.0));
    let starts = h.stops("a");
    assert!(starts.len() >= 5, "tried again within seconds: {starts:?}");
    for pair in starts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= secs(1.0) && gap <= secs(17.0), "{starts:?}");
    }
    let slot = h.slot("a");
    assert!(slot.is_running(), "still restarting, not given up");
    assert_eq!((slot.state.restarts_total, slot.failures), (1, 0));
    let notified = |h: &Harness| h.commands("a").iter().filter(|c| c.0 == "notify").count();
    assert_eq!(notified(&h), 1, "one restart, one notification");
    // Resources come back: the restart completes, one restart in all.
    h.behave("a", "stop", Behaviour::Exit(0, Duration::ZERO));
    h.advance(secs(20.0));
    let slot = h.slot("a");
    assert!(!slot.is_running());
    assert_eq!(slot.state.restarts_total, 1);
    assert_eq!(
        slot.last_restart.as_ref().unwrap().commands.len(),
        2,
        "stop, then start"
    );
}

#[test]
fn a_dry_run_decides_as_usual_and_runs_nothing() {
    let mut h = Harness::with(&config(&[target("a", "    notify: [n]\n")], ""), true);
    h.advance(secs(35.0));
    assert!(h.world.borrow().started.is_empty(), "nothing is run");
    assert_eq!(
        h.slot("a").state.restarts_total,
        3,
        "but the restarts are decided"
    );
}

#[test]
fn a_panic_in_one_targets_handling_is_contained() {
    let mut h = Harness::new(&config(&[target("bad", ""), target("good", "")], ""));
    super::super::judge::PANIC_ON.with(|p| *p.borrow_mut() = Some("bad".into()));
    h.advance(secs(10.0));
    assert!(
        super::super::judge::PANIC_ON.with(|p| p.borrow().is_none()),
        "the panic happened"
    );
    assert_eq!(
        h.stops("good"),
        [secs(10.0)],
        "the other target is untouched"
    );
    assert!(
        !h.slot("bad").is_running(),
        "bad starts over rather than waiting for ever"
    );
    // bad is watched afresh (startup grace from the panic) and restarted in turn.
    h.advance(secs(10.0));
    assert_eq!(h.stops("bad"), [secs(20.0)]);
}

#[test]
fn an_observe_only_target_is_judged_and_notified_but_never_stopped_or_started() {
    let mut h = Harness::new(&config(
        &[target(
            "o",
            "    observe_only: true\n    backoff: {after: 1, max: 40s}\n    notify: [n]\n",
        )],
        "",
    ));
    h.advance(secs(45.0));
    // Judged at 10 (startup grace), then after restart_grace 10 s and a doubling backoff.
    let cmds: Vec<(&str, f64)> = h.command_secs("o");
    assert_eq!(cmds, [("notify", 10.0), ("notify", 20.0), ("notify", 40.0)]);
    let events: Vec<String> = h
        .world
        .borrow()
        .started
        .iter()
        .flat_map(|s| s.env.iter().filter(|(k, _)| *k == "PROTECTOR_EVENT"))
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(events, ["observed", "observed", "observed"]);
    let record = h.record("o");
    assert!(record.observe_only, "status says so");
    assert_eq!(
        record.consecutive_restarts, 3,
        "counted as restarts would be"
    );
    assert!(
        record.last_restart.unwrap().commands.is_empty(),
        "nothing ran"
    );
    // A heartbeat ends the streak as after real restarts (seen at the next look, at 80).
    h.advance(secs(30.0));
    h.touch("o");
    h.advance(secs(6.0));
    assert_eq!(h.record("o").consecutive_restarts, 0);
    let last = h.world.borrow().started.last().unwrap().env.clone();
    assert!(
        last.contains(&("PROTECTOR_EVENT", "recovery".to_string())),
        "{last:?}"
    );
}
