//! Before a restart: the random wait (`restart_splay`) and the dependency check
//! (`depends_on`), and the hold while a dependency is down.
//!
//! A stale target with dependencies is checked before it is restarted ([`Action::Check`]).
//! Up: the restart goes on. Down, or no verdict within the check's bound: the target is held
//! (not restarted) and checked again after a random wait of half `recheck` to `recheck`. Once
//! a check finds it up again, the hold ends and the target gets a whole `timeout` for a
//! heartbeat before it is judged again (its service could not beat while the dependency was
//! down). A heartbeat at any point ends the hold, as it ends any restart not yet begun.

use std::time::{Duration, Instant};

use super::{Action, Cmd, Now, Observation, Phase, Rules, TargetState, later};

/// What a dependency check's verdict leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Up: the restart goes on with this command.
    Restart(Cmd),
    /// Up after a hold: the hold is over; the target is judged again a timeout from now.
    HoldEnded,
    /// Down: held (`first`: the hold begins now), checked again after `recheck`.
    Held { first: bool, recheck: Duration },
    /// The heartbeat came back meanwhile: the restart is called off (and the hold ended,
    /// if there was one); the target is watched as usual.
    Beat { hold_ended: bool },
    /// No verdict was awaited (a heartbeat, an operator or a reload came first): ignored.
    Ignored,
}

impl TargetState {
    /// Seeds the random waits; each target of a fleet gets its own seed, so their waits
    /// differ. (A few lines of splitmix64 rather than a crate: the core stays pure and a
    /// seed replays the same waits in tests.)
    pub fn seed(&mut self, seed: u64) {
        self.rng = seed;
    }

    /// A wait drawn uniformly from `lo..=hi`.
    pub(super) fn draw(&mut self, lo: Duration, hi: Duration) -> Duration {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let fraction = (z >> 11) as f64 / (1u64 << 53) as f64;
        lo + hi.saturating_sub(lo).mul_f64(fraction)
    }

    /// The restart under way is over or called off: the next one waits and checks afresh.
    pub(super) fn end_attempt(&mut self) {
        self.splayed = false;
        self.deps_ok = false;
    }

    /// Begins a dependency check, bounded by the deadline.
    pub(super) fn check(&mut self, rules: &Rules, now: Instant) -> Action {
        self.phase = Phase::Checking;
        self.deadline = later(now, rules.check_bound);
        Action::Check
    }

    /// A dependency is down (or did not answer): held, checked again later. Returns whether
    /// the hold begins now, and the wait until the next check.
    pub(super) fn hold(&mut self, rules: &Rules, now: Instant) -> (bool, Duration) {
        let first = self.held_since.is_none();
        if first {
            self.held_since = Some(now);
        }
        self.phase = Phase::Held;
        let recheck = self.draw(rules.recheck / 2, rules.recheck);
        self.deadline = later(now, recheck);
        (first, recheck)
    }

    /// The verdict of the dependency check, `up` or not, with `obs` a fresh look at the
    /// heartbeat (the check took a while: a heartbeat since calls the restart off).
    pub fn on_checked(&mut self, rules: &Rules, up: bool, obs: &Observation, now: Now) -> Checked {
        if self.phase != Phase::Checking {
            return Checked::Ignored;
        }
        let hold_ended = self.is_held();
        if self.take_beat(rules, obs, now).is_some() {
            return Checked::Beat { hold_ended };
        }
        let now = now.mono;
        if !up {
            let (first, recheck) = self.hold(rules, now);
            return Checked::Held { first, recheck };
        }
        if self.held_since.take().is_some() {
            self.end_attempt();
            self.phase = Phase::Watching;
            self.deadline = later(now, rules.timeout);
            return Checked::HoldEnded;
        }
        self.deps_ok = true;
        Checked::Restart(self.first_command(rules))
    }

    /// Is the target held (a dependency down)?
    pub fn is_held(&self) -> bool {
        self.held_since.is_some()
    }
}
