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

/// `%ProgramData%` (`C:\ProgramData` when unset): where protector's config, lock and logs go.
pub fn program_data() -> std::path::PathBuf {
    std::env::var_os("ProgramData")
        .filter(|v| !v.is_empty())
        .map_or_else(|| r"C:\ProgramData".into(), std::path::PathBuf::from)
}

/// Commands left running by an earlier protector are not recorded on Windows (see
/// `unix.rs`): their Job Object is not kept across a restart of protector.
pub fn group_stamp(_pid: u32) -> Option<String> {
    None
}

pub fn group_alive(_pid: u32, _stamp: &str) -> bool {
    false
}

pub fn kill_group(_pid: u32) {}

/// Creation time: a heartbeat file replaced by another one is a change.
pub fn file_identity(meta: &Metadata) -> (u64, u64) {
    (meta.creation_time(), 0)
}

static DELIVER: std::sync::OnceLock<std::sync::Mutex<super::OnSignal>> = std::sync::OnceLock::new();

/// Delivers Ctrl-C, Ctrl-Break and console close (as `Shutdown`) to `deliver`.
pub fn listen_for_signals(deliver: super::OnSignal) -> std::io::Result<()> {
    use windows_sys::Win32::Foundation::{FALSE, TRUE};
    use windows_sys::Win32::System::Console::{
        CTRL_BREAK_EVENT, CTRL_C_EVENT, CTRL_CLOSE_EVENT, SetConsoleCtrlHandler,
    };
    use windows_sys::core::BOOL;
    unsafe extern "system" fn handler(kind: u32) -> BOOL {
        match kind {
            CTRL_C_EVENT | CTRL_BREAK_EVENT | CTRL_CLOSE_EVENT => {
                if let Some(d) = DELIVER.get() {
                    (d.lock().unwrap_or_else(|p| p.into_inner()))(super::Signal::Shutdown);
                }
                TRUE
            }
            _ => FALSE,
        }
    }
    if DELIVER.set(std::sync::Mutex::new(deliver)).is_err() {
        return Ok(());
    }
    if unsafe { SetConsoleCtrlHandler(Some(handler), TRUE) } == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Nothing to tune: the Windows heap returns large blocks to the OS by itself.
pub fn tune_memory() {}

/// Did an operation fail for lack of resources (ERROR_NOT_ENOUGH_MEMORY, ERROR_OUTOFMEMORY,
/// ERROR_TOO_MANY_OPEN_FILES, ERROR_NO_SYSTEM_RESOURCES), rather than for good?
pub fn is_resource_shortage(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(8 | 14 | 4 | 1450))
}

/// Nothing to do on Windows (see `tune_memory`).
pub fn return_free_memory() {}
