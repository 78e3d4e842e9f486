//! Running protector as a long-lived service: reload, shutdown, the instance lock, systemd
//! notifications, dry runs, notify and skip_if (the state file, `status` and metrics:
//! tests/status.rs).
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
fn systemd_notifications_arrive_on_the_socket() {
    use std::os::unix::net::UnixDatagram;
    let sb = Sandbox::new();
    let sock_path = sb.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    sb.write(
        "protector.yaml",
        "targets:
  - name: svc
    heartbeat: svc.beat
    timeout: 500ms
    restart_grace: 1h
    start: [sh, -c, 'echo ${NOTIFY_SOCKET:-unset} ${WATCHDOG_USEC:-unset} > env.out']
",
    );
    let mut child = std::process::Command::new(bin())
        .args(["--config", "protector.yaml"])
        .current_dir(sb.dir.path())
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "400000")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let recv = || {
        let mut buf = [0u8; 256];
        let n = sock
            .recv(&mut buf)
            .expect("a notification before the deadline");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    assert_eq!(recv(), "READY=1\n");
    let mut watchdogs = 0;
    while watchdogs < 3 {
        let msg = recv();
        assert_eq!(msg, "WATCHDOG=1\n");
        watchdogs += 1;
    }
    wait_until(PATIENCE, "the start command", || {
        !sb.lines("env.out").is_empty()
    });
    assert_eq!(
        sb.lines("env.out"),
        ["unset unset"],
        "systemd variables leaked to a command"
    );

    let pid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &String| m == "READY=1\n") {
        let m = recv();
        if m != "WATCHDOG=1\n" {
            seen.push(m);
        }
    }
    assert!(
        seen[0].starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{seen:?}"
    );
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    loop {
        let m = recv();
        if m != "WATCHDOG=1\n" {
            assert_eq!(m, "STOPPING=1\n");
            break;
        }
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
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

#[test]
fn log_file_gets_the_log() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "protector.yaml",
        &format!("targets:\n{}", target("svc", "    timeout: 1h\n")),
    );
    let log = sb.path("logs/protector.log");
    std::fs::create_dir(sb.path("logs")).unwrap();
    let p = sb.spawn(&[
        "--log-file",
        log.to_str().unwrap(),
        "--no-stderr",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    let mut text = String::new();
    wait_until(PATIENCE, "a dated log file", || {
        text = std::fs::read_dir(sb.path("logs"))
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("protector.log.")
            })
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect();
        text.contains("protector is running")
    });
    assert!(
        p.events("started", None).is_empty(),
        "--no-stderr still logged to stderr"
    );
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

/// Under systemd, standard error is the journal (JOURNAL_STREAM names it): each record begins
/// with its syslog priority and carries no timestamp of its own. Here standard error is a
/// file that JOURNAL_STREAM names, as systemd would name its stream; with the variable naming
/// another stream, records are as usual.
#[test]
fn records_to_the_journal_carry_their_priority_and_no_timestamp() {
    use std::os::unix::fs::MetadataExt;
    for names_it in [true, false] {
        let sb = Sandbox::new();
        let cfg = sb.write(
            "protector.yaml",
            "targets:\n  - name: svc\n    heartbeat: missing-dir/svc.beat\n    timeout: 1h\n    start: ['true']\n",
        );
        let err_path = sb.path("stderr");
        let err = std::fs::File::create(&err_path).unwrap();
        let meta = err.metadata().unwrap();
        let stream = format!("{}:{}", meta.dev(), meta.ino() + u64::from(!names_it));
        let mut child = std::process::Command::new(bin())
            .args(["--config", cfg.to_str().unwrap()])
            .env("JOURNAL_STREAM", &stream)
            .current_dir(sb.path(""))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        let mut text = String::new();
        wait_until(
            PATIENCE,
            "the warning about the heartbeat's directory and the start record",
            || {
                text = std::fs::read_to_string(&err_path).unwrap();
                text.contains("heartbeat_dir_missing") && text.contains("\"started\"")
            },
        );
        let _ = child.kill();
        let _ = child.wait();
        let warning = text
            .lines()
            .find(|l| l.contains("heartbeat_dir_missing"))
            .unwrap();
        let started = text.lines().find(|l| l.contains("\"started\"")).unwrap();
        if names_it {
            assert!(warning.starts_with("<4>WARN the heartbeat"), "{warning}");
            assert!(started.starts_with("<6>INFO "), "{started}");
        } else {
            assert!(
                warning.starts_with(|c: char| c.is_ascii_digit()) && warning.contains(" WARN "),
                "a timestamp first, no priority: {warning}"
            );
        }
    }
}
