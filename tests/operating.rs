//! Running protector as a long-lived service: reload, shutdown, the instance lock (systemd,
//! the journal and log files: tests/service_manager.rs; dry runs, notify and skip_if:
//! tests/commands.rs; the state file, `status` and metrics: tests/status.rs).
#![cfg(unix)]

mod common;

use std::time::Duration;

use common::*;
use predicates::prelude::*;

#[test]
fn reload_keeps_unchanged_targets_and_applies_changes() {
    let sb = Sandbox::new();
    let v1 = format!(
        "state_file: state.json\ntargets:\n{}{}",
        target("same", "    timeout: 500ms\n    restart_grace: 1h\n"),
        target("changed", "    timeout: 500ms\n    restart_grace: 1h\n"),
    );
    let p = sb.run_config(&v1);
    p.wait_events("restart_done", Some("same"), 1);
    p.wait_events("restart_done", Some("changed"), 1);

    let v2 = format!(
        "state_file: state.json\ntargets:\n{}{}{}",
        target("same", "    timeout: 500ms\n    restart_grace: 1h\n"),
        "  - name: changed\n    heartbeat: changed.beat\n    timeout: 500ms\n    restart_grace: 1h\n    start: [sh, -c, 'echo start changed-v2 >> events']\n",
        target("added", "    timeout: 500ms\n    restart_grace: 1h\n"),
    );
    sb.write("protector.yaml", &v2);
    p.signal("HUP");
    let reloaded = p.wait_events("reload_done", None, 1);
    assert_eq!(reloaded[0]["unchanged"], 1);
    assert_eq!(reloaded[0]["changed"], 1);
    assert_eq!(reloaded[0]["added"], 1);
    // The new target starts with its startup grace and is restarted; the changed one keeps
    // its restart count but is judged under its new settings.
    p.wait_events("restart_done", Some("added"), 1);
    wait_until(
        PATIENCE,
        "changed target restarted with its new command",
        || starts_of(&sb, "changed-v2") == 1,
    );
    let changed_done = p.wait_events("restart_done", Some("changed"), 2);
    assert_eq!(
        changed_done[1]["consecutive_restarts"], 2,
        "counters kept across the change"
    );
    // The unchanged target kept its state: still one restart, next check an hour away.
    assert_eq!(starts_of(&sb, "same"), 1);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sb.path("state.json")).unwrap()).unwrap();
    let same = state["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "same")
        .unwrap();
    assert_eq!(same["restarts_total"], 1);
    assert!(same["next_check"].as_f64().unwrap() - state["written_at"].as_f64().unwrap() > 3000.0);
}

#[test]
fn a_bad_reload_keeps_the_old_config_running() {
    let sb = Sandbox::new();
    let p = sb.run_config(&format!(
        "targets:\n{}",
        target(
            "svc",
            "    timeout: 500ms\n    restart_grace: 500ms\n    backoff: {after: 100}\n"
        )
    ));
    p.wait_events("restart_done", Some("svc"), 1);
    sb.write(
        "protector.yaml",
        "targets:\n  - name: svc\n    timeout: never\n",
    );
    p.signal("HUP");
    let failed = p.wait_events("reload_failed", None, 1);
    assert_eq!(failed[0]["level"], "ERROR");
    let problems: Vec<_> = p
        .events("config_problem", None)
        .into_iter()
        .filter(|r| {
            r["message"]
                .as_str()
                .is_some_and(|m| m.contains("protector.yaml:3:5: targets[0].timeout"))
        })
        .collect();
    assert_eq!(problems.len(), 1, "{}", p.log_text());
    // Still watching under the old config.
    let before = starts_of(&sb, "svc");
    wait_until(PATIENCE, "more restarts after the failed reload", || {
        starts_of(&sb, "svc") >= before + 2
    });
}

