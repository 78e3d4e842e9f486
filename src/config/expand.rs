//! Expansion of `~`, `$VAR`, `${VAR}` and (on Windows) `%VAR%` in heartbeat paths.
//!
//! Pure: the environment is passed in as a lookup function so tests need not touch the
//! process environment. An unset variable is an error, never an empty string: a heartbeat
//! path that silently became `/htrd_minion_alived` would watch the wrong file forever.

/// Expands `text`. `windows` enables `%VAR%` and takes the home directory from USERPROFILE
/// instead of HOME. `$$` and (on Windows) `%%` stand for a literal `$` / `%`.
pub fn expand(
    text: &str,
    windows: bool,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;

    if rest.starts_with('~')
        && !(rest == "~" || rest.starts_with("~/") || (windows && rest.starts_with("~\\")))
    {
        // `~user/...`: another user's home, which protector does not look up (a relative
        // path named `~bob` is never what was meant).
        return Err(format!(
            "`{}` (another user's home directory) is not supported: write the path out",
            rest.split(['/', '\\']).next().unwrap_or(rest)
        ));
    }
    if rest == "~" || rest.starts_with("~/") || (windows && rest.starts_with("~\\")) {
        let home_var = if windows { "USERPROFILE" } else { "HOME" };
        let home = lookup(home_var)
            .ok_or_else(|| format!("`~` needs the home directory, but {home_var} is not set"))?;
        out.push_str(&home);
        rest = &rest[1..];
    }

    while let Some(pos) = rest.find(|c| c == '$' || (windows && c == '%')) {
        out.push_str(&rest[..pos]);
        let sigil = rest.as_bytes()[pos] as char;
        let after = &rest[pos + 1..];
        if after.starts_with(sigil) {
            out.push(sigil);
            rest = &after[1..];
            continue;
        }
        let (name, consumed) = if sigil == '%' {
            match after.find('%') {
                Some(end) if is_name(&after[..end]) => (&after[..end], end + 1),
                _ => {
                    out.push('%');
                    rest = after;
                    continue;
                }
            }
        } else if let Some(braced) = after.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("`${{` without a closing `}}` in {text:?}"))?;
            let name = &braced[..end];
            if !is_name(name) {
                return Err(format!("`${{{name}}}` is not a valid variable name"));
            }
            (name, end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if end == 0 {
                out.push('$');
                rest = after;
                continue;
            }
            (&after[..end], end)
        };
        let value = lookup(name)
            .ok_or_else(|| format!("environment variable {name} is not set (used in {text:?})"))?;
        out.push_str(&value);
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '(' || c == ')')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/op".into()),
            "USERPROFILE" => Some(r"C:\Users\op".into()),
            "TEMP" => Some(r"C:\Temp".into()),
            "RUN" => Some("/run".into()),
            _ => None,
        }
    }

    #[test]
    fn unix_forms() {
        assert_eq!(expand("~/beat", false, &env).unwrap(), "/home/op/beat");
        assert_eq!(expand("~", false, &env).unwrap(), "/home/op");
        assert_eq!(expand("$RUN/beat", false, &env).unwrap(), "/run/beat");
        assert_eq!(expand("${RUN}x/beat", false, &env).unwrap(), "/runx/beat");
        assert_eq!(
            expand("/a/~b/$$/100%", false, &env).unwrap(),
            "/a/~b/$/100%"
        );
        assert_eq!(expand("/cost/$", false, &env).unwrap(), "/cost/$");
        assert_eq!(expand("%TEMP%/x", false, &env).unwrap(), "%TEMP%/x");
    }

    #[test]
    fn windows_forms() {
        assert_eq!(expand(r"%TEMP%\beat", true, &env).unwrap(), r"C:\Temp\beat");
        assert_eq!(expand(r"~\beat", true, &env).unwrap(), r"C:\Users\op\beat");
        assert_eq!(expand(r"$TEMP\b", true, &env).unwrap(), r"C:\Temp\b");
        assert_eq!(expand("100%% sure %", true, &env).unwrap(), "100% sure %");
    }

    #[test]
    fn unset_variables_are_errors() {
        let err = expand("$NOPE/beat", false, &env).unwrap_err();
        assert!(err.contains("NOPE") && err.contains("not set"), "{err}");
        assert!(expand("${NOPE}", false, &env).is_err());
        assert!(expand("%NOPE%", true, &env).is_err());
        assert!(expand("${RUN", false, &env).is_err());
        assert!(expand("~/x", false, &|_| None).is_err());
        let e = expand("~bob/x", false, &|_| Some("/home/op".into())).unwrap_err();
        assert!(e.contains("`~bob` (another user's home directory)"), "{e}");
    }
}
