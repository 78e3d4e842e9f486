//! `protector status`: what a running (or the last) protector knows, read from its state file.
//! Exit status 0 only when protector is running and every enabled target is watching normally,
//! so it works in scripts and monitoring checks.

use std::path::Path;
use std::process::ExitCode;

use crate::fsutil::epoch_secs;
use crate::lock;
use crate::state::{self, StateFile, TargetRecord, TargetStatus};

/// Shows the targets named in `names` (all when empty); an unknown name is an error (exit 2)
/// listing the known ones.
pub fn run(state_path: &Path, json: bool, names: &[String]) -> ExitCode {
    let mut file = match state::load(state_path) {
        Ok(Some(f)) => f,
        Ok(None) => {
            eprintln!(
                "protector: no state file at {} (is protector running with `state_file` set?)",
                state_path.display()
            );
            return ExitCode::from(1);
        }
        Err(reason) => {
            eprintln!(
                "protector: cannot use state file {}: {reason}",
                state_path.display()
            );
            return ExitCode::from(1);
        }
    };
    if let Some(unknown) = names
        .iter()
        .find(|n| !file.targets.iter().any(|t| &t.name == *n))
    {
        let known: Vec<&str> = file.targets.iter().map(|t| t.name.as_str()).collect();
        crate::text::print_stderr(&format!(
            "protector: no target named {unknown:?}; known: {}\n",
            known.join(", ")
        ));
        return ExitCode::from(2);
    }
    if !names.is_empty() {
        file.targets.retain(|t| names.contains(&t.name));
    }
    let running = file
        .lock_file
        .as_deref()
        .is_some_and(|l| lock::is_held(Path::new(l)));
    // Running on the last accepted copy of a refused config is not fine either.
    let healthy =
        running && file.config_refused.is_none() && file.targets.iter().all(|t| t.state.is_fine());
    let now = epoch_secs(std::time::SystemTime::now());
    let files = heartbeat_files(&file.targets, now);
    let text = if json {
        let mut value = serde_json::to_value(&file).expect("state serializes");
        value["running"] = running.into();
        value["healthy"] = healthy.into();
        value["checked_at"] = now.into();
        for ((t, rec), f) in value["targets"]
            .as_array_mut()
            .expect("targets")
            .iter_mut()
            .zip(&file.targets)
            .zip(&files)
        {
            t["heartbeat_age_secs"] = rec.last_heartbeat.map(|h| (now - h).max(0.0)).into();
            t["heartbeat_file_age_secs"] = match f {
                Beat::Age(age) => (*age).into(),
                Beat::Missing | Beat::Unknown => serde_json::Value::Null,
            };
        }
        let mut s = serde_json::to_string_pretty(&value).expect("json");
        s.push('\n');
        s
    } else {
        table(&file, &files, running, now)
    };
    crate::text::print_stdout(&text);
    if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// A heartbeat file as `status` finds it now.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Beat {
    /// Its age from its modification time.
    Age(f64),
    Missing,
    /// It could not be looked at (in time).
    Unknown,
}

/// How long `status` looks at heartbeat files in all: a dead mount must not hang it.
const LOOK_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The targets' heartbeat files now, looked at on a thread of their own for at most
/// `LOOK_LIMIT` in all (what was not looked at by then is `Unknown`).
fn heartbeat_files(targets: &[TargetRecord], now: f64) -> Vec<Beat> {
    let paths: Vec<String> = targets.iter().map(|t| t.heartbeat.clone()).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    let looker = std::thread::Builder::new()
        .name("status-look".into())
        .spawn(move || {
            for p in paths {
                let beat = match std::fs::metadata(&p).and_then(|m| m.modified()) {
                    Ok(at) => Beat::Age((now - epoch_secs(at)).max(0.0)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Beat::Missing,
                    Err(_) => Beat::Unknown,
                };
                if tx.send(beat).is_err() {
                    break;
                }
            }
        });
    let mut beats = Vec::with_capacity(targets.len());
    if looker.is_ok() {
        let until = std::time::Instant::now() + LOOK_LIMIT;
        while beats.len() < targets.len() {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(beat) => beats.push(beat),
                Err(_) => break,
            }
        }
    }
    beats.resize(targets.len(), Beat::Unknown);
    beats
}

