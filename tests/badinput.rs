//! Hostile and odd input: configs built to blow up a parser, files that are not configs, and
//! legacy arguments with awkward paths and shell metacharacters. Every case must end in a
//! clear error (or the expected run) within bounded time and memory: protector runs under a
//! 512 MiB address-space limit and is killed if it takes longer than the deadline.
#![cfg(unix)]

mod common;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const MEMORY_LIMIT: u64 = 512 * 1024 * 1024;

/// `protector ARGS` in the sandbox under the memory limit; returns (exit code, stderr).
fn bounded(sb: &Sandbox, args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .current_dir(sb.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: MEMORY_LIMIT,
                rlim_max: MEMORY_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let end = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("protector {args:?} still running after {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = reader.join().unwrap();
    let code = status
        .code()
        .unwrap_or_else(|| panic!("protector {args:?} died of a signal: {status:?}\n{stderr}"));
    (code, stderr)
}

fn check(sb: &Sandbox, name: &str) -> (i32, String) {
    bounded(sb, &["check", "--config", name])
}

#[test]
fn exponential_aliases_are_refused() {
    let sb = Sandbox::new();
    let mut yaml = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..12 {
        let prev = format!("*a{}", i - 1);
        yaml.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
    }
    yaml.push_str("targets: [*a11]\n");
    sb.write("laughs.yaml", &yaml);
    let (code, err) = check(&sb, "laughs.yaml");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("laughs.yaml") && err.contains("repetition limit exceeded"),
        "{err}"
    );
}

#[test]
fn deep_nesting_is_refused_with_its_position() {
    let sb = Sandbox::new();
    let depth = 10_000;
    sb.write(
        "flow.yaml",
        &format!("targets: {}{}\n", "[".repeat(depth), "]".repeat(depth)),
    );
    let (code, err) = check(&sb, "flow.yaml");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nested more than 128 deep"), "{err}");
    assert!(err.contains("flow.yaml:1:"), "names the line: {err}");

    let mut block = String::from("targets:\n");
    for i in 0..2000 {
        block.push_str(&format!("{}- x:\n", "  ".repeat(i)));
    }
    sb.write("block.yaml", &block);
    let (code, err) = check(&sb, "block.yaml");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nested more than 128 deep"), "{err}");
}

#[test]
fn an_oversized_file_is_refused_without_reading_it() {
    let sb = Sandbox::new();
    // Sparse: 65 MiB that take no disk space and would not fit under the memory limit
    // several times over once parsed.
    let f = std::fs::File::create(sb.path("huge.yaml")).unwrap();
    f.set_len(65 * 1024 * 1024).unwrap();
    let (code, err) = check(&sb, "huge.yaml");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("huge.yaml") && err.contains("too large"),
        "{err}"
    );
}

#[test]
fn a_large_valid_file_loads_within_bounds() {
    let sb = Sandbox::new();
    // 16 MiB of comments and 20,000 targets.
    let mut yaml = String::with_capacity(20 << 20);
    let comment = format!("# {}\n", "x".repeat(1022));
    for _ in 0..16 * 1024 {
        yaml.push_str(&comment);
    }
    yaml.push_str("defaults: {timeout: 60s, start: [\"true\"]}\ntargets:\n");
    for i in 0..20_000 {
        yaml.push_str(&format!("  - {{name: t{i}, heartbeat: t{i}.beat}}\n"));
    }
    sb.write("large.yaml", &yaml);
    let (code, err) = bounded(&sb, &["check", "--config", "large.yaml"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn non_utf8_bytes_are_located() {
    let sb = Sandbox::new();
    std::fs::write(
        sb.path("latin1.yaml"),
        b"targets:\n  - name: caf\xe9\n    heartbeat: x\n",
    )
    .unwrap();
    let (code, err) = check(&sb, "latin1.yaml");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("latin1.yaml:2:14") && err.contains("not valid UTF-8"),
        "{err}"
    );
}

#[test]
fn a_directory_or_a_fifo_is_not_a_config() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.path("conf.d")).unwrap();
    let (code, err) = check(&sb, "conf.d");
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("conf.d") && err.contains("not a regular file"),
        "{err}"
    );

    // Nobody ever writes to this FIFO: opening it to read would block for ever.
    let fifo = sb.path("pipe.yaml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for args in [
        &["check", "--config", "pipe.yaml"][..],
        &["--config", "pipe.yaml"][..],
    ] {
        let (code, err) = bounded(&sb, args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains("not a regular file"), "{err}");
    }
}

/// The legacy form with a heartbeat path full of spaces, quotes and non-ASCII letters, deep in
/// a directory tree whose path is over a thousand bytes long, and commands that use quoting,
/// variables, arithmetic, `;` and redirection: each runs exactly as `sh -c` would run it.
#[test]
fn legacy_odd_paths_and_shell_metacharacters() {
    let sb = Sandbox::new();
    let mut dir = sb.dir.path().to_path_buf();
    for i in 0..8 {
        dir.push(format!("{i} dossier été «q» 'it''s' {}", "ü".repeat(50)));
    }
    std::fs::create_dir_all(&dir).unwrap();
    let beat = dir.join("mínion alive ✓.beat");
    assert!(beat.as_os_str().len() > 1000);
    std::fs::write(&beat, b"").unwrap();
    let stop =
        r#"printf '%s|' "it's" 'a;b' "$((6*7))" '$HOME' "q\"q" > "stop out"; echo >> "stop out""#;
    let start = r#"x=`echo back tick`; echo "$x & more" > 'start out'"#;
    let p = sb.spawn(&[beat.to_str().unwrap(), stop, start, "1"]);
    wait_until(PATIENCE, "both commands", || {
        sb.path("stop out").exists() && sb.lines("start out").len() == 1
    });
    assert_eq!(sb.lines("stop out"), [r#"it's|a;b|42|$HOME|q"q|"#]);
    assert_eq!(sb.lines("start out"), ["back tick & more"]);
    let stale = p.wait_events("stale", None, 1);
    // Named after the file, with what a name may not hold (the ✓) made `_`.
    assert_eq!(
        stale[0]["target"],
        "mínion alive _.beat",
        "{}",
        p.log_text()
    );
}
