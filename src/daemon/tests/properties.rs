//! The loop's promises, over random schedules of heartbeats, command outcomes, reloads,
//! operators' requests and time steps: no target with two commands in flight, no restart of a
//! fresh heartbeat or of a paused target, every due target judged in the next turn.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;

use super::harness::{Behaviour, Harness};
use super::{config, parse, target};
use crate::control::{Request, Verb};

#[derive(Debug, Clone)]
enum Step {
    Advance(u64),
    Touch(usize),
    Behave(usize, u8, u64),
    Reload(u64),
    /// An operator: pause (for that many seconds), resume or reset target `.0`.
    Operator(usize, u8, u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u64..8000).prop_map(Step::Advance),
        3 => (0usize..4).prop_map(Step::Touch),
        2 => (0usize..4, 0u8..5, 0u64..6000).prop_map(|(t, k, ms)| Step::Behave(t, k, ms)),
        1 => (1u64..4).prop_map(Step::Reload),
        1 => (0usize..4, 0u8..3, 1u64..20).prop_map(|(t, k, s)| Step::Operator(t, k, s)),
    ]
}

fn prop_config(timeout_s: u64) -> String {
    let targets: Vec<String> = (0..4)
        .map(|i| {
            target(
                &format!("p{i}"),
                &format!(
                    "    timeout: {}s\n    restart_grace: 2s\n    notify: [n]\n{}",
                    timeout_s + i as u64,
                    if i == 3 {
                        "    skip_if: [busy]\n    skip_delay: 1s\n"
                    } else {
                        ""
                    }
                ),
            )
            // Its own timeout instead of target()'s (a key may be written only once).
            .replacen("    timeout: 10s\n", "", 1)
        })
        .collect();
    config(&targets, "max_parallel_commands: 2\n")
}

proptest! {
    #![proptest_config(crate::proptest_config(256))]

    /// Whatever the heartbeats, command outcomes, reloads, operators' pauses, resumes and
    /// resets and time steps: no target ever has two commands in flight, a target whose
    /// heartbeat is fresh or that is paused is never restarted, and every target whose
    /// deadline has come is judged in the next turn of the loop.
    #[test]
    fn the_loop_keeps_its_promises(steps in proptest::collection::vec(step(), 1..60)) {
        let mut h = Harness::new(&prop_config(5));
        let mut touches: HashMap<String, Vec<(Duration, u64)>> = HashMap::new();
        // Each target's pauses: (what had happened when it began, until), an early resume or
        // a new pause ending one.
        let mut pauses: HashMap<String, Vec<(u64, Duration)>> = HashMap::new();
        for s in steps {
            match s {
                Step::Advance(ms) => {
                    let until = h.now() + Duration::from_millis(ms);
                    while h.now() < until && h.exit.is_none() {
                        // One deadline at a time, checking that everything due gets looked at.
                        let base = h.d.now().mono - h.now();
                        let next = h.d.next_wake().map(|at| at.saturating_duration_since(base));
                        let to = next.map_or(until, |n| n.min(until)).max(h.now());
                        let looks_before = h.world.borrow().looks.len();
                        h.run_until(to);
                        let now_mono = h.d.now().mono;
                        let due: Vec<PathBuf> = h.d.slots.iter()
                            .filter(|s| s.state.is_due_at(now_mono))
                            .map(|s| s.target.heartbeat.clone())
                            .collect();
                        prop_assert!(due.is_empty(), "due but not judged: {due:?} (looks {looks_before})");
                        if to == h.now() && next.is_none_or(|n| n > until) { break; }
                    }
                }
                Step::Touch(i) => {
                    let name = format!("p{i}");
                    if h.d.slots.iter().any(|s| s.target.name == name) {
                        let seq = h.touch(&name);
                        touches.entry(name).or_default().push((h.now(), seq));
                    }
                }
                Step::Behave(i, kind, ms) => {
                    let what = ["stop", "start", "skip_if", "notify"][(ms % 4) as usize];
                    let b = match kind {
                        0 => Behaviour::Exit(0, Duration::from_millis(ms)),
                        1 => Behaviour::Exit(1, Duration::from_millis(ms)),
                        2 => Behaviour::NoSpawn,
                        3 => Behaviour::NoResources,
                        _ => Behaviour::Panic,
                    };
                    h.behave(&format!("p{i}"), what, b);
                }
                Step::Reload(t) => {
                    h.d.apply(parse(&prop_config(4 + t)), false);
                }
                Step::Operator(i, kind, secs) => {
                    let name = format!("p{i}");
                    let command = [Verb::Pause, Verb::Resume, Verb::Reset][kind as usize];
                    let (reply, _) = std::sync::mpsc::channel();
                    let req = Request {
                        protocol: crate::control::PROTOCOL,
                        command,
                        targets: vec![name.clone()],
                        all: false,
                        for_secs: Some(secs as f64),
                        until_resumed: false,
                        reason: None,
                    };
                    h.exit = h.d.handle(crate::daemon::Msg::Control { req, reply });
                    let (now, seq) = (h.now(), h.world.borrow().seq);
                    let p = pauses.entry(name).or_default();
                    match command {
                        Verb::Pause => {
                            for w in p.iter_mut().filter(|w| w.1 > now) {
                                w.1 = now;
                            }
                            p.push((seq, now + Duration::from_secs(secs)));
                        }
                        Verb::Resume => {
                            for w in p.iter_mut().filter(|w| w.1 > now) {
                                w.1 = now;
                            }
                        }
                        _ => {}
                    }
                }
            }
            prop_assert!(h.world.borrow().overlaps.is_empty(), "two commands at once: {:?}", h.world.borrow().overlaps);
        }
        // A restart (its first command) never began while the heartbeat was fresh: at least
        // the target's shortest timeout (5 s + its number) after its latest touch.
        let started = h.world.borrow().started.clone();
        for s in started.iter().filter(|s| s.what == "stop" || s.what == "skip_if") {
            let i: u64 = s.target[1..].parse().unwrap();
            let last = touches.get(&s.target).and_then(|t| t.iter().filter(|t| t.1 < s.seq).max());
            if let Some((at, _)) = last {
                prop_assert!(s.at >= *at + Duration::from_secs(5 + i),
                    "{} restarted at {:?}, touched at {:?}", s.target, s.at, at);
            }
            // Nor while the target was paused.
            for (after, until) in pauses.get(&s.target).into_iter().flatten() {
                prop_assert!(!(s.seq > *after && s.at < *until),
                    "{} restarted at {:?}, paused until {:?}", s.target, s.at, until);
            }
        }
    }
}
