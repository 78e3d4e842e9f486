//! The decision core: given one target's state, what its heartbeat looks like now, and the
//! time, decide what happens next. Pure: no clock, no files, no processes, so every rule is
//! tested with made-up instants (see the tests below) and the daemon only carries out the
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

/// The deadlines of many targets, nearest first: what the daemon sleeps on. A target's entry
/// is superseded by a later `push` for it (its deadline moved); entries left behind are
/// skipped, so each target is delivered once per deadline, and no target can hold up another.
#[derive(Debug, Default)]
pub struct Agenda {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, usize)>>,
}

impl Agenda {
    /// Target `i` is next due at `at`.
    pub fn push(&mut self, at: Instant, i: usize) {
        self.heap.push(std::cmp::Reverse((at, i)));
    }

    /// The nearest entry (possibly a superseded one: waking for it costs one look).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.0.0)
    }

    /// Moves every target due at `now` into `out`. `current(i, at)` says whether `at` is still
    /// target `i`'s deadline.
    pub fn take_due(
        &mut self,
        now: Instant,
        current: impl Fn(usize, Instant) -> bool,
        out: &mut Vec<usize>,
    ) {
        let mut last = None;
        while let Some(&std::cmp::Reverse((at, i))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            // The same deadline pushed twice (set, moved, set back) is delivered once; equal
            // entries come out of the heap one after the other.
            if last != Some((at, i)) && current(i, at) {
                out.push(i);
            }
            last = Some((at, i));
        }
    }
}

