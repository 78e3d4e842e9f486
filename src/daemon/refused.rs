//! The config in force: keeping the last accepted copy of the config file (see
//! `config::accepted`) whenever protector accepts it, and, when protector was started on a
//! file it refused and runs on that copy, saying so: at start-up, in the state file (so
//! `status` shows it) and again at every reminder (the shortest target timeout) until a reload
//! succeeds.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use tracing::{error, info, warn};

use super::Daemon;
pub(crate) use crate::config::accepted::Refused;
use crate::config::{self, Os};
use crate::fsutil::epoch_secs;

/// A refusal in force, and when it is next said again.
pub(super) struct Refusal {
    pub refused: Refused,
    pub since: SystemTime,
    pub next: Instant,
    /// The file was found valid (and that was said) at the last reminder.
    pub valid_said: bool,
}

/// Reminders come this often at least and at most (the shortest target timeout in between).
const REMIND_MIN: Duration = Duration::from_secs(10);
const REMIND_MAX: Duration = Duration::from_secs(3600);

impl Daemon {
    fn remind_every(&self) -> Duration {
        self.slots
            .iter()
            .map(|s| s.target.timeout)
            .min()
            .unwrap_or(Duration::from_secs(300))
            .clamp(REMIND_MIN, REMIND_MAX)
    }

    /// Start-up on the last accepted copy: says why, and when it is said again.
    pub(super) fn announce_refusal(&mut self, refused: Refused) {
        for line in &refused.problems {
            error!(event = "config_problem", "{line}");
        }
        let saved = refused
            .saved_at
            .map_or_else(|| "unknown".into(), |t| format!("{:.0}", epoch_secs(t)));
        error!(
            event = "config_refused",
            config = %self.opts.config_path.as_deref().unwrap_or(Path::new("")).display(),
            running_on = %refused.copy.display(),
            accepted_at = %saved,
            problems = refused.problems.len(),
            "the config file is refused; watching goes on with the last config protector accepted until the file is fixed and reloaded"
        );
        let now = self.now();
        self.refusal = Some(Refusal {
            refused,
            since: now.wall,
            next: crate::schedule::later(now.mono, self.remind_every()),
            valid_said: false,
        });
    }

    /// When the next reminder is due (none when the config file is in force).
    pub(super) fn refusal_due(&self) -> Option<Instant> {
        self.refusal.as_ref().map(|r| r.next)
    }

    /// The reminder: the file is looked at again; still refused, it is said again (an error);
    /// valid now, protector says a reload applies it.
    /// Called at every turn of the loop: nothing but a comparison unless a reminder is due
    /// (the shortest timeout of 100,000 targets, found at every turn, cost the loop 14 s of
    /// CPU while their deadlines came one after another over 15 s).
    pub(super) fn remind_refusal(&mut self) {
        let now = self.now().mono;
        if self.refusal_due().is_none_or(|at| at > now) {
            return;
        }
        let every = self.remind_every();
        let Some(path) = self.opts.config_path.clone() else {
            return;
        };
        let Some(r) = self.refusal.as_mut() else {
            return;
        };
        r.next = crate::schedule::later(now, every);
        let verdict = config::load(&path, Os::host());
        let was_said = std::mem::replace(&mut r.valid_said, verdict.is_ok());
        match verdict {
            Ok(_) if was_said => {}
            Ok(_) => warn!(
                event = "config_valid_again",
                config = %path.display(),
                running_on = %r.refused.copy.display(),
                "the config file is valid now, but not in force: `protector reload` (or `systemctl reload protector`) applies it"
            ),
            Err(e) => error!(
                event = "config_still_refused",
                config = %path.display(),
                running_on = %r.refused.copy.display(),
                problems = e.problems.len(),
                first = %e.lines().next().unwrap_or_default(),
                "the config file is still refused; still watching with the last config protector accepted"
            ),
        }
    }

    /// The config file `path` was accepted with this text: it is the copy kept from now on,
    /// and the file is in force.
    pub(super) fn accepted(&mut self, path: &Path, text: &str) {
        if self.refusal.take().is_some() {
            info!(event = "config_in_force", config = %path.display(), "the config file is in force again");
            self.mark_dirty(true);
        }
        if self.opts.dry_run {
            return;
        }
        if let Err(e) = config::accepted::keep(path, text) {
            warn!(
                event = "accepted_copy_failed",
                copy = %config::accepted::copy_path(path).display(),
                reason = %e,
                "cannot keep a copy of the accepted config (a start on a refused file would then have nothing to run on)"
            );
        }
    }

    /// For the state file.
    pub(super) fn refusal_record(&self) -> Option<crate::state::ConfigRefused> {
        self.refusal.as_ref().map(|r| crate::state::ConfigRefused {
            since: epoch_secs(r.since),
            running_on: r.refused.copy.display().to_string(),
            accepted_at: r.refused.saved_at.map(epoch_secs),
            problems: r.refused.problems.iter().take(20).cloned().collect(),
        })
    }
}
