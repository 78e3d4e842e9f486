//! Durations as operators write them: `300`, `1.5`, `90s`, `5m`, `1500ms`, `1h30m`, `2d`, and
//! as systemd writes them (operators copy them from unit files): `5min`, `30sec`, `2hours`,
//! `1h 30min`, `500msec`, `1w`.

use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;

/// The longest duration any setting takes: 100 years. Every deadline protector computes
/// stays far inside what its clocks can represent.
pub const MAX: Duration = Duration::from_secs(MAX_SECS as u64);
/// [`MAX`] in seconds (the schema's `maximum`).
pub const MAX_SECS: f64 = 3_155_760_000.0;

/// A duration as written: seconds as a number, or a string such as `90s`, `5m`, `1500ms`,
/// `1h30m`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum DurationSpec {
    Seconds(f64),
    Text(String),
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Seconds as a number, or a string of numbers with units ms, s, m, h, d \
                            (`90s`, `5m`, `1500ms`, `1h30m`). Greater than zero, at most 100 \
                            years (3155760000 seconds).",
            "type": ["number", "string"],
            "exclusiveMinimum": 0,
            "maximum": MAX_SECS,
            "pattern": pattern()
        })
    }
}

/// The reason a duration written as `written` is refused for being too long.
pub fn too_long(written: &str) -> String {
    format!("{written} is too long: the longest duration is 100 years ({MAX_SECS} seconds)")
}

