//! systemd integration (Type=notify): readiness, reload and stop notifications, and watchdog
//! keep-alives from the scheduler thread. Does nothing when NOTIFY_SOCKET is not set, and
//! nothing at all off Unix.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    Ready,
    Reloading,
    Stopping,
    Watchdog,
}

/// Environment variables of the service manager that the commands protector runs must not
/// inherit (a command would otherwise talk to systemd as if it were protector).
pub const PRIVATE_ENV: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

#[cfg(unix)]
pub fn send(note: Note) {
    use sd_notify::NotifyState;
    let result = match note {
        Note::Ready => sd_notify::notify(&[NotifyState::Ready]),
        Note::Reloading => match NotifyState::monotonic_usec_now() {
            Ok(now) => sd_notify::notify(&[NotifyState::Reloading, now]),
            Err(_) => sd_notify::notify(&[NotifyState::Reloading]),
        },
        Note::Stopping => sd_notify::notify(&[NotifyState::Stopping]),
        Note::Watchdog => sd_notify::notify(&[NotifyState::Watchdog]),
    };
    if let Err(e) = result {
        tracing::warn!(event = "systemd_notify_failed", note = ?note, reason = %e, "cannot notify systemd");
    }
}

#[cfg(not(unix))]
pub fn send(_note: Note) {}

/// How often to send WATCHDOG=1: half of WatchdogSec, when systemd asks for it.
pub fn watchdog_interval() -> Option<Duration> {
    #[cfg(unix)]
    {
        sd_notify::watchdog_enabled().map(|d| d / 2)
    }
    #[cfg(not(unix))]
    {
        None
    }
}
