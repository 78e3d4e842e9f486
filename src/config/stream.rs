//! A config of one file, read the short way: each target validated as soon as the YAML reader
//! has built it, kept as compact JSON text, and resolved from that text, so that the whole
//! document never exists at once (it was the load's peak: 8.6 of the 12.5 MB of heap at
//! 10,000 targets, and a reload built it beside the running daemon's slots).
//!
//! Only what is valid in every respect is accepted this way: the first thing wrong (a target
//! or the top level the schema rejects, a key written twice, a command cut by a comment, a
//! name used twice, an `include`, a problem found in resolving, YAML that serde_yaml is to
//! read) ends it with `None`, and the whole pipeline (config/mod.rs) reads the file again to
//! report every problem with its place. What is accepted is what the whole pipeline accepts
//! (`the_short_way_accepts_what_the_whole_way_does_and_nothing_else`; the config fuzzer
//! holds the two together on arbitrary input).

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Mutex, OnceLock, PoisonError, mpsc};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::position::Position;
use super::raw::{RawConfig, RawDefaults};
use super::resolve::{self, EnvLookup, Resolved, Resolver, Targets};
use super::schema::Apart;
use super::{Config, Os, document};

/// Targets handed to the resolving threads at a time.
const CHUNK: usize = 256;

/// A chunk of targets as compact JSON, and the index of its first in the file.
type Chunk = (usize, Vec<Box<str>>);

/// `text`, a config file that includes nothing, resolved for `os` the short way; `None`:
/// it is for the whole pipeline to read (see the module's header). `env` and `anchor` are
/// [`resolve::resolve_from`]'s.
///
/// When the `defaults` come before the targets (as they are usually written), the targets
/// are resolved while the file is still being read, a chunk at a time on threads of their
/// own: at 10,000 targets, resolving took a third as long as reading, one after the other.
pub fn load(text: &str, os: Os, env: EnvLookup<'_>, anchor: Option<&Path>) -> Option<Config> {
    let schema = Apart::compiled();
    let (reading, read) = read_resolving(text, &schema, os, env, anchor);
    let reading = reading.ok()?;
    let mut top = reading.document?;
    if !reading.twice.is_empty() || top.get("include").is_some() {
        return None;
    }
    // The top level is checked with its first target: the others were checked alone.
    *top.get_mut("targets")? = Value::Array(read.first.into_iter().collect());
    if !schema.top_is_valid(&top) || super::cut_commands_in(text).next().is_some() {
        return None;
    }
    top.as_object_mut()?.remove("targets");
    let raw = RawConfig::deserialize(&top).ok()?;
    let config = match read.early {
        // Written once (a key written twice went the whole way above): still the same.
        Some(written) if top.get("defaults") != Some(&written) => return None,
        Some(_) => resolve::assemble(&raw, read.resolved, os, env, anchor),
        None => resolve::resolve_from(&raw, Targets::Text(&read.texts), os, env, anchor),
    }
    .ok()?;
    let mut names = HashSet::with_capacity(config.targets.len());
    config
        .targets
        .iter()
        .all(|t| names.insert(t.name.as_str()))
        .then_some(config)
}

