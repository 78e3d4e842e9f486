//! Faults while running: what happens to heartbeat files, to commands and to protector's own
//! files, and a bug in the handling of one target. Each test asserts what an operator would
//! want: the service stays protected, the fault is logged, nothing else is harmed.
#![cfg(unix)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use common::*;

/// One target `svc` with a 1 s timeout whose start command appends "start" to `events`.
fn svc(heartbeat: &str, extra: &str) -> String {
    format!(
        "targets:\n  - name: svc\n    heartbeat: {heartbeat}\n    timeout: 1s\n    restart_grace: 1s\n    shell: true\n    start: echo start >> events\n{extra}"
    )
}

#[test]
fn heartbeat_directory_removed_and_recreated() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.path("beats")).unwrap();
    let _toucher = Toucher::new(sb.path("beats/svc.beat"));
    // A 3 s timeout: touched every 200 ms, the heartbeat stays fresh on a loaded machine.
    let p = sb.run_config(&svc("beats/svc.beat", "").replace("timeout: 1s", "timeout: 3s"));
    p.wait_events("heartbeat_seen", Some("svc"), 2);
    assert!(sb.lines("events").is_empty());

    std::fs::remove_dir_all(sb.path("beats")).unwrap();
    wait_until(PATIENCE, "a restart", || !sb.lines("events").is_empty());
    p.wait_events("stale", Some("svc"), 1);

    std::fs::create_dir(sb.path("beats")).unwrap();
    p.wait_events("heartbeat_back", Some("svc"), 1);
}

#[test]
fn heartbeat_replaced_by_a_directory_counts_as_none_and_says_why() {
    let sb = Sandbox::new();
    sb.touch("svc.beat");
    let p = sb.run_config(&svc("svc.beat", ""));
    std::fs::remove_file(sb.path("svc.beat")).unwrap();
    std::fs::create_dir(sb.path("svc.beat")).unwrap();
    let why = p.wait_events("heartbeat_unreadable", Some("svc"), 1);
    assert!(
        why[0]["reason"].as_str().unwrap().contains("directory"),
        "{why:?}"
    );
    wait_until(PATIENCE, "a restart", || !sb.lines("events").is_empty());
}

#[test]
fn a_symlinked_heartbeat_follows_its_target() {
    let sb = Sandbox::new();
    let toucher = Toucher::new(sb.path("real.beat"));
    wait_until(PATIENCE, "the real file", || sb.path("real.beat").exists());
    std::os::unix::fs::symlink("real.beat", sb.path("svc.beat")).unwrap();
    // A 3 s timeout: touched every 200 ms, the heartbeat stays fresh on a loaded machine.
    let p = sb.run_config(&svc("svc.beat", "").replace("timeout: 1s", "timeout: 3s"));
    // Fresh through the link for three timeouts.
    p.wait_events("heartbeat_seen", Some("svc"), 3);
    assert!(sb.lines("events").is_empty(), "{}", p.log_text());
    // The link's target stops changing, then disappears: a dangling link is no heartbeat.
    drop(toucher);
    std::fs::remove_file(sb.path("real.beat")).unwrap();
    wait_until(PATIENCE, "a restart", || !sb.lines("events").is_empty());
}

#[test]
fn an_mtime_in_the_future_does_not_postpone_a_restart() {
    let sb = Sandbox::new();
    sb.touch("svc.beat");
    let hour_ahead = SystemTime::now() + Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(sb.path("svc.beat"))
        .unwrap()
        .set_modified(hour_ahead)
        .unwrap();
    let p = sb.run_config(&svc("svc.beat", ""));
    // Dated no later than when protector saw it: stale about a second later, not in an hour.
    wait_until(PATIENCE, "a restart", || !sb.lines("events").is_empty());
    let stale = p.wait_events("stale", Some("svc"), 1);
    assert!(stale[0]["age_secs"].as_f64().unwrap() >= 0.0);
}

#[test]
fn changes_dated_far_in_the_past_still_count_as_heartbeats() {
    let sb = Sandbox::new();
    sb.touch("svc.beat");
    let path = sb.path("svc.beat");
    let mut n = 0u64;
    // A writer whose clock is wrong (or `touch -d`): the file changes, its mtime is 1970.
    let _toucher = Toucher::with(move || {
        n += 1;
        let _ = std::fs::write(&path, n.to_string());
        if let Ok(f) = std::fs::File::options().write(true).open(&path) {
            let _ = f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(n));
        }
    });
    let p = sb.run_config(&svc("svc.beat", ""));
    p.wait_events("heartbeat_seen", Some("svc"), 3);
    assert!(sb.lines("events").is_empty(), "{}", p.log_text());
}

