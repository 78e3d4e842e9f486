//! The daemon loop on simulated time (see `harness`): grace and backoff, max_restarts,
//! unreadable heartbeats, limits on what the state file restores; commands (a storm within
//! max_parallel_commands, notify bounds, skip_if, failures, retries, dry runs, panic
//! containment) in `commands`, reloads in `reload`, shutdown in `shutdown`, operators'
//! requests in `control`, the loop's promises as a property over random schedules in
//! `properties`. What
//! needs real processes, files and signals is tested with the real binary under tests/.

mod commands;
mod control;
mod depends;
mod fakes;
mod harness;
mod properties;
mod refused;
mod reload;
mod shutdown;

use std::time::Duration;

use super::Exit;
use crate::config::{self, Os};
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
    assert_eq!(
        h.slot("a").notes().last_error.as_deref(),
        Some("Permission denied")
    );
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
        slot.notes()
            .pause_reason
            .as_deref()
            .map(|r| r.chars().count()),
        Some(crate::control::MAX_REASON)
    );
}

#[test]
fn targets_due_soon_are_looked_at_with_those_due_and_never_judged_early() {
    let names = ["a", "b", "c"];
    let mut h = Harness::new(&config(&names.map(|n| target(n, "")), ""));
    // Absent at start; seen at the first look (10 s, the startup grace): due at 11, 11.5 and 11.7 s.
    for (name, at) in names.iter().zip([1.0, 1.5, 1.7]) {
        h.run_until(secs(at));
        h.touch(name);
    }
    h.run_until(secs(10.8));
    h.touch("c");
    h.advance(secs(20.0));
    let looks_at = |name: &str| -> Vec<f64> {
        let path = h.path_of(name);
        let world = h.world.borrow();
        let looks = world.looks.iter().filter(|(p, _)| *p == path);
        looks.map(|(_, at)| at.as_secs_f64()).collect()
    };
    // At 11 s, a is due: b and c, due within a second, are looked at in the same batch.
    assert_eq!(looks_at("a")[..3], [0.0, 10.0, 11.0]);
    assert_eq!(looks_at("b")[..4], [0.0, 10.0, 11.0, 11.5]);
    assert_eq!(looks_at("c")[..4], [0.0, 10.0, 11.0, 20.8]);
    // b's look at 11 s saw nothing new: it is judged at its own deadline, not before.
    assert_eq!(h.stops("a")[0], secs(11.0));
    assert_eq!(h.stops("b")[0], secs(11.5));
    // c's look at 11 s saw its heartbeat of 10.8 s: its deadline moved a whole timeout.
    assert_eq!(h.stops("c")[0], secs(20.8));
}

#[test]
fn a_target_due_soon_does_not_cut_the_look_budget_of_those_due() {
    // a (10 s timeout) is due at 10 s with b (1 s timeout: a budget of 250 ms) due soon.
    let b = "  - name: b\n    heartbeat: /h/b\n    timeout: 1s\n    startup_grace: 10500ms\n    start: [start, b]\n";
    let mut h = Harness::new(&config(&[target("a", ""), b.to_string()], ""));
    h.run_until(secs(10.0));
    let b = h.path_of("b");
    let world = h.world.borrow();
    let batch = world.looks.iter().filter(|(_, at)| *at == secs(10.0));
    assert!(batch.clone().any(|(p, _)| *p == b), "b went along");
    // A quarter of a's timeout, not of b's.
    assert_eq!(world.budgets.last(), Some(&secs(2.5)));
}
