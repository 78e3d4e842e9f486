//! Stop and start commands: timeouts kill whole trees, hung commands block nobody else, and
//! daemons started by a start command survive; dry runs, notify and skip_if.
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

/// The processes whose command line is `protector __drain-output NAME`.
fn drains_of(name: &str) -> usize {
    let wanted = format!("__drain-output\0{name}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|cmdline| String::from_utf8_lossy(cmdline).ends_with(&wanted))
        .count()
}

#[test]
fn a_daemon_that_writes_to_its_output_survives_protector_being_killed() {
    // A daemon left by a start command keeps writing to the output it inherited from the
    // command. protector killed outright (a crash, an upgrade's restart) must not take it
    // along: its next write would get SIGPIPE if protector were the pipes' only reader. The
    // loop writes a line to stdout and stderr, then counts, every 50 ms; at most 60 s.
    let sb = Sandbox::new();
    // A name of this run's own: drains of other runs may still be there.
    let name = format!("writes-after-exit-{}", std::process::id());
    let mut p = sb.run_config(&format!(
        "targets:
  - name: {name}
    heartbeat: svc.beat
    timeout: 1s
    restart_grace: 1h
    shell: true
    start: (i=0; while [ $i -lt 1200 ] && [ ! -e stop ]; do i=$((i+1)); echo out $i; echo err $i >&2; echo $i > count.new; mv count.new count; sleep 0.05; done) & echo launched
"
    ));
    let count = || {
        std::fs::read_to_string(sb.path("count"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let finished = p.wait_command_events("command_finished", "start", Some(&name), 1);
    // The command's own output is captured (the daemon's first lines may come with it).
    let stdout = finished[0]["stdout"].as_str().unwrap();
    assert!(stdout.lines().any(|l| l == "launched"), "{stdout}");
    // The command finished, so what it left holding its output is in a drain's hands now.
    p.signal("KILL");
    p.wait_exit(PATIENCE);
    let at_kill = count();
    wait_until(
        PATIENCE,
        "the daemon still writing after protector was killed",
        || count() >= at_kill + 10,
    );
    // The drain (one, for both streams) lives as long as the daemon and no longer.
    assert_eq!(drains_of(&name), 1);
    sb.touch("stop");
    wait_until(PATIENCE, "the drain gone with the daemon", || {
        drains_of(&name) == 0
    });
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

#[test]
fn a_program_that_is_not_there_is_an_error_at_start_and_when_a_reload_brings_it() {
    let sb = Sandbox::new();
    let yaml = "targets:
  - name: a
    heartbeat: a.beat
    timeout: 1h
    start: [protector-no-such-program-a]
  - name: b
    heartbeat: b.beat
    timeout: 1h
    allow_missing_programs: true
    start: [protector-no-such-program-b]
";
    let p = sb.run_config(yaml);
    let a = p.wait_events("program_missing", Some("a"), 1);
    assert_eq!(a[0]["level"], "ERROR");
    assert_eq!(a[0]["command"], "start");
    assert!(
        a[0]["message"]
            .as_str()
            .unwrap()
            .contains("`protector-no-such-program-a` is not found on PATH"),
        "{}",
        a[0]
    );
    // Allowed: a warning.
    let b = p.wait_events("program_missing", Some("b"), 1);
    assert_eq!(b[0]["level"], "WARN");
    // A reload that adds a target with a missing stop says so too; unchanged ones are not
    // said again.
    sb.write(
        "protector.yaml",
        &format!("{yaml}  - name: c\n    heartbeat: c.beat\n    timeout: 1h\n    stop: [protector-no-such-program-c]\n    start: ['true']\n"),
    );
    p.signal("HUP");
    let c = p.wait_events("program_missing", Some("c"), 1);
    assert_eq!(
        (c[0]["level"].as_str(), c[0]["command"].as_str()),
        (Some("ERROR"), Some("stop"))
    );
    p.wait_events("reload_done", None, 1);
    assert_eq!(p.events("program_missing", Some("a")).len(), 1);
}

/// A program another user put where protector runs is never what a command runs: PATH keeps
/// its absolute directories only (`.` and other relative ones are dropped, and said so), and a
/// program named by a relative path is looked for beside the config file, not in protector's
/// working directory.
#[test]
fn a_program_planted_in_the_working_directory_is_not_run() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let plant = |name: &str, text: &str| {
        let p = sb.write(name, &format!("#!/bin/sh\n{text}\n"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    // In protector's working directory (the sandbox): a planted `sh` and `restart.sh`.
    plant("sh", "echo planted-sh >> \"$(dirname \"$0\")/planted\"");
    plant(
        "restart.sh",
        "echo planted-restart >> \"$(dirname \"$0\")/planted\"",
    );
    // Beside the config file: the real script.
    std::fs::create_dir(sb.path("conf")).unwrap();
    plant(
        "conf/restart.sh",
        "echo config-dir >> \"$(dirname \"$0\")/ran\"",
    );
    sb.write(
        "conf/protector.yaml",
        "targets:\n  - name: a\n    heartbeat: a.beat\n    timeout: 300ms\n    restart_grace: 1h\n    \
         start: [sh, -c, 'echo real-sh >> ran']\n  - name: b\n    heartbeat: b.beat\n    \
         timeout: 300ms\n    restart_grace: 1h\n    start: [./restart.sh]\n",
    );
    let p = sb.spawn_env(
        &["--config", "conf/protector.yaml"],
        &[("PATH", ".:bin::/usr/bin:/bin")],
    );
    let said = p.wait_events("path_made_safe", None, 1);
    assert_eq!(said[0]["level"], "WARN");
    assert_eq!(said[0]["path"], "/usr/bin:/bin");
    p.wait_events("restart_done", Some("a"), 1);
    p.wait_events("restart_done", Some("b"), 1);
    // `sh` ran in protector's working directory (the sandbox): `ran` is written there.
    assert_eq!(sb.lines("ran"), ["real-sh"]);
    assert_eq!(sb.lines("conf/ran"), ["config-dir"]);
    assert!(
        sb.lines("planted").is_empty(),
        "a planted program ran: {:?}",
        sb.lines("planted")
    );
}

#[test]
fn dry_run_decides_but_runs_nothing() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "protector.yaml",
        &format!(
            "state_file: state.json\nmetrics_file: metrics.prom\ntargets:\n{}",
            target("svc", "    timeout: 500ms\n    restart_grace: 500ms\n    stop: [sh, -c, 'echo stop >> events']\n")
        ),
    );
    let p = sb.spawn(&["--dry-run", "--config", cfg.to_str().unwrap()]);
    let done = p.wait_events("restart_done", Some("svc"), 2);
    assert_eq!(done[1]["consecutive_restarts"], 2);
    let would = p.events("dry_run_command", Some("svc"));
    assert_eq!(would[0]["command"], "stop");
    assert_eq!(would[1]["command"], "start");
    assert_eq!(would[1]["line"], "sh -c 'echo start svc >> events'");
    assert!(sb.lines("events").is_empty(), "a dry run ran a command");
    // Nothing it decided is written down for a real run to restore, and it says so.
    let said = p.events("dry_run", None);
    assert!(
        said[0]["message"]
            .as_str()
            .unwrap()
            .contains("state and metrics files are not written")
    );
    let mut p = p;
    p.signal("TERM");
    assert_eq!(p.wait_exit(PATIENCE), Some(0));
    assert!(!sb.path("state.json").exists() && !sb.path("metrics.prom").exists());
}

#[test]
fn notify_command_receives_the_events() {
    let sb = Sandbox::new();
    let p = sb.run_config(
        "defaults:
  notify: [sh, -c, 'echo \"$PROTECTOR_EVENT $PROTECTOR_TARGET $PROTECTOR_RESTARTS $PROTECTOR_AGE_SECS\" >> notify.log']
targets:
  - name: svc
    heartbeat: svc.beat
    timeout: 1s
    restart_grace: 1s
    max_restarts: 1
    start: ['true']
",
    );
    wait_until(PATIENCE, "restart and give-up notifications", || {
        sb.lines("notify.log").len() >= 2
    });
    sb.touch("svc.beat");
    wait_until(PATIENCE, "recovery notification", || {
        sb.lines("notify.log")
            .iter()
            .any(|l| l.starts_with("recovery"))
    });
    let lines = sb.lines("notify.log");
    let fields: Vec<Vec<&str>> = lines.iter().map(|l| l.split(' ').collect()).collect();
    assert_eq!(fields[0][..3], ["restart", "svc", "1"], "{lines:?}");
    assert!(fields[0][3].parse::<u64>().unwrap() >= 1);
    assert_eq!(fields[1][..3], ["give-up", "svc", "1"], "{lines:?}");
    assert!(fields[1][3].parse::<u64>().unwrap() >= 2);
    let recovery = fields.iter().find(|f| f[0] == "recovery").unwrap();
    assert_eq!(recovery[..3], ["recovery", "svc", "1"], "{lines:?}");
    drop(p);
}

#[test]
fn skip_if_postpones_the_restart() {
    let sb = Sandbox::new();
    sb.touch("busy");
    let p = sb.run_config(&format!(
        "targets:\n{}",
        target(
            "svc",
            "    timeout: 500ms\n    restart_grace: 1h\n    skip_delay: 300ms\n    skip_if: [test, -e, busy]\n"
        )
    ));
    p.wait_events("restart_postponed", Some("svc"), 2);
    assert_eq!(starts_of(&sb, "svc"), 0);
    std::fs::remove_file(sb.path("busy")).unwrap();
    wait_until(PATIENCE, "restart once skip_if fails", || {
        starts_of(&sb, "svc") == 1
    });
    let done = p.wait_events("restart_done", Some("svc"), 1);
    assert_eq!(
        done[0]["consecutive_restarts"], 1,
        "postponements are not restarts"
    );
}