#[test]
fn a_command_printing_100_mb_is_bounded_and_its_tail_logged() {
    let sb = Sandbox::new();
    sb.touch("svc.beat");
    let p = sb.run_config(&svc(
        "svc.beat",
        "    stop: head -c 100000000 /dev/zero | tr '\\0' x; echo; echo last words; exit 3\n",
    ));
    let failed = p.wait_command_events("command_failed", "stop", Some("svc"), 1);
    let out = failed[0]["stdout"].as_str().unwrap();
    assert!(
        out.starts_with("...") && out.ends_with("last words"),
        "{out:.100}"
    );
    assert!(out.len() <= 4096 + 3, "{} bytes kept", out.len());
    // The restart went on to start after the failed stop.
    wait_until(PATIENCE, "start", || !sb.lines("events").is_empty());
    let peak_kib = proc_status(p.pid(), "VmHWM");
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} kB");
}

#[test]
fn a_command_ignoring_sigterm_is_killed_at_its_timeout() {
    let sb = Sandbox::new();
    sb.touch("svc.beat");
    let p = sb.run_config(&svc(
        "svc.beat",
        "    command_timeout: 1s\n    stop: trap '' TERM; echo $$ > stop.pid; sleep 60 & echo $! > child.pid; wait\n",
    ));
    let (stop, child) = (read_pid(&sb, "stop.pid"), read_pid(&sb, "child.pid"));
    p.wait_command_events("command_timed_out", "stop", Some("svc"), 1);
    wait_until(PATIENCE, "the stop command's tree to die", || {
        !alive(stop) && !alive(child)
    });
    wait_until(PATIENCE, "start", || !sb.lines("events").is_empty());
}

#[test]
fn a_command_that_leaves_a_grandchild_behind_finishes_when_it_exits() {
    let sb = Sandbox::new();
    sb.touch("svc.beat");
    let p = sb.run_config(&svc(
        "svc.beat",
        "    command_timeout: 30s\n    stop: sleep 60 & echo $! > daemon.pid; exit 0\n",
    ));
    let daemon = read_pid(&sb, "daemon.pid");
    let done = p.wait_command_events("command_finished", "stop", Some("svc"), 1);
    // Not held up by the grandchild that still has the output pipes.
    assert!(done[0]["duration_ms"].as_u64().unwrap() < 5000, "{done:?}");
    wait_until(PATIENCE, "start", || !sb.lines("events").is_empty());
    // Started on purpose (a service's daemon): not killed.
    assert!(alive(daemon));
    kill(daemon);
}

#[test]
fn a_command_that_closes_its_output_is_still_waited_for_and_bounded() {
    let sb = Sandbox::new();
    sb.touch("svc.beat");
    let p = sb.run_config(&svc(
        "svc.beat",
        "    command_timeout: 1s\n    stop: exec >&- 2>&-; echo $$ > stop.pid; sleep 0.3; touch stop.done; sleep 60\n",
    ));
    let stop = read_pid(&sb, "stop.pid");
    let timed_out = p.wait_command_events("command_timed_out", "stop", Some("svc"), 1);
    // It ran on after closing its output, until the timeout killed it.
    assert!(sb.path("stop.done").exists(), "{timed_out:?}");
    assert!(timed_out[0]["duration_ms"].as_u64().unwrap() >= 1000);
    wait_until(PATIENCE, "the stop command to die", || !alive(stop));
}

#[test]
fn state_and_metrics_directory_unusable_is_logged_and_watching_continues() {
    let sb = Sandbox::new();
    sb.touch("svc.beat");
    // A plain file where the directory should be: nothing can be written under it (the
    // tests may run as root, for whom permissions do not stop a write).
    sb.write("blocked", "");
    let p = sb.run_config(&format!(
        "state_file: blocked/state.json\nmetrics_file: blocked/protector.prom\nlock_file: protector.lock\n{}",
        svc("svc.beat", "")
    ));
    let warned = p.wait_events("write_failed", None, 1);
    let msg = warned[0]["reason"].as_str().unwrap();
    assert!(
        msg.contains("blocked/state.json") && msg.contains("cannot write metrics file"),
        "{msg}"
    );
    assert_eq!(warned[0]["level"], "WARN");
    wait_until(PATIENCE, "a restart", || !sb.lines("events").is_empty());
    // Once the way is clear, both files are written again (the directory is created).
    std::fs::remove_file(sb.path("blocked")).unwrap();
    wait_until(PATIENCE, "state and metrics files", || {
        sb.path("blocked/state.json").exists() && sb.path("blocked/protector.prom").exists()
    });
    let n = sb.lines("events").len();
    wait_until(PATIENCE, "another restart", || sb.lines("events").len() > n);
}

#[test]
fn a_missing_state_directory_is_created_and_recreated() {
    let sb = Sandbox::new();
    sb.touch("svc.beat");
    let p = sb.run_config(&format!(
        "state_file: lib/state.json\n{}",
        svc("svc.beat", "")
    ));
    wait_until(PATIENCE, "the state file", || {
        sb.path("lib/state.json").exists()
    });
    assert!(sb.path("lib/state.json.lock").exists());
    p.wait_events("stale", Some("svc"), 1);
    // protector may be writing into it at that moment ("directory not empty"): try again.
    wait_until(PATIENCE, "the state directory removed", || {
        std::fs::remove_dir_all(sb.path("lib")).is_ok()
    });
    wait_until(PATIENCE, "the state file again", || {
        sb.path("lib/state.json").exists()
    });
}

