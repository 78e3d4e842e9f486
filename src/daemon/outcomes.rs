//! How a command's end is logged: one record, its event saying how it ended
//! (`command_finished`, `command_failed`, `command_timed_out`, `command_not_run`), with the
//! tails of its output.

use std::time::Duration;

use tracing::{error, info, warn};

use super::secs;
use crate::command::Outcome;

/// Logs how a command ended; `what` is `stop`, `start`, `skip_if` or `notify`.
pub(super) fn log_outcome(name: &str, what: &str, command_timeout: Duration, o: &Outcome) {
    let ms = o.duration.as_millis() as u64;
    let (stdout, stderr) = (non_empty(&o.stdout), non_empty(&o.stderr));
    match &o.status {
        Err(reason) => {
            error!(target = %name, event = "command_not_run", command = what, duration_ms = ms, reason = %reason, "{what} command could not run");
        }
        Ok(status) if o.timed_out => {
            error!(
                target = %name,
                event = "command_timed_out",
                command = what,
                duration_ms = ms,
                timeout_secs = secs(command_timeout),
                status = %status,
                stdout,
                stderr,
                "{what} command timed out; killed its process tree"
            );
        }
        Ok(status) if status.success() => {
            info!(target = %name, event = "command_finished", command = what, duration_ms = ms, stdout, stderr, "{what} command finished");
        }
        Ok(status) => {
            warn!(target = %name, event = "command_failed", command = what, duration_ms = ms, status = %status, stdout, stderr, "{what} command failed");
        }
    }
}

/// Output fields are left out of a log line when the stream was empty.
fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}
