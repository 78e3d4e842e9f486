//! A command's process group on record from the moment it is spawned. The state file says
//! which command of a target runs, but the loop writes it a little after the spawn (and with
//! many targets a write takes a while): a protector killed in between left a group no one
//! knew of, which the next restart overlapped. So the thread that spawns a command at once
//! writes a small file of its own beside the state file, `.NAME.cmd-PGID-RANDOM` (0600,
//! created new, never through a symlink), and removes it when the command has ended; a
//! protector starting up reads what a crash left, as it reads the state file.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RunningCommand;
use crate::fsutil;

/// Most bytes of one record read (one is about 200).
const MAX_RECORD_BYTES: u64 = 4096;

/// Most records read at start-up (one per command running at a crash; at most
/// `max_parallel_commands` run at once).
const MAX_RECORDS: usize = 10_000;

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    target: String,
    running: RunningCommand,
}

/// `.NAME.cmd-`: the records beside the state file `state` start with this.
fn prefix(state: &Path) -> String {
    fsutil::sibling_prefix(state, "cmd")
}

/// Puts `running`, a command of `target`, on record beside the state file `state`; returns
/// the record's path, for [`remove`] once the command has ended.
pub fn write(state: &Path, target: &str, running: &RunningCommand) -> std::io::Result<PathBuf> {
    let path = state.with_file_name(format!(
        "{}{}-{:016x}",
        prefix(state),
        running.pgid,
        fsutil::random()
    ));
    let record = Record {
        target: target.to_string(),
        running: running.clone(),
    };
    let mut file = fsutil::no_follow(0o600)
        .write(true)
        .create_new(true)
        .open(&path)?;
    // No sync: a killed protector loses nothing written; a lost power loses the commands too.
    let written = serde_json::to_vec(&record)
        .map_err(std::io::Error::other)
        .and_then(|bytes| file.write_all(&bytes));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// Takes a record off (its command has ended).
pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// The records an earlier protector left beside the state file `state`: each file's path,
/// target and command. A record is only read if it is a regular file of root's or
/// protector's user with one name (anything else there is left alone), of at most 4 KiB.
pub fn left(state: &Path) -> Vec<(PathBuf, String, RunningCommand)> {
    let prefix = prefix(state);
    let dir = match state.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .take(MAX_RECORDS)
        .filter_map(|e| {
            let path = e.path();
            let record: Record = crate::perms::read_own_json(&path, MAX_RECORD_BYTES)?;
            Some((path, record.target, record.running))
        })
        .collect()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn running(pgid: u32) -> RunningCommand {
        RunningCommand {
            command: "stop".into(),
            pgid,
            stamp: "b:1".into(),
            started_at: 1.5,
        }
    }

    #[test]
    fn records_are_written_found_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        let a = write(&state, "a", &running(41)).unwrap();
        let b = write(&state, "b", &running(42)).unwrap();
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".state.json.cmd-41-"), "{name}");
        let mode = std::os::unix::fs::PermissionsExt::mode(&a.metadata().unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        // Neither the state file's temporaries nor anything else there.
        std::fs::write(dir.path().join(".state.json.tmp-1"), "x").unwrap();
        std::fs::write(dir.path().join(".state.json.cmd-junk"), "not json").unwrap();
        let mut found: Vec<(String, u32)> = left(&state)
            .into_iter()
            .map(|(_, t, r)| (t, r.pgid))
            .collect();
        found.sort();
        assert_eq!(found, [("a".into(), 41), ("b".into(), 42)]);
        remove(&a);
        remove(&b);
        assert!(left(&state).is_empty());
    }

    #[test]
    fn a_symlink_or_a_second_name_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        let a = write(&state, "a", &running(41)).unwrap();
        std::fs::hard_link(&a, dir.path().join("elsewhere")).unwrap();
        assert!(left(&state).is_empty(), "two names");
        std::fs::remove_file(dir.path().join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(&a, dir.path().join(".state.json.cmd-1-x")).unwrap();
        assert_eq!(left(&state).len(), 1, "the symlink is not read");
    }
}
