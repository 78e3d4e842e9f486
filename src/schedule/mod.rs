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
//! While a command runs the target has no deadline, so it can never have two actions in
//! flight. After the start command finishes the next judgement waits `restart_grace`, doubled
//! for each consecutive restart beyond `backoff.after`, capped at `backoff.max`.
//! Wall-clock time only dates a change of the file; it never decides when something is due,
//! so stepping the system clock neither causes nor hides a restart.

use std::time::{Duration, Instant, SystemTime};

use crate::config::Target;

/// The moment of a decision, on both clocks.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono: Instant,
    pub wall: SystemTime,
}

impl Now {
    pub fn read() -> Now {
        Now {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// `at + d`, saturating: a deadline beyond what the clock can hold is as late as it can be
/// (durations are at most 100 years, so this is a guard, not a rule).
pub fn later(at: Instant, d: Duration) -> Instant {
    if let Some(t) = at.checked_add(d) {
        return t;
    }
    let mut step = d;
    while !step.is_zero() {
        step /= 2;
        if let Some(t) = at.checked_add(step) {
            return t;
        }
    }
    at
}

/// What identifies one version of a heartbeat file: a touch, a write, or a replacement by a
/// new file all change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint {
    pub mtime: Option<SystemTime>,
    pub len: u64,
    /// Device and inode on Unix, creation time on Windows.
    pub identity: (u64, u64),
    /// The filesystem keeps file times in whole seconds (ext2/ext3 with small inodes, FAT,
    /// some NFS servers): two changes within one second leave the same mtime.
    pub coarse: bool,
    /// On such a filesystem, a hash of a small file's content: a write within the same second
    /// as the previous one still shows.
    pub content: Option<u64>,
}

/// How far a coarse file time may be behind the change it records (FAT's two seconds).
pub const COARSE_GRANULE: Duration = Duration::from_secs(2);

impl Fingerprint {
    /// The latest the file can have changed by `now`, per its mtime: a coarse time is
    /// rounded down.
    fn changed_by(&self, now: SystemTime) -> Option<SystemTime> {
        let m = self.mtime?;
        Some(if self.coarse {
            m.checked_add(COARSE_GRANULE).unwrap_or(m).min(now).max(m)
        } else {
            m
        })
    }
}

/// A look at the heartbeat file. Missing and unreadable files are both "no heartbeat";
/// the daemon logs the reason of the latter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    Present(Fingerprint),
    Absent,
    /// The look failed (an I/O error, no answer in time): no heartbeat, and nothing learnt
    /// about the file, so the next look that works compares with the last one that did
    /// (a file unchanged since then is not taken for a heartbeat).
    Unknown,
}

impl Observation {
    fn fingerprint(&self) -> Option<Fingerprint> {
        match self {
            Observation::Present(f) => Some(*f),
            Observation::Absent | Observation::Unknown => None,
        }
    }
}

/// The per-target timing rules, taken from the resolved config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    pub timeout: Duration,
    pub restart_grace: Duration,
    pub startup_grace: Duration,
    pub backoff_after: u32,
    pub backoff_max: Duration,
    pub max_restarts: Option<u32>,
    pub has_stop: bool,
    pub has_skip_if: bool,
    pub skip_delay: Duration,
}

impl Rules {
    pub fn of(target: &Target) -> Rules {
        Rules {
            timeout: target.timeout,
            restart_grace: target.restart_grace,
            startup_grace: target.startup_grace,
            backoff_after: target.backoff.after,
            backoff_max: target.backoff.max,
            max_restarts: target.max_restarts,
            has_stop: target.stop.is_some(),
            has_skip_if: target.skip_if.is_some(),
            skip_delay: target.skip_delay,
        }
    }

