//! protector: restarts services whose heartbeat file has gone stale.
//!
//! Module map: `cli` (arguments, legacy form) -> `config` (YAML -> validated model) ->
//! `daemon` (the loop) which drives `schedule` (pure decisions), `heartbeat` (observing
//! files) and `command` (running stop/start with timeouts). Per-OS code lives in `platform`.

pub mod config;
pub mod schedule;
