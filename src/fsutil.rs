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
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Seconds since the Unix epoch, as a float (the unit of every time in the state file).
pub fn epoch_secs(t: std::time::SystemTime) -> f64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}
