use std::fs::Metadata;
use std::os::windows::fs::MetadataExt;
use std::os::windows::process::CommandExt;
use std::process::Command;

use process_wrap::std::{CommandWrap, JobObject};

/// `cmd /C LINE`, with the line passed as written (cmd has its own quoting rules).
pub fn shell_command(line: &str) -> Command {
    let mut cmd = Command::new("cmd");
    cmd.arg("/C").raw_arg(line);
    cmd
}

/// Runs the command in a Job Object, so a timeout kills its whole tree.
pub fn contain(cmd: Command) -> CommandWrap {
    let mut wrap = CommandWrap::from(cmd);
    wrap.wrap(JobObject);
    wrap
}

/// Creation time: a heartbeat file replaced by another one is a change.
pub fn file_identity(meta: &Metadata) -> (u64, u64) {
    (meta.creation_time(), 0)
}
