//! Heartbeats on filesystems that misbehave: one that never answers (a dead NFS server, a hung
//! FUSE daemon) and one that keeps file times in whole seconds (ext2/ext3 with small inodes,
//! FAT, some NFS servers). Both need root to mount; without it each test says it is skipped.
#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::UNIX_EPOCH;

use common::*;

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// A loop-mounted ext2 image made with 128-byte inodes, which have no room for sub-second
/// file times. Unmounted when dropped.
struct CoarseMount {
    path: PathBuf,
}

impl CoarseMount {
    /// `None` (the test is skipped, saying so) without root, mkfs.ext2 or loop devices.
    fn new(sb: &Sandbox, name: &str) -> Option<CoarseMount> {
        if !is_root() {
            eprintln!("skipped: mounting an ext2 image needs root");
            return None;
        }
        let image = sb.path(&format!("{name}.img"));
        std::fs::File::create(&image)
            .unwrap()
            .set_len(8 << 20)
            .unwrap();
        let path = sb.path(name);
        std::fs::create_dir(&path).unwrap();
        let made = std::process::Command::new("mkfs.ext2")
            .args(["-q", "-F", "-I", "128"])
            .arg(&image)
            .status()
            .is_ok_and(|s| s.success());
        let mounted = made
            && std::process::Command::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(&path)
                .status()
                .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipped: cannot make or loop-mount an ext2 image (mkfs.ext2, loop devices)");
            return None;
        }
        Some(CoarseMount { path })
    }
}

impl Drop for CoarseMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.path)
            .status();
    }
}

#[test]
fn a_heartbeat_on_a_filesystem_with_whole_second_times_is_seen_every_time() {
    let sb = Sandbox::new();
    let Some(mount) = CoarseMount::new(&sb, "ext2") else {
        return;
    };
    let beat = mount.path.join("svc.beat");
    std::fs::write(&beat, "first").unwrap();
    let mtime = std::fs::metadata(&beat).unwrap().modified().unwrap();
    assert_eq!(
        mtime.duration_since(UNIX_EPOCH).unwrap().subsec_nanos(),
        0,
        "ext2 with 128-byte inodes keeps whole seconds"
    );
    // The writer writes the time every 200 ms, as the Salt module's protector.beat does. The timeout is scaled down to 1 s so that it
    // is as short as the file times are coarse: a look then often finds the same mtime as
    // the look before, though the file was written since.
    let beats = Arc::new(AtomicUsize::new(0));
    let counted = beats.clone();
    let path = beat.clone();
    let writer = Toucher::with(move || {
        // Always the same length, so that only the content tells writes apart.
        let nanos = UNIX_EPOCH.elapsed().unwrap().as_nanos();
        let _ = std::fs::write(&path, format!("{nanos:020}\n"));
        counted.fetch_add(1, Ordering::Relaxed);
    });
    let p = sb.run_config(
        "targets:\n  - name: svc\n    heartbeat: ext2/svc.beat\n    timeout: 1s\n    \
         start: [sh, -c, 'echo start >> events']\n",
    );
    let said = p.wait_events("heartbeat_coarse_times", Some("svc"), 1);
    assert_eq!(said[0]["hashed"], true);
    // Ten timeouts' worth of heartbeats, counted as they are written.
    let from = beats.load(Ordering::Relaxed);
    wait_until(PATIENCE, "50 more heartbeats", || {
        beats.load(Ordering::Relaxed) >= from + 50
    });
    assert!(
        p.events("stale", None).is_empty(),
        "a healthy service was restarted:\n{}",
        p.log_text()
    );
    drop(writer);
    // `check` says the same to whoever sets it up.
    protector_cmd(sb.dir.path())
        .args(["check", "--config", "protector.yaml"])
        .assert()
        .success()
        .stderr(predicates::str::contains("whole seconds"));
    drop(p);
}

/// A mount of tests/support/fuse_hang.py: a filesystem where every look hangs. Unmounted and
/// its server killed when dropped (which also ends the looks still waiting on it).
struct DeadMount {
    path: std::path::PathBuf,
    server: std::process::Child,
}

impl DeadMount {
    /// `None` (the test is skipped, saying so) without root, /dev/fuse or python3.
    fn new(path: std::path::PathBuf) -> Option<DeadMount> {
        use std::io::BufRead;
        if !is_root() || !std::path::Path::new("/dev/fuse").exists() {
            eprintln!("skipped: a filesystem that never answers needs root and /dev/fuse");
            return None;
        }
        std::fs::create_dir_all(&path).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fuse_hang.py");
        let Ok(mut server) = std::process::Command::new("python3")
            .arg(script)
            .arg(&path)
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("skipped: no python3");
            return None;
        };
        let mut line = String::new();
        std::io::BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "mounted", "the FUSE server did not mount");
        Some(DeadMount { path, server })
    }
}

