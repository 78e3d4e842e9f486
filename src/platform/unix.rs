use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use process_wrap::std::{CommandWrap, ProcessGroup};

/// `/bin/sh -c LINE`, as the original tool did for its stop and start commands.
pub fn shell_command(line: &str) -> Command {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(line);
    cmd
}

/// Puts the command in a process group of its own, so a timeout kills its whole tree
/// (children that did not leave the group included).
pub fn contain(cmd: Command) -> CommandWrap {
    let mut wrap = CommandWrap::from(cmd);
    wrap.wrap(ProcessGroup::leader());
    wrap
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
/// freed), and two arenas keep short-lived command threads from adding arenas of their own.
pub fn tune_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before any other
    // thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
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
}
