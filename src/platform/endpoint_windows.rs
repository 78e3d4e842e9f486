//! The control endpoint on Windows: a named pipe, local clients only, whose ACL lets in only
//! SYSTEM, Administrators and the pipe's owner (the account protector runs as). Twin of
//! `endpoint_unix.rs`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::windows::io::{AsRawHandle, FromRawHandle};
use std::path::Path;
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    ERROR_BROKEN_PIPE, ERROR_NO_DATA, ERROR_PIPE_BUSY, ERROR_PIPE_CONNECTED, HANDLE,
    INVALID_HANDLE_VALUE, LocalFree,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES};
use windows_sys::Win32::Storage::FileSystem::{FILE_FLAG_FIRST_PIPE_INSTANCE, PIPE_ACCESS_DUPLEX};
use windows_sys::Win32::System::Pipes::{
    ConnectNamedPipe, CreateNamedPipeW, DisconnectNamedPipe, PIPE_READMODE_BYTE,
    PIPE_REJECT_REMOTE_CLIENTS, PIPE_TYPE_BYTE, PIPE_UNLIMITED_INSTANCES, PIPE_WAIT, PeekNamedPipe,
    WaitNamedPipeW,
};

/// SYSTEM, Administrators and the owner: full access; nobody else.
const SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;GA;;;OW)";

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(Some(0)).collect()
}

/// A security descriptor made from [`SDDL`], freed when dropped.
struct Descriptor(PSECURITY_DESCRIPTOR);

// SAFETY: the descriptor is only read after it is made, and freed once.
unsafe impl Send for Descriptor {}

impl Drop for Descriptor {
    fn drop(&mut self) {
        // SAFETY: made by ConvertStringSecurityDescriptorToSecurityDescriptorW, which says
        // to free it with LocalFree.
        unsafe { LocalFree(self.0) };
    }
}

/// Listens for connections: always one instance of the pipe waiting for the next client.
pub struct Endpoint {
    name: Vec<u16>,
    descriptor: Descriptor,
    waiting: std::sync::Mutex<HANDLE>,
}

// SAFETY: the handles are owned by the endpoint and used by one thread at a time.
unsafe impl Send for Endpoint {}
unsafe impl Sync for Endpoint {}

/// Nothing to remove: the pipe goes with protector's process.
pub struct EndpointGuard;

impl EndpointGuard {
    /// A pipe cannot be removed or replaced by another process while protector holds it.
    pub fn in_place(&self) -> bool {
        true
    }
}

/// Listens at `path` (`\\.\pipe\NAME`). The first instance is created with
/// FILE_FLAG_FIRST_PIPE_INSTANCE: if another process took the name first, this fails rather
/// than share it.
pub fn bind_endpoint(path: &Path) -> io::Result<(Endpoint, EndpointGuard)> {
    let name = wide(&path.to_string_lossy());
    let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    let sddl = wide(SDDL);
    // SAFETY: sddl is a NUL-terminated wide string; sd receives a pointer we free.
    let ok = unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl.as_ptr(),
            SDDL_REVISION_1,
            &mut sd,
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    let descriptor = Descriptor(sd);
    let first = instance(&name, &descriptor, true)?;
    Ok((
        Endpoint {
            name,
            descriptor,
            waiting: std::sync::Mutex::new(first),
        },
        EndpointGuard,
    ))
}

fn instance(name: &[u16], descriptor: &Descriptor, first: bool) -> io::Result<HANDLE> {
    let sa = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: descriptor.0,
        bInheritHandle: 0,
    };
    let flags = PIPE_ACCESS_DUPLEX
        | if first {
            FILE_FLAG_FIRST_PIPE_INSTANCE
        } else {
            0
        };
    // SAFETY: name is NUL-terminated; sa and its descriptor live through the call.
    let h = unsafe {
        CreateNamedPipeW(
            name.as_ptr(),
            flags,
            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
            PIPE_UNLIMITED_INSTANCES,
            64 * 1024,
            64 * 1024,
            0,
            &sa,
        )
    };
    if h == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    Ok(h)
}

