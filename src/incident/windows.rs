//! What protector can see of a service's processes itself on Windows: the process a Windows
//! service runs in (from the service manager), the one a pid file names, and their
//! descendants, from one copy of the kernel's process list (`NtQuerySystemInformation`, which
//! needs no handle to any process): each one's program, threads and what they wait in
//! (`suspended` when every thread is), handles, working set and age, its command line where
//! the system tells it (Windows 8.1 and later), and its TCP connections with their states (the
//! system's TCP tables, which name each connection's process). Every read is bounded.

use windows_sys::Wdk::System::SystemInformation::{
    NtQuerySystemInformation, SystemProcessInformation,
};
use windows_sys::Wdk::System::Threading::{
    NtQueryInformationProcess, ProcessCommandLineInformation,
};
use windows_sys::Win32::Foundation::{CloseHandle, UNICODE_STRING};
use windows_sys::Win32::System::Threading::{OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION};
use windows_sys::Win32::System::WindowsProgramming::{
    SYSTEM_PROCESS_INFORMATION, SYSTEM_THREAD_INFORMATION,
};

use super::buffer_windows::{Buffer, read_at};
use super::snapshot::{MAX_CONNECTIONS, MAX_PROCESSES, Process, Processes};
use super::tcp_windows::connections;

/// Most bytes of the kernel's process list read (about 30,000 processes of 20 threads).
const MAX_LIST: usize = 64 * 1024 * 1024;
/// Most bytes of one command line read.
const MAX_COMMAND: usize = 64 * 1024;

/// Windows's processes.
pub struct Windows;

impl Processes for Windows {
    fn exists(&self, pid: u32) -> bool {
        list().iter().any(|e| e.pid == pid)
    }

    fn of_service(&self, name: &str) -> Result<Vec<u32>, String> {
        use windows_service::service::{ServiceAccess, ServiceState};
        use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
        let status = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
            .and_then(|m| m.open_service(name, ServiceAccess::QUERY_STATUS))
            .and_then(|s| s.query_status())
            .map_err(|e| match e {
                windows_service::Error::Winapi(io) => format!("service {name}: {io}"),
                other => format!("service {name}: {other}"),
            })?;
        match status.process_id {
            Some(pid) if pid != 0 => Ok(vec![pid]),
            _ if status.current_state == ServiceState::Stopped => {
                Err(format!("service {name} is not running"))
            }
            _ => Err(format!(
                "service {name} has no process ({:?})",
                status.current_state
            )),
        }
    }

    fn tree(&self, roots: &[u32]) -> Vec<Process> {
        let all = list();
        let mut out: Vec<Process> = Vec::new();
        let mut todo: std::collections::VecDeque<&Entry> = roots
            .iter()
            .filter_map(|&r| all.iter().find(|e| e.pid == r))
            .collect();
        while let Some(e) = todo.pop_front() {
            if out.len() >= MAX_PROCESSES {
                break;
            }
            if out.iter().any(|seen| seen.pid == e.pid) {
                continue;
            }
            out.push(e.process());
            // A child names its parent's id, which a later process may have taken: a child
            // started before its parent is not its child.
            todo.extend(
                all.iter()
                    .filter(|c| c.parent == e.pid && c.pid != e.pid && c.created >= e.created),
            );
        }
        let connections = connections();
        for p in &mut out {
            p.connections = connections
                .iter()
                .filter(|(pid, _)| *pid == p.pid)
                .map(|(_, c)| c.clone())
                .take(MAX_CONNECTIONS)
                .collect();
        }
        out
    }
}

/// One process of the kernel's list.
struct Entry {
    pid: u32,
    parent: u32,
    name: String,
    /// Each thread's state and wait reason.
    threads: Vec<(u32, u32)>,
    handles: u32,
    working_set: usize,
    /// When it started, in 100 ns since 1601 (Windows's FILETIME).
    created: i64,
}

/// Thread states (`KTHREAD_STATE`) that run or are about to.
const RUNNING: [u32; 4] = [1, 2, 3, 7];
/// `Waiting`.
const WAITING: u32 = 5;
/// Wait reasons `Suspended` and `WrSuspended`.
const SUSPENDED: [u32; 2] = [5, 12];

impl Entry {
    fn process(&self) -> Process {
        let suspended = |&(state, why): &(u32, u32)| state == WAITING && SUSPENDED.contains(&why);
        let state = if self.threads.is_empty() {
            "exited"
        } else if self.threads.iter().all(|&t| t == (0, 0)) {
            // Every thread `Initialized`, none waiting for anything: the system does not say
            // (Wine says so of every process).
            "unknown"
        } else if self.threads.iter().all(suspended) {
            "suspended"
        } else if self.threads.iter().any(|(s, _)| RUNNING.contains(s)) {
            "running"
        } else {
            "waiting"
        };
        let wait = match self.threads.first() {
            Some(&(WAITING, why)) => wait_reason(why).to_string(),
            _ => String::new(),
        };
        let now = filetime(std::time::SystemTime::now());
        Process {
            pid: self.pid,
            command: command_line(self.pid).unwrap_or_else(|| self.name.clone()),
            state: state.into(),
            wait,
            threads: self.threads.len() as u32,
            descriptors: self.handles,
            resident_kib: (self.working_set / 1024) as u64,
            age_secs: (self.created > 0 && now >= self.created)
                .then(|| ((now - self.created) / 10_000_000) as u64),
            kernel_stack: String::new(),
            connections: Vec::new(),
        }
    }
}

