//! `include:`: more targets from other files, so that a package or a Salt state adds a target
//! by dropping a file into `/etc/protector/conf.d/` instead of editing the main file (as
//! monit's `include` and supervisord's `[include]` do).
//!
//! An included file holds a `targets` list and nothing else: defaults, protector's own files
//! and further includes belong to the main file, so one file says how protector runs. The
//! targets of all files form one list, the main file's first, then each pattern's files in
//! name order; names are unique across all of them. The later stages work on that combined
//! list, and [`Layout`] takes each problem they find back to the file and target it is
//! written in.

use std::borrow::Cow;

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Problem;

/// Most files the patterns of one config may bring (far above any real conf.d).
pub const MAX_FILES: usize = 10_000;

/// One file of a config, parsed: the main file (first) or an included one.
#[derive(Debug)]
pub struct Part {
    /// The file as messages name it.
    pub file: String,
    pub text: String,
    pub document: Value,
    /// Keys written twice in it (the parser keeps the last).
    pub twice: Vec<super::position::Duplicate>,
}

/// Where each part's targets sit in the combined list.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Per part, the combined index of its first target (the main file's is 0).
    starts: Vec<usize>,
}

impl Layout {
    /// The part that holds combined target `i`, and the target's index in it.
    pub fn target(&self, i: usize) -> (usize, usize) {
        // The last part starting at or before `i`: parts without targets share their start
        // with the next one, which is the one that holds `i`.
        let part = self.starts.partition_point(|&s| s <= i).saturating_sub(1);
        (part, i - self.starts[part])
    }

    /// How many targets part `part` holds, of `total` in all.
    pub fn count(&self, part: usize, total: usize) -> usize {
        let end = self.starts.get(part + 1).copied().unwrap_or(total);
        end.saturating_sub(self.starts[part])
    }

    /// A pointer into the combined document, as the part it is written in and the pointer
    /// there.
    pub fn local(&self, pointer: &str) -> (usize, String) {
        if let Some(rest) = pointer.strip_prefix("/targets/") {
            let (index, tail) = rest.find('/').map_or((rest, ""), |at| rest.split_at(at));
            if let Ok(i) = index.parse::<usize>() {
                let (part, local) = self.target(i);
                return (part, format!("/targets/{local}{tail}"));
            }
        }
        (0, pointer.to_string())
    }

    /// Combined target `i` as a message names it: `targets[2]`, or `targets[0] in
    /// conf.d/web.yaml` for a target of an included file.
    pub fn name_target(&self, i: usize, parts: &[Part]) -> String {
        match self.target(i) {
            (0, local) => format!("targets[{local}]"),
            (part, local) => format!("targets[{local}] in {}", parts[part].file),
        }
    }
}

