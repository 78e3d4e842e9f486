//! What a look at the heartbeat file tells the decision core: a replaced file, a write in
//! the same whole second on a coarse filesystem, wall-clock steps, a failed look.

use super::*;

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
