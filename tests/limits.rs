//! protector under a tasks limit (systemd's TasksMax, a cgroup's pids.max): it starts, and a
//! command that cannot get a thread or process is tried again soon, never counted as a
//! restart. Needs root to make a cgroup; without it the test says it is skipped.
#![cfg(target_os = "linux")]

mod common;

use std::path::PathBuf;

use common::*;

/// A cgroup with the pids controller (v1 or v2), removed when dropped.
struct PidsCgroup {
    dir: PathBuf,
}

impl PidsCgroup {
    fn new(name: &str) -> Option<PidsCgroup> {
        let v1 = PathBuf::from("/sys/fs/cgroup/pids");
        let v2 = PathBuf::from("/sys/fs/cgroup");
        let base = if v1.join("cgroup.procs").exists() {
            v1
        } else if std::fs::read_to_string(v2.join("cgroup.subtree_control"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "pids"))
        {
            v2
        } else {
            eprintln!("skipped: no cgroup with the pids controller");
            return None;
        };
        let dir = base.join(format!("{name}-{}", std::process::id()));
        if let Err(e) = std::fs::create_dir(&dir) {
            eprintln!("skipped: cannot make a cgroup (needs root): {e}");
            return None;
        }
        Some(PidsCgroup { dir })
    }

    fn limit(&self, max: &str) {
        std::fs::write(self.dir.join("pids.max"), max).unwrap();
    }

    fn procs(&self) -> String {
        self.dir.join("cgroup.procs").display().to_string()
    }
}

impl Drop for PidsCgroup {
    fn drop(&mut self) {
        // Its processes are gone by now (the test's protector is dropped first).
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[test]
fn under_a_tasks_limit_protector_starts_and_commands_wait_for_room() {
    let sb = Sandbox::new();
    let Some(cgroup) = PidsCgroup::new("protector-test") else {
        return;
    };
    // Two tasks: protector's main thread and its signal thread. No thread for resolving the
    // config in parallel (300 targets would use them), for looking at heartbeats or for
    // running a command.
    cgroup.limit("2");
    let mut yaml = String::from("targets:\n");
    yaml.push_str(&target("svc", "    timeout: 500ms\n    max_restarts: 1\n"));
    for i in 0..300 {
        yaml.push_str(&format!(
            "  - name: idle{i}\n    heartbeat: idle.beat\n    timeout: 1h\n    start: 'true'\n"
        ));
    }
    sb.touch("idle.beat");
    sb.write("protector.yaml", &yaml);
    let join = format!("echo $$ > {} && exec \"$@\"", cgroup.procs());
    let mut p = sb.spawn_through(
        &["sh", "-c", &join, "sh"],
        &["--config", "protector.yaml"],
        &[],
    );
    let started = p.wait_events("started", None, 1);
    assert_eq!(started[0]["targets"], 301);
    p.wait_events("looks_one_by_one", None, 1);
    let retries = p.wait_command_events("command_retry", "start", Some("svc"), 2);
    assert!(
        retries[0]["reason"].as_str().unwrap().contains("thread"),
        "{}",
        retries[0]
    );
    assert!(p.events("give_up", None).is_empty(), "{}", p.log_text());
    assert_eq!(starts_of(&sb, "svc"), 0);
    // Room again: the start command runs at its next try.
    cgroup.limit("max");
    p.wait_events("restart_done", Some("svc"), 1);
    assert_eq!(starts_of(&sb, "svc"), 1);
    assert!(p.child_alive());
    assert!(p.events("panic", None).is_empty(), "{}", p.log_text());
    drop(p);
}
