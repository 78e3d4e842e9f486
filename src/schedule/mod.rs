//! The decision core: given one target's state, what its heartbeat looks like now, and the
//! time, decide what happens next. Pure: no clock, no files, no processes, so every rule is
//! tested with made-up instants (`tests.rs`, `properties.rs`) and the daemon only carries out the
//! decisions.
//!
//! Theory of operation. Each target has one deadline on the monotonic clock. When it is
//! reached the daemon observes the heartbeat file and calls [`TargetState::on_due`]:
//! - the fingerprint changed since the last observation: a heartbeat. It is dated by the
//!   file's mtime when that is plausible (not in the future, not before the previous
//!   observation), otherwise "now"; the next deadline is that date + timeout.
//! - unchanged (or missing) and the deadline is a heartbeat deadline: stale. The target is
//!   restarted (stop, then start) unless `max_restarts` consecutive restarts already failed,
//!   in which case it gives up and only keeps looking for a heartbeat.
//!
//! A restart judged due may first wait a random time (`restart_splay`) and check the target's
//! dependencies (`depends_on`; `hold.rs`): while they are down the target is held, not
//! restarted, and checked again; a heartbeat during either calls the restart off.
//!
//! While a command runs the target has no deadline, so it can never have two actions in
//! flight. After the start command finishes the next judgement waits `restart_grace`, doubled
//! for each consecutive restart beyond `backoff.after`, capped at `backoff.max`.
//! Wall-clock time only dates a change of the file; it never decides when something is due,
//! so stepping the system clock neither causes nor hides a restart.

use std::time::{Duration, Instant};

mod observe;
mod operator;
mod outcome;
mod rules;
pub use observe::{Fingerprint, Now, Observation, later};
pub use outcome::{Action, Beat, DueOutcome, Next};
pub use rules::Rules;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the deadline; a heartbeat moves it.
    Watching,
    /// A stop or start command is running; no deadline.
    Running(Cmd),
    /// Too many consecutive restarts; only a heartbeat brings the target back.
    GivenUp,
    /// Stale: the random wait before the restart (`restart_splay`) runs to the deadline.
    Delaying,
    /// Stale: its dependencies are being checked; the deadline bounds the check.
    Checking,
    /// Stale, but a dependency is down: not restarted; checked again at the deadline.
    Held,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// `skip_if`: may postpone the restart.
    SkipIf,
    Stop,
    Start,
}

