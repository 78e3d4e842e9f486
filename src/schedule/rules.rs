//! The per-target timing rules the core decides by, taken from the resolved config.

use std::time::Duration;

use crate::config::Target;

/// The per-target timing rules, taken from the resolved config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// Up to this random wait before a restart.
    pub restart_splay: Duration,
    /// The target has dependencies to check before a restart.
    pub has_depends: bool,
    /// How long a dependency check may take before it counts as "down" (no answer).
    pub check_bound: Duration,
    /// Longest wait between two checks while held.
    pub recheck: Duration,
}

/// How much longer than `check_timeout` the loop waits for a check's verdict (the checker
/// bounds its own work by `check_timeout`; this covers a thread slow to be scheduled).
const CHECK_SLACK: Duration = Duration::from_secs(2);

impl Rules {
    pub fn of(target: &Target) -> Rules {
        Rules {
            timeout: target.timeout,
            restart_grace: target.restart_grace,
            startup_grace: target.startup_grace,
            backoff_after: target.backoff.after,
            backoff_max: target.backoff.max,
            max_restarts: target.max_restarts,
            // Observed only: the one step of a "restart" is keeping its incident.
            has_stop: target.stop.is_some() && !target.observe_only,
            has_skip_if: target.skip_if.is_some(),
            skip_delay: target.skip_delay,
            restart_splay: target.restart_splay,
            has_depends: target.depends_on.is_some(),
            check_bound: target.depends_on.as_ref().map_or(Duration::ZERO, |d| {
                d.check_timeout.saturating_add(CHECK_SLACK)
            }),
            recheck: target
                .depends_on
                .as_ref()
                .map_or(Duration::ZERO, |d| d.recheck),
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
