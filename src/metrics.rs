//! Prometheus metrics in the text exposition format, for node_exporter's textfile collector.
//! Rendered from the same snapshot as the state file and written atomically beside it.

use std::io::{self, Write};

use crate::state::{StateFile, TargetRecord, TargetStatus};

/// A per-target metric: name, type, help and the value of one target (if it has one).
type Family<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a dyn Fn(&TargetRecord) -> Option<f64>,
);

/// Writes the metrics of `state` to the file `path`, atomically (not waited for onto the disk:
/// the file is written anew at every start).
pub fn write(path: &std::path::Path, state: &StateFile) -> io::Result<()> {
    crate::fsutil::write_atomically_unsynced(path, |w| render(state, w))
}

/// Writes the metrics of `state` to `out`, row by row.
pub fn render(state: &StateFile, out: &mut dyn Write) -> io::Result<()> {
    let head = |out: &mut dyn Write, name: &str, kind: &str, help: &str| {
        writeln!(out, "# HELP {name} {help}")?;
        writeln!(out, "# TYPE {name} {kind}")
    };
    let now = state.written_at;
    let per_target: [Family; 9] = [
        (
            "protector_heartbeat_age_seconds",
            "gauge",
            "Seconds since the target's last heartbeat, when this file was written.",
            &|t| t.last_heartbeat.map(|h| (now - h).max(0.0)),
        ),
        (
            "protector_last_heartbeat_timestamp_seconds",
            "gauge",
            "When the target's last heartbeat was seen (Unix time).",
            &|t| t.last_heartbeat,
        ),
        (
            "protector_restarts_total",
            "counter",
            "Restarts of the target.",
            &|t| Some(t.restarts_total as f64),
        ),
        (
            "protector_restarts_failed_total",
            "counter",
            "Restarts whose start command failed, could not run, or timed out.",
            &|t| Some(t.restarts_failed_total as f64),
        ),
        (
            "protector_consecutive_restarts",
            "gauge",
            "Restarts since the target's last heartbeat.",
            &|t| Some(f64::from(t.consecutive_restarts)),
        ),
        (
            "protector_command_failures_total",
            "counter",
            "Stop and start commands that failed, could not run, or timed out.",
            &|t| Some(t.command_failures_total as f64),
        ),
        (
            "protector_command_timeouts_total",
            "counter",
            "Stop and start commands killed at command_timeout.",
            &|t| Some(t.command_timeouts_total as f64),
        ),
        (
            "protector_last_restart_timestamp_seconds",
            "gauge",
            "When the target was last restarted (Unix time).",
            &|t| t.last_restart.as_ref().map(|r| r.at),
        ),
        (
            "protector_backoff_seconds",
            "gauge",
            "Current wait between consecutive restarts (0 when not backing off).",
            &|t| Some(t.backoff_secs),
        ),
    ];
    // Each target's label, escaped once for all its rows.
    let labels: Vec<String> = state.targets.iter().map(|t| escape(&t.name)).collect();
    for (name, kind, help, value) in per_target {
        head(out, name, kind, help)?;
        for (t, label) in state.targets.iter().zip(&labels) {
            if let Some(v) = value(t) {
                writeln!(out, "{name}{{target=\"{label}\"}} {v}")?;
            }
        }
    }
    let name = "protector_target_state";
    head(out, name, "gauge", "1 for the target's current state.")?;
    for (t, label) in state.targets.iter().zip(&labels) {
        for s in TargetStatus::ALL {
            let v = u8::from(t.state == s);
            writeln!(out, "{name}{{target=\"{label}\",state=\"{s}\"}} {v}")?;
        }
    }
    let name = "protector_heartbeat_observations_total";
    head(
        out,
        name,
        "counter",
        "Heartbeat files looked at (one stat each), all targets together.",
    )?;
    writeln!(out, "{name} {}", state.observations_total)?;
    let name = "protector_start_time_seconds";
    head(
        out,
        name,
        "gauge",
        "When this protector started (Unix time).",
    )?;
    writeln!(out, "{name} {}", state.started_at)?;
    let name = "protector_build_info";
    head(out, name, "gauge", "Build of protector.")?;
    writeln!(
        out,
        "{name}{{version=\"{}\"}} 1",
        escape(&state.protector_version)
    )
}

/// Label values escape backslash, double quote and newline.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
