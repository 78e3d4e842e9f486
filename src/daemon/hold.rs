//! Dependencies before a restart (`depends_on`): checks are made off the loop's thread and
//! report back on its channel; the core (`schedule::hold`) decides what a verdict leads to,
//! and this says it: one `dependency_down` when a hold begins, `dependency_up` when it ends
//! (a check found the dependency up, or the heartbeat came back).

use std::time::Duration;

use tracing::{debug, info, warn};

use super::effects::Probe;
use super::slot::Notes;
use super::{Daemon, Msg, secs};
use crate::depends::Verdict;
use crate::schedule::Checked;

impl Daemon {
    /// Starts a check of slot `i`'s dependencies; its verdict comes back as `Msg::Checked`
    /// (the core's deadline bounds the wait for it). A dry run checks nothing: up.
    pub(super) fn check_dependencies(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        slot.check_seq += 1;
        let (id, seq) = (slot.id, slot.check_seq);
        let Some(depends) = slot.target.depends_on.as_deref().cloned() else {
            // A reload took them away while the target was held: nothing to wait for.
            let _ = self.tx.send(Msg::Checked {
                id,
                seq,
                verdict: up("no dependencies any more"),
            });
            return;
        };
        if self.opts.dry_run {
            info!(target = %slot.target.name, event = "dry_run_command", command = "depends_on", "dry run: would check the dependencies; taking them as up");
            let _ = self.tx.send(Msg::Checked {
                id,
                seq,
                verdict: up("dry run"),
            });
            return;
        }
        debug!(target = %slot.target.name, event = "dependency_check", "checking the dependencies");
        let probe = Probe {
            target: slot.target.name.clone(),
            depends,
            env: self.command_env(&self.slots[i]),
        };
        let tx = self.tx.clone();
        self.fx.checker.check(
            probe,
            Box::new(move |verdict| {
                let _ = tx.send(Msg::Checked { id, seq, verdict });
            }),
        );
    }

    /// The verdict of slot `id`'s check number `seq`; an older check's is dropped.
    pub(super) fn on_checked(&mut self, id: u64, seq: u64, verdict: Verdict) {
        let Some(&i) = self.index.get(&id) else {
            return;
        };
        if self.slots[i].check_seq != seq {
            return;
        }
        if self.slots[i].state.phase != crate::schedule::Phase::Checking {
            return;
        }
        let obs = self.look_once(i);
        let now = self.now();
        let up = verdict.up;
        let next = self.contained(i, "taking a dependency check's verdict", |d| {
            let slot = &mut d.slots[i];
            slot.state.on_checked(&slot.rules, up, &obs, now)
        });
        let Some(next) = next else {
            return self.recover(i);
        };
        let slot = &mut self.slots[i];
        let name = slot.target.name.clone();
        match next {
            Checked::Restart(cmd) => {
                debug!(target = %name, event = "dependency_checked", found = %verdict.detail, "the dependencies are up; restarting");
                self.mark_dirty(true);
                self.spawn(i, cmd);
            }
            Checked::HoldEnded => {
                slot.set_note(Notes::DEPENDENCY, None);
                info!(
                    target = %name,
                    event = "dependency_up",
                    via = "check",
                    found = %verdict.detail,
                    next_check_in_secs = secs(slot.target.timeout),
                    "the dependency is back; the target gets a whole timeout for a heartbeat"
                );
                self.agenda.push(slot.state.deadline, i);
                self.mark_dirty(true);
            }
            Checked::Held { first, recheck } => {
                self.held(i, first, recheck, verdict.detail);
                self.agenda.push(self.slots[i].state.deadline, i);
            }
            Checked::Beat { hold_ended } => {
                self.heartbeat_ended_wait(i, hold_ended);
                self.agenda.push(self.slots[i].state.deadline, i);
            }
            Checked::Ignored => {}
        }
    }

    /// Slot `i` is held: its dependency is down (`why`). The hold is logged when it begins;
    /// each later check that finds it still down only at debug level.
    pub(super) fn held(&mut self, i: usize, first: bool, recheck: Duration, why: String) {
        let slot = &mut self.slots[i];
        let tried = slot
            .target
            .depends_on
            .as_deref()
            .map(tried)
            .unwrap_or_default();
        if first {
            warn!(
                target = %slot.target.name,
                event = "dependency_down",
                tried = %tried,
                reason = %why,
                recheck_in_secs = secs(recheck),
                "a dependency is down: not restarting while it is (held)"
            );
        } else {
            debug!(target = %slot.target.name, event = "dependency_still_down", reason = %why, recheck_in_secs = secs(recheck), "the dependency is still down; still held");
        }
        slot.set_note(Notes::DEPENDENCY, Some(why));
        self.mark_dirty(first);
    }

    /// The heartbeat came back while slot `i` was held (`hold_ended`) or waited before a
    /// restart: the hold is over, or the restart called off.
    pub(super) fn heartbeat_ended_wait(&mut self, i: usize, hold_ended: bool) {
        let slot = &mut self.slots[i];
        if hold_ended {
            slot.set_note(Notes::DEPENDENCY, None);
            info!(target = %slot.target.name, event = "dependency_up", via = "heartbeat", "the heartbeat is back while held; watching as usual");
        } else {
            info!(target = %slot.target.name, event = "restart_called_off", reason = "heartbeat", "the heartbeat is back before the restart began; not restarting");
        }
        self.mark_dirty(true);
    }
}

fn up(detail: &str) -> Verdict {
    Verdict {
        up: true,
        detail: detail.into(),
    }
}

/// What a check tries, in a few words: `tcp salt:4506, 10.0.0.2:4506; command ...`.
fn tried(d: &crate::config::Depends) -> String {
    let mut parts = Vec::new();
    if !d.tcp.is_empty() {
        let list: Vec<String> = d.tcp.iter().map(ToString::to_string).collect();
        parts.push(format!("tcp {}", list.join(", ")));
    }
    if let Some(c) = &d.command {
        parts.push(format!("command {c}"));
    }
    parts.join("; ")
}
