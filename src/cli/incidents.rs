//! `protector incidents`: what services looked like when they were restarted (see
//! `crate::incident`), from the incidents directory beside the config's state file.

use std::path::PathBuf;

use clap::Args;

use super::outcome::Outcome;
use crate::config::{self, Os};
use crate::incident::{self, Incident};

#[derive(Debug, Args)]
pub struct IncidentsArgs {
    /// Config file whose state file's incidents to read [default: the default config file].
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Targets whose incidents to list (default: all); or `show ID` for one incident whole.
    #[arg(value_name = "NAME | show ID")]
    words: Vec<String>,
    /// List only the newest N [default: 20].
    #[arg(long, value_name = "N")]
    last: Option<usize>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: IncidentsArgs) -> Outcome {
    let cfg = args.config.unwrap_or_else(super::default_config);
    let state = match config::accepted::start_on(&cfg, Os::host()) {
        Ok(start) => match start.config.files.state_file {
            Some(state) => state,
            None => {
                return Outcome::failed(format!(
                    "protector: {} sets no `state_file`, so no incidents are kept",
                    cfg.display()
                ));
            }
        },
        Err(e) => return Outcome::failed(e),
    };
    let all = incident::read_all(&incident::dir_beside(&state));
    if let [show, id] = args.words.as_slice()
        && show == "show"
    {
        return match all.iter().find(|i| i.id == *id) {
            Some(i) if args.json => {
                Outcome::ok().say(serde_json::to_string_pretty(i).unwrap_or_default() + "\n")
            }
            Some(i) => Outcome::ok().say(whole(i)),
            None => Outcome::failed(format!("protector: no incident {id:?}")),
        };
    }
    let mut chosen: Vec<&Incident> = all
        .iter()
        .filter(|i| args.words.is_empty() || args.words.contains(&i.target))
        .collect();
    let last = args.last.unwrap_or(20);
    chosen.drain(..chosen.len().saturating_sub(last));
    if args.json {
        return Outcome::ok().say(serde_json::to_string_pretty(&chosen).unwrap_or_default() + "\n");
    }
    if chosen.is_empty() {
        return Outcome::ok().say("no incidents\n");
    }
    chosen.iter().fold(Outcome::ok(), |out, i| {
        out.say(format!("{}  {}  {}\n", i.id, i.reason, i.summary))
    })
}

/// One incident, whole, as people read it.
fn whole(i: &Incident) -> String {
    let mut out = format!(
        "incident {}\ntarget {}, {}; heartbeat age {}; restarts in a row: {}\nsummary: {}\n",
        i.id,
        i.target,
        i.reason,
        i.heartbeat_age_secs
            .map_or_else(|| "unknown".into(), crate::text::human),
        i.consecutive_restarts,
        i.summary
    );
    for p in &i.processes {
        out.push_str(&format!(
            "process {} (threads {}, {} {}, {} KiB resident{})\n",
            p.line(),
            p.threads,
            if cfg!(windows) {
                "handles"
            } else {
                "descriptors"
            },
            p.descriptors,
            p.resident_kib,
            p.age_secs
                .map(|a| format!(", up {}", crate::text::human(a as f64)))
                .unwrap_or_default()
        ));
        for c in &p.connections {
            out.push_str(&format!("    TCP {}\n", c.line()));
        }
        for frame in p.kernel_stack.lines() {
            out.push_str(&format!("    {frame}\n"));
        }
    }
    if let Some(why) = &i.processes_unseen {
        out.push_str(&format!("processes: {why}\n"));
    }
    if let Some(d) = &i.diagnose {
        out.push_str(&format!(
            "diagnose: {} ({}, {} ms{})\n",
            d.command,
            d.status,
            d.duration_ms,
            if d.cut { "; output cut to its end" } else { "" }
        ));
        for (name, text) in [("stdout", &d.stdout), ("stderr", &d.stderr)] {
            if !text.is_empty() {
                out.push_str(&format!("  {name}:\n"));
                for line in text.lines() {
                    out.push_str(&format!("    {line}\n"));
                }
            }
        }
    }
    out
}
