//! Incidents: what a service looked like when it was judged hung, kept before its stop command
//! destroys the evidence. One file per restart in `incidents/` beside the state file (0700,
//! each file 0600, written atomically, never through a symlink, refused when another user
//! owns it): why (stale, asked by an operator), the heartbeat's age, the restart count, the
//! output of the target's `diagnose` command (bounded in time and size), and what protector
//! sees itself of the service's processes (`snapshot.rs`: Linux and Windows). At most [`KEEP_PER_TARGET`] per
//! target and [`KEEP_BYTES`] in all, the oldest removed first. Read by `protector incidents`.

#[cfg(windows)]
mod buffer_windows;
#[cfg(target_os = "linux")]
mod linux;
pub mod snapshot;
#[cfg(target_os = "linux")]
mod tcp_linux;
#[cfg(windows)]
mod tcp_windows;
#[cfg(windows)]
mod windows;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::config::CommandLine;

/// Incidents kept per target.
pub const KEEP_PER_TARGET: usize = 20;
/// Bytes all incidents may take together.
pub const KEEP_BYTES: u64 = 32 * 1024 * 1024;
/// Bytes kept of each of `diagnose`'s streams (the last ones).
pub const DIAGNOSE_KEEP: usize = 64 * 1024;
/// Most incident files read (listing, pruning).
const MAX_FILES: usize = 100_000;
/// Most bytes of one incident file read back.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// What the loop knows when a restart begins; the command thread completes it.
#[derive(Debug, Clone)]
pub struct Draft {
    pub target: String,
    /// `stale`, `asked by an operator`, `resumed after a crash`.
    pub reason: String,
    pub heartbeat_age_secs: Option<f64>,
    pub consecutive_restarts: u32,
    pub diagnose: Option<(CommandLine, Duration)>,
    pub pid_file: Option<PathBuf>,
    /// Its service's name (`service`): a systemd unit's processes are looked at too.
    pub service: Option<String>,
    /// The incidents directory.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub command: String,
    /// `exit status: 0`, `timed out and was killed`, `could not run: ...`.
    pub status: String,
    pub duration_ms: u64,
    pub stdout: String,
    pub stderr: String,
    /// More output came than was kept: the kept part is its end.
    pub cut: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub target: String,
    pub at: f64,
    pub reason: String,
    pub heartbeat_age_secs: Option<f64>,
    /// Restarts in a row without a heartbeat, this one included when it was judged (an
    /// operator's restart is not counted).
    pub consecutive_restarts: u32,
    /// One line: the processes' states, or what `diagnose` said.
    pub summary: String,
    pub diagnose: Option<Diagnosis>,
    /// The processes of the pid file and the service, and their descendants.
    #[serde(default)]
    pub processes: Vec<Process>,
    /// Why no process could be looked at, when the target names a pid file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processes_unseen: Option<String>,
}

pub use snapshot::{Connection, Process};

/// What this system shows of its processes.
#[cfg(target_os = "linux")]
const SYSTEM: linux::Linux = linux::Linux;
#[cfg(windows)]
const SYSTEM: windows::Windows = windows::Windows;
#[cfg(not(any(target_os = "linux", windows)))]
const SYSTEM: snapshot::Unseen = snapshot::Unseen;

/// `2026-12-06T21:31:46Z-salt-minion-3fa2`: sorts by time; the target's name with anything
/// but letters, digits, `.`, `_`, `-` made `_`.
fn id_for(target: &str, at: SystemTime) -> String {
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let day = crate::fsutil::utc_day(at);
    let (h, m, s) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    let name: String = target
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let tag = crate::fsutil::random() & 0xffff;
    format!("{day}T{h:02}{m:02}{s:02}Z-{name}-{tag:04x}")
}

/// The incidents directory of the state file `state`.
pub fn dir_beside(state: &Path) -> PathBuf {
    state.with_file_name("incidents")
}