fn table(file: &StateFile, files: &[Beat], running: bool, now: f64) -> String {
    let mut out = format!(
        "protector {} (pid {}{}), state written {} ago{}\n",
        if running {
            "is running"
        } else {
            "is NOT running: what it last wrote"
        },
        file.pid,
        if running {
            format!(", up {}", human(now - file.started_at))
        } else {
            String::new()
        },
        human(now - file.written_at),
        file.config
            .as_deref()
            .map(|c| format!(", config {c}"))
            .unwrap_or_default()
    );
    if let Some(r) = file.config_refused.as_ref().filter(|_| running) {
        out.push_str(&format!(
            "CONFIG REFUSED: the config file was refused at start-up {} ago; running on the last \
             config accepted{}, {} (fix the file, then `protector reload`):\n",
            human(now - r.since),
            r.accepted_at
                .map(|t| format!(" {} ago", human(now - t)))
                .unwrap_or_default(),
            r.running_on
        ));
        for p in &r.problems {
            out.push_str(&format!("  {p}\n"));
        }
    }
    let header = [
        "TARGET",
        "STATE",
        "HEARTBEAT AGE",
        "RESTARTS",
        "NEXT CHECK",
        "LAST RESTART",
    ];
    let rows: Vec<[String; 6]> = file
        .targets
        .iter()
        .zip(files)
        .map(|(t, f)| row(t, *f, running, now))
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: &[String]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                l.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header.map(String::from));
    for r in &rows {
        line(r);
    }
    // Why the last restarts' commands failed, in their own words.
    for t in &file.targets {
        let Some(r) = &t.last_restart else { continue };
        for c in r.commands.iter().filter(|c| !c.output.is_empty()) {
            out.push_str(&format!(
                "{}: {} {} ago ({}):\n",
                t.name,
                c.command,
                human(now - r.at),
                c.status
            ));
            for l in c.output.lines() {
                out.push_str(&format!("    {l}\n"));
            }
        }
    }
    out
}

/// One target's line. The heartbeat's age is the file's now; only when the file cannot be
/// looked at, the newest heartbeat protector saw, said as such. Without a running protector
/// its state is what it was, and no check is coming.
fn row(t: &TargetRecord, file: Beat, running: bool, now: f64) -> [String; 6] {
    let age = match (file, t.last_heartbeat) {
        (Beat::Age(age), _) => human(age),
        (Beat::Missing, _) => "missing".into(),
        (Beat::Unknown, Some(h)) => format!("{} (last seen)", human(now - h)),
        (Beat::Unknown, None) => "never seen".into(),
    };
    let restarts = if t.consecutive_restarts > 0 {
        format!("{} ({} in a row)", t.restarts_total, t.consecutive_restarts)
    } else {
        t.restarts_total.to_string()
    };
    // A given-up target is only looked at for a heartbeat: no check is coming.
    let next = t
        .next_check
        .filter(|_| running && t.state != TargetStatus::GivenUp)
        .map_or("-".into(), |n| {
            if n > now {
                format!("in {}", human(n - now))
            } else {
                "now".into()
            }
        });
    let last = t.last_restart.as_ref().map_or("-".into(), |r| {
        let cmds: Vec<String> = r
            .commands
            .iter()
            .map(|c| {
                let how = if c.timed_out {
                    "timed out".to_string()
                } else if c.ok() {
                    "ok".to_string()
                } else {
                    c.exit_code
                        .map_or(c.status.clone(), |code| format!("exit {code}"))
                };
                format!("{} {how}", c.command)
            })
            .collect();
        format!(
            "{} ago: {}",
            human(now - r.at),
            if cmds.is_empty() {
                "running".into()
            } else {
                cmds.join(", ")
            }
        )
    });
    let state = match (t.state, t.paused_until) {
        (TargetStatus::Paused, Some(_)) if t.pause_until_resumed => format!(
            "paused (until resumed{})",
            t.pause_reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        (TargetStatus::Paused, Some(until)) => format!(
            "paused ({} left{})",
            human(until - now),
            t.pause_reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        (TargetStatus::Held, _) => format!(
            "held {}: a dependency is down{}",
            t.held_since
                .map_or(String::new(), |at| format!("for {}", human(now - at))),
            t.dependency
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ),
        _ => t.state.to_string(),
    };
    let state = if running {
        state
    } else {
        format!("was {state}")
    };
    [t.name.clone(), state, age, restarts, next, last]
}

/// `45s`, `4m48s`, `2h3m`, `3d4h`.
pub fn human(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}
