//! Incidents with real processes: before a stale target's stop command runs, protector keeps
//! what its service looked like (its processes, stopped here; its `diagnose` command's output)
//! and `protector incidents` shows it; a `diagnose` that hangs is killed at its bound and the
//! restart goes on.
#![cfg(target_os = "linux")]

mod common;

use common::*;

#[test]
fn a_restart_keeps_what_the_hung_service_looked_like() {
    use std::os::unix::process::CommandExt;
    let sb = Sandbox::new();
    // The hung service: a process stopped by SIGSTOP, its pid in svc.pid, holding a half-open
    // connection (its peer, this test, closed it) as a minion's to a lost master would.
    let master = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = master.local_addr().unwrap().port();
    let service = Group(
        std::process::Command::new("bash")
            .args([
                "-c",
                &format!("exec 3<>/dev/tcp/127.0.0.1/{port} && exec sleep 600"),
            ])
            .stdout(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    master.set_nonblocking(true).unwrap();
    wait_until(PATIENCE, "the service's connection", || {
        master.accept().map(drop).is_ok()
    });
    wait_until(PATIENCE, "the service's exec of sleep", || {
        std::fs::read_to_string(format!("/proc/{}/cmdline", service.0.id()))
            .is_ok_and(|c| c.starts_with("sleep"))
    });
    sb.write("svc.pid", &format!("{}\n", service.0.id()));
    // SAFETY: kill touches no memory; the pid is the test's own child.
    unsafe { libc::kill(service.0.id() as i32, libc::SIGSTOP) };
    let (p, cfg) = start_with_state(
        &sb,
        "targets:
  - name: svc
    heartbeat: svc.beat
    timeout: 1s
    restart_grace: 1h
    pid_file: svc.pid
    diagnose: [sh, -c, 'echo diagnosing svc; echo the minion said nothing >&2']
    notify: [sh, -c, 'echo \"$PROTECTOR_EVENT $PROTECTOR_INCIDENT $PROTECTOR_INCIDENT_SUMMARY\" >> notified']
    stop: [sh, -c, 'echo stop svc >> events']
    start: 'true'
  - name: slow
    heartbeat: slow.beat
    timeout: 1s
    restart_grace: 1h
    diagnose: [sleep, '600']
    diagnose_timeout: 1s
    stop: [sh, -c, 'echo stop slow >> events']
    start: 'true'
",
    );
    let kept = p.wait_events("incident_recorded", Some("svc"), 1);
    let summary = kept[0]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("1 process: 1 T (stopped); ")
            && summary.ends_with(&format!(
                "waits in do_signal_stop; TCP to 127.0.0.1:{port} CLOSE_WAIT"
            )),
        "{summary}"
    );
    let id = kept[0]["incident"].as_str().unwrap().to_string();
    // The hung diagnose: killed at its bound, the restart goes on.
    let slow = p.wait_events("incident_recorded", Some("slow"), 1);
    assert!(
        slow[0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("diagnose timed out"),
        "{}",
        slow[0]
    );
    // The restart's record and its notify name the incident.
    let done = p.wait_events("restart_done", Some("svc"), 1);
    assert_eq!(
        done[0]["incident"].as_str(),
        Some(id.as_str()),
        "{}",
        done[0]
    );
    assert_eq!(
        done[0]["incident_summary"].as_str(),
        Some(summary),
        "{}",
        done[0]
    );
    p.wait_events("restart_done", Some("slow"), 1);
    wait_until(PATIENCE, "the restart's notify", || {
        !sb.lines("notified").is_empty()
    });
    assert_eq!(sb.lines("notified"), [format!("restart {id} {summary}")]);
    let mut events = sb.lines("events");
    events.sort();
    assert_eq!(events, ["stop slow", "stop svc"]);

    // status shows each target's last incident.
    wait_until(PATIENCE, "status showing the incident", || {
        let (_, out, _) = ctl(&sb, &cfg, &["status"]);
        out.contains("svc: incident ")
            && out.contains(&format!("{summary} (protector incidents show {id})"))
    });
    let (code, out, err) = ctl(&sb, &cfg, &["incidents"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("{id}  stale  1 process: 1 T (stopped)")),
        "{out}"
    );
    assert!(out.contains("-slow-") && out.lines().count() == 2, "{out}");
    let (code, out, err) = ctl(&sb, &cfg, &["incidents", "show", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("T (stopped)") && out.contains("sleep 600"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "    TCP 127.0.0.1:{port} CLOSE_WAIT (from 127.0.0.1:"
        )),
        "{out}"
    );
    assert!(
        out.contains("    diagnosing svc") && out.contains("    the minion said nothing"),
        "{out}"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(sb.path(&format!("incidents/{id}.json")))
            .unwrap()
            .permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o600,
        "incidents hold command output: root's alone"
    );
}

#[test]
fn an_observe_only_target_keeps_its_incidents_and_never_touches_the_service() {
    let sb = Sandbox::new();
    let (p, cfg) = start_with_state(
        &sb,
        "targets:
  - name: obs
    heartbeat: obs.beat
    timeout: 1s
    restart_grace: 1h
    observe_only: true
    diagnose: [sh, -c, 'echo looked at obs']
    stop: [sh, -c, 'echo stop >> events']
    start: [sh, -c, 'echo start >> events']
",
    );
    let kept = p.wait_events("incident_recorded", Some("obs"), 1);
    let observed = p.wait_events("observed", Some("obs"), 1);
    assert_eq!(
        observed[0]["incident"], kept[0]["incident"],
        "{}",
        observed[0]
    );
    assert!(sb.lines("events").is_empty(), "stop and start never ran");
    wait_until(PATIENCE, "status saying observe only", || {
        let (_, out, _) = ctl(&sb, &cfg, &["status"]);
        out.contains("(observe only)") && out.contains("obs: incident ")
    });
    let (code, out, err) = ctl(&sb, &cfg, &["restart", "obs"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("observe only") || out.contains("observe only"),
        "{out}{err}"
    );
    let (code, out, err) = ctl(&sb, &cfg, &["check"]);
    assert_eq!(code, 0, "{err}");
    let said = "true (when hung: an incident and notify; stop and start never run)";
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("observe_only:") && l.ends_with(said)),
        "{out}"
    );
    assert!(sb.lines("events").is_empty(), "stop and start never ran");
}

/// The first indented lines after the README line holding `intro`, up to the next unindented
/// one.
fn readme_block(intro: &str) -> String {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let mut block = String::new();
    let lines = readme
        .lines()
        .skip_while(|l| !l.contains(intro))
        .skip(1)
        .skip_while(|l| !l.starts_with("    "));
    for line in lines {
        match line.strip_prefix("    ") {
            Some(rest) => block.push_str(&format!("{rest}\n")),
            None => break,
        }
    }
    block
}

#[test]
fn the_readme_incident_example_is_what_incidents_prints() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "protector.yaml",
        "state_file: state.json\ntargets:\n  - {name: salt-minion, heartbeat: m.alive, timeout: 5m, start: 'true'}\n",
    );
    let list = readme_block("as `protector incidents` lists it");
    let whole = readme_block("prints it whole:");
    let id = "2026-12-06T101502Z-salt-minion-3fa2";
    assert!(list.starts_with(id) && whole.starts_with(&format!("incident {id}")));
    // The incident those lines were printed from.
    let process = |pid: u32, args: &str, threads: u32, fds: u32, kib: u64, tcp: bool| {
        let mut p = serde_json::json!({
            "pid": pid, "command": format!("/opt/saltstack/salt/bin/python3.10 /usr/bin/salt-minion{args}"),
            "state": "T (stopped)", "wait": "do_signal_stop", "threads": threads,
            "descriptors": fds, "resident_kib": kib, "age_secs": 3 * 86_400 + 4 * 3600 + 17
        });
        if tcp {
            p["connections"] = serde_json::json!([{"local": "10.0.0.21:51244",
                "remote": "10.0.0.5:4506", "state": "CLOSE_WAIT"}]);
        }
        p
    };
    let summary = list.split("  ").nth(2).unwrap().trim_end();
    let stdout: String = whole
        .lines()
        .skip_while(|l| l != &"  stdout:")
        .skip(1)
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    let incident = serde_json::json!({
        "id": id, "target": "salt-minion", "at": 1_765_015_502.0, "reason": "stale",
        "heartbeat_age_secs": 302.4, "consecutive_restarts": 1, "summary": summary,
        "diagnose": {"command": "[\"/bin/sh\",\"-c\",\"pids=...\"]", "status": "exit status: 0",
            "duration_ms": 214, "stdout": stdout, "stderr": "", "cut": false},
        "processes": [process(812, "", 1, 9, 41236, false),
            process(845, " MultiMinionProcessManager", 7, 31, 88412, true)]
    });
    std::fs::create_dir(sb.path("incidents")).unwrap();
    sb.write(
        &format!("incidents/{id}.json"),
        &serde_json::to_string_pretty(&incident).unwrap(),
    );
    let (code, out, err) = ctl(&sb, &cfg, &["incidents"]);
    assert_eq!((code, out.as_str()), (0, list.as_str()), "{err}");
    let (code, out, err) = ctl(&sb, &cfg, &["incidents", "show", id]);
    assert_eq!((code, out.as_str()), (0, whole.as_str()), "{err}");
}
