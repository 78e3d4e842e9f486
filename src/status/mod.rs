//! `protector status`: what a running (or the last) protector knows, read from its state file.
//! Exit status 0 only when protector is running and every enabled target is watching normally,
//! so it works in scripts and monitoring checks.

use std::path::Path;

use crate::fsutil::epoch_secs;
use crate::lock;
use crate::state::{self, StateFile, TargetRecord, TargetStatus};

mod now;
use now::{Beat, Look, Service};

/// What `status` shows, and whether everything is fine (its exit status 0).
pub struct Shown {
    pub text: String,
    pub healthy: bool,
}

/// Why `status` shows nothing: what to say, and the exit status (1: no usable state file;
/// 2: an unknown target name).
pub struct NotShown {
    pub status: u8,
    pub message: String,
}

/// The targets named in `names` (all when empty) as the state file at `state_path` (read up
/// to `max` bytes) has them; an unknown name lists the known ones.
pub fn show(state_path: &Path, max: u64, json: bool, names: &[String]) -> Result<Shown, NotShown> {
    let no_state = |message: String| NotShown { status: 1, message };
    let mut file = match state::load(state_path, max) {
        Ok(Some(f)) => f,
        Ok(None) => {
            return Err(no_state(format!(
                "protector: no state file at {} (is protector running with `state_file` set?)",
                state_path.display()
            )));
        }
        Err(reason) => {
            return Err(no_state(format!(
                "protector: cannot use state file {}: {reason}",
                state_path.display()
            )));
        }
    };
    if let Some(unknown) = names
        .iter()
        .find(|n| !file.targets.iter().any(|t| &t.name == *n))
    {
        let known: Vec<&str> = file.targets.iter().map(|t| t.name.as_str()).collect();
        return Err(NotShown {
            status: 2,
            message: format!(
                "protector: no target named {unknown:?}; known: {}",
                known.join(", ")
            ),
        });
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
    let looks = now::look(&file.targets, now);
    let text = report(file, &looks, running, healthy, now, json);
    Ok(Shown { text, healthy })
}

fn report(
    mut file: StateFile,
    looks: &[Look],
    running: bool,
    healthy: bool,
    now: f64,
    json: bool,
) -> String {
    if !json {
        return table(&file, looks, running, now);
    }
    // Each target's record with what was looked at now, serialized as it goes (a JSON
    // document of 100,000 targets built first took a second).
    let records = std::mem::take(&mut file.targets);
    let Ok(header) = serde_json::to_value(&file) else {
        return "{}\n".into();
    };
    let targets: Vec<JsonTarget> = records
        .iter()
        .zip(looks)
        .map(|(record, look)| JsonTarget {
            record,
            heartbeat_age_secs: record.last_heartbeat.map(|h| (now - h).max(0.0)),
            heartbeat_file_age_secs: match look.beat {
                Beat::Age(age) => Some(age),
                Beat::Missing | Beat::Unknown => None,
            },
            service_pid: match look.service {
                Service::NotNamed => None,
                Service::Pid { pid, .. } => Some(Some(pid)),
                _ => Some(None),
            },
            service_running: match look.service {
                Service::Pid { running, .. } => Some(running),
                _ => None,
            },
        })
        .collect();
    let status = JsonStatus {
        header,
        running,
        healthy,
        checked_at: now,
        targets,
    };
    let mut s = serde_json::to_string_pretty(&status).unwrap_or_default();
    s.push('\n');
    s
}

/// `status --json`: the state file, and what `status` found now.
#[derive(serde::Serialize)]
struct JsonStatus<'a> {
    /// The state file's own keys.
    #[serde(flatten)]
    header: serde_json::Value,
    running: bool,
    healthy: bool,
    checked_at: f64,
    targets: Vec<JsonTarget<'a>>,
}

/// A target in `status --json`: its record, and its files as they are now.
#[derive(serde::Serialize)]
struct JsonTarget<'a> {
    #[serde(flatten)]
    record: &'a TargetRecord,
    heartbeat_age_secs: Option<f64>,
    heartbeat_file_age_secs: Option<f64>,
    /// The pid file's pid (`null`: no pid file now); absent when the target names none.
    #[serde(skip_serializing_if = "Option::is_none")]
    service_pid: Option<Option<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_running: Option<bool>,
}

/// The state file `text` as `status` would print it at `now` (with `running` as given and
/// nothing looked at), or why it is not a state file: the whole path from a state file's
/// bytes to what an operator reads, for fuzzing.
pub fn render_text(text: &str, running: bool, now: f64, json: bool) -> Result<String, String> {
    let file = state::parse(text).map_err(|e| e.to_string())?;
    let looks: Vec<Look> = file.targets.iter().map(now::not_looked).collect();
    Ok(report(file, &looks, running, running, now, json))
}

