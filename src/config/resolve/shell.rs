//! Shell syntax in a command that runs without a shell.

/// The first piece of shell syntax in `line` that a shell would act on but splitting into
/// words (no shell) takes literally: `$(`, backticks, `|`, `;`, `&`, redirections, `$VAR`,
/// globs. Quoted text counts as a shell would see it: nothing is special between single
/// quotes; `$` and backticks still are between double quotes.
pub fn shell_syntax(line: &str) -> Option<String> {
    let chars: Vec<char> = line.chars().collect();
    let (mut single, mut double) = (false, false);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\\' if !single => {
                i += 2;
                continue;
            }
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            _ if single => {}
            '`' => return Some("`...` (a command substitution)".into()),
            '$' if next == Some('(') => return Some("`$(` (a command substitution)".into()),
            '$' if next.is_some_and(|n| n == '{' || n == '_' || n.is_ascii_alphabetic()) => {
                return Some("`$NAME` (a variable, which a shell would expand)".into());
            }
            _ if double => {}
            '|' | ';' | '&' => return Some(format!("`{c}` (an operator)")),
            '>' | '<' => return Some(format!("`{c}` (a redirection)")),
            '*' | '?' => return Some(format!("`{c}` (a glob)")),
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::shell_syntax;

    #[test]
    fn shell_syntax_outside_quotes_is_found() {
        for (line, found) in [
            ("kill $(cat /run/x.pid) 2>/dev/null", "`$(`"),
            ("systemctl stop a; systemctl start a", "`;`"),
            ("a && b", "`&`"),
            ("ps aux | grep x", "`|`"),
            ("echo hi > /tmp/x", "`>`"),
            ("rm /var/run/*.pid", "`*`"),
            ("echo $HOME", "`$NAME`"),
            ("echo \"${HOME}\"", "`$NAME`"),
            ("echo `date`", "`...`"),
        ] {
            let what = shell_syntax(line).unwrap_or_else(|| panic!("{line}"));
            assert!(what.starts_with(found), "{line}: {what}");
        }
        for line in [
            "systemctl restart salt-minion",
            "sh -c 'a | b; c > d'",
            "pkill -f 'bin/[s]alt-minion'",
            "echo 'cost: $5'",
            "echo a\\;b",
            "net stop salt-minion",
            "curl -fsS http://127.0.0.1:8080/health",
        ] {
            assert_eq!(shell_syntax(line), None, "{line}");
        }
    }
}
