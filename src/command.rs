//! Running one stop or start command: spawn it contained (process group / Job Object), bound
//! it by a timeout that kills the whole tree, and keep a bounded tail of its output.
//!
//! Output is read on two small threads so a chatty command never blocks on a full pipe. A
//! command that starts a daemon and exits counts as finished when *it* exits: the daemon may
//! keep the pipes open for ever, so after the exit the readers get a short grace and are then
//! left to finish on their own (they end when the daemon closes its copies). The daemon is
//! not killed: the timeout only applies while the command itself runs. Pipes still open then
//! are also handed to a reader that outlives protector (`platform/drain_unix.rs`), so the
//! daemon's next write after protector exits does not kill it.

use std::io::Read;
use std::process::ExitStatus;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::CommandLine;
use crate::platform;

/// Bytes of each stream kept for the log.
pub const TAIL_BYTES: usize = 4096;
/// How long to wait for output after the command exited.
const DRAIN_GRACE: Duration = Duration::from_millis(200);

#[derive(Debug)]
pub struct Outcome {
    /// The exit status, or why the command could not be spawned or waited for.
    pub status: Result<ExitStatus, String>,
    /// The command outlived its timeout and its process tree was killed.
    pub timed_out: bool,
    pub duration: Duration,
    pub stdout: String,
    pub stderr: String,
    /// It could not run for lack of resources (processes, threads, file descriptors,
    /// memory): worth trying again soon, and no fault of the command.
    pub transient: bool,
    /// More output came than was kept (its start is cut).
    pub cut: bool,
}

impl Outcome {
    /// A command that never ran.
    pub fn failed(reason: String) -> Outcome {
        Outcome {
            status: Err(reason),
            timed_out: false,
            duration: Duration::ZERO,
            stdout: String::new(),
            stderr: String::new(),
            transient: false,
            cut: false,
        }
    }

    /// A command that could not run for lack of resources.
    pub fn short_of_resources(reason: String) -> Outcome {
        Outcome {
            transient: true,
            ..Outcome::failed(reason)
        }
    }

    pub fn success(&self) -> bool {
        !self.timed_out && self.status.as_ref().is_ok_and(|s| s.success())
    }

    /// Why it did not succeed, in words that follow "the command": `could not run: ...`,
    /// `timed out`, `ended with exit status: 1`.
    pub fn failure(&self) -> Option<String> {
        match &self.status {
            _ if self.success() => None,
            Err(reason) => Some(format!("could not run: {reason}")),
            Ok(_) if self.timed_out => Some("timed out and was killed".into()),
            Ok(status) => Some(format!("ended with {status}")),
        }
    }
}

/// Runs `line` with extra environment `env`, killing its tree after `timeout`. `spawned` is
/// told the process group's id once the command runs. The last [`TAIL_BYTES`] of each stream
/// are kept.
pub fn run(
    line: &CommandLine,
    env: &[(&str, String)],
    timeout: Duration,
    spawned: impl FnOnce(u32),
) -> Outcome {
    run_keeping(line, env, timeout, TAIL_BYTES, spawned)
}

/// [`run`], keeping the last `keep` bytes of each stream.
pub fn run_keeping(
    line: &CommandLine,
    env: &[(&str, String)],
    timeout: Duration,
    keep: usize,
    spawned: impl FnOnce(u32),
) -> Outcome {
    match start(line, env) {
        Ok(started) => started.finish(timeout, keep, spawned),
        Err(failed) => failed,
    }
}

/// A command spawned and not yet waited for: [`start`], then [`Started::finish`]. One
/// dropped unfinished (nobody will wait for it) has its tree killed and is reaped
/// (`platform::Running`).
pub struct Started {
    child: platform::Running,
    began: Instant,
    /// The target it runs for, named to a drain process that takes its output over.
    target: String,
}

