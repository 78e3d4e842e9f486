//! The effective targets of a config, as `check` prints them (and `--explain`, where each
//! setting comes from).

use crate::config::origins::Origins;
use crate::config::{CommandLine, Config, Os, duration::format as fmt_dur};

/// The first line of [`describe`]: `FILE: valid for linux; 3 targets` (all `check -q` says of
/// a valid file).
pub fn headline(file: &str, config: &Config) -> String {
    let n = config.targets.len();
    format!(
        "{file}: valid for {}; {n} target{}\n",
        config.os,
        if n == 1 { "" } else { "s" }
    )
}

/// The effective settings of `config`; with `origins` (`check --explain`), where each comes
/// from.
pub fn describe(file: &str, config: &Config, origins: Option<&Origins>) -> String {
    use std::fmt::Write;
    let n = config.targets.len();
    let mut out = headline(file, config);
    // Each target's file: the main one's come first, then each included file's.
    let main_count = n - config.included.iter().map(|i| i.targets).sum::<usize>();
    let mut written_in = std::iter::repeat_n(None, main_count).chain(
        config
            .included
            .iter()
            .flat_map(|i| std::iter::repeat_n(Some(i.file.as_str()), i.targets)),
    );
    for i in &config.included {
        let _ = writeln!(
            out,
            "included: {} ({} target{})",
            i.file,
            i.targets,
            if i.targets == 1 { "" } else { "s" }
        );
    }
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
            "\ntarget {}{}{}",
            t.name,
            if t.enabled { "" } else { " (disabled)" },
            written_in
                .next()
                .flatten()
                .map_or(String::new(), |f| format!(" (from {f})"))
        );
        let from = origins.and_then(|o| o.get(&t.name));
        // `  key:   value`, and with --explain where the value comes from.
        let mut line = |label: &str, value: String, keys: &[&str]| {
            // `  label:` padded to 19 columns (labels are ASCII), a longer one followed by a
            // space; without a format per line: `check` describes every target.
            out.push_str("  ");
            out.push_str(label);
            out.push(':');
            out.extend(std::iter::repeat_n(
                ' ',
                16usize.saturating_sub(label.len()).max(1),
            ));
            out.push_str(&value);
            if let Some(from) = from {
                let said: Vec<String> = keys
                    .iter()
                    .map(|k| {
                        let layer = from.get(k).map_or("default", String::as_str);
                        if keys.len() > 1 {
                            format!("{}: {layer}", k.rsplit('/').next().unwrap_or(k))
                        } else {
                            layer.to_string()
                        }
                    })
                    .collect();
                let _ = write!(out, "   [from {}]", said.join(", "));
            }
            out.push('\n');
        };
        line(
            "heartbeat",
            t.heartbeat.display().to_string(),
            &["heartbeat"],
        );
        line("timeout", fmt_dur(t.timeout), &["timeout"]);
        let stop = t.stop.as_ref().map_or("(none)".into(), argv);
        line("stop", stop, &["stop", "shell"]);
        line("start", argv(&t.start), &["start", "shell"]);
        line(
            "command_timeout",
            fmt_dur(t.command_timeout),
            &["command_timeout"],
        );
        line(
            "restart_grace",
            fmt_dur(t.restart_grace),
            &["restart_grace"],
        );
        line(
            "startup_grace",
            fmt_dur(t.startup_grace),
            &["startup_grace"],
        );
        let backoff = format!(
            "doubles after {} consecutive restarts, up to {}",
            t.backoff.after,
            fmt_dur(t.backoff.max)
        );
        line("backoff", backoff, &["backoff/after", "backoff/max"]);
        let max = t
            .max_restarts
            .map_or("none (never give up)".into(), |m| m.to_string());
        line("max_restarts", max, &["max_restarts"]);
        if t.observe_only {
            let value = "true (when hung: an incident and notify; stop and start never run)";
            line("observe_only", value.to_string(), &["observe_only"]);
        }
        if t.allow_missing_programs {
            let value = "true (a program not found here is a warning)".to_string();
            line("allow_missing_programs", value, &["allow_missing_programs"]);
        }
        if let Some(notify) = &t.notify {
            line("notify", argv(notify), &["notify", "shell"]);
        }
        if let Some(diagnose) = &t.diagnose {
            let value = format!(
                "{} (at most {})",
                argv(diagnose),
                fmt_dur(t.diagnose_timeout)
            );
            line(
                "diagnose",
                value,
                &["diagnose", "diagnose_timeout", "shell"],
            );
        }
        if let Some(skip_if) = &t.skip_if {
            let value = format!("{} (then wait {})", argv(skip_if), fmt_dur(t.skip_delay));
            line("skip_if", value, &["skip_if", "skip_delay"]);
        }
        if let Some(d) = &t.depends_on {
            let mut parts = Vec::new();
            if !d.tcp.is_empty() {
                let list: Vec<String> = d.tcp.iter().map(ToString::to_string).collect();
                parts.push(format!("tcp {} (any one)", list.join(", ")));
            }
            if let Some(c) = &d.command {
                parts.push(format!("command {}", argv(c)));
            }
            let value = format!(
                "{}; each check at most {}, held: checked again within {}",
                parts.join(" and "),
                fmt_dur(d.check_timeout),
                fmt_dur(d.recheck)
            );
            line(
                "depends_on",
                value,
                &[
                    "depends_on/tcp",
                    "depends_on/command",
                    "depends_on/check_timeout",
                    "depends_on/recheck",
                ],
            );
        }
        if !t.restart_splay.is_zero() {
            let value = format!("a random wait of up to {}", fmt_dur(t.restart_splay));
            line("restart_splay", value, &["restart_splay"]);
        }
        if let Some(pid_file) = &t.pid_file {
            line("pid_file", pid_file.display().to_string(), &["pid_file"]);
        }
        if let Some(service) = &t.service {
            line("service", service.clone(), &["service"]);
        }
    }
    out
}
