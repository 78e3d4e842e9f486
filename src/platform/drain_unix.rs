//! What a start command leaves running (`my-daemon &`) inherits the command's output pipes.
//! If protector were their only reader, the daemon's next write after protector exits (a
//! `systemctl restart protector`, an upgrade, a crash) would kill it with SIGPIPE. So when
//! the command has exited and its pipes are still open, their read ends are handed to a
//! small process of their own, `protector __drain-output NAME` (its own process group, `/` as
//! its directory, no environment), which reads and discards until every writer has closed
//! them, then exits: it lives exactly as long as the daemon keeps that output open, and
//! protector's exit or restart cannot touch it. The command's own output is still captured
//! by protector as before; what the daemon writes afterwards is not kept (redirect it to keep
//! it). Tested by `tests/commands.rs`.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// A second handle on the read end of a command's output pipe (close-on-exec, so no other
/// command inherits it).
pub type OutputEnd = OwnedFd;

/// The program that drains output (protector itself), set by the CLI before a daemon runs;
/// without it (library tests) nothing is handed over.
static DRAIN_PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// The word `protector` understands as "drain the output on fds 0 and 1".
pub const DRAIN_WORD: &str = "__drain-output";

/// Remembers this executable as the program that drains output. Called at start-up, while
/// the file is certainly the one running (a package upgrade replaces it later).
pub fn use_this_program_to_drain() {
    if let Ok(exe) = std::env::current_exe() {
        let _ = DRAIN_PROGRAM.set(exe);
    }
}

pub fn output_end(pipe: &impl AsFd) -> Option<OutputEnd> {
    pipe.as_fd().try_clone_to_owned().ok()
}

/// Hands the read ends `ends` (at most two: stdout's, stderr's) of the command run for
/// `target`, still open after it exited, to a drain process. Its exit is waited for on a
/// small thread, so it never lingers as a zombie while protector runs. False when there was
/// nothing to hand over, or no program to hand it to.
pub fn hand_over_output(target: &str, ends: Vec<OutputEnd>) -> Result<bool, String> {
    let Some(program) = DRAIN_PROGRAM.get() else {
        return Ok(false);
    };
    let mut ends = ends.into_iter();
    let Some(first) = ends.next() else {
        return Ok(false);
    };
    let second = ends.next().map_or_else(Stdio::null, Stdio::from);
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(program)
        .args([DRAIN_WORD, target])
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::from(first))
        .stdout(second)
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {} {DRAIN_WORD}: {e}", program.display()))?;
    let reaper = std::thread::Builder::new()
        .name("protector-drain".into())
        .stack_size(64 * 1024)
        .spawn(move || child.wait());
    reaper
        .map(|_| true)
        .map_err(|e| format!("cannot wait for the drain: {e}"))
}

/// `protector __drain-output NAME`: reads fds 0 and 1 (both read ends of pipes; NAME is only
/// for `ps`) until both reach their end, discarding what comes.
/// Its exit status: 0.
pub fn drain_main() -> u8 {
    fn drain(mut from: std::fs::File) {
        use std::io::Read;
        let mut buf = [0u8; 8192];
        while matches!(from.read(&mut buf), Ok(n) if n > 0) {}
    }
    let open = |fd: std::os::fd::BorrowedFd| fd.try_clone_to_owned().ok().map(std::fs::File::from);
    let stdin = open(std::io::stdin().as_fd());
    let second = open(std::io::stdout().as_fd());
    let other = second.map(|f| std::thread::spawn(move || drain(f)));
    if let Some(f) = stdin {
        drain(f);
    }
    if let Some(t) = other {
        let _ = t.join();
    }
    0
}
