//! What an operator asks of a target (`protector pause|resume|restart|reset`), as changes of
//! its state; the daemon carries them out like the core's own decisions.

use std::time::Instant;

use std::time::Duration;

use super::{Cmd, Now, Observation, Phase, Rules, TargetState, later};

/// How often a pause until resumed is said again in the log while it lasts.
pub const PAUSE_REMINDER: Duration = Duration::from_secs(86_400);

impl TargetState {
    /// The target was paused while the first command of its restart waited (for a place, or
    /// after a shortage of resources): the restart is called off, uncounted, and the target
    /// waits for the end of the pause.
    pub fn call_off_paused(&mut self) {
        let (Phase::Running(cmd), Some(until)) = (self.phase, self.paused_until) else {
            return;
        };
        if cmd != Cmd::SkipIf {
            self.restarts_total = self.restarts_total.saturating_sub(1);
            self.consecutive = self.consecutive.saturating_sub(1);
        }
        self.phase = Phase::Watching;
        self.deadline = until;
    }

    /// An operator pauses the target until `until`: it is not judged (so never restarted) before
    /// then; a command already running finishes, a restart not yet begun (its random wait, its
    /// dependency check) is called off, a hold stays. Pausing again moves the end.
    pub fn pause(&mut self, until: Instant) {
        self.pause_open = false;
        self.set_pause(until);
    }

    /// An operator pauses the target until it is resumed (no end of its own); it is said
    /// again once every `PAUSE_REMINDER` while it lasts.
    pub fn pause_until_resumed(&mut self, now: Instant) {
        self.set_pause(later(now, PAUSE_REMINDER));
        self.pause_open = true;
    }

    fn set_pause(&mut self, until: Instant) {
        self.paused_until = Some(until);
        if matches!(self.phase, Phase::Delaying | Phase::Checking) {
            self.phase = Phase::Watching;
            self.end_attempt();
        }
        if !matches!(self.phase, Phase::Running(_)) {
            self.deadline = until;
        }
    }

    /// The pause ends (an operator's resume, or its end came): the target is watched as at
    /// start-up: a heartbeat younger than `timeout` counts, else it gets `startup_grace`
    /// before it is judged. A given-up target stays given up.
    pub fn unpause(&mut self, rules: &Rules, now: Instant) {
        self.pause_open = false;
        if self.paused_until.take().is_none() || matches!(self.phase, Phase::Running(_)) {
            return;
        }
        self.deadline = if self.age(now) < rules.timeout {
            later(self.last_beat, rules.timeout)
        } else {
            later(now, rules.startup_grace)
        };
    }

    /// An operator resumes the paused target; `obs` is a fresh look, so a heartbeat written
    /// during the pause counts.
    /// While a command runs, the pause simply ends: the restart under way goes on and judges
    /// the heartbeat when it is done (a look now would take a heartbeat it must see then).
    pub fn resume(&mut self, rules: &Rules, obs: &Observation, now: Now) {
        if matches!(self.phase, Phase::Running(_)) {
            self.paused_until = None;
            self.pause_open = false;
            return;
        }
        if self.paused_until.is_none() {
            return;
        }
        self.take_beat(rules, obs, now);
        self.unpause(rules, now.mono);
    }

    /// An operator asks for a restart now: its first command (stop, or start without one),
    /// not asking skip_if; `None` while a command of the target runs. It counts in
    /// `restarts_total`, not as a consecutive restart (no backoff follows from it). A pause
    /// stays; a given-up target is watched again; a hold ends (the operator knows best), with
    /// no random wait and no dependency check.
    pub fn restart_now(&mut self, rules: &Rules) -> Option<Cmd> {
        if matches!(self.phase, Phase::Running(_)) {
            return None;
        }
        self.held_since = None;
        self.end_attempt();
        self.restarts_total = self.restarts_total.saturating_add(1);
        self.skip_refused = false;
        let first = if rules.has_stop {
            Cmd::Stop
        } else {
            Cmd::Start
        };
        self.phase = Phase::Running(first);
        Some(first)
    }

    /// An operator clears the target's backoff, its consecutive restarts and a given-up
    /// state: it is judged as if never restarted (unless paused): a fresh heartbeat keeps
    /// its deadline, a stale one means a restart now. A running command goes on; a held
    /// target is checked again now.
    pub fn reset(&mut self, rules: &Rules, now: Instant) {
        self.consecutive = 0;
        self.skip_refused = false;
        if matches!(self.phase, Phase::Running(_)) {
            return;
        }
        if self.phase == Phase::Held {
            self.deadline = self.paused_until.unwrap_or(now);
            return;
        }
        self.end_attempt();
        self.phase = Phase::Watching;
        self.deadline = match self.paused_until {
            Some(until) => until,
            None if self.age(now) < rules.timeout => later(self.last_beat, rules.timeout),
            None => now,
        };
    }
}
