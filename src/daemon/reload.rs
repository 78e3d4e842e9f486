//! Installing a config: at start-up, and on SIGHUP (read off the loop's thread, then
//! installed by the loop). A pure [`plan`] says what happens to each
//! target (unchanged, changed, added, removed); [`Daemon::apply`] carries it out: unchanged
//! targets keep their state, changed ones keep their restart counts (and a running command)
//! and start timing over with `startup_grace`, added ones start with `startup_grace` (and
//! what the state file recorded at start-up), removed ones stop being watched (a running
//! command of theirs finishes and is logged).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;

use tracing::{debug, error, info, warn};

use super::effects::LoadResult;
use super::slot::Slot;
use super::{Daemon, Msg, secs, warn_about_place};
use crate::config::{Config, Target};
use crate::control::Reply;
use crate::schedule::Observation;
use crate::{platform, systemd};

/// Above this many targets, per-target start-up lines are logged at debug level.
const QUIET_ABOVE: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    /// Same settings: keeps its state.
    Unchanged,
    /// New settings for a known name.
    Changed,
    /// A name not watched before.
    Added,
}

/// What installing a config does.
#[derive(Debug)]
pub(super) struct Plan {
    /// Every enabled target of the new config, in its order, with what happens to it.
    pub targets: Vec<(Target, Change)>,
    /// Watched before, not enabled now.
    pub removed: Vec<String>,
    pub disabled: Vec<Target>,
}

/// Compares the targets watched now (`old`) with a new config's.
pub(super) fn plan<'a>(old: impl IntoIterator<Item = &'a Target>, new: Vec<Target>) -> Plan {
    let old: HashMap<&str, &Target> = old.into_iter().map(|t| (t.name.as_str(), t)).collect();
    let (enabled, disabled): (Vec<Target>, Vec<Target>) = new.into_iter().partition(|t| t.enabled);
    let removed = {
        let kept: std::collections::HashSet<&str> =
            enabled.iter().map(|t| t.name.as_str()).collect();
        let mut r: Vec<String> = old
            .keys()
            .filter(|n| !kept.contains(**n))
            .map(|n| n.to_string())
            .collect();
        r.sort();
        r
    };
    let targets = enabled
        .into_iter()
        .map(|t| {
            let change = match old.get(t.name.as_str()) {
                Some(o) if **o == t => Change::Unchanged,
                Some(_) => Change::Changed,
                None => Change::Added,
            };
            (t, change)
        })
        .collect();
    Plan {
        targets,
        removed,
        disabled,
    }
}

/// A reload in progress: the config file is read off the loop's thread, the old targets
/// watched meanwhile.
pub(super) struct Reloading {
    /// Operators waiting for its outcome.
    waiters: Vec<mpsc::Sender<Reply>>,
    /// Asked again meanwhile (the file may have changed after it was read): it is read again
    /// once this load is done, for these operators.
    again: Option<Vec<mpsc::Sender<Reply>>>,
}

impl Daemon {
    /// SIGHUP (or `protector reload`, whose answer goes to `reply`): re-reads the config off
    /// the loop's thread; [`Daemon::on_loaded`] applies a valid one, or logs every problem of
    /// an invalid one and keeps the old. Asked while a load is in progress: read once more
    /// after it.
    pub(super) fn reload(&mut self, reply: Option<mpsc::Sender<Reply>>) {
        let Some(path) = self.opts.config_path.clone() else {
            warn!(
                event = "reload_impossible",
                "reload requested, but protector was started with positional arguments: nothing to reload"
            );
            if let Some(reply) = reply {
                let _ = reply.send(Reply::Message {
                    ok: false,
                    message: "protector was started with positional arguments: there is no \
                              config to reload"
                        .into(),
                });
            }
            return;
        };
        if let Some(reloading) = &mut self.reloading {
            reloading.again.get_or_insert_with(Vec::new).extend(reply);
            info!(
                event = "reload_queued",
                "reload requested while the config is being read: it is read again after that"
            );
            return;
        }
        self.begin_load(path, reply.into_iter().collect());
    }

    fn begin_load(&mut self, path: PathBuf, waiters: Vec<mpsc::Sender<Reply>>) {
        systemd::send(systemd::Note::Reloading);
        info!(event = "reload_started", config = %path.display(), "reloading the config");
        self.reloading = Some(Reloading {
            waiters,
            again: None,
        });
        let tx = self.tx.clone();
        self.fx.loader.load(
            path,
            Box::new(move |result| {
                let _ = tx.send(Msg::Loaded(Box::new(result)));
            }),
        );
    }