/// The patterns `include` holds in `document` (a string or a list of strings); nothing when
/// it holds anything else (the schema says what is wrong with it).
pub fn patterns(document: &Value) -> Vec<String> {
    match document.get("include") {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The files `patterns` name, relative to `dir`: a path, or a path with wildcards (`*`, `?`,
/// `[...]`) in its last part, whose matches are taken in name order (names starting with a
/// dot are left out, as a shell does: editors' and packagers' leftovers). A file named twice
/// is read once. Problems point at the pattern (`/include/1`).
pub fn files(dir: &Path, patterns: &[String], single: bool) -> Result<Vec<PathBuf>, Vec<Problem>> {
    let mut found: Vec<PathBuf> = Vec::new();
    let mut problems = Vec::new();
    for (n, pattern) in patterns.iter().enumerate() {
        let pointer = if single {
            "/include".to_string()
        } else {
            format!("/include/{n}")
        };
        match matches(dir, pattern) {
            Ok(paths) => {
                for p in paths {
                    if !found.contains(&p) {
                        found.push(p);
                    }
                }
            }
            Err(message) => problems.push(Problem::new(pointer, message)),
        }
        if found.len() > MAX_FILES {
            problems.push(Problem::new(
                "/include",
                format!("names more than {MAX_FILES} files"),
            ));
            break;
        }
    }
    if problems.is_empty() {
        Ok(found)
    } else {
        Err(problems)
    }
}

const WILDCARDS: &[char] = &['*', '?', '['];

/// The files one pattern names.
fn matches(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let path = dir.join(pattern);
    let (Some(parent), Some(last)) = (path.parent(), path.file_name()) else {
        return Err(format!("{pattern:?} names no file"));
    };
    let last = last.to_string_lossy();
    if parent.to_string_lossy().contains(WILDCARDS) {
        return Err(format!(
            "{pattern:?}: wildcards may only be in the last part (`conf.d/*.yaml`)"
        ));
    }
    if !last.contains(WILDCARDS) {
        return match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => Err(format!(
                "{} is a directory; name its files: `{}`",
                path.display(),
                Path::new(pattern).join("*.yaml").display()
            )),
            Ok(_) => Ok(vec![path]),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        };
    }
    let glob = glob::Pattern::new(&last).map_err(|e| format!("{pattern:?}: {e}"))?;
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let entries = std::fs::read_dir(parent)
        .map_err(|e| format!("cannot read the directory {}: {e}", parent.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", parent.display()))?;
        let name = entry.file_name();
        let shown = name.to_string_lossy();
        if glob.matches_with(&shown, options) {
            // A name that would break the line that says it (`check`, the log).
            if shown.contains(char::is_control) {
                return Err(format!(
                    "{} holds a file whose name has a control character: {}",
                    parent.display(),
                    crate::text::clean(&shown)
                ));
            }
            names.push(name);
            if names.len() > MAX_FILES {
                return Err(format!("matches more than {MAX_FILES} files"));
            }
        }
    }
    names.sort();
    // Each match is the pattern with its last part replaced, so that it is named with the
    // separators the pattern was written with (`conf.d/web.yaml` on Windows too).
    let stem = path.to_str().and_then(|w| w.strip_suffix(&*last));
    Ok(names
        .into_iter()
        .map(|n| match (stem, n.to_str()) {
            (Some(stem), Some(name)) => PathBuf::from(format!("{stem}{name}")),
            _ => parent.join(n),
        })
        .collect())
}

/// The main file's document with the targets of the included parts appended (`include`
/// itself removed), where each part's targets are, and what is wrong with the included
/// parts themselves (part, problem). Without `include`, the main file's document itself
/// (not a copy: at 100,000 targets a copy is about 100 MB).
pub fn combine(parts: &[Part]) -> (Cow<'_, Value>, Layout, Vec<(usize, Problem)>) {
    if parts.len() == 1 && parts[0].document.get("include").is_none() {
        let layout = Layout { starts: vec![0] };
        return (Cow::Borrowed(&parts[0].document), layout, Vec::new());
    }
    let mut combined = parts[0].document.clone();
    let mut starts = vec![0];
    let mut problems = Vec::new();
    let Some(main) = combined.as_object_mut() else {
        return (Cow::Owned(combined), Layout { starts }, problems);
    };
    main.remove("include");
    let mut targets = match main.remove("targets") {
        Some(Value::Array(targets)) => Some(targets),
        Some(other) => {
            // Wrong as it is: left for the schema to say so, nothing appended to it.
            main.insert("targets".into(), other);
            None
        }
        None => None,
    };
    let written = targets.is_some();
    for (p, part) in parts.iter().enumerate().skip(1) {
        let list = targets.get_or_insert_with(Vec::new);
        starts.push(list.len());
        match &part.document {
            Value::Null => {}
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("targets", Value::Array(more)) => list.extend(more.iter().cloned()),
                        ("targets", _) => problems
                            .push((p, Problem::new("/targets", "must be a list of targets"))),
                        (key, _) => problems.push((p, only_targets(key))),
                    }
                }
            }
            _ => problems.push((
                p,
                Problem::new(
                    "",
                    "an included file holds a `targets` list and nothing else",
                ),
            )),
        }
    }
    if let Some(list) = targets
        && (written || !list.is_empty())
    {
        main.insert("targets".into(), Value::Array(list));
    }
    (Cow::Owned(combined), Layout { starts }, problems)
}

