use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

#[cfg(not(target_os = "linux"))]
use process_wrap::std::{CommandWrap, ProcessGroup};

/// `/bin/sh -c LINE`, as the original tool did for its stop and start commands.
pub fn shell_command(line: &str) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(line);
    cmd
}

/// Puts the command in a process group of its own, so a timeout kills its whole tree
/// (children that did not leave the group included). Linux does so in `spawn_linux.rs`,
/// where the group's leader is also killed when protector dies (`PR_SET_PDEATHSIG`): a
/// shell line stops at the step it was at; what the leader started already is found again
/// by the next protector ([`group_alive`]). Its stdio is set on what this returns.
#[cfg(not(target_os = "linux"))]
pub fn contain(cmd: Command) -> CommandWrap {
    let mut wrap = CommandWrap::from(cmd);
    wrap.wrap(ProcessGroup::leader());
    wrap
}

/// Makes the process `cmd` starts get SIGKILL when protector dies (Linux,
/// `PR_SET_PDEATHSIG`); it is not started at all if protector died before it could be
/// tied. Elsewhere nothing.
pub fn die_with_protector(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id();
        // SAFETY: prctl and getppid are async-signal-safe; nothing is allocated.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // protector died before the line above: nothing would kill this one.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// Device and inode: a heartbeat file replaced by another one is a change.
pub fn file_identity(meta: &Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// Did an operation fail for lack of resources (processes or threads: EAGAIN; file
/// descriptors: EMFILE, ENFILE; memory: ENOMEM), rather than for good?
pub fn is_resource_shortage(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN | libc::EMFILE | libc::ENFILE | libc::ENOMEM)
    )
}

/// Unix other than Linux ties nothing to protector's life. (Linux: the command's leader,
/// `spawn_linux.rs`; Windows: the whole tree, `windows.rs`.)
#[cfg(not(target_os = "linux"))]
pub struct Tie;

#[cfg(not(target_os = "linux"))]
pub fn tie(_child: &dyn process_wrap::std::ChildWrapper) -> Option<Tie> {
    None
}

#[cfg(not(target_os = "linux"))]
impl Tie {
    pub fn release(self) {}
}

/// What tells a command's process group from a later one that reuses its number: the boot
/// and the leader's start time (Linux). `None` where that cannot be told, or when the leader
/// is gone already; such a group is not recorded.
pub fn group_stamp(pgid: u32) -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        let (_, start) = proc_stat(pgid)?;
        Some(format!("{}/{start}", boot_id()?))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = pgid;
        None
    }
}

/// Does a process of the group `pgid`, stamped `stamp` by [`group_stamp`], still run? Its
/// members all started at or after its leader, in the same boot.
pub fn group_alive(pgid: u32, stamp: &str) -> bool {
    #[cfg(target_os = "linux")]
    {
        let Some((boot, start)) = stamp.split_once('/') else {
            return false;
        };
        let Ok(start) = start.parse::<u64>() else {
            return false;
        };
        if !valid_group(pgid) || boot_id().as_deref() != Some(boot) {
            return false;
        }
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return false;
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(proc_stat)
            .any(|(group, since)| group == pgid && since >= start)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (pgid, stamp);
        false
    }
}

/// Kills every process of group `pgid` (SIGKILL).
/// Is there a process `pid` (one protector may not signal counts)?
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let sent = unsafe { libc::kill(pid, 0) };
    sent == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

pub fn kill_group(pgid: u32) {
    if valid_group(pgid) {
        // SAFETY: kill has no memory effects; a negative pid names a process group, and
        // valid_group keeps 0, 1 and "every process" (-1) out.
        unsafe {
            libc::kill(-(pgid as i32), libc::SIGKILL);
        }
    }
}

/// A number that can name one process group of commands: never 0 (our own group), 1 (init)
/// or one that would turn negative.
fn valid_group(pgid: u32) -> bool {
    pgid >= 2 && pgid <= i32::MAX as u32
}

/// This boot's random id.
#[cfg(target_os = "linux")]
fn boot_id() -> Option<String> {
    let text = read_small("/proc/sys/kernel/random/boot_id")?;
    Some(text.trim().to_string())
}

