use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use super::*;

/// Generous: a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(30);

fn sh(line: &str) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(line);
    cmd
}

/// Its stdout, its stderr and how it ended.
fn finish(mut running: Running) -> (String, String, ExitStatus) {
    let (out, err) = running.take_output();
    let read = |pipe: Option<Pipe>| {
        let mut text = String::new();
        pipe.expect("a pipe").read_to_string(&mut text).unwrap();
        text
    };
    let (out, err) = (read(out), read(err));
    (out, err, running.wait().unwrap())
}

/// Waits (with a deadline) for `running` to end by itself.
fn ended(running: &mut Running) -> ExitStatus {
    let since = Instant::now();
    loop {
        if let Some(status) = running.try_wait().unwrap() {
            return status;
        }
        if since.elapsed() > PATIENCE {
            running.kill_tree().unwrap();
            panic!("still running after {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A program file `name` in `dir` that prints `says`, executable or not.
fn program(dir: &std::path::Path, name: &str, says: &str, executable: bool) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\necho {says}\n")).unwrap();
    let mode = if executable { 0o755 } else { 0o644 };
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_command_gets_its_arguments_environment_directory_and_stdio() {
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path().canonicalize().unwrap();
    let mut cmd = sh(
        r#"printf '%s|' "$0" "$1" "$GIVEN" "${HOME-unset}" "$(pwd -P)"; echo oops >&2; cat; exit 7"#,
    );
    cmd.args(["zero", "one two"])
        .env("GIVEN", "yes")
        .env_remove("HOME")
        .current_dir(dir.path());
    let (out, err, status) = finish(start(cmd).unwrap());
    assert_eq!(out, format!("zero|one two|yes|unset|{}|", here.display()));
    // stdin is /dev/null: `cat` read nothing and ended.
    assert_eq!(err, "oops\n");
    assert_eq!(status.code(), Some(7));
}

#[test]
fn a_command_leads_a_group_of_its_own_with_no_signal_blocked_and_sigpipe_at_its_default() {
    // This thread blocks a signal, and the test process ignores SIGPIPE (as protector does):
    // neither may reach the command.
    // SAFETY: sigset calls on a local set; the mask is this thread's, restored below.
    let mut was: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        let mut usr1: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut usr1);
        libc::sigaddset(&mut usr1, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_BLOCK, &usr1, &mut was);
    }
    let mut cmd = Command::new("grep");
    cmd.args(["-E", "^(Pid|NSpgid|SigBlk|SigIgn):", "/proc/self/status"]);
    let started = start(cmd);
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &was, std::ptr::null_mut()) };
    let running = started.unwrap();
    let pid = running.id();
    let (out, _, status) = finish(running);
    assert!(status.success(), "{out}");
    let field = |name: &str| -> &str {
        let line = out.lines().find(|l| l.starts_with(name)).expect(name);
        line[name.len()..].split_whitespace().last().unwrap()
    };
    assert_eq!(field("Pid:"), pid.to_string());
    assert_eq!(field("NSpgid:"), pid.to_string(), "its own process group");
    assert_eq!(u64::from_str_radix(field("SigBlk:"), 16).unwrap(), 0);
    let ignored = u64::from_str_radix(field("SigIgn:"), 16).unwrap();
    assert_eq!(ignored & (1 << (libc::SIGPIPE - 1)), 0, "SIGPIPE ignored");
}

#[test]
fn a_command_dies_with_the_thread_that_started_it() {
    // Protector's command threads wait for their commands; one that ended (protector died)
    // takes its command's leader with it.
    let mut running = std::thread::spawn(|| {
        let mut cmd = Command::new("sleep");
        cmd.arg("600");
        start(cmd).unwrap()
    })
    .join()
    .unwrap();
    let status = ended(&mut running);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
}

#[test]
fn a_program_is_looked_for_along_path_as_execvp_does() {
    let (first, second, empty) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    program(first.path(), "prog", "first", false);
    program(second.path(), "prog", "second", true);
    let along = |dirs: &[&tempfile::TempDir]| {
        let path: Vec<_> = dirs
            .iter()
            .map(|d| d.path().display().to_string())
            .collect();
        let mut cmd = Command::new("prog");
        cmd.env("PATH", path.join(":"));
        start(cmd)
    };
    // One it may not run is passed over for one it may.
    let (out, _, status) = finish(along(&[&first, &second]).unwrap());
    assert_eq!((out.as_str(), status.code()), ("second\n", Some(0)));
    let (out, _, _) = finish(along(&[&second, &first]).unwrap());
    assert_eq!(out, "second\n");
    // Found only where it may not be run; found nowhere.
    let denied = along(&[&empty, &first]).unwrap_err();
    assert_eq!(denied.raw_os_error(), Some(libc::EACCES), "{denied}");
    let missing = along(&[&empty]).unwrap_err();
    assert_eq!(missing.raw_os_error(), Some(libc::ENOENT), "{missing}");
    // A path is taken as it is; without PATH, the usual directories.
    let missing = start(Command::new("/nonexistent/protector-test")).unwrap_err();
    assert_eq!(missing.raw_os_error(), Some(libc::ENOENT), "{missing}");
    let mut cmd = Command::new("true");
    cmd.env_remove("PATH");
    assert!(finish(start(cmd).unwrap()).2.success());
}

#[test]
fn a_nul_byte_is_refused_before_anything_starts() {
    // (The config refuses one in a command: `a_nul_character_in_a_command_is_refused_with_its_key`.)
    let mut cmd = Command::new("echo");
    cmd.env("GIVEN", "a\0b");
    let refused = start(cmd).unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::InvalidInput, "{refused}");
}

#[test]
fn killing_the_tree_ends_what_the_command_started_too() {
    let mut running = start(sh("sleep 600 & echo $!; wait")).unwrap();
    let (out, _) = running.take_output();
    let mut line = String::new();
    BufReader::new(out.unwrap()).read_line(&mut line).unwrap();
    let grandchild: u32 = line.trim().parse().unwrap();
    running.kill_tree().unwrap();
    assert_eq!(running.wait().unwrap().signal(), Some(libc::SIGKILL));
    // Reparented and killed: gone, or a zombie waiting for whoever reaps it now.
    let since = Instant::now();
    let gone = || match std::fs::read_to_string(format!("/proc/{grandchild}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .unwrap()
            .1
            .trim_start()
            .starts_with('Z'),
        Err(_) => true,
    };
    while !gone() {
        assert!(since.elapsed() < PATIENCE, "{grandchild} still runs");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Reaped already: killing again is nothing.
    running.kill_tree().unwrap();
}

#[test]
fn what_a_favoured_thread_starts_runs_at_the_default_priority() {
    // The launcher that starts commands runs ahead of them (priority_unix.rs); the commands,
    // and the services they start, must not inherit that.
    let (favoured, nice) = std::thread::spawn(|| {
        // SAFETY: getpriority reads this thread's nice.
        let before = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let favoured = crate::platform::favour_this_thread();
        let mut cmd = Command::new("cut");
        cmd.args(["-d", " ", "-f", "19", "/proc/self/stat"]);
        let (out, _, status) = finish(start(cmd).unwrap());
        assert!(status.success());
        (favoured, (before, out.trim().parse::<i32>().unwrap()))
    })
    .join()
    .unwrap();
    let (before, command) = nice;
    assert_eq!(command, before, "favoured: {favoured}");
}
