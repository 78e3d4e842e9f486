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
