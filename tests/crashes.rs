//! protector killed mid-restart (SIGKILL, a crash): the next protector resumes the
//! interrupted restart, and never runs a target's commands over those the dead one left
//! running.
#![cfg(unix)]

mod common;

use common::*;

/// Runs `cfg` until svc's stop command (which writes its pid to `stop-began`) runs and the
/// state file says so, then kills protector with SIGKILL, and the stop command too.
fn kill_during_stop(sb: &Sandbox, cfg: &str) {
    let mut p = sb.run_config(cfg);
    wait_until(PATIENCE, "the stop command to begin", || {
        sb.path("stop-began").exists()
    });
    wait_until(PATIENCE, "the state file to say svc is restarting", || {
        std::fs::read_to_string(sb.path("state.json"))
            .is_ok_and(|t| t.contains("\"state\":\"restarting\""))
    });
    p.signal("KILL");
    p.wait_exit(PATIENCE);
    kill(read_pid(sb, "stop-began"));
}

#[test]
fn a_restart_interrupted_by_a_crash_is_resumed_at_once() {
    let sb = Sandbox::new();
    // The first stop hangs (and says so); later ones return at once. startup_grace is an hour:
    // only resuming the interrupted restart can restart svc within the test.
    let cfg = format!(
        "state_file: state.json\ntargets:\n{}",
        target(
            "svc",
            "    timeout: 500ms\n    startup_grace: 1h\n    restart_grace: 1h\n    stop: [sh, -c, 'if [ ! -e stop-began ]; then echo $$ > stop-began; exec sleep 60; fi']\n"
        )
    )
    .replace("startup_grace: 1h", "startup_grace: 500ms");
    kill_during_stop(&sb, &cfg);

    let started = sb.write(
        "protector.yaml",
        &cfg.replace("startup_grace: 500ms", "startup_grace: 1h"),
    );
    let p = sb.spawn(&["--config", started.to_str().unwrap()]);
    p.wait_events("restart_resumed", Some("svc"), 1);
    p.wait_events("restart_done", Some("svc"), 1);
    assert_eq!(
        starts_of(&sb, "svc"),
        1,
        "started once, by the new protector"
    );
}

#[test]
fn an_interrupted_restart_is_not_resumed_when_a_heartbeat_came_since() {
    let sb = Sandbox::new();
    let cfg = format!(
        "state_file: state.json\ntargets:\n{}",
        target(
            "svc",
            "    timeout: 500ms\n    startup_grace: 500ms\n    restart_grace: 1h\n    stop: [sh, -c, 'echo $$ > stop-began; exec sleep 60']\n"
        )
    );
    kill_during_stop(&sb, &cfg);
    sb.touch("svc.beat");

    let cfg = cfg
        .replace("startup_grace: 500ms", "startup_grace: 1h")
        .replace("timeout: 500ms", "timeout: 1h");
    sb.write("protector.yaml", &cfg);
    let p = sb.spawn(&["--config", "protector.yaml"]);
    p.wait_events("started", None, 1);
    let watching = p.wait_events("watching", Some("svc"), 1);
    assert!(
        p.events("restart_resumed", None).is_empty(),
        "{}",
        p.log_text()
    );
    // Judged a timeout after that heartbeat, not at once.
    assert!(watching[0]["first_check_in_secs"].as_f64().unwrap() > 0.1);
}

/// svc's start command, run as `sh start.sh`: the first one writes its pid to `start-began`
/// and runs a child (its pid in `leftover`) that waits for a file `release`, then appends
/// `old start ended` to `events`; later ones append `start svc` and return.
const START: &str = r#"
if [ -e start-began ]; then echo start svc >> events; exit 0; fi
echo $$ > start-began
sh -c 'echo $$ > leftover; while [ ! -e release ]; do sleep 0.1; done; echo old start ended >> events'
"#;

/// Runs svc (stop appends `stop` to `events`, start is [`START`]) until its first start
/// command runs and the state file records its process group, then kills protector with
/// SIGKILL. Returns the config, with startup_grace made an hour so that only resuming the
/// interrupted restart can restart svc again.
fn kill_during_start(sb: &Sandbox, command_timeout: &str) -> String {
    sb.write("start.sh", START);
    let cfg = format!(
        "state_file: state.json\ntargets:\n  - name: svc\n    heartbeat: svc.beat\n    \
         timeout: 500ms\n    startup_grace: 500ms\n    restart_grace: 1h\n    \
         command_timeout: {command_timeout}\n    stop: [sh, -c, 'echo stop >> events']\n    \
         start: [sh, start.sh]\n"
    );
    let mut p = sb.run_config(&cfg);
    let leader = read_pid(sb, "start-began");
    let child = read_pid(sb, "leftover");
    wait_until(
        PATIENCE,
        "the state file to record the start command",
        || {
            std::fs::read_to_string(sb.path("state.json"))
                .is_ok_and(|t| t.contains(&format!("\"pgid\":{leader}")))
        },
    );
    p.signal("KILL");
    p.wait_exit(PATIENCE);
    // The command's leader dies with protector (PR_SET_PDEATHSIG); what it started is left.
    wait_until(
        PATIENCE,
        "the start command's leader to die with protector",
        || !alive(leader),
    );
    assert!(alive(child), "the start command's child is still running");
    cfg.replace("startup_grace: 500ms", "startup_grace: 1h")
}

