//! Where each setting of each target comes from (`check --explain`): the first of the layers
//! of precedence (`layers.rs`, the list `resolve.rs` takes values by) that sets it; a setting
//! no layer sets has its default.

use std::collections::HashMap;

use serde_json::Value;

use super::{Os, key_path};

/// Every setting a layer can hold (`backoff` and `depends_on` as their parts, which are
/// picked apart).
pub const SETTINGS: [&str; 26] = [
    "heartbeat",
    "pid_file",
    "service",
    "timeout",
    "stop",
    "start",
    "shell",
    "command_timeout",
    "restart_grace",
    "startup_grace",
    "backoff/after",
    "backoff/max",
    "max_restarts",
    "enabled",
    "allow_missing_programs",
    "observe_only",
    "notify",
    "skip_if",
    "diagnose",
    "diagnose_timeout",
    "skip_delay",
    "depends_on/tcp",
    "depends_on/command",
    "depends_on/check_timeout",
    "depends_on/recheck",
    "restart_splay",
];

/// Per target name, per setting: the key path of the layer that sets it (`defaults.os.linux`,
/// `targets[0]`), or `default`.
pub type Origins = HashMap<String, HashMap<&'static str, String>>;

/// The origins of every setting of every target of `document` (a valid config) for `os`.
pub fn of(document: &Value, os: Os) -> Origins {
    let targets = document.get("targets").and_then(Value::as_array);
    let mut out = Origins::new();
    for (i, target) in targets.into_iter().flatten().enumerate() {
        let Some(name) = target.get("name").and_then(Value::as_str) else {
            continue;
        };
        let layers: Vec<String> = super::layers::for_os(os)
            .into_iter()
            .map(|layer| layer.pointer(i, os))
            .collect();
        let settings = SETTINGS
            .iter()
            .map(|&key| {
                let from = layers
                    .iter()
                    .find(|layer| {
                        document
                            .pointer(&format!("{layer}/{key}"))
                            .is_some_and(|v| !v.is_null())
                    })
                    .map_or_else(|| "default".to_string(), |layer| key_path(layer));
                (key, from)
            })
            .collect();
        out.insert(name.to_string(), settings);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_of_the_schema_is_listed() {
        let schema =
            serde_json::to_value(schemars::schema_for!(super::super::raw::Settings)).unwrap();
        let mut keys: Vec<&str> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        let mut listed: Vec<&str> = SETTINGS
            .iter()
            .map(|k| k.split('/').next().unwrap())
            .collect();
        listed.sort_unstable();
        listed.dedup();
        assert_eq!(keys, listed);
    }

    #[test]
    fn the_most_specific_layer_wins() {
        let doc: Value = serde_yaml::from_str(
            "defaults:\n  timeout: 5m\n  os: {linux: {stop: a}, unix: {stop: b, start: c}}\n\
             targets:\n  - name: t\n    heartbeat: /x\n    start: d\n    os: {unix: {backoff: {max: 1h}}}\n",
        )
        .unwrap();
        let o = &of(&doc, Os::Linux)["t"];
        assert_eq!(o["timeout"], "defaults");
        assert_eq!(o["stop"], "defaults.os.linux");
        assert_eq!(o["start"], "targets[0]");
        assert_eq!(o["backoff/max"], "targets[0].os.unix");
        assert_eq!(o["backoff/after"], "default");
        let w = &of(&doc, Os::Windows)["t"];
        assert_eq!(w["stop"], "default");
    }
}