    /// The config file was read: a valid config is applied, an invalid one logged (every
    /// problem) and the old one kept; the operators who asked hear which.
    pub(super) fn on_loaded(&mut self, result: LoadResult) {
        // None: abandoned at shutdown.
        let (Some(Reloading { waiters, again }), Some(path)) =
            (self.reloading.take(), self.opts.config_path.clone())
        else {
            return;
        };
        let (ok, message) = match result {
            Ok((config, text)) => {
                let summary = self.apply(config, false);
                self.accepted(&path, &text);
                self.start_queued();
                self.start_queued_notifies();
                (true, summary)
            }
            Err(e) => {
                for line in e.lines() {
                    error!(event = "config_problem", "{line}");
                }
                error!(
                    event = "reload_failed",
                    problems = e.problems.len(),
                    "reload failed; still running the previous config"
                );
                let message = format!(
                    "{}\nreload refused; still running the previous config",
                    e.to_string().trim_end()
                );
                (false, message)
            }
        };
        systemd::send(systemd::Note::Ready);
        if !waiters.is_empty() {
            // Written first: a `protector status` right after the answer shows the reload.
            self.flush();
        }
        for waiter in waiters {
            let message = message.clone();
            let _ = waiter.send(Reply::Message { ok, message });
        }
        if let Some(next) = again {
            self.begin_load(path, next);
        }
    }

    /// Shutting down: a reload in progress is not applied; whoever waits for it hears so.
    pub(super) fn abandon_reload(&mut self) {
        let Some(Reloading { waiters, again }) = self.reloading.take() else {
            return;
        };
        info!(
            event = "reload_abandoned",
            "shutting down: the config being read is not applied"
        );
        for waiter in waiters.into_iter().chain(again.into_iter().flatten()) {
            let _ = waiter.send(Reply::Error(
                "protector is shutting down; the reload was not applied".into(),
            ));
        }
    }

