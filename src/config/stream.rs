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

use serde::Deserialize;
use serde_json::Value;

use super::raw::RawConfig;
use super::resolve::{self, EnvLookup, Targets};
use super::schema::Apart;
use super::{Config, Os, document};

/// `text`, a config file that includes nothing, resolved for `os` the short way; `None`:
/// it is for the whole pipeline to read (see the module's header). `env` and `anchor` are
/// [`resolve::resolve_from`]'s.
pub fn load(text: &str, os: Os, env: EnvLookup<'_>, anchor: Option<&Path>) -> Option<Config> {
    let schema = Apart::compiled();
    let mut targets: Vec<Box<str>> = Vec::new();
    let mut first = None;
    let mut keep = |target: Value| {
        let (valid, target) = schema.target_is_valid(target);
        let kept = valid
            && serde_json::to_string(&target)
                .map(|json| targets.push(json.into_boxed_str()))
                .is_ok();
        first.get_or_insert(target);
        kept
    };
    let reading = document::read_apart(text, &mut keep).ok()?;
    let mut top = reading.document?;
    if !reading.twice.is_empty() || top.get("include").is_some() {
        return None;
    }
    // The top level is checked with its first target: the others were checked alone.
    *top.get_mut("targets")? = Value::Array(first.into_iter().collect());
    if !schema.top_is_valid(&top) || super::cut_commands_in(text).next().is_some() {
        return None;
    }
    top.as_object_mut()?.remove("targets");
    let raw = RawConfig::deserialize(&top).ok()?;
    let config = resolve::resolve_from(&raw, Targets::Text(&targets), os, env, anchor).ok()?;
    let mut names = HashSet::with_capacity(config.targets.len());
    config
        .targets
        .iter()
        .all(|t| names.insert(t.name.as_str()))
        .then_some(config)
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
}
