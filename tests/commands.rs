//! Stop and start commands: timeouts kill whole trees, hung commands block nobody else, and
//! daemons started by a start command survive.
#![cfg(unix)]

mod common;

use common::*;

#[test]
fn hung_stop_is_killed_with_its_grandchild_and_start_still_runs() {
    let sb = Sandbox::new();
    let p = sb.run_config(
        "targets:
  - name: svc
    heartbeat: svc.beat
    timeout: 1s
    restart_grace: 1h
    command_timeout: 1s
    shell: true
    stop: sleep 300 & echo $! > grandchild.pid; echo $$ > stop.pid; echo stop-began; sleep 300
    start: echo started > started
",
    );
    let grandchild = read_pid(&sb, "grandchild.pid");
    let stop_pid = read_pid(&sb, "stop.pid");
    wait_until(PATIENCE, "start after the hung stop", || {
        sb.path("started").exists()
    });
    let timed_out = p.wait_command_events("command_timed_out", "stop", Some("svc"), 1);
    assert_eq!(
        timed_out[0]["stdout"], "stop-began",
        "output tail is logged"
    );
    wait_until(PATIENCE, "stop command and its grandchild gone", || {
        !alive(grandchild) && !alive(stop_pid)
    });
    let started = p.wait_command_events("command_started", "start", Some("svc"), 1);
    assert!(timestamp(&started[0]) >= timestamp(&timed_out[0]));
    let took = timed_out[0]["duration_ms"].as_u64().unwrap();
    assert!((1000..10_000).contains(&took), "killed after {took} ms");
}

#[test]
fn a_hung_command_does_not_delay_another_target() {
    let sb = Sandbox::new();
    let p = sb.run_config(
        "targets:
  - name: hung
    heartbeat: hung.beat
    timeout: 500ms
    restart_grace: 1h
    command_timeout: 60s
    stop: [sh, -c, 'echo $$ > hung.pid; exec sleep 60']
    start: ['true']
  - name: quick
    heartbeat: quick.beat
    timeout: 1s
    restart_grace: 1s
    backoff: {after: 10}
    start: [sh, -c, 'echo quick >> events']
",
    );
    let hung = read_pid(&sb, "hung.pid");
    // While `hung`'s stop command runs, `quick` is restarted again and again, on time.
    let done = p.wait_events("restart_done", Some("quick"), 3);
    assert!(alive(hung), "the hung stop should still be running");
    assert!(
        p.command_events("command_started", "start", Some("hung"))
            .is_empty()
    );
    let stale = p.events("stale", Some("quick"));
    for (prev_done, next_stale) in done.iter().zip(stale.iter().skip(1)) {
        let late = timestamp(next_stale) - timestamp(prev_done) - 1.0;
        assert!(
            (-0.01..2.0).contains(&late),
            "restart judged {late:.3}s late"
        );
    }
    kill(hung);
}

#[test]
fn start_that_backgrounds_a_daemon_returns_promptly_and_the_daemon_survives() {
    let sb = Sandbox::new();
    let p = sb.run_config(
        "targets:
  - name: svc
    heartbeat: svc.beat
    timeout: 1s
    restart_grace: 1h
    command_timeout: 30s
    shell: true
    start: sleep 300 & echo $! > daemon.pid; echo launched
",
    );
    let daemon = read_pid(&sb, "daemon.pid");
    let finished = p.wait_command_events("command_finished", "start", Some("svc"), 1);
    assert_eq!(finished[0]["stdout"], "launched");
    let took = finished[0]["duration_ms"].as_u64().unwrap();
    assert!(took < 5000, "start counted as running for {took} ms");
    // "restart done" comes right after, not after the daemon (which holds the pipes) exits.
    let done = p.wait_events("restart_done", Some("svc"), 1);
    assert!(timestamp(&done[0]) - timestamp(&finished[0]) < 5.0);
    assert!(
        alive(daemon),
        "the daemon started by the start command was killed"
    );
    drop(p);
    assert!(alive(daemon), "the daemon must outlive protector, too");
    kill(daemon);
}

#[test]
fn failing_command_status_and_stderr_are_logged() {
    let sb = Sandbox::new();
    let p = sb.run_config(
        "targets:
  - name: svc
    heartbeat: svc.beat
    timeout: 500ms
    restart_grace: 1h
    stop: [sh, -c, 'echo cannot stop >&2; exit 3']
    start: [sh, -c, 'echo ok > started']
",
    );
    let failed = p.wait_command_events("command_failed", "stop", Some("svc"), 1);
    assert_eq!(failed[0]["stderr"], "cannot stop");
    assert!(failed[0]["status"].as_str().unwrap().contains('3'));
    wait_until(PATIENCE, "start after a failed stop", || {
        sb.path("started").exists()
    });
}

#[test]
fn output_is_bounded_to_a_tail() {
    let sb = Sandbox::new();
    let p = sb.run_config(
        "targets:
  - name: chatty
    heartbeat: c.beat
    timeout: 500ms
    restart_grace: 1h
    start: [sh, -c, 'i=0; while [ $i -lt 20000 ]; do echo line-$i; i=$((i+1)); done']
",
    );
    let finished = p.wait_command_events("command_finished", "start", Some("chatty"), 1);
    let out = finished[0]["stdout"].as_str().unwrap();
    assert!(out.len() <= 4096 + 3, "{} bytes logged", out.len());
    assert!(out.starts_with("..."));
    assert!(out.ends_with("line-19999"));
}