impl Cmd {
    pub fn name(self) -> &'static str {
        match self {
            Cmd::SkipIf => "skip_if",
            Cmd::Stop => "stop",
            Cmd::Start => "start",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TargetState {
    pub phase: Phase,
    /// When the target is next due (meaningless while a command runs).
    pub deadline: Instant,
    /// The last heartbeat (or start-up, when none was seen), for ages.
    pub last_beat: Instant,
    /// `last_beat` is a real heartbeat (a change or the file's mtime), not start-up.
    pub beat_known: bool,
    last_seen: Option<Fingerprint>,
    last_look: Now,
    /// Restarts since the last heartbeat.
    pub consecutive: u32,
    pub restarts_total: u64,
    /// skip_if said not to skip: the next stale judgement restarts without asking again.
    skip_refused: bool,
    /// An operator paused the target until then: no judgement, no restart before it.
    pub paused_until: Option<Instant>,
    /// The pause lasts until an operator resumes it: `paused_until` is then only the next
    /// reminder that it still does.
    pub pause_open: bool,
    /// The restart under way has had its random wait.
    splayed: bool,
    /// The restart under way found its dependencies up.
    deps_ok: bool,
    /// Held since then: a dependency was down at a check and has not been seen up since.
    pub held_since: Option<Instant>,
    /// State of the draws (random waits); see `hold.rs`.
    rng: u64,
}

impl TargetState {
    /// The state at start-up: a file changed less than `timeout` ago is fresh; a missing or
    /// older file gets `startup_grace` before it is judged.
    pub fn start(rules: &Rules, obs: &Observation, now: Now) -> TargetState {
        let age = obs
            .fingerprint()
            .and_then(|f| f.changed_by(now.wall))
            .and_then(|m| now.wall.duration_since(m).ok());
        let (last_beat, deadline) = match age {
            Some(age) if age < rules.timeout => {
                let beat = now.mono.checked_sub(age).unwrap_or(now.mono);
                (beat, later(beat, rules.timeout))
            }
            _ => {
                let beat = age
                    .and_then(|a| now.mono.checked_sub(a))
                    .unwrap_or(now.mono);
                (beat, later(now.mono, rules.startup_grace))
            }
        };
        TargetState {
            phase: Phase::Watching,
            deadline,
            last_beat,
            beat_known: age.is_some(),
            last_seen: obs.fingerprint(),
            last_look: now,
            consecutive: 0,
            restarts_total: 0,
            skip_refused: false,
            paused_until: None,
            pause_open: false,
            splayed: false,
            deps_ok: false,
            held_since: None,
            rng: 0,
        }
    }

    /// Is the target waiting for a deadline (rather than running a command)?
    pub fn is_due_at(&self, at: Instant) -> bool {
        !matches!(self.phase, Phase::Running(_)) && self.deadline <= at
    }

    /// The deadline was reached and the file observed.
    pub fn on_due(&mut self, rules: &Rules, obs: &Observation, now: Now) -> DueOutcome {
        debug_assert!(!matches!(self.phase, Phase::Running(_)));
        let (was, was_held) = (self.phase, self.held_since.is_some());
        let mut out = DueOutcome {
            beat: self.take_beat(rules, obs, now),
            ..DueOutcome::default()
        };
        if out.beat.is_some() {
            out.hold_ended = was_held;
            out.called_off = matches!(was, Phase::Delaying | Phase::Checking);
        }

        if let Some(until) = self.paused_until {
            if now.mono < until {
                self.deadline = until;
                return out;
            }
            if self.pause_open {
                self.pause_until_resumed(now.mono);
                out.still_paused = true;
                return out;
            }
            self.unpause(rules, now.mono);
            out.pause_ended = true;
        }
        if self.deadline > now.mono {
            return out;
        }
        let age = now.mono.saturating_duration_since(self.last_beat);
        match self.phase {
            Phase::GivenUp => {
                self.deadline = later(now.mono, rules.timeout);
                return out;
            }
            Phase::Checking => {
                let (first, recheck) = self.hold(rules, now.mono);
                out.action = Some(Action::Held { first, recheck });
                return out;
            }
            Phase::Held => {
                out.action = Some(self.check(rules, now.mono));
                return out;
            }
            Phase::Delaying => self.phase = Phase::Watching,
            Phase::Watching
                if rules
                    .max_restarts
                    .is_some_and(|max| self.consecutive >= max) =>
            {
                self.phase = Phase::GivenUp;
                self.deadline = later(now.mono, rules.timeout);
                out.action = Some(Action::GiveUp {
                    age,
                    restarts: self.consecutive,
                });
                return out;
            }
            Phase::Watching => out.stale = Some(age),
            Phase::Running(_) => return out,
        }
        out.action = Some(self.go_on(rules, now.mono, age));
        out
    }

    /// The next step of a restart that is due: its random wait, its dependency check, then
    /// its first command (skip_if, stop or start), each once per restart.
    fn go_on(&mut self, rules: &Rules, now: Instant, age: Duration) -> Action {
        if !rules.restart_splay.is_zero() && !self.splayed {
            self.splayed = true;
            // At least a millisecond: every decision leaves a deadline ahead.
            let wait = self
                .draw(Duration::ZERO, rules.restart_splay)
                .max(Duration::from_millis(1));
            self.phase = Phase::Delaying;
            self.deadline = later(now, wait);
            return Action::Delay { wait };
        }
        if rules.has_depends && !self.deps_ok {
            return self.check(rules, now);
        }
        Action::Restart {
            age,
            run: self.first_command(rules),
        }
    }

    /// The restart's first command runs: skip_if (unless it already said not to skip), else
    /// stop (or start without one), which counts the restart.
    fn first_command(&mut self, rules: &Rules) -> Cmd {
        let run = if rules.has_skip_if && !self.skip_refused {
            Cmd::SkipIf
        } else {
            self.skip_refused = false;
            self.begin_restart(rules)
        };
        self.phase = Phase::Running(run);
        run
    }

    /// A heartbeat, if `obs` shows the file changed since the last look: dated by its mtime
    /// (the latest it can stand for, on a coarse filesystem) when that is plausible (after
    /// the last look, not in the future), else now.
    fn take_beat(&mut self, rules: &Rules, obs: &Observation, now: Now) -> Option<Beat> {
        if *obs == Observation::Unknown {
            return None;
        }
        let seen = obs.fingerprint();
        let changed = seen.is_some() && seen != self.last_seen;
        let beat = changed.then(|| {
            let dated = seen
                .and_then(|f| f.changed_by(now.wall))
                .map(|m| m.min(now.wall))
                .filter(|m| *m > self.last_look.wall)
                .and_then(|m| now.wall.duration_since(m).ok())
                .and_then(|ago| now.mono.checked_sub(ago))
                .map_or(now.mono, |at| at.max(self.last_look.mono));
            let beat = Beat {
                after_restarts: self.consecutive,
                resumed: self.phase == Phase::GivenUp,
            };
            self.phase = Phase::Watching;
            self.consecutive = 0;
            self.skip_refused = false;
            self.held_since = None;
            self.end_attempt();
            self.last_beat = dated;
            self.beat_known = true;
            self.deadline = later(dated, rules.timeout);
            beat
        });
        self.last_seen = seen;
        self.last_look = now;
        beat
    }

    /// The first command of a restart had to wait for a place (max_parallel_commands) and
    /// gets one now; `obs` is a fresh look. A heartbeat that came while it waited calls the
    /// restart off (it is not counted) and the target is watched as usual: returns false.
    pub fn still_stale(&mut self, rules: &Rules, obs: &Observation, now: Now) -> bool {
        let Phase::Running(cmd) = self.phase else {
            return true;
        };
        let total = self.restarts_total;
        if self.take_beat(rules, obs, now).is_none() {
            return true;
        }
        if cmd != Cmd::SkipIf {
            self.restarts_total = total.saturating_sub(1);
        }
        false
    }

    /// Counts a restart that really begins; returns its first command.
    fn begin_restart(&mut self, rules: &Rules) -> Cmd {
        self.end_attempt();
        self.consecutive = self.consecutive.saturating_add(1);
        self.restarts_total = self.restarts_total.saturating_add(1);
        if rules.has_stop {
            Cmd::Stop
        } else {
            Cmd::Start
        }
    }

    /// A command of the running restart finished. Only `skip_if`'s outcome matters (`success`
    /// postpones the restart); a failed stop still leads to start, and a failed start still
    /// waits before judging again.
    pub fn on_command_done(
        &mut self,
        rules: &Rules,
        cmd: Cmd,
        success: bool,
        now: Instant,
    ) -> Next {
        match cmd {
            Cmd::SkipIf if success => {
                self.end_attempt();
                self.phase = Phase::Watching;
                self.deadline = later(now, rules.skip_delay);
                Next::Postponed {
                    wait: rules.skip_delay,
                }
            }
            Cmd::SkipIf => {
                self.phase = Phase::Watching;
                self.deadline = now;
                self.skip_refused = true;
                Next::Recheck
            }
            Cmd::Stop => {
                self.phase = Phase::Running(Cmd::Start);
                Next::Run(Cmd::Start)
            }
            Cmd::Start => {
                let wait = rules.wait_after_restart(self.consecutive);
                self.phase = Phase::Watching;
                self.deadline = later(now, wait);
                Next::Judge { wait }
            }
        }
    }

    /// Carries counters over from an earlier run of protector (its state file) or an earlier
    /// config (reload). A pending backoff wait is honoured: the first judgement is not before
    /// `resume_at` (capped at `backoff_max` from now, in case the wall clock jumped).
    pub fn restore(
        &mut self,
        rules: &Rules,
        consecutive: u32,
        total: u64,
        resume_at: Option<Instant>,
        now: Instant,
    ) {
        self.consecutive = consecutive;
        self.restarts_total = total;
        if let Some(at) = resume_at
            && consecutive > 0
            && self.phase == Phase::Watching
        {
            let cap = later(now, rules.backoff_max.max(rules.restart_grace));
            self.deadline = self.deadline.max(at.min(cap));
        }
    }

    /// The previous protector stopped (crashed, was killed) while this target's restart,
    /// begun at `began`, was under way: judge it at once rather than after `startup_grace`,
    /// unless a heartbeat came since. Returns whether it is judged at once.
    pub fn resume_interrupted(&mut self, began: Instant, now: Instant) -> bool {
        if self.beat_known && self.last_beat > began {
            return false;
        }
        self.phase = Phase::Watching;
        self.deadline = now;
        true
    }

    /// Drops a restart half way (shutting down): the target is simply due again.
    pub fn abandon(&mut self, now: Instant) {
        self.end_attempt();
        self.phase = Phase::Watching;
        self.deadline = now;
    }

    /// Age of the heartbeat at `now`.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_beat)
    }
}

mod agenda;
mod hold;
pub use agenda::Agenda;
pub use hold::Checked;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
