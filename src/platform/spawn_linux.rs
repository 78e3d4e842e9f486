//! Commands started without forking protector (Linux). A command must die with protector
//! (`PR_SET_PDEATHSIG`), which only the new process can ask for, between its fork and its
//! exec: that made the standard library fork the whole daemon for each command (its page
//! tables copied; forks of one process are taken one at a time), so a burst of restarts
//! queued behind each other. Instead each command starts as `protector __exec PARENT PROGRAM
//! ARGS...` through `posix_spawn` (a vfork-style clone: nothing of protector is copied), in
//! its own process group as before; that small process asks for the parent-death signal,
//! checks its parent is still protector, and replaces itself with the command. The pid, the
//! process group, the pipes and the environment are the command's from the start.
//!
//! A command that cannot be executed (not found, not executable, no memory) ends the small
//! process with [`EXEC_FAILED_STATUS`] and one line on stderr that [`exec_failure`] reads
//! back, so it is still reported as "could not run", not as an exit status.

use std::ffi::OsString;
use std::process::Command;
use std::sync::OnceLock;

/// The word `protector` understands as "tie yourself to protector, then become ARGS".
pub const EXEC_WORD: &str = "__exec";

/// The exit status of a command that could not be executed, as shells use it.
pub const EXEC_FAILED_STATUS: i32 = 127;

/// How the line that says why begins.
const EXEC_FAILED: &str = "protector __exec: cannot execute: errno ";

/// The running executable, whatever happened to its file since (an upgrade replaces it).
const THIS_PROGRAM: &str = "/proc/self/exe";

/// Set by the CLI before a daemon runs (library tests have no protector to run as the shim:
/// their commands are forked, the way this replaces).
static ENABLED: OnceLock<()> = OnceLock::new();

/// Commands start through `protector __exec` from now on, once a first try shows protector
/// can start itself here; why not, when it cannot (no /proc, an emulator that cannot run a
/// foreign binary directly): commands are then forked, as before, and run all the same.
pub fn spawn_without_fork() -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    // The step, asked to become a program that is not there: it must say so, as it would.
    let tried = Command::new(THIS_PROGRAM)
        .arg0("protector")
        .arg(EXEC_WORD)
        .arg(std::process::id().to_string())
        .arg("/nonexistent/protector-spawn-check")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match tried {
        Ok(out)
            if exec_failure(out.status.code(), &String::from_utf8_lossy(&out.stderr)).is_some() =>
        {
            let _ = ENABLED.set(());
            Ok(())
        }
        Ok(out) => Err(format!("protector {EXEC_WORD} ended with {}", out.status)),
        Err(e) => Err(format!("cannot start {THIS_PROGRAM}: {e}")),
    }
}

/// `cmd` (its program, arguments, environment and directory; set its stdio afterwards), made
/// to die with protector: through the small process when enabled, else by a hook run
/// between fork and exec.
pub(super) fn tied_to_protector(mut cmd: Command) -> Command {
    if ENABLED.get().is_none() {
        super::die_with_protector(&mut cmd);
        return cmd;
    }
    use std::os::unix::process::CommandExt;
    let mut via = Command::new(THIS_PROGRAM);
    via.arg0("protector")
        .arg(EXEC_WORD)
        .arg(std::process::id().to_string())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => via.env(key, value),
            None => via.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        via.current_dir(dir);
    }
    via
}

/// `protector __exec PARENT PROGRAM ARGS...`: dies with PARENT, then becomes PROGRAM; when
/// that fails, its exit status and what to say on stderr.
pub fn exec_main(args: &[OsString]) -> (u8, String) {
    use std::os::unix::process::CommandExt;
    let [parent, program, rest @ ..] = args else {
        return (
            2,
            "usage: protector __exec PARENT PROGRAM [ARGS...]\n".into(),
        );
    };
    let parent: u32 = parent.to_str().and_then(|p| p.parse().ok()).unwrap_or(0);
    // SAFETY: prctl and getppid touch no memory of ours.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
            return failed(&std::io::Error::last_os_error());
        }
        // protector died before the line above: nothing would kill this one.
        if libc::getppid() as u32 != parent {
            return failed(&std::io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    // Only returns when it could not execute.
    failed(&Command::new(program).args(rest).exec())
}

fn failed(e: &std::io::Error) -> (u8, String) {
    let errno = e.raw_os_error().unwrap_or(0);
    (
        EXEC_FAILED_STATUS as u8,
        format!("{EXEC_FAILED}{errno}: {e}\n"),
    )
}

/// Why a command that ended with `code` and wrote `stderr` could not be executed, if that
/// is what happened: the error, rebuilt.
pub fn exec_failure(code: Option<i32>, stderr: &str) -> Option<std::io::Error> {
    if code != Some(EXEC_FAILED_STATUS) {
        return None;
    }
    let said = stderr.lines().last()?.strip_prefix(EXEC_FAILED)?;
    let errno: i32 = said.split(':').next()?.parse().ok()?;
    Some(std::io::Error::from_raw_os_error(errno))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_exec_is_said_so_that_it_is_read_back() {
        let (status, said) = failed(&std::io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(i32::from(status), EXEC_FAILED_STATUS);
        let back = exec_failure(Some(EXEC_FAILED_STATUS), &said).unwrap();
        assert_eq!(back.raw_os_error(), Some(libc::ENOENT));
        // A command of its own that exits 127 is an exit status, not a failure to start.
        assert!(exec_failure(Some(127), "sh: 1: nope: not found\n").is_none());
        assert!(exec_failure(Some(1), &said).is_none());
    }

    #[test]
    fn without_protector_to_run_the_command_is_forked_as_before() {
        let cmd = tied_to_protector(Command::new("true"));
        assert_eq!(cmd.get_program(), "true");
    }
}
