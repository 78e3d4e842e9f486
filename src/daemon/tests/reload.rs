//! Reloads read the config file off the loop's thread: while a slow (or hostile) file is read,
//! every target is still judged at its deadline and the systemd watchdog still fed; reloads
//! asked meanwhile are read once more after it, operators waiting for one hear how it ended,
//! and a shutdown does not wait for it (simulated time; the config file itself is real).

use std::sync::mpsc;

use super::harness::Behaviour;
use super::harness::Harness;
use super::{config, parse, secs, target};
use crate::control::Reply;
use crate::platform::Signal;

/// A harness watching a and b, with its config file (kept by the returned directory); each
/// read of the file takes 30 s.
fn slow_reader() -> (Harness, tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("protector.yaml");
    let yaml = config(&[target("a", ""), target("b", "")], "");
    std::fs::write(&file, &yaml).unwrap();
    let h = Harness::started(&yaml, |o| o.config_path = Some(file.clone()));
    h.world.borrow_mut().load_takes = secs(30.0);
    (h, dir, file)
}

fn said(h: &Harness, event: &str) -> usize {
    h.events("").iter().filter(|e| *e == event).count()
}

#[test]
fn targets_are_judged_and_the_watchdog_fed_while_a_reload_reads_the_file() {
    let (mut h, _dir, file) = slow_reader();
    let start = h.d.now().mono;
    h.d.watchdog = Some((secs(10.0), start));
    std::fs::write(&file, config(&[target("a", ""), target("c", "")], "")).unwrap();
    h.signal(Signal::Reload);
    h.advance(secs(25.0));
    // a and b are stale from 10 s: judged and restarted at 10 s and 20 s, while reading.
    assert_eq!(h.stops("a"), [secs(10.0), secs(20.0)]);
    assert_eq!(h.stops("b"), [secs(10.0), secs(20.0)]);
    let (_, next_ping) = h.d.watchdog.unwrap();
    assert!(next_ping > start + secs(20.0), "pinged at 0, 10 and 20 s");
    assert_eq!(said(&h, "reload_done"), 0);
    assert_eq!(h.d.slots.len(), 2);
    // Read at 30 s: applied then.
    h.advance(secs(6.0));
    assert_eq!(said(&h, "reload_done"), 1);
    let names: Vec<&str> = h.d.slots.iter().map(|s| s.target.name.as_str()).collect();
    assert_eq!(names, ["a", "c"]);
}

#[test]
fn reloads_asked_while_one_reads_are_read_once_more_after_it_and_answered() {
    let (mut h, _dir, file) = slow_reader();
    let (first, first_rx) = mpsc::channel();
    h.d.reload(Some(first));
    h.advance(secs(5.0));
    // The file changes after it was read: two more asks, one more read.
    std::fs::write(&file, config(&[target("a", "")], "")).unwrap();
    let (second, second_rx) = mpsc::channel();
    h.d.reload(Some(second));
    h.signal(Signal::Reload);
    assert_eq!(said(&h, "reload_queued"), 2);
    assert!(
        first_rx.try_recv().is_err(),
        "not answered before it is read"
    );
    h.advance(secs(26.0));
    match first_rx.try_recv() {
        Ok(Reply::Message { ok: true, message }) => {
            assert!(message.contains("0 added, 0 removed"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(second_rx.try_recv().is_err(), "waits for the read after");
    assert_eq!(h.d.slots.len(), 2);
    h.advance(secs(30.0));
    match second_rx.try_recv() {
        Ok(Reply::Message { ok: true, message }) => {
            assert!(message.contains("1 removed"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.d.slots.len(), 1);
    assert_eq!(said(&h, "reload_started"), 2);
    assert_eq!(said(&h, "reload_done"), 2);
}

#[test]
fn a_refused_reload_is_answered_with_its_problems_and_a_shutdown_abandons_one() {
    let (mut h, _dir, file) = slow_reader();
    std::fs::write(&file, "targets: [\n").unwrap();
    let (tx, rx) = mpsc::channel();
    h.d.reload(Some(tx));
    h.advance(secs(31.0));
    match rx.try_recv() {
        Ok(Reply::Message { ok: false, message }) => {
            assert!(
                message.contains("still running the previous config"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(said(&h, "reload_failed"), 1);
    assert_eq!(h.d.slots.len(), 2);
    // SIGTERM while a reload reads: not waited for, not applied.
    std::fs::write(&file, config(&[target("a", "")], "")).unwrap();
    let (tx, rx) = mpsc::channel();
    h.d.reload(Some(tx));
    h.signal(Signal::Shutdown);
    match rx.try_recv() {
        Ok(Reply::Error(e)) => assert!(e.contains("shutting down"), "{e}"),
        other => panic!("{other:?}"),
    }
    h.advance(secs(1.0));
    assert!(h.exit.is_some(), "ended without waiting for the read");
    assert_eq!(said(&h, "reload_abandoned"), 1);
    assert_eq!(h.d.slots.len(), 2);
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
