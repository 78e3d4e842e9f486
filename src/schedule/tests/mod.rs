//! The decision core with made-up instants: grace, staleness, backoff, give-up, skip_if, the
//! agenda; what a look at the file tells (replaced files, whole-second times, clock steps,
//! failed looks) in `files`.

mod files;

use super::*;
use std::time::{SystemTime, UNIX_EPOCH};

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
        restart_splay: Duration::ZERO,
        has_depends: false,
        check_bound: 7 * S,
        recheck: 30 * S,
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

/// When a target is first judged: what the file looked like at start-up (`None`: missing;
/// else its mtime, seconds from the clock's start), when protector started, the deadline.
#[test]
fn the_first_deadline_table() {
    let c = Clock::new();
    let table: [(&str, Option<f64>, f64, f64); 4] = [
        ("fresh: mtime + timeout", Some(-4.0), 0.0, 6.0),
        ("missing: startup_grace", None, 0.0, 20.0),
        ("old: startup_grace", Some(-3600.0), 3700.0, 3720.0),
        ("dated in the future: not fresh", Some(50.0), 0.0, 20.0),
    ];
    for (case, mtime, now, deadline) in table {
        let seen = mtime.map_or(Observation::Absent, |m| c.file(m, 1));
        let st = TargetState::start(&rules(), &seen, c.at(now));
        assert_eq!(c.secs(st.deadline), deadline, "{case}");
    }
    let st = TargetState::start(&rules(), &c.file(-4.0, 1), c.at(0.0));
    assert_eq!(st.age(c.at(0.0).mono), 4 * S);
}

/// How a heartbeat is dated: the file's new mtime, when protector looked, the deadline
/// after it (a watching target, last seen at 0, timeout 10 s). An mtime that cannot be
/// (in the future, or before protector's previous look) counts as the look's instant.
#[test]
fn the_heartbeat_dating_table() {
    let c = Clock::new();
    let r = rules();
    let table: [(&str, f64, f64, f64); 3] = [
        ("dated by its mtime", 7.0, 10.0, 17.0),
        ("in the future: now", 500.0, 10.0, 20.0),
        ("before the last look: now", -100.0, 10.0, 20.0),
    ];
    for (case, mtime, look, deadline) in table {
        let mut st = TargetState::start(&r, &c.file(0.0, 1), c.at(0.0));
        let out = st.on_due(&r, &c.file(mtime, 2), c.at(look));
        let beat = Beat {
            after_restarts: 0,
            resumed: false,
        };
        assert_eq!((out.beat, out.action), (Some(beat), None), "{case}");
        assert_eq!(c.secs(st.deadline), deadline, "{case}");
    }
}

/// A stale target's first command: stop when it has one, start when not, skip_if before
/// either when set (not counted as a restart until it lets the restart go on).
#[test]
fn the_first_command_table() {
    let c = Clock::new();
    let table = [
        ("stop, then start", true, false, Cmd::Stop),
        ("no stop: start", false, false, Cmd::Start),
        ("skip_if first", true, true, Cmd::SkipIf),
    ];
    for (case, has_stop, has_skip_if, first) in table {
        let r = Rules {
            has_stop,
            has_skip_if,
            ..rules()
        };
        let mut st = TargetState::start(&r, &Observation::Absent, c.at(0.0));
        let out = st.on_due(&r, &Observation::Absent, c.at(20.0));
        let restart = Action::Restart {
            age: 20 * S,
            run: first,
        };
        assert_eq!(out.action, Some(restart), "{case}");
        assert_eq!(st.phase, Phase::Running(first), "{case}");
        assert_eq!(st.consecutive, u32::from(first != Cmd::SkipIf), "{case}");
    }
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
fn later_saturates_instead_of_overflowing() {
    let now = Instant::now();
    assert_eq!(later(now, 5 * S), now + 5 * S);
    let far = later(now, Duration::MAX);
    assert!(far > now + super::super::config::duration::MAX);
}

/// A restored streak's pending wait (from a state file): the streak, when the wait was to
/// end, the deadline.
#[test]
fn the_restored_backoff_table() {
    let c = Clock::new();
    let r = rules();
    let table = [
        ("pending backoff wait kept", 5, 25.0, 25.0),
        ("capped at backoff max", 5, 5000.0, 30.0),
        ("no streak, no wait: startup_grace", 0, 5000.0, 20.0),
    ];
    for (case, consecutive, until, deadline) in table {
        let mut st = TargetState::start(&r, &Observation::Absent, c.at(0.0));
        st.restore(&r, consecutive, 9, Some(c.at(until).mono), c.at(0.0).mono);
        assert_eq!(
            (st.consecutive, st.restarts_total),
            (consecutive, 9),
            "{case}"
        );
        assert_eq!(c.secs(st.deadline), deadline, "{case}");
    }
}
