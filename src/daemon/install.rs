//! Installing a config, at start-up and after a reload read it: the pure [`plan`] says what
//! happens to each target, and [`Daemon::apply`] carries it out in named steps. Unchanged
//! targets keep their state; changed ones keep their restart counts (and a running command)
//! and start timing over with `startup_grace`; added ones start with `startup_grace` (and,
//! at start-up, what the state file and the running-command records say); removed ones stop
//! being watched (a running command of theirs finishes and is logged).

use std::sync::Arc;

use tracing::{debug, info, warn};

use super::effects::Look;
use super::left::{self, Left};
use super::relist::Relist;
use super::reload::{Change, Plan, plan};
use super::slot::Slot;
use super::{Daemon, secs};
use crate::config::{Config, Files, Target};
use crate::intern::Interner;
use crate::platform;
use crate::schedule::{Now, Observation, Rules};

/// Above this many targets, per-target start-up lines are logged at debug level.
const QUIET_ABOVE: usize = 100;

impl Daemon {
    /// Installs `config` (see the module's header). `first`: at start-up. Returns what
    /// changed, in a few words.
    pub(super) fn apply(&mut self, config: Config, first: bool) -> String {
        let now = self.now();
        let mut plan = plan(self.slots.iter().map(|s| &s.target), config.targets);
        let mut counts = [0; 3];
        for (_, change) in &plan.targets {
            counts[match change {
                Change::Unchanged { .. } => 0,
                Change::Changed { .. } => 1,
                Change::Added => 2,
            }] += 1;
        }
        let mut old = Relist::new(std::mem::take(&mut self.slots), counts[2]);
        self.install_files(config.files, config.max_parallel_commands, first);
        let (looks, mut left) = self.look_while_reading_left(&plan, &old, first);
        let mut looks = looks.into_iter();
        let quiet = plan.targets.len() > QUIET_ABOVE;
        // Each target moves into its slot (a copy of every target at once is megabytes), and
        // the slots into the new order in their own list.
        let targets = std::mem::take(&mut plan.targets);
        let made = targets.len();
        // Slots whose rules are the same share one copy of them.
        let seen = Interner::new();
        let rules_of = |t: &Target| seen.intern(Arc::new(Rules::of(t)));
        for (k, (target, change)) in targets.into_iter().enumerate() {
            let was = old.take_for(k, change.was());
            let slot = match change {
                Change::Unchanged { .. } => was.expect("planned"),
                Change::Changed { .. } => {
                    let rules = rules_of(&target);
                    changed(was.expect("planned"), target, rules, &mut looks, now)
                }
                Change::Added => {
                    let look = looks.next().expect("looked above");
                    let rules = rules_of(&target);
                    self.added(target, rules, look, now, &mut left, quiet)
                }
            };
            old.put(k, slot);
        }
        let (slots, removed) = old.finish(made);
        self.slots = slots;
        self.let_go(&plan, removed);
        self.books.disabled = std::mem::take(&mut plan.disabled);
        if self.slots.is_empty() {
            warn!(event = "no_targets", "no enabled targets; nothing to watch");
        }
        self.reindex();
        self.mark_dirty(true);
        // What loading the config needed beyond the model is free now (the compiled schema
        // too: the next load compiles it again).
        crate::config::schema::release();
        platform::return_free_memory();
        self.summarize(counts, plan.removed.len(), first)
    }

    /// Looks, in one batch, at every target that starts timing afresh (changed and not
    /// running, or added), in the plan's order; warns about their heartbeats' places and
    /// programs.
    fn look_at_fresh(&mut self, plan: &Plan, old: &Relist<Slot>) -> Vec<Look> {
        let fresh: Vec<&Target> = plan
            .targets
            .iter()
            .filter(|(_, change)| match change {
                Change::Unchanged { .. } => false,
                Change::Changed { was } => !old.get(*was).expect("planned").is_running(),
                Change::Added => true,
            })
            .map(|(t, _)| t)
            .collect();
        self.books.observations += fresh.len() as u64;
        let placed = self.look_and_place(&fresh);
        let looks = fresh
            .iter()
            .zip(placed)
            .map(|(t, (look, place))| {
                // A filesystem that does not answer has nothing to say.
                if look.0 != Observation::Unknown {
                    warn_about_place(t, &place);
                }
                look
            })
            .collect();
        crate::programs::log_missing_in_background(
            fresh
                .iter()
                .map(|t| crate::programs::Wanted::of(t))
                .collect(),
        );
        looks
    }

    /// The config's files and bound on commands; a changed lock file waits for a restart.
    fn install_files(&mut self, files: Files, max_parallel: usize, first: bool) {
        if !first
            && files
                .lock_file
                .as_ref()
                .is_some_and(|l| *l != self.books.lock_file)
        {
            warn!(
                event = "lock_file_unchanged",
                "lock_file changes take effect when protector is restarted"
            );
        }
        self.books.files = files;
        let max = max_parallel.max(1);
        self.commands.set_max(max);
        self.notifies.set_max(max);
    }

