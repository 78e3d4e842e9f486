//! One target's settings, taken layer by layer (`layers.rs` says the order): each value from
//! the most specific layer that sets it, parsed and checked, each problem with the JSON
//! pointer of the value that caused it.

use std::time::Duration;

use super::shell_syntax;
use super::{EnvLookup, expand_path};
use crate::config::Problem;
use crate::config::duration;
use crate::config::duration::DurationSpec;
use crate::config::layers::Layer;
use crate::config::model::{CHECK_TIMEOUT, CommandLine, Depends, Endpoint, Os, RECHECK, Target};
use crate::config::position::escape;
use crate::config::raw::{CommandSpec, DependsSpec, RawDefaults, RawTarget, Settings};

/// One target's settings as a stack of layers, most specific first.
pub(super) struct Layered<'a> {
    layers: Vec<(Layer, &'a Settings)>,
    /// The target's index in the file.
    i: usize,
    name: &'a str,
    os: Os,
}

/// Where a value was set: its layer (in [`Layered`]'s stack) and key. Its JSON pointer is
/// made only when a problem names it (10,000 targets made 40,000 pointers for nothing).
#[derive(Debug, Clone, Copy)]
struct At {
    layer: usize,
    key: &'static str,
}

impl<'a> Layered<'a> {
    /// Target `i`'s stack for `os`, under `defaults`.
    pub(super) fn new(
        target: &'a RawTarget,
        defaults: Option<&'a RawDefaults>,
        i: usize,
        os: Os,
    ) -> Layered<'a> {
        let layers = crate::config::layers::for_os(os)
            .into_iter()
            .filter_map(|layer| Some((layer, layer.settings(target, defaults, os)?)))
            .collect();
        Layered {
            layers,
            i,
            name: &target.name,
            os,
        }
    }

    /// The JSON pointer of what `at` names (`/targets/3/os/linux/timeout`).
    fn pointer(&self, at: At) -> String {
        let layer = self.layers[at.layer].0.pointer(self.i, self.os);
        format!("{layer}/{}", escape(at.key))
    }

    /// The first layer that sets a value, with where it was set.
    fn pick<T: ?Sized>(
        &self,
        key: &'static str,
        get: impl Fn(&'a Settings) -> Option<&'a T>,
    ) -> Option<(&'a T, At)> {
        self.layers
            .iter()
            .enumerate()
            .find_map(|(layer, (_, s))| get(s).map(|v| (v, At { layer, key })))
    }

    fn required<T: ?Sized>(
        &self,
        key: &'static str,
        get: impl Fn(&'a Settings) -> Option<&'a T>,
        problems: &mut Vec<Problem>,
    ) -> Option<(&'a T, At)> {
        let found = self.pick(key, get);
        if found.is_none() {
            problems.push(Problem::new(
                format!("/targets/{}", self.i),
                format!(
                    "target {:?} has no `{key}` for {} (set it on the target, under `os`, or in `defaults`)",
                    self.name, self.os
                ),
            ));
        }
        found
    }

    fn duration(
        &self,
        key: &'static str,
        get: impl Fn(&'a Settings) -> Option<&'a DurationSpec>,
        problems: &mut Vec<Problem>,
    ) -> Option<Option<Duration>> {
        match self.pick(key, get) {
            None => Some(None),
            Some((spec, at)) => match duration::parse(spec) {
                Ok(d) => Some(Some(d)),
                Err(msg) => {
                    problems.push(Problem::new(self.pointer(at), msg));
                    None
                }
            },
        }
    }

    pub(super) fn resolve(
        &self,
        env: EnvLookup<'_>,
        problems: &mut Vec<Problem>,
    ) -> Option<Target> {
        let before = problems.len();
        let shell = self
            .pick("shell", |s| s.shell.as_ref())
            .is_some_and(|(v, _)| *v);

        let heartbeat = self
            .required("heartbeat", |s| s.heartbeat.as_deref(), problems)
            .and_then(|(text, at)| expand_path(text, || self.pointer(at), self.os, env, problems));
        let pid_file = self
            .pick("pid_file", |s| s.pid_file.as_deref())
            .map(|(text, at)| expand_path(text, || self.pointer(at), self.os, env, problems));
        let service = self.pick("service", |s| s.service.as_deref());
        let timeout = self
            .required("timeout", |s| s.timeout.as_ref(), problems)
            .and_then(|(spec, at)| {
                duration::parse(spec)
                    .map_err(|msg| problems.push(Problem::new(self.pointer(at), msg)))
                    .ok()
            });
        let start = self
            .required("start", |s| s.start.as_ref(), problems)
            .and_then(|(spec, at)| self.command(spec, || self.pointer(at), shell, problems));
        let stop = self.optional_command("stop", |s| s.stop.as_ref(), shell, problems);
        let diagnose = self.optional_command("diagnose", |s| s.diagnose.as_ref(), shell, problems);
        let diagnose_timeout = self.duration(
            "diagnose_timeout",
            |s| s.diagnose_timeout.as_ref(),
            problems,
        );
        let command_timeout =
            self.duration("command_timeout", |s| s.command_timeout.as_ref(), problems);
        let restart_grace = self.duration("restart_grace", |s| s.restart_grace.as_ref(), problems);
        let startup_grace = self.duration("startup_grace", |s| s.startup_grace.as_ref(), problems);
        let backoff_after = self.pick("backoff", |s| {
            s.backoff.as_ref().and_then(|b| b.after.as_ref())
        });
        let backoff_max = self.duration(
            "backoff",
            |s| s.backoff.as_ref().and_then(|b| b.max.as_ref()),
            problems,
        );
        let max_restarts = self.pick("max_restarts", |s| s.max_restarts.as_ref());
        let notify = self.optional_command("notify", |s| s.notify.as_ref(), shell, problems);
        let skip_if = self.optional_command("skip_if", |s| s.skip_if.as_ref(), shell, problems);
        let skip_delay = self.duration("skip_delay", |s| s.skip_delay.as_ref(), problems);
        let enabled = self.pick("enabled", |s| s.enabled.as_ref());
        let allow_missing = self.pick("allow_missing_programs", |s| {
            s.allow_missing_programs.as_ref()
        });
        let observe_only = self.pick("observe_only", |s| s.observe_only.as_ref());
        let depends_on = self.depends(shell, problems);
        let restart_splay = self.duration("restart_splay", |s| s.restart_splay.as_ref(), problems);

        if problems.len() > before {
            return None;
        }
        let mut target = Target::new(self.name, heartbeat?, timeout?, start?);
        let t = target.policy_mut();
        t.stop = stop.flatten();
        t.diagnose = diagnose.flatten();
        t.diagnose_timeout = diagnose_timeout?.unwrap_or(t.diagnose_timeout);
        t.command_timeout = command_timeout?.unwrap_or(t.command_timeout);
        t.restart_grace = restart_grace?.unwrap_or(t.restart_grace);
        t.startup_grace = startup_grace?.unwrap_or(t.startup_grace);
        if let Some((after, _)) = backoff_after {
            t.backoff.after = *after;
        }
        t.backoff.max = backoff_max?.unwrap_or(t.backoff.max);
        t.max_restarts = max_restarts.map(|(v, _)| *v);
        t.enabled = enabled.is_none_or(|(v, _)| *v);
        t.allow_missing_programs = allow_missing.is_some_and(|(v, _)| *v);
        t.observe_only = observe_only.is_some_and(|(v, _)| *v);
        t.notify = notify.flatten();
        t.skip_if = skip_if.flatten();
        t.skip_delay = skip_delay?.unwrap_or(t.skip_delay);
        t.depends_on = depends_on.map(Box::new);
        t.restart_splay = restart_splay?.unwrap_or(t.restart_splay);
        t.pid_file = pid_file.flatten();
        t.service = service.map(|(name, _)| name.to_string());
        Some(target)
    }

    /// `depends_on`, each of its parts taken from the most specific layer that sets it (as
    /// `backoff`'s); `None` when no endpoint and no command is left.
    fn depends(&self, shell: bool, problems: &mut Vec<Problem>) -> Option<Depends> {
        let part = |key: &str, at: At| format!("{}/{key}", self.pointer(at));
        let tcp = self
            .pick("depends_on", |s| {
                s.depends_on.as_ref().and_then(|d| d.tcp.as_ref())
            })
            .map(|(list, at)| {
                list.iter()
                    .enumerate()
                    .filter_map(|(i, text)| {
                        Endpoint::parse(text)
                            .map_err(|msg| {
                                problems.push(Problem::new(format!("{}/{i}", part("tcp", at)), msg))
                            })
                            .ok()
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let command = self
            .pick("depends_on", |s| {
                s.depends_on.as_ref().and_then(|d| d.command.as_ref())
            })
            .and_then(|(spec, at)| self.command(spec, || part("command", at), shell, problems));
        let mut timing = |key: &str, get: fn(&DependsSpec) -> Option<&DurationSpec>| {
            let (spec, at) = self.pick("depends_on", |s| s.depends_on.as_ref().and_then(get))?;
            duration::parse(spec)
                .map_err(|msg| problems.push(Problem::new(part(key, at), msg)))
                .ok()
        };
        let check_timeout = timing("check_timeout", |d| d.check_timeout.as_ref());
        let recheck = timing("recheck", |d| d.recheck.as_ref());
        (!tcp.is_empty() || command.is_some()).then(|| Depends {
            tcp,
            command,
            check_timeout: check_timeout.unwrap_or(CHECK_TIMEOUT),
            recheck: recheck.unwrap_or(RECHECK),
        })
    }

    /// An optional command: `None` when no layer sets it, `Some(None)` when the one that does
    /// holds a problem (said in `problems`).
    fn optional_command(
        &self,
        key: &'static str,
        get: impl Fn(&'a Settings) -> Option<&'a CommandSpec>,
        shell: bool,
        problems: &mut Vec<Problem>,
    ) -> Option<Option<CommandLine>> {
        self.pick(key, get)
            .map(|(spec, at)| self.command(spec, || self.pointer(at), shell, problems))
    }

    fn command(
        &self,
        spec: &CommandSpec,
        ptr: impl FnOnce() -> String,
        shell: bool,
        problems: &mut Vec<Problem>,
    ) -> Option<CommandLine> {
        let holds_nul = match spec {
            CommandSpec::Line(line) => line.contains('\0'),
            CommandSpec::Argv(argv) => argv.iter().any(|word| word.contains('\0')),
        };
        let result = match (spec, shell) {
            _ if holds_nul => {
                Err("holds a NUL character (\\0), which no program can be given".into())
            }
            (CommandSpec::Line(line), true) if line.trim().is_empty() => {
                Err("command is empty".into())
            }
            (CommandSpec::Line(line), true) => Ok(CommandLine::Shell {
                line: line.clone(),
                os: self.os,
            }),
            (CommandSpec::Line(line), false) => match shell_words::split(line) {
                Ok(argv) if argv.is_empty() => Err("command is empty".into()),
                Ok(argv) => match shell_syntax(line) {
                    Some(what) => Err(format!(
                        "{what} is shell syntax, but this command runs without a shell (as argv \
                         {}): set `shell: true`, or write the command as a list",
                        crate::text::clean(&format!("{argv:?}"))
                    )),
                    None => Ok(CommandLine::Exec(argv)),
                },
                Err(e) => Err(format!("cannot split command {line:?} into words: {e}")),
            },
            // A list is an argv: executed as it is, with or without `shell`.
            (CommandSpec::Argv(argv), _) if argv.first().is_none_or(|p| p.is_empty()) => {
                Err("the program (first item) is empty".into())
            }
            (CommandSpec::Argv(argv), _) => Ok(CommandLine::Exec(argv.clone())),
        };
        result
            .map_err(|msg| problems.push(Problem::new(ptr(), msg)))
            .ok()
    }
}
