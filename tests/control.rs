//! Operators' requests to a running protector with the real binary: pause (ending by itself,
//! surviving a reload and a restart of protector), restart (waited for; a second one while it
//! runs is refused), reset, reload (applied or refused with the reason), and the control
//! socket's defences: a client that never writes, malformed and oversized requests, every
//! place taken (the command asks again), another user (root only). Timings on simulated time
//! are in src/daemon/tests/control.rs; the Windows named pipe is tested under Wine in
//! tests/windows_control.rs.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

fn status(sb: &Sandbox, cfg: &Path) -> String {
    ctl(sb, cfg, &["status"]).1
}

/// Sends raw bytes and reads the one-line answer.
fn raw(socket: &Path, bytes: &[u8]) -> serde_json::Value {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = s.write_all(bytes);
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

#[test]
fn a_pause_holds_off_restarts_and_ends_by_itself() {
    let sb = Sandbox::new();
    let beat = sb.path("a.beat");
    let toucher = Toucher::new(beat);
    let (p, cfg) = start_with_state(
        &sb,
        // 3 s: touched every 200 ms, fresh until paused even on a loaded machine.
        &format!("targets:\n{}", target("a", "    timeout: 3s\n")),
    );
    let (code, out, err) = ctl(
        &sb,
        &cfg,
        &["pause", "a", "--for", "3s", "--reason", "upgrading a"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "a: paused for 3s: upgrading a\n");
    drop(toucher);
    let st = status(&sb, &cfg);
    assert!(
        st.contains("paused (") && st.contains("left: upgrading a)"),
        "{st}"
    );
    let ended = p.wait_events("pause_ended", Some("a"), 1);
    assert_eq!(ended[0]["by"], "expired");
    // Not restarted while paused; after it, the stale target gets its startup grace (3 s).
    let start = p.wait_command_events("command_started", "start", Some("a"), 1);
    assert!(
        timestamp(&start[0]) >= timestamp(&ended[0]),
        "restarted during the pause"
    );
}

#[test]
fn a_pause_survives_a_reload_and_a_restart_of_protector() {
    let sb = Sandbox::new();
    let (mut p, cfg) = start_with_state(
        &sb,
        &format!("targets:\n{}", target("a", "    timeout: 1h\n")),
    );
    let (code, out, _) = ctl(
        &sb,
        &cfg,
        &["pause", "--all", "--for", "2h", "--reason", "maintenance"],
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "a: paused for 2h00m: maintenance\n")
    );
    // A reload that changes the target keeps the pause.
    std::fs::write(
        &cfg,
        format!(
            "state_file: state.json\ntargets:\n{}",
            target("a", "    timeout: 2h\n")
        ),
    )
    .unwrap();
    let (code, out, err) = ctl(&sb, &cfg, &["reload"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "config reloaded: 0 unchanged, 1 changed, 0 added, 0 removed, 0 disabled\n"
    );
    let st = status(&sb, &cfg);
    assert!(
        st.contains(" paused (") && st.contains(" left: maintenance)"),
        "{st}"
    );
    // And so does a restart of protector (the state file).
    p.signal("TERM");
    assert_eq!(p.wait_exit(PATIENCE), Some(0));
    let p = sb.spawn(&["--config", cfg.to_str().unwrap()]);
    p.wait_events("pause_restored", Some("a"), 1);
    assert!(status(&sb, &cfg).contains("left: maintenance)"));
    let (code, out, _) = ctl(&sb, &cfg, &["resume", "a"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("a: watched again; next check in "), "{out}");
    assert!(status(&sb, &cfg).contains(" watching "));
}

#[test]
fn a_pause_until_resumed_is_shown_as_such_and_survives_a_restart_of_protector() {
    let sb = Sandbox::new();
    let (mut p, cfg) = start_with_state(
        &sb,
        &format!("targets:\n{}", target("a", "    timeout: 1s\n")),
    );
    let (code, out, _) = ctl(
        &sb,
        &cfg,
        &["pause", "a", "--until-resumed", "--reason", "disk swap"],
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "a: paused until resumed: disk swap\n")
    );
    // --for and --until-resumed say different things: refused together.
    let (code, _, err) = ctl(&sb, &cfg, &["pause", "a", "--until-resumed", "--for", "1h"]);
    assert_eq!(code, 2, "{err}");
    let shown = |sb: &Sandbox| {
        status(sb, &cfg)
            .lines()
            .find(|l| l.starts_with("a "))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        shown(&sb).contains("paused (until resumed: disk swap)"),
        "{}",
        shown(&sb)
    );
    p.signal("TERM");
    assert_eq!(p.wait_exit(PATIENCE), Some(0));
    let p = sb.spawn(&["--config", cfg.to_str().unwrap()]);
    let restored = p.wait_events("pause_restored", Some("a"), 1);
    assert_eq!(restored[0]["until_resumed"], true);
    assert!(
        shown(&sb).contains("paused (until resumed: disk swap)"),
        "{}",
        shown(&sb)
    );
    // Its heartbeat went stale long ago (timeout 1s): never restarted while paused.
    assert!(p.events("command_started", Some("a")).is_empty());
}

#[test]
fn restart_waits_for_the_outcome_and_a_second_one_is_refused_meanwhile() {
    let sb = Sandbox::new();
    let _toucher = Toucher::new(sb.path("slow.beat"));
    let (p, cfg) = start_with_state(
        &sb,
        "targets:\n  - name: slow\n    heartbeat: slow.beat\n    timeout: 1h\n    stop: [sh, -c, 'echo stop >> events']\n    start: [sh, -c, 'sleep 2; echo start >> events']\n  - name: broken\n    heartbeat: broken.beat\n    timeout: 1h\n    start: [sh, -c, 'echo no config for broken >&2; exit 3']\n",
    );
    let first = {
        let (dir, cfg) = (sb.dir.path().to_path_buf(), cfg.clone());
        std::thread::spawn(move || {
            let out = std::process::Command::new(bin())
                .args(["restart", "slow", "--config", cfg.to_str().unwrap()])
                .current_dir(dir)
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        })
    };
    p.wait_command_events("command_started", "start", Some("slow"), 1);
    let (code, out, _) = ctl(&sb, &cfg, &["restart", "slow"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("slow: a restart of this target is already under way"),
        "{out}"
    );
    let (code, out) = first.join().unwrap();
    assert_eq!((code, out.as_str()), (Some(0), "slow: restarted\n"));
    assert_eq!(
        sb.lines("events"),
        ["stop", "start"],
        "one restart, stop then start"
    );
    // A failing start is reported with a non-zero exit, and in its own words.
    let (code, out, _) = ctl(&sb, &cfg, &["restart", "broken"]);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "broken: restart failed: the start command ended with exit status: 3; its output:\n\
         no config for broken\n"
    );
    // reset clears what the failed restarts left.
    let (code, out, _) = ctl(&sb, &cfg, &["reset", "broken"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("broken: reset (was "), "{out}");
}

#[test]
fn names_are_checked_and_a_bad_reload_is_refused_with_its_reason() {
    let sb = Sandbox::new();
    let (p, cfg) = start_with_state(
        &sb,
        &format!(
            "targets:\n{}{}",
            target("a", "    timeout: 1h\n"),
            target("b", "    timeout: 1h\n    enabled: false\n")
        ),
    );
    let (code, _, err) = ctl(&sb, &cfg, &["pause", "nope"]);
    assert_eq!(code, 1);
    assert_eq!(err, "protector: no target named \"nope\"; known: a\n");
    let (code, _, err) = ctl(&sb, &cfg, &["restart", "b"]);
    assert_eq!(code, 1);
    assert!(err.contains("\"b\" is disabled"), "{err}");
    let (code, _, err) = ctl(&sb, &cfg, &["pause", "a", "--for", "soon"]);
    assert_eq!(code, 2, "{err}");
    std::fs::write(
        &cfg,
        "state_file: state.json\ntargets:\n  - name: a\n    timeout: 5m\n",
    )
    .unwrap();
    let (code, out, _) = ctl(&sb, &cfg, &["reload"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("protector.yaml:4:5: targets[0]: missing `heartbeat`")
            || out.contains("heartbeat"),
        "{out}"
    );
    assert!(
        out.ends_with("reload refused; still running the previous config\n"),
        "{out}"
    );
    // Logged before the answer; read from protector's output by a thread of the test's own.
    assert_eq!(p.wait_events("reload_failed", None, 1).len(), 1);
    // Still running the previous config (status reads the state file: the config is broken).
    let out = protector_cmd(sb.dir.path())
        .args(["status", "--state-file", "state.json"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        stdout.starts_with("protector is running"),
        "{stdout}{stderr}"
    );
}

#[test]
fn a_silent_client_holds_up_nothing_and_bad_requests_get_errors() {
    let sb = Sandbox::new();
    let (_p, cfg) = start_with_state(
        &sb,
        &format!("targets:\n{}", target("a", "    timeout: 1h\n")),
    );
    let sock = control_endpoint(&sb);
    // Connects and never writes.
    let silent = UnixStream::connect(&sock).unwrap();
    let began = Instant::now();
    let (code, out, _) = ctl(&sb, &cfg, &["pause", "a"]);
    assert_eq!((code, out.as_str()), (0, "a: paused for 1h00m\n"));
    silent.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut line = String::new();
    BufReader::new(&silent).read_line(&mut line).unwrap();
    assert!(line.contains("no request within 5 s"), "{line}");
    assert!(
        began.elapsed() >= Duration::from_secs(4),
        "answered before the read timeout"
    );

    bad_requests_get_errors(|bytes| raw(&sock, bytes));
    answered_after_a_rush(
        || drop(UnixStream::connect(&sock).unwrap()),
        |bytes| raw(&sock, bytes),
    );
}

#[test]
fn a_command_told_busy_asks_again_until_a_place_is_free() {
    let sb = Sandbox::new();
    let (_p, cfg) = start_with_state(
        &sb,
        &format!("targets:\n{}", target("a", "    timeout: 1h\n")),
    );
    let sock = control_endpoint(&sb);
    // Every place taken by a client that never writes: each keeps it for the 5 s read timeout.
    let silent: Vec<UnixStream> = (0..8)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    wait_until(PATIENCE, "the endpoint to answer busy", || {
        raw(
            &sock,
            b"{\"protocol\":1,\"command\":\"resume\",\"all\":true}\n",
        )["error"]
            == BUSY
    });
    let (code, out, err) = ctl(&sb, &cfg, &["pause", "a"]);
    assert_eq!((code, out.as_str()), (0, "a: paused for 1h00m\n"), "{err}");
    drop(silent);
}

#[test]
fn no_protector_running_is_said_plainly() {
    let sb = Sandbox::new();
    let cfg = sb.write(
        "protector.yaml",
        &format!("targets:\n{}", target("a", "    timeout: 1h\n")),
    );
    let (code, _, err) = ctl(&sb, &cfg, &["reload"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("protector: no protector is running for this config"),
        "{err}"
    );
}

/// A protector that takes a request but never answers (stopped here with SIGSTOP; stuck, in
/// life) does not hold the operator's command: it gives up after its bound (20 s for a pause)
/// and says what may be wrong.
#[test]
fn a_protector_that_does_not_answer_is_given_up_on_with_a_clear_message() {
    let sb = Sandbox::new();
    let (p, cfg) = start_with_state(
        &sb,
        &format!("targets:\n{}", target("a", "    timeout: 1h\n")),
    );
    p.signal("STOP");
    let asked = std::time::Instant::now();
    let (code, _, err) = ctl(&sb, &cfg, &["pause", "a"]);
    let took = asked.elapsed();
    p.signal("CONT");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with(
            "protector: protector did not answer within 20s: it may be stopped or stuck"
        ),
        "{err}"
    );
    assert!(took < std::time::Duration::from_secs(50), "{took:?}");
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn another_user_is_refused_by_the_socket_and_by_its_peer_check() {
    if !is_root()
        || std::process::Command::new("setpriv")
            .arg("--version")
            .output()
            .is_err()
    {
        eprintln!("skipped: acting as root and as another user needs root and setpriv");
        return;
    }
    let sb = Sandbox::new();
    let (_p, cfg) = start_with_state(
        &sb,
        &format!("targets:\n{}", target("a", "    timeout: 1h\n")),
    );
    let sock = control_endpoint(&sb);
    let as_nobody = |cfg: &Path| {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin())
            .args(["pause", "a", "--config", cfg.to_str().unwrap()])
            .env_remove("XDG_RUNTIME_DIR")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = as_nobody(&cfg);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not allowed to use"), "{err}");
    // Even where the socket's mode lets them in, the daemon checks who they are.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, err) = as_nobody(&cfg);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("refused: only root or the user protector runs as"),
        "{err}"
    );
    assert!(!status(&sb, &cfg).contains("paused"));
}
