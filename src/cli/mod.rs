//! Command line: `run` (default), `check`, `status`, `schema`, the operators' requests to a
//! running protector (`pause`, `resume`, `restart`, `reset`, `reload`: `control.rs`), and the
//! original positional form `protector FILE STOP_CMD START_CMD TIMEOUT_SECS` (`legacy.rs`);
//! `start.rs` starts the daemon.

mod check;
mod control;
mod describe;
mod help;
mod incidents;
mod legacy;
mod man;
mod outcome;
mod start;
mod status;

pub use describe::describe;
pub use legacy::target as legacy_target;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Os};
use crate::logging::{LogFormat, LogOptions};
use help::{ABOUT, CONFIG_HELP, EXAMPLES, LONG_ABOUT, USAGE, VERSION};
use outcome::Outcome;

/// The config file used when none is named.
pub fn default_config() -> PathBuf {
    #[cfg(windows)]
    {
        crate::platform::program_data()
            .join("protector")
            .join("protector.yaml")
    }
    #[cfg(not(windows))]
    {
        PathBuf::from("/etc/protector/protector.yaml")
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "protector",
    version = VERSION,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    override_usage = USAGE,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    global: Global,

    /// Config file to run (same as `protector run --config FILE`) [default:
    /// /etc/protector/protector.yaml; %ProgramData%\protector\protector.yaml on Windows].
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
    /// How many daily log files to keep (at least 1).
    #[arg(long, value_name = "N", default_value_t = 7, requires = "log_file",
          value_parser = clap::value_parser!(u16).range(1..))]
    log_keep: u16,
    /// With --log-file: log only to the file, not to stderr.
    #[arg(long, requires = "log_file")]
    no_stderr: bool,
    /// Also write records (info and above, each with its level's type) to the Windows Event
    /// Log, Application log, source `protector`; the service does this always.
    #[cfg(windows)]
    #[arg(long)]
    event_log: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Watch the targets of a config file until stopped.
    Run {
        #[arg(short, long, value_name = "FILE", help = CONFIG_HELP)]
        config: Option<PathBuf>,
        #[command(flatten)]
        run: RunOpts,
    },
    /// Validate a config file offline (never runs a command) and print the effective targets.
    Check {
        #[arg(short, long, value_name = "FILE", help = CONFIG_HELP)]
        config: Option<PathBuf>,
        /// The config file, given without --config; several are checked one after another
        /// (as a pre-commit hook passes them), the exit status the worst of theirs.
        #[arg(value_name = "FILE", conflicts_with = "config")]
        files: Vec<PathBuf>,
        /// Check the files alone, looking at nothing on this machine (programs, heartbeats'
        /// directories): for a repository's pre-commit hook or CI, which run where the config
        /// is kept, not where it is used.
        #[arg(long)]
        file_only: bool,
        /// Say where each setting comes from (which of the six layers, or the default).
        #[arg(long)]
        explain: bool,
        /// Resolve for this OS instead of the one protector runs on. Variables in paths are
        /// only expanded for the OS protector runs on.
        #[arg(long, value_enum)]
        os: Option<Os>,
        /// `json`: one JSON document with every problem as a record (file, line, column, key,
        /// kind, message), for CI annotations; the exit status is the same.
        #[arg(long, value_enum, default_value_t)]
        format: check::Format,
    },
    /// Show each target's state from protector's state file; exit 1 unless protector runs and
    /// every enabled target is watching normally.
    Status {
        /// Config file whose `state_file` to read [default: the default config file].
        #[arg(short, long, value_name = "FILE", conflicts_with = "state_file")]
        config: Option<PathBuf>,
        /// The config file, given without --config (a word naming a file, or ending in .yaml
        /// or .yml), then the targets to show (default: all).
        #[arg(value_name = "FILE | NAME")]
        words: Vec<String>,
        /// The state file to read.
        #[arg(long, value_name = "FILE")]
        state_file: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// What services looked like when they were restarted: list, or `show ID` one whole.
    Incidents(incidents::IncidentsArgs),
    /// Stop judging targets (no restart) until resumed or the pause ends (default 1h).
    Pause(control::PauseArgs),
    /// Watch paused targets again.
    Resume(control::Which),
    /// Restart targets now (stop, then start; no skip_if) and wait for the outcome.
    Restart(control::Which),
    /// Clear targets' backoff, consecutive restarts and a given-up state.
    Reset(control::Which),
    /// Reload the config (as SIGHUP does) and say whether it was applied or why not.
    Reload(control::To),
    /// Print the JSON schema of the config file.
    Schema,
    /// Print the manual page (roff): `protector manpage | man -l -`.
    Manpage,
    /// Reads what a start command left running writes to its inherited output, after the
    /// command exited, so it survives protector's exit (see platform/drain_unix.rs).
    #[cfg(unix)]
    #[command(name = crate::platform::DRAIN_WORD, hide = true)]
    DrainOutput {
        /// The target whose command it was (for `ps`).
        #[arg(value_name = "NAME")]
        _target: String,
    },
    /// Looks at heartbeat files for a daemon, on stdin and stdout (see daemon/looks/helper.rs).
    #[cfg(target_os = "linux")]
    #[command(name = crate::daemon::LOOK_HELPER_WORD, hide = true)]
    LookHelper,
    /// Install, remove or run protector as a Windows service.
    #[cfg(windows)]
    Service {
        #[command(subcommand)]
        action: crate::service::Action,
    },
}

