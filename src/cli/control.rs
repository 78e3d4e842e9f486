//! `protector pause|resume|restart|reset|reload`: an operator's request to the running
//! protector, over its control socket (see `crate::control`), and its answer printed.

use super::outcome::Outcome;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::config::duration;
use crate::config::duration::DurationSpec;
use crate::control::{self, Request, Verb};

/// Which targets, for the commands that act on targets.
#[derive(Debug, Args)]
pub struct Which {
    /// The targets, by name.
    #[arg(value_name = "NAME", required_unless_present = "all")]
    names: Vec<String>,
    /// Every enabled target.
    #[arg(long, conflicts_with = "names")]
    all: bool,
    #[command(flatten)]
    to: To,
}

/// Which protector, and how to print its answer.
#[derive(Debug, Args)]
pub struct To {
    #[arg(short, long, value_name = "FILE", help = super::CONFIG_HELP)]
    config: Option<PathBuf>,
    /// Print the daemon's JSON answer as it is.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    #[command(flatten)]
    which: Which,
    /// How long (e.g. 30m, 2h); the pause ends by itself then [default: 1h].
    #[arg(long = "for", value_name = "DURATION")]
    for_: Option<String>,
    /// No end of its own: paused until `protector resume` (said again in the log once a day).
    #[arg(long, conflicts_with = "for_")]
    until_resumed: bool,
    /// Why, for `protector status` and the log.
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

pub fn pause(args: PauseArgs) -> Outcome {
    let for_secs = match args.for_.as_deref().map(parse_duration) {
        None => None,
        Some(Ok(d)) if d <= control::MAX_PAUSE => Some(d.as_secs_f64()),
        Some(Ok(_)) => {
            return usage(
                "--for: a pause lasts at most a year (use enabled: false in the config for longer)",
            );
        }
        Some(Err(e)) => return usage(&format!("--for {}: {e}", args.for_.unwrap_or_default())),
    };
    let mut req = request(Verb::Pause, &args.which);
    req.for_secs = for_secs;
    req.until_resumed = args.until_resumed;
    req.reason = args.reason;
    send(&args.which.to, &req)
}

pub fn on_targets(verb: Verb, which: Which) -> Outcome {
    let req = request(verb, &which);
    send(&which.to, &req)
}

pub fn reload(to: To) -> Outcome {
    let req = Request {
        protocol: control::PROTOCOL,
        command: Verb::Reload,
        targets: Vec::new(),
        all: false,
        for_secs: None,
        until_resumed: false,
        reason: None,
    };
    send(&to, &req)
}

fn request(verb: Verb, which: &Which) -> Request {
    Request {
        protocol: control::PROTOCOL,
        command: verb,
        targets: which.names.clone(),
        all: which.all,
        for_secs: None,
        until_resumed: false,
        reason: None,
    }
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let spec = match text.parse::<f64>() {
        Ok(secs) => DurationSpec::Seconds(secs),
        Err(_) => DurationSpec::Text(text.to_string()),
    };
    duration::parse(&spec)
}

fn usage(msg: &str) -> Outcome {
    Outcome::status(2).say_err(format!("protector: {msg}"))
}

/// Sends `req` to the protector of the config and prints its answer: exit 0 when everything
/// asked for was done, 1 otherwise (or when no protector answers).
fn send(to: &To, req: &Request) -> Outcome {
    let config = to.config.clone().unwrap_or_else(super::default_config);
    let sockets = control::sockets_for(&config);
    let socket = sockets
        .iter()
        .find(|s| std::fs::symlink_metadata(s).is_ok())
        .unwrap_or(&sockets[0]);
    let response = match control::ask_within(socket, req, answer_within(&config, req)) {
        Ok(r) => r,
        Err(e) => return Outcome::failed(format!("protector: {} ({})", e, describe(&config))),
    };
    let mut out = Outcome::status(if response.ok { 0 } else { 1 });
    if to.json {
        let line = serde_json::to_string(&response).expect("a response serializes");
        return out.say(line + "\n");
    }
    if let Some(e) = &response.error {
        out = out.say_err(format!("protector: {e}"));
    }
    if let Some(m) = &response.message {
        out = out.say(format!("{m}\n"));
    }
    for t in &response.targets {
        out = out.say(format!("{}: {}\n", t.name, t.message));
    }
    out
}

/// How long an answer may take: a restart is answered when it ends (its stop and start, each
/// bounded by the target's `command_timeout`, and a wait for a place among
/// `max_parallel_commands`); a reload when the config is loaded; the rest at once.
fn answer_within(config: &Path, req: &Request) -> std::time::Duration {
    use std::time::Duration;
    match req.command {
        Verb::Restart => crate::config::load(config, crate::config::Os::host())
            .ok()
            .and_then(|c| c.targets.iter().map(|t| t.command_timeout).max())
            .map_or(Duration::from_secs(3600), |longest| {
                longest.saturating_mul(2) + Duration::from_secs(120)
            }),
        Verb::Reload => Duration::from_secs(120),
        _ => Duration::from_secs(20),
    }
}

fn describe(config: &Path) -> String {
    format!("config {}", config.display())
}
