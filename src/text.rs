//! Text that came from outside (paths, command output, names in a state file, errors that
//! quote them) is printed through [`clean`]: control characters are escaped, so nothing read
//! can forge a log line or send escape sequences to an operator's terminal.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with every control character (C0, DEL, C1) written as an escape: `\n`, `\t`, `\r`,
/// `\u{1b}`. Other text, accents included, is left as it is.
pub fn clean(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
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
    if !text.chars().any(|c| c.is_control() && c != '\n') {
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

#[cfg(test)]
mod tests {
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
