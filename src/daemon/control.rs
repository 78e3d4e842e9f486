//! Operators' requests (`protector pause|resume|restart|reset|reload`, see `crate::control`):
//! what the loop does with each. They come off the control endpoint through
//! `control::server`, which knows nothing of the loop: it hands each request and a channel
//! for its answers to [`listen`]'s callback, which makes it a message to the loop.

use std::sync::mpsc;
use std::time::Duration;

use tracing::info;

use super::slot::Notes;
use super::{Daemon, Msg};
use crate::control::{self, Reply, Request, TargetResult, Verb};
use crate::text::human;

impl Daemon {
    /// One request from the control socket; `reply` hears the answer (dropped when done).
    pub(super) fn on_control(&mut self, req: Request, reply: mpsc::Sender<Reply>) {
        let say = |r: Reply| {
            let _ = reply.send(r);
        };
        info!(
            event = "control_request",
            command = req.command.name(),
            targets = %if req.all { "--all".to_string() } else { req.targets.join(" ") },
            "operator's request"
        );
        if self.stopping {
            return say(Reply::Error("protector is shutting down".into()));
        }
        if req.command == Verb::Reload {
            // Answered once the config is read and applied (or refused).
            return self.reload(Some(reply));
        }
        let chosen = match self.choose(&req) {
            Ok(chosen) => chosen,
            Err(e) => return say(Reply::Error(e)),
        };
        let pause_for = match (req.command, req.for_secs) {
            (Verb::Pause, _) if req.until_resumed => None,
            (Verb::Pause, Some(s)) => {
                match Duration::try_from_secs_f64(s)
                    .ok()
                    .filter(|d| !d.is_zero() && *d <= control::MAX_PAUSE)
                {
                    Some(d) => Some(d),
                    None => {
                        return say(Reply::Error(format!(
                            "a pause lasts more than 0 s and at most {}, not {s} s",
                            human(control::MAX_PAUSE.as_secs_f64())
                        )));
                    }
                }
            }
            _ => Some(control::DEFAULT_PAUSE),
        };
        let reason: Option<String> = req
            .reason
            .as_deref()
            .map(|r| r.chars().take(control::MAX_REASON).collect::<String>())
            .filter(|r| !r.trim().is_empty());
        for i in chosen {
            let result = match req.command {
                Verb::Pause => self.pause(i, pause_for, reason.clone()),
                Verb::Resume => self.resume(i),
                Verb::Reset => self.reset(i),
                Verb::Restart => match self.restart(i, &reply) {
                    Some(refused) => refused,
                    None => continue,
                },
                Verb::Reload => unreachable!("answered above"),
            };
            say(Reply::Target(result));
        }
        // Written now: a `protector status` right after the answer shows what was done.
        self.flush_and_wait(super::books::Part::State);
    }

    /// The slots a request names (`all`: every one); an unknown or disabled name is an error
    /// that lists the names an operator can use.
    fn choose(&self, req: &Request) -> Result<Vec<usize>, String> {
        let known = || {
            let names: Vec<&str> = self.slots.iter().map(|s| s.target.name.as_str()).collect();
            if names.is_empty() {
                "none (no enabled target)".to_string()
            } else {
                names.join(", ")
            }
        };
        match (req.all, req.targets.is_empty()) {
            (true, false) => return Err("name targets or ask for all of them, not both".into()),
            (true, true) => return Ok((0..self.slots.len()).collect()),
            (false, true) => {
                return Err(format!(
                    "name at least one target (or all); known: {}",
                    known()
                ));
            }
            (false, false) => {}
        }
        let mut chosen = Vec::new();
        for name in &req.targets {
            match self.slots.iter().position(|s| s.target.name == *name) {
                Some(i) if !chosen.contains(&i) => chosen.push(i),
                Some(_) => {}
                None if self.books.disabled.iter().any(|t| t.name == *name) => {
                    return Err(format!(
                        "target {name:?} is disabled in the config (enabled: false); known: {}",
                        known()
                    ));
                }
                None => return Err(format!("no target named {name:?}; known: {}", known())),
            }
        }
        Ok(chosen)
    }

    /// Pauses slot `i` for `d`, or until resumed when `d` is `None`.
    fn pause(&mut self, i: usize, d: Option<Duration>, reason: Option<String>) -> TargetResult {
        let now = self.now().mono;
        let slot = &mut self.slots[i];
        match d {
            Some(d) => slot.state.pause(crate::schedule::later(now, d)),
            None => slot.state.pause_until_resumed(now),
        }
        slot.set_note(Notes::PAUSE_REASON, reason);
        let reason = slot.notes().pause_reason.clone().unwrap_or_default();
        let how = d.map_or("until resumed".into(), |d| {
            format!("for {}", human(d.as_secs_f64()))
        });
        info!(target = %slot.target.name, event = "paused", for_secs = d.map(super::secs), until_resumed = d.is_none(), reason = %reason, "paused by an operator ({how}): not judged until resumed or the pause ends");
        let slot = self.rescheduled(i);
        ok(
            slot,
            format!(
                "paused {how}{}",
                if reason.is_empty() {
                    String::new()
                } else {
                    format!(": {reason}")
                }
            ),
        )
    }

