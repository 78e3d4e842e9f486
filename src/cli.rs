//! Command line: `run` (default), `check`, `schema`, and the original positional form
//! `protector FILE STOP_CMD START_CMD TIMEOUT_SECS`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::config::{self, CommandLine, Config, Os, Target, duration::format as fmt_dur};
use crate::daemon;
use crate::logging::{self, LogFormat, LogOptions};
use crate::schedule::Observation;

const ABOUT: &str = "Restarts services whose heartbeat file has gone stale.";

const LONG_ABOUT: &str = "\
Restarts services whose heartbeat file has gone stale.

Something outside the service (a Salt master, a cron job, the service itself) touches a \
heartbeat file while all is well. When a file has not changed for its timeout, protector runs \
the target's stop command, then its start command, each bounded by a timeout that kills the \
command's whole process tree.";

const EXAMPLES: &str = "\
Examples:
  Watch the targets of a config file (runs until stopped; SIGHUP reloads):
    protector --config /etc/protector/protector.yaml

  Validate a config offline and show the effective targets for Windows:
    protector check --config protector.yaml --os windows

  What is protector doing? (exit status 1 unless every target is fine)
    protector status --config /etc/protector/protector.yaml

  The original single-target form (commands run through /bin/sh -c or cmd /C):
    protector /tmp/htrd_minion_alived \"service salt-minion stop\" \"service salt-minion start\" 300

  Print the JSON schema of the config file:
    protector schema > protector.schema.json

Exit status: 0 success; 1 invalid config, another protector running, unhealthy status, or a
runtime failure; 2 wrong usage.";

const LEGACY_USAGE: &str = "\
usage: protector FILE STOP_CMD START_CMD TIMEOUT_SECS
   or: protector --config FILE
   or: protector check --config FILE [--os linux|windows|macos]
Run 'protector --help' for more.";

#[derive(Debug, Parser)]
#[command(
    name = "protector",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    global: Global,

    /// Config file to run (same as `protector run --config FILE`).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(flatten)]
    run: RunOpts,

    /// The original form: FILE STOP_CMD START_CMD TIMEOUT_SECS. STOP_CMD and START_CMD run
    /// through the platform shell; TIMEOUT_SECS is a whole number of seconds.
    #[arg(value_name = "FILE STOP_CMD START_CMD TIMEOUT_SECS", num_args = 0..)]
    legacy: Vec<String>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Args)]
struct Global {
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Less log output (-q warnings and errors only, -qq errors only).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    quiet: u8,
    /// Log format.
    #[arg(long, value_enum, default_value_t, global = true)]
    log_format: LogFormat,
    /// Running as root, accept a config file (or a directory protector writes into) that
    /// another user could change. Without it such a file is refused (see SECURITY.md).
    #[arg(long, global = true)]
    no_strict_modes: bool,
}

/// Options of the watchdog itself (`run`, `--config`, the positional form).
#[derive(Debug, Args, Clone)]
struct RunOpts {
    /// Decide as usual and log the commands it would run, but run none.
    #[arg(long)]
    dry_run: bool,
    /// Also log to this file, rotated daily (PATH.YYYY-MM-DD).
    #[arg(long, value_name = "PATH")]
    log_file: Option<PathBuf>,
    /// How many daily log files to keep.
    #[arg(long, value_name = "N", default_value_t = 7, requires = "log_file")]
    log_keep: usize,
    /// With --log-file: log only to the file, not to stderr.
    #[arg(long, requires = "log_file")]
    no_stderr: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Watch the targets of a config file until stopped.
    Run {
        /// Config file (YAML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        #[command(flatten)]
        run: RunOpts,
    },
    /// Validate a config file offline (never runs a command) and print the effective targets.
    Check {
        /// Config file (YAML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Resolve for this OS instead of the one protector runs on. Variables in paths are
        /// only expanded for the OS protector runs on.
        #[arg(long, value_enum)]
        os: Option<Os>,
    },
    /// Show each target's state from protector's state file; exit 1 unless protector runs and
    /// every enabled target is watching normally.
    Status {
        /// Config file whose `state_file` to read.
        #[arg(
            short,
            long,
            value_name = "FILE",
            conflicts_with = "state_file",
            required_unless_present = "state_file"
        )]
        config: Option<PathBuf>,
        /// The state file to read.
        #[arg(long, value_name = "FILE")]
        state_file: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON schema of the config file.
    Schema,
    /// Install, remove or run protector as a Windows service.
    #[cfg(windows)]
    Service {
        #[command(subcommand)]
        action: crate::service::Action,
    },
}