/// Parses the command line, does what it says, prints what it says and exits: the one way
/// out of the CLI (`Outcome::exit`).
pub fn main() -> ExitCode {
    crate::platform::tune_memory();
    run(Cli::parse_from(globals_after_subcommand(
        std::env::args_os().collect(),
    )))
    .exit()
}

/// `protector -q check FILE` as `protector check -q FILE`: the options every command takes
/// (`-v`, `-q`, `--log-format`, `--no-strict-modes`), written before a subcommand, moved
/// after it. Clap would otherwise read the subcommand as the original form's first word (any
/// option before it counts as the top level's), and refuse it.
fn globals_after_subcommand(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    use clap::CommandFactory;
    let mut at = 1;
    while let Some(arg) = args.get(at).and_then(|a| a.to_str()) {
        let flag = arg.starts_with('-')
            && arg.len() > 1
            && (arg.trim_start_matches(['v', 'q', '-']).is_empty() && !arg.starts_with("--")
                || ["--verbose", "--quiet", "--no-strict-modes"].contains(&arg)
                || arg.starts_with("--log-format="));
        if flag {
            at += 1;
        } else if arg == "--log-format" {
            at += 2;
        } else {
            break;
        }
    }
    let word = args.get(at).and_then(|a| a.to_str()).unwrap_or("");
    let is_subcommand = at > 1
        && Cli::command()
            .get_subcommands()
            .any(|c| c.get_name() == word || c.get_all_aliases().any(|a| a == word));
    if is_subcommand && at < args.len() {
        let globals: Vec<_> = args.drain(1..at).collect();
        let after = 2;
        args.splice(after..after, globals);
    }
    args
}

/// Does what the command line `cli` says.
fn run(cli: Cli) -> Outcome {
    let or_default = |given: Option<PathBuf>| given.unwrap_or_else(default_config);
    if cli.global.no_strict_modes {
        crate::perms::relax();
    }
    let log = |run: &RunOpts| LogOptions {
        verbosity: cli.global.verbose as i8 - cli.global.quiet as i8,
        format: cli.global.log_format,
        file: run.log_file.clone(),
        keep: usize::from(run.log_keep),
        stderr: !run.no_stderr,
        #[cfg(windows)]
        event_log: run.event_log.then(|| "protector".to_string()),
        #[cfg(not(windows))]
        event_log: None,
    };
    match cli.command {
        #[cfg(unix)]
        Some(Command::DrainOutput { .. }) => Outcome::status(crate::platform::drain_main()),
        #[cfg(target_os = "linux")]
        Some(Command::LookHelper) => Outcome::status(crate::daemon::look_helper_main()),
        Some(Command::Schema) => Outcome::ok().say(config::schema::schema_text()),
        Some(Command::Manpage) => {
            use clap::CommandFactory;
            Outcome::ok().say(man::render(Cli::command()))
        }
        Some(Command::Incidents(args)) => incidents::run(args),
        Some(Command::Pause(args)) => control::pause(args),
        Some(Command::Resume(which)) => control::on_targets(crate::control::Verb::Resume, which),
        Some(Command::Restart(which)) => control::on_targets(crate::control::Verb::Restart, which),
        Some(Command::Reset(which)) => control::on_targets(crate::control::Verb::Reset, which),
        Some(Command::Reload(to)) => control::reload(to),
        Some(Command::Check {
            config,
            files,
            file_only,
            os,
            explain,
            format,
        }) => {
            let how = check::How {
                os: os.unwrap_or(Os::host()),
                quiet: cli.global.quiet > 0,
                explain,
                format,
                file_only,
            };
            let files = match config {
                Some(config) => vec![config],
                None if files.is_empty() => vec![default_config()],
                None => files,
            };
            check::run_all(&files, &how)
        }
        #[cfg(windows)]
        Some(Command::Service { action }) => {
            let verbosity = cli.global.verbose as i8 - cli.global.quiet as i8;
            match crate::service::main(action, cli.global.log_format, verbosity) {
                Ok(said) => Outcome::ok().say(said.out).say_err(said.warnings),
                Err(e) => Outcome::failed(format!("protector: {e:#}")),
            }
        }
        Some(Command::Status {
            config,
            words,
            state_file,
            json,
        }) => {
            // The first word is the config file when nothing else names one and it looks
            // like a file; the others name targets.
            let is_file =
                |w: &String| w.ends_with(".yaml") || w.ends_with(".yml") || Path::new(w).is_file();
            let (config, names) = match words.split_first() {
                Some((first, rest))
                    if config.is_none() && state_file.is_none() && is_file(first) =>
                {
                    (Some(PathBuf::from(first)), rest)
                }
                _ => (config, &words[..]),
            };
            status::run(config, state_file, json, names)
        }
        Some(Command::Run {
            ref config,
            ref run,
        }) => start::run_config(&or_default(config.clone()), &log(run), run.dry_run),
        None => match (
            &cli.config,
            cli.legacy.is_empty(),
            legacy::shape(&cli.legacy),
        ) {
            (config, true, _) => {
                start::run_config(&or_default(config.clone()), &log(&cli.run), cli.run.dry_run)
            }
            (_, false, legacy::Shape::Subcommand(word)) => legacy::unknown_subcommand(word),
            (Some(_), false, legacy::Shape::Legacy) => legacy::usage_error(
                "give either --config FILE or the four positional arguments, not both",
            ),
            (None, false, legacy::Shape::Legacy) => {
                start::run_legacy(&cli.legacy, &log(&cli.run), cli.run.dry_run)
            }
        },
    }
}
