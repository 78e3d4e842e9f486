//! The daemon loop on simulated time (see `harness`): grace and backoff, max_restarts, a storm
//! within max_parallel_commands, reloads mid-restart, notify bounds, skip_if, dry runs, panic
//! containment, limits on what the state file restores; shutdown in `shutdown`, operators'
//! requests in `control`, the loop's promises as a property over random schedules in
//! `properties`. What
//! needs real processes, files and signals is tested with the real binary under tests/.

mod control;
mod depends;
mod harness;
mod properties;
mod refused;
mod reload;
mod shutdown;

use std::time::Duration;

use super::Exit;
use crate::config::{self, Os};
use crate::platform::Signal;
use harness::{Behaviour, Harness, secs};

pub(super) fn parse(yaml: &str) -> config::Config {
    config::parse_str(yaml, "t.yaml", Os::host(), Some(&|_: &str| None))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A target named `name` with extra settings (YAML lines, 4 spaces in).
fn target(name: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    heartbeat: /h/{name}\n    timeout: 10s\n    stop: [stop, {name}]\n    start: [start, {name}]\n{extra}"
    )
}

fn config(targets: &[String], top: &str) -> String {
    format!("{top}targets:\n{}", targets.concat())
}

#[test]
fn grace_then_restarts_with_growing_backoff() {
    let mut h = Harness::new(&config(
        &[target("a", "    backoff: {after: 2, max: 40s}\n")],
        "",
    ));
    h.advance(secs(200.0));
    // startup_grace (= timeout) 10 s, then restart_grace 10 s twice, then doubling to 40 s.
    let stops: Vec<f64> = h.stops("a").iter().map(|d| d.as_secs_f64()).collect();
    assert_eq!(stops, [10.0, 20.0, 30.0, 50.0, 90.0, 130.0, 170.0]);
    let cmds: Vec<&str> = h.commands("a").iter().map(|c| c.0).collect();
    assert_eq!(&cmds[..4], ["stop", "start", "stop", "start"]);
    // A heartbeat ends the backoff: the next restart comes a whole timeout after it.
    h.touch("a");
    let touched = h.now();
    h.advance(secs(200.0));
    let after: Vec<Duration> = h.stops("a").into_iter().filter(|s| *s > touched).collect();
    // Seen at the end of the 40 s wait (210 s): dated 200 s, so stale at once.
    assert_eq!(after[0], touched + secs(10.0));
    assert_eq!(after[1] - after[0], secs(10.0), "backoff starts over");
    assert_eq!(h.slot("a").state.consecutive as usize, after.len());
}

#[test]
fn a_restarted_target_is_recovering_and_backing_off_only_once_its_wait_has_grown() {
    use crate::state::TargetStatus::{BackingOff, Recovering, Watching};
    let mut h = Harness::new(&config(
        &[target("a", "    backoff: {after: 2, max: 40s}\n")],
        "",
    ));
    // Restarts at 10 s and 20 s wait restart_grace (10 s): recovering; the third (30 s) waits
    // 20 s: backing off. A heartbeat seen at the end of that wait: watching.
    let mut seen = Vec::new();
    for at in [15.0, 25.0, 35.0] {
        h.advance(secs(at) - h.now());
        seen.push(h.slot("a").status());
    }
    assert_eq!(seen, [Recovering, Recovering, BackingOff]);
    h.advance(secs(49.0) - h.now());
    h.touch("a");
    h.advance(secs(1.5));
    assert_eq!(h.slot("a").status(), Watching);
    assert_eq!(h.stops("a").len(), 3);
}

#[test]
fn restart_grace_is_its_own_wait_after_a_restart() {
    let mut h = Harness::new(&config(
        &[target(
            "a",
            "    restart_grace: 30s\n    backoff: {after: 10}\n",
        )],
        "",
    ));
    h.behave("a", "start", Behaviour::Exit(0, secs(2.0)));
    h.advance(secs(100.0));
    // Restarted at the startup grace (10 s); each start takes 2 s; then 30 s of grace.
    assert_eq!(h.stops("a"), [secs(10.0), secs(42.0), secs(74.0)]);
}

#[test]
fn a_fresh_heartbeat_is_never_restarted_and_startup_grace_counts_from_start() {
    let mut h = Harness::new(&config(&[target("a", "    startup_grace: 30s\n")], ""));
    for _ in 0..20 {
        h.advance(secs(9.0));
        h.touch("a");
    }
    assert!(h.commands("a").is_empty());
    // Stopped touching: restarted one timeout after the last touch.
    let last = h.now();
    h.advance(secs(15.0));
    assert_eq!(h.stops("a"), [last + secs(10.0)]);
}