impl Drop for DeadMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

#[test]
fn a_heartbeat_on_a_filesystem_that_never_answers_holds_nothing_up() {
    use std::os::unix::net::UnixDatagram;
    let sb = Sandbox::new();
    let Some(dead) = DeadMount::new(sb.path("dead")) else {
        return;
    };
    let sock_path = sb.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    sb.touch("hung.beat");
    let yaml = "targets:
  - name: hung
    heartbeat: dead/beat
    timeout: 2s
    start: [sh, -c, 'echo start hung >> events']
  - name: healthy
    heartbeat: healthy.beat
    timeout: 1s
    restart_grace: 1s
    start: [sh, -c, 'echo start healthy >> events']
";
    let mut p = sb.run_config_env(
        yaml,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    // Bound after `p`, so dropped before it: a thread stuck in the kernel on the dead mount
    // keeps protector's process from being reaped until the mount is gone.
    let dead = dead;
    let unreadable = p.wait_events("heartbeat_unreadable", Some("hung"), 1);
    assert_eq!(
        unreadable[0]["reason"],
        "no answer in time: the filesystem does not respond"
    );
    // The other target is restarted on time, again and again.
    let done = p.wait_events("restart_done", Some("healthy"), 3);
    let gaps: Vec<f64> = done
        .windows(2)
        .map(|w| timestamp(&w[1]) - timestamp(&w[0]))
        .collect();
    assert!(
        gaps.iter().all(|g| *g < 2.5),
        "restarts of healthy held up: {gaps:?}"
    );
    // The hung one counts as having no heartbeat, and its stuck look is logged once.
    p.wait_events("restart_done", Some("hung"), 2);
    assert_eq!(p.events("heartbeat_unreadable", Some("hung")).len(), 1);
    // The watchdog keeps being fed.
    let mut watchdogs = 0;
    let mut buf = [0u8; 256];
    while watchdogs < 3 {
        let n = sock.recv(&mut buf).expect("WATCHDOG=1 before the deadline");
        if &buf[..n] == b"WATCHDOG=1\n" {
            watchdogs += 1;
        }
    }
    // SIGTERM ends protector promptly, stuck look or not: the look that never returned is
    // stuck in the kernel in protector's helper process, not in protector (a process with
    // such a thread cannot be reaped, kill -9 included, until the filesystem answers).
    p.signal("TERM");
    p.wait_events("stopped", None, 1);
    assert_eq!(p.wait_exit(PATIENCE), Some(0), "{}", p.log_text());
    drop(dead);
}

#[test]
fn a_service_blocked_on_a_filesystem_that_never_answers_shows_its_wait_in_its_incident() {
    use std::os::unix::process::CommandExt;
    let sb = Sandbox::new();
    let Some(dead) = DeadMount::new(sb.path("dead")) else {
        return;
    };
    // The hung service: a read of a file on the mount, which never returns.
    let service = Group(
        std::process::Command::new("cat")
            .arg(sb.path("dead/data"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    sb.write("svc.pid", &format!("{}\n", service.0.id()));
    let (p, cfg) = start_with_state(
        &sb,
        "targets:
  - name: svc
    heartbeat: svc.beat
    timeout: 1s
    restart_grace: 1h
    pid_file: svc.pid
    start: 'true'
",
    );
    // Bound last, so dropped first: the read on the mount ends only when its server is gone
    // (a FUSE request without an answer holds even SIGKILL off).
    let dead = dead;
    let kept = p.wait_events("incident_recorded", Some("svc"), 1);
    let summary = kept[0]["summary"].as_str().unwrap().to_string();
    let id = kept[0]["incident"].as_str().unwrap().to_string();
    let (code, out, err) = ctl(&sb, &cfg, &["incidents", "show", &id, "--json"]);
    assert_eq!(code, 0, "{err}");
    let incident: serde_json::Value = serde_json::from_str(&out).unwrap();
    let process = &incident["processes"][0];
    let wait = process["wait"].as_str().unwrap_or_default();
    let stack = process["kernel_stack"].as_str().unwrap_or_default();
    // In the kernel's FUSE code, waiting for the server's answer (its name varies with the
    // kernel: request_wait_answer, fuse_..., its stack says fuse as root).
    assert!(
        summary.contains(&format!("{} waits in {wait}", service.0.id()))
            && (wait.contains("fuse") || wait.contains("wait_answer") || stack.contains("fuse")),
        "{summary}\n{process}"
    );
    drop(dead);
    drop(p);
    drop(service);
}
