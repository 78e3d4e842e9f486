//! Text that came from outside (paths, command output, names in a state file, errors that
//! quote them) is printed through [`clean`]: control characters are escaped, so nothing read
//! can forge a log line or send escape sequences to an operator's terminal.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every control character (C0, DEL, C1) written as an escape: `\n`, `\t`, `\r`,
/// `\u{1b}`. Other text, accents included, is left as it is.
pub fn clean(text: &str) -> Cow<'_, str> {
    if !holds_control(text, false) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `text` [`clean`]ed line by line: its line breaks stay, every other control character is
/// escaped. For whole outputs (a table, a report) printed to a terminal.
pub fn clean_lines(text: &str) -> Cow<'_, str> {
    if !holds_control(text, true) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&clean(line));
    }
    Cow::Owned(out)
}

/// Whether `text` holds a control character (but for line breaks when `lines`), told from its
/// bytes: in UTF-8 a C0 character or DEL is a byte of its own below 0x20 or 0x7F, and a C1
/// character is 0xC2 then 0x80-0x9F. `check` of 10,000 targets prints 3 MB: decoding every
/// character to ask was a tenth of its time.
fn holds_control(text: &str, lines: bool) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| match b {
        b'\n' => !lines,
        0..=0x1f | 0x7f => true,
        0xc2 => matches!(bytes.get(i + 1), Some(0x80..=0x9f)),
        _ => false,
    })
}

/// Prints `text` to stdout, [`clean_lines`]ed.
pub fn print_stdout(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout()
        .lock()
        .write_all(clean_lines(text).as_bytes());
}

/// Prints `text` to stderr, [`clean_lines`]ed.
pub fn print_stderr(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr()
        .lock()
        .write_all(clean_lines(text).as_bytes());
}

/// The candidate nearest to `word` (a mistyped key or subcommand), when one is near enough to
/// be what was meant: at most one edit in three letters. Words longer than 64 characters get
/// none (the comparison grows with the product of the lengths).
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    if word.chars().count() > 64 {
        return None;
    }
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| (distance(word, c), c))
        .filter(|(d, c)| *d <= c.chars().count().div_ceil(3).max(1))
        .min()
        .map(|(_, c)| c)
}

/// Edit distance (insertions, deletions, substitutions, swaps of neighbours).
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// A length of time as people read it: `45s`, `4m48s`, `2h03m`, `3d4h` (rounded to the second;
/// below zero is `0s`).
pub fn human(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    proptest::proptest! {
        #[test]
        fn control_characters_are_told_from_the_bytes_as_from_the_characters(
            text in "(\\PC|\\p{Cc}|[\u{80}-\u{a0}\u{c2}\u{100}])*",
            lines: bool,
        ) {
            let by_chars = text.chars().any(|c| c.is_control() && !(lines && c == '\n'));
            proptest::prop_assert_eq!(super::holds_control(&text, lines), by_chars);
        }
    }

    #[test]
    fn lengths_of_time_read_as_people_say_them() {
        use super::human;
        let said: Vec<String> = [-3.0, 44.6, 288.0, 7380.0, 273_600.0]
            .into_iter()
            .map(human)
            .collect();
        assert_eq!(said, ["0s", "45s", "4m48s", "2h03m", "3d4h"]);
    }

    #[test]
    fn distances_and_the_nearest_word() {
        use super::{distance, nearest};
        assert_eq!(distance("stauts", "status"), 1);
        assert_eq!(distance("chek", "check"), 1);
        assert_eq!(distance("", "run"), 3);
        assert_eq!(distance("schema", "schema"), 0);
        let keys = ["timeout", "heartbeat", "start", "stop"];
        assert_eq!(nearest("timout", keys), Some("timeout"));
        assert_eq!(nearest("hearbeat", keys), Some("heartbeat"));
        assert_eq!(nearest("colour", keys), None);
        assert_eq!(nearest(&"x".repeat(100_000), keys), None);
    }

    use super::{clean, clean_lines};

    #[test]
    fn whole_outputs_keep_their_lines() {
        assert_eq!(clean_lines("a\nb\n"), "a\nb\n");
        assert_eq!(clean_lines("a\u{1b}[2J\nb\r\n"), "a\\u{1b}[2J\nb\\r\n");
    }

    #[test]
    fn control_characters_are_escaped_and_nothing_else() {
        assert_eq!(clean("salt-minion été"), "salt-minion été");
        assert_eq!(
            clean("x\n2026-11-27 INFO forged\u{1b}[2J\u{7f}\u{9b}"),
            "x\\n2026-11-27 INFO forged\\u{1b}[2J\\u{7f}\\u{9b}"
        );
        assert_eq!(clean("a\tb\rc"), "a\\tb\\rc");
    }
}
