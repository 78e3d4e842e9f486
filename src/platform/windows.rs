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

/// A running command's processes tied to protector's life: a second Job Object (nested in
/// the one that contains the command) that kills them when its last handle is closed, which
/// Windows does when protector dies, however it dies. [`Tie::release`] lifts that once the
/// command has ended, so what it leaves running on purpose stays. `None` where Windows cannot
/// nest jobs (before Windows 8): the command then outlives a crash of protector.
pub struct Tie(windows_sys::Win32::Foundation::HANDLE);

// SAFETY: a job handle may be used and closed from any thread.
unsafe impl Send for Tie {}

pub fn tie(child: &dyn process_wrap::std::ChildWrapper) -> Option<Tie> {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Foundation::CloseHandle;
    use windows_sys::Win32::System::JobObjects::{
        AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    };
    let process = child.process_handle()?.as_raw_handle();
    // SAFETY: plain Win32 calls on handles this function owns or borrows for the call.
    unsafe {
        let job = CreateJobObjectW(std::ptr::null(), std::ptr::null());
        if job.is_null() {
            return None;
        }
        if !set_limits(job, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE)
            || AssignProcessToJobObject(job, process) == 0
        {
            CloseHandle(job);
            return None;
        }
        Some(Tie(job))
    }
}

/// Sets a job's basic limit flags.
///
/// # Safety
/// `job` must be a Job Object handle this process holds open.
unsafe fn set_limits(job: windows_sys::Win32::Foundation::HANDLE, flags: u32) -> bool {
    use windows_sys::Win32::System::JobObjects::{
        JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectExtendedLimitInformation,
        SetInformationJobObject,
    };
    // SAFETY: the structure is plain data, zero is its "no limits" value, and its size is
    // passed with it.
    unsafe {
        let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = std::mem::zeroed();
        info.BasicLimitInformation.LimitFlags = flags;
        SetInformationJobObject(
            job,
            JobObjectExtendedLimitInformation,
            (&info as *const JOBOBJECT_EXTENDED_LIMIT_INFORMATION).cast(),
            std::mem::size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
        ) != 0
    }
}

impl Tie {
    /// The command ended: what it left running is no longer killed with protector.
    pub fn release(self) {
        // SAFETY: the handle is this Tie's own.
        unsafe {
            set_limits(self.0, 0);
        }
    }
}

impl Drop for Tie {
    fn drop(&mut self) {
        // SAFETY: the handle is this Tie's own, closed once.
        unsafe {
            windows_sys::Win32::Foundation::CloseHandle(self.0);
        }
    }
}

/// Commands left running by an earlier protector are not recorded on Windows: they die with
/// it (see [`tie`]).
pub fn group_stamp(_pid: u32) -> Option<String> {
    None
}

pub fn group_alive(_pid: u32, _stamp: &str) -> bool {
    false
}

pub fn kill_group(_pid: u32) {}

/// Is there a running process `pid`?
pub fn process_alive(pid: u32) -> bool {
    use windows_sys::Win32::Foundation::{CloseHandle, ERROR_ACCESS_DENIED, STILL_ACTIVE};
    use windows_sys::Win32::System::Threading::{
        GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
    };
    // SAFETY: OpenProcess returns a handle or null; a handle is closed once below.
    let handle = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if handle.is_null() {
        // Access denied still means the process exists.
        return std::io::Error::last_os_error().raw_os_error() == Some(ERROR_ACCESS_DENIED as i32);
    }
    let mut code = 0u32;
    // SAFETY: the handle is open; `code` receives the exit code.
    let ok = unsafe { GetExitCodeProcess(handle, &mut code) } != 0;
    // SAFETY: opened above, closed once.
    unsafe { CloseHandle(handle) };
    ok && code == STILL_ACTIVE as u32
}

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
    // Called by Windows on a thread of its own; touches only DELIVER, set before it is
    // installed.
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
    // SAFETY: `handler` has the signature Windows calls and lives for the whole program.
    if unsafe { SetConsoleCtrlHandler(Some(handler), TRUE) } == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Nothing to tune: the Windows heap returns large blocks to the OS by itself.
pub fn tune_memory() {}

/// Nothing to ready on Windows: a command inherits only the handles given to it.
pub fn prepare_for_commands() -> Option<(u64, u64)> {
    None
}

/// Did an operation fail for lack of resources (ERROR_NOT_ENOUGH_MEMORY, ERROR_OUTOFMEMORY,
/// ERROR_TOO_MANY_OPEN_FILES, ERROR_NO_SYSTEM_RESOURCES), rather than for good?
pub fn is_resource_shortage(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(8 | 14 | 4 | 1450))
}

/// Nothing to do on Windows (see `tune_memory`).
pub fn return_free_memory() {}

/// A write to a pipe nobody reads fails on Windows without killing the writer, so what a
/// start command left running needs no reader after protector exits (`drain_unix.rs`).
pub struct OutputEnd;

pub fn use_this_program_to_drain() {}

pub fn output_end<T>(_pipe: &T) -> Option<OutputEnd> {
    None
}

pub fn hand_over_output(_target: &str, _ends: Vec<OutputEnd>) -> Result<bool, String> {
    Ok(false)
}