#[test]
fn a_command_left_running_by_a_crash_is_waited_for_before_the_next_one() {
    let sb = Sandbox::new();
    let cfg = kill_during_start(&sb, "1h");
    sb.write("protector.yaml", &cfg);
    let p = sb.spawn(&["--config", "protector.yaml"]);
    let found = p.wait_events("leftover_found", Some("svc"), 1);
    assert_eq!(found[0]["command"], "start");
    p.wait_events("restart_resumed", Some("svc"), 1);
    p.wait_command_events("command_started", "stop", Some("svc"), 1);
    // The new stop has been asked for; it waits for the old start to end.
    sb.touch("release");
    p.wait_events("leftover_finished", Some("svc"), 1);
    p.wait_events("restart_done", Some("svc"), 1);
    assert_eq!(
        sb.lines("events"),
        ["stop", "old start ended", "stop", "start svc"],
        "{}",
        p.log_text()
    );
}

#[test]
fn a_command_left_running_past_its_command_timeout_is_killed() {
    let sb = Sandbox::new();
    let cfg = kill_during_start(&sb, "2s");
    let child = read_pid(&sb, "leftover");
    sb.write("protector.yaml", &cfg);
    let p = sb.spawn(&["--config", "protector.yaml"]);
    p.wait_events("leftover_found", Some("svc"), 1);
    let killed = p.wait_events("leftover_killed", Some("svc"), 1);
    assert_eq!(killed[0]["level"], "WARN");
    p.wait_events("restart_done", Some("svc"), 1);
    assert!(!alive(child), "the old start command's child was killed");
    assert_eq!(sb.lines("events"), ["stop", "stop", "start svc"]);
}

/// Does a live process of process group `pgid` remain?
fn group_alive(pgid: u32) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |r| r.1)
            .split_whitespace()
            .collect();
        fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
    })
}

#[test]
fn a_finished_command_on_record_is_not_waited_for() {
    let sb = Sandbox::new();
    let cfg = kill_during_start(&sb, "1h");
    // The whole group: the child and the `sleep` it may be running.
    let group = read_pid(&sb, "start-began");
    let _ = std::process::Command::new("kill")
        .args(["-9", "--", &format!("-{group}")])
        .status();
    wait_until(PATIENCE, "the start command's group to end", || {
        !group_alive(group)
    });
    sb.write("protector.yaml", &cfg);
    let p = sb.spawn(&["--config", "protector.yaml"]);
    p.wait_events("restart_done", Some("svc"), 1);
    assert!(
        p.events("leftover_found", None).is_empty(),
        "{}",
        p.log_text()
    );
    assert_eq!(sb.lines("events"), ["stop", "stop", "start svc"]);
}

#[test]
fn a_command_spawned_just_before_a_crash_is_still_waited_for() {
    let sb = Sandbox::new();
    // svc's first stop starts a child that lives on (in its process group), says its group,
    // and kills protector 10 ms after it began: before protector's state file (written 20 ms
    // after a restart step) can say it runs.
    sb.write(
        "stop.sh",
        "if [ -e began ]; then exit 0; fi\nsleep 600 &\necho $$ > began\nsleep 0.01\nkill -9 $PPID\nwait\n",
    );
    let cfg = "state_file: state.json\ntargets:\n  - name: svc\n    heartbeat: svc.beat\n    \
               timeout: 500ms\n    startup_grace: 500ms\n    restart_grace: 1h\n    \
               command_timeout: 1h\n    stop: [sh, stop.sh]\n    start: 'true'\n";
    let mut p = sb.run_config(cfg);
    let group = read_pid(&sb, "began");
    p.wait_exit(PATIENCE);
    assert!(group_alive(group), "the stop command's child lives on");
    // The next protector knows of it all the same, and runs no command of svc over it.
    sb.write(
        "protector.yaml",
        &cfg.replace("startup_grace: 500ms", "startup_grace: 1h"),
    );
    let p = sb.spawn(&["--config", "protector.yaml"]);
    let found = p.wait_events("leftover_found", Some("svc"), 1);
    assert_eq!(found[0]["pgid"], group, "{}", p.log_text());
    assert_eq!(found[0]["command"], "stop");
    p.wait_events("started", None, 1);
    let records: Vec<String> = std::fs::read_dir(sb.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".state.json.cmd-"))
        .collect();
    assert!(
        records.is_empty(),
        "taken off once in the state file: {records:?}"
    );
    let _ = std::process::Command::new("kill")
        .args(["-9", "--", &format!("-{group}")])
        .status();
}
