//! Reloading the config: on SIGHUP or an operator's request, the file is read off the loop's
//! thread, then installed by the loop (`install.rs`, which follows the pure [`plan`] here of
//! what happens to each target: unchanged, changed, added, removed).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;

use tracing::{error, info, warn};

use super::effects::LoadResult;
use super::{Daemon, Msg};
use crate::config::Target;
use crate::control::Reply;
use crate::systemd;

/// What happens to a target; `was`: its index among the targets watched before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    /// Same settings: keeps its state.
    Unchanged { was: usize },
    /// New settings for a known name.
    Changed { was: usize },
    /// A name not watched before.
    Added,
}

impl Change {
    /// The target's index among those watched before, unless it is new.
    pub fn was(self) -> Option<usize> {
        match self {
            Change::Unchanged { was } | Change::Changed { was } => Some(was),
            Change::Added => None,
        }
    }
}

/// What installing a config does.
#[derive(Debug)]
pub(super) struct Plan {
    /// Every enabled target of the new config, in its order, with what happens to it.
    pub targets: Vec<(Target, Change)>,
    /// Watched before, not enabled now.
    pub removed: Vec<String>,
    pub disabled: Vec<Target>,
}

/// Compares the targets watched now (`old`) with a new config's.
pub(super) fn plan<'a>(old: impl IntoIterator<Item = &'a Target>, new: Vec<Target>) -> Plan {
    let old: HashMap<&str, (usize, &Target)> = (old.into_iter().enumerate())
        .map(|(i, t)| (t.name.as_str(), (i, t)))
        .collect();
    // One pass, the list sized once: at 100,000 targets every copy of it is tens of MB.
    let mut targets = Vec::with_capacity(new.len());
    let mut disabled = Vec::new();
    for t in new {
        if !t.enabled {
            disabled.push(t);
            continue;
        }
        let change = match old.get(t.name.as_str()) {
            Some(&(was, o)) if *o == t => Change::Unchanged { was },
            Some(&(was, _)) => Change::Changed { was },
            None => Change::Added,
        };
        targets.push((t, change));
    }
    let removed = {
        let kept: std::collections::HashSet<&str> =
            targets.iter().map(|(t, _)| t.name.as_str()).collect();
        let mut r: Vec<String> = old
            .keys()
            .filter(|n| !kept.contains(**n))
            .map(|n| n.to_string())
            .collect();
        r.sort();
        r
    };
    Plan {
        targets,
        removed,
        disabled,
    }
}

/// A reload in progress: the config file is read off the loop's thread, the old targets
/// watched meanwhile.
pub(super) struct Reloading {
    /// Operators waiting for its outcome.
    waiters: Vec<mpsc::Sender<Reply>>,
    /// Asked again meanwhile (the file may have changed after it was read): it is read again
    /// once this load is done, for these operators.
    again: Option<Vec<mpsc::Sender<Reply>>>,
}

impl Daemon {
    /// SIGHUP (or `protector reload`, whose answer goes to `reply`): re-reads the config off
    /// the loop's thread; [`Daemon::on_loaded`] applies a valid one, or logs every problem of
    /// an invalid one and keeps the old. Asked while a load is in progress: read once more
    /// after it.
    pub(super) fn reload(&mut self, reply: Option<mpsc::Sender<Reply>>) {
        let Some(path) = self.opts.config_path.clone() else {
            warn!(
                event = "reload_impossible",
                "reload requested, but protector was started with positional arguments: nothing to reload"
            );
            if let Some(reply) = reply {
                let _ = reply.send(Reply::Message {
                    ok: false,
                    message: "protector was started with positional arguments: there is no \
                              config to reload"
                        .into(),
                });
            }
            return;
        };
        if let Some(reloading) = &mut self.reloading {
            reloading.again.get_or_insert_with(Vec::new).extend(reply);
            info!(
                event = "reload_queued",
                "reload requested while the config is being read: it is read again after that"
            );
            return;
        }
        self.begin_load(path, reply.into_iter().collect());
    }

