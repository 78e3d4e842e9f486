//! Staleness and restarts, end to end: the real binary, real heartbeat files, real commands.
//! The timing of decisions (grace, backoff, max_restarts, max_parallel_commands) is tested
//! in-process on simulated time: src/daemon/tests.
#![cfg(unix)]

mod common;

use std::time::Duration;

use common::*;

/// A target whose commands append "stop <time>" / "start <time>" to `events`.
fn target(name: &str, extra: &str) -> String {
    format!(
        r#"
  - name: {name}
    heartbeat: {name}.beat
    shell: true
    stop: echo "stop $(date +%s.%N) $PROTECTOR_TARGET" >> events
    start: echo "start $(date +%s.%N) $PROTECTOR_TARGET" >> events
{extra}"#
    )
}

#[test]
fn stale_heartbeat_runs_stop_then_start() {
    let sb = Sandbox::new();
    sb.touch("svc.beat");
    let p = sb.run_config(&format!(
        "targets:{}",
        target("svc", "    timeout: 1s\n    restart_grace: 30s\n")
    ));
    wait_until(PATIENCE, "stop and start", || sb.lines("events").len() >= 2);
    let lines = sb.lines("events");
    assert!(
        lines[0].starts_with("stop ") && lines[0].ends_with(" svc"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("start ") && lines[1].ends_with(" svc"),
        "{lines:?}"
    );
    let stale = p.wait_events("stale", Some("svc"), 1);
    assert_eq!(stale[0]["timeout_secs"], 1.0);
    assert_eq!(stale[0]["level"], "WARN");
    p.wait_events("restart_done", Some("svc"), 1);
    assert_eq!(
        sb.lines("events").len(),
        2,
        "one restart only within the grace"
    );
}

#[test]
fn commands_get_target_heartbeat_and_age_in_their_environment() {
    let sb = Sandbox::new();
    let _p = sb.run_config(
        "targets:
  - name: env-check
    heartbeat: env.beat
    timeout: 1s
    restart_grace: 1h
    start: [sh, -c, 'echo \"$PROTECTOR_TARGET|$PROTECTOR_HEARTBEAT|$PROTECTOR_AGE_SECS\" > env.out']
",
    );
    wait_until(PATIENCE, "env.out", || !sb.lines("env.out").is_empty());
    let line = &sb.lines("env.out")[0];
    let parts: Vec<&str> = line.split('|').collect();
    assert_eq!(parts[0], "env-check");
    assert_eq!(parts[1], sb.path("env.beat").to_str().unwrap());
    assert!(parts[2].parse::<u64>().unwrap() >= 1, "{line}");
}

#[test]
fn per_os_override_is_used_when_running() {
    let sb = Sandbox::new();
    let _p = sb.run_config(
        "targets:
  - name: svc
    heartbeat: svc.beat
    timeout: 1s
    restart_grace: 1h
    start: [sh, -c, 'echo generic >> events']
    os:
      linux: {start: [sh, -c, 'echo linux >> events']}
      macos: {start: [sh, -c, 'echo macos >> events']}
      unix:  {start: [sh, -c, 'echo unix >> events']}
      windows: {start: 'cmd /C echo windows'}
",
    );
    wait_until(PATIENCE, "a start", || !sb.lines("events").is_empty());
    let expected = if cfg!(target_os = "macos") {
        "macos"
    } else if cfg!(target_os = "linux") {
        "linux"
    } else {
        "unix"
    };
    assert_eq!(sb.lines("events"), [expected]);
}

#[test]
fn a_command_that_cannot_be_spawned_is_logged_and_retried() {
    let sb = Sandbox::new();
    let p = sb.run_config(
        "targets:
  - name: broken
    heartbeat: b.beat
    timeout: 500ms
    restart_grace: 500ms
    start: /nonexistent/protector-test-start --now
",
    );
    let failed = p.wait_command_events("command_not_run", "start", Some("broken"), 2);
    let reason = failed[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("/nonexistent/protector-test-start"),
        "{reason}"
    );
    assert!(reason.to_lowercase().contains("no such file"), "{reason}");
}

#[test]
fn a_restart_whose_start_command_fails_is_a_failed_restart() {
    let sb = Sandbox::new();
    let p = sb.run_config(
        "state_file: state.json
metrics_file: metrics.prom
targets:
  - name: exits
    heartbeat: e.beat
    timeout: 300ms
    restart_grace: 300ms
    max_restarts: 1
    start: [sh, -c, 'exit 3']
  - name: missing
    heartbeat: m.beat
    timeout: 300ms
    restart_grace: 300ms
    max_restarts: 1
    start: /nonexistent/protector-test-start
  - name: slow
    heartbeat: s.beat
    timeout: 300ms
    restart_grace: 300ms
    max_restarts: 1
    command_timeout: 300ms
    start: [sleep, '60']
",
    );
    for (name, why) in [
        ("exits", "ended with exit status: 3"),
        ("missing", "could not run: cannot start"),
        ("slow", "timed out and was killed"),
    ] {
        let failed = p.wait_events("restart_failed", Some(name), 1);
        assert_eq!(failed[0]["level"], "ERROR");
        let reason = failed[0]["reason"].as_str().unwrap();
        assert!(reason.starts_with(why), "{name}: {reason}");
        assert!(p.events("restart_done", Some(name)).is_empty());
    }
    wait_until(
        PATIENCE,
        "the failures in the state and metrics files",
        || {
            let state = std::fs::read_to_string(sb.path("state.json")).unwrap_or_default();
            let metrics = std::fs::read_to_string(sb.path("metrics.prom")).unwrap_or_default();
            state.matches("\"restarts_failed_total\":1").count() == 3
                && metrics.contains("protector_restarts_failed_total{target=\"slow\"} 1")
        },
    );
}

#[test]
fn legacy_positional_form_runs_commands_through_the_shell() {
    let sb = Sandbox::new();
    let beat = sb.path("htrd_minion_alived");
    std::fs::write(&beat, "x").unwrap();
    let p = sb.spawn(&[
        beat.to_str().unwrap(),
        "echo stop-$PROTECTOR_TARGET >> events",
        "echo start >> events && echo started > started",
        "1",
    ]);
    wait_until(PATIENCE, "start via the shell", || {
        sb.path("started").exists()
    });
    assert_eq!(sb.lines("events"), ["stop-htrd_minion_alived", "start"]);
    let stale = p.wait_events("stale", Some("htrd_minion_alived"), 1);
    assert_eq!(stale[0]["timeout_secs"], 1.0);
}

#[test]
fn many_targets_are_watched_independently() {
    let sb = Sandbox::new();
    let mut yaml =
        String::from("defaults:\n  timeout: 1s\n  restart_grace: 1h\n  shell: true\ntargets:\n");
    for i in 0..50 {
        sb.touch(&format!("t{i}.beat"));
        yaml.push_str(&format!(
            "  - name: t{i}\n    heartbeat: t{i}.beat\n    start: echo t{i} >> events\n"
        ));
        // Those kept beating (every 200 ms) get 5 s: fresh even on a loaded machine.
        if i < 25 {
            yaml.push_str("    timeout: 5s\n");
        }
    }
    // t0..t24 keep beating; t25..t49 go stale.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let toucher = {
        let stop = stop.clone();
        let dir = sb.dir.path().to_path_buf();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for i in 0..25 {
                    std::fs::write(
                        dir.join(format!("t{i}.beat")),
                        format!("{:?}", std::time::Instant::now()),
                    )
                    .unwrap();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let p = sb.run_config(&yaml);
    p.wait_events("restart_done", None, 25);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    toucher.join().unwrap();
    let mut started = sb.lines("events");
    started.sort();
    let mut expected: Vec<String> = (25..50).map(|i| format!("t{i}")).collect();
    expected.sort();
    assert_eq!(started, expected);
}

#[test]
fn unreadable_heartbeat_is_logged_and_counts_as_no_heartbeat() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.path("dir.beat")).unwrap();
    sb.write("plain-file", "x");
    let p = sb.run_config(&format!(
        "targets:{}{}",
        target("dir", "    timeout: 500ms\n    restart_grace: 1h\n"),
        target(
            "through-file",
            "    timeout: 500ms\n    restart_grace: 1h\n"
        )
        .replace("heartbeat: through-file.beat", "heartbeat: plain-file/beat")
    ));
    let dir_err = p.wait_events("heartbeat_unreadable", Some("dir"), 1);
    assert!(
        dir_err[0]["heartbeat"]
            .as_str()
            .unwrap()
            .ends_with("dir.beat")
    );
    assert_eq!(dir_err[0]["reason"], "not a regular file (a directory)");
    let file_err = p.wait_events("heartbeat_unreadable", Some("through-file"), 1);
    assert!(
        file_err[0]["reason"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("not a directory")
    );
    p.wait_events("restart_done", Some("dir"), 1);
    p.wait_events("restart_done", Some("through-file"), 1);
    // Each reason is logged once, not on every check.
    assert_eq!(p.events("heartbeat_unreadable", Some("dir")).len(), 1);
}

#[test]
fn disabled_targets_are_not_watched() {
    let sb = Sandbox::new();
    let p = sb.run_config(&format!(
        "targets:{}{}",
        target("off", "    timeout: 500ms\n    enabled: false\n"),
        target("on", "    timeout: 500ms\n    restart_grace: 1h\n")
    ));
    p.wait_events("target_disabled", Some("off"), 1);
    p.wait_events("restart_done", Some("on"), 1);
    let lines = sb.lines("events");
    assert!(lines.iter().all(|l| l.ends_with(" on")), "{lines:?}");
}