/// The problem of a key other than `targets` in an included file.
fn only_targets(key: &str) -> Problem {
    let hint = match crate::text::nearest(key, ["targets"]) {
        Some(near) => format!(" (did you mean `{near}`?)"),
        None => format!("; `{key}` belongs in the main file"),
    };
    Problem::new(
        format!("/{}", super::position::escape(key)),
        format!("an included file holds a `targets` list and nothing else{hint}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(file: &str, yaml: &str) -> Part {
        super::super::read::parse_part(file.into(), yaml.into()).unwrap()
    }

    #[test]
    fn targets_are_placed_back_in_their_files() {
        let parts = [
            part(
                "main.yaml",
                "include: d/*.yaml\ntargets: [{name: a}, {name: b}]\n",
            ),
            part("d/empty.yaml", ""),
            part("d/one.yaml", "targets: [{name: c}]\n"),
            part("d/none.yaml", "targets: []\n"),
            part("d/two.yaml", "targets: [{name: d}, {name: e}]\n"),
        ];
        let (combined, layout, problems) = combine(&parts);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(combined.get("include").is_none());
        let names: Vec<&str> = combined["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "c", "d", "e"]);
        assert_eq!(
            layout.local("/targets/1/name"),
            (0, "/targets/1/name".into())
        );
        assert_eq!(layout.local("/targets/2"), (2, "/targets/0".into()));
        assert_eq!(
            layout.local("/targets/4/os/linux"),
            (4, "/targets/1/os/linux".into())
        );
        assert_eq!(
            layout.local("/defaults/timeout"),
            (0, "/defaults/timeout".into())
        );
        assert_eq!(layout.name_target(3, &parts), "targets[0] in d/two.yaml");
        assert_eq!(layout.name_target(0, &parts), "targets[0]");
    }

    #[test]
    fn an_included_file_holds_targets_only() {
        let parts = [
            part("main.yaml", "include: d/*.yaml\n"),
            part("d/a.yaml", "defaults: {timeout: 1m}\ntarget: []\n"),
            part("d/b.yaml", "targets: {name: x}\n"),
            part("d/c.yaml", "- name: x\n"),
        ];
        let (combined, _, problems) = combine(&parts);
        assert!(combined.get("targets").is_none(), "{combined}");
        let said: Vec<(usize, &str, &str)> = problems
            .iter()
            .map(|(p, problem)| (*p, problem.pointer.as_str(), problem.message.as_str()))
            .collect();
        assert_eq!(said[0].0, 1);
        assert_eq!(said[0].1, "/defaults");
        assert!(
            said[0].2.ends_with("`defaults` belongs in the main file"),
            "{said:?}"
        );
        assert!(said[1].2.ends_with("(did you mean `targets`?)"), "{said:?}");
        assert_eq!(said[2], (2, "/targets", "must be a list of targets"));
        assert_eq!(said[3].0, 3);
    }

    #[test]
    fn patterns_match_in_name_order_without_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("conf.d");
        std::fs::create_dir(&d).unwrap();
        for name in [
            "b.yaml",
            "a.yaml",
            ".a.yaml.swp",
            ".hidden.yaml",
            "c.yml",
            "z.yaml~",
        ] {
            std::fs::write(d.join(name), "").unwrap();
        }
        let found = files(
            dir.path(),
            &[
                "conf.d/*.yaml".into(),
                "conf.d/a.yaml".into(),
                "conf.d/*.yml".into(),
            ],
            false,
        )
        .unwrap();
        assert_eq!(found, [d.join("a.yaml"), d.join("b.yaml"), d.join("c.yml")]);
        assert_eq!(
            files(dir.path(), &["conf.d/*.yaml.json".into()], true).unwrap(),
            Vec::<PathBuf>::new()
        );
        // A name that would break the line that says it (Unix allows one).
        #[cfg(unix)]
        {
            std::fs::write(d.join("x\ny.json"), "").unwrap();
            let forged = files(dir.path(), &["conf.d/*.json".into()], true).unwrap_err();
            assert!(forged[0].message.ends_with(": x\\ny.json"), "{forged:?}");
        }

        let wrong = files(
            dir.path(),
            &[
                "conf.d".into(),
                "*/a.yaml".into(),
                "conf.d/missing.yaml".into(),
                "nowhere/*.yaml".into(),
            ],
            false,
        )
        .unwrap_err();
        let said: Vec<(&str, &str)> = wrong
            .iter()
            .map(|p| (p.pointer.as_str(), p.message.as_str()))
            .collect();
        assert!(
            said[0].1.contains("is a directory; name its files"),
            "{said:?}"
        );
        assert!(
            said[1].1.contains("wildcards may only be in the last part"),
            "{said:?}"
        );
        assert_eq!(said[2].0, "/include/2");
        assert!(said[2].1.starts_with("cannot read"), "{said:?}");
        assert!(
            said[3].1.starts_with("cannot read the directory"),
            "{said:?}"
        );
    }
}