/// Turns a written duration into a `Duration`; the error is a one-line reason.
pub fn parse(spec: &DurationSpec) -> Result<Duration, String> {
    let written = || match spec {
        DurationSpec::Seconds(secs) if secs.abs() >= 1e15 => format!("{secs:e}"),
        DurationSpec::Seconds(secs) => secs.to_string(),
        DurationSpec::Text(text) => format!("{text:?}"),
    };
    let d = match spec {
        DurationSpec::Seconds(secs) => from_secs(*secs),
        DurationSpec::Text(text) => parse_text(text),
    };
    let d = match d {
        Ok(d) => d,
        Err(Overflow::TooLong) => return Err(too_long(&written())),
        Err(Overflow::Bad(reason)) => return Err(reason),
    };
    if d > MAX {
        return Err(too_long(&written()));
    }
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

enum Overflow {
    TooLong,
    Bad(String),
}

fn from_secs(secs: f64) -> Result<Duration, Overflow> {
    if secs > MAX_SECS {
        return Err(Overflow::TooLong);
    }
    Duration::try_from_secs_f64(secs)
        .map_err(|_| Overflow::Bad(format!("{secs} is not a usable number of seconds")))
}

/// Each unit's spellings (protector's own first, then systemd's) and its length in seconds.
/// `M` (month) and `y` (year) are left out: their length is not one number.
pub const UNITS: [(&[&str], f64); 6] = [
    (&["ms", "msec"], 0.001),
    (&["s", "sec", "second", "seconds"], 1.0),
    (&["m", "min", "minute", "minutes"], 60.0),
    (&["h", "hr", "hour", "hours"], 3600.0),
    (&["d", "day", "days"], 86400.0),
    (&["w", "week", "weeks"], 604800.0),
];

/// The schema's pattern for a duration written as text: exactly what [`parse_text`] reads
/// (made from [`UNITS`], longest spelling first so the regex tries it first).
pub fn pattern() -> String {
    let mut names: Vec<&str> = UNITS.iter().flat_map(|(n, _)| n.iter().copied()).collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let units = names.join("|");
    format!(r"^\s*([0-9]+(\.[0-9]+)?\s*({units})\s*)+$|^\s*[0-9]+(\.[0-9]+)?\s*$")
}

fn parse_text(text: &str) -> Result<Duration, Overflow> {
    let bad = || {
        Overflow::Bad(format!(
            "{text:?} is not a duration (use seconds, or a string such as 90s, 5m, 1500ms, 1h30m, 5min)"
        ))
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            from_secs(secs)
        } else {
            Err(bad())
        };
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = rest[num_len..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let Some(&(_, scale)) = UNITS.iter().find(|(names, _)| names.contains(&unit)) else {
            if matches!(unit, "us" | "usec" | "µs") {
                return Err(Overflow::Bad(format!(
                    "{text:?}: microseconds are too fine for protector; use ms or more"
                )));
            }
            return Err(bad());
        };
        rest = rest[unit_len..].trim_start();
        total = total
            .checked_add(from_secs(number * scale)?)
            .ok_or(Overflow::TooLong)?;
    }
    Ok(total)
}

/// Formats a duration the way it would be written in the config (`300s`, `1500ms`, `1h`).
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 || !d.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{:?}", d);
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    match secs {
        s if s.is_multiple_of(86400) => format!("{}d", s / 86400),
        s if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        s if s.is_multiple_of(60) && s >= 120 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Result<Duration, String> {
        parse(&DurationSpec::Text(s.into()))
    }

    #[test]
    fn accepts_numbers_and_units() {
        assert_eq!(
            parse(&DurationSpec::Seconds(300.0)),
            Ok(Duration::from_secs(300))
        );
        assert_eq!(
            parse(&DurationSpec::Seconds(0.5)),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(text("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(text("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(text("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(text("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(text(" 2d "), Ok(Duration::from_secs(172800)));
        assert_eq!(text("12"), Ok(Duration::from_secs(12)));
        assert_eq!(text("1.5s"), Ok(Duration::from_millis(1500)));
    }

    /// Spellings copied from systemd units, and what they mean.
    const SYSTEMD: [(&str, u64); 9] = [
        ("5min", 300_000),
        ("30sec", 30_000),
        ("2hours", 7_200_000),
        ("1h 30min", 5_400_000),
        ("500msec", 500),
        ("1w", 604_800_000),
        ("2 days", 172_800_000),
        ("1hr 1second", 3_601_000),
        ("90 s", 90_000),
    ];

    #[test]
    fn accepts_systemd_spellings_and_refuses_microseconds_clearly() {
        for (written, ms) in SYSTEMD {
            assert_eq!(text(written), Ok(Duration::from_millis(ms)), "{written}");
        }
        let e = text("500us").unwrap_err();
        assert!(e.contains("microseconds are too fine"), "{e}");
        assert!(text("1M").is_err() && text("1y").is_err());
    }

    #[test]
    fn rejects_zero_and_garbage() {
        assert!(parse(&DurationSpec::Seconds(0.0)).is_err());
        assert!(parse(&DurationSpec::Seconds(-1.0)).is_err());
        assert!(text("0s").is_err());
        for bad in ["", "s", "5 minits", "5x", "-5s", "1e3", "inf", "NaN", "5m3"] {
            assert!(text(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn formats_like_config() {
        assert_eq!(format(Duration::from_secs(300)), "5m");
        assert_eq!(format(Duration::from_secs(90)), "90s");
        assert_eq!(format(Duration::from_secs(60)), "60s");
        assert_eq!(format(Duration::from_secs(3600)), "1h");
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn pattern_agrees_with_parser() {
        let re = regex_lite_match;
        let ours = ["90s", "5m", "1500ms", "1h30m", "12", "1.5s", " 2d "];
        for ok in ours.into_iter().chain(SYSTEMD.map(|(w, _)| w)) {
            assert!(re(ok), "{ok:?}");
            assert!(text(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "5 minits", "5x", "-5s", "1e3", "5m3", "500us", "1M", "1y", "5mins",
        ] {
            assert!(!re(bad), "{bad:?}");
            assert!(text(bad).is_err(), "{bad:?}");
        }
    }

    fn regex_lite_match(s: &str) -> bool {
        let schema = serde_json::json!({ "type": "string", "pattern": pattern() });
        jsonschema::validator_for(&schema)
            .unwrap()
            .is_valid(&serde_json::json!(s))
    }
}