/// Runs `diagnose` (bounded) and looks at the service's processes (its pid file's, its
/// unit's); the incident, not yet kept.
pub fn take(draft: &Draft, env: &[(&'static str, String)]) -> Incident {
    let now = SystemTime::now();
    let diagnose = draft.diagnose.as_ref().map(|(line, timeout)| {
        let o = crate::command::run_keeping(line, env, *timeout, DIAGNOSE_KEEP, |_| {});
        Diagnosis {
            command: line.to_string(),
            status: match o.failure() {
                None => "exit status: 0".into(),
                Some(why) => why,
            },
            duration_ms: o.duration.as_millis() as u64,
            stdout: o.stdout,
            stderr: o.stderr,
            cut: o.cut,
        }
    });
    let (processes, processes_unseen) =
        snapshot::of_service(&SYSTEM, draft.pid_file.as_deref(), draft.service.as_deref());
    let summary = summarize(&processes, processes_unseen.as_deref(), diagnose.as_ref());
    Incident {
        id: id_for(&draft.target, now),
        target: draft.target.clone(),
        at: crate::fsutil::epoch_secs(now),
        reason: draft.reason.clone(),
        heartbeat_age_secs: draft.heartbeat_age_secs,
        consecutive_restarts: draft.consecutive_restarts,
        summary,
        diagnose,
        processes,
        processes_unseen,
    }
}

/// One line: how many processes in which state (and what the first waits in, and their TCP
/// connections), else why the service's processes were not seen, else the first line
/// `diagnose` printed, else nothing seen.
fn summarize(processes: &[Process], unseen: Option<&str>, diagnose: Option<&Diagnosis>) -> String {
    if let Some(seen) = snapshot::summary(processes) {
        return seen;
    }
    // A pid file whose process is gone says more than what diagnose printed first.
    if let Some(unseen) = unseen.filter(|_| cfg!(any(target_os = "linux", windows))) {
        return unseen.to_string();
    }
    if let Some(d) = diagnose {
        let first = d
            .stdout
            .lines()
            .chain(d.stderr.lines())
            .find(|l| !l.trim().is_empty());
        return format!(
            "diagnose {}{}",
            d.status,
            first.map(|l| format!(": {}", l.trim())).unwrap_or_default()
        );
    }
    unseen.map_or_else(|| "nothing looked at".into(), str::to_string)
}

/// Keeps `incident` in `dir` and removes the oldest beyond the bounds.
pub fn keep(dir: &Path, incident: &Incident) -> std::io::Result<PathBuf> {
    make_dir(dir)?;
    let path = dir.join(format!("{}.json", incident.id));
    crate::fsutil::write_atomically_mode(&path, 0o600, |w| {
        serde_json::to_writer_pretty(&mut *w, incident)?;
        w.write_all(b"\n")
    })?;
    prune(dir, KEEP_PER_TARGET, KEEP_BYTES);
    Ok(path)
}

/// The incidents directory, made 0700 if missing; one that is not a directory of protector's
/// user (or root's) is refused.
fn make_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        Err(_) => {}
    }
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.uid() != 0 && meta.uid() != crate::perms::euid() {
            return Err(std::io::Error::other(format!(
                "{} belongs to {}: not protector's",
                dir.display(),
                crate::perms::user_name(meta.uid())
            )));
        }
    }
    Ok(())
}

/// The incident files in `dir`: (path, target part of the id, size), oldest first.
fn files(dir: &Path) -> Vec<(PathBuf, String, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, String, u64)> = entries
        .flatten()
        .take(MAX_FILES)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(".json")?.to_string();
            // DATE T TIME Z - NAME - TAG
            let rest = id.get(18..)?;
            let target = rest.rsplit_once('-')?.0.to_string();
            Some((e.path(), target, e.metadata().ok()?.len()))
        })
        .collect();
    found.sort();
    found
}