/// `t` as Windows counts time: 100 ns since 1601-01-01.
fn filetime(t: std::time::SystemTime) -> i64 {
    const UNIX_FROM_1601_SECS: i64 = 11_644_473_600;
    let unix = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64 / 100);
    unix + UNIX_FROM_1601_SECS * 10_000_000
}

/// The names of the kernel's wait reasons (`KWAIT_REASON`), by number.
fn wait_reason(code: u32) -> &'static str {
    const NAMES: [&str; 38] = [
        "Executive",
        "FreePage",
        "PageIn",
        "PoolAllocation",
        "DelayExecution",
        "Suspended",
        "UserRequest",
        "WrExecutive",
        "WrFreePage",
        "WrPageIn",
        "WrPoolAllocation",
        "WrDelayExecution",
        "WrSuspended",
        "WrUserRequest",
        "WrEventPair",
        "WrQueue",
        "WrLpcReceive",
        "WrLpcReply",
        "WrVirtualMemory",
        "WrPageOut",
        "WrRendezvous",
        "WrKeyedEvent",
        "WrTerminated",
        "WrProcessInSwap",
        "WrCpuRateControl",
        "WrCalloutStack",
        "WrKernel",
        "WrResource",
        "WrPushLock",
        "WrMutex",
        "WrQuantumEnd",
        "WrDispatchInt",
        "WrPreempted",
        "WrYieldExecution",
        "WrFastMutex",
        "WrGuardedMutex",
        "WrRundown",
        "WrAlertByThreadId",
    ];
    NAMES.get(code as usize).copied().unwrap_or("Unknown")
}

/// The kernel's process list, read whole (growing the buffer up to [`MAX_LIST`]); empty when it
/// cannot be read.
fn list() -> Vec<Entry> {
    const STATUS_INFO_LENGTH_MISMATCH: i32 = 0xC000_0004_u32 as i32;
    let mut size = 256 * 1024;
    loop {
        let mut buf = Buffer::new(size);
        let mut needed = 0u32;
        // SAFETY: the kernel writes at most `size` bytes into `buf`, which holds that many.
        let status = unsafe {
            NtQuerySystemInformation(
                SystemProcessInformation,
                buf.as_mut_ptr().cast(),
                size as u32,
                &mut needed,
            )
        };
        if status == STATUS_INFO_LENGTH_MISMATCH && size < MAX_LIST {
            size = (needed as usize + 64 * 1024).max(size * 2).min(MAX_LIST);
            continue;
        }
        if status < 0 {
            return Vec::new();
        }
        return entries(buf.bytes((needed as usize).min(size)));
    }
}

/// The UTF-16 text `s` points to, when it lies wholly inside `bytes` (the kernel points into
/// the buffer it filled).
fn text_in(bytes: &[u8], s: &UNICODE_STRING) -> Option<String> {
    let start = (s.Buffer as usize).checked_sub(bytes.as_ptr() as usize)?;
    let inside = bytes.get(start..start.checked_add(s.Length as usize)?)?;
    let units: Vec<u16> = inside
        .chunks_exact(2)
        .map(|c| u16::from_ne_bytes([c[0], c[1]]))
        .collect();
    Some(String::from_utf16_lossy(&units))
}

/// The entries of the list in `bytes` (each entry, then its threads; the next at its offset).
fn entries(bytes: &[u8]) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(p) = read_at::<SYSTEM_PROCESS_INFORMATION>(bytes, at) {
        let first_thread = at + size_of::<SYSTEM_PROCESS_INFORMATION>();
        let threads = (0..p.NumberOfThreads as usize)
            .map_while(|k| {
                let t: SYSTEM_THREAD_INFORMATION = read_at(
                    bytes,
                    first_thread + k * size_of::<SYSTEM_THREAD_INFORMATION>(),
                )?;
                Some((t.ThreadState, t.WaitReason))
            })
            .collect();
        // The start time is the fifth 8-byte field of `Reserved1` (after the private working
        // set, the hard fault and thread high-water counts, and the cycle time).
        let created = i64::from_ne_bytes(p.Reserved1[24..32].try_into().unwrap_or([0; 8]));
        out.push(Entry {
            pid: p.UniqueProcessId as usize as u32,
            // The parent's id is the field after the process's own.
            parent: p.Reserved2 as usize as u32,
            name: text_in(bytes, &p.ImageName).unwrap_or_else(|| "[System]".into()),
            threads,
            handles: p.HandleCount,
            working_set: p.WorkingSetSize,
            created,
        });
        if p.NextEntryOffset == 0 {
            break;
        }
        at += p.NextEntryOffset as usize;
    }
    out
}

/// Process `pid`'s command line (Windows 8.1 and later), when the system tells it.
fn command_line(pid: u32) -> Option<String> {
    // SAFETY: OpenProcess takes plain values; the handle is closed below.
    let handle = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if handle.is_null() {
        return None;
    }
    let mut buf = Buffer::new(MAX_COMMAND);
    let mut needed = 0u32;
    // SAFETY: the system writes at most MAX_COMMAND bytes into `buf`, which holds that many.
    let status = unsafe {
        NtQueryInformationProcess(
            handle,
            ProcessCommandLineInformation,
            buf.as_mut_ptr().cast(),
            MAX_COMMAND as u32,
            &mut needed,
        )
    };
    // SAFETY: `handle` is open and ours.
    unsafe { CloseHandle(handle) };
    if status < 0 {
        return None;
    }
    let bytes = buf.bytes(MAX_COMMAND);
    let line: UNICODE_STRING = read_at(bytes, 0)?;
    text_in(bytes, &line).filter(|l| !l.trim().is_empty())
}

#[cfg(test)]
mod tests;