#[test]
fn ctrl_c_between_stop_and_start_still_starts_the_service_then_exits_0() {
    let sb = Sandbox::new();
    let mut p = sb.run_config(
        "targets:
  - name: svc
    heartbeat: svc.beat
    timeout: 500ms
    command_timeout: 30s
    stop: [sh, -c, 'touch stop-began; sleep 2; touch stop-ended']
    start: [sh, -c, 'touch started']
",
    );
    wait_until(PATIENCE, "stop command running", || {
        sb.path("stop-began").exists()
    });
    p.signal("INT");
    p.wait_events("stopping", None, 1);
    assert_eq!(p.wait_exit(PATIENCE), Some(0));
    assert!(
        sb.path("stop-ended").exists(),
        "exited before the stop command finished"
    );
    assert!(
        sb.path("started").exists(),
        "the stopped service was left down"
    );
    assert_eq!(p.events("start_before_exit", Some("svc")).len(), 1);
    p.wait_events("stopped", None, 1);
}

#[test]
fn a_second_signal_exits_at_once() {
    let sb = Sandbox::new();
    let mut p = sb.run_config(
        "targets:
  - name: svc
    heartbeat: svc.beat
    timeout: 500ms
    command_timeout: 60s
    stop: [sh, -c, 'echo $$ > stop.pid; exec sleep 60']
    start: [touch, started]
",
    );
    let stop_pid = read_pid(&sb, "stop.pid");
    p.signal("TERM");
    p.wait_events("stopping", None, 1);
    p.signal("INT");
    assert_eq!(p.wait_exit(Duration::from_secs(10)), Some(1));
    kill(stop_pid);
    assert!(
        !sb.path("started").exists(),
        "a second signal starts nothing"
    );
}

/// A second protector on the sandbox's config exits 1 naming the first's pid.
fn a_second_is_refused(sb: &Sandbox, first: u32) {
    protector_cmd(sb.dir.path())
        .args(["--config", "protector.yaml"])
        .timeout(Duration::from_secs(20))
        .assert()
        .code(1)
        .stderr(predicate::str::contains(format!(
            "another protector (pid {first}) is already running"
        )));
}

#[test]
fn a_second_instance_is_refused_with_the_pid_and_a_crashed_ones_lock_does_not_block() {
    let sb = Sandbox::new();
    let cfg = format!("targets:\n{}", target("svc", "    timeout: 1h\n"));
    let mut first = sb.run_config(&cfg);
    first.wait_events("started", None, 1);
    a_second_is_refused(&sb, first.pid());

    first.signal("KILL");
    first.wait_exit(PATIENCE);
    let second = sb.spawn(&["--config", "protector.yaml"]);
    second.wait_events("started", None, 1);
}

