//! A restart's incident, seen from the loop: what to take (a [`Draft`] for the runner, which
//! takes and keeps it on the command's thread before the first command runs), and what to do
//! with the note that comes back: book it on the restart (state file, `status`, the
//! `restart_done` record) and run the restart's notify command, which waited for it, with
//! its id and summary.

use super::effects::IncidentJob;
use super::{Daemon, Msg};
use crate::incident::Draft;
use crate::state::IncidentNote;

impl Daemon {
    /// The incident of the restart slot `i` begins, when protector keeps incidents (beside
    /// its state file; not in a dry run).
    pub(super) fn incident_job(&self, i: usize) -> Option<IncidentJob> {
        if self.opts.dry_run {
            return None;
        }
        let dir = crate::incident::dir_beside(self.books.files.state_file.as_deref()?);
        let slot = &self.slots[i];
        let now = self.now().mono;
        let draft = Draft {
            target: slot.target.name.clone(),
            reason: if self.asked(i) {
                "asked by an operator".into()
            } else {
                "stale".into()
            },
            heartbeat_age_secs: slot
                .state
                .beat_known
                .then(|| slot.state.age(now).as_secs_f64()),
            consecutive_restarts: slot.state.consecutive,
            diagnose: slot
                .target
                .diagnose
                .clone()
                .map(|line| (line, slot.target.diagnose_timeout)),
            pid_file: slot.target.pid_file.clone(),
            service: slot.target.service.clone(),
            dir,
        };
        let (tx, id) = (self.tx.clone(), slot.id);
        Some(IncidentJob::new(
            draft,
            Box::new(move |note| {
                let _ = tx.send(Msg::Incident { id, note });
            }),
        ))
    }

    /// The incident of slot `id`'s restart was kept (`None`: it could not be).
    pub(super) fn on_incident(&mut self, id: u64, note: Option<IncidentNote>) {
        let Some(i) = self.slots.iter().position(|s| s.id == id) else {
            return;
        };
        let slot = &mut self.slots[i];
        if let Some(r) = &mut slot.last_restart {
            r.incident = note.clone();
        }
        let extra = note.map_or_else(Vec::new, |n| {
            vec![
                ("PROTECTOR_INCIDENT", n.id),
                ("PROTECTOR_INCIDENT_SUMMARY", n.summary),
            ]
        });
        let (event, restarts) = (slot.restart_event(), slot.state.consecutive);
        self.notify_with(i, event, restarts, extra);
        self.mark_dirty(false);
    }
}
