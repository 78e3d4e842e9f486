//! protector: restarts services whose heartbeat file has gone stale.
//!
//! Module map: `cli` (arguments, legacy form) -> `config` (YAML -> validated model) ->
//! `daemon` (the loop) which drives `schedule` (pure decisions), `heartbeat` (observing
//! files) and `command` (running stop/start with timeouts). The daemon keeps its books in
//! `state` and `metrics` files, holds the single-instance `lock` and talks to `systemd`;
//! `status` reads the state file back; on Windows `service` runs it as a Windows service.
//! Per-OS code lives in `platform`.

pub mod cli;
pub mod command;
pub mod config;
pub mod daemon;
pub mod fsutil;
pub mod heartbeat;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod platform;
pub mod schedule;
#[cfg(windows)]
pub mod service;
pub mod state;
pub mod status;
pub mod systemd;
