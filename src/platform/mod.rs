//! What differs between operating systems, behind one small interface: how a shell command
//! line is run, how a command's whole process tree is contained (so it can be killed), and
//! what identifies a file. `unix.rs` and `windows.rs` implement the same functions, as do
//! `endpoint_unix.rs` and `endpoint_windows.rs` for the control endpoint; `spawn_linux.rs`
//! starts commands without copying protector, `wrapped.rs` through process-wrap elsewhere,
//! both giving a [`Running`] command; `priority_unix.rs` and `priority_windows.rs`
//! let the threads that decide run ahead of what protector starts; `drain_unix.rs`
//! keeps what a start command left running alive after protector exits (`windows.rs`: nothing
//! to do); `eventlog_windows.rs` writes records to the Windows Event Log (Linux's journal
//! needs nothing but a prefix, in `logging/mod.rs`).

#[cfg(unix)]
mod drain_unix;
#[cfg(unix)]
mod endpoint_unix;
#[cfg(unix)]
mod priority_unix;
#[cfg(target_os = "linux")]
mod spawn_linux;
#[cfg(unix)]
mod unix;
#[cfg(not(target_os = "linux"))]
mod wrapped;
#[cfg(unix)]
pub use drain_unix::*;
#[cfg(unix)]
pub use endpoint_unix::*;
#[cfg(unix)]
pub use priority_unix::favour_this_thread;
#[cfg(target_os = "linux")]
pub use spawn_linux::{Running, start};
#[cfg(unix)]
pub use unix::*;
#[cfg(not(target_os = "linux"))]
pub use wrapped::{Running, start};

#[cfg(windows)]
mod endpoint_windows;
#[cfg(windows)]
mod eventlog_windows;
#[cfg(windows)]
mod priority_windows;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use endpoint_windows::*;
#[cfg(windows)]
pub use eventlog_windows::{EventLog, register_source, unregister_source};
#[cfg(windows)]
pub use priority_windows::favour_this_thread;
#[cfg(windows)]
pub use windows::*;

/// What an OS signal (or console event) asks protector to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM, SIGINT; Ctrl-C, Ctrl-Break, console close on Windows.
    Shutdown,
    /// SIGHUP (Windows has none).
    #[cfg_attr(not(unix), allow(dead_code))]
    Reload,
}

/// Receives signals from `listen_for_signals`.
pub type OnSignal = Box<dyn Fn(Signal) + Send>;

/// Adds what a control endpoint read to the request `line`; true once it is complete: a
/// newline came (what follows it is dropped: one request per connection) or it is longer
/// than `max` (for the caller to refuse).
fn add_to_line(line: &mut Vec<u8>, chunk: &[u8], max: usize) -> bool {
    match chunk.iter().position(|b| *b == b'\n') {
        Some(end) => {
            line.extend_from_slice(&chunk[..=end]);
            true
        }
        None => {
            line.extend_from_slice(chunk);
            line.len() > max
        }
    }
}
