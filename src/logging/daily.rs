//! The daily log file of `--log-file`: `PREFIX.YYYY-MM-DD` (UTC), a new one each day, the
//! oldest beyond `keep` deleted; a file moved or deleted while protector runs is noticed
//! within a second and made again under the same name. Created safely (no symlink, no other
//! user's file, one name only, 0600).

use crate::fsutil::utc_day;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};

/// How often the log file's path is checked for still naming the open file.
const RECHECK: Duration = Duration::from_secs(1);

/// The daily log file (see the module docs).
pub(super) struct DailyFile {
    dir: PathBuf,
    prefix: String,
    keep: usize,
    open: Mutex<OpenLog>,
}

struct OpenLog {
    file: File,
    day: String,
    checked: Instant,
}

impl DailyFile {
    pub(super) fn open(dir: PathBuf, prefix: String, keep: usize) -> Result<DailyFile> {
        let day = utc_day(SystemTime::now());
        let file = create(&path_of(&dir, &prefix, &day))
            .with_context(|| format!("cannot open log file in {}", dir.display()))?;
        let log = DailyFile {
            dir,
            prefix,
            keep,
            open: Mutex::new(OpenLog {
                file,
                day,
                checked: Instant::now(),
            }),
        };
        log.prune();
        Ok(log)
    }

    fn path(&self, day: &str) -> PathBuf {
        path_of(&self.dir, &self.prefix, day)
    }

    /// Deletes the oldest daily files beyond `keep`.
    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let start = format!("{}.", self.prefix);
        let mut days: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let day = name.strip_prefix(&start)?;
                is_day(day).then(|| day.to_string())
            })
            .collect();
        days.sort();
        let extra = days.len().saturating_sub(self.keep);
        for day in &days[..extra] {
            let _ = std::fs::remove_file(self.path(day));
        }
    }

    fn write_line(&self, buf: &[u8]) -> std::io::Result<()> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if now >= open.checked + RECHECK {
            open.checked = now;
            let day = utc_day(SystemTime::now());
            let on_disk = std::fs::metadata(self.path(&open.day)).ok();
            let ours = open.file.metadata().ok();
            let same_file = matches!((on_disk, ours), (Some(a), Some(b))
                if crate::platform::file_identity(&a) == crate::platform::file_identity(&b));
            if open.day != day || !same_file {
                // If the new file cannot be opened, keep writing to the old one.
                if let Ok(file) = create(&self.path(&day)) {
                    let new_day = open.day != day;
                    *open = OpenLog {
                        file,
                        day,
                        checked: now,
                    };
                    if new_day {
                        self.prune();
                    }
                }
            }
        }
        open.file.write_all(buf)
    }
}

/// `DIR/PREFIX.DAY`
fn path_of(dir: &std::path::Path, prefix: &str, day: &str) -> PathBuf {
    dir.join(format!("{prefix}.{day}"))
}

/// Mode of log files: they hold command output, which may hold secrets.
const LOG_MODE: u32 = 0o600;

/// Opens a log file for appending, creating it (and its directory) when missing: never
/// through a symlink, only a regular file of protector's own user (another user's would let
/// them read what protector logs) with no other name (a hard link to a file protector must not
/// write), readable by its owner only (a file of an older version is made so too).
fn create(path: &std::path::Path) -> std::io::Result<File> {
    crate::fsutil::create_parent(path)?;
    let file = crate::fsutil::no_follow(LOG_MODE)
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| match crate::perms::foreign_owner(path) {
            // The kernel may refuse even root a file another user made in a sticky directory
            // (fs.protected_regular, fs.protected_fifos): say whose it is.
            Some(owner) => std::io::Error::new(e.kind(), format!("it belongs to {owner} ({e})")),
            None => e,
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if let Some(why) = crate::perms::not_ours_alone(&meta) {
        return Err(std::io::Error::other(why));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(LOG_MODE))?;
        }
    }
    Ok(file)
}

/// One formatted event, handed to the file in one write.
pub(super) struct LineWriter<'a> {
    log: &'a DailyFile,
    buf: Vec<u8>,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let _ = self.log.write_line(&self.buf);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for DailyFile {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            log: self,
            buf: Vec::new(),
        }
    }
}

fn is_day(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_days() {
        let at = |secs: u64| utc_day(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01");
        assert_eq!(at(951_782_400), "2000-02-29");
        assert_eq!(at(1_798_761_599), "2026-12-31");
        assert_eq!(at(1_798_761_600), "2027-01-01");
        assert!(is_day("2026-11-25") && !is_day("2026-11-25.gz") && !is_day("current"));
    }
}
