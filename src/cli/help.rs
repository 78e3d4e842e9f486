//! The words of `--help` and `--version`: what protector is, how it is called, examples and
//! exit statuses (the manual page is made from them too).

pub(super) const ABOUT: &str = "Restarts services whose heartbeat file has gone stale.";

pub(super) const LONG_ABOUT: &str = "\
Restarts services whose heartbeat file has gone stale.

Something outside the service (a Salt master, a cron job, the service itself) touches a \
heartbeat file while all is well. When a file has not changed for its timeout, protector runs \
the target's stop command, then its start command, each bounded by a timeout that kills the \
command's whole process tree.";

pub(super) const EXAMPLES: &str = "\
Examples:
  Watch the targets of a config file (runs until stopped; SIGHUP reloads):
    protector --config /etc/protector/protector.yaml

  Validate a config offline and show the effective targets for Windows:
    protector check --config protector.yaml --os windows

  What is protector doing? (exit status 1 unless every target is fine)
    protector status --config /etc/protector/protector.yaml

  Hold off restarts of the salt-minion for a manual upgrade (ends by itself after 30 min):
    protector pause salt-minion --for 30m --reason \"upgrading salt\"
    protector resume salt-minion

  Restart a target now and wait for the outcome; clear a given-up target's counts:
    protector restart salt-minion
    protector reset salt-minion

  Reload the config and say whether it was applied (the old one stays if it is invalid):
    protector reload

  The original single-target form (commands run through /bin/sh -c or cmd /C):
    protector /tmp/htrd_minion_alived \"service salt-minion stop\" \"service salt-minion start\" 300

  Print the JSON schema of the config file:
    protector schema > protector.schema.json

Exit status: 0 success; 1 invalid config, another protector running, unhealthy status, a
request the running protector refused or could not carry out, or a runtime failure; 2 wrong
usage; 3 (check) a valid config whose commands' programs cannot run on this machine.";

/// `protector --version`: the version, the target it was built for, the commit it was built
/// from.
pub(super) const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PROTECTOR_TARGET"),
    ", commit ",
    env!("PROTECTOR_COMMIT"),
    ")"
);

#[cfg(windows)]
pub(super) const CONFIG_HELP: &str =
    "Config file (YAML) [default: %ProgramData%\\protector\\protector.yaml]";
#[cfg(not(windows))]
pub(super) const CONFIG_HELP: &str = "Config file (YAML) [default: /etc/protector/protector.yaml]";

pub(super) const USAGE: &str = "protector [OPTIONS] [--config FILE]
       protector run [--config FILE] [OPTIONS]
       protector check [--config FILE | FILE] [--os OS] [--explain] [--format json]
       protector status [--config FILE | FILE | --state-file FILE] [--json]
       protector pause NAME... | --all [--for DURATION] [--reason TEXT]
       protector resume|restart|reset NAME... | --all
       protector reload
       protector schema | manpage
       protector FILE STOP_CMD START_CMD TIMEOUT_SECS";