/// Parses the command line and does what it says.
pub fn main() -> ExitCode {
    crate::platform::tune_memory();
    let cli = Cli::parse();
    if cli.global.no_strict_modes {
        crate::perms::relax();
    }
    let log = |run: &RunOpts| LogOptions {
        verbosity: cli.global.verbose as i8 - cli.global.quiet as i8,
        format: cli.global.log_format,
        file: run.log_file.clone(),
        keep: run.log_keep,
        stderr: !run.no_stderr,
    };
    match cli.command {
        Some(Command::Schema) => {
            print_stdout(&config::schema::schema_text());
            ExitCode::SUCCESS
        }
        Some(Command::Check { config, os }) => check(&config, os.unwrap_or(Os::host())),
        #[cfg(windows)]
        Some(Command::Service { action }) => crate::service::main(
            action,
            cli.global.log_format,
            cli.global.verbose as i8 - cli.global.quiet as i8,
        ),
        Some(Command::Status {
            config,
            state_file,
            json,
        }) => status(config, state_file, json),
        Some(Command::Run {
            ref config,
            ref run,
        }) => run_config(config, &log(run), run.dry_run),
        None => match (&cli.config, cli.legacy.is_empty()) {
            (Some(config), true) => run_config(config, &log(&cli.run), cli.run.dry_run),
            (Some(_), false) => {
                usage_error("give either --config FILE or the four positional arguments, not both")
            }
            (None, true) => usage_error("nothing to do"),
            (None, false) => match legacy_target(&cli.legacy) {
                Ok(target) => {
                    let key = target.heartbeat.clone();
                    let config = Config {
                        os: Os::host(),
                        targets: vec![target],
                        files: Default::default(),
                        max_parallel_commands: config::model::DEFAULT_MAX_PARALLEL_COMMANDS,
                    };
                    match daemon::Inbox::listen() {
                        Ok(inbox) => {
                            run_watchdog(config, &key, None, &log(&cli.run), cli.run.dry_run, inbox)
                        }
                        Err(e) => {
                            eprintln!("protector: cannot listen for signals: {e}");
                            ExitCode::from(1)
                        }
                    }
                }
                Err(msg) => usage_error(&msg),
            },
        },
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("protector: {msg}\n{LEGACY_USAGE}");
    ExitCode::from(2)
}

/// The single target of the original form.
pub fn legacy_target(args: &[String]) -> Result<Target, String> {
    let [file, stop, start, timeout] = args else {
        return Err(format!(
            "expected 4 arguments (FILE STOP_CMD START_CMD TIMEOUT_SECS), got {}",
            args.len()
        ));
    };
    let secs: u64 = timeout
        .trim()
        .parse()
        .map_err(|_| format!("TIMEOUT_SECS must be a whole number of seconds, not {timeout:?}"))?;
    if secs == 0 {
        return Err("TIMEOUT_SECS must be greater than zero".into());
    }
    for (what, cmd) in [("STOP_CMD", stop), ("START_CMD", start)] {
        if cmd.trim().is_empty() {
            return Err(format!("{what} is empty"));
        }
    }
    let timeout = Duration::from_secs(secs);
    let shell = |line: &String| CommandLine::Shell {
        line: line.clone(),
        os: Os::host(),
    };
    let heartbeat = PathBuf::from(file);
    let name = config::raw::safe_name(
        &heartbeat
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| file.clone()),
    );
    let mut target = Target::new(&name, heartbeat, timeout, shell(start));
    target.stop = Some(shell(stop));
    Ok(target)
}