    fn resume(&mut self, i: usize) -> TargetResult {
        if self.slots[i].state.paused_until.is_none() {
            return ok(&self.slots[i], "was not paused".into());
        }
        let obs = self.look_once(i);
        let now = self.now();
        let slot = &mut self.slots[i];
        slot.state.resume(&slot.rules, &obs, now);
        let now = now.mono;
        slot.set_note(Notes::PAUSE_REASON, None);
        info!(target = %slot.target.name, event = "pause_ended", by = "operator", "resumed by an operator: watched again");
        let slot = self.rescheduled(i);
        if slot.is_running() {
            return ok(slot, "watched again; its restart under way goes on".into());
        }
        let next = slot.state.deadline.saturating_duration_since(now);
        ok(
            slot,
            format!("watched again; next check in {}", human(next.as_secs_f64())),
        )
    }

    fn reset(&mut self, i: usize) -> TargetResult {
        let now = self.now().mono;
        let slot = &mut self.slots[i];
        let before = slot.status();
        slot.state.reset(&slot.rules, now);
        info!(target = %slot.target.name, event = "reset", was = %before, "reset by an operator: backoff and consecutive restarts cleared");
        let slot = self.rescheduled(i);
        ok(
            slot,
            format!(
                "reset (was {before}): backoff and consecutive restarts cleared{}",
                if slot.is_running() {
                    "; its running command goes on"
                } else if slot.state.paused_until.is_some() {
                    "; still paused"
                } else if slot.state.deadline <= now {
                    "; judged now"
                } else {
                    "; its heartbeat is fresh"
                }
            ),
        )
    }

    /// Slot `i` after its deadline moved: due then, unless a command of it runs.
    fn rescheduled(&mut self, i: usize) -> &super::slot::Slot {
        let slot = &self.slots[i];
        if !slot.is_running() {
            self.agenda.push(slot.state.deadline, i);
        }
        &self.slots[i]
    }

    /// Begins a restart asked for by an operator (answered when it ends); an answer now if it
    /// cannot begin.
    fn restart(&mut self, i: usize, reply: &mpsc::Sender<Reply>) -> Option<TargetResult> {
        let slot = &mut self.slots[i];
        if slot.target.observe_only {
            return Some(TargetResult {
                name: slot.target.name.clone(),
                ok: false,
                message: "observe only (observe_only: true): protector never runs its stop or \
                          start; restart the service yourself"
                    .into(),
            });
        }
        let Some(first) = slot.state.restart_now(&slot.rules) else {
            return Some(TargetResult {
                name: slot.target.name.clone(),
                ok: false,
                message: "a restart of this target is already under way; not starting another \
                          (see protector status)"
                    .into(),
            });
        };
        info!(target = %slot.target.name, event = "restart_requested", first = first.name(), "restart asked for by an operator");
        self.waiters.add(slot.id, reply);
        let _ = reply.send(Reply::Pending(slot.target.name.clone()));
        self.spawn(i, first);
        None
    }

    /// The restart slot `i` runs was asked for by an operator (`protector restart`): a
    /// heartbeat while it waits for a place does not call it off, and the asker hears how it
    /// ended.
    pub(super) fn asked(&self, i: usize) -> bool {
        self.waiters.asked(self.slots[i].id)
    }

    /// The restart slot `i` ran ended; `failure` says why it failed, if it did. Whoever asked
    /// for it is told.
    pub(super) fn restart_ended(&mut self, i: usize, failure: Option<&str>) {
        // The failed start's own last words, as the state file keeps them.
        let said = self.slots[i]
            .last_restart
            .as_ref()
            .and_then(|r| r.commands.iter().rev().find(|c| c.command == "start"))
            .map(|c| c.output.as_str())
            .filter(|o| !o.is_empty())
            .map(|o| format!("; its output:\n{o}"))
            .unwrap_or_default();
        let outcome = match failure {
            None => Ok(()),
            Some(why) => Err(format!("restart failed: the start command {why}{said}")),
        };
        let (id, name) = (self.slots[i].id, self.slots[i].target.name.clone());
        self.waiters.answer(id, &name, outcome);
    }
}

fn ok(slot: &super::slot::Slot, message: String) -> TargetResult {
    TargetResult {
        name: slot.target.name.clone(),
        ok: true,
        message,
    }
}

/// Listens for operators' requests at `path` (the caller holds the instance lock): each goes
/// to the loop through `tx` as [`Msg::Control`].
pub(crate) fn listen(
    path: &std::path::Path,
    tx: mpsc::Sender<Msg>,
) -> std::io::Result<control::server::Listener> {
    control::server::listen(
        path,
        Box::new(move |req, reply| tx.send(Msg::Control { req, reply }).is_ok()),
    )
}
