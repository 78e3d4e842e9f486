//! Test harness: runs the real protector binary in a temp dir with real files and real child
//! processes, and waits for what it does with deadlines (never a bare sleep).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tempfile::TempDir;

/// Generous bound for anything that should happen within a couple of seconds, so tests hold
/// on a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_protector"))
}

/// `protector ARGS` in `dir`, run to completion.
pub fn protector_cmd(dir: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(bin());
    cmd.current_dir(dir);
    cmd
}

/// Polls `cond` until it holds; panics with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct Sandbox {
    pub dir: TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("protector-test")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Changes the file as a heartbeat would (content and mtime).
    pub fn touch(&self, name: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(name))
            .unwrap();
        f.write_all(b".").unwrap();
    }

    /// Lines of a file the test's commands append to (empty when it does not exist yet).
    pub fn lines(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.path(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Starts `protector --log-format json -v ARGS` in the sandbox.
    pub fn spawn(&self, args: &[&str]) -> Running {
        self.spawn_env(args, &[])
    }

    /// `spawn` with extra environment variables.
    pub fn spawn_env(&self, args: &[&str], env: &[(&str, &str)]) -> Running {
        self.spawn_through(&[], args, env)
    }

    /// `spawn` with protector's command line appended to `wrapper` (a program that sets
    /// something up, then runs it).
    pub fn spawn_through(&self, wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Running {
        let bin = bin();
        let (program, first): (&std::ffi::OsStr, &[&str]) = match wrapper {
            [program, rest @ ..] => (program.as_ref(), rest),
            [] => (bin.as_os_str(), &[]),
        };
        let mut cmd = Command::new(program);
        cmd.args(first);
        if !wrapper.is_empty() {
            cmd.arg(&bin);
        }
        let mut child = cmd
            .envs(env.iter().copied())
            .args(["--log-format", "json", "-v"])
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "message": line, "raw": true }));
                sink.lock().unwrap().push(value);
            }
        });
        Running { child, log }
    }

    /// Starts protector on a config written into the sandbox.
    pub fn run_config(&self, yaml: &str) -> Running {
        self.run_config_env(yaml, &[])
    }

    pub fn run_config_env(&self, yaml: &str, env: &[(&str, &str)]) -> Running {
        let cfg = self.write("protector.yaml", yaml);
        self.spawn_env(&["--config", cfg.to_str().unwrap()], env)
    }
}

/// A protector running in the background; killed when dropped.
pub struct Running {
    pub child: Child,
    log: Arc<Mutex<Vec<Value>>>,
}

impl Running {
    /// Log records so far with this `event` field (and target, when given).
    pub fn events(&self, event: &str, target: Option<&str>) -> Vec<Value> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["event"] == event)
            .filter(|v| target.is_none_or(|t| v["target"] == t))
            .cloned()
            .collect()
    }

    /// Waits until `n` records carry this `event` field and returns them.
    pub fn wait_events(&self, event: &str, target: Option<&str>, n: usize) -> Vec<Value> {
        let mut found = Vec::new();
        wait_until(
            PATIENCE,
            &format!("{n} log records with event {event:?} for {target:?}"),
            || {
                found = self.events(event, target);
                found.len() >= n
            },
        );
        found
    }

    /// Log records so far of a command's `event` (`command_started`, `command_finished`,
    /// ...) for `command` (`stop`, `start`, `skip_if`, `notify`).
    pub fn command_events(&self, event: &str, command: &str, target: Option<&str>) -> Vec<Value> {
        self.events(event, target)
            .into_iter()
            .filter(|v| v["command"] == command)
            .collect()
    }

    /// Waits until `n` records are `command_events` and returns them.
    pub fn wait_command_events(
        &self,
        event: &str,
        command: &str,
        target: Option<&str>,
        n: usize,
    ) -> Vec<Value> {
        let mut found = Vec::new();
        wait_until(
            PATIENCE,
            &format!("{n} log records with event {event:?} of {command} for {target:?}"),
            || {
                found = self.command_events(event, command, target);
                found.len() >= n
            },
        );
        found
    }

    pub fn log_text(&self) -> String {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// protector has not exited.
    pub fn child_alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends a signal by name (`TERM`, `HUP`, `KILL`).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits for protector to exit and returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let mut status = None;
        wait_until(limit, "protector to exit", || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap().code()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of /proc/PID/status in kB or as a count (`VmHWM`, `Threads`).
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Is a process with this pid alive (and not a zombie)?
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        })
        .unwrap_or(false)
}

