//! Writing files that other programs read while protector runs (state, metrics): always
//! through a temporary file in the same directory and a rename, so a reader sees the old
//! version or the new one, never half of one. A missing directory is created (when a write
//! finds it gone, so an ordinary write costs no extra look).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `path` through a temporary sibling and a rename; `fill` writes the contents
/// (buffered, so large files are never built in memory first).
pub fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = temp_sibling(path);
    let result = (|| {
        let file = match std::fs::File::create(&tmp) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_parent(path)?;
                std::fs::File::create(&tmp)?
            }
            other => other?,
        };
        let mut w = std::io::BufWriter::new(file);
        fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates the directory `path` goes in when it is missing (at start-up, or after it was
/// removed while protector ran): protector's own files then come back by themselves.
pub fn create_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => std::fs::create_dir_all(dir),
        _ => Ok(()),
    }
}

fn temp_sibling(path: &Path) -> PathBuf {
    path.with_file_name(format!("{}{}", temp_prefix(path), std::process::id()))
}

/// `.NAME.tmp-`: the temporary siblings of `path` start with this, then a pid.
fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.tmp-")
}

/// Removes temporary siblings of `path` that an earlier protector left behind when it died
/// in the middle of a write (the caller holds the instance lock, so no other protector is
/// writing `path`). Only names of exactly our own form are touched; returns how many went.
pub fn remove_stale_temps(path: &Path) -> usize {
    let prefix = temp_prefix(path);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let ours = std::process::id().to_string();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file
            && !pid.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit())
            && pid != ours
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// Seconds since the Unix epoch, as a float (the unit of every time in the state file).
pub fn epoch_secs(t: std::time::SystemTime) -> f64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}
