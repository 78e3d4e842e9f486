//! Prometheus metrics in the text exposition format, for node_exporter's textfile collector.
//! Rendered from the same snapshot as the state file and written atomically beside it.

use std::io::{self, Write};

use crate::state::{StateFile, TargetRecord, TargetStatus};

/// A per-target metric: name, type, help and the value of one target (if it has one).
type Family<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a dyn Fn(&TargetRecord) -> Option<Value>,
);

/// A sample's value: a count is written as an integer, which is what Prometheus's text
/// format (and the float it was written as before) reads the same; only measures go through
/// float formatting, the dearest part of rendering 100,000 targets.
#[derive(Debug, Clone, Copy)]
enum Value {
    Count(u64),
    Measure(f64),
}

impl Value {
    fn write(self, out: &mut dyn Write) -> io::Result<()> {
        match self {
            Value::Count(n) => out.write_all(itoa::Buffer::new().format(n).as_bytes()),
            Value::Measure(v) => write!(out, "{v}"),
        }
    }
}

/// Writes one sample's line: `name{labels} value`.
fn sample(out: &mut dyn Write, name: &str, labels: &[&str], value: Value) -> io::Result<()> {
    out.write_all(name.as_bytes())?;
    out.write_all(b"{")?;
    for part in labels {
        out.write_all(part.as_bytes())?;
    }
    out.write_all(b"} ")?;
    value.write(out)?;
    out.write_all(b"\n")
}

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
            &|t| t.last_heartbeat.map(|h| Value::Measure((now - h).max(0.0))),
        ),
        (
            "protector_last_heartbeat_timestamp_seconds",
            "gauge",
            "When the target's last heartbeat was seen (Unix time).",
            &|t| t.last_heartbeat.map(Value::Measure),
        ),
        (
            "protector_restarts_total",
            "counter",
            "Restarts of the target.",
            &|t| Some(Value::Count(t.restarts_total)),
        ),
        (
            "protector_restarts_failed_total",
            "counter",
            "Restarts whose start command failed, could not run, or timed out.",
            &|t| Some(Value::Count(t.restarts_failed_total)),
        ),
        (
            "protector_consecutive_restarts",
            "gauge",
            "Restarts since the target's last heartbeat.",
            &|t| Some(Value::Count(u64::from(t.consecutive_restarts))),
        ),
        (
            "protector_command_failures_total",
            "counter",
            "Stop and start commands that failed, could not run, or timed out.",
            &|t| Some(Value::Count(t.command_failures_total)),
        ),
        (
            "protector_command_timeouts_total",
            "counter",
            "Stop and start commands killed at command_timeout.",
            &|t| Some(Value::Count(t.command_timeouts_total)),
        ),
        (
            "protector_last_restart_timestamp_seconds",
            "gauge",
            "When the target was last restarted (Unix time).",
            &|t| t.last_restart.as_ref().map(|r| Value::Measure(r.at)),
        ),
        (
            "protector_backoff_seconds",
            "gauge",
            "Current wait between consecutive restarts (0 when not backing off).",
            &|t| Some(Value::Measure(t.backoff_secs)),
        ),
    ];
    // Each target's label, escaped once for all its rows.
    let labels: Vec<String> = state.targets.iter().map(|t| escape(&t.name)).collect();
    for (name, kind, help, value) in per_target {
        head(out, name, kind, help)?;
        for (t, label) in state.targets.iter().zip(&labels) {
            if let Some(v) = value(t) {
                sample(out, name, &["target=\"", label, "\""], v)?;
            }
        }
    }
    let name = "protector_target_state";
    head(out, name, "gauge", "1 for the target's current state.")?;
    let states = TargetStatus::ALL.map(|s| format!("\",state=\"{s}\""));
    for (t, label) in state.targets.iter().zip(&labels) {
        for (s, state_label) in TargetStatus::ALL.into_iter().zip(&states) {
            let v = Value::Count(u64::from(t.state == s));
            sample(out, name, &["target=\"", label, state_label], v)?;
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

#[cfg(test)]
mod tests {
    use super::Value;
    use proptest::prelude::*;

    fn written(v: Value) -> String {
        let mut out = Vec::new();
        v.write(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn counts_and_measures_read_as_before() {
        for n in [0, 1, 9, 10, 99, 1000, u64::from(u32::MAX), (1 << 53) - 1] {
            assert_eq!(written(Value::Count(n)), format!("{}", n as f64));
        }
        assert_eq!(
            written(Value::Measure(3357.262232542038)),
            "3357.262232542038"
        );
        assert_eq!(written(Value::Measure(0.0)), "0");
    }

    proptest! {
        #![proptest_config(crate::proptest_config(256))]
        /// A count is written as the float it was written as before (dashboards and
        /// recording rules read the same text), wherever a float holds it exactly.
        #[test]
        fn a_count_is_written_as_the_float_it_was(n in 0u64..(1 << 53)) {
            prop_assert_eq!(written(Value::Count(n)), format!("{}", n as f64));
        }
    }
}
