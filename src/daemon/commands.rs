//! Starting commands and hearing back from them. Stop, start and skip_if commands, and notify
//! commands, each wait in a [`Bounded`] queue for one of `max_parallel_commands` places, in
//! order; [`Daemon::launch`] is the one way a command is started and reports back on the
//! loop's channel.

use std::time::Duration;

use tracing::{debug, error, info, warn};

use super::effects::{Job, Report};
use super::outcomes::log_outcome;
use super::retries::Retries;
use super::slot::Slot;
use super::{Daemon, Msg, secs};
use crate::command::Outcome;
use crate::fsutil::epoch_secs;
use crate::schedule::{Cmd, Next, Phase};
use crate::state::{RestartRecord, RunningCommand};

impl Daemon {
    /// Starts `job` off the loop's thread; `msg` turns its outcome into the message that
    /// reports it back.
    pub(super) fn launch(&self, job: Job, msg: impl FnOnce(Outcome) -> Msg + Send + 'static) {
        let tx = self.tx.clone();
        let report: Report = Box::new(move |outcome| {
            let _ = tx.send(msg(outcome));
        });
        self.fx.runner.run(job, report);
    }

    /// Slot `i` decided on `cmd`: start it, or queue it while max_parallel_commands run.
    pub(super) fn spawn(&mut self, i: usize, cmd: Cmd) {
        let slot = &self.slots[i];
        match self.commands.offer((slot.id, cmd)) {
            Some(_) => self.start_command(i, cmd),
            None => debug!(
                target = %slot.target.name,
                event = "command_waiting",
                command = cmd.name(),
                running = self.commands.running(),
                "{} command waits: max_parallel_commands are running",
                cmd.name()
            ),
        }
    }

    /// Starts queued commands while there is room. A restart that waited is called off if
    /// the heartbeat came back meanwhile.
    pub(super) fn start_queued(&mut self) {
        while let Some((id, cmd)) = self.commands.next() {
            match self.index.get(&id).copied() {
                Some(i) if self.called_off(i, cmd) => {
                    self.commands.release();
                }
                Some(i) => self.start_command(i, cmd),
                None => {
                    // Removed by a reload while it waited: nothing will report back.
                    self.orphans.remove(&id);
                    self.commands.release();
                }
            }
        }
    }

