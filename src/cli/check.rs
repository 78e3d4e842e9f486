//! `protector check`: validate a config offline, print the effective targets, and warn about
//! the heartbeats' places on this machine.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::describe::{describe, headline};
use super::outcome::Outcome;
use crate::config::{self, Config, Os};
use crate::schedule::Observation;

/// How long `check` waits for the heartbeats' filesystems to answer its looks.
const CHECK_LOOKS_WITHIN: Duration = Duration::from_secs(5);

/// What `check` finds on this machine, as (problems, warnings): programs of commands that
/// cannot run (a problem unless the target allows it), heartbeats' places (a missing
/// directory, one any user can write, whole-second file times). Looked at on a thread of its
/// own and waited for a bounded time, so a filesystem that never answers cannot hang `check`
/// (which the formula and the packages run before a config is used); begun before the
/// targets are described, which takes as long at 10,000 targets.
struct Looking {
    found: std::sync::mpsc::Receiver<(Vec<String>, Vec<String>)>,
    until: std::time::Instant,
}

impl Looking {
    fn begin(config: &Arc<Config>) -> Looking {
        let config = Arc::clone(config);
        let (tx, found) = std::sync::mpsc::channel();
        // No thread to be had: `found` then says that nothing was looked at.
        let _ = std::thread::Builder::new()
            .name("protector-check".into())
            .spawn(move || {
                let enabled: Vec<&crate::config::Target> =
                    config.targets.iter().filter(|t| t.enabled).collect();
                let (missing, places) = rayon::join(
                    || crate::programs::missing(enabled.iter().copied()),
                    || places(&enabled),
                );
                let mut out = Vec::new();
                let mut problems = Vec::new();
                for m in missing {
                    let line = format!("target {}: {}: {}", m.target, m.command, m.why);
                    if m.allowed {
                        out.push(format!("{line} (allow_missing_programs: true)"));
                    } else {
                        problems.push(line);
                    }
                }
                out.extend(places);
                let _ = tx.send((problems, out));
            });
        Looking {
            found,
            until: std::time::Instant::now() + CHECK_LOOKS_WITHIN,
        }
    }

    fn found(self) -> (Vec<String>, Vec<String>) {
        let left = self
            .until
            .saturating_duration_since(std::time::Instant::now());
        self.found.recv_timeout(left).unwrap_or_else(|_| {
            (
                Vec::new(),
                vec![format!(
                    "the heartbeats' directories could not all be looked at within {}s (a \
                     filesystem that does not answer?): what they would show is left out",
                    CHECK_LOOKS_WITHIN.as_secs()
                )],
            )
        })
    }
}

/// What to warn about each heartbeat's place, in the targets' order: a missing directory, one
/// any user can write, a file any user can write, whole-second file times. Each directory is
/// looked at once, and the files in parallel (10,000 targets in one directory were 40,000
/// looks one after another).
fn places(enabled: &[&crate::config::Target]) -> Vec<String> {
    use rayon::prelude::*;
    use std::collections::HashMap;
    // Where each heartbeat is, as the system will find it.
    let absolute: Vec<Option<std::path::PathBuf>> = enabled
        .iter()
        .map(|t| std::path::absolute(&t.heartbeat).ok())
        .collect();
    let dirs: std::collections::HashSet<&Path> = absolute
        .iter()
        .filter_map(|p| p.as_deref()?.parent())
        .collect();
    // Per directory: whether it is missing, and what any user may do in it.
    let of_dir: HashMap<&Path, crate::heartbeat::DirFacts> = dirs
        .into_par_iter()
        .map(|dir| (dir, crate::heartbeat::dir_facts(dir)))
        .collect();
    let per_target: Vec<Vec<String>> = enabled
        .par_iter()
        .zip(&absolute)
        .map(|(t, file)| {
            let (name, beat) = (&t.name, &t.heartbeat);
            let mut said = Vec::new();
            let crate::heartbeat::DirFacts { missing, exposed } = file
                .as_deref()
                .and_then(|f| of_dir.get(f.parent()?))
                .cloned()
                .unwrap_or_default();
            if missing && let Some(dir) = crate::heartbeat::missing_dir(beat) {
                said.push(format!(
                    "target {name}: the heartbeat's directory {} does not exist: nothing can \
                     write this heartbeat yet",
                    dir.display()
                ));
            }
            // One `stat` of the file tells both what any user may do to it and its times.
            let ((seen, _), meta) = crate::heartbeat::observe_keeping(beat);
            let exposed = exposed.or_else(|| {
                crate::perms::heartbeat_file_exposure_of(file.as_deref()?, meta.as_ref()?)
            });
            if let Some(reason) = exposed {
                said.push(format!("target {name}: {reason}"));
            }
            if let Observation::Present(print) = seen
                && print.coarse
            {
                said.push(format!(
                    "target {name} ({}): {}",
                    beat.display(),
                    crate::heartbeat::COARSE_ADVICE
                ));
            }
            said
        })
        .collect();
    per_target.concat()
}

/// How `check` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// For people: the effective targets, problems a line each.
    #[default]
    Text,
    /// One JSON document: every problem as a record (file, line, column, key, kind, message).
    Json,
}

/// How `check` checks (from its command line).
pub struct How {
    pub os: Os,
    pub quiet: bool,
    pub explain: bool,
    pub format: Format,
    /// Look at nothing on this machine.
    pub file_only: bool,
}

impl How {
    /// Are this machine's programs and directories looked at for `config`?
    fn on_this_machine(&self, config: &Config) -> bool {
        !self.file_only && config.os == Os::host()
    }
}