#[test]
fn a_panic_in_one_targets_handling_is_logged_and_harms_nothing() {
    let sb = Sandbox::new();
    let mut yaml = String::from(
        "defaults:\n  timeout: 1s\n  restart_grace: 1s\n  shell: true\n  start: echo $PROTECTOR_TARGET >> events\ntargets:\n",
    );
    for name in ["a", "b", "c"] {
        sb.touch(&format!("{name}.beat"));
        yaml.push_str(&format!("  - name: {name}\n    heartbeat: {name}.beat\n"));
    }
    // c, touched every 200 ms, gets 5 s: it stays fresh on a loaded machine.
    yaml.push_str("    timeout: 5s\n");
    let _fresh = Toucher::new(sb.path("c.beat"));
    let p = sb.run_config_env(&yaml, &[("PROTECTOR_TEST_PANIC", "b")]);
    let err = p.wait_events("internal_error", Some("b"), 1);
    assert_eq!(err[0]["level"], "ERROR");
    assert!(
        err[0]["panic"].as_str().unwrap().contains("injected"),
        "{err:?}"
    );
    // The panicking target is watched afresh and restarted like the others; a stays
    // protected; c, always fresh, is never restarted.
    wait_until(PATIENCE, "restarts of a and b", || {
        let ev = sb.lines("events");
        ev.iter().filter(|l| *l == "a").count() >= 2 && ev.iter().any(|l| l == "b")
    });
    p.wait_events("heartbeat_seen", Some("c"), 3);
    assert!(!sb.lines("events").iter().any(|l| l == "c"));
    let mut p = p;
    assert!(p.child_alive());
}

/// The dated log files `logs/protector.log.<day>`.
fn log_files(sb: &Sandbox) -> Vec<PathBuf> {
    std::fs::read_dir(sb.path("logs"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    let name = p.file_name().unwrap().to_string_lossy().into_owned();
                    name.starts_with("protector.log.2")
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_log_file_moved_or_deleted_while_running_is_started_again() {
    let sb = Sandbox::new();
    sb.touch("svc.beat");
    let cfg = sb.write("protector.yaml", &svc("svc.beat", ""));
    let _p = sb.spawn(&[
        "--log-file",
        "logs/protector.log",
        "--no-stderr",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    let text = |p: &PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    let mut current = PathBuf::new();
    wait_until(PATIENCE, "the log file", || {
        log_files(&sb)
            .first()
            .map(|p| current = p.clone())
            .is_some_and(|_| text(&current).contains("protector is running"))
    });

    // logrotate-style: the file is renamed; protector must go on in a new file of the same
    // name (the target keeps restarting, so there is always more to log).
    let rotated = sb.path("logs/rotated.1");
    std::fs::rename(&current, &rotated).unwrap();
    wait_until(PATIENCE, "a new log file after the rename", || {
        text(&current).contains("heartbeat is stale")
    });
    let old_len = text(&rotated).len();

    // Deleted outright: same.
    std::fs::remove_file(&current).unwrap();
    wait_until(PATIENCE, "a new log file after the delete", || {
        text(&current).contains("heartbeat is stale")
    });
    // The renamed file stopped growing within a second or two of the rename.
    assert!(
        text(&rotated).len() <= old_len + 4096,
        "still writing to the rotated file"
    );
}

#[test]
fn temporary_files_left_by_a_crash_mid_write_are_removed_at_start_up() {
    let sb = Sandbox::new();
    sb.touch("svc.beat");
    for name in [".state.json.tmp-12345", ".protector.prom.tmp-7"] {
        sb.write(name, "half a file");
    }
    // Not ours: other names, and our prefix with something else than a pid after it.
    for name in [
        ".other.json.tmp-12345",
        ".state.json.tmp-12345x",
        "state.json.tmp-1",
    ] {
        sb.write(name, "keep");
    }
    let p = sb.run_config(&format!(
        "state_file: state.json\nmetrics_file: protector.prom\n{}",
        svc("svc.beat", "")
    ));
    let removed = p.wait_events("stale_temps_removed", None, 2);
    assert_eq!(removed[0]["removed"], 1);
    p.wait_events("started", None, 1);
    assert!(!sb.path(".state.json.tmp-12345").exists());
    assert!(!sb.path(".protector.prom.tmp-7").exists());
    for name in [
        ".other.json.tmp-12345",
        ".state.json.tmp-12345x",
        "state.json.tmp-1",
    ] {
        assert!(sb.path(name).exists(), "{name} was removed");
    }
}
