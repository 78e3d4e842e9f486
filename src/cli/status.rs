//! `protector status`: finds the state file (the config's, or the one given) and shows what
//! it says (`crate::status`).

use std::path::PathBuf;

use super::outcome::Outcome;
use crate::config::{self, Os};

/// Said when `status` finds no config: the original form keeps no state.
const STATUS_HINT: &str = "protector: status reads the state file of a config that sets \
    `state_file`; the original positional form keeps none: run it as a config instead \
    (examples/protector.yaml is that form as a config) and add `state_file`\n";

pub fn run(
    config: Option<PathBuf>,
    state_file: Option<PathBuf>,
    json: bool,
    names: &[String],
) -> Outcome {
    // The most of the file read: what protector writes for the config's targets; for a file
    // given alone, what it writes for 100,000.
    let mut max = crate::state::max_bytes(100_000);
    let path = match (state_file, config) {
        (Some(p), _) => p,
        // A refused file: the last accepted copy names the state file of the protector
        // running on it.
        (None, Some(cfg)) => match config::accepted::start_on(&cfg, Os::host()) {
            Ok(start) => match start.config.files.state_file {
                Some(p) => {
                    max = crate::state::max_bytes(start.config.targets.len());
                    p
                }
                None => {
                    return Outcome::failed(format!(
                        "protector: {} sets no `state_file`, so there is no status to show; add \
                         `state_file: /var/lib/protector/state.json` (the unit's StateDirectory) \
                         and reload",
                        cfg.display()
                    ));
                }
            },
            Err(e) => {
                let out = Outcome::failed(e);
                return if cfg.exists() {
                    out
                } else {
                    out.say_err(STATUS_HINT)
                };
            }
        },
        (None, None) => {
            return run(Some(super::default_config()), None, json, names);
        }
    };
    match crate::status::show(&path, max, json, names) {
        Ok(shown) => Outcome::status(if shown.healthy { 0 } else { 1 }).say(shown.text),
        Err(not) => Outcome::status(not.status).say_err(not.message),
    }
}