/// `text` read, each target validated and kept as compact JSON; resolved as it comes when
/// the defaults come first (see [`load`]).
fn read_resolving(
    text: &str,
    schema: &Apart,
    os: Os,
    env: EnvLookup<'_>,
    anchor: Option<&Path>,
) -> (Result<document::Reading, Position>, Read) {
    let resolver = OnceLock::new();
    let resolved = Mutex::new(Vec::new());
    let (to_resolve, chunks) = mpsc::channel::<Chunk>();
    let chunks = Mutex::new(chunks);
    let (reading, mut read) = std::thread::scope(|s| {
        let mut read = Read::default();
        let mut keep = |target: Value, top: &Map<String, Value>| {
            let (valid, target) = schema.target_is_valid(target);
            if read.first.is_none() && valid {
                read.early = early_defaults(schema, top, &target).and_then(|(written, d)| {
                    let spawn = || {
                        std::thread::Builder::new()
                            .name(resolve::THREAD_NAME.into())
                            .stack_size(resolve::THREAD_STACK)
                            .spawn_scoped(s, || resolve_chunks(&chunks, &resolver, &resolved))
                            .is_ok()
                    };
                    let resolving = resolver
                        .set(Resolver::new(Some(d), os, env, anchor))
                        .is_ok()
                        && (0..resolve::threads()).filter(|_| spawn()).count() > 0;
                    resolving.then_some(written)
                });
            }
            let kept = valid
                && serde_json::to_string(&target)
                    .map(|json| read.texts.push(json.into_boxed_str()))
                    .is_ok();
            read.first.get_or_insert(target);
            if read.early.is_some() && read.texts.len() == CHUNK {
                read.hand_over(&to_resolve);
            }
            kept
        };
        let reading = document::read_apart(text, &mut keep);
        if read.early.is_some() {
            read.hand_over(&to_resolve);
        }
        // The resolving threads end once every chunk is taken; the scope waits for them.
        drop(to_resolve);
        (reading, read)
    });
    let mut chunks = resolved
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    chunks.sort_unstable_by_key(|(start, _)| *start);
    read.resolved = Vec::with_capacity(chunks.iter().map(|(_, r)| r.len()).sum());
    for (_, resolved) in chunks {
        read.resolved.extend(resolved);
    }
    (reading, read)
}

/// What the reading kept.
#[derive(Default)]
struct Read {
    /// The first target, with which the top level is checked.
    first: Option<Value>,
    /// The targets read and not handed over, as compact JSON.
    texts: Vec<Box<str>>,
    /// Targets handed over so far.
    handed: usize,
    /// Resolving while reading: with these defaults, as written.
    early: Option<Value>,
    /// The targets resolved while reading, in the file's order.
    resolved: Vec<Resolved>,
}

impl Read {
    /// The targets read since the last chunk go to the resolving threads.
    fn hand_over(&mut self, to: &mpsc::Sender<Chunk>) {
        let chunk = std::mem::take(&mut self.texts);
        let start = self.handed;
        self.handed += chunk.len();
        let _ = to.send((start, chunk));
    }
}

/// The defaults to resolve the targets with while the file is read, when the top level read
/// before the first target (`top`) holds them and is valid with it (`first`). A file whose
/// defaults come later is resolved once read.
fn early_defaults(
    schema: &Apart,
    top: &Map<String, Value>,
    first: &Value,
) -> Option<(Value, RawDefaults)> {
    let written = top.get("defaults")?;
    let mut so_far = top.clone();
    so_far.insert("targets".into(), Value::Array(vec![first.clone()]));
    if !schema.top_is_valid(&Value::Object(so_far)) {
        return None;
    }
    let defaults = RawDefaults::deserialize(written).ok()?;
    Some((written.clone(), defaults))
}

