//! protector under a service manager: systemd's notifications, records to the journal, and
//! its own log files.
#![cfg(unix)]

mod common;

use common::*;

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