/// Checks each of `paths`, one after another: what each says, and the worst exit status
/// (a refused file's 1 before a missing program's 3); in JSON, an array of their documents
/// when there are several.
pub fn run_all(paths: &[std::path::PathBuf], how: &How) -> Outcome {
    let worse = |a: u8, b: u8| {
        let rank = |s: u8| match s {
            0 => 0,
            3 => 1,
            _ => 2,
        };
        if rank(b) > rank(a) { b } else { a }
    };
    if let [path] = paths {
        return run(path, how);
    }
    if how.format == Format::Json {
        let (docs, status) = paths.iter().map(|p| json_doc(p, how)).fold(
            (Vec::new(), 0),
            |(mut docs, status), (doc, s)| {
                docs.push(doc);
                (docs, worse(status, s))
            },
        );
        let text = serde_json::to_string_pretty(&docs).unwrap_or_default();
        return Outcome::status(status).say(text + "\n");
    }
    paths.iter().fold(Outcome::ok(), |all, path| {
        let one = run(path, how);
        Outcome {
            status: worse(all.status, one.status),
            stdout: all.stdout + &one.stdout,
            stderr: all.stderr + &one.stderr,
        }
    })
}

/// Checks the config file at `path`.
pub fn run(path: &Path, how: &How) -> Outcome {
    let os = how.os;
    if how.format == Format::Json {
        let (doc, status) = json_doc(path, how);
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        return Outcome::status(status).say(text + "\n");
    }
    let loaded = if how.explain {
        config::load_explained(path, os).map(|(config, origins)| (config, Some(origins)))
    } else {
        config::load(path, os).map(|config| (config, None))
    };
    let (config, origins) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            let out = Outcome::failed(e.to_string());
            return if os == Os::host() && !how.file_only {
                out.say_err(in_force_instead(path))
            } else {
                out
            };
        }
    };
    let file = path.display().to_string();
    // Only this machine's directories and programs can be looked at.
    let config = Arc::new(config);
    let looking = how
        .on_this_machine(&config)
        .then(|| Looking::begin(&config));
    let mut out = Outcome::ok().say(if how.quiet {
        headline(&file, &config)
    } else {
        describe(&file, &config, origins.as_ref())
    });
    let Some(looking) = looking else {
        return out;
    };
    let (problems, warnings) = looking.found();
    for warning in warnings {
        out = out.say_err(format!("{file}: warning: {warning}"));
    }
    if problems.is_empty() {
        return out;
    }
    for problem in &problems {
        out = out.say_err(format!("{file}: {problem}"));
    }
    out = out.say_err(format!(
        "{file}: {} command{} cannot run here: protector would run this config and log each as \
         an error; install the program, or set `allow_missing_programs: true` on a target whose \
         program comes later",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    ));
    // Not 1: the file itself is one protector accepts.
    out.status = 3;
    out
}

/// `check --format json`: one document per file (on stdout; an array of them for several
/// files), for CI annotations and editors, with the exit status of the text form (0 valid,
/// 1 refused, 3 programs missing here).
///
/// `{"file", "os", "valid", "targets", "problems": [{"file", "line", "column", "key", "kind",
/// "message"}], "warnings": [{"message"}]}`; `line`, `column` and `key` are null where there
/// is none; `kind` is `unreadable`, `syntax`, `refused`, `unknown_key`, `invalid`, or
/// `program_missing` (a valid file whose program cannot run here).
fn json_doc(path: &Path, how: &How) -> (serde_json::Value, u8) {
    use serde_json::{Value, json};
    let os = how.os;
    let file = path.display().to_string();
    let (valid, targets, mut problems, mut warnings) = match config::load(path, os) {
        Ok(config) => {
            let config = Arc::new(config);
            let (missing, warned) = if how.on_this_machine(&config) {
                Looking::begin(&config).found()
            } else {
                Default::default()
            };
            let problems: Vec<Value> = missing
                .into_iter()
                .map(|m| json!({"file": file, "line": null, "column": null, "key": null, "kind": "program_missing", "message": m}))
                .collect();
            let warnings: Vec<Value> = warned.into_iter().map(|w| json!({"message": w})).collect();
            (true, config.targets.len(), problems, warnings)
        }
        Err(e) => {
            let problems = e
                .problems
                .iter()
                .map(|found| {
                    let pointer = &found.problem.pointer;
                    json!({
                        "file": found.file,
                        "line": found.at.map(|a| a.line),
                        "column": found.at.map(|a| a.column),
                        "key": (!pointer.is_empty()).then(|| config::key_path(pointer)),
                        "kind": found.problem.kind.name(),
                        "message": found.problem.message,
                    })
                })
                .collect();
            (false, 0, problems, Vec::new())
        }
    };
    let code = match (valid, problems.is_empty()) {
        (false, _) => 1,
        (true, true) => 0,
        (true, false) => 3,
    };
    let doc = json!({
        "file": file,
        "os": os.key(),
        "valid": valid,
        "targets": targets,
        "problems": std::mem::take(&mut problems),
        "warnings": std::mem::take(&mut warnings),
    });
    (doc, code)
}

/// What protector does with a refused file: a running protector keeps what it runs on (a
/// reload is refused), and one started now runs on the last accepted copy when there is one.
fn in_force_instead(path: &Path) -> String {
    let copy = config::accepted::copy_path(path);
    let saved = std::fs::symlink_metadata(&copy)
        .ok()
        .and_then(|m| m.modified().ok());
    match saved {
        Some(t) => format!(
            "protector: not in force; a running protector keeps its config, and one started now \
             runs on the last accepted copy, {} (accepted {} ago)\n",
            copy.display(),
            crate::text::human(
                std::time::SystemTime::now()
                    .duration_since(t)
                    .unwrap_or_default()
                    .as_secs_f64()
            )
        ),
        None => "protector: not in force; a running protector keeps its config, and none can \
                 start on this file (no accepted copy of it is kept)\n"
            .into(),
    }
}
