//! The watchdog loop. One scheduler thread owns every target's state and a heap of deadlines;
//! it sleeps on a channel until the nearest deadline or until a command reports back, so it
//! does no work while nothing is due and is woken at once by a finished command.
//!
//! Due targets are observed (in parallel on the rayon pool when many fall due together) and
//! `schedule` decides; restarts run on threads of their own (`command`), so a hung command
//! never delays any other target. The decisions and their logging live here; the rules live in
//! `schedule`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Result;
use rayon::prelude::*;
use tracing::{debug, error, info, warn};

use crate::command::{self, Outcome};
use crate::config::duration::format as fmt_dur;
use crate::config::{Config, Target};
use crate::heartbeat;
use crate::schedule::{Action, Cmd, Next, Now, Observation, Phase, Rules, TargetState};

/// Below this many due targets, observe them on the scheduler thread: a single stat is
/// cheaper than waking the pool.
const PARALLEL_OBSERVE_MIN: usize = 16;

enum Msg {
    Done {
        slot: usize,
        cmd: Cmd,
        outcome: Outcome,
    },
}

struct Slot {
    target: Target,
    rules: Rules,
    state: TargetState,
    /// Last reason the heartbeat could not be read, to log each new one once.
    last_error: Option<String>,
}

/// Watches the enabled targets of `config` until the process is stopped.
pub fn run(config: Config) -> Result<()> {
    let (tx, rx) = mpsc::channel::<Msg>();
    let (enabled, disabled): (Vec<Target>, Vec<Target>) =
        config.targets.into_iter().partition(|t| t.enabled);
    for t in &disabled {
        info!(target = %t.name, "target is disabled; not watching it");
    }
    if enabled.is_empty() {
        warn!("no enabled targets; nothing to watch");
    }

    let now = Now::read();
    let looks: Vec<_> = enabled
        .par_iter()
        .map(|t| heartbeat::observe(&t.heartbeat))
        .collect();
    let mut slots: Vec<Slot> = enabled
        .into_iter()
        .zip(looks)
        .map(|(target, (obs, err))| {
            let rules = Rules::of(&target);
            let state = TargetState::start(&rules, &obs, now);
            let mut slot = Slot {
                target,
                rules,
                state,
                last_error: None,
            };
            slot.note_error(err);
            info!(
                target = %slot.target.name,
                heartbeat = %slot.target.heartbeat.display(),
                timeout = %fmt_dur(slot.target.timeout),
                first_check_in = %fmt_dur(slot.state.deadline.saturating_duration_since(now.mono)),
                "watching"
            );
            slot
        })
        .collect();
    let mut heap: BinaryHeap<Reverse<(Instant, usize)>> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| Reverse((s.state.deadline, i)))
        .collect();
    info!(targets = slots.len(), "protector is running");

    let mut due = Vec::new();
    loop {
        // Everything due now.
        let now_mono = Instant::now();
        due.clear();
        while let Some(&Reverse((at, i))) = heap.peek() {
            if at > now_mono {
                break;
            }
            heap.pop();
            // Skip entries left behind by a deadline that moved (none today, but cheap).
            if slots[i].state.is_due_at(now_mono) && slots[i].state.deadline == at {
                due.push(i);
            }
        }
        if !due.is_empty() {
            let looks: Vec<_> = if due.len() >= PARALLEL_OBSERVE_MIN {
                due.par_iter()
                    .map(|&i| heartbeat::observe(&slots[i].target.heartbeat))
                    .collect()
            } else {
                due.iter()
                    .map(|&i| heartbeat::observe(&slots[i].target.heartbeat))
                    .collect()
            };
            let now = Now::read();
            for (&i, (obs, err)) in due.iter().zip(looks) {
                let slot = &mut slots[i];
                slot.note_error(err);
                if let Some(cmd) = slot.on_due(&obs, now) {
                    spawn_command(&tx, i, slot, cmd);
                } else {
                    heap.push(Reverse((slot.state.deadline, i)));
                }
            }
        }

        let msg = match heap.peek() {
            Some(&Reverse((at, _))) => {
                match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(msg) => msg,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => unreachable!("we hold a sender"),
                }
            }
            None => match rx.recv() {
                Ok(msg) => msg,
                Err(_) => unreachable!("we hold a sender"),
            },
        };
        match msg {
            Msg::Done {
                slot: i,
                cmd,
                outcome,
            } => {
                let slot = &mut slots[i];
                log_outcome(&slot.target, cmd, &outcome);
                match slot.state.on_command_done(&slot.rules, cmd, Instant::now()) {
                    Next::Run(next) => spawn_command(&tx, i, slot, next),
                    Next::Judge { wait } => {
                        info!(
                            target = %slot.target.name,
                            next_check_in = %fmt_dur(wait),
                            consecutive_restarts = slot.state.consecutive,
                            "restart done"
                        );
                        heap.push(Reverse((slot.state.deadline, i)));
                    }
                }
            }
        }
    }
}

