//! One watched target's slot: its decision state plus what the state file records about it
//! (counts, the last restart, a pause's reason), and how a record from the previous run's
//! state file is taken back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::effects::Look;
use crate::command::Outcome;
use crate::config::Target;
use crate::fsutil::epoch_secs;
use crate::schedule::{Cmd, Now, Observation, Phase, Rules, TargetState};
use crate::state::{CommandRecord, RestartRecord, RunningCommand, TargetRecord, TargetStatus};

/// One watched target.
pub(super) struct Slot {
    /// Stable across reloads; commands report back by it.
    pub id: u64,
    pub target: Target,
    /// Shared, as the target's policy, with every target whose rules are the same.
    pub rules: Arc<Rules>,
    pub state: TargetState,
    /// What few targets have to say (boxed, as the three below: a slot is kept per target).
    notes: Option<Box<Notes>>,
    pub failures: u64,
    pub timeouts: u64,
    pub failed_restarts: u64,
    /// (Boxed, as the two below: most targets have none, and a slot is kept per target.)
    pub last_restart: Option<Box<RestartRecord>>,
    /// Tries in a row of a command that could not run for lack of resources.
    pub short_tries: u32,
    /// The process group of the command running for it, once spawned.
    pub running: Option<Box<RunningCommand>>,
    /// A command an earlier protector left running: its next command waits for it first.
    pub leftover: Option<Box<RunningCommand>>,
    /// The heartbeat was seen on a filesystem with whole-second file times (said once).
    pub coarse_said: bool,
    /// Seeds its random waits (kept when it starts over).
    seed: u64,
    /// Counts its dependency checks: a verdict is taken only from the latest.
    pub check_seq: u64,
}

/// What a slot says of itself while it is so, each `None` most of the time.
#[derive(Debug, Default)]
pub(super) struct Notes {
    /// Last reason the heartbeat could not be read, to log each new one once.
    pub last_error: Option<String>,
    /// Why an operator paused it (the end of the pause is `state.paused_until`).
    pub pause_reason: Option<String>,
    /// While held: what the dependency check that found it down said.
    pub dependency: Option<String>,
}

/// A slot's notes when it has none.
static NO_NOTES: Notes = Notes {
    last_error: None,
    pause_reason: None,
    dependency: None,
};

/// Which of a slot's notes.
pub(super) type Note = fn(&mut Notes) -> &mut Option<String>;

impl Notes {
    pub const LAST_ERROR: Note = |n| &mut n.last_error;
    pub const PAUSE_REASON: Note = |n| &mut n.pause_reason;
    pub const DEPENDENCY: Note = |n| &mut n.dependency;
}

impl Slot {
    /// A target watched from now on (by `rules`, made from it), after a first look at its
    /// heartbeat.
    pub fn new(
        id: u64,
        target: Target,
        rules: Arc<Rules>,
        (obs, err): Look,
        now: Now,
        seed: u64,
    ) -> Slot {
        let mut state = TargetState::start(&rules, &obs, now);
        // Each target its own draws, however alike the seeds of a fleet's protectors are.
        let seed = seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        state.seed(seed);
        let mut slot = Slot {
            id,
            state,
            target,
            rules,
            notes: None,
            failures: 0,
            timeouts: 0,
            failed_restarts: 0,
            last_restart: None,
            short_tries: 0,
            running: None,
            leftover: None,
            coarse_said: false,
            seed,
            check_seq: 0,
        };
        slot.note_look(&obs, err);
        slot
    }

