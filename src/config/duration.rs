//! Durations as operators write them: `300`, `1.5`, `90s`, `5m`, `1500ms`, `1h30m`, `2d`.

use std::time::Duration;

use super::raw::DurationSpec;

/// The longest duration any setting takes: 100 years. Every deadline protector computes
/// stays far inside what its clocks can represent.
pub const MAX: Duration = Duration::from_secs(MAX_SECS as u64);
/// [`MAX`] in seconds (the schema's `maximum`).
pub const MAX_SECS: f64 = 3_155_760_000.0;

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

fn parse_text(text: &str) -> Result<Duration, Overflow> {
    let bad = || {
        Overflow::Bad(format!(
            "{text:?} is not a duration (use seconds, or a string such as 90s, 5m, 1500ms, 1h30m)"
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
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(bad()),
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

    #[test]
    fn rejects_zero_and_garbage() {
        assert!(parse(&DurationSpec::Seconds(0.0)).is_err());
        assert!(parse(&DurationSpec::Seconds(-1.0)).is_err());
        assert!(text("0s").is_err());
        for bad in [
            "",
            "s",
            "5 minutes",
            "5x",
            "-5s",
            "1e3",
            "inf",
            "NaN",
            "5m3",
        ] {
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
        for ok in ["90s", "5m", "1500ms", "1h30m", "12", "1.5s", " 2d "] {
            assert!(re(ok), "{ok:?}");
            assert!(text(ok).is_ok(), "{ok:?}");
        }
        for bad in ["5 minutes", "5x", "-5s", "1e3", "5m3"] {
            assert!(!re(bad), "{bad:?}");
            assert!(text(bad).is_err(), "{bad:?}");
        }
    }

    fn regex_lite_match(s: &str) -> bool {
        let schema =
            serde_json::json!({ "type": "string", "pattern": super::super::raw::DURATION_PATTERN });
        jsonschema::validator_for(&schema)
            .unwrap()
            .is_valid(&serde_json::json!(s))
    }
}