/// Process `pid`'s group and start time (clock ticks after boot), from `/proc/PID/stat`;
/// `None` when it is gone or a zombie (dead, waiting to be reaped).
#[cfg(target_os = "linux")]
fn proc_stat(pid: u32) -> Option<(u32, u64)> {
    let text = read_small(&format!("/proc/{pid}/stat"))?;
    // The command name, in parentheses, may hold anything: fields are counted after it.
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if matches!(fields.first(), Some(&("Z" | "X" | "x"))) {
        return None;
    }
    // rest starts at field 3 (state); pgrp is field 5, starttime field 22.
    let pgrp = fields.get(2)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((pgrp, start))
}

#[cfg(target_os = "linux")]
fn read_small(path: &str) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(4096)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// Delivers SIGTERM, SIGINT and SIGHUP to `deliver` from a thread of its own.
pub fn listen_for_signals(deliver: super::OnSignal) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("protector-signals".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            for sig in signals.forever() {
                deliver(if sig == SIGHUP {
                    super::Signal::Reload
                } else {
                    super::Signal::Shutdown
                });
            }
        })?;
    Ok(())
}

/// Keeps the allocator from holding on to memory protector no longer uses. Loading a large
/// config briefly needs several times its final size (the YAML parser's events, the JSON
/// document, the raw types); glibc would keep much of that, because its mmap threshold grows
/// after the first large free and later large buffers then come from the heap, where they
/// fragment. A fixed threshold sends every large buffer to mmap (returned to the OS when
/// freed), and a bound of four arenas keeps short-lived command threads from adding arenas of
/// their own. Two were too few: the threads that read a large config (the YAML parser's,
/// the pool that resolves targets) then shared the main thread's arena and waited on its
/// lock at every allocation (100,000 targets: the load 0.56 -> 0.47 s with four).
pub fn tune_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before any other
    // thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

/// Readies the daemon to run many commands, before it runs any: the soft limit of open
/// descriptors is raised to the hard one (each running command holds pipes; a storm of 1,000
/// restarts ran out of descriptors at the usual soft limit of 1,024), and every descriptor
/// protector was handed beyond stdin, stdout and stderr is closed on exec, so that no command
/// inherits what protector's own parent left open (a socket, a file another program meant for
/// itself). Returns the limit before and after, when it was raised.
pub fn prepare_for_commands() -> Option<(libc::rlim_t, libc::rlim_t)> {
    let own: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(entries) => entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect(),
        // Without /proc: the descriptors a parent plausibly hands down.
        Err(_) => (3..1024).collect(),
    };
    for fd in own.into_iter().filter(|&fd| fd > 2) {
        // SAFETY: F_GETFD/F_SETFD only read and set the descriptor's close-on-exec flag; a
        // number that is not open fails harmlessly.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct passed, which outlives the calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= limit.rlim_max
        {
            return None;
        }
        let before = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max;
        (libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0).then_some((before, limit.rlim_max))
    }
}

/// Hands freed heap pages back to the OS (after a config was loaded).
pub fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and only releases memory that is already free.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    use std::os::unix::process::CommandExt;

    #[test]
    fn resource_shortages_are_told_from_lasting_failures() {
        use std::io::Error;
        for e in [libc::EAGAIN, libc::EMFILE, libc::ENFILE, libc::ENOMEM] {
            assert!(super::is_resource_shortage(&Error::from_raw_os_error(e)));
        }
        for e in [libc::ENOENT, libc::EACCES, libc::ENOEXEC] {
            assert!(!super::is_resource_shortage(&Error::from_raw_os_error(e)));
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_process_group_is_told_from_a_later_one_with_the_same_number() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id();
        let stamp = super::group_stamp(pgid).expect("a stamp for a running leader");
        assert!(super::group_alive(pgid, &stamp));
        // Started later than this group: another one.
        let (boot, start) = stamp.split_once('/').unwrap();
        let later = format!("{boot}/{}", start.parse::<u64>().unwrap() + 1);
        assert!(!super::group_alive(pgid, &later));
        // Another boot, a malformed stamp, numbers that are no one's group.
        assert!(!super::group_alive(pgid, &format!("x/{start}")));
        assert!(!super::group_alive(pgid, "nonsense"));
        assert!(!super::group_alive(1, &stamp));
        assert!(!super::group_alive(0, &stamp));
        super::kill_group(pgid);
        child.wait().unwrap();
        assert!(!super::group_alive(pgid, &stamp));
    }
}