    /// What its notify command is told a restart is: `observed` for an observe-only target
    /// (its service is not touched), else `restart`.
    pub fn restart_event(&self) -> &'static str {
        if self.target.observe_only {
            "observed"
        } else {
            "restart"
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state.phase, Phase::Running(_))
    }

    /// Starts timing over from `obs` as at start-up, keeping the restart counts and a pause.
    pub fn start_over(&mut self, obs: &Observation, now: Now) {
        let (consecutive, total) = (self.state.consecutive, self.state.restarts_total);
        let (paused, open) = (self.state.paused_until, self.state.pause_open);
        self.state = TargetState::start(&self.rules, obs, now);
        self.seed = self.seed.wrapping_add(1);
        self.state.seed(self.seed);
        self.set_note(Notes::DEPENDENCY, None);
        self.state
            .restore(&self.rules, consecutive, total, None, now.mono);
        if let Some(until) = paused {
            self.state.pause(until);
            self.state.pause_open = open;
        }
    }

    /// Logs what a look tells an operator: why the file could not be read (each new reason
    /// once), that its filesystem keeps whole-second times (once).
    pub fn note_look(&mut self, obs: &Observation, err: Option<String>) {
        if let Observation::Present(print) = obs
            && print.coarse
            && !self.coarse_said
        {
            self.coarse_said = true;
            warn!(
                target = %self.target.name,
                event = "heartbeat_coarse_times",
                heartbeat = %self.target.heartbeat.display(),
                hashed = print.content.is_some(),
                "{}",
                crate::heartbeat::COARSE_ADVICE
            );
        }
        self.note_error(err);
    }

    fn note_error(&mut self, err: Option<String>) {
        if err.is_some() && err != self.notes().last_error {
            warn!(
                target = %self.target.name,
                event = "heartbeat_unreadable",
                heartbeat = %self.target.heartbeat.display(),
                reason = err.as_deref().unwrap_or_default(),
                "cannot read the heartbeat file; counting it as no heartbeat"
            );
        }
        self.set_note(Notes::LAST_ERROR, err);
    }

    /// What it says of itself now.
    pub fn notes(&self) -> &Notes {
        self.notes.as_deref().unwrap_or(&NO_NOTES)
    }

    /// Sets one of its notes (nothing is allocated to say that there is none).
    pub fn set_note(&mut self, which: Note, value: Option<String>) {
        if value.is_none() && self.notes.is_none() {
            return;
        }
        let notes = self.notes.get_or_insert_with(Box::default);
        *which(notes) = value;
        if notes.last_error.is_none() && notes.pause_reason.is_none() && notes.dependency.is_none()
        {
            self.notes = None;
        }
    }

    /// Books a finished stop or start command.
    pub fn record(&mut self, cmd: Cmd, o: &Outcome) {
        if cmd == Cmd::SkipIf {
            return;
        }
        if !o.success() {
            self.failures = self.failures.saturating_add(1);
        }
        if o.timed_out {
            self.timeouts = self.timeouts.saturating_add(1);
        }
        if let Some(r) = &mut self.last_restart {
            r.commands.push(CommandRecord {
                command: cmd.name().into(),
                exit_code: o.status.as_ref().ok().and_then(|s| s.code()),
                status: match &o.status {
                    Ok(s) => s.to_string(),
                    Err(e) => e.clone(),
                },
                duration_ms: o.duration.as_millis() as u64,
                timed_out: o.timed_out,
                output: if o.success() {
                    String::new()
                } else if o.stderr.trim().is_empty() {
                    CommandRecord::tail_of(&o.stdout)
                } else {
                    CommandRecord::tail_of(&o.stderr)
                },
            });
        }
    }

    /// A command an earlier protector left running for this target: if its process group
    /// is still alive, the next command waits for it (at most command_timeout after it
    /// began), then kills it.
    pub fn adopt_leftover(&mut self, left: Option<RunningCommand>) {
        self.leftover = left
            .filter(|r| crate::platform::group_alive(r.pgid, &r.stamp))
            .map(Box::new);
        if let Some(left) = &self.leftover {
            warn!(
                target = %self.target.name,
                event = "leftover_found",
                command = %left.command,
                pgid = left.pgid,
                "a {} command of the previous protector is still running; the next command \
                 for this target waits for it (at most command_timeout after it began), then kills it",
                left.command
            );
        }
    }

    /// Carries over what the previous run of protector knew (its state file).
    pub fn restore_record(&mut self, rec: &TargetRecord, now: Now) {
        let resume = rec.next_check.and_then(|at| {
            let ahead = at - epoch_secs(now.wall);
            (ahead > 0.0)
                .then(|| crate::schedule::later(now.mono, Duration::from_secs_f64(ahead.min(1e9))))
        });
        self.state.restore(
            &self.rules,
            rec.consecutive_restarts,
            rec.restarts_total,
            resume,
            now.mono,
        );
        self.failures = rec.command_failures_total;
        self.timeouts = rec.command_timeouts_total;
        self.failed_restarts = rec.restarts_failed_total;
        self.last_restart = rec.last_restart.clone();
        if let Some(until) = rec.paused_until {
            let ahead = until - epoch_secs(now.wall);
            // Some(time left), or Some(None) for a pause until resumed.
            let restored = if rec.pause_until_resumed {
                // Said again a day after this start, as it was a day after it began.
                self.state.pause_until_resumed(now.mono);
                Some(None)
            } else if ahead > 0.0 {
                // Never longer than a pause can be asked for (a clock set back, a file edited).
                let left =
                    Duration::from_secs_f64(ahead.min(crate::control::MAX_PAUSE.as_secs_f64()));
                let at = crate::schedule::later(now.mono, left);
                self.state.pause(at);
                Some(Some(at - now.mono))
            } else {
                None
            };
            if let Some(left) = restored {
                let reason = rec.pause_reason.as_deref();
                let reason = reason.map(|r| r.chars().take(crate::control::MAX_REASON).collect());
                self.set_note(Notes::PAUSE_REASON, reason);
                info!(
                    target = %self.target.name,
                    event = "pause_restored",
                    left_secs = left.map(super::secs),
                    until_resumed = left.is_none(),
                    reason = self.notes().pause_reason.as_deref().unwrap_or_default(),
                    "still paused (restored from the state file)"
                );
            }
        }
        if rec.state == TargetStatus::Restarting {
            // When it began; not on record (skip_if was asked before any restart): then any
            // heartbeat on record counts as one since.
            let at = rec.last_restart.as_ref().map_or(0.0, |r| r.at);
            let ago = (epoch_secs(now.wall) - at).clamp(0.0, 1e9);
            let began = now
                .mono
                .checked_sub(Duration::from_secs_f64(ago))
                .unwrap_or(now.mono);
            if self.state.resume_interrupted(began, now.mono) {
                info!(
                    target = %self.target.name,
                    event = "restart_resumed",
                    "resuming an interrupted restart: protector stopped while it ran"
                );
            }
        }
        if rec.consecutive_restarts > 0 {
            info!(
                target = %self.target.name,
                event = "state_restored",
                consecutive_restarts = rec.consecutive_restarts,
                "restored restart count from the state file; backoff continues"
            );
        }
    }

    pub fn status(&self) -> TargetStatus {
        match self.state.phase {
            Phase::Running(_) => TargetStatus::Restarting,
            _ if self.state.paused_until.is_some() => TargetStatus::Paused,
            _ if self.state.is_held() => TargetStatus::Held,
            // A restart is under way: its random wait or its dependency check.
            Phase::Delaying | Phase::Checking => TargetStatus::Restarting,
            Phase::Held => TargetStatus::Held,
            Phase::GivenUp => TargetStatus::GivenUp,
            // Backing off only once the wait has grown past the grace of a first restart.
            Phase::Watching if self.state.consecutive > 0 => {
                let wait = self.rules.wait_after_restart(self.state.consecutive);
                if wait > self.rules.wait_after_restart(1) {
                    TargetStatus::BackingOff
                } else {
                    TargetStatus::Recovering
                }
            }
            Phase::Watching => TargetStatus::Watching,
        }
    }

    pub(super) fn record_at(&self, wall_at: impl Fn(Instant) -> f64) -> TargetRecord {
        let st = &self.state;
        TargetRecord {
            name: self.target.name.clone(),
            heartbeat: self.target.heartbeat.display().to_string(),
            state: self.status(),
            last_heartbeat: st.beat_known.then(|| wall_at(st.last_beat)),
            next_check: (!self.is_running()).then(|| wall_at(st.deadline)),
            restarts_total: st.restarts_total,
            consecutive_restarts: st.consecutive,
            backoff_secs: if st.consecutive > 0 {
                self.rules.wait_after_restart(st.consecutive).as_secs_f64()
            } else {
                0.0
            },
            command_failures_total: self.failures,
            command_timeouts_total: self.timeouts,
            restarts_failed_total: self.failed_restarts,
            last_restart: self.last_restart.clone(),
            running_command: self.running.as_ref().or(self.leftover.as_ref()).cloned(),
            paused_until: st.paused_until.map(&wall_at),
            pause_reason: st
                .paused_until
                .and_then(|_| self.notes().pause_reason.clone()),
            pause_until_resumed: st.paused_until.is_some() && st.pause_open,
            held_since: st.held_since.map(&wall_at),
            dependency: st.held_since.and(self.notes().dependency.clone()),
            pid_file: self
                .target
                .pid_file
                .as_ref()
                .map(|p| p.display().to_string()),
            observe_only: self.target.observe_only,
        }
    }
}

#[cfg(test)]
mod tests {
    /// The daemon keeps a slot per target for its whole life (10,000 targets, 10,000 slots):
    /// its policy and rules are shared with the targets alike, its rare parts boxed. 904
    /// bytes before policies and rules were shared, 408 before its three notes were boxed
    /// together (344 now: 0.64 MB less at 10,000 targets).
    #[test]
    fn a_slot_is_a_few_hundred_bytes() {
        let size = std::mem::size_of::<super::Slot>();
        assert!(size <= 344, "a slot is {size} bytes");
        // A reload holds the old slots as optional slots in their own list's memory.
        assert_eq!(std::mem::size_of::<Option<super::Slot>>(), size);
    }
}
