//! protector: restarts services whose heartbeat file has gone stale.
//!
//! Module map: `cli` (arguments, legacy form) -> `config` (YAML -> validated model) ->
//! `daemon` (the loop) which drives `schedule` (pure decisions), `heartbeat` (observing
//! files) and `command` (running stop/start with timeouts). Per-OS code lives in `platform`.

pub mod cli;
pub mod command;
pub mod config;
pub mod daemon;
pub mod heartbeat;
pub mod logging;
pub mod platform;
pub mod schedule;
