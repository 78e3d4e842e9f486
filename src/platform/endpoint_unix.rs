//! The control endpoint on Unix: a Unix domain socket, mode 0600, whose peer's user is checked
//! (root, or the user protector runs as). Twin of `endpoint_windows.rs`.

use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Listens for connections.
pub struct Endpoint(UnixListener);

/// Removes the socket file when dropped (protector stops), if it is still the one bound:
/// never a socket someone (a later protector) put there since.
pub struct EndpointGuard {
    path: PathBuf,
    identity: Option<(u64, u64)>,
}

impl EndpointGuard {
    /// Is the socket bound still at its path (not removed, not replaced)?
    pub fn in_place(&self) -> bool {
        let now = std::fs::symlink_metadata(&self.path).ok();
        now.is_some_and(|m| Some((m.dev(), m.ino())) == self.identity)
    }
}

impl Drop for EndpointGuard {
    fn drop(&mut self) {
        if self.in_place() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Listens at `path`. The caller holds the instance lock, so a socket left there is a dead
/// protector's and is replaced; anything else there is left alone (an error).
pub fn bind_endpoint(path: &Path) -> io::Result<(Endpoint, EndpointGuard)> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() && m.uid() == crate::perms::euid() => {
            std::fs::remove_file(path)?
        }
        Ok(_) => {
            return Err(io::Error::other(format!(
                "{} exists and is not a socket of this user's: left alone",
                path.display()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    crate::fsutil::create_parent(path)?;
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let identity = std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()));
    let guard = EndpointGuard {
        path: path.to_path_buf(),
        identity,
    };
    Ok((Endpoint(listener), guard))
}

/// One client's connection.
pub struct Connection(UnixStream);

impl Endpoint {
    pub fn accept(&self) -> io::Result<Connection> {
        let (stream, _) = self.0.accept()?;
        Ok(Connection(stream))
    }

    /// What ends a wait in [`Endpoint::accept`] from another thread.
    pub fn closer(&self) -> Closer {
        Closer(self.0.try_clone().ok())
    }
}

/// Ends waits for clients: shut down, the listening socket makes `accept` fail at once.
pub struct Closer(Option<UnixListener>);

impl Closer {
    pub fn close(&self) {
        use std::os::fd::AsRawFd;
        if let Some(listener) = &self.0 {
            // SAFETY: shutdown touches no memory; the descriptor is this listener's own.
            unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RDWR) };
        }
    }
}

impl Connection {
    /// Who is at the other end, when the OS says: `Err` names them if they may not control
    /// protector (only root and protector's own user may).
    pub fn check_peer(&self) -> Result<(), String> {
        match peer_uid(&self.0) {
            Some(uid) if uid == 0 || uid == crate::perms::euid() => Ok(()),
            Some(uid) => Err(format!("user {uid}")),
            None => Err("a peer the OS does not name".into()),
        }
    }

    /// Reads one line of at most `max` bytes (more is returned, for the caller to refuse),
    /// all of it within `within`.
    pub fn read_line(&mut self, max: usize, within: Duration) -> io::Result<Vec<u8>> {
        let deadline = Instant::now() + within;
        let mut line = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.0.set_read_timeout(Some(left))?;
            let room = (max + 1 - line.len()).min(buf.len());
            let n = self.0.read(&mut buf[..room])?;
            if n == 0 || super::add_to_line(&mut line, &buf[..n], max) {
                return Ok(line);
            }
        }
    }

    /// Writes `bytes`, giving up after `within`.
    pub fn write_all(&mut self, bytes: &[u8], within: Duration) -> io::Result<()> {
        self.0.set_write_timeout(Some(within))?;
        self.0.write_all(bytes)
    }
}

/// A client's connection to the endpoint at `path`.
pub fn connect_endpoint(path: &Path) -> io::Result<impl Read + Write> {
    UnixStream::connect(path)
}

/// The user at the other end of a Unix domain socket (`None` if the OS will not say).
fn peer_uid(stream: &std::os::unix::net::UnixStream) -> Option<u32> {
    use std::os::fd::AsRawFd;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: the fd is open for the stream's lifetime; cred and len are valid for writes
        // of the sizes given.
        let r = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        (r == 0 && len as usize == std::mem::size_of::<libc::ucred>()).then_some(cred.uid)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let (mut uid, mut gid) = (0, 0);
        // SAFETY: the fd is open; uid and gid are valid for writes.
        let r = unsafe { libc::getpeereid(stream.as_raw_fd(), &mut uid, &mut gid) };
        (r == 0).then_some(uid)
    }
}