    /// Installs `config` (see the module's header). `first`: at start-up. Returns what
    /// changed, in a few words.
    pub(super) fn apply(&mut self, config: Config, first: bool) -> String {
        let now = self.now();
        let plan = plan(self.slots.iter().map(|s| &s.target), config.targets);
        let mut old: HashMap<String, Slot> = self
            .slots
            .drain(..)
            .map(|s| (s.target.name.clone(), s))
            .collect();

        // Look at every target that starts timing afresh, in one batch.
        let fresh: Vec<&Target> = plan
            .targets
            .iter()
            .filter(|(t, change)| match change {
                Change::Unchanged => false,
                Change::Changed => !old[&t.name].is_running(),
                Change::Added => true,
            })
            .map(|(t, _)| t)
            .collect();
        self.books.observations += fresh.len() as u64;
        let looks = self.look_at(&fresh);
        // Where the look answered (a filesystem that does not answer has nothing to say).
        let answered: Vec<&Target> = fresh
            .iter()
            .zip(&looks)
            .filter(|(_, (obs, _))| *obs != Observation::Unknown)
            .map(|(t, _)| *t)
            .collect();
        for (t, place) in answered.iter().zip(self.places_of(&answered)) {
            warn_about_place(t, &place);
        }
        crate::programs::log_missing_in_background(fresh.iter().map(|t| (*t).clone()).collect());
        let mut looks = looks.into_iter();

        if !first
            && config
                .files
                .lock_file
                .as_ref()
                .is_some_and(|l| *l != self.books.lock_file)
        {
            warn!(
                event = "lock_file_unchanged",
                "lock_file changes take effect when protector is restarted"
            );
        }
        self.books.files = config.files;
        let max = config.max_parallel_commands.max(1);
        self.commands.set_max(max);
        self.notifies.set_max(max);
        let (restored, mut left) = if first {
            if !self.opts.dry_run {
                self.remove_stale_temps();
            }
            let restored = self.read_state_file();
            let left = self.commands_left(&restored);
            (restored, left)
        } else {
            (HashMap::new(), HashMap::new())
        };
        // With many targets, one "watching" line each is noise: they go to debug.
        let quiet = plan.targets.len() > QUIET_ABOVE;
        for (target, change) in plan.targets.iter().cloned() {
            let slot = match change {
                Change::Unchanged => old.remove(&target.name).expect("planned"),
                Change::Changed => {
                    let mut slot = old.remove(&target.name).expect("planned");
                    slot.rules = crate::schedule::Rules::of(&target);
                    slot.target = target;
                    if !slot.is_running() {
                        // New settings, new timing (startup grace); the counts carry over.
                        let (obs, err) = looks.next().expect("looked above");
                        slot.start_over(&obs, now);
                        slot.note_look(&obs, err);
                    }
                    info!(target = %slot.target.name, event = "target_changed", "settings changed; applied");
                    slot
                }
                Change::Added => {
                    let look = looks.next().expect("looked above");
                    let mut slot = Slot::new(self.next_id, target, look, now, self.fx.seed);
                    self.next_id += 1;
                    if let Some(rec) = restored.get(&slot.target.name) {
                        slot.restore_record(rec, now);
                    }
                    slot.adopt_leftover(left.remove(&slot.target.name));
                    let (name, heartbeat, timeout_secs, first_check_in_secs) = (
                        &slot.target.name,
                        slot.target.heartbeat.display(),
                        secs(slot.target.timeout),
                        secs(slot.state.deadline.saturating_duration_since(now.mono)),
                    );
                    if quiet {
                        debug!(target = %name, event = "watching", %heartbeat, timeout_secs, first_check_in_secs, "watching");
                    } else {
                        info!(target = %name, event = "watching", %heartbeat, timeout_secs, first_check_in_secs, "watching");
                    }
                    slot
                }
            };
            self.slots.push(slot);
        }
        for name in &plan.removed {
            let slot = old.remove(name).expect("planned");
            self.answer_waiters(
                slot.id,
                name,
                Err(
                    "the target was removed from the config by a reload before its restart \
                     ended"
                        .into(),
                ),
            );
            if slot.is_running() {
                self.orphans
                    .insert(slot.id, (name.clone(), slot.target.command_timeout));
                info!(target = %name, event = "target_removed", "no longer in the config; its running command will finish on its own");
            } else {
                info!(target = %name, event = "target_removed", "no longer in the config; not watching it");
            }
        }
        for t in &plan.disabled {
            info!(target = %t.name, event = "target_disabled", "target is disabled; not watching it");
        }
        self.books.disabled = plan.disabled;
        if self.slots.is_empty() {
            warn!(event = "no_targets", "no enabled targets; nothing to watch");
        }
        self.index = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        self.agenda = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_running())
            .map(|(i, s)| (s.state.deadline, i))
            .collect();
        let count = |c| plan.targets.iter().filter(|(_, x)| *x == c).count();
        let summary = format!(
            "config reloaded: {} unchanged, {} changed, {} added, {} removed, {} disabled",
            count(Change::Unchanged),
            count(Change::Changed),
            count(Change::Added),
            plan.removed.len(),
            self.books.disabled.len()
        );
        if !first {
            info!(
                event = "reload_done",
                unchanged = count(Change::Unchanged),
                changed = count(Change::Changed),
                added = count(Change::Added),
                removed = plan.removed.len(),
                disabled = self.books.disabled.len(),
                "config reloaded"
            );
        }
        self.mark_dirty(true);
        // What loading the config needed beyond the model is free now.
        platform::return_free_memory();
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CommandLine, Target};
    use std::time::Duration;

    fn t(name: &str, timeout: u64) -> Target {
        Target::new(
            name,
            format!("/{name}.beat").into(),
            Duration::from_secs(timeout),
            CommandLine::Exec(vec!["true".into()]),
        )
    }

    #[test]
    fn plan_sorts_targets_into_unchanged_changed_added_removed_and_disabled() {
        let old = [t("same", 5), t("changed", 5), t("gone", 5), t("now-off", 5)];
        let mut off = t("now-off", 5);
        off.enabled = false;
        let mut also_off = t("never-on", 5);
        also_off.enabled = false;
        let new = vec![t("added", 5), t("changed", 9), t("same", 5), off, also_off];
        let p = plan(&old, new);
        let got: Vec<(&str, Change)> = p
            .targets
            .iter()
            .map(|(t, c)| (t.name.as_str(), *c))
            .collect();
        assert_eq!(
            got,
            [
                ("added", Change::Added),
                ("changed", Change::Changed),
                ("same", Change::Unchanged)
            ],
            "in the new config's order"
        );
        assert_eq!(p.removed, ["gone", "now-off"]);
        let disabled: Vec<&str> = p.disabled.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(disabled, ["now-off", "never-on"]);
    }

    #[test]
    fn any_setting_counts_as_a_change() {
        let old = [t("a", 5)];
        let mut a = t("a", 5);
        a.command_timeout = Duration::from_secs(1);
        assert_eq!(plan(&old, vec![a]).targets[0].1, Change::Changed);
        assert_eq!(plan(&old, vec![t("a", 5)]).targets[0].1, Change::Unchanged);
        assert!(plan(&old, vec![]).removed == ["a"]);
    }
}
