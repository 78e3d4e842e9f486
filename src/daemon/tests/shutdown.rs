//! Shutting down on simulated time: a signal between a stop and its start still starts the
//! service before protector exits (bounded), a second signal exits at once, and a start
//! waiting to be tried again is tried before exiting.

use super::harness::{Behaviour, Harness, secs};
use super::{config, target};
use crate::daemon::Exit;
use crate::platform::Signal;

#[test]
fn shutdown_during_a_stop_still_starts_the_service_then_exits() {
    let mut h = Harness::new(&config(&[target("a", "")], ""));
    h.behave("a", "stop", Behaviour::Exit(0, secs(3.0)));
    h.behave("a", "start", Behaviour::Exit(0, secs(2.0)));
    h.advance(secs(11.0));
    h.signal(Signal::Shutdown);
    h.advance(secs(1.0));
    assert!(h.exit.is_none(), "the stop command still runs");
    h.advance(secs(2.0));
    assert!(
        h.exit.is_none(),
        "the start command runs before protector exits"
    );
    assert!(h.events("a").contains(&"start_before_exit".to_string()));
    h.advance(secs(2.0));
    assert_eq!(h.exit, Some(Exit::Clean));
    let cmds = h.command_secs("a");
    assert_eq!(
        cmds,
        [("stop", 10.0), ("start", 13.0)],
        "the stopped service is started"
    );
}

#[test]
fn a_second_signal_during_a_stop_exits_at_once_without_the_start() {
    let mut h = Harness::new(&config(&[target("a", "")], ""));
    h.behave("a", "stop", Behaviour::Exit(0, secs(3.0)));
    h.advance(secs(11.0));
    h.signal(Signal::Shutdown);
    h.signal(Signal::Shutdown);
    assert_eq!(h.exit, Some(Exit::Immediate));
    let cmds: Vec<&str> = h.commands("a").iter().map(|c| c.0).collect();
    assert_eq!(cmds, ["stop"]);
}

#[test]
fn shutdown_starts_a_stopped_service_whose_start_waits_to_be_tried_again() {
    let mut h = Harness::new(&config(&[target("a", "")], ""));
    h.behave("a", "stop", Behaviour::Exit(0, secs(1.0)));
    h.behave("a", "start", Behaviour::NoResources);
    h.advance(secs(11.5));
    assert!(h.events("a").contains(&"command_retry".to_string()));
    // Resources are back, and the start's retry is still a second or more away.
    h.behave("a", "start", Behaviour::Exit(0, secs(1.0)));
    h.signal(Signal::Shutdown);
    h.advance(secs(0.5));
    assert!(h.exit.is_none(), "the start runs before protector exits");
    h.advance(secs(1.0));
    assert_eq!(h.exit, Some(Exit::Clean));
    let cmds = h.command_secs("a");
    assert_eq!(
        cmds.last(),
        Some(&("start", 11.5)),
        "started at the signal: {cmds:?}"
    );
}
