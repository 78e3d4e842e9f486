//! `protector manpage`: the manual page, protector(1), in roff. Made by clap_mangen from the
//! same definitions as `--help`, so the two cannot disagree: the name, synopsis, description
//! and options of `protector` itself, then each command's whole `--help`, then what a daemon's
//! page needs that `--help` does not hold (files, signals, exit status, where the rest is
//! written). The packages install it; `protector manpage | man -l -` reads it anywhere.

use clap_mangen::Man;
use roff::{Roff, bold, italic, roman};

/// Width the commands' help is wrapped at in the page (shown as written, not refilled).
const WIDTH: usize = 78;

/// The page for `cmd` (protector's command line).
pub fn render(mut cmd: clap::Command) -> String {
    cmd.build();
    let man = Man::new(cmd.clone()).manual("protector manual");
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = man.render_title(&mut out);
    let _ = man.render_name_section(&mut out);
    let _ = man.render_synopsis_section(&mut out);
    let _ = man.render_description_section(&mut out);
    let _ = man.render_options_section(&mut out);
    let mut page = Roff::new();
    commands(&mut page, &cmd);
    for (title, paragraphs) in SECTIONS {
        page.control("SH", [*title]);
        for (term, text) in *paragraphs {
            match term {
                Some(term) => {
                    page.control("TP", []).text([bold(*term)]);
                }
                None => {
                    page.control("PP", []);
                }
            }
            page.text([roman(*text)]);
        }
    }
    page.control("SH", ["SEE ALSO"]).text([
        italic("README.md"),
        roman(" (every setting, operating, Windows, Salt), "),
        italic("SECURITY.md"),
        roman(" and the JSON schema in /usr/share/doc/protector/; "),
        bold("systemd.service"),
        roman("(5), "),
        bold("journalctl"),
        roman("(1)."),
    ]);
    let _ = page.to_writer(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// COMMANDS: each visible command with its whole `--help`, as `protector CMD --help` says it.
fn commands(page: &mut Roff, cmd: &clap::Command) {
    page.control("SH", ["COMMANDS"]);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        page.control("SS", [format!("protector {}", sub.get_name()).as_str()]);
        let help = sub.clone().term_width(WIDTH).render_long_help().to_string();
        page.control("nf", []);
        for line in help.lines() {
            page.text([roman(line)]);
        }
        page.control("fi", []);
    }
}

/// Sections after the commands: (title, paragraphs as (term, text)).
type Section = (
    &'static str,
    &'static [(Option<&'static str>, &'static str)],
);

const SECTIONS: &[Section] = &[
    (
        "CONFIGURATION",
        &[
            (
                None,
                "A YAML file lists the targets: each has a name, a heartbeat file, a timeout and \
                 its start command (and stop, notify, skip_if, depends_on, backoff and more), with \
                 `defaults` every target inherits and per-OS overrides under `os`. `include: \
                 conf.d/*.yaml` adds the targets of other files. `protector check` validates a \
                 file offline and prints what protector would do (`--explain`: where each setting \
                 comes from); `protector schema` prints the JSON schema editors use. Every \
                 setting is described in README.md.",
            ),
            (
                None,
                "A config file that is refused when protector starts (an edit with a mistake, \
                 then an upgrade or a restart) does not leave the host unwatched: protector runs \
                 on the last config it accepted, logs an error at start and again until the file \
                 is fixed, and `status` and `check` say so. A refused reload keeps the config in \
                 force.",
            ),
        ],
    ),
    (
        "FILES",
        &[
            (
                Some("/etc/protector/protector.yaml"),
                "The config file when none is named (%ProgramData%\\protector\\protector.yaml \
                 on Windows). Running as root, it and every directory above it must be root's \
                 and not writable by group or others (StrictModes; --no-strict-modes turns it \
                 off).",
            ),
            (
                Some("/etc/protector/conf.d/*.yaml"),
                "Target files the packaged config includes, each holding a `targets` list.",
            ),
            (
                Some("/etc/protector/.protector.yaml.accepted"),
                "The last config protector accepted (every included file's targets in it), \
                 run on when the file is refused at start-up. Root's alone (0600).",
            ),
            (
                Some("/var/lib/protector/state.json"),
                "The state file of the packaged config (`state_file`): each target's last \
                 heartbeat, restarts, pause and last commands, written atomically; read by \
                 `protector status` and at start-up, so backoff and pauses survive a restart.",
            ),
            (
                Some("/var/lib/protector/protector.prom"),
                "Prometheus metrics of the packaged config (`metrics_file`), for \
                 node_exporter's textfile collector.",
            ),
            (
                Some("/run/protector/"),
                "protector's runtime directory: the control socket (0600) that pause, resume, \
                 restart, reset and reload talk to (a named pipe on Windows). The instance \
                 lock is the state file's path plus `.lock`.",
            ),
        ],
    ),
    (
        "SIGNALS",
        &[
            (
                Some("SIGHUP"),
                "Reload the config, as `protector reload` does; a refused config keeps the one \
                 in force.",
            ),
            (
                Some("SIGTERM, SIGINT"),
                "Stop: no new restart begins, running commands finish within their bounds, the \
                 state is written, exit 0. A service between its stop and its start still gets \
                 its start. A second signal exits at once with status 1.",
            ),
        ],
    ),
    (
        "LOGGING",
        &[(
            None,
            "Logs go to stderr as text (--log-format json for one JSON object a line), each \
             record with a stable `event` field (restart, stale, command_failed, \
             dependency_down, ...). Under systemd each record carries its priority, so \
             `journalctl -u protector -p warning` shows what needs a look; the Windows \
             service writes them to the Event Log with their level's type. --log-file also \
             writes a daily-rotated file.",
        )],
    ),
    (
        "EXIT STATUS",
        &[
            (Some("0"), "Success."),
            (
                Some("1"),
                "An invalid config, another protector running for the same config, an \
                 unhealthy `status`, a request the running protector refused or could not \
                 carry out, or a runtime failure.",
            ),
            (Some("2"), "Wrong usage."),
            (
                Some("3"),
                "`check`: the config is valid, but a command's program cannot run on this \
                 machine (unless the target allows it with `allow_missing_programs`).",
            ),
        ],
    ),
];

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_page_has_every_section_and_every_command() {
        let page = super::render(crate::cli::Cli::command());
        assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{}", &page[..80]);
        for section in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "COMMANDS",
            "CONFIGURATION",
            "FILES",
            "SIGNALS",
            "LOGGING",
            "\"EXIT STATUS\"",
            "\"SEE ALSO\"",
        ] {
            assert!(page.contains(&format!("\n.SH {section}\n")), "no {section}");
        }
        for command in ["run", "check", "status", "pause", "reload", "manpage"] {
            assert!(
                page.contains(&format!(".SS \"protector {command}\"")),
                "{command}"
            );
        }
        // A command's own options are in the page, as its --help says them.
        assert!(
            page.contains("\\-\\-until\\-resumed"),
            "pause --until-resumed"
        );
        assert!(page.contains("\\-\\-explain"), "check --explain");
        // Hidden commands are not.
        assert!(!page.contains("__drain"), "the drain is internal");
    }
}
