//! Observing heartbeat files. One `stat` per observation; the file is opened only on a
//! filesystem with whole-second file times, to hash its first few KiB (a heartbeat written
//! twice in one second changes nothing else there). Looks run on worker threads with a
//! deadline (`daemon/looks.rs`), so a hung filesystem holds up nothing.

use std::fs::Metadata;
use std::io::{ErrorKind, Read};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::platform;
use crate::schedule::{Fingerprint, Observation};

/// Files up to this size have their content hashed on a coarse filesystem.
pub const HASHED_BYTES: u64 = 4096;

/// What an operator is told (log and `check`) about a heartbeat on such a filesystem.
pub const COARSE_ADVICE: &str = "the heartbeat's filesystem keeps file times in whole seconds: \
    a touch in the same second as the one before changes nothing there, so protector also \
    compares the file's content (up to 4096 bytes); have the writer write something new each \
    time (the time), or put the heartbeat on a filesystem with fine times (tmpfs, ext4)";

/// Looks at `path`. A missing file is simply no heartbeat; any other failure is also no
/// heartbeat, and comes with the reason so it can be logged.
pub fn observe(path: &Path) -> (Observation, Option<String>) {
    observe_keeping(path).0
}

/// [`observe`], and the file's metadata when it could be read (what else is to be told about
/// the file comes from the same `stat`).
pub fn observe_keeping(path: &Path) -> ((Observation, Option<String>), Option<Metadata>) {
    match std::fs::metadata(path) {
        Ok(meta) => {
            let look = observe_meta(path, &meta);
            (look, Some(meta))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => ((Observation::Absent, None), None),
        Err(e) => ((Observation::Unknown, Some(e.to_string())), None),
    }
}

/// What the metadata `meta` of the file at `path` tells.
fn observe_meta(path: &Path, meta: &Metadata) -> (Observation, Option<String>) {
    match meta {
        meta if meta.is_file() => {
            let mtime = meta.modified().ok();
            let coarse = mtime.is_some_and(whole_second);
            let identity = platform::file_identity(meta);
            let content = (coarse && meta.len() <= HASHED_BYTES)
                .then(|| content_hash(path, identity))
                .flatten();
            let print = Fingerprint {
                mtime,
                len: meta.len(),
                identity,
                coarse,
                content,
            };
            (Observation::Present(print), None)
        }
        meta => {
            let kind = if meta.is_dir() {
                "a directory"
            } else {
                "a special file"
            };
            (
                Observation::Absent,
                Some(format!("not a regular file ({kind})")),
            )
        }
    }
}

/// A file time with no fraction of a second: the mark of a filesystem that keeps whole
/// seconds (a fine-grained one gives a zero fraction about once in a billion).
pub fn whole_second(t: SystemTime) -> bool {
    let since = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or_else(|e| e.duration());
    since.subsec_nanos() == 0
}

/// FNV-1a of the first [`HASHED_BYTES`] of the file at `path`, if it is still the regular
/// file `identity` names. Opened without waiting (a FIFO swapped in cannot hang the look).
fn content_hash(path: &Path, identity: (u64, u64)) -> Option<u64> {
    let file = crate::fsutil::open_to_read(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || platform::file_identity(&meta) != identity {
        return None;
    }
    let mut bytes = Vec::with_capacity(HASHED_BYTES as usize);
    file.take(HASHED_BYTES).read_to_end(&mut bytes).ok()?;
    Some(bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h: u64, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }))
}

/// The directory that should hold `path` when it does not exist (or is not a directory):
/// nothing can create a heartbeat there until someone creates the directory. `None` when the
/// directory is there, when `path` has no parent, or when the parent cannot be looked at for
/// another reason (permissions, a hung mount): that is reported by `observe`.
pub fn missing_dir(path: &Path) -> Option<&Path> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty())?;
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => None,
        Ok(_) => Some(dir),
        Err(e) if e.kind() == ErrorKind::NotFound => Some(dir),
        Err(_) => None,
    }
}

/// What to tell about a directory that holds heartbeats, from one `stat` of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirFacts {
    /// It does not exist, or is not a directory: nothing can write a heartbeat in it yet.
    pub missing: bool,
    /// What any user may do in it (`perms::heartbeat_dir_exposure_of`).
    pub exposed: Option<String>,
}

/// The [`DirFacts`] of `dir` (nothing to tell when it cannot be looked at for another reason
/// than its absence: that is reported by `observe`).
pub fn dir_facts(dir: &Path) -> DirFacts {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => DirFacts {
            missing: false,
            exposed: crate::perms::heartbeat_dir_exposure_of(dir, &meta),
        },
        Ok(_) => DirFacts {
            missing: true,
            exposed: None,
        },
        Err(e) if e.kind() == ErrorKind::NotFound => DirFacts {
            missing: true,
            exposed: None,
        },
        Err(_) => DirFacts::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_second_times_are_told_from_fine_ones() {
        use std::time::Duration;
        assert!(whole_second(
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        ));
        // 100 ns: the finest a Windows file time holds.
        assert!(!whole_second(
            UNIX_EPOCH + Duration::new(1_700_000_000, 100)
        ));
        assert!(whole_second(UNIX_EPOCH - Duration::from_secs(5)));
    }

    #[test]
    fn content_is_hashed_only_for_the_file_looked_at() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("beat");
        std::fs::write(&path, "1").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let id = platform::file_identity(&meta);
        let one = content_hash(&path, id).unwrap();
        std::fs::write(&path, "2").unwrap();
        assert_ne!(content_hash(&path, id), Some(one));
        // Another file swapped in since the stat: not hashed.
        assert_eq!(content_hash(&path, (id.0, id.1.wrapping_add(1))), None);
        assert_eq!(content_hash(&tmp.path().join("absent"), id), None);
    }

    #[test]
    fn missing_dir_names_the_absent_directory_only() {
        let tmp = tempfile::tempdir().unwrap();
        let absent = tmp.path().join("absent").join("beat");
        assert_eq!(
            missing_dir(&absent),
            Some(tmp.path().join("absent").as_path())
        );
        assert_eq!(missing_dir(&tmp.path().join("beat")), None);
        std::fs::write(tmp.path().join("file"), "").unwrap();
        let under_file = tmp.path().join("file").join("beat");
        assert_eq!(
            missing_dir(&under_file),
            Some(tmp.path().join("file").as_path())
        );
        assert_eq!(missing_dir(Path::new("beat")), None);
    }
}
