//! Operators' requests on Windows, over the named pipe (run under Wine in CI): pause shown by
//! status, restart waited for, reload applied or refused with its reason (Windows has no
//! SIGHUP: this is how a changed config is applied without restarting the service), and the
//! pipe's defences: a client that never writes holds up nothing, a malformed or oversized
//! request gets an error. What is the same on every OS is in tests/control.rs.
#![cfg(windows)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

fn pipe(sb: &Sandbox) -> PathBuf {
    let path = control_endpoint(sb);
    assert!(
        path.to_string_lossy().starts_with(r"\\.\pipe\protector-"),
        "{path:?}"
    );
    path
}

/// Opens the pipe as a client does: while every instance is busy (ERROR_PIPE_BUSY, 231),
/// again.
fn open(pipe: &Path) -> std::fs::File {
    let mut file = None;
    wait_until(PATIENCE, "a free instance of the pipe", || {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(pipe)
        {
            Ok(f) => file = Some(f),
            Err(e) if e.raw_os_error() == Some(231) => {}
            Err(e) => panic!("{e}"),
        }
        file.is_some()
    });
    file.unwrap()
}

fn raw(pipe: &Path, bytes: &[u8]) -> serde_json::Value {
    let mut f = open(pipe);
    let _ = f.write_all(bytes);
    let mut line = String::new();
    BufReader::new(&f).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

const TARGETS: &str = "  - name: svc
    heartbeat: svc.beat
    timeout: 1h
    shell: true
    stop: echo stop>> events.txt
    start: echo start>> events.txt
";

#[test]
fn pause_restart_and_reload_over_the_named_pipe() {
    let sb = Sandbox::new();
    let (_p, cfg) = start_with_state(&sb, &format!("targets:\n{TARGETS}"));
    let (code, out, err) = ctl(
        &sb,
        &cfg,
        &["pause", "svc", "--for", "10m", "--reason", "patching"],
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "svc: paused for 10m00s: patching\n"),
        "{err}"
    );
    let (_, st, _) = ctl(&sb, &cfg, &["status"]);
    assert!(st.contains("left: patching)"), "{st}");
    let (code, out, err) = ctl(&sb, &cfg, &["restart", "svc"]);
    assert_eq!((code, out.as_str()), (0, "svc: restarted\n"), "{err}");
    assert_eq!(
        sb.lines("events.txt")
            .iter()
            .map(|l| l.trim_end())
            .collect::<Vec<_>>(),
        ["stop", "start"]
    );
    // A changed config applied without restarting the service.
    std::fs::write(
        &cfg,
        format!(
            "state_file: state.json\ntargets:\n{}",
            TARGETS.replace("1h", "2h")
        ),
    )
    .unwrap();
    let (code, out, _) = ctl(&sb, &cfg, &["reload"]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "config reloaded: 0 unchanged, 1 changed, 0 added, 0 removed, 0 disabled\n"
        )
    );
    std::fs::write(&cfg, "state_file: state.json\ntargets: [\n").unwrap();
    let (code, out, _) = ctl(&sb, &cfg, &["reload"]);
    assert_eq!(code, 1);
    assert!(
        out.ends_with("reload refused; still running the previous config\n"),
        "{out}"
    );
}

#[test]
fn a_silent_client_holds_up_nothing_and_bad_requests_get_errors() {
    let sb = Sandbox::new();
    let (_p, cfg) = start_with_state(&sb, &format!("targets:\n{TARGETS}"));
    let pipe = pipe(&sb);
    let silent = open(&pipe);
    let began = Instant::now();
    let (code, out, err) = ctl(&sb, &cfg, &["reset", "svc"]);
    assert_eq!(code, 0, "{out}{err}");
    let mut line = String::new();
    BufReader::new(&silent).read_line(&mut line).unwrap();
    assert!(line.contains("no request within 5 s"), "{line}");
    assert!(began.elapsed() >= Duration::from_secs(4));
    bad_requests_get_errors(|bytes| raw(&pipe, bytes));
    // (One client may come and go before protector waits on that pipe instance.)
    answered_after_a_rush(|| drop(open(&pipe)), |bytes| raw(&pipe, bytes));
}
