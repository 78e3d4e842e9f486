//! The Windows Event Log: protector's records in the Application log under its event source
//! (the service's name), each with the type of its level (error, warning, information), so
//! that Event Viewer's filter by level works as `journalctl -p` does on Linux. A record is
//! the text format without time and level (the Event Log keeps both); below info nothing is
//! written (debug records are for a log file).
//!
//! `service install` registers the source with `EventCreate.exe` (part of every Windows since
//! XP) as its message file: its message table says just `%1` for event IDs 1 to 1000, so Event
//! Viewer shows each record as written, without "the description cannot be found".
//! Written with windows-sys (already a dependency) rather than a crate: the one tracing layer
//! for the Event Log is little used, and this is two calls.

use std::io::Write;

use tracing::{Level, Metadata};
use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::System::EventLog::{
    DeregisterEventSource, EVENTLOG_ERROR_TYPE, EVENTLOG_INFORMATION_TYPE, EVENTLOG_WARNING_TYPE,
    REPORT_EVENT_TYPE, RegisterEventSourceW, ReportEventW,
};

/// Where the Event Log's sources are registered.
const SOURCES: &str = r"SYSTEM\CurrentControlSet\Services\EventLog\Application";

/// The message file of the registered source: every ID from 1 to 1000 is `%1`.
const MESSAGE_FILE: &str = r"%SystemRoot%\System32\EventCreate.exe";

/// The longest string one record may hold (ReportEvent's limit is 31,839 characters).
const MAX_CHARS: usize = 31_000;

/// The Event Log type and event ID of a record of `level` (the ID says the level too, for
/// filters and scripts that read IDs).
pub fn event_type(level: Level) -> (REPORT_EVENT_TYPE, u32) {
    match level {
        Level::ERROR => (EVENTLOG_ERROR_TYPE, 1),
        Level::WARN => (EVENTLOG_WARNING_TYPE, 2),
        _ => (EVENTLOG_INFORMATION_TYPE, 4),
    }
}

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(std::iter::once(0)).collect()
}

/// A handle on the Event Log for one source; a `MakeWriter` for tracing's fmt layer.
pub struct EventLog {
    handle: HANDLE,
}

// SAFETY: an event source handle may be used from any thread (ReportEvent is thread-safe).
unsafe impl Send for EventLog {}
// SAFETY: as above; the handle is only read.
unsafe impl Sync for EventLog {}

impl EventLog {
    pub fn open(source: &str) -> std::io::Result<EventLog> {
        let name = wide(source);
        // SAFETY: `name` is a NUL-terminated UTF-16 string that outlives the call; a null
        // server name is the local machine.
        let handle = unsafe { RegisterEventSourceW(std::ptr::null(), name.as_ptr()) };
        if handle.is_null() {
            return Err(std::io::Error::last_os_error());
        }
        Ok(EventLog { handle })
    }

    /// Writes one record (cut at [`MAX_CHARS`]); a failure is not reported anywhere (the other
    /// log outputs still have the record).
    fn report(&self, level: Level, text: &str) {
        let text = text.trim_end();
        let cut: String = text.chars().take(MAX_CHARS).collect();
        let line = wide(&cut);
        let strings = [line.as_ptr()];
        let (kind, id) = event_type(level);
        // SAFETY: the handle is open; one NUL-terminated string that outlives the call; no
        // user SID and no raw data.
        unsafe {
            ReportEventW(
                self.handle,
                kind,
                0,
                id,
                std::ptr::null_mut(),
                1,
                0,
                strings.as_ptr(),
                std::ptr::null(),
            );
        }
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        // SAFETY: the handle came from RegisterEventSourceW and is closed once.
        unsafe { DeregisterEventSource(self.handle) };
    }
}

/// One formatted record, written to the Event Log when the formatter is done with it.
pub struct Record<'a> {
    log: &'a EventLog,
    level: Level,
    buf: Vec<u8>,
}

impl Write for Record<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Record<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.log
                .report(self.level, &String::from_utf8_lossy(&self.buf));
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for EventLog {
    type Writer = Record<'a>;

    fn make_writer(&'a self) -> Record<'a> {
        Record {
            log: self,
            level: Level::INFO,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Record<'a> {
        Record {
            log: self,
            level: *meta.level(),
            buf: Vec::new(),
        }
    }
}

/// Registers `source` in the Application log (by `service install`), with the message file
/// that shows each record as written.
pub fn register_source(source: &str) -> std::io::Result<()> {
    use windows_sys::Win32::System::Registry::{
        HKEY, HKEY_LOCAL_MACHINE, KEY_SET_VALUE, REG_DWORD, REG_EXPAND_SZ, REG_OPTION_NON_VOLATILE,
        RegCloseKey, RegCreateKeyExW, RegSetValueExW,
    };
    let path = wide(&format!(r"{SOURCES}\{source}"));
    let mut key: HKEY = std::ptr::null_mut();
    // SAFETY: NUL-terminated strings that outlive the call; `key` receives the opened key.
    let status = unsafe {
        RegCreateKeyExW(
            HKEY_LOCAL_MACHINE,
            path.as_ptr(),
            0,
            std::ptr::null(),
            REG_OPTION_NON_VOLATILE,
            KEY_SET_VALUE,
            std::ptr::null(),
            &mut key,
            std::ptr::null_mut(),
        )
    };
    if status != 0 {
        return Err(std::io::Error::from_raw_os_error(status as i32));
    }
    let file = wide(MESSAGE_FILE);
    let types: u32 =
        (EVENTLOG_ERROR_TYPE | EVENTLOG_WARNING_TYPE | EVENTLOG_INFORMATION_TYPE).into();
    let values: [(&str, u32, &[u8]); 2] = [
        (
            "EventMessageFile",
            REG_EXPAND_SZ,
            // SAFETY: viewing the UTF-16 buffer as its bytes.
            unsafe { std::slice::from_raw_parts(file.as_ptr().cast::<u8>(), file.len() * 2) },
        ),
        ("TypesSupported", REG_DWORD, &types.to_le_bytes()),
    ];
    let mut result = Ok(());
    for (name, kind, data) in values {
        let name = wide(name);
        // SAFETY: the key is open for setting values; name and data outlive the call.
        let status = unsafe {
            RegSetValueExW(
                key,
                name.as_ptr(),
                0,
                kind,
                data.as_ptr(),
                data.len() as u32,
            )
        };
        if status != 0 && result.is_ok() {
            result = Err(std::io::Error::from_raw_os_error(status as i32));
        }
    }
    // SAFETY: the key was opened above and is closed once.
    unsafe { RegCloseKey(key) };
    result
}

/// Removes the registration of `source` (by `service uninstall`); nothing when there is none.
pub fn unregister_source(source: &str) {
    use windows_sys::Win32::System::Registry::{HKEY_LOCAL_MACHINE, RegDeleteKeyW};
    let path = wide(&format!(r"{SOURCES}\{source}"));
    // SAFETY: a NUL-terminated string that outlives the call.
    unsafe { RegDeleteKeyW(HKEY_LOCAL_MACHINE, path.as_ptr()) };
}