/// Resolves each chunk taken from `chunks` with `resolver`, into `resolved`, until none is left.
fn resolve_chunks(
    chunks: &Mutex<mpsc::Receiver<Chunk>>,
    resolver: &OnceLock<Resolver<'_>>,
    resolved: &Mutex<Vec<(usize, Vec<Resolved>)>>,
) {
    let Some(resolver) = resolver.get() else {
        return;
    };
    loop {
        let next = chunks.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok((start, texts)) = next else {
            return;
        };
        let done: Vec<Resolved> = texts
            .iter()
            .enumerate()
            .map(|(k, text)| resolver.text(start + k, text))
            .collect();
        drop(texts);
        resolved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((start, done));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The short way and the whole way, on `text`.
    fn both(text: &str) -> (Option<Config>, Result<Config, super::super::ConfigError>) {
        let env = |name: &str| (name == "HOME").then(|| "/home/op".to_string());
        (
            load(text, Os::Linux, Some(&env), None),
            super::super::parse_str_whole(text, "t.yaml", Os::Linux, Some(&env)),
        )
    }

    #[test]
    fn the_short_way_accepts_what_the_whole_way_does_and_nothing_else() {
        let accepted = [
            "targets:\n  - {name: a, heartbeat: /b, timeout: 5m, start: 'x'}\n",
            // Settings after the targets, which the targets inherit.
            "targets:\n  - {name: a, heartbeat: ~/b, start: x}\n  - {name: b, heartbeat: /c, \
             start: [x, y], os: {linux: {timeout: 2s}}}\ndefaults: {timeout: 1m}\n\
             state_file: /s\n",
            "defaults:\n  timeout: 1m\n  stop: systemctl stop x\ntargets:\n- name: a\n  \
             heartbeat: /b\n  start: 'x # not a comment'\n  depends_on: {tcp: ['127.0.0.1:4506']}\n- name: b\n  \
             heartbeat: /c\n  start: y\n",
        ];
        for text in accepted {
            let (short, whole) = both(text);
            assert_eq!(short, Some(whole.unwrap()), "{text}");
        }
        let refused = [
            // A target the schema rejects, the top level it rejects, a target unresolved.
            "targets:\n  - {name: a, heartbeat: /b, timeout: 5m, start: 'x', bad: 1}\n",
            "state_file: 3\ntargets:\n  - {name: a, heartbeat: /b, timeout: 5m, start: x}\n",
            "targets:\n  - {name: a, heartbeat: /b, start: x}\n",
            // A name used twice, a key written twice, a command cut by a comment.
            "defaults: {timeout: 1m}\ntargets:\n  - {name: a, heartbeat: /b, start: x}\n  - \
             {name: a, heartbeat: /c, start: x}\n",
            "defaults: {timeout: 1m}\ndefaults: {timeout: 2m}\ntargets:\n  - {name: a, \
             heartbeat: /b, start: x}\n",
            "defaults: {timeout: 1m}\ntargets:\n  - name: a\n    heartbeat: /b\n    \
             start: echo \"a # b\"\n",
            // No targets, none at all, not a mapping, an include, YAML for serde_yaml.
            "targets: []\n",
            "state_file: /s\n",
            "- a\n",
            "include: conf.d/*.yaml\ntargets:\n  - {name: a, heartbeat: /b, timeout: 1s, \
             start: x}\n",
            "defaults: &d {timeout: 1m}\ntargets:\n  - {name: a, heartbeat: /b, start: x}\n",
            "targets:\n  - a\n",
        ];
        for text in refused {
            let (short, _) = both(text);
            assert_eq!(short, None, "{text}");
        }
    }

    /// Targets resolved while the file is read, chunk by chunk, come out in the file's order
    /// and as the whole way resolves them; a problem in any chunk sends the file the whole way.
    #[test]
    fn targets_resolved_while_reading_are_those_of_the_whole_way_in_order() {
        let n = super::CHUNK * 3 + 7;
        let target = |i: usize| {
            let start = if i.is_multiple_of(3) {
                format!("svc{i} start")
            } else {
                "x".into()
            };
            format!("  - {{name: t{i}, heartbeat: t{i}.beat, start: '{start}'}}\n")
        };
        let text: String = std::iter::once("defaults: {timeout: 1m}\ntargets:\n".to_string())
            .chain((0..n).map(target))
            .collect();
        let (short, whole) = both(&text);
        let short = short.expect("accepted the short way");
        assert_eq!(short, whole.unwrap());
        assert_eq!(short.targets[n - 1].name, format!("t{}", n - 1));
        // Alike targets still share their policy across chunks.
        assert!(short.targets[1].shares_policy_with(&short.targets[n - 2]));
        // A heartbeat naming a variable that is not set is found in resolving, in a late chunk.
        let late = super::CHUNK * 2 + 5;
        let broken = text.replace(
            &format!("heartbeat: t{late}.beat"),
            &format!("heartbeat: $UNSET/t{late}.beat"),
        );
        let (short, whole) = both(&broken);
        assert!(whole.is_err());
        assert_eq!(short, None);
    }
}