    fn begin_load(&mut self, path: PathBuf, waiters: Vec<mpsc::Sender<Reply>>) {
        systemd::send(systemd::Note::Reloading);
        info!(event = "reload_started", config = %path.display(), "reloading the config");
        self.reloading = Some(Reloading {
            waiters,
            again: None,
        });
        let tx = self.tx.clone();
        self.fx.loader.load(
            path,
            Box::new(move |result| {
                let _ = tx.send(Msg::Loaded(Box::new(result)));
            }),
        );
    }

    /// The config file was read: a valid config is applied, an invalid one logged (every
    /// problem) and the old one kept; the operators who asked hear which.
    pub(super) fn on_loaded(&mut self, result: LoadResult) {
        // None: abandoned at shutdown.
        let (Some(Reloading { waiters, again }), Some(path)) =
            (self.reloading.take(), self.opts.config_path.clone())
        else {
            return;
        };
        let (ok, message) = match result {
            Ok((config, text)) => {
                let summary = self.apply(config, false);
                self.accepted(&path, &text);
                self.start_queued();
                self.start_queued_notifies();
                (true, summary)
            }
            Err(e) => {
                for line in e.lines() {
                    error!(event = "config_problem", "{line}");
                }
                error!(
                    event = "reload_failed",
                    problems = e.problems.len(),
                    "reload failed; still running the previous config"
                );
                let message = format!(
                    "{}\nreload refused; still running the previous config",
                    e.to_string().trim_end()
                );
                (false, message)
            }
        };
        systemd::send(systemd::Note::Ready);
        if !waiters.is_empty() {
            // Written first: a `protector status` right after the answer shows the reload.
            self.flush_and_wait(super::books::Part::State);
        }
        for waiter in waiters {
            let message = message.clone();
            let _ = waiter.send(Reply::Message { ok, message });
        }
        if let Some(next) = again {
            self.begin_load(path, next);
        }
    }

    /// Shutting down: a reload in progress is not applied; whoever waits for it hears so.
    pub(super) fn abandon_reload(&mut self) {
        let Some(Reloading { waiters, again }) = self.reloading.take() else {
            return;
        };
        info!(
            event = "reload_abandoned",
            "shutting down: the config being read is not applied"
        );
        for waiter in waiters.into_iter().chain(again.into_iter().flatten()) {
            let _ = waiter.send(Reply::Error(
                "protector is shutting down; the reload was not applied".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CommandLine, Target};
    use std::time::Duration;

    fn t(name: &str, timeout: u64) -> Target {
        Target::new(
            name,
            format!("/{name}.beat").into(),
            Duration::from_secs(timeout),
            CommandLine::Exec(vec!["true".into()]),
        )
    }

    #[test]
    fn plan_sorts_targets_into_unchanged_changed_added_removed_and_disabled() {
        let old = [t("same", 5), t("changed", 5), t("gone", 5), t("now-off", 5)];
        let mut off = t("now-off", 5);
        off.policy_mut().enabled = false;
        let mut also_off = t("never-on", 5);
        also_off.policy_mut().enabled = false;
        let new = vec![t("added", 5), t("changed", 9), t("same", 5), off, also_off];
        let p = plan(&old, new);
        let got: Vec<(&str, Change)> = p
            .targets
            .iter()
            .map(|(t, c)| (t.name.as_str(), *c))
            .collect();
        assert_eq!(
            got,
            [
                ("added", Change::Added),
                ("changed", Change::Changed { was: 1 }),
                ("same", Change::Unchanged { was: 0 })
            ],
            "in the new config's order, each with its old index"
        );
        assert_eq!(p.removed, ["gone", "now-off"]);
        let disabled: Vec<&str> = p.disabled.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(disabled, ["now-off", "never-on"]);
    }

    #[test]
    fn any_setting_counts_as_a_change() {
        let old = [t("a", 5)];
        let mut a = t("a", 5);
        a.policy_mut().command_timeout = Duration::from_secs(1);
        assert_eq!(plan(&old, vec![a]).targets[0].1, Change::Changed { was: 0 });
        let same = plan(&old, vec![t("a", 5)]);
        assert_eq!(same.targets[0].1, Change::Unchanged { was: 0 });
        assert!(plan(&old, vec![]).removed == ["a"]);
    }
}
