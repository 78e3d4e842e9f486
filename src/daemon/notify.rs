//! Notify commands: run when a target is restarted, given up or has its heartbeat back, never
//! waited for, within a bound of their own (as many at once as `max_parallel_commands`, in
//! a queue of their own, so a storm's notifications neither flood the machine nor take
//! places from restarts).

use std::time::Duration;

use tracing::{debug, info};

use super::effects::Job;
use super::outcomes::log_outcome;
use super::{Daemon, Msg};
use crate::command::Outcome;

impl Daemon {
    /// Runs the target's notify command, if any, without waiting for it.
    pub(super) fn notify(&mut self, i: usize, event: &'static str, restarts: u32) {
        self.notify_with(i, event, restarts, Vec::new());
    }

    /// [`Daemon::notify`], with `extra` in the command's environment.
    pub(super) fn notify_with(
        &mut self,
        i: usize,
        event: &'static str,
        restarts: u32,
        extra: Vec<(&'static str, String)>,
    ) {
        let slot = &self.slots[i];
        let Some(line) = slot.target.notify.clone() else {
            return;
        };
        if self.opts.dry_run {
            info!(target = %slot.target.name, event = "dry_run_command", command = "notify", notify_event = event, line = %line, "dry run: would run notify command");
            return;
        }
        let mut env = self.command_env(slot);
        env.push(("PROTECTOR_EVENT", event.to_string()));
        env.push(("PROTECTOR_RESTARTS", restarts.to_string()));
        env.extend(extra);
        let job = Job {
            target: slot.target.name.clone(),
            what: "notify",
            line,
            env,
            timeout: slot.target.command_timeout,
            after: None,
            spawned: None,
            record_beside: None,
            incident: None,
            incident_only: false,
        };
        match self.notifies.offer(job) {
            Some(job) => self.run_notify(job),
            None => {
                debug!(target = %slot.target.name, event = "command_waiting", command = "notify", notify_event = event, "notify command waits: max_parallel_commands notify commands are running");
            }
        }
    }

    pub(super) fn start_queued_notifies(&mut self) {
        while let Some(job) = self.notifies.next() {
            self.run_notify(job);
        }
    }

    fn run_notify(&self, job: Job) {
        let (target, timeout) = (job.target.clone(), job.timeout);
        self.launch(job, move |outcome| Msg::NotifyDone {
            target,
            timeout,
            outcome,
        });
    }

    /// A notify command of `target` (run with `timeout`) ended.
    pub(super) fn on_notify_done(&mut self, target: &str, timeout: Duration, o: &Outcome) {
        self.notifies.release();
        if o.success() {
            debug!(target = %target, event = "command_finished", command = "notify", duration_ms = o.duration.as_millis() as u64, "notify command finished");
        } else {
            log_outcome(target, "notify", timeout, o);
        }
        self.start_queued_notifies();
    }
}
