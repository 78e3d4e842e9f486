//! Properties over arbitrary sequences of clock advances, heartbeats and command outcomes.

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
    /// The dependency check under way (if any) answers: up or down.
    Verdict(bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u64..30_000).prop_map(Step::Advance),
        2 => Just(Step::Touch),
        2 => any::<bool>().prop_map(Step::Finish),
        2 => any::<bool>().prop_map(Step::Verdict),
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
        (0u64..30, any::<bool>(), 1u64..10, 1u64..60),
    )
        .prop_map(
            |(
                t,
                g,
                s,
                after,
                max,
                max_restarts,
                has_stop,
                has_skip_if,
                (splay, has_depends, bound, recheck),
            )| Rules {
                timeout: Duration::from_secs(t),
                restart_grace: Duration::from_secs(g),
                startup_grace: Duration::from_secs(s),
                backoff_after: after,
                backoff_max: Duration::from_secs(max),
                max_restarts,
                has_stop,
                has_skip_if,
                skip_delay: Duration::from_secs(3),
                restart_splay: Duration::from_secs(splay),
                has_depends,
                check_bound: Duration::from_secs(bound),
                recheck: Duration::from_secs(recheck),
            },
        )
}

proptest! {
    #![proptest_config(crate::proptest_config(500))]

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
        st.seed(version ^ r.timeout.as_secs());
        let mut waits_since_beat: Vec<Duration> = Vec::new();
        // A restart of a target with dependencies follows a check that found them up.
        let mut up_since_stale = false;

        for s in steps {
            match s {
                Step::Touch => {
                    version += 1;
                    last_touch = Some(elapsed);
                }
                Step::Verdict(up) => {
                    let was_held = st.is_held();
                    match st.on_checked(&r, up, &file(version, last_touch), at(elapsed)) {
                        Checked::Restart(_) => {
                            prop_assert!(up && r.has_depends && !was_held);
                            up_since_stale = true;
                            if let Some(t) = last_touch {
                                prop_assert!(elapsed >= t + r.timeout);
                            }
                        }
                        Checked::HoldEnded => {
                            // Back from a hold: a whole timeout before it is judged again.
                            prop_assert!(up && was_held);
                            prop_assert_eq!(st.deadline, at(elapsed).mono + r.timeout);
                            prop_assert!(st.phase == Phase::Watching);
                        }
                        Checked::Held { recheck, .. } => {
                            prop_assert!(!up && st.is_held());
                            prop_assert!(recheck <= r.recheck && recheck >= r.recheck / 2);
                        }
                        Checked::Beat { hold_ended } => {
                            prop_assert_eq!(hold_ended, was_held);
                            prop_assert!(st.phase == Phase::Watching && !st.is_held());
                            up_since_stale = false;
                        }
                        Checked::Ignored => prop_assert!(st.phase != Phase::Checking),
                    }
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
                                up_since_stale = false;
                                prop_assert!(st.deadline > at(elapsed).mono);
                            }
                            Next::Postponed { .. } => up_since_stale = false,
                            Next::Run(_) | Next::Recheck => {}
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
                        if out.beat.is_some() {
                            up_since_stale = false;
                        }
                        if matches!(out.action, Some(Action::Restart { .. })) && r.has_depends {
                            // Only skip_if's "do not skip" goes on without a new check.
                            prop_assert!(up_since_stale, "restarted without a check that found the dependencies up");
                        }
                        if st.is_held() {
                            prop_assert!(!matches!(st.phase, Phase::Running(_) | Phase::Delaying));
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
    #![proptest_config(crate::proptest_config(256))]

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
