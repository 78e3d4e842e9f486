//! From the raw document to the model for one OS: layering of overrides, expansion of paths,
//! splitting of commands, parsing of durations, and the checks a schema cannot express
//! (settings missing after layering, unparsable commands, unset variables; names used twice
//! are found before, on the document as written: `partial.rs`).
//! Every problem is collected, each with the JSON pointer of the value that caused it.

mod layered;
mod shell;

use rayon::prelude::*;
use serde::Deserialize;
use std::path::{Path, PathBuf};

use super::Problem;
use super::expand::expand;
use super::model::{CommandLine, Config, DEFAULT_MAX_PARALLEL_COMMANDS, Files, Os, Policy, Target};
use super::raw::{RawConfig, RawDefaults, RawTarget};
use crate::intern::Interner;
use layered::Layered;
pub use shell::shell_syntax;

/// Looks up an environment variable. `None` as the whole lookup means "do not expand":
/// used when checking a config for another OS, whose environment is not this one.
pub type EnvLookup<'a> = Option<&'a (dyn Fn(&str) -> Option<String> + Sync)>;

/// Where a config's targets are read from.
pub enum Targets<'a> {
    /// `raw.targets`, deserialized already.
    Raw,
    /// Each from its part of the validated document, deserialized as it is resolved and let
    /// go then: the raw settings of every target never exist at once (the load's peak).
    Document(&'a [serde_json::Value]),
    /// Each from its JSON text, validated already (config/stream.rs).
    Text(&'a [Box<str>]),
}

/// The model of `raw` for `os`, paths left as written.
pub fn resolve(raw: &RawConfig, os: Os, env: EnvLookup<'_>) -> Result<Config, Vec<Problem>> {
    resolve_from(raw, Targets::Raw, os, env, None)
}

/// The model of `raw` (its targets read from `targets`) for `os`. With `anchor` (the config
/// file's directory), relative paths are made relative to it: see [`anchor_target`]. Targets
/// whose policies are the same share one copy of it.
pub fn resolve_from(
    raw: &RawConfig,
    targets: Targets<'_>,
    os: Os,
    env: EnvLookup<'_>,
    anchor: Option<&Path>,
) -> Result<Config, Vec<Problem>> {
    let resolver = Resolver::new(raw.defaults.clone(), os, env, anchor);
    // Each target resolves on its own, results and problems kept in the file's order.
    let resolved: Vec<Resolved> = match targets {
        Targets::Raw => map_targets(raw.targets.as_deref().unwrap_or_default(), |i, t| {
            resolver.one(i, t)
        }),
        Targets::Document(items) => map_targets(items, |i, item| {
            resolver.deserialized(i, RawTarget::deserialize(item))
        }),
        Targets::Text(items) => map_targets(items, |i, item| resolver.text(i, item)),
    };
    assemble(raw, resolved, os, env, anchor)
}

/// A target resolved (`None` when it could not be), and the problems found in it.
pub type Resolved = (Option<Target>, Vec<Problem>);

/// Resolves the targets of a config, one at a time, from any thread: with the config's
/// `defaults` for `os`; see [`resolve_from`].
pub struct Resolver<'a> {
    defaults: Option<RawDefaults>,
    os: Os,
    env: EnvLookup<'a>,
    anchor: Option<&'a Path>,
    policies: Interner<Policy>,
}

impl<'a> Resolver<'a> {
    pub fn new(
        defaults: Option<RawDefaults>,
        os: Os,
        env: EnvLookup<'a>,
        anchor: Option<&'a Path>,
    ) -> Self {
        Resolver {
            defaults,
            os,
            env,
            anchor,
            policies: Interner::new(),
        }
    }

    /// The `i`th target.
    pub fn one(&self, i: usize, target: &RawTarget) -> Resolved {
        let mut found = Vec::new();
        let t = Layered::new(target, self.defaults.as_ref(), i, self.os)
            .resolve(self.env, &mut found)
            .map(|mut t| {
                if let Some(dir) = self.anchor {
                    anchor_target(&mut t, dir);
                }
                t.share_policy(&self.policies);
                t
            });
        (t, found)
    }

    /// The `i`th target from its JSON text, validated already (config/stream.rs).
    pub fn text(&self, i: usize, text: &str) -> Resolved {
        self.deserialized(i, serde_json::from_str::<RawTarget>(text))
    }

