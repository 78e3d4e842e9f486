//! Judging: every target whose deadline has come is looked at and handed to `schedule`,
//! whose decision is carried out (a restart begins, a give-up is logged and notified). A bug
//! in the handling of one target is contained: that target starts over, every other goes on.

use std::path::Path;
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use super::effects::{Look, Place};
use super::panic_message;
use super::slot::Notes;
use super::{Daemon, secs};
use crate::config::Target;
use crate::config::duration::format as fmt_dur;
use crate::schedule::{Action, Beat, Cmd, Now, Observation, Phase};

/// The longest a look at a heartbeat file is waited for (see `looks.rs`).
const LOOK_BUDGET_MAX: Duration = Duration::from_secs(5);
/// And the shortest: a busy machine may take a while to schedule a worker, and a look that
/// merely waited for a CPU must not count as a filesystem that does not answer.
const LOOK_BUDGET_MIN: Duration = Duration::from_millis(200);

/// When targets are looked at because some are due, those due within this long are looked
/// at too, at most [`SOON_MAX`] of them: a heartbeat that came moves their deadline, and a
/// stretch of deadlines one after another (100,000 targets whose files were written over
/// seconds) is a few batches through the look helper, not one per deadline (0.8 s of CPU for
/// 100,000 looks in one batch, 9 s one deadline at a time). Nothing is judged early: a
/// target whose heartbeat did not change is looked at again at its deadline.
const SOON: Duration = Duration::from_secs(1);
const SOON_MAX: usize = 256;

impl Daemon {
    /// Looks at these targets' heartbeats, each waited for at most a quarter of its timeout
    /// (between 200 ms and 5 s; the shortest budget of the batch applies to all of it).
    pub(super) fn look_at(&self, targets: &[&Target]) -> Vec<Look> {
        let paths: Vec<&Path> = targets.iter().map(|t| t.heartbeat.as_path()).collect();
        self.fx.looker.look(&paths, look_budget(targets))
    }

    /// [`Daemon::look_at`], and what to warn about each heartbeat's place.
    pub(super) fn look_and_place(&self, targets: &[&Target]) -> Vec<(Look, Place)> {
        let paths: Vec<&Path> = targets.iter().map(|t| t.heartbeat.as_path()).collect();
        self.fx.looker.look_and_place(&paths, look_budget(targets))
    }

    /// A fresh look at slot `i`'s heartbeat alone (counted, and what it tells noted).
    pub(super) fn look_once(&mut self, i: usize) -> Observation {
        let (obs, err) = self
            .look_at(&[&self.slots[i].target])
            .pop()
            .expect("one look per path");
        self.books.observations += 1;
        self.slots[i].note_look(&obs, err);
        obs
    }

    /// Looks at and judges every target whose deadline has come; looks, in the same batch,
    /// at a few due [`SOON`] after (see there).
    pub(super) fn run_due(&mut self) {
        let asked = self.now();
        let mut due = Vec::new();
        let slots = &self.slots;
        let current = |by: Instant| {
            move |i: usize, at| slots[i].state.is_due_at(by) && slots[i].state.deadline == at
        };
        self.agenda
            .take_due(asked.mono, current(asked.mono), &mut due);
        if due.is_empty() {
            return;
        }
        let judged = due.len();
        let soon = asked.mono + SOON;
        let max = judged + SOON_MAX;
        self.agenda.take_until(soon, max, current(soon), &mut due);
        let targets: Vec<&Target> = due.iter().map(|&i| &self.slots[i].target).collect();
        let paths: Vec<&Path> = targets.iter().map(|t| t.heartbeat.as_path()).collect();
        // The budget of those judged: one not due yet learns nothing it needs from a look
        // that took longer, and a short timeout of its own must not cut the others' looks.
        let looks = self.fx.looker.look(&paths, look_budget(&targets[..judged]));
        self.books.observations += looks.len() as u64;
        let now = self.now();
        // Judge every due target before starting any command, so that starting many
        // commands at once never delays the detection of the last one.
        let mut to_run = Vec::new();
        for (n, (&i, (obs, err))) in due.iter().zip(looks).enumerate() {
            tracing::trace!(target = %self.slots[i].target.name, event = "looked", observation = ?obs, "looked at the heartbeat");
            self.slots[i].note_look(&obs, err);
            // One not due yet is told the look as of when it was asked for, before its
            // deadline: a heartbeat seen counts, and it is never judged on that look.
            let at = if n < judged { now } else { asked };
            match self.contained(i, "judging the heartbeat", |d| d.on_due(i, &obs, at)) {
                Some(Some(cmd)) => to_run.push((i, cmd)),
                Some(None) => self.agenda.push(self.slots[i].state.deadline, i),
                None => self.recover(i),
            }
        }
        for (i, cmd) in to_run {
            if self
                .contained(i, "starting a command", |d| d.spawn(i, cmd))
                .is_none()
            {
                self.recover(i);
            }
        }
    }