/// Writes to a heartbeat file every 200 ms (ignoring failures, e.g. while its directory is
/// gone) until dropped.
pub struct Toucher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Toucher {
    pub fn new(path: PathBuf) -> Toucher {
        Toucher::with(move || {
            let _ = std::fs::write(&path, format!("{:?}", SystemTime::now()));
        })
    }

    pub fn with(mut beat: impl FnMut() + Send + 'static) -> Toucher {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                beat();
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        Toucher {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Toucher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How many times target `name` of [`target`] was started.
pub fn starts_of(sb: &Sandbox, name: &str) -> usize {
    sb.lines("events")
        .iter()
        .filter(|l| *l == &format!("start {name}"))
        .count()
}

/// A target whose start appends "start NAME" to `events`; `extra` adds settings.
pub fn target(name: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    heartbeat: {name}.beat\n    start: [sh, -c, 'echo start {name} >> events']\n{extra}"
    )
}

/// Kills a process the test started through protector (cleanup).
pub fn kill(pid: u32) {
    let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
}

/// Reads a pid written by a test command, waiting for it to appear.
pub fn read_pid(sandbox: &Sandbox, name: &str) -> u32 {
    let mut pid = 0;
    wait_until(PATIENCE, &format!("pid file {name}"), || {
        pid = std::fs::read_to_string(sandbox.path(name))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        pid != 0
    });
    pid
}

#[path = "../../examples/support/timestamp.rs"]
mod rfc3339;

/// When a log record was written, in seconds since the Unix epoch.
pub fn timestamp(record: &Value) -> f64 {
    rfc3339::epoch_secs(record["timestamp"].as_str().expect("timestamp"))
}

/// A protector on `yaml` (after `state_file: state.json`), started and ready for operators'
/// requests; returns it and its config file.
pub fn start_with_state(sb: &Sandbox, yaml: &str) -> (Running, PathBuf) {
    let p = sb.run_config(&format!("state_file: state.json\n{yaml}"));
    p.wait_events("started", None, 1);
    (p, sb.path("protector.yaml"))
}

/// `protector ARGS --config CFG` in the sandbox: (exit code, stdout, stderr).
pub fn ctl(sb: &Sandbox, cfg: &Path, args: &[&str]) -> (i32, String, String) {
    let out = protector_cmd(sb.dir.path())
        .args(args)
        .args(["--config", cfg.to_str().unwrap()])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The control endpoint (socket or pipe) of the sandbox's protector, as its state file says.
pub fn control_endpoint(sb: &Sandbox) -> PathBuf {
    let mut path = None;
    wait_until(
        PATIENCE,
        "the state file to name the control endpoint",
        || {
            let text = std::fs::read_to_string(sb.path("state.json")).unwrap_or_default();
            let v: Value = serde_json::from_str(&text).unwrap_or_default();
            path = v["control_socket"].as_str().map(PathBuf::from);
            path.is_some()
        },
    );
    path.unwrap()
}

/// What the daemon answers while every place for a connection is taken.
pub const BUSY: &str = "busy: too many requests at once; try again";

/// What a control endpoint answers a request it cannot take: malformed, too large, or of
/// another protocol version. `raw` sends the bytes and returns the one-line answer.
pub fn bad_requests_get_errors(raw: impl Fn(&[u8]) -> Value) {
    let v = raw(b"hello\n");
    assert_eq!(v["ok"], false);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("malformed request"),
        "{v}"
    );
    let mut big = vec![b'x'; 70_000];
    big.push(b'\n');
    assert_eq!(raw(&big)["error"], "request too large: at most 65536 bytes");
    let v = raw(b"{\"protocol\":2,\"command\":\"reset\",\"all\":true}\n");
    assert_eq!(
        v["error"],
        "protocol version 2 is not spoken here (this protector speaks 1)"
    );
}

/// More clients than there are places connect and leave at once (`connect_and_leave`): each
/// place is given back (until then a request may be told [`BUSY`]), and a request through
/// `raw` is answered again.
pub fn answered_after_a_rush(connect_and_leave: impl Fn(), raw: impl Fn(&[u8]) -> Value) {
    for _ in 0..50 {
        connect_and_leave();
    }
    let mut last = Value::Null;
    wait_until(PATIENCE, "a request answered after the rush", || {
        last = raw(b"{\"protocol\":1,\"command\":\"reset\",\"all\":true}\n");
        last["error"] != BUSY
    });
    assert_eq!(last["ok"], true, "{last}");
}

/// A child leading its own process group (spawned with `process_group(0)`), the whole group
/// killed and the child reaped when dropped, however the test ends.
#[cfg(unix)]
pub struct Group(pub std::process::Child);

#[cfg(unix)]
impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: kill touches no memory; the group is the test's own child's.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}