fn table(file: &StateFile, looks: &[Look], running: bool, now: f64) -> String {
    let mut out = format!(
        "protector {} (pid {}{}), state written {} ago{}\n",
        if running {
            "is running"
        } else {
            "is NOT running: what it last wrote"
        },
        file.pid,
        if running {
            format!(", up {}", crate::text::human(now - file.started_at))
        } else {
            String::new()
        },
        crate::text::human(now - file.written_at),
        file.config
            .as_deref()
            .map(|c| format!(", config {c}"))
            .unwrap_or_default()
    );
    if let Some(r) = file.config_refused.as_ref().filter(|_| running) {
        out.push_str(&format!(
            "CONFIG REFUSED: the config file was refused at start-up {} ago; running on the last \
             config accepted{}, {} (fix the file, then `protector reload`):\n",
            crate::text::human(now - r.since),
            r.accepted_at
                .map(|t| format!(" {} ago", crate::text::human(now - t)))
                .unwrap_or_default(),
            r.running_on
        ));
        for p in &r.problems {
            out.push_str(&format!("  {p}\n"));
        }
    }
    let mut header = vec![
        "TARGET",
        "STATE",
        "HEARTBEAT AGE",
        "RESTARTS",
        "NEXT CHECK",
        "LAST RESTART",
    ];
    let mut rows: Vec<Vec<String>> = file
        .targets
        .iter()
        .zip(looks)
        .map(|(t, look)| row(t, look.beat, running, now).to_vec())
        .collect();
    // The service's pid, when a target names its pid file.
    if looks.iter().any(|l| l.service != Service::NotNamed) {
        header.insert(2, "SERVICE PID");
        for (r, look) in rows.iter_mut().zip(looks) {
            r.insert(2, look.service.cell());
        }
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: &[String]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            l.push_str(cell);
            if i + 1 < cells.len() {
                // Padded by hand: a format width has a bound (u16), a name from a state
                // file has none.
                let pad = w.saturating_sub(cell.chars().count()) + 2;
                l.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    for r in &rows {
        line(r);
    }
    // What the services looked like before their last restarts, and why the restarts'
    // commands failed, in their own words.
    for t in &file.targets {
        let Some(r) = &t.last_restart else { continue };
        if let Some(n) = &r.incident {
            out.push_str(&format!(
                "{}: incident {} ago: {} (protector incidents show {})\n",
                t.name,
                crate::text::human(now - r.at),
                n.summary,
                n.id
            ));
        }
        for c in r.commands.iter().filter(|c| !c.output.is_empty()) {
            out.push_str(&format!(
                "{}: {} {} ago ({}):\n",
                t.name,
                c.command,
                crate::text::human(now - r.at),
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
        (Beat::Age(age), _) => crate::text::human(age),
        (Beat::Missing, _) => "missing".into(),
        (Beat::Unknown, Some(h)) => format!("{} (last seen)", crate::text::human(now - h)),
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
                format!("in {}", crate::text::human(n - now))
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
            crate::text::human(now - r.at),
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
            crate::text::human(until - now),
            t.pause_reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        (TargetStatus::Held, _) => format!(
            "held {}: a dependency is down{}",
            t.held_since.map_or(String::new(), |at| format!(
                "for {}",
                crate::text::human(now - at)
            )),
            t.dependency
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ),
        _ => t.state.to_string(),
    };
    let state = if t.observe_only {
        format!("{state} (observe only)")
    } else {
        state
    };
    let state = if running {
        state
    } else {
        format!("was {state}")
    };
    [t.name.clone(), state, age, restarts, next, last]
}

#[cfg(test)]
mod tests {
    /// A target not looked at in time shows no service unless it names a pid file: the
    /// SERVICE PID column is the pid files', not the looks'.
    #[test]
    fn only_targets_with_a_pid_file_have_a_service_cell() {
        let state = include_str!("../../tests/fuzz/corpus/state/restarted-and-paused.json");
        let table = super::render_text(state, false, 1.8e9, false).unwrap();
        let cells = |name: &str| -> Vec<String> {
            let row = table
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap();
            row.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        };
        assert!(table.contains("SERVICE PID"), "{table}");
        assert_eq!(cells("svc")[2], "unknown", "{table}");
        assert_eq!(cells("other")[2], "-", "{table}");
    }
}
