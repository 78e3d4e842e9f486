//! What the core tells the daemon after a due check or a finished command.

use std::time::Duration;

use super::Cmd;

/// What the daemon must do after a due check.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Stale: run this command first (skip_if, stop, or start). With `skip_if` the restart
    /// only begins when it says so (see [`TargetState::on_command_done`]).
    Restart { age: Duration, run: Cmd },
    /// Stale: wait this long (drawn within `restart_splay`) before going on.
    Delay { wait: Duration },
    /// Check the dependencies; the verdict goes to [`TargetState::on_checked`]. If none comes
    /// by the deadline, the next due check holds the target.
    Check,
    /// The check did not answer in time: held (`first`: the hold begins now), checked again
    /// after `recheck`.
    Held { first: bool, recheck: Duration },
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
    /// A pause until resumed lasts: a day has passed since it began or was last said.
    pub still_paused: bool,
    /// The target was judged stale at this check, its heartbeat this old: a restart is due
    /// (it may still wait, or be held, before it begins).
    pub stale: Option<Duration>,
    /// The heartbeat came back while the target was held: the hold is over.
    pub hold_ended: bool,
    /// The heartbeat came back during the wait before a restart, or its dependency check:
    /// the restart is called off.
    pub called_off: bool,
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
