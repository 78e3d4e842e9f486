//! Whether the programs of a target's commands can be run on this machine: `check` fails on
//! one that cannot (a warning when the target sets `allow_missing_programs`), and protector
//! logs it at start-up and when a reload adds or changes the target.

use std::path::Path;

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{CommandLine, Policy, Target};

/// Each command's program of `t` (`stop`, `systemctl`). Shell lines are left out: their
/// program is the shell.
pub fn of(t: &Policy) -> Vec<(&'static str, String)> {
    [
        ("stop", t.stop.as_ref()),
        ("start", Some(&t.start)),
        ("skip_if", t.skip_if.as_ref()),
        ("notify", t.notify.as_ref()),
        ("diagnose", t.diagnose.as_ref()),
        (
            "depends_on",
            t.depends_on.as_ref().and_then(|d| d.command.as_ref()),
        ),
    ]
    .into_iter()
    .filter_map(|(what, line)| match line {
        Some(CommandLine::Exec(argv)) => Some((what, argv[0].clone())),
        _ => None,
    })
    .collect()
}

/// Where commands are looked for when PATH has no absolute directory at all (Unix).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Makes protector's PATH, which its commands inherit and look programs up in, hold absolute
/// directories only: an empty or relative element (`.`, `bin`, `::`) would find a program in
/// whatever directory protector or a command runs in, where another user may have put one.
/// Without any absolute directory, PATH becomes [`DEFAULT_PATH`] (Unix). Returns the elements
/// dropped. Call before any other thread runs (it changes the environment).
pub fn make_path_safe() -> Vec<String> {
    let Some(given) = std::env::var_os("PATH") else {
        if cfg!(unix) {
            // SAFETY: called at start-up, before protector starts any other thread.
            unsafe { std::env::set_var("PATH", DEFAULT_PATH) };
        }
        return Vec::new();
    };
    let (kept, dropped): (Vec<std::path::PathBuf>, Vec<std::path::PathBuf>) =
        std::env::split_paths(&given).partition(|p| p.is_absolute());
    if dropped.is_empty() && !kept.is_empty() {
        return Vec::new();
    }
    let safe = if kept.is_empty() && cfg!(unix) {
        std::ffi::OsString::from(DEFAULT_PATH)
    } else {
        std::env::join_paths(&kept).unwrap_or_default()
    };
    // SAFETY: called at start-up, before protector starts any other thread.
    unsafe { std::env::set_var("PATH", safe) };
    dropped
        .iter()
        .map(|p| {
            let shown = p.display().to_string();
            if shown.is_empty() {
                "(empty)".into()
            } else {
                shown
            }
        })
        .collect()
}

/// Why `program` (a command's first word) could not be run here: not found on PATH, or not
/// an executable file.
pub fn not_runnable(program: &str) -> Option<String> {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            }
            #[cfg(not(unix))]
            {
                m.is_file()
            }
        })
    };
    let path = Path::new(program);
    if path.components().count() > 1 {
        return (!executable(path))
            .then(|| format!("program {program} does not exist or is not executable here"));
    }
    let found = std::env::var_os("PATH").is_some_and(|dirs| {
        std::env::split_paths(&dirs).any(|dir| {
            let candidate = dir.join(program);
            executable(&candidate)
                || (cfg!(windows)
                    && ["exe", "com", "bat", "cmd"]
                        .iter()
                        .any(|ext| executable(&candidate.with_extension(ext))))
        })
    });
    (!found).then(|| format!("program `{program}` is not found on PATH here"))
}

/// What an enabled target's commands need to run: its name and its policy (shared with the
/// targets alike), which says its commands and whether their programs may be missing. Small
/// beside the target: what the background lookup keeps of thousands of targets while a config
/// is installed.
#[derive(Debug, Clone)]
pub struct Wanted {
    target: String,
    policy: Arc<Policy>,
}

impl Wanted {
    pub fn of(t: &Target) -> Wanted {
        Wanted {
            target: t.name.clone(),
            policy: t.shared_policy(),
        }
    }
}

/// What cannot be run of the enabled `targets`' commands: (target, command, why, allowed),
/// each program looked up once (thousands of targets share a few programs).
pub fn missing<'a>(targets: impl IntoIterator<Item = &'a Target>) -> Vec<Missing> {
    let wanted: Vec<Wanted> = targets
        .into_iter()
        .filter(|t| t.enabled)
        .map(Wanted::of)
        .collect();
    missing_of(&wanted)
}

/// [`missing`] of what targets want: the programs of each policy listed once, each program
/// looked up once.
fn missing_of(wanted: &[Wanted]) -> Vec<Missing> {
    let mut programs_of = HashMap::new();
    let mut looked_up = HashMap::new();
    let mut out = Vec::new();
    for w in wanted {
        let programs = programs_of
            .entry(Arc::as_ptr(&w.policy))
            .or_insert_with(|| of(&w.policy));
        for (what, program) in programs.iter() {
            // Looked up once; its name copied only then (10,000 targets may share it).
            if !looked_up.contains_key(program.as_str()) {
                looked_up.insert(program.clone(), not_runnable(program));
            }
            let why = &looked_up[program.as_str()];
            if let Some(why) = why {
                out.push(Missing {
                    target: w.target.clone(),
                    command: what,
                    why: why.clone(),
                    allowed: w.policy.allow_missing_programs,
                });
            }
        }
    }
    out
}

/// A command whose program cannot be run here.
#[derive(Debug, Clone, PartialEq)]
pub struct Missing {
    pub target: String,
    pub command: &'static str,
    pub why: String,
    /// The target sets `allow_missing_programs`.
    pub allowed: bool,
}

/// Looks up the programs of `targets` (at start-up, or added or changed by a reload) on a
/// thread of its own, so a PATH directory on a filesystem that does not answer cannot hold up
/// the loop, and logs what cannot run. One thread at a time: targets that come while it
/// looks wait for it (the latest version of each, by name), so a lookup that hangs never
/// piles up threads that hang too.
pub fn log_missing_in_background(targets: Vec<Wanted>) {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    /// Targets waiting to be looked at, and whether a thread is looking.
    static QUEUE: Mutex<(BTreeMap<String, Arc<Policy>>, bool)> =
        Mutex::new((BTreeMap::new(), false));
    let lock = || QUEUE.lock().unwrap_or_else(|p| p.into_inner());
    let mut queue = lock();
    queue
        .0
        .extend(targets.into_iter().map(|w| (w.target, w.policy)));
    if queue.1 || queue.0.is_empty() {
        return;
    }
    queue.1 = true;
    drop(queue);
    let spawned = std::thread::Builder::new()
        .name("protector-programs".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            loop {
                let batch: Vec<Wanted> = {
                    let mut queue = lock();
                    if queue.0.is_empty() {
                        queue.1 = false;
                        return;
                    }
                    let taken = std::mem::take(&mut queue.0).into_iter();
                    taken
                        .map(|(target, policy)| Wanted { target, policy })
                        .collect()
                };
                log(&missing_of(&batch));
            }
        });
    if spawned.is_err() {
        lock().1 = false;
    }
}

/// Logs each of `missing`: an error, or a warning when the target allows it.
fn log(missing: &[Missing]) {
    for m in missing {
        if m.allowed {
            tracing::warn!(target = %m.target, event = "program_missing", command = m.command,
                "{} (allow_missing_programs: true)", m.why);
        } else {
            tracing::error!(target = %m.target, event = "program_missing", command = m.command,
                "{}: this command will fail until it is installed", m.why);
        }
    }
}