/// A lock file and a control socket removed while protector runs (by hand, by a cleaner of
/// the runtime directory) are made again: a second protector is still refused, and operators'
/// requests still reach the first.
#[cfg(unix)]
#[test]
fn a_removed_lock_file_and_control_socket_are_made_again() {
    let sb = Sandbox::new();
    sb.touch("svc.beat");
    let (first, cfg) = start_with_state(
        &sb,
        &format!("targets:\n{}", target("svc", "    timeout: 1h\n")),
    );
    let lock = sb.path("state.json.lock");
    let socket = control_endpoint(&sb);
    std::fs::remove_file(&lock).unwrap();
    std::fs::remove_file(&socket).unwrap();
    first.wait_events("lock_file_restored", None, 1);
    first.wait_events("control_socket_restored", None, 1);
    assert!(lock.exists() && socket.exists());
    // The replaced socket's accepting thread is gone: one waits for clients, as before.
    #[cfg(target_os = "linux")]
    wait_until(PATIENCE, "one thread accepting clients", || {
        let names = std::fs::read_dir(format!("/proc/{}/task", first.pid()))
            .unwrap()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok());
        names.filter(|n| n.trim() == "control").count() == 1
    });
    a_second_is_refused(&sb, first.pid());
    let (code, out, err) = ctl(&sb, &cfg, &["pause", "svc", "--for", "1m"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = ctl(&sb, &cfg, &["status"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("protector is running"), "{out}");
    assert!(out.contains("svc     paused"), "{out}");
}

#[test]
fn a_removed_targets_running_command_finishes_and_is_logged() {
    let sb = Sandbox::new();
    let p = sb.run_config(&format!(
        "targets:\n{}{}",
        "  - name: going\n    heartbeat: going.beat\n    timeout: 500ms\n    command_timeout: 30s\n    stop: [sh, -c, 'touch stop-began; sleep 1; echo bye']\n    start: [sh, -c, 'touch started']\n",
        target("staying", "    timeout: 1h\n")
    ));
    wait_until(PATIENCE, "stop command running", || {
        sb.path("stop-began").exists()
    });
    sb.write(
        "protector.yaml",
        &format!("targets:\n{}", target("staying", "    timeout: 1h\n")),
    );
    p.signal("HUP");
    p.wait_events("target_removed", Some("going"), 1);
    let finished = p.wait_command_events("command_finished", "stop", Some("going"), 1);
    assert_eq!(finished[0]["stdout"], "bye");
    assert!(
        !sb.path("started").exists(),
        "a removed target was restarted"
    );
}

#[test]
fn a_heartbeat_whose_directory_is_missing_is_warned_about_at_start_up_and_reload() {
    let sb = Sandbox::new();
    let one = |name: &str, heartbeat: &str| {
        format!(
            "  - name: {name}\n    heartbeat: {heartbeat}\n    timeout: 1h\n    start: 'true'\n"
        )
    };
    let p = sb.run_config(&format!(
        "targets:\n{}{}",
        one("here", "here.beat"),
        one("nodir", "absent/nodir.beat")
    ));
    p.wait_events("started", None, 1);
    let warned = p.events("heartbeat_dir_missing", None);
    assert_eq!(warned.len(), 1, "{}", p.log_text());
    assert_eq!(warned[0]["target"], "nodir");
    assert_eq!(warned[0]["level"], "WARN");
    assert!(
        warned[0]["directory"]
            .as_str()
            .is_some_and(|d| d.ends_with("absent")),
        "{}",
        warned[0]
    );
    // A reload adding another such target names it; the unchanged one is not repeated.
    sb.write(
        "protector.yaml",
        &format!(
            "targets:\n{}{}{}",
            one("here", "here.beat"),
            one("nodir", "absent/nodir.beat"),
            one("other", "gone/other.beat")
        ),
    );
    p.signal("HUP");
    p.wait_events("watching", Some("other"), 1);
    let warned = p.events("heartbeat_dir_missing", None);
    assert_eq!(warned.len(), 2, "{}", p.log_text());
    assert_eq!(warned[1]["target"], "other");
}

/// Whether process `pid` catches signal `sig` (its SigCgt mask in /proc).
fn catches(pid: u32, sig: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (sig - 1)) != 0)
}

#[test]
fn a_sighup_during_start_up_is_applied_once_start_up_completes() {
    let sb = Sandbox::new();
    // A config large enough that reading it takes a while.
    let mut yaml = String::from("state_file: state.json\ntargets:\n");
    for i in 0..20_000 {
        yaml.push_str(&format!(
            "  - name: t{i}\n    heartbeat: t{i}.beat\n    timeout: 1h\n    start: 'true'\n"
        ));
    }
    let p = sb.run_config(&yaml);
    const SIGHUP: u32 = 1;
    wait_until(PATIENCE, "protector to catch SIGHUP", || {
        catches(p.pid(), SIGHUP)
    });
    // Still reading the config: the instance lock is taken only after that.
    assert!(
        !sb.path("state.json.lock").exists(),
        "SIGHUP is caught only after the config was read"
    );
    p.signal("HUP");
    p.wait_events("started", None, 1);
    let done = p.wait_events("reload_done", None, 1);
    assert_eq!(done[0]["unchanged"], 20_000);
    let mut p = p;
    assert!(p.child_alive());
}