impl Slot {
    fn note_error(&mut self, err: Option<String>) {
        if err.is_some() && err != self.last_error {
            warn!(
                target = %self.target.name,
                heartbeat = %self.target.heartbeat.display(),
                reason = err.as_deref().unwrap_or_default(),
                "cannot read the heartbeat file; counting it as no heartbeat"
            );
        }
        self.last_error = err;
    }

    /// Applies a due check; returns the command to start, if any.
    fn on_due(&mut self, obs: &Observation, now: Now) -> Option<Cmd> {
        let was_given_up = self.state.phase == Phase::GivenUp;
        let out = self.state.on_due(&self.rules, obs, now);
        let name = &self.target.name;
        if was_given_up && out.beat.is_none() {
            debug!(target = %name, age = %fmt_secs(self.state.age(now.mono)), "still no heartbeat; given up");
        }
        if let Some(beat) = out.beat {
            if beat.resumed {
                info!(target = %name, "heartbeat is back; watching again after giving up");
            } else if beat.after_restarts > 0 {
                info!(target = %name, restarts = beat.after_restarts, "heartbeat is back after restart");
            } else {
                debug!(target = %name, next_check_in = %fmt_dur(self.state.deadline.saturating_duration_since(now.mono)), "heartbeat seen");
            }
        }
        match out.action? {
            Action::Restart { age, run } => {
                warn!(
                    target = %name,
                    age = %fmt_secs(age),
                    timeout = %fmt_dur(self.target.timeout),
                    consecutive_restarts = self.state.consecutive,
                    "heartbeat is stale; restarting"
                );
                Some(run)
            }
            Action::GiveUp { age, restarts } => {
                error!(
                    target = %name,
                    age = %fmt_secs(age),
                    restarts,
                    "giving up: no heartbeat after max_restarts consecutive restarts; will resume when a heartbeat appears"
                );
                None
            }
        }
    }
}

fn spawn_command(tx: &mpsc::Sender<Msg>, i: usize, slot: &Slot, cmd: Cmd) {
    let line = match cmd {
        Cmd::Stop => slot.target.stop.clone(),
        Cmd::Start => Some(slot.target.start.clone()),
    }
    .expect("schedule only runs stop when there is one");
    let age = slot.state.age(Instant::now());
    let env = vec![
        ("PROTECTOR_TARGET", slot.target.name.clone()),
        (
            "PROTECTOR_HEARTBEAT",
            slot.target.heartbeat.display().to_string(),
        ),
        ("PROTECTOR_AGE_SECS", age.as_secs().to_string()),
    ];
    let timeout = slot.target.command_timeout;
    info!(target = %slot.target.name, command = %line, "running {} command", cmd.name());
    let tx = tx.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("protector-{}", cmd.name()))
        .stack_size(256 * 1024)
        .spawn({
            let tx = tx.clone();
            move || {
                let outcome = command::run(&line, &env, timeout);
                let _ = tx.send(Msg::Done {
                    slot: i,
                    cmd,
                    outcome,
                });
            }
        });
    if let Err(e) = spawned {
        // Report it as a failed command so the target carries on.
        let outcome = Outcome {
            status: Err(format!("cannot start a thread for the command: {e}")),
            timed_out: false,
            duration: Duration::ZERO,
            stdout: String::new(),
            stderr: String::new(),
        };
        let _ = tx.send(Msg::Done {
            slot: i,
            cmd,
            outcome,
        });
    }
}

fn log_outcome(target: &Target, cmd: Cmd, o: &Outcome) {
    let name = &target.name;
    let what = cmd.name();
    let ms = o.duration.as_millis() as u64;
    match &o.status {
        Err(reason) => {
            error!(target = %name, duration_ms = ms, reason = %reason, "{what} command could not run");
        }
        Ok(status) if o.timed_out => {
            error!(
                target = %name,
                duration_ms = ms,
                timeout = %fmt_dur(target.command_timeout),
                status = %status,
                stdout = non_empty(&o.stdout),
                stderr = non_empty(&o.stderr),
                "{what} command timed out; killed its process tree"
            );
        }
        Ok(status) if status.success() => {
            info!(target = %name, duration_ms = ms, stdout = non_empty(&o.stdout), stderr = non_empty(&o.stderr), "{what} command finished");
        }
        Ok(status) => {
            warn!(target = %name, duration_ms = ms, status = %status, stdout = non_empty(&o.stdout), stderr = non_empty(&o.stderr), "{what} command failed");
        }
    }
}

/// Output fields are left out of a log line when the stream was empty.
fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn fmt_secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