/// Removes the oldest incidents beyond `per_target` of one target and `bytes` in all.
pub fn prune(dir: &Path, per_target: usize, bytes: u64) {
    let all = files(dir);
    let mut kept_of: std::collections::HashMap<&str, usize> = Default::default();
    let mut total = 0u64;
    let mut gone = Vec::new();
    // Newest first: what is kept is decided from the newest back.
    for (path, target, len) in all.iter().rev() {
        let n = kept_of.entry(target).or_default();
        if *n >= per_target || total + len > bytes {
            gone.push(path);
        } else {
            *n += 1;
            total += len;
        }
    }
    for path in gone {
        let _ = std::fs::remove_file(path);
    }
}

/// The incidents in `dir`, oldest first (only regular files of protector's user or root,
/// each read up to [`MAX_FILE_BYTES`]; anything else is left out).
pub fn read_all(dir: &Path) -> Vec<Incident> {
    files(dir)
        .into_iter()
        .filter_map(|(path, _, _)| crate::perms::read_own_json(&path, MAX_FILE_BYTES))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(target: &str, n: u64) -> Incident {
        Incident {
            id: format!("2026-12-06T{n:06}Z-{target}-{n:04x}"),
            target: target.into(),
            at: n as f64,
            reason: "stale".into(),
            heartbeat_age_secs: Some(301.0),
            consecutive_restarts: 1,
            summary: String::new(),
            diagnose: None,
            processes: Vec::new(),
            processes_unseen: None,
        }
    }

    #[test]
    fn many_restarts_keep_the_newest_incidents_of_each_target() {
        let dir = tempfile::tempdir().unwrap();
        let incidents = dir.path().join("incidents");
        for n in 0..50 {
            keep(&incidents, &incident("web", n)).unwrap();
        }
        keep(&incidents, &incident("db", 99)).unwrap();
        let all = read_all(&incidents);
        let web: Vec<f64> = all
            .iter()
            .filter(|i| i.target == "web")
            .map(|i| i.at)
            .collect();
        assert_eq!(web.len(), KEEP_PER_TARGET);
        assert_eq!(web.last(), Some(&49.0), "the newest kept");
        assert_eq!(all.iter().filter(|i| i.target == "db").count(), 1);
        // A size cap: the oldest go first.
        let size = std::fs::metadata(&files(&incidents)[0].0).unwrap().len();
        prune(&incidents, 100, 3 * size + size / 2);
        let left = read_all(&incidents);
        assert_eq!(left.len(), 3);
        assert_eq!(
            left.iter().map(|i| i.at).fold(0.0, f64::max),
            99.0,
            "the newest stay"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&incidents).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
    }

    /// A shell line of Unix tools (`head`, `tr`, `sleep`).
    #[cfg(unix)]
    #[test]
    fn a_hanging_diagnose_is_cut_at_its_bound_and_its_output_kept_to_the_end() {
        let draft = Draft {
            target: "svc".into(),
            reason: "stale".into(),
            heartbeat_age_secs: Some(12.0),
            consecutive_restarts: 0,
            diagnose: Some((
                CommandLine::Shell {
                    line: "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo last words; sleep 60"
                        .into(),
                    os: crate::config::Os::host(),
                },
                Duration::from_secs(2),
            )),
            pid_file: None,
            service: None,
            dir: PathBuf::new(),
        };
        let started = std::time::Instant::now();
        let i = take(&draft, &[]);
        assert!(started.elapsed() < Duration::from_secs(10), "bounded");
        let d = i.diagnose.unwrap();
        assert_eq!(d.status, "timed out and was killed");
        assert!(
            d.cut && d.stdout.len() <= DIAGNOSE_KEEP + 3,
            "{}",
            d.stdout.len()
        );
        assert!(d.stdout.ends_with("last words"), "the end is kept");
        assert!(i.summary.starts_with("diagnose timed out"), "{}", i.summary);
        assert!(i.id.contains("-svc-"), "{}", i.id);
    }
}