impl FromIterator<(Instant, usize)> for Agenda {
    fn from_iter<I: IntoIterator<Item = (Instant, usize)>>(iter: I) -> Self {
        Agenda {
            heap: iter.into_iter().map(std::cmp::Reverse).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const S: Duration = Duration::from_secs(1);

    fn rules() -> Rules {
        Rules {
            timeout: 10 * S,
            restart_grace: 5 * S,
            startup_grace: 20 * S,
            backoff_after: 2,
            backoff_max: 30 * S,
            max_restarts: None,
            has_stop: true,
            has_skip_if: false,
            skip_delay: 7 * S,
        }
    }

    /// A test clock: both clocks start together; `at(secs)` is the moment `secs` in.
    struct Clock {
        mono0: Instant,
        wall0: SystemTime,
    }

    impl Clock {
        fn new() -> Clock {
            Clock {
                mono0: Instant::now(),
                wall0: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            }
        }
        fn at(&self, secs: f64) -> Now {
            let d = Duration::from_secs_f64(secs);
            Now {
                mono: self.mono0 + d,
                wall: self.wall0 + d,
            }
        }
        /// A file last modified at wall time `secs` in (may be negative), version `v`.
        fn file(&self, mtime_secs: f64, v: u64) -> Observation {
            let mtime = if mtime_secs >= 0.0 {
                self.wall0 + Duration::from_secs_f64(mtime_secs)
            } else {
                self.wall0 - Duration::from_secs_f64(-mtime_secs)
            };
            Observation::Present(Fingerprint {
                mtime: Some(mtime),
                len: v,
                identity: (1, 1),
                ..Fingerprint::default()
            })
        }
        fn secs(&self, at: Instant) -> f64 {
            at.duration_since(self.mono0).as_secs_f64()
        }
    }

    /// Runs a full restart (stop and start, both finishing at once) at `secs`.
    fn finish_restart(st: &mut TargetState, r: &Rules, c: &Clock, secs: f64) -> Duration {
        assert_eq!(
            st.on_command_done(r, Cmd::Stop, true, c.at(secs).mono),
            Next::Run(Cmd::Start)
        );
        match st.on_command_done(r, Cmd::Start, true, c.at(secs).mono) {
            Next::Judge { wait } => wait,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fresh_file_at_start_is_judged_at_mtime_plus_timeout() {
        let c = Clock::new();
        let st = TargetState::start(&rules(), &c.file(-4.0, 1), c.at(0.0));
        assert_eq!(c.secs(st.deadline), 6.0);
        assert_eq!(st.age(c.at(0.0).mono), 4 * S);
    }

    #[test]
    fn missing_or_old_file_at_start_gets_startup_grace() {
        let c = Clock::new();
        let st = TargetState::start(&rules(), &Observation::Absent, c.at(0.0));
        assert_eq!(c.secs(st.deadline), 20.0);
        let st = TargetState::start(&rules(), &c.file(-3600.0, 1), c.at(3700.0));
        assert_eq!(c.secs(st.deadline), 3720.0);
        // A file dated in the future is not fresh either.
        let st = TargetState::start(&rules(), &c.file(50.0, 1), c.at(0.0));
        assert_eq!(c.secs(st.deadline), 20.0);
    }

    #[test]
    fn heartbeat_moves_the_deadline_by_its_mtime() {
        let c = Clock::new();
        let r = rules();
        let mut st = TargetState::start(&r, &c.file(0.0, 1), c.at(0.0));
        let out = st.on_due(&r, &c.file(7.0, 2), c.at(10.0));
        assert_eq!(
            out.beat,
            Some(Beat {
                after_restarts: 0,
                resumed: false
            })
        );
        assert_eq!(out.action, None);
        assert_eq!(c.secs(st.deadline), 17.0);
    }

    #[test]
    fn implausible_mtime_counts_as_now() {
        let c = Clock::new();
        let r = rules();
        let mut st = TargetState::start(&r, &c.file(0.0, 1), c.at(0.0));
        // In the future.
        st.on_due(&r, &c.file(500.0, 2), c.at(10.0));
        assert_eq!(c.secs(st.deadline), 20.0);
        // Before the previous observation (touch -d, or a clock stepped back).
        st.on_due(&r, &c.file(-100.0, 3), c.at(20.0));
        assert_eq!(c.secs(st.deadline), 30.0);
    }

    #[test]
    fn stale_file_restarts_with_stop_then_start() {
        let c = Clock::new();
        let r = rules();
        let mut st = TargetState::start(&r, &c.file(0.0, 1), c.at(0.0));
        let out = st.on_due(&r, &c.file(0.0, 1), c.at(10.0));
        assert_eq!(
            out.action,
            Some(Action::Restart {
                age: 10 * S,
                run: Cmd::Stop
            })
        );
        assert_eq!(st.phase, Phase::Running(Cmd::Stop));
        assert!(
            !st.is_due_at(c.at(1000.0).mono),
            "no second action while one runs"
        );
        let wait = finish_restart(&mut st, &r, &c, 11.0);
        assert_eq!(wait, 5 * S);
        assert_eq!(c.secs(st.deadline), 16.0);
    }

    #[test]
    fn without_stop_the_restart_runs_start_only() {
        let c = Clock::new();
        let r = Rules {
            has_stop: false,
            ..rules()
        };
        let mut st = TargetState::start(&r, &Observation::Absent, c.at(0.0));
        let out = st.on_due(&r, &Observation::Absent, c.at(20.0));
        assert_eq!(
            out.action,
            Some(Action::Restart {
                age: 20 * S,
                run: Cmd::Start
            })
        );
    }

    #[test]
    fn backoff_doubles_after_the_threshold_and_is_capped() {
        let r = rules();
        let waits: Vec<u64> = (1..=7).map(|n| r.wait_after_restart(n).as_secs()).collect();
        assert_eq!(waits, [5, 5, 10, 20, 30, 30, 30]);
        assert_eq!(r.wait_after_restart(u32::MAX), 30 * S);
    }

    #[test]
    fn consecutive_restarts_back_off_and_a_heartbeat_resets_them() {
        let c = Clock::new();
        let r = rules();
        let mut st = TargetState::start(&r, &Observation::Absent, c.at(0.0));
        let mut t = 20.0;
        let mut waits = vec![];
        for _ in 0..4 {
            let out = st.on_due(&r, &Observation::Absent, c.at(t));
            assert!(matches!(out.action, Some(Action::Restart { .. })));
            let wait = finish_restart(&mut st, &r, &c, t);
            waits.push(wait.as_secs());
            t += wait.as_secs_f64();
        }
        assert_eq!(waits, [5, 5, 10, 20]);
        assert_eq!(st.consecutive, 4);
        let out = st.on_due(&r, &c.file(t - 1.0, 9), c.at(t));
        assert_eq!(
            out.beat,
            Some(Beat {
                after_restarts: 4,
                resumed: false
            })
        );
        assert_eq!(st.consecutive, 0);
        assert_eq!(st.restarts_total, 4);
    }

    #[test]
    fn max_restarts_gives_up_and_a_heartbeat_resumes() {
        let c = Clock::new();
        let r = Rules {
            max_restarts: Some(2),
            ..rules()
        };
        let mut st = TargetState::start(&r, &Observation::Absent, c.at(0.0));
        let mut t = 20.0;
        for _ in 0..2 {
            let out = st.on_due(&r, &Observation::Absent, c.at(t));
            assert!(matches!(out.action, Some(Action::Restart { .. })));
            t += finish_restart(&mut st, &r, &c, t).as_secs_f64();
        }
        let out = st.on_due(&r, &Observation::Absent, c.at(t));
        assert!(matches!(
            out.action,
            Some(Action::GiveUp { restarts: 2, .. })
        ));
        assert_eq!(st.phase, Phase::GivenUp);
        // Given up: later checks do nothing.
        for _ in 0..3 {
            t = c.secs(st.deadline);
            assert_eq!(
                st.on_due(&r, &Observation::Absent, c.at(t)),
                DueOutcome::default()
            );
        }
        t = c.secs(st.deadline);
        let out = st.on_due(&r, &c.file(t - 0.5, 1), c.at(t));
        assert_eq!(
            out.beat,
            Some(Beat {
                after_restarts: 2,
                resumed: true
            })
        );
        assert_eq!(st.phase, Phase::Watching);
        assert_eq!(c.secs(st.deadline), t - 0.5 + 10.0);
    }

    #[test]
    fn a_heartbeat_older_than_the_timeout_is_stale_at_once() {
        // After a long grace the file shows one change, long ago: that beat is already stale.
        let c = Clock::new();
        let r = Rules {
            restart_grace: 60 * S,
            ..rules()
        };
        let mut st = TargetState::start(&r, &c.file(0.0, 1), c.at(0.0));
        st.on_due(&r, &c.file(0.0, 1), c.at(10.0));
        finish_restart(&mut st, &r, &c, 10.0);
        let out = st.on_due(&r, &c.file(12.0, 2), c.at(70.0));
        assert_eq!(
            out.beat,
            Some(Beat {
                after_restarts: 1,
                resumed: false
            })
        );
        assert_eq!(
            out.action,
            Some(Action::Restart {
                age: 58 * S,
                run: Cmd::Stop
            })
        );
        assert_eq!(
            st.consecutive, 1,
            "the beat reset the count, this is a first restart"
        );
    }

    #[test]
    fn a_replaced_file_with_the_same_mtime_is_a_heartbeat() {
        let c = Clock::new();
        let r = rules();
        let mut st = TargetState::start(&r, &c.file(0.0, 1), c.at(0.0));
        let Observation::Present(mut f) = c.file(0.0, 1) else {
            unreachable!()
        };
        f.identity = (1, 2);
        let out = st.on_due(&r, &Observation::Present(f), c.at(10.0));
        assert!(out.beat.is_some() && out.action.is_none());
        assert_eq!(
            c.secs(st.deadline),
            20.0,
            "dated now: its mtime is before the last look"
        );
    }

    /// A file on a filesystem with whole-second times, written at `secs` (rounded down), with
    /// content `v`.
    fn coarse(c: &Clock, secs: f64, v: u64) -> Observation {
        let Observation::Present(mut f) = c.file(secs.floor(), 1) else {
            unreachable!()
        };
        f.coarse = true;
        f.content = Some(v);
        Observation::Present(f)
    }

    #[test]
    fn a_write_in_the_same_whole_second_is_seen_on_a_coarse_filesystem() {
        let c = Clock::new();
        let r = rules();
        let mut st = TargetState::start(&r, &coarse(&c, 100.2, 1), c.at(100.4));
        // Written again at 100.7: same mtime (100), new content.
        let out = st.on_due(&r, &coarse(&c, 100.7, 2), c.at(110.4));
        assert!(out.beat.is_some() && out.action.is_none());
        // Unchanged content and time: stale.
        let out = st.on_due(&r, &coarse(&c, 100.7, 2), c.at(st_secs(&c, &st)));
        assert!(out.beat.is_none() && out.action.is_some());
    }

    fn st_secs(c: &Clock, st: &TargetState) -> f64 {
        c.secs(st.deadline)
    }

    #[test]
    fn a_coarse_file_time_is_read_as_the_latest_it_can_stand_for() {
        let c = Clock::new();
        let r = rules();
        // At start-up: written at 100.9, recorded as 100; the deadline is not before 110.9.
        let st = TargetState::start(&r, &coarse(&c, 100.9, 1), c.at(101.0));
        assert_eq!(
            st_secs(&c, &st),
            111.0,
            "100 + 2 s of rounding, capped at now"
        );
        let mut st = TargetState::start(&r, &coarse(&c, 90.0, 1), c.at(95.0));
        assert_eq!(st_secs(&c, &st), 102.0, "90 + 2 s of rounding");
        // A heartbeat recorded as 100 is dated 102 (not 100: restarting up to 2 s early
        // would be worse than 2 s late).
        st.on_due(&r, &coarse(&c, 100.5, 2), c.at(104.0));
        assert_eq!(st_secs(&c, &st), 112.0);
    }

    #[test]
    fn wall_clock_steps_neither_cause_nor_hide_restarts() {
        let c = Clock::new();
        let r = rules();
        let mut st = TargetState::start(&r, &c.file(0.0, 1), c.at(0.0));
        // The wall clock jumps a day ahead; the file is touched at (new) wall time.
        let jump = Duration::from_secs(86400);
        let now = Now {
            mono: c.at(8.0).mono,
            wall: c.at(8.0).wall + jump,
        };
        let Observation::Present(mut f) = c.file(7.0, 2) else {
            unreachable!()
        };
        f.mtime = Some(f.mtime.unwrap() + jump);
        // Not due yet on the monotonic clock: the daemon would not even look.
        assert!(!st.is_due_at(now.mono));
        let out = st.on_due(
            &r,
            &Observation::Present(f),
            Now {
                mono: c.at(10.0).mono,
                wall: now.wall + 2 * S,
            },
        );
        assert!(out.action.is_none());
        assert_eq!(c.secs(st.deadline), 17.0);
    }

    #[test]
    fn skip_if_success_postpones_without_counting_a_restart() {
        let c = Clock::new();
        let r = Rules {
            has_skip_if: true,
            ..rules()
        };
        let mut st = TargetState::start(&r, &Observation::Absent, c.at(0.0));
        let out = st.on_due(&r, &Observation::Absent, c.at(20.0));
        assert_eq!(
            out.action,
            Some(Action::Restart {
                age: 20 * S,
                run: Cmd::SkipIf
            })
        );
        assert_eq!(st.consecutive, 0);
        let next = st.on_command_done(&r, Cmd::SkipIf, true, c.at(21.0).mono);
        assert_eq!(next, Next::Postponed { wait: 7 * S });
        assert_eq!((st.consecutive, st.restarts_total), (0, 0));
        assert_eq!(c.secs(st.deadline), 28.0);
        // Next time skip_if fails: after one more look, the restart goes ahead and is
        // counted, without asking skip_if again.
        st.on_due(&r, &Observation::Absent, c.at(28.0));
        assert_eq!(
            st.on_command_done(&r, Cmd::SkipIf, false, c.at(29.0).mono),
            Next::Recheck
        );
        assert_eq!(c.secs(st.deadline), 29.0, "judged again at once");
        let out = st.on_due(&r, &Observation::Absent, c.at(29.0));
        assert_eq!(
            out.action,
            Some(Action::Restart {
                age: 29 * S,
                run: Cmd::Stop
            })
        );
        assert_eq!((st.consecutive, st.restarts_total), (1, 1));
    }

    #[test]
    fn a_heartbeat_that_comes_while_skip_if_runs_prevents_the_restart() {
        let c = Clock::new();
        let r = Rules {
            has_skip_if: true,
            ..rules()
        };
        let mut st = TargetState::start(&r, &Observation::Absent, c.at(0.0));
        st.on_due(&r, &Observation::Absent, c.at(20.0));
        // skip_if runs from 20 to 23 and says "do not skip"; the file was touched at 22.
        assert_eq!(
            st.on_command_done(&r, Cmd::SkipIf, false, c.at(23.0).mono),
            Next::Recheck
        );
        let out = st.on_due(&r, &c.file(22.0, 1), c.at(23.0));
        assert_eq!(out.action, None, "no restart: the heartbeat is 1 s old");
        assert!(out.beat.is_some());
        assert_eq!(c.secs(st.deadline), 32.0, "a whole timeout after the touch");
        assert_eq!((st.consecutive, st.restarts_total), (0, 0));
        // Stale again later: skip_if is asked again (its refusal was for the last time).
        let out = st.on_due(&r, &c.file(22.0, 1), c.at(32.0));
        assert_eq!(
            out.action,
            Some(Action::Restart {
                age: 10 * S,
                run: Cmd::SkipIf
            })
        );
    }

    #[test]
    fn an_interrupted_restart_is_judged_at_once_unless_a_heartbeat_came_since() {
        let c = Clock::new();
        let r = rules();
        // The file was last touched at 5; the restart began at 8; protector starts at 9.
        let mut st = TargetState::start(&r, &c.file(5.0, 1), c.at(9.0));
        assert!(st.resume_interrupted(c.at(8.0).mono, c.at(9.0).mono));
        assert_eq!(c.secs(st.deadline), 9.0);
        // Touched at 8.5, after the restart began: a heartbeat since, no hurry.
        let mut st = TargetState::start(&r, &c.file(8.5, 2), c.at(9.0));
        assert!(!st.resume_interrupted(c.at(8.0).mono, c.at(9.0).mono));
        assert_eq!(c.secs(st.deadline), 18.5);
    }

    #[test]
    fn a_failed_look_is_not_taken_for_a_change_by_the_next_one() {
        let c = Clock::new();
        let r = rules();
        let mut st = TargetState::start(&r, &c.file(0.0, 1), c.at(1.0));
        // Due at 10: the look fails (no answer, EIO); then it works again, file unchanged.
        let out = st.on_due(&r, &Observation::Unknown, c.at(10.0));
        assert!(out.beat.is_none());
        assert!(matches!(out.action, Some(Action::Restart { .. })));
        st.on_command_done(&r, Cmd::Stop, true, c.at(10.0).mono);
        st.on_command_done(&r, Cmd::Start, true, c.at(10.0).mono);
        let out = st.on_due(&r, &c.file(0.0, 1), c.at(15.0));
        assert!(
            out.beat.is_none(),
            "the same file as before the failed look"
        );
        assert!(matches!(out.action, Some(Action::Restart { .. })));
    }

    #[test]
    fn later_saturates_instead_of_overflowing() {
        let now = Instant::now();
        assert_eq!(later(now, 5 * S), now + 5 * S);
        let far = later(now, Duration::MAX);
        assert!(far > now + super::super::config::duration::MAX);
    }

    #[test]
    fn restored_backoff_is_honoured_but_capped() {
        let c = Clock::new();
        let r = rules();
        let mut st = TargetState::start(&r, &Observation::Absent, c.at(0.0));
        st.restore(&r, 5, 9, Some(c.at(25.0).mono), c.at(0.0).mono);
        assert_eq!((st.consecutive, st.restarts_total), (5, 9));
        assert_eq!(c.secs(st.deadline), 25.0, "pending backoff wait kept");
        let mut st = TargetState::start(&r, &Observation::Absent, c.at(0.0));
        st.restore(&r, 5, 9, Some(c.at(5000.0).mono), c.at(0.0).mono);
        assert_eq!(c.secs(st.deadline), 30.0, "capped at backoff max");
        let mut st = TargetState::start(&r, &Observation::Absent, c.at(0.0));
        st.restore(&r, 0, 9, Some(c.at(5000.0).mono), c.at(0.0).mono);
        assert_eq!(c.secs(st.deadline), 20.0, "no streak, no wait");
    }
}

/// Properties over arbitrary sequences of clock advances, heartbeats and command outcomes.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::time::UNIX_EPOCH;

    #[derive(Debug, Clone)]
    enum Step {
        /// Let this many milliseconds pass (the target is checked whenever it is due).
        Advance(u64),
        /// Touch the heartbeat file now.
        Touch,
        /// The running command (if any) finishes, successfully or not.
        Finish(bool),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (1u64..30_000).prop_map(Step::Advance),
            2 => Just(Step::Touch),
            2 => any::<bool>().prop_map(Step::Finish),
        ]
    }

    fn rules() -> impl Strategy<Value = Rules> {
        (
            1u64..20,
            1u64..20,
            1u64..20,
            0u32..4,
            1u64..120,
            proptest::option::of(1u32..5),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(t, g, s, after, max, max_restarts, has_stop, has_skip_if)| Rules {
                    timeout: Duration::from_secs(t),
                    restart_grace: Duration::from_secs(g),
                    startup_grace: Duration::from_secs(s),
                    backoff_after: after,
                    backoff_max: Duration::from_secs(max),
                    max_restarts,
                    has_stop,
                    has_skip_if,
                    skip_delay: Duration::from_secs(3),
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn decisions_hold_their_promises(r in rules(), steps in proptest::collection::vec(step(), 1..200)) {
            let mono0 = Instant::now();
            let wall0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
            let mut elapsed = Duration::ZERO;
            let at = |e: Duration| Now { mono: mono0 + e, wall: wall0 + e };
            let mut version = 0u64;
            let mut last_touch: Option<Duration> = None;
            let file = |version: u64, touched: Option<Duration>| match touched {
                None => Observation::Absent,
                Some(t) => Observation::Present(Fingerprint { mtime: Some(wall0 + t), len: version, identity: (1, 1), ..Fingerprint::default() }),
            };
            let mut st = TargetState::start(&r, &file(version, last_touch), at(elapsed));
            let mut waits_since_beat: Vec<Duration> = Vec::new();

            for s in steps {
                match s {
                    Step::Touch => {
                        version += 1;
                        last_touch = Some(elapsed);
                    }
                    Step::Finish(ok) => {
                        if let Phase::Running(cmd) = st.phase {
                            match st.on_command_done(&r, cmd, ok, at(elapsed).mono) {
                                Next::Judge { wait } => {
                                    // Waits between consecutive restarts never shrink.
                                    if let Some(prev) = waits_since_beat.last() {
                                        prop_assert!(wait >= *prev, "wait shrank: {:?} after {:?}", wait, prev);
                                    }
                                    waits_since_beat.push(wait);
                                    prop_assert!(st.deadline > at(elapsed).mono);
                                }
                                Next::Postponed { .. } | Next::Run(_) | Next::Recheck => {}
                            }
                        }
                    }
                    Step::Advance(ms) => {
                        let end = elapsed + Duration::from_millis(ms);
                        // Check every time the target falls due within the advance.
                        loop {
                            if matches!(st.phase, Phase::Running(_)) {
                                // Never a second action while one is in flight.
                                prop_assert!(!st.is_due_at(mono0 + end + Duration::from_secs(3600)));
                                break;
                            }
                            let due = st.deadline.saturating_duration_since(mono0);
                            if due > end {
                                break;
                            }
                            elapsed = elapsed.max(due);
                            let out = st.on_due(&r, &file(version, last_touch), at(elapsed));
                            if out.beat.is_some() {
                                waits_since_beat.clear();
                            }
                            if let Some(Action::Restart { .. }) = out.action {
                                // A target with a fresh heartbeat is never restarted.
                                if let Some(t) = last_touch {
                                    prop_assert!(elapsed >= t + r.timeout,
                                        "restarted at {:?}, touched at {:?}, timeout {:?}", elapsed, t, r.timeout);
                                }
                            }
                            // Every decision leaves a deadline ahead (no busy loop, no starvation).
                            if !matches!(st.phase, Phase::Running(_)) {
                                prop_assert!(st.deadline > at(elapsed).mono);
                            }
                        }
                        elapsed = end;
                    }
                }
            }
        }
    }

    /// Found by the property below (under Wine): a deadline moved away and back to the same
    /// instant left two equal entries, and the target was delivered twice.
    #[test]
    fn a_deadline_pushed_twice_is_delivered_once() {
        let t0 = Instant::now();
        let at = t0 + Duration::from_millis(2981);
        let mut agenda = Agenda::default();
        agenda.push(at, 0);
        agenda.push(
            t0 + Duration::from_millis(2650) + Duration::from_millis(331),
            0,
        );
        let mut due = Vec::new();
        agenda.take_due(at, |_, a| a == at, &mut due);
        assert_eq!(due, [0]);
    }

    #[derive(Debug, Clone)]
    enum AgendaStep {
        /// Target `i` gets a new deadline this many ms from now (its old one is superseded).
        Set(usize, u64),
        /// Target `i` starts a command: it has no deadline until the command is done.
        Busy(usize),
        /// Time passes, then everything due is taken.
        Advance(u64),
    }

    proptest! {
        /// No starvation: whatever the other targets do (many deadlines at the same instant,
        /// deadlines moved again and again, commands running), every target's current
        /// deadline is delivered at the first look at or after it, exactly once, and never
        /// before it or for a deadline that was moved.
        #[test]
        fn every_deadline_is_reached(
            n in 1usize..12,
            steps in proptest::collection::vec(
                prop_oneof![
                    3 => (0usize..12, 0u64..5_000).prop_map(|(i, ms)| AgendaStep::Set(i, ms)),
                    1 => (0usize..12).prop_map(AgendaStep::Busy),
                    3 => (0u64..3_000).prop_map(AgendaStep::Advance),
                ],
                1..200,
            ),
        ) {
            let t0 = Instant::now();
            let mut now = t0;
            let mut current: Vec<Option<Instant>> = vec![None; n];
            let mut agenda = Agenda::default();
            for step in steps {
                match step {
                    AgendaStep::Set(i, ms) => {
                        let at = now + Duration::from_millis(ms);
                        current[i % n] = Some(at);
                        agenda.push(at, i % n);
                    }
                    AgendaStep::Busy(i) => current[i % n] = None,
                    AgendaStep::Advance(ms) => {
                        now += Duration::from_millis(ms);
                        let mut due = Vec::new();
                        agenda.take_due(now, |i, at| current[i] == Some(at), &mut due);
                        let mut seen = vec![false; n];
                        for &i in &due {
                            prop_assert!(!seen[i], "target {} delivered twice", i);
                            seen[i] = true;
                            prop_assert!(current[i].is_some_and(|at| at <= now));
                            // Delivered: the daemon judges it and sets a new deadline.
                            current[i] = None;
                        }
                        for (i, at) in current.iter().enumerate() {
                            prop_assert!(
                                at.is_none_or(|at| at > now),
                                "target {} due at {:?} was not delivered at {:?}",
                                i, at.map(|a| a - t0), now - t0
                            );
                        }
                        if let Some(next) = agenda.next() {
                            prop_assert!(next > now);
                        }
                    }
                }
            }
        }
    }
}
