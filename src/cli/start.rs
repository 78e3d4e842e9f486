//! Starting the daemon, from a config file or from the original positional form: what both
//! do before the loop (logging, the instance lock, PATH made safe, how commands and looks are
//! started), and the exit status the loop's end gives.

use std::path::Path;

use super::legacy;
use super::outcome::Outcome;
use crate::config::{self, Config, Os};
use crate::daemon;
use crate::logging::{self, LogOptions};

/// Runs the original form's single target.
pub(super) fn run_legacy(words: &[String], log: &LogOptions, dry_run: bool) -> Outcome {
    let target = match legacy::target(words) {
        Ok(target) => target,
        Err(msg) => return legacy::usage_error(&msg),
    };
    let key = target.heartbeat.clone();
    let config = Config {
        os: Os::host(),
        targets: vec![target],
        files: Default::default(),
        max_parallel_commands: config::model::DEFAULT_MAX_PARALLEL_COMMANDS,
        included: Vec::new(),
    };
    match daemon::Inbox::listen() {
        Ok(inbox) => {
            let opts = daemon::Options {
                config_path: None,
                dry_run,
                signal_source: None,
                accepted_text: None,
                refused: None,
            };
            run_watchdog(config, &key, opts, log, inbox)
        }
        Err(e) => Outcome::failed(format!("protector: cannot listen for signals: {e}")),
    }
}

pub(super) fn run_config(path: &Path, log: &LogOptions, dry_run: bool) -> Outcome {
    // Before the config is read: a signal during a long start-up waits for the loop.
    let inbox = match daemon::Inbox::listen() {
        Ok(inbox) => inbox,
        Err(e) => return Outcome::failed(format!("protector: cannot listen for signals: {e}")),
    };
    let opts = |accepted_text, refused| daemon::Options {
        config_path: Some(path.to_path_buf()),
        dry_run,
        signal_source: None,
        accepted_text,
        refused,
    };
    // A refused file with a last accepted copy: the host stays watched on that copy.
    match config::accepted::start_on(path, Os::host()) {
        Ok(start) => run_watchdog(
            start.config,
            path,
            opts(start.text, start.refused),
            log,
            inbox,
        ),
        Err(e) => Outcome::failed(e),
    }
}

/// Sets up logging and the instance lock, then runs the loop. `lock_key` names the default
/// lock (the config file, or the heartbeat of the positional form).
fn run_watchdog(
    config: Config,
    lock_key: &Path,
    opts: daemon::Options,
    log: &LogOptions,
    inbox: daemon::Inbox,
) -> Outcome {
    if let Err(e) = logging::init(log) {
        return Outcome::failed(format!("protector: {e:#}"));
    }
    let dropped = crate::programs::make_path_safe();
    if !dropped.is_empty() {
        tracing::warn!(
            event = "path_made_safe",
            dropped = %dropped.join(", "),
            path = %std::env::var("PATH").unwrap_or_default(),
            "PATH held directories that are not absolute; commands are looked for in its absolute ones only"
        );
    }
    crate::platform::use_this_program_to_drain();
    #[cfg(target_os = "linux")]
    crate::daemon::use_look_helper();
    if let Some((before, after)) = crate::platform::prepare_for_commands() {
        tracing::debug!(
            event = "descriptor_limit_raised",
            before,
            after,
            "raised the limit of open files to the hard limit"
        );
    }
    match daemon::watch(config, lock_key, opts, inbox) {
        Ok(daemon::Exit::Clean) => Outcome::ok(),
        Ok(daemon::Exit::Immediate) => Outcome::status(1),
        Err(e) => {
            tracing::error!(event = "fatal", "{e:#}");
            // Logged to stderr already, unless the log goes only to a file.
            if log.stderr {
                Outcome::status(1)
            } else {
                Outcome::failed(format!("protector: {e:#}"))
            }
        }
    }
}
