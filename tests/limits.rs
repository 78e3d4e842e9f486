//! protector under limits: under a tasks limit (systemd's TasksMax, a cgroup's pids.max) it
//! starts, and a command that cannot get a thread or process is tried again soon, never
//! counted as a restart (needs root to make a cgroup; without it the test says it is
//! skipped); under a low soft limit of open files it raises it to the hard limit; descriptors
//! its parent left open are not handed to its commands.
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

/// Started with a low soft limit of open files (as many inits and shells give), protector
/// raises it to the hard limit before it runs commands; a descriptor its parent left open is
/// not handed to the commands it runs.
#[test]
fn protector_raises_its_open_files_limit_and_hands_no_inherited_descriptor_to_commands() {
    let sb = Sandbox::new();
    sb.write(
        "protector.yaml",
        "targets:\n  - name: svc\n    heartbeat: svc.beat\n    timeout: 300ms\n    restart_grace: 1h\n    \
         start: [sh, -c, 'if [ -e /proc/self/fd/7 ]; then echo inherited; else echo clean; fi >> fd7']\n",
    );
    // The parent: a soft limit of 256 (hard 4096), and descriptor 7 open on a file.
    let p = sb.spawn_through(
        &[
            "prlimit",
            "--nofile=256:4096",
            "sh",
            "-c",
            "exec 7>>parent-file; exec \"$0\" \"$@\"",
        ],
        &["--config", "protector.yaml"],
        &[],
    );
    p.wait_events("restart_done", Some("svc"), 1);
    assert_eq!(sb.lines("fd7"), ["clean"], "the command got descriptor 7");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", p.pid())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["4096", "4096"], "{open_files}");
}
