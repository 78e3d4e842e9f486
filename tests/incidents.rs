//! Incidents with real processes: before a stale target's stop command runs, protector keeps
//! what its service looked like (its processes, stopped here; its `diagnose` command's output)
//! and `protector incidents` shows it; a `diagnose` that hangs is killed at its bound and the
//! restart goes on.
#![cfg(target_os = "linux")]

mod common;

use common::*;

/// Kills the process group it leads when dropped, however the test ends.
struct Service(std::process::Child);

impl Drop for Service {
    fn drop(&mut self) {
        // SAFETY: kill touches no memory; the group is the test's own child's.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

#[test]
fn a_restart_keeps_what_the_hung_service_looked_like() {
    use std::os::unix::process::CommandExt;
    let sb = Sandbox::new();
    // The hung service: a process stopped by SIGSTOP, its pid in svc.pid.
    let service = Service(
        std::process::Command::new("sleep")
            .arg("600")
            .stdout(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
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
            && summary.ends_with("waits in do_signal_stop"),
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
    p.wait_events("restart_done", Some("svc"), 1);
    p.wait_events("restart_done", Some("slow"), 1);
    let mut events = sb.lines("events");
    events.sort();
    assert_eq!(events, ["stop slow", "stop svc"]);

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