#[test]
fn max_restarts_gives_up_and_a_heartbeat_resumes_watching() {
    let mut h = Harness::new(&config(&[target("a", "    max_restarts: 2\n")], ""));
    h.advance(secs(300.0));
    assert_eq!(h.stops("a").len(), 2, "gives up after 2 restarts");
    assert_eq!(h.slot("a").status(), crate::state::TargetStatus::GivenUp);
    h.touch("a");
    h.advance(secs(10.5));
    assert_eq!(h.slot("a").status(), crate::state::TargetStatus::Watching);
    h.advance(secs(30.0));
    assert_eq!(
        h.stops("a").len(),
        4,
        "watched again: 2 more restarts, then it gives up again"
    );
    assert_eq!(h.slot("a").status(), crate::state::TargetStatus::GivenUp);
}

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
fn a_reload_in_the_middle_of_a_restart_lets_the_command_finish_then_applies() {
    let mut h = Harness::new(&config(&[target("a", ""), target("b", "")], ""));
    h.behave("a", "stop", Behaviour::Hang);
    h.advance(secs(10.0));
    assert_eq!(h.commands("a"), [("stop", secs(10.0))]);
    // New settings for a, b removed, c added, while a's stop hangs.
    let new = config(
        &[target("a", "    restart_grace: 50s\n"), target("c", "")],
        "",
    );
    h.d.apply(parse(&new), false);
    assert!(h.slot("a").is_running(), "a's restart goes on");
    h.advance(secs(5.0));
    h.finish_hung("a");
    h.advance(secs(1.0));
    let cmds: Vec<&str> = h.commands("a").iter().map(|c| c.0).collect();
    assert_eq!(
        cmds,
        ["stop", "start"],
        "the restart completes under the new settings"
    );
    assert_eq!(h.slot("a").target.restart_grace, secs(50.0));
    // The new grace applies: no restart of a for 50 s after the start.
    h.advance(secs(45.0));
    assert_eq!(h.stops("a").len(), 1);
    h.advance(secs(10.0));
    assert_eq!(h.stops("a").len(), 2);
    assert!(h.d.slots.iter().all(|s| s.target.name != "b"));
    assert_eq!(
        h.stops("c")[0],
        secs(20.0),
        "added at 10 s with startup_grace 10 s"
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
    super::judge::PANIC_ON.with(|p| *p.borrow_mut() = Some("bad".into()));
    h.advance(secs(10.0));
    assert!(
        super::judge::PANIC_ON.with(|p| p.borrow().is_none()),
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
fn an_unreadable_heartbeat_counts_as_none() {
    let mut h = Harness::new(&config(&[target("a", "")], ""));
    let path = h.path_of("a");
    h.touch("a");
    h.world
        .borrow_mut()
        .unreadable
        .insert(path, "Permission denied".into());
    h.advance(secs(10.5));
    assert_eq!(h.stops("a"), [secs(10.0)]);
    assert_eq!(h.slot("a").last_error.as_deref(), Some("Permission denied"));
}

#[test]
fn absurd_values_in_the_state_file_cannot_stop_a_target_being_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    std::fs::write(
        &state,
        r#"{"format": "protector-state", "version": 1, "pid": 1, "protector_version": "0",
            "started_at": 0, "written_at": 0, "config": null, "lock_file": null,
            "targets": [{"name": "a", "heartbeat": "/h/a", "state": "backing off",
            "last_heartbeat": 1e300, "next_check": 1e300,
            "restarts_total": 18446744073709551615, "consecutive_restarts": 4294967295,
            "backoff_secs": 1e300, "command_failures_total": 18446744073709551615,
            "command_timeouts_total": 18446744073709551615, "last_restart": null}]}"#,
    )
    .unwrap();
    let top = format!("state_file: {}\n", serde_json::to_string(&state).unwrap());
    let mut h = Harness::new(&config(&[target("a", "    backoff: {max: 1h}\n")], &top));
    h.behave("a", "stop", Behaviour::Exit(1, Duration::ZERO));
    h.advance(secs(7300.0));
    // The pending backoff is honoured only up to backoff.max; restarts go on, counts saturate.
    assert_eq!(h.stops("a"), [secs(3600.0), secs(7200.0)]);
    let slot = h.slot("a");
    assert_eq!(slot.state.restarts_total, u64::MAX);
    assert_eq!(slot.failures, u64::MAX);
}

#[test]
fn a_pause_restored_from_the_state_file_lasts_at_most_what_can_be_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let reason = "x".repeat(10_000);
    std::fs::write(
        &state,
        format!(
            r#"{{"format": "protector-state", "version": 1, "pid": 1, "protector_version": "0",
            "started_at": 0, "written_at": 0, "config": null, "lock_file": null,
            "targets": [{{"name": "a", "heartbeat": "/h/a", "state": "paused",
            "last_heartbeat": null, "next_check": null, "restarts_total": 0,
            "consecutive_restarts": 0, "backoff_secs": 0, "command_failures_total": 0,
            "command_timeouts_total": 0, "last_restart": null,
            "paused_until": 1e300, "pause_reason": "{reason}"}}]}}"#
        ),
    )
    .unwrap();
    let top = format!(
        "state_file: {}
",
        serde_json::to_string(&state).unwrap()
    );
    let h = Harness::new(&config(&[target("a", "")], &top));
    let slot = h.slot("a");
    assert_eq!(slot.status(), crate::state::TargetStatus::Paused);
    let left = slot.state.paused_until.unwrap() - h.d.now().mono;
    assert_eq!(left, crate::control::MAX_PAUSE);
    assert_eq!(
        slot.pause_reason.as_deref().map(|r| r.chars().count()),
        Some(crate::control::MAX_REASON)
    );
}
