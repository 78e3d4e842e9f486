//! The original tool's command line, `protector FILE STOP_CMD START_CMD TIMEOUT_SECS`, told
//! apart from a mistyped subcommand by its shape.

use super::outcome::Outcome;
use std::path::PathBuf;
use std::time::Duration;

use clap::CommandFactory;

use crate::config::{self, CommandLine, Os, Target};

pub const USAGE: &str = "\
usage: protector FILE STOP_CMD START_CMD TIMEOUT_SECS
   or: protector [--config FILE]            (default /etc/protector/protector.yaml)
   or: protector run|check|status [--config FILE | FILE]
   or: protector pause|resume|restart|reset NAME... | --all;  protector reload
   or: protector schema
Run 'protector --help' for more.";

pub fn usage_error(msg: &str) -> Outcome {
    Outcome::status(2).say_err(format!("protector: {msg}\n{USAGE}"))
}

/// What the words left on the command line (no subcommand matched them) are taken for.
pub enum Shape<'a> {
    /// The original form: four arguments, the last a number; or a heartbeat path with the
    /// wrong arguments after it (its own errors say what is wrong).
    Legacy,
    /// A single word where a subcommand goes: a mistyped one.
    Subcommand(&'a str),
}

pub fn shape(words: &[String]) -> Shape<'_> {
    let four_with_number = words.len() == 4 && words[3].trim().bytes().all(|b| b.is_ascii_digit());
    match words.first() {
        Some(first)
            if !four_with_number
                && !first.is_empty()
                && first.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') =>
        {
            Shape::Subcommand(first)
        }
        _ => Shape::Legacy,
    }
}

/// clap's own "unrecognized subcommand" error, with the closest subcommand as a tip; exits 2.
pub fn unknown_subcommand(word: &str) -> ! {
    let mut cmd = super::Cli::command();
    if word == "service" && !cfg!(windows) {
        cmd.error(
            clap::error::ErrorKind::InvalidSubcommand,
            "`protector service` is for Windows only; on Linux run protector under systemd \
             (the unit in examples/systemd/protector.service)",
        )
        .exit();
    }
    let names: Vec<String> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_string())
        .collect();
    let tip = crate::text::nearest(word, names.iter().map(String::as_str))
        .map(|n| format!("\n\n  tip: a similar subcommand exists: '{n}'"))
        .unwrap_or_default();
    cmd.error(
        clap::error::ErrorKind::InvalidSubcommand,
        format!("unrecognized subcommand '{word}'{tip}"),
    )
    .exit()
}

/// The single target of the original form.
pub fn target(args: &[String]) -> Result<Target, String> {
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
    target.policy_mut().stop = Some(shell(stop));
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_original_form_is_told_from_a_mistyped_subcommand_by_its_shape() {
        for legacy in [
            &["/tmp/beat", "stop", "start", "300"][..],
            &["beat", "stop", "start", "300"],
            &["/tmp/beat", "stop", "start", "five"],
            &["/tmp/beat", "stop", "start"],
            &["C:\\beat", "net stop x", "net start x", "60"],
        ] {
            assert!(matches!(shape(&words(legacy)), Shape::Legacy), "{legacy:?}");
        }
        for typo in [
            &["stauts"][..],
            &["chek"],
            &["satus", "x"],
            &["service", "install"],
        ] {
            assert!(
                matches!(shape(&words(typo)), Shape::Subcommand(_)),
                "{typo:?}"
            );
        }
    }
}
