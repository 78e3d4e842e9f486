//! Prometheus metrics in the text exposition format, for node_exporter's textfile collector.
//! Rendered from the same snapshot as the state file and written atomically beside it.

use std::fmt::Write;

use crate::state::{STATES, StateFile};

pub fn render(state: &StateFile) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in rows {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let per_target = |f: &dyn Fn(&crate::state::TargetRecord) -> Option<f64>| {
        state
            .targets
            .iter()
            .filter_map(|t| f(t).map(|v| (format!("{{target=\"{}\"}}", escape(&t.name)), v)))
            .collect::<Vec<_>>()
    };
    let now = state.written_at;
    family(
        "protector_heartbeat_age_seconds",
        "gauge",
        "Seconds since the target's last heartbeat, when this file was written.",
        per_target(&|t| t.last_heartbeat.map(|h| (now - h).max(0.0))),
    );
    family(
        "protector_last_heartbeat_timestamp_seconds",
        "gauge",
        "When the target's last heartbeat was seen (Unix time).",
        per_target(&|t| t.last_heartbeat),
    );
    family(
        "protector_restarts_total",
        "counter",
        "Restarts of the target.",
        per_target(&|t| Some(t.restarts_total as f64)),
    );
    family(
        "protector_consecutive_restarts",
        "gauge",
        "Restarts since the target's last heartbeat.",
        per_target(&|t| Some(f64::from(t.consecutive_restarts))),
    );
    family(
        "protector_command_failures_total",
        "counter",
        "Stop and start commands that failed, could not run, or timed out.",
        per_target(&|t| Some(t.command_failures_total as f64)),
    );
    family(
        "protector_command_timeouts_total",
        "counter",
        "Stop and start commands killed at command_timeout.",
        per_target(&|t| Some(t.command_timeouts_total as f64)),
    );
    family(
        "protector_last_restart_timestamp_seconds",
        "gauge",
        "When the target was last restarted (Unix time).",
        per_target(&|t| t.last_restart.as_ref().map(|r| r.at)),
    );
    family(
        "protector_backoff_seconds",
        "gauge",
        "Current wait between consecutive restarts (0 when not backing off).",
        per_target(&|t| Some(t.backoff_secs)),
    );
    let states = state
        .targets
        .iter()
        .flat_map(|t| {
            STATES.iter().map(move |s| {
                (
                    format!("{{target=\"{}\",state=\"{s}\"}}", escape(&t.name)),
                    if t.state == *s { 1.0 } else { 0.0 },
                )
            })
        })
        .collect();
    family(
        "protector_target_state",
        "gauge",
        "1 for the target's current state.",
        states,
    );
    family(
        "protector_heartbeat_observations_total",
        "counter",
        "Heartbeat files looked at (one stat each), all targets together.",
        vec![(String::new(), state.observations_total as f64)],
    );
    family(
        "protector_start_time_seconds",
        "gauge",
        "When this protector started (Unix time).",
        vec![(String::new(), state.started_at)],
    );
    family(
        "protector_build_info",
        "gauge",
        "Build of protector.",
        vec![(
            format!("{{version=\"{}\"}}", escape(&state.protector_version)),
            1.0,
        )],
    );
    out
}

/// Label values escape backslash, double quote and newline.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