fn run_config(path: &Path, log: &LogOptions, dry_run: bool) -> ExitCode {
    // Before the config is read: a signal during a long start-up waits for the loop.
    let inbox = match daemon::Inbox::listen() {
        Ok(inbox) => inbox,
        Err(e) => {
            eprintln!("protector: cannot listen for signals: {e}");
            return ExitCode::from(1);
        }
    };
    match config::load(path, Os::host()) {
        Ok(config) => run_watchdog(config, path, Some(path.to_path_buf()), log, dry_run, inbox),
        Err(e) => {
            crate::text::print_stderr(&e.to_string());
            ExitCode::from(1)
        }
    }
}

/// Sets up logging and the instance lock, then runs the loop. `lock_key` names the default
/// lock (the config file, or the heartbeat of the positional form).
fn run_watchdog(
    config: Config,
    lock_key: &Path,
    config_path: Option<PathBuf>,
    log: &LogOptions,
    dry_run: bool,
    inbox: daemon::Inbox,
) -> ExitCode {
    if let Err(e) = logging::init(log) {
        eprintln!("protector: {e:#}");
        return ExitCode::from(1);
    }
    let opts = daemon::Options {
        config_path,
        dry_run,
        signal_source: None,
    };
    match daemon::watch(config, lock_key, opts, inbox) {
        Ok(daemon::Exit::Clean) => ExitCode::SUCCESS,
        Ok(daemon::Exit::Immediate) => ExitCode::from(1),
        Err(e) => {
            tracing::error!(event = "fatal", "{e:#}");
            if !log.stderr {
                eprintln!("protector: {e:#}");
            }
            ExitCode::from(1)
        }
    }
}

fn status(config: Option<PathBuf>, state_file: Option<PathBuf>, json: bool) -> ExitCode {
    let path = match (state_file, config) {
        (Some(p), _) => p,
        (None, Some(cfg)) => match config::load(&cfg, Os::host()) {
            Ok(c) => match c.files.state_file {
                Some(p) => p,
                None => {
                    eprintln!(
                        "protector: {} sets no `state_file`, so there is no status to show",
                        cfg.display()
                    );
                    return ExitCode::from(1);
                }
            },
            Err(e) => {
                crate::text::print_stderr(&e.to_string());
                return ExitCode::from(1);
            }
        },
        (None, None) => unreachable!("clap requires one of them"),
    };
    crate::status::run(&path, json)
}

/// How long `check` waits for the heartbeats' filesystems to answer its looks.
const CHECK_LOOKS_WITHIN: Duration = Duration::from_secs(5);

/// What `check` says about the heartbeats' places on this machine: a missing directory, one
/// any user can write, whole-second file times. Looked at on a thread of its own and waited
/// for a bounded time, so a filesystem that never answers cannot hang `check` (which the
/// systemd unit runs before protector starts).
fn heartbeat_warnings(config: &Config) -> Vec<String> {
    let targets: Vec<(String, PathBuf)> = config
        .targets
        .iter()
        .filter(|t| t.enabled)
        .map(|t| (t.name.clone(), t.heartbeat.clone()))
        .collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let looked = std::thread::Builder::new()
        .name("protector-check".into())
        .spawn(move || {
            let mut out = Vec::new();
            for (name, beat) in targets {
                if let Some(dir) = crate::heartbeat::missing_dir(&beat) {
                    out.push(format!(
                        "target {name}: the heartbeat's directory {} does not exist: nothing can \
                         write this heartbeat yet",
                        dir.display()
                    ));
                }
                if let Some(reason) = crate::perms::heartbeat_exposure(&beat) {
                    out.push(format!("target {name}: {reason}"));
                }
                if let (Observation::Present(print), _) = crate::heartbeat::observe(&beat)
                    && print.coarse
                {
                    out.push(format!(
                        "target {name} ({}): {}",
                        beat.display(),
                        crate::heartbeat::COARSE_ADVICE
                    ));
                }
            }
            let _ = tx.send(out);
        });
    match looked.map(|_| rx.recv_timeout(CHECK_LOOKS_WITHIN)) {
        Ok(Ok(warnings)) => warnings,
        _ => vec![format!(
            "the heartbeats' directories could not all be looked at within {}s (a filesystem \
             that does not answer?): what they would show is left out",
            CHECK_LOOKS_WITHIN.as_secs()
        )],
    }
}

