//! Keeps protector's instance lock and control socket in place while it runs. Both are files
//! in a directory root may clean: a lock file removed (by hand, by a cleaner of /run) keeps no
//! second protector out, and a socket removed leaves operators without `pause` or `restart` and
//! `status` saying none runs. Every [`CHECK_EVERY`], on a thread of its own, the sentinel
//! compares each path with what protector holds; one removed or replaced is made again and
//! logged (`lock_file_restored`, `control_socket_restored`). If another protector took the
//! lock's path in the meantime, that is an error said once (`lock_file_taken`): two protectors
//! now watch the same targets.
//!
//! The sentinel owns the lock and the socket: dropped (when protector stops), it ends its
//! thread and lets them go, the socket before the lock.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{error, warn};

use super::Msg;
use super::control;
use crate::control::server::Listener;
use crate::lock::{self, InstanceLock};

/// How often the lock and the socket are looked at.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);

pub(crate) struct Sentinel {
    /// Shared with the thread: kept here too, so that the lock is held even if the thread
    /// could not be made.
    held: Arc<Mutex<Held>>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// What the sentinel holds: the newest lock and socket. One replaced is let go: its file is
/// no longer at the path (the lock it held keeps no one out; the socket is not removed, as
/// it is not the one there, and its accepting thread ends), so a cleaner that removes them
/// every hour costs nothing over years.
struct Held {
    lock: InstanceLock,
    socket: Option<Listener>,
    socket_path: Option<PathBuf>,
    taken_said: bool,
}

impl Sentinel {
    /// Watches over `lock` and the control socket (`socket`, listening at its path), which
    /// sends requests to the loop through `tx`.
    pub(crate) fn start(
        lock: InstanceLock,
        socket: Option<(PathBuf, Listener)>,
        tx: mpsc::Sender<Msg>,
    ) -> Sentinel {
        let (stop, stopped) = mpsc::channel::<()>();
        let (socket_path, socket) = match socket {
            Some((path, listener)) => (Some(path), Some(listener)),
            None => (None, None),
        };
        let held = Arc::new(Mutex::new(Held {
            lock,
            socket,
            socket_path,
            taken_said: false,
        }));
        let shared = held.clone();
        let thread = std::thread::Builder::new()
            .name("sentinel".into())
            .spawn(move || {
                // Woken by the timeout to look, by the stop (or its sender's drop) to end.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECK_EVERY) {
                    shared.lock().unwrap_or_else(|p| p.into_inner()).look(&tx);
                }
            });
        let thread = match thread {
            Ok(thread) => Some(thread),
            Err(e) => {
                warn!(event = "sentinel_unavailable", reason = %e, "cannot watch over the lock file and the control socket; a removed one is not made again");
                None
            }
        };
        Sentinel {
            held,
            stop: Some(stop),
            thread,
        }
    }
}

impl Held {
    fn look(&mut self, tx: &mpsc::Sender<Msg>) {
        if !self.lock.in_place() {
            let path = self.lock.path.clone();
            match lock::acquire(&path) {
                Ok(again) => {
                    warn!(event = "lock_file_restored", lock_file = %path.display(), "the lock file was removed or replaced; made it again");
                    self.lock = again;
                    self.taken_said = false;
                }
                Err(e) if !self.taken_said => {
                    error!(event = "lock_file_taken", lock_file = %path.display(), reason = %format!("{e:#}"), "the lock file was removed and cannot be made again: another protector may now watch the same targets");
                    self.taken_said = true;
                }
                Err(_) => {}
            }
        }
        let (Some(path), Some(listener)) = (&self.socket_path, &self.socket) else {
            return;
        };
        if listener.in_place() {
            return;
        }
        match control::listen(path, tx.clone()) {
            Ok(again) => {
                warn!(event = "control_socket_restored", socket = %path.display(), "the control socket was removed or replaced; listening again");
                self.socket = Some(again);
            }
            Err(e) => {
                error!(event = "control_unavailable", socket = %path.display(), reason = %e, "the control socket was removed and cannot be made again; operators' requests cannot reach protector");
                // Said once: not looked at again.
                self.socket_path = None;
            }
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // The socket goes before the lock (which goes with `held`, after this), so it is
        // never a later protector's that is removed (and a socket is removed only if it is
        // still the one made).
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.socket = None;
    }
}
