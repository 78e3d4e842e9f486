//! Creating protector's own files safely, and writing files that other programs read while
//! protector runs (state, metrics) always through a temporary file in the same directory and
//! a rename, so a reader sees the old version or the new one, never half of one. A missing
//! directory is created (when a write finds it gone, so an ordinary write costs no extra
//! look).
//!
//! protector runs as root: a file it creates is never opened through a symlink (a user who
//! can write the directory could otherwise point it at /etc/shadow), and a temporary file has
//! a name no one can guess and must not exist yet.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Options that refuse a symlink as the last part of the path, never wait at the open (a
/// FIFO put in a file's place would otherwise hold the open for ever; regular files are not
/// affected) and give a created file `mode` (Unix; on Windows only what std does). The caller
/// checks that what it opened is a regular file.
pub fn no_follow(mode: u32) -> OpenOptions {
    #[cfg_attr(not(unix), allow(unused_mut))]
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK);
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    options
}

/// Opens `path` (symlinks followed) for reading without waiting: a FIFO put where a file was
/// expected would otherwise hold the open until someone writes to it, and a terminal would
/// become protector's. The caller checks that it is a regular file before reading.
pub fn open_to_read(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC);
    }
    options.open(path)
}

/// Mode of the state and metrics files: readable by monitoring tools, written by root.
pub const SHARED_MODE: u32 = 0o644;

/// Writes `path` through a temporary sibling and a rename; `fill` writes the contents
/// (buffered, so large files are never built in memory first).
pub fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    write_atomically_mode(path, SHARED_MODE, fill)
}

/// [`write_atomically`] with the new file's mode (Unix).
pub fn write_atomically_mode(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    replace(path, mode, true, fill)
}

/// [`write_atomically`], without waiting for the new contents to reach the disk before the
/// rename: for a file written anew at every start (after a power cut it may be empty until
/// then), where waiting for the disk at every write costs more than it keeps.
pub fn write_atomically_unsynced(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    replace(path, SHARED_MODE, false, fill)
}

fn replace(
    path: &Path,
    mode: u32,
    sync: bool,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = temp_sibling(path);
    let create = || no_follow(mode).write(true).create_new(true).open(&tmp);
    let result = (|| {
        let file = match create() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_parent(path)?;
                create()?
            }
            other => other?,
        };
        let mut w = std::io::BufWriter::new(file);
        fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        if sync {
            f.sync_all()?;
        }
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

/// `.NAME.tmp-PID-RANDOM`: the pid says whose it is, the random part makes it unguessable.
fn temp_sibling(path: &Path) -> PathBuf {
    path.with_file_name(format!(
        "{}{}-{:016x}",
        temp_prefix(path),
        std::process::id(),
        random()
    ))
}

/// 64 unpredictable bits: std seeds each `RandomState` from the OS's random source.
pub fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// `.NAME.tmp-`: the temporary siblings of `path` start with this, then a pid (and, since
/// they are random, a dash and 16 hex digits).
fn temp_prefix(path: &Path) -> String {
    sibling_prefix(path, "tmp")
}

/// `.NAME.KIND-`: how the hidden siblings of `path` of one kind begin (its temporaries, the
/// state file's records of running commands).
pub fn sibling_prefix(path: &Path, kind: &str) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.{kind}-")
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
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let pid = match rest.split_once('-') {
            Some((pid, random))
                if random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                pid
            }
            Some(_) => continue,
            None => rest,
        };
        // Regular files only: a symlink of that name is someone else's doing, left alone.
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

/// The pid in the pid file at `path`: a regular file (opened without waiting) whose first
/// bytes are a pid; `None` when it holds none.
pub fn read_pid(path: &Path) -> std::io::Result<Option<u32>> {
    use std::io::Read;
    let file = open_to_read(path)?;
    if !file.metadata()?.is_file() {
        return Ok(None);
    }
    // A pid is at most 10 digits; a little room for spaces and a line break.
    let mut text = String::new();
    if file.take(32).read_to_string(&mut text).is_err() {
        return Ok(None);
    }
    Ok(text.trim().parse::<u32>().ok().filter(|&pid| pid > 0))
}

/// `YYYY-MM-DD` of `t` in UTC.
pub fn utc_day(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
