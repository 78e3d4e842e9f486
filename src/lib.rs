//! protector: restarts services whose heartbeat file has gone stale.
//!
//! Module map: `cli` (arguments, legacy form) -> `config` (YAML -> validated model) ->
//! `daemon` (the loop) which drives `schedule` (pure decisions), `heartbeat` (observing
//! files), `command` (running stop/start with timeouts) and `depends` (checking what a
//! target needs before a restart). The daemon keeps its books in
//! `state` and `metrics` files, holds the single-instance `lock` and talks to `systemd`;
//! `status` reads the state file back; `control` carries operators' requests (pause, restart,
//! reload...) to it; on Windows `service` runs it as a Windows service.
//! Per-OS code lives in `platform`.

pub mod cli;
pub(crate) mod command;
pub mod config;
pub(crate) mod control;
pub(crate) mod daemon;
pub(crate) mod depends;
pub(crate) mod fsutil;
pub(crate) mod heartbeat;
pub mod incident;
pub(crate) mod intern;
pub(crate) mod lock;
pub(crate) mod logging;
pub(crate) mod metrics;
pub(crate) mod perms;
pub(crate) mod platform;
pub(crate) mod programs;
pub(crate) mod schedule;
#[cfg(windows)]
pub(crate) mod service;
pub(crate) mod state;
pub mod status;
pub(crate) mod systemd;
pub(crate) mod text;

/// The property tests' settings: `cases` random cases, and every failing case found is kept
/// beside the test's source (`NAME.proptest-regressions`, committed) and run first each time.
#[cfg(test)]
pub(crate) fn proptest_config(cases: u32) -> proptest::prelude::ProptestConfig {
    proptest::prelude::ProptestConfig {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..proptest::prelude::ProptestConfig::with_cases(cases)
    }
}