    /// The `i`th target once deserialized, or why it could not be.
    fn deserialized(&self, i: usize, target: Result<RawTarget, serde_json::Error>) -> Resolved {
        match target {
            Ok(target) => self.one(i, &target),
            Err(e) => (
                None,
                vec![Problem::new(format!("/targets/{i}"), e.to_string())],
            ),
        }
    }
}

/// The config of `raw` whose targets are `resolved`, in the file's order: its files, and
/// every problem found.
pub fn assemble(
    raw: &RawConfig,
    resolved: Vec<Resolved>,
    os: Os,
    env: EnvLookup<'_>,
    anchor: Option<&Path>,
) -> Result<Config, Vec<Problem>> {
    // Names used twice are found before (partial.rs), on the document as written.
    let mut problems = Vec::new();
    let mut targets = Vec::with_capacity(resolved.len());
    for (t, found) in resolved {
        problems.extend(found);
        targets.extend(t);
    }

    let mut files = Files::default();
    for (key, raw_path, slot) in [
        ("state_file", &raw.state_file, &mut files.state_file),
        ("metrics_file", &raw.metrics_file, &mut files.metrics_file),
        ("lock_file", &raw.lock_file, &mut files.lock_file),
    ] {
        if let Some(text) = raw_path {
            *slot = expand_path(text, || format!("/{key}"), os, env, &mut problems);
        }
        if let (Some(path), Some(dir)) = (slot, anchor) {
            anchor_path(path, dir);
        }
    }

    if problems.is_empty() {
        Ok(Config {
            os,
            targets,
            files,
            max_parallel_commands: raw
                .max_parallel_commands
                .map_or(DEFAULT_MAX_PARALLEL_COMMANDS, |n| n as usize),
            included: Vec::new(),
        })
    } else {
        Err(problems)
    }
}

/// Configs with at least this many targets are resolved in parallel.
const PARALLEL_FROM: usize = 256;

/// Threads that resolve a large config's targets: one a core, at most 8.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(8))
}

/// The name and stack of each of them (resolving is shallow: the document's nesting is
/// bounded when it is read).
pub const THREAD_NAME: &str = "protector-config";
pub const THREAD_STACK: usize = 256 * 1024;

/// `f` over `items` in order: in parallel for a large config (10,000 targets are checked in
/// a fraction of the time), on a pool made for the occasion. Where no threads can be made (a
/// tasks limit: TasksMax, pids.max), one by one: never a panic, as rayon's global pool gives.
fn map_targets<T: Sync, R: Send>(items: &[T], f: impl Fn(usize, &T) -> R + Sync) -> Vec<R> {
    if items.len() >= PARALLEL_FROM {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads())
            .thread_name(|i| format!("{THREAD_NAME}-{i}"))
            .stack_size(THREAD_STACK)
            .build();
        if let Ok(pool) = pool {
            return pool.install(|| items.par_iter().enumerate().map(|(i, t)| f(i, t)).collect());
        }
    }
    items.iter().enumerate().map(|(i, t)| f(i, t)).collect()
}

/// Makes `path` relative to `dir` if it is relative.
fn anchor_path(path: &mut PathBuf, dir: &Path) {
    if path.is_relative() {
        *path = dir.join(&*path);
    }
}

/// Makes a target's relative paths relative to `dir` (the config file's), not to wherever
/// protector happened to be started from: its heartbeat and pid file, and programs named by a
/// relative path (`./restart.sh`), never looked for in protector's working directory (where
/// another user may have put one).
fn anchor_target(t: &mut Target, dir: &Path) {
    anchor_path(&mut t.heartbeat, dir);
    let policy = t.policy_mut();
    if let Some(path) = &mut policy.pid_file {
        anchor_path(path, dir);
    }
    for line in policy.command_lines_mut() {
        if let CommandLine::Exec(argv) = line
            && let Some(program) = argv.first_mut()
            && Path::new(program.as_str()).components().count() > 1
            && Path::new(program.as_str()).is_relative()
        {
            *program = dir.join(&*program).display().to_string();
        }
    }
}

/// Expands a path for `os`; with no environment (another OS) it is kept as written. `ptr`:
/// the pointer a problem names.
fn expand_path(
    text: &str,
    ptr: impl FnOnce() -> String,
    os: Os,
    env: EnvLookup<'_>,
    problems: &mut Vec<Problem>,
) -> Option<PathBuf> {
    match env {
        None => Some(PathBuf::from(text)),
        Some(lookup) => match expand(text, os == Os::Windows, lookup) {
            Ok(p) => Some(PathBuf::from(p)),
            Err(msg) => {
                problems.push(Problem::new(ptr(), msg));
                None
            }
        },
    }
}