    /// Runs `f`, which handles slot `i`, so that a bug (a panic) in the handling of one
    /// target is logged and never stops the loop or any other target. `None` after a panic.
    pub(super) fn contained<T>(
        &mut self,
        i: usize,
        doing: &str,
        f: impl FnOnce(&mut Self) -> T,
    ) -> Option<T> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self))) {
            Ok(v) => Some(v),
            Err(payload) => {
                error!(
                    target = %self.slots[i].target.name,
                    event = "internal_error",
                    panic = panic_message(&*payload),
                    "internal error while {doing}; this target is watched afresh and every other goes on"
                );
                None
            }
        }
    }

    /// After a panic in its handling, slot `i` starts over from a fresh look at its heartbeat
    /// as at start-up (with its restart counts), so it is watched again whatever state the
    /// panic left behind; a command of its still waiting for a place is dropped.
    pub(super) fn recover(&mut self, i: usize) {
        let id = self.slots[i].id;
        self.commands.retain(|(q, _)| *q != id);
        let name = self.slots[i].target.name.clone();
        self.waiters.answer(
            id,
            &name,
            Err(
                "restart abandoned: an internal error in this target's handling (see the log); \
                 it is watched afresh"
                    .into(),
            ),
        );
        let (obs, _) = self
            .look_at(&[&self.slots[i].target])
            .pop()
            .expect("one look per path");
        let now = self.now();
        self.slots[i].start_over(&obs, now);
        self.agenda.push(self.slots[i].state.deadline, i);
        self.mark_dirty(true);
    }

    /// Applies a due check to slot `i`; returns the command to start, if any.
    pub(super) fn on_due(&mut self, i: usize, obs: &Observation, now: Now) -> Option<Cmd> {
        let slot = &mut self.slots[i];
        let was_given_up = slot.state.phase == Phase::GivenUp;
        let out = slot.state.on_due(&slot.rules, obs, now);
        // After the decision: the worst moment, the state already says a command runs.
        inject_panic(&slot.target.name);
        let name = slot.target.name.clone();
        if out.pause_ended {
            slot.set_note(Notes::PAUSE_REASON, None);
            info!(target = %name, event = "pause_ended", by = "expired", "the pause has ended: watched again");
            self.mark_dirty(true);
        }
        if out.still_paused {
            let reason = self.slots[i]
                .notes()
                .pause_reason
                .clone()
                .unwrap_or_default();
            warn!(target = %name, event = "still_paused", reason = %reason, "still paused until an operator resumes it: not judged, never restarted (protector resume NAME)");
        }
        let slot = &mut self.slots[i];
        let age_secs = slot.state.age(now.mono).as_secs_f64();
        if was_given_up && out.beat.is_none() {
            debug!(target = %name, event = "still_given_up", age_secs, "still no heartbeat; given up");
        }
        if let Some(beat) = out.beat {
            self.on_beat(i, beat, now.mono);
        }
        if out.hold_ended || out.called_off {
            self.heartbeat_ended_wait(i, out.hold_ended);
        }
        let slot = &self.slots[i];
        let action = out.action?;
        if let Some(age) = out.stale {
            log_stale(slot, age, &action);
        }
        match action {
            Action::Restart { run, .. } => {
                self.mark_dirty(true);
                Some(run)
            }
            Action::Delay { .. } => {
                self.mark_dirty(true);
                None
            }
            Action::Check => {
                self.check_dependencies(i);
                None
            }
            Action::Held { first, recheck } => {
                let bound = self.slots[i].rules.check_bound;
                let why = format!("no verdict within {}", fmt_dur(bound));
                self.held(i, first, recheck, why);
                None
            }
            Action::GiveUp { age, restarts } => {
                error!(
                    target = %name,
                    event = "give_up",
                    age_secs = secs(age),
                    restarts,
                    "giving up: no heartbeat after max_restarts consecutive restarts; will resume when a heartbeat appears"
                );
                self.notify(i, "give-up", restarts);
                self.mark_dirty(true);
                None
            }
        }
    }
}