/// One client's connection.
pub struct Connection(File);

/// Ends waits for clients: nothing to do on Windows, where the pipe is never replaced
/// while protector runs (its endpoint lives as long as protector).
pub struct Closer;

impl Closer {
    pub fn close(&self) {}
}

impl Endpoint {
    /// What ends a wait in [`Endpoint::accept`] (see [`Closer`]).
    pub fn closer(&self) -> Closer {
        Closer
    }

    /// Waits for a client on the waiting instance, then makes the next one wait, so a client
    /// never finds no instance at all.
    pub fn accept(&self) -> io::Result<Connection> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            // SAFETY: *waiting is an instance this endpoint made and owns.
            if unsafe { ConnectNamedPipe(*waiting, std::ptr::null_mut()) } != 0 {
                break;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error().map(|c| c as u32) {
                Some(ERROR_PIPE_CONNECTED) => break,
                // A client came and went before this call: the instance must be disconnected
                // before it can wait again (else every later call fails the same way).
                // SAFETY: as above.
                Some(ERROR_NO_DATA) => unsafe {
                    DisconnectNamedPipe(*waiting);
                },
                _ => return Err(e),
            }
        }
        let next = instance(&self.name, &self.descriptor, false)?;
        let connected = std::mem::replace(&mut *waiting, next);
        // SAFETY: the handle is open and ours; the File owns (and closes) it from now on.
        Ok(Connection(unsafe { File::from_raw_handle(connected as _) }))
    }
}

impl Connection {
    /// The pipe's ACL already let in only SYSTEM, Administrators and protector's own account.
    pub fn check_peer(&self) -> Result<(), String> {
        Ok(())
    }

    /// Reads one line of at most `max` bytes (more is returned, for the caller to refuse),
    /// all of it within `within`. Only what is there is read (PeekNamedPipe), so a client
    /// that never writes cannot block the read past the deadline.
    pub fn read_line(&mut self, max: usize, within: Duration) -> io::Result<Vec<u8>> {
        let deadline = Instant::now() + within;
        let mut line = Vec::new();
        loop {
            let mut avail: u32 = 0;
            // SAFETY: the handle is open; only the count is asked for.
            let ok = unsafe {
                PeekNamedPipe(
                    self.0.as_raw_handle() as HANDLE,
                    std::ptr::null_mut(),
                    0,
                    std::ptr::null_mut(),
                    &mut avail,
                    std::ptr::null_mut(),
                )
            };
            if ok == 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(ERROR_BROKEN_PIPE as i32) {
                    return Ok(line);
                }
                return Err(e);
            }
            if avail == 0 {
                if Instant::now() >= deadline {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            let mut buf = vec![0; (avail as usize).min(max + 1 - line.len())];
            let n = self.0.read(&mut buf)?;
            if n == 0 || super::add_to_line(&mut line, &buf[..n], max) {
                return Ok(line);
            }
        }
    }

    /// Writes `bytes` and waits until the client has read them (the flush), with no time
    /// limit: a synchronous pipe has no write timeout. So a client that asks and never reads
    /// keeps its place (one of `control::MAX_CLIENTS`) until it goes; only SYSTEM,
    /// Administrators and protector's own account may open the pipe at all.
    pub fn write_all(&mut self, bytes: &[u8], _within: Duration) -> io::Result<()> {
        self.0.write_all(bytes)?;
        self.0.flush()
    }
}

/// A client's connection to the pipe at `path`; waits up to 5 s while every instance is busy.
pub fn connect_endpoint(path: &Path) -> io::Result<impl Read + Write> {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
        {
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32) && Instant::now() < end => {
                let name = wide(&path.to_string_lossy());
                // SAFETY: name is NUL-terminated.
                unsafe { WaitNamedPipeW(name.as_ptr(), 1000) };
            }
            other => return other,
        }
    }
}