fn check(path: &Path, os: Os) -> ExitCode {
    match config::load(path, os) {
        Ok(config) => {
            let file = path.display().to_string();
            print_stdout(&describe(&file, &config));
            // Only this machine's directories can be looked at.
            if config.os == Os::host() {
                for warning in heartbeat_warnings(&config) {
                    crate::text::print_stderr(&format!("{file}: warning: {warning}\n"));
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            crate::text::print_stderr(&e.to_string());
            ExitCode::from(1)
        }
    }
}

/// The effective targets, as `check` prints them.
pub fn describe(file: &str, config: &Config) -> String {
    use std::fmt::Write;
    let n = config.targets.len();
    let mut out = format!(
        "{file}: valid for {}; {n} target{}\n",
        config.os,
        if n == 1 { "" } else { "s" }
    );
    if config.os != Os::host() {
        let _ = writeln!(
            out,
            "(paths are shown as written: variables are expanded only on {} itself)",
            config.os
        );
    }
    for (key, path) in [
        ("state_file", &config.files.state_file),
        ("metrics_file", &config.files.metrics_file),
        ("lock_file", &config.files.lock_file),
    ] {
        if let Some(p) = path {
            let _ = writeln!(out, "{key}: {}", p.display());
        }
    }
    let _ = writeln!(
        out,
        "max_parallel_commands: {}",
        config.max_parallel_commands
    );
    for t in &config.targets {
        let argv = |c: &CommandLine| serde_json::to_string(&c.argv()).unwrap_or_default();
        let _ = writeln!(
            out,
            "\ntarget {}{}",
            t.name,
            if t.enabled { "" } else { " (disabled)" }
        );
        let _ = writeln!(out, "  heartbeat:       {}", t.heartbeat.display());
        let _ = writeln!(out, "  timeout:         {}", fmt_dur(t.timeout));
        let _ = writeln!(
            out,
            "  stop:            {}",
            t.stop.as_ref().map_or("(none)".into(), argv)
        );
        let _ = writeln!(out, "  start:           {}", argv(&t.start));
        let _ = writeln!(out, "  command_timeout: {}", fmt_dur(t.command_timeout));
        let _ = writeln!(out, "  restart_grace:   {}", fmt_dur(t.restart_grace));
        let _ = writeln!(out, "  startup_grace:   {}", fmt_dur(t.startup_grace));
        let _ = writeln!(
            out,
            "  backoff:         doubles after {} consecutive restarts, up to {}",
            t.backoff.after,
            fmt_dur(t.backoff.max)
        );
        let _ = writeln!(
            out,
            "  max_restarts:    {}",
            t.max_restarts
                .map_or("none (never give up)".into(), |m| m.to_string())
        );
        if let Some(notify) = &t.notify {
            let _ = writeln!(out, "  notify:          {}", argv(notify));
        }
        if let Some(skip_if) = &t.skip_if {
            let _ = writeln!(
                out,
                "  skip_if:         {} (then wait {})",
                argv(skip_if),
                fmt_dur(t.skip_delay)
            );
        }
    }
    out
}

/// Prints to stdout; a closed pipe (`protector schema | head`) is not an error.
fn print_stdout(text: &str) {
    crate::text::print_stdout(text);
}