    /// [`Daemon::look_at_fresh`]; at start-up, with what the previous protector left
    /// (`left.rs`), read on another thread meanwhile (this one only waits for the looks).
    fn look_while_reading_left(
        &mut self,
        plan: &Plan,
        old: &Relist<Slot>,
        first: bool,
    ) -> (Vec<Look>, Left) {
        if !first {
            return (self.look_at_fresh(plan, old), Left::default());
        }
        let (files, dry_run) = (self.books.files.clone(), self.opts.dry_run);
        let targets = plan.targets.len() + plan.disabled.len();
        let (looks, mut left) = std::thread::scope(|s| {
            let reading = std::thread::Builder::new()
                .name("protector-read".into())
                .spawn_scoped(s, || left::read(&files, targets, dry_run));
            let looks = self.look_at_fresh(plan, old);
            let left = match reading {
                Ok(reading) => reading
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                // No thread to be had: read here.
                Err(_) => left::read(&files, targets, dry_run),
            };
            (looks, left)
        });
        if left.state_file_unusable {
            self.books.files.state_file = None;
        }
        self.books.records_left = std::mem::take(&mut left.record_files);
        (looks, left)
    }

    /// A new slot for `target`, added with `look`; at start-up, with what was left of it.
    fn added(
        &mut self,
        target: Target,
        rules: Arc<Rules>,
        look: Look,
        now: Now,
        left: &mut Left,
        quiet: bool,
    ) -> Slot {
        let mut slot = Slot::new(self.next_id, target, rules, look, now, self.fx.seed);
        self.next_id += 1;
        if let Some(rec) = left.records.get(&slot.target.name) {
            slot.restore_record(rec, now);
        }
        slot.adopt_leftover(left.commands.remove(&slot.target.name));
        let (name, heartbeat, timeout_secs, first_check_in_secs) = (
            &slot.target.name,
            slot.target.heartbeat.display(),
            secs(slot.target.timeout),
            secs(slot.state.deadline.saturating_duration_since(now.mono)),
        );
        // With many targets, one "watching" line each is noise: they go to debug.
        if quiet {
            debug!(target = %name, event = "watching", %heartbeat, timeout_secs, first_check_in_secs, "watching");
        } else {
            info!(target = %name, event = "watching", %heartbeat, timeout_secs, first_check_in_secs, "watching");
        }
        slot
    }

    /// Stops watching the targets the plan removes (their slots, `removed`): whoever waits
    /// for their restart hears so, and a running command of theirs finishes on its own.
    fn let_go(&mut self, plan: &Plan, mut removed: Vec<Slot>) {
        removed.sort_by(|a, b| a.target.name.cmp(&b.target.name));
        for slot in removed {
            let (name, timeout) = (slot.target.name.clone(), slot.target.command_timeout);
            self.waiters.answer(
                slot.id,
                &name,
                Err(
                    "the target was removed from the config by a reload before its restart \
                     ended"
                        .into(),
                ),
            );
            if slot.is_running() {
                info!(target = %name, event = "target_removed", "no longer in the config; its running command will finish on its own");
                self.orphans.insert(slot.id, (name, timeout));
            } else {
                info!(target = %name, event = "target_removed", "no longer in the config; not watching it");
            }
        }
        for t in &plan.disabled {
            info!(target = %t.name, event = "target_disabled", "target is disabled; not watching it");
        }
    }

    /// The slots' index by id, and the agenda of those not running a command.
    fn reindex(&mut self) {
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
    }

    /// What the plan did, in a few words (and, after a reload, logged as `reload_done`).
    /// `counts`: the targets unchanged, changed and added.
    fn summarize(&self, counts: [usize; 3], removed: usize, first: bool) -> String {
        let [unchanged, changed, added] = counts;
        let disabled = self.books.disabled.len();
        if !first {
            info!(
                event = "reload_done",
                unchanged, changed, added, removed, disabled, "config reloaded"
            );
        }
        format!(
            "config reloaded: {unchanged} unchanged, {changed} changed, {added} added, \
             {removed} removed, {disabled} disabled"
        )
    }
}

/// `slot` under the new settings of `target` (and `rules`, made from them): the counts carry
/// over; unless a command runs, it starts timing over (startup grace) from its look, the next
/// of `looks`.
fn changed(
    mut slot: Slot,
    target: Target,
    rules: Arc<Rules>,
    looks: &mut impl Iterator<Item = Look>,
    now: Now,
) -> Slot {
    slot.rules = rules;
    slot.target = target;
    if !slot.is_running() {
        let (obs, err) = looks.next().expect("looked above");
        slot.start_over(&obs, now);
        slot.note_look(&obs, err);
    }
    info!(target = %slot.target.name, event = "target_changed", "settings changed; applied");
    slot
}

/// Says, at start-up and when a reload adds or changes a target, what is wrong with the
/// heartbeat's place: it cannot appear yet because its directory does not exist (a writer
/// such as Salt's `file.touch` does not create directories; watching goes on, the target is
/// judged as usual), or any user can write it.
fn warn_about_place(t: &Target, place: &super::effects::Place) {
    if let Some(dir) = &place.missing_dir {
        warn!(
            target = %t.name,
            event = "heartbeat_dir_missing",
            heartbeat = %t.heartbeat.display(),
            directory = %dir,
            "the heartbeat's directory does not exist: nothing can write this heartbeat yet"
        );
    }
    if let Some(reason) = &place.exposed {
        warn!(target = %t.name, event = "heartbeat_exposed", heartbeat = %t.heartbeat.display(), "{reason}");
    }
}