/// Spawns `line` with extra environment `env`; the outcome of a command that could not be
/// started, else what [`Started::finish`] waits for.
pub fn start(line: &CommandLine, env: &[(&str, String)]) -> Result<Started, Outcome> {
    let began = Instant::now();
    let mut cmd = match line {
        CommandLine::Exec(argv) => {
            let mut c = std::process::Command::new(&argv[0]);
            c.args(&argv[1..]);
            c
        }
        CommandLine::Shell { line, .. } => platform::shell_command(line),
    };
    for name in crate::systemd::PRIVATE_ENV {
        cmd.env_remove(name);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let target = env.iter().find(|(k, _)| *k == "PROTECTOR_TARGET");
    let target = target.map_or(String::new(), |(_, name)| name.clone());
    match platform::start(cmd) {
        Ok(child) => Ok(Started {
            child,
            began,
            target,
        }),
        Err(e) => Err(Outcome {
            duration: began.elapsed(),
            transient: platform::is_resource_shortage(&e),
            ..Outcome::failed(format!("cannot start {:?}: {e}", line.argv()[0]))
        }),
    }
}

impl Started {
    /// Tells `spawned` the command's process group, keeps the last `keep` bytes of each
    /// stream, and waits for the command, killing its tree `timeout` after it started.
    pub fn finish(self, timeout: Duration, keep: usize, spawned: impl FnOnce(u32)) -> Outcome {
        let Started {
            mut child,
            began: started,
            target,
        } = self;
        spawned(child.id());
        let (done_tx, done_rx) = mpsc::channel();
        let (out, err) = child.take_output();
        // Second handles on the pipes, for handing them over if they outlive the command.
        let ends = [
            out.as_ref().and_then(platform::output_end),
            err.as_ref().and_then(platform::output_end),
        ];
        let stdout = out.map(|r| Tail::spawn_reader(r, keep, done_tx.clone()));
        let stderr = err.map(|r| Tail::spawn_reader(r, keep, done_tx.clone()));
        drop(done_tx);

        let (status, timed_out) =
            wait_bounded(&mut child, crate::schedule::later(started, timeout));
        let duration = started.elapsed();
        child.untie();

        hand_over_what_stays_open(&target, [&stdout, &stderr], ends, &done_rx);
        let (out_text, err_text) = (
            stdout.as_ref().map(Tail::text).unwrap_or_default(),
            stderr.as_ref().map(Tail::text).unwrap_or_default(),
        );
        let cut = [&stdout, &stderr]
            .into_iter()
            .flatten()
            .any(|t| t.lock().dropped);
        Outcome {
            status,
            timed_out,
            duration,
            stdout: out_text,
            stderr: err_text,
            transient: false,
            cut,
        }
    }
}

/// Waits for the command itself (not for what it left running) until `deadline`, then kills
/// its tree: its status, and whether it timed out. A bounded poll: the same code for process
/// groups and Job Objects, no extra thread per command, and at most 20 ms between the
/// command's exit and noticing it.
fn wait_bounded(
    child: &mut platform::Running,
    deadline: Instant,
) -> (Result<ExitStatus, String>, bool) {
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return (Ok(status), false),
            Ok(None) => {}
            Err(e) => return (Err(format!("cannot wait for the command: {e}")), false),
        }
        let now = Instant::now();
        if now >= deadline {
            let _ = child.kill_tree();
            let status = child.wait();
            return (
                status.map_err(|e| format!("cannot wait for the killed command: {e}")),
                true,
            );
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Gives the readers a moment to collect the last output (each says so on `done` when its
/// stream ends), but never waits for a daemon that inherited the pipes: the ends still open
/// go to a drain process (`platform::hand_over_output`).
fn hand_over_what_stays_open(
    target: &str,
    tails: [&Option<Tail>; 2],
    ends: [Option<platform::OutputEnd>; 2],
    done: &mpsc::Receiver<()>,
) {
    let drain_until = Instant::now() + DRAIN_GRACE;
    while let Some(left) = drain_until.checked_duration_since(Instant::now()) {
        if done.recv_timeout(left).is_err() {
            break;
        }
    }
    let open: Vec<_> = tails
        .into_iter()
        .zip(ends)
        .filter_map(|(tail, end)| Some((tail.as_ref()?, end?)))
        .filter(|(tail, _)| !tail.finished())
        .map(|(_, end)| end)
        .collect();
    if open.is_empty() {
        return;
    }
    match platform::hand_over_output(target, open) {
        Ok(false) => {}
        Ok(true) => tracing::debug!(
            event = "output_handed_over",
            target = %target,
            "what the command left running keeps its output open; a drain process reads it now"
        ),
        Err(e) => tracing::warn!(event = "output_not_handed_over", target = %target, "{e}"),
    }
}

/// The last `keep` bytes of a stream.
#[derive(Default)]
struct TailBuf {
    bytes: Vec<u8>,
    keep: usize,
    dropped: bool,
    /// Every writer closed the stream.
    finished: bool,
}

#[derive(Clone, Default)]
struct Tail(Arc<Mutex<TailBuf>>);

impl Tail {
    fn spawn_reader(
        mut reader: impl Read + Send + 'static,
        keep: usize,
        done: mpsc::Sender<()>,
    ) -> Tail {
        let tail = Tail::default();
        tail.lock().keep = keep;
        let shared = tail.clone();
        let spawned = std::thread::Builder::new()
            .name("protector-output".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut buf = vec![0u8; 8192];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => shared.push(&buf[..n]),
                    }
                }
                shared.lock().finished = true;
                let _ = done.send(());
            });
        if spawned.is_err() {
            tail.push(b"(output not captured: cannot start a reader thread)");
        }
        tail
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TailBuf> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn finished(&self) -> bool {
        self.lock().finished
    }

    fn push(&self, data: &[u8]) {
        let mut t = self.lock();
        t.bytes.extend_from_slice(data);
        if t.bytes.len() > 2 * t.keep {
            let cut = t.bytes.len() - t.keep;
            t.bytes.drain(..cut);
            t.dropped = true;
        }
    }

    fn text(&self) -> String {
        let mut t = self.lock();
        let start = t.bytes.len().saturating_sub(t.keep);
        let dropped = t.dropped || start > 0;
        t.dropped = dropped;
        let text = String::from_utf8_lossy(&t.bytes[start..]);
        let text = text.trim();
        if dropped {
            format!("...{text}")
        } else {
            text.to_string()
        }
    }
}