impl Daemon {
    /// Says what a heartbeat of slot `i` ended (restarts, a give-up) and runs notify.
    fn on_beat(&mut self, i: usize, beat: Beat, now: std::time::Instant) {
        let slot = &self.slots[i];
        let name = &slot.target.name;
        let next_check_in_secs = secs(slot.state.deadline.saturating_duration_since(now));
        if beat.resumed {
            info!(target = %name, event = "resumed", "heartbeat is back; watching again after giving up");
        } else if beat.after_restarts > 0 {
            info!(target = %name, event = "heartbeat_back", restarts = beat.after_restarts, "heartbeat is back after restart");
        } else {
            debug!(target = %name, event = "heartbeat_seen", next_check_in_secs, "heartbeat seen");
        }
        if beat.resumed || beat.after_restarts > 0 {
            self.notify(i, "recovery", beat.after_restarts);
            self.mark_dirty(true);
        } else {
            self.mark_dirty(false);
        }
    }
}

/// The `stale` warning, saying what comes first: the random wait, the dependency check,
/// skip_if, or the restart itself.
fn log_stale(slot: &super::slot::Slot, age: Duration, action: &Action) {
    let (first, then) = match action {
        Action::Delay { wait } => (
            "wait",
            format!("restarting in {} (restart_splay)", fmt_dur(*wait)),
        ),
        Action::Check => (
            "depends_on",
            "checking its dependencies before restarting".into(),
        ),
        Action::Restart {
            run: Cmd::SkipIf, ..
        } => ("skip_if", "asking skip_if before restarting".into()),
        Action::Restart { .. } if slot.target.observe_only => (
            "incident",
            "observe only: keeping what it looks like, not restarting".into(),
        ),
        Action::Restart { run, .. } => (run.name(), "restarting".into()),
        Action::Held { .. } | Action::GiveUp { .. } => ("", String::new()),
    };
    warn!(
        target = %slot.target.name,
        event = "stale",
        age_secs = secs(age),
        timeout_secs = secs(slot.target.timeout),
        consecutive_restarts = slot.state.consecutive,
        first,
        "heartbeat is stale; {then}"
    );
}

#[cfg(test)]
thread_local! {
    /// In-process tests: the next judgement of this target panics (see `inject_panic`).
    pub(super) static PANIC_ON: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Test builds only: `PROTECTOR_TEST_PANIC=<target>` (or `PANIC_ON` in-process) makes the
/// first judgement of that target panic (after the decision), to prove a bug in one target's
/// handling harms nothing else. Compiled out of release builds.
#[cfg(debug_assertions)]
fn inject_panic(target: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    #[cfg(test)]
    if PANIC_ON.with(|p| p.borrow().as_deref() == Some(target)) {
        PANIC_ON.with(|p| *p.borrow_mut() = None);
        panic!("injected for a test in the handling of {target}");
    }
    if std::env::var("PROTECTOR_TEST_PANIC").is_ok_and(|t| t == target)
        && !DONE.swap(true, Ordering::Relaxed)
    {
        panic!("injected for a test in the handling of {target}");
    }
}

#[cfg(not(debug_assertions))]
fn inject_panic(_: &str) {}

/// How long a batch of looks at `targets`' heartbeats may take: a quarter of the shortest
/// timeout, within [`LOOK_BUDGET_MIN`] and [`LOOK_BUDGET_MAX`].
fn look_budget(targets: &[&Target]) -> std::time::Duration {
    targets
        .iter()
        .map(|t| (t.timeout / 4).clamp(LOOK_BUDGET_MIN, LOOK_BUDGET_MAX))
        .min()
        .unwrap_or(LOOK_BUDGET_MAX)
}