    /// How long to wait before judging again after the `n`th consecutive restart.
    pub fn wait_after_restart(&self, n: u32) -> Duration {
        let grace = self.restart_grace;
        if n <= self.backoff_after {
            return grace;
        }
        let doublings = (n - self.backoff_after).min(40);
        let grown = grace
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(Duration::MAX);
        grown.min(self.backoff_max).max(grace)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the deadline; a heartbeat moves it.
    Watching,
    /// A stop or start command is running; no deadline.
    Running(Cmd),
    /// Too many consecutive restarts; only a heartbeat brings the target back.
    GivenUp,
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

/// What the daemon must do after a due check.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Stale: run this command first (skip_if, stop, or start). With `skip_if` the restart
    /// only begins when it says so (see [`TargetState::on_command_done`]).
    Restart { age: Duration, run: Cmd },
    /// `max_restarts` reached: stop restarting.
    GiveUp { age: Duration, restarts: u32 },
}

/// A heartbeat was seen; what it ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Beat {
    /// Consecutive restarts it ends (0 when all was well).
    pub after_restarts: u32,
    /// The target had given up and is watched again.
    pub resumed: bool,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DueOutcome {
    pub beat: Option<Beat>,
    pub action: Option<Action>,
    /// An operator's pause ran out at this check (the target is watched again).
    pub pause_ended: bool,
}

/// After a command finished: what comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Run(Cmd),
    /// The restart is done; the target is judged again after this wait.
    Judge {
        wait: Duration,
    },
    /// `skip_if` said to skip: no restart; the target is judged again after this wait.
    Postponed {
        wait: Duration,
    },
    /// `skip_if` said not to skip: the target is judged again at once, with a fresh look,
    /// so a heartbeat that came while skip_if ran still counts; if none did, the restart
    /// goes ahead without asking skip_if again.
    Recheck,
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
        }
    }

    /// Is the target waiting for a deadline (rather than running a command)?
    pub fn is_due_at(&self, at: Instant) -> bool {
        !matches!(self.phase, Phase::Running(_)) && self.deadline <= at
    }

    /// The deadline was reached and the file observed.
    pub fn on_due(&mut self, rules: &Rules, obs: &Observation, now: Now) -> DueOutcome {
        debug_assert!(!matches!(self.phase, Phase::Running(_)));
        let mut out = DueOutcome {
            beat: self.take_beat(rules, obs, now),
            ..DueOutcome::default()
        };

        if let Some(until) = self.paused_until {
            if now.mono < until {
                self.deadline = until;
                return out;
            }
            self.unpause(rules, now.mono);
            out.pause_ended = true;
        }
        if self.deadline > now.mono {
            return out;
        }
        let age = now.mono.saturating_duration_since(self.last_beat);
        if self.phase == Phase::GivenUp {
            self.deadline = later(now.mono, rules.timeout);
            return out;
        }
        if rules
            .max_restarts
            .is_some_and(|max| self.consecutive >= max)
        {
            self.phase = Phase::GivenUp;
            self.deadline = later(now.mono, rules.timeout);
            out.action = Some(Action::GiveUp {
                age,
                restarts: self.consecutive,
            });
            return out;
        }
        let run = if rules.has_skip_if && !self.skip_refused {
            Cmd::SkipIf
        } else {
            self.skip_refused = false;
            self.begin_restart(rules)
        };
        self.phase = Phase::Running(run);
        out.action = Some(Action::Restart { age, run });
        out
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

    /// Counts a restart that really begins; returns its first command.
    fn begin_restart(&mut self, rules: &Rules) -> Cmd {
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

    /// An operator pauses the target until `until`: it is not judged (so never restarted) before
    /// then; a command already running finishes. Pausing again moves the end.
    pub fn pause(&mut self, until: Instant) {
        self.paused_until = Some(until);
        if !matches!(self.phase, Phase::Running(_)) {
            self.deadline = until;
        }
    }

    /// The pause ends (an operator's resume, or its end came): the target is watched as at
    /// start-up: a heartbeat younger than `timeout` counts, else it gets `startup_grace`
    /// before it is judged. A given-up target stays given up.
    pub fn unpause(&mut self, rules: &Rules, now: Instant) {
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
    /// stays; a given-up target is watched again.
    pub fn restart_now(&mut self, rules: &Rules) -> Option<Cmd> {
        if matches!(self.phase, Phase::Running(_)) {
            return None;
        }
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
    /// its deadline, a stale one means a restart now. A running command goes on.
    pub fn reset(&mut self, rules: &Rules, now: Instant) {
        self.consecutive = 0;
        self.skip_refused = false;
        if matches!(self.phase, Phase::Running(_)) {
            return;
        }
        self.phase = Phase::Watching;
        self.deadline = match self.paused_until {
            Some(until) => until,
            None if self.age(now) < rules.timeout => later(self.last_beat, rules.timeout),
            None => now,
        };
    }

    /// Drops a restart half way (shutting down): the target is simply due again.
    pub fn abandon(&mut self, now: Instant) {
        self.phase = Phase::Watching;
        self.deadline = now;
    }

    /// Age of the heartbeat at `now`.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_beat)
    }
}

mod agenda;
pub use agenda::Agenda;

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