    /// A command that could not run for lack of resources (a process, thread or file
    /// descriptor limit) is tried again in a few seconds, with jitter so that a storm does
    /// not come back at once. It is no fault of the target: nothing is counted.
    fn retry_soon(&mut self, i: usize, cmd: Cmd, o: &Outcome) {
        let now = self.now();
        let slot = &mut self.slots[i];
        slot.short_tries = slot.short_tries.saturating_add(1);
        let nanos = now
            .wall
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64);
        let seed = slot.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ nanos;
        let wait = Retries::wait(slot.short_tries, seed);
        warn!(
            target = %slot.target.name,
            event = "command_retry",
            command = cmd.name(),
            reason = o.status.as_ref().err().map_or("", |r| r.as_str()),
            retry_in_secs = secs(wait),
            "{} command could not run for lack of resources; trying again soon",
            cmd.name()
        );
        self.retries
            .push(crate::schedule::later(now.mono, wait), slot.id, cmd);
    }

    /// Tries again the commands whose wait is over (a restart still only if the heartbeat
    /// did not come back meanwhile).
    pub(super) fn run_retries(&mut self) {
        let now = self.now().mono;
        for (id, cmd) in self.retries.due(now) {
            if let Some(&i) = self.index.get(&id)
                && self.slots[i].state.phase == Phase::Running(cmd)
                && !self.called_off(i, cmd)
            {
                self.spawn(i, cmd);
            }
        }
    }

    /// Drops the queues on shutdown: those commands never start, except the start of a
    /// service whose stop command already ran.
    pub(super) fn drop_queued(&mut self) {
        let now = self.now().mono;
        let retries = self.retries.take_all();
        for (id, cmd) in self.commands.drain_waiting().into_iter().chain(retries) {
            if let Some(&i) = self.index.get(&id) {
                if cmd == Cmd::Start && !self.begins_restart(i, cmd) {
                    // Its stop command ran: the service is down until this start runs.
                    info!(target = %self.slots[i].target.name, event = "start_before_exit", "shutting down: starting the service that was stopped before exiting (a second signal exits at once)");
                    self.spawn(i, cmd);
                    continue;
                }
                info!(target = %self.slots[i].target.name, event = "command_dropped", command = cmd.name(), "shutting down: not running the {} command", cmd.name());
                self.slots[i].state.abandon(now);
            }
        }
        // A restart still in its random wait or its dependency check never begins.
        for slot in &mut self.slots {
            if matches!(slot.state.phase, Phase::Delaying | Phase::Checking) {
                info!(target = %slot.target.name, event = "restart_called_off", reason = "shutting down", "shutting down: not beginning the restart");
                slot.state.abandon(now);
            }
        }
        let dropped = self.notifies.drain_waiting().len();
        if dropped > 0 {
            warn!(
                event = "notify_dropped",
                dropped, "shutting down: not running notify commands still waiting for a place"
            );
        }
    }

    /// Is `cmd` the first command of a restart (asking skip_if included)?
    fn begins_restart(&self, i: usize, cmd: Cmd) -> bool {
        match cmd {
            Cmd::SkipIf | Cmd::Stop => true,
            Cmd::Start => !self.slots[i].rules.has_stop,
        }
    }

    /// A restart that waited (for a place, or after a shortage of resources) before its
    /// first command is called off when the target was paused or its heartbeat came back
    /// meanwhile; one an operator asked for never is.
    fn called_off(&mut self, i: usize, cmd: Cmd) -> bool {
        if !self.begins_restart(i, cmd) || self.asked(i) {
            return false;
        }
        let slot = &mut self.slots[i];
        if slot.state.paused_until.is_some() {
            slot.state.call_off_paused();
            info!(target = %slot.target.name, event = "restart_called_off", reason = "paused", "paused while the restart waited; not restarting");
            self.agenda.push(slot.state.deadline, i);
            self.mark_dirty(true);
            return true;
        }
        !self.still_stale(i)
    }

    /// A fresh look before a restart that waited for a place: false (and the target is
    /// watched as usual) when the heartbeat came back meanwhile.
    fn still_stale(&mut self, i: usize) -> bool {
        let obs = self.look_once(i);
        let now = self.now();
        let slot = &mut self.slots[i];
        if slot.state.still_stale(&slot.rules, &obs, now) {
            return true;
        }
        info!(target = %slot.target.name, event = "restart_called_off", "heartbeat is back while the restart waited for a place; not restarting");
        self.agenda.push(slot.state.deadline, i);
        self.mark_dirty(true);
        false
    }

    /// Runs `cmd` of slot `i`, which holds a place.
    fn start_command(&mut self, i: usize, cmd: Cmd) {
        // A restart begins with stop, or with start when there is no stop (tried again after
        // a shortage of resources, it is the same restart).
        let begins = cmd != Cmd::SkipIf && self.begins_restart(i, cmd);
        let mut incident = None;
        if begins && self.slots[i].short_tries == 0 {
            self.slots[i].last_restart = Some(Box::new(RestartRecord {
                at: epoch_secs(self.now().wall),
                commands: Vec::new(),
                incident: None,
            }));
            // With an incident to take, the restart's notify waits for it (and names it).
            incident = self.incident_job(i);
            if incident.is_none() {
                let event = self.slots[i].restart_event();
                self.notify(i, event, self.slots[i].state.consecutive);
            }
        }
        let slot = &self.slots[i];
        // An observe-only target's service is never touched: its incident is all there is.
        let observe = slot.target.observe_only && cmd != Cmd::SkipIf;
        let line = match cmd {
            Cmd::SkipIf => slot.target.skip_if.clone(),
            Cmd::Stop => slot.target.stop.clone(),
            Cmd::Start => Some(slot.target.start.clone()),
        };
        // The schedule only runs commands the target has; but a reload may have taken one
        // away while it waited for a place: then that step is done (skip_if: "do not skip").
        let Some(line) = line else {
            self.commands.release();
            return self.finish(i, cmd, cmd != Cmd::SkipIf, None);
        };
        let id = slot.id;
        if observe && incident.is_none() {
            let _ = self.tx.send(Msg::Done {
                id,
                cmd,
                outcome: None,
            });
            return;
        }
        if self.opts.dry_run {
            info!(target = %slot.target.name, event = "dry_run_command", command = cmd.name(), line = %line, "dry run: would run {} command", cmd.name());
            let _ = self.tx.send(Msg::Done {
                id,
                cmd,
                outcome: None,
            });
            return;
        }
        if !observe {
            info!(target = %slot.target.name, event = "command_started", command = cmd.name(), line = %line, "running {} command", cmd.name());
        }
        let tx = self.tx.clone();
        let job = Job {
            target: slot.target.name.clone(),
            what: cmd.name(),
            line,
            env: self.command_env(slot),
            timeout: slot.target.command_timeout,
            after: self.leftover_of(i),
            spawned: Some(Box::new(move |running| {
                let _ = tx.send(Msg::Spawned { id, cmd, running });
            })),
            record_beside: self.books.files.state_file.clone(),
            incident,
            incident_only: observe,
        };
        self.launch(job, move |o| Msg::Done {
            id,
            cmd,
            outcome: (!observe).then_some(o),
        });
    }

    /// The command an earlier protector left running for slot `i` (the next command waits
    /// for it), with how much of its command_timeout is left. It stays on record until that
    /// command runs, so a crash while waiting for it does not forget it.
    fn leftover_of(&self, i: usize) -> Option<(RunningCommand, Duration)> {
        let now = epoch_secs(self.now().wall);
        let slot = &self.slots[i];
        let left = slot.leftover.as_deref()?.clone();
        let timeout = slot.target.command_timeout.as_secs_f64();
        let wait = (left.started_at + timeout - now).clamp(0.0, timeout);
        Some((left, Duration::from_secs_f64(wait)))
    }

    /// A command of slot `id` runs as process group `running`: the state file records it.
    pub(super) fn on_spawned(&mut self, id: u64, cmd: Cmd, running: RunningCommand) {
        if let Some(&i) = self.index.get(&id)
            && self.slots[i].state.phase == Phase::Running(cmd)
        {
            // What an earlier protector left is over by now (waited for or killed).
            self.slots[i].leftover = None;
            self.slots[i].running = Some(Box::new(running));
            self.mark_dirty(true);
        }
    }

    pub(super) fn on_done(&mut self, id: u64, cmd: Cmd, outcome: Option<Outcome>) {
        self.commands.release();
        let Some(&i) = self.index.get(&id) else {
            // A target removed by a reload while this command ran.
            let (name, timeout) = self.orphans.remove(&id).unwrap_or_default();
            if let Some(o) = &outcome {
                log_outcome(&name, cmd.name(), timeout, o);
            }
            self.start_queued();
            return;
        };
        self.slots[i].running = None;
        self.slots[i].leftover = None;
        if let Some(o) = outcome.as_ref().filter(|o| o.transient) {
            self.retry_soon(i, cmd, o);
            self.start_queued();
            return;
        }
        self.slots[i].short_tries = 0;
        let slot = &mut self.slots[i];
        let (success, failure) = match &outcome {
            Some(o) => {
                log_outcome(
                    &slot.target.name,
                    cmd.name(),
                    slot.target.command_timeout,
                    o,
                );
                slot.record(cmd, o);
                (o.success(), o.failure())
            }
            // A dry run has nothing to say; for skip_if that means "do not skip".
            None => (cmd != Cmd::SkipIf, None),
        };
        if self
            .contained(i, "moving on after a command", |d| {
                d.finish(i, cmd, success, failure)
            })
            .is_none()
        {
            self.recover(i);
        }
        self.start_queued();
    }

    /// Moves slot `i` on after its `cmd` finished; `failure` says why it did not succeed.
    fn finish(&mut self, i: usize, cmd: Cmd, success: bool, failure: Option<String>) {
        let now = self.now().mono;
        let slot = &mut self.slots[i];
        let next = slot.state.on_command_done(&slot.rules, cmd, success, now);
        let name = slot.target.name.clone();
        self.mark_dirty(true);
        match next {
            // The service is stopped: leaving it so would leave it down until protector is
            // back. Its start still runs (bounded by command_timeout; a second signal exits
            // at once).
            Next::Run(Cmd::Start) if self.stopping => {
                info!(target = %name, event = "start_before_exit", "shutting down: starting the service that was stopped before exiting (a second signal exits at once)");
                self.spawn(i, Cmd::Start);
            }
            Next::Run(next) if self.stopping => {
                info!(target = %name, event = "command_dropped", command = next.name(), "shutting down: not running the {} command", next.name());
                self.slots[i].state.abandon(now);
            }
            Next::Run(next) => self.spawn(i, next),
            Next::Judge { wait } => {
                let failure = failure.filter(|_| cmd == Cmd::Start);
                self.restart_finished(i, wait, failure);
            }
            Next::Recheck => {
                info!(target = %name, event = "skip_if_refused", "skip_if says not to skip; looking at the heartbeat once more before restarting");
                self.agenda.push(self.slots[i].state.deadline, i);
            }
            Next::Postponed { wait } => {
                info!(target = %name, event = "restart_postponed", next_check_in_secs = secs(wait), "restart postponed: skip_if exited 0");
                self.agenda.push(self.slots[i].state.deadline, i);
            }
        }
    }

    /// Slot `i`'s restart ended (`failure`: why its start failed); judged again after `wait`.
    fn restart_finished(&mut self, i: usize, wait: Duration, failure: Option<String>) {
        self.restart_ended(i, failure.as_deref());
        let slot = &mut self.slots[i];
        let name = &slot.target.name;
        let incident = slot.last_restart.as_ref().and_then(|r| r.incident.as_ref());
        let (incident, summary) = (
            incident.map(|n| n.id.as_str()),
            incident.map(|n| n.summary.as_str()),
        );
        let consecutive_restarts = slot.state.consecutive;
        if let Some(reason) = failure {
            slot.failed_restarts = slot.failed_restarts.saturating_add(1);
            error!(
                target = %name,
                event = "restart_failed",
                reason = %reason,
                incident,
                incident_summary = summary,
                next_check_in_secs = secs(wait),
                consecutive_restarts,
                "restart failed: the start command {reason}"
            );
        } else {
            let (event, said) = if slot.target.observe_only {
                (
                    "observed",
                    "observe only: the service was left as it is (no stop, no start)",
                )
            } else {
                ("restart_done", "restart done")
            };
            info!(
                target = %name,
                event,
                incident,
                incident_summary = summary,
                next_check_in_secs = secs(wait),
                consecutive_restarts,
                "{said}"
            );
        }
        self.agenda.push(slot.state.deadline, i);
    }

    /// What every command of a target finds in its environment.
    pub(super) fn command_env(&self, slot: &Slot) -> Vec<(&'static str, String)> {
        vec![
            ("PROTECTOR_TARGET", slot.target.name.clone()),
            (
                "PROTECTOR_HEARTBEAT",
                slot.target.heartbeat.display().to_string(),
            ),
            (
                "PROTECTOR_AGE_SECS",
                slot.state.age(self.now().mono).as_secs().to_string(),
            ),
        ]
    }
}
